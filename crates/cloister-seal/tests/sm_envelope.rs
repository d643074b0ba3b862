//! The ShangMi suite of the sealed envelope: round trips with SM2 recipients, suite selection
//! and dispatch, mixed suites refused, wrong key types, SM2 key text forms, and tampering.

use std::collections::BTreeMap;
use std::io::Read;

use cloister_seal::internal::parse_header;
use cloister_seal::{
    EnvelopeSecretKey, KeyError, Metadata, OpenError, Recipient, RecipientSecretKey, SM_AEAD_ID,
    SM_KDF_ID, SM_KEM_ID, SM_PAYLOAD_ID, SM2_ENTRY_LEN, SM2_PUBLIC_KEY_PREFIX,
    SM2_SECRET_KEY_PREFIX, SealError, SealOptions, Sm2PublicKey, Sm2SecretKey, Suite, TAG_LEN,
    open_to_vec, open_to_vec_with, open_with, read_header, seal_to, seal_to_vec_for,
    seal_to_vec_for_with_options, suite_of,
};
use proptest::prelude::*;

const SMALL_CHUNK: u32 = 64;

fn meta() -> Metadata {
    let mut attributes = BTreeMap::new();
    attributes.insert("owner".to_string(), "hospital-a".to_string());
    Metadata { content_type: "text/csv".to_string(), object_id: "obj-sm".to_string(), attributes }
}

fn small_opts() -> SealOptions {
    SealOptions::default().with_chunk_size(SMALL_CHUNK)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn sm2(keys: &[&Sm2SecretKey]) -> Vec<Recipient> {
    keys.iter().map(|k| k.public_key().recipient()).collect()
}

/// Returns at most `max` bytes per `read` call, to exercise partial reads.
struct Trickle<'a> {
    data: &'a [u8],
    max: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.max).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Opens with both the streaming and the in-memory opener; they must agree.
fn open_both(key: &Sm2SecretKey, env: &[u8]) -> Result<Vec<u8>, (OpenError, OpenError)> {
    let mut streamed = Vec::new();
    let a = open_with(key, Trickle { data: env, max: 7 }, &mut streamed);
    let b = open_to_vec_with(key, env);
    match (a, b) {
        (Ok(s), Ok((h, pt))) => {
            assert_eq!(streamed, pt.as_slice());
            assert_eq!(s.plaintext_bytes, pt.len() as u64);
            assert_eq!(s.header, h);
            Ok(streamed)
        }
        (Err(a), Err(b)) => Err((a, b)),
        (a, b) => panic!(
            "streaming and in-memory open disagree: {:?} vs {:?}",
            a.map(|_| ()),
            b.map(|_| ())
        ),
    }
}

#[test]
fn sm_round_trip_header_names_the_suite() {
    let a = Sm2SecretKey::generate();
    let b = Sm2SecretKey::generate();
    let pt = pattern(3 * SMALL_CHUNK as usize + 5);
    let env = seal_to_vec_for_with_options(&sm2(&[&a, &b]), &meta(), &small_opts(), &pt).unwrap();
    let header = read_header(env.as_slice()).unwrap();
    assert_eq!(header.suite(), Suite::ShangMi);
    assert_eq!(&env[13..21], &[0x53, 0x02, 0x53, 0x03, 0x53, 0x04, 0x00, 0x02]);
    assert_eq!(Suite::ShangMi.ids(), (SM_KEM_ID, SM_KDF_ID, SM_AEAD_ID, SM_PAYLOAD_ID));
    assert_eq!(header.recipient_key_ids(), vec![a.key_id(), b.key_id()]);
    assert!(header.recipients().iter().all(|e| e.kind() == 3));
    assert!(header.broker_key_ids().is_empty());
    // Header length: one entry of 3 + 193 bytes per recipient.
    let entries = 2 * (3 + SM2_ENTRY_LEN);
    assert_eq!(env.len(), header.len() + pt.len() + 4 * TAG_LEN);
    assert!(header.len() > entries);
    for key in [&a, &b] {
        assert_eq!(open_both(key, &env).unwrap(), pt);
    }
    // The enum form opens too, and the header digest is SM3 (not SHA-256) of the header.
    let any = EnvelopeSecretKey::from(Sm2SecretKey::from_text(&a.to_text()).unwrap());
    let (h, v) = open_to_vec_with(&any, &env).unwrap();
    assert_eq!(v.as_slice(), pt.as_slice());
    use sm3::Digest as _;
    assert_eq!(h.digest().as_slice(), sm3::Sm3::digest(h.as_bytes()).as_slice());
}

