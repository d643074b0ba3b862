//! Azure confidential VM evidence (HCL report + vTPM quote) through the SNP driver: trustee's
//! Milan v1/v2 and Genoa vectors verify, with one negative test per Azure check.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use cloister_types::{Claims, TcbStatus, TeeKind};
use cloister_verify::dcap::DcapError;
use cloister_verify::snp::SnpError;
use cloister_verify::snp::azure::AzureError;
use cloister_verify::{Collateral, Inputs, TrustAnchors, VerifyError, verify_vendor_evidence};
use common::{assert_golden, at, vector};
use serde_json::Value;

/// Inside the VCEKs' validity (the Genoa VCEK starts 2025-05-27; the Milan one runs 2023–2030).
const WHEN: &str = "2025-06-01T00:00:00Z";
const MILAN_CHAIN: &str = "snp/milan_ask_ark_asvk.pem";
const GENOA_CHAIN: &str = "snp/genoa_ask_ark_asvk.pem";
const V1: &str = "snp/trustee_azsnpvtpm_evidence-v1.json";
const V2: &str = "snp/trustee_azsnpvtpm_evidence-v2.json";
const GENOA: &str = "snp/trustee_azsnpvtpm_evidence-genoa.json";
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn verify_snp(evidence: &[u8], chain: &str, when: &str) -> Result<Claims, SnpError> {
    let collateral = Collateral::new().with_certificates(&vector(chain));
    let anchors = TrustAnchors::new();
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: at(when) };
    match verify_vendor_evidence(TeeKind::Snp, evidence, &inputs) {
        Ok(claims) => Ok(claims),
        Err(VerifyError::Snp(e)) => Err(e),
        Err(other) => panic!("not an snp error: {other}"),
    }
}

fn json(file: &str) -> Value {
    serde_json::from_slice(&vector(file)).unwrap()
}

fn bytes_of(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// Decodes the JSON's base64url (padded) fields.
fn b64(text: &str) -> Vec<u8> {
    B64URL.decode(text.trim_end_matches('=')).unwrap()
}

fn hcl_of(v: &Value) -> Vec<u8> {
    b64(v["hcl_report"].as_str().unwrap())
}

/// The claims of the SNP report sliced out of the HCL report, verified on its own.
fn sliced_claims(hcl: &[u8], chain: &str, vcek: &[u8]) -> Claims {
    let collateral = Collateral::new().with_certificates(&vector(chain)).with_certificates(vcek);
    let anchors = TrustAnchors::new();
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: at(WHEN) };
    verify_vendor_evidence(TeeKind::Snp, &hcl[0x20..0x20 + 1184], &inputs).unwrap()
}

fn azure(claims: &Claims) -> &Value {
    assert_eq!(claims.vendor.len(), 1);
    &claims.vendor["snp"]["azure"]
}

// ---- vectors that verify ----

#[test]
fn snp_azure_v1_verifies() {
    let evidence = json(V1);
    let claims = verify_snp(&bytes_of(evidence.clone()), MILAN_CHAIN, WHEN).unwrap();
    assert_eq!(claims.report_data.0, b"challenge");
    assert_eq!(hex::encode(&claims.report_data.0), "6368616c6c656e6765");
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    let az = azure(&claims);
    assert_eq!(
        az["tpm"]["pcrs"]["0"],
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    );
    assert_eq!(az["tpm"]["extra_data"], "6368616c6c656e6765");
    assert_eq!(az["ak_kid"], "HCLAkPub");
    assert_eq!(az["hcl_report_type"], 2);
    assert_eq!(az["tpm"]["pcrs"].as_object().unwrap().len(), 24);
    // The SNP part: the same claims as the sliced report verified alone, but report_data.
    let vcek = b64(evidence["vcek"].as_str().unwrap());
    let hcl = hcl_of(&evidence);
    let sliced = sliced_claims(&hcl, MILAN_CHAIN, &vcek);
    assert_eq!(claims.measurement, sliced.measurement);
    assert_eq!(claims.platform_id, sliced.platform_id);
    assert_eq!(hex::encode(&sliced.report_data.0[..32]), az["variable_data_sha256"]);
    assert_eq!(claims.vendor["snp"]["product"], "milan");
    assert_golden("snp_azure_vtpm_v1", &claims);
}

#[test]
fn snp_azure_v2_verifies() {
    let claims = verify_snp(&vector(V2), MILAN_CHAIN, WHEN).unwrap();
    assert_eq!(
        hex::encode(&claims.report_data.0),
        "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef"
    );
    // trustee's negative: a caller expecting report_data 123abc must be refused.
    assert_ne!(claims.report_data.0, hex::decode("123abc").unwrap());
    assert_eq!(
        azure(&claims)["tpm"]["pcrs"]["0"],
        "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7"
    );
    assert_golden("snp_azure_vtpm_v2", &claims);
}

