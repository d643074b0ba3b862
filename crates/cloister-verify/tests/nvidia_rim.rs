//! NVIDIA RIM signatures and appraisal: NVIDIA's real signed RIMs, each part of the XML signature
//! broken in turn, and RIMs re-signed under a test root (named to the verifier as one) to reach
//! the measurement comparison with the report's own versions.

#![allow(clippy::unwrap_used)]

mod common;

use cloister_types::{Claims, TeeKind};
use cloister_verify::x509::CertError;
use cloister_verify::{
    Collateral, Inputs, NvidiaError, RimSignatureError, TrustAnchors, VerifyError,
    verify_vendor_evidence,
};
use common::rim::{C14N11, EXC_C14N, RimPki, SignOptions, strip_signature};
use common::{assert_golden, at, vector};
use serde_json::Value;

/// Inside the validity of every certificate of the device chain and of NVIDIA's RIM signer
/// (HCC RIM L4 Signer, 2023-06-23..2025-06-22).
const WHEN: &str = "2024-06-01T00:00:00Z";
const PROD_VBIOS_RIM: &str = "nvidia/nvtrust_1010_0200_882_96005E0001_PROD.swidtag";
const TEST_VBIOS_RIM: &str = "nvidia/nvtrust_1010_0200_882_96005E0001_test_no_gpu.swidtag";
const DRIVER_RIM: &str = "nvidia/nvtrust_Driver_RIM_test_no_gpu.swidtag";

fn now() -> i64 {
    at(WHEN)
}

fn report() -> Vec<u8> {
    hex::decode(
        String::from_utf8(vector("nvidia/trustee_hopperAttestationReport.txt")).unwrap().trim(),
    )
    .unwrap()
}

fn device_chain() -> Collateral {
    Collateral::new().with_certificates(&vector("nvidia/trustee_hopper_cert_chain_case1.txt"))
}

fn with_rims(rims: &[&str]) -> Collateral {
    rims.iter().fold(device_chain(), |c, rim| c.with_document(rim.as_bytes().to_vec()))
}

fn run(collateral: &Collateral, anchors: &TrustAnchors) -> Result<Claims, VerifyError> {
    let inputs = Inputs { collateral, anchors, now_unix: now() };
    verify_vendor_evidence(TeeKind::Nvidia, &report(), &inputs)
}

fn nvidia_err(result: Result<Claims, VerifyError>) -> NvidiaError {
    match result {
        Err(VerifyError::Nvidia(e)) => e,
        other => panic!("expected an nvidia error, got {other:?}"),
    }
}

/// The signature check that refused document `index`.
fn signature_err(result: Result<Claims, VerifyError>, index: usize) -> RimSignatureError {
    match nvidia_err(result) {
        NvidiaError::RimSignature { index: i, source } if i == index => source,
        other => panic!("expected a RIM signature error for document {index}, got {other}"),
    }
}

fn vendor(claims: &Claims) -> &Value {
    claims.vendor.get("nvidia").unwrap()
}

fn text(path: &str) -> String {
    String::from_utf8(vector(path)).unwrap()
}

fn pki() -> RimPki {
    RimPki::new(now() - 86_400 * 30, now() + 86_400 * 30)
}

fn anchors(pki: &RimPki) -> TrustAnchors {
    TrustAnchors::new().with_nvidia_rim_test_root(pki.root_der())
}

