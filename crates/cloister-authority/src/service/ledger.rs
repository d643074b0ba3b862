//! The privacy ledger: training jobs charge their data sets' privacy budgets.

use cloister_types::api::{REGISTRATION_ANSWER, RegistrationAnswer};

use super::*;

/// How long a registration answer is valid: it is checked as soon as it arrives.
const REGISTRATION_ANSWER_VALIDITY: std::time::Duration = std::time::Duration::from_secs(300);

/// Most data sets one training job charges.
const MAX_CHARGES: usize = 256;

impl Service {
    /// Registers a data set to its owner: `request.statement` is a
    /// [`DatasetRegistration`] signed by `request.owner`. From then on only grants signed by
    /// that owner spend the data set's privacy budget. Registering again for the same owner
    /// changes nothing; another owner is refused (the first registration stands), so an owner
    /// registers before the sealed data set leaves its hands.
    pub async fn register_dataset(
        &self,
        request: &RegisterDataset,
        now: i64,
    ) -> Result<DatasetRegistered> {
        let owner = AnyVerifyingKey::from_text(&request.owner)
            .map_err(|e| ServiceError::BadRequest(format!("owner: {e}")))?;
        let statement = owner
            .verify::<DatasetRegistration>("data set registration", &request.statement, now as u64)
            .map_err(|e| ServiceError::BadRequest(format!("the registration statement: {e}")))?
            .claims;
        if statement.sha256.as_bytes().len() != 32 {
            return Err(ServiceError::BadRequest(
                "the registration must name the sealed data set's SHA-256 (32 bytes)".into(),
            ));
        }
        // The worker's rule for object ids: inside a signed statement, no NUL or other
        // character one backend stores and another refuses (red team, round 10).
        if !cloister_types::job::is_object_id(&statement.object_id) {
            return Err(ServiceError::BadRequest(
                "the object id must be 1 to 128 ASCII letters, digits, '.', '_' or '-', not \
                 starting with '.' (what a worker stores objects under)"
                    .into(),
            ));
        }
        let row = DatasetRow {
            sha256: statement.sha256.to_string(),
            owner: owner.to_text(),
            object_id: statement.object_id.clone(),
            registered_at: now,
        };
        let registered = self.store.register_dataset(&row).await?;
        if registered.owner != row.owner {
            return Err(ServiceError::Conflict(format!(
                "the data set with digest {} is registered to another owner; seal the data again \
                 (a fresh sealing has a fresh digest) and register it before it leaves your hands",
                row.sha256
            )));
        }
        // The same owner, another object id: the first registration stands, and the answer says
        // so rather than answering 200 about a registration that was not made (red team, round
        // 10: a client reading only the status would take it as done).
        if registered.object_id != row.object_id {
            return Err(ServiceError::Conflict(format!(
                "the data set with digest {} is already registered as object {}; register it \
                 under that id",
                row.sha256, registered.object_id
            )));
        }
        if registered.registered_at == now {
            self.record(
                &Principal::Anonymous,
                AuditKind::DatasetRegistered,
                None,
                &row.sha256,
                Outcome::Success,
                serde_json::json!({ "owner": row.owner, "object_id": row.object_id }),
                now,
            )
            .await?;
        }
        let answer = RegistrationAnswer {
            sha256: statement.sha256.clone(),
            owner: registered.owner.clone(),
            object_id: registered.object_id.clone(),
            registered_at: registered.registered_at,
            statement_sha256: Hex(Sha256::digest(request.statement.as_bytes()).to_vec()),
        };
        let answer = self
            .signing_key
            .sign(REGISTRATION_ANSWER, &answer, now as u64, REGISTRATION_ANSWER_VALIDITY)
            .map_err(|e| ServiceError::Internal(format!("signing a registration answer: {e}")))?;
        Ok(DatasetRegistered {
            sha256: statement.sha256,
            owner: registered.owner,
            object_id: registered.object_id,
            registered_at: registered.registered_at,
            answer,
        })
    }

