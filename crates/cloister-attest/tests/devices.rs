//! The device backends without the devices: request construction and response parsing as pure
//! functions (on real vectors where they exist), Gramine against a fake `/dev/attestation`
//! tree, the ioctl paths against plain files (which answer ENOTTY), and `detect()` against fake
//! trees.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ciborium::Value;
use cloister_attest::{
    AttestError, Attester, BackendOptions, CsvGuestDevice, DetectPaths, GramineAttestation,
    HardwareTee, NsmDevice, SevGuestDevice, TdReport, TdxGuestDevice, build_csv_request, detect_in,
    encode_nsm_attestation_request, parse_csv_report, parse_nsm_attestation_response,
    parse_snp_report_response,
};
use cloister_types::{Hex, RuntimeData, TeeKind};

fn vector(relative: &str) -> Vec<u8> {
    let dir = match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    let path = dir.join(relative);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read vector {}: {e}", path.display()))
}

fn runtime_data() -> RuntimeData {
    RuntimeData {
        nonce: "device-nonce".into(),
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(vec![5; 32]),
        receipt_pk: "receipt".into(),
        extra: BTreeMap::new(),
    }
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

// ---- SEV-SNP ----

#[test]
fn snp_report_response_yields_the_report_of_a_real_vector() {
    let report = vector("snp/trustee_test-report.bin");
    assert_eq!(report.len(), 1184);
    let mut response = vec![0u8; 4000];
    response[4..8].copy_from_slice(&1184u32.to_le_bytes());
    response[32..32 + 1184].copy_from_slice(&report);
    let p = Path::new("/dev/sev-guest");
    assert_eq!(parse_snp_report_response(p, &response).unwrap(), report);

    let mut failed = response.clone();
    failed[0] = 0x16;
    let err = parse_snp_report_response(p, &failed).unwrap_err();
    assert_eq!(err.to_string(), "/dev/sev-guest: firmware status 0x16 (invalid parameters)");
    let mut wrong_size = response.clone();
    wrong_size[4..8].copy_from_slice(&1000u32.to_le_bytes());
    assert!(
        parse_snp_report_response(p, &wrong_size)
            .unwrap_err()
            .to_string()
            .contains("report size 1000")
    );
    assert!(parse_snp_report_response(p, &response[..500]).is_err());
    assert!(parse_snp_report_response(p, &[]).is_err());
}

#[test]
fn snp_request_carries_report_data_and_vmpl() {
    let device = SevGuestDevice::new("/dev/sev-guest").with_vmpl(1);
    let req = device.request([9; 64]).unwrap();
    assert_eq!(req.user_data, [9; 64]);
    assert_eq!(req.vmpl, 1);
    assert_eq!(req.rsvd, [0; 28]);
    let err = SevGuestDevice::default().with_vmpl(4).request([0; 64]).unwrap_err();
    assert!(matches!(err, AttestError::InvalidInput(ref m) if m.contains("VMPL 4")));
}

// ---- TDX ----

#[test]
fn td_report_fields_are_read_at_their_offsets() {
    let mut bytes = vec![0u8; 1024];
    bytes[128..192].fill(0xaa);
    bytes[528..576].fill(0xbb);
    let report = TdReport::parse(Path::new("/dev/tdx_guest"), &bytes).unwrap();
    assert_eq!(report.report_data(), &[0xaa; 64]);
    assert_eq!(report.mr_td(), &[0xbb; 48]);
    let err = TdReport::parse(Path::new("/dev/tdx_guest"), &bytes[..1000]).unwrap_err();
    assert_eq!(err.to_string(), "/dev/tdx_guest: TDREPORT of 1000 bytes, expected 1024");
}

// ---- Nitro ----

#[test]
fn nsm_request_is_the_attestation_map() {
    let request = encode_nsm_attestation_request(&[1; 64], Some(b"n"), None).unwrap();
    let value: Value = ciborium::from_reader(request.as_slice()).unwrap();
    let expected = Value::Map(vec![(
        Value::Text("Attestation".into()),
        Value::Map(vec![
            (Value::Text("user_data".into()), Value::Bytes(vec![1; 64])),
            (Value::Text("nonce".into()), Value::Bytes(b"n".to_vec())),
            (Value::Text("public_key".into()), Value::Null),
        ]),
    )]);
    assert_eq!(value, expected);
    assert!(NsmDevice::default().with_nonce(vec![0; 513]).is_err());
    assert!(NsmDevice::default().with_public_key(vec![0; 1025]).is_err());
}

#[test]
fn nsm_response_yields_the_document_and_errors_are_named() {
    let p = Path::new("/dev/nsm");
    let document = vector("nitro/evervault_beta_debug-mode-attestation-doc-bytes");
    let response = cbor(&Value::Map(vec![(
        Value::Text("Attestation".into()),
        Value::Map(vec![(Value::Text("document".into()), Value::Bytes(document.clone()))]),
    )]));
    assert_eq!(parse_nsm_attestation_response(p, &response).unwrap(), document);

    // The same as an array of integers (a serializer without byte strings).
    let as_array = cbor(&Value::Map(vec![(
        Value::Text("Attestation".into()),
        Value::Map(vec![(
            Value::Text("document".into()),
            Value::Array(document.iter().map(|b| Value::Integer((*b).into())).collect()),
        )]),
    )]));
    assert_eq!(parse_nsm_attestation_response(p, &as_array).unwrap(), document);

    let error = cbor(&Value::Map(vec![(
        Value::Text("Error".into()),
        Value::Text("InvalidArgument".into()),
    )]));
    let err = parse_nsm_attestation_response(p, &error).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/dev/nsm: the NSM refused the attestation request: InvalidArgument"
    );
    assert!(parse_nsm_attestation_response(p, b"\xff\x00").is_err());
    assert!(parse_nsm_attestation_response(p, &cbor(&Value::Text("x".into()))).is_err());
}

