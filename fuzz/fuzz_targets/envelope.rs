//! Fuzz target: arbitrary bytes through `read_header`, the streaming `open` and `open_to_vec`
//! with a fixed key of each suite (X25519 and SM2, so both suites' recipient unwrapping and
//! body opening are reached). None of them may panic; streaming and in-memory opening must
//! agree.
#![no_main]

use cloister_seal::{
    OpeningKey, RecipientSecretKey, Sm2SecretKey, open_to_vec_with, open_with, read_header,
};
use libfuzzer_sys::fuzz_target;

fn check(key: OpeningKey<'_>, data: &[u8]) {
    let mut out = Vec::new();
    let streamed = open_with(key, data, &mut out);
    let in_memory = open_to_vec_with(key, data);
    assert_eq!(streamed.is_ok(), in_memory.is_ok());
    if let (Ok(_), Ok((_, pt))) = (&streamed, &in_memory) {
        assert_eq!(out.as_slice(), pt.as_slice());
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = read_header(data);
    let key = RecipientSecretKey::from_bytes(&[0x42; 32]);
    check(OpeningKey::from(&key), data);
    if let Ok(sm2) = Sm2SecretKey::from_bytes(&[0x42; 32]) {
        check(OpeningKey::from(&sm2), data);
    }
});
