//! Arm CCA driver: real tokens (trustee, rust-ccatoken) against their CPAKs, golden claims, one
//! negative test per check, and synthetic tokens for what the real ones do not exercise (ES256,
//! COSE_Key RAK on P-256, debug lifecycle states, unknown or missing claims, every realm hash
//! algorithm, the tag-907 CMW collection, the realm profile's RAK encoding).

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use cloister_types::{Claims, TcbStatus, TeeKind};
use cloister_verify::cca::TokenPart;
use cloister_verify::{
    CcaError, Collateral, Inputs, TrustAnchors, VerifyError, verify_vendor_evidence,
};
use common::{assert_golden, at, vector};

/// CCA tokens carry no time; any pinned time gives the same result.
const NOW: &str = "2025-06-01T00:00:00Z";

const TRUSTEE_TOKEN: &str = "cca/trustee_cca-example-token.cbor";
const TOKEN_01: &str = "cca/rustccatoken_cca-token-01.cbor";
const TOKEN_FFM: &str = "cca/rustccatoken_cca-token-draft-ffm-00.cbor";
const TOKEN_BUG_33: &str = "cca/rustccatoken_bug-33-repro.cbor";

fn anchors(files: &[&str]) -> TrustAnchors {
    files
        .iter()
        .fold(TrustAnchors::new(), |a, f| a.with_root(TeeKind::Cca, vector(&format!("cca/{f}"))))
}

fn verify_at(token: &[u8], anchors: &TrustAnchors, now: i64) -> Result<Claims, VerifyError> {
    let collateral = Collateral::new();
    let inputs = Inputs { collateral: &collateral, anchors, now_unix: now };
    verify_vendor_evidence(TeeKind::Cca, token, &inputs)
}

fn verify(token: &[u8], anchors: &TrustAnchors) -> Result<Claims, VerifyError> {
    verify_at(token, anchors, at(NOW))
}

fn cca_error(result: Result<Claims, VerifyError>) -> CcaError {
    match result {
        Ok(_) => panic!("expected a cca error, the token verified"),
        Err(VerifyError::Cca(e)) => {
            assert!(e.to_string().starts_with("cca: "), "{e}");
            e
        }
        Err(other) => panic!("expected a cca error, got {other}"),
    }
}

fn vendor<'a>(claims: &'a Claims, part: &str, field: &str) -> &'a serde_json::Value {
    &claims.vendor["cca"][part][field]
}

/// Index of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

fn flipped(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= 0x01;
    out
}

// ---------------------------------------------------------------------------------------------
// Real tokens that verify.

