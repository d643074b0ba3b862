//! `/dev/sev-guest` (AMD SEV-SNP guest driver), `include/uapi/linux/sev-guest.h`.

use std::mem::size_of;

use crate::ioc::iowr;

/// The ioctl type letter of the SNP guest driver (`SNP_GUEST_REQ_IOC_TYPE`).
pub const SNP_GUEST_REQ_IOC_TYPE: u8 = b'S';

/// `SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)` = `0xc0205300`.
pub const SNP_GET_REPORT: u32 =
    iowr(SNP_GUEST_REQ_IOC_TYPE, 0x0, size_of::<SnpGuestRequestIoctl>());

/// `SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)` = `0xc0205302`: the
/// report plus the certificate table the host stored for this guest.
pub const SNP_GET_EXT_REPORT: u32 =
    iowr(SNP_GUEST_REQ_IOC_TYPE, 0x2, size_of::<SnpGuestRequestIoctl>());

/// The guest message version the driver accepts (`msg_version` must be 1).
pub const SNP_MSG_VERSION: u8 = 1;

/// Size of the response buffer (`struct snp_report_resp`): the firmware's `MSG_REPORT_RSP`
/// (status, report size, reserved, report) padded to 4000 bytes.
pub const SNP_REPORT_RESP_LEN: usize = 4000;

/// The largest certificate buffer the driver accepts for `SNP_GET_EXT_REPORT`
/// (`SEV_FW_BLOB_MAX_SIZE`, 16 KiB); its length must be a multiple of the 4 KiB page size.
pub const SNP_CERTS_MAX_LEN: usize = 0x4000;

/// `vmm_error` value meaning the certificate buffer was too small; `certs_len` then holds the
/// size needed (`SNP_GUEST_VMM_ERR_INVALID_LEN`).
pub const SNP_GUEST_VMM_ERR_INVALID_LEN: u32 = 1;

/// `struct snp_report_req`: the data the report binds and the VMPL it is requested for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnpReportReq {
    /// The 64 bytes placed in the report's `REPORT_DATA`.
    pub user_data: [u8; 64],
    /// The VMPL the report is for (0..=3, not below the caller's).
    pub vmpl: u32,
    /// Must be zero.
    pub rsvd: [u8; 28],
}

impl SnpReportReq {
    /// A request binding `user_data` at `vmpl`.
    pub fn new(user_data: [u8; 64], vmpl: u32) -> Self {
        Self { user_data, vmpl, rsvd: [0; 28] }
    }
}

/// `struct snp_ext_report_req`: a report request plus where the certificates go.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnpExtReportReq {
    /// The report request.
    pub data: SnpReportReq,
    /// User address of the certificate buffer.
    pub certs_address: u64,
    /// Its length (a multiple of 4096); on `SNP_GUEST_VMM_ERR_INVALID_LEN` the size needed.
    pub certs_len: u32,
}

/// `struct snp_guest_request_ioctl`: the argument of every `/dev/sev-guest` ioctl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnpGuestRequestIoctl {
    /// Must be [`SNP_MSG_VERSION`].
    pub msg_version: u8,
    /// User address of the request structure.
    pub req_data: u64,
    /// User address of the response buffer.
    pub resp_data: u64,
    /// On failure: firmware error in the low 32 bits, VMM (hypervisor) error in the high 32.
    pub exitinfo2: u64,
}

impl SnpGuestRequestIoctl {
    /// The firmware's error code (`fw_error`, low half of `exitinfo2`).
    pub fn fw_error(&self) -> u32 {
        (self.exitinfo2 & 0xffff_ffff) as u32
    }

    /// The hypervisor's error code (`vmm_error`, high half of `exitinfo2`).
    pub fn vmm_error(&self) -> u32 {
        (self.exitinfo2 >> 32) as u32
    }
}

/// A `/dev/sev-guest` ioctl failed.
#[derive(Debug)]
pub struct SnpGuestError {
    /// What the ioctl returned (`EIO` when the firmware or the hypervisor refused).
    pub source: std::io::Error,
    /// The firmware's error code (0 if none).
    pub fw_error: u32,
    /// The hypervisor's error code (0 if none); [`SNP_GUEST_VMM_ERR_INVALID_LEN`] means the
    /// certificate buffer was too small.
    pub vmm_error: u32,
    /// For `SNP_GET_EXT_REPORT`: the `certs_len` the driver wrote back (the size needed when
    /// the buffer was too small).
    pub certs_len: u32,
}

impl std::fmt::Display for SnpGuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (firmware error {:#x}, hypervisor error {:#x})",
            self.source, self.fw_error, self.vmm_error
        )?;
        if self.vmm_error == SNP_GUEST_VMM_ERR_INVALID_LEN {
            write!(f, ", certificate buffer too small: {} bytes needed", self.certs_len)?;
        }
        Ok(())
    }
}

impl std::error::Error for SnpGuestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_uapi_header() {
        // u8 user_data[64] + u32 vmpl + u8 rsvd[28].
        assert_eq!(size_of::<SnpReportReq>(), 96);
        // u8 msg_version padded to 8, then three u64.
        assert_eq!(size_of::<SnpGuestRequestIoctl>(), 32);
        // snp_report_req + u64 + u32, padded to a multiple of 8.
        assert_eq!(size_of::<SnpExtReportReq>(), 112);
        assert_eq!(std::mem::offset_of!(SnpExtReportReq, certs_address), 96);
        assert_eq!(std::mem::offset_of!(SnpGuestRequestIoctl, req_data), 8);
    }

    #[test]
    fn ioctl_numbers_match_the_uapi_header() {
        assert_eq!(SNP_GET_REPORT, 0xc020_5300);
        assert_eq!(SNP_GET_EXT_REPORT, 0xc020_5302);
    }

    #[test]
    fn exitinfo2_splits_into_firmware_and_vmm_errors() {
        let io = SnpGuestRequestIoctl {
            msg_version: 1,
            req_data: 0,
            resp_data: 0,
            exitinfo2: (1 << 32) | 0x16,
        };
        assert_eq!(io.fw_error(), 0x16);
        assert_eq!(io.vmm_error(), SNP_GUEST_VMM_ERR_INVALID_LEN);
    }
}
