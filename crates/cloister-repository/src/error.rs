//! The repository's error type: every variant names the model, the file and the check.

use cloister_types::CanonicalJsonError;
use cloister_types::model::BadModelName;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The repository location is not a directory, `file://` URL or `s3://bucket[/prefix]`.
    #[error("repository location {location:?} is unusable: {reason}")]
    Location {
        /// The location given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object store failed (I/O, network, permissions).
    #[error("the object store failed while {action}: {source}")]
    Store {
        /// What the repository was doing.
        action: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A model or version name outside the allowed alphabet.
    #[error(transparent)]
    BadName(#[from] BadModelName),
    /// A file path inside a model is not a clean relative path.
    #[error("model file path {path:?} is not allowed: {reason}")]
    BadFilePath {
        /// The path given.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A model without files.
    #[error("model {model} has no files")]
    NoFiles {
        /// `name@version`.
        model: String,
    },
    /// The version already exists.
    #[error("model {model} already exists; versions are immutable, import under a new version")]
    VersionExists {
        /// `name@version`.
        model: String,
    },
    /// The version existed and was deleted; its name is never reused.
    #[error(
        "model {model} was deleted; versions are immutable and never reused, import under a new \
         version"
    )]
    VersionDeleted {
        /// `name@version`.
        model: String,
    },
    /// No such model version.
    #[error("model {model} is not in the repository")]
    NotFound {
        /// `name@version`.
        model: String,
    },
    /// Sealing a file failed.
    #[error("sealing file {path} of model {model} failed: {source}")]
    Seal {
        /// `name@version`.
        model: String,
        /// The file.
        path: String,
        /// The envelope error.
        #[source]
        source: cloister_seal::SealError,
    },
    /// Signing the manifest failed.
    #[error("signing the manifest of model {model} failed: {source}")]
    Sign {
        /// `name@version`.
        model: String,
        /// The signing error.
        #[source]
        source: cloister_sign::SignError,
    },
    /// The canonical JSON of the file list could not be built.
    #[error("the file list of model {model} cannot be digested: {source}")]
    Digest {
        /// `name@version`.
        model: String,
        /// The canonical JSON error.
        #[source]
        source: CanonicalJsonError,
    },
    /// The manifest is not a compact JWS carrying a model manifest.
    #[error("the model manifest is malformed: {0}")]
    ManifestFormat(String),
    /// The manifest's signature, issuer or validity window does not verify with the owner's key.
    #[error("the manifest of model {model} is not signed by the expected owner: {source}")]
    ManifestSignature {
        /// `name@version` as the (unverified) manifest names it.
        model: String,
        /// The verification error (names the key and the reason).
        #[source]
        source: cloister_sign::SignError,
    },
    /// The manifest's `owner` field names another key than the one that signed it.
    #[error("the manifest of model {model} names owner {named} but was verified with {expected}")]
    OwnerMismatch {
        /// `name@version`.
        model: String,
        /// The key the caller trusts.
        expected: String,
        /// The key the manifest names.
        named: String,
    },
    /// The manifest's digest is not the digest of its file list.
    #[error(
        "the manifest of model {model} is inconsistent: its digest {stated} is not the digest of \
         its file list ({computed})"
    )]
    DigestMismatch {
        /// `name@version`.
        model: String,
        /// The digest the manifest states.
        stated: String,
        /// The digest of its files.
        computed: String,
    },
    /// The manifest is signed for another name or version than the one it is stored under.
    #[error("the manifest stored as {stored} is signed for model {signed}")]
    WrongPlace {
        /// Where it was found.
        stored: String,
        /// What it names.
        signed: String,
    },
    /// A manifest field is unusable (file list not sorted, duplicate paths, bad recipient).
    #[error("the manifest of model {model} is invalid: {reason}")]
    ManifestInvalid {
        /// `name@version`.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// A sealed object is missing from the store.
    #[error("sealed weights of {model} file {path} are missing from the repository")]
    SealedMissing {
        /// `name@version`.
        model: String,
        /// The file.
        path: String,
    },
    /// A sealed object's SHA-256 differs from the manifest's.
    #[error("sealed weights of {model} file {path} do not match the manifest")]
    SealedMismatch {
        /// `name@version`.
        model: String,
        /// The file.
        path: String,
    },
    /// The sealed objects given do not correspond one to one to the manifest's files.
    #[error("the sealed files given for {model} are not the manifest's files: {reason}")]
    FileSet {
        /// `name@version`.
        model: String,
        /// What differs.
        reason: String,
    },
    /// A sealed file did not open with the key.
    #[error("sealed weights of {model} file {path} do not open: {source}")]
    Open {
        /// `name@version`.
        model: String,
        /// The file.
        path: String,
        /// The envelope error.
        #[source]
        source: cloister_seal::OpenError,
    },
    /// A sealed file opened but is labelled for another model file or another owner.
    #[error(
        "sealed weights of {model} file {path} are labelled {label:?}, not this owner's file: \
         the manifest was not signed by the owner who sealed them, or points at another file"
    )]
    WrongLabel {
        /// `name@version`.
        model: String,
        /// The file.
        path: String,
        /// The object id found in the envelope.
        label: String,
    },
    /// The decrypted bytes differ from the manifest's plaintext digest or size.
    #[error("decrypted weights of {model} file {path} do not match the manifest ({what})")]
    PlaintextMismatch {
        /// `name@version`.
        model: String,
        /// The file.
        path: String,
        /// `SHA-256` or `size`.
        what: &'static str,
    },
}

impl RepoError {
    pub(crate) fn store(action: impl Into<String>) -> impl FnOnce(object_store::Error) -> Self {
        let action = action.into();
        move |source| RepoError::Store { action, source }
    }
}
