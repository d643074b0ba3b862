//! Training jobs (`JobKind::Train`): the model owner's training plan and the data owner's
//! labelled rows are opened inside the enclave, the data owner's privacy budget is checked
//! before a single step (this job alone, then with every earlier job on the same data set, by
//! the attestation service's privacy ledger), the classifier is trained (DP-SGD when the plan or
//! the budget asks for it), and only the update — the trained classifier with its metrics —
//! leaves, sealed to the recipients every owner approved (the model owner, in a federated
//! round). A job over several data sets (`JobSpec::more_data`) trains one update per data set
//! and seals only their row-weighted average: secure aggregation by the enclave, no single
//! site's update leaves.

use std::sync::Arc;

use cloister_seal::RecipientSecretKey;
use cloister_sign::unix_now;
use cloister_types::api::CheckpointRef;
use cloister_types::job::{PrivacyAccount, PrivacyBudget, PrivacyCharge, ReceiptInput};
use cloister_types::{InputRole, JobSpec};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::EnclaveIdentity;
use crate::jobs::{
    JobAuthorization, JobError, JobOutcome, JobResult, finish_job, open_input, read_checked,
    receipt_input,
};
use crate::online::{Catalog, Engine, LoadedModel};
use crate::server::Worker;
use crate::store::ObjectStore;
use cloister_engine::{Classifier, EngineError, LabelledRows, TrainConfig, TrainMetrics};

/// What the model owner seals as a training job's model input.
#[derive(Deserialize)]
pub struct TrainingPlan {
    /// The initial (or current global) classifier.
    pub model: Classifier,
    /// How to train it.
    pub config: TrainConfig,
    /// Train a classifier head on frozen sentence embeddings instead of on table rows.
    #[serde(default)]
    pub encoder: Option<FrozenEncoder>,
}

/// A sentence encoder loaded in the worker (deployed from the model repository after its
/// integrity check) whose embeddings a classifier head trains on. The data set is then JSON
/// lines, one `{"text": …, "label": …}` per line; each text is embedded inside the enclave and
/// the head sees only the embeddings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FrozenEncoder {
    /// The loaded model, `name@version` (a bare name is refused: the version must be pinned).
    pub model: String,
    /// The party key that signed its manifest and serving policy.
    pub owner: String,
}

/// What a training job seals to its recipients.
#[derive(Serialize, Deserialize)]
pub struct TrainingUpdate {
    /// The trained classifier.
    pub model: Classifier,
    /// Measured on the training rows, after training.
    pub metrics: TrainMetrics,
}

/// Refuses a plan that would spend more than the data owner granted, or that does not use
/// DP-SGD when a budget is set.
fn check_budget(
    object_id: &str,
    budget: &PrivacyBudget,
    config: &TrainConfig,
    rows: usize,
) -> Result<(), JobError> {
    let refuse = |reason: String| JobError::PrivacyBudget {
        object_id: object_id.to_owned(),
        budget_epsilon: budget.epsilon,
        budget_delta: budget.delta,
        reason,
    };
    if config.dp.as_ref().is_some_and(|dp| dp.noise_seed.is_some()) {
        return Err(refuse(
            "the plan seeds the DP noise, and whoever knows the seed can remove the noise; under \
             a budget the noise must come from the enclave's own generator"
                .into(),
        ));
    }
    let spent = config
        .privacy(rows)
        .map_err(|e| refuse(e.to_string()))?
        .ok_or_else(|| refuse("the training plan does not use DP-SGD".into()))?;
    if spent.delta > budget.delta || spent.epsilon > budget.epsilon {
        return Err(refuse(format!(
            "the plan would spend ε = {:.4} at δ = {} ({} rows, batch {}, {} epochs, noise {})",
            spent.epsilon,
            spent.delta,
            rows,
            config.batch_size,
            config.epochs,
            config.dp.as_ref().map_or(0.0, |dp| dp.noise_multiplier)
        )));
    }
    Ok(())
}

/// One data set of a training job, opened and checked, with what training on it will cost.
struct Site {
    rows: LabelledRows,
    charge: PrivacyCharge,
}

/// A training job whose inputs are open and whose budgets allow it alone: what
/// [`crate::ledger::charge`] has the attestation service check against earlier jobs before [`train_and_seal`] runs.
pub(crate) struct OpenedTraining {
    plan: TrainingPlan,
    sites: Vec<Site>,
    inputs: Vec<ReceiptInput>,
    authorization: JobAuthorization,
    started_at: u64,
    /// The frozen encoder the head trained on, for the receipt.
    encoder: Option<String>,
}

impl OpenedTraining {
    /// What the job spends on each data set.
    pub(crate) fn charges(&self) -> Vec<PrivacyCharge> {
        self.sites.iter().map(|site| site.charge.clone()).collect()
    }
}

