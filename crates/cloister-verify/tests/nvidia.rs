//! NVIDIA Hopper evidence against the real vectors: the trustee/nvtrust H100 report with its
//! 5-certificate chain, NVIDIA's signed RIMs, and one negative test per check (RIM signatures
//! and appraisal against test-signed RIMs: `nvidia_rim.rs`).

#![allow(clippy::unwrap_used)]

mod common;

use cloister_types::{Claims, TcbStatus, TeeKind};
use cloister_verify::x509::CertError;
use cloister_verify::{
    Collateral, Inputs, NvidiaError, TrustAnchors, VerifyError, verify_vendor_evidence,
};
use common::{assert_golden, at, vector};
use serde_json::Value;

/// Inside every certificate's validity (the Provisioner ICA starts 2022-03-01; all end in 9999)
/// and after the report's driver (550.90.07, mid 2024) was released.
const WHEN: &str = "2024-06-01T00:00:00Z";
const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const FWID: &str = "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d";
const PROD_VBIOS_RIM: &str = "nvidia/nvtrust_1010_0200_882_96005E0001_PROD.swidtag";
const DRIVER_RIM: &str = "nvidia/nvtrust_Driver_RIM_test_no_gpu.swidtag";

fn report_hex() -> Vec<u8> {
    vector("nvidia/trustee_hopperAttestationReport.txt")
}

fn report() -> Vec<u8> {
    hex::decode(String::from_utf8(report_hex()).unwrap().trim()).unwrap()
}

fn chain(case: u8) -> Collateral {
    Collateral::new()
        .with_certificates(&vector(&format!("nvidia/trustee_hopper_cert_chain_case{case}.txt")))
}

fn run_full(
    evidence: &[u8],
    collateral: &Collateral,
    anchors: &TrustAnchors,
    now: i64,
) -> Result<Claims, VerifyError> {
    let inputs = Inputs { collateral, anchors, now_unix: now };
    verify_vendor_evidence(TeeKind::Nvidia, evidence, &inputs)
}

fn run(evidence: &[u8], collateral: &Collateral) -> Result<Claims, VerifyError> {
    run_full(evidence, collateral, &TrustAnchors::new(), at(WHEN))
}

fn nvidia_err(result: Result<Claims, VerifyError>) -> NvidiaError {
    match result {
        Err(VerifyError::Nvidia(e)) => e,
        other => panic!("expected an nvidia error, got {other:?}"),
    }
}

fn vendor(claims: &Claims) -> &Value {
    claims.vendor.get("nvidia").unwrap()
}

fn with_rim(collateral: Collateral, rim: &str) -> Collateral {
    collateral.with_document(rim.as_bytes().to_vec())
}

fn text(path: &str) -> String {
    String::from_utf8(vector(path)).unwrap()
}

