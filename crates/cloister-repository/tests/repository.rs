//! The model repository end to end on a local directory (and on S3 when `CLOISTER_TEST_S3_URL`
//! names a local S3-compatible server, `scripts/start-s3.sh`): import, list, versions, verify,
//! fetch and open give back the owner's bytes; versions are immutable; a tampered sealed object
//! or manifest is refused with a message naming the model, the file and the check.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use bytes::Bytes;
use cloister_repository::{
    ImportProgress, NewModel, RepoError, Repository, open_files, peek_manifest, verify_manifest,
};
use cloister_seal::{BrokerRecipient, RecipientSecretKey};
use cloister_sign::SigningKey;
use cloister_types::model::{
    LicenceTerms, ModelFormat, ModelManifest, ModelMetadata, ModelTask, TensorSpec,
};
use zeroize::Zeroizing;

const NOW: u64 = 1_790_000_000;

fn demo_model_bytes() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/breast_cancer_classifier.onnx");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn metadata() -> ModelMetadata {
    ModelMetadata {
        format: ModelFormat::Onnx,
        task: ModelTask::Tensor,
        architecture: "skl2onnx/demo".into(),
        parameter_count: 31,
        inputs: vec![TensorSpec {
            name: "features".into(),
            dtype: "float32".into(),
            shape: vec![None, Some(30)],
        }],
        outputs: vec![],
        context_length: None,
        vocab_size: None,
        hidden_size: None,
        chat_template: None,
        details: Default::default(),
    }
}

struct Fixture {
    owner: SigningKey,
    broker: RecipientSecretKey,
    recipient: BrokerRecipient,
}

impl Fixture {
    fn new() -> Self {
        let broker = RecipientSecretKey::generate();
        let recipient = BrokerRecipient::new("kb_test1", broker.public_key()).unwrap();
        Fixture { owner: SigningKey::generate(), broker, recipient }
    }

    fn model(&self, name: &str, version: &str, files: &[(&str, &[u8])]) -> NewModel {
        NewModel {
            name: name.into(),
            version: version.into(),
            metadata: metadata(),
            licence: LicenceTerms {
                licence: Some("Apache-2.0".into()),
                no_weight_export: true,
                terms: vec!["research use".into()],
            },
            files: files
                .iter()
                .map(|(p, b)| ((*p).to_owned(), Zeroizing::new(b.to_vec())))
                .collect(),
            recipient: self.recipient.clone(),
        }
    }

    fn demo(&self, version: &str) -> NewModel {
        let onnx = demo_model_bytes();
        self.model("demo", version, &[("model.onnx", &onnx), ("README.md", b"a demo model\n")])
    }
}

fn local() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path().join("repo").to_str().unwrap()).unwrap();
    (dir, repo)
}

