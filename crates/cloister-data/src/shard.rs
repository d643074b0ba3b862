//! The data set's shards: typed rows are gathered into Arrow batches and written as Parquet
//! files (Snappy) of at most a set number of rows, each hashed as it is written; per-column
//! statistics are kept on the way. Memory holds one batch and one row group, whatever the input.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema as ArrowSchema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::DataError;
use crate::schema::{ColumnType, Field, Value};

/// Rows gathered before they are handed to the Parquet writer as one batch.
const BATCH_ROWS: usize = 8192;
/// Text bytes gathered before a batch is handed on early (documents can be large).
const BATCH_BYTES: usize = 16 << 20;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 65_536;
/// Encoded bytes a row group may reach in memory before it is flushed early.
const ROW_GROUP_BYTES: usize = 64 << 20;

/// A finished shard, as `dataset.json` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The file name inside the data set directory.
    pub file: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Statistics of one column gathered during ingest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// The column's name.
    pub name: String,
    /// Values present.
    pub count: u64,
    /// Values missing.
    pub missing: u64,
    /// Smallest value (numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value (numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Mean (numbers; NaN values excluded from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Shortest text, in characters (strings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    /// Longest text, in characters (strings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// `true` values (booleans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_count: Option<u64>,
    #[serde(skip)]
    sum: f64,
    #[serde(skip)]
    numbers: u64,
}

impl ColumnStats {
    fn new(field: &Field) -> Self {
        Self {
            name: field.name.clone(),
            true_count: (field.ty == ColumnType::Bool).then_some(0),
            ..Self::default()
        }
    }

    fn number(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        self.min = Some(self.min.map_or(value, |min| min.min(value)));
        self.max = Some(self.max.map_or(value, |max| max.max(value)));
        self.sum += value;
        self.numbers += 1;
        self.mean = Some(self.sum / self.numbers as f64);
    }

    fn add(&mut self, value: &Value) {
        match value {
            Value::Null => {
                self.missing += 1;
                return;
            }
            Value::Int(value) => self.number(*value as f64),
            Value::Float(value) => self.number(*value),
            Value::Str(text) => {
                let length = text.chars().count() as u64;
                self.min_length = Some(self.min_length.map_or(length, |min| min.min(length)));
                self.max_length = Some(self.max_length.map_or(length, |max| max.max(length)));
            }
            Value::Bool(value) => {
                if *value {
                    self.true_count = Some(self.true_count.unwrap_or(0) + 1);
                }
            }
        }
        self.count += 1;
    }
}

/// Where shards are created: a directory (`source::DirStore`) or memory in tests.
pub trait ShardStore {
    /// The writer a shard is written to.
    type Writer: Write + Send;

    /// Creates the shard named `name`.
    fn create(&mut self, name: &str) -> Result<Self::Writer, DataError>;
}

