//! `cloister data ingest`, `profile`, `label`, `preprocess`, `seal`, `verify-manifest` and
//! `annotations`: argument glue and progress bars around the `cloister-data` crate, which holds
//! the logic (and `cloister-client`, which verifies manifests). The `annotations` subcommands'
//! clap types live here, so that `main.rs` only names them.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use cloister_data::{Format, IngestOptions, Overrides, Progress, Rejects};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest as _, Sha256};

/// Set to any value, `cloister data ingest` and `cloister data preprocess` print their peak
/// resident memory (VmHWM) to standard error when they end: the bounded-memory tests read it.
pub const PEAK_MEMORY_ENV: &str = "CLOISTER_REPORT_PEAK_MEMORY";

/// What `cloister data ingest` was asked.
#[derive(Debug)]
pub struct IngestArgs {
    /// Input files or folders.
    pub inputs: Vec<PathBuf>,
    /// The data set directory (new or empty).
    pub out: PathBuf,
    /// `auto` or a format name.
    pub format: String,
    /// Where rejected records go; without it, the first one is an error.
    pub rejects: Option<PathBuf>,
    /// `column=TYPE` overrides.
    pub types: Vec<String>,
    /// A JSON schema file of column types.
    pub schema: Option<PathBuf>,
    /// Rows per shard.
    pub shard_rows: u64,
    /// Records the types are inferred from.
    pub infer_rows: usize,
    /// Lines skipped before a CSV/TSV header.
    pub skip_lines: u64,
    /// CSV/TSV inputs have no header line.
    pub no_header: bool,
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, input: &Path, bytes: Option<u64>) {
        self.0.reset();
        self.0.set_length(bytes.unwrap_or(0));
        self.0.set_message(input.display().to_string());
    }

    fn position(&self, bytes: u64) {
        self.0.set_position(bytes);
    }
}

