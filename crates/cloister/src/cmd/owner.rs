//! `cloister owner`: what a data owner does with its party key at the attestation service
//! outside a job (signing in to the web console).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum OwnerCommand {
    /// Answer the web console's sign-in challenge with your party key: prints one line of JSON
    /// to paste into the console. The key never leaves this machine, and the answer is good for
    /// one sign-in at the service whose key fingerprint you give.
    SignIn {
        /// The challenge the console shows.
        challenge: String,
        /// Your party signing key (what signs your grants).
        #[arg(long)]
        key: PathBuf,
        /// SHA-256 of the service signing key you trust (64 hex digits: the fingerprint you
        /// pinned, never one read from the page you sign in to).
        #[arg(long, env = "CLOISTER_SERVICE_FINGERPRINT")]
        service_fingerprint: String,
    },
}

pub(crate) fn run(command: OwnerCommand) -> Result<()> {
    match command {
        OwnerCommand::SignIn { challenge, key, service_fingerprint } => {
            let signing = cloister::parties::read_signing_key(&key)?;
            let fingerprint = cloister_types::Hex::parse(service_fingerprint.trim())
                .context("--service-fingerprint is not hex")?;
            let answer =
                cloister_client::protocol::owner_sign_in(&signing, &challenge, &fingerprint)?;
            println!("{}", serde_json::to_string(&answer)?);
            Ok(())
        }
    }
}
