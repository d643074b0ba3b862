//! Ingest: records from the inputs, their schema inferred from the first rows (or set), each
//! record converted to its columns' types and written to Parquet shards; a record that cannot
//! be converted stops ingest with its file, row and column, or goes to the reject file with the
//! reason. Nothing is dropped without a count: `dataset.json` records rows and rejections.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Location, Problem};
use crate::records::{Delimited, Raw, RawRecord, RecordReader, Rejected, json_cell};
use crate::schema::{Cell, ColumnType, Field, Overrides, Value, convert, infer};
use crate::shard::{ColumnStats, ShardInfo, ShardStore, ShardWriter};
use crate::source::{self, DirStore, ImageLimits, Tally};

/// The version of the `dataset.json` layout this crate writes and reads.
pub const DATASET_VERSION: u32 = 1;
/// The name of a data set's description inside its directory.
pub const DATASET_FILE: &str = "dataset.json";

/// An input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// Tab-separated values with a header line.
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC, file or stream.
    Arrow,
    /// A folder of UTF-8 text documents, one record per file.
    Text,
    /// A folder of PNG and JPEG images, one record per file.
    Images,
}

impl std::str::FromStr for Format {
    type Err = DataError;

    fn from_str(text: &str) -> Result<Self, DataError> {
        Ok(match text {
            "csv" => Self::Csv,
            "tsv" => Self::Tsv,
            "jsonl" => Self::Jsonl,
            "parquet" => Self::Parquet,
            "arrow" => Self::Arrow,
            "text" => Self::Text,
            "images" => Self::Images,
            other => {
                return Err(DataError::Input(format!(
                    "unknown format {other:?} (csv, tsv, jsonl, parquet, arrow, text, images)"
                )));
            }
        })
    }
}

/// What a data set's records are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Rows of a table.
    Table,
    /// Text documents: `path`, `text`, `bytes`, `sha256`.
    Documents,
    /// Images: `path`, `width`, `height`, `channels`, `bytes`, `sha256`.
    Images,
}

/// How to ingest.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// The inputs' format; `None` tells it from the file extension or the folder's content.
    pub format: Option<Format>,
    /// Type overrides by column name.
    pub overrides: Overrides,
    /// Rows per shard (at least 1).
    pub shard_rows: u64,
    /// Records the column types are inferred from.
    pub window: usize,
    /// Lines skipped before a CSV/TSV header.
    pub skip_lines: u64,
    /// Whether CSV/TSV inputs have a header line (without one, columns are `column_1`…).
    pub header: bool,
    /// Limits on images, checked on the declared dimensions before decoding.
    pub image_limits: ImageLimits,
    /// The largest text document taken as one record.
    pub max_document_bytes: u64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            format: None,
            overrides: Overrides::default(),
            shard_rows: 1_000_000,
            window: 1000,
            skip_lines: 0,
            header: true,
            image_limits: ImageLimits::default(),
            max_document_bytes: 64 << 20,
        }
    }
}

/// Progress of a long ingest, for a progress bar.
pub trait Progress {
    /// An input of `bytes` bytes (when known) is started.
    fn start(&self, _input: &Path, _bytes: Option<u64>) {}
    /// Bytes of the current input read so far.
    fn position(&self, _bytes: u64) {}
}

/// No progress display.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

/// One input of a data set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputInfo {
    /// The path as given.
    pub path: String,
    /// SHA-256 of the file, hex; for a folder, of its `sha256sum`-style listing (one
    /// `DIGEST  RELATIVE/PATH` line per regular file, sorted by path).
    pub sha256: String,
    /// Its size in bytes (a folder: its regular files together).
    pub bytes: u64,
    /// Records taken from it.
    pub rows: u64,
    /// Records rejected from it.
    pub rejected: u64,
}

/// A data set's description, `dataset.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// [`DATASET_VERSION`].
    pub version: u32,
    /// What the records are.
    pub kind: Kind,
    /// The inputs' format.
    pub format: Format,
    /// The columns and their types.
    pub schema: Vec<Field>,
    /// Records in the shards.
    pub rows: u64,
    /// Records rejected (written to the reject file).
    pub rejected: u64,
    /// The inputs, in order.
    pub inputs: Vec<InputInfo>,
    /// The shards, in order.
    pub shards: Vec<ShardInfo>,
    /// Statistics per column, in schema order.
    pub columns: Vec<ColumnStats>,
    /// How a derived data set was made from its input (a preprocessing pipeline); absent for
    /// ingested and labelled data sets, whose inputs say where they come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<crate::preprocess::Lineage>,
}