fn bar() -> Bar {
    if !std::io::stderr().is_terminal() {
        return Bar(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    Bar(bar)
}

/// `cloister data ingest`.
pub fn ingest(args: IngestArgs) -> Result<()> {
    let format = match args.format.as_str() {
        "auto" => None,
        other => Some(other.parse::<Format>()?),
    };
    let mut overrides = match &args.schema {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the schema file {}", path.display()))?;
            Overrides::from_schema_json(&bytes)?
        }
        None => Overrides::default(),
    };
    for argument in &args.types {
        overrides.add_argument(argument)?;
    }
    let options = IngestOptions {
        format,
        overrides,
        shard_rows: args.shard_rows.max(1),
        window: args.infer_rows.max(1),
        skip_lines: args.skip_lines,
        header: !args.no_header,
        ..IngestOptions::default()
    };
    let progress = bar();
    let mut reject_file = match &args.rejects {
        Some(path) => Some(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let rejects = match reject_file.as_mut() {
        Some(file) => Rejects::quarantine(file),
        None => Rejects::refuse(),
    };
    let result = cloister_data::ingest(&args.inputs, &args.out, &options, rejects, &progress);
    progress.0.finish_and_clear();
    if let Some(mut file) = reject_file {
        file.flush().context("writing the reject file")?;
    }
    let dataset = result?;
    println!(
        "{} rows from {} input(s) into {} ({} shard(s), {:?})",
        dataset.rows,
        dataset.inputs.len(),
        args.out.display(),
        dataset.shards.len(),
        dataset.kind
    );
    for field in &dataset.schema {
        println!("  {}: {}", field.name, field.ty);
    }
    if dataset.rejected > 0 {
        let target = args.rejects.as_deref().map_or_else(String::new, |p| p.display().to_string());
        println!("{} record(s) rejected, with their reasons in {target}", dataset.rejected);
    }
    report_peak_memory();
    Ok(())
}

/// Prints VmHWM from `/proc/self/status` when [`PEAK_MEMORY_ENV`] is set.
fn report_peak_memory() {
    if std::env::var_os(PEAK_MEMORY_ENV).is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(line) = status.lines().find(|line| line.starts_with("VmHWM:")) {
        eprintln!("{line}");
    }
}

/// `cloister data profile`.
pub fn profile(dir: &Path, html: Option<&Path>, json: bool) -> Result<()> {
    let spinner = if std::io::stderr().is_terminal() {
        let spinner =
            ProgressBar::new_spinner().with_message(format!("profiling {}", dir.display()));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner
    } else {
        ProgressBar::hidden()
    };
    let profile = cloister_data::profile(dir);
    spinner.finish_and_clear();
    let profile = profile?;
    if json {
        println!("{}", serde_json::to_string_pretty(&profile)?);
    } else {
        print!("{}", cloister_data::report::render_table(&profile));
    }
    if let Some(path) = html {
        let page = cloister_data::report::render_html(&profile, &dir.display().to_string());
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("HTML report written to {}", path.display());
    }
    Ok(())
}

/// `cloister data label`.
pub fn label(dir: &Path, rules: &Path, column: &str, out: &Path, json: bool) -> Result<()> {
    let text = std::fs::read_to_string(rules)
        .with_context(|| format!("reading the rules file {}", rules.display()))?;
    let (dataset, labelling) = cloister_data::label::label_dataset(dir, &text, column, out)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&labelling)?);
        return Ok(());
    }
    let stats = &labelling.stats;
    let share = |n: u64| if stats.rows == 0 { 0.0 } else { n as f64 * 100.0 / stats.rows as f64 };
    println!(
        "{} rows: {} covered by a rule ({:.1} %), {} labelled, {} with conflicting rules, {} \
         left unlabelled by a tie",
        stats.rows,
        stats.covered,
        share(stats.covered),
        stats.labelled,
        stats.conflicted,
        stats.tied
    );
    println!(
        "{:<24} {:<16} {:>9} {:>9} {:>9}",
        "rule", "label", "coverage", "overlaps", "conflicts"
    );
    for rule in &stats.rules {
        println!(
            "{:<24} {:<16} {:>8.1}% {:>9} {:>9}",
            rule.name,
            rule.label,
            share(rule.fired),
            rule.overlaps,
            rule.conflicts
        );
    }
    for (label, rows) in &stats.labels {
        println!("label {label}: {rows} rows");
    }
    eprintln!(
        "labelled data set written to {} ({} shards; column {column:?}; rules SHA-256 {})",
        out.display(),
        dataset.shards.len(),
        labelling.rules_sha256
    );
    Ok(())
}

/// What `cloister data preprocess` was asked.
#[derive(Debug)]
pub struct PreprocessArgs {
    /// The data set directory.
    pub dir: PathBuf,
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// The new data set directory.
    pub out: PathBuf,
    /// A `preprocessing.json` whose parameters are applied instead of fitted.
    pub fitted: Option<PathBuf>,
    /// The key file of `pseudonymize` steps.
    pub key_file: Option<PathBuf>,
    /// Print `preprocessing.json` as JSON.
    pub json: bool,
}

/// A row-count progress bar over the passes.
struct Passes(ProgressBar);

impl cloister_data::preprocess::PassProgress for Passes {
    fn pass(&self, what: &str, rows: u64) {
        self.0.reset();
        self.0.set_length(rows);
        self.0.set_message(what.to_owned());
    }

    fn rows(&self, done: u64) {
        self.0.set_position(done);
    }
}

