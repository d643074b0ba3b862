//! Fuzz target: arbitrary bytes through the virtcca evidence parser, and through the virtcca
//! driver with no collateral. Nothing may panic. (CI seeds it with the secGear sample, which does
//! verify against its own RAK, so the outcome itself is not asserted here; the driver's tests
//! check that mutations are refused.)
#![no_main]

use cloister_types::TeeKind;
use cloister_verify::{Collateral, Inputs, TrustAnchors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloister_verify::internal::parse_vendor_evidence(TeeKind::VirtCca, data);
    let (collateral, anchors) = (Collateral::new(), TrustAnchors::new());
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: 1_750_000_000 };
    let _ = cloister_verify::verify_vendor_evidence(TeeKind::VirtCca, data, &inputs);
});
