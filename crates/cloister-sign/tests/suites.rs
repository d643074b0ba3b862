//! Both signature suites through the one API a caller holds: `AnySigningKey` / `AnyVerifyingKey`
//! and the JWKS helpers, as an instance configured for either suite would use them (issue a
//! token, publish the JWK, verify against the JWKS), and the refusals across suites.

use std::time::Duration;

use cloister_sign::{
    AnySigningKey, AnyVerifyingKey, SignError, SignatureSuite, SigningKey, Sm2SigningKey,
    verify_with_jwks,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Body {
    job: String,
}

fn body() -> Body {
    Body { job: "j1".into() }
}

const SUITES: [SignatureSuite; 2] = [SignatureSuite::Es256, SignatureSuite::Sm2];
const VALID: Duration = Duration::from_secs(600);

#[test]
fn each_suite_signs_and_verifies_through_the_common_api() {
    for suite in SUITES {
        let key = AnySigningKey::generate(suite).unwrap();
        assert_eq!(key.suite(), suite);
        let public = key.public_key();
        assert_eq!(public.suite(), suite);
        let token = key.sign("grant", body(), 1_000, VALID).unwrap();
        let header = token.split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(&base64_decode(header)).unwrap();
        assert_eq!(header["alg"], suite.jws_alg());
        let signed = public.verify::<Body>("grant", &token, 1_100).unwrap();
        assert_eq!(signed.claims, body());
        assert_eq!((signed.issued_at, signed.expires_at), (1_000, 1_600));
        let signature = key.sign_bytes("cloister-test v1", b"m").unwrap();
        public.verify_bytes("cloister-test v1", b"m", &signature).unwrap();
        assert!(public.verify_bytes("cloister-test v2", b"m", &signature).is_err());
    }
    assert_eq!(SignatureSuite::Sm2.to_string(), "SM2SM3");
    assert_eq!(SignatureSuite::Es256.to_string(), "ES256");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

#[test]
fn a_key_accepts_only_its_own_suites_tokens_and_signatures() {
    let es256 = AnySigningKey::generate(SignatureSuite::Es256).unwrap();
    let sm2 = AnySigningKey::generate(SignatureSuite::Sm2).unwrap();
    let es256_token = es256.sign("grant", body(), 1_000, VALID).unwrap();
    let sm2_token = sm2.sign("grant", body(), 1_000, VALID).unwrap();
    assert!(sm2.public_key().verify::<Body>("grant", &es256_token, 1_100).is_err());
    assert!(es256.public_key().verify::<Body>("grant", &sm2_token, 1_100).is_err());
    let es256_bytes = es256.sign_bytes("d", b"m").unwrap();
    let sm2_bytes = sm2.sign_bytes("d", b"m").unwrap();
    assert!(sm2.public_key().verify_bytes("d", b"m", &es256_bytes).is_err());
    assert!(es256.public_key().verify_bytes("d", b"m", &sm2_bytes).is_err());
}

#[test]
fn text_forms_dispatch_on_the_prefix() {
    for suite in SUITES {
        let key = AnySigningKey::generate(suite).unwrap();
        let again = AnySigningKey::from_text(&key.to_text()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = key.public_key();
        assert_eq!(AnyVerifyingKey::from_text(&public.to_text()).unwrap(), public);
        assert_eq!(public.to_string().parse::<AnyVerifyingKey>().unwrap(), public);
        // A secret where a public key is needed and the other way round.
        let err = AnyVerifyingKey::from_text(&key.to_text()).unwrap_err();
        assert!(matches!(err, SignError::WrongKeyKind { .. }), "{err:?}");
        let err = AnySigningKey::from_text(&public.to_text()).unwrap_err();
        assert!(matches!(err, SignError::WrongKeyKind { .. }), "{err:?}");
    }
    let sm2 = AnySigningKey::generate(SignatureSuite::Sm2).unwrap().public_key();
    assert!(sm2.to_text().starts_with("cloister-sm2sig:"));
    let es256 = SigningKey::generate();
    assert_eq!(AnySigningKey::from(es256).suite(), SignatureSuite::Es256);
    let unknown = AnyVerifyingKey::from_text("ssh-ed25519 AAAA").unwrap_err();
    assert!(matches!(unknown, SignError::UnsupportedKey { .. }), "{unknown:?}");
}

#[test]
fn envelope_keys_are_refused_by_name_in_either_role() {
    let sm2 = AnySigningKey::generate(SignatureSuite::Sm2).unwrap();
    let body = sm2.public_key().to_text()["cloister-sm2sig:".len()..].to_owned();
    for text in [
        format!("cloister-sm2:{body}"),
        format!("cloister-sm2-secret:{}", &sm2.to_text()["cloister-sm2sig-secret:".len()..]),
        "cloister-hpke-x25519:AAAA".to_owned(),
        "cloister-hpke-secret-x25519:AAAA".to_owned(),
    ] {
        for err in [
            AnyVerifyingKey::from_text(&text).unwrap_err(),
            AnySigningKey::from_text(&text).unwrap_err(),
        ] {
            assert!(matches!(err, SignError::EnvelopeKeyGiven { .. }), "{text}: {err:?}");
            assert!(err.to_string().contains("is an envelope encryption key, not a signing key"));
        }
    }
}

#[test]
fn derived_keys_are_per_suite() {
    let es256 = AnySigningKey::derive(SignatureSuite::Es256, b"ikm", "label").unwrap();
    let sm2 = AnySigningKey::derive(SignatureSuite::Sm2, b"ikm", "label").unwrap();
    assert_eq!(es256.suite(), SignatureSuite::Es256);
    assert_eq!(
        sm2.public_key(),
        AnySigningKey::derive(SignatureSuite::Sm2, b"ikm", "label").unwrap().public_key()
    );
    assert_eq!(
        es256.public_key().fingerprint_hex(),
        match es256.public_key() {
            AnyVerifyingKey::Es256(key) => key.fingerprint_hex(),
            other => panic!("{other:?}"),
        }
    );
}

#[test]
fn jwks_of_both_suites_verify_their_tokens() {
    let es256 = AnySigningKey::generate(SignatureSuite::Es256).unwrap().with_key_id("ear-es");
    let sm2 = AnySigningKey::generate(SignatureSuite::Sm2).unwrap().with_key_id("ear-sm");
    let jwks = serde_json::json!({
        "keys": [es256.public_key().to_jwk("ear-es"), sm2.public_key().to_jwk("ear-sm")]
    });
    assert_eq!(jwks["keys"][1]["crv"], "SM2");
    for key in [&es256, &sm2] {
        let token = key.sign("EAR", body(), 1_000, VALID).unwrap();
        let signed = verify_with_jwks::<Body>("EAR", &jwks, &token, 1_100).unwrap();
        assert_eq!(signed.claims, body());
        let kid = cloister_sign::peek_key_id(&token).unwrap();
        assert_eq!(AnyVerifyingKey::from_jwks(&jwks, &kid).unwrap(), key.public_key());
        assert!(verify_with_jwks::<Body>("EAR", &jwks, &token, 1_700).is_err());
    }
    for jwk in jwks["keys"].as_array().unwrap() {
        let key = AnyVerifyingKey::from_jwk(jwk).unwrap();
        assert_eq!(key.to_jwk(jwk["kid"].as_str().unwrap()), *jwk);
    }
}

#[test]
fn a_token_naming_a_key_of_the_other_suite_is_refused() {
    // An SM2 token whose header names the ES256 key (and the other way round): the JWKS entry
    // chooses the key, the key's suite decides the algorithm, and the token is refused.
    let es256 = AnySigningKey::generate(SignatureSuite::Es256).unwrap();
    let sm2 = AnySigningKey::generate(SignatureSuite::Sm2).unwrap();
    let jwks = serde_json::json!({
        "keys": [es256.public_key().to_jwk("ear-es"), sm2.public_key().to_jwk("ear-sm")]
    });
    let lying_sm2 = sm2.with_key_id("ear-es").sign("EAR", body(), 1_000, VALID).unwrap();
    assert!(verify_with_jwks::<Body>("EAR", &jwks, &lying_sm2, 1_100).is_err());
    let lying_es256 = es256.with_key_id("ear-sm").sign("EAR", body(), 1_000, VALID).unwrap();
    let err = verify_with_jwks::<Body>("EAR", &jwks, &lying_es256, 1_100).unwrap_err();
    assert!(err.to_string().ends_with("the token's algorithm is \"ES256\", not SM2SM3"), "{err}");
}

#[test]
fn jwks_lookups_fail_closed() {
    let sm2 = AnySigningKey::generate(SignatureSuite::Sm2).unwrap().with_key_id("k1");
    let token = sm2.sign("EAR", body(), 1_000, VALID).unwrap();
    let jwk = sm2.public_key().to_jwk("k1");
    let check = |jwks: serde_json::Value| {
        verify_with_jwks::<Body>("EAR", &jwks, &token, 1_100).unwrap_err().to_string()
    };
    assert!(check(serde_json::json!({})).ends_with("it has no \"keys\" array"));
    assert!(check(serde_json::json!({"keys": []})).ends_with("it has no key \"k1\""));
    let twice = check(serde_json::json!({"keys": [jwk.clone(), jwk.clone()]}));
    assert!(twice.ends_with("it lists the key \"k1\" more than once"), "{twice}");
    // An unusable key under another kid is not read; under the token's kid it is refused.
    let odd = serde_json::json!({"kty": "EC", "crv": "secp256k1", "kid": "k2"});
    assert!(
        verify_with_jwks::<Body>("EAR", &serde_json::json!({"keys": [odd, jwk]}), &token, 1_100)
            .is_ok()
    );
    let odd = serde_json::json!({"kty": "EC", "crv": "secp256k1", "kid": "k1"});
    assert!(check(serde_json::json!({"keys": [odd]})).contains("the JWK's curve is \"secp256k1\""));
    // A token without a kid cannot be looked up.
    let anonymous = Sm2SigningKey::generate().unwrap().sign("EAR", body(), 1_000, VALID).unwrap();
    let err = verify_with_jwks::<Body>("EAR", &serde_json::json!({"keys": []}), &anonymous, 1_100)
        .unwrap_err();
    assert!(err.to_string().ends_with("the EAR names no key id (kid)"), "{err}");
    let err = AnyVerifyingKey::from_jwk(&serde_json::json!({"kty": "EC"})).unwrap_err();
    assert!(matches!(err, SignError::UnsupportedKey { .. }), "{err:?}");
}

/// Red team, round 8: statements of different kinds share field names (a grant has every field
/// of a revocation), and an owner's grant was accepted as its revocation. A token verifies only
/// as the kind it was signed as, in both suites, through every entry point.
#[test]
fn a_token_verifies_only_as_the_kind_it_was_signed_as() {
    for suite in SUITES {
        let key = AnySigningKey::generate(suite).unwrap();
        let public = key.public_key();
        let token = key.sign("grant", body(), 1_000, VALID).unwrap();
        public.verify::<Body>("grant", &token, 1_100).unwrap();
        let err = public.verify::<Body>("grant revocation", &token, 1_100).unwrap_err();
        assert!(err.to_string().contains(r#"is a "grant", not a "grant revocation""#), "{err}");
        assert!(public.verify::<serde_json::Value>("receipt", &token, 1_100).is_err());
        // The kind is in the signed claims: it cannot be changed without the signature.
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&base64_decode(payload)).unwrap();
        assert_eq!(claims[cloister_sign::KIND_CLAIM], "grant");
        // A kind given among the signer's own claims does not override it.
        let mut lying = serde_json::to_value(body()).unwrap();
        lying[cloister_sign::KIND_CLAIM] = "grant revocation".into();
        if let Ok(token) = key.sign("grant", &lying, 1_000, VALID) {
            let verified = public.verify::<serde_json::Value>("grant revocation", &token, 1_100);
            assert!(verified.is_err(), "{verified:?}");
        }
    }
}
