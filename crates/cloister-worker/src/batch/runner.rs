//! The runner of one batch job: verifies the terms the accepting enclave signed, re-checks the
//! grants at the time those terms name, records this enclave's authorization and signs its join,
//! has the broker release the input keys, decrypts once, computes and seals the chunks not yet
//! done, and signs the receipt when every chunk is (checking every enclave at the time its
//! signed join names).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use cloister_client::enclave::read_claims_unverified;
use cloister_client::{Expectations, verify_enclave_certificate};
use cloister_seal::Metadata;
use cloister_sign::unix_now;
use cloister_types::batch::{
    BatchChunk, BatchEnclave, BatchJoined, BatchReceipt, BatchState, BatchTerms, grants_sha256,
};
use cloister_types::job::ReceiptInput;
use cloister_types::{Hex, InputRole, JobKind, pem_certificates};
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize as _, Zeroizing};

use super::prompts::Prompt;
use super::{BatchError, EnclaveRow, JobRow, TERMS_VALIDITY, TERMS_WHAT};
use crate::jobs::{BATCH_ROWS, authorize_job, open_input, read_checked, receipt_input};
use crate::server::{Worker, record_authorization, release_broker_keys};
use cloister_engine::{LlmModel, OnnxModel, Table, run_batch};

/// How long chunk statements and batch receipts stay verifiable.
const STATEMENT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// What a join statement is verified as.
const JOINED_WHAT: &str = "batch join";

/// What each enclave that worked on a batch job erased when its part ended.
const ERASED: [&str; 5] = [
    "model plaintext",
    "data set plaintext",
    "decoded feature table or prompts",
    "chunk predictions or answers plaintext",
    "released key-broker keys and envelope data-encryption keys",
];

/// The decrypted job, held for the runner's lifetime; the table and the prompts zeroize
/// themselves when dropped.
struct Opened {
    work: Work,
    inputs: Vec<ReceiptInput>,
}

/// What a batch job computes: an ONNX model over the rows of a CSV table, or a GGUF language
/// model over the prompts of a JSON-lines data set (see [`super::prompts`]).
enum Work {
    Tabular { model: OnnxModel, table: Table },
    Prompts { model: Box<LlmModel>, prompts: Vec<Prompt> },
}

impl Work {
    /// Decodes the model (a GGUF file is a language model, anything else must be ONNX) and the
    /// data set that goes with it.
    fn open(model: &[u8], data: &[u8], llm_threads: NonZeroUsize) -> Result<Work, String> {
        if model.starts_with(b"GGUF") {
            let model =
                LlmModel::from_gguf_with_threads(model, llm_threads).map_err(|e| e.to_string())?;
            let prompts = super::prompts::parse(data).map_err(|e| e.to_string())?;
            Ok(Work::Prompts { model: Box::new(model), prompts })
        } else {
            let model = OnnxModel::load(model).map_err(|e| e.to_string())?;
            let table = Table::from_csv(data).map_err(|e| e.to_string())?;
            Ok(Work::Tabular { model, table })
        }
    }

    /// Rows (table rows or prompts).
    fn rows(&self) -> usize {
        match self {
            Work::Tabular { table, .. } => table.rows(),
            Work::Prompts { prompts, .. } => prompts.len(),
        }
    }
}

/// Starts the runner of `job_id` unless one already runs in this process.
pub fn spawn(worker: Arc<Worker>, job_id: String) {
    if !worker.batches.claim(&job_id) {
        return;
    }
    tokio::spawn(async move {
        match run(&worker, &job_id).await {
            Ok(()) => tracing::info!(job = %job_id, "batch job done"),
            Err(error) => {
                tracing::warn!(job = %job_id, %error, "batch job failed");
                if let Err(e) =
                    worker.batches.fail(&job_id, &error.to_string(), unix_now() as i64).await
                {
                    tracing::error!(job = %job_id, error = %e, "could not mark the batch job failed");
                }
            }
        }
        worker.batches.release(&job_id);
    });
}

fn check(job_id: &str, reason: impl Into<String>) -> BatchError {
    BatchError::Check { job_id: job_id.to_owned(), reason: reason.into() }
}

/// The sha256 of this enclave's EAR token.
fn own_attestation(worker: &Worker) -> Hex {
    Hex(Sha256::digest(worker.identity.ear().as_bytes()).to_vec())
}

