//! The KeyDescription extension (OID 1.3.6.1.4.1.11129.2.1.17) of an attested key's certificate.
//!
//! Schema (Android "Key and ID attestation", attestation versions 1 to 500, Keymaster 2 to
//! KeyMint 4):
//!
//! ```text
//! KeyDescription ::= SEQUENCE {
//!     attestationVersion         INTEGER,        -- 1, 2, 3, 4, 100, 200, 300, 400, 500
//!     attestationSecurityLevel   SecurityLevel,
//!     keyMintVersion             INTEGER,        -- keymasterVersion before 100
//!     keyMintSecurityLevel       SecurityLevel,
//!     attestationChallenge       OCTET STRING,
//!     uniqueId                   OCTET STRING,
//!     softwareEnforced           AuthorizationList,
//!     hardwareEnforced           AuthorizationList }
//! SecurityLevel ::= ENUMERATED { Software (0), TrustedEnvironment (1), StrongBox (2) }
//! AuthorizationList ::= SEQUENCE { -- every field OPTIONAL and [tag] EXPLICIT
//!     purpose [1] SET OF INTEGER, algorithm [2] INTEGER, keySize [3] INTEGER, …,
//!     rootOfTrust [704] RootOfTrust, …, moduleHash [724] OCTET STRING }
//! RootOfTrust ::= SEQUENCE { verifiedBootKey OCTET STRING, deviceLocked BOOLEAN,
//!     verifiedBootState ENUMERATED { Verified (0), SelfSigned (1), Unverified (2), Failed (3) },
//!     verifiedBootHash OCTET STRING -- attestation version 3 and later }
//! AttestationApplicationId ::= SEQUENCE { packageInfos SET OF AttestationPackageInfo,
//!     signatureDigests SET OF OCTET STRING }
//! AttestationPackageInfo ::= SEQUENCE { packageName OCTET STRING, version INTEGER }
//! ```
//!
//! Every tag of [`TAGS`] is read with its type; a tag this parser does not know is kept as raw
//! bytes ([`AuthValue::Unknown`]), because the schema grows with each KeyMint version and an
//! unknown tag is allowed. A known tag with the wrong type, a repeated tag, trailing bytes and
//! negative or oversized integers are refused. Two deliberate leniencies match what devices
//! send and Google's verifiers accept: a BOOLEAN whose content is any non-zero byte is true
//! (DER requires 0xFF; some devices write 0x01 in `deviceLocked`), and SET OF elements need not
//! be sorted. Tags out of ascending order are accepted and reported ([`AuthorizationList::
//! tags_in_order`]).

use std::collections::BTreeMap;

use der::asn1::AnyRef;
use der::{Decode as _, Reader as _, Tag, TagNumber, Tagged as _};

/// Why a KeyDescription could not be read. The message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct KeyDescriptionError {
    /// The field (for example `hardwareEnforced.rootOfTrust`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// Where a key lives, and who enforces its authorizations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityLevel {
    /// Android's keystore in the normal world: no isolation from the OS.
    Software,
    /// KeyMint/Keymaster in a TEE (TrustZone).
    TrustedEnvironment,
    /// A discrete secure element (StrongBox).
    StrongBox,
}

impl SecurityLevel {
    /// The claim's value: `software`, `trusted_environment` or `strong_box`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::Software => "software",
            SecurityLevel::TrustedEnvironment => "trusted_environment",
            SecurityLevel::StrongBox => "strong_box",
        }
    }
}

/// The state of verified boot when the key was attested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifiedBootState {
    /// The whole chain was verified with an OEM key built into the device.
    Verified,
    /// Verified with a key the user installed (custom OS, yellow boot screen).
    SelfSigned,
    /// Not verified: the bootloader is unlocked (orange).
    Unverified,
    /// Verification failed (red).
    Failed,
}

impl VerifiedBootState {
    /// The claim's value: `verified`, `self_signed`, `unverified` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifiedBootState::Verified => "verified",
            VerifiedBootState::SelfSigned => "self_signed",
            VerifiedBootState::Unverified => "unverified",
            VerifiedBootState::Failed => "failed",
        }
    }
}

/// Tag 704: the device's verified-boot state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootOfTrust {
    /// The key (or its digest) that verified the boot image; zeros when unlocked.
    pub verified_boot_key: Vec<u8>,
    /// Whether the bootloader is locked.
    pub device_locked: bool,
    /// The verified-boot state.
    pub verified_boot_state: VerifiedBootState,
    /// Digest of the verified boot images (attestation version 3 and later).
    pub verified_boot_hash: Option<Vec<u8>>,
}

