//! Intel SGX enclave identity: MRENCLAVE from an SGXS measurement stream, and the fields of a
//! SIGSTRUCT (MRSIGNER, the ENCLAVEHASH it signs, product ID, SVN, attributes), with the
//! signature checked the way EINIT checks it.
//!
//! An SGXS stream (Fortanix `doc/SGXS.md`) is the sequence of 64-byte blobs the CPU hashes while
//! the enclave is built, so MRENCLAVE is the SHA-256 of the measured records: `ECREATE` (SSA
//! frame size, enclave size), `EADD` (page offset, SECINFO flags) and `EEXTEND` (chunk offset)
//! followed by the 256 bytes it measures. The enhanced format adds `UNMEASRD` records (loaded,
//! not measured; skipped with their 256 bytes) and `UNSIZED` (an enclave whose size is not
//! final, which cannot be measured).
//!
//! The SIGSTRUCT layout (1808 bytes) is the Intel SDM's (volume 3D, "Enclave Signature
//! Structure"). MRSIGNER is the SHA-256 of the RSA-3072 modulus as stored (little-endian). The
//! signature is RSA PKCS#1 v1.5 with SHA-256 over bytes `[0, 128)` and `[900, 1028)`, exponent 3,
//! all numbers little-endian; Q1 and Q2 let EINIT check it with multiplications only, and EINIT
//! fails when they are wrong, so [`Sigstruct::verify_signature`] checks them too.

use rsa::BoxedUint;
use sha2::{Digest, Sha256};

use crate::MeasureError;
use crate::bytes::{u16_at, u32_at, u64_at};

/// The size of a SIGSTRUCT.
pub const SIGSTRUCT_LEN: usize = 1808;
const HEADER: [u8; 16] = [6, 0, 0, 0, 0xE1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
const HEADER2: [u8; 16] = [1, 1, 0, 0, 0x60, 0, 0, 0, 0x60, 0, 0, 0, 1, 0, 0, 0];
const KEY_LEN: usize = 384;

const RECORD: usize = 64;
const CHUNK: usize = 256;
const PAGE: u64 = 4096;

/// MRENCLAVE: the SHA-256 of an SGXS stream's measured records.
pub fn mrenclave_from_sgxs(sgxs: &[u8]) -> Result<[u8; 32], MeasureError> {
    let mut hash = Sha256::new();
    let mut enclave_size = None;
    let mut at = 0;
    while at < sgxs.len() {
        let bad = |reason: String| MeasureError::MalformedSgxs { offset: at, reason };
        let record = sgxs
            .get(at..at + RECORD)
            .ok_or_else(|| bad(format!("{} bytes left, a record is 64", sgxs.len() - at)))?;
        let (tag, body) = record.split_at(8);
        let chunk = || {
            sgxs.get(at + RECORD..at + RECORD + CHUNK)
                .ok_or_else(|| bad("the 256 data bytes of the record are cut off".to_owned()))
        };
        let reserved_from = match tag {
            b"ECREATE\0" => 20,
            b"EADD\0\0\0\0" => 24,
            b"EEXTEND\0" | b"UNMEASRD" => 16,
            b"UNSIZED\0" => return Err(MeasureError::SgxsUnsized),
            _ => {
                return Err(MeasureError::UnknownSgxsRecord {
                    offset: at,
                    tag: tag.escape_ascii().to_string(),
                });
            }
        };
        if record[reserved_from..].iter().any(|&b| b != 0) {
            return Err(bad("reserved bytes of the record are not zero".to_owned()));
        }
        let size = match (tag, enclave_size) {
            (b"ECREATE\0", None) => {
                let size = u64_at(body, 4).unwrap_or_default();
                if !size.is_power_of_two() || size < PAGE {
                    return Err(bad(format!(
                        "enclave size {size:#x} is not a power of two ≥ 4096"
                    )));
                }
                enclave_size = Some(size);
                size
            }
            (b"ECREATE\0", Some(_)) => return Err(bad("a second ECREATE".to_owned())),
            (_, None) => return Err(bad("the stream does not start with ECREATE".to_owned())),
            (_, Some(size)) => size,
        };
        let offset = u64_at(body, 0).unwrap_or_default();
        match tag {
            b"EADD\0\0\0\0" if !offset.is_multiple_of(PAGE) || offset >= size => {
                return Err(bad(format!("EADD at {offset:#x}: not a page inside the enclave")));
            }
            b"EEXTEND\0" | b"UNMEASRD"
                if !offset.is_multiple_of(CHUNK as u64) || offset >= size =>
            {
                return Err(bad(format!(
                    "chunk at {offset:#x}: not 256-byte aligned inside the enclave"
                )));
            }
            _ => {}
        }
        match tag {
            b"UNMEASRD" => {
                chunk()?;
                at += RECORD + CHUNK;
            }
            b"EEXTEND\0" => {
                hash.update(record);
                hash.update(chunk()?);
                at += RECORD + CHUNK;
            }
            _ => {
                hash.update(record);
                at += RECORD;
            }
        }
    }
    if enclave_size.is_none() {
        return Err(MeasureError::MalformedSgxs {
            offset: 0,
            reason: "the stream is empty".to_owned(),
        });
    }
    Ok(hash.finalize().into())
}

/// SECS attributes: flags and XFRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// `ATTRIBUTES.FLAGS` (bit 1 DEBUG, bit 2 MODE64BIT, …).
    pub flags: u64,
    /// `ATTRIBUTES.XFRM`: the XSAVE features the enclave may use.
    pub xfrm: u64,
}

