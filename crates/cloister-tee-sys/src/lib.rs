//! The ioctl interface of the Linux TEE guest devices, and nothing else: `#[repr(C)]` request
//! structures as the kernel's UAPI headers define them, the ioctl numbers, and one safe wrapper
//! per ioctl taking the opened device as a `&File`.
//!
//! **This is the only crate of the workspace that contains `unsafe` code**: the private `sys`
//! module (the `ioctl(2)` calls) and the foreign calls of [`nvml`]. Everything above the raw call (building the
//! request bytes, parsing what the firmware answers, checking it binds the right data) lives in
//! `cloister-attest`, in safe code with tests.
//!
//! | device | ioctl | header |
//! |---|---|---|
//! | `/dev/sev-guest` | [`sev::SNP_GET_REPORT`], [`sev::SNP_GET_EXT_REPORT`] | `include/uapi/linux/sev-guest.h` |
//! | `/dev/tdx_guest` | [`tdx::TDX_CMD_GET_REPORT0`] | `include/uapi/linux/tdx-guest.h` |
//! | `/dev/nsm` | [`nsm::NSM_IOCTL_RAW`] | `include/uapi/linux/nsm.h` |
//! | `/dev/csv-guest` | [`csv::CSV_CMD_GET_REPORT`] | Hygon `drivers/virt/coco/csv-guest/csv-guest.h` |
//!
//! And [`nvml::Nvml`]: NVIDIA's management library loaded at run time, for a confidential GPU's
//! SPDM evidence (its `unsafe` is the foreign calls, in that module).

pub mod csv;
pub mod ioc;
pub mod nsm;
pub mod nvml;
pub mod sev;
pub mod tdx;

mod sys;

pub use crate::sys::{
    csv_get_report, nsm_raw, snp_get_ext_report, snp_get_report, tdx_get_report0,
};
