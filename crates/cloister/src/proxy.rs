//! `cloister proxy`: runs on the data consumer's machine. It attests each worker (certificate
//! chain, claims, the consumer's own measurement allow-list), pins each enclave, and serves a
//! plain OpenAI API on localhost: every `/v1/*` request is signed with the requester key,
//! encapsulated with Oblivious HTTP to one admitted enclave's attested key (round robin over the
//! admitted workers), sent, and its answer decrypted (streamed answers event by event, from the
//! worker that started them).
//!
//! A worker whose handshake shows another enclave (or one that no longer verifies), that cannot
//! be reached, or whose certificate expired is dropped from rotation at once and logged
//! ([`WORKER_DROPPED`]); it is admitted again ([`WORKER_ADMITTED`]) only once a periodic re-check
//! attests it again against the same expectations. A request that found a bad worker is retried
//! once on another admitted worker only when nothing of it was sent (see [`nothing_sent`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cloister_client::enclave::validity_unverified;
use cloister_client::ohttp::{InnerRequest, OhttpClient, OhttpError, authorization_header};
use cloister_client::{ClientError, Expectations};
use cloister_sign::{SigningKey, unix_now};
use cloister_types::{Hex, TeeKind};
use futures::TryStreamExt as _;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

/// Largest request body the proxy forwards.
const MAX_BODY: usize = 16 << 20;

/// How often dropped workers are attested again when nothing says otherwise.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(30);

/// The `event` of the log line when a worker enters the rotation (with `worker`, `tee`,
/// `measurement`, `expires_at`).
pub const WORKER_ADMITTED: &str = "worker_admitted";

/// The `event` of the log line when a worker leaves the rotation or is left out at start (with
/// `worker` and `reason`).
pub const WORKER_DROPPED: &str = "worker_dropped";

/// What `cloister proxy` is given.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Where to listen (loopback).
    pub listen: String,
    /// The workers' base URLs (https); each is attested against the same expectations.
    pub workers: Vec<String>,
    /// The instance CA (PEM file).
    pub ca: PathBuf,
    /// Accepted measurements.
    pub measurements: Vec<Hex>,
    /// Accepted TEE kinds.
    pub tees: Vec<TeeKind>,
    /// Accept evidence under a test root the instance names (development only).
    pub accept_test_root: bool,
    /// The requester's signing key file (`cloister-es256-secret:…`).
    pub requester_key: PathBuf,
    /// How often dropped workers (and admitted ones whose certificate is about to expire) are
    /// attested again.
    pub recheck: Duration,
}

/// One worker as the proxy sees it.
struct Worker {
    url: String,
    state: Mutex<Standing>,
}

#[derive(Clone)]
enum Standing {
    /// In rotation: the pinned client and its certificate's expiry (Unix seconds).
    Admitted { client: Arc<OhttpClient>, expires_at: i64 },
    /// Out of rotation, and why.
    Dropped(String),
}

/// The workers behind the proxy.
struct Pool {
    workers: Vec<Worker>,
    next: AtomicUsize,
    expectations: Expectations,
}

/// Attests the worker at `url`: its pinned client and its certificate's expiry.
async fn attest(url: &str, expectations: &Expectations) -> Result<(Arc<OhttpClient>, i64), String> {
    let client =
        OhttpClient::connect(url, expectations.clone()).await.map_err(|e| e.to_string())?;
    let (_, expires_at) =
        validity_unverified(&client.enclave().certificate_der).map_err(|e| e.to_string())?;
    Ok((Arc::new(client), expires_at))
}

fn now() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

