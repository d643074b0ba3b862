//! Test certificate authorities (rcgen): roots, intermediates and leaves with fresh ECDSA keys,
//! and the encodings the vendors' formats need (PEM, DER TLVs, fixed-size `r || s`).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    SignatureAlgorithm, SigningKey as _,
};

use crate::FakeHwError;

fn pki(e: impl std::fmt::Display) -> FakeHwError {
    FakeHwError::Pki(e.to_string())
}

/// What a test certificate may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A CA: cA=TRUE, keyCertSign and cRLSign.
    Ca,
    /// An end entity: cA=FALSE, digitalSignature.
    Leaf,
}

/// A key and the certificate that names it.
pub struct TestCa {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
}

impl TestCa {
    /// A self-signed root CA named `name`, valid from `not_before` to `not_after` (unix seconds),
    /// with a fresh key of `alg` (`rcgen::PKCS_ECDSA_P256_SHA256` or `…_P384_SHA384`).
    pub fn root(
        name: &str,
        alg: &'static SignatureAlgorithm,
        validity: (i64, i64),
    ) -> Result<Self, FakeHwError> {
        let key = KeyPair::generate_for(alg).map_err(pki)?;
        let params = params(name, Role::Ca, validity, Vec::new())?;
        let der = params.self_signed(&key).map_err(pki)?.der().to_vec();
        Ok(Self { key, params, der })
    }

    /// A certificate named `name` for a fresh key of `alg`, issued by `self`, with these
    /// extra extensions.
    pub fn issue(
        &self,
        name: &str,
        alg: &'static SignatureAlgorithm,
        role: Role,
        validity: (i64, i64),
        extensions: Vec<CustomExtension>,
    ) -> Result<Self, FakeHwError> {
        let key = KeyPair::generate_for(alg).map_err(pki)?;
        let params = params(name, role, validity, extensions)?;
        let der = params.signed_by(&key, &self.issuer()).map_err(pki)?.der().to_vec();
        Ok(Self { key, params, der })
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    /// The public key as the raw point rcgen gives (`04 || x || y` for ECDSA).
    pub fn public_key_raw(&self) -> &[u8] {
        self.key.public_key_raw()
    }

    /// ECDSA over `message` with this certificate's key, DER-encoded (hash by the key's
    /// algorithm: SHA-256 for P-256, SHA-384 for P-384).
    pub fn sign_der(&self, message: &[u8]) -> Result<Vec<u8>, FakeHwError> {
        self.key.sign(message).map_err(pki)
    }

    /// ECDSA P-256/SHA-256 over `message` as fixed-size `r || s` (what DCAP quotes and Intel's
    /// collateral carry). Fails for a key of another curve.
    pub fn sign_p256_raw(&self, message: &[u8]) -> Result<[u8; 64], FakeHwError> {
        let der = self.sign_der(message)?;
        let signature = p256::ecdsa::Signature::from_der(&der).map_err(pki)?;
        Ok(signature.to_bytes().into())
    }

    /// ECDSA P-384/SHA-384 over `message` as fixed-size big-endian `r || s` (96 bytes). Fails for
    /// a key of another curve.
    pub fn sign_p384_raw(&self, message: &[u8]) -> Result<[u8; 96], FakeHwError> {
        let der = self.sign_der(message)?;
        let signature = p384::ecdsa::Signature::from_der(&der).map_err(pki)?;
        Ok(signature.to_bytes().into())
    }

    /// A CRL issued by this CA, revoking nothing, valid from `this_update` to `next_update`.
    pub fn empty_crl(
        &self,
        this_update: i64,
        next_update: i64,
        number: u64,
    ) -> Result<Vec<u8>, FakeHwError> {
        let crl = CertificateRevocationListParams {
            this_update: at(this_update)?,
            next_update: at(next_update)?,
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(crl.signed_by(&self.issuer()).map_err(pki)?.der().to_vec())
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

fn params(
    name: &str,
    role: Role,
    validity: (i64, i64),
    extensions: Vec<CustomExtension>,
) -> Result<CertificateParams, FakeHwError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Cloister test");
    params.distinguished_name = dn;
    params.not_before = at(validity.0)?;
    params.not_after = at(validity.1)?;
    (params.is_ca, params.key_usages) = match role {
        Role::Ca => (
            IsCa::Ca(BasicConstraints::Unconstrained),
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
        ),
        Role::Leaf => (IsCa::ExplicitNoCa, vec![KeyUsagePurpose::DigitalSignature]),
    };
    params.custom_extensions = extensions;
    Ok(params)
}

/// `unix` seconds as a time.
pub fn at(unix: i64) -> Result<time::OffsetDateTime, FakeHwError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(pki)
}

/// `unix` seconds in RFC 3339 (what Intel's collateral dates use).
pub fn rfc3339(unix: i64) -> Result<String, FakeHwError> {
    at(unix)?.format(&time::format_description::well_known::Rfc3339).map_err(pki)
}

/// A PEM block.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// One DER TLV (lengths up to 65535).
pub fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.extend_from_slice(&[len as u8]);
    } else if len <= 0xff {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.push(0x82);
        out.extend_from_slice(&(len.min(0xffff) as u16).to_be_bytes());
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER of a small non-negative value.
pub fn der_uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let mut content: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if content.first().is_none_or(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    der(0x02, &content)
}
