//! Request and response bodies of the attestation service and the enclave worker APIs.

use serde::{Deserialize, Serialize};

use crate::encoding::{Base64Url, Hex};
use crate::evidence::{RuntimeData, UnifiedEvidence};
use crate::job::{JobSpec, ReceiptOutput};

/// `POST /v1/challenge` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// A fresh single-use nonce.
    pub nonce: String,
    /// Unix seconds after which the nonce is refused.
    pub expires_at: i64,
}

/// `POST /v1/attest` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestRequest {
    /// The evidence.
    pub evidence: UnifiedEvidence,
    /// The enclave's TLS public key (DER SubjectPublicKeyInfo) to certify; its SHA-256 must be
    /// `runtime_data.tls_spki_sha256`.
    pub tls_spki: Base64Url,
}

/// `POST /v1/attest` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestResponse {
    /// The EAR attestation result (a signed JWT).
    pub ear: String,
    /// PEM: the enclave certificate, then the instance CA certificate.
    pub certificate_chain_pem: String,
}

/// `GET /v1/instance` response: what a relying party needs to check results of this instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Instance name.
    pub name: String,
    /// PEM of the instance CA that issues enclave certificates.
    pub ca_certificate_pem: String,
    /// The JWKS that verifies EAR tokens.
    pub jwks: serde_json::Value,
    /// Id and version of the appraisal policy in force.
    pub policy_id: String,
}

/// `GET /v1/identity` response from an enclave worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdentityResponse {
    /// PEM: the enclave certificate, then the instance CA certificate.
    pub certificate_chain_pem: String,
    /// The EAR attestation result the certificate was issued with.
    pub ear: String,
    /// The runtime data bound into the enclave's evidence.
    pub runtime_data: RuntimeData,
}

/// `PUT /v1/objects/{id}` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectStored {
    /// Object id.
    pub object_id: String,
    /// SHA-256 of the stored bytes.
    pub sha256: Hex,
    /// Size in bytes.
    pub size: u64,
}

/// `POST /v1/jobs` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitJob {
    /// The job.
    pub spec: JobSpec,
    /// Compact JWS grants, one per input owner.
    pub grants: Vec<String>,
}

/// `POST /v1/jobs` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobDone {
    /// Job id.
    pub job_id: String,
    /// The sealed outputs.
    pub outputs: Vec<ReceiptOutput>,
    /// The receipt, a compact JWS signed with the enclave's receipt key.
    pub receipt: String,
}

/// The body of every error response: a fixed public message per error kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable error code.
    pub code: String,
    /// A message a user can act on; never contains secrets or internal detail.
    pub message: String,
}

/// `GET /v1/service-key` response: the attestation service's envelope public key, to which
/// instance bundles exported for this service are sealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceKeyDocument {
    /// The service's public key, in the sealed envelope's text form (`cloister-hpke-x25519:…`).
    pub public_key: String,
    /// The envelope key id of `public_key` (first 16 bytes of SHA-256 of the raw key).
    pub key_id: Hex,
    /// When the service runs in a TEE: its evidence, whose `runtime_data.hpke_pk` is
    /// `public_key`. Absent for a service outside a TEE; exporting to such a service needs the
    /// exporter's explicit consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<UnifiedEvidence>,
}