#[test]
fn nsm_document_must_carry_the_report_data_and_nonce() {
    // The real debug-mode document carries user_data "hello, world!": not our report_data.
    let document = vector("nitro/evervault_beta_debug-mode-attestation-doc-bytes");
    let err = NsmDevice::default().check_document(&[0; 64], &document).unwrap_err();
    match err {
        AttestError::ReportDataMismatch { found, .. } => {
            assert_eq!(found, hex::encode(b"hello, world!"));
        }
        other => panic!("{other}"),
    }

    // A synthetic COSE_Sign1 (tag 18) whose payload binds the data.
    let document_with = |user_data: &[u8], nonce: Option<&[u8]>| {
        let mut payload = vec![(Value::Text("user_data".into()), Value::Bytes(user_data.to_vec()))];
        if let Some(n) = nonce {
            payload.push((Value::Text("nonce".into()), Value::Bytes(n.to_vec())));
        }
        cbor(&Value::Tag(
            18,
            Box::new(Value::Array(vec![
                Value::Bytes(vec![]),
                Value::Map(vec![]),
                Value::Bytes(cbor(&Value::Map(payload))),
                Value::Bytes(vec![0; 96]),
            ])),
        ))
    };
    let device = NsmDevice::default().with_nonce(b"fresh".to_vec()).unwrap();
    device.check_document(&[7; 64], &document_with(&[7; 64], Some(b"fresh"))).unwrap();
    assert!(device.check_document(&[7; 64], &document_with(&[7; 64], None)).is_err());
    assert!(device.check_document(&[7; 64], &document_with(&[8; 64], Some(b"fresh"))).is_err());
    assert!(device.check_document(&[7; 64], b"\x80").is_err());
}

// ---- Hygon CSV ----

#[test]
fn csv_request_is_data_mnonce_and_their_sm3() {
    // Known answer from Hygon's csv-rs tests: SM3(data || mnonce).
    let data: [u8; 64] = [
        103, 198, 105, 115, 81, 255, 74, 236, 41, 205, 186, 171, 242, 251, 227, 70, 124, 194, 84,
        248, 27, 232, 231, 141, 118, 90, 46, 99, 51, 159, 201, 154, 102, 50, 13, 183, 49, 88, 163,
        90, 37, 93, 5, 23, 88, 233, 94, 212, 171, 178, 205, 198, 155, 180, 84, 17, 14, 130, 116,
        65, 33, 61, 220, 135,
    ];
    let mnonce: [u8; 16] =
        [112, 233, 62, 161, 65, 225, 252, 103, 62, 1, 126, 151, 234, 220, 107, 150];
    let hash: [u8; 32] = [
        19, 76, 8, 98, 33, 246, 247, 155, 28, 21, 245, 185, 118, 74, 162, 128, 82, 15, 160, 233,
        212, 130, 106, 177, 89, 6, 119, 243, 130, 21, 3, 153,
    ];
    let buffer = build_csv_request(&data, &mnonce);
    assert_eq!(buffer.len(), 4096);
    assert_eq!(&buffer[..64], &data);
    assert_eq!(&buffer[64..80], &mnonce);
    assert_eq!(&buffer[80..112], &hash);
    assert!(buffer[112..].iter().all(|&b| b == 0));
}

