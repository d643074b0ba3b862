//! Trust anchors of Arm's COSE-protected tokens: the keys an instance accepts CCA platform tokens
//! (CPAKs) and PSA attestation tokens (IAKs) from.
//!
//! Neither Arm CCA nor PSA has a global vendor root: each device's attestation key is endorsed by
//! its manufacturer, and a verifier lists the keys it trusts. Each anchor given to
//! [`crate::TrustAnchors::with_root`] for `TeeKind::Cca` or `TeeKind::Psa` may be:
//!
//! - a JWK: an EC public key (`{"kty": "EC", "crv": "P-256" | "P-384" | "P-521", "x": …, "y": …}`,
//!   each coordinate 32, 48 or 66 bytes, with an optional `"alg"` that must be the curve's:
//!   `"ES256"`, `"ES384"` or `"ES512"`) or, for
//!   PSA COSE_Mac0 tokens only, a symmetric key (`{"kty": "oct", "k": <base64url>}`, at least 32
//!   bytes, with an optional `"alg"` of `"HS256"`, `"HS384"` or `"HS512"` restricting it);
//! - a Veraison trust-anchor entry `{"pkey": <JWK>, "implementation-id": <hex>,
//!   "instance-id": <hex>}` (both ids optional), or a JSON array of JWKs or entries; the ids the
//!   entry carries must then equal the token's;
//! - a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, id-ecPublicKey on secp256r1, secp384r1 or
//!   secp521r1) or the same in DER.
//!
//! An anchor that is none of these is refused, never skipped; each driver also refuses the key
//! kinds it cannot use (CCA: symmetric keys).

use base64::Engine as _;
use serde_json::Value as Json;
use zeroize::Zeroizing;

use crate::x509::PublicKey;

/// One trusted key, with the device identities its endorsement is restricted to.
#[derive(Clone, Debug)]
pub(crate) struct KeyAnchor {
    pub(crate) key: AnchorKey,
    pub(crate) restriction: Restriction,
}

/// The device identities an anchor's endorsement is restricted to (`None`: any).
#[derive(Clone, Debug, Default)]
pub(crate) struct Restriction {
    pub(crate) implementation_id: Option<Vec<u8>>,
    pub(crate) instance_id: Option<Vec<u8>>,
}

/// A token's id that an anchor's restriction does not admit.
#[derive(Debug)]
pub(crate) struct IdMismatch {
    /// `implementation id` or `instance id`.
    pub(crate) field: &'static str,
    /// The token's value, hex.
    pub(crate) token: String,
    /// The anchor's value, hex.
    pub(crate) anchor: String,
}

impl Restriction {
    /// Whether a token with these ids may be endorsed by the anchor.
    fn admits(&self, implementation_id: &[u8], instance_id: &[u8]) -> Result<(), IdMismatch> {
        let checks = [
            ("implementation id", &self.implementation_id, implementation_id),
            ("instance id", &self.instance_id, instance_id),
        ];
        for (field, anchor, token) in checks {
            if let Some(anchor) = anchor
                && anchor.as_slice() != token
            {
                return Err(IdMismatch {
                    field,
                    token: hex::encode(token),
                    anchor: hex::encode(anchor),
                });
            }
        }
        Ok(())
    }
}

/// Among `candidates` (anchors whose key verified the token), the first whose restriction
/// admits the token's ids; otherwise the mismatch of the first one (`None`: no candidate).
pub(crate) fn first_admitting<'a, T>(
    candidates: &[&'a T],
    restriction: impl Fn(&T) -> &Restriction,
    implementation_id: &[u8],
    instance_id: &[u8],
) -> Result<&'a T, Option<IdMismatch>> {
    let mut first_mismatch = None;
    for candidate in candidates {
        match restriction(candidate).admits(implementation_id, instance_id) {
            Ok(()) => return Ok(candidate),
            Err(mismatch) => {
                first_mismatch.get_or_insert(mismatch);
            }
        }
    }
    Err(first_mismatch)
}

/// The key of an anchor.
#[derive(Clone)]
pub(crate) enum AnchorKey {
    /// An EC public key (P-256, P-384 or P-521).
    Public(PublicKey),
    /// A symmetric MAC key, and the one HMAC algorithm it is restricted to, if its JWK names one.
    Symmetric { key: Zeroizing<Vec<u8>>, alg: Option<HmacAlg> },
}

