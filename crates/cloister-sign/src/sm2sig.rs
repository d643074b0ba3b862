//! SM2 signing keys (curve sm2p256v1, GB/T 32918) and the compact JWS they sign, for instances
//! configured for the ShangMi (GM/T) suite. The format is specified in `docs/formats/jws-sm2.md`.
//!
//! A token is an RFC 7515 compact JWS whose header is `{"alg":"SM2SM3","typ":"JWT"}` (plus
//! `kid` when the key has one). No JWS `alg` value is registered for SM2, so Cloister names its
//! own: `SM2SM3` means an SM2 signature (GB/T 32918.2) with SM3 over `Z_A ‖ signing input`,
//! where `Z_A` is computed with the default distinguishing identifier [`SM2_DISTID`], and the
//! signature is the 64-byte `r ‖ s` (two 32-byte big-endian integers) in unpadded base64url.
//! The claims are the ES256 tokens' claims: `iat`, `exp`, `nbf`, `iss` (the signer's
//! `cloister-sm2sig:` public key text) and the custom claims flattened beside them.
//!
//! Keys have their own text prefixes, `cloister-sm2sig:` and `cloister-sm2sig-secret:`, apart
//! from the sealed envelope's SM2 recipient keys (`cloister-sm2:`, `cloister-sm2-secret:`): an
//! encryption key given where a signing key is expected is refused and named as such
//! ([`SignError::EnvelopeKeyGiven`]), so one key is never used for both purposes.
//!
//! The primitives are the RustCrypto `sm2` (signing, verification, `Z_A`) and `sm3` crates;
//! only the JWS framing is written here. Tokens are signed hedged: the `sm2` crate draws the
//! per-signature nonce `k` with RFC 6979 (HMAC-SM3) from the key, the message hash and 32 fresh
//! random bytes, so two tokens with the same claims differ, as ES256 tokens (ring) do; the
//! attestation service counts each enclave statement once by its token's digest and relies on
//! that. Raw-byte signatures ([`Sm2SigningKey::sign_bytes`]) stay deterministic. A verifier
//! cannot tell either `k` from a random one.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};
use sm2::dsa::signature::{MultipartSigner as _, MultipartVerifier as _};
use sm2::elliptic_curve::Generate as _;
use sm2::elliptic_curve::sec1::ToSec1Point as _;
use sm3::Sm3;
use zeroize::Zeroizing;

use crate::any::KeyKind;
use crate::{CLOCK_SKEW_SECS, SignError, Signed, bytes_message_parts, domain_len};

/// Text prefix of an SM2 signing public key.
pub const SM2_PUBLIC_PREFIX: &str = "cloister-sm2sig:";
/// Text prefix of an SM2 signing secret key.
pub const SM2_SECRET_PREFIX: &str = "cloister-sm2sig-secret:";
/// The JWS `alg` of SM2-signed tokens (not IANA-registered; see the module documentation).
pub const SM2_JWS_ALG: &str = "SM2SM3";
/// The JWK `crv` of SM2 keys (not IANA-registered; used by other SM2 JOSE implementations).
pub const SM2_JWK_CURVE: &str = "SM2";
/// The signer's distinguishing identifier hashed into `Z_A`: the default user identity of
/// GB/T 32918.2 / GM/T 0009 ("1234567812345678", 16 bytes, `ENTL` = 128 bits). Fixed for
/// every Cloister SM2 signature: a verifier never takes it from the token.
pub const SM2_DISTID: &str = "1234567812345678";

/// Length of an SM2 signature `r ‖ s`.
const SIGNATURE_LEN: usize = 64;
/// Length of a compressed SEC1 point (`02`/`03` ‖ x): the public key text form's payload.
const COMPRESSED_LEN: usize = 33;
/// Length of an uncompressed SEC1 point (`04` ‖ x ‖ y).
const UNCOMPRESSED_LEN: usize = 65;
/// Length of a scalar or coordinate.
const SCALAR_LEN: usize = 32;
/// Longest token the verifier reads (the limit the ES256 verifier applies).
const MAX_TOKEN_LEN: usize = 1_000_000;
/// Longest base64url header the verifier decodes (the limit the ES256 verifier applies).
const MAX_HEADER_LEN: usize = 8192;
/// HKDF salt of [`Sm2SigningKey::derive`]; differs from the ES256 derivation's salt so that the
/// same material and label give unrelated keys in the two suites.
const DERIVE_SALT: &[u8] = b"cloister-sign derive sm2 v1";

