//! Intel SGX and TDX DCAP quotes: QE report, PCK chain, CRLs, TCB info and QE identity.
//!
//! Every quote goes through the checks this module does itself, with its own bounds-checked
//! parser ([`quote`]): the quote signature with the attestation key, the QE report signature
//! with the PCK certificate, the QE report-data binding (SHA-256 of attestation key || QE
//! authentication data in the first 32 bytes of the QE report data) and the PCK chain up to the
//! Intel SGX Root CA, pinned by fingerprint, or a root or test root of the instance (the claim
//! `trust_anchor` says which: `vendor`, `instance` or `test`). When TCB collateral is given
//! ([`collateral`]), the full DCAP appraisal runs in addition through the `dcap-qvl` crate
//! (CRLs, TCB info, QE identity, TDX module identity → TCB status and advisories), with the
//! same root: the collateral's signing chain must end where the PCK chain does. Without
//! collateral the TCB status is `Unknown`.
//!
//! The TDX driver also accepts Azure TDX confidential VM evidence (HCL report, TD quote, vTPM
//! quote), recognised by content; see [`azure`].

mod azure;
mod collateral;
mod memo;
mod pck;
mod quote;

use std::collections::BTreeMap;

use cloister_types::{Claims, Hex, TcbStatus, TeeKind};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::anchors::AnchorOrigin;
use crate::error::VerifyError;
use crate::inputs::Inputs;
use crate::x509::{Cert, CertError, PublicKey, verify_chain};

use self::collateral::{Assembled, CollateralProblem};
use self::quote::{Body, ParseError, Quote, SgxReport, TdReport};

/// SHA-256 fingerprint of Intel's root of SGX and TDX attestation, the self-signed certificate
/// `CN=Intel SGX Root CA, O=Intel Corporation, L=Santa Clara, ST=CA, C=US` (valid 2018-05-21 to
/// 2049-12-31).
pub const INTEL_SGX_ROOT_CA_SHA256: [u8; 32] = [
    0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49, 0xe9, 0x5b, 0x80, 0x7a, 0x35,
    0x0e, 0x74, 0x24, 0x96, 0x43, 0x99, 0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3,
];

/// Which driver reports an error: the first word of every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DcapTee {
    /// Intel SGX.
    Sgx,
    /// Intel TDX.
    Tdx,
}

impl std::fmt::Display for DcapTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sgx => "sgx",
            Self::Tdx => "tdx",
        })
    }
}

