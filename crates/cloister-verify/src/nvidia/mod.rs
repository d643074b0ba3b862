//! NVIDIA Hopper GPU evidence: SPDM measurements signed by the device key, chain to the NVIDIA root.
//!
//! The evidence is the SPDM 1.1, 1.2 or 1.3 GET_MEASUREMENTS request followed by the device's
//! MEASUREMENTS response (binary, or the same as hex text; bytes after the signature are counted
//! as `trailing_bytes` and never read); `spdm.rs` describes the layout. The driver checks,
//! in this order:
//!
//! 1. the structure of request and response, bounds-checked field by field;
//! 2. the certificate chain from `inputs.collateral.certificates`, leaf first (the GPU's
//!    `GH100 A01 GSP FMC LF` signing certificate up to `NVIDIA Device Identity CA`): at least two
//!    certificates, the leaf carries the FWID extension (2.23.133.5.4.1), each certificate is
//!    issued by the next and valid at `inputs.now_unix`, and the root is the pinned NVIDIA root
//!    or one of `inputs.anchors.roots(TeeKind::Nvidia)`. When the chain stops below a root, a
//!    root among the anchors whose subject is the last issuer completes it;
//! 3. the ECDSA P-384/SHA-384 signature (96 bytes, `r || s`, after the opaque data) with the
//!    leaf's key, over the request and response before it (1.1) or the 1.2/1.3 signing context;
//! 4. the FWID in the report's opaque data (when present) equals the leaf certificate's FWID;
//! 5. RIM appraisal, when RIMs (SWID tags) come in `inputs.collateral.documents`. Every RIM
//!    given must carry a valid enveloped XML signature (`dsig.rs`: Reference digest over the
//!    canonical document, SignatureValue over the canonical SignedInfo, signer chain in
//!    `KeyInfo` to NVIDIA's RIM signing root pinned by fingerprint, or to a root the instance
//!    names with [`TrustAnchors::with_nvidia_rim_test_root`](crate::TrustAnchors), valid at
//!    `inputs.now_unix`), else the evidence is refused. A RIM whose version is the report's
//!    VBIOS or driver version must match every active measurement (one of its alternatives),
//!    else the evidence is refused; a RIM for another version is reported in the claims
//!    (`status: "version_mismatch"`) and not compared;
//! 6. revocation, when OCSP responses (DER) come in `inputs.collateral.documents`: each must be
//!    about a certificate of a RIM signer chain or of the device chain, signed by that
//!    certificate's issuer or a responder it delegated, current at `inputs.now_unix`, and say
//!    `good` (`crate::ocsp`); anything else refuses the evidence. The claims' `ocsp` lists the
//!    certificates found good; a certificate without a response is not checked for revocation
//!    (NVIDIA's OCSP service is online only and this crate fetches nothing).
//!
//! `measurements_appraised` is true only when a VBIOS and a driver RIM for the report's versions
//! were both given and signature-verified, every active measurement of both was compared and
//! matched (RIM index 35 only while NVDEC0 is enabled, as NVIDIA's verifier does: its value is
//! meaningless otherwise), and at least one measurement was compared. `rim_signature_verified`
//! is true when RIMs were given (each one verified, or the evidence is refused); `rim_root` says
//! which root their signer chains end at: `nvidia`, or `test` when any ends at a test root
//! (`null` without RIMs). Policies must not treat `test` as NVIDIA's word.
//!
//! Claims: `measurement` is SHA-384 over the concatenation of every measurement value in the
//! order of the blocks' indexes; `report_data` is the requester's 32-byte nonce (how it binds to
//! the CPU TEE's evidence is the composite verifier's business); `debug` is false (the evidence
//! has no debug indicator: a GPU in devtools mode shows as different measurements, which RIM
//! appraisal catches); `platform_id` is the device identifier in the leaf certificate's subject
//! alternative name (`NVIDIA:GH100:<hex>`), when present; `tcb_status` is `unknown` (NVIDIA's
//! OCSP and RIM services are online only; the verifier fetches nothing).

mod c14n;
mod dsig;
mod rim;
mod spdm;
mod xml;

pub use dsig::RimSignatureError;

use std::collections::BTreeMap;

use cloister_types::{Claims, Hex, TcbStatus, TeeKind};
use der::Decode as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha384};

