//! Parquet and Arrow IPC inputs as records: batches from arrow-rs, read row by row into cells.
//! Integer, float, boolean and string columns keep their type; decimals become floats; dates,
//! times and timestamps become their text; anything else (lists, structs, binary) is refused
//! up front, naming the column.

use std::io::{Read, Seek};

use arrow_array::cast::AsArray as _;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;

use crate::error::{DataError, Problem};
use crate::records::{Next, Raw, RawRecord, RecordReader, Rejected};
use crate::schema::{Cell, ColumnType};

/// Rows per batch read from a columnar input.
const BATCH_ROWS: usize = 8192;

/// How a column is read.
#[derive(Clone, Copy, Debug)]
enum Reading {
    /// As it is: ints, floats, booleans, strings.
    Native,
    /// Cast to Float64 (decimals).
    AsFloat,
    /// Cast to Utf8 (dates, times, timestamps, durations).
    AsText,
}

fn reading(data_type: &DataType) -> Option<Reading> {
    use DataType as T;
    Some(match data_type {
        T::Null
        | T::Boolean
        | T::Int8
        | T::Int16
        | T::Int32
        | T::Int64
        | T::UInt8
        | T::UInt16
        | T::UInt32
        | T::UInt64
        | T::Float16
        | T::Float32
        | T::Float64
        | T::Utf8
        | T::LargeUtf8
        | T::Utf8View => Reading::Native,
        T::Decimal32(..) | T::Decimal64(..) | T::Decimal128(..) | T::Decimal256(..) => {
            Reading::AsFloat
        }
        T::Date32 | T::Date64 | T::Time32(_) | T::Time64(_) | T::Timestamp(..) => Reading::AsText,
        _ => return None,
    })
}

/// The data set type of a column read `how`.
fn column_type(data_type: &DataType, how: Reading) -> ColumnType {
    use DataType as T;
    match (how, data_type) {
        (Reading::AsFloat, _) => ColumnType::Float,
        (Reading::AsText, _) => ColumnType::String,
        (Reading::Native, T::Boolean) => ColumnType::Bool,
        (
            Reading::Native,
            T::Int8 | T::Int16 | T::Int32 | T::Int64 | T::UInt8 | T::UInt16 | T::UInt32 | T::UInt64,
        ) => ColumnType::Int,
        (Reading::Native, T::Float16 | T::Float32 | T::Float64) => ColumnType::Float,
        (Reading::Native, _) => ColumnType::String,
    }
}

/// Records from a stream of Arrow record batches (a Parquet file or an Arrow IPC file).
pub struct ColumnarReader {
    batches: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>,
    columns: Vec<String>,
    readings: Vec<Reading>,
    types: Vec<ColumnType>,
    batch: Option<Vec<ArrayRef>>,
    batch_rows: usize,
    next_in_batch: usize,
    row: u64,
    file: String,
}

impl ColumnarReader {
    fn new(
        schema: SchemaRef,
        batches: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>,
        file: &str,
    ) -> Result<Self, DataError> {
        let mut columns = Vec::new();
        let mut readings = Vec::new();
        let mut types = Vec::new();
        for field in schema.fields() {
            let how = reading(field.data_type()).ok_or_else(|| DataError::UnsupportedType {
                file: file.to_owned(),
                column: field.name().clone(),
                data_type: field.data_type().to_string(),
            })?;
            columns.push(field.name().clone());
            readings.push(how);
            types.push(column_type(field.data_type(), how));
        }
        Ok(Self {
            batches,
            columns,
            readings,
            types,
            batch: None,
            batch_rows: 0,
            next_in_batch: 0,
            row: 0,
            file: file.to_owned(),
        })
    }

    /// A Parquet file (any `ChunkReader`: a `File`, `bytes::Bytes`).
    pub fn parquet<T: ChunkReader + 'static>(input: T, file: &str) -> Result<Self, DataError> {
        let failed = |error: parquet::errors::ParquetError| DataError::Columnar {
            file: file.to_owned(),
            reason: error.to_string(),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(input)
            .map_err(failed)?
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(failed)?;
        Self::new(reader.schema(), Box::new(reader), file)
    }

