//! The multi-tenant attestation service: tenants and their credentials, attestation instances
//! with versioned policies, challenges in the database, the key broker, migration, and the audit
//! log — everything a route does, with the caller's [`Principal`] and an explicit clock.
//!
//! The service is stateless apart from its database and its key file: replicas sharing one
//! database serve the same instances (a nonce issued by one is consumed once, by any). Instances
//! are cached per process and rebuilt when their `revision` in the database changes.
//!
//! Secrets at rest (token keys, CA keys, broker keys, the audit checkpoint key) are sealed
//! envelopes addressed to the service key; the database alone opens none of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use cloister_policy::{Action, AppraisalPolicy, Principal, ReleasePolicy, Resource, authorize};
use cloister_seal::{Metadata, RecipientPublicKey, RecipientSecretKey};
use cloister_sign::{SigningKey, VerifyingKey};
use cloister_types::api::{
    AttestRequest, AttestResponse, ChallengeResponse, InstanceInfo, JobAuthorized, JobRecorded,
    KeyReleaseRequest, KeyReleaseResponse, PrivacyChargeOutcome, PrivacyChargeStatement, RecordJob,
    ServiceKeyDocument,
};
use cloister_types::manage::{
    AuditRecordView, CreateInstance, CreateTenant, InstanceView, KeyView, PolicySpec,
    PolicyUpdated, PolicyVersionView, RegisterKey, TenantCreated, TenantView, TokenKeyView,
    TrustAnchorSpec,
};
use cloister_types::{Base64Url, EarBody, Hex, UnifiedEvidence};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::audit::{self, AuditEvent, AuditKind, Outcome};
use crate::broker::{self, BrokerKey, ReleaseError, TokenKeys};
use crate::instance::{Instance, InstanceSettings, PublishedKey, token_key_id};
use crate::metrics::Metrics;
use crate::migrate::{self, BundleError, SecretText};
use crate::reference::check_reference_values;
use crate::store::{
    BrokerKeyRow, CredentialRow, InstanceKeyRow, InstanceRow, PolicyVersionRow, Store, StoreError,
    TenantRow,
};
use crate::{
    AttestError, CertificateAuthority, CollateralCache, CollateralFetcher, FetchError, Fetching,
    NonceError, config,
};

/// Content type of a secret sealed to the service key.
const SEALED_SECRET: &str = "application/vnd.cloister.service-secret";
/// A checkpoint is signed after this many audit entries.
pub const CHECKPOINT_EVERY: i64 = 64;

/// Why a request to the service failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A bearer token was given but is not one of this service's.
    #[error("the bearer token is not valid for this service")]
    Unauthenticated,
    /// The caller may not do this (and the resource is not the caller's concern).
    #[error("{0}")]
    Denied(#[from] cloister_policy::Denied),
    /// No such thing, or not one the caller may see.
    #[error("{0} not found")]
    NotFound(String),
    /// A name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// Attestation refused.
    #[error(transparent)]
    Attest(#[from] AttestError),
    /// Key release refused.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// An enclave's attestation result or signed statement did not verify.
    #[error("{0}")]
    Token(String),
    /// A migration bundle was refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The key file is not the one this database was created with.
    #[error(
        "the service key (id {ours}) is not the key this database was created with (id {theirs}); \
         start the service with that key file"
    )]
    WrongServiceKey {
        /// This process's key id.
        ours: String,
        /// The database's.
        theirs: String,
    },
    /// The database failed.
    #[error("the database failed: {0}")]
    Store(StoreError),
    /// Something that is not the caller's fault.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => ServiceError::Conflict(message),
            StoreError::NotFound(what) => ServiceError::NotFound(what),
            other => ServiceError::Store(other),
        }
    }
}

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A cached, ready instance and what it was built from.
struct Cached {
    revision: i64,
    tenant_id: String,
    instance: Arc<Instance>,
}

/// The service.
pub struct Service {
    store: Store,
    service_key: RecipientSecretKey,
    audit_key: SigningKey,
    cache: RwLock<HashMap<String, Arc<Cached>>>,
    collateral: CollateralCache,
    last_checkpoint: AtomicI64,
    metrics: Metrics,
    fetching: Option<Fetching>,
}

