//! AMD SEV-SNP verification against real reports and AMD chains: Milan VCEK and VLEK reports,
//! trustee's Genoa JSON evidence, an Azure HCL report's embedded report, the Turin chain, and
//! one negative test per check.

#![allow(clippy::unwrap_used)]

mod common;

use cloister_types::{Claims, TcbStatus, TeeKind};
use cloister_verify::snp::certs::{Certificates, EndorsementKeyInfo};
use cloister_verify::snp::{Product, SnpError, pinned_ark_sha256};
use cloister_verify::x509::{Cert, CertError};
use cloister_verify::{Collateral, Inputs, TrustAnchors, VerifyError, verify_vendor_evidence};
use common::{assert_golden, at, vector};
use sha2::{Digest as _, Sha256};

/// Inside every certificate's validity: the VLEK runs 2024-12-10 to 2025-12-10 and trustee's
/// Genoa VCEK starts 2025-05-27; the other VCEKs run 2023–2030, the ARKs/ASKs to 2045+.
const WHEN: &str = "2025-06-01T00:00:00Z";
const MILAN_CHAIN: &str = "snp/milan_ask_ark_asvk.pem";
const GENOA_CHAIN: &str = "snp/genoa_ask_ark_asvk.pem";
const VCEK_REPORT: &str = "snp/trustee_test-report.bin";
const VCEK: &str = "snp/trustee_test-vcek.der";
const VLEK_REPORT: &str = "snp/trustee_test-vlek-report.bin";
const VLEK: &str = "snp/trustee_test-vlek.der";

fn collateral(files: &[&str]) -> Collateral {
    files.iter().fold(Collateral::new(), |c, f| c.with_certificates(&vector(f)))
}

fn verify_with(
    evidence: &[u8],
    collateral: &Collateral,
    anchors: &TrustAnchors,
    when: &str,
) -> Result<Claims, SnpError> {
    let inputs = Inputs { collateral, anchors, now_unix: at(when) };
    match verify_vendor_evidence(TeeKind::Snp, evidence, &inputs) {
        Ok(claims) => Ok(claims),
        Err(VerifyError::Snp(e)) => Err(e),
        Err(other) => panic!("not an snp error: {other}"),
    }
}

fn run(evidence: &[u8], certs: &[&str]) -> Result<Claims, SnpError> {
    verify_with(evidence, &collateral(certs), &TrustAnchors::new(), WHEN)
}

fn flipped(file: &str, offset: usize, mask: u8) -> Vec<u8> {
    let mut bytes = vector(file);
    bytes[offset] ^= mask;
    bytes
}

fn vendor(claims: &Claims) -> &serde_json::Value {
    assert_eq!(claims.vendor.len(), 1);
    &claims.vendor["snp"]
}

// ---- vectors that verify ----

#[test]
fn milan_vcek_report_verifies() {
    let claims = run(&vector(VCEK_REPORT), &[VCEK, MILAN_CHAIN]).unwrap();
    assert_eq!(claims.tee, TeeKind::Snp);
    assert_eq!(
        claims.measurement.to_string(),
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c\
         23500644e0e692e6be917f9050d3d38c"
    );
    let mut report_data =
        hex::decode("ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2").unwrap();
    report_data.resize(64, 0);
    assert_eq!(claims.report_data.0, report_data);
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert!(claims.advisories.is_empty());
    assert!(!claims.debug);
    assert_eq!(claims.svn, Some(4));
    let snp = vendor(&claims);
    assert_eq!(snp["version"], 2);
    assert_eq!(snp["signing_key"], "vcek");
    assert_eq!(snp["product"], "milan");
    assert_eq!(snp["reported_tcb"]["bootloader"], 3);
    assert_eq!(snp["reported_tcb"]["snp"], 8);
    assert_eq!(snp["reported_tcb"]["microcode"], 115);
    assert_eq!(snp["policy"]["smt"], true);
    assert_eq!(claims.platform_id.as_ref().unwrap().0, vector(VCEK_REPORT)[0x1A0..0x1E0]);
    assert_golden("snp_trustee_vcek_milan", &claims);
}

