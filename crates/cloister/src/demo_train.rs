//! `cloister demo train`: federated training across three hospitals through attested enclaves,
//! narrated.
//!
//! The breast-cancer table is split into a held-out test part (every fifth row, kept by the model
//! owner, who also derives the input standardization from it) and three disjoint hospital parts
//! of unequal size. Each hospital seals its rows to the enclave once. For five rounds the model
//! owner seals the current global model and the training settings as a plan; every hospital
//! grants a training job over its rows whose update only the model owner may open; the worker
//! trains inside and seals the update; the model owner opens the updates, averages them weighted
//! by rows (FedAvg) and measures the held-out accuracy. For comparison the same model is trained
//! centrally on the plaintext union. The final model is exported to ONNX, imported into the model
//! repository, deployed after its integrity check and queried through Oblivious HTTP. Nothing
//! under `compute/` may hold the rows, the parameters or an update in plaintext.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use cloister_client::Expectations;
use cloister_client::ohttp::{InnerRequest, OhttpClient, authorization_header};
use cloister_engine::train::standardization;
use cloister_engine::{Classifier, DpSgd, LabelledRows, TrainConfig, federated_average};
use cloister_repository::{NewModel, Repository};
use cloister_sign::unix_now;
use cloister_types::api::SubmitJob;
use cloister_types::job::{PrivacyAccount, PrivacyBudget};
use cloister_types::model::{
    DeployModel, LicenceTerms, ModelFormat, RequesterLimits, ServingPolicy,
};
use cloister_types::{InputRole, JobKind, JobSpec, TeeKind};
use zeroize::Zeroizing;

use crate::demo::{BREAST_CANCER_CSV, ok, say, show_no_plaintext};
use crate::parties::{Admitted, Party};
use crate::scan::Secret;
use crate::testbed::{self, ComputeDirs};

/// Federated rounds.
pub const ROUNDS: u64 = 5;
/// The hospitals, as `--drop` names them.
pub const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];

/// What the demo measured.
#[derive(Debug)]
pub struct TrainDemoReport {
    /// Held-out accuracy of the federated model after each round.
    pub rounds: Vec<f64>,
    /// Held-out accuracy of the same model trained centrally on plaintext.
    pub central: f64,
}

/// CSV text of `rows` (features, then the class).
pub fn to_csv(rows: &LabelledRows) -> Zeroizing<Vec<u8>> {
    let mut out = String::new();
    for (row, label) in rows.features.chunks(rows.columns).zip(&rows.labels) {
        for value in row {
            out.push_str(&value.to_string());
            out.push(',');
        }
        out.push_str(&label.to_string());
        out.push('\n');
    }
    Zeroizing::new(out.into_bytes())
}

/// The held-out part (every fifth row) and the three hospital parts (the rest, cut at 20 % and
/// 55 %).
pub fn split_table() -> Result<(LabelledRows, Vec<LabelledRows>)> {
    let all = LabelledRows::from_csv(BREAST_CANCER_CSV)?;
    let columns = all.columns;
    let pick = |keep: &dyn Fn(usize) -> bool| {
        let mut part = LabelledRows { features: Vec::new(), labels: Vec::new(), columns };
        for (i, (row, label)) in all.features.chunks(columns).zip(&all.labels).enumerate() {
            if keep(i) {
                part.features.extend_from_slice(row);
                part.labels.push(*label);
            }
        }
        part
    };
    let test = pick(&|i| i % 5 == 0);
    let train = pick(&|i| i % 5 != 0);
    let n = train.rows();
    let cuts = [0, n / 5, n * 55 / 100, n];
    let hospitals = cuts
        .windows(2)
        .map(|w| LabelledRows {
            features: train.features[w[0] * columns..w[1] * columns].to_vec(),
            labels: train.labels[w[0]..w[1]].to_vec(),
            columns,
        })
        .collect();
    Ok((test, hospitals))
}

/// The training settings of a round (the same for every hospital); with `dp`, DP-SGD.
fn round_config(round: u64, dp: bool) -> TrainConfig {
    let plain = TrainConfig {
        epochs: 2,
        batch_size: 32,
        learning_rate: 0.1,
        l2: 0.0,
        seed: round,
        dp: None,
    };
    if !dp {
        return plain;
    }
    let dp = DpSgd { clip_norm: 1.0, noise_multiplier: 2.0, delta: DP_DELTA, noise_seed: None };
    TrainConfig { learning_rate: 0.5, dp: Some(dp), ..plain }
}