/// `cloister data preprocess`.
pub fn preprocess(args: PreprocessArgs) -> Result<()> {
    use cloister_data::preprocess::{
        PREPROCESSING_FILE, PreprocessOptions, Preprocessing, PseudonymKey, preprocess_dataset,
    };
    let text = std::fs::read_to_string(&args.pipeline)
        .with_context(|| format!("reading the pipeline file {}", args.pipeline.display()))?;
    let fitted = match &args.fitted {
        Some(path) => Some(Preprocessing::from_json(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )?),
        None => None,
    };
    let key = match &args.key_file {
        Some(path) => Some(
            PseudonymKey::new(
                std::fs::read(path)
                    .with_context(|| format!("reading the key file {}", path.display()))?,
            )
            .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} rows {eta}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = Passes(bar);
    let options =
        PreprocessOptions { key: key.as_ref(), fitted: fitted.as_ref(), progress: &progress };
    let result = preprocess_dataset(&args.dir, &text, &args.out, options);
    progress.0.finish_and_clear();
    let (dataset, preprocessing) = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&preprocessing)?);
        report_peak_memory();
        return Ok(());
    }
    let run = &preprocessing.run;
    println!(
        "{} rows in, {} rows out, into {} ({} shard(s))",
        run.rows_in,
        run.rows_out,
        args.out.display(),
        dataset.shards.len()
    );
    println!(
        "{:<5} {:<13} {:>10} {:>10} {:>10}  fitted",
        "step", "op", "rows in", "rows out", "changed"
    );
    for (index, (step, record)) in run.steps.iter().zip(&preprocessing.steps).enumerate() {
        let fitted = match (&args.fitted, &record.fitted_rows) {
            (_, None) => String::new(),
            (Some(_), Some(_)) => "given".to_owned(),
            (None, Some(rows)) => format!("on {rows} rows"),
        };
        println!(
            "{:<5} {:<13} {:>10} {:>10} {:>10}  {fitted}",
            index + 1,
            step.op,
            step.rows_in,
            step.rows_out,
            step.changed
        );
    }
    for field in &dataset.schema {
        println!("  {}: {}", field.name, field.ty);
    }
    eprintln!(
        "pipeline SHA-256 {}; fitted parameters in {}",
        preprocessing.pipeline_sha256,
        args.out.join(PREPROCESSING_FILE).display()
    );
    report_peak_memory();
    Ok(())
}

/// How long a data set manifest verifies. It names immutable ciphertext by digest, and the jobs
/// and receipts that will name it run for as long as the data set is used, so it must outlive
/// them: 400 days covers a year of use with a margin to re-seal. An expired manifest stops
/// verifying; the owner then signs a fresh one over the same sealed shards.
const MANIFEST_VALIDITY: std::time::Duration = std::time::Duration::from_secs(400 * 86_400);

/// The signed manifest in a sealed data set's directory (compact JWS, no trailing newline: its
/// SHA-256 is that of the file).
pub const MANIFEST_FILE: &str = "manifest.jws";

/// The manifest's claims, pretty JSON for people (the JWS is what verifies).
pub const MANIFEST_CLAIMS_FILE: &str = "manifest.json";

/// What `cloister data seal` was asked.
#[derive(Debug)]
pub struct SealArgs {
    /// The data set directory.
    pub dir: PathBuf,
    /// Recipients, as `cloister seal --recipient` takes them.
    pub recipients: Vec<String>,
    /// The owner's party signing key file (either suite).
    pub owner_key: PathBuf,
    /// The data set's id: shards become objects `ID.shard-00000`, ….
    pub id: String,
    /// The sealed data set directory (new or empty).
    pub out: PathBuf,
    /// Print one JSON line.
    pub json: bool,
}

/// A reader that hashes and counts what it reads.
struct HashRead<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let done = buf.get(..read).unwrap_or_default();
        self.hash.update(done);
        self.bytes += read as u64;
        Ok(read)
    }
}

