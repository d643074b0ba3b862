//! Hygon CSV driver tests against real reports and certificates from /work/shared/vectors/csv.

#![allow(clippy::unwrap_used)]

mod common;

use cloister_types::{TcbStatus, TeeKind};
use cloister_verify::{
    Collateral, CsvError, Inputs, TrustAnchors, VerifyError, verify_vendor_evidence,
};
use common::{assert_golden, at, vector};

/// Any time: Hygon certificates have no validity period.
fn now() -> i64 {
    at("2026-01-01T00:00:00Z")
}

fn legacy_report() -> Vec<u8> {
    vector("csv/csvrs_report.cert")
}

fn trustee_evidence() -> Vec<u8> {
    vector("csv/trustee_csv_evidence.json")
}

/// HRK, HSK and CEK, in an order that is not the chain's.
fn full_collateral() -> Collateral {
    Collateral::new()
        .with_certificates(&vector("csv/csvrs_cek.cert"))
        .with_certificates(&vector("csv/hygon_hrk.cert"))
        .with_certificates(&vector("csv/csvrs_hsk.cert"))
}

fn run(
    evidence: &[u8],
    collateral: &Collateral,
    anchors: &TrustAnchors,
) -> Result<cloister_types::Claims, CsvError> {
    let inputs = Inputs { collateral, anchors, now_unix: now() };
    match verify_vendor_evidence(TeeKind::Csv, evidence, &inputs) {
        Ok(claims) => Ok(claims),
        Err(VerifyError::Csv(e)) => Err(e),
        Err(other) => panic!("not a csv error: {other}"),
    }
}

fn verify_legacy(evidence: &[u8]) -> Result<cloister_types::Claims, CsvError> {
    run(evidence, &full_collateral(), &TrustAnchors::new())
}

fn expected_report_data() -> Vec<u8> {
    let mut data = b"user data".to_vec();
    data.resize(64, 0);
    data
}

#[test]
fn legacy_report_verifies_hrk_hsk_cek_pek_report() {
    let claims = verify_legacy(&legacy_report()).unwrap();
    assert_eq!(claims.tee, TeeKind::Csv);
    assert_eq!(
        hex::encode(claims.measurement.as_bytes()),
        "1178dadbf826ec7a07444ba358376d81c312cb53d703f9da83b26c1eee2ea052"
    );
    assert_eq!(claims.report_data.as_bytes(), &expected_report_data()[..]);
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert!(claims.advisories.is_empty());
    assert!(!claims.debug, "policy 0x40000001 has NODBG set");
    assert_eq!(claims.platform_id.as_ref().unwrap().as_bytes(), b"NZA9T14052605");
    let csv = &claims.vendor["csv"];
    assert_eq!(csv["mnonce"], "67c6697351ff4aec29cdbaabf2fbe346");
    assert_eq!(csv["chip_id"], "NZA9T14052605");
    assert_eq!(csv["anonce"], 0x1291_429b);
    assert_eq!(csv["report_format"], "legacy");
    assert_eq!(csv["evidence_encoding"], "raw");
    assert_eq!(csv["signer_mac_verified"], true);
    assert_eq!(csv["policy"]["raw"], 0x4000_0001);
    assert_eq!(csv["policy"]["nodbg"], true);
    assert_eq!(csv["hsk_key_id"], "6e1009311eb0e448f7320da5ce2d4d47");
    assert_eq!(csv["hrk_key_id"], "3ae86a9701355cce333a589de21583d7");
    assert_eq!(claims.vendor.len(), 1);
    assert_golden("csv_csvrs_report", &claims);
}

#[test]
fn legacy_report_padded_to_a_page_and_wrapped_verifies() {
    let mut page = legacy_report();
    page.resize(4096, 0);
    let claims = verify_legacy(&page).unwrap();
    assert_eq!(claims.vendor["csv"]["evidence_encoding"], "page");
    let mut wrapper = vec![0u8; 20];
    wrapper.extend_from_slice(&page);
    let claims = verify_legacy(&wrapper).unwrap();
    assert_eq!(claims.vendor["csv"]["evidence_encoding"], "wrapper");
    let mut ext = b"ATTESTATION_EXT\0".to_vec();
    ext.extend_from_slice(&0u32.to_le_bytes());
    ext.extend_from_slice(&page);
    assert!(verify_legacy(&ext).is_ok());
}