/// An SM2 signing secret key (a scalar d in 1..n−1 of sm2p256v1). Its `Debug` never shows the
/// secret.
///
/// The secret is held in the `sm2` crate's `dsa::SigningKey`, which does not zeroize itself on
/// drop; text forms are handed out in [`Zeroizing`] strings. Like [`crate::SigningKey`], it is
/// not `Clone`, so the secret is not copied around.
pub struct Sm2SigningKey {
    key: sm2::dsa::SigningKey,
    public: Sm2VerifyingKey,
    kid: Option<String>,
}

impl Sm2SigningKey {
    /// A fresh random key from the operating system's random number generator; an error (never
    /// a panic) if that generator fails.
    pub fn generate() -> Result<Self, SignError> {
        let secret = sm2::SecretKey::try_generate().map_err(|e| SignError::Sign {
            what: "SM2 signing key",
            reason: format!("the operating system's random number generator failed: {e}"),
        })?;
        Self::from_secret(&secret)
    }

    /// The key derived from secret keying material `ikm` under `label` (HKDF-SM3, RFC 5869 with
    /// SM3, salt `cloister-sign derive sm2 v1`, info `label` ‖ a counter byte; the first 32-byte
    /// output that is a scalar in 1..n−1). The same material and label always give the same
    /// key; different labels give unrelated keys, and so does [`crate::SigningKey::derive`]
    /// with the same arguments (another salt and hash).
    pub fn derive(ikm: &[u8], label: &str) -> Result<Self, SignError> {
        let hkdf = hkdf::Hkdf::<Sm3>::new(Some(DERIVE_SALT), ikm);
        // A 32-byte output is zero or at least the group order with probability about 2^-32;
        // 16 tries failing together does not happen.
        for counter in 0u8..16 {
            let mut okm = Zeroizing::new([0u8; SCALAR_LEN]);
            hkdf.expand_multi_info(&[label.as_bytes(), &[counter]], okm.as_mut_slice())
                .map_err(|e| SignError::Sign { what: "derived SM2 key", reason: e.to_string() })?;
            if let Ok(secret) = sm2::SecretKey::from_bytes(&(*okm).into()) {
                return Self::from_secret(&secret);
            }
        }
        Err(SignError::Sign {
            what: "derived SM2 key",
            reason: "no valid scalar in 16 tries".into(),
        })
    }

    fn from_secret(secret: &sm2::SecretKey) -> Result<Self, SignError> {
        let key = sm2::dsa::SigningKey::new(SM2_DISTID, secret).map_err(|_| SignError::Sign {
            what: "SM2 signing key",
            reason: "the sm2 crate refused the key".into(),
        })?;
        let public = Sm2VerifyingKey::from_public(secret.public_key())
            .map_err(|reason| SignError::BadSm2Key { kind: "secret", reason })?;
        Ok(Sm2SigningKey { key, public, kid: None })
    }

    /// The public half.
    pub fn public_key(&self) -> Sm2VerifyingKey {
        self.public.clone()
    }

    /// Text form for a key file: `cloister-sm2sig-secret:` + base64url (no padding) of the
    /// 32-byte big-endian scalar.
    pub fn to_text(&self) -> Zeroizing<String> {
        let raw = Zeroizing::new(<[u8; SCALAR_LEN]>::from(self.key.to_bytes()));
        let mut text = Zeroizing::new(String::with_capacity(SM2_SECRET_PREFIX.len() + 43));
        text.push_str(SM2_SECRET_PREFIX);
        URL_SAFE_NO_PAD.encode_string(raw.as_slice(), &mut text);
        text
    }

    /// Parses [`Sm2SigningKey::to_text`] output (surrounding white space is ignored): exactly 32
    /// bytes, a scalar in 1..n−1. Any other Cloister key (an envelope key above all) is refused
    /// with an error that names it.
    pub fn from_text(text: &str) -> Result<Self, SignError> {
        let body = KeyKind::Sm2Secret.strip(text)?;
        let bad = |reason| SignError::BadSm2Key { kind: "secret", reason };
        let raw = Zeroizing::new(
            URL_SAFE_NO_PAD.decode(body).map_err(|_| bad("the key is not unpadded base64url"))?,
        );
        let bytes: Zeroizing<[u8; SCALAR_LEN]> =
            Zeroizing::new(raw.as_slice().try_into().map_err(|_| bad("the key is not 32 bytes"))?);
        let secret = sm2::SecretKey::from_bytes(&(*bytes).into())
            .map_err(|_| bad("the key is not a scalar between 1 and n-1"))?;
        Self::from_secret(&secret)
    }

