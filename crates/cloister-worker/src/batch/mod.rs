//! Durable batch inference: jobs queued in SQLite, run in chunks, resumed after a crash.
//!
//! `POST /v1/batch` checks every owner's grant exactly as `POST /v1/jobs` does, refuses inputs
//! that are not sealed to a key-broker key (a batch job outlives the enclave whose own key dies
//! with its process), records the authorization in the audit log, queues the job and answers 202.
//! A runner task per job ([`runner`]) has the broker release the input keys to this enclave,
//! decrypts, and for each chunk of `chunk_rows` rows not yet done runs the model, seals the
//! chunk's output to the recipients as object `{job}-out-{k:06}` and, in one transaction,
//! marks the chunk done with the object's digest and a statement signed by this enclave's receipt
//! key. After a restart the worker resumes every unfinished job: chunks marked done are skipped;
//! a chunk whose object exists but is not marked done is computed again and its object replaced.
//! Chunk boundaries and inference batches depend only on the job, so the plaintext of every chunk
//! is the same whether or not the job was interrupted. The model is ONNX over the rows of a CSV
//! table (predictions CSV out), or a GGUF language model over JSON-lines prompts answered with
//! greedy decoding ([`prompts`]; answers as JSON lines out). When all chunks are done, the enclave
//! checks every chunk statement and stored digest and signs a [`BatchReceipt`] naming every
//! chunk and every enclave that computed one.
//!
//! **The queue holds no plaintext and no secret** (ids, digests, counts, states, public keys,
//! certificates, grant texts); **a chunk is marked done only after its sealed object is durably
//! stored, in the same transaction as the job's progress.** **Nothing an enclave relies on comes
//! from the queue unsigned:** the accepting enclave signs the job's terms ([`BatchTerms`]: digest,
//! grants, chunk size, and the time it was accepted, which is the attestation service's signed
//! time), every enclave that joins signs when it joined (the service's time, [`BatchJoined`]),
//! and a resumed run or a receipt uses only what those statements say.
//!
//! [`BatchTerms`]: cloister_types::batch::BatchTerms
//! [`BatchJoined`]: cloister_types::batch::BatchJoined
//!
//! [`BatchReceipt`]: cloister_types::batch::BatchReceipt

pub mod prompts;
mod queue;
pub mod runner;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cloister_sign::unix_now;
use cloister_types::api::ErrorBody;
use cloister_types::batch::{
    BatchAccepted, BatchState, BatchStatus, BatchTerms, SubmitBatch, grants_sha256,
};
use cloister_types::{InputRole, JobKind};
use sha2::{Digest as _, Sha256};

pub use queue::{BatchQueue, ChunkRow, EnclaveRow, JobRow};

use crate::jobs::authorize_job;
use crate::server::{ApiError, Worker, record_authorization};
use crate::store::StoreError;

/// The largest chunk accepted.
pub const MAX_CHUNK_ROWS: u64 = 1_000_000;

/// What a job's signed terms are verified as.
pub(crate) const TERMS_WHAT: &str = "batch terms";
/// How long signed terms (and joins) stay verifiable: longer than any job runs.
pub(crate) const TERMS_VALIDITY: std::time::Duration =
    std::time::Duration::from_secs(400 * 24 * 3600);

/// Why a batch request or job failed. No variant carries plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The queue database failed.
    #[error("the batch queue database failed: {0}")]
    Database(String),
    /// The queue holds something it cannot read or that contradicts the job.
    #[error("the batch queue is inconsistent: {0}")]
    Corrupt(String),
    /// A job with this id is already queued.
    #[error("a batch job with id {0} already exists; choose a new job id")]
    Exists(String),
    /// No such job.
    #[error("no batch job with id {0}")]
    NotFound(String),
    /// The request is not acceptable.
    #[error("the batch request is not valid: {0}")]
    BadRequest(String),
    /// An input is not sealed to a key-broker key.
    #[error(
        "the {role:?} input {object_id} is not sealed to a key-broker key; a batch job can outlive \
         this enclave, whose own key dies with its process, so seal batch inputs to a key \
         registered with the key broker (`cloister key register`, then `cloister seal \
         --recipient` with the key's recipient text)"
    )]
    NotBrokerSealed {
        /// Which input.
        role: InputRole,
        /// Its object id.
        object_id: String,
    },
    /// The stored ciphertext is not what the job names.
    #[error(
        "the sealed {role:?} object {object_id} in storage does not match the digest in the job"
    )]
    CiphertextMismatch {
        /// Which input.
        role: InputRole,
        /// Which object.
        object_id: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chunk or the receipt failed a check.
    #[error("batch job {job_id}: {reason}")]
    Check {
        /// The job.
        job_id: String,
        /// What failed.
        reason: String,
    },
}

