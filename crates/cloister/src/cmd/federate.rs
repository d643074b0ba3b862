//! `cloister federate`: federated training between parties that meet through an exchange
//! directory.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use cloister::envelope;
use cloister::parties::parse_measurements;

use super::{ServiceTlsArgs, WorkerTargetArgs};

#[derive(Subcommand)]
pub(crate) enum FederateCommand {
    /// Data owner: seal a labelled CSV (class in the last column) to the worker's attested
    /// enclave (or to your key-broker key), upload it, and write the participant reference to
    /// give the model owner.
    Join {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// Your participant name (lower-case letters, digits, '-').
        #[arg(long)]
        name: String,
        /// Your party signing key (`cloister keygen --signing`): you own the data set.
        #[arg(long)]
        key: PathBuf,
        /// The attestation service the worker attested with: the sealed data set is registered
        /// to you there before it is uploaded, so that its privacy ledger charges the data set
        /// only with your grants.
        #[arg(long, env = "CLOISTER_SERVER", value_parser = super::url_with_scheme)]
        authority: String,
        #[command(flatten)]
        authority_tls: ServiceTlsArgs,
        /// The labelled rows.
        #[arg(long)]
        rows: PathBuf,
        /// The object id on the worker (default: NAME-rows).
        #[arg(long)]
        object_id: Option<String>,
        /// Seal to this key-broker key (what `cloister key register` prints) instead of the
        /// enclave's own key, so that the rows outlive the worker process: any enclave the key's
        /// release policy admits can open them, until you revoke the key.
        #[arg(long)]
        broker_recipient: Option<String>,
        /// Where to write the participant reference (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Data owner: grant every training job the model owner proposes over your data set in the
    /// exchange, or refuse it with the reason. The worker checks the budget against every
    /// training job on the data set together, so the same budget can go on every round.
    Approve {
        /// The shared exchange directory.
        #[arg(long)]
        exchange: PathBuf,
        /// Your participant reference (what `federate join` wrote).
        #[arg(long)]
        participant: PathBuf,
        /// Your party signing key.
        #[arg(long)]
        key: PathBuf,
        /// An enclave measurement (hex) you accept; repeat for several.
        #[arg(long = "measurement", required = true)]
        measurements: Vec<String>,
        /// An envelope public key file results may be sealed to (the model owner's); repeat for
        /// several.
        #[arg(long = "recipient", required = true)]
        recipients: Vec<PathBuf>,
        /// The model owner's party public key file (`signing.pub`): only jobs whose model and
        /// training plan it owns are granted. Anyone who can write to the exchange can propose a
        /// job; without this, a stranger's plans would spend your privacy budget.
        #[arg(long)]
        model_owner: PathBuf,
        /// The most ε training may spend on your data set, over every job together (DP-SGD is
        /// then required).
        #[arg(long, requires = "delta")]
        epsilon: Option<f64>,
        /// The δ of --epsilon.
        #[arg(long, requires = "epsilon")]
        delta: Option<f64>,
        /// Keep approving new proposals until the federation is done.
        #[arg(long)]
        watch: bool,
        /// Stop after granting this many jobs.
        #[arg(long)]
        max_jobs: Option<u64>,
    },
    /// Model owner: drive federated rounds over the participants' sealed data sets; prints each
    /// round's contributors and held-out accuracy and writes the final model. Ends with
    /// `accuracy: 0.NNN`.
    Run {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The shared exchange directory.
        #[arg(long)]
        exchange: PathBuf,
        /// Names the federation's jobs and objects on the worker (unique per federation).
        #[arg(long)]
        id: String,
        /// Your party signing key.
        #[arg(long)]
        key: PathBuf,
        /// Your envelope secret key: the updates are sealed to its public key.
        #[arg(long)]
        envelope: PathBuf,
        /// A participant reference file (`federate join`); repeat for each participant.
        #[arg(long = "participant", required = true)]
        participants: Vec<PathBuf>,
        /// Your held-out labelled CSV: the input standardization and the accuracy.
        #[arg(long)]
        test: PathBuf,
        /// Hidden layer widths, e.g. `16,8` (default: none, logistic regression).
        #[arg(long, value_delimiter = ',')]
        hidden: Vec<usize>,
        /// Rounds.
        #[arg(long, default_value_t = 5)]
        rounds: u64,
        /// Passes over each participant's rows per round.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Rows per minibatch (expected rows per step with DP-SGD).
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// SGD step size.
        #[arg(long, default_value_t = 0.1)]
        learning_rate: f64,
        /// Seeds the initial model and each round's batch order.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Train with DP-SGD at this noise multiplier (with --dp-clip and --dp-delta).
        #[arg(long, requires_all = ["dp_clip", "dp_delta"])]
        dp_noise: Option<f64>,
        /// DP-SGD per-example gradient norm bound.
        #[arg(long, requires = "dp_noise")]
        dp_clip: Option<f64>,
        /// The δ DP-SGD's ε is stated for.
        #[arg(long, requires = "dp_noise")]
        dp_delta: Option<f64>,
        /// One job per round over every participant, averaged inside the enclave: you only ever
        /// see the average.
        #[arg(long)]
        aggregate_in_enclave: bool,
        /// Seconds to wait for a round's grants before going on without the silent ones.
        #[arg(long, default_value_t = 60)]
        grant_timeout: u64,
        /// Where to write the final model (classifier JSON).
        #[arg(long)]
        out: PathBuf,
        /// Also export the final model as ONNX here.
        #[arg(long)]
        onnx: Option<PathBuf>,
    },
}

pub(crate) async fn run(command: FederateCommand) -> Result<()> {
    use cloister::federate;
    use cloister::parties::read_signing_key;
    match command {
        FederateCommand::Join {
            target,
            name,
            key,
            authority,
            authority_tls,
            rows,
            object_id,
            broker_recipient,
            out,
        } => {
            let object_id = object_id.unwrap_or_else(|| format!("{name}-rows"));
            let signing = read_signing_key(&key)?;
            let to = broker_recipient.map_or(federate::SealTo::Enclave, federate::SealTo::Broker);
            let registry =
                cloister_client::AuthorityClient::new_with(&authority, &authority_tls.tls()?)?;
            let joining = federate::Joining {
                target: target.target()?,
                registry,
                name,
                signing,
                object_id,
                to,
            };
            federate::join(&joining, &rows, &out).await?;
            Ok(())
        }
        FederateCommand::Approve {
            exchange,
            participant,
            key,
            measurements,
            recipients,
            model_owner,
            epsilon,
            delta,
            watch,
            max_jobs,
        } => {
            let recipients = recipients
                .iter()
                .map(|path| {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let key = cloister_seal::RecipientPublicKey::from_text(text.trim())
                        .with_context(|| {
                            format!("{} is not an envelope public key", path.display())
                        })?;
                    Ok(key.to_text())
                })
                .collect::<Result<Vec<_>>>()?;
            let budget = epsilon
                .zip(delta)
                .map(|(epsilon, delta)| cloister_types::job::PrivacyBudget { epsilon, delta });
            let options = federate::ApproveOptions {
                exchange,
                participant: federate::read_participant(&participant)?,
                signing: read_signing_key(&key)?,
                measurements: parse_measurements(&measurements)?,
                recipients,
                model_owner: cloister::parties::read_public_key(&model_owner)?.to_text(),
                budget,
                watch,
                max_jobs,
            };
            let granted = federate::approve(&options).await?;
            eprintln!("{} job(s) granted", granted);
            Ok(())
        }
        FederateCommand::Run {
            target,
            exchange,
            id,
            key,
            envelope,
            participants,
            test,
            hidden,
            rounds,
            epochs,
            batch_size,
            learning_rate,
            seed,
            dp_noise,
            dp_clip,
            dp_delta,
            aggregate_in_enclave,
            grant_timeout,
            out,
            onnx,
        } => {
            let test_csv = zeroize::Zeroizing::new(
                std::fs::read(&test).with_context(|| format!("reading {}", test.display()))?,
            );
            let dp = match (dp_noise, dp_clip, dp_delta) {
                (Some(noise_multiplier), Some(clip_norm), Some(delta)) => {
                    Some(cloister_engine::DpSgd {
                        clip_norm,
                        noise_multiplier,
                        delta,
                        noise_seed: None,
                    })
                }
                _ => None,
            };
            let options = federate::RunOptions {
                target: target.target()?,
                exchange,
                id,
                signing: read_signing_key(&key)?,
                envelope: envelope::read_secret(&envelope)?,
                participants: participants
                    .iter()
                    .map(|path| federate::read_participant(path))
                    .collect::<Result<_>>()?,
                test: cloister_engine::LabelledRows::from_csv(&test_csv)
                    .with_context(|| format!("{} is not a labelled CSV", test.display()))?,
                hidden,
                rounds,
                config: cloister_engine::TrainConfig {
                    epochs,
                    batch_size,
                    learning_rate,
                    l2: 0.0,
                    seed,
                    dp,
                },
                aggregate_in_enclave,
                grant_timeout: std::time::Duration::from_secs(grant_timeout),
            };
            let federation = federate::run(&options).await?;
            let model = serde_json::to_vec_pretty(&federation.model)?;
            std::fs::write(&out, model).with_context(|| format!("writing {}", out.display()))?;
            if let Some(path) = onnx {
                std::fs::write(&path, federation.model.to_onnx()?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let accuracy = federation.rounds.last().map_or(0.0, |r| r.accuracy);
            println!("accuracy: {accuracy:.3}");
            Ok(())
        }
    }
}
