//! `cloister federate`: federated training between separate parties, who meet through a shared
//! exchange directory and an attested worker.
//!
//! - A data owner runs `federate join` once: its labelled rows are sealed to the attested enclave
//!   and uploaded, and the reference to them is what it gives the model owner.
//! - The model owner runs `federate run`: each round it seals the current global model as a
//!   training plan, proposes one training job per participant (or, with
//!   `--aggregate-in-enclave`, one job over every participant that seals only the average),
//!   waits for the grants, submits the granted jobs, verifies each receipt, opens the sealed
//!   updates and averages them weighted by rows (FedAvg). A participant whose grant does not
//!   arrive in time, who refuses, or whose job fails misses the round; the others carry on and
//!   the round's record names who contributed.
//! - Each data owner runs `federate approve`: it signs a grant for every proposed job over its own
//!   data set that meets its conditions (training only, results only to the recipients it
//!   accepts, in enclaves with the measurements it accepts, within its privacy budget, which the
//!   worker's ledger enforces over every round together) and writes a refusal otherwise.
//!
//! The exchange directory holds only public things: job specs, grants (signed), refusals, round
//! records (who contributed, accuracy, privacy spent) and `done.json` when the federation ends.
//! `round-NNN/JOB.job.json` is a proposal, `round-NNN/JOB.NAME.grant.jws` a participant's grant
//! and `round-NNN/JOB.NAME.refused.txt` its refusal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use cloister_client::{AuthorityClient, ClientError, VerifiedEnclave, WorkerClient};
use cloister_engine::train::standardization;
use cloister_engine::{Classifier, LabelledRows, TrainConfig, federated_average};
use cloister_seal::RecipientSecretKey;
use cloister_sign::SigningKey;
use cloister_types::api::SubmitJob;
use cloister_types::job::{PrivacyAccount, PrivacyBudget};
use cloister_types::{Hex, InputRef, InputRole, JobKind, JobSpec};
use serde::{Deserialize, Serialize};

use crate::job::WorkerTarget;
use crate::parties::{
    Admitted, seal_register_and_upload, seal_to_broker_register_and_upload,
    seal_to_enclave_and_upload, sign_grant, verify_receipt,
};

/// How often the exchange directory is polled.
const POLL: Duration = Duration::from_millis(200);

/// A participant's data set, as `federate join` writes it and `federate run --participant`
/// reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Participant {
    /// The participant's name (lower-case letters, digits and `-`).
    pub name: String,
    /// Its sealed data set on the worker.
    pub data: InputRef,
    /// The attestation instance whose enclave the participant verified at `join` (its grants
    /// admit enclaves appraised by this instance only).
    pub instance: String,
}

fn check_name(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "participant name {name:?} must be 1 to 64 lower-case letters, digits or '-'"
    );
    Ok(())
}

/// Writes a file of the exchange (or the participant reference) whole, creating its directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::job::write_atomically(path, bytes)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

/// Whom `federate join` seals the rows to.
#[derive(Clone, Debug)]
pub enum SealTo {
    /// The attested enclave's own key: nothing else can open the rows, and they cannot be opened
    /// any more once that worker process ends.
    Enclave,
    /// A key-broker key (its recipient text): any enclave its release policy admits opens the
    /// rows, across worker restarts, until the owner revokes the key.
    Broker(String),
}

/// Who joins, with what, and where to: `federate join`'s options.
pub struct Joining {
    /// The worker and what its enclave must be.
    pub target: WorkerTarget,
    /// The attestation service the data set is registered with.
    pub registry: AuthorityClient,
    /// The participant name.
    pub name: String,
    /// The data owner's signing key.
    pub signing: SigningKey,
    /// The object id on the worker.
    pub object_id: String,
    /// Whom the rows are sealed to.
    pub to: SealTo,
}