#[test]
fn milan_vlek_report_verifies() {
    let claims = run(&vector(VLEK_REPORT), &[VLEK, MILAN_CHAIN]).unwrap();
    assert_eq!(
        claims.measurement.to_string(),
        "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4\
         e8c9af857f5ceeb5a493df2a570d7bf0"
    );
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    // A VLEK-signed report carries no chip id.
    assert_eq!(claims.platform_id, None);
    let snp = vendor(&claims);
    assert_eq!(snp["version"], 3);
    assert_eq!(snp["signing_key"], "vlek");
    assert_eq!(snp["product"], "milan");
    assert_eq!(snp["cpuid_fam_id"], 0x19);
    assert_eq!(snp["reported_tcb"]["bootloader"], 4);
    assert_eq!(snp["reported_tcb"]["snp"], 24);
    assert_eq!(snp["reported_tcb"]["microcode"], 217);
    assert_eq!(snp["vlek_csp_id"], "CN=cc-us-east-2.amazonaws.com");
    assert_golden("snp_trustee_vlek_milan", &claims);
}

#[test]
fn trustee_json_evidence_genoa_verifies() {
    // The JSON carries the VCEK in its cert_chain; the ASK and ARK come as collateral.
    let claims = run(&vector("snp/trustee_e2e_snp_evidence.json"), &[GENOA_CHAIN]).unwrap();
    assert_eq!(
        claims.measurement.to_string(),
        "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4\
         ae62a36d75c837974dd50b315506e73e"
    );
    assert_eq!(
        claims.report_data.to_string(),
        "7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf9\
         29eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0"
    );
    let snp = vendor(&claims);
    assert_eq!(snp["product"], "genoa");
    assert_eq!(snp["cpuid_mod_id"], 0xA0);
    let tcb = &snp["reported_tcb"];
    assert_eq!((tcb["bootloader"].as_u64(), tcb["tee"].as_u64()), (Some(10), Some(0)));
    assert_eq!((tcb["snp"].as_u64(), tcb["microcode"].as_u64()), (Some(23), Some(25)));
    assert_eq!(snp["current_version"], serde_json::json!({"major": 1, "minor": 55, "build": 40}));
    assert_golden("snp_trustee_e2e_genoa", &claims);
}

/// SHA-256 of an HCL report's variable data, zero-padded to 64 bytes: what its SNP report's
/// report_data must be.
fn hcl_var_data_sha256(hcl: &[u8]) -> Vec<u8> {
    let header = &hcl[0x20 + 1184..0x20 + 1184 + 20];
    let var_len = u32::from_le_bytes(header[16..20].try_into().unwrap()) as usize;
    let var_data = &hcl[0x20 + 1184 + 20..0x20 + 1184 + 20 + var_len];
    let mut expected = Sha256::digest(var_data).to_vec();
    expected.resize(64, 0);
    expected
}

#[test]
fn azure_hcl_report_embedded_snp_report_verifies() {
    // The HCL report (magic "HCLA") holds the SNP report at 0x20, then a header of five u32
    // (data size, version, report type, hash type 1 = SHA-256, variable data size) and the
    // variable data (the vTPM AK as JSON), whose SHA-256 is the report_data.
    let hcl = vector("snp/trustee_azsnpvtpm_hcl-report.bin");
    assert_eq!(&hcl[..4], b"HCLA");
    let report = &hcl[0x20..0x20 + 1184];
    let claims = run(report, &["snp/trustee_azsnpvtpm_vcek.pem"]).unwrap();
    assert_eq!(claims.report_data.0, hcl_var_data_sha256(&hcl));
    assert_eq!(vendor(&claims)["product"], "milan");
    assert_golden("snp_azure_hcl_milan", &claims);
}

