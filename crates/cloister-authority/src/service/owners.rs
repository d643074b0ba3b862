//! Data owners in the console: sign-in with a party key, the owner's own data sets and privacy
//! charges, and batch receipts explained to anyone.
//!
//! A data owner holds a signing key, not a service token. It signs in by signing a challenge
//! (a token this service signed over a fresh nonce) together with this service's key
//! fingerprint, with `cloister owner sign-in`, so its secret key never enters a browser. The
//! service answers each challenge once and issues a short-lived session token, signed as an
//! owner session and valid only for reading that owner's data sets.

use cloister_client::enclave::{Expectations, accepted_tees, read_claims_unverified};
use cloister_types::api::{
    OWNER_CHALLENGE, OWNER_SESSION, OWNER_SIGN_IN, OWNER_VIEW_JOBS, OwnerChallenge,
    OwnerChallengeClaims, OwnerCharge, OwnerDataset, OwnerJob, OwnerSession, OwnerSessionClaims,
    OwnerSignIn, OwnerSignInStatement, OwnerView, ReceiptCheck, ReceiptExplanation,
};
use cloister_types::batch::{BatchReceipt, BatchStatus, CombinedReceipt};

use super::*;

/// How long a sign-in challenge may be answered.
const CHALLENGE_VALIDITY: std::time::Duration = std::time::Duration::from_secs(300);

/// How long an owner session lasts: short, since signing out only forgets the token.
const SESSION_VALIDITY: std::time::Duration = std::time::Duration::from_secs(900);

/// The scope challenge nonces are answered once in.
const SIGN_IN_SCOPE: &str = "owner-sign-in";

impl Service {
    /// A fresh sign-in challenge for a data owner.
    pub fn owner_challenge(&self, now: i64) -> Result<OwnerChallenge> {
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        let claims = OwnerChallengeClaims { challenge_nonce: Base64Url::encode(&nonce) };
        let challenge = self
            .signing_key
            .sign(OWNER_CHALLENGE, &claims, now as u64, CHALLENGE_VALIDITY)
            .map_err(|e| ServiceError::Internal(format!("signing a challenge: {e}")))?;
        Ok(OwnerChallenge {
            challenge,
            service_key_sha256: Hex(self.signing_key.public_key().fingerprint().to_vec()),
            expires_at: now + CHALLENGE_VALIDITY.as_secs() as i64,
        })
    }