#[test]
fn sm_streaming_seal_matches_in_memory_layout() {
    let key = Sm2SecretKey::generate();
    for n in [0usize, 1, 63, 64, 65, 128, 300] {
        let pt = pattern(n);
        let mut env = Vec::new();
        let summary = seal_to(
            &sm2(&[&key]),
            &meta(),
            &small_opts(),
            Trickle { data: &pt, max: 13 },
            &mut env,
        )
        .unwrap();
        assert_eq!(summary.plaintext_bytes, n as u64);
        assert_eq!(summary.ciphertext_bytes, env.len() as u64);
        let hlen = read_header(env.as_slice()).unwrap().len();
        assert_eq!(env.len(), hlen + n + n.div_ceil(64).max(1) * TAG_LEN);
        assert_eq!(open_both(&key, &env).unwrap(), pt);
    }
}

#[test]
fn suite_is_taken_from_the_recipients_and_mixing_is_refused() {
    let x = RecipientSecretKey::generate();
    let s = Sm2SecretKey::generate();
    assert_eq!(suite_of(&[Recipient::Key(x.public_key())]).unwrap(), Suite::X25519);
    assert_eq!(suite_of(&sm2(&[&s])).unwrap(), Suite::ShangMi);
    for recipients in [
        vec![Recipient::Key(x.public_key()), s.public_key().recipient()],
        vec![s.public_key().recipient(), Recipient::Broker(x.public_key())],
    ] {
        let err = seal_to_vec_for(&recipients, &meta(), b"x").unwrap_err();
        let SealError::MixedSuites { first, index, other } = &err else {
            panic!("expected MixedSuites, got {err}");
        };
        assert_eq!(*index, 1);
        assert_ne!(first, other);
        let text = err.to_string();
        assert!(text.contains("recipients use different suites"), "{text}");
        assert!(text.contains("an envelope has one cipher suite"), "{text}");
        // The streaming sealer refuses before writing anything.
        let mut out = Vec::new();
        let err = seal_to(&recipients, &meta(), &small_opts(), &b"x"[..], &mut out).unwrap_err();
        assert!(matches!(err, SealError::MixedSuites { .. }), "{err}");
        assert!(out.is_empty());
    }
    assert!(matches!(seal_to_vec_for(&[], &meta(), b"x"), Err(SealError::NoRecipients)));
    let dup = vec![s.public_key().recipient(), s.public_key().recipient()];
    assert!(matches!(
        seal_to_vec_for(&dup, &meta(), b"x"),
        Err(SealError::DuplicateRecipient(id)) if id == s.key_id()
    ));
}

#[test]
fn a_key_of_the_other_suite_is_refused_as_the_wrong_key_type() {
    let x = RecipientSecretKey::generate();
    let s = Sm2SecretKey::generate();
    let sm_env = seal_to_vec_for(&sm2(&[&s]), &meta(), b"shangmi").unwrap();
    let x_env = seal_to_vec_for(&[Recipient::Key(x.public_key())], &meta(), b"x25519").unwrap();

    let err = open_to_vec(&x, &sm_env).unwrap_err();
    assert!(
        matches!(err, OpenError::WrongKeyType { key: Suite::X25519, envelope: Suite::ShangMi }),
        "{err}"
    );
    assert!(err.to_string().contains("wrong key type"), "{err}");
    let err = open_with(&x, sm_env.as_slice(), std::io::sink()).unwrap_err();
    assert!(matches!(err, OpenError::WrongKeyType { .. }), "{err}");

    let err = open_to_vec_with(&s, &x_env).unwrap_err();
    assert!(
        matches!(err, OpenError::WrongKeyType { key: Suite::ShangMi, envelope: Suite::X25519 }),
        "{err}"
    );
    // The right keys open their own envelopes through the generic entry point.
    assert_eq!(open_to_vec_with(&x, &x_env).unwrap().1.as_slice(), b"x25519");
    assert_eq!(open_to_vec_with(&s, &sm_env).unwrap().1.as_slice(), b"shangmi");
    // Another SM2 key is not a recipient.
    let stranger = Sm2SecretKey::generate();
    assert!(matches!(open_to_vec_with(&stranger, &sm_env), Err(OpenError::NotARecipient)));
}

