//! AWS Nitro Enclaves attestation documents: the three real vectors, golden claims, and one
//! negative test per check of the nitro driver.

#![allow(clippy::unwrap_used)]

mod common;

use ciborium::Value;
use cloister_types::{Claims, TcbStatus, TeeKind};
use cloister_verify::nitro::{AWS_NITRO_ROOT_G1_SHA256, NitroError, carrier, document};
use cloister_verify::x509::{Cert, CertError};
use cloister_verify::{Collateral, Inputs, TrustAnchors, VerifyError, verify_vendor_evidence};
use common::{assert_golden, at, vector};
use coset::{CborSerializable as _, CoseSign1, TaggedCborSerializable as _, iana};

const VALID: &str = "nitro/evervault_beta_valid-attestation-doc-bytes";
const VALID_AT: &str = "2022-10-13T08:58:02Z";
const DEBUG: &str = "nitro/evervault_beta_debug-mode-attestation-doc-bytes";
const DEBUG_AT: &str = "2022-10-12T13:50:06Z";
const CARRIER: &str =
    "nitro/evervault_beta_non-debug-cert-containing-attestation-document-18-1-23-der.crt";
const CARRIER_AT: i64 = 1_674_054_914;
const ROOT_PEM: &str = "nitro/AWS_NitroEnclaves_Root-G1.pem";

fn verify_with(
    evidence: &[u8],
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<Claims, NitroError> {
    let collateral = Collateral::default();
    let inputs = Inputs { collateral: &collateral, anchors, now_unix };
    match verify_vendor_evidence(TeeKind::Nitro, evidence, &inputs) {
        Ok(claims) => Ok(claims),
        Err(VerifyError::Nitro(e)) => Err(e),
        Err(other) => panic!("not a nitro error: {other}"),
    }
}

fn verify(evidence: &[u8], now_unix: i64) -> Result<Claims, NitroError> {
    verify_with(evidence, &TrustAnchors::new(), now_unix)
}

fn nitro_fields(claims: &Claims) -> &serde_json::Value {
    assert_eq!(claims.vendor.len(), 1);
    &claims.vendor["nitro"]
}

fn pcr(claims: &Claims, index: u8) -> String {
    nitro_fields(claims)["pcrs"][index.to_string()].as_str().unwrap().to_owned()
}

/// Decodes the document, lets `edit` change the payload map, and re-encodes it (the signature
/// no longer matches, so only checks made before the signature are reachable).
fn edit_payload(doc: &[u8], edit: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let mut cose = CoseSign1::from_slice(doc).unwrap();
    let payload: Value = ciborium::de::from_reader(cose.payload.as_deref().unwrap()).unwrap();
    let Value::Map(mut entries) = payload else { panic!("payload is not a map") };
    edit(&mut entries);
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&Value::Map(entries), &mut bytes).unwrap();
    cose.payload = Some(bytes);
    cose.to_vec().unwrap()
}

fn field_mut<'a>(entries: &'a mut [(Value, Value)], name: &str) -> &'a mut Value {
    &mut entries.iter_mut().find(|(k, _)| k.as_text() == Some(name)).unwrap().1
}

fn cabundle_mut(entries: &mut [(Value, Value)]) -> &mut Vec<Value> {
    match field_mut(entries, "cabundle") {
        Value::Array(items) => items,
        _ => panic!("cabundle is not an array"),
    }
}

fn aws_root() -> Cert {
    Cert::parse_many(&vector(ROOT_PEM)).unwrap().remove(0)
}

fn nvidia_root_der() -> Vec<u8> {
    Cert::parse_many(&vector("nvidia/nvidia_device_root.pem")).unwrap().remove(0).der().to_vec()
}

// ---------------------------------------------------------------------------------------------
// The vectors

#[test]
fn pinned_fingerprint_is_the_aws_root_g1() {
    let root = aws_root();
    assert_eq!(root.subject_cn(), "aws.nitro-enclaves");
    assert_eq!(root.sha256_fingerprint(), AWS_NITRO_ROOT_G1_SHA256);
}

#[test]
fn valid_document_verifies_at_its_timestamp() {
    let claims = verify(&vector(VALID), at(VALID_AT)).unwrap();
    assert_eq!(claims.tee, TeeKind::Nitro);
    assert_eq!(
        claims.measurement.to_string(),
        "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b"
    );
    assert_eq!(pcr(&claims, 0), claims.measurement.to_string());
    assert_eq!(
        pcr(&claims, 1),
        "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f"
    );
    assert_eq!(
        pcr(&claims, 2),
        "d8f114da658de5481f8d9ec73907feb553560787522f705c92d7d96beed8e15e2aa611984e098c576832c292e8dc469a"
    );
    let pcr8 = "8790eb3cce6c83d07e84b126dc61ca923333d6f66615c4a79157de48c5ab2418bdc60746ea7b7afbff03a1c6210201cb";
    assert_eq!(pcr(&claims, 8), pcr8);
    assert_eq!(claims.signer.as_ref().unwrap().to_string(), pcr8);
    assert!(!claims.debug);
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert!(claims.advisories.is_empty());
    assert_eq!(claims.platform_id, None);
    let fields = nitro_fields(&claims);
    assert_eq!(fields["digest"], "SHA384");
    assert_eq!(fields["root_sha256"], hex::encode(AWS_NITRO_ROOT_G1_SHA256));
    assert!(fields["timestamp_rfc3339"].as_str().unwrap().starts_with("2022-10-13T08:58:02"));
    assert_golden("nitro_valid", &claims);
}