#[test]
fn azure_genoa_hcl_report_embedded_snp_report_verifies() {
    // trustee's Azure Genoa evidence: {"quote", "report": HCL report bytes, "vcek": PEM}.
    let text = vector("snp/trustee_azsnpvtpm_evidence-genoa.json");
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let hcl: Vec<u8> =
        json["report"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
    assert_eq!(&hcl[..4], b"HCLA");
    let vcek = json["vcek"].as_str().unwrap().as_bytes();
    let collateral = collateral(&[GENOA_CHAIN]).with_certificates(vcek);
    let claims =
        verify_with(&hcl[0x20..0x20 + 1184], &collateral, &TrustAnchors::new(), WHEN).unwrap();
    assert_eq!(claims.report_data.0, hcl_var_data_sha256(&hcl));
    let snp = vendor(&claims);
    assert_eq!(snp["product"], "genoa");
    assert_eq!(snp["signing_key"], "vcek");
    assert_golden("snp_azure_hcl_genoa", &claims);
}

#[test]
fn turin_vcek_chain_verifies_no_report() {
    // No Turin report exists among the vectors: the chain and the VCEK's extensions only.
    let collateral =
        collateral(&["snp/virteesev_vcek_turin.der", "snp/virteesev_cert_chain_turin"]);
    let anchors = TrustAnchors::new();
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: at(WHEN) };
    let certs = Certificates::collect(&inputs, &[]).unwrap();
    let vcek = certs.leaves(cloister_verify::snp::SigningKey::Vcek).next().unwrap();
    let key = certs.verify_leaf(vcek, cloister_verify::snp::SigningKey::Vcek, at(WHEN)).unwrap();
    assert_eq!(key.product, Product::Turin);
    assert_eq!(key.info.product_name.as_deref(), Some("Turin"));
    assert_eq!(key.info.fmc, Some(0));
    assert_eq!(key.info.microcode, 9);
    assert_eq!(key.info.hw_id.as_ref().unwrap().len(), 8);
    assert_eq!(key.info.tcb(Product::Turin).to_string(), "fmc 0 bl 0 tee 0 snp 0 ucode 9");
    // Expired a day after its validity.
    let err = certs
        .verify_leaf(vcek, cloister_verify::snp::SigningKey::Vcek, at("2031-11-08T00:00:00Z"))
        .err()
        .unwrap();
    assert!(matches!(err, SnpError::Chain(CertError::Expired { .. })), "{err}");
}

#[test]
fn azure_genoa_vcek_chain_verifies() {
    let collateral = collateral(&["snp/trustee_azsnpvtpm_vcek-genoa.pem", GENOA_CHAIN]);
    let anchors = TrustAnchors::new();
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: at(WHEN) };
    let certs = Certificates::collect(&inputs, &[]).unwrap();
    let vcek = certs.leaves(cloister_verify::snp::SigningKey::Vcek).next().unwrap();
    let key = certs.verify_leaf(vcek, cloister_verify::snp::SigningKey::Vcek, at(WHEN)).unwrap();
    assert_eq!(key.product, Product::Genoa);
}

#[test]
fn pinned_ark_fingerprints_are_the_amd_roots() {
    for (product, file) in [
        (Product::Milan, "snp/virteesev_milan_ark.pem"),
        (Product::Genoa, "snp/virteesev_genoa_ark.pem"),
        (Product::Turin, "snp/virteesev_turin_ark.pem"),
    ] {
        let certs = Cert::parse_many(&vector(file)).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].subject_cn(), format!("ARK-{}", product.name()));
        assert_eq!(certs[0].sha256_fingerprint(), pinned_ark_sha256(product), "{file}");
    }
}

#[test]
fn vcek_extensions_parse_in_both_hwid_encodings() {
    // Legacy: the hwID extension is the raw 64 bytes; new: a DER OCTET STRING around them.
    for (file, snp, ucode) in [
        ("snp/trustee_test-vcek-invalid-legacy.der", 10, 0xa9),
        ("snp/trustee_test-vcek-invalid-new.der", 0, 0x1e),
    ] {
        let cert = Cert::from_der(&vector(file)).unwrap();
        let info = EndorsementKeyInfo::from_cert(&cert).unwrap();
        assert_eq!(info.hw_id.unwrap(), (0u8..64).collect::<Vec<_>>(), "{file}");
        assert_eq!((info.snp, info.microcode, info.tee), (snp, ucode, 0), "{file}");
        assert_eq!(info.product_name.as_deref(), Some("Milan-B0"));
        assert_eq!(info.fmc, None);
    }
    let vcek = EndorsementKeyInfo::from_cert(&Cert::from_der(&vector(VCEK)).unwrap()).unwrap();
    assert_eq!(vcek.tcb(Product::Milan).to_string(), "bl 3 tee 0 snp 8 ucode 115");
    let vlek = EndorsementKeyInfo::from_cert(&Cert::from_der(&vector(VLEK)).unwrap()).unwrap();
    assert_eq!(vlek.tcb(Product::Milan).to_string(), "bl 4 tee 0 snp 24 ucode 217");
    assert_eq!(vlek.hw_id, None);
    assert_eq!(vlek.csp_id.as_deref(), Some("CN=cc-us-east-2.amazonaws.com"));
}

#[test]
fn invalid_vcek_vectors_fail_the_chain() {
    // Same names as a Milan VCEK but not signed by the SEV-Milan ASK.
    for file in
        ["snp/trustee_test-vcek-invalid-legacy.der", "snp/trustee_test-vcek-invalid-new.der"]
    {
        let err = run(&vector(VCEK_REPORT), &[file, MILAN_CHAIN]).unwrap_err();
        assert!(matches!(err, SnpError::Chain(CertError::BadSignature { .. })), "{file}: {err}");
    }
}

