//! `cloister demo`: the whole confidential batch-inference path on loopback, narrated.
//!
//! An attestation service (on SQLite, with a tenant and an instance whose policy gets a second
//! version) and an enclave worker (simulated TEE) start in this process; a model provider seals
//! its model to the verified enclave, a data provider seals its data set once to its own
//! key-broker key; both grant one job; the worker gets the data key released by the broker,
//! runs the job and seals the predictions to the data provider, who scores them and checks the
//! receipt. Finally the audit log is verified and every file on the compute provider's side is
//! searched for plaintext.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use cloister_types::api::SubmitJob;
use cloister_types::manage::PolicySpec;
use cloister_types::{InputRole, JobKind, JobSpec, TeeKind};
use indicatif::{ProgressBar, ProgressStyle};

use crate::parties::{Admitted, Party, verify_receipt};
use crate::scan::{Secret, scan};
use crate::testbed::{self, ComputeDirs, InstancePolicy};

/// The Wisconsin Diagnostic Breast Cancer table as shipped in scikit-learn (UCI, CC BY 4.0).
pub const BREAST_CANCER_CSV: &[u8] = include_bytes!("../../../assets/breast_cancer.csv");

/// The demo classifier, trained by `scripts/train_demo_model.py`.
pub const DEMO_MODEL_ONNX: &[u8] = include_bytes!("../../../assets/breast_cancer_classifier.onnx");

/// What the demo found.
#[derive(Debug)]
pub struct DemoReport {
    /// Fraction of rows classified correctly.
    pub accuracy: f64,
    /// Rows scored.
    pub rows: usize,
    /// Where the parties' and the compute provider's files are.
    pub workdir: PathBuf,
}

/// The breast-cancer table split the way the data provider splits it: features to send, labels to
/// keep.
pub struct LabelledTable {
    /// CSV of the 30 feature columns, no header.
    pub features_csv: Vec<u8>,
    /// 0 = malignant, 1 = benign, one per row.
    pub labels: Vec<usize>,
}

/// Splits scikit-learn's `breast_cancer.csv` (a `569,30,malignant,benign` header, then 30 features
/// and a label per row).
pub fn split_labels(csv: &[u8]) -> Result<LabelledTable> {
    let text = std::str::from_utf8(csv).context("the table is not UTF-8")?;
    let mut lines = text.lines();
    let header = lines.next().context("the table is empty")?;
    let declared: Vec<&str> = header.split(',').collect();
    ensure!(declared.len() >= 2, "unexpected header line {header:?}");
    let (rows, columns): (usize, usize) = (declared[0].parse()?, declared[1].parse()?);
    let mut features_csv = Vec::with_capacity(csv.len());
    let mut labels = Vec::with_capacity(rows);
    for (index, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let (features, label) =
            line.rsplit_once(',').with_context(|| format!("line {} has no label", index + 2))?;
        ensure!(
            features.split(',').count() == columns,
            "line {} has {} features, the header says {columns}",
            index + 2,
            features.split(',').count()
        );
        labels.push(label.trim().parse().with_context(|| format!("label on line {}", index + 2))?);
        features_csv.extend_from_slice(features.as_bytes());
        features_csv.push(b'\n');
    }
    ensure!(labels.len() == rows, "the header says {rows} rows, found {}", labels.len());
    Ok(LabelledTable { features_csv, labels })
}

/// The innermost cause of an error chain: the service's own words.
fn last_cause(error: &anyhow::Error) -> String {
    error.chain().last().map(ToString::to_string).unwrap_or_default()
}

/// Prints a narrated step of a demo.
pub(crate) fn say(step: &str, text: &str) {
    println!("\n== {step}\n{text}");
}

/// Prints what a demo step verified.
pub(crate) fn ok(text: &str) {
    println!("   ✔ {text}");
}

