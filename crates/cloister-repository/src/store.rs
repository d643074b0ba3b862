//! [`Repository`]: the object-store layout of models, and import, listing, deletion and fetching.
//!
//! Layout under the repository root:
//!
//! ```text
//! models/{name}/{version}/manifest.jws                     the owner's signed manifest
//! models/{name}/{version}/files/{sealed_sha256}.sealed     one sealed envelope per model file
//! models/{name}/{version}/deleted                          tombstone: the version was deleted
//! ```
//!
//! Sealed objects are named by their own SHA-256, so two concurrent imports of one version never
//! overwrite each other's objects: whichever manifest is written first wins, and it names
//! exactly the objects its import wrote. The manifest is written last and only if absent
//! (`PutMode::Create`), so a version is visible only once complete and never changes. A deleted
//! version leaves a tombstone and is never imported again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use cloister_seal::{BrokerRecipient, Metadata};
use cloister_sign::SigningKey;
use cloister_types::Hex;
use cloister_types::model::{
    LicenceTerms, ModelFile, ModelManifest, ModelMetadata, check_model_name,
};
use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::RepoError;
use crate::manifest::{VerifiedManifest, check_file_path, sign_manifest, verify_manifest};

/// Sealed objects larger than this are uploaded in parts of this size (S3 multipart upload).
pub const UPLOAD_PART_SIZE: usize = 8 << 20;

/// Media type recorded in every sealed model file's envelope.
pub const SEALED_CONTENT_TYPE: &str = "application/vnd.cloister.model-file";

/// A model to import: what the owner states and the plaintext files.
pub struct NewModel {
    /// The model's name (`check_model_name`).
    pub name: String,
    /// Its version (`check_model_name`); a version is imported once.
    pub version: String,
    /// What was read from the files (`cloister_engine::inspect`).
    pub metadata: ModelMetadata,
    /// The owner's terms.
    pub licence: LicenceTerms,
    /// Relative path → plaintext bytes, in any order (zeroized when dropped).
    pub files: Vec<(String, Zeroizing<Vec<u8>>)>,
    /// The key-broker key every file is sealed to.
    pub recipient: BrokerRecipient,
}

/// Progress of an import, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub enum ImportProgress<'a> {
    /// A file is about to be sealed.
    Sealing {
        /// The file.
        path: &'a str,
        /// Its plaintext size.
        bytes: u64,
    },
    /// Part of a file's sealed object was written.
    Uploaded {
        /// The file.
        path: &'a str,
        /// Sealed bytes written so far.
        done: u64,
        /// Sealed bytes in all.
        total: u64,
    },
}

/// A successful import.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The manifest as signed.
    pub manifest: ModelManifest,
    /// The compact JWS stored as `manifest.jws`.
    pub jws: String,
}

/// A model repository in an object store.
#[derive(Clone, Debug)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    location: String,
}

impl Repository {
    /// Opens a repository: a local directory (a path or `file://` URL; created when missing) or
    /// `s3://bucket[/prefix]`, configured from the environment (`AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`, …).
    pub fn open(location: &str) -> Result<Repository, RepoError> {
        Self::open_with_s3_options(location, std::iter::empty::<(&str, &str)>())
    }