/// One package of an [`AttestationApplicationId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    /// The package name, as encoded (UTF-8 in practice).
    pub name: Vec<u8>,
    /// The package's version code.
    pub version: u64,
}

/// Tag 709: the app(s) that own the key (several when they share a UID) and the SHA-256
/// digests of their signing certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationApplicationId {
    /// The DER of the `AttestationApplicationId` as received (inside tag 709's OCTET STRING).
    pub der: Vec<u8>,
    /// The packages.
    pub packages: Vec<PackageInfo>,
    /// The signing certificates' digests.
    pub signature_digests: Vec<Vec<u8>>,
}

/// How one tag's value is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    /// `INTEGER`.
    Integer,
    /// `SET OF INTEGER`.
    IntegerSet,
    /// `NULL`: the tag's presence is the value (true).
    Flag,
    /// `OCTET STRING` of bytes.
    Bytes,
    /// `OCTET STRING` of text (attested device ids).
    Text,
    /// [`RootOfTrust`].
    RootOfTrust,
    /// `OCTET STRING` holding an [`AttestationApplicationId`].
    ApplicationId,
}

/// Every AuthorizationList tag this parser reads: number, name (as in the Android docs and the
/// KeyMint `Tag.aidl`, lower camel case) and encoding.
pub const TAGS: &[(u32, &str, TagKind)] = &[
    (1, "purpose", TagKind::IntegerSet),
    (2, "algorithm", TagKind::Integer),
    (3, "keySize", TagKind::Integer),
    (4, "blockMode", TagKind::IntegerSet),
    (5, "digest", TagKind::IntegerSet),
    (6, "padding", TagKind::IntegerSet),
    (7, "callerNonce", TagKind::Flag),
    (8, "minMacLength", TagKind::Integer),
    (10, "ecCurve", TagKind::Integer),
    (11, "mlDsaVariant", TagKind::Integer),
    (200, "rsaPublicExponent", TagKind::Integer),
    (203, "rsaOaepMgfDigest", TagKind::IntegerSet),
    (303, "rollbackResistance", TagKind::Flag),
    (305, "earlyBootOnly", TagKind::Flag),
    (400, "activeDateTime", TagKind::Integer),
    (401, "originationExpireDateTime", TagKind::Integer),
    (402, "usageExpireDateTime", TagKind::Integer),
    (404, "maxUsesPerBoot", TagKind::Integer),
    (405, "usageCountLimit", TagKind::Integer),
    (503, "noAuthRequired", TagKind::Flag),
    (504, "userAuthType", TagKind::Integer),
    (505, "authTimeout", TagKind::Integer),
    (506, "allowWhileOnBody", TagKind::Flag),
    (507, "trustedUserPresenceRequired", TagKind::Flag),
    (508, "trustedConfirmationRequired", TagKind::Flag),
    (509, "unlockedDeviceRequired", TagKind::Flag),
    (600, "allApplications", TagKind::Flag),
    (601, "applicationId", TagKind::Bytes),
    (701, "creationDateTime", TagKind::Integer),
    (702, "origin", TagKind::Integer),
    (703, "rollbackResistant", TagKind::Flag),
    (704, "rootOfTrust", TagKind::RootOfTrust),
    (705, "osVersion", TagKind::Integer),
    (706, "osPatchLevel", TagKind::Integer),
    (709, "attestationApplicationId", TagKind::ApplicationId),
    (710, "attestationIdBrand", TagKind::Text),
    (711, "attestationIdDevice", TagKind::Text),
    (712, "attestationIdProduct", TagKind::Text),
    (713, "attestationIdSerial", TagKind::Text),
    (714, "attestationIdImei", TagKind::Text),
    (715, "attestationIdMeid", TagKind::Text),
    (716, "attestationIdManufacturer", TagKind::Text),
    (717, "attestationIdModel", TagKind::Text),
    (718, "vendorPatchLevel", TagKind::Integer),
    (719, "bootPatchLevel", TagKind::Integer),
    (720, "deviceUniqueAttestation", TagKind::Flag),
    (723, "attestationIdSecondImei", TagKind::Text),
    (724, "moduleHash", TagKind::Bytes),
];

/// The name and encoding of AuthorizationList tag `number`, if this parser knows it.
pub fn tag_info(number: u32) -> Option<(&'static str, TagKind)> {
    TAGS.iter().find(|(n, _, _)| *n == number).map(|(_, name, kind)| (*name, *kind))
}

