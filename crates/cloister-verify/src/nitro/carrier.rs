//! Attestation documents carried in a TLS certificate (Evervault's attested-TLS convention).
//!
//! The certificate's subjectAltName holds a dNSName whose leading labels are the document in
//! lowercase or uppercase hex, followed by the service's own domain:
//! `8444a101…e2.a-test-of-attest.app_452e33b20b42.cages.evervault.com`. A long document may be
//! split over several leading labels (DNS labels are limited to 63 characters); they are
//! concatenated in order up to the first label that is not hex. Exactly one dNSName may carry a
//! document. The certificate itself is not trusted (it is self-issued by the service); the
//! driver verifies the document inside and requires that it attests the certificate's key.

use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::NitroError;
use crate::x509::Cert;

/// The subjectAltName extension.
const SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// The shortest hex run taken for a document: a COSE_Sign1 with a real payload is far longer,
/// so ordinary hex-looking labels (`cafe`, `0a1b`) are never mistaken for one.
const MIN_DOCUMENT_HEX: usize = 128;

/// A certificate with an attestation document in its subjectAltName.
#[derive(Clone, Debug)]
pub struct Carrier {
    /// The certificate.
    pub cert: Cert,
    /// The document's bytes (decoded from hex).
    pub document: Vec<u8>,
}

/// Finds the attestation document in a DER certificate's subjectAltName dNSName entries.
pub fn extract(der: &[u8]) -> Result<Carrier, NitroError> {
    let cert = Cert::from_der(der).map_err(|e| NitroError::Carrier(e.to_string()))?;
    let san = cert
        .extension(SUBJECT_ALT_NAME)
        .ok_or_else(|| NitroError::Carrier("it has no subjectAltName extension".to_owned()))?;
    let san = <SubjectAltName as der::Decode>::from_der(san)
        .map_err(|e| NitroError::Carrier(format!("its subjectAltName is malformed: {e}")))?;
    let mut found: Option<Vec<u8>> = None;
    for name in &san.0 {
        let GeneralName::DnsName(dns) = name else { continue };
        let Some(hex_text) = leading_hex(dns.as_str()) else { continue };
        if found.is_some() {
            return Err(NitroError::Carrier(
                "more than one subjectAltName dNSName carries a document".to_owned(),
            ));
        }
        let bytes = hex::decode(&hex_text)
            .map_err(|e| NitroError::Carrier(format!("the document's hex is malformed: {e}")))?;
        found = Some(bytes);
    }
    let document = found.ok_or_else(|| {
        NitroError::Carrier("no subjectAltName dNSName starts with a hex document".to_owned())
    })?;
    Ok(Carrier { cert, document })
}

/// The concatenated leading hex labels of a DNS name, if they are long enough to be a document.
fn leading_hex(dns: &str) -> Option<String> {
    let mut hex_text = String::new();
    for label in dns.split('.') {
        if label.is_empty() || !label.bytes().all(|b| b.is_ascii_hexdigit()) {
            break;
        }
        hex_text.push_str(label);
    }
    (hex_text.len() >= MIN_DOCUMENT_HEX).then_some(hex_text)
}

/// Whether `bytes` look like a DER certificate rather than a CBOR document: a SEQUENCE with a
/// multi-byte length (CBOR COSE_Sign1 starts with 0x84 or the tag 0xd2).
pub fn looks_like_certificate(bytes: &[u8]) -> bool {
    matches!(bytes, [0x30, 0x81..=0x84, ..])
}
