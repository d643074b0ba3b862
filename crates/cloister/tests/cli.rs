//! The sealed-envelope commands exactly as users and scripts run them: `cloister keygen`, `seal`
//! and `open`, with files and with `-` for standard input and output, and every kind of tampering
//! refused with a non-zero exit, a message naming the check, and nothing left at `--output`;
//! and what any command does with what a user gets wrong before it connects (no token, a token
//! on the command line, a URL without a scheme, a database path that does not exist, a work
//! directory that is not the demo's).

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cloister::testbed::{self, ComputeDirs, InstancePolicy};
use cloister_attest::SimAttester;

fn cloister(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister")).args(args).current_dir(dir).output().unwrap()
}

fn cloister_with_stdin(args: &[&str], dir: &Path, stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn keygen(dir: &Path, name: &str) {
    let out = cloister(
        &["keygen", "--secret", &format!("{name}.key"), "--public", &format!("{name}.pub")],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A plaintext of a few chunks with no repeating pattern.
fn plaintext(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn setup() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    keygen(&dir, "alice");
    keygen(&dir, "bob");
    let data = plaintext(200_000);
    std::fs::write(dir.join("plain.bin"), &data).unwrap();
    let out = cloister(
        &[
            "seal",
            "--recipient",
            "alice.pub",
            "--recipient",
            "bob.pub",
            "--input",
            "plain.bin",
            "--output",
            "sealed.bin",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    (tmp, dir, data)
}

#[test]
fn seal_and_open_round_trip_for_every_recipient_with_files_and_pipes() {
    let (_tmp, dir, data) = setup();
    for who in ["alice", "bob"] {
        let out = cloister(
            &[
                "open",
                "--secret",
                &format!("{who}.key"),
                "--input",
                "sealed.bin",
                "--output",
                "out.bin",
            ],
            &dir,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), data);
        std::fs::remove_file(dir.join("out.bin")).unwrap();
    }
    // stdin to stdout both ways.
    let sealed = cloister_with_stdin(
        &["seal", "--recipient", "alice.pub", "--input", "-", "--output", "-"],
        &dir,
        &data,
    );
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    assert_ne!(sealed.stdout, data);
    let opened = cloister_with_stdin(
        &["open", "--secret", "alice.key", "--input", "-", "--output", "-"],
        &dir,
        &sealed.stdout,
    );
    assert!(opened.status.success(), "{}", stderr(&opened));
    assert_eq!(opened.stdout, data);
    // The secret key file is private and keygen never overwrites it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("alice.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = cloister(&["keygen", "--secret", "alice.key", "--public", "x.pub"], &dir);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("refusing to overwrite"), "{}", stderr(&again));
    // Nor the public key (or certificate, or CA) others were handed: nothing is written.
    let published = std::fs::read(dir.join("alice.pub")).unwrap();
    for args in [
        &["keygen", "--secret", "new.key", "--public", "alice.pub"][..],
        &["keygen", "--signing", "--secret", "new.key", "--public", "alice.pub"],
        &["keygen", "--sim-platform", "--secret", "new.key", "--public", "alice.pub"],
        &["keygen", "--tls-server", "localhost", "--secret", "new.key", "--public", "c.pem"]
            .iter()
            .chain(&["--tls-ca", "alice.pub"])
            .copied()
            .collect::<Vec<_>>(),
    ] {
        let out = cloister(args, &dir);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains("alice.pub already exists"), "{}", stderr(&out));
        assert!(!dir.join("new.key").exists(), "{args:?} wrote the secret first");
    }
    assert_eq!(std::fs::read(dir.join("alice.pub")).unwrap(), published);
}

#[test]
fn a_key_that_is_not_a_recipient_cannot_open() {
    let (_tmp, dir, _) = setup();
    keygen(&dir, "mallory");
    let out = cloister(
        &["open", "--secret", "mallory.key", "--input", "sealed.bin", "--output", "out.bin"],
        &dir,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not one of the envelope's recipients"), "{}", stderr(&out));
    assert!(!dir.join("out.bin").exists());
}

/// Opens `bytes` as alice; asserts failure with `expect` in the message and no output left.
fn assert_refused(dir: &Path, bytes: &[u8], expect: &str) {
    std::fs::write(dir.join("tampered.bin"), bytes).unwrap();
    let out = cloister(
        &["open", "--secret", "alice.key", "--input", "tampered.bin", "--output", "out.bin"],
        dir,
    );
    assert!(!out.status.success(), "tampering was not detected ({expect})");
    assert!(
        stderr(&out).to_lowercase().contains(expect),
        "expected {expect:?} in: {}",
        stderr(&out)
    );
    assert!(!dir.join("out.bin").exists(), "partial plaintext left behind ({expect})");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".cloister-partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file left behind");
}

#[test]
fn modified_truncated_extended_reordered_or_reheaded_ciphertext_is_refused() {
    let (_tmp, dir, _) = setup();
    let sealed = std::fs::read(dir.join("sealed.bin")).unwrap();
    let header_len = {
        let header = cloister_seal::read_header(sealed.as_slice()).unwrap();
        header.len()
    };

    let mut flipped = sealed.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 0x01;
    assert_refused(&dir, &flipped, "failed authentication");

    let mut flipped_header = sealed.clone();
    flipped_header[header_len - 3] ^= 0x01;
    assert_refused(&dir, &flipped_header, "");

    // 200,000 bytes = three full 64 KiB chunks and a final chunk of 3,392 bytes (+16-byte tags).
    let final_chunk = 200_000 - 3 * 65_536 + 16;
    assert_refused(&dir, &sealed[..sealed.len() - final_chunk], "truncated");
    assert_refused(&dir, &sealed[..sealed.len() - 65_000], "failed authentication");
    assert_refused(&dir, &sealed[..header_len + 100], "");

    let mut extended = sealed.clone();
    extended.extend_from_slice(&[0u8; 40]);
    assert_refused(&dir, &extended, "");

    // Swap the first two 64 KiB chunks (each is 64 KiB + a 16-byte tag on the wire).
    let chunk = 65_536 + 16;
    let mut swapped = sealed[..header_len].to_vec();
    swapped.extend_from_slice(&sealed[header_len + chunk..header_len + 2 * chunk]);
    swapped.extend_from_slice(&sealed[header_len..header_len + chunk]);
    swapped.extend_from_slice(&sealed[header_len + 2 * chunk..]);
    assert_eq!(swapped.len(), sealed.len());
    assert_refused(&dir, &swapped, "failed authentication");

    // Another envelope's header on this body.
    let other = cloister(
        &["seal", "--recipient", "alice.pub", "--input", "plain.bin", "--output", "other.bin"],
        &dir,
    );
    assert!(other.status.success());
    let other = std::fs::read(dir.join("other.bin")).unwrap();
    let other_header_len = cloister_seal::read_header(other.as_slice()).unwrap().len();
    let mut reheaded = other[..other_header_len].to_vec();
    reheaded.extend_from_slice(&sealed[header_len..]);
    assert_refused(&dir, &reheaded, "");

    assert_refused(&dir, b"definitely not an envelope", "not a cloister sealed envelope");
}

#[tokio::test]
async fn an_enclave_certificate_is_a_recipient_only_after_it_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let dirs = ComputeDirs::create(&dir.join("compute")).unwrap();
    let key = testbed::sim_platform_key(&dirs).unwrap();
    let measurement = [0x33u8; 48];
    let authority = testbed::start_authority(
        &dirs,
        InstancePolicy::DevSim,
        &[cloister_types::Hex(measurement.to_vec())],
        &key.public_key(),
    )
    .await
    .unwrap();
    let worker = testbed::start_worker(
        &dirs,
        &std::sync::Arc::new(SimAttester::new(key, measurement)),
        &authority.channel().unwrap(),
    )
    .await
    .unwrap();
    std::fs::write(dir.join("enclave.pem"), worker.worker.identity.certificate_chain_pem())
        .unwrap();
    let info = authority.client().unwrap().instance().await.unwrap();
    std::fs::write(dir.join("ca.pem"), info.ca_certificate_pem).unwrap();
    std::fs::write(dir.join("plain.bin"), plaintext(1000)).unwrap();
    let m = hex::encode(measurement);

    let run = |args: &[&str]| cloister(args, &dir);
    let base = ["seal", "--recipient", "enclave.pem", "--input", "plain.bin", "--output", "s.bin"];

    let out = run(&base);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("give the instance CA with --ca"), "{}", stderr(&out));

    let out = run(&[&base[..], &["--ca", "ca.pem", "--measurement", &m]].concat());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sim TEE, which is not in the accepted list"),
        "{}",
        stderr(&out)
    );

    let wrong = hex::encode([0x44u8; 48]);
    let out =
        run(&[&base[..], &["--ca", "ca.pem", "--measurement", &wrong, "--accept-sim"]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not on the allow-list"), "{}", stderr(&out));
    assert!(!dir.join("s.bin").exists());

    let out = run(&[&base[..], &["--ca", "ca.pem", "--measurement", &m, "--accept-sim"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let sealed = std::fs::read(dir.join("s.bin")).unwrap();
    let (_, opened) =
        cloister_seal::open_to_vec_with(worker.worker.identity.hpke_secret(), &sealed).unwrap();
    assert_eq!(opened.as_slice(), plaintext(1000).as_slice());
}

#[test]
fn a_sim_platform_key_is_made_once_and_its_public_key_is_what_instances_list() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["keygen", "--sim-platform", "--secret", "sim.pem", "--public", "sim.pub"];
    let out = cloister(&args, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let public = std::fs::read_to_string(tmp.path().join("sim.pub")).unwrap();
    assert!(public.starts_with("cloister-sim-platform-p256:"), "{public}");
    let pem = std::fs::read_to_string(tmp.path().join("sim.pem")).unwrap();
    let key = cloister_attest::SimPlatformKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(public.trim(), key.public_key().to_string());
    // Never overwritten; not a signing key at the same time.
    let again = cloister(&args, tmp.path());
    assert!(!again.status.success() && stderr(&again).contains("already exists"));
    assert_eq!(std::fs::read_to_string(tmp.path().join("sim.pem")).unwrap(), pem);
    let both = cloister(
        &["keygen", "--sim-platform", "--signing", "--secret", "x", "--public", "y"],
        tmp.path(),
    );
    assert!(
        !both.status.success() && stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
}

#[cfg(unix)]
#[test]
fn an_output_that_is_a_device_or_fifo_is_written_in_place_never_replaced() {
    use std::os::unix::fs::FileTypeExt as _;
    let (_tmp, dir, data) = setup();
    // /dev/null stays the device (run as root, replacing it would break the machine).
    let out = cloister(
        &["open", "--secret", "alice.key", "--input", "sealed.bin", "--output", "/dev/null"],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // A FIFO gets the plaintext and stays a FIFO.
    let fifo = dir.join("out.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::read(fifo).unwrap()
    });
    let out = cloister(
        &["open", "--secret", "alice.key", "--input", "sealed.bin", "--output", "out.fifo"],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(reader.join().unwrap(), data);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // A symbolic link to a regular file: the file it names is replaced, the link stays.
    std::fs::write(dir.join("target.bin"), b"old").unwrap();
    std::os::unix::fs::symlink("target.bin", dir.join("link.bin")).unwrap();
    let out = cloister(
        &["open", "--secret", "alice.key", "--input", "sealed.bin", "--output", "link.bin"],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(dir.join("link.bin")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(dir.join("target.bin")).unwrap(), data);
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_command_quietly_the_conventional_way() {
    use std::os::unix::process::ExitStatusExt as _;
    let (_tmp, dir, _) = setup();
    std::fs::write(dir.join("big.bin"), plaintext(8 << 20)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["seal", "--recipient", "alice.pub", "--input", "big.bin", "--output", "-"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader (`| head -c 10`) reads a little and goes away.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.signal(), Some(13), "killed by SIGPIPE: {:?}", output.status);
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn opening_to_standard_output_streams_what_authenticated_and_fails_at_a_cut() {
    let (_tmp, dir, data) = setup();
    let sealed = std::fs::read(dir.join("sealed.bin")).unwrap();
    // Cut the envelope in its third chunk (64 KiB chunks).
    let header_len = cloister_seal::read_header(sealed.as_slice()).unwrap().len();
    let cut = &sealed[..header_len + 2 * (64 * 1024 + 16) + 100];
    let opened = cloister_with_stdin(
        &["open", "--secret", "alice.key", "--input", "-", "--output", "-"],
        &dir,
        cut,
    );
    assert!(!opened.status.success(), "a cut envelope must fail");
    let message = stderr(&opened);
    assert!(message.contains("could not open"), "{message}");
    // Only whole chunks that authenticated were written, and they are the plaintext's start.
    assert!(opened.stdout.len() <= 2 * 64 * 1024, "{} bytes", opened.stdout.len());
    assert_eq!(opened.stdout[..], data[..opened.stdout.len()]);
}

/// `serve worker` arguments that reach the TEE choice (the service is never contacted when it
/// fails), with every interface path under `fake`.
fn worker_args(fake: &Path) -> Vec<String> {
    let fingerprint = "ab".repeat(32);
    let mut args: Vec<String> = [
        "serve",
        "worker",
        "--authority",
        "https://127.0.0.1:9",
        "--instance",
        "in_none",
        "--service-fingerprint",
        &fingerprint,
        "--data-dir",
        "worker",
    ]
    .map(str::to_owned)
    .to_vec();
    for (flag, name) in [
        ("--tsm-dir", "tsm/report"),
        ("--gramine-dir", "attestation"),
        ("--nsm", "nsm"),
        ("--csv-guest", "csv-guest"),
        ("--sev-guest", "sev-guest"),
        ("--tdx-guest", "tdx_guest"),
    ] {
        args.push(flag.to_owned());
        args.push(fake.join(name).display().to_string());
    }
    args
}

#[test]
fn a_worker_on_a_machine_without_a_tee_exits_listing_every_interface_and_never_simulates() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("dev");
    let args = worker_args(&fake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // The default is `auto`, as is naming it.
    for extra in [&[][..], &["--tee", "auto"][..]] {
        let out = cloister(&[&args[..], extra].concat(), dir.path());
        let text = stderr(&out);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("no TEE attestation interface found; looked for:"), "{text}");
        for name in ["tsm/report", "attestation", "nsm", "csv-guest", "sev-guest", "tdx_guest"] {
            assert!(text.contains(&fake.join(name).display().to_string()), "{name}: {text}");
        }
        assert!(!text.contains("SIMULATED"), "{text}");
        assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    }

    // A named TEE looks only where that TEE can be, and says which it wanted.
    let out = cloister(&[&args[..], &["--tee", "snp"]].concat(), dir.path());
    let text = stderr(&out);
    assert!(!out.status.success());
    assert!(text.contains("no snp attestation interface found"), "{text}");
    assert!(!text.contains(&fake.join("nsm").display().to_string()), "{text}");

    // CLOISTER_TEE is the same choice.
    let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(&args)
        .env("CLOISTER_TEE", "nitro")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(stderr(&out).contains("no nitro attestation interface found"), "{}", stderr(&out));

    // Unknown names and a sim key without sim are refused before anything else.
    let out = cloister(&[&args[..], &["--tee", "simulated"]].concat(), dir.path());
    assert!(stderr(&out).contains("expected one of auto, tdx, snp, sgx, nitro, csv, cca, sim"));
    let out = cloister(
        &[&args[..], &["--tee", "tdx", "--sim-platform-key", "k.pem"]].concat(),
        dir.path(),
    );
    assert!(stderr(&out).contains("--sim-platform-key applies only with --tee sim"));
    assert!(!dir.path().join("k.pem").exists());

    // --require-gpu without an attestable GPU refuses to start, naming what it tried.
    let nvml = dir.path().join("no-driver/libnvidia-ml.so.1").display().to_string();
    let out = cloister(
        &[&args[..], &["--tee", "sim", "--require-gpu", "--nvml-library", &nvml]].concat(),
        dir.path(),
    );
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("--require-gpu") && text.contains("cannot load NVML from"), "{text}");
    assert!(text.contains(&nvml), "{text}");
    assert!(out.stdout.is_empty());
}

/// Runs `cloister ARGS` in `dir` with `CLOISTER_TOKEN` and `CLOISTER_SERVER` unset, or the token
/// set to `token`.
fn admin_command(args: &[&str], dir: &Path, token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command.args(args).current_dir(dir).env_remove("CLOISTER_TOKEN").env_remove("CLOISTER_SERVER");
    if let Some(token) = token {
        command.env("CLOISTER_TOKEN", token);
    }
    command.output().unwrap()
}

#[test]
fn a_command_without_a_token_says_to_set_cloister_token_or_give_a_token_file() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens there: the command must stop before it connects.
    let out =
        admin_command(&["tenant", "list", "--server", "http://127.0.0.1:9"], tmp.path(), None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no token") && err.contains("CLOISTER_TOKEN"), "{err}");
    assert!(err.contains("--token-file"), "{err}");
    assert!(!err.contains("cannot reach"), "it tried to connect: {err}");

    // An empty token file is named as such.
    std::fs::write(tmp.path().join("token"), "\n").unwrap();
    let out = admin_command(
        &["instance", "list", "--server", "http://127.0.0.1:9", "--token-file", "token"],
        tmp.path(),
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token file token is empty"), "{}", stderr(&out));
}

#[test]
fn a_token_on_the_command_line_is_refused_and_points_to_the_environment_or_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "tok_do-not-echo-me";
    let out = admin_command(
        &["key", "list", "--server", "http://127.0.0.1:9", "--token", secret],
        tmp.path(),
        Some("from-the-environment"),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("process listings"), "{err}");
    assert!(err.contains("CLOISTER_TOKEN") && err.contains("--token-file"), "{err}");
    assert!(!err.contains(secret), "the refused token is echoed: {err}");
    assert!(!err.contains("cannot reach"), "it tried to connect: {err}");
    // The help offers the file, never the value.
    let help = cloister(&["tenant", "list", "--help"], tmp.path());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(help.contains("--token-file") && help.contains("CLOISTER_TOKEN"), "{help}");
    assert!(!help.contains("--token <"), "{help}");
}

#[test]
fn a_url_without_a_scheme_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["tenant", "list", "--server", "localhost:8080"][..],
        &["audit", "list", "--server", "localhost:8080"],
        &["job", "status", "job-1", "--worker", "localhost:8443", "--ca", "ca.pem"][..],
    ] {
        let mut args = args.to_vec();
        if args[0] == "job" {
            args.extend(["--measurement", "00"]);
        }
        let out = admin_command(&args, tmp.path(), Some("a-token"));
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("localhost:"), "{args:?}: {err}");
        assert!(err.contains("has no scheme: add https://"), "{args:?}: {err}");
    }
    // A URL with its scheme gets past the check (and then fails to connect, nothing listens).
    let out =
        admin_command(&["tenant", "list", "--server", "http://127.0.0.1:9"], tmp.path(), Some("t"));
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("has no scheme"), "{}", stderr(&out));
}

#[test]
fn audit_verify_names_a_missing_database_and_never_creates_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here.db");
    let url = format!("sqlite://{}", missing.display());
    let out = cloister(
        &["audit", "verify", "--database", &url, "--service-key", &"ab".repeat(32)],
        tmp.path(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("does not exist") && err.contains("nothing-here.db"), "{err}");
    assert!(!missing.exists(), "audit verify created {}", missing.display());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "it left files behind");
}

#[test]
fn the_demo_refuses_a_work_directory_it_did_not_make_and_leaves_it_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let workdir = tmp.path().join("mine");
    std::fs::create_dir(&workdir).unwrap();
    std::fs::write(workdir.join("thesis.tex"), "precious").unwrap();
    let out = cloister(&["demo", "--workdir", "mine"], tmp.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("not empty and was not made by `cloister demo`"), "{err}");
    assert_eq!(std::fs::read_to_string(workdir.join("thesis.tex")).unwrap(), "precious");
    assert_eq!(std::fs::read_dir(&workdir).unwrap().count(), 1, "the demo wrote into it");
}

#[test]
fn seal_takes_the_key_broker_recipient_text_itself_as_model_import_does() {
    let (tmp, dir, bytes) = setup();
    let public = std::fs::read_to_string(dir.join("alice.pub")).unwrap();
    let key = cloister_seal::RecipientPublicKey::from_text(public.trim()).unwrap();
    let broker = cloister_seal::BrokerRecipient::new("kb_alice1", key).unwrap().to_text();
    std::fs::write(dir.join("plain.bin"), &bytes).unwrap();
    let out = cloister(
        &["seal", "--recipient", &broker, "--input", "plain.bin", "--output", "sealed.bin"],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sealed = std::fs::read(dir.join("sealed.bin")).unwrap();
    let header = cloister_seal::read_header(sealed.as_slice()).unwrap();
    assert!(header.recipients().iter().all(|r| r.is_broker()), "not sealed to the broker key");
    let out = cloister(
        &["open", "--secret", "alice.key", "--input", "sealed.bin", "--output", "-"],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, bytes);
    // Text that looks like a broker recipient but is not one is refused, naming the flag.
    let out = cloister(
        &["seal", "--recipient", "cloister-broker:kb_x", "--input", "plain.bin", "--output", "x"],
        &dir,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a key-broker recipient"), "{}", stderr(&out));
    assert!(!dir.join("x").exists());
    drop(tmp);
}

/// Red team, round 8: with `http_proxy` (or `ALL_PROXY`, …) set, as on many company hosts, the
/// client sent a plain-HTTP request with the bearer token to the proxy, which could also answer
/// in the service's place. Plain HTTP now goes only where its URL says.
#[test]
fn plain_http_to_the_service_never_goes_through_a_proxy_from_the_environment() {
    use std::io::Read as _;
    use std::net::TcpListener;
    let tmp = tempfile::tempdir().unwrap();
    // Records what reaches it (a proxy, or the service) for a few seconds.
    let listen = || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen = std::thread::spawn(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(8);
            while std::time::Instant::now() < until {
                if let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
                    let mut request = vec![0; 4096];
                    let n = stream.read(&mut request).unwrap_or(0);
                    return String::from_utf8_lossy(&request[..n]).into_owned();
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            String::new()
        });
        (addr, seen)
    };
    let (proxy, proxy_saw) = listen();
    let (service, service_saw) = listen();
    let proxy_url = format!("http://{proxy}");
    let output = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["tenant", "list", "--server", &format!("http://{service}")])
        .env("CLOISTER_TOKEN", "clt_SECRET")
        .envs(["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"].map(|v| (v, &proxy_url)))
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    // The fake service closes without answering: the command fails, having asked the service.
    assert!(!output.status.success());
    let to_service = service_saw.join().unwrap();
    assert!(to_service.starts_with("GET /v1/tenants"), "the service saw: {to_service:?}");
    // Nothing reached the proxy (it waits its full time for a connection that never comes).
    assert_eq!(proxy_saw.join().unwrap(), "", "the proxy received the request");
}
