//! Fitting: the statistics a step needs (means and standard deviations by Welford's method,
//! minimum and maximum, medians, most frequent values, vocabularies), gathered one row at a
//! time in a streaming pass, and the fitted parameters they become, as `preprocessing.json`
//! keeps them so that the same transform can be applied later without refitting.
//!
//! Memory: moments and ranges are a few numbers per column; medians, most frequent values and
//! vocabularies count distinct values, at most [`MAX_DISTINCT`] per column (more is refused,
//! naming the column).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pipeline::{Literal, StepSpec, Strategy, Unknown, step_error};
use crate::error::DataError;
use crate::schema::{ColumnType, Field, Value};

/// Distinct values counted per column for a median, a most frequent value or a vocabulary.
pub const MAX_DISTINCT: usize = 1_000_000;

/// A value as a sortable, hashable key: numbers in numeric order (`-0.0` is `0.0`; NaN has
/// none), strings in byte order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

/// `x`'s bits, flipped so that unsigned order is numeric order.
fn ordered_bits(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

fn from_ordered_bits(key: u64) -> f64 {
    if key >> 63 == 1 { f64::from_bits(key & !(1 << 63)) } else { f64::from_bits(!key) }
}

impl Key {
    pub(crate) fn of(value: &Value) -> Option<Key> {
        match value {
            Value::Null => None,
            Value::Float(x) if x.is_nan() => None,
            Value::Float(x) => Some(Key::Float(ordered_bits(*x))),
            Value::Int(i) => Some(Key::Int(*i)),
            Value::Str(s) => Some(Key::Str(s.clone())),
            Value::Bool(b) => Some(Key::Bool(*b)),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Key::Int(i) => Some(*i as f64),
            Key::Float(bits) => Some(from_ordered_bits(*bits)),
            _ => None,
        }
    }

    fn literal(&self) -> Literal {
        match self {
            Key::Bool(b) => Literal::Bool(*b),
            Key::Int(i) => Literal::Int(*i),
            Key::Float(bits) => Literal::Float(from_ordered_bits(*bits)),
            Key::Str(s) => Literal::Str(s.clone()),
        }
    }

    /// The category's name in a vocabulary (and in a one-hot column's name).
    pub(crate) fn category(&self) -> String {
        match self {
            Key::Bool(b) => b.to_string(),
            Key::Int(i) => i.to_string(),
            Key::Float(bits) => from_ordered_bits(*bits).to_string(),
            Key::Str(s) => s.clone(),
        }
    }
}

/// The category name of a value (`None` when missing).
pub(crate) fn category_of(value: &Value) -> Option<String> {
    Key::of(value).map(|key| key.category())
}

/// Mean and population standard deviation of a column, as fitted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moments {
    /// Values the statistics were taken over.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Their population standard deviation (0 when all are equal).
    pub std: f64,
}

/// The range of a column, as fitted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Values the range was taken over.
    pub count: u64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

/// A column's categories, as fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabulary {
    /// The categories kept (the most frequent, up to `max_categories`), sorted (numbers in
    /// numeric order, strings in byte order): one-hot columns and ordinal codes follow it.
    pub categories: Vec<String>,
    /// Distinct categories seen.
    pub distinct: u64,
    /// Values of categories left out by `max_categories` (treated as unknown).
    pub infrequent_values: u64,
}

/// A step's fitted parameters, per column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fitted {
    /// `impute`: the value that fills each column's missing values.
    Impute {
        /// Column → value.
        fill: BTreeMap<String, Literal>,
    },
    /// `standardize`.
    Standardize {
        /// Column → mean and standard deviation.
        columns: BTreeMap<String, Moments>,
    },
    /// `normalize`.
    Normalize {
        /// Column → minimum and maximum.
        columns: BTreeMap<String, Bounds>,
    },
    /// `one_hot` and `ordinal`.
    Categories {
        /// Column → its vocabulary.
        columns: BTreeMap<String, Vocabulary>,
    },
}

/// Statistics of one column.
struct ColumnFit {
    index: usize,
    name: String,
    count: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    counts: Option<BTreeMap<Key, u64>>,
}