#[test]
fn tagged_document_verifies_too() {
    // COSE_Sign1 with its CBOR tag 18 (0xd2) in front.
    let mut tagged = vec![0xd2];
    tagged.extend(vector(VALID));
    let claims = verify(&tagged, at(VALID_AT)).unwrap();
    assert_eq!(claims, verify(&vector(VALID), at(VALID_AT)).unwrap());
    // Tag 18 is the only tag accepted.
    let mut wrong_tag = vec![0xd1];
    wrong_tag.extend(vector(VALID));
    assert!(matches!(verify(&wrong_tag, at(VALID_AT)), Err(NitroError::UnknownFormat)));
}

#[test]
fn debug_mode_document_has_zero_pcrs_and_user_data() {
    let claims = verify(&vector(DEBUG), at(DEBUG_AT)).unwrap();
    assert!(claims.debug);
    assert_eq!(claims.measurement.as_bytes(), &[0u8; 48]);
    assert_eq!(claims.signer, None);
    assert_eq!(claims.report_data.as_bytes(), b"hello, world!");
    let fields = nitro_fields(&claims);
    assert_eq!(fields["user_data"], hex::encode(b"hello, world!"));
    assert_eq!(fields["public_key"].as_str().unwrap().len(), 2 * 19);
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
    assert_golden("nitro_debug", &claims);
}

#[test]
fn certificate_carrying_a_document_verifies_and_binds_its_key() {
    let der = vector(CARRIER);
    let claims = verify(&der, CARRIER_AT).unwrap();
    assert_eq!(
        claims.measurement.to_string(),
        "d265a83faa7b4fa0d73b82b6d06253e894445922937d0ee5a74fe4891da9817611a71e71b98e5329232902de3cf419af"
    );
    assert_eq!(
        pcr(&claims, 1),
        "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f"
    );
    assert_eq!(
        pcr(&claims, 2),
        "e4f634d24ad83b7f6e49fe283bafdb220f6252fb4a278a858e19d15b7cd0f263b9168ed0bacefb4444266df9f9a77f24"
    );
    let pcr8 = "97c5395a83c0d6a04d53ff962663c714c178c24500bf97f78456ed3721d922cf3f940614da4bb90107c439bc4a1443ca";
    assert_eq!(claims.signer.as_ref().unwrap().to_string(), pcr8);
    assert!(!claims.debug);
    let fields = nitro_fields(&claims);
    assert_eq!(fields["carrier_certificate"]["public_key_in"], "user_data");
    // user_data is the TLS certificate's SubjectPublicKeyInfo (Evervault's binding), so the
    // report_data claim is that SPKI (120 bytes), which the unified binding check would refuse.
    assert_eq!(claims.report_data.as_bytes().len(), 120);
    assert_golden("nitro_carrier_certificate", &claims);

    // The document extracted from the certificate verifies on its own, with the same claims
    // but for the carrier fields.
    let extracted = carrier::extract(&der).unwrap();
    let bare = verify(&extracted.document, CARRIER_AT).unwrap();
    assert_eq!(bare.measurement, claims.measurement);
    assert!(nitro_fields(&bare).get("carrier_certificate").is_none());
}

#[test]
fn aws_root_as_an_explicit_anchor_changes_nothing() {
    let anchors = TrustAnchors::new().with_root(TeeKind::Nitro, vector(ROOT_PEM));
    let claims = verify_with(&vector(VALID), &anchors, at(VALID_AT)).unwrap();
    assert_eq!(claims, verify(&vector(VALID), at(VALID_AT)).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[test]
fn flipped_payload_byte_breaks_the_signature() {
    let mut doc = vector(VALID);
    let at_module_id = doc.windows(9).position(|w| w == b"i-020b6af").unwrap();
    doc[at_module_id + 2] = b'1'; // still a valid text string
    let err = verify(&doc, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::BadSignature), "{err}");
    assert_eq!(
        err.to_string(),
        "nitro: COSE signature does not verify with the enclave certificate"
    );
}

#[test]
fn flipped_signature_byte_breaks_the_signature() {
    let mut doc = vector(VALID);
    let last = doc.len() - 40;
    doc[last] ^= 0x01;
    let err = verify(&doc, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::BadSignature), "{err}");
}

