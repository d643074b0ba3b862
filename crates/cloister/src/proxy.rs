//! `cloister proxy`: runs on the data consumer's machine. It attests the worker (certificate
//! chain, claims, the consumer's own measurement allow-list), pins that enclave, and serves a
//! plain OpenAI API on localhost: every `/v1/*` request is signed with the requester key,
//! encapsulated with Oblivious HTTP to the enclave's attested key, sent, and its answer
//! decrypted (streamed answers event by event). If the worker's attestation changes or fails,
//! nothing is sent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cloister_client::ohttp::{InnerRequest, OhttpClient, OhttpError, authorization_header};
use cloister_client::{ClientError, Expectations};
use cloister_sign::SigningKey;
use cloister_types::{Hex, TeeKind};
use futures::TryStreamExt as _;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

/// Largest request body the proxy forwards.
const MAX_BODY: usize = 16 << 20;

/// What `cloister proxy` is given.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Where to listen (loopback).
    pub listen: String,
    /// The worker's base URL (https).
    pub worker: String,
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
}

struct Proxy {
    client: OhttpClient,
    key: SigningKey,
}

/// Attests the worker, then binds the listener; returns its address and the server future.
pub async fn start(
    options: &ProxyOptions,
) -> Result<(SocketAddr, impl Future<Output = std::io::Result<()>> + use<>)> {
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
    let client = OhttpClient::connect(&options.worker, expectations)
        .await
        .with_context(|| format!("attesting the worker at {}", options.worker))?;
    tracing::info!(
        worker = %options.worker,
        tee = %client.enclave().claims.tee,
        measurement = %client.enclave().claims.measurement,
        "verified the worker's enclave; its OHTTP key is pinned"
    );
    let listener = TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(forward).with_state(Arc::new(Proxy { client, key }));
    Ok((addr, async move { axum::serve(listener, app).await }))
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
    let (status, code) = match error {
        OhttpError::EnclaveChanged(_) => (StatusCode::BAD_GATEWAY, "enclave_changed"),
        OhttpError::Client(ClientError::Transport { .. }) => {
            (StatusCode::BAD_GATEWAY, "worker_unreachable")
        }
        _ => (StatusCode::BAD_GATEWAY, "worker_error"),
    };
    tracing::warn!(%error, "request refused");
    error_response(status, "proxy_error", code, error.to_string())
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if !parts.uri.path().starts_with("/v1/") {
        return error_response(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_route",
            format!("the proxy forwards /v1/* only, not {}", parts.uri.path()),
        );
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        );
    };
    let body = Zeroizing::new(body.to_vec());
    let method = parts.method.as_str();
    let authorization = match authorization_header(&proxy.key, method, &path, &body) {
        Ok(header) => header,
        Err(error) => return refused(&error),
    };
    let mut headers = vec![("authorization".to_owned(), authorization)];
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        headers.push(("content-type".to_owned(), content_type.to_owned()));
    }
    let streaming = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    let inner = InnerRequest { method, path: &path, headers, body: &body };
    let (status, content_type, body) = if streaming {
        match proxy.client.send_streaming(&inner).await {
            Ok(answer) => (
                answer.status,
                answer.content_type,
                Body::from_stream(answer.body.map_err(|e| std::io::Error::other(e.to_string()))),
            ),
            Err(error) => return refused(&error),
        }
    } else {
        match proxy.client.send(&inner).await {
            Ok(answer) => (answer.status, answer.content_type, Body::from(answer.body.to_vec())),
            Err(error) => return refused(&error),
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
