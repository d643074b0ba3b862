//! X.509 certificate chains of vendor evidence: tolerant parsing, signatures, validity, pinned roots.
//!
//! Vendor chains (Intel PCK, AMD VCEK/VLEK, AWS Nitro, NVIDIA device certificates) are checked
//! explicitly here rather than with a TLS path builder: the issuer of each certificate is known,
//! the roots are pinned by SHA-256 fingerprint, and the verification time is a parameter.
//! Certificates are parsed with x509-cert's `Raw` profile because some vendor certificates (AMD
//! VCEKs) carry serial numbers that strict RFC 5280 parsing refuses; signatures are always
//! checked over the exact to-be-signed bytes as received, never over a re-encoding.

use std::fmt;

use der::{Decode as _, Encode as _, Reader as _};
use sha2::{Digest as _, Sha256, Sha384};
use x509_cert::certificate::{CertificateInner, Raw};

pub use crate::ecdsa::{Curve, EcPublicKey};
use crate::ecdsa::{Encoding, Hash};

/// A certificate as received, with its parsed form.
#[derive(Clone)]
pub struct Cert {
    der: Vec<u8>,
    parsed: CertificateInner<Raw>,
}

/// A public key found in a certificate or evidence.
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// ECDSA over NIST P-256 (the key's curve is [`Curve::P256`]).
    P256(EcPublicKey),
    /// ECDSA over NIST P-384 (the key's curve is [`Curve::P384`]).
    P384(EcPublicKey),
    /// ECDSA over NIST P-521 (the key's curve is [`Curve::P521`]). COSE ES512 keys (PSA IAKs,
    /// CCA CPAKs, virtCCA RAKs and AIKs); X.509 signatures by such a key are not supported.
    P521(EcPublicKey),
    /// RSA (PKCS#1 v1.5 or PSS signatures).
    Rsa(rsa::PublicKey),
}

/// A signature algorithm, as named by an X.509 `AlgorithmIdentifier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// ECDSA with SHA-256; the signature is DER-encoded.
    EcdsaSha256,
    /// ECDSA with SHA-384; the signature is DER-encoded.
    EcdsaSha384,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PSS with SHA-384 (AMD's ARK, ASK and ASVK).
    RsaPssSha384,
    /// RSASSA-PSS with SHA-256.
    RsaPssSha256,
}

