//! Linux configfs-tsm (`/sys/kernel/config/tsm/report`, Linux ≥ 6.7): one interface for TDX
//! quotes, SEV-SNP reports and Arm CCA tokens.
//!
//! The protocol: `mkdir` a report directory (the kernel fills it with attribute files), write
//! the 64 bytes of `report_data` to `inblob` (and optionally `privlevel`), read `outblob` (the
//! vendor evidence), `auxblob` (SEV-SNP: the host's certificate table) and `provider`, then
//! `rmdir`. Every write increments `generation`; if it changed between the write and the end of
//! the reads, another process wrote to the same directory and the evidence may be for its
//! request, so the exchange is repeated, and refused if that keeps happening.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cloister_types::{RuntimeData, TeeKind, UnifiedEvidence};

use crate::sev::{check_snp_vmpl, parse_snp_cert_table, snp_report_data};
use crate::{AttestError, Attester, io_error, malformed};

/// How many times a report is re-requested when `generation` shows a concurrent writer.
const DEFAULT_ATTEMPTS: u32 = 3;

/// The TEE a configfs-tsm `provider` name stands for.
pub(crate) fn tee_for_provider(provider: &str) -> Option<TeeKind> {
    match provider {
        "tdx_guest" => Some(TeeKind::Tdx),
        "sev_guest" => Some(TeeKind::Snp),
        "arm_cca_guest" => Some(TeeKind::Cca),
        _ => None,
    }
}

/// What is written into a report directory.
#[derive(Clone, Copy, Debug)]
pub struct TsmRequest<'a> {
    /// Written to `inblob`: the `report_data` the evidence must bind.
    pub inblob: &'a [u8; 64],
    /// Written to `privlevel` when set (SEV-SNP: the VMPL the report is for).
    pub privlevel: Option<u32>,
}

/// What was read back from a report directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsmReport {
    /// The `provider` file (`tdx_guest`, `sev_guest`, `arm_cca_guest`).
    pub provider: String,
    /// `outblob`: the vendor evidence (TDX quote, SNP report, CCA token).
    pub outblob: Vec<u8>,
    /// `auxblob`, when the provider has one and it is not empty (SEV-SNP certificate table).
    pub auxblob: Option<Vec<u8>>,
    /// The `generation` the evidence was read at.
    pub generation: u64,
}

/// Runs the write/read exchange in an existing report directory `dir` (one the caller created
/// with `mkdir`), retrying up to `attempts` times while `generation` shows a concurrent writer.
pub fn collect_tsm_report(
    dir: &Path,
    request: &TsmRequest<'_>,
    attempts: u32,
) -> Result<TsmReport, AttestError> {
    let attempts = attempts.max(1);
    for _ in 0..attempts {
        if let Some(level) = request.privlevel {
            write_attribute(&dir.join("privlevel"), format!("{level}\n").as_bytes())?;
        }
        write_attribute(&dir.join("inblob"), request.inblob)?;
        let before = read_generation(dir)?;
        let provider = read_text(&dir.join("provider"))?;
        let outblob = read_attribute(&dir.join("outblob"))?;
        let auxblob = match fs::read(dir.join("auxblob")) {
            Ok(bytes) if bytes.is_empty() => None,
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error("reading", &dir.join("auxblob"), e)),
        };
        let after = read_generation(dir)?;
        if before != after {
            continue;
        }
        if outblob.is_empty() {
            return Err(malformed(&dir.join("outblob"), "the kernel returned no evidence"));
        }
        return Ok(TsmReport { provider, outblob, auxblob, generation: after });
    }
    Err(AttestError::GenerationRace { dir: dir.to_path_buf(), attempts })
}

fn write_attribute(path: &Path, bytes: &[u8]) -> Result<(), AttestError> {
    // No create, no truncate: configfs attributes exist once the directory does, and a
    // configfs write is one whole value.
    let mut file =
        fs::OpenOptions::new().write(true).open(path).map_err(|e| io_error("opening", path, e))?;
    file.write_all(bytes).map_err(|e| io_error("writing", path, e))
}

fn read_attribute(path: &Path) -> Result<Vec<u8>, AttestError> {
    fs::read(path).map_err(|e| io_error("reading", path, e))
}

