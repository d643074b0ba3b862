//! CCA trust anchors: the CPAK public keys an instance accepts platform tokens from.
//!
//! Arm CCA has no global vendor root: each platform's CPAK (CCA Platform Attestation Key) is
//! endorsed by its manufacturer, and a verifier lists the CPAKs it trusts. Each anchor given to
//! [`crate::TrustAnchors::with_root`] for `TeeKind::Cca` may be:
//!
//! - a JWK (`{"kty": "EC", "crv": "P-256" | "P-384", "x": …, "y": …}`);
//! - a Veraison trust-anchor entry `{"pkey": <JWK>, "implementation-id": <hex>,
//!   "instance-id": <hex>}` (both ids optional), or a JSON array of JWKs or entries; the ids the
//!   entry carries must then equal the platform token's;
//! - a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or the same in DER.
//!
//! An anchor that is none of these is refused, never skipped.

use base64::Engine as _;
use serde_json::Value as Json;

use crate::x509::PublicKey;

/// One trusted CPAK, with the platform identities its endorsement is restricted to.
#[derive(Clone, Debug)]
pub(crate) struct Cpak {
    pub(crate) key: PublicKey,
    pub(crate) implementation_id: Option<Vec<u8>>,
    pub(crate) instance_id: Option<Vec<u8>>,
}

/// Reads one anchor's bytes into the CPAKs it lists; the error says why it is unusable.
pub(crate) fn parse_anchor(bytes: &[u8]) -> Result<Vec<Cpak>, String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim_start);
    match text {
        Some(text) if text.starts_with('{') || text.starts_with('[') => {
            let json: Json =
                serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
            parse_json(&json)
        }
        Some(text) if text.starts_with("-----BEGIN ") => {
            let der = pem_public_key(text)?;
            spki_cpak(&der)
        }
        _ => spki_cpak(bytes),
    }
}

fn spki_cpak(der: &[u8]) -> Result<Vec<Cpak>, String> {
    let key = PublicKey::from_spki_der(der)
        .map_err(|e| format!("not a DER SubjectPublicKeyInfo: {e}"))?;
    Ok(vec![Cpak { key: ec_only(key)?, implementation_id: None, instance_id: None }])
}

fn ec_only(key: PublicKey) -> Result<PublicKey, String> {
    match key {
        PublicKey::Rsa(_) => Err("an RSA key cannot be a CPAK (P-256 or P-384 only)".into()),
        key => Ok(key),
    }
}

fn parse_json(json: &Json) -> Result<Vec<Cpak>, String> {
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

fn parse_entry(json: &Json) -> Result<Cpak, String> {
    let Json::Object(object) = json else {
        return Err("expected a JWK or a trust-anchor object".into());
    };
    if object.contains_key("kty") {
        return Ok(Cpak { key: parse_jwk(json)?, implementation_id: None, instance_id: None });
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
    Ok(Cpak {
        key: parse_jwk(pkey)?,
        implementation_id: id("implementation-id", 32)?,
        instance_id: id("instance-id", 33)?,
    })
}

/// An EC public JWK on P-256 or P-384.
fn parse_jwk(json: &Json) -> Result<PublicKey, String> {
    let field = |name: &str| json.get(name).and_then(Json::as_str);
    if json.get("d").is_some() {
        return Err("the JWK holds a private key; give the public key only".into());
    }
    if field("kty") != Some("EC") {
        return Err("the JWK's kty is not \"EC\"".into());
    }
    let (curve, size) = match field("crv") {
        Some("P-256") => ("P-256", 32),
        Some("P-384") => ("P-384", 48),
        other => return Err(format!("unsupported JWK curve {other:?} (P-256 or P-384)")),
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
    if let Some(alg) = field("alg") {
        let expected = if size == 32 { "ES256" } else { "ES384" };
        if alg != expected {
            return Err(format!("the JWK's alg {alg:?} does not fit curve {curve}"));
        }
    }
    sec1_key(&point).ok_or_else(|| format!("the JWK's point is not on {curve}"))
}

/// A SEC1 uncompressed point on P-256 (65 bytes) or P-384 (97 bytes).
pub(crate) fn sec1_key(point: &[u8]) -> Option<PublicKey> {
    if point.first() != Some(&0x04) {
        return None;
    }
    match point.len() {
        65 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point).ok().map(PublicKey::P256),
        97 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point).ok().map(PublicKey::P384),
        _ => None,
    }
}

/// The SEC1 uncompressed encoding of an EC key (empty for RSA, which is never a CPAK or RAK).
pub(crate) fn sec1_point(key: &PublicKey) -> Vec<u8> {
    match key {
        PublicKey::P256(key) => key.to_sec1_point(false).as_bytes().to_vec(),
        PublicKey::P384(key) => key.to_sec1_point(false).as_bytes().to_vec(),
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
