//! Huawei virtCCA driver: the real secGear sample (CVM token only, RSA RAK, PS256) against its
//! own RAK, with golden claims and tampering; synthetic tokens with test keys for what the sample
//! lacks (the platform token signed by an AIK certificate, its chain to a listed root, P-521 and
//! RSA RAKs with every allowed hash algorithm) and one negative test per check.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use cloister_types::{Claims, TcbStatus, TeeKind};
use cloister_verify::{
    Collateral, Inputs, TrustAnchors, VerifyError, VirtCcaError, verify_vendor_evidence,
};
use common::{assert_golden, at, vector};

const NOW: &str = "2025-06-01T00:00:00Z";
const SAMPLE: &str = "virtcca/secgear_virtcca.cbor";
const SAMPLE_AIK: &str = "virtcca/secgear_virtcca_aik_cert.der";

/// The sample is ASCII hex of the CBOR token.
fn sample() -> Vec<u8> {
    let text = vector(SAMPLE);
    hex::decode(String::from_utf8(text).unwrap().trim()).unwrap()
}

fn verify_with(
    token: &[u8],
    collateral: &Collateral,
    anchors: &TrustAnchors,
    now: i64,
) -> Result<Claims, VerifyError> {
    let inputs = Inputs { collateral, anchors, now_unix: now };
    verify_vendor_evidence(TeeKind::VirtCca, token, &inputs)
}

fn verify(token: &[u8]) -> Result<Claims, VerifyError> {
    verify_with(token, &Collateral::new(), &TrustAnchors::new(), at(NOW))
}

fn virtcca_error(result: Result<Claims, VerifyError>) -> VirtCcaError {
    match result {
        Ok(_) => panic!("expected a virtcca error, the token verified"),
        Err(VerifyError::VirtCca(e)) => {
            assert!(e.to_string().starts_with("virtcca: "), "{e}");
            e
        }
        Err(other) => panic!("expected a virtcca error, got {other}"),
    }
}

fn vendor<'a>(claims: &'a Claims, field: &str) -> &'a serde_json::Value {
    &claims.vendor["virtcca"][field]
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

fn flipped(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= 0x01;
    out
}

// ---------------------------------------------------------------------------------------------
// The real sample.

#[test]
fn secgear_sample_verifies_with_its_rak_and_says_the_platform_is_unverified() {
    let claims = verify(&sample()).unwrap();
    assert_eq!(claims.tee, TeeKind::VirtCca);
    assert_eq!(
        claims.measurement.to_string(),
        "7309ec52e2870938ffa6930793d61e55ab982a756111410829d6073f66c71708"
    );
    let challenge = claims.report_data.to_string();
    assert_eq!(challenge.len(), 128);
    assert!(challenge.starts_with("783c7f3e50bfffff"), "{challenge}");
    assert!(challenge.ends_with("72616e646f6d2063"), "{challenge}");
    assert_eq!(vendor(&claims, "platform_verified"), false);
    assert_eq!(vendor(&claims, "platform"), "unverified: no platform token");
    assert!(vendor(&claims, "platform_token").is_null());
    assert!(vendor(&claims, "aik").is_null());
    let cvm = vendor(&claims, "cvm");
    assert_eq!(cvm["personalization_value"], "00".repeat(64));
    assert_eq!(cvm["hash_algo"], "sha-256");
    assert_eq!(cvm["public_key_hash_algo"], "sha-256");
    assert_eq!(cvm["public_key_format"], "rsa-spki");
    assert_eq!(cvm["signature_algorithm"], "PS256");
    assert_eq!(cvm["public_key"].as_str().unwrap().len(), 550 * 2);
    let rems = cvm["extensible_measurements"].as_array().unwrap();
    assert_eq!(rems.len(), 4);
    assert!(rems.iter().all(|rem| *rem == "00".repeat(32)));
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert!(claims.debug, "an unverified platform cannot show it is not debuggable");
    assert_eq!(claims.platform_id, None);
    assert_eq!(claims.signer, None);
    assert_eq!(claims.vendor.keys().collect::<Vec<_>>(), ["virtcca"]);
    assert_golden("virtcca_secgear_sample", &claims);
}

#[test]
fn the_aik_certificate_alone_cannot_vouch_for_a_token_without_platform_token() {
    // The AIK's key is not the RAK and the sample has no platform token: nothing links them.
    let collateral = Collateral::new().with_certificates(&vector(SAMPLE_AIK));
    let claims = verify_with(&sample(), &collateral, &TrustAnchors::new(), at(NOW)).unwrap();
    assert_eq!(vendor(&claims, "platform_verified"), false);
    assert_eq!(vendor(&claims, "platform"), "unverified: no platform token");
    assert_eq!(claims, verify(&sample()).unwrap());
}