#[test]
fn kds_hsk_cek_file_is_recognised() {
    let mut hsk_cek = vector("csv/csvrs_hsk.cert");
    hsk_cek.extend_from_slice(&vector("csv/csvrs_cek.cert"));
    let collateral = Collateral::new()
        .with_certificates(&hsk_cek)
        .with_certificates(&vector("csv/hygon_hrk.cert"));
    assert!(run(&legacy_report(), &collateral, &TrustAnchors::new()).is_ok());
}

#[test]
fn hrk_as_instance_anchor_verifies_without_collateral_hrk() {
    let collateral = Collateral::new()
        .with_certificates(&vector("csv/csvrs_hsk.cert"))
        .with_certificates(&vector("csv/csvrs_cek.cert"));
    let anchors = TrustAnchors::new().with_root(TeeKind::Csv, vector("csv/hygon_hrk.cert"));
    assert!(run(&legacy_report(), &collateral, &anchors).is_ok());
}

// ---- negative tests: one per check ----

#[test]
fn flipped_signed_body_byte_fails_report_signature() {
    let mut report = legacy_report();
    report[70] ^= 1; // inside report_data, masked, signed
    assert!(matches!(verify_legacy(&report), Err(CsvError::BadReportSignature(_))));
}

#[test]
fn flipped_signature_byte_fails_report_signature() {
    let mut report = legacy_report();
    report[192] ^= 1; // r
    let err = verify_legacy(&report).unwrap_err();
    assert!(matches!(err, CsvError::BadReportSignature(_)), "{err}");
    assert!(err.to_string().starts_with("csv: report signature does not verify with the PEK"));
    let mut report = legacy_report();
    report[264 + 5] ^= 0x80; // s
    assert!(matches!(verify_legacy(&report), Err(CsvError::BadReportSignature(_))));
}

#[test]
fn signature_with_high_bytes_set_is_malformed() {
    let mut report = legacy_report();
    report[192 + 40] = 1; // r is a 72-byte field holding a 256-bit value
    assert!(matches!(verify_legacy(&report), Err(CsvError::BadReportSignature(_))));
}

#[test]
fn altered_pek_fails_mac() {
    let mut report = legacy_report();
    report[336 + 30] ^= 1; // inside the (masked) PEK public key
    assert!(matches!(verify_legacy(&report), Err(CsvError::BadMac)));
    let mut report = legacy_report();
    report[2420] ^= 1; // chip serial
    assert!(matches!(verify_legacy(&report), Err(CsvError::BadMac)));
}

#[test]
fn wrong_anonce_fails_unmasking() {
    let mut report = legacy_report();
    report[188] ^= 0x10;
    let err = verify_legacy(&report).unwrap_err();
    assert!(matches!(err, CsvError::Malformed(_)), "{err}");
    assert!(err.to_string().contains("wrong anonce"), "{err}");
}

#[test]
fn hsk_not_signed_by_hrk_fails() {
    // Swap: the HSK's signature replaced by the HRK's self-signature.
    let mut hsk = vector("csv/csvrs_hsk.cert");
    let hrk = vector("csv/hygon_hrk.cert");
    hsk[576..720].copy_from_slice(&hrk[576..720]);
    let collateral = Collateral::new()
        .with_certificates(&hrk)
        .with_certificates(&hsk)
        .with_certificates(&vector("csv/csvrs_cek.cert"));
    let err = run(&legacy_report(), &collateral, &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::HskNotSignedByHrk(_)), "{err}");
    // A flipped byte in the HSK body.
    let mut hsk = vector("csv/csvrs_hsk.cert");
    hsk[0x50] ^= 1;
    let collateral = Collateral::new()
        .with_certificates(&hrk)
        .with_certificates(&hsk)
        .with_certificates(&vector("csv/csvrs_cek.cert"));
    let err = run(&legacy_report(), &collateral, &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::HskNotSignedByHrk(_)), "{err}");
}