async fn run(worker: &Arc<Worker>, job_id: &str) -> Result<(), BatchError> {
    let job =
        worker.batches.job(job_id).await?.ok_or_else(|| BatchError::NotFound(job_id.into()))?;
    if !matches!(job.state, BatchState::Queued | BatchState::Running) {
        return Ok(());
    }
    if job.spec.kind != JobKind::BatchInference {
        return Err(check(job_id, "only batch-inference jobs run as batch jobs"));
    }
    // The terms the accepting enclave signed, not the host's row, say when the job was accepted
    // and how it is chunked; this enclave (perhaps a new one after a restart) checks the grants
    // again against its own measurement, at that time.
    let terms = verify_terms(worker, &job).map_err(|reason| check(job_id, reason))?;
    let accepted_at = u64::try_from(terms.accepted_at).unwrap_or_default();
    let authorization = authorize_job(&worker.identity, &job.spec, &job.grants, accepted_at)
        .map_err(|e| check(job_id, e.to_string()))?;
    if authorization.digest != job.job_digest || authorization.digest != terms.job_digest {
        return Err(check(job_id, "the queued digest is not the digest of the queued spec"));
    }
    // Recorded again, continuing from the checkpoint of the job's first record (in the signed
    // terms), so the receipt's checkpoint covers both records.
    let first = Some(&terms.audit_checkpoint);
    let recorded = record_authorization(worker, &job.spec, authorization.digest.clone(), first)
        .await
        .map_err(|e| check(job_id, e.to_string()))?;
    let joined = BatchJoined {
        job_id: job_id.to_owned(),
        attestation_result_sha256: own_attestation(worker),
        joined_at: recorded.service_time as i64,
    };
    let joined = worker
        .identity
        .receipt_key()
        .sign(JOINED_WHAT, &joined, recorded.service_time, TERMS_VALIDITY)
        .map_err(|e| check(job_id, e.to_string()))?;
    let own = own_attestation(worker);
    worker
        .batches
        .add_enclave(
            job_id,
            &EnclaveRow {
                attestation_result_sha256: own.to_string(),
                measurement: worker.identity.claims().measurement.to_string(),
                receipt_pk: worker.identity.receipt_key().public_key().to_text(),
                certificate_chain_pem: worker.identity.certificate_chain_pem().to_owned(),
                joined_at: recorded.service_time as i64,
                joined,
            },
        )
        .await?;
    // The receipt's checkpoint covers the job's record and its key releases.
    let (released, checkpoint) = release_broker_keys(worker, &job.spec, recorded.checkpoint)
        .await
        .map_err(|e| check(job_id, e.to_string()))?;

    let opening = worker.clone();
    let spec = job.spec.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<Opened, BatchError> {
        let fail = |e: crate::JobError| check(&spec.id, e.to_string());
        let model_sealed =
            read_checked(&opening.store, &spec.model, InputRole::Model).map_err(fail)?;
        let data_sealed =
            read_checked(&opening.store, &spec.data, InputRole::Data).map_err(fail)?;
        let model_plain =
            open_input(&opening.identity, &released, &model_sealed, &spec.model, InputRole::Model)
                .map_err(fail)?;
        let data_plain =
            open_input(&opening.identity, &released, &data_sealed, &spec.data, InputRole::Data)
                .map_err(fail)?;
        drop(released);
        let inputs = vec![
            receipt_input(&spec.model, InputRole::Model, &model_plain),
            receipt_input(&spec.data, InputRole::Data, &data_plain),
        ];
        let work = Work::open(&model_plain, &data_plain, opening.llm_threads)
            .map_err(|e| check(&spec.id, e))?;
        drop((model_plain, data_plain));
        Ok(Opened { work, inputs })
    })
    .await
    .map_err(|_| check(job_id, "the decrypting task panicked"))??;

    let rows = opened.work.rows() as u64;
    let chunks_total = rows.div_ceil(terms.chunk_rows);
    worker.batches.start(job_id, rows, chunks_total).await?;
    let done = worker.batches.done_indexes(job_id).await?;
    let recipients = Arc::new(authorization.recipients);
    let opened = Arc::new(opened);
    for index in (0..chunks_total).filter(|k| !done.contains(k)) {
        let first_row = index * terms.chunk_rows;
        let chunk_rows = terms.chunk_rows.min(rows - first_row);
        let (w, o, r, id) = (worker.clone(), opened.clone(), recipients.clone(), job_id.to_owned());
        let (object_id, ciphertext_sha256) = tokio::task::spawn_blocking(move || {
            seal_chunk(&w, &o, &r, &id, index, first_row, chunk_rows)
        })
        .await
        .map_err(|_| check(job_id, "a chunk task panicked"))??;
        let chunk = BatchChunk {
            job_id: job_id.to_owned(),
            job_digest: job.job_digest.clone(),
            index,
            first_row,
            rows: chunk_rows,
            object_id,
            ciphertext_sha256,
            attestation_result_sha256: own.clone(),
        };
        let now = unix_now();
        let statement = worker
            .identity
            .receipt_key()
            .sign("batch chunk", &chunk, now, STATEMENT_VALIDITY)
            .map_err(|e| check(job_id, e.to_string()))?;
        worker.batches.record_chunk(&chunk, &statement, now as i64).await?;
        worker.metrics.chunk_sealed();
        tracing::debug!(job = %job_id, chunk = index, "batch chunk sealed and recorded");
        let pause = worker.batches.chunk_pause();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let inputs = opened.inputs.clone();
    // The last reference: the model and the table or prompts (zeroized on drop) go now.
    drop(opened);
    finish(worker, &job, &terms, rows, inputs, &own, checkpoint).await
}

