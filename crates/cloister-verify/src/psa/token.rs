//! Parsing of untrusted PSA token bytes: the COSE_Sign1 or COSE_Mac0 envelope and the claims map
//! of each profile (`PSA_IOT_PROFILE_1`, `http://arm.com/psa/2.0.0`, RFC 9783's
//! `tag:psacertified.org,2023:psa#tfm`).
//!
//! Nothing here makes a trust decision; it only refuses input that is not a well-formed token of
//! a known profile. Every claim a profile defines is decoded and checked for type, size and value,
//! mandatory claims must be present, and a claim the profile does not define is refused rather
//! than ignored (the profiles' claim sets are closed maps).

use coset::cbor::value::Value;
use coset::{AsCborValue as _, CoseMac0, CoseSign1, Header, iana};

use super::PsaError;
use crate::cbor::{IntMap, MapError, decode_bounded, integer_key, kind};
use crate::cose_anchor::HmacAlg;

/// Genuine tokens are well under a kilobyte; anything far larger is refused before parsing.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The CBOR tag of a COSE_Mac0 message.
const COSE_MAC0_TAG: u64 = 17;
/// The CBOR tag of a COSE_Sign1 message.
const COSE_SIGN1_TAG: u64 = 18;

/// The profile name of PSA_IOT_PROFILE_1 (draft-tschofenig-rats-psa-token-07 and earlier).
pub(crate) const PROFILE_1: &str = "PSA_IOT_PROFILE_1";
/// The profile name of the PSA 2.0.0 token (draft-tschofenig-rats-psa-token-08 to -12, TF-M).
pub(crate) const PROFILE_2: &str = "http://arm.com/psa/2.0.0";
/// The profile name of RFC 9783's TF-M profile.
pub(crate) const PROFILE_RFC9783: &str = "tag:psacertified.org,2023:psa#tfm";

/// A PSA token profile: which claim keys exist, and their rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Profile {
    /// `PSA_IOT_PROFILE_1`: private-use claim keys −75000…−75010.
    Iot1,
    /// `http://arm.com/psa/2.0.0`: EAT keys 10, 256, 265 and 2394…2400 (boot seed 2397).
    Psa2,
    /// RFC 9783 `tag:psacertified.org,2023:psa#tfm`: as 2.0.0, the boot seed under EAT 268.
    Rfc9783,
}

impl Profile {
    /// The profile's name, as the token carries it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Profile::Iot1 => PROFILE_1,
            Profile::Psa2 => PROFILE_2,
            Profile::Rfc9783 => PROFILE_RFC9783,
        }
    }

    fn keys(self) -> &'static Keys {
        match self {
            Profile::Iot1 => &IOT1_KEYS,
            Profile::Psa2 => &PSA2_KEYS,
            Profile::Rfc9783 => &RFC9783_KEYS,
        }
    }
}

/// The claim keys of one profile.
struct Keys {
    profile: i128,
    client_id: i128,
    lifecycle: i128,
    implementation_id: i128,
    boot_seed: i128,
    /// P1's hardware version (−75005) or the certification reference (2398).
    certification: i128,
    sw_components: i128,
    /// Only P1 defines "no software measurements".
    no_sw_measurements: Option<i128>,
    nonce: i128,
    instance_id: i128,
    verification_service: i128,
}

const IOT1_KEYS: Keys = Keys {
    profile: -75000,
    client_id: -75001,
    lifecycle: -75002,
    implementation_id: -75003,
    boot_seed: -75004,
    certification: -75005,
    sw_components: -75006,
    no_sw_measurements: Some(-75007),
    nonce: -75008,
    instance_id: -75009,
    verification_service: -75010,
};

const PSA2_KEYS: Keys = Keys {
    profile: EAT_PROFILE,
    client_id: 2394,
    lifecycle: 2395,
    implementation_id: 2396,
    boot_seed: 2397,
    certification: 2398,
    sw_components: 2399,
    no_sw_measurements: None,
    nonce: 10,
    instance_id: 256,
    verification_service: 2400,
};