#[test]
fn cek_not_signed_by_hsk_fails() {
    let mut cek = vector("csv/csvrs_cek.cert");
    cek[40] ^= 1; // public key of the CEK
    let collateral = Collateral::new()
        .with_certificates(&vector("csv/hygon_hrk.cert"))
        .with_certificates(&vector("csv/csvrs_hsk.cert"))
        .with_certificates(&cek);
    let err = run(&legacy_report(), &collateral, &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::CekNotSignedByHsk(_)), "{err}");
}

#[test]
fn missing_cek_names_chip_and_kds() {
    let collateral = Collateral::new()
        .with_certificates(&vector("csv/hygon_hrk.cert"))
        .with_certificates(&vector("csv/csvrs_hsk.cert"));
    let err = run(&legacy_report(), &collateral, &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::MissingHskCek { missing: "CEK", .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "csv: no CEK certificate for chip NZA9T14052605 (fetch them from the Hygon KDS: \
         https://cert.hygon.cn/hsk_cek?snumber=NZA9T14052605)"
    );
}

#[test]
fn missing_hrk_fails() {
    let collateral = Collateral::new()
        .with_certificates(&vector("csv/csvrs_hsk.cert"))
        .with_certificates(&vector("csv/csvrs_cek.cert"));
    assert!(matches!(
        run(&legacy_report(), &collateral, &TrustAnchors::new()),
        Err(CsvError::MissingRoot)
    ));
}

#[test]
fn untrusted_hrk_fails() {
    // A different (unpinned) HRK: one reserved byte changed, so the fingerprint differs.
    let mut hrk = vector("csv/hygon_hrk.cert");
    hrk[831] ^= 1;
    let collateral = Collateral::new()
        .with_certificates(&hrk)
        .with_certificates(&vector("csv/csvrs_hsk.cert"))
        .with_certificates(&vector("csv/csvrs_cek.cert"));
    let err = run(&legacy_report(), &collateral, &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::UntrustedRoot(_)), "{err}");
}

#[test]
fn anchor_that_is_not_an_hrk_is_refused() {
    let anchors = TrustAnchors::new().with_root(TeeKind::Csv, vector("csv/csvrs_hsk.cert"));
    let err = run(&legacy_report(), &full_collateral(), &anchors).unwrap_err();
    assert!(matches!(err, CsvError::BadAnchor { index: 0, .. }), "{err}");
    let mut hrk = vector("csv/hygon_hrk.cert");
    hrk[0x50] ^= 1; // breaks the self-signature
    let anchors = TrustAnchors::new().with_root(TeeKind::Csv, hrk);
    let err = run(&legacy_report(), &full_collateral(), &anchors).unwrap_err();
    assert!(matches!(err, CsvError::BadAnchor { index: 0, .. }), "{err}");
}

#[test]
fn truncated_report_and_certificates_fail() {
    let report = legacy_report();
    for len in [0, 1, 180, 336, 2547] {
        let err = verify_legacy(&report[..len]).unwrap_err();
        assert!(matches!(err, CsvError::Malformed(_)), "{len}: {err}");
    }
    let mut long = report.clone();
    long.push(0);
    assert!(matches!(verify_legacy(&long), Err(CsvError::Malformed(_))));
    // Truncated certificates are not recognised, so the chain is incomplete.
    let cek = vector("csv/csvrs_cek.cert");
    let collateral = Collateral::new()
        .with_certificates(&vector("csv/hygon_hrk.cert"))
        .with_certificates(&vector("csv/csvrs_hsk.cert")[..831])
        .with_certificates(&cek[..2000]);
    let err = run(&report, &collateral, &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::MissingHskCek { missing: "HSK/CEK", .. }), "{err}");
}