impl std::fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnchorKey::Public(key) => f.debug_tuple("Public").field(key).finish(),
            // The secret never reaches a log.
            AnchorKey::Symmetric { key, alg } => f
                .debug_struct("Symmetric")
                .field("len", &key.len())
                .field("alg", alg)
                .finish_non_exhaustive(),
        }
    }
}

/// The HMAC algorithms of COSE (RFC 9053 §3.1) this verifier computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HmacAlg {
    /// HMAC with SHA-256, 256-bit tag (COSE 5, JOSE `HS256`).
    Sha256,
    /// HMAC with SHA-384, 384-bit tag (COSE 6, JOSE `HS384`).
    Sha384,
    /// HMAC with SHA-512, 512-bit tag (COSE 7, JOSE `HS512`).
    Sha512,
}

impl HmacAlg {
    /// The tag length in bytes, which is also the shortest key JWA allows (RFC 7518 §3.2).
    pub(crate) fn len(self) -> usize {
        match self {
            HmacAlg::Sha256 => 32,
            HmacAlg::Sha384 => 48,
            HmacAlg::Sha512 => 64,
        }
    }
}

/// The shortest symmetric key accepted at all: 256 bits (the shortest tag this verifier takes).
const MIN_SYMMETRIC_KEY: usize = 32;

/// Reads one anchor's bytes into the keys it lists; the error says why it is unusable.
pub(crate) fn parse_anchor(bytes: &[u8]) -> Result<Vec<KeyAnchor>, String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim_start);
    match text {
        Some(text) if text.starts_with('{') || text.starts_with('[') => {
            let json: Json =
                serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
            parse_json(&json)
        }
        Some(text) if text.starts_with("-----BEGIN ") => {
            let der = pem_public_key(text)?;
            spki_anchor(&der)
        }
        _ => spki_anchor(bytes),
    }
}

fn spki_anchor(der: &[u8]) -> Result<Vec<KeyAnchor>, String> {
    let key = PublicKey::from_spki_der(der)
        .map_err(|e| format!("not a DER SubjectPublicKeyInfo: {e}"))?;
    Ok(vec![unrestricted(AnchorKey::Public(ec_only(key)?))])
}

fn unrestricted(key: AnchorKey) -> KeyAnchor {
    KeyAnchor { key, restriction: Restriction::default() }
}

fn ec_only(key: PublicKey) -> Result<PublicKey, String> {
    match key {
        PublicKey::Rsa(_) => {
            Err("an RSA key cannot be an attestation key (P-256, P-384 or P-521 only)".into())
        }
        key => Ok(key),
    }
}

fn parse_json(json: &Json) -> Result<Vec<KeyAnchor>, String> {
    match json {
        Json::Array(items) if items.is_empty() => Err("the JSON array is empty".into()),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| parse_entry(item).map_err(|e| format!("entry {index}: {e}")))
            .collect(),
        other => Ok(vec![parse_entry(other)?]),
    }
}

fn parse_entry(json: &Json) -> Result<KeyAnchor, String> {
    let Json::Object(object) = json else {
        return Err("expected a JWK or a trust-anchor object".into());
    };
    if object.contains_key("kty") {
        return Ok(unrestricted(parse_jwk(json)?));
    }
    let pkey = object.get("pkey").ok_or("expected a JWK (\"kty\") or a \"pkey\" member")?;
    for name in object.keys() {
        if !matches!(name.as_str(), "pkey" | "implementation-id" | "instance-id") {
            return Err(format!("unknown trust-anchor member {name:?}"));
        }
    }
    let id = |name: &str, len: usize| -> Result<Option<Vec<u8>>, String> {
        let Some(value) = object.get(name) else { return Ok(None) };
        let text = value.as_str().ok_or_else(|| format!("{name} is not a hex string"))?;
        let bytes = hex::decode(text).map_err(|e| format!("{name} is not hex: {e}"))?;
        if bytes.len() != len {
            return Err(format!("{name} is {} bytes, expected {len}", bytes.len()));
        }
        Ok(Some(bytes))
    };
    Ok(KeyAnchor {
        key: parse_jwk(pkey)?,
        restriction: Restriction {
            implementation_id: id("implementation-id", 32)?,
            instance_id: id("instance-id", 33)?,
        },
    })
}

