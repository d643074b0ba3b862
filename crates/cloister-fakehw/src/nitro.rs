//! A synthetic AWS Nitro Enclaves platform under a test root: attestation documents (COSE_Sign1,
//! ES384) whose cabundle starts at [`NitroPlatform::root_pem`], and [`FakeNsm`], an attester
//! that drives the real NSM request and response code against this platform.
//!
//! `/dev/nsm` is an ioctl device: unlike configfs-tsm's files, no file a test can create answers
//! `NSM_IOCTL_RAW` (a plain file fails it with `ENOTTY`), so a `cloister serve worker --tee nitro`
//! child cannot be pointed at a fake one without a test hook in the production path, which this
//! project does not have. [`FakeNsm`] is the honest substitute: it runs in the test's process,
//! encodes the request with [`cloister_attest::NsmDevice::request`], answers it as the NSM would,
//! and reads the answer back with [`cloister_attest::parse_nsm_attestation_response`] and
//! [`cloister_attest::NsmDevice::check_document`]: everything of the real attester but the
//! ioctl.

use std::path::{Path, PathBuf};

use ciborium::Value;
use cloister_attest::{AttestError, NsmDevice};
use cloister_types::{Hex, RuntimeData, TeeKind, UnifiedEvidence};
use coset::{CborSerializable as _, iana};
use rcgen::PKCS_ECDSA_P384_SHA384;

use crate::FakeHwError;
use crate::pki::{Role, TestCa};

/// PCR0: the enclave image's measurement.
pub const PCR0: [u8; 48] = [0xa0; 48];

/// One synthetic Nitro hypervisor: a root and the enclave's signing certificate, valid from a
/// day before the time given to [`NitroPlatform::new`] for a year.
pub struct NitroPlatform {
    root: TestCa,
    leaf: TestCa,
}

impl NitroPlatform {
    /// A fresh platform whose certificates are valid around `now` (unix seconds).
    pub fn new(now: i64) -> Result<Self, FakeHwError> {
        let validity = (now - 24 * 3600, now + 365 * 24 * 3600);
        let alg = &PKCS_ECDSA_P384_SHA384;
        let root = TestCa::root("Cloister test aws.nitro-enclaves", alg, validity)?;
        let leaf = root.issue("Cloister test enclave", alg, Role::Leaf, validity, Vec::new())?;
        Ok(Self { root, leaf })
    }

    /// The test root, PEM: what an instance lists under `trust_anchors.test_roots.nitro`.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The enclave image's measurement (PCR0), as reference values list it.
    pub fn measurement(&self) -> Hex {
        Hex(PCR0.to_vec())
    }