fn read_text(path: &Path) -> Result<String, AttestError> {
    let bytes = read_attribute(path)?;
    let text = String::from_utf8(bytes).map_err(|_| malformed(path, "not UTF-8 text"))?;
    Ok(text.trim().to_owned())
}

fn read_generation(dir: &Path) -> Result<u64, AttestError> {
    let path = dir.join("generation");
    let text = read_text(&path)?;
    text.parse().map_err(|_| malformed(&path, format!("generation {text:?} is not a number")))
}

/// A report directory removed when dropped (on error paths; the success path removes it
/// explicitly to report a failure).
struct ReportDir {
    path: PathBuf,
    removed: bool,
}

impl ReportDir {
    fn create(root: &Path) -> Result<Self, AttestError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut last = None;
        for _ in 0..8 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("cloister-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path, removed: false }),
                // A leftover of an earlier process with the same id: take the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err(io_error("creating report directory", &path, e)),
            }
        }
        let (path, e) = last.unwrap_or_else(|| (root.to_path_buf(), io::ErrorKind::Other.into()));
        Err(io_error("creating report directory", &path, e))
    }

    fn remove(mut self) -> Result<(), AttestError> {
        self.removed = true;
        fs::remove_dir(&self.path).map_err(|e| io_error("removing report directory", &self.path, e))
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        if !self.removed {
            // Best effort on an error path; the error being returned is the one that matters.
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// Attester over configfs-tsm. [`ConfigFsTsm::probe`] creates a report directory once to
/// learn the provider, so [`Attester::tee`] is known up front; each attestation then uses a
/// fresh directory. [`ConfigFsTsm::with_report_dir`] instead uses one existing directory (only
/// root may `mkdir` under configfs-tsm: a privileged setup step can create the directory and
/// hand its attribute files to the worker's user).
#[derive(Clone, Debug)]
pub struct ConfigFsTsm {
    root: PathBuf,
    fixed_dir: Option<PathBuf>,
    provider: String,
    tee: TeeKind,
    privlevel: Option<u32>,
    attempts: u32,
}

impl ConfigFsTsm {
    /// Where the kernel mounts the report interface.
    pub const DEFAULT_ROOT: &'static str = "/sys/kernel/config/tsm/report";

    /// Probes [`Self::DEFAULT_ROOT`].
    pub fn open() -> Result<Self, AttestError> {
        Self::probe(Self::DEFAULT_ROOT)
    }

    /// Probes the report interface at `root`: creates a report directory, reads its `provider`,
    /// removes it.
    pub fn probe(root: impl Into<PathBuf>) -> Result<Self, AttestError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(io_error(
                "opening configfs-tsm (needs Linux >= 6.7 with CONFIG_TSM_REPORTS and configfs mounted)",
                &root,
                io::ErrorKind::NotFound.into(),
            ));
        }
        let dir = ReportDir::create(&root)?;
        let provider_path = dir.path.join("provider");
        let provider = read_text(&provider_path)?;
        dir.remove()?;
        let tee = tee_for_provider(&provider).ok_or_else(|| AttestError::UnknownProvider {
            path: provider_path,
            provider: provider.clone(),
        })?;
        Ok(Self {
            root,
            fixed_dir: None,
            provider,
            tee,
            privlevel: None,
            attempts: DEFAULT_ATTEMPTS,
        })
    }

    /// Uses the existing report directory `dir` for every attestation, without creating or
    /// removing it; reads its `provider` now.
    pub fn with_report_dir(dir: impl Into<PathBuf>) -> Result<Self, AttestError> {
        let dir = dir.into();
        let provider_path = dir.join("provider");
        let provider = read_text(&provider_path)?;
        let tee = tee_for_provider(&provider).ok_or_else(|| AttestError::UnknownProvider {
            path: provider_path,
            provider: provider.clone(),
        })?;
        let root = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            root,
            fixed_dir: Some(dir),
            provider,
            tee,
            privlevel: None,
            attempts: DEFAULT_ATTEMPTS,
        })
    }

    /// Requests reports for privilege level `level` (SEV-SNP VMPL 0..=3; the kernel refuses
    /// levels below its `privlevel_floor`).
    #[must_use]
    pub fn with_privlevel(mut self, level: u32) -> Self {
        self.privlevel = Some(level);
        self
    }

    /// The provider found by [`Self::probe`].
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The report interface's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Attester for ConfigFsTsm {
    fn tee(&self) -> TeeKind {
        self.tee
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = crate::report_data_of(runtime_data)?;
        let request = TsmRequest { inblob: &report_data, privlevel: self.privlevel };
        let (report, outblob_path) = match &self.fixed_dir {
            Some(dir) => (collect_tsm_report(dir, &request, self.attempts)?, dir.join("outblob")),
            None => {
                let dir = ReportDir::create(&self.root)?;
                let report = collect_tsm_report(&dir.path, &request, self.attempts)?;
                let outblob_path = dir.path.join("outblob");
                dir.remove()?;
                (report, outblob_path)
            }
        };
        if report.provider != self.provider {
            return Err(AttestError::ProviderChanged {
                path: outblob_path.with_file_name("provider"),
                expected: self.provider.clone(),
                found: report.provider,
            });
        }
        evidence_from_report(self.tee, &outblob_path, report, &request, runtime_data)
    }
}