    /// Signs a data owner in: the challenge is this service's, unexpired and answered for the
    /// first time, and the statement is signed by `request.owner` over that challenge and this
    /// service's key. Returns a session token for that owner.
    pub async fn owner_sign_in(&self, request: &OwnerSignIn, now: i64) -> Result<OwnerSession> {
        let refused = |why: String| ServiceError::SignIn(format!("sign-in refused: {why}"));
        let owner = VerifyingKey::from_text(&request.owner)
            .map_err(|e| ServiceError::BadRequest(format!("owner: {e}")))?;
        let challenge = self
            .signing_key
            .public_key()
            .verify::<OwnerChallengeClaims>(OWNER_CHALLENGE, &request.challenge, now as u64)
            .map_err(|e| {
                refused(format!("the challenge is not one of this service's, or expired: {e}"))
            })?;
        let statement = owner
            .verify::<OwnerSignInStatement>(OWNER_SIGN_IN, &request.statement, now as u64)
            .map_err(|e| refused(format!("the statement does not verify with the owner key: {e}")))?
            .claims;
        if statement.challenge_sha256.as_bytes()
            != Sha256::digest(request.challenge.as_bytes()).as_slice()
        {
            return Err(refused("the statement answers another challenge".into()));
        }
        if statement.service_key_sha256.as_bytes() != self.signing_key.public_key().fingerprint() {
            return Err(refused(
                "the statement signs in to another service (its service key fingerprint is not \
                 this service's)"
                    .into(),
            ));
        }
        let keep_until = challenge.expires_at as i64 + 60;
        match self
            .store
            .spend_once(SIGN_IN_SCOPE, &challenge.claims.challenge_nonce, keep_until, now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(refused("the challenge was answered before; ask for a new one".into()));
            }
            Err(other) => return Err(other.into()),
        }
        let owner_text = owner.to_text();
        let claims = OwnerSessionClaims { owner: owner_text.clone() };
        let token = self
            .signing_key
            .sign(OWNER_SESSION, &claims, now as u64, SESSION_VALIDITY)
            .map_err(|e| ServiceError::Internal(format!("signing a session: {e}")))?;
        Ok(OwnerSession {
            token,
            owner: owner_text,
            expires_at: now + SESSION_VALIDITY.as_secs() as i64,
        })
    }

    /// The owner an owner session token is for, when `bearer` is one of this service's and
    /// unexpired; `None` otherwise (the caller then looks it up as an operator or tenant token,
    /// which may be any text an operator chose, dots included).
    pub(super) fn owner_session(&self, bearer: &str, now: i64) -> Option<Principal> {
        if bearer.split('.').count() != 3 {
            return None;
        }
        let verified = self.signing_key.public_key().verify::<OwnerSessionClaims>(
            OWNER_SESSION,
            bearer,
            now as u64,
        );
        verified.ok().map(|verified| Principal::DataOwner { key: verified.claims.owner })
    }

    /// What the service keeps about the signed-in owner's data sets: each registration, every
    /// privacy charge on it with the account it produced, and the jobs recorded over them.
    pub async fn owner_view(&self, who: &Principal, now: i64) -> Result<OwnerView> {
        let Principal::DataOwner { key } = who else {
            return Err(ServiceError::Denied(cloister_policy::Denied {
                principal: who.to_string(),
                action: Action::ReadOwnData,
                resource: "a data owner's data sets (sign in with a party key)".to_owned(),
            }));
        };
        self.allow(who, Action::ReadOwnData, Resource::Party(key), "data sets", now).await?;
        let mut datasets = Vec::new();
        for row in self.store.datasets_of(key).await? {
            let charges = self
                .store
                .charges_on(&row.sha256)
                .await?
                .into_iter()
                .map(|charge| OwnerCharge {
                    account: charge.account_json.and_then(|j| serde_json::from_str(&j).ok()),
                    budget: charge.budget_json.and_then(|j| serde_json::from_str(&j).ok()),
                    job_id: charge.job_id,
                    job_digest: charge.job_digest,
                    instance_id: charge.instance_id,
                    charged_at: charge.charged_at,
                })
                .collect();
            datasets.push(OwnerDataset {
                sha256: Hex(hex::decode(&row.sha256).unwrap_or_default()),
                object_id: row.object_id,
                registered_at: row.registered_at,
                charges,
            });
        }
        // The coarse text match is refined here: only records whose inputs name this owner.
        let kind = AuditKind::JobAuthorized.as_str();
        let rows = self.store.audit_mentioning(kind, key, 5 * OWNER_VIEW_JOBS as i64).await?;
        let jobs = rows
            .into_iter()
            .filter_map(|row| {
                let detail: serde_json::Value = serde_json::from_str(&row.detail).ok()?;
                let mine = detail["inputs"]
                    .as_array()?
                    .iter()
                    .any(|input| input["owner"].as_str() == Some(key.as_str()));
                mine.then(|| OwnerJob {
                    job_id: row.subject,
                    at: row.at,
                    outcome: row.outcome,
                    audit_seq: row.seq,
                    detail,
                })
            })
            .take(OWNER_VIEW_JOBS)
            .collect();
        Ok(OwnerView { owner: key.clone(), datasets, jobs })
    }

    /// Checks a done batch job's status (its receipt, the receipt signer's certificate chain and
    /// the chunks) as `cloister job fetch` does, against the instance of this service that
    /// certified the signer, and says what each check found. Anyone may ask: the answer holds
    /// nothing the receipt does not.
    pub async fn explain_receipt(&self, status: &BatchStatus, now: i64) -> ReceiptExplanation {
        let mut explanation = ReceiptExplanation {
            verified: false,
            checks: Vec::new(),
            receipt: None,
            warnings: Vec::new(),
        };
        let mut check = |what: &str, outcome: std::result::Result<String, String>| {
            let passed = outcome.is_ok();
            explanation.checks.push(ReceiptCheck {
                check: what.to_owned(),
                passed,
                detail: outcome.unwrap_or_else(|e| e),
            });
            passed
        };
        // Which instance certified the signer: read from the certificate before anything is
        // verified, only to find the CA it must then verify under.
        let named = status
            .receipt_signer_chain_pem
            .as_deref()
            .ok_or_else(|| {
                "the status carries no certificate chain for the receipt's signer".to_owned()
            })
            .and_then(|pem| {
                let chain = cloister_types::pem_certificates(pem).map_err(|e| e.to_string())?;
                let leaf = chain.first().ok_or("the certificate chain is empty")?;
                read_claims_unverified(leaf).map_err(|e| e.to_string())
            });
        let named = match named {
            Ok(named) => named,
            Err(e) => {
                check("the receipt signer's certificate", Err(e));
                return explanation;
            }
        };
        let instance_id = named
            .policy_id
            .split_once('@')
            .map_or(named.policy_id.as_str(), |(id, _)| id)
            .to_owned();
        let instance = match self.instance(&instance_id).await {
            Ok(instance) => instance,
            Err(_) => {
                check(
                    "the certifying instance",
                    Err(format!(
                        "the signer's certificate names instance {instance_id}, which this service \
                         does not have: ask the service that certified it"
                    )),
                );
                return explanation;
            }
        };
        check(
            "the certifying instance",
            Ok(format!("instance {instance_id} of this service certified the signer")),
        );
        let ca_pem = instance.instance.info(now as u64).ca_certificate_pem;
        // The measurement the signer claims is the one reported, never assumed: the check below
        // verifies the certificate carries it, and the reader judges it.
        let expectations = Expectations::from_ca_pem(
            &ca_pem,
            vec![named.claims.measurement.clone()],
            accepted_tees(true),
        )
        .map(|e| e.accepting_test_roots(true));
        let verified = match expectations {
            Ok(expectations) => cloister_client::verify_batch_receipt(status, &expectations)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let verified = match verified {
            Ok(verified) => verified,
            Err(e) => {
                check("the receipt", Err(e));
                return explanation;
            }
        };
        let receipt = &verified.receipt;
        check(
            "the receipt",
            Ok(format!(
                "signed by the enclave the certificate names (receipt key certified by instance \
                 {instance_id}), for job {}, over {} rows in {} chunks whose digests match",
                receipt.job_id, receipt.rows, receipt.chunk_count
            )),
        );
        check(
            "the enclave",
            Ok(format!(
                "TEE {}, measurement {}, appraised {:?} under policy {}",
                named.claims.tee.as_str(),
                receipt.measurement,
                named.ear_status,
                named.policy_id
            )),
        );
        let held = self.held_checkpoint(&receipt.audit_checkpoint).await;
        let checkpoint_ok = check("the audit checkpoint", held);
        if named.claims.tee == cloister_types::TeeKind::Sim {
            explanation.warnings.push(
                "the signer ran in the SIMULATED TEE: nothing protected its keys or data \
                 (development only)"
                    .to_owned(),
            );
        }
        if named.claims.under_test_root() {
            explanation.warnings.push(
                "the signer's evidence verified under a TEST root its instance names, not the \
                 vendor's: development only"
                    .to_owned(),
            );
        }
        explanation.receipt = serde_json::to_value(receipt).ok();
        explanation.verified = checkpoint_ok;
        explanation
    }

    /// Checks a sharded job's combined receipt (what `cloister job fetch --job PLAN` keeps) as
    /// `job fetch` does: the plan is valid and has one status per shard, each shard's receipt
    /// passes every check of [`Self::explain_receipt`], and each names exactly the job the plan
    /// derives for that shard. The explanation's claims summarise the job: the plan's id and
    /// digest, the rows and chunks of every shard, every enclave and input.
    pub async fn explain_combined(
        &self,
        combined: &CombinedReceipt,
        now: i64,
    ) -> ReceiptExplanation {
        let mut explanation = ReceiptExplanation {
            verified: false,
            checks: Vec::new(),
            receipt: None,
            warnings: Vec::new(),
        };
        let plan = &combined.plan;
        let plan_check = plan
            .check()
            .map_err(|e| e.to_string())
            .and_then(|()| plan.digest().map_err(|e| e.to_string()))
            .and_then(|digest| {
                if combined.shards.len() == plan.shards.len() {
                    let detail = format!(
                        "job {} in {} shards, plan digest {digest}",
                        plan.id,
                        plan.shards.len()
                    );
                    Ok((digest, detail))
                } else {
                    Err(format!(
                        "the plan has {} shards, the combined receipt {}",
                        plan.shards.len(),
                        combined.shards.len()
                    ))
                }
            });
        let plan_digest = match plan_check {
            Ok((digest, detail)) => {
                explanation.checks.push(ReceiptCheck {
                    check: "the plan".into(),
                    passed: true,
                    detail,
                });
                digest
            }
            Err(detail) => {
                explanation.checks.push(ReceiptCheck {
                    check: "the plan".into(),
                    passed: false,
                    detail,
                });
                return explanation;
            }
        };
        let mut receipts: Vec<BatchReceipt> = Vec::with_capacity(plan.shards.len());
        for (index, status) in combined.shards.iter().enumerate() {
            let spec = plan.shard_spec(index);
            let one = self.explain_receipt(status, now).await;
            for warning in one.warnings {
                if !explanation.warnings.contains(&warning) {
                    explanation.warnings.push(warning);
                }
            }
            let receipt = one
                .receipt
                .filter(|_| one.verified)
                .and_then(|value| serde_json::from_value::<BatchReceipt>(value).ok());
            let outcome = match receipt {
                None => Err(one
                    .checks
                    .iter()
                    .find(|c| !c.passed)
                    .map(|c| format!("{}: {}", c.check, c.detail))
                    .unwrap_or_else(|| "the receipt could not be read".into())),
                Some(receipt) => {
                    match cloister_client::protocol::check_receipt_names_job(&receipt, &spec) {
                        Ok(()) => Ok(receipt),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            let check = format!("shard {index} ({})", spec.id);
            match outcome {
                Ok(receipt) => {
                    explanation.checks.push(ReceiptCheck {
                        check,
                        passed: true,
                        detail: format!(
                            "{} rows in {} chunks; every check of its receipt passed, and it                              names this shard's job (digest {})",
                            receipt.rows, receipt.chunk_count, receipt.job_digest
                        ),
                    });
                    receipts.push(receipt);
                }
                Err(detail) => {
                    explanation.checks.push(ReceiptCheck { check, passed: false, detail });
                    return explanation;
                }
            }
        }
        let measurements = distinct(receipts.iter().map(|r| r.measurement.to_string()));
        explanation.receipt = Some(serde_json::json!({
            "job_id": plan.id,
            "job_digest": plan_digest,
            "shards": receipts.len(),
            "rows": receipts.iter().map(|r| r.rows).sum::<u64>(),
            "chunk_count": receipts.iter().map(|r| r.chunk_count).sum::<u64>(),
            "measurement": measurements.join(", "),
            "enclaves": distinct(receipts.iter().flat_map(|r| r.enclaves.iter().cloned())),
            "submitted_at": receipts.iter().map(|r| r.submitted_at).min(),
            "finished_at": receipts.iter().map(|r| r.finished_at).max(),
            "erased": distinct(receipts.iter().flat_map(|r| r.erased.iter().cloned())),
            "inputs": distinct(receipts.iter().flat_map(|r| r.inputs.iter().cloned())),
            "receipts": receipts,
        }));
        explanation.verified = true;
        explanation
    }

    /// Whether this service's audit log still holds the signed checkpoint `held` names.
    async fn held_checkpoint(&self, held: &CheckpointRef) -> std::result::Result<String, String> {
        if held.seq == 0 {
            return Err("the receipt names no audit checkpoint".into());
        }
        match self.store.checkpoint_at(held.seq).await {
            Ok(Some(row)) if row.hash == held.hash => Ok(format!(
                "this service's audit log holds the signed checkpoint at entry {} the receipt names",
                held.seq
            )),
            Ok(Some(_)) => Err(format!(
                "the audit log's checkpoint at entry {} has another hash than the receipt names: \
                 the log was rolled back or rewritten",
                held.seq
            )),
            Ok(None) => Err(format!(
                "this service's audit log has no checkpoint at entry {}: the receipt was signed \
                 against another service's log, or this one was rolled back",
                held.seq
            )),
            Err(e) => Err(format!("reading the audit log: {e}")),
        }
    }
}

/// Each item once, in first-seen order.
fn distinct<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}
