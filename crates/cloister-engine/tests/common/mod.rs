//! Shared by the engine tests: where `scripts/fetch-assets.sh` put the third-party models.

// Each test binary uses what it needs of this module.
#![allow(dead_code)]

use std::path::PathBuf;

/// `CLOISTER_ASSETS`, else `$HOME/.cache/cloister/assets` (the fetch script's default).
pub(crate) fn assets_dir() -> PathBuf {
    match std::env::var_os("CLOISTER_ASSETS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").expect("HOME or CLOISTER_ASSETS must be set");
            PathBuf::from(home).join(".cache/cloister/assets")
        }
    }
}

/// The bytes of a fetched asset, by its path under the assets directory; panics with what to
/// run when it is missing.
pub(crate) fn read_asset(relative: &str) -> Vec<u8> {
    let path = assets_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}). Run `scripts/fetch-assets.sh all` to download the third-party \
             models (or set CLOISTER_ASSETS to the directory holding them).",
            path.display()
        )
    })
}