/// `federate join`: seals `rows` (a labelled CSV, class in the last column) as the object id,
/// after verifying the worker's enclave, registers the sealed data set to the data owner at the
/// attestation service, uploads it, and writes the participant reference to `out`.
pub async fn join(joining: &Joining, rows: &Path, out: &Path) -> Result<Participant> {
    let Joining { target, registry, name, signing, object_id, to } = joining;
    let (name, object_id) = (name.as_str(), object_id.as_str());
    check_name(name)?;
    let plain = zeroize::Zeroizing::new(
        std::fs::read(rows).with_context(|| format!("reading {}", rows.display()))?,
    );
    let parsed = LabelledRows::from_csv(&plain)
        .with_context(|| format!("{} is not a labelled CSV", rows.display()))?;
    let (client, enclave) = attest(target).await?;
    // Both paths refuse an enclave pinned to another service than `registry` before sealing
    // (`seal_register_and_upload` checks it itself).
    let data = match to {
        SealTo::Enclave => {
            seal_register_and_upload(
                &client, &enclave, registry, signing, object_id, "text/csv", &plain,
            )
            .await?
        }
        SealTo::Broker(recipient) => {
            let service_key = crate::parties::ensure_enclave_uses(&enclave, registry).await?;
            seal_to_broker_register_and_upload(
                &client,
                registry,
                &service_key,
                signing,
                recipient,
                object_id,
                "text/csv",
                &plain,
            )
            .await?
        }
    };
    let participant =
        Participant { name: name.to_owned(), data, instance: enclave.instance_id().to_owned() };
    write_atomically(out, &serde_json::to_vec_pretty(&participant)?)?;
    eprintln!(
        "{name}: {} rows sealed to {} (the worker's enclave has measurement {}) as {object_id}; \
         give {} to the model owner",
        parsed.rows(),
        match to {
            SealTo::Enclave => "the enclave's own key",
            SealTo::Broker(_) => "your key-broker key",
        },
        enclave.claims.measurement,
        out.display()
    );
    Ok(participant)
}

async fn attest(target: &WorkerTarget) -> Result<(WorkerClient, VerifiedEnclave)> {
    let client = target.client()?;
    let (enclave, _) = client.attest().await.context("the worker's enclave is not acceptable")?;
    Ok((client, enclave))
}

/// What a data owner accepts, for `federate approve`.
#[derive(Debug)]
pub struct ApproveOptions {
    /// The exchange directory.
    pub exchange: PathBuf,
    /// The participant reference `federate join` wrote.
    pub participant: Participant,
    /// The data owner's signing key.
    pub signing: SigningKey,
    /// Enclave measurements accepted.
    pub measurements: Vec<Hex>,
    /// Envelope public keys results may be sealed to (the model owner's).
    pub recipients: Vec<String>,
    /// The model owner's party public key (text form): only its jobs are granted.
    pub model_owner: String,
    /// The most privacy training may spend on the data set, over every job together.
    pub budget: Option<PrivacyBudget>,
    /// Keep approving until the federation ends.
    pub watch: bool,
    /// Stop after granting this many jobs.
    pub max_jobs: Option<u64>,
}

/// Why a proposed job is refused, or `None` when the data owner grants it.
fn refusal(spec: &JobSpec, options: &ApproveOptions) -> Option<String> {
    if spec.kind != JobKind::Train {
        return Some(format!("job kind {:?} is not training", spec.kind));
    }
    // Anyone who can write to the exchange can propose a job (red team, round 8: a stranger's
    // copied proposal was granted and spent the data set's privacy budget).
    if spec.model.owner != options.model_owner {
        return Some(format!(
            "the model and its training plan are owned by {}, not by the model owner you accept",
            spec.model.owner
        ));
    }
    if let Some(stranger) = spec.output_recipients.iter().find(|r| !options.recipients.contains(r))
    {
        return Some(format!("results would be sealed to {stranger}, who is not accepted"));
    }
    None
}

