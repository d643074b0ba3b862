//! The signed model manifest: how it is signed, read without trust for display, and verified
//! into a [`VerifiedManifest`], the only form the rest of the repository accepts.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_seal::BrokerRecipient;
use cloister_sign::{SigningKey, VerifyingKey};
use cloister_types::model::{ModelManifest, check_model_name};
use serde::{Deserialize, Serialize};

use crate::RepoError;

/// What the manifest JWS is called in signing and verification errors.
pub const MANIFEST_WHAT: &str = "model manifest";

/// How long a manifest signature stays valid: ten years (a version is immutable; the owner's key
/// rotation, not expiry, is what ends its life).
pub const MANIFEST_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Longest file path inside a model.
pub const MAX_FILE_PATH_LEN: usize = 512;

/// The JWS claims: the manifest under its own key, so that no other signed Cloister record
/// (grant, receipt, serving policy) can ever be read as a manifest.
#[derive(Serialize, Deserialize)]
struct ManifestClaims {
    model_manifest: ModelManifest,
}

/// Signs `manifest` with the owner's key as a compact JWS valid from `now` for
/// [`MANIFEST_VALIDITY`].
pub(crate) fn sign_manifest(
    manifest: &ModelManifest,
    owner: &SigningKey,
    now: u64,
) -> Result<String, RepoError> {
    owner
        .sign(
            MANIFEST_WHAT,
            ManifestClaims { model_manifest: manifest.clone() },
            now,
            MANIFEST_VALIDITY,
        )
        .map_err(|source| RepoError::Sign { model: manifest.model_id(), source })
}

/// A manifest whose signature verified with the owner's key, whose `owner` field names that key,
/// whose digest is the digest of its file list, and whose names and paths are valid. Only
/// [`verify_manifest`] builds one.
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    manifest: ModelManifest,
    jws: String,
    owner: VerifyingKey,
    sealed_to: BrokerRecipient,
    issued_at: u64,
}

impl VerifiedManifest {
    /// The verified manifest.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The compact JWS it was verified from.
    pub fn jws(&self) -> &str {
        &self.jws
    }

    /// The owner's key it verified with.
    pub fn owner(&self) -> &VerifyingKey {
        &self.owner
    }

    /// Unix seconds the owner signed it.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// `name@version`.
    pub fn model_id(&self) -> String {
        self.manifest.model_id()
    }

    /// The key-broker recipient every file is sealed to.
    pub fn sealed_to(&self) -> &BrokerRecipient {
        &self.sealed_to
    }

    /// Checks that this manifest is the one for `name@version` (a valid manifest copied to
    /// another version's place is refused).
    pub fn expect_id(&self, name: &str, version: &str) -> Result<(), RepoError> {
        if self.manifest.name == name && self.manifest.version == version {
            Ok(())
        } else {
            Err(RepoError::WrongPlace {
                stored: format!("{name}@{version}"),
                signed: self.model_id(),
            })
        }
    }
}

