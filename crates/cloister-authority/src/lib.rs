//! The Cloister attestation service: issues single-use challenges, verifies unified evidence,
//! appraises the claims with the instance's Rego policy, and returns a signed EAR attestation
//! result with a short-lived enclave certificate issued by the instance CA.
//!
//! [`service::Service`] is the multi-tenant service (tenants, instances with versioned policies,
//! the key broker, migration, the audit log) on a [`store::Store`] (SQLite or PostgreSQL), with
//! an explicit clock; [`http::service_router`] puts it behind axum. [`Authority`] is one
//! instance served from memory, configured from a file (embedding and collateral tests).

pub mod audit;
pub mod broker;
pub mod collateral;
pub mod config;
pub mod fetch;
pub mod http;
pub mod instance;
mod issue;
pub mod metrics;
pub mod migrate;
mod nonce;
pub mod reference;
pub mod service;
pub mod store;

use std::collections::BTreeMap;

use cloister_sign::SigningKey;
use cloister_types::api::{AttestRequest, AttestResponse, ChallengeResponse, InstanceInfo};
use cloister_types::{Hex, UnifiedEvidence};

pub use collateral::{
    CollateralCache, CollateralFetcher, FetchError, RateLimiter, Vendor, VendorUrls,
};
pub use config::{InstanceConfig, TrustAnchorSpec};
pub use instance::{Instance, InstanceSettings};
pub use issue::{CertificateAuthority, IssueError};
pub use nonce::NonceError;

use crate::nonce::NonceStore;

