//! `cloister serve attestation`: the multi-tenant attestation service on a database, with its
//! key file and operator token, until interrupted (then it signs a last audit checkpoint).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cloister_authority::service::{Service, new_token};
use cloister_authority::store::{Store, redact};
use cloister_seal::RecipientSecretKey;
use cloister_sign::unix_now;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::testbed::write_secret;

/// Everything `serve attestation` takes.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database: String,
    /// Where the operator token is (written on first start).
    pub operator_token_file: PathBuf,
    /// The service key file (default: `service.key` beside the operator token file).
    pub key_file: Option<PathBuf>,
    /// Offline vendor collateral to preload.
    pub collateral_bundle: Option<PathBuf>,
    /// Fetch missing collateral from the vendors (with this Intel PCS replacement, if any).
    pub fetch: Option<cloister_authority::VendorUrls>,
    /// Signing-key fingerprints of the services whose instance bundles this one imports.
    pub trust_bundles_from: Vec<String>,
    /// The TLS certificate chain and key (PEM files); `None` serves plain HTTP, which
    /// [`serve`] allows only on a loopback address unless `insecure_plain_http`.
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy on the host).
    pub insecure_plain_http: bool,
    /// Rate limits and trusted proxies.
    pub http: cloister_authority::http::HttpOptions,
    /// How often the audit log's tail is checkpointed when it grew.
    pub checkpoint_interval: Duration,
    /// The TEE the service runs in, when it does: it attests its own keys with it and publishes
    /// the evidence in its key document (`GET /v1/service-key`).
    pub tee: Option<crate::serve_worker::WorkerTee>,
}

/// How often a service in a TEE collects its evidence again (the simulated TEE's reports are
/// fresh for ten minutes; hardware evidence carries no time, and stays valid).
const SELF_ATTESTATION_REFRESH: Duration = Duration::from_secs(5 * 60);

/// Collects the service's evidence with `attester` over its keys and publishes it.
async fn attest_service(
    service: &Service,
    attester: &Arc<dyn cloister_attest::Attester>,
    tls_spki_sha256: &cloister_types::Hex,
) -> Result<cloister_types::TeeKind> {
    let label = format!("cloister-service-{}", unix_now());
    let runtime_data = service.attestation_runtime_data(tls_spki_sha256.clone(), label);
    let attester = attester.clone();
    let evidence = tokio::task::spawn_blocking(move || attester.attest(&runtime_data))
        .await
        .context("the attesting task panicked")?
        .context("collecting the service's own evidence")?;
    let tee = evidence.tee;
    service.set_attestation(evidence)?;
    Ok(tee)
}

/// SHA-256 of the SPKI of the leaf certificate in the PEM file `path`.
fn tls_spki_sha256(path: &Path) -> Result<cloister_types::Hex> {
    use sha2::Digest as _;
    use x509_parser::prelude::FromDer as _;
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let chain = cloister_types::pem_certificates(&pem)
        .with_context(|| format!("{} holds no readable certificate", path.display()))?;
    let leaf = chain.first().with_context(|| format!("{} holds no certificate", path.display()))?;
    let (_, leaf) = x509_parser::certificate::X509Certificate::from_der(leaf).map_err(|e| {
        anyhow::anyhow!("{}: the leaf certificate does not parse: {e}", path.display())
    })?;
    Ok(cloister_types::Hex(sha2::Sha256::digest(leaf.public_key().raw).to_vec()))
}

/// A TLS certificate chain (leaf first) and its private key, both PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain.
    pub certificate: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The rustls configuration for these files.
    pub fn server_config(&self) -> Result<Arc<cloister_authority::tls::ServerConfig>> {
        let read = |path: &Path| -> Result<Zeroizing<Vec<u8>>> {
            Ok(Zeroizing::new(
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            ))
        };
        let certificate = read(&self.certificate)?;
        let key = read(&self.key)?;
        cloister_authority::tls::server_config(&certificate, &key).with_context(|| {
            format!("the TLS pair {} and {}", self.certificate.display(), self.key.display())
        })
    }
}

/// Reads the service key, creating it (mode 0600) on first start.
pub fn load_or_create_service_key(path: &Path) -> Result<RecipientSecretKey> {
    if path.exists() {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        return RecipientSecretKey::from_text(&text)
            .with_context(|| format!("{} is not a service key", path.display()));
    }
    let key = RecipientSecretKey::generate();
    write_secret(path, key.to_text().as_bytes())?;
    Ok(key)
}

/// `cloister keygen --tls-server HOST…`: a private CA and a server certificate it issued for
/// `hosts`, for `serve attestation --tls-cert/--tls-key` and the clients' `--ca`.
pub fn keygen_tls_server(hosts: &[String], key: &Path, chain: &Path, ca: &Path) -> Result<()> {
    crate::testbed::refuse_overwrite(&[key, chain, ca])?;
    let issued = cloister_authority::tls::private_ca(hosts, 365)?;
    write_secret(key, issued.server_key.as_bytes())?;
    std::fs::write(chain, &issued.server_chain)
        .with_context(|| format!("writing {}", chain.display()))?;
    std::fs::write(ca, &issued.ca_certificate)
        .with_context(|| format!("writing {}", ca.display()))?;
    eprintln!(
        "TLS certificate for {} written to {} (key {}); clients trust {} with --ca",
        hosts.join(", "),
        chain.display(),
        key.display(),
        ca.display()
    );
    Ok(())
}

