//! Parsing of a Nitro attestation document: the COSE_Sign1 envelope and its CBOR payload.
//!
//! Only structure is checked here (the AWS NSM specification's syntactic rules); no signature,
//! certificate or time check happens in this file. Everything the specification does not allow
//! is refused: other COSE header parameters, unknown payload fields, duplicate keys, lengths
//! outside the specified ranges.

use std::collections::BTreeMap;

use ciborium::Value;
use coset::{CborSerializable as _, CoseSign1, TaggedCborSerializable as _, iana};

use super::NitroError;

/// The largest attestation document accepted. Genuine ones are about 4.5 KiB: a leaf and four or
/// five CA certificates of at most 1024 bytes each, up to 32 PCRs and three optional fields of at
/// most 1024 bytes.
pub const MAX_DOCUMENT_LEN: usize = 32 * 1024;

/// The largest certificate, public key, user data or nonce in a document, as the NSM
/// specification says (`bytes .size (1..1024)` for certificates, `(0..1024)` for the optional
/// fields).
pub const MAX_FIELD_LEN: usize = 1024;

/// The highest number of PCRs a document may carry, and the bound on their indexes.
pub const MAX_PCRS: usize = 32;

/// A parsed, not yet verified, attestation document.
#[derive(Clone, Debug)]
pub struct Document {
    /// The COSE_Sign1 as parsed (keeps the protected header's original bytes for the signature).
    pub cose: CoseSign1,
    /// The decoded payload.
    pub payload: Payload,
}

/// The fields of an attestation document's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The enclave's module id, e.g. `i-020b6af9246d90e92-enc0183d09086c24190fd`.
    pub module_id: String,
    /// The PCR digest algorithm; always `SHA384`.
    pub digest: String,
    /// When the NSM produced the document, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The PCRs by index.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The enclave's signing certificate (DER).
    pub certificate: Vec<u8>,
    /// The CA bundle, root first then intermediates toward the leaf (DER each).
    pub cabundle: Vec<Vec<u8>>,
    /// The public key the enclave asked to include, if any.
    pub public_key: Option<Vec<u8>>,
    /// The user data the enclave asked to include, if any.
    pub user_data: Option<Vec<u8>>,
    /// The nonce the enclave asked to include, if any.
    pub nonce: Option<Vec<u8>>,
}

/// Parses a document: a COSE_Sign1 (untagged, or with tag 18) whose protected header says ES384
/// and nothing else, with an empty unprotected header and an attached payload.
pub fn parse(bytes: &[u8]) -> Result<Document, NitroError> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(NitroError::TooLarge { len: bytes.len(), max: MAX_DOCUMENT_LEN });
    }
    // 0xd2 is CBOR tag 18 (COSE_Sign1) in its one-byte form.
    let cose = if bytes.first() == Some(&0xd2) {
        CoseSign1::from_tagged_slice(bytes)
    } else {
        CoseSign1::from_slice(bytes)
    }
    .map_err(|e| NitroError::Cose(e.to_string()))?;
    check_headers(&cose)?;
    let payload_bytes = cose.payload.as_deref().ok_or(NitroError::DetachedPayload)?;
    let payload = parse_payload(payload_bytes)?;
    Ok(Document { cose, payload })
}

fn check_headers(cose: &CoseSign1) -> Result<(), NitroError> {
    let protected = &cose.protected.header;
    match &protected.alg {
        Some(coset::Algorithm::Assigned(iana::Algorithm::ES384)) => {}
        Some(other) => return Err(NitroError::Algorithm(describe_alg(other))),
        None => return Err(NitroError::Algorithm("absent".to_owned())),
    }
    let only_alg = coset::Header { alg: protected.alg.clone(), ..Default::default() };
    if *protected != only_alg {
        return Err(NitroError::Header(
            "the protected header has parameters other than alg".to_owned(),
        ));
    }
    if !cose.unprotected.is_empty() {
        return Err(NitroError::Header("the unprotected header is not empty".to_owned()));
    }
    Ok(())
}

fn describe_alg(alg: &coset::Algorithm) -> String {
    match alg {
        coset::Algorithm::Assigned(a) => format!("{a:?} ({})", *a as i64),
        coset::Algorithm::PrivateUse(n) => format!("private-use {n}"),
        coset::Algorithm::Text(t) => format!("{t:?}"),
    }
}

