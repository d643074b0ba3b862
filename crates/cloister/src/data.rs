//! `cloister data ingest` and `cloister data profile`: argument glue and progress bars around
//! the `cloister-data` crate, which holds the logic.

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
