//! Durable batch jobs: the request that queues one, its status, the statement an enclave signs for
//! each finished chunk, and the receipt that names every chunk.
//!
//! A batch job's data set is split into chunks of `chunk_rows` rows; chunk `k` covers rows
//! `k * chunk_rows ..` and its predictions are sealed to the recipients as object
//! `{job}-out-{k:06}`. Chunk 0's plaintext starts with the CSV header line; the plaintexts of all
//! chunks, concatenated in order, are the job's whole output CSV.

use serde::{Deserialize, Serialize};

use crate::encoding::Hex;
use crate::job::{JobSpec, ReceiptInput};

/// `POST /v1/batch` request: a job, its grants, and the chunk size.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// The job (every owner's grant names its digest).
    pub spec: JobSpec,
    /// Compact JWS grants, one per input owner.
    pub grants: Vec<String>,
    /// Rows per chunk (at least 1).
    pub chunk_rows: u64,
}

/// `POST /v1/batch` response (202): the job is queued.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchAccepted {
    /// The job id.
    pub job_id: String,
    /// Its state (`queued`).
    pub state: BatchState,
}

/// Where a batch job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Accepted, not started yet.
    Queued,
    /// Chunks are being computed (also after a restart, until done).
    Running,
    /// Every chunk is sealed and the receipt is signed.
    Done,
    /// Stopped for good; the status carries the reason.
    Failed,
}

impl BatchState {
    /// The name stored in the queue and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Queued => "queued",
            BatchState::Running => "running",
            BatchState::Done => "done",
            BatchState::Failed => "failed",
        }
    }

    /// Parses [`BatchState::as_str`]'s names.
    pub fn parse(text: &str) -> Option<BatchState> {
        match text {
            "queued" => Some(BatchState::Queued),
            "running" => Some(BatchState::Running),
            "done" => Some(BatchState::Done),
            "failed" => Some(BatchState::Failed),
            _ => None,
        }
    }
}

/// One finished chunk: what the enclave that computed it signs (as a compact JWS with its
/// receipt key) when it records the chunk, and what the receipt lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchChunk {
    /// The job.
    pub job_id: String,
    /// The job's digest.
    pub job_digest: Hex,
    /// The chunk's index, from 0.
    pub index: u64,
    /// Index of its first row in the data set.
    pub first_row: u64,
    /// Rows in the chunk.
    pub rows: u64,
    /// The sealed output object.
    pub object_id: String,
    /// SHA-256 of the sealed output object.
    pub ciphertext_sha256: Hex,
    /// SHA-256 of the EAR token of the enclave that computed and sealed the chunk.
    pub attestation_result_sha256: Hex,
}

/// SHA-256 of the canonical JSON of `chunks` (an array, in order): what a [`BatchReceipt`]
/// commits to.
pub fn chunks_digest(chunks: &[BatchChunk]) -> Result<Hex, crate::CanonicalJsonError> {
    use sha2::{Digest as _, Sha256};
    Ok(Hex(Sha256::digest(crate::canonical::canonical_json(chunks)?).to_vec()))
}

/// An enclave that worked on a batch job (a job resumed after a restart has several).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEnclave {
    /// SHA-256 of its EAR token.
    pub attestation_result_sha256: Hex,
    /// Its measurement.
    pub measurement: Hex,
    /// Its receipt key (text form), which signed its chunk statements.
    pub receipt_pk: String,
}

