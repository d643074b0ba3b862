//! The envelope's cipher suites and their header ids: the X25519 suite (HPKE, AES-256-GCM, the
//! default) and the ShangMi suite (SM2, SM3, SM4-GCM; `docs/formats/sealed-envelope.md` §10).

use std::fmt;

use sha2::{Digest as _, Sha256};
use sm3::Sm3;

use crate::header::{
    AEAD_ID, HPKE_X25519_ENTRY_LEN, KDF_ID, KEM_ID, PAYLOAD_ID, SM_AEAD_ID, SM_KDF_ID, SM_KEM_ID,
    SM_PAYLOAD_ID, SM2_ENTRY_LEN,
};

/// A cipher suite. An envelope has exactly one, named by the four ids of its header; the sealer
/// takes it from the recipients' key types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// The default suite: HPKE Base mode DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM
    /// wraps the data key; the body is STREAM AES-256-GCM keyed by HKDF-SHA256, AAD
    /// SHA-256(header). Ids 0x0020/0x0001/0x0002, payload 0x0001.
    X25519,
    /// The ShangMi (GM/T) suite: SM2 public-key encryption (GB/T 32918.4) plus SM4-GCM wraps
    /// the data key; the body is STREAM SM4-GCM keyed by HKDF-SM3, AAD SM3(header). Ids
    /// 0x5302/0x5303/0x5304, payload 0x0002.
    ShangMi,
}

impl Suite {
    /// The header ids `(kem, kdf, aead, payload)`.
    pub const fn ids(self) -> (u16, u16, u16, u16) {
        match self {
            Suite::X25519 => (KEM_ID, KDF_ID, AEAD_ID, PAYLOAD_ID),
            Suite::ShangMi => (SM_KEM_ID, SM_KDF_ID, SM_AEAD_ID, SM_PAYLOAD_ID),
        }
    }

    /// The suite with these header ids, if it is one this build implements. Only the exact
    /// combinations of [`Suite::ids`] are accepted.
    pub fn from_ids(kem: u16, kdf: u16, aead: u16, payload: u16) -> Option<Self> {
        [Suite::X25519, Suite::ShangMi].into_iter().find(|s| s.ids() == (kem, kdf, aead, payload))
    }

    /// A short human-readable name.
    pub const fn name(self) -> &'static str {
        match self {
            Suite::X25519 => "X25519 suite (HPKE X25519/HKDF-SHA256/AES-256-GCM)",
            Suite::ShangMi => "ShangMi suite (SM2/SM3/SM4-GCM)",
        }
    }

    /// The hash of the serialized header that is the AAD of every body chunk: SHA-256 for the
    /// X25519 suite, SM3 for the ShangMi suite.
    pub(crate) fn header_digest(self, header: &[u8]) -> [u8; 32] {
        match self {
            Suite::X25519 => Sha256::digest(header).into(),
            Suite::ShangMi => Sm3::digest(header).into(),
        }
    }

    /// Body length of a recipient entry of this suite's own kind(s).
    pub(crate) const fn entry_len(self) -> usize {
        match self {
            Suite::X25519 => HPKE_X25519_ENTRY_LEN,
            Suite::ShangMi => SM2_ENTRY_LEN,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
