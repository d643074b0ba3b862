//! AWS Nitro Enclaves attestation documents: COSE_Sign1 ES384 and the cabundle to the AWS root.
//!
//! # What is checked, in order
//!
//! 1. The evidence is an attestation document (a COSE_Sign1, untagged or with tag 18) or a DER
//!    certificate carrying one in its subjectAltName (see [`carrier`]; recognised by content).
//! 2. Structure ([`document`]): the protected header is exactly `{alg: ES384}`, the unprotected
//!    header is empty, the payload is attached and follows the AWS NSM specification (module_id
//!    non-empty, digest `SHA384`, timestamp > 0, 1 to 32 PCRs with indexes below 32 and 48-byte
//!    values, a certificate and a non-empty cabundle of 1..=1024-byte DER blobs, optional
//!    public_key/user_data/nonce of at most 1024 bytes, no other field, no duplicate key).
//! 3. Root: `cabundle[0]` is the AWS Nitro Enclaves root (pinned by SHA-256 fingerprint,
//!    [`AWS_NITRO_ROOT_G1_SHA256`]) or a certificate listed in the instance's trust anchors or
//!    test roots for `nitro` (PEM or DER).
//! 4. Chain: leaf ← `cabundle[n-1]` ← … ← `cabundle[0]`, each issued by the next (names and
//!    signatures), the root self-signed, and every certificate valid at `inputs.now_unix`.
//!    Leaf certificates live about three hours, so a document is only verifiable in that window.
//!    Every issuer must be a CA (basicConstraints cA, path length, keyCertSign) and the leaf must
//!    not be one (and may sign, when it has a key usage).
//! 5. The COSE signature (ES384, 96 bytes `r || s`) verifies with the leaf's P-384 key over the
//!    Sig_structure `["Signature1", protected, h'', payload]`.
//! 6. The document's timestamp lies inside the leaf's validity and is not more than
//!    [`MAX_CLOCK_SKEW_SECS`] after `now`.
//! 7. For a carrier certificate: its SubjectPublicKeyInfo equals the document's `user_data` or
//!    `public_key`, so the document attests that TLS key.
//!
//! # Claims
//!
//! - `measurement` = PCR0 (hash of the enclave image file); PCR0, PCR1 and PCR2 are required.
//! - `signer` = PCR8 (hash of the certificate that signed the enclave image file) when present
//!   and not all zeros; absent for unsigned images and in debug mode.
//! - `debug` = true when PCR0, PCR1 and PCR2 are all zeros: the NSM reports zeroed PCRs for
//!   enclaves started with `--debug-mode`, whose console the parent instance can read.
//! - `report_data` = `user_data` as is (Cloister's attester puts its 64 bytes there); empty when
//!   absent. It is never padded or truncated: the binding check refuses anything but 64 bytes.
//! - `platform_id` is absent: the module id names an enclave of one EC2 instance, not hardware,
//!   and changes with every launch; the parent instance is measured in PCR4 (in `pcrs`).
//! - `tcb_status` is `unknown`: AWS publishes no TCB status for the Nitro hypervisor.
//! - `vendor.nitro`: module_id, digest, timestamp (ms) and timestamp_rfc3339, every PCR as
//!   `{"<index>": hex}`, public_key, user_data and nonce (hex or null), the leaf certificate's
//!   subject and validity, the root's SHA-256 fingerprint, `trust_anchor` (where that root
//!   comes from: `vendor`, `instance` or `test`), and `carrier_certificate` when the document
//!   came in a certificate.

pub mod carrier;
pub mod document;

use std::collections::BTreeMap;

use cloister_types::{Claims, Hex, TcbStatus, TeeKind};
use serde_json::{Value, json};

use crate::anchors::AnchorOrigin;
use crate::error::VerifyError;
use crate::inputs::Inputs;
use crate::x509::{Cert, CertError, PublicKey, rfc3339, verify_chain};