/// `federate approve`: grants (or refuses, with the reason in the exchange) every proposed job
/// over the participant's data set; with `watch`, until the federation is done or `max_jobs`
/// were granted. Returns the number of jobs granted.
pub async fn approve(options: &ApproveOptions) -> Result<u64> {
    let me = &options.participant;
    check_name(&me.name)?;
    ensure!(
        me.data.owner == options.signing.public_key().to_text(),
        "the data set {} is owned by another key than --key",
        me.data.object_id
    );
    let mut handled = BTreeSet::new();
    let mut granted = 0u64;
    loop {
        let done = options.exchange.join("done.json").exists();
        for (path, spec) in proposals(&options.exchange)? {
            if !spec.data_inputs().any(|input| *input == me.data) || handled.contains(&spec.id) {
                continue;
            }
            handled.insert(spec.id.clone());
            let dir = path.parent().unwrap_or(Path::new("."));
            let grant_path = dir.join(format!("{}.{}.grant.jws", spec.id, me.name));
            if grant_path.exists() {
                continue;
            }
            if options.max_jobs.is_some_and(|max| granted >= max) {
                return Ok(granted);
            }
            if let Some(reason) = refusal(&spec, options) {
                let refused = dir.join(format!("{}.{}.refused.txt", spec.id, me.name));
                write_atomically(&refused, reason.as_bytes())?;
                println!("{}: refused {}: {reason}", me.name, spec.id);
                continue;
            }
            let admitted = Admitted {
                measurements: options.measurements.clone(),
                instances: vec![me.instance.clone()],
            };
            let grant = sign_grant(
                &options.signing,
                &spec,
                InputRole::Data,
                &admitted,
                &options.recipients,
                options.budget,
            )?;
            write_atomically(&grant_path, grant.as_bytes())?;
            granted += 1;
            println!("{}: granted {}", me.name, spec.id);
        }
        if !options.watch || done || options.max_jobs.is_some_and(|max| granted >= max) {
            return Ok(granted);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every proposed job in the exchange, in round order.
fn proposals(exchange: &Path) -> Result<Vec<(PathBuf, JobSpec)>> {
    let mut found = Vec::new();
    let Ok(rounds) = std::fs::read_dir(exchange) else { return Ok(found) };
    let mut dirs: Vec<PathBuf> = rounds
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("round-"))
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".job.json"))
            .collect();
        files.sort();
        for path in files {
            let spec: JobSpec = read_json(&path, "a job spec")?;
            found.push((path, spec));
        }
    }
    Ok(found)
}

/// What the model owner sets for `federate run`.
pub struct RunOptions {
    /// The worker and what its enclave must be.
    pub target: WorkerTarget,
    /// The exchange directory.
    pub exchange: PathBuf,
    /// Names the federation's jobs and objects (unique on the worker).
    pub id: String,
    /// The model owner's signing key (its grants and the plans it owns).
    pub signing: SigningKey,
    /// The model owner's envelope key (opens the updates).
    pub envelope: RecipientSecretKey,
    /// Every participant's reference.
    pub participants: Vec<Participant>,
    /// The model owner's held-out labelled rows: the input standardization and the accuracy.
    pub test: LabelledRows,
    /// Hidden layer widths (none: logistic regression).
    pub hidden: Vec<usize>,
    /// Rounds.
    pub rounds: u64,
    /// Training settings; round `r` uses seed `config.seed + r`.
    pub config: TrainConfig,
    /// One job per round over every participant, averaged inside the enclave.
    pub aggregate_in_enclave: bool,
    /// How long to wait for a round's grants.
    pub grant_timeout: Duration,
}

/// One round's record, as `round-NNN/record.json` holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundRecord {
    /// The round, from 1.
    pub round: u64,
    /// Who contributed.
    pub contributors: Vec<String>,
    /// Rows trained on in the round, over every contributor.
    pub rows: u64,
    /// Who did not, and why.
    pub missing: Vec<(String, String)>,
    /// With aggregation in the enclave: why the round's job over every granting participant
    /// failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Held-out accuracy of the global model after the round.
    pub accuracy: f64,
    /// Each contributing data set's privacy account, from the receipts.
    pub privacy: Vec<PrivacyAccount>,
}

/// What `federate run` ends with.
#[derive(Debug, Serialize, Deserialize)]
pub struct Federation {
    /// The final global model.
    pub model: Classifier,
    /// Every round.
    pub rounds: Vec<RoundRecord>,
}

