//! Running a job: check every owner's grant, check the stored ciphertext, decrypt inside, run the
//! model, seal the outputs to the approved recipients, erase, and sign a receipt.

use std::time::Duration;

use cloister_seal::{Metadata, RecipientPublicKey};
use cloister_sign::{VerifyingKey, unix_now};
use cloister_types::job::{ReceiptInput, ReceiptOutput};
use cloister_types::{Grant, Hex, InputRef, InputRole, JobKind, JobSpec, Receipt};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::engine::{self, OnnxModel, Table};
use crate::identity::EnclaveIdentity;
use crate::store::{ObjectStore, StoreError};

/// How long a receipt stays verifiable.
const RECEIPT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Rows per inference batch.
const BATCH_ROWS: usize = 64;

/// Why a job was refused or failed. No variant carries plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job spec is not acceptable.
    #[error("the job is not valid: {0}")]
    BadSpec(String),
    /// An owner's grant is missing.
    #[error("no valid grant from the {role:?} owner ({owner}) for this job{detail}")]
    MissingGrant {
        /// Which input lacks a grant.
        role: InputRole,
        /// Its owner's key.
        owner: String,
        /// What was wrong with the grants that were offered.
        detail: String,
    },
    /// An output recipient was not approved by every owner.
    #[error("output recipient {0} is not approved by every owner's grant")]
    RecipientNotApproved(String),
    /// The stored ciphertext is not what the job and grants name.
    #[error(
        "the sealed {role:?} object {object_id} in storage does not match the digest in the job (modified in storage)"
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
    /// An input did not decrypt.
    #[error("the sealed {role:?} object could not be opened: {reason}")]
    Open {
        /// Which input.
        role: InputRole,
        /// Why.
        reason: String,
    },
    /// The model or data set is unusable.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// Sealing or signing the results failed.
    #[error("could not seal or sign the results: {0}")]
    Output(String),
}

/// The outcome of a job.
#[derive(Debug)]
pub struct JobOutcome {
    /// Sealed outputs, as stored.
    pub outputs: Vec<ReceiptOutput>,
    /// The signed receipt (compact JWS).
    pub receipt: String,
}

