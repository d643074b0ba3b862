//! What an operator installs beside the binary: shell completions and man pages generated from
//! the command line, `--config` files for the long-running commands (with flags and environment
//! variables overriding them), and the example configurations `deploy/systemd/` ships.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn cloister(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister")).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts `command`, waits for its `listening` event and returns it with the process; or, when
/// it exits first, its exit code and everything it wrote.
fn start(command: Command) -> Result<(Value, std::process::Child), (Option<i32>, String)> {
    support::start_listening(command).map(|started| (started.event, started.child))
}

fn serve_attestation(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command
        .args(["serve", "attestation"])
        .args(args)
        .current_dir(dir)
        .env_remove("CLOISTER_DATABASE");
    command
}

#[test]
fn completions_are_generated_for_every_shell_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bash = cloister(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", text(&bash.stderr));
    let script = text(&bash.stdout);
    for word in ["attestation", "--checkpoint-interval", "--config", "restore"] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let path = tmp.path().join("cloister.bash");
    std::fs::write(&path, &script).unwrap();
    let parsed = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
    for (shell, marker) in [("zsh", "#compdef cloister"), ("fish", "complete -c cloister")] {
        let out = cloister(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker) && script.contains("attestation"), "{shell}");
    }
    let unknown = cloister(&["completions", "tcsh"]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("possible values"), "{}", text(&unknown.stderr));
}

#[test]
fn every_command_gets_a_man_page() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let out = cloister(&["man", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in [
        "cloister.1",
        "cloister-serve.1",
        "cloister-serve-attestation.1",
        "cloister-serve-worker.1",
        "cloister-backup-restore.1",
        "cloister-completions.1",
    ] {
        let roff =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(roff.starts_with(".ie") || roff.contains(".TH"), "{page} is not a man page");
    }
    let serve = std::fs::read_to_string(dir.join("cloister-serve-attestation.1")).unwrap();
    assert!(serve.contains("checkpoint\\-interval"), "the page lacks the flags");
    assert!(
        serve.contains("cloister\\-serve\\-attestation"),
        "the page is not titled by its full name"
    );
    // One page per command, and none for clap's `help`.
    let count = std::fs::read_dir(&dir).unwrap().count();
    assert!(count > 40, "only {count} pages");
    assert!(!dir.join("cloister-help.1").exists());
}

#[test]
fn a_config_file_sets_what_the_command_line_and_the_environment_leave_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("attestation.toml"),
        "listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://from-config.db\"\n\
         operator-token-file = \"operator.token\"\ncheckpoint-interval = 5\n",
    )
    .unwrap();
    // Every setting from the file: a free port, not the default 8080, and its database.
    let (event, mut child) =
        start(serve_attestation(dir, &["--config", "attestation.toml"])).unwrap();
    let url = event["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":8080"), "{url}");
    assert!(dir.join("from-config.db").exists());
    child.kill().unwrap();
    child.wait().unwrap();

    // The environment variable overrides the file's database; a flag overrides its listen.
    std::fs::write(
        dir.join("bad-listen.toml"),
        "listen = \"not an address\"\ndatabase = \"sqlite://from-config.db\"\n\
         operator-token-file = \"operator.token\"\n",
    )
    .unwrap();
    let mut command =
        serve_attestation(dir, &["--config", "bad-listen.toml", "--listen", "127.0.0.1:0"]);
    command.env("CLOISTER_DATABASE", "sqlite://from-env.db");
    let (_, mut child) = start(command).unwrap();
    assert!(dir.join("from-env.db").exists(), "the environment did not override the file");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_config_file_with_an_unknown_or_mistyped_setting_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (file, expected) in [
        ("lisen = \"127.0.0.1:0\"\n", "`lisen` is not a setting"),
        ("checkpoint-interval = \"often\"\n", "checkpoint-interval"),
        ("fetch-collateral = \"yes\"\n", "is a switch"),
        ("listen = [\"a\", \"b\"]\n", "one value, not a list"),
        ("listen = \n", "not valid TOML"),
    ] {
        std::fs::write(dir.join("c.toml"), file).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
            .args(["serve", "attestation", "--config", "c.toml", "--database", "sqlite://x.db"])
            .args(["--operator-token-file", "t"])
            .current_dir(dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{file}");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{file}: {err}");
        assert!(!dir.join("x.db").exists(), "{file}: the service started");
    }
    let missing = cloister(&["serve", "attestation", "--config", "/nonexistent/c.toml"]);
    assert!(text(&missing.stderr).contains("/nonexistent/c.toml"), "{}", text(&missing.stderr));
}

/// The configurations `deploy/systemd/` ships parse as the real command's settings: with their
/// machine paths overridden by flags, the service starts, and the worker gets past its command
/// line (it then fails for want of a TEE and a service, at run time: exit 1, not a usage error).
#[test]
fn the_shipped_example_configurations_are_settings_of_the_commands_they_configure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = repo().join("deploy/systemd/attestation.toml");
    let database = format!("sqlite://{}", dir.join("a.db").display());
    let token = dir.join("operator.token");
    let key = dir.join("service.key");
    let (_, mut child) = start(serve_attestation(
        dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
            "--operator-token-file",
            token.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ],
    ))
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    let config = repo().join("deploy/systemd/worker.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["serve", "worker", "--config", config.to_str().unwrap()])
        .args(["--data-dir", dir.join("w").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env_remove("CLOISTER_TEE")
        .env_remove("CLOISTER_SERVER")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().all(|line| serde_json::from_str::<Value>(line).is_ok()), "{err}");
}

/// Red team, round 7: `cloister proxy` listened on any address it was given, so anyone on the
/// network acted as the requester over plain HTTP. A non-loopback `--listen` (from a flag or a
/// config file) is refused before anything else happens, unless named explicitly.
#[test]
fn the_proxy_refuses_to_listen_where_other_machines_reach_it_unless_told() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("proxy.toml"), "listen = \"0.0.0.0:0\"\n").unwrap();
    let base = [
        "proxy",
        "--worker",
        "https://127.0.0.1:9",
        "--ca",
        "missing-ca.pem",
        "--measurement",
        "aa",
        "--requester-key",
        "missing.key",
    ];
    for extra in [&["--listen", "0.0.0.0:0"][..], &["--config", "proxy.toml"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
            .args(base)
            .args(extra)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("is not a loopback address"), "{extra:?}: {err}");
    }
    // Named explicitly, the check passes and the proxy goes on (to fail on the missing CA).
    let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(base)
        .args(["--listen", "0.0.0.0:0", "--insecure-allow-remote-clients"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("is not a loopback address") && err.contains("missing-ca.pem"), "{err}");
}
