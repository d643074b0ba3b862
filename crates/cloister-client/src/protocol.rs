//! The party protocol around a job: the grant an input owner signs for the enclaves it admits,
//! and the checks on the receipt an enclave signs (for a job, and for a batch job whose signer
//! may be long gone). Pure functions over keys, specs and tokens; the time is read once, from the
//! clock, where a signature is made or checked.

use std::time::Duration;

use cloister_sign::{AnyVerifyingKey, SignError, SigningKey, TokenSigner, unix_now};
use cloister_types::batch::{
    BatchChunk, BatchReceipt, BatchState, BatchStatus, CombinedReceipt, chunks_digest,
};
use cloister_types::job::{PrivacyBudget, ShardedJobError};
use cloister_types::{
    CanonicalJsonError, Grant, Hex, InputRole, JobSpec, PemError, Receipt, pem_certificates,
};
use sha2::{Digest as _, Sha256};

use crate::enclave::{
    EnclaveError, Expectations, VerifiedEnclave, read_claims_unverified, verify_enclave_certificate,
};

/// How long a grant stays valid after it is signed.
pub const GRANT_VALIDITY: Duration = Duration::from_secs(3600);

/// Why a grant could not be signed or a receipt was refused. Each message carries its cause, so
/// that one line says everything.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The signer does not own the input it would grant.
    #[error("the signer does not own the job's {0:?} input")]
    NotTheOwner(InputRole),
    /// The job spec cannot be put in canonical form (so it has no digest).
    #[error("the job spec has no digest: {0}")]
    Digest(#[from] CanonicalJsonError),
    /// Signing the grant failed, or a receipt's signature does not verify.
    #[error(transparent)]
    Signature(#[from] SignError),
    /// The worker's answer lacks what a receipt check needs.
    #[error("{0}")]
    Missing(&'static str),
    /// The receipt signer's certificate chain cannot be read.
    #[error("the receipt signer's certificate chain cannot be read: {0}")]
    Chain(#[from] PemError),
    /// The receipt signer's certificate names no readable receipt key.
    #[error("the receipt signer's certificate cannot be read: {0}")]
    SignerCertificate(EnclaveError),
    /// The receipt does not verify with the key its signer's certificate names.
    #[error("the receipt does not verify with the receipt key its signer's certificate names: {0}")]
    ReceiptSignature(SignError),
    /// The enclave that signed the receipt is not one the party accepts.
    #[error("the enclave that signed the receipt does not meet your expectations: {0}")]
    Signer(EnclaveError),
    /// The receipt verified but says something other than what the party checked.
    #[error("{0}")]
    Mismatch(String),
    /// A sharded job's plan is not valid.
    #[error("the sharded job's plan is refused: {0}")]
    Plan(#[from] ShardedJobError),
    /// One shard of a combined receipt was refused.
    #[error("shard {index} ({job_id}): {why}")]
    Shard {
        /// The shard's index in the plan.
        index: usize,
        /// Its job id.
        job_id: String,
        /// Why it was refused.
        why: Box<ProtocolError>,
    },
}

/// `Err(ProtocolError::Mismatch(message))` unless `condition` holds.
fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), ProtocolError> {
    if condition { Ok(()) } else { Err(ProtocolError::Mismatch(message())) }
}

/// The enclaves a grant admits: measured one of `measurements` and appraised by one of the
/// attestation `instances` (`in_…`). A measurement alone does not say who appraised an enclave:
/// anyone can run the same binary under a permissive instance of their own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Accepted enclave measurements.
    pub measurements: Vec<Hex>,
    /// Accepted attestation instances.
    pub instances: Vec<String>,
}

impl Admitted {
    /// Enclaves measured one of `measurements`, appraised by instance `instance`.
    pub fn new(measurements: &[Hex], instance: &str) -> Self {
        Admitted { measurements: measurements.to_vec(), instances: vec![instance.to_owned()] }
    }

    /// Enclaves like `enclave`, which the party verified: its measurement and its instance.
    pub fn like(enclave: &VerifiedEnclave) -> Self {
        Admitted::new(std::slice::from_ref(&enclave.claims.measurement), enclave.instance_id())
    }
}

/// Signs, with `signing`, a grant letting `spec` use the signer's input in `role` in the
/// `admitted` enclaves, results sealed only to `result_recipients`, and for a training job's
/// data at most `privacy_budget` when one is given (DP-SGD required). Valid for
/// [`GRANT_VALIDITY`].
pub fn sign_grant(
    signing: &impl TokenSigner,
    spec: &JobSpec,
    role: InputRole,
    admitted: &Admitted,
    result_recipients: &[String],
    privacy_budget: Option<PrivacyBudget>,
) -> Result<String, ProtocolError> {
    let me = signing.public_key_text();
    // A training job may read several data sets; the signer grants the one it owns.
    let input = match role {
        InputRole::Data => spec.data_inputs().find(|input| input.owner == me).unwrap_or(&spec.data),
        InputRole::Model => &spec.model,
    };
    if input.owner != me {
        return Err(ProtocolError::NotTheOwner(role));
    }
    let grant = Grant {
        job_id: spec.id.clone(),
        job_digest: spec.digest()?,
        role,
        object_id: input.object_id.clone(),
        object_sha256: input.sha256.clone(),
        allowed_measurements: admitted.measurements.clone(),
        allowed_instances: admitted.instances.clone(),
        result_recipients: result_recipients.to_vec(),
        privacy_budget,
    };
    Ok(signing.sign_token("grant", &grant, unix_now(), GRANT_VALIDITY)?)
}

/// Verifies a receipt: signed by the attested enclave's receipt key, for this job, naming the
/// inputs as uploaded, the output as downloaded and the attestation result the party checked.
pub fn verify_receipt(
    token: &str,
    enclave: &VerifiedEnclave,
    spec: &JobSpec,
    output_ciphertext: &[u8],
) -> Result<Receipt, ProtocolError> {
    let receipt = enclave.receipt_pk.verify::<Receipt>("receipt", token, unix_now())?.claims;
    check(receipt.job_id == spec.id, || format!("the receipt is for job {}", receipt.job_id))?;
    check(receipt.job_digest == spec.digest()?, || {
        "the receipt names another job digest".to_owned()
    })?;
    check(receipt.measurement == enclave.claims.measurement, || {
        format!("the receipt names measurement {}, not the attested one", receipt.measurement)
    })?;
    check(
        receipt.attestation_result_sha256.as_bytes()
            == Sha256::digest(enclave.ear.as_bytes()).as_slice(),
        || "the receipt names a different attestation result than the one verified".to_owned(),
    )?;
    for input in std::iter::once(&spec.model).chain(spec.data_inputs()) {
        let found = receipt.inputs.iter().find(|i| i.object_id == input.object_id);
        let Some(found) = found else {
            return Err(ProtocolError::Mismatch(format!(
                "the receipt does not mention input {}",
                input.object_id
            )));
        };
        check(found.ciphertext_sha256 == input.sha256, || {
            format!("input {} digest differs", input.object_id)
        })?;
    }
    let digest = Hex(Sha256::digest(output_ciphertext).to_vec());
    check(receipt.outputs.iter().any(|o| o.ciphertext_sha256 == digest), || {
        "the receipt does not name the output that was downloaded".to_owned()
    })?;
    check(!receipt.erased.is_empty(), || "the receipt confirms no erasure".to_owned())?;
    Ok(receipt)
}

/// A batch receipt that verified, with the chunks it commits to (from the worker's status, their
/// digest checked against the receipt's).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedBatch {
    /// The receipt.
    #[serde(flatten)]
    pub receipt: BatchReceipt,
    /// Every chunk, in order.
    pub chunks: Vec<BatchChunk>,
}

/// Verifies a done batch job's receipt: the signer's certificate chain against `expectations`,
/// the signature with its certified receipt key, that the receipt names the job, the signer's
/// attestation result and measurement, and that the status's chunks are the ones the receipt
/// commits to (count and digest), contiguous and covering every row.
pub fn verify_batch_receipt(
    status: &BatchStatus,
    expectations: &Expectations,
) -> Result<VerifiedBatch, ProtocolError> {
    let token =
        status.receipt.as_deref().ok_or(ProtocolError::Missing("the worker sent no receipt"))?;
    let chain_pem = status.receipt_signer_chain_pem.as_deref().ok_or(ProtocolError::Missing(
        "the worker sent no certificate chain for the receipt's signer",
    ))?;
    let chain = pem_certificates(chain_pem)?;
    // Enclave certificates are short-lived and the signer may be long gone: its chain is checked
    // at the time the receipt was signed. That time is only read from a receipt whose signature
    // verified with the key the certificate names; the chain check then proves the key was the
    // attested enclave's at that time (its keys never leave it and die with its process).
    let leaf = chain
        .first()
        .ok_or(ProtocolError::Missing("the receipt signer's certificate chain is empty"))?;
    let named_key = read_claims_unverified(leaf)
        .map_err(ProtocolError::SignerCertificate)?
        .runtime_data
        .receipt_pk;
    let receipt = AnyVerifyingKey::from_text(&named_key)?
        .verify::<BatchReceipt>("batch receipt", token, unix_now())
        .map_err(ProtocolError::ReceiptSignature)?
        .claims;
    let signed_at = u64::try_from(receipt.finished_at).unwrap_or_default();
    let signer = verify_enclave_certificate(&chain, expectations, signed_at)
        .map_err(ProtocolError::Signer)?;
    check(signer.receipt_pk.to_text() == named_key, || {
        "the receipt signer's certified key is not the key that verified the receipt".to_owned()
    })?;
    check(receipt.job_id == status.job_id, || {
        format!("the receipt is for job {}", receipt.job_id)
    })?;
    check(
        receipt.attestation_result_sha256.as_bytes()
            == Sha256::digest(signer.ear.as_bytes()).as_slice(),
        || "the receipt names another attestation result than its signer's certificate".to_owned(),
    )?;
    check(receipt.measurement == signer.claims.measurement, || {
        "the receipt names another measurement".to_owned()
    })?;
    check(receipt.chunk_rows > 0, || "the receipt names no chunk size".to_owned())?;
    let chunks = &status.chunks;
    check(receipt.chunk_count == chunks.len() as u64, || {
        format!(
            "the receipt names {} chunks, the worker lists {}",
            receipt.chunk_count,
            chunks.len()
        )
    })?;
    check(chunks_digest(chunks)? == receipt.chunks_sha256, || {
        "the worker's chunk list is not the one the receipt commits to".to_owned()
    })?;
    let mut first_row = 0u64;
    for (k, chunk) in chunks.iter().enumerate() {
        check(
            chunk.index == k as u64
                && chunk.first_row == first_row
                && chunk.job_id == receipt.job_id,
            || format!("the receipt's chunk {k} is out of order"),
        )?;
        check(
            receipt
                .enclaves
                .iter()
                .any(|e| e.attestation_result_sha256 == chunk.attestation_result_sha256),
            || format!("the receipt's chunk {k} names an enclave the receipt does not list"),
        )?;
        first_row += chunk.rows;
    }
    check(first_row == receipt.rows, || {
        format!("the receipt's chunks cover {first_row} of {} rows", receipt.rows)
    })?;
    check(!receipt.erased.is_empty(), || "the receipt confirms no erasure".to_owned())?;
    // The status's own counts are the host's words: kept beside the receipt (`job fetch`'s
    // OUTPUT.receipt.json), they must say what the signed receipt says.
    check(
        status.state == BatchState::Done
            && status.rows_done == receipt.rows
            && status.rows_total == Some(receipt.rows)
            && status.chunks_total == Some(receipt.chunk_count)
            && status.reason.is_none(),
        || "the status's state, counts or reason disagree with its signed receipt".to_owned(),
    )?;
    Ok(VerifiedBatch { receipt, chunks: chunks.clone() })
}

/// A combined receipt that verified: every shard's, in plan order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedShards {
    /// SHA-256 of the plan.
    pub plan_sha256: Hex,
    /// Each shard's verified receipt and chunks.
    pub shards: Vec<VerifiedBatch>,
    /// Rows over every shard.
    pub rows: u64,
}

