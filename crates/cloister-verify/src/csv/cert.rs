//! Hygon's binary certificate formats (not X.509): the 832-byte CA format of the HRK and HSK,
//! and the 2084-byte CSV format of the CEK, PEK, OCA and PDH. All integers are little-endian.
//!
//! CA format: version u32 @0, key id [16] @4, signer id [16] @0x14, usage u32 @0x24, reserved
//! [24], public key {curve u32 @0x40, x [72] @0x44, y [72] @0x8c}, user id size u16 @0xd4, user id
//! [254] @0xd6, reserved [108]; signature r [72] @576, s [72] @648 over bytes [0, 576); reserved
//! [112].
//!
//! CSV format: version u32 @0, firmware major u8 @4, minor u8 @5, reserved u16, public key
//! {usage u32 @8, algorithm u32 @12, curve u32 @16, x [72] @20, y [72] @92}, user id size u16
//! @164, user id [254] @166, signer id [16] @420, reserved [608]; then two signature slots of
//! 520 bytes at 1044 and 1564: {usage u32, algorithm u32, r [72], s [72], reserved [368]}, each
//! over bytes [0, 1044).

use super::sm::{INT_FIELD, Sm2PublicKey, Sm2Signature, le_field_to_be};

/// Size of a CA-format certificate (HRK, HSK).
pub(crate) const CA_CERT_LEN: usize = 832;
/// Size of a CSV-format certificate (CEK, PEK).
pub(crate) const CSV_CERT_LEN: usize = 2084;
/// Bytes of a CA certificate covered by its signature.
const CA_SIGNED_LEN: usize = 576;
/// Bytes of a CSV certificate covered by its signatures.
const CSV_SIGNED_LEN: usize = 1044;
/// Size of one signature slot of a CSV certificate.
const CSV_SIG_SLOT: usize = 520;

/// Key usages (Hygon's `Usage` values).
pub(crate) mod usage {
    /// Hygon Root Key.
    pub(crate) const HRK: u32 = 0x0000;
    /// Hygon Signing Key.
    pub(crate) const HSK: u32 = 0x0013;
    /// Platform Endorsement Key.
    pub(crate) const PEK: u32 = 0x1002;
    /// Chip Endorsement Key.
    pub(crate) const CEK: u32 = 0x1004;
}

/// The SM2 signature algorithm id.
pub(crate) const ALGO_SM2_SIGN: u32 = 4;
/// The SM2 curve id in a public key.
const CURVE_SM2: u32 = 3;

/// The user ids (SM2 distinguishing identifiers) each Hygon key signs with.
pub(crate) mod user_id {
    /// The HRK's.
    pub(crate) const HRK: &[u8] = b"HYGON-SSD-HRK";
    /// The HSK's.
    pub(crate) const HSK: &[u8] = b"HYGON-SSD-HSK";
    /// The CEK's.
    pub(crate) const CEK: &[u8] = b"HYGON-SSD-CEK";
    /// The PEK's.
    pub(crate) const PEK: &[u8] = b"HYGON-SSD-PEK";
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let raw = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    let raw = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes([raw[0], raw[1]]))
}

fn array16(bytes: &[u8], offset: usize) -> Option<[u8; 16]> {
    bytes.get(offset..offset.checked_add(16)?)?.try_into().ok()
}

/// Reads `{curve u32, x [72], y [72]}` at `offset`.
fn public_key_at(bytes: &[u8], offset: usize) -> Result<Sm2PublicKey, String> {
    let curve = u32_at(bytes, offset).ok_or("public key is truncated")?;
    if curve != CURVE_SM2 {
        return Err(format!("public key curve is {curve}, expected {CURVE_SM2} (SM2)"));
    }
    let field = |start: usize| {
        bytes
            .get(start..start + INT_FIELD)
            .and_then(le_field_to_be)
            .ok_or_else(|| "public key coordinate is not a 256-bit little-endian value".to_owned())
    };
    Ok(Sm2PublicKey { x: field(offset + 4)?, y: field(offset + 4 + INT_FIELD)? })
}

/// Reads `{size u16, id [254]}` at `offset`.
fn user_id_at(bytes: &[u8], offset: usize) -> Result<Vec<u8>, String> {
    let size = usize::from(u16_at(bytes, offset).ok_or("user id is truncated")?);
    if size > 254 {
        return Err(format!("user id size {size} exceeds the 254-byte field"));
    }
    bytes
        .get(offset + 2..offset + 2 + size)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "user id is truncated".to_owned())
}

/// A certificate in Hygon's CA format (HRK or HSK).
#[derive(Clone, Debug)]
pub(crate) struct CaCert {
    /// The 832 bytes.
    pub(crate) bytes: Vec<u8>,
    /// The key id.
    pub(crate) key_id: [u8; 16],
    /// The signer's key id (the HRK's own for the HRK).
    pub(crate) signer_id: [u8; 16],
    /// The key usage.
    pub(crate) usage: u32,
    /// The public key.
    pub(crate) key: Sm2PublicKey,
    /// The user id this key signs with.
    pub(crate) user_id: Vec<u8>,
    /// The signature over bytes [0, 576).
    pub(crate) signature: Sm2Signature,
}

