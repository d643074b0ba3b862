//! Keys of either signature suite behind one API: [`AnySigningKey`] and [`AnyVerifyingKey`]
//! dispatch `sign`, `verify`, the raw-byte signatures, text forms and JWKs on the key they hold
//! (ES256 or SM2), so a caller configured for either suite has one code path. A verifying key
//! only ever accepts tokens of its own suite: the suite is the key's, never the token's.
//!
//! Also here: [`AnyVerifyingKey::from_jwks`] and [`verify_with_jwks`] (the key a token names
//! by `kid` in a JWKS that may list keys of both suites), and the recognition of every Cloister
//! key prefix, so that a key of the wrong kind is refused by name (an envelope encryption key
//! given as a signing key above all).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::sm2sig::{SM2_JWK_CURVE, SM2_JWS_ALG, Sm2SigningKey, Sm2VerifyingKey};
use crate::{SignError, Signed, SigningKey, VerifyingKey, peek_key_id};

/// A signature suite: the algorithm of a key and of every token it signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureSuite {
    /// ECDSA P-256 with SHA-256 (JWS `alg` `ES256`, RFC 7518).
    Es256,
    /// SM2 with SM3 (JWS `alg` `SM2SM3`, `docs/formats/jws-sm2.md`), for the ShangMi suite.
    Sm2,
}

impl SignatureSuite {
    /// The JWS `alg` of the suite's tokens.
    pub fn jws_alg(self) -> &'static str {
        match self {
            SignatureSuite::Es256 => "ES256",
            SignatureSuite::Sm2 => SM2_JWS_ALG,
        }
    }
}

impl fmt::Display for SignatureSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jws_alg())
    }
}

/// A secret signing key of either suite. Its `Debug` never shows the secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnySigningKey {
    /// An ES256 key (`cloister-es256-secret:`).
    Es256(SigningKey),
    /// An SM2 key (`cloister-sm2sig-secret:`).
    Sm2(Sm2SigningKey),
}

impl AnySigningKey {
    /// A fresh random key of `suite`.
    pub fn generate(suite: SignatureSuite) -> Result<Self, SignError> {
        Ok(match suite {
            SignatureSuite::Es256 => AnySigningKey::Es256(SigningKey::generate()),
            SignatureSuite::Sm2 => AnySigningKey::Sm2(Sm2SigningKey::generate()?),
        })
    }

    /// The key of `suite` derived from `ikm` under `label` ([`SigningKey::derive`] or
    /// [`Sm2SigningKey::derive`]).
    pub fn derive(suite: SignatureSuite, ikm: &[u8], label: &str) -> Result<Self, SignError> {
        Ok(match suite {
            SignatureSuite::Es256 => AnySigningKey::Es256(SigningKey::derive(ikm, label)?),
            SignatureSuite::Sm2 => AnySigningKey::Sm2(Sm2SigningKey::derive(ikm, label)?),
        })
    }

    /// Parses either secret text form, by its prefix (surrounding white space is ignored). A
    /// public key, an envelope key or an unknown text is refused and named.
    pub fn from_text(text: &str) -> Result<Self, SignError> {
        match KeyKind::of(text) {
            Some(KeyKind::Es256Secret) => SigningKey::from_text(text).map(AnySigningKey::Es256),
            Some(KeyKind::Sm2Secret) => Sm2SigningKey::from_text(text).map(AnySigningKey::Sm2),
            Some(other) => Err(other.given_for(KeyKind::AnySecret)),
            None => Err(KeyKind::AnySecret.unknown()),
        }
    }

    /// The key's text form.
    pub fn to_text(&self) -> Zeroizing<String> {
        match self {
            AnySigningKey::Es256(key) => key.to_text(),
            AnySigningKey::Sm2(key) => key.to_text(),
        }
    }

