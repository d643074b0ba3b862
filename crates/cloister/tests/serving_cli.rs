//! Serving from the command line, as the model owner types it, against `cloister serve worker`
//! run as a child process: `serving-policy create|show`, `model deploy`, `model deployments`,
//! `model undeploy`. The worker restores its deployments after a restart (the model answers
//! again without a new deploy), skips a deployment whose policy expired meanwhile (logged with
//! the reason), and does not restore an undeployed model. Only the owner may undeploy; a policy
//! in a schema version this build does not know is refused by the CLI and by the worker.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use cloister::demo::{BREAST_CANCER_CSV, split_labels};
use cloister::proxy::{self, ProxyOptions};
use cloister::testbed::{self, ComputeDirs, InstancePolicy, RunningAuthority};
use cloister_client::{Expectations, WorkerClient};
use cloister_sign::{SigningKey, unix_now};
use cloister_types::model::{DeployModel, ServingPolicy, UndeployModel, UndeployStatement};
use cloister_types::{Hex, TeeKind};

struct Bed {
    tmp: tempfile::TempDir,
    dirs: ComputeDirs,
    authority: RunningAuthority,
    measurement: Hex,
}

/// A `cloister serve worker` child; killed when dropped.
struct WorkerProcess {
    child: Child,
    url: String,
    started: serde_json::Value,
    log: PathBuf,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WorkerProcess {
    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The worker's JSON log lines so far.
    fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

fn dir(bed: &Bed) -> &Path {
    bed.tmp.path()
}

fn cloister(bed: &Bed, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .current_dir(dir(bed))
        .env_remove("CLOISTER_REPOSITORY")
        .env_remove("CLOISTER_WORKER")
        .output()
        .unwrap()
}

#[track_caller]
fn ok(output: Output) -> String {
    let (out, err) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "stderr: {err}\nstdout: {out}");
    out.into_owned()
}

#[track_caller]
fn fails(output: Output, message: &str) -> String {
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(err.contains(message), "expected {message:?} in: {err}");
    err
}

async fn bed() -> Bed {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ComputeDirs::create(&tmp.path().join("compute")).unwrap();
    let key = testbed::sim_platform_key(&dirs).unwrap();
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
    std::fs::write(tmp.path().join("instance-ca.pem"), ca_pem).unwrap();
    let recipient = authority
        .register_broker_key("weights", std::slice::from_ref(&measurement))
        .await
        .unwrap()
        .recipient;
    std::fs::write(tmp.path().join("broker.recipient"), recipient).unwrap();
    Bed { tmp, dirs, authority, measurement }
}

impl Bed {
    fn start_worker(&self, log_name: &str) -> WorkerProcess {
        let log = self.tmp.path().join(log_name);
        let mut child = Command::new(env!("CARGO_BIN_EXE_cloister"))
            .args(["serve", "worker", "--listen", "127.0.0.1:0", "--authority"])
            .arg(&self.authority.url)
            .arg("--server-ca")
            .arg(&self.authority.tls_ca)
            .args(["--instance", &self.authority.instance_id])
            .args(["--service-fingerprint", &self.authority.fingerprint(), "--data-dir"])
            .arg(&self.dirs.worker)
            .arg("--repository")
            .arg(&self.dirs.models)
            .args(["--tee", "sim", "--sim-platform-key"])
            .arg(self.dirs.worker.join("sim-platform-key.pem"))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let started: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve worker printed {line:?}: {e}; see {log_name}"));
        let url = started["url"].as_str().unwrap().to_owned();
        WorkerProcess { child, url, started, log }
    }

    /// `--worker URL --ca … --measurement … --accept-sim`.
    fn target(&self, worker: &WorkerProcess) -> Vec<String> {
        vec![
            "--worker".into(),
            worker.url.clone(),
            "--ca".into(),
            "instance-ca.pem".into(),
            "--measurement".into(),
            self.measurement.to_string(),
            "--accept-sim".into(),
        ]
    }

