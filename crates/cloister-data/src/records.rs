//! Record readers over any `Read`: CSV and TSV (header, fields as text) and JSON lines (one
//! object per line). They find the problems of one record (ragged rows, invalid UTF-8, lines
//! that are not JSON objects) and hand them back as rejections with the record's 1-based line;
//! only a failing reader is an error.

use std::io::{BufRead, BufReader, Read};

use crate::error::{DataError, Problem};
use crate::schema::Cell;

/// A record as read, before its cells are matched to the schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    /// Positional cells (CSV, TSV, Parquet, Arrow), one per column.
    Cells(Vec<Cell>),
    /// A JSON object, by key.
    Object(serde_json::Map<String, serde_json::Value>),
}

/// A record and the 1-based row it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct RawRecord {
    /// The row (line for text formats).
    pub row: u64,
    /// Its content.
    pub raw: Raw,
}

/// A record that cannot enter the data set, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// The row (line for text formats).
    pub row: u64,
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// Why.
    pub problem: Problem,
}

/// What a reader yields: a record, or a record's rejection.
pub type Next = Option<Result<RawRecord, Rejected>>;

/// A source of records from one input.
pub trait RecordReader {
    /// The columns the input declares (a CSV header, an Arrow schema); `None` for JSON lines,
    /// whose columns are the keys of the first records.
    fn columns(&self) -> Option<&[String]>;

    /// The column types the input declares (Parquet, Arrow); `None` where they are inferred.
    fn types(&self) -> Option<Vec<crate::schema::ColumnType>> {
        None
    }

    /// The next record or rejection; `Ok(None)` at the end.
    fn next_record(&mut self) -> Result<Next, DataError>;
}

/// How a delimited file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delimited {
    /// The field delimiter: `,` for CSV, tab for TSV.
    pub delimiter: u8,
    /// Lines before the header (or before the data without a header), skipped unread.
    pub skip_lines: u64,
    /// Whether the first (unskipped) line names the columns; if not, they are `column_1`….
    pub header: bool,
}

impl Delimited {
    /// Comma-separated with a header line.
    pub fn csv() -> Self {
        Self { delimiter: b',', skip_lines: 0, header: true }
    }

    /// Tab-separated with a header line.
    pub fn tsv() -> Self {
        Self { delimiter: b'\t', skip_lines: 0, header: true }
    }
}

/// CSV or TSV records: every field is text; a row with another field count than the header
/// is rejected as ragged, a field that is not UTF-8 as invalid, naming the column.
pub struct DelimitedReader<R: Read> {
    reader: csv::Reader<BufReader<R>>,
    columns: Vec<String>,
    record: csv::ByteRecord,
    skipped: u64,
    file: String,
    /// A first data row read while looking for the width of a header-less file.
    pending: Option<csv::ByteRecord>,
}

impl<R: Read> DelimitedReader<R> {
    /// Reads the header (or the first row's width without one); `file` names the input in
    /// errors.
    pub fn new(input: R, layout: Delimited, file: &str) -> Result<Self, DataError> {
        let mut input = BufReader::new(input);
        let mut line = Vec::new();
        for _ in 0..layout.skip_lines {
            line.clear();
            input.read_until(b'\n', &mut line).map_err(|error| DataError::io(file, error))?;
        }
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(layout.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut first = csv::ByteRecord::new();
        let found = reader.read_byte_record(&mut first).map_err(|error| csv_error(file, error))?;
        if !found {
            return Err(DataError::Header { file: file.to_owned(), reason: "no rows".into() });
        }
        let (columns, pending) = if layout.header {
            let mut columns = Vec::with_capacity(first.len());
            for (index, name) in first.iter().enumerate() {
                let name = std::str::from_utf8(name).map_err(|_| DataError::Header {
                    file: file.to_owned(),
                    reason: format!("the name of column {} is not UTF-8", index + 1),
                })?;
                if name.is_empty() {
                    return Err(DataError::Header {
                        file: file.to_owned(),
                        reason: format!("column {} has no name", index + 1),
                    });
                }
                if columns.iter().any(|seen: &String| seen == name) {
                    return Err(DataError::Header {
                        file: file.to_owned(),
                        reason: format!("column {name:?} appears twice"),
                    });
                }
                columns.push(name.to_owned());
            }
            (columns, None)
        } else {
            ((1..=first.len()).map(|index| format!("column_{index}")).collect(), Some(first))
        };
        Ok(Self {
            reader,
            columns,
            record: csv::ByteRecord::new(),
            skipped: layout.skip_lines,
            file: file.to_owned(),
            pending,
        })
    }

    fn row_of(&self, record: &csv::ByteRecord) -> u64 {
        record.position().map_or(0, csv::Position::line) + self.skipped
    }

    fn decode(&self, record: &csv::ByteRecord) -> Result<RawRecord, Rejected> {
        let row = self.row_of(record);
        if record.len() != self.columns.len() {
            let column = self
                .columns
                .get(record.len())
                .cloned()
                .unwrap_or_else(|| format!("#{} (beyond the header)", self.columns.len() + 1));
            return Err(Rejected {
                row,
                column: Some(column),
                problem: Problem::Ragged { expected: self.columns.len(), found: record.len() },
            });
        }
        let mut cells = Vec::with_capacity(record.len());
        for (field, name) in record.iter().zip(&self.columns) {
            let text = std::str::from_utf8(field).map_err(|error| Rejected {
                row,
                column: Some(name.clone()),
                problem: Problem::InvalidUtf8 { offset: error.valid_up_to() },
            })?;
            cells.push(if text.is_empty() { Cell::Missing } else { Cell::Text(text.to_owned()) });
        }
        Ok(RawRecord { row, raw: Raw::Cells(cells) })
    }
}

fn csv_error(file: &str, error: csv::Error) -> DataError {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => DataError::io(file, error),
        other => DataError::Input(format!("{file}: {other:?}")),
    }
}

