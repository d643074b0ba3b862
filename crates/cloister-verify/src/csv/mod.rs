//! Hygon CSV attestation reports: HRK → HSK → CEK → PEK → report with SM2/SM3.
//!
//! Not implemented yet: the driver refuses all evidence.

use cloister_types::{Claims, TeeKind};

use crate::error::VerifyError;
use crate::inputs::Inputs;

/// Why csv evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The evidence is not in the expected format.
    #[error("csv: evidence is malformed: {0}")]
    Malformed(String),
}

/// The driver for [`TeeKind::Csv`].
pub(crate) struct CsvDriver;

impl crate::Driver for CsvDriver {
    fn verify(&self, _evidence: &[u8], _inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Err(VerifyError::UnsupportedTee(TeeKind::Csv))
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let _ = bytes;
}
