//! `cloister evidence verify` as people who debug attestation run it: one real vector per TEE
//! (time pinned), raw, hex and base64 files, claims as JSON on success, one line naming the
//! failed check and exit 1 on failure. And `cloister measure --tee …` on every published case
//! of `measure-cases.tsv`, typed as its rows say, with the negatives refused by name.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use base64::Engine as _;

/// The vectors folder: `$CLOISTER_VECTORS`, or `../shared/vectors` beside the checkout.
fn vector(relative: &str) -> String {
    let dir = match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    dir.join(relative).to_string_lossy().into_owned()
}

fn verify(args: &[&str]) -> Output {
    let mut all = vec!["evidence", "verify"];
    all.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_cloister")).args(&all).output().unwrap()
}

/// Claims of a successful run; fails the test with the tool's stderr otherwise.
fn claims(args: &[&str]) -> serde_json::Value {
    let out = verify(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The one line a failed run prints on stderr (exit 1, nothing on stdout).
fn refusal(args: &[&str]) -> String {
    let out = verify(args);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout without --json");
    let text = String::from_utf8(out.stderr).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text.trim_end().to_owned()
}

#[test]
fn sgx_quote_with_its_collateral_bundle() {
    let c = claims(&[
        "--tee",
        "sgx",
        "--evidence",
        &vector("sgx/dcapqvl_sgx_quote"),
        "--collateral",
        &vector("sgx/dcapqvl_sgx_quote_collateral.json"),
        "--at",
        "2025-06-20T00:00:00Z",
    ]);
    assert_eq!(c["tee"], "sgx");
    assert_eq!(c["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(c["advisories"], serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"]));
    assert_eq!(
        c["measurement"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(c["signer"], "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6");
}

#[test]
fn tdx_quote_up_to_date_then_refused_once_its_collateral_expired() {
    let quote = vector("tdx/dcapqvl_tdx_quote");
    let collateral = vector("tdx/dcapqvl_tdx_quote_collateral.json");
    let c = claims(&[
        "--tee",
        "tdx",
        "--evidence",
        &quote,
        "--collateral",
        &collateral,
        "--at",
        "2025-06-20T00:00:00Z",
    ]);
    assert_eq!(c["tcb_status"], "UpToDate");
    assert_eq!(c["tdx"]["mr_td"], c["measurement"]);
    let line = refusal(&[
        "--tee",
        "tdx",
        "--evidence",
        &quote,
        "--collateral",
        &collateral,
        "--at",
        "2025-08-20T00:00:00Z",
    ]);
    assert_eq!(line, "tdx: collateral: tcbInfo expired at 2025-07-19T10:16:03Z (its nextUpdate)");
}

#[test]
fn tdx_quote_without_collateral_checks_the_pck_chain_and_says_unknown() {
    let quote = vector("tdx/trustee_tdx_quote_4.dat");
    let c = claims(&["--tee", "tdx", "--evidence", &quote, "--at", "2025-01-01T00:00:00Z"]);
    assert_eq!(c["tcb_status"], "unknown");
    assert_eq!(
        c["measurement"],
        "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031"
    );
    let line = refusal(&["--tee", "tdx", "--evidence", &quote, "--at", "2040-01-01T00:00:00Z"]);
    assert!(
        line.starts_with("tdx: PCK certificate chain: ") && line.contains("expired at"),
        "{line}"
    );
}

#[test]
fn snp_report_with_vcek_and_amd_chain() {
    let report = vector("snp/trustee_test-report.bin");
    let vcek = vector("snp/trustee_test-vcek.der");
    let chain = vector("snp/milan_ask_ark_asvk.pem");
    let args = [
        "--tee",
        "snp",
        "--evidence",
        &report,
        "--cert",
        &vcek,
        "--cert",
        &chain,
        "--at",
        "2025-06-01T00:00:00Z",
    ];
    let c = claims(&args);
    assert_eq!(
        c["measurement"],
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );
    assert_eq!(c["tcb_status"], "unknown");
    assert_eq!(c["snp"]["reported_tcb"]["microcode"], 115);

    // Without the VCEK the tool says where to fetch it.
    let line = refusal(&[
        "--tee",
        "snp",
        "--evidence",
        &report,
        "--cert",
        &chain,
        "--at",
        "2025-06-01T00:00:00Z",
    ]);
    assert!(line.starts_with("snp: no VCEK certificate given"), "{line}");
    assert!(line.contains("https://kdsintf.amd.com/vcek/v1/Milan/"), "{line}");

    // A flipped byte in the signed report.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&report).unwrap();
    bytes[42] ^= 1;
    let tampered = dir.path().join("tampered.bin");
    std::fs::write(&tampered, &bytes).unwrap();
    let tampered = tampered.to_string_lossy().into_owned();
    let line = refusal(&[
        "--tee",
        "snp",
        "--evidence",
        &tampered,
        "--cert",
        &vcek,
        "--cert",
        &chain,
        "--at",
        "2025-06-01T00:00:00Z",
    ]);
    assert!(line.starts_with("snp: ") && line.contains("signature"), "{line}");
}

#[test]
fn evidence_may_be_raw_hex_or_base64() {
    let report = std::fs::read(vector("snp/trustee_test-report.bin")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hex_file = dir.path().join("report.hex");
    std::fs::write(&hex_file, hex::encode(&report) + "\n").unwrap();
    let b64_file = dir.path().join("report.b64");
    std::fs::write(&b64_file, base64::engine::general_purpose::STANDARD.encode(&report)).unwrap();
    let (vcek, chain) = (vector("snp/trustee_test-vcek.der"), vector("snp/milan_ask_ark_asvk.pem"));
    let mut seen = Vec::new();
    for file in [
        vector("snp/trustee_test-report.bin"),
        hex_file.to_string_lossy().into(),
        b64_file.to_string_lossy().into(),
    ] {
        seen.push(claims(&[
            "--tee",
            "snp",
            "--evidence",
            &file,
            "--cert",
            &vcek,
            "--cert",
            &chain,
            "--at",
            "2025-06-01T00:00:00Z",
        ]));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}

/// `evidence verify --tee snp --evidence report.bin --cert vcek.der` works offline: AMD's ASK
/// and ARK are built in.
#[test]
fn an_snp_report_verifies_offline_with_only_its_vcek() {
    let args = |with_chain: bool| {
        let mut args = vec![
            "--tee".to_owned(),
            "snp".into(),
            "--evidence".into(),
            vector("snp/trustee_test-report.bin"),
            "--cert".into(),
            vector("snp/trustee_test-vcek.der"),
            "--at".into(),
            "2025-06-01T00:00:00Z".into(),
        ];
        if with_chain {
            args.extend(["--cert".into(), vector("snp/milan_ask_ark_asvk.pem")]);
        }
        args
    };
    let alone = claims(&args(false).iter().map(String::as_str).collect::<Vec<_>>());
    let with_chain = claims(&args(true).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(alone, with_chain);
    assert_eq!(alone["snp"]["trust_anchor"], "vendor", "{alone}");
}

#[test]
fn csv_report_through_the_hygon_chain_and_the_partial_trustee_evidence() {
    let c = claims(&[
        "--tee",
        "csv",
        "--evidence",
        &vector("csv/csvrs_report.cert"),
        "--cert",
        &vector("csv/hygon_hrk.cert"),
        "--cert",
        &vector("csv/csvrs_hsk.cert"),
        "--cert",
        &vector("csv/csvrs_cek.cert"),
    ]);
    assert_eq!(
        c["measurement"],
        "1178dadbf826ec7a07444ba358376d81c312cb53d703f9da83b26c1eee2ea052"
    );
    assert!(c["report_data"].as_str().unwrap().starts_with(&hex::encode("user data")));
    let line = refusal(&[
        "--tee",
        "csv",
        "--evidence",
        &vector("csv/trustee_csv_evidence.json"),
        "--cert",
        &vector("csv/hygon_hrk.cert"),
    ]);
    assert_eq!(
        line,
        "csv: no HSK/CEK certificate for chip KPA64911240507 (fetch them from the Hygon KDS: \
         https://cert.hygon.cn/hsk_cek?snumber=KPA64911240507)"
    );
}

#[test]
fn cca_token_needs_its_cpak_as_a_trust_anchor() {
    let token = vector("cca/trustee_cca-example-token.cbor");
    let c = claims(&[
        "--tee",
        "cca",
        "--evidence",
        &token,
        "--trust-anchor",
        &vector("cca/trustee_cpak-pub.json"),
    ]);
    assert!(c["measurement"].as_str().unwrap().starts_with("ae87fbf7f105e71a"));
    let line = refusal(&["--tee", "cca", "--evidence", &token]);
    assert!(line.starts_with("cca: no CPAK trust anchor"), "{line}");
    let line = refusal(&[
        "--tee",
        "cca",
        "--evidence",
        &vector("cca/rustccatoken_bug-33-repro.cbor"),
        "--trust-anchor",
        &vector("cca/rustccatoken_ta-tfa.json"),
    ]);
    assert!(line.starts_with("cca: realm token is not bound to the platform token"), "{line}");
}

#[test]
fn nitro_document_at_its_time_and_three_hours_later() {
    let doc = vector("nitro/evervault_beta_valid-attestation-doc-bytes");
    let c = claims(&["--tee", "nitro", "--evidence", &doc, "--at", "2022-10-13T08:58:02Z"]);
    assert!(c["measurement"].as_str().unwrap().starts_with("f4d48b81a460c991"));
    assert_eq!(c["debug"], false);
    let line = refusal(&["--tee", "nitro", "--evidence", &doc, "--at", "2022-10-13T12:58:02Z"]);
    assert!(
        line.starts_with("nitro: certificate chain: ")
            && line.contains("expired at 2022-10-13T11:58:02Z"),
        "{line}"
    );
}

#[test]
fn nvidia_hex_transcript_with_its_device_chain() {
    let report = vector("nvidia/trustee_hopperAttestationReport.txt");
    let args = [
        "--tee",
        "nvidia",
        "--evidence",
        &report,
        "--cert",
        &vector("nvidia/trustee_hopper_cert_chain_case1.txt"),
        "--at",
        "2024-06-01T00:00:00Z",
    ];
    let c = claims(&args);
    assert_eq!(
        c["report_data"],
        "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
    );
    assert_eq!(c["nvidia"]["driver_version"], "550.90.07");
    let line = refusal(&[
        "--tee",
        "nvidia",
        "--evidence",
        &report,
        "--cert",
        &vector("nvidia/trustee_hopper_cert_chain_case4.txt"),
        "--at",
        "2024-06-01T00:00:00Z",
    ]);
    assert!(line.starts_with("nvidia: FWID extension"), "{line}");
}

#[test]
fn json_mode_prints_one_line_also_on_failure() {
    let doc = vector("nitro/evervault_beta_valid-attestation-doc-bytes");
    let out =
        verify(&["--tee", "nitro", "--evidence", &doc, "--at", "2022-10-13T08:58:02Z", "--json"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let out =
        verify(&["--tee", "nitro", "--evidence", &doc, "--at", "2030-01-01T00:00:00Z", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(error["error"].as_str().unwrap().starts_with("nitro: "), "{error}");
}

#[test]
fn bad_arguments_are_named() {
    let out = verify(&["--tee", "tpm", "--evidence", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tee \"tpm\" is not one of"));
    let out = verify(&["--tee", "snp", "--evidence", "/nonexistent/report.bin"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/report.bin"));
    let out = verify(&[
        "--tee",
        "snp",
        "--evidence",
        &vector("snp/trustee_test-report.bin"),
        "--at",
        "yesterday",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an RFC 3339 time"));
}

#[test]
fn unified_evidence_is_verified_with_its_binding() {
    use cloister_attest::{Attester as _, SimAttester, SimPlatformKey};
    let dir = tempfile::tempdir().unwrap();
    let platform = SimPlatformKey::generate();
    let anchor = dir.path().join("sim-platform.pub");
    std::fs::write(&anchor, platform.public_key().to_text()).unwrap();
    let attester = SimAttester::new(platform, [7; 48]);
    let runtime_data = cloister_types::RuntimeData {
        nonce: "n-1".into(),
        hpke_pk: "hpke".into(),
        tls_spki_sha256: cloister_types::Hex(vec![1; 32]),
        receipt_pk: "receipt".into(),
        extra: Default::default(),
    };
    let mut evidence = attester.attest(&runtime_data).unwrap();
    let path = dir.path().join("evidence.json");
    std::fs::write(&path, serde_json::to_vec(&evidence).unwrap()).unwrap();
    let path_text = path.to_string_lossy().into_owned();
    let anchor_text = anchor.to_string_lossy().into_owned();
    let c = claims(&["--unified", &path_text, "--trust-anchor", &anchor_text]);
    assert_eq!(c["cpu0"]["tee"], "sim");
    assert_eq!(c["cpu0"]["measurement"], hex::encode([7; 48]));

    // The same evidence with other runtime data is not bound to it.
    evidence.runtime_data.nonce = "n-2".into();
    std::fs::write(&path, serde_json::to_vec(&evidence).unwrap()).unwrap();
    let line = refusal(&["--unified", &path_text, "--trust-anchor", &anchor_text]);
    assert!(
        line.starts_with("report_data in the evidence does not match the runtime data"),
        "{line}"
    );

    // A real TDX quote in unified form verifies up to its binding.
    let quote = std::fs::read(vector("tdx/dcapqvl_tdx_quote")).unwrap();
    let unified = serde_json::json!({
        "version": 1, "tee": "tdx",
        "evidence": cloister_types::Base64Url::encode(&quote),
        "runtime_data": runtime_data,
    });
    std::fs::write(&path, serde_json::to_vec(&unified).unwrap()).unwrap();
    let line = refusal(&[
        "--unified",
        &path_text,
        "--collateral",
        &vector("tdx/dcapqvl_tdx_quote_collateral.json"),
        "--at",
        "2025-06-20T00:00:00Z",
    ]);
    assert!(line.starts_with("report_data in the evidence does not match"), "{line}");
}

#[test]
fn collect_says_which_tee_interfaces_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let rd = dir.path().join("rd.json");
    std::fs::write(&rd, r#"{"nonce":"n","hpke_pk":"h","tls_spki_sha256":"00","receipt_pk":"r"}"#)
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["evidence", "collect", "--runtime-data", &rd.to_string_lossy()])
        .output()
        .unwrap();
    // This machine is no TEE: the command must say so and what it looked for, not invent evidence.
    if std::path::Path::new("/sys/kernel/config/tsm/report").exists()
        || std::path::Path::new("/dev/sev-guest").exists()
    {
        return; // a real TEE guest: nothing to assert about the refusal here
    }
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("/dev/sev-guest") && text.contains("configfs-tsm"), "{text}");
    assert!(out.stdout.is_empty());
}

/// A row's arguments split as a POSIX shell would split these (words, and '…' or "…" quoting).
fn shell_words(text: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => (word.push(c), in_word = true).1,
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn measure(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .arg("measure")
        .args(args)
        .current_dir(vector(""))
        .output()
        .unwrap()
}

#[test]
fn every_published_measurement_case_prints_its_value_as_a_user_types_it() {
    let table = std::fs::read_to_string(vector("measure-cases.tsv")).unwrap();
    let mut cases = 0;
    for line in table.lines().skip(1).filter(|line| !line.trim().is_empty()) {
        let [tee, field, expected, arguments] = line.splitn(4, '\t').collect::<Vec<_>>()[..] else {
            panic!("a row of measure-cases.tsv without four columns: {line:?}");
        };
        let mut args = vec!["--tee".to_owned(), tee.to_owned(), "--json".to_owned()];
        args.extend(shell_words(arguments));
        let out = measure(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed[field], expected, "{args:?}");
        assert_eq!(printed["tee"], tee);
        // Without --json, the same value on a `field: value` line.
        let text = measure(
            &args[..1].iter().chain(&args[1..2]).chain(&args[3..]).cloned().collect::<Vec<_>>(),
        );
        let text = String::from_utf8(text.stdout).unwrap();
        assert!(text.lines().any(|l| l == format!("{field}: {expected}")), "{args:?}: {text}");
        cases += 1;
    }
    assert_eq!(cases, 14);
}

#[test]
fn measurement_inputs_that_cannot_give_the_value_are_refused_by_name() {
    let words = |text: &str| shell_words(text);
    let refused = |args: &str| {
        let out = measure(&words(args));
        assert!(!out.status.success(), "{args} should fail");
        assert!(out.stdout.is_empty(), "{args}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    };
    // A kernel for a firmware without the kernel-hashes section.
    let err = refused(
        "--tee snp --ovmf measure-snp/virteesev_ovmf_OvmfX64_suffix.bin --vcpus 1 \
         --vcpu-type EPYC-v4 --kernel /dev/null",
    );
    assert!(err.to_lowercase().contains("kernel"), "{err}");
    // QEMU needs the vCPU type; an unknown VMM lists the known ones.
    let err = refused("--tee snp --ovmf measure-snp/virteesev_ovmf_AmdSev_suffix.bin");
    assert!(err.contains("vCPU type"), "{err}");
    let err = refused(
        "--tee snp --ovmf measure-snp/virteesev_ovmf_AmdSev_suffix.bin --vcpu-type EPYC --vmm xen",
    );
    assert!(err.contains("qemu") && err.contains("ec2") && err.contains("gce"), "{err}");
    // An SVSM without its variable-store size.
    let err = refused(
        "--tee snp --ovmf measure-snp/snpmeasure_svsm_ovmf.fd --svsm measure-snp/snpmeasure_svsm.bin",
    );
    assert!(err.contains("--vars-size"), "{err}");
    // Another TEE's flags, a missing input, a file that is not an event log.
    let err = refused("--tee tdx --ovmf measure-snp/virteesev_ovmf_AmdSev_suffix.bin");
    assert!(err.contains("--ovmf applies to --tee snp"), "{err}");
    let err = refused("--tee tdx");
    assert!(err.contains("--event-log"), "{err}");
    let err = refused("--tee sgx --vcpus 4 --sgxs measure-sgx/fortanix_test_enclave.sgxs");
    assert!(err.contains("--vcpus applies to --tee snp"), "{err}");
    let err = refused("--tee tdx --event-log measure-sgx/fortanix_test_enclave.sig");
    assert!(err.contains("not a crypto-agile TCG event log"), "{err}");
    let err = refused("--tee sgx --sgxs measure-tdx/trustee_eventlog_CCEL_data_gcp");
    assert!(err.to_lowercase().contains("sgxs"), "{err}");
    let err = refused("--tee sev --ovmf x");
    assert!(err.contains("sim, snp, tdx, sgx"), "{err}");
}

#[test]
fn the_simulated_measurement_prints_bare_hex_for_scripts_and_json_when_asked() {
    let exe = env!("CARGO_BIN_EXE_cloister").to_owned();
    let out = measure(std::slice::from_ref(&exe));
    let bare = String::from_utf8(out.stdout).unwrap();
    assert_eq!(bare.trim().len(), 96, "{bare}");
    let out = measure(&["--json".to_owned(), exe]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["measurement"], bare.trim());
    assert_eq!(json["tee"], "sim");
}

/// PSA tokens from the command line: TF-M's PSA 2.0.0 and PSA_IOT_PROFILE_1 tokens with the
/// TF-M test IAK as the trust anchor; the RFC 9783 example token under that key is refused.
#[test]
fn psa_tokens_verify_with_their_iak_and_not_with_another() {
    let iak = vector("psa/psatoken_tfm_public.pem");
    let c = claims(&[
        "--tee",
        "psa",
        "--evidence",
        &vector("psa/psatoken_tfm_psa-2_0_0_sign1.bin"),
        "--trust-anchor",
        &iak,
    ]);
    assert_eq!(c["tee"], "psa");
    assert_eq!(c["psa"]["profile"], "http://arm.com/psa/2.0.0");
    assert_eq!(c["psa"]["software_components"][0]["measurement_type"], "SPE");
    let c = claims(&[
        "--tee",
        "psa",
        "--evidence",
        &vector("psa/psatoken_evidence_test_tfmP1Sign1.cbor"),
        "--trust-anchor",
        &iak,
    ]);
    assert_eq!(c["psa"]["profile"], "PSA_IOT_PROFILE_1");
    let line = refusal(&[
        "--tee",
        "psa",
        "--evidence",
        &vector("psa/draftpsa_psa-sign1.cbor"),
        "--trust-anchor",
        &iak,
    ]);
    assert!(line.starts_with("psa: "), "{line}");
    let line = refusal(&["--tee", "psa", "--evidence", &vector("psa/draftpsa_psa-sign1.cbor")]);
    assert!(line.starts_with("psa: "), "{line}");
}

/// Android key attestation chains from the command line, to Google's pinned roots at the time
/// the key was made; a lone leaf is refused as an untrusted root.
#[test]
fn android_chains_verify_to_googles_roots_and_a_lone_leaf_is_refused() {
    let c = claims(&[
        "--tee",
        "android",
        "--evidence",
        &vector("android/akatt_tegu_sdk36_SB_EC_2026_ROOT.pem"),
        "--at",
        "2026-02-25T00:37:21Z",
    ]);
    assert_eq!(c["tee"], "android");
    assert_eq!(c["android"]["security_level"], "strong_box");
    assert_eq!(c["android"]["root_of_trust"]["verified_boot_state"], "verified");
    assert_eq!(c["android"]["trust_anchor"], "vendor");
    let c = claims(&[
        "--tee",
        "android",
        "--evidence",
        &vector("android/akatt_blueline_sdk28_TEE_RSA_NONE.pem"),
        "--at",
        "2018-09-28T23:40:00Z",
    ]);
    assert_eq!(c["android"]["security_level"], "trusted_environment");
    let line = refusal(&[
        "--tee",
        "android",
        "--evidence",
        &vector("android/akatt_allow_while_on_body.pem"),
        "--at",
        "2024-01-01T00:00:00Z",
    ]);
    assert!(line.starts_with("android: "), "{line}");
}
