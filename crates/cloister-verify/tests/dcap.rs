//! Intel SGX and TDX DCAP quotes: real vectors with and without collateral, and one negative
//! test per check.

#![allow(clippy::unwrap_used)]

mod common;

use cloister_types::{Claims, TcbStatus, TeeKind};
use cloister_verify::dcap::{DcapError, verify_pck_chain};
use cloister_verify::x509::{Cert, CertError};
use cloister_verify::{Collateral, Inputs, TrustAnchors, VerifyError, verify_vendor_evidence};
use common::{assert_golden, at, vector};

const SGX_QUOTE: &str = "sgx/dcapqvl_sgx_quote";
const SGX_COLLATERAL: &str = "sgx/dcapqvl_sgx_quote_collateral.json";
const TDX_QUOTE: &str = "tdx/dcapqvl_tdx_quote";
const TDX_COLLATERAL: &str = "tdx/dcapqvl_tdx_quote_collateral.json";
const TDX_OUTDATED: &str = "tdx/dcapqvl_tdx_quote_outdated";
const TDX_OUTDATED_COLLATERAL: &str = "tdx/dcapqvl_tdx_quote_outdated_collateral.json";

/// Inside the SGX and TDX sample collateral windows (2025-06-19..2025-07-19).
const SAMPLE_TIME: &str = "2025-06-20T00:00:00Z";
/// Inside the outdated-quote collateral window (2026-02-18..2026-03-20).
const OUTDATED_TIME: &str = "2026-03-01T00:00:00Z";

fn run(tee: TeeKind, quote: &[u8], collateral: &Collateral, now: i64) -> Result<Claims, DcapError> {
    let anchors = TrustAnchors::new();
    let inputs = Inputs { collateral, anchors: &anchors, now_unix: now };
    match verify_vendor_evidence(tee, quote, &inputs) {
        Ok(claims) => Ok(claims),
        Err(VerifyError::Dcap(e)) => Err(e),
        Err(other) => panic!("not a DCAP error: {other}"),
    }
}

fn with_doc(path: &str) -> Collateral {
    Collateral::new().with_document(vector(path))
}

fn vendor<'a>(claims: &'a Claims, tee: &str, field: &str) -> &'a serde_json::Value {
    assert_eq!(claims.vendor.len(), 1);
    &claims.vendor[tee][field]
}

fn flip(mut bytes: Vec<u8>, offset: usize) -> Vec<u8> {
    bytes[offset] ^= 0x01;
    bytes
}

