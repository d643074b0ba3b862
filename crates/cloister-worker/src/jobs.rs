//! Running a job: check every owner's grant, check the stored ciphertext, decrypt inside, run the
//! model, seal the outputs to the approved recipients, erase, and sign a receipt.

use std::time::Duration;

use cloister_seal::{Header, KeyId, Metadata, OpeningKey, Recipient, RecipientSecretKey, Suite};
use cloister_sign::{AnyVerifyingKey, unix_now};
use cloister_types::api::CheckpointRef;
use cloister_types::job::PrivacyBudget;
use cloister_types::job::{ReceiptInput, ReceiptOutput};
use cloister_types::{Grant, Hex, InputRef, InputRole, JobKind, JobSpec, Receipt};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::identity::EnclaveIdentity;
use crate::store::{ObjectStore, StoreError};
use cloister_engine::{EngineError, OnnxModel, Table, run_batch};

/// How long a receipt stays verifiable.
pub(crate) const RECEIPT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Rows per inference batch.
pub(crate) const BATCH_ROWS: usize = 64;

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
    /// The envelope names another owner than the one whose grant the job carries.
    #[error(
        "the sealed {role:?} object {object_id} was sealed by owner {sealed_owner}, not by the \
         owner the job names; only the owner who sealed an object can grant its use"
    )]
    NotTheOwner {
        /// Which input.
        role: InputRole,
        /// Which object.
        object_id: String,
        /// The owner the envelope names.
        sealed_owner: String,
    },
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
    Engine(#[from] EngineError),
    /// Sealing or signing the results failed.
    #[error("could not seal or sign the results: {0}")]
    Output(String),
    /// The attestation service's privacy ledger could not be reached or answered nonsense.
    #[error("the privacy ledger could not charge the job: {0}")]
    Ledger(String),
    /// The data owner's privacy budget refuses this training run.
    #[error(
        "the grant for data set {object_id} limits training on it to (ε = {budget_epsilon}, δ = {budget_delta}): {reason}"
    )]
    PrivacyBudget {
        /// The data set whose budget refuses the job.
        object_id: String,
        /// Granted ε.
        budget_epsilon: f64,
        /// Granted δ.
        budget_delta: f64,
        /// What the job would spend, or why it cannot be accounted.
        reason: String,
    },
}

/// The outcome of a job.
#[derive(Debug)]
pub struct JobOutcome {
    /// Sealed outputs, as stored.
    pub outputs: Vec<ReceiptOutput>,
    /// The signed receipt (compact JWS).
    pub receipt: String,
}

/// A job every owner authorised: its digest and the output recipients.
#[derive(Debug)]
pub struct JobAuthorization {
    /// The job's digest, as the grants name it.
    pub digest: Hex,
    /// The output recipients every owner approved.
    pub recipients: Vec<Recipient>,
    /// Each data owner's privacy budget, in the order of [`JobSpec::data_inputs`].
    pub privacy_budgets: Vec<Option<PrivacyBudget>>,
    /// Each data owner's grant (compact JWS) that authorised the job, in the same order: the
    /// privacy ledger charges a data set only with its owner's grant.
    pub data_grants: Vec<String>,
}

