//! The STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over aws-lc's AES-256-GCM.
//!
//! Why hand-rolled over `aws-lc-rs` instead of `aead-stream` + RustCrypto `aes-gcm`: the body is
//! the hot path (target: 1 GiB in ≤ 0.08 s in memory) and aws-lc's assembly AES-GCM (VAES with
//! AVX-512 or AVX2, else AES-NI/CLMUL) is several times faster than RustCrypto's `aes-gcm` and
//! faster than `ring`'s here (measure with `cargo run --release -p cloister-seal --example
//! seal_bench`). STREAM itself is only a nonce schedule, so it is a few lines:
//!
//! nonce(i, last) = prefix[7] ‖ BE32(i) ‖ (0x01 if last else 0x00), AAD = SHA-256(header).
//!
//! The AES key is HKDF-SHA256(salt = none, IKM = DEK, info = [`PAYLOAD_KEY_INFO`]), 32 bytes,
//! so that the wrapped DEK is never used directly as a cipher key.
//!
//! The ShangMi suite uses the same construction and nonce layout over SM4-GCM (RustCrypto
//! `aes-gcm`'s generic GCM with the `sm4` block cipher), keyed by HKDF-SM3(DEK), with
//! AAD = SM3(header) (see [`crate::sm`]).

use aes_gcm::aead::AeadInOut as _;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroize as _;
use zeroize::Zeroizing;

use crate::header::NONCE_PREFIX_LEN;
use crate::sm::{Sm4Gcm, derive_sm_payload_key, sm4_gcm};
use crate::suite::Suite;

/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// HKDF info for the payload key.
pub const PAYLOAD_KEY_INFO: &[u8] = b"cloister-seal v1 payload key";

/// Derives the 32-byte payload (body) key from the DEK.
pub fn derive_payload_key(dek: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    struct Len32;
    impl aws_lc_rs::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = Zeroizing::new([0u8; 32]);
    let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, &[]).extract(dek);
    // A 32-byte output is far below HKDF-SHA256's 8160-byte limit: cannot fail.
    #[allow(clippy::expect_used)]
    prk.expand(&[PAYLOAD_KEY_INFO], Len32)
        .and_then(|okm| okm.fill(out.as_mut_slice()))
        .expect("HKDF-SHA256 expand of 32 bytes");
    out
}

/// The body AEAD of one suite, keyed. One exists per envelope being sealed or opened, so the
/// size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum BodyKey {
    /// AES-256-GCM (`aws-lc-rs`), the X25519 suite.
    Aes(LessSafeKey),
    /// SM4-GCM (RustCrypto), the ShangMi suite.
    Sm4(Sm4Gcm),
}

/// Seals or opens the chunks of one envelope body.
pub(crate) struct ChunkCipher {
    key: BodyKey,
    prefix: [u8; NONCE_PREFIX_LEN],
    aad: [u8; 32],
}

impl ChunkCipher {
    pub(crate) fn new(
        suite: Suite,
        dek: &[u8; 32],
        prefix: &[u8; NONCE_PREFIX_LEN],
        header_digest: &[u8; 32],
    ) -> Self {
        let key = match suite {
            Suite::X25519 => {
                let key_bytes = derive_payload_key(dek);
                // A 32-byte key is always valid for AES-256-GCM.
                #[allow(clippy::expect_used)]
                let unbound =
                    UnboundKey::new(&AES_256_GCM, key_bytes.as_slice()).expect("32-byte key");
                BodyKey::Aes(LessSafeKey::new(unbound))
            }
            Suite::ShangMi => BodyKey::Sm4(sm4_gcm(&derive_sm_payload_key(dek))),
        };
        Self { key, prefix: *prefix, aad: *header_digest }
    }

    /// `prefix ‖ BE32(index) ‖ last-flag`.
    fn nonce_bytes(&self, index: u32, last: bool) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.prefix);
        n[7..11].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        n
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub(crate) fn seal(&self, index: u32, last: bool, in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = self.nonce_bytes(index, last);
        let mut t = [0u8; TAG_LEN];
        match &self.key {
            BodyKey::Aes(key) => {
                // aws-lc only fails beyond GCM's 2^36-byte limit; chunks are ≤ 16 MiB.
                #[allow(clippy::expect_used)]
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&self.aad),
                        in_out,
                    )
                    .expect("AES-GCM seal of a bounded chunk");
                t.copy_from_slice(tag.as_ref());
            }
            BodyKey::Sm4(key) => {
                // aes-gcm only fails beyond GCM's 2^36-byte limit; chunks are ≤ 16 MiB.
                #[allow(clippy::expect_used)]
                let tag = key
                    .encrypt_inout_detached(&nonce.into(), &self.aad, in_out.into())
                    .expect("SM4-GCM seal of a bounded chunk");
                t.copy_from_slice(&tag);
            }
        }
        t
    }

    /// Decrypts `in_out` in place after checking `tag`. On failure `in_out` is left as
    /// ciphertext (SM4-GCM checks the tag before decrypting) or zeroed (AES-GCM: aws-lc
    /// decrypts before it compares the tag, so the unauthenticated plaintext is wiped here).
    pub(crate) fn open(&self, index: u32, last: bool, in_out: &mut [u8], tag: &[u8]) -> bool {
        let nonce = self.nonce_bytes(index, last);
        match &self.key {
            BodyKey::Aes(key) => {
                if tag.len() != TAG_LEN {
                    return false;
                }
                let opened = key
                    .open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&self.aad),
                        tag,
                        in_out,
                    )
                    .is_ok();
                if !opened {
                    in_out.zeroize();
                }
                opened
            }
            BodyKey::Sm4(key) => {
                let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
                    return false;
                };
                key.decrypt_inout_detached(&nonce.into(), &self.aad, in_out.into(), &tag.into())
                    .is_ok()
            }
        }
    }
}