#[test]
fn sm2_key_text_round_trip_and_errors() {
    let key = Sm2SecretKey::generate();
    let public = key.public_key();
    let text = public.to_text();
    assert!(text.starts_with(SM2_PUBLIC_KEY_PREFIX));
    assert_eq!(text.len(), SM2_PUBLIC_KEY_PREFIX.len() + 44);
    assert_eq!(Sm2PublicKey::from_text(&format!("  {text}\n")).unwrap(), public);
    assert_eq!(text.parse::<Sm2PublicKey>().unwrap(), public);
    assert_eq!(public.to_string(), text);
    let secret = key.to_text();
    assert!(secret.starts_with(SM2_SECRET_KEY_PREFIX));
    let back = Sm2SecretKey::from_text(&format!("{}\n", secret.as_str())).unwrap();
    assert_eq!(back.public_key(), public);
    assert_eq!(back.key_id(), key.key_id());
    assert!(!format!("{key:?}").contains(secret.as_str()));
    assert!(format!("{key:?}").contains("redacted"));

    // Both encodings of the point parse to the same key; the key id is SM3 of 04 ‖ x ‖ y.
    let uncompressed = public.to_uncompressed();
    assert_eq!(uncompressed[0], 4);
    assert_eq!(Sm2PublicKey::from_sec1_bytes(&uncompressed).unwrap(), public);
    assert_eq!(Sm2PublicKey::from_sec1_bytes(&public.to_compressed()).unwrap(), public);
    use sm3::Digest as _;
    assert_eq!(public.key_id().0.as_slice(), &sm3::Sm3::digest(uncompressed)[..16]);

    // Recipient and EnvelopeSecretKey dispatch on the prefix.
    assert_eq!(Recipient::from_text(&text).unwrap(), Recipient::Sm2(public));
    assert_eq!(Recipient::from_text(&text).unwrap().suite(), Suite::ShangMi);
    let any = EnvelopeSecretKey::from_text(&secret).unwrap();
    assert_eq!(any.suite(), Suite::ShangMi);
    assert_eq!(any.public_key_text(), text);
    assert_eq!(any.key_id(), key.key_id());
    assert_eq!(any.recipient(), Recipient::Sm2(public));
    let x = RecipientSecretKey::generate();
    let any_x = EnvelopeSecretKey::from_text(&x.to_text()).unwrap();
    assert_eq!(any_x.suite(), Suite::X25519);
    assert_eq!(any_x.public_key_text(), x.public_key().to_text());
    assert_eq!(EnvelopeSecretKey::generate(Suite::ShangMi).suite(), Suite::ShangMi);
    assert_eq!(EnvelopeSecretKey::generate(Suite::X25519).suite(), Suite::X25519);

    // Errors.
    assert!(matches!(Sm2PublicKey::from_text(&secret), Err(KeyError::SecretGivenForPublic)));
    assert!(matches!(Recipient::from_text(&secret), Err(KeyError::SecretGivenForPublic)));
    assert!(matches!(
        Sm2PublicKey::from_text(&x.public_key().to_text()),
        Err(KeyError::WrongPrefix { .. })
    ));
    assert!(matches!(
        Sm2PublicKey::from_text("cloister-sm2:!!"),
        Err(KeyError::BadEncoding { kind: "public" })
    ));
    // The uncompressed form is not the text form (one text per key).
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let long = format!("{SM2_PUBLIC_KEY_PREFIX}{}", b64.encode(uncompressed));
    assert!(matches!(Sm2PublicKey::from_text(&long), Err(KeyError::Sm2Key(_))));
    // An x with no point on the curve is rejected.
    let mut not_a_point = public.to_compressed();
    not_a_point[1..].fill(0xff);
    let err =
        Sm2PublicKey::from_text(&format!("{SM2_PUBLIC_KEY_PREFIX}{}", b64.encode(not_a_point)))
            .unwrap_err();
    assert!(matches!(err, KeyError::Sm2Key(_)), "{err}");
    // Only 02/03 (compressed) and 04 (uncompressed) encodings: not the compact (05) or hybrid
    // (06/07) forms, which elliptic-curve would otherwise accept.
    for tag in [0x00u8, 0x04, 0x05] {
        let mut bad_tag = public.to_compressed();
        bad_tag[0] = tag;
        assert!(Sm2PublicKey::from_sec1_bytes(&bad_tag).is_err(), "{tag:#x}");
    }
    for tag in [0x02u8, 0x06, 0x07] {
        let mut bad_tag = uncompressed;
        bad_tag[0] = tag;
        assert!(Sm2PublicKey::from_sec1_bytes(&bad_tag).is_err(), "{tag:#x}");
    }
    let mut compact = public.to_compressed();
    compact[0] = 0x05;
    assert!(matches!(
        Sm2PublicKey::from_text(&format!("{SM2_PUBLIC_KEY_PREFIX}{}", b64.encode(compact))),
        Err(KeyError::Sm2Key(_))
    ));
    // Secret scalars 0 and n (the group order) are refused; n − 1 is the largest valid one.
    assert!(matches!(Sm2SecretKey::from_bytes(&[0; 32]), Err(KeyError::Sm2Key(_))));
    let n =
        hex::decode("fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123").unwrap();
    let n: [u8; 32] = n.try_into().unwrap();
    assert!(Sm2SecretKey::from_bytes(&n).is_err());
    let mut n1 = n;
    n1[31] -= 1;
    assert!(Sm2SecretKey::from_bytes(&n1).is_ok());
    assert!(matches!(
        Sm2SecretKey::from_text(&format!("{SM2_SECRET_KEY_PREFIX}{}", b64.encode([0u8; 32]))),
        Err(KeyError::Sm2Key(_))
    ));
    assert!(matches!(
        Sm2SecretKey::from_text(&format!("{SM2_SECRET_KEY_PREFIX}{}", b64.encode([1u8; 31]))),
        Err(KeyError::WrongLength { len: 31, .. })
    ));
    assert!(matches!(Sm2SecretKey::from_text(&x.to_text()), Err(KeyError::WrongPrefix { .. })));
}

