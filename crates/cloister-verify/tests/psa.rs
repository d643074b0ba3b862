//! Arm PSA driver: the RFC 9783 example tokens (COSE_Sign1 and COSE_Mac0) and Veraison's TF-M
//! tokens (2.0.0 and PSA_IOT_PROFILE_1) against their IAKs, golden claims, every wrong-key
//! negative, Veraison's 32 JSON claim sets for P1 and P2, and synthetic tokens signed with test
//! keys for every envelope, claim and anchor check and for the binding through `verify`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use cloister_types::{Base64Url, Claims, Hex, RuntimeData, TcbStatus, TeeKind, UnifiedEvidence};
use cloister_verify::internal::check_psa_claims;
use cloister_verify::{
    CcaError, Collateral, Inputs, PsaError, TrustAnchors, VerifyError, verify_vendor_evidence,
};
use common::{assert_golden, vector};
use coset::cbor::value::Value;
use coset::{
    CborSerializable as _, CoseMac0Builder, CoseSign1Builder, HeaderBuilder,
    TaggedCborSerializable as _, iana,
};
use p256::ecdsa::signature::Signer as _;
use sha2::Digest as _;

/// PSA tokens carry no time; any time gives the same result.
const NOW: i64 = 1_750_000_000;

const RFC_SIGN1: &str = "psa/draftpsa_psa-sign1.cbor";
const RFC_MAC0: &str = "psa/draftpsa_psa-mac0.cbor";
const RFC_ES_IAK: &str = "psa/draftpsa_tfm-es-iak.pem";
const RFC_HS_IAK: &str = "psa/draftpsa_tfm-hs-iak.bin";
const TFM_P2: &str = "psa/psatoken_tfm_psa-2_0_0_sign1.bin";
const TFM_P1: &str = "psa/psatoken_evidence_test_tfmP1Sign1.cbor";
const TFM_PUBLIC: &str = "psa/psatoken_tfm_public.pem";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The public half of a P-256 private key in SEC1 PEM, as a JWK.
fn p256_jwk_of_private_pem(pem: &[u8]) -> Vec<u8> {
    let secret = p256::SecretKey::from_sec1_pem(std::str::from_utf8(pem).unwrap()).unwrap();
    p256_jwk(&p256::ecdsa::VerifyingKey::from(&p256::ecdsa::SigningKey::from(secret)))
}

fn p256_jwk(key: &p256::ecdsa::VerifyingKey) -> Vec<u8> {
    let point = key.to_sec1_point(false);
    let bytes = point.as_bytes();
    serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64url(&bytes[1..33]), "y": b64url(&bytes[33..])})
        .to_string()
        .into_bytes()
}

fn oct_jwk(key: &[u8]) -> Vec<u8> {
    serde_json::json!({"kty": "oct", "k": b64url(key)}).to_string().into_bytes()
}

fn roots(anchors: &[Vec<u8>]) -> TrustAnchors {
    anchors.iter().fold(TrustAnchors::new(), |a, anchor| a.with_root(TeeKind::Psa, anchor.clone()))
}

fn verify(token: &[u8], anchors: &TrustAnchors) -> Result<Claims, VerifyError> {
    let collateral = Collateral::new();
    let inputs = Inputs { collateral: &collateral, anchors, now_unix: NOW };
    verify_vendor_evidence(TeeKind::Psa, token, &inputs)
}

fn psa_error(result: Result<Claims, VerifyError>) -> PsaError {
    match result {
        Ok(_) => panic!("expected a psa error, the token verified"),
        Err(VerifyError::Psa(e)) => {
            assert!(e.to_string().starts_with("psa: "), "{e}");
            e
        }
        Err(other) => panic!("expected a psa error, got {other}"),
    }
}

fn psa<'a>(claims: &'a Claims, field: &str) -> &'a serde_json::Value {
    &claims.vendor["psa"][field]
}

fn rfc_es_anchor() -> Vec<u8> {
    p256_jwk_of_private_pem(&vector(RFC_ES_IAK))
}

fn rfc_hs_anchor() -> Vec<u8> {
    oct_jwk(&vector(RFC_HS_IAK))
}

fn draft_public_der() -> Vec<u8> {
    let pem = String::from_utf8(vector(RFC_ES_IAK)).unwrap();
    let secret = p256::SecretKey::from_sec1_pem(&pem).unwrap();
    use p256::pkcs8::EncodePublicKey as _;
    secret.public_key().to_public_key_der().unwrap().as_bytes().to_vec()
}

// ---------------------------------------------------------------------------------------------
// Real tokens.

#[test]
fn rfc9783_sign1_example_verifies_with_its_iak() {
    let claims = verify(&vector(RFC_SIGN1), &roots(&[rfc_es_anchor()])).unwrap();
    assert_eq!(claims.tee, TeeKind::Psa);
    assert_eq!(claims.report_data.0, vec![0x01; 32]);
    let mut instance = vec![0x01];
    instance.extend([0x02; 32]);
    assert_eq!(claims.platform_id, Some(Hex(instance)));
    assert_eq!(psa(&claims, "profile"), "tag:psacertified.org,2023:psa#tfm");
    assert_eq!(psa(&claims, "implementation_id").as_str().unwrap(), hex::encode([0; 32]));
    assert_eq!(psa(&claims, "client_id"), 2147483647);
    assert_eq!(psa(&claims, "security_lifecycle")["value"], 12288);
    assert_eq!(psa(&claims, "security_lifecycle")["name"], "secured");
    assert_eq!(psa(&claims, "boot_seed").as_str().unwrap(), hex::encode([0; 8]));
    let components = psa(&claims, "software_components").as_array().unwrap();
    assert_eq!(components.len(), 1);
    assert_eq!(components[0]["measurement_type"], "PRoT");
    assert_eq!(components[0]["measurement_value"], hex::encode([3; 32]));
    assert_eq!(components[0]["signer_id"], hex::encode([4; 32]));
    assert!(components[0]["version"].is_null());
    assert_eq!(psa(&claims, "token_format"), "sign1");
    assert_eq!(psa(&claims, "tagged"), true);
    assert_eq!(psa(&claims, "signature_algorithm"), "ES256");
    assert_eq!(psa(&claims, "trust_anchor"), "instance");
    assert_eq!(claims.trust_anchor(), Some("instance"));
    // One component: measurement = SHA-256(0x20 ‖ mv), signer = its signer id.
    let mut preimage = vec![32];
    preimage.extend([3; 32]);
    assert_eq!(claims.measurement.0, sha2::Sha256::digest(&preimage).to_vec());
    assert_eq!(claims.signer, Some(Hex(vec![4; 32])));
    assert!(!claims.debug);
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert_eq!(claims.vendor.keys().collect::<Vec<_>>(), ["psa"]);
    assert_golden("psa_rfc9783_sign1", &claims);
    // The same key as a PEM/DER SubjectPublicKeyInfo gives the same claims.
    assert_eq!(verify(&vector(RFC_SIGN1), &roots(&[draft_public_der()])).unwrap(), claims);
}

#[test]
fn rfc9783_mac0_example_verifies_with_its_symmetric_iak() {
    let claims = verify(&vector(RFC_MAC0), &roots(&[rfc_hs_anchor()])).unwrap();
    assert_eq!(
        claims.platform_id.as_ref().unwrap().to_string(),
        "01c557bd4fadc83f756fca2cd5ea2dcc8b82159bb4e7453d6a744d4eecd6d0ac60"
    );
    assert_eq!(claims.report_data.0, vec![0x01; 32]);
    assert_eq!(psa(&claims, "token_format"), "mac0");
    assert_eq!(psa(&claims, "signature_algorithm"), "HMAC 256/256");
    // The symmetric key is never shown.
    assert!(psa(&claims, "iak").is_null());
    assert!(!serde_json::to_string(&claims).unwrap().contains(&b64url(&vector(RFC_HS_IAK))));
    assert_golden("psa_rfc9783_mac0", &claims);
}

