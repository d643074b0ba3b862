//! Preprocessing pipeline files (`cloister data preprocess --pipeline`) parsed from arbitrary
//! bytes: a pipeline or a refusal, never a panic; every parsed step has a digest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(pipeline) = cloister_data::internal::Pipeline::parse(text) {
        assert!(!pipeline.steps.is_empty());
        for step in &pipeline.steps {
            assert_eq!(step.sha256().len(), 64);
        }
    }
});