/// Verifies a sharded job's combined receipt: the plan is valid, there is exactly one done
/// status per shard, in order, and each shard's receipt verifies as [`verify_batch_receipt`]
/// checks it, against `expectations`, and names that shard's job exactly: its id, its digest
/// (so the plan's model, the shard's data and the plan's output recipients) and the model and
/// data objects the enclave read.
pub fn verify_combined_receipt(
    combined: &CombinedReceipt,
    expectations: &Expectations,
) -> Result<VerifiedShards, ProtocolError> {
    let plan = &combined.plan;
    plan.check()?;
    check(combined.shards.len() == plan.shards.len(), || {
        format!(
            "the plan has {} shards, the combined receipt {}",
            plan.shards.len(),
            combined.shards.len()
        )
    })?;
    let mut shards = Vec::with_capacity(plan.shards.len());
    let mut rows = 0u64;
    for (index, status) in combined.shards.iter().enumerate() {
        let spec = plan.shard_spec(index);
        let verified = verify_shard(status, &spec, expectations).map_err(|source| {
            ProtocolError::Shard { index, job_id: spec.id.clone(), why: Box::new(source) }
        })?;
        rows += verified.receipt.rows;
        shards.push(verified);
    }
    Ok(VerifiedShards { plan_sha256: plan.digest()?, shards, rows })
}

