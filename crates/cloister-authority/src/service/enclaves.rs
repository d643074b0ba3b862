//! What attested enclaves send and what they are told: statements verified with the EAR token
//! and the enclave's receipt key, job authorisations recorded in the audit log, and the signed
//! answers ([`ServiceAnswer`]) an enclave acts on.

use super::*;

/// How long a signed answer is valid: long enough for a slow network, short enough that an old
/// answer cannot stand in for a new one (each is also bound to its request by digest).
const ANSWER_VALIDITY: std::time::Duration = std::time::Duration::from_secs(300);
/// Seconds a spent statement is kept past its expiry: more than the clock skew verification
/// allows.
const STATEMENT_SKEW: i64 = 120;

impl Service {
    /// Verifies a statement an enclave attested by instance `id` sends: its EAR token with the
    /// instance's keys, and the statement (`what`) with the receipt key the token's `cpu0` binds.
    /// Returns the instance's tenant, the enclave's appraisal and the statement.
    pub(super) async fn enclave_statement<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        id: &str,
        request: &RecordJob,
        what: &'static str,
        now: i64,
    ) -> Result<(String, cloister_types::EarAppraisal, T, u64)> {
        check_request_nonce(&request.nonce)?;
        let cached = self.instance(id).await?;
        let refused = |why: String| ServiceError::Token(why);
        let kid = cloister_sign::peek_key_id(&request.ear)
            .ok_or_else(|| refused("the EAR token names no key".into()))?;
        let key =
            cached.instance.token_keys(now as u64).find(|k| k.kid == kid).ok_or_else(|| {
                refused(format!("the EAR token's key {kid} is not one of instance {id}'s"))
            })?;
        let mut ear = key
            .key
            .verify::<EarBody>(cloister_types::ear::EAR_NAME, &request.ear, now as u64)
            .map_err(|e| refused(e.to_string()))?
            .claims;
        let cpu0 = ear
            .submods
            .remove("cpu0")
            .ok_or_else(|| refused("the EAR token has no cpu0".into()))?;
        // Statements are an enclave's: a device admitted by the instance records no job,
        // charges no ledger and reserves no usage.
        cpu0.claims.check_enclave().map_err(|e| refused(e.to_string()))?;
        let receipt_key = AnyVerifyingKey::from_text(&cpu0.runtime_data.receipt_pk)
            .map_err(|e| refused(format!("the enclave's receipt key: {e}")))?;
        let statement = receipt_key
            .verify::<T>(what, &request.statement, now as u64)
            .map_err(|e| refused(format!("the {what} statement: {e}")))?;
        // A statement counts once: the host that relays it cannot post it again with a fresh
        // request nonce (each post was another audit entry). Enclaves sign a new one per request.
        let digest = format!("statement:{}", Hex(statement.token_sha256.to_vec()));
        let keep_until =
            i64::try_from(statement.expires_at).unwrap_or(i64::MAX).saturating_add(STATEMENT_SKEW);
        match self.store.spend_once(id, &digest, keep_until, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!(
                    "this {what} statement was already used: each is accepted once; the enclave \
                     signs a new one for every request"
                )));
            }
            Err(other) => return Err(other.into()),
        }
        Ok((cached.tenant_id.clone(), cpu0, statement.claims, statement.expires_at))
    }

    /// Records, in the audit log, that an enclave attested by instance `id` authorised a job:
    /// the statement must be signed by the receipt key bound in the enclave's EAR token, and the
    /// token must verify with the instance's keys. Workers run a job only once it is recorded;
    /// a job whose input owner revoked its grant for it ([`Service::revoke_grant`]) is refused.
    /// The answer is signed ([`Answer::JobRecorded`]), bound to the request, and carries a
    /// checkpoint covering the record.
    pub async fn record_job(
        &self,
        id: &str,
        request: &RecordJob,
        request_sha256: &[u8; 32],
        now: i64,
    ) -> Result<SignedAnswer> {
        let (tenant_id, cpu0, statement, _) =
            self.enclave_statement::<JobAuthorized>(id, request, "job authorization", now).await?;
        self.check_held_checkpoint(request.after.as_ref()).await?;
        let owners: Vec<&str> = statement.inputs.iter().map(|input| input.owner.as_str()).collect();
        if let Err(error) = self.check_not_revoked(&statement.job_digest, &owners).await {
            let event = AuditEvent {
                kind: AuditKind::JobAuthorized,
                actor: format!("enclave:{}", cpu0.runtime_data.receipt_pk),
                tenant_id: Some(tenant_id),
                subject: statement.job_id.clone(),
                outcome: Outcome::Refused,
                detail: serde_json::json!({ "instance": id, "job_digest": statement.job_digest,
                                            "reason": error.to_string() }),
            };
            self.append(&event, now).await?;
            return Err(error);
        }
        let event = AuditEvent {
            kind: AuditKind::JobAuthorized,
            actor: format!("enclave:{}", cpu0.runtime_data.receipt_pk),
            tenant_id: Some(tenant_id),
            subject: statement.job_id.clone(),
            outcome: Outcome::Success,
            detail: serde_json::json!({
                "instance": id,
                "job_digest": statement.job_digest,
                "inputs": statement.inputs,
                "output_recipients": statement.output_recipients,
                "measurement": cpu0.claims.measurement,
                "tee": cpu0.claims.tee.as_str(),
                "policy_id": cpu0.appraisal_policy_id,
            }),
        };
        let entry = self.append(&event, now).await?;
        let audit_seq = entry.seq;
        let checkpoint = self.checkpoint_covering(&entry, request.after.as_ref(), now).await?;
        let answer = Answer::JobRecorded { job_id: statement.job_id, audit_seq };
        Ok(SignedAnswer { answer: self.sign_answer(id, request_sha256, checkpoint, answer, now)? })
    }

    /// Signs `answer` to a request to instance `id` whose body had SHA-256 `request_sha256`,
    /// with the service signing key, the latest signed checkpoint and the service's time.
    pub(super) fn sign_answer(
        &self,
        id: &str,
        request_sha256: &[u8; 32],
        checkpoint: CheckpointRef,
        answer: Answer,
        now: i64,
    ) -> Result<String> {
        let answer = ServiceAnswer {
            instance_id: id.to_owned(),
            request_sha256: Hex(request_sha256.to_vec()),
            checkpoint,
            answer,
        };
        self.signing_key
            .sign("service answer", &answer, now as u64, ANSWER_VALIDITY)
            .map_err(|e| ServiceError::Internal(format!("signing an answer: {e}")))
    }

    /// The latest signed checkpoint of the audit log (seq 0 before the first).
    pub(super) async fn checkpoint_ref(&self) -> Result<CheckpointRef> {
        Ok(self
            .store
            .last_checkpoint()
            .await?
            .map(|c| CheckpointRef { seq: c.seq, hash: c.hash })
            .unwrap_or_default())
    }
}

/// Checks the request nonce an enclave drew: 16 to 64 random bytes in unpadded base64url.
pub(super) fn check_request_nonce(nonce: &str) -> Result<()> {
    if !cloister_types::api::is_request_nonce(nonce) {
        return Err(ServiceError::BadRequest(
            "the request nonce must be 16 to 64 random bytes in unpadded base64url".into(),
        ));
    }
    Ok(())
}
