//! What the binary's integration tests share: starting a `cloister` process and waiting until
//! it listens.

// Each test binary uses a part of this.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A process that logged its `listening` event.
pub(crate) struct Listening {
    /// The process (the caller stops it).
    pub(crate) child: Child,
    /// Its `listening` event.
    pub(crate) event: Value,
    /// Every line it wrote on standard error, kept as it goes on writing.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl Listening {
    /// A string field of the `listening` event (`url`, `address`, `service_fingerprint`), empty
    /// when absent.
    pub(crate) fn field(&self, name: &str) -> String {
        self.event[name].as_str().unwrap_or_default().to_owned()
    }
}

/// Starts `command` with its JSON log at `info` on standard error (which is drained from then
/// on, so the process never blocks on it) and waits up to a minute for its `listening` event.
/// When the process exits or stays silent first, it is killed and the error is its exit code
/// and everything it wrote.
pub(crate) fn start_listening(mut command: Command) -> Result<Listening, (Option<i32>, String)> {
    let mut child = command
        .env("CLOISTER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the cloister binary");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("standard error is piped");
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["event"] == "listening"
            {
                let _ = tx.send(event);
            }
            lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    // The sender goes when standard error closes, after every line was kept.
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(event) => Ok(Listening { child, event, log }),
        Err(_) => {
            let _ = child.kill();
            let code = child.wait().ok().and_then(|status| status.code());
            let seen = log.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
            Err((code, seen))
        }
    }
}

/// [`start_listening`] for a process that must start: panics with what it wrote otherwise.
pub(crate) fn started(command: Command) -> Listening {
    start_listening(command).unwrap_or_else(|(code, log)| {
        panic!("the process did not start (exit code {code:?}):\n{log}")
    })
}

/// The shell blocks that follow each `marker` in a Markdown text, in order: what a doc's tested
/// walkthrough runs exactly as written.
pub(crate) fn marked_blocks(text: &str, marker: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let open = rest.find("```sh\n").expect("a ```sh block after the marker");
        assert!(rest[..open].trim().is_empty(), "the marker must be right before its block");
        let body = &rest[open + "```sh\n".len()..];
        let close = body.find("\n```").expect("the block closes");
        blocks.push(body[..close + 1].to_owned());
        rest = &body[close..];
    }
    blocks
}

/// `script` with its one line starting `NAME=` replaced by `NAME='value'` (what a doc's
/// walkthrough leaves to the reader, such as where a model file is); panics unless there is
/// exactly one.
pub(crate) fn substitute(script: &str, name: &str, value: &std::path::Path) -> String {
    let prefix = format!("{name}=");
    let count = script.lines().filter(|l| l.starts_with(&prefix)).count();
    assert_eq!(count, 1, "one {prefix} line");
    script
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) {
                format!("{prefix}'{}'\n", value.display())
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// What a walkthrough run left: its directory (kept while this lives), output and logs.
pub(crate) struct Walkthrough {
    /// The temporary directory it ran in.
    pub(crate) tmp: tempfile::TempDir,
    /// Whether bash exited 0.
    pub(crate) success: bool,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error, then the last lines of each log named, for a failure message.
    pub(crate) report: String,
}

/// Runs `script` with bash (`set -euo pipefail`; background jobs killed at the end) in a fresh
/// temporary directory, for at most `timeout_s` seconds, with the `cloister` under test (and,
/// when given, `python` as `python3`) first on `PATH` and no `CLOISTER_*`/`OPENAI_*` settings
/// from the caller's environment; `logs` are read from `WORKDIR/` in that directory.
pub(crate) fn run_walkthrough(
    script: &str,
    python: Option<&std::path::Path>,
    timeout_s: u32,
    workdir: &str,
    logs: &[&str],
) -> Walkthrough {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).expect("bin/");
    if let Some(python) = python {
        // A wrapper, not a link: a virtual environment's interpreter finds its packages from
        // the path it is run by.
        let wrapper = format!("#!/bin/sh\nexec '{}' \"$@\"\n", python.display());
        std::fs::write(bin.join("python3"), wrapper).expect("the python3 wrapper");
        std::fs::set_permissions(
            bin.join("python3"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("an executable wrapper");
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cloister"), bin.join("cloister"))
        .expect("the cloister link");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let full = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n{script}"
    );
    let mut command = Command::new("timeout");
    command.args([&timeout_s.to_string(), "bash", "-c", &full]).current_dir(tmp.path());
    command.env("PATH", path);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CLOISTER_") || name.starts_with("OPENAI_") {
            command.env_remove(name);
        }
    }
    let output = command.output().expect("running bash");
    let logs: String = logs
        .iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(tmp.path().join(workdir).join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            format!("--- {name} (last lines, newest first)\n{}\n", tail.join("\n"))
        })
        .collect();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report =
        format!("stdout:\n{stdout}\nstderr:\n{}\n{logs}", String::from_utf8_lossy(&output.stderr));
    Walkthrough { tmp, success: output.status.success(), stdout, report }
}