/// Why SGX or TDX evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DcapError {
    /// The quote is structurally broken (truncated, inconsistent lengths).
    #[error("{tee}: quote is malformed: {what}")]
    Malformed {
        /// The driver.
        tee: DcapTee,
        /// What is wrong.
        what: String,
    },
    /// The quote is well-formed but of a kind this verifier does not handle.
    #[error("{tee}: unsupported quote: {what}")]
    Unsupported {
        /// The driver.
        tee: DcapTee,
        /// What is unsupported.
        what: String,
    },
    /// The quote is for the other TEE (an SGX quote given to the TDX driver, or the reverse).
    #[error("{tee}: evidence is {found} quote, not {expected}")]
    WrongTee {
        /// The driver.
        tee: DcapTee,
        /// What the quote is.
        found: &'static str,
        /// What the driver expected.
        expected: &'static str,
    },
    /// The quoting enclave is not Intel's.
    #[error("{tee}: QE vendor id {vendor_id} is not Intel's")]
    QeVendor {
        /// The driver.
        tee: DcapTee,
        /// The vendor id found, hex.
        vendor_id: String,
    },
    /// The attestation public key in the quote is not a P-256 point.
    #[error("{tee}: the attestation key in the quote is not a valid P-256 public key")]
    AttestationKey {
        /// The driver.
        tee: DcapTee,
    },
    /// The quote signature over header and report body does not verify.
    #[error("{tee}: quote signature does not verify with the attestation key")]
    QuoteSignature {
        /// The driver.
        tee: DcapTee,
    },
    /// The QE report signature does not verify with the PCK certificate's key.
    #[error("{tee}: QE report signature does not verify with the PCK certificate")]
    QeReportSignature {
        /// The driver.
        tee: DcapTee,
    },
    /// The QE report data is not SHA-256(attestation key || QE authentication data) followed by
    /// 32 zero bytes.
    #[error(
        "{tee}: QE report data does not bind the attestation key (it must be SHA-256 of \
         attestation key || QE authentication data, then 32 zero bytes)"
    )]
    QeReportBinding {
        /// The driver.
        tee: DcapTee,
    },
    /// Azure vTPM evidence failed one of its own checks (HCL binding, TPM quote, PCRs).
    #[error("{tee}: {source}")]
    Azure {
        /// The driver.
        tee: DcapTee,
        /// The Azure check that failed.
        source: crate::snp::azure::AzureError,
    },
    /// The PCK certificate chain in the quote is unreadable or does not verify.
    #[error("{tee}: PCK certificate chain: {source}")]
    PckChain {
        /// The driver.
        tee: DcapTee,
        /// The failed certificate check (names the certificate; expiry in RFC 3339).
        #[source]
        source: CertError,
    },
    /// The PCK certificate's SGX extension is missing or malformed.
    #[error("{tee}: PCK certificate SGX extension: {what}")]
    PckExtension {
        /// The driver.
        tee: DcapTee,
        /// What is wrong.
        what: String,
    },
    /// A certificate of the PCK or collateral signing chain is on an Intel CRL.
    #[error("{tee}: a certificate is revoked by the Intel CRLs ({what})")]
    Revoked {
        /// The driver.
        tee: DcapTee,
        /// dcap-qvl's detail.
        what: String,
    },
    /// A collateral document is unreadable or of an unknown kind.
    #[error("{tee}: {what}")]
    Collateral {
        /// The driver.
        tee: DcapTee,
        /// What is wrong.
        what: String,
    },
    /// Some collateral pieces are present and others missing.
    #[error("{tee}: {what}")]
    CollateralMissing {
        /// The driver.
        tee: DcapTee,
        /// Which are present and which missing.
        what: String,
    },
    /// A collateral document (tcbInfo, QE identity, CRL) is outside its validity window.
    #[error("{tee}: collateral: {what}")]
    CollateralExpired {
        /// The driver.
        tee: DcapTee,
        /// Which document and when.
        what: String,
    },
    /// The collateral is for another platform (FMSPC) or TEE.
    #[error("{tee}: {what}")]
    CollateralMismatch {
        /// The driver.
        tee: DcapTee,
        /// What does not match.
        what: String,
    },
    /// A collateral signature or its signing chain does not verify.
    #[error("{tee}: collateral signature: {what}")]
    CollateralSignature {
        /// The driver.
        tee: DcapTee,
        /// Which document.
        what: String,
    },
    /// The QE report does not match the QE identity.
    #[error("{tee}: QE identity check: {what}")]
    QeIdentity {
        /// The driver.
        tee: DcapTee,
        /// What does not match.
        what: String,
    },
    /// The TDX module does not match the tcbInfo's module identity.
    #[error("{tee}: TDX module identity check: {what}")]
    TdxModule {
        /// The driver.
        tee: DcapTee,
        /// What does not match.
        what: String,
    },
    /// No TCB level of the tcbInfo applies to the platform.
    #[error("{tee}: TCB level: {what}")]
    TcbLevel {
        /// The driver.
        tee: DcapTee,
        /// dcap-qvl's detail.
        what: String,
    },
    /// The platform's TCB is revoked.
    #[error("{tee}: TCB status is Revoked")]
    TcbRevoked {
        /// The driver.
        tee: DcapTee,
    },
    /// The TD's attributes are refused by the DCAP appraisal (migratable, reserved bits,
    /// SEPT_VE_DISABLE off).
    #[error("{tee}: TD attributes refused: {what}")]
    TdAttributes {
        /// The driver.
        tee: DcapTee,
        /// What is refused.
        what: String,
    },
    /// Any other failure of the DCAP appraisal, with dcap-qvl's message chain.
    #[error("{tee}: DCAP appraisal failed: {what}")]
    Appraisal {
        /// The driver.
        tee: DcapTee,
        /// dcap-qvl's message chain.
        what: String,
    },
}