#[test]
fn page_with_trailing_data_and_empty_extended_wrapper_are_refused() {
    let mut page = legacy_report();
    page.resize(4096, 0);
    page[4000] = 1;
    assert!(matches!(verify_legacy(&page), Err(CsvError::UnsupportedFormat(_))));
    let mut ext = b"ATTESTATION_EXT\0".to_vec();
    ext.extend_from_slice(&1u32.to_le_bytes());
    ext.extend_from_slice(&[0u8; 4096]);
    let err = verify_legacy(&ext).unwrap_err();
    assert!(matches!(err, CsvError::Malformed(_)), "{err}");
}

// ---- trustee evidence: partial ----

#[test]
fn trustee_evidence_verifies_report_signature_then_stops_at_missing_hsk_cek() {
    // Steps 1-4 (parsing, unmasking, PEK, report signature by the PEK) pass; the chain cannot be
    // completed offline because this chip's HSK/CEK are only on the Hygon KDS.
    let collateral = Collateral::new().with_certificates(&vector("csv/hygon_hrk.cert"));
    let err = run(&trustee_evidence(), &collateral, &TrustAnchors::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "csv: no HSK/CEK certificate for chip KPA64911240507 (fetch them from the Hygon KDS: \
         https://cert.hygon.cn/hsk_cek?snumber=KPA64911240507)"
    );
    // The csvrs chain (another chip) does not sign this chip's PEK.
    let err = run(&trustee_evidence(), &full_collateral(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::PekNotSignedByCek(_)), "{err}");
}

#[test]
fn trustee_evidence_report_signature_is_checked() {
    let mut json: serde_json::Value = serde_json::from_slice(&trustee_evidence()).unwrap();
    let data = &mut json["attestation_report"]["data"];
    data[100] = (data[100].as_u64().unwrap() ^ 1).into(); // inside report_data
    let bytes = serde_json::to_vec(&json).unwrap();
    let err = run(&bytes, &full_collateral(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::BadReportSignature(_)), "{err}");
}

#[test]
fn trustee_evidence_raw_report_gives_the_same_outcome() {
    let json: serde_json::Value = serde_json::from_slice(&trustee_evidence()).unwrap();
    let page: Vec<u8> = json["attestation_report"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(page.len(), 4096);
    let err = run(&page, &Collateral::new(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::MissingRoot), "{err}");
    let collateral = Collateral::new().with_certificates(&vector("csv/hygon_hrk.cert"));
    let err = run(&page, &collateral, &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::MissingHskCek { missing: "HSK/CEK", .. }), "{err}");
}

#[test]
fn trustee_json_inconsistent_with_report_is_refused() {
    let mut json: serde_json::Value = serde_json::from_slice(&trustee_evidence()).unwrap();
    json["serial_number"][0] = 0x4c.into();
    let err = run(&serde_json::to_vec(&json).unwrap(), &full_collateral(), &TrustAnchors::new())
        .unwrap_err();
    assert!(err.to_string().contains("serial_number differs"), "{err}");
    let mut json: serde_json::Value = serde_json::from_slice(&trustee_evidence()).unwrap();
    json["cert_chain"]["pek"]["body"]["data"]["pubkey"]["key"]["x"][0] = 0.into();
    let err = run(&serde_json::to_vec(&json).unwrap(), &full_collateral(), &TrustAnchors::new())
        .unwrap_err();
    assert!(err.to_string().contains("cert_chain.pek differs"), "{err}");
    let mut json: serde_json::Value = serde_json::from_slice(&trustee_evidence()).unwrap();
    json["extra"] = 1.into();
    let err = run(&serde_json::to_vec(&json).unwrap(), &full_collateral(), &TrustAnchors::new())
        .unwrap_err();
    assert!(matches!(err, CsvError::Malformed(_)), "{err}");
}

#[test]
fn parser_never_panics_on_mutations() {
    let report = legacy_report();
    for i in (0..report.len()).step_by(7) {
        let mut bytes = report.clone();
        bytes[i] ^= 0xa5;
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Csv, &bytes);
        let _ = verify_legacy(&bytes);
    }
}

