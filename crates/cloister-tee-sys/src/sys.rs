//! The `ioctl(2)` calls: the only `unsafe` code in the workspace. Each wrapper builds the
//! argument structure from buffers it borrows for the duration of the call, so the addresses the
//! kernel follows are valid and large enough, then checks what the kernel reports back.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use crate::csv::{CSV_CMD_GET_REPORT, CSV_REPORT_INPUT_DATA_LEN, CsvReportReq};
use crate::nsm::{NSM_IOCTL_RAW, NSM_REQUEST_MAX_SIZE, NsmIovec, NsmRaw};
use crate::sev::{
    SNP_CERTS_MAX_LEN, SNP_GET_EXT_REPORT, SNP_GET_REPORT, SNP_MSG_VERSION, SNP_REPORT_RESP_LEN,
    SnpExtReportReq, SnpGuestError, SnpGuestRequestIoctl, SnpReportReq,
};
use crate::tdx::{TDX_CMD_GET_REPORT0, TDX_REPORT_LEN, TDX_REPORTDATA_LEN, TdxReportReq};

/// Issues `ioctl(fd, request, arg)`.
///
/// # Safety
///
/// `T` must be the argument type the driver behind `file` expects for `request` (in size and
/// layout), and every user address stored inside `*arg` must point to memory that is valid for
/// the reads and writes the driver performs, for the whole call.
unsafe fn ioctl<T>(file: &File, request: u32, arg: &mut T) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: `file` is open, so its descriptor is valid for the call; `arg` is a live
        // exclusive borrow of a `T` the caller vouches for (see this function's contract), so
        // the kernel reads and writes exactly `size_of::<T>()` bytes of valid memory through it.
        let rc = unsafe {
            libc::ioctl(file.as_raw_fd(), request as libc::Ioctl, std::ptr::from_mut(arg))
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, request, arg);
        Err(io::Error::new(io::ErrorKind::Unsupported, "TEE guest ioctls exist only on Linux"))
    }
}

fn address<T>(buffer: &mut [T]) -> u64 {
    buffer.as_mut_ptr() as usize as u64
}

/// `SNP_GET_REPORT` on an opened `/dev/sev-guest`: returns the [`SNP_REPORT_RESP_LEN`]-byte
/// response buffer (the firmware's `MSG_REPORT_RSP`, parsed by the caller).
pub fn snp_get_report(file: &File, req: &SnpReportReq) -> Result<Vec<u8>, SnpGuestError> {
    let mut req = *req;
    let mut resp = vec![0u8; SNP_REPORT_RESP_LEN];
    let mut arg = SnpGuestRequestIoctl {
        msg_version: SNP_MSG_VERSION,
        req_data: std::ptr::from_mut(&mut req) as usize as u64,
        resp_data: address(&mut resp),
        exitinfo2: 0,
    };
    // SAFETY: SNP_GET_REPORT takes a `struct snp_guest_request_ioctl`, which
    // `SnpGuestRequestIoctl` mirrors; `req_data` points to `req`, a live `struct snp_report_req`
    // the driver only reads, and `resp_data` to `resp`, a live buffer of exactly
    // `sizeof(struct snp_report_resp)` = 4000 bytes the driver writes; both outlive the call.
    let result = unsafe { ioctl(file, SNP_GET_REPORT, &mut arg) };
    match result {
        Ok(()) => Ok(resp),
        Err(source) => Err(SnpGuestError {
            source,
            fw_error: arg.fw_error(),
            vmm_error: arg.vmm_error(),
            certs_len: 0,
        }),
    }
}

