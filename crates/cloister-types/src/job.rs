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
/// and the privacy spent on the sealed data set by every training job so far, this one
/// included, composed by Rényi DP ([`crate::privacy::RdpCurve`]) and converted at this δ, must
/// not exceed ε. The attestation service's privacy ledger counts every job, whichever worker ran
/// it; the enclave has it charge the job before any step.
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

/// The most shards one sharded job may have.
pub const MAX_SHARDS: usize = 1024;

/// A batch job split by data shard: one model over several sealed shards of one data set, each
/// shard run as its own job ([`ShardedJob::shard_spec`]) on whichever worker holds it, with its
/// own owners' grants and its own receipt. The plan is what the owners read before they sign a
/// grant for each shard, and what a combined receipt is checked against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardedJob {
    /// The job's id; shard `i` of `n` runs as job `{id}.shard-{i}-of-{n}`.
    pub id: String,
    /// What every shard does (batch inference).
    pub kind: JobKind,
    /// The sealed model, the same object on every worker.
    pub model: InputRef,
    /// The sealed data shards, in the order their results are concatenated.
    pub shards: Vec<InputRef>,
    /// The envelope public keys (text form) every shard's outputs are sealed to.
    pub output_recipients: Vec<String>,
}

/// Why a sharded job plan is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardedJobError {
    /// No shard, or more than [`MAX_SHARDS`].
    #[error("a sharded job has 1 to {MAX_SHARDS} shards, this one {0}")]
    ShardCount(usize),
    /// The id would not make valid shard job ids.
    #[error("the job id {0:?} is not 1 to 100 letters, digits, '.', '_' or '-'")]
    Id(String),
    /// Only batch inference splits by rows.
    #[error("only batch-inference jobs split into shards")]
    Kind,
    /// Two shards are the same object.
    #[error("shards {0} and {1} are the same object")]
    Repeated(usize, usize),
    /// A shard is the model's object.
    #[error("shard {0} is the model's object")]
    ModelAsShard(usize),
    /// Nobody would get the results.
    #[error("the plan names no output recipient")]
    NoRecipients,
}

impl ShardedJob {
    /// Checks the plan: 1 to [`MAX_SHARDS`] distinct shards, an id that makes valid object ids,
    /// batch inference.
    pub fn check(&self) -> Result<(), ShardedJobError> {
        if self.shards.is_empty() || self.shards.len() > MAX_SHARDS {
            return Err(ShardedJobError::ShardCount(self.shards.len()));
        }
        if self.id.len() > 100 || !is_object_id(&self.id) {
            return Err(ShardedJobError::Id(self.id.clone()));
        }
        if self.kind != JobKind::BatchInference {
            return Err(ShardedJobError::Kind);
        }
        if self.output_recipients.is_empty() {
            return Err(ShardedJobError::NoRecipients);
        }
        for (i, a) in self.shards.iter().enumerate() {
            if a.object_id == self.model.object_id || a.sha256 == self.model.sha256 {
                return Err(ShardedJobError::ModelAsShard(i));
            }
            if let Some(j) = self.shards[..i]
                .iter()
                .position(|b| b.object_id == a.object_id || b.sha256 == a.sha256)
            {
                return Err(ShardedJobError::Repeated(j, i));
            }
        }
        Ok(())
    }

    /// The id of shard `index`'s job.
    pub fn shard_id(&self, index: usize) -> String {
        format!("{}.shard-{index}-of-{}", self.id, self.shards.len())
    }

    /// Shard `index`'s job: the plan's model over that shard, results to the plan's recipients.
    /// Its digest is what the shard's grants and receipt name.
    ///
    /// # Panics
    ///
    /// When `index` is not a shard of the plan.
    pub fn shard_spec(&self, index: usize) -> JobSpec {
        JobSpec {
            id: self.shard_id(index),
            kind: self.kind,
            model: self.model.clone(),
            data: self.shards[index].clone(),
            output_recipients: self.output_recipients.clone(),
            more_data: Vec::new(),
        }
    }