impl Dataset {
    /// A data set derived from `source` (read from `dir`, whose `dataset.json` has SHA-256
    /// `described`) with `fields`, `rows`, `shards` and `columns` of its own: its one input is
    /// the source, named by that digest.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn derived(
        source: &Dataset,
        dir: &Path,
        described: String,
        fields: Vec<Field>,
        rows: u64,
        shards: Vec<ShardInfo>,
        columns: Vec<ColumnStats>,
        lineage: Option<crate::preprocess::Lineage>,
    ) -> Dataset {
        Dataset {
            version: DATASET_VERSION,
            kind: source.kind,
            format: source.format,
            schema: fields,
            rows,
            rejected: 0,
            inputs: vec![InputInfo {
                path: dir.display().to_string(),
                sha256: described,
                bytes: source.shards.iter().map(|s| s.bytes).sum(),
                rows: source.rows,
                rejected: 0,
            }],
            shards,
            columns,
            lineage,
        }
    }
}

/// One line of the reject file.
#[derive(Serialize)]
struct RejectLine<'a> {
    #[serde(flatten)]
    at: &'a Location,
    reason: String,
}

/// Where rejected records go: a reject file (JSON lines), or nowhere, which makes the first one
/// an error.
pub struct Rejects<'a>(Option<&'a mut dyn Write>);

impl<'a> Rejects<'a> {
    /// Rejections stop ingest with an error.
    pub fn refuse() -> Self {
        Self(None)
    }

    /// Rejections are written to `file` as JSON lines `{"file", "row", "column", "reason"}`.
    pub fn quarantine(file: &'a mut dyn Write) -> Self {
        Self(Some(file))
    }

    fn take(&mut self, at: Location, problem: Problem) -> Result<(), DataError> {
        let Some(file) = self.0.as_mut() else {
            return Err(DataError::Record { at, problem });
        };
        let line = RejectLine { at: &at, reason: problem.to_string() };
        let mut text = serde_json::to_vec(&line)
            .map_err(|error| DataError::Input(format!("reject line: {error}")))?;
        text.push(b'\n');
        file.write_all(&text).map_err(|error| DataError::io("the reject file", error))
    }
}

/// Ingests `inputs` into the empty (or new) directory `out`: shards `shard-NNNNN.parquet` and,
/// last, `dataset.json`. A failed ingest leaves no `dataset.json`.
pub fn ingest(
    inputs: &[PathBuf],
    out: &Path,
    options: &IngestOptions,
    mut rejects: Rejects<'_>,
    progress: &dyn Progress,
) -> Result<Dataset, DataError> {
    let format = match options.format {
        Some(format) => format,
        None => source::detect_format(inputs)?,
    };
    let store = DirStore::create(out)?;
    let dataset = match format {
        Format::Text | Format::Images => {
            ingest_folders(inputs, format, store, options, &mut rejects, progress)?
        }
        _ => ingest_table(inputs, format, store, options, &mut rejects, progress)?,
    };
    source::write_dataset(out, &dataset)?;
    Ok(dataset)
}

struct Table<'r, 'w, S: ShardStore> {
    inputs: Vec<InputInfo>,
    fields: Vec<Field>,
    sink: Option<ShardWriter<S>>,
    rejects: &'r mut Rejects<'w>,
    rejected: u64,
}

impl<S: ShardStore> Table<'_, '_, S> {
    fn reject(&mut self, input: usize, at: Rejected) -> Result<(), DataError> {
        let file = self.inputs.get(input).map(|info| info.path.clone()).unwrap_or_default();
        self.rejects.take(Location { file, row: at.row, column: at.column }, at.problem)?;
        self.rejected += 1;
        if let Some(info) = self.inputs.get_mut(input) {
            info.rejected += 1;
        }
        Ok(())
    }