/// SHA-256 of the DER of the AWS Nitro Enclaves root certificate "AWS Nitro Enclaves Root G1"
/// (subject `C=US, O=Amazon, OU=AWS, CN=aws.nitro-enclaves`, P-384, valid 2019-10-28 to
/// 2049-10-28), as published in the AWS Nitro Enclaves documentation.
pub const AWS_NITRO_ROOT_G1_SHA256: [u8; 32] = [
    0x64, 0x1a, 0x03, 0x21, 0xa3, 0xe2, 0x44, 0xef, 0xe4, 0x56, 0x46, 0x31, 0x95, 0xd6, 0x06, 0x31,
    0x7e, 0xd7, 0xcd, 0xcc, 0x3c, 0x17, 0x56, 0xe0, 0x98, 0x93, 0xf3, 0xc6, 0x8f, 0x79, 0xbb, 0x5b,
];

/// How far (seconds) a document's timestamp may be ahead of the verification time.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

/// Why nitro evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NitroError {
    /// The evidence is larger than any genuine document.
    #[error("nitro: evidence is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the evidence.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The evidence is neither a COSE_Sign1 nor a certificate carrying one.
    #[error(
        "nitro: evidence is neither an attestation document (COSE_Sign1) nor an X.509 \
         certificate carrying one"
    )]
    UnknownFormat,
    /// The bytes are not a well-formed COSE_Sign1.
    #[error("nitro: attestation document is not a well-formed COSE_Sign1: {0}")]
    Cose(String),
    /// The protected header names another algorithm than ES384.
    #[error("nitro: COSE algorithm is {0}, expected ES384 (-35)")]
    Algorithm(String),
    /// A COSE header holds something the NSM never writes.
    #[error("nitro: COSE header is not the NSM's: {0}")]
    Header(String),
    /// The COSE_Sign1 has no payload.
    #[error("nitro: COSE_Sign1 has a detached payload; the attestation document must be inside")]
    DetachedPayload,
    /// The payload is not a CBOR map.
    #[error("nitro: document payload is malformed: {0}")]
    Payload(String),
    /// A required field is missing.
    #[error("nitro: document payload lacks the required field {0}")]
    MissingField(&'static str),
    /// The payload has a field the specification does not define.
    #[error("nitro: document payload has an unknown field {0:?}")]
    UnknownField(String),
    /// A field breaks the NSM specification.
    #[error("nitro: document field {field} is invalid: {reason}")]
    Field {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A PCR the claims need is absent.
    #[error("nitro: document has no PCR{0}")]
    MissingPcr(u8),
    /// A certificate in the document is not DER X.509.
    #[error("nitro: {which} is not an X.509 certificate: {source}")]
    Certificate {
        /// Which certificate (`certificate`, `cabundle[2]`).
        which: String,
        /// Why.
        #[source]
        source: CertError,
    },
    /// A trust anchor for nitro is not an X.509 certificate.
    #[error("nitro: trust anchor is not an X.509 certificate (PEM or DER): {0}")]
    Anchor(#[source] CertError),
    /// `cabundle[0]` is neither the AWS root nor a trust anchor of this instance.
    #[error(
        "nitro: root certificate is not the AWS Nitro Enclaves root (SHA-256 {fingerprint}, \
         subject {subject}) nor a trust anchor of this instance"
    )]
    UntrustedRoot {
        /// The root's subject CN.
        subject: String,
        /// Its SHA-256 fingerprint, lowercase hex.
        fingerprint: String,
    },
    /// The certificate chain from the leaf to the root does not verify.
    #[error("nitro: certificate chain: {0}")]
    Chain(#[source] CertError),
    /// A certificate of the chain is used in a role its extensions do not allow.
    #[error("nitro: certificate chain: {subject} certificate cannot be used here: {reason}")]
    CertificateRole {
        /// The certificate's subject CN.
        subject: String,
        /// Which constraint fails.
        reason: String,
    },
    /// The enclave certificate's key cannot verify ES384.
    #[error("nitro: enclave certificate key is not an ECDSA P-384 key: {0}")]
    LeafKey(String),
    /// The COSE signature is not 96 bytes.
    #[error("nitro: COSE signature must be 96 bytes (P-384 r||s), got {0}")]
    SignatureLength(usize),
    /// The COSE signature does not verify.
    #[error("nitro: COSE signature does not verify with the enclave certificate")]
    BadSignature,
    /// The document's timestamp is outside its certificate's validity.
    #[error(
        "nitro: document timestamp {timestamp} is outside the enclave certificate's validity \
         {not_before} to {not_after}"
    )]
    TimestampOutsideCertificate {
        /// The document's timestamp, RFC 3339.
        timestamp: String,
        /// Start of the leaf's validity.
        not_before: String,
        /// End of the leaf's validity.
        not_after: String,
    },
    /// The document claims to come from the future.
    #[error(
        "nitro: document timestamp {timestamp} is more than {max_skew} s after the verification \
         time {now}"
    )]
    TimestampInFuture {
        /// The document's timestamp, RFC 3339.
        timestamp: String,
        /// The verification time, RFC 3339.
        now: String,
        /// The tolerated skew in seconds.
        max_skew: i64,
    },
    /// A certificate given as evidence carries no usable document.
    #[error("nitro: certificate does not carry an attestation document: {0}")]
    Carrier(String),
    /// The carrier certificate's key is not the one the document attests.
    #[error(
        "nitro: the carrier certificate's public key is neither the document's user_data nor its \
         public_key, so the document does not attest it"
    )]
    CarrierKeyMismatch,
}

