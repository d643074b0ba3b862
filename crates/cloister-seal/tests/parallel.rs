//! Large envelopes, whose bodies are sealed and opened in batches on several threads: the bytes
//! are those of the chunk-at-a-time STREAM construction (recomputed here with `ring`), and
//! opening stops at the first bad chunk with only the chunks before it written.

#![allow(clippy::unwrap_used)]

use std::io::{self, Read};

use cloister_seal::internal::{
    FixedSealInputs, derive_payload_key, parse_header_prefix, seal_deterministic,
    seal_stream_deterministic,
};
use cloister_seal::{
    Metadata, OpenError, RecipientSecretKey, SealError, SealOptions, TAG_LEN, open, open_to_vec,
    seal_with_options,
};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::Digest as _;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

fn key() -> RecipientSecretKey {
    RecipientSecretKey::from_bytes(&[5u8; 32])
}

fn inputs(chunk_size: usize) -> FixedSealInputs {
    FixedSealInputs {
        dek: [9u8; 32],
        ephemeral_seeds: vec![[3u8; 32]],
        nonce_prefix: [1, 2, 3, 4, 5, 6, 7],
        chunk_size: chunk_size as u32,
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(31) ^ (i >> 11)) as u8).collect()
}

/// Returns at most `max` bytes per `read`, then fails with `fail_at` bytes delivered if set.
struct Reader<'a> {
    data: &'a [u8],
    max: usize,
    delivered: usize,
    fail_at: Option<usize>,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], max: usize) -> Self {
        Self { data, max, delivered: 0, fail_at: None }
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = buf.len().min(self.max).min(self.data.len());
        if let Some(at) = self.fail_at {
            if self.delivered >= at {
                return Err(io::Error::other("disk on fire"));
            }
            n = n.min(at - self.delivered);
        }
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.delivered += n;
        Ok(n)
    }
}

/// The body the STREAM construction gives, one chunk at a time, with ring's AES-256-GCM.
fn reference_body(header: &[u8], inputs: &FixedSealInputs, plaintext: &[u8]) -> Vec<u8> {
    let payload_key = derive_payload_key(&inputs.dek);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, payload_key.as_slice()).unwrap());
    let aad: [u8; 32] = sha2::Sha256::digest(header).into();
    let cs = inputs.chunk_size as usize;
    let chunks: Vec<&[u8]> =
        if plaintext.is_empty() { vec![&[][..]] } else { plaintext.chunks(cs).collect() };
    let mut body = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut nonce = [0u8; 12];
        nonce[..7].copy_from_slice(&inputs.nonce_prefix);
        nonce[7..11].copy_from_slice(&(i as u32).to_be_bytes());
        nonce[11] = u8::from(i + 1 == chunks.len());
        let mut data = chunk.to_vec();
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut data,
            )
            .unwrap();
        body.extend_from_slice(&data);
        body.extend_from_slice(tag.as_ref());
    }
    body
}

/// Sealed with fixed inputs, in memory and streaming; both must be the reference bytes.
fn sealed(chunk_size: usize, plaintext: &[u8]) -> Vec<u8> {
    let inputs = inputs(chunk_size);
    let recipients = [key().public_key()];
    let meta = Metadata::default();
    let in_memory = seal_deterministic(&recipients, &meta, &inputs, plaintext).unwrap();
    let mut streamed = Vec::new();
    seal_stream_deterministic(
        &recipients,
        &meta,
        &inputs,
        Reader::new(plaintext, 100_003),
        &mut streamed,
    )
    .unwrap();
    let (_, header_len) = parse_header_prefix(&in_memory).unwrap();
    let (header, body) = in_memory.split_at(header_len);
    assert!(body == reference_body(header, &inputs, plaintext), "in-memory body differs");
    assert!(streamed == in_memory, "streamed envelope differs");
    in_memory
}

/// Streaming open; returns what was written and how it ended.
fn open_streaming(envelope: &[u8], max_read: usize) -> (Vec<u8>, Result<u64, OpenError>) {
    let mut out = Vec::new();
    let result = open(&key(), Reader::new(envelope, max_read), &mut out);
    (out, result.map(|summary| summary.plaintext_bytes))
}

#[test]
fn large_bodies_are_the_chunk_at_a_time_bytes() {
    // Batches hold 1 MiB of plaintext; in memory, 4 MiB and more run on several threads.
    for cs in [64 * KIB, 4 * KIB, 1000] {
        for len in [0, 1, cs, MIB, MIB + 1, 3 * MIB - 1, 4 * MIB, 5 * MIB + 17] {
            let plaintext = pattern(len);
            let envelope = sealed(cs, &plaintext);
            let header_len = parse_header_prefix(&envelope).unwrap().1;
            assert_eq!(envelope.len(), header_len + len + len.div_ceil(cs).max(1) * TAG_LEN);
            let (out, result) = open_streaming(&envelope, 65_537);
            assert_eq!(result.unwrap(), len as u64, "chunk {cs}, {len} bytes");
            assert!(out == plaintext, "streamed plaintext differs: chunk {cs}, {len} bytes");
            let (_, opened) = open_to_vec(&key(), &envelope).unwrap();
            assert!(opened.as_slice() == plaintext, "plaintext differs: chunk {cs}, {len} bytes");
        }
    }
}

#[test]
fn random_seals_of_a_large_input_round_trip() {
    let plaintext = pattern(6 * MIB + 5);
    let opts = SealOptions::default();
    let mut envelope = Vec::new();
    let summary = seal_with_options(
        &[key().public_key()],
        &Metadata::default(),
        &opts,
        Reader::new(&plaintext, MIB),
        &mut envelope,
    )
    .unwrap();
    assert_eq!(summary.ciphertext_bytes, envelope.len() as u64);
    assert_eq!(summary.plaintext_bytes, plaintext.len() as u64);
    let (out, result) = open_streaming(&envelope, usize::MAX);
    assert_eq!(result.unwrap(), plaintext.len() as u64);
    assert!(out == plaintext);
}