impl ColumnFit {
    fn add(&mut self, value: &Value) -> Result<(), String> {
        let number = match value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) if !x.is_nan() => Some(*x),
            _ => None,
        };
        if let Some(x) = number {
            self.count += 1;
            // Welford: numerically stable running mean and sum of squared deviations.
            let delta = x - self.mean;
            self.mean += delta / self.count as f64;
            self.m2 += delta * (x - self.mean);
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        if let Some(counts) = &mut self.counts
            && let Some(key) = Key::of(value)
        {
            if counts.len() >= MAX_DISTINCT && !counts.contains_key(&key) {
                return Err(format!(
                    "column {:?} has more than {MAX_DISTINCT} distinct values, too many to \
                     count in bounded memory",
                    self.name
                ));
            }
            *counts.entry(key).or_default() += 1;
        }
        Ok(())
    }

    fn finite(&self, op: &str, index: usize, values: &[f64]) -> Result<(), DataError> {
        if values.iter().all(|v| v.is_finite()) {
            Ok(())
        } else {
            Err(step_error(
                index,
                op,
                format!(
                    "column {:?}: its statistics are not finite (an infinite value?)",
                    self.name
                ),
            ))
        }
    }

    fn empty(&self, op: &str, index: usize) -> DataError {
        step_error(index, op, format!("column {:?} has no values to fit on", self.name))
    }
}

/// Gathers a step's statistics over the rows that reach it.
pub(crate) struct Fitter {
    step: usize,
    spec: StepSpec,
    columns: Vec<ColumnFit>,
    rows: u64,
}

/// The types a step takes, in words, or `None` when `ty` is one of them.
fn wrong_type(spec: &StepSpec, ty: ColumnType) -> Option<&'static str> {
    let numeric = matches!(ty, ColumnType::Int | ColumnType::Float);
    match spec {
        StepSpec::Impute { strategy: Strategy::Mean | Strategy::Median, .. }
        | StepSpec::Standardize { .. }
        | StepSpec::Normalize { .. } => (!numeric).then_some("an int or float column"),
        StepSpec::OneHot { .. } | StepSpec::Ordinal { .. } => {
            (ty == ColumnType::Float).then_some("a string, int or bool column (not float)")
        }
        _ => None,
    }
}

/// The column of `fields` named `name`, with its type checked for `spec`.
pub(crate) fn typed_column(
    step: usize,
    spec: &StepSpec,
    fields: &[Field],
    name: &str,
) -> Result<usize, DataError> {
    let index = column(step, spec.op(), fields, name)?;
    let ty = fields.get(index).map_or(ColumnType::String, |f| f.ty);
    if let Some(expected) = wrong_type(spec, ty) {
        let what = match spec {
            StepSpec::Impute { strategy: Strategy::Mean, .. } => "strategy \"mean\"",
            StepSpec::Impute { strategy: Strategy::Median, .. } => "strategy \"median\"",
            _ => "it",
        };
        return Err(step_error(
            step,
            spec.op(),
            format!("column {name:?} is {ty}: {what} needs {expected}"),
        ));
    }
    Ok(index)
}

/// The index of column `name` in `fields`.
pub(crate) fn column(
    step: usize,
    op: &str,
    fields: &[Field],
    name: &str,
) -> Result<usize, DataError> {
    fields.iter().position(|f| f.name == name).ok_or_else(|| {
        let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        step_error(step, op, format!("no column {name:?} here (columns: {})", known.join(", ")))
    })
}

impl Fitter {
    /// A fitter for step `step` (which must need fitting) over rows of `fields`; its columns
    /// are checked first.
    pub(crate) fn new(step: usize, spec: &StepSpec, fields: &[Field]) -> Result<Self, DataError> {
        let (names, counted): (&[String], bool) = match spec {
            StepSpec::Impute { columns, strategy, .. } => {
                (columns, matches!(strategy, Strategy::Median | Strategy::MostFrequent))
            }
            StepSpec::Standardize { columns } | StepSpec::Normalize { columns } => (columns, false),
            StepSpec::OneHot { columns, .. } | StepSpec::Ordinal { columns, .. } => (columns, true),
            _ => (&[], false),
        };
        let columns = names
            .iter()
            .map(|name| {
                Ok(ColumnFit {
                    index: typed_column(step, spec, fields, name)?,
                    name: name.clone(),
                    count: 0,
                    mean: 0.0,
                    m2: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    counts: counted.then(BTreeMap::new),
                })
            })
            .collect::<Result<_, DataError>>()?;
        Ok(Fitter { step, spec: spec.clone(), columns, rows: 0 })
    }

    /// Counts one row (values of the fields given to [`Fitter::new`]).
    pub(crate) fn add(&mut self, row: &[Value]) -> Result<(), DataError> {
        self.rows += 1;
        for column in &mut self.columns {
            if let Some(value) = row.get(column.index) {
                column
                    .add(value)
                    .map_err(|reason| step_error(self.step, self.spec.op(), reason))?;
            }
        }
        Ok(())
    }