use crate::error::VerifyError;
use crate::inputs::{Inputs, is_ocsp_response};
use crate::ocsp::{OcspError, OcspResponse, OcspVerdict};
use crate::x509::{Cert, CertError, PublicKey, verify_chain};

/// SHA-256 fingerprint of NVIDIA's device attestation root, subject
/// `CN=NVIDIA Device Identity CA, O=NVIDIA` (P-384, valid 2021-11-05 to 9999-12-31).
const NVIDIA_DEVICE_ROOT_SHA256: [u8; 32] = [
    0x10, 0x2b, 0xf6, 0x59, 0xd5, 0x41, 0x96, 0x14, 0xc9, 0xd8, 0xe6, 0xae, 0xce, 0xbc, 0x80, 0x45,
    0x4e, 0xb2, 0x6b, 0x1d, 0xf6, 0xa7, 0x69, 0xac, 0x72, 0x0b, 0x9a, 0x69, 0x0b, 0x16, 0x7b, 0x48,
];

/// The certificate extension carrying the firmware identity (TCG DICE FWID); its last 48 bytes
/// are the SHA-384 FWID.
const FWID_EXTENSION: &str = "2.23.133.5.4.1";
/// Subject alternative name.
const SAN_EXTENSION: &str = "2.5.29.17";
/// NVIDIA's otherName type for the device identifier (`NVIDIA:GH100:<hex>`).
const NVIDIA_DEVICE_ID_OTHER_NAME: &str = "1.3.6.1.4.1.412.274.1";
/// Length of a FWID (SHA-384).
const FWID_LEN: usize = 48;

/// Opaque field types (NVIDIA's numbering).
const OPAQUE_DRIVER_VERSION: u16 = 3;
const OPAQUE_VBIOS_VERSION: u16 = 6;
const OPAQUE_NVDEC0_STATUS: u16 = 11;
const OPAQUE_MSRSCNT: u16 = 12;
const OPAQUE_FWID: u16 = 20;
/// NVDEC0 status byte meaning "enabled"; other values (0x55) mean disabled.
const NVDEC0_ENABLED: u8 = 0xAA;
/// The RIM index (0-based) that NVIDIA compares only while NVDEC0 is enabled.
const NVDEC0_RIM_INDEX: u16 = 35;