/// Checks the evidence binds the request's `report_data` (and, for SNP, its privilege level)
/// where the format is simple enough to read here (CCA tokens are left to the verifier), and
/// wraps it, SNP certificates as collateral.
fn evidence_from_report(
    tee: TeeKind,
    outblob_path: &Path,
    report: TsmReport,
    request: &TsmRequest<'_>,
    runtime_data: &RuntimeData,
) -> Result<UnifiedEvidence, AttestError> {
    let report_data = request.inblob;
    let mut certificates = Vec::new();
    match tee {
        TeeKind::Snp => {
            let found = snp_report_data(outblob_path, &report.outblob)?;
            crate::check_report_data(outblob_path, report_data, found)?;
            // The privilege level is a separate write: check it took effect for this report.
            if let Some(level) = request.privlevel {
                check_snp_vmpl(outblob_path, &report.outblob, level)?;
            }
            if let Some(aux) = &report.auxblob {
                let auxblob_path = outblob_path.with_file_name("auxblob");
                certificates =
                    parse_snp_cert_table(&auxblob_path, aux)?.into_iter().map(|c| c.der).collect();
            }
        }
        TeeKind::Tdx => {
            let found = tdx_quote_report_data(outblob_path, &report.outblob)?;
            crate::check_report_data(outblob_path, report_data, found)?;
        }
        _ => {}
    }
    Ok(crate::unified(tee, report.outblob, runtime_data, &certificates))
}

/// The `report_data` of a TDX quote (version 4: TD report body at 48; version 5: a 6-byte body
/// descriptor first), `REPORTDATA` at offset 520 of the body.
pub(crate) fn tdx_quote_report_data<'a>(
    path: &Path,
    quote: &'a [u8],
) -> Result<&'a [u8], AttestError> {
    let version = quote
        .get(0..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| malformed(path, "TDX quote shorter than its header"))?;
    let body = match version {
        4 => 48,
        5 => 48 + 6,
        other => {
            return Err(malformed(path, format!("TDX quote version {other}, expected 4 or 5")));
        }
    };
    quote
        .get(body + 520..body + 584)
        .ok_or_else(|| malformed(path, format!("TDX quote of {} bytes is truncated", quote.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_map_to_tees() {
        assert_eq!(tee_for_provider("tdx_guest"), Some(TeeKind::Tdx));
        assert_eq!(tee_for_provider("sev_guest"), Some(TeeKind::Snp));
        assert_eq!(tee_for_provider("arm_cca_guest"), Some(TeeKind::Cca));
        assert_eq!(tee_for_provider("tdx"), None);
    }

    #[test]
    fn tdx_quote_report_data_is_read_at_the_version_offset() {
        let mut v4 = vec![0u8; 632];
        v4[0] = 4;
        v4[568..632].fill(7);
        assert_eq!(tdx_quote_report_data(Path::new("q"), &v4).ok(), Some(&[7u8; 64][..]));
        let mut v5 = vec![0u8; 638];
        v5[0] = 5;
        v5[574..638].fill(9);
        assert_eq!(tdx_quote_report_data(Path::new("q"), &v5).ok(), Some(&[9u8; 64][..]));
        assert!(tdx_quote_report_data(Path::new("q"), &v4[..600]).is_err());
        v4[0] = 3;
        assert!(tdx_quote_report_data(Path::new("q"), &v4).is_err());
    }
}
