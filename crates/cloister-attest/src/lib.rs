//! Evidence collection inside a TEE: an [`Attester`] turns runtime data (nonce and enclave keys)
//! into [`UnifiedEvidence`] whose `report_data` binds that data.
//!
//! Backends: [`SimAttester`], the simulated TEE, for development only. Hardware backends
//! (configfs-tsm, guest devices) will implement the same trait.

mod error;
mod sim;

use cloister_types::{RuntimeData, TeeKind, UnifiedEvidence};

pub use crate::error::AttestError;
pub use crate::sim::{SimAttester, SimPlatformKey, measure_file};

/// Collects evidence from the TEE the current process runs in.
pub trait Attester: Send + Sync {
    /// Which TEE this attester speaks for.
    fn tee(&self) -> TeeKind;

    /// Produces evidence whose `report_data` is `runtime_data.report_data()`.
    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError>;
}
