//! `cloister job upload|grant|submit|status|fetch`: durable batch jobs on a worker, from a
//! party's side: each input owner seals its file to a key-broker key and uploads it, and signs a
//! grant for exactly the job; the job is submitted, watched and its results fetched.
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
use cloister_seal::RecipientSecretKey;
use cloister_types::batch::{BatchChunk, BatchState, BatchStatus, SubmitBatch};
use cloister_types::{Hex, JobSpec};
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
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a job spec (JSON)", path.display()))
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

/// `job upload`: seals a file once to a key-broker key as the owner's object, uploads it to the
/// attested worker, and prints the input reference a job spec names (`{"object_id", "sha256",
/// "owner"}`).
pub async fn upload(target: &WorkerTarget, args: &UploadArgs<'_>) -> Result<()> {
    let owner = crate::parties::read_signing_key(args.owner_key)?.public_key().to_text();
    let recipient =
        crate::model::text_or_file(args.recipient, cloister_seal::BROKER_REFERENCE_PREFIX)?;
    let plaintext = Zeroizing::new(
        std::fs::read(args.file).with_context(|| format!("reading {}", args.file.display()))?,
    );
    let client = target.client()?;
    let input = crate::parties::seal_to_broker_and_upload(
        &client,
        &owner,
        &recipient,
        args.object_id,
        args.content_type,
        &plaintext,
    )
    .await
    .with_context(|| format!("uploading {} to {}", args.file.display(), target.url))?;
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

/// `job grant`: the owner of one of a job's inputs signs a grant letting exactly that job use it,
/// in enclaves measured and appraised as given, with results sealed only to the job's output
/// recipients.
pub fn grant(args: &GrantArgs<'_>) -> Result<()> {
    let spec = read_spec(args.job)?;
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
    let key = crate::parties::read_signing_key(args.signing_key)?;
    let admitted = crate::parties::Admitted {
        measurements: args.measurements.to_vec(),
        instances: args.instances.to_vec(),
    };
    let grant =
        crate::parties::sign_grant(&key, &spec, role, &admitted, &spec.output_recipients, None)?;
    crate::testbed::refuse_overwrite(&[args.output])?;
    std::fs::write(args.output, format!("{grant}\n"))
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "granted job {} ({}) the {} input; results only to {} recipient(s)",
        spec.id,
        spec.digest()?,
        args.role,
        spec.output_recipients.len()
    );
    Ok(())
}

/// `job submit`: queues the job in `spec` (JSON) with the grants (one compact JWS per file).
pub async fn submit(
    target: &WorkerTarget,
    spec: &Path,
    grants: &[PathBuf],
    chunk_rows: u64,
    json: bool,
) -> Result<()> {
    let spec = read_spec(spec)?;
    let grants = grants
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .with_context(|| format!("reading the grant {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let client = target.client()?;
    let accepted = client
        .submit_batch(&SubmitBatch { spec, grants, chunk_rows })
        .await
        .context("the worker did not queue the job")?;
    if json {
        println!("{}", serde_json::to_string(&accepted)?);
    } else {
        println!("{}", accepted.job_id);
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

/// `job status`: one line (or JSON); with `watch`, a progress bar until the job ends. Fails when
/// the job failed.
pub async fn status(target: &WorkerTarget, job_id: &str, watch: bool, json: bool) -> Result<()> {
    let client = target.client()?;
    let mut status = client.batch_status(job_id).await?;
    if watch {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(status.rows_total.unwrap_or(0))
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({percent}%, eta {eta}) {msg}")
        {
            bar.set_style(style);
        }
        while matches!(status.state, BatchState::Queued | BatchState::Running) {
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

/// `job fetch`: verifies the receipt, downloads and checks every chunk, opens each with `secret`
/// and writes the CSV to `output` (replaced only when everything checked), and the job's status
/// beside it as `OUTPUT.receipt.json`: the receipt with its signer's certificate chain and the
/// chunks it commits to, which anyone can check again later (the web console's *Verify a
/// receipt*).
pub async fn fetch(
    target: &WorkerTarget,
    job_id: &str,
    secret: &Path,
    output: &Path,
) -> Result<()> {
    let key = crate::envelope::read_secret(secret)?;
    let expectations = target.expectations()?;
    let client = WorkerClient::new(&target.url, expectations.clone())?;
    let status = client.batch_status(job_id).await?;
    ensure!(
        status.state == BatchState::Done,
        "batch job {job_id} is not done: {}",
        status_line(&status)
    );
    let verified = verify_batch_receipt(&status, &expectations)?;
    let output_bytes = download(&client, &verified.chunks, &key).await?;
    let receipt = &verified.receipt;
    let mut receipt_path = output.as_os_str().to_owned();
    receipt_path.push(".receipt.json");
    let receipt_path = PathBuf::from(receipt_path);
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

/// Downloads every chunk the receipt commits to, checks its digest, opens it and concatenates.
async fn download(
    client: &WorkerClient,
    chunks: &[BatchChunk],
    key: &RecipientSecretKey,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut output = Zeroizing::new(Vec::new());
    for chunk in chunks {
        let sealed = client.get_object(&chunk.object_id).await?;
        ensure!(
            Sha256::digest(&sealed).as_slice() == chunk.ciphertext_sha256.as_bytes(),
            "chunk {} ({}) is not the object the receipt names",
            chunk.index,
            chunk.object_id
        );
        let (header, plain) = cloister_seal::open_to_vec(key, &sealed)
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
        output.extend_from_slice(&plain);
    }
    Ok(output)
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
