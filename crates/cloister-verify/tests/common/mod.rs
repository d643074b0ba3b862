//! Shared helpers for the verifier's integration tests: where the real evidence vectors live.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

pub(crate) mod ocsp;
pub(crate) mod p521;
pub(crate) mod pki;
pub(crate) mod rim;

/// The vectors folder: `$CLOISTER_VECTORS`, or `../shared/vectors` beside the checkout.
pub(crate) fn vectors_dir() -> PathBuf {
    match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    }
}

/// Reads one vector file, e.g. `vector("snp/trustee_test-report.bin")`.
pub(crate) fn vector(relative: &str) -> Vec<u8> {
    let path = vectors_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read vector {}: {e}", path.display()))
}

/// Parses an RFC 3339 time into unix seconds.
pub(crate) fn at(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

/// The golden-claims folder of this crate.
pub(crate) fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `claims` with the golden file `tests/golden/NAME.json`. With
/// `CLOISTER_BLESS=1` the file is (re)written instead; review the diff before committing.
pub(crate) fn assert_golden(name: &str, claims: &cloister_types::Claims) {
    let path = golden_dir().join(format!("{name}.json"));
    let actual = serde_json::to_string_pretty(claims).unwrap() + "\n";
    if std::env::var_os("CLOISTER_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("golden file {} missing ({e}); run with CLOISTER_BLESS=1", path.display())
    });
    assert_eq!(actual, expected, "claims differ from golden file {}", path.display());
}