/// A certificate or chain check failed. Messages name the certificate by its subject CN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a DER X.509 certificate.
    #[error("certificate is not valid DER X.509: {0}")]
    Parse(String),
    /// A PEM block could not be decoded.
    #[error("PEM certificate block is malformed: {0}")]
    Pem(String),
    /// The certificate is used before its validity period.
    #[error("{} is not valid before {not_before}", named(subject))]
    NotYetValid {
        /// The certificate's subject CN.
        subject: String,
        /// Start of validity, RFC 3339.
        not_before: String,
    },
    /// The certificate has expired.
    #[error("{} expired at {not_after}", named(subject))]
    Expired {
        /// The certificate's subject CN.
        subject: String,
        /// End of validity, RFC 3339.
        not_after: String,
    },
    /// The certificate's issuer name is not its supposed issuer's subject.
    #[error("{} names issuer {issuer}, not {expected}", named(subject))]
    IssuerMismatch {
        /// The certificate's subject CN.
        subject: String,
        /// The issuer it names.
        issuer: String,
        /// The subject of the certificate offered as its issuer.
        expected: String,
    },
    /// The signature does not verify with the issuer's key.
    #[error("{} signature does not verify with the key of {issuer}", named(subject))]
    BadSignature {
        /// The certificate's subject CN.
        subject: String,
        /// The issuer's subject CN.
        issuer: String,
    },
    /// The signature or key algorithm is not one vendor chains use.
    #[error("{} uses an unsupported algorithm: {what}", named(subject))]
    UnsupportedAlgorithm {
        /// The certificate's subject CN.
        subject: String,
        /// What was not supported.
        what: String,
    },
    /// The chain does not end in a root this verifier trusts.
    #[error(
        "certificate chain ends at {subject} (SHA-256 {fingerprint}), which is not a trusted root"
    )]
    UntrustedRoot {
        /// The top certificate's subject CN.
        subject: String,
        /// Its SHA-256 fingerprint, lowercase hex.
        fingerprint: String,
    },
    /// The chain is empty.
    #[error("certificate chain is empty")]
    EmptyChain,
    /// A certificate that signs another is not a CA (no basicConstraints, or cA=FALSE).
    #[error(
        "{} signs {issued} but is not a CA certificate (basicConstraints cA is not TRUE)",
        named(subject)
    )]
    NotACa {
        /// The signing certificate's subject CN.
        subject: String,
        /// The subject CN of the certificate it signed.
        issued: String,
    },
    /// A CA certificate's keyUsage does not allow signing certificates.
    #[error("{} signs {issued} but its keyUsage does not include keyCertSign", named(subject))]
    NoKeyCertSign {
        /// The signing certificate's subject CN.
        subject: String,
        /// The subject CN of the certificate it signed.
        issued: String,
    },
    /// More intermediate certificates follow a CA than its pathLenConstraint allows.
    #[error(
        "{} allows at most {max} intermediate certificate(s) below it (pathLenConstraint), but \
         the chain has {found}",
        named(subject)
    )]
    PathLenExceeded {
        /// The CA certificate's subject CN.
        subject: String,
        /// Its pathLenConstraint.
        max: u8,
        /// How many non-self-issued intermediates are below it.
        found: usize,
    },
    /// A certificate's keyUsage does not allow signing data.
    #[error("{} may not sign data: its keyUsage does not include digitalSignature", named(subject))]
    NoDigitalSignature {
        /// The certificate's subject CN.
        subject: String,
    },
    /// A certificate extension the chain check reads is malformed or repeated.
    #[error("{} has a malformed {extension} extension: {reason}", named(subject))]
    MalformedExtension {
        /// The certificate's subject CN.
        subject: String,
        /// The extension's name.
        extension: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// `<CN> certificate`, without doubling the word when the CN already ends with it.
fn named(subject: &str) -> String {
    if subject.to_ascii_lowercase().ends_with("certificate") {
        subject.to_owned()
    } else {
        format!("{subject} certificate")
    }
}

impl Cert {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let parsed =
            CertificateInner::<Raw>::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
        // Refuse trailing bytes: the signed bytes must be exactly what was parsed.
        tbs_range(der)?;
        Ok(Self { der: der.to_vec(), parsed })
    }

    /// Parses every certificate in `bytes`: one DER certificate, or one or more PEM blocks.
    pub fn parse_many(bytes: &[u8]) -> Result<Vec<Self>, CertError> {
        split_certificates(bytes)?.iter().map(|der| Self::from_der(der)).collect()
    }

    /// [`Cert::parse_many`] for a chain that repeats from one piece of evidence to the next (the
    /// PCK chain in every quote of a platform): parsing is a pure function of the bytes, so a
    /// parsed chain is remembered under SHA-256 of the exact input and shared. Nothing about
    /// the chain is checked here; its signatures, names and validity are checked by the caller
    /// as for any other chain.
    pub(crate) fn parse_many_shared(bytes: &[u8]) -> Result<std::sync::Arc<[Self]>, CertError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(chain) = parsed_chains().get(&digest) {
            return Ok(chain.clone());
        }
        let chain: std::sync::Arc<[Self]> = Self::parse_many(bytes)?.into();
        let mut chains = parsed_chains();
        if chains.len() >= PARSED_CHAIN_LIMIT {
            chains.clear();
        }
        chains.insert(digest, chain.clone());
        Ok(chain)
    }

    /// Parses each DER certificate of a list that repeats from one piece of evidence to the
    /// next (a Nitro document's `cabundle`), sharing the result like
    /// [`Cert::parse_many_shared`]: remembered under SHA-256 of every certificate's exact bytes.
    pub(crate) fn parse_ders_shared(ders: &[Vec<u8>]) -> Result<std::sync::Arc<[Self]>, CertError> {
        let mut hasher = Sha256::new();
        hasher.update(b"cloister-der-list-v1");
        for der in ders {
            hasher.update((der.len() as u64).to_be_bytes());
            hasher.update(der);
        }
        let digest: [u8; 32] = hasher.finalize().into();
        if let Some(chain) = parsed_chains().get(&digest) {
            return Ok(chain.clone());
        }
        let chain: std::sync::Arc<[Self]> =
            ders.iter().map(|der| Self::from_der(der)).collect::<Result<Vec<_>, _>>()?.into();
        let mut chains = parsed_chains();
        if chains.len() >= PARSED_CHAIN_LIMIT {
            chains.clear();
        }
        chains.insert(digest, chain.clone());
        Ok(chain)
    }

    /// The DER bytes as received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The parsed certificate.
    pub fn parsed(&self) -> &CertificateInner<Raw> {
        &self.parsed
    }

    /// The subject's common name (or the whole subject when it has none), for messages.
    pub fn subject_cn(&self) -> String {
        common_name(self.parsed.tbs_certificate().subject())
    }

    /// The issuer's common name (or the whole issuer name when it has none).
    pub fn issuer_cn(&self) -> String {
        common_name(self.parsed.tbs_certificate().issuer())
    }

    /// SHA-256 over the DER certificate.
    pub fn sha256_fingerprint(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// SHA-256 over the DER SubjectPublicKeyInfo: identifies the key whatever certificate
    /// carries it (a root re-issued with the same key has the same value).
    pub fn spki_sha256(&self) -> Result<[u8; 32], CertError> {
        let spki = self.parsed.tbs_certificate().subject_public_key_info();
        let der = spki.to_der().map_err(|e| CertError::Parse(e.to_string()))?;
        Ok(Sha256::digest(der).into())
    }

    /// The serial number's content bytes as encoded (big-endian two's complement).
    pub fn serial_bytes(&self) -> &[u8] {
        self.parsed.tbs_certificate().serial_number().as_bytes()
    }

    /// The OIDs of the extensions marked critical, in order.
    pub fn critical_extensions(&self) -> Vec<der::oid::ObjectIdentifier> {
        self.parsed
            .tbs_certificate()
            .extensions()
            .map(|exts| exts.iter().filter(|e| e.critical).map(|e| e.extn_id).collect())
            .unwrap_or_default()
    }

    /// How many times the extension `oid` appears.
    pub fn extension_count(&self, oid: &der::oid::ObjectIdentifier) -> usize {
        self.parsed
            .tbs_certificate()
            .extensions()
            .map_or(0, |exts| exts.iter().filter(|e| &e.extn_id == oid).count())
    }

    /// Start of validity, unix seconds.
    pub fn not_before(&self) -> i64 {
        unix(self.parsed.tbs_certificate().validity().not_before.to_unix_duration())
    }

    /// End of validity, unix seconds.
    pub fn not_after(&self) -> i64 {
        unix(self.parsed.tbs_certificate().validity().not_after.to_unix_duration())
    }

    /// Fails unless `now_unix` is inside the validity period.
    pub fn check_validity(&self, now_unix: i64) -> Result<(), CertError> {
        if now_unix < self.not_before() {
            return Err(CertError::NotYetValid {
                subject: self.subject_cn(),
                not_before: rfc3339(self.not_before()),
            });
        }
        if now_unix > self.not_after() {
            return Err(CertError::Expired {
                subject: self.subject_cn(),
                not_after: rfc3339(self.not_after()),
            });
        }
        Ok(())
    }

    /// The subject public key.
    pub fn public_key(&self) -> Result<PublicKey, CertError> {
        let spki = self.parsed.tbs_certificate().subject_public_key_info();
        let der = spki.to_der().map_err(|e| CertError::Parse(e.to_string()))?;
        PublicKey::from_spki_der(&der)
            .map_err(|what| CertError::UnsupportedAlgorithm { subject: self.subject_cn(), what })
    }

    /// The raw value (the OCTET STRING's content) of the extension `oid`, if present.
    pub fn extension(&self, oid: &str) -> Option<&[u8]> {
        let oid = der::oid::ObjectIdentifier::new(oid).ok()?;
        self.parsed
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|ext| ext.extn_id == oid)
            .map(|ext| ext.extn_value.as_bytes())
    }

    /// The decoded extension of type `T` (by its OID); `None` when absent. A repeated or
    /// undecodable extension is an error, never skipped.
    fn decoded_extension<T>(&self, extension: &'static str) -> Result<Option<T>, CertError>
    where
        T: for<'a> der::Decode<'a> + der::oid::AssociatedOid,
    {
        let malformed = |reason: String| CertError::MalformedExtension {
            subject: self.subject_cn(),
            extension,
            reason,
        };
        let Some(extensions) = self.parsed.tbs_certificate().extensions() else {
            return Ok(None);
        };
        let mut found = extensions.iter().filter(|ext| ext.extn_id == T::OID);
        let Some(ext) = found.next() else { return Ok(None) };
        if found.next().is_some() {
            return Err(malformed("it appears more than once".into()));
        }
        T::from_der(ext.extn_value.as_bytes()).map(Some).map_err(|e| malformed(e.to_string()))
    }

    /// Fails unless this certificate may sign `issued`, `below` non-self-issued intermediate
    /// certificates lying between it and the chain's leaf: basicConstraints with cA=TRUE, a
    /// keyUsage (when present) with keyCertSign, and a pathLenConstraint (when present) of at
    /// least `below` (RFC 5280 §4.2.1.3, §4.2.1.9, §6.1.4).
    pub fn check_may_issue(&self, issued: &Cert, below: usize) -> Result<(), CertError> {
        use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
        let constraints = self.decoded_extension::<BasicConstraints>("basicConstraints")?;
        let Some(constraints) = constraints.filter(|c| c.ca) else {
            return Err(CertError::NotACa {
                subject: self.subject_cn(),
                issued: issued.subject_cn(),
            });
        };
        if let Some(usage) = self.decoded_extension::<KeyUsage>("keyUsage")?
            && !usage.key_cert_sign()
        {
            return Err(CertError::NoKeyCertSign {
                subject: self.subject_cn(),
                issued: issued.subject_cn(),
            });
        }
        if let Some(max) = constraints.path_len_constraint
            && below > usize::from(max)
        {
            return Err(CertError::PathLenExceeded {
                subject: self.subject_cn(),
                max,
                found: below,
            });
        }
        Ok(())
    }

    /// Fails unless this certificate may sign data other than certificates and CRLs: its
    /// keyUsage, when present, includes digitalSignature (RFC 5280 §4.2.1.3).
    pub fn check_may_sign_data(&self) -> Result<(), CertError> {
        use x509_cert::ext::pkix::KeyUsage;
        match self.decoded_extension::<KeyUsage>("keyUsage")? {
            Some(usage) if !usage.digital_signature() => {
                Err(CertError::NoDigitalSignature { subject: self.subject_cn() })
            }
            _ => Ok(()),
        }
    }

    /// The extendedKeyUsage purposes (empty when the certificate has none).
    pub fn extended_key_usage(&self) -> Result<Vec<der::oid::ObjectIdentifier>, CertError> {
        use x509_cert::ext::pkix::ExtendedKeyUsage;
        Ok(self
            .decoded_extension::<ExtendedKeyUsage>("extendedKeyUsage")?
            .map(|eku| eku.0)
            .unwrap_or_default())
    }

    /// Whether subject and issuer names are the same (a self-issued certificate).
    pub fn is_self_issued(&self) -> bool {
        let tbs = self.parsed.tbs_certificate();
        tbs.subject() == tbs.issuer()
    }

    /// The certificate's signature algorithm.
    pub fn signature_algorithm(&self) -> Result<SignatureAlgorithm, CertError> {
        let alg = self.parsed.signature_algorithm();
        let params = alg.parameters.as_ref().and_then(|p| p.to_der().ok()).unwrap_or_default();
        SignatureAlgorithm::from_oid(&alg.oid.to_string(), &params).ok_or_else(|| {
            CertError::UnsupportedAlgorithm {
                subject: self.subject_cn(),
                what: format!("signature algorithm {}", alg.oid),
            }
        })
    }

    /// Checks that `issuer` issued this certificate: names match and the signature verifies.
    pub fn verify_issued_by(&self, issuer: &Cert) -> Result<(), CertError> {
        if self.parsed.tbs_certificate().issuer() != issuer.parsed.tbs_certificate().subject() {
            return Err(CertError::IssuerMismatch {
                subject: self.subject_cn(),
                issuer: self.issuer_cn(),
                expected: issuer.subject_cn(),
            });
        }
        self.verify_signed_by(issuer)
    }

    /// Checks only that this certificate's signature verifies with `issuer`'s public key, over
    /// the to-be-signed bytes as received; names are not compared. Chains whose issuers do not
    /// always name their signer (Android key attestation: "signature chaining") use this, and
    /// the caller says why names need not match.
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        let memo = signature_memo_key(issuer, self);
        if signature_memo().contains(&memo) {
            return Ok(());
        }
        let algorithm = self.signature_algorithm()?;
        let signature = self.parsed.signature().raw_bytes();
        let (start, end) = tbs_range(&self.der)?;
        let key = issuer.public_key()?;
        key.verify(algorithm, &self.der[start..end], signature).map_err(|_| {
            CertError::BadSignature { subject: self.subject_cn(), issuer: issuer.subject_cn() }
        })?;
        let mut memo_set = signature_memo();
        if memo_set.len() >= SIGNATURE_MEMO_LIMIT {
            memo_set.clear();
        }
        memo_set.insert(memo);
        Ok(())
    }
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cert({})", self.subject_cn())
    }
}