    /// Every shard's job, in order.
    pub fn shard_specs(&self) -> Vec<JobSpec> {
        (0..self.shards.len()).map(|i| self.shard_spec(i)).collect()
    }

    /// SHA-256 over the canonical JSON of the plan.
    pub fn digest(&self) -> Result<Hex, CanonicalJsonError> {
        Ok(Hex(Sha256::digest(canonical_json(self)?).to_vec()))
    }
}

/// Whether `id` may name a stored object: 1 to 128 ASCII letters, digits, `.`, `_` and `-`, not
/// starting with `.` (a file name on the worker's disk, and the id a data set is registered
/// under at the attestation service, which so never holds a character one backend cannot store).
pub fn is_object_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
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
    /// Attestation instances (`in_…`) whose attested enclaves the owner accepts for this job:
    /// a measurement alone does not say who appraised the enclave (anyone can run the same
    /// binary under a permissive instance of their own).
    pub allowed_instances: Vec<String>,
    /// Envelope public keys the owner allows results to be sealed to.
    pub result_recipients: Vec<String>,
    /// For a training job on the owner's data: the most privacy training may have spent on the
    /// data set, this job included (absent: no DP required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_budget: Option<PrivacyBudget>,
}

/// The sealed-envelope metadata attribute naming who sealed an input (its owner's party public
/// key): a worker opens an input for a job only when this names the owner whose grant the job
/// carries.
pub const OWNER_ATTRIBUTE: &str = "owner";

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
    /// The attestation service's signed audit checkpoint covering the job's record (from its
    /// signed answer): `cloister audit verify --expect-checkpoint SEQ:HASH` fails on a log
    /// rolled back behind it.
    pub audit_checkpoint: crate::api::CheckpointRef,
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
/// training job on the same sealed data set has spent, composed (the attestation service's
/// privacy ledger).
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

/// What one training job spends on one data set, as the enclave computed it from the plan before
/// the first step: what the attestation service's privacy ledger charges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyCharge {
    /// The data set (its ciphertext digest is the account's key).
    pub input: InputRef,
    /// The job's Rényi DP on it at every order of [`crate::privacy::ORDERS`]; absent when it
    /// trains without DP-SGD noise from the enclave (no finite ε bounds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdp: Option<Vec<f64>>,
    /// The data owner's budget for the data set, as its grant sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<PrivacyBudget>,
    /// The data owner's grant for this job (compact JWS). The ledger charges a data set only
    /// with it: signed by the data set's owner, for this job and data set, allowing the charging
    /// enclave's measurement, and setting exactly `budget`. Nobody else can spend, or exhaust, an
    /// owner's budget.
    pub grant: String,
    /// The δ the account is stated at: the budget's, else the plan's (none without DP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
}

