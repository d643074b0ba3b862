//! The privacy ledger: what training has spent on each sealed data set on this worker, so that a
//! data owner's budget bounds every training job on its data together, not each job alone.
//!
//! A training job is charged before its first step and the charge is never refunded: once noise
//! was drawn and an update may exist, the privacy is spent. Costs compose by adding Rényi DP
//! curves ([`RdpCurve`]); a job without DP-SGD noise from the enclave makes the account
//! unbounded, after which no budgeted job may use the data set.
//!
//! The ledger lives in the worker's database on the compute provider's disk. It stops a model
//! owner from spending a data set's budget twice; it does not stop the compute provider from
//! rolling the file back, which needs a TEE monotonic counter or a ledger held by the
//! attestation service.

use cloister_sign::unix_now;
use cloister_types::InputRef;
use cloister_types::job::{PrivacyAccount, PrivacyBudget};
use cloister_types::privacy::RdpCurve;
use sqlx::SqlitePool;

use crate::jobs::JobError;

/// What one training job spends on one data set.
#[derive(Clone, Debug)]
pub struct Charge {
    /// The data set.
    pub input: InputRef,
    /// The job's cost on it; `None` when it trains without DP-SGD noise from the enclave.
    pub cost: Option<RdpCurve>,
    /// The data owner's budget for the data set, from its grant.
    pub budget: Option<PrivacyBudget>,
    /// The δ the accounts are stated at: the budget's, else the plan's (none without DP).
    pub delta: Option<f64>,
}

/// The ledger, in the worker's database.
#[derive(Debug)]
pub struct PrivacyLedger {
    pool: SqlitePool,
    /// Serialises charges: the check and the record are one step.
    charging: tokio::sync::Mutex<()>,
}

fn failed(error: impl std::fmt::Display) -> JobError {
    JobError::Ledger(error.to_string())
}

impl PrivacyLedger {
    /// The ledger in the database behind `pool` (its schema comes with the batch queue's
    /// migrations).
    pub(crate) fn new(pool: SqlitePool) -> Self {
        PrivacyLedger { pool, charging: tokio::sync::Mutex::new(()) }
    }

