//! ECDSA over NIST P-256, P-384 and P-521: the one place that names the verification backend.
//!
//! Every driver verifies ECDSA through [`EcPublicKey`] (through [`crate::x509::PublicKey`]), so
//! the backend can be swapped here alone. It is `aws-lc-rs` (already in the tree through
//! rustls): on this project's machines its P-384 is several times faster than `ring`'s and its
//! P-256 faster too (`docs/BENCHMARKS.md`, "Evidence verification"). SM2 (Hygon CSV) stays on
//! RustCrypto, which aws-lc-rs does not replace for it.
//!
//! A key is validated once, when it is made (a point on its curve, not the point at infinity,
//! uncompressed or compressed SEC1), and kept as its uncompressed SEC1 encoding. Signatures
//! are DER (`Ecdsa-Sig-Value`, strict) or fixed-size big-endian `r ‖ s` (each of `r` and `s`
//! as long as the curve's order: 32, 48 or 66 bytes); both are checked by aws-lc, which refuses
//! r or s outside `[1, n-1]`. Every curve verifies with SHA-256, SHA-384 or SHA-512 (the caller
//! names the hash; COSE and X.509 tie it to the algorithm). High-S signatures are valid ECDSA
//! and are accepted, as they were with the previous backends.

use aws_lc_rs::signature::{self as lc, UnparsedPublicKey, VerificationAlgorithm};

/// A curve of [`EcPublicKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
}

impl Curve {
    /// Bytes of one scalar (and of one coordinate).
    fn scalar_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

/// The hash an ECDSA signature is computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// How a signature is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// DER `Ecdsa-Sig-Value` (X.509, OCSP).
    Der,
    /// Fixed-size big-endian `r ‖ s` (COSE, SEV-SNP, DCAP, SPDM, XMLDSig).
    Fixed,
}

/// An ECDSA public key on P-256, P-384 or P-521, validated when it was made.
#[derive(Clone, PartialEq, Eq)]
pub struct EcPublicKey {
    curve: Curve,
    /// Uncompressed SEC1: `0x04 ‖ x ‖ y`.
    point: Box<[u8]>,
}

impl std::fmt::Debug for EcPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcPublicKey({:?}, {})", self.curve, hex::encode(&self.point))
    }
}

/// The signature did not verify (or was malformed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