impl CaCert {
    /// Parses an 832-byte CA-format certificate.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != CA_CERT_LEN {
            return Err(format!("is {} bytes, expected {CA_CERT_LEN}", bytes.len()));
        }
        let version = u32_at(bytes, 0).ok_or("truncated")?;
        if version != 1 {
            return Err(format!("has version {version}, expected 1"));
        }
        let signature = bytes
            .get(CA_SIGNED_LEN..CA_SIGNED_LEN + 2 * INT_FIELD)
            .and_then(Sm2Signature::from_le_fields)
            .ok_or("signature r/s is not a 256-bit little-endian value")?;
        Ok(Self {
            bytes: bytes.to_vec(),
            key_id: array16(bytes, 4).ok_or("truncated")?,
            signer_id: array16(bytes, 0x14).ok_or("truncated")?,
            usage: u32_at(bytes, 0x24).ok_or("truncated")?,
            key: public_key_at(bytes, 0x40)?,
            user_id: user_id_at(bytes, 0xd4)?,
            signature,
        })
    }

    /// The bytes the signature covers.
    pub(crate) fn signed_bytes(&self) -> &[u8] {
        self.bytes.get(..CA_SIGNED_LEN).unwrap_or_default()
    }
}

/// One signature slot of a CSV-format certificate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SigSlot {
    /// The usage of the key that signed.
    pub(crate) usage: u32,
    /// The signature algorithm.
    pub(crate) algo: u32,
    /// The signature, if `r` and `s` are well-formed 256-bit values.
    pub(crate) signature: Option<Sm2Signature>,
}

/// A certificate in Hygon's CSV format (CEK, PEK, …).
#[derive(Clone, Debug)]
pub(crate) struct CsvCert {
    /// The 2084 bytes.
    pub(crate) bytes: Vec<u8>,
    /// The format version.
    pub(crate) version: u32,
    /// Firmware version (major, minor) that issued the certificate.
    pub(crate) firmware: (u8, u8),
    /// The key usage.
    pub(crate) usage: u32,
    /// The key's algorithm.
    pub(crate) algo: u32,
    /// The public key.
    pub(crate) key: Sm2PublicKey,
    /// The user id this key signs with.
    pub(crate) user_id: Vec<u8>,
    /// The signer's key id (the HSK key id for a CEK; zero for a PEK).
    pub(crate) signer_id: [u8; 16],
    /// The two signature slots.
    pub(crate) slots: [SigSlot; 2],
}

impl CsvCert {
    /// Parses a 2084-byte CSV-format certificate.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != CSV_CERT_LEN {
            return Err(format!("is {} bytes, expected {CSV_CERT_LEN}", bytes.len()));
        }
        let version = u32_at(bytes, 0).ok_or("truncated")?;
        // Version 1 (PEKs) and 2 (CEKs) share the layout.
        if !matches!(version, 1 | 2) {
            return Err(format!("has version {version}, expected 1 or 2"));
        }
        let slot = |index: usize| -> Result<SigSlot, String> {
            let start = CSV_SIGNED_LEN + index * CSV_SIG_SLOT;
            let usage = u32_at(bytes, start).ok_or("signature slot is truncated")?;
            let algo = u32_at(bytes, start + 4).ok_or("signature slot is truncated")?;
            let signature = bytes
                .get(start + 8..start + 8 + 2 * INT_FIELD)
                .and_then(Sm2Signature::from_le_fields);
            Ok(SigSlot { usage, algo, signature })
        };
        Ok(Self {
            bytes: bytes.to_vec(),
            version,
            firmware: (bytes[4], bytes[5]),
            usage: u32_at(bytes, 8).ok_or("truncated")?,
            algo: u32_at(bytes, 12).ok_or("truncated")?,
            key: public_key_at(bytes, 16)?,
            user_id: user_id_at(bytes, 164)?,
            signer_id: array16(bytes, 420).ok_or("truncated")?,
            slots: [slot(0)?, slot(1)?],
        })
    }

    /// The bytes the signatures cover.
    pub(crate) fn signed_bytes(&self) -> &[u8] {
        self.bytes.get(..CSV_SIGNED_LEN).unwrap_or_default()
    }

    /// The signature made by a key of usage `signer_usage` with SM2, if the certificate has one.
    pub(crate) fn signature_by(&self, signer_usage: u32) -> Option<Sm2Signature> {
        self.slots
            .iter()
            .find(|slot| slot.usage == signer_usage && slot.algo == ALGO_SM2_SIGN)
            .and_then(|slot| slot.signature)
    }
}
