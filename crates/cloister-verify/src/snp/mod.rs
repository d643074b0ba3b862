//! AMD SEV-SNP attestation reports: VCEK/VLEK chain to the AMD roots, TCB and policy.
//!
//! Not implemented yet: the driver refuses all evidence.

use cloister_types::{Claims, TeeKind};

use crate::error::VerifyError;
use crate::inputs::Inputs;

/// Why snp evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// The evidence is not in the expected format.
    #[error("snp: evidence is malformed: {0}")]
    Malformed(String),
}

/// The driver for [`TeeKind::Snp`].
pub(crate) struct SnpDriver;

impl crate::Driver for SnpDriver {
    fn verify(&self, _evidence: &[u8], _inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Err(VerifyError::UnsupportedTee(TeeKind::Snp))
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let _ = bytes;
}