impl Service {
    /// Opens the service on `store` with its key. The first start on a database records the
    /// key's id and creates the audit checkpoint key; later starts must bring the same key.
    pub async fn open(store: Store, service_key: RecipientSecretKey) -> Result<Self> {
        let ours = service_key.key_id().to_hex();
        let theirs = store.meta_insert_if_absent("service_key_id", &ours).await?;
        if theirs != ours {
            return Err(ServiceError::WrongServiceKey { ours, theirs });
        }
        // The audit checkpoint key is made once per database (by whichever replica starts first).
        let stored = match store.meta("audit_key_sealed").await? {
            Some(stored) => stored,
            None => {
                let fresh = SigningKey::generate();
                let sealed = seal_secret(&service_key.public_key(), fresh.to_text().as_bytes())?;
                let sealed = Base64Url::encode(&sealed).to_string();
                store.meta_insert_if_absent("audit_key_sealed", &sealed).await?
            }
        };
        let stored = Base64Url::parse(&stored)
            .map_err(|_| ServiceError::Internal("the stored audit key is not base64url".into()))?;
        let text = unseal_secret(&service_key, stored.as_bytes())?;
        let audit_key = SigningKey::from_text(&String::from_utf8_lossy(&text))
            .map_err(|e| ServiceError::Internal(format!("the stored audit key: {e}")))?;
        store.meta_insert_if_absent("audit_public_key", &audit_key.public_key().to_text()).await?;
        let last_checkpoint = store.checkpoints().await?.last().map_or(0, |c| c.seq);
        Ok(Service {
            store,
            service_key,
            audit_key,
            cache: RwLock::new(HashMap::new()),
            collateral: CollateralCache::new(),
            last_checkpoint: AtomicI64::new(last_checkpoint),
            metrics: Metrics::new(),
            fetching: None,
        })
    }

    /// Lets [`Service::prefetch`] fetch missing vendor collateral through `fetcher`.
    #[must_use]
    pub fn with_fetcher(mut self, fetcher: Box<dyn CollateralFetcher>) -> Self {
        self.fetching = Some(Fetching::new(fetcher));
        self
    }

