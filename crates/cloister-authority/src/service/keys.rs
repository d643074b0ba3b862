//! The key broker: owners' keys with release policies, released to attested enclaves.

use cloister_types::api::RELEASE_PROOF_VALIDITY;

use super::*;

impl Service {
    /// Registers a broker key of the caller's tenant with its release policy.
    pub async fn register_key(
        &self,
        who: &Principal,
        request: &RegisterKey,
        now: i64,
    ) -> Result<KeyView> {
        let tenant = self.tenant_of(who, Action::ManageKeys, now).await?;
        check_name("key", &request.name)?;
        ReleasePolicy::new(&request.release_policy)
            .map_err(|e| ServiceError::BadRequest(format!("release policy: {e}")))?;
        if request.instances.is_empty() {
            return Err(ServiceError::BadRequest(
                "name at least one instance whose attestation results this key accepts".into(),
            ));
        }
        for instance in &request.instances {
            // Only the tenant's own instances: another tenant's policy must not decide releases.
            self.owned_instance(who, Action::ReadInstance, instance, now).await?;
        }
        let secret = match &request.secret_key {
            Some(text) => RecipientSecretKey::from_text(text)
                .map_err(|e| ServiceError::BadRequest(format!("secret_key: {e}")))?,
            None => RecipientSecretKey::generate(),
        };
        let public = secret.public_key();
        let row = BrokerKeyRow {
            id: new_id("kb"),
            tenant_id: tenant.clone(),
            name: request.name.clone(),
            key_id: public.key_id().to_hex(),
            public_key: public.to_text(),
            secret_sealed: seal_secret(
                &self.service_key.public_key(),
                secret.to_text().as_bytes(),
            )?,
            release_policy: request.release_policy.clone(),
            instances: to_json(&request.instances)?,
            created_at: now,
            revoked_at: None,
        };
        self.store.create_broker_key(&row).await?;
        self.record(
            who,
            AuditKind::KeyRegistered,
            Some(&tenant),
            &row.id,
            Outcome::Success,
            serde_json::json!({ "name": row.name, "key_id": row.key_id,
                                "release_policy_sha256": sha256_hex(&row.release_policy),
                                "instances": request.instances }),
            now,
        )
        .await?;
        key_view(&row)
    }

    /// The caller's broker keys.
    pub async fn list_keys(&self, who: &Principal, now: i64) -> Result<Vec<KeyView>> {
        let tenant = self.tenant_of(who, Action::ManageKeys, now).await?;
        self.store.broker_keys(&tenant).await?.iter().map(key_view).collect()
    }

    /// One broker key.
    pub async fn show_key(&self, who: &Principal, id: &str, now: i64) -> Result<KeyView> {
        let row = self.owned_key(who, id, now).await?;
        key_view(&row)
    }

    /// Revokes a broker key: no release from now on.
    pub async fn revoke_key(&self, who: &Principal, id: &str, now: i64) -> Result<KeyView> {
        let row = self.owned_key(who, id, now).await?;
        self.store.revoke_broker_key(id, now).await?;
        self.record(
            who,
            AuditKind::KeyRevoked,
            Some(&row.tenant_id),
            id,
            Outcome::Success,
            serde_json::json!({ "key_id": row.key_id }),
            now,
        )
        .await?;
        self.show_key(who, id, now).await
    }