#[test]
fn csv_report_of_a_real_vector_unmasks_its_fields() {
    let bytes = vector("csv/csvrs_report.cert");
    let p = Path::new("/dev/csv-guest");
    let report = parse_csv_report(p, &bytes).unwrap();
    assert_eq!(report.bytes, bytes);
    let mut expected_data = [0u8; 64];
    expected_data[..9].copy_from_slice(b"user data");
    assert_eq!(report.report_data, expected_data);
    assert_eq!(hex::encode(&report.mnonce), "67c6697351ff4aec29cdbaabf2fbe346");
    assert_eq!(
        hex::encode(&report.measure),
        "1178dadbf826ec7a07444ba358376d81c312cb53d703f9da83b26c1eee2ea052"
    );
    let mnonce: [u8; 16] = report.mnonce.clone().try_into().unwrap();
    let device = CsvGuestDevice::default();
    device.check_report(&report, &expected_data, &mnonce).unwrap();
    assert!(matches!(
        device.check_report(&report, &[0; 64], &mnonce),
        Err(AttestError::ReportDataMismatch { .. })
    ));
    let err = device.check_report(&report, &expected_data, &[0; 16]).unwrap_err();
    assert!(err.to_string().contains("mnonce"), "{err}");

    // A 4096-byte ioctl buffer: the report is its first 2548 bytes.
    let mut page = bytes.clone();
    page.resize(4096, 0);
    assert_eq!(parse_csv_report(p, &page).unwrap().bytes, bytes);
    let err = parse_csv_report(p, &bytes[..2000]).unwrap_err();
    assert_eq!(err.to_string(), "/dev/csv-guest: CSV report of 2000 bytes, expected 2548");
}

// ---- Gramine /dev/attestation ----

fn sgx_quote(report_data: &[u8]) -> Vec<u8> {
    let mut quote = vec![0u8; 1000];
    quote[0] = 3;
    quote[368..432].copy_from_slice(report_data);
    quote
}

fn fake_gramine(root: &Path, kind: &str, quote: &[u8]) -> PathBuf {
    let dir = root.join("attestation");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("attestation_type"), kind).unwrap();
    fs::write(dir.join("user_report_data"), b"").unwrap();
    fs::write(dir.join("quote"), quote).unwrap();
    dir
}

#[test]
fn gramine_writes_report_data_and_returns_the_quote() {
    let root = tempfile::tempdir().unwrap();
    let rd = runtime_data();
    let expected = rd.report_data().unwrap().0;
    let dir = fake_gramine(root.path(), "dcap", &sgx_quote(&expected));
    let attester = GramineAttestation::new(&dir);
    assert_eq!(attester.tee(), TeeKind::Sgx);
    let evidence = attester.attest(&rd).unwrap();
    assert_eq!(fs::read(dir.join("user_report_data")).unwrap(), expected.to_vec());
    assert_eq!(evidence.tee, TeeKind::Sgx);
    assert_eq!(evidence.evidence.0, sgx_quote(&expected));
    assert!(evidence.collateral.is_empty());
}

#[test]
fn gramine_refuses_non_dcap_foreign_and_truncated_quotes() {
    let root = tempfile::tempdir().unwrap();
    let rd = runtime_data();
    let dir = fake_gramine(root.path(), "epid\n", &sgx_quote(&[0; 64]));
    let attester = GramineAttestation::new(&dir);
    let err = attester.attest(&rd).unwrap_err();
    assert!(matches!(err, AttestError::NotDcap { ref found, .. } if found == "epid"), "{err}");
    assert!(err.to_string().contains("sgx.remote_attestation"), "{err}");

    fs::write(dir.join("attestation_type"), "dcap").unwrap();
    let err = attester.attest(&rd).unwrap_err();
    assert!(matches!(err, AttestError::ReportDataMismatch { .. }), "{err}");

    let mut tdx = sgx_quote(&rd.report_data().unwrap().0);
    tdx[4] = 0x81;
    fs::write(dir.join("quote"), &tdx).unwrap();
    assert!(attester.attest(&rd).unwrap_err().to_string().contains("not an SGX quote"));

    fs::write(dir.join("quote"), &sgx_quote(&[0; 64])[..400]).unwrap();
    assert!(attester.attest(&rd).unwrap_err().to_string().contains("truncated"));

    fs::remove_file(dir.join("quote")).unwrap();
    let err = attester.attest(&rd).unwrap_err();
    assert!(err.to_string().starts_with("reading ") && err.to_string().contains("quote"), "{err}");
}