/// Why an attestation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The nonce is unknown, used or expired.
    #[error(transparent)]
    Nonce(#[from] NonceError),
    /// The evidence did not verify.
    #[error("evidence verification failed: {0}")]
    Verify(#[from] cloister_verify::VerifyError),
    /// The TLS key offered for the certificate is not the one bound into the evidence.
    #[error("the TLS public key does not match tls_spki_sha256 in the runtime data")]
    TlsKeyMismatch,
    /// The policy could not be evaluated.
    #[error("policy evaluation failed: {0}")]
    Policy(#[from] cloister_policy::PolicyError),
    /// The policy judged the evidence untrustworthy.
    #[error("the appraisal policy {policy_id} rejected the evidence: {}", reasons.join("; "))]
    Rejected {
        /// The policy that decided.
        policy_id: String,
        /// The policy's reasons.
        reasons: Vec<String>,
    },
    /// Signing the token or issuing the certificate failed.
    #[error("could not issue the attestation result: {0}")]
    Issue(String),
}

/// The keys an instance signs with: the EAR token key and the enclave-certificate CA.
pub struct InstanceKeys {
    /// Signs EAR tokens.
    pub token_key: SigningKey,
    /// Issues enclave certificates.
    pub ca: CertificateAuthority,
}

/// A collateral fetcher with one rate limiter per vendor.
pub(crate) struct Fetching {
    fetcher: Box<dyn CollateralFetcher>,
    limiters: BTreeMap<Vendor, RateLimiter>,
}

impl Fetching {
    pub(crate) fn new(fetcher: Box<dyn CollateralFetcher>) -> Self {
        let limiters = [Vendor::Intel, Vendor::Amd, Vendor::Hygon, Vendor::Nvidia]
            .into_iter()
            .map(|vendor| (vendor, RateLimiter::new(0)))
            .collect();
        Fetching { fetcher, limiters }
    }

    /// Fetches into `cache` what `evidence` (CPU and every device) needs and is not cached.
    pub(crate) async fn prefetch(
        &self,
        cache: &CollateralCache,
        evidence: &UnifiedEvidence,
        now: u64,
    ) -> Vec<FetchError> {
        let mut needs =
            cloister_verify::collateral_needs(evidence.tee, evidence.evidence.as_bytes());
        for entry in evidence.additional_evidence.values() {
            let tee = entry.get("tee").and_then(|t| t.as_str()).and_then(|t| t.parse().ok());
            let bytes = entry
                .get("evidence")
                .and_then(|e| e.as_str())
                .and_then(|e| cloister_types::Base64Url::parse(e).ok());
            if let (Some(tee), Some(bytes)) = (tee, bytes) {
                needs.extend(cloister_verify::collateral_needs(tee, bytes.as_bytes()));
            }
        }
        let mut failures = Vec::new();
        for key in needs {
            let Some(limiter) = self.limiters.get(&key.vendor) else { continue };
            let fetched =
                collateral::get_or_fetch(cache, self.fetcher.as_ref(), limiter, &key, now as i64)
                    .await;
            if let Err(error) = fetched {
                failures.push(error);
            }
        }
        failures
    }
}

/// One attestation instance served from memory: the instance, its single-use nonces, and the
/// collateral cache. The multi-tenant [`service::Service`] keeps nonces in its database instead.
pub struct Authority {
    instance: Instance,
    nonces: NonceStore,
    collateral: CollateralCache,
    fetching: Option<Fetching>,
}

impl Authority {
    /// Builds the instance from its configuration and keys.
    pub fn new(config: InstanceConfig, keys: InstanceKeys) -> Self {
        let InstanceKeys { token_key, ca } = keys;
        let settings = InstanceSettings {
            token_ttl_secs: config.token_ttl.as_secs(),
            cert_ttl_secs: config.cert_ttl.as_secs(),
            nonce_ttl_secs: config.nonce_ttl.as_secs(),
        };
        let instance = Instance::new(
            &config.name,
            &config.name,
            config.policy,
            config.reference_values,
            config.trust_anchors,
            token_key,
            Vec::new(),
            ca,
            settings,
        );
        Authority {
            instance,
            nonces: NonceStore::new(config.nonce_ttl),
            collateral: CollateralCache::new(),
            fetching: None,
        }
    }

    /// Issues a fresh single-use nonce.
    pub fn challenge(&self, now: u64) -> Result<ChallengeResponse, NonceError> {
        self.nonces.issue(now)
    }

    /// Verifies evidence, appraises it and issues an EAR token and an enclave certificate.
    ///
    /// The nonce is consumed first, so a replay fails even when the first use was rejected.
    pub fn attest(&self, request: &AttestRequest, now: u64) -> Result<AttestResponse, AttestError> {
        let evidence = &request.evidence;
        self.nonces.consume(&evidence.runtime_data.nonce, now)?;
        let cached = self.collateral.snapshot_by_tee();
        let verified = cloister_verify::verify_with_collateral(
            evidence,
            self.instance.anchors(),
            &cached,
            now as i64,
        )?;
        self.instance.appraise_and_issue(request, &verified, now)
    }

    /// Lets [`Authority::prefetch`] fetch missing collateral through `fetcher` (one rate
    /// limiter per vendor, honouring the vendors' `Retry-After`). Without a fetcher collateral
    /// comes with the evidence or from bundles loaded into [`Authority::collateral`].
    #[must_use]
    pub fn with_fetcher(mut self, fetcher: Box<dyn CollateralFetcher>) -> Self {
        self.fetching = Some(Fetching::new(fetcher));
        self
    }

    /// Fetches the vendor collateral `evidence` needs (per `cloister_verify::collateral_needs`,
    /// for the CPU evidence and every device) that is not cached and unexpired. Returns what
    /// could not be fetched; verification then says exactly what is missing, so failures here
    /// are reported, not fatal. Does nothing without a fetcher, and nothing for evidence that
    /// does not answer a live challenge of this instance: nobody can make the service call its
    /// vendors without a nonce it issued.
    pub async fn prefetch(&self, evidence: &UnifiedEvidence, now: u64) -> Vec<FetchError> {
        let Some(fetching) = &self.fetching else { return Vec::new() };
        if !self.nonces.is_live(&evidence.runtime_data.nonce, now) {
            return Vec::new();
        }
        fetching.prefetch(&self.collateral, evidence, now).await
    }

    /// The instance's collateral cache: preload an offline bundle here, or let a fetcher fill it.
    pub fn collateral(&self) -> &CollateralCache {
        &self.collateral
    }

    /// What relying parties need to check this instance's results.
    pub fn info(&self) -> InstanceInfo {
        self.instance.info(cloister_sign::unix_now())
    }

    /// The JWKS that verifies this instance's EAR tokens.
    pub fn jwks(&self) -> serde_json::Value {
        self.instance.jwks(cloister_sign::unix_now())
    }

    /// SHA-256 of the CA certificate, for logs and pinning.
    pub fn ca_fingerprint(&self) -> Hex {
        self.instance.ca.fingerprint()
    }
}
