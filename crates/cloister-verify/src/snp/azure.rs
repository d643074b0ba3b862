//! Azure confidential VM evidence: an HCL report (the hardware report plus the paravisor's
//! "variable data" holding the vTPM attestation key) and a vTPM quote signed by that key.
//!
//! Evidence is trustee's Azure vTPM JSON, recognised by content: `{"version", "hcl_report":
//! base64url, "tpm_quote": {"signature", "message", "pcrs": [hex…]}, "vcek": base64 DER}` or
//! its older byte-array form `{"report": [bytes], "quote": {…}, "vcek": PEM}`.
//!
//! The HCL report (magic `HCLA`) is a 32-byte header, a 1184-byte hardware report area (an SEV-SNP
//! attestation report, or a TD report for TDX), a 20-byte header (data size, version, report
//! type, hash type, variable data size), the variable data (JSON with the vTPM keys as JWKs) and
//! zero padding.
//!
//! Checks, all mandatory, in this order (the SNP report itself first, by the SNP driver, with the
//! VCEK carried in the JSON and the ASK/ARK from the certificates):
//! 1. the HCL report parses, names the expected hardware report type and SHA-256 as its hash;
//! 2. SHA-256 of the variable data equals the first 32 bytes of the hardware report's
//!    `report_data`, and the other 32 bytes are zero (the binding of the vTPM key to the TEE);
//! 3. the variable data is JSON with an RSA JWK of key id `HCLAkPub`: the attestation key (AK);
//! 4. the TPM quote (`TPMS_ATTEST`, type `TPM_ST_ATTEST_QUOTE`) verifies with the AK (RSASSA
//!    PKCS#1 v1.5 with SHA-256; the signature raw or as a `TPMT_SIGNATURE`);
//! 5. SHA-256 over the given PCR values, in the quote's selection order, equals the quote's PCR
//!    digest (one SHA-256 bank only).
//!
//! **`report_data` of the claims is the TPM quote's `extraData`**, not the hardware report's:
//! on Azure the guest cannot choose the SNP report data (the paravisor fills it with the hash of
//! the variable data), so the attester binds the caller's nonce (or the runtime data hash) as the
//! quote's qualifying data. The hardware report's own report data stays in the vendor fields,
//! with the variable data hash under `azure`.

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use cloister_types::{Claims, Hex};

use super::SnpError;
use crate::inputs::Inputs;
use crate::x509::{PublicKey, SignatureAlgorithm};

/// Offset of the hardware report in an HCL report.
pub(crate) const HW_REPORT_OFFSET: usize = 0x20;
/// Size of the hardware report area (an SNP report's size; a TD report is shorter).
pub(crate) const HW_REPORT_LEN: usize = 1184;
/// HCL report type of an SEV-SNP hardware report.
pub const HCL_TYPE_SNP: u32 = 2;
/// HCL report type of a TDX TD report.
pub const HCL_TYPE_TDX: u32 = 4;

const HCL_MAGIC: &[u8; 4] = b"HCLA";
const VAR_HEADER_LEN: usize = 20;
const HASH_TYPE_SHA256: u32 = 1;
const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
const TPM_ALG_SHA256: u16 = 0x000b;
const TPM_ALG_RSASSA: u16 = 0x0014;

