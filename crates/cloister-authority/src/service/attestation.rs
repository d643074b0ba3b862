//! The public attestation surface: challenges, evidence appraisal, instance information.

use super::*;

impl Service {
    /// A fresh single-use challenge for instance `id`. At most [`MAX_LIVE_NONCES`] challenges
    /// of one instance are live: beyond that the oldest is dropped, so anonymous callers cannot
    /// grow the database (a worker uses its nonce within milliseconds).
    ///
    /// A cached instance is used without checking its revision (settings never change after
    /// creation); the nonce's foreign key refuses an instance deleted meanwhile.
    pub async fn challenge(&self, id: &str, now: i64) -> Result<ChallengeResponse> {
        let cached = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        let nonce_ttl_secs = match cached {
            Some(cached) => cached.instance.settings().nonce_ttl_secs,
            None => self.instance(id).await?.instance.settings().nonce_ttl_secs,
        };
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let nonce = Base64Url::encode(&bytes).to_string();
        let expires_at = now + nonce_ttl_secs as i64;
        if let Err(error) = self.store.insert_nonce(&nonce, id, expires_at, MAX_LIVE_NONCES).await {
            if matches!(error, StoreError::NotFound(_)) {
                self.forget(id);
                return Err(ServiceError::NotFound(format!("instance {id}")));
            }
            return Err(error.into());
        }
        Ok(ChallengeResponse { nonce, expires_at })
    }

    /// Whether `nonce` is a live challenge of instance `id` (collateral is fetched only then).
    pub async fn nonce_is_live(&self, id: &str, nonce: &str, now: i64) -> Result<bool> {
        Ok(self.store.nonce_expiry(nonce, id).await?.is_some_and(|expiry| now <= expiry))
    }

    /// Consumes the nonce, checks that the evidence names this service's signing key
    /// ([`SERVICE_KEY_FIELD`]), verifies the evidence with the instance's anchors, appraises it
    /// with its policy and issues the result, with an answer signed by the service signing key
    /// over `request_sha256` (the SHA-256 of the request body as received) that the enclave
    /// checks. Every decision on evidence that answered a live challenge is audited; evidence
    /// answering none is refused without a trace in the database (anyone can send it, as
    /// often as they like).
    pub async fn attest(
        &self,
        id: &str,
        request: &AttestRequest,
        request_sha256: &[u8; 32],
        now: i64,
    ) -> Result<AttestResponse> {
        // One round trip: the nonce is consumed, and the instance's revision and the latest
        // checkpoint are read in the same statement.
        let consumed = self
            .store
            .consume_nonce_for_attestation(&request.evidence.runtime_data.nonce, id)
            .await?;
        let Some(consumed) = consumed else {
            // A missing instance is told apart from a missing nonce (its nonces went with it).
            self.instance(id).await?;
            return Err(AttestError::Nonce(NonceError::Unknown).into());
        };
        let cached = self.instance_at(id, consumed.instance_revision).await?;
        if now > consumed.expires_at {
            return Err(AttestError::Nonce(NonceError::Expired {
                expired_at: consumed.expires_at as u64,
            })
            .into());
        }
        let checkpoint = consumed
            .last_checkpoint
            .map(|(seq, hash)| CheckpointRef { seq, hash })
            .unwrap_or_default();
        // Verification and the tenant's Rego are CPU work of bounded but real cost: off the
        // async executor, so that the service keeps answering meanwhile.
        let appraising = Appraising {
            instance: cached.instance.clone(),
            request: request.clone(),
            checkpoint: checkpoint.clone(),
            collateral: self.collateral.frozen(),
            fingerprint: self.signing_fingerprint.clone(),
        };
        let result = tokio::task::spawn_blocking(move || appraising.run(now))
            .await
            .map_err(|e| ServiceError::Internal(format!("the appraisal task failed: {e}")))?;
        let evidence = &request.evidence;
        let (outcome, detail) = match &result {
            Ok(_) => (
                Outcome::Success,
                serde_json::json!({ "tee": evidence.tee.as_str(),
                                    "policy_id": cached.instance.policy().policy_id() }),
            ),
            Err(error) => (
                Outcome::Refused,
                serde_json::json!({ "tee": evidence.tee.as_str(),
                                    "policy_id": cached.instance.policy().policy_id(),
                                    "reason": error.to_string() }),
            ),
        };
        self.record(
            &Principal::Anonymous,
            AuditKind::Attestation,
            Some(&cached.tenant_id),
            id,
            outcome,
            detail,
            now,
        )
        .await?;
        let issued = result?;
        let answer = Answer::Attested {
            ear_sha256: Hex(Sha256::digest(issued.ear.as_bytes()).to_vec()),
            certificate_chain_sha256: Hex(
                Sha256::digest(issued.certificate_chain_pem.as_bytes()).to_vec()
            ),
        };
        let answer = self.sign_answer(id, request_sha256, checkpoint, answer, now)?;
        Ok(AttestResponse {
            ear: issued.ear,
            certificate_chain_pem: issued.certificate_chain_pem,
            answer,
        })
    }

    /// What relying parties need: CA, JWKS, policy id.
    pub async fn instance_info(&self, id: &str, now: i64) -> Result<InstanceInfo> {
        Ok(self.instance(id).await?.instance.info(now as u64))
    }

    /// The JWKS of instance `id`.
    pub async fn jwks(&self, id: &str, now: i64) -> Result<serde_json::Value> {
        Ok(self.instance(id).await?.instance.jwks(now as u64))
    }

    /// Deletes expired challenges (run periodically).
    pub async fn purge_expired_nonces(&self, now: i64) -> Result<u64> {
        Ok(self.store.purge_nonces(now).await?)
    }
}

/// Everything one appraisal needs, owned, so that it can run on a blocking thread.
struct Appraising {
    instance: Arc<Instance>,
    request: AttestRequest,
    checkpoint: CheckpointRef,
    collateral: crate::collateral::CollateralSnapshot,
    fingerprint: String,
}

impl Appraising {
    /// The evidence names this service, verifies, and passes the instance's policy.
    fn run(self, now: i64) -> Result<Issued, AttestError> {
        let evidence = &self.request.evidence;
        let named = evidence.runtime_data.extra.get(SERVICE_KEY_FIELD);
        match named.and_then(serde_json::Value::as_str) {
            Some(named) if named == self.fingerprint => {}
            Some(named) => {
                return Err(AttestError::OtherService {
                    named: named.chars().take(64).collect(),
                    ours: self.fingerprint,
                });
            }
            None => return Err(AttestError::NoServiceNamed { ours: self.fingerprint }),
        }
        let verified = cloister_verify::verify_with_collateral(
            evidence,
            self.instance.anchors(),
            &self.collateral.by_tee(),
            now,
        )?;
        // One suite per instance: an enclave signs receipts and statements with the receipt key
        // its evidence binds, so that key must be a party key of the instance's suite. (A
        // device, which never signs as an enclave, is left to the policy.)
        if verified.claims().check_enclave().is_ok() {
            let instance = self.instance.token_suite();
            let key = AnyVerifyingKey::from_text(&evidence.runtime_data.receipt_pk)
                .map_err(|e| AttestError::BadReceiptKey(e.to_string()))?;
            if key.suite() != instance {
                return Err(AttestError::SuiteMismatch { enclave: key.suite(), instance });
            }
        }
        self.instance.appraise_and_issue(
            &self.request,
            &verified,
            &self.collateral,
            &self.checkpoint,
            now as u64,
        )
    }
}