// ---- one negative test per check ----

#[test]
fn flipped_byte_42_fails_the_signature() {
    let err = run(&flipped(VCEK_REPORT, 42, 0x01), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::BadSignature("VCEK")), "{err}");
    assert_eq!(err.to_string(), "snp: report signature does not verify with the VCEK");
}

#[test]
fn flipped_signature_byte_fails_the_signature() {
    let err = run(&flipped(VCEK_REPORT, 0x2A0, 0x01), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::BadSignature("VCEK")), "{err}");
    let err = run(&flipped(VLEK_REPORT, 0x2A0 + 72, 0x80), &[VLEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::BadSignature("VLEK")), "{err}");
}

#[test]
fn flipped_byte_384_is_a_tcb_mismatch_checked_before_the_signature() {
    // 0x180 is REPORTED_TCB's boot loader level: 3 becomes 2.
    let err = run(&flipped(VCEK_REPORT, 384, 0x01), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::TcbMismatch { key: "VCEK", .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "snp: VCEK TCB (bl 3 tee 0 snp 8 ucode 115) does not match reported TCB \
             (bl 2 tee 0 snp 8 ucode 115); fetch it from AMD KDS"
        ),
        "{text}"
    );
    assert!(text.contains("blSPL=2&teeSPL=0&snpSPL=8&ucodeSPL=115"), "{text}");
}

#[test]
fn flipped_chip_id_is_a_chip_mismatch() {
    let err = run(&flipped(VCEK_REPORT, 0x1A0, 0x01), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::ChipIdMismatch { .. }), "{err}");
    // Another chip's VCEK (Azure's, same TCB) for this report.
    let err = run(&vector(VCEK_REPORT), &["snp/trustee_azsnpvtpm_vcek.pem"]).unwrap_err();
    assert!(matches!(err, SnpError::ChipIdMismatch { .. }), "{err}");
}

#[test]
fn vlek_report_with_only_a_vcek_is_refused() {
    let err = run(&vector(VLEK_REPORT), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::MissingVlek(_)), "{err}");
    assert!(err.to_string().contains("a VCEK was given, but it cannot verify"), "{err}");
}

#[test]
fn missing_vcek_names_the_kds_url() {
    let err = run(&vector(VCEK_REPORT), &[MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::MissingVcek(_)), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("snp: no VCEK certificate given (pass it with --cert; fetch it"));
    assert!(
        text.contains(
            "https://kdsintf.amd.com/vcek/v1/Milan/c38427a30d4c7af9d96f7a15b97269825a64cb76a2352\
             ffd5d18115d89ad473f8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e\
             ?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
        ),
        "{text}"
    );
}

/// AMD's ASK, ARK and ASVK of Milan, Genoa and Turin are carried, pinned by fingerprint: a
/// report with only its VCEK or VLEK verifies offline, to AMD's pinned root.
#[test]
fn a_vcek_or_vlek_alone_verifies_with_amds_carried_certificates() {
    let alone = run(&vector(VCEK_REPORT), &[VCEK]).unwrap();
    let with_chain = run(&vector(VCEK_REPORT), &[VCEK, MILAN_CHAIN]).unwrap();
    assert_eq!(alone, with_chain);
    assert_eq!(vendor(&alone)["trust_anchor"], "vendor");
    let vlek = run(&vector(VLEK_REPORT), &[VLEK]).unwrap();
    assert_eq!(vendor(&vlek)["signing_key"], "vlek");

    let carried = cloister_verify::snp::certs::carried_amd_certificates();
    let names: Vec<String> = carried.iter().map(Cert::subject_cn).collect();
    for product in ["Milan", "Genoa", "Turin"] {
        for name in
            [format!("ARK-{product}"), format!("SEV-{product}"), format!("SEV-VLEK-{product}")]
        {
            assert!(names.contains(&name), "{name} is not carried: {names:?}");
        }
    }
    // Each is the certificate AMD publishes (the bundles in the shared vectors), byte for byte.
    for bundle in [MILAN_CHAIN, GENOA_CHAIN, "snp/turin_ask_ark_asvk.pem"] {
        for cert in Cert::parse_many(&vector(bundle)).unwrap() {
            assert!(carried.iter().any(|c| c.der() == cert.der()), "{}", cert.subject_cn());
        }
    }
}

