//! The file path of `cloister keygen`/`seal`/`open` without the rest of the `cloister` binary, for
//! benchmarking the envelope on files where building the whole command (it links the worker's
//! ML stack) is too slow: the same library calls on the same kinds of handles — the input file
//! unbuffered, `seal_to`/`open_with` with the default options, the output written unbuffered to
//! a temporary file beside the target, synced, then renamed.
//!
//! `envelope_files keygen --secret S --public P`,
//! `envelope_files seal --recipient P --input IN --output OUT`,
//! `envelope_files open --secret S --input IN --output OUT`
//! (`CLOISTER_BIN=target/release/examples/envelope_files scripts/bench-envelope.sh`).
//! Never used as a test.

use std::fs::File;
use std::path::{Path, PathBuf};

use cloister_seal::{Metadata, Recipient, RecipientSecretKey, SealOptions};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn flag(args: &[String], name: &str) -> Result<PathBuf> {
    let at = args.iter().position(|a| a == name).ok_or(format!("missing {name}"))?;
    Ok(PathBuf::from(args.get(at + 1).ok_or(format!("{name} needs a value"))?))
}

/// Runs `write` on a temporary file beside `output`, syncs it and renames it into place.
fn with_output(output: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let partial = output.with_extension("cloister-partial");
    let mut file = File::create(&partial)?;
    let result = write(&mut file).and_then(|()| Ok(file.sync_all()?));
    match result {
        Ok(()) => Ok(std::fs::rename(&partial, output)?),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("keygen") => {
            let key = RecipientSecretKey::generate();
            std::fs::write(flag(&args, "--secret")?, format!("{}\n", &*key.to_text()))?;
            std::fs::write(flag(&args, "--public")?, format!("{}\n", key.public_key().to_text()))?;
        }
        Some("seal") => {
            let recipient =
                Recipient::from_text(&std::fs::read_to_string(flag(&args, "--recipient")?)?)?;
            let input = File::open(flag(&args, "--input")?)?;
            with_output(&flag(&args, "--output")?, |out| {
                let options = SealOptions::default();
                cloister_seal::seal_to(&[recipient], &Metadata::default(), &options, input, out)?;
                Ok(())
            })?;
        }
        Some("open") => {
            let key =
                RecipientSecretKey::from_text(&std::fs::read_to_string(flag(&args, "--secret")?)?)?;
            let input = File::open(flag(&args, "--input")?)?;
            with_output(&flag(&args, "--output")?, |out| {
                cloister_seal::open_with(&key, input, out)?;
                Ok(())
            })?;
        }
        _ => return Err("usage: envelope_files keygen|seal|open …".into()),
    }
    Ok(())
}
