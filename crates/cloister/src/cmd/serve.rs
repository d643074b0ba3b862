//! `cloister serve`: the attestation service, the enclave worker and the untrusted accelerator.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;

use super::{ServiceTlsArgs, runtime};

// Parsed once at start; boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum Serve {
    /// An untrusted accelerator for hybrid execution: multiplies blinded rows by public weights
    /// for enclaves that offload layers to it, and is trusted with nothing (every answer is
    /// checked in the enclave). Runs outside any TEE, on the machine with the fast hardware.
    Accelerator {
        /// Address to listen on (plain TCP: what travels is blinded or public).
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: String,
        /// Threads for the matrix products (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Public weights held at once, in MiB, before the oldest are dropped.
        #[arg(long, default_value_t = 1024)]
        weights_budget_mib: usize,
        /// Write every request received to this directory (`NNNNNN.bin`, one file each), so
        /// what the accelerator saw can be searched (`demo hybrid` does).
        #[arg(long)]
        record: Option<PathBuf>,
        /// What to log (JSON lines on standard error): a level (error, warn, info, debug,
        /// trace) or filter directives (info,cloister_worker=debug). Default: CLOISTER_LOG, else
        /// RUST_LOG, else info.
        #[arg(long, value_parser = cloister::logging::parse_flag)]
        log_level: Option<String>,
        /// Read settings from this TOML file; its keys are this command's long flag names
        /// (`listen = "0.0.0.0:8080"`, `rate-limit = ["release=100"]`, `fetch-collateral = true`).
        /// Flags and their environment variables override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The multi-tenant attestation service: tenants, instances, key broker, audit log.
    Attestation {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`.
        #[arg(long, env = "CLOISTER_DATABASE")]
        database: String,
        /// The operator's bearer token; a fresh one is written here (mode 0600) on first start.
        #[arg(long)]
        operator_token_file: PathBuf,
        /// The service key that seals every secret in the database (created, 0600, if missing;
        /// default: service.key beside the operator token file). Replicas share it.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Preload vendor collateral from an offline bundle (JSON; see
        /// `cloister_authority::collateral`), for services without network access.
        #[arg(long)]
        collateral_bundle: Option<PathBuf>,
        /// Fetch missing collateral from Intel PCS, AMD KDS and Hygon KDS before verifying
        /// (cached as the vendors specify, rate limits honoured).
        #[arg(long)]
        fetch_collateral: bool,
        /// With --fetch-collateral: an Intel PCS-compatible service to use instead of Intel's
        /// (a PCCS, for example `https://pccs.internal:8081`).
        #[arg(long, requires = "fetch_collateral")]
        pccs_url: Option<String>,
        /// Import instance bundles signed by the service with this signing-key fingerprint (64
        /// hex digits, as that service prints at start); repeat for several. Without it, every
        /// bundle is refused: confirm the fingerprint with the source's operator first.
        #[arg(long = "trust-bundles-from")]
        trust_bundles_from: Vec<String>,
        /// The TLS certificate chain (PEM, leaf first). Without --tls-cert/--tls-key the service
        /// serves plain HTTP, on a loopback address only.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on an address that is not loopback (behind a TLS-terminating proxy on
        /// this host only: bearer tokens cross the network in clear otherwise).
        #[arg(long, conflicts_with = "tls_cert")]
        insecure_plain_http: bool,
        /// A rate limit, CLASS=PER_SECOND[/BURST], with CLASS one of attestation, release,
        /// registration, enclave, management, reads; repeat for several. Defaults: attestation
        /// 5000, release 1000, registration 5/20, enclave 1000, management 200/400, reads 5000.
        #[arg(long = "rate-limit")]
        rate_limits: Vec<String>,
        /// A proxy (ADDR or ADDR/PREFIX) whose X-Forwarded-For is believed for the client's
        /// address; repeat for several. From anyone else the header is ignored.
        #[arg(long = "trusted-proxy")]
        trusted_proxies: Vec<String>,
        /// Sign an audit checkpoint this often (seconds) when entries were added since the last
        /// one, besides every 64 entries, at each key release and job record, and at shutdown:
        /// the entries a truncated log could lose unnoticed are at most this old.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        checkpoint_interval: u64,
        /// The TEE the service runs in, when it does (tdx, snp, sgx, nitro, csv, cca, auto, or
        /// sim for development): it attests its own keys at start and every few minutes, and
        /// publishes the evidence at /v1/service-key, so instances can be exported to it without
        /// --allow-unattested-target. Without it, the service does not attest itself.
        #[arg(long, env = "CLOISTER_SERVICE_TEE")]
        tee: Option<String>,
        /// With --tee sim: the simulated platform key (created if missing; default
        /// sim-platform-key.pem beside the operator token file).
        #[arg(long, requires = "tee")]
        sim_platform_key: Option<PathBuf>,
        /// What to log (JSON lines on standard error): a level (error, warn, info, debug,
        /// trace) or filter directives (info,cloister_worker=debug). Default: CLOISTER_LOG, else
        /// RUST_LOG, else info.
        #[arg(long, value_parser = cloister::logging::parse_flag)]
        log_level: Option<String>,
        /// Read settings from this TOML file; its keys are this command's long flag names
        /// (`listen = "0.0.0.0:8080"`, `rate-limit = ["release=100"]`, `fetch-collateral = true`).
        /// Flags and their environment variables override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The enclave worker: attests with its TEE (--tee), serves the worker API on TLS, runs and
    /// resumes durable batch jobs, restores the models deployed to it before (every check
    /// redone), renews its attestation before it expires. Prints one JSON line on stdout once it
    /// listens: {"url", "tee", "measurement", "attestation_result_sha256",
    /// "certificate_chain_pem", "resumed_jobs", "restored_models", "skipped_models"}.
    Worker {
        /// Address to listen on (port 0 picks a free one; the JSON line names it).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// The attestation service's URL.
        #[arg(long, env = "CLOISTER_SERVER", value_parser = super::url_with_scheme)]
        authority: String,
        /// The attestation instance to attest with (in_…).
        #[arg(long)]
        instance: String,
        /// The attestation service's signing-key fingerprint (64 hex digits, as `serve
        /// attestation` prints at start): bound into the enclave's evidence, and every answer
        /// the enclave acts on must be signed by that key. Get it from the service's operator,
        /// not from the network.
        #[arg(long, env = "CLOISTER_SERVICE_FINGERPRINT")]
        service_fingerprint: String,
        /// Also pin the attestation service by what it runs: its key document must carry
        /// evidence (`serve attestation --tee`) that verifies to a vendor root, binds its keys and
        /// reports one of these measurements (hex; repeat for several), or the worker does not
        /// start. Without it the service is pinned by its signing key only.
        #[arg(long = "service-measurement")]
        service_measurements: Vec<String>,
        /// With --service-measurement, development only: a sim platform public key file under
        /// which a service attested by the simulated TEE is accepted.
        #[arg(long, requires = "service_measurements")]
        service_sim_platform_key: Option<PathBuf>,
        #[command(flatten)]
        authority_tls: ServiceTlsArgs,
        /// The worker's directory: objects/ (sealed objects), jobs.db (the batch queue),
        /// deployments/ (the deployment requests restored at start).
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        tee: TeeArgs,
        /// Pause this many milliseconds after each batch chunk (spreads a job's load).
        #[arg(long, default_value_t = 0)]
        chunk_pause_ms: u64,
        /// The model repository models are deployed from: a directory or s3://bucket/prefix
        /// (default DATA_DIR/models).
        #[arg(long, env = "CLOISTER_REPOSITORY")]
        repository: Option<String>,
        /// The onnxruntime library ONNX models run on (the image's copy by default). Its
        /// SHA-256 must be the one pinned in the binary, or it is not loaded; the bytes checked
        /// are the bytes loaded. When it cannot be loaded, ONNX models run on tract (the reason
        /// is logged), except those whose serving policy pins `engine: ort`, which fail to load.
        #[arg(
            long,
            env = "CLOISTER_ONNXRUNTIME",
            default_value = "/usr/local/lib/cloister/libonnxruntime.so.1.31.1"
        )]
        onnxruntime: PathBuf,
        /// The threads each GGUF language model generates on (default: every CPU the worker
        /// may use).
        #[arg(long, env = "CLOISTER_LLM_THREADS")]
        llm_threads: Option<std::num::NonZeroUsize>,
        /// An untrusted accelerator (HOST:PORT of `cloister serve accelerator`): the linear
        /// layers of ONNX models whose signed serving policy says `offload: {weights: public}`
        /// run there, blinded and verified. Without it such models fail to deploy; models
        /// without that policy never use it.
        #[arg(long, env = "CLOISTER_ACCELERATOR")]
        accelerator: Option<String>,
        /// The enclave's suite: `x25519` (default: X25519 envelope key, ES256 receipts and
        /// grants) or `sm` (ShangMi: an SM2 envelope key, SM2 receipts, and only SM2 owners'
        /// grants and SM2 output recipients). The instance must sign in the same suite
        /// (`instance create --token-signing sm2` for `sm`); mixing is refused at start.
        #[arg(long, env = "CLOISTER_SUITE", value_parser = ["x25519", "sm"], default_value = "x25519")]
        suite: String,
        /// What to log (JSON lines on standard error): a level (error, warn, info, debug,
        /// trace) or filter directives (info,cloister_worker=debug). Default: CLOISTER_LOG, else
        /// RUST_LOG, else info.
        #[arg(long, value_parser = cloister::logging::parse_flag)]
        log_level: Option<String>,
        /// Read settings from this TOML file; its keys are this command's long flag names
        /// (`listen = "0.0.0.0:8080"`, `rate-limit = ["release=100"]`, `fetch-collateral = true`).
        /// Flags and their environment variables override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Which TEE `serve worker` attests with, and where its interface is.
#[derive(clap::Args, Clone)]
pub(crate) struct TeeArgs {
    /// The TEE to attest with: auto (whichever this machine has; never sim), tdx, snp, sgx,
    /// nitro, csv, cca, or sim (the simulated TEE: development only, protects nothing; only when
    /// named). On a machine without the TEE it exits non-zero listing every place it looked.
    #[arg(long, env = "CLOISTER_TEE", default_value = "auto")]
    tee: String,
    /// The simulated TEE's platform key, with --tee sim (PKCS#8 PEM; created if missing;
    /// default DATA_DIR/sim-platform-key.pem). The instance must list its public key.
    #[arg(long)]
    sim_platform_key: Option<PathBuf>,
    /// configfs-tsm's report root (TDX, SEV-SNP, CCA).
    #[arg(long, default_value = cloister_attest::ConfigFsTsm::DEFAULT_ROOT)]
    tsm_dir: PathBuf,
    /// An existing configfs-tsm report directory to use for every report instead of creating
    /// one under --tsm-dir (only root may create them: a setup step can make one and hand its
    /// files to the worker's user).
    #[arg(long)]
    tsm_report_dir: Option<PathBuf>,
    /// SEV-SNP: the VMPL reports are requested for (0-3; default 0).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=3))]
    snp_vmpl: Option<u32>,
    /// SEV-SNP over /dev/sev-guest: plain reports, without the host's certificate table (the
    /// verifier then needs the VCEK from elsewhere).
    #[arg(long)]
    snp_no_certificates: bool,
    /// The SEV-SNP guest device.
    #[arg(long, default_value = cloister_attest::SevGuestDevice::DEFAULT_PATH)]
    sev_guest: PathBuf,
    /// The Nitro Secure Module device.
    #[arg(long, default_value = cloister_attest::NsmDevice::DEFAULT_PATH)]
    nsm: PathBuf,
    /// The Hygon CSV guest device.
    #[arg(long, default_value = cloister_attest::CsvGuestDevice::DEFAULT_PATH)]
    csv_guest: PathBuf,
    /// Hygon CSV: the HSK and CEK certificates (files, DER) sent with every report.
    #[arg(long = "csv-certificate")]
    csv_certificates: Vec<PathBuf>,
    /// Gramine's attestation directory (SGX).
    #[arg(long, default_value = cloister_attest::GramineAttestation::DEFAULT_DIR)]
    gramine_dir: PathBuf,
    /// The TDX guest device (only reported: a TDREPORT alone cannot be verified remotely).
    #[arg(long, default_value = cloister_attest::TdxGuestDevice::DEFAULT_PATH)]
    tdx_guest: PathBuf,
    /// Refuse to start unless NVIDIA GPUs in confidential-computing mode are attested with the
    /// CPU TEE (as gpu0, gpu1, …). Without it, a hardware TEE's worker attaches such GPUs when
    /// NVML finds them and leaves out, with a warning, GPUs that are not in CC mode.
    #[arg(long)]
    require_gpu: bool,
    /// NVIDIA's management library (a path, or a name the dynamic loader searches).
    #[arg(long, default_value = "libnvidia-ml.so.1")]
    nvml_library: PathBuf,
}

impl TeeArgs {
    /// The defaults of every backend option (the real device paths).
    pub(crate) fn defaults() -> Self {
        TeeArgs {
            tee: "auto".to_owned(),
            sim_platform_key: None,
            tsm_dir: cloister_attest::ConfigFsTsm::DEFAULT_ROOT.into(),
            tsm_report_dir: None,
            snp_vmpl: None,
            snp_no_certificates: false,
            sev_guest: cloister_attest::SevGuestDevice::DEFAULT_PATH.into(),
            nsm: cloister_attest::NsmDevice::DEFAULT_PATH.into(),
            csv_guest: cloister_attest::CsvGuestDevice::DEFAULT_PATH.into(),
            csv_certificates: Vec::new(),
            gramine_dir: cloister_attest::GramineAttestation::DEFAULT_DIR.into(),
            tdx_guest: cloister_attest::TdxGuestDevice::DEFAULT_PATH.into(),
            require_gpu: false,
            nvml_library: "libnvidia-ml.so.1".into(),
        }
    }

    pub(crate) fn gpu(&self) -> cloister::serve_worker::GpuOptions {
        cloister::serve_worker::GpuOptions {
            require: self.require_gpu,
            nvml_library: self.nvml_library.clone(),
        }
    }

    pub(crate) fn choice(self) -> Result<cloister::serve_worker::WorkerTee> {
        use cloister::serve_worker::WorkerTee;
        if self.tee == "sim" {
            return Ok(WorkerTee::Sim { platform_key: self.sim_platform_key });
        }
        let choice: cloister_attest::HardwareTee = self.tee.parse().map_err(|_| {
            anyhow::anyhow!(
                "unknown --tee {:?}; expected one of auto, tdx, snp, sgx, nitro, csv, cca, sim",
                self.tee
            )
        })?;
        if self.sim_platform_key.is_some() {
            anyhow::bail!(
                "--sim-platform-key applies only with --tee sim (this worker uses --tee {choice})"
            );
        }
        let csv_certificates = self
            .csv_certificates
            .iter()
            .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
            .collect::<Result<_>>()?;
        let options = cloister_attest::BackendOptions {
            paths: cloister_attest::DetectPaths {
                tsm_report: self.tsm_dir,
                attestation_dir: self.gramine_dir,
                nsm: self.nsm,
                csv_guest: self.csv_guest,
                sev_guest: self.sev_guest,
                tdx_guest: self.tdx_guest,
            },
            tsm_report_dir: self.tsm_report_dir,
            snp_vmpl: self.snp_vmpl,
            snp_without_certificates: self.snp_no_certificates,
            csv_certificates,
        };
        Ok(WorkerTee::Hardware(choice, options))
    }
}

impl Serve {
    /// What `--log-level` asked for.
    pub(crate) fn log_level(&self) -> &Option<String> {
        match self {
            Serve::Attestation { log_level, .. }
            | Serve::Worker { log_level, .. }
            | Serve::Accelerator { log_level, .. } => log_level,
        }
    }
}

pub(crate) fn run(command: Serve) -> Result<()> {
    match command {
        Serve::Attestation {
            listen,
            database,
            operator_token_file,
            key_file,
            collateral_bundle,
            fetch_collateral,
            pccs_url,
            trust_bundles_from,
            tls_cert,
            tls_key,
            insecure_plain_http,
            rate_limits,
            trusted_proxies,
            checkpoint_interval,
            tee,
            sim_platform_key,
            log_level: _,
            config: _,
        } => {
            let tee = tee
                .map(|name| TeeArgs { tee: name, sim_platform_key, ..TeeArgs::defaults() }.choice())
                .transpose()?;
            let mut http = cloister_authority::http::HttpOptions::default();
            for setting in &rate_limits {
                http.rate_limits.apply(setting).map_err(anyhow::Error::msg)?;
            }
            for proxy in &trusted_proxies {
                http.trusted_proxies.push(proxy.parse().map_err(anyhow::Error::msg)?);
            }
            let tls = tls_cert
                .zip(tls_key)
                .map(|(certificate, key)| cloister::serve::TlsFiles { certificate, key });
            let fetch = fetch_collateral.then(|| {
                let mut urls = cloister_authority::VendorUrls::default();
                if let Some(url) = pccs_url {
                    urls.intel_api = url.trim_end_matches('/').to_owned();
                }
                urls
            });
            let options = cloister::serve::ServeOptions {
                listen,
                database,
                operator_token_file,
                key_file,
                collateral_bundle,
                fetch,
                trust_bundles_from,
                tls,
                insecure_plain_http,
                http,
                checkpoint_interval: std::time::Duration::from_secs(checkpoint_interval),
                tee,
            };
            runtime()?.block_on(cloister::serve::serve(options))
        }
        Serve::Accelerator {
            listen,
            threads,
            weights_budget_mib,
            record,
            log_level: _,
            config: _,
        } => {
            let threads = threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let budget = weights_budget_mib.saturating_mul(1 << 20);
            let options = cloister::serve_accelerator::AcceleratorOptions {
                listen,
                threads,
                weights_budget: budget,
                record,
            };
            runtime()?.block_on(cloister::serve_accelerator::serve(&options))
        }
        Serve::Worker {
            listen,
            authority,
            instance,
            service_fingerprint,
            service_measurements,
            service_sim_platform_key,
            authority_tls,
            data_dir,
            tee,
            chunk_pause_ms,
            repository,
            onnxruntime,
            llm_threads,
            accelerator,
            suite,
            log_level: _,
            config: _,
        } => {
            let service_trust = cloister::serve_worker::service_trust(
                &service_measurements,
                service_sim_platform_key.as_deref(),
            )?;
            let authority_tls = authority_tls.tls()?;
            let gpu = tee.gpu();
            let tee = tee.choice()?;
            let options = cloister::serve_worker::WorkerOptions {
                listen,
                authority,
                instance,
                service_fingerprint,
                service_trust,
                authority_tls,
                data_dir,
                tee,
                gpu,
                chunk_pause: std::time::Duration::from_millis(chunk_pause_ms),
                llm_threads: llm_threads.unwrap_or_else(cloister_engine::default_threads),
                repository,
                onnxruntime,
                accelerator,
                suite: if suite == "sm" {
                    cloister_seal::Suite::ShangMi
                } else {
                    cloister_seal::Suite::X25519
                },
            };
            runtime()?.block_on(cloister::serve_worker::serve_worker(options))
        }
    }
}
