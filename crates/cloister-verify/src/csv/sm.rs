//! The Chinese commercial cryptography Hygon uses: SM2 signatures with a signer user id, SM3
//! and HMAC-SM3, over the little-endian 72-byte integer fields of Hygon's binary formats.

use sm2::dsa::signature::Verifier as _;
use sm3::{Digest as _, Sm3};

/// Size of one integer field (a coordinate, `r` or `s`) in Hygon's binary formats.
pub(crate) const INT_FIELD: usize = 72;
/// Size of an SM2 scalar or coordinate.
const SCALAR: usize = 32;

/// Reads one 72-byte little-endian integer field that must hold a 256-bit value, as big-endian
/// bytes. `None` when the field is short or its upper 40 bytes are not zero.
pub(crate) fn le_field_to_be(field: &[u8]) -> Option<[u8; SCALAR]> {
    if field.len() != INT_FIELD || field.get(SCALAR..)?.iter().any(|&b| b != 0) {
        return None;
    }
    let mut out = [0u8; SCALAR];
    for (dst, src) in out.iter_mut().zip(field.get(..SCALAR)?.iter().rev()) {
        *dst = *src;
    }
    Some(out)
}

/// An SM2 public key (affine coordinates, big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sm2PublicKey {
    /// x coordinate, big-endian.
    pub(crate) x: [u8; SCALAR],
    /// y coordinate, big-endian.
    pub(crate) y: [u8; SCALAR],
}

impl Sm2PublicKey {
    /// The SEC1 uncompressed encoding `04 || x || y`.
    pub(crate) fn sec1(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 * SCALAR);
        out.push(0x04);
        out.extend_from_slice(&self.x);
        out.extend_from_slice(&self.y);
        out
    }
}

/// An SM2 signature (big-endian scalars).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sm2Signature {
    /// r, big-endian.
    pub(crate) r: [u8; SCALAR],
    /// s, big-endian.
    pub(crate) s: [u8; SCALAR],
}

impl Sm2Signature {
    /// Reads `r` and `s` from two consecutive 72-byte little-endian fields.
    pub(crate) fn from_le_fields(bytes: &[u8]) -> Option<Self> {
        let r = le_field_to_be(bytes.get(..INT_FIELD)?)?;
        let s = le_field_to_be(bytes.get(INT_FIELD..2 * INT_FIELD)?)?;
        Some(Self { r, s })
    }
}

/// Why an SM2 verification failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sm2Failure {
    /// The public key is not a point on the SM2 curve.
    BadKey,
    /// The user id is not text, or too long for the Z value.
    BadUserId,
    /// `r` or `s` is zero or not below the group order.
    BadSignatureEncoding,
    /// The signature does not verify.
    Mismatch,
}

/// Verifies an SM2 signature over `msg`, with the signer's user id (distinguishing identifier)
/// `user_id` in the Z value: `e = SM3(Z || msg)`, `Z = SM3(ENTL || ID || a || b || G || P)`.
pub(crate) fn sm2_verify(
    key: &Sm2PublicKey,
    user_id: &[u8],
    msg: &[u8],
    sig: &Sm2Signature,
) -> Result<(), Sm2Failure> {
    let distid = std::str::from_utf8(user_id).map_err(|_| Sm2Failure::BadUserId)?;
    let public = sm2::PublicKey::from_sec1_bytes(&key.sec1()).map_err(|_| Sm2Failure::BadKey)?;
    let verifier =
        sm2::dsa::VerifyingKey::new(distid, public).map_err(|_| Sm2Failure::BadUserId)?;
    let mut rs = [0u8; 2 * SCALAR];
    rs[..SCALAR].copy_from_slice(&sig.r);
    rs[SCALAR..].copy_from_slice(&sig.s);
    let signature =
        sm2::dsa::Signature::from_slice(&rs).map_err(|_| Sm2Failure::BadSignatureEncoding)?;
    verifier.verify(msg, &signature).map_err(|_| Sm2Failure::Mismatch)
}