    /// The key's suite.
    pub fn suite(&self) -> SignatureSuite {
        match self {
            AnySigningKey::Es256(_) => SignatureSuite::Es256,
            AnySigningKey::Sm2(_) => SignatureSuite::Sm2,
        }
    }

    /// The public half.
    pub fn public_key(&self) -> AnyVerifyingKey {
        match self {
            AnySigningKey::Es256(key) => AnyVerifyingKey::Es256(key.public_key()),
            AnySigningKey::Sm2(key) => AnyVerifyingKey::Sm2(key.public_key()),
        }
    }

    /// The same key, naming `kid` in the header of the tokens it signs (for JWKS lookup).
    pub fn with_key_id(self, kid: &str) -> Self {
        match self {
            AnySigningKey::Es256(key) => AnySigningKey::Es256(key.with_key_id(kid)),
            AnySigningKey::Sm2(key) => AnySigningKey::Sm2(key.with_key_id(kid)),
        }
    }

    /// Signs `claims` as a compact JWS of the key's suite ([`SigningKey::sign`] or
    /// [`Sm2SigningKey::sign`]: the same claims, `alg` `ES256` or `SM2SM3`).
    pub fn sign<T: Serialize>(
        &self,
        what: &'static str,
        claims: T,
        issued_at: u64,
        valid_for: Duration,
    ) -> Result<String, SignError> {
        match self {
            AnySigningKey::Es256(key) => key.sign(what, claims, issued_at, valid_for),
            AnySigningKey::Sm2(key) => key.sign(what, claims, issued_at, valid_for),
        }
    }

    /// Signs raw bytes under `domain` ([`SigningKey::sign_bytes`] or
    /// [`Sm2SigningKey::sign_bytes`]: the same framing, the key's algorithm).
    pub fn sign_bytes(&self, domain: &str, msg: &[u8]) -> Result<String, SignError> {
        match self {
            AnySigningKey::Es256(key) => Ok(key.sign_bytes(domain, msg)),
            AnySigningKey::Sm2(key) => key.sign_bytes(domain, msg),
        }
    }
}

/// What signs a party's or an enclave's tokens, whatever its suite: [`SigningKey`],
/// [`Sm2SigningKey`] or [`AnySigningKey`]. Code that signs grants, proofs or statements takes
/// any of them, so a ShangMi deployment runs the same code with SM2 keys.
pub trait TokenSigner {
    /// Signs `claims` as a compact JWS of the key's suite, valid from `issued_at` for
    /// `valid_for`.
    fn sign_token<T: Serialize>(
        &self,
        what: &'static str,
        claims: T,
        issued_at: u64,
        valid_for: Duration,
    ) -> Result<String, SignError>;

    /// The public key's text form (what job specs and grants name an owner by).
    fn public_key_text(&self) -> String;
}

/// Implements [`TokenSigner`] for a key type whose `sign` and `public_key().to_text()` are the
/// trait's (the three keys have them as inherent methods).
macro_rules! token_signer {
    ($($key:ty),*) => {$(
        impl TokenSigner for $key {
            fn sign_token<T: Serialize>(
                &self,
                what: &'static str,
                claims: T,
                issued_at: u64,
                valid_for: Duration,
            ) -> Result<String, SignError> {
                self.sign(what, claims, issued_at, valid_for)
            }

            fn public_key_text(&self) -> String {
                self.public_key().to_text()
            }
        }
    )*};
}

token_signer!(SigningKey, Sm2SigningKey, AnySigningKey);

impl From<SigningKey> for AnySigningKey {
    fn from(key: SigningKey) -> Self {
        AnySigningKey::Es256(key)
    }
}

impl From<Sm2SigningKey> for AnySigningKey {
    fn from(key: Sm2SigningKey) -> Self {
        AnySigningKey::Sm2(key)
    }
}