/// Verifies a manifest JWS: signed by `owner` (ES256, issuer = `owner`, valid at `now`), its
/// `owner` field names the same key, its digest equals [`ModelManifest::files_digest`] of its
/// files, its name and version are valid, its file paths are clean, sorted and unique, and it
/// names a key-broker recipient.
pub fn verify_manifest(
    jws: &str,
    owner: &VerifyingKey,
    now: u64,
) -> Result<VerifiedManifest, RepoError> {
    let jws = jws.trim();
    let claimed = peek_manifest(jws).map(|m| m.model_id()).unwrap_or_else(|_| "?".to_owned());
    let signed = owner
        .verify::<ManifestClaims>(MANIFEST_WHAT, jws, now)
        .map_err(|source| RepoError::ManifestSignature { model: claimed, source })?;
    let manifest = signed.claims.model_manifest;
    let model = manifest.model_id();

    let named = VerifyingKey::from_text(&manifest.owner).ok();
    if named.as_ref() != Some(owner) {
        return Err(RepoError::OwnerMismatch {
            model,
            expected: owner.to_text(),
            named: manifest.owner.clone(),
        });
    }
    check_model_name("model name", &manifest.name)?;
    check_model_name("model version", &manifest.version)?;
    check_file_list(&manifest)?;
    let computed = ModelManifest::files_digest(&manifest.files)
        .map_err(|source| RepoError::Digest { model: model.clone(), source })?;
    if computed != manifest.digest {
        return Err(RepoError::DigestMismatch {
            model,
            stated: manifest.digest.to_string(),
            computed: computed.to_string(),
        });
    }
    let sealed_to = BrokerRecipient::from_text(&manifest.sealed_to).map_err(|e| {
        RepoError::ManifestInvalid {
            model: model.clone(),
            reason: format!("sealed_to is not a key-broker recipient: {e}"),
        }
    })?;
    Ok(VerifiedManifest {
        manifest,
        jws: jws.to_owned(),
        owner: owner.clone(),
        sealed_to,
        issued_at: signed.issued_at,
    })
}

fn check_file_list(manifest: &ModelManifest) -> Result<(), RepoError> {
    let model = manifest.model_id();
    if manifest.files.is_empty() {
        return Err(RepoError::NoFiles { model });
    }
    for file in &manifest.files {
        check_file_path(&file.path)?;
        if file.sha256.as_bytes().len() != 32 || file.sealed_sha256.as_bytes().len() != 32 {
            return Err(RepoError::ManifestInvalid {
                model,
                reason: format!("file {} does not carry 32-byte SHA-256 digests", file.path),
            });
        }
    }
    if manifest.files.windows(2).any(|w| w[0].path >= w[1].path) {
        return Err(RepoError::ManifestInvalid {
            model,
            reason: "its files are not sorted by path or a path repeats".to_owned(),
        });
    }
    Ok(())
}

/// Reads the manifest out of a JWS **without verifying anything**: for display, and to learn
/// which owner key a manifest claims before verifying it with a key the caller trusts.
pub fn peek_manifest(jws: &str) -> Result<ModelManifest, RepoError> {
    let mut parts = jws.trim().split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RepoError::ManifestFormat(
            "not a compact JWS (three dot-separated parts)".into(),
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| RepoError::ManifestFormat("the payload is not base64url".into()))?;
    let claims: ManifestClaims = serde_json::from_slice(&bytes).map_err(|e| {
        RepoError::ManifestFormat(format!("the payload is not a model manifest: {e}"))
    })?;
    Ok(claims.model_manifest)
}

/// Checks a file path inside a model: relative, forward slashes, no empty, `.` or `..`
/// segments, no control characters or backslashes, at most [`MAX_FILE_PATH_LEN`] bytes.
pub fn check_file_path(path: &str) -> Result<(), RepoError> {
    let bad = |reason| Err(RepoError::BadFilePath { path: path.to_owned(), reason });
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.len() > MAX_FILE_PATH_LEN {
        return bad("it is longer than 512 bytes");
    }
    if path.starts_with('/') {
        return bad("it is absolute");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("it contains a control character or a backslash");
    }
    if path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return bad("it has an empty, '.' or '..' segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_must_be_clean_and_relative() {
        for good in ["model.gguf", "1_Pooling/config.json", "a b/c-d_e.safetensors"] {
            assert!(check_file_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", "a\\b", "a\nb"] {
            assert!(check_file_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_path(&"a".repeat(513)).is_err());
    }

    #[test]
    fn peek_refuses_what_is_not_a_manifest_jws() {
        assert!(peek_manifest("abc").is_err());
        assert!(peek_manifest("a.b.c").is_err());
        let other = URL_SAFE_NO_PAD.encode(br#"{"grant":{}}"#);
        assert!(peek_manifest(&format!("e30.{other}.sig")).is_err());
    }
}