#[test]
fn every_single_byte_flip_fails_under_the_sm_suite() {
    let keys = [Sm2SecretKey::generate(), Sm2SecretKey::generate()];
    let pt = pattern(SMALL_CHUNK as usize + 9);
    let env =
        seal_to_vec_for_with_options(&sm2(&[&keys[0], &keys[1]]), &meta(), &small_opts(), &pt)
            .unwrap();
    assert_eq!(open_both(&keys[0], &env).unwrap(), pt);
    for pos in 0..env.len() {
        let mask = if pos % 2 == 0 { 0x01u8 } else { 0x80 };
        let mut bad = env.clone();
        bad[pos] ^= mask;
        assert!(
            open_both(&keys[pos % 2], &bad).is_err(),
            "flip {mask:#x} at byte {pos} of {} was accepted",
            env.len()
        );
    }
}

#[test]
fn tampered_header_recipient_and_body_fail_with_the_right_error() {
    let key = Sm2SecretKey::generate();
    let other = Sm2SecretKey::generate();
    let pt = pattern(2 * SMALL_CHUNK as usize + 3);
    let env =
        seal_to_vec_for_with_options(&sm2(&[&key, &other]), &meta(), &small_opts(), &pt).unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let entry = 3 + SM2_ENTRY_LEN;
    let first_entry = hlen - 2 * entry;

    // Metadata (in the prefix): the SM4-GCM wrap of the DEK has the prefix as AAD.
    let mut bad = env.clone();
    let at = env.windows(6).position(|w| w == b"obj-sm").unwrap();
    bad[at] ^= 0x20;
    let (e, _) = open_both(&key, &bad).unwrap_err();
    assert!(matches!(e, OpenError::RecipientDecryptFailed), "{e}");

    // This key's entry: C1, C3, C2 and the wrapped DEK each fail the unwrap.
    for offset in [3 + 16 + 1, 3 + 16 + 65, 3 + 16 + 97, 3 + 16 + 129, entry - 1] {
        let mut bad = env.clone();
        bad[first_entry + offset] ^= 0x01;
        let (e, _) = open_both(&key, &bad).unwrap_err();
        assert!(
            matches!(e, OpenError::RecipientDecryptFailed | OpenError::NotARecipient),
            "offset {offset}: {e}"
        );
    }
    // The other recipient's entry: this key unwraps, but the header digest (SM3, the body AAD)
    // changed, so chunk 0 fails.
    let mut bad = env.clone();
    bad[first_entry + entry + 3 + 16 + 100] ^= 0x01;
    let (e, _) = open_both(&key, &bad).unwrap_err();
    assert!(matches!(e, OpenError::ChunkAuthentication { index: 0 }), "{e}");

    // The body: a flipped bit in chunk 1.
    let mut bad = env.clone();
    bad[hlen + SMALL_CHUNK as usize + TAG_LEN + 5] ^= 0x04;
    let (e, _) = open_both(&key, &bad).unwrap_err();
    assert!(matches!(e, OpenError::ChunkAuthentication { index: 1 }), "{e}");

    // Truncation: inside the final chunk, at a chunk boundary, and the whole body.
    let (e, _) = open_both(&key, &env[..env.len() - 1]).unwrap_err();
    assert!(matches!(e, OpenError::ChunkAuthentication { index: 2 }), "{e}");
    let (e, _) = open_both(&key, &env[..hlen + 2 * (SMALL_CHUNK as usize + TAG_LEN)]).unwrap_err();
    assert!(matches!(e, OpenError::Truncated), "{e}");
    let (e, _) = open_both(&key, &env[..hlen]).unwrap_err();
    assert!(matches!(e, OpenError::Truncated), "{e}");
    let (e, _) = open_both(&key, &env[..hlen + 10]).unwrap_err();
    assert!(matches!(e, OpenError::Truncated), "{e}");
    // Appending after the final chunk.
    let mut ext = env.clone();
    ext.push(0);
    assert!(open_both(&key, &ext).is_err());

    // Swapping chunks.
    let full = SMALL_CHUNK as usize + TAG_LEN;
    let mut bad = env.clone();
    bad[hlen..hlen + full].copy_from_slice(&env[hlen + full..hlen + 2 * full]);
    bad[hlen + full..hlen + 2 * full].copy_from_slice(&env[hlen..hlen + full]);
    let (e, _) = open_both(&key, &bad).unwrap_err();
    assert!(matches!(e, OpenError::ChunkAuthentication { index: 0 }), "{e}");
}