    /// The same key, naming `kid` in the header of the tokens it signs (for JWKS lookup).
    pub fn with_key_id(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }

    /// Signs `claims` as a compact JWS (`alg` `SM2SM3`) valid from `issued_at` for
    /// `valid_for`, with the claims of [`crate::SigningKey::sign`]: `iat` = `nbf` = `issued_at`,
    /// `exp` = `issued_at` + `valid_for`, `iss` = this key's public text, and the custom claims
    /// (which must serialize as a JSON object) beside them.
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
        let issuer = self.public.to_text();
        let header = OutgoingHeader { alg: SM2_JWS_ALG, typ: "JWT", kid: self.kid.as_deref() };
        let body = OutgoingClaims {
            iat: issued_at,
            exp: expires_at,
            nbf: issued_at,
            iss: &issuer,
            custom: crate::Kinded::new(what, claims),
        };
        let header = serde_json::to_vec(&header).map_err(|e| fail(e.to_string()))?;
        let body = serde_json::to_vec(&body).map_err(|e| fail(e.to_string()))?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(body, &mut token);
        let signature = self.sign_parts_hedged(&[token.as_bytes()]).map_err(fail)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// Signs raw bytes under `domain`, exactly as [`crate::SigningKey::sign_bytes`] frames them
    /// (`"cloister-sign-bytes v1\0"` ‖ u32 big-endian domain length ‖ domain ‖ message), with
    /// SM2/SM3 instead of ECDSA P-256; returns the 64-byte `r ‖ s` in unpadded base64url.
    /// Deterministic: the same key, domain and message always give the same signature.
    pub fn sign_bytes(&self, domain: &str, msg: &[u8]) -> Result<String, SignError> {
        let len = domain_len(domain);
        let signature = self
            .sign_parts(&bytes_message_parts(domain, &len, msg))
            .map_err(|reason| SignError::Sign { what: "raw-byte signature", reason })?;
        Ok(URL_SAFE_NO_PAD.encode(signature))
    }

    /// [`Self::sign_parts`] with 32 bytes from the operating system mixed into `k` (hedged
    /// RFC 6979).
    fn sign_parts_hedged(&self, parts: &[&[u8]]) -> Result<[u8; SIGNATURE_LEN], String> {
        use sm2::dsa::signature::RandomizedMultipartSigner as _;
        let signature: sm2::dsa::Signature = self
            .key
            .try_multipart_sign_with_rng(&mut SystemRng(ring::rand::SystemRandom::new()), parts)
            .map_err(|e| format!("SM2 signing failed: {e}"))?;
        Ok(signature.to_bytes().into())
    }

    /// The 64-byte `r ‖ s` signature over the concatenation of `parts`.
    fn sign_parts(&self, parts: &[&[u8]]) -> Result<[u8; SIGNATURE_LEN], String> {
        let signature: sm2::dsa::Signature =
            self.key.try_multipart_sign(parts).map_err(|e| format!("SM2 signing failed: {e}"))?;
        Ok(signature.to_bytes().into())
    }
}

impl fmt::Debug for Sm2SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sm2SigningKey({})", self.public)
    }
}

/// An SM2 signing public key (a point of sm2p256v1, never the identity), with the default
/// distinguishing identifier [`SM2_DISTID`].
#[derive(Clone)]
pub struct Sm2VerifyingKey {
    key: sm2::dsa::VerifyingKey,
    compressed: [u8; COMPRESSED_LEN],
    uncompressed: [u8; UNCOMPRESSED_LEN],
}

/// Why an SM2 signature was refused (the raw check shared by tokens and raw bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureFailure {
    /// The signature is not 64 bytes.
    Length,
    /// `r` or `s` is zero or not below the group order.
    Scalars,
    /// The signature is not this key's over this message.
    Mismatch,
}

