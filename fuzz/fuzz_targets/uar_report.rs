//! Fuzz target: arbitrary bytes as a Unified Attestation Report. Reading must never panic, and a
//! report that reads must give the same results when compared with no verified components.
#![no_main]

use cloister_types::uar;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = uar::looks_like_report(data);
    if let Ok(report) = uar::from_report(data) {
        let _ = uar::differences(&report, &Default::default());
    }
});