/// A leaf whose issuer is neither given nor one of AMD's (here a test chip's VCEK without its
/// ASK) is refused naming the missing issuer; the carried ASK of the same name does not stand in
/// for it (names are compared in full, and signatures checked).
#[test]
fn a_leaf_whose_issuer_is_not_given_is_refused_naming_it() {
    let now = at(WHEN);
    let chip = cloister_fakehw::snp::SnpPlatform::new(now).unwrap();
    let report = chip.report(&[7; 64], 0).unwrap();
    let mut collateral = Collateral::new();
    collateral.certificates.push(chip.vcek_der());
    let anchors = TrustAnchors::new().with_test_root(TeeKind::Snp, chip.root_pem().into_bytes());
    let err = verify_with(&report, &collateral, &anchors, WHEN).unwrap_err();
    assert!(matches!(err, SnpError::MissingIssuer { role: "ASK", .. }), "{err}");
    assert!(err.to_string().starts_with("snp: no SEV-Milan certificate given"), "{err}");
}

/// The Milan chain with the ARK's last signature byte changed: it still parses, its
/// fingerprint is no longer AMD's, and its self-signature no longer verifies.
fn forged_milan_chain() -> (Collateral, Vec<u8>) {
    let certs = Cert::parse_many(&vector(MILAN_CHAIN)).unwrap();
    let mut collateral = collateral(&[VCEK]);
    let mut forged = Vec::new();
    for cert in &certs {
        let mut der = cert.der().to_vec();
        if cert.subject_cn() == "ARK-Milan" {
            *der.last_mut().unwrap() ^= 0x01;
            forged = der.clone();
        }
        collateral.certificates.push(der);
    }
    (collateral, forged)
}

#[test]
fn ark_not_pinned_is_refused() {
    let (collateral, forged) = forged_milan_chain();
    let err = verify_with(&vector(VCEK_REPORT), &collateral, &TrustAnchors::new(), WHEN);
    let err = err.unwrap_err();
    assert!(matches!(err, SnpError::UntrustedArk { .. }), "{err}");
    let fingerprint = hex::encode(Sha256::digest(&forged));
    assert!(err.to_string().contains(&fingerprint), "{err}");
    // Listed as an extra anchor it is trusted as a root, and then its signature is checked.
    let anchors = TrustAnchors::new().with_root(TeeKind::Snp, forged);
    let err = verify_with(&vector(VCEK_REPORT), &collateral, &anchors, WHEN).unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertError::BadSignature { .. })), "{err}");
}

#[test]
fn extra_anchor_is_a_trusted_root_and_bad_anchors_are_refused() {
    let ark = Cert::parse_many(&vector("snp/virteesev_genoa_ark.pem")).unwrap().remove(0);
    let anchors =
        TrustAnchors::new().with_root(TeeKind::Snp, vector("snp/virteesev_genoa_ark.pem"));
    let collateral = Collateral::new();
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: at(WHEN) };
    let certs = Certificates::collect(&inputs, &[]).unwrap();
    // Trusted for any product once listed; AMD's pins only for their own product.
    assert!(certs.is_trusted_root(Product::Milan, &ark.sha256_fingerprint()));
    let plain = Certificates::collect(
        &Inputs { collateral: &collateral, anchors: &TrustAnchors::new(), now_unix: 0 },
        &[],
    )
    .unwrap();
    assert!(plain.is_trusted_root(Product::Genoa, &ark.sha256_fingerprint()));
    assert!(!plain.is_trusted_root(Product::Milan, &ark.sha256_fingerprint()));
    // The anchor provides the ARK when the collateral lacks it.
    let vcek_and_ask = collateral_without_ark();
    let anchors =
        TrustAnchors::new().with_root(TeeKind::Snp, vector("snp/virteesev_milan_ark.pem"));
    verify_with(&vector(VCEK_REPORT), &vcek_and_ask, &anchors, WHEN).unwrap();
    // An anchor that is not a certificate is an error, not ignored.
    let anchors = TrustAnchors::new().with_root(TeeKind::Snp, b"not a certificate".to_vec());
    let err = verify_with(&vector(VCEK_REPORT), &vcek_and_ask, &anchors, WHEN).unwrap_err();
    assert!(matches!(err, SnpError::Anchor { index: 0, .. }), "{err}");
}

fn collateral_without_ark() -> Collateral {
    let mut out = collateral(&[VCEK]);
    for cert in Cert::parse_many(&vector(MILAN_CHAIN)).unwrap() {
        if cert.subject_cn() != "ARK-Milan" {
            out.certificates.push(cert.der().to_vec());
        }
    }
    out
}