/// Why nvidia evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NvidiaError {
    /// The evidence is larger than any genuine report.
    #[error("nvidia: evidence is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the evidence.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The evidence ends inside a field.
    #[error("nvidia: evidence is truncated: the {what} needs {need} bytes, {have} remain")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The SPDM version is not 1.1, 1.2 or 1.3.
    #[error("nvidia: SPDM version {0:#04x} is not supported (1.1, 1.2 and 1.3: 0x11, 0x12, 0x13)")]
    SpdmVersion(u8),
    /// The SPDM 1.3 response does not echo the request's requester context: it answers another
    /// request.
    #[error(
        "nvidia: the MEASUREMENTS response's requester context {response} is not the \
         GET_MEASUREMENTS request's {request} (SPDM 1.3 requires the same)"
    )]
    RequesterContextMismatch {
        /// The request's context, hex.
        request: String,
        /// The response's context, hex.
        response: String,
    },
    /// The evidence is not in the expected format.
    #[error("nvidia: evidence is malformed: {0}")]
    Malformed(String),
    /// No certificate came with the evidence.
    #[error(
        "nvidia: no certificate chain: the GPU's chain (leaf first, up to NVIDIA Device Identity \
         CA) must come with the collateral"
    )]
    NoCertificates,
    /// Fewer than two certificates: there is no signing certificate below the root.
    #[error(
        "nvidia: certificate chain must have at least the root CA and signing certificates, got \
         {0} certificate(s)"
    )]
    ChainTooShort(usize),
    /// A collateral certificate is not X.509.
    #[error("nvidia: collateral certificate {index} is not an X.509 certificate: {source}")]
    CertificateParse {
        /// Its position in the collateral.
        index: usize,
        /// Why.
        #[source]
        source: CertError,
    },
    /// A trust anchor for nvidia is not an X.509 certificate.
    #[error("nvidia: trust anchor {index} is not an X.509 certificate (DER or PEM): {reason}")]
    Anchor {
        /// Its position in the anchors.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The first certificate carries no FWID: it is not the GPU's signing certificate.
    #[error(
        "nvidia: FWID extension ({FWID_EXTENSION}) not found in the signing certificate \
         {subject}: the chain must start with the GPU's attestation (leaf) certificate"
    )]
    MissingFwid {
        /// The first certificate's subject CN.
        subject: String,
    },
    /// The FWID extension is malformed.
    #[error("nvidia: FWID extension of {subject} does not end in a 48-byte OCTET STRING")]
    MalformedFwid {
        /// The certificate's subject CN.
        subject: String,
    },
    /// The certificate chain does not verify.
    #[error("nvidia: certificate chain does not verify: {0}")]
    Chain(#[source] CertError),
    /// The leaf key is not a P-384 key.
    #[error("nvidia: the signing certificate {subject} does not hold a P-384 key: {reason}")]
    SigningKey {
        /// The leaf's subject CN.
        subject: String,
        /// What the key is.
        reason: String,
    },
    /// The report signature does not verify.
    #[error("nvidia: report signature does not verify with the key of {subject}")]
    BadSignature {
        /// The leaf's subject CN.
        subject: String,
    },
    /// The report's FWID is not the certificate's.
    #[error(
        "nvidia: the report's FWID {report} does not match the signing certificate's FWID \
         {certificate}"
    )]
    FwidMismatch {
        /// FWID in the opaque data, hex.
        report: String,
        /// FWID in the certificate, hex.
        certificate: String,
    },
    /// A collateral document is neither a RIM nor an OCSP response.
    #[error(
        "nvidia: collateral document {index} is neither a RIM (SWID tag) nor an OCSP response; \
         the nvidia verifier takes only those as documents"
    )]
    UnknownDocument {
        /// Its position in the collateral.
        index: usize,
    },
    /// A RIM is malformed.
    #[error("nvidia: RIM (collateral document {index}) is malformed: {reason}")]
    Rim {
        /// Its position in the collateral.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A RIM's XML signature does not verify.
    #[error("nvidia: RIM (collateral document {index}) is refused: {source}")]
    RimSignature {
        /// Its position in the collateral.
        index: usize,
        /// Which check failed.
        #[source]
        source: RimSignatureError,
    },
    /// An OCSP response in the collateral does not let a certificate pass.
    #[error("nvidia: OCSP response (collateral document {index}): {source}")]
    Ocsp {
        /// Its position in the collateral.
        index: usize,
        /// Which check failed.
        #[source]
        source: OcspError,
    },
    /// An instance's NVIDIA RIM test root is not an X.509 certificate.
    #[error("nvidia: RIM test root {index} is not an X.509 certificate (DER or PEM): {reason}")]
    RimTestRoot {
        /// Its position among the test roots.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Two RIMs of the same kind were given.
    #[error("nvidia: more than one {0} RIM was given")]
    DuplicateRim(&'static str),
    /// The VBIOS and driver RIMs both have an active measurement at one index.
    #[error("nvidia: the driver and VBIOS RIMs both have an active measurement at RIM index {0}")]
    RimIndexConflict(u16),
    /// A RIM has a golden value for a measurement the report lacks.
    #[error(
        "nvidia: the {kind} RIM has a golden value for measurement {index} (RIM index \
         {rim_index}), which the report does not carry"
    )]
    MissingMeasurement {
        /// VBIOS or driver.
        kind: &'static str,
        /// The report's block index.
        index: u32,
        /// The RIM's index.
        rim_index: u16,
    },
    /// A measurement matches none of the RIM's golden values.
    #[error(
        "nvidia: measurement {index} does not match the {kind} RIM {version} (RIM index \
         {rim_index}): the report has {actual}"
    )]
    MeasurementMismatch {
        /// The report's block index.
        index: u32,
        /// The RIM's index.
        rim_index: u16,
        /// VBIOS or driver.
        kind: &'static str,
        /// The RIM's version.
        version: String,
        /// The report's value, hex.
        actual: String,
    },
}

/// The driver for [`TeeKind::Nvidia`].
pub(crate) struct NvidiaDriver;

impl crate::Driver for NvidiaDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Ok(verify(evidence, inputs)?)
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let evidence = decode_hex_text(bytes);
    if let Ok(report) = spdm::parse(&evidence) {
        let _ = decode_opaque(&report);
    }
    if rim::looks_like_swid(bytes) {
        let _ = rim::parse(bytes);
    }
}

