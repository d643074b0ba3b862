//! configfs-tsm against a fake report directory: plain files for what the kernel provides, and
//! a FIFO as `outblob` so a "kernel" thread answers each read, sees what was written to
//! `inblob`, and can play a concurrent writer by bumping `generation`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread::JoinHandle;

use cloister_attest::{
    AttestError, Attester, ConfigFsTsm, TsmRequest, collect_tsm_report, parse_snp_cert_table,
};
use cloister_types::{Base64Url, Hex, RuntimeData, TeeKind};

fn runtime_data() -> RuntimeData {
    RuntimeData {
        nonce: "tsm-nonce".into(),
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(vec![3; 32]),
        receipt_pk: "receipt".into(),
        extra: BTreeMap::new(),
    }
}

/// A 1184-byte SNP report with `report_data` at 0x50.
fn snp_report(report_data: &[u8]) -> Vec<u8> {
    let mut report = vec![0u8; 0x4a0];
    report[0] = 3;
    report[0x50..0x90].copy_from_slice(report_data);
    report
}

/// The same, produced for VMPL 2.
fn snp_report_vmpl2(report_data: &[u8]) -> Vec<u8> {
    let mut report = snp_report(report_data);
    report[0x30] = 2;
    report
}

/// A TDX v4 quote body carrying `report_data` at 48 + 520.
fn tdx_quote(report_data: &[u8]) -> Vec<u8> {
    let mut quote = vec![0u8; 1200];
    quote[0] = 4;
    quote[4] = 0x81;
    quote[568..632].copy_from_slice(report_data);
    quote
}

const VCEK_GUID: [u8; 16] = [
    0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
];
const ARK_GUID: [u8; 16] = [
    0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae,
];

/// A certificate table with the given entries, blobs after the terminator.
fn cert_table(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
    let header = (entries.len() + 1) * 24;
    let mut table = Vec::new();
    let mut blobs = Vec::new();
    for (guid, blob) in entries {
        table.extend_from_slice(guid);
        table.extend_from_slice(&((header + blobs.len()) as u32).to_le_bytes());
        table.extend_from_slice(&(blob.len() as u32).to_le_bytes());
        blobs.extend_from_slice(blob);
    }
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&blobs);
    table
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A report directory as the kernel would populate it for `provider`, `outblob` a FIFO.
fn fake_report_dir(root: &Path, provider: &str, auxblob: Option<&[u8]>) -> PathBuf {
    let dir = root.join("report0");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("provider"), format!("{provider}\n")).unwrap();
    fs::write(dir.join("generation"), "0\n").unwrap();
    fs::write(dir.join("inblob"), b"").unwrap();
    fs::write(dir.join("privlevel"), b"").unwrap();
    if let Some(aux) = auxblob {
        fs::write(dir.join("auxblob"), aux).unwrap();
    }
    mkfifo(&dir.join("outblob"));
    dir
}

/// The "kernel": for each of `rounds` reads of `outblob`, records (and empties) `inblob`,
/// plays a concurrent writer when `race(round)` (bumps `generation` before answering), and
/// answers with `answer(inblob)`. Returns the `inblob` contents it saw. (A real kernel also
/// bumps `generation` for the caller's own writes; only a change after them matters.)
fn fake_kernel(
    dir: &Path,
    rounds: usize,
    race: fn(usize) -> bool,
    answer: fn(&[u8]) -> Vec<u8>,
) -> JoinHandle<Vec<Vec<u8>>> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for round in 0..rounds {
            // Wait for the request. The kernel thread empties inblob after each answer, so this
            // also waits until the attester is done reading the previous answer (it writes
            // the next request only then) and a reopened FIFO cannot meet the old reader.
            while fs::metadata(dir.join("inblob")).unwrap().len() == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // Blocks until the attester opens outblob for reading.
            let mut out = fs::OpenOptions::new().write(true).open(dir.join("outblob")).unwrap();
            let inblob = fs::read(dir.join("inblob")).unwrap();
            fs::write(dir.join("inblob"), b"").unwrap();
            if race(round) {
                let generation: u64 =
                    fs::read_to_string(dir.join("generation")).unwrap().trim().parse().unwrap();
                fs::write(dir.join("generation"), format!("{}\n", generation + 1)).unwrap();
            }
            out.write_all(&answer(&inblob)).unwrap();
            seen.push(inblob);
        }
        seen
    })
}

fn no_race(_: usize) -> bool {
    false
}

