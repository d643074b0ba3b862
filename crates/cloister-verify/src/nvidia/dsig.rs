//! The XML signature of a RIM (XMLDSig, enveloped): structure, algorithms, signer chain,
//! SignatureValue and Reference digest.
//!
//! NVIDIA signs each RIM with one enveloped `ds:Signature`, a child of `SoftwareIdentity`: one
//! `Reference` with `URI=""` (the whole document) and the transforms enveloped-signature then a
//! canonicalisation, SHA-384 digest, ECDSA P-384/SHA-384 signature (`r || s`, XMLDSig 1.1 /
//! RFC 4050), and the signer's chain in `KeyInfo/X509Data` up to "NVIDIA CoRIM signing Root CA".
//! Checked here, in this order:
//!
//! 1. exactly one `ds:Signature` in the document, a child of the root element; `SignedInfo`,
//!    `SignatureValue`, `KeyInfo` (then any `Object`) in that order;
//! 2. the algorithms: canonicalisation Canonical XML 1.0 or 1.1 or Exclusive XML
//!    Canonicalization, with or without comments; signature ECDSA with SHA-256 or SHA-384;
//!    digest SHA-256, SHA-384 or SHA-512. Anything else (SHA-1, RSA, XPath or XSLT
//!    transforms, …) is refused by name;
//! 3. exactly one `Reference`, to `URI=""`, whose transforms are enveloped-signature optionally
//!    followed by one canonicalisation (without one, Canonical XML 1.0 applies, as XMLDSig
//!    says for a node-set). Any other reference could leave the measurements unsigned;
//! 4. the `KeyInfo` certificates form one chain from the signer up to a root whose SHA-256
//!    fingerprint is pinned (NVIDIA's RIM signing root) or named as a test root by the
//!    instance; a chain that stops below its root is completed with a test root whose subject
//!    is its issuer. Every certificate is valid at the verification time and every issuer is a
//!    CA ([`verify_chain`]); the signer's keyUsage, when present, allows digitalSignature;
//! 5. `SignatureValue` verifies over the canonical `SignedInfo` with the signer's key;
//! 6. the Reference's digest over the canonical document without the `Signature` element (and
//!    without comments, as a same-document reference has it) equals its `DigestValue`.

use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq as _;

use super::c14n::{self, Algorithm, NodeSet};
use super::xml::{Document, Element, NodeId, NodeKind};
use crate::x509::{Cert, CertError, PublicKey, verify_chain};

/// The XMLDSig namespace.
pub(crate) const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The namespace of Exclusive XML Canonicalization's `InclusiveNamespaces`.
const EXC_C14N_NS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The enveloped-signature transform.
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// SHA-256 fingerprint of NVIDIA's RIM signing root, subject `CN=NVIDIA CoRIM signing Root CA,
/// O=NVIDIA, C=US` (P-384, valid 2023-03-16 to 2053-03-08), as the RIMs' `KeyInfo` carries it.
pub(crate) const NVIDIA_RIM_ROOT_SHA256: [u8; 32] = [
    0x12, 0x97, 0x7b, 0x51, 0x15, 0xac, 0xb0, 0x38, 0x11, 0x79, 0x27, 0x9f, 0xff, 0xeb, 0x5a, 0x8c,
    0x4d, 0x26, 0x49, 0x71, 0xeb, 0xb3, 0x22, 0x98, 0x02, 0x3a, 0x46, 0x5f, 0xa4, 0x1d, 0xf5, 0xd1,
];

