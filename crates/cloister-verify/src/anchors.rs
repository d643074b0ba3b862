//! Trust anchors: the roots an attestation instance accepts evidence from.
//!
//! Every TEE driver looks up its own roots here. An instance that lists no root for a TEE
//! rejects all evidence from that TEE; there is no "accept anything" setting.

use std::fmt;
use std::str::FromStr;

use std::collections::BTreeMap;

use cloister_types::{Base64Url, TeeKind};
use p256::ecdsa::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The prefix of a [`SimPlatformPublicKey`] in text form.
pub const SIM_PLATFORM_KEY_PREFIX: &str = "cloister-sim-platform-p256:";

/// The roots of trust an attestation instance accepts, per TEE.
///
/// Built empty with [`TrustAnchors::new`] and extended with `with_*` methods. Evidence from a TEE
/// with no anchor here never verifies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    sim_platform_keys: Vec<SimPlatformPublicKey>,
    roots: BTreeMap<TeeKind, Vec<Vec<u8>>>,
    nvidia_rim_test_roots: Vec<Vec<u8>>,
}

impl TrustAnchors {
    /// No anchors at all: every piece of evidence is rejected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts evidence of the simulated TEE signed by `key`.
    ///
    /// Only development instances should do this: the simulated TEE protects nothing.
    #[must_use]
    pub fn with_sim_platform_key(mut self, key: SimPlatformPublicKey) -> Self {
        if !self.sim_platform_keys.contains(&key) {
            self.sim_platform_keys.push(key);
        }
        self
    }

    /// The simulated platform keys this instance trusts (empty in production).
    pub fn sim_platform_keys(&self) -> &[SimPlatformPublicKey] {
        &self.sim_platform_keys
    }

    /// Also trusts `anchor` for evidence of `tee`, in addition to the vendor roots the driver
    /// has built in. What the bytes may be is the driver's to say (an X.509 root certificate in
    /// DER or PEM, a CCA CPAK as a JWK or PEM public key, …); a driver refuses anchors it cannot
    /// read rather than ignoring them.
    #[must_use]
    pub fn with_root(mut self, tee: TeeKind, anchor: Vec<u8>) -> Self {
        let list = self.roots.entry(tee).or_default();
        if !list.contains(&anchor) {
            list.push(anchor);
        }
        self
    }

    /// Also accepts NVIDIA RIMs (reference integrity manifests) whose signer chain ends at
    /// `root`, an X.509 root certificate in DER or PEM, **as a test root**: RIMs signed under it
    /// verify, and their claims say `"rim_root": "test"` instead of `"nvidia"`, which the
    /// production `default` policy refuses and `dev-sim` accepts as a warning at best.
    ///
    /// Only development and test instances should do this. It is not [`Self::with_root`]: a
    /// device root listed there never signs RIMs.
    #[must_use]
    pub fn with_nvidia_rim_test_root(mut self, root: Vec<u8>) -> Self {
        if !self.nvidia_rim_test_roots.contains(&root) {
            self.nvidia_rim_test_roots.push(root);
        }
        self
    }

    /// The NVIDIA RIM test roots this instance names (empty in production).
    pub fn nvidia_rim_test_roots(&self) -> &[Vec<u8>] {
        &self.nvidia_rim_test_roots
    }

    /// The extra anchors this instance lists for `tee`, as given to [`Self::with_root`].
    pub fn roots(&self, tee: TeeKind) -> &[Vec<u8>] {
        self.roots.get(&tee).map(Vec::as_slice).unwrap_or(&[])
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
