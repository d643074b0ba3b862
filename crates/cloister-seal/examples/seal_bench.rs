//! Micro-benchmark: envelope seal/open throughput in memory (on every core the process may use),
//! and raw one-core AES-256-GCM throughput of `aws-lc-rs` (the envelope's AEAD), `ring` and
//! RustCrypto `aes-gcm`, printed in GiB/s; then the same in-memory seal/open for the ShangMi
//! suite (SM2 recipient, SM4-GCM body) against the X25519 suite.
//!
//! `cargo run --release -p cloister-seal --example seal_bench -- [MiB] [iterations] [sm]`
//! (defaults: 1024 MiB, 3 iterations; the best iteration is reported; `sm` runs only the
//! suite comparison).

use std::hint::black_box;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use cloister_seal::{
    Metadata, Recipient, RecipientSecretKey, SealOptions, Sm2SecretKey, open, open_to_vec,
    open_to_vec_with, seal_to_vec_for_with_options, seal_to_vec_with_options, seal_with_options,
};

const GIB: f64 = (1u64 << 30) as f64;

fn best<F: FnMut()>(iterations: usize, mut f: F) -> Duration {
    (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn report(what: &str, bytes: usize, d: Duration) {
    println!(
        "{what:<52} {:>7.3} s  {:>6.2} GiB/s",
        d.as_secs_f64(),
        bytes as f64 / GIB / d.as_secs_f64()
    );
}

/// A `Write` that discards its input but touches it, so nothing is optimised away.
struct Sink(u8);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(b) = buf.last() {
            self.0 ^= *b;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn raw_aws_lc(data: &mut [u8], chunk: usize) {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    for (i, c) in data.chunks_mut(chunk).enumerate() {
        let mut n = [0u8; 12];
        n[4..8].copy_from_slice(&(i as u32).to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&[0u8; 32]), c)
            .expect("seal");
        let _ = black_box(tag);
    }
}

fn raw_ring(data: &mut [u8], chunk: usize) {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    for (i, c) in data.chunks_mut(chunk).enumerate() {
        let mut n = [0u8; 12];
        n[4..8].copy_from_slice(&(i as u32).to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&[0u8; 32]), c)
            .expect("seal");
        let _ = black_box(tag);
    }
}

fn raw_rustcrypto(data: &mut [u8], chunk: usize) {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{Aes256Gcm, Nonce};
    let cipher = Aes256Gcm::new_from_slice(&[7u8; 32]).expect("key");
    for (i, c) in data.chunks_mut(chunk).enumerate() {
        let mut n = [0u8; 12];
        n[4..8].copy_from_slice(&(i as u32).to_be_bytes());
        let nonce = Nonce::from(n);
        let tag = cipher.encrypt_inout_detached(&nonce, &[0u8; 32], c.into()).expect("seal");
        black_box(tag);
    }
}

/// In-memory seal and open (`seal_to_vec_for`, `open_to_vec_with`) of the same buffer with one
/// recipient, X25519 suite against ShangMi suite, default 64 KiB chunks.
fn suites(data: &[u8], iterations: usize) {
    let x = RecipientSecretKey::generate();
    let sm = Sm2SecretKey::generate();
    let meta = Metadata::default();
    let opts = SealOptions::default();
    for (label, recipient) in [
        ("X25519 suite", Recipient::Key(x.public_key())),
        ("ShangMi suite", sm.public_key().recipient()),
    ] {
        let recipients = [recipient];
        let d = best(iterations, || {
            let v = seal_to_vec_for_with_options(&recipients, &meta, &opts, data).expect("seal");
            black_box(v.len());
        });
        report(&format!("seal_to_vec_for, {label}, 64 KiB chunks"), data.len(), d);
        let envelope = seal_to_vec_for_with_options(&recipients, &meta, &opts, data).expect("seal");
        let d = best(iterations, || {
            let (_, v) = if label.starts_with("X25519") {
                open_to_vec_with(&x, &envelope).expect("open")
            } else {
                open_to_vec_with(&sm, &envelope).expect("open")
            };
            black_box(v.len());
        });
        report(&format!("open_to_vec_with, {label}, 64 KiB chunks"), data.len(), d);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let iterations: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let size = mib << 20;
    println!("cloister-seal benchmark: {mib} MiB, best of {iterations}");

    let mut data = vec![0u8; size];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 31 + (i >> 12)) as u8;
    }

    suites(&data, iterations);
    if args.get(3).is_some_and(|a| a == "sm") {
        return;
    }

    for chunk in [64usize << 10, 1 << 20] {
        let mut buf = data.clone();
        let d = best(iterations, || raw_aws_lc(&mut buf, chunk));
        report(&format!("raw AES-256-GCM aws-lc-rs, {} KiB chunks", chunk >> 10), size, d);
        let d = best(iterations, || raw_ring(&mut buf, chunk));
        report(&format!("raw AES-256-GCM ring, {} KiB chunks", chunk >> 10), size, d);
        let d = best(iterations, || raw_rustcrypto(&mut buf, chunk));
        report(&format!("raw AES-256-GCM RustCrypto aes-gcm, {} KiB chunks", chunk >> 10), size, d);
    }

    let key = RecipientSecretKey::generate();
    let recipients = [key.public_key()];
    let meta = Metadata::default();
    for chunk in [64u32 << 10, 1 << 20] {
        let opts = SealOptions::default().with_chunk_size(chunk);
        let label = format!("{} KiB chunks", chunk >> 10);

        // Streaming: &[u8] reader into a discarding writer (one copy in, one out).
        let d = best(iterations, || {
            let mut sink = Sink(0);
            seal_with_options(&recipients, &meta, &opts, data.as_slice(), &mut sink).expect("seal");
            black_box(sink.0);
        });
        report(&format!("seal (stream, Read -> Write), {label}"), size, d);

        let envelope = seal_to_vec_with_options(&recipients, &meta, &opts, &data).expect("seal");
        let d = best(iterations, || {
            let mut sink = Sink(0);
            open(&key, envelope.as_slice(), &mut sink).expect("open");
            black_box(sink.0);
        });
        report(&format!("open (stream, Read -> Write), {label}"), size, d);

        // Streaming into a reused, already-faulted-in Vec (no allocation in the loop).
        let mut out = Vec::with_capacity(size + (size / chunk as usize + 1) * 16 + 4096);
        let d = best(iterations, || {
            out.clear();
            seal_with_options(&recipients, &meta, &opts, data.as_slice(), &mut out).expect("seal");
        });
        report(&format!("seal (stream, into reused Vec), {label}"), size, d);
        let envelope_len = out.len();
        let mut plain = Vec::with_capacity(size);
        let d = best(iterations, || {
            plain.clear();
            open(&key, &out[..envelope_len], &mut plain).expect("open");
        });
        report(&format!("open (stream, into reused Vec), {label}"), size, d);
        assert_eq!(plain, data);
        drop(out);
        drop(plain);

        // In memory, including the allocation of the output (and, for open_to_vec, zeroizing
        // the plaintext when it is dropped).
        let d = best(iterations, || {
            let v = seal_to_vec_with_options(&recipients, &meta, &opts, &data).expect("seal");
            black_box(v.len());
        });
        report(&format!("seal_to_vec (incl. output allocation), {label}"), size, d);
        let d = best(iterations, || {
            let (_, v) = open_to_vec(&key, &envelope).expect("open");
            black_box(v.len());
        });
        report(&format!("open_to_vec (incl. output allocation), {label}"), size, d);
        drop(envelope);
    }
}
