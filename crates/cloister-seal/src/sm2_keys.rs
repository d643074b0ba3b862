//! SM2 recipient keys for the ShangMi suite (curve sm2p256v1, GB/T 32918.5), their text forms
//! and key ids, and [`EnvelopeSecretKey`], a secret key of either suite.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sm2::elliptic_curve::sec1::ToSec1Point as _;
use sm3::{Digest as _, Sm3};
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::KeyError;
use crate::keys::{KEY_ID_LEN, KeyId, RecipientSecretKey, SECRET_KEY_PREFIX};
use crate::suite::Suite;
use crate::{Recipient, random_bytes};

/// Text prefix of an SM2 recipient public key.
pub const SM2_PUBLIC_KEY_PREFIX: &str = "cloister-sm2:";
/// Text prefix of an SM2 recipient secret key.
pub const SM2_SECRET_KEY_PREFIX: &str = "cloister-sm2-secret:";
/// Length of the compressed SEC1 encoding of an SM2 public key (the text form's payload).
pub const SM2_PUBLIC_KEY_LEN: usize = 33;
/// Length of the uncompressed SEC1 encoding `04 ‖ x ‖ y` (what the key id hashes).
pub const SM2_UNCOMPRESSED_LEN: usize = 65;

/// A recipient's SM2 public key (a point on sm2p256v1, never the identity).
#[derive(Clone, Copy, Debug)]
pub struct Sm2PublicKey {
    key: sm2::PublicKey,
    compressed: [u8; SM2_PUBLIC_KEY_LEN],
}

impl Sm2PublicKey {
    fn from_key(key: sm2::PublicKey) -> Self {
        let mut compressed = [0u8; SM2_PUBLIC_KEY_LEN];
        compressed.copy_from_slice(key.to_sec1_point(true).as_bytes());
        Self { key, compressed }
    }

    /// Parses a SEC1 encoding: compressed (`02`/`03` ‖ x, 33 bytes) or uncompressed
    /// (`04` ‖ x ‖ y, 65 bytes), nothing else (no hybrid or compact forms); the point must be
    /// on the curve and not the identity.
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let canonical = match bytes.len() {
            SM2_PUBLIC_KEY_LEN => matches!(bytes.first(), Some(0x02 | 0x03)),
            SM2_UNCOMPRESSED_LEN => bytes.first() == Some(&0x04),
            _ => false,
        };
        if !canonical {
            return Err(KeyError::Sm2Key(format!(
                "the public key is not a SEC1 point: {} bytes, expected 02/03 and 32 bytes \
                 (compressed, {SM2_PUBLIC_KEY_LEN}) or 04 and 64 bytes (uncompressed, \
                 {SM2_UNCOMPRESSED_LEN})",
                bytes.len()
            )));
        }
        sm2::PublicKey::from_sec1_bytes(bytes).map(Self::from_key).map_err(|_| {
            KeyError::Sm2Key("the public key is not a point on the SM2 curve".to_string())
        })
    }

    /// The compressed SEC1 encoding (`02`/`03` ‖ x), 33 bytes.
    pub fn to_compressed(&self) -> [u8; SM2_PUBLIC_KEY_LEN] {
        self.compressed
    }

    /// The uncompressed SEC1 encoding `04 ‖ x ‖ y`, 65 bytes.
    pub fn to_uncompressed(&self) -> [u8; SM2_UNCOMPRESSED_LEN] {
        let mut out = [0u8; SM2_UNCOMPRESSED_LEN];
        out.copy_from_slice(self.key.to_sec1_point(false).as_bytes());
        out
    }

    /// `cloister-sm2:` followed by base64url (no padding) of the 33-byte compressed point.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(SM2_PUBLIC_KEY_PREFIX.len() + 44);
        text.push_str(SM2_PUBLIC_KEY_PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.compressed, &mut text);
        text
    }

    /// Parses the form written by [`Sm2PublicKey::to_text`] (exactly the 33-byte compressed
    /// point); surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let Some(body) = text.strip_prefix(SM2_PUBLIC_KEY_PREFIX) else {
            if text.starts_with(SM2_SECRET_KEY_PREFIX) || text.starts_with(SECRET_KEY_PREFIX) {
                return Err(KeyError::SecretGivenForPublic);
            }
            return Err(KeyError::WrongPrefix { kind: "public", expected: SM2_PUBLIC_KEY_PREFIX });
        };
        let decoded =
            URL_SAFE_NO_PAD.decode(body).map_err(|_| KeyError::BadEncoding { kind: "public" })?;
        if decoded.len() != SM2_PUBLIC_KEY_LEN {
            return Err(KeyError::Sm2Key(format!(
                "the public key decodes to {} bytes, expected the {SM2_PUBLIC_KEY_LEN}-byte \
                 compressed point",
                decoded.len()
            )));
        }
        Self::from_sec1_bytes(&decoded)
    }

    /// The key id: the first [`KEY_ID_LEN`] bytes of SM3 over the uncompressed encoding
    /// `04 ‖ x ‖ y`.
    pub fn key_id(&self) -> KeyId {
        let digest = Sm3::digest(self.to_uncompressed());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// This key as a recipient (kind 3).
    pub fn recipient(&self) -> Recipient {
        Recipient::Sm2(*self)
    }

    pub(crate) fn sm2_key(&self) -> &sm2::PublicKey {
        &self.key
    }
}

