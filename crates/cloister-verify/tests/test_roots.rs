//! Test roots (`TrustAnchors::with_test_root`): evidence of TDX, SGX, SEV-SNP and Nitro
//! platforms made under test keys (`cloister-fakehw`) verifies only when the instance names the
//! root for that TEE, and its claims say where the root came from (`trust_anchor`: `test` from
//! the test roots, `instance` from the ordinary roots; a root in both is `test`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use cloister_attest::Attester as _;
use cloister_fakehw::dcap::DcapPlatform;
use cloister_fakehw::nitro::{FakeNsm, NitroPlatform};
use cloister_fakehw::snp::SnpPlatform;
use cloister_types::{Base64Url, Hex, RuntimeData, TcbStatus, TeeKind, UnifiedEvidence};
use cloister_verify::{
    AnchorOrigin, CachedCollateral, Collateral, TrustAnchors, VerifiedEvidence, VerifyError,
    verify, verify_with_collateral,
};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn runtime_data() -> RuntimeData {
    RuntimeData {
        nonce: "test-root-nonce".into(),
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(vec![7; 32]),
        receipt_pk: "receipt".into(),
        extra: BTreeMap::new(),
    }
}

/// The collateral a service holds after loading `bundle`, as the DCAP drivers see it.
fn collateral(bundle: &[u8]) -> CachedCollateral {
    let parsed: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    let mut collateral = Collateral::new();
    for item in parsed["items"].as_array().unwrap() {
        let data = Base64Url::parse(item["data"].as_str().unwrap()).unwrap().0;
        match item["type"].as_str().unwrap() {
            "document" => collateral = collateral.with_document(data),
            _ => collateral = collateral.with_certificates(&data),
        }
    }
    [(TeeKind::Sgx, collateral.clone()), (TeeKind::Tdx, collateral)].into_iter().collect()
}

fn trust_anchor(verified: &VerifiedEvidence) -> String {
    let claims = verified.claims();
    claims.vendor[claims.tee.as_str()]["trust_anchor"].as_str().unwrap().to_owned()
}

fn test_root(tee: TeeKind, pem: &str) -> TrustAnchors {
    TrustAnchors::new().with_test_root(tee, pem.as_bytes().to_vec())
}

fn root(tee: TeeKind, pem: &str) -> TrustAnchors {
    TrustAnchors::new().with_root(tee, pem.as_bytes().to_vec())
}

#[test]
fn dcap_evidence_under_a_test_root_verifies_with_its_collateral_and_says_test() {
    let now = now();
    for platform in [DcapPlatform::tdx(now).unwrap(), DcapPlatform::sgx(now).unwrap()] {
        let tee = platform.tee();
        let evidence = platform.attest(&runtime_data()).unwrap();
        let cached = collateral(&platform.collateral_bundle("UpToDate", now - 60, 17).unwrap());
        let anchors = test_root(tee, &platform.root_pem());
        let verified = verify_with_collateral(&evidence, &anchors, &cached, now).unwrap();
        assert_eq!(verified.tee(), tee);
        assert_eq!(verified.claims().measurement, platform.measurement());
        // The collateral's signing chain ends at the same test root: the full appraisal ran.
        assert_eq!(verified.claims().tcb_status, TcbStatus::UpToDate, "{tee}");
        assert_eq!(trust_anchor(&verified), "test", "{tee}");

        // Listed as an ordinary root, the same root is the instance's word.
        let verified =
            verify_with_collateral(&evidence, &root(tee, &platform.root_pem()), &cached, now)
                .unwrap();
        assert_eq!(trust_anchor(&verified), "instance", "{tee}");
        // In both lists, the conservative answer.
        let both = test_root(tee, &platform.root_pem()).with_root(tee, platform.root_pem().into());
        let verified = verify_with_collateral(&evidence, &both, &cached, now).unwrap();
        assert_eq!(trust_anchor(&verified), "test", "{tee}");

        // Named by no list: refused, naming the root.
        let err = verify_with_collateral(&evidence, &TrustAnchors::new(), &cached, now);
        let err = err.unwrap_err().to_string();
        assert!(err.contains("PCK certificate chain"), "{err}");
    }
}