/// Import → list → versions → manifest → verify → fetch → open, and the bytes come back.
async fn round_trip(repo: &Repository) {
    let fx = Fixture::new();
    let imported = repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    repo.import(fx.demo("1.10"), &fx.owner, NOW).await.unwrap();
    repo.import(fx.demo("1.9"), &fx.owner, NOW).await.unwrap();
    let readme: &[u8] = b"x";
    repo.import(fx.model("other", "2", &[("w.bin", readme)]), &fx.owner, NOW).await.unwrap();

    assert_eq!(repo.list().await.unwrap(), ["demo", "other"]);
    assert_eq!(repo.versions("demo").await.unwrap(), ["1", "1.9", "1.10"]);
    assert_eq!(repo.versions("absent").await.unwrap(), Vec::<String>::new());

    let jws = repo.manifest("demo", "1").await.unwrap();
    assert_eq!(jws, imported.jws);
    let verified = verify_manifest(&jws, &fx.owner.public_key(), NOW + 3600).unwrap();
    let manifest = verified.manifest();
    assert_eq!(manifest, &imported.manifest);
    assert_eq!(manifest.model_id(), "demo@1");
    assert_eq!(manifest.owner, fx.owner.public_key().to_text());
    assert_eq!(manifest.sealed_to, fx.recipient.to_text());
    assert_eq!(
        manifest.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["README.md", "model.onnx"]
    );
    assert_eq!(manifest.digest, ModelManifest::files_digest(&manifest.files).unwrap());
    assert!(manifest.licence.no_weight_export);
    assert_eq!(verified.issued_at(), NOW);

    let sealed = repo.fetch_sealed(&verified).await.unwrap();
    assert_eq!(sealed.len(), 2);
    // The store holds ciphertext only.
    let onnx = demo_model_bytes();
    for (_, bytes) in &sealed {
        assert!(!bytes.windows(64).any(|w| w == &onnx[..64]));
    }
    let files = open_files(&verified, sealed, &fx.broker).unwrap();
    assert_eq!(files.get("model.onnx").unwrap(), onnx.as_slice());
    assert_eq!(files.get("README.md").unwrap(), b"a demo model\n");
    assert_eq!(files.paths().collect::<Vec<_>>(), ["README.md", "model.onnx"]);

    // Only the broker key opens them.
    let sealed = repo.fetch_sealed(&verified).await.unwrap();
    let err = open_files(&verified, sealed, &RecipientSecretKey::generate()).unwrap_err();
    assert!(
        err.to_string().contains("sealed weights of demo@1 file README.md do not open"),
        "{err}"
    );

    // The verified manifest for one place is refused at another.
    let v2 = repo.verified_manifest("demo", "1.9", &fx.owner.public_key(), NOW).await.unwrap();
    assert_eq!(v2.model_id(), "demo@1.9");
}

#[tokio::test]
async fn local_round_trip() {
    let (_dir, repo) = local();
    round_trip(&repo).await;
}

#[tokio::test]
async fn file_urls_open_the_same_directory() {
    let (dir, repo) = local();
    let fx = Fixture::new();
    repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    let url = format!("file://{}", dir.path().join("repo").display());
    let again = Repository::open(&url).unwrap();
    assert_eq!(again.versions("demo").await.unwrap(), ["1"]);
}

