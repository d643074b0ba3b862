//! SGX DCAP quotes through Gramine's `/dev/attestation` pseudo-files: write the 64 bytes of
//! `report_data` to `user_report_data`, read `quote`. `attestation_type` must say `dcap`
//! (manifest: `sgx.remote_attestation = "dcap"`). The directory is configurable, for tests and
//! for other runtimes that expose the same pseudo-files.

use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;

use cloister_types::{RuntimeData, TeeKind, UnifiedEvidence};

use crate::{AttestError, Attester, io_error, malformed};

/// Offset of `report_data` in an SGX quote (version 3: 48-byte header, then the 384-byte
/// report body with `report_data` at its offset 320).
const QUOTE_REPORT_DATA: std::ops::Range<usize> = 368..432;

/// Attester over Gramine's `/dev/attestation`.
#[derive(Debug)]
pub struct GramineAttestation {
    dir: PathBuf,
    // The pseudo-files are shared by the process: one write/read exchange at a time.
    lock: Mutex<()>,
}

impl Default for GramineAttestation {
    fn default() -> Self {
        Self::new(Self::DEFAULT_DIR)
    }
}

impl GramineAttestation {
    /// Gramine's directory.
    pub const DEFAULT_DIR: &'static str = "/dev/attestation";

    /// The pseudo-files under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), lock: Mutex::new(()) }
    }

    /// Checks that `attestation_type` is `dcap`.
    pub fn check_type(&self) -> Result<(), AttestError> {
        let path = self.dir.join("attestation_type");
        let bytes = fs::read(&path).map_err(|e| io_error("reading", &path, e))?;
        let found = String::from_utf8_lossy(&bytes)
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_owned();
        if found == "dcap" { Ok(()) } else { Err(AttestError::NotDcap { path, found }) }
    }
}

impl Attester for GramineAttestation {
    fn tee(&self) -> TeeKind {
        TeeKind::Sgx
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = crate::report_data_of(runtime_data)?;
        self.check_type()?;
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let user_report_data = self.dir.join("user_report_data");
        fs::OpenOptions::new()
            .write(true)
            .open(&user_report_data)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &report_data))
            .map_err(|e| io_error("writing", &user_report_data, e))?;
        let quote_path = self.dir.join("quote");
        let quote = fs::read(&quote_path).map_err(|e| io_error("reading", &quote_path, e))?;
        match quote.get(0..8) {
            Some([3 | 4, 0, _, _, 0, 0, 0, 0]) => {}
            _ => {
                return Err(malformed(
                    &quote_path,
                    "not an SGX quote (expected version 3 or 4 and TEE type 0)",
                ));
            }
        }
        let found = quote.get(QUOTE_REPORT_DATA).ok_or_else(|| {
            malformed(&quote_path, format!("SGX quote of {} bytes is truncated", quote.len()))
        })?;
        crate::check_report_data(&quote_path, &report_data, found)?;
        Ok(crate::unified(TeeKind::Sgx, quote, runtime_data, &[]))
    }
}