#[test]
fn signature_of_the_wrong_length_is_refused() {
    let mut cose = CoseSign1::from_slice(&vector(VALID)).unwrap();
    cose.signature.pop();
    let err = verify(&cose.to_vec().unwrap(), at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::SignatureLength(95)), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Certificates and time

fn leaf_validity(claims: &Claims) -> (String, i64, i64) {
    let cert = &nitro_fields(claims)["certificate"];
    let subject = cert["subject"].as_str().unwrap().to_owned();
    (subject, at(cert["not_before"].as_str().unwrap()), at(cert["not_after"].as_str().unwrap()))
}

#[test]
fn one_second_after_the_leaf_expires_is_refused() {
    let doc = vector(VALID);
    let claims = verify(&doc, at(VALID_AT)).unwrap();
    let (_, _, not_after) = leaf_validity(&claims);
    // At the last valid second it still verifies.
    verify(&doc, not_after).unwrap();
    let err = verify(&doc, not_after + 1).unwrap_err();
    assert!(matches!(err, NitroError::Chain(CertError::Expired { .. })), "{err}");
    assert_eq!(
        err.to_string(),
        "nitro: certificate chain: i-020b6af9246d90e92-enc0183d09086c24190.us-east-1.aws \
         certificate expired at 2022-10-13T11:58:02Z"
    );
}

#[test]
fn before_the_leaf_is_valid_is_refused() {
    let doc = vector(VALID);
    let claims = verify(&doc, at(VALID_AT)).unwrap();
    let (_, not_before, _) = leaf_validity(&claims);
    let err = verify(&doc, not_before - 1).unwrap_err();
    assert!(matches!(err, NitroError::Chain(CertError::NotYetValid { .. })), "{err}");
    assert!(err.to_string().contains("certificate is not valid before 2022-10-13T"), "{err}");
}

#[test]
fn document_time_checks_pass_at_the_leaf_first_second() {
    // The NSM issues the leaf a few seconds before the document, so from the leaf's first second
    // on the document's timestamp is within the tolerated clock skew. (The refusals of a
    // timestamp outside the leaf's validity or ahead of the clock need a document signed by a
    // test chain; see the synthetic-chain tests below.)
    let doc = vector(VALID);
    let claims = verify(&doc, at(VALID_AT)).unwrap();
    let (_, not_before, _) = leaf_validity(&claims);
    let timestamp = nitro_fields(&claims)["timestamp"].as_i64().unwrap() / 1000;
    assert!(timestamp - not_before <= 60);
    verify(&doc, not_before).unwrap();
}

#[test]
fn cabundle_without_the_root_is_refused() {
    let doc = edit_payload(&vector(VALID), |entries| {
        cabundle_mut(entries).remove(0);
    });
    let err = verify(&doc, at(VALID_AT)).unwrap_err();
    let NitroError::UntrustedRoot { fingerprint, .. } = &err else { panic!("{err}") };
    assert_ne!(fingerprint, &hex::encode(AWS_NITRO_ROOT_G1_SHA256));
    assert!(
        err.to_string()
            .starts_with("nitro: root certificate is not the AWS Nitro Enclaves root (SHA-256 "),
        "{err}"
    );
}

#[test]
fn a_different_root_is_untrusted_unless_it_is_an_anchor() {
    let other = nvidia_root_der();
    let other_fp = hex::encode(Cert::from_der(&other).unwrap().sha256_fingerprint());
    let doc = edit_payload(&vector(VALID), |entries| {
        cabundle_mut(entries)[0] = Value::Bytes(other.clone());
    });
    let err = verify(&doc, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::UntrustedRoot { .. }), "{err}");
    assert!(err.to_string().contains(&format!("(SHA-256 {other_fp}")), "{err}");

    // Listed as an anchor, that root is accepted as a root, and the chain then fails: the AWS
    // intermediate was not issued by it.
    let anchors = TrustAnchors::new().with_root(TeeKind::Nitro, other.clone());
    let err = verify_with(&doc, &anchors, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Chain(CertError::IssuerMismatch { .. })), "{err}");
}

#[test]
fn unreadable_anchor_is_refused_not_ignored() {
    let anchors = TrustAnchors::new().with_root(TeeKind::Nitro, b"not a certificate".to_vec());
    let err = verify_with(&vector(VALID), &anchors, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Anchor(_)), "{err}");
}

#[test]
fn intermediates_out_of_order_break_the_chain() {
    let doc = edit_payload(&vector(VALID), |entries| {
        cabundle_mut(entries).swap(1, 2);
    });
    let err = verify(&doc, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Chain(CertError::IssuerMismatch { .. })), "{err}");
}

#[test]
fn leaf_that_is_not_a_certificate_is_refused() {
    let doc = edit_payload(&vector(VALID), |entries| {
        *field_mut(entries, "certificate") = Value::Bytes(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    });
    let err = verify(&doc, at(VALID_AT)).unwrap_err();
    assert!(
        matches!(err, NitroError::Certificate { ref which, .. } if which == "certificate"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// COSE structure

fn with_protected(doc: &[u8], header: coset::Header) -> Vec<u8> {
    let mut cose = CoseSign1::from_slice(doc).unwrap();
    cose.protected = coset::ProtectedHeader { original_data: None, header };
    cose.to_vec().unwrap()
}

#[test]
fn algorithm_other_than_es384_is_refused() {
    let es256 = coset::HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build();
    let err = verify(&with_protected(&vector(VALID), es256), at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Algorithm(_)), "{err}");
    assert_eq!(err.to_string(), "nitro: COSE algorithm is ES256 (-7), expected ES384 (-35)");

    let none = coset::Header::default();
    let err = verify(&with_protected(&vector(VALID), none), at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Algorithm(_)), "{err}");
}

#[test]
fn extra_header_parameters_are_refused() {
    let with_kid = coset::HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES384)
        .key_id(b"kid".to_vec())
        .build();
    let err = verify(&with_protected(&vector(VALID), with_kid), at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Header(_)), "{err}");

    let mut cose = CoseSign1::from_slice(&vector(VALID)).unwrap();
    cose.unprotected = coset::HeaderBuilder::new().key_id(b"kid".to_vec()).build();
    let err = verify(&cose.to_vec().unwrap(), at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Header(_)), "{err}");
}

