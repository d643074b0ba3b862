//! Party signing keys and the compact JWS (RFC 7515) that carries EAR tokens, grants and
//! receipts, in two signature suites: ES256 (ECDSA P-256, the default) and, for instances
//! configured for ShangMi (GM/T), SM2 with SM3 (`alg` `SM2SM3`, `docs/formats/jws-sm2.md`).
//!
//! Every signed object in Cloister is a JWT whose custom claims are one of the `cloister-types`
//! structures. Verification is strict: the algorithm must be the verifying key's (ES256 for a
//! [`VerifyingKey`], SM2SM3 for an [`Sm2VerifyingKey`]; a token of the other suite is always
//! refused), the signature must verify with the key the caller names, the issuer must be that
//! key, and the token must be within its validity window at the time the caller gives (never
//! the wall clock implicitly).
//!
//! Every token names what it is: the `what` its signer passed (`"grant"`, `"grant revocation"`,
//! `"receipt"`, `"EAR attestation result"`, …) travels as the claim [`KIND_CLAIM`], and a token
//! verifies only as the same `what`. Statements of different kinds can share field names (a
//! grant has every field a revocation has), so without it one could be posted as the other (red
//! team, round 8: an owner's grant, which others hold, was accepted as that owner's revocation).
//!
//! Some records are not JWTs (the audit log's checkpoints): [`SigningKey::sign_bytes`] and
//! [`VerifyingKey::verify_bytes`] sign and verify raw bytes under a named *domain*, so that a
//! signature made for one purpose can never be replayed as one for another. The signed message
//! is `"cloister-sign-bytes v1\0"` ‖ u32 big-endian length of the domain ‖ domain ‖ message,
//! hashed with SHA-256 and signed with deterministic ECDSA P-256 (RFC 6979); the signature is
//! the 64-byte `r ‖ s` in unpadded base64url. [`Sm2SigningKey::sign_bytes`] signs the same
//! message with SM2/SM3 (deterministic `k`, RFC 6979 with HMAC-SM3).
//!
//! The ES256 types ([`SigningKey`], [`VerifyingKey`]) are unchanged for their callers. The SM2
//! types ([`Sm2SigningKey`], [`Sm2VerifyingKey`]) have the same methods. [`AnySigningKey`] and
//! [`AnyVerifyingKey`] hold a key of either suite ([`SignatureSuite`]) and dispatch on it, so a
//! caller configured for either suite has one code path; [`AnyVerifyingKey::from_jwks`] and
//! [`verify_with_jwks`] find the key a token names in a JWKS listing keys of both suites.
//!
//! Key text forms name their suite and role: `cloister-es256:` / `cloister-es256-secret:` and
//! `cloister-sm2sig:` / `cloister-sm2sig-secret:`. The SM2 *signing* prefixes differ from the
//! sealed envelope's SM2 *recipient* keys (`cloister-sm2:`, `cloister-sm2-secret:`), and every
//! parser here refuses an envelope key by name ([`SignError::EnvelopeKeyGiven`]), so that an
//! encryption key is not taken for a signing key by mistake (both encode a 32-byte scalar or a
//! compressed point; the prefix is what keeps them apart).

mod any;
mod sm2sig;

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{
    Clock, ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair, ES256PublicKey, JWTClaims,
    UnixTimeStamp, VerificationOptions,
};
use p256::ecdsa::signature::{MultipartSigner as _, MultipartVerifier as _};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use any::{AnySigningKey, AnyVerifyingKey, SignatureSuite, TokenSigner, verify_with_jwks};
pub use sm2sig::{
    SM2_DISTID, SM2_JWK_CURVE, SM2_JWS_ALG, SM2_PUBLIC_PREFIX, SM2_SECRET_PREFIX, Sm2SigningKey,
    Sm2VerifyingKey,
};

const PUBLIC_PREFIX: &str = "cloister-es256:";
const SECRET_PREFIX: &str = "cloister-es256-secret:";
/// Prefix of every message signed by [`SigningKey::sign_bytes`]: keeps raw-byte signatures apart
/// from JWS signing inputs (which start with a base64url header, never with this text).
const BYTES_PREFIX: &[u8] = b"cloister-sign-bytes v1\0";

