//! The worker's API over attested TLS: the server certificate is the enclave certificate, so a
//! client that verifies it has verified the enclave before sending a byte.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness: the process answers |
//! | `GET /readyz` | readiness: attested with a certificate still valid, object store and batch queue open; 503 with the reason otherwise |
//! | `GET /metrics` | Prometheus metrics (see [`crate::metrics`]); no credential, nothing secret |
//! | `GET /openapi.json` | the OpenAPI document of this API ([`OPENAPI`]) |
//! | `GET /v1/identity` | certificate chain, EAR token and runtime data |
//! | `PUT /v1/objects/{id}` | store a sealed object |
//! | `GET /v1/objects/{id}` | fetch a sealed object |
//! | `POST /v1/jobs` | run a job with its grants; answers with the outputs and the receipt |
//! | `POST /v1/ohttp` | online inference, end-to-end encrypted (see [`crate::online`]) |
//! | `POST /v1/serving/models` | load a model version from the repository (see [`crate::deploy`]); kept and restored at start ([`crate::deployments`]) |
//! | `GET /v1/serving/models` | the deployments: model, digest, owner, policy expiry |
//! | `POST /v1/serving/models/{id}/undeploy` | the owner's signed request to stop serving a model |
//! | `POST /v1/batch` | queue a durable batch job (chunked, resumed after a restart); 202 |
//! | `GET /v1/batch/{id}` | a batch job's state, progress, chunks and receipt |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use cloister_client::{ClientError, ServiceChannel, VerifiedAnswer};
use cloister_seal::RecipientSecretKey;
use cloister_sign::unix_now;
use cloister_types::api::{
    COLLATERAL_CHANGED, CheckpointRef, ErrorBody, IdentityResponse, JobAuthorized, JobDone,
    ObjectStored, ReleaseContext, SubmitJob,
};
use cloister_types::{Hex, InputRole, JobKind, JobSpec};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::identity::EnclaveIdentity;
use crate::jobs::{JobError, authorize_job, broker_keys_needed, run_job};
use crate::store::{ObjectStore, StoreError};

/// Largest sealed object accepted in one request.
const MAX_OBJECT: usize = 1 << 30;
/// How many connections the worker holds open at once.
const MAX_CONNECTIONS: usize = 4096;
/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a connection may take to send a request's headers (or sit idle between requests).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The worker's state: its identity, its object store, and the attestation service instance
/// it attested with (also its key broker).
#[derive(Debug)]
pub struct Worker {
    /// The enclave identity.
    pub identity: EnclaveIdentity,
    /// Sealed objects.
    pub store: ObjectStore,
    /// The attestation service instance that issued the identity's EAR token (also the key
    /// broker and the privacy ledger), with the service key its answers must be signed by.
    pub service: ServiceChannel,
    /// What the service must show beyond its signing key, checked before every renewal.
    pub service_trust: crate::service_pin::ServiceTrust,
    /// Models loaded for online inference.
    pub catalog: crate::online::Catalog,
    /// The durable batch-job queue.
    pub batches: Arc<crate::batch::BatchQueue>,
    /// The model repository models are deployed from (sealed weights, signed manifests).
    pub repository: cloister_repository::Repository,
    /// What is deployed, and the deployment requests kept to restore it after a restart.
    pub deployments: crate::deployments::Deployments,
    /// The threads each GGUF language model (online or batch) generates on.
    pub llm_threads: std::num::NonZeroUsize,
    /// The untrusted accelerator (`HOST:PORT` of `cloister serve accelerator`) the linear layers
    /// of models whose serving policy allows offloading run on; without one, deploying such a
    /// model fails.
    pub accelerator: Option<String>,
    /// The worker's Prometheus metrics.
    pub metrics: crate::metrics::WorkerMetrics,
}

/// The OpenAPI document of the worker's API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route [`router`] serves, as (method, path template): what [`OPENAPI`] must describe.
pub const API: [(&str, &str); 14] = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/identity"),
    ("PUT", "/v1/objects/{id}"),
    ("GET", "/v1/objects/{id}"),
    ("POST", "/v1/jobs"),
    ("POST", cloister_types::online::OHTTP_PATH),
    ("POST", "/v1/serving/models"),
    ("GET", "/v1/serving/models"),
    ("POST", "/v1/serving/models/{id}/undeploy"),
    ("POST", "/v1/batch"),
    ("GET", "/v1/batch/{id}"),
];

