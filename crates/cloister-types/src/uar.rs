//! The Unified Attestation Report (UAR) of the Chinese unified-attestation effort (Ant Group /
//! SecretFlow, "TEE 统一远程证明规范"): Cloister's evidence and appraisal written as one, and read
//! back.
//!
//! A UAR is a JSON object of string fields whose name prefix says how to read the value (`str_`
//! text, `hex_` uppercase hex, `b64_` base64, `json_` a JSON document serialised into a string,
//! `bool_` `"true"`/`"false"`, `int64_` decimal). What Cloister writes ([`to_report`]):
//!
//! - `str_report_version` `"1.0"`, `str_report_type` `"Passport"` (the report carries the
//!   evidence and the verifier's result, so a relying party needs no verifier round trip);
//! - `str_tee_platform`: the UAR platform name where the format has one (`SGX_DCAP`, `TDX`,
//!   `CSV`, `Kunpeng` for virtCCA), else Cloister's TEE name in capitals (`SNP`, `CCA`, `NITRO`,
//!   `PSA`, `ANDROID`);
//! - `json_report`: the platform report, `{"b64_quote": <the vendor evidence, standard
//!   base64>}`, with Cloister's own field `json_cloister_evidence` (the whole unified evidence:
//!   runtime data, collateral, device evidence) so that the binding to the enclave's keys
//!   survives the trip;
//! - `json_nested_reports`: `{"json_nested_results": {"nested_report_results": [attributes of
//!   each component, cpu0 first]}, "b64_nested_signature": ""}` plus Cloister's
//!   `str_cloister_ear`, the signed EAR token the attributes come from. No UAS signature exists
//!   (`b64_nested_signature` is empty): the EAR token, verified with the issuing instance's
//!   JWKS, is what vouches for the result.
//!
//! Attributes ([`attributes`]) follow the format's `UnifiedAttestationAttributes`:
//! `str_tee_platform`, `hex_ta_measurement` (the launch measurement; `hex_boot_measurement`
//! instead for CSV, as the format maps it), `hex_signer`, `hex_prod_id` (the product id as
//! uppercase hex), `str_min_isvsvn` (the SVN, decimal), `bool_debug_disabled`, `hex_user_data`
//! (the 64 report-data bytes), `hex_platform_hw_version` (the platform id, where the TEE has
//! one); and Cloister's `str_cloister_component`, `str_cloister_ear_status` and
//! `str_cloister_policy_id`. Fields without a value are left out, as the format allows.
//! `hex_nonce`, `hex_spid` and `hex_hash_or_pem_pubkey` are not filled: Cloister binds the nonce
//! and the keys through `report_data` (SHA-512 of the runtime data), which `hex_user_data`
//! carries.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::{Base64Url, Claims, EarAppraisal, EarBody, TeeKind, UnifiedEvidence};

/// The report version Cloister writes and reads.
pub const UAR_VERSION: &str = "1.0";
/// The report type Cloister writes: evidence and result travel together.
pub const UAR_PASSPORT: &str = "Passport";

/// Why a UAR could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum UarError {
    /// The report is not a JSON object of the UAR form.
    #[error("not a unified attestation report: {0}")]
    Malformed(String),
    /// The report's version is not one Cloister reads.
    #[error("unified attestation report version {0:?} is not supported (only \"1.0\" is)")]
    Version(String),
    /// The platform has no verifier in Cloister.
    #[error("str_tee_platform {0:?} is not a platform Cloister verifies")]
    Platform(String),
    /// The platform report and the embedded unified evidence disagree.
    #[error("the report's {0} disagrees with its embedded Cloister evidence")]
    Inconsistent(&'static str),
}

/// The UAR platform name of `tee`.
pub fn platform_name(tee: TeeKind) -> String {
    match tee {
        TeeKind::Sgx => "SGX_DCAP".to_owned(),
        TeeKind::Tdx => "TDX".to_owned(),
        TeeKind::Csv => "CSV".to_owned(),
        TeeKind::VirtCca => "Kunpeng".to_owned(),
        other => other.as_str().to_uppercase(),
    }
}

/// The TEE a UAR platform name stands for.
pub fn platform_tee(name: &str) -> Result<TeeKind, UarError> {
    Ok(match name {
        "SGX_DCAP" => TeeKind::Sgx,
        "TDX" => TeeKind::Tdx,
        "CSV" => TeeKind::Csv,
        "Kunpeng" => TeeKind::VirtCca,
        other => match other.to_lowercase().parse::<TeeKind>() {
            Ok(tee) if other == other.to_uppercase() => tee,
            _ => return Err(UarError::Platform(other.to_owned())),
        },
    })
}

/// The attributes of one appraised component (`cpu0`, `gpu0`, …).
pub fn attributes(component: &str, appraisal: &EarAppraisal) -> Map<String, Value> {
    let mut out = claim_attributes(&appraisal.claims);
    out.insert("str_cloister_component".into(), component.into());
    let status = serde_json::to_value(appraisal.status).unwrap_or(Value::Null);
    if let Some(status) = status.as_str() {
        out.insert("str_cloister_ear_status".into(), status.into());
    }
    out.insert("str_cloister_policy_id".into(), appraisal.appraisal_policy_id.clone().into());
    out
}

