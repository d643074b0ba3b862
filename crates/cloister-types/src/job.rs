//! Jobs, the grants owners sign to authorise them, and the receipts workers sign when done.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalJsonError, canonical_json};
use crate::encoding::Hex;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum JobKind {
    /// Run a model over every row of a data set.
    BatchInference,
    /// Train the model owner's classifier on the data set; the update goes to the recipients.
    /// The model input is a training plan (JSON: `{"model": Classifier, "config":
    /// TrainConfig}`), the data a CSV whose last column is the class.
    Train,
}

/// The most privacy a data owner lets training spend on its data set: DP-SGD is then required,
/// and the privacy spent on the sealed data set by every training job on the worker so far, this
/// one included, composed by Rényi DP ([`crate::privacy::RdpCurve`]) and converted at this δ,
/// must not exceed ε. The worker checks this before any step and records what the job spends.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyBudget {
    /// Largest ε.
    pub epsilon: f64,
    /// Largest δ.
    pub delta: f64,
}

/// The role an input plays in a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputRole {
    /// The data set.
    Data,
    /// The model.
    Model,
}

/// A sealed object a job reads, and who owns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    /// The object's id in the worker's object store.
    pub object_id: String,
    /// SHA-256 of the sealed object's bytes (the ciphertext).
    pub sha256: Hex,
    /// The owner's party public key (text form); only the owner's grant authorises its use.
    pub owner: String,
}

/// A job as submitted: the thing every owner's grant names by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Unique job id.
    pub id: String,
    /// What the job does.
    pub kind: JobKind,
    /// The sealed model.
    pub model: InputRef,
    /// The sealed data set.
    pub data: InputRef,
    /// The envelope public keys (text form) the outputs are sealed to.
    pub output_recipients: Vec<String>,
    /// Further sealed data sets, each with its own owner's grant. A `train` job with several
    /// trains one update per data set inside the enclave and returns only their average weighted
    /// by rows (secure aggregation by the enclave: no single update leaves). Other kinds take
    /// exactly one data set. Left out of the digest when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_data: Vec<InputRef>,
}

impl JobSpec {
    /// Every data input: `data`, then `more_data`.
    pub fn data_inputs(&self) -> impl Iterator<Item = &InputRef> {
        std::iter::once(&self.data).chain(&self.more_data)
    }

    /// SHA-256 over the canonical JSON of the job: what grants and receipts name.
    pub fn digest(&self) -> Result<Hex, CanonicalJsonError> {
        Ok(Hex(Sha256::digest(canonical_json(self)?).to_vec()))
    }
}

/// An owner's authorisation for one job to use one of its objects (signed as a JWS by the owner).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// The job's id.
    pub job_id: String,
    /// The job's digest ([`JobSpec::digest`]); a grant is void for any other job.
    pub job_digest: Hex,
    /// Which input of the job this grant covers.
    pub role: InputRole,
    /// The object this grant lets the job use.
    pub object_id: String,
    /// SHA-256 of the sealed object.
    pub object_sha256: Hex,
    /// Enclave measurements the owner accepts for this job.
    pub allowed_measurements: Vec<Hex>,
    /// Envelope public keys the owner allows results to be sealed to.
    pub result_recipients: Vec<String>,
    /// For a training job on the owner's data: the most privacy training may have spent on the
    /// data set, this job included (absent: no DP required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_budget: Option<PrivacyBudget>,
}

/// What a worker attests it did for a job (signed as a JWS with the enclave's receipt key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// The job's id.
    pub job_id: String,
    /// The job's digest.
    pub job_digest: Hex,
    /// What was read.
    pub inputs: Vec<ReceiptInput>,
    /// What was written.
    pub outputs: Vec<ReceiptOutput>,
    /// SHA-256 of the EAR token the worker held while running the job.
    pub attestation_result_sha256: Hex,
    /// The enclave's measurement.
    pub measurement: Hex,
    /// What the worker erased when the job ended.
    pub erased: Vec<String>,
    /// For a DP-SGD training job: the (ε, δ) it spent, as the accountant computed it (the
    /// largest over its data sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_spent: Option<PrivacyBudget>,
    /// For a training job: each data set's privacy account on the worker after this job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privacy: Vec<PrivacyAccount>,
    /// For a training job on text: the frozen sentence encoder (`name@version`, owner) that
    /// embedded the texts the classifier head trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// Rows processed.
    pub rows: u64,
    /// Unix seconds when the job started and finished.
    pub started_at: i64,
    /// Unix seconds when the job finished.
    pub finished_at: i64,
}

/// A data set's privacy account after a training job: what the job spent on it, and what every
/// training job on the same sealed data set has spent on this worker, composed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyAccount {
    /// The data set's object id.
    pub object_id: String,
    /// SHA-256 of the sealed data set: the account's key.
    pub ciphertext_sha256: Hex,
    /// This job's (ε, δ); absent when it trained without DP-SGD noise from the enclave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<PrivacyBudget>,
    /// Every training job on the data set so far, this one included, composed; absent when one
    /// of them trained without DP-SGD noise from the enclave (no finite ε bounds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<PrivacyBudget>,
    /// Training jobs on the data set so far, this one included.
    pub jobs: u64,
}

/// One input in a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptInput {
    /// Model or data.
    pub role: InputRole,
    /// Object id.
    pub object_id: String,
    /// SHA-256 of the sealed object.
    pub ciphertext_sha256: Hex,
    /// SHA-256 of the plaintext the worker decrypted.
    pub plaintext_sha256: Hex,
}

/// One output in a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptOutput {
    /// Object id of the sealed output.
    pub object_id: String,
    /// SHA-256 of the sealed output.
    pub ciphertext_sha256: Hex,
    /// Who it was sealed to.
    pub recipients: Vec<String>,
}
