//! What a driver gets besides the evidence: collateral documents, certificates and the time.
//!
//! Collateral is data (DESIGN §2.2): the caller passes it in, from the evidence itself, from a
//! cache, or from files a person names on the command line. Drivers recognise each document by
//! its content (a DCAP collateral bundle, an Intel PCS `tcbInfo` response, a CRL, a RIM, an OCSP
//! response), so the caller never has to say which is which.

use base64::Engine as _;

use crate::anchors::TrustAnchors;

/// Collateral and certificates for one verification, recognised by content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collateral {
    /// Documents: collateral bundles (JSON), PCS/PCCS responses, CRLs (DER or PEM), RIMs, OCSP
    /// responses (DER, [`is_ocsp_response`]).
    pub documents: Vec<Vec<u8>>,
    /// Certificates: X.509 in DER (PEM bundles already split), or a vendor's binary format
    /// (Hygon HSK/CEK).
    pub certificates: Vec<Vec<u8>>,
}

impl Collateral {
    /// No collateral at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a document.
    #[must_use]
    pub fn with_document(mut self, bytes: Vec<u8>) -> Self {
        self.documents.push(bytes);
        self
    }

    /// Adds certificate input: PEM blocks are split into one DER certificate each; anything
    /// else is kept as one certificate.
    #[must_use]
    pub fn with_certificates(mut self, bytes: &[u8]) -> Self {
        match crate::x509::split_certificates(bytes) {
            Ok(blocks) => self.certificates.extend(blocks),
            Err(_) => self.certificates.push(bytes.to_vec()),
        }
        self
    }

    /// Reads the `collateral` object of unified evidence:
    /// `{"documents": [base64url…], "certificates": [base64url…]}`, both optional. Any other
    /// field is refused rather than ignored.
    pub fn from_unified(
        map: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, crate::VerifyError> {
        let mut out = Self::new();
        for (key, value) in map {
            let certificates = match key.as_str() {
                "documents" => false,
                "certificates" => true,
                other => {
                    return Err(crate::VerifyError::CollateralShape(format!(
                        "unknown field {other:?}"
                    )));
                }
            };
            let items = value.as_array().ok_or_else(|| {
                crate::VerifyError::CollateralShape(format!("{key:?} is not an array"))
            })?;
            for (index, item) in items.iter().enumerate() {
                let bytes = item
                    .as_str()
                    .and_then(|text| cloister_types::Base64Url::parse(text).ok())
                    .ok_or_else(|| {
                        crate::VerifyError::CollateralShape(format!(
                            "{key}[{index}] is not a base64url string"
                        ))
                    })?;
                if certificates {
                    // PEM bundles are split into one DER certificate each, as on the CLI.
                    out = out.with_certificates(&bytes.0);
                } else {
                    out.documents.push(bytes.0);
                }
            }
        }
        Ok(out)
    }

    /// Appends everything in `other`.
    pub fn extend(&mut self, other: &Collateral) {
        self.documents.extend(other.documents.iter().cloned());
        self.certificates.extend(other.certificates.iter().cloned());
    }
}

/// Whether a collateral document is an OCSP response (RFC 6960 `OCSPResponse`, DER), by content.
/// A driver that takes them checks them against its chains ([`crate::ocsp`]); one that does not
/// refuses them like any other document it does not know.
pub fn is_ocsp_response(bytes: &[u8]) -> bool {
    crate::ocsp::looks_like_ocsp_response(bytes)
}

/// Everything a driver may read besides the evidence bytes.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// Collateral and certificates.
    pub collateral: &'a Collateral,
    /// The instance's trust anchors (built-in vendor roots are the drivers' own).
    pub anchors: &'a TrustAnchors,
    /// The verification time, unix seconds.
    pub now_unix: i64,
}

/// How input bytes were encoded, as [`decode_input`] detected it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEncoding {
    /// Used as is.
    Binary,
    /// Hexadecimal text (whitespace ignored).
    Hex,
    /// Base64 or base64url text, padded or not (whitespace ignored).
    Base64,
}

/// Decodes evidence given as raw binary, hex text or base64 text, detected from the content.
///
/// PEM text is returned unchanged. Otherwise text that is entirely hex digits (and whitespace)
/// with an even count is hex; text that is entirely base64 or base64url characters is base64;
/// anything else (binary, JSON) is returned unchanged.
pub fn decode_input(bytes: &[u8]) -> (Vec<u8>, InputEncoding) {
    // PEM stays as it is: its dashes would otherwise pass for base64url.
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return (bytes.to_vec(), InputEncoding::Binary);
    }
    let compact: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return (bytes.to_vec(), InputEncoding::Binary);
    }
    let hex_text = compact.strip_prefix(b"0x").unwrap_or(&compact);
    if hex_text.len().is_multiple_of(2)
        && hex_text.iter().all(u8::is_ascii_hexdigit)
        && let Ok(decoded) = hex::decode(hex_text)
    {
        return (decoded, InputEncoding::Hex);
    }
    let is_b64 =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=');
    if compact.len() >= 4 && compact.iter().all(is_b64) {
        let unpadded: Vec<u8> = compact.iter().copied().filter(|&b| b != b'=').collect();
        let engines = [
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(decoded) = engine.decode(&unpadded) {
                return (decoded, InputEncoding::Base64);
            }
        }
    }
    (bytes.to_vec(), InputEncoding::Binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_hex_base64_and_binary() {
        assert_eq!(decode_input(b"00ff\n10"), (vec![0, 0xff, 0x10], InputEncoding::Hex));
        assert_eq!(decode_input(b"AAD/EA=="), (vec![0, 0, 0xff, 0x10], InputEncoding::Base64));
        assert_eq!(decode_input(b"AAD_EA"), (vec![0, 0, 0xff, 0x10], InputEncoding::Base64));
        let binary = vec![0x00, 0x01, 0xfe, 0x80];
        assert_eq!(decode_input(&binary), (binary.clone(), InputEncoding::Binary));
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec();
        assert_eq!(decode_input(&pem), (pem.clone(), InputEncoding::Binary));
        let json = br#"{"tcbInfo":{}}"#.to_vec();
        assert_eq!(decode_input(&json), (json.clone(), InputEncoding::Binary));
    }
}