/// The driver for [`TeeKind::Nitro`].
pub(crate) struct NitroDriver;

impl crate::Driver for NitroDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Ok(verify_evidence(evidence, inputs)?)
    }
}

/// Verifies nitro evidence (a document, or a certificate carrying one) and returns its claims.
fn verify_evidence(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, NitroError> {
    if evidence.len() > document::MAX_DOCUMENT_LEN {
        return Err(NitroError::TooLarge { len: evidence.len(), max: document::MAX_DOCUMENT_LEN });
    }
    if carrier::looks_like_certificate(evidence) {
        let carrier = carrier::extract(evidence)?;
        let verified = verify_document(&carrier.document, inputs)?;
        let spki = carrier_spki(&carrier.cert)?;
        let payload = &verified.doc.payload;
        let bound_in = if payload.user_data.as_deref() == Some(spki.as_slice()) {
            "user_data"
        } else if payload.public_key.as_deref() == Some(spki.as_slice()) {
            "public_key"
        } else {
            return Err(NitroError::CarrierKeyMismatch);
        };
        let mut claims = claims(&verified)?;
        if let Some(Value::Object(fields)) = claims.vendor.get_mut(TeeKind::Nitro.as_str()) {
            fields.insert(
                "carrier_certificate".to_owned(),
                json!({
                    "subject": carrier.cert.parsed().tbs_certificate().subject().to_string(),
                    "public_key_in": bound_in,
                }),
            );
        }
        return Ok(claims);
    }
    if matches!(evidence.first(), Some(0x84 | 0xd2)) {
        let verified = verify_document(evidence, inputs)?;
        return claims(&verified);
    }
    Err(NitroError::UnknownFormat)
}

fn carrier_spki(cert: &Cert) -> Result<Vec<u8>, NitroError> {
    der::Encode::to_der(cert.parsed().tbs_certificate().subject_public_key_info())
        .map_err(|e| NitroError::Carrier(format!("its public key cannot be encoded: {e}")))
}

/// A document whose signature, chain and times verified.
struct Verified {
    doc: document::Document,
    leaf: Cert,
    root_fingerprint: [u8; 32],
    origin: AnchorOrigin,
}

fn verify_document(bytes: &[u8], inputs: &Inputs<'_>) -> Result<Verified, NitroError> {
    let doc = document::parse(bytes)?;
    let payload = &doc.payload;
    let leaf = parse_cert("certificate".to_owned(), &payload.certificate)?;
    // The cabundle is the same in every document of a host: its parse is shared by the exact
    // bytes (the chain is verified below as always). A failure is parsed again one certificate
    // at a time, to name the one that failed.
    let bundle = match Cert::parse_ders_shared(&payload.cabundle) {
        Ok(bundle) => bundle,
        Err(_) => payload
            .cabundle
            .iter()
            .enumerate()
            .map(|(i, der)| parse_cert(format!("cabundle[{i}]"), der))
            .collect::<Result<Vec<_>, _>>()?
            .into(),
    };

    // The root: cabundle[0], pinned or listed by the instance.
    let root = bundle
        .first()
        .ok_or(NitroError::Field { field: "cabundle", reason: "empty".to_owned() })?;
    let root_fingerprint = root.sha256_fingerprint();
    let mut trusted = vec![AWS_NITRO_ROOT_G1_SHA256];
    let anchors = inputs.anchors.roots(TeeKind::Nitro);
    for anchor in anchors.iter().chain(inputs.anchors.test_roots(TeeKind::Nitro)) {
        for cert in Cert::parse_many(anchor).map_err(NitroError::Anchor)? {
            trusted.push(cert.sha256_fingerprint());
        }
    }
    if !trusted.contains(&root_fingerprint) {
        return Err(NitroError::UntrustedRoot {
            subject: root.subject_cn(),
            fingerprint: hex::encode(root_fingerprint),
        });
    }

    // Leaf first, then the bundle from the leaf's issuer back to the root.
    let mut chain = Vec::with_capacity(bundle.len().saturating_add(1));
    chain.push(leaf.clone());
    chain.extend(bundle.iter().rev().cloned());
    verify_chain(&chain, &[root_fingerprint], inputs.now_unix).map_err(NitroError::Chain)?;
    check_certificate_roles(&chain)?;

    // The COSE signature with the leaf's key.
    let key = leaf.public_key().map_err(|e| NitroError::LeafKey(e.to_string()))?;
    match key {
        PublicKey::P384(_) => {}
        PublicKey::P256(_) => return Err(NitroError::LeafKey("it is a P-256 key".to_owned())),
        PublicKey::P521(_) => return Err(NitroError::LeafKey("it is a P-521 key".to_owned())),
        _ => return Err(NitroError::LeafKey("it is not an elliptic-curve key".to_owned())),
    }
    if doc.cose.signature.len() != 96 {
        return Err(NitroError::SignatureLength(doc.cose.signature.len()));
    }
    let signed = doc.cose.tbs_data(&[]);
    key.verify_ecdsa_raw(true, &signed, &doc.cose.signature)
        .map_err(|_| NitroError::BadSignature)?;

    // The document's own time.
    let timestamp_secs = i64::try_from(payload.timestamp_ms / 1000).unwrap_or(i64::MAX);
    if timestamp_secs < leaf.not_before() || timestamp_secs > leaf.not_after() {
        return Err(NitroError::TimestampOutsideCertificate {
            timestamp: timestamp_text(payload.timestamp_ms),
            not_before: rfc3339(leaf.not_before()),
            not_after: rfc3339(leaf.not_after()),
        });
    }
    if timestamp_secs > inputs.now_unix.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(NitroError::TimestampInFuture {
            timestamp: timestamp_text(payload.timestamp_ms),
            now: rfc3339(inputs.now_unix),
            max_skew: MAX_CLOCK_SKEW_SECS,
        });
    }
    let origin =
        inputs.anchors.origin_of(TeeKind::Nitro, &root_fingerprint, &[AWS_NITRO_ROOT_G1_SHA256]);
    Ok(Verified { doc, leaf, root_fingerprint, origin })
}