impl EcPublicKey {
    /// Parses a SEC1 point (uncompressed or compressed) on `curve`; `None` unless it is a valid
    /// point of that curve other than the point at infinity.
    pub fn from_sec1(curve: Curve, sec1: &[u8]) -> Option<Self> {
        // aws-lc also takes a SubjectPublicKeyInfo here; a SEC1 point starts with 0x02..=0x04,
        // a DER SEQUENCE with 0x30, so only points reach it.
        if !matches!(sec1.first(), Some(0x02..=0x04)) {
            return None;
        }
        // Normalise to the uncompressed form through the curve arithmetic of RustCrypto, which
        // also checks the point (aws-lc checks it again on every verification).
        let point: Box<[u8]> = match curve {
            Curve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                .ok()?
                .to_sec1_point(false)
                .as_bytes()
                .into(),
            Curve::P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                .ok()?
                .to_sec1_point(false)
                .as_bytes()
                .into(),
            Curve::P521 => p521::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                .ok()?
                .to_sec1_point(false)
                .as_bytes()
                .into(),
        };
        Some(Self { curve, point })
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The uncompressed SEC1 encoding, `0x04 ‖ x ‖ y`.
    pub fn sec1_uncompressed(&self) -> &[u8] {
        &self.point
    }

    /// Verifies `signature` over `message` hashed with `hash`.
    pub(crate) fn verify(
        &self,
        hash: Hash,
        encoding: Encoding,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Invalid> {
        let (fixed, der_form) = algorithms(self.curve, hash);
        let der;
        let (algorithm, signature): (&'static dyn VerificationAlgorithm, &[u8]) =
            match (encoding, fixed) {
                (Encoding::Der, _) => (der_form, signature),
                (Encoding::Fixed, Some(fixed)) => (fixed, signature),
                // aws-lc-rs has no fixed-size form of some mixed pairs: re-encode as DER.
                (Encoding::Fixed, None) => {
                    der = fixed_to_der(self.curve, signature).ok_or(Invalid)?;
                    (der_form, der.as_slice())
                }
            };
        UnparsedPublicKey::new(algorithm, &self.point)
            .verify(message, signature)
            .map_err(|_| Invalid)
    }
}

/// The aws-lc algorithms for a curve and hash: the fixed-size `r ‖ s` form where aws-lc-rs has
/// one, and the DER form.
fn algorithms(
    curve: Curve,
    hash: Hash,
) -> (Option<&'static dyn VerificationAlgorithm>, &'static dyn VerificationAlgorithm) {
    match (curve, hash) {
        (Curve::P256, Hash::Sha256) => {
            (Some(&lc::ECDSA_P256_SHA256_FIXED), &lc::ECDSA_P256_SHA256_ASN1)
        }
        (Curve::P256, Hash::Sha384) => (None, &lc::ECDSA_P256_SHA384_ASN1),
        (Curve::P256, Hash::Sha512) => (None, &lc::ECDSA_P256_SHA512_ASN1),
        (Curve::P384, Hash::Sha256) => (None, &lc::ECDSA_P384_SHA256_ASN1),
        (Curve::P384, Hash::Sha384) => {
            (Some(&lc::ECDSA_P384_SHA384_FIXED), &lc::ECDSA_P384_SHA384_ASN1)
        }
        (Curve::P384, Hash::Sha512) => (None, &lc::ECDSA_P384_SHA512_ASN1),
        (Curve::P521, Hash::Sha256) => {
            (Some(&lc::ECDSA_P521_SHA256_FIXED), &lc::ECDSA_P521_SHA256_ASN1)
        }
        (Curve::P521, Hash::Sha384) => {
            (Some(&lc::ECDSA_P521_SHA384_FIXED), &lc::ECDSA_P521_SHA384_ASN1)
        }
        (Curve::P521, Hash::Sha512) => {
            (Some(&lc::ECDSA_P521_SHA512_FIXED), &lc::ECDSA_P521_SHA512_ASN1)
        }
    }
}

/// `r ‖ s` (each exactly one scalar long) as a DER `Ecdsa-Sig-Value`; `None` for a wrong length.
/// Values out of range (zero, ≥ n) are left for the verifier to refuse.
fn fixed_to_der(curve: Curve, signature: &[u8]) -> Option<Vec<u8>> {
    let n = curve.scalar_len();
    if signature.len() != 2 * n {
        return None;
    }
    let (r, s) = signature.split_at(n);
    let mut body = Vec::with_capacity(2 * n + 6);
    der_unsigned_integer(r, &mut body);
    der_unsigned_integer(s, &mut body);
    let mut out = Vec::with_capacity(body.len() + 3);
    out.push(0x30);
    // At most 2 × (2 + 1 + 66) = 138 bytes (P-521): one or two length bytes.
    let len = u8::try_from(body.len()).ok()?;
    if len >= 0x80 {
        out.push(0x81);
    }
    out.push(len);
    out.extend_from_slice(&body);
    Some(out)
}

/// Appends a big-endian unsigned integer as a minimal DER INTEGER.
fn der_unsigned_integer(value: &[u8], out: &mut Vec<u8>) {
    let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let digits = value.get(first..).filter(|d| !d.is_empty()).unwrap_or(&[0]);
    let pad = digits.first().is_some_and(|&b| b >= 0x80);
    out.push(0x02);
    // Scalars are at most 66 bytes (P-521): one length byte.
    out.push((digits.len() + usize::from(pad)) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    use sha2::Digest as _;

    fn p256_key() -> (p256::ecdsa::SigningKey, EcPublicKey) {
        let secret = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let point = secret.verifying_key().to_sec1_point(false);
        (secret, EcPublicKey::from_sec1(Curve::P256, point.as_bytes()).unwrap())
    }

    fn p384_key() -> (p384::ecdsa::SigningKey, EcPublicKey) {
        let secret = p384::ecdsa::SigningKey::from_slice(&[9u8; 48]).unwrap();
        let point = secret.verifying_key().to_sec1_point(false);
        (secret, EcPublicKey::from_sec1(Curve::P384, point.as_bytes()).unwrap())
    }

    fn p521_key() -> (p521::ecdsa::SigningKey, EcPublicKey) {
        let mut scalar = [5u8; 66];
        scalar[0] = 0x01;
        let secret = p521::ecdsa::SigningKey::from_slice(&scalar).unwrap();
        let point = p521::ecdsa::VerifyingKey::from(&secret).to_sec1_point(false);
        (secret, EcPublicKey::from_sec1(Curve::P521, point.as_bytes()).unwrap())
    }

    fn digest(hash: Hash, message: &[u8]) -> Vec<u8> {
        match hash {
            Hash::Sha256 => sha2::Sha256::digest(message).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(message).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(message).to_vec(),
        }
    }

    /// Fixed-size and DER signatures over `message` hashed with `hash`, by each of the three
    /// test keys, with the verifying key.
    fn signatures(hash: Hash, message: &[u8]) -> Vec<(EcPublicKey, Vec<u8>, Vec<u8>)> {
        let digest = digest(hash, message);
        let (k256, p256) = p256_key();
        let (k384, p384) = p384_key();
        let (k521, p521) = p521_key();
        let s256: p256::ecdsa::Signature = k256.sign_prehash(&digest).unwrap();
        let s384: p384::ecdsa::Signature = k384.sign_prehash(&digest).unwrap();
        let s521: p521::ecdsa::Signature = k521.sign_prehash(&digest).unwrap();
        vec![
            (p256, s256.to_bytes().to_vec(), s256.to_der().as_bytes().to_vec()),
            (p384, s384.to_bytes().to_vec(), s384.to_der().as_bytes().to_vec()),
            (p521, s521.to_bytes().to_vec(), s521.to_der().as_bytes().to_vec()),
        ]
    }

    #[test]
    fn every_curve_hash_and_encoding_verifies_and_refuses_a_flipped_bit() {
        let message = b"evidence";
        for hash in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            for (key, fixed, der) in signatures(hash, message) {
                if key.curve() == Curve::P521 {
                    assert_eq!(fixed.len(), 132, "P-521 r ‖ s is 2 × 66 bytes");
                }
                for (encoding, signature) in [(Encoding::Fixed, fixed), (Encoding::Der, der)] {
                    let what = format!("{:?} {hash:?} {encoding:?}", key.curve());
                    assert_eq!(key.verify(hash, encoding, message, &signature), Ok(()), "{what}");
                    assert_eq!(
                        key.verify(hash, encoding, b"evidencf", &signature),
                        Err(Invalid),
                        "{what}: other message"
                    );
                    for at in [0, signature.len() / 2, signature.len() - 1] {
                        let mut bad = signature.clone();
                        bad[at] ^= 1;
                        assert_eq!(
                            key.verify(hash, encoding, message, &bad),
                            Err(Invalid),
                            "{what}: byte {at} flipped"
                        );
                    }
                    for other in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
                        if other != hash {
                            assert_eq!(
                                key.verify(other, encoding, message, &signature),
                                Err(Invalid),
                                "{what}: verified as {other:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn p521_refuses_another_key_wrong_lengths_zero_scalars_and_other_curves_signatures() {
        let message = b"evidence";
        let sigs = signatures(Hash::Sha512, message);
        let (p521, fixed, der) = sigs.last().cloned().unwrap();
        assert_eq!(p521.verify(Hash::Sha512, Encoding::Fixed, message, &fixed), Ok(()));
        // Another P-521 key.
        let mut scalar = [6u8; 66];
        scalar[0] = 0x01;
        let other = p521::ecdsa::SigningKey::from_slice(&scalar).unwrap();
        let other = EcPublicKey::from_sec1(
            Curve::P521,
            p521::ecdsa::VerifyingKey::from(&other).to_sec1_point(false).as_bytes(),
        )
        .unwrap();
        assert_eq!(other.verify(Hash::Sha512, Encoding::Fixed, message, &fixed), Err(Invalid));
        assert_eq!(other.verify(Hash::Sha512, Encoding::Der, message, &der), Err(Invalid));
        // Wrong lengths: short, long, a P-384-sized signature, the DER form given as fixed.
        for bad in [&fixed[..131], &[fixed.as_slice(), &[0]].concat()[..], &[1u8; 96], &der] {
            assert_eq!(
                p521.verify(Hash::Sha512, Encoding::Fixed, message, bad),
                Err(Invalid),
                "{} bytes",
                bad.len()
            );
        }
        assert_eq!(p521.verify(Hash::Sha512, Encoding::Der, message, &fixed), Err(Invalid));
        // Zero r or s.
        let mut zero_r = fixed.clone();
        zero_r[..66].fill(0);
        assert_eq!(p521.verify(Hash::Sha512, Encoding::Fixed, message, &zero_r), Err(Invalid));
        let mut zero_s = fixed.clone();
        zero_s[66..].fill(0);
        assert_eq!(p521.verify(Hash::Sha512, Encoding::Fixed, message, &zero_s), Err(Invalid));
        // r above the order (the top bits of a 66-byte scalar lie outside P-521's 521 bits).
        let mut huge_r = fixed.clone();
        huge_r[..66].fill(0xff);
        assert_eq!(p521.verify(Hash::Sha512, Encoding::Fixed, message, &huge_r), Err(Invalid));
        // The P-256 and P-384 signatures of the same message never verify with the P-521 key,
        // nor the P-521 signature with them.
        for (key, fixed_other, _) in &sigs[..2] {
            assert_eq!(
                p521.verify(Hash::Sha512, Encoding::Fixed, message, fixed_other),
                Err(Invalid)
            );
            assert_eq!(key.verify(Hash::Sha512, Encoding::Fixed, message, &fixed), Err(Invalid));
        }
    }

    #[test]
    fn a_signature_of_another_key_or_length_or_out_of_range_is_refused() {
        let message = b"evidence";
        let (k256, p256) = p256_key();
        let other = EcPublicKey::from_sec1(
            Curve::P256,
            p256::ecdsa::SigningKey::from_slice(&[8u8; 32])
                .unwrap()
                .verifying_key()
                .to_sec1_point(false)
                .as_bytes(),
        )
        .unwrap();
        let digest = sha2::Sha256::digest(message);
        let sig: p256::ecdsa::Signature = k256.sign_prehash(&digest).unwrap();
        let fixed = sig.to_bytes().to_vec();
        assert_eq!(p256.verify(Hash::Sha256, Encoding::Fixed, message, &fixed), Ok(()));
        assert_eq!(other.verify(Hash::Sha256, Encoding::Fixed, message, &fixed), Err(Invalid));
        // Truncated, extended, zero r or s, and the DER form given as fixed.
        assert!(p256.verify(Hash::Sha256, Encoding::Fixed, message, &fixed[..63]).is_err());
        let mut longer = fixed.clone();
        longer.push(0);
        assert!(p256.verify(Hash::Sha256, Encoding::Fixed, message, &longer).is_err());
        let mut zero_r = fixed.clone();
        zero_r[..32].fill(0);
        assert!(p256.verify(Hash::Sha256, Encoding::Fixed, message, &zero_r).is_err());
        let mut zero_s = fixed.clone();
        zero_s[32..].fill(0);
        assert!(p256.verify(Hash::Sha256, Encoding::Fixed, message, &zero_s).is_err());
        assert!(p256.verify(Hash::Sha384, Encoding::Fixed, message, &zero_s).is_err());
        let der = sig.to_der().as_bytes().to_vec();
        assert!(p256.verify(Hash::Sha256, Encoding::Fixed, message, &der).is_err());
        assert!(p256.verify(Hash::Sha256, Encoding::Der, message, &fixed).is_err());
        // A P-256 key never verifies a P-384-sized signature.
        assert!(p256.verify(Hash::Sha256, Encoding::Fixed, message, &[1u8; 96]).is_err());
    }

    #[test]
    fn high_s_is_accepted_as_before() {
        // n - s is an equally valid ECDSA signature; neither ring nor RustCrypto refused it.
        let message = b"evidence";
        let (k384, p384) = p384_key();
        let sig: p384::ecdsa::Signature =
            k384.sign_prehash(&sha2::Sha384::digest(message)).unwrap();
        let (r, s) = sig.split_scalars();
        let flipped = p384::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert_eq!(
            p384.verify(Hash::Sha384, Encoding::Fixed, message, &flipped.to_bytes()),
            Ok(())
        );
    }

    #[test]
    fn fixed_to_der_is_minimal() {
        let mut sig = [0u8; 64];
        sig[31] = 1; // r = 1
        sig[32] = 0x80; // s has its high bit set
        let der = fixed_to_der(Curve::P256, &sig).unwrap();
        let mut want = vec![0x30, 3 + 35, 0x02, 1, 1, 0x02, 33, 0];
        want.extend_from_slice(&sig[32..]);
        assert_eq!(der, want);
        assert_eq!(fixed_to_der(Curve::P256, &[0u8; 64]).unwrap(), [0x30, 6, 2, 1, 0, 2, 1, 0]);
        assert!(fixed_to_der(Curve::P384, &sig).is_none());
        // P-384 with both high bits set: 2 × 51 = 102 content bytes, still one length byte.
        assert_eq!(fixed_to_der(Curve::P384, &[0xff; 96]).unwrap()[..2], [0x30, 102]);
        // P-521, both high bits set: 2 × 69 = 138 content bytes, a two-byte length.
        let der = fixed_to_der(Curve::P521, &[0xff; 132]).unwrap();
        assert_eq!(der[..5], [0x30, 0x81, 138, 0x02, 67]);
        assert_eq!(der.len(), 3 + 138);
        assert!(fixed_to_der(Curve::P521, &[0xff; 96]).is_none());
    }

    #[test]
    fn invalid_points_are_refused() {
        let (_, p256) = p256_key();
        let mut bad = p256.sec1_uncompressed().to_vec();
        bad[64] ^= 1;
        assert!(EcPublicKey::from_sec1(Curve::P256, &bad).is_none());
        assert!(EcPublicKey::from_sec1(Curve::P384, p256.sec1_uncompressed()).is_none());
        assert!(EcPublicKey::from_sec1(Curve::P256, &[0]).is_none());
        assert!(EcPublicKey::from_sec1(Curve::P256, &[]).is_none());
        assert!(EcPublicKey::from_sec1(Curve::P256, &[0x30, 0x59]).is_none());

        let (_, p521) = p521_key();
        let point = p521.sec1_uncompressed().to_vec();
        assert_eq!(point.len(), 133);
        let mut bad = point.clone();
        bad[132] ^= 1;
        assert!(EcPublicKey::from_sec1(Curve::P521, &bad).is_none());
        assert!(EcPublicKey::from_sec1(Curve::P521, &point[..132]).is_none());
        assert!(EcPublicKey::from_sec1(Curve::P384, &point).is_none());
        assert!(EcPublicKey::from_sec1(Curve::P521, p256.sec1_uncompressed()).is_none());
        // A coordinate ≥ p (all ones) is not a field element.
        let mut outside = vec![0x04];
        outside.extend_from_slice(&[0xff; 132]);
        assert!(EcPublicKey::from_sec1(Curve::P521, &outside).is_none());
        // The compressed form is the same key.
        let compressed =
            p521::ecdsa::VerifyingKey::from(&p521_key().0).to_sec1_point(true).as_bytes().to_vec();
        assert_eq!(compressed.len(), 67);
        assert_eq!(EcPublicKey::from_sec1(Curve::P521, &compressed), Some(p521));
    }
}
