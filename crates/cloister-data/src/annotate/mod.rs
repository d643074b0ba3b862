//! Annotations from annotation tools: import Label Studio, COCO, CoNLL and JSON-lines span
//! exports into one normalised table ([`Annotation`] rows, written as JSON lines), and merge the
//! tables of several annotators with agreement statistics (Cohen's or Fleiss' kappa) and a
//! stated adjudication rule ([`merge`]).
//!
//! Everything here works on bytes and strings; the `cloister` binary reads and writes the files.
//! Every malformed record is an error naming the file, the record (task, annotation, line) and
//! the field; nothing is dropped silently.

mod agreement;
mod formats;
mod merge;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::DataError;

pub use agreement::{Kappa, Statistic, kappa};
pub use formats::{COCO_EDGE_TOLERANCE, import};
pub use merge::{
    ADJUDICATED, Adjudication, Agreement, Conflict, IOU_THRESHOLD, LabelAgreement, MAX_POSITIONS,
    MergeSummary, Merged, merge,
};

/// The normalised table [`import`] writes: one JSON line per [`Annotation`].
pub const ANNOTATIONS_FILE: &str = "annotations.jsonl";
/// The import's summary beside it ([`ImportSummary`]).
pub const IMPORT_SUMMARY_FILE: &str = "annotations.json";
/// The adjudicated annotations [`merge`] writes (same rows, annotator `adjudicated`).
pub const LABELS_FILE: &str = "labels.jsonl";
/// Units the adjudication rule left unlabelled, with every annotator's vote.
pub const CONFLICTS_FILE: &str = "conflicts.jsonl";
/// The merge's agreement statistics ([`MergeSummary`]).
pub const AGREEMENT_FILE: &str = "agreement.json";

/// An annotation tool's export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnnotationFormat {
    /// Label Studio's JSON export: an array of tasks with `annotations[].result[]`.
    LabelStudio,
    /// COCO object detection: `images`, `categories`, `annotations` with `bbox`.
    Coco,
    /// CoNLL: one token per line with its IOB2 tag last, blank lines between sentences.
    Conll,
    /// JSON lines `{"id", "text", "spans": [{"start", "end", "label"}], "annotator"}`.
    Spans,
}

impl FromStr for AnnotationFormat {
    type Err = DataError;

    fn from_str(name: &str) -> Result<Self, DataError> {
        match name {
            "label-studio" => Ok(Self::LabelStudio),
            "coco" => Ok(Self::Coco),
            "conll" => Ok(Self::Conll),
            "spans" => Ok(Self::Spans),
            other => Err(DataError::Input(format!(
                "unknown annotation format {other:?}: use label-studio, coco, conll or spans"
            ))),
        }
    }
}

impl fmt::Display for AnnotationFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LabelStudio => "label-studio",
            Self::Coco => "coco",
            Self::Conll => "conll",
            Self::Spans => "spans",
        })
    }
}

/// What an annotation marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationKind {
    /// A label for the whole item (a classification choice).
    Class,
    /// A labelled span of the item's text: `start..end` in `unit`s.
    Span,
    /// A labelled rectangle on the item's image: `x`, `y`, `width`, `height` in `unit`s.
    Box,
    /// The annotator saw the item and marked nothing.
    None,
}

impl fmt::Display for AnnotationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Class => "class",
            Self::Span => "span",
            Self::Box => "box",
            Self::None => "none",
        })
    }
}

/// What span offsets and box coordinates count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Characters (Unicode scalar values) of the item's text.
    Char,
    /// Tokens of a CoNLL sentence.
    Token,
    /// Pixels of the image (COCO).
    Pixel,
    /// Percent of the image's width and height (Label Studio).
    Percent,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Char => "char",
            Self::Token => "token",
            Self::Pixel => "pixel",
            Self::Percent => "percent",
        })
    }
}

