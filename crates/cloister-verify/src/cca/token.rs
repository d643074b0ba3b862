//! Parsing of untrusted CCA token bytes: the tag-399 collection, the two COSE_Sign1 envelopes and
//! the platform and realm claim maps (draft-ffm-rats-cca-token and the earlier CCA-SSD profile).
//!
//! Nothing here makes a trust decision; it only refuses input that is not a well-formed token.
//! Every claim the specification defines is decoded and checked for type and size, mandatory
//! claims must be present, and a claim this verifier does not know is refused rather than
//! ignored (fail closed).

use std::collections::BTreeSet;
use std::fmt;

use coset::cbor::value::Value;
use coset::{AsCborValue as _, CborSerializable as _, CoseSign1, iana};

use super::CcaError;
use crate::cbor::{IntMap, MapError, decode_bounded, describe_key, integer_key, kind};

/// The CBOR tag of a CCA attestation token (a collection of the platform and realm tokens).
pub(crate) const CCA_TOKEN_TAG: u64 = 399;
/// The collection key of the platform token.
pub(crate) const PLATFORM_TOKEN_KEY: u64 = 44234;
/// The collection key of the realm token.
pub(crate) const REALM_TOKEN_KEY: u64 = 44241;
/// The CBOR tag of a COSE_Sign1 message.
const COSE_SIGN1_TAG: u64 = 18;
/// Genuine tokens are a few kilobytes; anything far larger is refused before parsing.
pub(crate) const MAX_TOKEN_LEN: usize = 64 * 1024;

// Claim keys shared by both tokens.
const CLAIM_CHALLENGE: i128 = 10;
const CLAIM_PROFILE: i128 = 265;
// Platform claim keys.
const PLATFORM_INSTANCE_ID: i128 = 256;
const PLATFORM_LIFECYCLE: i128 = 2395;
const PLATFORM_IMPLEMENTATION_ID: i128 = 2396;
const PLATFORM_SW_COMPONENTS: i128 = 2399;
const PLATFORM_VERIFICATION_SERVICE: i128 = 2400;
const PLATFORM_CONFIG: i128 = 2401;
const PLATFORM_HASH_ALGO: i128 = 2402;
// Realm claim keys.
const REALM_PERSONALIZATION_VALUE: i128 = 44235;
const REALM_HASH_ALGO: i128 = 44236;
const REALM_PUBLIC_KEY: i128 = 44237;
const REALM_INITIAL_MEASUREMENT: i128 = 44238;
const REALM_EXTENSIBLE_MEASUREMENTS: i128 = 44239;
const REALM_PUBLIC_KEY_HASH_ALGO: i128 = 44240;
// Software component keys.
const SWC_MEASUREMENT_TYPE: i128 = 1;
const SWC_MEASUREMENT_VALUE: i128 = 2;
const SWC_VERSION: i128 = 4;
const SWC_SIGNER_ID: i128 = 5;
const SWC_HASH_ALGO: i128 = 6;

/// The platform profiles this verifier knows: the Arm CCA Security Model profile and the
/// draft-ffm-rats-cca-token one.
pub(crate) const PLATFORM_PROFILES: [&str; 2] =
    ["http://arm.com/CCA-SSD/1.0.0", "tag:arm.com,2023:cca_platform#1.0.0"];
/// The realm profile of draft-ffm-rats-cca-token (the claim is absent in older tokens).
pub(crate) const REALM_PROFILE: &str = "tag:arm.com,2023:realm#1.0.0";

/// Hash algorithm names of the IANA "Hash Function Textual Names" registry, which the platform
/// token's informative hash-algorithm claims are drawn from.
const IANA_HASH_NAMES: [&str; 9] =
    ["md2", "md5", "sha-1", "sha-224", "sha-256", "sha-384", "sha-512", "shake128", "shake256"];

/// TokenPart of the two tokens of the collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPart {
    /// The platform token, signed by the CPAK.
    Platform,
    /// The realm token, signed by the RAK.
    Realm,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenPart::Platform => "platform",
            TokenPart::Realm => "realm",
        })
    }
}

/// The COSE signature algorithms this verifier supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CoseAlg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
}

impl CoseAlg {
    /// The COSE name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CoseAlg::Es256 => "ES256",
            CoseAlg::Es384 => "ES384",
        }
    }
}

