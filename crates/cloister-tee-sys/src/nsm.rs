//! `/dev/nsm` (AWS Nitro Secure Module), `include/uapi/linux/nsm.h`: one raw ioctl that carries a
//! CBOR request and returns a CBOR response (the encoding is `cloister-attest`'s business).

use std::mem::size_of;

use crate::ioc::iowr;

/// The ioctl type byte (`NSM_MAGIC`).
pub const NSM_MAGIC: u8 = 0x0a;
/// The largest request the driver accepts (`NSM_REQUEST_MAX_SIZE`).
pub const NSM_REQUEST_MAX_SIZE: usize = 0x1000;
/// The largest response the module produces (`NSM_RESPONSE_MAX_SIZE`).
pub const NSM_RESPONSE_MAX_SIZE: usize = 0x3000;

/// `NSM_IOCTL_RAW = _IOWR(NSM_MAGIC, 0x0, struct nsm_raw)` = `0xc0200a00`.
pub const NSM_IOCTL_RAW: u32 = iowr(NSM_MAGIC, 0, size_of::<NsmRaw>());

/// `struct nsm_iovec`: a user buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsmIovec {
    /// User address of the buffer.
    pub addr: u64,
    /// Its length; for the response, the driver writes back the length used.
    pub len: u64,
}

/// `struct nsm_raw`: the request and response buffers of one NSM call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsmRaw {
    /// The CBOR request.
    pub request: NsmIovec,
    /// Where the CBOR response goes.
    pub response: NsmIovec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_size_and_ioctl_number_match_the_uapi_header() {
        assert_eq!(size_of::<NsmIovec>(), 16);
        assert_eq!(size_of::<NsmRaw>(), 32);
        assert_eq!(NSM_IOCTL_RAW, 0xc020_0a00);
    }
}
