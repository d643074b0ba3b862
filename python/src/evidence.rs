//! TEE evidence verification over cloister-verify, as `cloister evidence verify` does it, on
//! bytes instead of files; and the simulated TEE's evidence (development and tests only).

use cloister_attest::{Attester as _, SimAttester, SimPlatformKey};
use cloister_types::{RuntimeData, TeeKind, UnifiedEvidence};
use cloister_verify::{
    CachedCollateral, Collateral, Inputs, SimPlatformPublicKey, TrustAnchors, decode_input,
    verify_vendor_evidence, verify_with_collateral,
};
use pyo3::prelude::*;

use crate::errors::{EvidenceError, KeyFormatError, bad_json, to_json};

/// Whether `bytes` hold PEM blocks.
fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Collateral documents as they are, certificates decoded (hex or base64) and PEM-split.
fn collateral_of(documents: &[Vec<u8>], certs: &[Vec<u8>]) -> Collateral {
    let mut collateral = Collateral::new();
    for document in documents {
        collateral = collateral.with_document(document.clone());
    }
    for cert in certs {
        let (bytes, _) = decode_input(cert);
        collateral = collateral.with_certificates(&bytes);
    }
    collateral
}

/// Trust anchors of `tee`: a PEM file of certificates gives one root per certificate; the
/// simulated TEE's anchors are platform public keys in their text form.
fn add_anchors(
    mut anchors: TrustAnchors,
    tee: TeeKind,
    given: &[Vec<u8>],
) -> PyResult<TrustAnchors> {
    for bytes in given {
        if tee == TeeKind::Sim {
            let text = String::from_utf8_lossy(bytes);
            let key = text.trim().parse::<SimPlatformPublicKey>().map_err(|e| {
                KeyFormatError::new_err(format!("a trust anchor is not a sim platform key: {e}"))
            })?;
            anchors = anchors.with_sim_platform_key(key);
            continue;
        }
        match cloister_verify::x509::split_certificates(bytes) {
            Ok(blocks) if is_pem(bytes) => {
                for block in blocks {
                    anchors = anchors.with_root(tee, block);
                }
            }
            _ => anchors = anchors.with_root(tee, bytes.clone()),
        }
    }
    Ok(anchors)
}

fn parse_tee(text: &str) -> PyResult<TeeKind> {
    text.parse::<TeeKind>().map_err(|_| {
        EvidenceError::new_err(format!(
            "tee {text:?} is not one of sgx, tdx, snp, csv, cca, virtcca, nitro, nvidia, psa, \
             android, sim"
        ))
    })
}

/// Verifies evidence and returns the claims as JSON. With `tee`, `evidence` is one TEE's vendor
/// evidence (raw, hex or base64) and the claims are returned as they are, bound to nothing;
/// without, it is unified evidence JSON (what a worker or `cloister evidence collect` makes),
/// verified as the attestation service does, report_data binding included, and the claims of
/// every component are returned (`{"cpu0": …, "gpu0": …}`). `at` is the verification time in
/// Unix seconds (now when absent).
#[pyfunction]
#[pyo3(signature = (evidence, tee = None, collateral = Vec::new(), certs = Vec::new(), trust_anchors = Vec::new(), at = None))]
fn verify_evidence(
    py: Python<'_>,
    evidence: Vec<u8>,
    tee: Option<&str>,
    collateral: Vec<Vec<u8>>,
    certs: Vec<Vec<u8>>,
    trust_anchors: Vec<Vec<u8>>,
    at: Option<i64>,
) -> PyResult<String> {
    let now = match at {
        Some(at) => at,
        None => i64::try_from(cloister_sign::unix_now())
            .map_err(|_| EvidenceError::new_err("the clock is past the year 292 billion"))?,
    };
    let collateral = collateral_of(&collateral, &certs);
    if let Some(tee) = tee {
        let tee = parse_tee(tee)?;
        let (bytes, _) = decode_input(&evidence);
        let anchors = add_anchors(TrustAnchors::new(), tee, &trust_anchors)?;
        let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: now };
        let claims = py
            .detach(|| verify_vendor_evidence(tee, &bytes, &inputs))
            .map_err(|e| EvidenceError::new_err(e.to_string()))?;
        return to_json(&claims);
    }
    let unified: UnifiedEvidence = serde_json::from_slice(&evidence)
        .map_err(|e| bad_json("the unified evidence JSON (give tee= for vendor evidence)", &e))?;
    let device_tees = unified
        .additional_evidence
        .values()
        .filter_map(|entry| entry.get("tee")?.as_str()?.parse::<TeeKind>().ok());
    let mut anchors = TrustAnchors::new();
    let mut by_tee = CachedCollateral::new();
    for tee in std::iter::once(unified.tee).chain(device_tees) {
        by_tee.insert(tee, collateral.clone());
        anchors = add_anchors(anchors, tee, &trust_anchors)?;
    }
    let verified = py
        .detach(|| verify_with_collateral(&unified, &anchors, &by_tee, now))
        .map_err(|e| EvidenceError::new_err(e.to_string()))?;
    let components = std::iter::once(("cpu0", verified.claims()))
        .chain(verified.additional_claims().iter().map(|(name, claims)| (name.as_str(), claims)))
        .collect::<std::collections::BTreeMap<_, _>>();
    to_json(&components)
}

/// Makes a simulated TEE platform key (development only) and returns `(secret_pkcs8_pem,
/// public_text)`; the public text is the sim trust anchor.
#[pyfunction]
fn sim_platform_keygen() -> PyResult<(String, String)> {
    let key = SimPlatformKey::generate();
    let pem = key.to_pkcs8_pem().map_err(|e| KeyFormatError::new_err(e.to_string()))?;
    Ok((pem.as_str().to_owned(), key.public_key().to_text()))
}

/// Simulated TEE evidence (development and tests only) for `runtime_data_json`, signed by the
/// platform key, reporting `measurement` (48 bytes, hex). Returns unified evidence JSON.
#[pyfunction]
fn sim_evidence(
    platform_secret_pem: &str,
    runtime_data_json: &str,
    measurement: &str,
) -> PyResult<String> {
    let key = SimPlatformKey::from_pkcs8_pem(platform_secret_pem)
        .map_err(|e| KeyFormatError::new_err(e.to_string()))?;
    let runtime_data: RuntimeData = serde_json::from_str(runtime_data_json)
        .map_err(|e| bad_json("the runtime data JSON", &e))?;
    let measurement = crate::protocol::parse_measurements(&[measurement.to_owned()])?;
    let measurement: [u8; 48] =
        measurement.first().map(|m| m.as_bytes()).unwrap_or_default().try_into().map_err(|_| {
            KeyFormatError::new_err("a sim measurement is 48 bytes (96 hex digits), a SHA-384")
        })?;
    let evidence = SimAttester::new(key, measurement)
        .attest(&runtime_data)
        .map_err(|e| EvidenceError::new_err(e.to_string()))?;
    to_json(&evidence)
}

/// Adds the functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_evidence, m)?)?;
    m.add_function(wrap_pyfunction!(sim_platform_keygen, m)?)?;
    m.add_function(wrap_pyfunction!(sim_evidence, m)?)?;
    Ok(())
}