const RFC9783_KEYS: Keys = Keys { boot_seed: 268, ..PSA2_KEYS };

/// The EAT `eat_profile` claim key.
const EAT_PROFILE: i128 = 265;

// Software component keys.
const SWC_MEASUREMENT_TYPE: i128 = 1;
const SWC_MEASUREMENT_VALUE: i128 = 2;
const SWC_VERSION: i128 = 4;
const SWC_SIGNER_ID: i128 = 5;
const SWC_MEASUREMENT_DESC: i128 = 6;

/// Sizes of a `psa-hash-type` (nonce, measurement value, signer id): SHA-256, -384, -512.
pub(crate) const HASH_SIZES: [usize; 3] = [32, 48, 64];

/// The signature algorithms this verifier supports (RFC 9053 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignAlg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// ECDSA P-521 with SHA-512.
    Es512,
}

/// The COSE envelope of a token, not yet verified.
#[derive(Debug)]
pub(crate) enum Envelope {
    /// COSE_Sign1, signed by an asymmetric IAK.
    Sign1(CoseSign1, SignAlg),
    /// COSE_Mac0, MACed with a symmetric IAK.
    Mac0(CoseMac0, HmacAlg),
}

impl Envelope {
    /// The COSE name of the algorithm.
    pub(crate) fn alg_name(&self) -> &'static str {
        match self {
            Envelope::Sign1(_, SignAlg::Es256) => "ES256",
            Envelope::Sign1(_, SignAlg::Es384) => "ES384",
            Envelope::Sign1(_, SignAlg::Es512) => "ES512",
            Envelope::Mac0(_, HmacAlg::Sha256) => "HMAC 256/256",
            Envelope::Mac0(_, HmacAlg::Sha384) => "HMAC 384/384",
            Envelope::Mac0(_, HmacAlg::Sha512) => "HMAC 512/512",
        }
    }

    /// `sign1` or `mac0`.
    pub(crate) fn format(&self) -> &'static str {
        match self {
            Envelope::Sign1(..) => "sign1",
            Envelope::Mac0(..) => "mac0",
        }
    }
}

/// A parsed token: the envelope, the payload it protects and whether it carried its CBOR tag.
#[derive(Debug)]
pub(crate) struct Token {
    pub(crate) envelope: Envelope,
    pub(crate) payload: Vec<u8>,
    pub(crate) tagged: bool,
}

/// What the protected header's algorithm makes the message.
enum Kind {
    Sign(SignAlg),
    Mac(HmacAlg),
}

