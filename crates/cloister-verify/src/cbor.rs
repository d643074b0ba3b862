//! Small helpers shared by the drivers of CBOR claims maps (Arm CCA and PSA tokens): integer-keyed
//! maps taken apart claim by claim, and names of CBOR types for error messages.

use std::collections::BTreeSet;

use coset::CborSerializable as _;
use coset::cbor::value::Value;

/// Why bytes are not an integer-keyed map with each key once.
#[derive(Debug)]
pub(crate) enum MapError {
    /// The bytes are not one CBOR item.
    NotCbor(String),
    /// The item is not a map (its kind).
    NotAMap(&'static str),
    /// A key is not an integer (described).
    NonIntegerKey(String),
    /// A key appears twice.
    Duplicate(i128),
}

/// A claims map being taken apart: each integer key once; what is left at the end is unknown.
pub(crate) struct IntMap {
    entries: Vec<(i128, Value)>,
}

impl IntMap {
    /// Decodes `payload` as a map whose keys are distinct integers.
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, MapError> {
        let value = Value::from_slice(payload).map_err(|e| MapError::NotCbor(e.to_string()))?;
        Self::from_value(value)
    }

    /// Takes a decoded item as a map whose keys are distinct integers.
    pub(crate) fn from_value(value: Value) -> Result<Self, MapError> {
        let Value::Map(pairs) = value else {
            return Err(MapError::NotAMap(kind(&value)));
        };
        let mut seen = BTreeSet::new();
        let mut entries = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let Some(key) = integer_key(&key) else {
                return Err(MapError::NonIntegerKey(describe_key(&key)));
            };
            if !seen.insert(key) {
                return Err(MapError::Duplicate(key));
            }
            entries.push((key, value));
        }
        Ok(Self { entries })
    }

    /// Removes and returns the value of `key`.
    pub(crate) fn take(&mut self, key: i128) -> Option<Value> {
        let index = self.entries.iter().position(|(k, _)| *k == key)?;
        Some(self.entries.swap_remove(index).1)
    }

    /// A key no one took, if any.
    pub(crate) fn leftover(&self) -> Option<i128> {
        self.entries.first().map(|(key, _)| *key)
    }
}

/// Decodes one CBOR item of at most `max` bytes (a token is refused before parsing when it is
/// far larger than any genuine one); the error is a reason for messages.
pub(crate) fn decode_bounded(bytes: &[u8], max: usize) -> Result<Value, String> {
    if bytes.len() > max {
        return Err(format!("{} bytes is more than the {max}-byte limit", bytes.len()));
    }
    Value::from_slice(bytes).map_err(|e| format!("not CBOR: {e}"))
}

/// The value of an integer CBOR item.
pub(crate) fn integer_key(key: &Value) -> Option<i128> {
    match key {
        Value::Integer(i) => Some(i128::from(*i)),
        _ => None,
    }
}

/// A map key, for messages.
pub(crate) fn describe_key(key: &Value) -> String {
    match key {
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Text(text) => format!("{text:?}"),
        other => kind(other).to_owned(),
    }
}

/// A short name of a CBOR value's type, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "an integer",
        Value::Bytes(_) => "a byte string",
        Value::Float(_) => "a float",
        Value::Text(_) => "a text string",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Tag(..) => "a tagged value",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        _ => "an unexpected CBOR item",
    }
}
