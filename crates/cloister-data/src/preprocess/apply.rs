//! Binding and applying steps: a step is checked against the columns that reach it (names,
//! types, fitted parameters, the key) and bound to their positions, giving the columns it hands
//! on; a bound step then transforms one row at a time, or drops it, counting what it did.

use std::collections::{HashMap, HashSet};

use super::fit::{Fitted, category_of, column, typed_column};
use super::pipeline::{Literal, OnError, StepSpec, Strategy, Unknown, step_error};
use super::text::{Cleaning, PseudonymKey, Pseudonymizer, Redactor, as_text, clean, row_digest};
use crate::error::{DataError, Location};
use crate::label::Condition;
use crate::schema::{Cell, ColumnType, Field, Value, convert};

/// The name of the indicator column of categories outside the vocabulary (`unknown = "other"`).
pub const OTHER_CATEGORY: &str = "__other__";

/// Where a row is: its shard and 1-based row in it.
pub(crate) struct RowAt<'a> {
    pub(crate) shard: &'a str,
    pub(crate) row: u64,
}

/// One column's one-hot encoder.
#[derive(Debug)]
struct Encoder {
    codes: HashMap<String, usize>,
    width: usize,
    unknown: Unknown,
}

#[derive(Debug)]
enum Op {
    Select(Vec<usize>),
    Rename,
    Cast { columns: Vec<(usize, ColumnType)>, on_error: OnError },
    Filter(Vec<Condition>),
    Fill { columns: Vec<(usize, Value, bool)> },
    Standardize(Vec<(usize, f64, f64)>),
    Normalize(Vec<(usize, f64, f64)>),
    OneHot(Vec<Option<Encoder>>),
    Ordinal(Vec<(usize, HashMap<String, i64>, Unknown)>),
    Clean { columns: Vec<usize>, how: Cleaning },
    Dedupe { key: Option<Vec<usize>>, seen: HashSet<[u8; 32]> },
    Redact { columns: Vec<usize>, redactor: Box<Redactor> },
    Pseudonymize { columns: Vec<usize>, maker: Box<Pseudonymizer> },
    Split { key: Option<Vec<usize>>, domain: Vec<u8>, shares: [(f64, &'static str); 3] },
}

/// A step bound to the columns that reach it.
#[derive(Debug)]
pub(crate) struct Bound {
    step: usize,
    op: Op,
    names: Vec<String>,
    /// Rows that reached the step.
    pub(crate) rows_in: u64,
    /// Rows it handed on.
    pub(crate) rows_out: u64,
    /// Values it changed (cast to missing, filled, scaled, cleaned, redacted, …).
    pub(crate) changed: u64,
}

/// Split the fractions' names in order.
const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// Domain separation of the split hash.
const SPLIT_DOMAIN: &[u8] = b"cloister-split-v1\0";

/// A literal as a value of column type `ty`, if it fits (an int fits a float column).
fn literal_value(literal: &Literal, ty: ColumnType) -> Option<Value> {
    match (literal, ty) {
        (Literal::Int(i), ColumnType::Int) => Some(Value::Int(*i)),
        (Literal::Int(i), ColumnType::Float) => Some(Value::Float(*i as f64)),
        (Literal::Float(x), ColumnType::Float) => Some(Value::Float(*x)),
        (Literal::Str(s), ColumnType::String) => Some(Value::Str(s.clone())),
        (Literal::Bool(b), ColumnType::Bool) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// `value` converted to `to`, as ingest converts (text parsed, ints to floats and text), and a
/// float to an int when it is a whole number in range.
pub(crate) fn cast_value(value: Value, to: ColumnType) -> Result<Value, String> {
    let cell = match value {
        Value::Null => return Ok(Value::Null),
        Value::Float(x) if to == ColumnType::Int => {
            // 2^63 as a float: the first value out of range.
            let limit = 9_223_372_036_854_775_808.0;
            return if x.fract() == 0.0 && x >= -limit && x < limit {
                Ok(Value::Int(x as i64))
            } else {
                Err(format!("cannot cast {x} to int (not a whole number in range)"))
            };
        }
        Value::Int(i) => Cell::Int(i),
        Value::Float(x) => Cell::Float(x),
        Value::Str(s) => Cell::Str(s),
        Value::Bool(b) => Cell::Bool(b),
    };
    convert(cell, to).map_err(|problem| format!("cannot cast: {problem}"))
}

fn names_of(
    fields: &[Field],
    spec: &StepSpec,
    step: usize,
    names: &[String],
) -> Result<Vec<usize>, DataError> {
    names.iter().map(|name| typed_column(step, spec, fields, name)).collect()
}

fn string_columns(
    fields: &[Field],
    spec: &StepSpec,
    step: usize,
    names: &[String],
) -> Result<Vec<usize>, DataError> {
    names
        .iter()
        .map(|name| {
            let index = column(step, spec.op(), fields, name)?;
            match fields.get(index) {
                Some(field) if field.ty == ColumnType::String => Ok(index),
                Some(field) => Err(step_error(
                    step,
                    spec.op(),
                    format!("column {name:?} is {}: it needs a string column", field.ty),
                )),
                None => Err(step_error(step, spec.op(), format!("no column {name:?}"))),
            }
        })
        .collect()
}

fn key_columns(
    fields: &[Field],
    op: &str,
    step: usize,
    names: &[String],
) -> Result<Option<Vec<usize>>, DataError> {
    if names.is_empty() {
        return Ok(None);
    }
    names.iter().map(|name| column(step, op, fields, name)).collect::<Result<_, _>>().map(Some)
}

/// Fitted parameters of the wrong kind, or without a column.
fn not_fitted(step: usize, op: &str, what: &str) -> DataError {
    step_error(step, op, format!("the fitted parameters have no {what}"))
}

/// Binds step `step` to `fields`. A step that needs fitting takes `fitted`; with `None` it is
/// bound with placeholder parameters, only to check it (and a `one_hot`, whose columns depend on
/// its vocabulary, hands on none of its own). `pseudonymize` needs `key`.
pub(crate) fn bind(
    step: usize,
    spec: &StepSpec,
    fields: &[Field],
    fitted: Option<&Fitted>,
    key: Option<&PseudonymKey>,
) -> Result<(Bound, Vec<Field>), DataError> {
    let op_name = spec.op();
    let refuse = |reason: String| step_error(step, op_name, reason);
    let mut out: Vec<Field> = fields.to_vec();
    let op = match spec {
        StepSpec::Select { columns } => {
            let indices: Vec<usize> = columns
                .iter()
                .map(|name| column(step, op_name, fields, name))
                .collect::<Result<_, _>>()?;
            out = indices.iter().filter_map(|&i| fields.get(i).cloned()).collect();
            Op::Select(indices)
        }
        StepSpec::Rename { columns } => {
            for (old, new) in columns {
                let index = column(step, op_name, fields, old)?;
                if new.trim().is_empty() {
                    return Err(refuse(format!("the new name of {old:?} is empty")));
                }
                if let Some(field) = out.get_mut(index) {
                    field.name.clone_from(new);
                }
            }
            let mut seen = HashSet::new();
            if let Some(twice) = out.iter().find(|f| !seen.insert(f.name.as_str())) {
                return Err(refuse(format!("two columns would be named {:?}", twice.name)));
            }
            Op::Rename
        }
        StepSpec::Cast { columns, on_error } => {
            let mut targets = Vec::new();
            for (name, ty) in columns {
                let index = column(step, op_name, fields, name)?;
                if let Some(field) = out.get_mut(index) {
                    field.ty = *ty;
                }
                targets.push((index, *ty));
            }
            Op::Cast { columns: targets, on_error: *on_error }
        }
        StepSpec::Filter { when } => Op::Filter(
            when.iter()
                .map(|text| Condition::parse(fields, text).map_err(&refuse))
                .collect::<Result<_, _>>()?,
        ),
        StepSpec::Impute { strategy, columns, value } => {
            let indices = names_of(fields, spec, step, columns)?;
            let fill = match (fitted, value) {
                (Some(Fitted::Impute { fill }), _) => Some(fill),
                (Some(_), _) => return Err(not_fitted(step, op_name, "fill values")),
                (None, _) => None,
            };
            let mut bound = Vec::new();
            for (name, index) in columns.iter().zip(indices) {
                let ty = fields.get(index).map_or(ColumnType::String, |f| f.ty);
                let to_float = matches!(strategy, Strategy::Mean | Strategy::Median);
                let out_ty = if to_float { ColumnType::Float } else { ty };
                let literal =
                    match (strategy, value, fill) {
                        (Strategy::Constant, Some(literal), _) => Some(literal),
                        (_, _, Some(fill)) => Some(fill.get(name).ok_or_else(|| {
                            not_fitted(step, op_name, &format!("column {name:?}"))
                        })?),
                        _ => None,
                    };
                let filler = match literal {
                    Some(literal) => literal_value(literal, out_ty).ok_or_else(|| {
                        refuse(format!("value {literal:?} does not fit column {name:?} ({out_ty})"))
                    })?,
                    None => Value::Null,
                };
                if let Some(field) = out.get_mut(index) {
                    field.ty = out_ty;
                }
                bound.push((index, filler, to_float && ty == ColumnType::Int));
            }
            Op::Fill { columns: bound }
        }
        StepSpec::Standardize { columns } | StepSpec::Normalize { columns } => {
            let indices = names_of(fields, spec, step, columns)?;
            let mut params = Vec::new();
            for (name, index) in columns.iter().zip(indices) {
                let pair = match fitted {
                    None => (0.0, 1.0),
                    Some(Fitted::Standardize { columns }) => columns
                        .get(name)
                        .map(|m| (m.mean, m.std))
                        .ok_or_else(|| not_fitted(step, op_name, &format!("column {name:?}")))?,
                    Some(Fitted::Normalize { columns }) => columns
                        .get(name)
                        .map(|b| (b.min, b.max))
                        .ok_or_else(|| not_fitted(step, op_name, &format!("column {name:?}")))?,
                    Some(_) => return Err(not_fitted(step, op_name, "scales")),
                };
                if !(pair.0.is_finite() && pair.1.is_finite()) {
                    return Err(refuse(format!("column {name:?}: fitted parameters not finite")));
                }
                if let Some(field) = out.get_mut(index) {
                    field.ty = ColumnType::Float;
                }
                params.push((index, pair.0, pair.1));
            }
            match (spec, fitted) {
                (StepSpec::Standardize { .. }, None | Some(Fitted::Standardize { .. })) => {
                    Op::Standardize(params)
                }
                (StepSpec::Normalize { .. }, None | Some(Fitted::Normalize { .. })) => {
                    Op::Normalize(params)
                }
                _ => return Err(not_fitted(step, op_name, "scales of this kind")),
            }
        }
        StepSpec::OneHot { columns, unknown, .. } | StepSpec::Ordinal { columns, unknown, .. } => {
            let indices = names_of(fields, spec, step, columns)?;
            let vocabularies = match fitted {
                Some(Fitted::Categories { columns }) => Some(columns),
                Some(_) => return Err(not_fitted(step, op_name, "vocabularies")),
                None => None,
            };
            let mut categories = HashMap::new();
            for (name, index) in columns.iter().zip(&indices) {
                let list: Vec<String> = match vocabularies {
                    Some(v) => v
                        .get(name)
                        .map(|v| v.categories.clone())
                        .ok_or_else(|| not_fitted(step, op_name, &format!("column {name:?}")))?,
                    None => Vec::new(),
                };
                categories.insert(*index, list);
            }
            if matches!(spec, StepSpec::Ordinal { .. }) {
                let mut bound = Vec::new();
                for index in indices {
                    let list = categories.remove(&index).unwrap_or_default();
                    let codes = list.into_iter().zip(0_i64..).collect();
                    if let Some(field) = out.get_mut(index) {
                        field.ty = ColumnType::Int;
                    }
                    bound.push((index, codes, *unknown));
                }
                Op::Ordinal(bound)
            } else {
                let mut encoders = Vec::with_capacity(fields.len());
                out = Vec::new();
                for (index, field) in fields.iter().enumerate() {
                    let Some(list) = categories.remove(&index) else {
                        out.push(field.clone());
                        encoders.push(None);
                        continue;
                    };
                    let mut names: Vec<String> =
                        list.iter().map(|c| format!("{}={c}", field.name)).collect();
                    if *unknown == Unknown::Other {
                        names.push(format!("{}={OTHER_CATEGORY}", field.name));
                    }
                    out.extend(
                        names.iter().map(|name| Field { name: name.clone(), ty: ColumnType::Int }),
                    );
                    encoders.push(Some(Encoder {
                        codes: list.into_iter().zip(0..).collect(),
                        width: names.len(),
                        unknown: *unknown,
                    }));
                }
                let mut seen = HashSet::new();
                if let Some(twice) = out.iter().find(|f| !seen.insert(f.name.as_str())) {
                    return Err(refuse(format!("two columns would be named {:?}", twice.name)));
                }
                Op::OneHot(encoders)
            }
        }
        StepSpec::TextClean { columns, lowercase, whitespace, control, nfc } => Op::Clean {
            columns: string_columns(fields, spec, step, columns)?,
            how: Cleaning {
                lowercase: *lowercase,
                whitespace: *whitespace,
                control: *control,
                nfc: *nfc,
            },
        },
        StepSpec::Dedupe { columns } => {
            Op::Dedupe { key: key_columns(fields, op_name, step, columns)?, seen: HashSet::new() }
        }
        StepSpec::Redact { columns, pii, regex, values, placeholder } => Op::Redact {
            columns: string_columns(fields, spec, step, columns)?,
            redactor: Box::new(Redactor::new(pii, regex, values, placeholder).map_err(refuse)?),
        },
        StepSpec::Pseudonymize { columns, prefix, length } => {
            let Some(key) = key else {
                return Err(refuse(
                    "needs a key: give the key file (--key-file); it is never written out".into(),
                ));
            };
            let indices: Vec<usize> = columns
                .iter()
                .map(|name| column(step, op_name, fields, name))
                .collect::<Result<_, _>>()?;
            for &index in &indices {
                if let Some(field) = out.get_mut(index) {
                    field.ty = ColumnType::String;
                }
            }
            Op::Pseudonymize {
                columns: indices,
                maker: Box::new(Pseudonymizer::new(key, prefix, *length).map_err(refuse)?),
            }
        }
        StepSpec::Split { seed, train, validation, test, column: name, by } => {
            if fields.iter().any(|f| &f.name == name) {
                return Err(refuse(format!(
                    "there is a column {name:?} already; name another with `column`"
                )));
            }
            out.push(Field { name: name.clone(), ty: ColumnType::String });
            let mut domain = SPLIT_DOMAIN.to_vec();
            domain.extend(seed.to_le_bytes());
            Op::Split {
                key: key_columns(fields, op_name, step, by)?,
                domain,
                shares: [(*train, SPLITS[0]), (*validation, SPLITS[1]), (*test, SPLITS[2])],
            }
        }
    };
    let names = fields.iter().map(|f| f.name.clone()).collect();
    Ok((Bound { step, op, names, rows_in: 0, rows_out: 0, changed: 0 }, out))
}

/// A row a step cannot transform: the shard, row and column, then the step and why.
fn row_error(
    names: &[String],
    step: usize,
    at: &RowAt<'_>,
    column: usize,
    reason: impl std::fmt::Display,
) -> DataError {
    DataError::Transform {
        at: Location { file: at.shard.to_owned(), row: at.row, column: names.get(column).cloned() },
        reason: format!("step {} {reason}", step + 1),
    }
}

/// Runs `row` through `steps` in order: `Some(held_out)` when every step kept it (`held_out`
/// set by a `split` for rows outside train), `None` when one dropped it.
pub(crate) fn apply_all(
    steps: &mut [Bound],
    row: &mut Vec<Value>,
    at: &RowAt<'_>,
) -> Result<Option<bool>, DataError> {
    let mut held_out = false;
    for step in steps.iter_mut() {
        if !step.apply(row, &mut held_out, at)? {
            return Ok(None);
        }
    }
    Ok(Some(held_out))
}

impl Bound {
    /// Transforms `row` in place; `false` drops it. `held_out` is set by `split` for rows
    /// outside train (fitting skips them).
    pub(crate) fn apply(
        &mut self,
        row: &mut Vec<Value>,
        held_out: &mut bool,
        at: &RowAt<'_>,
    ) -> Result<bool, DataError> {
        self.rows_in += 1;
        let keep = self.transform(row, held_out, at)?;
        self.rows_out += u64::from(keep);
        Ok(keep)
    }

    fn transform(
        &mut self,
        row: &mut Vec<Value>,
        held_out: &mut bool,
        at: &RowAt<'_>,
    ) -> Result<bool, DataError> {
        let mut changed = 0;
        match &mut self.op {
            Op::Select(indices) => {
                let picked =
                    indices.iter().map(|&i| row.get(i).cloned().unwrap_or(Value::Null)).collect();
                *row = picked;
            }
            Op::Rename => {}
            Op::Cast { columns, on_error } => {
                for (index, to) in columns.iter() {
                    let Some(slot) = row.get_mut(*index) else { continue };
                    match cast_value(std::mem::replace(slot, Value::Null), *to) {
                        Ok(value) => *slot = value,
                        Err(_) if *on_error == OnError::Missing => changed += 1,
                        Err(reason) => {
                            return Err(row_error(
                                &self.names,
                                self.step,
                                at,
                                *index,
                                format!("(cast): {reason}"),
                            ));
                        }
                    }
                }
            }
            Op::Filter(conditions) => {
                if !conditions.iter().all(|c| c.holds(row)) {
                    return Ok(false);
                }
            }
            Op::Fill { columns } => {
                for (index, filler, to_float) in columns.iter() {
                    let Some(slot) = row.get_mut(*index) else { continue };
                    match slot {
                        Value::Null => {
                            *slot = filler.clone();
                            changed += 1;
                        }
                        Value::Int(i) if *to_float => *slot = Value::Float(*i as f64),
                        _ => {}
                    }
                }
            }
            Op::Standardize(params) => {
                for (index, mean, std) in params.iter() {
                    let Some(slot) = row.get_mut(*index) else { continue };
                    if let Some(x) = number(slot) {
                        *slot = Value::Float(if *std > 0.0 { (x - *mean) / *std } else { 0.0 });
                        changed += 1;
                    }
                }
            }
            Op::Normalize(params) => {
                for (index, min, max) in params.iter() {
                    let Some(slot) = row.get_mut(*index) else { continue };
                    if let Some(x) = number(slot) {
                        let span = *max - *min;
                        *slot = Value::Float(if span > 0.0 { (x - *min) / span } else { 0.0 });
                        changed += 1;
                    }
                }
            }
            Op::OneHot(encoders) => {
                let mut encoded = Vec::with_capacity(row.len());
                for (index, value) in row.drain(..).enumerate() {
                    let Some(Some(encoder)) = encoders.get(index) else {
                        encoded.push(value);
                        continue;
                    };
                    let Some(category) = category_of(&value) else {
                        encoded.extend(std::iter::repeat_n(Value::Null, encoder.width));
                        continue;
                    };
                    let hot = match (encoder.codes.get(&category), encoder.unknown) {
                        (Some(code), _) => Some(*code),
                        (None, Unknown::Other) => Some(encoder.width - 1),
                        (None, Unknown::Ignore) => None,
                        (None, Unknown::Error) => {
                            return Err(row_error(
                                &self.names,
                                self.step,
                                at,
                                index,
                                format!("(one_hot): category {category:?} was not fitted"),
                            ));
                        }
                    };
                    encoded
                        .extend((0..encoder.width).map(|i| Value::Int(i64::from(Some(i) == hot))));
                    changed += 1;
                }
                *row = encoded;
            }
            Op::Ordinal(columns) => {
                for (index, codes, unknown) in columns.iter() {
                    let Some(slot) = row.get_mut(*index) else { continue };
                    let Some(category) = category_of(slot) else { continue };
                    *slot = match (codes.get(&category), unknown) {
                        (Some(code), _) => Value::Int(*code),
                        (None, Unknown::Other) => Value::Int(codes.len() as i64),
                        (None, Unknown::Ignore) => Value::Null,
                        (None, Unknown::Error) => {
                            return Err(row_error(
                                &self.names,
                                self.step,
                                at,
                                *index,
                                format!("(ordinal): category {category:?} was not fitted"),
                            ));
                        }
                    };
                    changed += 1;
                }
            }
            Op::Clean { columns, how } => {
                for index in columns.iter() {
                    if let Some(Value::Str(text)) = row.get_mut(*index) {
                        let cleaned = clean(text, *how);
                        if cleaned != *text {
                            *text = cleaned;
                            changed += 1;
                        }
                    }
                }
            }
            Op::Dedupe { key, seen } => {
                let digest = match key {
                    Some(key) => row_digest(b"dedupe", key.iter().filter_map(|&i| row.get(i))),
                    None => row_digest(b"dedupe", row.iter()),
                };
                if !seen.insert(digest) {
                    return Ok(false);
                }
            }
            Op::Redact { columns, redactor } => {
                for index in columns.iter() {
                    if let Some(Value::Str(text)) = row.get_mut(*index)
                        && let Some(redacted) = redactor.redact(text)
                    {
                        *text = redacted;
                        changed += 1;
                    }
                }
            }
            Op::Pseudonymize { columns, maker } => {
                for index in columns.iter() {
                    let Some(slot) = row.get_mut(*index) else { continue };
                    if let Some(text) = as_text(slot) {
                        *slot = Value::Str(maker.token(&text));
                        changed += 1;
                    }
                }
            }
            Op::Split { key, domain, shares } => {
                let digest = match key {
                    Some(key) => row_digest(domain, key.iter().filter_map(|&i| row.get(i))),
                    None => row_digest(domain, row.iter()),
                };
                let mut head = [0_u8; 8];
                head.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
                // 53 random bits as a uniform number in [0, 1).
                let u = (u64::from_le_bytes(head) >> 11) as f64 / (1_u64 << 53) as f64;
                let mut cumulative = 0.0;
                let mut chosen = None;
                for (share, name) in shares.iter() {
                    if *share <= 0.0 {
                        continue;
                    }
                    cumulative += share;
                    chosen = Some(*name);
                    if u < cumulative {
                        break;
                    }
                }
                let name = chosen.unwrap_or(SPLITS[0]);
                *held_out = name != SPLITS[0];
                row.push(Value::Str(name.to_owned()));
            }
        }
        self.changed += changed;
        Ok(true)
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(x) => Some(*x),
        _ => None,
    }
}