/// Parses the COSE envelope (tagged 18 or 17, or untagged) and checks its headers.
///
/// COSE lets an application omit the tag when the context says which structure follows (RFC
/// 9052 §2); COSE_Sign1 and COSE_Mac0 have the same shape, so an untagged token is read as
/// the one its protected algorithm names. A tag that contradicts the algorithm is refused.
pub(crate) fn parse_token(bytes: &[u8]) -> Result<Token, PsaError> {
    let not_token = |reason: String| PsaError::NotPsaToken(reason);
    let value = decode_bounded(bytes, MAX_TOKEN_LEN).map_err(not_token)?;
    let (tag, inner) = match value {
        Value::Tag(tag @ (COSE_MAC0_TAG | COSE_SIGN1_TAG), inner) => (Some(tag), *inner),
        Value::Tag(tag, _) => {
            return Err(not_token(format!(
                "unexpected CBOR tag {tag} (18 for COSE_Sign1, 17 for COSE_Mac0)"
            )));
        }
        other => (None, other),
    };
    // Both structures are [protected, unprotected, payload, signature-or-tag]: read the headers
    // through COSE_Sign1, then decide.
    let as_sign1 = CoseSign1::from_cbor_value(inner.clone())
        .map_err(|e| not_token(format!("not a COSE_Sign1 or COSE_Mac0 structure: {e}")))?;
    check_headers(&as_sign1.protected.header, &as_sign1.unprotected)?;
    let kind = classify(as_sign1.protected.header.alg.as_ref())?;
    let (envelope, payload) = match (kind, tag) {
        (Kind::Sign(alg), None | Some(COSE_SIGN1_TAG)) => {
            let payload = as_sign1.payload.clone();
            (Envelope::Sign1(as_sign1, alg), payload)
        }
        (Kind::Mac(alg), None | Some(COSE_MAC0_TAG)) => {
            let mac0 = CoseMac0::from_cbor_value(inner)
                .map_err(|e| not_token(format!("not a COSE_Mac0 structure: {e}")))?;
            let payload = mac0.payload.clone();
            (Envelope::Mac0(mac0, alg), payload)
        }
        (kind, Some(tag)) => {
            let named = match kind {
                Kind::Sign(_) => "a signature algorithm",
                Kind::Mac(_) => "a MAC algorithm",
            };
            return Err(PsaError::EnvelopeMismatch { tag, named });
        }
    };
    let payload = payload.ok_or_else(|| not_token("the payload is detached (nil)".into()))?;
    Ok(Token { envelope, payload, tagged: tag.is_some() })
}

/// Header rules of RFC 9052 this verifier enforces: the algorithm is protected, and no
/// critical parameter is listed (it understands none beyond the algorithm).
fn check_headers(protected: &Header, unprotected: &Header) -> Result<(), PsaError> {
    let critical = |header: &Header| -> Vec<String> {
        header.crit.iter().map(|label| format!("{label:?}")).collect()
    };
    let mut listed = critical(protected);
    listed.extend(critical(unprotected));
    if !listed.is_empty() {
        return Err(PsaError::CriticalHeader(listed.join(", ")));
    }
    if unprotected.alg.is_some() {
        return Err(PsaError::NotPsaToken(
            "the algorithm must be in the protected header only".into(),
        ));
    }
    Ok(())
}

fn classify(alg: Option<&coset::Algorithm>) -> Result<Kind, PsaError> {
    use coset::RegisteredLabelWithPrivate::{Assigned, PrivateUse, Text};
    let alg =
        alg.ok_or_else(|| PsaError::NotPsaToken("the protected header has no algorithm".into()))?;
    Ok(match alg {
        Assigned(iana::Algorithm::ES256) => Kind::Sign(SignAlg::Es256),
        Assigned(iana::Algorithm::ES384) => Kind::Sign(SignAlg::Es384),
        Assigned(iana::Algorithm::ES512) => Kind::Sign(SignAlg::Es512),
        Assigned(iana::Algorithm::HMAC_256_256) => Kind::Mac(HmacAlg::Sha256),
        Assigned(iana::Algorithm::HMAC_384_384) => Kind::Mac(HmacAlg::Sha384),
        Assigned(iana::Algorithm::HMAC_512_512) => Kind::Mac(HmacAlg::Sha512),
        Assigned(other) => return Err(PsaError::UnsupportedAlgorithm(format!("{other:?}"))),
        PrivateUse(value) => return Err(PsaError::UnsupportedAlgorithm(value.to_string())),
        Text(text) => return Err(PsaError::UnsupportedAlgorithm(format!("{text:?}"))),
    })
}

/// One software component the PSA RoT measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SwComponent {
    pub(crate) measurement_type: Option<String>,
    pub(crate) measurement_value: Vec<u8>,
    pub(crate) version: Option<String>,
    pub(crate) signer_id: Vec<u8>,
    pub(crate) measurement_desc: Option<String>,
}