    fn run(&self, args: &[&str], worker: &WorkerProcess) -> Output {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(self.target(worker));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        cloister(self, &all)
    }

    fn deployments(&self, worker: &WorkerProcess) -> Vec<serde_json::Value> {
        let out = ok(self.run(&["model", "deployments", "--json"], worker));
        serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
    }

    /// Asks `model` for one prediction through a `cloister proxy` (in process) with the
    /// requester's key; returns the HTTP status.
    async fn infer(&self, worker: &WorkerProcess, model: &str) -> u16 {
        let options = ProxyOptions {
            listen: "127.0.0.1:0".to_owned(),
            workers: vec![worker.url.clone()],
            ca: dir(self).join("instance-ca.pem"),
            measurements: vec![self.measurement.clone()],
            tees: vec![TeeKind::Sim],
            accept_test_root: false,
            requester_key: dir(self).join("requester.key"),
            recheck: proxy::DEFAULT_RECHECK,
        };
        let (addr, server) = proxy::start(&options).await.unwrap();
        let task = tokio::spawn(server);
        let table = split_labels(BREAST_CANCER_CSV).unwrap();
        let features: Vec<f32> = String::from_utf8(table.features_csv)
            .unwrap()
            .lines()
            .take(1)
            .flat_map(|l| l.split(',').map(|v| v.parse::<f32>().unwrap()).collect::<Vec<_>>())
            .collect();
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/v1/infer"))
            .json(&serde_json::json!({
                "model": model,
                "inputs": {"features": {"shape": [1, 30], "data": features}},
            }))
            .send()
            .await
            .unwrap();
        task.abort();
        response.status().as_u16()
    }
}

fn demo_onnx() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/breast_cancer_classifier.onnx")
        .display()
        .to_string()
}