impl SignatureAlgorithm {
    /// Maps an algorithm OID (dotted) and its DER parameters to an algorithm.
    pub fn from_oid(oid: &str, params_der: &[u8]) -> Option<Self> {
        // SHA-384 and SHA-256 OIDs as they appear inside RSASSA-PSS parameters.
        const SHA384_OID: &[u8] =
            &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
        const SHA256_OID: &[u8] =
            &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
        match oid {
            "1.2.840.10045.4.3.2" => Some(Self::EcdsaSha256),
            "1.2.840.10045.4.3.3" => Some(Self::EcdsaSha384),
            "1.2.840.113549.1.1.11" => Some(Self::RsaPkcs1Sha256),
            "1.2.840.113549.1.1.12" => Some(Self::RsaPkcs1Sha384),
            "1.2.840.113549.1.1.10" => {
                if contains(params_der, SHA384_OID) {
                    Some(Self::RsaPssSha384)
                } else if contains(params_der, SHA256_OID) {
                    Some(Self::RsaPssSha256)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// Why a signature did not verify (the caller names what was being checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo (EC P-256, P-384 or P-521, or RSA); the error says what
    /// is unsupported.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| e.to_string())?;
        let key_bytes = spki.subject_public_key.raw_bytes();
        match spki.algorithm.oid.to_string().as_str() {
            "1.2.840.10045.2.1" => {
                let curve = spki
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<der::oid::ObjectIdentifier>().ok())
                    .map(|oid| oid.to_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    "1.2.840.10045.3.1.7" => EcPublicKey::from_sec1(Curve::P256, key_bytes)
                        .map(Self::P256)
                        .ok_or_else(|| "P-256 public key is not a valid point".to_owned()),
                    "1.3.132.0.34" => EcPublicKey::from_sec1(Curve::P384, key_bytes)
                        .map(Self::P384)
                        .ok_or_else(|| "P-384 public key is not a valid point".to_owned()),
                    "1.3.132.0.35" => EcPublicKey::from_sec1(Curve::P521, key_bytes)
                        .map(Self::P521)
                        .ok_or_else(|| "P-521 public key is not a valid point".to_owned()),
                    other => Err(format!("elliptic curve {other}")),
                }
            }
            "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
                use rsa::pkcs1::DecodeRsaPublicKey as _;
                rsa::PublicKey::from_pkcs1_der(key_bytes)
                    .map(Self::Rsa)
                    .map_err(|e| format!("RSA public key: {e}"))
            }
            other => Err(format!("public key algorithm {other}")),
        }
    }

    /// Verifies `signature` over `message` with `algorithm`. ECDSA signatures are DER here; use
    /// [`PublicKey::verify_ecdsa_raw`] for fixed-size `r || s` signatures.
    pub fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), BadSignature> {
        use SignatureAlgorithm as A;
        match (self, algorithm) {
            // X.509 chains signed by P-521 keys are not supported (no vendor chain uses them).
            (Self::P256(_) | Self::P384(_), A::EcdsaSha256 | A::EcdsaSha384) => {
                let hash = if algorithm == A::EcdsaSha384 { Hash::Sha384 } else { Hash::Sha256 };
                self.verify_ecdsa(hash, Encoding::Der, message, signature)
            }
            (Self::Rsa(key), A::RsaPssSha384) => {
                use rsa::signature::Verifier as _;
                let sig = rsa::pss::Signature::try_from(signature).map_err(|_| BadSignature)?;
                rsa::pss::VerifyingKey::<Sha384>::new(key.clone())
                    .verify(message, &sig)
                    .map_err(|_| BadSignature)
            }
            (Self::Rsa(key), A::RsaPssSha256) => {
                use rsa::signature::Verifier as _;
                let sig = rsa::pss::Signature::try_from(signature).map_err(|_| BadSignature)?;
                rsa::pss::VerifyingKey::<Sha256>::new(key.clone())
                    .verify(message, &sig)
                    .map_err(|_| BadSignature)
            }
            (Self::Rsa(key), A::RsaPkcs1Sha256) => {
                use rsa::signature::Verifier as _;
                let sig =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| BadSignature)?;
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone())
                    .verify(message, &sig)
                    .map_err(|_| BadSignature)
            }
            (Self::Rsa(key), A::RsaPkcs1Sha384) => {
                use rsa::signature::Verifier as _;
                let sig =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| BadSignature)?;
                rsa::pkcs1v15::VerifyingKey::<Sha384>::new(key.clone())
                    .verify(message, &sig)
                    .map_err(|_| BadSignature)
            }
            _ => Err(BadSignature),
        }
    }

    /// Verifies a fixed-size big-endian `r || s` ECDSA signature over `message`, hashed with
    /// SHA-256 (`sha384 == false`) or SHA-384.
    pub fn verify_ecdsa_raw(
        &self,
        sha384: bool,
        message: &[u8],
        r_s: &[u8],
    ) -> Result<(), BadSignature> {
        self.verify_ecdsa_fixed(if sha384 { Hash::Sha384 } else { Hash::Sha256 }, message, r_s)
    }

    /// Verifies a fixed-size big-endian `r || s` ECDSA signature over `message` hashed with
    /// `hash` (COSE ES256/ES384/ES512 name the hash with the curve).
    pub(crate) fn verify_ecdsa_fixed(
        &self,
        hash: Hash,
        message: &[u8],
        r_s: &[u8],
    ) -> Result<(), BadSignature> {
        self.verify_ecdsa(hash, Encoding::Fixed, message, r_s)
    }

    /// [`PublicKey::verify_ecdsa_raw`] for a signature over platform material that repeats
    /// unchanged from one piece of evidence to the next (a DCAP QE report signed by the PCK
    /// key), never over anything fresh: a success is remembered under SHA-256 of the key, the
    /// hash, the message and the signature, so only the very same bytes find it again.
    pub(crate) fn verify_ecdsa_raw_remembered(
        &self,
        sha384: bool,
        message: &[u8],
        r_s: &[u8],
    ) -> Result<(), BadSignature> {
        let hash = if sha384 { Hash::Sha384 } else { Hash::Sha256 };
        self.verify_ecdsa_fixed_remembered(hash, message, r_s)
    }

    /// [`PublicKey::verify_ecdsa_raw_remembered`] with the hash named.
    pub(crate) fn verify_ecdsa_fixed_remembered(
        &self,
        hash: Hash,
        message: &[u8],
        r_s: &[u8],
    ) -> Result<(), BadSignature> {
        let key = match self {
            Self::P256(key) | Self::P384(key) | Self::P521(key) => key,
            Self::Rsa(_) => return Err(BadSignature),
        };
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        part(b"cloister-ecdsa-fixed-v1");
        part(key.sec1_uncompressed());
        // 0 and 1 for SHA-256 and SHA-384, as when the hash was a bool.
        part(&[match hash {
            Hash::Sha256 => 0,
            Hash::Sha384 => 1,
            Hash::Sha512 => 2,
        }]);
        part(message);
        part(r_s);
        let memo: [u8; 32] = hasher.finalize().into();
        if platform_signature_memo().contains(&memo) {
            return Ok(());
        }
        self.verify_ecdsa_fixed(hash, message, r_s)?;
        let mut memo_set = platform_signature_memo();
        if memo_set.len() >= SIGNATURE_MEMO_LIMIT {
            memo_set.clear();
        }
        memo_set.insert(memo);
        Ok(())
    }

    /// ECDSA verification, DER or fixed-size signatures, through [`crate::ecdsa`] (the one
    /// place the backend is named); an RSA key never verifies an ECDSA signature.
    fn verify_ecdsa(
        &self,
        hash: Hash,
        encoding: Encoding,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), BadSignature> {
        let key = match self {
            Self::P256(key) | Self::P384(key) | Self::P521(key) => key,
            Self::Rsa(_) => return Err(BadSignature),
        };
        key.verify(hash, encoding, message, signature).map_err(|_| BadSignature)
    }

    /// An EC key from a SEC1 point: P-256 for 65 bytes uncompressed (33 compressed), P-384 for
    /// 97 (49), P-521 for 133 (67); `None` for anything else or a point not on the curve.
    pub fn from_sec1(point: &[u8]) -> Option<Self> {
        match point.len() {
            65 | 33 => EcPublicKey::from_sec1(Curve::P256, point).map(Self::P256),
            97 | 49 => EcPublicKey::from_sec1(Curve::P384, point).map(Self::P384),
            133 | 67 => EcPublicKey::from_sec1(Curve::P521, point).map(Self::P521),
            _ => None,
        }
    }
}