#[test]
fn flipped_bytes_in_the_sample_are_refused() {
    let token = sample();
    // Inside the RIM (a claim under the signature).
    let rim = find(&token, &hex::decode("7309ec52e2870938").unwrap()) + 3;
    let error = virtcca_error(verify(&flipped(&token, rim)));
    assert!(matches!(error, VirtCcaError::CvmSignature), "{error}");
    assert_eq!(
        error.to_string(),
        "virtcca: CVM token signature does not verify with the RAK it carries"
    );
    // Inside the challenge.
    let challenge = find(&token, &hex::decode("783c7f3e50bfffff").unwrap()) + 2;
    assert!(matches!(
        virtcca_error(verify(&flipped(&token, challenge))),
        VirtCcaError::CvmSignature
    ));
    // Inside the signature (the last item of the token).
    let error = virtcca_error(verify(&flipped(&token, token.len() - 7)));
    assert!(matches!(error, VirtCcaError::CvmSignature), "{error}");
}

#[test]
fn collateral_documents_are_refused() {
    let collateral = Collateral::new().with_document(b"{}".to_vec());
    let error = virtcca_error(verify_with(&sample(), &collateral, &TrustAnchors::new(), at(NOW)));
    assert!(matches!(error, VirtCcaError::UnexpectedDocuments(1)), "{error}");
}

#[test]
fn truncated_and_extended_samples_are_refused() {
    let token = sample();
    let error = virtcca_error(verify(&token[..token.len() - 1]));
    assert!(matches!(error, VirtCcaError::NotVirtCcaToken(_)), "{error}");
    let mut extended = token.clone();
    extended.push(0);
    assert!(matches!(virtcca_error(verify(&extended)), VirtCcaError::NotVirtCcaToken(_)));
    // The hex text itself is not the token: the caller decodes it.
    assert!(matches!(virtcca_error(verify(&vector(SAMPLE))), VirtCcaError::NotVirtCcaToken(_)));
}

#[test]
fn parser_never_panics_on_truncations_and_flips_of_the_sample() {
    let token = sample();
    for len in (0..token.len()).step_by(7) {
        cloister_verify::internal::parse_vendor_evidence(TeeKind::VirtCca, &token[..len]);
    }
    for index in (0..token.len()).step_by(3) {
        for mask in [0x01, 0x80] {
            cloister_verify::internal::parse_vendor_evidence(
                TeeKind::VirtCca,
                &flipped_mask(&token, index, mask),
            );
        }
    }
}

fn flipped_mask(bytes: &[u8], index: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= mask;
    out
}

// ---------------------------------------------------------------------------------------------
// Synthetic tokens.

mod synthetic {
    use super::*;
    use common::pki::{Role, TestCa};
    use coset::cbor::value::Value;
    use coset::{
        CborSerializable as _, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable as _, iana,
    };
    use sha2::Digest as _;

