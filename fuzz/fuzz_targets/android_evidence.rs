//! Fuzz target: arbitrary bytes through the Android key attestation parsers (certificate chain
//! encodings, KeyDescription, status list), and through the android driver with no anchors.
//! Nothing may panic. (Seeded with real chains, which do not verify here without a time near
//! their creation; the driver's tests check that mutations are refused.)
#![no_main]

use cloister_types::TeeKind;
use cloister_verify::{Collateral, Inputs, TrustAnchors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cloister_verify::internal::parse_vendor_evidence(TeeKind::Android, data);
    let (collateral, anchors) = (Collateral::new(), TrustAnchors::new());
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: 1_750_000_000 };
    let _ = cloister_verify::verify_vendor_evidence(TeeKind::Android, data, &inputs);
});