/// Why Azure vTPM evidence failed to verify (wrapped by the SNP and TDX errors, which add the
/// TEE's name).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AzureError {
    /// The JSON, the HCL report or the quote does not parse.
    #[error("azure: evidence is malformed: {0}")]
    Malformed(String),
    /// The HCL report carries another hardware report than the driver verifies.
    #[error("azure: HCL report type is {found}, this driver needs {expected}")]
    ReportType {
        /// The report's type.
        found: u32,
        /// The type the driver needs (2 SNP, 4 TDX).
        expected: u32,
    },
    /// The variable data is not bound to the hardware report.
    #[error(
        "azure: HCL variable data is not bound to the {report} report (SHA-256 {hash} ≠ \
         report_data[..32] {report_data}, or report_data[32..] is not zero)"
    )]
    Binding {
        /// `SNP` or `TD`.
        report: &'static str,
        /// SHA-256 of the variable data, hex.
        hash: String,
        /// The hardware report's report_data, hex.
        report_data: String,
    },
    /// The variable data holds no usable attestation key.
    #[error("azure: HCL variable data has no RSA attestation key HCLAkPub: {0}")]
    AttestationKey(String),
    /// The TPM quote signature does not verify.
    #[error("azure: TPM quote signature does not verify with the HCL attestation key")]
    BadSignature,
    /// The PCR values do not hash to the quote's PCR digest.
    #[error(
        "azure: the PCR values given (PCRs {pcrs}) do not match the quote's PCR digest {digest} \
         (their SHA-256 is {computed})"
    )]
    PcrDigest {
        /// The selected PCR indices.
        pcrs: String,
        /// The quote's digest, hex.
        digest: String,
        /// SHA-256 over the given values, hex.
        computed: String,
    },
}

fn malformed(what: impl Into<String>) -> AzureError {
    AzureError::Malformed(what.into())
}

/// Bytes in the JSON: a string (hex, base64 or PEM, depending on the field) or a byte array.
#[derive(Deserialize)]
#[serde(untagged)]
enum Bytes {
    Text(String),
    Array(Vec<u8>),
}

impl Bytes {
    fn hex(&self, name: &str) -> Result<Vec<u8>, AzureError> {
        match self {
            Self::Text(s) => {
                hex::decode(s.trim()).map_err(|e| malformed(format!("{name} is not hex: {e}")))
            }
            Self::Array(a) => Ok(a.clone()),
        }
    }

    fn base64(&self, name: &str) -> Result<Vec<u8>, AzureError> {
        match self {
            Self::Text(s) => {
                decode_base64(s).ok_or_else(|| malformed(format!("{name} is not base64")))
            }
            Self::Array(a) => Ok(a.clone()),
        }
    }
}

/// Decodes base64 or base64url, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cleaned).ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonQuote {
    signature: Bytes,
    message: Bytes,
    pcrs: Vec<Bytes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvidence {
    #[serde(default)]
    version: Option<u32>,
    #[serde(alias = "report")]
    hcl_report: Bytes,
    #[serde(alias = "quote")]
    tpm_quote: JsonQuote,
    #[serde(default)]
    vcek: Option<String>,
    #[serde(default)]
    td_quote: Option<Bytes>,
}

/// Azure vTPM evidence, parsed but not verified.
pub(crate) struct Evidence {
    /// The HCL report.
    pub hcl: HclReport,
    /// The vTPM quote.
    pub quote: TpmQuote,
    /// The VCEK the JSON carries (DER or PEM), if any.
    pub vcek: Option<Vec<u8>>,
    /// The TD quote (TDX form only).
    pub td_quote: Option<Vec<u8>>,
}

/// Whether `bytes` are Azure vTPM evidence JSON: an object with `hcl_report` and `tpm_quote`
/// (or `report` and `quote`).
pub(crate) fn looks_like_azure(bytes: &[u8]) -> bool {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
    else {
        return false;
    };
    (map.contains_key("hcl_report") && map.contains_key("tpm_quote"))
        || (map.contains_key("report") && map.contains_key("quote"))
}

