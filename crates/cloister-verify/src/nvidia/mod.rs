//! NVIDIA Hopper GPU evidence: SPDM measurements signed by the device key, chain to the NVIDIA root.
//!
//! Not implemented yet: the driver refuses all evidence.

use cloister_types::{Claims, TeeKind};

use crate::error::VerifyError;
use crate::inputs::Inputs;

/// Why nvidia evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NvidiaError {
    /// The evidence is not in the expected format.
    #[error("nvidia: evidence is malformed: {0}")]
    Malformed(String),
}

/// The driver for [`TeeKind::Nvidia`].
pub(crate) struct NvidiaDriver;

impl crate::Driver for NvidiaDriver {
    fn verify(&self, _evidence: &[u8], _inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Err(VerifyError::UnsupportedTee(TeeKind::Nvidia))
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let _ = bytes;
}