/// A writer that hashes what it writes.
struct HashWrite<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hash.update(buf.get(..written).unwrap_or_default());
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The files a seal has written so far, removed if it fails (with the output directory, when the
/// seal created it), so that a failed seal leaves no manifest and no partial shard.
struct Written {
    paths: Vec<PathBuf>,
    created_dir: Option<PathBuf>,
}

impl Written {
    fn remove(self) {
        for path in self.paths.iter().rev() {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = self.created_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Creates `name` in `dir` for writing; an existing file is never replaced.
    fn create(&mut self, dir: &Path, name: &str) -> Result<(File, PathBuf)> {
        let path = dir.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        self.paths.push(path.clone());
        Ok((file, path))
    }

    /// Moves the complete file `partial` to `name` beside it, never replacing a file there.
    fn publish(&mut self, partial: &Path, name: &str) -> Result<()> {
        let path = partial.with_file_name(name);
        std::fs::hard_link(partial, &path)
            .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
        self.paths.push(path);
        std::fs::remove_file(partial).with_context(|| format!("removing {}", partial.display()))?;
        self.paths.retain(|p| p != partial);
        Ok(())
    }

    /// Writes `bytes` to `name` in `dir` through a temporary file, synced, then published.
    fn write(&mut self, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        let (mut file, partial) = self.create(dir, &format!("{name}.partial"))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", partial.display()))?;
        self.publish(&partial, name)
    }
}

/// `cloister data seal`: every shard of a verified data set sealed as one of the owner's objects,
/// and a manifest the owner signs naming them.
pub fn seal(args: &SealArgs) -> Result<()> {
    use cloister_types::manifest::shard_object_id;
    let policy = crate::envelope::CertificatePolicy {
        ca: None,
        measurements: Vec::new(),
        tees: Vec::new(),
        accept_test_root: false,
    };
    let recipients = args
        .recipients
        .iter()
        .map(|given| crate::envelope::read_recipient(given, &policy))
        .collect::<Result<Vec<_>>>()?;
    let key = crate::parties::read_any_signing_key(&args.owner_key)?;
    let (dataset, source) = cloister_data::source::verify_dataset(&args.dir)
        .with_context(|| format!("refusing to seal the data set {}", args.dir.display()))?;
    let count = dataset.shards.len().max(1);
    if let Some(bad) = [0, count - 1]
        .into_iter()
        .map(|index| shard_object_id(&args.id, index))
        .find(|id| !cloister_types::job::is_object_id(id))
    {
        bail!(
            "--id {:?}: its shards' object id {bad:?} is not 1 to 128 letters, digits, '.', '_' \
             or '-' (not starting with '.')",
            args.id
        );
    }
    let shard_rows = dataset.shards.iter().map(|shard| shard.rows).sum::<u64>();
    ensure!(
        shard_rows == dataset.rows,
        "{}: dataset.json lists {} rows but its shards {shard_rows}",
        args.dir.display(),
        dataset.rows
    );
    let created_dir = (!args.out.exists()).then(|| args.out.clone());
    create_output_dir(&args.out)?;
    let mut written = Written { paths: Vec::new(), created_dir };
    match seal_into(args, &recipients, &key, &dataset, source, &mut written) {
        Ok(verified) => {
            let manifest = &verified.manifest;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": manifest.id,
                        "manifest_sha256": verified.sha256,
                        "shards": manifest.shards.len(),
                        "rows": manifest.rows,
                    })
                );
            } else {
                println!(
                    "sealed {} shard(s) ({} rows) of {} as {} into {}",
                    manifest.shards.len(),
                    manifest.rows,
                    args.dir.display(),
                    manifest.id,
                    args.out.display()
                );
                println!("owner {}", manifest.owner);
                println!("manifest SHA-256 {}", verified.sha256);
            }
            Ok(())
        }
        Err(error) => {
            written.remove();
            Err(error)
        }
    }
}

