//! Why evidence failed to verify: one variant per check, each message naming the check.

use cloister_types::{CanonicalJsonError, TeeKind};

use crate::anchors::{SimPlatformKeyTextError, SimPlatformPublicKey};
use crate::{
    AndroidError, CcaError, CsvError, DcapError, NitroError, NvidiaError, PsaError, SnpError,
    VirtCcaError,
};

/// Evidence did not verify. Every variant is final: the evidence must not be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The unified evidence has a format version this verifier does not know.
    #[error("unified evidence version {0} is not supported (only version 1 is)")]
    UnsupportedVersion(u32),
    /// No driver exists for this TEE yet.
    #[error("verification of {0} evidence is not implemented yet")]
    UnsupportedTee(TeeKind),
    /// Device evidence (for example `gpu0`) failed; the whole evidence is refused.
    #[error("additional evidence {name}: {source}")]
    AdditionalEvidence {
        /// The entry's name.
        name: String,
        /// Why it failed.
        source: Box<VerifyError>,
    },
    /// An `additional_evidence` entry is not `{"tee", "evidence", "collateral"?}`.
    #[error("additional evidence is malformed: {0}")]
    AdditionalEvidenceShape(String),
    /// The main evidence must come from a CPU TEE.
    #[error(
        "{0} evidence cannot be the main evidence; send it as additional evidence of a CPU TEE"
    )]
    NotACpuTee(TeeKind),
    /// Only devices can be additional evidence.
    #[error("{0} is not a device TEE and cannot be additional evidence")]
    NotADevice(TeeKind),
    /// The instance lists no simulated platform key, so it accepts no sim evidence at all.
    #[error(
        "sim evidence is not accepted: this instance lists no sim platform key as a trust anchor"
    )]
    SimNotTrusted,
    /// A check of the simulated TEE's evidence failed.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A check of an Intel SGX or TDX quote failed.
    #[error(transparent)]
    Dcap(#[from] DcapError),
    /// A check of an AMD SEV-SNP report failed.
    #[error(transparent)]
    Snp(#[from] SnpError),
    /// A check of a Hygon CSV report failed.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// A check of an Arm CCA token failed.
    #[error(transparent)]
    Cca(#[from] CcaError),
    /// A check of a Huawei virtCCA token failed.
    #[error(transparent)]
    VirtCca(#[from] VirtCcaError),
    /// A check of an AWS Nitro attestation document failed.
    #[error(transparent)]
    Nitro(#[from] NitroError),
    /// A check of Android key attestation evidence failed.
    #[error(transparent)]
    Android(#[from] AndroidError),
    /// A check of NVIDIA GPU evidence failed.
    #[error(transparent)]
    Nvidia(#[from] NvidiaError),
    /// A check of an Arm PSA attestation token failed.
    #[error(transparent)]
    Psa(#[from] PsaError),
    /// The unified evidence's `collateral` object is not in the expected shape.
    #[error(
        "unified evidence collateral is malformed: {0} (expected {{\"documents\": [base64url…], \
         \"certificates\": [base64url…]}})"
    )]
    CollateralShape(String),
    /// The evidence says it is from one TEE, its driver found another.
    #[error("evidence is declared as {declared} but the verifier found {found} evidence")]
    TeeMismatch {
        /// The TEE named in the unified evidence.
        declared: TeeKind,
        /// The TEE the driver's claims name.
        found: TeeKind,
    },
    /// The runtime data cannot be hashed, so the expected `report_data` is unknown.
    #[error("runtime data has no canonical JSON form, so its report_data cannot be computed: {0}")]
    RuntimeData(#[source] CanonicalJsonError),
    /// The evidence's `report_data` is not 64 bytes; it is never padded or truncated.
    #[error("report_data in the evidence must be exactly 64 bytes, got {0}")]
    ReportDataLength(usize),
    /// The evidence is not bound to the runtime data that came with it.
    #[error(
        "report_data in the evidence does not match the runtime data (the evidence is not bound \
         to these keys and nonce)"
    )]
    ReportDataMismatch,
}

/// A check of simulated-TEE evidence failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The evidence is larger than any genuine sim evidence.
    #[error("sim: evidence is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the evidence.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The evidence is not the JSON object `{"report": …, "signature": …}`.
    #[error("sim: evidence is not a JSON object {{report, signature}} in base64url: {0}")]
    Envelope(#[source] serde_json::Error),
    /// The signature is not 64 bytes of r‖s.
    #[error("sim: signature must be 64 bytes (P-256 r||s), got {0}")]
    SignatureLength(usize),
    /// The signature bytes are not a valid P-256 ECDSA signature (r or s out of range).
    #[error("sim: signature is not a valid P-256 r||s value")]
    SignatureEncoding,
    /// The signed report is not a well-formed sim report.
    #[error("sim: report is not a well-formed sim report (JSON, known fields only): {0}")]
    Report(#[source] serde_json::Error),
    /// The report's `platform_key` is not a sim platform key.
    #[error("sim: report platform_key is malformed: {0}")]
    PlatformKey(#[source] SimPlatformKeyTextError),
    /// The report is signed by a key this instance does not trust.
    #[error(
        "sim evidence is signed by platform key {0}, which is not a trust anchor of this instance"
    )]
    UntrustedPlatformKey(SimPlatformPublicKey),
    /// The signature does not verify.
    #[error("sim: report signature does not verify with its platform key")]
    BadSignature,
    /// The report has an unknown format tag.
    #[error("sim: report format is {0:?}, expected \"cloister-sim-report-v1\"")]
    Format(String),
    /// The measurement is not a SHA-384 digest.
    #[error("sim: measurement must be 48 bytes (SHA-384), got {0}")]
    MeasurementLength(usize),
    /// `report_data` is not 64 bytes.
    #[error("sim: report_data must be exactly 64 bytes, got {0}")]
    ReportDataLength(usize),
    /// The report claims to come from the future.
    #[error(
        "sim: report issued_at {issued_at} is more than {max_skew} s after the verification time \
         {now}"
    )]
    IssuedInFuture {
        /// When the report says it was issued (unix seconds).
        issued_at: i64,
        /// The verification time (unix seconds).
        now: i64,
        /// The clock skew tolerated (seconds).
        max_skew: i64,
    },
    /// The report is too old to be fresh.
    #[error(
        "sim: report issued_at {issued_at} is stale: more than {max_age} s before the \
         verification time {now}"
    )]
    Stale {
        /// When the report says it was issued (unix seconds).
        issued_at: i64,
        /// The verification time (unix seconds).
        now: i64,
        /// The oldest age accepted (seconds).
        max_age: i64,
    },
}
