//! Profile: per column the type, missing and distinct counts, numbers' min, max, mean,
//! standard deviation and histogram, the most frequent values, the kinds of personal data
//! found, and whether the column looks like an identifier (a value unique to every row). Two
//! passes over the shards (the histogram needs the range), each a batch at a time.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hasher as _};
use std::path::Path;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch, RecordBatchReader as _};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::hll::Distinct;
use crate::ingest::{Dataset, Kind};
use crate::pii::{Detector, PiiKind};
use crate::schema::{ColumnType, Field};
use crate::shard::{ShardInfo, arrow_type};
use crate::source;

/// Distinct values counted exactly before the count becomes an estimate.
pub const DISTINCT_CAP: usize = 100_000;
/// Values tracked for the most-frequent list (Misra–Gries counters).
const TOP_COUNTERS: usize = 1000;
/// Most frequent values reported per column.
const TOP_REPORTED: usize = 10;
/// Histogram buckets for numbers.
pub const BUCKETS: usize = 10;

/// A value and how often it occurs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopValue {
    /// The value as text.
    pub value: String,
    /// Occurrences (a lower bound when the list is not exact).
    pub count: u64,
}

/// One histogram bucket, `[low, high)` (the last one closed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Values in it.
    pub count: u64,
}

/// The statistics of a numeric column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Numbers {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub stddev: f64,
    /// NaN values (left out of the above).
    pub nan: u64,
    /// Equal-width buckets from min to max.
    pub histogram: Vec<Bucket>,
}

/// Personal data found in a column: how many values matched a kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiFinding {
    /// The kind.
    pub kind: PiiKind,
    /// Values with at least one match.
    pub values: u64,
}

/// The profile of one column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Values present.
    pub count: u64,
    /// Values missing.
    pub missing: u64,
    /// Distinct values present.
    pub distinct: u64,
    /// Whether `distinct` is exact (otherwise a HyperLogLog estimate, past
    /// [`DISTINCT_CAP`]).
    pub distinct_exact: bool,
    /// Number statistics (int and float columns with a value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numbers: Option<Numbers>,
    /// The most frequent values (string, bool and int columns), most frequent first.
    pub top: Vec<TopValue>,
    /// Whether the counts in `top` are exact (otherwise lower bounds).
    pub top_exact: bool,
    /// Personal data found (string columns).
    pub pii: Vec<PiiFinding>,
    /// Every row has a value, and no two the same: likely an identifier (int and string
    /// columns of at least two rows, with an exact distinct count).
    pub identifier: bool,
}

/// The profile of a data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// What the records are.
    pub kind: Kind,
    /// Rows.
    pub rows: u64,
    /// Records rejected at ingest.
    pub rejected: u64,
    /// Per column, in schema order.
    pub columns: Vec<ColumnProfile>,
}

/// Misra–Gries frequent items: exact while fewer than its capacity of values were seen.
#[derive(Debug, Default)]
struct Frequent {
    counters: HashMap<String, u64>,
    exact: bool,
}

impl Frequent {
    fn new() -> Self {
        Self { counters: HashMap::new(), exact: true }
    }

    fn add(&mut self, value: &str) {
        if let Some(count) = self.counters.get_mut(value) {
            *count += 1;
        } else if self.counters.len() < TOP_COUNTERS {
            self.counters.insert(value.to_owned(), 1);
        } else {
            self.exact = false;
            self.counters.retain(|_, count| {
                *count -= 1;
                *count > 0
            });
        }
    }

    fn top(&self) -> Vec<TopValue> {
        let mut values: Vec<TopValue> = self
            .counters
            .iter()
            .map(|(value, count)| TopValue { value: value.clone(), count: *count })
            .collect();
        values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        values.truncate(TOP_REPORTED);
        values
    }
}

struct Accumulator {
    field: Field,
    count: u64,
    missing: u64,
    distinct: Distinct,
    frequent: Frequent,
    pii: HashMap<PiiKind, u64>,
    numbers: u64,
    nan: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    histogram: Vec<u64>,
}

