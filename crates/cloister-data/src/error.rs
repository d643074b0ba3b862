//! The crate's errors: where a record went wrong (file, 1-based row, column) and why.

use std::fmt;
use std::path::PathBuf;

use crate::schema::ColumnType;

/// Where in the input a record problem is: the file (as given), the 1-based row (the line a
/// record starts on for CSV, TSV and JSON lines, where a CSV header is line 1; the record's
/// position for Parquet and Arrow; the file's position in a folder), and the column when one
/// column is at fault.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// The input file.
    pub file: String,
    /// The 1-based row or line.
    pub row: u64,
    /// The column's name, when the problem is in one column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, row {}", self.file, self.row)?;
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        Ok(())
    }
}

/// Why one record cannot enter the data set. With a reject file these are quarantined there,
/// otherwise ingest stops with [`DataError::Record`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Problem {
    /// A CSV/TSV row with another number of fields than the header.
    #[error("expected {expected} fields (as in the header), found {found}")]
    Ragged {
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// Bytes that are not UTF-8 in a text field.
    #[error("invalid UTF-8 at byte {offset} of the field")]
    InvalidUtf8 {
        /// Offset of the first invalid byte within the field (or line, or file).
        offset: usize,
    },
    /// A value that does not fit its column's type (inferred from the first rows, or set).
    #[error("value {value:?} is not of the column's type {expected}")]
    TypeMismatch {
        /// The column's type.
        expected: ColumnType,
        /// The value, shortened to 40 characters.
        value: String,
    },
    /// A JSON line that is not a JSON object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// A JSON key that none of the inference window's records had.
    #[error("a key that is not in the schema (keys are taken from the first records)")]
    UnknownKey,
    /// A file in an image folder that is not a PNG or JPEG image that decodes.
    #[error("unreadable image: {0}")]
    Image(String),
    /// An image whose declared dimensions exceed the limits: refused before decoding.
    #[error(
        "image declares {width}x{height} pixels, over the limit of {max_pixels} pixels or \
         {max_side} per side (a decompression bomb is refused before decoding)"
    )]
    ImageTooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Largest accepted width × height.
        max_pixels: u64,
        /// Largest accepted width or height.
        max_side: u32,
    },
    /// A document larger than the limit for one record.
    #[error("file of {size} bytes is over the limit of {limit} bytes for one document")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A folder entry that is not a regular file (a link, a device): never followed.
    #[error("not a regular file (links are not followed)")]
    NotAFile,
}

/// An error of ingest or profile.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A record that cannot enter the data set, and no reject file to put it in.
    #[error("{at}: {problem}")]
    Record {
        /// Where.
        at: Location,
        /// Why.
        problem: Problem,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A CSV/TSV header line that cannot be used.
    #[error("{file}: header: {reason}")]
    Header {
        /// The input file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two inputs of one ingest whose columns differ.
    #[error("{file}: columns {found:?} differ from the first input's {expected:?}")]
    ColumnsDiffer {
        /// The input whose columns differ.
        file: String,
        /// The first input's columns.
        expected: Vec<String>,
        /// This input's columns.
        found: Vec<String>,
    },
    /// A Parquet or Arrow input that cannot be read.
    #[error("{file}: {reason}")]
    Columnar {
        /// The input file.
        file: String,
        /// What failed.
        reason: String,
    },
    /// A Parquet or Arrow column of a type this pipeline does not take.
    #[error("{file}: column {column}: unsupported type {data_type}")]
    UnsupportedType {
        /// The input file.
        file: String,
        /// The column.
        column: String,
        /// Its Arrow type.
        data_type: String,
    },
    /// A schema override (`--type`, `--schema`) that is malformed or names no column.
    #[error("schema override: {0}")]
    Override(String),
    /// The inputs cannot be used together, or their format cannot be told.
    #[error("input: {0}")]
    Input(String),
    /// The output directory exists and is not empty.
    #[error("{}: the output directory is not empty", .0.display())]
    OutputNotEmpty(PathBuf),
    /// Writing a Parquet shard failed.
    #[error("writing shard {shard}: {reason}")]
    Shard {
        /// The shard's file name.
        shard: String,
        /// What failed.
        reason: String,
    },
    /// A data set directory whose `dataset.json` or shards are not what it says.
    #[error("data set: {0}")]
    Dataset(String),
    /// Labelling rules that cannot be used on this data set.
    #[error("labelling rules: {0}")]
    Rules(String),
    /// An annotation file (an annotation tool's export, or a normalised table) that cannot be
    /// read: the file, the record (task, annotation, line) and the field at fault.
    #[error("{file}: {at}: {reason}")]
    Annotation {
        /// The file, as given.
        file: String,
        /// The record and field.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// Annotation tables that cannot be merged as asked.
    #[error("merging annotations: {0}")]
    Merge(String),
    /// A preprocessing pipeline (or fitted parameters) that cannot be used on this data set:
    /// the step (1-based, with its op) and why.
    #[error("preprocessing: {0}")]
    Pipeline(String),
    /// A row a preprocessing step cannot transform: the shard, its 1-based row and the column,
    /// then the step and why.
    #[error("{at}: {reason}")]
    Transform {
        /// The shard, row and column.
        at: Location,
        /// The step and what is wrong.
        reason: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Shortens a value for an error message: at most 40 characters, an ellipsis if cut.
pub(crate) fn shorten(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(40).collect();
    if chars.next().is_some() { format!("{head}…") } else { head }
}
