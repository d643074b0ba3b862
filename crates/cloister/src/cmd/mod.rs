//! The `cloister` command's groups, one module each: their arguments and how each calls the
//! library. Arguments several groups share (which worker, which service) are here.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use cloister::parties::parse_measurements;

pub(crate) mod admin;
pub(crate) mod data;
pub(crate) mod demo;
pub(crate) mod envelope;
pub(crate) mod evidence;
pub(crate) mod federate;
pub(crate) mod job;
pub(crate) mod model;
pub(crate) mod proxy;
pub(crate) mod serve;

/// Which worker a `job` command talks to, and what its enclave must be (checked during the TLS
/// handshake, before anything is sent).
#[derive(clap::Args, Clone)]
pub(crate) struct WorkerTargetArgs {
    /// The worker's URL (what `cloister serve worker` prints).
    #[arg(long, env = "CLOISTER_WORKER")]
    worker: String,
    /// The attestation instance's CA certificate (PEM) that must have issued the enclave's.
    #[arg(long)]
    ca: PathBuf,
    /// An accepted enclave measurement (hex); repeat for several.
    #[arg(long = "measurement", required = true)]
    measurements: Vec<String>,
    /// Accept the simulated TEE (development only).
    #[arg(long)]
    accept_sim: bool,
    /// Accept enclaves whose evidence verified under a test root their attestation instance
    /// names (trust_anchor "test"; tests on fake hardware, development only).
    #[arg(long)]
    accept_test_root: bool,
}

impl WorkerTargetArgs {
    pub(crate) fn target(&self) -> Result<cloister::job::WorkerTarget> {
        let measurements = parse_measurements(&self.measurements)?;
        Ok(cloister::job::WorkerTarget {
            url: self.worker.clone(),
            ca: self.ca.clone(),
            measurements,
            accept_sim: self.accept_sim,
            accept_test_root: self.accept_test_root,
        })
    }
}

/// How a command verifies the attestation service's TLS certificate.
#[derive(clap::Args, Clone)]
pub(crate) struct ServiceTlsArgs {
    /// The CA certificate (PEM) the service's TLS certificate must chain to (default: the
    /// system's trust store).
    #[arg(long = "server-ca", env = "CLOISTER_SERVER_CA")]
    server_ca: Option<PathBuf>,
    /// Allow plain http:// to a service that is not on this host. Bearer tokens and everything
    /// else then cross the network in clear: only behind a TLS-terminating proxy on this host.
    #[arg(long)]
    insecure_plain_http: bool,
}

impl ServiceTlsArgs {
    pub(crate) fn tls(&self) -> Result<cloister_client::ServiceTls> {
        let tls = match &self.server_ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading the service CA {}", path.display()))?;
                cloister_client::ServiceTls::with_ca_pem(&pem)?
            }
            None => cloister_client::ServiceTls::default(),
        };
        Ok(if self.insecure_plain_http { tls.allow_insecure_plain_http() } else { tls })
    }
}

/// How client commands reach the attestation service.
#[derive(clap::Args, Clone)]
pub(crate) struct ServerArgs {
    /// The attestation service's URL.
    #[arg(long, env = "CLOISTER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Bearer token (operator or tenant admin).
    #[arg(long, env = "CLOISTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: ServiceTlsArgs,
    /// Machine-readable output: one JSON document.
    #[arg(long)]
    json: bool,
}

impl ServerArgs {
    pub(crate) fn connection(&self) -> Result<cloister::admin::Connection> {
        Ok(cloister::admin::Connection {
            server: self.server.clone(),
            token: self.token.clone(),
            tls: self.tls.tls()?,
            json: self.json,
        })
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