/// A hash algorithm a CCA token names and this verifier computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha-256" => Some(Self::Sha256),
            "sha-384" => Some(Self::Sha384),
            "sha-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The IANA textual name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
        }
    }

    /// The digest size in bytes.
    pub(crate) fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Hashes `data`.
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// One signed token of the collection: its COSE_Sign1 envelope, algorithm and payload.
#[derive(Debug)]
pub(crate) struct SignedToken {
    pub(crate) sign1: CoseSign1,
    pub(crate) alg: CoseAlg,
    pub(crate) payload: Vec<u8>,
}

/// The two signed tokens of a CCA attestation token, not yet verified.
#[derive(Debug)]
pub(crate) struct Collection {
    pub(crate) platform: SignedToken,
    pub(crate) realm: SignedToken,
}

/// One software component measured by the platform.
#[derive(Clone, Debug)]
pub(crate) struct SwComponent {
    pub(crate) measurement_type: Option<String>,
    pub(crate) measurement_value: Vec<u8>,
    pub(crate) version: Option<String>,
    pub(crate) signer_id: Vec<u8>,
    pub(crate) hash_algo: Option<String>,
}

/// The platform token's claims.
#[derive(Clone, Debug)]
pub(crate) struct PlatformClaims {
    pub(crate) profile: String,
    pub(crate) challenge: Vec<u8>,
    pub(crate) implementation_id: Vec<u8>,
    pub(crate) instance_id: Vec<u8>,
    pub(crate) config: Vec<u8>,
    pub(crate) lifecycle: u16,
    pub(crate) sw_components: Vec<SwComponent>,
    pub(crate) verification_service: Option<String>,
    pub(crate) hash_algo: String,
}

/// The realm token's claims.
#[derive(Clone, Debug)]
pub(crate) struct RealmClaims {
    pub(crate) profile: Option<String>,
    pub(crate) challenge: Vec<u8>,
    pub(crate) personalization_value: Vec<u8>,
    pub(crate) initial_measurement: Vec<u8>,
    pub(crate) extensible_measurements: Vec<Vec<u8>>,
    pub(crate) hash_algo: HashAlg,
    pub(crate) public_key: Vec<u8>,
    pub(crate) public_key_hash_algo: HashAlg,
}

/// Parses the tag-399 collection and both COSE_Sign1 envelopes (claims are parsed separately).
pub(crate) fn parse_collection(bytes: &[u8]) -> Result<Collection, CcaError> {
    let not_token = |reason: String| CcaError::NotCcaToken(reason);
    let value = decode_bounded(bytes, MAX_TOKEN_LEN).map_err(not_token)?;
    let (tag, inner) = match value {
        Value::Tag(tag, inner) => (tag, *inner),
        other => return Err(not_token(format!("expected CBOR tag 399, got {}", kind(&other)))),
    };
    if tag != CCA_TOKEN_TAG {
        return Err(not_token(format!("expected CBOR tag 399, got tag {tag}")));
    }
    let Value::Map(entries) = inner else {
        return Err(not_token(format!("the tag-399 content is {}, not a map", kind(&inner))));
    };
    let mut platform = None;
    let mut realm = None;
    for (key, value) in entries {
        let key = integer_key(&key).ok_or_else(|| {
            not_token(format!("collection key {} is not an integer", describe_key(&key)))
        })?;
        let slot = match u64::try_from(key) {
            Ok(PLATFORM_TOKEN_KEY) => &mut platform,
            Ok(REALM_TOKEN_KEY) => &mut realm,
            _ => {
                return Err(not_token(format!(
                    "unknown collection entry {key} (only 44234 platform and 44241 realm are \
                     defined)"
                )));
            }
        };
        if slot.is_some() {
            return Err(not_token(format!("collection entry {key} appears twice")));
        }
        let Value::Bytes(bytes) = value else {
            return Err(not_token(format!(
                "collection entry {key} is {}, not a byte string",
                kind(&value)
            )));
        };
        *slot = Some(bytes);
    }
    let platform = platform.ok_or_else(|| not_token("no platform token (44234)".into()))?;
    let realm = realm.ok_or_else(|| not_token("no realm token (44241)".into()))?;
    Ok(Collection {
        platform: parse_sign1(TokenPart::Platform, &platform)?,
        realm: parse_sign1(TokenPart::Realm, &realm)?,
    })
}