/// See [`crate::internal::canonical_rim`].
pub(crate) fn canonical_rim(
    bytes: &[u8],
    signed_info: bool,
    algorithm: &str,
) -> Result<Vec<u8>, String> {
    let doc = rim::parse_document(bytes)?;
    let algorithm = c14n::Algorithm::from_uri(algorithm)
        .ok_or_else(|| format!("unknown canonicalisation {algorithm}"))?;
    let signature = doc.elements().find(|(_, e)| e.is(dsig::DS_NS, "Signature")).map(|(id, _)| id);
    let set = if signed_info {
        let signature = signature.ok_or("the RIM has no ds:Signature")?;
        let (id, _) = doc
            .child_elements(signature)
            .find(|(_, e)| e.is(dsig::DS_NS, "SignedInfo"))
            .ok_or("the ds:Signature has no SignedInfo")?;
        c14n::NodeSet::Subtree(id)
    } else {
        c14n::NodeSet::Document { omit: signature }
    };
    c14n::canonicalize(&doc, set, &algorithm)
}

/// See [`crate::internal::verify_rim`].
pub(crate) fn verify_rim_for_fuzz(
    bytes: &[u8],
    test_roots: &[Vec<u8>],
    now_unix: i64,
) -> Result<(), String> {
    let doc = rim::parse_document(bytes)?;
    rim::from_document(&doc)?;
    let mut roots = Vec::new();
    for bytes in test_roots {
        roots.extend(Cert::parse_many(bytes).map_err(|e| e.to_string())?);
    }
    let trust = dsig::RimTrust { test_roots: roots, now_unix };
    dsig::verify(&doc, &trust).map(|_| ()).map_err(|e| e.to_string())
}

/// Hex text (whitespace allowed) is decoded; anything else is used as is.
fn decode_hex_text(bytes: &[u8]) -> Vec<u8> {
    let compact: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if !compact.is_empty()
        && compact.iter().all(u8::is_ascii_hexdigit)
        && let Ok(decoded) = hex::decode(&compact)
    {
        return decoded;
    }
    bytes.to_vec()
}