    /// Records an owner's revocation of its grants for one job (a [`GrantRevocation`] signed
    /// with the owner's key): from then on no authorization is recorded and no privacy charged
    /// for a job with that digest reading the owner's inputs, so no worker starts it. Revoking
    /// again changes nothing; a revocation is never undone.
    pub async fn revoke_grant(&self, request: &RevokeGrant, now: i64) -> Result<GrantRevoked> {
        let owner = AnyVerifyingKey::from_text(&request.owner)
            .map_err(|e| ServiceError::BadRequest(format!("owner: {e}")))?;
        let statement = owner
            .verify::<GrantRevocation>("grant revocation", &request.statement, now as u64)
            .map_err(|e| ServiceError::BadRequest(format!("the revocation statement: {e}")))?
            .claims;
        if statement.job_digest.as_bytes().len() != 32 {
            return Err(ServiceError::BadRequest(
                "the revocation must name the job's digest (32 bytes)".into(),
            ));
        }
        let row = RevokedGrantRow {
            owner: owner.to_text(),
            job_digest: statement.job_digest.to_string(),
            revoked_at: now,
        };
        let (revoked, new) = self.store.revoke_grant(&row).await?;
        if new {
            self.record(
                &Principal::Anonymous,
                AuditKind::GrantRevoked,
                None,
                &row.job_digest,
                Outcome::Success,
                serde_json::json!({ "owner": row.owner }),
                now,
            )
            .await?;
        }
        Ok(GrantRevoked {
            owner: revoked.owner,
            job_digest: statement.job_digest,
            revoked_at: revoked.revoked_at,
        })
    }

    /// Refuses a job with digest `job_digest` reading an input of an owner who revoked its
    /// grants for it.
    pub(super) async fn check_not_revoked(&self, job_digest: &Hex, owners: &[&str]) -> Result<()> {
        let digest = job_digest.to_string();
        for owner in owners {
            if let Some(at) = self.store.grant_revoked_at(owner, &digest).await? {
                return Err(ServiceError::Token(format!(
                    "the owner {owner} revoked its grant for job digest {digest} at {at}; \
                     the job does not run"
                )));
            }
        }
        Ok(())
    }

    /// The privacy ledger: charges what a training job an enclave attested by instance `id` is
    /// about to run spends on each of its data sets, composed with every earlier charge on the
    /// same registered data set (by any instance), and refuses, recording nothing, when the
    /// total would pass a data owner's budget. Each charge needs the grant of the data set's
    /// registered owner for this job, allowing this instance and the enclave's measurement;
    /// nothing else touches an account. A job is charged once per data set: a replay returns
    /// the first outcome (naming the enclave that charged) and charges nothing. Kept here, not on
    /// the compute provider's disk, so that it cannot be rolled back there. Charges and
    /// refusals are audited; the answer is signed and bound to the request.
    pub async fn charge_privacy(
        &self,
        id: &str,
        request: &RecordJob,
        request_sha256: &[u8; 32],
        now: i64,
    ) -> Result<SignedAnswer> {
        let (tenant_id, cpu0, statement, _) = self
            .enclave_statement::<PrivacyChargeStatement>(id, request, "privacy charge", now)
            .await?;
        if statement.charges.is_empty() {
            return Err(ServiceError::BadRequest("the statement charges no data set".into()));
        }
        if statement.charges.len() > MAX_CHARGES {
            return Err(ServiceError::BadRequest(format!(
                "a job charges at most {MAX_CHARGES} data sets"
            )));
        }
        let mut job_digest = None;
        for charge in &statement.charges {
            let grant = self
                .check_charge_grant(charge, &statement.job_id, id, &cpu0.claims.measurement, now)
                .await?;
            if *job_digest.get_or_insert_with(|| grant.job_digest.clone()) != grant.job_digest {
                return Err(ServiceError::Token(
                    "the grants of the charges name different job digests".into(),
                ));
            }
        }
        if let Some(digest) = &job_digest {
            let owners: Vec<&str> =
                statement.charges.iter().map(|c| c.input.owner.as_str()).collect();
            self.check_not_revoked(digest, &owners).await?;
        }
        let job_digest = job_digest.map(|d| d.to_string()).unwrap_or_default();
        let charged_by = cpu0.runtime_data.receipt_pk.clone();
        let job = ChargeJob {
            job_id: &statement.job_id,
            job_digest: &job_digest,
            instance_id: id,
            charged_by: &charged_by,
        };
        self.check_held_checkpoint(request.after.as_ref()).await?;
        let charged = self.store.charge_privacy(&job, &statement.charges, now).await?;
        let charges: Vec<_> = statement
            .charges
            .iter()
            .map(|c| {
                serde_json::json!({ "object_id": c.input.object_id,
                "object_sha256": c.input.sha256, "owner": c.input.owner, "budget": c.budget })
            })
            .collect();
        let mut event = AuditEvent {
            kind: AuditKind::PrivacyCharged,
            actor: format!("enclave:{charged_by}"),
            tenant_id: Some(tenant_id),
            subject: statement.job_id.clone(),
            outcome: Outcome::Success,
            detail: serde_json::json!({ "instance": id, "job_digest": job_digest,
                                        "charges": charges }),
        };
        let (outcome, entry) = match charged {
            Charged::New(accounts) => {
                event.detail["accounts"] = serde_json::json!(accounts);
                let entry = self.append(&event, now).await?;
                let audit_seq = entry.seq;
                (
                    PrivacyChargeOutcome::Charged {
                        accounts,
                        audit_seq,
                        charged_by,
                        replay: false,
                    },
                    entry,
                )
            }
            Charged::Replayed { accounts, charged_by: first } => {
                event.outcome = Outcome::Refused;
                event.detail["replay_of_charge_by"] = serde_json::json!(first);
                let entry = self.append(&event, now).await?;
                let audit_seq = entry.seq;
                let outcome = PrivacyChargeOutcome::Charged {
                    accounts,
                    audit_seq,
                    charged_by: first,
                    replay: true,
                };
                (outcome, entry)
            }
            Charged::Refused { object_id, reason } => {
                event.outcome = Outcome::Refused;
                event.detail["refused"] =
                    serde_json::json!({ "object_id": object_id, "reason": reason });
                let entry = self.append(&event, now).await?;
                let audit_seq = entry.seq;
                (PrivacyChargeOutcome::Refused { object_id, reason, audit_seq }, entry)
            }
        };
        // A rollback behind the charge would give the budget back: the answer's checkpoint
        // covers it, so the enclave's receipt names what `audit verify` must still find.
        let checkpoint = self.checkpoint_covering(&entry, request.after.as_ref(), now).await?;
        let answer = Answer::PrivacyCharge { job_id: statement.job_id, outcome };
        Ok(SignedAnswer { answer: self.sign_answer(id, request_sha256, checkpoint, answer, now)? })
    }