/// Parses one COSE_Sign1 (tagged 18 or not) and checks its headers.
fn parse_sign1(part: TokenPart, bytes: &[u8]) -> Result<SignedToken, CcaError> {
    let cose = |reason: String| CcaError::Cose { token: part, reason };
    let value = Value::from_slice(bytes).map_err(|e| cose(format!("not CBOR: {e}")))?;
    let value = match value {
        Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
        Value::Tag(tag, _) => return Err(cose(format!("unexpected CBOR tag {tag} (expected 18)"))),
        other => other,
    };
    let sign1 = CoseSign1::from_cbor_value(value).map_err(|e| cose(e.to_string()))?;
    if !sign1.protected.header.crit.is_empty() {
        return Err(cose("the protected header lists critical parameters".into()));
    }
    if sign1.unprotected.alg.is_some() {
        return Err(cose("the algorithm must be in the protected header only".into()));
    }
    let alg = match &sign1.protected.header.alg {
        Some(coset::Algorithm::Assigned(iana::Algorithm::ES256)) => CoseAlg::Es256,
        Some(coset::Algorithm::Assigned(iana::Algorithm::ES384)) => CoseAlg::Es384,
        Some(other) => {
            let alg = match other {
                coset::Algorithm::Assigned(alg) => format!("{alg:?}"),
                coset::Algorithm::PrivateUse(value) => value.to_string(),
                coset::Algorithm::Text(text) => format!("{text:?}"),
            };
            return Err(CcaError::UnsupportedAlgorithm { token: part, alg });
        }
        None => return Err(cose("the protected header has no algorithm".into())),
    };
    let payload =
        sign1.payload.clone().ok_or_else(|| cose("the payload is detached (nil)".into()))?;
    Ok(SignedToken { sign1, alg, payload })
}

/// A claims map being taken apart: each key once, unknown keys refused.
struct ClaimMap {
    part: TokenPart,
    map: IntMap,
}

impl ClaimMap {
    fn parse(part: TokenPart, payload: &[u8]) -> Result<Self, CcaError> {
        let bad = |reason: String| CcaError::Claims { token: part, reason };
        let map = IntMap::parse(payload).map_err(|e| match e {
            MapError::NotCbor(e) => bad(format!("not CBOR: {e}")),
            MapError::NotAMap(kind) => bad(format!("the payload is {kind}, not a map")),
            MapError::NonIntegerKey(key) => CcaError::UnknownClaim { token: part, key },
            MapError::Duplicate(key) => bad(format!("claim {key} appears twice")),
        })?;
        Ok(Self { part, map })
    }

    fn take(&mut self, key: i128) -> Option<Value> {
        self.map.take(key)
    }

    fn required(&mut self, key: i128, name: &'static str) -> Result<Value, CcaError> {
        self.take(key).ok_or(CcaError::MissingClaim { token: self.part, name, key })
    }

    fn finish(self) -> Result<(), CcaError> {
        match self.map.leftover() {
            Some(key) => Err(CcaError::UnknownClaim { token: self.part, key: key.to_string() }),
            None => Ok(()),
        }
    }

    fn bad(&self, reason: String) -> CcaError {
        CcaError::Claims { token: self.part, reason }
    }

    fn bytes(&self, value: Value, name: &str, sizes: &[usize]) -> Result<Vec<u8>, CcaError> {
        let Value::Bytes(bytes) = value else {
            return Err(self.bad(format!("{name} is {}, not a byte string", kind(&value))));
        };
        if !sizes.is_empty() && !sizes.contains(&bytes.len()) {
            return Err(self.bad(format!(
                "{name} is {} bytes, expected {}",
                bytes.len(),
                sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(" or ")
            )));
        }
        Ok(bytes)
    }

    fn text(&self, value: Value, name: &str) -> Result<String, CcaError> {
        match value {
            Value::Text(text) => Ok(text),
            other => Err(self.bad(format!("{name} is {}, not a text string", kind(&other)))),
        }
    }

    fn hash_name(&self, value: Value, name: &str) -> Result<String, CcaError> {
        let text = self.text(value, name)?;
        if IANA_HASH_NAMES.contains(&text.as_str()) {
            Ok(text)
        } else {
            Err(self.bad(format!("{name} {text:?} is not an IANA hash algorithm name")))
        }
    }

    fn computed_hash(&self, value: Value, name: &str) -> Result<HashAlg, CcaError> {
        let text = self.text(value, name)?;
        HashAlg::from_name(&text).ok_or_else(|| CcaError::UnsupportedHash {
            token: self.part,
            claim: name.to_owned(),
            alg: text,
        })
    }
}

