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
