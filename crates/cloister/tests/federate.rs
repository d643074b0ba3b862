//! `cloister federate` as separate parties run it: three hospitals `join` and `approve` from
//! their own processes, the model owner `run`s the rounds, all meeting through an exchange
//! directory and an attested worker. One hospital stops granting half-way; with DP-SGD the
//! worker's privacy ledger refuses a hospital once its budget is spent over every round
//! together, and the others go on without it.

// A failed setup in a test should panic loudly.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cloister::demo_train::{split_table, to_csv};
use cloister::federate::RoundRecord;
use cloister::scan::{Secret, scan};
use cloister::testbed::{self, ComputeDirs, RunningAuthority, RunningWorker};
use cloister_engine::{Classifier, LabelledRows};
use cloister_types::Hex;
use cloister_types::privacy::dp_sgd_epsilon;
use tokio::process::{Child, Command};

const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];

struct Bed {
    tmp: tempfile::TempDir,
    dirs: ComputeDirs,
    authority: RunningAuthority,
    worker: RunningWorker,
    measurement: Hex,
    ca_file: PathBuf,
    test: LabelledRows,
    parts: Vec<LabelledRows>,
}

fn cloister() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command.kill_on_drop(true);
    command
}

fn stdout(output: &Output, what: &str) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {}\nstdout:\n{text}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

impl Bed {
    async fn start() -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = ComputeDirs::create(&tmp.path().join("compute")).unwrap();
        let testbed::DevCompute { measurement, authority, worker, ca_pem, .. } =
            testbed::start_dev_compute(&dirs).await.unwrap();
        let ca_file = tmp.path().join("instance-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let (test, parts) = split_table().unwrap();
        for party in ["model-owner"].iter().chain(&HOSPITALS) {
            std::fs::create_dir_all(tmp.path().join(party)).unwrap();
        }
        let bed = Bed { tmp, dirs, authority, worker, measurement, ca_file, test, parts };
        let owner = bed.dir("model-owner");
        bed.keygen(&owner, &["--signing"], "signing").await;
        bed.keygen(&owner, &[], "envelope").await;
        std::fs::write(owner.join("test.csv"), &*to_csv(&bed.test)).unwrap();
        for (name, rows) in HOSPITALS.iter().zip(&bed.parts) {
            let dir = bed.dir(name);
            bed.keygen(&dir, &["--signing"], "signing").await;
            std::fs::write(dir.join("rows.csv"), &*to_csv(rows)).unwrap();
        }
        bed
    }

    fn dir(&self, party: &str) -> PathBuf {
        self.tmp.path().join(party)
    }

    async fn keygen(&self, dir: &Path, extra: &[&str], name: &str) {
        let output = cloister()
            .current_dir(dir)
            .args([
                "keygen",
                "--secret",
                &format!("{name}.key"),
                "--public",
                &format!("{name}.pub"),
            ])
            .args(extra)
            .output()
            .await
            .unwrap();
        stdout(&output, "keygen");
    }

    /// `--worker --ca --measurement --accept-sim`.
    fn target(&self, command: &mut Command) {
        command.args(["--worker", &self.worker.url, "--ca"]).arg(&self.ca_file).args([
            "--measurement",
            &self.measurement.to_string(),
            "--accept-sim",
        ]);
    }

    /// Registers a key-broker key that releases to the worker's measurement; returns its
    /// recipient text.
    async fn broker_key(&self, name: &str) -> String {
        let measurements = std::slice::from_ref(&self.measurement);
        self.authority.register_broker_key(name, measurements).await.unwrap().recipient
    }

    /// Each hospital seals its rows (to the enclave, or to `broker`'s key-broker key for the
    /// hospital it names) and writes its participant reference.
    async fn join_all(&self, suffix: &str, broker: Option<(&str, &str)>) {
        for name in HOSPITALS {
            let mut command = cloister();
            command.current_dir(self.dir(name)).args(["federate", "join"]);
            self.target(&mut command);
            command.args(["--authority", &self.authority.url, "--server-ca"]);
            command.arg(&self.authority.tls_ca);
            if let Some((_, recipient)) = broker.filter(|(hospital, _)| *hospital == name) {
                command.args(["--broker-recipient", recipient]);
            }
            let output = command
                .args(["--name", name, "--key", "signing.key", "--rows", "rows.csv"])
                .args(["--object-id", &format!("{name}-rows-{suffix}")])
                .args(["--out", "participant.json"])
                .output()
                .await
                .unwrap();
            stdout(&output, "federate join");
        }
    }