/// The attributes that follow from verified claims alone (what a reader recomputes to check a
/// report's results against its evidence).
pub fn claim_attributes(claims: &Claims) -> Map<String, Value> {
    let hex = |bytes: &[u8]| Value::from(hex::encode_upper(bytes));
    let mut out = Map::new();
    out.insert("str_tee_platform".into(), platform_name(claims.tee).into());
    let measurement_field =
        if claims.tee == TeeKind::Csv { "hex_boot_measurement" } else { "hex_ta_measurement" };
    out.insert(measurement_field.into(), hex(claims.measurement.as_bytes()));
    if let Some(signer) = &claims.signer {
        out.insert("hex_signer".into(), hex(signer.as_bytes()));
    }
    if let Some(product) = claims.product_id {
        out.insert("hex_prod_id".into(), format!("{product:X}").into());
    }
    if let Some(svn) = claims.svn {
        out.insert("str_min_isvsvn".into(), svn.to_string().into());
    }
    out.insert("bool_debug_disabled".into(), (if claims.debug { "false" } else { "true" }).into());
    out.insert("hex_user_data".into(), hex(claims.report_data.as_bytes()));
    if let Some(platform) = &claims.platform_id {
        out.insert("hex_platform_hw_version".into(), hex(platform.as_bytes()));
    }
    out
}

/// Writes `evidence` and the appraisal `ear` made of it (the verified body and its compact
/// token) as a UAR. The caller has verified the token and checked that it appraised this
/// evidence.
pub fn to_report(evidence: &UnifiedEvidence, ear: &EarBody, ear_token: &str) -> Value {
    let mut components: Vec<(&String, &EarAppraisal)> = ear.submods.iter().collect();
    components.sort_by_key(|(name, _)| (name.as_str() != "cpu0", name.as_str().to_owned()));
    let results: Vec<Value> =
        components.iter().map(|(name, a)| Value::Object(attributes(name, a))).collect();
    let platform = json!({
        "b64_quote": STANDARD.encode(evidence.evidence.as_bytes()),
        "json_cloister_evidence": serde_json::to_string(evidence).unwrap_or_default(),
    });
    let nested = json!({
        "json_nested_results": json!({ "nested_report_results": results }).to_string(),
        "b64_nested_signature": "",
        "str_cloister_ear": ear_token,
    });
    json!({
        "str_report_version": UAR_VERSION,
        "str_report_type": UAR_PASSPORT,
        "str_tee_platform": platform_name(evidence.tee),
        "json_report": platform.to_string(),
        "json_nested_reports": nested.to_string(),
    })
}

/// A UAR as read back.
#[derive(Clone, Debug)]
pub struct Report {
    /// The platform the report names.
    pub tee: TeeKind,
    /// The vendor evidence (`b64_quote`).
    pub quote: Vec<u8>,
    /// Cloister's unified evidence, when the report carries it (Cloister wrote it).
    pub evidence: Option<UnifiedEvidence>,
    /// The results' attributes, one object per component, as the report states them.
    pub results: Vec<Map<String, Value>>,
    /// Cloister's EAR token, when the report carries it.
    pub ear: Option<String>,
}

/// The largest report read (evidence with collateral is a few MiB at most).
pub const MAX_REPORT_LEN: usize = 32 << 20;

