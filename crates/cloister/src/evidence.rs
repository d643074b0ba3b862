//! `cloister evidence verify`: run one TEE's verifier on evidence files, for people who debug
//! attestation; `cloister evidence export`: write an appraisal as an EAR or a Unified Attestation
//! Report (UAR, `cloister_types::uar`).
//!
//! Files may be raw binary, hex text or base64 text (detected from the content). The claims are
//! printed as JSON; vendor evidence alone is not bound to any key (there is no runtime data), so
//! this command is for inspection only: the attestation service is what releases keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use cloister_types::{TeeKind, uar};
use cloister_verify::{Collateral, Inputs, TrustAnchors, decode_input, verify_vendor_evidence};

/// What `cloister evidence verify` was asked to do.
#[derive(Debug)]
pub struct VerifyRequest {
    /// Which TEE's driver to run.
    pub tee: TeeKind,
    /// The vendor evidence file.
    pub evidence: PathBuf,
    /// Collateral documents (DCAP bundles, PCS responses, CRLs, RIMs).
    pub collateral: Vec<PathBuf>,
    /// Certificate files (PEM, DER, concatenated PEM, vendor binary formats).
    pub certs: Vec<PathBuf>,
    /// Extra trust anchors (root certificates, CCA CPAKs).
    pub trust_anchors: Vec<PathBuf>,
    /// The verification time, unix seconds.
    pub at_unix: i64,
}

/// The outcome: the claims as JSON, or the verifier's one-line reason.
pub enum Outcome {
    /// Every check passed.
    Verified(serde_json::Value),
    /// A check failed; the message names it.
    Refused(String),
}

/// Reads the files and runs the verifier. I/O problems are errors; a verification failure is
/// an [`Outcome::Refused`].
pub fn verify(request: &VerifyRequest) -> Result<Outcome> {
    let (evidence, _) = decode_input(&read(&request.evidence)?);
    let collateral = read_collateral(&request.collateral, &request.certs)?;
    let anchors = read_anchors(request.tee, &request.trust_anchors)?;
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: request.at_unix };
    match verify_vendor_evidence(request.tee, &evidence, &inputs) {
        Ok(claims) => Ok(Outcome::Verified(serde_json::to_value(&claims)?)),
        Err(error) => Ok(Outcome::Refused(error.to_string())),
    }
}

/// Verifies unified evidence (what an attester sends the service) exactly as the service does,
/// binding included, with the given collateral and extra anchors, and returns the claims of
/// every component: `{"cpu0": …, "gpu0": …}`. No policy is applied.
///
/// The file may also be a Unified Attestation Report: its embedded Cloister evidence is verified
/// the same way (a report from elsewhere, without it, has its platform quote verified unbound,
/// as `--tee` does), and the results the report states must be what the evidence gives. An
/// appraisal the report states (`str_cloister_ear_status`, `str_cloister_policy_id`,
/// `str_cloister_ear`) is accepted only when its EAR token verifies with `jwks` (the issuing
/// instance's) and says the same: without `jwks` such a report is refused.
pub fn verify_unified(
    path: &Path,
    collateral: &[PathBuf],
    certs: &[PathBuf],
    trust_anchors: &[PathBuf],
    jwks: Option<&Path>,
    at_unix: i64,
) -> Result<Outcome> {
    let bytes = read(path)?;
    if !uar::looks_like_report(&bytes) {
        let evidence: cloister_types::UnifiedEvidence = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not unified evidence JSON", path.display()))?;
        return verify_unified_evidence(&evidence, collateral, certs, trust_anchors, at_unix);
    }
    let report = match uar::from_report(&bytes) {
        Ok(report) => report,
        Err(error) => return Ok(Outcome::Refused(format!("{}: {error}", path.display()))),
    };
    let outcome = match &report.evidence {
        Some(evidence) => {
            verify_unified_evidence(evidence, collateral, certs, trust_anchors, at_unix)?
        }
        None => match verify_report_quote(&report, collateral, certs, trust_anchors, at_unix)? {
            Outcome::Verified(claims) => Outcome::Verified(serde_json::json!({ "cpu0": claims })),
            refused => refused,
        },
    };
    let Outcome::Verified(components) = outcome else { return Ok(outcome) };
    let verified: BTreeMap<String, cloister_types::Claims> =
        serde_json::from_value(components.clone())?;
    let differences = uar::differences(&report, &verified);
    if !differences.is_empty() {
        return Ok(Outcome::Refused(format!(
            "the report's stated results are not what its evidence gives: {}",
            differences.join("; ")
        )));
    }
    match check_stated_appraisal(&report, jwks, &verified, at_unix)? {
        Some(refusal) => Ok(Outcome::Refused(refusal)),
        None => Ok(Outcome::Verified(components)),
    }
}