/// Opens the plan and every data set, and refuses the job if it alone would exceed a data
/// owner's budget (or cannot be accounted under one), before any training.
pub(crate) fn open_training(
    identity: &EnclaveIdentity,
    store: &ObjectStore,
    catalog: &Catalog,
    spec: &JobSpec,
    authorization: JobAuthorization,
    released: &[RecipientSecretKey],
) -> Result<OpenedTraining, JobError> {
    let started_at = unix_now();
    let model_sealed = read_checked(store, &spec.model, InputRole::Model)?;
    let plan_plain = open_input(identity, released, &model_sealed, &spec.model, InputRole::Model)?;
    let mut inputs = vec![receipt_input(&spec.model, InputRole::Model, &plan_plain)];
    let plan: TrainingPlan = serde_json::from_slice(&plan_plain).map_err(|e| {
        JobError::BadSpec(format!(
            "the model input is not a training plan {{\"model\", \"config\"}} (column {})",
            e.column()
        ))
    })?;
    drop(plan_plain);
    let encoder = plan.encoder.as_ref().map(|wanted| find_encoder(catalog, wanted)).transpose()?;

    let seeded_noise = plan.config.dp.as_ref().is_some_and(|dp| dp.noise_seed.is_some());
    let mut sites = Vec::new();
    let grants = authorization.privacy_budgets.iter().zip(&authorization.data_grants);
    for (input, (budget, grant)) in spec.data_inputs().zip(grants) {
        let sealed = read_checked(store, input, InputRole::Data)?;
        let plain = open_input(identity, released, &sealed, input, InputRole::Data)?;
        inputs.push(receipt_input(input, InputRole::Data, &plain));
        let rows = match &encoder {
            None => LabelledRows::from_csv(&plain)?,
            Some(encoder) => embed_labelled_texts(&plain, encoder)?,
        };
        drop(plain);
        if let Some(budget) = budget {
            check_budget(&input.object_id, budget, &plan.config, rows.rows())?;
        }
        // Seeded noise is reproducible, not private: it costs an unbounded ε.
        let cost = if seeded_noise { None } else { plan.config.rdp(rows.rows())? };
        let delta = budget.map(|b| b.delta).or(plan.config.dp.as_ref().map(|dp| dp.delta));
        let rdp = cost.map(|curve| curve.values().to_vec());
        let charge = PrivacyCharge {
            input: input.clone(),
            rdp,
            budget: *budget,
            delta,
            grant: grant.clone(),
        };
        sites.push(Site { rows, charge });
    }
    let encoder =
        encoder.map(|model| format!("{} (owner {})", model.id(), model.serving_policy().owner()));
    Ok(OpenedTraining { plan, sites, inputs, authorization, started_at, encoder })
}

/// The loaded encoder the plan names, checked: pinned version, its owner, an embedding model.
fn find_encoder(catalog: &Catalog, wanted: &FrozenEncoder) -> Result<Arc<LoadedModel>, JobError> {
    let refuse =
        |why: String| JobError::BadSpec(format!("the plan's encoder {}: {why}", wanted.model));
    if !wanted.model.contains('@') {
        return Err(refuse("name it as name@version".into()));
    }
    let model = catalog
        .get(&wanted.model)
        .ok_or_else(|| refuse("no such model is loaded in this worker".into()))?;
    if model.serving_policy().owner() != wanted.owner {
        return Err(refuse(format!(
            "it was loaded with a manifest signed by {}, not by the owner the plan names",
            model.serving_policy().owner()
        )));
    }
    if !matches!(model.engine(), Engine::Embedder(_)) {
        return Err(refuse("it is not a sentence-embedding model".into()));
    }
    Ok(model)
}

/// One line of a text data set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelledText {
    text: String,
    label: u32,
}

/// Embeds a JSON-lines data set of `{"text", "label"}` with the loaded encoder: the rows a
/// classifier head trains on. The texts and the encoder's output are zeroized once copied.
fn embed_labelled_texts(plain: &[u8], model: &LoadedModel) -> Result<LabelledRows, JobError> {
    let Engine::Embedder(embedder) = model.engine() else {
        return Err(JobError::BadSpec(format!("{} is not a sentence-embedding model", model.id())));
    };
    let mut texts = Zeroizing::new(Vec::new());
    let mut labels = Vec::new();
    for (index, line) in plain.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: LabelledText = serde_json::from_slice(line).map_err(|e| {
            JobError::Engine(EngineError::InvalidArgument(format!(
                "line {} of the data set is not {{\"text\": string, \"label\": class}} (column {})",
                index + 1,
                e.column()
            )))
        })?;
        texts.push(parsed.text);
        labels.push(parsed.label);
    }
    let mut embeddings = embedder.embed(&texts)?;
    let columns = embedder.dimension();
    let mut features = Vec::with_capacity(texts.len() * columns);
    for vector in &mut embeddings.vectors {
        features.extend_from_slice(vector);
        // The embeddings say much about the texts: only the rows (zeroized on drop) keep them.
        zeroize::Zeroize::zeroize(vector);
    }
    Ok(LabelledRows { features, labels, columns })
}