#[test]
fn a_recipient_entry_moved_to_another_envelope_fails() {
    let key = Sm2SecretKey::generate();
    let a =
        seal_to_vec_for_with_options(&sm2(&[&key]), &meta(), &small_opts(), &pattern(100)).unwrap();
    let b =
        seal_to_vec_for_with_options(&sm2(&[&key]), &meta(), &small_opts(), &pattern(100)).unwrap();
    let ha = read_header(a.as_slice()).unwrap().len();
    let hb = read_header(b.as_slice()).unwrap().len();
    assert_eq!(ha, hb);
    // a's recipient entry in b's header (b's nonce prefix differs, so b's prefix differs).
    let entry = 3 + SM2_ENTRY_LEN;
    let mut moved = b.clone();
    moved[hb - entry..hb].copy_from_slice(&a[ha - entry..ha]);
    let (e, _) = open_both(&key, &moved).unwrap_err();
    assert!(matches!(e, OpenError::RecipientDecryptFailed), "{e}");
    // a's header on b's body.
    let mut mixed = a[..ha].to_vec();
    mixed.extend_from_slice(&b[hb..]);
    let (e, _) = open_both(&key, &mixed).unwrap_err();
    assert!(matches!(e, OpenError::ChunkAuthentication { index: 0 }), "{e}");
}

