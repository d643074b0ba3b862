//! `cloister serve worker`: the enclave worker as a service. It attests with the TEE `--tee`
//! names (`auto` detects the hardware and never falls back to the simulated TEE), opens its object store and batch-job queue under the data directory, prints one JSON line
//! describing itself on stdout, resumes unfinished batch jobs, restores the models deployed to it
//! before (`DATA_DIR/deployments/`, every check redone) and serves the worker API on TLS until
//! interrupted.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cloister_attest::{Attester, BackendOptions, HardwareTee, SimAttester, SimPlatformKey};
use cloister_client::{AuthorityClient, ServiceChannel};
use cloister_types::Hex;
use cloister_worker::batch::{self, BatchQueue};
use cloister_worker::service_pin::ServiceTrust;
use cloister_worker::{EnclaveIdentity, ObjectStore, Worker};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;

/// Everything `serve worker` takes.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// The attestation service's URL.
    pub authority: String,
    /// The attestation instance to attest with (`in_…`).
    pub instance: String,
    /// The fingerprint of the attestation service's signing key (64 hex digits, as `serve
    /// attestation` prints it): bound into the evidence, and every answer the enclave acts on
    /// must be signed by that key.
    pub service_fingerprint: String,
    /// What the attestation service must show beyond its signing key (checked at start and
    /// before every renewal).
    pub service_trust: ServiceTrust,
    /// How the attestation service's TLS certificate is verified.
    pub authority_tls: cloister_client::ServiceTls,
    /// The worker's directory: `objects/`, `jobs.db`, the lock file.
    pub data_dir: PathBuf,
    /// The TEE the enclave attests with.
    pub tee: WorkerTee,
    /// The confidential GPUs attested with it.
    pub gpu: GpuOptions,
    /// Pause after each batch chunk.
    pub chunk_pause: Duration,
    /// The model repository (directory or `s3://…`); `None` = `DATA_DIR/models`.
    pub repository: Option<String>,
    /// The onnxruntime library to load (checked against the pinned SHA-256 first).
    pub onnxruntime: PathBuf,
    /// The threads each GGUF language model generates on.
    pub llm_threads: std::num::NonZeroUsize,
    /// The untrusted accelerator (`HOST:PORT` of `cloister serve accelerator`) for models whose
    /// serving policy allows offloading; `None`: such models fail to deploy.
    pub accelerator: Option<String>,
    /// The enclave's suite (its envelope and receipt keys, the grants and recipients it
    /// takes): X25519/ES256, or ShangMi (SM2).
    pub suite: cloister_seal::Suite,
}

/// Loads the onnxruntime library at `path` for the ONNX engine: the file is read once, and the
/// engine checks those bytes against its pinned SHA-256 and loads exactly them. When that fails
/// (no such file, other bytes, no memfd), ONNX models run on tract; the reason is logged and
/// returned.
pub fn load_onnxruntime(path: &Path) -> Result<(), String> {
    let loaded = std::fs::read(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|bytes| cloister_engine::load_onnxruntime(&bytes).map_err(|e| e.to_string()));
    match &loaded {
        Ok(()) => tracing::info!(
            path = %path.display(),
            version = cloister_engine::ONNXRUNTIME_VERSION,
            "onnxruntime loaded: ONNX models run on it unless their serving policy pins tract"
        ),
        Err(reason) => tracing::warn!(
            %reason,
            "onnxruntime not loaded: ONNX models run on tract (a policy pinning ort fails)"
        ),
    }
    loaded
}

/// What the attestation service must run, from `--service-measurement` values and an optional
/// `--service-sim-platform-key` file: its signing key alone when no measurement is named; else
/// fresh evidence of a named build, verified with the vendors' roots (plus the sim platform key,
/// development only).
pub fn service_trust(
    measurements: &[String],
    sim_platform_key: Option<&Path>,
) -> Result<ServiceTrust> {
    if measurements.is_empty() {
        return Ok(ServiceTrust::KeyOnly);
    }
    {
        let measurements = measurements
            .iter()
            .map(|m| Hex::parse(m).with_context(|| format!("--service-measurement {m} is not hex")))
            .collect::<Result<Vec<_>>>()?;
        let mut anchors = cloister_verify::TrustAnchors::new();
        if let Some(path) = sim_platform_key {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let key = text
                .trim()
                .parse::<cloister_verify::SimPlatformPublicKey>()
                .with_context(|| format!("{} is not a sim platform public key", path.display()))?;
            anchors = anchors.with_sim_platform_key(key);
        }
        Ok(ServiceTrust::Measured { measurements, anchors })
    }
}

