//! Parsing of untrusted CCA token bytes: the collection (legacy CBOR tag 399, or the tag-907 CMW
//! collection of draft-ffm-rats-cca-token), the two COSE_Sign1 envelopes and the platform and
//! realm claim maps (draft-ffm-rats-cca-token and the earlier CCA-SSD profile).
//!
//! Nothing here makes a trust decision; it only refuses input that is not a well-formed token.
//! Every claim the specification defines is decoded and checked for type and size, mandatory
//! claims must be present, and a claim this verifier does not know is refused rather than
//! ignored (fail closed). The realm token's hash algorithm (44236) fixes the size of the initial
//! and extensible measurements, and its public-key hash algorithm (44240) the size of the
//! platform challenge that binds the two tokens: sha-256, sha-384 and sha-512 (32, 48 and 64
//! bytes) are the algorithms the specification allows; any other name is refused.

use std::collections::BTreeSet;
use std::fmt;

use coset::cbor::value::Value;
use coset::{AsCborValue as _, CborSerializable as _, CoseSign1, iana};

use super::CcaError;
use crate::cbor::{IntMap, MapError, decode_bounded, describe_key, integer_key, kind};
use crate::ecdsa::Hash;
use crate::x509::PublicKey;

/// The CBOR tag of a legacy CCA attestation token (an EAT collection of the platform and realm
/// tokens, RMM specification 1.0).
pub(crate) const CCA_TOKEN_TAG: u64 = 399;
/// The CBOR tag of a CCA attestation token as a CMW collection (draft-ffm-rats-cca-token,
/// draft-ietf-rats-msg-wrap): the same two labels, each holding a CMW record.
pub(crate) const CCA_CMW_TAG: u64 = 907;
/// The CoAP content format of `application/eat+cwt`, the type of both CMW records.
const EAT_CWT_CONTENT_FORMAT: u64 = 263;
/// The same type as a media type, which a CMW record may carry instead of the number.
const EAT_CWT_MEDIA_TYPE: &str = "application/eat+cwt";
/// The CMW conceptual-message indicator of Evidence (bit 2 of `cm-type`).
const CMW_INDICATOR_EVIDENCE: u64 = 1 << 2;
/// The reserved label of a CMW collection's type.
const CMW_COLLECTION_TYPE_LABEL: &str = "__cmwc_t";
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

/// The COSE signature algorithms this verifier knows. Arm CCA tokens use ES256, ES384 and ES512;
/// Huawei virtCCA tokens also use PS256–PS512 (RSA RAK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CoseAlg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// ECDSA P-521 with SHA-512.
    Es512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
}

impl CoseAlg {
    /// The COSE name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CoseAlg::Es256 => "ES256",
            CoseAlg::Es384 => "ES384",
            CoseAlg::Es512 => "ES512",
            CoseAlg::Ps256 => "PS256",
            CoseAlg::Ps384 => "PS384",
            CoseAlg::Ps512 => "PS512",
        }
    }

    /// The hash an ECDSA algorithm signs with, when `key` is on the curve it names (ES256:
    /// P-256, ES384: P-384, ES512: P-521); `None` for any other pairing and for RSASSA-PSS.
    pub(crate) fn ecdsa_hash_for(self, key: &PublicKey) -> Option<Hash> {
        match (self, key) {
            (CoseAlg::Es256, PublicKey::P256(_)) => Some(Hash::Sha256),
            (CoseAlg::Es384, PublicKey::P384(_)) => Some(Hash::Sha384),
            (CoseAlg::Es512, PublicKey::P521(_)) => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn from_iana(alg: iana::Algorithm) -> Option<Self> {
        match alg {
            iana::Algorithm::ES256 => Some(Self::Es256),
            iana::Algorithm::ES384 => Some(Self::Es384),
            iana::Algorithm::ES512 => Some(Self::Es512),
            iana::Algorithm::PS256 => Some(Self::Ps256),
            iana::Algorithm::PS384 => Some(Self::Ps384),
            iana::Algorithm::PS512 => Some(Self::Ps512),
            _ => None,
        }
    }
}

/// The algorithms a CCA token may be signed with: the ECDSA algorithms of COSE (RFC 9053 §2.1),
/// which the CCA token's COSE_Sign1 profile (draft-ffm-rats-cca-token) allows for the platform
/// and realm tokens alike. Each needs a key on its own curve.
pub(crate) const CCA_ALGORITHMS: [CoseAlg; 3] = [CoseAlg::Es256, CoseAlg::Es384, CoseAlg::Es512];

/// A hash algorithm a CCA token names and this verifier computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
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
    pub(crate) form: CollectionForm,
    pub(crate) platform: SignedToken,
    pub(crate) realm: SignedToken,
}