#[test]
fn snp_report_binds_report_data_and_carries_the_certificate_table() {
    let root = tempfile::tempdir().unwrap();
    let table = cert_table(&[(VCEK_GUID, b"vcek-der"), (ARK_GUID, b"ark-der")]);
    let dir = fake_report_dir(root.path(), "sev_guest", Some(&table));
    let kernel = fake_kernel(&dir, 1, no_race, snp_report_vmpl2);

    let tsm = ConfigFsTsm::with_report_dir(&dir).unwrap().with_privlevel(2);
    assert_eq!(tsm.tee(), TeeKind::Snp);
    assert_eq!(tsm.provider(), "sev_guest");
    let rd = runtime_data();
    let evidence = tsm.attest(&rd).unwrap();
    let seen = kernel.join().unwrap();

    let expected = rd.report_data().unwrap().0;
    // inblob received exactly the 64 report_data bytes, privlevel the level.
    assert_eq!(seen, vec![expected.to_vec()]);
    assert_eq!(fs::read_to_string(dir.join("privlevel")).unwrap(), "2\n");

    assert_eq!(evidence.tee, TeeKind::Snp);
    assert_eq!(evidence.evidence.0, snp_report_vmpl2(&expected));
    assert_eq!(evidence.runtime_data, rd);
    let certs: Vec<Vec<u8>> = evidence.collateral["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Base64Url::parse(v.as_str().unwrap()).unwrap().0)
        .collect();
    assert_eq!(certs, vec![b"vcek-der".to_vec(), b"ark-der".to_vec()]);
    assert_eq!(evidence.collateral.len(), 1);
}

#[test]
fn tdx_quote_binds_report_data() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_report_dir(root.path(), "tdx_guest", None);
    let kernel = fake_kernel(&dir, 1, no_race, tdx_quote);
    let tsm = ConfigFsTsm::with_report_dir(&dir).unwrap();
    assert_eq!(tsm.tee(), TeeKind::Tdx);
    let rd = runtime_data();
    let evidence = tsm.attest(&rd).unwrap();
    kernel.join().unwrap();
    assert_eq!(evidence.tee, TeeKind::Tdx);
    assert_eq!(evidence.evidence.0, tdx_quote(&rd.report_data().unwrap().0));
    assert!(evidence.collateral.is_empty());
}

#[test]
fn evidence_for_other_report_data_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_report_dir(root.path(), "sev_guest", None);
    let kernel = fake_kernel(&dir, 1, no_race, |_| snp_report(&[0xee; 64]));
    let err = ConfigFsTsm::with_report_dir(&dir).unwrap().attest(&runtime_data()).unwrap_err();
    kernel.join().unwrap();
    assert!(matches!(err, AttestError::ReportDataMismatch { .. }), "{err}");
    assert!(err.to_string().contains("outblob"), "{err}");
}

#[test]
fn an_snp_report_for_another_privilege_level_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_report_dir(root.path(), "sev_guest", None);
    let kernel = fake_kernel(&dir, 1, no_race, snp_report);
    let tsm = ConfigFsTsm::with_report_dir(&dir).unwrap().with_privlevel(2);
    let err = tsm.attest(&runtime_data()).unwrap_err();
    kernel.join().unwrap();
    assert!(err.to_string().ends_with("the report is for VMPL 0, not the requested 2"), "{err}");
}

#[test]
fn a_generation_race_is_retried_then_succeeds() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_report_dir(root.path(), "sev_guest", None);
    let kernel = fake_kernel(&dir, 2, |round| round == 0, snp_report);
    let report_data = [0x42u8; 64];
    let report =
        collect_tsm_report(&dir, &TsmRequest { inblob: &report_data, privlevel: None }, 3).unwrap();
    let seen = kernel.join().unwrap();
    // Two exchanges: the first raced, the second was clean; each wrote the same 64 bytes.
    assert_eq!(seen, vec![report_data.to_vec(), report_data.to_vec()]);
    assert_eq!(report.generation, 1);
    assert_eq!(report.provider, "sev_guest");
    assert_eq!(report.outblob, snp_report(&report_data));
    assert_eq!(report.auxblob, None);
}

#[test]
fn a_generation_race_every_time_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_report_dir(root.path(), "tdx_guest", None);
    let kernel = fake_kernel(&dir, 3, |_| true, tdx_quote);
    let err = ConfigFsTsm::with_report_dir(&dir).unwrap().attest(&runtime_data()).unwrap_err();
    assert_eq!(kernel.join().unwrap().len(), 3);
    match &err {
        AttestError::GenerationRace { dir: d, attempts } => {
            assert_eq!(d, &dir);
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected a generation race, got {other}"),
    }
    assert!(err.to_string().contains("another process"), "{err}");
}

