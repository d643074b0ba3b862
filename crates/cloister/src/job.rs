//! `cloister job split|seal|upload|grant|submit|status|fetch|run-shard`: durable batch jobs on
//! workers, from a party's side: each input owner seals its file to a key-broker key and uploads
//! it, and signs a grant for exactly the job; the job is submitted, watched and its results
//! fetched.
//!
//! A job split by data shard (a [`ShardedJob`] plan) runs each shard as its own job on one of
//! several workers, with its own grants and receipt; `fetch` checks every shard's receipt against
//! the plan and keeps them together as the combined receipt.
//!
//! Every command first verifies the worker's enclave certificate against the caller's own
//! expectations (instance CA, measurements, `sim` only when accepted) during the TLS handshake.
//! `fetch` downloads every chunk, checks it against the receipt (signed by an enclave the caller's
//! expectations accept), opens it with the caller's key and writes the concatenated CSV; on any
//! failure nothing is written.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use cloister_client::{Expectations, WorkerClient};
use cloister_seal::EnvelopeSecretKey;
use cloister_types::batch::{BatchChunk, BatchState, BatchStatus, CombinedReceipt, SubmitBatch};
use cloister_types::{Hex, InputRef, JobSpec, ShardedJob};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// How often `status --watch` polls.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Which worker, and what its enclave must be.
#[derive(Clone, Debug)]
pub struct WorkerTarget {
    /// The worker's URL (`https://…`).
    pub url: String,
    /// The instance CA certificate (PEM file).
    pub ca: PathBuf,
    /// Accepted measurements.
    pub measurements: Vec<Hex>,
    /// Accept the simulated TEE.
    pub accept_sim: bool,
    /// Accept evidence under a test root the instance names (development only).
    pub accept_test_root: bool,
}

impl WorkerTarget {
    pub(crate) fn expectations(&self) -> Result<Expectations> {
        let ca_pem = std::fs::read_to_string(&self.ca)
            .with_context(|| format!("reading the instance CA {}", self.ca.display()))?;
        ensure!(
            !self.measurements.is_empty(),
            "give the accepted enclave measurements with --measurement"
        );
        let tees = crate::parties::accepted_tees(self.accept_sim);
        Ok(Expectations::from_ca_pem(&ca_pem, self.measurements.clone(), tees)?
            .accepting_test_roots(self.accept_test_root))
    }

    pub(crate) fn client(&self) -> Result<WorkerClient> {
        Ok(WorkerClient::new(&self.url, self.expectations()?)?)
    }
}

/// Reads a job spec (JSON).
pub fn read_spec(path: &Path) -> Result<JobSpec> {
    match read_job(path)? {
        JobFile::One(spec) => Ok(spec),
        JobFile::Sharded(_) => {
            bail!("{} is a sharded job's plan; this command takes one job's spec", path.display())
        }
    }
}

/// A job file: one job's spec, or the plan of a job split by data shard.
#[derive(Clone, Debug)]
pub enum JobFile {
    /// `{"id", "kind", "model", "data", "output_recipients"}`.
    One(JobSpec),
    /// `{"id", "kind", "model", "shards", "output_recipients"}`, checked.
    Sharded(ShardedJob),
}

/// Reads a job file: a plan when it has `shards`, else one job's spec.
pub fn read_job(path: &Path) -> Result<JobFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a job spec (JSON)", path.display()))?;
    if value.get("shards").is_some() {
        let plan: ShardedJob = serde_json::from_value(value).with_context(|| {
            format!(
                "{} is not a sharded job's plan ({{\"id\", \"kind\", \"model\", \"shards\", \
                 \"output_recipients\"}})",
                path.display()
            )
        })?;
        plan.check().with_context(|| format!("the plan {}", path.display()))?;
        Ok(JobFile::Sharded(plan))
    } else {
        serde_json::from_value(value)
            .map(JobFile::One)
            .with_context(|| format!("{} is not a job spec", path.display()))
    }
}

/// Where `fetch` gets a sharded job's statuses and sealed results.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// From the workers, over attested TLS (shard i from worker i mod n).
    Workers(&'a [WorkerClient]),
    /// From a directory `run-shard` wrote: `SHARD_ID.status.json` and the sealed chunk objects,
    /// each a file named by its object id.
    Dir(&'a Path),
}

impl Source<'_> {
    async fn status(&self, plan: &ShardedJob, index: usize) -> Result<BatchStatus> {
        let id = plan.shard_id(index);
        match self {
            Source::Workers(clients) => clients[index % clients.len()]
                .batch_status(&id)
                .await
                .with_context(|| format!("shard {index} ({id})")),
            Source::Dir(dir) => {
                let path = dir.join(format!("{id}.status.json"));
                let text = read_capped(&path, MAX_STATUS_BYTES).with_context(|| {
                    format!("shard {index}'s status (written by `job run-shard`)")
                })?;
                serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not a batch job's status", path.display()))
            }
        }
    }

    async fn object(&self, index: usize, object_id: &str) -> Result<Vec<u8>> {
        match self {
            Source::Workers(clients) => {
                Ok(clients[index % clients.len()].get_object(object_id).await?)
            }
            Source::Dir(dir) => {
                ensure!(
                    cloister_types::job::is_object_id(object_id),
                    "the status names an object id that is no file name: {object_id:?}"
                );
                read_capped(&dir.join(object_id), MAX_CHUNK_BYTES)
            }
        }
    }
}