/// Parses Azure vTPM evidence JSON.
pub(crate) fn parse(bytes: &[u8]) -> Result<Evidence, AzureError> {
    let json: JsonEvidence = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("Azure vTPM evidence JSON: {e}")))?;
    if let Some(version) = json.version
        && !(1..=2).contains(&version)
    {
        return Err(malformed(format!(
            "evidence version {version} is not supported (1 and 2 are)"
        )));
    }
    let hcl = HclReport::parse(&json.hcl_report.base64("hcl_report")?)?;
    let quote = TpmQuote {
        message: json.tpm_quote.message.hex("tpm_quote.message")?,
        signature: json.tpm_quote.signature.hex("tpm_quote.signature")?,
        pcrs: json
            .tpm_quote
            .pcrs
            .iter()
            .map(|p| p.hex("tpm_quote.pcrs"))
            .collect::<Result<_, _>>()?,
    };
    let vcek = match json.vcek {
        None => None,
        Some(text) if text.contains("-----BEGIN") => Some(text.into_bytes()),
        Some(text) => Some(decode_base64(&text).ok_or_else(|| malformed("vcek is not base64"))?),
    };
    let td_quote = json.td_quote.map(|q| q.base64("td_quote")).transpose()?;
    Ok(Evidence { hcl, quote, vcek, td_quote })
}

/// An HCL report: the hardware report area and the variable data.
pub(crate) struct HclReport {
    /// The HCL report's type (2 SNP, 4 TDX).
    pub report_type: u32,
    /// The 1184-byte hardware report area.
    pub hw_report: Vec<u8>,
    /// The variable data (JSON), exactly as hashed.
    pub var_data: Vec<u8>,
}

fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl HclReport {
    /// Parses an HCL report; the bytes after the report's size must be zero padding.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, AzureError> {
        let short = || malformed(format!("HCL report is truncated ({} bytes)", bytes.len()));
        if bytes.get(..4) != Some(HCL_MAGIC.as_slice()) {
            return Err(malformed("HCL report does not start with \"HCLA\""));
        }
        let report_size = le_u32(bytes, 8).ok_or_else(short)? as usize;
        let var_header = HW_REPORT_OFFSET + HW_REPORT_LEN;
        let hw_report = bytes.get(HW_REPORT_OFFSET..var_header).ok_or_else(short)?.to_vec();
        let data_size = le_u32(bytes, var_header).ok_or_else(short)? as usize;
        let report_type = le_u32(bytes, var_header + 8).ok_or_else(short)?;
        let hash_type = le_u32(bytes, var_header + 12).ok_or_else(short)?;
        let var_size = le_u32(bytes, var_header + 16).ok_or_else(short)? as usize;
        if data_size != VAR_HEADER_LEN.saturating_add(var_size) {
            return Err(malformed(format!(
                "HCL report data size {data_size} is not 20 + variable data size {var_size}"
            )));
        }
        if report_size != var_header.saturating_add(data_size) {
            return Err(malformed(format!(
                "HCL report size {report_size} is not 1216 + data size {data_size}"
            )));
        }
        if hash_type != HASH_TYPE_SHA256 {
            return Err(malformed(format!(
                "HCL report hash type {hash_type} is not supported (1, SHA-256, is)"
            )));
        }
        let start = var_header + VAR_HEADER_LEN;
        let var_data = bytes.get(start..start.saturating_add(var_size)).ok_or_else(short)?.to_vec();
        if bytes.get(report_size..).is_some_and(|pad| pad.iter().any(|&b| b != 0)) {
            return Err(malformed("HCL report has non-zero bytes after its report size"));
        }
        Ok(Self { report_type, hw_report, var_data })
    }

    /// Checks the report type.
    pub(crate) fn expect_type(&self, expected: u32) -> Result<(), AzureError> {
        if self.report_type == expected {
            Ok(())
        } else {
            Err(AzureError::ReportType { found: self.report_type, expected })
        }
    }

    /// SHA-256 of the variable data.
    pub(crate) fn var_data_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.var_data).into()
    }

    /// Checks that `report_data` (the hardware report's, 64 bytes) is SHA-256 of the variable
    /// data followed by 32 zero bytes.
    pub(crate) fn check_binding(
        &self,
        report: &'static str,
        report_data: &[u8],
    ) -> Result<(), AzureError> {
        let hash = self.var_data_sha256();
        let bound = report_data.len() == 64
            && report_data.get(..32) == Some(hash.as_slice())
            && report_data.get(32..).is_some_and(|rest| rest.iter().all(|&b| b == 0));
        if bound {
            Ok(())
        } else {
            Err(AzureError::Binding {
                report,
                hash: hex::encode(hash),
                report_data: hex::encode(report_data),
            })
        }
    }

    /// The attestation key: the RSA JWK with key id `HCLAkPub` of the variable data.
    pub(crate) fn attestation_key(&self) -> Result<(String, PublicKey), AzureError> {
        let bad = |why: &str| AzureError::AttestationKey(why.to_owned());
        let json: serde_json::Value = serde_json::from_slice(&self.var_data)
            .map_err(|e| AzureError::AttestationKey(format!("variable data is not JSON: {e}")))?;
        let keys = json.get("keys").and_then(|k| k.as_array()).ok_or_else(|| bad("no \"keys\""))?;
        let jwk = keys
            .iter()
            .find(|k| k.get("kid").and_then(|v| v.as_str()) == Some("HCLAkPub"))
            .ok_or_else(|| bad("no key with kid HCLAkPub"))?;
        if jwk.get("kty").and_then(|v| v.as_str()) != Some("RSA") {
            return Err(bad("HCLAkPub is not an RSA key"));
        }
        let field = |name: &str| {
            jwk.get(name)
                .and_then(|v| v.as_str())
                .and_then(decode_base64)
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    AzureError::AttestationKey(format!("HCLAkPub has no valid \"{name}\""))
                })
        };
        let n = rsa::BoxedUint::from_be_slice_vartime(&field("n")?);
        let e = rsa::BoxedUint::from_be_slice_vartime(&field("e")?);
        let key = rsa::PublicKey::new(n, e)
            .map_err(|e| AzureError::AttestationKey(format!("HCLAkPub: {e}")))?;
        Ok(("HCLAkPub".to_owned(), PublicKey::Rsa(key)))
    }
}