/// `SNP_GET_EXT_REPORT` on an opened `/dev/sev-guest`: the response buffer as
/// [`snp_get_report`], and the host's certificate table written into `certs`, whose length
/// must be a non-zero multiple of 4096 and at most [`SNP_CERTS_MAX_LEN`].
pub fn snp_get_ext_report(
    file: &File,
    req: &SnpReportReq,
    certs: &mut [u8],
) -> Result<Vec<u8>, SnpGuestError> {
    let invalid = |what: &str| SnpGuestError {
        source: io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()),
        fw_error: 0,
        vmm_error: 0,
        certs_len: 0,
    };
    if certs.is_empty() || !certs.len().is_multiple_of(4096) || certs.len() > SNP_CERTS_MAX_LEN {
        return Err(invalid("the certificate buffer must be 4 KiB, 8 KiB, 12 KiB or 16 KiB"));
    }
    let certs_len = u32::try_from(certs.len()).map_err(|_| invalid("certificate buffer"))?;
    let mut ext = SnpExtReportReq { data: *req, certs_address: address(certs), certs_len };
    let mut resp = vec![0u8; SNP_REPORT_RESP_LEN];
    let mut arg = SnpGuestRequestIoctl {
        msg_version: SNP_MSG_VERSION,
        req_data: std::ptr::from_mut(&mut ext) as usize as u64,
        resp_data: address(&mut resp),
        exitinfo2: 0,
    };
    // SAFETY: SNP_GET_EXT_REPORT takes a `struct snp_guest_request_ioctl` (mirrored by
    // `SnpGuestRequestIoctl`) whose `req_data` points to a `struct snp_ext_report_req`: `ext`,
    // live for the call, which the driver reads and whose `certs_len` it may write back.
    // `ext.certs_address` points to `certs`, exclusively borrowed, exactly `certs_len` bytes
    // long; `resp_data` points to `resp`, 4000 bytes as `struct snp_report_resp` requires.
    let result = unsafe { ioctl(file, SNP_GET_EXT_REPORT, &mut arg) };
    match result {
        Ok(()) => Ok(resp),
        Err(source) => Err(SnpGuestError {
            source,
            fw_error: arg.fw_error(),
            vmm_error: arg.vmm_error(),
            certs_len: ext.certs_len,
        }),
    }
}

/// `TDX_CMD_GET_REPORT0` on an opened `/dev/tdx_guest`: the TDREPORT binding `reportdata`.
pub fn tdx_get_report0(
    file: &File,
    reportdata: &[u8; TDX_REPORTDATA_LEN],
) -> io::Result<[u8; TDX_REPORT_LEN]> {
    let mut req = TdxReportReq { reportdata: *reportdata, tdreport: [0; TDX_REPORT_LEN] };
    // SAFETY: TDX_CMD_GET_REPORT0 takes a `struct tdx_report_req` (64 + 1024 bytes, mirrored by
    // `TdxReportReq`, no pointers inside); `req` is live and exclusively borrowed for the call.
    unsafe { ioctl(file, TDX_CMD_GET_REPORT0, &mut req) }?;
    Ok(req.tdreport)
}

/// `NSM_IOCTL_RAW` on an opened `/dev/nsm`: sends the CBOR `request`, writes the CBOR response
/// into `response` and returns its length. `request` may be at most
/// [`NSM_REQUEST_MAX_SIZE`](crate::nsm::NSM_REQUEST_MAX_SIZE) bytes; `response` should be
/// [`NSM_RESPONSE_MAX_SIZE`](crate::nsm::NSM_RESPONSE_MAX_SIZE).
pub fn nsm_raw(file: &File, request: &[u8], response: &mut [u8]) -> io::Result<usize> {
    if request.len() > NSM_REQUEST_MAX_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NSM request of {} bytes exceeds {NSM_REQUEST_MAX_SIZE}", request.len()),
        ));
    }
    let mut arg = NsmRaw {
        request: NsmIovec { addr: request.as_ptr() as usize as u64, len: request.len() as u64 },
        response: NsmIovec { addr: address(response), len: response.len() as u64 },
    };
    // SAFETY: NSM_IOCTL_RAW takes a `struct nsm_raw` (mirrored by `NsmRaw`); its request iovec
    // describes `request`, borrowed for the call and only read by the driver, and its response
    // iovec describes `response`, exclusively borrowed, with its exact length, so the driver
    // writes at most `response.len()` bytes into it.
    unsafe { ioctl(file, NSM_IOCTL_RAW, &mut arg) }?;
    let used = usize::try_from(arg.response.len).unwrap_or(usize::MAX);
    if used > response.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("NSM reported a {used}-byte response for a {}-byte buffer", response.len()),
        ));
    }
    Ok(used)
}