#[test]
fn sgx_quote_v3_with_collateral_bundle() {
    let claims =
        run(TeeKind::Sgx, &vector(SGX_QUOTE), &with_doc(SGX_COLLATERAL), at(SAMPLE_TIME)).unwrap();
    assert_eq!(claims.tee, TeeKind::Sgx);
    assert_eq!(claims.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(claims.advisories, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(
        claims.measurement.to_string(),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        claims.signer.as_ref().unwrap().to_string(),
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    let mut expected_rd = b"Hello, world!".to_vec();
    expected_rd.resize(64, 0);
    assert_eq!(claims.report_data.0, expected_rd);
    assert_eq!(vendor(&claims, "sgx", "fmspc"), "00a067110000");
    assert_eq!(vendor(&claims, "sgx", "quote_version"), 3);
    assert_eq!(vendor(&claims, "sgx", "tcb_status"), "ConfigurationAndSWHardeningNeeded");
    assert_golden("sgx_dcapqvl_sgx_quote", &claims);
}

#[test]
fn tdx_quote_v4_with_collateral_bundle_is_up_to_date() {
    let claims =
        run(TeeKind::Tdx, &vector(TDX_QUOTE), &with_doc(TDX_COLLATERAL), at(SAMPLE_TIME)).unwrap();
    assert_eq!(claims.tee, TeeKind::Tdx);
    assert_eq!(claims.tcb_status, TcbStatus::UpToDate);
    assert!(claims.advisories.is_empty());
    assert_eq!(
        claims.measurement.to_string(),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        claims.report_data.to_string(),
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
    assert_eq!(vendor(&claims, "tdx", "fmspc"), "b0c06f000000");
    assert_eq!(vendor(&claims, "tdx", "quote_version"), 4);
    assert_golden("tdx_dcapqvl_tdx_quote", &claims);
}

/// The second quote of a platform reuses dcap-qvl's verdict on it (the collateral is unchanged
/// and still valid), and gets exactly the same claims; the quote's own signatures are still
/// checked, so a flipped byte fails as before.
#[test]
fn the_verdict_on_a_platform_is_reused_within_its_collateral_window() {
    let collateral = with_doc(SGX_COLLATERAL);
    let first = run(TeeKind::Sgx, &vector(SGX_QUOTE), &collateral, at(SAMPLE_TIME)).unwrap();
    let hits = cloister_verify::internal::dcap_verdict_memo_hits();
    let later = at("2025-07-01T00:00:00Z");
    let second = run(TeeKind::Sgx, &vector(SGX_QUOTE), &collateral, later).unwrap();
    assert!(cloister_verify::internal::dcap_verdict_memo_hits() > hits, "the verdict was reused");
    assert_eq!(first, second);
    let err = run(TeeKind::Sgx, &flip(vector(SGX_QUOTE), 48 + 330), &collateral, later);
    assert!(err.is_err(), "a changed report_data breaks the quote signature");
    // Outside the collateral's window nothing is reused: the driver refuses it.
    assert!(
        run(TeeKind::Sgx, &vector(SGX_QUOTE), &collateral, at("2025-08-01T00:00:00Z")).is_err()
    );
}

/// What the collateral documents say is remembered under a digest of every byte of them, so a
/// changed document is read (and refused) afresh even right after the original verified.
#[test]
fn collateral_read_once_is_reused_only_for_the_very_same_documents() {
    let good = vector(SGX_COLLATERAL);
    run(TeeKind::Sgx, &vector(SGX_QUOTE), &with_doc(SGX_COLLATERAL), at(SAMPLE_TIME)).unwrap();
    let mut bundle: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let signature = bundle["tcb_info_signature"].as_str().unwrap().to_owned();
    let flipped =
        format!("{}{}", if signature.starts_with('0') { "1" } else { "0" }, &signature[1..]);
    bundle["tcb_info_signature"] = serde_json::Value::String(flipped);
    let changed = Collateral::new().with_document(serde_json::to_vec(&bundle).unwrap());
    let err = run(TeeKind::Sgx, &vector(SGX_QUOTE), &changed, at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::CollateralSignature { .. }), "{err}");
    // The same bytes with insignificant whitespace are other bytes: read again, and accepted.
    let mut spaced = good.clone();
    spaced.push(b'\n');
    run(
        TeeKind::Sgx,
        &vector(SGX_QUOTE),
        &Collateral::new().with_document(spaced),
        at(SAMPLE_TIME),
    )
    .unwrap();
    // A TDX quote never finds the SGX collateral as read for an SGX quote.
    let err = run(TeeKind::Tdx, &vector(TDX_QUOTE), &with_doc(SGX_COLLATERAL), at(SAMPLE_TIME))
        .unwrap_err();
    assert!(matches!(err, DcapError::CollateralMismatch { .. }), "{err}");
}

/// A service's cache holds collateral for many platforms and both TEEs: the driver picks the
/// bundle for this quote's TEE and FMSPC.
#[test]
fn the_matching_bundle_is_picked_from_a_cache_of_several() {
    let cache = Collateral::new()
        .with_document(vector(SGX_COLLATERAL))
        .with_document(vector(TDX_OUTDATED_COLLATERAL))
        .with_document(vector(TDX_COLLATERAL));
    let claims = run(TeeKind::Tdx, &vector(TDX_QUOTE), &cache, at(SAMPLE_TIME)).unwrap();
    assert_eq!(claims.tcb_status, TcbStatus::UpToDate);
    let claims = run(TeeKind::Sgx, &vector(SGX_QUOTE), &cache, at(SAMPLE_TIME)).unwrap();
    assert_eq!(claims.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    // Nothing for this platform: the error says what there is.
    let others = Collateral::new()
        .with_document(vector(SGX_COLLATERAL))
        .with_document(vector(TDX_OUTDATED_COLLATERAL));
    let err = run(TeeKind::Tdx, &vector(TDX_QUOTE), &others, at(SAMPLE_TIME)).unwrap_err();
    assert!(err.to_string().starts_with("tdx: "), "{err}");
}

/// The README expected an OutOfDate-class status, but the PCK certificate's CPUSVN component 7
/// is 3 while every TCB level of the collateral needs 5: no level applies, which Intel's QVL
/// reports as TCB_NOT_SUPPORTED. dcap-qvl (and so this driver) refuses it; its own test only
/// checks this fixture with a forced TCB override.
fn no_tcb_level(path: &str) {
    let err =
        run(TeeKind::Tdx, &vector(path), &with_doc(TDX_OUTDATED_COLLATERAL), at(OUTDATED_TIME))
            .unwrap_err();
    assert!(matches!(err, DcapError::TcbLevel { .. }), "{err}");
    assert!(err.to_string().starts_with("tdx: TCB level: no TCB level of the tcbInfo"), "{err}");
}

#[test]
fn tdx_quote_v5_td15_with_collateral_has_no_matching_tcb_level() {
    no_tcb_level(TDX_OUTDATED);
    // Signatures and chain alone verify; the golden claims are those.
    let claims =
        run(TeeKind::Tdx, &vector(TDX_OUTDATED), &Collateral::new(), at(OUTDATED_TIME)).unwrap();
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert_eq!(
        claims.measurement.to_string(),
        "273828c46252fcbdd8ad2dd907130222b03466d52a2911d70c1a5950895d6bd1ae451d382d5a9b1b4c0ed0e5ae9a3dbd"
    );
    let mut rd =
        hex::decode("d2142b643598eb5fae2bc8529dd79a558b29f868ccbb6531cb28dab9dce47728").unwrap();
    rd.resize(64, 0);
    assert_eq!(claims.report_data.0, rd);
    assert_eq!(vendor(&claims, "tdx", "quote_version"), 5);
    assert_eq!(vendor(&claims, "tdx", "body_type"), 3);
    assert_eq!(vendor(&claims, "tdx", "fmspc"), "90c06f000000");
    assert_eq!(vendor(&claims, "tdx", "tee_tcb_svn"), "07010300000000000000000000000000");
    assert_eq!(vendor(&claims, "tdx", "tee_tcb_svn2"), "0d010300000000000000000000000000");
    assert!(vendor(&claims, "tdx", "mr_servicetd").is_string());
    assert_golden("tdx_dcapqvl_tdx_quote_outdated", &claims);
}

#[test]
fn trustee_quote_5_with_the_outdated_quote_collateral_has_no_matching_tcb_level() {
    // Same FMSPC as the outdated quote, and also a CPUSVN below every level.
    no_tcb_level("tdx/trustee_tdx_quote_5.dat");
    let claims = run(
        TeeKind::Tdx,
        &vector("tdx/trustee_tdx_quote_5.dat"),
        &Collateral::new(),
        at(OUTDATED_TIME),
    )
    .unwrap();
    assert_eq!(
        claims.measurement.to_string(),
        "dfba221b48a22af8511542ee796603f37382800840dcd978703909bf8e64d4c8a1e9de86e7c9638bfcba422f3886400a"
    );
    assert_eq!(vendor(&claims, "tdx", "fmspc"), "90c06f000000");
    assert_eq!(vendor(&claims, "tdx", "quote_version"), 5);
    assert_golden("tdx_trustee_tdx_quote_5", &claims);
}

/// Signatures, QE report binding and PCK chain only: no TCB collateral for these platforms.
fn no_collateral(path: &str, time: &str, mr_td: &str, golden: &str) {
    let claims = run(TeeKind::Tdx, &vector(path), &Collateral::new(), at(time)).unwrap();
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert!(claims.advisories.is_empty());
    assert_eq!(claims.measurement.to_string(), mr_td);
    assert_eq!(vendor(&claims, "tdx", "collateral"), false);
    assert_golden(golden, &claims);
}

#[test]
fn trustee_quote_4_signatures_and_pck_chain_without_collateral() {
    no_collateral(
        "tdx/trustee_tdx_quote_4.dat",
        "2025-01-01T00:00:00Z",
        "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031",
        "tdx_trustee_tdx_quote_4",
    );
}

#[test]
fn trustee_quote_6_signatures_and_pck_chain_without_collateral() {
    no_collateral(
        "tdx/trustee_tdx_quote_6.dat",
        "2025-11-01T00:00:00Z",
        "21e8dead92d6c69d7cbba79816686c03a48485c7df0c11f6f04792d5e1d378f6b8c46615ba6946adccac6becffbb1e88",
        "tdx_trustee_tdx_quote_6",
    );
}

#[test]
fn azure_td_quote_signatures_and_pck_chain_without_collateral() {
    // MRTD parsed independently (offset 48 + 136 of the quote).
    no_collateral(
        "tdx/trustee_aztdxvtpm_td-quote.bin",
        "2025-01-01T00:00:00Z",
        "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b",
        "tdx_trustee_aztdxvtpm_td-quote",
    );
    let claims = run(
        TeeKind::Tdx,
        &vector("tdx/trustee_aztdxvtpm_td-quote.bin"),
        &Collateral::new(),
        at("2025-01-01T00:00:00Z"),
    )
    .unwrap();
    let mut rd =
        hex::decode("9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839").unwrap();
    rd.resize(64, 0);
    assert_eq!(claims.report_data.0, rd);
    assert_eq!(vendor(&claims, "tdx", "fmspc"), "00806f050000");
}

#[test]
fn sgx_quote_without_collateral_is_unknown() {
    let claims =
        run(TeeKind::Sgx, &vector(SGX_QUOTE), &Collateral::new(), at(SAMPLE_TIME)).unwrap();
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert!(claims.advisories.is_empty());
}

/// Splits the sample bundle into the raw Intel PCS artefacts it came from.
struct Pcs {
    tcb: Vec<u8>,
    qe: Vec<u8>,
    pck_crl: Vec<u8>,
    root_crl: Vec<u8>,
    chain: Vec<u8>,
}

fn pcs_artefacts(bundle_path: &str) -> Pcs {
    let bundle: serde_json::Value = serde_json::from_slice(&vector(bundle_path)).unwrap();
    let s = |k: &str| bundle[k].as_str().unwrap().to_owned();
    let tcb =
        format!("{{\"tcbInfo\":{},\"signature\":\"{}\"}}", s("tcb_info"), s("tcb_info_signature"));
    let qe = format!(
        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
        s("qe_identity"),
        s("qe_identity_signature")
    );
    let pck_crl = hex::decode(s("pck_crl")).unwrap();
    // The root CA CRL as PEM, to exercise that form.
    let root_crl_der = hex::decode(s("root_ca_crl")).unwrap();
    use base64::Engine as _;
    let root_crl = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        base64::engine::general_purpose::STANDARD.encode(&root_crl_der)
    );
    Pcs {
        tcb: tcb.into_bytes(),
        qe: qe.into_bytes(),
        pck_crl,
        root_crl: root_crl.into_bytes(),
        chain: s("tcb_info_issuer_chain").into_bytes(),
    }
}

#[test]
fn raw_pcs_artefacts_are_recognised_and_assembled() {
    let Pcs { tcb, qe, pck_crl, root_crl, chain } = pcs_artefacts(TDX_COLLATERAL);
    let collateral = Collateral::new()
        .with_document(root_crl)
        .with_document(tcb)
        .with_document(pck_crl)
        .with_document(qe)
        .with_certificates(&chain);
    let claims = run(TeeKind::Tdx, &vector(TDX_QUOTE), &collateral, at(SAMPLE_TIME)).unwrap();
    let bundle =
        run(TeeKind::Tdx, &vector(TDX_QUOTE), &with_doc(TDX_COLLATERAL), at(SAMPLE_TIME)).unwrap();
    assert_eq!(claims, bundle);

    let Pcs { tcb, qe, pck_crl, root_crl, chain } = pcs_artefacts(SGX_COLLATERAL);
    // The issuer chain as a PEM document this time.
    let collateral = Collateral::new()
        .with_document(tcb)
        .with_document(qe)
        .with_document(pck_crl)
        .with_document(root_crl)
        .with_document(chain);
    let claims = run(TeeKind::Sgx, &vector(SGX_QUOTE), &collateral, at(SAMPLE_TIME)).unwrap();
    assert_eq!(claims.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
}

#[test]
fn missing_collateral_pieces_are_named() {
    let Pcs { tcb, qe, pck_crl: _, root_crl, chain } = pcs_artefacts(TDX_COLLATERAL);
    let collateral = Collateral::new()
        .with_document(tcb)
        .with_document(qe)
        .with_document(root_crl)
        .with_certificates(&chain);
    let err = run(TeeKind::Tdx, &vector(TDX_QUOTE), &collateral, at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::CollateralMissing { .. }), "{err}");
    assert!(err.to_string().starts_with("tdx: collateral has a tcbInfo"), "{err}");
    assert!(err.to_string().contains("but no PCK CRL"), "{err}");

    // Trustee's quote 6 with its tcbInfo and QE identity, but no CRLs and no signing chain.
    let collateral = with_doc("tdx/trustee_tcbInfo.json")
        .with_document(vector("tdx/trustee_enclaveIdentity.json"));
    let err = run(
        TeeKind::Tdx,
        &vector("tdx/trustee_tdx_quote_6.dat"),
        &collateral,
        at("2025-11-01T00:00:00Z"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DcapError::CollateralMissing { .. }), "{text}");
    assert!(
        text.starts_with(
            "tdx: collateral has a tcbInfo, a QE identity but no PCK CRL, no root CA CRL"
        ),
        "{text}"
    );
}

#[test]
fn unknown_collateral_document_is_refused() {
    let collateral = Collateral::new().with_document(b"{\"hello\": 1}".to_vec());
    let err = run(TeeKind::Tdx, &vector(TDX_QUOTE), &collateral, at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::Collateral { .. }), "{err}");
    assert!(err.to_string().starts_with("tdx: collateral document 0:"), "{err}");
}

#[test]
fn flipped_report_body_byte_fails_the_quote_signature() {
    // MRENCLAVE at 48 + 64.
    let quote = flip(vector(SGX_QUOTE), 48 + 64);
    let err = run(TeeKind::Sgx, &quote, &Collateral::new(), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::QuoteSignature { .. }), "{err}");
    assert_eq!(err.to_string(), "sgx: quote signature does not verify with the attestation key");
    // MRTD of a TD quote, with collateral too.
    let quote = flip(vector(TDX_QUOTE), 48 + 136);
    let err = run(TeeKind::Tdx, &quote, &with_doc(TDX_COLLATERAL), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::QuoteSignature { .. }), "{err}");
}

