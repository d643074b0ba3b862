//! SWID tag RIMs signed with test keys: an enveloped XMLDSig signature (ECDSA P-384/SHA-384)
//! made the way NVIDIA makes theirs, with options to break one part of it at a time.

use base64::Engine as _;
use sha2::Digest as _;

use super::pki::{Role, TestCa};

/// Canonical XML 1.1, what NVIDIA's RIMs use.
pub(crate) const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
/// Exclusive XML Canonicalization 1.0.
pub(crate) const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
const SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";

/// How to sign; [`SignOptions::new`] is a correct NVIDIA-style signature.
#[derive(Clone, Debug)]
pub(crate) struct SignOptions {
    /// The canonicalisation of SignedInfo and of the Reference.
    pub(crate) c14n: String,
    /// SignatureMethod.
    pub(crate) signature_method: String,
    /// DigestMethod.
    pub(crate) digest_method: String,
    /// The Reference's URI (None: no URI attribute).
    pub(crate) reference_uri: Option<String>,
    /// The Reference's transforms.
    pub(crate) transforms: Vec<String>,
    /// A second Reference (a copy of the first).
    pub(crate) extra_reference: bool,
    /// Sign a DigestValue that is not the document's.
    pub(crate) wrong_digest: bool,
}

impl SignOptions {
    pub(crate) fn new(c14n: &str) -> Self {
        Self {
            c14n: c14n.to_owned(),
            signature_method: ECDSA_SHA384.to_owned(),
            digest_method: SHA384.to_owned(),
            reference_uri: Some(String::new()),
            transforms: vec![ENVELOPED.to_owned(), c14n.to_owned()],
            extra_reference: false,
            wrong_digest: false,
        }
    }
}

/// A RIM signing hierarchy: root, CA, signer (the signer may sign data only).
pub(crate) struct RimPki {
    pub(crate) root: TestCa,
    pub(crate) ca: TestCa,
    pub(crate) signer: TestCa,
}

impl RimPki {
    /// Every certificate valid from `from` to `until` (unix seconds).
    pub(crate) fn new(from: i64, until: i64) -> Self {
        let root = TestCa::root("Test CoRIM signing Root CA", from, until);
        let ca = root.issue("Test Reference Value CA", Role::CaPathLen(0), from, until);
        let signer = ca.issue("Test RIM Signer", Role::Leaf, from, until);
        Self { root, ca, signer }
    }

    /// The root certificate (DER), for `TrustAnchors::with_nvidia_rim_test_root`.
    pub(crate) fn root_der(&self) -> Vec<u8> {
        self.root.der.clone()
    }

    /// `unsigned` (a SWID tag without a signature) with a correct enveloped signature.
    pub(crate) fn sign(&self, unsigned: &str, c14n: &str) -> String {
        self.sign_with(unsigned, &SignOptions::new(c14n))
    }

    /// `unsigned` signed as `options` say, the chain signer first in KeyInfo.
    pub(crate) fn sign_with(&self, unsigned: &str, options: &SignOptions) -> String {
        sign(unsigned, options, &self.signer, &[&self.signer, &self.ca, &self.root])
    }
}

/// Signs `unsigned` with `key`, putting `chain` in KeyInfo.
pub(crate) fn sign(
    unsigned: &str,
    options: &SignOptions,
    key: &TestCa,
    chain: &[&TestCa],
) -> String {
    let transforms: String =
        options.transforms.iter().map(|t| format!(r#"<ds:Transform Algorithm="{t}"/>"#)).collect();
    let uri = match &options.reference_uri {
        Some(uri) => format!(r#" URI="{uri}""#),
        None => String::new(),
    };
    let reference = format!(
        r#"<ds:Reference{uri}><ds:Transforms>{transforms}</ds:Transforms><ds:DigestMethod Algorithm="{}"/><ds:DigestValue>@DIGEST@</ds:DigestValue></ds:Reference>"#,
        options.digest_method
    );
    let references =
        if options.extra_reference { format!("{reference}{reference}") } else { reference };
    let certificates: String = chain
        .iter()
        .map(|c| {
            format!(
                "<ds:X509Certificate>{}</ds:X509Certificate>",
                base64::engine::general_purpose::STANDARD.encode(&c.der)
            )
        })
        .collect();
    let signature = format!(
        r#"<ds:Signature xmlns:ds="{DS}"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="{}"/><ds:SignatureMethod Algorithm="{}"/>{references}</ds:SignedInfo><ds:SignatureValue>@SIGNATURE@</ds:SignatureValue><ds:KeyInfo><ds:X509Data>{certificates}</ds:X509Data></ds:KeyInfo></ds:Signature>"#,
        options.c14n, options.signature_method
    );
    let end = unsigned.rfind("</SoftwareIdentity>").unwrap();
    let doc = format!("{}{signature}{}", &unsigned[..end], &unsigned[end..]);
    let canonical =
        cloister_verify::internal::canonical_rim(doc.as_bytes(), false, &options.c14n).unwrap();
    let mut digest = sha2::Sha384::digest(&canonical).to_vec();
    if options.wrong_digest {
        digest[0] ^= 1;
    }
    let doc = doc.replace("@DIGEST@", &base64::engine::general_purpose::STANDARD.encode(digest));
    let signed_info =
        cloister_verify::internal::canonical_rim(doc.as_bytes(), true, &options.c14n).unwrap();
    let value = key.sign_raw(&signed_info);
    doc.replace("@SIGNATURE@", &base64::engine::general_purpose::STANDARD.encode(value))
}

/// A signed RIM with its `ds:Signature` element removed.
pub(crate) fn strip_signature(signed: &str) -> String {
    let start = signed.find("<ds:Signature").unwrap();
    let end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    format!("{}{}", &signed[..start], &signed[end..])
}
