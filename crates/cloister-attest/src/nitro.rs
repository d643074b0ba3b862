//! AWS Nitro Enclaves attestation documents from `/dev/nsm`: a CBOR request
//! `{"Attestation": {"user_data", "nonce", "public_key"}}` through the NSM's raw ioctl, a CBOR
//! response `{"Attestation": {"document"}}` or `{"Error": code}`. `user_data` carries the 64
//! bytes of `report_data`.

use std::fs::File;
use std::path::{Path, PathBuf};

use ciborium::Value;
use cloister_tee_sys::nsm::NSM_RESPONSE_MAX_SIZE;
use cloister_types::{RuntimeData, TeeKind, UnifiedEvidence};

use crate::{AttestError, Attester, io_error, malformed};

/// The NSM's limits on the optional fields (`user_data` and `nonce`: 512 bytes,
/// `public_key`: 1024).
const MAX_NONCE: usize = 512;
const MAX_PUBLIC_KEY: usize = 1024;

/// Encodes the attestation request (pure; what the ioctl sends).
pub fn encode_nsm_attestation_request(
    user_data: &[u8],
    nonce: Option<&[u8]>,
    public_key: Option<&[u8]>,
) -> Result<Vec<u8>, AttestError> {
    let bytes_or_null = |b: Option<&[u8]>| b.map_or(Value::Null, |b| Value::Bytes(b.to_vec()));
    let request = Value::Map(vec![(
        Value::Text("Attestation".into()),
        Value::Map(vec![
            (Value::Text("user_data".into()), Value::Bytes(user_data.to_vec())),
            (Value::Text("nonce".into()), bytes_or_null(nonce)),
            (Value::Text("public_key".into()), bytes_or_null(public_key)),
        ]),
    )]);
    let mut out = Vec::new();
    ciborium::into_writer(&request, &mut out).map_err(|e| {
        AttestError::InvalidInput(format!("the NSM request cannot be encoded: {e}"))
    })?;
    Ok(out)
}

/// The attestation document in an NSM response; an `Error` response becomes
/// [`AttestError::Nsm`].
pub fn parse_nsm_attestation_response(
    device: &Path,
    response: &[u8],
) -> Result<Vec<u8>, AttestError> {
    let value: Value = ciborium::from_reader(response)
        .map_err(|e| malformed(device, format!("NSM response is not CBOR: {e}")))?;
    let Value::Map(entries) = value else {
        return Err(malformed(device, "NSM response is not a CBOR map"));
    };
    match entries.as_slice() {
        [(Value::Text(kind), body)] if kind == "Attestation" => {
            let document = map_get(body, "document")
                .ok_or_else(|| malformed(device, "NSM attestation response has no document"))?;
            byte_string(document)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| malformed(device, "NSM attestation document is not a byte string"))
        }
        [(Value::Text(kind), code)] if kind == "Error" => {
            let code = match code {
                Value::Text(t) => t.clone(),
                other => format!("{other:?}"),
            };
            Err(AttestError::Nsm { device: device.to_path_buf(), code })
        }
        _ => Err(malformed(device, "NSM response is neither Attestation nor Error")),
    }
}

fn map_get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    match map {
        Value::Map(entries) => {
            entries.iter().find(|(k, _)| matches!(k, Value::Text(t) if t == key)).map(|(_, v)| v)
        }
        _ => None,
    }
}

