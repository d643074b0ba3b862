//! The worker's Prometheus metrics, served at `GET /metrics` on its attested TLS listener: jobs
//! and batch chunks by state, tokens generated, the batch queue's depth, attestation renewals and
//! the current certificate's expiry, key releases, online requests and refusals by code, offloaded
//! products by outcome and failed accelerator checks, `build_info` and the process metrics.
//!
//! **Nothing here names a requester, a model owner, a data set, a job, an object or a path**:
//! labels are outcomes, states, codes, sources and route templates, from fixed sets, every one
//! present (at zero) from the start. The route takes no credential (one configured by the host
//! would keep out nobody the enclave guards against); what a host scraping it learns beyond the
//! traffic it carries is described in `docs/ops/worker.md`.

use std::sync::Arc;

use cloister_telemetry::{MetricError, OptionalGauge};
use cloister_types::batch::BatchState;
use prometheus::core::Collector;
use prometheus::{
    Encoder as _, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::online::error::CODES;

/// Label values of `cloister_worker_jobs_total{result}`.
const JOB_RESULTS: [&str; 3] = ["done", "refused", "failed"];
/// Label values of `cloister_worker_offload_products_total{outcome}`.
const OFFLOAD_OUTCOMES: [&str; 3] = ["verified", "fallback", "failed"];
/// Label values of `…_total{result}` for renewals.
const RENEWAL_RESULTS: [&str; 2] = ["ok", "failed"];
/// Label values of `cloister_worker_key_releases_total{result}`.
const RELEASE_RESULTS: [&str; 2] = ["granted", "refused"];
/// Label values of `cloister_worker_tokens_generated_total{source}`.
const TOKEN_SOURCES: [&str; 2] = ["online", "batch"];
/// The outer routes counted by `cloister_worker_http_requests_total` (unmatched paths are
/// counted as `unmatched`, never by their text).
pub const ROUTES: [&str; 13] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/v1/identity",
    "/v1/objects/{id}",
    "/v1/jobs",
    "/v1/ohttp",
    "/v1/serving/models",
    "/v1/serving/models/{id}/undeploy",
    "/v1/batch",
    "/v1/batch/{id}",
    "unmatched",
];
/// Status classes of `cloister_worker_http_requests_total{status}`.
const STATUS_CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// The batch queue's counts at one moment (read from its database at each scrape).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Jobs by state: queued, running, done, failed.
    pub queued: u64,
    /// See `queued`.
    pub running: u64,
    /// See `queued`.
    pub done: u64,
    /// See `queued`.
    pub failed: u64,
    /// Chunks sealed and recorded, over every job in the queue.
    pub chunks_done: u64,
    /// Chunks of queued or running jobs not recorded yet (of jobs whose size is known).
    pub chunks_pending: u64,
}

/// What the worker shows at one scrape besides its counters.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// The batch queue (`None` when its database did not answer: the series keep their last
    /// values, and `cloister_worker_batch_queue_up` says 0).
    pub batch: Option<BatchCounts>,
    /// When the current enclave certificate expires (Unix seconds).
    pub certificate_expiry: Option<i64>,
    /// Models loaded for serving.
    pub models_loaded: u64,
    /// Failed accelerator checks summed over the loaded models' layers since each was loaded.
    pub offload_checks_failed: u64,
}

