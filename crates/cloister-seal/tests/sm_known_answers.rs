//! Known-answer tests for the ShangMi primitives as the envelope wires them: SM3 (`sm3`),
//! SM4 (`sm4`), SM4-GCM (the crate's `Sm4Gcm`, `aes-gcm` generic GCM over `sm4`), SM2
//! public-key encryption in C1 ‖ C3 ‖ C2 order with the ephemeral scalar read big-endian from
//! the randomness source (`sm2::pke`), and SM2 signature verification with the default user id
//! (Z_A and e recomputed). Values are the published ones; each test names its source.

use std::convert::Infallible;

use aes_gcm::aead::AeadInOut as _;
use cloister_seal::internal::sm4_gcm;
use sm2::elliptic_curve::rand_core::{TryCryptoRng, TryRng};
use sm3::{Digest as _, Sm3};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test hex")
}

#[test]
fn sm3_known_answers() {
    // GB/T 32905-2016 Appendix A examples 1 and 2 (also draft-shen-sm3-hash-01; OpenSSL
    // test/recipes/30-test_evp_data/evpmd_sm3.txt).
    assert_eq!(
        Sm3::digest(b"abc").as_slice(),
        h("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
    );
    assert_eq!(
        Sm3::digest(b"abcd".repeat(16)).as_slice(),
        h("debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732")
    );
}

#[test]
fn sm4_ecb_known_answer() {
    use sm4::cipher::{BlockCipherDecrypt as _, BlockCipherEncrypt as _, KeyInit as _};
    // GB/T 32907-2016 Appendix A example 1: key = plaintext = 0123456789abcdeffedcba9876543210
    // (OpenSSL test/recipes/30-test_evp_data/evpciph_sm4.txt).
    let key: [u8; 16] =
        h("0123456789abcdeffedcba9876543210").try_into().expect("published test value");
    let cipher = sm4::Sm4::new(&key.into());
    let mut block: [u8; 16] = key;
    let mut b = block.into();
    cipher.encrypt_block(&mut b);
    assert_eq!(b.as_slice(), h("681edf34d206965e86b3e94f536e4246"));
    cipher.decrypt_block(&mut b);
    block.copy_from_slice(&b);
    assert_eq!(block, key);
}

/// RFC 8998 Appendix A.1 (SM4-GCM), also OpenSSL evpciph_sm4.txt "SM4 GCM test vectors from
/// RFC8998".
#[test]
fn sm4_gcm_rfc8998_a1() {
    let key: [u8; 16] =
        h("0123456789abcdeffedcba9876543210").try_into().expect("published test value");
    let iv: [u8; 12] = h("00001234567800000000abcd").try_into().expect("published test value");
    let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let pt = h(concat!(
        "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd",
        "eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa"
    ));
    let ct = h(concat!(
        "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735",
        "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
    ));
    let tag = h("83de3541e4c2b58177e065a9bf7b62ec");

    let cipher = sm4_gcm(&key);
    let mut buf = pt.clone();
    let got = cipher
        .encrypt_inout_detached(&iv.into(), &aad, buf.as_mut_slice().into())
        .expect("published test value");
    assert_eq!(buf, ct);
    assert_eq!(got.as_slice(), tag.as_slice());

    let tag16: [u8; 16] = tag.clone().try_into().expect("published test value");
    cipher
        .decrypt_inout_detached(&iv.into(), &aad, buf.as_mut_slice().into(), &tag16.into())
        .expect("published test value");
    assert_eq!(buf, pt);

    // A changed AAD byte, ciphertext byte or tag byte is refused.
    let mut bad_aad = aad.clone();
    bad_aad[0] ^= 1;
    let mut c = ct.clone();
    assert!(
        cipher
            .decrypt_inout_detached(&iv.into(), &bad_aad, c.as_mut_slice().into(), &tag16.into())
            .is_err()
    );
    c[63] ^= 0x80;
    assert!(
        cipher
            .decrypt_inout_detached(&iv.into(), &aad, c.as_mut_slice().into(), &tag16.into())
            .is_err()
    );
    let mut bad_tag = tag16;
    bad_tag[15] ^= 1;
    let mut c = ct.clone();
    assert!(
        cipher
            .decrypt_inout_detached(&iv.into(), &aad, c.as_mut_slice().into(), &bad_tag.into())
            .is_err()
    );
}

/// The sm2p256v1 recommended-curve example key of GB/T 32918.5-2017 / GM/T 0003.5-2012.
const D: &str = "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8";
const XA: &str = "09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020";
const YA: &str = "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13";
/// The examples' ephemeral scalar k.
const K: &str = "59276e27d506861a16680f3ad9c02dccef3cc1fa3cdbe4ce6d54b80deac1bc21";

/// Hands out fixed bytes (the published k), then nothing.
struct FixedRng(Vec<u8>);

impl TryRng for FixedRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unimplemented!()
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unimplemented!()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}
impl TryCryptoRng for FixedRng {}