/// A JWK: an EC public key on P-256, P-384 or P-521, or a symmetric key.
fn parse_jwk(json: &Json) -> Result<AnchorKey, String> {
    match json.get("kty").and_then(Json::as_str) {
        Some("EC") => parse_ec_jwk(json).map(AnchorKey::Public),
        Some("oct") => parse_oct_jwk(json),
        other => Err(format!("the JWK's kty is not \"EC\" or \"oct\" ({other:?})")),
    }
}

/// A symmetric JWK (RFC 7518 §6.4): `{"kty": "oct", "k": <base64url>, "alg"?: "HS…"}`.
fn parse_oct_jwk(json: &Json) -> Result<AnchorKey, String> {
    let text = json.get("k").and_then(Json::as_str).ok_or("the oct JWK has no \"k\"")?;
    let key = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| "the oct JWK's \"k\" is not base64url".to_owned())?,
    );
    let alg = match json.get("alg").map(|alg| alg.as_str()) {
        None => None,
        Some(Some("HS256")) => Some(HmacAlg::Sha256),
        Some(Some("HS384")) => Some(HmacAlg::Sha384),
        Some(Some("HS512")) => Some(HmacAlg::Sha512),
        Some(other) => {
            return Err(format!("the oct JWK's alg {other:?} is not HS256, HS384 or HS512"));
        }
    };
    let min = alg.map_or(MIN_SYMMETRIC_KEY, HmacAlg::len);
    if key.len() < min {
        return Err(format!(
            "the oct JWK's key is {} bytes; at least {min} are required (RFC 7518 §3.2)",
            key.len()
        ));
    }
    Ok(AnchorKey::Symmetric { key, alg })
}

/// An EC public JWK on P-256, P-384 or P-521 (RFC 7518 §6.2.1: each coordinate the full size
/// of the curve's field, 66 bytes for P-521).
fn parse_ec_jwk(json: &Json) -> Result<PublicKey, String> {
    let field = |name: &str| json.get(name).and_then(Json::as_str);
    if json.get("d").is_some() {
        return Err("the JWK holds a private key; give the public key only".into());
    }
    let (curve, size, expected_alg) = match field("crv") {
        Some("P-256") => ("P-256", 32, "ES256"),
        Some("P-384") => ("P-384", 48, "ES384"),
        Some("P-521") => ("P-521", 66, "ES512"),
        other => return Err(format!("unsupported JWK curve {other:?} (P-256, P-384 or P-521)")),
    };
    let coordinate = |name: &str| -> Result<Vec<u8>, String> {
        let text = field(name).ok_or_else(|| format!("the JWK has no {name:?}"))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| format!("the JWK's {name:?} is not base64url: {e}"))?;
        if bytes.len() != size {
            return Err(format!(
                "the JWK's {name:?} is {} bytes, expected {size} for {curve}",
                bytes.len()
            ));
        }
        Ok(bytes)
    };
    let mut point = vec![0x04];
    point.extend(coordinate("x")?);
    point.extend(coordinate("y")?);
    if let Some(alg) = field("alg")
        && alg != expected_alg
    {
        return Err(format!("the JWK's alg {alg:?} does not fit curve {curve}"));
    }
    sec1_key(&point).ok_or_else(|| format!("the JWK's point is not on {curve}"))
}

/// A SEC1 uncompressed point on P-256 (65 bytes), P-384 (97 bytes) or P-521 (133 bytes).
pub(crate) fn sec1_key(point: &[u8]) -> Option<PublicKey> {
    if point.first() != Some(&0x04) {
        return None;
    }
    match point.len() {
        65 | 97 | 133 => PublicKey::from_sec1(point),
        _ => None,
    }
}

/// The SEC1 uncompressed encoding of an EC key (empty for RSA, which is never a CPAK, RAK or IAK).
pub(crate) fn sec1_point(key: &PublicKey) -> Vec<u8> {
    match key {
        PublicKey::P256(key) | PublicKey::P384(key) | PublicKey::P521(key) => {
            key.sec1_uncompressed().to_vec()
        }
        PublicKey::Rsa(_) => Vec::new(),
    }
}

/// The DER of the one `PUBLIC KEY` block of a PEM text.
fn pem_public_key(text: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let body = text
        .trim()
        .strip_prefix(BEGIN)
        .and_then(|rest| rest.strip_suffix(END))
        .ok_or("PEM input must be exactly one PUBLIC KEY block")?;
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| format!("the PEM body is not base64: {e}"))
}
