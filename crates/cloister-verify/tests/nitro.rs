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
    // test chain; see the synthetic-chain tests.)
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
