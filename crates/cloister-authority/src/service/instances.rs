//! Attestation instances: create, read, policies, reference values, anchors, rotation, delete.

use cloister_sign::SignatureSuite;
use cloister_types::manage::TokenSigning;

use super::*;

impl Service {
    /// Creates an instance in the caller's tenant: policy version 1, a token key and a CA.
    pub async fn create_instance(
        &self,
        who: &Principal,
        request: &CreateInstance,
        now: i64,
    ) -> Result<InstanceView> {
        let tenant = self.tenant_of(who, Action::CreateInstance, now).await?;
        check_name("instance", &request.name)?;
        let id = new_id("in");
        let (rego, builtin) = policy_text(&request.policy)?;
        compile_policy(&id, 1, &rego)?;
        config::trust_anchors(&request.trust_anchors)
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        check_reference_values(&request.reference_values)
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        check_settings(&request.settings)?;
        let public = self.service_key.public_key();
        let ca = CertificateAuthority::generate(&request.name, now as u64)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let token_key = token_key(request.settings.token_signing)?;
        let instance = InstanceRow {
            id: id.clone(),
            tenant_id: tenant.clone(),
            name: request.name.clone(),
            revision: 1,
            policy_version: 1,
            reference_values: request.reference_values.to_string(),
            trust_anchors: to_json(&request.trust_anchors)?,
            settings: to_json(&request.settings)?,
            ca_certificate_pem: ca.certificate_pem().to_owned(),
            ca_key_sealed: seal_secret(&public, ca.key_pem().as_bytes())?,
            created_at: now,
        };
        let policy = PolicyVersionRow {
            instance_id: id.clone(),
            version: 1,
            rego: rego.clone(),
            builtin: builtin.clone(),
            created_at: now,
        };
        let key = self.key_row(&id, &token_key, now)?;
        self.store.create_instance(&instance, &policy, &key).await?;
        self.record(
            who,
            AuditKind::InstanceCreated,
            Some(&tenant),
            &id,
            Outcome::Success,
            serde_json::json!({
                "name": request.name, "policy_version": 1, "policy_sha256": sha256_hex(&rego),
                "builtin": builtin, "token_kid": key.kid,
            }),
            now,
        )
        .await?;
        self.view(&id).await
    }

    /// The caller's instances (the operator's: none; it manages tenants, not instances).
    pub async fn list_instances(&self, who: &Principal, now: i64) -> Result<Vec<InstanceView>> {
        let tenant = self.tenant_of(who, Action::ListInstances, now).await?;
        let mut views = Vec::new();
        for row in self.store.instances(Some(&tenant)).await? {
            views.push(self.view(&row.id).await?);
        }
        Ok(views)
    }

    /// One instance, with its policy history.
    pub async fn show_instance(&self, who: &Principal, id: &str, now: i64) -> Result<InstanceView> {
        self.owned_instance(who, Action::ReadInstance, id, now).await?;
        self.view(id).await
    }

    /// One policy version, with its Rego text.
    pub async fn policy_version(
        &self,
        who: &Principal,
        id: &str,
        version: i64,
        now: i64,
    ) -> Result<PolicyVersionView> {
        self.owned_instance(who, Action::ReadInstance, id, now).await?;
        let row =
            self.store.policy_version(id, version).await?.ok_or_else(|| {
                ServiceError::NotFound(format!("policy version {version} of {id}"))
            })?;
        let mut view = policy_view(&row);
        view.rego = Some(row.rego);
        Ok(view)
    }

    /// Installs a new policy version; tokens name the version they were issued under.
    pub async fn update_policy(
        &self,
        who: &Principal,
        id: &str,
        spec: &PolicySpec,
        now: i64,
    ) -> Result<PolicyUpdated> {
        let tenant = self.owned_instance(who, Action::UpdateInstance, id, now).await?;
        let (rego, builtin) = policy_text(spec)?;
        compile_policy(id, 1, &rego)?;
        let version = self.store.add_policy_version(id, &rego, builtin.as_deref(), now).await?;
        let policy_id = format!("{id}@v{version}");
        self.record(
            who,
            AuditKind::PolicyChanged,
            Some(&tenant),
            id,
            Outcome::Success,
            serde_json::json!({ "policy_version": version, "policy_sha256": sha256_hex(&rego),
                                "builtin": builtin }),
            now,
        )
        .await?;
        Ok(PolicyUpdated { version, policy_id })
    }