/// Trains the opened job (the ledger has charged it), seals the update to the approved
/// recipients and signs the receipt with every data set's privacy `accounts`; everything
/// decrypted is zeroized when it returns.
pub(crate) fn train_and_seal(
    identity: &EnclaveIdentity,
    store: &ObjectStore,
    spec: &JobSpec,
    opened: OpenedTraining,
    accounts: Vec<PrivacyAccount>,
    checkpoint: CheckpointRef,
) -> Result<JobOutcome, JobError> {
    let OpenedTraining { plan, sites, inputs, authorization, started_at, encoder } = opened;
    let JobAuthorization { digest, recipients, .. } = authorization;
    // The receipt states the largest spend of any data set (each within its own budget).
    let privacy_spent = accounts
        .iter()
        .filter_map(|account| account.job)
        .max_by(|a, b| a.epsilon.total_cmp(&b.epsilon));
    let row_count: u64 = sites.iter().map(|site| site.rows.rows() as u64).sum();

    // One update per data set; with several, only their average leaves the enclave.
    let mut updates = Vec::with_capacity(sites.len());
    for site in &sites {
        updates.push((plan.model.train(&site.rows, &plan.config)?, site.rows.rows() as u64));
    }
    let update = if updates.len() == 1 {
        let ((model, metrics), _) = updates.remove(0);
        TrainingUpdate { model, metrics }
    } else {
        let weighted: Vec<(&Classifier, u64)> =
            updates.iter().map(|((model, _), rows)| (model, *rows)).collect();
        let model = cloister_engine::federated_average(&weighted)?;
        drop(weighted);
        let mut metrics = TrainMetrics {
            rows: row_count as usize,
            steps: updates.iter().map(|((_, m), _)| m.steps).sum(),
            privacy: privacy_spent.map(|p| (p.epsilon, p.delta)),
            loss: 0.0,
            accuracy: 0.0,
        };
        for site in &sites {
            let (loss, accuracy) = model.evaluate(&site.rows)?;
            let share = site.rows.rows() as f64 / row_count as f64;
            metrics.loss += share * loss;
            metrics.accuracy += share * accuracy;
        }
        TrainingUpdate { model, metrics }
    };
    drop(updates);
    drop(sites);
    let update = Zeroizing::new(
        serde_json::to_vec(&update)
            .map_err(|e| JobError::Engine(EngineError::Inference(e.to_string())))?,
    );

    finish_job(
        identity,
        store,
        spec,
        JobResult {
            digest,
            recipients: &recipients,
            output: ("update", "application/json", update),
            inputs,
            rows: row_count,
            erased: &[
                "training plan plaintext (initial parameters)",
                "data set plaintext",
                "decoded training rows",
                "intermediate parameters and gradients",
                "per-data-set updates (only their average left, when there were several)",
                "update plaintext",
                "envelope data-encryption keys",
            ],
            privacy_spent,
            privacy: accounts,
            encoder,
            started_at,
            checkpoint,
        },
    )
}

/// Runs an authorised training job: opens it, charges the privacy ledger (refused beyond a
/// data owner's budget, counting earlier jobs on the same data set), trains and seals.
pub(crate) async fn run_training(
    worker: Arc<Worker>,
    spec: JobSpec,
    authorization: JobAuthorization,
    released: Vec<RecipientSecretKey>,
    checkpoint: CheckpointRef,
) -> Result<JobOutcome, JobError> {
    let (opening, opening_spec) = (worker.clone(), spec.clone());
    let opened = blocking(move || {
        open_training(
            &opening.identity,
            &opening.store,
            &opening.catalog,
            &opening_spec,
            authorization,
            &released,
        )
    })
    .await?;
    let (accounts, charged) = crate::ledger::charge(
        &worker.identity,
        &worker.service,
        &spec.id,
        opened.charges(),
        &checkpoint,
    )
    .await?;
    // The receipt's checkpoint covers the charge too (entered after the record and releases).
    let checkpoint = crate::server::later(checkpoint, charged);
    blocking(move || {
        train_and_seal(&worker.identity, &worker.store, &spec, opened, accounts, checkpoint)
    })
    .await
}

/// Runs `task` on the blocking pool.
async fn blocking<T: Send + 'static>(
    task: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(task)
        .await
        .map_err(|e| JobError::Output(format!("the training task failed: {e}")))?
}