/// The driver for [`TeeKind::Sgx`].
pub(crate) struct SgxDriver;

impl crate::Driver for SgxDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        verify(DcapTee::Sgx, evidence, inputs).map_err(VerifyError::from)
    }
}

/// The driver for [`TeeKind::Tdx`].
pub(crate) struct TdxDriver;

impl crate::Driver for TdxDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        verify(DcapTee::Tdx, evidence, inputs).map_err(VerifyError::from)
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    if let Ok(quote) = quote::parse(bytes) {
        let _ = Cert::parse_many(quote.pck_chain_pem).ok().and_then(|chain| {
            chain
                .first()
                .and_then(|c| c.extension(pck::SGX_EXTENSION_OID).map(pck::parse_sgx_extension))
        });
    }
    let _ = collateral::raw_member(&String::from_utf8_lossy(bytes), "tcbInfo");
}

/// Checks a chain (leaf first) against the pinned Intel root and the instance's extra anchors.
pub fn verify_pck_chain(
    chain: &[Cert],
    extra_anchors: &[Vec<u8>],
    now_unix: i64,
) -> Result<(), CertError> {
    verify_pck_chain_to(chain, extra_anchors, now_unix)
}

/// [`verify_pck_chain`] over any anchors (an instance's roots and test roots together).
fn verify_pck_chain_to<'a>(
    chain: &[Cert],
    extra_anchors: impl IntoIterator<Item = &'a Vec<u8>>,
    now_unix: i64,
) -> Result<(), CertError> {
    let mut pinned = vec![INTEL_SGX_ROOT_CA_SHA256];
    for anchor in extra_anchors {
        if let Ok(certs) = Cert::parse_many(anchor) {
            pinned.extend(certs.iter().map(Cert::sha256_fingerprint));
        }
    }
    verify_chain(chain, &pinned, now_unix)
}

/// The Intel PCS collateral a quote needs: TCB info for its TEE and FMSPC, the QE identity, the
/// CRL of its PCK CA and the root CA CRL. Nothing when the quote or its PCK chain does not
/// parse.
pub(crate) fn needs(tee: DcapTee, evidence: &[u8]) -> Vec<crate::needs::CollateralKey> {
    use crate::needs::{CollateralKey, Vendor};
    let azure_quote = if tee == DcapTee::Tdx && azure::looks_like_azure(evidence) {
        let Some(td_quote) = azure::td_quote(evidence) else { return Vec::new() };
        Some(td_quote)
    } else {
        None
    };
    let evidence = azure_quote.as_deref().unwrap_or(evidence);
    let Ok(quote) = quote::parse(evidence) else { return Vec::new() };
    let Ok(chain) = Cert::parse_many(quote.pck_chain_pem) else { return Vec::new() };
    let Some(leaf) = chain.first() else { return Vec::new() };
    let Some(ext) = leaf.extension(pck::SGX_EXTENSION_OID) else { return Vec::new() };
    let Ok(info) = pck::parse_sgx_extension(ext) else { return Vec::new() };
    let name = match tee {
        DcapTee::Sgx => "sgx",
        DcapTee::Tdx => "tdx",
    };
    let ca = if leaf.issuer_cn().contains("Platform") { "platform" } else { "processor" };
    vec![
        CollateralKey::new(
            Vendor::Intel,
            "tcb-info",
            format!("{name}/{}", hex::encode(&info.fmspc)),
        ),
        CollateralKey::new(Vendor::Intel, "qe-identity", name),
        CollateralKey::new(Vendor::Intel, "pck-crl", ca),
        CollateralKey::new(Vendor::Intel, "root-ca-crl", "root"),
    ]
}

