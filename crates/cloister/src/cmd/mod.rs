//! The `cloister` command's groups, one module each: their arguments and how each calls the
//! library. Arguments several groups share (which worker, which service) are here.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use cloister::parties::parse_measurements;

pub(crate) mod admin;
pub(crate) mod data;
pub(crate) mod demo;
pub(crate) mod envelope;
pub(crate) mod evidence;
pub(crate) mod federate;
pub(crate) mod job;
pub(crate) mod model;
pub(crate) mod owner;
pub(crate) mod package;
pub(crate) mod proxy;
pub(crate) mod serve;

/// Which worker a `job` command talks to, and what its enclave must be (checked during the TLS
/// handshake, before anything is sent).
#[derive(clap::Args, Clone)]
pub(crate) struct WorkerTargetArgs {
    /// The worker's URL (what `cloister serve worker` prints). A sharded job's `job` commands
    /// take several (repeat, or separate with commas): shard i runs on the i-th, round robin.
    #[arg(long, env = "CLOISTER_WORKER", value_parser = url_with_scheme, value_delimiter = ',')]
    worker: Vec<String>,
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
    /// The one worker a command talks to.
    pub(crate) fn target(&self) -> Result<cloister::job::WorkerTarget> {
        match self.targets()?.as_slice() {
            [one] => Ok(one.clone()),
            several => bail!(
                "this command talks to one worker, {} were given (--worker); several are for a \
                 sharded job's plan only",
                several.len()
            ),
        }
    }

    /// Every worker given, in order, each with the same expectations.
    pub(crate) fn targets(&self) -> Result<Vec<cloister::job::WorkerTarget>> {
        if self.worker.is_empty() {
            bail!("give the worker's URL with --worker (or CLOISTER_WORKER)");
        }
        self.with_urls(&self.worker)
    }

    /// The expectations alone, for results read from files (`job fetch --from`).
    pub(crate) fn expecting(&self) -> Result<Vec<cloister::job::WorkerTarget>> {
        self.with_urls(&[String::new()])
    }

    fn with_urls(&self, urls: &[String]) -> Result<Vec<cloister::job::WorkerTarget>> {
        let measurements = parse_measurements(&self.measurements)?;
        Ok(urls
            .iter()
            .map(|url| cloister::job::WorkerTarget {
                url: url.clone(),
                ca: self.ca.clone(),
                measurements: measurements.clone(),
                accept_sim: self.accept_sim,
                accept_test_root: self.accept_test_root,
            })
            .collect())
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
    #[arg(long, env = "CLOISTER_SERVER", default_value = "http://127.0.0.1:8080",
          value_parser = url_with_scheme)]
    server: String,
    /// A file holding the bearer token (operator or tenant admin). Without it the token is
    /// taken from CLOISTER_TOKEN. A token is never given on the command line, where process
    /// listings show it.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Refused: a token on the command line shows in process listings (see --token-file).
    #[arg(long, hide = true)]
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
            token: Some(self.token()?),
            tls: self.tls.tls()?,
            json: self.json,
        })
    }

    /// The bearer token: from --token-file, else CLOISTER_TOKEN; never from the command line.
    fn token(&self) -> Result<String> {
        if self.token.is_some() {
            bail!(
                "--token is not accepted: a token on the command line shows in process listings; \
                 set CLOISTER_TOKEN or give --token-file PATH"
            );
        }
        let token = match &self.token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?,
            None => std::env::var("CLOISTER_TOKEN").unwrap_or_default(),
        };
        let token = token.trim();
        if token.is_empty() {
            match &self.token_file {
                Some(path) => bail!("the token file {} is empty", path.display()),
                None => bail!(
                    "no token: set CLOISTER_TOKEN to your operator or tenant admin token, or give \
                     --token-file PATH"
                ),
            }
        }
        Ok(token.to_owned())
    }
}

/// A URL flag's value: it must name its scheme (`localhost:8080` does not).
pub(crate) fn url_with_scheme(text: &str) -> Result<String, String> {
    let scheme = text.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme)
            if !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') =>
        {
            Ok(text.to_owned())
        }
        _ => Err(format!(
            "{text:?} has no scheme: add https:// (or http:// for a service on this host), e.g. \
             https://{text}"
        )),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
