//! Benchmark of training inside the worker: examples per second of a `train` job (sealed plan
//! and rows opened in the enclave, trained, update sealed, receipt signed) against the same
//! candle training loop (`Classifier::train`) called directly on plaintext, side by side.
//!
//! ```sh
//! cargo build --release -p cloister --example train_bench
//! target/release/examples/train_bench [--copies 20] [--epochs 5] [--runs 3]
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use cloister::demo::BREAST_CANCER_CSV;
use cloister::parties::{Admitted, Party};
use cloister::testbed::{self, ComputeDirs, InstancePolicy};
use cloister_attest::SimAttester;
use cloister_engine::train::standardization;
use cloister_engine::{Classifier, DpSgd, LabelledRows, TrainConfig};
use cloister_types::api::SubmitJob;
use cloister_types::{Hex, InputRole, JobKind, JobSpec, TeeKind};

const MEASUREMENT: [u8; 48] = [0x24; 48];

fn args() -> Result<(usize, usize, usize)> {
    let (mut copies, mut epochs, mut runs) = (20, 5, 3);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it.next().with_context(|| format!("{flag} needs a value"))?.parse()?;
        match flag.as_str() {
            "--copies" => copies = value,
            "--epochs" => epochs = value,
            "--runs" => runs = value,
            other => bail!("unknown flag {other} (use --copies, --epochs, --runs)"),
        }
    }
    ensure!(copies > 0 && epochs > 0 && runs > 0, "every count must be positive");
    Ok((copies, epochs, runs))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let (copies, epochs, runs) = args()?;
    let one = LabelledRows::from_csv(BREAST_CANCER_CSV)?;
    let rows = LabelledRows {
        features: one.features.repeat(copies),
        labels: one.labels.repeat(copies),
        columns: one.columns,
    };
    let csv: String = rows
        .features
        .chunks(rows.columns)
        .zip(&rows.labels)
        .map(|(row, label)| {
            let values: Vec<String> = row.iter().map(f32::to_string).collect();
            format!("{},{label}\n", values.join(","))
        })
        .collect();
    let (mean, scale) = standardization(&rows);

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
    let owner = Party::create("model owner", &tmp.path().join("owner"))?;
    let hospital = Party::create("hospital", &tmp.path().join("hospital"))?;
    let m = [Hex(MEASUREMENT.to_vec())];
    let (client, enclave) = owner.attest_worker(&worker.url, &ca_pem, &m, &[TeeKind::Sim]).await?;
    let registry = authority.client()?;
    let data = hospital
        .seal_register_and_upload(&client, &enclave, &registry, "rows", "text/csv", csv.as_bytes())
        .await?;
    let admitted = Admitted::like(&enclave);
    let to = vec![owner.envelope.public_key().to_text()];

    println!(
        "{} rows × {epochs} epochs = {} examples per run, batch 32, median of {runs} runs",
        rows.rows(),
        rows.rows() * epochs
    );
    println!("| model | direct (candle, plaintext) | train job in the worker | ratio |");
    println!("|---|---|---|---|");
    let dp = DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, delta: 1e-5, noise_seed: Some(1) };
    for (name, hidden, dp) in [
        ("logistic regression", vec![], None),
        ("MLP 30-16-2", vec![16], None),
        ("logistic regression, DP-SGD", vec![], Some(dp)),
    ] {
        let initial = Classifier::initial(mean.clone(), scale.clone(), &hidden, 2, 1)?;
        let config =
            TrainConfig { epochs, batch_size: 32, learning_rate: 0.1, l2: 0.0, seed: 1, dp };
        let plan = serde_json::to_vec(&serde_json::json!({ "model": initial, "config": config }))?;
        let (mut direct, mut job) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let start = Instant::now();
            initial.train(&rows, &config)?;
            direct.push(start.elapsed());

            let id = format!("{}-{run}", name.replace([' ', ',', '-'], ""));
            let plan_ref = owner
                .seal_and_upload(
                    &client,
                    &enclave,
                    &format!("plan-{id}"),
                    "application/json",
                    &plan,
                )
                .await?;
            let spec = JobSpec {
                id: format!("job-{id}"),
                kind: JobKind::Train,
                model: plan_ref,
                data: data.clone(),
                output_recipients: to.clone(),
                more_data: Vec::new(),
            };
            let grants = vec![
                owner.grant(&spec, InputRole::Model, &admitted, &to)?,
                hospital.grant(&spec, InputRole::Data, &admitted, &to)?,
            ];
            let start = Instant::now();
            client.submit_job(&SubmitJob { spec, grants }).await?;
            job.push(start.elapsed());
        }
        let examples = (rows.rows() * epochs) as f64;
        let (d, j) = (median(direct), median(job));
        println!(
            "| {name} | {:.0} examples/s | {:.0} examples/s | {:.1} % |",
            examples / d.as_secs_f64(),
            examples / j.as_secs_f64(),
            100.0 * d.as_secs_f64() / j.as_secs_f64()
        );
    }
    Ok(())
}