/// What the enclave that finishes a batch job signs with its receipt key.
///
/// The signer checked, before signing, that every chunk statement verifies with the receipt key
/// of an enclave certified by the same instance CA with the signer's own measurement and TEE, and
/// that every stored chunk object has the digest named here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchReceipt {
    /// The job.
    pub job_id: String,
    /// Its digest.
    pub job_digest: Hex,
    /// The inputs, as read and decrypted by the signer.
    pub inputs: Vec<ReceiptInput>,
    /// Rows per chunk.
    pub chunk_rows: u64,
    /// Rows processed in all.
    pub rows: u64,
    /// Chunks in the job.
    pub chunk_count: u64,
    /// [`chunks_digest`] of every chunk, in order: the receipt commits to the chunk list the
    /// worker's status carries instead of listing it, so its size does not grow with the job (a
    /// receipt listing ~2,000 chunks was longer than a token may be, red team round 8).
    pub chunks_sha256: Hex,
    /// Every enclave that computed a chunk (and the signer).
    pub enclaves: Vec<BatchEnclave>,
    /// SHA-256 of the signer's EAR token.
    pub attestation_result_sha256: Hex,
    /// The signer's measurement.
    pub measurement: Hex,
    /// The attestation service's latest signed audit checkpoint when the signer recorded the job
    /// (from its signed answer).
    pub audit_checkpoint: crate::api::CheckpointRef,
    /// What each enclave erased when its part of the job ended.
    pub erased: Vec<String>,
    /// Unix seconds when the job was accepted.
    pub submitted_at: i64,
    /// Unix seconds when the receipt was signed.
    pub finished_at: i64,
}

/// `GET /v1/batch/{id}` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchStatus {
    /// The job id.
    pub job_id: String,
    /// Its state.
    pub state: BatchState,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Rows sealed so far.
    pub rows_done: u64,
    /// Rows in the data set; `None` until a runner has opened it.
    pub rows_total: Option<u64>,
    /// Chunks in the job; `None` until a runner has opened the data set.
    pub chunks_total: Option<u64>,
    /// The finished chunks, in order.
    pub chunks: Vec<BatchChunk>,
    /// When done: the [`BatchReceipt`] as a compact JWS.
    pub receipt: Option<String>,
    /// When done: the certificate chain (PEM) of the enclave that signed the receipt; verify it
    /// against your own expectations to get the receipt key.
    pub receipt_signer_chain_pem: Option<String>,
}

/// A sharded job's results, as `cloister job fetch --job PLAN` keeps them: the plan and each
/// shard's done status (its receipt, the receipt signer's certificate chain and the chunks), in
/// shard order. It carries no signature of its own: it verifies when every shard's receipt does
/// and each names exactly the shard job the plan derives, so nobody can drop, repeat, reorder or
/// swap in a shard without the check failing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CombinedReceipt {
    /// The plan the shards were run from.
    pub plan: crate::job::ShardedJob,
    /// Each shard's done status, in shard order.
    pub shards: Vec<BatchStatus>,
}

/// What the enclave that accepted a batch job signs with its receipt key
/// (`what = "batch terms"`, issued at `accepted_at`), kept in the worker's queue: the terms every
/// enclave that later resumes the job checks and runs under. The host stores it but cannot
/// change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchTerms {
    /// The job.
    pub job_id: String,
    /// Its digest.
    pub job_digest: Hex,
    /// SHA-256 of the owners' grants as a JSON array of compact JWS texts.
    pub grants_sha256: Hex,
    /// Rows per chunk.
    pub chunk_rows: u64,
    /// When the job was accepted: the attestation service's time in its signed answer recording
    /// the job (Unix seconds), at which the grants are checked again on every resume.
    pub accepted_at: i64,
    /// The accepting enclave's certificate chain (PEM, leaf first): its receipt key verifies
    /// this statement.
    pub certificate_chain_pem: String,
    /// The signed audit checkpoint the service's answer recording the job carried: every
    /// enclave that runs the job names it (`after`) when it records the job again, so the
    /// receipt's checkpoint covers the first record too.
    #[serde(default)]
    pub audit_checkpoint: crate::api::CheckpointRef,
}

/// What an enclave signs with its receipt key when it joins a batch job
/// (`what = "batch join"`): the attestation service's time from its signed answer, at which the
/// enclave's certificate is checked when the receipt is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchJoined {
    /// The job.
    pub job_id: String,
    /// SHA-256 of the enclave's EAR token.
    pub attestation_result_sha256: Hex,
    /// The service's time when the enclave recorded the job (Unix seconds).
    pub joined_at: i64,
}

/// SHA-256 of `grants` as a JSON array: what [`BatchTerms::grants_sha256`] names.
pub fn grants_sha256(grants: &[String]) -> Hex {
    use sha2::{Digest as _, Sha256};
    let json = serde_json::to_vec(grants).unwrap_or_default();
    Hex(Sha256::digest(json).to_vec())
}