#[test]
fn tfm_2_0_0_token_verifies_with_tfm_public_key() {
    let claims = verify(&vector(TFM_P2), &roots(&[vector(TFM_PUBLIC)])).unwrap();
    assert_eq!(psa(&claims, "profile"), "http://arm.com/psa/2.0.0");
    assert_eq!(claims.report_data.0, vec![0; 64]);
    assert_eq!(
        psa(&claims, "boot_seed"),
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    );
    assert_eq!(
        claims.platform_id.as_ref().unwrap().to_string(),
        "01fa58755f658627ce5460f29b75296713248cae7ad9e2984b90280efcbcb50248"
    );
    assert_eq!(
        psa(&claims, "implementation_id"),
        "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd"
    );
    assert_eq!(psa(&claims, "client_id"), 3002);
    assert_eq!(psa(&claims, "verification_service"), "www.trustedfirmware.org");
    assert_eq!(psa(&claims, "certification_reference"), "0604565272829-10010");
    assert!(psa(&claims, "hardware_version").is_null());
    let components = psa(&claims, "software_components").as_array().unwrap();
    assert_eq!(components[0]["measurement_type"], "SPE");
    assert_eq!(components[0]["version"], "1.6.0");
    assert_eq!(components[0]["measurement_desc"], "SHA256");
    assert_eq!(
        components[0]["measurement_value"],
        "96a2ec56c65120a60ce3a53ef8d2082233772aacd5b17935a92be12ac577f685"
    );
    assert_eq!(
        components[0]["signer_id"],
        "bfe6d86f8826f4ff97fb96c4e6fbc4993e4619fc565da26adf34c329489adc38"
    );
    assert_eq!(components[1]["measurement_type"], "NSPE");
    assert_eq!(
        components[1]["measurement_value"],
        "087d13c68f32aaafb8c4fc0a2253445432009765e216fb85c398c9580522c1bf"
    );
    // measurement = SHA-256(0x20 ‖ mv(SPE) ‖ 0x20 ‖ mv(NSPE)), computed here independently.
    let mut preimage = vec![32];
    preimage.extend(
        hex::decode("96a2ec56c65120a60ce3a53ef8d2082233772aacd5b17935a92be12ac577f685").unwrap(),
    );
    preimage.push(32);
    preimage.extend(
        hex::decode("087d13c68f32aaafb8c4fc0a2253445432009765e216fb85c398c9580522c1bf").unwrap(),
    );
    assert_eq!(claims.measurement.0, sha2::Sha256::digest(&preimage).to_vec());
    // Two components signed by different keys: no single signer.
    assert_eq!(claims.signer, None);
    assert!(!claims.debug);
    assert_golden("psa_tfm_2_0_0", &claims);
}

#[test]
fn tfm_profile_1_token_verifies_with_tfm_public_key() {
    let claims = verify(&vector(TFM_P1), &roots(&[vector(TFM_PUBLIC)])).unwrap();
    assert_eq!(psa(&claims, "profile"), "PSA_IOT_PROFILE_1");
    assert_eq!(claims.report_data.0, vec![0; 64]);
    assert_eq!(psa(&claims, "hardware_version"), "0604565272829-10010");
    assert!(psa(&claims, "certification_reference").is_null());
    assert_eq!(
        psa(&claims, "software_components")[0]["measurement_value"],
        "81e2658849 97ccc4fbb37738b99842bd6408dae6a02b4db709b1ac198840f05a".replace(' ', "")
    );
    assert_golden("psa_tfm_p1", &claims);
}

#[test]
fn every_wrong_key_is_refused() {
    // RFC 9783 sign1 example with the TF-M key.
    let e = psa_error(verify(&vector(RFC_SIGN1), &roots(&[vector(TFM_PUBLIC)])));
    assert!(matches!(e, PsaError::BadSignature { kind: "signature", tried: 1 }), "{e}");
    // TF-M 2.0.0 and P1 tokens with the RFC 9783 example key.
    for token in [TFM_P2, TFM_P1] {
        let e = psa_error(verify(&vector(token), &roots(&[rfc_es_anchor()])));
        assert!(matches!(e, PsaError::BadSignature { tried: 1, .. }), "{e}");
    }
    // The mac0 example with any other symmetric key, and with asymmetric keys only.
    let e = psa_error(verify(&vector(RFC_MAC0), &roots(&[oct_jwk(&[0x5a; 64])])));
    assert!(matches!(e, PsaError::BadSignature { kind: "MAC", tried: 1 }), "{e}");
    let e = psa_error(verify(&vector(RFC_MAC0), &roots(&[rfc_es_anchor()])));
    assert!(matches!(e, PsaError::BadSignature { kind: "MAC", tried: 0 }), "{e}");
    // And the sign1 example with only the symmetric key.
    let e = psa_error(verify(&vector(RFC_SIGN1), &roots(&[rfc_hs_anchor()])));
    assert!(matches!(e, PsaError::BadSignature { tried: 0, .. }), "{e}");
}

#[test]
fn the_right_key_among_others_is_found() {
    let anchors = roots(&[vector(TFM_PUBLIC), rfc_hs_anchor(), rfc_es_anchor()]);
    assert!(verify(&vector(RFC_SIGN1), &anchors).is_ok());
    assert!(verify(&vector(RFC_MAC0), &anchors).is_ok());
    assert!(verify(&vector(TFM_P2), &anchors).is_ok());
}

#[test]
fn tampered_tokens_are_refused() {
    for (token, anchor) in
        [(RFC_SIGN1, rfc_es_anchor()), (RFC_MAC0, rfc_hs_anchor()), (TFM_P2, vector(TFM_PUBLIC))]
    {
        let bytes = vector(token);
        // A byte inside the payload (the claims start well after the 16-byte envelope prefix).
        let mut tampered = bytes.clone();
        tampered[60] ^= 0x01;
        let e = psa_error(verify(&tampered, &roots(std::slice::from_ref(&anchor))));
        assert!(matches!(e, PsaError::BadSignature { .. } | PsaError::NotPsaToken(_)), "{e}");
        // The last byte of the signature or MAC.
        let mut tampered = bytes.clone();
        *tampered.last_mut().unwrap() ^= 0x01;
        let e = psa_error(verify(&tampered, &roots(&[anchor])));
        assert!(matches!(e, PsaError::BadSignature { tried: 1, .. }), "{e}");
    }
}

#[test]
fn no_anchor_or_an_unreadable_one_is_refused() {
    let e = psa_error(verify(&vector(RFC_SIGN1), &TrustAnchors::new()));
    assert!(matches!(e, PsaError::NoTrustAnchor), "{e}");
    // A CCA anchor is no PSA anchor.
    let cca = TrustAnchors::new().with_root(TeeKind::Cca, rfc_es_anchor());
    assert!(matches!(psa_error(verify(&vector(RFC_SIGN1), &cca)), PsaError::NoTrustAnchor));
    for bad in [
        b"not a key".to_vec(),
        br#"{"kty": "oct", "k": "c2hvcnQ"}"#.to_vec(),
        br#"{"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "alg": "HS384"}"#
            .to_vec(),
        br#"{"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "alg": "RS256"}"#
            .to_vec(),
        br#"{"kty": "RSA", "n": "AQAB", "e": "AQAB"}"#.to_vec(),
        br#"{"pkey": {"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "instance-id": "01"}"#
            .to_vec(),
    ] {
        // A bad anchor is refused even beside a good one.
        let e = psa_error(verify(&vector(RFC_SIGN1), &roots(&[rfc_es_anchor(), bad.clone()])));
        assert!(
            matches!(e, PsaError::BadTrustAnchor { list: "root", index: 1, .. }),
            "{}: {e}",
            String::from_utf8_lossy(&bad)
        );
    }
}

#[test]
fn a_symmetric_key_is_no_cca_anchor() {
    let anchors = TrustAnchors::new().with_root(TeeKind::Cca, rfc_hs_anchor());
    let collateral = Collateral::new();
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: NOW };
    let e = verify_vendor_evidence(
        TeeKind::Cca,
        &vector("cca/trustee_cca-example-token.cbor"),
        &inputs,
    )
    .unwrap_err();
    assert!(matches!(e, VerifyError::Cca(CcaError::BadTrustAnchor { .. })), "{e}");
}

