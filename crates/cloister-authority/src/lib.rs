//! The Cloister attestation service: issues single-use challenges, verifies unified evidence,
//! appraises the claims with the instance's Rego policy, and returns a signed EAR attestation
//! result with a short-lived enclave certificate issued by the instance CA.
//!
//! [`Authority`] is the service's logic with an explicit clock; [`http::router`] puts it behind
//! axum. This crate holds one attestation instance configured from a file; persistence and
//! multi-tenancy come later.

pub mod collateral;
pub mod config;
pub mod fetch;
pub mod http;
mod issue;
mod nonce;
pub mod store;

use std::collections::BTreeMap;
use std::time::Duration;

use cloister_policy::{Appraisal, AppraisalPolicy};
use cloister_sign::SigningKey;
use cloister_types::api::{AttestRequest, AttestResponse, ChallengeResponse, InstanceInfo};
use cloister_types::ear::{EAR_PROFILE, VerifierId};
use cloister_types::{EarAppraisal, EarBody, EarStatus, Hex, UnifiedEvidence};
use cloister_verify::TrustAnchors;
use sha2::{Digest, Sha256};

pub use collateral::{
    CollateralCache, CollateralFetcher, FetchError, RateLimiter, Vendor, VendorUrls,
};
pub use config::InstanceConfig;
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
struct Fetching {
    fetcher: Box<dyn CollateralFetcher>,
    limiters: BTreeMap<Vendor, RateLimiter>,
}

/// One attestation instance: policy, reference values, trust anchors and keys.
pub struct Authority {
    name: String,
    policy: AppraisalPolicy,
    reference_values: serde_json::Value,
    anchors: TrustAnchors,
    keys: InstanceKeys,
    token_kid: String,
    nonces: NonceStore,
    collateral: CollateralCache,
    fetching: Option<Fetching>,
    token_ttl: Duration,
    cert_ttl: Duration,
}

impl Authority {
    /// Builds the instance from its configuration and keys.
    pub fn new(config: InstanceConfig, keys: InstanceKeys) -> Self {
        let InstanceKeys { token_key, ca } = keys;
        let key_text = token_key.public_key().to_text();
        let token_kid = format!("ear-{}", &hex::encode(Sha256::digest(key_text.as_bytes()))[..16]);
        Authority {
            name: config.name,
            policy: config.policy,
            reference_values: config.reference_values,
            anchors: config.trust_anchors,
            keys: InstanceKeys { token_key: token_key.with_key_id(&token_kid), ca },
            token_kid,
            nonces: NonceStore::new(config.nonce_ttl),
            collateral: CollateralCache::new(),
            fetching: None,
            token_ttl: config.token_ttl,
            cert_ttl: config.cert_ttl,
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
        let verified =
            cloister_verify::verify_with_collateral(evidence, &self.anchors, &cached, now as i64)?;
        let spki_digest = Sha256::digest(request.tls_spki.as_bytes());
        if verified.runtime_data().tls_spki_sha256.as_bytes() != spki_digest.as_slice() {
            return Err(AttestError::TlsKeyMismatch);
        }
        // Every component is appraised by the instance's policy: the CPU TEE as `cpu0`, each
        // attached device under its own name. One refusal refuses the whole attestation.
        let policy_id = self.policy.policy_id();
        let mut appraisals = BTreeMap::new();
        let components = std::iter::once(("cpu0", verified.claims())).chain(
            verified.additional_claims().iter().map(|(name, claims)| (name.as_str(), claims)),
        );
        for (name, claims) in components {
            let appraisal = self.policy.appraise(claims, &self.reference_values)?;
            if !matches!(appraisal.status, EarStatus::Affirming | EarStatus::Warning) {
                let reasons =
                    appraisal.reasons.iter().map(|reason| format!("{name}: {reason}")).collect();
                return Err(AttestError::Rejected { policy_id, reasons });
            }
            appraisals.insert(name.to_owned(), (appraisal, claims.clone()));
        }
        let status = if appraisals.values().all(|(a, _)| a.status == EarStatus::Affirming) {
            EarStatus::Affirming
        } else {
            EarStatus::Warning
        };
        let (claims, runtime_data) = (verified.claims().clone(), verified.runtime_data().clone());
        let submods = appraisals
            .into_iter()
            .map(|(name, (appraisal, claims))| {
                let Appraisal { status, trustworthiness_vector, reasons } = appraisal;
                let submod = EarAppraisal {
                    status,
                    trustworthiness_vector,
                    appraisal_policy_id: policy_id.clone(),
                    claims,
                    runtime_data: runtime_data.clone(),
                    reasons,
                };
                (name, submod)
            })
            .collect();
        let body = EarBody {
            eat_profile: EAR_PROFILE.to_owned(),
            verifier_id: VerifierId {
                developer: "cloister".to_owned(),
                build: env!("CARGO_PKG_VERSION").to_owned(),
            },
            eat_nonce: runtime_data.nonce.clone(),
            submods,
        };
        let ear = self
            .keys
            .token_key
            .sign("EAR attestation result", &body, now, self.token_ttl)
            .map_err(|e| AttestError::Issue(e.to_string()))?;
        let leaf = self
            .keys
            .ca
            .issue_enclave_certificate(
                request.tls_spki.as_bytes(),
                &cloister_types::EnclaveClaimsExtension {
                    version: cloister_types::cert::ENCLAVE_CLAIMS_VERSION,
                    ear_status: status,
                    policy_id,
                    claims,
                    runtime_data,
                    ear: ear.clone(),
                },
                now,
                self.cert_ttl,
            )
            .map_err(|e| AttestError::Issue(e.to_string()))?;
        Ok(AttestResponse {
            ear,
            certificate_chain_pem: format!("{leaf}{}", self.keys.ca.certificate_pem()),
        })
    }

    /// Lets [`Authority::prefetch`] fetch missing collateral through `fetcher` (one rate
    /// limiter per vendor, honouring the vendors' `Retry-After`). Without a fetcher collateral
    /// comes with the evidence or from bundles loaded into [`Authority::collateral`].
    #[must_use]
    pub fn with_fetcher(mut self, fetcher: Box<dyn CollateralFetcher>) -> Self {
        let limiters = [Vendor::Intel, Vendor::Amd, Vendor::Hygon, Vendor::Nvidia]
            .into_iter()
            .map(|vendor| (vendor, RateLimiter::new(0)))
            .collect();
        self.fetching = Some(Fetching { fetcher, limiters });
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
            let Some(limiter) = fetching.limiters.get(&key.vendor) else { continue };
            let fetched = collateral::get_or_fetch(
                &self.collateral,
                fetching.fetcher.as_ref(),
                limiter,
                &key,
                now as i64,
            )
            .await;
            if let Err(error) = fetched {
                failures.push(error);
            }
        }
        failures
    }

    /// The instance's collateral cache: preload an offline bundle here, or let a fetcher fill it.
    pub fn collateral(&self) -> &CollateralCache {
        &self.collateral
    }

    /// What relying parties need to check this instance's results.
    pub fn info(&self) -> InstanceInfo {
        InstanceInfo {
            name: self.name.clone(),
            ca_certificate_pem: self.keys.ca.certificate_pem().to_owned(),
            jwks: self.jwks(),
            policy_id: self.policy.policy_id(),
        }
    }

    /// The JWKS that verifies this instance's EAR tokens.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.keys.token_key.public_key().to_jwk(&self.token_kid)] })
    }

    /// SHA-256 of the CA certificate, for logs and pinning.
    pub fn ca_fingerprint(&self) -> Hex {
        self.keys.ca.fingerprint()
    }
}
