//! The shared X.509 chain checks against real vendor chains: NVIDIA (P-384), AMD (RSA-PSS).

#![allow(clippy::unwrap_used)]

mod common;

use cloister_verify::x509::{Cert, CertError, verify_chain};
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