    /// Fetches the vendor collateral `evidence` needs, only when it answers a live challenge of
    /// instance `id` (nobody makes the service call its vendors without a nonce it issued).
    /// Returns what could not be fetched; verification then names what is missing.
    pub async fn prefetch(
        &self,
        id: &str,
        evidence: &UnifiedEvidence,
        now: i64,
    ) -> Vec<FetchError> {
        let Some(fetching) = &self.fetching else { return Vec::new() };
        match self.nonce_is_live(id, &evidence.runtime_data.nonce, now).await {
            Ok(true) => fetching.prefetch(&self.collateral, evidence, now as u64).await,
            _ => Vec::new(),
        }
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The vendor collateral cache shared by every instance.
    pub fn collateral(&self) -> &CollateralCache {
        &self.collateral
    }

    /// The key that verifies audit checkpoints.
    pub fn audit_public_key(&self) -> VerifyingKey {
        self.audit_key.public_key()
    }

    /// `GET /v1/service-key`: where to seal migration bundles for this service. The service does
    /// not run in a TEE yet, so the document carries no attestation.
    pub fn service_key_document(&self) -> ServiceKeyDocument {
        let public = self.service_key.public_key();
        ServiceKeyDocument {
            public_key: public.to_text(),
            key_id: Hex(public.key_id().0.to_vec()),
            attestation: None,
        }
    }

    // ---- credentials -------------------------------------------------------------------

    /// Registers `token` as an operator credential unless it already is one.
    pub async fn ensure_operator_token(&self, token: &str, now: i64) -> Result<()> {
        let row = CredentialRow {
            token_hash: token_hash(token),
            role: "operator".to_owned(),
            tenant_id: None,
            created_at: now,
        };
        match self.store.add_credential(&row).await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// Who presents `bearer` (none: [`Principal::Anonymous`]). A token that is not ours is an
    /// error, never a silent downgrade to anonymous.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal> {
        let Some(token) = bearer else { return Ok(Principal::Anonymous) };
        let Some(row) = self.store.credential(&token_hash(token)).await? else {
            return Err(ServiceError::Unauthenticated);
        };
        match (row.role.as_str(), row.tenant_id) {
            ("operator", _) => Ok(Principal::Operator),
            ("tenant", Some(tenant)) => Ok(Principal::TenantAdmin { tenant }),
            _ => Err(ServiceError::Unauthenticated),
        }
    }

    // ---- tenants -----------------------------------------------------------------------

    /// Creates a tenant and its first admin token.
    pub async fn create_tenant(
        &self,
        who: &Principal,
        request: &CreateTenant,
        now: i64,
    ) -> Result<TenantCreated> {
        self.allow(who, Action::CreateTenant, Resource::Service, "tenants", now).await?;
        check_name("tenant", &request.name)?;
        let tenant = TenantRow { id: new_id("tn"), name: request.name.clone(), created_at: now };
        self.store.create_tenant(&tenant).await?;
        let token = new_token();
        self.store
            .add_credential(&CredentialRow {
                token_hash: token_hash(&token),
                role: "tenant".to_owned(),
                tenant_id: Some(tenant.id.clone()),
                created_at: now,
            })
            .await?;
        self.record(
            who,
            AuditKind::TenantCreated,
            Some(&tenant.id),
            &tenant.id,
            Outcome::Success,
            serde_json::json!({ "name": tenant.name }),
            now,
        )
        .await?;
        Ok(TenantCreated { tenant: tenant_view(tenant), token })
    }

    /// Every tenant.
    pub async fn list_tenants(&self, who: &Principal, now: i64) -> Result<Vec<TenantView>> {
        self.allow(who, Action::ListTenants, Resource::Service, "tenants", now).await?;
        Ok(self.store.tenants().await?.into_iter().map(tenant_view).collect())
    }

    // ---- instances ---------------------------------------------------------------------

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
        let public = self.service_key.public_key();
        let ca = CertificateAuthority::generate(&request.name, now as u64)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let token_key = SigningKey::generate();
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
        let token_key = SigningKey::generate();
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

    /// Deletes the instance and destroys its keys: its tokens stop verifying here.
    pub async fn delete_instance(&self, who: &Principal, id: &str, now: i64) -> Result<()> {
        let tenant = self.owned_instance(who, Action::DeleteInstance, id, now).await?;
        self.store.delete_instance(id).await?;
        self.forget(id);
        self.record(
            who,
            AuditKind::InstanceDeleted,
            Some(&tenant),
            id,
            Outcome::Success,
            serde_json::json!({}),
            now,
        )
        .await
    }

    // ---- migration ---------------------------------------------------------------------

    /// Seals the whole instance to the target service's key. A target whose document carries
    /// an attestation must pass this instance's own appraisal; one without must be allowed
    /// explicitly.
    pub async fn export_instance(
        &self,
        who: &Principal,
        id: &str,
        target: &ServiceKeyDocument,
        allow_unattested: bool,
        now: i64,
    ) -> Result<Vec<u8>> {
        let tenant = self.owned_instance(who, Action::ExportInstance, id, now).await?;
        let instance = self.instance(id).await?.instance.clone();
        let check = migrate::check_target(
            target,
            instance.anchors(),
            instance.policy(),
            &instance.reference_values,
            allow_unattested,
            now,
        );
        let check = match check {
            Ok(check) => check,
            Err(error) => {
                let detail =
                    serde_json::json!({ "target": target.key_id, "reason": error.to_string() });
                self.record(
                    who,
                    AuditKind::InstanceExported,
                    Some(&tenant),
                    id,
                    Outcome::Refused,
                    detail,
                    now,
                )
                .await?;
                return Err(error.into());
            }
        };
        let bundle = self.bundle(id, now).await?;
        let target_key = RecipientPublicKey::from_text(&target.public_key)
            .map_err(|e| ServiceError::BadRequest(format!("the target's public key: {e}")))?;
        let sealed = migrate::seal_bundle(&bundle, &target_key)?;
        self.record(
            who,
            AuditKind::InstanceExported,
            Some(&tenant),
            id,
            Outcome::Success,
            serde_json::json!({ "target": target.key_id, "target_check": format!("{check:?}"),
                                "bundle_sha256": hex::encode(Sha256::digest(&sealed)) }),
            now,
        )
        .await?;
        Ok(sealed)
    }

    /// Opens a bundle sealed to this service and restores the instance into the caller's tenant,
    /// with the same id, policy history and keys: what it issued before still verifies.
    pub async fn import_instance(
        &self,
        who: &Principal,
        sealed: &[u8],
        now: i64,
    ) -> Result<InstanceView> {
        let tenant = self.tenant_of(who, Action::ImportInstance, now).await?;
        let bundle = match migrate::open_bundle(sealed, &self.service_key) {
            Ok(bundle) => bundle,
            Err(error) => {
                let detail = serde_json::json!({ "reason": error.to_string(),
                    "bundle_sha256": hex::encode(Sha256::digest(sealed)) });
                self.record(
                    who,
                    AuditKind::InstanceImported,
                    Some(&tenant),
                    "-",
                    Outcome::Refused,
                    detail,
                    now,
                )
                .await?;
                return Err(error.into());
            }
        };
        let (instance, versions, keys) = self.rows_from_bundle(&bundle, &tenant, now)?;
        self.store.import_instance(&instance, &versions, &keys).await?;
        self.forget(&instance.id);
        self.record(
            who,
            AuditKind::InstanceImported,
            Some(&tenant),
            &instance.id,
            Outcome::Success,
            serde_json::json!({ "source": bundle.source_service, "policy_versions": versions.len(),
                                "token_keys": keys.len() }),
            now,
        )
        .await?;
        self.view(&instance.id).await
    }

    // ---- attestation -------------------------------------------------------------------

    /// A fresh single-use challenge for instance `id`.
    ///
    /// A cached instance is used without checking its revision (settings never change after
    /// creation); the nonce's foreign key refuses an instance deleted meanwhile.
    pub async fn challenge(&self, id: &str, now: i64) -> Result<ChallengeResponse> {
        let cached = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        let settings = match cached {
            Some(cached) => cached.instance.settings(),
            None => self.instance(id).await?.instance.settings(),
        };
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let nonce = Base64Url::encode(&bytes).to_string();
        let expires_at = now + settings.nonce_ttl_secs as i64;
        if let Err(error) = self.store.insert_nonce(&nonce, id, expires_at).await {
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

    /// Consumes the nonce (so a replay fails even after a refusal), verifies the evidence with
    /// the instance's anchors, appraises it with its policy and issues the result. Every
    /// decision is audited.
    pub async fn attest(
        &self,
        id: &str,
        request: &AttestRequest,
        now: i64,
    ) -> Result<AttestResponse> {
        let cached = self.instance(id).await?;
        let result = self.attest_with(&cached.instance, id, request, now).await;
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
        Ok(result?)
    }

    async fn attest_with(
        &self,
        instance: &Instance,
        id: &str,
        request: &AttestRequest,
        now: i64,
    ) -> Result<AttestResponse, AttestError> {
        let evidence = &request.evidence;
        let expiry = self
            .store
            .consume_nonce(&evidence.runtime_data.nonce, id)
            .await
            .map_err(|e| AttestError::Issue(format!("the nonce store failed: {e}")))?
            .ok_or(NonceError::Unknown)?;
        if now > expiry {
            return Err(NonceError::Expired { expired_at: expiry as u64 }.into());
        }
        let cached = self.collateral.snapshot_by_tee();
        let verified =
            cloister_verify::verify_with_collateral(evidence, instance.anchors(), &cached, now)?;
        instance.appraise_and_issue(request, &verified, now as u64)
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

    /// Verifies a statement an enclave attested by instance `id` sends: its EAR token with the
    /// instance's keys, and the statement (`what`) with the receipt key the token's `cpu0` binds.
    /// Returns the instance's tenant, the enclave's appraisal and the statement.
    async fn enclave_statement<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        id: &str,
        request: &RecordJob,
        what: &'static str,
        now: i64,
    ) -> Result<(String, cloister_types::EarAppraisal, T)> {
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
            .verify::<EarBody>("EAR attestation result", &request.ear, now as u64)
            .map_err(|e| refused(e.to_string()))?
            .claims;
        let cpu0 = ear
            .submods
            .remove("cpu0")
            .ok_or_else(|| refused("the EAR token has no cpu0".into()))?;
        let receipt_key = VerifyingKey::from_text(&cpu0.runtime_data.receipt_pk)
            .map_err(|e| refused(format!("the enclave's receipt key: {e}")))?;
        let statement = receipt_key
            .verify::<T>(what, &request.statement, now as u64)
            .map_err(|e| refused(format!("the {what} statement: {e}")))?
            .claims;
        Ok((cached.tenant_id.clone(), cpu0, statement))
    }

    /// Records, in the audit log, that an enclave attested by instance `id` authorised a job:
    /// the statement must be signed by the receipt key bound in the enclave's EAR token, and the
    /// token must verify with the instance's keys. Workers run a job only once it is recorded.
    pub async fn record_job(&self, id: &str, request: &RecordJob, now: i64) -> Result<JobRecorded> {
        let (tenant_id, cpu0, statement) =
            self.enclave_statement::<JobAuthorized>(id, request, "job authorization", now).await?;
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
        Ok(JobRecorded { audit_seq: self.append(&event, now).await? })
    }

    /// The privacy ledger: charges what a training job an enclave attested by instance `id` is
    /// about to run spends on each of its data sets, composed with every earlier charge on the
    /// same sealed data set (by any instance), and refuses, recording nothing, when the total
    /// would pass a data owner's budget. Kept here, not on the compute provider's disk, so that
    /// it cannot be rolled back there. Charges and refusals are audited.
    pub async fn charge_privacy(
        &self,
        id: &str,
        request: &RecordJob,
        now: i64,
    ) -> Result<PrivacyChargeOutcome> {
        let (tenant_id, cpu0, statement) = self
            .enclave_statement::<PrivacyChargeStatement>(id, request, "privacy charge", now)
            .await?;
        if statement.charges.is_empty() {
            return Err(ServiceError::BadRequest("the statement charges no data set".into()));
        }
        for charge in &statement.charges {
            check_charge_grant(charge, &statement.job_id, &cpu0.claims.measurement, now)?;
        }
        let outcome =
            self.store.charge_privacy(&statement.job_id, id, &statement.charges, now).await?;
        let charges: Vec<_> = statement
            .charges
            .iter()
            .map(|c| serde_json::json!({ "object_id": c.input.object_id, "object_sha256": c.input.sha256, "owner": c.input.owner, "budget": c.budget }))
            .collect();
        let mut event = AuditEvent {
            kind: AuditKind::PrivacyCharged,
            actor: format!("enclave:{}", cpu0.runtime_data.receipt_pk),
            tenant_id: Some(tenant_id),
            subject: statement.job_id.clone(),
            outcome: Outcome::Success,
            detail: serde_json::json!({ "instance": id, "charges": charges }),
        };
        match outcome {
            Ok(accounts) => {
                event.detail["accounts"] = serde_json::json!(accounts);
                let audit_seq = self.append(&event, now).await?;
                Ok(PrivacyChargeOutcome::Charged { accounts, audit_seq })
            }
            Err((object_id, reason)) => {
                event.outcome = Outcome::Refused;
                event.detail["refused"] =
                    serde_json::json!({ "object_id": object_id, "reason": reason });
                let audit_seq = self.append(&event, now).await?;
                Ok(PrivacyChargeOutcome::Refused { object_id, reason, audit_seq })
            }
        }
    }

    // ---- key broker --------------------------------------------------------------------

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
    /// Every request, granted or refused, is audited.
    pub async fn release_key(
        &self,
        request: &KeyReleaseRequest,
        now: i64,
    ) -> Result<KeyReleaseResponse> {
        let key_id = request.key_id.to_string();
        let Some(row) = self.store.broker_key_by_key_id(&key_id).await? else {
            let error = ServiceError::NotFound(format!("broker key with key id {key_id}"));
            let detail = serde_json::json!({ "key_id": key_id, "context": request.context,
                                             "reason": error.to_string() });
            self.record(
                &Principal::Anonymous,
                AuditKind::KeyReleased,
                None,
                &format!("key_id:{key_id}"),
                Outcome::Refused,
                detail,
                now,
            )
            .await?;
            return Err(error);
        };
        let result = self.release_with(&row, request, now).await;
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
        self.record(
            &Principal::Anonymous,
            AuditKind::KeyReleased,
            Some(&row.tenant_id),
            &row.id,
            outcome,
            detail,
            now,
        )
        .await?;
        Ok(result?.1)
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
        // The token names its signing key; find the accepted instance that published it.
        let kid = cloister_sign::peek_key_id(&request.ear).unwrap_or_default();
        let mut issuer = None;
        for id in &instances {
            if let Ok(cached) = self.instance(id).await
                && cached.instance.token_keys(now as u64).any(|k| k.kid == kid)
            {
                issuer = Some((id.clone(), cached));
                break;
            }
        }
        let (instance_id, cached) = match issuer {
            Some(found) => found,
            // Let the broker say why (not an accepted instance, unknown key) in its own words.
            None => match instances.first() {
                Some(id) => (id.clone(), self.instance(id).await?),
                None => return Err(ServiceError::Internal("broker key lists no instance".into())),
            },
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
        let response = broker::release(&instance_id, &keys, &key, request, now as u64)?;
        Ok((instance_id, response))
    }

    // ---- audit -------------------------------------------------------------------------

    /// Audit records: all for the operator, the tenant's own for a tenant admin.
    pub async fn audit_records(&self, who: &Principal, now: i64) -> Result<Vec<AuditRecordView>> {
        let rows = match who {
            Principal::Operator => {
                self.allow(who, Action::ReadAudit, Resource::Service, "the audit log", now).await?;
                self.store.audit_rows(None).await?
            }
            _ => {
                let tenant = self.tenant_of(who, Action::ReadAudit, now).await?;
                self.store.audit_rows(Some(&tenant)).await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|row| AuditRecordView {
                seq: row.seq,
                at: row.at,
                kind: row.kind,
                actor: row.actor,
                tenant_id: row.tenant_id,
                subject: row.subject,
                outcome: row.outcome,
                detail: serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::Null),
                hash: row.hash,
            })
            .collect())
    }

    /// Signs a checkpoint over the last entry now (on shutdown, so the tail is covered).
    pub async fn checkpoint(&self, now: i64) -> Result<()> {
        let Some(last) = self.store.audit_last().await? else { return Ok(()) };
        if last.seq <= self.last_checkpoint.load(Ordering::Relaxed) {
            return Ok(());
        }
        let checkpoint = audit::sign_checkpoint(&self.audit_key, &last, now);
        match self.store.add_checkpoint(&checkpoint).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(other) => return Err(other.into()),
        }
        self.last_checkpoint.fetch_max(last.seq, Ordering::Relaxed);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        who: &Principal,
        kind: AuditKind,
        tenant_id: Option<&str>,
        subject: &str,
        outcome: Outcome,
        detail: serde_json::Value,
        now: i64,
    ) -> Result<()> {
        let event = AuditEvent {
            kind,
            actor: who.to_string(),
            tenant_id: tenant_id.map(str::to_owned),
            subject: subject.to_owned(),
            outcome,
            detail,
        };
        self.append(&event, now).await.map(drop)
    }

    /// Appends `event`, signing a checkpoint when one is due; returns the entry's seq.
    async fn append(&self, event: &AuditEvent, now: i64) -> Result<i64> {
        let row = self.store.append_audit(|last| audit::next_row(last, event, now)).await?;
        if audit::checkpoint_due(
            self.last_checkpoint.load(Ordering::Relaxed),
            row.seq,
            CHECKPOINT_EVERY,
        ) {
            self.checkpoint(now).await?;
        }
        Ok(row.seq)
    }

    // ---- helpers -----------------------------------------------------------------------

    /// Authorizes, auditing a denial.
    async fn allow(
        &self,
        who: &Principal,
        action: Action,
        resource: Resource<'_>,
        subject: &str,
        now: i64,
    ) -> Result<()> {
        if let Err(denied) = authorize(who, action, resource) {
            let tenant = match resource {
                Resource::OwnedBy(owner) => Some(owner.to_owned()),
                _ => None,
            };
            self.record(
                who,
                AuditKind::AccessDenied,
                tenant.as_deref(),
                subject,
                Outcome::Refused,
                serde_json::json!({ "action": format!("{action:?}") }),
                now,
            )
            .await?;
            // Another tenant's resource is indistinguishable from a missing one.
            return Err(match resource {
                Resource::OwnedBy(_) => ServiceError::NotFound(subject.to_owned()),
                _ => ServiceError::Denied(denied),
            });
        }
        Ok(())
    }

    /// The caller's tenant, for actions on its own scope.
    async fn tenant_of(&self, who: &Principal, action: Action, now: i64) -> Result<String> {
        self.allow(who, action, Resource::OwnTenant, "tenant scope", now).await?;
        match who {
            Principal::TenantAdmin { tenant } => Ok(tenant.clone()),
            _ => Err(ServiceError::Internal("authorized a tenant action without a tenant".into())),
        }
    }

    /// Checks that `who` may do `action` on instance `id`; returns its tenant.
    async fn owned_instance(
        &self,
        who: &Principal,
        action: Action,
        id: &str,
        now: i64,
    ) -> Result<String> {
        let row = self.instance_row(id).await?;
        self.allow(who, action, Resource::OwnedBy(&row.tenant_id), &format!("instance {id}"), now)
            .await?;
        Ok(row.tenant_id)
    }

    async fn owned_key(&self, who: &Principal, id: &str, now: i64) -> Result<BrokerKeyRow> {
        let row = self
            .store
            .broker_key(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("key {id}")))?;
        self.allow(
            who,
            Action::ManageKeys,
            Resource::OwnedBy(&row.tenant_id),
            &format!("key {id}"),
            now,
        )
        .await?;
        Ok(row)
    }

    async fn instance_row(&self, id: &str) -> Result<InstanceRow> {
        self.store
            .instance(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("instance {id}")))
    }

