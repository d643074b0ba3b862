//! Property tests of the parsers of untrusted bytes: CSV, TSV and JSON-lines records and image
//! headers never panic, whatever the bytes.

use cloister_data::images::{ImageLimits, inspect_image};
use cloister_data::records::parse_all;
use proptest::prelude::*;

proptest! {
    #[test]
    fn record_parsers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_all(&bytes);
    }

    #[test]
    fn delimited_text_of_any_shape(text in "[a-c,\t\"\n\r0-9{}:\\[\\]]{0,200}") {
        let _ = parse_all(text.as_bytes());
    }

    #[test]
    fn image_checks_take_any_bytes(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let limits = ImageLimits { max_side: 64, max_pixels: 4096, max_alloc: 1 << 20 };
        for magic in [&b"\x89PNG\r\n\x1a\n"[..], &b"\xff\xd8\xff"[..], &b""[..]] {
            let mut bytes = magic.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = inspect_image(&bytes, &limits);
        }
    }
}