    /// An attestation document with these optional fields, timestamped `timestamp_ms`.
    pub fn document(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, FakeHwError> {
        let text = |t: &str| Value::Text(t.to_owned());
        let bytes_or_null = |b: Option<&[u8]>| b.map_or(Value::Null, |b| Value::Bytes(b.to_vec()));
        let pcrs = [(0u8, PCR0), (1, [0xa1; 48]), (2, [0xa2; 48]), (3, [0; 48]), (4, [0xa4; 48])]
            .into_iter()
            .map(|(index, value)| (Value::Integer(index.into()), Value::Bytes(value.to_vec())))
            .collect();
        let payload = Value::Map(vec![
            (text("module_id"), text("i-0cloistertest000-enc0cloistertest0")),
            (text("digest"), text("SHA384")),
            (text("timestamp"), Value::Integer(timestamp_ms.into())),
            (text("pcrs"), Value::Map(pcrs)),
            (text("certificate"), Value::Bytes(self.leaf.der().to_vec())),
            (text("cabundle"), Value::Array(vec![Value::Bytes(self.root.der().to_vec())])),
            (text("public_key"), bytes_or_null(public_key)),
            (text("user_data"), bytes_or_null(user_data)),
            (text("nonce"), bytes_or_null(nonce)),
        ]);
        let mut payload_bytes = Vec::new();
        ciborium::into_writer(&payload, &mut payload_bytes)
            .map_err(|e| FakeHwError::Encode { what: "NSM payload", reason: e.to_string() })?;
        let protected = coset::HeaderBuilder::new().algorithm(iana::Algorithm::ES384).build();
        let mut failure = None;
        let document = coset::CoseSign1Builder::new()
            .protected(protected)
            .payload(payload_bytes)
            .create_signature(&[], |tbs| match self.leaf.sign_p384_raw(tbs) {
                Ok(signature) => signature.to_vec(),
                Err(e) => {
                    failure = Some(e);
                    Vec::new()
                }
            })
            .build();
        if let Some(e) = failure {
            return Err(e);
        }
        document
            .to_vec()
            .map_err(|e| FakeHwError::Encode { what: "COSE_Sign1", reason: e.to_string() })
    }

    /// What the NSM answers to an attestation request (CBOR `{"Attestation": {"user_data",
    /// "nonce", "public_key"}}`): `{"Attestation": {"document"}}`, or `{"Error":
    /// "InvalidArgument"}` for anything else.
    pub fn answer(&self, request: &[u8], timestamp_ms: u64) -> Result<Vec<u8>, FakeHwError> {
        let text = |t: &str| Value::Text(t.to_owned());
        let response = match attestation_fields(request) {
            Some((user_data, nonce, public_key)) => {
                let document = self.document(
                    user_data.as_deref(),
                    nonce.as_deref(),
                    public_key.as_deref(),
                    timestamp_ms,
                )?;
                Value::Map(vec![(
                    text("Attestation"),
                    Value::Map(vec![(text("document"), Value::Bytes(document))]),
                )])
            }
            None => Value::Map(vec![(text("Error"), text("InvalidArgument"))]),
        };
        let mut out = Vec::new();
        ciborium::into_writer(&response, &mut out)
            .map_err(|e| FakeHwError::Encode { what: "NSM response", reason: e.to_string() })?;
        Ok(out)
    }
}

/// The optional fields of an attestation request.
type RequestFields = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

fn attestation_fields(request: &[u8]) -> Option<RequestFields> {
    let Value::Map(entries) = ciborium::from_reader::<Value, _>(request).ok()? else {
        return None;
    };
    let [(Value::Text(kind), Value::Map(fields))] = entries.as_slice() else { return None };
    if kind != "Attestation" {
        return None;
    }
    let field = |name: &str| {
        fields.iter().find(|(k, _)| matches!(k, Value::Text(t) if t == name)).and_then(|(_, v)| {
            match v {
                Value::Bytes(b) => Some(b.clone()),
                _ => None,
            }
        })
    };
    Some((field("user_data"), field("nonce"), field("public_key")))
}

/// An attester over a [`NitroPlatform`] standing in for `/dev/nsm` (see the module
/// documentation for why it runs in the test's process): the real request encoding, response
/// parsing and binding check of [`NsmDevice`], with the platform answering instead of the
/// ioctl.
pub struct FakeNsm {
    platform: NitroPlatform,
    device: NsmDevice,
    path: PathBuf,
}

impl FakeNsm {
    /// The attester; errors name `path` as the real device's would.
    pub fn new(platform: NitroPlatform, path: &Path) -> Self {
        Self { platform, device: NsmDevice::new(path), path: path.to_path_buf() }
    }

    /// The platform behind it.
    pub fn platform(&self) -> &NitroPlatform {
        &self.platform
    }
}

impl cloister_attest::Attester for FakeNsm {
    fn tee(&self) -> TeeKind {
        TeeKind::Nitro
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = crate::report_data_of(runtime_data)?;
        let request = self.device.request(&report_data)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let response = self
            .platform
            .answer(&request, now_ms)
            .map_err(|e| AttestError::Malformed { path: self.path.clone(), what: e.to_string() })?;
        let document = cloister_attest::parse_nsm_attestation_response(&self.path, &response)?;
        self.device.check_document(&report_data, &document)?;
        Ok(crate::unified(TeeKind::Nitro, document, runtime_data, &[]))
    }
}