/// The enclave certificate's role: not a CA, and allowed to sign (digitalSignature when key usage
/// is given). That every issuer above it is a CA allowed to issue at its depth is checked by
/// [`verify_chain`] for every vendor chain; without both, any holder of a certificate under the
/// root could issue an enclave certificate.
fn check_certificate_roles(chain: &[Cert]) -> Result<(), NitroError> {
    use der::Decode as _;
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

    const BASIC_CONSTRAINTS: &str = "2.5.29.19";
    const KEY_USAGE: &str = "2.5.29.15";
    let Some(leaf) = chain.first() else { return Ok(()) };
    let role = |reason: String| NitroError::CertificateRole { subject: leaf.subject_cn(), reason };
    if let Some(raw) = leaf.extension(BASIC_CONSTRAINTS)
        && BasicConstraints::from_der(raw)
            .map_err(|e| role(format!("basicConstraints is malformed: {e}")))?
            .ca
    {
        return Err(role("the enclave certificate is a CA".to_owned()));
    }
    if let Some(raw) = leaf.extension(KEY_USAGE)
        && !KeyUsage::from_der(raw)
            .map_err(|e| role(format!("keyUsage is malformed: {e}")))?
            .digital_signature()
    {
        return Err(role("keyUsage lacks digitalSignature".to_owned()));
    }
    Ok(())
}

