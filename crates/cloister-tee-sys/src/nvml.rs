//! NVIDIA's management library (NVML), loaded at run time (`libnvidia-ml.so.1` comes with the
//! driver, never with Cloister): just the calls that collect a GPU's confidential-computing
//! evidence — the system's CC state, and per GPU the SPDM attestation report over a caller's
//! nonce and the attestation certificate chain. The structures are those of `nvml.h` (R535 and
//! later); the calls themselves are in the private `sys` module.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::path::{Path, PathBuf};

/// The library name the driver installs.
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

/// `NVML_CC_GPU_CEC_NONCE_SIZE`.
pub const NONCE_LEN: usize = 0x20;
/// `NVML_CC_GPU_ATTESTATION_REPORT_SIZE`.
pub const ATTESTATION_REPORT_MAX: usize = 0x2000;
/// `NVML_CC_GPU_CEC_ATTESTATION_REPORT_SIZE`.
pub const CEC_ATTESTATION_REPORT_MAX: usize = 0x1000;
/// `NVML_GPU_CERT_CHAIN_SIZE`.
pub const CERT_CHAIN_MAX: usize = 0x1000;
/// `NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE`.
pub const ATTESTATION_CERT_CHAIN_MAX: usize = 0x1400;

/// `nvmlConfComputeSystemState_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfComputeSystemState {
    /// `NVML_CC_SYSTEM_ENVIRONMENT_*`: 0 unavailable, 1 simulated, 2 production.
    pub environment: c_uint,
    /// `NVML_CC_SYSTEM_FEATURE_*`: 0 disabled, 1 enabled.
    pub cc_feature: c_uint,
    /// `NVML_CC_SYSTEM_DEVTOOLS_MODE_*`: 0 off, 1 on.
    pub dev_tools_mode: c_uint,
}

/// `nvmlConfComputeGpuAttestationReport_t`.
#[repr(C)]
struct AttestationReport {
    is_cec_attestation_report_present: c_uint,
    attestation_report_size: c_uint,
    cec_attestation_report_size: c_uint,
    nonce: [u8; NONCE_LEN],
    attestation_report: [u8; ATTESTATION_REPORT_MAX],
    cec_attestation_report: [u8; CEC_ATTESTATION_REPORT_MAX],
}

/// `nvmlConfComputeGpuCertificate_t`.
#[repr(C)]
struct GpuCertificate {
    cert_chain_size: c_uint,
    attestation_cert_chain_size: c_uint,
    cert_chain: [u8; CERT_CHAIN_MAX],
    attestation_cert_chain: [u8; ATTESTATION_CERT_CHAIN_MAX],
}

/// An NVML call failed, or the library could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NvmlError {
    /// The library could not be loaded, or lacks a function this crate needs (a driver older
    /// than R535 has no confidential-computing calls).
    #[error("cannot load NVML from {library}: {reason}")]
    Load {
        /// What was loaded.
        library: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// A call returned an error code.
    #[error("{call} failed: {message} (NVML error {code})")]
    Call {
        /// The function.
        call: &'static str,
        /// `nvmlReturn_t`.
        code: i32,
        /// `nvmlErrorString`.
        message: String,
    },
    /// A call answered sizes beyond its own buffers.
    #[error("{call} answered {size} bytes, more than its {max}-byte buffer")]
    Oversized {
        /// The function.
        call: &'static str,
        /// The size it reported.
        size: usize,
        /// The buffer's size.
        max: usize,
    },
}

type InitFn = unsafe extern "C" fn() -> c_int;
type CountFn = unsafe extern "C" fn(*mut c_uint) -> c_int;
type HandleFn = unsafe extern "C" fn(c_uint, *mut *mut c_void) -> c_int;
type StateFn = unsafe extern "C" fn(*mut ConfComputeSystemState) -> c_int;
type ReportFn = unsafe extern "C" fn(*mut c_void, *mut AttestationReport) -> c_int;
type CertificateFn = unsafe extern "C" fn(*mut c_void, *mut GpuCertificate) -> c_int;
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;

/// NVML, loaded and initialized; shut down on drop.
pub struct Nvml {
    init: InitFn,
    shutdown: InitFn,
    count: CountFn,
    handle: HandleFn,
    state: StateFn,
    report: ReportFn,
    certificate: CertificateFn,
    error_string: ErrorStringFn,
    // Last: the function pointers above point into it.
    _library: libloading::Library,
}

impl std::fmt::Debug for Nvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvml").finish_non_exhaustive()
    }
}

