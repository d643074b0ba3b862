//! The worker's object store: sealed objects as files in one directory, immutable once written.
//!
//! Only ciphertext ever reaches this store; it is the compute provider's storage.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use cloister_types::Hex;
use sha2::{Digest, Sha256};

/// Why an object could not be stored or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The id has characters outside `[A-Za-z0-9._-]` or is too long.
    #[error(
        "object id {0:?} is not valid (1 to 128 characters from A-Z a-z 0-9 . _ -, not starting with '.')"
    )]
    BadId(String),
    /// Objects are immutable.
    #[error("object {0} already exists; objects are immutable")]
    Exists(String),
    /// No such object.
    #[error("object {0} does not exist")]
    NotFound(String),
    /// The file system failed.
    #[error("object store I/O failed for {id}: {source}")]
    Io {
        /// Which object.
        id: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A directory of immutable sealed objects.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    root: PathBuf,
}

impl ObjectStore {
    /// Opens (and creates) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(|source| StoreError::Io { id: String::new(), source })?;
        Ok(ObjectStore { root: root.to_owned() })
    }

    /// Whether the store's directory is still there and readable (`/readyz`).
    pub fn check(&self) -> Result<(), StoreError> {
        let io = |source| StoreError::Io { id: String::new(), source };
        let metadata = fs::metadata(&self.root).map_err(io)?;
        if !metadata.is_dir() {
            return Err(io(std::io::Error::other("the object store is not a directory")));
        }
        fs::read_dir(&self.root).map(drop).map_err(io)
    }

    fn path(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !cloister_types::job::is_object_id(id) {
            return Err(StoreError::BadId(id.to_owned()));
        }
        Ok(self.root.join(id))
    }

    /// Stores `bytes` under `id` atomically; returns their SHA-256.
    pub fn put(&self, id: &str, bytes: &[u8]) -> Result<Hex, StoreError> {
        let path = self.path(id)?;
        if path.exists() {
            return Err(StoreError::Exists(id.to_owned()));
        }
        let io = |source| StoreError::Io { id: id.to_owned(), source };
        let tmp = self.root.join(format!(".{id}.partial"));
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::hard_link(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                StoreError::Exists(id.to_owned())
            } else {
                io(e)
            }
        })?;
        fs::remove_file(&tmp).map_err(io)?;
        Ok(Hex(Sha256::digest(bytes).to_vec()))
    }

    /// Stores `bytes` under `id`, replacing an object the worker itself wrote there earlier (a
    /// batch chunk redone after a crash): written to a temporary file, synced, renamed over the
    /// old one and the directory synced, so a reader sees the old or the new object, never a
    /// mix, and the new one survives a crash once this returns. Returns the SHA-256.
    ///
    /// Only the worker's own outputs are replaced this way; uploads go through [`Self::put`].
    pub fn replace(&self, id: &str, bytes: &[u8]) -> Result<Hex, StoreError> {
        let path = self.path(id)?;
        let io = |source| StoreError::Io { id: id.to_owned(), source };
        let tmp = self.root.join(format!(".{id}.partial"));
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(e)
        })?;
        fs::File::open(&self.root).and_then(|dir| dir.sync_all()).map_err(io)?;
        Ok(Hex(Sha256::digest(bytes).to_vec()))
    }

    /// Whether an object exists under `id`.
    pub fn contains(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.path(id)?.is_file())
    }

    /// The envelope header of a stored object (to see whom it is sealed to), read without
    /// loading the body.
    pub fn header(&self, id: &str) -> Result<cloister_seal::Header, StoreError> {
        let file = fs::File::open(self.path(id)?).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound(id.to_owned())
            } else {
                StoreError::Io { id: id.to_owned(), source }
            }
        })?;
        cloister_seal::read_header(std::io::BufReader::new(file)).map_err(|e| StoreError::Io {
            id: id.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })
    }

    /// The whole stored object.
    pub fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(id)?;
        fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound(id.to_owned())
            } else {
                StoreError::Io { id: id.to_owned(), source }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_immutable_and_ids_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path()).unwrap();
        let digest = store.put("a-1.sealed", b"xyz").unwrap();
        assert_eq!(digest.to_string(), hex::encode(Sha256::digest(b"xyz")));
        assert_eq!(store.get("a-1.sealed").unwrap(), b"xyz");
        assert!(matches!(store.put("a-1.sealed", b"q"), Err(StoreError::Exists(_))));
        assert!(matches!(store.get("nope"), Err(StoreError::NotFound(_))));
        let replaced = store.replace("a-1.sealed", b"new").unwrap();
        assert_eq!(replaced.to_string(), hex::encode(Sha256::digest(b"new")));
        assert_eq!(store.get("a-1.sealed").unwrap(), b"new");
        assert!(store.contains("a-1.sealed").unwrap() && !store.contains("b").unwrap());
        assert!(matches!(store.replace("../x", b""), Err(StoreError::BadId(_))));
        for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(129)] {
            assert!(matches!(store.put(bad, b""), Err(StoreError::BadId(_))), "{bad}");
        }
    }
}