/// The domain-separated parts of a raw-byte signature, in signing order.
fn bytes_message_parts<'a>(domain: &'a str, len: &'a [u8; 4], msg: &'a [u8]) -> [&'a [u8]; 4] {
    [BYTES_PREFIX, len, domain.as_bytes(), msg]
}

/// The big-endian length of a domain, saturated (domains are short literals in practice).
fn domain_len(domain: &str) -> [u8; 4] {
    u32::try_from(domain.len()).unwrap_or(u32::MAX).to_be_bytes()
}

/// Clock skew tolerated at both ends of a token's validity window, in seconds (both suites).
const CLOCK_SKEW_SECS: u64 = 60;

/// The claim naming what a token is (the `what` it was signed as).
pub const KIND_CLAIM: &str = "cloister.what";

/// A token's claims: its kind ([`KIND_CLAIM`]) beside the signer's own claims, in one JSON object.
#[derive(Serialize, Deserialize)]
pub(crate) struct Kinded<T> {
    #[serde(rename = "cloister.what")]
    pub(crate) what: String,
    #[serde(flatten)]
    pub(crate) claims: T,
}

impl<T> Kinded<T> {
    /// `claims` signed as `what`.
    pub(crate) fn new(what: &str, claims: T) -> Self {
        Kinded { what: what.to_owned(), claims }
    }

    /// The claims, if the token is a `what`; else why not.
    pub(crate) fn of_kind(self, what: &str) -> Result<T, String> {
        if self.what == what {
            return Ok(self.claims);
        }
        let found: String = self.what.chars().take(64).collect();
        Err(format!("the token is a {found:?}, not a {what:?}"))
    }
}

/// Why a key or token was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A key's text form is wrong.
    #[error("not a Cloister ES256 {kind} key (expected the prefix `{prefix}` and a P-256 key)")]
    BadKey {
        /// "public" or "secret".
        kind: &'static str,
        /// The expected prefix.
        prefix: &'static str,
    },
    /// Signing failed.
    #[error("could not sign the {what}: {reason}")]
    Sign {
        /// What was being signed.
        what: &'static str,
        /// The library's reason.
        reason: String,
    },
    /// The token's signature, algorithm, structure or validity window is wrong.
    #[error("the {what} does not verify with {key}: {reason}")]
    Verify {
        /// What was being verified.
        what: &'static str,
        /// The key it was checked against (public text form).
        key: String,
        /// The library's reason.
        reason: String,
    },
    /// A raw-byte signature (see [`SigningKey::sign_bytes`]) does not verify.
    #[error("the {domain} signature does not verify with {key}: {reason}")]
    BytesSignature {
        /// The domain the signature was checked under.
        domain: String,
        /// The key it was checked against (public text form).
        key: String,
        /// What is wrong: undecodable, or not made by this key over this domain and message.
        reason: &'static str,
    },
    /// An SM2 signing key's text form or JWK is wrong.
    #[error("not a usable SM2 signing {kind} key: {reason}")]
    BadSm2Key {
        /// "public", "secret" or "public (JWK)".
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A signing key of another suite or role was given (an ES256 key where an SM2 key is
    /// needed, a secret key where a public one is, or the other way round).
    #[error("{given} was given where {expected} is needed")]
    WrongKeyKind {
        /// The kind of key given.
        given: &'static str,
        /// The kind of key needed.
        expected: &'static str,
    },
    /// An envelope (encryption) key was given where a signing key is needed: the two are never
    /// interchangeable, even when both are SM2 keys.
    #[error(
        "{given} is an envelope encryption key, not a signing key: {expected} is needed \
         (envelope keys never sign, signing keys never receive envelopes)"
    )]
    EnvelopeKeyGiven {
        /// The kind of envelope key given.
        given: &'static str,
        /// The kind of signing key needed.
        expected: &'static str,
    },
    /// A key (text form or JWK) of no suite Cloister signs with.
    #[error("not a Cloister signing key of a known suite: {reason}")]
    UnsupportedKey {
        /// What was found.
        reason: String,
    },
    /// A JWKS does not give exactly one usable key for the token's key id.
    #[error("the token cannot be checked against the JWKS: {reason}")]
    Jwks {
        /// What is missing or repeated.
        reason: String,
    },
}

