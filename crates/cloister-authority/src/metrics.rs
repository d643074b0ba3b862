//! The service's Prometheus metrics: attestations by TEE and result, key releases, request
//! latency by route and status, errors, the cached collateral's first expiry, `build_info` and
//! the process metrics. One registry per service (no global recorder), rendered in the text
//! exposition format at `/metrics`. Counters with a known, bounded set of labels are present
//! (at zero) from the start, so that `rate()` and alerts see them before the first event.

use std::time::Duration;

use cloister_telemetry::OptionalGauge;
use cloister_types::TeeKind;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::rate::RouteClass;

/// Every label value of `cloister_key_releases_total{result}`.
const RELEASE_RESULTS: [&str; 4] = ["granted", "refused", "unknown_key", "unauthenticated"];

/// Latency buckets, seconds: 0.5 ms to 2.5 s.
const BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    attestations: IntCounterVec,
    attestation_seconds: HistogramVec,
    key_releases: IntCounterVec,
    rate_limited: IntCounterVec,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    collateral_expiry: OptionalGauge,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let attestations = IntCounterVec::new(
            Opts::new("cloister_attestations_total", "Attestation decisions by TEE and result"),
            &["tee", "result"],
        )
        .expect("static metric definition");
        let attestation_seconds = HistogramVec::new(
            HistogramOpts::new(
                "cloister_attestation_duration_seconds",
                "Time to verify, appraise and issue, by TEE",
            )
            .buckets(BUCKETS.to_vec()),
            &["tee"],
        )
        .expect("static metric definition");
        let key_releases = IntCounterVec::new(
            Opts::new("cloister_key_releases_total", "Key-broker release decisions by result"),
            &["result"],
        )
        .expect("static metric definition");
        let rate_limited = IntCounterVec::new(
            Opts::new("cloister_rate_limited_total", "Requests refused with 429, by route class"),
            &["class"],
        )
        .expect("static metric definition");
        let requests = IntCounterVec::new(
            Opts::new("cloister_http_requests_total", "HTTP requests by route and status class"),
            &["route", "status"],
        )
        .expect("static metric definition");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("cloister_http_request_duration_seconds", "HTTP latency by route")
                .buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("static metric definition");
        let collateral_expiry = OptionalGauge::new(
            "cloister_collateral_expiry_timestamp_seconds",
            "Unix time at which the first cached vendor collateral item or certificate expires \
             (absent while nothing is cached)",
        )
        .expect("static metric definition");
        for collector in [
            Box::new(collateral_expiry.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(attestations.clone()),
            Box::new(attestation_seconds.clone()),
            Box::new(key_releases.clone()),
            Box::new(rate_limited.clone()),
            Box::new(requests.clone()),
            Box::new(request_seconds.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        if let Err(error) = cloister_telemetry::register_common(&registry) {
            tracing::error!(%error, "build_info and the process metrics are not exported");
        }
        // Present from the start, at zero: every TEE's results, every release result, every
        // rate-limited class, every route's status classes.
        for tee in TeeKind::ALL {
            for result in ["passed", "refused"] {
                attestations.with_label_values(&[tee.as_str(), result]);
            }
        }
        for result in RELEASE_RESULTS {
            key_releases.with_label_values(&[result]);
        }
        for class in RouteClass::ALL {
            rate_limited.with_label_values(&[class.as_str()]);
        }
        for (_, route, _) in crate::http::ROUTES {
            for status in ["2xx", "4xx", "5xx"] {
                requests.with_label_values(&[route, status]);
            }
        }
        Metrics {
            registry,
            attestations,
            attestation_seconds,
            key_releases,
            rate_limited,
            requests,
            request_seconds,
            collateral_expiry,
        }
    }

    /// Records when the first cached collateral item expires (`None`: nothing cached, and the
    /// series is absent: no stand-in value an alert could mistake for a date).
    pub fn set_collateral_expiry(&self, earliest: Option<i64>) {
        self.collateral_expiry.set(earliest);
    }

    /// Counts a key release refused before the requester proved anything (`reason`:
    /// `unknown_key`, `unauthenticated`): such refusals leave no audit record.
    pub fn release_refused(&self, reason: &str) {
        self.key_releases.with_label_values(&[reason]).inc();
    }

    /// Counts one request refused by a rate limit.
    pub fn rate_limited(&self, class: &str) {
        self.rate_limited.with_label_values(&[class]).inc();
    }

    /// Counts one attestation decision.
    pub fn attestation(&self, tee: &str, passed: bool, took: Duration) {
        let result = if passed { "passed" } else { "refused" };
        self.attestations.with_label_values(&[tee, result]).inc();
        self.attestation_seconds.with_label_values(&[tee]).observe(took.as_secs_f64());
    }

    /// Counts one key-release decision.
    pub fn key_release(&self, granted: bool) {
        self.key_releases.with_label_values(&[if granted { "granted" } else { "refused" }]).inc();
    }

    /// Counts one HTTP request. `route` is the matched route template, never the raw path (ids
    /// would make unbounded label values).
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        self.requests.with_label_values(&[route, class]).inc();
        self.request_seconds.with_label_values(&[route]).observe(took.as_secs_f64());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for valid metric families.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "metrics could not be encoded");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_with_their_labels() {
        let metrics = Metrics::new();
        metrics.attestation("sim", true, Duration::from_micros(700));
        metrics.attestation("sim", false, Duration::from_micros(900));
        metrics.attestation("sim", false, Duration::from_micros(900));
        metrics.key_release(false);
        metrics.request("/v1/instances/{id}/attest", 403, Duration::from_millis(2));
        let text = metrics.render();
        assert!(
            text.contains(r#"cloister_attestations_total{result="refused",tee="sim"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"cloister_attestations_total{result="passed",tee="sim"} 1"#));
        assert!(text.contains(r#"cloister_key_releases_total{result="refused"} 1"#));
        assert!(text.contains(
            r#"cloister_http_requests_total{route="/v1/instances/{id}/attest",status="4xx"} 1"#
        ));
        assert!(text.contains("cloister_attestation_duration_seconds_bucket"));
    }

    #[test]
    fn counters_are_present_at_zero_before_any_event() {
        let text = Metrics::new().render();
        for line in [
            r#"cloister_attestations_total{result="refused",tee="tdx"} 0"#,
            r#"cloister_attestations_total{result="passed",tee="snp"} 0"#,
            r#"cloister_key_releases_total{result="granted"} 0"#,
            r#"cloister_key_releases_total{result="unauthenticated"} 0"#,
            r#"cloister_rate_limited_total{class="release"} 0"#,
            r#"cloister_http_requests_total{route="/v1/keys/release",status="5xx"} 0"#,
            "cloister_build_info{",
        ] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
    }

    #[test]
    fn the_collateral_expiry_is_absent_while_nothing_is_cached() {
        let metrics = Metrics::new();
        metrics.set_collateral_expiry(None);
        assert!(!metrics.render().contains("cloister_collateral_expiry"));
        metrics.set_collateral_expiry(Some(1_800_000_000));
        assert!(
            metrics.render().contains("cloister_collateral_expiry_timestamp_seconds 1800000000")
        );
        metrics.set_collateral_expiry(None);
        assert!(!metrics.render().contains("cloister_collateral_expiry"));
    }

    #[test]
    fn the_sample_alert_rules_name_only_metrics_the_service_exports() {
        // The service's group of the rules; crates/cloister/tests/service.rs checks every rule
        // and the dashboard against a running service and worker.
        let rules = include_str!("../../../deploy/monitoring/alerts.yaml");
        let metrics = Metrics::new();
        metrics.attestation("sim", true, Duration::from_millis(1));
        metrics.request("/healthz", 200, Duration::from_millis(1));
        metrics.set_collateral_expiry(Some(1));
        let exported = metrics.render();
        let mut used = 0;
        for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("cloister_") && !word.starts_with("cloister_worker_") {
                assert!(exported.contains(word), "alerts.yaml uses {word}, which is not exported");
                used += 1;
            }
        }
        assert!(used >= 5, "the rules use {used} metrics");
    }
}