impl Worker {
    fn standing(&self) -> std::sync::MutexGuard<'_, Standing> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self, client: Arc<OhttpClient>, expires_at: i64) {
        tracing::info!(
            event = WORKER_ADMITTED,
            worker = %self.url,
            tee = %client.enclave().claims.tee,
            measurement = %client.enclave().claims.measurement,
            expires_at,
            "verified the worker's enclave; its OHTTP key is pinned and it is in rotation"
        );
        *self.standing() = Standing::Admitted { client, expires_at };
    }

    /// Takes the worker out of rotation if `client` is still the one admitted.
    fn drop_client(&self, client: &Arc<OhttpClient>, reason: &str) {
        let mut standing = self.standing();
        if matches!(&*standing, Standing::Admitted { client: c, .. } if Arc::ptr_eq(c, client)) {
            *standing = Standing::Dropped(reason.to_owned());
            drop(standing);
            tracing::warn!(event = WORKER_DROPPED, worker = %self.url, reason, "worker dropped from rotation");
        }
    }

    /// The admitted client, unless its certificate expired (then the worker is dropped).
    fn admitted(&self) -> Option<Arc<OhttpClient>> {
        let (client, expires_at) = match &*self.standing() {
            Standing::Admitted { client, expires_at } => (client.clone(), *expires_at),
            Standing::Dropped(_) => return None,
        };
        if now() >= expires_at {
            self.drop_client(
                &client,
                &format!("its enclave certificate expired at unix time {expires_at}"),
            );
            return None;
        }
        Some(client)
    }

    /// Attests a dropped worker again, or an admitted one whose certificate expires within
    /// `margin`; admits or drops it by the result.
    async fn recheck(&self, expectations: &Expectations, margin: Duration) {
        let current = self.standing().clone();
        let margin = i64::try_from(margin.as_secs()).unwrap_or(i64::MAX);
        if let Standing::Admitted { expires_at, .. } = &current
            && expires_at.saturating_sub(now()) > margin
        {
            return;
        }
        match (attest(&self.url, expectations).await, current) {
            (Ok((client, expires_at)), _) => self.admit(client, expires_at),
            (Err(reason), Standing::Admitted { client, .. }) => self.drop_client(&client, &reason),
            (Err(reason), Standing::Dropped(_)) => {
                tracing::debug!(worker = %self.url, %reason, "the worker still does not attest");
                *self.standing() = Standing::Dropped(reason);
            }
        }
    }
}

impl Pool {
    /// The next admitted worker in round-robin order, other than `except`.
    fn pick(&self, except: Option<usize>) -> Option<(usize, Arc<OhttpClient>)> {
        let count = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count).map(|k| (start + k) % count).filter(|i| Some(*i) != except).find_map(|i| {
            let worker = self.workers.get(i)?;
            worker.admitted().map(|client| (i, client))
        })
    }

    fn admitted(&self) -> Vec<(usize, Arc<OhttpClient>)> {
        (0..self.workers.len())
            .filter_map(|i| Some((i, self.workers.get(i)?.admitted()?)))
            .collect()
    }

    fn drop_client(&self, index: usize, client: &Arc<OhttpClient>, reason: &str) {
        if let Some(worker) = self.workers.get(index) {
            worker.drop_client(client, reason);
        }
    }

    /// Why each worker is out of rotation (`url: reason`).
    fn reasons(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter_map(|w| match &*w.standing() {
                Standing::Dropped(reason) => Some(format!("{}: {reason}", w.url)),
                Standing::Admitted { .. } => None,
            })
            .collect()
    }

    async fn recheck(&self, interval: Duration) {
        let margin = interval.saturating_mul(2);
        futures::future::join_all(
            self.workers.iter().map(|w| w.recheck(&self.expectations, margin)),
        )
        .await;
    }
}

struct Proxy {
    pool: Pool,
    key: SigningKey,
}

/// Attests every worker, then binds the listener; returns its address and the server future
/// (which also runs the periodic re-check). Fails when no worker could be admitted, saying why
/// each failed.
pub async fn start(
    options: &ProxyOptions,
) -> Result<(SocketAddr, impl Future<Output = std::io::Result<()>> + use<>)> {
    if options.workers.is_empty() {
        bail!("no worker given (--worker URL, repeatable)");
    }
    let ca_pem = std::fs::read_to_string(&options.ca)
        .with_context(|| format!("reading the instance CA {}", options.ca.display()))?;
    let expectations =
        Expectations::from_ca_pem(&ca_pem, options.measurements.clone(), options.tees.clone())?
            .accepting_test_roots(options.accept_test_root);
    let key_text = Zeroizing::new(
        std::fs::read_to_string(&options.requester_key)
            .with_context(|| format!("reading {}", options.requester_key.display()))?,
    );
    let key = SigningKey::from_text(&key_text)
        .with_context(|| format!("{} is not a requester key", options.requester_key.display()))?;
    let attested =
        futures::future::join_all(options.workers.iter().map(|url| attest(url, &expectations)))
            .await;
    let mut workers = Vec::with_capacity(attested.len());
    for (url, result) in options.workers.iter().zip(attested) {
        let worker =
            Worker { url: url.clone(), state: Mutex::new(Standing::Dropped(String::new())) };
        match result {
            Ok((client, expires_at)) => worker.admit(client, expires_at),
            Err(reason) => {
                tracing::warn!(event = WORKER_DROPPED, worker = %url, %reason, "worker left out: it did not attest");
                *worker.standing() = Standing::Dropped(reason);
            }
        }
        workers.push(worker);
    }
    let pool = Pool { workers, next: AtomicUsize::new(0), expectations };
    if pool.admitted().is_empty() {
        bail!("no worker could be admitted:\n  {}", pool.reasons().join("\n  "));
    }
    let listener = TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let proxy = Arc::new(Proxy { pool, key });
    let app =
        Router::new().route("/healthz", get(health)).fallback(forward).with_state(proxy.clone());
    let interval = options.recheck.max(Duration::from_millis(100));
    Ok((addr, async move {
        let rechecks = async move {
            loop {
                tokio::time::sleep(interval).await;
                proxy.pool.recheck(interval).await;
            }
        };
        tokio::select! {
            served = axum::serve(listener, app) => served,
            () = rechecks => Ok(()),
        }
    }))
}

