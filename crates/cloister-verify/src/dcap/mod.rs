//! Intel SGX and TDX DCAP quotes: QE report, PCK chain, CRLs, TCB info and QE identity.
//!
//! Not implemented yet: the driver refuses all evidence.

use cloister_types::{Claims, TeeKind};

use crate::error::VerifyError;
use crate::inputs::Inputs;

/// Why dcap evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DcapError {
    /// The evidence is not in the expected format.
    #[error("dcap: evidence is malformed: {0}")]
    Malformed(String),
}

/// The driver for [`TeeKind::Sgx`].
pub(crate) struct SgxDriver;

impl crate::Driver for SgxDriver {
    fn verify(&self, _evidence: &[u8], _inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Err(VerifyError::UnsupportedTee(TeeKind::Sgx))
    }
}

/// The driver for [`TeeKind::Tdx`].
pub(crate) struct TdxDriver;

impl crate::Driver for TdxDriver {
    fn verify(&self, _evidence: &[u8], _inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Err(VerifyError::UnsupportedTee(TeeKind::Tdx))
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let _ = bytes;
}
