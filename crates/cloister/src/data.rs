//! `cloister data ingest`, `profile`, `label`, `preprocess` and `annotations`: argument glue and progress bars
//! around the `cloister-data` crate, which holds the logic. The `annotations` subcommands' clap
//! types live here, so that `main.rs` only names them.

use std::fs::File;
use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use cloister_data::{Format, IngestOptions, Overrides, Progress, Rejects};
use indicatif::{ProgressBar, ProgressStyle};

/// Set to any value, `cloister data ingest` prints its peak resident memory (VmHWM) to standard
/// error when it ends: the bounded-memory test reads it.
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
