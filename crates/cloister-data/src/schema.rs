//! Column types, the cells records arrive as, type inference over a window of records, the
//! conversion of a cell to its column's type, and schema overrides (`--type`, `--schema`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Problem, shorten};

/// The type of a data set column (stored in Parquet as Int64, Float64, Boolean or Utf8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// A 64-bit signed integer.
    Int,
    /// A 64-bit float.
    Float,
    /// Text.
    String,
    /// `true` or `false`.
    Bool,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::String => "string",
            Self::Bool => "bool",
        })
    }
}

impl FromStr for ColumnType {
    type Err = DataError;

    fn from_str(text: &str) -> Result<Self, DataError> {
        match text {
            "int" => Ok(Self::Int),
            "float" => Ok(Self::Float),
            "string" => Ok(Self::String),
            "bool" => Ok(Self::Bool),
            other => Err(DataError::Override(format!(
                "unknown type {other:?} (int, float, string or bool)"
            ))),
        }
    }
}

/// One column of a schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The column's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// A value as a record delivers it, before it has its column's type: text from CSV/TSV, typed
/// values from JSON, Parquet and Arrow.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Absent: an empty CSV field, a JSON `null` or missing key, a null in Arrow.
    Missing,
    /// Text still to be parsed (CSV, TSV) or a string value.
    Text(String),
    /// A string value that is not parsed into a number or boolean (JSON, Arrow strings).
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// A value of its column's type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Missing.
    Null,
    /// An `int` value.
    Int(i64),
    /// A `float` value.
    Float(f64),
    /// A `string` value.
    Str(String),
    /// A `bool` value.
    Bool(bool),
}

/// Parses a boolean the way inference does: `true` or `false` in any case.
fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The narrowest type a cell fits, or `None` for a missing one.
fn kind(cell: &Cell) -> Option<ColumnType> {
    match cell {
        Cell::Missing => None,
        Cell::Text(text) => {
            let text = text.trim();
            Some(if parse_bool(text).is_some() {
                ColumnType::Bool
            } else if text.parse::<i64>().is_ok() {
                ColumnType::Int
            } else if text.parse::<f64>().is_ok() {
                ColumnType::Float
            } else {
                ColumnType::String
            })
        }
        Cell::Str(_) => Some(ColumnType::String),
        Cell::Int(_) => Some(ColumnType::Int),
        Cell::Float(_) => Some(ColumnType::Float),
        Cell::Bool(_) => Some(ColumnType::Bool),
    }
}

/// The narrowest type holding values of both types: ints widen to floats, anything else mixed
/// is text.
fn widen(a: ColumnType, b: ColumnType) -> ColumnType {
    use ColumnType::{Float, Int};
    match (a, b) {
        (a, b) if a == b => a,
        (Int, Float) | (Float, Int) => Float,
        _ => ColumnType::String,
    }
}

/// Infers each column's type from a window of records (rows of cells, one per column): the
/// narrowest type every non-missing value fits; a column with no value in the window is text.
pub fn infer(columns: &[String], window: &[Vec<Cell>]) -> Vec<Field> {
    columns
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let ty = window
                .iter()
                .filter_map(|row| row.get(index).and_then(kind))
                .reduce(widen)
                .unwrap_or(ColumnType::String);
            Field { name: name.clone(), ty }
        })
        .collect()
}

/// Converts a cell to its column's type: text is parsed (surrounding spaces ignored for
/// numbers and booleans), ints widen to floats, anything becomes text; nothing else converts.
pub fn convert(cell: Cell, ty: ColumnType) -> Result<Value, Problem> {
    let mismatch = |value: String| Problem::TypeMismatch { expected: ty, value: shorten(&value) };
    Ok(match (cell, ty) {
        (Cell::Missing, _) => Value::Null,
        (Cell::Text(text) | Cell::Str(text), ColumnType::String) => Value::Str(text),
        (Cell::Int(value), ColumnType::String) => Value::Str(value.to_string()),
        (Cell::Float(value), ColumnType::String) => Value::Str(value.to_string()),
        (Cell::Bool(value), ColumnType::String) => Value::Str(value.to_string()),
        (Cell::Int(value), ColumnType::Int) => Value::Int(value),
        (Cell::Int(value), ColumnType::Float) => Value::Float(value as f64),
        (Cell::Float(value), ColumnType::Float) => Value::Float(value),
        (Cell::Bool(value), ColumnType::Bool) => Value::Bool(value),
        (Cell::Text(text) | Cell::Str(text), ColumnType::Int) => {
            Value::Int(text.trim().parse().map_err(|_| mismatch(text))?)
        }
        (Cell::Text(text) | Cell::Str(text), ColumnType::Float) => {
            Value::Float(text.trim().parse().map_err(|_| mismatch(text))?)
        }
        (Cell::Text(text) | Cell::Str(text), ColumnType::Bool) => {
            Value::Bool(parse_bool(text.trim()).ok_or_else(|| mismatch(text))?)
        }
        (Cell::Float(value), ColumnType::Int) => return Err(mismatch(value.to_string())),
        (Cell::Bool(value), ColumnType::Int | ColumnType::Float) => {
            return Err(mismatch(value.to_string()));
        }
        (Cell::Int(value), ColumnType::Bool) => return Err(mismatch(value.to_string())),
        (Cell::Float(value), ColumnType::Bool) => return Err(mismatch(value.to_string())),
    })
}

