//! The simulated TEE's evidence format and its verification driver.
//!
//! The simulated TEE is for development only: a software "platform" holds a P-256 key and signs
//! reports about a process it measured. Nothing protects the process, so every claim this driver
//! produces says `sim`, its TCB status is [`TcbStatus::Simulated`], and an instance accepts it
//! only when it lists the platform key as a trust anchor and its policy names `sim`.
//!
//! # Format
//!
//! Evidence bytes are the UTF-8 JSON object
//! `{"report": "<base64url report bytes>", "signature": "<base64url r||s>"}` where the report
//! bytes are the canonical JSON of a [`SimReport`] and the signature is ECDSA P-256 with SHA-256
//! over exactly those bytes (64 bytes, `r || s`). The wire types live in
//! [`cloister_types::sim`] (the attester writes them) and are re-exported here.

use std::collections::BTreeMap;

pub use cloister_types::sim::{SIM_REPORT_FORMAT, SimEvidence, SimReport};
use cloister_types::{Claims, TcbStatus, TeeKind};
use p256::ecdsa::Signature;

use crate::anchors::SimPlatformPublicKey;
use crate::error::{SimError, VerifyError};
use crate::inputs::Inputs;

/// The largest sim evidence accepted, in bytes; genuine evidence is well under 1 KiB.
pub const MAX_SIM_EVIDENCE_LEN: usize = 64 * 1024;

/// How far in the future (seconds) `issued_at` may be, to tolerate clock skew.
pub const MAX_FUTURE_SKEW_SECS: i64 = 5 * 60;

/// How old (seconds) a report may be and still count as fresh.
pub const MAX_AGE_SECS: i64 = 10 * 60;

/// The warning every sim claim set carries.
pub const SIM_WARNING: &str = "simulated TEE: no hardware protection, development only";

/// Sim evidence after parsing, before any trust decision.
#[derive(Clone, Debug)]
pub struct ParsedSimEvidence {
    /// The exact bytes that were signed.
    pub report_bytes: Vec<u8>,
    /// The report those bytes decode to.
    pub report: SimReport,
    /// The signature.
    pub signature: Signature,
    /// The key named in the report.
    pub platform_key: SimPlatformPublicKey,
}

/// Parses sim evidence bytes without checking the signature, anchors or time.
///
/// This is the parser of untrusted bytes the fuzz target drives (through
/// [`crate::internal::parse_sim_evidence`]); it must never panic.
pub fn parse(bytes: &[u8]) -> Result<ParsedSimEvidence, SimError> {
    if bytes.len() > MAX_SIM_EVIDENCE_LEN {
        return Err(SimError::TooLarge { len: bytes.len(), max: MAX_SIM_EVIDENCE_LEN });
    }
    let outer: SimEvidence = serde_json::from_slice(bytes).map_err(SimError::Envelope)?;
    let sig_bytes = outer.signature.as_bytes();
    if sig_bytes.len() != 64 {
        return Err(SimError::SignatureLength(sig_bytes.len()));
    }
    let signature = Signature::from_slice(sig_bytes).map_err(|_| SimError::SignatureEncoding)?;
    let report_bytes = outer.report.0;
    let report: SimReport = serde_json::from_slice(&report_bytes).map_err(SimError::Report)?;
    let platform_key =
        SimPlatformPublicKey::from_text(&report.platform_key).map_err(SimError::PlatformKey)?;
    Ok(ParsedSimEvidence { report_bytes, report, signature, platform_key })
}

/// The driver for [`TeeKind::Sim`].
pub(crate) struct SimDriver;

impl crate::Driver for SimDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        let now_unix = inputs.now_unix;
        // An instance without sim anchors rejects sim evidence before even parsing it.
        let trusted = inputs.anchors.sim_platform_keys();
        if trusted.is_empty() {
            return Err(VerifyError::SimNotTrusted);
        }
        let parsed = parse(evidence)?;
        if !trusted.contains(&parsed.platform_key) {
            return Err(SimError::UntrustedPlatformKey(parsed.platform_key).into());
        }
        // Through the crate's ECDSA backend (aws-lc), several times faster than the pure-Rust
        // P-256; this runs on every attestation of a development instance.
        let point = parsed.platform_key.verifying_key().to_sec1_point(false);
        crate::x509::EcPublicKey::from_sec1(crate::x509::Curve::P256, point.as_bytes())
            .map(crate::x509::PublicKey::P256)
            .ok_or(SimError::BadSignature)?
            .verify_ecdsa_raw(false, &parsed.report_bytes, &parsed.signature.to_bytes())
            .map_err(|_| SimError::BadSignature)?;

        // From here on the report is authentic; check its content.
        let report = parsed.report;
        if report.format != SIM_REPORT_FORMAT {
            return Err(SimError::Format(report.format).into());
        }
        if report.measurement.as_bytes().len() != 48 {
            return Err(SimError::MeasurementLength(report.measurement.as_bytes().len()).into());
        }
        if report.report_data.as_bytes().len() != 64 {
            return Err(SimError::ReportDataLength(report.report_data.as_bytes().len()).into());
        }
        if report.issued_at > now_unix.saturating_add(MAX_FUTURE_SKEW_SECS) {
            return Err(SimError::IssuedInFuture {
                issued_at: report.issued_at,
                now: now_unix,
                max_skew: MAX_FUTURE_SKEW_SECS,
            }
            .into());
        }
        if report.issued_at < now_unix.saturating_sub(MAX_AGE_SECS) {
            return Err(SimError::Stale {
                issued_at: report.issued_at,
                now: now_unix,
                max_age: MAX_AGE_SECS,
            }
            .into());
        }

        let vendor = serde_json::json!({
            "format": report.format,
            "platform_key": report.platform_key,
            "issued_at": report.issued_at,
            "warning": SIM_WARNING,
        });
        Ok(Claims {
            tee: TeeKind::Sim,
            measurement: report.measurement,
            signer: None,
            product_id: None,
            svn: Some(report.svn),
            debug: report.debug,
            report_data: report.report_data,
            tcb_status: TcbStatus::Simulated,
            advisories: Vec::new(),
            platform_id: None,
            vendor: BTreeMap::from([(TeeKind::Sim.as_str().to_owned(), vendor)]),
        })
    }
}