/// A writer that hashes and counts what goes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, hash: Sha256::new(), bytes: 0 }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        let done = buf.get(..written).unwrap_or(buf);
        self.hash.update(done);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Int => Self::Int(Int64Builder::new()),
            ColumnType::Float => Self::Float(Float64Builder::new()),
            ColumnType::String => Self::Str(StringBuilder::new()),
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
        }
    }

    /// Appends a value of the builder's type (the caller converted it); anything else is null.
    fn append(&mut self, value: &Value) {
        match (self, value) {
            (Self::Int(b), Value::Int(v)) => b.append_value(*v),
            (Self::Float(b), Value::Float(v)) => b.append_value(*v),
            (Self::Str(b), Value::Str(v)) => b.append_value(v),
            (Self::Bool(b), Value::Bool(v)) => b.append_value(*v),
            (Self::Int(b), _) => b.append_null(),
            (Self::Float(b), _) => b.append_null(),
            (Self::Str(b), _) => b.append_null(),
            (Self::Bool(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Str(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// The Arrow type a column is stored as.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::String => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
    }
}

/// The shard being written: its name, its writer and the rows in it so far.
type OpenShard<W> = (String, ArrowWriter<HashingWriter<W>>, u64);

/// Writes typed rows into Parquet shards of at most `shard_rows` rows.
pub struct ShardWriter<S: ShardStore> {
    store: S,
    schema: SchemaRef,
    shard_rows: u64,
    builders: Vec<Builder>,
    batch_rows: usize,
    batch_bytes: usize,
    current: Option<OpenShard<S::Writer>>,
    shards: Vec<ShardInfo>,
    stats: Vec<ColumnStats>,
    rows: u64,
}

impl<S: ShardStore> ShardWriter<S> {
    /// A writer of rows of `fields` into `store`; `shard_rows` is at least 1.
    pub fn new(store: S, fields: &[Field], shard_rows: u64) -> Self {
        let schema = Arc::new(ArrowSchema::new(
            fields
                .iter()
                .map(|field| ArrowField::new(&field.name, arrow_type(field.ty), true))
                .collect::<Vec<_>>(),
        ));
        Self {
            store,
            schema,
            shard_rows: shard_rows.max(1),
            builders: fields.iter().map(|field| Builder::new(field.ty)).collect(),
            batch_rows: 0,
            batch_bytes: 0,
            current: None,
            shards: Vec::new(),
            stats: fields.iter().map(ColumnStats::new).collect(),
            rows: 0,
        }
    }

    /// Appends one row: one value per column, each of its column's type.
    pub fn push(&mut self, row: &[Value]) -> Result<(), DataError> {
        for ((builder, stats), value) in self.builders.iter_mut().zip(&mut self.stats).zip(row) {
            builder.append(value);
            stats.add(value);
            if let Value::Str(text) = value {
                self.batch_bytes += text.len();
            }
        }
        self.batch_rows += 1;
        self.rows += 1;
        let in_shard = self.current.as_ref().map_or(0, |(_, _, rows)| *rows);
        if self.batch_rows >= BATCH_ROWS
            || self.batch_bytes >= BATCH_BYTES
            || in_shard + self.batch_rows as u64 >= self.shard_rows
        {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn write_batch(&mut self) -> Result<(), DataError> {
        if self.batch_rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let rows = self.batch_rows as u64;
        self.batch_rows = 0;
        self.batch_bytes = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|error| {
            DataError::Shard { shard: "batch".into(), reason: error.to_string() }
        })?;
        if self.current.is_none() {
            let name = format!("shard-{:05}.parquet", self.shards.len());
            let file = self.store.create(&name)?;
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build();
            let writer = ArrowWriter::try_new(
                HashingWriter::new(file),
                self.schema.clone(),
                Some(properties),
            )
            .map_err(|error| shard_error(&name, &error))?;
            self.current = Some((name, writer, 0));
        }
        let Some((name, writer, in_shard)) = &mut self.current else {
            return Err(DataError::Shard { shard: "?".into(), reason: "no open shard".into() });
        };
        writer.write(&batch).map_err(|error| shard_error(name, &error))?;
        if writer.in_progress_size() >= ROW_GROUP_BYTES {
            writer.flush().map_err(|error| shard_error(name, &error))?;
        }
        *in_shard += rows;
        if *in_shard >= self.shard_rows {
            self.close_shard()?;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<(), DataError> {
        let Some((name, writer, rows)) = self.current.take() else { return Ok(()) };
        let mut hashing = writer.into_inner().map_err(|error| shard_error(&name, &error))?;
        hashing.flush().map_err(|error| DataError::io(&name, error))?;
        self.shards.push(ShardInfo {
            file: name,
            rows,
            bytes: hashing.bytes,
            sha256: hex::encode(hashing.hash.finalize()),
        });
        Ok(())
    }

    /// Writes what is left and closes the last shard; returns the shards, the column
    /// statistics and the store.
    pub fn finish(mut self) -> Result<(Vec<ShardInfo>, Vec<ColumnStats>, S), DataError> {
        self.write_batch()?;
        self.close_shard()?;
        Ok((self.shards, self.stats, self.store))
    }
}

fn shard_error(name: &str, error: &dyn std::fmt::Display) -> DataError {
    DataError::Shard { shard: name.to_owned(), reason: error.to_string() }
}