#[test]
fn trustee_example_token_verifies_with_trustee_cpak_jwk() {
    let claims = verify(&vector(TRUSTEE_TOKEN), &anchors(&["trustee_cpak-pub.json"])).unwrap();
    assert_eq!(claims.tee, TeeKind::Cca);
    assert_eq!(
        claims.measurement.to_string(),
        "ae87fbf7f105e71a7827cb6f0896889c73d2beaf4830d4f9cb05e3e96c3fc7b4faa04caf36a26bd094cf9c7b\
         738617e4c189aaee184dedda5d7a03c39dbdac7c"
    );
    assert_eq!(
        claims.report_data.to_string(),
        "57e979ae2618de0c1ab73144c440d741cf9236dc9d52ed190053382a4d190252f9f0370403c35dcb155fb436\
         2d73c66d5b0494bf939315d3dc52b8cdc8b85a96"
    );
    assert_eq!(
        vendor(&claims, "platform", "implementation_id"),
        "7f454c4602010100000000000000000003003e00010000005058000000000000"
    );
    assert_eq!(
        claims.platform_id.as_ref().unwrap().to_string(),
        "0107060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    );
    // Lifecycle 0x3003 is "secured": not debug.
    assert_eq!(vendor(&claims, "platform", "lifecycle"), 0x3003);
    assert_eq!(vendor(&claims, "platform", "lifecycle_name"), "secured");
    assert!(!claims.debug);
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert!(claims.advisories.is_empty());
    assert_eq!(claims.signer, None);
    assert_eq!(vendor(&claims, "realm", "hash_algo"), "sha-512");
    assert_eq!(vendor(&claims, "realm", "public_key_format"), "sec1");
    assert_eq!(
        vendor(&claims, "platform", "challenge"),
        "b5973cb68baa9fc55558786b7ec67f69e40df5ba5aa921cd0c27f40587a011ea"
    );
    assert_eq!(claims.vendor.keys().collect::<Vec<_>>(), ["cca"]);
    assert_golden("cca_trustee_example_token", &claims);
}

#[test]
fn trustee_example_token_verifies_with_trustee_trust_anchor_store() {
    // The store entry carries implementation and instance ids; both match the token.
    let with_store =
        verify(&vector(TRUSTEE_TOKEN), &anchors(&["trustee_cca_tastore.json"])).unwrap();
    let with_jwk = verify(&vector(TRUSTEE_TOKEN), &anchors(&["trustee_cpak-pub.json"])).unwrap();
    assert_eq!(with_store, with_jwk);
}

#[test]
fn token_01_verifies_with_tfa_trust_anchor() {
    let claims = verify(&vector(TOKEN_01), &anchors(&["rustccatoken_ta-tfa.json"])).unwrap();
    assert_eq!(
        vendor(&claims, "platform", "challenge"),
        "b5973cb68baa9fc55558786b7ec67f69e40df5ba5aa921cd0c27f40587a011ea"
    );
    assert_eq!(claims.report_data.0, vec![0xab; 64]);
    assert_eq!(claims.measurement.0, vec![0; 32]);
    assert_eq!(vendor(&claims, "platform", "profile"), "http://arm.com/CCA-SSD/1.0.0");
    assert_eq!(vendor(&claims, "platform", "verification_service"), "whatever.com");
    assert_eq!(vendor(&claims, "platform", "sw_components").as_array().unwrap().len(), 4);
    assert_eq!(vendor(&claims, "platform", "sw_components")[0]["measurement_type"], "BL");
    assert_eq!(vendor(&claims, "platform", "sw_components")[0]["version"], "3.4.2");
    assert_eq!(vendor(&claims, "platform", "sw_components")[0]["hash_algo"], "sha-256");
    assert!(vendor(&claims, "platform", "sw_components")[1]["hash_algo"].is_null());
    assert_eq!(
        vendor(&claims, "realm", "personalization_value").as_str().unwrap(),
        hex::encode(b"The quick brown fox jumps over 13 lazy dogs.The quick brown fox ")
    );
    assert!(vendor(&claims, "realm", "profile").is_null());
    assert!(!claims.debug);
    assert_golden("cca_rustccatoken_token_01", &claims);
    // The bare CPAK JWK of the same key gives the same claims.
    let with_jwk = verify(&vector(TOKEN_01), &anchors(&["rustccatoken_cpak.json"])).unwrap();
    assert_eq!(with_jwk, claims);
}

#[test]
fn draft_ffm_00_token_with_cose_key_rak_verifies() {
    let claims = verify(&vector(TOKEN_FFM), &anchors(&["rustccatoken_ta-tfa.json"])).unwrap();
    assert_eq!(
        claims.measurement.to_string(),
        "311314ab73620350cf758834ae5c65d9e8c2dc7febe6e7d9654bbe864e300d49"
    );
    assert_eq!(vendor(&claims, "platform", "profile"), "tag:arm.com,2023:cca_platform#1.0.0");
    assert_eq!(vendor(&claims, "realm", "profile"), "tag:arm.com,2023:realm#1.0.0");
    assert_eq!(vendor(&claims, "realm", "public_key_format"), "cose_key");
    assert_eq!(
        vendor(&claims, "platform", "challenge"),
        "0d22e08a98469058486318283489bdb36f09dbefeb1864df433fa6e54ea2d711"
    );
    assert_eq!(vendor(&claims, "realm", "extensible_measurements").as_array().unwrap().len(), 4);
    assert_golden("cca_rustccatoken_draft_ffm_00", &claims);
}

#[test]
fn pem_cpak_is_the_tfa_key_and_verifies_the_same_tokens() {
    let pem = anchors(&["ccatoken_tfrmm_cca_platform.pub"]);
    let tfa = anchors(&["rustccatoken_ta-tfa.json"]);
    for token in [TOKEN_01, TOKEN_FFM, TRUSTEE_TOKEN] {
        let with_pem = verify(&vector(token), &pem).unwrap();
        let with_tfa = verify(&vector(token), &tfa).unwrap();
        assert_eq!(with_pem, with_tfa, "{token}");
    }
}

#[test]
fn the_verification_time_does_not_matter() {
    let token = vector(TOKEN_01);
    let anchors = anchors(&["rustccatoken_ta-tfa.json"]);
    let early = verify_at(&token, &anchors, at("1971-01-01T00:00:00Z")).unwrap();
    let late = verify_at(&token, &anchors, at("2099-01-01T00:00:00Z")).unwrap();
    assert_eq!(early, late);
}

#[test]
fn each_listed_cpak_is_tried() {
    // A non-matching key first (the P-256 anchor of rust-ccatoken's ta.json), then the right one.
    let anchors = anchors(&["rustccatoken_ta.json", "trustee_cpak-pub.json"]);
    verify(&vector(TRUSTEE_TOKEN), &anchors).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The binding.

#[test]
fn bug_33_platform_signature_verifies_but_the_realm_binding_fails() {
    let token = vector(TOKEN_BUG_33);
    let error = cca_error(verify(&token, &anchors(&["rustccatoken_ta-tfa.json"])));
    assert!(matches!(error, CcaError::Binding { alg: "sha-256", .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "cca: realm token is not bound to the platform token: the platform challenge \
         07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918 is not the sha-256 \
         hash of the realm public key \
         (b5973cb68baa9fc55558786b7ec67f69e40df5ba5aa921cd0c27f40587a011ea)"
    );
    // The binding is checked only once the platform signature verified: with a CPAK that does
    // not sign it, the token fails at the signature instead.
    let error = cca_error(verify(&token, &anchors(&["rustccatoken_ta.json"])));
    assert!(matches!(error, CcaError::PlatformSignature { tried: 1 }), "{error}");
}

#[test]
fn flipped_byte_in_realm_public_key_breaks_the_binding() {
    let token = vector(TOKEN_01);
    // The RAK (SEC1 point) starts 04 76 f9 88 09.
    let index = find(&token, &[0x04, 0x76, 0xf9, 0x88, 0x09]) + 10;
    let error = cca_error(verify(&flipped(&token, index), &anchors(&["rustccatoken_ta-tfa.json"])));
    assert!(matches!(error, CcaError::Binding { .. }), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Signatures and trust anchors.

#[test]
fn flipped_byte_in_platform_payload_fails_the_platform_signature() {
    let token = vector(TOKEN_01);
    // Inside the implementation id (7f454c46…), a claim of the platform token.
    let index = find(&token, &hex::decode("7f454c4602010100").unwrap()) + 3;
    let error = cca_error(verify(&flipped(&token, index), &anchors(&["rustccatoken_ta-tfa.json"])));
    assert!(matches!(error, CcaError::PlatformSignature { tried: 1 }), "{error}");
    assert_eq!(
        error.to_string(),
        "cca: platform token signature does not verify with any trusted CPAK (1 tried)"
    );
}

#[test]
fn flipped_byte_in_platform_signature_fails_the_platform_signature() {
    let token = vector(TOKEN_01);
    // The platform signature starts 201d3035e1cf (see rustccatoken_cca-token-01.diag).
    let index = find(&token, &hex::decode("201d3035e1cfa52a").unwrap()) + 20;
    let error = cca_error(verify(&flipped(&token, index), &anchors(&["rustccatoken_ta-tfa.json"])));
    assert!(matches!(error, CcaError::PlatformSignature { .. }), "{error}");
}

#[test]
fn flipped_byte_in_realm_payload_fails_the_realm_signature() {
    let token = vector(TOKEN_01);
    // Inside the realm challenge (0xAB × 64).
    let index = find(&token, &[0xab; 64]) + 17;
    let error = cca_error(verify(&flipped(&token, index), &anchors(&["rustccatoken_ta-tfa.json"])));
    assert!(matches!(error, CcaError::RealmSignature), "{error}");
    assert_eq!(
        error.to_string(),
        "cca: realm token signature does not verify with the realm public key (RAK) it carries"
    );
}

#[test]
fn flipped_byte_in_realm_signature_fails_the_realm_signature() {
    let token = vector(TRUSTEE_TOKEN);
    // The realm signature is the last item of the token.
    let error =
        cca_error(verify(&flipped(&token, token.len() - 5), &anchors(&["trustee_cpak-pub.json"])));
    assert!(matches!(error, CcaError::RealmSignature), "{error}");
}

#[test]
fn wrong_cpak_is_refused() {
    // rust-ccatoken's ta.json holds a P-256 CPAK of another platform: it signs none of these.
    for token in [TRUSTEE_TOKEN, TOKEN_01, TOKEN_FFM] {
        let error = cca_error(verify(&vector(token), &anchors(&["rustccatoken_ta.json"])));
        assert!(matches!(error, CcaError::PlatformSignature { tried: 1 }), "{token}: {error}");
    }
}

#[test]
fn missing_trust_anchor_is_refused() {
    let error = cca_error(verify(&vector(TRUSTEE_TOKEN), &TrustAnchors::new()));
    assert!(matches!(error, CcaError::NoTrustAnchor), "{error}");
    assert!(error.to_string().starts_with("cca: no CPAK trust anchor"), "{error}");
    // Anchors of another TEE do not count.
    let other = TrustAnchors::new().with_root(TeeKind::Snp, vector("cca/trustee_cpak-pub.json"));
    let error = cca_error(verify(&vector(TRUSTEE_TOKEN), &other));
    assert!(matches!(error, CcaError::NoTrustAnchor), "{error}");
}

#[test]
fn anchor_with_mismatching_implementation_id_is_refused() {
    let mut entry: serde_json::Value =
        serde_json::from_slice(&vector("cca/rustccatoken_ta-tfa.json")).unwrap();
    entry[0]["implementation-id"] = "aa".repeat(32).into();
    let anchors = TrustAnchors::new().with_root(TeeKind::Cca, entry.to_string().into_bytes());
    let error = cca_error(verify(&vector(TOKEN_01), &anchors));
    assert!(matches!(error, CcaError::AnchorIdMismatch { field: "implementation id", .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "cca: platform token signature verifies with a trusted CPAK, but the token's \
             implementation id 7f454c4602010100000000000000000003003e00010000005058000000000000 \
             does not match the trust anchor's {}",
            "aa".repeat(32)
        )
    );
}

#[test]
fn anchor_with_mismatching_instance_id_is_refused() {
    let mut entry: serde_json::Value =
        serde_json::from_slice(&vector("cca/trustee_cca_tastore.json")).unwrap();
    entry[0]["instance-id"] = format!("01{}", "AA".repeat(32)).into();
    let anchors = TrustAnchors::new().with_root(TeeKind::Cca, entry.to_string().into_bytes());
    let error = cca_error(verify(&vector(TRUSTEE_TOKEN), &anchors));
    assert!(matches!(error, CcaError::AnchorIdMismatch { field: "instance id", .. }), "{error}");
    // With a second anchor for the same key and no restriction, the token verifies.
    let anchors = anchors.with_root(TeeKind::Cca, vector("cca/trustee_cpak-pub.json"));
    verify(&vector(TRUSTEE_TOKEN), &anchors).unwrap();
}

#[test]
fn unreadable_anchors_are_refused_not_skipped() {
    let cases: [(&[u8], &str); 5] = [
        (b"not a key", "not a DER SubjectPublicKeyInfo"),
        (br#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#, "kty is not \"EC\""),
        (br#"{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}"#, "unsupported JWK curve"),
        (br#"[]"#, "empty"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PUBLIC KEY"),
    ];
    for (bytes, expected) in cases {
        // A good anchor beside it does not make an unreadable one acceptable.
        let anchors = TrustAnchors::new()
            .with_root(TeeKind::Cca, vector("cca/trustee_cpak-pub.json"))
            .with_root(TeeKind::Cca, bytes.to_vec());
        let error = cca_error(verify(&vector(TRUSTEE_TOKEN), &anchors));
        assert!(matches!(error, CcaError::BadTrustAnchor { index: 1, .. }), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
    // A private JWK is refused.
    let mut jwk: serde_json::Value =
        serde_json::from_slice(&vector("cca/trustee_cpak-pub.json")).unwrap();
    jwk["d"] = "AAAA".into();
    let anchors = TrustAnchors::new().with_root(TeeKind::Cca, jwk.to_string().into_bytes());
    let error = cca_error(verify(&vector(TRUSTEE_TOKEN), &anchors));
    assert!(error.to_string().contains("private key"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Malformed input.

#[test]
fn not_tag_399_is_refused() {
    let mut token = vector(TRUSTEE_TOKEN);
    assert_eq!(token[..3], [0xd9, 0x01, 0x8f]); // tag(399)
    token[2] = 0x90; // tag(400)
    let error = cca_error(verify(&token, &anchors(&["trustee_cpak-pub.json"])));
    assert!(matches!(error, CcaError::NotCcaToken(_)), "{error}");
    assert!(
        error.to_string().contains("expected CBOR tag 399 or 907 (CMW collection), got tag 400"),
        "{error}"
    );
    // The map without its tag.
    let error =
        cca_error(verify(&vector(TRUSTEE_TOKEN)[3..], &anchors(&["trustee_cpak-pub.json"])));
    assert!(
        error.to_string().contains("expected CBOR tag 399 or 907 (CMW collection), got a map"),
        "{error}"
    );
}

#[test]
fn garbage_is_refused() {
    let anchors = anchors(&["trustee_cpak-pub.json"]);
    for garbage in [&b""[..], b"hello", b"{\"json\": true}", &[0xff; 16], &[0xd9, 0x01, 0x8f]] {
        let error = cca_error(verify(garbage, &anchors));
        assert!(matches!(error, CcaError::NotCcaToken(_)), "{error}");
    }
}

#[test]
fn truncated_token_is_refused() {
    let token = vector(TOKEN_01);
    let anchors = anchors(&["rustccatoken_ta-tfa.json"]);
    let error = cca_error(verify(&token[..token.len() - 1], &anchors));
    assert!(matches!(error, CcaError::NotCcaToken(_)), "{error}");
    let error = cca_error(verify(&token[..600], &anchors));
    assert!(matches!(error, CcaError::NotCcaToken(_)), "{error}");
    // Trailing bytes after the token are refused too.
    let mut extended = token.clone();
    extended.push(0);
    let error = cca_error(verify(&extended, &anchors));
    assert!(error.to_string().contains("extraneous data"), "{error}");
}

#[test]
fn parser_never_panics_on_truncations_and_flips() {
    let token = vector(TOKEN_FFM);
    for len in 0..token.len() {
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Cca, &token[..len]);
    }
    for index in 0..token.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut bad = token.clone();
            bad[index] ^= mask;
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Cca, &bad);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tag-907 CMW collection (draft-ffm-rats-cca-token): the real tokens' COSE_Sign1 messages
// re-wrapped as CMW records verify exactly like the tag-399 form, and malformed collections are
// refused.

mod cmw {
    use super::*;
    use coset::CborSerializable as _;
    use coset::cbor::value::Value;

    fn int(i: i64) -> Value {
        Value::Integer(i.into())
    }

    /// The platform and realm COSE_Sign1 bytes of a tag-399 token.
    fn tokens(tag_399: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let Value::Tag(399, inner) = Value::from_slice(tag_399).unwrap() else { panic!() };
        let Value::Map(entries) = *inner else { panic!() };
        let get = |key: i64| {
            entries
                .iter()
                .find_map(|(k, v)| match (k, v) {
                    (Value::Integer(k), Value::Bytes(b)) if i128::from(*k) == i128::from(key) => {
                        Some(b.clone())
                    }
                    _ => None,
                })
                .unwrap()
        };
        (get(44234), get(44241))
    }

    fn record(bytes: Vec<u8>) -> Value {
        Value::Array(vec![int(263), Value::Bytes(bytes)])
    }

    fn cmw(entries: Vec<(Value, Value)>) -> Vec<u8> {
        Value::Tag(907, Box::new(Value::Map(entries))).to_vec().unwrap()
    }

    fn rewrapped(tag_399: &[u8]) -> Vec<u8> {
        let (platform, realm) = tokens(tag_399);
        cmw(vec![(int(44234), record(platform)), (int(44241), record(realm))])
    }

    #[test]
    fn real_tokens_as_cmw_collections_verify_like_the_tag_399_form() {
        for (token, anchor) in [
            (TRUSTEE_TOKEN, "trustee_cpak-pub.json"),
            (TOKEN_01, "rustccatoken_ta-tfa.json"),
            (TOKEN_FFM, "rustccatoken_ta-tfa.json"),
        ] {
            let legacy = verify(&vector(token), &anchors(&[anchor])).unwrap();
            let collection = verify(&rewrapped(&vector(token)), &anchors(&[anchor])).unwrap();
            assert_eq!(legacy.vendor["cca"]["collection"], "tag-399", "{token}");
            assert_eq!(collection.vendor["cca"]["collection"], "cmw-907", "{token}");
            let mut without_form = collection.clone();
            without_form.vendor.get_mut("cca").unwrap()["collection"] = "tag-399".into();
            assert_eq!(without_form, legacy, "{token}");
        }
    }

    #[test]
    fn records_may_name_the_media_type_and_the_evidence_indicator() {
        let (platform, realm) = tokens(&vector(TOKEN_FFM));
        let bytes = cmw(vec![
            (
                int(44234),
                Value::Array(vec![
                    Value::Text("application/eat+cwt".into()),
                    Value::Bytes(platform),
                ]),
            ),
            (int(44241), Value::Array(vec![int(263), Value::Bytes(realm), int(4)])),
        ]);
        verify(&bytes, &anchors(&["rustccatoken_ta-tfa.json"])).unwrap();
    }

    #[test]
    fn malformed_collections_are_refused() {
        let (platform, realm) = tokens(&vector(TOKEN_FFM));
        let anchors = anchors(&["rustccatoken_ta-tfa.json"]);
        let cases: Vec<(Vec<(Value, Value)>, &str)> = vec![
            (vec![(int(44241), record(realm.clone()))], "no platform token (44234)"),
            (vec![(int(44234), record(platform.clone()))], "no realm token (44241)"),
            (
                vec![
                    (int(44234), record(platform.clone())),
                    (int(44234), record(platform.clone())),
                    (int(44241), record(realm.clone())),
                ],
                "appears twice",
            ),
            (
                vec![
                    (int(44234), record(platform.clone())),
                    (int(44241), record(realm.clone())),
                    (int(44242), record(realm.clone())),
                ],
                "unknown collection entry 44242",
            ),
            (
                vec![
                    (Value::Text("__cmwc_t".into()), Value::Text("tag:arm.com,2023:cca".into())),
                    (int(44234), record(platform.clone())),
                    (int(44241), record(realm.clone())),
                ],
                "collection type (__cmwc_t)",
            ),
            (
                vec![
                    (Value::Text("platform".into()), record(platform.clone())),
                    (int(44241), record(realm.clone())),
                ],
                "collection key \"platform\" is not a known label",
            ),
            (
                vec![
                    (int(44234), Value::Array(vec![int(264), Value::Bytes(platform.clone())])),
                    (int(44241), record(realm.clone())),
                ],
                "content type 264, not application/eat+cwt",
            ),
            (
                vec![
                    (
                        int(44234),
                        Value::Array(vec![
                            Value::Text("application/cwt".into()),
                            Value::Bytes(platform.clone()),
                        ]),
                    ),
                    (int(44241), record(realm.clone())),
                ],
                "not application/eat+cwt",
            ),
            (
                vec![
                    (
                        int(44234),
                        Value::Array(vec![int(263), Value::Bytes(platform.clone()), int(8)]),
                    ),
                    (int(44241), record(realm.clone())),
                ],
                "indicator other than Evidence",
            ),
            (
                vec![
                    (int(44234), Value::Array(vec![int(263)])),
                    (int(44241), record(realm.clone())),
                ],
                "not a CMW record of 2 or 3 items",
            ),
            (
                vec![
                    (int(44234), Value::Bytes(platform.clone())),
                    (int(44241), record(realm.clone())),
                ],
                "not a CMW record (array)",
            ),
            (
                vec![
                    (int(44234), Value::Array(vec![int(263), Value::Text("token".into())])),
                    (int(44241), record(realm.clone())),
                ],
                "holds a text string, not a byte string",
            ),
        ];
        for (entries, expected) in cases {
            let error = cca_error(verify(&cmw(entries), &anchors));
            assert!(matches!(error, CcaError::NotCcaToken(_)), "{error}");
            assert!(error.to_string().contains(expected), "{expected}: {error}");
        }
        // A tag-399 collection whose entries are CMW records is refused too: each form is whole.
        let bytes = Value::Tag(
            399,
            Box::new(Value::Map(vec![(int(44234), record(platform)), (int(44241), record(realm))])),
        )
        .to_vec()
        .unwrap();
        let error = cca_error(verify(&bytes, &anchors));
        assert!(error.to_string().contains("is an array, not a byte string"), "{error}");
    }

    #[test]
    fn tampered_cmw_token_is_refused() {
        let bytes = rewrapped(&vector(TOKEN_01));
        let index = find(&bytes, &[0xab; 64]) + 17;
        let error =
            cca_error(verify(&flipped(&bytes, index), &anchors(&["rustccatoken_ta-tfa.json"])));
        assert!(matches!(error, CcaError::RealmSignature), "{error}");
    }

    #[test]
    fn cmw_parser_never_panics_on_truncations_and_flips() {
        let token = rewrapped(&vector(TOKEN_FFM));
        for len in (0..token.len()).step_by(5) {
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Cca, &token[..len]);
        }
        for index in (0..token.len()).step_by(2) {
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Cca, &flipped(&token, index));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic tokens: ES256 with a P-256 CPAK and a COSE_Key RAK, lifecycle states, claim rules.

mod synthetic {
    use super::*;
    use base64::Engine as _;
    use coset::cbor::value::Value;
    use coset::{
        CborSerializable as _, CoseKeyBuilder, CoseSign1Builder, HeaderBuilder,
        TaggedCborSerializable as _, iana,
    };
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use sha2::Digest as _;

    fn cpak() -> SigningKey {
        SigningKey::from_slice(&[0x11; 32]).unwrap()
    }

    fn rak() -> SigningKey {
        SigningKey::from_slice(&[0x22; 32]).unwrap()
    }

    fn jwk(key: &SigningKey) -> Vec<u8> {
        let point = key.verifying_key().to_sec1_point(false);
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let bytes = point.as_bytes();
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&bytes[1..33]), "y": b64(&bytes[33..])})
            .to_string()
            .into_bytes()
    }

    fn rak_cose_key() -> Vec<u8> {
        let point = rak().verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        CoseKeyBuilder::new_ec2_pub_key(
            iana::EllipticCurve::P_256,
            bytes[1..33].to_vec(),
            bytes[33..].to_vec(),
        )
        .build()
        .to_vec()
        .unwrap()
    }

    fn int(i: i64) -> Value {
        Value::Integer(i.into())
    }

    fn platform_claims(lifecycle: i64) -> Vec<(Value, Value)> {
        platform_claims_with(lifecycle, sha2::Sha256::digest(rak_cose_key()).to_vec())
    }

    fn platform_claims_with(lifecycle: i64, challenge: Vec<u8>) -> Vec<(Value, Value)> {
        let mut instance = vec![0x01];
        instance.extend([0x42; 32]);
        vec![
            (int(265), Value::Text("tag:arm.com,2023:cca_platform#1.0.0".into())),
            (int(10), Value::Bytes(challenge)),
            (int(2396), Value::Bytes(vec![0x33; 32])),
            (int(256), Value::Bytes(instance)),
            (int(2401), Value::Bytes(vec![0xcf; 4])),
            (int(2395), int(lifecycle)),
            (
                int(2399),
                Value::Array(vec![Value::Map(vec![
                    (int(1), Value::Text("RMM".into())),
                    (int(2), Value::Bytes(vec![0x44; 32])),
                    (int(5), Value::Bytes(vec![0x55; 32])),
                ])]),
            ),
            (int(2402), Value::Text("sha-256".into())),
        ]
    }

    fn realm_claims() -> Vec<(Value, Value)> {
        realm_claims_with("sha-256", 32)
    }

    /// Realm claims naming `hash` with measurements of `size` bytes.
    fn realm_claims_with(hash: &str, size: usize) -> Vec<(Value, Value)> {
        vec![
            (int(265), Value::Text("tag:arm.com,2023:realm#1.0.0".into())),
            (int(10), Value::Bytes(vec![0x77; 64])),
            (int(44235), Value::Bytes(vec![0x66; 64])),
            (int(44236), Value::Text(hash.into())),
            (int(44237), Value::Bytes(rak_cose_key())),
            (int(44238), Value::Bytes(vec![0x88; size])),
            (int(44239), Value::Array(vec![Value::Bytes(vec![0; size]); 4])),
            (int(44240), Value::Text("sha-256".into())),
        ]
    }

    fn sign(key: &SigningKey, alg: iana::Algorithm, claims: Vec<(Value, Value)>) -> Vec<u8> {
        CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(alg).build())
            .payload(Value::Map(claims).to_vec().unwrap())
            .create_signature(b"", |data| {
                let signature: p256::ecdsa::Signature = key.sign(data);
                signature.to_bytes().to_vec()
            })
            .build()
            .to_tagged_vec()
            .unwrap()
    }

    fn token(platform: Vec<(Value, Value)>, realm: Vec<(Value, Value)>) -> Vec<u8> {
        let collection = Value::Map(vec![
            (int(44234), Value::Bytes(sign(&cpak(), iana::Algorithm::ES256, platform))),
            (int(44241), Value::Bytes(sign(&rak(), iana::Algorithm::ES256, realm))),
        ]);
        Value::Tag(399, Box::new(collection)).to_vec().unwrap()
    }

    fn trusted() -> TrustAnchors {
        TrustAnchors::new().with_root(TeeKind::Cca, jwk(&cpak()))
    }

    #[test]
    fn es256_token_with_p256_cose_key_rak_verifies() {
        let claims = verify(&token(platform_claims(0x3000), realm_claims()), &trusted()).unwrap();
        assert_eq!(claims.measurement.0, vec![0x88; 32]);
        assert_eq!(claims.report_data.0, vec![0x77; 64]);
        assert!(!claims.debug);
        assert_eq!(vendor(&claims, "platform", "signature_algorithm"), "ES256");
        assert_eq!(vendor(&claims, "realm", "signature_algorithm"), "ES256");
        assert_eq!(vendor(&claims, "realm", "public_key_format"), "cose_key");
        assert!(vendor(&claims, "platform", "verification_service").is_null());
    }

    #[test]
    fn lifecycle_outside_secured_means_debug() {
        for (lifecycle, name, debug) in [
            (0x0000, "unknown", true),
            (0x1000, "assembly_and_test", true),
            (0x2001, "cca_platform_rot_provisioning", true),
            (0x30ff, "secured", false),
            (0x4000, "non_cca_platform_rot_debug", true),
            (0x5000, "recoverable_cca_platform_rot_debug", true),
            (0x6000, "decommissioned", true),
        ] {
            let claims =
                verify(&token(platform_claims(lifecycle), realm_claims()), &trusted()).unwrap();
            assert_eq!(claims.debug, debug, "{lifecycle:#x}");
            assert_eq!(vendor(&claims, "platform", "lifecycle_name"), name);
        }
        for lifecycle in [0x0100, 0x3100, 0x7000, 0x1_0000, -1] {
            let error =
                cca_error(verify(&token(platform_claims(lifecycle), realm_claims()), &trusted()));
            assert!(
                matches!(error, CcaError::Claims { token: TokenPart::Platform, .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn unknown_claim_is_refused() {
        let mut platform = platform_claims(0x3000);
        platform.push((int(-75000), Value::Bool(true)));
        let error = cca_error(verify(&token(platform, realm_claims()), &trusted()));
        assert!(matches!(error, CcaError::UnknownClaim { token: TokenPart::Platform, .. }));
        assert_eq!(
            error.to_string(),
            "cca: platform token has unknown claim -75000; refusing it rather than ignoring it"
        );
        let mut realm = realm_claims();
        realm.push((Value::Text("extra".into()), Value::Null));
        let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
        assert!(matches!(error, CcaError::UnknownClaim { token: TokenPart::Realm, .. }));
    }

    #[test]
    fn missing_claim_is_refused() {
        let mut realm = realm_claims();
        realm.retain(|(k, _)| *k != int(44238));
        let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
        assert_eq!(
            error.to_string(),
            "cca: realm token lacks the mandatory claim initial measurement (44238)"
        );
        let mut platform = platform_claims(0x3000);
        platform.retain(|(k, _)| *k != int(2396));
        let error = cca_error(verify(&token(platform, realm_claims()), &trusted()));
        assert!(matches!(
            error,
            CcaError::MissingClaim { token: TokenPart::Platform, key: 2396, .. }
        ));
    }

    #[test]
    fn duplicate_claim_is_refused() {
        let mut realm = realm_claims();
        realm.push((int(10), Value::Bytes(vec![0x78; 64])));
        let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
        assert!(error.to_string().contains("claim 10 appears twice"), "{error}");
    }

    #[test]
    fn wrong_sizes_are_refused() {
        // report_data is never padded or truncated: a 32-byte realm challenge is refused.
        let mut realm = realm_claims();
        realm[1].1 = Value::Bytes(vec![0x77; 32]);
        let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
        assert!(error.to_string().contains("challenge is 32 bytes, expected 64"), "{error}");
        // The RIM must be as long as the realm hash algorithm's digest.
        let mut realm = realm_claims();
        realm[5].1 = Value::Bytes(vec![0x88; 64]);
        let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
        assert!(error.to_string().contains("initial measurement is 64 bytes, expected 32"));
    }

    #[test]
    fn unsupported_algorithm_is_refused() {
        let platform = sign(&cpak(), iana::Algorithm::EdDSA, platform_claims(0x3000));
        let realm = sign(&rak(), iana::Algorithm::ES256, realm_claims());
        let collection = Value::Map(vec![
            (int(44234), Value::Bytes(platform)),
            (int(44241), Value::Bytes(realm)),
        ]);
        let bytes = Value::Tag(399, Box::new(collection)).to_vec().unwrap();
        let error = cca_error(verify(&bytes, &trusted()));
        assert!(
            matches!(error, CcaError::UnsupportedAlgorithm { token: TokenPart::Platform, .. }),
            "{error}"
        );
        // The message lists what is supported.
        assert!(error.to_string().contains("ES256, ES384 and ES512 are"), "{error}");
    }

    #[test]
    fn es256_token_is_not_verified_with_a_p384_cpak() {
        let error = cca_error(verify(
            &token(platform_claims(0x3000), realm_claims()),
            &anchors(&["trustee_cpak-pub.json"]),
        ));
        assert!(matches!(error, CcaError::PlatformSignature { .. }), "{error}");
    }

    #[test]
    fn every_realm_hash_algorithm_verifies_with_matching_sizes() {
        for (hash, size) in [("sha-256", 32), ("sha-384", 48), ("sha-512", 64)] {
            let claims =
                verify(&token(platform_claims(0x3000), realm_claims_with(hash, size)), &trusted())
                    .unwrap();
            assert_eq!(claims.measurement.0, vec![0x88; size], "{hash}");
            assert_eq!(vendor(&claims, "realm", "hash_algo"), hash);
            let rems = vendor(&claims, "realm", "extensible_measurements");
            assert_eq!(rems[3], "00".repeat(size), "{hash}");
        }
    }

    #[test]
    fn measurements_of_another_algorithms_size_are_refused() {
        for (hash, size) in [("sha-256", 48), ("sha-384", 64), ("sha-512", 32), ("sha-512", 48)] {
            let error = cca_error(verify(
                &token(platform_claims(0x3000), realm_claims_with(hash, size)),
                &trusted(),
            ));
            assert!(matches!(error, CcaError::Claims { token: TokenPart::Realm, .. }), "{error}");
            assert!(error.to_string().contains(&format!("initial measurement is {size} bytes")));
        }
        // The REMs too, each on its own.
        let mut realm = realm_claims_with("sha-384", 48);
        realm[6].1 = Value::Array(vec![
            Value::Bytes(vec![0; 48]),
            Value::Bytes(vec![0; 48]),
            Value::Bytes(vec![0; 64]),
            Value::Bytes(vec![0; 48]),
        ]);
        let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
        assert!(error.to_string().contains("extensible measurement 2 is 64 bytes, expected 48"));
    }

    #[test]
    fn unknown_realm_hash_algorithm_is_refused() {
        for name in ["sha3-256", "SHA-256", "sha-224", "md5"] {
            let realm = realm_claims_with(name, 32);
            let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
            assert!(
                matches!(error, CcaError::UnsupportedHash { token: TokenPart::Realm, .. }),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn every_public_key_hash_algorithm_binds_with_its_digest() {
        for (name, digest) in [
            ("sha-256", sha2::Sha256::digest(rak_cose_key()).to_vec()),
            ("sha-384", sha2::Sha384::digest(rak_cose_key()).to_vec()),
            ("sha-512", sha2::Sha512::digest(rak_cose_key()).to_vec()),
        ] {
            let mut realm = realm_claims();
            realm[7].1 = Value::Text(name.into());
            let platform = platform_claims_with(0x3000, digest.clone());
            let claims = verify(&token(platform, realm.clone()), &trusted()).unwrap();
            assert_eq!(vendor(&claims, "realm", "public_key_hash_algo"), name);
            assert_eq!(vendor(&claims, "platform", "challenge"), &hex::encode(&digest));
            // The SHA-256 challenge with another algorithm named: not bound.
            if name != "sha-256" {
                let platform =
                    platform_claims_with(0x3000, sha2::Sha256::digest(rak_cose_key()).to_vec());
                let error = cca_error(verify(&token(platform, realm), &trusted()));
                assert!(matches!(error, CcaError::Binding { .. }), "{name}: {error}");
            }
        }
    }

    #[test]
    fn challenge_and_personalization_value_sizes_are_fixed() {
        for (index, name) in [(1, "challenge"), (2, "personalization value")] {
            for size in [32, 48, 63, 65] {
                let mut realm = realm_claims();
                realm[index].1 = Value::Bytes(vec![0x77; size]);
                let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
                assert!(
                    error.to_string().contains(&format!("{name} is {size} bytes, expected 64")),
                    "{error}"
                );
            }
        }
        // The platform challenge is a digest: 32, 48 or 64 bytes.
        let error = cca_error(verify(
            &token(platform_claims_with(0x3000, vec![1; 20]), realm_claims()),
            &trusted(),
        ));
        assert!(error.to_string().contains("challenge is 20 bytes"), "{error}");
    }

    #[test]
    fn the_realm_profile_decides_the_rak_encoding() {
        let point = rak().verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let sec1_challenge = sha2::Sha256::digest(&point).to_vec();
        // A SEC1 RAK with the 2023 realm profile (which requires a COSE_Key): refused.
        let mut realm = realm_claims();
        realm[4].1 = Value::Bytes(point.clone());
        let error = cca_error(verify(
            &token(platform_claims_with(0x3000, sec1_challenge.clone()), realm.clone()),
            &trusted(),
        ));
        assert!(matches!(error, CcaError::RealmKey(_)), "{error}");
        assert!(error.to_string().contains("requires a COSE_Key"), "{error}");
        // Without a profile claim (RMM 1.0), the SEC1 point is what is expected.
        realm.retain(|(k, _)| *k != int(265));
        let claims =
            verify(&token(platform_claims_with(0x3000, sec1_challenge), realm), &trusted())
                .unwrap();
        assert_eq!(vendor(&claims, "realm", "public_key_format"), "sec1");
        // A COSE_Key without a profile claim: refused.
        let mut realm = realm_claims();
        realm.retain(|(k, _)| *k != int(265));
        let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
        assert!(matches!(error, CcaError::RealmKey(_)), "{error}");
        assert!(error.to_string().contains("without a profile claim"), "{error}");
    }

    #[test]
    fn both_platform_profiles_are_accepted_with_either_realm_form() {
        for profile in ["http://arm.com/CCA-SSD/1.0.0", "tag:arm.com,2023:cca_platform#1.0.0"] {
            let mut platform = platform_claims(0x3000);
            platform[0].1 = Value::Text(profile.into());
            let claims = verify(&token(platform, realm_claims()), &trusted()).unwrap();
            assert_eq!(vendor(&claims, "platform", "profile"), profile);
        }
        let mut platform = platform_claims(0x3000);
        platform[0].1 = Value::Text("tag:arm.com,2024:cca_platform#1.0.0".into());
        let error = cca_error(verify(&token(platform, realm_claims()), &trusted()));
        assert!(error.to_string().contains("not a known CCA platform profile"), "{error}");
    }

    #[test]
    fn unknown_realm_public_key_hash_is_refused() {
        let mut realm = realm_claims();
        realm[7].1 = Value::Text("sha3-256".into());
        let error = cca_error(verify(&token(platform_claims(0x3000), realm), &trusted()));
        assert!(matches!(error, CcaError::UnsupportedHash { token: TokenPart::Realm, .. }));
    }
}

/// ES512: platform and realm tokens signed with P-521 keys (the CPAK as every anchor form, the
/// RAK as a COSE_Key with curve 3 or an RMM 1.0 SEC1 point), and every mismatch refused.
mod es512 {
    use super::*;
    use coset::cbor::value::Value;
    use coset::{
        CborSerializable as _, CoseKeyBuilder, CoseSign1Builder, HeaderBuilder,
        TaggedCborSerializable as _, iana,
    };
    use sha2::Digest as _;

    fn int(i: i64) -> Value {
        Value::Integer(i.into())
    }

    fn cpak() -> p521::ecdsa::SigningKey {
        common::p521::key(0x31)
    }

    fn rak_key() -> p521::ecdsa::SigningKey {
        common::p521::key(0x32)
    }

    fn cpak_jwk() -> Vec<u8> {
        common::p521::jwk(&common::p521::point(&cpak()), &[])
    }

    fn cose_key(point: &[u8], alg: Option<iana::Algorithm>) -> Vec<u8> {
        let mut key = CoseKeyBuilder::new_ec2_pub_key(
            iana::EllipticCurve::P_521,
            point[1..67].to_vec(),
            point[67..].to_vec(),
        );
        if let Some(alg) = alg {
            key = key.algorithm(alg);
        }
        key.build().to_vec().unwrap()
    }

    fn platform(challenge: Vec<u8>) -> Vec<(Value, Value)> {
        let mut instance = vec![0x01];
        instance.extend([0x42; 32]);
        vec![
            (int(265), Value::Text("tag:arm.com,2023:cca_platform#1.0.0".into())),
            (int(10), Value::Bytes(challenge)),
            (int(2396), Value::Bytes(vec![0x33; 32])),
            (int(256), Value::Bytes(instance)),
            (int(2401), Value::Bytes(vec![0xcf; 4])),
            (int(2395), int(0x3000)),
            (
                int(2399),
                Value::Array(vec![Value::Map(vec![
                    (int(2), Value::Bytes(vec![0x44; 64])),
                    (int(5), Value::Bytes(vec![0x55; 64])),
                ])]),
            ),
            (int(2402), Value::Text("sha-512".into())),
        ]
    }

    /// Realm claims carrying `rak` (a COSE_Key with the 2023 profile, else a SEC1 point).
    fn realm(rak: Vec<u8>, profiled: bool) -> Vec<(Value, Value)> {
        let mut claims = vec![
            (int(10), Value::Bytes(vec![0x77; 64])),
            (int(44235), Value::Bytes(vec![0x66; 64])),
            (int(44236), Value::Text("sha-512".into())),
            (int(44237), Value::Bytes(rak)),
            (int(44238), Value::Bytes(vec![0x88; 64])),
            (int(44239), Value::Array(vec![Value::Bytes(vec![0; 64]); 4])),
            (int(44240), Value::Text("sha-512".into())),
        ];
        if profiled {
            claims.push((int(265), Value::Text("tag:arm.com,2023:realm#1.0.0".into())));
        }
        claims
    }

    fn sign_with(
        alg: iana::Algorithm,
        claims: Vec<(Value, Value)>,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Vec<u8> {
        CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(alg).build())
            .payload(Value::Map(claims).to_vec().unwrap())
            .create_signature(b"", sign)
            .build()
            .to_tagged_vec()
            .unwrap()
    }

    fn es512(key: &p521::ecdsa::SigningKey, claims: Vec<(Value, Value)>) -> Vec<u8> {
        sign_with(iana::Algorithm::ES512, claims, |data| common::p521::sign(key, data))
    }

    fn collection(platform: Vec<u8>, realm: Vec<u8>) -> Vec<u8> {
        let collection = Value::Map(vec![
            (int(44234), Value::Bytes(platform)),
            (int(44241), Value::Bytes(realm)),
        ]);
        Value::Tag(399, Box::new(collection)).to_vec().unwrap()
    }

    /// The all-P-521 token: ES512 platform token, ES512 realm token with a COSE_Key RAK.
    fn token() -> Vec<u8> {
        let rak = cose_key(&common::p521::point(&rak_key()), None);
        let challenge = sha2::Sha512::digest(&rak).to_vec();
        collection(es512(&cpak(), platform(challenge)), es512(&rak_key(), realm(rak, true)))
    }

    fn trusted(anchor: Vec<u8>) -> TrustAnchors {
        TrustAnchors::new().with_root(TeeKind::Cca, anchor)
    }

    fn p384_cpak() -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::from_slice(&[0x13; 48]).unwrap()
    }

    fn p384_jwk() -> Vec<u8> {
        let b64 =
            |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
        let point = p384_cpak().verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        serde_json::json!({"kty": "EC", "crv": "P-384", "x": b64(&bytes[1..49]), "y": b64(&bytes[49..])})
            .to_string()
            .into_bytes()
    }

    fn p256_jwk() -> Vec<u8> {
        let b64 =
            |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
        let key = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
        let point = key.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&bytes[1..33]), "y": b64(&bytes[33..])})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn es512_tokens_verify_with_a_p521_cpak_in_every_anchor_form() {
        let point = common::p521::point(&cpak());
        for (form, anchor) in [
            ("jwk", cpak_jwk()),
            ("jwk with alg", common::p521::jwk(&point, &[("alg", "ES512")])),
            ("pem", common::p521::spki_pem(&point)),
            ("der", common::p521::spki_der(&point)),
        ] {
            let claims =
                verify(&token(), &trusted(anchor)).unwrap_or_else(|e| panic!("{form}: {e}"));
            assert_eq!(vendor(&claims, "platform", "signature_algorithm"), "ES512", "{form}");
            assert_eq!(vendor(&claims, "realm", "signature_algorithm"), "ES512", "{form}");
            assert_eq!(vendor(&claims, "platform", "cpak"), &hex::encode(&point), "{form}");
            assert_eq!(vendor(&claims, "realm", "public_key_format"), "cose_key");
            assert_eq!(claims.measurement.0, vec![0x88; 64]);
        }
    }

    #[test]
    fn an_rmm_1_0_realm_token_may_carry_a_sec1_p521_rak() {
        let rak = common::p521::point(&rak_key());
        assert_eq!(rak.len(), 133);
        let challenge = sha2::Sha512::digest(&rak).to_vec();
        let token =
            collection(es512(&cpak(), platform(challenge)), es512(&rak_key(), realm(rak, false)));
        let claims = verify(&token, &trusted(cpak_jwk())).unwrap();
        assert_eq!(vendor(&claims, "realm", "public_key_format"), "sec1");
    }

    #[test]
    fn es512_platform_and_es256_realm_mix() {
        // Each token's algorithm fits its own key: a P-521 CPAK beside a P-256 RAK.
        let p256_rak = p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).unwrap();
        let point = p256_rak.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let rak = CoseKeyBuilder::new_ec2_pub_key(
            iana::EllipticCurve::P_256,
            bytes[1..33].to_vec(),
            bytes[33..].to_vec(),
        )
        .build()
        .to_vec()
        .unwrap();
        let challenge = sha2::Sha512::digest(&rak).to_vec();
        let realm_es256 = sign_with(iana::Algorithm::ES256, realm(rak, true), |data| {
            use p256::ecdsa::signature::Signer as _;
            let signature: p256::ecdsa::Signature = p256_rak.sign(data);
            signature.to_bytes().to_vec()
        });
        let token = collection(es512(&cpak(), platform(challenge.clone())), realm_es256);
        let claims = verify(&token, &trusted(cpak_jwk())).unwrap();
        assert_eq!(vendor(&claims, "platform", "signature_algorithm"), "ES512");
        assert_eq!(vendor(&claims, "realm", "signature_algorithm"), "ES256");
        // The same P-256 RAK under an ES512 header: refused.
        let p256_rak_cose = CoseKeyBuilder::new_ec2_pub_key(
            iana::EllipticCurve::P_256,
            bytes[1..33].to_vec(),
            bytes[33..].to_vec(),
        )
        .build()
        .to_vec()
        .unwrap();
        let realm_es512_header =
            sign_with(iana::Algorithm::ES512, realm(p256_rak_cose, true), |data| {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = p256_rak.sign(data);
                signature.to_bytes().to_vec()
            });
        let token = collection(es512(&cpak(), platform(challenge)), realm_es512_header);
        let error = cca_error(verify(&token, &trusted(cpak_jwk())));
        assert!(matches!(error, CcaError::RealmSignature), "{error}");
    }

    #[test]
    fn flipped_signature_bytes_are_refused() {
        let good = token();
        // The realm token's signature ends the collection; the platform token's ends before
        // the realm entry.
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 0x01;
        let error = cca_error(verify(&bad, &trusted(cpak_jwk())));
        assert!(matches!(error, CcaError::RealmSignature), "{error}");
        let realm_start = find(&good, &[0x19, 0xac, 0xd1]); // key 44241
        let mut bad = good.clone();
        bad[realm_start - 1] ^= 0x01;
        let error = cca_error(verify(&bad, &trusted(cpak_jwk())));
        assert!(matches!(error, CcaError::PlatformSignature { tried: 1 }), "{error}");
    }

    #[test]
    fn p256_and_p384_cpaks_never_verify_es512() {
        for anchor in [p256_jwk(), p384_jwk()] {
            let error = cca_error(verify(&token(), &trusted(anchor)));
            assert!(matches!(error, CcaError::PlatformSignature { tried: 1 }), "{error}");
        }
    }

    #[test]
    fn the_algorithm_must_fit_the_cpak() {
        let rak = cose_key(&common::p521::point(&rak_key()), None);
        let challenge = sha2::Sha512::digest(&rak).to_vec();
        let realm = es512(&rak_key(), realm(rak, true));
        // ES512 header, signed by the P-384 CPAK, which is trusted.
        let by_p384 = sign_with(iana::Algorithm::ES512, platform(challenge.clone()), |data| {
            use p384::ecdsa::signature::Signer as _;
            let signature: p384::ecdsa::Signature = p384_cpak().sign(data);
            signature.to_bytes().to_vec()
        });
        let error = cca_error(verify(&collection(by_p384, realm.clone()), &trusted(p384_jwk())));
        assert!(matches!(error, CcaError::PlatformSignature { .. }), "{error}");
        // ES384 header, signed by the P-521 CPAK, which is trusted.
        let by_p521 = sign_with(iana::Algorithm::ES384, platform(challenge), |data| {
            common::p521::sign(&cpak(), data)
        });
        let error = cca_error(verify(&collection(by_p521, realm), &trusted(cpak_jwk())));
        assert!(matches!(error, CcaError::PlatformSignature { .. }), "{error}");
    }

    #[test]
    fn p521_cose_key_raks_are_checked() {
        let point = common::p521::point(&rak_key());
        // An algorithm that does not fit curve 3.
        let bad_alg = cose_key(&point, Some(iana::Algorithm::ES384));
        // A coordinate one byte short.
        let short = CoseKeyBuilder::new_ec2_pub_key(
            iana::EllipticCurve::P_521,
            point[2..67].to_vec(),
            point[67..].to_vec(),
        )
        .build()
        .to_vec()
        .unwrap();
        // A point off the curve.
        let mut off = point.clone();
        off[132] ^= 0x01;
        let off = cose_key(&off, None);
        for (rak, needle) in [
            (bad_alg, "does not fit its curve"),
            (short, "not 66 bytes"),
            (off, "not on its curve"),
        ] {
            let challenge = sha2::Sha512::digest(&rak).to_vec();
            let token = collection(
                es512(&cpak(), platform(challenge)),
                es512(&rak_key(), realm(rak, true)),
            );
            let error = cca_error(verify(&token, &trusted(cpak_jwk())));
            assert!(matches!(error, CcaError::RealmKey(_)), "{needle}: {error}");
            assert!(error.to_string().contains(needle), "{needle}: {error}");
        }
        // With the named algorithm ES512 it verifies.
        let rak = cose_key(&point, Some(iana::Algorithm::ES512));
        let challenge = sha2::Sha512::digest(&rak).to_vec();
        let token =
            collection(es512(&cpak(), platform(challenge)), es512(&rak_key(), realm(rak, true)));
        verify(&token, &trusted(cpak_jwk())).unwrap();
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Cca, &bytes);
        }

        #[test]
        fn random_collections_never_panic_and_never_verify(
            platform in proptest::collection::vec(any::<u8>(), 0..512),
            realm in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            use coset::CborSerializable as _;
            use coset::cbor::value::Value;
            let collection = Value::Map(vec![
                (Value::Integer(44234.into()), Value::Bytes(platform)),
                (Value::Integer(44241.into()), Value::Bytes(realm)),
            ]);
            let bytes = Value::Tag(399, Box::new(collection)).to_vec().unwrap();
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Cca, &bytes);
            prop_assert!(verify(&bytes, &anchors(&["trustee_cpak-pub.json"])).is_err());
        }
    }
}