/// The claims of a token, checked against its profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PsaClaims {
    pub(crate) profile: Profile,
    pub(crate) client_id: i32,
    pub(crate) lifecycle: u16,
    pub(crate) implementation_id: Vec<u8>,
    pub(crate) boot_seed: Option<Vec<u8>>,
    /// P1's hardware version (−75005), an EAN-13 or EAN-13+5.
    pub(crate) hardware_version: Option<String>,
    /// The 2.0.0 and RFC 9783 certification reference (2398), an EAN-13+5.
    pub(crate) certification_reference: Option<String>,
    /// Empty only when P1's "no software measurements" claim is set.
    pub(crate) sw_components: Vec<SwComponent>,
    pub(crate) no_sw_measurements: bool,
    pub(crate) nonce: Vec<u8>,
    pub(crate) instance_id: Vec<u8>,
    pub(crate) verification_service: Option<String>,
}

/// A claims map being taken apart: each key once, unknown keys refused at the end.
struct ClaimMap(IntMap);

impl ClaimMap {
    fn parse(payload: &[u8]) -> Result<Self, PsaError> {
        IntMap::parse(payload).map(Self).map_err(|e| match e {
            MapError::NotCbor(e) => bad(format!("the payload is not CBOR: {e}")),
            MapError::NotAMap(kind) => bad(format!("the payload is {kind}, not a map")),
            MapError::NonIntegerKey(key) => PsaError::UnknownClaim(key),
            MapError::Duplicate(key) => bad(format!("claim {key} appears twice")),
        })
    }

    fn take(&mut self, key: i128) -> Option<Value> {
        self.0.take(key)
    }

    fn required(&mut self, key: i128, name: &'static str) -> Result<Value, PsaError> {
        self.take(key).ok_or(PsaError::MissingClaim { name, key })
    }

    fn finish(self) -> Result<(), PsaError> {
        match self.0.leftover() {
            Some(key) => Err(PsaError::UnknownClaim(key.to_string())),
            None => Ok(()),
        }
    }
}

fn bad(reason: String) -> PsaError {
    PsaError::Claims(reason)
}

fn bytes(value: Value, name: &str, sizes: &[usize]) -> Result<Vec<u8>, PsaError> {
    let Value::Bytes(bytes) = value else {
        return Err(bad(format!("{name} is {}, not a byte string", kind(&value))));
    };
    if !sizes.contains(&bytes.len()) {
        let sizes: Vec<String> = sizes.iter().map(usize::to_string).collect();
        return Err(bad(format!(
            "{name} is {} bytes, expected {}",
            bytes.len(),
            sizes.join(" or ")
        )));
    }
    Ok(bytes)
}

fn text(value: Value, name: &str) -> Result<String, PsaError> {
    match value {
        Value::Text(text) => Ok(text),
        other => Err(bad(format!("{name} is {}, not a text string", kind(&other)))),
    }
}

/// Boot seed sizes: exactly 32 bytes in P1, 8 to 32 bytes in 2.0.0 and RFC 9783.
fn boot_seed_sizes(profile: Profile) -> Vec<usize> {
    match profile {
        Profile::Iot1 => vec![32],
        Profile::Psa2 | Profile::Rfc9783 => (8..=32).collect(),
    }
}

/// Which profile a claims map follows: `eat_profile` (265) names 2.0.0 or RFC 9783; without it
/// the token is P1 (whose own profile claim −75000 is optional), as Veraison reads tokens.
fn detect_profile(map: &mut ClaimMap) -> Result<Profile, PsaError> {
    let Some(value) = map.take(EAT_PROFILE) else {
        if let Some(value) = map.take(IOT1_KEYS.profile) {
            let name = text(value, "profile (-75000)")?;
            if name != PROFILE_1 {
                return Err(PsaError::UnknownProfile(name));
            }
        }
        return Ok(Profile::Iot1);
    };
    // EAT also allows an OID profile; no PSA profile is named by one.
    let name = text(value, "profile (265)")?;
    match name.as_str() {
        PROFILE_2 => Ok(Profile::Psa2),
        PROFILE_RFC9783 => Ok(Profile::Rfc9783),
        _ => Err(PsaError::UnknownProfile(name)),
    }
}