#[test]
fn snp_azure_genoa_byte_array_form_verifies() {
    let evidence = json(GENOA);
    let claims = verify_snp(&vector(GENOA), GENOA_CHAIN, WHEN).unwrap();
    assert_eq!(
        hex::encode(&claims.report_data.0),
        "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f"
    );
    assert_eq!(
        azure(&claims)["tpm"]["pcrs"]["0"],
        "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338"
    );
    assert_eq!(claims.vendor["snp"]["product"], "genoa");
    let hcl: Vec<u8> =
        evidence["report"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
    let sliced = sliced_claims(&hcl, GENOA_CHAIN, evidence["vcek"].as_str().unwrap().as_bytes());
    assert_eq!(claims.measurement, sliced.measurement);
    assert_golden("snp_azure_vtpm_genoa", &claims);
}

// ---- negatives, one per check ----

fn v1_with(edit: impl FnOnce(&mut Value)) -> Result<Claims, SnpError> {
    let mut evidence = json(V1);
    edit(&mut evidence);
    verify_snp(&bytes_of(evidence), MILAN_CHAIN, WHEN)
}

fn flip_hex(text: &str, byte: usize) -> String {
    let mut bytes = hex::decode(text).unwrap();
    bytes[byte] ^= 0x01;
    hex::encode(bytes)
}

#[test]
fn flipped_pcr0_fails_the_pcr_digest() {
    let err = v1_with(|e| {
        let pcr0 = e["tpm_quote"]["pcrs"][0].as_str().unwrap().to_owned();
        e["tpm_quote"]["pcrs"][0] = flip_hex(&pcr0, 0).into();
    })
    .unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::PcrDigest { .. })), "{err}");
    assert!(err.to_string().starts_with("snp: azure: the PCR values given (PCRs 0,1,"), "{err}");
}

#[test]
fn flipped_tpm_signature_byte_fails() {
    let err = v1_with(|e| {
        let sig = e["tpm_quote"]["signature"].as_str().unwrap().to_owned();
        e["tpm_quote"]["signature"] = flip_hex(&sig, 100).into();
    })
    .unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::BadSignature)), "{err}");
    assert_eq!(
        err.to_string(),
        "snp: azure: TPM quote signature does not verify with the HCL attestation key"
    );
}

#[test]
fn flipped_quote_message_byte_fails_the_signature() {
    // Byte 0x40 lies in clockInfo: the message still parses, the signature no longer matches.
    let err = v1_with(|e| {
        let msg = e["tpm_quote"]["message"].as_str().unwrap().to_owned();
        e["tpm_quote"]["message"] = flip_hex(&msg, 0x40).into();
    })
    .unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::BadSignature)), "{err}");
}

#[test]
fn altered_variable_data_is_not_bound() {
    let err = v1_with(|e| {
        let mut hcl = hcl_of(e);
        // A byte inside the HCLEkPub modulus: the JSON and the AK stay valid.
        let var = 0x20 + 1184 + 20;
        let at_ek = var + hcl[var..].windows(8).position(|w| w == b"HCLEkPub").unwrap() + 60;
        hcl[at_ek] = if hcl[at_ek] == b'A' { b'B' } else { b'A' };
        e["hcl_report"] = B64URL.encode(hcl).into();
    })
    .unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::Binding { .. })), "{err}");
    assert!(
        err.to_string().starts_with("snp: azure: HCL variable data is not bound to the SNP report"),
        "{err}"
    );
}

#[test]
fn tampered_snp_report_in_hcl_fails_the_snp_signature() {
    let err = v1_with(|e| {
        let mut hcl = hcl_of(e);
        hcl[0x20 + 0x90] ^= 1; // the measurement
        e["hcl_report"] = B64URL.encode(hcl).into();
    })
    .unwrap_err();
    assert!(matches!(err, SnpError::BadSignature("VCEK")), "{err}");
}

#[test]
fn wrong_vcek_fails() {
    // Another Milan chip's VCEK (trustee's test VCEK) instead of the one for this report.
    let other =
        base64::engine::general_purpose::STANDARD.encode(vector("snp/trustee_test-vcek.der"));
    let err = v1_with(|e| e["vcek"] = other.into()).unwrap_err();
    assert!(matches!(err, SnpError::TcbMismatch { .. } | SnpError::ChipIdMismatch { .. }), "{err}");
}