#[test]
fn hopper_report_verifies_to_the_pinned_nvidia_root_with_the_expected_claims() {
    let claims = run(&report(), &chain(1)).unwrap();
    assert_eq!(claims.tee, TeeKind::Nvidia);
    assert_eq!(hex::encode(claims.report_data.as_bytes()), NONCE);
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert!(!claims.debug);
    assert!(claims.advisories.is_empty());
    assert_eq!(claims.measurement.as_bytes().len(), 48);
    // platform_id: the device identifier NVIDIA:GH100:48B02D92494BADF4 in the leaf's SAN.
    assert_eq!(hex::encode(claims.platform_id.as_ref().unwrap().as_bytes()), "48b02d92494badf4");

    let v = vendor(&claims);
    assert_eq!(v["spdm_version"], "1.1");
    assert_eq!(v["nonce"], NONCE);
    assert_eq!(v["driver_version"], "550.90.07");
    // The README says 96.00.5E.00.01 (the RIM's version); the report itself says 96.00.9F.00.01,
    // as trustee's expected claims do.
    assert_eq!(v["vbios_version"], "96.00.9f.00.01");
    assert_eq!(v["fwid"], FWID);
    assert_eq!(v["device_id"], "NVIDIA:GH100:48B02D92494BADF4");
    assert_eq!(v["measurements_appraised"], false);
    assert_eq!(v["rim_signature_verified"], false);
    assert_eq!(v["rim_root"], Value::Null);
    assert_eq!(v["rim"]["vbios"]["status"], "absent");
    assert_eq!(v["rim"]["driver"]["status"], "absent");
    assert_eq!(
        v["cert_chain"],
        serde_json::json!([
            "GH100 A01 GSP FMC LF",
            "GH100 A01 GSP BROM",
            "NVIDIA GH100 Provisioner ICA 1",
            "NVIDIA GH100 Identity",
            "NVIDIA Device Identity CA"
        ])
    );

    // Everything trustee's expected claims say about this report.
    let expected: Value =
        serde_json::from_slice(&vector("nvidia/trustee_hopperAttestationReport-claims.txt"))
            .unwrap();
    assert_eq!(v["measurements"], expected["measurements"]);
    assert_eq!(v["measurements"].as_object().unwrap().len(), 64);
    assert_eq!(
        v["measurements"]["4"],
        "73bbf35822549e28ba8fb2671fb7b58f46424a0069205b3ecf1d0fa762adef90b538cc9d692eb5c050147f2f1e8214ab"
    );
    let config = &expected["config"];
    let opaque = &v["opaque"];
    assert_eq!(opaque["measurement_count"], config["measurement_count"]);
    for (ours, theirs) in [
        ("driver_version", "driver_version"),
        ("vbios_version", "vbios_version"),
        ("board_id", "board_id"),
        ("chip_sku", "chip_sku"),
        ("chip_sku_mod", "chip_sku_mod"),
        ("cpr_info", "cpr_info"),
        ("fwid", "fwid"),
        ("gpu_info", "gpu_info"),
        ("project", "project"),
        ("project_sku", "project_sku"),
        ("project_sku_mod", "project_sku_mod"),
    ] {
        assert_eq!(opaque[ours], config[theirs], "{ours}");
    }
    // Trustee shows NVDEC0 and protected-PCIe status as the character 'U' (0x55).
    assert_eq!(config["nvdec0_status"], "U");
    assert_eq!(opaque["nvdec0_status"], "55");
    assert_eq!(config["protected_pcie_status"], "U");
    assert_eq!(opaque["protected_pcie_status"], "55");
    assert_eq!(opaque["nvdec0_enabled"], false);

    // measurement = SHA-384 over the 64 values in index order.
    use sha2::Digest as _;
    let mut h = sha2::Sha384::new();
    for i in 1..=64 {
        h.update(hex::decode(v["measurements"][i.to_string()].as_str().unwrap()).unwrap());
    }
    assert_eq!(claims.measurement.as_bytes(), h.finalize().as_slice());

    assert_golden("nvidia_hopper_report", &claims);
}

#[test]
fn hex_text_evidence_gives_the_same_claims_as_binary() {
    let from_hex = run(&report_hex(), &chain(1)).unwrap();
    let from_binary = run(&report(), &chain(1)).unwrap();
    assert_eq!(from_hex, from_binary);
}

#[test]
fn chain_without_its_root_is_completed_from_an_instance_anchor() {
    let mut collateral = chain(1);
    collateral.certificates.pop();
    // Without an anchor the chain stops at NVIDIA GH100 Identity, which is not a trusted root.
    let err = nvidia_err(run(&report(), &collateral));
    assert!(matches!(err, NvidiaError::Chain(CertError::UntrustedRoot { .. })), "{err}");
    assert!(err.to_string().contains("NVIDIA GH100 Identity"), "{err}");
    let anchors =
        TrustAnchors::new().with_root(TeeKind::Nvidia, vector("nvidia/nvidia_device_root.pem"));
    let claims = run_full(&report(), &collateral, &anchors, at(WHEN)).unwrap();
    assert_eq!(vendor(&claims)["cert_chain"].as_array().unwrap().len(), 5);
}

