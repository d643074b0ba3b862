//! SEV-SNP reports from `/dev/sev-guest`, and the SNP formats shared with configfs-tsm: the
//! firmware's `MSG_REPORT_RSP` and the host's certificate table (GHCB specification).

use std::fs::File;
use std::path::{Path, PathBuf};

use cloister_tee_sys::sev::{SNP_CERTS_MAX_LEN, SnpReportReq};
use cloister_types::{RuntimeData, TeeKind, UnifiedEvidence};

use crate::{AttestError, Attester, io_error, malformed};

/// Size of an SNP attestation report (versions 2 to 5).
pub(crate) const SNP_REPORT_LEN: usize = 0x4a0;
/// Offset and length of `REPORT_DATA` in the report.
const SNP_REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;
/// The `MSG_REPORT_RSP` header before the report: status, report size, 24 reserved bytes.
const MSG_REPORT_RSP_HEADER: usize = 0x20;

/// Certificate-table GUIDs (GHCB specification), in their textual byte order, and their names.
const KNOWN_GUIDS: [([u8; 16], &str); 5] = [
    (guid(0x63da758d, 0xe664, 0x4564, [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd]), "VCEK"),
    (guid(0xa8074bc2, 0xa25a, 0x483e, [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1]), "VLEK"),
    (guid(0x4ab7b379, 0xbbac, 0x4fe4, [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82]), "ASK"),
    (guid(0xc0b406a4, 0xa803, 0x4952, [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae]), "ARK"),
    (guid(0x92f81bc3, 0x5811, 0x4d3d, [0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc, 0x67, 0xea]), "CRL"),
];

const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

/// One entry of the host's certificate table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpCertificate {
    /// The entry's GUID.
    pub guid: [u8; 16],
    /// `VCEK`, `VLEK`, `ASK`, `ARK`, `CRL`, or `None` for a GUID this crate does not name.
    pub name: Option<&'static str>,
    /// The certificate (DER) or other blob.
    pub der: Vec<u8>,
}

/// Parses a certificate table (`auxblob`, or the `SNP_GET_EXT_REPORT` buffer): 24-byte entries
/// (GUID, offset, length, little-endian) ending with an all-zero entry, each blob inside the
/// table. An all-zero table is empty.
pub fn parse_snp_cert_table(path: &Path, table: &[u8]) -> Result<Vec<SnpCertificate>, AttestError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let entry = table
            .get(at..at + 24)
            .ok_or_else(|| malformed(path, "certificate table has no terminating entry"))?;
        if entry.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&entry[..16]);
        let offset = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]) as usize;
        let length = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]) as usize;
        let der = offset
            .checked_add(length)
            .and_then(|end| table.get(offset..end))
            .filter(|blob| !blob.is_empty())
            .ok_or_else(|| {
                malformed(
                    path,
                    format!(
                        "certificate table entry {} points outside the table ({length} bytes at {offset})",
                        out.len()
                    ),
                )
            })?;
        let name = KNOWN_GUIDS.iter().find(|(g, _)| *g == guid).map(|(_, n)| *n);
        out.push(SnpCertificate { guid, name, der: der.to_vec() });
        at += 24;
    }
}

/// The report inside the firmware's `MSG_REPORT_RSP` (the `SNP_GET_REPORT` response buffer):
/// status 0, a report size of 1184 bytes, the report after the 32-byte header.
pub fn parse_snp_report_response(path: &Path, response: &[u8]) -> Result<Vec<u8>, AttestError> {
    let header = response
        .get(..8)
        .ok_or_else(|| malformed(path, "report response shorter than its header"))?;
    let status = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if status != 0 {
        let meaning = match status {
            0x16 => " (invalid parameters)",
            0x27 => " (invalid key)",
            _ => "",
        };
        return Err(malformed(path, format!("firmware status {status:#x}{meaning}")));
    }
    if size != SNP_REPORT_LEN {
        return Err(malformed(path, format!("report size {size}, expected {SNP_REPORT_LEN}")));
    }
    response
        .get(MSG_REPORT_RSP_HEADER..MSG_REPORT_RSP_HEADER + size)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| malformed(path, "report response is truncated"))
}