fn verify(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, NvidiaError> {
    let evidence = decode_hex_text(evidence);
    let report = spdm::parse(&evidence)?;
    let opaque = decode_opaque(&report)?;

    // The certificate chain.
    let chain = certificate_chain(inputs)?;
    let leaf = chain.first().ok_or(NvidiaError::NoCertificates)?;
    let fwid = leaf_fwid(leaf)?;
    let mut pinned = vec![NVIDIA_DEVICE_ROOT_SHA256];
    pinned.extend(anchor_certs(inputs)?.iter().map(Cert::sha256_fingerprint));
    verify_chain(&chain, &pinned, inputs.now_unix).map_err(NvidiaError::Chain)?;

    // The report signature.
    let key = leaf.public_key().map_err(|e| NvidiaError::SigningKey {
        subject: leaf.subject_cn(),
        reason: e.to_string(),
    })?;
    if !matches!(key, PublicKey::P384(_)) {
        return Err(NvidiaError::SigningKey {
            subject: leaf.subject_cn(),
            reason: "not an EC P-384 key".into(),
        });
    }
    let transcript = evidence.get(..report.signed_len).unwrap_or_default();
    let signed = spdm::signed_message(report.version, transcript);
    key.verify_ecdsa_raw(true, &signed, &report.signature)
        .map_err(|_| NvidiaError::BadSignature { subject: leaf.subject_cn() })?;

    // The report's FWID, when it carries one, is the certificate's.
    if let Some(report_fwid) = report.opaque_field(OPAQUE_FWID)
        && report_fwid != fwid.as_slice()
    {
        return Err(NvidiaError::FwidMismatch {
            report: hex::encode(report_fwid),
            certificate: hex::encode(fwid),
        });
    }

    // Reference measurements.
    let appraisal = appraise(&report, &opaque, &chain, inputs)?;

    Ok(claims(&report, opaque, &chain, &fwid, appraisal))
}

/// The chain from the collateral, leaf first, completed with an anchor root when it stops below
/// its root.
fn certificate_chain(inputs: &Inputs<'_>) -> Result<Vec<Cert>, NvidiaError> {
    let mut chain = Vec::new();
    for (index, der) in inputs.collateral.certificates.iter().enumerate() {
        chain.push(
            Cert::from_der(der)
                .map_err(|source| NvidiaError::CertificateParse { index, source })?,
        );
    }
    match chain.len() {
        0 => return Err(NvidiaError::NoCertificates),
        1 => return Err(NvidiaError::ChainTooShort(1)),
        _ => {}
    }
    if let Some(last) = chain.last() {
        let tbs = last.parsed().tbs_certificate();
        if tbs.subject() != tbs.issuer() {
            let issuer = tbs.issuer().clone();
            if let Some(root) = anchor_certs(inputs)?
                .into_iter()
                .find(|a| a.parsed().tbs_certificate().subject() == &issuer)
            {
                chain.push(root);
            }
        }
    }
    Ok(chain)
}

/// The extra nvidia anchors, as certificates; an anchor that is not one is an error.
fn anchor_certs(inputs: &Inputs<'_>) -> Result<Vec<Cert>, NvidiaError> {
    let mut out = Vec::new();
    for (index, bytes) in inputs.anchors.roots(TeeKind::Nvidia).iter().enumerate() {
        let certs = Cert::parse_many(bytes)
            .map_err(|e| NvidiaError::Anchor { index, reason: e.to_string() })?;
        out.extend(certs);
    }
    Ok(out)
}

/// The 48-byte FWID at the end of the leaf's FWID extension.
fn leaf_fwid(leaf: &Cert) -> Result<[u8; FWID_LEN], NvidiaError> {
    let ext = leaf
        .extension(FWID_EXTENSION)
        .ok_or_else(|| NvidiaError::MissingFwid { subject: leaf.subject_cn() })?;
    let malformed = || NvidiaError::MalformedFwid { subject: leaf.subject_cn() };
    // The extension ends with the FWID as an OCTET STRING of 48 bytes: 04 30 <48 bytes>.
    let start = ext.len().checked_sub(FWID_LEN + 2).ok_or_else(malformed)?;
    let tail = ext.get(start..).ok_or_else(malformed)?;
    if tail.first() != Some(&0x04) || tail.get(1) != Some(&0x30) {
        return Err(malformed());
    }
    let mut fwid = [0u8; FWID_LEN];
    fwid.copy_from_slice(tail.get(2..).ok_or_else(malformed)?);
    Ok(fwid)
}

/// The device identifier in the leaf's subject alternative name (`NVIDIA:GH100:<hex>`).
fn device_id(leaf: &Cert) -> Option<String> {
    use x509_cert::ext::pkix::{SubjectAltName, name::GeneralName};
    let san = SubjectAltName::from_der(leaf.extension(SAN_EXTENSION)?).ok()?;
    san.0.iter().find_map(|name| match name {
        GeneralName::OtherName(other)
            if other.type_id.to_string() == NVIDIA_DEVICE_ID_OTHER_NAME =>
        {
            other
                .value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .ok()
                .map(|s| s.as_str().to_owned())
        }
        _ => None,
    })
}

/// The opaque data, decoded.
struct Opaque {
    /// Fields by name, as they go into the claims.
    fields: serde_json::Map<String, Value>,
    /// The driver version text.
    driver_version: Option<String>,
    /// The VBIOS version, `96.00.9f.00.01`.
    vbios_version: Option<String>,
    /// Whether NVDEC0 is enabled (status byte 0xAA).
    nvdec0_enabled: bool,
}

/// NVIDIA's name of an opaque field type.
fn opaque_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        1 => "cert_issuer_name",
        2 => "cert_authority_key_identifier",
        3 => "driver_version",
        4 => "gpu_info",
        5 => "sku",
        6 => "vbios_version",
        7 => "manufacturer_id",
        8 => "tamper_detection",
        9 => "smc",
        10 => "vpr",
        11 => "nvdec0_status",
        12 => "measurement_count",
        13 => "cpr_info",
        14 => "board_id",
        15 => "chip_sku",
        16 => "chip_sku_mod",
        17 => "project",
        18 => "project_sku",
        19 => "project_sku_mod",
        20 => "fwid",
        21 => "protected_pcie_status",
        22 => "switch_pdi",
        23 => "floorswept_ports",
        24 => "position_id",
        25 => "lock_switch_status",
        32 => "gpu_link_conn",
        33 => "sys_enable_status",
        34 => "opaque_data_version",
        35 => "chip_info",
        36 => "feature_flag",
        _ => return None,
    })
}

