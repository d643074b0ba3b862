//! Bodies of the attestation service's management API: tenants, instances (versioned policies,
//! reference values, trust anchors, keys), broker keys, migration and the audit log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/tenants` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique name: 1–64 of `a-z 0-9 - _ .`.
    pub name: String,
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    /// `tn_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// `POST /v1/tenants` response: the tenant and its first admin token (shown once, stored only
/// as a hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: TenantView,
    /// Bearer token of the tenant's administrator.
    pub token: String,
}

/// An appraisal policy to install: a built-in by name, or Rego text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicySpec {
    /// `default` (production, rejects `sim`) or `dev-sim`.
    Builtin(String),
    /// Rego source declaring `package cloister.appraisal` with a `result` rule.
    Rego(String),
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec::Builtin("default".to_owned())
    }
}

/// An instance's trust anchors: simulated platform keys, extra roots per hardware TEE, and
/// test roots per hardware TEE.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustAnchorSpec {
    /// `sim` platform public keys (text form). Only an instance that lists one accepts `sim`.
    #[serde(default)]
    pub sim_platform_keys: Vec<String>,
    /// TEE name → roots (PEM certificates, PEM public keys or JWK JSON).
    #[serde(default)]
    pub roots: BTreeMap<String, Vec<String>>,
    /// TEE name (`sgx`, `tdx`, `snp`, `nitro`, `android`; `psa` with IAK public keys) → test roots (PEM certificates): development
    /// trust anchors like a sim platform key. Evidence under one verifies, its claims say
    /// `"trust_anchor": "test"`, and the production `default` policy refuses it. Omitted from
    /// the JSON when empty, so instances without test roots store what they stored before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub test_roots: BTreeMap<String, Vec<String>>,
}

/// Lifetimes an instance issues with, and what it promises about where its keys may go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSettings {
    /// Lifetime of EAR tokens, seconds.
    #[serde(default = "hour")]
    pub token_ttl_secs: u64,
    /// Lifetime of enclave certificates, seconds.
    #[serde(default = "hour")]
    pub cert_ttl_secs: u64,
    /// Lifetime of challenges, seconds.
    #[serde(default = "two_minutes")]
    pub nonce_ttl_secs: u64,
    /// Refuse every export to a target service that does not attest itself, whatever the
    /// exporter asks. Set when the instance is created and never changed afterwards (and kept
    /// by an import), so whoever relies on the instance can see that its token and CA keys
    /// leave the service only sealed to a service in a TEE its own policy admitted.
    #[serde(default)]
    pub attested_exports_only: bool,
    /// With `attested_exports_only`: the measurements (lowercase hex) of the service builds
    /// this instance may be exported to. Required then, empty otherwise; fixed at creation like
    /// the flag, so no admin can later name a build of their own (the instance's reference
    /// values, which admins update, do not apply to export targets). Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_measurements: Vec<String>,
    /// How the instance signs its EAR tokens: ES256 (the default) or SM2 (ShangMi, JWS `alg`
    /// `SM2SM3`, `docs/formats/jws-sm2.md`). Set when the instance is created; key rotations keep
    /// it. Omitted from the JSON when ES256, so instances store what they stored before.
    #[serde(default, skip_serializing_if = "TokenSigning::is_es256")]
    pub token_signing: TokenSigning,
}

/// The signature algorithm of an instance's EAR tokens ([`InstanceSettings::token_signing`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSigning {
    /// ECDSA P-256 with SHA-256 (`ES256`).
    #[default]
    Es256,
    /// SM2 with SM3 (`SM2SM3`), for deployments under ShangMi rules.
    Sm2,
}

impl TokenSigning {
    /// Whether this is the default, ES256.
    pub fn is_es256(&self) -> bool {
        *self == TokenSigning::Es256
    }
}

impl Default for InstanceSettings {
    fn default() -> Self {
        InstanceSettings {
            token_ttl_secs: hour(),
            cert_ttl_secs: hour(),
            nonce_ttl_secs: 120,
            attested_exports_only: false,
            export_measurements: Vec::new(),
            token_signing: TokenSigning::Es256,
        }
    }
}

fn hour() -> u64 {
    3600
}

fn two_minutes() -> u64 {
    120
}

/// `POST /v1/instances` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// Unique within the tenant: 1–64 of `a-z 0-9 - _ .`.
    pub name: String,
    /// The first policy version (default: the built-in production policy).
    #[serde(default)]
    pub policy: PolicySpec,
    /// Reference values (see the service's `reference` module for per-TEE sections and expiry).
    #[serde(default = "empty_object")]
    pub reference_values: serde_json::Value,
    /// Trust anchors.
    #[serde(default)]
    pub trust_anchors: TrustAnchorSpec,
    /// Lifetimes.
    #[serde(default)]
    pub settings: InstanceSettings,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// One token-signing key of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKeyView {
    /// Its `kid` in the JWKS.
    pub kid: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When it stopped signing; `None` for the current key.
    pub retired_at: Option<i64>,
    /// Until when it stays in the JWKS.
    pub keep_until: Option<i64>,
}