/// Checks the appraisal a report states against its EAR token; `Some(reason)` refuses it.
fn check_stated_appraisal(
    report: &uar::Report,
    jwks: Option<&Path>,
    verified: &BTreeMap<String, cloister_types::Claims>,
    at_unix: i64,
) -> Result<Option<String>> {
    const APPRAISAL_FIELDS: [&str; 2] = ["str_cloister_ear_status", "str_cloister_policy_id"];
    let states_appraisal = report.ear.is_some()
        || report.results.iter().any(|r| APPRAISAL_FIELDS.iter().any(|f| r.contains_key(*f)));
    if !states_appraisal {
        return Ok(None);
    }
    let Some(jwks) = jwks else {
        return Ok(Some(
            "the report states an appraisal (str_cloister_ear_status, str_cloister_policy_id or \
             str_cloister_ear); give the issuing instance's JWKS with --jwks so that its EAR \
             token is checked"
                .to_owned(),
        ));
    };
    let Some(token) = &report.ear else {
        return Ok(Some("the report states an appraisal but carries no EAR token".to_owned()));
    };
    let Some(evidence) = &report.evidence else {
        return Ok(Some(
            "the report states a Cloister appraisal without Cloister's evidence \
             (json_cloister_evidence)"
                .to_owned(),
        ));
    };
    let body = match verify_ear_token(token, jwks, at_unix) {
        Ok(body) => body,
        Err(error) => return Ok(Some(format!("the report's EAR token: {error:#}"))),
    };
    if let Some(refusal) = ear_refusal(&body, evidence, verified) {
        return Ok(Some(refusal));
    }
    for (index, stated) in report.results.iter().enumerate() {
        let component = stated
            .get("str_cloister_component")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| if index == 0 { "cpu0".to_owned() } else { format!("#{index}") });
        let Some(appraisal) = body.submods.get(&component) else {
            return Ok(Some(format!("the EAR token appraised no {component}")));
        };
        let expected = uar::attributes(&component, appraisal);
        for field in APPRAISAL_FIELDS {
            if stated.get(field) != expected.get(field) {
                return Ok(Some(format!(
                    "{component}.{field}: the report states {}, the EAR token {}",
                    stated.get(field).map_or("nothing".to_owned(), ToString::to_string),
                    expected.get(field).map_or("nothing".to_owned(), ToString::to_string),
                )));
            }
        }
    }
    Ok(None)
}

/// Why `body` is not the appraisal of `evidence` whose components verified as `verified`:
/// another nonce, runtime data or TEE, or claims other than the evidence gives.
fn ear_refusal(
    body: &cloister_types::EarBody,
    evidence: &cloister_types::UnifiedEvidence,
    verified: &BTreeMap<String, cloister_types::Claims>,
) -> Option<String> {
    let Some(cpu0) = body.submods.get("cpu0") else {
        return Some("the EAR token appraised no cpu0".to_owned());
    };
    if body.eat_nonce != evidence.runtime_data.nonce
        || cpu0.runtime_data != evidence.runtime_data
        || cpu0.claims.tee != evidence.tee
    {
        return Some(format!(
            "the EAR token is the appraisal of other evidence (its nonce {:?}, the evidence's {:?})",
            body.eat_nonce, evidence.runtime_data.nonce
        ));
    }
    for (name, appraisal) in &body.submods {
        let Some(claims) = verified.get(name) else {
            return Some(format!("the EAR token appraised {name}, which the evidence lacks"));
        };
        if comparable(&appraisal.claims) != comparable(claims) {
            return Some(format!(
                "the EAR token appraised other evidence: its {name} claims are not what the \
                 evidence gives"
            ));
        }
    }
    if verified.keys().any(|name| !body.submods.contains_key(name)) {
        return Some("the evidence has components the EAR token did not appraise".to_owned());
    }
    None
}

/// Vendor claims that depend on the collateral given or on the verification time rather than on
/// the evidence: they may differ between the service's appraisal and a later check.
const COLLATERAL_DEPENDENT: [&str; 12] = [
    "tcb_status",
    "advisory_ids",
    "platform_tcb_status",
    "qe_tcb_status",
    "collateral",
    "crl_checked",
    "revocation_checked",
    "ocsp",
    "rim",
    "measurements_appraised",
    "rim_signature_verified",
    "rim_root",
];