#[test]
fn detached_payload_is_refused() {
    let mut cose = CoseSign1::from_slice(&vector(VALID)).unwrap();
    cose.payload = None;
    let err = verify(&cose.to_vec().unwrap(), at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::DetachedPayload), "{err}");
}

#[test]
fn truncated_document_is_refused() {
    let doc = vector(VALID);
    for len in [1, 10, doc.len() / 2, doc.len() - 1] {
        let err = verify(&doc[..len], at(VALID_AT)).unwrap_err();
        assert!(matches!(err, NitroError::Cose(_)), "{len}: {err}");
    }
    let mut longer = doc.clone();
    longer.push(0);
    let err = verify(&longer, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Cose(_)), "{err}");
}

#[test]
fn garbage_is_refused() {
    let err = verify(&[0x84, 0xff, 0xff, 0x00, 0x13], at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Cose(_)), "{err}");
    let err = verify(b"hello, world!", at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::UnknownFormat), "{err}");
    let err = verify(&[], at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::UnknownFormat), "{err}");
    let huge = vec![0x84; 40_000];
    let err = verify(&huge, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::TooLarge { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Payload structure (the NSM specification's rules)

#[test]
fn missing_required_field_is_refused() {
    for name in ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"] {
        let doc = edit_payload(&vector(VALID), |entries| {
            entries.retain(|(k, _)| k.as_text() != Some(name));
        });
        let err = verify(&doc, at(VALID_AT)).unwrap_err();
        assert!(matches!(err, NitroError::MissingField(n) if n == name), "{name}: {err}");
        assert_eq!(
            err.to_string(),
            format!("nitro: document payload lacks the required field {name}")
        );
    }
}

#[test]
fn unknown_or_duplicate_field_is_refused() {
    let doc = edit_payload(&vector(VALID), |entries| {
        entries.push((Value::Text("extra".into()), Value::Null));
    });
    let err = verify(&doc, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::UnknownField(_)), "{err}");

    let doc = edit_payload(&vector(VALID), |entries| {
        let first = entries[0].clone();
        entries.push(first);
    });
    let err = verify(&doc, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Payload(_)), "{err}");
}

fn field_error(edit: impl FnOnce(&mut Vec<(Value, Value)>)) -> (&'static str, String) {
    let doc = edit_payload(&vector(VALID), edit);
    match verify(&doc, at(VALID_AT)).unwrap_err() {
        NitroError::Field { field, reason } => (field, reason),
        other => panic!("not a field error: {other}"),
    }
}

#[test]
fn field_constraints_of_the_nsm_specification() {
    let (f, _) = field_error(|e| *field_mut(e, "digest") = Value::Text("SHA256".into()));
    assert_eq!(f, "digest");
    let (f, _) = field_error(|e| *field_mut(e, "module_id") = Value::Text(String::new()));
    assert_eq!(f, "module_id");
    let (f, _) = field_error(|e| *field_mut(e, "timestamp") = Value::Integer(0.into()));
    assert_eq!(f, "timestamp");
    let (f, _) = field_error(|e| *field_mut(e, "cabundle") = Value::Array(vec![]));
    assert_eq!(f, "cabundle");
    let (f, _) = field_error(|e| *field_mut(e, "certificate") = Value::Bytes(vec![0; 1025]));
    assert_eq!(f, "certificate");
    let (f, _) = field_error(|e| *field_mut(e, "user_data") = Value::Bytes(vec![0; 1025]));
    assert_eq!(f, "user_data");
    let (f, _) = field_error(|e| *field_mut(e, "nonce") = Value::Text("n".into()));
    assert_eq!(f, "nonce");
    let (f, _) = field_error(|e| *field_mut(e, "pcrs") = Value::Map(vec![]));
    assert_eq!(f, "pcrs");
    let (f, reason) = field_error(|e| {
        *field_mut(e, "pcrs") =
            Value::Map(vec![(Value::Integer(32.into()), Value::Bytes(vec![0; 48]))]);
    });
    assert_eq!((f, reason.as_str()), ("pcrs", "index is not below 32"));
    let (f, reason) = field_error(|e| {
        *field_mut(e, "pcrs") =
            Value::Map(vec![(Value::Integer(0.into()), Value::Bytes(vec![0; 47]))]);
    });
    assert_eq!((f, reason.as_str()), ("pcrs", "PCR0 is 47 bytes, expected 32, 48 or 64"));
    let (f, _) = field_error(|e| {
        *field_mut(e, "pcrs") =
            Value::Map(vec![(Value::Integer(0.into()), Value::Bytes(vec![0; 32]))]);
    });
    assert_eq!(f, "pcrs");
    let pcrs: Vec<(Value, Value)> =
        (0..33).map(|i| (Value::Integer(i.into()), Value::Bytes(vec![0; 48]))).collect();
    let (f, _) = field_error(|e| *field_mut(e, "pcrs") = Value::Map(pcrs));
    assert_eq!(f, "pcrs");
}

#[test]
fn null_optional_fields_mean_absent() {
    let doc = vector(VALID);
    let cose = CoseSign1::from_slice(&doc).unwrap();
    let payload = document::parse_payload(cose.payload.as_deref().unwrap()).unwrap();
    let mut edited = edit_payload(&doc, |entries| {
        *field_mut(entries, "nonce") = Value::Null;
    });
    let reparsed = document::parse(&edited).unwrap();
    assert_eq!(reparsed.payload.nonce, None);
    assert_eq!(reparsed.payload.module_id, payload.module_id);
    // A payload with bytes after its map is refused.
    let mut cose = CoseSign1::from_slice(&edited).unwrap();
    cose.payload.as_mut().unwrap().push(0);
    edited = cose.to_vec().unwrap();
    assert!(matches!(document::parse(&edited), Err(NitroError::Payload(_))));
}