/// `federate run`: drives the rounds and returns the final model with every round's record
/// (also written to the exchange as `done.json`).
pub async fn run(options: &RunOptions) -> Result<Federation> {
    let mut names = BTreeSet::new();
    for participant in &options.participants {
        check_name(&participant.name)?;
        ensure!(names.insert(&participant.name), "participant {} is named twice", participant.name);
    }
    ensure!(!options.participants.is_empty(), "name at least one --participant");
    // Approvers stop watching once `done.json` appears: an exchange is for one federation.
    ensure!(
        !options.exchange.join("done.json").exists(),
        "{} holds a finished federation (done.json); give each federation its own exchange \
         directory",
        options.exchange.display()
    );
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    let (client, enclave) = attest(&options.target).await?;
    let classes = options.test.labels.iter().max().map_or(2, |&c| c as usize + 1).max(2);
    let (mean, scale) = standardization(&options.test);
    let mut global =
        Classifier::initial(mean, scale, &options.hidden, classes, options.config.seed)?;
    let me = options.signing.public_key().to_text();
    let to = vec![options.envelope.public_key().to_text()];
    let round_driver = Round { options, client: &client, enclave: &enclave, to: &to };
    let mut records = Vec::new();
    for round in 1..=options.rounds {
        let config = TrainConfig { seed: options.config.seed + round, ..options.config.clone() };
        let plan = zeroize::Zeroizing::new(serde_json::to_vec(
            &serde_json::json!({ "model": global, "config": config }),
        )?);
        let plan_ref = seal_to_enclave_and_upload(
            &client,
            &enclave,
            &me,
            &format!("{}-r{round}-plan", options.id),
            "application/json",
            &plan,
        )
        .await?;
        let outcome = if options.aggregate_in_enclave {
            round_driver.aggregated(round, &plan_ref).await?
        } else {
            round_driver.per_participant(round, &plan_ref).await?
        };
        let mut record = RoundRecord {
            round,
            contributors: outcome.contributors,
            rows: outcome.rows,
            missing: outcome.missing,
            failure: outcome.failure,
            accuracy: 0.0,
            privacy: outcome.privacy,
        };
        for (name, reason) in &record.missing {
            println!("   ✘ {name} did not contribute to round {round}: {reason}");
        }
        if let Some(failure) = &record.failure {
            println!(
                "   ✘ round {round}: the job over {} failed: {failure}",
                record.contributors.join(", ")
            );
        }
        let updated = outcome.model.is_some();
        if let Some(model) = outcome.model {
            global = model;
        }
        record.accuracy = global.evaluate(&options.test)?.1;
        if !updated {
            record.contributors.clear();
            println!(
                "round {round}: no update; the global model is unchanged, held-out accuracy {:.3}",
                record.accuracy
            );
        } else {
            println!(
                "round {round}: {} update(s) averaged{} ({}; {} rows), held-out accuracy {:.3}",
                record.contributors.len(),
                if options.aggregate_in_enclave { " inside the enclave" } else { "" },
                record.contributors.join(", "),
                record.rows,
                record.accuracy
            );
        }
        for account in &record.privacy {
            if let Some(total) = account.total {
                println!(
                    "   {}: ε = {:.3} spent so far at δ = {} ({} training job(s))",
                    account.object_id, total.epsilon, total.delta, account.jobs
                );
            }
        }
        let dir = round_dir(&options.exchange, round);
        write_atomically(&dir.join("record.json"), &serde_json::to_vec_pretty(&record)?)?;
        records.push(record);
    }
    ensure!(
        records.iter().any(|r| !r.contributors.is_empty()),
        "no participant contributed to any round"
    );
    let federation = Federation { model: global, rounds: records };
    write_atomically(
        &options.exchange.join("done.json"),
        &serde_json::to_vec_pretty(&federation.rounds)?,
    )?;
    Ok(federation)
}

fn round_dir(exchange: &Path, round: u64) -> PathBuf {
    exchange.join(format!("round-{round:03}"))
}

/// What one round produced.
#[derive(Default)]
struct RoundOutcome {
    model: Option<Classifier>,
    contributors: Vec<String>,
    rows: u64,
    missing: Vec<(String, String)>,
    failure: Option<String>,
    privacy: Vec<PrivacyAccount>,
}

/// The model owner's side of a round.
struct Round<'a> {
    options: &'a RunOptions,
    client: &'a WorkerClient,
    enclave: &'a VerifiedEnclave,
    to: &'a [String],
}

/// What became of a proposal for one participant.
enum Answer {
    Granted(String),
    Refused(String),
    Silent,
}