/// Whether the proxy may listen where other machines reach it. Whoever reaches it acts as the
/// requester — its identity, its quota, the answers — over plain HTTP; so only when named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteClients {
    /// A loopback address only (the default).
    Refused,
    /// Any address (`--insecure-allow-remote-clients`).
    Allowed,
}

/// Runs the proxy until it is stopped.
pub async fn run(options: ProxyOptions, remote: RemoteClients) -> Result<()> {
    // Checked before anything else (the worker is attested only after): every address the
    // name resolves to must be loopback.
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host(&options.listen)
        .await
        .with_context(|| format!("--listen {}", options.listen))?
        .collect();
    if addresses.iter().any(|addr| !addr.ip().is_loopback()) {
        anyhow::ensure!(
            remote == RemoteClients::Allowed,
            "--listen {} is not a loopback address: whoever reaches the proxy acts as the \
             requester (its key, its quota, the answers) over plain HTTP; listen on 127.0.0.1, or \
             pass --insecure-allow-remote-clients if this network is yours alone",
            options.listen
        );
        tracing::warn!(address = %options.listen, "the proxy accepts requests from other \
            machines over plain HTTP: whoever reaches it acts as the requester");
    }
    let (addr, server) = start(&options).await?;
    tracing::info!(
        event = crate::logging::LISTENING,
        url = format!("http://{addr}/v1"),
        "OpenAI API for the requester (plain HTTP, this machine only)"
    );
    server.await?;
    Ok(())
}

fn error_response(status: StatusCode, kind: &str, code: &str, message: String) -> Response {
    let body = serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    });
    (status, axum::Json(body)).into_response()
}

fn refused(error: &OhttpError) -> Response {
    let code = match error {
        OhttpError::EnclaveChanged(_) => "enclave_changed",
        OhttpError::Unreachable { .. } | OhttpError::Client(ClientError::Transport { .. }) => {
            "worker_unreachable"
        }
        _ => "worker_error",
    };
    tracing::warn!(%error, "request refused");
    error_response(StatusCode::BAD_GATEWAY, "proxy_error", code, error.to_string())
}

/// The answer when no worker is in rotation.
fn no_worker(pool: &Pool) -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "proxy_error",
        "no_worker",
        format!(
            "no attested worker is in rotation; each is attested again periodically ({})",
            pool.reasons().join("; ")
        ),
    )
}

/// Whether `error` proves that no byte of the request reached the worker, so that it may be
/// sent to another worker instead. "Sent" means: the encapsulated OHTTP request was handed to
/// a connection to the worker whose TLS handshake had succeeded. Before that point nothing of
/// it can have left this machine: a handshake refused because it showed another enclave
/// ([`OhttpError::EnclaveChanged`]) and a connection that could not be opened, TCP or TLS
/// ([`OhttpError::Unreachable`]), both fail there. Any other transport failure may have come
/// after the request was written, so that request fails with its error.
fn nothing_sent(error: &OhttpError) -> bool {
    matches!(error, OhttpError::EnclaveChanged(_) | OhttpError::Unreachable { .. })
}

/// Whether `error` takes the worker out of rotation: its attestation changed or no longer
/// verifies, or it cannot be reached.
fn drops_worker(error: &OhttpError) -> bool {
    matches!(
        error,
        OhttpError::EnclaveChanged(_)
            | OhttpError::Unreachable { .. }
            | OhttpError::Client(ClientError::Transport { .. })
    )
}

