//! Unified evidence (what an attester sends) and the runtime data bound into `report_data`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::canonical::{CanonicalJsonError, canonical_json};
use crate::claims::TeeKind;
use crate::encoding::{Base64Url, Hex};

/// The only version of the unified evidence format.
pub const UNIFIED_EVIDENCE_VERSION: u32 = 1;

/// Evidence from any TEE in one JSON shape (DESIGN §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifiedEvidence {
    /// Format version; only [`UNIFIED_EVIDENCE_VERSION`] is understood.
    pub version: u32,
    /// Which TEE produced `evidence`.
    pub tee: TeeKind,
    /// The vendor evidence, in its native binary format.
    pub evidence: Base64Url,
    /// The data whose digest the attester bound into `report_data`.
    pub runtime_data: RuntimeData,
    /// Vendor collateral the attester chose to send along (certificates, TCB info).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collateral: BTreeMap<String, serde_json::Value>,
    /// Evidence from devices attached to the TEE (for example `gpu0`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_evidence: BTreeMap<String, serde_json::Value>,
}

/// Fresh data the attester binds into its evidence: the service's nonce and the enclave's keys.
///
/// `report_data` is SHA-512 over the canonical JSON of this structure (DESIGN §3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeData {
    /// The single-use challenge from the attestation service.
    pub nonce: String,
    /// The enclave's HPKE public key, in the sealed envelope's text form.
    pub hpke_pk: String,
    /// SHA-256 of the DER SubjectPublicKeyInfo of the enclave's TLS key.
    pub tls_spki_sha256: Hex,
    /// The enclave's receipt-signing public key (a party key in text form).
    pub receipt_pk: String,
    /// Further fields an attester binds; they take part in the digest like the others.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl RuntimeData {
    /// The 64 bytes an attester must put in `report_data` for this runtime data.
    pub fn report_data(&self) -> Result<ReportData, CanonicalJsonError> {
        let bytes = canonical_json(self)?;
        Ok(ReportData(Sha512::digest(&bytes).into()))
    }
}

/// The 64-byte `report_data` field of TEE evidence.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReportData(pub [u8; 64]);

impl ReportData {
    /// Takes exactly 64 bytes; any other length is an error, never padded or truncated.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ReportDataLengthError> {
        <[u8; 64]>::try_from(bytes).map(ReportData).map_err(|_| ReportDataLengthError(bytes.len()))
    }

    /// The bytes as a [`Hex`] value for claims.
    pub fn to_hex(&self) -> Hex {
        Hex(self.0.to_vec())
    }
}

impl std::fmt::Debug for ReportData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReportData({})", hex::encode(self.0))
    }
}

/// `report_data` must be exactly 64 bytes.
#[derive(Debug, thiserror::Error)]
#[error("report_data must be exactly 64 bytes, got {0}")]
pub struct ReportDataLengthError(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RuntimeData {
        RuntimeData {
            nonce: "n1".into(),
            hpke_pk: "pk".into(),
            tls_spki_sha256: Hex(vec![1, 2]),
            receipt_pk: "rk".into(),
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn report_data_is_sha512_of_canonical_json() {
        let expected = Sha512::digest(
            br#"{"hpke_pk":"pk","nonce":"n1","receipt_pk":"rk","tls_spki_sha256":"0102"}"#,
        );
        assert_eq!(sample().report_data().unwrap().0.as_slice(), expected.as_slice());
    }

    #[test]
    fn every_field_changes_the_binding() {
        let base = sample().report_data().unwrap();
        let mut other = sample();
        other.nonce = "n2".into();
        assert_ne!(other.report_data().unwrap(), base);
        let mut other = sample();
        other.extra.insert("x".into(), serde_json::json!(1));
        assert_ne!(other.report_data().unwrap(), base);
    }

    #[test]
    fn report_data_length_must_be_exact() {
        assert!(ReportData::from_slice(&[0; 64]).is_ok());
        assert_eq!(ReportData::from_slice(&[0; 32]).unwrap_err().0, 32);
        assert_eq!(ReportData::from_slice(&[0; 65]).unwrap_err().0, 65);
    }

    #[test]
    fn unknown_top_level_fields_are_refused() {
        let text = r#"{"version":1,"tee":"sim","evidence":"","runtime_data":
            {"nonce":"n","hpke_pk":"p","tls_spki_sha256":"00","receipt_pk":"r"},"bogus":1}"#;
        assert!(serde_json::from_str::<UnifiedEvidence>(text).is_err());
    }
}