/// A batch request's failure as an HTTP response.
#[derive(Debug)]
pub enum BatchApiError {
    /// A failure shared with `POST /v1/jobs` (grants, audit record, storage).
    Api(ApiError),
    /// A batch-specific failure.
    Batch(BatchError),
}

impl From<BatchError> for BatchApiError {
    fn from(error: BatchError) -> Self {
        BatchApiError::Batch(error)
    }
}

impl From<ApiError> for BatchApiError {
    fn from(error: ApiError) -> Self {
        BatchApiError::Api(error)
    }
}

impl IntoResponse for BatchApiError {
    fn into_response(self) -> Response {
        let error = match self {
            BatchApiError::Api(error) => return error.into_response(),
            BatchApiError::Batch(error) => error,
        };
        let (status, code) = match &error {
            BatchError::Exists(_) => (StatusCode::CONFLICT, "exists"),
            BatchError::NotFound(_) | BatchError::Store(StoreError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            BatchError::BadRequest(_) | BatchError::Store(StoreError::BadId(_)) => {
                (StatusCode::BAD_REQUEST, "bad_job")
            }
            BatchError::NotBrokerSealed { .. } => (StatusCode::BAD_REQUEST, "not_broker_sealed"),
            BatchError::CiphertextMismatch { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "job_failed")
            }
            _ => {
                tracing::error!(%error, "batch request failed internally");
                let body = ErrorBody {
                    code: "internal".to_owned(),
                    message: "the worker failed internally; see its log".to_owned(),
                };
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
        };
        (status, Json(ErrorBody { code: code.to_owned(), message: error.to_string() }))
            .into_response()
    }
}

/// `POST /v1/batch`: authorize, check the inputs, record, queue, start a runner; 202.
pub async fn submit(
    State(worker): State<Arc<Worker>>,
    Json(request): Json<SubmitBatch>,
) -> Result<(StatusCode, Json<BatchAccepted>), BatchApiError> {
    let spec = request.spec;
    // Owners grant a job of one kind; a training job (whose grants may carry a privacy budget)
    // must never run here as inference.
    if spec.kind != JobKind::BatchInference {
        return Err(BatchError::BadRequest(format!(
            "a batch job must be of kind batch-inference, not {:?}; submit training jobs to \
             POST /v1/jobs",
            spec.kind
        ))
        .into());
    }
    if request.chunk_rows == 0 || request.chunk_rows > MAX_CHUNK_ROWS {
        return Err(BatchError::BadRequest(format!(
            "chunk_rows must be between 1 and {MAX_CHUNK_ROWS}, not {}",
            request.chunk_rows
        ))
        .into());
    }
    let id_ok = !spec.id.is_empty()
        && spec.id.len() <= 100
        && !spec.id.starts_with('.')
        && spec.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !id_ok {
        return Err(BatchError::BadRequest(format!(
            "job id {:?} must be 1 to 100 characters from A-Z a-z 0-9 . _ -, not starting with '.' \
             (it names the output objects)",
            spec.id
        ))
        .into());
    }
    let submitted_at = unix_now();
    let authorization = authorize_job(&worker.identity, &spec, &request.grants, submitted_at)
        .map_err(|error| {
            tracing::warn!(job = %spec.id, %error, "batch job refused");
            ApiError::Job(error)
        })?;
    for (input, role) in [(&spec.model, InputRole::Model), (&spec.data, InputRole::Data)] {
        let (store, id) = (worker.store.clone(), input.object_id.clone());
        let (header, bytes) = tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((store.header(&id)?, store.get(&id)?))
        })
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(BatchError::Store)?;
        // A ShangMi enclave has no key broker to ask (releases are wrapped to X25519 keys), so
        // it takes inputs sealed to itself; such a job fails, closed, if it has to resume in
        // another enclave (docs/shangmi.md). Every other enclave keeps the rule.
        let shangmi = worker.identity.suite() == cloister_seal::Suite::ShangMi;
        let to_this_enclave =
            header.recipient_key_ids().contains(&worker.identity.hpke_secret().key_id());
        if shangmi && !to_this_enclave {
            return Err(BatchError::BadRequest(format!(
                "the {role:?} input {} is not sealed to this enclave, and a ShangMi enclave \
                 takes only inputs sealed to itself (`job upload --recipient enclave`): key-broker \
                 releases are wrapped to X25519 keys",
                input.object_id
            ))
            .into());
        }
        if header.broker_key_ids().is_empty() && !(shangmi && to_this_enclave) {
            tracing::warn!(job = %spec.id, object = %input.object_id, "batch input not sealed to a broker key");
            return Err(
                BatchError::NotBrokerSealed { role, object_id: input.object_id.clone() }.into()
            );
        }
        if Sha256::digest(&bytes).as_slice() != input.sha256.as_bytes() {
            return Err(BatchError::CiphertextMismatch {
                role,
                object_id: input.object_id.clone(),
            }
            .into());
        }
    }
    if worker.batches.job(&spec.id).await?.is_some() {
        return Err(BatchError::Exists(spec.id.clone()).into());
    }
    let recorded = record_authorization(&worker, &spec, authorization.digest.clone(), None).await?;
    // The service's time, not the host's, is when the job was accepted: the grants must hold then
    // (every resume checks them again at that time, from the signed terms).
    let accepted_at = recorded.service_time;
    authorize_job(&worker.identity, &spec, &request.grants, accepted_at).map_err(ApiError::Job)?;
    let terms = BatchTerms {
        job_id: spec.id.clone(),
        job_digest: authorization.digest.clone(),
        grants_sha256: grants_sha256(&request.grants),
        chunk_rows: request.chunk_rows,
        accepted_at: accepted_at as i64,
        certificate_chain_pem: worker.identity.certificate_chain_pem().to_owned(),
        audit_checkpoint: recorded.checkpoint.clone(),
    };
    let terms = worker
        .identity
        .receipt_key()
        .sign(TERMS_WHAT, &terms, accepted_at, TERMS_VALIDITY)
        .map_err(|e| BatchError::Corrupt(format!("signing the job's terms: {e}")))?;
    worker
        .batches
        .insert(
            &spec,
            &authorization.digest,
            &request.grants,
            request.chunk_rows,
            accepted_at as i64,
            &terms,
        )
        .await?;
    tracing::info!(job = %spec.id, chunk_rows = request.chunk_rows, "batch job queued");
    runner::spawn(worker.clone(), spec.id.clone());
    Ok((StatusCode::ACCEPTED, Json(BatchAccepted { job_id: spec.id, state: BatchState::Queued })))
}

