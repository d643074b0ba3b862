//! Fuzz target: arbitrary bytes through the psa token and claims parsers, and through the psa
//! driver with a test IAK of each kind (a P-256 JWK and a symmetric JWK). Nothing may panic.
//! (CI seeds it with real tokens; the driver's tests check that mutations are refused.)
#![no_main]

use cloister_types::TeeKind;
use cloister_verify::{Collateral, Inputs, TrustAnchors};
use libfuzzer_sys::fuzz_target;

/// The public key of the P-256 scalar 0x1111…11 (the driver tests' synthetic IAK), and a
/// 32-byte symmetric key of zeros.
const ES_IAK: &str = r#"{"kty":"EC","crv":"P-256","x":"AhfmF_C2RDkoJ4-WmZ5pojpPLBUr321s32bluAKC1O0","y":"GUp968uXcS0t2jyoWqh2Wlb0X8dYWZZS8ol8ZTBuV5Q"}"#;
const HS_IAK: &str = r#"{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#;

fuzz_target!(|data: &[u8]| {
    cloister_verify::internal::parse_vendor_evidence(TeeKind::Psa, data);
    let _ = cloister_verify::internal::check_psa_claims(data);
    let collateral = Collateral::new();
    let anchors = TrustAnchors::new()
        .with_root(TeeKind::Psa, ES_IAK.as_bytes().to_vec())
        .with_root(TeeKind::Psa, HS_IAK.as_bytes().to_vec());
    let inputs = Inputs { collateral: &collateral, anchors: &anchors, now_unix: 1_750_000_000 };
    let _ = cloister_verify::verify_vendor_evidence(TeeKind::Psa, data, &inputs);
});