/// This enclave's expectations of the enclaves it works with: its own CA, measurement and TEE,
/// and a test root only when this enclave itself was attested under one.
fn own_expectations(worker: &Worker) -> Result<Expectations, String> {
    let identity = &worker.identity;
    let ca_der = identity
        .certificate_chain_der()
        .pop()
        .ok_or_else(|| "this enclave has no certificate chain".to_owned())?;
    Ok(Expectations {
        ca_der,
        allowed_measurements: vec![identity.claims().measurement.clone()],
        accepted_tees: vec![identity.claims().tee],
        accept_test_roots: identity.claims().under_test_root(),
    })
}

/// The claims of a compact JWS, read without verifying: only to find the key and the time to
/// verify it with.
fn peek_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The job's terms, verified: signed by an enclave that this enclave's CA certified with this
/// enclave's measurement (checked at the time the terms name), for this job, these grants and
/// the queued chunk size.
fn verify_terms(worker: &Worker, job: &JobRow) -> Result<BatchTerms, String> {
    if job.terms.is_empty() {
        return Err("the job has no signed terms (it was queued by an older worker); submit it \
                    again"
            .to_owned());
    }
    let claimed = peek_claims(&job.terms).ok_or("the job's terms are not a signed statement")?;
    let pem = claimed["certificate_chain_pem"].as_str().unwrap_or_default();
    let accepted_at = claimed["accepted_at"].as_u64().unwrap_or_default();
    let chain = pem_certificates(pem).map_err(|e| format!("the terms' certificate chain: {e}"))?;
    let enclave = verify_enclave_certificate(&chain, &own_expectations(worker)?, accepted_at)
        .map_err(|e| format!("the enclave that accepted the job: {e}"))?;
    let terms = enclave
        .receipt_pk
        .verify::<BatchTerms>(TERMS_WHAT, &job.terms, accepted_at)
        .map_err(|e| format!("the job's terms: {e}"))?
        .claims;
    let tampered = |what: &str| {
        format!("the queue's {what} is not what the terms signed by the accepting enclave say")
    };
    if terms.job_id != job.spec.id {
        return Err(tampered("job id"));
    }
    if terms.job_digest != job.job_digest {
        return Err(tampered("job digest"));
    }
    if terms.grants_sha256 != grants_sha256(&job.grants) {
        return Err(tampered("grants"));
    }
    if terms.chunk_rows != job.chunk_rows {
        return Err(tampered("chunk size"));
    }
    Ok(terms)
}

