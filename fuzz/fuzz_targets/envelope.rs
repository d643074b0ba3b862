//! Fuzz target: arbitrary bytes through `read_header`, the streaming `open` and `open_to_vec`
//! with a fixed key. None of them may panic; streaming and in-memory opening must agree.
#![no_main]

use cloister_seal::{RecipientSecretKey, open, open_to_vec, read_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_header(data);
    let key = RecipientSecretKey::from_bytes(&[0x42; 32]);
    let mut out = Vec::new();
    let streamed = open(&key, data, &mut out);
    let in_memory = open_to_vec(&key, data);
    assert_eq!(streamed.is_ok(), in_memory.is_ok());
    if let (Ok(_), Ok((_, pt))) = (&streamed, &in_memory) {
        assert_eq!(out.as_slice(), pt.as_slice());
    }
});