    /// A test RSA-2048 key (PKCS#8 DER, base64), generated for these tests only.
    const RSA_PKCS8: &str = "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDFLaQO9EuKpBzQ8Mff54FQ6ShZdvVBAQ+O6eIsuI\
     AmGJfxYFw2Ac2ItT5Sn/nKUzyvjqlvomX2fvBmfYiCoWi8ud8OA0Oj4GTb2Al8hcsjQZ1cjdSxTYk+HiVtCAD1DSZW\
     CFQ4vaJu4seI9dRFEC55DL6SvpKOjsVa7QUwFCrTV9iqMK70jPpyGtQce67H2FX4GWrcAYKATcrYg/cg6/26sSLBdq\
     LlyflfcwNJS3mMPCBuqAOXRBsrrklQHA0mrGWUMpcHclcCNVAlfucEA3hqHJDWM1zezHRXoeqr80HF4sICse900Z8d\
     3dKbr6ngY5WduuTXL7va6HxBXuNDzg6nAgMBAAECggEAFmdpsTNL1Axyo8EADO5akK11Yrj0A/dRY70qcEdkdC+uMA\
     RxZceNqX9iffPkZ3tOtWnh0afjqv7gZNzVonYhlvQNpqNzT48DFsG0zjvLiY1+ilIpPR4gvnihawKSTUW5uePHYg0W\
     BEBrSKIaBODiTunGS5kwwNbzELJGuSBJf2rUOvrOkSEayifR0nzqWeSg1CKBP/rpVnipU5a9qo9iJ1sugMUOe7k33g\
     4ys9uVS8G2hagtBxgT/XI03/8Zu3PzU8klTQg1WXN2PoMgy/egszXUemP2x61dylbqgNjfWy3oDvMkmAjepLEIK+2h\
     6/fFLaqZD/hurNzTh/BlWT4O7QKBgQDr5Mg1S3ZitAozHu6NzQGcOqRAMFuFSc+dMKKAkzZbOc97sGlkyJC6RCh8DG\
     wR99rgOEqZp9j2EcDIIbE30dR55QhSBlzN47dpfuxoN9kpgRLDr1Z5jXpx1JfI0NB+jy7DSLXqr3VGpl7hxB+ht50c\
     h/myHjlbo0DhTO+RSfBc/QKBgQDV/BX/3AOiwHe7H/BZ1NV/WzE4ricJCwnUvoRFbvTH5iqXcXbhF+NU0w87yscPLj\
     2o0EnClpkN+xnBh/CgePgSeOqqjWrIBsKH9K9LPls0vJGOTNpoJs5kgDsKiczlJL+bV889Mn8qObqO1IJ5hOc7EXcN\
     iixhK3wRiNmBdxw9cwKBgBJOePMZ3iAe1MPO3LiIdl2Hd4O7vP6FEeWjBplv00IVJHL259b4cbLi4zltRV3HnGbWN4\
     PhMMc37XwakURBtnmXOqQS9lTMHUnEndggrWu5JpmlG9LnFd+LnhPpkKShvAFPvT5vS2ymMKrYq5PDSiAStWALVGw2\
     KSzS6ayezlaJAoGAEa/hfaGI52XzP5NXQYWXFAzMl7vFXDj+WghZVIfkUbWTparqQZbA4p0DcFTFeVrAG/kDb8MU6Z\
     PswBNlb04waw51jx1bSydL4wL1jkmcLlK70UBG+T7j5mi2+JsFRZdxAv0SEyPeYPYelnm4QyUaG8bIyWS3YFzAx45B\
     NDNNMUMCgYAFB4AUmkx8lcFsQ+9384VcxqTs5z+7k33nOuGBYZYk/mUSWDMkxrl0Vc87Mx+hPEqIFei4v58Ebh3eHx\
     SFwbYZdfQq7HDBnAnykAt8QJYm33oS/LeLMbujtvzCaUIWoBs5uSHVaJx5fkO+NKsSS9Xu8Cb+dMJeDbcZClAY484M\
     1Q==";
    /// Its SubjectPublicKeyInfo (DER, base64).
    const RSA_SPKI: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxS2kDvRLiqQc0PDH3+eBUOkoWXb1QQEPjuniLLiAJhiX8W\
     BcNgHNiLU+Up/5ylM8r46pb6Jl9n7wZn2IgqFovLnfDgNDo+Bk29gJfIXLI0GdXI3UsU2JPh4lbQgA9Q0mVghUOL2i\
     buLHiPXURRAueQy+kr6Sjo7FWu0FMBQq01fYqjCu9Iz6chrUHHuux9hV+Blq3AGCgE3K2IP3IOv9urEiwXai5cn5X3\
     MDSUt5jDwgbqgDl0QbK65JUBwNJqxllDKXB3JXAjVQJX7nBAN4ahyQ1jNc3sx0V6Hqq/NBxeLCArHvdNGfHd3Sm6+p\
     4GOVnbrk1y+72uh8QV7jQ84OpwIDAQAB";

    fn b64(text: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(text).unwrap()
    }

    fn p521_rak() -> p521::ecdsa::SigningKey {
        let mut scalar = [0x22u8; 66];
        scalar[0] = 0x01;
        p521::ecdsa::SigningKey::from_slice(&scalar).unwrap()
    }

    fn p521_point() -> Vec<u8> {
        p521::ecdsa::VerifyingKey::from(&p521_rak()).to_sec1_point(false).as_bytes().to_vec()
    }

    fn int(i: i64) -> Value {
        Value::Integer(i.into())
    }

    /// How the RAK signs.
    #[derive(Clone, Copy)]
    enum Rak {
        P521,
        Rsa(iana::Algorithm),
    }

    impl Rak {
        fn public_key(self) -> Vec<u8> {
            match self {
                Rak::P521 => p521_point(),
                Rak::Rsa(_) => b64(RSA_SPKI),
            }
        }