// ---------------------------------------------------------------------------------------------
// The carrier certificate

#[test]
fn certificate_without_a_document_is_refused() {
    let root_der = aws_root().der().to_vec();
    let err = verify(&root_der, at(VALID_AT)).unwrap_err();
    assert!(matches!(err, NitroError::Carrier(_)), "{err}");
}

#[test]
fn carrier_whose_key_the_document_does_not_attest_is_refused() {
    // The carrier certificate is not trusted (its signature is not checked), so changing its
    // public key keeps it parseable; the document then no longer attests that key.
    let mut der = vector(CARRIER);
    let spki_point = hex::decode("04fbd5c51639fe0dd594fdc2fbf5429d").unwrap();
    let at_point = der.windows(spki_point.len()).position(|w| w == spki_point).unwrap();
    der[at_point + 5] ^= 0x01;
    let err = verify(&der, CARRIER_AT).unwrap_err();
    assert!(matches!(err, NitroError::CarrierKeyMismatch), "{err}");
}

#[test]
fn carrier_document_is_checked_like_any_other() {
    // One second after the document's leaf expires.
    let der = vector(CARRIER);
    let claims = verify(&der, CARRIER_AT).unwrap();
    let (_, _, not_after) = leaf_validity(&claims);
    let err = verify(&der, not_after + 1).unwrap_err();
    assert!(matches!(err, NitroError::Chain(CertError::Expired { .. })), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[test]
fn parser_never_panics_on_prefixes_and_flips() {
    for name in [VALID, DEBUG, CARRIER] {
        let bytes = vector(name);
        for len in 0..bytes.len() {
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Nitro, &bytes[..len]);
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xff;
            cloister_verify::internal::parse_vendor_evidence(TeeKind::Nitro, &flipped);
        }
    }
    // Tagged with another tag than 18: refused by the parser too.
    let mut tagged = CoseSign1::from_slice(&vector(VALID)).unwrap().to_tagged_vec().unwrap();
    tagged[0] = 0xd1;
    assert!(document::parse(&tagged).is_err());
}

// ---------------------------------------------------------------------------------------------
// Documents signed by a test chain (a root listed as a trust anchor, and a leaf), for the checks
// a real document cannot reach: the timestamp checks, PCR-derived claims, the anchor path.

mod synthetic {
    use super::*;
    use p384::ecdsa::signature::Signer as _;
    use p384::ecdsa::{Signature, SigningKey};
    use p384::elliptic_curve::Generate as _;

    /// The test's "now": 2030-01-01T00:00:00Z.
    pub(super) const NOW: i64 = 1_893_456_000;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    fn name(cn: &str) -> Vec<u8> {
        let cn_oid = tlv(0x06, &[0x55, 0x04, 0x03]);
        tlv(0x30, &tlv(0x31, &seq(&[cn_oid, tlv(0x0c, cn.as_bytes())])))
    }

    fn utc_time(unix: i64) -> Vec<u8> {
        let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
        let text = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            t.year() % 100,
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        tlv(0x17, text.as_bytes())
    }

    fn ecdsa_sha384() -> Vec<u8> {
        seq(&[tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03])])
    }

    fn spki_p384(key: &SigningKey) -> Vec<u8> {
        let ec = tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
        let p384 = tlv(0x06, &[0x2b, 0x81, 0x04, 0x00, 0x22]);
        let point = key.verifying_key().to_sec1_point(false);
        seq(&[seq(&[ec, p384]), tlv(0x03, &[&[0u8][..], point.as_bytes()].concat())])
    }

    /// basicConstraints (critical) with cA and an optional path length.
    pub(super) fn basic_constraints(ca: bool, path_len: Option<u8>) -> Vec<u8> {
        let mut value = Vec::new();
        if ca {
            value.extend(tlv(0x01, &[0xff]));
        }
        if let Some(n) = path_len {
            value.extend(tlv(0x02, &[n]));
        }
        extension(&[0x55, 0x1d, 0x13], &tlv(0x30, &value))
    }

    /// keyUsage (critical): keyCertSign and cRLSign.
    pub(super) fn key_usage_ca() -> Vec<u8> {
        extension(&[0x55, 0x1d, 0x0f], &tlv(0x03, &[0x01, 0x06]))
    }

    /// keyUsage (critical): digitalSignature only.
    pub(super) fn key_usage_signing() -> Vec<u8> {
        extension(&[0x55, 0x1d, 0x0f], &tlv(0x03, &[0x07, 0x80]))
    }

    fn extension(oid: &[u8], value: &[u8]) -> Vec<u8> {
        seq(&[tlv(0x06, oid), tlv(0x01, &[0xff]), tlv(0x04, value)])
    }

    /// A certificate for `subject_spki` named `subject`, signed by `issuer_key` as `issuer`.
    pub(super) fn certificate(
        subject: &str,
        subject_spki: Vec<u8>,
        issuer: (&str, &SigningKey),
        validity: (i64, i64),
        extensions: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut tbs_parts = vec![
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[0x01, 0x23]),
            ecdsa_sha384(),
            name(issuer.0),
            seq(&[utc_time(validity.0), utc_time(validity.1)]),
            name(subject),
            subject_spki,
        ];
        if !extensions.is_empty() {
            tbs_parts.push(tlv(0xa3, &seq(extensions)));
        }
        let tbs = seq(&tbs_parts);
        let signature: Signature = issuer.1.sign(&tbs);
        let der_sig = signature.to_der();
        seq(&[tbs, ecdsa_sha384(), tlv(0x03, &[&[0u8][..], der_sig.as_bytes()].concat())])
    }

    pub(super) struct TestPki {
        pub(super) root: Vec<u8>,
        /// Intermediates, from the root's child toward the leaf (cabundle order).
        pub(super) intermediates: Vec<Vec<u8>>,
        pub(super) leaf: Vec<u8>,
        leaf_key: SigningKey,
        root_key: SigningKey,
    }

    impl TestPki {
        /// A CA root valid 2029..2031 and a signing leaf valid over `leaf_validity`.
        pub(super) fn new(leaf_validity: (i64, i64)) -> Self {
            Self::build(
                leaf_validity,
                &[basic_constraints(true, None), key_usage_ca()],
                None,
                &[basic_constraints(false, None), key_usage_signing()],
            )
        }

        /// Root (with `root_ext`) → optional intermediate (with these extensions) → leaf (with
        /// `leaf_ext`).
        pub(super) fn build(
            leaf_validity: (i64, i64),
            root_ext: &[Vec<u8>],
            intermediate_ext: Option<&[Vec<u8>]>,
            leaf_ext: &[Vec<u8>],
        ) -> Self {
            let year = (NOW - 86_400 * 365, NOW + 86_400 * 365);
            let root_key = SigningKey::generate();
            let root_name = "test-nitro-root";
            let root = certificate(
                root_name,
                spki_p384(&root_key),
                (root_name, &root_key),
                year,
                root_ext,
            );
            let mut intermediates = Vec::new();
            let mid_key = SigningKey::generate();
            let mut issuer = (root_name, &root_key);
            if let Some(ext) = intermediate_ext {
                intermediates.push(certificate(
                    "test-nitro-intermediate",
                    spki_p384(&mid_key),
                    issuer,
                    year,
                    ext,
                ));
                issuer = ("test-nitro-intermediate", &mid_key);
            }
            let leaf_key = SigningKey::generate();
            let leaf =
                certificate("test-enclave", spki_p384(&leaf_key), issuer, leaf_validity, leaf_ext);
            Self { root, intermediates, leaf, leaf_key, root_key }
        }

        /// Re-issues the leaf (directly under the root) for another public key.
        pub(super) fn with_leaf_spki(mut self, spki: Vec<u8>) -> Self {
            self.intermediates.clear();
            self.leaf = certificate(
                "test-enclave",
                spki,
                ("test-nitro-root", &self.root_key),
                (NOW - 3600, NOW + 3600),
                &[],
            );
            self
        }

        pub(super) fn anchors(&self) -> TrustAnchors {
            TrustAnchors::new().with_root(TeeKind::Nitro, self.root.clone())
        }

        /// A signed document with these PCRs, timestamp and user_data.
        pub(super) fn document(
            &self,
            pcrs: &[(u8, [u8; 48])],
            timestamp_ms: u64,
            user_data: Option<&[u8]>,
        ) -> Vec<u8> {
            let text = |t: &str| Value::Text(t.to_owned());
            let pcrs = pcrs
                .iter()
                .map(|(i, v)| (Value::Integer((*i).into()), Value::Bytes(v.to_vec())))
                .collect();
            let payload = Value::Map(vec![
                (text("module_id"), text("i-0123456789abcdef0-enc0123456789abcdef")),
                (text("digest"), text("SHA384")),
                (text("timestamp"), Value::Integer(timestamp_ms.into())),
                (text("pcrs"), Value::Map(pcrs)),
                (text("certificate"), Value::Bytes(self.leaf.clone())),
                (
                    text("cabundle"),
                    Value::Array(
                        std::iter::once(&self.root)
                            .chain(&self.intermediates)
                            .map(|c| Value::Bytes(c.clone()))
                            .collect(),
                    ),
                ),
                (text("public_key"), Value::Null),
                (text("user_data"), user_data.map_or(Value::Null, |u| Value::Bytes(u.to_vec()))),
                (text("nonce"), Value::Null),
            ]);
            let mut payload_bytes = Vec::new();
            ciborium::ser::into_writer(&payload, &mut payload_bytes).unwrap();
            let protected = coset::HeaderBuilder::new().algorithm(iana::Algorithm::ES384).build();
            coset::CoseSign1Builder::new()
                .protected(protected)
                .payload(payload_bytes)
                .create_signature(&[], |tbs| {
                    let signature: Signature = self.leaf_key.sign(tbs);
                    signature.to_bytes().to_vec()
                })
                .build()
                .to_vec()
                .unwrap()
        }
    }

    /// A P-256 SubjectPublicKeyInfo.
    pub(super) fn spki_p256() -> Vec<u8> {
        let key = p256::ecdsa::SigningKey::generate();
        let ec = tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
        let p256 = tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
        let point = key.verifying_key().to_sec1_point(false);
        seq(&[seq(&[ec, p256]), tlv(0x03, &[&[0u8][..], point.as_bytes()].concat())])
    }

    pub(super) fn standard_pcrs(pcr8: [u8; 48]) -> Vec<(u8, [u8; 48])> {
        vec![(0, [0xa0; 48]), (1, [0xa1; 48]), (2, [0xa2; 48]), (4, [0xa4; 48]), (8, pcr8)]
    }
}