/// One AuthorizationList value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthValue {
    /// An `INTEGER`.
    Integer(u64),
    /// A `SET OF INTEGER`, in the order received.
    IntegerSet(Vec<u64>),
    /// A `NULL` flag: present.
    Flag,
    /// An `OCTET STRING` (bytes or text).
    Bytes(Vec<u8>),
    /// The root of trust.
    RootOfTrust(RootOfTrust),
    /// The attestation application id.
    ApplicationId(AttestationApplicationId),
    /// A tag this parser does not know: the DER inside its explicit tag, as received.
    Unknown(Vec<u8>),
}

/// An AuthorizationList: tag number → value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizationList {
    /// The values by tag number.
    pub entries: BTreeMap<u32, AuthValue>,
    /// Whether the tags appeared in ascending order, as DER requires.
    pub tags_in_order: bool,
}

impl AuthorizationList {
    /// The integer of tag `number`, if present and an integer.
    pub fn integer(&self, number: u32) -> Option<u64> {
        match self.entries.get(&number) {
            Some(AuthValue::Integer(value)) => Some(*value),
            _ => None,
        }
    }

    /// The bytes of tag `number`, if present and an OCTET STRING.
    pub fn bytes(&self, number: u32) -> Option<&[u8]> {
        match self.entries.get(&number) {
            Some(AuthValue::Bytes(value)) => Some(value),
            _ => None,
        }
    }

    /// The root of trust (tag 704), if present.
    pub fn root_of_trust(&self) -> Option<&RootOfTrust> {
        match self.entries.get(&704) {
            Some(AuthValue::RootOfTrust(value)) => Some(value),
            _ => None,
        }
    }

    /// The attestation application id (tag 709), if present.
    pub fn application_id(&self) -> Option<&AttestationApplicationId> {
        match self.entries.get(&709) {
            Some(AuthValue::ApplicationId(value)) => Some(value),
            _ => None,
        }
    }
}

/// The parsed KeyDescription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDescription {
    /// The attestation format version.
    pub attestation_version: u64,
    /// Where the attestation was produced.
    pub attestation_security_level: SecurityLevel,
    /// The Keymaster (below 100) or KeyMint version.
    pub keymint_version: u64,
    /// Where the key lives.
    pub keymint_security_level: SecurityLevel,
    /// The challenge the app passed when it generated the key.
    pub attestation_challenge: Vec<u8>,
    /// The unique id (empty unless the app asked for one and may have it).
    pub unique_id: Vec<u8>,
    /// Authorizations enforced by Android's keystore, not by the secure hardware.
    pub software_enforced: AuthorizationList,
    /// Authorizations enforced by the TEE or StrongBox.
    pub hardware_enforced: AuthorizationList,
}

/// Parses the extension value (the OCTET STRING's content) of a KeyDescription.
pub fn parse(bytes: &[u8]) -> Result<KeyDescription, KeyDescriptionError> {
    let top = read_all(bytes, "KeyDescription")?;
    let [one] = top.as_slice() else {
        return Err(error("KeyDescription", "not exactly one DER value"));
    };
    let fields = sequence(one, "KeyDescription")?;
    let [version, level, km_version, km_level, challenge, unique_id, software, hardware] =
        fields.as_slice()
    else {
        return Err(error(
            "KeyDescription",
            format!("a SEQUENCE of 8 fields was expected, found {}", fields.len()),
        ));
    };
    Ok(KeyDescription {
        attestation_version: integer(version, "attestationVersion")?,
        attestation_security_level: security_level(level, "attestationSecurityLevel")?,
        keymint_version: integer(km_version, "keyMintVersion")?,
        keymint_security_level: security_level(km_level, "keyMintSecurityLevel")?,
        attestation_challenge: octets(challenge, "attestationChallenge")?,
        unique_id: octets(unique_id, "uniqueId")?,
        software_enforced: authorization_list(software, "softwareEnforced")?,
        hardware_enforced: authorization_list(hardware, "hardwareEnforced")?,
    })
}

fn error(field: &str, reason: impl Into<String>) -> KeyDescriptionError {
    KeyDescriptionError { field: field.to_owned(), reason: reason.into() }
}

/// Every DER value in `bytes`, which must be exactly a run of values.
fn read_all<'a>(bytes: &'a [u8], field: &str) -> Result<Vec<AnyRef<'a>>, KeyDescriptionError> {
    let mut reader = der::SliceReader::new(bytes).map_err(|e| error(field, e.to_string()))?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.push(AnyRef::decode(&mut reader).map_err(|e| error(field, e.to_string()))?);
    }
    Ok(out)
}

