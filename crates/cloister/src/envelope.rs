//! `cloister keygen`, `seal` and `open`: the sealed envelope as a tool of its own.
//!
//! `-` means standard input or output. `open` writes a regular file to a temporary file beside
//! `--output` and renames it only after the whole envelope authenticated, so a failed open leaves
//! nothing there. Standard output, and an existing device, FIFO or socket named by `--output`,
//! are written in place, never replaced: each chunk only after it authenticated, and a truncated
//! or altered envelope ends with an error (a non-zero exit) after the chunks that did.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use cloister_client::{Expectations, verify_enclave_certificate};
use cloister_seal::{
    BrokerRecipient, EnvelopeSecretKey, Metadata, Recipient, RecipientSecretKey, SealOptions, Suite,
};
use cloister_sign::unix_now;
use cloister_types::{Hex, TeeKind};
use indicatif::{ProgressBar, ProgressStyle};

use crate::testbed::{refuse_overwrite, write_secret};

/// Files larger than this get a progress bar (on a terminal).
const PROGRESS_THRESHOLD: u64 = 64 << 20;

/// Writes a new envelope key pair of `suite` (X25519, or SM2 for the ShangMi suite).
pub fn keygen(secret: &Path, public: &Path, suite: Suite) -> Result<()> {
    refuse_overwrite(&[secret, public])?;
    let key = EnvelopeSecretKey::generate(suite);
    write_secret(secret, format!("{}\n", &*key.to_text()).as_bytes())?;
    let public_text = key.public_key_text();
    std::fs::write(public, format!("{public_text}\n"))
        .with_context(|| format!("writing {}", public.display()))?;
    eprintln!("public key ({} suite): {public_text}", suite.name());
    Ok(())
}

/// How enclave-certificate recipients are checked before anything is sealed to them.
pub struct CertificatePolicy {
    /// The instance CA (PEM file).
    pub ca: Option<PathBuf>,
    /// Accepted measurements.
    pub measurements: Vec<Hex>,
    /// Accepted TEE kinds.
    pub tees: Vec<TeeKind>,
    /// Accept evidence under a test root the instance names (development only).
    pub accept_test_root: bool,
}

/// Reads a recipient: the key-broker recipient text itself (`cloister-broker:kb_…`), or a file
/// holding an envelope public key, a key-broker recipient, or an enclave certificate chain (PEM)
/// that must verify against `policy` first.
pub fn read_recipient(given: &str, policy: &CertificatePolicy) -> Result<Recipient> {
    // The key-broker recipient text itself (what `cloister key register` prints and `model
    // import --recipient` takes), or a file.
    if given.trim_start().starts_with(cloister_seal::BROKER_REFERENCE_PREFIX) {
        let broker = BrokerRecipient::from_text(given.trim()).with_context(|| {
            format!("--recipient {given}: not a key-broker recipient (what `cloister key register` prints)")
        })?;
        return Ok(broker.recipient());
    }
    let path = Path::new(given);
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.contains("-----BEGIN CERTIFICATE-----") {
        let Some(ca) = &policy.ca else {
            bail!(
                "{} is an enclave certificate: give the instance CA with --ca and the accepted \
                 measurements with --measurement so it can be verified",
                path.display()
            );
        };
        let ca_pem =
            std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
        let expectations =
            Expectations::from_ca_pem(&ca_pem, policy.measurements.clone(), policy.tees.clone())?
                .accepting_test_roots(policy.accept_test_root);
        let chain = cloister_client::enclave::pem_certificates(&text)?;
        let enclave = verify_enclave_certificate(&chain, &expectations, unix_now())
            .with_context(|| format!("refusing to seal to {}", path.display()))?;
        eprintln!(
            "recipient {}: verified {} enclave, measurement {}",
            path.display(),
            enclave.claims.tee,
            enclave.claims.measurement
        );
        return Ok(enclave.hpke_pk);
    }
    // A key-broker reference (`cloister-broker:kb_…:…`, what `cloister key register` prints)
    // seals to the broker key with recipient kind 2; anything else must be a public key.
    if text.trim_start().starts_with(cloister_seal::BROKER_REFERENCE_PREFIX) {
        let broker = BrokerRecipient::from_text(text.trim())
            .with_context(|| format!("reading the key-broker reference in {}", path.display()))?;
        return Ok(broker.recipient());
    }
    Recipient::from_text(&text)
        .with_context(|| format!("reading the public key in {}", path.display()))
}

