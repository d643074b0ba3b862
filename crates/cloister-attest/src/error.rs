//! Why evidence could not be collected.

use std::path::PathBuf;

use cloister_types::CanonicalJsonError;

/// Evidence collection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "creating directory", …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The simulated platform key file is not a PKCS#8 PEM P-256 key.
    #[error("the sim platform key is not a PKCS#8 PEM P-256 private key: {0}")]
    KeyDecode(#[source] p256::pkcs8::Error),
    /// The simulated platform key could not be encoded.
    #[error("the sim platform key could not be encoded as PKCS#8 PEM: {0}")]
    KeyEncode(#[source] p256::pkcs8::Error),
    /// The runtime data has no canonical JSON form, so it cannot be bound.
    #[error("runtime data has no canonical JSON form, so it cannot be bound: {0}")]
    RuntimeData(#[source] CanonicalJsonError),
    /// The report could not be encoded.
    #[error("the sim report could not be encoded: {0}")]
    Encode(#[source] CanonicalJsonError),
    /// The platform key failed to sign.
    #[error("the sim platform key failed to sign the report")]
    Sign,
    /// The system clock reads before 1970, so `issued_at` cannot be set.
    #[error("the system clock is before the unix epoch")]
    Clock,
    /// An ioctl on a TEE guest device failed.
    #[error("{ioctl} on {device}: {source}")]
    Ioctl {
        /// The ioctl (`SNP_GET_REPORT`, `NSM_IOCTL_RAW`, …).
        ioctl: &'static str,
        /// The device.
        device: PathBuf,
        /// The cause, with any firmware error code.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A device or file answered something that is not what its interface specifies.
    #[error("{path}: {what}")]
    Malformed {
        /// Where the bytes came from.
        path: PathBuf,
        /// What is wrong with them.
        what: String,
    },
    /// The evidence does not carry the `report_data` that was requested: something else wrote
    /// to the interface at the same time, or it ignored the request.
    #[error("{path}: the evidence binds report_data {found}, not the {expected} requested")]
    ReportDataMismatch {
        /// Where the evidence came from.
        path: PathBuf,
        /// The requested value (hex).
        expected: String,
        /// The value in the evidence (hex).
        found: String,
    },
    /// configfs-tsm: the report's `generation` changed between writing the request and reading
    /// the evidence every time: another process is writing to the same report directory.
    #[error(
        "{dir}: generation changed while the report was read ({attempts} attempts): another \
         process wrote to this configfs-tsm report at the same time"
    )]
    GenerationRace {
        /// The report directory.
        dir: PathBuf,
        /// How many times it was tried.
        attempts: u32,
    },
    /// configfs-tsm names a provider this crate does not know.
    #[error(
        "{path}: unknown configfs-tsm provider {provider:?} (known: tdx_guest, sev_guest, arm_cca_guest)"
    )]
    UnknownProvider {
        /// The `provider` file.
        path: PathBuf,
        /// What it says.
        provider: String,
    },
    /// The provider changed since the attester was set up (a different TEE driver loaded).
    #[error("{path}: provider is {found:?}, but this attester was set up for {expected:?}")]
    ProviderChanged {
        /// The `provider` file.
        path: PathBuf,
        /// The provider seen when the attester was created.
        expected: String,
        /// The provider now.
        found: String,
    },
    /// Gramine's `/dev/attestation` is not configured for DCAP quotes.
    #[error(
        "{path}: attestation type is {found:?}, not \"dcap\" (set sgx.remote_attestation = \"dcap\" in the Gramine manifest)"
    )]
    NotDcap {
        /// The `attestation_type` file.
        path: PathBuf,
        /// What it says.
        found: String,
    },
    /// The Nitro Secure Module answered with an error code.
    #[error("{device}: the NSM refused the attestation request: {code}")]
    Nsm {
        /// The device.
        device: PathBuf,
        /// The NSM's error code (`InvalidArgument`, `InputTooLarge`, …).
        code: String,
    },
    /// NVML (NVIDIA's management library) failed or could not be loaded.
    #[error("NVIDIA GPU: {0}")]
    Nvml(#[from] cloister_tee_sys::nvml::NvmlError),
    /// The GPUs cannot give confidential-computing evidence (CC mode off, devtools on, none).
    #[error("NVIDIA GPU: {0}")]
    GpuNotConfidential(String),
    /// A configured input is out of the range the interface accepts.
    #[error("{0}")]
    InvalidInput(String),
    /// This interface cannot produce remotely verifiable evidence by itself.
    #[error("{0}")]
    Unsupported(String),
    /// No TEE attestation interface was found (of the TEE `wanted`, when one was named).
    #[error(
        "no {} attestation interface found; looked for:\n{}",
        wanted.map_or("TEE".to_owned(), |tee| tee.to_string()),
        looked_for.join("\n")
    )]
    NoTee {
        /// The TEE asked for; `None` when any would do.
        wanted: Option<cloister_types::TeeKind>,
        /// Each place looked at, with what was found there.
        looked_for: Vec<String>,
    },
}