fn decode_opaque(report: &spdm::Report) -> Result<Opaque, NvidiaError> {
    let mut fields = serde_json::Map::new();
    let mut driver_version = None;
    let mut vbios_version = None;
    let mut nvdec0_enabled = false;
    for field in &report.opaque {
        let name = opaque_name(field.kind)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("field_{}", field.kind));
        let value = match field.kind {
            // Text fields, NUL-padded.
            3 | 15..=18 => {
                let text = text_field(&field.value).ok_or_else(|| {
                    NvidiaError::Malformed(format!("opaque field {name} is not text"))
                })?;
                if field.kind == OPAQUE_DRIVER_VERSION {
                    driver_version = Some(text.clone());
                }
                Value::String(text)
            }
            OPAQUE_VBIOS_VERSION => {
                let v = vbios_text(&field.value).ok_or_else(|| {
                    NvidiaError::Malformed(format!(
                        "opaque field vbios_version is {} bytes, expected 8",
                        field.value.len()
                    ))
                })?;
                vbios_version = Some(v.clone());
                Value::String(v)
            }
            OPAQUE_MSRSCNT => {
                if field.value.len() % 4 != 0 {
                    return Err(NvidiaError::Malformed(format!(
                        "opaque field measurement_count is {} bytes, not a multiple of 4",
                        field.value.len()
                    )));
                }
                let counts: serde_json::Map<String, Value> = field
                    .value
                    .chunks_exact(4)
                    .enumerate()
                    .map(|(i, c)| {
                        let n = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        ((i + 1).to_string(), Value::from(n))
                    })
                    .collect();
                Value::Object(counts)
            }
            OPAQUE_NVDEC0_STATUS => {
                nvdec0_enabled = field.value.as_slice() == [NVDEC0_ENABLED];
                Value::String(hex::encode(&field.value))
            }
            _ => Value::String(hex::encode(&field.value)),
        };
        fields.insert(name, value);
    }
    fields.insert("nvdec0_enabled".into(), Value::Bool(nvdec0_enabled));
    Ok(Opaque { fields, driver_version, vbios_version, nvdec0_enabled })
}

/// NUL-padded printable ASCII.
fn text_field(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let (text, padding) = bytes.split_at(end);
    if padding.iter().any(|&b| b != 0) || !text.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return None;
    }
    Some(String::from_utf8_lossy(text).into_owned())
}

/// The VBIOS version as NVIDIA writes it: the 8 bytes read as a little-endian integer, its low
/// 32 bits as four hex pairs (high to low), then the next byte: `96.00.9f.00.01`.
fn vbios_text(bytes: &[u8]) -> Option<String> {
    let b: [u8; 8] = bytes.try_into().ok()?;
    Some(format!("{:02x}.{:02x}.{:02x}.{:02x}.{:02x}", b[3], b[2], b[1], b[0], b[4]))
}

/// The outcome of RIM appraisal, as it goes into the claims.
struct Appraisal {
    /// Per RIM kind: what happened.
    rims: serde_json::Map<String, Value>,
    /// Both a VBIOS and a driver RIM for the report's versions were given and signature-verified,
    /// every active measurement of both was compared and matched, and at least one was.
    complete: bool,
    /// At least one RIM was given, and every RIM given was signature-verified.
    signature_verified: bool,
    /// The root the RIMs' signer chains end at: `test` when any ends at a test root.
    root: Option<dsig::RimRoot>,
    /// Certificates an OCSP response in the collateral found good, by subject CN.
    ocsp: serde_json::Map<String, Value>,
}

/// A RIM whose signature verified.
struct SignedRim {
    rim: rim::Rim,
    signed: dsig::Signed,
}

/// The instance's NVIDIA RIM test roots, as certificates; one that is not is an error.
fn rim_test_roots(inputs: &Inputs<'_>) -> Result<Vec<Cert>, NvidiaError> {
    let mut out = Vec::new();
    for (index, bytes) in inputs.anchors.nvidia_rim_test_roots().iter().enumerate() {
        let certs = Cert::parse_many(bytes)
            .map_err(|e| NvidiaError::RimTestRoot { index, reason: e.to_string() })?;
        out.extend(certs);
    }
    Ok(out)
}

