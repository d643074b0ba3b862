//! Starting an attestation service and an enclave worker on loopback, in this process: what
//! `cloister demo` and the end-to-end tests run against.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use cloister_attest::{Attester, SimAttester, SimPlatformKey};
use cloister_authority::service::Service;
use cloister_client::{AuthorityClient, ServiceChannel, ServiceClient, ServiceTls};
use cloister_types::api::AttestRequest;
use cloister_types::manage::{
    CreateInstance, InstanceSettings, KeyView, PolicySpec, RegisterKey, TrustAnchorSpec,
};
use cloister_types::{Base64Url, Hex, RuntimeData};
use cloister_verify::SimPlatformPublicKey;
use cloister_worker::batch::BatchQueue;
use cloister_worker::{EnclaveIdentity, ObjectStore, Worker};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::serve::{ServeOptions, open_service};

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
    /// The model repository (sealed weights and signed manifests).
    pub models: PathBuf,
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
            models: root.join("models"),
        };
        for dir in [&dirs.authority, &dirs.worker, &dirs.objects, &dirs.logs, &dirs.models] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(dirs)
    }
}

/// The attestation service, running, with the demo tenant and its instance.
pub struct RunningAuthority {
    /// Its base URL.
    pub url: String,
    /// The demo instance's id.
    pub instance_id: String,
    /// The demo tenant's admin token.
    pub tenant_token: String,
    /// The operator's token.
    pub operator_token: String,
    /// The service (for tests that drive it directly).
    pub service: Arc<Service>,
    /// How clients reach it: HTTPS trusting the private CA it was given.
    pub tls: ServiceTls,
    /// That CA's certificate (PEM file), what `--ca` names.
    pub tls_ca: PathBuf,
    task: JoinHandle<()>,
}

impl RunningAuthority {
    /// A client of the demo instance's attestation routes and the key broker.
    pub fn client(&self) -> Result<AuthorityClient> {
        Ok(AuthorityClient::for_instance_with(&self.url, &self.instance_id, &self.tls)?)
    }

    /// A client of the service-wide routes (data-set registration, the service key).
    pub fn service_client(&self) -> Result<AuthorityClient> {
        Ok(AuthorityClient::new_with(&self.url, &self.tls)?)
    }

    /// The demo instance as an enclave reaches it: answers must be signed by this service's key.
    pub fn channel(&self) -> Result<ServiceChannel> {
        Ok(ServiceChannel::new(
            self.client()?,
            &self.instance_id,
            self.service.signing_public_key(),
        ))
    }

    /// The service's signing-key fingerprint (what workers pin).
    pub fn fingerprint(&self) -> String {
        self.service.signing_public_key().fingerprint_hex()
    }

    /// A management client acting as the demo tenant's admin.
    pub fn tenant_admin(&self) -> Result<ServiceClient> {
        Ok(ServiceClient::with_tls(&self.url, Some(&self.tenant_token), &self.tls)?)
    }

    /// Registers a key-broker key of the demo tenant that the broker releases only to this
    /// instance's enclaves measured one of `measurements`.
    pub async fn register_broker_key(&self, name: &str, measurements: &[Hex]) -> Result<KeyView> {
        let request = RegisterKey {
            name: name.to_owned(),
            secret_key: None,
            release_policy: cloister_policy::ReleasePolicy::template(measurements),
            instances: vec![self.instance_id.clone()],
        };
        Ok(self.tenant_admin()?.register_key(&request).await?)
    }

