//! Recipient keys (X25519 for HPKE DHKEM(X25519, HKDF-SHA256)), their text forms and key ids.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hpke::{Deserializable as _, Kem as _, Serializable as _};
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::KeyError;
use crate::{HpkeKem, random_bytes};

/// Text prefix of a recipient public key.
pub const PUBLIC_KEY_PREFIX: &str = "cloister-hpke-x25519:";
/// Text prefix of a recipient secret key.
pub const SECRET_KEY_PREFIX: &str = "cloister-hpke-secret-x25519:";

/// Length in bytes of a [`KeyId`]: the first 16 bytes of SHA-256 of the raw public key.
pub const KEY_ID_LEN: usize = 16;

/// A recipient's X25519 secret key.
///
/// The 32 secret bytes are zeroized on drop and never printed by `Debug`.
pub struct RecipientSecretKey {
    secret: Zeroizing<[u8; 32]>,
    public: RecipientPublicKey,
}

impl RecipientSecretKey {
    /// Generates a fresh key from the operating system's random number generator.
    ///
    /// # Panics
    /// Panics if the operating system's random number generator fails, as there is no safe way
    /// to continue without randomness.
    pub fn generate() -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        #[allow(clippy::expect_used)]
        random_bytes(secret.as_mut_slice()).expect("the OS random number generator failed");
        Self::from_secret_bytes(secret)
    }

    /// Builds a key from its 32 raw secret bytes (any 32 bytes are a valid X25519 secret).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self::from_secret_bytes(Zeroizing::new(*bytes))
    }

    fn from_secret_bytes(secret: Zeroizing<[u8; 32]>) -> Self {
        let sk = hpke_private_key(&secret);
        let pk = HpkeKem::sk_to_pk(&sk);
        let mut public = [0u8; 32];
        public.copy_from_slice(&pk.to_bytes());
        Self { secret, public: RecipientPublicKey(public) }
    }

    /// The matching public key.
    pub fn public_key(&self) -> RecipientPublicKey {
        self.public.clone()
    }

    /// The key id under which envelopes list this key.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// `cloister-hpke-secret-x25519:` followed by base64url (no padding) of the 32 secret bytes.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(SECRET_KEY_PREFIX.len() + 43));
        text.push_str(SECRET_KEY_PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.secret.as_slice(), &mut text);
        text
    }

    /// Parses the form written by [`RecipientSecretKey::to_text`]; surrounding whitespace
    /// (a trailing newline from a key file) is ignored.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let body = strip_prefix(text.trim(), SECRET_KEY_PREFIX, "secret")?;
        let mut decoded = Zeroizing::new(
            URL_SAFE_NO_PAD.decode(body).map_err(|_| KeyError::BadEncoding { kind: "secret" })?,
        );
        let mut secret = Zeroizing::new([0u8; 32]);
        if decoded.len() != 32 {
            let len = decoded.len();
            decoded.zeroize();
            return Err(KeyError::WrongLength { kind: "secret", len });
        }
        secret.copy_from_slice(&decoded);
        Ok(Self::from_secret_bytes(secret))
    }

    pub(crate) fn hpke_private_key(&self) -> <HpkeKem as hpke::Kem>::PrivateKey {
        hpke_private_key(&self.secret)
    }

    /// The 32 raw secret bytes (for wrapping the key to an enclave; never log them).
    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }
}

fn hpke_private_key(secret: &[u8; 32]) -> <HpkeKem as hpke::Kem>::PrivateKey {
    // X25519 accepts any 32-byte string as a private key, so this cannot fail.
    #[allow(clippy::expect_used)]
    <HpkeKem as hpke::Kem>::PrivateKey::from_bytes(secret).expect("32-byte X25519 secret")
}

impl fmt::Debug for RecipientSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientSecretKey")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A recipient's X25519 public key.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct RecipientPublicKey([u8; 32]);

impl RecipientPublicKey {
    /// Builds a public key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// `cloister-hpke-x25519:` followed by base64url (no padding) of the 32 bytes.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(PUBLIC_KEY_PREFIX.len() + 43);
        text.push_str(PUBLIC_KEY_PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.0, &mut text);
        text
    }

    /// Parses the form written by [`RecipientPublicKey::to_text`]; surrounding whitespace is
    /// ignored.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let body = strip_prefix(text.trim(), PUBLIC_KEY_PREFIX, "public")?;
        let decoded =
            URL_SAFE_NO_PAD.decode(body).map_err(|_| KeyError::BadEncoding { kind: "public" })?;
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength { kind: "public", len: decoded.len() })?;
        Ok(Self(bytes))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key id: the first [`KEY_ID_LEN`] bytes of SHA-256 of the raw public key.
    pub fn key_id(&self) -> KeyId {
        KeyId::of_public_key(&self.0)
    }

    pub(crate) fn hpke_public_key(&self) -> <HpkeKem as hpke::Kem>::PublicKey {
        #[allow(clippy::expect_used)]
        <HpkeKem as hpke::Kem>::PublicKey::from_bytes(&self.0).expect("32-byte X25519 key")
    }
}

impl fmt::Display for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for RecipientPublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s)
    }
}

fn strip_prefix<'a>(
    text: &'a str,
    prefix: &'static str,
    kind: &'static str,
) -> Result<&'a str, KeyError> {
    text.strip_prefix(prefix).ok_or_else(|| {
        if kind == "public"
            && (text.starts_with(SECRET_KEY_PREFIX)
                || text.starts_with(crate::SM2_SECRET_KEY_PREFIX))
        {
            KeyError::SecretGivenForPublic
        } else {
            KeyError::WrongPrefix { kind, expected: prefix }
        }
    })
}

/// Identifies a recipient inside an envelope header: the first 16 bytes (128 bits) of SHA-256
/// over the recipient's raw 32-byte X25519 public key.
///
/// Truncation to 128 bits keeps the header small; collisions only make a recipient try (and
/// fail) one extra HPKE decapsulation, they never let a wrong key decrypt.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// The key id of a raw public key.
    pub fn of_public_key(public: &[u8; 32]) -> Self {
        let digest = Sha256::digest(public);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self(id)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(KEY_ID_LEN * 2);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}
