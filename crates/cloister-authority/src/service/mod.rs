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
use cloister_sign::{AnySigningKey, AnyVerifyingKey, SigningKey, VerifyingKey};
use cloister_types::api::{
    Answer, AttestRequest, AttestResponse, ChallengeResponse, CheckpointRef, DatasetRegistered,
    DatasetRegistration, GrantRevocation, GrantRevoked, InstanceInfo, JobAuthorized,
    KeyReleaseRequest, KeyReleaseResponse, PrivacyChargeOutcome, PrivacyChargeStatement, RecordJob,
    RegisterDataset, RequestReservation, RevokeGrant, SERVICE_KEY_FIELD, ServiceAnswer,
    ServiceKeyDocument, SignedAnswer, UsageMeter, UsageReservation,
};
use cloister_types::manage::{
    AuditRecordView, CreateInstance, CreateTenant, InstanceView, KeyView, PolicySpec,
    PolicyUpdated, PolicyVersionView, RegisterKey, TenantCreated, TenantView, TokenKeyView,
    TrustAnchorSpec,
};
use cloister_types::{Base64Url, EarBody, Grant, Hex, RuntimeData, UnifiedEvidence};
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
    BrokerKeyRow, ChargeJob, Charged, CredentialRow, DatasetRow, InstanceKeyRow, InstanceRow,
    PolicyVersionRow, RevokedGrantRow, Store, StoreError, TenantRow,
};
use crate::{
    AttestError, CertificateAuthority, CollateralCache, CollateralFetcher, FetchError, Fetching,
    Issued, NonceError, config,
};

mod attestation;
mod audit_log;
mod enclaves;
mod instances;
mod keys;
mod ledger;
mod migration;
mod owners;
mod tenants;
mod usage;

/// Content type of a secret sealed to the service key.
const SEALED_SECRET: &str = "application/vnd.cloister.service-secret";
/// A checkpoint is signed after this many audit entries.
pub const CHECKPOINT_EVERY: i64 = 64;
/// Most live challenges per instance: beyond it, the ones that expire first are dropped.
pub const MAX_LIVE_NONCES: i64 = 1024;

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
    /// A data owner's sign-in was refused (its statement, the challenge or the session).
    #[error("{0}")]
    SignIn(String),
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
    /// The database's audit log is checkpointed with another key than this service's.
    #[error(
        "the audit log in this database is checkpointed by the service key with fingerprint \
         {stored}, not by this service's key ({ours}): the database belongs to another service \
         or its record of the key was altered; start the service with the key file that made it"
    )]
    WrongAuditKey {
        /// This service's signing-key fingerprint.
        ours: String,
        /// The key the database records.
        stored: String,
    },
    /// The audit log in the database is not the one this service wrote (the reason, with entry
    /// numbers, is for the operator's log only): no checkpoint is signed, and no answer that
    /// needs one is given, until an operator restores the database.
    #[error("the audit log was altered in the database ({0}); no checkpoint is signed")]
    AuditLogAltered(String),
    /// A request names an audit checkpoint (by seq) that this log does not hold.
    #[error(
        "the audit checkpoint at entry {0} that the request names is not in this service's log: \
         either the log was rolled back or altered in its database, or the request did not come \
         from an enclave this service gave that checkpoint"
    )]
    UnknownCheckpoint(i64),
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

/// The label under which the service's signing key is derived from its key file.
const SIGNING_KEY_LABEL: &str = "cloister attestation service signing key v1";

/// The service's signing key, derived from its key file (`cloister_sign::SigningKey::derive`):
/// every replica holding the key file has it, and nothing else does. It signs the answers
/// enclaves act on, audit checkpoints and instance bundles; its public key and fingerprint are
/// published at `GET /v1/service-key` and pinned by workers and auditors.
pub fn service_signing_key(service_key: &RecipientSecretKey) -> Result<SigningKey> {
    SigningKey::derive(service_key.to_text().as_bytes(), SIGNING_KEY_LABEL)
        .map_err(|e| ServiceError::Internal(format!("deriving the service signing key: {e}")))
}

/// The service.
pub struct Service {
    store: Store,
    service_key: RecipientSecretKey,
    signing_key: SigningKey,
    /// Lowercase hex SHA-256 of the signing key's public half.
    signing_fingerprint: String,
    trusted_bundle_sources: Vec<String>,
    cache: RwLock<HashMap<String, Arc<Cached>>>,
    collateral: CollateralCache,
    last_checkpoint: AtomicI64,
    metrics: Metrics,
    fetching: Option<Fetching>,
    /// The service's own evidence, when it runs in a TEE ([`Service::set_attestation`]).
    attestation: RwLock<Option<UnifiedEvidence>>,
    /// What collects fresh evidence of the service, and its TLS key's SPKI digest, when it runs
    /// in a TEE ([`Service::set_self_attester`]).
    self_attester: RwLock<Option<(SelfAttester, Hex)>>,
}

/// Collects evidence of the service over the given runtime data (the binary's TEE attester).
pub type SelfAttester =
    Arc<dyn Fn(&RuntimeData) -> std::result::Result<UnifiedEvidence, String> + Send + Sync>;