#[test]
fn vbios_rim_for_another_version_is_reported_and_not_compared() {
    // The PROD RIM is for VBIOS 96.00.5E.00.01; the report's VBIOS is 96.00.9F.00.01.
    let claims = run(&report(), &with_rim(chain(1), &text(PROD_VBIOS_RIM))).unwrap();
    let rim = &vendor(&claims)["rim"];
    assert_eq!(rim["vbios"]["status"], "version_mismatch");
    assert_eq!(rim["vbios"]["rim_version"], "96.00.5E.00.01");
    assert_eq!(rim["vbios"]["report_version"], "96.00.9f.00.01");
    // Its signature verified, to NVIDIA's RIM signing root.
    assert_eq!(rim["vbios"]["root"], "nvidia");
    assert_eq!(
        rim["vbios"]["signer_chain"],
        serde_json::json!([
            "HCC RIM L4 Signer",
            "NVIDIA Reference Value L3 GH100 001",
            "NVIDIA Reference Value GH100 CA",
            "NVIDIA CoRIM signing Root CA"
        ])
    );
    assert_eq!(vendor(&claims)["rim_signature_verified"], true);
    assert_eq!(vendor(&claims)["rim_root"], "nvidia");
    assert_eq!(vendor(&claims)["measurements_appraised"], false);
    assert_golden("nvidia_hopper_report_prod_vbios_rim", &claims);
}

#[test]
fn driver_rim_for_another_version_is_reported_and_not_compared() {
    // Only the 545.00 test driver RIM exists; the report's driver is 550.90.07.
    let claims = run(&report(), &with_rim(chain(1), &text(DRIVER_RIM))).unwrap();
    let rim = &vendor(&claims)["rim"];
    assert_eq!(rim["driver"]["status"], "version_mismatch");
    assert_eq!(rim["driver"]["rim_version"], "545.00");
    assert_eq!(rim["driver"]["report_version"], "550.90.07");
    assert_eq!(rim["vbios"]["status"], "absent");
}

#[test]
fn two_rims_of_one_kind_are_refused() {
    let rim = text(PROD_VBIOS_RIM);
    let err = nvidia_err(run(&report(), &with_rim(with_rim(chain(1), &rim), &rim)));
    assert!(matches!(err, NvidiaError::DuplicateRim("VBIOS")), "{err}");
}

#[test]
fn malformed_rim_and_unknown_documents_are_refused() {
    let broken = text(PROD_VBIOS_RIM).replace("</ns0:Payload>", "");
    let err = nvidia_err(run(&report(), &with_rim(chain(1), &broken)));
    assert!(matches!(err, NvidiaError::Rim { index: 0, .. }), "{err}");
    let err = nvidia_err(run(&report(), &chain(1).with_document(b"{\"tcbInfo\":{}}".to_vec())));
    assert!(matches!(err, NvidiaError::UnknownDocument { index: 0 }), "{err}");
}

