//! `cloister demo llm`: confidential LLM serving on loopback, narrated.
//!
//! A model provider imports SmolLM2-135M-Instruct (GGUF) into the model repository on the compute
//! provider's storage, sealed to its key-broker key, with a signed manifest; an enclave worker
//! (simulated TEE) attests; the model provider verifies it and deploys the model under a serving
//! policy naming the data consumer; the worker gets the weights' key from the broker, checks every
//! file against the manifest and loads it. The data consumer starts `cloister proxy`, which
//! attests the worker and pins its Oblivious HTTP key, and asks a question through the plain
//! OpenAI API the proxy serves; the answer streams back, each event encrypted between enclave and
//! proxy. Finally everything under the compute side's directory is searched for the prompt, the
//! answer and the weights.

use std::path::PathBuf;

use anyhow::{Context as _, Result, ensure};
use cloister_repository::{NewModel, Repository};
use cloister_sign::unix_now;
use cloister_types::TeeKind;
use cloister_types::model::{
    DeployModel, LicenceTerms, ModelFormat, RequesterLimits, ServingPolicy,
};
use zeroize::Zeroizing;

use crate::demo::{ok, say, show_no_plaintext};
use crate::parties::Party;
use crate::proxy::{self, ProxyOptions};
use crate::scan::Secret;
use crate::testbed::{self, ComputeDirs};

/// The question asked when none is given.
pub const DEFAULT_PROMPT: &str = "What is the capital of France? Answer in one sentence.";

/// What `cloister demo llm` is given.
#[derive(Clone, Debug)]
pub struct LlmDemoOptions {
    /// Where every party's files go.
    pub workdir: PathBuf,
    /// The question.
    pub prompt: String,
    /// A GGUF file; `None` fetches the pinned SmolLM2 into the cache.
    pub model: Option<PathBuf>,
    /// Largest answer, in tokens.
    pub max_tokens: usize,
}

/// What the demo found.
#[derive(Debug)]
pub struct LlmDemoReport {
    /// The streamed answer.
    pub answer: String,
    /// Server-sent events received.
    pub events: usize,
}

