//! `cloister demo hybrid`: hybrid execution on loopback, narrated.
//!
//! The compute provider runs an untrusted accelerator (`cloister serve accelerator`, a separate
//! process that records every request it receives under `compute/accelerator/`) beside the
//! attestation service and an enclave worker started with `--accelerator`. A model provider
//! imports the breast-cancer classifier and deploys it under a serving policy that declares its
//! weights public, which lets the enclave offload the classifier's matrix products: rows leave
//! the enclave quantized and blinded with fresh masks, and every product that comes back is range-
//! and Freivalds-checked before it is unblinded. A hospital scores its patients through
//! `cloister proxy`; the demo prints where each layer ran, what the checks saw and what the
//! enclave's share of the work cost, then searches the compute side — the accelerator's records
//! included — for the patients' values.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};
use cloister_repository::{NewModel, Repository};
use cloister_sign::unix_now;
use cloister_types::TeeKind;
use cloister_types::model::{
    DeployModel, LicenceTerms, ModelFormat, OffloadFallback, OffloadPolicy, RequesterLimits,
    ServingPolicy,
};

use crate::demo::{BREAST_CANCER_CSV, DEMO_MODEL_ONNX, ok, say, show_no_plaintext, split_labels};
use crate::parties::Party;
use crate::proxy::{self, ProxyOptions};
use crate::scan::Secret;
use crate::testbed::{self, ComputeDirs};

/// How long the enclave waits for one product before the request fails (the policy's timeout).
const OFFLOAD_TIMEOUT_MS: u64 = 5_000;

/// What `cloister demo hybrid` is given.
#[derive(Clone, Debug)]
pub struct HybridDemoOptions {
    /// Where every party's files go.
    pub workdir: PathBuf,
    /// The `cloister` executable that runs `serve accelerator` (this one).
    pub executable: PathBuf,
}

/// What the demo found.
#[derive(Debug)]
pub struct HybridDemoReport {
    /// Rows scored.
    pub rows: usize,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Linear layers whose products came from the accelerator and passed every check.
    pub offloaded_layers: usize,
    /// Requests the accelerator received (each recorded under `compute/accelerator/`).
    pub recorded_requests: usize,
}

/// The accelerator process, killed when dropped.
struct AcceleratorProcess {
    child: Child,
    address: String,
}