#[test]
fn flipped_measurement_byte_fails_the_signature() {
    let mut evidence = report();
    // Request (37) + response header (8) + block 1 header (4) + DMTF header (3): block 1's value.
    evidence[37 + 8 + 4 + 3 + 10] ^= 1;
    let err = nvidia_err(run(&evidence, &chain(1)));
    assert!(matches!(err, NvidiaError::BadSignature { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "nvidia: report signature does not verify with the key of GH100 A01 GSP FMC LF"
    );
}

#[test]
fn flipped_nonce_byte_fails_the_signature() {
    let mut evidence = report();
    evidence[4] ^= 0x80;
    let err = nvidia_err(run(&evidence, &chain(1)));
    assert!(matches!(err, NvidiaError::BadSignature { .. }), "{err}");
}

#[test]
fn flipped_signature_byte_fails_the_signature() {
    let mut evidence = report();
    let last = evidence.len() - 1;
    evidence[last] ^= 1;
    let err = nvidia_err(run(&evidence, &chain(1)));
    assert!(matches!(err, NvidiaError::BadSignature { .. }), "{err}");
}

#[test]
fn root_only_chain_case2_is_refused() {
    let err = nvidia_err(run(&report(), &chain(2)));
    assert!(matches!(err, NvidiaError::ChainTooShort(1)), "{err}");
    assert!(
        err.to_string().starts_with(
            "nvidia: certificate chain must have at least the root CA and signing certificates"
        ),
        "{err}"
    );
}

#[test]
fn chain_missing_an_intermediate_case3_is_refused() {
    let err = nvidia_err(run(&report(), &chain(3)));
    assert!(matches!(err, NvidiaError::Chain(CertError::IssuerMismatch { .. })), "{err}");
    assert!(err.to_string().contains("GH100 A01 GSP BROM certificate names issuer"), "{err}");
}

#[test]
fn chain_missing_the_signing_certificate_case4_is_refused() {
    let err = nvidia_err(run(&report(), &chain(4)));
    assert!(matches!(err, NvidiaError::MissingFwid { .. }), "{err}");
    assert!(
        err.to_string().starts_with(
            "nvidia: FWID extension (2.23.133.5.4.1) not found in the signing certificate GH100 \
             A01 GSP BROM"
        ),
        "{err}"
    );
}

#[test]
fn chain_ending_in_another_root_is_untrusted() {
    // The NVIDIA root replaced by AMD's self-signed ARK-Milan.
    let mut collateral = chain(1);
    collateral.certificates.pop();
    let amd = Collateral::new().with_certificates(&vector("snp/milan_ask_ark_asvk.pem"));
    let ark = amd
        .certificates
        .iter()
        .find(|der| cloister_verify::x509::Cert::from_der(der).unwrap().subject_cn() == "ARK-Milan")
        .unwrap();
    collateral.certificates.push(ark.clone());
    let err = nvidia_err(run(&report(), &collateral));
    assert!(matches!(err, NvidiaError::Chain(CertError::UntrustedRoot { .. })), "{err}");
    assert!(err.to_string().contains("ARK-Milan"), "{err}");
}

#[test]
fn no_certificates_is_refused() {
    let err = nvidia_err(run(&report(), &Collateral::new()));
    assert!(matches!(err, NvidiaError::NoCertificates), "{err}");
}

#[test]
fn unreadable_anchor_is_refused() {
    let anchors = TrustAnchors::new().with_root(TeeKind::Nvidia, b"not a certificate".to_vec());
    let err = nvidia_err(run_full(&report(), &chain(1), &anchors, at(WHEN)));
    assert!(matches!(err, NvidiaError::Anchor { index: 0, .. }), "{err}");
}

#[test]
fn time_before_the_provisioner_ica_is_valid_is_refused() {
    let err = nvidia_err(run_full(
        &report(),
        &chain(1),
        &TrustAnchors::new(),
        at("2022-01-01T00:00:00Z"),
    ));
    assert!(matches!(err, NvidiaError::Chain(CertError::NotYetValid { .. })), "{err}");
    assert!(err.to_string().contains("NVIDIA GH100 Provisioner ICA 1"), "{err}");
}

#[test]
fn truncated_reports_are_refused_at_the_field_that_is_cut() {
    let evidence = report();
    let err = nvidia_err(run(&evidence[..evidence.len() - 1], &chain(1)));
    assert!(
        matches!(err, NvidiaError::Truncated { what: "signature", need: 96, have: 95 }),
        "{err}"
    );
    let err = nvidia_err(run(&evidence[..100], &chain(1)));
    assert!(matches!(err, NvidiaError::Truncated { what: "measurement record", .. }), "{err}");
    let err = nvidia_err(run(&evidence[..20], &chain(1)));
    assert!(matches!(err, NvidiaError::Truncated { what: "request nonce", .. }), "{err}");
    assert!(err.to_string().starts_with("nvidia: evidence is truncated"), "{err}");
    // Every prefix fails cleanly.
    for len in 0..evidence.len() {
        assert!(run(&evidence[..len], &chain(1)).is_err(), "prefix of {len} bytes");
    }
}

/// Captures of the report carry bytes after the signature (a newline, a NUL, a larger buffer):
/// the response's own lengths end it, the tail is counted and never read.
#[test]
fn bytes_after_the_signature_are_counted_and_never_read() {
    let clean = run(&report(), &chain(1)).unwrap();
    assert!(vendor(&clean).get("trailing_bytes").is_none());
    for tail in [vec![0u8], vec![b'\n'], vec![0xa5; 300]] {
        let mut longer = report();
        longer.extend_from_slice(&tail);
        let claims = run(&longer, &chain(1)).unwrap();
        assert_eq!(vendor(&claims)["trailing_bytes"], tail.len());
        assert_eq!(claims.measurement, clean.measurement);
    }
}

/// A test device key under a test root, its leaf carrying `fwid` as NVIDIA's leaves do.
fn test_device(fwid: &[u8]) -> (common::pki::TestCa, Vec<u8>, rcgen::KeyPair) {
    use rcgen::{CertificateParams, CustomExtension, DnType, Issuer, KeyPair};
    let root = common::pki::TestCa::root(
        "Test GPU Root",
        at("2020-01-01T00:00:00Z"),
        at("2040-01-01T00:00:00Z"),
    );
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "Test GPU FMC LF");
    // SEQUENCE { SEQUENCE { OID sha384, OCTET STRING fwid } }: ends in 04 30 <48 bytes>.
    let mut inner =
        vec![0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x04, 0x30];
    inner.extend_from_slice(fwid);
    let mut fwid_ext = vec![0x30, inner.len() as u8 + 2, 0x30, inner.len() as u8];
    fwid_ext.extend_from_slice(&inner);
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(&[2, 23, 133, 5, 4, 1], fwid_ext));
    let issuer = Issuer::from_params(&root.params, &root.key);
    let leaf = params.signed_by(&key, &issuer).unwrap().der().to_vec();
    (root, leaf, key)
}