/// Runs a batch-inference job end to end. Everything decrypted is zeroized before this returns,
/// whether it succeeds or fails.
pub fn run_job(
    identity: &EnclaveIdentity,
    store: &ObjectStore,
    spec: &JobSpec,
    grants: &[String],
) -> Result<JobOutcome, JobError> {
    let started_at = unix_now();
    if spec.kind != JobKind::BatchInference {
        return Err(JobError::BadSpec(format!("job kind {:?} is not supported", spec.kind)));
    }
    let digest = spec.digest().map_err(|e| JobError::BadSpec(e.to_string()))?;
    if spec.output_recipients.is_empty() {
        return Err(JobError::BadSpec("the job names no output recipient".into()));
    }
    let recipients = spec
        .output_recipients
        .iter()
        .map(|text| {
            RecipientPublicKey::from_text(text)
                .map_err(|e| JobError::BadSpec(format!("output recipient {text}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let measurement = &identity.claims().measurement;
    let model_grant =
        find_grant(spec, &digest, &spec.model, InputRole::Model, grants, measurement, started_at)?;
    let data_grant =
        find_grant(spec, &digest, &spec.data, InputRole::Data, grants, measurement, started_at)?;
    for recipient in &spec.output_recipients {
        if !model_grant.result_recipients.contains(recipient)
            || !data_grant.result_recipients.contains(recipient)
        {
            return Err(JobError::RecipientNotApproved(recipient.clone()));
        }
    }

    let model_sealed = read_checked(store, &spec.model, InputRole::Model)?;
    let data_sealed = read_checked(store, &spec.data, InputRole::Data)?;
    let key = identity.hpke_secret();
    let (_, model_plain) = cloister_seal::open_to_vec(key, &model_sealed)
        .map_err(|e| JobError::Open { role: InputRole::Model, reason: e.to_string() })?;
    let (_, data_plain) = cloister_seal::open_to_vec(key, &data_sealed)
        .map_err(|e| JobError::Open { role: InputRole::Data, reason: e.to_string() })?;
    let inputs = vec![
        receipt_input(&spec.model, InputRole::Model, &model_plain),
        receipt_input(&spec.data, InputRole::Data, &data_plain),
    ];

    let model = OnnxModel::load(&model_plain)?;
    drop(model_plain);
    let table = Table::from_csv(&data_plain)?;
    drop(data_plain);
    let rows = table.rows() as u64;
    let mut predictions = engine::run_batch(&model, &table, BATCH_ROWS, &mut |_| {})?;
    drop(table);
    drop(model);
    let csv = Zeroizing::new(predictions.to_csv());
    predictions.values.zeroize();

    let output_id = format!("{}-predictions", spec.id);
    let metadata = Metadata {
        content_type: "text/csv".into(),
        object_id: output_id.clone(),
        attributes: [("job".to_owned(), spec.id.clone())].into_iter().collect(),
    };
    let sealed = cloister_seal::seal_to_vec(&recipients, &metadata, &csv)
        .map_err(|e| JobError::Output(e.to_string()))?;
    drop(csv);
    let ciphertext_sha256 = store.put(&output_id, &sealed)?;
    let outputs = vec![ReceiptOutput {
        object_id: output_id,
        ciphertext_sha256,
        recipients: spec.output_recipients.clone(),
    }];

    let receipt = Receipt {
        job_id: spec.id.clone(),
        job_digest: digest,
        inputs,
        outputs: outputs.clone(),
        attestation_result_sha256: Hex(Sha256::digest(identity.ear().as_bytes()).to_vec()),
        measurement: measurement.clone(),
        erased: vec![
            "model plaintext".into(),
            "data set plaintext".into(),
            "decoded feature table".into(),
            "predictions plaintext".into(),
            "envelope data-encryption keys".into(),
        ],
        rows,
        started_at: started_at as i64,
        finished_at: unix_now() as i64,
    };
    let receipt = identity
        .receipt_key()
        .sign("receipt", &receipt, unix_now(), RECEIPT_VALIDITY)
        .map_err(|e| JobError::Output(e.to_string()))?;
    Ok(JobOutcome { outputs, receipt })
}

fn receipt_input(input: &InputRef, role: InputRole, plaintext: &[u8]) -> ReceiptInput {
    ReceiptInput {
        role,
        object_id: input.object_id.clone(),
        ciphertext_sha256: input.sha256.clone(),
        plaintext_sha256: Hex(Sha256::digest(plaintext).to_vec()),
    }
}

fn read_checked(
    store: &ObjectStore,
    input: &InputRef,
    role: InputRole,
) -> Result<Vec<u8>, JobError> {
    let bytes = store.get(&input.object_id)?;
    if Sha256::digest(&bytes).as_slice() != input.sha256.as_bytes() {
        return Err(JobError::CiphertextMismatch { role, object_id: input.object_id.clone() });
    }
    Ok(bytes)
}

/// Finds the grant that authorises `input` for this job: signed by the input's owner, naming this
/// job's id and digest, this object and its digest, and this enclave's measurement.
fn find_grant(
    spec: &JobSpec,
    digest: &Hex,
    input: &InputRef,
    role: InputRole,
    grants: &[String],
    measurement: &Hex,
    now: u64,
) -> Result<Grant, JobError> {
    let missing =
        |detail: String| JobError::MissingGrant { role, owner: input.owner.clone(), detail };
    let owner = VerifyingKey::from_text(&input.owner)
        .map_err(|e| JobError::BadSpec(format!("the {role:?} owner key: {e}")))?;
    let mut problems = Vec::new();
    for token in grants {
        let Ok(signed) = owner.verify::<Grant>("grant", token, now) else {
            continue;
        };
        let grant = signed.claims;
        if grant.role != role {
            continue;
        }
        let problem = if grant.job_id != spec.id || &grant.job_digest != digest {
            Some(format!("a grant names job {} instead of this job", grant.job_id))
        } else if grant.object_id != input.object_id || grant.object_sha256 != input.sha256 {
            Some(format!("a grant names object {} with another digest", grant.object_id))
        } else if !grant.allowed_measurements.contains(measurement) {
            Some(format!("a grant does not allow this enclave's measurement {measurement}"))
        } else {
            None
        };
        match problem {
            None => return Ok(grant),
            Some(problem) => problems.push(problem),
        }
    }
    Err(missing(if problems.is_empty() {
        String::new()
    } else {
        format!(": {}", problems.join("; "))
    }))
}