/// The claims as far as they follow from the evidence itself: everything, the vendor's own
/// fields included (platform keys, registers, issue times), except the TCB judgement and the
/// [`COLLATERAL_DEPENDENT`] vendor fields.
fn comparable(claims: &cloister_types::Claims) -> serde_json::Value {
    let mut value = serde_json::to_value(claims).unwrap_or(serde_json::Value::Null);
    if let Some(fields) = value.as_object_mut() {
        fields.remove("tcb_status");
        fields.remove("advisories");
        if let Some(vendor) =
            fields.get_mut(claims.tee.as_str()).and_then(serde_json::Value::as_object_mut)
        {
            for field in COLLATERAL_DEPENDENT {
                vendor.remove(field);
            }
        }
    }
    value
}

/// Verifies a compact EAR token with a key of the JWKS in `jwks` at `at_unix`.
fn verify_ear_token(token: &str, jwks: &Path, at_unix: i64) -> Result<cloister_types::EarBody> {
    use cloister_types::ear::{EAR_NAME, EAR_PROFILE};
    let jwks: serde_json::Value = serde_json::from_slice(&read(jwks)?)
        .with_context(|| format!("{} is not a JWKS (JSON)", jwks.display()))?;
    let kid = cloister_sign::peek_key_id(token).context("not a compact JWS with a key id")?;
    // Exactly one entry may carry the kid (a JWKS listing it twice is refused).
    let key = cloister_sign::AnyVerifyingKey::from_jwks(&jwks, &kid)
        .with_context(|| format!("the JWKS and key {kid:?}: is it the issuing instance's?"))?;
    let body = key
        .verify::<cloister_types::EarBody>(EAR_NAME, token, at_unix as u64)
        .context("the EAR token does not verify with the instance's key")?
        .claims;
    if body.eat_profile != EAR_PROFILE {
        bail!("the token's profile is {:?}, not an EAR of Cloister", body.eat_profile);
    }
    Ok(body)
}

/// Verifies a UAR's platform quote with its TEE's driver, bound to nothing.
fn verify_report_quote(
    report: &uar::Report,
    collateral: &[PathBuf],
    certs: &[PathBuf],
    trust_anchors: &[PathBuf],
    at_unix: i64,
) -> Result<Outcome> {
    let collateral = read_collateral(collateral, certs)?;
    let anchors = read_anchors(report.tee, trust_anchors)?;
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: at_unix };
    match verify_vendor_evidence(report.tee, &report.quote, &inputs) {
        Ok(claims) => Ok(Outcome::Verified(serde_json::to_value(&claims)?)),
        Err(error) => Ok(Outcome::Refused(error.to_string())),
    }
}

fn verify_unified_evidence(
    evidence: &cloister_types::UnifiedEvidence,
    collateral: &[PathBuf],
    certs: &[PathBuf],
    trust_anchors: &[PathBuf],
    at_unix: i64,
) -> Result<Outcome> {
    let cached = read_collateral(collateral, certs)?;
    let mut anchors = TrustAnchors::new();
    let mut by_tee = cloister_verify::CachedCollateral::new();
    let tees = std::iter::once(evidence.tee).chain(
        evidence
            .additional_evidence
            .values()
            .filter_map(|entry| entry.get("tee")?.as_str()?.parse::<TeeKind>().ok()),
    );
    for tee in tees {
        by_tee.insert(tee, cached.clone());
        for path in trust_anchors {
            let bytes = read(path)?;
            if tee == TeeKind::Sim {
                // The simulated TEE's anchor is a platform key in its text form.
                let text = String::from_utf8_lossy(&bytes);
                let key = text
                    .trim()
                    .parse::<cloister_verify::SimPlatformPublicKey>()
                    .with_context(|| format!("{} is not a sim platform key", path.display()))?;
                anchors = anchors.with_sim_platform_key(key);
            } else {
                anchors = anchors.with_root(tee, bytes);
            }
        }
    }
    match cloister_verify::verify_with_collateral(evidence, &anchors, &by_tee, at_unix) {
        Ok(verified) => {
            let mut out = serde_json::Map::new();
            out.insert("cpu0".into(), serde_json::to_value(verified.claims())?);
            for (name, claims) in verified.additional_claims() {
                out.insert(name.clone(), serde_json::to_value(claims)?);
            }
            Ok(Outcome::Verified(serde_json::Value::Object(out)))
        }
        Err(error) => Ok(Outcome::Refused(error.to_string())),
    }
}

/// Collects evidence from the TEE this process runs in (`cloister_attest::detect`), bound to
/// the runtime data in `runtime_data` (JSON), and returns the unified evidence JSON.
pub fn collect(runtime_data: &Path) -> Result<String> {
    let runtime_data: cloister_types::RuntimeData = serde_json::from_slice(&read(runtime_data)?)
        .with_context(|| {
            format!(
                "{} is not runtime data JSON {{nonce, hpke_pk, tls_spki_sha256, receipt_pk}}",
                runtime_data.display()
            )
        })?;
    let attester =
        cloister_attest::detect().context("no TEE interface to collect evidence from")?;
    let evidence = attester
        .attest(&runtime_data)
        .with_context(|| format!("collecting {} evidence", attester.tee()))?;
    Ok(serde_json::to_string_pretty(&evidence)?)
}

