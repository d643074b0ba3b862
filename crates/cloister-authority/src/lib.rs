//! The Cloister attestation service: issues single-use challenges, verifies unified evidence,
//! appraises the claims with the instance's Rego policy, and returns a signed EAR attestation
//! result with a short-lived enclave certificate issued by the instance CA.
//!
//! [`service::Service`] is the multi-tenant service (tenants, instances with versioned policies,
//! the key broker, the privacy ledger, migration, the audit log) on a [`store::Store`] (SQLite
//! or PostgreSQL), with an explicit clock; [`http::service_router`] puts it behind axum.

pub mod audit;
pub mod broker;
pub mod collateral;
pub mod config;
pub mod console;
pub mod fetch;
pub mod http;
pub mod instance;
mod issue;
pub mod metrics;
pub mod migrate;
mod nonce;
pub mod rate;
pub mod reference;
pub mod service;
pub mod store;
pub mod tls;

use std::collections::BTreeMap;

use cloister_types::UnifiedEvidence;

pub use collateral::{
    CollateralCache, CollateralFetcher, CollateralSnapshot, FetchError, RateLimiter, Vendor,
    VendorUrls,
};
pub use config::TrustAnchorSpec;
pub use instance::{Instance, InstanceSettings};
pub use issue::{CertificateAuthority, IssueError};
pub use nonce::NonceError;

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
    /// The evidence names another attestation service (its runtime data's
    /// `service_key_sha256`): the enclave would not trust this service's answers.
    #[error(
        "the evidence names the attestation service with signing key {named}, not this service \
         ({ours}); start the worker with this service's fingerprint"
    )]
    OtherService {
        /// The fingerprint the evidence names (at most 64 characters of it).
        named: String,
        /// This service's.
        ours: String,
    },
    /// The evidence names no attestation service.
    #[error(
        "the evidence names no attestation service: its runtime data must carry \
         service_key_sha256 = {ours} (this service's signing-key fingerprint), so that the \
         enclave trusts only this service's answers"
    )]
    NoServiceNamed {
        /// This service's fingerprint.
        ours: String,
    },
    /// The TLS key offered for the certificate is not the one bound into the evidence.
    #[error("the TLS public key does not match tls_spki_sha256 in the runtime data")]
    TlsKeyMismatch,
    /// An enclave's runtime data binds no usable receipt key.
    #[error("the enclave's receipt_pk in the runtime data is not a party public key: {0}")]
    BadReceiptKey(String),
    /// The enclave's keys are of another suite than the instance's tokens.
    #[error(
        "the enclave's receipt key is an {enclave} key but this instance signs {instance}: an \
         instance and its enclaves use one suite (a ShangMi enclave, `serve worker --suite sm`, \
         attests with an instance created with --token-signing sm2)"
    )]
    SuiteMismatch {
        /// The suite of the enclave's receipt key.
        enclave: cloister_sign::SignatureSuite,
        /// The suite of the instance's tokens.
        instance: cloister_sign::SignatureSuite,
    },
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

/// What an instance issues for evidence that passed: the EAR token and the certificate chain.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The EAR attestation result (a signed JWT).
    pub ear: String,
    /// PEM: the enclave certificate, then the instance CA certificate.
    pub certificate_chain_pem: String,
}

/// A collateral fetcher with one rate limiter per vendor.
pub(crate) struct Fetching {
    fetcher: Box<dyn CollateralFetcher>,
    limiters: BTreeMap<Vendor, RateLimiter>,
}

impl Fetching {
    pub(crate) fn new(fetcher: Box<dyn CollateralFetcher>) -> Self {
        let limiters =
            Vendor::ALL.into_iter().map(|vendor| (vendor, RateLimiter::new(0))).collect();
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