/// A CBOR byte string, or an array of small integers (how a serializer without byte-string
/// support writes a `Vec<u8>`).
fn byte_string(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(b) => Some(b.clone()),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::Integer(i) => u8::try_from(i128::from(*i)).ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The `user_data` and `nonce` fields of a document, when present.
type DocumentFields = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Reads `user_data` and `nonce` from an attestation document's payload (the third element of
/// its COSE_Sign1 array, a CBOR map). Signature and certificates are the verifier's business.
fn document_fields(device: &Path, document: &[u8]) -> Result<DocumentFields, AttestError> {
    let value: Value = ciborium::from_reader(document)
        .map_err(|e| malformed(device, format!("attestation document is not CBOR: {e}")))?;
    let value = match value {
        Value::Tag(18, inner) => *inner,
        other => other,
    };
    let payload = match &value {
        Value::Array(items) if items.len() == 4 => match &items[2] {
            Value::Bytes(p) => p.clone(),
            _ => {
                return Err(malformed(device, "attestation document payload is not a byte string"));
            }
        },
        _ => return Err(malformed(device, "attestation document is not a COSE_Sign1 array")),
    };
    let payload: Value = ciborium::from_reader(payload.as_slice())
        .map_err(|e| malformed(device, format!("attestation document payload is not CBOR: {e}")))?;
    let field = |name| map_get(&payload, name).and_then(byte_string);
    Ok((field("user_data"), field("nonce")))
}

/// Attester over the Nitro Secure Module.
#[derive(Clone, Debug)]
pub struct NsmDevice {
    path: PathBuf,
    nonce: Option<Vec<u8>>,
    public_key: Option<Vec<u8>>,
}

impl Default for NsmDevice {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PATH)
    }
}

impl NsmDevice {
    /// The device node.
    pub const DEFAULT_PATH: &'static str = "/dev/nsm";

    /// The device at `path`; no `nonce`, no `public_key`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), nonce: None, public_key: None }
    }

    /// Also puts `nonce` (at most 512 bytes) in the document's `nonce` field.
    pub fn with_nonce(mut self, nonce: Vec<u8>) -> Result<Self, AttestError> {
        if nonce.len() > MAX_NONCE {
            return Err(AttestError::InvalidInput(format!(
                "NSM nonce of {} bytes exceeds {MAX_NONCE}",
                nonce.len()
            )));
        }
        self.nonce = Some(nonce);
        Ok(self)
    }

    /// Also puts `public_key` (at most 1024 bytes, e.g. a DER SPKI for AWS KMS) in the
    /// document's `public_key` field.
    pub fn with_public_key(mut self, public_key: Vec<u8>) -> Result<Self, AttestError> {
        if public_key.len() > MAX_PUBLIC_KEY {
            return Err(AttestError::InvalidInput(format!(
                "NSM public_key of {} bytes exceeds {MAX_PUBLIC_KEY}",
                public_key.len()
            )));
        }
        self.public_key = Some(public_key);
        Ok(self)
    }

    /// The CBOR request for `report_data` (pure; what the ioctl sends).
    pub fn request(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        encode_nsm_attestation_request(
            report_data,
            self.nonce.as_deref(),
            self.public_key.as_deref(),
        )
    }

    /// Checks a document from the NSM binds what was asked: `user_data` is `report_data` and
    /// `nonce` is the configured nonce.
    pub fn check_document(
        &self,
        report_data: &[u8; 64],
        document: &[u8],
    ) -> Result<(), AttestError> {
        let (user_data, nonce) = document_fields(&self.path, document)?;
        crate::check_report_data(
            &self.path,
            report_data,
            user_data.as_deref().unwrap_or_default(),
        )?;
        if nonce != self.nonce {
            return Err(malformed(
                &self.path,
                "the attestation document's nonce is not the one requested",
            ));
        }
        Ok(())
    }
}

impl Attester for NsmDevice {
    fn tee(&self) -> TeeKind {
        TeeKind::Nitro
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = crate::report_data_of(runtime_data)?;
        let request = self.request(&report_data)?;
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io_error("opening", &self.path, e))?;
        let mut response = vec![0u8; NSM_RESPONSE_MAX_SIZE];
        let used = cloister_tee_sys::nsm_raw(&file, &request, &mut response).map_err(|e| {
            AttestError::Ioctl {
                ioctl: "NSM_IOCTL_RAW",
                device: self.path.clone(),
                source: Box::new(e),
            }
        })?;
        response.truncate(used);
        let document = parse_nsm_attestation_response(&self.path, &response)?;
        self.check_document(&report_data, &document)?;
        Ok(crate::unified(TeeKind::Nitro, document, runtime_data, &[]))
    }
}
