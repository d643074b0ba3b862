//! Fuzz target: arbitrary bytes through the simulated TEE's evidence parser. It must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cloister_verify::internal::parse_sim_evidence(data);
});
