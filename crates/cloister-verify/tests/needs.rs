//! What each real piece of evidence needs from its vendor, and when fetched collateral expires.

#![allow(clippy::unwrap_used)]

mod common;

use cloister_types::TeeKind;
use cloister_verify::{CollateralKey, Vendor, collateral_expiry, collateral_needs};
use common::{at, vector};

fn key(vendor: Vendor, kind: &str, id: &str) -> CollateralKey {
    CollateralKey::new(vendor, kind, id)
}

#[test]
fn dcap_quotes_need_tcb_info_for_their_fmspc_qe_identity_and_crls() {
    let needs = collateral_needs(TeeKind::Tdx, &vector("tdx/dcapqvl_tdx_quote"));
    assert_eq!(needs[0], key(Vendor::Intel, "tcb-info", "tdx/b0c06f000000"));
    assert_eq!(needs[1], key(Vendor::Intel, "qe-identity", "tdx"));
    assert_eq!(needs[2].kind, "pck-crl");
    assert!(["processor", "platform"].contains(&needs[2].id.as_str()));
    assert_eq!(needs[3], key(Vendor::Intel, "root-ca-crl", "root"));
    let needs = collateral_needs(TeeKind::Sgx, &vector("sgx/dcapqvl_sgx_quote"));
    assert_eq!(needs[0], key(Vendor::Intel, "tcb-info", "sgx/00a067110000"));
    // A quote of the other TEE still names its own FMSPC; the driver refuses the mix-up later.
    assert!(collateral_needs(TeeKind::Sgx, b"not a quote").is_empty());
}

#[test]
fn snp_reports_need_their_vcek_for_chip_and_tcb_and_the_amd_chain() {
    let needs = collateral_needs(TeeKind::Snp, &vector("snp/trustee_test-report.bin"));
    // A v2 report does not name its product: both candidates are asked for.
    assert_eq!(needs.len(), 4, "{needs:?}");
    assert!(needs[0].id.starts_with("Milan/"), "{needs:?}");
    assert!(needs[0].id.ends_with("?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"), "{needs:?}");
    assert_eq!(needs[1], key(Vendor::Amd, "ask-ark", "Milan"));
    assert!(needs[2].id.starts_with("Genoa/"));
    let vlek = collateral_needs(TeeKind::Snp, &vector("snp/trustee_test-vlek-report.bin"));
    assert!(vlek.iter().all(|k| k.kind == "asvk-ark"), "{vlek:?}");
    assert!(vlek.contains(&key(Vendor::Amd, "asvk-ark", "Milan")), "{vlek:?}");
}

#[test]
fn csv_reports_need_the_hsk_and_cek_of_their_chip() {
    let needs = collateral_needs(TeeKind::Csv, &vector("csv/csvrs_report.cert"));
    assert_eq!(needs, vec![key(Vendor::Hygon, "hsk-cek", "NZA9T14052605")]);
    let needs = collateral_needs(TeeKind::Csv, &vector("csv/trustee_csv_evidence.json"));
    assert_eq!(needs, vec![key(Vendor::Hygon, "hsk-cek", "KPA64911240507")]);
    // Tokens and documents that carry what they need ask for nothing.
    assert!(
        collateral_needs(TeeKind::Cca, &vector("cca/trustee_cca-example-token.cbor")).is_empty()
    );
}

#[test]
fn expiry_comes_from_the_documents_themselves() {
    let bundle: serde_json::Value =
        serde_json::from_slice(&vector("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap();
    let text = |name: &str| bundle[name].as_str().unwrap().to_owned();
    // An Intel PCS tcbInfo response: its nextUpdate.
    let response = format!(
        r#"{{"tcbInfo":{},"signature":"{}"}}"#,
        text("tcb_info"),
        text("tcb_info_signature")
    );
    assert_eq!(collateral_expiry(response.as_bytes()), Some(at("2025-07-19T10:16:03Z")));
    // A CRL (DER): its nextUpdate, after its thisUpdate.
    let crl = hex::decode(text("pck_crl")).unwrap();
    let next = collateral_expiry(&crl).unwrap();
    assert!(next > at("2025-06-01T00:00:00Z") && next < at("2026-01-01T00:00:00Z"), "{next}");
    // Certificates: the earliest notAfter of the chain.
    let chain = text("tcb_info_issuer_chain");
    let expiry = collateral_expiry(chain.as_bytes()).unwrap();
    assert!(expiry > at("2030-01-01T00:00:00Z"), "{expiry}");
    // Hygon certificates carry no validity period.
    assert_eq!(collateral_expiry(&vector("csv/csvrs_hsk.cert")), None);
}
