//! Numeric tables: the decrypted data set a job runs on.

use zeroize::Zeroize;

use super::EngineError;

/// A dense numeric table: `rows × columns` float32 values stored row-major.
///
/// Holds plaintext user data inside the enclave, so the values are zeroized when the table is
/// dropped. It is deliberately not `Clone`.
#[derive(Debug)]
pub struct Table {
    rows: usize,
    columns: usize,
    values: Vec<f32>,
}

impl Table {
    /// Parses a numeric CSV (comma-separated, surrounding whitespace ignored, blank lines skipped).
    ///
    /// The first non-blank line is treated as a header of names and skipped when any of its cells
    /// is not a number. Every other line must have the same number of numeric cells.
    ///
    /// # Errors
    /// [`EngineError::InvalidData`] for a ragged row or a non-numeric cell (the message names the
    /// 1-based line), for a CSV syntax error, or for a table without data rows.
    pub fn from_csv(bytes: &[u8]) -> Result<Table, EngineError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let mut values = Vec::new();
        let mut columns: Option<(usize, u64)> = None;
        let mut rows = 0usize;
        let mut first = true;
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    values.zeroize();
                    return Err(EngineError::InvalidData(format!("CSV syntax error: {e}")));
                }
            }
            let line = record.position().map_or(0, csv::Position::line);
            if record.iter().all(str::is_empty) {
                continue; // blank line
            }
            let is_first = std::mem::replace(&mut first, false);
            if is_first && record.iter().any(|c| c.parse::<f32>().is_err()) {
                continue; // header of column names
            }
            match columns {
                None => columns = Some((record.len(), line)),
                Some((n, first_line)) if n != record.len() => {
                    values.zeroize();
                    return Err(EngineError::InvalidData(format!(
                        "line {line} has {} values but line {first_line} has {n}",
                        record.len()
                    )));
                }
                Some(_) => {}
            }
            for (i, cell) in record.iter().enumerate() {
                match cell.parse::<f32>() {
                    Ok(v) => values.push(v),
                    Err(_) => {
                        values.zeroize();
                        // The cell itself is the owner's data: it must not reach an error
                        // message, which travels to logs and to whoever submitted the job.
                        return Err(EngineError::InvalidData(format!(
                            "line {line}, column {}: the value is not a number",
                            i + 1
                        )));
                    }
                }
            }
            rows += 1;
        }
        record.clear();
        let Some((columns, _)) = columns else {
            return Err(EngineError::InvalidData("the data set has no data rows".into()));
        };
        Table::from_values(rows, columns, values)
    }

    /// Builds a table from row-major values.
    ///
    /// # Errors
    /// [`EngineError::InvalidData`] when `rows` or `columns` is zero or `values.len()` is not
    /// `rows * columns` (the values are zeroized before returning the error).
    pub fn from_values(
        rows: usize,
        columns: usize,
        mut values: Vec<f32>,
    ) -> Result<Table, EngineError> {
        let problem = if rows == 0 || columns == 0 {
            Some(format!("the data set is empty ({rows} rows × {columns} columns)"))
        } else if rows.checked_mul(columns) != Some(values.len()) {
            Some(format!("{} values do not make {rows} rows × {columns} columns", values.len()))
        } else {
            None
        };
        match problem {
            Some(msg) => {
                values.zeroize();
                Err(EngineError::InvalidData(msg))
            }
            None => Ok(Table { rows, columns, values }),
        }
    }

    /// Number of rows (samples).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of values per row.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// All values, row-major (`rows * columns` of them).
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values of one row, or `None` past the end.
    pub fn row(&self, index: usize) -> Option<&[f32]> {
        let start = index.checked_mul(self.columns)?;
        self.values.get(start..start.checked_add(self.columns)?)
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        self.values.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_numbers() {
        let t = Table::from_csv(b"1,2,3\n4,5,6\n").expect("table");
        assert_eq!((t.rows(), t.columns()), (2, 3));
        assert_eq!(t.values(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.row(1), Some(&[4.0, 5.0, 6.0][..]));
        assert_eq!(t.row(2), None);
    }

    #[test]
    fn skips_header_blank_lines_and_whitespace() {
        let t = Table::from_csv(b"a, b ,c\r\n\r\n 1 ,2.5,-3e2\r\n4,5,6").expect("table");
        assert_eq!((t.rows(), t.columns()), (2, 3));
        assert_eq!(t.values(), &[1.0, 2.5, -300.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn header_with_some_numeric_cells_is_a_header() {
        // The scikit-learn breast-cancer file starts with `569,30,malignant,benign`.
        let t = Table::from_csv(b"2,3,x,y\n1,2,3\n4,5,6\n").expect("table");
        assert_eq!((t.rows(), t.columns()), (2, 3));
    }

    #[test]
    fn ragged_row_names_the_line() {
        let err = Table::from_csv(b"a,b,c\n1,2,3\n4,5\n").expect_err("ragged");
        let msg = err.to_string();
        assert!(matches!(err, EngineError::InvalidData(_)), "{msg}");
        assert!(msg.contains("line 3 has 2 values but line 2 has 3"), "{msg}");
    }

    #[test]
    fn non_numeric_cell_after_the_first_line_is_an_error() {
        let err = Table::from_csv(b"1,2\n3,oops\n").expect_err("non-numeric");
        assert!(err.to_string().contains("line 2, column 2"), "{err}");
    }

    #[test]
    fn empty_inputs_are_errors() {
        for csv in [&b""[..], b"\n\n", b"a,b,c\n"] {
            let err = Table::from_csv(csv).expect_err("empty");
            assert!(matches!(err, EngineError::InvalidData(_)), "{err}");
        }
    }

    #[test]
    fn from_values_checks_the_shape() {
        assert!(Table::from_values(2, 2, vec![0.0; 4]).is_ok());
        assert!(Table::from_values(2, 2, vec![0.0; 3]).is_err());
        assert!(Table::from_values(0, 2, vec![]).is_err());
        assert!(Table::from_values(usize::MAX, 2, vec![0.0; 2]).is_err());
    }

    #[test]
    fn errors_never_quote_the_data() {
        let secret = "patient-4711-secret";
        let err = Table::from_csv(format!("1,2\n3,{secret}\n").as_bytes()).expect_err("bad cell");
        assert!(!err.to_string().contains("4711"), "{err}");
        assert!(err.to_string().contains("line 2, column 2"), "{err}");
    }
}