/// SPDM 1.2 signs a signing context, not the transcript: the real report's fields as a 1.2
/// report, re-signed by a test device key, verify only when signed the 1.2 way.
#[test]
fn spdm_1_2_reports_are_verified_over_the_signing_context() {
    use rcgen::SigningKey as _;
    let mut transcript = report();
    transcript.truncate(transcript.len() - 96);
    transcript[0] = 0x12;
    transcript[37] = 0x12;
    let (root, leaf, key) = test_device(&hex::decode(FWID).unwrap());
    let mut collateral = Collateral::new();
    collateral.certificates = vec![leaf, root.der.clone()];
    let anchors = TrustAnchors::new().with_root(TeeKind::Nvidia, root.der.clone());
    let sign = |message: &[u8]| {
        let der = key.sign(message).unwrap();
        p384::ecdsa::Signature::from_der(&der).unwrap().to_bytes().to_vec()
    };
    // DSP0274 1.2: "dmtf-spdm-v1.2.*" four times, zeros padding the context to 36 bytes, the
    // context, then SHA-384 of the transcript.
    let mut context = b"dmtf-spdm-v1.2.*".repeat(4);
    context.extend_from_slice(&[0; 6]);
    context.extend_from_slice(b"responder-measurements signing");
    context.extend_from_slice(&<sha2::Sha384 as sha2::Digest>::digest(&transcript));
    let mut v12 = transcript.clone();
    v12.extend_from_slice(&sign(&context));
    let claims = run_full(&v12, &collateral, &anchors, at(WHEN)).unwrap();
    assert_eq!(vendor(&claims)["spdm_version"], "1.2");
    assert_eq!(hex::encode(claims.report_data.as_bytes()), NONCE);

    // The same bytes signed as 1.1 signs (the transcript itself) do not verify as 1.2.
    let mut as_v11 = transcript.clone();
    as_v11.extend_from_slice(&sign(&transcript));
    let err = nvidia_err(run_full(&as_v11, &collateral, &anchors, at(WHEN)));
    assert!(matches!(err, NvidiaError::BadSignature { .. }), "{err}");
}