/// Sizes a digest-valued claim may have (SHA-256, SHA-384, SHA-512).
const DIGEST_SIZES: [usize; 3] = [32, 48, 64];

/// Parses the platform token's claims.
pub(crate) fn parse_platform_claims(payload: &[u8]) -> Result<PlatformClaims, CcaError> {
    let mut map = ClaimMap::parse(TokenPart::Platform, payload)?;
    let profile = map.required(CLAIM_PROFILE, "profile")?;
    let profile = map.text(profile, "profile")?;
    if !PLATFORM_PROFILES.contains(&profile.as_str()) {
        return Err(map.bad(format!(
            "profile {profile:?} is not a known CCA platform profile ({})",
            PLATFORM_PROFILES.join(", ")
        )));
    }
    let challenge = map.required(CLAIM_CHALLENGE, "challenge")?;
    let challenge = map.bytes(challenge, "challenge", &DIGEST_SIZES)?;
    let implementation_id = map.required(PLATFORM_IMPLEMENTATION_ID, "implementation id")?;
    let implementation_id = map.bytes(implementation_id, "implementation id", &[32])?;
    let instance_id = map.required(PLATFORM_INSTANCE_ID, "instance id")?;
    let instance_id = map.bytes(instance_id, "instance id", &[33])?;
    if instance_id.first() != Some(&0x01) {
        return Err(map.bad("instance id is not an EAT UEID of type RAND (0x01)".into()));
    }
    let config = map.required(PLATFORM_CONFIG, "config")?;
    let config = map.bytes(config, "config", &[])?;
    let lifecycle = map.required(PLATFORM_LIFECYCLE, "lifecycle")?;
    let lifecycle = match lifecycle {
        Value::Integer(i) => u16::try_from(i128::from(i)).ok(),
        _ => None,
    }
    .filter(|value| lifecycle_name(*value).is_some())
    .ok_or_else(|| {
        map.bad("lifecycle is not a security lifecycle state of the CCA specification".into())
    })?;
    let sw_components = map.required(PLATFORM_SW_COMPONENTS, "software components")?;
    let Value::Array(items) = sw_components else {
        return Err(map.bad("software components is not an array".into()));
    };
    if items.is_empty() {
        return Err(map.bad("software components is empty".into()));
    }
    let sw_components = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_sw_component(index, item))
        .collect::<Result<Vec<_>, _>>()?;
    let verification_service = match map.take(PLATFORM_VERIFICATION_SERVICE) {
        Some(value) => Some(map.text(value, "verification service")?),
        None => None,
    };
    let hash_algo = map.required(PLATFORM_HASH_ALGO, "hash algorithm id")?;
    let hash_algo = map.hash_name(hash_algo, "hash algorithm id")?;
    map.finish()?;
    Ok(PlatformClaims {
        profile,
        challenge,
        implementation_id,
        instance_id,
        config,
        lifecycle,
        sw_components,
        verification_service,
        hash_algo,
    })
}

fn parse_sw_component(index: usize, item: Value) -> Result<SwComponent, CcaError> {
    let bad = |reason: String| CcaError::Claims {
        token: TokenPart::Platform,
        reason: format!("software component {index}: {reason}"),
    };
    let Value::Map(pairs) = item else {
        return Err(bad(format!("is {}, not a map", kind(&item))));
    };
    let mut component = SwComponent {
        measurement_type: None,
        measurement_value: Vec::new(),
        version: None,
        signer_id: Vec::new(),
        hash_algo: None,
    };
    let mut seen = BTreeSet::new();
    for (key, value) in pairs {
        let Some(key) = integer_key(&key) else {
            return Err(bad(format!("unknown key {}", describe_key(&key))));
        };
        if !seen.insert(key) {
            return Err(bad(format!("key {key} appears twice")));
        }
        let text = |value: Value, name: &str| match value {
            Value::Text(text) => Ok(text),
            other => Err(bad(format!("{name} is {}, not a text string", kind(&other)))),
        };
        let digest = |value: Value, name: &str| match value {
            Value::Bytes(bytes) if DIGEST_SIZES.contains(&bytes.len()) => Ok(bytes),
            Value::Bytes(bytes) => {
                Err(bad(format!("{name} is {} bytes, expected 32, 48 or 64", bytes.len())))
            }
            other => Err(bad(format!("{name} is {}, not a byte string", kind(&other)))),
        };
        match key {
            SWC_MEASUREMENT_TYPE => {
                component.measurement_type = Some(text(value, "measurement type")?);
            }
            SWC_MEASUREMENT_VALUE => {
                component.measurement_value = digest(value, "measurement value")?;
            }
            SWC_VERSION => component.version = Some(text(value, "version")?),
            SWC_SIGNER_ID => component.signer_id = digest(value, "signer id")?,
            SWC_HASH_ALGO => {
                let name = text(value, "hash algorithm id")?;
                if !IANA_HASH_NAMES.contains(&name.as_str()) {
                    return Err(bad(format!(
                        "hash algorithm id {name:?} is not an IANA hash algorithm name"
                    )));
                }
                component.hash_algo = Some(name);
            }
            other => return Err(bad(format!("unknown key {other}"))),
        }
    }
    if !seen.contains(&SWC_MEASUREMENT_VALUE) {
        return Err(bad("no measurement value (2)".into()));
    }
    if !seen.contains(&SWC_SIGNER_ID) {
        return Err(bad("no signer id (5)".into()));
    }
    Ok(component)
}

