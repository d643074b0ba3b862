//! Fuzz target: arbitrary bytes as a unified-evidence JSON document, then through `verify` with
//! one trusted sim platform key. Nothing may panic, and nothing random may verify.
#![no_main]

use cloister_types::UnifiedEvidence;
use cloister_verify::{SimPlatformPublicKey, TrustAnchors};
use libfuzzer_sys::fuzz_target;

// A valid public key whose secret half was discarded: random input cannot carry a signature by it.
const KEY: &str = "cloister-sim-platform-p256:AnyTSDnUtth52a3eCC6bf1YmiOnVi3MoH_tac4i0vJX3";

fuzz_target!(|data: &[u8]| {
    let Ok(evidence) = serde_json::from_slice::<UnifiedEvidence>(data) else { return };
    let key: SimPlatformPublicKey = KEY.parse().expect("the constant is a valid key");
    let anchors = TrustAnchors::new().with_sim_platform_key(key);
    assert!(cloister_verify::verify(&evidence, &anchors, 1_700_000_000).is_err());
});