impl Attributes {
    /// `ATTRIBUTES.DEBUG`: the enclave can be debugged; never trust its secrets.
    pub const DEBUG: u64 = 1 << 1;

    fn at(data: &[u8], at: usize) -> Self {
        Self {
            flags: u64_at(data, at).unwrap_or_default(),
            xfrm: u64_at(data, at + 8).unwrap_or_default(),
        }
    }
}

/// A parsed SIGSTRUCT (the enclave's signature structure; Gramine's `.sig` file is one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sigstruct {
    /// `VENDOR`: 0, or 0x8086 for Intel's own enclaves.
    pub vendor: u32,
    /// `DATE` as BCD `0xYYYYMMDD`; see [`Sigstruct::date`].
    pub date_bcd: u32,
    /// `SWDEFINED`: free for the signer.
    pub sw_defined: u32,
    /// `MISCSELECT` the enclave requires.
    pub misc_select: u32,
    /// `MISCMASK`: the `MISCSELECT` bits that must match.
    pub misc_mask: u32,
    /// `ISVFAMILYID` (key separation and sharing).
    pub isv_family_id: [u8; 16],
    /// `ATTRIBUTES` the enclave requires.
    pub attributes: Attributes,
    /// `ATTRIBUTEMASK`: the attribute bits that must match.
    pub attribute_mask: Attributes,
    /// `ENCLAVEHASH`: the MRENCLAVE this structure signs.
    pub enclave_hash: [u8; 32],
    /// `ISVEXTPRODID` (key separation and sharing).
    pub isv_ext_prod_id: [u8; 16],
    /// `ISVPRODID`.
    pub isv_prod_id: u16,
    /// `ISVSVN`.
    pub isv_svn: u16,
    raw: Box<[u8; SIGSTRUCT_LEN]>,
}

impl Sigstruct {
    /// Parses a SIGSTRUCT, checking its size, both fixed headers, the vendor and the exponent.
    pub fn parse(data: &[u8]) -> Result<Self, MeasureError> {
        let raw: Box<[u8; SIGSTRUCT_LEN]> = data
            .try_into()
            .map(Box::new)
            .map_err(|_| MeasureError::SigstructSize { len: data.len() })?;
        let field =
            |name: &'static str, found: String| MeasureError::SigstructField { name, found };
        if raw[..16] != HEADER {
            return Err(field("HEADER", hex::encode(&raw[..16])));
        }
        if raw[24..40] != HEADER2 {
            return Err(field("HEADER2", hex::encode(&raw[24..40])));
        }
        let u32_field = |at| u32_at(&raw[..], at).unwrap_or_default();
        let vendor = u32_field(16);
        if vendor != 0 && vendor != 0x8086 {
            return Err(field("VENDOR", format!("{vendor:#x}")));
        }
        let exponent = u32_field(512);
        if exponent != 3 {
            return Err(field("EXPONENT", exponent.to_string()));
        }
        let array16 = |at: usize| -> [u8; 16] {
            let mut out = [0; 16];
            out.copy_from_slice(&raw[at..at + 16]);
            out
        };
        let mut enclave_hash = [0; 32];
        enclave_hash.copy_from_slice(&raw[960..992]);
        Ok(Self {
            vendor,
            date_bcd: u32_field(20),
            sw_defined: u32_field(40),
            misc_select: u32_field(900),
            misc_mask: u32_field(904),
            isv_family_id: array16(912),
            attributes: Attributes::at(&raw[..], 928),
            attribute_mask: Attributes::at(&raw[..], 944),
            enclave_hash,
            isv_ext_prod_id: array16(1008),
            isv_prod_id: u16_at(&raw[..], 1024).unwrap_or_default(),
            isv_svn: u16_at(&raw[..], 1026).unwrap_or_default(),
            raw,
        })
    }