/// Why a RIM's XML signature does not verify. Every variant refuses the RIM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RimSignatureError {
    /// The RIM carries no signature.
    #[error("the RIM is unsigned: it has no ds:Signature element")]
    Unsigned,
    /// More than one signature: which one covers the measurements would be ambiguous.
    #[error("the RIM has {0} ds:Signature elements; exactly one is accepted")]
    SignatureCount(usize),
    /// The signature is not a child of the root element.
    #[error(
        "the ds:Signature element is not a child of SoftwareIdentity (not an enveloped signature)"
    )]
    NotEnveloped,
    /// The signature's structure is not what XMLDSig prescribes.
    #[error("the ds:Signature element is malformed: {0}")]
    Malformed(String),
    /// An algorithm this verifier does not accept.
    #[error("{what} algorithm {uri:?} is not accepted (accepted: {accepted})")]
    UnsupportedAlgorithm {
        /// Which algorithm (`CanonicalizationMethod`, `SignatureMethod`, …).
        what: &'static str,
        /// Its identifier.
        uri: String,
        /// What is accepted instead.
        accepted: &'static str,
    },
    /// Not exactly one Reference.
    #[error(
        "the signature has {0} References; a RIM's must have exactly one, to the whole document \
         (URI=\"\")"
    )]
    ReferenceCount(usize),
    /// The Reference is to something else than the whole document.
    #[error(
        "the signature's Reference is to {0}; a RIM's must cover the whole document (URI=\"\")"
    )]
    ReferenceUri(String),
    /// The Reference's transforms are not enveloped-signature and a canonicalisation.
    #[error(
        "the Reference's transforms are [{0}]; a RIM's must be the enveloped-signature transform, \
         optionally followed by one canonicalisation"
    )]
    Transforms(String),
    /// No signer certificate in KeyInfo.
    #[error(
        "the signature's KeyInfo carries no X509Data/X509Certificate, so the signer is unknown"
    )]
    NoCertificates,
    /// A KeyInfo certificate does not parse.
    #[error("KeyInfo certificate {index} is not an X.509 certificate: {source}")]
    Certificate {
        /// Its position among the KeyInfo certificates.
        index: usize,
        /// Why.
        #[source]
        source: CertError,
    },
    /// The KeyInfo certificates are not one chain.
    #[error("the KeyInfo certificates are not one signer chain: {0}")]
    ChainShape(String),
    /// The signer chain does not verify.
    #[error("signer certificate chain does not verify: {0}")]
    Chain(#[source] CertError),
    /// The signer's key or key usage does not allow this signature.
    #[error("signer certificate {subject} cannot make this signature: {reason}")]
    SignerKey {
        /// The signer's subject CN.
        subject: String,
        /// Why.
        reason: String,
    },
    /// The SignatureValue does not verify.
    #[error(
        "SignatureValue check failed: the signature over the canonical SignedInfo does not verify \
         with the key of {signer}"
    )]
    BadSignature {
        /// The signer's subject CN.
        signer: String,
    },
    /// The signed content does not hash to the Reference's DigestValue.
    #[error(
        "Reference digest check failed: the {algorithm} digest of the canonical document is \
         {actual}, the signature's DigestValue is {expected}; the RIM was changed after it was \
         signed"
    )]
    DigestMismatch {
        /// The digest algorithm.
        algorithm: &'static str,
        /// The computed digest, hex.
        actual: String,
        /// The signed digest, hex.
        expected: String,
    },
    /// The document cannot be canonicalised.
    #[error("the RIM cannot be canonicalised: {0}")]
    Canonicalization(String),
}

/// Which root a RIM's signer chain ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RimRoot {
    /// NVIDIA's pinned RIM signing root.
    Nvidia,
    /// A root the instance named as a RIM test root.
    Test,
}

impl RimRoot {
    /// The name in the claims.
    pub(crate) fn name(self) -> &'static str {
        match self {
            RimRoot::Nvidia => "nvidia",
            RimRoot::Test => "test",
        }
    }
}

/// A verified signature: the signer's chain (signer first) and its root.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// Signer first, root last.
    pub(crate) chain: Vec<Cert>,
    /// Which root.
    pub(crate) root: RimRoot,
}

/// The trust a RIM signature is checked against.
pub(crate) struct RimTrust {
    /// Roots named as test roots by the instance.
    pub(crate) test_roots: Vec<Cert>,
    /// The verification time, unix seconds.
    pub(crate) now_unix: i64,
}