/// Parses and checks a claims map (the token's payload) against the profile it names.
pub(crate) fn parse_claims(payload: &[u8]) -> Result<PsaClaims, PsaError> {
    let mut map = ClaimMap::parse(payload)?;
    let profile = detect_profile(&mut map)?;
    let keys = profile.keys();

    let client_id = map.required(keys.client_id, "client id")?;
    let client_id = integer_key(&client_id)
        .and_then(|id| i32::try_from(id).ok())
        .filter(|id| *id != 0)
        .ok_or_else(|| {
            bad("client id is not a non-zero 32-bit integer (negative: NSPE, positive: SPE)".into())
        })?;
    let lifecycle = map.required(keys.lifecycle, "security lifecycle")?;
    let lifecycle = integer_key(&lifecycle)
        .and_then(|value| u16::try_from(value).ok())
        .filter(|value| lifecycle_name(*value).is_some())
        .ok_or_else(|| bad("security lifecycle is not a state of the PSA security model".into()))?;
    let implementation_id = map.required(keys.implementation_id, "implementation id")?;
    let implementation_id = bytes(implementation_id, "implementation id", &[32])?;
    let boot_seed = match (profile, map.take(keys.boot_seed)) {
        (Profile::Iot1, None) => {
            return Err(PsaError::MissingClaim { name: "boot seed", key: keys.boot_seed });
        }
        (_, None) => None,
        (_, Some(value)) => Some(bytes(value, "boot seed", &boot_seed_sizes(profile))?),
    };
    let certification = match map.take(keys.certification) {
        Some(value) => Some(certification(profile, value)?),
        None => None,
    };
    let (hardware_version, certification_reference) = match profile {
        Profile::Iot1 => (certification, None),
        Profile::Psa2 | Profile::Rfc9783 => (None, certification),
    };
    let no_sw_measurements = match keys.no_sw_measurements.and_then(|key| map.take(key)) {
        None => false,
        Some(Value::Integer(one)) if i128::from(one) == 1 => true,
        Some(_) => return Err(bad("no software measurements is not the integer 1".into())),
    };
    let sw_components = match (map.take(keys.sw_components), no_sw_measurements) {
        (Some(_), true) => {
            return Err(bad(
                "software components and no software measurements are mutually exclusive".into(),
            ));
        }
        (Some(value), false) => parse_sw_components(value)?,
        (None, true) => Vec::new(),
        (None, false) => {
            return Err(PsaError::MissingClaim {
                name: "software components",
                key: keys.sw_components,
            });
        }
    };
    let nonce = map.required(keys.nonce, "nonce")?;
    let nonce = bytes(nonce, "nonce", &HASH_SIZES)?;
    let instance_id = map.required(keys.instance_id, "instance id")?;
    let instance_id = bytes(instance_id, "instance id", &[33])?;
    if instance_id.first() != Some(&0x01) {
        return Err(bad("instance id is not an EAT UEID of type RAND (0x01)".into()));
    }
    let verification_service = match map.take(keys.verification_service) {
        Some(value) => {
            let service = text(value, "verification service indicator")?;
            if service.is_empty() {
                return Err(bad("verification service indicator is empty".into()));
            }
            Some(service)
        }
        None => None,
    };
    map.finish()?;
    Ok(PsaClaims {
        profile,
        client_id,
        lifecycle,
        implementation_id,
        boot_seed,
        hardware_version,
        certification_reference,
        sw_components,
        no_sw_measurements,
        nonce,
        instance_id,
        verification_service,
    })
}

