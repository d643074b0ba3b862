//! Behaviour of the sealed envelope: round trips, keys, every tampering we can think of, limits.

use std::collections::BTreeMap;
use std::io::Read;

use cloister_seal::{
    KeyError, Metadata, OpenError, RecipientPublicKey, RecipientSecretKey, SealError, SealOptions,
    TAG_LEN, open, open_to_vec, read_header, seal, seal_to_vec, seal_to_vec_with_options,
    seal_with_options,
};
use proptest::prelude::*;

const SMALL_CHUNK: u32 = 64;

fn meta() -> Metadata {
    let mut attributes = BTreeMap::new();
    attributes.insert("owner".to_string(), "hospital-a".to_string());
    attributes.insert("purpose".to_string(), "training".to_string());
    Metadata { content_type: "text/csv".to_string(), object_id: "obj-42".to_string(), attributes }
}

fn small_opts() -> SealOptions {
    SealOptions::default().with_chunk_size(SMALL_CHUNK)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
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
fn open_both(key: &RecipientSecretKey, env: &[u8]) -> Result<Vec<u8>, (OpenError, OpenError)> {
    let mut streamed = Vec::new();
    let a = open(key, Trickle { data: env, max: 7 }, &mut streamed);
    let b = open_to_vec(key, env);
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
fn round_trip_default_options() {
    let key = RecipientSecretKey::generate();
    let pt = pattern(200_000);
    let env = seal_to_vec(&[key.public_key()], &meta(), &pt).unwrap();
    let (header, out) = open_to_vec(&key, &env).unwrap();
    assert_eq!(out.as_slice(), pt.as_slice());
    assert_eq!(header.metadata(), &meta());
    assert_eq!(header.chunk_size(), cloister_seal::DEFAULT_CHUNK_SIZE);
    assert_eq!(header.recipient_key_ids(), vec![key.key_id()]);
    assert_eq!(header.version(), 1);
}

#[test]
fn streaming_and_in_memory_seal_are_interchangeable() {
    let key = RecipientSecretKey::generate();
    let pt = pattern(1000);
    let mut env = Vec::new();
    let summary = seal_with_options(
        &[key.public_key()],
        &meta(),
        &small_opts(),
        Trickle { data: &pt, max: 13 },
        &mut env,
    )
    .unwrap();
    assert_eq!(summary.plaintext_bytes, 1000);
    assert_eq!(summary.ciphertext_bytes, env.len() as u64);
    assert_eq!(open_both(&key, &env).unwrap(), pt);

    let env2 = seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), &pt).unwrap();
    assert_eq!(env2.len(), env.len());
    assert_eq!(open_both(&key, &env2).unwrap(), pt);
}

#[test]
fn empty_input_is_one_final_empty_chunk() {
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec(&[key.public_key()], &Metadata::default(), b"").unwrap();
    let header = read_header(env.as_slice()).unwrap();
    assert_eq!(env.len(), header.len() + TAG_LEN);
    assert_eq!(open_both(&key, &env).unwrap(), b"");

    let mut streamed = Vec::new();
    seal(&[key.public_key()], &Metadata::default(), &b""[..], &mut streamed).unwrap();
    assert_eq!(streamed.len(), env.len());
    // Body removed entirely: the final chunk is missing.
    let (a, b) = open_both(&key, &env[..header.len()]).unwrap_err();
    assert!(matches!(a, OpenError::Truncated), "{a}");
    assert!(matches!(b, OpenError::Truncated), "{b}");
}

#[test]
fn full_final_chunk_has_no_extra_empty_chunk() {
    let key = RecipientSecretKey::generate();
    let pt = pattern(3 * SMALL_CHUNK as usize);
    let env = seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), &pt).unwrap();
    let header = read_header(env.as_slice()).unwrap();
    assert_eq!(env.len(), header.len() + pt.len() + 3 * TAG_LEN);
}

