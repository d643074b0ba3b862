//! Test-key certificate authorities (rcgen, ECDSA P-384): chains whose every property a test
//! chooses, for the negative cases real vendor chains cannot give.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
};

/// What a test certificate may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// cA=TRUE, keyCertSign and cRLSign, no path length constraint.
    Ca,
    /// cA=TRUE with this pathLenConstraint.
    CaPathLen(u8),
    /// cA=TRUE but keyUsage only digitalSignature.
    CaWithoutKeyCertSign,
    /// An end-entity certificate: cA=FALSE, digitalSignature.
    Leaf,
    /// An end-entity certificate without basicConstraints: digitalSignature.
    LeafNoBasicConstraints,
    /// A delegated OCSP responder: cA=FALSE, digitalSignature, extendedKeyUsage OCSPSigning.
    OcspResponder,
}

/// A key and the certificate that names it.
pub(crate) struct TestCa {
    pub(crate) name: String,
    pub(crate) key: KeyPair,
    pub(crate) params: CertificateParams,
    pub(crate) der: Vec<u8>,
}

impl TestCa {
    /// A self-signed root (cA=TRUE) valid from `not_before` to `not_after` (unix seconds).
    pub(crate) fn root(name: &str, not_before: i64, not_after: i64) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let params = params(name, Role::Ca, not_before, not_after);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Self { name: name.to_owned(), key, params, der }
    }

    /// A certificate for a fresh key, issued by `self`.
    pub(crate) fn issue(&self, name: &str, role: Role, not_before: i64, not_after: i64) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let params = params(name, role, not_before, not_after);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
        Self { name: name.to_owned(), key, params, der }
    }

    /// ECDSA P-384/SHA-384 over `message`, as fixed-size `r || s` (96 bytes).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        use rcgen::SigningKey as _;
        let der = self.key.sign(message).unwrap();
        p384::ecdsa::Signature::from_der(&der).unwrap().to_bytes().to_vec()
    }

    /// ECDSA P-384/SHA-384 over `message`, DER-encoded (as X.509 and OCSP carry it).
    pub(crate) fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        use rcgen::SigningKey as _;
        self.key.sign(message).unwrap()
    }
}

fn params(name: &str, role: Role, not_before: i64, not_after: i64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationName, "Cloister test");
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    let sign_certs = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.is_ca, params.key_usages) = match role {
        Role::Ca => (IsCa::Ca(BasicConstraints::Unconstrained), sign_certs),
        Role::CaPathLen(n) => (IsCa::Ca(BasicConstraints::Constrained(n)), sign_certs),
        Role::CaWithoutKeyCertSign => {
            (IsCa::Ca(BasicConstraints::Unconstrained), vec![KeyUsagePurpose::DigitalSignature])
        }
        Role::Leaf | Role::OcspResponder => {
            (IsCa::ExplicitNoCa, vec![KeyUsagePurpose::DigitalSignature])
        }
        Role::LeafNoBasicConstraints => (IsCa::NoCa, vec![KeyUsagePurpose::DigitalSignature]),
    };
    if role == Role::OcspResponder {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    }
    params
}