/// Checks the job and every owner's grant for it at `started_at` (the kind, the output recipients, a
/// valid grant per input naming this job, the object, its digest and this enclave's
/// measurement, and recipients every owner approved). Run before anything is fetched or
/// released for the job, and again by [`run_job`].
pub fn authorize_job(
    identity: &EnclaveIdentity,
    spec: &JobSpec,
    grants: &[String],
    started_at: u64,
) -> Result<JobAuthorization, JobError> {
    if !matches!(spec.kind, JobKind::BatchInference | JobKind::Train) {
        return Err(JobError::BadSpec(format!("job kind {:?} is not supported", spec.kind)));
    }
    let digest = spec.digest().map_err(|e| JobError::BadSpec(e.to_string()))?;
    if spec.output_recipients.is_empty() {
        return Err(JobError::BadSpec("the job names no output recipient".into()));
    }
    let recipients = spec
        .output_recipients
        .iter()
        .map(|text| output_recipient(text, identity.suite()))
        .collect::<Result<Vec<_>, _>>()?;

    if !spec.more_data.is_empty() && spec.kind != JobKind::Train {
        return Err(JobError::BadSpec("only a training job takes more than one data set".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    if !spec.data_inputs().all(|input| seen.insert(&input.object_id)) {
        return Err(JobError::BadSpec("a data set appears twice in the job".into()));
    }
    let find = |input, role| find_grant(spec, &digest, input, role, grants, identity, started_at);
    let (model_grant, _) = find(&spec.model, InputRole::Model)?;
    let data_grants = spec
        .data_inputs()
        .map(|input| find(input, InputRole::Data))
        .collect::<Result<Vec<_>, _>>()?;
    for recipient in &spec.output_recipients {
        if !model_grant.result_recipients.contains(recipient)
            || data_grants.iter().any(|(grant, _)| !grant.result_recipients.contains(recipient))
        {
            return Err(JobError::RecipientNotApproved(recipient.clone()));
        }
    }

    // A budget is a condition on training with DP-SGD; no other job kind can honour it.
    if data_grants.iter().any(|(g, _)| g.privacy_budget.is_some()) && spec.kind != JobKind::Train {
        return Err(JobError::BadSpec(
            "the data owner's grant sets a privacy budget, which only a training job with DP-SGD \
             can honour"
                .into(),
        ));
    }
    let (privacy_budgets, data_grants) =
        data_grants.into_iter().map(|(grant, token)| (grant.privacy_budget, token)).unzip();
    Ok(JobAuthorization { digest, recipients, privacy_budgets, data_grants })
}

/// Runs a batch-inference job end to end. Inputs open with the enclave's own key, or with a
/// key-broker key in `released` (released to this enclave for this job). Everything decrypted is
/// zeroized before this returns, whether it succeeds or fails.
pub fn run_job(
    identity: &EnclaveIdentity,
    store: &ObjectStore,
    spec: &JobSpec,
    grants: &[String],
    released: &[RecipientSecretKey],
    checkpoint: &CheckpointRef,
) -> Result<JobOutcome, JobError> {
    let started_at = unix_now();
    let authorization = authorize_job(identity, spec, grants, started_at)?;
    if spec.kind != JobKind::BatchInference {
        return Err(JobError::BadSpec(format!(
            "job kind {:?} does not run as a batch-inference job",
            spec.kind
        )));
    }
    let JobAuthorization { digest, recipients, .. } = authorization;

    let model_sealed = read_checked(store, &spec.model, InputRole::Model)?;
    let data_sealed = read_checked(store, &spec.data, InputRole::Data)?;
    let model_plain = open_input(identity, released, &model_sealed, &spec.model, InputRole::Model)?;
    let data_plain = open_input(identity, released, &data_sealed, &spec.data, InputRole::Data)?;
    let inputs = vec![
        receipt_input(&spec.model, InputRole::Model, &model_plain),
        receipt_input(&spec.data, InputRole::Data, &data_plain),
    ];

    let model = OnnxModel::load(&model_plain)?;
    drop(model_plain);
    let table = Table::from_csv(&data_plain)?;
    drop(data_plain);
    let rows = table.rows() as u64;
    let mut predictions = run_batch(&model, &table, BATCH_ROWS, &mut |_| {})?;
    drop(table);
    drop(model);
    let csv = Zeroizing::new(predictions.to_csv());
    predictions.values.zeroize();

    finish_job(
        identity,
        store,
        spec,
        JobResult {
            digest,
            recipients: &recipients,
            output: ("predictions", "text/csv", csv),
            inputs,
            rows,
            erased: &[
                "model plaintext",
                "data set plaintext",
                "decoded feature table",
                "predictions plaintext",
                "envelope data-encryption keys",
            ],
            privacy_spent: None,
            privacy: Vec::new(),
            encoder: None,
            started_at,
            checkpoint: checkpoint.clone(),
        },
    )
}

/// What a finished job hands to [`finish_job`].
pub(crate) struct JobResult<'a> {
    pub(crate) digest: Hex,
    pub(crate) recipients: &'a [Recipient],
    /// `(object id suffix, content type, plaintext)`.
    pub(crate) output: (&'a str, &'a str, Zeroizing<Vec<u8>>),
    pub(crate) inputs: Vec<ReceiptInput>,
    pub(crate) rows: u64,
    pub(crate) erased: &'a [&'a str],
    pub(crate) privacy_spent: Option<PrivacyBudget>,
    pub(crate) privacy: Vec<cloister_types::job::PrivacyAccount>,
    /// The frozen encoder a training job's head trained on.
    pub(crate) encoder: Option<String>,
    pub(crate) started_at: u64,
    /// The audit checkpoint the service's answer recording the job carried.
    pub(crate) checkpoint: CheckpointRef,
}

/// Seals the job's output to its recipients as object `{job}-{suffix}`, stores it, and signs the
/// receipt; the output plaintext is zeroized before this returns.
pub(crate) fn finish_job(
    identity: &EnclaveIdentity,
    store: &ObjectStore,
    spec: &JobSpec,
    result: JobResult<'_>,
) -> Result<JobOutcome, JobError> {
    let (suffix, content_type, plaintext) = result.output;
    let output_id = format!("{}-{suffix}", spec.id);
    let metadata = Metadata {
        content_type: content_type.into(),
        object_id: output_id.clone(),
        attributes: [("job".to_owned(), spec.id.clone())].into_iter().collect(),
    };
    let sealed = cloister_seal::seal_to_vec_for(result.recipients, &metadata, &plaintext)
        .map_err(|e| JobError::Output(e.to_string()))?;
    drop(plaintext);
    let ciphertext_sha256 = store.put(&output_id, &sealed)?;
    let outputs = vec![ReceiptOutput {
        object_id: output_id,
        ciphertext_sha256,
        recipients: spec.output_recipients.clone(),
    }];
    let receipt = Receipt {
        job_id: spec.id.clone(),
        job_digest: result.digest,
        inputs: result.inputs,
        outputs: outputs.clone(),
        attestation_result_sha256: Hex(Sha256::digest(identity.ear().as_bytes()).to_vec()),
        measurement: identity.claims().measurement.clone(),
        audit_checkpoint: result.checkpoint,
        erased: result.erased.iter().map(|s| (*s).to_owned()).collect(),
        rows: result.rows,
        privacy_spent: result.privacy_spent,
        privacy: result.privacy,
        encoder: result.encoder,
        started_at: result.started_at as i64,
        finished_at: unix_now() as i64,
    };
    let receipt = identity
        .receipt_key()
        .sign("receipt", &receipt, unix_now(), RECEIPT_VALIDITY)
        .map_err(|e| JobError::Output(e.to_string()))?;
    Ok(JobOutcome { outputs, receipt })
}

/// An output recipient: an envelope public key of the enclave's suite (X25519, or SM2 in the
/// ShangMi suite). A key-broker recipient or a key of the other suite is refused by name: an
/// enclave seals in its own suite only, so a job never mixes them.
pub(crate) fn output_recipient(text: &str, suite: Suite) -> Result<Recipient, JobError> {
    let bad = |reason: String| JobError::BadSpec(format!("output recipient {text}: {reason}"));
    let recipient = Recipient::from_text(text).map_err(|e| bad(e.to_string()))?;
    if let Recipient::Broker(_) = recipient {
        return Err(bad("a key-broker recipient cannot receive a job's output".to_owned()));
    }
    if recipient.suite() != suite {
        return Err(bad(format!(
            "it is a key of the {} but this enclave runs the {}; mixing suites is refused",
            recipient.suite(),
            suite
        )));
    }
    Ok(recipient)
}

pub(crate) fn receipt_input(input: &InputRef, role: InputRole, plaintext: &[u8]) -> ReceiptInput {
    ReceiptInput {
        role,
        object_id: input.object_id.clone(),
        ciphertext_sha256: input.sha256.clone(),
        plaintext_sha256: Hex(Sha256::digest(plaintext).to_vec()),
    }
}

/// The key-broker keys an input is sealed to, when it is not sealed to this enclave's own key:
/// what the worker must ask the key broker for before the job runs.
pub fn broker_keys_needed(identity: &EnclaveIdentity, sealed_header: &Header) -> Vec<KeyId> {
    let ours = identity.hpke_secret().key_id();
    if sealed_header.recipient_key_ids().contains(&ours) {
        return Vec::new();
    }
    sealed_header.broker_key_ids()
}

/// Opens an input with the enclave's key, or else with a released broker key it names, once its
/// envelope's authenticated metadata names `input.owner` as its owner
/// ([`cloister_types::OWNER_ATTRIBUTE`]). The owner sealed that name in, and nobody can change
/// it without the data key: so a grant signed by anyone else (a key made up by whoever knows the
/// object's id and digest, the compute provider for one) never opens someone's data.
pub(crate) fn open_input(
    identity: &EnclaveIdentity,
    released: &[RecipientSecretKey],
    sealed: &[u8],
    input: &InputRef,
    role: InputRole,
) -> Result<Zeroizing<Vec<u8>>, JobError> {
    let open_error = |reason: String| JobError::Open { role, reason };
    let header = cloister_seal::read_header(sealed).map_err(|e| open_error(e.to_string()))?;
    let sealed_owner = header.metadata().attributes.get(cloister_types::OWNER_ATTRIBUTE);
    if sealed_owner != Some(&input.owner) {
        return Err(JobError::NotTheOwner {
            role,
            object_id: input.object_id.clone(),
            sealed_owner: sealed_owner.cloned().unwrap_or_else(|| "(none)".to_owned()),
        });
    }
    let ids = header.recipient_key_ids();
    let key: OpeningKey<'_> = if ids.contains(&identity.hpke_secret().key_id()) {
        identity.hpke_secret().into()
    } else {
        released
            .iter()
            .find(|key| ids.contains(&key.key_id()))
            .ok_or_else(|| {
                open_error(
                    "it is sealed neither to this enclave nor to a key-broker key released to it"
                        .to_owned(),
                )
            })?
            .into()
    };
    let (_, plain) =
        cloister_seal::open_to_vec_with(key, sealed).map_err(|e| open_error(e.to_string()))?;
    Ok(plain)
}