fn mistyped(field: &Field) -> DataError {
    DataError::Dataset(format!("column {} is not stored as {}", field.name, field.ty))
}

fn hash_of(value: impl std::hash::Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl Accumulator {
    fn new(field: &Field) -> Self {
        Self {
            field: field.clone(),
            count: 0,
            missing: 0,
            distinct: Distinct::new(DISTINCT_CAP),
            frequent: Frequent::new(),
            pii: HashMap::new(),
            numbers: 0,
            nan: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            histogram: vec![0; BUCKETS],
        }
    }

    fn number(&mut self, value: f64) {
        if value.is_nan() {
            self.nan += 1;
            return;
        }
        self.numbers += 1;
        let delta = value - self.mean;
        self.mean += delta / self.numbers as f64;
        self.m2 += delta * (value - self.mean);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn bucket(&mut self, value: f64) {
        if value.is_nan() || self.numbers == 0 {
            return;
        }
        let width = self.max - self.min;
        let index = if width > 0.0 && width.is_finite() {
            (((value - self.min) / width) * BUCKETS as f64).floor() as usize
        } else {
            0
        };
        if let Some(count) = self.histogram.get_mut(index.min(BUCKETS - 1)) {
            *count += 1;
        }
    }

    fn first_pass(&mut self, array: &dyn Array, detector: &Detector) -> Result<(), DataError> {
        self.missing += array.null_count() as u64;
        self.count += (array.len() - array.null_count()) as u64;
        let present = (0..array.len()).filter(|&index| !array.is_null(index));
        match self.field.ty {
            ColumnType::Int => {
                let values =
                    array.as_primitive_opt::<Int64Type>().ok_or_else(|| mistyped(&self.field))?;
                for index in present {
                    let value = values.value(index);
                    self.distinct.add(hash_of(value));
                    self.frequent.add(&value.to_string());
                    self.number(value as f64);
                }
            }
            ColumnType::Float => {
                let values =
                    array.as_primitive_opt::<Float64Type>().ok_or_else(|| mistyped(&self.field))?;
                for index in present {
                    let value = values.value(index);
                    self.distinct.add(hash_of(value.to_bits()));
                    self.number(value);
                }
            }
            ColumnType::Bool => {
                let values = array.as_boolean_opt().ok_or_else(|| mistyped(&self.field))?;
                for index in present {
                    let value = values.value(index);
                    self.distinct.add(hash_of(value));
                    self.frequent.add(if value { "true" } else { "false" });
                }
            }
            ColumnType::String => {
                let values = array.as_string_opt::<i32>().ok_or_else(|| mistyped(&self.field))?;
                for index in present {
                    let value = values.value(index);
                    self.distinct.add(hash_of(value));
                    self.frequent.add(value);
                    for kind in detector.detect(value) {
                        *self.pii.entry(kind).or_insert(0) += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn second_pass(&mut self, array: &dyn Array) {
        let present = (0..array.len()).filter(|&index| !array.is_null(index));
        if let Some(values) = array.as_primitive_opt::<Int64Type>() {
            for index in present {
                self.bucket(values.value(index) as f64);
            }
        } else if let Some(values) = array.as_primitive_opt::<Float64Type>() {
            for index in present {
                self.bucket(values.value(index));
            }
        }
    }

    fn is_number(&self) -> bool {
        matches!(self.field.ty, ColumnType::Int | ColumnType::Float)
    }

    fn finish(self) -> ColumnProfile {
        let (distinct, distinct_exact) = self.distinct.count();
        let numbers = (self.is_number() && self.numbers > 0).then(|| {
            let width = (self.max - self.min) / BUCKETS as f64;
            Numbers {
                min: self.min,
                max: self.max,
                mean: self.mean,
                stddev: (self.m2 / self.numbers as f64).sqrt(),
                nan: self.nan,
                histogram: self
                    .histogram
                    .iter()
                    .enumerate()
                    .map(|(index, count)| Bucket {
                        low: self.min + width * index as f64,
                        high: if index + 1 == BUCKETS {
                            self.max
                        } else {
                            self.min + width * (index + 1) as f64
                        },
                        count: *count,
                    })
                    .collect(),
            }
        });
        let pii = PiiKind::ALL
            .iter()
            .filter_map(|kind| {
                self.pii.get(kind).map(|values| PiiFinding { kind: *kind, values: *values })
            })
            .collect();
        let identifier = matches!(self.field.ty, ColumnType::Int | ColumnType::String)
            && self.missing == 0
            && self.count >= 2
            && distinct_exact
            && distinct == self.count;
        ColumnProfile {
            name: self.field.name,
            ty: self.field.ty,
            count: self.count,
            missing: self.missing,
            distinct,
            distinct_exact,
            numbers,
            top: if self.field.ty == ColumnType::Float { Vec::new() } else { self.frequent.top() },
            top_exact: self.frequent.exact,
            pii,
            identifier,
        }
    }
}

/// Reads every shard of `dataset` in `dir` (digests checked), a batch at a time.
pub(crate) fn read_shards(
    dir: &Path,
    dataset: &Dataset,
    mut each: impl FnMut(&RecordBatch) -> Result<(), DataError>,
) -> Result<(), DataError> {
    read_shards_named(dir, dataset, |_, batch| each(batch))
}

/// [`read_shards`], telling which shard each batch is from.
pub(crate) fn read_shards_named(
    dir: &Path,
    dataset: &Dataset,
    mut each: impl FnMut(&ShardInfo, &RecordBatch) -> Result<(), DataError>,
) -> Result<(), DataError> {
    for shard in &dataset.shards {
        let file: File = source::open_shard(dir, shard)?;
        let failed = |error: parquet::errors::ParquetError| {
            DataError::Dataset(format!("{}: {error}", shard.file))
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(failed)?
            .with_batch_size(8192)
            .build()
            .map_err(failed)?;
        let schema = reader.schema();
        let matches = schema.fields().len() == dataset.schema.len()
            && schema.fields().iter().zip(&dataset.schema).all(|(arrow, field)| {
                arrow.name() == &field.name && arrow.data_type() == &arrow_type(field.ty)
            });
        if !matches {
            return Err(DataError::Dataset(format!(
                "{}: its columns are not the schema in dataset.json",
                shard.file
            )));
        }
        for batch in reader {
            let batch =
                batch.map_err(|error| DataError::Dataset(format!("{}: {error}", shard.file)))?;
            each(shard, &batch)?;
        }
    }
    Ok(())
}

/// Profiles the data set in `dir` (every shard's digest checked against `dataset.json`).
pub fn profile(dir: &Path) -> Result<Profile, DataError> {
    let dataset = source::read_dataset(dir)?;
    let detector =
        Detector::new().map_err(|error| DataError::Dataset(format!("PII patterns: {error}")))?;
    let mut columns: Vec<Accumulator> = dataset.schema.iter().map(Accumulator::new).collect();
    let mut rows = 0;
    read_shards(dir, &dataset, |batch| {
        rows += batch.num_rows() as u64;
        for (column, array) in columns.iter_mut().zip(batch.columns()) {
            column.first_pass(array.as_ref(), &detector)?;
        }
        Ok(())
    })?;
    if rows != dataset.rows {
        return Err(DataError::Dataset(format!(
            "the shards hold {rows} rows, dataset.json says {}",
            dataset.rows
        )));
    }
    if columns.iter().any(Accumulator::is_number) {
        read_shards(dir, &dataset, |batch| {
            for (column, array) in columns.iter_mut().zip(batch.columns()) {
                column.second_pass(array.as_ref());
            }
            Ok(())
        })?;
    }
    Ok(Profile {
        kind: dataset.kind,
        rows,
        rejected: dataset.rejected,
        columns: columns.into_iter().map(Accumulator::finish).collect(),
    })
}