    /// Rows counted.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// The fitted parameters.
    pub(crate) fn finish(self) -> Result<Fitted, DataError> {
        let (step, op) = (self.step, self.spec.op());
        match &self.spec {
            StepSpec::Impute { strategy, .. } => {
                let mut fill = BTreeMap::new();
                for column in &self.columns {
                    let value = match strategy {
                        Strategy::Mean => {
                            if column.count == 0 {
                                return Err(column.empty(op, step));
                            }
                            column.finite(op, step, &[column.mean])?;
                            Literal::Float(column.mean)
                        }
                        Strategy::Median => Literal::Float(median(column, op, step)?),
                        Strategy::MostFrequent => {
                            most_frequent(column).ok_or_else(|| column.empty(op, step))?.literal()
                        }
                        Strategy::Constant => continue,
                    };
                    fill.insert(column.name.clone(), value);
                }
                Ok(Fitted::Impute { fill })
            }
            StepSpec::Standardize { .. } => {
                let mut columns = BTreeMap::new();
                for column in &self.columns {
                    if column.count == 0 {
                        return Err(column.empty(op, step));
                    }
                    let std = (column.m2 / column.count as f64).sqrt();
                    column.finite(op, step, &[column.mean, std])?;
                    let moments = Moments { count: column.count, mean: column.mean, std };
                    columns.insert(column.name.clone(), moments);
                }
                Ok(Fitted::Standardize { columns })
            }
            StepSpec::Normalize { .. } => {
                let mut columns = BTreeMap::new();
                for column in &self.columns {
                    if column.count == 0 {
                        return Err(column.empty(op, step));
                    }
                    column.finite(op, step, &[column.min, column.max, column.max - column.min])?;
                    let bounds = Bounds { count: column.count, min: column.min, max: column.max };
                    columns.insert(column.name.clone(), bounds);
                }
                Ok(Fitted::Normalize { columns })
            }
            StepSpec::OneHot { max_categories, unknown, .. }
            | StepSpec::Ordinal { max_categories, unknown, .. } => {
                let mut columns = BTreeMap::new();
                for column in &self.columns {
                    let counts = column.counts.as_ref().map(|c| c.iter()).into_iter().flatten();
                    let mut ranked: Vec<(&Key, u64)> = counts.map(|(k, n)| (k, *n)).collect();
                    let distinct = ranked.len();
                    if distinct > *max_categories && *unknown == Unknown::Error {
                        return Err(step_error(
                            step,
                            op,
                            format!(
                                "column {:?} has {distinct} categories, more than max_categories \
                                 {max_categories}: raise it, or set unknown = \"ignore\" or \
                                 \"other\"",
                                column.name
                            ),
                        ));
                    }
                    // Most frequent first, ties to the smallest; then the kept ones sorted.
                    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                    let infrequent_values =
                        ranked.iter().skip(*max_categories).map(|(_, n)| n).sum();
                    let mut kept: Vec<&Key> =
                        ranked.iter().take(*max_categories).map(|(k, _)| *k).collect();
                    kept.sort();
                    let vocabulary = Vocabulary {
                        categories: kept.iter().map(|k| k.category()).collect(),
                        distinct: distinct as u64,
                        infrequent_values,
                    };
                    columns.insert(column.name.clone(), vocabulary);
                }
                Ok(Fitted::Categories { columns })
            }
            _ => Err(step_error(step, op, "this step is not fitted")),
        }
    }
}

fn most_frequent(column: &ColumnFit) -> Option<Key> {
    let counts = column.counts.as_ref()?;
    let most = counts.values().copied().max()?;
    // BTreeMap order: the smallest of the most frequent.
    counts.iter().find(|(_, n)| **n == most).map(|(k, _)| k.clone())
}