/// Checks a chain given leaf first: each certificate is issued by the next and valid at
/// `now_unix`, the last one is self-signed with a SHA-256 fingerprint in `pinned_roots`, and every
/// certificate that signs another is a CA allowed to sign certificates at that depth
/// ([`Cert::check_may_issue`]).
pub fn verify_chain(
    chain: &[Cert],
    pinned_roots: &[[u8; 32]],
    now_unix: i64,
) -> Result<(), CertError> {
    let root = chain.last().ok_or(CertError::EmptyChain)?;
    if !pinned_roots.contains(&root.sha256_fingerprint()) {
        return Err(CertError::UntrustedRoot {
            subject: root.subject_cn(),
            fingerprint: hex::encode(root.sha256_fingerprint()),
        });
    }
    root.verify_issued_by(root)?;
    for (position, pair) in chain.windows(2).enumerate() {
        let (issued, issuer) = (&pair[0], &pair[1]);
        issued.verify_issued_by(issuer)?;
        // The intermediates between this issuer and the leaf, self-issued ones not counted.
        let below = chain[1..=position].iter().filter(|c| !c.is_self_issued()).count();
        issuer.check_may_issue(issued, below)?;
    }
    for cert in chain {
        cert.check_validity(now_unix)?;
    }
    Ok(())
}