impl PartialEq for Sm2PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.compressed == other.compressed
    }
}

impl Eq for Sm2PublicKey {}

impl Hash for Sm2PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.compressed.hash(state);
    }
}

impl fmt::Display for Sm2PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for Sm2PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s)
    }
}

impl From<Sm2PublicKey> for Recipient {
    fn from(key: Sm2PublicKey) -> Self {
        Recipient::Sm2(key)
    }
}

/// A recipient's SM2 secret key: a scalar in 1..n−1 of sm2p256v1.
///
/// The scalar is zeroized on drop (by `elliptic-curve`'s `SecretKey`) and never printed by
/// `Debug`.
pub struct Sm2SecretKey {
    secret: sm2::SecretKey,
    public: Sm2PublicKey,
}

impl Sm2SecretKey {
    /// Generates a fresh key from the operating system's random number generator (32 random
    /// bytes, drawn again in the rare case they are not a valid scalar).
    ///
    /// # Panics
    /// Panics if the operating system's random number generator fails, as there is no safe way
    /// to continue without randomness.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        loop {
            #[allow(clippy::expect_used)]
            random_bytes(bytes.as_mut_slice()).expect("the OS random number generator failed");
            if let Ok(key) = Self::from_bytes(&bytes) {
                return key;
            }
        }
    }

    /// Builds a key from its 32-byte big-endian scalar, which must be in 1..n−1.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let secret = sm2::SecretKey::from_slice(bytes).map_err(|_| {
            KeyError::Sm2Key(
                "the secret key is not a valid SM2 scalar (it must be between 1 and n-1)"
                    .to_string(),
            )
        })?;
        let public = Sm2PublicKey::from_key(secret.public_key());
        Ok(Self { secret, public })
    }

    /// The matching public key.
    pub fn public_key(&self) -> Sm2PublicKey {
        self.public
    }

    /// The key id under which envelopes list this key.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// `cloister-sm2-secret:` followed by base64url (no padding) of the 32-byte big-endian
    /// scalar.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(SM2_SECRET_KEY_PREFIX.len() + 43));
        text.push_str(SM2_SECRET_KEY_PREFIX);
        let bytes = Zeroizing::new(<[u8; 32]>::from(self.secret.to_bytes()));
        URL_SAFE_NO_PAD.encode_string(bytes.as_slice(), &mut text);
        text
    }

    /// Parses the form written by [`Sm2SecretKey::to_text`]; surrounding whitespace is
    /// ignored.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let body = text
            .trim()
            .strip_prefix(SM2_SECRET_KEY_PREFIX)
            .ok_or(KeyError::WrongPrefix { kind: "secret", expected: SM2_SECRET_KEY_PREFIX })?;
        let mut decoded = Zeroizing::new(
            URL_SAFE_NO_PAD.decode(body).map_err(|_| KeyError::BadEncoding { kind: "secret" })?,
        );
        if decoded.len() != 32 {
            let len = decoded.len();
            decoded.zeroize();
            return Err(KeyError::WrongLength { kind: "secret", len });
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&decoded);
        Self::from_bytes(&bytes)
    }

    pub(crate) fn sm2_key(&self) -> &sm2::SecretKey {
        &self.secret
    }
}

impl fmt::Debug for Sm2SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sm2SecretKey")
            .field("public", &self.public.to_text())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A secret key of either suite, as read from a key file: what `cloister open` needs when it
/// does not know the suite in advance.
#[derive(Debug)]
#[non_exhaustive]
pub enum EnvelopeSecretKey {
    /// An X25519 key (`cloister-hpke-secret-x25519:…`), for the X25519 suite.
    X25519(RecipientSecretKey),
    /// An SM2 key (`cloister-sm2-secret:…`), for the ShangMi suite.
    Sm2(Sm2SecretKey),
}

