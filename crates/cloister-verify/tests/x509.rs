//! The shared X.509 chain checks against real vendor chains: NVIDIA (P-384), AMD (RSA-PSS).

#![allow(clippy::unwrap_used)]

mod common;

use cloister_verify::x509::{Cert, CertError, verify_chain};
use common::pki::{Role, TestCa};
use common::{at, vector};

#[test]
fn nvidia_device_chain_verifies_to_its_pinned_root() {
    let chain = Cert::parse_many(&vector("nvidia/trustee_hopper_cert_chain_case1.txt")).unwrap();
    assert_eq!(chain.len(), 5);
    let root = chain.last().unwrap().sha256_fingerprint();
    verify_chain(&chain, &[root], at("2024-06-01T00:00:00Z")).unwrap();
    // Not pinned: refused, naming the root.
    let err = verify_chain(&chain, &[[0; 32]], at("2024-06-01T00:00:00Z")).unwrap_err();
    assert!(matches!(err, CertError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn amd_rsa_pss_ask_is_issued_by_ark() {
    let certs = Cert::parse_many(&vector("snp/milan_ask_ark_asvk.pem")).unwrap();
    let ask = certs.iter().find(|c| c.subject_cn() == "SEV-Milan").unwrap();
    let ark = certs.iter().find(|c| c.subject_cn() == "ARK-Milan").unwrap();
    verify_chain(
        &[ask.clone(), ark.clone()],
        &[ark.sha256_fingerprint()],
        at("2024-01-01T00:00:00Z"),
    )
    .unwrap();
    // The ASK is not its own issuer.
    assert!(ark.verify_issued_by(ask).is_err());
}

#[test]
fn validity_errors_name_the_certificate_and_the_time() {
    let certs = Cert::parse_many(&vector("snp/milan_ask_ark_asvk.pem")).unwrap();
    let ark = certs.iter().find(|c| c.subject_cn() == "ARK-Milan").unwrap();
    let pinned = [ark.sha256_fingerprint()];
    let err = verify_chain(std::slice::from_ref(ark), &pinned, at("2200-01-01T00:00:00Z"));
    let text = err.unwrap_err().to_string();
    assert!(text.starts_with("ARK-Milan certificate expired at 20"), "{text}");
    let err = verify_chain(std::slice::from_ref(ark), &pinned, at("1990-01-01T00:00:00Z"));
    let text = err.unwrap_err().to_string();
    assert!(text.starts_with("ARK-Milan certificate is not valid before 20"), "{text}");
}

/// 2025-01-01T00:00:00Z, inside every test certificate's validity.
const NOW: i64 = 1_735_689_600;
const FROM: i64 = NOW - 86_400;
const UNTIL: i64 = NOW + 86_400;

fn certs(chain: &[&TestCa]) -> Vec<Cert> {
    chain.iter().map(|c| Cert::from_der(&c.der).unwrap()).collect()
}

#[test]
fn test_key_chain_of_cas_verifies() {
    let root = TestCa::root("Test Root", FROM, UNTIL);
    let ica = root.issue("Test ICA", Role::CaPathLen(0), FROM, UNTIL);
    let leaf = ica.issue("Test Leaf", Role::Leaf, FROM, UNTIL);
    let chain = certs(&[&leaf, &ica, &root]);
    verify_chain(&chain, &[chain[2].sha256_fingerprint()], NOW).unwrap();
}

#[test]
fn leaf_used_as_an_intermediate_is_refused() {
    let root = TestCa::root("Test Root", FROM, UNTIL);
    for role in [Role::Leaf, Role::LeafNoBasicConstraints] {
        let not_a_ca = root.issue("Test End Entity", role, FROM, UNTIL);
        let below = not_a_ca.issue("Test Leaf", Role::Leaf, FROM, UNTIL);
        let chain = certs(&[&below, &not_a_ca, &root]);
        let err = verify_chain(&chain, &[chain[2].sha256_fingerprint()], NOW).unwrap_err();
        assert!(matches!(err, CertError::NotACa { .. }), "{role:?}: {err}");
        assert_eq!(
            err.to_string(),
            "Test End Entity certificate signs Test Leaf but is not a CA certificate \
             (basicConstraints cA is not TRUE)"
        );
    }
}

#[test]
fn ca_without_key_cert_sign_is_refused() {
    let root = TestCa::root("Test Root", FROM, UNTIL);
    let ica = root.issue("Test ICA", Role::CaWithoutKeyCertSign, FROM, UNTIL);
    let leaf = ica.issue("Test Leaf", Role::Leaf, FROM, UNTIL);
    let chain = certs(&[&leaf, &ica, &root]);
    let err = verify_chain(&chain, &[chain[2].sha256_fingerprint()], NOW).unwrap_err();
    assert!(matches!(err, CertError::NoKeyCertSign { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "Test ICA certificate signs Test Leaf but its keyUsage does not include keyCertSign"
    );
}

#[test]
fn path_length_exceeded_is_refused() {
    // The root allows no intermediate below it; the chain has two.
    let root = TestCa::root("Test Root", FROM, UNTIL);
    let mut root_limited = root;
    root_limited.params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
    let root_limited = {
        let der = root_limited.params.self_signed(&root_limited.key).unwrap().der().to_vec();
        TestCa { der, ..root_limited }
    };
    let ica1 = root_limited.issue("Test ICA 1", Role::Ca, FROM, UNTIL);
    let ica2 = ica1.issue("Test ICA 2", Role::Ca, FROM, UNTIL);
    let leaf = ica2.issue("Test Leaf", Role::Leaf, FROM, UNTIL);
    let pinned = [Cert::from_der(&root_limited.der).unwrap().sha256_fingerprint()];
    // One intermediate below the root: allowed.
    verify_chain(&certs(&[&ica2, &ica1, &root_limited]), &pinned, NOW).unwrap();
    let err =
        verify_chain(&certs(&[&leaf, &ica2, &ica1, &root_limited]), &pinned, NOW).unwrap_err();
    assert!(matches!(err, CertError::PathLenExceeded { max: 1, found: 2, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "Test Root certificate allows at most 1 intermediate certificate(s) below it \
         (pathLenConstraint), but the chain has 2"
    );
    // An intermediate with pathLenConstraint 0 may sign only end entities.
    let ica0 = root_limited.issue("Test ICA 0", Role::CaPathLen(0), FROM, UNTIL);
    let sub = ica0.issue("Test Sub CA", Role::Ca, FROM, UNTIL);
    let leaf = sub.issue("Test Leaf", Role::Leaf, FROM, UNTIL);
    let err = verify_chain(&certs(&[&leaf, &sub, &ica0, &root_limited]), &pinned, NOW).unwrap_err();
    assert!(matches!(err, CertError::PathLenExceeded { max: 0, found: 1, .. }), "{err}");
    assert!(err.to_string().starts_with("Test ICA 0 certificate allows at most 0"), "{err}");
}