    /// The signer's RSA-3072 modulus, little-endian as stored.
    pub fn modulus(&self) -> &[u8] {
        &self.raw[128..128 + KEY_LEN]
    }

    /// The signature, little-endian as stored.
    pub fn signature(&self) -> &[u8] {
        &self.raw[516..516 + KEY_LEN]
    }

    /// MRSIGNER: the SHA-256 of the modulus as stored.
    pub fn mrsigner(&self) -> [u8; 32] {
        Sha256::digest(self.modulus()).into()
    }

    /// `DATE` as year, month, day, if it is valid BCD.
    pub fn date(&self) -> Option<(u16, u8, u8)> {
        let bcd = |value: u32, digits: u32| -> Option<u32> {
            (0..digits).rev().try_fold(0, |acc, i| {
                let digit = (value >> (4 * i)) & 0xf;
                (digit < 10).then_some(acc * 10 + digit)
            })
        };
        let year = u16::try_from(bcd(self.date_bcd >> 16, 4)?).ok()?;
        let month = u8::try_from(bcd((self.date_bcd >> 8) & 0xff, 2)?).ok()?;
        let day = u8::try_from(bcd(self.date_bcd & 0xff, 2)?).ok()?;
        ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((year, month, day))
    }

    /// Whether the signed attributes let the enclave run in debug mode.
    pub fn allows_debug(&self) -> bool {
        self.attributes.flags & Attributes::DEBUG != 0
            || self.attribute_mask.flags & Attributes::DEBUG == 0
    }

    /// Checks the RSA-3072 signature (PKCS#1 v1.5, SHA-256, e = 3) over the signed parts, and the
    /// Q1 and Q2 values EINIT uses to check it.
    pub fn verify_signature(&self) -> Result<(), MeasureError> {
        let mut signed = Sha256::new();
        signed.update(&self.raw[..128]);
        signed.update(&self.raw[900..1028]);
        verify_rsa3072(
            self.modulus(),
            self.signature(),
            &self.raw[1040..1040 + KEY_LEN],
            &self.raw[1424..1424 + KEY_LEN],
            &signed.finalize(),
        )
    }
}