/// The largest status file `fetch --from` reads.
const MAX_STATUS_BYTES: u64 = 64 << 20;
/// The largest chunk file `fetch --from` reads.
const MAX_CHUNK_BYTES: u64 = 1 << 30;

/// Reads a file the host may have put there: a regular file (after links) of at most `cap`
/// bytes, so that a device, a FIFO or an endless file neither hangs nor exhausts memory.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // Without O_NONBLOCK, opening a FIFO waits for a writer: the open itself would hang.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
    ensure!(meta.is_file(), "{} is not a regular file", path.display());
    ensure!(meta.len() <= cap, "{} is over {cap} bytes", path.display());
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    ensure!(bytes.len() as u64 <= cap, "{} grew past {cap} bytes", path.display());
    Ok(bytes)
}

/// Which job `status` and `fetch` look at: one by id, or every shard of a plan.
#[derive(Clone, Debug)]
pub enum Which {
    /// One job on one worker, by id.
    Id(String),
    /// One job on one worker, by the spec its owners granted.
    One(JobSpec),
    /// Each shard of the plan on its worker (shard i on worker i mod n).
    Plan(ShardedJob),
}

/// The one worker of a command that talks to one.
fn one(targets: &[WorkerTarget]) -> Result<&WorkerTarget> {
    match targets {
        [one] => Ok(one),
        several => bail!(
            "one job runs on one worker, {} were given (--worker); several are for a sharded \
             job's plan",
            several.len()
        ),
    }
}

/// A client for each worker, in order.
fn clients(targets: &[WorkerTarget]) -> Result<Vec<WorkerClient>> {
    ensure!(!targets.is_empty(), "give the workers with --worker");
    targets.iter().map(WorkerTarget::client).collect()
}

/// Whether a CSV's first line is a header of column names: as the engine reads a table, when a
/// cell is not a number.
fn is_csv_header(line: &[u8]) -> bool {
    String::from_utf8_lossy(line)
        .trim_end()
        .split(',')
        .any(|cell| cell.trim().trim_matches('"').parse::<f32>().is_err())
}