/// A public verifying key of either suite. It verifies tokens and raw-byte signatures of its
/// own suite only.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnyVerifyingKey {
    /// An ES256 key (`cloister-es256:`).
    Es256(VerifyingKey),
    /// An SM2 key (`cloister-sm2sig:`).
    Sm2(Sm2VerifyingKey),
}

impl AnyVerifyingKey {
    /// Parses either public text form, by its prefix (surrounding white space is ignored). A
    /// secret key, an envelope key or an unknown text is refused and named.
    pub fn from_text(text: &str) -> Result<Self, SignError> {
        match KeyKind::of(text) {
            Some(KeyKind::Es256Public) => VerifyingKey::from_text(text).map(AnyVerifyingKey::Es256),
            Some(KeyKind::Sm2Public) => Sm2VerifyingKey::from_text(text).map(AnyVerifyingKey::Sm2),
            Some(other) => Err(other.given_for(KeyKind::AnyPublic)),
            None => Err(KeyKind::AnyPublic.unknown()),
        }
    }

    /// The key's text form (`cloister-es256:…` or `cloister-sm2sig:…`).
    pub fn to_text(&self) -> String {
        match self {
            AnyVerifyingKey::Es256(key) => key.to_text(),
            AnyVerifyingKey::Sm2(key) => key.to_text(),
        }
    }

    /// The key's suite.
    pub fn suite(&self) -> SignatureSuite {
        match self {
            AnyVerifyingKey::Es256(_) => SignatureSuite::Es256,
            AnyVerifyingKey::Sm2(_) => SignatureSuite::Sm2,
        }
    }

    /// The key's fingerprint: SHA-256 (ES256) or SM3 (SM2) of the compressed point.
    pub fn fingerprint(&self) -> [u8; 32] {
        match self {
            AnyVerifyingKey::Es256(key) => key.fingerprint(),
            AnyVerifyingKey::Sm2(key) => key.fingerprint(),
        }
    }

    /// [`AnyVerifyingKey::fingerprint`] as 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        match self {
            AnyVerifyingKey::Es256(key) => key.fingerprint_hex(),
            AnyVerifyingKey::Sm2(key) => key.fingerprint_hex(),
        }
    }

    /// The key as a JWK with `alg`, `use` and the key id `kid` (`crv` `P-256` or `SM2`).
    pub fn to_jwk(&self, kid: &str) -> serde_json::Value {
        match self {
            AnyVerifyingKey::Es256(key) => key.to_jwk(kid),
            AnyVerifyingKey::Sm2(key) => key.to_jwk(kid),
        }
    }

    /// Parses a public JWK of either suite, by its `crv`: `P-256` ([`VerifyingKey::from_jwk`])
    /// or `SM2` ([`Sm2VerifyingKey::from_jwk`]); any other curve is refused.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, SignError> {
        match jwk.get("crv").and_then(serde_json::Value::as_str) {
            Some("P-256") => VerifyingKey::from_jwk(jwk).map(AnyVerifyingKey::Es256),
            Some(SM2_JWK_CURVE) => Sm2VerifyingKey::from_jwk(jwk).map(AnyVerifyingKey::Sm2),
            Some(other) => Err(SignError::UnsupportedKey {
                reason: format!(
                    "the JWK's curve is {:?}; only P-256 (ES256) and SM2 (SM2SM3) sign",
                    other.chars().take(64).collect::<String>()
                ),
            }),
            None => Err(SignError::UnsupportedKey { reason: "the JWK has no curve (crv)".into() }),
        }
    }

    /// The key listed under `kid` in `jwks` (`{"keys": [JWK, …]}`, keys of either suite).
    /// Exactly one entry must carry that `kid`; entries with other key ids are not read.
    pub fn from_jwks(jwks: &serde_json::Value, kid: &str) -> Result<Self, SignError> {
        let bad = |reason: String| SignError::Jwks { reason };
        let keys = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| bad("it has no \"keys\" array".into()))?;
        let mut matching =
            keys.iter().filter(|jwk| jwk.get("kid").and_then(|k| k.as_str()) == Some(kid));
        let jwk = matching.next().ok_or_else(|| bad(format!("it has no key {kid:?}")))?;
        if matching.next().is_some() {
            return Err(bad(format!("it lists the key {kid:?} more than once")));
        }
        AnyVerifyingKey::from_jwk(jwk)
    }

    /// Verifies a compact JWS of the key's suite at time `now` ([`VerifyingKey::verify`] or
    /// [`Sm2VerifyingKey::verify`]); a token of the other suite is refused.
    pub fn verify<T: DeserializeOwned + Serialize>(
        &self,
        what: &'static str,
        token: &str,
        now: u64,
    ) -> Result<Signed<T>, SignError> {
        match self {
            AnyVerifyingKey::Es256(key) => key.verify(what, token, now),
            AnyVerifyingKey::Sm2(key) => key.verify(what, token, now),
        }
    }

    /// Verifies a raw-byte signature of the key's suite over `msg` under `domain`.
    pub fn verify_bytes(&self, domain: &str, msg: &[u8], signature: &str) -> Result<(), SignError> {
        match self {
            AnyVerifyingKey::Es256(key) => key.verify_bytes(domain, msg, signature),
            AnyVerifyingKey::Sm2(key) => key.verify_bytes(domain, msg, signature),
        }
    }
}