/// `CSV_CMD_GET_REPORT` on an opened `/dev/csv-guest`: `buffer` starts with the request (user
/// data, mnonce, SM3 digest: [`CSV_REPORT_INPUT_DATA_LEN`] bytes) and receives the report over
/// its whole length.
pub fn csv_get_report(file: &File, buffer: &mut [u8]) -> io::Result<()> {
    if buffer.len() < CSV_REPORT_INPUT_DATA_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the CSV report buffer must hold at least {CSV_REPORT_INPUT_DATA_LEN} bytes"),
        ));
    }
    let len = i32::try_from(buffer.len()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "the CSV report buffer is too large")
    })?;
    let mut req = CsvReportReq { report_data: buffer.as_mut_ptr(), len };
    // SAFETY: CSV_CMD_GET_REPORT takes a `struct csv_report_req` (pointer + int, mirrored by
    // `CsvReportReq`); its pointer is `buffer`, exclusively borrowed for the call, and `len`
    // is its exact length, which is all the driver reads from and writes to.
    unsafe { ioctl(file, CSV_CMD_GET_REPORT, &mut req) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    // These run the real system call against /dev/null, which has no ioctls: the kernel answers
    // ENOTTY, which proves the wrappers pass well-formed arguments and surface the error.
    use super::*;

    fn dev_null() -> File {
        File::options().read(true).write(true).open("/dev/null").unwrap_or_else(|e| panic!("{e}"))
    }

    fn is_enotty(e: &io::Error) -> bool {
        e.raw_os_error() == Some(libc::ENOTTY)
    }

    #[test]
    fn every_wrapper_reports_enotty_from_a_file_that_is_not_the_device() {
        let file = dev_null();
        let err = snp_get_report(&file, &SnpReportReq::new([1; 64], 0)).err();
        assert!(err.is_some_and(|e| is_enotty(&e.source) && e.fw_error == 0));
        let mut certs = vec![0u8; 4096];
        let err = snp_get_ext_report(&file, &SnpReportReq::new([1; 64], 0), &mut certs).err();
        assert!(err.is_some_and(|e| is_enotty(&e.source)));
        assert!(tdx_get_report0(&file, &[2; 64]).is_err_and(|e| is_enotty(&e)));
        let mut response = vec![0u8; 64];
        assert!(nsm_raw(&file, b"\xa0", &mut response).is_err_and(|e| is_enotty(&e)));
        let mut buffer = vec![0u8; 4096];
        assert!(csv_get_report(&file, &mut buffer).is_err_and(|e| is_enotty(&e)));
    }

    #[test]
    fn wrappers_refuse_bad_buffers_before_calling_the_kernel() {
        let file = dev_null();
        for len in [0, 100, 4097, SNP_CERTS_MAX_LEN + 4096] {
            let mut certs = vec![0u8; len];
            let err = snp_get_ext_report(&file, &SnpReportReq::new([0; 64], 0), &mut certs).err();
            assert!(err.is_some_and(|e| e.source.kind() == io::ErrorKind::InvalidInput), "{len}");
        }
        let big = vec![0u8; NSM_REQUEST_MAX_SIZE + 1];
        let err = nsm_raw(&file, &big, &mut [0u8; 16]).err();
        assert!(err.is_some_and(|e| e.kind() == io::ErrorKind::InvalidInput));
        let err = csv_get_report(&file, &mut [0u8; 111]).err();
        assert!(err.is_some_and(|e| e.kind() == io::ErrorKind::InvalidInput));
    }
}