#[test]
fn the_carried_ask_ark_complete_the_chain_when_another_products_is_given() {
    let claims = verify_snp(&vector(V1), GENOA_CHAIN, WHEN).unwrap();
    assert_eq!(claims.tee, TeeKind::Snp);
}

#[test]
fn expired_vcek_fails() {
    let err = verify_snp(&vector(V1), MILAN_CHAIN, "2040-01-01T00:00:00Z").unwrap_err();
    assert!(matches!(err, SnpError::Chain(_)), "{err}");
}

#[test]
fn truncated_quote_fails() {
    let err = v1_with(|e| {
        let msg = e["tpm_quote"]["message"].as_str().unwrap().to_owned();
        e["tpm_quote"]["message"] = msg[..msg.len() - 2].to_owned().into();
    })
    .unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::Malformed(_))), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn truncated_hcl_report_fails() {
    let err = v1_with(|e| {
        let hcl = hcl_of(e);
        e["hcl_report"] = B64URL.encode(&hcl[..1000]).into();
    })
    .unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::Malformed(_))), "{err}");
}

#[test]
fn garbage_json_fails() {
    let err = verify_snp(br#"{"hcl_report": 5, "tpm_quote": {}}"#, MILAN_CHAIN, WHEN).unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::Malformed(_))), "{err}");
    let err = v1_with(|e| e["unexpected"] = 1.into()).unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::Malformed(_))), "{err}");
    let err = v1_with(|e| e["version"] = 9.into()).unwrap_err();
    assert!(matches!(err, SnpError::Azure(AzureError::Malformed(_))), "{err}");
}

#[test]
fn tdx_hcl_report_is_refused_by_the_snp_driver() {
    let mut evidence = json("tdx/trustee_aztdxvtpm_evidence-v1.json");
    evidence.as_object_mut().unwrap().remove("td_quote");
    let err = verify_snp(&bytes_of(evidence), MILAN_CHAIN, WHEN).unwrap_err();
    assert!(
        matches!(err, SnpError::Azure(AzureError::ReportType { found: 4, expected: 2 })),
        "{err}"
    );
}

// ---- Azure TDX (through the TDX driver) ----

const TDX: &str = "tdx/trustee_aztdxvtpm_evidence-v1.json";
/// Inside the TD quote's PCK chain validity (as in tests/dcap.rs).
const TDX_WHEN: &str = "2025-01-01T00:00:00Z";

fn verify_tdx(evidence: &[u8]) -> Result<Claims, DcapError> {
    let collateral = Collateral::new();
    let anchors = TrustAnchors::new();
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: at(TDX_WHEN) };
    match verify_vendor_evidence(TeeKind::Tdx, evidence, &inputs) {
        Ok(claims) => Ok(claims),
        Err(VerifyError::Dcap(e)) => Err(e),
        Err(other) => panic!("not a dcap error: {other}"),
    }
}

fn tdx_with(edit: impl FnOnce(&mut Value)) -> Result<Claims, DcapError> {
    let mut evidence = json(TDX);
    edit(&mut evidence);
    verify_tdx(&bytes_of(evidence))
}

#[test]
fn tdx_azure_v1_verifies_without_collateral() {
    let claims = verify_tdx(&vector(TDX)).unwrap();
    assert_eq!(claims.tee, TeeKind::Tdx);
    assert_eq!(hex::encode(&claims.report_data.0), "6368616c6c656e6765");
    // No collateral for FMSPC 00806F050000 among the vectors.
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    // The TD quote's MRTD, as tests/dcap.rs finds for the bare quote.
    assert_eq!(
        hex::encode(&claims.measurement.0),
        "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b"
    );
    let az = &claims.vendor["tdx"]["azure"];
    assert_eq!(
        az["tpm"]["pcrs"]["0"],
        "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"
    );
    assert_eq!(az["hcl_report_type"], 4);
    assert_eq!(
        az["variable_data_sha256"],
        "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839"
    );
    let mut rd =
        hex::decode("9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839").unwrap();
    rd.resize(64, 0);
    assert_eq!(az["td_quote_report_data"], hex::encode(rd));
    assert_golden("tdx_azure_vtpm_v1", &claims);
}

#[test]
fn tdx_azure_flipped_pcr0_fails() {
    let err = tdx_with(|e| {
        let pcr0 = e["tpm_quote"]["pcrs"][0].as_str().unwrap().to_owned();
        e["tpm_quote"]["pcrs"][0] = flip_hex(&pcr0, 0).into();
    })
    .unwrap_err();
    assert!(matches!(err, DcapError::Azure { source: AzureError::PcrDigest { .. }, .. }), "{err}");
    assert!(err.to_string().starts_with("tdx: azure: the PCR values given"), "{err}");
}

