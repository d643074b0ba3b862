//! Starting an attestation service and an enclave worker on loopback, in this process: what
//! `cloister demo` and the end-to-end tests run against.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use cloister_attest::{SimAttester, SimPlatformKey};
use cloister_authority::{Authority, CertificateAuthority, InstanceConfig, InstanceKeys};
use cloister_client::AuthorityClient;
use cloister_sign::{SigningKey, unix_now};
use cloister_types::Hex;
use cloister_verify::SimPlatformPublicKey;
use cloister_worker::{EnclaveIdentity, ObjectStore, Worker};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which appraisal policy the test instance runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstancePolicy {
    /// The built-in development policy that names `sim` explicitly.
    DevSim,
    /// The production default, which rejects `sim`.
    ProductionDefault,
}

/// The compute provider's directories under a work directory.
#[derive(Clone, Debug)]
pub struct ComputeDirs {
    /// Root of everything the compute provider stores.
    pub root: PathBuf,
    /// The attestation service's files.
    pub authority: PathBuf,
    /// The worker's files (the simulated platform key).
    pub worker: PathBuf,
    /// The object store.
    pub objects: PathBuf,
    /// Logs.
    pub logs: PathBuf,
}

impl ComputeDirs {
    /// Creates the directories under `root`.
    pub fn create(root: &Path) -> Result<Self> {
        let dirs = ComputeDirs {
            root: root.to_owned(),
            authority: root.join("authority"),
            worker: root.join("worker"),
            objects: root.join("objects"),
            logs: root.join("logs"),
        };
        for dir in [&dirs.authority, &dirs.worker, &dirs.objects, &dirs.logs] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(dirs)
    }
}

/// The attestation service, running.
pub struct RunningAuthority {
    /// Its base URL.
    pub url: String,
    /// The instance (for tests that drive it directly).
    pub authority: Arc<Authority>,
    task: JoinHandle<()>,
}

impl Drop for RunningAuthority {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes the instance configuration the demo uses and starts the service on an ephemeral port.
pub async fn start_authority(
    dirs: &ComputeDirs,
    policy: InstancePolicy,
    measurements: &[Hex],
    platform_key: &SimPlatformPublicKey,
) -> Result<RunningAuthority> {
    let measurements: Vec<String> = measurements.iter().map(|m| format!("\"{m}\"")).collect();
    let config_text = format!(
        "name = \"demo\"\npolicy = \"{}\"\n\n[reference_values]\nmeasurements = [{}]\n\n\
         [trust_anchors]\nsim_platform_keys = [\"{}\"]\n",
        match policy {
            InstancePolicy::DevSim => "dev-sim",
            InstancePolicy::ProductionDefault => "default",
        },
        measurements.join(", "),
        platform_key,
    );
    let config_path = dirs.authority.join("instance.toml");
    std::fs::write(&config_path, &config_text)?;
    let config = InstanceConfig::from_toml(&config_text).context("instance configuration")?;
    let ca = CertificateAuthority::generate(&config.name, unix_now())?;
    write_secret(&dirs.authority.join("ca-key.pem"), ca.key_pem().as_bytes())?;
    std::fs::write(dirs.authority.join("ca.pem"), ca.certificate_pem())?;
    let token_key = SigningKey::generate();
    write_secret(&dirs.authority.join("token-key"), token_key.to_text().as_bytes())?;
    let authority = Arc::new(Authority::new(config, InstanceKeys { token_key, ca }));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = cloister_authority::http::router(authority.clone());
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "attestation service stopped");
        }
    });
    Ok(RunningAuthority { url: format!("http://{addr}"), authority, task })
}

/// The enclave worker, running.
pub struct RunningWorker {
    /// Its base URL (https).
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    /// The worker state (for tests that inspect it).
    pub worker: Arc<Worker>,
    task: JoinHandle<()>,
}

impl RunningWorker {
    /// Whether the server task is still running.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Attests a worker with the attestation service at `authority_url` and serves its API.
pub async fn start_worker(
    dirs: &ComputeDirs,
    attester: &SimAttester,
    authority_url: &str,
) -> Result<RunningWorker> {
    let authority = AuthorityClient::new(authority_url)?;
    let identity = EnclaveIdentity::establish(attester, &authority).await?;
    let store = ObjectStore::open(&dirs.objects)?;
    let worker = Arc::new(Worker { identity, store });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = worker.clone();
    let task = tokio::spawn(async move {
        if let Err(error) = cloister_worker::serve(listener, served).await {
            tracing::error!(%error, "worker stopped");
        }
    });
    Ok(RunningWorker { url: format!("https://{addr}"), addr, worker, task })
}

/// Loads (or creates) the simulated platform's key under the worker's directory.
pub fn sim_platform_key(dirs: &ComputeDirs) -> Result<SimPlatformKey> {
    Ok(SimPlatformKey::load_or_create(&dirs.worker.join("sim-platform-key.pem"))?)
}

/// Writes a file readable only by its owner.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
