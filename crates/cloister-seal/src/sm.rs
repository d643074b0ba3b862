//! The ShangMi suite's cryptography, wired from RustCrypto crates (no primitive is implemented
//! here): HKDF over SM3 (`hkdf` + `sm3`), SM4-GCM (`aes-gcm`'s generic GCM over `sm4`) and
//! SM2 public-key encryption (GB/T 32918.4, `sm2::pke`, C1 ‖ C3 ‖ C2 layout).
//!
//! Recipient entry (kind 3): the sealer draws a 32-byte seed per recipient and expands it with
//! HKDF-SM3 into the wrap secret `s` (32 bytes) followed by SM2's ephemeral scalar candidates.
//! `s` is SM2-encrypted to the recipient (129 bytes: C1 uncompressed 65, C3 32, C2 32); the
//! key and nonce that wrap the DEK with SM4-GCM (AAD = header prefix) are HKDF-SM3 of `s`.
//! `docs/formats/sealed-envelope.md` §10 specifies every input.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use sm2::elliptic_curve::rand_core::{TryCryptoRng, TryRng};
use sm2::pke::{DecryptingKey, EncryptingKey, Mode};
use zeroize::Zeroizing;

use crate::header::{SM2_CIPHERTEXT_LEN, WRAPPED_DEK_LEN};

/// SM4-GCM with a 96-bit nonce and a 128-bit tag (RFC 8998 `TLS_SM4_GCM_SM3`'s AEAD).
pub type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

/// SM4 key length.
pub const SM4_KEY_LEN: usize = 16;

/// HKDF-SM3 info for the ShangMi suite's payload (body) key.
pub const SM_PAYLOAD_KEY_INFO: &[u8] = b"cloister-seal v1 sm payload key";
/// HKDF-SM3 info for the SM4-GCM key and nonce that wrap the DEK, from the SM2-encrypted secret.
pub const SM2_WRAP_INFO: &[u8] = b"cloister-seal v1 sm2 dek wrap";
/// HKDF-SM3 info expanding a recipient's 32-byte seed into the wrap secret and SM2's
/// ephemeral scalar candidates.
pub const SM2_EPHEMERAL_INFO: &[u8] = b"cloister-seal v1 sm2 ephemeral";

/// Bytes of the ephemeral stream: the 32-byte wrap secret and seven 32-byte candidates for
/// SM2's `k` (one is out of range with probability about 2^-32, seven with about 2^-224).
const EPHEMERAL_STREAM_LEN: usize = 32 * 8;

/// HKDF-SM3 (RFC 5869 over SM3) with an empty salt.
pub fn hkdf_sm3(ikm: &[u8], info: &[u8], out: &mut [u8]) {
    // Every caller asks for at most 256 bytes, far below HKDF-SM3's 8160-byte limit.
    #[allow(clippy::expect_used)]
    hkdf::Hkdf::<sm3::Sm3>::new(None, ikm).expand(info, out).expect("HKDF-SM3 output length");
}

/// The ShangMi suite's 16-byte SM4 body key: HKDF-SM3(salt = empty, IKM = DEK,
/// info = [`SM_PAYLOAD_KEY_INFO`]).
pub fn derive_sm_payload_key(dek: &[u8; 32]) -> Zeroizing<[u8; SM4_KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; SM4_KEY_LEN]);
    hkdf_sm3(dek, SM_PAYLOAD_KEY_INFO, key.as_mut_slice());
    key
}

/// An SM4-GCM instance for `key`.
pub fn sm4_gcm(key: &[u8; SM4_KEY_LEN]) -> Sm4Gcm {
    Sm4Gcm::new(&(*key).into())
}

/// The deterministic byte stream a recipient's seed expands to: HKDF-SM3(salt = empty,
/// IKM = seed, info = [`SM2_EPHEMERAL_INFO`], L = 256). It is read front to back: first the wrap
/// secret, then whatever SM2 encryption draws for its ephemeral scalar.
struct EphemeralStream {
    bytes: Zeroizing<[u8; EPHEMERAL_STREAM_LEN]>,
    offset: usize,
}

/// The ephemeral stream ran out (SM2 rejected seven scalar candidates in a row).
#[derive(Debug)]
struct StreamExhausted;

impl std::fmt::Display for StreamExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the SM2 ephemeral stream is exhausted")
    }
}

impl std::error::Error for StreamExhausted {}