/// Column types set by the user, by column name: from a schema file (a JSON object
/// `{"column": "int", …}`) and `--type column=TYPE` arguments, the latter winning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides(BTreeMap<String, ColumnType>);

impl Overrides {
    /// Reads a schema file's JSON object of column names to types.
    pub fn from_schema_json(bytes: &[u8]) -> Result<Self, DataError> {
        let map: BTreeMap<String, String> = serde_json::from_slice(bytes).map_err(|error| {
            DataError::Override(format!(
                "a schema file is a JSON object of column names to int, float, string or \
                 bool: {error}"
            ))
        })?;
        let mut overrides = Self::default();
        for (name, ty) in map {
            overrides.0.insert(name, ty.parse()?);
        }
        Ok(overrides)
    }

    /// Adds a `column=TYPE` argument.
    pub fn add_argument(&mut self, argument: &str) -> Result<(), DataError> {
        let (name, ty) = argument
            .rsplit_once('=')
            .ok_or_else(|| DataError::Override(format!("{argument:?} is not COLUMN=TYPE")))?;
        if name.is_empty() {
            return Err(DataError::Override(format!("{argument:?} names no column")));
        }
        self.0.insert(name.to_owned(), ty.parse()?);
        Ok(())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the overrides to an inferred schema; an override naming no column is an error
    /// (a misspelt name must not leave a column silently inferred).
    pub fn apply(&self, fields: &mut [Field]) -> Result<(), DataError> {
        for (name, ty) in &self.0 {
            let field = fields.iter_mut().find(|field| &field.name == name).ok_or_else(|| {
                DataError::Override(format!("no column named {name:?} in the input"))
            })?;
            field.ty = *ty;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Cell {
        Cell::Text(value.to_owned())
    }

    #[test]
    fn inference_takes_the_narrowest_type_and_widens_ints_to_floats() {
        let columns: Vec<String> = ["a", "b", "c", "d", "e"].map(str::to_owned).to_vec();
        let window = vec![
            vec![text("1"), text("1"), text("true"), text("x"), Cell::Missing],
            vec![text("2"), text("2.5"), text("FALSE"), text("3"), Cell::Missing],
            vec![Cell::Missing, text(" 7 "), Cell::Missing, text("4"), Cell::Missing],
        ];
        let types: Vec<ColumnType> = infer(&columns, &window).iter().map(|f| f.ty).collect();
        assert_eq!(
            types,
            [
                ColumnType::Int,
                ColumnType::Float,
                ColumnType::Bool,
                ColumnType::String,
                ColumnType::String
            ]
        );
    }

    #[test]
    fn conversion_parses_text_and_refuses_what_does_not_fit() {
        assert_eq!(convert(text(" 42"), ColumnType::Int), Ok(Value::Int(42)));
        assert_eq!(convert(Cell::Int(2), ColumnType::Float), Ok(Value::Float(2.0)));
        assert_eq!(convert(text("True"), ColumnType::Bool), Ok(Value::Bool(true)));
        assert_eq!(convert(Cell::Missing, ColumnType::Int), Ok(Value::Null));
        assert!(matches!(
            convert(text("4x"), ColumnType::Int),
            Err(Problem::TypeMismatch { expected: ColumnType::Int, .. })
        ));
        assert!(convert(Cell::Float(1.5), ColumnType::Int).is_err());
        assert!(convert(Cell::Bool(true), ColumnType::Float).is_err());
    }

    #[test]
    fn overrides_parse_apply_and_refuse_unknown_columns() {
        let mut overrides = Overrides::from_schema_json(br#"{"a": "string"}"#).unwrap();
        overrides.add_argument("b=float").unwrap();
        let mut fields = vec![
            Field { name: "a".into(), ty: ColumnType::Int },
            Field { name: "b".into(), ty: ColumnType::Int },
        ];
        overrides.apply(&mut fields).unwrap();
        assert_eq!(fields[0].ty, ColumnType::String);
        assert_eq!(fields[1].ty, ColumnType::Float);
        overrides.add_argument("zz=int").unwrap();
        assert!(overrides.apply(&mut fields).is_err());
        assert!(Overrides::default().add_argument("b=decimal").is_err());
        assert!(Overrides::default().add_argument("b").is_err());
        assert!(Overrides::from_schema_json(b"[1]").is_err());
    }
}