/// The worker's routes.
pub fn router(worker: Arc<Worker>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/identity", get(identity))
        .route("/v1/objects/{id}", put(put_object).get(get_object))
        .route("/v1/jobs", axum::routing::post(submit_job))
        .route_service(
            cloister_types::online::OHTTP_PATH,
            crate::online::gateway::gateway(worker.clone()),
        )
        .route("/v1/serving/models", axum::routing::post(deploy_model).get(list_deployments))
        .route("/v1/serving/models/{id}/undeploy", axum::routing::post(undeploy_model))
        .route("/v1/batch", axum::routing::post(crate::batch::submit))
        .route("/v1/batch/{id}", get(crate::batch::status))
        .layer(middleware::from_fn_with_state(worker.clone(), count_request))
        .layer(DefaultBodyLimit::max(MAX_OBJECT))
        .with_state(worker)
}

/// `GET /openapi.json`: [`OPENAPI`].
async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Counts each request by its route template (never its path) and status class.
async fn count_request(
    State(worker): State<Arc<Worker>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    worker.metrics.request(&route, response.status().as_u16());
    response
}

/// `GET /readyz`: 200 when the enclave holds an attestation that has not expired and its object
/// store and batch queue answer; 503 with the first reason otherwise.
async fn readyz(State(worker): State<Arc<Worker>>) -> Response {
    let not_ready = |message: String| {
        tracing::warn!(reason = %message, "not ready");
        let body = ErrorBody { code: "not_ready".to_owned(), message };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    };
    let current = worker.identity.current();
    if current.expires_in().is_zero() {
        return not_ready(
            "the enclave's attestation has expired and renewing it has not succeeded".to_owned(),
        );
    }
    let store = worker.store.clone();
    match tokio::task::spawn_blocking(move || store.check()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return not_ready(format!("the object store is not usable: {error}")),
        Err(_) => return not_ready("checking the object store failed".to_owned()),
    }
    if let Err(error) = worker.batches.ping().await {
        return not_ready(format!("the batch queue does not answer: {error}"));
    }
    "ready".into_response()
}

/// `GET /metrics`: the Prometheus text exposition, with the queue's and catalog's numbers read
/// now.
async fn metrics(State(worker): State<Arc<Worker>>) -> Response {
    let batch = match worker.batches.counts().await {
        Ok(counts) => Some(counts),
        Err(error) => {
            tracing::warn!(%error, "the batch queue's counts could not be read for the metrics");
            None
        }
    };
    let models = worker.catalog.list();
    let offload_checks_failed = models
        .iter()
        .filter_map(|model| match model.engine() {
            crate::online::Engine::Hybrid(hybrid) => Some(hybrid.layers()),
            _ => None,
        })
        .flatten()
        .map(|layer| layer.checks_failed)
        .fold(0u64, u64::saturating_add);
    let gauges = crate::metrics::Gauges {
        batch,
        certificate_expiry: Some(worker.identity.current().not_after),
        models_loaded: models.len() as u64,
        offload_checks_failed,
    };
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], worker.metrics.render(&gauges)).into_response()
}

/// Serves the API over TLS on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, worker: Arc<Worker>) -> std::io::Result<()> {
    let app = router(worker.clone());
    serve_app(listener, &worker, app).await
}

/// Serves `app` (the worker's routes, possibly wrapped in further layers) over the worker's
/// attested TLS on `listener` until the task is dropped, renewing the enclave's attestation
/// before it expires (each new connection gets the current certificate).
pub async fn serve_app(listener: TcpListener, worker: &Worker, app: Router) -> std::io::Result<()> {
    tokio::select! {
        served = accept_loop(listener, worker, app) => served,
        () = crate::identity::keep_attested(
            &worker.identity,
            &worker.service,
            &worker.service_trust,
            &worker.metrics,
        ) => Ok(()),
    }
}

async fn accept_loop(listener: TcpListener, worker: &Worker, app: Router) -> std::io::Result<()> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_cert_resolver(worker.identity.certificate_resolver());
    // No session resumption: every handshake presents the current certificate, so every
    // client verifies the attestation as it is now (and `/v1/identity` answers for it).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    // Someone who can only open sockets must not stop the worker: connections are capped, a
    // handshake or a request's headers that do not come in time close the connection, and a
    // failed accept (out of file descriptors, say) is waited out, never fatal.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = slots.clone().acquire_owned().await.map_err(std::io::Error::other)?;
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed; retrying shortly");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let current = worker.identity.current_handle();
        tokio::spawn(async move {
            serve_connection(acceptor, &current, tcp, peer, app).await;
            drop(slot);
        });
    }
}