#[test]
fn multiple_recipients_each_open_and_others_cannot() {
    let keys: Vec<_> = (0..3).map(|_| RecipientSecretKey::generate()).collect();
    let publics: Vec<_> = keys.iter().map(RecipientSecretKey::public_key).collect();
    let pt = pattern(150);
    let env = seal_to_vec_with_options(&publics, &meta(), &small_opts(), &pt).unwrap();
    for k in &keys {
        assert_eq!(open_both(k, &env).unwrap(), pt);
    }
    let stranger = RecipientSecretKey::generate();
    let (a, b) = open_both(&stranger, &env).unwrap_err();
    assert!(matches!(a, OpenError::NotARecipient));
    assert!(matches!(b, OpenError::NotARecipient));
    assert_eq!(a.to_string(), "this key is not one of the envelope's recipients");
    let ids = read_header(env.as_slice()).unwrap().recipient_key_ids();
    assert_eq!(ids, keys.iter().map(|k| k.key_id()).collect::<Vec<_>>());
}

#[test]
fn seal_rejects_bad_arguments() {
    let key = RecipientSecretKey::generate();
    let e = seal_to_vec(&[], &meta(), b"x").unwrap_err();
    assert!(matches!(e, SealError::NoRecipients));
    assert!(e.to_string().contains("recipient list is empty"));
    let e = seal_to_vec(&[key.public_key(), key.public_key()], &meta(), b"x").unwrap_err();
    assert!(matches!(e, SealError::DuplicateRecipient(_)));
    for bad in [0, 63, (16 << 20) + 1] {
        let e = seal_to_vec_with_options(
            &[key.public_key()],
            &meta(),
            &SealOptions::default().with_chunk_size(bad),
            b"x",
        )
        .unwrap_err();
        assert!(matches!(e, SealError::InvalidChunkSize { .. }), "{bad}");
    }
    let mut m = meta();
    m.content_type = "x".repeat(1025);
    assert!(matches!(
        seal_to_vec(&[key.public_key()], &m, b"x").unwrap_err(),
        SealError::InvalidMetadata(_)
    ));
    let mut m = meta();
    m.attributes.insert(String::new(), "v".into());
    assert!(matches!(
        seal_to_vec(&[key.public_key()], &m, b"x").unwrap_err(),
        SealError::InvalidMetadata(_)
    ));
    let mut m = meta();
    for i in 0..65 {
        m.attributes.insert(format!("k{i}"), "v".into());
    }
    assert!(matches!(
        seal_to_vec(&[key.public_key()], &m, b"x").unwrap_err(),
        SealError::InvalidMetadata(_)
    ));
}

#[test]
fn key_text_round_trip_and_errors() {
    let key = RecipientSecretKey::generate();
    let text = key.to_text();
    assert!(text.starts_with("cloister-hpke-secret-x25519:"));
    assert_eq!(text.len(), "cloister-hpke-secret-x25519:".len() + 43);
    let back = RecipientSecretKey::from_text(&format!("  {}\n", text.as_str())).unwrap();
    assert_eq!(back.public_key(), key.public_key());

    let pk = key.public_key();
    let pt = pk.to_text();
    assert!(pt.starts_with("cloister-hpke-x25519:"));
    assert_eq!(pk.to_string(), pt);
    assert_eq!(pt.parse::<RecipientPublicKey>().unwrap(), pk);
    assert_eq!(RecipientPublicKey::from_text(&format!("{pt}\n")).unwrap(), pk);

    assert!(matches!(
        RecipientPublicKey::from_text(text.as_str()),
        Err(KeyError::SecretGivenForPublic)
    ));
    assert!(matches!(RecipientSecretKey::from_text(&pt), Err(KeyError::WrongPrefix { .. })));
    assert!(matches!(
        RecipientPublicKey::from_text("cloister-hpke-x25519:AAAA"),
        Err(KeyError::WrongLength { len: 3, .. })
    ));
    assert!(matches!(
        RecipientPublicKey::from_text("cloister-hpke-x25519:!!"),
        Err(KeyError::BadEncoding { .. })
    ));

    // Debug never shows the secret.
    let dbg = format!("{key:?}");
    let secret_b64 = text.trim_start_matches("cloister-hpke-secret-x25519:");
    assert!(!dbg.contains(secret_b64));
    assert!(dbg.contains("redacted"));
}

