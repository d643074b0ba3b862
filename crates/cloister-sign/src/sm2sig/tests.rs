//! Tests of the SM2 keys and tokens: the GB/T 32918.5 example as a known answer, then every
//! check of the JWS verifier made to fail on its own with a token signed by the right key.

use proptest::prelude::*;
use serde::Deserialize;
use sm2::dsa::signature::MultipartSigner as _;
use sm2::dsa::signature::hazmat::PrehashVerifier as _;
use sm3::Digest as _;

use super::*;
use crate::{SigningKey, VerifyingKey};

// The GB/T 32918.5-2017 (GM/T 0003.5) Annex A example on the recommended curve sm2p256v1, with
// the default user ID. Source: ../shared/vectors/README.md, "ShangMi (GM/T) reference vectors"
// (d, ID, M, r, s from intel/ehsm core/Enclave/self_test/sm2_test.cpp L21-33; the public key,
// Z_A and e recomputed and re-verified there). Facts, not files: no vector file is copied.
const EXAMPLE_D: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
const EXAMPLE_X: &str = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020";
const EXAMPLE_Y: &str = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13";
const EXAMPLE_ID: &str = "1234567812345678";
const EXAMPLE_M: &[u8] = b"message digest";
const EXAMPLE_Z_A: &str = "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3";
const EXAMPLE_E: &str = "f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640";
const EXAMPLE_R: &str = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3";
const EXAMPLE_S: &str = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA";

// sm2p256v1's parameters (GB/T 32918.5 section 4), for Z_A written out from its definition.
const CURVE_A: &str = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC";
const CURVE_B: &str = "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93";
const CURVE_GX: &str = "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7";
const CURVE_GY: &str = "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0";
/// The group order n.
const CURVE_N: &str = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123";

const NOW: u64 = 1_100;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Body {
    job: String,
}

