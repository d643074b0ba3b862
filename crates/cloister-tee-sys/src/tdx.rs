//! `/dev/tdx_guest` (Intel TDX guest driver), `include/uapi/linux/tdx-guest.h`.
//!
//! Only the TDREPORT: it is MACed with a key of this CPU and verifiable only on it. A quote
//! that verifies remotely needs the host's Quote Generation Service; Linux ≥ 6.7 obtains one
//! through configfs-tsm, which `cloister-attest` prefers.

use std::mem::size_of;

use crate::ioc::iowr;

/// Length of `reportdata` (`TDX_REPORTDATA_LEN`).
pub const TDX_REPORTDATA_LEN: usize = 64;
/// Length of the TDREPORT (`TDX_REPORT_LEN`).
pub const TDX_REPORT_LEN: usize = 1024;

/// `TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)` = `0xc4405401`.
pub const TDX_CMD_GET_REPORT0: u32 = iowr(b'T', 1, size_of::<TdxReportReq>());

/// `struct tdx_report_req`: the data to bind, and room for the TDREPORT the module returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdxReportReq {
    /// Placed in the TDREPORT's `REPORTDATA`.
    pub reportdata: [u8; TDX_REPORTDATA_LEN],
    /// Filled by the TDX module (`TDREPORT_STRUCT`).
    pub tdreport: [u8; TDX_REPORT_LEN],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_size_and_ioctl_number_match_the_uapi_header() {
        assert_eq!(size_of::<TdxReportReq>(), 64 + 1024);
        assert_eq!(TDX_CMD_GET_REPORT0, 0xc440_5401);
    }
}