#[test]
fn unknown_provider_and_missing_files_are_named() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r");
    fs::create_dir(&dir).unwrap();
    let err = ConfigFsTsm::with_report_dir(&dir).unwrap_err();
    assert!(err.to_string().contains(&dir.join("provider").display().to_string()), "{err}");

    fs::write(dir.join("provider"), "mystery_guest\n").unwrap();
    let err = ConfigFsTsm::with_report_dir(&dir).unwrap_err();
    assert!(
        matches!(err, AttestError::UnknownProvider { ref provider, .. } if provider == "mystery_guest")
    );

    // A provider but no inblob: the write names the file.
    fs::write(dir.join("provider"), "sev_guest\n").unwrap();
    let err = ConfigFsTsm::with_report_dir(&dir).unwrap().attest(&runtime_data()).unwrap_err();
    assert!(err.to_string().starts_with("opening "), "{err}");
    assert!(err.to_string().contains("inblob"), "{err}");

    // Garbage in generation.
    fs::write(dir.join("inblob"), b"").unwrap();
    fs::write(dir.join("generation"), "many\n").unwrap();
    let err = ConfigFsTsm::with_report_dir(&dir).unwrap().attest(&runtime_data()).unwrap_err();
    assert!(err.to_string().contains("generation \"many\" is not a number"), "{err}");
}

#[test]
fn probe_creates_and_removes_its_report_directory() {
    // A plain directory is not configfs: mkdir gives an empty directory without `provider`.
    // The probe must fail naming that file, and leave nothing behind.
    let root = tempfile::tempdir().unwrap();
    let err = ConfigFsTsm::probe(root.path()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&root.path().display().to_string()) && text.contains("provider"),
        "{text}"
    );
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);

    let missing = root.path().join("no-configfs");
    let err = ConfigFsTsm::probe(&missing).unwrap_err();
    assert!(err.to_string().contains("Linux >= 6.7"), "{err}");
}

#[test]
fn certificate_tables_are_parsed_strictly() {
    let p = Path::new("auxblob");
    let table = cert_table(&[(VCEK_GUID, b"v"), ([7; 16], b"other")]);
    let certs = parse_snp_cert_table(p, &table).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0].name, Some("VCEK"));
    assert_eq!(certs[0].der, b"v");
    assert_eq!(certs[1].name, None);
    assert_eq!(parse_snp_cert_table(p, &[0; 4096]).unwrap(), vec![]);

    // Cut off before the terminator: the first entry's blob is gone.
    assert!(parse_snp_cert_table(p, &table[..24]).is_err());
    // No terminator (one entry whose blob is the entry itself, then nothing).
    let mut unterminated = vec![7u8; 16];
    unterminated.extend_from_slice(&0u32.to_le_bytes());
    unterminated.extend_from_slice(&24u32.to_le_bytes());
    let err = parse_snp_cert_table(p, &unterminated).unwrap_err();
    assert!(err.to_string().contains("no terminating entry"), "{err}");
    // An entry pointing outside the table.
    let mut bad = table.clone();
    bad[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = parse_snp_cert_table(p, &bad).unwrap_err();
    assert!(err.to_string().contains("points outside the table"), "{err}");
    // An empty blob.
    let mut empty = table;
    empty[20..24].copy_from_slice(&0u32.to_le_bytes());
    assert!(parse_snp_cert_table(p, &empty).is_err());
}

fn vector(relative: &str) -> Vec<u8> {
    let dir = match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    let path = dir.join(relative);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read vector {}: {e}", path.display()))
}

// The fake kernel answers through a plain fn; real vectors reach it through this slot (only
// the one test below uses it).
static ANSWER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn found_report_data(provider: &str, evidence: Vec<u8>) -> String {
    *ANSWER.lock().unwrap() = evidence;
    let root = tempfile::tempdir().unwrap();
    let dir = fake_report_dir(root.path(), provider, None);
    let kernel = fake_kernel(&dir, 1, no_race, |_| ANSWER.lock().unwrap().clone());
    let err = ConfigFsTsm::with_report_dir(&dir).unwrap().attest(&runtime_data()).unwrap_err();
    kernel.join().unwrap();
    match err {
        AttestError::ReportDataMismatch { found, .. } => found,
        other => panic!("{other}"),
    }
}

#[test]
fn report_data_is_read_where_real_evidence_has_it() {
    // Real quotes and reports bind someone else's report_data: the mismatch error names what
    // was found, which must be the value the vectors' README lists.
    assert_eq!(
        found_report_data("tdx_guest", vector("tdx/dcapqvl_tdx_quote")),
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9\
         eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
    // Version 5 (TDX 1.5 body): the body descriptor shifts the body by 6 bytes.
    assert_eq!(
        found_report_data("tdx_guest", vector("tdx/dcapqvl_tdx_quote_outdated")),
        format!(
            "d2142b643598eb5fae2bc8529dd79a558b29f868ccbb6531cb28dab9dce47728{}",
            "00".repeat(32)
        )
    );
    let report = vector("snp/trustee_test-report.bin");
    assert_eq!(found_report_data("sev_guest", report.clone()), hex::encode(&report[0x50..0x90]));
}
