//! Reading X.509 certificates out of PEM text (RFC 7468), the one textual form certificates take
//! on Cloister's wire and in its files.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Why PEM text holds no usable certificate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemError {
    /// No `BEGIN CERTIFICATE` block at all.
    #[error("no CERTIFICATE block found in the PEM text")]
    NoCertificate,
    /// A block has no `END CERTIFICATE` line.
    #[error("a CERTIFICATE block in the PEM text is not terminated")]
    Unterminated,
    /// A block's body is not base64.
    #[error("a CERTIFICATE block in the PEM text is not valid base64: {0}")]
    Base64(String),
}

/// Every CERTIFICATE block of `pem`, as DER, in order. Text around the blocks is ignored.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let end = after.find(END).ok_or(PemError::Unterminated)?;
        let body: String = after[..end].chars().filter(|c| !c.is_whitespace()).collect();
        out.push(STANDARD.decode(body).map_err(|e| PemError::Base64(e.to_string()))?);
        rest = &after[end + END.len()..];
    }
    if out.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_block_in_order_and_rejects_broken_ones() {
        let pem = format!("junk\n{BEGIN}\nAQI=\n{END}\n{BEGIN}\nAw==\n{END}\n");
        assert_eq!(pem_certificates(&pem).unwrap(), vec![vec![1, 2], vec![3]]);
        assert_eq!(pem_certificates("nothing"), Err(PemError::NoCertificate));
        assert_eq!(pem_certificates(&format!("{BEGIN}\nAQI=")), Err(PemError::Unterminated));
        assert!(matches!(
            pem_certificates(&format!("{BEGIN}\n!!\n{END}")),
            Err(PemError::Base64(_))
        ));
    }
}
