//! One attestation instance, ready to appraise: its policy, reference values, trust anchors,
//! token-signing keys and CA. Built from the instance configuration file or from database rows;
//! holds no nonces and does no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use cloister_policy::{Appraisal, AppraisalPolicy};
use cloister_sign::{AnySigningKey, AnyVerifyingKey};
use cloister_types::api::{AttestRequest, CheckpointRef, InstanceInfo};
use cloister_types::ear::{EAR_PROFILE, VerifierId};
pub use cloister_types::manage::InstanceSettings;
use cloister_types::{EarAppraisal, EarBody, EarStatus};
use cloister_verify::{TrustAnchors, VerifiedEvidence};
use sha2::{Digest, Sha256};

use crate::collateral::CollateralSnapshot;
use crate::reference::effective_reference_values;
use crate::{AttestError, CertificateAuthority, Issued};

/// A token-verifying key an instance publishes, and until when.
#[derive(Clone, Debug)]
pub struct PublishedKey {
    /// Its `kid`.
    pub kid: String,
    /// The key (ES256, or SM2 for a ShangMi instance).
    pub key: AnyVerifyingKey,
    /// After this (unix seconds) no token it signed can still be valid; `None` while current.
    pub keep_until: Option<i64>,
}

/// The `kid` of an EAR token key: derived from the public key, so it survives export and import.
pub fn token_key_id(key: &AnyVerifyingKey) -> String {
    format!("ear-{}", &hex::encode(Sha256::digest(key.to_text().as_bytes()))[..16])
}

/// An instance, ready to appraise evidence and sign results.
pub struct Instance {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) policy: AppraisalPolicy,
    pub(crate) reference_values: serde_json::Value,
    pub(crate) anchors: TrustAnchors,
    signer: AnySigningKey,
    published: Vec<PublishedKey>,
    pub(crate) ca: CertificateAuthority,
    pub(crate) settings: InstanceSettings,
}