/// The owner's key, read back as the test signs with it directly.
fn owner_key(bed: &Bed) -> SigningKey {
    SigningKey::from_text(&std::fs::read_to_string(dir(bed).join("owner.key")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_restore_and_undeploy_from_the_command_line() {
    let bed = bed().await;
    for party in ["owner", "other", "requester"] {
        let (secret, public) = (format!("{party}.key"), format!("{party}.pub"));
        ok(cloister(&bed, &["keygen", "--signing", "--secret", &secret, "--public", &public]));
    }
    let models = bed.dirs.models.display().to_string();
    for version in ["1", "2"] {
        ok(cloister(
            &bed,
            &[
                "model",
                "import",
                &demo_onnx(),
                "--name",
                "clf",
                "--version",
                version,
                "--owner-key",
                "owner.key",
                "--recipient",
                "broker.recipient",
                "--repository",
                &models,
            ],
        ));
    }

    // The policy: both versions, the requester with its own rate, a default quota.
    let err = ok(cloister(
        &bed,
        &[
            "serving-policy",
            "create",
            "--model",
            "clf",
            "--version",
            "1",
            "--version",
            "2",
            "--requester",
            "requester.pub,rpm=120",
            "--token-quota",
            "1000",
            "--signing-key",
            "owner.key",
            "--valid-for",
            "1d",
            "--output",
            "clf.policy",
        ],
    ));
    let _ = err;
    let shown =
        ok(cloister(&bed, &["serving-policy", "show", "clf.policy", "--owner", "owner.pub"]));
    assert!(shown.contains("serving policy for model clf"), "{shown}");
    assert!(shown.contains("schema         1"), "{shown}");
    assert!(shown.contains("120 requests/minute, 1000 tokens"), "{shown}");
    // RFC 3339 times, not Unix seconds.
    assert!(shown.lines().any(|l| l.starts_with("  expires") && l.ends_with('Z')), "{shown}");
    let json: serde_json::Value = serde_json::from_str(&ok(cloister(
        &bed,
        &["serving-policy", "show", "clf.policy", "--json"],
    )))
    .unwrap();
    assert_eq!(json["policy"]["schema"], 1);
    assert_eq!(json["owner_pinned"], false);
    fails(
        cloister(&bed, &["serving-policy", "show", "clf.policy", "--owner", "other.pub"]),
        "does not verify",
    );
    // The file is never overwritten.
    fails(
        cloister(
            &bed,
            &[
                "serving-policy",
                "create",
                "--model",
                "clf",
                "--version",
                "1",
                "--requester",
                "requester.pub",
                "--signing-key",
                "owner.key",
                "--output",
                "clf.policy",
            ],
        ),
        "clf.policy",
    );

    // A policy in a schema version from the future: refused by `show` and by `deploy`, and by
    // the worker when a client sends it anyway.
    let requester = std::fs::read_to_string(dir(&bed).join("requester.pub")).unwrap();
    let future: ServingPolicy = serde_json::from_value(serde_json::json!({
        "schema": 2, "model": "clf", "versions": ["1"],
        "requesters": [{"requester": requester.trim(), "requests_per_minute": 5}],
    }))
    .unwrap();
    let future_jws = owner_key(&bed)
        .sign("serving policy", &future, unix_now(), std::time::Duration::from_secs(3600))
        .unwrap();
    std::fs::write(dir(&bed).join("future.policy"), &future_jws).unwrap();
    fails(cloister(&bed, &["serving-policy", "show", "future.policy"]), "schema version 2");

    let worker = bed.start_worker("worker-1.log");
    assert_eq!(worker.started["restored_models"], 0);
    fails(
        bed.run(
            &[
                "model",
                "deploy",
                "clf@1",
                "--serving-policy",
                "future.policy",
                "--signing-key",
                "owner.key",
                "--repository",
                &models,
            ],
            &worker,
        ),
        "schema version 2",
    );
    let expectations = Expectations::from_ca_pem(
        &std::fs::read_to_string(dir(&bed).join("instance-ca.pem")).unwrap(),
        vec![bed.measurement.clone()],
        vec![TeeKind::Sim],
    )
    .unwrap();
    let client = WorkerClient::new(&worker.url, expectations).unwrap();
    let manifest =
        cloister_repository::Repository::open(&models).unwrap().manifest("clf", "1").await.unwrap();
    let refused = client
        .deploy_model(&DeployModel {
            manifest,
            owner: owner_key(&bed).public_key().to_text(),
            serving_policy: future_jws,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("schema version 2"), "{refused}");

    // Deployed by the owner; a policy signed by someone else is refused before anything is sent.
    fails(
        bed.run(
            &[
                "model",
                "deploy",
                "clf@1",
                "--serving-policy",
                "clf.policy",
                "--signing-key",
                "other.key",
                "--repository",
                &models,
            ],
            &worker,
        ),
        "must be signed by the key in other.key",
    );
    for id in ["clf@1", "clf@2"] {
        let out = ok(bed.run(
            &[
                "model",
                "deploy",
                id,
                "--serving-policy",
                "clf.policy",
                "--signing-key",
                "owner.key",
                "--repository",
                &models,
            ],
            &worker,
        ));
        assert!(out.contains(&format!("deployed {id}")) && out.contains("/v1/infer"), "{out}");
    }
    let listed = bed.deployments(&worker);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["owner"], owner_key(&bed).public_key().to_text());
    assert_eq!(listed[0]["restored"], false);
    let human = ok(bed.run(&["model", "deployments"], &worker));
    assert!(human.contains("policy expires") && human.contains("clf@2"), "{human}");
    assert_eq!(bed.infer(&worker, "clf@1").await, 200);

    // Another party cannot undeploy it: the worker checks the owner recorded at deploy.
    fails(
        bed.run(&["model", "undeploy", "clf@1", "--signing-key", "other.key"], &worker),
        "not signed by the model's owner",
    );
    // Nor can the owner's request undeploy anything but the deployment it names, or be kept
    // for later: another policy, another model, too long a validity, or expired, are refused.
    let current = client.deployments().await.unwrap();
    let clf1 = current.iter().find(|d| d.model == "clf@1").unwrap();
    let exact = UndeployStatement {
        model: clf1.model.clone(),
        digest: clf1.digest.clone(),
        serving_policy_sha256: clf1.serving_policy_sha256.clone(),
    };
    let owner = owner_key(&bed);
    let minutes = |n: u64| std::time::Duration::from_secs(60 * n);
    let refusals = [
        (
            UndeployStatement { serving_policy_sha256: Hex(vec![0; 32]), ..exact.clone() },
            unix_now(),
            minutes(2),
            "names another deployment",
        ),
        (
            UndeployStatement { model: "clf@2".into(), ..exact.clone() },
            unix_now(),
            minutes(2),
            "names another deployment",
        ),
        (exact.clone(), unix_now(), minutes(60), "at most 600 s"),
        (exact.clone(), unix_now() - 3600, minutes(5), "not signed by the model's owner now"),
    ];
    for (statement, issued, valid_for, expected) in refusals {
        let request = owner.sign("model undeploy", &statement, issued, valid_for).unwrap();
        let refused = client.undeploy_model("clf@1", &UndeployModel { request }).await.unwrap_err();
        assert!(refused.to_string().contains(expected), "{expected}: {refused}");
    }
    assert_eq!(bed.deployments(&worker).len(), 2);

    // While the worker is down, clf@2's policy expires (its record now holds an expired one).
    worker.stop();
    let record_path = bed.dirs.worker.join("deployments/clf@2.json");
    let mut record: DeployModel =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let policy: ServingPolicy = serde_json::from_value(serde_json::json!({
        "model": "clf", "versions": ["2"],
        "requesters": [{"requester": requester.trim(), "requests_per_minute": 5}],
    }))
    .unwrap();
    record.serving_policy = owner_key(&bed)
        .sign("serving policy", &policy, unix_now() - 7200, std::time::Duration::from_secs(3600))
        .unwrap();
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();

    // Restarted: clf@1 answers again without a new deploy; clf@2 is skipped with the reason.
    let worker = bed.start_worker("worker-2.log");
    assert_eq!(worker.started["restored_models"], 1, "{}", worker.started);
    assert_eq!(worker.started["skipped_models"], 1, "{}", worker.started);
    let skipped: Vec<serde_json::Value> = worker
        .log_lines()
        .into_iter()
        .filter(|l| l["message"] == "deployment not restored")
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let reason = skipped[0]["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("clf@2") && reason.to_lowercase().contains("expired"), "{reason}");
    let listed = bed.deployments(&worker);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["model"].as_str(), listed[0]["restored"].as_bool()),
        (Some("clf@1"), Some(true))
    );
    assert_eq!(bed.infer(&worker, "clf@1").await, 200);
    assert_eq!(bed.infer(&worker, "clf@2").await, 404);

    // The owner undeploys clf@1: gone now, and not restored at the next start.
    let out = ok(bed.run(&["model", "undeploy", "clf@1", "--signing-key", "owner.key"], &worker));
    assert!(out.contains("undeployed clf@1"), "{out}");
    assert!(bed.deployments(&worker).is_empty());
    assert_eq!(bed.infer(&worker, "clf@1").await, 404);
    fails(
        bed.run(&["model", "undeploy", "clf@1", "--signing-key", "owner.key"], &worker),
        "not deployed",
    );
    worker.stop();
    let worker = bed.start_worker("worker-3.log");
    assert_eq!(worker.started["restored_models"], 0, "{}", worker.started);
    assert!(bed.deployments(&worker).is_empty());
    assert_eq!(bed.infer(&worker, "clf@1").await, 404);
}