/// An enclave's join, verified with the receipt key its certificate binds, and then the
/// enclave itself, at the time its join names (the service's time when it recorded the job).
fn verify_joined(
    row: &EnclaveRow,
    job_id: &str,
    expectations: &Expectations,
) -> Result<cloister_client::VerifiedEnclave, String> {
    let chain = pem_certificates(&row.certificate_chain_pem)
        .map_err(|e| format!("its certificate chain: {e}"))?;
    let leaf = chain.first().ok_or("its certificate chain is empty")?;
    let unverified = read_claims_unverified(leaf).map_err(|e| e.to_string())?;
    let key = cloister_sign::AnyVerifyingKey::from_text(&unverified.runtime_data.receipt_pk)
        .map_err(|e| e.to_string())?;
    let claimed = peek_claims(&row.joined).ok_or("its join is not a signed statement")?;
    let at = claimed["joined_at"].as_u64().unwrap_or_default();
    let joined = key
        .verify::<BatchJoined>(JOINED_WHAT, &row.joined, at)
        .map_err(|e| format!("its join: {e}"))?
        .claims;
    if joined.job_id != job_id
        || joined.attestation_result_sha256.to_string() != row.attestation_result_sha256
    {
        return Err("its join names another job or enclave".to_owned());
    }
    let at = u64::try_from(joined.joined_at).unwrap_or_default();
    let enclave =
        verify_enclave_certificate(&chain, expectations, at).map_err(|e| e.to_string())?;
    if enclave.receipt_pk != key {
        return Err("its join is not signed by its certificate's receipt key".to_owned());
    }
    Ok(enclave)
}

/// Computes chunk `index` (rows `first_row .. first_row + rows`), seals its output to the
/// recipients and stores it, replacing an object a crashed run may have left: predictions CSV
/// (chunk 0 starts with the CSV header) or answers as JSON lines. Returns the object id and the
/// sealed object's SHA-256.
fn seal_chunk(
    worker: &Worker,
    opened: &Opened,
    recipients: &[cloister_seal::Recipient],
    job_id: &str,
    index: u64,
    first_row: u64,
    rows: u64,
) -> Result<(String, Hex), BatchError> {
    let start = usize::try_from(first_row).map_err(|_| check(job_id, "row index overflow"))?;
    let count = usize::try_from(rows).map_err(|_| check(job_id, "row count overflow"))?;
    let outside = || check(job_id, format!("chunk {index} lies outside the data set"));
    let (content_type, output) = match &opened.work {
        Work::Tabular { model, table } => {
            let columns = table.columns();
            let values = table
                .values()
                .get(start * columns..(start + count) * columns)
                .ok_or_else(outside)?
                .to_vec();
            let sub = Table::from_values(count, columns, values)
                .map_err(|e| check(job_id, e.to_string()))?;
            let mut predictions = run_batch(model, &sub, BATCH_ROWS, &mut |_| {})
                .map_err(|e| check(job_id, e.to_string()))?;
            drop(sub);
            let mut csv = Zeroizing::new(predictions.to_csv());
            predictions.values.zeroize();
            if index != 0 {
                let header_end = csv.iter().position(|&b| b == b'\n').map_or(csv.len(), |i| i + 1);
                csv.drain(..header_end);
            }
            ("text/csv", csv)
        }
        Work::Prompts { model, prompts } => {
            let chunk = prompts.get(start..start + count).ok_or_else(outside)?;
            let (answers, tokens) = super::prompts::answer(model, chunk, first_row)
                .map_err(|e| check(job_id, e.to_string()))?;
            worker.metrics.tokens_generated("batch", tokens);
            ("application/x-ndjson", answers)
        }
    };
    let body: &[u8] = &output;
    let object_id = format!("{job_id}-out-{index:06}");
    let metadata = Metadata {
        content_type: content_type.into(),
        object_id: object_id.clone(),
        attributes: [
            ("job".to_owned(), job_id.to_owned()),
            ("chunk".to_owned(), index.to_string()),
            ("first_row".to_owned(), first_row.to_string()),
            ("rows".to_owned(), rows.to_string()),
        ]
        .into_iter()
        .collect(),
    };
    let sealed = cloister_seal::seal_to_vec_for(recipients, &metadata, body)
        .map_err(|e| check(job_id, format!("could not seal chunk {index}: {e}")))?;
    drop(output);
    let digest = worker.store.replace(&object_id, &sealed)?;
    Ok((object_id, digest))
}