fn appraise(
    report: &spdm::Report,
    opaque: &Opaque,
    device_chain: &[Cert],
    inputs: &Inputs<'_>,
) -> Result<Appraisal, NvidiaError> {
    let trust = dsig::RimTrust { test_roots: rim_test_roots(inputs)?, now_unix: inputs.now_unix };
    let mut rims: BTreeMap<rim::RimKind, SignedRim> = BTreeMap::new();
    let mut ocsp_responses = Vec::new();
    for (index, doc) in inputs.collateral.documents.iter().enumerate() {
        if is_ocsp_response(doc) {
            let response = OcspResponse::from_der(doc)
                .map_err(|source| NvidiaError::Ocsp { index, source })?;
            ocsp_responses.push((index, response));
            continue;
        }
        if !rim::looks_like_swid(doc) {
            return Err(NvidiaError::UnknownDocument { index });
        }
        let tree = rim::parse_document(doc).map_err(|reason| NvidiaError::Rim { index, reason })?;
        let parsed =
            rim::from_document(&tree).map_err(|reason| NvidiaError::Rim { index, reason })?;
        let signed = dsig::verify(&tree, &trust)
            .map_err(|source| NvidiaError::RimSignature { index, source })?;
        let kind = parsed.kind;
        if rims.insert(kind, SignedRim { rim: parsed, signed }).is_some() {
            return Err(NvidiaError::DuplicateRim(kind.name()));
        }
    }
    let root = rims.values().map(|r| r.signed.root).max();
    let ocsp = check_ocsp(
        &ocsp_responses,
        rims.values().map(|r| r.signed.chain.as_slice()).chain([device_chain]),
        inputs.now_unix,
    )?;

    // Which RIMs apply to this report's versions.
    let mut applicable = Vec::new();
    let mut out = serde_json::Map::new();
    for kind in [rim::RimKind::Vbios, rim::RimKind::Driver] {
        let report_version = match kind {
            rim::RimKind::Vbios => opaque.vbios_version.as_deref(),
            rim::RimKind::Driver => opaque.driver_version.as_deref(),
        };
        let Some(r) = rims.get(&kind) else {
            out.insert(kind.key().into(), json!({ "status": "absent" }));
            continue;
        };
        let matches = report_version.is_some_and(|v| v.eq_ignore_ascii_case(&r.rim.version));
        if matches {
            applicable.push(r);
        } else {
            out.insert(
                kind.key().into(),
                json!({
                    "status": "version_mismatch",
                    "rim_version": r.rim.version,
                    "report_version": report_version,
                    "tag_id": r.rim.tag_id,
                    "signer_chain": r.signed.chain.iter().map(Cert::subject_cn).collect::<Vec<_>>(),
                    "root": r.signed.root.name(),
                }),
            );
        }
    }

    // No index may be active in both.
    if let [a, b] = applicable.as_slice() {
        for (index, g) in &a.rim.golden {
            if g.active && b.rim.golden.get(index).is_some_and(|o| o.active) {
                return Err(NvidiaError::RimIndexConflict(*index));
            }
        }
    }

    let mut compared = 0usize;
    for SignedRim { rim: r, signed } in &applicable {
        let mut results = serde_json::Map::new();
        for g in r.golden.values().filter(|g| g.active) {
            let block_index = u32::from(g.index) + 1;
            let key = block_index.to_string();
            if g.index == NVDEC0_RIM_INDEX && !opaque.nvdec0_enabled {
                results.insert(key, Value::String("not_compared_nvdec0_disabled".into()));
                continue;
            }
            let block = report.blocks.iter().find(|b| u32::from(b.index) == block_index).ok_or(
                NvidiaError::MissingMeasurement {
                    kind: r.kind.name(),
                    index: block_index,
                    rim_index: g.index,
                },
            )?;
            let ok = block.value.len() == g.size && g.alternatives.contains(&block.value);
            if !ok {
                return Err(NvidiaError::MeasurementMismatch {
                    index: block_index,
                    rim_index: g.index,
                    kind: r.kind.name(),
                    version: r.version.clone(),
                    actual: hex::encode(&block.value),
                });
            }
            compared += 1;
            results.insert(key, Value::String("match".into()));
        }
        out.insert(
            r.kind.key().into(),
            json!({
                "status": "matched",
                "rim_version": r.version,
                "tag_id": r.tag_id,
                "product": r.product,
                "measurements": results,
                "signer_chain": signed.chain.iter().map(Cert::subject_cn).collect::<Vec<_>>(),
                "root": signed.root.name(),
            }),
        );
    }
    Ok(Appraisal {
        rims: out,
        complete: applicable.len() == 2 && compared > 0,
        signature_verified: !rims.is_empty(),
        root,
        ocsp,
    })
}

