//! Prometheus pieces the attestation service and the worker share: `cloister_build_info`, the
//! process metrics (`process_*`, read from `/proc/self` on Linux), and a gauge that is absent
//! until its value is known (a timestamp of nothing exports no series, never a made-up value).
//!
//! Each service keeps its own [`prometheus::Registry`]; [`register_common`] adds these to it.

mod process;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

pub use process::ProcessCollector;

/// A metric could not be defined or registered (a name clash; a programming error).
#[derive(Debug, thiserror::Error)]
#[error("metric {name}: {source}")]
pub struct MetricError {
    /// The metric.
    pub name: String,
    /// What prometheus said.
    #[source]
    pub source: prometheus::Error,
}

impl MetricError {
    /// Wraps prometheus' error for `name`.
    pub fn new(name: &str, source: prometheus::Error) -> Self {
        MetricError { name: name.to_owned(), source }
    }
}

/// The git commit this build was made from, when the binary knows it.
static COMMIT: OnceLock<String> = OnceLock::new();

/// Records the git commit of this build (the binary calls it once at start, with what its
/// build script found); `cloister_build_info` says `unknown` otherwise.
pub fn set_commit(commit: &str) {
    let _ = COMMIT.set(commit.to_owned());
}

/// The commit recorded by [`set_commit`], or `unknown`.
pub fn commit() -> &'static str {
    COMMIT.get().map_or("unknown", String::as_str)
}

/// The workspace version (every Cloister crate shares it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Registers `cloister_build_info{version, commit}` (always 1) and the process metrics in
/// `registry`.
///
/// # Errors
/// [`MetricError`] when the registry already has metrics of these names.
pub fn register_common(registry: &Registry) -> Result<(), MetricError> {
    let name = "cloister_build_info";
    let build_info = IntGaugeVec::new(
        Opts::new(name, "The running build: always 1, labelled with its version and git commit"),
        &["version", "commit"],
    )
    .map_err(|e| MetricError::new(name, e))?;
    build_info.with_label_values(&[VERSION, commit()]).set(1);
    registry.register(Box::new(build_info)).map_err(|e| MetricError::new(name, e))?;
    let process = ProcessCollector::new()?;
    registry.register(Box::new(process)).map_err(|e| MetricError::new("process_*", e))?;
    Ok(())
}

/// A gauge with no series until it is [`set`](Self::set) to a value, and none again when set
/// to `None`: for values that may not exist (the expiry of a cache that holds nothing), where
/// any stand-in number would be a lie an alert could act on.
#[derive(Clone, Debug)]
pub struct OptionalGauge {
    gauge: IntGauge,
    present: std::sync::Arc<AtomicBool>,
}

impl OptionalGauge {
    /// A gauge named `name`, absent until set.
    ///
    /// # Errors
    /// [`MetricError`] for an invalid name.
    pub fn new(name: &str, help: &str) -> Result<Self, MetricError> {
        let gauge = IntGauge::new(name, help).map_err(|e| MetricError::new(name, e))?;
        Ok(OptionalGauge { gauge, present: std::sync::Arc::new(AtomicBool::new(false)) })
    }

    /// Sets the value, or removes the series (`None`).
    pub fn set(&self, value: Option<i64>) {
        match value {
            Some(value) => {
                self.gauge.set(value);
                self.present.store(true, Ordering::SeqCst);
            }
            None => self.present.store(false, Ordering::SeqCst),
        }
    }
}

impl Collector for OptionalGauge {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if self.present.load(Ordering::SeqCst) { self.gauge.collect() } else { Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder as _, TextEncoder};

    use super::*;

    fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_optional_gauge_is_absent_until_set_and_after_unset() {
        let registry = Registry::new();
        let gauge = OptionalGauge::new("test_expiry_timestamp_seconds", "test").unwrap();
        registry.register(Box::new(gauge.clone())).unwrap();
        assert!(!render(&registry).contains("test_expiry_timestamp_seconds"));
        gauge.set(Some(1_700_000_000));
        assert!(render(&registry).contains("test_expiry_timestamp_seconds 1700000000"));
        gauge.set(None);
        assert!(!render(&registry).contains("test_expiry_timestamp_seconds"));
    }

    #[test]
    fn build_info_and_process_metrics_are_exported() {
        let registry = Registry::new();
        register_common(&registry).unwrap();
        let text = render(&registry);
        let line = format!(r#"cloister_build_info{{commit="{}",version="{VERSION}"}} 1"#, commit());
        assert!(text.contains(&line), "{text}");
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_virtual_memory_bytes",
                "process_open_fds",
                "process_max_fds",
                "process_start_time_seconds",
            ] {
                assert!(text.contains(&format!("\n{name} ")), "{name} missing: {text}");
            }
        }
        // A second registration of the same names is refused, not duplicated.
        assert!(register_common(&registry).is_err());
    }
}