    fn forget(&self, id: &str) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The ready instance, rebuilt when its revision changed (on any replica).
    async fn instance(&self, id: &str) -> Result<Arc<Cached>> {
        let Some(revision) = self.store.instance_revision(id).await? else {
            self.forget(id);
            return Err(ServiceError::NotFound(format!("instance {id}")));
        };
        if let Some(cached) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(id)
            && cached.revision == revision
        {
            return Ok(cached.clone());
        }
        let cached = Arc::new(self.build(id).await?);
        self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), cached.clone());
        Ok(cached)
    }

    async fn build(&self, id: &str) -> Result<Cached> {
        let row = self.instance_row(id).await?;
        let policy_row =
            self.store.policy_version(id, row.policy_version).await?.ok_or_else(|| {
                ServiceError::Internal(format!(
                    "instance {id} has no policy version {}",
                    row.policy_version
                ))
            })?;
        let policy = compile_policy(id, row.policy_version, &policy_row.rego)
            .map_err(|e| ServiceError::Internal(format!("stored policy of {id}: {e}")))?;
        let anchors_spec: TrustAnchorSpec = from_json(&row.trust_anchors, "trust anchors")?;
        let anchors = config::trust_anchors(&anchors_spec)
            .map_err(|e| ServiceError::Internal(format!("stored trust anchors of {id}: {e}")))?;
        let reference_values: serde_json::Value =
            from_json(&row.reference_values, "reference values")?;
        let settings: InstanceSettings = from_json(&row.settings, "settings")?;
        let ca_key = unseal_secret(&self.service_key, &row.ca_key_sealed)?;
        let ca = CertificateAuthority::from_pem(
            &row.ca_certificate_pem,
            &String::from_utf8_lossy(&ca_key),
        )
        .map_err(|e| ServiceError::Internal(format!("stored CA of {id}: {e}")))?;
        let mut signer = None;
        let mut retired = Vec::new();
        for key in self.store.instance_keys(id).await? {
            if key.retired_at.is_none() {
                let text = unseal_secret(&self.service_key, &key.secret_sealed)?;
                let signing =
                    SigningKey::from_text(&String::from_utf8_lossy(&text)).map_err(|e| {
                        ServiceError::Internal(format!("stored token key of {id}: {e}"))
                    })?;
                signer = Some(signing);
            } else {
                let jwk: serde_json::Value = from_json(&key.public_jwk, "token key")?;
                let public = VerifyingKey::from_jwk(&jwk).map_err(|e| {
                    ServiceError::Internal(format!("stored token key of {id}: {e}"))
                })?;
                retired.push(PublishedKey {
                    kid: key.kid,
                    key: public,
                    keep_until: key.keep_until,
                });
            }
        }
        let signer = signer.ok_or_else(|| {
            ServiceError::Internal(format!("instance {id} has no current token key"))
        })?;
        let instance = Instance::new(
            id,
            &row.name,
            policy,
            reference_values,
            anchors,
            signer,
            retired,
            ca,
            settings,
        );
        Ok(Cached {
            revision: row.revision,
            tenant_id: row.tenant_id,
            instance: Arc::new(instance),
        })
    }

    async fn view(&self, id: &str) -> Result<InstanceView> {
        let row = self.instance_row(id).await?;
        let versions = self.store.policy_versions(id).await?;
        let keys = self.store.instance_keys(id).await?;
        Ok(InstanceView {
            id: row.id.clone(),
            tenant_id: row.tenant_id,
            name: row.name,
            policy_id: format!("{}@v{}", row.id, row.policy_version),
            policy_version: row.policy_version,
            policy_versions: versions.iter().map(policy_view).collect(),
            reference_values: from_json(&row.reference_values, "reference values")?,
            trust_anchors: from_json(&row.trust_anchors, "trust anchors")?,
            settings: from_json(&row.settings, "settings")?,
            ca_certificate_pem: row.ca_certificate_pem,
            token_keys: keys
                .into_iter()
                .map(|k| TokenKeyView {
                    kid: k.kid,
                    created_at: k.created_at,
                    retired_at: k.retired_at,
                    keep_until: k.keep_until,
                })
                .collect(),
            created_at: row.created_at,
        })
    }

    fn key_row(&self, id: &str, key: &SigningKey, now: i64) -> Result<InstanceKeyRow> {
        let public = key.public_key();
        let kid = token_key_id(&public);
        Ok(InstanceKeyRow {
            instance_id: id.to_owned(),
            public_jwk: public.to_jwk(&kid).to_string(),
            kid,
            secret_sealed: seal_secret(&self.service_key.public_key(), key.to_text().as_bytes())?,
            created_at: now,
            retired_at: None,
            keep_until: None,
        })
    }

    async fn bundle(&self, id: &str, now: i64) -> Result<migrate::InstanceBundle> {
        let row = self.instance_row(id).await?;
        let policies = self
            .store
            .policy_versions(id)
            .await?
            .into_iter()
            .map(|p| migrate::BundledPolicy {
                version: p.version,
                rego: p.rego,
                builtin: p.builtin,
                created_at: p.created_at,
            })
            .collect();
        let mut token_keys = Vec::new();
        for key in self.store.instance_keys(id).await? {
            let secret = unseal_secret(&self.service_key, &key.secret_sealed)?;
            token_keys.push(migrate::BundledTokenKey {
                kid: key.kid,
                public_jwk: from_json(&key.public_jwk, "token key")?,
                secret: SecretText::new(Zeroizing::new(
                    String::from_utf8_lossy(&secret).into_owned(),
                )),
                created_at: key.created_at,
                retired_at: key.retired_at,
                keep_until: key.keep_until,
            });
        }
        let ca_key = unseal_secret(&self.service_key, &row.ca_key_sealed)?;
        Ok(migrate::InstanceBundle {
            format: 1,
            exported_at: now,
            source_service: Hex(self.service_key.public_key().key_id().0.to_vec()),
            instance: migrate::BundledInstance {
                id: row.id,
                name: row.name,
                settings: from_json(&row.settings, "settings")?,
                reference_values: from_json(&row.reference_values, "reference values")?,
                trust_anchors: from_json(&row.trust_anchors, "trust anchors")?,
                policy_version: row.policy_version,
            },
            policies,
            token_keys,
            ca: migrate::BundledCa {
                certificate_pem: row.ca_certificate_pem,
                key_pem: SecretText::new(Zeroizing::new(
                    String::from_utf8_lossy(&ca_key).into_owned(),
                )),
            },
        })
    }

    #[allow(clippy::type_complexity)]
    fn rows_from_bundle(
        &self,
        bundle: &migrate::InstanceBundle,
        tenant: &str,
        now: i64,
    ) -> Result<(InstanceRow, Vec<PolicyVersionRow>, Vec<InstanceKeyRow>)> {
        let public = self.service_key.public_key();
        let id = &bundle.instance.id;
        let instance = InstanceRow {
            id: id.clone(),
            tenant_id: tenant.to_owned(),
            name: bundle.instance.name.clone(),
            revision: 1,
            policy_version: bundle.instance.policy_version,
            reference_values: bundle.instance.reference_values.to_string(),
            trust_anchors: bundle.instance.trust_anchors.to_string(),
            settings: bundle.instance.settings.to_string(),
            ca_certificate_pem: bundle.ca.certificate_pem.clone(),
            ca_key_sealed: seal_secret(&public, bundle.ca.key_pem.expose().as_bytes())?,
            created_at: now,
        };
        let versions = bundle
            .policies
            .iter()
            .map(|p| PolicyVersionRow {
                instance_id: id.clone(),
                version: p.version,
                rego: p.rego.clone(),
                builtin: p.builtin.clone(),
                created_at: p.created_at,
            })
            .collect();
        let mut keys = Vec::new();
        for key in &bundle.token_keys {
            keys.push(InstanceKeyRow {
                instance_id: id.clone(),
                kid: key.kid.clone(),
                public_jwk: key.public_jwk.to_string(),
                secret_sealed: seal_secret(&public, key.secret.expose().as_bytes())?,
                created_at: key.created_at,
                retired_at: key.retired_at,
                keep_until: key.keep_until,
            });
        }
        Ok((instance, versions, keys))
    }
}