/// The worker's metrics (cheap to clone: every part is shared).
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    registry: Registry,
    jobs: IntCounterVec,
    jobs_running: IntGauge,
    batch_jobs: IntGaugeVec,
    batch_chunks: IntGaugeVec,
    batch_queue_depth: IntGauge,
    batch_queue_up: IntGauge,
    chunks_sealed: IntCounter,
    tokens: IntCounterVec,
    renewals: IntCounterVec,
    certificate_expiry: OptionalGauge,
    key_releases: IntCounterVec,
    online_requests: IntCounterVec,
    online_refusals: IntCounterVec,
    offload_products: IntCounterVec,
    offload_checks_failed: IntCounter,
    offload_checks_seen: Arc<std::sync::Mutex<u64>>,
    models_loaded: IntGauge,
    requests: IntCounterVec,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, MetricError> {
    IntCounterVec::new(Opts::new(name, help), labels).map_err(|e| MetricError::new(name, e))
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, MetricError> {
    IntGaugeVec::new(Opts::new(name, help), labels).map_err(|e| MetricError::new(name, e))
}

fn gauge(name: &str, help: &str) -> Result<IntGauge, MetricError> {
    IntGauge::new(name, help).map_err(|e| MetricError::new(name, e))
}

fn counter(name: &str, help: &str) -> Result<IntCounter, MetricError> {
    IntCounter::new(name, help).map_err(|e| MetricError::new(name, e))
}

impl WorkerMetrics {
    /// Every metric, registered in a fresh registry, with `build_info` and the process metrics.
    ///
    /// # Errors
    /// [`MetricError`] for a definition prometheus refuses (a programming error).
    pub fn new() -> Result<Self, MetricError> {
        let metrics = WorkerMetrics {
            registry: Registry::new(),
            jobs: counter_vec(
                "cloister_worker_jobs_total",
                "Jobs submitted to POST /v1/jobs, by result (done, refused before running, failed)",
                &["result"],
            )?,
            jobs_running: gauge(
                "cloister_worker_jobs_running",
                "Jobs of POST /v1/jobs authorised and not finished yet",
            )?,
            batch_jobs: gauge_vec(
                "cloister_worker_batch_jobs",
                "Batch jobs in the worker's queue, by state",
                &["state"],
            )?,
            batch_chunks: gauge_vec(
                "cloister_worker_batch_chunks",
                "Batch chunks by state: done (sealed and recorded) or pending (of unfinished jobs)",
                &["state"],
            )?,
            batch_queue_depth: gauge(
                "cloister_worker_batch_queue_depth",
                "Batch jobs queued or running",
            )?,
            batch_queue_up: gauge(
                "cloister_worker_batch_queue_up",
                "1 when the batch queue's database answered this scrape, else 0",
            )?,
            chunks_sealed: counter(
                "cloister_worker_batch_chunks_sealed_total",
                "Batch chunks this process sealed and recorded",
            )?,
            tokens: counter_vec(
                "cloister_worker_tokens_generated_total",
                "Tokens generated by language models, by source (online, batch)",
                &["source"],
            )?,
            renewals: counter_vec(
                "cloister_worker_attestation_renewals_total",
                "Attempts to renew the enclave's attestation, by result",
                &["result"],
            )?,
            certificate_expiry: OptionalGauge::new(
                "cloister_worker_certificate_expiry_timestamp_seconds",
                "Unix time at which the enclave's current certificate expires",
            )?,
            key_releases: counter_vec(
                "cloister_worker_key_releases_total",
                "Keys asked of the key broker, by result",
                &["result"],
            )?,
            online_requests: counter_vec(
                "cloister_worker_online_requests_total",
                "Online (OHTTP) requests decrypted and answered, by result (ok, refused)",
                &["result"],
            )?,
            online_refusals: counter_vec(
                "cloister_worker_online_refusals_total",
                "Online requests refused or failed, by error code",
                &["code"],
            )?,
            offload_products: counter_vec(
                "cloister_worker_offload_products_total",
                "Offloaded linear-layer products, by outcome: verified (the accelerator's answer \
                 passed every check), fallback (it failed; computed in the enclave), failed (it \
                 failed; the request failed)",
                &["outcome"],
            )?,
            offload_checks_failed: counter(
                "cloister_worker_offload_checks_failed_total",
                "Accelerator answers that failed a range or Freivalds check",
            )?,
            offload_checks_seen: Arc::new(std::sync::Mutex::new(0)),
            models_loaded: gauge("cloister_worker_models_loaded", "Models loaded for serving")?,
            requests: counter_vec(
                "cloister_worker_http_requests_total",
                "Requests to the worker's API by route template and status class",
                &["route", "status"],
            )?,
        };
        for result in JOB_RESULTS {
            metrics.jobs.with_label_values(&[result]);
        }
        for state in [BatchState::Queued, BatchState::Running, BatchState::Done, BatchState::Failed]
        {
            metrics.batch_jobs.with_label_values(&[state.as_str()]);
        }
        for state in ["done", "pending"] {
            metrics.batch_chunks.with_label_values(&[state]);
        }
        for source in TOKEN_SOURCES {
            metrics.tokens.with_label_values(&[source]);
        }
        for result in RENEWAL_RESULTS {
            metrics.renewals.with_label_values(&[result]);
        }
        for result in RELEASE_RESULTS {
            metrics.key_releases.with_label_values(&[result]);
        }
        for result in ["ok", "refused"] {
            metrics.online_requests.with_label_values(&[result]);
        }
        for code in CODES.into_iter().chain(["undecryptable"]) {
            metrics.online_refusals.with_label_values(&[code]);
        }
        for outcome in OFFLOAD_OUTCOMES {
            metrics.offload_products.with_label_values(&[outcome]);
        }
        for route in ROUTES {
            for status in STATUS_CLASSES {
                metrics.requests.with_label_values(&[route, status]);
            }
        }
        let collectors: [(&str, Box<dyn Collector>); 17] = [
            ("jobs", Box::new(metrics.jobs.clone())),
            ("jobs_running", Box::new(metrics.jobs_running.clone())),
            ("batch_jobs", Box::new(metrics.batch_jobs.clone())),
            ("batch_chunks", Box::new(metrics.batch_chunks.clone())),
            ("batch_queue_depth", Box::new(metrics.batch_queue_depth.clone())),
            ("batch_queue_up", Box::new(metrics.batch_queue_up.clone())),
            ("chunks_sealed", Box::new(metrics.chunks_sealed.clone())),
            ("tokens", Box::new(metrics.tokens.clone())),
            ("renewals", Box::new(metrics.renewals.clone())),
            ("certificate_expiry", Box::new(metrics.certificate_expiry.clone())),
            ("key_releases", Box::new(metrics.key_releases.clone())),
            ("online_requests", Box::new(metrics.online_requests.clone())),
            ("online_refusals", Box::new(metrics.online_refusals.clone())),
            ("offload_products", Box::new(metrics.offload_products.clone())),
            ("offload_checks_failed", Box::new(metrics.offload_checks_failed.clone())),
            ("models_loaded", Box::new(metrics.models_loaded.clone())),
            ("requests", Box::new(metrics.requests.clone())),
        ];
        for (name, collector) in collectors {
            metrics.registry.register(collector).map_err(|e| MetricError::new(name, e))?;
        }
        cloister_telemetry::register_common(&metrics.registry)?;
        Ok(metrics)
    }

    /// Counts a job of `POST /v1/jobs`: `done`, `refused` (not authorised or not runnable) or
    /// `failed`.
    pub fn job(&self, result: &'static str) {
        self.jobs.with_label_values(&[result]).inc();
    }

    /// Counts a job of `POST /v1/jobs` as running until the guard is dropped.
    pub fn job_running(&self) -> RunningJob {
        self.jobs_running.inc();
        RunningJob(self.jobs_running.clone())
    }

    /// Counts one batch chunk sealed and recorded.
    pub fn chunk_sealed(&self) {
        self.chunks_sealed.inc();
    }

    /// Counts `tokens` generated for `source` (`online` or `batch`).
    pub fn tokens_generated(&self, source: &'static str, tokens: u64) {
        self.tokens.with_label_values(&[source]).inc_by(tokens);
    }

    /// Counts one attempt to renew the attestation.
    pub fn renewal(&self, ok: bool) {
        self.renewals.with_label_values(&[if ok { "ok" } else { "failed" }]).inc();
    }

    /// Counts one key asked of the key broker.
    pub fn key_release(&self, granted: bool) {
        self.key_releases.with_label_values(&[if granted { "granted" } else { "refused" }]).inc();
    }

    /// Counts one online request: answered (`None`) or refused with `code`.
    pub fn online(&self, refused: Option<&str>) {
        match refused {
            None => self.online_requests.with_label_values(&["ok"]).inc(),
            Some(code) => {
                self.online_requests.with_label_values(&["refused"]).inc();
                self.online_refusals.with_label_values(&[code]).inc();
            }
        }
    }

    /// Counts offloaded products by outcome (`verified`, `fallback`, `failed`).
    pub fn offload_products(&self, outcome: &'static str, count: u64) {
        if count > 0 {
            self.offload_products.with_label_values(&[outcome]).inc_by(count);
        }
    }

    /// Counts one request to the outer API. `route` is a template of [`ROUTES`] (anything
    /// else is counted as `unmatched`, so a path never becomes a label).
    pub fn request(&self, route: &str, status: u16) {
        let route = ROUTES.iter().find(|r| **r == route).copied().unwrap_or("unmatched");
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => return,
        };
        self.requests.with_label_values(&[route, class]).inc();
    }

    /// Sets what is read at scrape time and renders every metric in the text format.
    pub fn render(&self, gauges: &Gauges) -> String {
        if let Some(batch) = gauges.batch {
            let jobs = [
                (BatchState::Queued, batch.queued),
                (BatchState::Running, batch.running),
                (BatchState::Done, batch.done),
                (BatchState::Failed, batch.failed),
            ];
            for (state, count) in jobs {
                self.batch_jobs.with_label_values(&[state.as_str()]).set(clamp(count));
            }
            self.batch_chunks.with_label_values(&["done"]).set(clamp(batch.chunks_done));
            self.batch_chunks.with_label_values(&["pending"]).set(clamp(batch.chunks_pending));
            self.batch_queue_depth.set(clamp(batch.queued.saturating_add(batch.running)));
        }
        self.batch_queue_up.set(i64::from(gauges.batch.is_some()));
        self.certificate_expiry.set(gauges.certificate_expiry);
        self.models_loaded.set(clamp(gauges.models_loaded));
        {
            // A model's counters leave the sum when it is unloaded: count only what is new.
            let mut seen = self.offload_checks_seen.lock().unwrap_or_else(|p| p.into_inner());
            if gauges.offload_checks_failed > *seen {
                self.offload_checks_failed.inc_by(gauges.offload_checks_failed - *seen);
            }
            *seen = gauges.offload_checks_failed;
        }
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "metrics could not be encoded");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A job counted in `cloister_worker_jobs_running` while this lives.
#[derive(Debug)]
pub struct RunningJob(IntGauge);

impl Drop for RunningJob {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_present_at_zero_from_the_start() {
        let metrics = WorkerMetrics::new().unwrap();
        let text = metrics.render(&Gauges::default());
        for line in [
            r#"cloister_worker_jobs_total{result="refused"} 0"#,
            r#"cloister_worker_tokens_generated_total{source="online"} 0"#,
            r#"cloister_worker_attestation_renewals_total{result="failed"} 0"#,
            r#"cloister_worker_key_releases_total{result="refused"} 0"#,
            r#"cloister_worker_online_refusals_total{code="insufficient_quota"} 0"#,
            r#"cloister_worker_online_refusals_total{code="undecryptable"} 0"#,
            r#"cloister_worker_offload_products_total{outcome="fallback"} 0"#,
            "cloister_worker_offload_checks_failed_total 0",
            "cloister_worker_batch_chunks_sealed_total 0",
            r#"cloister_worker_http_requests_total{route="/v1/ohttp",status="5xx"} 0"#,
            "cloister_worker_batch_queue_up 0",
            "cloister_build_info{",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        // No certificate known: no expiry series rather than a made-up time.
        assert!(!text.contains("cloister_worker_certificate_expiry_timestamp_seconds "), "{text}");
    }

    #[test]
    fn counts_and_gauges_show_up_with_their_labels() {
        let metrics = WorkerMetrics::new().unwrap();
        metrics.job("done");
        let running = metrics.job_running();
        assert!(metrics.render(&Gauges::default()).contains("cloister_worker_jobs_running 1"));
        drop(running);
        assert!(metrics.render(&Gauges::default()).contains("cloister_worker_jobs_running 0"));
        metrics.tokens_generated("batch", 12);
        metrics.tokens_generated("batch", 30);
        metrics.renewal(true);
        metrics.key_release(false);
        metrics.online(None);
        metrics.online(Some("rate_limit_exceeded"));
        metrics.offload_products("verified", 3);
        metrics.request("/v1/objects/{id}", 404);
        metrics.request("/v1/objects/secret-name", 200);
        let gauges = Gauges {
            batch: Some(BatchCounts {
                queued: 2,
                running: 1,
                done: 5,
                failed: 0,
                chunks_done: 40,
                chunks_pending: 7,
            }),
            certificate_expiry: Some(1_900_000_000),
            models_loaded: 3,
            offload_checks_failed: 4,
        };
        let text = metrics.render(&gauges);
        for line in [
            r#"cloister_worker_jobs_total{result="done"} 1"#,
            r#"cloister_worker_tokens_generated_total{source="batch"} 42"#,
            r#"cloister_worker_attestation_renewals_total{result="ok"} 1"#,
            r#"cloister_worker_key_releases_total{result="refused"} 1"#,
            r#"cloister_worker_online_requests_total{result="ok"} 1"#,
            r#"cloister_worker_online_requests_total{result="refused"} 1"#,
            r#"cloister_worker_online_refusals_total{code="rate_limit_exceeded"} 1"#,
            r#"cloister_worker_offload_products_total{outcome="verified"} 3"#,
            r#"cloister_worker_http_requests_total{route="/v1/objects/{id}",status="4xx"} 1"#,
            r#"cloister_worker_http_requests_total{route="unmatched",status="2xx"} 1"#,
            r#"cloister_worker_batch_jobs{state="queued"} 2"#,
            r#"cloister_worker_batch_chunks{state="pending"} 7"#,
            "cloister_worker_batch_queue_depth 3",
            "cloister_worker_batch_queue_up 1",
            "cloister_worker_certificate_expiry_timestamp_seconds 1900000000",
            "cloister_worker_models_loaded 3",
            "cloister_worker_offload_checks_failed_total 4",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        // A path is never a label.
        assert!(!text.contains("secret-name"), "{text}");
        // The failed checks only go up: a model unloaded takes its counts out of the sum, and
        // later failures are counted from there.
        let fewer = Gauges { offload_checks_failed: 1, ..gauges.clone() };
        assert!(metrics.render(&fewer).contains("cloister_worker_offload_checks_failed_total 4"));
        let more = Gauges { offload_checks_failed: 3, ..gauges };
        assert!(metrics.render(&more).contains("cloister_worker_offload_checks_failed_total 6"));
    }
}