/// A vTPM quote as the JSON carries it.
pub(crate) struct TpmQuote {
    /// The `TPMS_ATTEST` bytes (what is signed).
    pub message: Vec<u8>,
    /// The signature: raw RSA, or a `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    /// The values of the selected PCRs, in selection order.
    pub pcrs: Vec<Vec<u8>>,
}

/// The parsed `TPMS_ATTEST` of a quote.
pub(crate) struct Attest {
    /// `extraData`: the qualifying data (the caller's nonce).
    pub extra_data: Vec<u8>,
    /// `clockInfo.clock`.
    pub clock: u64,
    /// `firmwareVersion`.
    pub firmware_version: u64,
    /// The selected PCR indices of the SHA-256 bank, ascending.
    pub selected: Vec<u32>,
    /// `pcrDigest`.
    pub pcr_digest: Vec<u8>,
}

/// A big-endian reader that fails instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AzureError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| malformed("TPM quote message is truncated"))?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| malformed("TPM quote message is truncated"))?;
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, AzureError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn u16(&mut self) -> Result<u16, AzureError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AzureError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, AzureError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn sized(&mut self) -> Result<&'a [u8], AzureError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

impl Attest {
    /// Parses a `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE` with one SHA-256 PCR selection.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, AzureError> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.u32()?;
        if magic != TPM_GENERATED_VALUE {
            return Err(malformed(format!(
                "TPM quote magic is {magic:#010x}, not TPM_GENERATED_VALUE 0xff544347"
            )));
        }
        let kind = r.u16()?;
        if kind != TPM_ST_ATTEST_QUOTE {
            return Err(malformed(format!(
                "TPM attestation type is {kind:#06x}, not TPM_ST_ATTEST_QUOTE 0x8018"
            )));
        }
        let _qualified_signer = r.sized()?;
        let extra_data = r.sized()?.to_vec();
        let clock = r.u64()?;
        let _reset_count = r.u32()?;
        let _restart_count = r.u32()?;
        let _safe = r.u8()?;
        let firmware_version = r.u64()?;
        let count = r.u32()?;
        if count != 1 {
            return Err(malformed(format!(
                "TPM quote selects {count} PCR banks, only one SHA-256 bank is supported"
            )));
        }
        let hash = r.u16()?;
        if hash != TPM_ALG_SHA256 {
            return Err(malformed(format!(
                "TPM quote PCR bank is algorithm {hash:#06x}, not SHA-256 (0x000b)"
            )));
        }
        let size = r.u8()?;
        let select = r.take(usize::from(size))?;
        let mut selected = Vec::new();
        for (byte_index, byte) in (0u32..).zip(select.iter()) {
            for bit in 0..8u32 {
                if byte & (1 << bit) != 0 {
                    selected.push(byte_index * 8 + bit);
                }
            }
        }
        let pcr_digest = r.sized()?.to_vec();
        if r.pos != bytes.len() {
            return Err(malformed(format!(
                "TPM quote message has {} bytes after its PCR digest",
                bytes.len().saturating_sub(r.pos)
            )));
        }
        Ok(Self { extra_data, clock, firmware_version, selected, pcr_digest })
    }
}