fn example_public_key() -> sm2::PublicKey {
    let sec1 = h(&format!("04{XA}{YA}"));
    let public = sm2::PublicKey::from_sec1_bytes(&sec1).expect("published test value");
    let secret = sm2::SecretKey::from_slice(&h(D)).expect("published test value");
    assert_eq!(secret.public_key(), public, "the published key pair is consistent");
    public
}

/// SM2 public-key encryption (GB/T 32918.4 procedure), GM/T 0003.5-2012 Annex C /
/// GB/T 32918.5-2017 recommended-curve example: M = "encryption standard" with the published k
/// gives C1 = (04EBFC…9A73, E858…4DF0), C3 = 59983C18…8766, C2 = 21886CA9…1EFA (also OpenSSL
/// test/sm2_internal_test.c, which serializes the same values as GM/T 0009 ASN.1). The wrap
/// uses this primitive in C1 ‖ C3 ‖ C2 order.
#[test]
fn sm2_encryption_gbt32918_example() {
    use sm2::pke::{DecryptingKey, EncryptingKey, Mode};
    let public = example_public_key();
    let enc = EncryptingKey::new_with_mode(public, Mode::C1C3C2);
    let c = enc.encrypt(&mut FixedRng(h(K)), b"encryption standard").expect("published test value");
    let expected = h(concat!(
        "04",
        "04ebfc718e8d1798620432268e77feb6415e2ede0e073c0f4f640ecd2e149a73",
        "e858f9d81e5430a57b36daab8f950a3c64e6ee6a63094d99283aff767e124df0",
        "59983c18f809e262923c53aec295d30383b54e39d609d160afcb1908d0bd8766",
        "21886ca989ca9c7d58087307ca93092d651efa"
    ));
    assert_eq!(c, expected);
    let secret = sm2::SecretKey::from_slice(&h(D)).expect("published test value");
    let dec = DecryptingKey::new_with_mode(secret.to_nonzero_scalar(), Mode::C1C3C2);
    assert_eq!(dec.decrypt(&c).expect("published test value"), b"encryption standard");
    // A changed C3 (the SM3 check value) is refused.
    let mut bad = c.clone();
    bad[65] ^= 1;
    assert!(dec.decrypt(&bad).is_err());
}

/// SM2 signature, GB/T 32918.5-2017 / GM/T 0003.5-2012 recommended-curve example with the
/// default user id "1234567812345678": Z_A and e as published, and the published (r, s)
/// verifies (sm2 computes Z_A itself from the id, so this also checks its Z_A).
#[test]
fn sm2_signature_gbt32918_5_example_with_za() {
    use sm2::dsa::signature::Verifier as _;
    use sm2::dsa::signature::hazmat::PrehashVerifier as _;
    use sm2::dsa::{Signature, VerifyingKey};

    // sm2p256v1 curve parameters a, b and generator G (GB/T 32918.5-2017).
    let a = "fffffffeffffffffffffffffffffffffffffffff00000000fffffffffffffffc";
    let b = "28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93";
    let gx = "32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7";
    let gy = "bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0";
    let id = b"1234567812345678";

    // Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A), ENTL_A = bit length of ID_A.
    let mut z = Sm3::new();
    z.update(((id.len() * 8) as u16).to_be_bytes());
    z.update(id);
    for part in [a, b, gx, gy, XA, YA] {
        z.update(h(part));
    }
    let za = z.finalize();
    assert_eq!(
        za.as_slice(),
        h("b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3")
    );

    // e = SM3(Z_A ‖ M), M = "message digest".
    let mut e = Sm3::new();
    e.update(za);
    e.update(b"message digest");
    let e = e.finalize();
    assert_eq!(e.as_slice(), h("f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640"));

    let r: [u8; 32] = h("f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3")
        .try_into()
        .expect("published test value");
    let s: [u8; 32] = h("b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa")
        .try_into()
        .expect("published test value");
    let signature = Signature::from_scalars(r, s).expect("published test value");
    let key =
        VerifyingKey::new("1234567812345678", example_public_key()).expect("published test value");
    key.verify(b"message digest", &signature).expect("published test value");
    key.verify_prehash(&e, &signature).expect("published test value");

    // Another message, another id (hence another Z_A) or a changed s does not verify.
    assert!(key.verify(b"message digesT", &signature).is_err());
    let other_id = VerifyingKey::new("ALICE123@YAHOO.COM", example_public_key())
        .expect("published test value");
    assert!(other_id.verify(b"message digest", &signature).is_err());
    let mut s2 = s;
    s2[31] ^= 1;
    let bad = Signature::from_scalars(r, s2).expect("published test value");
    assert!(key.verify(b"message digest", &bad).is_err());
}