use synthetic::{
    NOW, TestPki, basic_constraints, key_usage_ca, key_usage_signing, spki_p256, standard_pcrs,
};

fn now_ms() -> u64 {
    u64::try_from(NOW).unwrap() * 1000
}

#[test]
fn document_under_an_anchor_root_verifies_only_with_the_anchor() {
    let pki = TestPki::new((NOW - 3600, NOW + 3600));
    let report_data = [0x5a; 64];
    let doc = pki.document(&standard_pcrs([0x88; 48]), now_ms(), Some(&report_data));
    let claims = verify_with(&doc, &pki.anchors(), NOW).unwrap();
    assert_eq!(claims.measurement.as_bytes(), &[0xa0; 48]);
    assert_eq!(claims.signer.as_ref().unwrap().as_bytes(), &[0x88; 48]);
    assert_eq!(claims.report_data.as_bytes(), &report_data);
    assert!(!claims.debug);
    let root_fp = hex::encode(Cert::from_der(&pki.root).unwrap().sha256_fingerprint());
    assert_eq!(nitro_fields(&claims)["root_sha256"], root_fp.as_str());

    // Without the anchor the built-in AWS pin refuses it, naming the fingerprint.
    let err = verify(&doc, NOW).unwrap_err();
    assert!(err.to_string().contains(&format!("(SHA-256 {root_fp}")), "{err}");
}