/// The verified TPM quote with what the claims report.
pub(crate) struct Verified {
    /// The parsed quote.
    pub attest: Attest,
    /// The attestation key's id.
    pub ak_kid: String,
}

impl TpmQuote {
    /// The RSA signature bytes: raw, or from a `TPMT_SIGNATURE` (RSASSA with SHA-256).
    fn raw_signature(&self, modulus_len: usize) -> Result<&[u8], AzureError> {
        if self.signature.len() == modulus_len {
            return Ok(&self.signature);
        }
        let mut r = Reader { bytes: &self.signature, pos: 0 };
        let bad = || malformed("TPM quote signature is neither raw RSA nor a TPMT_SIGNATURE");
        let alg = r.u16().map_err(|_| bad())?;
        let hash = r.u16().map_err(|_| bad())?;
        if alg != TPM_ALG_RSASSA || hash != TPM_ALG_SHA256 {
            return Err(malformed(format!(
                "TPM quote signature scheme is {alg:#06x} with hash {hash:#06x}, not RSASSA \
                 (0x0014) with SHA-256 (0x000b)"
            )));
        }
        let sig = r.sized().map_err(|_| bad())?;
        if r.pos != self.signature.len() {
            return Err(bad());
        }
        Ok(sig)
    }

    /// Verifies the quote with the HCL report's attestation key, then the PCR values against
    /// its digest.
    pub(crate) fn verify(&self, hcl: &HclReport) -> Result<Verified, AzureError> {
        let (ak_kid, key) = hcl.attestation_key()?;
        let attest = Attest::parse(&self.message)?;
        let modulus_len = match &key {
            PublicKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                k.size()
            }
            _ => 0,
        };
        let signature = self.raw_signature(modulus_len)?;
        key.verify(SignatureAlgorithm::RsaPkcs1Sha256, &self.message, signature)
            .map_err(|_| AzureError::BadSignature)?;
        let pcr_list = || {
            let parts: Vec<String> = attest.selected.iter().map(u32::to_string).collect();
            parts.join(",")
        };
        if self.pcrs.len() != attest.selected.len() {
            return Err(malformed(format!(
                "{} PCR values given, the quote selects {} (PCRs {})",
                self.pcrs.len(),
                attest.selected.len(),
                pcr_list()
            )));
        }
        let mut hasher = Sha256::new();
        for (index, value) in attest.selected.iter().zip(&self.pcrs) {
            if value.len() != 32 {
                return Err(malformed(format!(
                    "PCR {index} value has {} bytes, a SHA-256 PCR has 32",
                    value.len()
                )));
            }
            hasher.update(value);
        }
        let computed = hasher.finalize();
        if computed.as_slice() != attest.pcr_digest.as_slice() {
            return Err(AzureError::PcrDigest {
                pcrs: pcr_list(),
                digest: hex::encode(&attest.pcr_digest),
                computed: hex::encode(computed),
            });
        }
        Ok(Verified { attest, ak_kid })
    }
}