/// A party's secret signing key (P-256 ECDSA). Its `Debug` never shows the secret.
///
/// Tokens ([`SigningKey::sign`]) are signed with `ring`'s P-256, several times faster than the
/// pure-Rust one (the attestation service signs two per attestation); raw-byte signatures
/// ([`SigningKey::sign_bytes`]) stay deterministic (RFC 6979).
pub struct SigningKey(ES256KeyPair, OnceLock<Result<EcdsaKeyPair, String>>);

impl SigningKey {
    fn of(pair: ES256KeyPair) -> Self {
        SigningKey(pair, OnceLock::new())
    }

    /// The same key for `ring`, made on first use (from the scalar and the public point, which
    /// `ring` checks against each other).
    fn ring_key(&self) -> Result<&EcdsaKeyPair, String> {
        let made = self.1.get_or_init(|| {
            let scalar = Zeroizing::new(self.0.to_bytes());
            let point = self.0.public_key().public_key().to_bytes_uncompressed();
            EcdsaKeyPair::from_private_key_and_public_key(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &scalar,
                &point,
                &SystemRandom::new(),
            )
            .map_err(|e| format!("the key does not load into the signer: {e}"))
        });
        made.as_ref().map_err(Clone::clone)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        SigningKey::of(ES256KeyPair::generate())
    }

    /// The public half.
    pub fn public_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.public_key())
    }

    /// The key derived from secret keying material `ikm` under `label` (HKDF-SHA256, RFC 5869,
    /// with `label` ‖ a counter byte as info; the first output that is a valid P-256 scalar).
    /// The same material and label always give the same key; different labels give unrelated
    /// keys. For keys that must be the same on every replica holding one key file (the
    /// attestation service's signing key) without a second secret to distribute.
    pub fn derive(ikm: &[u8], label: &str) -> Result<Self, SignError> {
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(b"cloister-sign derive v1"), ikm);
        // A 32-byte output is zero or at least the group order with probability about 2^-32;
        // 16 tries failing together does not happen.
        for counter in 0u8..16 {
            let mut okm = Zeroizing::new([0u8; 32]);
            hkdf.expand_multi_info(&[label.as_bytes(), &[counter]], okm.as_mut_slice())
                .map_err(|e| SignError::Sign { what: "derived key", reason: e.to_string() })?;
            if let Ok(pair) = ES256KeyPair::from_bytes(okm.as_slice()) {
                return Ok(SigningKey::of(pair));
            }
        }
        Err(SignError::Sign { what: "derived key", reason: "no valid scalar in 16 tries".into() })
    }

    /// Text form for a key file: `cloister-es256-secret:` + base64url of the 32-byte scalar.
    pub fn to_text(&self) -> Zeroizing<String> {
        let raw = Zeroizing::new(self.0.to_bytes());
        Zeroizing::new(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(&*raw)))
    }

    /// Parses [`SigningKey::to_text`] output (surrounding white space is ignored).
    pub fn from_text(text: &str) -> Result<Self, SignError> {
        let bad = || SignError::BadKey { kind: "secret", prefix: SECRET_PREFIX };
        let body = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(bad)?;
        let raw = Zeroizing::new(URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?);
        ES256KeyPair::from_bytes(&raw).map(SigningKey::of).map_err(|_| bad())
    }

    /// Signs `claims` as a compact JWS valid from `issued_at` for `valid_for`: header
    /// `{"alg":"ES256","kid":…,"typ":"JWT"}` (`kid` when set), then the registered claims `iat`,
    /// `exp`, `nbf`, `iss` (this key's text form) and the custom ones, then the 64-byte `r ‖ s`.
    pub fn sign<T: Serialize>(
        &self,
        what: &'static str,
        claims: T,
        issued_at: u64,
        valid_for: Duration,
    ) -> Result<String, SignError> {
        let fail = |reason: String| SignError::Sign { what, reason };
        let expires_at = issued_at
            .checked_add(valid_for.as_secs())
            .ok_or_else(|| fail("the expiry time is past the end of time".into()))?;
        let jwt = JWTClaims {
            issued_at: Some(UnixTimeStamp::from_secs(issued_at)),
            expires_at: Some(UnixTimeStamp::from_secs(expires_at)),
            invalid_before: Some(UnixTimeStamp::from_secs(issued_at)),
            issuer: Some(self.public_key().to_text()),
            subject: None,
            audiences: None,
            jwt_id: None,
            nonce: None,
            custom: Kinded::new(what, claims),
        };
        let header = Es256Header { alg: "ES256", kid: self.0.key_id().as_deref(), typ: "JWT" };
        let header = serde_json::to_vec(&header).map_err(|e| fail(e.to_string()))?;
        let body = serde_json::to_vec(&jwt).map_err(|e| fail(e.to_string()))?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(body, &mut token);
        let key = self.ring_key().map_err(fail)?;
        let signature = key
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| fail("the ECDSA signer failed".into()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// Signs raw bytes under `domain` (a fixed text naming the purpose and its version, for
    /// example `cloister-audit-checkpoint v1`) and returns the 64-byte `r ‖ s` signature in
    /// unpadded base64url. Deterministic (RFC 6979): the same key, domain and message always
    /// give the same signature.
    pub fn sign_bytes(&self, domain: &str, msg: &[u8]) -> String {
        let key: &p256::ecdsa::SigningKey = self.0.key_pair().as_ref();
        let len = domain_len(domain);
        let signature: p256::ecdsa::Signature =
            key.multipart_sign(&bytes_message_parts(domain, &len, msg));
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    }

    /// Like [`SigningKey::sign`] with a key id in the JWS header (for JWKS lookup).
    pub fn with_key_id(self, kid: &str) -> Self {
        SigningKey::of(self.0.with_key_id(kid))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key())
    }
}

