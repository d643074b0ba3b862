//! End to end on fake hardware: the real `cloister serve worker --tee tdx|snp` process attests
//! through a fake configfs-tsm report directory (`cloister_fakehw::tsm`) whose TDX quotes and
//! SEV-SNP reports are signed under test roots the test instance lists as
//! `trust_anchors.test_roots`, and runs a batch job and an online (OHTTP) request. The TDX
//! platform's DCAP collateral (TCB info, QE identity, CRLs) is signed under the same test root
//! and loaded into the service, so the full DCAP appraisal runs.
//!
//! Nitro cannot be faked for a child process: `/dev/nsm` answers an ioctl, which no file a test
//! creates can (a plain file fails it with ENOTTY, checked below, as is `/dev/sev-guest`), and
//! the production NSM path has no test hook. The Nitro worker therefore runs in this process
//! with `cloister_fakehw::nitro::FakeNsm` (the real NSM request and response code, the platform
//! answering instead of the ioctl) and serves the same job and request.
//!
//! Every run also checks what makes a test root a development anchor: the claims and the EAR
//! say `trust_anchor: "test"`, the `dev-sim` verdict is `warning`, a party refuses the enclave
//! unless it accepts test roots, and under the production `default` policy the same worker is
//! refused, saying why.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister::demo::{BREAST_CANCER_CSV, DEMO_MODEL_ONNX, split_labels};
use cloister::parties::{Admitted, Party};
use cloister::testbed::{self, ComputeDirs, InstancePolicy, RunningAuthority};
use cloister_client::ohttp::{InnerRequest, OhttpClient, authorization_header};
use cloister_client::{AuthorityClient, Expectations, ServiceChannel, WorkerClient};
use cloister_engine::{OnnxModel, Table, run_batch};
use cloister_fakehw::dcap::DcapPlatform;
use cloister_fakehw::nitro::{FakeNsm, NitroPlatform};
use cloister_fakehw::snp::SnpPlatform;
use cloister_fakehw::tsm::FakeTsmReportDir;
use cloister_repository::{NewModel, Repository};
use cloister_sign::unix_now;
use cloister_types::batch::{BatchState, SubmitBatch};
use cloister_types::manage::{CreateInstance, PolicySpec, RegisterKey, TrustAnchorSpec};
use cloister_types::model::{
    DeployModel, LicenceTerms, ModelFormat, ModelMetadata, ModelTask, RequesterLimits,
    ServingPolicy,
};
use cloister_types::{EarStatus, Hex, InputRole, JobKind, JobSpec, TeeKind};

/// Give up waiting for a job after this long (a guard against hanging, not an assertion).
const PATIENCE: Duration = Duration::from_secs(300);

/// The compute side: the attestation service (its demo instance is not used) and the parties.
struct Bed {
    authority: RunningAuthority,
    model_provider: Party,
    data_provider: Party,
    tmp: tempfile::TempDir,
}

async fn bed() -> Bed {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ComputeDirs::create(&tmp.path().join("compute")).unwrap();
    let key = testbed::sim_platform_key(&dirs).unwrap();
    let authority = testbed::start_authority(&dirs, InstancePolicy::DevSim, &[], &key.public_key())
        .await
        .unwrap();
    let model_provider =
        Party::create("model provider", &tmp.path().join("model-provider")).unwrap();
    let data_provider = Party::create("data provider", &tmp.path().join("data-provider")).unwrap();
    Bed { authority, model_provider, data_provider, tmp }
}

/// An attestation instance for one fake platform.
struct Instance {
    id: String,
    ca_pem: String,
    ca_file: PathBuf,
    tee: TeeKind,
    measurement: Hex,
}