    /// Checks every charge against its budget, counting what earlier jobs spent on the same
    /// sealed data set, and records them all, or none if any is refused. Returns each data set's
    /// account after this job.
    pub async fn charge(
        &self,
        job_id: &str,
        charges: &[Charge],
    ) -> Result<Vec<PrivacyAccount>, JobError> {
        let _one_at_a_time = self.charging.lock().await;
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let mut accounts = Vec::with_capacity(charges.len());
        for charge in charges {
            let earlier: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT job_id, rdp_json FROM privacy_ledger WHERE object_sha256 = $1 ORDER BY id",
            )
            .bind(charge.input.sha256.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
            let mut total = Some(RdpCurve::zero());
            let mut unbounded_by = None;
            for (job, rdp) in &earlier {
                match (rdp, total.as_mut()) {
                    (Some(json), Some(sum)) => {
                        let values: Vec<f64> = serde_json::from_str(json).map_err(failed)?;
                        sum.compose(&RdpCurve::from_values(values).map_err(failed)?);
                    }
                    (None, _) => {
                        total = None;
                        unbounded_by.get_or_insert(job.clone());
                    }
                    (Some(_), None) => {}
                }
            }
            match (&charge.cost, total.as_mut()) {
                (Some(cost), Some(sum)) => sum.compose(cost),
                _ => total = None,
            }
            let epsilon_at = |curve: &RdpCurve, delta: f64| {
                curve.epsilon(delta).map(|p| PrivacyBudget { epsilon: p.epsilon, delta })
            };
            if let Some(budget) = &charge.budget {
                let refuse = |reason: String| JobError::PrivacyBudget {
                    object_id: charge.input.object_id.clone(),
                    budget_epsilon: budget.epsilon,
                    budget_delta: budget.delta,
                    reason,
                };
                let Some(sum) = &total else {
                    return Err(refuse(match unbounded_by {
                        Some(job) => format!(
                            "it was already used for training without DP-SGD (job {job}), so no \
                             finite ε bounds it"
                        ),
                        None => "the job does not train with DP-SGD noise from the enclave".into(),
                    }));
                };
                let spent = epsilon_at(sum, budget.delta).map_err(|e| refuse(e.to_string()))?;
                if spent.epsilon > budget.epsilon {
                    return Err(refuse(format!(
                        "it has been trained on in {} earlier job(s) on this worker; with this one \
                         it would have spent ε = {:.4} at δ = {}",
                        earlier.len(),
                        spent.epsilon,
                        budget.delta
                    )));
                }
            }
            let at = |curve: &Option<RdpCurve>| match (curve, charge.delta) {
                (Some(curve), Some(delta)) => epsilon_at(curve, delta).ok(),
                _ => None,
            };
            accounts.push(PrivacyAccount {
                object_id: charge.input.object_id.clone(),
                ciphertext_sha256: charge.input.sha256.clone(),
                job: at(&charge.cost),
                total: at(&total),
                jobs: earlier.len() as u64 + 1,
            });
        }
        for charge in charges {
            let rdp = match &charge.cost {
                Some(cost) => Some(serde_json::to_string(cost.values()).map_err(failed)?),
                None => None,
            };
            sqlx::query(
                "INSERT INTO privacy_ledger (object_sha256, object_id, owner, job_id, rdp_json, \
                 charged_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(charge.input.sha256.to_string())
            .bind(&charge.input.object_id)
            .bind(&charge.input.owner)
            .bind(job_id)
            .bind(rdp)
            .bind(unix_now() as i64)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        Ok(accounts)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cloister_types::Hex;

    use super::*;
    use crate::batch::BatchQueue;

    fn data_set(name: &str, digest: u8) -> InputRef {
        InputRef { object_id: name.into(), sha256: Hex(vec![digest; 32]), owner: "owner".into() }
    }

    fn charge(input: &InputRef, steps: u64, budget: Option<f64>) -> Charge {
        Charge {
            input: input.clone(),
            cost: Some(RdpCurve::dp_sgd(0.1, 1.0, steps).unwrap()),
            budget: budget.map(|epsilon| PrivacyBudget { epsilon, delta: 1e-5 }),
            delta: Some(1e-5),
        }
    }

    #[tokio::test]
    async fn jobs_on_one_data_set_compose_until_the_budget_is_spent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let queue = BatchQueue::open(&path, Duration::ZERO).await.unwrap();
        let ledger = queue.privacy_ledger();
        let (a, b) = (data_set("a", 1), data_set("b", 2));
        let one_job = RdpCurve::dp_sgd(0.1, 1.0, 50).unwrap().epsilon(1e-5).unwrap().epsilon;
        let two_jobs = RdpCurve::dp_sgd(0.1, 1.0, 100).unwrap().epsilon(1e-5).unwrap().epsilon;
        let budget = (one_job + two_jobs) / 2.0;

        let first = ledger.charge("job-1", &[charge(&a, 50, Some(budget))]).await.unwrap();
        assert_eq!(first[0].jobs, 1);
        assert!((first[0].total.unwrap().epsilon - one_job).abs() < 1e-9);
        assert_eq!(first[0].job, first[0].total);

        // The second job alone fits the budget; with the first it does not.
        let refused = ledger.charge("job-2", &[charge(&a, 50, Some(budget))]).await.unwrap_err();
        assert!(
            matches!(&refused, JobError::PrivacyBudget { reason, .. }
                if reason.contains("1 earlier job") && reason.contains("would have spent")),
            "{refused}"
        );
        // A refused job with several data sets records none of them.
        let refused = ledger
            .charge("job-3", &[charge(&b, 50, None), charge(&a, 50, Some(budget))])
            .await
            .unwrap_err();
        assert!(matches!(refused, JobError::PrivacyBudget { .. }));

        // The ledger survives reopening; the other data set has its own account.
        drop(ledger);
        drop(queue);
        let queue = BatchQueue::open(&path, Duration::ZERO).await.unwrap();
        let ledger = queue.privacy_ledger();
        let accounts = ledger
            .charge("job-4", &[charge(&b, 50, Some(budget)), charge(&a, 50, None)])
            .await
            .unwrap();
        assert_eq!((accounts[0].jobs, accounts[1].jobs), (1, 2));
        assert!((accounts[1].total.unwrap().epsilon - two_jobs).abs() < 1e-9);
        assert!((accounts[1].job.unwrap().epsilon - one_job).abs() < 1e-9);
    }

    #[tokio::test]
    async fn training_without_dp_leaves_no_budget_for_later_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let queue = BatchQueue::open(&dir.path().join("jobs.db"), Duration::ZERO).await.unwrap();
        let ledger = queue.privacy_ledger();
        let a = data_set("a", 1);
        let plain = Charge { input: a.clone(), cost: None, budget: None, delta: None };
        let accounts = ledger.charge("plain", &[plain]).await.unwrap();
        assert_eq!((accounts[0].job, accounts[0].total), (None, None));
        let refused = ledger.charge("dp", &[charge(&a, 1, Some(100.0))]).await.unwrap_err();
        assert!(
            refused.to_string().contains("already used for training without DP-SGD (job plain)"),
            "{refused}"
        );
    }
}
