//! The logs of the long-running commands (`serve attestation`, `serve worker`, `serve
//! accelerator`, `proxy`): one JSON object per line on standard error, each with `timestamp`,
//! `level`, `target`, `message` and the event's own fields at the top level. Nothing else is
//! written to standard error once logging is set up (a fatal error is an `ERROR` event too), so
//! every line parses. The worker's one JSON line on standard output is not a log line.
//!
//! What is logged is chosen by a [`tracing_subscriber::EnvFilter`] directive (`info`, `debug`,
//! `info,cloister_worker=debug`, …), taken from the first of: `--log-level`, `CLOISTER_LOG`,
//! `RUST_LOG`, else [`DEFAULT_DIRECTIVES`]. Empty values count as unset.
//!
//! Events a program reads carry a stable `event` field: [`LISTENING`] once a service accepts
//! connections (with `url` or `address`), `exit` for a fatal error, `panic` for a panic (the hook
//! replaces Rust's plain-text message). A native library writing to the descriptor itself would
//! be outside this (llama.cpp's lines are routed through `tracing`).

/// The `event` of the line a service logs once it accepts connections.
pub const LISTENING: &str = "listening";

/// The field `name` of a log line (one JSON object) when it is the [`LISTENING`] event: how a
/// program that started a service learns its address.
pub fn listening_field(line: &str, name: &str) -> Option<String> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event.get("event")?.as_str()? != LISTENING {
        return None;
    }
    event.get(name)?.as_str().map(str::to_owned)
}

/// What is logged when nothing says otherwise: `info`, with llama.cpp's own lines (the model's
/// metadata at every load, under the binding's targets) kept to errors.
pub const DEFAULT_DIRECTIVES: &str = "info,llama-cpp-2=error,llama_cpp_2=error";

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The directive (from the source named) does not parse.
    #[error(
        "{source_name} {directives:?} is not a log filter (e.g. info, debug, warn,cloister_worker=debug): {reason}"
    )]
    BadDirective {
        /// `--log-level`, `CLOISTER_LOG` or `RUST_LOG`.
        source_name: &'static str,
        /// The text given.
        directives: String,
        /// The parser's reason.
        reason: String,
    },
    /// A global subscriber is already installed.
    #[error("logging was already set up")]
    AlreadySet,
}

/// The directive in force and where it came from: `flag`, else `CLOISTER_LOG`, else `RUST_LOG`,
/// else the default (empty values are skipped).
pub fn choose<'a>(
    flag: Option<&'a str>,
    cloister_log: Option<&'a str>,
    rust_log: Option<&'a str>,
) -> (&'static str, &'a str) {
    [("--log-level", flag), ("CLOISTER_LOG", cloister_log), ("RUST_LOG", rust_log)]
        .into_iter()
        .find_map(|(name, value)| value.filter(|v| !v.trim().is_empty()).map(|v| (name, v)))
        .unwrap_or(("default", DEFAULT_DIRECTIVES))
}

/// Parses `directives` as a log filter; `source_name` names where it came from in the error.
pub fn filter(
    source_name: &'static str,
    directives: &str,
) -> Result<tracing_subscriber::EnvFilter, LogError> {
    tracing_subscriber::EnvFilter::builder().parse(directives).map_err(|e| LogError::BadDirective {
        source_name,
        directives: directives.to_owned(),
        reason: e.to_string(),
    })
}

/// Checks a `--log-level` value as the command line reads it.
pub fn parse_flag(text: &str) -> Result<String, String> {
    filter("--log-level", text).map(|_| text.to_owned()).map_err(|e| e.to_string())
}

/// Installs the JSON logger on standard error, filtered by `flag` or the environment (see the
/// module's documentation).
pub fn init(flag: Option<&str>) -> Result<(), LogError> {
    let cloister_log = std::env::var("CLOISTER_LOG").ok();
    let rust_log = std::env::var("RUST_LOG").ok();
    let (source_name, directives) = choose(flag, cloister_log.as_deref(), rust_log.as_deref());
    let filter = filter(source_name, directives)?;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|_| LogError::AlreadySet)?;
    // A panic is an event too, not Rust's plain-text message.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(event = "panic", panic = %info, "a thread panicked");
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_cloister_log_then_rust_log_then_the_default() {
        assert_eq!(choose(Some("debug"), Some("warn"), Some("error")), ("--log-level", "debug"));
        assert_eq!(choose(None, Some("warn"), Some("error")), ("CLOISTER_LOG", "warn"));
        assert_eq!(choose(None, None, Some("error")), ("RUST_LOG", "error"));
        assert_eq!(choose(None, Some(" "), Some("")), ("default", DEFAULT_DIRECTIVES));
        assert_eq!(choose(Some(""), None, Some("trace")), ("RUST_LOG", "trace"));
    }

    #[test]
    fn the_listening_event_is_found_by_its_field() {
        let line =
            r#"{"timestamp":"t","level":"INFO","event":"listening","address":"127.0.0.1:9"}"#;
        assert_eq!(listening_field(line, "address").as_deref(), Some("127.0.0.1:9"));
        assert_eq!(listening_field(line, "url"), None);
        let other = r#"{"timestamp":"t","level":"INFO","event":"exit","address":"x"}"#;
        assert_eq!(listening_field(other, "address"), None);
        assert_eq!(listening_field("accelerator listening on 127.0.0.1:9", "address"), None);
    }

    #[test]
    fn a_bad_directive_is_refused_naming_its_source() {
        assert!(parse_flag("info,cloister_worker=debug").is_ok());
        assert!(parse_flag(DEFAULT_DIRECTIVES).is_ok());
        let error = parse_flag("loud=very=much").unwrap_err();
        assert!(error.contains("--log-level") && error.contains("loud=very=much"), "{error}");
        let error = filter("RUST_LOG", "[[[").unwrap_err().to_string();
        assert!(error.starts_with("RUST_LOG"), "{error}");
    }
}