    /// Whether the server task is still running.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for RunningAuthority {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The demos' compute side: a simulated TEE measuring the running executable (the measurement
/// a reproducible build would publish), and the attestation service with `policy` admitting
/// that measurement. Returns the attester, the published measurement and the service.
pub async fn start_demo_authority(
    dirs: &ComputeDirs,
    policy: InstancePolicy,
) -> Result<(Arc<SimAttester>, Hex, RunningAuthority)> {
    let platform_key = sim_platform_key(dirs)?;
    let platform_public = platform_key.public_key();
    let attester = Arc::new(SimAttester::for_current_executable(platform_key)?);
    let published = Hex(attester.measurement().to_vec());
    let authority =
        start_authority(dirs, policy, std::slice::from_ref(&published), &platform_public).await?;
    Ok((attester, published, authority))
}

/// The compute side of a development run: the attestation service with a `dev-sim` instance,
/// an attested worker, and what parties need to verify it.
pub struct DevCompute {
    /// The worker's simulated attester (to start further workers with).
    pub attester: Arc<SimAttester>,
    /// The worker's measurement, as the instance's reference values publish it.
    pub measurement: Hex,
    /// The attestation service.
    pub authority: RunningAuthority,
    /// The attested worker.
    pub worker: RunningWorker,
    /// The instance CA certificate (PEM) enclave certificates chain to.
    pub ca_pem: String,
}

/// [`start_dev_compute`] with the worker started with an untrusted accelerator (`HOST:PORT` of
/// `cloister serve accelerator`).
pub async fn start_dev_compute_with_accelerator(
    dirs: &ComputeDirs,
    accelerator: &str,
) -> Result<DevCompute> {
    let (attester, measurement, authority) =
        start_demo_authority(dirs, InstancePolicy::DevSim).await?;
    let channel = authority.channel()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let worker =
        start_worker_with_accelerator(dirs, &attester, &channel, listener, accelerator).await?;
    let ca_pem = channel.client().instance().await?.ca_certificate_pem;
    Ok(DevCompute { attester, measurement, authority, worker, ca_pem })
}

/// Starts [`start_demo_authority`] with the `dev-sim` policy and an attested worker under `dirs`.
pub async fn start_dev_compute(dirs: &ComputeDirs) -> Result<DevCompute> {
    let (attester, measurement, authority) =
        start_demo_authority(dirs, InstancePolicy::DevSim).await?;
    let channel = authority.channel()?;
    let worker = start_worker(dirs, &attester, &channel).await?;
    let ca_pem = channel.client().instance().await?.ca_certificate_pem;
    Ok(DevCompute { attester, measurement, authority, worker, ca_pem })
}

/// Starts the multi-tenant attestation service on SQLite under the compute provider's
/// directory (ephemeral port, HTTPS with a private CA made for it), creates the tenant `demo`
/// and its instance `demo` with the given policy, reference measurements and simulated platform
/// key.
pub async fn start_authority(
    dirs: &ComputeDirs,
    policy: InstancePolicy,
    measurements: &[Hex],
    platform_key: &SimPlatformPublicKey,
) -> Result<RunningAuthority> {
    start_authority_with(dirs, policy, measurements, platform_key, InstanceSettings::default())
        .await
}

/// [`start_authority`] with the instance issuing under `settings` (lifetimes).
pub async fn start_authority_with(
    dirs: &ComputeDirs,
    policy: InstancePolicy,
    measurements: &[Hex],
    platform_key: &SimPlatformPublicKey,
    settings: InstanceSettings,
) -> Result<RunningAuthority> {
    let options = ServeOptions {
        listen: "127.0.0.1:0".to_owned(),
        database: format!("sqlite://{}", dirs.authority.join("authority.db").display()),
        operator_token_file: dirs.authority.join("operator-token"),
        key_file: None,
        collateral_bundle: None,
        fetch: None,
        trust_bundles_from: Vec::new(),
        tls: None,
        insecure_plain_http: false,
        http: Default::default(),
        checkpoint_interval: std::time::Duration::from_secs(10),
        tee: None,
    };
    let service = open_service(&options).await?;
    let operator_token = std::fs::read_to_string(&options.operator_token_file)?.trim().to_owned();
    let issued = cloister_authority::tls::private_ca(&["127.0.0.1".to_owned()], 30)?;
    let tls_ca = dirs.authority.join("tls-ca.pem");
    std::fs::write(&tls_ca, &issued.ca_certificate)?;
    let server_config = cloister_authority::tls::server_config(
        issued.server_chain.as_bytes(),
        issued.server_key.as_bytes(),
    )?;
    let tls = ServiceTls::with_ca_pem(issued.ca_certificate.as_bytes())?;
    let listener = TcpListener::bind(&options.listen).await?;
    let addr = listener.local_addr()?;
    let app = cloister_authority::http::service_router(service.clone());
    let task = tokio::spawn(async move {
        let forever = std::future::pending::<()>();
        if let Err(error) =
            cloister_authority::tls::serve(listener, app, Some(server_config), forever).await
        {
            tracing::error!(%error, "attestation service stopped");
        }
    });
    let url = format!("https://{addr}");
    let operator = ServiceClient::with_tls(&url, Some(&operator_token), &tls)?;
    let tenant = operator.create_tenant("demo").await.context("creating the demo tenant")?;
    let admin = ServiceClient::with_tls(&url, Some(&tenant.token), &tls)?;
    let instance = admin
        .create_instance(&CreateInstance {
            name: "demo".to_owned(),
            policy: PolicySpec::Builtin(
                match policy {
                    InstancePolicy::DevSim => "dev-sim",
                    InstancePolicy::ProductionDefault => "default",
                }
                .to_owned(),
            ),
            reference_values: serde_json::json!({ "measurements": measurements }),
            trust_anchors: TrustAnchorSpec {
                sim_platform_keys: vec![platform_key.to_string()],
                ..TrustAnchorSpec::default()
            },
            settings,
        })
        .await
        .context("creating the demo instance")?;
    Ok(RunningAuthority {
        url,
        instance_id: instance.id,
        tenant_token: tenant.token,
        operator_token,
        service,
        tls,
        tls_ca,
        task,
    })
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

/// Attests a worker with the attestation service instance `service` and serves its API; the
/// worker keeps `attester` to attest again when the key broker asks it to.
pub async fn start_worker<A: Attester + 'static>(
    dirs: &ComputeDirs,
    attester: &Arc<A>,
    service: &ServiceChannel,
) -> Result<RunningWorker> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    start_worker_with(dirs, attester, service, listener, std::time::Duration::ZERO, |app| app).await
}