#[test]
fn a_chain_of_another_product_given_beside_is_not_used() {
    // A Milan VCEK with the Genoa ASK/ARK: the Genoa certificates do not chain it; AMD's carried
    // Milan ASK/ARK do.
    let claims = run(&vector(VCEK_REPORT), &[VCEK, GENOA_CHAIN]).unwrap();
    assert_eq!(vendor(&claims)["product"], "milan");
    // Trustee's Genoa evidence with the Milan chain.
    let claims = run(&vector("snp/trustee_e2e_snp_evidence.json"), &[MILAN_CHAIN]).unwrap();
    assert_eq!(vendor(&claims)["product"], "genoa");
}

#[test]
fn cpuid_of_another_product_is_a_product_mismatch() {
    // The v3 VLEK report says family 19h model 01h (Milan); make it model 11h (Genoa).
    let mut report = vector(VLEK_REPORT);
    assert_eq!((report[0x188], report[0x189]), (0x19, 0x01));
    report[0x189] = 0x11;
    let err = run(&report, &[VLEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::ProductMismatch(_)), "{err}");
    assert!(err.to_string().contains("CPUID is Genoa's but the VLEK chains to ARK-Milan"));
}

#[test]
fn certificates_outside_their_validity_are_refused() {
    let evidence = vector(VLEK_REPORT);
    let collateral = collateral(&[VLEK, MILAN_CHAIN]);
    let anchors = TrustAnchors::new();
    let err = verify_with(&evidence, &collateral, &anchors, "2026-01-01T00:00:00Z").unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertError::Expired { .. })), "{err}");
    assert_eq!(err.to_string(), "snp: SEV-VLEK certificate expired at 2025-12-10T22:14:21Z");
    let err = verify_with(&evidence, &collateral, &anchors, "2024-01-01T00:00:00Z").unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertError::NotYetValid { .. })), "{err}");
}

#[test]
fn truncated_report_is_refused() {
    let report = vector(VCEK_REPORT);
    let err = run(&report[..1183], &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::ReportLength(1183)), "{err}");
    let err = run(&[], &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::ReportLength(0)), "{err}");
}

/// The report is 1184 bytes whatever carries it: alone, in a larger buffer (bytes after it
/// counted, never read), or inside the firmware's MSG_REPORT_RSP (status 0, report size 1184,
/// 24 reserved bytes) as some tools save the whole response.
#[test]
fn a_report_in_a_larger_buffer_or_in_the_firmware_response_gives_the_same_claims() {
    let report = vector(VCEK_REPORT);
    let clean = run(&report, &[VCEK]).unwrap();
    assert!(vendor(&clean).get("trailing_bytes").is_none());

    let mut longer = report.clone();
    longer.extend_from_slice(&[0xee; 2816]);
    let claims = run(&longer, &[VCEK]).unwrap();
    assert_eq!(vendor(&claims)["trailing_bytes"], 2816);
    assert_eq!(claims.measurement, clean.measurement);

    let mut response = 0u32.to_le_bytes().to_vec();
    response.extend_from_slice(&1184u32.to_le_bytes());
    response.extend_from_slice(&[0; 24]);
    response.extend_from_slice(&report);
    let claims = run(&response, &[VCEK]).unwrap();
    assert_eq!(vendor(&claims)["in_firmware_response"], true);
    assert_eq!(claims.report_data, clean.report_data);
    response.extend_from_slice(&[0; 100]);
    assert_eq!(vendor(&run(&response, &[VCEK]).unwrap())["trailing_bytes"], 100);

    // A failed response (non-zero status) is not a report.
    let mut failed = response.clone();
    failed[0] = 0x16;
    assert!(run(&failed, &[VCEK]).is_err());
    // A byte changed inside the report still fails its signature, wrapped or not.
    let mut flipped = longer.clone();
    flipped[0x90] ^= 1;
    assert!(matches!(run(&flipped, &[VCEK]).unwrap_err(), SnpError::BadSignature(_)));
}