/// Whether and how the worker attaches NVIDIA confidential GPUs' evidence (`gpu0`, …).
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Refuse to start unless every GPU NVML sees is in confidential-computing mode and attested.
    pub require: bool,
    /// NVML (a path, or a name the dynamic loader searches).
    pub nvml_library: PathBuf,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self { require: false, nvml_library: "libnvidia-ml.so.1".into() }
    }
}

impl GpuOptions {
    /// `cpu` with the machine's confidential GPUs when there are any: with a hardware TEE, GPUs
    /// are looked for and attached when NVML loads and they are in CC mode; GPUs that are not are
    /// named in a warning and left out (never claimed); with `require`, anything short of
    /// attested GPUs is the error.
    fn attach(&self, cpu: Box<dyn Attester>, hardware: bool) -> Result<Box<dyn Attester>> {
        if !hardware && !self.require {
            return Ok(cpu);
        }
        match cloister_attest::NvidiaGpus::open(&self.nvml_library) {
            Ok(gpus) => {
                tracing::info!(
                    gpus = gpus.count(),
                    tee = %cpu.tee(),
                    "attesting NVIDIA GPUs in confidential-computing mode with the CPU TEE's evidence"
                );
                Ok(Box::new(cloister_attest::WithGpus::new(cpu, gpus)))
            }
            Err(error) if self.require => {
                Err(anyhow::Error::new(error).context("--require-gpu: no attested GPU"))
            }
            Err(cloister_attest::AttestError::Nvml(error)) => {
                tracing::info!(
                    reason = %error,
                    "no NVIDIA GPU evidence (NVML not usable); attesting the CPU TEE only"
                );
                Ok(cpu)
            }
            Err(error) => {
                tracing::warn!(
                    reason = %error,
                    "the GPUs are NOT attested and must not be given confidential work; attesting \
                     the CPU TEE only (pass --require-gpu to refuse to start instead)"
                );
                Ok(cpu)
            }
        }
    }
}

/// Which TEE a worker attests with.
#[derive(Clone, Debug)]
pub enum WorkerTee {
    /// A hardware TEE's interface (`auto`: whichever this machine has).
    Hardware(HardwareTee, BackendOptions),
    /// The simulated TEE, only when named: development only, it protects nothing.
    Sim {
        /// Its platform key (default `DATA_DIR/sim-platform-key.pem`, created if missing).
        platform_key: Option<PathBuf>,
    },
}

impl WorkerTee {
    /// Opens the attester (with `gpu`'s GPUs); for `sim`, says at start that nothing is
    /// protected.
    fn attester(&self, data_dir: &Path, gpu: &GpuOptions) -> Result<Arc<dyn Attester>> {
        let hardware = matches!(self, WorkerTee::Hardware(..));
        let cpu = self.open(data_dir)?;
        Ok(Arc::from(gpu.attach(cpu, hardware)?))
    }

    /// The CPU TEE's attester alone (the attestation service attests no GPU).
    pub(crate) fn cpu_attester(&self, data_dir: &Path) -> Result<Arc<dyn Attester>> {
        Ok(Arc::from(self.open(data_dir)?))
    }

    fn open(&self, data_dir: &Path) -> Result<Box<dyn Attester>> {
        match self {
            WorkerTee::Hardware(choice, options) => cloister_attest::open(*choice, options)
                .with_context(|| format!("opening the TEE interface (--tee {choice})")),
            WorkerTee::Sim { platform_key } => {
                let key_path =
                    platform_key.clone().unwrap_or_else(|| data_dir.join("sim-platform-key.pem"));
                let platform_key =
                    SimPlatformKey::load_or_create(&key_path).with_context(|| {
                        format!("loading the simulated platform key {}", key_path.display())
                    })?;
                tracing::warn!(
                    platform_key = %platform_key.public_key(),
                    "--tee sim: this runs in the SIMULATED TEE. Nothing protects its keys or data \
                     from this machine's operators; its evidence says tee \"sim\", and only an \
                     instance that lists this platform key accepts it. Development only."
                );
                Ok(Box::new(SimAttester::for_current_executable(platform_key)?))
            }
        }
    }
}

/// The JSON line `serve worker` prints on stdout once it listens.
#[derive(Debug, Serialize)]
pub struct WorkerStarted {
    /// `https://ADDR`.
    pub url: String,
    /// The TEE kind (`tdx`, `snp`, …, or `sim`).
    pub tee: String,
    /// The enclave's measurement (hex).
    pub measurement: String,
    /// SHA-256 of its EAR attestation result (hex).
    pub attestation_result_sha256: String,
    /// Its certificate chain (PEM, leaf first, then the instance CA).
    pub certificate_chain_pem: String,
    /// Batch jobs resumed at start.
    pub resumed_jobs: usize,
    /// Deployments restored at start (deployed again from their kept requests).
    pub restored_models: usize,
    /// Kept deployments not restored (each logged with its reason).
    pub skipped_models: usize,
}