impl Drop for AcceleratorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve accelerator` on a free port, recording into `record`, and reads its address
/// from the `listening` event it logs.
fn start_accelerator(
    executable: &std::path::Path,
    record: &std::path::Path,
) -> Result<AcceleratorProcess> {
    let mut child = Command::new(executable)
        .args(["serve", "accelerator", "--listen", "127.0.0.1:0", "--threads", "2", "--record"])
        .arg(record)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} serve accelerator", executable.display()))?;
    let stderr = child.stderr.take().context("the accelerator's standard error")?;
    // Killed on every path from here on.
    let mut process = AcceleratorProcess { child, address: String::new() };
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let address = loop {
        let Some(Ok(line)) = lines.next() else {
            bail!("the accelerator did not start: {}", seen.join("\n"));
        };
        if let Some(address) = crate::logging::listening_field(&line, "address") {
            break address;
        }
        seen.push(line);
    };
    // Keep draining what it logs, so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    process.address = address;
    Ok(process)
}

/// Milliseconds, for the report.
fn ms(nanos: u64) -> String {
    format!("{:.2} ms", nanos as f64 / 1e6)
}

/// Runs the demo.
pub async fn run(options: &HybridDemoOptions) -> Result<HybridDemoReport> {
    let workdir = &options.workdir;
    let dirs = ComputeDirs::create(&workdir.join("compute"))?;
    let provider_dir = workdir.join("model-provider");
    let hospital_dir = workdir.join("data-provider");
    let record_dir = dirs.root.join("accelerator");

    println!("Cloister demo: hybrid execution (TEE + untrusted accelerator).");
    println!("The enclave keeps the data; an accelerator outside it computes the heavy matrix");
    println!("products on blinded values, and every answer is verified before it is used.");
    println!(
        "The TEE here is SIMULATED (`sim`): development only, no hardware protection. The \
         accelerator is a CPU process standing in for a GPU."
    );
    println!("Work directory: {}", workdir.display());

    say(
        "1. The compute provider starts the accelerator, the attestation service and the worker",
        "The accelerator is a separate, untrusted program (`cloister serve accelerator`): it holds\n\
         public weights and multiplies whatever rows it is sent. It records every request it\n\
         receives under compute/accelerator/, so they can be searched at the end. The worker is\n\
         started with --accelerator pointing at it.",
    );
    let accelerator = start_accelerator(&options.executable, &record_dir)?;
    ok(&format!("accelerator on {}", accelerator.address));
    let testbed::DevCompute { measurement: published, authority, worker, ca_pem, .. } =
        testbed::start_dev_compute_with_accelerator(&dirs, &accelerator.address).await?;
    ok(&format!("attestation service on {}, worker on {}", authority.url, worker.url));

    say(
        "2. The model provider imports its classifier and deploys it with public weights",
        "Its signed serving policy says `offload: {weights: public}`: the accelerator may see the\n\
         weights (it must, to multiply by them), never the inputs. Without that statement the\n\
         enclave computes every layer itself. The weights are sealed in the repository all the\n\
         same; the enclave uploads them to the accelerator once they are loaded.",
    );
    let provider = Party::create("the model provider", &provider_dir)?;
    let broker_key = authority
        .register_broker_key("classifier-weights", std::slice::from_ref(&published))
        .await?;
    let recipient = broker_key.recipient.parse().context("reading the broker recipient")?;
    let files =
        std::collections::BTreeMap::from([("model.onnx".to_owned(), DEMO_MODEL_ONNX.to_vec())]);
    let metadata = cloister_engine::inspect(ModelFormat::Onnx, &files)?;
    let repository = Repository::open(&dirs.models.display().to_string())?;
    let imported = repository
        .import(
            NewModel {
                name: "classifier".to_owned(),
                version: "1".to_owned(),
                metadata,
                licence: LicenceTerms {
                    licence: None,
                    no_weight_export: false,
                    terms: vec!["weights are public; inputs stay in the enclave".to_owned()],
                },
                files: vec![(
                    "model.onnx".to_owned(),
                    zeroize::Zeroizing::new(DEMO_MODEL_ONNX.to_vec()),
                )],
                recipient,
            },
            &provider.signing,
            unix_now(),
        )
        .await?;
    let hospital = Party::create("the hospital", &hospital_dir)?;
    let policy = ServingPolicy {
        schema: Some(cloister_types::model::SERVING_POLICY_SCHEMA),
        model: "classifier".to_owned(),
        versions: vec!["1".to_owned()],
        requesters: vec![RequesterLimits {
            requester: hospital.id(),
            requests_per_minute: 60,
            token_quota: None,
        }],
        engine: Default::default(),
        offload: OffloadPolicy::Public {
            on_failure: OffloadFallback::Fail,
            timeout_ms: OFFLOAD_TIMEOUT_MS,
        },
    };
    let policy_jws = provider.signing.sign(
        "serving policy",
        &policy,
        unix_now(),
        std::time::Duration::from_secs(24 * 3600),
    )?;
    let accepted = [TeeKind::Sim];
    let (client, _) = provider
        .attest_worker(&worker.url, &ca_pem, std::slice::from_ref(&published), &accepted)
        .await?;
    let deployed = client
        .deploy_model(&DeployModel {
            manifest: imported.jws.clone(),
            owner: provider.id(),
            serving_policy: policy_jws,
        })
        .await?;
    ok(&format!(
        "{} deployed under `offload: public weights, on failure: fail, timeout {OFFLOAD_TIMEOUT_MS} ms`",
        deployed.model
    ));

    say(
        "3. The hospital scores its patients through `cloister proxy`",
        "The proxy attests the worker and encrypts each request to the enclave. Inside, each\n\
         linear layer's rows are quantized to a prime field (p = 2^31 - 1), blinded with fresh\n\
         random masks and sent to the accelerator; its answer is range-checked and verified with\n\
         Freivalds' algorithm (secret random vectors, drawn in the enclave) before the masks'\n\
         share, precomputed in the enclave, is taken off.",
    );
    let table = split_labels(BREAST_CANCER_CSV)?;
    let text = std::str::from_utf8(&table.features_csv)?;
    let features: Vec<f32> = text
        .lines()
        .flat_map(|line| line.split(',').map(str::parse::<f32>))
        .collect::<Result<_, _>>()
        .context("reading the features")?;
    let rows = table.labels.len();
    ensure!(features.len() == rows * 30, "expected 30 features a row");
    let ca_file = hospital_dir.join("instance-ca.pem");
    std::fs::write(&ca_file, &ca_pem)?;
    let proxy_options = ProxyOptions {
        listen: "127.0.0.1:0".to_owned(),
        workers: vec![worker.url.clone()],
        ca: ca_file,
        measurements: vec![published.clone()],
        tees: accepted.to_vec(),
        accept_test_root: false,
        requester_key: hospital_dir.join("signing.key"),
        recheck: proxy::DEFAULT_RECHECK,
    };
    let (proxy_addr, proxy_server) = proxy::start(&proxy_options).await?;
    let proxy_task = tokio::spawn(proxy_server);
    let http = reqwest::Client::new();
    let response = http
        .post(format!("http://{proxy_addr}/v1/infer"))
        .json(&serde_json::json!({
            "model": "classifier",
            "inputs": { "features": { "shape": [rows, 30], "data": features } },
        }))
        .send()
        .await
        .context("asking the proxy")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("reading the answer")?;
    ensure!(status.is_success(), "the enclave answered {status}: {body}");
    let probabilities: Vec<f32> =
        serde_json::from_value(body["outputs"]["probabilities"]["data"].clone())
            .context("the answer has no probabilities")?;
    ensure!(probabilities.len() == rows * 2, "expected two probabilities a row");
    let correct = probabilities
        .chunks_exact(2)
        .zip(&table.labels)
        .filter(|(p, label)| usize::from(p[1] > p[0]) == **label)
        .count();
    let accuracy = correct as f64 / rows as f64;
    ok(&format!(
        "{rows} patients scored, accuracy {:.1} % against the hospital's labels",
        accuracy * 100.0
    ));

    let placement = body["placement"].as_array().cloned().unwrap_or_default();
    let mut offloaded_layers = 0;
    for layer in &placement {
        let name = layer["layer"].as_str().unwrap_or("?");
        let ran = layer["ran"].as_str().unwrap_or("?");
        let verified = layer["verified"].as_bool() == Some(true);
        if ran == "offload" && verified {
            offloaded_layers += 1;
        }
        println!(
            "   layer {name}: ran on the {}{}",
            if ran == "offload" { "accelerator" } else { "enclave" },
            if verified { ", verified" } else { "" }
        );
    }
    ensure!(
        !placement.is_empty() && offloaded_layers == placement.len(),
        "not every linear layer was offloaded and verified: {placement:?}"
    );

    // What it cost: the enclave's counters since the model was loaded, from /v1/models.
    let models: serde_json::Value = http
        .get(format!("http://{proxy_addr}/v1/models"))
        .send()
        .await
        .context("asking for the models")?
        .json()
        .await?;
    proxy_task.abort();
    let status = models["data"]
        .as_array()
        .and_then(|all| {
            all.iter().find(|m| m["id"].as_str().is_some_and(|id| id.starts_with("classifier")))
        })
        .and_then(|m| m["placement"].as_array())
        .cloned()
        .unwrap_or_default();
    for layer in &status {
        let n = |field: &str| layer[field].as_u64().unwrap_or(0);
        println!(
            "   layer {} ({}×{}): {} rows verified, {} checks failed; in the enclave: masks {} \
             (precomputable), blind+check+unblind {} of which Freivalds {}; accelerator {}",
            layer["layer"].as_str().unwrap_or("?"),
            layer["shape"][0],
            layer["shape"][1],
            n("rows_verified"),
            n("checks_failed"),
            ms(n("precompute_nanos")),
            ms(n("tee_nanos")),
            ms(n("verify_nanos")),
            ms(n("accelerator_nanos")),
        );
    }
    drop(accelerator);

    say(
        "4. Nothing the compute provider holds is plaintext — the accelerator's records included",
        "Every file under compute/ (the accelerator's records, the repository, the databases,\n\
         the logs) is searched for samples of the patients' rows: as text, and as the 32-bit\n\
         floats the enclave computes with (raw, hex and base64).",
    );
    let recorded_requests = std::fs::read_dir(&record_dir)
        .with_context(|| format!("reading {}", record_dir.display()))?
        .count();
    ok(&format!(
        "the accelerator received {recorded_requests} requests (weights and blinded rows)"
    ));
    let floats: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
    let secrets = vec![
        Secret::sampled("patients' rows (text)", &table.features_csv, 32, 24),
        Secret::sampled("patients' rows (float32)", &floats, 32, 16),
    ];
    show_no_plaintext(&dirs.root, &secrets)?;
    println!(
        "\nverdict: every linear layer ran on the untrusted accelerator, every product was \
         verified before use, and the accelerator saw only blinded values and public weights \
         (simulated TEE: development only)."
    );
    Ok(HybridDemoReport { rows, accuracy, offloaded_layers, recorded_requests })
}
