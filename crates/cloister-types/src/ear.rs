//! EAR attestation results (draft-ietf-rats-ear): the claims of the JWT the attestation service
//! signs. `iat` and `exp` live in the JWT's standard claims beside these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::collateral::CollateralRecord;
use crate::evidence::RuntimeData;

/// The EAR profile this service issues.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// What EAR tokens are called where they are signed and verified (in error messages).
pub const EAR_NAME: &str = "EAR attestation result";

/// The body of an EAR token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarBody {
    /// Always [`EAR_PROFILE`].
    pub eat_profile: String,
    /// Who produced this result.
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    /// The challenge the evidence answered.
    pub eat_nonce: String,
    /// One appraisal per attested component: `cpu0`, `gpu0`, …
    pub submods: BTreeMap<String, EarAppraisal>,
    /// The attestation service's latest signed audit checkpoint when it issued this result: a
    /// relying party holding the token detects an audit log rolled back behind it.
    #[serde(rename = "cloister.audit-checkpoint")]
    pub audit_checkpoint: crate::api::CheckpointRef,
}

/// The verifier that produced an attestation result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierId {
    /// The organisation or project that wrote the verifier.
    pub developer: String,
    /// The verifier's build (version).
    pub build: String,
}

/// The appraisal of one component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarAppraisal {
    /// The overall verdict.
    #[serde(rename = "ear.status")]
    pub status: EarStatus,
    /// AR4SI trustworthiness claims (`instance-identity`, `executables`, …), each an EAR tier code.
    #[serde(rename = "ear.trustworthiness-vector")]
    pub trustworthiness_vector: BTreeMap<String, i8>,
    /// Which policy (and version) produced the verdict.
    #[serde(rename = "ear.appraisal-policy-id")]
    pub appraisal_policy_id: String,
    /// The normalised claims the verdict was made on.
    #[serde(rename = "cloister.claims")]
    pub claims: Claims,
    /// The runtime data bound into the evidence (enclave keys, nonce).
    #[serde(rename = "cloister.runtime-data")]
    pub runtime_data: RuntimeData,
    /// Why the policy decided as it did, in words.
    #[serde(rename = "cloister.reasons", default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The vendor collateral the verdict was made with: the key broker releases nothing on this
    /// result once the service's collateral differs from it.
    #[serde(rename = "cloister.collateral")]
    pub collateral: CollateralRecord,
}

/// EAR trust tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EarStatus {
    /// Nothing is known.
    None,
    /// Trustworthy.
    Affirming,
    /// Trustworthy with caveats.
    Warning,
    /// Not trustworthy.
    Contraindicated,
}
