//! Wire types shared by every Cloister party: unified evidence, normalised claims, EAR attestation
//! results, jobs, grants, receipts and API bodies.
//!
//! This crate does no I/O and no cryptography beyond hashing (and reading a simulated platform's
//! P-256 public key, [`SimPlatformPublicKey`]): it defines what crosses a process
//! boundary and how it is encoded (canonical JSON, lowercase hex, unpadded base64url), so that the
//! attestation service, the enclave worker and every client agree byte for byte.

pub mod api;
pub mod batch;
pub mod canonical;
pub mod cert;
pub mod claims;
pub mod collateral;
pub mod ear;
pub mod encoding;
pub mod evidence;
pub mod job;
pub mod manage;
pub mod manifest;
pub mod model;
pub mod online;
pub mod pem;
pub mod privacy;
pub mod sim;
pub mod uar;

pub use canonical::{CanonicalJsonError, canonical_json};
pub use cert::EnclaveClaimsExtension;
pub use claims::{Attests, Claims, NotAnEnclave, TcbStatus, TeeKind, UnknownTee};
pub use collateral::{CollateralItemDigest, CollateralKey, CollateralRecord, Vendor};
pub use ear::{EarAppraisal, EarBody, EarStatus};
pub use encoding::{Base64Url, Hex};
pub use evidence::{ReportData, RuntimeData, UnifiedEvidence};
pub use job::{Grant, InputRef, InputRole, JobKind, JobSpec, OWNER_ATTRIBUTE, Receipt, ShardedJob};
pub use manifest::{DatasetManifest, ManifestField, ManifestShard};
pub use model::{ModelFormat, ModelManifest, ModelMetadata, ModelTask, TensorSpec};
pub use pem::{PemError, pem_certificates};
pub use sim::{
    SIM_PLATFORM_KEY_PREFIX, SIM_REPORT_FORMAT, SimEvidence, SimPlatformKeyTextError,
    SimPlatformPublicKey, SimReport,
};
