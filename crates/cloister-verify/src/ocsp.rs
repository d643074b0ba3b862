//! OCSP responses (RFC 6960) from the collateral, checked against a certificate of a chain that
//! already verified: for that certificate, signed by its issuer or a responder its issuer
//! delegated, current at the verification time, and not revoked.
//!
//! RustCrypto's `x509-ocsp` has no release for the `der` 0.8 / `x509-cert` 0.3 generation this
//! crate uses, so the few structures needed are declared here with `der`'s derives, from the
//! RFC's ASN.1. The response signature is checked over the `tbsResponseData` bytes as received.
//!
//! The checks, for a certificate `cert` issued by `issuer`:
//!
//! 1. `responseStatus` is `successful` and the response is an `id-pkix-ocsp-basic` one;
//! 2. a `SingleResponse` whose `CertID` names `cert` (issuer name and key hashes with SHA-1,
//!    SHA-256, SHA-384 or SHA-512, and the serial number); a response without one says nothing
//!    about `cert`;
//! 3. the signer: `issuer` itself when the `ResponderID` names it (by name or key hash), else a
//!    certificate in the response that `issuer` signed, valid at the verification time, with
//!    extendedKeyUsage `id-kp-OCSPSigning` and (when it has a keyUsage) digitalSignature
//!    (RFC 6960 §4.2.2.2); the signature verifies with its key;
//! 4. `thisUpdate` is not after the verification time and `nextUpdate` is present and not
//!    before it (a response without `nextUpdate` cannot be judged fresh);
//! 5. the status is `good`; `revoked` and `unknown` are refused.

use der::asn1::{BitString, GeneralizedTime, Int, Null, ObjectIdentifier, OctetString};
use der::{Choice, Decode as _, Encode as _, Sequence};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extensions;
use x509_cert::ext::pkix::crl::CrlReason;
use x509_cert::name::Name;

use crate::x509::{Cert, CertError, SignatureAlgorithm, rfc3339};

/// `id-pkix-ocsp-basic`.
const OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// `id-kp-OCSPSigning`.
const OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// The largest OCSP response accepted.
const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// Why an OCSP response does not let a certificate pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OcspError {
    /// The bytes are not an OCSP response.
    #[error("OCSP response is not DER as RFC 6960 defines it: {0}")]
    Parse(String),
    /// The responder did not answer `successful`.
    #[error("the OCSP responder answered {0}, not successful")]
    Status(&'static str),
    /// The response is not a basic OCSP response.
    #[error("OCSP response type {0} is not id-pkix-ocsp-basic")]
    ResponseType(String),
    /// No certificate it could be for.
    #[error("the OCSP response has no entry for any certificate of the chains it could apply to")]
    NoMatchingCertificate,
    /// The signer is neither the issuer nor a responder it delegated.
    #[error(
        "the OCSP response for {subject} is signed neither by its issuer {issuer} nor by a \
         responder {issuer} delegated (a certificate it issued with extendedKeyUsage OCSPSigning)"
    )]
    ResponderNotAuthorized {
        /// The certificate the response is about.
        subject: String,
        /// Its issuer.
        issuer: String,
    },
    /// A delegated responder certificate does not verify.
    #[error("the delegated OCSP responder certificate does not verify: {0}")]
    Responder(#[source] CertError),
    /// The signature algorithm is not one this verifier knows.
    #[error("the OCSP response uses an unsupported signature algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The signature does not verify.
    #[error("the OCSP response signature does not verify with the key of {responder}")]
    BadSignature {
        /// The signer's subject CN.
        responder: String,
    },
    /// `thisUpdate` is after the verification time.
    #[error("the OCSP response for {subject} is not valid before {this_update}")]
    NotYetValid {
        /// The certificate the response is about.
        subject: String,
        /// Its `thisUpdate`, RFC 3339.
        this_update: String,
    },
    /// `nextUpdate` is before the verification time.
    #[error("the OCSP response for {subject} expired at {next_update} (nextUpdate)")]
    Expired {
        /// The certificate the response is about.
        subject: String,
        /// Its `nextUpdate`, RFC 3339.
        next_update: String,
    },
    /// No `nextUpdate`: freshness cannot be judged.
    #[error("the OCSP response for {subject} has no nextUpdate, so its freshness cannot be judged")]
    NoNextUpdate {
        /// The certificate the response is about.
        subject: String,
    },
    /// The certificate is revoked.
    #[error("{subject} is revoked since {revoked_at} (reason: {reason}), says its OCSP response")]
    Revoked {
        /// The revoked certificate's subject CN.
        subject: String,
        /// When, RFC 3339.
        revoked_at: String,
        /// The CRL reason, or "unspecified".
        reason: String,
    },
    /// The responder does not know the certificate.
    #[error("the OCSP responder says the status of {subject} is unknown")]
    UnknownStatus {
        /// The certificate's subject CN.
        subject: String,
    },
}