/// P1's hardware version is an EAN-13, or the EAN-13+5 certification reference TF-M puts there;
/// 2.0.0 and RFC 9783's certification reference is an EAN-13+5 (`[0-9]{13}-[0-9]{5}`).
fn certification(profile: Profile, value: Value) -> Result<String, PsaError> {
    let name = match profile {
        Profile::Iot1 => "hardware version",
        Profile::Psa2 | Profile::Rfc9783 => "certification reference",
    };
    let reference = text(value, name)?;
    let digits = |part: &str, n: usize| part.len() == n && part.bytes().all(|b| b.is_ascii_digit());
    let ean13_5 = reference
        .split_once('-')
        .is_some_and(|(ean, version)| digits(ean, 13) && digits(version, 5));
    let ok = match profile {
        Profile::Iot1 => digits(&reference, 13) || ean13_5,
        Profile::Psa2 | Profile::Rfc9783 => ean13_5,
    };
    if ok {
        Ok(reference)
    } else {
        let form = match profile {
            Profile::Iot1 => "an EAN-13 or EAN-13+5 (13 digits, optionally a dash and 5 digits)",
            Profile::Psa2 | Profile::Rfc9783 => "an EAN-13+5 (13 digits, a dash, 5 digits)",
        };
        Err(bad(format!("{name} {reference:?} is not {form}")))
    }
}

fn parse_sw_components(value: Value) -> Result<Vec<SwComponent>, PsaError> {
    let Value::Array(items) = value else {
        return Err(bad(format!("software components is {}, not an array", kind(&value))));
    };
    if items.is_empty() {
        return Err(bad("software components is empty (at least one entry is required)".into()));
    }
    items.into_iter().enumerate().map(|(index, item)| parse_sw_component(index, item)).collect()
}

fn parse_sw_component(index: usize, item: Value) -> Result<SwComponent, PsaError> {
    let in_component = |e: PsaError| match e {
        PsaError::Claims(reason) => bad(format!("software component {index}: {reason}")),
        other => other,
    };
    let mut map = IntMap::from_value(item).map_err(|e| {
        in_component(bad(match e {
            MapError::NotAMap(kind) => format!("is {kind}, not a map"),
            MapError::NonIntegerKey(key) => format!("unknown key {key}"),
            MapError::Duplicate(key) => format!("key {key} appears twice"),
            MapError::NotCbor(e) => e,
        }))
    })?;
    let optional_text = |map: &mut IntMap, key: i128, name: &str| {
        map.take(key).map(|value| text(value, name)).transpose().map_err(in_component)
    };
    let hash = |map: &mut IntMap, key: i128, name: &str| match map.take(key) {
        Some(value) => bytes(value, name, &HASH_SIZES).map_err(in_component),
        None => Err(in_component(bad(format!("no {name} ({key})")))),
    };
    let component = SwComponent {
        measurement_type: optional_text(&mut map, SWC_MEASUREMENT_TYPE, "measurement type")?,
        measurement_value: hash(&mut map, SWC_MEASUREMENT_VALUE, "measurement value")?,
        version: optional_text(&mut map, SWC_VERSION, "version")?,
        signer_id: hash(&mut map, SWC_SIGNER_ID, "signer id")?,
        measurement_desc: optional_text(&mut map, SWC_MEASUREMENT_DESC, "measurement description")?,
    };
    match map.leftover() {
        Some(key) => Err(in_component(bad(format!("unknown key {key}")))),
        None => Ok(component),
    }
}

/// The name of a PSA security lifecycle state (RFC 9783 §4.3.1), or `None` for a value outside
/// every defined range. The low byte is implementation defined.
pub(crate) fn lifecycle_name(value: u16) -> Option<&'static str> {
    match value >> 8 {
        0x00 => Some("unknown"),
        0x10 => Some("assembly_and_test"),
        0x20 => Some("psa_rot_provisioning"),
        0x30 => Some("secured"),
        0x40 => Some("non_psa_rot_debug"),
        0x50 => Some("recoverable_psa_rot_debug"),
        0x60 => Some("decommissioned"),
        _ => None,
    }
}