/// Splits certificate input into DER blobs: PEM (one or more `CERTIFICATE` blocks) or one DER
/// certificate as is.
pub fn split_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN ") => text,
        _ => return Ok(vec![bytes.to_vec()]),
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let end_marker =
            block.find("-----END ").ok_or_else(|| CertError::Pem("no END line".into()))?;
        let after_end = block[end_marker + 9..]
            .find("-----")
            .map(|i| end_marker + 9 + i + 5)
            .ok_or_else(|| CertError::Pem("unterminated END line".into()))?;
        let (label, der) = pem_rfc7468_decode(&block[..after_end])?;
        if label == "CERTIFICATE" {
            out.push(der);
        }
        rest = &block[after_end..];
    }
    if out.is_empty() {
        return Err(CertError::Pem("no CERTIFICATE block".into()));
    }
    Ok(out)
}

fn pem_rfc7468_decode(block: &str) -> Result<(String, Vec<u8>), CertError> {
    use base64::Engine as _;
    let mut lines = block.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| CertError::Pem("malformed BEGIN line".into()))?
        .to_owned();
    let body: String = lines.take_while(|l| !l.starts_with("-----END ")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| CertError::Pem(format!("base64: {e}")))?;
    Ok((label, der))
}

/// The byte range of the TBSCertificate inside a DER certificate.
fn tbs_range(der: &[u8]) -> Result<(usize, usize), CertError> {
    let malformed = |e: der::Error| CertError::Parse(e.to_string());
    let mut reader = der::SliceReader::new(der).map_err(malformed)?;
    let outer = der::Header::decode(&mut reader).map_err(malformed)?;
    let outer_len = usize::try_from(outer.length()).map_err(malformed)?;
    let body_start = usize::try_from(reader.position()).map_err(malformed)?;
    if body_start + outer_len != der.len() {
        return Err(CertError::Parse(format!(
            "certificate has {} bytes after its DER encoding",
            der.len().saturating_sub(body_start + outer_len)
        )));
    }
    let tbs = der::Header::decode(&mut reader).map_err(malformed)?;
    let tbs_body = usize::try_from(tbs.length()).map_err(malformed)?;
    let tbs_end = usize::try_from(reader.position()).map_err(malformed)? + tbs_body;
    if tbs_end > der.len() {
        return Err(CertError::Parse("TBSCertificate runs past the end".into()));
    }
    Ok((body_start, tbs_end))
}