/// Verifies `token` with the key of `jwks` its header names by `kid` (either suite), at time
/// `now`: [`peek_key_id`], [`AnyVerifyingKey::from_jwks`], then [`AnyVerifyingKey::verify`].
/// The header chooses only which listed key to try; the algorithm is that key's.
pub fn verify_with_jwks<T: DeserializeOwned + Serialize>(
    what: &'static str,
    jwks: &serde_json::Value,
    token: &str,
    now: u64,
) -> Result<Signed<T>, SignError> {
    let kid = peek_key_id(token)
        .ok_or_else(|| SignError::Jwks { reason: format!("the {what} names no key id (kid)") })?;
    AnyVerifyingKey::from_jwks(jwks, &kid)?.verify(what, token, now)
}

impl fmt::Display for AnyVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for AnyVerifyingKey {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AnyVerifyingKey::from_text(s)
    }
}

impl From<VerifyingKey> for AnyVerifyingKey {
    fn from(key: VerifyingKey) -> Self {
        AnyVerifyingKey::Es256(key)
    }
}

impl From<Sm2VerifyingKey> for AnyVerifyingKey {
    fn from(key: Sm2VerifyingKey) -> Self {
        AnyVerifyingKey::Sm2(key)
    }
}

/// Every kind of Cloister key text, by prefix, and what a parser expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// `cloister-es256:`.
    Es256Public,
    /// `cloister-es256-secret:`.
    Es256Secret,
    /// `cloister-sm2sig:`.
    Sm2Public,
    /// `cloister-sm2sig-secret:`.
    Sm2Secret,
    /// `cloister-hpke-x25519:` (cloister-seal).
    EnvelopeX25519Public,
    /// `cloister-hpke-secret-x25519:` (cloister-seal).
    EnvelopeX25519Secret,
    /// `cloister-sm2:` (cloister-seal).
    EnvelopeSm2Public,
    /// `cloister-sm2-secret:` (cloister-seal).
    EnvelopeSm2Secret,
    /// What [`AnyVerifyingKey::from_text`] expects (never a text's kind).
    AnyPublic,
    /// What [`AnySigningKey::from_text`] expects (never a text's kind).
    AnySecret,
}

impl KeyKind {
    /// Every prefix a key text can have.
    const TEXT_KINDS: [KeyKind; 8] = [
        KeyKind::Es256Public,
        KeyKind::Es256Secret,
        KeyKind::Sm2Public,
        KeyKind::Sm2Secret,
        KeyKind::EnvelopeX25519Public,
        KeyKind::EnvelopeX25519Secret,
        KeyKind::EnvelopeSm2Public,
        KeyKind::EnvelopeSm2Secret,
    ];