/// Runs the demo.
pub async fn run(options: &LlmDemoOptions) -> Result<LlmDemoReport> {
    let workdir = &options.workdir;
    let dirs = ComputeDirs::create(&workdir.join("compute"))?;
    let provider_dir = workdir.join("model-provider");
    let consumer_dir = workdir.join("data-consumer");

    println!("Cloister demo: confidential LLM serving.");
    println!("A model provider's LLM and a data consumer's prompts meet only inside an attested");
    println!(
        "enclave. The TEE here is SIMULATED (`sim`): development only, no hardware protection."
    );
    println!("Work directory: {}", workdir.display());

    let model_path = match &options.model {
        Some(path) => path.clone(),
        None => crate::assets::ensure(&crate::assets::SMOLLM2_GGUF, &mut |step| ok(step))?,
    };
    let weights = Zeroizing::new(
        std::fs::read(&model_path).with_context(|| format!("reading {}", model_path.display()))?,
    );

    say(
        "1. The compute provider starts the attestation service and the enclave worker",
        "The worker generates fresh keys (envelope, receipt, TLS and an Oblivious HTTP key),\n\
         binds them into simulated evidence and gets an EAR token and an enclave certificate.",
    );
    let testbed::DevCompute { measurement: published, authority, worker, ca_pem, .. } =
        testbed::start_dev_compute(&dirs).await?;
    ok(&format!("attestation service on {}, worker on {}", authority.url, worker.url));

    say(
        "2. The model provider imports its model into the repository",
        "The metadata is read from the GGUF file, every file is sealed to the provider's\n\
         key-broker key (released only to enclaves its policy admits), and the manifest (name,\n\
         version, digest, metadata, licence terms) is signed with the provider's key. The\n\
         repository is the compute provider's object store: it holds ciphertext only.",
    );
    let provider = Party::create("the model provider", &provider_dir)?;
    let broker_key =
        authority.register_broker_key("smollm2-weights", std::slice::from_ref(&published)).await?;
    let recipient = broker_key.recipient.parse().context("reading the broker recipient")?;
    let files = std::collections::BTreeMap::from([("model.gguf".to_owned(), weights.to_vec())]);
    let metadata = cloister_engine::inspect(ModelFormat::Gguf, &files)?;
    drop(files);
    ok(&format!(
        "{} model, {} parameters, context {} tokens, vocabulary {}, chat template {}",
        metadata.architecture,
        metadata.parameter_count,
        metadata.context_length.unwrap_or_default(),
        metadata.vocab_size.unwrap_or_default(),
        if metadata.chat_template.is_some() { "present" } else { "absent" }
    ));
    let repository = Repository::open(&dirs.models.display().to_string())?;
    let imported = repository
        .import(
            NewModel {
                name: "smollm2".to_owned(),
                version: "1".to_owned(),
                metadata,
                licence: LicenceTerms {
                    licence: Some("Apache-2.0".to_owned()),
                    no_weight_export: true,
                    terms: vec!["serve inside attested enclaves only".to_owned()],
                },
                files: vec![("model.gguf".to_owned(), weights.clone())],
                recipient,
            },
            &provider.signing,
            unix_now(),
        )
        .await?;
    ok(&format!(
        "smollm2@1 imported: digest {}…, sealed to broker key {}",
        &imported.manifest.digest.to_string()[..16],
        broker_key.key_id
    ));

    say(
        "3. The model provider verifies the enclave and deploys the model to it",
        "Its serving policy names who may query which version and how much. The worker fetches\n\
         the sealed weights, presents its attestation result to the key broker, checks the\n\
         manifest signature and every file's digest, and only then loads the model.",
    );
    let consumer = Party::create("the data consumer", &consumer_dir)?;
    let policy = ServingPolicy {
        schema: Some(cloister_types::model::SERVING_POLICY_SCHEMA),
        model: "smollm2".to_owned(),
        versions: vec!["1".to_owned()],
        requesters: vec![RequesterLimits {
            requester: consumer.id(),
            requests_per_minute: 30,
            token_quota: Some(10_000),
        }],
        engine: Default::default(),
        offload: Default::default(),
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
        "{} loaded after its integrity check, served at {}",
        deployed.model, deployed.endpoint
    ));

    say(
        "4. The data consumer starts `cloister proxy` and asks its question",
        "The proxy attests the worker with the consumer's own expectations, pins its Oblivious\n\
         HTTP key, and serves a plain OpenAI API on localhost. Requests are signed with the\n\
         consumer's key and encrypted to the enclave; the answer streams back event by event.",
    );
    let ca_file = consumer_dir.join("instance-ca.pem");
    std::fs::write(&ca_file, &ca_pem)?;
    let proxy_options = ProxyOptions {
        listen: "127.0.0.1:0".to_owned(),
        workers: vec![worker.url.clone()],
        ca: ca_file,
        measurements: vec![published.clone()],
        tees: accepted.to_vec(),
        accept_test_root: false,
        requester_key: consumer_dir.join("signing.key"),
        recheck: proxy::DEFAULT_RECHECK,
    };
    let (proxy_addr, proxy_server) = proxy::start(&proxy_options).await?;
    let proxy_task = tokio::spawn(proxy_server);
    ok(&format!("proxy serves http://{proxy_addr}/v1"));
    println!("   prompt: {}", options.prompt);
    let response = reqwest::Client::new()
        .post(format!("http://{proxy_addr}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": "smollm2",
            "messages": [{"role": "user", "content": options.prompt}],
            "stream": true,
            "temperature": 0,
            "max_tokens": options.max_tokens,
        }))
        .send()
        .await
        .context("asking the proxy")?;
    ensure!(response.status().is_success(), "the proxy answered {}", response.status());
    let mut answer = String::new();
    let mut events = 0;
    let mut buffer = String::new();
    let mut response = response;
    print!("   answer: ");
    'read: while let Some(chunk) = response.chunk().await? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data:") else { continue };
            let data = data.trim();
            if data == "[DONE]" {
                break 'read;
            }
            events += 1;
            let value: serde_json::Value = serde_json::from_str(data)?;
            if let Some(text) = value["choices"][0]["delta"]["content"].as_str() {
                print!("{text}");
                use std::io::Write as _;
                std::io::stdout().flush().ok();
                answer.push_str(text);
            }
        }
    }
    println!();
    ensure!(!answer.trim().is_empty(), "the model gave an empty answer");
    ok(&format!("{events} encrypted events streamed"));
    proxy_task.abort();

    say(
        "5. Nothing the compute provider holds is plaintext",
        "Every file under compute/ (repository, object store, databases, logs) is searched for the\n\
         prompt, the answer and samples of the weights: raw, hex and base64.",
    );
    let mut secrets = vec![Secret::sampled("weights", &weights, 32, 48)];
    if options.prompt.len() >= 16 {
        secrets.push(Secret::sampled("prompt", options.prompt.as_bytes(), 1, options.prompt.len()));
    }
    if answer.len() >= 16 {
        secrets.push(Secret::sampled("answer", answer.as_bytes(), 1, answer.len().min(64)));
    }
    show_no_plaintext(&dirs.root, &secrets)?;
    println!(
        "\nverdict: the model was verified before loading, the worker attested, the prompt and \
         the answer crossed the compute side encrypted (simulated TEE: development only)."
    );
    Ok(LlmDemoReport { answer, events })
}