/// The stored form of a bearer token: lowercase hex SHA-256 (tokens are 256-bit random, so a
/// plain hash cannot be brute-forced).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh bearer token: `clt_` and 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("clt_{}", Base64Url::encode(&bytes))
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "the {what} name {name:?} must be 1 to 64 characters of a-z, 0-9, '-', '_' and '.'"
        )))
    }
}

fn policy_text(spec: &PolicySpec) -> Result<(String, Option<String>)> {
    match spec {
        PolicySpec::Builtin(name) => AppraisalPolicy::builtin_rego(name)
            .map(|rego| (rego.to_owned(), Some(name.clone())))
            .ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "unknown built-in policy {name:?} (use \"default\" or \"dev-sim\")"
                ))
            }),
        PolicySpec::Rego(rego) => Ok((rego.clone(), None)),
    }
}

fn compile_policy(id: &str, version: i64, rego: &str) -> Result<AppraisalPolicy> {
    let version = u32::try_from(version)
        .map_err(|_| ServiceError::Internal(format!("policy version {version} out of range")))?;
    AppraisalPolicy::new(id, version, rego)
        .map_err(|e| ServiceError::BadRequest(format!("the policy does not compile: {e}")))
}

fn seal_secret(to: &RecipientPublicKey, secret: &[u8]) -> Result<Vec<u8>> {
    let metadata = Metadata { content_type: SEALED_SECRET.to_owned(), ..Metadata::default() };
    cloister_seal::seal_to_vec(std::slice::from_ref(to), &metadata, secret)
        .map_err(|e| ServiceError::Internal(format!("sealing a secret to the service key: {e}")))
}

