//! The `cloister` command: every party's commands, the services, and the demo. This file holds
//! the command line's top level, the dispatch and the services' logging; each command group's
//! arguments and glue are in `cmd/`, and the work itself in the `cloister` library.

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory as _, Parser, Subcommand};

mod cmd;

/// Confidential AI across organisations: attestation, sealed envelopes, enclave jobs.
#[derive(Parser)]
#[command(name = "cloister", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size of the largest variant (`serve worker`'s flags) costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the whole confidential batch-inference scenario on loopback (simulated TEE).
    Demo(cmd::demo::DemoArgs),
    /// Create an envelope key pair.
    Keygen(cmd::envelope::KeygenArgs),
    /// Seal a file to one or more recipients.
    Seal(cmd::envelope::SealArgs),
    /// Open a sealed file.
    Open(cmd::envelope::OpenArgs),
    /// Compute the value a TEE will report for a build, so a policy can be written before
    /// deployment: the simulated TEE's SHA-384 of an executable (default), the SEV-SNP launch
    /// digest (--ovmf …), TDX RTMR0-3 from an event log (--event-log), SGX MRENCLAVE and
    /// MRSIGNER (--sgxs, --sigstruct).
    Measure(cloister::measure::MeasureArgs),
    /// Inspect TEE evidence.
    #[command(subcommand)]
    Evidence(cmd::evidence::EvidenceCommand),
    /// Run a service.
    #[command(subcommand)]
    Serve(cmd::serve::Serve),
    /// Manage tenants (operator).
    #[command(subcommand)]
    Tenant(cmd::admin::TenantCommand),
    /// Manage your attestation instances (tenant admin).
    #[command(subcommand)]
    Instance(cmd::admin::InstanceCommand),
    /// Manage your key-broker keys (tenant admin).
    #[command(subcommand)]
    Key(cmd::admin::KeyCommand),
    /// Inspect and verify the audit log.
    #[command(subcommand)]
    Audit(cmd::admin::AuditCommand),
    /// Serve a plain OpenAI API on this machine that forwards, end-to-end encrypted (Oblivious
    /// HTTP), to an attested worker's enclave.
    Proxy(cmd::proxy::ProxyArgs),
    /// Import models into a repository (sealed, signed), list, show and delete them; deploy them
    /// to an attested worker, undeploy them, list what a worker serves.
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Model owner: sign who may call which model versions, how much, on which engine, and
    /// whether layers may be offloaded (the serving policy `model deploy` takes); show one.
    #[command(subcommand)]
    ServingPolicy(cmd::model::ServingPolicyCommand),
    /// Durable batch jobs on a worker: submit, watch, fetch the results.
    #[command(subcommand)]
    Job(cmd::job::JobCommand),
    /// Federated training between parties that meet through a shared exchange directory: data
    /// owners `join` and `approve`, the model owner `run`s the rounds.
    #[command(subcommand)]
    Federate(cmd::federate::FederateCommand),
    /// The data pipeline: ingest raw exports into data sets (Parquet shards and dataset.json),
    /// profile them.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Data owner: sign in to the web console with your party key (the console then shows
    /// your data sets, their privacy charges and the jobs recorded over them).
    #[command(subcommand)]
    Owner(cmd::owner::OwnerCommand),
    /// Back up the attestation service's SQLite database and service key, or restore them into
    /// a fresh service; both verify the copy's audit log against the key.
    #[command(subcommand)]
    Backup(cmd::package::BackupCommand),
    /// Print the completion script for a shell on standard output (for example
    /// `cloister completions bash > ~/.local/share/bash-completion/completions/cloister`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write a man page for every command into a directory (`cloister.1`,
    /// `cloister-serve-attestation.1`, …), for `man -l` or a MANPATH directory's `man1/`.
    Man {
        /// The directory to write the pages to (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // The settings of a `--config` file become flags the command line left unset, then clap
    // parses everything as one command line.
    let args =
        match cloister::config::merge_config_file(Cli::command(), std::env::args_os().collect()) {
            Ok(args) => args,
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::from(2);
            }
        };
    let cli = Cli::parse_from(args);
    // A one-shot command whose output is cut short (`cloister … | head`) ends the conventional
    // way, killed by SIGPIPE, instead of failing to print. Services keep Rust's default: their
    // sockets never raise it, and they must not die of a closed standard output.
    if !matches!(cli.command, Command::Serve(_) | Command::Proxy(_)) {
        sigpipe::reset();
    }
    cloister_telemetry::set_commit(env!("CLOISTER_GIT_COMMIT"));
    // The long-running commands log JSON lines on standard error from the first moment, and
    // nothing else: their fatal error is an event too.
    let service_log = match &cli.command {
        Command::Serve(serve) => Some(serve.log_level().clone()),
        Command::Proxy(proxy) => Some(proxy.log_level.clone()),
        _ => None,
    };
    if let Some(level) = &service_log
        && let Err(error) = cloister::logging::init(level.as_deref())
    {
        // No logger to say it: the same JSON shape, written by hand.
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = serde_json::json!({
            "timestamp": timestamp, "level": "ERROR", "message": "stopped on an error",
            "event": "exit", "error": error.to_string(), "target": "cloister",
        });
        eprintln!("{line}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if service_log.is_some() => {
            tracing::error!(event = "exit", error = format!("{error:#}"), "stopped on an error");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    use cmd::runtime;
    match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Keygen(args) => cmd::envelope::keygen(args),
        Command::Seal(args) => cmd::envelope::seal(args),
        Command::Open(args) => cmd::envelope::open(args),
        Command::Measure(args) => cloister::measure::run(&args),
        Command::Evidence(command) => cmd::evidence::run(command),
        Command::Serve(command) => cmd::serve::run(command),
        Command::Job(command) => runtime()?.block_on(cmd::job::run(command)),
        Command::Tenant(command) => runtime()?.block_on(cmd::admin::tenant(command)),
        Command::Instance(command) => runtime()?.block_on(cmd::admin::instance(command)),
        Command::Key(command) => runtime()?.block_on(cmd::admin::key(command)),
        Command::Audit(command) => cmd::admin::audit(command),
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::Model(command) => runtime()?.block_on(cmd::model::model(command)),
        Command::ServingPolicy(command) => cmd::model::serving_policy(command),
        Command::Federate(command) => runtime()?.block_on(cmd::federate::run(command)),
        Command::Data(command) => cmd::data::run(command),
        Command::Owner(command) => cmd::owner::run(command),
        Command::Backup(command) => cmd::package::backup(command),
        Command::Completions { shell } => {
            cloister::manpages::completions(Cli::command(), shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out } => {
            let pages = cloister::manpages::write_man_pages(Cli::command(), &out)?;
            println!("wrote {} man pages to {}", pages.len(), out.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's flags are consistent (unique names, valid requirements): clap checks
    /// this only when a command is built, so build them all.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