// ---- the ioctl paths, on files that are not the device ----

#[test]
fn ioctl_backends_name_the_ioctl_and_the_device_when_it_fails() {
    let root = tempfile::tempdir().unwrap();
    let fake = root.path().join("not-a-device");
    fs::write(&fake, b"").unwrap();
    let rd = runtime_data();
    let cases: Vec<(Box<dyn Attester>, &str)> = vec![
        (Box::new(SevGuestDevice::new(&fake)), "SNP_GET_EXT_REPORT"),
        (Box::new(SevGuestDevice::new(&fake).without_certificates()), "SNP_GET_REPORT"),
        (Box::new(NsmDevice::new(&fake)), "NSM_IOCTL_RAW"),
        (Box::new(CsvGuestDevice::new(&fake)), "CSV_CMD_GET_REPORT"),
    ];
    for (attester, ioctl) in cases {
        let err = attester.attest(&rd).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, AttestError::Ioctl { .. }), "{text}");
        assert!(text.starts_with(&format!("{ioctl} on {}", fake.display())), "{text}");
    }
    let err = TdxGuestDevice::new(&fake).td_report(&[0; 64]).unwrap_err();
    assert!(err.to_string().starts_with("TDX_CMD_GET_REPORT0 on "), "{err}");

    let missing = root.path().join("missing");
    let err = SevGuestDevice::new(&missing).attest(&rd).unwrap_err();
    assert!(err.to_string().starts_with(&format!("opening {}", missing.display())), "{err}");
}

// ---- detect ----

fn paths_under(root: &Path) -> DetectPaths {
    DetectPaths {
        tsm_report: root.join("sys/kernel/config/tsm/report"),
        attestation_dir: root.join("dev/attestation"),
        nsm: root.join("dev/nsm"),
        csv_guest: root.join("dev/csv-guest"),
        sev_guest: root.join("dev/sev-guest"),
        tdx_guest: root.join("dev/tdx_guest"),
    }
}

