//! Fake TEE hardware for tests: platforms that sign evidence under **test roots**, and fake
//! device trees that hand that evidence to the real attesters.
//!
//! Every platform here makes, with keys generated on the spot, what a vendor would provide: the
//! certificate chain up to a root (which an instance lists under `trust_anchors.test_roots`),
//! the signed evidence for a given `report_data`, and the collateral the verifier needs. The
//! formats are the vendors'; only the keys are not theirs, so the verifier runs every check it
//! runs on real hardware and its claims say `"trust_anchor": "test"`.
//!
//! - [`android`]: an Android device whose test attestation root (an instance lists it under
//!   `trust_anchors.roots.android` or `test_roots.android`) certifies keys with a KeyDescription
//!   of a chosen security level and boot state;
//! - [`dcap`]: Intel SGX (quote v3) and TDX (quote v4) with the DCAP collateral (TCB info, QE
//!   identity, CRLs) as a collateral bundle;
//! - [`snp`]: AMD SEV-SNP reports signed by a VCEK under a test ARK/ASK, and the host's
//!   certificate table;
//! - [`nitro`]: AWS Nitro Enclaves attestation documents (COSE_Sign1) under a test root, and an
//!   in-process [`nitro::FakeNsm`] attester (a file cannot fake the `/dev/nsm` ioctl);
//! - [`psa`]: an Arm PSA device whose IAK (an instance lists its public key under
//!   `trust_anchors.roots.psa`) signs RFC 9783 tokens;
//! - [`tsm`]: a fake configfs-tsm report directory whose `outblob` is a FIFO answered by a
//!   thread, so the real `ConfigFsTsm` attester (in this process or in a `cloister serve
//!   worker` child) gets TDX quotes or SNP reports from a platform above.
//!
//! **Test support only.** Users list this crate under `[dev-dependencies]`; `.ci/run` fails if
//! any crate depends on it otherwise, so no test key reaches a production build.

pub mod android;
pub mod dcap;
pub mod nitro;
pub mod pki;
pub mod psa;
pub mod snp;
pub mod tsm;

/// Why a fake platform could not be made or could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FakeHwError {
    /// Making a key, a certificate, a CRL or a signature failed.
    #[error("test PKI: {0}")]
    Pki(String),
    /// Encoding evidence failed.
    #[error("encoding {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A fake device tree could not be set up.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The runtime data's `report_data`, as every attester binds it.
pub(crate) fn report_data_of(
    runtime_data: &cloister_types::RuntimeData,
) -> Result<[u8; 64], cloister_attest::AttestError> {
    Ok(runtime_data.report_data().map_err(cloister_attest::AttestError::RuntimeData)?.0)
}

/// Unified evidence around vendor evidence bytes, certificates (if any) as collateral in the
/// shape the attesters write: `{"certificates": [base64url…]}`.
pub(crate) fn unified(
    tee: cloister_types::TeeKind,
    evidence: Vec<u8>,
    runtime_data: &cloister_types::RuntimeData,
    certificates: &[Vec<u8>],
) -> cloister_types::UnifiedEvidence {
    use cloister_types::Base64Url;
    let mut collateral = std::collections::BTreeMap::new();
    if !certificates.is_empty() {
        let list =
            certificates.iter().map(|c| serde_json::Value::String(Base64Url::encode(c))).collect();
        collateral.insert("certificates".to_owned(), serde_json::Value::Array(list));
    }
    cloister_types::UnifiedEvidence {
        version: cloister_types::evidence::UNIFIED_EVIDENCE_VERSION,
        tee,
        evidence: Base64Url(evidence),
        runtime_data: runtime_data.clone(),
        collateral,
        additional_evidence: std::collections::BTreeMap::new(),
    }
}
