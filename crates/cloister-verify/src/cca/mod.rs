//! Arm CCA attestation tokens: platform token (CPAK) and realm token (RAK) in COSE_Sign1.
//!
//! Not implemented yet: the driver refuses all evidence.

use cloister_types::{Claims, TeeKind};

use crate::error::VerifyError;
use crate::inputs::Inputs;

/// Why cca evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CcaError {
    /// The evidence is not in the expected format.
    #[error("cca: evidence is malformed: {0}")]
    Malformed(String),
}

/// The driver for [`TeeKind::Cca`].
pub(crate) struct CcaDriver;

impl crate::Driver for CcaDriver {
    fn verify(&self, _evidence: &[u8], _inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Err(VerifyError::UnsupportedTee(TeeKind::Cca))
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let _ = bytes;
}
