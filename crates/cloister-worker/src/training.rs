//! Training jobs (`JobKind::Train`): the model owner's training plan and the data owner's
//! labelled rows are opened inside the enclave, the data owner's privacy budget is checked
//! before a single step, the classifier is trained (DP-SGD when the plan or the budget asks for
//! it), and only the update — the trained classifier with its metrics — leaves, sealed to the
//! recipients every owner approved (the model owner, in a federated round). A job over several
//! data sets (`JobSpec::more_data`) trains one update per data set and seals only their
//! row-weighted average: secure aggregation by the enclave, no single site's update leaves.

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
    let JobAuthorization { digest, recipients, privacy_budgets } = authorization;
    let model_sealed = read_checked(store, &spec.model, InputRole::Model)?;
    let plan_plain = open_input(identity, released, &model_sealed, InputRole::Model)?;
    let mut inputs = vec![receipt_input(&spec.model, InputRole::Model, &plan_plain)];
    let plan: TrainingPlan = serde_json::from_slice(&plan_plain).map_err(|e| {
        JobError::BadSpec(format!(
            "the model input is not a training plan {{\"model\", \"config\"}} (column {})",
            e.column()
        ))
    })?;
    drop(plan_plain);

    // Every data set is opened and checked against its owner's budget before any training.
    let mut sites = Vec::new();
    let mut privacy_spent: Option<PrivacyBudget> = None;
    for (input, budget) in spec.data_inputs().zip(&privacy_budgets) {
        let sealed = read_checked(store, input, InputRole::Data)?;
        let plain = open_input(identity, released, &sealed, InputRole::Data)?;
        inputs.push(receipt_input(input, InputRole::Data, &plain));
        let rows = LabelledRows::from_csv(&plain)?;
        drop(plain);
        let spent = match budget {
            Some(budget) => Some(check_budget(budget, &plan.config, rows.rows())?),
            // Seeded noise is reproducible, not private: no ε is claimed for it.
            None if plan.config.dp.as_ref().is_some_and(|dp| dp.noise_seed.is_some()) => None,
            None => plan
                .config
                .privacy(rows.rows())?
                .map(|p| PrivacyBudget { epsilon: p.epsilon, delta: p.delta }),
        };
        // The receipt states the largest spend of any data set (each within its own budget).
        if let Some(spent) = spent
            && privacy_spent.is_none_or(|s| spent.epsilon > s.epsilon)
        {
            privacy_spent = Some(spent);
        }
        sites.push(rows);
    }
    let row_count: u64 = sites.iter().map(|rows| rows.rows() as u64).sum();

    // One update per data set; with several, only their average leaves the enclave.
    let mut updates = Vec::with_capacity(sites.len());
    for rows in &sites {
        updates.push((plan.model.train(rows, &plan.config)?, rows.rows() as u64));
    }
    let update = if updates.len() == 1 {
        let ((model, metrics), _) = updates.remove(0);
        TrainingUpdate { model, metrics }
    } else {
        let weighted: Vec<(&Classifier, u64)> =
            updates.iter().map(|((model, _), rows)| (model, *rows)).collect();
        let model = crate::engine::federated_average(&weighted)?;
        drop(weighted);
        let mut metrics = TrainMetrics {
            rows: row_count as usize,
            steps: updates.iter().map(|((_, m), _)| m.steps).sum(),
            privacy: privacy_spent.map(|p| (p.epsilon, p.delta)),
            loss: 0.0,
            accuracy: 0.0,
        };
        for rows in &sites {
            let (loss, accuracy) = model.evaluate(rows)?;
            let share = rows.rows() as f64 / row_count as f64;
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
            started_at,
        },
    )
}
