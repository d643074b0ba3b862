//! The worker's side of the privacy ledger: before a training job's first step, the enclave asks
//! the attestation service it attested with to charge what the job spends on each data set, and
//! the job runs only once every charge is recorded.
//!
//! The ledger itself is the attestation service's (`privacy_charges`, audited): it composes each
//! charge with every earlier one on the same sealed data set (Rényi DP curves add up) and refuses,
//! recording nothing, when the total would pass a data owner's budget. It is not kept on the
//! compute provider's disk, where it could be rolled back to spend a budget twice. A charge is
//! never refunded: once noise was drawn and an update may exist, the privacy is spent.

use std::time::Duration;

use cloister_client::ServiceChannel;
use cloister_sign::unix_now;
use cloister_types::api::{CheckpointRef, PrivacyChargeOutcome, PrivacyChargeStatement};
use cloister_types::job::{PrivacyAccount, PrivacyCharge};

use crate::identity::EnclaveIdentity;
use crate::jobs::JobError;

/// How long a signed charge statement is accepted by the attestation service.
const STATEMENT_VALIDITY: Duration = Duration::from_secs(300);

/// Charges `charges` for `job_id` at the attestation service, as this enclave. Returns each data
/// set's account after the job, or the data owner's refusal. Only an answer signed by the
/// pinned service counts ([`ServiceChannel`]), and only a charge this enclave's own request
/// made: a job charged before (a replay, by this enclave or any other) does not run again,
/// since running it twice would spend privacy that was charged once.
pub(crate) async fn charge(
    identity: &EnclaveIdentity,
    service: &ServiceChannel,
    job_id: &str,
    charges: Vec<PrivacyCharge>,
    after: &CheckpointRef,
) -> Result<(Vec<PrivacyAccount>, CheckpointRef), JobError> {
    let statement = PrivacyChargeStatement { job_id: job_id.to_owned(), charges };
    let signed = identity
        .receipt_key()
        .sign("privacy charge", &statement, unix_now(), STATEMENT_VALIDITY)
        .map_err(|e| JobError::Ledger(e.to_string()))?;
    let answered = service
        .charge_privacy(&identity.ear(), &signed, job_id, Some(after))
        .await
        .map_err(|e| JobError::Ledger(e.to_string()))?;
    // The signed checkpoint covering the charge: the receipt carries it.
    let (outcome, checkpoint) = (answered.answer, answered.checkpoint);
    match outcome {
        PrivacyChargeOutcome::Charged { accounts, audit_seq, charged_by, replay } => {
            let ours = identity.receipt_key().public_key().to_text();
            if replay || charged_by != ours {
                return Err(JobError::Ledger(format!(
                    "job {job_id} was charged before (by the enclave with receipt key \
                     {charged_by}); a job is charged and runs once: submit it again under a new \
                     job id"
                )));
            }
            tracing::info!(job = %job_id, audit_seq, "privacy charged");
            if accounts.len() != statement.charges.len() {
                return Err(JobError::Ledger(format!(
                    "the ledger answered {} accounts for {} charges",
                    accounts.len(),
                    statement.charges.len()
                )));
            }
            Ok((accounts, checkpoint))
        }
        PrivacyChargeOutcome::Refused { object_id, reason, .. } => {
            let budget = statement
                .charges
                .iter()
                .find(|c| c.input.object_id == object_id)
                .and_then(|c| c.budget)
                .ok_or_else(|| {
                    JobError::Ledger(format!("the ledger refused {object_id}, which has no budget"))
                })?;
            Err(JobError::PrivacyBudget {
                object_id,
                budget_epsilon: budget.epsilon,
                budget_delta: budget.delta,
                reason,
            })
        }
    }
}