/// Reads the operator token, creating a fresh one (mode 0600) when the file does not exist.
/// Returns the token and whether it was created now.
pub fn load_or_create_operator_token(path: &Path) -> Result<(Zeroizing<String>, bool)> {
    if path.exists() {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let token = Zeroizing::new(text.trim().to_owned());
        anyhow::ensure!(!token.is_empty(), "the operator token file {} is empty", path.display());
        return Ok((token, false));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let token = Zeroizing::new(new_token());
    write_secret(path, token.as_bytes())?;
    Ok((token, true))
}

/// Opens the database and the service as `serve attestation` does (also used by the tests).
pub async fn open_service(options: &ServeOptions) -> Result<Arc<Service>> {
    let key_file = match &options.key_file {
        Some(path) => path.clone(),
        None => options
            .operator_token_file
            .parent()
            .map_or_else(|| PathBuf::from("service.key"), |dir| dir.join("service.key")),
    };
    let (token, created) = load_or_create_operator_token(&options.operator_token_file)?;
    let service_key = load_or_create_service_key(&key_file)?;
    let store = Store::connect(&options.database)
        .await
        .with_context(|| format!("opening the database {}", redact(&options.database)))?;
    for fingerprint in &options.trust_bundles_from {
        let ok = fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit());
        anyhow::ensure!(
            ok,
            "--trust-bundles-from {fingerprint:?} is not a signing-key fingerprint (64 hex digits, \
             as the source service prints at start and publishes at /v1/service-key)"
        );
    }
    let mut service = Service::open(store, service_key)
        .await?
        .with_trusted_bundle_sources(options.trust_bundles_from.clone());
    if let Some(urls) = options.fetch.clone() {
        let fetcher = cloister_authority::fetch::HttpFetcher::new(urls)?;
        service = service.with_fetcher(Box::new(fetcher));
    }
    service.ensure_operator_token(&token, unix_now() as i64).await?;
    if created {
        tracing::info!(
            path = %options.operator_token_file.display(),
            "wrote a new operator token"
        );
    }
    if let Some(path) = &options.collateral_bundle {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let count = service
            .collateral()
            .load_bundle(&bytes)
            .with_context(|| format!("loading the collateral bundle {}", path.display()))?;
        tracing::info!(count, path = %path.display(), "preloaded vendor collateral");
    }
    Ok(Arc::new(service))
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn serve(options: ServeOptions) -> Result<()> {
    let tls = options.tls.as_ref().map(TlsFiles::server_config).transpose()?;
    let listener = TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let addr = listener.local_addr()?;
    anyhow::ensure!(
        tls.is_some() || addr.ip().is_loopback() || options.insecure_plain_http,
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: bearer tokens \
         and everything else would cross the network in clear. Give --tls-cert and --tls-key \
         (`cloister keygen --tls-server HOST` makes a private CA and a server certificate), or \
         --insecure-plain-http behind a TLS-terminating proxy on this host"
    );
    let service = open_service(&options).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving plain HTTP on a non-loopback address (--insecure-plain-http)");
    }
    for source in service.trusted_bundle_sources() {
        tracing::info!(fingerprint = %source, "imports instance bundles signed by this key");
    }
    let refresher = match &options.tee {
        None => {
            tracing::info!(
                "the service does not attest itself (no --tee): exports to it need the \
                 exporter's --allow-unattested-target"
            );
            None
        }
        Some(tee) => {
            let dir = options.operator_token_file.parent().unwrap_or(Path::new("."));
            let attester = tee.cpu_attester(dir)?;
            let spki = match &options.tls {
                Some(files) => tls_spki_sha256(&files.certificate)?,
                None => cloister_types::Hex(Vec::new()),
            };
            let kind = attest_service(&service, &attester, &spki).await?;
            let collecting = attester.clone();
            service.set_self_attester(
                Arc::new(move |runtime_data| {
                    collecting.attest(runtime_data).map_err(|e| format!("{e:#}"))
                }),
                spki.clone(),
            );
            tracing::info!(
                tee = %kind,
                "the service attests its keys; its key document carries the evidence"
            );
            let (service, attester) = (service.clone(), attester.clone());
            Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SELF_ATTESTATION_REFRESH).await;
                    if let Err(error) = attest_service(&service, &attester, &spki).await {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "refreshing the service's evidence failed"
                        );
                    }
                }
            }))
        }
    };
    let purging = service.clone();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(error) = purging.purge_expired_nonces(unix_now() as i64).await {
                tracing::warn!(%error, "expired challenges could not be purged");
            }
        }
    });
    let checkpointing = service.clone();
    let interval = options.checkpoint_interval;
    let checkpoints = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = checkpointing.checkpoint(unix_now() as i64).await {
                tracing::warn!(%error, "the audit log could not be checkpointed");
            }
        }
    });
    let app = cloister_authority::http::service_router_with(service.clone(), &options.http);
    // The line operators and scripts wait for: the URL and the signing key's fingerprint (workers
    // pin it with --service-fingerprint; `cloister audit verify` takes it as --service-key).
    tracing::info!(
        event = crate::logging::LISTENING,
        url = format!("{scheme}://{addr}"),
        service_fingerprint = service.signing_public_key().fingerprint_hex(),
        "attestation service listening"
    );
    cloister_authority::tls::serve(listener, app, tls, shutdown_signal()).await?;
    purge.abort();
    checkpoints.abort();
    if let Some(refresher) = refresher {
        refresher.abort();
    }
    service.checkpoint(unix_now() as i64).await.context("signing the last audit checkpoint")?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