        fn alg(self) -> iana::Algorithm {
            match self {
                Rak::P521 => iana::Algorithm::ES512,
                Rak::Rsa(alg) => alg,
            }
        }

        fn sign(self, data: &[u8]) -> Vec<u8> {
            match self {
                Rak::P521 => {
                    use p521::ecdsa::signature::Signer as _;
                    let signature: p521::ecdsa::Signature = p521_rak().sign(data);
                    signature.to_bytes().to_vec()
                }
                Rak::Rsa(alg) => {
                    let pss = match alg {
                        iana::Algorithm::PS256 => &ring::signature::RSA_PSS_SHA256,
                        iana::Algorithm::PS384 => &ring::signature::RSA_PSS_SHA384,
                        _ => &ring::signature::RSA_PSS_SHA512,
                    };
                    let key = ring::rsa::KeyPair::from_pkcs8(&b64(RSA_PKCS8)).unwrap();
                    let mut out = vec![0; key.public().modulus_len()];
                    key.sign(pss, &ring::rand::SystemRandom::new(), data, &mut out).unwrap();
                    out
                }
            }
        }
    }

    fn cvm_claims(rak: Rak, hash: &str, size: usize) -> Vec<(Value, Value)> {
        vec![
            (int(10), Value::Bytes(vec![0x77; 64])),
            (int(44235), Value::Bytes(vec![0x66; 64])),
            (int(44237), Value::Bytes(rak.public_key())),
            (int(44236), Value::Text(hash.into())),
            (int(44240), Value::Text("sha-256".into())),
            (int(44238), Value::Bytes(vec![0x88; size])),
            (int(44239), Value::Array(vec![Value::Bytes(vec![0x99; size]); 4])),
        ]
    }

