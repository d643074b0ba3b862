//! `cloister backup create|restore`: the attestation service's SQLite database and its service
//! key, copied as one consistent, checked set, and put back into a fresh service.
//!
//! A backup directory holds `authority.db` (a `VACUUM INTO` snapshot, taken while the service
//! runs), `service.key` (mode 0600) and `backup.json`: the SHA-256 of both, the service's
//! signing-key fingerprint and the audit log's last entry, signed by the service's signing key.
//! Both commands verify the audit log of the copy against the key before they report success,
//! so a backup that would not restore to an intact service is found when it is made, not when it
//! is needed. A restore is pinned to the service's fingerprint, which the operator gives: a
//! manifest rewritten by someone who cannot sign with that key (red team, round 7) or a key
//! swapped for another is refused before anything is written.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use cloister_authority::store::Store;
use cloister_seal::RecipientSecretKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The snapshot's file name in a backup directory.
const DATABASE: &str = "authority.db";
/// The service key's file name in a backup directory.
const KEY: &str = "service.key";
/// The manifest's file name in a backup directory.
const MANIFEST: &str = "backup.json";
/// What the manifest's signature covers: this domain, then the manifest without its signature.
const MANIFEST_DOMAIN: &str = "cloister backup manifest v1";

/// `backup.json`: what was backed up, to check a restore against.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// 1.
    format: u32,
    /// When the snapshot was taken (RFC 3339, UTC).
    created_at: String,
    /// The service's signing-key fingerprint (what `serve attestation` prints at start).
    service_fingerprint: String,
    /// The audit log's last entry in the snapshot: its seq and hash.
    audit_head: Head,
    /// SHA-256 (hex) of `authority.db`.
    database_sha256: String,
    /// SHA-256 (hex) of `service.key`.
    key_sha256: String,
    /// The service signing key's signature over the manifest with this field empty.
    signature: String,
}

impl Manifest {
    /// The bytes the signature covers: the manifest as JSON with an empty signature.
    fn signed_bytes(&self) -> Result<Vec<u8>> {
        let unsigned = Manifest { signature: String::new(), ..self.clone() };
        Ok(serde_json::to_vec(&unsigned)?)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Head {
    seq: i64,
    hash: String,
}

/// What a backup or a restore reports.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// The backup directory, or the restored database file.
    pub path: PathBuf,
    /// The service's signing-key fingerprint.
    pub service_fingerprint: String,
    /// The audit log's last entry: every entry up to it verified against that key.
    pub audit_seq: i64,
    /// Its hash.
    pub audit_hash: String,
}

/// The SQLite file a `sqlite://PATH` URL names; anything else is refused with what to do.
fn sqlite_path(database: &str) -> Result<PathBuf> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        bail!(
            "a PostgreSQL database is backed up with PostgreSQL's tools (pg_dump --format=custom, \
             restored with pg_restore), and the service key file copied beside it: see \
             docs/ops/install.md, \"Backup and restore\""
        );
    }
    let Some(path) = database.strip_prefix("sqlite://") else {
        bail!("the database must be sqlite://PATH (got {database:?})");
    };
    let path = path.split('?').next().unwrap_or(path);
    ensure!(!path.is_empty(), "the database URL names no file");
    Ok(PathBuf::from(path))
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn read_service_key(path: &Path) -> Result<RecipientSecretKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the service key {}", path.display()))?,
    );
    RecipientSecretKey::from_text(text.trim())
        .with_context(|| format!("{} is not a service key", path.display()))
}

/// Opens the SQLite database at `path`, which must exist (opening never creates one here).
async fn open_existing(path: &Path) -> Result<Store> {
    ensure!(path.is_file(), "there is no database at {}", path.display());
    Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .with_context(|| format!("opening {}", path.display()))
}

/// The service's signing key, which `key` derives: it signs the checkpoints and the manifest.
fn signing_key(key: &RecipientSecretKey) -> Result<cloister_sign::SigningKey> {
    cloister_authority::service::service_signing_key(key)
        .context("deriving the service signing key")
}

/// Refuses a database that does not record `public` as its checkpoint key: another service's,
/// or one no service ever opened (fail closed: a database without the record is not taken on
/// trust).
async fn check_key(store: &Store, public: &cloister_sign::VerifyingKey) -> Result<()> {
    let fingerprint = public.fingerprint_hex();
    let recorded = store.meta("audit_public_key").await?.context(
        "the database records no service key: it is not one `cloister serve attestation` opened",
    )?;
    let recorded = cloister_sign::VerifyingKey::from_text(&recorded)
        .context("the key the database records is not a verifying key")?;
    ensure!(
        recorded.fingerprint_hex() == fingerprint,
        "the service key (fingerprint {fingerprint}) is not the key this database was made \
         with ({}): back up the key file the service runs with",
        recorded.fingerprint_hex()
    );
    Ok(())
}

/// Checks that `store` was made with `public` and verifies its whole audit log against it;
/// returns the log's last entry.
async fn verified_head(store: &Store, public: &cloister_sign::VerifyingKey) -> Result<Head> {
    check_key(store, public).await?;
    let rows = store.audit_rows(None).await?;
    let checkpoints = store.checkpoints().await?;
    let report = cloister_authority::audit::verify_log(&rows, &checkpoints, public);
    if !report.is_intact() {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        bail!("the audit log is not intact: {}", problems.join("; "));
    }
    let head = rows
        .last()
        .map_or(Head { seq: 0, hash: cloister_authority::audit::GENESIS_HASH.to_owned() }, |row| {
            Head { seq: row.seq, hash: row.hash.clone() }
        });
    Ok(head)
}