impl EphemeralStream {
    fn new(seed: &[u8; 32]) -> Self {
        let mut bytes = Zeroizing::new([0u8; EPHEMERAL_STREAM_LEN]);
        hkdf_sm3(seed, SM2_EPHEMERAL_INFO, bytes.as_mut_slice());
        Self { bytes, offset: 0 }
    }
}

impl TryRng for EphemeralStream {
    type Error = StreamExhausted;

    fn try_next_u32(&mut self) -> Result<u32, StreamExhausted> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, StreamExhausted> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), StreamExhausted> {
        let end = self.offset.checked_add(dst.len()).filter(|&e| e <= EPHEMERAL_STREAM_LEN);
        let Some(end) = end else {
            return Err(StreamExhausted);
        };
        dst.copy_from_slice(self.bytes.get(self.offset..end).ok_or(StreamExhausted)?);
        self.offset = end;
        Ok(())
    }
}

impl TryCryptoRng for EphemeralStream {}

/// The SM4-GCM key and nonce that wrap the DEK: HKDF-SM3(salt = empty, IKM = s,
/// info = [`SM2_WRAP_INFO`], L = 28) split as key (16) ‖ nonce (12).
fn wrap_key(secret: &[u8; 32]) -> (Zeroizing<[u8; SM4_KEY_LEN]>, [u8; 12]) {
    let mut okm = Zeroizing::new([0u8; SM4_KEY_LEN + 12]);
    hkdf_sm3(secret, SM2_WRAP_INFO, okm.as_mut_slice());
    let mut key = Zeroizing::new([0u8; SM4_KEY_LEN]);
    key.copy_from_slice(&okm[..SM4_KEY_LEN]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[SM4_KEY_LEN..]);
    (key, nonce)
}

/// Wraps `dek` to an SM2 public key: returns the SM2 ciphertext of the wrap secret and the
/// SM4-GCM-wrapped DEK (ciphertext ‖ tag). `None` if SM2 encryption fails (it cannot for a
/// valid public key, short of the ephemeral stream running out).
pub(crate) fn sm2_wrap_dek(
    recipient: &sm2::PublicKey,
    seed: &[u8; 32],
    dek: &[u8; 32],
    aad: &[u8],
) -> Option<([u8; SM2_CIPHERTEXT_LEN], [u8; WRAPPED_DEK_LEN])> {
    let mut stream = EphemeralStream::new(seed);
    let mut secret = Zeroizing::new([0u8; 32]);
    stream.try_fill_bytes(secret.as_mut_slice()).ok()?;
    let encrypting = EncryptingKey::new_with_mode(*recipient, Mode::C1C3C2);
    let c = encrypting.encrypt(&mut stream, secret.as_slice()).ok()?;
    let ciphertext: [u8; SM2_CIPHERTEXT_LEN] = c.as_slice().try_into().ok()?;
    let (key, nonce) = wrap_key(&secret);
    let mut wrapped = [0u8; WRAPPED_DEK_LEN];
    let (body, tag_out) = wrapped.split_at_mut(32);
    body.copy_from_slice(dek);
    let tag = sm4_gcm(&key).encrypt_inout_detached(&nonce.into(), aad, body.into()).ok()?;
    tag_out.copy_from_slice(&tag);
    Some((ciphertext, wrapped))
}

/// Recovers the DEK from an SM2 recipient entry's parts; `None` if anything fails to decrypt
/// or authenticate.
pub(crate) fn sm2_unwrap_dek(
    secret: &sm2::SecretKey,
    ciphertext: &[u8],
    wrapped: &[u8],
    aad: &[u8],
) -> Option<Zeroizing<[u8; 32]>> {
    // Canonical form only: C1 uncompressed (0x04), so the layout is fixed.
    if ciphertext.len() != SM2_CIPHERTEXT_LEN || ciphertext.first() != Some(&0x04) {
        return None;
    }
    let decrypting = DecryptingKey::new_with_mode(secret.to_nonzero_scalar(), Mode::C1C3C2);
    let recovered = Zeroizing::new(decrypting.decrypt(ciphertext).ok()?);
    let mut s = Zeroizing::new([0u8; 32]);
    s.copy_from_slice(recovered.get(..32).filter(|_| recovered.len() == 32)?);
    let (key, nonce) = wrap_key(&s);
    let (body, tag) = wrapped.split_at_checked(32)?;
    let tag: [u8; 16] = tag.try_into().ok()?;
    let mut dek = Zeroizing::new([0u8; 32]);
    dek.copy_from_slice(body);
    sm4_gcm(&key)
        .decrypt_inout_detached(&nonce.into(), aad, dek.as_mut_slice().into(), &tag.into())
        .ok()?;
    Some(dek)
}