/// The median: the middle value, or the mean of the two middle values for an even count.
fn median(column: &ColumnFit, op: &str, step: usize) -> Result<f64, DataError> {
    let counts = column.counts.as_ref().ok_or_else(|| column.empty(op, step))?;
    let total: u64 = counts.values().sum();
    if total == 0 {
        return Err(column.empty(op, step));
    }
    // 0-based ranks of the middle values.
    let (low, high) = ((total - 1) / 2, total / 2);
    let mut seen = 0;
    let (mut low_value, mut high_value) = (None, None);
    for (key, n) in counts {
        let next = seen + n;
        if low_value.is_none() && low < next {
            low_value = key.number();
        }
        if high < next {
            high_value = key.number();
            break;
        }
        seen = next;
    }
    let (Some(a), Some(b)) = (low_value, high_value) else {
        return Err(column.empty(op, step));
    };
    let middle = if a == b { a } else { a + (b - a) / 2.0 };
    column.finite(op, step, &[middle])?;
    Ok(middle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<Field> {
        vec![
            Field { name: "x".into(), ty: ColumnType::Float },
            Field { name: "n".into(), ty: ColumnType::Int },
            Field { name: "city".into(), ty: ColumnType::String },
        ]
    }

    fn fit(spec: &str, rows: &[[Value; 3]]) -> Result<Fitted, DataError> {
        let text = format!("version = 1\n[[step]]\n{spec}\n");
        let pipeline = super::super::pipeline::Pipeline::parse(&text)?;
        let mut fitter = Fitter::new(0, &pipeline.steps[0], &fields())?;
        for row in rows {
            fitter.add(row)?;
        }
        fitter.finish()
    }

    fn rows() -> Vec<[Value; 3]> {
        let row = |x: Option<f64>, n: Option<i64>, c: Option<&str>| {
            [
                x.map_or(Value::Null, Value::Float),
                n.map_or(Value::Null, Value::Int),
                c.map_or(Value::Null, |c| Value::Str(c.into())),
            ]
        };
        vec![
            row(Some(1.0), Some(4), Some("b")),
            row(Some(2.0), None, Some("a")),
            row(None, Some(1), Some("b")),
            row(Some(6.0), Some(10), None),
            row(Some(f64::NAN), Some(1), Some("c")),
        ]
    }

    #[test]
    fn statistics_match_hand_computed_values() {
        let Fitted::Impute { fill } =
            fit("op='impute'\nstrategy='mean'\ncolumns=['x','n']", &rows()).unwrap()
        else {
            panic!("not impute")
        };
        assert_eq!(fill["x"], Literal::Float(3.0));
        assert_eq!(fill["n"], Literal::Float(4.0));
        let Fitted::Impute { fill } =
            fit("op='impute'\nstrategy='median'\ncolumns=['x','n']", &rows()).unwrap()
        else {
            panic!("not impute")
        };
        assert_eq!(fill["x"], Literal::Float(2.0));
        // 1, 1, 4, 10: the mean of the middle two.
        assert_eq!(fill["n"], Literal::Float(2.5));
        let Fitted::Impute { fill } =
            fit("op='impute'\nstrategy='most_frequent'\ncolumns=['city','n']", &rows()).unwrap()
        else {
            panic!("not impute")
        };
        assert_eq!(fill["city"], Literal::Str("b".into()));
        assert_eq!(fill["n"], Literal::Int(1));
        let Fitted::Standardize { columns } =
            fit("op='standardize'\ncolumns=['x']", &rows()).unwrap()
        else {
            panic!("not standardize")
        };
        let x = columns["x"];
        assert_eq!((x.count, x.mean), (3, 3.0));
        assert!((x.std - (14.0_f64 / 3.0).sqrt()).abs() < 1e-12, "{x:?}");
        let Fitted::Normalize { columns } = fit("op='normalize'\ncolumns=['n']", &rows()).unwrap()
        else {
            panic!("not normalize")
        };
        assert_eq!((columns["n"].min, columns["n"].max), (1.0, 10.0));
        let Fitted::Categories { columns } =
            fit("op='ordinal'\ncolumns=['city', 'n']\nmax_categories=2\nunknown='other'", &rows())
                .unwrap()
        else {
            panic!("not categories")
        };
        // b twice; a and c once each, a kept as the smaller.
        assert_eq!(columns["city"].categories, ["a", "b"]);
        assert_eq!((columns["city"].distinct, columns["city"].infrequent_values), (3, 1));
        // Ints in numeric order: 1 (twice), then 4 and 10 once: 4 kept.
        assert_eq!(columns["n"].categories, ["1", "4"]);
    }

    #[test]
    fn fitting_refuses_wrong_types_and_empty_columns() {
        let cases = [
            ("op='impute'\nstrategy='mean'\ncolumns=['city']", "strategy \"mean\" needs an int"),
            ("op='impute'\nstrategy='median'\ncolumns=['city']", "needs an int or float"),
            ("op='standardize'\ncolumns=['city']", "needs an int or float"),
            ("op='one_hot'\ncolumns=['x']", "not float"),
            ("op='normalize'\ncolumns=['y']", "no column \"y\""),
            ("op='one_hot'\ncolumns=['city']\nmax_categories=2", "more than max_categories"),
        ];
        for (spec, expected) in cases {
            let error = fit(spec, &rows()).unwrap_err().to_string();
            assert!(error.contains(expected), "{spec}: {error}");
        }
        let none = [[Value::Null, Value::Null, Value::Null]];
        let error = fit("op='standardize'\ncolumns=['x']", &none).unwrap_err().to_string();
        assert!(error.contains("no values to fit on"), "{error}");
    }

    #[test]
    fn float_keys_sort_numerically() {
        let mut keys: Vec<Key> = [3.5, -2.0, 0.0, -0.0, 10.0, -11.5]
            .iter()
            .map(|x| Key::of(&Value::Float(*x)).unwrap())
            .collect();
        keys.sort();
        keys.dedup();
        let back: Vec<f64> = keys.iter().filter_map(Key::number).collect();
        assert_eq!(back, [-11.5, -2.0, 0.0, 3.5, 10.0]);
    }
}