#[test]
fn anchors_restricted_to_ids_must_match_the_token() {
    let jwk: serde_json::Value = serde_json::from_slice(&rfc_es_anchor()).unwrap();
    let mut instance = vec![0x01];
    instance.extend([0x02; 32]);
    let entry = |implementation: &[u8], instance: &[u8]| {
        serde_json::json!({
            "pkey": jwk,
            "implementation-id": hex::encode(implementation),
            "instance-id": hex::encode(instance),
        })
        .to_string()
        .into_bytes()
    };
    let token = vector(RFC_SIGN1);
    assert!(verify(&token, &roots(&[entry(&[0; 32], &instance)])).is_ok());
    let mut other_instance = instance.clone();
    other_instance[32] = 0x03;
    let e = psa_error(verify(&token, &roots(&[entry(&[0; 32], &other_instance)])));
    assert!(matches!(e, PsaError::AnchorIdMismatch { field: "instance id", .. }), "{e}");
    let e = psa_error(verify(&token, &roots(&[entry(&[1; 32], &instance)])));
    assert!(matches!(e, PsaError::AnchorIdMismatch { field: "implementation id", .. }), "{e}");
    // A mismatching entry beside a matching one: the matching one is used.
    assert!(
        verify(&token, &roots(&[entry(&[1; 32], &instance), entry(&[0; 32], &instance)])).is_ok()
    );
    // The same restriction on a symmetric key (the mac0 example's instance id).
    let mac_instance =
        hex::decode("01c557bd4fadc83f756fca2cd5ea2dcc8b82159bb4e7453d6a744d4eecd6d0ac60").unwrap();
    let oct = serde_json::json!({"kty": "oct", "k": b64url(&vector(RFC_HS_IAK)), "alg": "HS256"});
    let wrapped = |instance: &[u8]| {
        serde_json::json!({"pkey": oct, "instance-id": hex::encode(instance)})
            .to_string()
            .into_bytes()
    };
    assert!(verify(&vector(RFC_MAC0), &roots(&[wrapped(&mac_instance)])).is_ok());
    let e = psa_error(verify(&vector(RFC_MAC0), &roots(&[wrapped(&instance)])));
    assert!(matches!(e, PsaError::AnchorIdMismatch { field: "instance id", .. }), "{e}");
}