/// `cloister backup create`: snapshots the database `database` (the service may keep running)
/// and copies the key file `key_file` into the new directory `out`, then verifies the copy.
pub async fn create(database: &str, key_file: &Path, out: &Path) -> Result<Outcome> {
    let source = sqlite_path(database)?;
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_none();
        ensure!(empty, "{} exists and is not empty: back up into a new directory", out.display());
    }
    let key = read_service_key(key_file)?;
    let signing = signing_key(&key)?;
    let public = signing.public_key();
    let store = open_existing(&source).await?;
    // The live database must be this key's before anything is written; its log is verified
    // once, in the snapshot, which is what the backup holds.
    check_key(&store, &public).await.context("checking the live database")?;
    create_private_dir(out)?;
    let snapshot = out.join(DATABASE);
    let taken = store.snapshot_into(&snapshot).await;
    store.close().await;
    taken.with_context(|| {
        format!("snapshotting {} into {}", source.display(), snapshot.display())
    })?;
    crate::testbed::write_secret(&out.join(KEY), key.to_text().as_bytes())?;

    let copy = open_existing(&snapshot).await?;
    let checked = verified_head(&copy, &public).await;
    copy.close().await;
    let head = checked.context("checking the snapshot")?;
    let fingerprint = public.fingerprint_hex();
    // The store's pool leaves SQLite's -wal and -shm files beside the copy while open; once it
    // is closed the copy is one file, whose digest the manifest records.
    let mut manifest = Manifest {
        format: 1,
        created_at: crate::serving::rfc3339(cloister_sign::unix_now()),
        service_fingerprint: fingerprint.clone(),
        audit_head: Head { seq: head.seq, hash: head.hash.clone() },
        database_sha256: sha256_file(&snapshot)?,
        key_sha256: sha256_file(&out.join(KEY))?,
        signature: String::new(),
    };
    manifest.signature = signing.sign_bytes(MANIFEST_DOMAIN, &manifest.signed_bytes()?);
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(out.join(MANIFEST), text + "\n")
        .with_context(|| format!("writing {}", out.join(MANIFEST).display()))?;
    Ok(Outcome {
        path: out.to_owned(),
        service_fingerprint: fingerprint,
        audit_seq: head.seq,
        audit_hash: head.hash,
    })
}

/// `cloister backup restore`: checks the backup in `from` against its manifest — signed by the
/// service whose signing-key fingerprint is `fingerprint`, and naming the files' digests — and
/// puts its database at `database` and its key at `key_file`, neither of which may exist (nor
/// SQLite's side files beside the database); then verifies the restored audit log against the
/// key.
pub async fn restore(
    from: &Path,
    fingerprint: &str,
    database: &str,
    key_file: &Path,
) -> Result<Outcome> {
    let target = sqlite_path(database)?;
    let fingerprint = fingerprint.trim().to_ascii_lowercase();
    ensure!(
        fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "--service-key must be the service's signing-key fingerprint (64 hex digits, as `serve \
         attestation` prints at start and `backup create` reports)"
    );
    let manifest_path = from.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!("reading {} (is {} a backup directory?)", manifest_path.display(), from.display())
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a backup manifest", manifest_path.display()))?;
    ensure!(manifest.format == 1, "backup format {} is newer than this cloister", manifest.format);
    // The key first: it must be the pinned service's, and have signed this manifest.
    let key = read_service_key(&from.join(KEY))?;
    let public = signing_key(&key)?.public_key();
    ensure!(
        public.fingerprint_hex() == fingerprint && manifest.service_fingerprint == fingerprint,
        "the backup in {} is of the service with key {} (its key file: {}), not of {fingerprint}: \
         restore the pinned service's backup",
        from.display(),
        manifest.service_fingerprint,
        public.fingerprint_hex()
    );
    public.verify_bytes(MANIFEST_DOMAIN, &manifest.signed_bytes()?, &manifest.signature).map_err(
        |_| {
            anyhow::anyhow!(
                "{} is not signed by the service's key: it was changed after the backup was made",
                manifest_path.display()
            )
        },
    )?;
    ensure!(
        sha256_file(&from.join(KEY))? == manifest.key_sha256,
        "{} was changed since the backup was made",
        from.join(KEY).display()
    );
    // SQLite merges a write-ahead log it finds beside a database when it opens it: a stale one
    // there would change the restored data (red team, round 7).
    let side_files = ["-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = target.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    });
    let targets = [target.clone(), key_file.to_owned()];
    for path in targets.iter().chain(&side_files) {
        ensure!(
            path.symlink_metadata().is_err(),
            "{} exists: restore into a fresh location, never over a live service's files",
            path.display()
        );
    }
    // The bytes written are the bytes checked.
    let bytes = std::fs::read(from.join(DATABASE))
        .with_context(|| format!("reading {}", from.join(DATABASE).display()))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    ensure!(
        actual == manifest.database_sha256,
        "{} was changed since the backup was made (SHA-256 {actual}, the manifest says {}): \
         restore from an intact copy",
        from.join(DATABASE).display(),
        manifest.database_sha256
    );
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_new(&target, &bytes, 0o600)?;
    write_new(key_file, key.to_text().as_bytes(), 0o600)?;
    let store = open_existing(&target).await?;
    let checked = verified_head(&store, &public).await;
    store.close().await;
    let head = checked.context("checking the restored database")?;
    ensure!(
        head == manifest.audit_head,
        "the restored database ends at audit entry {} under key {fingerprint}, but the manifest \
         says entry {} under {}",
        head.seq,
        manifest.audit_head.seq,
        manifest.service_fingerprint
    );
    Ok(Outcome {
        path: target,
        service_fingerprint: fingerprint,
        audit_seq: head.seq,
        audit_hash: head.hash,
    })
}

/// Writes `bytes` to a file that must not exist, not even as a dangling symbolic link (red team,
/// round 7: a link there was followed).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("writing {}", path.display()))
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}