/// One shard of [`verify_combined_receipt`]: its receipt verifies and names `spec` exactly.
fn verify_shard(
    status: &BatchStatus,
    spec: &JobSpec,
    expectations: &Expectations,
) -> Result<VerifiedBatch, ProtocolError> {
    check(status.job_id == spec.id, || format!("the status is for job {}", status.job_id))?;
    let verified = verify_batch_receipt(status, expectations)?;
    check_receipt_names_job(&verified.receipt, spec)?;
    Ok(verified)
}

/// Whether a verified receipt names exactly the job `spec` its reader granted or submitted (for
/// a sharded job, the plan's [`ShardedJob::shard_spec`](cloister_types::ShardedJob::shard_spec)):
/// its id, its digest, and the model and data objects the enclave read, nothing else. A genuine
/// receipt of another job that reuses the id (the compute provider's own job, run in an attested
/// enclave with outputs to the same recipient) is refused here.
pub fn check_receipt_names_job(
    receipt: &BatchReceipt,
    spec: &JobSpec,
) -> Result<(), ProtocolError> {
    check(receipt.job_id == spec.id, || format!("the receipt is for job {}", receipt.job_id))?;
    check(receipt.job_digest == spec.digest()?, || {
        format!(
            "the receipt names job digest {}, not the job you gave ({}): it is another job's \
             with the same id",
            receipt.job_digest,
            spec.digest().map(|d| d.to_string()).unwrap_or_default()
        )
    })?;
    for (role, input) in [(InputRole::Model, &spec.model), (InputRole::Data, &spec.data)] {
        check(
            receipt.inputs.iter().any(|r| {
                r.role == role
                    && r.object_id == input.object_id
                    && r.ciphertext_sha256 == input.sha256
            }),
            || format!("the receipt does not name the job's {role:?} input"),
        )?;
    }
    check(receipt.inputs.len() == 2, || "the receipt names inputs the job does not".to_owned())
}