impl Bed {
    /// Creates an instance named `name` under `policy` that lists `root_pem` as the test root
    /// of `tee`, with these reference values.
    async fn instance(
        &self,
        name: &str,
        policy: &str,
        tee: TeeKind,
        root_pem: &str,
        measurement: &Hex,
        reference_values: serde_json::Value,
    ) -> Instance {
        let admin = self.authority.tenant_admin().unwrap();
        let id = admin
            .create_instance(&CreateInstance {
                name: name.into(),
                policy: PolicySpec::Builtin(policy.into()),
                reference_values,
                trust_anchors: TrustAnchorSpec {
                    test_roots: [(tee.as_str().to_owned(), vec![root_pem.to_owned()])].into(),
                    ..TrustAnchorSpec::default()
                },
                settings: Default::default(),
            })
            .await
            .unwrap()
            .id;
        let ca_pem = self.client_of(&id).instance().await.unwrap().ca_certificate_pem;
        let ca_file = self.tmp.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, &ca_pem).unwrap();
        Instance { id, ca_pem, ca_file, tee, measurement: measurement.clone() }
    }

    fn client_of(&self, instance: &str) -> AuthorityClient {
        AuthorityClient::for_instance_with(&self.authority.url, instance, &self.authority.tls)
            .unwrap()
    }

    /// A key-broker key releasing to `instance`'s enclaves with its measurement.
    async fn broker_key(&self, name: &str, instance: &Instance) -> String {
        let admin = self.authority.tenant_admin().unwrap();
        let key = admin
            .register_key(&RegisterKey {
                name: name.into(),
                secret_key: None,
                release_policy: cloister_policy::ReleasePolicy::template(std::slice::from_ref(
                    &instance.measurement,
                )),
                instances: vec![instance.id.clone()],
            })
            .await
            .unwrap();
        key.recipient
    }

    /// `cloister serve worker` for `instance` with these `--tee …` arguments, until it prints
    /// its start line (or exits: then its output).
    fn spawn_worker(&self, instance: &Instance, tee_args: &[&str], name: &str) -> Spawned {
        let data_dir = self.tmp.path().join(name);
        let log_path = self.tmp.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cloister"))
            .args(["serve", "worker", "--listen", "127.0.0.1:0", "--authority"])
            .arg(&self.authority.url)
            .arg("--server-ca")
            .arg(&self.authority.tls_ca)
            .args(["--instance", &instance.id])
            .args(["--service-fingerprint", &self.authority.fingerprint(), "--data-dir"])
            .arg(&data_dir)
            .args(tee_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        if line.is_empty() {
            let status = child.wait().unwrap();
            let stderr = std::fs::read_to_string(&log_path).unwrap();
            return Spawned::Exited { status: status.code(), stderr };
        }
        let started: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve worker printed {line:?}: {e}; see {name}.log"));
        let url = started["url"].as_str().unwrap().to_owned();
        Spawned::Running(WorkerProcess { child, url, started, data_dir })
    }
}

/// A `cloister serve worker` child; killed when dropped.
struct WorkerProcess {
    child: Child,
    url: String,
    started: serde_json::Value,
    data_dir: PathBuf,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Spawned {
    Running(WorkerProcess),
    Exited { status: Option<i32>, stderr: String },
}

impl Spawned {
    fn running(self) -> WorkerProcess {
        match self {
            Spawned::Running(worker) => worker,
            Spawned::Exited { status, stderr } => {
                panic!("the worker exited ({status:?}) before serving:\n{stderr}")
            }
        }
    }