impl Round<'_> {
    fn spec(&self, id: String, plan: &InputRef, data: &[&Participant]) -> JobSpec {
        JobSpec {
            id,
            kind: JobKind::Train,
            model: plan.clone(),
            data: data[0].data.clone(),
            output_recipients: self.to.to_vec(),
            more_data: data[1..].iter().map(|p| p.data.clone()).collect(),
        }
    }

    /// Writes the proposals, then waits until every participant granted or refused, or the
    /// timeout passed.
    async fn propose(&self, round: u64, specs: &[(JobSpec, &Participant)]) -> Result<Vec<Answer>> {
        let dir = round_dir(&self.options.exchange, round);
        let mut written = BTreeSet::new();
        for (spec, _) in specs {
            if written.insert(&spec.id) {
                let path = dir.join(format!("{}.job.json", spec.id));
                write_atomically(&path, &serde_json::to_vec_pretty(spec)?)?;
            }
        }
        let deadline = Instant::now() + self.options.grant_timeout;
        loop {
            let mut answers = Vec::with_capacity(specs.len());
            for (spec, participant) in specs {
                let grant = dir.join(format!("{}.{}.grant.jws", spec.id, participant.name));
                let refused = dir.join(format!("{}.{}.refused.txt", spec.id, participant.name));
                answers.push(if let Ok(text) = std::fs::read_to_string(&grant) {
                    Answer::Granted(text.trim().to_owned())
                } else if let Ok(text) = std::fs::read_to_string(&refused) {
                    Answer::Refused(text)
                } else {
                    Answer::Silent
                });
            }
            if Instant::now() >= deadline || answers.iter().all(|a| !matches!(a, Answer::Silent)) {
                return Ok(answers);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn silent(&self) -> String {
        format!("no grant within {} s", self.options.grant_timeout.as_secs())
    }

    /// Submits `spec` with the model owner's grant and `grants`; verifies the receipt and opens
    /// the update.
    async fn submit(
        &self,
        spec: &JobSpec,
        mut grants: Vec<String>,
    ) -> Result<(Classifier, u64, Vec<PrivacyAccount>)> {
        let admitted = Admitted {
            measurements: self.options.target.measurements.clone(),
            instances: vec![self.enclave.instance_id().to_owned()],
        };
        grants.push(sign_grant(
            &self.options.signing,
            spec,
            InputRole::Model,
            &admitted,
            self.to,
            None,
        )?);
        let done = self.client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await?;
        let output = done.outputs.first().context("the job returned no update")?;
        let sealed = self.client.get_object(&output.object_id).await?;
        let receipt = verify_receipt(&done.receipt, self.enclave, spec, &sealed)?;
        let (_, plain) = cloister_seal::open_to_vec(&self.options.envelope, &sealed)
            .context("opening the update with the model owner's key")?;
        let update: cloister_worker::training::TrainingUpdate = serde_json::from_slice(&plain)
            .context("the update is not a trained classifier with metrics")?;
        Ok((update.model, update.metrics.rows as u64, receipt.privacy))
    }

    /// One job per participant; the model owner averages the updates.
    async fn per_participant(&self, round: u64, plan: &InputRef) -> Result<RoundOutcome> {
        let specs: Vec<(JobSpec, &Participant)> = self
            .options
            .participants
            .iter()
            .map(|p| (self.spec(format!("{}-r{round}-{}", self.options.id, p.name), plan, &[p]), p))
            .collect();
        let answers = self.propose(round, &specs).await?;
        let mut outcome = RoundOutcome::default();
        let mut updates = Vec::new();
        for ((spec, participant), answer) in specs.iter().zip(answers) {
            let name = participant.name.clone();
            let grant = match answer {
                Answer::Granted(grant) => grant,
                Answer::Refused(reason) => {
                    outcome.missing.push((name, format!("refused: {reason}")));
                    continue;
                }
                Answer::Silent => {
                    outcome.missing.push((name, self.silent()));
                    continue;
                }
            };
            match self.submit(spec, vec![grant]).await {
                Ok((model, rows, privacy)) => {
                    updates.push((model, rows));
                    outcome.contributors.push(name);
                    outcome.rows += rows;
                    outcome.privacy.extend(privacy);
                }
                Err(error) => outcome.missing.push((name, format!("{error:#}"))),
            }
        }
        if !updates.is_empty() {
            let weighted: Vec<(&Classifier, u64)> = updates.iter().map(|(m, n)| (m, *n)).collect();
            outcome.model = Some(federated_average(&weighted)?);
        }
        Ok(outcome)
    }

    /// One job over every participant that grants, averaged inside the enclave. A participant
    /// that stays silent or refuses is left out and the job proposed again to the rest (a new
    /// job, so a new grant from each).
    async fn aggregated(&self, round: u64, plan: &InputRef) -> Result<RoundOutcome> {
        let mut outcome = RoundOutcome::default();
        let mut taking: Vec<&Participant> = self.options.participants.iter().collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if taking.is_empty() {
                return Ok(outcome);
            }
            let spec = self.spec(
                format!("{}-r{round}-aggregate-{attempt}", self.options.id),
                plan,
                &taking,
            );
            let specs: Vec<(JobSpec, &Participant)> =
                taking.iter().map(|p| (spec.clone(), *p)).collect();
            let answers = self.propose(round, &specs).await?;
            let mut grants = Vec::new();
            let mut still = Vec::new();
            for (participant, answer) in taking.iter().zip(answers) {
                match answer {
                    Answer::Granted(grant) => {
                        grants.push(grant);
                        still.push(*participant);
                    }
                    Answer::Refused(reason) => outcome
                        .missing
                        .push((participant.name.clone(), format!("refused: {reason}"))),
                    Answer::Silent => {
                        outcome.missing.push((participant.name.clone(), self.silent()))
                    }
                }
            }
            if still.len() < taking.len() {
                taking = still;
                continue;
            }
            outcome.contributors = taking.iter().map(|p| p.name.clone()).collect();
            match self.submit(&spec, grants).await {
                Ok((model, rows, privacy)) => {
                    outcome.model = Some(model);
                    outcome.privacy = privacy;
                    outcome.rows = rows;
                }
                Err(error) => {
                    // A participant whose budget is spent leaves; the others go on without it.
                    if let Some(spent) = over_budget(&error, &taking) {
                        outcome.missing.push((
                            taking[spent].name.clone(),
                            format!("its privacy budget is spent: {error:#}"),
                        ));
                        taking.remove(spent);
                        outcome.contributors.clear();
                        continue;
                    }
                    outcome.failure = Some(format!("{error:#}"));
                }
            }
            return Ok(outcome);
        }
    }
}

/// Which of `taking` the worker refused a job for because its data set's privacy budget is
/// spent (the worker names the data set in its answer).
fn over_budget(error: &anyhow::Error, taking: &[&Participant]) -> Option<usize> {
    let refused = error.chain().find_map(|cause| cause.downcast_ref::<ClientError>())?;
    let ClientError::Refused { code, message, .. } = refused else { return None };
    if code != "over_privacy_budget" {
        return None;
    }
    taking.iter().position(|p| message.contains(&format!("data set {} limits", p.data.object_id)))
}

/// Reads a participant reference file.
pub fn read_participant(path: &Path) -> Result<Participant> {
    read_json(path, "a participant reference (what `cloister federate join` writes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(object_id: &str, owner: &str) -> InputRef {
        InputRef { object_id: object_id.into(), sha256: Hex(vec![1; 32]), owner: owner.into() }
    }

    fn options(model_owner: &str) -> ApproveOptions {
        ApproveOptions {
            exchange: PathBuf::from("exchange"),
            participant: Participant {
                name: "hospital".into(),
                data: input("rows", "cloister-es256:hospital"),
                instance: "in_1".into(),
            },
            signing: SigningKey::generate(),
            measurements: Vec::new(),
            recipients: vec!["cloister-x25519:model-owner".into()],
            model_owner: model_owner.into(),
            budget: None,
            watch: false,
            max_jobs: None,
        }
    }

    fn proposal(model_owner: &str, kind: JobKind, recipient: &str) -> JobSpec {
        JobSpec {
            id: "fed-r1-hospital".into(),
            kind,
            model: input("plan", model_owner),
            data: input("rows", "cloister-es256:hospital"),
            output_recipients: vec![recipient.into()],
            more_data: Vec::new(),
        }
    }

    /// Red team, round 8: anyone who can write to the exchange can propose a job; a stranger's
    /// proposal (its own plan, the model owner's envelope key as the only recipient) was granted
    /// and spent the data set's privacy budget. Only the accepted model owner's jobs are.
    #[test]
    fn only_the_accepted_model_owners_training_jobs_are_granted() {
        let options = options("cloister-es256:model-owner");
        let recipient = "cloister-x25519:model-owner";
        let ours = proposal("cloister-es256:model-owner", JobKind::Train, recipient);
        assert_eq!(refusal(&ours, &options), None);
        let strangers = proposal("cloister-es256:stranger", JobKind::Train, recipient);
        let reason = refusal(&strangers, &options).unwrap();
        assert!(reason.contains("owned by cloister-es256:stranger"), "{reason}");
        let inference = proposal("cloister-es256:model-owner", JobKind::BatchInference, recipient);
        assert!(refusal(&inference, &options).unwrap().contains("not training"));
        let elsewhere = proposal("cloister-es256:model-owner", JobKind::Train, "cloister-x25519:x");
        assert!(refusal(&elsewhere, &options).unwrap().contains("who is not accepted"));
    }
}
