//! `cloister proxy`: a plain OpenAI API on this machine, forwarded end-to-end encrypted to the
//! enclaves of one or several attested workers.

use std::path::PathBuf;

use anyhow::Result;
use cloister::parties::{accepted_tees, parse_measurements};

use super::runtime;

#[derive(clap::Args)]
pub(crate) struct ProxyArgs {
    /// Where to listen, e.g. 127.0.0.1:8000.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub(crate) listen: String,
    /// A worker's base URL (https://…); repeat for several. Each is attested against the same
    /// expectations; requests are balanced over those admitted.
    #[arg(long = "worker", value_parser = super::url_with_scheme, required = true)]
    pub(crate) workers: Vec<String>,
    /// Seconds between re-checks: a dropped worker is attested again and re-admitted if it
    /// passes; an admitted one whose certificate is about to expire is attested again.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) recheck_interval: u64,
    /// Instance CA that must have issued the worker's enclave certificate.
    #[arg(long)]
    pub(crate) ca: PathBuf,
    /// Measurement (hex) accepted for the worker's enclave; repeat for several.
    #[arg(long = "measurement", required = true)]
    pub(crate) measurements: Vec<String>,
    /// Accept the simulated TEE (development only).
    #[arg(long)]
    pub(crate) accept_sim: bool,
    /// Accept enclaves whose evidence verified under a test root their attestation instance
    /// names (trust_anchor "test"; tests on fake hardware, development only).
    #[arg(long)]
    pub(crate) accept_test_root: bool,
    /// The requester's signing key file; every request is signed with it.
    #[arg(long)]
    pub(crate) requester_key: PathBuf,
    /// What to log (JSON lines on standard error): a level (error, warn, info, debug,
    /// trace) or filter directives (info,cloister_worker=debug). Default: CLOISTER_LOG, else
    /// RUST_LOG, else info.
    #[arg(long, value_parser = cloister::logging::parse_flag)]
    pub(crate) log_level: Option<String>,
    /// Listen on an address other machines reach (plain HTTP, no credential: whoever reaches
    /// the proxy acts as the requester). Without it, a non-loopback --listen is refused.
    #[arg(long)]
    pub(crate) insecure_allow_remote_clients: bool,
    /// Read settings from this TOML file; its keys are this command's long flag names
    /// (`listen = "127.0.0.1:8000"`, `measurement = ["…"]`, `accept-sim = true`). Flags and
    /// their environment variables override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

pub(crate) fn run(args: ProxyArgs) -> Result<()> {
    let ProxyArgs {
        listen,
        workers,
        recheck_interval,
        ca,
        measurements,
        accept_sim,
        accept_test_root,
        requester_key,
        log_level: _,
        config: _,
        insecure_allow_remote_clients,
    } = args;
    let measurements = parse_measurements(&measurements)?;
    let tees = accepted_tees(accept_sim);
    let options = cloister::proxy::ProxyOptions {
        listen,
        workers,
        ca,
        measurements,
        tees,
        accept_test_root,
        requester_key,
        recheck: std::time::Duration::from_secs(recheck_interval),
    };
    let remote = if insecure_allow_remote_clients {
        cloister::proxy::RemoteClients::Allowed
    } else {
        cloister::proxy::RemoteClients::Refused
    };
    runtime()?.block_on(cloister::proxy::run(options, remote))
}
