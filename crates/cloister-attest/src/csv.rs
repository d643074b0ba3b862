//! Hygon CSV attestation reports from `/dev/csv-guest`. The request is the 64 bytes of user
//! data, a 16-byte nonce of the guest's choosing (`mnonce`, which keys the MAC over the PEK
//! certificate in the answer) and the SM3 digest of both; the firmware overwrites the buffer
//! with the report. In the (legacy, version 1) report the signed fields are masked with a
//! firmware nonce (`anonce`): XOR with its little-endian bytes, repeated.

use std::fs::File;
use std::path::{Path, PathBuf};

use cloister_tee_sys::csv::{CSV_REPORT_BUFFER_LEN, CSV_REPORT_INPUT_DATA_LEN};
use cloister_types::{RuntimeData, TeeKind, UnifiedEvidence};
use sm3::{Digest as _, Sm3};

use crate::{AttestError, Attester, io_error, malformed};

/// Length of a version-1 report: the 336-byte signed body, then the PEK certificate (2084),
/// chip serial number (64), reserved (32) and the MAC (32).
pub(crate) const CSV_REPORT_LEN: usize = 2548;
const REPORT_DATA: std::ops::Range<usize> = 64..128;
const MNONCE: std::ops::Range<usize> = 128..144;
const MEASURE: std::ops::Range<usize> = 144..176;
const ANONCE: std::ops::Range<usize> = 188..192;

/// The ioctl buffer for a report request (pure; what the ioctl receives): user data, mnonce,
/// SM3(user data ‖ mnonce), zero up to the page the firmware fills.
pub fn build_csv_request(user_data: &[u8; 64], mnonce: &[u8; 16]) -> Vec<u8> {
    let mut buffer = vec![0u8; CSV_REPORT_BUFFER_LEN];
    buffer[..64].copy_from_slice(user_data);
    buffer[64..80].copy_from_slice(mnonce);
    let digest = Sm3::new().chain_update(user_data).chain_update(mnonce).finalize();
    buffer[80..CSV_REPORT_INPUT_DATA_LEN].copy_from_slice(&digest);
    buffer
}

/// A version-1 CSV report and its unmasked fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvReport {
    /// The report as the verifier takes it (2548 bytes, still masked).
    pub bytes: Vec<u8>,
    /// The firmware's masking nonce.
    pub anonce: u32,
    /// `report_data`, unmasked.
    pub report_data: Vec<u8>,
    /// `mnonce`, unmasked.
    pub mnonce: Vec<u8>,
    /// The launch measurement, unmasked.
    pub measure: Vec<u8>,
}

/// Parses the first 2548 bytes of `buffer` as a version-1 report.
pub fn parse_csv_report(path: &Path, buffer: &[u8]) -> Result<CsvReport, AttestError> {
    let bytes = buffer.get(..CSV_REPORT_LEN).ok_or_else(|| {
        malformed(path, format!("CSV report of {} bytes, expected {CSV_REPORT_LEN}", buffer.len()))
    })?;
    let a = &bytes[ANONCE];
    let anonce = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
    let unmask = |range: std::ops::Range<usize>| {
        let key = anonce.to_le_bytes();
        bytes[range].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect::<Vec<u8>>()
    };
    Ok(CsvReport {
        bytes: bytes.to_vec(),
        anonce,
        report_data: unmask(REPORT_DATA),
        mnonce: unmask(MNONCE),
        measure: unmask(MEASURE),
    })
}

/// Attester over `/dev/csv-guest`. The HSK and CEK certificates the verifier needs come from
/// Hygon's KDS for this chip; pass them with [`Self::with_certificates`] to send them along.
#[derive(Clone, Debug)]
pub struct CsvGuestDevice {
    path: PathBuf,
    certificates: Vec<Vec<u8>>,
}

impl Default for CsvGuestDevice {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PATH)
    }
}

impl CsvGuestDevice {
    /// The device node.
    pub const DEFAULT_PATH: &'static str = "/dev/csv-guest";

    /// The device at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), certificates: Vec::new() }
    }

    /// Certificates (HSK, CEK, in Hygon's binary format) sent as collateral with every report.
    #[must_use]
    pub fn with_certificates(mut self, certificates: Vec<Vec<u8>>) -> Self {
        self.certificates = certificates;
        self
    }

    /// Checks that a report answers the request: `report_data` and `mnonce` come back unmasked
    /// as sent.
    pub fn check_report(
        &self,
        report: &CsvReport,
        report_data: &[u8; 64],
        mnonce: &[u8; 16],
    ) -> Result<(), AttestError> {
        crate::check_report_data(&self.path, report_data, &report.report_data)?;
        if report.mnonce != mnonce {
            return Err(malformed(&self.path, "the report's mnonce is not the one requested"));
        }
        Ok(())
    }
}

impl Attester for CsvGuestDevice {
    fn tee(&self) -> TeeKind {
        TeeKind::Csv
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = crate::report_data_of(runtime_data)?;
        let mnonce: [u8; 16] = rand::random();
        let mut buffer = build_csv_request(&report_data, &mnonce);
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io_error("opening", &self.path, e))?;
        cloister_tee_sys::csv_get_report(&file, &mut buffer).map_err(|e| AttestError::Ioctl {
            ioctl: "CSV_CMD_GET_REPORT",
            device: self.path.clone(),
            source: Box::new(e),
        })?;
        let report = parse_csv_report(&self.path, &buffer)?;
        self.check_report(&report, &report_data, &mnonce)?;
        Ok(crate::unified(TeeKind::Csv, report.bytes, runtime_data, &self.certificates))
    }
}