#[test]
fn tdx_azure_flipped_tpm_signature_fails() {
    let err = tdx_with(|e| {
        let sig = e["tpm_quote"]["signature"].as_str().unwrap().to_owned();
        e["tpm_quote"]["signature"] = flip_hex(&sig, 7).into();
    })
    .unwrap_err();
    assert!(matches!(err, DcapError::Azure { source: AzureError::BadSignature, .. }), "{err}");
}

#[test]
fn tdx_azure_altered_variable_data_is_not_bound() {
    let err = tdx_with(|e| {
        let mut hcl = hcl_of(e);
        let var = 0x20 + 1184 + 20;
        let at_ek = var + hcl[var..].windows(8).position(|w| w == b"HCLEkPub").unwrap() + 60;
        hcl[at_ek] = if hcl[at_ek] == b'A' { b'B' } else { b'A' };
        e["hcl_report"] = B64URL.encode(hcl).into();
    })
    .unwrap_err();
    assert!(matches!(err, DcapError::Azure { source: AzureError::Binding { .. }, .. }), "{err}");
    assert!(
        err.to_string().starts_with("tdx: azure: HCL variable data is not bound to the TD quote"),
        "{err}"
    );
}

#[test]
fn tdx_azure_tampered_td_quote_fails() {
    let err = tdx_with(|e| {
        let mut quote = b64(e["td_quote"].as_str().unwrap());
        quote[48 + 136] ^= 1; // MRTD
        e["td_quote"] = B64URL.encode(quote).into();
    })
    .unwrap_err();
    assert!(matches!(err, DcapError::QuoteSignature { .. }), "{err}");
}

#[test]
fn tdx_azure_missing_td_quote_or_snp_hcl_fails() {
    let err = tdx_with(|e| {
        e.as_object_mut().unwrap().remove("td_quote");
    })
    .unwrap_err();
    assert!(matches!(err, DcapError::Azure { source: AzureError::Malformed(_), .. }), "{err}");
    // An SNP HCL report with the TD quote: wrong hardware report type.
    let snp_hcl = json(V1)["hcl_report"].clone();
    let err = tdx_with(|e| e["hcl_report"] = snp_hcl).unwrap_err();
    assert!(
        matches!(
            err,
            DcapError::Azure { source: AzureError::ReportType { found: 2, expected: 4 }, .. }
        ),
        "{err}"
    );
}

#[test]
fn tdx_azure_evidence_needs_the_td_quote_collateral() {
    let needs = cloister_verify::collateral_needs(TeeKind::Tdx, &vector(TDX));
    let text = format!("{needs:?}");
    assert!(text.contains("00806f050000"), "{text}");
}

// ---- collateral needs and parser robustness ----

#[test]
fn snp_azure_evidence_needs_the_ask_ark_only() {
    let needs = cloister_verify::collateral_needs(TeeKind::Snp, &vector(V1));
    let kinds: Vec<(&str, &str)> = needs.iter().map(|k| (k.kind.as_str(), k.id.as_str())).collect();
    // A v3 report names its product (Milan); the VCEK comes with the evidence.
    assert_eq!(kinds, vec![("ask-ark", "Milan")]);
}

#[test]
fn azure_parsers_never_panic_on_truncations_and_flips() {
    use cloister_verify::internal::parse_vendor_evidence;
    for file in [V1, V2, GENOA, TDX] {
        let text = vector(file);
        let evidence: Value = serde_json::from_slice(&text).unwrap();
        let hcl = match evidence.get("hcl_report") {
            Some(v) => b64(v.as_str().unwrap()),
            None => evidence["report"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8)
                .collect(),
        };
        let quote = evidence.get("tpm_quote").unwrap_or_else(|| &evidence["quote"]);
        let message = match &quote["message"] {
            Value::String(s) => hex::decode(s).unwrap(),
            Value::Array(a) => a.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
            other => panic!("{other}"),
        };
        for blob in [&hcl, &message] {
            for len in 0..blob.len() {
                parse_vendor_evidence(TeeKind::Snp, &blob[..len]);
            }
            for i in 0..blob.len() {
                let mut mutated = blob.clone();
                mutated[i] ^= 0xff;
                parse_vendor_evidence(TeeKind::Snp, &mutated);
            }
        }
        for len in (0..text.len()).step_by(97) {
            parse_vendor_evidence(TeeKind::Snp, &text[..len]);
            parse_vendor_evidence(TeeKind::Tdx, &text[..len]);
        }
        parse_vendor_evidence(TeeKind::Snp, &text);
    }
}