impl<R: Read> RecordReader for DelimitedReader<R> {
    fn columns(&self) -> Option<&[String]> {
        Some(&self.columns)
    }

    fn next_record(&mut self) -> Result<Next, DataError> {
        if let Some(first) = self.pending.take() {
            return Ok(Some(self.decode(&first)));
        }
        let mut record = std::mem::take(&mut self.record);
        let found =
            self.reader.read_byte_record(&mut record).map_err(|e| csv_error(&self.file, e))?;
        let next = found.then(|| self.decode(&record));
        self.record = record;
        Ok(next)
    }
}

/// JSON lines: one JSON object per line; blank lines are skipped; a line that is not UTF-8 or
/// not a JSON object is rejected with its line number.
pub struct JsonLinesReader<R: Read> {
    input: BufReader<R>,
    line: Vec<u8>,
    row: u64,
    file: String,
}

impl<R: Read> JsonLinesReader<R> {
    /// A reader of `input`; `file` names it in errors.
    pub fn new(input: R, file: &str) -> Self {
        Self { input: BufReader::new(input), line: Vec::new(), row: 0, file: file.to_owned() }
    }
}

impl<R: Read> RecordReader for JsonLinesReader<R> {
    fn columns(&self) -> Option<&[String]> {
        None
    }

    fn next_record(&mut self) -> Result<Next, DataError> {
        loop {
            self.line.clear();
            let read = self
                .input
                .read_until(b'\n', &mut self.line)
                .map_err(|error| DataError::io(&self.file, error))?;
            if read == 0 {
                return Ok(None);
            }
            self.row += 1;
            let row = self.row;
            let text = match std::str::from_utf8(&self.line) {
                Ok(text) => text,
                Err(error) => {
                    return Ok(Some(Err(Rejected {
                        row,
                        column: None,
                        problem: Problem::InvalidUtf8 { offset: error.valid_up_to() },
                    })));
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            return Ok(Some(match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(object)) => {
                    Ok(RawRecord { row, raw: Raw::Object(object) })
                }
                Ok(_) => Err(Rejected {
                    row,
                    column: None,
                    problem: Problem::Json("the line is a JSON value but not an object".into()),
                }),
                Err(error) => {
                    Err(Rejected { row, column: None, problem: Problem::Json(error.to_string()) })
                }
            }));
        }
    }
}

/// A JSON value as a cell: null is missing, arrays and objects are their JSON text.
pub fn json_cell(value: serde_json::Value) -> Cell {
    use serde_json::Value;
    match value {
        Value::Null => Cell::Missing,
        Value::Bool(value) => Cell::Bool(value),
        Value::Number(number) => match number.as_i64() {
            Some(value) => Cell::Int(value),
            None => number.as_f64().map_or_else(|| Cell::Str(number.to_string()), Cell::Float),
        },
        Value::String(text) => Cell::Str(text),
        other @ (Value::Array(_) | Value::Object(_)) => Cell::Str(other.to_string()),
    }
}

/// Reads every record of a CSV (`tsv` false) or TSV input and JSON lines, for the fuzz target:
/// every outcome but a panic is fine.
pub fn parse_all(bytes: &[u8]) -> usize {
    let mut count = 0;
    for layout in [Delimited::csv(), Delimited::tsv()] {
        if let Ok(mut reader) = DelimitedReader::new(bytes, layout, "fuzz") {
            while let Ok(Some(_)) = reader.next_record() {
                count += 1;
            }
        }
    }
    let mut reader = JsonLinesReader::new(bytes, "fuzz");
    while let Ok(Some(record)) = reader.next_record() {
        if let Ok(RawRecord { raw: Raw::Object(object), .. }) = record {
            for (_, value) in object {
                if json_cell(value) != Cell::Missing {
                    count += 1;
                }
            }
        }
        count += 1;
    }
    count
}
