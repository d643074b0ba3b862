//! Verifying a sealed data set's manifest (what `cloister data seal` writes): its signature with
//! the key of the owner it names, who that owner is, its structure, and each sealed shard's bytes
//! and envelope header against it. Pure: tokens and readers in, no file system access.

use std::io::{self, Read};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_seal::OpenError;
use cloister_sign::{AnyVerifyingKey, SignError};
use cloister_types::OWNER_ATTRIBUTE;
use cloister_types::job::is_object_id;
use cloister_types::manifest::{
    DATASET_MANIFEST_KIND, DATASET_MANIFEST_VERSION, DatasetManifest, PARQUET_CONTENT_TYPE,
    shard_object_id,
};
use sha2::{Digest as _, Sha256};

/// Why a manifest or a sealed shard was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not a compact JWS whose claims name an owner.
    #[error("not a signed data set manifest: {0}")]
    Malformed(String),
    /// The owner the claims name is not a party public key.
    #[error("the manifest's owner is not a party public key: {0}")]
    OwnerKey(SignError),
    /// The manifest's owner is not the one the caller expects.
    #[error("the manifest's owner is {found}, not {expected}")]
    NotTheOwner {
        /// The owner the manifest names.
        found: String,
        /// The owner the caller named.
        expected: String,
    },
    /// The signature does not verify with the owner's key (signed by another key, claims
    /// edited, signed as something else, or outside its validity window).
    #[error("the manifest does not verify with its owner's key: {0}")]
    Signature(SignError),
    /// The signed claims are not a valid manifest.
    #[error("the manifest is signed but not valid: {0}")]
    Invalid(String),
    /// A sealed shard does not match the manifest.
    #[error("sealed shard {object_id}: {why}")]
    Shard {
        /// The shard's object id.
        object_id: String,
        /// What does not match.
        why: String,
    },
}

/// A manifest whose signature, owner and structure verified.
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    /// The verified claims.
    pub manifest: DatasetManifest,
    /// SHA-256 (hex) of the token text: the digest that names this manifest.
    pub sha256: String,
    /// Unix seconds it was signed.
    pub issued_at: u64,
    /// Unix seconds it expires.
    pub expires_at: u64,
}

/// The claims' `owner`, read without verifying anything: only to choose the verifying key.
fn peek_owner(token: &str) -> Result<String, ManifestError> {
    let malformed = |why: &str| ManifestError::Malformed(why.to_owned());
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a compact JWS has three parts"));
    };
    let bytes =
        URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed("the claims are not base64url"))?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("the claims are not JSON"))?;
    claims
        .get("owner")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| malformed("the claims name no owner"))
}

/// Verifies a manifest token at time `now`: it must verify as a [`DATASET_MANIFEST_KIND`] with
/// the key of the owner its claims name (so it is signed by that owner, who is its issuer);
/// with `expected_owner`, that key must be the owner. Then its structure is checked: the
/// version, each shard's object id (`ID.shard-00000`, … in order, valid object ids), digests
/// of 64 lowercase hex digits, and shard rows adding up to the data set's.
pub fn verify_manifest(
    token: &str,
    expected_owner: Option<&AnyVerifyingKey>,
    now: u64,
) -> Result<VerifiedManifest, ManifestError> {
    let token = token.trim();
    let owner = AnyVerifyingKey::from_text(&peek_owner(token)?).map_err(ManifestError::OwnerKey)?;
    if let Some(expected) = expected_owner
        && *expected != owner
    {
        return Err(ManifestError::NotTheOwner {
            found: owner.to_text(),
            expected: expected.to_text(),
        });
    }
    let signed = owner
        .verify::<DatasetManifest>(DATASET_MANIFEST_KIND, token, now)
        .map_err(ManifestError::Signature)?;
    let manifest = signed.claims;
    if manifest.owner != owner.to_text() {
        return Err(ManifestError::Invalid(
            "the owner is not written in its key's text form".to_owned(),
        ));
    }
    check_structure(&manifest).map_err(ManifestError::Invalid)?;
    Ok(VerifiedManifest {
        manifest,
        sha256: hex::encode(signed.token_sha256),
        issued_at: signed.issued_at,
        expires_at: signed.expires_at,
    })
}

fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_structure(manifest: &DatasetManifest) -> Result<(), String> {
    if manifest.version != DATASET_MANIFEST_VERSION {
        return Err(format!(
            "version {} (this build reads {DATASET_MANIFEST_VERSION})",
            manifest.version
        ));
    }
    if !is_digest(&manifest.source) {
        return Err("the source digest is not 64 lowercase hex digits".to_owned());
    }
    let mut rows = 0_u64;
    for (index, shard) in manifest.shards.iter().enumerate() {
        let expected = shard_object_id(&manifest.id, index);
        if shard.object_id != expected || !is_object_id(&shard.object_id) {
            return Err(format!(
                "shard {index} is object {:?}, not {expected:?} (a valid object id)",
                shard.object_id
            ));
        }
        if !is_digest(&shard.sha256) || !is_digest(&shard.plaintext_sha256) {
            return Err(format!("shard {index}'s digests are not 64 lowercase hex digits"));
        }
        rows =
            rows.checked_add(shard.rows).ok_or_else(|| "the shards' rows overflow".to_owned())?;
    }
    if rows != manifest.rows {
        return Err(format!("the shards hold {rows} rows, the manifest says {}", manifest.rows));
    }
    Ok(())
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hash.update(buf.get(..read).unwrap_or_default());
        Ok(read)
    }
}