/// Rewrites the suite ids of a serialized header (offset 13).
fn with_ids(header: &[u8], ids: (u16, u16, u16, u16)) -> Vec<u8> {
    let mut h = header.to_vec();
    h[13..15].copy_from_slice(&ids.0.to_be_bytes());
    h[15..17].copy_from_slice(&ids.1.to_be_bytes());
    h[17..19].copy_from_slice(&ids.2.to_be_bytes());
    h[19..21].copy_from_slice(&ids.3.to_be_bytes());
    h
}

#[test]
fn suite_ids_and_entry_kinds_must_match() {
    let s = Sm2SecretKey::generate();
    let x = RecipientSecretKey::generate();
    let sm_env = seal_to_vec_for(&sm2(&[&s]), &meta(), b"x").unwrap();
    let x_env = seal_to_vec_for(&[Recipient::Key(x.public_key())], &meta(), b"x").unwrap();
    let sm_h = &sm_env[..read_header(sm_env.as_slice()).unwrap().len()];
    let x_h = &x_env[..read_header(x_env.as_slice()).unwrap().len()];

    // Kind-3 (SM2) entries under the X25519 suite ids, and kind-1 entries under the ShangMi
    // ids, are malformed headers.
    let e = parse_header(&with_ids(sm_h, Suite::X25519.ids())).unwrap_err();
    assert!(matches!(&e, OpenError::MalformedHeader(m) if m.contains("kind-3")), "{e}");
    let e = parse_header(&with_ids(x_h, Suite::ShangMi.ids())).unwrap_err();
    assert!(matches!(&e, OpenError::MalformedHeader(m) if m.contains("kind-1")), "{e}");

    // Mixtures of the two suites' ids are unsupported suites.
    for ids in [
        (SM_KEM_ID, 0x0001, 0x0002, 0x0001),
        (0x0020, SM_KDF_ID, SM_AEAD_ID, SM_PAYLOAD_ID),
        (SM_KEM_ID, SM_KDF_ID, SM_AEAD_ID, 0x0001),
        (SM_KEM_ID, SM_KDF_ID, 0x0002, SM_PAYLOAD_ID),
        (0x0020, 0x0001, 0x0002, SM_PAYLOAD_ID),
    ] {
        let e = parse_header(&with_ids(sm_h, ids)).unwrap_err();
        assert!(matches!(e, OpenError::UnsupportedSuite { .. }), "{ids:?}: {e}");
    }

    // A kind-3 entry of the wrong length.
    let mut short = sm_h.to_vec();
    let at = short.len() - SM2_ENTRY_LEN - 2;
    short[at..at + 2].copy_from_slice(&((SM2_ENTRY_LEN - 1) as u16).to_be_bytes());
    let e = parse_header(&short).unwrap_err();
    assert!(matches!(&e, OpenError::MalformedHeader(m) if m.contains("SM2")), "{e}");

    // An unknown kind is kept and skipped in a ShangMi envelope, as in the X25519 suite.
    let entry = 3 + SM2_ENTRY_LEN;
    let count_at = sm_h.len() - entry - 2;
    let mut h = sm_h[..count_at].to_vec();
    h.extend_from_slice(&2u16.to_be_bytes());
    h.extend_from_slice(&[9, 0, 2, 0xaa, 0xbb]);
    h.extend_from_slice(&sm_h[count_at + 2..]);
    let len = h.len() as u32;
    h[9..13].copy_from_slice(&len.to_be_bytes());
    let parsed = parse_header(&h).unwrap();
    assert_eq!(parsed.suite(), Suite::ShangMi);
    assert_eq!(parsed.recipient_key_ids(), vec![s.key_id()]);
}