#[test]
fn test_roots_are_marked_test() {
    let test = TrustAnchors::new().with_test_root(TeeKind::Psa, vector(TFM_PUBLIC));
    let claims = verify(&vector(TFM_P2), &test).unwrap();
    assert_eq!(claims.trust_anchor(), Some("test"));
    assert!(claims.under_test_root());
    let both = test.with_root(TeeKind::Psa, vector(TFM_PUBLIC));
    assert_eq!(verify(&vector(TFM_P2), &both).unwrap().trust_anchor(), Some("test"));
    let instance = roots(&[vector(TFM_PUBLIC)]);
    assert_eq!(verify(&vector(TFM_P2), &instance).unwrap().trust_anchor(), Some("instance"));
    // An unreadable test root is refused too.
    let bad = instance.with_test_root(TeeKind::Psa, b"junk".to_vec());
    let e = psa_error(verify(&vector(TFM_P2), &bad));
    assert!(matches!(e, PsaError::BadTrustAnchor { list: "test root", index: 0, .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Veraison's JSON claim sets, converted to CBOR claims maps of each profile as Veraison's P1
// and P2 claim structures read them (JSON members a profile does not define are ignored).

const JSON_VECTORS: [&str; 31] = [
    "boot-seed-invalid-long",
    "boot-seed-invalid-missing",
    "boot-seed-invalid-short",
    "client-id-invalid-missing",
    "hardware-version-invalid",
    "implementation-id-invalid-long",
    "implementation-id-invalid-missing",
    "implementation-id-invalid-short",
    "instance-id-invalid-euid-type",
    "instance-id-invalid-long",
    "instance-id-invalid-missing",
    "instance-id-invalid-short",
    "nonce-invalid-long",
    "nonce-invalid-missing",
    "nonce-invalid-short",
    "profile-invalid-missing",
    "profile-invalid-unknown",
    "security-lifecycle-invalid-missing",
    "security-lifecycle-invalid-state",
    "sw-component-and-no-sw-measurements-missing",
    "sw-component-measurement-value-invalid-missing",
    "sw-component-measurement-value-invalid-short",
    "sw-component-signer-id-invalid-missing",
    "sw-component-signer-id-invalid-short",
    "sw-components-empty",
    "sw-components-invalid-combo",
    "sw-components-invalid-missing",
    "token-valid-full",
    "token-valid-minimalist-no-sw-measurements",
    "token-valid-minimalist-p1",
    "token-valid-minimalist-p2",
    // "vsi-invalid-empty" is listed below; "profile-valid-missing" is byte-identical to
    // "profile-invalid-missing" and not in the vectors.
];

#[derive(Clone, Copy, PartialEq)]
enum JsonProfile {
    P1,
    P2,
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

/// The JSON member → claim key of each profile (Veraison's `P1Claims` / `P2Claims` tags).
fn json_key(profile: JsonProfile, name: &str) -> Option<i64> {
    match (profile, name) {
        (JsonProfile::P1, "psa-profile") => Some(-75000),
        (JsonProfile::P1, "psa-client-id") => Some(-75001),
        (JsonProfile::P1, "psa-security-lifecycle") => Some(-75002),
        (JsonProfile::P1, "psa-implementation-id") => Some(-75003),
        (JsonProfile::P1, "psa-boot-seed") => Some(-75004),
        (JsonProfile::P1, "psa-hwver") => Some(-75005),
        (JsonProfile::P1, "psa-software-components") => Some(-75006),
        (JsonProfile::P1, "psa-no-software-measurements") => Some(-75007),
        (JsonProfile::P1, "psa-nonce") => Some(-75008),
        (JsonProfile::P1, "psa-instance-id") => Some(-75009),
        (JsonProfile::P1, "psa-verification-service-indicator") => Some(-75010),
        (JsonProfile::P2, "eat-profile") => Some(265),
        (JsonProfile::P2, "psa-client-id") => Some(2394),
        (JsonProfile::P2, "psa-security-lifecycle") => Some(2395),
        (JsonProfile::P2, "psa-implementation-id") => Some(2396),
        (JsonProfile::P2, "psa-boot-seed") => Some(2397),
        (JsonProfile::P2, "psa-certification-reference") => Some(2398),
        (JsonProfile::P2, "psa-software-components") => Some(2399),
        (JsonProfile::P2, "psa-nonce") => Some(10),
        (JsonProfile::P2, "psa-instance-id") => Some(256),
        (JsonProfile::P2, "psa-verification-service-indicator") => Some(2400),
        _ => None,
    }
}

/// A JSON byte string (standard base64, as Go encodes `[]byte`).
fn json_bytes(value: &serde_json::Value) -> Value {
    let text = value.as_str().unwrap();
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) => Value::Bytes(bytes),
        // Go refuses it too; keep it a text string, which no byte-string claim accepts.
        Err(_) => Value::Text(text.to_owned()),
    }
}

fn json_component(value: &serde_json::Value) -> Value {
    let entries = value
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| match name.as_str() {
            "measurement-type" => (int(1), Value::Text(value.as_str().unwrap().into())),
            "measurement-value" => (int(2), json_bytes(value)),
            "version" => (int(4), Value::Text(value.as_str().unwrap().into())),
            "signer-id" => (int(5), json_bytes(value)),
            "measurement-description" => (int(6), Value::Text(value.as_str().unwrap().into())),
            other => panic!("unexpected software component member {other}"),
        })
        .collect();
    Value::Map(entries)
}

fn json_to_cbor(profile: JsonProfile, json: &[u8]) -> Vec<u8> {
    let json: serde_json::Value = serde_json::from_slice(json).unwrap();
    let mut entries = Vec::new();
    for (name, value) in json.as_object().unwrap() {
        let Some(key) = json_key(profile, name) else { continue };
        let value = match value {
            serde_json::Value::Number(n) => int(n.as_i64().unwrap()),
            serde_json::Value::Array(items) => {
                Value::Array(items.iter().map(json_component).collect())
            }
            serde_json::Value::String(_)
                if name.ends_with("-id") || name.ends_with("-seed") || name == "psa-nonce" =>
            {
                json_bytes(value)
            }
            serde_json::Value::String(text) => Value::Text(text.clone()),
            other => panic!("unexpected JSON value {other}"),
        };
        entries.push((int(key), value));
    }
    Value::Map(entries).to_vec().unwrap()
}

fn json_verdict(profile: JsonProfile, name: &str) -> Result<&'static str, PsaError> {
    let json = vector(&format!("psa/psatoken_json_test-{name}.json"));
    check_psa_claims(&json_to_cbor(profile, &json))
}

#[test]
fn veraison_json_claim_sets_for_profile_1() {
    let accept = [
        "profile-invalid-missing",
        "token-valid-full",
        "token-valid-minimalist-no-sw-measurements",
        "token-valid-minimalist-p1",
    ];
    for name in JSON_VECTORS.iter().chain(&["vsi-invalid-empty"]) {
        let verdict = json_verdict(JsonProfile::P1, name);
        if accept.contains(name) {
            assert_eq!(verdict.unwrap(), "PSA_IOT_PROFILE_1", "{name}");
        } else {
            assert!(verdict.is_err(), "{name} must be refused under P1: {verdict:?}");
        }
    }
}

#[test]
fn veraison_json_claim_sets_for_profile_2() {
    let accept = ["token-valid-full", "token-valid-minimalist-p2", "boot-seed-invalid-missing"];
    for name in JSON_VECTORS.iter().chain(&["vsi-invalid-empty"]) {
        let verdict = json_verdict(JsonProfile::P2, name);
        if accept.contains(name) {
            assert_eq!(verdict.unwrap(), "http://arm.com/psa/2.0.0", "{name}");
        } else {
            assert!(verdict.is_err(), "{name} must be refused under P2: {verdict:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic claims and tokens, under test keys.

mod synthetic {
    use super::*;

    pub(super) const RFC: &str = "tag:psacertified.org,2023:psa#tfm";
    pub(super) const P2: &str = "http://arm.com/psa/2.0.0";

    fn iak() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap()
    }

    fn iak384() -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::from_slice(&[0x12; 48]).unwrap()
    }

    fn iak384_jwk() -> Vec<u8> {
        let point = iak384().verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        serde_json::json!({"kty": "EC", "crv": "P-384", "x": b64url(&bytes[1..49]), "y": b64url(&bytes[49..])})
            .to_string()
            .into_bytes()
    }

    const MAC_KEY: [u8; 64] = [0x6b; 64];

    pub(super) fn instance_id() -> Vec<u8> {
        let mut id = vec![0x01];
        id.extend([0x42; 32]);
        id
    }

    fn component(mv: u8, signer: u8) -> Value {
        Value::Map(vec![
            (int(1), Value::Text("BL".into())),
            (int(2), Value::Bytes(vec![mv; 32])),
            (int(4), Value::Text("1.0.0".into())),
            (int(5), Value::Bytes(vec![signer; 32])),
            (int(6), Value::Text("sha-256".into())),
        ])
    }

    /// A full claims map of `profile` with a 64-byte nonce `nonce`.
    pub(super) fn claims(profile: &str, nonce: &[u8]) -> Vec<(Value, Value)> {
        let boot_seed = if profile == RFC { 268 } else { 2397 };
        vec![
            (int(265), Value::Text(profile.into())),
            (int(10), Value::Bytes(nonce.to_vec())),
            (int(256), Value::Bytes(instance_id())),
            (int(2396), Value::Bytes(vec![0x33; 32])),
            (int(2394), int(-1)),
            (int(2395), int(0x3000)),
            (int(boot_seed), Value::Bytes(vec![0x55; 16])),
            (int(2398), Value::Text("1234567890123-12345".into())),
            (int(2399), Value::Array(vec![component(0x44, 0x66), component(0x45, 0x66)])),
            (int(2400), Value::Text("https://verifier.example".into())),
        ]
    }

    pub(super) fn p1_claims() -> Vec<(Value, Value)> {
        vec![
            (int(-75000), Value::Text("PSA_IOT_PROFILE_1".into())),
            (int(-75001), int(1)),
            (int(-75002), int(0x3000)),
            (int(-75003), Value::Bytes(vec![0x33; 32])),
            (int(-75004), Value::Bytes(vec![0x55; 32])),
            (int(-75005), Value::Text("1234567890123".into())),
            (int(-75006), Value::Array(vec![component(0x44, 0x66)])),
            (int(-75008), Value::Bytes(vec![0x77; 32])),
            (int(-75009), Value::Bytes(instance_id())),
            (int(-75010), Value::Text("https://verifier.example".into())),
        ]
    }

    pub(super) fn with(
        mut claims: Vec<(Value, Value)>,
        key: i64,
        value: Option<Value>,
    ) -> Vec<(Value, Value)> {
        claims.retain(|(k, _)| *k != int(key));
        if let Some(value) = value {
            claims.push((int(key), value));
        }
        claims
    }

    pub(super) fn check(claims: Vec<(Value, Value)>) -> Result<&'static str, PsaError> {
        check_psa_claims(&Value::Map(claims).to_vec().unwrap())
    }

    fn payload(claims: Vec<(Value, Value)>) -> Vec<u8> {
        Value::Map(claims).to_vec().unwrap()
    }

    fn es256(alg: iana::Algorithm, claims: Vec<(Value, Value)>) -> coset::CoseSign1 {
        CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(alg).build())
            .payload(payload(claims))
            .create_signature(b"", |data| {
                let signature: p256::ecdsa::Signature = iak().sign(data);
                signature.to_bytes().to_vec()
            })
            .build()
    }

    pub(super) fn sign1(claims: Vec<(Value, Value)>) -> Vec<u8> {
        es256(iana::Algorithm::ES256, claims).to_tagged_vec().unwrap()
    }

    fn hmac_alg(alg: iana::Algorithm) -> ring::hmac::Algorithm {
        match alg {
            iana::Algorithm::HMAC_384_384 => ring::hmac::HMAC_SHA384,
            iana::Algorithm::HMAC_512_512 => ring::hmac::HMAC_SHA512,
            _ => ring::hmac::HMAC_SHA256,
        }
    }

    fn mac0_with(alg: iana::Algorithm, claims: Vec<(Value, Value)>) -> coset::CoseMac0 {
        let key = ring::hmac::Key::new(hmac_alg(alg), &MAC_KEY);
        CoseMac0Builder::new()
            .protected(HeaderBuilder::new().algorithm(alg).build())
            .payload(payload(claims))
            .create_tag(b"", |data| ring::hmac::sign(&key, data).as_ref().to_vec())
            .build()
    }

    #[test]
    fn the_fuzz_target_trusts_the_synthetic_iak() {
        let jwk = String::from_utf8(p256_jwk(iak().verifying_key())).unwrap();
        assert!(jwk.contains("AhfmF_C2RDkoJ4-WmZ5pojpPLBUr321s32bluAKC1O0"), "{jwk}");
        assert!(jwk.contains("GUp968uXcS0t2jyoWqh2Wlb0X8dYWZZS8ol8ZTBuV5Q"), "{jwk}");
    }

    pub(super) fn trusted() -> TrustAnchors {
        roots(&[p256_jwk(iak().verifying_key()), oct_jwk(&MAC_KEY), iak384_jwk()])
    }

    #[test]
    fn every_profile_and_algorithm_verifies() {
        for profile in [RFC, P2] {
            let claims = verify(&sign1(claims(profile, &[0x77; 64])), &trusted()).unwrap();
            assert_eq!(psa(&claims, "profile"), profile);
            assert_eq!(psa(&claims, "boot_seed").as_str().unwrap(), hex::encode([0x55; 16]));
            assert_eq!(psa(&claims, "client_id"), -1);
            assert_eq!(claims.signer, Some(Hex(vec![0x66; 32])));
            assert_eq!(psa(&claims, "software_components")[0]["measurement_desc"], "sha-256");
            assert_eq!(psa(&claims, "software_components")[0]["version"], "1.0.0");
            assert_eq!(
                psa(&claims, "iak").as_str().unwrap(),
                hex::encode(iak().verifying_key().to_sec1_point(false).as_bytes())
            );
        }
        for alg in [
            iana::Algorithm::HMAC_256_256,
            iana::Algorithm::HMAC_384_384,
            iana::Algorithm::HMAC_512_512,
        ] {
            let token = mac0_with(alg, claims(RFC, &[0x77; 64])).to_tagged_vec().unwrap();
            let claims = verify(&token, &trusted()).unwrap();
            assert_eq!(psa(&claims, "token_format"), "mac0");
        }
        let es384 = CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(iana::Algorithm::ES384).build())
            .payload(payload(claims(RFC, &[0x77; 48])))
            .create_signature(b"", |data| {
                let signature: p384::ecdsa::Signature = iak384().sign(data);
                signature.to_bytes().to_vec()
            })
            .build()
            .to_tagged_vec()
            .unwrap();
        let verified = verify(&es384, &trusted()).unwrap();
        assert_eq!(psa(&verified, "signature_algorithm"), "ES384");
        assert_eq!(verified.report_data.0, vec![0x77; 48]);
        // The P-384 key alone cannot serve ES256, nor the P-256 key ES384.
        let e = psa_error(verify(&sign1(claims(RFC, &[0; 64])), &roots(&[iak384_jwk()])));
        assert!(matches!(e, PsaError::BadSignature { tried: 0, .. }), "{e}");
        let e = psa_error(verify(&es384, &roots(&[p256_jwk(iak().verifying_key())])));
        assert!(matches!(e, PsaError::BadSignature { tried: 0, .. }), "{e}");
    }

    #[test]
    fn a_key_restricted_to_one_hmac_serves_only_it() {
        let only_256 = serde_json::json!({"kty": "oct", "k": b64url(&MAC_KEY), "alg": "HS256"});
        let anchors = roots(&[only_256.to_string().into_bytes()]);
        let token = mac0_with(iana::Algorithm::HMAC_256_256, claims(RFC, &[0; 64]))
            .to_tagged_vec()
            .unwrap();
        assert!(verify(&token, &anchors).is_ok());
        let token = mac0_with(iana::Algorithm::HMAC_512_512, claims(RFC, &[0; 64]))
            .to_tagged_vec()
            .unwrap();
        let e = psa_error(verify(&token, &anchors));
        assert!(matches!(e, PsaError::BadSignature { kind: "MAC", tried: 0 }), "{e}");
        // An unrestricted 32-byte key is too short for HMAC 512/512 (RFC 7518 §3.2).
        let short = roots(&[oct_jwk(&MAC_KEY[..32])]);
        let e = psa_error(verify(&token, &short));
        assert!(matches!(e, PsaError::BadSignature { kind: "MAC", tried: 0 }), "{e}");
    }

    #[test]
    fn untagged_tokens_are_read_by_their_algorithm() {
        let untagged = es256(iana::Algorithm::ES256, claims(RFC, &[0; 64])).to_vec().unwrap();
        let claims_1 = verify(&untagged, &trusted()).unwrap();
        assert_eq!(psa(&claims_1, "tagged"), false);
        let untagged =
            mac0_with(iana::Algorithm::HMAC_256_256, claims(RFC, &[0; 64])).to_vec().unwrap();
        assert_eq!(psa(&verify(&untagged, &trusted()).unwrap(), "token_format"), "mac0");
    }

    #[test]
    fn a_tag_contradicting_the_algorithm_is_refused() {
        // A MACed message under the COSE_Sign1 tag, and a signed one under COSE_Mac0's.
        let mac = mac0_with(iana::Algorithm::HMAC_256_256, claims(RFC, &[0; 64])).to_vec().unwrap();
        let as_sign1 = Value::Tag(18, Box::new(Value::from_slice(&mac).unwrap())).to_vec().unwrap();
        let e = psa_error(verify(&as_sign1, &trusted()));
        assert!(matches!(e, PsaError::EnvelopeMismatch { tag: 18, .. }), "{e}");
        let signed = es256(iana::Algorithm::ES256, claims(RFC, &[0; 64])).to_vec().unwrap();
        let as_mac0 =
            Value::Tag(17, Box::new(Value::from_slice(&signed).unwrap())).to_vec().unwrap();
        let e = psa_error(verify(&as_mac0, &trusted()));
        assert!(matches!(e, PsaError::EnvelopeMismatch { tag: 17, .. }), "{e}");
        let other = Value::Tag(98, Box::new(Value::from_slice(&signed).unwrap())).to_vec().unwrap();
        assert!(matches!(psa_error(verify(&other, &trusted())), PsaError::NotPsaToken(_)));
    }

    #[test]
    fn header_rules_are_enforced() {
        let sign_with = |protected: coset::Header, unprotected: coset::Header| {
            CoseSign1Builder::new()
                .protected(protected)
                .unprotected(unprotected)
                .payload(payload(claims(RFC, &[0; 64])))
                .create_signature(b"", |data| {
                    let signature: p256::ecdsa::Signature = iak().sign(data);
                    signature.to_bytes().to_vec()
                })
                .build()
                .to_tagged_vec()
                .unwrap()
        };
        let es256 = || HeaderBuilder::new().algorithm(iana::Algorithm::ES256);
        // A kid in the unprotected header is fine (TF-M sends one).
        let kid = sign_with(es256().build(), HeaderBuilder::new().key_id(vec![1, 2]).build());
        assert!(verify(&kid, &trusted()).is_ok());
        // Critical parameters, protected or not, are refused.
        let crit = sign_with(
            es256()
                .add_critical(iana::HeaderParameter::ContentType)
                .content_format(iana::CoapContentFormat::Cbor)
                .build(),
            HeaderBuilder::new().build(),
        );
        assert!(matches!(psa_error(verify(&crit, &trusted())), PsaError::CriticalHeader(_)));
        let crit_private = sign_with(
            es256()
                .add_critical_label(coset::RegisteredLabelWithPrivate::PrivateUse(-65537))
                .build(),
            HeaderBuilder::new().build(),
        );
        assert!(matches!(
            psa_error(verify(&crit_private, &trusted())),
            PsaError::CriticalHeader(_)
        ));
        // The algorithm must be protected, and present.
        let unprotected_alg = sign_with(
            HeaderBuilder::new().build(),
            HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build(),
        );
        assert!(matches!(
            psa_error(verify(&unprotected_alg, &trusted())),
            PsaError::NotPsaToken(_)
        ));
        let both = sign_with(es256().build(), es256().build());
        assert!(matches!(psa_error(verify(&both, &trusted())), PsaError::NotPsaToken(_)));
        // Unsupported algorithms.
        for alg in [
            iana::Algorithm::ES256K,
            iana::Algorithm::EdDSA,
            iana::Algorithm::HMAC_256_64,
            iana::Algorithm::PS256,
        ] {
            let token = sign_with(
                HeaderBuilder::new().algorithm(alg).build(),
                HeaderBuilder::new().build(),
            );
            let e = psa_error(verify(&token, &trusted()));
            assert!(matches!(e, PsaError::UnsupportedAlgorithm(_)), "{alg:?}: {e}");
        }
        // A detached payload.
        let mut detached = es256_message();
        detached.payload = None;
        let detached = detached.to_tagged_vec().unwrap();
        assert!(matches!(psa_error(verify(&detached, &trusted())), PsaError::NotPsaToken(_)));
        // Trailing bytes after the message, and an oversized token.
        let mut trailing = sign1(claims(RFC, &[0; 64]));
        trailing.push(0);
        assert!(matches!(psa_error(verify(&trailing, &trusted())), PsaError::NotPsaToken(_)));
        let e = psa_error(verify(&vec![0; 17 * 1024], &trusted()));
        assert!(matches!(e, PsaError::NotPsaToken(_)), "{e}");
    }

    fn es256_message() -> coset::CoseSign1 {
        es256(iana::Algorithm::ES256, claims(RFC, &[0; 64]))
    }

    #[test]
    fn claims_are_checked_after_the_signature() {
        // A well-signed token with malformed claims is refused with the claims error.
        let token = sign1(with(claims(RFC, &[0; 64]), 256, None));
        let e = psa_error(verify(&token, &trusted()));
        assert!(matches!(e, PsaError::MissingClaim { key: 256, .. }), "{e}");
        // A badly signed token with malformed claims is refused for its signature.
        let mut message = es256_message();
        message.payload = Some(payload(with(claims(RFC, &[0; 64]), 256, None)));
        let e = psa_error(verify(&message.to_tagged_vec().unwrap(), &trusted()));
        assert!(matches!(e, PsaError::BadSignature { .. }), "{e}");
    }

    #[test]
    fn lifecycle_sets_debug() {
        for (lifecycle, name, debug) in [
            (0x0000, "unknown", true),
            (0x10ff, "assembly_and_test", true),
            (0x2001, "psa_rot_provisioning", true),
            (0x3000, "secured", false),
            (0x30ff, "secured", false),
            (0x4000, "non_psa_rot_debug", true),
            (0x5000, "recoverable_psa_rot_debug", true),
            (0x6000, "decommissioned", true),
        ] {
            let token = sign1(with(claims(P2, &[0; 64]), 2395, Some(int(lifecycle))));
            let claims = verify(&token, &trusted()).unwrap();
            assert_eq!(claims.debug, debug, "{lifecycle:#x}");
            assert_eq!(psa(&claims, "security_lifecycle")["name"], name);
        }
    }

    #[test]
    fn optional_claims_may_be_absent() {
        let mut minimal = claims(RFC, &[0; 64]);
        for key in [268, 2398, 2400] {
            minimal = with(minimal, key, None);
        }
        minimal = with(
            minimal,
            2399,
            Some(Value::Array(vec![Value::Map(vec![
                (int(2), Value::Bytes(vec![0x44; 64])),
                (int(5), Value::Bytes(vec![0x66; 48])),
            ])])),
        );
        let claims = verify(&sign1(minimal), &trusted()).unwrap();
        for field in
            ["boot_seed", "certification_reference", "verification_service", "hardware_version"]
        {
            assert!(psa(&claims, field).is_null(), "{field}");
        }
        let component = &psa(&claims, "software_components")[0];
        for field in ["measurement_type", "version", "measurement_desc"] {
            assert!(component[field].is_null(), "{field}");
        }
        let mut preimage = vec![64];
        preimage.extend([0x44; 64]);
        assert_eq!(claims.measurement.0, sha2::Sha256::digest(&preimage).to_vec());
        assert_eq!(claims.signer, Some(Hex(vec![0x66; 48])));
    }

    #[test]
    fn profile_1_no_software_measurements() {
        let none = with(with(p1_claims(), -75006, None), -75007, Some(int(1)));
        assert_eq!(check(none.clone()).unwrap(), "PSA_IOT_PROFILE_1");
        let claims = verify(&sign1(none.clone()), &trusted()).unwrap();
        assert_eq!(claims.measurement.0, sha2::Sha256::digest(b"").to_vec());
        assert_eq!(claims.signer, None);
        assert_eq!(psa(&claims, "no_software_measurements"), true);
        assert_eq!(psa(&claims, "software_components"), &serde_json::json!([]));
        assert_eq!(psa(&claims, "hardware_version"), "1234567890123");
        // Both, neither, or another value than 1.
        let both = with(p1_claims(), -75007, Some(int(1)));
        assert!(matches!(check(both), Err(PsaError::Claims(_))));
        let neither = with(p1_claims(), -75006, None);
        assert!(matches!(check(neither), Err(PsaError::MissingClaim { key: -75006, .. })));
        assert!(matches!(check(with(none, -75007, Some(int(2)))), Err(PsaError::Claims(_))));
        // The claim does not exist outside P1.
        let p2 = with(claims_of(P2), -75007, Some(int(1)));
        assert!(matches!(check(p2), Err(PsaError::UnknownClaim(_))));
    }

    pub(super) fn claims_of(profile: &str) -> Vec<(Value, Value)> {
        claims(profile, &[0; 64])
    }
}

