//! The model repository: model owners' signed manifests and sealed weights, stored through the
//! `object_store` crate (a local directory by default, S3 when configured).
//!
//! A model version is a set of files sealed to a key-broker key (so only an enclave the owner's
//! release policy admits can open them) plus a manifest the owner signs: name, version, the
//! plaintext and sealed SHA-256 of every file, the model digest over them, the metadata read at
//! import and the licence terms. Versions are immutable: the manifest is written last and only
//! if absent, and a deleted version is never reused.
//!
//! Trust flows one way: [`verify_manifest`] (owner's key, explicit time) gives the only
//! [`VerifiedManifest`]; [`Repository::fetch_sealed`] checks every sealed object against it;
//! [`open_files`] decrypts and checks every plaintext against it.
//!
//! ```no_run
//! # async fn example(
//! #     owner: cloister_sign::SigningKey,
//! #     model: cloister_repository::NewModel,
//! #     broker_secret: cloister_seal::RecipientSecretKey,
//! # ) -> Result<(), cloister_repository::RepoError> {
//! use cloister_repository::{Repository, open_files, verify_manifest};
//! let repo = Repository::open("./models")?;
//! let now = cloister_sign::unix_now();
//! repo.import(model, &owner, now).await?;
//! let verified = verify_manifest(&repo.manifest("smollm2", "1").await?, &owner.public_key(), now)?;
//! let sealed = repo.fetch_sealed(&verified).await?;
//! let files = open_files(&verified, sealed, &broker_secret)?;
//! # let _ = files; Ok(()) }
//! ```

mod error;
mod files;
mod manifest;
mod store;

pub use error::RepoError;
pub use files::{ModelFiles, open_files};
pub use manifest::{
    MANIFEST_VALIDITY, MANIFEST_WHAT, MAX_FILE_PATH_LEN, VerifiedManifest, check_file_path,
    peek_manifest, verify_manifest,
};
pub use store::{
    ImportProgress, Imported, NewModel, Repository, SEALED_CONTENT_TYPE, UPLOAD_PART_SIZE,
};