/// Parses the payload map and checks the NSM specification's syntactic rules.
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, NitroError> {
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader(&mut rest)
        .map_err(|e| NitroError::Payload(format!("not CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(NitroError::Payload(format!("{} bytes follow the CBOR map", rest.len())));
    }
    let Value::Map(entries) = value else {
        return Err(NitroError::Payload("not a CBOR map".to_owned()));
    };

    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in entries {
        let Value::Text(key) = key else {
            return Err(NitroError::Payload("a map key is not a text string".to_owned()));
        };
        if !matches!(
            key.as_str(),
            "module_id"
                | "digest"
                | "timestamp"
                | "pcrs"
                | "certificate"
                | "cabundle"
                | "public_key"
                | "user_data"
                | "nonce"
        ) {
            return Err(NitroError::UnknownField(key));
        }
        if fields.contains_key(&key) {
            return Err(NitroError::Payload(format!("field {key} appears twice")));
        }
        fields.insert(key, value);
    }
    let mut take = |name: &'static str| fields.remove(name);

    let module_id = match take("module_id").ok_or(NitroError::MissingField("module_id"))? {
        Value::Text(t) if !t.is_empty() => t,
        Value::Text(_) => return Err(field("module_id", "empty")),
        _ => return Err(field("module_id", "not a text string")),
    };
    let digest = match take("digest").ok_or(NitroError::MissingField("digest"))? {
        Value::Text(t) if t == "SHA384" => t,
        Value::Text(t) => return Err(field("digest", &format!("{t:?}, expected \"SHA384\""))),
        _ => return Err(field("digest", "not a text string")),
    };
    let timestamp_ms = match take("timestamp").ok_or(NitroError::MissingField("timestamp"))? {
        Value::Integer(i) => match u64::try_from(i) {
            Ok(t) if t > 0 => t,
            _ => return Err(field("timestamp", "not a positive 64-bit integer")),
        },
        _ => return Err(field("timestamp", "not an integer")),
    };
    let pcrs = parse_pcrs(take("pcrs").ok_or(NitroError::MissingField("pcrs"))?)?;
    let certificate = bytes_field(
        "certificate",
        take("certificate").ok_or(NitroError::MissingField("certificate"))?,
        1,
    )?;
    let cabundle = match take("cabundle").ok_or(NitroError::MissingField("cabundle"))? {
        Value::Array(items) if items.is_empty() => return Err(field("cabundle", "empty")),
        Value::Array(items) => items
            .into_iter()
            .map(|item| bytes_field("cabundle", item, 1))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(field("cabundle", "not an array")),
    };
    let public_key = optional_bytes("public_key", take("public_key"), 1)?;
    let user_data = optional_bytes("user_data", take("user_data"), 0)?;
    let nonce = optional_bytes("nonce", take("nonce"), 0)?;

    Ok(Payload {
        module_id,
        digest,
        timestamp_ms,
        pcrs,
        certificate,
        cabundle,
        public_key,
        user_data,
        nonce,
    })
}

fn parse_pcrs(value: Value) -> Result<BTreeMap<u8, Vec<u8>>, NitroError> {
    let Value::Map(entries) = value else {
        return Err(field("pcrs", "not a map"));
    };
    if entries.is_empty() || entries.len() > MAX_PCRS {
        return Err(field("pcrs", &format!("{} entries, expected 1 to {MAX_PCRS}", entries.len())));
    }
    let mut pcrs = BTreeMap::new();
    for (index, value) in entries {
        let index = match index {
            Value::Integer(i) => match u8::try_from(i) {
                Ok(i) if usize::from(i) < MAX_PCRS => i,
                _ => return Err(field("pcrs", &format!("index is not below {MAX_PCRS}"))),
            },
            _ => return Err(field("pcrs", "an index is not an integer")),
        };
        let Value::Bytes(bytes) = value else {
            return Err(field("pcrs", &format!("PCR{index} is not a byte string")));
        };
        if !matches!(bytes.len(), 32 | 48 | 64) {
            return Err(field(
                "pcrs",
                &format!("PCR{index} is {} bytes, expected 32, 48 or 64", bytes.len()),
            ));
        }
        // The digest is always SHA384, so every PCR is a SHA-384 value.
        if bytes.len() != 48 {
            return Err(field(
                "pcrs",
                &format!("PCR{index} is {} bytes but the digest is SHA384 (48)", bytes.len()),
            ));
        }
        if pcrs.insert(index, bytes).is_some() {
            return Err(field("pcrs", &format!("PCR{index} appears twice")));
        }
    }
    Ok(pcrs)
}

fn bytes_field(name: &'static str, value: Value, min: usize) -> Result<Vec<u8>, NitroError> {
    let Value::Bytes(bytes) = value else {
        return Err(field(name, "not a byte string"));
    };
    if bytes.len() < min || bytes.len() > MAX_FIELD_LEN {
        return Err(field(
            name,
            &format!("{} bytes, expected {min} to {MAX_FIELD_LEN}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// An optional field: absent and CBOR `null` both mean "not given" (the NSM writes `null`).
fn optional_bytes(
    name: &'static str,
    value: Option<Value>,
    min: usize,
) -> Result<Option<Vec<u8>>, NitroError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => bytes_field(name, value, min).map(Some),
    }
}

fn field(name: &'static str, reason: &str) -> NitroError {
    NitroError::Field { field: name, reason: reason.to_owned() }
}