/// Sets `active="False"` on the given RIM indexes.
fn deactivate(mut rim: String, indexes: &[u16]) -> String {
    for index in indexes {
        let from = format!(r#"index="{index}" active="True""#);
        assert!(rim.contains(&from), "{from}");
        rim = rim.replace(&from, &format!(r#"index="{index}" active="False""#));
    }
    rim
}

/// NVIDIA's PROD VBIOS RIM (for 96.00.5E.00.01), unsigned and relabelled with the report's VBIOS
/// version 96.00.9F.00.01.
fn vbios_relabelled() -> String {
    let rim = strip_signature(&text(PROD_VBIOS_RIM));
    assert!(rim.contains(r#"colloquialVersion="96.00.5E.00.01""#));
    rim.replace(r#"colloquialVersion="96.00.5E.00.01""#, r#"colloquialVersion="96.00.9F.00.01""#)
}

/// [`vbios_relabelled`] with the indexes of another VBIOS build (1, 2, 9, 11) inactive: the rest
/// (0, 3–6, 8, 10, 12) match this report.
fn vbios_matching() -> String {
    deactivate(vbios_relabelled(), &[1, 2, 9, 11])
}

/// NVIDIA's 545.00 test driver RIM, unsigned, relabelled 550.90.07, with the indexes that differ
/// from this report inactive: what stays active (RIM 23, 24, 28, 33, 35, 38) matches.
fn driver_matching() -> String {
    let rim = strip_signature(&text(DRIVER_RIM))
        .replace(r#"colloquialVersion="545.00""#, r#"colloquialVersion="550.90.07""#);
    deactivate(rim, &[7, 21, 22, 25, 26, 27, 29, 30, 31, 32, 34, 36, 37, 39, 40])
}

// ---- NVIDIA's own RIMs ----

#[test]
fn nvidia_rims_verify_to_the_pinned_rim_signing_root() {
    for path in [PROD_VBIOS_RIM, TEST_VBIOS_RIM, DRIVER_RIM] {
        cloister_verify::internal::verify_rim(&vector(path), &[], now())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let claims =
        run(&with_rims(&[&text(TEST_VBIOS_RIM), &text(DRIVER_RIM)]), &TrustAnchors::new()).unwrap();
    let v = vendor(&claims);
    assert_eq!(v["rim_signature_verified"], true);
    assert_eq!(v["rim_root"], "nvidia");
    assert_eq!(v["rim"]["driver"]["root"], "nvidia");
    assert_eq!(v["rim"]["driver"]["signer_chain"][0], "HCC RIM L4 Signer");
    // Neither is for this report's versions.
    assert_eq!(v["measurements_appraised"], false);
}

#[test]
fn nvidia_rim_after_its_signer_expired_is_refused() {
    let err = cloister_verify::internal::verify_rim(
        &vector(PROD_VBIOS_RIM),
        &[],
        at("2025-07-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(
        err.starts_with(
            "signer certificate chain does not verify: HCC RIM L4 Signer certificate expired at \
             2025-06-22"
        ),
        "{err}"
    );
}

#[test]
fn changed_golden_hash_or_version_in_an_nvidia_rim_fails_the_reference_digest() {
    let rim = text(PROD_VBIOS_RIM);
    let good = "c9e4fe668e9dc269a4657146b5e28a22347cde18a4b0e79d8146532f27ebc386f304400ea5d4bf4159b5a6916dd4564e";
    for altered in [
        rim.replace(good, &format!("00{}", &good[2..])),
        rim.replace(
            r#"colloquialVersion="96.00.5E.00.01""#,
            r#"colloquialVersion="96.00.9F.00.01""#,
        ),
        rim.replace(r#"index="1" active="True""#, r#"index="1" active="False""#),
        rim.replace("<ns0:Entity ", "<ns0:Entity  extra=\"1\" "),
    ] {
        assert_ne!(altered, rim);
        let err = signature_err(run(&with_rims(&[&altered]), &TrustAnchors::new()), 0);
        assert!(matches!(err, RimSignatureError::DigestMismatch { .. }), "{err}");
        assert!(
            err.to_string().starts_with("Reference digest check failed: the SHA-384 digest"),
            "{err}"
        );
    }
}

#[test]
fn any_flipped_byte_in_the_signed_part_of_an_nvidia_rim_is_refused() {
    let rim = vector(PROD_VBIOS_RIM);
    let signature_at = rim.windows(13).position(|w| w == b"<ds:Signature").unwrap();
    for at_byte in (0..signature_at).step_by(37) {
        let mut altered = rim.clone();
        altered[at_byte] ^= 0x01;
        let err = nvidia_err(run(&device_chain().with_document(altered), &TrustAnchors::new()));
        // Unreadable XML, an unreadable RIM, or a signed content that no longer hashes right.
        assert!(
            matches!(
                err,
                NvidiaError::Rim { .. }
                    | NvidiaError::UnknownDocument { .. }
                    | NvidiaError::RimSignature {
                        source: RimSignatureError::DigestMismatch { .. },
                        ..
                    }
            ),
            "byte {at_byte}: {err}"
        );
    }
}

#[test]
fn comments_and_the_xml_declaration_are_outside_the_signed_content() {
    // A same-document reference leaves comments out, so adding one keeps the signature valid;
    // the measurements are still exactly the signed ones.
    let rim = text(PROD_VBIOS_RIM).replacen("<ns0:Payload", "<!-- a comment --><ns0:Payload", 1);
    let rim = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{rim}");
    cloister_verify::internal::verify_rim(rim.as_bytes(), &[], now()).unwrap();
}

#[test]
fn swapped_signature_value_is_refused() {
    // The SignatureValue of NVIDIA's other VBIOS RIM, in the PROD RIM.
    let value = |rim: &str| {
        let start = rim.find("<ds:SignatureValue>").unwrap();
        let end = rim.find("</ds:SignatureValue>").unwrap();
        rim[start..end].to_owned()
    };
    let prod = text(PROD_VBIOS_RIM);
    let swapped = prod.replace(&value(&prod), &value(&text(TEST_VBIOS_RIM)));
    let err = signature_err(run(&with_rims(&[&swapped]), &TrustAnchors::new()), 0);
    assert!(matches!(err, RimSignatureError::BadSignature { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "SignatureValue check failed: the signature over the canonical SignedInfo does not verify \
         with the key of HCC RIM L4 Signer"
    );
    // So is a changed DigestValue: SignedInfo is what is signed.
    let start = prod.find("<ds:DigestValue>").unwrap() + "<ds:DigestValue>".len();
    let mut changed = prod.clone();
    changed.replace_range(start..start + 1, if &prod[start..=start] == "A" { "B" } else { "A" });
    let err = signature_err(run(&with_rims(&[&changed]), &TrustAnchors::new()), 0);
    assert!(matches!(err, RimSignatureError::BadSignature { .. }), "{err}");
}

// ---- RIMs signed under a test root ----

#[test]
fn test_signed_rims_for_the_report_versions_give_a_complete_appraisal_marked_test() {
    let pki = pki();
    for c14n in [C14N11, EXC_C14N] {
        let vbios = pki.sign(&vbios_matching(), c14n);
        let driver = pki.sign(&driver_matching(), c14n);
        let claims = run(&with_rims(&[&vbios, &driver]), &anchors(&pki)).unwrap();
        let v = vendor(&claims);
        assert_eq!(v["measurements_appraised"], true, "{c14n}");
        assert_eq!(v["rim_signature_verified"], true);
        assert_eq!(v["rim_root"], "test");
        assert_eq!(v["rim"]["vbios"]["status"], "matched");
        assert_eq!(v["rim"]["vbios"]["root"], "test");
        assert_eq!(
            v["rim"]["vbios"]["signer_chain"],
            serde_json::json!([
                "Test RIM Signer",
                "Test Reference Value CA",
                "Test CoRIM signing Root CA"
            ])
        );
        let compared: Vec<&String> =
            v["rim"]["vbios"]["measurements"].as_object().unwrap().keys().collect();
        // Report block numbers (RIM index + 1).
        assert_eq!(compared, ["1", "4", "5", "6", "7", "9", "11", "13"]);
        let driver = &v["rim"]["driver"];
        assert_eq!(driver["status"], "matched");
        // RIM index 35 (block 36) is compared only while NVDEC0 is enabled; here it is not.
        assert_eq!(driver["measurements"]["36"], "not_compared_nvdec0_disabled");
        for block in ["24", "25", "29", "34", "39"] {
            assert_eq!(driver["measurements"][block], "match", "{block}");
        }
    }
}

#[test]
fn one_rim_or_no_compared_measurement_is_not_a_complete_appraisal() {
    let pki = pki();
    let vbios = pki.sign(&vbios_matching(), C14N11);
    let claims = run(&with_rims(&[&vbios]), &anchors(&pki)).unwrap();
    assert_eq!(vendor(&claims)["measurements_appraised"], false);
    assert_eq!(vendor(&claims)["rim"]["driver"]["status"], "absent");
    // Both RIMs, but with no active measurement left: nothing was compared.
    let all: Vec<u16> = (0..64).collect();
    let inactive = |rim: String| {
        let mut rim = rim;
        for index in &all {
            rim = rim.replace(
                &format!(r#"index="{index}" active="True""#),
                &format!(r#"index="{index}" active="False""#),
            );
        }
        rim
    };
    let vbios = pki.sign(&inactive(vbios_matching()), C14N11);
    let driver = pki.sign(&inactive(driver_matching()), C14N11);
    let claims = run(&with_rims(&[&vbios, &driver]), &anchors(&pki)).unwrap();
    assert_eq!(vendor(&claims)["rim"]["vbios"]["status"], "matched");
    assert_eq!(vendor(&claims)["measurements_appraised"], false);
}

#[test]
fn test_root_not_named_as_one_is_refused() {
    let pki = pki();
    let vbios = pki.sign(&vbios_matching(), C14N11);
    for anchors in [
        TrustAnchors::new(),
        // A device root is not a RIM root.
        TrustAnchors::new().with_root(TeeKind::Nvidia, pki.root_der()),
    ] {
        let err = signature_err(run(&with_rims(&[&vbios]), &anchors), 0);
        assert!(matches!(err, RimSignatureError::Chain(CertError::UntrustedRoot { .. })), "{err}");
        assert!(
            err.to_string().starts_with(
                "signer certificate chain does not verify: certificate chain ends at Test CoRIM \
                 signing Root CA"
            ),
            "{err}"
        );
    }
}

#[test]
fn chain_without_its_root_is_completed_from_the_named_test_root() {
    let pki = pki();
    let signed = common::rim::sign(
        &vbios_matching(),
        &SignOptions::new(C14N11),
        &pki.signer,
        &[&pki.ca, &pki.signer],
    );
    let claims = run(&with_rims(&[&signed]), &anchors(&pki)).unwrap();
    assert_eq!(vendor(&claims)["rim"]["vbios"]["signer_chain"][2], "Test CoRIM signing Root CA");
    let err = signature_err(run(&with_rims(&[&signed]), &TrustAnchors::new()), 0);
    assert!(err.to_string().contains("Test Reference Value CA"), "{err}");
}

#[test]
fn expired_or_not_yet_valid_signer_is_refused() {
    let pki = pki();
    let expired = pki.ca.issue(
        "Test Expired RIM Signer",
        common::pki::Role::Leaf,
        now() - 86_400 * 10,
        now() - 86_400,
    );
    let signed = common::rim::sign(
        &vbios_matching(),
        &SignOptions::new(C14N11),
        &expired,
        &[&expired, &pki.ca, &pki.root],
    );
    let err = signature_err(run(&with_rims(&[&signed]), &anchors(&pki)), 0);
    assert!(matches!(err, RimSignatureError::Chain(CertError::Expired { .. })), "{err}");
    assert!(err.to_string().contains("Test Expired RIM Signer certificate expired at"), "{err}");
}

#[test]
fn signer_that_is_a_ca_without_digital_signature_or_not_a_ca_issuer_is_refused() {
    let pki = pki();
    // The CA's own key signs the RIM: its keyUsage is keyCertSign and cRLSign only.
    let signed = common::rim::sign(
        &vbios_matching(),
        &SignOptions::new(C14N11),
        &pki.ca,
        &[&pki.ca, &pki.root],
    );
    let err = signature_err(run(&with_rims(&[&signed]), &anchors(&pki)), 0);
    assert!(matches!(err, RimSignatureError::SignerKey { .. }), "{err}");
    assert!(err.to_string().contains("digitalSignature"), "{err}");
    // A leaf issuing the signer.
    let rogue = pki.signer.issue("Rogue Signer", common::pki::Role::Leaf, now() - 60, now() + 60);
    let signed = common::rim::sign(
        &vbios_matching(),
        &SignOptions::new(C14N11),
        &rogue,
        &[&rogue, &pki.signer, &pki.ca, &pki.root],
    );
    let err = signature_err(run(&with_rims(&[&signed]), &anchors(&pki)), 0);
    assert!(matches!(err, RimSignatureError::Chain(CertError::NotACa { .. })), "{err}");
}

#[test]
fn test_signed_rim_with_an_altered_golden_value_mismatches() {
    let pki = pki();
    let good = "c9e4fe668e9dc269a4657146b5e28a22347cde18a4b0e79d8146532f27ebc386f304400ea5d4bf4159b5a6916dd4564e";
    let rim = vbios_matching();
    assert!(rim.contains(good));
    let altered = pki.sign(&rim.replace(good, &format!("00{}", &good[2..])), C14N11);
    let err = nvidia_err(run(&with_rims(&[&altered]), &anchors(&pki)));
    assert!(
        matches!(err, NvidiaError::MeasurementMismatch { index: 6, rim_index: 5, .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("nvidia: measurement 6 does not match the VBIOS RIM"),
        "{err}"
    );
    // The PROD RIM's own values at RIM index 1 are another build's.
    let err =
        nvidia_err(run(&with_rims(&[&pki.sign(&vbios_relabelled(), C14N11)]), &anchors(&pki)));
    assert!(
        matches!(err, NvidiaError::MeasurementMismatch { index: 2, rim_index: 1, .. }),
        "{err}"
    );
    // And the driver RIM's at RIM index 33 (block 34).
    let good = "198b81d9c0cefe0b33ad65de3fad238a5461d8ee32487bf70fc1926041408cb114624b8ca6b0d5fc97028b58d9cdb78d";
    let driver = driver_matching();
    assert!(driver.contains(good));
    let altered =
        pki.sign(&driver.replace(good, &format!("{}00", &good[..good.len() - 2])), C14N11);
    let err = nvidia_err(run(&with_rims(&[&altered]), &anchors(&pki)));
    assert!(
        matches!(
            err,
            NvidiaError::MeasurementMismatch { index: 34, rim_index: 33, kind: "driver", .. }
        ),
        "{err}"
    );
}

#[test]
fn rims_with_a_common_active_index_are_refused() {
    let pki = pki();
    let driver =
        driver_matching().replace(r#"index="3" active="False""#, r#"index="3" active="True""#);
    let rims = [pki.sign(&vbios_matching(), C14N11), pki.sign(&driver, C14N11)];
    let err = nvidia_err(run(&with_rims(&[&rims[0], &rims[1]]), &anchors(&pki)));
    assert!(matches!(err, NvidiaError::RimIndexConflict(3)), "{err}");
}

// ---- the signature's structure ----

fn refused(rim: &str, pki: &RimPki) -> RimSignatureError {
    signature_err(run(&with_rims(&[rim]), &anchors(pki)), 0)
}

#[test]
fn unsigned_rim_is_refused() {
    let pki = pki();
    let err = refused(&vbios_matching(), &pki);
    assert!(matches!(err, RimSignatureError::Unsigned), "{err}");
    assert_eq!(
        nvidia_err(run(&with_rims(&[&vbios_matching()]), &anchors(&pki))).to_string(),
        "nvidia: RIM (collateral document 0) is refused: the RIM is unsigned: it has no \
         ds:Signature element"
    );
}

#[test]
fn signature_elsewhere_than_under_the_root_or_twice_is_refused() {
    let pki = pki();
    let signed = pki.sign(&vbios_matching(), C14N11);
    let signature =
        &signed[signed.find("<ds:Signature").unwrap()..signed.find("</SoftwareIdentity>").unwrap()];
    let moved =
        strip_signature(&signed).replace("</ns0:Payload>", &format!("{signature}</ns0:Payload>"));
    assert!(matches!(refused(&moved, &pki), RimSignatureError::NotEnveloped));
    let twice = signed.replace("</SoftwareIdentity>", &format!("{signature}</SoftwareIdentity>"));
    assert!(matches!(refused(&twice, &pki), RimSignatureError::SignatureCount(2)));
}

#[test]
fn extra_or_foreign_references_are_refused() {
    let pki = pki();
    let sign = |options: SignOptions| pki.sign_with(&vbios_matching(), &options);
    let err =
        refused(&sign(SignOptions { extra_reference: true, ..SignOptions::new(C14N11) }), &pki);
    assert!(matches!(err, RimSignatureError::ReferenceCount(2)), "{err}");
    let err = refused(
        &sign(SignOptions { reference_uri: Some("#payload".into()), ..SignOptions::new(C14N11) }),
        &pki,
    );
    assert!(matches!(err, RimSignatureError::ReferenceUri(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "the signature's Reference is to URI \"#payload\"; a RIM's must cover the whole document \
         (URI=\"\")"
    );
    let err = refused(&sign(SignOptions { reference_uri: None, ..SignOptions::new(C14N11) }), &pki);
    assert!(matches!(err, RimSignatureError::ReferenceUri(_)), "{err}");
    let err = refused(
        &sign(SignOptions { transforms: vec![C14N11.into()], ..SignOptions::new(C14N11) }),
        &pki,
    );
    assert!(matches!(err, RimSignatureError::Transforms(_)), "{err}");
}

#[test]
fn signed_wrong_digest_is_refused_by_the_reference_check() {
    let pki = pki();
    let signed = pki.sign_with(
        &vbios_matching(),
        &SignOptions { wrong_digest: true, ..SignOptions::new(EXC_C14N) },
    );
    let err = refused(&signed, &pki);
    assert!(matches!(err, RimSignatureError::DigestMismatch { algorithm: "SHA-384", .. }), "{err}");
}

#[test]
fn unknown_or_weak_algorithms_are_refused_by_name() {
    let pki = pki();
    let sign = |options: SignOptions| pki.sign_with(&vbios_matching(), &options);
    let cases = [
        (
            SignOptions {
                signature_method: "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256".into(),
                ..SignOptions::new(C14N11)
            },
            "SignatureMethod algorithm \"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\" is \
             not accepted",
        ),
        (
            SignOptions {
                digest_method: "http://www.w3.org/2000/09/xmldsig#sha1".into(),
                ..SignOptions::new(C14N11)
            },
            "DigestMethod algorithm \"http://www.w3.org/2000/09/xmldsig#sha1\" is not accepted \
             (accepted: SHA-256, SHA-384 or SHA-512; SHA-1 is too weak)",
        ),
        (
            SignOptions {
                transforms: vec![
                    "http://www.w3.org/2000/09/xmldsig#enveloped-signature".into(),
                    "http://www.w3.org/TR/1999/REC-xpath-19991116".into(),
                ],
                ..SignOptions::new(C14N11)
            },
            "Transform algorithm \"http://www.w3.org/TR/1999/REC-xpath-19991116\" is not accepted",
        ),
    ];
    for (options, message) in cases {
        let err = refused(&sign(options), &pki);
        assert!(matches!(err, RimSignatureError::UnsupportedAlgorithm { .. }), "{err}");
        assert!(err.to_string().starts_with(message), "{err}");
    }
    // An unknown canonicalisation cannot even be produced by the signer: put it in afterwards.
    let signed = pki.sign(&vbios_matching(), C14N11).replacen(
        &format!(r#"<ds:CanonicalizationMethod Algorithm="{C14N11}"/>"#),
        r#"<ds:CanonicalizationMethod Algorithm="urn:unknown"/>"#,
        1,
    );
    let err = refused(&signed, &pki);
    assert!(
        err.to_string().starts_with("CanonicalizationMethod algorithm \"urn:unknown\""),
        "{err}"
    );
}

#[test]
fn self_made_chain_in_key_info_with_another_signer_key_is_refused() {
    // Signed by one key, with another hierarchy's chain in KeyInfo.
    let pki = pki();
    let other = RimPki::new(now() - 60, now() + 60);
    let signed = common::rim::sign(
        &vbios_matching(),
        &SignOptions::new(C14N11),
        &other.signer,
        &[&pki.signer, &pki.ca, &pki.root],
    );
    let err = refused(&signed, &pki);
    assert!(matches!(err, RimSignatureError::BadSignature { .. }), "{err}");
}

#[test]
fn claims_of_a_complete_test_appraisal_are_golden() {
    // Signatures differ on every run (ECDSA nonces) but the claims do not.
    let pki = pki();
    let rims = [pki.sign(&vbios_matching(), C14N11), pki.sign(&driver_matching(), C14N11)];
    let claims = run(&with_rims(&[&rims[0], &rims[1]]), &anchors(&pki)).unwrap();
    assert_golden("nvidia_hopper_report_test_rims", &claims);
}

// ---- OCSP responses for the RIM signer chain ----

mod revocation {
    use super::*;
    use common::ocsp::{Entry, Status, response};
    use common::pki::Role;

    /// A test-signed VBIOS RIM and an OCSP response (document 1) about its signer.
    fn run_with(pki: &RimPki, ocsp: Vec<u8>) -> Result<Claims, VerifyError> {
        let rim = pki.sign(&vbios_matching(), C14N11);
        run(&with_rims(&[&rim]).with_document(ocsp), &anchors(pki))
    }

    fn ocsp_err(result: Result<Claims, VerifyError>) -> cloister_verify::ocsp::OcspError {
        match nvidia_err(result) {
            NvidiaError::Ocsp { index: 1, source } => source,
            other => panic!("expected an OCSP error for document 1, got {other}"),
        }
    }

    #[test]
    fn good_response_from_the_issuer_or_its_delegated_responder_is_recorded() {
        let pki = pki();
        let signed_by_ca =
            response(&pki.signer.der, &pki.ca.der, &Entry::good(now()), &pki.ca, None);
        assert!(cloister_verify::is_ocsp_response(&signed_by_ca));
        let claims = run_with(&pki, signed_by_ca).unwrap();
        assert_eq!(vendor(&claims)["ocsp"], serde_json::json!({"Test RIM Signer": "good"}));

        let responder =
            pki.ca.issue("Test OCSP Responder", Role::OcspResponder, now() - 60, now() + 60);
        let entry = Entry { by_key: true, ..Entry::good(now()) };
        let delegated =
            response(&pki.signer.der, &pki.ca.der, &entry, &responder, Some(&responder));
        let claims = run_with(&pki, delegated).unwrap();
        assert_eq!(vendor(&claims)["ocsp"]["Test RIM Signer"], "good");
        // And about the CA, signed by the root.
        let about_ca = response(&pki.ca.der, &pki.root.der, &Entry::good(now()), &pki.root, None);
        let claims = run_with(&pki, about_ca).unwrap();
        assert_eq!(vendor(&claims)["ocsp"], serde_json::json!({"Test Reference Value CA": "good"}));
    }

    #[test]
    fn revoked_signer_is_refused() {
        let pki = pki();
        let entry = Entry { status: Status::Revoked(now() - 7200), ..Entry::good(now()) };
        let err =
            ocsp_err(run_with(&pki, response(&pki.signer.der, &pki.ca.der, &entry, &pki.ca, None)));
        assert!(matches!(err, cloister_verify::ocsp::OcspError::Revoked { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "Test RIM Signer is revoked since 2024-05-31T22:00:00Z (reason: KeyCompromise), says \
             its OCSP response"
        );
        let entry = Entry { status: Status::Unknown, ..Entry::good(now()) };
        let err =
            ocsp_err(run_with(&pki, response(&pki.signer.der, &pki.ca.der, &entry, &pki.ca, None)));
        assert!(matches!(err, cloister_verify::ocsp::OcspError::UnknownStatus { .. }), "{err}");
    }

    #[test]
    fn response_outside_its_validity_is_refused() {
        use cloister_verify::ocsp::OcspError;
        let pki = pki();
        let stale = Entry {
            this_update: now() - 7200,
            next_update: Some(now() - 3600),
            ..Entry::good(now())
        };
        let err =
            ocsp_err(run_with(&pki, response(&pki.signer.der, &pki.ca.der, &stale, &pki.ca, None)));
        assert!(matches!(err, OcspError::Expired { .. }), "{err}");
        let future = Entry { this_update: now() + 3600, ..Entry::good(now()) };
        let err = ocsp_err(run_with(
            &pki,
            response(&pki.signer.der, &pki.ca.der, &future, &pki.ca, None),
        ));
        assert!(matches!(err, OcspError::NotYetValid { .. }), "{err}");
        let open = Entry { next_update: None, ..Entry::good(now()) };
        let err =
            ocsp_err(run_with(&pki, response(&pki.signer.der, &pki.ca.der, &open, &pki.ca, None)));
        assert!(matches!(err, OcspError::NoNextUpdate { .. }), "{err}");
    }

    #[test]
    fn response_signed_by_anyone_else_is_refused() {
        use cloister_verify::ocsp::OcspError;
        let pki = pki();
        let entry = Entry::good(now());
        // A certificate the CA issued, but not for OCSP signing.
        let plain = pki.ca.issue("Test Plain Leaf", Role::Leaf, now() - 60, now() + 60);
        let err = ocsp_err(run_with(
            &pki,
            response(&pki.signer.der, &pki.ca.der, &entry, &plain, Some(&plain)),
        ));
        assert!(matches!(err, OcspError::ResponderNotAuthorized { .. }), "{err}");
        // An OCSP responder under another root.
        let other = RimPki::new(now() - 60, now() + 60);
        let foreign =
            other.ca.issue("Test Foreign Responder", Role::OcspResponder, now() - 60, now() + 60);
        let err = ocsp_err(run_with(
            &pki,
            response(&pki.signer.der, &pki.ca.der, &entry, &foreign, Some(&foreign)),
        ));
        assert!(matches!(err, OcspError::ResponderNotAuthorized { .. }), "{err}");
        // The issuer named, the signature broken.
        let broken = Entry { bad_signature: true, ..Entry::good(now()) };
        let err = ocsp_err(run_with(
            &pki,
            response(&pki.signer.der, &pki.ca.der, &broken, &pki.ca, None),
        ));
        assert!(matches!(err, OcspError::BadSignature { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "the OCSP response signature does not verify with the key of Test Reference Value CA"
        );
    }

    #[test]
    fn response_about_no_chain_certificate_or_unsuccessful_is_refused() {
        use cloister_verify::ocsp::OcspError;
        let pki = pki();
        let other = RimPki::new(now() - 60, now() + 60);
        let elsewhere =
            response(&other.signer.der, &other.ca.der, &Entry::good(now()), &other.ca, None);
        let err = ocsp_err(run_with(&pki, elsewhere));
        assert!(matches!(err, OcspError::NoMatchingCertificate), "{err}");
        let try_later = Entry { response_status: 3, ..Entry::good(now()) };
        let err = ocsp_err(run_with(
            &pki,
            response(&pki.signer.der, &pki.ca.der, &try_later, &pki.ca, None),
        ));
        assert_eq!(err.to_string(), "the OCSP responder answered tryLater, not successful");
    }
}
