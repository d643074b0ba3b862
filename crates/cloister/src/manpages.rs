//! Shell completions and man pages, generated from the command-line definition itself so they
//! cannot drift from it (`cloister completions SHELL`, `cloister man --out DIR`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Command;

/// Writes the completion script for `shell` to `out`.
pub fn completions(
    mut command: Command,
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) {
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, out);
}

/// Writes one man page per command and subcommand into `dir` (created if missing):
/// `cloister.1`, `cloister-serve.1`, `cloister-serve-attestation.1`, … Returns the files written.
pub fn write_man_pages(command: Command, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = command;
    command.build();
    let version = command.get_version().unwrap_or_default().to_owned();
    let mut written = Vec::new();
    write_page(&command, command.get_name(), &version, dir, &mut written)?;
    Ok(written)
}

fn write_page(
    command: &Command,
    name: &str,
    version: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    // A subcommand's page is titled with its full name, as `man cloister-serve-attestation`
    // finds it.
    let page = command.clone().bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page)
        .title(name)
        .source(format!("cloister {version}"))
        .render(&mut bytes)
        .with_context(|| format!("rendering {name}"))?;
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_page(sub, &format!("{name}-{}", sub.get_name()), version, dir, written)?;
    }
    Ok(())
}