/// The attestation whose certificate a connection's handshake presented: `/v1/identity` answers
/// with it, so a client that attested the certificate gets the matching document even when the
/// worker renewed its attestation after the handshake.
#[derive(Clone)]
struct ConnectionAttestation(Arc<crate::identity::Attestation>);

async fn serve_connection(
    acceptor: TlsAcceptor,
    current: &crate::identity::CurrentAttestation,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
) {
    let before = current.get();
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    // A renewal during the handshake leaves it unknown which certificate was presented: the
    // connection is closed and the client connects again.
    if !Arc::ptr_eq(&before, &current.get()) {
        tracing::debug!(%peer, "the attestation was renewed during the handshake; closing");
        return;
    }
    let app = app.layer(axum::Extension(ConnectionAttestation(before)));
    let service = TowerToHyperService::new(app);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    if let Err(error) = builder.serve_connection(TokioIo::new(tls), service).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

async fn identity(
    State(worker): State<Arc<Worker>>,
    connection: Option<axum::Extension<ConnectionAttestation>>,
) -> Json<IdentityResponse> {
    // The attestation this connection's handshake presented (served in-process without TLS,
    // as some tests do, the current one).
    let current = connection.map_or_else(|| worker.identity.current(), |c| c.0.0);
    Json(IdentityResponse {
        certificate_chain_pem: current.certificate_chain_pem.clone(),
        ear: current.ear.clone(),
        runtime_data: current.runtime_data.clone(),
    })
}

async fn put_object(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ObjectStored>, ApiError> {
    // Anyone can reach this route: it stores sealed envelopes and nothing else (red team, round
    // 8, stored arbitrary bytes under an id a party was about to use). The header is read by
    // its own lengths; the body stays sealed, and is authenticated when a job opens it.
    let header = cloister_seal::read_header(body.as_ref())
        .map_err(|e| ApiError::NotAnEnvelope(e.to_string()))?;
    // The envelope names the object it was sealed as (authenticated as associated data when
    // opened): stored under another id, it could only ever fail.
    if header.metadata().object_id != id {
        return Err(ApiError::NotAnEnvelope(format!(
            "it was sealed as object {:?}, not {id:?}",
            header.metadata().object_id
        )));
    }
    let size = body.len() as u64;
    let store = worker.store.clone();
    let object_id = id.clone();
    let sha256 = tokio::task::spawn_blocking(move || store.put(&object_id, &body))
        .await
        .map_err(|_| ApiError::Internal)??;
    tracing::info!(object = %id, size, "stored sealed object");
    Ok(Json(ObjectStored { object_id: id, sha256, size }))
}

async fn get_object(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
) -> Result<Vec<u8>, ApiError> {
    let store = worker.store.clone();
    Ok(tokio::task::spawn_blocking(move || store.get(&id))
        .await
        .map_err(|_| ApiError::Internal)??)
}

async fn submit_job(
    State(worker): State<Arc<Worker>>,
    Json(job): Json<SubmitJob>,
) -> Result<Json<JobDone>, ApiError> {
    let job_id = job.spec.id.clone();
    // Nothing is asked of the key broker for a job its owners did not authorise.
    let authorization = match authorize_job(&worker.identity, &job.spec, &job.grants, unix_now()) {
        Ok(authorization) => authorization,
        Err(error) => {
            tracing::warn!(job = %job_id, %error, "job refused");
            worker.metrics.job("refused");
            return Err(ApiError::Job(error));
        }
    };
    let metrics = worker.metrics.clone();
    let _running = metrics.job_running();
    let prepared = async {
        let recorded =
            record_authorization(&worker, &job.spec, authorization.digest.clone(), None).await?;
        release_broker_keys(&worker, &job.spec, recorded.checkpoint).await
    }
    .await;
    let (released, checkpoint) = prepared.inspect_err(|_| metrics.job("refused"))?;

    let outcome = if job.spec.kind == JobKind::Train {
        crate::training::run_training(worker, job.spec, authorization, released, checkpoint).await
    } else {
        tokio::task::spawn_blocking(move || {
            let (identity, store) = (&worker.identity, &worker.store);
            run_job(identity, store, &job.spec, &job.grants, &released, &checkpoint)
        })
        .await
        .map_err(|_| {
            metrics.job("failed");
            ApiError::Internal
        })?
    };
    match outcome {
        Ok(outcome) => {
            metrics.job("done");
            tracing::info!(job = %job_id, "job finished");
            Ok(Json(JobDone { job_id, outputs: outcome.outputs, receipt: outcome.receipt }))
        }
        Err(error) => {
            metrics.job("failed");
            tracing::warn!(job = %job_id, %error, "job refused or failed");
            Err(ApiError::Job(error))
        }
    }
}

/// Loads a model version from the repository into the serving catalog (manifest verified with
/// its owner's key, weights released by the key broker, every file checked against the manifest).
/// The body names public artefacts only (a signed manifest, a key, a signed policy).
async fn deploy_model(
    State(worker): State<Arc<Worker>>,
    Json(request): Json<cloister_types::model::DeployModel>,
) -> Response {
    match crate::deploy::deploy(&worker, &request).await {
        Ok(deployment) => {
            let deployed = cloister_types::model::DeployedModel {
                model: deployment.model.clone(),
                digest: deployment.digest.clone(),
                task: deployment.task,
                endpoint: deployment.endpoint.clone(),
            };
            let model = deployment.model.clone();
            // Kept only once it loaded; a model that cannot be kept is not served either, so
            // what serves is always what a restart restores.
            if let Err(error) = worker.deployments.persist(&request, deployment) {
                worker.catalog.remove(&model);
                tracing::error!(%model, %error, "the deployment could not be recorded; undone");
                let body = ErrorBody {
                    code: "internal".to_owned(),
                    message: "the worker could not record the deployment; see its log".to_owned(),
                };
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
            Json(deployed).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "model not deployed");
            let status = match &error {
                crate::deploy::DeployError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                crate::deploy::DeployError::Release(_) => StatusCode::FORBIDDEN,
                crate::deploy::DeployError::Catalog(
                    crate::online::CatalogError::AlreadyLoaded(_),
                ) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let body =
                ErrorBody { code: "model_not_deployed".to_owned(), message: error.to_string() };
            (status, Json(body)).into_response()
        }
    }
}

/// The deployments serving now: public facts only (model, digest, owner key, policy expiry).
async fn list_deployments(
    State(worker): State<Arc<Worker>>,
) -> Json<Vec<cloister_types::model::Deployment>> {
    Json(worker.deployments.list())
}

/// Ends a deployment at its owner's signed request ([`crate::deployments::undeploy`]).
async fn undeploy_model(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
    Json(request): Json<cloister_types::model::UndeployModel>,
) -> Response {
    use crate::deployments::DeploymentError;
    match crate::deployments::undeploy(&worker, &id, &request, unix_now()) {
        Ok(deployment) => Json(deployment).into_response(),
        Err(error) => {
            tracing::warn!(model = %id, %error, "model not undeployed");
            let (status, code) = match &error {
                DeploymentError::NotDeployed(_) => (StatusCode::NOT_FOUND, "not_deployed"),
                DeploymentError::NotOwner { .. } => (StatusCode::FORBIDDEN, "not_owner"),
                DeploymentError::OtherDeployment { .. } => {
                    (StatusCode::CONFLICT, "other_deployment")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
                "the worker could not remove the deployment record; see its log".to_owned()
            } else {
                error.to_string()
            };
            (status, Json(ErrorBody { code: code.to_owned(), message })).into_response()
        }
    }
}

/// Records the job's authorization in the attestation service's audit log, signed by this
/// enclave's receipt key. A job that cannot be recorded does not run. Returns the service's
/// signed answer: the audit entry, the latest checkpoint and the service's time.
pub(crate) async fn record_authorization(
    worker: &Worker,
    spec: &JobSpec,
    digest: Hex,
    after: Option<&CheckpointRef>,
) -> Result<VerifiedAnswer<i64>, ApiError> {
    let statement = JobAuthorized {
        job_id: spec.id.clone(),
        job_digest: digest,
        inputs: std::iter::once(&spec.model).chain(spec.data_inputs()).cloned().collect(),
        output_recipients: spec.output_recipients.clone(),
    };
    let signed = worker
        .identity
        .receipt_key()
        .sign("job authorization", &statement, unix_now(), STATEMENT_VALIDITY)
        .map_err(|e| ApiError::NotRecorded(e.to_string()))?;
    match worker.service.record_job(&worker.identity.ear(), &signed, &spec.id, after).await {
        Ok(recorded) => {
            tracing::info!(job = %spec.id, audit_seq = recorded.answer, "job authorization recorded");
            Ok(recorded)
        }
        Err(error) => {
            tracing::warn!(job = %spec.id, %error, "job authorization could not be recorded");
            Err(ApiError::NotRecorded(error.to_string()))
        }
    }
}

/// How long a signed job statement is accepted by the attestation service.
const STATEMENT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(300);

/// Asks the key broker for every key-broker key an input is sealed to (when it is not sealed to
/// this enclave's own key) with [`release_key`], and unwraps each with the enclave's HPKE key. The
/// keys stay in this process and are zeroized when dropped.
pub(crate) async fn release_broker_keys(
    worker: &Worker,
    spec: &JobSpec,
    recorded: CheckpointRef,
) -> Result<(Vec<RecipientSecretKey>, CheckpointRef), ApiError> {
    let mut released: Vec<RecipientSecretKey> = Vec::new();
    // Each release's checkpoint must continue from the latest one this job holds (its record's
    // first), so the last one covers every entry the job made.
    let mut checkpoint = recorded;
    let inputs = std::iter::once((&spec.model, InputRole::Model))
        .chain(spec.data_inputs().map(|input| (input, InputRole::Data)));
    for (input, role) in inputs {
        let (store, id) = (worker.store.clone(), input.object_id.clone());
        let header = tokio::task::spawn_blocking(move || store.header(&id))
            .await
            .map_err(|_| ApiError::Internal)??;
        for key_id in broker_keys_needed(&worker.identity, &header) {
            if released.iter().any(|key| key.key_id() == key_id) {
                continue;
            }
            let context = ReleaseContext {
                job_id: Some(spec.id.clone()),
                requester: Some("cloister-worker".to_owned()),
                purpose: Some(format!("{role:?} input of a {:?} job", spec.kind)),
            };
            let key_id = Hex(key_id.0.to_vec());
            let held = Some(&checkpoint);
            let (key, covering) =
                release_key(worker, &key_id, context, held).await.map_err(|reason| {
                    tracing::warn!(job = %spec.id, %key_id, %reason, "key release refused");
                    ApiError::Release(reason)
                })?;
            tracing::info!(job = %spec.id, %key_id, "key-broker key released to this enclave");
            released.push(key);
            checkpoint = later(checkpoint, covering);
        }
    }
    Ok((released, checkpoint))
}

/// The later of two signed checkpoints (by seq): what a receipt carries, so that it covers
/// every audit entry the job made — its record, its key releases, its privacy charges.
pub(crate) fn later(a: CheckpointRef, b: CheckpointRef) -> CheckpointRef {
    if b.seq > a.seq { b } else { a }
}

/// Asks the key broker for the key `key_id`, presenting this enclave's latest attestation result,
/// and unwraps it with the enclave's HPKE key, once the service's signed answer says it released
/// it for this request; returns it with the signed checkpoint covering the release. When the broker answers that the vendor collateral
/// the result was appraised against has changed (`collateral_changed`: the platform's TCB status
/// may have changed since), the enclave attests again — once — and asks with the new result; a
/// platform the service no longer admits (its TCB revoked, or out of date beyond the instance's
/// policy) gets no new result, and the error says so. The error is a reason in words.
pub(crate) async fn release_key(
    worker: &Worker,
    key_id: &Hex,
    context: ReleaseContext,
    after: Option<&CheckpointRef>,
) -> Result<(RecipientSecretKey, CheckpointRef), String> {
    let mut renewed = false;
    loop {
        let ear = worker.identity.ear();
        let receipt_key = worker.identity.receipt_key();
        match worker.service.release_key(&ear, key_id, &context, after, receipt_key).await {
            Ok((request, verified)) => {
                // The signed checkpoint covering the release's audit entry: the job's receipt
                // carries it (or a later one), and the log keeps it.
                let checkpoint = verified.checkpoint;
                tracing::info!(%key_id, audit_checkpoint = %format_args!("{}:{}",
                    checkpoint.seq, checkpoint.hash), "the key broker released a key");
                let key = cloister_client::open_released_key(
                    worker.identity.x25519_secret()?,
                    &verified.answer,
                    worker.service.instance_id(),
                    &request,
                )
                .map_err(|e| {
                    worker.metrics.key_release(false);
                    e.to_string()
                })?;
                worker.metrics.key_release(true);
                return Ok((key, checkpoint));
            }
            Err(ClientError::Refused { code, message, .. })
                if code == COLLATERAL_CHANGED && !renewed =>
            {
                worker.metrics.key_release(false);
                tracing::info!(%key_id, reason = %message,
                    "the key broker asks for a fresh attestation; attesting again");
                worker.identity.reattest(&worker.service, Some(&ear)).await.map_err(|e| {
                    format!(
                        "the vendor collateral this enclave was appraised against has \
                             changed, and the attestation service refused to appraise it again \
                             against the current collateral: {e}"
                    )
                })?;
                renewed = true;
            }
            Err(error) => {
                worker.metrics.key_release(false);
                return Err(error.to_string());
            }
        }
    }
}

/// A worker failure as an HTTP response. Messages never contain plaintext: job and store errors
/// describe the request, not the data.
#[derive(Debug)]
pub enum ApiError {
    /// A job was refused or failed.
    Job(JobError),
    /// Storage refused.
    Store(StoreError),
    /// The key broker did not release a key an input is sealed to.
    Release(String),
    /// The attestation service did not record the job's authorization in its audit log.
    NotRecorded(String),
    /// An uploaded object is not a sealed envelope.
    NotAnEnvelope(String),
    /// A task panicked.
    Internal,
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Store(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            ApiError::Job(JobError::Store(StoreError::NotFound(_)))
            | ApiError::Store(StoreError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found", self.message())
            }
            ApiError::Store(StoreError::Exists(_)) => {
                (StatusCode::CONFLICT, "exists", self.message())
            }
            ApiError::Store(StoreError::BadId(_)) => {
                (StatusCode::BAD_REQUEST, "bad_id", self.message())
            }
            ApiError::Job(JobError::MissingGrant { .. } | JobError::RecipientNotApproved(_)) => {
                (StatusCode::FORBIDDEN, "not_authorised", self.message())
            }
            ApiError::Job(JobError::BadSpec(_)) => {
                (StatusCode::BAD_REQUEST, "bad_job", self.message())
            }
            ApiError::Job(JobError::PrivacyBudget { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "over_privacy_budget", self.message())
            }
            ApiError::Job(_) => (StatusCode::UNPROCESSABLE_ENTITY, "job_failed", self.message()),
            ApiError::Release(_) => (StatusCode::FORBIDDEN, "key_not_released", self.message()),
            ApiError::NotAnEnvelope(_) => {
                (StatusCode::BAD_REQUEST, "not_an_envelope", self.message())
            }
            ApiError::NotRecorded(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "not_recorded", self.message())
            }
            ApiError::Store(StoreError::Io { .. }) | ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the worker failed internally; see its log".to_owned(),
            ),
        };
        (status, Json(ErrorBody { code: code.to_owned(), message })).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl ApiError {
    fn message(&self) -> String {
        match self {
            ApiError::Job(e) => e.to_string(),
            ApiError::Store(e) => e.to_string(),
            ApiError::NotRecorded(reason) => format!(
                "the job's authorization could not be recorded in the audit log, so it does not \
                 run: {reason}"
            ),
            ApiError::Release(reason) => {
                format!("the key broker did not release an input's key to this enclave: {reason}")
            }
            ApiError::NotAnEnvelope(reason) => format!(
                "the object is not a sealed envelope ({reason}); the worker stores only what \
                 `cloister seal` (or a party's client) makes"
            ),
            ApiError::Internal => "internal error".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_routes_served_each_with_an_operation_id() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut ids = std::collections::BTreeSet::new();
        let mut described = 0;
        for (path, operations) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                described += 1;
                let served = API.iter().any(|(m, p)| p == path && m.eq_ignore_ascii_case(method));
                assert!(served, "openapi.json describes {method} {path}, which is not served");
                let id = operation["operationId"].as_str().unwrap_or_default();
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(ids.insert(id.to_owned()), "{method} {path}: operationId {id} is taken");
            }
        }
        for (method, path) in API {
            let operation = &doc["paths"][path][method.to_ascii_lowercase()];
            assert!(operation.is_object(), "{method} {path} is served but not described");
            // Requests are counted by route; a route missing there is counted as `unmatched`.
            assert!(crate::metrics::ROUTES.contains(&path), "{path} is not a metrics route");
        }
        assert_eq!(described, API.len());
    }
}