    /// [`Repository::open`] with S3 settings on top of the environment's, as object_store's
    /// configuration keys (`aws_endpoint`, `aws_access_key_id`, `aws_secret_access_key`,
    /// `aws_region`, `aws_allow_http`, …). Ignored for local repositories.
    pub fn open_with_s3_options<K: AsRef<str>, V: Into<String>>(
        location: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Repository, RepoError> {
        let bad = |reason: String| RepoError::Location { location: location.to_owned(), reason };
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket after s3://".into()));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, value) in options {
                let key: AmazonS3ConfigKey = key
                    .as_ref()
                    .parse()
                    .map_err(|e| bad(format!("unknown S3 setting {:?}: {e}", key.as_ref())))?;
                builder = builder.with_config(key, value);
            }
            let s3 = builder.build().map_err(|e| bad(format!("S3 configuration: {e}")))?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                let prefix = Path::parse(prefix).map_err(|e| bad(format!("prefix: {e}")))?;
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Repository { store, location: location.to_owned() });
        }
        let dir = match location.strip_prefix("file://") {
            Some(path) => path,
            None if location.contains("://") => {
                return Err(bad("use a directory, a file:// URL or s3://bucket[/prefix]".into()));
            }
            None => location,
        };
        if dir.is_empty() {
            return Err(bad("the directory is empty".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| bad(format!("creating the directory: {e}")))?;
        let local = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| bad(format!("opening the directory: {e}")))?
            .with_automatic_cleanup(true);
        Ok(Repository { store: Arc::new(local), location: location.to_owned() })
    }

    /// A repository over any object store (tests, other backends).
    pub fn from_store(store: Arc<dyn ObjectStore>, location: &str) -> Repository {
        Repository { store, location: location.to_owned() }
    }

    /// Where the repository lives, as given to [`Repository::open`].
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The underlying object store (for tooling and tests).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// `models/{name}/{version}/manifest.jws`.
    pub fn manifest_path(name: &str, version: &str) -> Path {
        Path::from(format!("models/{name}/{version}/manifest.jws"))
    }

    /// `models/{name}/{version}/files/{sealed_sha256}.sealed`.
    pub fn file_path(name: &str, version: &str, file: &ModelFile) -> Path {
        Path::from(format!("models/{name}/{version}/files/{}.sealed", file.sealed_sha256))
    }

    fn tombstone_path(name: &str, version: &str) -> Path {
        Path::from(format!("models/{name}/{version}/deleted"))
    }

    async fn exists(&self, path: &Path) -> Result<bool, RepoError> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(RepoError::store(format!("looking up {path}"))(e)),
        }
    }

    /// Imports a model: checks the names and paths, seals every file to the broker recipient,
    /// writes the sealed objects, signs the manifest with `owner` and writes it last, only if
    /// this version does not exist yet.
    pub async fn import(
        &self,
        model: NewModel,
        owner: &SigningKey,
        now: u64,
    ) -> Result<Imported, RepoError> {
        self.import_with_progress(model, owner, now, &mut |_| {}).await
    }

    /// [`Repository::import`], reporting progress.
    pub async fn import_with_progress(
        &self,
        model: NewModel,
        owner: &SigningKey,
        now: u64,
        progress: &mut (dyn FnMut(ImportProgress<'_>) + Send),
    ) -> Result<Imported, RepoError> {
        let NewModel { name, version, metadata, licence, mut files, recipient } = model;
        check_model_name("model name", &name)?;
        check_model_name("model version", &version)?;
        let id = format!("{name}@{version}");
        if files.is_empty() {
            return Err(RepoError::NoFiles { model: id });
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, _) in &files {
            check_file_path(path)?;
        }
        if let Some(w) = files.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(RepoError::BadFilePath { path: w[0].0.clone(), reason: "it repeats" });
        }
        self.check_absent(&name, &version).await?;

        let owner_text = owner.public_key().to_text();
        let mut entries = Vec::with_capacity(files.len());
        for (path, plaintext) in &files {
            progress(ImportProgress::Sealing { path, bytes: plaintext.len() as u64 });
            let sealed = cloister_seal::seal_to_vec_for(
                &[recipient.recipient()],
                &sealed_metadata(&owner_text, &name, &version, path),
                plaintext,
            )
            .map_err(|source| RepoError::Seal {
                model: id.clone(),
                path: path.clone(),
                source,
            })?;
            let entry = ModelFile {
                path: path.clone(),
                sha256: Hex(Sha256::digest(plaintext.as_slice()).to_vec()),
                size: plaintext.len() as u64,
                sealed_sha256: Hex(Sha256::digest(&sealed).to_vec()),
            };
            let target = Self::file_path(&name, &version, &entry);
            self.upload(&target, Bytes::from(sealed), path, progress).await?;
            entries.push(entry);
        }
        drop(files);

        let digest = ModelManifest::files_digest(&entries)
            .map_err(|source| RepoError::Digest { model: id.clone(), source })?;
        let manifest = ModelManifest {
            name: name.clone(),
            version: version.clone(),
            digest,
            files: entries,
            metadata,
            licence,
            owner: owner_text.clone(),
            sealed_to: recipient.to_text(),
        };
        let jws = sign_manifest(&manifest, owner, now)?;
        // Refuse to store what would not verify (a clock far off, a bug): fail before writing.
        verify_manifest(&jws, &owner.public_key(), now)?;

        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let path = Self::manifest_path(&name, &version);
        match self.store.put_opts(&path, PutPayload::from(jws.clone().into_bytes()), options).await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(RepoError::VersionExists { model: id });
            }
            Err(e) => return Err(RepoError::store(format!("writing the manifest of {id}"))(e)),
        }
        tracing::info!(model = %id, digest = %manifest.digest, "model imported");
        Ok(Imported { manifest, jws })
    }

    async fn check_absent(&self, name: &str, version: &str) -> Result<(), RepoError> {
        let id = format!("{name}@{version}");
        if self.exists(&Self::tombstone_path(name, version)).await? {
            return Err(RepoError::VersionDeleted { model: id });
        }
        if self.exists(&Self::manifest_path(name, version)).await? {
            return Err(RepoError::VersionExists { model: id });
        }
        Ok(())
    }

    async fn upload(
        &self,
        target: &Path,
        sealed: Bytes,
        path: &str,
        progress: &mut (dyn FnMut(ImportProgress<'_>) + Send),
    ) -> Result<(), RepoError> {
        let total = sealed.len() as u64;
        let action = || format!("writing {target}");
        if sealed.len() <= UPLOAD_PART_SIZE {
            self.store
                .put(target, PutPayload::from(sealed))
                .await
                .map_err(RepoError::store(action()))?;
            progress(ImportProgress::Uploaded { path, done: total, total });
            return Ok(());
        }
        let mut upload =
            self.store.put_multipart(target).await.map_err(RepoError::store(action()))?;
        let mut done = 0usize;
        while done < sealed.len() {
            let end = (done + UPLOAD_PART_SIZE).min(sealed.len());
            if let Err(e) = upload.put_part(PutPayload::from(sealed.slice(done..end))).await {
                // Best effort: the error that matters is the part's.
                let _ = upload.abort().await;
                return Err(RepoError::store(action())(e));
            }
            done = end;
            progress(ImportProgress::Uploaded { path, done: done as u64, total });
        }
        upload.complete().await.map_err(RepoError::store(action()))?;
        Ok(())
    }

    /// Every `(name, version)` with a manifest and no tombstone.
    async fn visible_versions(
        &self,
        prefix: &Path,
    ) -> Result<BTreeSet<(String, String)>, RepoError> {
        let objects: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(RepoError::store(format!("listing {prefix}")))?;
        let mut manifests = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        for object in objects {
            let parts: Vec<_> = object.location.parts().collect();
            if let [models, name, version, leaf] = parts.as_slice() {
                if models.as_ref() != "models" {
                    continue;
                }
                let key = (name.as_ref().to_owned(), version.as_ref().to_owned());
                match leaf.as_ref() {
                    "manifest.jws" => {
                        manifests.insert(key);
                    }
                    "deleted" => {
                        deleted.insert(key);
                    }
                    _ => {}
                }
            }
        }
        Ok(manifests.difference(&deleted).cloned().collect())
    }

    /// The names of the models with at least one version, sorted.
    pub async fn list(&self) -> Result<Vec<String>, RepoError> {
        let versions = self.visible_versions(&Path::from("models")).await?;
        let names: BTreeSet<String> = versions.into_iter().map(|(name, _)| name).collect();
        Ok(names.into_iter().collect())
    }

    /// The versions of `name`, oldest-looking first (numeric parts compared as numbers).
    pub async fn versions(&self, name: &str) -> Result<Vec<String>, RepoError> {
        check_model_name("model name", name)?;
        let versions = self.visible_versions(&Path::from(format!("models/{name}"))).await?;
        let mut versions: Vec<String> = versions.into_iter().map(|(_, v)| v).collect();
        versions.sort_by(|a, b| version_order(a, b));
        Ok(versions)
    }

    /// The manifest JWS of `name@version`, unverified (see [`verify_manifest`] and
    /// [`Repository::verified_manifest`]).
    pub async fn manifest(&self, name: &str, version: &str) -> Result<String, RepoError> {
        check_model_name("model name", name)?;
        check_model_name("model version", version)?;
        let id = format!("{name}@{version}");
        if self.exists(&Self::tombstone_path(name, version)).await? {
            return Err(RepoError::NotFound { model: id });
        }
        let path = Self::manifest_path(name, version);
        let bytes = match self.store.get(&path).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(RepoError::NotFound { model: id });
            }
            Err(e) => return Err(RepoError::store(format!("reading the manifest of {id}"))(e)),
        };
        String::from_utf8(bytes.to_vec())
            .map_err(|_| RepoError::ManifestFormat(format!("the manifest of {id} is not UTF-8")))
    }

    /// The manifest of `name@version`, verified with the owner's key at `now` and checked to be
    /// the one for this name and version.
    pub async fn verified_manifest(
        &self,
        name: &str,
        version: &str,
        owner: &cloister_sign::VerifyingKey,
        now: u64,
    ) -> Result<VerifiedManifest, RepoError> {
        let jws = self.manifest(name, version).await?;
        let verified = verify_manifest(&jws, owner, now)?;
        verified.expect_id(name, version)?;
        Ok(verified)
    }

    /// Deletes `name@version`: leaves a tombstone (the version is never imported again), removes
    /// the manifest (the version disappears), then every sealed object under it.
    pub async fn delete(&self, name: &str, version: &str) -> Result<(), RepoError> {
        let jws = self.manifest(name, version).await?;
        let id = format!("{name}@{version}");
        let tombstone = Hex(Sha256::digest(jws.as_bytes()).to_vec()).to_string() + "\n";
        self.store
            .put(&Self::tombstone_path(name, version), PutPayload::from(tombstone.into_bytes()))
            .await
            .map_err(RepoError::store(format!("marking {id} deleted")))?;
        let manifest = Self::manifest_path(name, version);
        match self.store.delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(RepoError::store(format!("deleting the manifest of {id}"))(e)),
        }
        let files = Path::from(format!("models/{name}/{version}/files"));
        let objects: Vec<_> = self
            .store
            .list(Some(&files))
            .try_collect()
            .await
            .map_err(RepoError::store(format!("listing {files}")))?;
        for object in objects {
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(RepoError::store(format!("deleting {}", object.location))(e));
                }
            }
        }
        tracing::info!(model = %id, "model deleted");
        Ok(())
    }

    /// Downloads every sealed file of a verified manifest and checks each one's SHA-256 against
    /// the manifest.
    pub async fn fetch_sealed(
        &self,
        verified: &VerifiedManifest,
    ) -> Result<Vec<(ModelFile, Bytes)>, RepoError> {
        let manifest = verified.manifest();
        let id = manifest.model_id();
        let mut out = Vec::with_capacity(manifest.files.len());
        for file in &manifest.files {
            let path = Self::file_path(&manifest.name, &manifest.version, file);
            let bytes = match self.store.get(&path).await {
                Ok(result) => result.bytes().await,
                Err(e) => Err(e),
            };
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(RepoError::SealedMissing { model: id, path: file.path.clone() });
                }
                Err(e) => return Err(RepoError::store(format!("reading {path}"))(e)),
            };
            if Sha256::digest(&bytes).as_slice() != file.sealed_sha256.as_bytes() {
                return Err(RepoError::SealedMismatch { model: id, path: file.path.clone() });
            }
            out.push((file.clone(), bytes));
        }
        Ok(out)
    }
}