/// The JWS header [`SigningKey::sign`] writes, members in the order `jwt-simple` writes them.
#[derive(Serialize)]
struct Es256Header<'a> {
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    typ: &'static str,
}

/// A party's public verifying key (P-256 ECDSA).
#[derive(Clone)]
pub struct VerifyingKey(ES256PublicKey);

impl VerifyingKey {
    /// Text form: `cloister-es256:` + base64url of the SEC1 compressed point.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.0.to_bytes()))
    }

    /// SHA-256 of the SEC1 compressed point: what a party pins (`audit verify --service-key`,
    /// the service fingerprint bound into an enclave's runtime data).
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.0.to_bytes()).into()
    }

    /// [`VerifyingKey::fingerprint`] as 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`VerifyingKey::to_text`] output.
    pub fn from_text(text: &str) -> Result<Self, SignError> {
        let bad = || SignError::BadKey { kind: "public", prefix: PUBLIC_PREFIX };
        let body = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        ES256PublicKey::from_bytes(&raw).map(VerifyingKey).map_err(|_| bad())
    }

    /// The key as a JWK (with `alg`, `use` and the given key id).
    pub fn to_jwk(&self, kid: &str) -> serde_json::Value {
        let text = self.0.clone().with_key_id(kid).to_jwk();
        // The library produces JSON it can parse back; failing here would be a library bug.
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Parses a JWK (`kty: EC`, `crv: P-256`).
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, SignError> {
        ES256PublicKey::from_jwk(&jwk.to_string())
            .map(VerifyingKey)
            .map_err(|_| SignError::BadKey { kind: "public", prefix: "JWK" })
    }

    /// Verifies a compact JWS made by [`SigningKey::sign`] at time `now` (Unix seconds) and returns
    /// its claims. The issuer must be this key, and `now` must be within the validity window
    /// (one minute of clock skew is tolerated).
    pub fn verify<T: DeserializeOwned + Serialize>(
        &self,
        what: &'static str,
        token: &str,
        now: u64,
    ) -> Result<Signed<T>, SignError> {
        let options = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(CLOCK_SKEW_SECS)),
            allowed_issuers: Some([self.to_text()].into_iter().collect()),
            ..VerificationOptions::default()
        };
        let fail = |reason: String| SignError::Verify { what, key: self.to_text(), reason };
        let claims = self
            .0
            .verify_token::<Kinded<T>>(token, Some(options))
            .map_err(|e| fail(e.to_string()))?;
        let (Some(iat), Some(exp)) = (claims.issued_at, claims.expires_at) else {
            return Err(fail("the token has no issue or expiry time".into()));
        };
        Ok(Signed {
            claims: claims.custom.of_kind(what).map_err(fail)?,
            issued_at: iat.as_secs(),
            expires_at: exp.as_secs(),
            token_sha256: Sha256::digest(token.as_bytes()).into(),
        })
    }
}