/// Checks sealed shard `index` of a verified `manifest`, read from `sealed` to its end: its
/// envelope header must name the shard's object id, the Parquet content type and the manifest's
/// owner (attribute [`OWNER_ATTRIBUTE`]), and the SHA-256 of all its bytes must be the one the
/// manifest names. The envelope is not opened: the digest binds the bytes to the signed
/// manifest, and only a recipient can check the plaintext.
pub fn check_sealed_shard(
    manifest: &DatasetManifest,
    index: usize,
    sealed: impl Read,
) -> Result<(), ManifestError> {
    let Some(shard) = manifest.shards.get(index) else {
        return Err(ManifestError::Invalid(format!(
            "it has {} shards, no shard {index}",
            manifest.shards.len()
        )));
    };
    let refuse = |why: String| ManifestError::Shard { object_id: shard.object_id.clone(), why };
    let mut reader = Hashing { inner: sealed, hash: Sha256::new() };
    let header = cloister_seal::read_header(&mut reader).map_err(|error| match error {
        OpenError::Read(error) => refuse(format!("reading it: {error}")),
        other => refuse(format!("not a sealed envelope: {other}")),
    })?;
    let metadata = header.metadata();
    if metadata.object_id != shard.object_id {
        return Err(refuse(format!("its envelope names object {:?}", metadata.object_id)));
    }
    if metadata.content_type != PARQUET_CONTENT_TYPE {
        return Err(refuse(format!("its envelope names content type {:?}", metadata.content_type)));
    }
    match metadata.attributes.get(OWNER_ATTRIBUTE) {
        Some(owner) if *owner == manifest.owner => {}
        Some(owner) => return Err(refuse(format!("its envelope names owner {owner}"))),
        None => return Err(refuse(format!("its envelope names no owner ({OWNER_ATTRIBUTE})"))),
    }
    io::copy(&mut reader, &mut io::sink())
        .map_err(|error| refuse(format!("reading it: {error}")))?;
    let digest = hex::encode(reader.hash.finalize());
    if digest != shard.sha256 {
        return Err(refuse(format!(
            "SHA-256 {digest}, not the {} the manifest names",
            shard.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cloister_seal::{EnvelopeSecretKey, Metadata, Recipient, Suite};
    use cloister_sign::{AnySigningKey, SignatureSuite};
    use cloister_types::manifest::{ManifestField, ManifestShard};

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const DAY: Duration = Duration::from_secs(86_400);

    fn sealed(owner: &str, object_id: &str, plaintext: &[u8]) -> Vec<u8> {
        let key = EnvelopeSecretKey::generate(Suite::X25519);
        let recipient = Recipient::from_text(&key.public_key_text()).unwrap();
        let metadata = Metadata {
            content_type: PARQUET_CONTENT_TYPE.to_owned(),
            object_id: object_id.to_owned(),
            attributes: [(OWNER_ATTRIBUTE.to_owned(), owner.to_owned())].into_iter().collect(),
        };
        cloister_seal::seal_to_vec_for(&[recipient], &metadata, plaintext).unwrap()
    }

    fn manifest(owner: &str, shards: &[Vec<u8>]) -> DatasetManifest {
        DatasetManifest {
            version: DATASET_MANIFEST_VERSION,
            id: "visits".into(),
            owner: owner.to_owned(),
            schema: vec![ManifestField { name: "age".into(), ty: "int".into() }],
            rows: 3 * shards.len() as u64,
            shards: shards
                .iter()
                .enumerate()
                .map(|(index, bytes)| ManifestShard {
                    object_id: shard_object_id("visits", index),
                    sha256: hex::encode(Sha256::digest(bytes)),
                    plaintext_sha256: "ab".repeat(32),
                    rows: 3,
                })
                .collect(),
            source: "cd".repeat(32),
            lineage: Some(serde_json::json!({"transform": "preprocess"})),
        }
    }

    fn owner_key(suite: SignatureSuite) -> (AnySigningKey, String) {
        let key = AnySigningKey::generate(suite).unwrap();
        let text = key.public_key().to_text();
        (key, text)
    }

    fn sign(key: &AnySigningKey, manifest: &DatasetManifest) -> String {
        key.sign(DATASET_MANIFEST_KIND, manifest, NOW, DAY).unwrap()
    }

    #[test]
    fn a_manifest_signed_by_its_owner_verifies_in_either_suite() {
        for suite in [SignatureSuite::Es256, SignatureSuite::Sm2] {
            let (key, owner) = owner_key(suite);
            let shard = sealed(&owner, "visits.shard-00000", b"parquet bytes");
            let claims = manifest(&owner, std::slice::from_ref(&shard));
            let token = sign(&key, &claims);
            let verified = verify_manifest(&token, Some(&key.public_key()), NOW + 60).unwrap();
            assert_eq!(verified.manifest, claims);
            assert_eq!(verified.sha256, hex::encode(Sha256::digest(token.as_bytes())));
            assert_eq!((verified.issued_at, verified.expires_at), (NOW, NOW + DAY.as_secs()));
            check_sealed_shard(&verified.manifest, 0, shard.as_slice()).unwrap();
        }
    }

    #[test]
    fn a_manifest_signed_by_another_key_than_its_owner_is_refused() {
        let (_, owner) = owner_key(SignatureSuite::Es256);
        let (other, _) = owner_key(SignatureSuite::Es256);
        let token = sign(&other, &manifest(&owner, &[]));
        let refused = verify_manifest(&token, None, NOW).unwrap_err();
        assert!(matches!(refused, ManifestError::Signature(_)), "{refused}");
    }

    #[test]
    fn a_manifest_of_another_owner_than_the_one_named_is_refused() {
        let (key, owner) = owner_key(SignatureSuite::Es256);
        let (other, _) = owner_key(SignatureSuite::Sm2);
        let token = sign(&key, &manifest(&owner, &[]));
        let refused = verify_manifest(&token, Some(&other.public_key()), NOW).unwrap_err();
        assert!(matches!(refused, ManifestError::NotTheOwner { .. }), "{refused}");
        assert!(verify_manifest(&token, Some(&key.public_key()), NOW).is_ok());
    }

    #[test]
    fn edited_claims_break_the_signature() {
        let (key, owner) = owner_key(SignatureSuite::Es256);
        let token = sign(&key, &manifest(&owner, &[]));
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["source"] = serde_json::json!("ef".repeat(32));
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let edited = [parts[0], &payload, parts[2]].join(".");
        let refused = verify_manifest(&edited, None, NOW).unwrap_err();
        assert!(matches!(refused, ManifestError::Signature(_)), "{refused}");
    }

    #[test]
    fn a_token_signed_as_something_else_or_expired_is_refused() {
        let (key, owner) = owner_key(SignatureSuite::Es256);
        let claims = manifest(&owner, &[]);
        let receipt = key.sign("receipt", &claims, NOW, DAY).unwrap();
        assert!(matches!(verify_manifest(&receipt, None, NOW), Err(ManifestError::Signature(_))));
        let token = sign(&key, &claims);
        assert!(matches!(
            verify_manifest(&token, None, NOW + 2 * DAY.as_secs()),
            Err(ManifestError::Signature(_))
        ));
        assert!(matches!(verify_manifest("a.b", None, NOW), Err(ManifestError::Malformed(_))));
    }

    #[test]
    fn signed_claims_that_are_not_a_valid_manifest_are_refused() {
        let (key, owner) = owner_key(SignatureSuite::Es256);
        let shard = sealed(&owner, "visits.shard-00000", b"x");
        let good = manifest(&owner, &[shard]);
        let refused = |what: &str, edit: &dyn Fn(&mut DatasetManifest)| {
            let mut claims = good.clone();
            edit(&mut claims);
            let refused = verify_manifest(&sign(&key, &claims), None, NOW).unwrap_err();
            assert!(matches!(refused, ManifestError::Invalid(_)), "{what}: {refused}");
        };
        refused("version", &|m| m.version = 2);
        refused("object id", &|m| m.shards[0].object_id = "visits.shard-00001".into());
        refused("rows", &|m| m.rows += 1);
        refused("digest", &|m| m.shards[0].sha256 = "AB".repeat(32));
        let mut bad_id = good.clone();
        bad_id.id = "../visits".into();
        bad_id.shards[0].object_id = shard_object_id("../visits", 0);
        let refused = verify_manifest(&sign(&key, &bad_id), None, NOW).unwrap_err();
        assert!(matches!(refused, ManifestError::Invalid(_)), "{refused}");
    }

    #[test]
    fn a_sealed_shard_must_match_its_digest_and_header() {
        let (_, owner) = owner_key(SignatureSuite::Es256);
        let shard = sealed(&owner, "visits.shard-00000", b"parquet bytes");
        let claims = manifest(&owner, std::slice::from_ref(&shard));
        let mut flipped = shard.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let refused = check_sealed_shard(&claims, 0, flipped.as_slice()).unwrap_err();
        assert!(
            refused.to_string().contains("sealed shard visits.shard-00000: SHA-256"),
            "{refused}"
        );
        assert!(check_sealed_shard(&claims, 1, shard.as_slice()).is_err());
        assert!(check_sealed_shard(&claims, 0, &b"not an envelope"[..]).is_err());

        // Envelopes whose digest is the manifest's but whose header says something else.
        let (_, stranger) = owner_key(SignatureSuite::Es256);
        for (envelope, why) in [
            (sealed(&owner, "visits.shard-00007", b"p"), "names object"),
            (sealed(&stranger, "visits.shard-00000", b"p"), "names owner"),
        ] {
            let claims = manifest(&owner, std::slice::from_ref(&envelope));
            let refused = check_sealed_shard(&claims, 0, envelope.as_slice()).unwrap_err();
            assert!(refused.to_string().contains(why), "{refused}");
        }
    }
}