#[test]
fn a_bad_chunk_in_any_batch_stops_the_stream_there() {
    let cs = 64 * KIB;
    let full = cs + TAG_LEN;
    let plaintext = pattern(6 * MIB); // 96 chunks, the final one full
    let envelope = sealed(cs, &plaintext);
    let header_len = parse_header_prefix(&envelope).unwrap().1;
    for k in [0usize, 15, 16, 17, 40, 94, 95] {
        for offset in [0, cs / 2, cs + TAG_LEN - 1] {
            let mut bad = envelope.clone();
            bad[header_len + k * full + offset] ^= 0x20;
            let (out, result) = open_streaming(&bad, 300_001);
            assert!(
                matches!(result, Err(OpenError::ChunkAuthentication { index }) if index == k as u64),
                "chunk {k}, offset {offset}: {result:?}"
            );
            assert!(out == plaintext[..k * cs], "chunk {k}: only the chunks before it");
            let in_memory = open_to_vec(&key(), &bad).map(|_| ());
            assert!(
                matches!(in_memory, Err(OpenError::ChunkAuthentication { index }) if index == k as u64),
                "in memory, chunk {k}: {in_memory:?}"
            );
        }
    }
    // Two chunks swapped across batches: the first of them fails.
    let mut swapped = envelope.clone();
    let (a, b) = (header_len + 3 * full, header_len + 40 * full);
    let chunk_a = envelope[a..a + full].to_vec();
    swapped.copy_within(b..b + full, a);
    swapped[b..b + full].copy_from_slice(&chunk_a);
    let (out, result) = open_streaming(&swapped, usize::MAX);
    assert!(matches!(result, Err(OpenError::ChunkAuthentication { index: 3 })), "{result:?}");
    assert_eq!(out.len(), 3 * cs);
}

#[test]
fn cutting_or_extending_a_large_body_fails() {
    let cs = 64 * KIB;
    let full = cs + TAG_LEN;
    let plaintext = pattern(5 * MIB + 100); // 81 chunks, the final one 100 bytes
    let envelope = sealed(cs, &plaintext);
    let header_len = parse_header_prefix(&envelope).unwrap().1;
    let last = 80u64;
    // Cut at a chunk boundary: a full non-final chunk is now the last one.
    for chunks in [1usize, 16, 17, 80] {
        let cut = &envelope[..header_len + chunks * full];
        let (out, result) = open_streaming(cut, usize::MAX);
        assert!(matches!(result, Err(OpenError::Truncated)), "{chunks} chunks: {result:?}");
        assert_eq!(out.len(), (chunks - 1) * cs);
        assert!(matches!(open_to_vec(&key(), cut), Err(OpenError::Truncated)));
    }
    // Cut inside a chunk: that chunk fails as the final one.
    for at in [header_len + 16 * full + 500, envelope.len() - 1] {
        let cut = &envelope[..at];
        let index = ((at - header_len) / full) as u64;
        let (_, result) = open_streaming(cut, usize::MAX);
        assert!(
            matches!(result, Err(OpenError::ChunkAuthentication { index: i }) if i == index),
            "cut at {at}: {result:?}"
        );
    }
    // A tag's worth or less left of the final chunk.
    let cut = &envelope[..header_len + 80 * full + TAG_LEN - 1];
    assert!(matches!(open_streaming(cut, usize::MAX).1, Err(OpenError::Truncated)));
    // Anything appended changes the final chunk, which fails.
    let mut longer = envelope.clone();
    longer.extend_from_slice(&[0u8; 3]);
    let (out, result) = open_streaming(&longer, usize::MAX);
    assert!(
        matches!(result, Err(OpenError::ChunkAuthentication { index }) if index == last),
        "{result:?}"
    );
    assert_eq!(out.len(), 80 * cs);
}

#[test]
fn a_read_error_ends_the_stream_after_whole_authenticated_chunks() {
    let cs = 64 * KIB;
    let full = cs + TAG_LEN;
    let plaintext = pattern(5 * MIB);
    let envelope = sealed(cs, &plaintext);
    let header_len = parse_header_prefix(&envelope).unwrap().1;
    let fail_at = header_len + 40 * full + 7;
    let mut reader = Reader::new(&envelope, 100_000);
    reader.fail_at = Some(fail_at);
    let mut out = Vec::new();
    let result = open(&key(), reader, &mut out);
    assert!(matches!(result, Err(OpenError::Read(_))), "{:?}", result.map(|_| ()));
    assert_eq!(out.len() % cs, 0);
    assert!(out.len() <= 40 * cs && out == plaintext[..out.len()]);
    // A bad chunk before the read error is what is reported.
    let mut bad = envelope.clone();
    bad[header_len + 20 * full] ^= 1;
    let mut reader = Reader::new(&bad, 100_000);
    reader.fail_at = Some(fail_at);
    let result = open(&key(), reader, &mut Vec::new());
    assert!(
        matches!(result, Err(OpenError::ChunkAuthentication { index: 20 })),
        "{:?}",
        result.map(|_| ())
    );
    // Sealing reports the read error too.
    let mut reader = Reader::new(&plaintext, 100_000);
    reader.fail_at = Some(3 * MIB + 1);
    let result = seal_with_options(
        &[key().public_key()],
        &Metadata::default(),
        &SealOptions::default(),
        reader,
        &mut Vec::new(),
    );
    assert!(matches!(result, Err(SealError::Read(_))), "{:?}", result.map(|_| ()));
}
