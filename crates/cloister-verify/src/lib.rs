//! Evidence verification: unified evidence in, [`VerifiedEvidence`] out, or a typed reason why not.
//!
//! This crate is pure: no I/O, no clock. The verification time is a parameter and collateral
//! arrives inside the evidence or the [`TrustAnchors`], so results are reproducible.
//!
//! [`verify`] checks the unified-evidence version, hands the vendor evidence to the driver of its
//! TEE (which checks the signature chain up to a trust anchor and the structure, and returns
//! normalised [`Claims`]), then **always** checks the binding: the `report_data` inside the
//! evidence must equal the SHA-512 of the runtime data that came with it, byte for byte. There
//! is no way to skip a check, and a [`VerifiedEvidence`] exists only as the result of one that
//! passed.
//!
//! Drivers: `sim` (the simulated TEE, development only). Every other TEE is refused with
//! [`VerifyError::UnsupportedTee`] until its driver exists.

mod anchors;
mod error;
pub mod sim;

use cloister_types::{
    Claims, ReportData, RuntimeData, TeeKind, UnifiedEvidence, evidence::UNIFIED_EVIDENCE_VERSION,
};
use subtle::ConstantTimeEq as _;

pub use crate::anchors::{
    SIM_PLATFORM_KEY_PREFIX, SimPlatformKeyTextError, SimPlatformPublicKey, TrustAnchors,
};
pub use crate::error::{SimError, VerifyError};

/// Evidence that passed every check of [`verify`], with the claims it supports.
///
/// It cannot be built any other way: the fields are private, and there is no constructor,
/// `Default` or `Deserialize`. Code that needs verified evidence (key release, certificates)
/// takes this type, so it cannot be handed unverified claims.
#[derive(Clone, Debug)]
pub struct VerifiedEvidence {
    claims: Claims,
    runtime_data: RuntimeData,
}

impl VerifiedEvidence {
    /// The normalised claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The runtime data the evidence is bound to (nonce and enclave keys).
    pub fn runtime_data(&self) -> &RuntimeData {
        &self.runtime_data
    }

    /// Which TEE produced the evidence.
    pub fn tee(&self) -> TeeKind {
        self.claims.tee
    }

    /// The claims and the runtime data, by value.
    pub fn into_parts(self) -> (Claims, RuntimeData) {
        (self.claims, self.runtime_data)
    }
}

/// Verifies `evidence` against `anchors` at the time `now_unix` (unix seconds).
///
/// Succeeds only if the format version is known, the TEE's driver accepts the vendor evidence
/// (signature chain to one of `anchors`, structure, freshness) and the evidence's `report_data`
/// equals `evidence.runtime_data.report_data()` exactly.
pub fn verify(
    evidence: &UnifiedEvidence,
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<VerifiedEvidence, VerifyError> {
    if evidence.version != UNIFIED_EVIDENCE_VERSION {
        return Err(VerifyError::UnsupportedVersion(evidence.version));
    }
    let driver = driver_for(evidence.tee).ok_or(VerifyError::UnsupportedTee(evidence.tee))?;
    if !evidence.additional_evidence.is_empty() {
        return Err(VerifyError::UnsupportedAdditionalEvidence(
            evidence.additional_evidence.keys().cloned().collect(),
        ));
    }
    let claims = driver.verify(evidence, anchors, now_unix)?;
    check_binding(&claims, &evidence.runtime_data)?;
    Ok(VerifiedEvidence { claims, runtime_data: evidence.runtime_data.clone() })
}

/// The binding check every piece of evidence goes through, whatever its TEE.
fn check_binding(claims: &Claims, runtime_data: &RuntimeData) -> Result<(), VerifyError> {
    let in_evidence = ReportData::from_slice(claims.report_data.as_bytes())
        .map_err(|e| VerifyError::ReportDataLength(e.0))?;
    let expected = runtime_data.report_data().map_err(VerifyError::RuntimeData)?;
    if bool::from(in_evidence.0.ct_eq(&expected.0)) {
        Ok(())
    } else {
        Err(VerifyError::ReportDataMismatch)
    }
}

/// One TEE's verifier: vendor evidence in, normalised claims out.
///
/// A driver checks the vendor signature chain up to `anchors`, the structure and the freshness of
/// the evidence, and returns claims whose `tee` is its own TEE. It does not check the binding to
/// the runtime data: [`verify`] does that for every driver.
pub(crate) trait Driver: Sync {
    fn verify(
        &self,
        evidence: &UnifiedEvidence,
        anchors: &TrustAnchors,
        now_unix: i64,
    ) -> Result<Claims, VerifyError>;
}

/// The registry of drivers: adding a TEE means adding one arm here.
fn driver_for(tee: TeeKind) -> Option<&'static dyn Driver> {
    match tee {
        TeeKind::Sim => Some(&sim::SimDriver),
        _ => None,
    }
}

/// Entry points for fuzz targets; not part of the stable API.
#[doc(hidden)]
pub mod internal {
    /// Parses sim evidence bytes (no signature, anchor or time checks); must never panic.
    pub fn parse_sim_evidence(
        bytes: &[u8],
    ) -> Result<crate::sim::ParsedSimEvidence, crate::SimError> {
        crate::sim::parse(bytes)
    }
}