impl PrivacyCharge {
    /// The data set's account once this charge is added to the `earlier` ones (each a job id and
    /// its curve, `None` for a job without DP noise), or why the budget refuses it.
    pub fn account(
        &self,
        earlier: &[(String, Option<Vec<f64>>)],
    ) -> Result<PrivacyAccount, String> {
        use crate::privacy::RdpCurve;
        let curve = |values: &Vec<f64>| RdpCurve::from_values(values.clone());
        let cost = self.rdp.as_ref().map(curve).transpose().map_err(|e| e.to_string())?;
        let mut total = Some(RdpCurve::zero());
        let mut unbounded_by = None;
        for (job, rdp) in earlier {
            match (rdp, total.as_mut()) {
                (Some(values), Some(sum)) => {
                    sum.compose(&curve(values).map_err(|e| e.to_string())?)
                }
                (None, _) => {
                    total = None;
                    unbounded_by.get_or_insert(job.as_str());
                }
                (Some(_), None) => {}
            }
        }
        match (&cost, total.as_mut()) {
            (Some(cost), Some(sum)) => sum.compose(cost),
            _ => total = None,
        }
        let at = |curve: &RdpCurve, delta: f64| {
            curve.epsilon(delta).map(|p| PrivacyBudget { epsilon: p.epsilon, delta })
        };
        if let Some(budget) = &self.budget {
            let Some(sum) = &total else {
                return Err(match unbounded_by {
                    Some(job) => format!(
                        "it was already used for training without DP-SGD (job {job}), so no \
                         finite ε bounds it"
                    ),
                    None => "the job does not train with DP-SGD noise from the enclave".to_owned(),
                });
            };
            let spent = at(sum, budget.delta).map_err(|e| e.to_string())?;
            if spent.epsilon.is_nan() || budget.epsilon.is_nan() || spent.epsilon > budget.epsilon {
                return Err(format!(
                    "it has been trained on in {} earlier job(s); with this one it would have \
                     spent ε = {:.4} at δ = {}",
                    earlier.len(),
                    spent.epsilon,
                    budget.delta
                ));
            }
        }
        // An ε that overflowed is no bound: stated as none, never as infinity.
        let stated = |curve: &Option<RdpCurve>| match (curve, self.delta) {
            (Some(curve), Some(delta)) => at(curve, delta).ok().filter(|b| b.epsilon.is_finite()),
            _ => None,
        };
        Ok(PrivacyAccount {
            object_id: self.input.object_id.clone(),
            ciphertext_sha256: self.input.sha256.clone(),
            job: stated(&cost),
            total: stated(&total),
            jobs: earlier.len() as u64 + 1,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::{RdpCurve, dp_sgd_epsilon};

    fn charge(steps: Option<u64>, budget: Option<f64>) -> PrivacyCharge {
        PrivacyCharge {
            input: InputRef {
                object_id: "rows".into(),
                sha256: Hex(vec![7; 32]),
                owner: "o".into(),
            },
            rdp: steps.map(|t| RdpCurve::dp_sgd(0.1, 1.0, t).unwrap().values().to_vec()),
            budget: budget.map(|epsilon| PrivacyBudget { epsilon, delta: 1e-5 }),
            delta: Some(1e-5),
            grant: String::new(),
        }
    }

    fn earlier(steps: Option<u64>) -> (String, Option<Vec<f64>>) {
        let curve = steps.map(|t| RdpCurve::dp_sgd(0.1, 1.0, t).unwrap().values().to_vec());
        ("before".to_owned(), curve)
    }

    #[test]
    fn an_account_composes_earlier_jobs_and_states_this_ones_share() {
        let account = charge(Some(30), Some(100.0)).account(&[earlier(Some(70))]).unwrap();
        let total = dp_sgd_epsilon(0.1, 1.0, 100, 1e-5).unwrap().epsilon;
        let alone = dp_sgd_epsilon(0.1, 1.0, 30, 1e-5).unwrap().epsilon;
        assert!((account.total.unwrap().epsilon - total).abs() < 1e-9);
        assert!((account.job.unwrap().epsilon - alone).abs() < 1e-9);
        assert_eq!((account.jobs, account.object_id.as_str()), (2, "rows"));
    }

    #[test]
    fn a_budget_refuses_past_its_epsilon_and_any_job_without_dp_noise() {
        let one = dp_sgd_epsilon(0.1, 1.0, 50, 1e-5).unwrap().epsilon;
        let refused = charge(Some(50), Some(one * 1.2)).account(&[earlier(Some(50))]);
        assert!(refused.unwrap_err().contains("1 earlier job(s)"));
        let after_plain = charge(Some(50), Some(1e6)).account(&[earlier(None)]);
        assert!(after_plain.unwrap_err().contains("without DP-SGD (job before)"));
        let plain = charge(None, Some(1e6)).account(&[]);
        assert!(plain.unwrap_err().contains("does not train with DP-SGD noise"));
        // Without a budget nothing is refused, and an unbounded account states no ε.
        let unbounded = charge(Some(50), None).account(&[earlier(None)]).unwrap();
        assert_eq!((unbounded.total, unbounded.job.is_some()), (None, true));
        let bad = PrivacyCharge { rdp: Some(vec![1.0; 3]), ..charge(None, None) };
        assert!(bad.account(&[]).is_err());
        // Curves that overflow when composed bound nothing: refused under a budget, and stated as
        // no ε (never as infinity, which JSON cannot carry) without one.
        let huge = Some(vec![1e308; crate::privacy::ORDERS.count()]);
        let earlier = [("a".to_owned(), huge.clone()), ("b".to_owned(), huge.clone())];
        let over = PrivacyCharge { rdp: huge.clone(), ..charge(None, Some(1e6)) };
        assert!(over.account(&earlier).is_err());
        let unbudgeted = PrivacyCharge { rdp: huge, ..charge(None, None) };
        assert_eq!(unbudgeted.account(&earlier).unwrap().total, None);
    }

    fn input(id: &str, byte: u8) -> InputRef {
        InputRef { object_id: id.into(), sha256: Hex(vec![byte; 32]), owner: "o".into() }
    }

    fn plan(shards: Vec<InputRef>) -> ShardedJob {
        ShardedJob {
            id: "scores".into(),
            kind: JobKind::BatchInference,
            model: input("model", 0),
            shards,
            output_recipients: vec!["r".into()],
        }
    }

    #[test]
    fn a_plan_derives_one_job_per_shard_and_refuses_what_would_be_ambiguous() {
        let ok = plan(vec![input("a", 1), input("b", 2)]);
        ok.check().unwrap();
        let specs = ok.shard_specs();
        assert_eq!(specs[1].id, "scores.shard-1-of-2");
        assert_eq!(specs[1].data, input("b", 2));
        assert_eq!(specs[1].model, ok.model);
        assert_ne!(specs[0].digest().unwrap(), specs[1].digest().unwrap());
        // A spec derived from a plan is an ordinary job: its digest is the one a grant names.
        assert_eq!(specs[0].digest().unwrap(), ok.shard_spec(0).digest().unwrap());

        assert_eq!(plan(vec![]).check(), Err(ShardedJobError::ShardCount(0)));
        let many = (0..=MAX_SHARDS).map(|i| input(&format!("d{i}"), (i % 250) as u8)).collect();
        assert!(matches!(plan(many).check(), Err(ShardedJobError::ShardCount(_))));
        let same_object = plan(vec![input("a", 1), input("a", 2)]);
        assert_eq!(same_object.check(), Err(ShardedJobError::Repeated(0, 1)));
        let same_bytes = plan(vec![input("a", 1), input("b", 3), input("c", 1)]);
        assert_eq!(same_bytes.check(), Err(ShardedJobError::Repeated(0, 2)));
        let mut bad_id = ok.clone();
        bad_id.id = "../x".into();
        assert!(matches!(bad_id.check(), Err(ShardedJobError::Id(_))));
        let mut train = ok.clone();
        train.kind = JobKind::Train;
        assert_eq!(train.check(), Err(ShardedJobError::Kind));
        let mut nobody = ok.clone();
        nobody.output_recipients.clear();
        assert_eq!(nobody.check(), Err(ShardedJobError::NoRecipients));
        let mut model_twice = ok.clone();
        model_twice.shards[1] = input("model", 9);
        assert_eq!(model_twice.check(), Err(ShardedJobError::ModelAsShard(1)));
        // A plan with a field it does not know is refused, not read past.
        let mut json = serde_json::to_value(&ok).unwrap();
        json["data"] = serde_json::json!({});
        assert!(serde_json::from_value::<ShardedJob>(json).is_err());
    }
}