/// One row of the normalised annotation table. Every field is written, `null` where it does not
/// apply, so that the table is also a JSON-lines input `cloister data ingest` takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotation {
    /// The item: a Label Studio task id, a COCO image's `file_name`, `sentence-N` of a CoNLL
    /// file, a JSON-lines record's `id`.
    pub item: String,
    /// SHA-256 of the item's content (its text, its tokens joined by spaces, its image file
    /// name or its task data as canonical JSON), hex: annotations of one item must agree on it.
    pub item_sha256: String,
    /// Who annotated.
    pub annotator: String,
    /// What the row marks.
    pub kind: AnnotationKind,
    /// The label (null for `none`).
    pub label: Option<String>,
    /// What `start`/`end`/`length` or the box count.
    pub unit: Option<Unit>,
    /// The item's length in `unit`s (text items).
    pub length: Option<u64>,
    /// A span's first unit (0-based).
    pub start: Option<u64>,
    /// A span's end (exclusive).
    pub end: Option<u64>,
    /// A box's left edge.
    pub x: Option<f64>,
    /// A box's top edge.
    pub y: Option<f64>,
    /// A box's width.
    pub width: Option<f64>,
    /// A box's height.
    pub height: Option<f64>,
    /// The file it was read from, as given.
    pub source: String,
    /// Where in that file: the 1-based task, annotation or line.
    pub record: u64,
}

impl Annotation {
    fn new(item: &Item, annotator: &str, kind: AnnotationKind, source: &str, record: u64) -> Self {
        Annotation {
            item: item.id.clone(),
            item_sha256: item.sha256.clone(),
            annotator: annotator.to_owned(),
            kind,
            label: None,
            unit: item.unit,
            length: item.length,
            start: None,
            end: None,
            x: None,
            y: None,
            width: None,
            height: None,
            source: source.to_owned(),
            record,
        }
    }
}

/// An item as the parsers see it.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) id: String,
    pub(crate) sha256: String,
    /// The unit and length of a text item.
    pub(crate) unit: Option<Unit>,
    pub(crate) length: Option<u64>,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What one import read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    /// The normalised rows.
    pub rows: Vec<Annotation>,
    /// Label Studio annotations marked `was_cancelled` (skipped by the annotator): not read.
    pub cancelled: u64,
    /// Items (tasks, images, records) nobody annotated.
    pub unannotated: u64,
}

/// One input of an import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportInput {
    /// The file, as given.
    pub path: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Rows read from it.
    pub annotations: u64,
    /// Label Studio annotations it marks cancelled (not read).
    pub cancelled: u64,
    /// Items in it nobody annotated.
    pub unannotated: u64,
}

/// `annotations.json`: what an import read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// The format read.
    pub format: AnnotationFormat,
    /// Every input.
    pub inputs: Vec<ImportInput>,
    /// Rows in the table.
    pub annotations: u64,
    /// Distinct items.
    pub items: u64,
    /// Rows per annotator.
    pub annotators: BTreeMap<String, u64>,
    /// Rows per kind.
    pub kinds: BTreeMap<String, u64>,
    /// Rows per label.
    pub labels: BTreeMap<String, u64>,
}

impl ImportSummary {
    /// The summary of `rows`, read from `inputs`.
    pub fn new(format: AnnotationFormat, inputs: Vec<ImportInput>, rows: &[Annotation]) -> Self {
        let mut annotators = BTreeMap::new();
        let mut kinds = BTreeMap::new();
        let mut labels = BTreeMap::new();
        let mut items = BTreeSet::new();
        for row in rows {
            items.insert(row.item.as_str());
            *annotators.entry(row.annotator.clone()).or_default() += 1;
            *kinds.entry(row.kind.to_string()).or_default() += 1;
            if let Some(label) = &row.label {
                *labels.entry(label.clone()).or_default() += 1;
            }
        }
        ImportSummary {
            format,
            inputs,
            annotations: rows.len() as u64,
            items: items.len() as u64,
            annotators,
            kinds,
            labels,
        }
    }
}

/// Rows as JSON lines.
pub fn to_json_lines<T: Serialize>(rows: &[T]) -> Result<String, DataError> {
    let mut text = String::new();
    for row in rows {
        let line = serde_json::to_string(row)
            .map_err(|e| DataError::Merge(format!("writing a row as JSON: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// A normalised table read back, each row with its 1-based line.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// The file, as given.
    pub name: String,
    /// The rows and their lines.
    pub rows: Vec<(u64, Annotation)>,
}

/// Reads a normalised table (`annotations.jsonl` of an import, written back or by hand);
/// `file` names it in errors.
pub fn read_table(file: &str, text: &str) -> Result<Table, DataError> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Annotation = serde_json::from_str(line).map_err(|e| DataError::Annotation {
            file: file.to_owned(),
            at: format!("line {}", index + 1),
            reason: format!("not an annotation row: {e}"),
        })?;
        rows.push((index as u64 + 1, row));
    }
    Ok(Table { name: file.to_owned(), rows })
}