pub(crate) fn read_checked(
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
/// job's id and digest, this object and its digest, this enclave's measurement and the
/// attestation instance that appraised it.
fn find_grant(
    spec: &JobSpec,
    digest: &Hex,
    input: &InputRef,
    role: InputRole,
    grants: &[String],
    identity: &EnclaveIdentity,
    now: u64,
) -> Result<(Grant, String), JobError> {
    let measurement = &identity.claims().measurement;
    let instance_id = identity.instance_id();
    let missing =
        |detail: String| JobError::MissingGrant { role, owner: input.owner.clone(), detail };
    let owner = AnyVerifyingKey::from_text(&input.owner)
        .map_err(|e| JobError::BadSpec(format!("the {role:?} owner key: {e}")))?;
    let suite = crate::identity::signature_suite(identity.suite());
    if owner.suite() != suite {
        return Err(JobError::BadSpec(format!(
            "the {role:?} owner key is an {} key but this enclave runs the {} and takes {suite} \
             grants only; mixing suites is refused",
            owner.suite(),
            identity.suite()
        )));
    }
    let mut problems = Vec::new();
    for token in grants {
        let Ok(signed) = owner.verify::<Grant>("grant", token, now) else {
            continue;
        };
        let grant = signed.claims;
        if grant.role != role {
            continue;
        }
        let problem = if grant.job_id != spec.id {
            Some(format!("a grant names job {} instead of this job", grant.job_id))
        } else if &grant.job_digest != digest {
            Some(format!(
                "a grant names job {} with digest {} (this job's is {digest}): the job was \
                 changed after it was granted",
                grant.job_id, grant.job_digest
            ))
        } else if grant.object_id != input.object_id || grant.object_sha256 != input.sha256 {
            Some(format!("a grant names object {} with another digest", grant.object_id))
        } else if !grant.allowed_measurements.contains(measurement) {
            Some(format!("a grant does not allow this enclave's measurement {measurement}"))
        } else if !grant.allowed_instances.iter().any(|i| i == instance_id) {
            Some(format!(
                "a grant does not allow this enclave's attestation instance {instance_id}"
            ))
        } else {
            None
        };
        match problem {
            None => return Ok((grant, token.clone())),
            Some(problem) => problems.push(problem),
        }
    }
    Err(missing(if problems.is_empty() {
        String::new()
    } else {
        format!(": {}", problems.join("; "))
    }))
}

#[cfg(test)]
mod suite_tests {
    use cloister_seal::{BrokerRecipient, RecipientSecretKey, Sm2SecretKey};

    use super::*;

    #[test]
    fn an_enclave_seals_results_only_to_recipients_of_its_suite() {
        let x25519 = RecipientSecretKey::generate().public_key();
        let sm2 = Sm2SecretKey::generate().public_key().to_text();
        let ok = output_recipient(&x25519.to_text(), Suite::X25519).expect("same suite");
        assert_eq!(ok.suite(), Suite::X25519);
        let ok = output_recipient(&sm2, Suite::ShangMi).expect("same suite");
        assert_eq!(ok.suite(), Suite::ShangMi);
        for (text, suite) in [(x25519.to_text(), Suite::ShangMi), (sm2, Suite::X25519)] {
            let refused = output_recipient(&text, suite).expect_err("another suite");
            assert!(refused.to_string().contains("mixing suites is refused"), "{refused}");
        }
        let broker = BrokerRecipient::new("kb_test", x25519).expect("a broker id").to_text();
        let refused = output_recipient(&broker, Suite::X25519).expect_err("a broker key");
        assert!(refused.to_string().contains("key-broker recipient"), "{refused}");
    }
}