/// Signature algorithms accepted (ECDSA; whether the hash is SHA-384).
fn signature_method(uri: &str) -> Result<bool, RimSignatureError> {
    match uri {
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => Ok(true),
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => Ok(false),
        _ => Err(RimSignatureError::UnsupportedAlgorithm {
            what: "SignatureMethod",
            uri: uri.to_owned(),
            accepted: "ECDSA with SHA-384 or SHA-256",
        }),
    }
}

#[derive(Debug, Clone, Copy)]
enum DigestAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    fn from_uri(uri: &str) -> Result<Self, RimSignatureError> {
        match uri {
            "http://www.w3.org/2001/04/xmlenc#sha256" => Ok(Self::Sha256),
            "http://www.w3.org/2001/04/xmldsig-more#sha384" => Ok(Self::Sha384),
            "http://www.w3.org/2001/04/xmlenc#sha512" => Ok(Self::Sha512),
            _ => Err(RimSignatureError::UnsupportedAlgorithm {
                what: "DigestMethod",
                uri: uri.to_owned(),
                accepted: "SHA-256, SHA-384 or SHA-512; SHA-1 is too weak",
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha384 => Sha384::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// What `SignedInfo` says, read and checked for structure and algorithms.
struct SignedInfo {
    id: NodeId,
    canonicalization: Algorithm,
    sha384: bool,
    reference_c14n: Algorithm,
    digest: DigestAlgorithm,
    digest_value: Vec<u8>,
}

/// Verifies the RIM's enveloped signature (see the module documentation for the checks).
pub(crate) fn verify(doc: &Document, trust: &RimTrust) -> Result<Signed, RimSignatureError> {
    let signatures: Vec<NodeId> =
        doc.elements().filter(|(_, e)| e.is(DS_NS, "Signature")).map(|(id, _)| id).collect();
    let signature = match signatures.as_slice() {
        [] => return Err(RimSignatureError::Unsigned),
        [one] => *one,
        many => return Err(RimSignatureError::SignatureCount(many.len())),
    };
    if doc.nodes.get(signature).and_then(|n| n.parent) != Some(doc.root) {
        return Err(RimSignatureError::NotEnveloped);
    }
    let parts = ds_children(doc, signature, "Signature")?;
    let names: Vec<&str> = parts.iter().map(|(_, e)| e.local.as_str()).collect();
    let objects = names.iter().skip(3).all(|n| *n == "Object");
    if names.get(..3) != Some(&["SignedInfo", "SignatureValue", "KeyInfo"]) || !objects {
        return Err(RimSignatureError::Malformed(format!(
            "its children are [{}]; expected SignedInfo, SignatureValue, KeyInfo, then any Object",
            names.join(", ")
        )));
    }
    let (signed_info_id, signature_value_id, key_info_id) = (parts[0].0, parts[1].0, parts[2].0);
    let signed_info = signed_info(doc, signed_info_id)?;
    let signature_value = base64_text(doc, signature_value_id, "SignatureValue")?;

    // The signer and its chain.
    let certificates = key_info_certificates(doc, key_info_id)?;
    let (chain, root) = signer_chain(certificates, trust)?;
    let signer = chain.first().ok_or(RimSignatureError::NoCertificates)?;
    signer.check_may_sign_data().map_err(|e| RimSignatureError::SignerKey {
        subject: signer.subject_cn(),
        reason: e.to_string(),
    })?;
    let key = signer.public_key().map_err(|e| RimSignatureError::SignerKey {
        subject: signer.subject_cn(),
        reason: e.to_string(),
    })?;
    let size = match key {
        PublicKey::P384(_) => 96,
        PublicKey::P256(_) => 64,
        // NVIDIA signs RIMs with P-384; X.509 chains of P-521 keys are not supported either.
        PublicKey::P521(_) => {
            return Err(RimSignatureError::SignerKey {
                subject: signer.subject_cn(),
                reason: "a P-521 key is not supported for RIM signatures (P-256 or P-384)".into(),
            });
        }
        PublicKey::Rsa(_) => {
            return Err(RimSignatureError::SignerKey {
                subject: signer.subject_cn(),
                reason: "an RSA key cannot verify an ECDSA signature".into(),
            });
        }
    };
    if signature_value.len() != size {
        return Err(RimSignatureError::Malformed(format!(
            "SignatureValue is {} bytes; ECDSA with the signer's key is {size} bytes (r || s)",
            signature_value.len()
        )));
    }

    // SignatureValue over the canonical SignedInfo.
    let canonical_signed_info =
        c14n::canonicalize(doc, NodeSet::Subtree(signed_info.id), &signed_info.canonicalization)
            .map_err(RimSignatureError::Canonicalization)?;
    key.verify_ecdsa_raw(signed_info.sha384, &canonical_signed_info, &signature_value)
        .map_err(|_| RimSignatureError::BadSignature { signer: signer.subject_cn() })?;

    // The Reference's digest over the document without its signature.
    let canonical_document = c14n::canonicalize(
        doc,
        NodeSet::Document { omit: Some(signature) },
        &signed_info.reference_c14n,
    )
    .map_err(RimSignatureError::Canonicalization)?;
    let actual = signed_info.digest.digest(&canonical_document);
    if !bool::from(actual.ct_eq(&signed_info.digest_value)) {
        return Err(RimSignatureError::DigestMismatch {
            algorithm: signed_info.digest.name(),
            actual: hex::encode(actual),
            expected: hex::encode(&signed_info.digest_value),
        });
    }
    Ok(Signed { chain, root })
}

/// The element children of a ds element, all in the ds namespace; text other than white space
/// is refused.
fn ds_children<'d>(
    doc: &'d Document,
    id: NodeId,
    what: &str,
) -> Result<Vec<(NodeId, &'d Element)>, RimSignatureError> {
    let element = doc.element(id).ok_or_else(|| malformed(format!("{what} is not an element")))?;
    let mut out = Vec::new();
    for &child in &element.children {
        match doc.nodes.get(child).map(|n| &n.kind) {
            Some(NodeKind::Element(e)) if e.namespace == DS_NS => out.push((child, e)),
            Some(NodeKind::Element(e)) => {
                return Err(malformed(format!(
                    "{what} contains {{{}}}{}, which is not an XMLDSig element",
                    e.namespace, e.local
                )));
            }
            Some(NodeKind::Text(t)) if !t.trim().is_empty() => {
                return Err(malformed(format!("{what} contains text")));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn malformed(reason: String) -> RimSignatureError {
    RimSignatureError::Malformed(reason)
}

fn algorithm_attribute(element: &Element) -> Result<&str, RimSignatureError> {
    element
        .attribute("", "Algorithm")
        .ok_or_else(|| malformed(format!("{} has no Algorithm attribute", element.local)))
}

/// A canonicalisation method element (`CanonicalizationMethod` or a `Transform`), with the
/// exclusive algorithms' `InclusiveNamespaces` prefix list.
fn c14n_method(
    doc: &Document,
    id: NodeId,
    what: &'static str,
) -> Result<Algorithm, RimSignatureError> {
    let element = doc.element(id).ok_or_else(|| malformed(format!("{what} is not an element")))?;
    let uri = algorithm_attribute(element)?;
    let mut algorithm =
        Algorithm::from_uri(uri).ok_or_else(|| RimSignatureError::UnsupportedAlgorithm {
            what,
            uri: uri.to_owned(),
            accepted: "Canonical XML 1.0 or 1.1, Exclusive XML Canonicalization 1.0",
        })?;
    let children: Vec<&Element> = doc.child_elements(id).map(|(_, e)| e).collect();
    match (&mut algorithm, children.as_slice()) {
        (_, []) => {}
        (Algorithm::Exclusive { inclusive_prefixes, .. }, [list])
            if list.is(EXC_C14N_NS, "InclusiveNamespaces") =>
        {
            let prefixes = list.attribute("", "PrefixList").ok_or_else(|| {
                malformed("InclusiveNamespaces has no PrefixList attribute".into())
            })?;
            *inclusive_prefixes = prefixes
                .split_ascii_whitespace()
                .map(|p| if p == "#default" { String::new() } else { p.to_owned() })
                .collect();
        }
        _ => {
            return Err(malformed(format!("{what} {uri} has unexpected child elements")));
        }
    }
    Ok(algorithm)
}

fn signed_info(doc: &Document, id: NodeId) -> Result<SignedInfo, RimSignatureError> {
    let children = ds_children(doc, id, "SignedInfo")?;
    let names: Vec<&str> = children.iter().map(|(_, e)| e.local.as_str()).collect();
    let references = names.iter().skip(2).filter(|n| **n == "Reference").count();
    if names.get(..2) != Some(&["CanonicalizationMethod", "SignatureMethod"])
        || references != names.len().saturating_sub(2)
    {
        return Err(malformed(format!(
            "SignedInfo's children are [{}]; expected CanonicalizationMethod, SignatureMethod, \
             Reference…",
            names.join(", ")
        )));
    }
    if references != 1 {
        return Err(RimSignatureError::ReferenceCount(references));
    }
    let canonicalization = c14n_method(doc, children[0].0, "CanonicalizationMethod")?;
    let signature_method_element = children[1].1;
    let sha384 = signature_method(algorithm_attribute(signature_method_element)?)?;
    if doc.child_elements(children[1].0).next().is_some() {
        return Err(malformed("SignatureMethod has child elements".into()));
    }

    // The one Reference.
    let (reference_id, reference) = children[2];
    let uri = reference.attribute("", "URI").map(str::to_owned);
    if uri.as_deref() != Some("") {
        return Err(RimSignatureError::ReferenceUri(match uri {
            Some(uri) => format!("URI {uri:?}"),
            None => "no URI (an application-defined object)".into(),
        }));
    }
    let parts = ds_children(doc, reference_id, "Reference")?;
    let names: Vec<&str> = parts.iter().map(|(_, e)| e.local.as_str()).collect();
    let (transforms, digest_method, digest_value) = match names.as_slice() {
        ["Transforms", "DigestMethod", "DigestValue"] => (Some(parts[0].0), parts[1], parts[2].0),
        ["DigestMethod", "DigestValue"] => (None, parts[0], parts[1].0),
        _ => {
            return Err(malformed(format!(
                "Reference's children are [{}]; expected Transforms, DigestMethod, DigestValue",
                names.join(", ")
            )));
        }
    };
    let reference_c14n = reference_transforms(doc, transforms)?;
    let digest = DigestAlgorithm::from_uri(algorithm_attribute(digest_method.1)?)?;
    let digest_value = base64_text(doc, digest_value, "DigestValue")?;
    Ok(SignedInfo { id, canonicalization, sha384, reference_c14n, digest, digest_value })
}

/// The canonicalisation a `URI=""` Reference's transforms end with: enveloped-signature first,
/// then at most one canonicalisation (Canonical XML 1.0 without comments when none).
fn reference_transforms(
    doc: &Document,
    transforms: Option<NodeId>,
) -> Result<Algorithm, RimSignatureError> {
    let list: Vec<(NodeId, &Element)> = match transforms {
        Some(id) => ds_children(doc, id, "Transforms")?,
        None => Vec::new(),
    };
    let mut uris = Vec::new();
    for (_, transform) in &list {
        if transform.local != "Transform" {
            return Err(malformed(format!("Transforms contains {}", transform.local)));
        }
        uris.push(algorithm_attribute(transform)?.to_owned());
    }
    match list.as_slice() {
        [(enveloped, _)] if uris[0] == ENVELOPED => {
            if doc.child_elements(*enveloped).next().is_some() {
                return Err(malformed("the enveloped-signature Transform has children".into()));
            }
            Ok(Algorithm::Inclusive10 { comments: false })
        }
        [(enveloped, _), (c14n_id, _)] if uris[0] == ENVELOPED => {
            if doc.child_elements(*enveloped).next().is_some() {
                return Err(malformed("the enveloped-signature Transform has children".into()));
            }
            let algorithm = c14n_method(doc, *c14n_id, "Transform")?;
            Ok(algorithm)
        }
        _ => Err(RimSignatureError::Transforms(uris.join(", "))),
    }
}

/// The base64 content of a ds element (white space allowed between characters).
fn base64_text(doc: &Document, id: NodeId, what: &str) -> Result<Vec<u8>, RimSignatureError> {
    if doc.child_elements(id).next().is_some() {
        return Err(malformed(format!("{what} has child elements")));
    }
    let text: String = doc.text(id).chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| malformed(format!("{what} is not base64: {e}")))
}

/// Every `KeyInfo/X509Data/X509Certificate`, in order. Other `KeyInfo` and `X509Data` content
/// (key names, issuer serials, …) does not name the key: the chain does.
fn key_info_certificates(doc: &Document, key_info: NodeId) -> Result<Vec<Cert>, RimSignatureError> {
    let mut out = Vec::new();
    for (data_id, data) in doc.child_elements(key_info) {
        if !data.is(DS_NS, "X509Data") {
            continue;
        }
        for (cert_id, cert) in doc.child_elements(data_id) {
            if !cert.is(DS_NS, "X509Certificate") {
                continue;
            }
            let der = base64_text(doc, cert_id, "X509Certificate")?;
            let index = out.len();
            out.push(
                Cert::from_der(&der)
                    .map_err(|source| RimSignatureError::Certificate { index, source })?,
            );
        }
    }
    if out.is_empty() {
        return Err(RimSignatureError::NoCertificates);
    }
    Ok(out)
}

/// Orders the KeyInfo certificates into one chain, signer first, completes it with a test root
/// when it stops below its root, and verifies it to a pinned or test root.
fn signer_chain(
    certificates: Vec<Cert>,
    trust: &RimTrust,
) -> Result<(Vec<Cert>, RimRoot), RimSignatureError> {
    let issues = |issuer: &Cert, issued: &Cert| {
        issued.parsed().tbs_certificate().issuer() == issuer.parsed().tbs_certificate().subject()
    };
    // The signer issued none of the others.
    let signers: Vec<usize> = (0..certificates.len())
        .filter(|&i| {
            !certificates
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && issues(&certificates[i], other))
        })
        .collect();
    let signer = match signers.as_slice() {
        [one] => *one,
        [] => {
            return Err(RimSignatureError::ChainShape(
                "no certificate is a signer (every one issued another)".into(),
            ));
        }
        many => {
            return Err(RimSignatureError::ChainShape(format!(
                "{} certificates issued none of the others ({}); KeyInfo must hold one chain",
                many.len(),
                many.iter().map(|&i| certificates[i].subject_cn()).collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let mut remaining = certificates;
    let mut chain = vec![remaining.remove(signer)];
    while let Some(last) = chain.last() {
        if last.is_self_issued() {
            break;
        }
        if let Some(next) = remaining.iter().position(|c| issues(c, last)) {
            let next = remaining.remove(next);
            chain.push(next);
        } else {
            if let Some(root) = trust.test_roots.iter().find(|r| issues(r, last)) {
                chain.push(root.clone());
            }
            break;
        }
    }
    if let Some(stray) = remaining.first() {
        return Err(RimSignatureError::ChainShape(format!(
            "{} is not in the signer's chain",
            stray.subject_cn()
        )));
    }
    if chain.len() < 2 {
        return Err(RimSignatureError::ChainShape(
            "the signer is its own root; a RIM is signed by a certificate below the root".into(),
        ));
    }
    let mut pinned = vec![NVIDIA_RIM_ROOT_SHA256];
    pinned.extend(trust.test_roots.iter().map(Cert::sha256_fingerprint));
    verify_chain(&chain, &pinned, trust.now_unix).map_err(RimSignatureError::Chain)?;
    let top = chain.last().map(Cert::sha256_fingerprint).unwrap_or_default();
    let root = if top == NVIDIA_RIM_ROOT_SHA256 { RimRoot::Nvidia } else { RimRoot::Test };
    Ok((chain, root))
}
