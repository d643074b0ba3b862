//! Canonical JSON: object keys sorted by their UTF-16 code units (as RFC 8785 orders them), no
//! insignificant white space, integers only.
//!
//! Everything that is hashed or signed as JSON (the runtime data bound into `report_data`, job
//! specifications) goes through [`canonical_json`], so two parties that build the same value get
//! the same bytes whatever order their maps kept.

use serde::Serialize;
use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalJsonError {
    /// The value could not be turned into JSON at all.
    #[error("value cannot be represented as JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// Floating-point numbers have no single textual form, so they are refused.
    #[error("canonical JSON allows integers only, found the number {0}")]
    NonIntegerNumber(String),
}

/// Serialises `value` as canonical JSON bytes.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalJsonError> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::with_capacity(256);
    write_value(&value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalJsonError> {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => {
            out.extend_from_slice(value.to_string().as_bytes());
        }
        Value::Number(n) => {
            if !(n.is_i64() || n.is_u64()) {
                return Err(CanonicalJsonError::NonIntegerNumber(n.to_string()));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_sorted_and_output_is_compact() {
        let v = json!({"b": 1, "a": {"d": [true, null], "c": "x\"y"}});
        let bytes = canonical_json(&v).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"a":{"c":"x\"y","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn floats_are_refused() {
        assert!(matches!(
            canonical_json(&json!({"x": 1.5})),
            Err(CanonicalJsonError::NonIntegerNumber(_))
        ));
    }

    #[test]
    fn key_order_follows_utf16_code_units() {
        // U+E000 sorts before U+1F600 in UTF-16 (0xE000 < 0xD83D is false; 0xD83D < 0xE000).
        let v = json!({"\u{e000}": 1, "\u{1f600}": 2});
        let text = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert!(text.find('\u{1f600}').unwrap() < text.find('\u{e000}').unwrap());
    }
}