/// With `--dp`: each hospital's budget over all five rounds together, and its δ.
pub const DP_EPSILON: f64 = 6.0;
/// The δ of [`DP_EPSILON`].
pub const DP_DELTA: f64 = 1e-5;

/// Prints each data set's privacy account after a round, from the verified receipts.
fn show_privacy(accounts: &[PrivacyAccount]) {
    for account in accounts {
        if let Some(total) = account.total {
            println!(
                "     {}: ε = {:.3} spent so far at δ = {} ({} training job(s), receipt-signed)",
                account.object_id, total.epsilon, total.delta, account.jobs
            );
        }
    }
}

/// A participant that drops out of one round (its grant never arrives), to show that the others
/// carry on: `(hospital name, round)`.
pub type Dropout = (String, u64);

/// Runs the demo in `workdir`; `dropout` makes one hospital miss one round; with
/// `aggregate_in_enclave` each round is one job over every granting hospital's rows that seals
/// only the average to the model owner (secure aggregation by the enclave); with `dp` the rounds
/// train with DP-SGD and every hospital's grant sets a privacy budget over all rounds together.
pub async fn run(
    workdir: &Path,
    dropout: Option<&Dropout>,
    aggregate_in_enclave: bool,
    dp: bool,
) -> Result<TrainDemoReport> {
    let dirs = ComputeDirs::create(&workdir.join("compute"))?;
    println!("Cloister demo: federated training across three hospitals.");
    println!("Each hospital's rows stay sealed to an attested enclave; only the model owner opens");
    println!("the updates. The TEE here is SIMULATED (`sim`): development only.");
    println!("Work directory: {}", workdir.display());

    say(
        "1. The compute provider starts the attestation service and the enclave worker",
        "The worker attests with simulated evidence and gets an EAR token and a certificate.",
    );
    let testbed::DevCompute { measurement: published, authority, worker, ca_pem, .. } =
        testbed::start_dev_compute(&dirs).await?;
    ok(&format!("worker on {}", worker.url));

    say(
        "2. The parties verify the enclave; each hospital seals its rows to it",
        "The model owner keeps every fifth row as its held-out test split and derives the input\n\
         standardization from it; the rest is split over three hospitals.",
    );
    let (test, parts) = split_table()?;
    let owner = Party::create("the model owner", &workdir.join("model-owner"))?;
    let accepted = [TeeKind::Sim];
    let measurements = std::slice::from_ref(&published);
    let (client, enclave) =
        owner.attest_worker(&worker.url, &ca_pem, measurements, &accepted).await?;
    let admitted = Admitted::like(&enclave);
    let registry = authority.client()?;
    let mut hospitals = Vec::new();
    for (name, rows) in HOSPITALS.iter().zip(&parts) {
        let party = Party::create(name, &workdir.join(name))?;
        let (their_client, their_view) =
            party.attest_worker(&worker.url, &ca_pem, measurements, &accepted).await?;
        let csv = to_csv(rows);
        std::fs::write(party.dir.join("rows.csv"), &*csv)?;
        let data = party
            .seal_register_and_upload(
                &their_client,
                &their_view,
                &registry,
                &format!("{name}-rows"),
                "text/csv",
                &csv,
            )
            .await?;
        ok(&format!("{name}: {} rows sealed to the enclave", rows.rows()));
        hospitals.push((party, data, rows.rows() as u64));
    }
    let (mean, scale) = standardization(&test);
    let initial = Classifier::initial(mean, scale, &[], 2, 1)?;

    say(
        "3. Five federated rounds",
        "Per round and hospital: the model owner seals the global model as a training plan, the\n\
         hospital grants the job (update to the model owner only), the enclave trains and seals\n\
         the update; the model owner averages the updates by rows (FedAvg).",
    );
    let to = vec![owner.envelope.public_key().to_text()];
    let mut global = initial.clone();
    let mut rounds = Vec::new();
    let budget = dp.then_some(PrivacyBudget { epsilon: DP_EPSILON, delta: DP_DELTA });
    // A hospital's grant for its rows: the update to the model owner only, within its budget.
    let grant_data = |party: &Party, spec: &JobSpec| {
        party.grant_with_budget(spec, InputRole::Data, &admitted, &to, budget)
    };
    if dp {
        ok(&format!(
            "DP-SGD (noise 2.0, clip 1.0); each hospital grants ε ≤ {DP_EPSILON} at δ = {DP_DELTA} \
             over all rounds together, enforced by the attestation service's privacy ledger"
        ));
    }
    for round in 1..=ROUNDS {
        let mut spent = Vec::new();
        let plan = serde_json::to_vec(&serde_json::json!({
            "model": global,
            "config": round_config(round, dp),
        }))?;
        let plan_ref = owner
            .seal_and_upload(&client, &enclave, &format!("plan-{round}"), "application/json", &plan)
            .await?;
        if aggregate_in_enclave {
            // The model owner proposes the round's job over the hospitals whose grants arrive.
            let mut granting = Vec::new();
            for hospital in &hospitals {
                if dropout == Some(&(hospital.0.name.clone(), round)) {
                    println!(
                        "   ✘ {} did not contribute to round {round}: its grant did not arrive",
                        hospital.0.name
                    );
                } else {
                    granting.push(hospital);
                }
            }
            let (first, others) =
                granting.split_first().context("no hospital granted this round")?;
            let spec = JobSpec {
                id: format!("round-{round}-aggregate"),
                kind: JobKind::Train,
                model: plan_ref.clone(),
                data: first.1.clone(),
                output_recipients: to.clone(),
                more_data: others.iter().map(|h| h.1.clone()).collect(),
            };
            let mut grants = vec![owner.grant(&spec, InputRole::Model, &admitted, &to)?];
            for (party, _, _) in &granting {
                grants.push(grant_data(party, &spec)?);
            }
            let done = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await?;
            let sealed = client.get_object(&done.outputs[0].object_id).await?;
            let receipt = crate::parties::verify_receipt(&done.receipt, &enclave, &spec, &sealed)?;
            spent.extend(receipt.privacy);
            let (_, plain) = cloister_seal::open_to_vec(&owner.envelope, &sealed)?;
            let update: serde_json::Value = serde_json::from_slice(&plain)?;
            global = serde_json::from_value(update["model"].clone())?;
            let (_, accuracy) = global.evaluate(&test)?;
            let names: Vec<&str> = granting.iter().map(|h| h.0.name.as_str()).collect();
            ok(&format!(
                "round {round}: {} updates averaged inside the enclave ({}); the model owner saw \
                 only the average; held-out accuracy {accuracy:.3}",
                names.len(),
                names.join(", ")
            ));
            show_privacy(&spent);
            rounds.push(accuracy);
            continue;
        }
        let (mut updates, mut contributors) = (Vec::new(), Vec::new());
        for (party, data, rows) in &hospitals {
            let spec = JobSpec {
                id: format!("round-{round}-{}", party.name),
                kind: JobKind::Train,
                model: plan_ref.clone(),
                data: data.clone(),
                output_recipients: to.clone(),
                more_data: Vec::new(),
            };
            let mut grants = vec![owner.grant(&spec, InputRole::Model, &admitted, &to)?];
            if dropout != Some(&(party.name.clone(), round)) {
                grants.push(grant_data(party, &spec)?);
            }
            let done = match client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await {
                Ok(done) => done,
                Err(error) => {
                    println!("   ✘ {} did not contribute to round {round}: {error}", party.name);
                    continue;
                }
            };
            let sealed = client.get_object(&done.outputs[0].object_id).await?;
            let receipt = crate::parties::verify_receipt(&done.receipt, &enclave, &spec, &sealed)?;
            spent.extend(receipt.privacy);
            let (_, plain) = cloister_seal::open_to_vec(&owner.envelope, &sealed)?;
            let update: serde_json::Value = serde_json::from_slice(&plain)?;
            let model: Classifier = serde_json::from_value(update["model"].clone())?;
            updates.push((model, *rows));
            contributors.push(party.name.as_str());
        }
        ensure!(!updates.is_empty(), "no hospital contributed to round {round}");
        let weighted: Vec<(&Classifier, u64)> = updates.iter().map(|(m, n)| (m, *n)).collect();
        global = federated_average(&weighted)?;
        let (_, accuracy) = global.evaluate(&test)?;
        ok(&format!(
            "round {round}: {} updates averaged ({}), held-out accuracy {accuracy:.3}",
            updates.len(),
            contributors.join(", ")
        ));
        show_privacy(&spent);
        rounds.push(accuracy);
    }

    say(
        "4. For comparison: the same model trained centrally on the plaintext union",
        "What a single party holding every hospital's rows would get (10 epochs).",
    );
    let mut union =
        LabelledRows { features: Vec::new(), labels: Vec::new(), columns: test.columns };
    for part in &parts {
        union.features.extend_from_slice(&part.features);
        union.labels.extend_from_slice(&part.labels);
    }
    let (central_model, _) =
        initial.train(&union, &TrainConfig { epochs: 10, ..round_config(0, false) })?;
    let (_, central) = central_model.evaluate(&test)?;
    ok(&format!("central held-out accuracy {central:.3}"));

    say(
        "5. The final model is exported to ONNX, imported into the repository and served",
        "Sealed to the model owner's key-broker key with a signed manifest, deployed after its\n\
         integrity check, and queried through Oblivious HTTP.",
    );
    let onnx = global.to_onnx()?;
    let broker_key = authority.register_broker_key("federated-model", measurements).await?;
    let files = std::collections::BTreeMap::from([("model.onnx".to_owned(), onnx.clone())]);
    let metadata = cloister_engine::inspect(ModelFormat::Onnx, &files)?;
    let repository = Repository::open(&dirs.models.display().to_string())?;
    let imported = repository
        .import(
            NewModel {
                name: "breast-cancer-federated".to_owned(),
                version: "1".to_owned(),
                metadata,
                licence: LicenceTerms {
                    licence: None,
                    no_weight_export: true,
                    terms: vec!["trained by five federated rounds".to_owned()],
                },
                files: vec![("model.onnx".to_owned(), Zeroizing::new(onnx.clone()))],
                recipient: broker_key.recipient.parse().context("the broker recipient")?,
            },
            &owner.signing,
            unix_now(),
        )
        .await?;
    let policy = ServingPolicy {
        schema: Some(cloister_types::model::SERVING_POLICY_SCHEMA),
        model: "breast-cancer-federated".to_owned(),
        versions: vec!["1".to_owned()],
        requesters: vec![RequesterLimits {
            requester: owner.id(),
            requests_per_minute: 60,
            token_quota: None,
        }],
        engine: Default::default(),
        offload: Default::default(),
    };
    let policy_jws = owner.signing.sign(
        "serving policy",
        &policy,
        unix_now(),
        std::time::Duration::from_secs(3600),
    )?;
    let deployed = client
        .deploy_model(&DeployModel {
            manifest: imported.jws,
            owner: owner.id(),
            serving_policy: policy_jws,
        })
        .await?;
    let expectations =
        Expectations::from_ca_pem(&ca_pem, measurements.to_vec(), accepted.to_vec())?;
    let ohttp = OhttpClient::connect(&worker.url, expectations).await?;
    let sample = &test.features[..5 * test.columns];
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "breast-cancer-federated",
        "inputs": { "features": { "shape": [5, test.columns], "data": sample } }
    }))?;
    let headers = vec![
        (
            "authorization".to_owned(),
            authorization_header(&owner.signing, "POST", "/v1/infer", &body)?,
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    let answer = ohttp
        .send(&InnerRequest { method: "POST", path: "/v1/infer", headers, body: &body })
        .await?;
    ensure!(answer.status == 200, "the served model answered {}", answer.status);
    let served: serde_json::Value = serde_json::from_slice(&answer.body)?;
    let probabilities: Vec<f32> =
        serde_json::from_value(served["outputs"]["probabilities"]["data"].clone())?;
    let local = global.predict(sample)?;
    ensure!(
        probabilities.iter().zip(&local).all(|(a, b)| (a - b).abs() < 1e-4),
        "the served model does not give the trained model's probabilities"
    );
    ok(&format!("{} served; 5 held-out rows answered as the trained model does", deployed.model));

    say(
        "6. Nothing the compute provider holds is plaintext",
        "Every file under compute/ is searched for the hospitals' rows, the final parameters and\n\
         the exported model: raw, hex and base64.",
    );
    let union_csv = to_csv(&union);
    let parameters = serde_json::to_vec(&global)?;
    let secrets = [
        Secret::sampled("hospital rows", &union_csv, 16, 48),
        Secret::sampled("final parameters", &parameters, 16, 48),
        Secret::sampled("exported model", &onnx, 8, 48),
    ];
    show_no_plaintext(&dirs.root, &secrets)?;

    let federated = *rounds.last().context("no rounds")?;
    println!(
        "\nverdict: every step verified — attestation, grants, receipts, sealed updates opened \
         only by the model owner, the served model's integrity (simulated TEE: development only)."
    );
    println!("federated accuracy: {federated:.3}");
    println!("central accuracy: {central:.3}");
    Ok(TrainDemoReport { rounds, central })
}