#[test]
fn header_errors_name_what_failed() {
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec(&[key.public_key()], &meta(), b"data").unwrap();

    let mut bad = env.clone();
    bad[0] = b'X';
    let e = read_header(bad.as_slice()).unwrap_err();
    assert_eq!(e.to_string(), "not a Cloister sealed envelope (bad magic)");

    let mut bad = env.clone();
    bad[8] = 7;
    let e = read_header(bad.as_slice()).unwrap_err();
    assert_eq!(e.to_string(), "unsupported envelope version 7 (this build reads version 1)");

    let e = read_header(&env[..20]).unwrap_err();
    assert_eq!(e.to_string(), "header is truncated");

    // A huge declared header length is rejected before anything is allocated.
    let mut bad = env.clone();
    bad[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(read_header(bad.as_slice()).unwrap_err(), OpenError::HeaderLength { .. }));

    // Text files are not envelopes.
    assert!(matches!(
        read_header(&b"hello world, this is text"[..]).unwrap_err(),
        OpenError::BadMagic
    ));
    assert!(matches!(read_header(&b""[..]).unwrap_err(), OpenError::HeaderTruncated));
}

#[test]
fn body_errors_name_what_failed() {
    let key = RecipientSecretKey::generate();
    let pt = pattern(5 * SMALL_CHUNK as usize + 10);
    let env = seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), &pt).unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let full = SMALL_CHUNK as usize + TAG_LEN;

    // Modified chunk 3.
    let mut bad = env.clone();
    bad[hlen + 3 * full + 5] ^= 0x40;
    let (a, b) = open_both(&key, &bad).unwrap_err();
    assert_eq!(
        a.to_string(),
        "chunk 3 failed authentication (ciphertext modified, reordered, or header changed)"
    );
    assert!(matches!(b, OpenError::ChunkAuthentication { index: 3 }));

    // Dropping the final chunk(s) at a chunk boundary.
    for keep in 1..=5 {
        let (a, b) = open_both(&key, &env[..hlen + keep * full]).unwrap_err();
        assert_eq!(a.to_string(), "envelope is truncated: the final chunk is missing");
        assert!(matches!(b, OpenError::Truncated));
    }

    // Trailing data after a full final chunk.
    let exact = seal_to_vec_with_options(
        &[key.public_key()],
        &meta(),
        &small_opts(),
        &pattern(2 * SMALL_CHUNK as usize),
    )
    .unwrap();
    let mut ext = exact.clone();
    ext.extend_from_slice(&[0u8; 3]);
    let (_, b) = open_both(&key, &ext).unwrap_err();
    assert_eq!(b.to_string(), "unexpected data after the final chunk");

    // Changed metadata (authenticated, not secret).
    let mut bad = env.clone();
    let pos = bad.windows(6).position(|w| w == b"obj-42").expect("object id in header");
    bad[pos + 5] = b'3';
    let (a, _) = open_both(&key, &bad).unwrap_err();
    assert!(
        matches!(a, OpenError::RecipientDecryptFailed),
        "metadata is bound into the HPKE wrap: {a}"
    );
}

#[test]
fn every_single_byte_flip_fails() {
    let keys = [RecipientSecretKey::generate(), RecipientSecretKey::generate()];
    let publics: Vec<_> = keys.iter().map(RecipientSecretKey::public_key).collect();
    let pt = pattern(2 * SMALL_CHUNK as usize + 9);
    let env = seal_to_vec_with_options(&publics, &meta(), &small_opts(), &pt).unwrap();
    assert_eq!(open_both(&keys[0], &env).unwrap(), pt);
    for pos in 0..env.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = env.clone();
            bad[pos] ^= mask;
            for key in &keys {
                assert!(
                    open_both(key, &bad).is_err(),
                    "flip {mask:#x} at byte {pos} of {} was accepted",
                    env.len()
                );
            }
        }
    }
}