fn progress(len: Option<u64>, verb: &str) -> ProgressBar {
    match len {
        Some(len) if len >= PROGRESS_THRESHOLD && io::stderr().is_terminal() => {
            let bar = ProgressBar::new(len).with_message(verb.to_owned());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        }
        _ => ProgressBar::hidden(),
    }
}

/// The input, unbuffered for a file: the envelope reads whole chunks and batches of chunks
/// straight into the buffers it seals or opens them in, so a buffer here would only add a copy.
fn input(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(io::stdin().lock()), None));
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), len))
}

/// Seals `input` to every recipient.
pub fn seal(recipients: &[Recipient], input_path: &Path, output: &Path) -> Result<()> {
    if recipients.is_empty() {
        bail!("give at least one --recipient");
    }
    let (reader, len) = input(input_path)?;
    let bar = progress(len, "sealing");
    let metadata = Metadata::default();
    let reader = bar.wrap_read(reader);
    with_output(output, |writer| {
        cloister_seal::seal_to(recipients, &metadata, &SealOptions::default(), reader, writer)
            .map(|_| ())
            .map_err(Into::into)
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// Opens an envelope of either suite with `key`; on any failure nothing is left at `output`.
pub fn open(key: &EnvelopeSecretKey, input_path: &Path, output: &Path) -> Result<()> {
    let (reader, len) = input(input_path)?;
    let bar = progress(len, "opening");
    let reader = bar.wrap_read(reader);
    with_output(output, |writer| {
        cloister_seal::open_with(key, reader, writer).map(|_| ()).map_err(Into::into)
    })
    .with_context(|| format!("could not open {}", input_path.display()))?;
    bar.finish_and_clear();
    Ok(())
}

/// Reads an envelope secret key file of either suite (what `cloister open` takes).
pub fn read_envelope_secret(path: &Path) -> Result<EnvelopeSecretKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    Ok(EnvelopeSecretKey::from_text(&text)?)
}

/// Reads an X25519 secret key file (what enclaves and parties use).
pub fn read_secret(path: &Path) -> Result<RecipientSecretKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    Ok(RecipientSecretKey::from_text(&text)?)
}

/// Runs `write` against `output`: stdout for `-`; an existing file that is not a regular file
/// (a device, a FIFO, a socket) in place, never replacing it; else a temporary file beside
/// `output` (or beside the file a symbolic link names) that is renamed into place only if
/// `write` succeeds (and removed otherwise).
fn with_output(output: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    if output == Path::new("-") {
        let stdout = io::stdout();
        let mut writer = BufWriter::with_capacity(1 << 20, stdout.lock());
        write(&mut writer)?;
        writer.flush()?;
        return Ok(());
    }
    let target = match std::fs::metadata(output) {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(output)
                .with_context(|| format!("opening {}", output.display()))?;
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            write(&mut writer)?;
            writer.flush().with_context(|| format!("writing {}", output.display()))?;
            return Ok(());
        }
        Ok(meta) if meta.is_dir() => bail!("{} is a directory", output.display()),
        // A symbolic link to a regular file: replace the file it names, not the link.
        Ok(_) if output.is_symlink() => std::fs::canonicalize(output)
            .with_context(|| format!("resolving {}", output.display()))?,
        _ => output.to_owned(),
    };
    let output = target.as_path();
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".cloister-partial-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // Unbuffered: the envelope writes the header once, then whole batches of chunks (one
    // vectored write each when opening), so a buffer would only add a copy.
    write(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(output).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}
