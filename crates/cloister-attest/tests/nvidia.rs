//! The NVIDIA GPU path against a fake NVML (tests/fake/nvml.c, compiled here with `cc`): the
//! nonce each GPU is asked to sign is SHA-256 of the CPU evidence's report_data, every GPU is
//! attached as `gpu0`, `gpu1`, … with its certificate chain, a report over another nonce is
//! refused, and a system whose GPUs are not in confidential-computing mode is refused by name,
//! never attested.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use cloister_attest::{AttestError, Attester, NvidiaGpus, SimAttester, SimPlatformKey, WithGpus};
use cloister_types::{Hex, RuntimeData, TeeKind};
use sha2::{Digest as _, Sha256};

fn vector(relative: &str) -> PathBuf {
    let dir = match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    dir.join(relative)
}

/// Compiles the fake NVML into a new folder under `dir` (a loaded library is never
/// overwritten) with `config` as its configuration; `defines` are extra `-D` flags. Returns the
/// library's path.
fn fake_nvml(dir: &Path, config: &str, defines: &[&str]) -> PathBuf {
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let build = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = dir.join(format!("nvml-{build}"));
    fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("fake-nvml.conf");
    fs::write(&config_path, config).unwrap();
    let library = dir.join("libnvidia-ml.so.1");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake/nvml.c");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&library)
        .arg(format!("-DFAKE_CONFIG=\"{}\"", config_path.display()))
        .args(defines)
        .arg(&source)
        .status()
        .expect("a C compiler (cc) builds the fake NVML");
    assert!(status.success(), "compiling the fake NVML failed");
    library
}

/// The real Hopper report of the vectors (its nonce is replaced by the fake) and its chain.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let hex_text =
        fs::read_to_string(vector("nvidia/trustee_hopperAttestationReport.txt")).unwrap();
    let report = dir.join("report.bin");
    fs::write(&report, hex::decode(hex_text.trim()).unwrap()).unwrap();
    (report, vector("nvidia/trustee_hopper_cert_chain_case1.txt"))
}

fn runtime_data() -> RuntimeData {
    RuntimeData {
        nonce: "gpu-nonce".into(),
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(vec![7; 32]),
        receipt_pk: "receipt".into(),
        extra: BTreeMap::new(),
    }
}

fn cpu() -> Box<dyn Attester> {
    Box::new(SimAttester::new(SimPlatformKey::generate(), [0x42; 48]))
}

fn open_err(library: &Path) -> String {
    match NvidiaGpus::open(library) {
        Ok(gpus) => panic!("expected a refusal, got {} GPUs", gpus.count()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_gpu_signs_sha256_of_the_report_data_and_travels_with_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (report, chain) = inputs(dir.path());
    let nonces = dir.path().join("nonces");
    let config = format!(
        "cc=1\ndevtools=0\ngpus=2\nreport={}\nchain={}\nnonces={}\n",
        report.display(),
        chain.display(),
        nonces.display()
    );
    let library = fake_nvml(dir.path(), &config, &[]);
    let attester = WithGpus::new(cpu(), NvidiaGpus::open(&library).unwrap());
    assert_eq!(attester.tee(), TeeKind::Sim);

    let rd = runtime_data();
    let evidence = attester.attest(&rd).unwrap();
    let expected_nonce = Sha256::digest(rd.report_data().unwrap().0);
    // The library was asked for exactly that nonce, once per GPU.
    let asked = fs::read_to_string(&nonces).unwrap();
    assert_eq!(asked.lines().collect::<Vec<_>>(), vec![hex::encode(expected_nonce); 2]);

    assert_eq!(evidence.additional_evidence.keys().collect::<Vec<_>>(), ["gpu0", "gpu1"]);
    let template = fs::read(&report).unwrap();
    for entry in evidence.additional_evidence.values() {
        assert_eq!(entry["tee"], "nvidia");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bytes = b64.decode(entry["evidence"].as_str().unwrap()).unwrap();
        assert_eq!(&bytes[4..36], expected_nonce.as_slice());
        assert_eq!(bytes[..4], template[..4]);
        assert_eq!(bytes[36..], template[36..]);
        let certificates = entry["collateral"]["certificates"].as_array().unwrap();
        assert_eq!(certificates.len(), 5);
        // Leaf first, as NVML gives it: the first PEM block of the chain file.
        let pem = fs::read_to_string(&chain).unwrap();
        let first_block: String =
            pem.lines().skip(1).take_while(|l| !l.starts_with("-----END")).collect();
        let first = base64::engine::general_purpose::STANDARD.decode(first_block).unwrap();
        assert_eq!(b64.decode(certificates[0].as_str().unwrap()).unwrap(), first);
    }
}

#[test]
fn a_report_over_another_nonce_is_refused_before_it_leaves_the_enclave() {
    let dir = tempfile::tempdir().unwrap();
    let (report, chain) = inputs(dir.path());
    let config =
        format!("cc=1\ngpus=1\nreport={}\nchain={}\ntamper=1\n", report.display(), chain.display());
    let library = fake_nvml(dir.path(), &config, &[]);
    let attester = WithGpus::new(cpu(), NvidiaGpus::open(&library).unwrap());
    match attester.attest(&runtime_data()) {
        Err(AttestError::ReportDataMismatch { path, .. }) => {
            assert!(path.ends_with("gpu0"), "{}", path.display());
        }
        other => panic!("expected a nonce mismatch, got {other:?}"),
    }
}

#[test]
fn gpus_outside_confidential_computing_mode_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (report, chain) = inputs(dir.path());
    let files = format!("report={}\nchain={}\n", report.display(), chain.display());

    let library = fake_nvml(dir.path(), &format!("cc=0\ngpus=1\n{files}"), &[]);
    let err = open_err(&library);
    assert!(err.contains("confidential computing is not enabled"), "{err}");
    assert!(err.contains("protects nothing"), "{err}");

    let library = fake_nvml(dir.path(), &format!("cc=1\ndevtools=1\ngpus=1\n{files}"), &[]);
    assert!(open_err(&library).contains("devtools"));

    let library = fake_nvml(dir.path(), &format!("cc=1\ngpus=0\n{files}"), &[]);
    assert!(open_err(&library).contains("sees no GPU"));

    // A driver without the confidential-computing calls, and no driver at all.
    let library = fake_nvml(dir.path(), "cc=1\ngpus=1\n", &["-DNO_CC"]);
    let err = open_err(&library);
    assert!(
        err.contains("cannot load NVML") && err.contains("nvmlSystemGetConfComputeState"),
        "{err}"
    );
    let err = open_err(&dir.path().join("missing/libnvidia-ml.so.1"));
    assert!(err.contains("cannot load NVML from") && err.contains("missing"), "{err}");
}