    /// Checks that a privacy charge comes with the grant of its data set's registered owner for
    /// this job and data set, allowing the charging instance and enclave measurement and setting
    /// the charge's budget: only then may the charge count against (or exhaust) the owner's
    /// budget. Returns the grant.
    async fn check_charge_grant(
        &self,
        charge: &cloister_types::job::PrivacyCharge,
        job_id: &str,
        instance_id: &str,
        measurement: &Hex,
        now: i64,
    ) -> Result<Grant> {
        let input = &charge.input;
        let refused = |why: String| {
            ServiceError::Token(format!(
                "the privacy charge for data set {}: {why}",
                input.object_id
            ))
        };
        let registered = self.store.dataset(&input.sha256.to_string()).await?.ok_or_else(|| {
            refused(format!(
                "no data set with digest {} is registered; its owner registers it \
                 (POST /v1/datasets) before granting training on it",
                input.sha256
            ))
        })?;
        if registered.owner != input.owner {
            return Err(refused("the charge names another owner than the registered one".into()));
        }
        let grant = verify_charge_grant(charge, job_id, measurement, now)?;
        if !grant.allowed_instances.iter().any(|allowed| allowed == instance_id) {
            return Err(refused(format!(
                "the owner's grant does not allow instance {instance_id}"
            )));
        }
        Ok(grant)
    }
}

/// Checks that a privacy charge comes with its data owner's grant for this job and data set,
/// allowing the charging enclave's `measurement` and setting the charge's budget: only then may
/// the charge count against (or exhaust) the owner's budget.
fn verify_charge_grant(
    charge: &cloister_types::job::PrivacyCharge,
    job_id: &str,
    measurement: &Hex,
    now: i64,
) -> Result<Grant> {
    let input = &charge.input;
    let refused = |why: String| {
        ServiceError::Token(format!("the privacy charge for data set {}: {why}", input.object_id))
    };
    let owner = AnyVerifyingKey::from_text(&input.owner)
        .map_err(|e| refused(format!("the owner key: {e}")))?;
    let grant = owner
        .verify::<Grant>("grant", &charge.grant, now as u64)
        .map_err(|e| refused(format!("the grant does not verify with its owner's key: {e}")))?
        .claims;
    if grant.role != cloister_types::InputRole::Data
        || grant.job_id != job_id
        || grant.object_id != input.object_id
        || grant.object_sha256 != input.sha256
    {
        return Err(refused(format!(
            "the grant is for {:?} object {} of job {}, not this data set of job {job_id}",
            grant.role, grant.object_id, grant.job_id
        )));
    }
    if !grant.allowed_measurements.contains(measurement) {
        return Err(refused(format!(
            "the grant does not allow the charging enclave's measurement {measurement}"
        )));
    }
    if grant.privacy_budget != charge.budget {
        return Err(refused("the charge states another budget than the grant".into()));
    }
    Ok(grant)
}