/// Parses `--tee`: the hardware TEEs only (sim evidence needs an instance's sim anchors).
pub fn parse_tee(text: &str) -> Result<TeeKind> {
    match text.parse::<TeeKind>() {
        Ok(tee) if tee != TeeKind::Sim => Ok(tee),
        _ => bail!(
            "--tee {text:?} is not one of sgx, tdx, snp, csv, cca, virtcca, nitro, nvidia, psa, \
             android"
        ),
    }
}

/// Parses `--at` (RFC 3339) into unix seconds.
pub fn parse_time(text: &str) -> Result<i64> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--at {text:?} is not an RFC 3339 time (2025-06-20T00:00:00Z)"))?;
    Ok(time.unix_timestamp())
}

/// What `cloister evidence export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// The EAR token itself (IETF EAR, signed by the instance).
    Ear,
    /// A Unified Attestation Report (JSON), see `cloister_types::uar`.
    Uar,
}

/// Writes the appraisal in `ear` (a compact EAR token) of the unified evidence in `evidence` as
/// `format`. The token must verify with a key of `jwks` (the issuing instance's
/// `/v1/instances/{id}/jwks.json`) at `at_unix`, and must be the appraisal of this evidence:
/// the evidence is verified here (with `collateral`, `certs` and `trust_anchors`, binding
/// included) and the token's nonce, runtime data, TEE and claims must be what it gives, or
/// nothing is written.
pub fn export(
    format: ExportFormat,
    ear: &Path,
    jwks: &Path,
    evidence: &Path,
    inputs: &ExportInputs<'_>,
    at_unix: i64,
) -> Result<String> {
    let token = String::from_utf8(read(ear)?)
        .with_context(|| format!("{} is not an EAR token (text)", ear.display()))?;
    let token = token.trim();
    let body = verify_ear_token(token, jwks, at_unix)
        .with_context(|| format!("checking the EAR token in {}", ear.display()))?;
    let evidence_path = evidence;
    let evidence: cloister_types::UnifiedEvidence = serde_json::from_slice(&read(evidence)?)
        .with_context(|| format!("{} is not unified evidence JSON", evidence.display()))?;
    let outcome = verify_unified_evidence(
        &evidence,
        inputs.collateral,
        inputs.certs,
        inputs.trust_anchors,
        at_unix,
    )?;
    let components = match outcome {
        Outcome::Verified(components) => components,
        Outcome::Refused(why) => {
            bail!("{} does not verify: {why}", evidence_path.display())
        }
    };
    let verified: BTreeMap<String, cloister_types::Claims> = serde_json::from_value(components)?;
    if let Some(refusal) = ear_refusal(&body, &evidence, &verified) {
        bail!("{refusal}");
    }
    Ok(match format {
        ExportFormat::Ear => format!("{token}\n"),
        ExportFormat::Uar => {
            let report = uar::to_report(&evidence, &body, token);
            format!("{}\n", serde_json::to_string_pretty(&report)?)
        }
    })
}

/// What `export` verifies the evidence with (as `evidence verify` takes them).
pub struct ExportInputs<'a> {
    /// Collateral documents.
    pub collateral: &'a [PathBuf],
    /// Certificate files.
    pub certs: &'a [PathBuf],
    /// Extra trust anchors (a sim platform key for sim evidence).
    pub trust_anchors: &'a [PathBuf],
}

fn read_anchors(tee: TeeKind, trust_anchors: &[PathBuf]) -> Result<TrustAnchors> {
    let mut anchors = TrustAnchors::new();
    for path in trust_anchors {
        let bytes = read(path)?;
        match cloister_verify::x509::split_certificates(&bytes) {
            // A PEM file of certificates: one anchor per certificate.
            Ok(blocks) if is_pem(&bytes) => {
                for block in blocks {
                    anchors = anchors.with_root(tee, block);
                }
            }
            _ => anchors = anchors.with_root(tee, bytes),
        }
    }
    Ok(anchors)
}

/// Collateral documents as they are, certificate files decoded (hex/base64) and PEM-split.
fn read_collateral(documents: &[PathBuf], certs: &[PathBuf]) -> Result<Collateral> {
    let mut collateral = Collateral::new();
    for path in documents {
        collateral = collateral.with_document(read(path)?);
    }
    for path in certs {
        let (bytes, _) = decode_input(&read(path)?);
        collateral = collateral.with_certificates(&bytes);
    }
    Ok(collateral)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}