    /// The text prefix (empty for the two "either suite" expectations).
    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Es256Public => "cloister-es256:",
            KeyKind::Es256Secret => "cloister-es256-secret:",
            KeyKind::Sm2Public => crate::sm2sig::SM2_PUBLIC_PREFIX,
            KeyKind::Sm2Secret => crate::sm2sig::SM2_SECRET_PREFIX,
            KeyKind::EnvelopeX25519Public => "cloister-hpke-x25519:",
            KeyKind::EnvelopeX25519Secret => "cloister-hpke-secret-x25519:",
            KeyKind::EnvelopeSm2Public => "cloister-sm2:",
            KeyKind::EnvelopeSm2Secret => "cloister-sm2-secret:",
            KeyKind::AnyPublic | KeyKind::AnySecret => "",
        }
    }

    /// What the kind is, for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            KeyKind::Es256Public => "an ES256 public signing key (`cloister-es256:`)",
            KeyKind::Es256Secret => "an ES256 secret signing key (`cloister-es256-secret:`)",
            KeyKind::Sm2Public => "an SM2 public signing key (`cloister-sm2sig:`)",
            KeyKind::Sm2Secret => "an SM2 secret signing key (`cloister-sm2sig-secret:`)",
            KeyKind::EnvelopeX25519Public => {
                "an X25519 envelope recipient key (`cloister-hpke-x25519:`)"
            }
            KeyKind::EnvelopeX25519Secret => {
                "an X25519 envelope secret key (`cloister-hpke-secret-x25519:`)"
            }
            KeyKind::EnvelopeSm2Public => "an SM2 envelope recipient key (`cloister-sm2:`)",
            KeyKind::EnvelopeSm2Secret => "an SM2 envelope secret key (`cloister-sm2-secret:`)",
            KeyKind::AnyPublic => "a public signing key (`cloister-es256:` or `cloister-sm2sig:`)",
            KeyKind::AnySecret => {
                "a secret signing key (`cloister-es256-secret:` or `cloister-sm2sig-secret:`)"
            }
        }
    }

    fn is_envelope(self) -> bool {
        matches!(
            self,
            KeyKind::EnvelopeX25519Public
                | KeyKind::EnvelopeX25519Secret
                | KeyKind::EnvelopeSm2Public
                | KeyKind::EnvelopeSm2Secret
        )
    }

    /// The kind of `text` by its prefix (after leading white space), if it is a Cloister key.
    pub(crate) fn of(text: &str) -> Option<KeyKind> {
        let text = text.trim_start();
        KeyKind::TEXT_KINDS.into_iter().find(|kind| text.starts_with(kind.prefix()))
    }

    /// The error for a key of this kind given where `expected` is needed.
    pub(crate) fn given_for(self, expected: KeyKind) -> SignError {
        if self.is_envelope() {
            SignError::EnvelopeKeyGiven { given: self.describe(), expected: expected.describe() }
        } else {
            SignError::WrongKeyKind { given: self.describe(), expected: expected.describe() }
        }
    }

    /// The error for a text that is no Cloister key, where this kind is needed.
    fn unknown(self) -> SignError {
        SignError::UnsupportedKey {
            reason: format!("the text is not {} (nor any other Cloister key)", self.describe()),
        }
    }

    /// The base64url body of `text`, a key of this kind (white space around it ignored); a key
    /// of another kind is refused and named.
    pub(crate) fn strip(self, text: &str) -> Result<&str, SignError> {
        let trimmed = text.trim();
        match KeyKind::of(trimmed) {
            Some(kind) if kind == self => {
                trimmed.strip_prefix(self.prefix()).ok_or_else(|| self.unknown())
            }
            Some(other) => Err(other.given_for(self)),
            None => Err(self.unknown()),
        }
    }
}