#[test]
fn every_truncation_fails_and_appending_fails() {
    let key = RecipientSecretKey::generate();
    for n in [0usize, 1, 64, 130] {
        let pt = pattern(n);
        let env =
            seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), &pt).unwrap();
        for len in 0..env.len() {
            assert!(
                open_both(&key, &env[..len]).is_err(),
                "truncation to {len} of {} accepted (plaintext {n})",
                env.len()
            );
        }
        for extra in [&[0u8][..], &[0u8; 16][..], &env[env.len() - 20..]] {
            let mut ext = env.clone();
            ext.extend_from_slice(extra);
            assert!(open_both(&key, &ext).is_err(), "append of {} accepted", extra.len());
        }
    }
}

#[test]
fn swapping_or_duplicating_chunks_fails() {
    let key = RecipientSecretKey::generate();
    let pt = pattern(4 * SMALL_CHUNK as usize + 5);
    let env = seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), &pt).unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let full = SMALL_CHUNK as usize + TAG_LEN;
    let chunk = |i: usize| env[hlen + i * full..hlen + (i + 1) * full].to_vec();
    for (i, j) in [(0, 1), (1, 2), (0, 3), (2, 3)] {
        let mut bad = env.clone();
        bad[hlen + i * full..hlen + (i + 1) * full].copy_from_slice(&chunk(j));
        bad[hlen + j * full..hlen + (j + 1) * full].copy_from_slice(&chunk(i));
        let (a, _) = open_both(&key, &bad).unwrap_err();
        assert!(matches!(a, OpenError::ChunkAuthentication { index } if index == i as u64), "{a}");
    }
    // Replaying chunk 0 in place of chunk 1.
    let mut bad = env.clone();
    bad[hlen + full..hlen + 2 * full].copy_from_slice(&chunk(0));
    assert!(open_both(&key, &bad).is_err());
}

#[test]
fn swapping_headers_between_envelopes_fails() {
    let key = RecipientSecretKey::generate();
    let a = seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), &pattern(100))
        .unwrap();
    let b = seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), &pattern(100))
        .unwrap();
    let ha = read_header(a.as_slice()).unwrap().len();
    let hb = read_header(b.as_slice()).unwrap().len();
    let mut mixed = a[..ha].to_vec();
    mixed.extend_from_slice(&b[hb..]);
    let (e, _) = open_both(&key, &mixed).unwrap_err();
    assert!(matches!(e, OpenError::ChunkAuthentication { index: 0 }), "{e}");

    // Same envelope, but its recipient entry transplanted into another envelope's header.
    let other = RecipientSecretKey::generate();
    let c = seal_to_vec_with_options(
        &[key.public_key(), other.public_key()],
        &meta(),
        &small_opts(),
        &pattern(100),
    )
    .unwrap();
    let hc = read_header(c.as_slice()).unwrap().len();
    let mut mixed = c[..hc].to_vec();
    mixed.extend_from_slice(&a[ha..]);
    assert!(open_both(&key, &mixed).is_err());
}

#[test]
fn unknown_recipient_kinds_are_listed_but_skipped() {
    // Build a header by hand with an extra kind-9 recipient entry in front of a real one.
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), b"hi").unwrap();
    let header = read_header(env.as_slice()).unwrap();
    let hlen = header.len();
    let entry_len = 3 + cloister_seal::HPKE_X25519_ENTRY_LEN;
    let count_at = hlen - entry_len - 2;
    let mut h = env[..count_at].to_vec();
    h.extend_from_slice(&2u16.to_be_bytes());
    h.extend_from_slice(&[9, 0, 4, 1, 2, 3, 4]);
    h.extend_from_slice(&env[count_at + 2..hlen]);
    let new_len = h.len() as u32;
    h[9..13].copy_from_slice(&new_len.to_be_bytes());
    let parsed = cloister_seal::internal::parse_header(&h).unwrap();
    assert_eq!(parsed.recipients().len(), 2);
    assert_eq!(parsed.recipients()[0].kind(), 9);
    assert_eq!(parsed.recipients()[0].key_id(), None);
    assert_eq!(parsed.recipient_key_ids(), vec![key.key_id()]);
    // Splicing the entry in changed the header length, which is part of the prefix bound into
    // the HPKE wrap, so the real entry no longer decrypts (and the body AAD changed too).
    let mut spliced = h.clone();
    spliced.extend_from_slice(&env[hlen..]);
    let (e, _) = open_both(&key, &spliced).unwrap_err();
    assert!(matches!(e, OpenError::RecipientDecryptFailed), "{e}");
}