fn verify(tee: DcapTee, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, DcapError> {
    if tee == DcapTee::Tdx && azure::looks_like_azure(evidence) {
        return azure::verify(evidence, inputs);
    }
    let quote = quote::parse(evidence).map_err(|e| match e {
        ParseError::Malformed(what) => DcapError::Malformed { tee, what },
        ParseError::Unsupported(what) => DcapError::Unsupported { tee, what },
    })?;
    match (tee, &quote.body) {
        (DcapTee::Sgx, Body::Td(_)) => {
            return Err(DcapError::WrongTee { tee, found: "a TDX", expected: "an SGX quote" });
        }
        (DcapTee::Tdx, Body::Sgx(_)) => {
            return Err(DcapError::WrongTee { tee, found: "an SGX", expected: "a TDX quote" });
        }
        _ => {}
    }
    if quote.header.qe_vendor_id != quote::INTEL_QE_VENDOR_ID {
        return Err(DcapError::QeVendor { tee, vendor_id: hex::encode(quote.header.qe_vendor_id) });
    }

    // Quote signature with the attestation key.
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04);
    sec1.extend_from_slice(quote.attestation_key);
    let attestation_key = crate::x509::EcPublicKey::from_sec1(crate::x509::Curve::P256, &sec1)
        .map(PublicKey::P256)
        .ok_or(DcapError::AttestationKey { tee })?;
    attestation_key
        .verify_ecdsa_raw(false, quote.signed, quote.signature)
        .map_err(|_| DcapError::QuoteSignature { tee })?;

    // PCK chain to the pinned root.
    let chain = Cert::parse_many_shared(quote.pck_chain_pem)
        .map_err(|source| DcapError::PckChain { tee, source })?;
    let kind = match tee {
        DcapTee::Sgx => TeeKind::Sgx,
        DcapTee::Tdx => TeeKind::Tdx,
    };
    let anchors = inputs.anchors.roots(kind).iter().chain(inputs.anchors.test_roots(kind));
    verify_pck_chain_to(&chain, anchors, inputs.now_unix)
        .map_err(|source| DcapError::PckChain { tee, source })?;
    let leaf = chain.first().ok_or(DcapError::PckChain { tee, source: CertError::EmptyChain })?;
    // The collateral's signing chains are checked against the same root (below), so this is
    // where everything this quote says comes from.
    let origin = {
        let root =
            chain.last().ok_or(DcapError::PckChain { tee, source: CertError::EmptyChain })?;
        inputs.anchors.origin_of(kind, &root.sha256_fingerprint(), &[INTEL_SGX_ROOT_CA_SHA256])
    };

    // QE report signed by the PCK key, and bound to the attestation key.
    let pck_key = leaf.public_key().map_err(|source| DcapError::PckChain { tee, source })?;
    // The QE report and its signature are the same in every quote of this QE: remembered by
    // their exact bytes and the PCK key (the quote's own signature, above, never is).
    pck_key
        .verify_ecdsa_raw_remembered(false, quote.qe_report_raw, quote.qe_report_signature)
        .map_err(|_| DcapError::QeReportSignature { tee })?;
    let mut hasher = Sha256::new();
    hasher.update(quote.attestation_key);
    hasher.update(quote.qe_auth_data);
    let digest = hasher.finalize();
    // The QE writes the hash in the first 32 bytes and zeros in the rest; Intel's QVL compares
    // all 64 bytes, and so does this.
    let (hash, rest) = quote.qe_report.report_data.split_at(32);
    if hash != &digest[..] || rest.iter().any(|&b| b != 0) {
        return Err(DcapError::QeReportBinding { tee });
    }

    let ext = leaf.extension(pck::SGX_EXTENSION_OID).ok_or_else(|| DcapError::PckExtension {
        tee,
        what: format!("{} has no SGX extension", leaf.subject_cn()),
    })?;
    let pck_info =
        pck::parse_sgx_extension(ext).map_err(|what| DcapError::PckExtension { tee, what })?;

    // TCB appraisal with collateral, when there is any.
    let (tcb_id, qe_id) = match tee {
        DcapTee::Sgx => ("SGX", "QE"),
        DcapTee::Tdx => ("TDX", "TD_QE"),
    };
    let problem = |p: CollateralProblem| match p {
        CollateralProblem::Unrecognised(what) => DcapError::Collateral { tee, what },
        CollateralProblem::Missing(what) => DcapError::CollateralMissing { tee, what },
        CollateralProblem::Expired(what) => DcapError::CollateralExpired { tee, what },
        CollateralProblem::Mismatch(what) => DcapError::CollateralMismatch { tee, what },
    };
    // Read once per distinct collateral and platform (remembered under a digest of all of it);
    // the validity windows are checked at this verification's time.
    let prepared = collateral::prepare(
        &inputs.collateral.documents,
        &inputs.collateral.certificates,
        &chain,
        tcb_id,
        qe_id,
        &pck_info.fmspc,
    )
    .map_err(problem)?;
    let appraisal = match (&prepared.assembled, &prepared.checks) {
        (Assembled::None, _) => None,
        (Assembled::Full(_), None) => {
            return Err(DcapError::Collateral { tee, what: "collateral was not checked".into() });
        }
        (Assembled::Full(bundle), Some(checks)) => {
            checks.at(inputs.now_unix).map_err(problem)?;
            let root =
                chain.last().ok_or(DcapError::PckChain { tee, source: CertError::EmptyChain })?;
            let now = u64::try_from(inputs.now_unix).map_err(|_| DcapError::Appraisal {
                tee,
                what: "verification time is before 1970".into(),
            })?;
            let name = match tee {
                DcapTee::Sgx => "sgx",
                DcapTee::Tdx => "tdx",
            };
            let key = memo::key(&quote, &prepared.digest, root, name);
            let remembered = key.and_then(|key| memo::lookup(&key, inputs.now_unix));
            let verdict = match remembered {
                Some(verdict) => verdict,
                None => {
                    let report = dcap_qvl::verify::QuoteVerifier::<
                        dcap_qvl::configs::RingConfig,
                    >::new_with_config(root.der().to_vec())
                    .allow_debug(true)
                    .allow_service_td(true)
                    .verify(quote.quote, bundle, now)
                    .map_err(|e| map_qvl_error(tee, &format!("{e:#}")))?;
                    let verdict = memo::Verdict::from_report(&report);
                    if let (Some(key), Some(window)) = (key, memo::window(bundle, &chain)) {
                        memo::remember(key, window, verdict.clone());
                    }
                    verdict
                }
            };
            Some(verdict)
        }
    };

    Ok(build_claims(&quote, &pck_info, appraisal.as_ref(), origin))
}