/// How the two tokens are wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CollectionForm {
    /// CBOR tag 399, each token a byte string (RMM specification 1.0, TF-RMM, trustee).
    Eat399,
    /// CBOR tag 907, each token a CMW record `[263, bytes]` (draft-ffm-rats-cca-token, Veraison).
    Cmw907,
}

impl CollectionForm {
    /// The name reported in the claims.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CollectionForm::Eat399 => "tag-399",
            CollectionForm::Cmw907 => "cmw-907",
        }
    }
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

impl SwComponent {
    /// The component as the CCA and virtCCA drivers report it in their vendor claims.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "measurement_type": self.measurement_type,
            "measurement_value": hex::encode(&self.measurement_value),
            "version": self.version,
            "signer_id": hex::encode(&self.signer_id),
            "hash_algo": self.hash_algo,
        })
    }
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

/// Parses the collection (tag 399 or the tag-907 CMW collection) and both COSE_Sign1 envelopes
/// (claims are parsed separately).
pub(crate) fn parse_collection(bytes: &[u8]) -> Result<Collection, CcaError> {
    let (form, entries) = collection_entries(bytes)?;
    let not_token = |reason: String| CcaError::NotCcaToken(reason);
    let mut platform = None;
    let mut realm = None;
    for (key, value) in entries {
        let slot = match key {
            PLATFORM_TOKEN_KEY => &mut platform,
            REALM_TOKEN_KEY => &mut realm,
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
        *slot = Some(match form {
            CollectionForm::Eat399 => entry_bytes(key, value)?,
            CollectionForm::Cmw907 => cmw_record(key, value)?,
        });
    }
    let platform = platform.ok_or_else(|| not_token("no platform token (44234)".into()))?;
    let realm = realm.ok_or_else(|| not_token("no realm token (44241)".into()))?;
    Ok(Collection {
        form,
        platform: parse_sign1(TokenPart::Platform, &platform, &CCA_ALGORITHMS)?,
        realm: parse_sign1(TokenPart::Realm, &realm, &CCA_ALGORITHMS)?,
    })
}

/// The size limit, the outer tag (399 or 907) and the collection map's entries with their
/// integer keys; a non-integer key is refused (for the CMW form, the reserved collection-type
/// label `__cmwc_t` is named: the CCA token defines no collection type, and producers send
/// none).
pub(crate) fn collection_entries(
    bytes: &[u8],
) -> Result<(CollectionForm, Vec<(u64, Value)>), CcaError> {
    let not_token = |reason: String| CcaError::NotCcaToken(reason);
    let value = decode_bounded(bytes, MAX_TOKEN_LEN).map_err(not_token)?;
    let (form, inner) = match value {
        Value::Tag(CCA_TOKEN_TAG, inner) => (CollectionForm::Eat399, *inner),
        Value::Tag(CCA_CMW_TAG, inner) => (CollectionForm::Cmw907, *inner),
        Value::Tag(tag, _) => {
            return Err(not_token(format!(
                "expected CBOR tag 399 or 907 (CMW collection), got tag {tag}"
            )));
        }
        other => {
            return Err(not_token(format!(
                "expected CBOR tag 399 or 907 (CMW collection), got {}",
                kind(&other)
            )));
        }
    };
    let tag = match form {
        CollectionForm::Eat399 => CCA_TOKEN_TAG,
        CollectionForm::Cmw907 => CCA_CMW_TAG,
    };
    let Value::Map(pairs) = inner else {
        return Err(not_token(format!("the tag-{tag} content is {}, not a map", kind(&inner))));
    };
    let mut entries = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        match (&key, form) {
            (Value::Text(label), CollectionForm::Cmw907) if label == CMW_COLLECTION_TYPE_LABEL => {
                return Err(not_token(format!(
                    "the CMW collection carries a collection type ({CMW_COLLECTION_TYPE_LABEL}); \
                     the CCA token defines none"
                )));
            }
            _ => {}
        }
        let key = integer_key(&key).and_then(|k| u64::try_from(k).ok()).ok_or_else(|| {
            not_token(format!("collection key {} is not a known label", describe_key(&key)))
        })?;
        entries.push((key, value));
    }
    Ok((form, entries))
}

