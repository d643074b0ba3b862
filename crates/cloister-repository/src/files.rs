//! Opening a model's sealed files with the key the broker released: the integrity check the
//! worker runs before every load.

use std::collections::BTreeMap;

use bytes::Bytes;
use cloister_seal::RecipientSecretKey;
use cloister_types::model::ModelFile;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::RepoError;
use crate::manifest::VerifiedManifest;
use crate::store::sealed_object_id;

/// A model's plaintext files, each checked against the verified manifest (SHA-256 and size).
/// The buffers are zeroized when dropped.
pub struct ModelFiles {
    manifest: VerifiedManifest,
    files: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl ModelFiles {
    /// The manifest the files were checked against.
    pub fn manifest(&self) -> &VerifiedManifest {
        &self.manifest
    }

    /// One file's bytes by its path in the model (`model.gguf`, `config.json`, …).
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|b| b.as_slice())
    }

    /// The files' paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Every file, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(p, b)| (p.as_str(), b.as_slice()))
    }

    /// Takes the files out (still zeroized on drop).
    pub fn into_files(self) -> BTreeMap<String, Zeroizing<Vec<u8>>> {
        self.files
    }
}

impl std::fmt::Debug for ModelFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: names and sizes only.
        f.debug_struct("ModelFiles")
            .field("model", &self.manifest.model_id())
            .field("files", &self.files.iter().map(|(p, b)| (p, b.len())).collect::<Vec<_>>())
            .finish()
    }
}

/// Opens every sealed file of `verified` with `secret` (the key-broker key the manifest names,
/// as released to this enclave) and checks each one: the sealed object's SHA-256, the envelope's
/// label (owner, model, version and path), the plaintext's SHA-256 and size, all against the manifest.
/// `sealed` must hold exactly the manifest's files (as [`crate::Repository::fetch_sealed`]
/// returns them).
pub fn open_files(
    verified: &VerifiedManifest,
    sealed: Vec<(ModelFile, Bytes)>,
    secret: &RecipientSecretKey,
) -> Result<ModelFiles, RepoError> {
    let manifest = verified.manifest();
    let model = manifest.model_id();
    if sealed.len() != manifest.files.len() {
        return Err(RepoError::FileSet {
            model,
            reason: format!(
                "{} sealed files for {} manifest files",
                sealed.len(),
                manifest.files.len()
            ),
        });
    }
    let mut files = BTreeMap::new();
    for (expected, (given, bytes)) in manifest.files.iter().zip(sealed) {
        let path = expected.path.clone();
        if given != *expected {
            return Err(RepoError::FileSet {
                model,
                reason: format!("expected file {path}, got {}", given.path),
            });
        }
        if Sha256::digest(&bytes).as_slice() != expected.sealed_sha256.as_bytes() {
            return Err(RepoError::SealedMismatch { model, path });
        }
        let (header, plaintext) = cloister_seal::open_to_vec(secret, &bytes).map_err(|source| {
            RepoError::Open { model: model.clone(), path: path.clone(), source }
        })?;
        let label = &header.metadata().object_id;
        if *label != sealed_object_id(&manifest.owner, &manifest.name, &manifest.version, &path) {
            return Err(RepoError::WrongLabel { model, path, label: label.clone() });
        }
        if plaintext.len() as u64 != expected.size {
            return Err(RepoError::PlaintextMismatch { model, path, what: "size" });
        }
        if Sha256::digest(plaintext.as_slice()).as_slice() != expected.sha256.as_bytes() {
            return Err(RepoError::PlaintextMismatch { model, path, what: "SHA-256" });
        }
        files.insert(path, plaintext);
    }
    Ok(ModelFiles { manifest: verified.clone(), files })
}