#[test]
fn a_non_canonical_sm2_ciphertext_is_refused() {
    // C1 in compressed form (02/03) instead of 04: the entry has a fixed layout and the reader
    // accepts only the uncompressed point.
    let s = Sm2SecretKey::generate();
    let env = seal_to_vec_for(&sm2(&[&s]), &meta(), b"x").unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let c1 = hlen - SM2_ENTRY_LEN + 16;
    assert_eq!(env[c1], 0x04);
    for tag in [0x00u8, 0x02, 0x03, 0x06, 0x07] {
        let mut bad = env.clone();
        bad[c1] = tag;
        let (e, _) = open_both(&s, &bad).unwrap_err();
        assert!(matches!(e, OpenError::RecipientDecryptFailed), "tag {tag:#x}: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn prop_sm_round_trip_random_sizes_and_chunk_sizes(
        chunk in prop_oneof![Just(64u32), Just(65u32), Just(100u32), Just(1000u32), 64u32..2048],
        size_seed in any::<u64>(),
        max_read in 1usize..300,
        recipients in 1usize..3,
    ) {
        let c = chunk as usize;
        let sizes = [0, 1, c - 1, c, c + 1, 2 * c, 3 * c - 1, 3 * c, 3 * c + 1];
        let size = if size_seed % 2 == 0 {
            sizes[(size_seed / 2) as usize % sizes.len()]
        } else {
            (size_seed / 2) as usize % (4 * c)
        };
        let pt: Vec<u8> = (0..size).map(|i| (i as u64).wrapping_mul(size_seed | 1) as u8).collect();
        let keys: Vec<_> = (0..recipients).map(|_| Sm2SecretKey::generate()).collect();
        let rs: Vec<Recipient> = keys.iter().map(|k| k.public_key().recipient()).collect();
        let opts = SealOptions::default().with_chunk_size(chunk);
        let mut env = Vec::new();
        seal_to(&rs, &meta(), &opts, Trickle { data: &pt, max: max_read }, &mut env).unwrap();
        let chunks = size.div_ceil(c).max(1);
        let hlen = read_header(env.as_slice()).unwrap().len();
        prop_assert_eq!(env.len(), hlen + size + chunks * TAG_LEN);
        for k in &keys {
            let mut out = Vec::new();
            let s = open_with(k, Trickle { data: &env, max: max_read }, &mut out).unwrap();
            prop_assert_eq!(&out, &pt);
            prop_assert_eq!(s.plaintext_bytes, size as u64);
            let (_, v) = open_to_vec_with(k, &env).unwrap();
            prop_assert_eq!(v.as_slice(), pt.as_slice());
        }
    }

    #[test]
    fn prop_sm_random_tampering_fails(
        size in 0usize..200,
        pos_seed in any::<usize>(),
        mask in 1u8..=255,
    ) {
        let key = Sm2SecretKey::generate();
        let pt = pattern(size);
        let env = seal_to_vec_for_with_options(&sm2(&[&key]), &meta(), &small_opts(), &pt).unwrap();
        let mut bad = env.clone();
        let pos = pos_seed % bad.len();
        bad[pos] ^= mask;
        prop_assert!(open_both(&key, &bad).is_err());
        prop_assert!(open_both(&key, &env[..pos_seed % env.len()]).is_err());
    }

    #[test]
    fn prop_sm_open_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let key = Sm2SecretKey::from_bytes(&[7; 32]).unwrap();
        let mut with_header = cloister_seal::MAGIC.to_vec();
        with_header.push(1);
        with_header.extend_from_slice(&bytes);
        let _ = open_to_vec_with(&key, &with_header);
        let _ = open_with(&key, with_header.as_slice(), std::io::sink());
        // A real ShangMi header in front of garbage.
        let env = seal_to_vec_for(&sm2(&[&key]), &meta(), b"").unwrap();
        let hlen = read_header(env.as_slice()).unwrap().len();
        let mut spliced = env[..hlen].to_vec();
        spliced.extend_from_slice(&bytes);
        let _ = open_to_vec_with(&key, &spliced);
    }
}