    /// `federate approve --watch` from a hospital's directory, with `extra` conditions.
    fn approve(&self, name: &str, exchange: &Path, extra: &[&str]) -> Child {
        cloister()
            .current_dir(self.dir(name))
            .args(["federate", "approve", "--exchange"])
            .arg(exchange)
            .args(["--participant", "participant.json", "--key", "signing.key"])
            .args(["--measurement", &self.measurement.to_string(), "--recipient"])
            .arg(self.dir("model-owner").join("envelope.pub"))
            .arg("--model-owner")
            .arg(self.dir("model-owner").join("signing.pub"))
            .arg("--watch")
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `federate run` from the model owner's directory; returns its stdout and the records.
    async fn run(&self, exchange: &Path, id: &str, extra: &[&str]) -> (String, Vec<RoundRecord>) {
        let mut command = cloister();
        command.current_dir(self.dir("model-owner")).args(["federate", "run"]);
        self.target(&mut command);
        command
            .arg("--exchange")
            .arg(exchange)
            .args(["--id", id, "--key", "signing.key", "--envelope", "envelope.key"])
            .args(["--test", "test.csv", "--rounds", "5", "--out", &format!("{id}.json")]);
        for name in HOSPITALS {
            command.arg("--participant").arg(self.dir(name).join("participant.json"));
        }
        let output = command.args(extra).output().await.unwrap();
        let text = stdout(&output, "federate run");
        let done = std::fs::read(exchange.join("done.json")).unwrap();
        (text, serde_json::from_slice(&done).unwrap())
    }
}

async fn finish(child: Child, what: &str) -> String {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not stop once the federation was done"))
        .unwrap();
    stdout(&output, what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_parties_federate_and_a_hospital_that_stops_granting_does_not_stop_the_others() {
    let bed = Bed::start().await;
    // Hospital B seals its rows to its key-broker key, the others to the enclave's own key.
    let recipient = bed.broker_key("hospital-b").await;
    bed.join_all("plain", Some(("hospital-b", &recipient))).await;
    for (name, brokered) in [("hospital-a", false), ("hospital-b", true)] {
        let sealed = std::fs::read(bed.dirs.objects.join(format!("{name}-rows-plain"))).unwrap();
        let header = cloister_seal::read_header(sealed.as_slice()).unwrap();
        assert_eq!(!header.broker_key_ids().is_empty(), brokered, "{name}");
    }
    let exchange = bed.tmp.path().join("exchange");
    let a = bed.approve("hospital-a", &exchange, &[]);
    let b = bed.approve("hospital-b", &exchange, &[]);
    // Hospital C grants two rounds, then goes silent.
    let c = bed.approve("hospital-c", &exchange, &["--max-jobs", "2"]);
    let (out, records) = bed.run(&exchange, "fed", &["--grant-timeout", "3"]).await;
    for (child, name) in [(a, "hospital-a"), (b, "hospital-b"), (c, "hospital-c")] {
        let said = finish(child, name).await;
        assert!(said.contains(&format!("{name}: granted fed-r1-{name}")), "{said}");
    }

    assert_eq!(records.len(), 5);
    for record in &records {
        let expected: Vec<&str> =
            if record.round <= 2 { HOSPITALS.to_vec() } else { HOSPITALS[..2].to_vec() };
        assert_eq!(record.contributors, expected, "round {}", record.round);
        let rows: usize = bed.parts[..expected.len()].iter().map(LabelledRows::rows).sum();
        assert_eq!(record.rows, rows as u64);
        if record.round > 2 {
            assert_eq!(record.missing.len(), 1);
            assert_eq!(record.missing[0].0, "hospital-c");
            assert!(record.missing[0].1.contains("no grant within 3 s"), "{:?}", record.missing);
        }
        // Without DP every account is unbounded: no ε is claimed.
        assert!(record.privacy.iter().all(|p| p.total.is_none() && p.job.is_none()));
    }
    assert!(out.contains("✘ hospital-c did not contribute to round 3"), "{out}");
    // An exchange serves one federation: running again on it is refused before anything is sent.
    let mut again = cloister();
    again.current_dir(bed.dir("model-owner")).args(["federate", "run"]);
    bed.target(&mut again);
    let output = again
        .arg("--exchange")
        .arg(&exchange)
        .args(["--id", "fed-2", "--key", "signing.key", "--envelope", "envelope.key"])
        .args(["--test", "test.csv", "--out", "fed-2.json", "--participant"])
        .arg(bed.dir("hospital-a").join("participant.json"))
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("holds a finished federation"));

    // The model owner's final model is what it reports, and learned.
    let model: Classifier =
        serde_json::from_slice(&std::fs::read(bed.dir("model-owner").join("fed.json")).unwrap())
            .unwrap();
    let (_, accuracy) = model.evaluate(&bed.test).unwrap();
    assert!(out.trim_end().ends_with(&format!("accuracy: {accuracy:.3}")), "{out}");
    assert!(accuracy > 0.9, "federated accuracy {accuracy}");

    // Neither the compute side nor the exchange holds the rows or the model in plaintext.
    let mut union =
        LabelledRows { features: Vec::new(), labels: Vec::new(), columns: bed.test.columns };
    for part in &bed.parts {
        union.features.extend_from_slice(&part.features);
        union.labels.extend_from_slice(&part.labels);
    }
    let rows_csv = to_csv(&union);
    let parameters = serde_json::to_vec(&model).unwrap();
    let secrets = [
        Secret::sampled("hospital rows", &rows_csv, 16, 48),
        Secret::sampled("final parameters", &parameters, 16, 48),
    ];
    for root in [&bed.dirs.root, &exchange] {
        let found = scan(root, &secrets).unwrap();
        assert!(found.is_empty(), "plaintext under {}: {found:?}", root.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hospital_whose_dp_budget_is_spent_over_the_rounds_leaves_and_the_others_go_on() {
    let bed = Bed::start().await;
    bed.join_all("dp", None).await;
    let exchange = bed.tmp.path().join("exchange");
    // Each round is 2 epochs of DP-SGD at batch 32 and noise 1.0; the budget fits three rounds of
    // the smallest hospital's data, composed, but not four.
    let (noise, delta, epochs, batch) = (1.0, 1e-5, 2usize, 32usize);
    let smallest = bed.parts[0].rows();
    let q = batch as f64 / smallest as f64;
    let steps_per_round = (epochs * smallest.div_ceil(batch)) as u64;
    let three = dp_sgd_epsilon(q, noise, 3 * steps_per_round, delta).unwrap().epsilon;
    let four = dp_sgd_epsilon(q, noise, 4 * steps_per_round, delta).unwrap().epsilon;
    let budget = (three + four) / 2.0;
    let budget_args = ["--epsilon", &budget.to_string(), "--delta", &delta.to_string()];
    let children: Vec<Child> =
        HOSPITALS.iter().map(|name| bed.approve(name, &exchange, &budget_args)).collect();
    let (out, records) = bed
        .run(
            &exchange,
            "dp",
            &[
                "--aggregate-in-enclave",
                "--dp-noise",
                "1.0",
                "--dp-clip",
                "1.0",
                "--dp-delta",
                "1e-5",
                "--learning-rate",
                "0.5",
                "--grant-timeout",
                "30",
            ],
        )
        .await;
    for (child, name) in children.into_iter().zip(HOSPITALS) {
        finish(child, name).await;
    }

    let spent = |record: &RoundRecord| {
        record.privacy.iter().find(|p| p.object_id == "hospital-a-rows-dp").and_then(|p| p.total)
    };
    for record in &records[..3] {
        assert_eq!(record.contributors, HOSPITALS.to_vec(), "round {}", record.round);
        let total = spent(record).expect("a DP round states the ε spent");
        let expected = dp_sgd_epsilon(q, noise, record.round * steps_per_round, delta).unwrap();
        assert!((total.epsilon - expected.epsilon).abs() < 1e-9, "round {}", record.round);
        assert!(total.epsilon <= budget);
    }
    // Hospital A's budget is spent: the worker refuses round 4's job over all three, hospital A
    // leaves, and the others train on in a job over their two data sets.
    for record in &records[3..] {
        assert_eq!(record.contributors, HOSPITALS[1..].to_vec(), "round {}", record.round);
        assert_eq!(record.missing.len(), 1, "round {}: {:?}", record.round, record.missing);
        let (name, why) = &record.missing[0];
        assert_eq!(name, "hospital-a");
        assert!(
            why.contains("its privacy budget is spent")
                && why.contains("trained on in 3 earlier job(s)")
                && why.contains("would have spent"),
            "round {}: {why}",
            record.round
        );
        assert!(spent(record).is_none(), "hospital A trained no more");
        let b = record.privacy.iter().find(|p| p.object_id == "hospital-b-rows-dp").unwrap();
        assert_eq!(b.jobs, record.round);
        assert!(b.total.unwrap().epsilon <= budget);
    }
    assert!(
        out.contains("✘ hospital-a did not contribute to round 4: its privacy budget"),
        "{out}"
    );
    // The three DP rounds still learned something.
    let model: Classifier =
        serde_json::from_slice(&std::fs::read(bed.dir("model-owner").join("dp.json")).unwrap())
            .unwrap();
    let (_, accuracy) = model.evaluate(&bed.test).unwrap();
    assert!(accuracy > 0.85, "DP federated accuracy {accuracy}");
}

#[tokio::test]
async fn the_walkthrough_script_federates_from_a_bare_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/federate-walkthrough.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(tmp.path())
        .env("CLOISTER", env!("CARGO_BIN_EXE_cloister"))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let out = stdout(&output, "scripts/federate-walkthrough.sh");
    let accuracy: f64 = out
        .lines()
        .last()
        .and_then(|line| line.strip_prefix("accuracy: "))
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!(accuracy > 0.9, "{out}");
    assert_eq!(out.matches("3 update(s) averaged inside the enclave").count(), 5, "{out}");
    // The worker and the attestation service hold none of the hospitals' rows in plaintext.
    let mut rows = Vec::new();
    for hospital in HOSPITALS {
        rows.push(std::fs::read(tmp.path().join(hospital).join("rows.csv")).unwrap());
    }
    let secrets: Vec<Secret<'_>> =
        rows.iter().map(|rows| Secret::sampled("hospital rows", rows, 16, 40)).collect();
    assert!(scan(&tmp.path().join("compute"), &secrets).unwrap().is_empty());
    assert!(scan(&tmp.path().join("exchange"), &secrets).unwrap().is_empty());
}

/// Red team, round 8: a data owner registered its data set at one attestation service while the
/// worker's enclave was pinned to another (the compute provider's own copy of the instance), so
/// its privacy ledger and revocations were never consulted. `join` compares the service the
/// enclave's evidence names with `--authority` and refuses a mismatch before sealing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_set_is_not_registered_at_a_service_the_enclave_is_not_pinned_to() {
    let bed = Bed::start().await;
    let other_dirs = ComputeDirs::create(&bed.tmp.path().join("elsewhere")).unwrap();
    let platform = cloister_attest::SimPlatformKey::generate();
    let other = testbed::start_authority(
        &other_dirs,
        testbed::InstancePolicy::DevSim,
        std::slice::from_ref(&bed.measurement),
        &platform.public_key(),
    )
    .await
    .unwrap();
    let name = HOSPITALS[0];
    let mut command = cloister();
    command.current_dir(bed.dir(name)).args(["federate", "join"]);
    bed.target(&mut command);
    command.args(["--authority", &other.url, "--server-ca"]).arg(&other.tls_ca);
    let output = command
        .args(["--name", name, "--key", "signing.key", "--rows", "rows.csv"])
        .args(["--object-id", "elsewhere-rows", "--out", "participant.json"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("pinned to the attestation service"), "{stderr}");
    assert!(!bed.dirs.objects.join("elsewhere-rows").exists(), "the rows were uploaded");
    assert!(!bed.dir(name).join("participant.json").exists());

    // Round 9: a relay at `--authority` that shows the pinned service's key document but passes
    // the registration on to another service. The registration's answer is signed by the
    // service that recorded it, and is checked with the pinned key: refused.
    let pinned = cloister::parties::service_key(&bed.authority.client().unwrap()).await.unwrap();
    let owner = cloister_sign::SigningKey::generate();
    let err = cloister::parties::register_dataset(
        &other.client().unwrap(),
        &pinned,
        &owner,
        "split-rows",
        b"sealed bytes",
    )
    .await
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("was not answered by the attestation service with key"), "{err}");
    // The pinned service's own answer passes.
    cloister::parties::register_dataset(
        &bed.authority.client().unwrap(),
        &pinned,
        &owner,
        "split-rows",
        b"sealed bytes",
    )
    .await
    .unwrap();
}