#[test]
fn flipped_quote_signature_byte_fails() {
    // The signature starts after the body and the auth data length.
    let quote = flip(vector(TDX_QUOTE), 48 + 584 + 4 + 10);
    let err = run(TeeKind::Tdx, &quote, &Collateral::new(), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::QuoteSignature { .. }), "{err}");
}

#[test]
fn flipped_qe_report_byte_fails_the_qe_report_signature() {
    // v3: signature 64, attestation key 64, then the QE report.
    let quote = flip(vector(SGX_QUOTE), 48 + 384 + 4 + 128 + 100);
    let err = run(TeeKind::Sgx, &quote, &Collateral::new(), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::QeReportSignature { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "sgx: QE report signature does not verify with the PCK certificate"
    );
    // v4: then the type-6 certification data header (6 bytes).
    let quote = flip(vector(TDX_QUOTE), 48 + 584 + 4 + 128 + 6 + 100);
    let err = run(TeeKind::Tdx, &quote, &Collateral::new(), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::QeReportSignature { .. }), "{err}");
}

#[test]
fn changed_attestation_key_breaks_the_qe_report_binding() {
    // A different attestation key, with the quote re-signed by it, is still refused because the
    // QE report binds the original key. Here: flip the QE authentication data (signed by nobody
    // but hashed into the QE report data).
    let quote = vector(TDX_QUOTE);
    // v4: sig 64, key 64, type 2, size 4, QE report 384, QE sig 64, auth size 2, auth data.
    let auth = 48 + 584 + 4 + 128 + 6 + 384 + 64 + 2;
    let err =
        run(TeeKind::Tdx, &flip(quote, auth), &Collateral::new(), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::QeReportBinding { .. }), "{err}");
    assert!(err.to_string().starts_with("tdx: QE report data does not bind the attestation key"));
}