/// Checks every OCSP response against the certificates of the verified chains (each with its
/// issuer): a response must be about at least one of them, and every entry about one must be
/// authentic, current and `good`. Returns the certificates found good.
fn check_ocsp<'c>(
    responses: &[(usize, OcspResponse)],
    chains: impl Iterator<Item = &'c [Cert]> + Clone,
    now_unix: i64,
) -> Result<serde_json::Map<String, Value>, NvidiaError> {
    let mut good = serde_json::Map::new();
    for (index, response) in responses {
        let mut matched = false;
        for chain in chains.clone() {
            for pair in chain.windows(2) {
                let (cert, issuer) = (&pair[0], &pair[1]);
                match response.check(cert, issuer, now_unix) {
                    Ok(OcspVerdict::Good) => {
                        matched = true;
                        good.insert(cert.subject_cn(), Value::String("good".into()));
                    }
                    Ok(OcspVerdict::NotForThisCertificate) => {}
                    Err(source) => return Err(NvidiaError::Ocsp { index: *index, source }),
                }
            }
        }
        if !matched {
            return Err(NvidiaError::Ocsp {
                index: *index,
                source: OcspError::NoMatchingCertificate,
            });
        }
    }
    Ok(good)
}

fn claims(
    report: &spdm::Report,
    opaque: Opaque,
    chain: &[Cert],
    fwid: &[u8; FWID_LEN],
    appraisal: Appraisal,
) -> Claims {
    let mut blocks: Vec<&spdm::MeasurementBlock> = report.blocks.iter().collect();
    blocks.sort_by_key(|b| b.index);
    let mut hasher = Sha384::new();
    for b in &blocks {
        hasher.update(&b.value);
    }
    let measurement = hasher.finalize().to_vec();
    let measurements: serde_json::Map<String, Value> = blocks
        .iter()
        .map(|b| (b.index.to_string(), Value::String(hex::encode(&b.value))))
        .collect();
    let value_types: serde_json::Map<String, Value> =
        blocks.iter().map(|b| (b.index.to_string(), Value::from(b.value_type))).collect();
    let leaf = chain.first();
    let device = leaf.and_then(device_id);
    let platform_id = device
        .as_deref()
        .and_then(|d| d.rsplit(':').next())
        .and_then(|h| hex::decode(h).ok())
        .map(Hex);
    let mut vendor = json!({
        "spdm_version": format!("{}.{}", report.version >> 4, report.version & 0x0f),
        "request_attributes": report.request_attributes,
        "slot_id": report.slot_id,
        "response_param1": report.response_param1,
        "nonce": hex::encode(report.nonce),
        "responder_nonce": hex::encode(report.responder_nonce),
        "measurements": measurements,
        "measurement_value_types": value_types,
        "driver_version": opaque.driver_version,
        "vbios_version": opaque.vbios_version,
        "opaque": opaque.fields,
        "fwid": hex::encode(fwid),
        "device_id": device,
        "cert_chain": chain.iter().map(Cert::subject_cn).collect::<Vec<_>>(),
        "rim": appraisal.rims,
        "measurements_appraised": appraisal.complete,
        "rim_signature_verified": appraisal.signature_verified,
        "rim_root": appraisal.root.map(dsig::RimRoot::name),
        "ocsp": appraisal.ocsp,
    });
    if report.trailing > 0
        && let Some(fields) = vendor.as_object_mut()
    {
        fields.insert("trailing_bytes".into(), Value::from(report.trailing));
    }
    if let Some(context) = report.requester_context
        && let Some(fields) = vendor.as_object_mut()
    {
        fields.insert("requester_context".into(), Value::from(hex::encode(context)));
    }
    Claims {
        tee: TeeKind::Nvidia,
        measurement: Hex(measurement),
        signer: None,
        product_id: None,
        svn: None,
        debug: false,
        report_data: Hex(report.nonce.to_vec()),
        tcb_status: TcbStatus::Unknown,
        advisories: Vec::new(),
        platform_id,
        vendor: BTreeMap::from([("nvidia".to_owned(), vendor)]),
    }
}