#[test]
fn zero_or_absent_pcr8_means_no_signer() {
    let pki = TestPki::new((NOW - 3600, NOW + 3600));
    let doc = pki.document(&standard_pcrs([0; 48]), now_ms(), None);
    let claims = verify_with(&doc, &pki.anchors(), NOW).unwrap();
    assert_eq!(claims.signer, None);
    assert_eq!(claims.report_data.as_bytes(), b"");
    let doc = pki.document(&[(0, [1; 48]), (1, [1; 48]), (2, [1; 48])], now_ms(), None);
    let claims = verify_with(&doc, &pki.anchors(), NOW).unwrap();
    assert_eq!(claims.signer, None);
}

#[test]
fn debug_needs_all_of_pcr0_to_pcr2_zero() {
    let pki = TestPki::new((NOW - 3600, NOW + 3600));
    let zero = [(0, [0; 48]), (1, [0; 48]), (2, [0; 48])];
    let claims = verify_with(&pki.document(&zero, now_ms(), None), &pki.anchors(), NOW).unwrap();
    assert!(claims.debug);
    let mut one_set = zero;
    one_set[2].1[47] = 1;
    let doc = pki.document(&one_set, now_ms(), None);
    assert!(!verify_with(&doc, &pki.anchors(), NOW).unwrap().debug);
}

#[test]
fn document_without_pcr0_to_pcr2_is_refused() {
    let pki = TestPki::new((NOW - 3600, NOW + 3600));
    let doc = pki.document(&[(0, [1; 48]), (2, [1; 48])], now_ms(), None);
    let err = verify_with(&doc, &pki.anchors(), NOW).unwrap_err();
    assert!(matches!(err, NitroError::MissingPcr(1)), "{err}");
}

#[test]
fn timestamp_outside_the_leaf_validity_is_refused() {
    let pki = TestPki::new((NOW - 3600, NOW + 3600));
    let before_leaf = now_ms() - 7_200_000;
    let doc = pki.document(&standard_pcrs([0; 48]), before_leaf, None);
    let err = verify_with(&doc, &pki.anchors(), NOW).unwrap_err();
    assert!(matches!(err, NitroError::TimestampOutsideCertificate { .. }), "{err}");
    assert!(err.to_string().contains("outside the enclave certificate's validity"), "{err}");
}

#[test]
fn timestamp_ahead_of_the_clock_is_refused() {
    let pki = TestPki::new((NOW - 3600, NOW + 3600));
    let doc = pki.document(&standard_pcrs([0; 48]), now_ms() + 61_000, None);
    let err = verify_with(&doc, &pki.anchors(), NOW).unwrap_err();
    assert!(matches!(err, NitroError::TimestampInFuture { .. }), "{err}");
    // Within the 60 s skew it verifies.
    let doc = pki.document(&standard_pcrs([0; 48]), now_ms() + 60_000, None);
    verify_with(&doc, &pki.anchors(), NOW).unwrap();
}

#[test]
fn synthetic_leaf_expiry_names_the_leaf() {
    let pki = TestPki::new((NOW - 3600, NOW + 3600));
    let doc = pki.document(&standard_pcrs([0; 48]), now_ms(), None);
    let err = verify_with(&doc, &pki.anchors(), NOW + 3601).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nitro: certificate chain: test-enclave certificate expired at 2030-01-01T01:00:00Z"
    );
}