/// How many times a remembered dcap-qvl verdict was reused.
pub(crate) fn memo_hits() -> u64 {
    memo::hits()
}

/// Maps dcap-qvl's message chain to the check that failed.
fn map_qvl_error(tee: DcapTee, chain: &str) -> DcapError {
    let what = chain.to_owned();
    let has = |s: &str| chain.contains(s);
    if has("CertRevoked") {
        DcapError::Revoked { tee, what }
    } else if has("UnknownRevocationStatus") {
        DcapError::CollateralMismatch {
            tee,
            what: format!("the CRLs do not cover every certificate of the chains [{what}]"),
        }
    } else if has("must have version") || has("Unsupported DCAP") {
        DcapError::Unsupported { tee, what }
    } else if has("TCB status is invalid: Revoked") {
        DcapError::TcbRevoked { tee }
    } else if has("expired")
        || has("Expired")
        || has("issue date is in the future")
        || has("NotValidYet")
    {
        DcapError::CollateralExpired { tee, what }
    } else if has("Fmspc mismatch") || has("non-TDX TCB info") || has("non-SGX TCB info") {
        DcapError::CollateralMismatch { tee, what }
    } else if has("Signature is invalid for tcb_info")
        || has("Signature is invalid for qe_identity")
        || has("CRL")
        || has("TCB Info")
        || has("QE Identity signer")
        || has("UnknownIssuer")
        || has("BadSignature")
        || has("InvalidSignatureForPublicKey")
    {
        DcapError::CollateralSignature { tee, what }
    } else if has("QE MRSIGNER")
        || has("QE ISVPRODID")
        || has("QE MISCSELECT")
        || has("QE ATTRIBUTES")
        || has("QE ISVSVN")
        || has("QE Identity")
        || has("QE report validation")
    {
        DcapError::QeIdentity { tee, what }
    } else if has("TDX module") {
        DcapError::TdxModule { tee, what }
    } else if has("No matching TCB level") {
        DcapError::TcbLevel {
            tee,
            what: format!(
                "no TCB level of the tcbInfo is met by the platform's CPUSVN, PCESVN and \
                 TEE_TCB_SVN (its TCB is older than every level Intel lists: not supported) \
                 [{what}]"
            ),
        }
    } else if has("TCB level") || has("TCB status") {
        DcapError::TcbLevel { tee, what }
    } else if has("SEPT_VE_DISABLE")
        || has("migration")
        || has("Reserved bits in TD attributes")
        || has("SERVTD")
    {
        DcapError::TdAttributes { tee, what }
    } else if has("ISV enclave report signature") {
        DcapError::QuoteSignature { tee }
    } else if has("qe_report") || has("QE report hash") {
        DcapError::QeReportSignature { tee }
    } else {
        DcapError::Appraisal { tee, what }
    }
}