/// `GET /healthz`: the workers in and out of rotation; `503` when none is in.
async fn health(State(proxy): State<Arc<Proxy>>) -> Response {
    let workers: Vec<serde_json::Value> = proxy
        .pool
        .workers
        .iter()
        .map(|worker| {
            // Expiry is checked (and the worker dropped) before its standing is read.
            let _ = worker.admitted();
            match &*worker.standing() {
                Standing::Admitted { client, expires_at } => serde_json::json!({
                    "url": worker.url,
                    "admitted": true,
                    "tee": client.enclave().claims.tee,
                    "measurement": client.enclave().claims.measurement,
                    "expires_at": expires_at,
                }),
                Standing::Dropped(reason) => serde_json::json!({
                    "url": worker.url, "admitted": false, "reason": reason,
                }),
            }
        })
        .collect();
    let admitted = workers.iter().filter(|w| w["admitted"] == true).count();
    let status = if admitted > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if admitted > 0 { "ok" } else { "unavailable" },
        "admitted": admitted,
        "workers": workers,
    });
    (status, axum::Json(body)).into_response()
}

/// One request, prepared once and sendable to any worker.
struct Prepared {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Zeroizing<Vec<u8>>,
    streaming: bool,
}

impl Prepared {
    /// Sends it to `client` (a fresh requester signature each time).
    async fn send(&self, key: &SigningKey, client: &OhttpClient) -> Result<Response, OhttpError> {
        let authorization = authorization_header(key, &self.method, &self.path, &self.body)?;
        let mut headers = vec![("authorization".to_owned(), authorization)];
        if let Some(content_type) = &self.content_type {
            headers.push(("content-type".to_owned(), content_type.clone()));
        }
        let inner =
            InnerRequest { method: &self.method, path: &self.path, headers, body: &self.body };
        let (status, content_type, body) = if self.streaming {
            let answer = client.send_streaming(&inner).await?;
            (
                answer.status,
                answer.content_type,
                Body::from_stream(answer.body.map_err(|e| std::io::Error::other(e.to_string()))),
            )
        } else {
            let answer = client.send(&inner).await?;
            (answer.status, answer.content_type, Body::from(answer.body.to_vec()))
        };
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        Ok(response)
    }
}

async fn prepare(parts: &Parts, body: Body) -> Result<Prepared, Response> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if !parts.uri.path().starts_with("/v1/") {
        return Err(error_response(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_route",
            format!("the proxy forwards /v1/* only, not {}", parts.uri.path()),
        ));
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        ));
    };
    let body = Zeroizing::new(body.to_vec());
    let streaming = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    let content_type =
        parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok(Prepared { method: parts.method.as_str().to_owned(), path, content_type, body, streaming })
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let prepared = match prepare(&parts, body).await {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    if parts.method == Method::GET && parts.uri.path() == "/v1/models" {
        return models(&proxy, &prepared).await;
    }
    let mut first_error: Option<(usize, OhttpError)> = None;
    loop {
        let Some((index, client)) = proxy.pool.pick(first_error.as_ref().map(|(i, _)| *i)) else {
            return match &first_error {
                Some((_, error)) => refused(error),
                None => no_worker(&proxy.pool),
            };
        };
        let error = match prepared.send(&proxy.key, &client).await {
            Ok(response) => return response,
            Err(error) => error,
        };
        if drops_worker(&error) {
            proxy.pool.drop_client(index, &client, &error.to_string());
        }
        if first_error.is_some() || !nothing_sent(&error) {
            return refused(&error);
        }
        // Nothing of it reached that worker: try one other admitted worker, once.
        tracing::info!(%error, "nothing was sent to that worker; trying another once");
        first_error = Some((index, error));
    }
}

/// `GET /v1/models`: the models of every admitted worker, each listed once.
async fn models(proxy: &Proxy, prepared: &Prepared) -> Response {
    let admitted = proxy.pool.admitted();
    if admitted.is_empty() {
        return no_worker(&proxy.pool);
    }
    let answers = futures::future::join_all(
        admitted.iter().map(|(_, client)| prepared.send(&proxy.key, client)),
    )
    .await;
    let mut data: Vec<serde_json::Value> = Vec::new();
    let mut listed = 0;
    let mut other = None;
    for ((index, client), answer) in admitted.iter().zip(answers) {
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                if drops_worker(&error) {
                    proxy.pool.drop_client(*index, client, &error.to_string());
                }
                other.get_or_insert_with(|| refused(&error));
                continue;
            }
        };
        if response.status() != StatusCode::OK {
            other.get_or_insert(response);
            continue;
        }
        let Ok(bytes) = axum::body::to_bytes(response.into_body(), MAX_BODY).await else {
            continue;
        };
        let list = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
        listed += 1;
        for model in list.get("data").and_then(|d| d.as_array()).into_iter().flatten() {
            if !data.iter().any(|m| m.get("id") == model.get("id")) {
                data.push(model.clone());
            }
        }
    }
    match other {
        Some(response) if listed == 0 => response,
        _ => axum::Json(serde_json::json!({ "object": "list", "data": data })).into_response(),
    }
}
