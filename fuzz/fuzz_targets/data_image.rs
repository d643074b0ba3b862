//! The data pipeline's image check (`cloister data ingest` of an image folder) over arbitrary
//! bytes, with small limits: a size, a refusal or an unreadable image, never a panic or an
//! allocation past the limits.
#![no_main]

use cloister_data::images::ImageLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ImageLimits { max_side: 256, max_pixels: 65_536, max_alloc: 4 << 20 };
    let _ = cloister_data::internal::inspect_image(data, &limits);
});
