//! Fuzz target: the header parser on arbitrary bytes, both as an exact header and as a prefix.
//! Whatever parses must re-serialize to the same bytes (the encoding is canonical).
#![no_main]

use cloister_seal::internal::{parse_header, parse_header_prefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse_header(data) {
        assert_eq!(h.as_bytes(), data);
    }
    if let Ok((h, len)) = parse_header_prefix(data) {
        assert_eq!(h.as_bytes(), &data[..len]);
        assert_eq!(h.len(), len);
    }
});
