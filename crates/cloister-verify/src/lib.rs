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
//! Drivers: `sim` (the simulated TEE, development only), `sgx` and `tdx` (Intel DCAP quotes),
//! `snp` (AMD SEV-SNP), `csv` (Hygon CSV), `cca` (Arm CCA), `virtcca` (Huawei Kunpeng virtCCA),
//! `nitro` (AWS Nitro Enclaves), `nvidia` (NVIDIA Hopper GPUs, as additional evidence of a
//! CPU TEE), `psa` (Arm PSA attestation tokens of a device's secure world) and `android`
//! (Android key attestation): the last two attest a device's key, never an enclave.
//! [`verify_vendor_evidence`] runs one driver alone, for people who debug attestation: its
//! claims are not bound to any key and are never a [`VerifiedEvidence`].

mod anchors;
pub mod android;
mod cbor;
pub mod cca;
mod cose_anchor;
pub mod csv;
pub mod dcap;
mod ecdsa;
mod error;
mod inputs;
mod needs;
pub mod nitro;
pub mod nvidia;
pub mod ocsp;
pub mod psa;
pub mod sim;
pub mod snp;
pub mod virtcca;
pub mod x509;

use std::collections::BTreeMap;

use cloister_types::{
    Attests, Base64Url, Claims, ReportData, RuntimeData, TeeKind, UnifiedEvidence,
    evidence::UNIFIED_EVIDENCE_VERSION,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use crate::anchors::{
    AnchorOrigin, SIM_PLATFORM_KEY_PREFIX, SimPlatformKeyTextError, SimPlatformPublicKey,
    TrustAnchors,
};
pub use crate::android::AndroidError;
pub use crate::cca::CcaError;
pub use crate::csv::CsvError;
pub use crate::dcap::DcapError;
pub use crate::error::{SimError, VerifyError};
pub use crate::inputs::{Collateral, InputEncoding, Inputs, decode_input, is_ocsp_response};
pub use crate::needs::{CollateralKey, Vendor, collateral_expiry, collateral_needs};
pub use crate::nitro::NitroError;
pub use crate::nvidia::{NvidiaError, RimSignatureError};
pub use crate::psa::PsaError;
pub use crate::snp::SnpError;
pub use crate::virtcca::VirtCcaError;

/// Evidence that passed every check of [`verify`], with the claims it supports.
///
/// It cannot be built any other way: the fields are private, and there is no constructor,
/// `Default` or `Deserialize`. Code that needs verified evidence (key release, certificates)
/// takes this type, so it cannot be handed unverified claims.
#[derive(Clone, Debug)]
pub struct VerifiedEvidence {
    claims: Claims,
    runtime_data: RuntimeData,
    additional: BTreeMap<String, Claims>,
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

    /// Claims of the devices attached to the TEE (for example `gpu0`), each verified by its own
    /// driver and bound to the same runtime data.
    pub fn additional_claims(&self) -> &BTreeMap<String, Claims> {
        &self.additional
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
    verify_with_collateral(evidence, anchors, &CachedCollateral::new(), now_unix)
}

/// Collateral a caller holds per TEE (a service's cache, an offline bundle): each driver sees
/// only its own vendor's documents and certificates.
pub type CachedCollateral = BTreeMap<TeeKind, Collateral>;

/// Like [`verify`], with collateral the caller holds in addition to what the evidence carries.
pub fn verify_with_collateral(
    evidence: &UnifiedEvidence,
    anchors: &TrustAnchors,
    cached: &CachedCollateral,
    now_unix: i64,
) -> Result<VerifiedEvidence, VerifyError> {
    if evidence.version != UNIFIED_EVIDENCE_VERSION {
        return Err(VerifyError::UnsupportedVersion(evidence.version));
    }
    let driver = driver_for(evidence.tee).ok_or(VerifyError::UnsupportedTee(evidence.tee))?;
    if !may_be_main_evidence(evidence.tee) {
        return Err(VerifyError::NotACpuTee(evidence.tee));
    }
    let mut collateral = Collateral::from_unified(&evidence.collateral)?;
    if let Some(cached) = cached.get(&evidence.tee) {
        collateral.extend(cached);
    }
    let inputs = Inputs { collateral: &collateral, anchors, now_unix };
    let claims = driver.verify(evidence.evidence.as_bytes(), &inputs)?;
    if claims.tee != evidence.tee {
        return Err(VerifyError::TeeMismatch { declared: evidence.tee, found: claims.tee });
    }
    check_binding(&claims, &evidence.runtime_data)?;
    let mut additional = BTreeMap::new();
    for (name, value) in &evidence.additional_evidence {
        let device =
            verify_additional(name, value, &evidence.runtime_data, anchors, cached, now_unix)
                .map_err(|source| VerifyError::AdditionalEvidence {
                    name: name.clone(),
                    source: Box::new(source),
                })?;
        additional.insert(name.clone(), device);
    }
    Ok(VerifiedEvidence { claims, runtime_data: evidence.runtime_data.clone(), additional })
}

/// One entry of `additional_evidence`: device evidence of its own TEE kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdditionalEvidence {
    tee: TeeKind,
    evidence: Base64Url,
    #[serde(default)]
    collateral: BTreeMap<String, serde_json::Value>,
}

/// Whether `tee` can carry the main evidence: a TEE of isolated compute (CPU TEEs and the
/// simulated one) or of a device key (PSA, Android); an accelerator only comes as additional
/// evidence beside a CPU TEE's. What a result may then be used for is [`TeeKind::attests`].
fn may_be_main_evidence(tee: TeeKind) -> bool {
    tee.attests() != Attests::Accelerator
}

/// Verifies device evidence (composite attestation) and its binding to the same runtime data.
///
/// Devices with a 64-byte `report_data` must carry exactly the CPU evidence's value; devices
/// with a 32-byte nonce (NVIDIA SPDM) must carry SHA-256 of it.
fn verify_additional(
    name: &str,
    value: &serde_json::Value,
    runtime_data: &RuntimeData,
    anchors: &TrustAnchors,
    cached: &CachedCollateral,
    now_unix: i64,
) -> Result<Claims, VerifyError> {
    let name_ok = name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name != "cpu0";
    if !name_ok {
        return Err(VerifyError::AdditionalEvidenceShape(
            "names are lowercase letters then digits (gpu0, gpu1, …), and cpu0 is the main \
             evidence"
                .to_owned(),
        ));
    }
    let entry: AdditionalEvidence = serde_json::from_value(value.clone())
        .map_err(|e| VerifyError::AdditionalEvidenceShape(e.to_string()))?;
    if entry.tee != TeeKind::Nvidia {
        return Err(VerifyError::NotADevice(entry.tee));
    }
    let driver = driver_for(entry.tee).ok_or(VerifyError::UnsupportedTee(entry.tee))?;
    let mut collateral = Collateral::from_unified(&entry.collateral)?;
    if let Some(cached) = cached.get(&entry.tee) {
        collateral.extend(cached);
    }
    let inputs = Inputs { collateral: &collateral, anchors, now_unix };
    let claims = driver.verify(entry.evidence.as_bytes(), &inputs)?;
    if claims.tee != entry.tee {
        return Err(VerifyError::TeeMismatch { declared: entry.tee, found: claims.tee });
    }
    let expected = runtime_data.report_data().map_err(VerifyError::RuntimeData)?;
    let bound = match claims.report_data.as_bytes().len() {
        64 => bool::from(claims.report_data.as_bytes().ct_eq(&expected.0)),
        32 => bool::from(claims.report_data.as_bytes().ct_eq(&Sha256::digest(expected.0))),
        other => return Err(VerifyError::ReportDataLength(other)),
    };
    if !bound {
        return Err(VerifyError::ReportDataMismatch);
    }
    Ok(claims)
}

/// Checks that `bytes` is a key trust anchor of the forms the Arm COSE drivers (CCA CPAKs, PSA
/// IAKs) read: a JWK, a Veraison trust-anchor entry, a JSON array of them, or a PEM/DER public
/// key; the error says why not. For configuration checks: drivers refuse an unusable anchor
/// whenever they meet one.
pub fn check_key_anchor(bytes: &[u8]) -> Result<(), String> {
    cose_anchor::parse_anchor(bytes).map(|_| ())
}

/// Runs the driver of `tee` alone on vendor evidence bytes and returns its claims.
///
/// This is for inspecting evidence (`cloister evidence verify`): the signature chain, structure
/// and TCB are checked exactly as in [`verify`], but nothing binds the evidence to runtime data,
/// so the result is plain [`Claims`], never a [`VerifiedEvidence`], and must not be used to
/// release keys or issue certificates.
pub fn verify_vendor_evidence(
    tee: TeeKind,
    evidence: &[u8],
    inputs: &Inputs<'_>,
) -> Result<Claims, VerifyError> {
    let driver = driver_for(tee).ok_or(VerifyError::UnsupportedTee(tee))?;
    driver.verify(evidence, inputs)
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
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError>;
}

/// The registry of drivers: adding a TEE means adding one arm here.
fn driver_for(tee: TeeKind) -> Option<&'static dyn Driver> {
    match tee {
        TeeKind::Sim => Some(&sim::SimDriver),
        TeeKind::Android => Some(&android::AndroidDriver),
        TeeKind::Sgx => Some(&dcap::SgxDriver),
        TeeKind::Tdx => Some(&dcap::TdxDriver),
        TeeKind::Snp => Some(&snp::SnpDriver),
        TeeKind::Csv => Some(&csv::CsvDriver),
        TeeKind::Cca => Some(&cca::CcaDriver),
        TeeKind::Nitro => Some(&nitro::NitroDriver),
        TeeKind::Nvidia => Some(&nvidia::NvidiaDriver),
        TeeKind::VirtCca => Some(&virtcca::VirtCcaDriver),
        TeeKind::Psa => Some(&psa::PsaDriver),
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

    /// How many times the DCAP driver reused a remembered dcap-qvl verdict (for tests).
    pub fn dcap_verdict_memo_hits() -> u64 {
        crate::dcap::memo_hits()
    }

    /// Parses vendor evidence of `tee` without any trust decision; must never panic.
    pub fn parse_vendor_evidence(tee: cloister_types::TeeKind, bytes: &[u8]) {
        use cloister_types::TeeKind;
        match tee {
            TeeKind::Android => crate::android::parse_for_fuzz(bytes),
            TeeKind::Sgx | TeeKind::Tdx => crate::dcap::parse_for_fuzz(bytes),
            TeeKind::Snp => crate::snp::parse_for_fuzz(bytes),
            TeeKind::Csv => crate::csv::parse_for_fuzz(bytes),
            TeeKind::Cca => crate::cca::parse_for_fuzz(bytes),
            TeeKind::Nitro => crate::nitro::parse_for_fuzz(bytes),
            TeeKind::Nvidia => crate::nvidia::parse_for_fuzz(bytes),
            TeeKind::VirtCca => crate::virtcca::parse_for_fuzz(bytes),
            TeeKind::Psa => crate::psa::parse_for_fuzz(bytes),
            _ => {}
        }
    }

    /// Checks a PSA claims map (a token's CBOR payload) against the profile it names, without
    /// any signature or anchor, and returns the profile's name; must never panic.
    pub fn check_psa_claims(payload: &[u8]) -> Result<&'static str, crate::PsaError> {
        crate::psa::check_claims(payload)
    }

    /// The canonical form of a RIM (SWID tag) as its enveloped signature covers it, with the
    /// canonicalisation `algorithm` (an XMLDSig identifier): the document without its
    /// `ds:Signature` element and comments, or (`signed_info`) that signature's `SignedInfo`.
    /// Tests sign their own RIMs with it.
    pub fn canonical_rim(
        xml: &[u8],
        signed_info: bool,
        algorithm: &str,
    ) -> Result<Vec<u8>, String> {
        crate::nvidia::canonical_rim(xml, signed_info, algorithm)
    }

    /// Reads a RIM and checks its signature against `test_roots` at `now_unix`, without a
    /// report; must never panic.
    pub fn verify_rim(xml: &[u8], test_roots: &[Vec<u8>], now_unix: i64) -> Result<(), String> {
        crate::nvidia::verify_rim_for_fuzz(xml, test_roots, now_unix)
    }
}
