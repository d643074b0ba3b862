//! CSV, TSV and JSON-lines record parsing of the data pipeline (`cloister data ingest`) over
//! arbitrary bytes: every record or rejection, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cloister_data::internal::parse_all(data);
});