fn seal_into(
    args: &SealArgs,
    recipients: &[cloister_seal::Recipient],
    key: &cloister_sign::AnySigningKey,
    dataset: &cloister_data::Dataset,
    source: String,
    written: &mut Written,
) -> Result<cloister_client::VerifiedManifest> {
    use cloister_types::manifest::{
        DATASET_MANIFEST_KIND, DATASET_MANIFEST_VERSION, DatasetManifest, ManifestShard,
        PARQUET_CONTENT_TYPE, shard_object_id,
    };
    let owner = key.public_key().to_text();
    let mut shards = Vec::with_capacity(dataset.shards.len());
    for (index, shard) in dataset.shards.iter().enumerate() {
        let object_id = shard_object_id(&args.id, index);
        let (file, path) = cloister_data::source::open_shard_to_hash(&args.dir, shard)?;
        let name = format!("{object_id}.sealed");
        let (output, partial) = written.create(&args.out, &format!("{name}.partial"))?;
        let metadata = crate::parties::owned_metadata(&owner, &object_id, PARQUET_CONTENT_TYPE);
        let mut reader = HashRead { inner: file, hash: Sha256::new(), bytes: 0 };
        let mut writer =
            HashWrite { inner: BufWriter::with_capacity(1 << 20, output), hash: Sha256::new() };
        cloister_seal::seal_to(
            recipients,
            &metadata,
            &cloister_seal::SealOptions::default(),
            &mut reader,
            &mut writer,
        )
        .with_context(|| format!("sealing {}", path.display()))?;
        writer
            .inner
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("writing {}", partial.display()))?;
        // The digest recorded is that of the bytes sealed: the file must not have changed since
        // the data set was verified.
        let plaintext_sha256 = hex::encode(reader.hash.finalize());
        ensure!(
            plaintext_sha256 == shard.sha256 && reader.bytes == shard.bytes,
            "{}: changed while it was sealed (SHA-256 {plaintext_sha256}, dataset.json names {})",
            path.display(),
            shard.sha256
        );
        written.publish(&partial, &name)?;
        shards.push(ManifestShard {
            object_id,
            sha256: hex::encode(writer.hash.finalize()),
            plaintext_sha256,
            rows: shard.rows,
        });
    }
    let manifest = DatasetManifest {
        version: DATASET_MANIFEST_VERSION,
        id: args.id.clone(),
        owner,
        schema: serde_json::from_value(serde_json::to_value(&dataset.schema)?)?,
        rows: dataset.rows,
        shards,
        source,
        lineage: dataset.lineage.as_ref().map(serde_json::to_value).transpose()?,
    };
    let token = key
        .sign(DATASET_MANIFEST_KIND, &manifest, cloister_sign::unix_now(), MANIFEST_VALIDITY)
        .context("signing the manifest")?;
    // What a recipient will check, checked before anything names it.
    let verified = cloister_client::verify_manifest(
        &token,
        Some(&key.public_key()),
        cloister_sign::unix_now(),
    )
    .context("the manifest just signed does not verify")?;
    let mut claims = serde_json::to_vec_pretty(&manifest)?;
    claims.push(b'\n');
    written.write(&args.out, MANIFEST_CLAIMS_FILE, &claims)?;
    // Last: a directory with manifest.jws is a complete sealed data set.
    written.write(&args.out, MANIFEST_FILE, token.as_bytes())?;
    Ok(verified)
}

/// What `cloister data verify-manifest` was asked.
#[derive(Debug)]
pub struct VerifyManifestArgs {
    /// The manifest file (`manifest.jws`).
    pub manifest: PathBuf,
    /// A party public key file the owner must be.
    pub owner: Option<PathBuf>,
    /// A directory of sealed shards to check against the manifest.
    pub sealed: Option<PathBuf>,
    /// Print one JSON line.
    pub json: bool,
}

/// `cloister data verify-manifest`.
pub fn verify_manifest(args: &VerifyManifestArgs) -> Result<()> {
    let token = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    let owner = match &args.owner {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the owner's public key {}", path.display()))?;
            Some(
                cloister_sign::AnyVerifyingKey::from_text(text.trim())
                    .with_context(|| format!("{} is not a party public key", path.display()))?,
            )
        }
        None => None,
    };
    let verified =
        cloister_client::verify_manifest(&token, owner.as_ref(), cloister_sign::unix_now())
            .with_context(|| format!("refusing {}", args.manifest.display()))?;
    let manifest = &verified.manifest;
    if let Some(dir) = &args.sealed {
        for (index, shard) in manifest.shards.iter().enumerate() {
            let path = dir.join(format!("{}.sealed", shard.object_id));
            let file = File::open(&path)
                .with_context(|| format!("opening the sealed shard {}", path.display()))?;
            cloister_client::check_sealed_shard(manifest, index, BufReader::new(file))
                .with_context(|| format!("refusing {}", path.display()))?;
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "id": manifest.id,
                "manifest_sha256": verified.sha256,
                "owner": manifest.owner,
                "shards": manifest.shards.len(),
                "rows": manifest.rows,
                "sealed_checked": args.sealed.is_some(),
                "expires_at": verified.expires_at,
            })
        );
        return Ok(());
    }
    println!(
        "manifest {} verified: data set {}, {} rows in {} shard(s), signed by its owner {}",
        verified.sha256,
        manifest.id,
        manifest.rows,
        manifest.shards.len(),
        manifest.owner
    );
    if args.owner.is_some() {
        println!("the owner is the key you named");
    }
    println!(
        "sealed from a dataset.json with SHA-256 {}{}; valid until {} (Unix seconds)",
        manifest.source,
        if manifest.lineage.is_some() { ", a derived data set with its lineage" } else { "" },
        verified.expires_at
    );
    if let Some(dir) = &args.sealed {
        println!(
            "{} sealed shard(s) in {} match their digests, object ids and owner",
            manifest.shards.len(),
            dir.display()
        );
    }
    Ok(())
}