/// Attests a worker and serves its API on `listener`, pausing `chunk_pause` after each batch
/// chunk, with the worker's routes passed through `wrap` first (tests add layers that record
/// what the compute side sees).
pub async fn start_worker_with<A: Attester + 'static>(
    dirs: &ComputeDirs,
    attester: &Arc<A>,
    service: &ServiceChannel,
    listener: TcpListener,
    chunk_pause: std::time::Duration,
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> Result<RunningWorker> {
    start_worker_configured(dirs, attester, service, listener, chunk_pause, None, wrap).await
}

/// Attests a worker started with an untrusted accelerator (`HOST:PORT` of `cloister serve
/// accelerator`, as `serve worker --accelerator` names it) and serves its API on `listener`.
pub async fn start_worker_with_accelerator<A: Attester + 'static>(
    dirs: &ComputeDirs,
    attester: &Arc<A>,
    service: &ServiceChannel,
    listener: TcpListener,
    accelerator: &str,
) -> Result<RunningWorker> {
    let accelerator = Some(accelerator.to_owned());
    let pause = std::time::Duration::ZERO;
    start_worker_configured(dirs, attester, service, listener, pause, accelerator, |app| app).await
}

async fn start_worker_configured<A: Attester + 'static>(
    dirs: &ComputeDirs,
    attester: &Arc<A>,
    service: &ServiceChannel,
    listener: TcpListener,
    chunk_pause: std::time::Duration,
    accelerator: Option<String>,
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> Result<RunningWorker> {
    let attester: Arc<dyn Attester> = attester.clone();
    let identity =
        EnclaveIdentity::establish(attester, service, cloister_seal::Suite::X25519).await?;
    let store = ObjectStore::open(&dirs.objects)?;
    let batches = Arc::new(BatchQueue::open(&dirs.worker.join("jobs.db"), chunk_pause).await?);
    let repository = cloister_repository::Repository::open(&dirs.models.display().to_string())?;
    let worker = Arc::new(Worker {
        identity,
        store,
        service: service.clone(),
        service_trust: cloister_worker::service_pin::ServiceTrust::KeyOnly,
        catalog: cloister_worker::online::Catalog::new(),
        batches,
        repository,
        deployments: cloister_worker::deployments::Deployments::open(
            &dirs.worker.join("deployments"),
        )?,
        llm_threads: cloister_engine::default_threads(),
        accelerator,
        metrics: cloister_worker::metrics::WorkerMetrics::new()?,
    });
    let addr = listener.local_addr()?;
    let served = worker.clone();
    let app = wrap(cloister_worker::server::router(worker.clone()));
    let task = tokio::spawn(async move {
        if let Err(error) = cloister_worker::serve_app(listener, &served, app).await {
            tracing::error!(%error, "worker stopped");
        }
    });
    Ok(RunningWorker { url: format!("https://{addr}"), addr, worker, task })
}