fn tcb_status(status: &str) -> TcbStatus {
    match status {
        "UpToDate" => TcbStatus::UpToDate,
        "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
        "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
        "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
        "OutOfDate" => TcbStatus::OutOfDate,
        // A TD 1.5 launched on an out-of-date TCB whose current TCB is fine: the launch TCB is
        // still out of date, so it is reported as such (the exact status is in the vendor
        // fields).
        "TDRelaunchAdvised" => TcbStatus::OutOfDate,
        "OutOfDateConfigurationNeeded" | "TDRelaunchAdvisedConfigurationNeeded" => {
            TcbStatus::OutOfDateConfigurationNeeded
        }
        "Revoked" => TcbStatus::Revoked,
        _ => TcbStatus::Unknown,
    }
}

fn h(bytes: &[u8]) -> Value {
    Value::String(hex::encode(bytes))
}

fn sgx_report_fields(r: &SgxReport) -> serde_json::Map<String, Value> {
    let flags = r.attributes[0];
    let mut m = serde_json::Map::new();
    m.insert("cpu_svn".into(), h(&r.cpu_svn));
    m.insert("misc_select".into(), json!(r.misc_select));
    m.insert("isv_ext_prod_id".into(), h(&r.isv_ext_prod_id));
    m.insert("attributes".into(), h(&r.attributes));
    m.insert(
        "attributes_flags".into(),
        json!({
            "init": flags & 0x01 != 0,
            "debug": flags & 0x02 != 0,
            "mode64bit": flags & 0x04 != 0,
            "provision_key": flags & 0x10 != 0,
            "einittoken_key": flags & 0x20 != 0,
            "kss": flags & 0x80 != 0,
        }),
    );
    m.insert("mr_enclave".into(), h(&r.mr_enclave));
    m.insert("mr_signer".into(), h(&r.mr_signer));
    m.insert("config_id".into(), h(&r.config_id));
    m.insert("isv_prod_id".into(), json!(r.isv_prod_id));
    m.insert("isv_svn".into(), json!(r.isv_svn));
    m.insert("config_svn".into(), json!(r.config_svn));
    m.insert("isv_family_id".into(), h(&r.isv_family_id));
    m.insert("report_data".into(), h(&r.report_data));
    m
}