/// `cloister data annotations`: annotation tools' exports in, one normalised table out; several
/// annotators' tables merged with agreement and an adjudication rule.
#[derive(Debug, clap::Subcommand)]
pub enum AnnotationsCommand {
    /// Import annotation exports (Label Studio JSON, COCO, CoNLL, JSON-lines spans) into a
    /// normalised table: DIR/annotations.jsonl (item, annotator, label, span or box) and
    /// DIR/annotations.json (what was read). A malformed record stops the import with the file,
    /// the record and the field.
    Import(ImportArgs),
    /// Merge imported tables of several annotators: Cohen's (two) or Fleiss' (three or more)
    /// kappa overall and per label, and each unit adjudicated by the rule you state. Writes
    /// DIR/labels.jsonl, DIR/conflicts.jsonl (units the rule left unlabelled, with every vote)
    /// and DIR/agreement.json.
    Merge(MergeArgs),
}

/// What `cloister data annotations import` was asked.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The export files, all of one format.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Their format.
    #[arg(long, value_parser = ["label-studio", "coco", "conll", "spans"])]
    pub format: String,
    /// The annotator of records that name none (COCO without an `annotator` field, CoNLL,
    /// spans without `annotator`); default: each file's name without its extension.
    #[arg(long)]
    pub annotator: Option<String>,
    /// The output directory to create (it must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `cloister data annotations merge` was asked.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Imported tables: directories written by `import` (their annotations.jsonl) or
    /// annotations.jsonl files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// How a unit's label is decided: majority (more than half of its annotators), plurality
    /// (most votes, no tie), unanimous, or annotator:NAME (NAME's label). Undecided units stay
    /// unlabelled and go to conflicts.jsonl.
    #[arg(long)]
    pub adjudicate: String,
    /// The output directory to create (it must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the agreement statistics as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `cloister data annotations …`.
pub fn annotations(command: AnnotationsCommand) -> Result<()> {
    match command {
        AnnotationsCommand::Import(args) => import_annotations(&args),
        AnnotationsCommand::Merge(args) => merge_annotations(&args),
    }
}