fn parse_cert(which: String, der: &[u8]) -> Result<Cert, NitroError> {
    Cert::from_der(der).map_err(|source| NitroError::Certificate { which, source })
}

/// Milliseconds since the epoch as RFC 3339 with milliseconds.
fn timestamp_text(ms: u64) -> String {
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} (unix milliseconds)"))
}

fn claims(verified: &Verified) -> Result<Claims, NitroError> {
    let payload = &verified.doc.payload;
    let pcr = |index: u8| payload.pcrs.get(&index).ok_or(NitroError::MissingPcr(index));
    let (pcr0, pcr1, pcr2) = (pcr(0)?, pcr(1)?, pcr(2)?);
    let is_zero = |bytes: &[u8]| bytes.iter().all(|&b| b == 0);
    let debug = is_zero(pcr0) && is_zero(pcr1) && is_zero(pcr2);
    let signer = payload.pcrs.get(&8).filter(|p| !is_zero(p)).map(|p| Hex(p.clone()));

    let pcrs: serde_json::Map<String, Value> = payload
        .pcrs
        .iter()
        .map(|(index, value)| (index.to_string(), Value::String(hex::encode(value))))
        .collect();
    let optional = |v: &Option<Vec<u8>>| v.as_ref().map_or(Value::Null, |b| hex::encode(b).into());
    let leaf = &verified.leaf;
    let vendor = json!({
        "module_id": payload.module_id,
        "digest": payload.digest,
        "timestamp": payload.timestamp_ms,
        "timestamp_rfc3339": timestamp_text(payload.timestamp_ms),
        "pcrs": pcrs,
        "public_key": optional(&payload.public_key),
        "user_data": optional(&payload.user_data),
        "nonce": optional(&payload.nonce),
        "certificate": {
            "subject": leaf.parsed().tbs_certificate().subject().to_string(),
            "not_before": rfc3339(leaf.not_before()),
            "not_after": rfc3339(leaf.not_after()),
        },
        "root_sha256": hex::encode(verified.root_fingerprint),
        "trust_anchor": verified.origin.as_str(),
    });

    Ok(Claims {
        tee: TeeKind::Nitro,
        measurement: Hex(pcr0.clone()),
        signer,
        product_id: None,
        svn: None,
        debug,
        report_data: Hex(payload.user_data.clone().unwrap_or_default()),
        tcb_status: TcbStatus::Unknown,
        advisories: Vec::new(),
        platform_id: None,
        vendor: BTreeMap::from([(TeeKind::Nitro.as_str().to_owned(), vendor)]),
    })
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let document = if carrier::looks_like_certificate(bytes) {
        match carrier::extract(bytes) {
            Ok(carrier) => carrier.document,
            Err(_) => return,
        }
    } else {
        bytes.to_vec()
    };
    if let Ok(doc) = document::parse(&document) {
        let _ = Cert::from_der(&doc.payload.certificate);
        for der in &doc.payload.cabundle {
            let _ = Cert::from_der(der);
        }
        let _ = doc.cose.tbs_data(&[]);
    }
}