fn td_report_fields(r: &TdReport) -> serde_json::Map<String, Value> {
    let attrs = u64::from_le_bytes(r.td_attributes);
    let bit = |n: u32| attrs & (1u64 << n) != 0;
    let mut m = serde_json::Map::new();
    m.insert("tee_tcb_svn".into(), h(&r.tee_tcb_svn));
    m.insert("mr_seam".into(), h(&r.mr_seam));
    m.insert("mr_signer_seam".into(), h(&r.mr_signer_seam));
    m.insert("seam_attributes".into(), h(&r.seam_attributes));
    m.insert("td_attributes".into(), h(&r.td_attributes));
    m.insert(
        "td_attributes_flags".into(),
        json!({
            "debug": bit(0),
            "icssd": bit(16),
            "servtd_ext": bit(17),
            "lass": bit(27),
            "sept_ve_disable": bit(28),
            "migratable": bit(29),
            "pks": bit(30),
            "kl": bit(31),
            "perfmon": bit(63),
        }),
    );
    m.insert("xfam".into(), h(&r.xfam));
    m.insert("mr_td".into(), h(&r.mr_td));
    m.insert("mr_config_id".into(), h(&r.mr_config_id));
    m.insert("mr_owner".into(), h(&r.mr_owner));
    m.insert("mr_owner_config".into(), h(&r.mr_owner_config));
    for (i, rtmr) in r.rtmr.iter().enumerate() {
        m.insert(format!("rtmr{i}"), h(rtmr));
    }
    m.insert("report_data".into(), h(&r.report_data));
    if let Some((svn2, servicetd)) = &r.td15 {
        m.insert("tee_tcb_svn2".into(), h(svn2));
        m.insert("mr_servicetd".into(), h(servicetd));
    }
    m
}