    /// Converts a record to the schema's types and writes it, or rejects it.
    fn emit(&mut self, input: usize, record: RawRecord) -> Result<(), DataError> {
        let row = record.row;
        let cells = match record.raw {
            Raw::Cells(cells) => cells,
            Raw::Object(mut object) => {
                let cells = self
                    .fields
                    .iter()
                    .map(|field| object.remove(&field.name).map_or(Cell::Missing, json_cell))
                    .collect();
                if let Some(key) = object.keys().next() {
                    let column = Some(key.clone());
                    return self
                        .reject(input, Rejected { row, column, problem: Problem::UnknownKey });
                }
                cells
            }
        };
        let mut values = Vec::with_capacity(cells.len());
        for (cell, field) in cells.into_iter().zip(&self.fields) {
            match convert(cell, field.ty) {
                Ok(value) => values.push(value),
                Err(problem) => {
                    let column = Some(field.name.clone());
                    return self.reject(input, Rejected { row, column, problem });
                }
            }
        }
        if let Some(sink) = &mut self.sink {
            sink.push(&values)?;
        }
        if let Some(info) = self.inputs.get_mut(input) {
            info.rows += 1;
        }
        Ok(())
    }
}

fn ingest_table(
    paths: &[PathBuf],
    format: Format,
    store: DirStore,
    options: &IngestOptions,
    rejects: &mut Rejects<'_>,
    progress: &dyn Progress,
) -> Result<Dataset, DataError> {
    let mut table = Table {
        inputs: Vec::with_capacity(paths.len()),
        fields: Vec::new(),
        sink: None,
        rejects,
        rejected: 0,
    };
    let mut store = Some(store);
    let mut declared: Option<Vec<String>> = None;
    let mut types: Option<Vec<ColumnType>> = None;
    let mut window: Vec<(usize, RawRecord)> = Vec::new();
    let layout =
        |delimiter| Delimited { delimiter, skip_lines: options.skip_lines, header: options.header };
    for (index, path) in paths.iter().enumerate() {
        let name = path.display().to_string();
        let (mut reader, tally): (Box<dyn RecordReader>, Tally) = match format {
            Format::Csv => source::open_delimited(path, layout(b','))?,
            Format::Tsv => source::open_delimited(path, layout(b'\t'))?,
            Format::Jsonl => source::open_json_lines(path)?,
            Format::Parquet => source::open_parquet(path, progress)?,
            Format::Arrow => source::open_arrow(path, progress)?,
            Format::Text | Format::Images => {
                return Err(DataError::Input(format!("{name}: a folder format for a table")));
            }
        };
        progress.start(path, tally.size());
        if types.is_none() {
            types = reader.types();
        }
        if let Some(columns) = reader.columns() {
            match &declared {
                None => declared = Some(columns.to_vec()),
                Some(expected) if expected.as_slice() != columns => {
                    return Err(DataError::ColumnsDiffer {
                        file: name,
                        expected: expected.clone(),
                        found: columns.to_vec(),
                    });
                }
                Some(_) => {}
            }
        }
        table.inputs.push(InputInfo {
            path: name,
            sha256: String::new(),
            bytes: 0,
            rows: 0,
            rejected: 0,
        });
        let mut seen = 0_u64;
        while let Some(next) = reader.next_record()? {
            seen += 1;
            if seen.is_multiple_of(4096) {
                progress.position(tally.bytes());
            }
            match next {
                Err(rejected) => table.reject(index, rejected)?,
                Ok(record) if table.sink.is_some() => table.emit(index, record)?,
                Ok(record) => {
                    window.push((index, record));
                    if window.len() >= options.window.max(1) {
                        start(
                            &mut table,
                            &mut store,
                            declared.as_deref(),
                            types.as_deref(),
                            &mut window,
                            options,
                        )?;
                    }
                }
            }
        }
        drop(reader);
        let (sha256, bytes) = tally.finish(path)?;
        progress.position(bytes);
        if let Some(info) = table.inputs.last_mut() {
            info.sha256 = sha256;
            info.bytes = bytes;
        }
    }
    if table.sink.is_none() {
        start(&mut table, &mut store, declared.as_deref(), types.as_deref(), &mut window, options)?;
    }
    let sink = table.sink.take().ok_or_else(|| DataError::Input("no shard writer".into()))?;
    let rows = sink.rows();
    let (shards, columns, _) = sink.finish()?;
    Ok(Dataset {
        version: DATASET_VERSION,
        kind: Kind::Table,
        format,
        schema: table.fields,
        rows,
        rejected: table.rejected,
        inputs: table.inputs,
        shards,
        columns,
        lineage: None,
    })
}

