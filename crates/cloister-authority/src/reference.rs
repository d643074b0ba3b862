//! Reference values with expiry and per-TEE sections, reduced to what a policy sees.
//!
//! An instance stores reference values as a JSON object. Two extensions over the plain form the
//! policies read (`{"measurements": ["…"], "snp_minimum_tcb": {…}}`):
//!
//! - **Per TEE**: a top-level key named after a TEE (`"sgx"`, `"snp"`, `"sim"`, …) holding an
//!   object applies only to evidence of that TEE; its lists extend the common lists and its other
//!   fields replace common ones.
//! - **Expiry**: a list entry may be `{"value": …, "expires_at": <unix seconds or RFC 3339>}`;
//!   it counts as `value` until then and is dropped afterwards.
//!
//! ```json
//! {"measurements": ["aa…"],
//!  "snp": {"measurements": [{"value": "bb…", "expires_at": "2027-01-01T00:00:00Z"}],
//!          "snp_minimum_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}}}
//! ```

use cloister_types::TeeKind;
use serde_json::{Map, Value};

/// Why reference values were refused when an instance was created or updated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("reference values: {0}")]
pub struct ReferenceValuesError(String);

/// Checks the shape of reference values: an object; per-TEE sections are objects; every
/// `expires_at` is unix seconds or RFC 3339.
pub fn check_reference_values(values: &Value) -> Result<(), ReferenceValuesError> {
    let Some(object) = values.as_object() else {
        return Err(ReferenceValuesError("must be a JSON object".to_owned()));
    };
    for (key, value) in object {
        if is_tee_name(key) {
            let Some(section) = value.as_object() else {
                return Err(ReferenceValuesError(format!(
                    "the section {key:?} applies to {key} evidence and must be an object"
                )));
            };
            check_entries(section, &format!("{key}."))?;
        }
    }
    check_entries(object, "")
}

fn check_entries(object: &Map<String, Value>, prefix: &str) -> Result<(), ReferenceValuesError> {
    for (key, value) in object {
        let Some(list) = value.as_array() else { continue };
        for (index, entry) in list.iter().enumerate() {
            let Some(expiry) = entry.get("expires_at") else { continue };
            if entry.get("value").is_none() {
                return Err(ReferenceValuesError(format!(
                    "{prefix}{key}[{index}] has expires_at but no value"
                )));
            }
            if expiry_of(expiry).is_none() {
                return Err(ReferenceValuesError(format!(
                    "{prefix}{key}[{index}].expires_at must be unix seconds or an RFC 3339 time, \
                     got {expiry}"
                )));
            }
        }
    }
    Ok(())
}

/// The reference values a policy sees for evidence of `tee` at `now`: the TEE's section merged
/// over the common values, expired entries dropped, other TEEs' sections removed.
pub fn effective_reference_values(values: &Value, tee: TeeKind, now: i64) -> Value {
    let Some(object) = values.as_object() else { return values.clone() };
    let mut merged = Map::new();
    for (key, value) in object {
        if !is_tee_name(key) {
            merged.insert(key.clone(), current_entries(value, now));
        }
    }
    if let Some(Value::Object(section)) = object.get(tee.as_str()) {
        for (key, value) in section {
            let value = current_entries(value, now);
            match (merged.get_mut(key), value) {
                (Some(Value::Array(common)), Value::Array(extra)) => common.extend(extra),
                (_, value) => {
                    merged.insert(key.clone(), value);
                }
            }
        }
    }
    Value::Object(merged)
}

fn is_tee_name(key: &str) -> bool {
    TeeKind::ALL.iter().any(|tee| tee.as_str() == key)
}

/// A list with expiring entries replaced by their value, or dropped once expired.
fn current_entries(value: &Value, now: i64) -> Value {
    let Some(list) = value.as_array() else { return value.clone() };
    let kept = list
        .iter()
        .filter_map(|entry| match (entry.get("value"), entry.get("expires_at")) {
            // An unreadable expiry counts as expired: fail closed.
            (Some(inner), Some(expiry)) => {
                expiry_of(expiry).is_some_and(|t| now < t).then(|| inner.clone())
            }
            _ => Some(entry.clone()),
        })
        .collect();
    Value::Array(kept)
}

fn expiry_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| t.unix_timestamp())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn per_tee_sections_extend_lists_and_replace_fields() {
        let values = json!({
            "measurements": ["aa"],
            "allowed_tcb_statuses": ["SWHardeningNeeded"],
            "snp": {"measurements": ["bb"], "snp_minimum_tcb": {"snp": 8}},
            "sgx": {"measurements": ["cc"]}
        });
        let snp = effective_reference_values(&values, TeeKind::Snp, 0);
        assert_eq!(
            snp,
            json!({"measurements": ["aa", "bb"], "allowed_tcb_statuses": ["SWHardeningNeeded"],
                   "snp_minimum_tcb": {"snp": 8}})
        );
        let tdx = effective_reference_values(&values, TeeKind::Tdx, 0);
        assert_eq!(
            tdx,
            json!({"measurements": ["aa"], "allowed_tcb_statuses": ["SWHardeningNeeded"]})
        );
    }

    #[test]
    fn expired_entries_are_dropped_and_current_ones_unwrapped() {
        let values = json!({"measurements": [
            "plain",
            {"value": "until-100", "expires_at": 100},
            {"value": "until-2030", "expires_at": "2030-01-01T00:00:00Z"},
            {"value": "bad-expiry", "expires_at": "soon"}
        ]});
        assert_eq!(
            effective_reference_values(&values, TeeKind::Sim, 99),
            json!({"measurements": ["plain", "until-100", "until-2030"]})
        );
        assert_eq!(
            effective_reference_values(&values, TeeKind::Sim, 100),
            json!({"measurements": ["plain", "until-2030"]})
        );
        assert_eq!(
            effective_reference_values(&values, TeeKind::Sim, 1_893_456_000),
            json!({"measurements": ["plain"]})
        );
    }

    #[test]
    fn malformed_reference_values_are_refused_with_the_path() {
        assert!(check_reference_values(&json!([])).is_err());
        let err = check_reference_values(&json!({"snp": ["x"]})).err();
        assert!(err.is_some_and(|e| e.to_string().contains("\"snp\"")));
        let err = check_reference_values(&json!({"m": [{"value": "a", "expires_at": "soon"}]}));
        assert!(err.is_err_and(|e| e.to_string().contains("m[0].expires_at")));
        let err = check_reference_values(&json!({"tdx": {"m": [{"expires_at": 5}]}}));
        assert!(err.is_err_and(|e| e.to_string().contains("tdx.m[0] has expires_at but no value")));
        assert_eq!(
            check_reference_values(&json!({"m": [{"value": "a", "expires_at": 5}], "sim": {}})),
            Ok(())
        );
    }
}