impl Sm2VerifyingKey {
    fn from_public(public: sm2::PublicKey) -> Result<Self, &'static str> {
        let compressed = public
            .to_sec1_point(true)
            .as_bytes()
            .try_into()
            .map_err(|_| "the point has no 33-byte compressed encoding")?;
        let uncompressed = public
            .to_sec1_point(false)
            .as_bytes()
            .try_into()
            .map_err(|_| "the point has no 65-byte uncompressed encoding")?;
        let key = sm2::dsa::VerifyingKey::new(SM2_DISTID, public)
            .map_err(|_| "the sm2 crate refused the key")?;
        Ok(Sm2VerifyingKey { key, compressed, uncompressed })
    }

    /// Text form: `cloister-sm2sig:` + base64url (no padding) of the 33-byte compressed SEC1
    /// point.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(SM2_PUBLIC_PREFIX.len() + 44);
        text.push_str(SM2_PUBLIC_PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.compressed, &mut text);
        text
    }

    /// Parses [`Sm2VerifyingKey::to_text`] output (surrounding white space is ignored): exactly
    /// a 33-byte compressed point on the curve. Any other Cloister key (an envelope key above
    /// all) is refused with an error that names it.
    pub fn from_text(text: &str) -> Result<Self, SignError> {
        let body = KeyKind::Sm2Public.strip(text)?;
        let bad = |reason| SignError::BadSm2Key { kind: "public", reason };
        let raw =
            URL_SAFE_NO_PAD.decode(body).map_err(|_| bad("the key is not unpadded base64url"))?;
        if raw.len() != COMPRESSED_LEN || !matches!(raw.first(), Some(0x02 | 0x03)) {
            return Err(bad("the key is not a 33-byte compressed point (02 or 03 and x)"));
        }
        let public = sm2::PublicKey::from_sec1_bytes(&raw)
            .map_err(|_| bad("the key is not a point on the SM2 curve"))?;
        Self::from_public(public).map_err(bad)
    }

    /// SM3 of the 33-byte compressed SEC1 point: what a party pins. SM3 rather than the SHA-256
    /// of ES256 keys' fingerprints, so that a ShangMi deployment uses GM/T algorithms only and
    /// an SM2 key's fingerprint is never computed like a P-256 key's.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sm3::digest(self.compressed).into()
    }

    /// [`Sm2VerifyingKey::fingerprint`] as 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key as a JWK: `{"kty":"EC","crv":"SM2","x","y","alg":"SM2SM3","use":"sig","kid"}`,
    /// `x` and `y` the 32-byte big-endian coordinates in unpadded base64url. `crv` `SM2` and
    /// `alg` `SM2SM3` are not IANA-registered (see `docs/formats/jws-sm2.md`).
    pub fn to_jwk(&self, kid: &str) -> serde_json::Value {
        let (x, y) = self.coordinates();
        serde_json::json!({
            "kty": "EC",
            "crv": SM2_JWK_CURVE,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "alg": SM2_JWS_ALG,
            "use": "sig",
            "kid": kid,
        })
    }

    /// Parses a public JWK of [`Sm2VerifyingKey::to_jwk`]'s form: `kty` `EC`, `crv` `SM2`, `x`
    /// and `y` of exactly 32 bytes each making a point on the curve; `alg` (when present) must
    /// be `SM2SM3`, `use` `sig`, `key_ops` only `verify`. A private key (`d`), or members of
    /// another key type, are refused; a P-256 JWK is refused naming the curve.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, SignError> {
        let bad = |reason| SignError::BadSm2Key { kind: "public (JWK)", reason };
        let member = |name: &str| jwk.get(name);
        let text = |name: &str| member(name).and_then(serde_json::Value::as_str);
        if !jwk.is_object() {
            return Err(bad("the JWK is not a JSON object"));
        }
        if text("kty") != Some("EC") {
            return Err(bad("kty is not EC"));
        }
        match text("crv") {
            Some(SM2_JWK_CURVE) => {}
            Some("P-256") => {
                return Err(SignError::WrongKeyKind {
                    given: KeyKind::Es256Public.describe(),
                    expected: KeyKind::Sm2Public.describe(),
                });
            }
            _ => return Err(bad("crv is not SM2")),
        }
        if member("d").is_some() {
            return Err(bad("the JWK holds a private key (d)"));
        }
        if FOREIGN_MEMBERS.iter().any(|name| member(name).is_some()) {
            return Err(bad("the JWK has members of another key type"));
        }
        if member("alg").is_some_and(|alg| alg.as_str() != Some(SM2_JWS_ALG)) {
            return Err(bad("alg is not SM2SM3"));
        }
        if member("use").is_some_and(|key_use| key_use.as_str() != Some("sig")) {
            return Err(bad("use is not sig"));
        }
        if let Some(ops) = member("key_ops") {
            let only_verify = ops.as_array().is_some_and(|ops| {
                ops.len() <= 1 && ops.iter().all(|op| op.as_str() == Some("verify"))
            });
            if !only_verify {
                return Err(bad("key_ops is not [\"verify\"]"));
            }
        }
        let coordinate = |name| {
            let value = text(name).ok_or_else(|| bad("x or y is missing or not a string"))?;
            let raw = URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| bad("x or y is not unpadded base64url"))?;
            <[u8; SCALAR_LEN]>::try_from(raw.as_slice())
                .map_err(|_| bad("x or y is not exactly 32 bytes"))
        };
        let (x, y) = (coordinate("x")?, coordinate("y")?);
        let mut point = [0x04u8; UNCOMPRESSED_LEN];
        let (xs, ys) = point[1..].split_at_mut(SCALAR_LEN);
        xs.copy_from_slice(&x);
        ys.copy_from_slice(&y);
        let public = sm2::PublicKey::from_sec1_bytes(&point)
            .map_err(|_| bad("(x, y) is not a point on the SM2 curve"))?;
        Self::from_public(public).map_err(bad)
    }

    /// The affine coordinates `x` and `y`, 32 big-endian bytes each.
    fn coordinates(&self) -> (&[u8], &[u8]) {
        self.uncompressed[1..].split_at(SCALAR_LEN)
    }

    /// Verifies a compact JWS made by [`Sm2SigningKey::sign`] at time `now` (Unix seconds) and
    /// returns its claims, as strictly as [`crate::VerifyingKey::verify`] checks ES256 tokens:
    /// exactly three parts; a JSON object header whose `alg` is `SM2SM3` (an ES256 token, or
    /// any other `alg`, is refused), with no `crit` (nor `b64`) member and a `typ`, if any, of
    /// `JWT`; a 64-byte `r ‖ s` signature by this key over the signing input; `iat` and `exp`
    /// present; the issuer this key; `now` within the validity window (one minute of clock skew
    /// is tolerated).
    pub fn verify<T: DeserializeOwned + Serialize>(
        &self,
        what: &'static str,
        token: &str,
        now: u64,
    ) -> Result<Signed<T>, SignError> {
        let fail = |reason| SignError::Verify { what, key: self.to_text(), reason };
        let checked: IncomingClaims<crate::Kinded<T>> =
            self.check_token(token, now).map_err(fail)?;
        Ok(Signed {
            claims: checked.custom.of_kind(what).map_err(fail)?,
            issued_at: checked.iat,
            expires_at: checked.exp,
            token_sha256: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Every check of [`Sm2VerifyingKey::verify`]; the error is the reason.
    fn check_token<T: DeserializeOwned>(
        &self,
        token: &str,
        now: u64,
    ) -> Result<IncomingClaims<T>, String> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(format!("the token is longer than {MAX_TOKEN_LEN} bytes"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the token is not a compact JWS (three parts separated by dots)".into());
        };
        if header_b64.len() > MAX_HEADER_LEN {
            return Err(format!("the header is longer than {MAX_HEADER_LEN} characters"));
        }
        let header = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| "the header is not unpadded base64url".to_owned())?;
        let header: IncomingHeader =
            json_object(&header).map_err(|e| format!("the header is not a JOSE header: {e}"))?;
        if header.alg != SM2_JWS_ALG {
            return Err(format!(
                "the token's algorithm is {:?}, not {SM2_JWS_ALG}",
                truncated(&header.alg)
            ));
        }
        if header.crit.0 {
            return Err("the header has a crit member; no critical extension is understood".into());
        }
        if header.b64.0 {
            return Err("the header has a b64 member; unencoded payloads are not accepted".into());
        }
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_uppercase();
            if typ != "JWT" && !typ.ends_with("+JWT") {
                return Err(format!("the header's typ is {:?}, not JWT", truncated(&typ)));
            }
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| "the signature is not unpadded base64url".to_owned())?;
        let signing_input = token
            .get(..header_b64.len() + 1 + claims_b64.len())
            .ok_or_else(|| "the token has no signing input".to_owned())?;
        self.verify_parts(&[signing_input.as_bytes()], &signature).map_err(
            |failure| match failure {
                SignatureFailure::Length => format!(
                    "the signature is {} bytes, not the {SIGNATURE_LEN}-byte SM2 r || s",
                    signature.len()
                ),
                SignatureFailure::Scalars => "the signature's r or s is not in 1..n-1".into(),
                SignatureFailure::Mismatch => "the signature does not verify".into(),
            },
        )?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| "the claims are not unpadded base64url".to_owned())?;
        let claims: IncomingClaims<T> =
            json_object(&claims).map_err(|e| format!("the claims do not parse: {e}"))?;
        if claims.iss != self.to_text() {
            return Err(format!("the issuer is {:?}, not this key", truncated(&claims.iss)));
        }
        let latest = now.saturating_add(CLOCK_SKEW_SECS);
        if claims.iat > latest {
            return Err(format!("the token was issued in the future (iat {})", claims.iat));
        }
        if let Some(nbf) = claims.nbf
            && nbf > latest
        {
            return Err(format!("the token is not valid before {nbf}"));
        }
        if claims.exp.saturating_add(CLOCK_SKEW_SECS) < now {
            return Err(format!("the token expired at {}", claims.exp));
        }
        Ok(claims)
    }

    /// Verifies a signature made by [`Sm2SigningKey::sign_bytes`] over `msg` under `domain`.
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
        let len = domain_len(domain);
        self.verify_parts(&bytes_message_parts(domain, &len, msg), &raw).map_err(|failure| {
            fail(match failure {
                SignatureFailure::Length | SignatureFailure::Scalars => {
                    "the signature is not a 64-byte SM2 r || s value"
                }
                SignatureFailure::Mismatch => {
                    "it was not made by this key over this domain and message"
                }
            })
        })
    }

    /// Verifies the 64-byte `r ‖ s` `signature` over the concatenation of `parts`: SM2 with
    /// SM3 over `Z_A ‖ message`, `Z_A` for this key and [`SM2_DISTID`].
    pub(crate) fn verify_parts(
        &self,
        parts: &[&[u8]],
        signature: &[u8],
    ) -> Result<(), SignatureFailure> {
        if signature.len() != SIGNATURE_LEN {
            return Err(SignatureFailure::Length);
        }
        let signature =
            sm2::dsa::Signature::from_slice(signature).map_err(|_| SignatureFailure::Scalars)?;
        self.key.multipart_verify(parts, &signature).map_err(|_| SignatureFailure::Mismatch)
    }
}

