//! Looking for plaintext where only ciphertext may be: every file under a directory is searched
//! for samples of each secret, raw and in the encodings a leak would likely take.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// A secret to look for: a name and distinctive samples of it (each at least 24 bytes).
pub struct Secret<'a> {
    /// What it is ("data set", "model", …).
    pub name: &'a str,
    /// Samples cut from it.
    pub samples: Vec<Vec<u8>>,
}

impl<'a> Secret<'a> {
    /// Cuts up to `count` samples of `len` bytes, spread over `bytes`.
    pub fn sampled(name: &'a str, bytes: &[u8], count: usize, len: usize) -> Self {
        let len = len.min(bytes.len());
        let step = (bytes.len() - len) / count.max(1);
        let samples = (0..count).map(|i| bytes[i * step..i * step + len].to_vec()).collect();
        Secret { name, samples }
    }
}

/// A place where a secret was found.
#[derive(Debug)]
pub struct Finding {
    /// The file.
    pub path: PathBuf,
    /// Which secret.
    pub secret: String,
    /// In what encoding.
    pub encoding: &'static str,
}

/// Searches every regular file under `root` for the secrets, raw, hex (both cases) and base64
/// (standard and url-safe, at all three alignments).
pub fn scan(root: &Path, secrets: &[Secret<'_>]) -> Result<Vec<Finding>> {
    let mut needles: Vec<(String, &'static str, Vec<u8>)> = Vec::new();
    for secret in secrets {
        for sample in &secret.samples {
            needles.push((secret.name.to_owned(), "raw", sample.clone()));
            needles.push((secret.name.to_owned(), "hex", hex::encode(sample).into_bytes()));
            needles.push((secret.name.to_owned(), "HEX", hex::encode_upper(sample).into_bytes()));
            for skip in 0..3 {
                let part = &sample[skip..];
                // Drop the first and last characters: they depend on neighbouring bytes.
                for (encoding, text) in
                    [("base64", STANDARD.encode(part)), ("base64url", URL_SAFE_NO_PAD.encode(part))]
                {
                    let trimmed = text.trim_end_matches('=');
                    if trimmed.len() > 8 {
                        let core = &trimmed[1..trimmed.len() - 2];
                        needles.push((secret.name.to_owned(), encoding, core.as_bytes().to_vec()));
                    }
                }
            }
        }
    }
    let mut findings = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path())?;
                for (name, encoding, needle) in &needles {
                    if contains(&bytes, needle) {
                        findings.push(Finding {
                            path: entry.path(),
                            secret: name.clone(),
                            encoding,
                        });
                    }
                }
            }
        }
    }
    Ok(findings)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // Model weights put hundreds of megabytes under the compute side's directory: a linear
    // window scan per needle would take minutes, memmem takes milliseconds.
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_raw_hex_and_base64_leaks_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"17.99,10.38,122.8,1001,0.1184,0.2776,0.3001".to_vec();
        std::fs::write(dir.path().join("raw"), [b"xx".as_slice(), &secret].concat()).unwrap();
        std::fs::write(dir.path().join("hex"), hex::encode(&secret)).unwrap();
        std::fs::write(
            dir.path().join("b64"),
            format!("k={}", STANDARD.encode([b"q".as_slice(), &secret].concat())),
        )
        .unwrap();
        std::fs::write(dir.path().join("clean"), b"nothing to see here at all, really").unwrap();
        let found = scan(dir.path(), &[Secret::sampled("data", &secret, 1, 40)]).unwrap();
        let files: std::collections::BTreeSet<String> = found
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["b64", "hex", "raw"].iter().map(|s| s.to_string()).collect());
    }
}