/// A tag-399 collection entry: the token's bytes.
pub(crate) fn entry_bytes(key: u64, value: Value) -> Result<Vec<u8>, CcaError> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        other => Err(CcaError::NotCcaToken(format!(
            "collection entry {key} is {}, not a byte string",
            kind(&other)
        ))),
    }
}

/// A CMW record of the tag-907 collection: `[type, bytes]` or `[type, bytes, indicator]`, the
/// type `application/eat+cwt` (CoAP content format 263, or the media type spelled out) and the
/// indicator, when present, Evidence.
fn cmw_record(key: u64, value: Value) -> Result<Vec<u8>, CcaError> {
    let bad =
        |reason: String| CcaError::NotCcaToken(format!("CMW collection entry {key} {reason}"));
    let Value::Array(items) = value else {
        return Err(bad(format!("is {}, not a CMW record (array)", kind(&value))));
    };
    let mut items = items.into_iter();
    let (Some(content_type), Some(token), indicator, None) =
        (items.next(), items.next(), items.next(), items.next())
    else {
        return Err(bad("is not a CMW record of 2 or 3 items".into()));
    };
    let type_ok = match &content_type {
        Value::Integer(i) => u64::try_from(*i).ok() == Some(EAT_CWT_CONTENT_FORMAT),
        Value::Text(text) => text == EAT_CWT_MEDIA_TYPE,
        _ => false,
    };
    if !type_ok {
        return Err(bad(format!(
            "has content type {}, not application/eat+cwt (263)",
            describe_key(&content_type)
        )));
    }
    if let Some(indicator) = indicator {
        let evidence = match indicator {
            Value::Integer(i) => u64::try_from(i).ok() == Some(CMW_INDICATOR_EVIDENCE),
            _ => false,
        };
        if !evidence {
            return Err(bad("has a conceptual-message indicator other than Evidence (4)".into()));
        }
    }
    match token {
        Value::Bytes(bytes) => Ok(bytes),
        other => Err(bad(format!("holds {}, not a byte string", kind(&other)))),
    }
}

/// Parses one COSE_Sign1 (tagged 18 or not) and checks its headers; the algorithm must be one
/// of `allowed`.
pub(crate) fn parse_sign1(
    part: TokenPart,
    bytes: &[u8],
    allowed: &[CoseAlg],
) -> Result<SignedToken, CcaError> {
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
    let named = sign1
        .protected
        .header
        .alg
        .as_ref()
        .ok_or_else(|| cose("the protected header has no algorithm".into()))?;
    let alg = match named {
        coset::Algorithm::Assigned(alg) => CoseAlg::from_iana(*alg).filter(|a| allowed.contains(a)),
        _ => None,
    };
    let Some(alg) = alg else {
        let alg = match named {
            coset::Algorithm::Assigned(alg) => format!("{alg:?}"),
            coset::Algorithm::PrivateUse(value) => value.to_string(),
            coset::Algorithm::Text(text) => format!("{text:?}"),
        };
        return Err(CcaError::UnsupportedAlgorithm { token: part, alg });
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
