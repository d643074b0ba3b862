//! Model outputs as a table, and their CSV form.

use std::fmt::Write as _;

use super::EngineError;

/// The first output of a model over a data set: one row per input row, the output's non-batch
/// dimensions flattened into `columns` (named `<output>_<i>`, or `<output>` for a single value).
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Column names, e.g. `probabilities_0`, `probabilities_1`.
    pub columns: Vec<String>,
    /// Number of rows.
    pub rows: usize,
    /// `rows * columns.len()` values, row-major.
    pub values: Vec<f32>,
}

impl Predictions {
    /// CSV with a header line of column names, then one line per row. Values are written in
    /// Rust's shortest round-trip form, so [`Predictions::from_csv`] reads back the same numbers.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = String::with_capacity(16 * (self.values.len() + self.columns.len()));
        let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
        // Column names are produced by us from ONNX names; quote through the csv crate anyway.
        if writer.write_record(&self.columns).is_ok()
            && let Ok(header) = writer.into_inner()
        {
            out.push_str(&String::from_utf8_lossy(&header));
        }
        let width = self.columns.len();
        if width > 0 {
            for row in self.values.chunks(width) {
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{v}");
                }
                out.push('\n');
            }
        }
        out.into_bytes()
    }

    /// Parses the CSV written by [`Predictions::to_csv`]: a header of column names, then rows of
    /// numbers, all with the same number of cells.
    ///
    /// # Errors
    /// [`EngineError::InvalidData`] when the header is missing, a row is ragged or a cell is not
    /// a number (naming the line).
    pub fn from_csv(bytes: &[u8]) -> Result<Predictions, EngineError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| EngineError::InvalidData(format!("CSV syntax error: {e}")))?
            .iter()
            .map(str::to_owned)
            .collect();
        if columns.is_empty() || columns.iter().all(String::is_empty) {
            return Err(EngineError::InvalidData("predictions CSV has no header line".into()));
        }
        let mut values = Vec::new();
        let mut rows = 0usize;
        for record in reader.records() {
            let record =
                record.map_err(|e| EngineError::InvalidData(format!("CSV syntax error: {e}")))?;
            let line = record.position().map_or(0, csv::Position::line);
            if record.len() != columns.len() {
                return Err(EngineError::InvalidData(format!(
                    "line {line} has {} values but the header has {} columns",
                    record.len(),
                    columns.len()
                )));
            }
            for (i, cell) in record.iter().enumerate() {
                let v = cell.parse::<f32>().map_err(|_| {
                    EngineError::InvalidData(format!("line {line}, column {}: not a number", i + 1))
                })?;
                values.push(v);
            }
            rows += 1;
        }
        Ok(Predictions { columns, rows, values })
    }

    /// Index of the largest value in each row (the predicted class for a classifier); the first
    /// index wins ties, NaN never wins. Rows are taken as `columns.len()` values each.
    pub fn argmax(&self) -> Vec<usize> {
        let width = self.columns.len();
        if width == 0 {
            return vec![0; self.rows];
        }
        self.values
            .chunks(width)
            .take(self.rows)
            .map(|row| {
                let mut best = 0usize;
                for (i, v) in row.iter().enumerate() {
                    if *v > row[best] || row[best].is_nan() && !v.is_nan() {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Predictions {
        Predictions {
            columns: vec!["probabilities_0".into(), "probabilities_1".into()],
            rows: 3,
            values: vec![0.1, 0.9, 0.75, 0.25, 1.0e-7, 0.999_999_9],
        }
    }

    #[test]
    fn csv_round_trip_is_exact() {
        let p = sample();
        let csv = p.to_csv();
        let text = String::from_utf8(csv.clone()).expect("utf8");
        assert!(text.starts_with("probabilities_0,probabilities_1\n0.1,0.9\n"), "{text}");
        assert_eq!(Predictions::from_csv(&csv).expect("parse"), p);
    }

    #[test]
    fn argmax_picks_the_largest() {
        assert_eq!(sample().argmax(), vec![1, 0, 1]);
        let p = Predictions {
            columns: vec!["a".into(), "b".into(), "c".into()],
            rows: 2,
            values: vec![f32::NAN, 1.0, 1.0, 2.0, f32::NAN, 3.0],
        };
        assert_eq!(p.argmax(), vec![1, 2]);
    }

    #[test]
    fn from_csv_rejects_bad_input() {
        assert!(Predictions::from_csv(b"").is_err());
        let err = Predictions::from_csv(b"a,b\n1,2\n3\n").expect_err("ragged");
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(Predictions::from_csv(b"a,b\n1,x\n").is_err());
    }
}