impl Service {
    /// Opens the service on `store` with its key. The first start on a database records the
    /// key's id and the public half of the signing key derived from it
    /// ([`service_signing_key`], which signs audit checkpoints); later starts must bring the
    /// same key, and a database whose recorded signing key is another is refused (its audit log
    /// was not checkpointed by this service).
    pub async fn open(store: Store, service_key: RecipientSecretKey) -> Result<Self> {
        let ours = service_key.key_id().to_hex();
        let theirs = store.meta_insert_if_absent("service_key_id", &ours).await?;
        if theirs != ours {
            return Err(ServiceError::WrongServiceKey { ours, theirs });
        }
        let signing_key = service_signing_key(&service_key)?;
        let public = signing_key.public_key().to_text();
        let stored = store.meta_insert_if_absent("audit_public_key", &public).await?;
        if stored != public {
            let stored = VerifyingKey::from_text(&stored)
                .map_or_else(|_| format!("{stored:?}"), |key| key.fingerprint_hex());
            return Err(ServiceError::WrongAuditKey {
                ours: signing_key.public_key().fingerprint_hex(),
                stored,
            });
        }
        let last_checkpoint = store.checkpoints().await?.last().map_or(0, |c| c.seq);
        Ok(Service {
            store,
            service_key,
            signing_fingerprint: signing_key.public_key().fingerprint_hex(),
            signing_key,
            trusted_bundle_sources: Vec::new(),
            cache: RwLock::new(HashMap::new()),
            collateral: CollateralCache::new(),
            last_checkpoint: AtomicI64::new(last_checkpoint),
            metrics: Metrics::new(),
            fetching: None,
            attestation: RwLock::new(None),
            self_attester: RwLock::new(None),
        })
    }

    /// The runtime data a service running in a TEE binds into its own evidence: its envelope
    /// public key (`hpke_pk`: what migration bundles are sealed to), its signing key
    /// (`receipt_pk`, and its fingerprint as `service_key_sha256`: what workers pin), and the
    /// SHA-256 of its TLS key's SPKI (empty without TLS). `label` stands where an enclave puts a
    /// challenge: nobody challenges the service, so its evidence is refreshed instead.
    pub fn attestation_runtime_data(&self, tls_spki_sha256: Hex, label: String) -> RuntimeData {
        let mut extra = std::collections::BTreeMap::new();
        extra.insert(
            SERVICE_KEY_FIELD.to_owned(),
            serde_json::Value::String(self.signing_fingerprint.clone()),
        );
        RuntimeData {
            nonce: label,
            hpke_pk: self.service_key.public_key().to_text(),
            tls_spki_sha256,
            receipt_pk: self.signing_key.public_key().to_text(),
            extra,
        }
    }

    /// Publishes `evidence` (over [`Self::attestation_runtime_data`]) in the service's key
    /// document, so an exporting service can appraise it; refused when it binds another key.
    pub fn set_attestation(&self, evidence: UnifiedEvidence) -> Result<()> {
        if evidence.runtime_data.hpke_pk != self.service_key.public_key().to_text() {
            return Err(ServiceError::BadRequest(
                "the service's evidence binds another public key than the service's".to_owned(),
            ));
        }
        *self.attestation.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(evidence);
        Ok(())
    }

    /// Lets the service collect fresh evidence of itself for a challenger
    /// ([`Self::challenged_service_document`]), with `attester` over runtime data naming its
    /// keys and the TLS key whose SPKI digest is `tls_spki_sha256`.
    pub fn set_self_attester(&self, attester: SelfAttester, tls_spki_sha256: Hex) {
        *self.self_attester.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((attester, tls_spki_sha256));
    }

