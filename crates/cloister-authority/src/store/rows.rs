//! The rows of the service database, one plain struct per table, decoded by column name.

/// A tenant: owns instances, broker keys and credentials.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    /// `tn_` + 32 hex characters.
    pub id: String,
    /// Unique across the service.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A bearer credential, stored only as the hash of its token.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CredentialRow {
    /// Lowercase hex SHA-256 of the bearer token.
    pub token_hash: String,
    /// `operator` or `tenant`.
    pub role: String,
    /// The tenant a tenant credential acts for; `None` for operators.
    pub tenant_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// An attestation instance and its current state.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceRow {
    /// `in_` + 32 hex characters.
    pub id: String,
    /// The owning tenant.
    pub tenant_id: String,
    /// Unique within the tenant.
    pub name: String,
    /// Bumped by every change, so replicas can tell their cached copy is stale.
    pub revision: i64,
    /// The policy version in force.
    pub policy_version: i64,
    /// JSON.
    pub reference_values: String,
    /// JSON.
    pub trust_anchors: String,
    /// JSON (time-to-live settings).
    pub settings: String,
    /// The instance CA's certificate.
    pub ca_certificate_pem: String,
    /// The instance CA's private key, sealed to the service key.
    pub ca_key_sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

/// One version of an instance's appraisal policy.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyVersionRow {
    /// The instance.
    pub instance_id: String,
    /// 1, 2, …
    pub version: i64,
    /// The Rego source.
    pub rego: String,
    /// The name of the built-in policy this came from, if any.
    pub builtin: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A token-signing key of an instance; retired keys stay published until `keep_until`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceKeyRow {
    /// The instance.
    pub instance_id: String,
    /// The JWK key id.
    pub kid: String,
    /// The public key as a JWK (JSON).
    pub public_jwk: String,
    /// The private key, sealed to the service key.
    pub secret_sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// When a rotation replaced it; `None` while it signs.
    pub retired_at: Option<i64>,
    /// Until when relying parties may still see it in the JWKS.
    pub keep_until: Option<i64>,
}

/// A key-broker key: its secret is released to attested workers under `release_policy`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct BrokerKeyRow {
    /// `kb_` + 32 hex characters.
    pub id: String,
    /// The owning tenant.
    pub tenant_id: String,
    /// Unique within the tenant.
    pub name: String,
    /// Hex of the envelope key id of `public_key`; unique across the service.
    pub key_id: String,
    /// The public key envelopes are sealed to.
    pub public_key: String,
    /// The private key, sealed to the service key.
    pub secret_sealed: Vec<u8>,
    /// Rego.
    pub release_policy: String,
    /// JSON array of the instance ids whose tokens may ask for it.
    pub instances: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When it was revoked; `None` while usable.
    pub revoked_at: Option<i64>,
}

/// One entry of the hash-chained audit log.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// 1, 2, … without gaps.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// What happened.
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// The tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// What it was done to.
    pub subject: String,
    /// How it ended.
    pub outcome: String,
    /// JSON details.
    pub detail: String,
    /// The previous entry's `hash`.
    pub prev_hash: String,
    /// The hash of this entry, chained over `prev_hash`.
    pub hash: String,
}

/// A signed checkpoint over the audit log up to `seq`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckpointRow {
    /// The last entry covered.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// That entry's hash.
    pub hash: String,
    /// The service's signature over the checkpoint.
    pub signature: String,
}

/// An owner's revocation of its grants for one job.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RevokedGrantRow {
    /// The owner's party public key (`cloister-es256:…`).
    pub owner: String,
    /// Lowercase hex job digest.
    pub job_digest: String,
    /// Unix seconds.
    pub revoked_at: i64,
}

/// One privacy charge on a data set, as its owner reads it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ChargeRow {
    /// The job.
    pub job_id: String,
    /// Its digest (empty for charges recorded before the ledger kept it).
    pub job_digest: String,
    /// The instance whose enclave charged it.
    pub instance_id: String,
    /// Unix seconds.
    pub charged_at: i64,
    /// The account the charge produced ([`cloister_types::job::PrivacyAccount`] as JSON).
    pub account_json: Option<String>,
    /// The budget the owner's grant set ([`cloister_types::job::PrivacyBudget`] as JSON).
    pub budget_json: Option<String>,
}

/// A data set registered by its owner: its privacy account belongs to that owner.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DatasetRow {
    /// Lowercase hex SHA-256 of the sealed data set.
    pub sha256: String,
    /// The owner's party public key (`cloister-es256:…`).
    pub owner: String,
    /// The object id the owner gave it.
    pub object_id: String,
    /// Unix seconds.
    pub registered_at: i64,
}
