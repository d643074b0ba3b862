//! Evidence collection inside a TEE: an [`Attester`] turns runtime data (nonce and enclave keys)
//! into [`UnifiedEvidence`] whose `report_data` binds that data.
//!
//! Backends, each reading or writing only the paths it is configured with (so each is tested
//! against a fake tree of plain files):
//!
//! | backend | TEE | interface |
//! |---|---|---|
//! | [`ConfigFsTsm`] | TDX, SEV-SNP, Arm CCA | `/sys/kernel/config/tsm/report` (Linux ≥ 6.7) |
//! | [`SevGuestDevice`] | SEV-SNP | `/dev/sev-guest` (`SNP_GET_REPORT`, `SNP_GET_EXT_REPORT`) |
//! | [`GramineAttestation`] | SGX | Gramine's `/dev/attestation` (DCAP quote) |
//! | [`NsmDevice`] | AWS Nitro Enclaves | `/dev/nsm` |
//! | [`CsvGuestDevice`] | Hygon CSV | `/dev/csv-guest` |
//! | [`PsaBridge`] | Arm PSA (TF-M, OP-TEE) | a bridge directory to `psa_initial_attest_get_token` |
//! | [`SimAttester`] | the simulated TEE | none (development only) |
//! | [`WithGpus`] | a CPU TEE above with NVIDIA CC GPUs (`gpu0`, …) | NVML (`libnvidia-ml.so.1`) |
//!
//! [`TdxGuestDevice`] reads a TDREPORT from `/dev/tdx_guest` but is not an [`Attester`]: a
//! TDREPORT verifies only on the same CPU, and turning it into a quote needs the host's QGS,
//! which configfs-tsm does. [`detect`] picks the backend for the machine it runs on.
//!
//! The device ioctls themselves are in `cloister-tee-sys`, the only crate with `unsafe` code;
//! everything here (request construction, response parsing, the checks that the evidence binds
//! the requested `report_data`) is safe code with tests. [`open`] opens the interface a worker's
//! `--tee` names; `auto` never falls back to the simulated TEE.

mod csv;
mod detect;
mod error;
mod gramine;
mod nitro;
mod nvidia;
mod psa;
mod sev;
mod sim;
mod tdx;
mod tsm;

use std::collections::BTreeMap;
use std::path::Path;

use cloister_types::{Base64Url, RuntimeData, TeeKind, UnifiedEvidence};

pub use crate::csv::{CsvGuestDevice, CsvReport, build_csv_request, parse_csv_report};
pub use crate::detect::{
    BackendOptions, DetectPaths, HardwareTee, UnknownTee, detect, detect_in, open,
};
pub use crate::error::AttestError;
pub use crate::gramine::GramineAttestation;
pub use crate::nitro::{NsmDevice, encode_nsm_attestation_request, parse_nsm_attestation_response};
pub use crate::nvidia::{NvidiaGpus, WithGpus, check_spdm_nonce};
pub use crate::psa::PsaBridge;
pub use crate::sev::{
    SevGuestDevice, SnpCertificate, parse_snp_cert_table, parse_snp_report_response,
};
pub use crate::sim::{SimAttester, SimPlatformKey, measure_file};
pub use crate::tdx::{TdReport, TdxGuestDevice};
pub use crate::tsm::{ConfigFsTsm, TsmReport, TsmRequest, collect_tsm_report};

/// Collects evidence from the TEE the current process runs in.
pub trait Attester: Send + Sync {
    /// Which TEE this attester speaks for.
    fn tee(&self) -> TeeKind;

    /// Produces evidence whose `report_data` is `runtime_data.report_data()`.
    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError>;
}

/// The 64 bytes to bind for `runtime_data`.
fn report_data_of(runtime_data: &RuntimeData) -> Result<[u8; 64], AttestError> {
    Ok(runtime_data.report_data().map_err(AttestError::RuntimeData)?.0)
}

/// Unified evidence around vendor evidence bytes, with certificates (if any) as collateral in
/// the shape the verifier reads: `{"certificates": [base64url…]}`.
fn unified(
    tee: TeeKind,
    evidence: Vec<u8>,
    runtime_data: &RuntimeData,
    certificates: &[Vec<u8>],
) -> UnifiedEvidence {
    let mut collateral = BTreeMap::new();
    if !certificates.is_empty() {
        let list =
            certificates.iter().map(|c| serde_json::Value::String(Base64Url::encode(c))).collect();
        collateral.insert("certificates".to_owned(), serde_json::Value::Array(list));
    }
    UnifiedEvidence {
        version: cloister_types::evidence::UNIFIED_EVIDENCE_VERSION,
        tee,
        evidence: Base64Url(evidence),
        runtime_data: runtime_data.clone(),
        collateral,
        additional_evidence: BTreeMap::new(),
    }
}

/// Checks that `found` (the `report_data` read back from evidence at `path`) is `expected`.
fn check_report_data(path: &Path, expected: &[u8], found: &[u8]) -> Result<(), AttestError> {
    if expected == found {
        Ok(())
    } else {
        Err(AttestError::ReportDataMismatch {
            path: path.to_path_buf(),
            expected: hex::encode(expected),
            found: hex::encode(found),
        })
    }
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> AttestError {
    AttestError::Io { action, path: path.to_path_buf(), source }
}

fn malformed(path: &Path, what: impl Into<String>) -> AttestError {
    AttestError::Malformed { path: path.to_path_buf(), what: what.into() }
}