#[test]
fn header_fields_are_checked() {
    // SIGNATURE_ALGO at 0x34 must be 1.
    let err = run(&flipped(VCEK_REPORT, 0x34, 0x03), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::SignatureAlgorithm(2)), "{err}");
    // VERSION 1 and 9 are unknown layouts.
    let err = run(&flipped(VCEK_REPORT, 0, 0x03), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::UnsupportedVersion(1)), "{err}");
    let err = run(&flipped(VCEK_REPORT, 0, 0x0b), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::UnsupportedVersion(9)), "{err}");
    // MASK_CHIP_KEY (0x48 bit 1): the firmware did not sign.
    let err = run(&flipped(VCEK_REPORT, 0x48, 0x02), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::Unsigned(_)), "{err}");
    // SIGNING_KEY (0x48 bits 4:2) 7 = none, 3 = reserved.
    let err = run(&flipped(VCEK_REPORT, 0x48, 0x1c), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::Unsigned(_)), "{err}");
    let err = run(&flipped(VCEK_REPORT, 0x48, 0x0c), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::UnknownSigningKey(3)), "{err}");
    // R above 384 bits.
    let err = run(&flipped(VCEK_REPORT, 0x2A0 + 50, 0x01), &[VCEK, MILAN_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::Malformed(_)), "{err}");
}

#[test]
fn json_evidence_is_rebuilt_faithfully_or_refused() {
    let text = String::from_utf8(vector("snp/trustee_e2e_snp_evidence.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    // A changed field changes the rebuilt bytes: the signature fails.
    json["attestation_report"]["guest_svn"] = 1.into();
    let err = run(json.to_string().as_bytes(), &[GENOA_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::BadSignature("VCEK")), "{err}");
    // Unknown fields and wrong lengths are refused.
    let mut extra: serde_json::Value = serde_json::from_str(&text).unwrap();
    extra["attestation_report"]["surprise"] = 1.into();
    let err = run(extra.to_string().as_bytes(), &[GENOA_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::Malformed(_)), "{err}");
    let mut short: serde_json::Value = serde_json::from_str(&text).unwrap();
    short["attestation_report"]["measurement"] = serde_json::json!([1, 2, 3]);
    let err = run(short.to_string().as_bytes(), &[GENOA_CHAIN]).unwrap_err();
    assert!(err.to_string().contains("measurement has 3 bytes, expected 48"), "{err}");
    let err = run(b"{not json", &[GENOA_CHAIN]).unwrap_err();
    assert!(matches!(err, SnpError::Malformed(_)), "{err}");
}

// ---- the parser of untrusted bytes never panics ----

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1300)) {
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Snp, &bytes);
    }

    #[test]
    fn random_reports_never_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 1184),
        version in 0u32..8,
    ) {
        let mut bytes = bytes;
        bytes[..4].copy_from_slice(&version.to_le_bytes());
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Snp, &bytes);
        let _ = run(&bytes, &[]);
    }
}

// ---- Enarx Steward's attested CSR (evidence inside a PKCS#10 extension) ----

/// One DER TLV at the start of `bytes`: (tag, whole TLV, content).
fn tlv(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = bytes[0];
    let (len, header) = match bytes[1] {
        n if n < 0x80 => (usize::from(n), 2),
        n => {
            let count = usize::from(n & 0x7f);
            let len = bytes[2..2 + count].iter().fold(0usize, |acc, &b| acc * 256 + usize::from(b));
            (len, 2 + count)
        }
    };
    (tag, &bytes[..header + len], &bytes[header..header + len])
}

/// The TLVs inside a constructed value's content.
fn children(mut content: &[u8]) -> Vec<(u8, &[u8], &[u8])> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let item = tlv(content);
        content = &content[item.1.len()..];
        out.push(item);
    }
    out
}

/// Steward's CSR taken apart: the report, the collateral (its VCEK, ARK and ASK from the Milan
/// pkipath), the CSR's SubjectPublicKeyInfo, and the CRLs (Genoa's and Milan's) it carries.
struct Steward {
    report: Vec<u8>,
    collateral: Collateral,
    spki: Vec<u8>,
    crls: Vec<Vec<u8>>,
}