/// Parses the realm token's claims.
pub(crate) fn parse_realm_claims(payload: &[u8]) -> Result<RealmClaims, CcaError> {
    let mut map = ClaimMap::parse(TokenPart::Realm, payload)?;
    let profile = match map.take(CLAIM_PROFILE) {
        Some(value) => {
            let profile = map.text(value, "profile")?;
            if profile != REALM_PROFILE {
                return Err(map.bad(format!(
                    "profile {profile:?} is not the CCA realm profile {REALM_PROFILE:?}"
                )));
            }
            Some(profile)
        }
        None => None,
    };
    let challenge = map.required(CLAIM_CHALLENGE, "challenge")?;
    let challenge = map.bytes(challenge, "challenge", &[64])?;
    let personalization_value =
        map.required(REALM_PERSONALIZATION_VALUE, "personalization value")?;
    let personalization_value = map.bytes(personalization_value, "personalization value", &[64])?;
    let hash_algo = map.required(REALM_HASH_ALGO, "hash algorithm id")?;
    let hash_algo = map.computed_hash(hash_algo, "hash algorithm id")?;
    let initial_measurement = map.required(REALM_INITIAL_MEASUREMENT, "initial measurement")?;
    let initial_measurement =
        map.bytes(initial_measurement, "initial measurement", &[hash_algo.len()])?;
    let extensible = map.required(REALM_EXTENSIBLE_MEASUREMENTS, "extensible measurements")?;
    let Value::Array(items) = extensible else {
        return Err(map.bad("extensible measurements is not an array".into()));
    };
    if items.len() != 4 {
        return Err(map.bad(format!("extensible measurements has {} entries, not 4", items.len())));
    }
    let extensible_measurements = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            map.bytes(item, &format!("extensible measurement {index}"), &[hash_algo.len()])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let public_key = map.required(REALM_PUBLIC_KEY, "public key")?;
    let public_key = map.bytes(public_key, "public key", &[])?;
    let public_key_hash_algo =
        map.required(REALM_PUBLIC_KEY_HASH_ALGO, "public key hash algorithm id")?;
    let public_key_hash_algo =
        map.computed_hash(public_key_hash_algo, "public key hash algorithm id")?;
    map.finish()?;
    Ok(RealmClaims {
        profile,
        challenge,
        personalization_value,
        initial_measurement,
        extensible_measurements,
        hash_algo,
        public_key,
        public_key_hash_algo,
    })
}

/// The name of a platform security lifecycle state (PSA / CCA security model), or `None` for a
/// value outside every defined range. The low byte is implementation defined.
pub(crate) fn lifecycle_name(value: u16) -> Option<&'static str> {
    match value >> 8 {
        0x00 => Some("unknown"),
        0x10 => Some("assembly_and_test"),
        0x20 => Some("cca_platform_rot_provisioning"),
        0x30 => Some("secured"),
        0x40 => Some("non_cca_platform_rot_debug"),
        0x50 => Some("recoverable_cca_platform_rot_debug"),
        0x60 => Some("decommissioned"),
        _ => None,
    }
}

/// Whether a lifecycle value is in the "secured" range (0x3000–0x30ff), the only state in which
/// the platform's root of trust cannot be debugged.
pub(crate) fn lifecycle_is_secured(value: u16) -> bool {
    value >> 8 == 0x30
}