impl VerifyingKey {
    /// Verifies a signature made by [`SigningKey::sign_bytes`] over `msg` under `domain`.
    /// A signature made under another domain, over other bytes or by another key is refused.
    pub fn verify_bytes(&self, domain: &str, msg: &[u8], signature: &str) -> Result<(), SignError> {
        let fail = |reason| SignError::BytesSignature {
            domain: domain.to_owned(),
            key: self.to_text(),
            reason,
        };
        let raw = URL_SAFE_NO_PAD
            .decode(signature.trim())
            .map_err(|_| fail("the signature is not unpadded base64url"))?;
        let signature = p256::ecdsa::Signature::from_slice(&raw)
            .map_err(|_| fail("the signature is not a 64-byte P-256 r || s value"))?;
        let key: &p256::ecdsa::VerifyingKey = self.0.public_key().as_ref();
        let len = domain_len(domain);
        key.multipart_verify(&bytes_message_parts(domain, &len, msg), &signature)
            .map_err(|_| fail("it was not made by this key over this domain and message"))
    }
}

impl fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.to_text())
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bytes() == other.0.to_bytes()
    }
}

impl Eq for VerifyingKey {}

impl FromStr for VerifyingKey {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VerifyingKey::from_text(s)
    }
}

/// Claims whose signature verified, with the token's validity window.
#[derive(Clone, Debug)]
pub struct Signed<T> {
    /// The verified claims.
    pub claims: T,
    /// Unix seconds the token was issued.
    pub issued_at: u64,
    /// Unix seconds the token expires.
    pub expires_at: u64,
    /// SHA-256 of the compact token text (what receipts name).
    pub token_sha256: [u8; 32],
}

/// The key id (`kid`) named in a compact JWS header, read without verifying anything; use it only
/// to choose which key to verify with.
pub fn peek_key_id(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("kid")?.as_str().map(str::to_owned)
}