    /// An Arrow IPC file (`ARROW1` magic) or, without the magic, an Arrow IPC stream.
    pub fn arrow<R: Read + Seek + 'static>(mut input: R, file: &str) -> Result<Self, DataError> {
        let failed = |error: ArrowError| DataError::Columnar {
            file: file.to_owned(),
            reason: error.to_string(),
        };
        let mut magic = [0_u8; 6];
        let is_file = input.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
        input.rewind().map_err(|error| DataError::io(file, error))?;
        if is_file {
            let reader = arrow_ipc::reader::FileReader::try_new(input, None).map_err(failed)?;
            Self::new(reader.schema(), Box::new(reader), file)
        } else {
            let reader = arrow_ipc::reader::StreamReader::try_new(input, None).map_err(failed)?;
            Self::new(reader.schema(), Box::new(reader), file)
        }
    }

    fn load_batch(&mut self) -> Result<bool, DataError> {
        let Some(batch) = self.batches.next() else { return Ok(false) };
        let batch = batch.map_err(|error| DataError::Columnar {
            file: self.file.clone(),
            reason: error.to_string(),
        })?;
        let mut arrays = Vec::with_capacity(batch.num_columns());
        for (array, how) in batch.columns().iter().zip(&self.readings) {
            let target = match how {
                Reading::Native => None,
                Reading::AsFloat => Some(DataType::Float64),
                Reading::AsText => Some(DataType::Utf8),
            };
            arrays.push(match target {
                None => array.clone(),
                Some(target) => arrow_cast::cast(array, &target).map_err(|error| {
                    DataError::Columnar { file: self.file.clone(), reason: error.to_string() }
                })?,
            });
        }
        self.batch_rows = batch.num_rows();
        self.next_in_batch = 0;
        self.batch = Some(arrays);
        Ok(true)
    }
}

/// The cell at `index` of an array of one of the native types.
fn cell(array: &dyn Array, index: usize) -> Result<Cell, Problem> {
    use DataType as T;
    if array.is_null(index) {
        return Ok(Cell::Missing);
    }
    Ok(match array.data_type() {
        T::Null => Cell::Missing,
        T::Boolean => Cell::Bool(array.as_boolean().value(index)),
        T::Int8 => Cell::Int(array.as_primitive::<Int8Type>().value(index).into()),
        T::Int16 => Cell::Int(array.as_primitive::<Int16Type>().value(index).into()),
        T::Int32 => Cell::Int(array.as_primitive::<Int32Type>().value(index).into()),
        T::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(index)),
        T::UInt8 => Cell::Int(array.as_primitive::<UInt8Type>().value(index).into()),
        T::UInt16 => Cell::Int(array.as_primitive::<UInt16Type>().value(index).into()),
        T::UInt32 => Cell::Int(array.as_primitive::<UInt32Type>().value(index).into()),
        T::UInt64 => {
            let value = array.as_primitive::<UInt64Type>().value(index);
            Cell::Int(i64::try_from(value).map_err(|_| Problem::TypeMismatch {
                expected: ColumnType::Int,
                value: value.to_string(),
            })?)
        }
        T::Float16 => Cell::Float(array.as_primitive::<Float16Type>().value(index).to_f64()),
        T::Float32 => Cell::Float(array.as_primitive::<Float32Type>().value(index).into()),
        T::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(index)),
        T::Utf8 => Cell::Str(array.as_string::<i32>().value(index).to_owned()),
        T::LargeUtf8 => Cell::Str(array.as_string::<i64>().value(index).to_owned()),
        T::Utf8View => Cell::Str(array.as_string_view().value(index).to_owned()),
        other => {
            return Err(Problem::Json(format!("unexpected Arrow type {other} after casting")));
        }
    })
}

impl RecordReader for ColumnarReader {
    fn columns(&self) -> Option<&[String]> {
        Some(&self.columns)
    }

    fn types(&self) -> Option<Vec<ColumnType>> {
        Some(self.types.clone())
    }

    fn next_record(&mut self) -> Result<Next, DataError> {
        while self.batch.is_none() || self.next_in_batch >= self.batch_rows {
            if !self.load_batch()? {
                return Ok(None);
            }
        }
        let index = self.next_in_batch;
        self.next_in_batch += 1;
        self.row += 1;
        let row = self.row;
        let Some(arrays) = &self.batch else { return Ok(None) };
        let mut cells = Vec::with_capacity(arrays.len());
        for (array, name) in arrays.iter().zip(&self.columns) {
            match cell(array.as_ref(), index) {
                Ok(value) => cells.push(value),
                Err(problem) => {
                    return Ok(Some(Err(Rejected { row, column: Some(name.clone()), problem })));
                }
            }
        }
        Ok(Some(Ok(RawRecord { row, raw: Raw::Cells(cells) })))
    }
}
