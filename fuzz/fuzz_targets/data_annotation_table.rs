//! The normalised annotation table (`annotations.jsonl`) read back and merged
//! (`cloister data annotations merge`) over arbitrary bytes: a merge or an error, never a panic.
#![no_main]

use cloister_data::annotate::{Adjudication, merge, read_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(table) = read_table("fuzz", text) else { return };
    // Span items are compared position by position: keep them small enough for the fuzzer's
    // memory limit (the merge itself refuses items over `MAX_POSITIONS`).
    if table.rows.iter().any(|(_, row)| row.length.is_some_and(|n| n > 4096)) {
        return;
    }
    for rule in [Adjudication::Majority, Adjudication::Unanimous] {
        let _ = merge(std::slice::from_ref(&table), &rule);
    }
});