#[test]
fn malformed_headers_are_rejected() {
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec(&[key.public_key()], &meta(), b"x").unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let h = &env[..hlen];
    let parse = cloister_seal::internal::parse_header;
    assert!(parse(h).is_ok());
    // Header with the body attached is not "exactly a header".
    assert!(parse(&env).is_err());
    // Suite ids.
    let mut bad = h.to_vec();
    bad[14] = 0x21;
    assert!(matches!(parse(&bad), Err(OpenError::UnsupportedSuite { kem: 0x21, .. })));
    // Chunk size out of range.
    let mut bad = h.to_vec();
    bad[21..25].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(parse(&bad), Err(OpenError::MalformedHeader(_))));
    // Zero recipients.
    let mut bad = h[..hlen - 2 - 3 - cloister_seal::HPKE_X25519_ENTRY_LEN].to_vec();
    bad.extend_from_slice(&0u16.to_be_bytes());
    let l = bad.len() as u32;
    bad[9..13].copy_from_slice(&l.to_be_bytes());
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.to_string(), "recipient list is empty");
    // A recipient count far beyond what fits.
    let mut bad = h.to_vec();
    let at = hlen - 2 - 3 - cloister_seal::HPKE_X25519_ENTRY_LEN;
    bad[at..at + 2].copy_from_slice(&1000u16.to_be_bytes());
    assert!(matches!(parse(&bad), Err(OpenError::MalformedHeader(_))));
    bad[at..at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(parse(&bad), Err(OpenError::MalformedHeader(_))));
    // A string length running past the header.
    let mut bad = h.to_vec();
    bad[32..34].copy_from_slice(&1024u16.to_be_bytes());
    assert!(matches!(parse(&bad), Err(OpenError::MalformedHeader(_))));
}

#[test]
fn attribute_order_is_canonical() {
    // Swap two attribute entries by hand: the parser must reject unsorted keys.
    let mut m = Metadata::default();
    m.attributes.insert("a".into(), "1".into());
    m.attributes.insert("b".into(), "2".into());
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec(&[key.public_key()], &m, b"").unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let mut h = env[..hlen].to_vec();
    let a = h.windows(6).position(|w| w == [1, b'a', 0, 1, b'1', 1]).unwrap();
    h[a + 1] = b'b';
    h[a + 4 + 2] = b'a';
    let e = cloister_seal::internal::parse_header(&h).unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
}