    /// A CVM token: the claims map wrapped in a byte string, as the payload (wrapped twice).
    fn cvm_token(rak: Rak, claims: Vec<(Value, Value)>, double_wrap: bool) -> Vec<u8> {
        let map = Value::Map(claims).to_vec().unwrap();
        let payload = if double_wrap { Value::Bytes(map).to_vec().unwrap() } else { map };
        CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(rak.alg()).build())
            .payload(payload)
            .create_signature(b"", |data| rak.sign(data))
            .build()
            .to_tagged_vec()
            .unwrap()
    }

    fn platform_claims(challenge: Vec<u8>, lifecycle: i64) -> Vec<(Value, Value)> {
        let mut instance = vec![0x01];
        instance.extend([0x42; 32]);
        vec![
            (int(265), Value::Text("http://arm.com/CCA-SSD/1.0.0".into())),
            (int(10), Value::Bytes(challenge)),
            (int(2396), Value::Bytes(vec![0x33; 32])),
            (int(256), Value::Bytes(instance)),
            (int(2401), Value::Bytes(vec![0xcf; 4])),
            (int(2395), int(lifecycle)),
            (
                int(2399),
                Value::Array(vec![Value::Map(vec![
                    (int(1), Value::Text("BL".into())),
                    (int(2), Value::Bytes(vec![0x44; 32])),
                    (int(5), Value::Bytes(vec![0x55; 32])),
                ])]),
            ),
            (int(2402), Value::Text("sha-256".into())),
        ]
    }

    /// A platform token signed ES384 by `aik`.
    fn platform_token(aik: &TestCa, claims: Vec<(Value, Value)>) -> Vec<u8> {
        CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(iana::Algorithm::ES384).build())
            .payload(Value::Map(claims).to_vec().unwrap())
            .create_signature(b"", |data| aik.sign_raw(data))
            .build()
            .to_tagged_vec()
            .unwrap()
    }

    fn collection(entries: Vec<(i64, Vec<u8>)>) -> Vec<u8> {
        let map = entries.into_iter().map(|(k, v)| (int(k), Value::Bytes(v))).collect();
        Value::Tag(399, Box::new(Value::Map(map))).to_vec().unwrap()
    }

    fn rak_hash(rak: Rak) -> Vec<u8> {
        sha2::Sha256::digest(rak.public_key()).to_vec()
    }

    /// A Huawei-like PKI of test keys: root, product CA, AIK.
    struct Pki {
        root: TestCa,
        product_ca: TestCa,
        aik: TestCa,
    }

    fn pki() -> Pki {
        let (from, to) = (at("2024-01-01T00:00:00Z"), at("2039-01-01T00:00:00Z"));
        let root = TestCa::root("Test Equipment Root CA", from, to);
        let product_ca = root.issue("Test IT Product CA", Role::Ca, from, to);
        let aik = product_ca.issue("1023TESTAIK", Role::Leaf, from, to);
        Pki { root, product_ca, aik }
    }

    fn full_token(pki: &Pki, lifecycle: i64) -> Vec<u8> {
        let rak = Rak::P521;
        collection(vec![
            (44234, platform_token(&pki.aik, platform_claims(rak_hash(rak), lifecycle))),
            (44241, cvm_token(rak, cvm_claims(rak, "sha-256", 32), true)),
        ])
    }

    fn chain_collateral(pki: &Pki) -> Collateral {
        Collateral::new().with_certificates(&pki.aik.der).with_certificates(&pki.product_ca.der)
    }

    #[test]
    fn cvm_tokens_verify_with_p521_and_rsa_raks_and_every_hash_algorithm() {
        for rak in [
            Rak::P521,
            Rak::Rsa(iana::Algorithm::PS256),
            Rak::Rsa(iana::Algorithm::PS384),
            Rak::Rsa(iana::Algorithm::PS512),
        ] {
            for (hash, size) in [("sha-256", 32), ("sha-384", 48), ("sha-512", 64)] {
                let token =
                    collection(vec![(44241, cvm_token(rak, cvm_claims(rak, hash, size), true))]);
                let claims = verify(&token).unwrap();
                assert_eq!(claims.measurement.0, vec![0x88; size]);
                assert_eq!(claims.report_data.0, vec![0x77; 64]);
                assert_eq!(vendor(&claims, "cvm")["hash_algo"], hash);
                assert_eq!(vendor(&claims, "cvm")["signature_algorithm"], rak.alg_name());
                assert_eq!(vendor(&claims, "platform"), "unverified: no platform token");
            }
        }
    }

    impl Rak {
        fn alg_name(self) -> &'static str {
            match self.alg() {
                iana::Algorithm::ES512 => "ES512",
                iana::Algorithm::PS256 => "PS256",
                iana::Algorithm::PS384 => "PS384",
                _ => "PS512",
            }
        }
    }

    #[test]
    fn measurement_sizes_must_match_the_hash_algorithm() {
        let rak = Rak::P521;
        for (hash, size) in [("sha-256", 64), ("sha-384", 32), ("sha-512", 48)] {
            let token =
                collection(vec![(44241, cvm_token(rak, cvm_claims(rak, hash, size), true))]);
            let error = virtcca_error(verify(&token));
            assert!(matches!(error, VirtCcaError::Token(_)), "{error}");
            assert!(error.to_string().contains("initial measurement is"), "{error}");
        }
        let token =
            collection(vec![(44241, cvm_token(rak, cvm_claims(rak, "sha3-256", 32), true))]);
        let error = virtcca_error(verify(&token));
        assert!(error.to_string().contains("\"sha3-256\", which is not supported"), "{error}");
    }

    #[test]
    fn a_single_wrapped_cvm_payload_is_refused() {
        let rak = Rak::P521;
        let token =
            collection(vec![(44241, cvm_token(rak, cvm_claims(rak, "sha-256", 32), false))]);
        let error = virtcca_error(verify(&token));
        assert!(matches!(error, VirtCcaError::CvmPayload(_)), "{error}");
    }

    #[test]
    fn a_cvm_profile_claim_is_refused() {
        let rak = Rak::P521;
        let mut claims = cvm_claims(rak, "sha-256", 32);
        claims.push((int(265), Value::Text("tag:arm.com,2023:realm#1.0.0".into())));
        let token = collection(vec![(44241, cvm_token(rak, claims, true))]);
        assert!(matches!(virtcca_error(verify(&token)), VirtCcaError::CvmClaims(_)));
    }

    #[test]
    fn a_rak_that_does_not_fit_the_algorithm_is_refused() {
        // An RSA RAK in a token whose header says ES512 (signed with the P-521 key).
        let mut claims = cvm_claims(Rak::P521, "sha-256", 32);
        claims[2].1 = Value::Bytes(b64(RSA_SPKI));
        let token = collection(vec![(44241, cvm_token(Rak::P521, claims, true))]);
        let error = virtcca_error(verify(&token));
        assert!(matches!(error, VirtCcaError::RealmKey(_)), "{error}");
        assert!(error.to_string().contains("RSA key cannot verify ES512"), "{error}");
        // A RAK that is no key at all.
        let mut claims = cvm_claims(Rak::P521, "sha-256", 32);
        claims[2].1 = Value::Bytes(vec![0x04; 133]);
        let token = collection(vec![(44241, cvm_token(Rak::P521, claims, true))]);
        assert!(matches!(virtcca_error(verify(&token)), VirtCcaError::RealmKey(_)));
    }

    #[test]
    fn a_cvm_token_signed_by_another_key_is_refused() {
        // Signed by the RSA key but carrying the P-521 RAK, with a PS256 header.
        let claims = cvm_claims(Rak::P521, "sha-256", 32);
        let token =
            collection(vec![(44241, cvm_token(Rak::Rsa(iana::Algorithm::PS256), claims, true))]);
        assert!(matches!(virtcca_error(verify(&token)), VirtCcaError::RealmKey(_)));
        let claims = cvm_claims(Rak::Rsa(iana::Algorithm::PS256), "sha-256", 32);
        let mut token = cvm_token(Rak::Rsa(iana::Algorithm::PS384), claims, true);
        // Re-label the PS384 signature as PS256 (protected header a1 01 38 25 -> 38 24).
        let at = find(&token, &[0xa1, 0x01, 0x38, 0x25]);
        token[at + 3] = 0x24;
        let token = collection(vec![(44241, token)]);
        assert!(matches!(virtcca_error(verify(&token)), VirtCcaError::CvmSignature));
    }

    #[test]
    fn collection_shape_is_checked() {
        let rak = Rak::P521;
        let cvm = cvm_token(rak, cvm_claims(rak, "sha-256", 32), true);
        for (entries, expected) in [
            (vec![], "no CVM token (44241)"),
            (vec![(44241, cvm.clone()), (1, vec![])], "unknown collection entry 1"),
            (vec![(44241, cvm.clone()), (44241, cvm.clone())], "appears twice"),
        ] {
            let error = virtcca_error(verify(&collection(entries)));
            assert!(matches!(error, VirtCcaError::NotVirtCcaToken(_)), "{error}");
            assert!(error.to_string().contains(expected), "{error}");
        }
        let cmw = Value::Tag(
            907,
            Box::new(Value::Map(vec![(
                int(44241),
                Value::Array(vec![int(263), Value::Bytes(cvm.clone())]),
            )])),
        );
        let error = virtcca_error(verify(&cmw.to_vec().unwrap()));
        assert!(error.to_string().contains("virtCCA tokens use tag 399"), "{error}");
        // An Arm CCA algorithm list does not apply: ES256 is no virtCCA CVM algorithm.
        let es256 = CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build())
            .payload(vec![0x40])
            .signature(vec![0; 64])
            .build()
            .to_tagged_vec()
            .unwrap();
        let error = virtcca_error(verify(&collection(vec![(44241, es256)])));
        assert!(error.to_string().contains("ES256"), "{error}");
    }

    // The platform token.

    #[test]
    fn platform_token_with_aik_chained_to_a_listed_root_is_verified() {
        let pki = pki();
        let anchors = TrustAnchors::new().with_root(TeeKind::VirtCca, pki.root.der.clone());
        let claims =
            verify_with(&full_token(&pki, 0x3000), &chain_collateral(&pki), &anchors, at(NOW))
                .unwrap();
        assert_eq!(vendor(&claims, "platform_verified"), true);
        assert!(vendor(&claims, "platform").as_str().unwrap().starts_with("verified: "));
        assert!(!claims.debug);
        let mut instance = vec![0x01];
        instance.extend([0x42; 32]);
        assert_eq!(claims.platform_id.as_ref().unwrap().0, instance);
        assert_eq!(vendor(&claims, "platform_token")["lifecycle_name"], "secured");
        assert_eq!(vendor(&claims, "platform_token")["signature_algorithm"], "ES384");
        assert_eq!(vendor(&claims, "aik")["subject"], "1023TESTAIK");
        assert_eq!(
            vendor(&claims, "aik")["root_sha256"],
            hex::encode(sha2::Sha256::digest(&pki.root.der))
        );
        assert_eq!(claims.tcb_status, TcbStatus::Unknown);
        // The intermediate may come with the anchors instead of the collateral.
        let anchors = anchors.with_root(TeeKind::VirtCca, pki.product_ca.der.clone());
        let collateral = Collateral::new().with_certificates(&pki.aik.der);
        let claims =
            verify_with(&full_token(&pki, 0x3000), &collateral, &anchors, at(NOW)).unwrap();
        assert_eq!(vendor(&claims, "platform_verified"), true);
        // A debug lifecycle is debug even when verified.
        let anchors = TrustAnchors::new().with_root(TeeKind::VirtCca, pki.root.der.clone());
        let claims =
            verify_with(&full_token(&pki, 0x5000), &chain_collateral(&pki), &anchors, at(NOW))
                .unwrap();
        assert!(claims.debug);
    }

    #[test]
    fn platform_token_without_listed_root_is_unverified() {
        let pki = pki();
        let claims = verify_with(
            &full_token(&pki, 0x3000),
            &chain_collateral(&pki),
            &TrustAnchors::new(),
            at(NOW),
        )
        .unwrap();
        assert_eq!(vendor(&claims, "platform_verified"), false);
        assert_eq!(
            vendor(&claims, "platform"),
            "unverified: AIK chain not anchored (the instance lists no virtcca root)"
        );
        assert!(claims.debug, "the lifecycle of an unanchored platform token is not trusted");
        assert_eq!(vendor(&claims, "aik")["subject"], "1023TESTAIK");
    }

    #[test]
    fn platform_token_without_aik_certificate_is_unverified() {
        let pki = pki();
        let anchors = TrustAnchors::new().with_root(TeeKind::VirtCca, pki.root.der.clone());
        let claims =
            verify_with(&full_token(&pki, 0x3000), &Collateral::new(), &anchors, at(NOW)).unwrap();
        assert_eq!(vendor(&claims, "platform_verified"), false);
        assert_eq!(vendor(&claims, "platform"), "unverified: no AIK certificate");
        assert!(claims.debug);
    }

    #[test]
    fn platform_token_signed_by_another_key_is_refused() {
        let pki = pki();
        let other = pki.product_ca.issue(
            "another AIK",
            Role::Leaf,
            at("2024-01-01T00:00:00Z"),
            at("2039-01-01T00:00:00Z"),
        );
        let collateral =
            Collateral::new().with_certificates(&other.der).with_certificates(&pki.product_ca.der);
        let error = virtcca_error(verify_with(
            &full_token(&pki, 0x3000),
            &collateral,
            &TrustAnchors::new(),
            at(NOW),
        ));
        assert!(matches!(error, VirtCcaError::PlatformSignature { tried: 2 }), "{error}");
        // A flipped byte in the platform token's claims.
        let token = full_token(&pki, 0x3000);
        let index = find(&token, &[0x33; 32]) + 5;
        let error = virtcca_error(verify_with(
            &flipped(&token, index),
            &chain_collateral(&pki),
            &TrustAnchors::new(),
            at(NOW),
        ));
        assert!(matches!(error, VirtCcaError::PlatformSignature { .. }), "{error}");
    }

    #[test]
    fn an_aik_without_digital_signature_is_not_used() {
        let pki = pki();
        // A CA certificate whose keyUsage lacks digitalSignature, holding the AIK-like key.
        let ca = pki.product_ca.issue(
            "CA not AIK",
            Role::Ca,
            at("2024-01-01T00:00:00Z"),
            at("2039-01-01T00:00:00Z"),
        );
        let token = collection(vec![
            (44234, platform_token(&ca, platform_claims(rak_hash(Rak::P521), 0x3000))),
            (44241, cvm_token(Rak::P521, cvm_claims(Rak::P521, "sha-256", 32), true)),
        ]);
        let collateral = Collateral::new().with_certificates(&ca.der);
        let error = virtcca_error(verify_with(&token, &collateral, &TrustAnchors::new(), at(NOW)));
        assert!(matches!(error, VirtCcaError::PlatformSignature { tried: 1 }), "{error}");
    }

    #[test]
    fn broken_binding_is_refused() {
        let pki = pki();
        let token = collection(vec![
            (44234, platform_token(&pki.aik, platform_claims(vec![0xee; 32], 0x3000))),
            (44241, cvm_token(Rak::P521, cvm_claims(Rak::P521, "sha-256", 32), true)),
        ]);
        let error = virtcca_error(verify_with(
            &token,
            &chain_collateral(&pki),
            &TrustAnchors::new(),
            at(NOW),
        ));
        assert!(matches!(error, VirtCcaError::Binding { alg: "sha-256", .. }), "{error}");
        // Checked even without an AIK certificate.
        let error = virtcca_error(verify(&token));
        assert!(matches!(error, VirtCcaError::Binding { .. }), "{error}");
    }

    #[test]
    fn aik_chain_failures_are_refused_when_roots_are_listed() {
        let pki = pki();
        let token = full_token(&pki, 0x3000);
        // Another root listed: the product CA's issuer is nowhere.
        let stranger =
            TestCa::root("Stranger Root", at("2024-01-01T00:00:00Z"), at("2039-01-01T00:00:00Z"));
        let anchors = TrustAnchors::new().with_root(TeeKind::VirtCca, stranger.der.clone());
        let error = virtcca_error(verify_with(&token, &chain_collateral(&pki), &anchors, at(NOW)));
        assert!(matches!(error, VirtCcaError::AikIssuerMissing { .. }), "{error}");
        // The intermediate missing.
        let anchors = TrustAnchors::new().with_root(TeeKind::VirtCca, pki.root.der.clone());
        let collateral = Collateral::new().with_certificates(&pki.aik.der);
        let error = virtcca_error(verify_with(&token, &collateral, &anchors, at(NOW)));
        assert!(matches!(error, VirtCcaError::AikIssuerMissing { .. }), "{error}");
        // Expired at the verification time.
        let error = virtcca_error(verify_with(
            &token,
            &chain_collateral(&pki),
            &anchors,
            at("2040-01-01T00:00:00Z"),
        ));
        assert!(matches!(error, VirtCcaError::AikChain(_)), "{error}");
        assert!(error.to_string().contains("expired"), "{error}");
        // An unreadable anchor or certificate.
        let bad = anchors.clone().with_root(TeeKind::VirtCca, b"not a certificate".to_vec());
        let error = virtcca_error(verify_with(&token, &chain_collateral(&pki), &bad, at(NOW)));
        assert!(matches!(error, VirtCcaError::BadTrustAnchor { index: 1, .. }), "{error}");
        let collateral = chain_collateral(&pki).with_certificates(b"junk");
        let error = virtcca_error(verify_with(&token, &collateral, &anchors, at(NOW)));
        assert!(matches!(error, VirtCcaError::BadCertificate { index: 2, .. }), "{error}");
    }

    #[test]
    fn an_unknown_platform_profile_is_refused() {
        let pki = pki();
        let mut claims = platform_claims(rak_hash(Rak::P521), 0x3000);
        claims[0].1 = Value::Text("tag:example.com,2024:virtcca".into());
        let token = collection(vec![
            (44234, platform_token(&pki.aik, claims)),
            (44241, cvm_token(Rak::P521, cvm_claims(Rak::P521, "sha-256", 32), true)),
        ]);
        let error = virtcca_error(verify(&token));
        assert!(matches!(error, VirtCcaError::Token(_)), "{error}");
        assert!(error.to_string().contains("not a known CCA platform profile"), "{error}");
    }

    #[test]
    fn virtcca_is_accepted_as_main_evidence() {
        use cloister_types::{Base64Url, Hex, RuntimeData, UnifiedEvidence};
        let runtime = RuntimeData {
            nonce: "nonce-1".into(),
            hpke_pk: "hpke-pk".into(),
            tls_spki_sha256: Hex(vec![7; 32]),
            receipt_pk: "receipt-pk".into(),
            extra: Default::default(),
        };
        let report_data = runtime.report_data().unwrap();
        let rak = Rak::P521;
        let mut claims = cvm_claims(rak, "sha-256", 32);
        claims[0].1 = Value::Bytes(report_data.0.to_vec());
        let token = collection(vec![(44241, cvm_token(rak, claims, true))]);
        let evidence = UnifiedEvidence {
            version: cloister_types::evidence::UNIFIED_EVIDENCE_VERSION,
            tee: TeeKind::VirtCca,
            evidence: Base64Url(token),
            runtime_data: runtime,
            collateral: Default::default(),
            additional_evidence: Default::default(),
        };
        let verified = cloister_verify::verify(&evidence, &TrustAnchors::new(), at(NOW)).unwrap();
        assert_eq!(verified.tee(), TeeKind::VirtCca);
        assert_eq!(verified.claims().vendor["virtcca"]["platform_verified"], false);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            cloister_verify::internal::parse_vendor_evidence(TeeKind::VirtCca, &bytes);
            prop_assert!(verify(&bytes).is_err());
        }

        #[test]
        fn random_tokens_in_a_collection_never_panic_and_never_verify(
            cvm in proptest::collection::vec(any::<u8>(), 0..512),
            platform in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..512)),
        ) {
            use coset::CborSerializable as _;
            use coset::cbor::value::Value;
            let mut map = vec![(Value::Integer(44241.into()), Value::Bytes(cvm))];
            if let Some(platform) = platform {
                map.push((Value::Integer(44234.into()), Value::Bytes(platform)));
            }
            let bytes = Value::Tag(399, Box::new(Value::Map(map))).to_vec().unwrap();
            cloister_verify::internal::parse_vendor_evidence(TeeKind::VirtCca, &bytes);
            prop_assert!(verify(&bytes).is_err());
        }
    }
}