// ---- trustee JSON carrying the HSK and CEK (built from the csv-rs vectors) ----

fn le32(bytes: &[u8], at: usize) -> serde_json::Value {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()).into()
}

fn le16(bytes: &[u8], at: usize) -> serde_json::Value {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()).into()
}

fn arr(bytes: &[u8], at: usize, len: usize) -> serde_json::Value {
    bytes[at..at + len].iter().map(|&b| serde_json::Value::from(b)).collect()
}

/// A CSV-format certificate as csv-rs's serde writes it.
fn csv_cert_json(c: &[u8]) -> serde_json::Value {
    let sig = |at: usize| {
        serde_json::json!({
            "usage": le32(c, at), "algo": le32(c, at + 4),
            "signature": {"r": arr(c, at + 8, 72), "s": arr(c, at + 80, 72)},
            "_reserved": arr(c, at + 152, 368),
        })
    };
    serde_json::json!({
        "body": {"ver": le32(c, 0), "data": {
            "firmware": {"major": c[4], "minor": c[5]}, "reserved1": le16(c, 6),
            "pubkey": {"usage": le32(c, 8), "algo": le32(c, 12),
                       "key": {"g": le32(c, 16), "x": arr(c, 20, 72), "y": arr(c, 92, 72)}},
            "uid_size": le16(c, 164), "user_id": arr(c, 166, 254), "sid": arr(c, 420, 16),
            "reserved2": arr(c, 436, 608),
        }},
        "sigs": [sig(1044), sig(1564)],
    })
}

/// A CA-format certificate as csv-rs's serde writes it.
fn ca_cert_json(c: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "body": {
            "preamble": {"ver": le32(c, 0), "data": {
                "kid": arr(c, 4, 16), "sid": arr(c, 20, 16), "usage": le32(c, 36),
                "reserved": arr(c, 40, 24)}},
            "pubkey": {"g": le32(c, 64), "x": arr(c, 68, 72), "y": arr(c, 140, 72)},
            "uid_size": le16(c, 212), "user_id": arr(c, 214, 254), "reserved": arr(c, 468, 108),
        },
        "signature": {"r": arr(c, 576, 72), "s": arr(c, 648, 72)},
        "_reserved": arr(c, 720, 112),
    })
}

#[test]
fn trustee_json_with_embedded_hsk_cek_verifies_fully() {
    let report = legacy_report();
    let mut page = report.clone();
    page.resize(4096, 0);
    // The PEK beside the report is the unmasked one.
    let anonce = &report[188..192];
    let pek: Vec<u8> =
        report[336..2420].iter().enumerate().map(|(i, b)| b ^ anonce[i % 4]).collect();
    let serial: Vec<u8> =
        report[2420..2484].iter().enumerate().map(|(i, b)| b ^ anonce[i % 4]).collect();
    let json = serde_json::json!({
        "attestation_report": {
            "magic": arr(&[0; 16], 0, 16), "flags": 0, "data": arr(&page, 0, 4096),
        },
        "cert_chain": {
            "pek": csv_cert_json(&pek),
            "hsk_cek": {
                "hsk": ca_cert_json(&vector("csv/csvrs_hsk.cert")),
                "cek": csv_cert_json(&vector("csv/csvrs_cek.cert")),
            },
        },
        "serial_number": arr(&serial, 0, 64),
        "cc_eventlog": null,
    });
    let bytes = serde_json::to_vec(&json).unwrap();
    let collateral = Collateral::new().with_certificates(&vector("csv/hygon_hrk.cert"));
    let claims = run(&bytes, &collateral, &TrustAnchors::new()).unwrap();
    assert_eq!(claims.vendor["csv"]["evidence_encoding"], "trustee-json");
    assert_eq!(claims.vendor["csv"]["signer_mac_verified"], true);
    assert_eq!(claims.report_data.as_bytes(), &expected_report_data()[..]);
    // Without the root, still refused.
    let err = run(&bytes, &Collateral::new(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::MissingRoot), "{err}");
}

