//! Records the git commit the binary is built from (`CLOISTER_GIT_COMMIT`, shown by
//! `cloister_build_info`): the environment's value when set (a release build from a tarball),
//! else `git rev-parse HEAD` when the sources are a git checkout and git is installed, else
//! `unknown`. Never touches the network.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLOISTER_GIT_COMMIT");
    let commit = match std::env::var("CLOISTER_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            let commit = git(&["rev-parse", "HEAD"]);
            if commit.is_some() {
                // A new commit or a checkout moves HEAD or the branch it names.
                for path in ["HEAD", "packed-refs"].into_iter().map(str::to_owned).chain(git(&[
                    "symbolic-ref",
                    "-q",
                    "HEAD",
                ])) {
                    // Only files that exist: a missing one would rerun this at every build.
                    if let Some(file) = git(&["rev-parse", "--git-path", &path])
                        && std::path::Path::new(&file).exists()
                    {
                        println!("cargo:rerun-if-changed={file}");
                    }
                }
            }
            commit.unwrap_or_else(|| "unknown".to_owned())
        }
    };
    let valid = commit.len() <= 64 && commit.bytes().all(|b| b.is_ascii_alphanumeric());
    println!("cargo:rustc-env=CLOISTER_GIT_COMMIT={}", if valid { &commit } else { "unknown" });
}