/// Members of other JWK key types (RSA, oct, OKP, AKP) an SM2 public JWK must not carry.
const FOREIGN_MEMBERS: [&str; 11] =
    ["n", "e", "p", "q", "dp", "dq", "qi", "oth", "k", "pub", "priv"];

/// At most 64 characters of attacker-chosen text, for error messages.
fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Parses `bytes` as a JSON object into `T` (a JSON array is not accepted in its place).
fn json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let start = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if start != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

impl fmt::Display for Sm2VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for Sm2VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sm2VerifyingKey({})", self.to_text())
    }
}

impl PartialEq for Sm2VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.compressed == other.compressed
    }
}

impl Eq for Sm2VerifyingKey {}

impl FromStr for Sm2VerifyingKey {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sm2VerifyingKey::from_text(s)
    }
}

/// The header [`Sm2SigningKey::sign`] writes.
#[derive(Serialize)]
struct OutgoingHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

/// The claims [`Sm2SigningKey::sign`] writes: the registered ones, then the custom ones.
#[derive(Serialize)]
struct OutgoingClaims<'a, T> {
    iat: u64,
    exp: u64,
    nbf: u64,
    iss: &'a str,
    #[serde(flatten)]
    custom: T,
}

/// The header members the verifier reads; others are ignored, a repeated one is refused.
#[derive(Deserialize)]
struct IncomingHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default, rename = "kid")]
    _kid: Option<String>,
    #[serde(default)]
    crit: Present,
    #[serde(default)]
    b64: Present,
}

/// The claims the verifier reads: `iat`, `exp` and `iss` are required, `nbf` optional, and the
/// remaining members are the custom claims.
#[derive(Deserialize)]
struct IncomingClaims<T> {
    iat: u64,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    iss: String,
    #[serde(flatten)]
    custom: T,
}

/// Whether a header member is present, whatever its value (even `null`).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

/// The operating system's random generator (ring's), as the `rand_core` generator the `sm2`
/// crate's hedged signing takes.
struct SystemRng(ring::rand::SystemRandom);

/// The operating system's random generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
struct RngFailed;

impl sm2::elliptic_curve::rand_core::TryRng for SystemRng {
    type Error = RngFailed;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        ring::rand::SecureRandom::fill(&self.0, dst).map_err(|_| RngFailed)
    }
}

impl sm2::elliptic_curve::rand_core::TryCryptoRng for SystemRng {}

#[cfg(test)]
mod tests;