/// The current Unix time in seconds, for callers that verify "now".
pub fn unix_now() -> u64 {
    Clock::now_since_epoch().as_secs()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Body {
        job: String,
    }

    fn body() -> Body {
        Body { job: "j1".into() }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let key = SigningKey::generate();
        let token = key.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
        let signed = key.public_key().verify::<Body>("grant", &token, 1_100).unwrap();
        assert_eq!(signed.claims, body());
        assert_eq!((signed.issued_at, signed.expires_at), (1_000, 1_600));
    }

    #[test]
    fn another_key_is_refused() {
        let key = SigningKey::generate();
        let token = key.sign("grant", body(), 1_000, Duration::from_secs(600)).unwrap();
        let err =
            SigningKey::generate().public_key().verify::<Body>("grant", &token, 1_100).unwrap_err();
        assert!(err.to_string().starts_with("the grant does not verify with cloister-es256:"));
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let key = SigningKey::generate();
        let token = key.sign("receipt", body(), 1_000, Duration::from_secs(600)).unwrap();
        assert!(key.public_key().verify::<Body>("receipt", &token, 1_700).is_err());
        assert!(key.public_key().verify::<Body>("receipt", &token, 800).is_err());
    }

    #[test]
    fn any_changed_character_is_refused() {
        let key = SigningKey::generate();
        let token = key.sign("receipt", body(), 1_000, Duration::from_secs(600)).unwrap();
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != token {
                assert!(
                    key.public_key().verify::<Body>("receipt", &tampered, 1_100).is_err(),
                    "position {i}"
                );
            }
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let key = SigningKey::generate();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            format!(r#"{{"iat":1000,"exp":2000,"iss":"{}","job":"j1"}}"#, key.public_key())
                .as_bytes(),
        );
        let token = format!("{header}.{claims}.");
        assert!(key.public_key().verify::<Body>("grant", &token, 1_100).is_err());
    }

    const DOMAIN: &str = "cloister-test-bytes v1";

    #[test]
    fn bytes_signatures_round_trip_and_are_deterministic() {
        let key = SigningKey::generate();
        let signature = key.sign_bytes(DOMAIN, b"seq=7");
        assert_eq!(signature, key.sign_bytes(DOMAIN, b"seq=7"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&signature).unwrap().len(), 64);
        key.public_key().verify_bytes(DOMAIN, b"seq=7", &signature).unwrap();
        // A key that went through its text form signs the same way.
        let again = SigningKey::from_text(&key.to_text()).unwrap();
        assert_eq!(again.sign_bytes(DOMAIN, b"seq=7"), signature);
    }

    #[test]
    fn bytes_signature_with_another_key_is_refused() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let signature = key.sign_bytes(DOMAIN, b"seq=7");
        let err = other.public_key().verify_bytes(DOMAIN, b"seq=7", &signature).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the {DOMAIN} signature does not verify with {}: it was not made by this key \
                 over this domain and message",
                other.public_key()
            )
        );
    }

    #[test]
    fn bytes_signature_under_another_domain_or_message_is_refused() {
        let key = SigningKey::generate();
        let signature = key.sign_bytes(DOMAIN, b"seq=7");
        let public = key.public_key();
        assert!(public.verify_bytes("cloister-test-bytes v2", b"seq=7", &signature).is_err());
        assert!(public.verify_bytes(DOMAIN, b"seq=8", &signature).is_err());
        assert!(public.verify_bytes(DOMAIN, b"", &signature).is_err());
        // Moving bytes between the domain and the message does not give the same signed text.
        let split = key.sign_bytes("ab", b"c");
        assert!(public.verify_bytes("a", b"bc", &split).is_err());
        public.verify_bytes("ab", b"c", &split).unwrap();
    }

    #[test]
    fn bytes_signature_with_any_flipped_bit_is_refused() {
        let key = SigningKey::generate();
        let signature = key.sign_bytes(DOMAIN, b"seq=7");
        let raw = URL_SAFE_NO_PAD.decode(&signature).unwrap();
        for bit in 0..raw.len() * 8 {
            let mut flipped = raw.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let flipped = URL_SAFE_NO_PAD.encode(&flipped);
            assert!(
                key.public_key().verify_bytes(DOMAIN, b"seq=7", &flipped).is_err(),
                "bit {bit}"
            );
        }
        let mut message = b"seq=7".to_vec();
        message[0] ^= 1;
        assert!(key.public_key().verify_bytes(DOMAIN, &message, &signature).is_err());
    }

    #[test]
    fn malformed_bytes_signatures_are_refused_with_a_reason() {
        let public = SigningKey::generate().public_key();
        let err = public.verify_bytes(DOMAIN, b"m", "not base64!").unwrap_err();
        assert!(err.to_string().ends_with("the signature is not unpadded base64url"), "{err}");
        let short = URL_SAFE_NO_PAD.encode([1u8; 63]);
        let err = public.verify_bytes(DOMAIN, b"m", &short).unwrap_err();
        assert!(err.to_string().ends_with("not a 64-byte P-256 r || s value"), "{err}");
        let zero = URL_SAFE_NO_PAD.encode([0u8; 64]);
        assert!(public.verify_bytes(DOMAIN, b"m", &zero).is_err());
    }

    #[test]
    fn key_text_forms_round_trip() {
        let key = SigningKey::generate();
        let again = SigningKey::from_text(&key.to_text()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = VerifyingKey::from_text(&key.public_key().to_text()).unwrap();
        assert_eq!(public, key.public_key());
        assert!(VerifyingKey::from_text("cloister-es256:AAAA").is_err());
        assert!(format!("{key:?}").starts_with("SigningKey(cloister-es256:"));
        let jwk = key.public_key().to_jwk("k1");
        assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap(), key.public_key());
    }

    #[test]
    fn derived_keys_depend_on_material_and_label_only() {
        let a = SigningKey::derive(b"material one", "purpose a").unwrap();
        let again = SigningKey::derive(b"material one", "purpose a").unwrap();
        assert_eq!(a.public_key(), again.public_key());
        let other_label = SigningKey::derive(b"material one", "purpose b").unwrap();
        let other_material = SigningKey::derive(b"material two", "purpose a").unwrap();
        assert_ne!(a.public_key(), other_label.public_key());
        assert_ne!(a.public_key(), other_material.public_key());
        // A derived key signs like any other.
        let token = a.sign("grant", body(), 1_000, Duration::from_secs(60)).unwrap();
        assert!(again.public_key().verify::<Body>("grant", &token, 1_010).is_ok());
        assert!(other_label.public_key().verify::<Body>("grant", &token, 1_010).is_err());
    }

    #[test]
    fn tokens_are_the_bytes_jwt_simple_writes_but_for_the_random_signature() {
        for kid in [None, Some("k-1")] {
            let mut key = SigningKey::derive(b"material", "jws").unwrap();
            if let Some(kid) = kid {
                key = key.with_key_id(kid);
            }
            let ours = key.sign("grant", body(), 1_000, Duration::from_secs(60)).unwrap();
            let claims = JWTClaims {
                issued_at: Some(UnixTimeStamp::from_secs(1_000)),
                expires_at: Some(UnixTimeStamp::from_secs(1_060)),
                invalid_before: Some(UnixTimeStamp::from_secs(1_000)),
                issuer: Some(key.public_key().to_text()),
                subject: None,
                audiences: None,
                jwt_id: None,
                nonce: None,
                custom: Kinded::new("grant", body()),
            };
            let theirs = key.0.sign(claims).unwrap();
            let (ours_signed, ours_signature) = ours.rsplit_once('.').unwrap();
            let (theirs_signed, _) = theirs.rsplit_once('.').unwrap();
            assert_eq!(ours_signed, theirs_signed, "same header and claims, byte for byte");
            assert_eq!(URL_SAFE_NO_PAD.decode(ours_signature).unwrap().len(), 64, "r || s");
            let header = URL_SAFE_NO_PAD.decode(ours.split('.').next().unwrap()).unwrap();
            let expected = match kid {
                None => r#"{"alg":"ES256","typ":"JWT"}"#.to_owned(),
                Some(kid) => format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT"}}"#),
            };
            assert_eq!(String::from_utf8(header).unwrap(), expected);
            // Both verify with the public key, through jwt-simple's verifier.
            for token in [&ours, &theirs] {
                assert_eq!(
                    key.public_key().verify::<Body>("grant", token, 1_010).unwrap().claims,
                    body()
                );
            }
            // A token from another key with the same claims does not.
            let other =
                SigningKey::generate().sign("grant", body(), 1_000, Duration::from_secs(60));
            assert!(key.public_key().verify::<Body>("grant", &other.unwrap(), 1_010).is_err());
        }
    }

    #[test]
    fn an_expiry_past_the_end_of_time_is_refused() {
        let key = SigningKey::generate();
        assert!(key.sign("grant", body(), u64::MAX - 5, Duration::from_secs(60)).is_err());
    }

    #[test]
    fn fingerprints_name_one_key() {
        let key = SigningKey::generate().public_key();
        let hex = key.fingerprint_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(VerifyingKey::from_text(&key.to_text()).unwrap().fingerprint_hex(), hex);
        assert_ne!(SigningKey::generate().public_key().fingerprint(), key.fingerprint());
    }
}