/// The SPDM 1.3 signing context: `"dmtf-spdm-v1.{minor}.*"` four times, zeros padding the
/// context to 36 bytes, the context, then SHA-384 of the transcript.
fn signing_context(minor: u8, transcript: &[u8]) -> Vec<u8> {
    let mut context = format!("dmtf-spdm-v1.{minor}.*").into_bytes().repeat(4);
    context.extend_from_slice(&[0; 6]);
    context.extend_from_slice(b"responder-measurements signing");
    context.extend_from_slice(&<sha2::Sha384 as sha2::Digest>::digest(transcript));
    context
}

/// The real report's fields as an SPDM 1.3 transcript (no signature): version bytes 0x13, the
/// requester context `request` after the request's slot id and `response` after the response's
/// opaque data.
fn v13_transcript(request: [u8; 8], response: [u8; 8]) -> Vec<u8> {
    let mut transcript = report();
    transcript.truncate(transcript.len() - 96);
    transcript[0] = 0x13;
    transcript[37] = 0x13;
    let mut out = transcript[..37].to_vec();
    out.extend_from_slice(&request);
    out.extend_from_slice(&transcript[37..]);
    out.extend_from_slice(&response);
    out
}

/// SPDM 1.3: the requester context in request and response, the `1.3` signing prefix.
#[test]
fn spdm_1_3_reports_with_their_requester_context_verify() {
    use rcgen::SigningKey as _;
    let (root, leaf, key) = test_device(&hex::decode(FWID).unwrap());
    let mut collateral = Collateral::new();
    collateral.certificates = vec![leaf, root.der.clone()];
    let anchors = TrustAnchors::new().with_root(TeeKind::Nvidia, root.der.clone());
    let sign = |message: &[u8]| {
        let der = key.sign(message).unwrap();
        p384::ecdsa::Signature::from_der(&der).unwrap().to_bytes().to_vec()
    };
    let context = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
    let transcript = v13_transcript(context, context);
    let mut v13 = transcript.clone();
    v13.extend_from_slice(&sign(&signing_context(3, &transcript)));
    let claims = run_full(&v13, &collateral, &anchors, at(WHEN)).unwrap();
    assert_eq!(vendor(&claims)["spdm_version"], "1.3");
    assert_eq!(vendor(&claims)["requester_context"], "1122334455667788");
    assert_eq!(hex::encode(claims.report_data.as_bytes()), NONCE);
    // The 1.3 report's measurements are the real report's.
    let real = run(&report(), &chain(1)).unwrap();
    assert_eq!(claims.measurement, real.measurement);
    assert!(vendor(&real).get("requester_context").is_none());
    // Bytes after the signature are counted, as for 1.1 and 1.2.
    let mut longer = v13.clone();
    longer.push(b'\n');
    let claims = run_full(&longer, &collateral, &anchors, at(WHEN)).unwrap();
    assert_eq!(vendor(&claims)["trailing_bytes"], 1);

    // The prefix must name 1.3: the same transcript signed with the 1.2 prefix, or as 1.1
    // signs (the transcript itself), does not verify.
    for wrong in [signing_context(2, &transcript), transcript.clone()] {
        let mut bad = transcript.clone();
        bad.extend_from_slice(&sign(&wrong));
        let err = nvidia_err(run_full(&bad, &collateral, &anchors, at(WHEN)));
        assert!(matches!(err, NvidiaError::BadSignature { .. }), "{err}");
    }
    // A flipped byte of either context breaks the signature or the echo.
    let mut flipped = v13.clone();
    flipped[40] ^= 1;
    let err = nvidia_err(run_full(&flipped, &collateral, &anchors, at(WHEN)));
    assert!(matches!(err, NvidiaError::RequesterContextMismatch { .. }), "{err}");

    // A response echoing another context is refused before any signature, even one the
    // device made over exactly those bytes.
    let other = v13_transcript(context, [0x99; 8]);
    let mut mismatched = other.clone();
    mismatched.extend_from_slice(&sign(&signing_context(3, &other)));
    let err = nvidia_err(run_full(&mismatched, &collateral, &anchors, at(WHEN)));
    match &err {
        NvidiaError::RequesterContextMismatch { request, response } => {
            assert_eq!(request, "1122334455667788");
            assert_eq!(response, "9999999999999999");
        }
        other => panic!("expected a requester context mismatch, got {other}"),
    }
    assert!(err.to_string().contains("requester context"), "{err}");
}

