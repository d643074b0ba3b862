//! `cloister data`: the data pipeline's commands (ingest, profile, label, preprocess, seal,
//! verify-manifest, annotations).

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum DataCommand {
    /// Ingest CSV, TSV, JSON lines, Parquet, Arrow IPC, or folders of text documents or images
    /// into a data set directory, streaming in bounded memory.
    Ingest {
        /// Input files (all of one format) or folders.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The data set directory to create (it must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// auto, csv, tsv, jsonl, parquet, arrow, text or images.
        #[arg(long, default_value = "auto")]
        format: String,
        /// Quarantine bad records to this JSON-lines file with their reason instead of
        /// stopping at the first.
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Set a column's type: COLUMN=int|float|string|bool. Repeatable.
        #[arg(long = "type")]
        types: Vec<String>,
        /// A JSON object of column names to types (`--type` wins over it).
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Rows per Parquet shard.
        #[arg(long, default_value_t = 1_000_000)]
        shard_rows: u64,
        /// Records the column types are inferred from.
        #[arg(long, default_value_t = 1000)]
        infer_rows: usize,
        /// Lines to skip before a CSV/TSV header (or data, with --no-header).
        #[arg(long, default_value_t = 0)]
        skip_lines: u64,
        /// CSV/TSV inputs have no header line: columns are column_1, column_2, ….
        #[arg(long)]
        no_header: bool,
    },
    /// Profile a data set: types, missing and distinct counts, distributions, identifiers and
    /// personal data; a table here and, with --html, a self-contained HTML report.
    Profile {
        /// The data set directory.
        dir: PathBuf,
        /// Write an HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Print the profile as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Label a data set with rules (conditions on columns, regular expressions on text; a TOML
    /// file, docs/data.md): the majority of the rules that fire labels a row, a tie leaves it
    /// unlabelled. Writes a new data set with the label column, and prints each rule's
    /// coverage, overlaps and conflicts.
    Label {
        /// The data set directory.
        dir: PathBuf,
        /// The rules file (TOML, `[[rule]]` tables with name, label and when).
        #[arg(long)]
        rules: PathBuf,
        /// The labelled data set directory to create (it must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// The name of the label column.
        #[arg(long, default_value = "label")]
        column: String,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Preprocess a data set with a declared pipeline (a TOML file of steps, docs/data.md):
    /// steps that need statistics are fitted on the data set, or taken from --fitted. Writes a
    /// new data set whose lineage names the input, the pipeline and the fitted parameters
    /// (preprocessing.json beside its dataset.json).
    Preprocess {
        /// The data set directory.
        dir: PathBuf,
        /// The pipeline file (TOML: `version = 1`, then `[[step]]` tables with `op`).
        #[arg(long)]
        pipeline: PathBuf,
        /// The preprocessed data set directory to create (it must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Apply the parameters fitted by an earlier run (its preprocessing.json) instead of
        /// fitting them on this data set.
        #[arg(long)]
        fitted: Option<PathBuf>,
        /// The key of `pseudonymize` steps: the file's bytes, at least 16 (never written out).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Print preprocessing.json (fitted parameters and what each step did) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Seal a data set for enclaves: verify every shard against dataset.json, seal each as the
    /// owner's object ID.shard-00000, … (Parquet) to the recipients, and write a manifest the
    /// owner signs (manifest.jws; its claims in manifest.json) naming each sealed shard by the
    /// SHA-256 of its ciphertext and of its plaintext, the schema, the rows, the source
    /// dataset.json and its lineage. Prints the manifest's SHA-256.
    Seal {
        /// The data set directory.
        dir: PathBuf,
        /// A public key file, or a key-broker recipient (its text `cloister-broker:kb_…`, or a
        /// file holding it), as `cloister seal` takes them. Repeat for several.
        #[arg(long = "recipient", required = true, value_name = "FILE|BROKER-RECIPIENT")]
        recipients: Vec<String>,
        /// The owner's party signing key (`cloister keygen --signing [--suite sm]`): the sealed
        /// objects' owner and the manifest's signer.
        #[arg(long)]
        owner_key: PathBuf,
        /// The data set's id: its shards become the objects ID.shard-00000, … (letters, digits,
        /// '.', '_', '-').
        #[arg(long)]
        id: String,
        /// The sealed data set directory to create (it must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Print one JSON line: id, manifest_sha256, shards, rows.
        #[arg(long)]
        json: bool,
    },
    /// Verify a sealed data set's manifest: its signature with the key of the owner it names
    /// (and that this owner is --owner), its structure, and with --sealed each sealed shard's
    /// SHA-256 and envelope header (object id, owner).
    VerifyManifest {
        /// The manifest (manifest.jws).
        manifest: PathBuf,
        /// The owner's party public key file: the manifest must be this owner's.
        #[arg(long)]
        owner: Option<PathBuf>,
        /// The directory of the sealed shards (ID.shard-00000.sealed, …) to check.
        #[arg(long)]
        sealed: Option<PathBuf>,
        /// Print one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Import annotation tools' exports; merge annotators with agreement and adjudication.
    #[command(subcommand)]
    Annotations(cloister::data::AnnotationsCommand),
}

pub(crate) fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Ingest {
            inputs,
            out,
            format,
            rejects,
            types,
            schema,
            shard_rows,
            infer_rows,
            skip_lines,
            no_header,
        } => cloister::data::ingest(cloister::data::IngestArgs {
            inputs,
            out,
            format,
            rejects,
            types,
            schema,
            shard_rows,
            infer_rows,
            skip_lines,
            no_header,
        }),
        DataCommand::Profile { dir, html, json } => {
            cloister::data::profile(&dir, html.as_deref(), json)
        }
        DataCommand::Label { dir, rules, out, column, json } => {
            cloister::data::label(&dir, &rules, &column, &out, json)
        }
        DataCommand::Preprocess { dir, pipeline, out, fitted, key_file, json } => {
            cloister::data::preprocess(cloister::data::PreprocessArgs {
                dir,
                pipeline,
                out,
                fitted,
                key_file,
                json,
            })
        }
        DataCommand::Seal { dir, recipients, owner_key, id, out, json } => {
            cloister::data::seal(&cloister::data::SealArgs {
                dir,
                recipients,
                owner_key,
                id,
                out,
                json,
            })
        }
        DataCommand::VerifyManifest { manifest, owner, sealed, json } => {
            cloister::data::verify_manifest(&cloister::data::VerifyManifestArgs {
                manifest,
                owner,
                sealed,
                json,
            })
        }
        DataCommand::Annotations(command) => cloister::data::annotations(command),
    }
}