/// `job split`: splits a data set into `shards` files of contiguous rows, as even as can be, in
/// `out_dir` (`NAME.shard-I-of-N.EXT`); a CSV's header line (when its first line is not all
/// numbers) starts every shard. Returns their paths in order; writes nothing if any exists.
pub fn split(file: &Path, shards: usize, out_dir: &Path) -> Result<Vec<PathBuf>> {
    ensure!(
        (1..=cloister_types::job::MAX_SHARDS).contains(&shards),
        "--shards {shards}: split into 1 to {} shards",
        cloister_types::job::MAX_SHARDS
    );
    let bytes =
        Zeroizing::new(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
    let csv = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let header = lines.first().copied().filter(|first| csv && is_csv_header(first));
    let rows = &lines[usize::from(header.is_some())..];
    ensure!(
        rows.len() >= shards,
        "{} has {} rows, fewer than the {shards} shards asked for",
        file.display(),
        rows.len()
    );
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
    let ext =
        file.extension().and_then(|e| e.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
    let paths: Vec<PathBuf> =
        (0..shards).map(|i| out_dir.join(format!("{stem}.shard-{i}-of-{shards}{ext}"))).collect();
    crate::testbed::refuse_overwrite(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let (base, extra) = (rows.len() / shards, rows.len() % shards);
    let mut next = 0;
    for (i, path) in paths.iter().enumerate() {
        let take = base + usize::from(i < extra);
        let mut shard = Zeroizing::new(header.map(<[u8]>::to_vec).unwrap_or_default());
        for row in &rows[next..next + take] {
            shard.extend_from_slice(row);
            if !row.ends_with(b"\n") {
                shard.push(b'\n');
            }
        }
        next += take;
        std::fs::write(path, &*shard).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(paths)
}

/// What `job upload` was asked.
pub struct UploadArgs<'a> {
    /// The plaintext file.
    pub file: &'a Path,
    /// The object id on the worker.
    pub object_id: &'a str,
    /// The key-broker recipient (text or a file holding it).
    pub recipient: &'a str,
    /// The owner's signing key: its public key is the object's owner.
    pub owner_key: &'a Path,
    /// The content type recorded in the envelope.
    pub content_type: &'a str,
}

/// Seals `args.file` once to the key-broker key as the owner's object; returns the envelope and
/// the owner.
fn seal_file(args: &UploadArgs<'_>) -> Result<(Vec<u8>, String)> {
    let owner = crate::parties::read_any_signing_key(args.owner_key)?.public_key().to_text();
    ensure!(
        args.recipient != TO_ENCLAVE,
        "--recipient enclave seals to a running enclave: use `job upload --worker URL` (one \
         worker), not `job seal`"
    );
    let recipient =
        crate::model::text_or_file(args.recipient, cloister_seal::BROKER_REFERENCE_PREFIX)?;
    let plaintext = Zeroizing::new(
        std::fs::read(args.file).with_context(|| format!("reading {}", args.file.display()))?,
    );
    let sealed = crate::parties::seal_to_broker(
        &owner,
        &recipient,
        args.object_id,
        args.content_type,
        &plaintext,
    )?;
    Ok((sealed, owner))
}

/// `job upload --recipient enclave`: the recipient is the attested enclave itself.
pub const TO_ENCLAVE: &str = "enclave";

/// Seals `args.file` as the owner's object to the envelope key of the enclave `client`'s TLS
/// connection verified (X25519, or SM2 for a ShangMi enclave).
async fn seal_to_enclave(client: &WorkerClient, args: &UploadArgs<'_>) -> Result<Vec<u8>> {
    let owner = crate::parties::read_any_signing_key(args.owner_key)?.public_key();
    let (enclave, _) = client.attest().await.context("verifying the worker's enclave")?;
    let enclave_suite = enclave.receipt_pk.suite();
    ensure!(
        owner.suite() == enclave_suite,
        "your signing key is an {} key but the enclave runs {enclave_suite}: an enclave takes \
         the grants of one suite only (make an SM2 key with `cloister keygen --signing --suite \
         sm` for a ShangMi enclave)",
        owner.suite()
    );
    let plaintext = Zeroizing::new(
        std::fs::read(args.file).with_context(|| format!("reading {}", args.file.display()))?,
    );
    eprintln!(
        "sealing to the {} enclave with measurement {} ({})",
        enclave.claims.tee,
        enclave.claims.measurement,
        enclave.hpke_pk.suite()
    );
    crate::parties::seal_to_enclave(
        &enclave,
        &owner.to_text(),
        args.object_id,
        args.content_type,
        &plaintext,
    )
}

/// `job seal`: seals a file once to a key-broker key as the owner's object and writes the
/// envelope to `output` (never overwritten), for `job upload --sealed` later by anyone, to any
/// worker; returns the input reference a job spec names.
pub fn seal(args: &UploadArgs<'_>, output: &Path) -> Result<InputRef> {
    crate::testbed::refuse_overwrite(&[output])?;
    let (sealed, owner) = seal_file(args)?;
    write_atomically(output, &sealed)?;
    Ok(InputRef {
        object_id: args.object_id.to_owned(),
        sha256: Hex(Sha256::digest(&sealed).to_vec()),
        owner,
    })
}

/// What `job upload` sends.
pub enum Upload<'a> {
    /// A plaintext file, sealed here first.
    Plain(UploadArgs<'a>),
    /// An envelope `job seal` wrote, sent as is.
    Sealed(&'a Path),
}

/// `job upload`: seals a file once to a key-broker key as the owner's object (or takes one
/// sealed before), uploads the same bytes to every attested worker given (a sharded job's model
/// goes to each), and prints the input reference a job spec names (`{"object_id", "sha256",
/// "owner"}`).
pub async fn upload(targets: &[WorkerTarget], what: &Upload<'_>) -> Result<()> {
    let clients = clients(targets)?;
    let (sealed, file) = match what {
        Upload::Plain(args) if args.recipient == TO_ENCLAVE => {
            let [client] = clients.as_slice() else {
                bail!(
                    "--recipient enclave seals to one enclave: give exactly one --worker (an \
                     envelope sealed to an enclave opens in that enclave only)"
                );
            };
            (seal_to_enclave(client, args).await?, args.file)
        }
        Upload::Plain(args) => (seal_file(args)?.0, args.file),
        Upload::Sealed(path) => {
            (std::fs::read(path).with_context(|| format!("reading {}", path.display()))?, *path)
        }
    };
    let mut input = None;
    for (client, target) in clients.iter().zip(targets) {
        let stored = match crate::parties::upload_sealed(client, sealed.clone()).await {
            Ok(stored) => stored,
            // A worker that holds exactly this envelope already (an earlier try) keeps it.
            Err(error) => match held_identical(client, &sealed).await {
                Some(stored) => {
                    eprintln!("{} holds this object already; kept", target.url);
                    stored
                }
                None => {
                    return Err(error).with_context(|| {
                        format!("uploading {} to {}", file.display(), target.url)
                    });
                }
            },
        };
        input = Some(stored);
    }
    let input = input.context("no worker was given")?;
    println!("{}", serde_json::to_string(&input)?);
    Ok(())
}

/// What `job grant` was asked.
pub struct GrantArgs<'a> {
    /// The job spec.
    pub job: &'a Path,
    /// `model` or `data`: which input of the job the signer owns.
    pub role: &'a str,
    /// The signer's key.
    pub signing_key: &'a Path,
    /// The enclave measurements admitted.
    pub measurements: &'a [Hex],
    /// The attestation instances admitted.
    pub instances: &'a [String],
    /// Where to write the grant.
    pub output: &'a Path,
}

/// The reference to `sealed` when the worker already holds exactly those bytes under the id
/// their envelope names.
async fn held_identical(client: &WorkerClient, sealed: &[u8]) -> Option<InputRef> {
    let header = cloister_seal::read_header(sealed).ok()?;
    let metadata = header.metadata();
    let owner = metadata.attributes.get(cloister_types::OWNER_ATTRIBUTE)?.clone();
    let held = client.get_object(&metadata.object_id).await.ok()?;
    (held == sealed).then(|| InputRef {
        object_id: metadata.object_id.clone(),
        sha256: Hex(Sha256::digest(sealed).to_vec()),
        owner,
    })
}

/// `job grant`: the owner of one of a job's inputs signs a grant letting exactly that job use it,
/// in enclaves measured and appraised as given, with results sealed only to the job's output
/// recipients. For a sharded job's plan, one grant per shard's job, one per line.
pub fn grant(args: &GrantArgs<'_>) -> Result<()> {
    let (specs, plan) = match read_job(args.job)? {
        JobFile::One(spec) => (vec![spec], None),
        JobFile::Sharded(plan) => (plan.shard_specs(), Some(plan)),
    };
    let role = match args.role {
        "model" => cloister_types::InputRole::Model,
        "data" => cloister_types::InputRole::Data,
        other => bail!("--role {other:?}: use model or data"),
    };
    ensure!(
        !args.measurements.is_empty(),
        "give the admitted enclave measurements (--measurement)"
    );
    ensure!(!args.instances.is_empty(), "give the admitted attestation instances (--instance)");
    let key = crate::parties::read_any_signing_key(args.signing_key)?;
    let admitted = crate::parties::Admitted {
        measurements: args.measurements.to_vec(),
        instances: args.instances.to_vec(),
    };
    let mut grants = String::new();
    for spec in &specs {
        let grant =
            crate::parties::sign_grant(&key, spec, role, &admitted, &spec.output_recipients, None)?;
        grants.push_str(&grant);
        grants.push('\n');
    }
    crate::testbed::refuse_overwrite(&[args.output])?;
    std::fs::write(args.output, grants)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let recipients = specs[0].output_recipients.len();
    match plan {
        None => eprintln!(
            "granted job {} ({}) the {} input; results only to {recipients} recipient(s)",
            specs[0].id,
            specs[0].digest()?,
            args.role,
        ),
        Some(plan) => eprintln!(
            "granted each of the {} shards of job {} (plan {}) the {} input, one grant per \
             line; results only to {recipients} recipient(s)",
            specs.len(),
            plan.id,
            plan.digest()?,
            args.role,
        ),
    }
    Ok(())
}

/// Reads grant files: one compact JWS per line (a sharded job's grant file has one per shard).
fn read_grants(paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut grants = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the grant {}", path.display()))?;
        grants.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
    }
    Ok(grants)
}

/// A claim of a compact JWS (a grant, a receipt), read without checking its signature: only to
/// route a grant to its shard's job, or to say which job a receipt is for in a status line
/// (the worker verifies every grant; `fetch` verifies every receipt).
fn peek_claim(token: &str, name: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}

/// The job id a grant names (unchecked, see [`peek_claim`]).
fn grant_job_id(grant: &str) -> Option<String> {
    peek_claim(grant, "job_id")
}

/// `job submit`: queues the job in `spec` (JSON) with the grants (one compact JWS per line of
/// each file). A sharded job's plan queues each shard's job, with the grants naming it, on
/// worker i mod n.
pub async fn submit(
    targets: &[WorkerTarget],
    spec: &Path,
    grants: &[PathBuf],
    chunk_rows: u64,
    json: bool,
) -> Result<()> {
    let grants = read_grants(grants)?;
    let plan = match read_job(spec)? {
        JobFile::One(spec) => {
            let client = one(targets)?.client()?;
            let accepted = client
                .submit_batch(&SubmitBatch { spec, grants, chunk_rows })
                .await
                .context("the worker did not queue the job")?;
            if json {
                println!("{}", serde_json::to_string(&accepted)?);
            } else {
                println!("{}", accepted.job_id);
            }
            return Ok(());
        }
        JobFile::Sharded(plan) => plan,
    };
    let clients = clients(targets)?;
    if clients.len() > plan.shards.len() {
        eprintln!(
            "warning: {} workers given for {} shards: the last {} get nothing",
            clients.len(),
            plan.shards.len(),
            clients.len() - plan.shards.len()
        );
    }
    let mut queued = Vec::new();
    for (index, spec) in plan.shard_specs().into_iter().enumerate() {
        let mine: Vec<String> = grants
            .iter()
            .filter(|g| grant_job_id(g).as_deref() == Some(spec.id.as_str()))
            .cloned()
            .collect();
        ensure!(
            !mine.is_empty(),
            "no grant names shard {index}'s job {}: each owner signs one per shard with \
             `cloister job grant --job PLAN`",
            spec.id
        );
        let worker = index % clients.len();
        let job_id = spec.id.clone();
        // A shard queued by an earlier try is left as it is (`fetch` checks that its receipt
        // names this plan's shard), so a submit that stopped part-way can be run again.
        if let Ok(held) = clients[worker].batch_status(&job_id).await {
            eprintln!(
                "shard {index} ({job_id}) is already on {} ({}); not queued again",
                targets[worker].url,
                held.state.as_str()
            );
            queued.push(job_id);
            continue;
        }
        let accepted = clients[worker]
            .submit_batch(&SubmitBatch { spec, grants: mine, chunk_rows })
            .await
            .with_context(|| {
                format!(
                    "{} did not queue shard {index} ({job_id}); shards queued before it: {} \
                     (run the same submit again once fixed: those are kept)",
                    targets[worker].url,
                    if queued.is_empty() { "none".to_owned() } else { queued.join(", ") }
                )
            })?;
        if json {
            let line = serde_json::json!({
                "shard": index,
                "job_id": accepted.job_id,
                "state": accepted.state,
                "worker": targets[worker].url,
            });
            println!("{line}");
        } else {
            println!("{}\t{}", accepted.job_id, targets[worker].url);
        }
        queued.push(accepted.job_id);
    }
    Ok(())
}

fn status_line(status: &BatchStatus) -> String {
    let total = status.rows_total.map_or_else(|| "?".to_owned(), |t| t.to_string());
    let chunks = status.chunks_total.map_or_else(|| "?".to_owned(), |t| t.to_string());
    let mut line = format!(
        "{}: {}, {}/{total} rows, {}/{chunks} chunks",
        status.job_id,
        status.state.as_str(),
        status.rows_done,
        status.chunks.len()
    );
    if let Some(reason) = &status.reason {
        line.push_str(&format!(" ({reason})"));
    }
    line
}

/// Each shard's status, from its worker (shard i on worker i mod n) or a directory.
async fn shard_statuses(plan: &ShardedJob, source: Source<'_>) -> Result<Vec<BatchStatus>> {
    let mut statuses = Vec::with_capacity(plan.shards.len());
    for index in 0..plan.shards.len() {
        statuses.push(source.status(plan, index).await?);
    }
    Ok(statuses)
}

fn running(status: &BatchStatus) -> bool {
    matches!(status.state, BatchState::Queued | BatchState::Running)
}

/// `job status`: one line (or JSON); with `watch`, a progress bar until the job ends. Fails when
/// the job failed. For a sharded job's plan: a line per shard and one for the whole job (JSON:
/// `{"job_id", "rows_done", "rows_total", "shards_done", "shards": [{"worker", "this_plan",
/// "status"}…]}`), failing when any shard failed or is another plan's job under the same id.
pub async fn status(
    targets: &[WorkerTarget],
    which: &Which,
    watch: bool,
    json: bool,
) -> Result<()> {
    match which {
        Which::Id(id) => one_status(one(targets)?, id, watch, json).await,
        Which::One(spec) => one_status(one(targets)?, &spec.id, watch, json).await,
        Which::Plan(plan) => plan_status(targets, plan, watch, json).await,
    }
}

async fn plan_status(
    targets: &[WorkerTarget],
    plan: &ShardedJob,
    watch: bool,
    json: bool,
) -> Result<()> {
    let clients = clients(targets)?;
    let mut statuses = shard_statuses(plan, Source::Workers(&clients)).await?;
    let done = |s: &[BatchStatus]| s.iter().map(|s| s.rows_done).sum::<u64>();
    let total = |s: &[BatchStatus]| s.iter().map(|s| s.rows_total.unwrap_or(0)).sum::<u64>();
    if watch {
        let bar = progress_bar(total(&statuses));
        while statuses.iter().any(running) {
            bar.set_length(total(&statuses));
            bar.set_position(done(&statuses));
            tokio::time::sleep(WATCH_INTERVAL).await;
            statuses = shard_statuses(plan, Source::Workers(&clients)).await?;
        }
        bar.finish_and_clear();
    }
    // A done job under a shard's id whose receipt names another digest is another plan's (the
    // same id reused): said here, as `fetch` would refuse it.
    let mut foreign = Vec::new();
    for (index, status) in statuses.iter().enumerate() {
        let named = status.receipt.as_deref().and_then(|r| peek_claim(r, "job_digest"));
        if named
            .is_some_and(|d| Some(d) != plan.shard_spec(index).digest().ok().map(|h| h.to_string()))
        {
            foreign.push(status.job_id.as_str());
        }
    }
    if json {
        let shards: Vec<serde_json::Value> = statuses
            .iter()
            .enumerate()
            .map(|(index, status)| {
                serde_json::json!({
                    "worker": targets[index % targets.len()].url,
                    "this_plan": !foreign.contains(&status.job_id.as_str()),
                    "status": status,
                })
            })
            .collect();
        let line = serde_json::json!({
            "job_id": plan.id,
            "rows_done": done(&statuses),
            "rows_total": total(&statuses),
            "shards_done": statuses.iter().filter(|s| s.state == BatchState::Done).count(),
            "shards": shards,
        });
        println!("{line}");
    } else {
        for status in &statuses {
            let mut line = status_line(status);
            if foreign.contains(&status.job_id.as_str()) {
                line.push_str(" — NOT this plan's shard: its receipt names another job digest");
            }
            println!("{line}");
        }
        let finished = statuses
            .iter()
            .filter(|s| s.state == BatchState::Done && !foreign.contains(&s.job_id.as_str()))
            .count();
        println!(
            "{}: {finished}/{} shards done, {}/{} rows",
            plan.id,
            statuses.len(),
            done(&statuses),
            total(&statuses)
        );
    }
    ensure!(
        foreign.is_empty(),
        "sharded job {}: {} ran another plan's job under the same id",
        plan.id,
        foreign.join(", ")
    );
    let failed: Vec<&str> = statuses
        .iter()
        .filter(|s| s.state == BatchState::Failed)
        .map(|s| s.job_id.as_str())
        .collect();
    ensure!(failed.is_empty(), "sharded job {}: {} failed", plan.id, failed.join(", "));
    Ok(())
}

/// A progress bar on standard error when it is a terminal (hidden otherwise).
fn progress_bar(length: u64) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(length)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({percent}%, eta {eta}) {msg}")
    {
        bar.set_style(style);
    }
    bar
}

async fn one_status(target: &WorkerTarget, job_id: &str, watch: bool, json: bool) -> Result<()> {
    let client = target.client()?;
    let mut status = client.batch_status(job_id).await?;
    if watch {
        let bar = progress_bar(status.rows_total.unwrap_or(0));
        while running(&status) {
            bar.set_length(status.rows_total.unwrap_or(0));
            bar.set_position(status.rows_done);
            bar.set_message(status.state.as_str());
            tokio::time::sleep(WATCH_INTERVAL).await;
            status = client.batch_status(job_id).await?;
        }
        bar.set_length(status.rows_total.unwrap_or(0));
        bar.set_position(status.rows_done);
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        println!("{}", status_line(&status));
    }
    if status.state == BatchState::Failed {
        bail!("batch job {job_id} failed: {}", status.reason.unwrap_or_default());
    }
    Ok(())
}

/// `OUTPUT.receipt.json`: where `fetch` keeps the receipt.
fn receipt_path(output: &Path) -> PathBuf {
    let mut path = output.as_os_str().to_owned();
    path.push(".receipt.json");
    PathBuf::from(path)
}

/// `job fetch`: verifies the receipt, downloads and checks every chunk, opens each with `secret`
/// and writes the CSV to `output` (replaced only when everything checked), and the job's status
/// beside it as `OUTPUT.receipt.json`: the receipt with its signer's certificate chain and the
/// chunks it commits to, which anyone can check again later (the web console's *Verify a
/// receipt*). For a sharded job's plan: every shard's receipt checked against the plan, the
/// shards' results concatenated in order (a CSV's header once), and the combined receipt kept.
///
/// With `from` (a sharded job's plan only): no worker is asked; the statuses and sealed results
/// are read from the directory `job run-shard` wrote them to, and checked the same way.
pub async fn fetch(
    targets: &[WorkerTarget],
    which: &Which,
    from: Option<&Path>,
    secret: &Path,
    output: &Path,
) -> Result<()> {
    match (which, from) {
        (Which::Id(id), _) => bail!(
            "give the job you granted or submitted with --job JOB.json, not only its id \
             ({id}): its receipt is checked against that job, so that another job's results \
             under the same id are refused"
        ),
        (Which::One(spec), None) => fetch_one(one(targets)?, spec, secret, output).await,
        (Which::One(_), Some(_)) => {
            bail!("--from reads the results of a sharded job's plan; the job given is one job")
        }
        (Which::Plan(plan), Some(dir)) => {
            let expectations = one_expectations(targets)?;
            fetch_plan(plan, Source::Dir(dir), &expectations, secret, output).await
        }
        (Which::Plan(plan), None) => {
            let expectations = one_expectations(targets)?;
            let clients = clients(targets)?;
            fetch_plan(plan, Source::Workers(&clients), &expectations, secret, output).await
        }
    }
}

async fn fetch_plan(
    plan: &ShardedJob,
    source: Source<'_>,
    expectations: &Expectations,
    secret: &Path,
    output: &Path,
) -> Result<()> {
    let key = crate::envelope::read_envelope_secret(secret)?;
    let statuses = shard_statuses(plan, source).await?;
    for status in &statuses {
        ensure!(
            status.state == BatchState::Done,
            "sharded job {} is not done: {}",
            plan.id,
            status_line(status)
        );
    }
    let combined = CombinedReceipt { plan: plan.clone(), shards: statuses };
    let verified = cloister_client::verify_combined_receipt(&combined, expectations)?;
    let mut output_bytes = Zeroizing::new(Vec::new());
    let mut header: Option<Vec<u8>> = None;
    let mut first_row = 0u64;
    for (index, shard) in verified.shards.iter().enumerate() {
        let (bytes, csv_header) = download(source, index, &shard.chunks, &key)
            .await
            .with_context(|| format!("shard {index} ({})", shard.receipt.job_id))?;
        if csv_header {
            let end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |n| n + 1);
            let (first, body) = bytes.split_at(end);
            match &header {
                None => header = Some(first.to_vec()),
                Some(h) => ensure!(
                    h.as_slice() == first,
                    "shard {index}'s results have another CSV header than shard 0's"
                ),
            }
            output_bytes.extend_from_slice(if index == 0 { &bytes[..] } else { body });
        } else {
            // JSON lines number their rows from the shard's start: renumbered from the job's.
            renumber_rows(&bytes, first_row, &mut output_bytes)
                .with_context(|| format!("shard {index}'s answers"))?;
        }
        first_row += shard.receipt.rows;
    }
    let receipt_path = receipt_path(output);
    write_atomically(output, &output_bytes)?;
    write_atomically(&receipt_path, &serde_json::to_vec_pretty(&combined)?)?;
    let enclaves: std::collections::BTreeSet<&Hex> =
        verified.shards.iter().map(|s| &s.receipt.attestation_result_sha256).collect();
    eprintln!(
        "{} rows from {} shards written to {}; every shard's receipt verified against plan {} \
         (signed by {} enclave(s) with measurement {}); combined receipt kept in {}",
        verified.rows,
        verified.shards.len(),
        output.display(),
        verified.plan_sha256,
        enclaves.len(),
        verified.shards[0].receipt.measurement,
        receipt_path.display()
    );
    Ok(())
}