fn steward() -> Steward {
    // CSR = SEQUENCE { info SEQUENCE { version, subject, spki, [0] attributes }, alg, sig }.
    // Extension 1.3.6.1.4.1.58270.1.3 holds SEQUENCE { SEQUENCE { VCEK, SEQUENCE {
    // SEQUENCE of SEQUENCE { KDS URL, CRL } } }, OCTET STRING report }.
    let csr = vector("snp/steward_milan.signed.crl.csr");
    let (_, _, csr_body) = tlv(&csr);
    let (_, _, info) = tlv(csr_body);
    let spki = children(info)[2].1.to_vec();
    let oid = [0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x83, 0xC7, 0x1E, 0x01, 0x03];
    let at_oid = csr.windows(oid.len()).position(|w| w == oid).unwrap() + oid.len();
    let (tag, _, octets) = tlv(&csr[at_oid..]);
    assert_eq!(tag, 0x04);
    let (_, _, evidence) = tlv(octets);
    let parts = children(evidence);
    let report = parts[1].2.to_vec();
    let chain = children(parts[0].2);
    let mut collateral = Collateral::new();
    collateral.certificates.push(chain[0].1.to_vec());
    for (_, cert, _) in children(tlv(&vector("snp/steward_milan.pkipath")).2) {
        collateral.certificates.push(cert.to_vec());
    }
    let crls = children(children(chain[1].2)[0].2)
        .iter()
        .map(|(_, _, entry)| children(entry)[1].1.to_vec())
        .collect();
    Steward { report, collateral, spki, crls }
}

#[test]
fn steward_csr_evidence_verifies() {
    let Steward { report, collateral, spki, .. } = steward();
    assert_eq!(report.len(), 1184);
    let claims = verify_with(&report, &collateral, &TrustAnchors::new(), WHEN).unwrap();
    assert_eq!(
        claims.measurement.to_string(),
        "ff717ae719840c93c1fca3b7db96488454c3c21b43531488eecff51cfed3febcd91da8be87a4cbcbc52a3bae770987c3"
    );
    // AUTHOR_KEY_EN is set: the signer is the author key digest.
    assert_eq!(
        claims.signer.as_ref().unwrap().to_string(),
        "7dc22240a8344fce6ba5f22ffbedabc52d4123ae0ba1c59796e521b953916b503f223b15c4429e7d8c5489ad71f1e193"
    );
    let snp = vendor(&claims);
    assert_eq!(snp["author_key_en"], true);
    assert_eq!(
        snp["id_key_digest"],
        "d71a4d1da440d515cd69fbb1314acf4221726e82768a8bf6e4a4063ed542ac78349c8145b4666a4242a91a374387b473"
    );
    assert_eq!(snp["policy"]["smt"], true);
    assert_eq!(snp["platform_info"]["smt_en"], true);
    assert_eq!(snp["crl_checked"], false);
    // The report binds the CSR's key: report_data[0..48] = SHA-384(SubjectPublicKeyInfo DER).
    assert_eq!(claims.report_data.0[..48], sha2::Sha384::digest(&spki)[..]);
    assert_golden("snp_steward_csr_milan", &claims);
}

#[test]
fn steward_crls_are_checked_when_given() {
    let Steward { report, collateral, crls, .. } = steward();
    assert_eq!(crls.len(), 2);
    let mut with_crls = collateral.clone();
    for crl in &crls {
        with_crls = with_crls.with_document(crl.clone());
    }
    // While Milan's CRL is current (2022-05-09 to 2023-05-09): checked, ASK not revoked. The
    // Genoa CRL has another issuer and is not this chain's.
    let claims = verify_with(&report, &with_crls, &TrustAnchors::new(), "2023-01-01T00:00:00Z");
    assert_eq!(vendor(&claims.unwrap())["crl_checked"], true);
    // A stale CRL is refused, not skipped.
    let err = verify_with(&report, &with_crls, &TrustAnchors::new(), WHEN).unwrap_err();
    assert!(matches!(err, SnpError::Crl(_)), "{err}");
    assert!(
        err.to_string().starts_with("snp: the ARK-Milan CRL expired at 2023-05-09T23:00:00Z"),
        "{err}"
    );
    // PEM works too; a CRL whose signature does not verify is refused.
    use base64::Engine as _;
    let milan = crls.iter().find(|c| c.windows(9).any(|w| w == b"ARK-Milan")).unwrap().clone();
    let pem = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        base64::engine::general_purpose::STANDARD.encode(&milan)
    );
    let pem_collateral = collateral.clone().with_document(pem.into_bytes());
    let claims =
        verify_with(&report, &pem_collateral, &TrustAnchors::new(), "2023-01-01T00:00:00Z");
    assert_eq!(vendor(&claims.unwrap())["crl_checked"], true);
    let mut forged = milan;
    *forged.last_mut().unwrap() ^= 0x01;
    let bad = collateral.with_document(forged);
    let err = verify_with(&report, &bad, &TrustAnchors::new(), "2023-01-01T00:00:00Z").unwrap_err();
    assert_eq!(err.to_string(), "snp: the ARK-Milan CRL's signature does not verify with the ARK");
}
