//! The simulated TEE's wire format: what its platform signs ([`SimReport`]), the evidence that
//! carries the signature ([`SimEvidence`]) and the platform's public key ([`SimPlatformPublicKey`]).
//!
//! Here, not in the verifier, so that the attester (code that runs in the enclave) writes the
//! same bytes the verifier reads without depending on the verifier. Producing and checking the
//! signature stay with them: this module only parses the public key.
//!
//! Evidence bytes are the canonical JSON
//! `{"report": "<base64url report bytes>", "signature": "<base64url r||s>"}` where the report
//! bytes are the canonical JSON of a [`SimReport`] and the signature is ECDSA P-256 with SHA-256
//! over exactly those bytes (64 bytes, `r || s`).

use std::fmt;
use std::str::FromStr;

use p256::ecdsa::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Base64Url, CanonicalJsonError, Hex, canonical_json};

/// The `format` of every sim report this version understands.
pub const SIM_REPORT_FORMAT: &str = "cloister-sim-report-v1";

/// The prefix of a [`SimPlatformPublicKey`] in text form.
pub const SIM_PLATFORM_KEY_PREFIX: &str = "cloister-sim-platform-p256:";

/// What the simulated platform signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimReport {
    /// Always [`SIM_REPORT_FORMAT`].
    pub format: String,
    /// SHA-384 of the measured executable (48 bytes).
    pub measurement: Hex,
    /// The 64 bytes bound by the attester (SHA-512 of the runtime data).
    pub report_data: Hex,
    /// Whether the simulated enclave runs in debug mode.
    pub debug: bool,
    /// Security version number of the measured code.
    pub svn: u64,
    /// The signing platform's public key, in [`SimPlatformPublicKey`] text form.
    pub platform_key: String,
    /// When the report was issued (unix seconds).
    pub issued_at: i64,
}

impl SimReport {
    /// The bytes that get signed: the canonical JSON of the report.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CanonicalJsonError> {
        canonical_json(self)
    }
}

/// The outer object of sim evidence: a report and the platform's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimEvidence {
    /// The report bytes (canonical JSON of a [`SimReport`]).
    pub report: Base64Url,
    /// ECDSA P-256 / SHA-256 over `report`, as 64 bytes `r || s`.
    pub signature: Base64Url,
}

impl SimEvidence {
    /// The evidence bytes that go into [`crate::UnifiedEvidence::evidence`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, CanonicalJsonError> {
        canonical_json(self)
    }
}

/// The public half of a simulated platform's signing key (ECDSA P-256).
///
/// Its text form is `cloister-sim-platform-p256:` followed by the unpadded base64url of the SEC1
/// compressed point; only that form is accepted, so each key has exactly one text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SimPlatformPublicKey(VerifyingKey);

/// Why a text is not a [`SimPlatformPublicKey`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimPlatformKeyTextError {
    /// The text does not start with [`SIM_PLATFORM_KEY_PREFIX`].
    #[error("a sim platform key must start with \"{SIM_PLATFORM_KEY_PREFIX}\"")]
    MissingPrefix,
    /// The part after the prefix is not unpadded base64url.
    #[error("the sim platform key is not unpadded base64url")]
    Base64,
    /// The decoded bytes are not a 33-byte SEC1 compressed point.
    #[error("a sim platform key must be a 33-byte SEC1 compressed P-256 point, got {0} bytes")]
    NotCompressed(usize),
    /// The bytes do not encode a point on P-256.
    #[error("the sim platform key is not a valid P-256 point")]
    InvalidPoint,
}

impl SimPlatformPublicKey {
    /// Wraps a P-256 verifying key.
    pub fn from_verifying_key(key: VerifyingKey) -> Self {
        Self(key)
    }

    /// The P-256 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// The SEC1 compressed point (33 bytes).
    pub fn to_sec1_compressed(&self) -> Vec<u8> {
        self.0.to_sec1_point(true).as_bytes().to_vec()
    }

    /// The text form: `cloister-sim-platform-p256:<base64url of the compressed point>`.
    pub fn to_text(&self) -> String {
        format!("{SIM_PLATFORM_KEY_PREFIX}{}", Base64Url::encode(&self.to_sec1_compressed()))
    }

    /// Parses the text form; anything but a compressed point is refused.
    pub fn from_text(text: &str) -> Result<Self, SimPlatformKeyTextError> {
        let encoded = text
            .strip_prefix(SIM_PLATFORM_KEY_PREFIX)
            .ok_or(SimPlatformKeyTextError::MissingPrefix)?;
        let bytes = Base64Url::parse(encoded).map_err(|_| SimPlatformKeyTextError::Base64)?;
        let bytes = bytes.as_bytes();
        if bytes.len() != 33 || !matches!(bytes[0], 0x02 | 0x03) {
            return Err(SimPlatformKeyTextError::NotCompressed(bytes.len()));
        }
        VerifyingKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| SimPlatformKeyTextError::InvalidPoint)
    }
}

impl fmt::Display for SimPlatformPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for SimPlatformPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimPlatformPublicKey({})", self.to_text())
    }
}

impl FromStr for SimPlatformPublicKey {
    type Err = SimPlatformKeyTextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_text(text)
    }
}

impl Serialize for SimPlatformPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for SimPlatformPublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_text(&text).map_err(serde::de::Error::custom)
    }
}
