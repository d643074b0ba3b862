//! A fake Arm PSA device: an Initial Attestation Key made on the spot, and RFC 9783 attestation
//! tokens (COSE_Sign1 ES256) for a given challenge, as a TF-M secure world would return them.

use std::collections::BTreeMap;

use base64::Engine as _;
use ciborium::value::Value;
use cloister_attest::{AttestError, Attester};
use cloister_types::{Base64Url, RuntimeData, TeeKind, UnifiedEvidence};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::Generate as _;

use crate::FakeHwError;

/// One software component a fake token reports.
#[derive(Clone, Debug)]
pub struct Component {
    /// `SPE`, `NSPE`, …
    pub measurement_type: String,
    /// The measurement value (32 bytes for SHA-256).
    pub measurement_value: Vec<u8>,
    /// The signer id.
    pub signer_id: Vec<u8>,
}

/// A device with its IAK, the software it reports and its security lifecycle.
pub struct PsaDevice {
    iak: SigningKey,
    /// The components every token reports.
    pub components: Vec<Component>,
    /// The security lifecycle (0x3000 secured).
    pub lifecycle: i64,
}

impl PsaDevice {
    /// A secured device with a fresh IAK reporting one SPE component.
    pub fn new() -> Self {
        let iak = SigningKey::generate();
        let spe = Component {
            measurement_type: "SPE".into(),
            measurement_value: vec![0x44; 32],
            signer_id: vec![0x55; 32],
        };
        Self { iak, components: vec![spe], lifecycle: 0x3000 }
    }

    /// The IAK's public key as a JWK: what an instance lists under `trust_anchors.roots.psa`.
    pub fn anchor_jwk(&self) -> String {
        let point = self.iak.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": b64(bytes.get(1..33).unwrap_or_default()),
            "y": b64(bytes.get(33..).unwrap_or_default()),
        })
        .to_string()
    }

    /// An RFC 9783 token for `challenge`, signed by the IAK.
    pub fn token(&self, challenge: &[u8]) -> Result<Vec<u8>, FakeHwError> {
        let int = |i: i64| Value::Integer(i.into());
        let mut instance = vec![0x01];
        instance.extend([0x42; 32]);
        let components = self
            .components
            .iter()
            .map(|c| {
                Value::Map(vec![
                    (int(1), Value::Text(c.measurement_type.clone())),
                    (int(2), Value::Bytes(c.measurement_value.clone())),
                    (int(5), Value::Bytes(c.signer_id.clone())),
                ])
            })
            .collect();
        let claims = cbor(&Value::Map(vec![
            (int(265), Value::Text("tag:psacertified.org,2023:psa#tfm".into())),
            (int(10), Value::Bytes(challenge.to_vec())),
            (int(256), Value::Bytes(instance)),
            (int(2396), Value::Bytes(vec![0x33; 32])),
            (int(2394), int(1)),
            (int(2395), int(self.lifecycle)),
            (int(2399), Value::Array(components)),
        ]))?;
        let protected = cbor(&Value::Map(vec![(int(1), int(-7))]))?;
        let to_be_signed = cbor(&Value::Array(vec![
            Value::Text("Signature1".into()),
            Value::Bytes(protected.clone()),
            Value::Bytes(Vec::new()),
            Value::Bytes(claims.clone()),
        ]))?;
        let signature: p256::ecdsa::Signature = self.iak.sign(&to_be_signed);
        cbor(&Value::Tag(
            18,
            Box::new(Value::Array(vec![
                Value::Bytes(protected),
                Value::Map(Vec::new()),
                Value::Bytes(claims),
                Value::Bytes(signature.to_bytes().to_vec()),
            ])),
        ))
    }
}

impl Default for PsaDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl Attester for PsaDevice {
    fn tee(&self) -> TeeKind {
        TeeKind::Psa
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = runtime_data.report_data().map_err(AttestError::RuntimeData)?;
        let token = self.token(&report_data.0).map_err(|e| AttestError::Malformed {
            path: "fake PSA device".into(),
            what: e.to_string(),
        })?;
        Ok(UnifiedEvidence {
            version: cloister_types::evidence::UNIFIED_EVIDENCE_VERSION,
            tee: TeeKind::Psa,
            evidence: Base64Url(token),
            runtime_data: runtime_data.clone(),
            collateral: BTreeMap::new(),
            additional_evidence: BTreeMap::new(),
        })
    }
}

fn cbor(value: &Value) -> Result<Vec<u8>, FakeHwError> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes)
        .map_err(|e| FakeHwError::Encode { what: "PSA token", reason: e.to_string() })?;
    Ok(bytes)
}