fn expect_tag(any: &AnyRef<'_>, tag: Tag, field: &str) -> Result<(), KeyDescriptionError> {
    if any.tag() == tag {
        Ok(())
    } else {
        Err(error(field, format!("expected {tag}, found {}", any.tag())))
    }
}

fn sequence<'a>(any: &AnyRef<'a>, field: &str) -> Result<Vec<AnyRef<'a>>, KeyDescriptionError> {
    expect_tag(any, Tag::Sequence, field)?;
    read_all(any.value(), field)
}

fn set<'a>(any: &AnyRef<'a>, field: &str) -> Result<Vec<AnyRef<'a>>, KeyDescriptionError> {
    expect_tag(any, Tag::Set, field)?;
    read_all(any.value(), field)
}

fn octets(any: &AnyRef<'_>, field: &str) -> Result<Vec<u8>, KeyDescriptionError> {
    expect_tag(any, Tag::OctetString, field)?;
    Ok(any.value().to_vec())
}

/// A non-negative INTEGER (or ENUMERATED) that fits in 64 bits, minimally encoded.
fn unsigned(content: &[u8], field: &str) -> Result<u64, KeyDescriptionError> {
    let (first, rest) = content.split_first().ok_or_else(|| error(field, "empty INTEGER"))?;
    if first & 0x80 != 0 {
        return Err(error(field, "negative INTEGER"));
    }
    if *first == 0 && rest.first().is_some_and(|b| b & 0x80 == 0) {
        return Err(error(field, "INTEGER is not minimally encoded"));
    }
    let magnitude = if *first == 0 { rest } else { content };
    if magnitude.len() > 8 {
        return Err(error(field, "INTEGER does not fit in 64 bits"));
    }
    Ok(magnitude.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn integer(any: &AnyRef<'_>, field: &str) -> Result<u64, KeyDescriptionError> {
    expect_tag(any, Tag::Integer, field)?;
    unsigned(any.value(), field)
}

fn enumerated(any: &AnyRef<'_>, field: &str) -> Result<u64, KeyDescriptionError> {
    expect_tag(any, Tag::Enumerated, field)?;
    unsigned(any.value(), field)
}

fn security_level(any: &AnyRef<'_>, field: &str) -> Result<SecurityLevel, KeyDescriptionError> {
    match enumerated(any, field)? {
        0 => Ok(SecurityLevel::Software),
        1 => Ok(SecurityLevel::TrustedEnvironment),
        2 => Ok(SecurityLevel::StrongBox),
        other => Err(error(field, format!("unknown security level {other}"))),
    }
}

/// A BOOLEAN, leniently: any non-zero content byte is true.
fn boolean(any: &AnyRef<'_>, field: &str) -> Result<bool, KeyDescriptionError> {
    expect_tag(any, Tag::Boolean, field)?;
    match any.value() {
        [byte] => Ok(*byte != 0),
        _ => Err(error(field, "BOOLEAN content is not one byte")),
    }
}

fn authorization_list(
    any: &AnyRef<'_>,
    field: &str,
) -> Result<AuthorizationList, KeyDescriptionError> {
    let items = sequence(any, field)?;
    let mut list = AuthorizationList { entries: BTreeMap::new(), tags_in_order: true };
    let mut last = None;
    for item in items {
        let number = match item.tag() {
            Tag::ContextSpecific { constructed: true, number: TagNumber(number) } => number,
            other => {
                return Err(error(
                    field,
                    format!("expected an EXPLICIT context-specific tag, found {other}"),
                ));
            }
        };
        let name = tag_info(number).map_or_else(|| format!("tag {number}"), |(n, _)| n.to_owned());
        let field = format!("{field}.{name}");
        if last.is_some_and(|previous| number <= previous) {
            list.tags_in_order = false;
        }
        last = Some(number);
        let value = auth_value(number, item.value(), &field)?;
        if list.entries.insert(number, value).is_some() {
            return Err(error(&field, "the tag appears more than once"));
        }
    }
    Ok(list)
}

fn auth_value(number: u32, content: &[u8], field: &str) -> Result<AuthValue, KeyDescriptionError> {
    let Some((_, kind)) = tag_info(number) else {
        // Unknown tags are kept, but must still be one well-formed DER value.
        let inner = read_all(content, field)?;
        if inner.len() != 1 {
            return Err(error(field, "an explicit tag must hold exactly one value"));
        }
        return Ok(AuthValue::Unknown(content.to_vec()));
    };
    let inner = read_all(content, field)?;
    let [value] = inner.as_slice() else {
        return Err(error(field, "an explicit tag must hold exactly one value"));
    };
    Ok(match kind {
        TagKind::Integer => AuthValue::Integer(integer(value, field)?),
        TagKind::IntegerSet => AuthValue::IntegerSet(
            set(value, field)?.iter().map(|v| integer(v, field)).collect::<Result<_, _>>()?,
        ),
        TagKind::Flag => {
            expect_tag(value, Tag::Null, field)?;
            if !value.value().is_empty() {
                return Err(error(field, "NULL with content"));
            }
            AuthValue::Flag
        }
        TagKind::Bytes | TagKind::Text => AuthValue::Bytes(octets(value, field)?),
        TagKind::RootOfTrust => AuthValue::RootOfTrust(root_of_trust(value, field)?),
        TagKind::ApplicationId => {
            AuthValue::ApplicationId(application_id(&octets(value, field)?, field)?)
        }
    })
}

fn root_of_trust(any: &AnyRef<'_>, field: &str) -> Result<RootOfTrust, KeyDescriptionError> {
    let fields = sequence(any, field)?;
    let (key, locked, state, hash) = match fields.as_slice() {
        [key, locked, state] => (key, locked, state, None),
        [key, locked, state, hash] => (key, locked, state, Some(hash)),
        _ => return Err(error(field, "a SEQUENCE of 3 or 4 fields was expected")),
    };
    let verified_boot_state = match enumerated(state, &format!("{field}.verifiedBootState"))? {
        0 => VerifiedBootState::Verified,
        1 => VerifiedBootState::SelfSigned,
        2 => VerifiedBootState::Unverified,
        3 => VerifiedBootState::Failed,
        other => {
            return Err(error(field, format!("unknown verifiedBootState {other}")));
        }
    };
    Ok(RootOfTrust {
        verified_boot_key: octets(key, &format!("{field}.verifiedBootKey"))?,
        device_locked: boolean(locked, &format!("{field}.deviceLocked"))?,
        verified_boot_state,
        verified_boot_hash: hash
            .map(|h| octets(h, &format!("{field}.verifiedBootHash")))
            .transpose()?,
    })
}

fn application_id(
    bytes: &[u8],
    field: &str,
) -> Result<AttestationApplicationId, KeyDescriptionError> {
    let top = read_all(bytes, field)?;
    let [one] = top.as_slice() else {
        return Err(error(field, "not exactly one DER value"));
    };
    let fields = sequence(one, field)?;
    let [infos, digests] = fields.as_slice() else {
        return Err(error(field, "a SEQUENCE of 2 fields was expected"));
    };
    let packages = set(infos, &format!("{field}.packageInfos"))?
        .iter()
        .map(|info| {
            let field = format!("{field}.packageInfos");
            let parts = sequence(info, &field)?;
            let [name, version] = parts.as_slice() else {
                return Err(error(&field, "a SEQUENCE of 2 fields was expected"));
            };
            Ok(PackageInfo { name: octets(name, &field)?, version: integer(version, &field)? })
        })
        .collect::<Result<_, _>>()?;
    let signature_digests = set(digests, &format!("{field}.signatureDigests"))?
        .iter()
        .map(|d| octets(d, &format!("{field}.signatureDigests")))
        .collect::<Result<_, _>>()?;
    Ok(AttestationApplicationId { der: bytes.to_vec(), packages, signature_digests })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_non_negative() {
        assert_eq!(unsigned(&[0x00], "f"), Ok(0));
        assert_eq!(unsigned(&[0x00, 0x80], "f"), Ok(128));
        assert_eq!(unsigned(&[0x01, 0x00, 0x01], "f"), Ok(65537));
        assert!(unsigned(&[0x00, 0x01], "f").is_err());
        assert!(unsigned(&[0xff], "f").is_err());
        assert!(unsigned(&[], "f").is_err());
        assert_eq!(
            unsigned(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "f"),
            Ok(u64::MAX)
        );
        assert!(unsigned(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0], "f").is_err());
    }

    #[test]
    fn tags_are_unique_in_the_table() {
        for (index, (number, _, _)) in TAGS.iter().enumerate() {
            assert!(TAGS.iter().skip(index + 1).all(|(other, _, _)| other != number));
        }
    }
}