/// Searches every file under the compute side's `root` for `secrets`; prints each finding and
/// fails if there is any, or says that there is none.
pub(crate) fn show_no_plaintext(root: &Path, secrets: &[Secret<'_>]) -> Result<()> {
    let findings = scan(root, secrets)?;
    if !findings.is_empty() {
        for finding in &findings {
            println!(
                "   ✘ {} found ({}) in {}",
                finding.secret,
                finding.encoding,
                finding.path.display()
            );
        }
        bail!("plaintext found on the compute provider's side");
    }
    ok(&format!("no plaintext under {}", root.display()));
    Ok(())
}

fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(message.to_owned());
    if let Ok(style) = ProgressStyle::with_template("   {spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Runs the demo in `workdir` (created if missing).
pub async fn run(workdir: &Path) -> Result<DemoReport> {
    let dirs = ComputeDirs::create(&workdir.join("compute"))?;
    let data_dir = workdir.join("data-provider");
    let model_dir = workdir.join("model-provider");

    println!("Cloister demo: confidential batch inference between two organisations.");
    println!("A model provider and a data provider let a model score a medical data set inside an");
    println!("attested enclave; the compute provider that runs it never sees the model, the data");
    println!("or the results. The TEE here is SIMULATED (`sim`): development only, no hardware");
    println!(
        "protection; every real step (keys, evidence, policy, envelopes, grants) is the same."
    );
    println!("Work directory: {}", workdir.display());

    say(
        "1. The compute provider starts the attestation service; the data provider's instance",
        "The data provider is a tenant of the service: it owns an attestation instance (policy,\n\
         reference values, trust anchors, token key, CA). Its first policy version is the\n\
         production default, which refuses the simulated TEE.",
    );
    // The measurement a reproducible build would publish; here we measure the binary we run.
    let (attester, published, authority) =
        testbed::start_demo_authority(&dirs, InstancePolicy::ProductionDefault).await?;
    ok(&format!(
        "attestation service listening on {} (SQLite under compute/authority/)",
        authority.url
    ));
    ok(&format!("tenant \"demo\", instance {} at policy version 1", authority.instance_id));
    let authority_client = authority.client()?;
    let refused = testbed::start_worker(&dirs, &attester, &authority.channel()?).await;
    let Err(refusal) = refused else { bail!("policy version 1 accepted the simulated TEE") };
    ok(&format!("the worker's simulated evidence is refused under v1: {}", last_cause(&refusal)));
    let admin = authority.tenant_admin()?;
    let updated = admin
        .update_policy(&authority.instance_id, &PolicySpec::Builtin("dev-sim".to_owned()))
        .await?;
    ok(&format!(
        "the tenant installs policy version {} (dev-sim: names `sim`, never better than warning)",
        updated.version
    ));

    say(
        "2. The enclave worker attests",
        "The worker generates fresh keys, asks the instance for a nonce, binds both into simulated\n\
         TEE evidence, and gets back an EAR attestation result naming the policy version and an\n\
         enclave certificate issued by the instance CA.",
    );
    let worker = testbed::start_worker(&dirs, &attester, &authority.channel()?).await?;
    let info = authority_client.instance().await?;
    let claims = worker.worker.identity.claims();
    ok(&format!(
        "worker attested: tee={} measurement={}… verdict under policy {}",
        claims.tee,
        &published.to_string()[..24],
        info.policy_id
    ));
    ok(&format!("worker serves attested TLS on {}", worker.url));
    let ca_pem = info.ca_certificate_pem;

    say(
        "3. The model provider checks the enclave, then seals and uploads its model",
        "It trusts the instance CA and its own allow-list of measurements; it accepts the\n\
         simulated TEE only because it says so explicitly. The TLS handshake itself checks the\n\
         certificate chain and the claims before any byte is sent.",
    );
    let model_provider = Party::create("the model provider", &model_dir)?;
    std::fs::write(model_dir.join("breast_cancer_classifier.onnx"), DEMO_MODEL_ONNX)?;
    let accepted = [TeeKind::Sim];
    let (model_client, enclave) = model_provider
        .attest_worker(&worker.url, &ca_pem, std::slice::from_ref(&published), &accepted)
        .await?;
    ok(&format!(
        "enclave verified: chain to the instance CA, measurement on the allow-list, keys bound (verdict {:?})",
        enclave.ear_status
    ));
    let model_ref = model_provider
        .seal_and_upload(&model_client, &enclave, "demo-model", "application/onnx", DEMO_MODEL_ONNX)
        .await?;
    ok(&format!(
        "model sealed to the enclave and uploaded ({} bytes of plaintext)",
        DEMO_MODEL_ONNX.len()
    ));

    say(
        "4. The data provider seals its data set once, to its key-broker key",
        "Wisconsin Diagnostic Breast Cancer table (569 patients, 30 features; UCI, CC BY 4.0).\n\
         Instead of sealing to this one enclave, it registers a key with the broker under a\n\
         release policy (its own measurement allow-list) and seals to that key: any enclave the\n\
         policy admits can use the data later, until the key is revoked.",
    );
    let data_provider = Party::create("the data provider", &data_dir)?;
    std::fs::write(data_dir.join("breast_cancer.csv"), BREAST_CANCER_CSV)?;
    let table = split_labels(BREAST_CANCER_CSV)?;
    std::fs::write(data_dir.join("features.csv"), &table.features_csv)?;
    let broker_key = authority
        .register_broker_key("breast-cancer-2026", std::slice::from_ref(&published))
        .await?;
    std::fs::write(data_dir.join("broker.recipient"), &broker_key.recipient)?;
    ok(&format!("broker key {} registered (key id {})", broker_key.id, broker_key.key_id));
    let (data_client, data_enclave) = data_provider
        .attest_worker(&worker.url, &ca_pem, std::slice::from_ref(&published), &accepted)
        .await?;
    ok("enclave verified independently by the data provider");
    let data_ref = data_provider
        .seal_to_broker_and_upload(
            &data_client,
            &broker_key.recipient,
            "demo-data",
            "text/csv",
            &table.features_csv,
        )
        .await?;
    ok(&format!("{} rows sealed to the broker key and uploaded", table.labels.len()));

    say(
        "5. Both owners sign grants for exactly this job",
        "A grant names the job's digest, the object and its digest, the enclave measurements\n\
         allowed, and who may receive results: here only the data provider.",
    );
    let results_to = vec![data_provider.envelope.public_key().to_text()];
    let spec = JobSpec {
        id: format!("job-{}", uuid::Uuid::new_v4()),
        kind: JobKind::BatchInference,
        model: model_ref,
        data: data_ref,
        output_recipients: results_to.clone(),
        more_data: Vec::new(),
    };
    let grants = vec![
        model_provider.grant(&spec, InputRole::Model, &Admitted::like(&enclave), &results_to)?,
        data_provider.grant(&spec, InputRole::Data, &Admitted::like(&data_enclave), &results_to)?,
    ];
    ok(&format!("job {} granted by both owners", spec.id));

    say(
        "6. The worker checks the grants, gets the data key released, runs the model",
        "The worker presents its attestation result to the key broker, which checks it against\n\
         the data provider's release policy and wraps the key to the enclave's own key. The\n\
         predictions are sealed to the data provider only; the worker erases the plaintext and\n\
         signs a receipt with its attested receipt key.",
    );
    let bar = spinner("running batch inference with tract-onnx inside the enclave");
    let done = data_client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await;
    bar.finish_and_clear();
    let done = done?;
    ok(&format!("job finished: {} sealed output(s)", done.outputs.len()));
    let releases: Vec<_> = admin
        .audit()
        .await?
        .into_iter()
        .filter(|r| r.kind == "key.released" && r.subject == broker_key.id)
        .collect();
    ensure!(
        releases.iter().any(|r| r.outcome == "success"),
        "the audit log records no release of the data key"
    );
    ok(&format!("the audit log records the release of {} to the enclave", broker_key.id));

    say(
        "7. The data provider opens the results, scores them and verifies the receipt",
        "The receipt must be signed by the enclave's attested receipt key and name the job, the\n\
         inputs as uploaded, the output as downloaded and the attestation result checked.",
    );
    let output = done.outputs.first().context("the job produced no output")?;
    let sealed = data_client.get_object(&output.object_id).await?;
    let receipt = verify_receipt(&done.receipt, &data_enclave, &spec, &sealed)?;
    ok(&format!(
        "receipt verified: {} rows, inputs and output digests match, erased: {}",
        receipt.rows,
        receipt.erased.join(", ")
    ));
    let (_, plaintext) = cloister_seal::open_to_vec(&data_provider.envelope, &sealed)?;
    std::fs::write(data_dir.join("predictions.csv"), &*plaintext)?;
    let predictions = cloister_engine::Predictions::from_csv(&plaintext)?;
    let predicted = predictions.argmax();
    ensure!(
        predicted.len() == table.labels.len(),
        "got {} predictions for {} rows",
        predicted.len(),
        table.labels.len()
    );
    let correct = predicted.iter().zip(&table.labels).filter(|(p, l)| p == l).count();
    let accuracy = correct as f64 / table.labels.len() as f64;
    ok(&format!("{correct} of {} diagnoses right", table.labels.len()));
    println!(
        "     (the demo model was trained on 80% of these rows; on the held-out 20% it scores\n\
         \x20     0.974, see assets/README.md)"
    );

    say(
        "8. The audit log is intact, and nothing the compute provider holds is plaintext",
        "The hash chain and signed checkpoints of the audit log are verified; every file under\n\
         compute/ is searched for samples of the data set, the model and the predictions: raw,\n\
         hex and base64.",
    );
    authority.service.checkpoint(cloister_sign::unix_now() as i64).await?;
    let store = authority.service.store();
    let report = cloister_authority::audit::verify_log(
        &store.audit_rows(None).await?,
        &store.checkpoints().await?,
        &authority.service.audit_public_key(),
    );
    ensure!(report.is_intact(), "the audit log does not verify: {report}");
    ok(&format!(
        "audit log intact: {} entries, {} signed checkpoint(s)",
        report.entries, report.checkpoints
    ));
    let secrets = [
        Secret::sampled("data set", &table.features_csv, 16, 48),
        Secret::sampled("model", DEMO_MODEL_ONNX, 16, 48),
        Secret::sampled("predictions", &plaintext, 16, 48),
    ];
    show_no_plaintext(&dirs.root, &secrets)?;

    println!("\naccuracy: {accuracy:.3} ({correct}/{})", table.labels.len());
    println!(
        "verdict: every step verified — attestation, policy versions, grants, key release, envelopes, \
         receipt and audit log — and the compute provider saw ciphertext only (simulated TEE: \
         development only)."
    );
    Ok(DemoReport { accuracy, rows: table.labels.len(), workdir: workdir.to_owned() })
}