/// `REPORT_DATA` of an SNP report, which must be 1184 bytes.
pub(crate) fn snp_report_data<'a>(path: &Path, report: &'a [u8]) -> Result<&'a [u8], AttestError> {
    if report.len() != SNP_REPORT_LEN {
        return Err(malformed(
            path,
            format!("SNP report of {} bytes, expected {SNP_REPORT_LEN}", report.len()),
        ));
    }
    Ok(&report[SNP_REPORT_DATA])
}

/// Checks the report was produced for `vmpl` (the `VMPL` field at offset 0x30): a report for
/// another level means someone else's request was answered.
pub(crate) fn check_snp_vmpl(path: &Path, report: &[u8], vmpl: u32) -> Result<(), AttestError> {
    let found = report
        .get(0x30..0x34)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| malformed(path, "SNP report shorter than its VMPL field"))?;
    if found == vmpl {
        Ok(())
    } else {
        Err(malformed(path, format!("the report is for VMPL {found}, not the requested {vmpl}")))
    }
}

/// Attester over `/dev/sev-guest`. By default it asks for the extended report, so the VCEK (or
/// VLEK) and ASK/ARK the host cached travel with the evidence as collateral; without them the
/// verifier needs the VCEK from AMD's KDS.
#[derive(Clone, Debug)]
pub struct SevGuestDevice {
    path: PathBuf,
    vmpl: u32,
    extended: bool,
}

impl Default for SevGuestDevice {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PATH)
    }
}

impl SevGuestDevice {
    /// The device node.
    pub const DEFAULT_PATH: &'static str = "/dev/sev-guest";

    /// The device at `path`, VMPL 0, extended reports.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), vmpl: 0, extended: true }
    }

    /// Requests reports for VMPL `vmpl` (0..=3).
    #[must_use]
    pub fn with_vmpl(mut self, vmpl: u32) -> Self {
        self.vmpl = vmpl;
        self
    }

    /// Uses `SNP_GET_REPORT` only: no certificates from the host.
    #[must_use]
    pub fn without_certificates(mut self) -> Self {
        self.extended = false;
        self
    }

    /// The request structure for `report_data` (pure; what the ioctl receives).
    pub fn request(&self, report_data: [u8; 64]) -> Result<SnpReportReq, AttestError> {
        if self.vmpl > 3 {
            return Err(AttestError::InvalidInput(format!(
                "{}: VMPL {} is out of range 0..=3",
                self.path.display(),
                self.vmpl
            )));
        }
        Ok(SnpReportReq::new(report_data, self.vmpl))
    }
}

impl Attester for SevGuestDevice {
    fn tee(&self) -> TeeKind {
        TeeKind::Snp
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = crate::report_data_of(runtime_data)?;
        let request = self.request(report_data)?;
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io_error("opening", &self.path, e))?;
        let ioctl_error =
            |ioctl, e| AttestError::Ioctl { ioctl, device: self.path.clone(), source: Box::new(e) };
        let (response, certificates) = if self.extended {
            let mut certs = vec![0u8; SNP_CERTS_MAX_LEN];
            let response = cloister_tee_sys::snp_get_ext_report(&file, &request, &mut certs)
                .map_err(|e| ioctl_error("SNP_GET_EXT_REPORT", e))?;
            let table = parse_snp_cert_table(&self.path, &certs)?;
            (response, table.into_iter().map(|c| c.der).collect())
        } else {
            let response = cloister_tee_sys::snp_get_report(&file, &request)
                .map_err(|e| ioctl_error("SNP_GET_REPORT", e))?;
            (response, Vec::new())
        };
        let report = parse_snp_report_response(&self.path, &response)?;
        crate::check_report_data(&self.path, &report_data, snp_report_data(&self.path, &report)?)?;
        check_snp_vmpl(&self.path, &report, self.vmpl)?;
        Ok(crate::unified(TeeKind::Snp, report, runtime_data, &certificates))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_follow_the_textual_order() {
        assert_eq!(hex::encode(KNOWN_GUIDS[0].0), "63da758de6644564adc5f4b93be8accd");
    }
}
