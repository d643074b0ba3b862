//! `/dev/csv-guest` (Hygon CSV guest driver, `drivers/virt/coco/csv-guest/csv-guest.h` in Hygon's
//! kernels): one ioctl whose buffer carries the request in and the attestation report out.

use std::mem::size_of;

use crate::ioc::iowr;

/// Length of the user data bound into the report (`CSV_REPORT_USER_DATA_LEN`).
pub const CSV_REPORT_USER_DATA_LEN: usize = 64;
/// Length of the guest's nonce that keys the report's MAC (`CSV_REPORT_MNONCE_LEN`).
pub const CSV_REPORT_MNONCE_LEN: usize = 16;
/// Length of the SM3 digest of user data and nonce (`CSV_REPORT_HASH_LEN`).
pub const CSV_REPORT_HASH_LEN: usize = 32;
/// The request at the start of the buffer: user data, mnonce, SM3 digest
/// (`CSV_REPORT_INPUT_DATA_LEN`, 112 bytes); the driver refuses shorter buffers.
pub const CSV_REPORT_INPUT_DATA_LEN: usize =
    CSV_REPORT_USER_DATA_LEN + CSV_REPORT_MNONCE_LEN + CSV_REPORT_HASH_LEN;
/// The buffer size the firmware fills (one page; the report is padded to it).
pub const CSV_REPORT_BUFFER_LEN: usize = 4096;

/// `CSV_CMD_GET_REPORT = _IOWR('D', 1, struct csv_report_req)` = `0xc0104401` on 64-bit.
pub const CSV_CMD_GET_REPORT: u32 = iowr(b'D', 1, size_of::<CsvReportReq>());

/// `struct csv_report_req`: the user buffer (request in, report out) and its length.
#[repr(C)]
#[derive(Debug)]
pub struct CsvReportReq {
    /// The buffer.
    pub report_data: *mut u8,
    /// Its length (C `int`).
    pub len: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_size_and_ioctl_number_match_the_header() {
        // A pointer and an int, padded to 8 on 64-bit targets.
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(size_of::<CsvReportReq>(), 16);
            assert_eq!(CSV_CMD_GET_REPORT, 0xc010_4401);
        }
        assert_eq!(CSV_REPORT_INPUT_DATA_LEN, 112);
    }
}
