//! TDREPORTs from `/dev/tdx_guest`. Not an [`Attester`](crate::Attester): a TDREPORT is MACed
//! with a key only this CPU holds, so no remote verifier can check it. A quote (signed by the
//! TD quoting enclave, verifiable with Intel's PCS collateral) needs the host's Quote
//! Generation Service; on Linux ≥ 6.7 configfs-tsm asks it, so use
//! [`ConfigFsTsm`](crate::ConfigFsTsm) for TDX evidence.

use std::fs::File;
use std::path::{Path, PathBuf};

use cloister_tee_sys::tdx::TDX_REPORT_LEN;

use crate::{AttestError, io_error, malformed};

/// A TDREPORT (`TDREPORT_STRUCT`, 1024 bytes) and the fields a caller usually wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdReport {
    /// The whole structure.
    pub bytes: Vec<u8>,
}

impl TdReport {
    /// Offset of `REPORTDATA` in `REPORTMACSTRUCT` (after type, reserved, CPUSVN and the two
    /// 48-byte hashes).
    const REPORT_DATA: std::ops::Range<usize> = 128..192;
    /// Offset of `MRTD` in `TDINFO` (which starts at 512, after ATTRIBUTES and XFAM).
    const MR_TD: std::ops::Range<usize> = 528..576;

    /// Checks the length (exactly 1024 bytes).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() != TDX_REPORT_LEN {
            return Err(malformed(
                path,
                format!("TDREPORT of {} bytes, expected {TDX_REPORT_LEN}", bytes.len()),
            ));
        }
        Ok(Self { bytes: bytes.to_vec() })
    }

    /// `REPORTDATA`.
    pub fn report_data(&self) -> &[u8] {
        &self.bytes[Self::REPORT_DATA]
    }

    /// `MRTD`: the measurement of the TD's initial contents.
    pub fn mr_td(&self) -> &[u8] {
        &self.bytes[Self::MR_TD]
    }
}

/// `/dev/tdx_guest`.
#[derive(Clone, Debug)]
pub struct TdxGuestDevice {
    path: PathBuf,
}

impl Default for TdxGuestDevice {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PATH)
    }
}

impl TdxGuestDevice {
    /// The device node.
    pub const DEFAULT_PATH: &'static str = "/dev/tdx_guest";

    /// The device at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// A TDREPORT binding `report_data`, checked to carry it.
    pub fn td_report(&self, report_data: &[u8; 64]) -> Result<TdReport, AttestError> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io_error("opening", &self.path, e))?;
        let bytes = cloister_tee_sys::tdx_get_report0(&file, report_data).map_err(|e| {
            AttestError::Ioctl {
                ioctl: "TDX_CMD_GET_REPORT0",
                device: self.path.clone(),
                source: Box::new(e),
            }
        })?;
        let report = TdReport::parse(&self.path, &bytes)?;
        crate::check_report_data(&self.path, report_data, report.report_data())?;
        Ok(report)
    }
}