/// ES512: COSE_Sign1 tokens signed by a P-521 IAK (RFC 9783 allows any COSE ECDSA algorithm;
/// the IAK must be on the curve the algorithm names).
mod es512 {
    use super::synthetic::{RFC, claims};
    use super::*;

    fn iak() -> p521::ecdsa::SigningKey {
        common::p521::key(0x13)
    }

    fn point() -> Vec<u8> {
        common::p521::point(&iak())
    }

    /// A token with `alg` in its protected header, signed by `sign`.
    fn token(alg: iana::Algorithm, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
        CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(alg).build())
            .payload(Value::Map(claims(RFC, &[0x77; 64])).to_vec().unwrap())
            .create_signature(b"", sign)
            .build()
            .to_tagged_vec()
            .unwrap()
    }

    fn es512() -> Vec<u8> {
        token(iana::Algorithm::ES512, |data| common::p521::sign(&iak(), data))
    }

    fn p256_anchor() -> Vec<u8> {
        p256_jwk(p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap().verifying_key())
    }

    fn p384_key() -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::from_slice(&[0x12; 48]).unwrap()
    }

    fn p384_anchor() -> Vec<u8> {
        let point = p384_key().verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        serde_json::json!({"kty": "EC", "crv": "P-384", "x": b64url(&bytes[1..49]), "y": b64url(&bytes[49..])})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn es512_token_verifies_with_its_p521_iak_in_every_anchor_form() {
        let point = point();
        let forms = [
            ("jwk", common::p521::jwk(&point, &[])),
            ("jwk with alg", common::p521::jwk(&point, &[("alg", "ES512")])),
            ("pem", common::p521::spki_pem(&point)),
            ("der", common::p521::spki_der(&point)),
            (
                "veraison entry",
                format!(
                    r#"{{"pkey": {}, "instance-id": "{}"}}"#,
                    String::from_utf8(common::p521::jwk(&point, &[])).unwrap(),
                    hex::encode(synthetic::instance_id())
                )
                .into_bytes(),
            ),
        ];
        for (form, anchor) in forms {
            let claims =
                verify(&es512(), &roots(&[anchor])).unwrap_or_else(|e| panic!("{form}: {e}"));
            assert_eq!(psa(&claims, "signature_algorithm"), "ES512", "{form}");
            assert_eq!(psa(&claims, "iak").as_str().unwrap(), hex::encode(&point), "{form}");
            assert_eq!(claims.report_data.0, vec![0x77; 64]);
        }
        // Beside P-256, P-384 and symmetric anchors, the P-521 one is found.
        let anchors = roots(&[
            p256_anchor(),
            p384_anchor(),
            oct_jwk(&[0x6b; 64]),
            common::p521::jwk(&point, &[]),
        ]);
        assert!(verify(&es512(), &anchors).is_ok());
    }

    #[test]
    fn a_flipped_signature_or_payload_byte_is_refused() {
        let anchors = roots(&[common::p521::jwk(&point(), &[])]);
        let good = es512();
        for at in [good.len() - 1, good.len() - 66, good.len() - 132] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            let e = psa_error(verify(&bad, &anchors));
            assert!(matches!(e, PsaError::BadSignature { tried: 1, .. }), "byte {at}: {e}");
        }
        let mut bad = good.clone();
        bad[60] ^= 0x01;
        let e = psa_error(verify(&bad, &anchors));
        assert!(matches!(e, PsaError::BadSignature { .. } | PsaError::NotPsaToken(_)), "{e}");
        // Another P-521 key.
        let other =
            roots(&[common::p521::jwk(&common::p521::point(&common::p521::key(0x14)), &[])]);
        let e = psa_error(verify(&good, &other));
        assert!(matches!(e, PsaError::BadSignature { tried: 1, .. }), "{e}");
    }

    #[test]
    fn p256_and_p384_anchors_never_verify_es512() {
        for anchor in [p256_anchor(), p384_anchor()] {
            let e = psa_error(verify(&es512(), &roots(&[anchor])));
            assert!(matches!(e, PsaError::BadSignature { tried: 0, .. }), "{e}");
        }
    }

    #[test]
    fn the_algorithm_must_fit_the_key() {
        // An ES512 header over a P-384 signature, with the P-384 key trusted: the key cannot
        // serve ES512, so it is not even tried.
        let es512_by_p384 = token(iana::Algorithm::ES512, |data| {
            use p384::ecdsa::signature::Signer as _;
            let signature: p384::ecdsa::Signature = p384_key().sign(data);
            signature.to_bytes().to_vec()
        });
        let e = psa_error(verify(&es512_by_p384, &roots(&[p384_anchor()])));
        assert!(matches!(e, PsaError::BadSignature { tried: 0, .. }), "{e}");
        // An ES384 header over a P-521 signature, with the P-521 key trusted: refused alike.
        let es384_by_p521 = token(iana::Algorithm::ES384, |data| common::p521::sign(&iak(), data));
        let e = psa_error(verify(&es384_by_p521, &roots(&[common::p521::jwk(&point(), &[])])));
        assert!(matches!(e, PsaError::BadSignature { tried: 0, .. }), "{e}");
        // Both keys trusted: the ES512 token verifies with the P-521 one only.
        let both = roots(&[p384_anchor(), common::p521::jwk(&point(), &[])]);
        assert!(verify(&es512(), &both).is_ok());
        let e = psa_error(verify(&es512_by_p384, &both));
        assert!(matches!(e, PsaError::BadSignature { tried: 1, .. }), "{e}");
    }

    #[test]
    fn unusable_p521_anchors_are_refused() {
        let point = point();
        let mut off_curve = point.clone();
        off_curve[132] ^= 0x01;
        let b64 = |b: &[u8]| b64url(b);
        let cases: [(Vec<u8>, &str); 5] = [
            (common::p521::jwk(&point, &[("alg", "ES384")]), "does not fit curve P-521"),
            (common::p521::jwk(&off_curve, &[]), "not on P-521"),
            // RFC 7518 §6.2.1.2: coordinates are the full 66 bytes, never shortened.
            (
                serde_json::json!({"kty": "EC", "crv": "P-521", "x": b64(&point[2..67]), "y": b64(&point[67..])})
                    .to_string()
                    .into_bytes(),
                "expected 66 for P-521",
            ),
            (common::p521::spki_der(&off_curve), "P-521 public key is not a valid point"),
            (
                serde_json::json!({"kty": "EC", "crv": "P-521", "x": b64(&point[1..67]), "y": b64(&point[67..]), "d": "AA"})
                    .to_string()
                    .into_bytes(),
                "private key",
            ),
        ];
        for (anchor, needle) in cases {
            let e = psa_error(verify(&es512(), &roots(&[anchor])));
            assert!(matches!(e, PsaError::BadTrustAnchor { .. }), "{needle}: {e}");
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn unsupported_algorithm_errors_list_es512() {
        let token = token(iana::Algorithm::EdDSA, |_| vec![0; 64]);
        let e = psa_error(verify(&token, &roots(&[common::p521::jwk(&point(), &[])])));
        assert!(matches!(e, PsaError::UnsupportedAlgorithm(_)), "{e}");
        assert!(e.to_string().contains("ES256, ES384, ES512"), "{e}");
    }
}

/// One claim check each, on claims maps of the profile that defines the claim.
mod claim_checks {
    use super::synthetic::{P2, RFC, check, claims_of, instance_id, p1_claims, with};
    use super::*;

    fn refused(claims: Vec<(Value, Value)>) -> PsaError {
        match check(claims) {
            Ok(profile) => panic!("expected refusal, accepted as {profile}"),
            Err(e) => e,
        }
    }

    fn claims_error(claims: Vec<(Value, Value)>, needle: &str) {
        match refused(claims) {
            PsaError::Claims(reason) => assert!(reason.contains(needle), "{reason}"),
            other => panic!("expected a claims error about {needle}, got {other}"),
        }
    }

    #[test]
    fn the_synthetic_claims_are_valid() {
        assert_eq!(check(claims_of(RFC)).unwrap(), RFC);
        assert_eq!(check(claims_of(P2)).unwrap(), P2);
        assert_eq!(check(p1_claims()).unwrap(), "PSA_IOT_PROFILE_1");
        // P1's profile claim is optional.
        assert_eq!(check(with(p1_claims(), -75000, None)).unwrap(), "PSA_IOT_PROFILE_1");
    }

    #[test]
    fn profiles() {
        assert!(matches!(
            refused(with(claims_of(RFC), 265, Some(Value::Text("x".into())))),
            PsaError::UnknownProfile(_)
        ));
        assert!(matches!(
            refused(with(p1_claims(), -75000, Some(Value::Text("PSA_IOT_PROFILE_2".into())))),
            PsaError::UnknownProfile(_)
        ));
        claims_error(with(claims_of(RFC), 265, Some(Value::Bytes(vec![1]))), "profile");
        // A 2.0.0 claim set without its profile is read as P1, whose keys it lacks.
        assert!(matches!(
            refused(with(claims_of(P2), 265, None)),
            PsaError::MissingClaim { key: -75001, .. }
        ));
    }

    #[test]
    fn mandatory_claims() {
        for key in [10, 256, 2394, 2395, 2396, 2399] {
            for profile in [RFC, P2] {
                let e = refused(with(claims_of(profile), key, None));
                assert!(
                    matches!(e, PsaError::MissingClaim { key: k, .. } if k == i128::from(key)),
                    "{key}: {e}"
                );
            }
        }
        for key in [-75001, -75002, -75003, -75004, -75008, -75009] {
            let e = refused(with(p1_claims(), key, None));
            assert!(
                matches!(e, PsaError::MissingClaim { key: k, .. } if k == i128::from(key)),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn unknown_and_duplicate_claims() {
        assert!(matches!(
            refused(with(claims_of(RFC), 11, Some(int(1)))),
            PsaError::UnknownClaim(_)
        ));
        let mut text_key = claims_of(RFC);
        text_key.push((Value::Text("nonce".into()), int(1)));
        assert!(matches!(refused(text_key), PsaError::UnknownClaim(_)));
        // The boot seed's key is the profile's own: 2397 is unknown in RFC 9783, 268 in 2.0.0.
        assert!(matches!(
            refused(with(claims_of(RFC), 2397, Some(Value::Bytes(vec![0; 8])))),
            PsaError::UnknownClaim(_)
        ));
        assert!(matches!(
            refused(with(claims_of(P2), 268, Some(Value::Bytes(vec![0; 8])))),
            PsaError::UnknownClaim(_)
        ));
        let mut twice = claims_of(RFC);
        twice.push((int(2394), int(5)));
        claims_error(twice, "twice");
    }

    #[test]
    fn client_id() {
        for bad in [int(0), int(1 << 31), int(-(1 << 31) - 1), Value::Text("1".into())] {
            claims_error(with(claims_of(RFC), 2394, Some(bad)), "client id");
        }
        for good in [int(i64::from(i32::MAX)), int(i64::from(i32::MIN)), int(1), int(-1)] {
            assert!(check(with(claims_of(RFC), 2394, Some(good))).is_ok());
        }
    }

    #[test]
    fn security_lifecycle() {
        for bad in [0x0100, 0x0fff, 0x3100, 0x7000, 0xffff, 0x10000, -1] {
            claims_error(with(claims_of(P2), 2395, Some(int(bad))), "security lifecycle");
        }
        claims_error(with(p1_claims(), -75002, Some(int(0x7000))), "security lifecycle");
    }

    #[test]
    fn implementation_and_instance_ids() {
        for len in [31, 33] {
            claims_error(
                with(claims_of(RFC), 2396, Some(Value::Bytes(vec![0; len]))),
                "implementation id",
            );
            claims_error(
                with(p1_claims(), -75003, Some(Value::Bytes(vec![0; len]))),
                "implementation id",
            );
        }
        for len in [32, 34] {
            claims_error(
                with(claims_of(RFC), 256, Some(Value::Bytes(vec![1; len]))),
                "instance id",
            );
        }
        let mut wrong_type = instance_id();
        wrong_type[0] = 0x02;
        claims_error(with(claims_of(RFC), 256, Some(Value::Bytes(wrong_type.clone()))), "RAND");
        claims_error(with(p1_claims(), -75009, Some(Value::Bytes(wrong_type))), "RAND");
        claims_error(with(claims_of(RFC), 256, Some(Value::Text("x".into()))), "instance id");
    }

    #[test]
    fn boot_seed_lengths_per_profile() {
        for (profile, key) in [(RFC, 268), (P2, 2397)] {
            for len in [8, 20, 32] {
                assert!(
                    check(with(claims_of(profile), key, Some(Value::Bytes(vec![0; len])))).is_ok()
                );
            }
            for len in [0, 7, 33, 64] {
                claims_error(
                    with(claims_of(profile), key, Some(Value::Bytes(vec![0; len]))),
                    "boot seed",
                );
            }
            // Optional in both.
            assert!(check(with(claims_of(profile), key, None)).is_ok());
        }
        for len in [8, 31, 33] {
            claims_error(with(p1_claims(), -75004, Some(Value::Bytes(vec![0; len]))), "boot seed");
        }
    }

    #[test]
    fn nonce() {
        for len in [32, 48, 64] {
            assert!(check(with(claims_of(RFC), 10, Some(Value::Bytes(vec![0; len])))).is_ok());
            assert!(check(with(p1_claims(), -75008, Some(Value::Bytes(vec![0; len])))).is_ok());
        }
        for len in [0, 16, 31, 33, 65] {
            claims_error(with(claims_of(RFC), 10, Some(Value::Bytes(vec![0; len]))), "nonce");
            claims_error(with(p1_claims(), -75008, Some(Value::Bytes(vec![0; len]))), "nonce");
        }
        // An EAT nonce array is not a PSA nonce.
        claims_error(
            with(claims_of(RFC), 10, Some(Value::Array(vec![Value::Bytes(vec![0; 32])]))),
            "nonce",
        );
    }

    #[test]
    fn certification_reference_and_hardware_version() {
        for good in ["1234567890123-12345", "0000000000000-00000"] {
            assert!(check(with(claims_of(RFC), 2398, Some(Value::Text(good.into())))).is_ok());
            assert!(check(with(p1_claims(), -75005, Some(Value::Text(good.into())))).is_ok());
        }
        // P1's hardware version may be a bare EAN-13; the 2398 reference may not.
        assert!(
            check(with(p1_claims(), -75005, Some(Value::Text("1234567890123".into())))).is_ok()
        );
        claims_error(
            with(claims_of(P2), 2398, Some(Value::Text("1234567890123".into()))),
            "certification reference",
        );
        for bad in [
            "123456789012-12345",
            "1234567890123-1234",
            "a234567890123-12345",
            "1234567890123_12345",
            "1234567890123-12345-1",
            "",
        ] {
            claims_error(
                with(claims_of(RFC), 2398, Some(Value::Text(bad.into()))),
                "certification reference",
            );
            claims_error(
                with(p1_claims(), -75005, Some(Value::Text(bad.into()))),
                "hardware version",
            );
        }
        claims_error(with(claims_of(RFC), 2398, Some(int(1))), "certification reference");
    }

    #[test]
    fn verification_service_indicator() {
        claims_error(with(claims_of(RFC), 2400, Some(Value::Text(String::new()))), "empty");
        claims_error(with(p1_claims(), -75010, Some(Value::Text(String::new()))), "empty");
        claims_error(
            with(claims_of(RFC), 2400, Some(Value::Bytes(vec![1]))),
            "verification service",
        );
    }

    fn components(items: Vec<Value>) -> Vec<(Value, Value)> {
        with(claims_of(RFC), 2399, Some(Value::Array(items)))
    }

    fn component(entries: Vec<(i64, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (int(k), v)).collect())
    }

    #[test]
    fn software_components() {
        let mv = || (2, Value::Bytes(vec![1; 32]));
        let signer = || (5, Value::Bytes(vec![2; 32]));
        assert!(check(components(vec![component(vec![mv(), signer()])])).is_ok());
        claims_error(components(Vec::new()), "empty");
        claims_error(with(claims_of(RFC), 2399, Some(int(1))), "not an array");
        claims_error(components(vec![int(1)]), "not a map");
        claims_error(components(vec![component(vec![signer()])]), "no measurement value");
        claims_error(components(vec![component(vec![mv()])]), "no signer id");
        for len in [0, 20, 33] {
            claims_error(
                components(vec![component(vec![(2, Value::Bytes(vec![0; len])), signer()])]),
                "measurement value",
            );
            claims_error(
                components(vec![component(vec![mv(), (5, Value::Bytes(vec![0; len]))])]),
                "signer id",
            );
        }
        for (key, name) in [(1, "measurement type"), (4, "version"), (6, "measurement description")]
        {
            claims_error(components(vec![component(vec![mv(), signer(), (key, int(1))])]), name);
        }
        claims_error(
            components(vec![component(vec![mv(), signer(), (3, int(1))])]),
            "unknown key 3",
        );
        let mut text_key =
            vec![(int(2), Value::Bytes(vec![1; 32])), (int(5), Value::Bytes(vec![2; 32]))];
        text_key.push((Value::Text("x".into()), int(1)));
        claims_error(components(vec![Value::Map(text_key)]), "unknown key");
        claims_error(components(vec![component(vec![mv(), signer(), mv()])]), "twice");
        // The error names the component.
        claims_error(
            components(vec![component(vec![mv(), signer()]), component(vec![mv()])]),
            "software component 1",
        );
    }

    #[test]
    fn payload_shapes() {
        for payload in [vec![], vec![0xff], Value::Array(vec![]).to_vec().unwrap()] {
            assert!(matches!(check_psa_claims(&payload), Err(PsaError::Claims(_))));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binding through `verify`: PSA tokens may be main evidence, with a 64-byte nonce.

fn runtime_data() -> RuntimeData {
    RuntimeData {
        nonce: "psa-nonce".into(),
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(vec![7; 32]),
        receipt_pk: "receipt".into(),
        extra: BTreeMap::new(),
    }
}

fn unified(token: Vec<u8>, runtime_data: RuntimeData) -> UnifiedEvidence {
    UnifiedEvidence {
        version: 1,
        tee: TeeKind::Psa,
        evidence: Base64Url(token),
        runtime_data,
        collateral: BTreeMap::new(),
        additional_evidence: BTreeMap::new(),
    }
}

#[test]
fn a_64_byte_nonce_binds_the_runtime_data() {
    let rd = runtime_data();
    let nonce = rd.report_data().unwrap().0;
    let token = synthetic::sign1(synthetic::claims(synthetic::RFC, &nonce));
    let verified =
        cloister_verify::verify(&unified(token.clone(), rd.clone()), &synthetic::trusted(), NOW)
            .unwrap();
    assert_eq!(verified.tee(), TeeKind::Psa);
    assert_eq!(verified.claims().report_data.0, nonce.to_vec());
    assert_eq!(verified.runtime_data(), &rd);
    // Other runtime data: not bound.
    let other = RuntimeData { nonce: "other".into(), ..rd.clone() };
    let e =
        cloister_verify::verify(&unified(token, other), &synthetic::trusted(), NOW).unwrap_err();
    assert!(matches!(e, VerifyError::ReportDataMismatch), "{e}");
    // A 32-byte nonce verifies alone but can never bind.
    let short = synthetic::sign1(synthetic::claims(synthetic::RFC, &nonce[..32]));
    assert!(verify(&short, &synthetic::trusted()).is_ok());
    let e = cloister_verify::verify(&unified(short, rd.clone()), &synthetic::trusted(), NOW)
        .unwrap_err();
    assert!(matches!(e, VerifyError::ReportDataLength(32)), "{e}");
    // The real vectors' nonces bind nothing either.
    let e =
        cloister_verify::verify(&unified(vector(TFM_P2), rd), &roots(&[vector(TFM_PUBLIC)]), NOW)
            .unwrap_err();
    assert!(matches!(e, VerifyError::ReportDataMismatch), "{e}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Psa, &bytes);
            let _ = check_psa_claims(&bytes);
            prop_assert!(verify(&bytes, &synthetic::trusted()).is_err());
        }

        #[test]
        fn mutated_tokens_never_panic_nor_verify(index in 0usize..534, bit in 0u8..8) {
            let mut token = vector(TFM_P2);
            token[index] ^= 1 << bit;
            prop_assert!(verify(&token, &roots(&[vector(TFM_PUBLIC)])).is_err());
        }
    }
}