    /// Releases a broker key to the enclave whose attestation result comes with the request,
    /// wrapped to the HPKE key bound in its evidence, when the key's release policy allows it.
    /// Sizes are checked before anything is read or written. A release, and every refusal of an
    /// enclave an accepted instance attested, is audited; requests that prove nothing (an
    /// unknown key, a token no accepted instance issued) are refused without a trace in the
    /// database, since anyone can send them as often as they like.
    pub async fn release_key(
        &self,
        request: &KeyReleaseRequest,
        now: i64,
    ) -> Result<KeyReleaseResponse> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ServiceError::Internal(format!("encoding a release request: {e}")))?;
        self.release_key_answering(request, &Sha256::digest(&body).into(), now).await
    }

    /// [`Service::release_key`] for the request whose body, as received, had SHA-256
    /// `request_sha256`: the response's signed answer is bound to it.
    pub async fn release_key_answering(
        &self,
        request: &KeyReleaseRequest,
        request_sha256: &[u8; 32],
        now: i64,
    ) -> Result<KeyReleaseResponse> {
        broker::check_request_shape(request)?;
        let key_id = request.key_id.to_string();
        let Some(row) = self.store.broker_key_by_key_id(&key_id).await? else {
            self.metrics.release_refused("unknown_key");
            return Err(ServiceError::NotFound(format!("broker key with key id {key_id}")));
        };
        let result = self.release_with(&row, request, now).await;
        if let Err(ServiceError::Release(error)) = &result
            && !error.after_authentication()
        {
            self.metrics.release_refused("unauthenticated");
            return result.map(|(_, response)| response);
        }
        // The request is the enclave's own (its proof verified); the host may still send it
        // again, and nothing it sends twice is answered or recorded twice. The nonce is kept
        // past the proof's expiry by more than the clock skew verification allows.
        let until = now.saturating_add(2 * RELEASE_PROOF_VALIDITY.as_secs() as i64);
        let nonce = format!("release:{}", request.nonce);
        match self.store.spend_once(&row.id, &nonce, until, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                // The refusal reads like every other unauthenticated one: whoever relays the
                // request learns nothing from it, not even that it was answered before (red
                // team, round 9).
                self.metrics.release_refused("unauthenticated");
                tracing::debug!(broker_key = %row.id, "a release request's nonce was answered before");
                return Err(ReleaseError::IssuerNotAccepted { broker_key: row.id.clone() }.into());
            }
            Err(other) => return Err(other.into()),
        }
        self.check_held_checkpoint(request.after.as_ref()).await?;
        let (outcome, detail) = match &result {
            Ok((instance, _)) => (
                Outcome::Success,
                serde_json::json!({ "key_id": key_id, "instance": instance,
                                    "context": request.context }),
            ),
            Err(error) => (
                Outcome::Refused,
                serde_json::json!({ "key_id": key_id, "context": request.context,
                                    "reason": error.to_string() }),
            ),
        };
        let entry = self
            .record(
                &Principal::Anonymous,
                AuditKind::KeyReleased,
                Some(&row.tenant_id),
                &row.id,
                outcome,
                detail,
                now,
            )
            .await?;
        let (instance_id, mut response) = result?;
        // A key that left must stay on the record: a checkpoint covering the release is signed
        // before the answer, and the signed answer carries it, so a log truncated behind the
        // release no longer holds a checkpoint its enclave was given.
        let checkpoint = self.checkpoint_covering(&entry, request.after.as_ref(), now).await?;
        let answer = Answer::KeyReleased {
            key_id: response.key_id.clone(),
            audit_seq: entry.seq,
            context_digest: response.context_digest.clone(),
        };
        response.answer =
            self.sign_answer(&instance_id, request_sha256, checkpoint, answer, now)?;
        Ok(response)
    }

    async fn release_with(
        &self,
        row: &BrokerKeyRow,
        request: &KeyReleaseRequest,
        now: i64,
    ) -> Result<(String, KeyReleaseResponse)> {
        let instances: Vec<String> = from_json(&row.instances, "broker key instances")?;
        let policy = ReleasePolicy::new(&row.release_policy)
            .map_err(|e| ServiceError::Internal(format!("stored release policy: {e}")))?;
        let secret_text = unseal_secret(&self.service_key, &row.secret_sealed)?;
        let secret = RecipientSecretKey::from_text(&String::from_utf8_lossy(&secret_text))
            .map_err(|e| ServiceError::Internal(format!("stored broker key: {e}")))?;
        // The token names its signing key; find the accepted instance that published it. Only
        // an instance of the key's own tenant counts: an id the key lists that now names
        // another tenant's instance (which ids never do, see `instance_ids`) decides nothing.
        let kid = cloister_sign::peek_key_id(&request.ear).unwrap_or_default();
        let mut issuer = None;
        for id in &instances {
            match self.instance(id).await {
                Ok(cached) if cached.tenant_id != row.tenant_id => {
                    tracing::error!(broker_key = %row.id, instance = %id,
                        "a broker key lists an instance of another tenant; it is not accepted");
                }
                Ok(cached) if cached.instance.token_keys(now as u64).any(|k| k.kid == kid) => {
                    issuer = Some((id.clone(), cached));
                    break;
                }
                Ok(_) | Err(ServiceError::NotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        // The refusal names no instance: the caller may not learn which ones the key accepts.
        let Some((instance_id, cached)) = issuer else {
            return Err(ReleaseError::IssuerNotAccepted { broker_key: row.id.clone() }.into());
        };
        let keys: TokenKeys = cached
            .instance
            .token_keys(now as u64)
            .map(|k| (k.kid.clone(), k.key.clone()))
            .collect();
        let key = BrokerKey {
            id: &row.id,
            name: &row.name,
            secret: &secret,
            policy: &policy,
            instances: &instances,
            revoked: row.revoked_at.is_some(),
        };
        let response =
            broker::release(&instance_id, &keys, &key, &self.collateral, request, now as u64)
                .map_err(|error| {
                    if error.after_authentication() {
                        error
                    } else {
                        tracing::debug!(broker_key = %row.id, %error, "release refused before \
                            the token was authenticated");
                        ReleaseError::IssuerNotAccepted { broker_key: row.id.clone() }
                    }
                })?;
        Ok((instance_id, response))
    }
}

fn key_view(row: &BrokerKeyRow) -> Result<KeyView> {
    Ok(KeyView {
        id: row.id.clone(),
        name: row.name.clone(),
        key_id: row.key_id.clone(),
        recipient: format!("cloister-broker:{}:{}", row.id, row.public_key),
        public_key: row.public_key.clone(),
        instances: from_json(&row.instances, "broker key instances")?,
        release_policy_sha256: sha256_hex(&row.release_policy),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    })
}