/// `cloister keygen --sim-platform`: a simulated TEE's platform key (PKCS#8 PEM, mode 0600) and
/// its public key, the text an instance's trust anchors list.
pub fn keygen_sim_platform(secret: &Path, public: &Path) -> Result<()> {
    crate::testbed::refuse_overwrite(&[secret, public])?;
    let key = SimPlatformKey::load_or_create(secret)
        .with_context(|| format!("creating {}", secret.display()))?;
    std::fs::write(public, format!("{}\n", key.public_key()))
        .with_context(|| format!("writing {}", public.display()))?;
    eprintln!("simulated platform public key (development only): {}", key.public_key());
    Ok(())
}

/// Runs the worker until Ctrl-C or SIGTERM.
pub async fn serve_worker(options: WorkerOptions) -> Result<()> {
    let dir = &options.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // One worker per data directory: two would run the same batch jobs twice.
    let lock_path = dir.join("worker.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another worker is running on {} (it holds {}); stop it first",
            dir.display(),
            lock_path.display()
        )
    })?;
    // Before any model is loaded (resumed batch jobs included): the ONNX engine's backend.
    // A failure is logged and leaves tract; the worker still starts.
    let _ = load_onnxruntime(&options.onnxruntime);

    let attester = options.tee.attester(dir, &options.gpu)?;
    let client = AuthorityClient::for_instance_with(
        &options.authority,
        &options.instance,
        &options.authority_tls,
    )?;
    let service = ServiceChannel::pin(client, &options.instance, &options.service_fingerprint)
        .await
        .context("pinning the attestation service's signing key")?;
    // A fresh challenge each time: a key document replayed from before the service changed
    // builds does not answer it. Checked again before every renewal.
    if let Some(claims) = options
        .service_trust
        .check(&service)
        .await
        .context("pinning the attestation service by measurement")?
    {
        tracing::info!(tee = %claims.tee, measurement = %claims.measurement,
            "the attestation service runs a pinned build");
    }
    let identity = EnclaveIdentity::establish(attester, &service, options.suite)
        .await
        .context("attesting with the attestation service")?;
    let store = ObjectStore::open(&dir.join("objects"))?;
    let batches = Arc::new(BatchQueue::open(&dir.join("jobs.db"), options.chunk_pause).await?);
    let repository_location =
        options.repository.clone().unwrap_or_else(|| dir.join("models").display().to_string());
    let repository = cloister_repository::Repository::open(&repository_location)
        .with_context(|| format!("opening the model repository {repository_location}"))?;
    let worker = Arc::new(Worker {
        identity,
        store,
        service,
        service_trust: options.service_trust.clone(),
        catalog: cloister_worker::online::Catalog::new(),
        batches,
        repository,
        deployments: cloister_worker::deployments::Deployments::open(&dir.join("deployments"))?,
        llm_threads: options.llm_threads,
        accelerator: options.accelerator.clone(),
        metrics: cloister_worker::metrics::WorkerMetrics::new()
            .context("defining the worker's metrics")?,
    });

    let listener = TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let resumed_jobs = batch::resume(&worker).await?;
    // Each deployment kept from an earlier run is deployed again, every check redone; one that
    // no longer passes is logged with its reason and skipped.
    let restored = cloister_worker::deployments::restore(&worker).await;
    let started = WorkerStarted {
        url: format!("https://{addr}"),
        tee: worker.identity.claims().tee.to_string(),
        measurement: worker.identity.claims().measurement.to_string(),
        attestation_result_sha256: Hex(Sha256::digest(worker.identity.ear().as_bytes()).to_vec())
            .to_string(),
        certificate_chain_pem: worker.identity.certificate_chain_pem().to_owned(),
        resumed_jobs,
        restored_models: restored.restored,
        skipped_models: restored.skipped,
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&started)?)?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(
        event = crate::logging::LISTENING,
        url = started.url,
        tee = started.tee,
        measurement = started.measurement,
        resumed_jobs,
        "worker listening"
    );

    tokio::select! {
        served = cloister_worker::serve(listener, worker) => served.context("serving the worker API")?,
        () = crate::serve::shutdown_signal() => {}
    }
    drop(lock);
    Ok(())
}