impl EnvelopeSecretKey {
    /// Generates a fresh key for `suite`.
    ///
    /// # Panics
    /// Panics if the operating system's random number generator fails.
    pub fn generate(suite: Suite) -> Self {
        match suite {
            Suite::X25519 => EnvelopeSecretKey::X25519(RecipientSecretKey::generate()),
            Suite::ShangMi => EnvelopeSecretKey::Sm2(Sm2SecretKey::generate()),
        }
    }

    /// Parses either secret key text form, by its prefix; surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        if text.trim_start().starts_with(SM2_SECRET_KEY_PREFIX) {
            Sm2SecretKey::from_text(text).map(EnvelopeSecretKey::Sm2)
        } else {
            RecipientSecretKey::from_text(text).map(EnvelopeSecretKey::X25519)
        }
    }

    /// The secret key's text form.
    pub fn to_text(&self) -> Zeroizing<String> {
        match self {
            EnvelopeSecretKey::X25519(k) => k.to_text(),
            EnvelopeSecretKey::Sm2(k) => k.to_text(),
        }
    }

    /// The suite envelopes sealed to this key use.
    pub fn suite(&self) -> Suite {
        match self {
            EnvelopeSecretKey::X25519(_) => Suite::X25519,
            EnvelopeSecretKey::Sm2(_) => Suite::ShangMi,
        }
    }

    /// The public half, as a kind-1 (X25519) or kind-3 (SM2) recipient.
    pub fn recipient(&self) -> Recipient {
        match self {
            EnvelopeSecretKey::X25519(k) => Recipient::Key(k.public_key()),
            EnvelopeSecretKey::Sm2(k) => Recipient::Sm2(k.public_key()),
        }
    }

    /// The public key's text form (`cloister-hpke-x25519:…` or `cloister-sm2:…`).
    pub fn public_key_text(&self) -> String {
        match self {
            EnvelopeSecretKey::X25519(k) => k.public_key().to_text(),
            EnvelopeSecretKey::Sm2(k) => k.public_key().to_text(),
        }
    }

    /// The key id envelopes list this key under.
    pub fn key_id(&self) -> KeyId {
        match self {
            EnvelopeSecretKey::X25519(k) => k.key_id(),
            EnvelopeSecretKey::Sm2(k) => k.key_id(),
        }
    }
}

impl From<RecipientSecretKey> for EnvelopeSecretKey {
    fn from(key: RecipientSecretKey) -> Self {
        EnvelopeSecretKey::X25519(key)
    }
}

impl From<Sm2SecretKey> for EnvelopeSecretKey {
    fn from(key: Sm2SecretKey) -> Self {
        EnvelopeSecretKey::Sm2(key)
    }
}

/// A borrowed secret key of either suite: what [`crate::open_with`] and
/// [`crate::open_to_vec_with`] take (`&RecipientSecretKey`, `&Sm2SecretKey` and
/// `&EnvelopeSecretKey` all convert into it).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum OpeningKey<'a> {
    /// An X25519 key.
    X25519(&'a RecipientSecretKey),
    /// An SM2 key.
    Sm2(&'a Sm2SecretKey),
}

impl OpeningKey<'_> {
    /// The suite this key opens.
    pub fn suite(&self) -> Suite {
        match self {
            OpeningKey::X25519(_) => Suite::X25519,
            OpeningKey::Sm2(_) => Suite::ShangMi,
        }
    }

    /// The key id envelopes list this key under.
    pub fn key_id(&self) -> KeyId {
        match self {
            OpeningKey::X25519(k) => k.key_id(),
            OpeningKey::Sm2(k) => k.key_id(),
        }
    }
}

impl<'a> From<&'a RecipientSecretKey> for OpeningKey<'a> {
    fn from(key: &'a RecipientSecretKey) -> Self {
        OpeningKey::X25519(key)
    }
}

impl<'a> From<&'a Sm2SecretKey> for OpeningKey<'a> {
    fn from(key: &'a Sm2SecretKey) -> Self {
        OpeningKey::Sm2(key)
    }
}

impl<'a> From<&'a EnvelopeSecretKey> for OpeningKey<'a> {
    fn from(key: &'a EnvelopeSecretKey) -> Self {
        match key {
            EnvelopeSecretKey::X25519(k) => OpeningKey::X25519(k),
            EnvelopeSecretKey::Sm2(k) => OpeningKey::Sm2(k),
        }
    }
}