#[tokio::test]
async fn versions_are_immutable_and_never_reused() {
    let (_dir, repo) = local();
    let fx = Fixture::new();
    let first = repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    let other: &[u8] = b"different weights";
    let err = repo
        .import(fx.model("demo", "1", &[("model.onnx", other)]), &fx.owner, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::VersionExists { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "model demo@1 already exists; versions are immutable, import under a new version"
    );
    // Unchanged.
    assert_eq!(repo.manifest("demo", "1").await.unwrap(), first.jws);

    repo.delete("demo", "1").await.unwrap();
    let err = repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap_err();
    assert!(matches!(err, RepoError::VersionDeleted { .. }), "{err:?}");
    assert!(err.to_string().contains("was deleted; versions are immutable"), "{err}");
}

/// The store refuses to replace a manifest: the mechanism that makes versions immutable even when
/// two imports race past the existence check.
async fn manifests_are_create_only(repo: &Repository) {
    use object_store::{PutMode, PutOptions};
    let jws = repo.manifest("demo", "1").await.unwrap();
    let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    let err = repo
        .object_store()
        .put_opts(&Repository::manifest_path("demo", "1"), b"other".to_vec().into(), options)
        .await
        .unwrap_err();
    assert!(matches!(err, object_store::Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(repo.manifest("demo", "1").await.unwrap(), jws);
}

#[tokio::test]
async fn local_manifests_are_create_only() {
    let (_dir, repo) = local();
    let fx = Fixture::new();
    repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    manifests_are_create_only(&repo).await;
}

#[tokio::test]
async fn tampered_sealed_objects_are_refused() {
    let (dir, repo) = local();
    let fx = Fixture::new();
    let imported = repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    let file = imported.manifest.files.iter().find(|f| f.path == "model.onnx").unwrap().clone();
    let on_disk =
        dir.path().join("repo").join(Repository::file_path("demo", "1", &file).to_string());
    let original = std::fs::read(&on_disk).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&on_disk, &bytes).unwrap();

    let verified = repo.verified_manifest("demo", "1", &fx.owner.public_key(), NOW).await.unwrap();
    let err = repo.fetch_sealed(&verified).await.unwrap_err();
    assert!(matches!(err, RepoError::SealedMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "sealed weights of demo@1 file model.onnx do not match the manifest"
    );

    // open_files checks again, whatever the caller fetched.
    let readme = imported.manifest.files.iter().find(|f| f.path == "README.md").unwrap().clone();
    let readme_bytes = std::fs::read(
        dir.path().join("repo").join(Repository::file_path("demo", "1", &readme).to_string()),
    )
    .unwrap();
    let sealed = vec![
        (readme.clone(), Bytes::from(readme_bytes.clone())),
        (file.clone(), Bytes::from(bytes)),
    ];
    let err = open_files(&verified, sealed, &fx.broker).unwrap_err();
    assert!(matches!(err, RepoError::SealedMismatch { .. }), "{err:?}");

    // A missing object is named too.
    std::fs::remove_file(&on_disk).unwrap();
    let err = repo.fetch_sealed(&verified).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "sealed weights of demo@1 file model.onnx are missing from the repository"
    );

    // Files given in another order or incomplete are refused.
    let sealed = vec![
        (file.clone(), Bytes::from(original.clone())),
        (readme.clone(), Bytes::from(readme_bytes.clone())),
    ];
    let err = open_files(&verified, sealed, &fx.broker).unwrap_err();
    assert!(matches!(err, RepoError::FileSet { .. }), "{err:?}");
    let err =
        open_files(&verified, vec![(readme, Bytes::from(readme_bytes))], &fx.broker).unwrap_err();
    assert!(matches!(err, RepoError::FileSet { .. }), "{err:?}");
}

#[tokio::test]
async fn an_envelope_moved_to_another_files_place_is_refused() {
    // Two versions of one model: an envelope of 1 is valid ciphertext for the broker key, but
    // its label names demo@1, so a manifest of demo@2 that pointed at it would be refused.
    let (_dir, repo) = local();
    let fx = Fixture::new();
    let one = repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    let v1 = repo.verified_manifest("demo", "1", &fx.owner.public_key(), NOW).await.unwrap();
    let sealed_one = repo.fetch_sealed(&v1).await.unwrap();

    // The owner (or an attacker with the owner's key) signs demo@2 naming demo@1's objects.
    let mut manifest = one.manifest.clone();
    manifest.version = "2".into();
    let jws = fx
        .owner
        .sign(
            "model manifest",
            serde_json::json!({ "model_manifest": manifest }),
            NOW,
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let v2 = verify_manifest(&jws, &fx.owner.public_key(), NOW).unwrap();
    let err = open_files(&v2, sealed_one, &fx.broker).unwrap_err();
    assert!(matches!(err, RepoError::WrongLabel { .. }), "{err:?}");
    assert!(err.to_string().contains(":demo@1/README.md\""), "{err}");
}

#[tokio::test]
async fn a_manifest_signed_by_anyone_but_the_sealing_owner_does_not_open_the_weights() {
    // A stranger copies the owner's manifest (same name, version and sealed objects), names
    // itself owner and signs it: the signature verifies with the stranger's key, but the
    // envelopes are labelled with the owner who sealed them, so an enclave given the broker's key
    // still refuses to open them for the stranger (who would otherwise set its own serving policy).
    let (_dir, repo) = local();
    let fx = Fixture::new();
    let imported = repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    let genuine = repo.verified_manifest("demo", "1", &fx.owner.public_key(), NOW).await.unwrap();
    let sealed = repo.fetch_sealed(&genuine).await.unwrap();

    let stranger = SigningKey::generate();
    let mut manifest = imported.manifest.clone();
    manifest.owner = stranger.public_key().to_text();
    let forged =
        verify_manifest(&resign(&manifest, &stranger), &stranger.public_key(), NOW).unwrap();
    let err = open_files(&forged, sealed, &fx.broker).unwrap_err();
    assert!(matches!(err, RepoError::WrongLabel { .. }), "{err:?}");
    assert!(err.to_string().contains(&fx.owner.public_key().to_text()), "{err}");
}

/// Re-signs `manifest` (edited) with `key`, as the JWS claims the repository uses.
fn resign(manifest: &ModelManifest, key: &SigningKey) -> String {
    key.sign(
        "model manifest",
        serde_json::json!({ "model_manifest": manifest }),
        NOW,
        std::time::Duration::from_secs(3600),
    )
    .unwrap()
}

#[tokio::test]
async fn tampered_manifests_are_refused() {
    let (dir, repo) = local();
    let fx = Fixture::new();
    let imported = repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    let owner = fx.owner.public_key();

    // A flipped byte anywhere in the JWS.
    let jws = imported.jws.clone();
    for at in [5, jws.len() / 2, jws.len() - 3] {
        let mut bytes = jws.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let err = verify_manifest(&tampered, &owner, NOW).unwrap_err();
        assert!(
            matches!(err, RepoError::ManifestSignature { .. } | RepoError::ManifestFormat(_)),
            "byte {at}: {err:?}"
        );
    }

    // Re-signed by another key: refused with the owner's key...
    let mallory = SigningKey::generate();
    let by_mallory = resign(&imported.manifest, &mallory);
    let err = verify_manifest(&by_mallory, &owner, NOW).unwrap_err();
    assert!(matches!(err, RepoError::ManifestSignature { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the manifest of model demo@1 is not signed by the expected owner"),
        "{err}"
    );
    // ...and with Mallory's key, because it names the real owner.
    let err = verify_manifest(&by_mallory, &mallory.public_key(), NOW).unwrap_err();
    assert!(matches!(err, RepoError::OwnerMismatch { .. }), "{err:?}");

    // A file's digest edited (and re-signed by the owner): the model digest no longer matches.
    let mut edited = imported.manifest.clone();
    edited.files[1].sha256.0[0] ^= 1;
    let err = verify_manifest(&resign(&edited, &fx.owner), &owner, NOW).unwrap_err();
    assert!(matches!(err, RepoError::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("is not the digest of its file list"), "{err}");

    // The model digest edited.
    let mut edited = imported.manifest.clone();
    edited.digest.0[31] ^= 1;
    let err = verify_manifest(&resign(&edited, &fx.owner), &owner, NOW).unwrap_err();
    assert!(matches!(err, RepoError::DigestMismatch { .. }), "{err:?}");

    // Unsorted or path-escaping file lists, bad names, bad recipients.
    let mut edited = imported.manifest.clone();
    edited.files.reverse();
    edited.digest = ModelManifest::files_digest(&edited.files).unwrap();
    let err = verify_manifest(&resign(&edited, &fx.owner), &owner, NOW).unwrap_err();
    assert!(matches!(err, RepoError::ManifestInvalid { .. }), "{err:?}");
    let mut edited = imported.manifest.clone();
    edited.files[0].path = "../escape".into();
    edited.digest = ModelManifest::files_digest(&edited.files).unwrap();
    let err = verify_manifest(&resign(&edited, &fx.owner), &owner, NOW).unwrap_err();
    assert!(matches!(err, RepoError::BadFilePath { .. }), "{err:?}");
    let mut edited = imported.manifest.clone();
    edited.name = "Demo".into();
    let err = verify_manifest(&resign(&edited, &fx.owner), &owner, NOW).unwrap_err();
    assert!(matches!(err, RepoError::BadName(_)), "{err:?}");
    let mut edited = imported.manifest.clone();
    edited.sealed_to = fx.broker.public_key().to_text();
    let err = verify_manifest(&resign(&edited, &fx.owner), &owner, NOW).unwrap_err();
    assert!(matches!(err, RepoError::ManifestInvalid { .. }), "{err:?}");

    // Expired, or not yet valid.
    let err = verify_manifest(&imported.jws, &owner, NOW + 11 * 365 * 24 * 3600).unwrap_err();
    assert!(matches!(err, RepoError::ManifestSignature { .. }), "{err:?}");
    let err = verify_manifest(&imported.jws, &owner, NOW - 3600).unwrap_err();
    assert!(matches!(err, RepoError::ManifestSignature { .. }), "{err:?}");

    // Another signed record is never a manifest.
    let grant = fx
        .owner
        .sign("grant", serde_json::json!({"job": "x"}), NOW, std::time::Duration::from_secs(60))
        .unwrap();
    assert!(verify_manifest(&grant, &owner, NOW).is_err());
    assert!(peek_manifest(&grant).is_err());

    // A valid manifest copied to another version's place.
    repo.import(fx.demo("2"), &fx.owner, NOW).await.unwrap();
    let place = dir.path().join("repo").join(Repository::manifest_path("demo", "2").to_string());
    std::fs::write(&place, &imported.jws).unwrap();
    let err = repo.verified_manifest("demo", "2", &owner, NOW).await.unwrap_err();
    assert_eq!(err.to_string(), "the manifest stored as demo@2 is signed for model demo@1");

    // A flipped byte in the stored manifest file.
    let place = dir.path().join("repo").join(Repository::manifest_path("demo", "1").to_string());
    let mut bytes = std::fs::read(&place).unwrap();
    let at = bytes.len() - 10;
    bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
    std::fs::write(&place, bytes).unwrap();
    let err = repo.verified_manifest("demo", "1", &owner, NOW).await.unwrap_err();
    assert!(matches!(err, RepoError::ManifestSignature { .. }), "{err:?}");
}

#[tokio::test]
async fn delete_removes_the_version_and_its_objects() {
    let (dir, repo) = local();
    let fx = Fixture::new();
    repo.import(fx.demo("1"), &fx.owner, NOW).await.unwrap();
    repo.import(fx.demo("2"), &fx.owner, NOW).await.unwrap();
    repo.delete("demo", "1").await.unwrap();
    assert_eq!(repo.versions("demo").await.unwrap(), ["2"]);
    assert_eq!(repo.list().await.unwrap(), ["demo"]);
    let err = repo.manifest("demo", "1").await.unwrap_err();
    assert_eq!(err.to_string(), "model demo@1 is not in the repository");
    assert!(!dir.path().join("repo/models/demo/1/files").exists());
    assert!(!dir.path().join("repo/models/demo/1/manifest.jws").exists());
    let err = repo.delete("demo", "1").await.unwrap_err();
    assert!(matches!(err, RepoError::NotFound { .. }), "{err:?}");

    repo.delete("demo", "2").await.unwrap();
    assert_eq!(repo.list().await.unwrap(), Vec::<String>::new());
    let err = repo.delete("nothing", "1").await.unwrap_err();
    assert!(matches!(err, RepoError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn an_import_cut_short_leaves_no_version() {
    // Sealed objects without a manifest (a crash mid-import) are invisible.
    let (_dir, repo) = local();
    use object_store::ObjectStoreExt as _;
    repo.object_store()
        .put(&"models/ghost/1/files/00.sealed".into(), Bytes::from_static(b"x").into())
        .await
        .unwrap();
    assert_eq!(repo.list().await.unwrap(), Vec::<String>::new());
    assert_eq!(repo.versions("ghost").await.unwrap(), Vec::<String>::new());
    assert!(matches!(repo.manifest("ghost", "1").await, Err(RepoError::NotFound { .. })));
    // And the version can still be imported.
    let fx = Fixture::new();
    let data: &[u8] = b"weights";
    repo.import(fx.model("ghost", "1", &[("w.bin", data)]), &fx.owner, NOW).await.unwrap();
    assert_eq!(repo.versions("ghost").await.unwrap(), ["1"]);
}

#[tokio::test]
async fn bad_names_and_paths_are_refused_before_anything_is_written() {
    let (dir, repo) = local();
    let fx = Fixture::new();
    let data: &[u8] = b"w";
    for (name, version, path) in [
        ("Bad", "1", "w.bin"),
        ("ok", "1/2", "w.bin"),
        ("ok", ".hidden", "w.bin"),
        ("ok", "1", "../w.bin"),
        ("ok", "1", "/abs"),
        ("ok", "1", "a//b"),
    ] {
        let err = repo.import(fx.model(name, version, &[(path, data)]), &fx.owner, NOW).await;
        assert!(err.is_err(), "{name}@{version} {path}");
    }
    let err = repo.import(fx.model("ok", "1", &[]), &fx.owner, NOW).await.unwrap_err();
    assert!(matches!(err, RepoError::NoFiles { .. }), "{err:?}");
    let err = repo
        .import(fx.model("ok", "1", &[("a", data), ("a", data)]), &fx.owner, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::BadFilePath { .. }), "{err:?}");
    assert!(!dir.path().join("repo/models").exists());
}

#[tokio::test]
async fn large_files_upload_in_parts_with_progress() {
    let (_dir, repo) = local();
    let fx = Fixture::new();
    // 17 MiB of varied bytes: three parts.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let big: Vec<u8> = (0..17 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut events = Vec::new();
    repo.import_with_progress(fx.model("big", "1", &[("w.bin", &big)]), &fx.owner, NOW, &mut |p| {
        events.push(match p {
            ImportProgress::Sealing { path, bytes } => format!("seal {path} {bytes}"),
            ImportProgress::Uploaded { path, done, total } => format!("up {path} {done}/{total}"),
        })
    })
    .await
    .unwrap();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0], format!("seal w.bin {}", 17 << 20));
    assert!(events[1].starts_with(&format!("up w.bin {}/", 8 << 20)), "{events:?}");
    let verified = repo.verified_manifest("big", "1", &fx.owner.public_key(), NOW).await.unwrap();
    let files =
        open_files(&verified, repo.fetch_sealed(&verified).await.unwrap(), &fx.broker).unwrap();
    assert!(files.get("w.bin").unwrap() == big.as_slice());
}

/// The same round trip against S3 (moto on loopback): a fresh bucket per run.
#[tokio::test]
async fn s3_round_trip() {
    let Ok(url) = std::env::var("CLOISTER_TEST_S3_URL") else {
        eprintln!(
            "skipping the S3 round trip: set CLOISTER_TEST_S3_URL (e.g. http://127.0.0.1:54330, \
             from `scripts/start-s3.sh`)"
        );
        return;
    };
    let url = url.trim_end_matches('/').to_owned();
    let bucket = format!("cloister-test-{}", uuid_like());
    let response = reqwest::Client::new().put(format!("{url}/{bucket}")).send().await.unwrap();
    assert!(response.status().is_success(), "creating bucket {bucket}: {}", response.status());
    let options = [
        ("aws_endpoint", url.as_str()),
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing"),
        ("aws_region", "us-east-1"),
        ("aws_allow_http", "true"),
    ];
    let repo =
        Repository::open_with_s3_options(&format!("s3://{bucket}/some/prefix"), options).unwrap();
    round_trip(&repo).await;

    // Immutability through S3's conditional put, and deletion.
    let fx = Fixture::new();
    repo.import(fx.demo("7"), &fx.owner, NOW).await.unwrap();
    let err = repo.import(fx.demo("7"), &fx.owner, NOW).await.unwrap_err();
    assert!(matches!(err, RepoError::VersionExists { .. }), "{err:?}");
    manifests_are_create_only(&repo).await;
    use object_store::ObjectStoreExt as _;
    let store = repo.object_store();

    let verified = repo.verified_manifest("demo", "7", &fx.owner.public_key(), NOW).await.unwrap();
    let file = verified.manifest().files[1].clone();
    let path = Repository::file_path("demo", "7", &file);
    let mut bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
    bytes[100] ^= 1;
    store.put(&path, bytes.into()).await.unwrap();
    let err = repo.fetch_sealed(&verified).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "sealed weights of demo@7 file model.onnx do not match the manifest"
    );

    repo.delete("demo", "7").await.unwrap();
    assert!(!repo.versions("demo").await.unwrap().contains(&"7".to_owned()));
    let big = vec![7u8; 9 << 20];
    repo.import(fx.model("big", "1", &[("w.bin", &big)]), &fx.owner, NOW).await.unwrap();
    let verified = repo.verified_manifest("big", "1", &fx.owner.public_key(), NOW).await.unwrap();
    let files =
        open_files(&verified, repo.fetch_sealed(&verified).await.unwrap(), &fx.broker).unwrap();
    assert!(files.get("w.bin").unwrap() == big.as_slice());
}

/// A bucket-name-safe unique suffix without an extra dependency.
fn uuid_like() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}-{}", nanos, std::process::id())
}
