//! The `cloister` command: every party's commands, the services, and the demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use cloister::envelope::{self, CertificatePolicy};
use cloister::testbed::write_secret;
use cloister_types::{Hex, TeeKind};

/// Confidential AI across organisations: attestation, sealed envelopes, enclave jobs.
#[derive(Parser)]
#[command(name = "cloister", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole confidential batch-inference scenario on loopback (simulated TEE).
    Demo {
        /// Keep every party's files here: data-provider/, model-provider/ and compute/.
        #[arg(long)]
        workdir: Option<PathBuf>,
    },
    /// Create an envelope key pair.
    Keygen {
        /// Where to write the secret key (created with mode 0600; never overwritten).
        #[arg(long)]
        secret: PathBuf,
        /// Where to write the public key.
        #[arg(long)]
        public: PathBuf,
    },
    /// Seal a file to one or more recipients.
    Seal {
        /// A public key file, or an enclave certificate chain (verified with --ca/--measurement).
        #[arg(long = "recipient", required = true)]
        recipients: Vec<PathBuf>,
        /// Input file, or - for standard input.
        #[arg(long)]
        input: PathBuf,
        /// Output file, or - for standard output.
        #[arg(long)]
        output: PathBuf,
        /// Instance CA that must have issued enclave-certificate recipients.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Measurement (hex) accepted for enclave-certificate recipients; repeat for several.
        #[arg(long = "measurement")]
        measurements: Vec<String>,
        /// Accept enclave certificates from the simulated TEE (development only).
        #[arg(long)]
        accept_sim: bool,
    },
    /// Open a sealed file.
    Open {
        /// The secret key file.
        #[arg(long)]
        secret: PathBuf,
        /// Input file, or - for standard input.
        #[arg(long)]
        input: PathBuf,
        /// Output file, or - for standard output. Nothing is left here if opening fails.
        #[arg(long)]
        output: PathBuf,
    },
    /// Print the SHA-384 measurement the simulated TEE reports for an executable.
    Measure {
        /// The executable (defaults to this one).
        file: Option<PathBuf>,
    },
    /// Inspect TEE evidence.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Run a service.
    #[command(subcommand)]
    Serve(Serve),
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Collect evidence from the TEE this command runs in (configfs-tsm, /dev/sev-guest,
    /// Gramine's /dev/attestation, /dev/nsm, the Hygon CSV guest device), bound to the given
    /// runtime data, and print it as unified evidence JSON.
    Collect {
        /// Runtime data JSON: {"nonce", "hpke_pk", "tls_spki_sha256", "receipt_pk"}; its
        /// SHA-512 becomes the evidence's report_data.
        #[arg(long)]
        runtime_data: PathBuf,
        /// Where to write the unified evidence (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Verify vendor evidence of one TEE and print its normalised claims as JSON.
    ///
    /// Checks the whole signature chain to the vendor root, the structure and the TCB, exactly
    /// as the attestation service does, but binds the evidence to nothing: use it to debug
    /// attestation, not to decide whom to trust. Files may be raw binary, hex or base64.
    Verify {
        /// sgx, tdx, snp, csv, cca, nitro or nvidia.
        #[arg(long, required_unless_present = "unified")]
        tee: Option<String>,
        /// The vendor evidence (quote, report, token, attestation document, SPDM transcript).
        #[arg(long, required_unless_present = "unified")]
        evidence: Option<PathBuf>,
        /// Unified evidence JSON instead (what `evidence collect` and the worker send): verified
        /// as the service does, report_data binding and additional (GPU) evidence included;
        /// prints the claims of every component.
        #[arg(long, conflicts_with_all = ["tee", "evidence"])]
        unified: Option<PathBuf>,
        /// Collateral: a DCAP bundle, Intel PCS/PCCS responses, CRLs, NVIDIA RIMs. Repeatable.
        #[arg(long)]
        collateral: Vec<PathBuf>,
        /// Certificates: VCEK/VLEK/ASK/ARK, Hygon HRK/HSK/CEK, NVIDIA chains (PEM, DER or
        /// concatenated PEM). Repeatable.
        #[arg(long)]
        cert: Vec<PathBuf>,
        /// Extra trust anchors: root certificates, CCA platform keys (CPAK). Repeatable.
        #[arg(long)]
        trust_anchor: Vec<PathBuf>,
        /// Verification time (RFC 3339); defaults to now. Collateral and short-lived
        /// certificates are time-bound, so pin it when re-checking old evidence.
        #[arg(long)]
        at: Option<String>,
        /// Print one compact JSON line, also on failure (`{"error": "…"}`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Serve {
    /// The attestation service, with one instance configured from a TOML file.
    Attestation {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The instance configuration (see `cloister_authority::config`).
        #[arg(long)]
        config: PathBuf,
        /// Where the instance keeps its CA and token keys (created on first start).
        #[arg(long)]
        state_dir: PathBuf,
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { workdir } => demo(workdir),
        Command::Keygen { secret, public } => envelope::keygen(&secret, &public),
        Command::Seal { recipients, input, output, ca, measurements, accept_sim } => {
            let measurements = measurements
                .iter()
                .map(|m| Hex::parse(m).with_context(|| format!("--measurement {m} is not hex")))
                .collect::<Result<Vec<_>>>()?;
            let mut tees = vec![
                TeeKind::Sgx,
                TeeKind::Tdx,
                TeeKind::Snp,
                TeeKind::Csv,
                TeeKind::Cca,
                TeeKind::Nitro,
            ];
            if accept_sim {
                tees.push(TeeKind::Sim);
            }
            let policy = CertificatePolicy { ca, measurements, tees };
            let keys = recipients
                .iter()
                .map(|path| envelope::read_recipient(path, &policy))
                .collect::<Result<Vec<_>>>()?;
            envelope::seal(&keys, &input, &output)
        }
        Command::Open { secret, input, output } => {
            let key = envelope::read_secret(&secret)?;
            envelope::open(&key, &input, &output)
        }
        Command::Measure { file } => {
            let file = match file {
                Some(file) => file,
                None => std::env::current_exe()?,
            };
            println!("{}", hex::encode(cloister_attest::measure_file(&file)?));
            Ok(())
        }
        Command::Evidence(EvidenceCommand::Collect { runtime_data, output }) => {
            let json = cloister::evidence::collect(&runtime_data)?;
            match output {
                Some(path) => std::fs::write(&path, json + "\n")
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{json}"),
            }
            Ok(())
        }
        Command::Evidence(EvidenceCommand::Verify {
            tee,
            evidence,
            unified,
            collateral,
            cert,
            trust_anchor,
            at,
            json,
        }) => {
            let at_unix = match at {
                Some(text) => cloister::evidence::parse_time(&text)?,
                None => cloister_sign::unix_now() as i64,
            };
            let outcome = match (unified, tee, evidence) {
                (Some(path), _, _) => cloister::evidence::verify_unified(
                    &path,
                    &collateral,
                    &cert,
                    &trust_anchor,
                    at_unix,
                )?,
                (None, Some(tee), Some(evidence)) => {
                    cloister::evidence::verify(&cloister::evidence::VerifyRequest {
                        tee: cloister::evidence::parse_tee(&tee)?,
                        evidence,
                        collateral,
                        certs: cert,
                        trust_anchors: trust_anchor,
                        at_unix,
                    })?
                }
                _ => anyhow::bail!("give --tee and --evidence, or --unified"),
            };
            match outcome {
                cloister::evidence::Outcome::Verified(claims) => {
                    if json {
                        println!("{claims}");
                    } else {
                        println!("{}", serde_json::to_string_pretty(&claims)?);
                    }
                    Ok(())
                }
                cloister::evidence::Outcome::Refused(reason) => {
                    if json {
                        println!("{}", serde_json::json!({ "error": reason }));
                    }
                    eprintln!("{reason}");
                    std::process::exit(1);
                }
            }
        }
        Command::Serve(Serve::Attestation {
            listen,
            config,
            state_dir,
            collateral_bundle,
            fetch_collateral,
            pccs_url,
        }) => {
            let fetch = fetch_collateral.then(|| {
                let mut urls = cloister_authority::VendorUrls::default();
                if let Some(url) = pccs_url {
                    urls.intel_api = url.trim_end_matches('/').to_owned();
                }
                urls
            });
            serve_attestation(&listen, &config, &state_dir, collateral_bundle.as_deref(), fetch)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn demo(workdir: Option<PathBuf>) -> Result<()> {
    let (dir, _temporary) = match workdir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir, None)
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("cloister-demo-").tempdir()?;
            (tmp.path().to_owned(), Some(tmp))
        }
    };
    init_logging(&dir.join("compute").join("logs"))?;
    runtime()?.block_on(cloister::demo::run(&dir))?;
    Ok(())
}

/// Structured logs to `dir/cloister.log`; they never carry plaintext, keys or tokens.
fn init_logging(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("cloister.log"))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOISTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(Arc::new(file))
        .try_init()
        .ok();
    Ok(())
}

fn serve_attestation(
    listen: &str,
    config: &Path,
    state_dir: &Path,
    collateral_bundle: Option<&Path>,
    fetch: Option<cloister_authority::VendorUrls>,
) -> Result<()> {
    use cloister_authority::{Authority, CertificateAuthority, InstanceConfig, InstanceKeys};
    use cloister_sign::{SigningKey, unix_now};

    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let config = InstanceConfig::from_toml(&text)?;
    std::fs::create_dir_all(state_dir)?;
    let (ca_path, ca_key_path, token_path) =
        (state_dir.join("ca.pem"), state_dir.join("ca-key.pem"), state_dir.join("token-key"));
    let (ca, token_key) = if ca_path.exists() {
        let ca = CertificateAuthority::from_pem(
            &std::fs::read_to_string(&ca_path)?,
            &zeroize::Zeroizing::new(std::fs::read_to_string(&ca_key_path)?),
        )?;
        let token =
            SigningKey::from_text(&zeroize::Zeroizing::new(std::fs::read_to_string(&token_path)?))?;
        (ca, token)
    } else {
        let ca = CertificateAuthority::generate(&config.name, unix_now())?;
        let token = SigningKey::generate();
        write_secret(&ca_key_path, ca.key_pem().as_bytes())?;
        write_secret(&token_path, token.to_text().as_bytes())?;
        std::fs::write(&ca_path, ca.certificate_pem())?;
        (ca, token)
    };
    tracing_subscriber::fmt().with_writer(std::io::stderr).try_init().ok();
    let mut authority = Authority::new(config, InstanceKeys { token_key, ca });
    if let Some(urls) = fetch {
        let fetcher = cloister_authority::fetch::HttpFetcher::new(urls)?;
        authority = authority.with_fetcher(Box::new(fetcher));
    }
    let authority = Arc::new(authority);
    if let Some(path) = collateral_bundle {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let count = authority
            .collateral()
            .load_bundle(&bytes)
            .with_context(|| format!("loading the collateral bundle {}", path.display()))?;
        eprintln!("preloaded {count} collateral items from {}", path.display());
    }
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!("attestation service listening on http://{}", listener.local_addr()?);
        axum::serve(listener, cloister_authority::http::router(authority)).await?;
        Ok(())
    })
}