/// Checks every chunk (its statement, by an enclave certified by this enclave's instance CA with
/// this enclave's measurement and TEE, and its stored object's digest), then signs the receipt
/// and marks the job done.
async fn finish(
    worker: &Arc<Worker>,
    job: &JobRow,
    terms: &BatchTerms,
    rows: u64,
    inputs: Vec<ReceiptInput>,
    own: &Hex,
    checkpoint: cloister_types::api::CheckpointRef,
) -> Result<(), BatchError> {
    let job_id = job.spec.id.as_str();
    let chunks = worker.batches.chunks(job_id).await?;
    let enclave_rows = worker.batches.enclaves(job_id).await?;
    let identity = &worker.identity;
    let expectations = own_expectations(worker).map_err(|reason| check(job_id, reason))?;
    let mut verified: BTreeMap<String, (BatchEnclave, cloister_sign::AnyVerifyingKey)> =
        BTreeMap::new();
    for row in &enclave_rows {
        let enclave = verify_joined(row, job_id, &expectations).map_err(|e| {
            check(
                job_id,
                format!("enclave {} that worked on it: {e}", row.attestation_result_sha256),
            )
        })?;
        let ear_hex = Hex(Sha256::digest(enclave.ear.as_bytes()).to_vec());
        let ear_sha = ear_hex.to_string();
        if ear_sha != row.attestation_result_sha256
            || enclave.receipt_pk.to_text() != row.receipt_pk
        {
            return Err(check(
                job_id,
                "an enclave's recorded attestation does not match its certificate",
            ));
        }
        verified.insert(
            ear_sha.clone(),
            (
                BatchEnclave {
                    attestation_result_sha256: ear_hex,
                    measurement: enclave.claims.measurement.clone(),
                    receipt_pk: row.receipt_pk.clone(),
                },
                enclave.receipt_pk,
            ),
        );
    }
    let expected = rows.div_ceil(terms.chunk_rows);
    if chunks.len() as u64 != expected {
        return Err(check(
            job_id,
            format!("{} chunks are recorded, {expected} expected", chunks.len()),
        ));
    }
    let now = unix_now();
    let mut used = BTreeMap::new();
    for (k, row) in chunks.iter().enumerate() {
        let chunk = &row.chunk;
        let first_row = k as u64 * terms.chunk_rows;
        if chunk.index != k as u64
            || chunk.first_row != first_row
            || chunk.rows != terms.chunk_rows.min(rows - first_row)
            || chunk.object_id != format!("{job_id}-out-{k:06}")
        {
            return Err(check(
                job_id,
                format!("chunk {k} is recorded with the wrong rows or object"),
            ));
        }
        let signer = chunk.attestation_result_sha256.to_string();
        let (enclave, key) = verified.get(&signer).ok_or_else(|| {
            check(job_id, format!("chunk {k} names an enclave not recorded for the job"))
        })?;
        let stated = key
            .verify::<BatchChunk>("batch chunk", &row.statement, now)
            .map_err(|e| check(job_id, format!("chunk {k}'s statement: {e}")))?
            .claims;
        if &stated != chunk {
            return Err(check(job_id, format!("chunk {k} differs from what its enclave signed")));
        }
        let (store, id) = (worker.store.clone(), chunk.object_id.clone());
        let stored = tokio::task::spawn_blocking(move || store.get(&id))
            .await
            .map_err(|_| check(job_id, "a digest task panicked"))??;
        if Sha256::digest(&stored).as_slice() != chunk.ciphertext_sha256.as_bytes() {
            return Err(check(job_id, format!("the stored object of chunk {k} was modified")));
        }
        used.insert(signer, enclave.clone());
    }
    if let Some((enclave, _)) = verified.get(&own.to_string()) {
        used.insert(own.to_string(), enclave.clone());
    }
    // The receipt is signed now, under the enclave's current attestation: a job that outlived
    // the certificate it joined with (renewed since) names the one valid at `finished_at`.
    let signer = identity.current();
    let receipt = BatchReceipt {
        job_id: job_id.to_owned(),
        job_digest: job.job_digest.clone(),
        inputs,
        chunk_rows: terms.chunk_rows,
        rows,
        chunk_count: chunks.len() as u64,
        chunks_sha256: cloister_types::batch::chunks_digest(
            &chunks.into_iter().map(|row| row.chunk).collect::<Vec<_>>(),
        )
        .map_err(|e| check(job_id, e.to_string()))?,
        enclaves: used.into_values().collect(),
        attestation_result_sha256: Hex(Sha256::digest(signer.ear.as_bytes()).to_vec()),
        measurement: identity.claims().measurement.clone(),
        audit_checkpoint: checkpoint,
        erased: ERASED.iter().map(|s| (*s).to_owned()).collect(),
        submitted_at: terms.accepted_at,
        finished_at: now as i64,
    };
    let signed = identity
        .receipt_key()
        .sign("batch receipt", &receipt, now, STATEMENT_VALIDITY)
        .map_err(|e| check(job_id, e.to_string()))?;
    worker.batches.finish(job_id, &signed, &signer.certificate_chain_pem, now as i64).await
}
