//! Repository tidiness rules that review would otherwise have to remember: every Rust file opens
//! with a `//!` line saying what it is for, every crate folder is named after its package, and
//! only cloister-tee-sys escapes the workspace lints that forbid unsafe code.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != "corpus" && name != "artifacts" {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "fuzz", "python"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files under {}", files.len(), root.display());
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` opening line:\n{}", missing.join("\n"));
}

#[test]
fn every_crate_folder_is_named_after_its_package() {
    let crates = workspace_root().join("crates");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).unwrap().flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let folder = entry.file_name().to_string_lossy().into_owned();
        assert!(
            text.contains(&format!("name = \"{folder}\"")),
            "{} does not declare `name = \"{folder}\"`",
            manifest.display()
        );
        assert!(text.contains("description = "), "{} has no description", manifest.display());
        checked += 1;
    }
    assert!(checked >= 9, "checked only {checked} crates");
}

#[test]
fn only_cloister_tee_sys_may_contain_unsafe_code() {
    // The workspace lints forbid `unsafe`; a crate escapes them only by not inheriting them.
    // cloister-tee-sys (the TEE device ioctls) is the one exception, with `unsafe_code = "deny"`
    // and the allowance on a single module.
    let crates = workspace_root().join("crates");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).unwrap().flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let inherits = text.contains("[lints]\nworkspace = true");
        if entry.file_name() == "cloister-tee-sys" {
            assert!(!inherits && text.contains("unsafe_code = \"deny\""), "{}", manifest.display());
        } else {
            assert!(
                inherits,
                "{} does not inherit the workspace lints (`[lints] workspace = true`), which \
                 forbid unsafe code; only cloister-tee-sys may contain unsafe code",
                manifest.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "checked only {checked} crates");
}