fn build_claims(
    quote: &Quote<'_>,
    pck_info: &pck::PckInfo,
    appraisal: Option<&memo::Verdict>,
    origin: AnchorOrigin,
) -> Claims {
    let mut fields = match &quote.body {
        Body::Sgx(r) => sgx_report_fields(r),
        Body::Td(r) => td_report_fields(r),
    };
    let hd = &quote.header;
    fields.insert("quote_version".into(), json!(hd.version));
    if let Some(body_type) = quote.body_type {
        fields.insert("body_type".into(), json!(body_type));
    }
    fields.insert("tee_type".into(), json!(hd.tee_type));
    fields.insert("qe_svn".into(), json!(hd.qe_svn));
    fields.insert("pce_svn".into(), json!(hd.pce_svn));
    fields.insert("qe_vendor_id".into(), h(&hd.qe_vendor_id));
    fields.insert("user_data".into(), h(&hd.user_data));
    fields.insert("fmspc".into(), h(&pck_info.fmspc));
    fields.insert("pce_id".into(), h(&pck_info.pce_id));
    fields.insert("ppid".into(), h(&pck_info.ppid));
    fields.insert("pck_cpu_svn".into(), h(&pck_info.cpu_svn));
    fields.insert("pck_pce_svn".into(), json!(pck_info.pce_svn));
    if let Some(sgx_type) = pck_info.sgx_type {
        fields.insert("sgx_type".into(), json!(sgx_type));
    }
    fields.insert("trust_anchor".into(), json!(origin.as_str()));
    if quote.trailing > 0 {
        // Reported so that a user sees the buffer was larger than the quote; never read.
        fields.insert("trailing_bytes".into(), json!(quote.trailing));
    }
    let qe = &quote.qe_report;
    fields.insert(
        "qe_report".into(),
        json!({
            "mr_enclave": hex::encode(qe.mr_enclave),
            "mr_signer": hex::encode(qe.mr_signer),
            "isv_prod_id": qe.isv_prod_id,
            "isv_svn": qe.isv_svn,
            "attributes": hex::encode(qe.attributes),
            "misc_select": qe.misc_select,
        }),
    );
    let (status, advisories) = match appraisal {
        Some(report) => {
            fields.insert("tcb_status".into(), json!(report.status));
            fields.insert("advisory_ids".into(), json!(report.advisory_ids));
            fields.insert("platform_tcb_status".into(), json!(report.platform_status));
            fields.insert("qe_tcb_status".into(), json!(report.qe_status));
            fields.insert("collateral".into(), json!(true));
            (tcb_status(&report.status), report.advisory_ids.clone())
        }
        None => {
            fields.insert("tcb_status".into(), json!("Unknown"));
            fields.insert("advisory_ids".into(), json!([]));
            fields.insert("collateral".into(), json!(false));
            (TcbStatus::Unknown, Vec::new())
        }
    };
    let (kind, measurement, signer, product_id, svn, debug, report_data) = match &quote.body {
        Body::Sgx(r) => (
            TeeKind::Sgx,
            r.mr_enclave.to_vec(),
            Some(Hex(r.mr_signer.to_vec())),
            Some(u64::from(r.isv_prod_id)),
            Some(u64::from(r.isv_svn)),
            r.attributes[0] & 0x02 != 0,
            r.report_data.to_vec(),
        ),
        Body::Td(r) => (
            TeeKind::Tdx,
            r.mr_td.to_vec(),
            None,
            None,
            None,
            r.td_attributes[0] & 0x01 != 0,
            r.report_data.to_vec(),
        ),
    };
    let mut vendor = BTreeMap::new();
    vendor.insert(kind.as_str().to_owned(), Value::Object(fields));
    Claims {
        tee: kind,
        measurement: Hex(measurement),
        signer,
        product_id,
        svn,
        debug,
        report_data: Hex(report_data),
        tcb_status: status,
        advisories,
        platform_id: Some(Hex(pck_info.ppid.clone())),
        vendor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A predicate on an error's variant.
    type IsVariant = fn(&DcapError) -> bool;

    /// dcap-qvl reports failures as message chains; each kind maps to the check that failed.
    #[test]
    fn dcap_qvl_messages_map_to_checks() {
        let cases: &[(&str, IsVariant)] = &[
            ("Failed to verify certificate chain: CertRevoked", |e| {
                matches!(e, DcapError::Revoked { .. })
            }),
            ("TCB status is invalid: Revoked", |e| matches!(e, DcapError::TcbRevoked { .. })),
            ("TCBInfo expired", |e| matches!(e, DcapError::CollateralExpired { .. })),
            ("Failed to verify certificate chain: CrlExpired { time: 1, next_update: 0 }", |e| {
                matches!(e, DcapError::CollateralExpired { .. })
            }),
            ("Fmspc mismatch", |e| matches!(e, DcapError::CollateralMismatch { .. })),
            ("Signature is invalid for tcb_info in quote_collateral", |e| {
                matches!(e, DcapError::CollateralSignature { .. })
            }),
            ("QE MRSIGNER mismatch: expected A, got B", |e| {
                matches!(e, DcapError::QeIdentity { .. })
            }),
            ("TDX module identity check: TDX module MRSIGNER mismatch", |e| {
                matches!(e, DcapError::TdxModule { .. })
            }),
            ("No matching TCB level found", |e| matches!(e, DcapError::TcbLevel { .. })),
            ("SEPT_VE_DISABLE is not enabled", |e| matches!(e, DcapError::TdAttributes { .. })),
            ("ISV enclave report signature is invalid", |e| {
                matches!(e, DcapError::QuoteSignature { .. })
            }),
            ("Failed to verify certificate chain: UnknownRevocationStatus", |e| {
                matches!(e, DcapError::CollateralMismatch { .. })
            }),
            ("SGX TEE quote must have version 3", |e| matches!(e, DcapError::Unsupported { .. })),
            ("something new", |e| matches!(e, DcapError::Appraisal { .. })),
        ];
        for (message, check) in cases {
            let err = map_qvl_error(DcapTee::Tdx, message);
            assert!(check(&err), "{message} -> {err:?}");
            assert!(err.to_string().starts_with("tdx: "), "{err}");
        }
    }

    #[test]
    fn tcb_statuses_map_conservatively() {
        assert_eq!(tcb_status("TDRelaunchAdvised"), TcbStatus::OutOfDate);
        assert_eq!(
            tcb_status("TDRelaunchAdvisedConfigurationNeeded"),
            TcbStatus::OutOfDateConfigurationNeeded
        );
        assert_eq!(tcb_status("UpToDate"), TcbStatus::UpToDate);
        assert_eq!(tcb_status("nonsense"), TcbStatus::Unknown);
    }
}