impl Instance {
    /// Assembles an instance. `signer` is the current token key; `retired` are earlier keys kept
    /// in the JWKS until the tokens they signed have expired.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        name: &str,
        policy: AppraisalPolicy,
        reference_values: serde_json::Value,
        anchors: TrustAnchors,
        signer: AnySigningKey,
        retired: Vec<PublishedKey>,
        ca: CertificateAuthority,
        settings: InstanceSettings,
    ) -> Self {
        let public = signer.public_key();
        let kid = token_key_id(&public);
        let mut published = vec![PublishedKey { kid: kid.clone(), key: public, keep_until: None }];
        published.extend(retired.into_iter().filter(|key| key.kid != kid));
        Instance {
            id: id.to_owned(),
            name: name.to_owned(),
            policy,
            reference_values,
            anchors,
            signer: signer.with_key_id(&kid),
            published,
            ca,
            settings,
        }
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The trust anchors its verifiers use.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// The suite the instance signs its tokens in (ES256, or SM2 for a ShangMi instance): its
    /// enclaves' keys must be of the same suite.
    pub fn token_suite(&self) -> cloister_sign::SignatureSuite {
        self.signer.suite()
    }

    /// The policy in force.
    pub fn policy(&self) -> &AppraisalPolicy {
        &self.policy
    }

    /// Its settings.
    pub fn settings(&self) -> &InstanceSettings {
        &self.settings
    }

    /// The keys that verify this instance's tokens at `now`: the current one and every retired
    /// key whose tokens may still be valid.
    pub fn token_keys(&self, now: u64) -> impl Iterator<Item = &PublishedKey> {
        self.published.iter().filter(move |key| key.keep_until.is_none_or(|t| t >= now as i64))
    }

    /// The JWKS that verifies this instance's EAR tokens at `now`.
    pub fn jwks(&self, now: u64) -> serde_json::Value {
        let keys: Vec<_> = self.token_keys(now).map(|k| k.key.to_jwk(&k.kid)).collect();
        serde_json::json!({ "keys": keys })
    }

    /// What relying parties need to check this instance's results.
    pub fn info(&self, now: u64) -> InstanceInfo {
        InstanceInfo {
            name: self.name.clone(),
            ca_certificate_pem: self.ca.certificate_pem().to_owned(),
            jwks: self.jwks(now),
            policy_id: self.policy.policy_id(),
        }
    }

    /// Appraises verified evidence with the instance's policy (every component: `cpu0`, `gpu0`…)
    /// and, when every component passes, signs the EAR token (naming the audit log's latest
    /// signed `checkpoint`, so a relying party holding it detects a log rolled back behind it)
    /// and issues the enclave certificate — only when the evidence attests isolated compute: a
    /// PSA or Android result attests a device's key, and gets the EAR token alone (an empty
    /// certificate chain). Each component's appraisal records the items of
    /// `collateral` (the snapshot the evidence was verified with) it depended on.
    pub fn appraise_and_issue(
        &self,
        request: &AttestRequest,
        verified: &VerifiedEvidence,
        collateral: &CollateralSnapshot,
        checkpoint: &CheckpointRef,
        now: u64,
    ) -> Result<Issued, AttestError> {
        let spki_digest = Sha256::digest(request.tls_spki.as_bytes());
        if verified.runtime_data().tls_spki_sha256.as_bytes() != spki_digest.as_slice() {
            return Err(AttestError::TlsKeyMismatch);
        }
        // One refusal refuses the whole attestation.
        let policy_id = self.policy.policy_id();
        let mut appraisals = BTreeMap::new();
        let components = std::iter::once(("cpu0", verified.claims())).chain(
            verified.additional_claims().iter().map(|(name, claims)| (name.as_str(), claims)),
        );
        for (name, claims) in components {
            let reference_values =
                effective_reference_values(&self.reference_values, claims.tee, now as i64);
            let appraisal = self.policy.appraise(claims, &reference_values)?;
            if !matches!(appraisal.status, EarStatus::Affirming | EarStatus::Warning) {
                let reasons =
                    appraisal.reasons.iter().map(|reason| format!("{name}: {reason}")).collect();
                return Err(AttestError::Rejected { policy_id, reasons });
            }
            let record = collateral.record(claims.tee, &component_evidence(request, name)?);
            appraisals.insert(name.to_owned(), (appraisal, claims.clone(), record));
        }
        let status = if appraisals.values().all(|(a, _, _)| a.status == EarStatus::Affirming) {
            EarStatus::Affirming
        } else {
            EarStatus::Warning
        };
        let (claims, runtime_data) = (verified.claims().clone(), verified.runtime_data().clone());
        let submods = appraisals
            .into_iter()
            .map(|(name, (appraisal, claims, collateral))| {
                let Appraisal { status, trustworthiness_vector, reasons } = appraisal;
                let submod = EarAppraisal {
                    status,
                    trustworthiness_vector,
                    appraisal_policy_id: policy_id.clone(),
                    claims,
                    runtime_data: runtime_data.clone(),
                    reasons,
                    collateral,
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
            audit_checkpoint: checkpoint.clone(),
        };
        let ear = self
            .signer
            .sign(
                cloister_types::ear::EAR_NAME,
                &body,
                now,
                Duration::from_secs(self.settings.token_ttl_secs),
            )
            .map_err(|e| AttestError::Issue(e.to_string()))?;
        if claims.check_enclave().is_err() {
            // Admitted, but not as an enclave: the EAR says what was appraised, and nothing
            // that only enclaves get is issued (the CA refuses such claims too).
            return Ok(Issued { ear, certificate_chain_pem: String::new() });
        }
        let leaf = self
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
                Duration::from_secs(self.settings.cert_ttl_secs),
            )
            .map_err(|e| AttestError::Issue(e.to_string()))?;
        Ok(Issued { ear, certificate_chain_pem: format!("{leaf}{}", self.ca.certificate_pem()) })
    }
}

/// The vendor evidence bytes of component `name` of a request: the main evidence for `cpu0`, a
/// device's from `additional_evidence`. The verifier read the same bytes, so they are there;
/// if not, nothing is issued.
fn component_evidence(request: &AttestRequest, name: &str) -> Result<Vec<u8>, AttestError> {
    let evidence = &request.evidence;
    if name == "cpu0" {
        return Ok(evidence.evidence.as_bytes().to_vec());
    }
    evidence
        .additional_evidence
        .get(name)
        .and_then(|entry| entry.get("evidence"))
        .and_then(serde_json::Value::as_str)
        .and_then(|text| cloister_types::Base64Url::parse(text).ok())
        .map(|bytes| bytes.0)
        .ok_or_else(|| AttestError::Issue(format!("the evidence of {name} cannot be read again")))
}