/// What a response says about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspVerdict {
    /// It has an entry for the certificate; the entry is current, authentic and `good`.
    Good,
    /// It has no entry for the certificate.
    NotForThisCertificate,
}

/// A parsed basic OCSP response.
#[derive(Debug, Clone)]
pub struct OcspResponse {
    tbs_der: Vec<u8>,
    data: ResponseData,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: Vec<u8>,
    certs: Vec<Cert>,
}

/// Whether `bytes` are a DER OCSP response (`OCSPResponse`), by content.
pub fn looks_like_ocsp_response(bytes: &[u8]) -> bool {
    bytes.len() <= MAX_RESPONSE_LEN && OcspResponseDer::from_der(bytes).is_ok()
}

impl OcspResponse {
    /// Parses a DER `OCSPResponse`; only a successful basic response is accepted.
    pub fn from_der(bytes: &[u8]) -> Result<Self, OcspError> {
        if bytes.len() > MAX_RESPONSE_LEN {
            return Err(OcspError::Parse(format!(
                "{} bytes, more than {MAX_RESPONSE_LEN}",
                bytes.len()
            )));
        }
        let parse = |e: der::Error| OcspError::Parse(e.to_string());
        let outer = OcspResponseDer::from_der(bytes).map_err(parse)?;
        if outer.response_status != ResponseStatus::Successful {
            return Err(OcspError::Status(outer.response_status.name()));
        }
        let response_bytes = outer.response_bytes.ok_or_else(|| {
            OcspError::Parse("a successful response without responseBytes".into())
        })?;
        if response_bytes.response_type != OCSP_BASIC {
            return Err(OcspError::ResponseType(response_bytes.response_type.to_string()));
        }
        let basic =
            BasicOcspResponse::from_der(response_bytes.response.as_bytes()).map_err(parse)?;
        // DER has one encoding, so re-encoding the element gives the bytes as received.
        let tbs_der = basic.tbs_response_data.to_der().map_err(parse)?;
        let data = ResponseData::from_der(&tbs_der).map_err(parse)?;
        let mut certs = Vec::new();
        for any in basic.certs.unwrap_or_default() {
            let der = any.to_der().map_err(parse)?;
            certs.push(Cert::from_der(&der).map_err(OcspError::Responder)?);
        }
        let signature = basic
            .signature
            .as_bytes()
            .ok_or_else(|| OcspError::Parse("the signature BIT STRING has unused bits".into()))?
            .to_vec();
        Ok(Self { tbs_der, data, signature_algorithm: basic.signature_algorithm, signature, certs })
    }

    /// What this response says about `cert`, issued by `issuer` (both from a chain that already
    /// verified), at `now_unix`. An entry for `cert` that fails a check is an error.
    pub fn check(
        &self,
        cert: &Cert,
        issuer: &Cert,
        now_unix: i64,
    ) -> Result<OcspVerdict, OcspError> {
        let Some(single) = self.data.responses.iter().find(|s| s.cert_id.names(cert, issuer))
        else {
            return Ok(OcspVerdict::NotForThisCertificate);
        };
        let subject = cert.subject_cn();
        let signer = self.signer(cert, issuer, now_unix)?;
        let algorithm = SignatureAlgorithm::from_oid(
            &self.signature_algorithm.oid.to_string(),
            &self
                .signature_algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.to_der().ok())
                .unwrap_or_default(),
        )
        .ok_or_else(|| OcspError::UnsupportedAlgorithm(self.signature_algorithm.oid.to_string()))?;
        let key = signer.public_key().map_err(OcspError::Responder)?;
        key.verify(algorithm, &self.tbs_der, &self.signature)
            .map_err(|_| OcspError::BadSignature { responder: signer.subject_cn() })?;

