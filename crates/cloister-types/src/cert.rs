//! The enclave certificate's claims extension: what the attestation service certifies about the
//! enclave whose key the certificate carries.
//!
//! OID choice: DESIGN §3 asks for an OID under 2.25 (UUID-derived). The certificate libraries we
//! use (`rcgen`, `const-oid`) hold OID arcs in 64 or 32 bits, so a random 128-bit UUID cannot be
//! encoded. We use the UUID `00000000-0000-0000-698d-5c3a2f4e07b9` (top 64 bits zero), whose
//! integer value gives `2.25.7605749104943378617`. The extension value is a DER OCTET STRING that
//! holds the canonical JSON of [`EnclaveClaimsExtension`].

use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::ear::EarStatus;
use crate::evidence::RuntimeData;

/// The extension's OID arcs.
pub const ENCLAVE_CLAIMS_OID: &[u64] = &[2, 25, 7_605_749_104_943_378_617];

/// The extension's OID in dotted form.
pub const ENCLAVE_CLAIMS_OID_DOTTED: &str = "2.25.7605749104943378617";

/// The only version of the extension's content.
pub const ENCLAVE_CLAIMS_VERSION: u32 = 1;

/// The content of the enclave certificate's claims extension.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveClaimsExtension {
    /// Always [`ENCLAVE_CLAIMS_VERSION`].
    pub version: u32,
    /// The verdict of the instance's appraisal policy.
    pub ear_status: EarStatus,
    /// The policy (id and version) that produced the verdict.
    pub policy_id: String,
    /// The verified claims.
    pub claims: Claims,
    /// The runtime data bound into the evidence: the enclave's HPKE and receipt keys, the nonce.
    pub runtime_data: RuntimeData,
    /// The EAR token issued with this certificate, for relying parties that check it themselves.
    pub ear: String,
}