fn hmac_sm3(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sm3::Digest as _;
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner = sm3::Sm3::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(msg).finalize();
    sm3::Sm3::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().to_vec()
}

#[test]
fn anonce_is_unsigned_so_only_the_report_data_binding_catches_a_remasked_report() {
    // Known limit of the legacy format: the signature covers the masked bytes [0, 180) but not
    // anonce. Re-masking the unsigned fields, the PEK and the serial with another anonce and
    // recomputing the MAC (keyed with the unmasked mnonce, which the report itself reveals)
    // gives a report that still verifies, with every unmasked field XOR-shifted. The
    // report_data binding of `cloister_verify::verify` then fails, since report_data shifted.
    let report = legacy_report();
    let old = u32::from_le_bytes(report[188..192].try_into().unwrap());
    let new = old ^ 0x0000_0100;
    let delta = (old ^ new).to_le_bytes();
    let mut forged = report.clone();
    for i in (180..188).chain(336..2484) {
        forged[i] ^= delta[i % 4];
    }
    forged[188..192].copy_from_slice(&new.to_le_bytes());
    // Without a new MAC, the MAC check catches it.
    assert!(matches!(verify_legacy(&forged), Err(CsvError::BadMac)));
    let mnonce: Vec<u8> = (128..144).map(|i| forged[i] ^ new.to_le_bytes()[i % 4]).collect();
    let mac = hmac_sm3(&mnonce, &forged[336..2516]);
    forged[2516..2548].copy_from_slice(&mac);
    let claims = verify_legacy(&forged).unwrap();
    assert_ne!(claims.report_data.as_bytes(), &expected_report_data()[..]);
    assert_ne!(claims.measurement, verify_legacy(&report).unwrap().measurement);
}

// ---- extended report (synthetic: no real one is available) ----

/// A big-endian 32-byte value in a 72-byte little-endian field.
fn le72(be: &[u8]) -> Vec<u8> {
    let mut field: Vec<u8> = be.iter().rev().copied().collect();
    field.resize(72, 0);
    field
}

/// A synthetic extended report in its wrapper, signed by a test PEK (whose certificate carries
/// a well-formed but false CEK signature).
fn synthetic_extended() -> Vec<u8> {
    use sm2::dsa::signature::Signer as _;
    let key = sm2::dsa::SigningKey::from_slice("HYGON-SSD-PEK", &[0x42; 32]).unwrap();
    let point = key.verifying_key().to_sec1_bytes();
    let mut pek = vec![0u8; 2084];
    pek[0] = 1; // version
    pek[4..6].copy_from_slice(&[1, 4]); // firmware 1.4
    pek[8..12].copy_from_slice(&0x1002u32.to_le_bytes());
    pek[12..16].copy_from_slice(&4u32.to_le_bytes());
    pek[16..20].copy_from_slice(&3u32.to_le_bytes());
    pek[20..92].copy_from_slice(&le72(&point[1..33]));
    pek[92..164].copy_from_slice(&le72(&point[33..65]));
    pek[164..166].copy_from_slice(&13u16.to_le_bytes());
    pek[166..179].copy_from_slice(b"HYGON-SSD-PEK");
    pek[1044..1048].copy_from_slice(&0x1004u32.to_le_bytes());
    pek[1048..1052].copy_from_slice(&4u32.to_le_bytes());
    pek[1052] = 1; // r = 1
    pek[1124] = 1; // s = 1

    let mut report = vec![0u8; 3380];
    report[64..128].copy_from_slice(&[0xab; 64]); // report_data
    report[128..144].copy_from_slice(&[0x11; 16]); // mnonce
    report[144..176].copy_from_slice(&[0x22; 32]); // measure
    report[176..180].copy_from_slice(&0x0000_0045u32.to_le_bytes()); // policy: NODBG, ES, CSV3
    report[180..184].copy_from_slice(&0x1002u32.to_le_bytes());
    report[184..188].copy_from_slice(&4u32.to_le_bytes());
    report[188..192].copy_from_slice(&2024u32.to_le_bytes()); // build
    report[192..194].copy_from_slice(&1u16.to_le_bytes()); // rtmr_version
    for index in 0..5 {
        let at = 208 + 32 * index;
        report[at..at + 32].copy_from_slice(&[0x30 + index as u8; 32]);
    }
    let sig = key.sign(&report[..1024]).to_bytes();
    report[1024..1096].copy_from_slice(&le72(&sig[..32]));
    report[1096..1168].copy_from_slice(&le72(&sig[32..]));
    report[1168..3252].copy_from_slice(&pek);
    report[3252..3263].copy_from_slice(b"TESTCHIP001");
    let mac = hmac_sm3(&[0x11; 16], &report[1168..3348]);
    report[3348..3380].copy_from_slice(&mac);

    let mut wrapper = b"ATTESTATION_EXT\0".to_vec();
    wrapper.extend_from_slice(&1u32.to_le_bytes());
    wrapper.extend_from_slice(&report);
    wrapper.resize(4116, 0);
    wrapper
}