/// `GET /v1/batch/{id}`: state, progress, chunks, and the receipt when done.
pub async fn status(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
) -> Result<Json<BatchStatus>, BatchApiError> {
    Ok(Json(job_status(&worker.batches, &id).await?))
}

/// The status of job `id` as the API shows it.
pub async fn job_status(queue: &BatchQueue, id: &str) -> Result<BatchStatus, BatchError> {
    let job = queue.job(id).await?.ok_or_else(|| BatchError::NotFound(id.to_owned()))?;
    let chunks = queue.chunks(id).await?.into_iter().map(|row| row.chunk).collect();
    // Since receipts are signed under the enclave's current attestation, the column holds the
    // signer's chain; before, it named one of the job's enclaves by the digest of its result.
    let receipt_signer_chain_pem = match &job.receipt_signer {
        Some(chain) if chain.starts_with("-----BEGIN") => Some(chain.clone()),
        Some(signer) => queue
            .enclaves(id)
            .await?
            .into_iter()
            .find(|e| &e.attestation_result_sha256 == signer)
            .map(|e| e.certificate_chain_pem),
        None => None,
    };
    Ok(BatchStatus {
        job_id: id.to_owned(),
        state: job.state,
        reason: job.reason,
        rows_done: job.rows_done,
        rows_total: job.rows_total,
        chunks_total: job.chunks_total,
        chunks,
        receipt: job.receipt,
        receipt_signer_chain_pem,
    })
}

/// Starts a runner for every queued or running job: what a worker does when it starts.
/// Returns how many jobs it resumed.
pub async fn resume(worker: &Arc<Worker>) -> Result<usize, BatchError> {
    let ids = worker.batches.unfinished().await?;
    for id in &ids {
        tracing::info!(job = %id, "resuming batch job");
        runner::spawn(worker.clone(), id.clone());
    }
    Ok(ids.len())
}