    fn refused(self) -> String {
        match self {
            Spawned::Exited { status, stderr } => {
                assert_ne!(status, Some(0), "{stderr}");
                stderr
            }
            Spawned::Running(worker) => panic!("the worker started: {}", worker.started),
        }
    }
}

/// What a party expects of the instance's enclaves, accepting test roots or not.
fn expectations(instance: &Instance, accept_test_roots: bool) -> Expectations {
    Expectations::from_ca_pem(
        &instance.ca_pem,
        vec![instance.measurement.clone()],
        vec![instance.tee],
    )
    .unwrap()
    .accepting_test_roots(accept_test_roots)
}

/// The payload of a compact JWS, as JSON.
fn jws_payload(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A party attests the worker: refused without accepting test roots; with it, the enclave's
/// claims and EAR say `trust_anchor: "test"` and the verdict is a warning that says why.
async fn attest_under_the_test_root(url: &str, instance: &Instance) {
    let refused = WorkerClient::new(url, expectations(instance, false)).unwrap().attest().await;
    let refused = format!("{:#}", refused.unwrap_err());
    assert!(refused.contains("signed under a test root"), "{refused}");
    assert!(refused.contains("--accept-test-root"), "{refused}");

    let client = WorkerClient::new(url, expectations(instance, true)).unwrap();
    let (enclave, _) = client.attest().await.unwrap();
    let tee = instance.tee.as_str();
    assert_eq!(enclave.claims.tee, instance.tee);
    assert_eq!(enclave.claims.measurement, instance.measurement);
    assert_eq!(enclave.claims.vendor[tee]["trust_anchor"], "test");
    assert_eq!(enclave.ear_status, EarStatus::Warning);
    let ear = jws_payload(&enclave.ear);
    let cpu0 = &ear["submods"]["cpu0"];
    assert_eq!(cpu0["ear.status"], "warning");
    assert_eq!(cpu0["cloister.claims"][tee]["trust_anchor"], "test");
    let reasons = cpu0["cloister.reasons"].to_string();
    assert!(reasons.contains("signed under a test root"), "{reasons}");
    assert_eq!(cpu0["ear.trustworthiness-vector"]["instance-identity"], 32);
}

/// The breast-cancer feature rows.
fn features() -> Vec<u8> {
    split_labels(BREAST_CANCER_CSV).unwrap().features_csv
}

/// A batch job through the worker at `url`: model and data sealed to broker keys, both owners'
/// grants, results to the data provider, fetched with `cloister job fetch --accept-test-root`
/// and compared with the model run here.
async fn batch_job(bed: &Bed, url: &str, instance: &Instance, job_id: &str) {
    let client = WorkerClient::new(url, expectations(instance, true)).unwrap();
    let model_key = bed.broker_key(&format!("{job_id}-model"), instance).await;
    let data_key = bed.broker_key(&format!("{job_id}-data"), instance).await;
    let data = features();
    let model = bed
        .model_provider
        .seal_to_broker_and_upload(
            &client,
            &model_key,
            "model",
            "application/onnx",
            DEMO_MODEL_ONNX,
        )
        .await
        .unwrap();
    let data_ref = bed
        .data_provider
        .seal_to_broker_and_upload(&client, &data_key, "data", "text/csv", &data)
        .await
        .unwrap();
    let to = vec![bed.data_provider.envelope.public_key().to_text()];
    let spec = JobSpec {
        id: job_id.to_owned(),
        kind: JobKind::BatchInference,
        model,
        data: data_ref,
        output_recipients: to.clone(),
        more_data: Vec::new(),
    };
    let admitted = Admitted::new(std::slice::from_ref(&instance.measurement), &instance.id);
    let grants = vec![
        bed.model_provider.grant(&spec, InputRole::Model, &admitted, &to).unwrap(),
        bed.data_provider.grant(&spec, InputRole::Data, &admitted, &to).unwrap(),
    ];
    let spec_file = bed.tmp.path().join(format!("{job_id}.json"));
    std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    client.submit_batch(&SubmitBatch { spec, grants, chunk_rows: 128 }).await.unwrap();
    let started = Instant::now();
    let status = loop {
        let status = client.batch_status(job_id).await.unwrap();
        if matches!(status.state, BatchState::Done | BatchState::Failed) {
            break status;
        }
        assert!(started.elapsed() < PATIENCE, "{status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.state, BatchState::Done, "{status:?}");
    let receipt =
        cloister::job::verify_batch_receipt(&status, &expectations(instance, true)).unwrap();
    assert_eq!(receipt.receipt.rows, 569);
    assert!(cloister::job::verify_batch_receipt(&status, &expectations(instance, false)).is_err());

    let fetched = bed.tmp.path().join(format!("{job_id}.csv"));
    let out = job_cli(bed, url, instance, &spec_file, &fetched, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let engine = OnnxModel::load(DEMO_MODEL_ONNX).unwrap();
    let expected =
        run_batch(&engine, &Table::from_csv(&data).unwrap(), 64, &mut |_| {}).unwrap().to_csv();
    assert!(std::fs::read(&fetched).unwrap() == expected, "the job's output is not the model's");
    // Without --accept-test-root the CLI refuses the worker and writes nothing.
    let refused = bed.tmp.path().join(format!("{job_id}-refused.csv"));
    let out = job_cli(bed, url, instance, &spec_file, &refused, false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("test root"), "{out:?}");
    assert!(!refused.exists());
}

/// `cloister job fetch --job SPEC` as the data provider.
fn job_cli(
    bed: &Bed,
    url: &str,
    instance: &Instance,
    spec: &Path,
    output: &Path,
    accept_test_root: bool,
) -> Output {
    let secret = bed.tmp.path().join("data-provider").join("envelope.key");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command.args(["job", "fetch", "--job"]).arg(spec);
    command.arg("--secret").arg(secret).arg("--output").arg(output);
    command.args(["--worker", url, "--ca"]).arg(&instance.ca_file);
    command.args(["--measurement", &instance.measurement.to_string()]);
    if accept_test_root {
        command.arg("--accept-test-root");
    }
    command.output().unwrap()
}

/// An online request: the model provider imports the demo classifier into the worker's model
/// repository (sealed to a broker key), deploys it, and a requester queries it through OHTTP.
async fn online_request(bed: &Bed, url: &str, instance: &Instance, repository: &Path) {
    let client = WorkerClient::new(url, expectations(instance, true)).unwrap();
    let recipient = bed.broker_key("weights", instance).await;
    let owner = &bed.model_provider;
    let repository = Repository::open(&repository.display().to_string()).unwrap();
    let imported = repository
        .import(
            NewModel {
                name: "classifier".into(),
                version: "1".into(),
                metadata: ModelMetadata {
                    parameter_count: 31,
                    ..ModelMetadata::named(ModelFormat::Onnx, ModelTask::Tensor, "logistic")
                },
                licence: LicenceTerms {
                    licence: None,
                    no_weight_export: true,
                    terms: vec!["serve inside attested enclaves only".into()],
                },
                files: vec![(
                    "model.onnx".into(),
                    zeroize::Zeroizing::new(DEMO_MODEL_ONNX.to_vec()),
                )],
                recipient: recipient.parse().unwrap(),
            },
            &owner.signing,
            unix_now(),
        )
        .await
        .unwrap();
    let requester = &bed.data_provider;
    let policy = ServingPolicy {
        schema: None,
        model: "classifier".into(),
        versions: vec!["1".into()],
        requesters: vec![RequesterLimits {
            requester: requester.id(),
            requests_per_minute: 100,
            token_quota: None,
        }],
        engine: Default::default(),
        offload: Default::default(),
    };
    let serving_policy =
        owner.signing.sign("serving policy", &policy, unix_now(), Duration::from_secs(3600));
    let deployed = client
        .deploy_model(&DeployModel {
            manifest: imported.jws.clone(),
            owner: owner.id(),
            serving_policy: serving_policy.unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(deployed.model, "classifier@1");

    let rows = 3;
    let table = String::from_utf8(features()).unwrap();
    let values: Vec<f32> = table
        .lines()
        .take(rows)
        .flat_map(|line| line.split(',').map(|v| v.parse::<f32>().unwrap()).collect::<Vec<_>>())
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "classifier",
        "inputs": { "features": { "shape": [rows, 30], "data": values } }
    }))
    .unwrap();
    let ohttp = OhttpClient::connect(url, expectations(instance, true)).await.unwrap();
    let authorization =
        authorization_header(&requester.signing, "POST", "/v1/infer", &body).unwrap();
    let headers = vec![
        ("authorization".into(), authorization),
        ("content-type".into(), "application/json".into()),
    ];
    let request = InnerRequest { method: "POST", path: "/v1/infer", headers, body: &body };
    let answer = ohttp.send(&request).await.unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let answer: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let local = OnnxModel::load(DEMO_MODEL_ONNX).unwrap().infer(&[rows, 30], &values).unwrap();
    for tensor in &local {
        let data: Vec<f32> =
            serde_json::from_value(answer["outputs"][&tensor.name]["data"].clone()).unwrap();
        assert_eq!(data, tensor.data, "output {}", tensor.name);
    }
    // Without accepting test roots the requester's client sends nothing.
    let refused = OhttpClient::connect(url, expectations(instance, false)).await;
    assert!(refused.is_err());
}

/// A fake platform behind a configfs-tsm report directory.
struct TsmPlatform {
    tee: TeeKind,
    /// The `provider` file (`tdx_guest`, `sev_guest`).
    provider: &'static str,
    root_pem: String,
    measurement: Hex,
    reference_values: serde_json::Value,
    /// The evidence for 64 bytes of report_data.
    answer: cloister_fakehw::tsm::Answer,
    /// The host's certificate table (SNP).
    auxblob: Option<Vec<u8>>,
}

/// A worker child on a fake configfs-tsm report directory of `platform`: serves a batch job and
/// an online request under `dev-sim`, and is refused under `default`.
async fn configfs_tsm_worker_end_to_end(bed: &Bed, platform: TsmPlatform) {
    let TsmPlatform { tee, provider, root_pem, measurement, reference_values, answer, auxblob } =
        platform;
    let name = tee.as_str();
    let report_dir = bed.tmp.path().join(format!("{name}-report"));
    let fake = FakeTsmReportDir::start(&report_dir, provider, auxblob.as_deref(), answer).unwrap();
    let report_dir = fake.path().to_str().unwrap().to_owned();
    let tee_args = ["--tee", name, "--tsm-report-dir", &report_dir];

    let instance = bed
        .instance(
            &format!("{name}-dev"),
            "dev-sim",
            tee,
            &root_pem,
            &measurement,
            reference_values.clone(),
        )
        .await;
    let worker = bed.spawn_worker(&instance, &tee_args, &format!("{name}-worker")).running();
    assert_eq!(worker.started["tee"], name);
    assert_eq!(worker.started["measurement"], measurement.to_string());
    assert!(fake.served() >= 1, "the worker did not attest through the report directory");
    attest_under_the_test_root(&worker.url, &instance).await;
    batch_job(bed, &worker.url, &instance, &format!("{name}-batch")).await;
    online_request(bed, &worker.url, &instance, &worker.data_dir.join("models")).await;
    drop(worker);

    // The same platform under the production policy: the worker is refused at start, and the
    // service says why.
    let production = bed
        .instance(
            &format!("{name}-prod"),
            "default",
            tee,
            &root_pem,
            &measurement,
            reference_values,
        )
        .await;
    let stderr = bed.spawn_worker(&production, &tee_args, &format!("{name}-prod-worker")).refused();
    assert!(stderr.contains("signed under a test root the instance names"), "{stderr}");
    assert!(stderr.contains("not the vendor's root"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tdx_worker_process_on_fake_configfs_tsm_runs_a_batch_job_and_an_online_request() {
    let bed = bed().await;
    let now = unix_now() as i64;
    let platform = Arc::new(DcapPlatform::tdx(now).unwrap());
    // Intel's collateral for the platform, signed under the test root, in the service's cache.
    let bundle = platform.collateral_bundle("UpToDate", now - 3600, 17).unwrap();
    assert_eq!(bed.authority.service.collateral().load_bundle(&bundle).unwrap(), 5);
    let measurement = platform.measurement();
    let rtmrs = platform.rtmrs();
    let quoting = platform.clone();
    let platform = TsmPlatform {
        tee: TeeKind::Tdx,
        provider: "tdx_guest",
        root_pem: platform.root_pem(),
        measurement: measurement.clone(),
        // MRTD and RTMR0-2, as every built-in policy pins them for TDX.
        reference_values: serde_json::json!({
            "measurements": [measurement],
            "rtmr0": [rtmrs[0]], "rtmr1": [rtmrs[1]], "rtmr2": [rtmrs[2]],
        }),
        answer: Box::new(move |report_data| quoting.quote(report_data).unwrap_or_default()),
        auxblob: None,
    };
    configfs_tsm_worker_end_to_end(&bed, platform).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snp_worker_process_on_fake_configfs_tsm_runs_a_batch_job_and_an_online_request() {
    let bed = bed().await;
    let platform = Arc::new(SnpPlatform::new(unix_now() as i64).unwrap());
    let measurement = platform.measurement();
    let reporting = platform.clone();
    let platform = TsmPlatform {
        tee: TeeKind::Snp,
        provider: "sev_guest",
        root_pem: platform.root_pem(),
        measurement: measurement.clone(),
        reference_values: serde_json::json!({
            "measurements": [measurement],
            "snp_minimum_tcb": platform.minimum_tcb(),
        }),
        answer: Box::new(move |report_data| reporting.report(report_data, 0).unwrap_or_default()),
        auxblob: Some(platform.certificate_table()),
    };
    configfs_tsm_worker_end_to_end(&bed, platform).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nitro_worker_with_a_fake_nsm_runs_a_batch_job_and_an_online_request() {
    let bed = bed().await;
    let nsm = Arc::new(FakeNsm::new(
        NitroPlatform::new(unix_now() as i64).unwrap(),
        Path::new("/dev/nsm"),
    ));
    let platform = nsm.platform();
    let measurement = platform.measurement();
    let reference_values = serde_json::json!({ "measurements": [measurement] });
    let instance = bed
        .instance(
            "nitro-dev",
            "dev-sim",
            TeeKind::Nitro,
            &platform.root_pem(),
            &measurement,
            reference_values.clone(),
        )
        .await;
    let channel = ServiceChannel::new(
        bed.client_of(&instance.id),
        &instance.id,
        bed.authority.service.signing_public_key(),
    );
    let dirs = ComputeDirs::create(&bed.tmp.path().join("nitro-compute")).unwrap();
    let worker = testbed::start_worker(&dirs, &nsm, &channel).await.unwrap();
    attest_under_the_test_root(&worker.url, &instance).await;
    batch_job(&bed, &worker.url, &instance, "nitro-batch").await;
    online_request(&bed, &worker.url, &instance, &dirs.models).await;

    // Under the production policy the same enclave is refused, saying why.
    let production = bed
        .instance(
            "nitro-prod",
            "default",
            TeeKind::Nitro,
            &platform.root_pem(),
            &measurement,
            reference_values,
        )
        .await;
    let channel = ServiceChannel::new(
        bed.client_of(&production.id),
        &production.id,
        bed.authority.service.signing_public_key(),
    );
    let dirs = ComputeDirs::create(&bed.tmp.path().join("nitro-prod-compute")).unwrap();
    let refused = testbed::start_worker(&dirs, &nsm, &channel).await.err().unwrap();
    let refused = format!("{refused:#}");
    assert!(refused.contains("signed under a test root the instance names"), "{refused}");
}

/// `/dev/nsm` and `/dev/sev-guest` are ioctl devices: a plain file in their place makes the real
/// worker fail at the ioctl (no fake success), which is why Nitro runs in process above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_file_as_an_ioctl_device_fails_the_worker_at_the_ioctl() {
    let bed = bed().await;
    let plain = bed.tmp.path().join("not-a-device");
    std::fs::write(&plain, b"").unwrap();
    let plain = plain.to_str().unwrap();
    let instance = Instance {
        id: bed.authority.instance_id.clone(),
        ca_pem: String::new(),
        ca_file: PathBuf::new(),
        tee: TeeKind::Nitro,
        measurement: Hex(vec![0; 48]),
    };
    let stderr = bed.spawn_worker(&instance, &["--tee", "nitro", "--nsm", plain], "nsm").refused();
    assert!(stderr.contains("NSM_IOCTL_RAW"), "{stderr}");
    let missing = bed.tmp.path().join("no-tsm");
    let args = ["--tee", "snp", "--tsm-dir", missing.to_str().unwrap(), "--sev-guest", plain];
    let stderr = bed.spawn_worker(&instance, &args, "sev-guest").refused();
    assert!(stderr.contains("SNP_GET_EXT_REPORT") || stderr.contains("ioctl"), "{stderr}");
}