fn body() -> Body {
    Body { job: "j1".into() }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

/// `Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A)` (GB/T 32918.2 section 5.5), written
/// out from the definition rather than taken from the `sm2` crate.
fn z_a(key: &Sm2VerifyingKey, id: &str) -> [u8; 32] {
    let mut sm3 = Sm3::new();
    sm3.update(u16::try_from(id.len() * 8).unwrap().to_be_bytes());
    sm3.update(id.as_bytes());
    for constant in [CURVE_A, CURVE_B, CURVE_GX, CURVE_GY] {
        sm3.update(unhex(constant));
    }
    let (x, y) = key.coordinates();
    sm3.update(x);
    sm3.update(y);
    sm3.finalize().into()
}

fn example_public() -> Sm2VerifyingKey {
    let jwk = serde_json::json!({
        "kty": "EC",
        "crv": "SM2",
        "x": b64(unhex(EXAMPLE_X)),
        "y": b64(unhex(EXAMPLE_Y)),
    });
    Sm2VerifyingKey::from_jwk(&jwk).unwrap()
}

fn example_signature() -> Vec<u8> {
    [unhex(EXAMPLE_R), unhex(EXAMPLE_S)].concat()
}

fn key() -> Sm2SigningKey {
    Sm2SigningKey::generate().unwrap()
}

/// A token with exactly this header and these claims (JSON text), signed by `key` as the
/// signer does: lets each test break one rule while the signature stays good.
fn signed_raw(key: &Sm2SigningKey, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = key.sign_parts(&[input.as_bytes()]).unwrap();
    format!("{input}.{}", b64(signature))
}

/// Good claims for `key`: issued at 1000, valid for 600 seconds.
fn claims_for(key: &Sm2SigningKey) -> String {
    format!(
        r#"{{"iat":1000,"exp":1600,"nbf":1000,"iss":"{}","cloister.what":"grant","job":"j1"}}"#,
        key.public_key()
    )
}

const HEADER: &str = r#"{"alg":"SM2SM3","typ":"JWT"}"#;

fn refusal(key: &Sm2SigningKey, token: &str) -> String {
    key.public_key().verify::<Body>("grant", token, NOW).unwrap_err().to_string()
}

fn part(token: &str, index: usize) -> serde_json::Value {
    let text = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}

// ---- Known answers ----

#[test]
fn curve_constants_are_the_sm2_crates() {
    // The generator written above is the crate's: the public key of d = 1.
    let mut one = [0u8; 32];
    one[31] = 1;
    let g = sm2::SecretKey::from_bytes(&one.into()).unwrap().public_key();
    let g = g.to_sec1_point(false);
    assert_eq!(g.as_bytes(), [vec![4], unhex(CURVE_GX), unhex(CURVE_GY)].concat().as_slice());
}

#[test]
fn gbt_32918_5_example_key_pair() {
    let secret = format!("{SM2_SECRET_PREFIX}{}", b64(unhex(EXAMPLE_D)));
    let key = Sm2SigningKey::from_text(&secret).unwrap();
    assert_eq!(key.public_key(), example_public());
    let jwk = key.public_key().to_jwk("gbt");
    assert_eq!(jwk["x"], b64(unhex(EXAMPLE_X)));
    assert_eq!(jwk["y"], b64(unhex(EXAMPLE_Y)));
    assert_eq!(key.to_text().as_str(), secret);
}

#[test]
fn gbt_32918_5_example_z_a_and_e() {
    assert_eq!(EXAMPLE_ID, SM2_DISTID);
    let z = z_a(&example_public(), SM2_DISTID);
    assert_eq!(hex::encode(z), EXAMPLE_Z_A);
    let e: [u8; 32] = Sm3::new_with_prefix(z).chain_update(EXAMPLE_M).finalize().into();
    assert_eq!(hex::encode(e), EXAMPLE_E);
    // The crate's verifier accepts the published signature over the published e: its Z_A and
    // message hash are the standard's.
    let signature = sm2::dsa::Signature::from_slice(&example_signature()).unwrap();
    example_public().key.verify_prehash(&e, &signature).unwrap();
}

#[test]
fn gbt_32918_5_example_signature_verifies_through_the_verifying_path() {
    let public = example_public();
    let signature = example_signature();
    assert_eq!(public.verify_parts(&[EXAMPLE_M], &signature), Ok(()));
    // The same message cut in two is the same message.
    assert_eq!(public.verify_parts(&[b"message ", b"digest"], &signature), Ok(()));
    assert_eq!(
        public.verify_parts(&[b"message digesT"], &signature),
        Err(SignatureFailure::Mismatch)
    );
    for bit in 0..signature.len() * 8 {
        let mut flipped = signature.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(public.verify_parts(&[EXAMPLE_M], &flipped).is_err(), "bit {bit}");
    }
    // Another key, or the published key with another ID, does not verify it.
    assert_eq!(
        key().public_key().verify_parts(&[EXAMPLE_M], &signature),
        Err(SignatureFailure::Mismatch)
    );
    let other_id =
        sm2::dsa::VerifyingKey::new("ALICE123@YAHOO.COM", public.key.clone().into()).unwrap();
    use sm2::dsa::signature::Verifier as _;
    let parsed = sm2::dsa::Signature::from_slice(&signature).unwrap();
    assert!(other_id.verify(EXAMPLE_M, &parsed).is_err());
}

// The worked example of `docs/formats/jws-sm2.md`, made with the GB/T example key when tokens
// were signed with RFC 6979 k alone (tokens are hedged now, so a new one differs; the example
// still verifies, and raw-byte signatures stay deterministic). Their signatures were also
// checked, by hand and outside this repository, with OpenSSL 3.0.19 (`openssl pkeyutl -verify
// -rawin -digest sm3 -pkeyopt distid:1234567812345678` over the signing input, r || s as DER),
// and the fingerprint with `openssl dgst -sm3`.
const EXAMPLE_PUBLIC: &str = "cloister-sm2sig:Awn53zEeVCGhUN19Fh5LxcZyF5-tGDP8B2uwj_NW81Ag";
const EXAMPLE_FINGERPRINT: &str =
    "4f14583c3fbdf19a56f105ad74e987605a8f2670fceb493e54af07d6dd41827a";
const EXAMPLE_TOKEN: &str = "eyJhbGciOiJTTTJTTTMiLCJ0eXAiOiJKV1QiLCJraWQiOiJlYXItZXhhbXBsZSJ9.\
    eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMDYwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJjbG9pc3Rlci1z\
    bTJzaWc6QXduNTN6RWVWQ0doVU4xOUZoNUx4Y1p5RjUtdEdEUDhCMnV3al9OVzgxQWciLCJjbG9pc3Rlci53aGF0Ijoi\
    RUFSIiwiam9iIjoiajEifQ.\
    9TqaNw2ejADw6vsHkJSwlmhANsVV3Drs_-VpiYd1ZaSFusabfnt08gFDnvVOv6yFRP2jZxQLcM8iFHx2lpouWw";
const EXAMPLE_BYTES_SIGNATURE: &str =
    "UAnmCjUNvrlGsRoRPnEaHFcJxOi_8pwY1uPry0xZuSEX5BhmO3kB3xHO3_uaHZWZUWx15h62LeWq7WKf03WwQA";

#[test]
fn documented_example() {
    let secret = format!("{SM2_SECRET_PREFIX}{}", b64(unhex(EXAMPLE_D)));
    let key = Sm2SigningKey::from_text(&secret).unwrap().with_key_id("ear-example");
    let public = key.public_key();
    assert_eq!(public.to_text(), EXAMPLE_PUBLIC);
    assert_eq!(public.fingerprint_hex(), EXAMPLE_FINGERPRINT);
    // A new token has the example's header and claims, and another signature each time.
    let token = key.sign("EAR", body(), 1_700_000_000, Duration::from_secs(600)).unwrap();
    let again = key.sign("EAR", body(), 1_700_000_000, Duration::from_secs(600)).unwrap();
    let signing_input = |t: &str| t.rsplit_once('.').unwrap().0.to_owned();
    assert_eq!(signing_input(&token), signing_input(EXAMPLE_TOKEN));
    assert_eq!(signing_input(&again), signing_input(EXAMPLE_TOKEN));
    assert_ne!(token, again, "token signatures are hedged");
    assert_ne!(token, EXAMPLE_TOKEN);
    for t in [&token, &again] {
        example_public().verify::<Body>("EAR", t, 1_700_000_100).unwrap();
    }
    let signed = example_public().verify::<Body>("EAR", EXAMPLE_TOKEN, 1_700_000_100).unwrap();
    assert_eq!(signed.claims, body());
    let bytes = key.sign_bytes("cloister-example v1", b"seq=7").unwrap();
    assert_eq!(bytes, EXAMPLE_BYTES_SIGNATURE);
    example_public().verify_bytes("cloister-example v1", b"seq=7", &bytes).unwrap();
}

#[test]
fn signatures_of_the_wrong_length_or_range_are_refused() {
    let public = example_public();
    let signature = example_signature();
    assert_eq!(public.verify_parts(&[EXAMPLE_M], &signature[..63]), Err(SignatureFailure::Length));
    let long = [signature.as_slice(), &[0]].concat();
    assert_eq!(public.verify_parts(&[EXAMPLE_M], &long), Err(SignatureFailure::Length));
    let zero_r = [vec![0; 32], unhex(EXAMPLE_S)].concat();
    assert_eq!(public.verify_parts(&[EXAMPLE_M], &zero_r), Err(SignatureFailure::Scalars));
    let n_as_s = [unhex(EXAMPLE_R), unhex(CURVE_N)].concat();
    assert_eq!(public.verify_parts(&[EXAMPLE_M], &n_as_s), Err(SignatureFailure::Scalars));
}

// ---- Tokens ----

#[test]
fn sign_then_verify_round_trips() {
    let key = key();
    let token = key.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
    let signed = key.public_key().verify::<Body>("grant", &token, NOW).unwrap();
    assert_eq!(signed.claims, body());
    assert_eq!((signed.issued_at, signed.expires_at), (1_000, 1_600));
    assert_eq!(signed.token_sha256, <[u8; 32]>::from(Sha256::digest(token.as_bytes())));
    assert_eq!(part(&token, 0), serde_json::json!({"alg": "SM2SM3", "typ": "JWT"}));
    assert_eq!(
        part(&token, 1),
        serde_json::json!({
            "iat": 1000, "exp": 1600, "nbf": 1000, "iss": key.public_key().to_text(),
            "cloister.what": "grant", "job": "j1"
        })
    );
    let signature = URL_SAFE_NO_PAD.decode(token.split('.').nth(2).unwrap()).unwrap();
    assert_eq!(signature.len(), 64);
}

#[test]
fn the_key_id_goes_in_the_header() {
    let key = key().with_key_id("ear-1");
    let token = key.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
    assert_eq!(part(&token, 0), serde_json::json!({"alg": "SM2SM3", "typ": "JWT", "kid": "ear-1"}));
    assert_eq!(crate::peek_key_id(&token).as_deref(), Some("ear-1"));
    assert!(key.public_key().verify::<Body>("grant", &token, NOW).is_ok());
}

#[test]
fn the_raw_signer_makes_what_sign_makes() {
    // The helper the negative tests use signs exactly as `sign` does.
    let key = key();
    let token = signed_raw(&key, HEADER, &claims_for(&key));
    assert_eq!(key.public_key().verify::<Body>("grant", &token, NOW).unwrap().claims, body());
    // Tokens are hedged: the same header and claims, another signature.
    let signed = key.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
    let signing_input = |t: &str| t.rsplit_once('.').unwrap().0.to_owned();
    assert_eq!(signing_input(&token), signing_input(&signed));
}

#[test]
fn another_key_is_refused() {
    let key = key();
    let token = key.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
    let other = Sm2SigningKey::generate().unwrap().public_key();
    let err = other.verify::<Body>("grant", &token, NOW).unwrap_err().to_string();
    assert!(err.starts_with(&format!("the grant does not verify with {other}:")), "{err}");
    // The signature is checked before the issuer: it is what fails.
    assert!(err.ends_with("the signature does not verify"), "{err}");
}

#[test]
fn validity_window_and_skew_match_es256() {
    let sm2 = key();
    let es256 = SigningKey::generate();
    let sm2_token = sm2.sign("receipt", body(), 1_000, Duration::from_secs(600)).unwrap();
    let es256_token = es256.sign("receipt", body(), 1_000, Duration::from_secs(600)).unwrap();
    for now in [0, 900, 939, 940, 1_000, 1_600, 1_660, 1_661, 5_000] {
        let sm2_ok = sm2.public_key().verify::<Body>("receipt", &sm2_token, now).is_ok();
        let es256_ok = es256.public_key().verify::<Body>("receipt", &es256_token, now).is_ok();
        assert_eq!(sm2_ok, es256_ok, "now {now}");
        assert_eq!(sm2_ok, (940..=1_660).contains(&now), "now {now}");
    }
    let err = sm2.public_key().verify::<Body>("receipt", &sm2_token, 1_661).unwrap_err();
    assert!(err.to_string().ends_with("the token expired at 1600"), "{err}");
    let err = sm2.public_key().verify::<Body>("receipt", &sm2_token, 939).unwrap_err();
    assert!(err.to_string().ends_with("the token was issued in the future (iat 1000)"), "{err}");
}

#[test]
fn not_before_is_checked_on_its_own() {
    let key = key();
    let claims = format!(
        r#"{{"iat":1000,"exp":9000,"nbf":2000,"iss":"{}","cloister.what":"grant","job":"j1"}}"#,
        key.public_key()
    );
    let token = signed_raw(&key, HEADER, &claims);
    assert!(refusal(&key, &token).ends_with("the token is not valid before 2000"));
    assert!(key.public_key().verify::<Body>("grant", &token, 1_940).is_ok());
    // Without nbf, iat and exp alone bound the window (as for ES256).
    let claims = format!(
        r#"{{"iat":1000,"exp":1600,"iss":"{}","cloister.what":"grant","job":"j1"}}"#,
        key.public_key()
    );
    assert!(
        key.public_key().verify::<Body>("grant", &signed_raw(&key, HEADER, &claims), NOW).is_ok()
    );
}

#[test]
fn iat_exp_and_iss_are_required() {
    let key = key();
    let iss = key.public_key();
    for claims in [
        format!(r#"{{"exp":1600,"iss":"{iss}","cloister.what":"grant","job":"j1"}}"#),
        format!(r#"{{"iat":1000,"iss":"{iss}","cloister.what":"grant","job":"j1"}}"#),
        r#"{"iat":1000,"exp":1600,"cloister.what":"grant","job":"j1"}"#.to_owned(),
        format!(r#"{{"iat":"1000","exp":1600,"iss":"{iss}","cloister.what":"grant","job":"j1"}}"#),
        format!(r#"{{"iat":1000,"exp":1600,"iss":"{iss}"}}"#),
    ] {
        let err = refusal(&key, &signed_raw(&key, HEADER, &claims));
        assert!(err.contains("the claims do not parse"), "{claims}: {err}");
    }
}

#[test]
fn the_issuer_must_be_the_verifying_key() {
    let key = key();
    let other = Sm2SigningKey::generate().unwrap().public_key();
    let es256 = SigningKey::generate().public_key();
    for iss in [other.to_text(), es256.to_text(), String::new(), format!(" {}", key.public_key())] {
        let claims = format!(
            r#"{{"iat":1000,"exp":1600,"iss":"{iss}","cloister.what":"grant","job":"j1"}}"#
        );
        let err = refusal(&key, &signed_raw(&key, HEADER, &claims));
        assert!(err.contains("the issuer is"), "{iss}: {err}");
        assert!(err.ends_with("not this key"), "{err}");
    }
}

#[test]
fn any_changed_character_is_refused() {
    let key = key();
    let token = key.sign("receipt", body(), 1_000, Duration::from_secs(600)).unwrap();
    for i in 0..token.len() {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        if tampered != token {
            assert!(
                key.public_key().verify::<Body>("receipt", &tampered, NOW).is_err(),
                "position {i}"
            );
        }
    }
}

#[test]
fn tampered_header_payload_or_signature_is_refused() {
    let key = key().with_key_id("k1");
    let token = key.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    // A header naming another key id, well formed, with the original signature.
    let header = b64(r#"{"alg":"SM2SM3","typ":"JWT","kid":"k2"}"#);
    let swapped = format!("{header}.{}.{}", parts[1], parts[2]);
    assert!(refusal(&key, &swapped).ends_with("the signature does not verify"));
    // Other claims, well formed and still issued by this key, with the original signature.
    let claims = b64(claims_for(&key).replace("j1", "j2"));
    let swapped = format!("{}.{claims}.{}", parts[0], parts[2]);
    assert!(refusal(&key, &swapped).ends_with("the signature does not verify"));
    // Every bit of the signature.
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    for bit in 0..signature.len() * 8 {
        let mut flipped = signature.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let tampered = format!("{}.{}.{}", parts[0], parts[1], b64(&flipped));
        assert!(key.public_key().verify::<Body>("grant", &tampered, NOW).is_err(), "bit {bit}");
    }
    // The signature with base64 padding, or re-encoded as standard base64, is not the token.
    let padded = format!("{token}=");
    assert!(refusal(&key, &padded).ends_with("the signature is not unpadded base64url"));
}

#[test]
fn an_es256_token_is_refused_by_an_sm2_key_and_the_other_way_round() {
    let sm2 = key();
    let es256 = SigningKey::generate();
    let es256_token = es256.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
    let err = refusal(&sm2, &es256_token);
    assert!(err.ends_with("the token's algorithm is \"ES256\", not SM2SM3"), "{err}");
    let sm2_token = sm2.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
    assert!(es256.public_key().verify::<Body>("grant", &sm2_token, NOW).is_err());
    // Even an ES256 key whose text is the SM2 token's issuer does not exist: the prefixes
    // differ, so an SM2 issuer never names a P-256 key.
    assert!(VerifyingKey::from_text(&sm2.public_key().to_text()).is_err());
}

#[test]
fn alg_none_and_other_algs_are_refused() {
    let key = key();
    let claims = claims_for(&key);
    let unsigned = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims));
    assert!(refusal(&key, &unsigned).ends_with("the token's algorithm is \"none\", not SM2SM3"));
    // A good SM2 signature does not make another alg acceptable.
    for alg in ["none", "ES256", "SM2", "sm2sm3", "SM2SM3 ", "HS256"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let err = refusal(&key, &signed_raw(&key, &header, &claims));
        assert!(err.contains("the token's algorithm is"), "{alg}: {err}");
    }
    let err = refusal(&key, &signed_raw(&key, r#"{"typ":"JWT"}"#, &claims));
    assert!(err.contains("the header is not a JOSE header"), "{err}");
    let err = refusal(&key, &signed_raw(&key, r#"{"alg":7}"#, &claims));
    assert!(err.contains("the header is not a JOSE header"), "{err}");
}

#[test]
fn a_der_signature_is_refused_even_when_it_holds_the_right_r_and_s() {
    let key = key();
    // Find claims whose signature's DER form is 70 bytes (r and s both below 2^255).
    let (input, der) = (1_000u64..)
        .find_map(|iat| {
            let claims = format!(
                r#"{{"iat":{iat},"exp":9000,"iss":"{}","cloister.what":"grant","job":"j1"}}"#,
                key.public_key()
            );
            let input = format!("{}.{}", b64(HEADER), b64(claims));
            let signature: sm2::dsa::Signature =
                key.key.try_multipart_sign(&[input.as_bytes()]).unwrap();
            let der = signature.to_der();
            (der.as_bytes().len() == 70).then(|| (input, der.as_bytes().to_vec()))
        })
        .unwrap();
    let token = format!("{input}.{}", b64(&der));
    let err = refusal(&key, &token);
    assert!(err.ends_with("the signature is 70 bytes, not the 64-byte SM2 r || s"), "{err}");
}

#[test]
fn crit_and_b64_are_refused() {
    let key = key();
    let claims = claims_for(&key);
    for header in [
        r#"{"alg":"SM2SM3","crit":["exp"],"exp":1}"#,
        r#"{"alg":"SM2SM3","crit":[]}"#,
        r#"{"alg":"SM2SM3","crit":null}"#,
    ] {
        let err = refusal(&key, &signed_raw(&key, header, &claims));
        assert!(err.ends_with("no critical extension is understood"), "{header}: {err}");
    }
    let err = refusal(&key, &signed_raw(&key, r#"{"alg":"SM2SM3","b64":true}"#, &claims));
    assert!(err.ends_with("unencoded payloads are not accepted"), "{err}");
}

#[test]
fn typ_must_be_jwt_when_present() {
    let key = key();
    let claims = claims_for(&key);
    for header in [
        r#"{"alg":"SM2SM3"}"#,
        r#"{"alg":"SM2SM3","typ":"jwt"}"#,
        r#"{"alg":"SM2SM3","typ":"ear+jwt"}"#,
    ] {
        assert!(
            key.public_key()
                .verify::<Body>("grant", &signed_raw(&key, header, &claims), NOW)
                .is_ok(),
            "{header}"
        );
    }
    let err = refusal(&key, &signed_raw(&key, r#"{"alg":"SM2SM3","typ":"JOSE"}"#, &claims));
    assert!(err.ends_with("the header's typ is \"JOSE\", not JWT"), "{err}");
}

#[test]
fn malformed_headers_and_framing_are_refused() {
    let key = key();
    let claims = claims_for(&key);
    let good = signed_raw(&key, HEADER, &claims);
    // A repeated member (parsers could disagree about which one counts).
    let err = refusal(&key, &signed_raw(&key, r#"{"alg":"none","alg":"SM2SM3"}"#, &claims));
    assert!(err.contains("duplicate field `alg`"), "{err}");
    // A JSON array in place of the header object, claims that are not an object.
    let err = refusal(&key, &signed_raw(&key, r#"["SM2SM3"]"#, &claims));
    assert!(err.ends_with("the header is not a JOSE header: not a JSON object"), "{err}");
    let err = refusal(&key, &signed_raw(&key, HEADER, "[1000,1600]"));
    assert!(err.ends_with("the claims do not parse: not a JSON object"), "{err}");
    // Two, four or five parts.
    let parts: Vec<&str> = good.split('.').collect();
    for token in [
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}."),
        format!("{good}.{}", parts[2]),
        format!("{}.{}..{}", parts[0], parts[1], parts[2]),
    ] {
        assert!(refusal(&key, &token).ends_with("three parts separated by dots)"), "{token}");
    }
    // Base64 with padding or the standard alphabet.
    let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
    assert!(refusal(&key, &padded).ends_with("the header is not unpadded base64url"));
    // Oversized tokens and headers are refused before anything is decoded.
    let huge = format!("{}.{}", good, "A".repeat(MAX_TOKEN_LEN));
    assert!(refusal(&key, &huge).contains("longer than"));
    let long_header = format!("{}.{}.{}", "A".repeat(MAX_HEADER_LEN + 1), parts[1], parts[2]);
    assert!(refusal(&key, &long_header).contains("the header is longer than"));
}

#[test]
fn custom_claims_are_flattened_and_come_back() {
    let key = key();
    let claims = serde_json::json!({"job": "j1", "nested": {"a": [1, 2]}});
    let token = key.sign("grant", claims.clone(), 1_000, Duration::from_secs(60)).unwrap();
    let signed = key.public_key().verify::<serde_json::Value>("grant", &token, 1_010).unwrap();
    assert_eq!(signed.claims, claims);
    // Claims that are not a JSON object cannot be signed.
    assert!(key.sign("grant", 7u32, 1_000, Duration::from_secs(60)).is_err());
    assert!(key.sign("grant", body(), u64::MAX, Duration::from_secs(60)).is_err());
}

// ---- Keys ----

#[test]
fn key_text_forms_round_trip() {
    let key = key();
    let text = key.to_text();
    assert!(text.starts_with("cloister-sm2sig-secret:"));
    assert_eq!(text.len(), "cloister-sm2sig-secret:".len() + 43);
    let again = Sm2SigningKey::from_text(&format!("  {}\n", text.as_str())).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    let public = key.public_key().to_text();
    assert!(public.starts_with("cloister-sm2sig:"));
    assert_eq!(public.len(), "cloister-sm2sig:".len() + 44);
    assert_eq!(Sm2VerifyingKey::from_text(&public).unwrap(), key.public_key());
    assert_eq!(public.parse::<Sm2VerifyingKey>().unwrap(), key.public_key());
    // Debug names the public key only.
    let debug = format!("{key:?}");
    assert_eq!(debug, format!("Sm2SigningKey({public})"));
    assert!(!debug.contains(&text[SM2_SECRET_PREFIX.len()..]));
}

#[test]
fn envelope_keys_are_refused_as_signing_keys_by_name() {
    let key = key();
    let body = &key.public_key().to_text()[SM2_PUBLIC_PREFIX.len()..];
    let envelope_public = format!("cloister-sm2:{body}");
    let err = Sm2VerifyingKey::from_text(&envelope_public).unwrap_err();
    assert!(matches!(err, SignError::EnvelopeKeyGiven { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "an SM2 envelope recipient key (`cloister-sm2:`) is an envelope encryption key, not a \
         signing key: an SM2 public signing key (`cloister-sm2sig:`) is needed (envelope keys \
         never sign, signing keys never receive envelopes)"
    );
    let secret_body = &key.to_text()[SM2_SECRET_PREFIX.len()..];
    let envelope_secret = format!("cloister-sm2-secret:{secret_body}");
    let err = Sm2SigningKey::from_text(&envelope_secret).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "an SM2 envelope secret key (`cloister-sm2-secret:`) is an envelope encryption key"
        ),
        "{err}"
    );
    let err = Sm2SigningKey::from_text("cloister-hpke-secret-x25519:AAAA").unwrap_err();
    assert!(matches!(err, SignError::EnvelopeKeyGiven { .. }), "{err:?}");
}

#[test]
fn keys_of_another_suite_or_role_are_refused_by_name() {
    let key = key();
    let err = Sm2VerifyingKey::from_text(&key.to_text()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "an SM2 secret signing key (`cloister-sm2sig-secret:`) was given where an SM2 public \
         signing key (`cloister-sm2sig:`) is needed"
    );
    let err = Sm2SigningKey::from_text(&key.public_key().to_text()).unwrap_err();
    assert!(matches!(err, SignError::WrongKeyKind { .. }), "{err:?}");
    let es256 = SigningKey::generate();
    let err = Sm2VerifyingKey::from_text(&es256.public_key().to_text()).unwrap_err();
    assert!(
        err.to_string().starts_with("an ES256 public signing key (`cloister-es256:`) was given")
    );
    let err = Sm2SigningKey::from_text(&es256.to_text()).unwrap_err();
    assert!(matches!(err, SignError::WrongKeyKind { .. }), "{err:?}");
    let err = Sm2VerifyingKey::from_text("ssh-ed25519 AAAA").unwrap_err();
    assert!(matches!(err, SignError::UnsupportedKey { .. }), "{err:?}");
    // The ES256 parsers keep refusing SM2 signing keys.
    assert!(VerifyingKey::from_text(&key.public_key().to_text()).is_err());
    assert!(SigningKey::from_text(&key.to_text()).is_err());
}

#[test]
fn malformed_key_bodies_are_refused() {
    let key = key();
    let public = Sm2VerifyingKey::from_text;
    let uncompressed = key.public_key().uncompressed;
    for (text, reason) in [
        (format!("{SM2_PUBLIC_PREFIX}!!"), "not unpadded base64url"),
        (format!("{SM2_PUBLIC_PREFIX}{}", b64(uncompressed)), "not a 33-byte compressed point"),
        (format!("{SM2_PUBLIC_PREFIX}{}", b64([2u8; 32])), "not a 33-byte compressed point"),
        (format!("{SM2_PUBLIC_PREFIX}{}", b64([4u8; 33])), "not a 33-byte compressed point"),
    ] {
        let err = public(&text).unwrap_err().to_string();
        assert!(err.contains(reason), "{text}: {err}");
    }
    // An x with no point above it: some of 02 ‖ 0…0k is off the curve.
    let off_curve = (0u8..=255)
        .map(|k| {
            let mut bytes = [0u8; 33];
            bytes[0] = 2;
            bytes[32] = k;
            format!("{SM2_PUBLIC_PREFIX}{}", b64(bytes))
        })
        .find(|text| public(text).is_err())
        .unwrap();
    assert!(public(&off_curve).unwrap_err().to_string().contains("not a point on the SM2 curve"));
    let secret = Sm2SigningKey::from_text;
    let mut n_minus_1 = unhex(CURVE_N);
    n_minus_1[31] -= 1;
    assert!(secret(&format!("{SM2_SECRET_PREFIX}{}", b64(&n_minus_1))).is_ok());
    for (bytes, reason) in [
        (vec![0u8; 32], "not a scalar between 1 and n-1"),
        (unhex(CURVE_N), "not a scalar between 1 and n-1"),
        (vec![0xff; 32], "not a scalar between 1 and n-1"),
        (vec![1u8; 31], "not 32 bytes"),
        (vec![1u8; 33], "not 32 bytes"),
    ] {
        let err = secret(&format!("{SM2_SECRET_PREFIX}{}", b64(&bytes))).unwrap_err().to_string();
        assert!(err.contains(reason), "{bytes:?}: {err}");
    }
}

#[test]
fn fingerprints_are_sm3_of_the_compressed_point() {
    let key = key().public_key();
    assert_eq!(key.fingerprint(), <[u8; 32]>::from(Sm3::digest(key.compressed)));
    let hex = key.fingerprint_hex();
    assert_eq!(hex, hex::encode(key.fingerprint()));
    assert_eq!(Sm2VerifyingKey::from_text(&key.to_text()).unwrap().fingerprint_hex(), hex);
    assert_ne!(Sm2SigningKey::generate().unwrap().public_key().fingerprint(), key.fingerprint());
}

#[test]
fn derived_keys_depend_on_material_and_label_only() {
    let a = Sm2SigningKey::derive(b"material one", "purpose a").unwrap();
    let again = Sm2SigningKey::derive(b"material one", "purpose a").unwrap();
    assert_eq!(a.public_key(), again.public_key());
    let other_label = Sm2SigningKey::derive(b"material one", "purpose b").unwrap();
    let other_material = Sm2SigningKey::derive(b"material two", "purpose a").unwrap();
    assert_ne!(a.public_key(), other_label.public_key());
    assert_ne!(a.public_key(), other_material.public_key());
    // Not the ES256 derivation's scalar.
    let es256 = SigningKey::derive(b"material one", "purpose a").unwrap();
    assert_ne!(
        a.to_text()[SM2_SECRET_PREFIX.len()..],
        es256.to_text()["cloister-es256-secret:".len()..]
    );
    let token = a.sign("grant", body(), 1_000, Duration::from_secs(60)).unwrap();
    assert!(again.public_key().verify::<Body>("grant", &token, 1_010).is_ok());
    assert!(other_label.public_key().verify::<Body>("grant", &token, 1_010).is_err());
}

// ---- JWKs ----

#[test]
fn jwk_round_trips_with_its_members() {
    let key = key().public_key();
    let jwk = key.to_jwk("ear-1");
    let (x, y) = key.coordinates();
    assert_eq!(
        jwk,
        serde_json::json!({
            "kty": "EC", "crv": "SM2", "x": b64(x), "y": b64(y),
            "alg": "SM2SM3", "use": "sig", "kid": "ear-1"
        })
    );
    assert_eq!(Sm2VerifyingKey::from_jwk(&jwk).unwrap(), key);
}

#[test]
fn p256_and_sm2_jwks_are_not_mistaken_for_each_other() {
    let sm2 = key().public_key();
    let es256 = SigningKey::generate().public_key();
    let err = Sm2VerifyingKey::from_jwk(&es256.to_jwk("k")).unwrap_err();
    assert!(matches!(err, SignError::WrongKeyKind { .. }), "{err:?}");
    assert!(VerifyingKey::from_jwk(&sm2.to_jwk("k")).is_err());
    // Relabelling the curve does not help: the coordinates are on one curve only.
    let mut relabelled = es256.to_jwk("k");
    relabelled["crv"] = "SM2".into();
    relabelled["alg"] = "SM2SM3".into();
    assert!(Sm2VerifyingKey::from_jwk(&relabelled).is_err());
    let mut relabelled = sm2.to_jwk("k");
    relabelled["crv"] = "P-256".into();
    relabelled["alg"] = "ES256".into();
    assert!(VerifyingKey::from_jwk(&relabelled).is_err());
}

#[test]
fn bad_jwks_are_refused_with_a_reason() {
    let key = key();
    let good = key.public_key().to_jwk("k");
    let with = |name: &str, value: serde_json::Value| {
        let mut jwk = good.clone();
        jwk[name] = value;
        jwk
    };
    let without = |name: &str| {
        let mut jwk = good.clone();
        jwk.as_object_mut().unwrap().remove(name);
        jwk
    };
    let public = key.public_key();
    let (x, _) = public.coordinates();
    let cases = [
        (serde_json::json!([good.clone()]), "not a JSON object"),
        (with("kty", "OKP".into()), "kty is not EC"),
        (without("crv"), "crv is not SM2"),
        (with("crv", "SM2P256V1".into()), "crv is not SM2"),
        (with("d", b64(&key.to_text()[..]).into()), "private key (d)"),
        (with("n", "AQAB".into()), "members of another key type"),
        (with("alg", "ES256".into()), "alg is not SM2SM3"),
        (with("use", "enc".into()), "use is not sig"),
        (with("key_ops", serde_json::json!(["sign"])), "key_ops"),
        (with("key_ops", serde_json::json!(["verify", "verify"])), "key_ops"),
        (without("y"), "missing"),
        (with("x", b64(&x[1..]).into()), "not exactly 32 bytes"),
        (with("x", format!("{}=", b64(x)).into()), "not unpadded base64url"),
        (with("y", b64([0u8; 32]).into()), "not a point on the SM2 curve"),
    ];
    for (jwk, reason) in cases {
        let err = Sm2VerifyingKey::from_jwk(&jwk).unwrap_err().to_string();
        assert!(err.contains(reason), "{jwk}: {err}");
    }
    // Optional members may be left out.
    let minimal = serde_json::json!({"kty": "EC", "crv": "SM2", "x": good["x"], "y": good["y"]});
    assert_eq!(Sm2VerifyingKey::from_jwk(&minimal).unwrap(), key.public_key());
    assert!(Sm2VerifyingKey::from_jwk(&with("key_ops", serde_json::json!(["verify"]))).is_ok());
}

// ---- Raw bytes ----

const DOMAIN: &str = "cloister-test-bytes v1";

#[test]
fn bytes_signatures_round_trip_and_are_deterministic() {
    let key = key();
    let signature = key.sign_bytes(DOMAIN, b"seq=7").unwrap();
    assert_eq!(signature, key.sign_bytes(DOMAIN, b"seq=7").unwrap());
    assert_eq!(URL_SAFE_NO_PAD.decode(&signature).unwrap().len(), 64);
    key.public_key().verify_bytes(DOMAIN, b"seq=7", &signature).unwrap();
    let again = Sm2SigningKey::from_text(&key.to_text()).unwrap();
    assert_eq!(again.sign_bytes(DOMAIN, b"seq=7").unwrap(), signature);
    // The framing is the ES256 one: prefix, domain length, domain, message.
    let len = domain_len(DOMAIN);
    let raw = URL_SAFE_NO_PAD.decode(&signature).unwrap();
    let framed = [BYTES_FRAMING_PREFIX, &len, DOMAIN.as_bytes(), b"seq=7"].concat();
    assert_eq!(key.public_key().verify_parts(&[&framed], &raw), Ok(()));
}

const BYTES_FRAMING_PREFIX: &[u8] = b"cloister-sign-bytes v1\0";

#[test]
fn bytes_signature_with_another_key_domain_or_message_is_refused() {
    let key = key();
    let other = Sm2SigningKey::generate().unwrap().public_key();
    let signature = key.sign_bytes(DOMAIN, b"seq=7").unwrap();
    let err = other.verify_bytes(DOMAIN, b"seq=7", &signature).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the {DOMAIN} signature does not verify with {other}: it was not made by this key \
             over this domain and message"
        )
    );
    let public = key.public_key();
    assert!(public.verify_bytes("cloister-test-bytes v2", b"seq=7", &signature).is_err());
    assert!(public.verify_bytes(DOMAIN, b"seq=8", &signature).is_err());
    let split = key.sign_bytes("ab", b"c").unwrap();
    assert!(public.verify_bytes("a", b"bc", &split).is_err());
    public.verify_bytes("ab", b"c", &split).unwrap();
    // A signature over the unframed message is not a raw-byte signature.
    let bare = b64(key.sign_parts(&[b"seq=7"]).unwrap());
    assert!(public.verify_bytes(DOMAIN, b"seq=7", &bare).is_err());
}

#[test]
fn bytes_signature_with_any_flipped_bit_or_bad_encoding_is_refused() {
    let key = key();
    let public = key.public_key();
    let signature = key.sign_bytes(DOMAIN, b"seq=7").unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&signature).unwrap();
    for bit in 0..raw.len() * 8 {
        let mut flipped = raw.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(public.verify_bytes(DOMAIN, b"seq=7", &b64(&flipped)).is_err(), "bit {bit}");
    }
    let err = public.verify_bytes(DOMAIN, b"m", "not base64!").unwrap_err();
    assert!(err.to_string().ends_with("the signature is not unpadded base64url"), "{err}");
    let err = public.verify_bytes(DOMAIN, b"m", &b64([1u8; 63])).unwrap_err();
    assert!(err.to_string().ends_with("not a 64-byte SM2 r || s value"), "{err}");
    let err = public.verify_bytes(DOMAIN, b"m", &b64([0u8; 64])).unwrap_err();
    assert!(err.to_string().ends_with("not a 64-byte SM2 r || s value"), "{err}");
}

// ---- Never a panic ----

fn fixed_key() -> Sm2SigningKey {
    Sm2SigningKey::derive(b"the proptest key", "test").unwrap()
}

proptest! {
    #[test]
    fn arbitrary_text_never_verifies_nor_panics(text in ".{0,400}") {
        let key = fixed_key().public_key();
        prop_assert!(key.verify::<serde_json::Value>("token", &text, NOW).is_err());
        prop_assert!(key.verify_bytes(DOMAIN, b"m", &text).is_err());
        let _ = Sm2VerifyingKey::from_text(&text);
        let _ = Sm2SigningKey::from_text(&text);
    }

    #[test]
    fn arbitrary_parts_never_verify_nor_panic(
        header in proptest::collection::vec(any::<u8>(), 0..200),
        claims in proptest::collection::vec(any::<u8>(), 0..200),
        signature in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let key = fixed_key().public_key();
        let token = format!("{}.{}.{}", b64(&header), b64(&claims), b64(&signature));
        prop_assert!(key.verify::<serde_json::Value>("token", &token, NOW).is_err());
    }

    #[test]
    fn well_formed_tokens_with_a_random_signature_never_verify(
        alg in prop_oneof![
            Just("SM2SM3".to_owned()),
            Just("ES256".to_owned()),
            Just("none".to_owned()),
            "[A-Z0-9]{0,8}"
        ],
        iat in any::<u64>(),
        exp in any::<u64>(),
        signature in proptest::collection::vec(any::<u8>(), 64..=64),
        extra in "[a-z]{0,8}",
    ) {
        let key = fixed_key();
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","{extra}":1}}"#);
        let claims = format!(
            r#"{{"iat":{iat},"exp":{exp},"iss":"{}","job":"{extra}"}}"#,
            key.public_key()
        );
        let token = format!("{}.{}.{}", b64(header), b64(claims), b64(&signature));
        prop_assert!(key.public_key().verify::<serde_json::Value>("token", &token, NOW).is_err());
    }

    #[test]
    fn arbitrary_jwks_never_panic(
        x in proptest::collection::vec(any::<u8>(), 0..40),
        y in proptest::collection::vec(any::<u8>(), 0..40),
        crv in prop_oneof![Just("SM2".to_owned()), Just("P-256".to_owned()), "[A-Z0-9-]{0,8}"],
    ) {
        let jwk = serde_json::json!({"kty": "EC", "crv": crv, "x": b64(&x), "y": b64(&y)});
        let _ = Sm2VerifyingKey::from_jwk(&jwk);
    }
}