/// A JSON value whose objects, at every depth, name each key once: a report in which one
/// reader could see the first of two `json_nested_reports` and another the last is refused.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Strict, E> {
                Ok(Strict(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Strict, A::Error> {
                let mut items = Vec::new();
                while let Some(Strict(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Strict(Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Strict, A::Error> {
                let mut object = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let Strict(value) = map.next_value()?;
                    if object.insert(key.clone(), value).is_some() {
                        return Err(serde::de::Error::custom(format!("{key:?} appears twice")));
                    }
                }
                Ok(Strict(Value::Object(object)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parses a JSON object whose keys appear once at every depth.
fn strict_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Strict>(bytes).map_err(|e| e.to_string())? {
        Strict(Value::Object(object)) => Ok(object),
        Strict(_) => Err("not a JSON object".to_owned()),
    }
}

/// Whether `bytes` look like a UAR (a JSON object with `str_report_version`).
pub fn looks_like_report(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(bytes)
        .is_ok_and(|object| object.contains_key("str_report_version"))
}

/// Reads a UAR: the platform evidence, Cloister's embedded evidence and results where present.
/// Nothing is verified here; the embedded evidence must be the same as the platform's quote.
pub fn from_report(bytes: &[u8]) -> Result<Report, UarError> {
    let malformed = |what: String| UarError::Malformed(what);
    if bytes.len() > MAX_REPORT_LEN {
        return Err(malformed(format!(
            "{} bytes is more than the {MAX_REPORT_LEN}-byte limit",
            bytes.len()
        )));
    }
    let object = strict_object(bytes).map_err(|e| malformed(format!("not a JSON object: {e}")))?;
    let text = |object: &Map<String, Value>, field: &str| -> Result<String, UarError> {
        object
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| malformed(format!("{field} is missing or not a string")))
    };
    let nested_json = |object: &Map<String, Value>, field: &str| {
        let inner = text(object, field)?;
        strict_object(inner.as_bytes())
            .map_err(|e| malformed(format!("{field} is not a JSON object in a string: {e}")))
    };
    let version = text(&object, "str_report_version")?;
    if version != UAR_VERSION {
        return Err(UarError::Version(version));
    }
    let tee = platform_tee(&text(&object, "str_tee_platform")?)?;
    let platform = nested_json(&object, "json_report")?;
    let quote = STANDARD
        .decode(text(&platform, "b64_quote")?)
        .map_err(|e| malformed(format!("b64_quote is not base64: {e}")))?;
    let evidence = match platform.get("json_cloister_evidence") {
        None => None,
        Some(_) => {
            let inner = text(&platform, "json_cloister_evidence")?;
            strict_object(inner.as_bytes())
                .map_err(|e| malformed(format!("json_cloister_evidence: {e}")))?;
            let evidence: UnifiedEvidence = serde_json::from_str(&inner)
                .map_err(|e| malformed(format!("json_cloister_evidence: {e}")))?;
            if evidence.tee != tee {
                return Err(UarError::Inconsistent("str_tee_platform"));
            }
            if evidence.evidence != Base64Url(quote.clone()) {
                return Err(UarError::Inconsistent("b64_quote"));
            }
            Some(evidence)
        }
    };
    let (results, ear) = match object.get("json_nested_reports") {
        None => (Vec::new(), None),
        Some(Value::String(s)) if s.is_empty() => (Vec::new(), None),
        Some(_) => {
            let nested = nested_json(&object, "json_nested_reports")?;
            let results = match nested.get("json_nested_results") {
                None => Vec::new(),
                Some(_) => {
                    let results = nested_json(&nested, "json_nested_results")?;
                    match results.get("nested_report_results") {
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|item| {
                                item.as_object().cloned().ok_or_else(|| {
                                    malformed("a nested result is not an object".into())
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        None => Vec::new(),
                        Some(_) => {
                            return Err(malformed("nested_report_results is not a list".into()));
                        }
                    }
                }
            };
            let ear = nested.get("str_cloister_ear").and_then(Value::as_str).map(str::to_owned);
            (results, ear)
        }
    };
    Ok(Report { tee, quote, evidence, results, ear })
}

/// Compares the stated results of `report` with claims a verifier produced from its evidence
/// (`verified`: component name → claims): every attribute that follows from claims must be the
/// same. Returns the differences, `component.attribute: stated ≠ verified`.
pub fn differences(report: &Report, verified: &BTreeMap<String, Claims>) -> Vec<String> {
    let mut out = Vec::new();
    for (index, stated) in report.results.iter().enumerate() {
        let component = stated
            .get("str_cloister_component")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| if index == 0 { "cpu0".to_owned() } else { format!("#{index}") });
        let Some(claims) = verified.get(&component) else {
            out.push(format!("{component}: no such component in the evidence"));
            continue;
        };
        let expected = claim_attributes(claims);
        for (field, value) in stated {
            if field.starts_with("str_cloister_") {
                continue;
            }
            match expected.get(field) {
                Some(v) if v == value => {}
                Some(v) => out.push(format!("{component}.{field}: {value} ≠ {v}")),
                None => out.push(format!("{component}.{field}: {value} ≠ (none)")),
            }
        }
        for field in expected.keys() {
            if !stated.contains_key(field) {
                out.push(format!("{component}.{field}: missing"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tee_has_a_platform_name_that_reads_back() {
        for tee in TeeKind::ALL {
            assert_eq!(platform_tee(&platform_name(tee)).unwrap(), tee, "{tee}");
        }
        assert!(matches!(platform_tee("SGX_EPID"), Err(UarError::Platform(_))));
        assert!(matches!(platform_tee("tdx"), Err(UarError::Platform(_))));
    }

    #[test]
    fn a_report_from_elsewhere_reads_without_cloister_fields() {
        let platform = json!({ "b64_quote": STANDARD.encode(b"quote") }).to_string();
        let report = json!({
            "str_report_version": "1.0",
            "str_report_type": "BackgroundCheck",
            "str_tee_platform": "TDX",
            "json_report": platform,
            "json_nested_reports": "",
        });
        let bytes = report.to_string().into_bytes();
        assert!(looks_like_report(&bytes));
        let read = from_report(&bytes).unwrap();
        assert_eq!((read.tee, read.quote.as_slice()), (TeeKind::Tdx, &b"quote"[..]));
        assert!(read.evidence.is_none() && read.results.is_empty() && read.ear.is_none());

        let mut other_version = report.clone();
        other_version["str_report_version"] = "2.0".into();
        let err = from_report(other_version.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, UarError::Version(_)), "{err}");
        let mut not_base64 = report;
        not_base64["json_report"] = json!({ "b64_quote": "%%" }).to_string().into();
        let err = from_report(not_base64.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, UarError::Malformed(_)), "{err}");
        assert!(!looks_like_report(b"{\"version\": 1}"));
    }
}