    /// The service's key document with evidence collected now, binding the challenger's
    /// `nonce` (after [`SERVICE_CHALLENGE_PREFIX`]): what a worker pinning the service by
    /// measurement checks, so that a document replayed from before a build change is refused.
    /// Refused (409) by a service that does not run in a TEE.
    pub async fn challenged_service_document(&self, nonce: &str) -> Result<ServiceKeyDocument> {
        enclaves::check_request_nonce(nonce)?;
        let attester = self
            .self_attester
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                ServiceError::Conflict(
                    "this service does not run in a TEE (serve attestation --tee), so it cannot \
                     attest itself"
                        .to_owned(),
                )
            })?;
        let (attester, tls) = attester;
        let label = format!("{}{nonce}", cloister_types::api::SERVICE_CHALLENGE_PREFIX);
        let runtime_data = self.attestation_runtime_data(tls, label);
        let evidence = tokio::task::spawn_blocking(move || attester(&runtime_data))
            .await
            .map_err(|e| ServiceError::Internal(format!("the attesting task failed: {e}")))?
            .map_err(|e| {
                ServiceError::Internal(format!("collecting the service's evidence: {e}"))
            })?;
        let mut document = self.service_key_document();
        document.attestation = Some(evidence);
        Ok(document)
    }

    /// Trusts instance bundles signed by the services whose signing-key fingerprints (lowercase
    /// hex SHA-256, as `GET /v1/service-key` publishes them) are listed; bundles from any other
    /// source are refused on import.
    #[must_use]
    pub fn with_trusted_bundle_sources(mut self, fingerprints: Vec<String>) -> Self {
        self.trusted_bundle_sources =
            fingerprints.into_iter().map(|f| f.to_ascii_lowercase()).collect();
        self
    }

    /// The fingerprints of the services whose bundles this one imports.
    pub fn trusted_bundle_sources(&self) -> &[String] {
        &self.trusted_bundle_sources
    }

    /// The public half of the service's signing key ([`service_signing_key`]).
    pub fn signing_public_key(&self) -> VerifyingKey {
        self.signing_key.public_key()
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

    /// The key that verifies audit checkpoints: the service's signing key.
    pub fn audit_public_key(&self) -> VerifyingKey {
        self.signing_key.public_key()
    }

    /// `GET /v1/service-key`: where to seal migration bundles for this service, and the signing
    /// key (with its fingerprint) that signs its answers to enclaves, its audit checkpoints and
    /// the bundles it exports; with the service's own evidence when it runs in a TEE.
    pub fn service_key_document(&self) -> ServiceKeyDocument {
        let public = self.service_key.public_key();
        let signing = self.signing_key.public_key();
        ServiceKeyDocument {
            public_key: public.to_text(),
            key_id: Hex(public.key_id().0.to_vec()),
            signing_key: signing.to_text(),
            signing_key_sha256: Hex(signing.fingerprint().to_vec()),
            attestation: self
                .attestation
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

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
        self.instance_at(id, revision).await
    }

    /// The ready instance when its revision in the database is `revision` (just read): the
    /// cached one if it is that revision, otherwise rebuilt.
    async fn instance_at(&self, id: &str, revision: i64) -> Result<Arc<Cached>> {
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
                    AnySigningKey::from_text(&String::from_utf8_lossy(&text)).map_err(|e| {
                        ServiceError::Internal(format!("stored token key of {id}: {e}"))
                    })?;
                signer = Some(signing);
            } else {
                let jwk: serde_json::Value = from_json(&key.public_jwk, "token key")?;
                let public = AnyVerifyingKey::from_jwk(&jwk).map_err(|e| {
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

    fn key_row(&self, id: &str, key: &AnySigningKey, now: i64) -> Result<InstanceKeyRow> {
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

/// Longest lifetime an instance may give its tokens and certificates: a week. Workers re-attest
/// long before; a longer lifetime only lengthens what a stolen token or a revoked platform keeps.
const MAX_ISSUE_TTL_SECS: u64 = 7 * 24 * 3600;
/// Longest lifetime of a challenge.
const MAX_NONCE_TTL_SECS: u64 = 3600;

fn check_settings(settings: &InstanceSettings) -> Result<()> {
    let checks = [
        ("token_ttl_secs", settings.token_ttl_secs, MAX_ISSUE_TTL_SECS),
        ("cert_ttl_secs", settings.cert_ttl_secs, MAX_ISSUE_TTL_SECS),
        ("nonce_ttl_secs", settings.nonce_ttl_secs, MAX_NONCE_TTL_SECS),
    ];
    for (name, value, max) in checks {
        if value == 0 || value > max {
            return Err(ServiceError::BadRequest(format!(
                "settings.{name} is {value}; it must be 1 to {max} seconds"
            )));
        }
    }
    match (settings.attested_exports_only, settings.export_measurements.as_slice()) {
        (true, []) => {
            return Err(ServiceError::BadRequest(
                "settings.attested_exports_only needs settings.export_measurements: the \
                 measurements of the service builds this instance may move to, fixed now so \
                 that no admin can name another build later (`--export-measurement HEX`)"
                    .to_owned(),
            ));
        }
        (false, [_, ..]) => {
            return Err(ServiceError::BadRequest(
                "settings.export_measurements is only meaningful with \
                 settings.attested_exports_only"
                    .to_owned(),
            ));
        }
        _ => {}
    }
    if settings.export_measurements.len() > MAX_EXPORT_MEASUREMENTS {
        return Err(ServiceError::BadRequest(format!(
            "settings.export_measurements lists {} measurements; at most {MAX_EXPORT_MEASUREMENTS}",
            settings.export_measurements.len()
        )));
    }
    for measurement in &settings.export_measurements {
        let bytes = measurement.len() / 2;
        let lower_hex = measurement.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower_hex || measurement.len() % 2 != 0 || !(16..=64).contains(&bytes) {
            return Err(ServiceError::BadRequest(format!(
                "settings.export_measurements: {measurement:?} is not a measurement (16 to 64 \
                 bytes in lowercase hex)"
            )));
        }
    }
    Ok(())
}

/// Most service builds an instance may name as export targets.
const MAX_EXPORT_MEASUREMENTS: usize = 16;

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

fn policy_view(row: &PolicyVersionRow) -> PolicyVersionView {
    PolicyVersionView {
        version: row.version,
        builtin: row.builtin.clone(),
        rego_sha256: sha256_hex(&row.rego),
        created_at: row.created_at,
        rego: None,
    }
}
