//! `cloister completions`, `cloister man` and `cloister backup`: what an operator installs and
//! keeps beside the binary (docs/ops/install.md).

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::runtime;

#[derive(Subcommand)]
pub(crate) enum BackupCommand {
    /// Snapshot the database (the service may keep running) and copy the service key into a
    /// new directory, with a manifest of their digests and the audit log's last entry.
    Create {
        /// `sqlite://PATH` (a PostgreSQL database is backed up with pg_dump; see
        /// docs/ops/install.md).
        #[arg(long, env = "CLOISTER_DATABASE")]
        database: String,
        /// The service key file the service runs with (`--key-file`).
        #[arg(long)]
        key_file: PathBuf,
        /// The backup directory to create (absent or empty). It holds the service key: keep it
        /// as secret as the key.
        #[arg(long)]
        out: PathBuf,
        /// One JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Check a backup against its manifest and put its database and key at new paths, for a
    /// fresh `serve attestation --database … --key-file …`.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// The service's signing-key fingerprint (64 hex digits: what `serve attestation`
        /// printed at start and `backup create` reported), from your own records, never from the
        /// backup: its manifest must be signed by that key.
        #[arg(long)]
        service_key: String,
        /// Where to put the database: `sqlite://PATH` (must not exist).
        #[arg(long)]
        database: String,
        /// Where to put the service key (must not exist; written with mode 0600).
        #[arg(long)]
        key_file: PathBuf,
        /// One JSON line.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn backup(command: BackupCommand) -> Result<()> {
    match command {
        BackupCommand::Create { database, key_file, out, json } => {
            let outcome =
                runtime()?.block_on(cloister::backup::create(&database, &key_file, &out))?;
            if json {
                println!("{}", serde_json::to_string(&outcome)?);
            } else {
                println!(
                    "backed up to {}: audit log intact through entry {} ({}), service key {}; \
                     the directory holds the service key, keep it as secret",
                    outcome.path.display(),
                    outcome.audit_seq,
                    outcome.audit_hash,
                    outcome.service_fingerprint
                );
            }
        }
        BackupCommand::Restore { from, service_key, database, key_file, json } => {
            let outcome = runtime()?.block_on(cloister::backup::restore(
                &from,
                &service_key,
                &database,
                &key_file,
            ))?;
            if json {
                println!("{}", serde_json::to_string(&outcome)?);
            } else {
                println!(
                    "restored {} (audit log intact through entry {}, service key {}); start it \
                     with: cloister serve attestation --database {database} --key-file {}",
                    outcome.path.display(),
                    outcome.audit_seq,
                    outcome.service_fingerprint,
                    key_file.display()
                );
            }
        }
    }
    Ok(())
}