#[test]
fn a_test_root_verifies_only_the_tee_it_is_listed_for() {
    let now = now();
    let tdx = DcapPlatform::tdx(now).unwrap();
    let sgx = DcapPlatform::sgx(now).unwrap();
    let snp = SnpPlatform::new(now).unwrap();
    let tdx_evidence = tdx.attest(&runtime_data()).unwrap();
    let snp_evidence = snp.attest(&runtime_data()).unwrap();
    // The TDX root listed for SNP, SGX and Nitro: the TDX quote is refused.
    let elsewhere = [TeeKind::Snp, TeeKind::Sgx, TeeKind::Nitro]
        .into_iter()
        .fold(TrustAnchors::new(), |a, tee| a.with_test_root(tee, tdx.root_pem().into()));
    let err = verify(&tdx_evidence, &elsewhere, now).unwrap_err();
    assert!(err.to_string().contains("PCK certificate chain"), "{err}");
    // The SNP root listed for TDX: the SNP report is refused, naming its untrusted ARK.
    let err = verify(&snp_evidence, &test_root(TeeKind::Tdx, &snp.root_pem()), now).unwrap_err();
    assert!(err.to_string().contains("ARK-Milan certificate"), "{err}");
    // Another platform's root of the same TEE: refused.
    let err = verify(&tdx_evidence, &test_root(TeeKind::Tdx, &sgx.root_pem()), now).unwrap_err();
    assert!(matches!(err, VerifyError::Dcap(_)), "{err}");
}

#[test]
fn snp_report_under_a_test_ark_verifies_and_says_test() {
    let now = now();
    let platform = SnpPlatform::new(now).unwrap();
    let evidence = platform.attest(&runtime_data()).unwrap();
    let verified = verify(&evidence, &test_root(TeeKind::Snp, &platform.root_pem()), now).unwrap();
    assert_eq!(verified.claims().measurement, platform.measurement());
    assert_eq!(verified.claims().vendor["snp"]["reported_tcb"], platform.minimum_tcb());
    assert_eq!(trust_anchor(&verified), "test");
    let verified = verify(&evidence, &root(TeeKind::Snp, &platform.root_pem()), now).unwrap();
    assert_eq!(trust_anchor(&verified), "instance");
    let err = verify(&evidence, &TrustAnchors::new(), now).unwrap_err();
    assert!(err.to_string().contains("not AMD's pinned root"), "{err}");
    // A test root that is not a certificate is refused, named as a test root.
    let broken = TrustAnchors::new().with_test_root(TeeKind::Snp, b"not a certificate".to_vec());
    let err = verify(&evidence, &broken, now).unwrap_err();
    assert!(err.to_string().contains("SNP test root 0 is not an X.509 certificate"), "{err}");
}

#[test]
fn nitro_document_under_a_test_root_verifies_and_says_test() {
    let now = now();
    let nsm = FakeNsm::new(NitroPlatform::new(now).unwrap(), "/dev/nsm".as_ref());
    let evidence = nsm.attest(&runtime_data()).unwrap();
    let pem = nsm.platform().root_pem();
    let verified = verify(&evidence, &test_root(TeeKind::Nitro, &pem), now).unwrap();
    assert_eq!(verified.claims().measurement, nsm.platform().measurement());
    assert_eq!(trust_anchor(&verified), "test");
    let verified = verify(&evidence, &root(TeeKind::Nitro, &pem), now).unwrap();
    assert_eq!(trust_anchor(&verified), "instance");
    let err = verify(&evidence, &TrustAnchors::new(), now).unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
}

#[test]
fn evidence_bound_to_other_runtime_data_is_refused_under_a_test_root_too() {
    let now = now();
    let platform = SnpPlatform::new(now).unwrap();
    let mut evidence: UnifiedEvidence = platform.attest(&runtime_data()).unwrap();
    evidence.runtime_data.nonce = "another nonce".into();
    let err = verify(&evidence, &test_root(TeeKind::Snp, &platform.root_pem()), now).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch), "{err}");
}

#[test]
fn anchor_origins_name_their_claims() {
    assert_eq!(AnchorOrigin::Vendor.as_str(), "vendor");
    assert_eq!(AnchorOrigin::Instance.as_str(), "instance");
    assert_eq!(AnchorOrigin::Test.as_str(), "test");
}