#[test]
fn truncated_or_missing_spdm_1_3_contexts_are_refused() {
    let context = [0xab; 8];
    let transcript = v13_transcript(context, context);
    // Cut inside the request's context.
    let err = nvidia_err(run(&transcript[..41], &chain(1)));
    assert!(
        matches!(
            err,
            NvidiaError::Truncated { what: "request requester context", need: 8, have: 4 }
        ),
        "{err}"
    );
    // Cut inside the response's context (it ends the transcript).
    let err = nvidia_err(run(&transcript[..transcript.len() - 3], &chain(1)));
    assert!(
        matches!(
            err,
            NvidiaError::Truncated { what: "response requester context", need: 8, have: 5 }
        ),
        "{err}"
    );
    // The context present but the signature after it missing.
    let err = nvidia_err(run(&transcript, &chain(1)));
    assert!(
        matches!(err, NvidiaError::Truncated { what: "signature", need: 96, have: 0 }),
        "{err}"
    );
    // A 1.2-shaped report (no contexts) labelled 1.3: the request's context swallows the
    // response header, and what follows is no MEASUREMENTS response.
    let mut relabelled = report();
    relabelled[0] = 0x13;
    relabelled[37] = 0x13;
    assert!(run(&relabelled, &chain(1)).is_err());
    // Every prefix of a 1.3 report fails cleanly.
    for len in 0..transcript.len() {
        assert!(run(&transcript[..len], &chain(1)).is_err(), "prefix of {len} bytes");
    }
}

#[test]
fn wrong_headers_are_refused() {
    for version in [0x10, 0x14, 0x21, 0x00] {
        let mut other = report();
        other[0] = version;
        let err = nvidia_err(run(&other, &chain(1)));
        assert!(matches!(err, NvidiaError::SpdmVersion(v) if v == version), "{err}");
        assert!(err.to_string().contains("1.1, 1.2 and 1.3"), "{err}");
    }

    let mut mixed = report();
    mixed[0] = 0x12;
    let err = nvidia_err(run(&mixed, &chain(1)));
    assert!(err.to_string().contains("differs from the request"), "{err}");

    let mut wrong_code = report();
    wrong_code[38] = 0x61;
    let err = nvidia_err(run(&wrong_code, &chain(1)));
    assert!(err.to_string().contains("MEASUREMENTS response"), "{err}");

    let mut no_sig = report();
    no_sig[2] = 0;
    let err = nvidia_err(run(&no_sig, &chain(1)));
    assert!(err.to_string().contains("did not ask for a signature"), "{err}");
}

#[test]
fn parser_never_panics_on_mutations() {
    let evidence = report();
    for i in 0..evidence.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut m = evidence.clone();
            m[i] ^= flip;
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Nvidia, &m);
        }
    }
    let rim = vector(PROD_VBIOS_RIM);
    for len in (0..rim.len()).step_by(97) {
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Nvidia, &rim[..len]);
    }
}

#[test]
fn pinned_root_is_the_nvidia_device_identity_ca_file() {
    // The chain's own root replaced by nvidia_device_root.pem verifies with no instance anchor:
    // the built-in fingerprint is that certificate's.
    let mut collateral = chain(1);
    collateral.certificates.pop();
    let collateral = collateral.with_certificates(&vector("nvidia/nvidia_device_root.pem"));
    let claims = run(&report(), &collateral).unwrap();
    assert_eq!(vendor(&claims)["cert_chain"][4], "NVIDIA Device Identity CA");
}
