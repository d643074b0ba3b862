//! Fuzz target: arbitrary bytes as a TDX CC event log. The replay must not panic, and a log that
//! replays must replay the same with padding after it (the CCEL log area is padded with 0xFF).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(replay) = cloister_measure::tdx::replay(data) {
        assert!(replay.log_len <= data.len());
        let mut padded = data[..replay.log_len].to_vec();
        padded.extend_from_slice(&[0xFF; 64]);
        assert_eq!(cloister_measure::tdx::replay(&padded).as_ref(), Ok(&replay));
    }
});
