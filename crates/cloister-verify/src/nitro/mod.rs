//! AWS Nitro Enclaves attestation documents: COSE_Sign1 ES384 and the cabundle to the AWS root.
//!
//! Not implemented yet: the driver refuses all evidence.

use cloister_types::{Claims, TeeKind};

use crate::error::VerifyError;
use crate::inputs::Inputs;

/// Why nitro evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NitroError {
    /// The evidence is not in the expected format.
    #[error("nitro: evidence is malformed: {0}")]
    Malformed(String),
}

/// The driver for [`TeeKind::Nitro`].
pub(crate) struct NitroDriver;

impl crate::Driver for NitroDriver {
    fn verify(&self, _evidence: &[u8], _inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Err(VerifyError::UnsupportedTee(TeeKind::Nitro))
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let _ = bytes;
}