/// SM3 of `data`.
pub(crate) fn sm3(data: &[u8]) -> [u8; 32] {
    Sm3::digest(data).into()
}

/// HMAC-SM3 (RFC 2104 with SM3, 64-byte blocks) of the concatenation of `parts`.
pub(crate) fn hmac_sm3(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&sm3(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sm3::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let inner_hash = inner.finalize();
    let mut outer = Sm3::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner_hash);
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use sm2::dsa::signature::Signer as _;

    #[test]
    fn sm3_published_vector() {
        // GB/T 32905-2016 example 1: SM3("abc").
        assert_eq!(
            hex::encode(sm3(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn hmac_sm3_matches_definition_for_long_keys() {
        // A key longer than a block is hashed first: both forms give the same MAC.
        let long = [0x5au8; 100];
        assert_eq!(hmac_sm3(&long, &[b"m"]), hmac_sm3(&sm3(&long), &[b"m"]));
        assert_ne!(hmac_sm3(b"k1", &[b"m"]), hmac_sm3(b"k2", &[b"m"]));
        assert_eq!(hmac_sm3(b"k", &[b"ab", b"c"]), hmac_sm3(b"k", &[b"abc"]));
    }

    fn test_key(user_id: &str) -> (sm2::dsa::SigningKey, Sm2PublicKey) {
        let secret = [0x42u8; 32];
        let signing = sm2::dsa::SigningKey::from_slice(user_id, &secret).unwrap();
        let sec1 = signing.verifying_key().to_sec1_bytes();
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        x.copy_from_slice(&sec1[1..33]);
        y.copy_from_slice(&sec1[33..65]);
        (signing, Sm2PublicKey { x, y })
    }

    fn split(sig: &sm2::dsa::Signature) -> Sm2Signature {
        let bytes = sig.to_bytes();
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Sm2Signature { r, s }
    }

    #[test]
    fn sm2_round_trip_with_user_id() {
        let (signing, public) = test_key("HYGON-SSD-HRK");
        let sig = split(&signing.sign(b"certificate body"));
        assert_eq!(sm2_verify(&public, b"HYGON-SSD-HRK", b"certificate body", &sig), Ok(()));
        assert_eq!(
            sm2_verify(&public, b"HYGON-SSD-HRK", b"certificate bodY", &sig),
            Err(Sm2Failure::Mismatch)
        );
    }

    #[test]
    fn sm2_wrong_user_id_changes_z_and_fails() {
        let (signing, public) = test_key("HYGON-SSD-HSK");
        let sig = split(&signing.sign(b"msg"));
        assert_eq!(sm2_verify(&public, b"HYGON-SSD-HSK", b"msg", &sig), Ok(()));
        for wrong in [&b"HYGON-SSD-HRK"[..], b"", b"1234567812345678", b"HYGON-SSD-HSK\0"] {
            assert_eq!(sm2_verify(&public, wrong, b"msg", &sig), Err(Sm2Failure::Mismatch));
        }
    }

    #[test]
    fn sm2_rejects_bad_keys_and_scalars() {
        let (signing, mut public) = test_key("id");
        let sig = split(&signing.sign(b"m"));
        let zero = Sm2Signature { r: [0; 32], s: sig.s };
        assert_eq!(sm2_verify(&public, b"id", b"m", &zero), Err(Sm2Failure::BadSignatureEncoding));
        public.y[31] ^= 1;
        assert_eq!(sm2_verify(&public, b"id", b"m", &sig), Err(Sm2Failure::BadKey));
        assert_eq!(sm2_verify(&public, &[0xff], b"m", &sig), Err(Sm2Failure::BadUserId));
    }

    #[test]
    fn little_endian_fields() {
        let mut field = [0u8; INT_FIELD];
        field[0] = 1;
        field[31] = 2;
        let be = le_field_to_be(&field).unwrap();
        assert_eq!((be[0], be[31]), (2, 1));
        field[40] = 1;
        assert_eq!(le_field_to_be(&field), None);
        assert_eq!(le_field_to_be(&field[..71]), None);
    }
}