/// How long an owner's sign-in statement may be presented: it answers a challenge that is itself
/// valid for five minutes.
pub const SIGN_IN_VALIDITY: Duration = Duration::from_secs(300);

/// A data owner's answer to a console sign-in challenge: `{"owner", "challenge", "statement"}`,
/// the statement signed with the owner's party key over the challenge and the fingerprint of
/// the service the owner means to sign in to (`service_key_sha256`, what the owner pinned), so
/// it is good for one sign-in at that service only. Refuses a challenge that is not a signed
/// token (the statement would answer nothing).
pub fn owner_sign_in(
    signing: &SigningKey,
    challenge: &str,
    service_key_sha256: &Hex,
) -> Result<cloister_types::api::OwnerSignIn, ProtocolError> {
    let challenge = challenge.trim();
    if challenge.split('.').count() != 3 || challenge.len() > 4096 {
        return Err(ProtocolError::Mismatch(
            "the challenge is not a service challenge (copy it whole from the console)".to_owned(),
        ));
    }
    if service_key_sha256.as_bytes().len() != 32 {
        return Err(ProtocolError::Mismatch(
            "the service key fingerprint must be a SHA-256 (64 hex digits)".to_owned(),
        ));
    }
    let statement = cloister_types::api::OwnerSignInStatement {
        challenge_sha256: Hex(Sha256::digest(challenge.as_bytes()).to_vec()),
        service_key_sha256: service_key_sha256.clone(),
    };
    let statement = signing.sign(
        cloister_types::api::OWNER_SIGN_IN,
        &statement,
        unix_now(),
        SIGN_IN_VALIDITY,
    )?;
    Ok(cloister_types::api::OwnerSignIn {
        owner: signing.public_key().to_text(),
        challenge: challenge.to_owned(),
        statement,
    })
}