fn unseal_secret(key: &RecipientSecretKey, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    cloister_seal::open_to_vec(key, sealed).map(|(_, plain)| plain).map_err(|e| {
        ServiceError::Internal(format!("a stored secret does not open with the service key: {e}"))
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| ServiceError::Internal(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ServiceError::Internal(format!("stored {what}: {e}")))
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn tenant_view(row: TenantRow) -> TenantView {
    TenantView { id: row.id, name: row.name, created_at: row.created_at }
}

fn policy_view(row: &PolicyVersionRow) -> PolicyVersionView {
    PolicyVersionView {
        version: row.version,
        builtin: row.builtin.clone(),
        rego_sha256: sha256_hex(&row.rego),
        created_at: row.created_at,
        rego: None,
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

/// Checks that a privacy charge comes with its data owner's grant for this job and data set,
/// allowing the charging enclave's `measurement` and setting the charge's budget: only then may
/// the charge count against (or exhaust) the owner's budget.
fn check_charge_grant(
    charge: &cloister_types::job::PrivacyCharge,
    job_id: &str,
    measurement: &Hex,
    now: i64,
) -> Result<()> {
    let input = &charge.input;
    let refused = |why: String| {
        ServiceError::Token(format!("the privacy charge for data set {}: {why}", input.object_id))
    };
    let owner = VerifyingKey::from_text(&input.owner)
        .map_err(|e| refused(format!("the owner key: {e}")))?;
    let grant = owner
        .verify::<cloister_types::Grant>("grant", &charge.grant, now as u64)
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
    Ok(())
}