#[test]
fn synthetic_extended_report_verifies_up_to_the_pek_certificate() {
    let wrapper = synthetic_extended();
    // Parsing, MAC and report signature pass; the chain stops at the missing HSK/CEK ...
    let collateral = Collateral::new().with_certificates(&vector("csv/hygon_hrk.cert"));
    let err = run(&wrapper, &collateral, &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::MissingHskCek { .. }), "{err}");
    assert!(err.to_string().contains("chip TESTCHIP001"), "{err}");
    // ... or at the test PEK, which no real CEK signed.
    let err = run(&wrapper, &full_collateral(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::PekNotSignedByCek(_)), "{err}");
}

#[test]
fn synthetic_extended_report_signature_and_mac_are_checked() {
    let mut wrapper = synthetic_extended();
    wrapper[20 + 500] ^= 1; // reserved1, inside the signed [0, 1024)
    let err = run(&wrapper, &full_collateral(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::BadReportSignature(_)), "{err}");
    let mut wrapper = synthetic_extended();
    wrapper[20 + 1024] ^= 1; // r
    let err = run(&wrapper, &full_collateral(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::BadReportSignature(_)), "{err}");
    let mut wrapper = synthetic_extended();
    wrapper[20 + 3340] = 7; // reserved of the signer section, under the MAC
    let err = run(&wrapper, &full_collateral(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::BadMac), "{err}");
    let mut wrapper = synthetic_extended();
    wrapper[20 + 3500] = 7; // padding after the report
    let err = run(&wrapper, &full_collateral(), &TrustAnchors::new()).unwrap_err();
    assert!(matches!(err, CsvError::UnsupportedFormat(_)), "{err}");
}

proptest::proptest! {
    #[test]
    fn random_bytes_of_hygon_sizes_never_panic(
        size in proptest::sample::select(vec![832usize, 2084, 2548, 2916, 3380, 4096, 4116]),
        seed in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64),
    ) {
        let bytes: Vec<u8> = seed.iter().cycle().take(size).copied().collect();
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Csv, &bytes);
        let collateral = Collateral::new().with_certificates(&bytes);
        let anchors = TrustAnchors::new().with_root(TeeKind::Csv, bytes.clone());
        let _ = run(&bytes, &collateral, &anchors);
    }

    #[test]
    fn mutated_reports_never_verify_with_changed_signed_bytes(
        at in 0usize..180, flip in 1u8..=255,
    ) {
        let mut report = legacy_report();
        report[at] ^= flip;
        // mnonce (bytes 128..144) is also the MAC key, so the MAC check may fail first.
        let result = verify_legacy(&report);
        proptest::prop_assert!(
            matches!(result, Err(CsvError::BadReportSignature(_) | CsvError::BadMac)),
            "{:?}",
            result
        );
    }
}