#[test]
fn time_outside_the_collateral_window_fails() {
    let after = run(
        TeeKind::Sgx,
        &vector(SGX_QUOTE),
        &with_doc(SGX_COLLATERAL),
        at("2025-08-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(matches!(after, DcapError::CollateralExpired { .. }), "{after}");
    assert!(after.to_string().starts_with("sgx: collateral: "), "{after}");
    assert!(after.to_string().contains("expired at 2025-07-"), "{after}");

    let before = run(
        TeeKind::Tdx,
        &vector(TDX_QUOTE),
        &with_doc(TDX_COLLATERAL),
        at("2025-06-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(matches!(before, DcapError::CollateralExpired { .. }), "{before}");
    assert!(before.to_string().contains("is not valid before its issue date 2025-"), "{before}");
}

#[test]
fn time_after_pck_certificate_expiry_names_it() {
    let err = run(TeeKind::Sgx, &vector(SGX_QUOTE), &Collateral::new(), at("2031-01-01T00:00:00Z"))
        .unwrap_err();
    assert!(matches!(err, DcapError::PckChain { source: CertError::Expired { .. }, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "sgx: PCK certificate chain: Intel SGX PCK Certificate expired at 2030-09-20T21:53:43Z"
    );
}

#[test]
fn quote_of_the_other_tee_is_refused() {
    let err =
        run(TeeKind::Tdx, &vector(SGX_QUOTE), &Collateral::new(), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::WrongTee { .. }), "{err}");
    assert_eq!(err.to_string(), "tdx: evidence is an SGX quote, not a TDX quote");
    let err =
        run(TeeKind::Sgx, &vector(TDX_QUOTE), &Collateral::new(), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::WrongTee { .. }), "{err}");
    assert_eq!(err.to_string(), "sgx: evidence is a TDX quote, not an SGX quote");
}

#[test]
fn truncated_quote_is_malformed() {
    let quote = vector(TDX_QUOTE);
    for len in [0, 10, 47, 48, 300, 700, 1500, 4000] {
        let err =
            run(TeeKind::Tdx, &quote[..len], &Collateral::new(), at(SAMPLE_TIME)).unwrap_err();
        assert!(matches!(err, DcapError::Malformed { .. }), "{len}: {err}");
        assert!(err.to_string().starts_with("tdx: quote is malformed: "), "{err}");
    }
}

/// Quote buffers larger than the quote (Intel's quote generation library hands out a buffer of
/// the maximum size; test suites append framing): the quote's own lengths end it, what follows
/// is counted and never read, and the appraisal (dcap-qvl included) sees the quote alone.
#[test]
fn bytes_after_the_authentication_data_are_counted_and_never_read() {
    for (tee, path, collateral) in
        [(TeeKind::Tdx, TDX_QUOTE, TDX_COLLATERAL), (TeeKind::Sgx, SGX_QUOTE, SGX_COLLATERAL)]
    {
        let clean = run(tee, &vector(path), &with_doc(collateral), at(SAMPLE_TIME)).unwrap();
        // dcap-qvl's TDX sample is itself a padded buffer (zeros after the quote).
        let padding = vendor(&clean, tee.as_str(), "trailing_bytes").as_u64().unwrap_or(0);
        assert_eq!(padding > 0, tee == TeeKind::Tdx);
        for tail in
            [vec![0u8; 1], vec![0xff; 1], b"garbage after the quote".to_vec(), vec![7; 9000]]
        {
            let mut padded = vector(path);
            padded.extend_from_slice(&tail);
            let claims = run(tee, &padded, &with_doc(collateral), at(SAMPLE_TIME)).unwrap();
            let trailing = padding + tail.len() as u64;
            assert_eq!(vendor(&claims, tee.as_str(), "trailing_bytes"), trailing);
            assert_eq!(claims.measurement, clean.measurement);
            assert_eq!(claims.tcb_status, clean.tcb_status);
        }
    }
    // The tail is outside the signature, so nothing in it can change a claim; a flipped byte
    // inside the quote still fails.
    let mut flipped = flip(vector(TDX_QUOTE), 200);
    flipped.extend_from_slice(&[0; 16]);
    let err = run(TeeKind::Tdx, &flipped, &with_doc(TDX_COLLATERAL), at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::QuoteSignature { .. }), "{err}");
}

#[test]
fn collateral_for_another_fmspc_is_refused() {
    // Quote 4 (FMSPC 50806F000000) with the collateral of FMSPC B0C06F000000.
    let err = run(
        TeeKind::Tdx,
        &vector("tdx/trustee_tdx_quote_4.dat"),
        &with_doc(TDX_COLLATERAL),
        at(SAMPLE_TIME),
    )
    .unwrap_err();
    assert!(matches!(err, DcapError::CollateralMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "tdx: collateral tcbInfo is for FMSPC b0c06f000000, the PCK certificate's is 50806f000000"
    );
    // SGX collateral for a TDX quote.
    let err = run(TeeKind::Tdx, &vector(TDX_QUOTE), &with_doc(SGX_COLLATERAL), at(SAMPLE_TIME))
        .unwrap_err();
    assert!(matches!(err, DcapError::CollateralMismatch { .. }), "{err}");
}

#[test]
fn crl_of_another_pck_ca_is_refused() {
    // The TDX quote's PCK CA is the Platform CA; the SGX sample's PCK CRL is the Processor CA's.
    let mut bundle: serde_json::Value = serde_json::from_slice(&vector(TDX_COLLATERAL)).unwrap();
    let sgx: serde_json::Value = serde_json::from_slice(&vector(SGX_COLLATERAL)).unwrap();
    bundle["pck_crl"] = sgx["pck_crl"].clone();
    let collateral = Collateral::new().with_document(serde_json::to_vec(&bundle).unwrap());
    let err = run(TeeKind::Tdx, &vector(TDX_QUOTE), &collateral, at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::CollateralMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("tdx: collateral PCK CRL is issued by "), "{text}");
    assert!(text.contains("CN=Intel SGX PCK Processor CA, not by"), "{text}");
    assert!(text.ends_with("not by Intel SGX PCK Platform CA of the quote's PCK chain"), "{text}");

    // As separate documents, a CRL of another CA is not taken for the PCK CRL.
    let Pcs { tcb, qe, root_crl, chain, .. } = pcs_artefacts(TDX_COLLATERAL);
    let collateral = Collateral::new()
        .with_document(tcb)
        .with_document(qe)
        .with_document(root_crl)
        .with_document(hex::decode(sgx["pck_crl"].as_str().unwrap()).unwrap())
        .with_certificates(&chain);
    let err = run(TeeKind::Tdx, &vector(TDX_QUOTE), &collateral, at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::CollateralMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("but no PCK CRL (for PCK CA \"Intel SGX PCK Platform CA\")"),
        "{err}"
    );
}

#[test]
fn tampered_tcb_info_fails_its_signature() {
    let mut bundle: serde_json::Value = serde_json::from_slice(&vector(TDX_COLLATERAL)).unwrap();
    let tcb = bundle["tcb_info"]
        .as_str()
        .unwrap()
        .replace("\"tcbEvaluationDataNumber\":17", "\"tcbEvaluationDataNumber\":18");
    bundle["tcb_info"] = tcb.into();
    let collateral = Collateral::new().with_document(serde_json::to_vec(&bundle).unwrap());
    let err = run(TeeKind::Tdx, &vector(TDX_QUOTE), &collateral, at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, DcapError::CollateralSignature { .. }), "{err}");
}

fn quote_chain(path: &str) -> Vec<Cert> {
    let quote = vector(path);
    let start = quote.windows(11).position(|w| w == b"-----BEGIN ").unwrap();
    let end = quote.iter().rposition(|&b| b != 0).unwrap() + 1;
    Cert::parse_many(&quote[start..end]).unwrap()
}

#[test]
fn pck_chain_pinning() {
    let chain = quote_chain(TDX_QUOTE);
    assert_eq!(chain.len(), 3);
    verify_pck_chain(&chain, &[], at(SAMPLE_TIME)).unwrap();
    // A chain that stops at the PCK CA: its top is not the pinned root.
    let err = verify_pck_chain(&chain[..2], &[], at(SAMPLE_TIME)).unwrap_err();
    assert!(matches!(err, CertError::UntrustedRoot { .. }), "{err}");
    // Unless the instance adds it as an anchor (test roots).
    let err = verify_pck_chain(&chain[..2], &[chain[1].der().to_vec()], at(SAMPLE_TIME));
    // The PCK CA is not self-signed, so it still fails, but on the signature, not the pin.
    assert!(
        matches!(err, Err(CertError::IssuerMismatch { .. } | CertError::BadSignature { .. })),
        "{err:?}"
    );
}

#[test]
fn parser_never_panics_on_prefixes_and_flips() {
    let quote = vector(TDX_OUTDATED);
    for len in (0..quote.len()).step_by(97) {
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Tdx, &quote[..len]);
    }
    for offset in (0..quote.len()).step_by(131) {
        let mut q = quote.clone();
        q[offset] = 0xff;
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Tdx, &q);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any byte of a real quote overwritten with any value: parsing never panics, and a quote
    /// that still verifies (the byte was unsigned padding) yields exactly the original claims.
    #[test]
    fn mutated_quotes_never_panic(offset in 0usize..5006, value in proptest::prelude::any::<u8>()) {
        let original = vector(TDX_OUTDATED);
        let expected = run(TeeKind::Tdx, &original, &Collateral::new(), at(OUTDATED_TIME)).unwrap();
        let mut quote = original;
        let offset = offset % quote.len();
        quote[offset] = value;
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Tdx, &quote);
        if let Ok(claims) = run(TeeKind::Tdx, &quote, &Collateral::new(), at(OUTDATED_TIME)) {
            proptest::prop_assert_eq!(claims, expected);
        }
    }

    /// Random collateral documents are refused, never a panic.
    #[test]
    fn random_collateral_documents_are_refused(doc in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let collateral = Collateral::new().with_document(doc);
        let _ = run(TeeKind::Tdx, &vector(TDX_QUOTE), &collateral, at(SAMPLE_TIME));
    }

    /// JSON-shaped PCS responses with arbitrary members are refused, never a panic.
    #[test]
    fn random_pcs_like_json_is_refused(inner in "[ -~]{0,200}", sig in "[0-9a-f]{0,130}") {
        let doc = format!(r#"{{"tcbInfo":{inner},"signature":"{sig}"}}"#);
        let collateral = Collateral::new().with_document(doc.into_bytes());
        let result = run(TeeKind::Tdx, &vector(TDX_QUOTE), &collateral, at(SAMPLE_TIME));
        proptest::prop_assert!(result.is_err());
    }
}

/// One DER TLV: tag, content, rest (test-side walker for the Steward CSRs).
fn tlv(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
    let (len, header) = match bytes[1] {
        n if n < 0x80 => (usize::from(n), 2),
        n => {
            let count = usize::from(n & 0x7f);
            let len =
                bytes[2..2 + count].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, 2 + count)
        }
    };
    (bytes[0], &bytes[header..header + len], &bytes[header + len..])
}

/// The Enarx Steward "attested CSR": a PKCS#10 request whose extension 1.3.6.1.4.1.58270.1.2
/// holds `SEQUENCE { quote, SEQUENCE { SEQUENCE OF (url, CRL) }, SEQUENCE { certificates,
/// tcbInfo response } }`.
struct Steward {
    spki: Vec<u8>,
    quote: Vec<u8>,
    documents: Vec<Vec<u8>>,
}

fn steward(path: &str) -> Steward {
    let csr = vector(path);
    let (_, request, _) = tlv(&csr);
    let (_, info, _) = tlv(request);
    let (_, _version, rest) = tlv(info);
    let (_, _subject, rest) = tlv(rest);
    let (_, _, after_spki) = tlv(rest);
    let spki = rest[..rest.len() - after_spki.len()].to_vec();
    // 06 0a 2b 06 01 04 01 83 c7 1e 01 02 = OID 1.3.6.1.4.1.58270.1.2, then the OCTET STRING.
    let oid = [0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xc7, 0x1e, 0x01, 0x02];
    let at = csr.windows(oid.len()).position(|w| w == oid).unwrap() + oid.len();
    let (tag, ext_value, _) = tlv(&csr[at..]);
    assert_eq!(tag, 0x04);
    let (_, evidence, _) = tlv(ext_value);
    let (tag, quote, rest) = tlv(evidence);
    assert_eq!(tag, 0x04);
    // SEQUENCE { SEQUENCE OF SEQUENCE { url, CRL } }
    let (_, crl_outer, rest) = tlv(rest);
    let (_, mut crls, _) = tlv(crl_outer);
    let mut documents = Vec::new();
    while !crls.is_empty() {
        let (_, entry, next) = tlv(crls);
        let (_, _url, crl) = tlv(entry);
        documents.push(crl.to_vec());
        crls = next;
    }
    // SEQUENCE { SEQUENCE OF Certificate (TCB signing chain), tcbInfo response }
    let (_, tcb, _) = tlv(rest);
    let (_, mut certs, rest) = tlv(tcb);
    while !certs.is_empty() {
        let (_, _, next) = tlv(certs);
        documents.push(certs[..certs.len() - next.len()].to_vec());
        certs = next;
    }
    let (_, tcb_info, _) = tlv(rest);
    documents.push(tcb_info.to_vec());
    Steward { spki, quote: quote.to_vec(), documents }
}

/// Inside the CSRs' collateral windows (PCK CRL 2023-01-18..02-17, tcbInfo 2023-01-25..02-24).
const STEWARD_TIME: &str = "2023-02-01T00:00:00Z";

#[test]
fn steward_csrs_verify_signatures_and_pck_chain_but_lack_a_qe_identity() {
    use sha2::Digest as _;
    for path in [
        "sgx/steward_icelake.signed.tcb.crl.single.i5.csr",
        "sgx/steward_icelake.signed.tcb.crl.multi.xeon.csr",
    ] {
        let s = steward(path);
        let claims = run(TeeKind::Sgx, &s.quote, &Collateral::new(), at(STEWARD_TIME)).unwrap();
        assert_eq!(claims.tcb_status, TcbStatus::Unknown, "{path}");
        assert_eq!(
            claims.signer.as_ref().unwrap().to_string(),
            "7a49a07df0f8e90a6e1d9a63e3c696d9c844f0e3f8739b21daa640f99facc48a",
            "{path}"
        );
        // ATTRIBUTES flags 0x05 (INIT, MODE64BIT): Steward's policy allows Debug, this enclave
        // does not use it.
        assert!(!claims.debug, "{path}");
        // The report data binds the CSR's key: SHA-256 of its SubjectPublicKeyInfo.
        assert_eq!(&claims.report_data.0[..32], &sha2::Sha256::digest(&s.spki)[..], "{path}");
        // MRENCLAVE is the enclave hash listed in Steward's configuration.
        assert_eq!(
            claims.measurement.to_string(),
            "4046ea255f0455131a024e1265ac1ebd131fdbd1240f1712a00381f6f04e8c15",
            "{path}"
        );

        // Its CRLs, TCB signing chain and tcbInfo are recognised, but there is no QE identity.
        let mut collateral = Collateral::new();
        for doc in s.documents {
            collateral = collateral.with_document(doc);
        }
        let err = run(TeeKind::Sgx, &s.quote, &collateral, at(STEWARD_TIME)).unwrap_err();
        assert!(matches!(err, DcapError::CollateralMissing { .. }), "{path}: {err}");
        assert!(
            err.to_string().starts_with(
                "sgx: collateral has a tcbInfo, a PCK CRL, a root CA CRL, the TCB Signing \
                 certificate but no QE identity"
            ),
            "{path}: {err}"
        );
    }
}