fn detect_err(paths: &DetectPaths) -> String {
    match detect_in(paths) {
        Ok(a) => panic!("expected no TEE, found {}", a.tee()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn detect_lists_everything_it_looked_for() {
    let root = tempfile::tempdir().unwrap();
    let paths = paths_under(root.path());
    let text = detect_err(&paths);
    assert!(text.starts_with("no TEE attestation interface found; looked for:"), "{text}");
    for p in [
        &paths.tsm_report,
        &paths.attestation_dir,
        &paths.nsm,
        &paths.csv_guest,
        &paths.sev_guest,
        &paths.tdx_guest,
    ] {
        assert!(text.contains(&p.display().to_string()), "{text}");
    }

    // /dev/tdx_guest alone is explained, not used.
    fs::create_dir_all(root.path().join("dev")).unwrap();
    fs::write(&paths.tdx_guest, b"").unwrap();
    let text = detect_err(&paths);
    assert!(text.contains("only gives a TDREPORT") && text.contains("configfs-tsm"), "{text}");
}

#[test]
fn detect_finds_each_backend() {
    let root = tempfile::tempdir().unwrap();
    let paths = paths_under(root.path());
    fs::create_dir_all(root.path().join("dev")).unwrap();

    fs::write(&paths.sev_guest, b"").unwrap();
    assert_eq!(detect_in(&paths).unwrap().tee(), TeeKind::Snp);
    fs::write(&paths.csv_guest, b"").unwrap();
    assert_eq!(detect_in(&paths).unwrap().tee(), TeeKind::Csv);
    fs::write(&paths.nsm, b"").unwrap();
    assert_eq!(detect_in(&paths).unwrap().tee(), TeeKind::Nitro);
    fs::create_dir_all(&paths.attestation_dir).unwrap();
    fs::write(paths.attestation_dir.join("attestation_type"), "none").unwrap();
    // Gramine without DCAP is skipped (and would be reported) in favour of the next one.
    assert_eq!(detect_in(&paths).unwrap().tee(), TeeKind::Nitro);
    fs::write(paths.attestation_dir.join("attestation_type"), "dcap").unwrap();
    assert_eq!(detect_in(&paths).unwrap().tee(), TeeKind::Sgx);

    // A configfs-tsm root that is not configfs (no provider appears) is reported and skipped,
    // and the probe leaves no directory behind.
    fs::create_dir_all(&paths.tsm_report).unwrap();
    assert_eq!(detect_in(&paths).unwrap().tee(), TeeKind::Sgx);
    assert_eq!(fs::read_dir(&paths.tsm_report).unwrap().count(), 0);
}

fn open_err(choice: HardwareTee, options: &BackendOptions) -> String {
    match cloister_attest::open(choice, options) {
        Ok(a) => panic!("expected no {choice} interface, found {}", a.tee()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_named_tee_opens_only_its_own_interfaces_and_never_another() {
    let root = tempfile::tempdir().unwrap();
    let paths = paths_under(root.path());
    fs::create_dir_all(root.path().join("dev")).unwrap();
    // A machine with a Nitro device and a CSV device, but no SNP interface.
    fs::write(&paths.nsm, b"").unwrap();
    fs::write(&paths.csv_guest, b"").unwrap();
    let options = BackendOptions::at(paths.clone());

    let text = open_err(HardwareTee::Snp, &options);
    assert!(text.starts_with("no snp attestation interface found; looked for:"), "{text}");
    assert!(text.contains(&paths.tsm_report.display().to_string()), "{text}");
    assert!(text.contains(&paths.sev_guest.display().to_string()), "{text}");
    assert!(!text.contains(&paths.nsm.display().to_string()), "{text}");

    for (choice, must_name) in [
        (HardwareTee::Tdx, &paths.tdx_guest),
        (HardwareTee::Cca, &paths.tsm_report),
        (HardwareTee::Sgx, &paths.attestation_dir),
    ] {
        let text = open_err(choice, &options);
        assert!(text.contains(&must_name.display().to_string()), "{choice}: {text}");
    }
    assert_eq!(cloister_attest::open(HardwareTee::Nitro, &options).unwrap().tee(), TeeKind::Nitro);
    assert_eq!(cloister_attest::open(HardwareTee::Csv, &options).unwrap().tee(), TeeKind::Csv);
    // `auto` takes the first in its order.
    assert_eq!(cloister_attest::open(HardwareTee::Auto, &options).unwrap().tee(), TeeKind::Nitro);

    fs::write(&paths.sev_guest, b"").unwrap();
    assert_eq!(cloister_attest::open(HardwareTee::Snp, &options).unwrap().tee(), TeeKind::Snp);
}

#[test]
fn a_configfs_tsm_of_another_provider_is_refused_by_name() {
    let root = tempfile::tempdir().unwrap();
    let paths = paths_under(root.path());
    let report_dir = root.path().join("report/worker");
    fs::create_dir_all(&report_dir).unwrap();
    fs::write(report_dir.join("provider"), "sev_guest\n").unwrap();
    let options = BackendOptions {
        tsm_report_dir: Some(report_dir.clone()),
        snp_vmpl: Some(2),
        ..BackendOptions::at(paths)
    };
    let text = open_err(HardwareTee::Tdx, &options);
    assert!(text.contains("its provider is sev_guest (snp), not tdx"), "{text}");
    assert!(
        text.contains("only gives a TDREPORT") || text.contains("(TDX): not present"),
        "{text}"
    );
    assert_eq!(cloister_attest::open(HardwareTee::Snp, &options).unwrap().tee(), TeeKind::Snp);
    assert_eq!(cloister_attest::open(HardwareTee::Auto, &options).unwrap().tee(), TeeKind::Snp);
}

#[test]
fn tee_names_parse_and_unknown_ones_list_the_choices() {
    for choice in HardwareTee::ALL {
        assert_eq!(choice.as_str().parse::<HardwareTee>().unwrap(), choice);
    }
    let err = "sim".parse::<HardwareTee>().unwrap_err().to_string();
    assert!(
        err.contains("\"sim\"") && err.contains("auto, tdx, snp, sgx, nitro, csv, cca"),
        "{err}"
    );
}

#[test]
fn gramine_reads_report_data_where_a_real_sgx_quote_has_it() {
    // The dcap-qvl sample quote binds "Hello, world!" zero-padded: a mismatch that names it
    // proves the offset.
    let root = tempfile::tempdir().unwrap();
    let dir = fake_gramine(root.path(), "dcap", &vector("sgx/dcapqvl_sgx_quote"));
    let err = GramineAttestation::new(&dir).attest(&runtime_data()).unwrap_err();
    let mut expected = [0u8; 64];
    expected[..13].copy_from_slice(b"Hello, world!");
    match err {
        AttestError::ReportDataMismatch { found, .. } => assert_eq!(found, hex::encode(expected)),
        other => panic!("{other}"),
    }
}
