//! `cloister job`: durable batch jobs on an attested worker.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use cloister::parties::parse_measurements;

use super::{ServiceTlsArgs, WorkerTargetArgs};

#[derive(Subcommand)]
pub(crate) enum JobCommand {
    /// Data owner: split a data set into shards of contiguous rows (a CSV's header starts each),
    /// for a job split across workers; prints the shard files' paths in order.
    Split {
        /// The plaintext data set (a CSV table, JSON-lines prompts).
        file: PathBuf,
        /// How many shards.
        #[arg(long)]
        shards: usize,
        /// Where to write them (NAME.shard-I-of-N.EXT; none is overwritten).
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Input owner: seal a file once to a key-broker key as your object, without uploading it;
    /// anyone may later upload the envelope as is (`job upload --sealed`), to any worker. Prints
    /// the input reference a job spec names.
    Seal {
        #[command(flatten)]
        input: InputArgs,
        /// Where to write the envelope (never overwritten).
        #[arg(long)]
        output: PathBuf,
    },
    /// Input owner: seal a file once to a key-broker key and upload it to the attested worker
    /// (the same envelope to each of several: a sharded job's model); prints the input
    /// reference a job spec names ({"object_id", "sha256", "owner"}).
    Upload {
        /// The plaintext file (a model, a CSV table, JSON-lines prompts), or with --sealed an
        /// envelope `job seal` wrote.
        file: PathBuf,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// FILE is an envelope `job seal` wrote: upload it as is, under the object id and owner
        /// it names (no key needed).
        #[arg(long, conflicts_with_all = ["id", "recipient", "owner_key"])]
        sealed: bool,
        /// The object id on the worker (A-Z a-z 0-9 . _ -; objects are immutable).
        #[arg(long, required_unless_present = "sealed")]
        id: Option<String>,
        /// The key-broker recipient: what `cloister key register` prints (`cloister-broker:…`),
        /// or a file holding it. Or `enclave`: seal to the attested enclave of the one --worker
        /// itself (its envelope key, from the certificate its TLS connection verified), which
        /// is what a ShangMi enclave (`serve worker --suite sm`) takes: key-broker releases
        /// are X25519 only. Such an envelope opens in that enclave only, while it runs.
        #[arg(long, required_unless_present = "sealed")]
        recipient: Option<String>,
        /// Your signing key: its public key is recorded as the object's owner.
        #[arg(long, required_unless_present = "sealed")]
        owner_key: Option<PathBuf>,
        /// The content type recorded in the envelope.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
    },
    /// Input owner: sign a grant letting one job use your input (the job spec's model or data),
    /// in enclaves with these measurements appraised by these instances, results sealed only to
    /// the job's output recipients. For a sharded job's plan: one grant per shard, one per line.
    Grant {
        /// The job spec (JSON {"id", "kind", "model", "data", "output_recipients"}), or a
        /// sharded job's plan ({"id", "kind", "model", "shards", "output_recipients"}).
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
    ///
    /// A sharded job's plan queues each shard as its own job (`ID.shard-I-of-N`) on the I-th
    /// worker given, round robin (where that shard's data was uploaded), with the grants that
    /// name it; prints one line per shard: its job id and worker.
    Submit {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The job spec: JSON {"id", "kind": "batch-inference", "model", "data",
        /// "output_recipients"}, as the grants name it by digest; or a sharded job's plan
        /// ({"id", "kind", "model", "shards", "output_recipients"}).
        #[arg(long)]
        job: PathBuf,
        /// A grant file from an input's owner (compact JWS, one per line); one per input.
        #[arg(long = "grant", required = true)]
        grants: Vec<PathBuf>,
        /// Rows (or prompts) per chunk: the unit of progress and of work redone after a crash.
        #[arg(long, default_value_t = 1000)]
        chunk_rows: u64,
        /// Print {"job_id", "state"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a batch job's state and progress (exit 1 if it failed); for a sharded job's plan,
    /// each shard's on its worker and the whole job's.
    #[command(group = clap::ArgGroup::new("which").required(true))]
    Status {
        /// The job id.
        #[arg(group = "which")]
        id: Option<String>,
        /// A sharded job's plan: every shard's job, on the workers given as at submit.
        #[arg(long, group = "which")]
        job: Option<PathBuf>,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// Follow the job with a progress bar until it is done or failed.
        #[arg(long)]
        watch: bool,
        /// Print the whole status as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Download a done job's results: verify the receipt, that it names exactly the job given
    /// with --job, and every chunk's digest, open each chunk with your key, write the CSV
    /// (nothing is written if any check fails), and keep the receipt in OUTPUT.receipt.json. For a sharded job's plan: every shard's receipt checked
    /// against the plan, the results concatenated in shard order, the combined receipt kept.
    #[command(group = clap::ArgGroup::new("which").required(true))]
    Fetch {
        /// The job id: refused, saying to give --job (kept so that the old form explains
        /// itself).
        #[arg(group = "which", hide = true)]
        id: Option<String>,
        /// The job you granted or submitted (its spec), whose receipt must name exactly it:
        /// its digest and inputs, so another job's results under the same id are refused. Or
        /// a sharded job's plan: every shard's job, on the workers given as at submit.
        #[arg(long, group = "which")]
        job: Option<PathBuf>,
        /// With --job: read the shards' statuses and sealed results from this directory (what
        /// `job run-shard` wrote, e.g. the volume of a Kubernetes indexed Job) instead of asking
        /// workers; --worker is then not needed.
        #[arg(long, requires = "job")]
        from: Option<PathBuf>,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// Your envelope secret key (an output recipient of the job).
        #[arg(long)]
        secret: PathBuf,
        /// Where to write the CSV.
        #[arg(long)]
        output: PathBuf,
    },
    /// One shard of a sharded job, start to end, on one worker: what each pod of the Kubernetes
    /// indexed Job runs beside its worker (deploy/k8s/batch). Uploads the plan's model and the
    /// shard's data from --inputs (envelopes `job seal` wrote, named OBJECT_ID.sealed), queues
    /// the shard's job with the grants naming it, waits until it is done, checks its receipt and
    /// writes its sealed results and status to --out for `job fetch --job PLAN --from OUT`.
    /// Holds no key.
    RunShard {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The sharded job's plan.
        #[arg(long)]
        job: PathBuf,
        /// Which shard (from 0; Kubernetes sets JOB_COMPLETION_INDEX in an indexed Job's pods).
        #[arg(long, env = "JOB_COMPLETION_INDEX")]
        index: usize,
        /// The directory of sealed inputs (OBJECT_ID.sealed).
        #[arg(long)]
        inputs: PathBuf,
        /// A grant file from an input's owner (compact JWS, one per line); one per input.
        #[arg(long = "grant", required = true)]
        grants: Vec<PathBuf>,
        /// Rows (or prompts) per chunk.
        #[arg(long, default_value_t = 1000)]
        chunk_rows: u64,
        /// Where to write the shard's sealed results and status.
        #[arg(long)]
        out: PathBuf,
        /// Seconds to wait for the worker to answer (it may be starting beside this command).
        #[arg(long, default_value_t = 300)]
        wait_secs: u64,
    },
    /// Input owner: revoke every grant you signed for a job, at the attestation service. From
    /// then on the service records no authorization for the job with your inputs, so no worker
    /// starts it (a job already running finishes). Never undone.
    #[command(group = clap::ArgGroup::new("which").required(true))]
    RevokeGrant {
        /// The job spec you granted (its digest is revoked), or a sharded job's plan (every
        /// shard's).
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

/// What `job seal` seals.
#[derive(clap::Args)]
pub(crate) struct InputArgs {
    /// The plaintext file (a model, a CSV table or shard, JSON-lines prompts).
    file: PathBuf,
    /// The object id it will have on workers (A-Z a-z 0-9 . _ -; objects are immutable).
    #[arg(long)]
    id: String,
    /// The key-broker recipient: what `cloister key register` prints (`cloister-broker:…`), or
    /// a file holding it.
    #[arg(long)]
    recipient: String,
    /// Your signing key: its public key is recorded as the object's owner.
    #[arg(long)]
    owner_key: PathBuf,
    /// The content type recorded in the envelope.
    #[arg(long, default_value = "application/octet-stream")]
    content_type: String,
}

/// `--id`/`--job` of `status` and `fetch`.
fn which(id: Option<String>, job: Option<PathBuf>) -> Result<cloister::job::Which> {
    use cloister::job::{JobFile, Which};
    match (id, job) {
        (Some(id), _) => Ok(Which::Id(id)),
        (None, Some(path)) => match cloister::job::read_job(&path)? {
            JobFile::Sharded(plan) => Ok(Which::Plan(plan)),
            JobFile::One(spec) => Ok(Which::One(spec)),
        },
        (None, None) => unreachable!("clap requires a job id or --job"),
    }
}

pub(crate) async fn run(command: JobCommand) -> Result<()> {
    match command {
        JobCommand::Split { file, shards, out_dir } => {
            let paths = cloister::job::split(&file, shards, &out_dir)?;
            for path in &paths {
                println!("{}", path.display());
            }
            eprintln!(
                "{} split into {} shards in {}",
                file.display(),
                paths.len(),
                out_dir.display()
            );
            Ok(())
        }
        JobCommand::Seal { input, output } => {
            let args = cloister::job::UploadArgs {
                file: &input.file,
                object_id: &input.id,
                recipient: &input.recipient,
                owner_key: &input.owner_key,
                content_type: &input.content_type,
            };
            let reference = cloister::job::seal(&args, &output)?;
            println!("{}", serde_json::to_string(&reference)?);
            Ok(())
        }
        JobCommand::Upload { file, target, sealed, id, recipient, owner_key, content_type } => {
            let targets = target.targets()?;
            if sealed {
                return cloister::job::upload(&targets, &cloister::job::Upload::Sealed(&file))
                    .await;
            }
            let (Some(id), Some(recipient), Some(owner_key)) = (id, recipient, owner_key) else {
                unreachable!("clap requires --id, --recipient and --owner-key without --sealed")
            };
            let args = cloister::job::UploadArgs {
                file: &file,
                object_id: &id,
                recipient: &recipient,
                owner_key: &owner_key,
                content_type: &content_type,
            };
            cloister::job::upload(&targets, &cloister::job::Upload::Plain(args)).await
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
            cloister::job::submit(&target.targets()?, &job, &grants, chunk_rows, json).await
        }
        JobCommand::Status { id, job, target, watch, json } => {
            cloister::job::status(&target.targets()?, &which(id, job)?, watch, json).await
        }
        JobCommand::Fetch { id, job, from, target, secret, output } => {
            let targets = if from.is_some() { target.expecting()? } else { target.targets()? };
            let which = which(id, job)?;
            cloister::job::fetch(&targets, &which, from.as_deref(), &secret, &output).await
        }
        JobCommand::RunShard { target, job, index, inputs, grants, chunk_rows, out, wait_secs } => {
            let cloister::job::JobFile::Sharded(plan) = cloister::job::read_job(&job)? else {
                anyhow::bail!("{} is one job's spec, not a sharded job's plan", job.display());
            };
            let args = cloister::job::RunShardArgs {
                plan: &plan,
                index,
                inputs: &inputs,
                grants: &grants,
                chunk_rows,
                out: &out,
                wait: std::time::Duration::from_secs(wait_secs),
            };
            cloister::job::run_shard(&target.target()?, &args).await
        }
        JobCommand::RevokeGrant { job, job_digest, key, authority, authority_tls, json } => {
            let digests = match (job, job_digest) {
                (Some(path), _) => match cloister::job::read_job(&path)? {
                    cloister::job::JobFile::One(spec) => vec![spec.digest()?],
                    cloister::job::JobFile::Sharded(plan) => plan
                        .shard_specs()
                        .iter()
                        .map(cloister_types::JobSpec::digest)
                        .collect::<Result<_, _>>()?,
                },
                (None, Some(hex)) => {
                    vec![cloister_types::Hex::parse(&hex).context("--job-digest")?]
                }
                (None, None) => unreachable!("clap requires one of --job and --job-digest"),
            };
            let authority =
                cloister_client::AuthorityClient::new_with(&authority, &authority_tls.tls()?)?;
            let owner = cloister::parties::read_any_signing_key(&key)?;
            for digest in digests {
                let revoked = cloister::parties::revoke_grant(&authority, &owner, &digest).await?;
                if json {
                    println!("{}", serde_json::to_string(&revoked)?);
                } else {
                    eprintln!("revoked every grant of {} for job digest {digest}", revoked.owner);
                }
            }
            Ok(())
        }
    }
}
