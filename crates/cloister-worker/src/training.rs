//! Training jobs (`JobKind::Train`): the model owner's training plan and the data owner's
//! labelled rows are opened inside the enclave, the data owner's privacy budget is checked
//! before a single step, the classifier is trained (DP-SGD when the plan or the budget asks for
//! it), and only the update — the trained classifier with its metrics — leaves, sealed to the
//! recipients every owner approved (the model owner, in a federated round).

use cloister_seal::RecipientSecretKey;
use cloister_sign::unix_now;
use cloister_types::job::PrivacyBudget;
use cloister_types::{InputRole, JobSpec};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::engine::{Classifier, EngineError, LabelledRows, TrainConfig, TrainMetrics};
use crate::identity::EnclaveIdentity;
use crate::jobs::{
    JobAuthorization, JobError, JobOutcome, JobResult, finish_job, open_input, read_checked,
    receipt_input,
};
use crate::store::ObjectStore;

/// What the model owner seals as a training job's model input.
#[derive(Deserialize)]
pub struct TrainingPlan {
    /// The initial (or current global) classifier.
    pub model: Classifier,
    /// How to train it.
    pub config: TrainConfig,
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
    budget: &PrivacyBudget,
    config: &TrainConfig,
    rows: usize,
) -> Result<PrivacyBudget, JobError> {
    let refuse = |reason: String| JobError::PrivacyBudget {
        budget_epsilon: budget.epsilon,
        budget_delta: budget.delta,
        reason,
    };
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
    Ok(PrivacyBudget { epsilon: spent.epsilon, delta: spent.delta })
}

/// Runs an authorised training job end to end; everything decrypted is zeroized when it returns.
pub(crate) fn run_training(
    identity: &EnclaveIdentity,
    store: &ObjectStore,
    spec: &JobSpec,
    authorization: JobAuthorization,
    released: &[RecipientSecretKey],
) -> Result<JobOutcome, JobError> {
    let started_at = unix_now();
    let JobAuthorization { digest, recipients, privacy_budget } = authorization;
    let model_sealed = read_checked(store, &spec.model, InputRole::Model)?;
    let data_sealed = read_checked(store, &spec.data, InputRole::Data)?;
    let plan_plain = open_input(identity, released, &model_sealed, InputRole::Model)?;
    let data_plain = open_input(identity, released, &data_sealed, InputRole::Data)?;
    let inputs = vec![
        receipt_input(&spec.model, InputRole::Model, &plan_plain),
        receipt_input(&spec.data, InputRole::Data, &data_plain),
    ];
    let plan: TrainingPlan = serde_json::from_slice(&plan_plain).map_err(|e| {
        JobError::BadSpec(format!(
            "the model input is not a training plan {{\"model\", \"config\"}} (column {})",
            e.column()
        ))
    })?;
    drop(plan_plain);
    let rows = LabelledRows::from_csv(&data_plain)?;
    drop(data_plain);
    let row_count = rows.rows() as u64;
    let privacy_spent = match &privacy_budget {
        Some(budget) => Some(check_budget(budget, &plan.config, rows.rows())?),
        None => plan
            .config
            .privacy(rows.rows())?
            .map(|p| PrivacyBudget { epsilon: p.epsilon, delta: p.delta }),
    };
    let (model, metrics) = plan.model.train(&rows, &plan.config)?;
    drop(rows);
    let update = Zeroizing::new(
        serde_json::to_vec(&TrainingUpdate { model, metrics })
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
                "update plaintext",
                "envelope data-encryption keys",
            ],
            privacy_spent,
            started_at,
        },
    )
}