/// Checks an SGX RSA-3072 signature over a SHA-256 digest: every number little-endian, 384
/// bytes.
fn verify_rsa3072(
    modulus: &[u8],
    signature: &[u8],
    q1: &[u8],
    q2: &[u8],
    sha256: &[u8],
) -> Result<(), MeasureError> {
    use rsa::signature::hazmat::PrehashVerifier as _;

    let invalid = |reason: &str| MeasureError::SignatureInvalid { reason: reason.to_owned() };
    let be = |le: &[u8]| le.iter().rev().copied().collect::<Vec<u8>>();
    let key =
        rsa::PublicKey::new(BoxedUint::from_be_slice_vartime(&be(modulus)), BoxedUint::from(3u32))
            .map_err(|e| invalid(&format!("the modulus is not an RSA key ({e})")))?;
    let sig = rsa::pkcs1v15::Signature::try_from(be(signature).as_slice())
        .map_err(|_| invalid("the signature is malformed"))?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
        .verify_prehash(sha256, &sig)
        .map_err(|_| invalid("RSA PKCS#1 v1.5 verification failed"))?;

    // Q1 = ⌊s² / n⌋ and Q2 = ⌊(s³ − Q1·s·n) / n⌋, i.e. s² = Q1·n + r1 and s·r1 = Q2·n + r2 with
    // 0 ≤ r1, r2 < n. Every product below is smaller than 2^6144, so nothing wraps.
    const BITS: u32 = 2 * 8 * KEY_LEN as u32;
    let wide = |le: &[u8]| BoxedUint::from_le_slice_truncated(le, BITS);
    let (n, s) = (wide(modulus), wide(signature));
    let remainder = |product: &BoxedUint, q: &[u8]| -> Option<BoxedUint> {
        let qn = wide(q).wrapping_mul(&n);
        let r = (qn <= *product).then(|| product.wrapping_sub(&qn))?;
        (r < n).then_some(r)
    };
    let r1 = remainder(&s.wrapping_mul(&s), q1).ok_or_else(|| invalid("Q1 is not ⌊s²/n⌋"))?;
    remainder(&s.wrapping_mul(&r1), q2).ok_or_else(|| invalid("Q2 is not ⌊(s³ − Q1·s·n)/n⌋"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3072-bit SIGSTRUCT-shaped header with nothing signed.
    fn minimal() -> Vec<u8> {
        let mut s = vec![0u8; SIGSTRUCT_LEN];
        s[..16].copy_from_slice(&HEADER);
        s[24..40].copy_from_slice(&HEADER2);
        s[512..516].copy_from_slice(&3u32.to_le_bytes());
        s
    }

    #[test]
    fn dates_are_bcd() {
        let mut raw = minimal();
        raw[20..24].copy_from_slice(&0x2016_1214u32.to_le_bytes());
        assert_eq!(Sigstruct::parse(&raw).unwrap().date(), Some((2016, 12, 14)));
        raw[20..24].copy_from_slice(&0x2016_1a14u32.to_le_bytes());
        assert_eq!(Sigstruct::parse(&raw).unwrap().date(), None);
        raw[20..24].copy_from_slice(&0x2016_1300u32.to_le_bytes());
        assert_eq!(Sigstruct::parse(&raw).unwrap().date(), None);
    }

    #[test]
    fn debug_is_allowed_unless_signed_off() {
        let mut raw = minimal();
        // Mask ignores DEBUG: any value passes EINIT.
        assert!(Sigstruct::parse(&raw).unwrap().allows_debug());
        raw[944..952].copy_from_slice(&Attributes::DEBUG.to_le_bytes());
        assert!(!Sigstruct::parse(&raw).unwrap().allows_debug());
        raw[928..936].copy_from_slice(&Attributes::DEBUG.to_le_bytes());
        assert!(Sigstruct::parse(&raw).unwrap().allows_debug());
    }

    /// A file of the shared vectors (the convention of `tests/cases.rs`).
    fn vector(relative: &str) -> Vec<u8> {
        let dir = match std::env::var_os("CLOISTER_VECTORS") {
            Some(dir) => std::path::PathBuf::from(dir),
            None => {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
            }
        };
        let path = dir.join(relative);
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read vector {}: {e}", path.display()))
    }

    /// Fortanix's signing vector: a SHA-256 digest signed with the SGX SDK sample key, with the
    /// Q1 and Q2 its signer computed.
    #[test]
    fn q1_and_q2_of_a_known_signature() {
        let v = |name: &str| vector(&format!("measure-sgx/fortanix_sig1.{name}.bin"));
        let (n, data, sig, q1, q2) = (v("key_n"), v("data"), v("sig"), v("q1"), v("q2"));
        verify_rsa3072(&n, &sig, &q1, &q2, &data).unwrap();
        let mut other = data.clone();
        other[0] ^= 1;
        assert!(verify_rsa3072(&n, &sig, &q1, &q2, &other).is_err());
        for (q, name) in [(&q1, "Q1"), (&q2, "Q2")] {
            for delta in [1u8, 0x80] {
                let mut bad = q.clone();
                bad[0] ^= delta;
                let (bad1, bad2) = if name == "Q1" { (&bad, &q2) } else { (&q1, &bad) };
                let err = verify_rsa3072(&n, &sig, bad1, bad2, &data).unwrap_err();
                assert!(err.to_string().contains(name), "{err}");
            }
        }
    }

    #[test]
    fn an_all_zero_key_is_no_key() {
        let err = Sigstruct::parse(&minimal()).unwrap().verify_signature().unwrap_err();
        assert!(matches!(err, MeasureError::SignatureInvalid { .. }), "{err}");
    }
}