/// An instance as its owner sees it (never any secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    /// `in_…`.
    pub id: String,
    /// The owning tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// `<id>@v<version>` of the policy in force, as tokens name it.
    pub policy_id: String,
    /// The version in force.
    pub policy_version: i64,
    /// Every version, oldest first.
    pub policy_versions: Vec<PolicyVersionView>,
    /// Reference values as stored.
    pub reference_values: serde_json::Value,
    /// Trust anchors.
    pub trust_anchors: TrustAnchorSpec,
    /// Lifetimes.
    pub settings: InstanceSettings,
    /// The CA that issues enclave certificates, PEM.
    pub ca_certificate_pem: String,
    /// Token-signing keys, current and kept.
    pub token_keys: Vec<TokenKeyView>,
    /// Unix seconds.
    pub created_at: i64,
}

/// One policy version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionView {
    /// 1, 2, …
    pub version: i64,
    /// The built-in it was taken from, if any.
    pub builtin: Option<String>,
    /// SHA-256 of the Rego text, hex.
    pub rego_sha256: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The Rego text (only when one version is asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rego: Option<String>,
}

/// `PUT /v1/instances/{id}/policy` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUpdated {
    /// The new version.
    pub version: i64,
    /// `<id>@v<version>`.
    pub policy_id: String,
}

/// `POST /v1/instances/{id}/export` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The target service's key document (`GET /v1/service-key` on the target).
    pub target: serde_json::Value,
    /// The tenant id on the target service (`tn_…`, what `tenant create` printed there) that
    /// may import the bundle: signed into it, so no other tenant of the target can.
    pub target_tenant: String,
    /// Export to a target that brings no attestation of its key (it does not run in a TEE).
    #[serde(default)]
    pub allow_unattested_target: bool,
}

/// `POST /v1/keys` request: register a broker key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterKey {
    /// Unique within the tenant.
    pub name: String,
    /// The secret key (envelope key text) to register; the service generates one when absent.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Release policy: Rego declaring `package cloister.release` with an `allow` rule.
    pub release_policy: String,
    /// Instances whose attestation results this key accepts.
    pub instances: Vec<String>,
}

/// A broker key as its owner sees it (never the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// `kb_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The envelope key id (hex) that sealed files name.
    pub key_id: String,
    /// The public key (envelope text form).
    pub public_key: String,
    /// What `cloister seal --recipient` takes to seal to this key through the broker.
    pub recipient: String,
    /// Accepted instances.
    pub instances: Vec<String>,
    /// SHA-256 of the release policy, hex.
    pub release_policy_sha256: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When revoked.
    pub revoked_at: Option<i64>,
}

/// One audit entry exactly as stored: every field its chain hash covers, so that an auditor
/// (the web console, in the browser) recomputes the hash without trusting the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntryView {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// What happened.
    pub kind: String,
    /// Who acted.
    pub actor: String,
    /// The tenant concerned.
    pub tenant_id: Option<String>,
    /// What it concerned.
    pub subject: String,
    /// How it ended.
    pub outcome: String,
    /// The detail object's stored text (the hash covers this text, not a re-encoding).
    pub detail: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// A signed checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpointView {
    /// The last entry it covers.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// That entry's hash.
    pub hash: String,
    /// The service signing key's signature (unpadded base64url `r ‖ s`).
    pub signature: String,
}

/// The whole audit log with its checkpoints, for verification by the caller
/// (`GET /v1/audit/chain`, operator only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChainView {
    /// Every entry, by seq.
    pub entries: Vec<AuditEntryView>,
    /// Every checkpoint, by seq.
    pub checkpoints: Vec<AuditCheckpointView>,
}

/// One audit record, as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecordView {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// `attestation`, `key.released`, …
    pub kind: String,
    /// Who acted.
    pub actor: String,
    /// The tenant concerned.
    pub tenant_id: Option<String>,
    /// What it concerned (an instance or key id).
    pub subject: String,
    /// `success`, `refused` or `error`.
    pub outcome: String,
    /// Ids, digests, verdicts.
    pub detail: serde_json::Value,
    /// This entry's chain hash.
    pub hash: String,
}

/// `GET /v1/audit` query: which records, and which page. Every filter is optional; records come
/// by seq, at most `limit` of them after `after`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only records of this kind (`attestation`, `key.released`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only records about this subject (an instance, key or data set id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Only records at or after this time (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Only records at or before this time (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Only records after this seq (the last seq of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// At most this many records (at most [`AuditQuery::MAX_LIMIT`]; without it, all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// The largest page the service returns when a limit is asked for.
    pub const MAX_LIMIT: u32 = 1000;

    /// The page size this query gets: `limit` between 1 and [`AuditQuery::MAX_LIMIT`], or none
    /// (every matching record) when it asks for no limit.
    pub fn page_size(&self) -> Option<u32> {
        self.limit.map(|limit| limit.clamp(1, Self::MAX_LIMIT))
    }
}