    /// Replaces the reference values.
    pub async fn set_reference_values(
        &self,
        who: &Principal,
        id: &str,
        values: &serde_json::Value,
        now: i64,
    ) -> Result<InstanceView> {
        let tenant = self.owned_instance(who, Action::UpdateInstance, id, now).await?;
        check_reference_values(values).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let text = values.to_string();
        self.store.set_reference_values(id, &text).await?;
        self.record(
            who,
            AuditKind::InstanceUpdated,
            Some(&tenant),
            id,
            Outcome::Success,
            serde_json::json!({ "reference_values_sha256": sha256_hex(&text) }),
            now,
        )
        .await?;
        self.view(id).await
    }

    /// Replaces the trust anchors.
    pub async fn set_trust_anchors(
        &self,
        who: &Principal,
        id: &str,
        anchors: &TrustAnchorSpec,
        now: i64,
    ) -> Result<InstanceView> {
        let tenant = self.owned_instance(who, Action::UpdateInstance, id, now).await?;
        config::trust_anchors(anchors).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let text = to_json(anchors)?;
        self.store.set_trust_anchors(id, &text).await?;
        self.record(
            who,
            AuditKind::InstanceUpdated,
            Some(&tenant),
            id,
            Outcome::Success,
            serde_json::json!({
                "trust_anchors_sha256": sha256_hex(&text),
                "sim_platform_keys": anchors.sim_platform_keys.len(),
                "test_roots": anchors.test_roots.values().map(Vec::len).sum::<usize>(),
            }),
            now,
        )
        .await?;
        self.view(id).await
    }

    /// A new token-signing key; the old ones stay in the JWKS until every token they signed has
    /// expired. The CA is kept, so certificates already issued keep verifying.
    pub async fn rotate_keys(&self, who: &Principal, id: &str, now: i64) -> Result<InstanceView> {
        let tenant = self.owned_instance(who, Action::UpdateInstance, id, now).await?;
        let row = self.instance_row(id).await?;
        let settings: InstanceSettings = from_json(&row.settings, "settings")?;
        let token_key = token_key(settings.token_signing)?;
        let key = self.key_row(id, &token_key, now)?;
        let keep_until = now + settings.token_ttl_secs as i64;
        self.store
            .rotate_instance_keys(
                id,
                &key,
                &row.ca_certificate_pem,
                &row.ca_key_sealed,
                now,
                keep_until,
            )
            .await?;
        self.record(
            who,
            AuditKind::KeysRotated,
            Some(&tenant),
            id,
            Outcome::Success,
            serde_json::json!({ "token_kid": key.kid, "old_keys_kept_until": keep_until }),
            now,
        )
        .await?;
        self.view(id).await
    }

    /// Deletes the instance and destroys its keys: its tokens stop verifying here. Its id is
    /// never used again on this service, and every broker key that listed it stops accepting it
    /// (each detachment is audited).
    pub async fn delete_instance(&self, who: &Principal, id: &str, now: i64) -> Result<()> {
        let tenant = self.owned_instance(who, Action::DeleteInstance, id, now).await?;
        let detached = self.store.delete_instance(id, now).await?;
        self.forget(id);
        self.record(
            who,
            AuditKind::InstanceDeleted,
            Some(&tenant),
            id,
            Outcome::Success,
            serde_json::json!({ "detached_from_keys": detached }),
            now,
        )
        .await?;
        for key in &detached {
            self.record(
                who,
                AuditKind::KeyInstanceDetached,
                Some(&tenant),
                key,
                Outcome::Success,
                serde_json::json!({ "instance": id, "reason": "instance deleted" }),
                now,
            )
            .await?;
        }
        Ok(())
    }
}

/// A fresh EAR token key of the instance's signature suite.
fn token_key(signing: TokenSigning) -> Result<AnySigningKey> {
    let suite = match signing {
        TokenSigning::Es256 => SignatureSuite::Es256,
        TokenSigning::Sm2 => SignatureSuite::Sm2,
    };
    AnySigningKey::generate(suite)
        .map_err(|e| ServiceError::Internal(format!("making a token key: {e}")))
}