/// The envelope metadata of a sealed model file: its object id names the owner, the model and
/// the path, so an envelope moved to another file's place is refused when opened, and so is a
/// manifest signed by anyone but the owner that sealed the weights (otherwise a stranger could
/// sign a manifest over the owner's sealed files, with a serving policy of its own, and have an
/// enclave the broker trusts serve them).
pub(crate) fn sealed_metadata(owner: &str, name: &str, version: &str, path: &str) -> Metadata {
    Metadata {
        content_type: SEALED_CONTENT_TYPE.to_owned(),
        object_id: sealed_object_id(owner, name, version, path),
        attributes: BTreeMap::new(),
    }
}

/// `model:{owner}:{name}@{version}/{path}`.
pub(crate) fn sealed_object_id(owner: &str, name: &str, version: &str, path: &str) -> String {
    format!("model:{owner}:{name}@{version}/{path}")
}

/// Orders versions by their `.`/`-`/`_`-separated parts, numeric parts as numbers.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<(u64, String)> {
        s.split(['.', '-', '_'])
            .map(|p| match p.parse::<u64>() {
                Ok(n) => (n, String::new()),
                Err(_) => (u64::MAX, p.to_owned()),
            })
            .collect()
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["10", "2", "1.10", "1.9", "1.9.1", "beta", "1"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["1", "1.9", "1.9.1", "1.10", "2", "10", "beta"]);
    }

    #[test]
    fn locations_are_checked() {
        assert!(Repository::open("http://example.invalid/x").is_err());
        assert!(Repository::open("").is_err());
        assert!(Repository::open("s3://").is_err());
    }
}