/// Ends the inference window: fixes the schema, opens the shard writer and writes the window.
fn start<S: ShardStore>(
    table: &mut Table<'_, '_, S>,
    store: &mut Option<S>,
    declared: Option<&[String]>,
    declared_types: Option<&[ColumnType]>,
    window: &mut Vec<(usize, RawRecord)>,
    options: &IngestOptions,
) -> Result<(), DataError> {
    let columns: Vec<String> = match declared {
        Some(columns) => columns.to_vec(),
        None => {
            let mut keys: Vec<String> = Vec::new();
            for (_, record) in window.iter() {
                if let Raw::Object(object) = &record.raw {
                    for key in object.keys() {
                        if !keys.contains(key) {
                            keys.push(key.clone());
                        }
                    }
                }
            }
            keys
        }
    };
    let cells: Vec<Vec<Cell>> = window
        .iter()
        .map(|(_, record)| match &record.raw {
            Raw::Cells(cells) => cells.clone(),
            Raw::Object(object) => columns
                .iter()
                .map(|name| object.get(name).cloned().map_or(Cell::Missing, json_cell))
                .collect(),
        })
        .collect();
    let mut fields = match declared_types {
        // A columnar input declares its types: inference from its values could only narrow
        // them (a float column of whole numbers is still a float column).
        Some(types) => columns
            .iter()
            .zip(types)
            .map(|(name, ty)| Field { name: name.clone(), ty: *ty })
            .collect(),
        None => infer(&columns, &cells),
    };
    options.overrides.apply(&mut fields)?;
    let store = store.take().ok_or_else(|| DataError::Input("shard store used twice".into()))?;
    table.sink = Some(ShardWriter::new(store, &fields, options.shard_rows));
    table.fields = fields;
    for (index, record) in window.drain(..) {
        table.emit(index, record)?;
    }
    Ok(())
}

fn ingest_folders(
    paths: &[PathBuf],
    format: Format,
    store: DirStore,
    options: &IngestOptions,
    rejects: &mut Rejects<'_>,
    progress: &dyn Progress,
) -> Result<Dataset, DataError> {
    let (kind, fields) = if format == Format::Images {
        (Kind::Images, source::image_fields())
    } else {
        (Kind::Documents, source::document_fields())
    };
    let mut sink = ShardWriter::new(store, &fields, options.shard_rows);
    let mut inputs = Vec::with_capacity(paths.len());
    let mut rejected = 0;
    for path in paths {
        let name = path.display().to_string();
        let entries = source::list_folder(path)?;
        let total: u64 = entries.iter().map(|entry| entry.size).sum();
        progress.start(path, Some(total));
        let mut info =
            InputInfo { path: name.clone(), sha256: String::new(), bytes: 0, rows: 0, rejected: 0 };
        let mut listing = String::new();
        let mut done = 0;
        for (index, entry) in entries.iter().enumerate() {
            let row = index as u64 + 1;
            let outcome = if format == Format::Images {
                source::read_image(entry, &options.image_limits)?
            } else {
                source::read_document(entry, options.max_document_bytes)?
            };
            if let Some(digest) = &outcome.sha256 {
                listing.push_str(&format!("{digest}  {}\n", entry.relative));
                info.bytes += entry.size;
            }
            done += entry.size;
            progress.position(done);
            match outcome.values {
                Ok(values) => {
                    sink.push(&values)?;
                    info.rows += 1;
                }
                Err((column, problem)) => {
                    let file = format!("{name}/{}", entry.relative);
                    rejects
                        .take(Location { file, row, column: column.map(str::to_owned) }, problem)?;
                    info.rejected += 1;
                    rejected += 1;
                }
            }
        }
        info.sha256 = source::sha256_hex(listing.as_bytes());
        inputs.push(info);
    }
    let rows = sink.rows();
    let (shards, columns, _) = sink.finish()?;
    Ok(Dataset {
        version: DATASET_VERSION,
        kind,
        format,
        schema: fields,
        rows,
        rejected,
        inputs,
        shards,
        columns,
        lineage: None,
    })
}

/// The values of a document or image record, for [`source`]'s readers.
pub(crate) type RecordValues = Result<Vec<Value>, (Option<&'static str>, Problem)>;
