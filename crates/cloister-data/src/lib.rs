//! The Cloister data pipeline: ingest raw exports (CSV, TSV, JSON lines, Parquet, Arrow IPC,
//! folders of text documents or of PNG/JPEG images) into a *data set* directory, and profile it.
//!
//! A data set is `dataset.json` (schema, row and reject counts, per-column statistics, the
//! SHA-256 of every input and every shard) and Parquet shards (`shard-NNNNN.parquet`) of a
//! bounded number of rows. Ingest streams: a record is read, converted to its columns' types and
//! written to the current shard, so memory stays bounded whatever the input's size. Column types
//! are inferred from the first records (1000 by default) or set by the user; a record that does
//! not fit (a ragged row, invalid UTF-8, a value of another type after the inference window, an
//! unreadable image, an image whose declared size is a decompression bomb) stops ingest with an
//! error naming file, row and column, or, with a reject file, is written there with its reason
//! and counted. Nothing is dropped silently.
//!
//! [`profile::profile`] reads the shards back (their digests checked) and reports per column the
//! missing and distinct counts, number statistics and histograms, the most frequent values,
//! likely identifiers and personal data ([`pii`]); [`report`] renders it as a terminal table or a
//! self-contained HTML page.
//!
//! [`annotate`] imports annotation tools' exports (Label Studio, COCO, CoNLL, JSON-lines spans)
//! into one normalised table and merges several annotators' tables with agreement statistics
//! (Cohen's and Fleiss' kappa) and a stated adjudication rule; it works on bytes and strings.
//!
//! [`preprocess`] applies a declared, versioned pipeline of steps (select, rename, cast,
//! filter, impute, standardize, normalize, one-hot and ordinal encoding, text cleaning,
//! dedupe, redaction, keyed pseudonyms, seeded splits) to a data set, fitting the steps that
//! need statistics in streaming passes, and writes a new data set whose lineage names its
//! input, the pipeline and the fitted parameters.
//!
//! File system access is confined to [`source`]; the record readers ([`records`],
//! [`columnar`]), type inference ([`schema`]), shard writing ([`shard`]) and image checks
//! ([`images`]) work on `Read`, `Write` and bytes.

pub mod annotate;
pub mod columnar;
pub mod error;
mod hll;
pub mod images;
pub mod ingest;
pub mod label;
mod names;
pub mod pii;
pub mod preprocess;
pub mod profile;
pub mod records;
pub mod report;
pub mod schema;
pub mod shard;
pub mod source;

pub use error::{DataError, Location, Problem};
pub use ingest::{Dataset, Format, IngestOptions, Kind, Progress, Rejects, Silent, ingest};
pub use profile::{Profile, profile};
pub use schema::{ColumnType, Field, Overrides};

/// Entry points for the fuzz targets (`fuzz/`): not a stable API.
#[doc(hidden)]
pub mod internal {
    pub use crate::annotate::import as import_annotations;
    pub use crate::images::inspect_image;
    pub use crate::preprocess::Pipeline;
    pub use crate::records::parse_all;
}