/// Creates `dir`, refusing one that exists with something in it.
fn create_output_dir(dir: &Path) -> Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        anyhow::bail!(
            "{}: the output directory is not empty; name a new one with --out",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn write_file(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn import_annotations(args: &ImportArgs) -> Result<()> {
    use cloister_data::annotate::{self, ImportInput, ImportSummary};
    let format: annotate::AnnotationFormat = args.format.parse()?;
    let mut rows = Vec::new();
    let mut inputs = Vec::new();
    for path in &args.inputs {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let annotator = args.annotator.clone().or(stem).unwrap_or_else(|| "annotator".into());
        let name = path.display().to_string();
        let imported = annotate::import(format, &name, &bytes, &annotator)?;
        inputs.push(ImportInput {
            path: name,
            sha256: cloister_data::source::sha256_hex(&bytes),
            annotations: imported.rows.len() as u64,
            cancelled: imported.cancelled,
            unannotated: imported.unannotated,
        });
        rows.extend(imported.rows);
    }
    let summary = ImportSummary::new(format, inputs, &rows);
    create_output_dir(&args.out)?;
    write_file(&args.out, annotate::ANNOTATIONS_FILE, &annotate::to_json_lines(&rows)?)?;
    write_file(
        &args.out,
        annotate::IMPORT_SUMMARY_FILE,
        &format!("{}\n", serde_json::to_string_pretty(&summary)?),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!(
        "{} annotations of {} items by {} annotator(s) from {} {format} file(s)",
        summary.annotations,
        summary.items,
        summary.annotators.len(),
        summary.inputs.len()
    );
    for input in &summary.inputs {
        if input.cancelled + input.unannotated > 0 {
            println!(
                "  {}: {} cancelled annotation(s) not read, {} item(s) nobody annotated",
                input.path, input.cancelled, input.unannotated
            );
        }
    }
    for (annotator, count) in &summary.annotators {
        println!("annotator {annotator}: {count} rows");
    }
    for (kind, count) in &summary.kinds {
        println!("kind {kind}: {count} rows");
    }
    for (label, count) in &summary.labels {
        println!("label {label}: {count} rows");
    }
    eprintln!(
        "table written to {} ({})",
        args.out.join(annotate::ANNOTATIONS_FILE).display(),
        annotate::IMPORT_SUMMARY_FILE
    );
    Ok(())
}

fn merge_annotations(args: &MergeArgs) -> Result<()> {
    use cloister_data::annotate::{self, Adjudication};
    let rule: Adjudication = args.adjudicate.parse()?;
    let mut tables = Vec::new();
    for input in &args.inputs {
        let path =
            if input.is_dir() { input.join(annotate::ANNOTATIONS_FILE) } else { input.clone() };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the annotation table {}", path.display()))?;
        tables.push(annotate::read_table(&path.display().to_string(), &text)?);
    }
    let merged = annotate::merge(&tables, &rule)?;
    create_output_dir(&args.out)?;
    write_file(&args.out, annotate::LABELS_FILE, &annotate::to_json_lines(&merged.labels)?)?;
    write_file(&args.out, annotate::CONFLICTS_FILE, &annotate::to_json_lines(&merged.conflicts)?)?;
    let summary = &merged.summary;
    write_file(
        &args.out,
        annotate::AGREEMENT_FILE,
        &format!("{}\n", serde_json::to_string_pretty(summary)?),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    println!(
        "{} items, {} annotator(s): {}; adjudication: {}",
        summary.items,
        summary.annotators.len(),
        summary.annotators.join(", "),
        summary.rule
    );
    let number =
        |value: Option<f64>| value.map_or_else(|| "undefined".to_owned(), |v| format!("{v:.3}"));
    for (kind, agreement) in
        [("classes", &summary.classes), ("spans", &summary.spans), ("boxes", &summary.boxes)]
    {
        let Some(agreement) = agreement else { continue };
        let statistic = match agreement.statistic {
            Some(annotate::Statistic::Cohen) => "Cohen's kappa",
            Some(annotate::Statistic::Fleiss) => "Fleiss' kappa",
            None => "kappa",
        };
        println!(
            "{kind} (unit: {}): {statistic} {} over {} units rated by every annotator ({} \
             partial); observed {}, chance {}",
            agreement.unit,
            number(agreement.kappa),
            agreement.units,
            agreement.partial,
            number(agreement.observed),
            number(agreement.expected)
        );
        println!("  {:<24} {:>8} {:>10} {:>8}", "label", "units", "unanimous", "kappa");
        for (label, stats) in &agreement.labels {
            println!(
                "  {label:<24} {:>8} {:>10} {:>8}",
                stats.units,
                stats.unanimous,
                number(stats.kappa)
            );
        }
        println!(
            "  decided {} units, {} left unlabelled (conflicts), {} annotations written",
            agreement.decided, agreement.conflicts, agreement.written
        );
    }
    eprintln!(
        "{} adjudicated annotations in {}, {} conflicts in {}",
        merged.labels.len(),
        args.out.join(annotate::LABELS_FILE).display(),
        merged.conflicts.len(),
        args.out.join(annotate::CONFLICTS_FILE).display()
    );
    Ok(())
}
