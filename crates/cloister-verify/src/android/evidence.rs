//! Android evidence encodings: one certificate chain, leaf first, as producers send it.
//!
//! Accepted, recognised by content:
//!
//! - **JSON array** of strings (what Android apps send: `KeyStore.getCertificateChain()`, each
//!   `Certificate.getEncoded()` in base64): each string is one DER certificate in base64 or
//!   base64url, padded or not (whitespace ignored), or one PEM `CERTIFICATE` block.
//! - **PEM**: one or more `-----BEGIN CERTIFICATE-----` blocks, explanatory text around them
//!   allowed (other block types are ignored).
//! - **Concatenated DER**: certificates back to back, each a complete DER `SEQUENCE`.
//!
//! Anything else, an empty chain or more than [`MAX_CHAIN_LEN`] certificates is refused.

use base64::Engine as _;
use der::{Decode as _, Reader as _, Tagged as _};

/// The longest chain accepted (real chains have 3 to 5 certificates).
pub const MAX_CHAIN_LEN: usize = 10;

/// How the chain was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainEncoding {
    /// A JSON array of base64/base64url DER (or PEM) strings.
    JsonArray,
    /// PEM blocks.
    Pem,
    /// Concatenated DER certificates.
    Der,
}

impl ChainEncoding {
    /// The claim's value: `json`, `pem` or `der`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainEncoding::JsonArray => "json",
            ChainEncoding::Pem => "pem",
            ChainEncoding::Der => "der",
        }
    }
}

/// Splits evidence into DER certificates, leaf first; the error says why it is no chain.
pub fn split_chain(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, ChainEncoding), String> {
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    let (certs, encoding) = match first {
        Some(b'[') => (json_array(bytes)?, ChainEncoding::JsonArray),
        Some(0x30) => (concatenated_der(bytes)?, ChainEncoding::Der),
        // PEM, with or without explanatory text before the first block (RFC 7468 §5.2).
        Some(_) if bytes.windows(11).any(|w| w == b"-----BEGIN ") => {
            (pem(bytes)?, ChainEncoding::Pem)
        }
        _ => {
            return Err("not a certificate chain: expected a JSON array of base64 certificates, \
                        PEM or concatenated DER"
                .to_owned());
        }
    };
    if certs.is_empty() {
        return Err("the certificate chain is empty".to_owned());
    }
    if certs.len() > MAX_CHAIN_LEN {
        return Err(format!(
            "the chain has {} certificates, more than the limit of {MAX_CHAIN_LEN}",
            certs.len()
        ));
    }
    Ok((certs, encoding))
}

fn pem(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err("PEM without a BEGIN line".to_owned());
    }
    crate::x509::split_certificates(bytes).map_err(|e| e.to_string())
}

fn json_array(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let items: Vec<String> = serde_json::from_slice(bytes)
        .map_err(|e| format!("JSON evidence is not an array of strings: {e}"))?;
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if item.contains("-----BEGIN ") {
            let blocks = pem(item.as_bytes()).map_err(|e| format!("certificate {index}: {e}"))?;
            let [one] = <[Vec<u8>; 1]>::try_from(blocks)
                .map_err(|_| format!("certificate {index}: more than one PEM block"))?;
            out.push(one);
            continue;
        }
        let compact: Vec<u8> =
            item.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=').collect();
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&compact)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&compact))
            .map_err(|_| format!("certificate {index} is not base64 or base64url"))?;
        out.push(decoded);
    }
    Ok(out)
}

fn concatenated_der(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut reader = der::SliceReader::new(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        let start = usize::try_from(reader.position()).map_err(|e| e.to_string())?;
        let any = der::asn1::AnyRef::decode(&mut reader)
            .map_err(|e| format!("certificate {} is not DER: {e}", out.len()))?;
        if any.tag() != der::Tag::Sequence {
            return Err(format!("certificate {} is not a DER SEQUENCE", out.len()));
        }
        let end = usize::try_from(reader.position()).map_err(|e| e.to_string())?;
        let der = bytes.get(start..end).ok_or("DER value out of range")?;
        out.push(der.to_vec());
        if out.len() > MAX_CHAIN_LEN {
            break;
        }
    }
    Ok(out)
}