#[test]
fn unified_evidence_binds_user_data_to_the_runtime_data() {
    use cloister_types::{Base64Url, Hex, RuntimeData, UnifiedEvidence};
    use std::collections::BTreeMap;

    let runtime_data = RuntimeData {
        nonce: "nonce-1".into(),
        hpke_pk: "hpke-pk".into(),
        tls_spki_sha256: Hex(vec![7; 32]),
        receipt_pk: "receipt-pk".into(),
        extra: BTreeMap::new(),
    };
    let report_data = runtime_data.report_data().unwrap();
    let pki = TestPki::new((NOW - 3600, NOW + 3600));
    let unified = |user_data: &[u8]| UnifiedEvidence {
        version: 1,
        tee: TeeKind::Nitro,
        evidence: Base64Url(pki.document(&standard_pcrs([0; 48]), now_ms(), Some(user_data))),
        runtime_data: runtime_data.clone(),
        collateral: BTreeMap::new(),
        additional_evidence: BTreeMap::new(),
    };
    let bound = report_data.to_hex();
    let verified =
        cloister_verify::verify(&unified(bound.as_bytes()), &pki.anchors(), NOW).unwrap();
    assert_eq!(verified.tee(), TeeKind::Nitro);
    // Other user_data: not bound.
    let err = cloister_verify::verify(&unified(&[0; 64]), &pki.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch), "{err}");
}

#[test]
fn synthetic_chain_with_an_intermediate_verifies() {
    let ca = [basic_constraints(true, None), key_usage_ca()];
    let pki = TestPki::build(
        (NOW - 3600, NOW + 3600),
        &ca,
        Some(&[basic_constraints(true, Some(0)), key_usage_ca()]),
        &[key_usage_signing()],
    );
    let doc = pki.document(&standard_pcrs([0; 48]), now_ms(), None);
    verify_with(&doc, &pki.anchors(), NOW).unwrap();
}

fn role_error(pki: &TestPki) -> (String, String) {
    let doc = pki.document(&standard_pcrs([0; 48]), now_ms(), None);
    match verify_with(&doc, &pki.anchors(), NOW).unwrap_err() {
        NitroError::CertificateRole { subject, reason } => (subject, reason),
        other => panic!("not a role error: {other}"),
    }
}

/// The chain error of a document whose chain breaks a CA constraint (checked by `verify_chain`
/// for every vendor chain).
fn chain_error(pki: &TestPki) -> CertError {
    let doc = pki.document(&standard_pcrs([0; 48]), now_ms(), None);
    match verify_with(&doc, &pki.anchors(), NOW).unwrap_err() {
        NitroError::Chain(e) => e,
        other => panic!("not a chain error: {other}"),
    }
}

#[test]
fn issuer_that_is_not_a_ca_is_refused() {
    let ca = [basic_constraints(true, None), key_usage_ca()];
    // No basicConstraints at all.
    let pki = TestPki::build((NOW - 3600, NOW + 3600), &ca, Some(&[]), &[]);
    let err = chain_error(&pki);
    assert!(
        matches!(&err, CertError::NotACa { subject, .. } if subject == "test-nitro-intermediate"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "test-nitro-intermediate certificate signs test-enclave but is not a CA certificate \
         (basicConstraints cA is not TRUE)"
    );
    // cA false.
    let pki =
        TestPki::build((NOW - 3600, NOW + 3600), &ca, Some(&[basic_constraints(false, None)]), &[]);
    assert!(
        matches!(chain_error(&pki), CertError::NotACa { subject, .. } if subject == "test-nitro-intermediate")
    );
    // A CA without keyCertSign.
    let pki = TestPki::build(
        (NOW - 3600, NOW + 3600),
        &ca,
        Some(&[basic_constraints(true, None), key_usage_signing()]),
        &[],
    );
    assert!(matches!(chain_error(&pki), CertError::NoKeyCertSign { .. }));
    // A root without basicConstraints cannot issue the leaf either.
    let pki = TestPki::build((NOW - 3600, NOW + 3600), &[], None, &[]);
    assert!(
        matches!(chain_error(&pki), CertError::NotACa { subject, .. } if subject == "test-nitro-root")
    );
}

#[test]
fn path_length_is_enforced() {
    let pki = TestPki::build(
        (NOW - 3600, NOW + 3600),
        &[basic_constraints(true, Some(0)), key_usage_ca()],
        Some(&[basic_constraints(true, None), key_usage_ca()]),
        &[],
    );
    let err = chain_error(&pki);
    assert!(
        matches!(&err, CertError::PathLenExceeded { subject, max: 0, found: 1 } if subject == "test-nitro-root"),
        "{err}"
    );
}

#[test]
fn enclave_certificate_that_is_a_ca_or_cannot_sign_is_refused() {
    let ca = [basic_constraints(true, None), key_usage_ca()];
    let pki = TestPki::build((NOW - 3600, NOW + 3600), &ca, None, &[basic_constraints(true, None)]);
    assert_eq!(
        role_error(&pki),
        ("test-enclave".to_owned(), "the enclave certificate is a CA".to_owned())
    );
    let pki = TestPki::build((NOW - 3600, NOW + 3600), &ca, None, &[key_usage_ca()]);
    assert_eq!(role_error(&pki).1, "keyUsage lacks digitalSignature");
}

#[test]
fn enclave_certificate_with_a_p256_key_is_refused() {
    let pki = TestPki::new((NOW - 3600, NOW + 3600)).with_leaf_spki(spki_p256());
    let doc = pki.document(&standard_pcrs([0; 48]), now_ms(), None);
    let err = verify_with(&doc, &pki.anchors(), NOW).unwrap_err();
    assert!(matches!(err, NitroError::LeafKey(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "nitro: enclave certificate key is not an ECDSA P-384 key: it is a P-256 key"
    );
}