fn sizes_around(chunk: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(chunk - 1),
        Just(chunk),
        Just(chunk + 1),
        Just(2 * chunk),
        Just(3 * chunk),
        Just(3 * chunk - 1),
        Just(3 * chunk + 1),
        0..4 * chunk,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_round_trip_around_chunk_boundaries(
        chunk in prop_oneof![Just(64u32), Just(100u32), Just(1024u32)],
        size_seed in any::<u64>(),
        max_read in 1usize..300,
        recipients in 1usize..4,
    ) {
        let c = chunk as usize;
        let sizes = [0, 1, c - 1, c, c + 1, 2 * c, 3 * c - 1, 3 * c, 3 * c + 1];
        let size = if size_seed % 2 == 0 {
            sizes[(size_seed / 2) as usize % sizes.len()]
        } else {
            (size_seed / 2) as usize % (4 * c)
        };
        let pt: Vec<u8> = (0..size).map(|i| (i as u64).wrapping_mul(size_seed | 1) as u8).collect();
        let keys: Vec<_> = (0..recipients).map(|_| RecipientSecretKey::generate()).collect();
        let publics: Vec<_> = keys.iter().map(RecipientSecretKey::public_key).collect();
        let opts = SealOptions::default().with_chunk_size(chunk);
        let mut env = Vec::new();
        seal_with_options(&publics, &meta(), &opts, Trickle { data: &pt, max: max_read }, &mut env).unwrap();
        let chunks = size.div_ceil(c).max(1);
        let hlen = read_header(env.as_slice()).unwrap().len();
        prop_assert_eq!(env.len(), hlen + size + chunks * TAG_LEN);
        for k in &keys {
            let mut out = Vec::new();
            let s = open(k, Trickle { data: &env, max: max_read }, &mut out).unwrap();
            prop_assert_eq!(&out, &pt);
            prop_assert_eq!(s.plaintext_bytes, size as u64);
            let (_, v) = open_to_vec(k, &env).unwrap();
            prop_assert_eq!(v.as_slice(), pt.as_slice());
        }
        let stranger = RecipientSecretKey::generate();
        prop_assert!(matches!(open_to_vec(&stranger, &env), Err(OpenError::NotARecipient)));
    }

    #[test]
    fn prop_random_tampering_fails(
        size in sizes_around(64),
        pos_seed in any::<usize>(),
        mask in 1u8..=255,
    ) {
        let key = RecipientSecretKey::generate();
        let pt = pattern(size);
        let env = seal_to_vec_with_options(&[key.public_key()], &meta(), &small_opts(), &pt).unwrap();
        let mut bad = env.clone();
        let pos = pos_seed % bad.len();
        bad[pos] ^= mask;
        prop_assert!(open_both(&key, &bad).is_err());
        let cut = pos_seed % env.len();
        prop_assert!(open_both(&key, &env[..cut]).is_err());
    }

    #[test]
    fn prop_parser_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = cloister_seal::internal::parse_header(&bytes);
        let _ = read_header(bytes.as_slice());
        let mut with_magic = cloister_seal::MAGIC.to_vec();
        with_magic.push(1);
        with_magic.extend_from_slice(&bytes);
        let _ = read_header(with_magic.as_slice());
        let key = RecipientSecretKey::from_bytes(&[7; 32]);
        let _ = open_to_vec(&key, &with_magic);
    }
}

#[test]
fn read_header_consumes_exactly_the_header() {
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec(&[key.public_key()], &meta(), b"payload").unwrap();
    let mut reader = env.as_slice();
    let header = read_header(&mut reader).unwrap();
    assert_eq!(reader.len(), env.len() - header.len());
    assert_eq!(header.as_bytes(), &env[..header.len()]);
    assert_eq!(reader.len(), b"payload".len() + TAG_LEN);
}

#[test]
fn streams_from_a_non_slice_reader_in_chunks() {
    // 3 MiB + 5 bytes from a generated reader, default 64 KiB chunks, through a writer that
    // only ever sees whole chunks.
    let key = RecipientSecretKey::generate();
    let n: usize = (3 << 20) + 5;
    let input = std::io::repeat(0xab).take(n as u64);
    let mut env = Vec::new();
    let s = seal(&[key.public_key()], &meta(), input, &mut env).unwrap();
    assert_eq!(s.plaintext_bytes, n as u64);
    let chunks = n.div_ceil(cloister_seal::DEFAULT_CHUNK_SIZE as usize);
    let hlen = read_header(env.as_slice()).unwrap().len();
    assert_eq!(env.len(), hlen + n + chunks * TAG_LEN);
    let mut out = Vec::new();
    let o = open(&key, env.as_slice(), &mut out).unwrap();
    assert_eq!(o.plaintext_bytes, n as u64);
    assert!(out.len() == n && out.iter().all(|&b| b == 0xab));
}
