//! `cloister job`: durable batch jobs on an attested worker.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use cloister::parties::parse_measurements;

use super::{ServiceTlsArgs, WorkerTargetArgs};

#[derive(Subcommand)]
pub(crate) enum JobCommand {
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
        #[arg(long, env = "CLOISTER_SERVER", value_parser = super::url_with_scheme)]
        authority: String,
        #[command(flatten)]
        authority_tls: ServiceTlsArgs,
        /// Print the revocation as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: JobCommand) -> Result<()> {
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