        let this_update = unix(&single.this_update);
        if this_update > now_unix {
            return Err(OcspError::NotYetValid { subject, this_update: rfc3339(this_update) });
        }
        let next_update = single
            .next_update
            .as_ref()
            .map(unix)
            .ok_or_else(|| OcspError::NoNextUpdate { subject: subject.clone() })?;
        if next_update < now_unix {
            return Err(OcspError::Expired { subject, next_update: rfc3339(next_update) });
        }
        match &single.cert_status {
            CertStatus::Good(_) => Ok(OcspVerdict::Good),
            CertStatus::Revoked(info) => Err(OcspError::Revoked {
                subject,
                revoked_at: rfc3339(unix(&info.revocation_time)),
                reason: info
                    .revocation_reason
                    .map(|r| format!("{r:?}"))
                    .unwrap_or_else(|| "unspecified".into()),
            }),
            CertStatus::Unknown(_) => Err(OcspError::UnknownStatus { subject }),
        }
    }

    /// The certificate whose key signed the response: `issuer`, or a responder it delegated.
    fn signer<'a>(
        &'a self,
        cert: &Cert,
        issuer: &'a Cert,
        now_unix: i64,
    ) -> Result<&'a Cert, OcspError> {
        if self.data.responder_id.names(issuer) {
            return Ok(issuer);
        }
        let not_authorized = || OcspError::ResponderNotAuthorized {
            subject: cert.subject_cn(),
            issuer: issuer.subject_cn(),
        };
        let responder = self
            .certs
            .iter()
            .find(|c| self.data.responder_id.names(c))
            .ok_or_else(not_authorized)?;
        responder.verify_issued_by(issuer).map_err(|_| not_authorized())?;
        responder.check_validity(now_unix).map_err(OcspError::Responder)?;
        responder.check_may_sign_data().map_err(OcspError::Responder)?;
        if !responder.extended_key_usage().map_err(OcspError::Responder)?.contains(&OCSP_SIGNING) {
            return Err(not_authorized());
        }
        Ok(responder)
    }
}

fn unix(time: &GeneralizedTime) -> i64 {
    i64::try_from(time.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

fn key_bits(cert: &Cert) -> &[u8] {
    cert.parsed().tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes()
}

// ---- RFC 6960 §4.2.1 ----

#[derive(Clone, Debug, Sequence)]
struct OcspResponseDer {
    response_status: ResponseStatus,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    response_bytes: Option<ResponseBytes>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, der::Enumerated)]
#[repr(u32)]
enum ResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

impl ResponseStatus {
    fn name(self) -> &'static str {
        match self {
            Self::Successful => "successful",
            Self::MalformedRequest => "malformedRequest",
            Self::InternalError => "internalError",
            Self::TryLater => "tryLater",
            Self::SigRequired => "sigRequired",
            Self::Unauthorized => "unauthorized",
        }
    }
}

#[derive(Clone, Debug, Sequence)]
struct ResponseBytes {
    response_type: ObjectIdentifier,
    response: OctetString,
}

#[derive(Clone, Debug, Sequence)]
struct BasicOcspResponse {
    tbs_response_data: der::Any,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    certs: Option<Vec<der::Any>>,
}

#[derive(Clone, Debug, Sequence)]
struct ResponseData {
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    version: Option<u8>,
    responder_id: ResponderId,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    response_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Choice)]
enum ResponderId {
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    ByName(Name),
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

impl ResponderId {
    /// Whether this names `cert` (its subject, or SHA-1 of its public key bits).
    fn names(&self, cert: &Cert) -> bool {
        match self {
            Self::ByName(name) => name == cert.parsed().tbs_certificate().subject(),
            Self::ByKey(hash) => {
                use sha1::Digest as _;
                sha1::Sha1::digest(key_bits(cert)).as_slice() == hash.as_bytes()
            }
        }
    }
}

#[derive(Clone, Debug, Sequence)]
struct SingleResponse {
    cert_id: CertId,
    cert_status: CertStatus,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    single_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Sequence)]
struct CertId {
    hash_algorithm: AlgorithmIdentifierOwned,
    issuer_name_hash: OctetString,
    issuer_key_hash: OctetString,
    serial_number: Int,
}

impl CertId {
    /// Whether this identifies `cert` issued by `issuer`.
    fn names(&self, cert: &Cert, issuer: &Cert) -> bool {
        let hash = |bytes: &[u8]| -> Option<Vec<u8>> {
            Some(match self.hash_algorithm.oid.to_string().as_str() {
                "1.3.14.3.2.26" => {
                    use sha1::Digest as _;
                    sha1::Sha1::digest(bytes).to_vec()
                }
                "2.16.840.1.101.3.4.2.1" => Sha256::digest(bytes).to_vec(),
                "2.16.840.1.101.3.4.2.2" => Sha384::digest(bytes).to_vec(),
                "2.16.840.1.101.3.4.2.3" => Sha512::digest(bytes).to_vec(),
                _ => return None,
            })
        };
        let Ok(issuer_name) = issuer.parsed().tbs_certificate().subject().to_der() else {
            return false;
        };
        cert.parsed().tbs_certificate().issuer() == issuer.parsed().tbs_certificate().subject()
            && self.serial_number.as_bytes()
                == cert.parsed().tbs_certificate().serial_number().as_bytes()
            && hash(&issuer_name).is_some_and(|h| h == self.issuer_name_hash.as_bytes())
            && hash(key_bits(issuer)).is_some_and(|h| h == self.issuer_key_hash.as_bytes())
    }
}

#[derive(Clone, Debug, Choice)]
enum CertStatus {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

#[derive(Clone, Debug, Sequence)]
struct RevokedInfo {
    revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    revocation_reason: Option<CrlReason>,
}