/// What `job run-shard` was asked.
pub struct RunShardArgs<'a> {
    /// The plan.
    pub plan: &'a ShardedJob,
    /// Which shard.
    pub index: usize,
    /// The directory holding the plan's model and the shard's data as envelopes `job seal`
    /// wrote, named `OBJECT_ID.sealed`.
    pub inputs: &'a Path,
    /// Grant files (one compact JWS per line); those naming the shard's job are used.
    pub grants: &'a [PathBuf],
    /// Rows per chunk.
    pub chunk_rows: u64,
    /// Where the shard's status and sealed results go.
    pub out: &'a Path,
    /// How long to wait for the worker to answer (it starts beside this command).
    pub wait: Duration,
}

/// `job run-shard`: one shard of a plan from start to end on one worker, as one pod of a
/// Kubernetes indexed Job runs it beside its worker: uploads the plan's model and the shard's
/// data from `inputs` (checked against the plan's digests first), queues the shard's job with
/// the grants that name it, waits until it is done, checks its receipt, and writes its sealed
/// results (`OUT/OBJECT_ID`) and then its status (`OUT/SHARD_ID.status.json`) for `job fetch
/// --job PLAN --from OUT`. Run again on a worker that has the job, it only waits and writes.
/// It holds no key: only ciphertext and signed statements pass through it.
pub async fn run_shard(target: &WorkerTarget, args: &RunShardArgs<'_>) -> Result<()> {
    let plan = args.plan;
    ensure!(
        args.index < plan.shards.len(),
        "shard {} of a plan with {} shards (they count from 0)",
        args.index,
        plan.shards.len()
    );
    let spec = plan.shard_spec(args.index);
    let grants: Vec<String> = read_grants(args.grants)?
        .into_iter()
        .filter(|g| grant_job_id(g).as_deref() == Some(spec.id.as_str()))
        .collect();
    ensure!(!grants.is_empty(), "no grant names shard {}'s job {}", args.index, spec.id);
    let mut sealed = Vec::new();
    let inputs = [&spec.model, &spec.data];
    for input in inputs {
        let path = args.inputs.join(format!("{}.sealed", input.object_id));
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            Sha256::digest(&bytes).as_slice() == input.sha256.as_bytes(),
            "{} is not the object the plan names (its SHA-256 differs)",
            path.display()
        );
        // The worker stores an envelope under the id and owner its header names: they must be
        // the plan's, or another object would be uploaded.
        let header = cloister_seal::read_header(bytes.as_slice())
            .with_context(|| format!("{} is not a sealed envelope", path.display()))?;
        let metadata = header.metadata();
        ensure!(
            metadata.object_id == input.object_id
                && metadata.attributes.get(cloister_types::OWNER_ATTRIBUTE) == Some(&input.owner),
            "{} is sealed as object {:?} of another owner or id than the plan's {:?}",
            path.display(),
            metadata.object_id,
            input.object_id
        );
        sealed.push(bytes);
    }
    let expectations = target.expectations()?;
    let client = WorkerClient::new(&target.url, expectations.clone())?;
    let deadline = std::time::Instant::now() + args.wait;
    loop {
        match client.attest().await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for the worker at {}: {e}", target.url);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                return Err(e).context(format!("the worker at {} never answered", target.url));
            }
        }
    }
    if client.batch_status(&spec.id).await.is_err() {
        for (input, bytes) in inputs.into_iter().zip(sealed) {
            // A worker that already holds the object (uploaded by an earlier try, or for another
            // shard) keeps it: objects are immutable, and the digest says it is the same one.
            if let Ok(held) = client.get_object(&input.object_id).await {
                ensure!(
                    Sha256::digest(&held).as_slice() == input.sha256.as_bytes(),
                    "the worker holds another object under {}",
                    input.object_id
                );
                continue;
            }
            crate::parties::upload_sealed(&client, bytes).await?;
        }
        let job = SubmitBatch { spec: spec.clone(), grants, chunk_rows: args.chunk_rows };
        client.submit_batch(&job).await.context("the worker did not queue the shard's job")?;
        eprintln!("queued {} on {}", spec.id, target.url);
    }
    let mut status = client.batch_status(&spec.id).await?;
    let mut shown = u64::MAX;
    while running(&status) {
        if status.rows_done != shown {
            eprintln!("{}", status_line(&status));
            shown = status.rows_done;
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
        status = client.batch_status(&spec.id).await?;
    }
    ensure!(status.state == BatchState::Done, "{}", status_line(&status));
    let verified = verify_batch_receipt(&status, &expectations)?;
    cloister_client::protocol::check_receipt_names_job(&verified.receipt, &spec)
        .with_context(|| format!("the receipt of shard job {}", spec.id))?;
    std::fs::create_dir_all(args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for chunk in &verified.chunks {
        let bytes = client.get_object(&chunk.object_id).await?;
        ensure!(
            Sha256::digest(&bytes).as_slice() == chunk.ciphertext_sha256.as_bytes(),
            "chunk {} ({}) is not the object the receipt names",
            chunk.index,
            chunk.object_id
        );
        write_atomically(&args.out.join(&chunk.object_id), &bytes)?;
    }
    let status_file = args.out.join(format!("{}.status.json", spec.id));
    write_atomically(&status_file, &serde_json::to_vec_pretty(&status)?)?;
    eprintln!(
        "{}: {} rows done; receipt verified; sealed results and status in {}",
        spec.id,
        verified.receipt.rows,
        args.out.display()
    );
    Ok(())
}

/// Appends the JSON lines of `answers` to `out`, each object's `row` moved on by `offset`.
fn renumber_rows(answers: &[u8], offset: u64, out: &mut Vec<u8>) -> Result<()> {
    for line in answers.split_inclusive(|&b| b == b'\n') {
        let mut answer: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(line).context("an answer is not a JSON object")?;
        if let Some(row) = answer.get("row").and_then(serde_json::Value::as_u64) {
            answer.insert("row".into(), (row + offset).into());
        }
        out.extend_from_slice(&Zeroizing::new(serde_json::to_vec(&answer)?));
        out.push(b'\n');
    }
    Ok(())
}

/// The expectations of several targets, which differ only by URL.
fn one_expectations(targets: &[WorkerTarget]) -> Result<Expectations> {
    targets.first().context("give the workers with --worker")?.expectations()
}

async fn fetch_one(
    target: &WorkerTarget,
    spec: &JobSpec,
    secret: &Path,
    output: &Path,
) -> Result<()> {
    let job_id = spec.id.as_str();
    let key = crate::envelope::read_envelope_secret(secret)?;
    let expectations = target.expectations()?;
    let client = WorkerClient::new(&target.url, expectations.clone())?;
    let status = client.batch_status(job_id).await?;
    ensure!(
        status.state == BatchState::Done,
        "batch job {job_id} is not done: {}",
        status_line(&status)
    );
    let verified = verify_batch_receipt(&status, &expectations)?;
    cloister_client::protocol::check_receipt_names_job(&verified.receipt, spec)
        .with_context(|| format!("the receipt of batch job {job_id}"))?;
    let (output_bytes, _) =
        download(Source::Workers(std::slice::from_ref(&client)), 0, &verified.chunks, &key).await?;
    let receipt = &verified.receipt;
    let receipt_path = receipt_path(output);
    write_atomically(output, &output_bytes)?;
    write_atomically(&receipt_path, &serde_json::to_vec_pretty(&status)?)?;
    eprintln!(
        "{} rows in {} chunks written to {}; receipt verified (signed by an enclave with measurement {}) and kept in {}",
        receipt.rows,
        verified.chunks.len(),
        output.display(),
        receipt.measurement,
        receipt_path.display()
    );
    Ok(())
}

pub use cloister_client::protocol::verify_batch_receipt;

/// Downloads every chunk the receipt commits to, checks its digest, opens it and concatenates;
/// says whether the first line is a CSV header.
async fn download(
    source: Source<'_>,
    shard: usize,
    chunks: &[BatchChunk],
    key: &EnvelopeSecretKey,
) -> Result<(Zeroizing<Vec<u8>>, bool)> {
    let mut output = Zeroizing::new(Vec::new());
    let mut has_header = false;
    for chunk in chunks {
        let sealed = source.object(shard, &chunk.object_id).await?;
        ensure!(
            Sha256::digest(&sealed).as_slice() == chunk.ciphertext_sha256.as_bytes(),
            "chunk {} ({}) is not the object the receipt names",
            chunk.index,
            chunk.object_id
        );
        let (header, plain) = cloister_seal::open_to_vec_with(key, &sealed)
            .with_context(|| format!("opening chunk {} with your key", chunk.index))?;
        ensure!(
            header.metadata().object_id == chunk.object_id,
            "chunk {} is labelled as another object",
            chunk.index
        );
        // One line per row (a prediction or a JSON answer), and chunk 0 of a CSV its header.
        let lines = plain.iter().filter(|&&b| b == b'\n').count() as u64;
        let csv_header = chunk.index == 0 && header.metadata().content_type == "text/csv";
        let expected = chunk.rows + u64::from(csv_header);
        ensure!(lines == expected, "chunk {} has {lines} lines, {expected} expected", chunk.index);
        has_header |= csv_header;
        output.extend_from_slice(&plain);
    }
    Ok((output, has_header))
}

/// Writes `bytes` to `output` through a synced temporary file in the same directory, so that
/// `output` is either untouched or complete.
pub(crate) fn write_atomically(output: &Path, bytes: &[u8]) -> Result<()> {
    let dir = output.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(output).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_text(name: &str, text: &str, shards: usize) -> Result<Vec<String>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join(name);
        std::fs::write(&file, text)?;
        let paths = split(&file, shards, &dir.path().join("out"))?;
        Ok(paths.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect())
    }

    #[test]
    fn split_keeps_every_row_once_in_order_and_a_csv_header_on_every_shard() {
        let shards = split_text("t.csv", "a,b\n1,2\n3,4\n5,6\n7,8\n9,10", 3).unwrap();
        assert_eq!(shards, ["a,b\n1,2\n3,4\n", "a,b\n5,6\n7,8\n", "a,b\n9,10\n"]);
        // A first line of numbers is a row, as the engine reads it.
        let shards = split_text("t.csv", "1,2\n3,4\n5,6\n", 2).unwrap();
        assert_eq!(shards, ["1,2\n3,4\n", "5,6\n"]);
        // JSON lines have no header.
        let shards = split_text("p.jsonl", "{\"prompt\":\"a\"}\n{\"prompt\":\"b\"}\n", 2).unwrap();
        assert_eq!(shards, ["{\"prompt\":\"a\"}\n", "{\"prompt\":\"b\"}\n"]);
        assert!(is_csv_header(b"\"x\",y\n") && !is_csv_header(b" 1.5 , \"2\"\n"));
    }

    #[test]
    fn answers_are_renumbered_from_their_shard_s_first_row() {
        let mut out = b"{\"row\":0}\n".to_vec();
        renumber_rows(b"{\"row\":0,\"answer\":\"a\"}\n{\"row\":1}\n", 5, &mut out).unwrap();
        assert_eq!(out, b"{\"row\":0}\n{\"row\":5,\"answer\":\"a\"}\n{\"row\":6}\n");
        assert!(renumber_rows(b"not json\n", 1, &mut Vec::new()).is_err());
    }

    #[test]
    fn split_refuses_more_shards_than_rows_and_never_overwrites() {
        let err = split_text("t.csv", "a,b\n1,2\n", 2).unwrap_err().to_string();
        assert!(err.contains("has 1 rows, fewer than the 2 shards"), "{err}");
        assert!(split_text("t.csv", "1\n", 0).unwrap_err().to_string().contains("1 to 1024"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.csv");
        std::fs::write(&file, "1\n2\n").unwrap();
        std::fs::write(dir.path().join("t.shard-1-of-2.csv"), "mine").unwrap();
        let err = split(&file, 2, dir.path()).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert!(!dir.path().join("t.shard-0-of-2.csv").exists());
    }
}