/// How many verified certificate signatures are remembered before the memo starts over.
const SIGNATURE_MEMO_LIMIT: usize = 16_384;

/// Certificate signatures that verified, by SHA-256 over (issuer DER, certificate DER).
///
/// Checking a signature is a pure function of those bytes, so remembering a success is sound
/// and keeps this crate free of observable state: the same inputs give the same answer, only
/// faster. Names, validity periods and root pinning are still checked on every call; a vendor
/// chain (PCK, VCEK, Nitro, NVIDIA) is then paid for once per process, not once per quote.
static SIGNATURE_MEMO: std::sync::Mutex<std::collections::BTreeSet<[u8; 32]>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn signature_memo() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<[u8; 32]>> {
    // Every update is a single insert or clear, so a poisoned lock still holds a valid set.
    SIGNATURE_MEMO.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Signatures over repeating platform material that verified
/// ([`PublicKey::verify_ecdsa_raw_remembered`]), by SHA-256 of key, hash, message and signature;
/// sound for the same reason as [`SIGNATURE_MEMO`].
static PLATFORM_SIGNATURE_MEMO: std::sync::Mutex<std::collections::BTreeSet<[u8; 32]>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn platform_signature_memo() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<[u8; 32]>>
{
    // Every update is a single insert or clear, so a poisoned lock still holds a valid set.
    PLATFORM_SIGNATURE_MEMO.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many parsed certificate chains are remembered before the memo starts over.
const PARSED_CHAIN_LIMIT: usize = 1024;

type ParsedChains = std::collections::BTreeMap<[u8; 32], std::sync::Arc<[Cert]>>;

/// Chains parsed by [`Cert::parse_many_shared`], by SHA-256 of the exact input bytes.
static PARSED_CHAINS: std::sync::Mutex<ParsedChains> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn parsed_chains() -> std::sync::MutexGuard<'static, ParsedChains> {
    // Every update is a single insert or clear, so a poisoned lock still holds a valid map.
    PARSED_CHAINS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn signature_memo_key(issuer: &Cert, subject: &Cert) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((issuer.der.len() as u64).to_be_bytes());
    hasher.update(&issuer.der);
    hasher.update(&subject.der);
    hasher.finalize().into()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn common_name(name: &x509_cert::name::Name) -> String {
    // 2.5.4.3 = commonName
    for atv in name.iter() {
        if atv.oid.to_string() == "2.5.4.3" {
            if let Ok(s) = atv.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                return s.as_str().to_owned();
            }
            if let Ok(s) = atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>() {
                return s.as_str().to_owned();
            }
        }
    }
    name.to_string()
}

fn unix(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Formats unix seconds as RFC 3339 UTC (`2029-09-20T13:20:31Z`).
pub fn rfc3339(unix_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix_secs} (unix seconds)"))
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;

    use super::*;

    fn key(seed: u8) -> (p256::ecdsa::SigningKey, PublicKey) {
        let secret = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        let point = secret.verifying_key().to_sec1_point(false);
        (secret, PublicKey::from_sec1(point.as_bytes()).unwrap())
    }

    #[test]
    fn a_remembered_signature_is_found_only_by_the_same_key_message_and_signature() {
        let (secret, public) = key(3);
        let (_, other) = key(4);
        let message = b"a QE report".to_vec();
        let signature: p256::ecdsa::Signature =
            secret.sign_prehash(&Sha256::digest(&message)).unwrap();
        let r_s = signature.to_bytes().to_vec();
        for _ in 0..2 {
            assert_eq!(public.verify_ecdsa_raw_remembered(false, &message, &r_s), Ok(()));
        }
        let mut bad = r_s.clone();
        bad[5] ^= 1;
        assert!(public.verify_ecdsa_raw_remembered(false, &message, &bad).is_err());
        assert!(public.verify_ecdsa_raw_remembered(false, b"a QE reporT", &r_s).is_err());
        assert!(public.verify_ecdsa_raw_remembered(true, &message, &r_s).is_err());
        assert!(other.verify_ecdsa_raw_remembered(false, &message, &r_s).is_err());
    }

    #[test]
    fn a_shared_chain_is_the_parse_of_exactly_its_bytes() {
        let pem = b"not a certificate";
        assert!(Cert::parse_many_shared(pem).is_err());
        assert!(Cert::parse_many_shared(pem).is_err(), "failures are not remembered");
    }
}