impl Nvml {
    /// Loads `library` (a path, or a name the dynamic loader searches, such as
    /// [`DEFAULT_LIBRARY`]) and calls `nvmlInit_v2`.
    pub fn open(library: &Path) -> Result<Self, NvmlError> {
        let load_error = |reason: String| NvmlError::Load { library: library.into(), reason };
        // SAFETY: loading a shared library runs its initializers; NVML's are the driver's own
        // and have no preconditions on the caller.
        let lib =
            unsafe { libloading::Library::new(library) }.map_err(|e| load_error(e.to_string()))?;
        /// Looks `name` up as a function of type `T`.
        ///
        /// # Safety
        ///
        /// `T` must be the C signature `nvml.h` declares for `name`.
        unsafe fn symbol<T: Copy>(lib: &libloading::Library, name: &str) -> Result<T, String> {
            // SAFETY: the caller vouches for the type; the symbol lives as long as `lib`, which
            // `Nvml` keeps for as long as it holds the pointer.
            unsafe { lib.get::<T>(name.as_bytes()) }.map(|s| *s).map_err(|e| format!("{name}: {e}"))
        }
        // SAFETY: each type below is the signature nvml.h declares for that function.
        let nvml = unsafe {
            Nvml {
                init: symbol(&lib, "nvmlInit_v2").map_err(load_error)?,
                shutdown: symbol(&lib, "nvmlShutdown").map_err(load_error)?,
                count: symbol(&lib, "nvmlDeviceGetCount_v2").map_err(load_error)?,
                handle: symbol(&lib, "nvmlDeviceGetHandleByIndex_v2").map_err(load_error)?,
                state: symbol(&lib, "nvmlSystemGetConfComputeState").map_err(load_error)?,
                report: symbol(&lib, "nvmlDeviceGetConfComputeGpuAttestationReport")
                    .map_err(load_error)?,
                certificate: symbol(&lib, "nvmlDeviceGetConfComputeGpuCertificate")
                    .map_err(load_error)?,
                error_string: symbol(&lib, "nvmlErrorString").map_err(load_error)?,
                _library: lib,
            }
        };
        // SAFETY: nvmlInit_v2 takes no arguments.
        let code = unsafe { (nvml.init)() };
        nvml.check("nvmlInit_v2", code)?;
        Ok(nvml)
    }

    fn check(&self, call: &'static str, code: c_int) -> Result<(), NvmlError> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: nvmlErrorString accepts any code and returns a static NUL-terminated string
        // (or null, handled).
        let text = unsafe { (self.error_string)(code) };
        let message = if text.is_null() {
            "unknown error".to_owned()
        } else {
            // SAFETY: non-null, NUL-terminated and static, as NVML documents.
            unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
        };
        Err(NvmlError::Call { call, code, message })
    }

    /// The number of GPUs NVML sees.
    pub fn device_count(&self) -> Result<u32, NvmlError> {
        let mut count: c_uint = 0;
        // SAFETY: `count` is a valid out pointer for the call.
        let code = unsafe { (self.count)(&mut count) };
        self.check("nvmlDeviceGetCount_v2", code)?;
        Ok(count)
    }

    /// The system's confidential-computing state.
    pub fn conf_compute_state(&self) -> Result<ConfComputeSystemState, NvmlError> {
        let mut state = ConfComputeSystemState::default();
        // SAFETY: `state` is a valid `nvmlConfComputeSystemState_t` out pointer.
        let code = unsafe { (self.state)(&mut state) };
        self.check("nvmlSystemGetConfComputeState", code)?;
        Ok(state)
    }

    fn device(&self, index: u32) -> Result<*mut c_void, NvmlError> {
        let mut device = std::ptr::null_mut();
        // SAFETY: `device` is a valid out pointer; NVML checks the index.
        let code = unsafe { (self.handle)(index, &mut device) };
        self.check("nvmlDeviceGetHandleByIndex_v2", code)?;
        Ok(device)
    }

    /// GPU `index`'s SPDM attestation report (GET_MEASUREMENTS request and response) over
    /// `nonce`.
    pub fn attestation_report(
        &self,
        index: u32,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Vec<u8>, NvmlError> {
        let device = self.device(index)?;
        let mut report = Box::new(AttestationReport {
            is_cec_attestation_report_present: 0,
            attestation_report_size: 0,
            cec_attestation_report_size: 0,
            nonce: *nonce,
            attestation_report: [0; ATTESTATION_REPORT_MAX],
            cec_attestation_report: [0; CEC_ATTESTATION_REPORT_MAX],
        });
        // SAFETY: `device` came from NVML; `report` is a live, exclusively borrowed
        // `nvmlConfComputeGpuAttestationReport_t` with the nonce filled in.
        let code = unsafe { (self.report)(device, &mut *report) };
        self.check("nvmlDeviceGetConfComputeGpuAttestationReport", code)?;
        let size = report.attestation_report_size as usize;
        if size > ATTESTATION_REPORT_MAX {
            return Err(NvmlError::Oversized {
                call: "nvmlDeviceGetConfComputeGpuAttestationReport",
                size,
                max: ATTESTATION_REPORT_MAX,
            });
        }
        Ok(report.attestation_report[..size].to_vec())
    }

    /// GPU `index`'s attestation certificate chain, as NVML returns it (PEM).
    pub fn attestation_certificate_chain(&self, index: u32) -> Result<Vec<u8>, NvmlError> {
        let device = self.device(index)?;
        let mut certificate = Box::new(GpuCertificate {
            cert_chain_size: 0,
            attestation_cert_chain_size: 0,
            cert_chain: [0; CERT_CHAIN_MAX],
            attestation_cert_chain: [0; ATTESTATION_CERT_CHAIN_MAX],
        });
        // SAFETY: `device` came from NVML; `certificate` is a live, exclusively borrowed
        // `nvmlConfComputeGpuCertificate_t`.
        let code = unsafe { (self.certificate)(device, &mut *certificate) };
        self.check("nvmlDeviceGetConfComputeGpuCertificate", code)?;
        let size = certificate.attestation_cert_chain_size as usize;
        if size > ATTESTATION_CERT_CHAIN_MAX {
            return Err(NvmlError::Oversized {
                call: "nvmlDeviceGetConfComputeGpuCertificate",
                size,
                max: ATTESTATION_CERT_CHAIN_MAX,
            });
        }
        Ok(certificate.attestation_cert_chain[..size].to_vec())
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: nvmlShutdown takes no arguments; it balances the nvmlInit_v2 of `open`.
        let _ = unsafe { (self.shutdown)() };
    }
}