/// Loads (or creates) the simulated platform's key under the worker's directory.
pub fn sim_platform_key(dirs: &ComputeDirs) -> Result<SimPlatformKey> {
    Ok(SimPlatformKey::load_or_create(&dirs.worker.join("sim-platform-key.pem"))?)
}

/// Refuses when any of `paths` exists: key generation writes only new files, so it never
/// replaces a key (or the public key, certificate or CA others were given) in place.
pub fn refuse_overwrite(paths: &[&Path]) -> Result<()> {
    for path in paths {
        if path.exists() || path.is_symlink() {
            anyhow::bail!(
                "{} already exists; refusing to overwrite it (move it away or choose another path)",
                path.display()
            );
        }
    }
    Ok(())
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

/// An attestation request with simulated evidence answering `nonce`, for the TLS key whose DER
/// SubjectPublicKeyInfo is `tls_spki`, binding fresh (discarded) HPKE and receipt keys and the
/// attestation service with signing-key fingerprint `service_fingerprint`: what tests and the
/// load benchmark submit.
pub fn sim_attest_request(
    attester: &SimAttester,
    nonce: String,
    tls_spki: Vec<u8>,
    service_fingerprint: &str,
) -> Result<AttestRequest> {
    let receipt = cloister_sign::SigningKey::generate().public_key().into();
    sim_attest_request_with(attester, nonce, tls_spki, service_fingerprint, &receipt)
}

/// [`sim_attest_request`] binding the receipt key `receipt` (whose private half signs the
/// enclave's key release requests; ES256, or SM2 for a ShangMi instance) instead of a discarded
/// one.
pub fn sim_attest_request_with(
    attester: &SimAttester,
    nonce: String,
    tls_spki: Vec<u8>,
    service_fingerprint: &str,
    receipt: &cloister_sign::AnyVerifyingKey,
) -> Result<AttestRequest> {
    sim_attest_request_binding(attester, nonce, tls_spki, service_fingerprint, &receipt.to_text())
}

/// [`sim_attest_request_with`] binding `receipt_pk` as given, whatever it is (attack tests).
pub fn sim_attest_request_binding(
    attester: &SimAttester,
    nonce: String,
    tls_spki: Vec<u8>,
    service_fingerprint: &str,
    receipt_pk: &str,
) -> Result<AttestRequest> {
    use cloister_attest::Attester as _;
    use sha2::Digest as _;
    let runtime_data = RuntimeData {
        nonce,
        hpke_pk: cloister_seal::RecipientSecretKey::generate().public_key().to_text(),
        tls_spki_sha256: Hex(sha2::Sha256::digest(&tls_spki).to_vec()),
        receipt_pk: receipt_pk.to_owned(),
        extra: [(
            cloister_types::api::SERVICE_KEY_FIELD.to_owned(),
            serde_json::Value::String(service_fingerprint.to_owned()),
        )]
        .into_iter()
        .collect(),
    };
    Ok(AttestRequest { evidence: attester.attest(&runtime_data)?, tls_spki: Base64Url(tls_spki) })
}