/// The `azure` vendor object: the HCL report and the verified TPM quote.
pub(crate) fn vendor_json(
    hcl: &HclReport,
    quote: &TpmQuote,
    verified: &Verified,
) -> serde_json::Value {
    let pcrs: serde_json::Map<String, serde_json::Value> = verified
        .attest
        .selected
        .iter()
        .zip(&quote.pcrs)
        .map(|(index, value)| (index.to_string(), hex::encode(value).into()))
        .collect();
    serde_json::json!({
        "hcl_report_type": hcl.report_type,
        "variable_data_sha256": hex::encode(hcl.var_data_sha256()),
        "ak_kid": verified.ak_kid,
        "tpm": {
            "pcrs": pcrs,
            "pcr_digest": hex::encode(&verified.attest.pcr_digest),
            "extra_data": hex::encode(&verified.attest.extra_data),
            "firmware_version": verified.attest.firmware_version,
            "clock": verified.attest.clock,
        },
    })
}

/// Parses untrusted Azure evidence and its parts without any trust decision (for fuzzing).
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    if let Ok(evidence) = parse(bytes) {
        let _ = evidence.hcl.attestation_key();
        let _ = Attest::parse(&evidence.quote.message);
        let _ = evidence.quote.verify(&evidence.hcl);
    }
    let _ = HclReport::parse(bytes);
    let _ = Attest::parse(bytes);
}

/// Verifies Azure SNP vTPM evidence: the SNP report of the HCL report (by the SNP driver, with
/// the VCEK the JSON carries), its binding to the variable data, the TPM quote and its PCRs.
/// The claims are the SNP report's, with `report_data` the quote's `extraData` and the
/// `azure` object under the `snp` vendor fields.
pub(super) fn verify(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, SnpError> {
    let parsed = parse(evidence)?;
    if parsed.td_quote.is_some() {
        return Err(malformed("a TD quote is TDX evidence, not SNP's").into());
    }
    parsed.hcl.expect_type(HCL_TYPE_SNP)?;
    let report = super::Report::parse(&parsed.hcl.hw_report)?;
    let carried = match &parsed.vcek {
        Some(bytes) => crate::x509::split_certificates(bytes)
            .map_err(|e| SnpError::Malformed(format!("azure: vcek: {e}")))?,
        None => Vec::new(),
    };
    let mut claims = super::verify_report(&report, &carried, inputs)?;
    parsed.hcl.check_binding("SNP", &report.report_data)?;
    let verified = parsed.quote.verify(&parsed.hcl)?;
    claims.report_data = Hex(verified.attest.extra_data.clone());
    if let Some(serde_json::Value::Object(map)) = claims.vendor.get_mut("snp") {
        map.insert("azure".to_owned(), vendor_json(&parsed.hcl, &parsed.quote, &verified));
    }
    Ok(claims)
}

/// The AMD KDS collateral Azure SNP evidence needs: that of its SNP report, less the VCEK when
/// the JSON carries one (Azure serves it from its instance metadata service).
pub(super) fn needs(evidence: &[u8]) -> Vec<crate::needs::CollateralKey> {
    let Ok(parsed) = parse(evidence) else { return Vec::new() };
    if parsed.hcl.report_type != HCL_TYPE_SNP {
        return Vec::new();
    }
    let carries_vcek = parsed.vcek.is_some();
    super::needs(&parsed.hcl.hw_report)
        .into_iter()
        .filter(|key| !(carries_vcek && key.kind == "vcek"))
        .collect()
}
