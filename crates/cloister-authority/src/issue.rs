//! The instance certificate authority: a self-signed P-256 CA that issues short-lived enclave
//! certificates whose subject key is the enclave's TLS key and whose claims extension carries the
//! appraisal.

use std::time::Duration;

use cloister_types::cert::ENCLAVE_CLAIMS_OID;
use cloister_types::{EnclaveClaimsExtension, Hex, canonical_json};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Why a certificate could not be issued or the CA could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The enclave's public key is not a DER SubjectPublicKeyInfo of a supported algorithm.
    #[error("the enclave TLS public key is not a supported SubjectPublicKeyInfo: {0}")]
    BadSubjectKey(String),
    /// The CA key or certificate is unusable.
    #[error("the instance CA is unusable: {0}")]
    Ca(String),
    /// The claims could not be encoded.
    #[error("the claims could not be encoded: {0}")]
    Claims(#[from] cloister_types::CanonicalJsonError),
    /// The claims are of a TEE that attests a device's key (PSA, Android), not an enclave.
    #[error("no enclave certificate is issued: {0}")]
    NotAnEnclave(#[from] cloister_types::NotAnEnclave),
}

/// The instance CA.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl CertificateAuthority {
    /// Creates a new CA valid for ten years from `now`.
    pub fn generate(instance_name: &str, now: u64) -> Result<Self, IssueError> {
        let key = KeyPair::generate().map_err(|e| IssueError::Ca(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("Cloister instance CA: {instance_name}"));
        dn.push(DnType::OrganizationName, "Cloister attestation service");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(now.saturating_sub(60));
        params.not_after = at(now + 10 * 365 * 24 * 3600);
        let cert = params.self_signed(&key).map_err(|e| IssueError::Ca(e.to_string()))?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and PKCS#8 key, both PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IssueError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| IssueError::Ca(e.to_string()))?;
        let mut der = cloister_types::pem_certificates(cert_pem)
            .map_err(|e| IssueError::Ca(e.to_string()))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| IssueError::Ca(e.to_string()))?;
        Ok(CertificateAuthority { issuer, cert_pem: cert_pem.to_owned(), cert_der: der.remove(0) })
    }

    /// The CA's PKCS#8 private key, PEM; for the instance's key file only.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate's DER.
    pub fn fingerprint(&self) -> Hex {
        Hex(Sha256::digest(&self.cert_der).to_vec())
    }

    /// Issues an enclave certificate (PEM) for `spki_der`, valid from a minute before `now` for
    /// `ttl`, carrying `claims` in the claims extension.
    pub fn issue_enclave_certificate(
        &self,
        spki_der: &[u8],
        claims: &EnclaveClaimsExtension,
        now: u64,
        ttl: Duration,
    ) -> Result<String, IssueError> {
        claims.claims.check_enclave()?;
        let subject_key = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| IssueError::BadSubjectKey(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let measurement = claims.claims.measurement.to_string();
        dn.push(
            DnType::CommonName,
            format!(
                "Cloister enclave ({}) {}",
                claims.claims.tee,
                &measurement[..measurement.len().min(16)]
            ),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = at(now.saturating_sub(60));
        params.not_after = at(now + ttl.as_secs());
        params.use_authority_key_identifier_extension = true;
        let content = der_octet_string(&canonical_json(claims)?);
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(ENCLAVE_CLAIMS_OID, content));
        let cert = params
            .signed_by(&subject_key, &self.issuer)
            .map_err(|e| IssueError::Ca(e.to_string()))?;
        Ok(cert.pem())
    }
}

fn at(unix: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// DER-encodes an OCTET STRING (tag 0x04, definite length).
fn der_octet_string(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_types as types;

    #[test]
    fn der_lengths_use_the_short_and_long_forms() {
        assert_eq!(der_octet_string(&[7; 3]), vec![4, 3, 7, 7, 7]);
        let long = der_octet_string(&[0; 300]);
        assert_eq!(&long[..4], &[4, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn no_enclave_certificate_is_issued_on_a_device_key_result() {
        let ca = CertificateAuthority::generate("t", 1_700_000_000).unwrap();
        let key = KeyPair::generate().unwrap();
        let claims = |tee| EnclaveClaimsExtension {
            version: types::cert::ENCLAVE_CLAIMS_VERSION,
            ear_status: types::EarStatus::Affirming,
            policy_id: "p".into(),
            claims: types::Claims {
                tee,
                measurement: Hex(vec![1; 32]),
                signer: None,
                product_id: None,
                svn: None,
                debug: false,
                report_data: Hex(vec![0; 64]),
                tcb_status: types::TcbStatus::Unknown,
                advisories: Vec::new(),
                platform_id: None,
                vendor: Default::default(),
            },
            runtime_data: types::RuntimeData {
                nonce: "n".into(),
                hpke_pk: "k".into(),
                tls_spki_sha256: Hex(vec![0; 32]),
                receipt_pk: "r".into(),
                extra: Default::default(),
            },
            ear: "e".into(),
        };
        let ttl = Duration::from_secs(60);
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        for tee in [types::TeeKind::Psa, types::TeeKind::Android] {
            let err = ca.issue_enclave_certificate(&spki, &claims(tee), 1_700_000_001, ttl);
            assert!(matches!(err, Err(IssueError::NotAnEnclave(_))), "{tee}");
        }
        ca.issue_enclave_certificate(&spki, &claims(types::TeeKind::Tdx), 1_700_000_001, ttl)
            .unwrap();
    }

    #[test]
    fn a_ca_survives_a_pem_round_trip() {
        let ca = CertificateAuthority::generate("t", 1_700_000_000).unwrap();
        let again = CertificateAuthority::from_pem(ca.certificate_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
    }
}
