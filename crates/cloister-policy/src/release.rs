//! [`ReleasePolicy`]: a key owner's Rego policy that decides whether the key broker releases a
//! key to an attested enclave, and the [`ReleaseInput`] it is evaluated on.
//!
//! Contract (see `docs/policy.md`, "Key release policies"): the module declares
//! `package cloister.release` and defines `allow`; it may define `reasons` (a set or array of
//! strings). Only `allow == true` releases the key: undefined, non-boolean or an evaluation error
//! is a refusal that says why.

use std::fmt;

use cloister_types::api::ReleaseContext;
use cloister_types::{EarBody, EarStatus, Hex};
use regorus::{Engine, Value};

use crate::error::PolicyError;

/// The package every release policy must declare.
pub const RELEASE_POLICY_PACKAGE: &str = "cloister.release";

const ALLOW_RULE: &str = "data.cloister.release.allow";
const REASONS_RULE: &str = "data.cloister.release.reasons";
const LIBRARY_REGO: &str = include_str!("../policies/lib.rego");
const SOURCE_NAME: &str = "release.rego";

/// Largest release policy accepted, in bytes.
pub const MAX_RELEASE_POLICY_LEN: usize = 64 * 1024;

/// The outcome of a release policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseDecision {
    /// Release the key only when this is true.
    pub allow: bool,
    /// Why, in words: the policy's `reasons`, or why its answer was unusable.
    pub reasons: Vec<String>,
}

impl ReleaseDecision {
    fn refused(reason: String) -> Self {
        Self { allow: false, reasons: vec![reason] }
    }
}

/// A compiled key release policy.
#[derive(Clone)]
pub struct ReleasePolicy {
    rego: String,
    /// Loaded and prepared once; every decision evaluates a clone.
    engine: Engine,
}

impl fmt::Debug for ReleasePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleasePolicy").field("bytes", &self.rego.len()).finish_non_exhaustive()
    }
}

impl ReleasePolicy {
    /// Compiles `rego` (with the policy library `data.cloister.lib` loaded beside it).
    ///
    /// Fails with [`PolicyError::InvalidRelease`] if the text is too large, does not parse or
    /// compile, declares a package other than `cloister.release`, has no `allow` rule, or fails
    /// to evaluate on an empty input.
    pub fn new(rego: &str) -> Result<Self, PolicyError> {
        let invalid = PolicyError::InvalidRelease;
        if rego.len() > MAX_RELEASE_POLICY_LEN {
            return Err(invalid(format!(
                "it is {} bytes, at most {MAX_RELEASE_POLICY_LEN} allowed",
                rego.len()
            )));
        }
        let mut engine = crate::limits::engine();
        engine
            .add_policy("cloister-lib.rego".to_owned(), LIBRARY_REGO.to_owned())
            .map_err(|e| invalid(format!("the policy library does not load: {e:#}")))?;
        let package = engine
            .add_policy(SOURCE_NAME.to_owned(), rego.to_owned())
            .map_err(|e| invalid(format!("{e:#}")))?;
        if package != format!("data.{RELEASE_POLICY_PACKAGE}") {
            return Err(invalid(format!(
                "the policy must declare `package {RELEASE_POLICY_PACKAGE}`, found `{}`",
                package.trim_start_matches("data.")
            )));
        }
        let has_allow = engine
            .has_declared_rule_rooted_at(SOURCE_NAME, "allow")
            .map_err(|e| invalid(format!("{e:#}")))?;
        if !has_allow {
            return Err(invalid("the policy does not define the rule `allow`".to_owned()));
        }
        // Prepare once; with an empty input every reference to `input` is undefined, so an error
        // here is a defect of the policy itself.
        engine.set_input(Value::new_object());
        engine.eval_rule(ALLOW_RULE.to_owned()).map_err(|e| invalid(format!("{e:#}")))?;
        Ok(Self { rego: rego.to_owned(), engine })
    }

    /// The Rego source.
    pub fn rego(&self) -> &str {
        &self.rego
    }

    /// Rego for the common case: release only to enclaves whose every appraisal is `affirming`
    /// or `warning` and whose `cpu0` measurement is one of `measurements`. Compile it with
    /// [`ReleasePolicy::new`]; with no measurements it releases to nobody.
    pub fn template(measurements: &[Hex]) -> String {
        // `Hex` displays as lowercase hex digits only, so it needs no escaping in a Rego string.
        let mut list: Vec<String> = measurements.iter().map(|m| format!("\"{m}\"")).collect();
        list.sort();
        list.dedup();
        format!("{TEMPLATE_HEAD}\nmeasurements := {{{}}}\n{TEMPLATE_RULES}", list.join(", "))
    }

    /// Evaluates the policy on `input` (normally [`ReleaseInput::to_json`]). Fails closed:
    /// anything but `allow == true` refuses, with a reason.
    pub fn evaluate(&self, input: &serde_json::Value) -> ReleaseDecision {
        let mut engine = self.engine.clone();
        engine.set_input(Value::from(input.clone()));
        let allow = match engine.eval_rule(ALLOW_RULE.to_owned()) {
            Ok(value) => value,
            Err(e) => {
                return ReleaseDecision::refused(format!(
                    "the release policy failed to evaluate: {e:#}"
                ));
            }
        };
        let reasons = match engine.eval_rule(REASONS_RULE.to_owned()) {
            Ok(value) => policy_reasons(&value),
            Err(e) => Err(format!("the release policy's `reasons` failed to evaluate: {e:#}")),
        };
        let (mut reasons, reasons_problem) = match reasons {
            Ok(reasons) => (reasons, None),
            Err(problem) => (Vec::new(), Some(problem)),
        };
        match allow {
            Value::Bool(true) => {
                // A broken `reasons` rule does not block a release the policy allowed, but it is
                // reported so the owner sees it in the audit record.
                reasons.extend(reasons_problem);
                ReleaseDecision { allow: true, reasons }
            }
            other => {
                let why = match other {
                    Value::Bool(false) => "the release policy denied the release".to_owned(),
                    Value::Undefined => {
                        "the release policy's `allow` is undefined for this input (no rule \
                         matched; add `default allow := false` to make denial explicit)"
                            .to_owned()
                    }
                    other => format!(
                        "the release policy's `allow` must be true or false, found {}",
                        describe(&other)
                    ),
                };
                let mut all = vec![why];
                all.extend(reasons);
                all.extend(reasons_problem);
                ReleaseDecision { allow: false, reasons: all }
            }
        }
    }
}

/// Reads the optional `reasons` rule: undefined is no reasons; a set or array of strings is
/// taken as is; anything else is a problem worth reporting.
fn policy_reasons(value: &Value) -> Result<Vec<String>, String> {
    if *value == Value::Undefined {
        return Ok(Vec::new());
    }
    let json = serde_json::to_value(value)
        .map_err(|e| format!("the release policy's `reasons` is not representable: {e}"))?;
    let items = json.as_array().ok_or_else(|| {
        format!("the release policy's `reasons` must be a set or array of strings, found {json}")
    })?;
    items
        .iter()
        .map(|item| {
            item.as_str().map(str::to_owned).ok_or_else(|| {
                format!("the release policy's `reasons` contains a non-string: {item}")
            })
        })
        .collect()
}

fn describe(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "an unprintable value".to_owned());
    if text.len() > 200 { format!("{}…", &text[..text.floor_char_boundary(200)]) } else { text }
}

const TEMPLATE_HEAD: &str = "\
# Key release policy generated by ReleasePolicy::template: release only to enclaves whose every
# appraisal is affirming or warning and whose cpu0 measurement is listed below.
package cloister.release

default allow := false

acceptable := {\"affirming\", \"warning\"}
";

const TEMPLATE_RULES: &str = "
cpu0_measurement := lower(input.ear.submods.cpu0.claims.measurement)

all_acceptable if {
\tcount(input.ear.submods) > 0
\tevery _, submod in input.ear.submods {
\t\tsubmod.status in acceptable
\t}
}

allow if {
\tall_acceptable
\tcpu0_measurement in measurements
}

reasons contains msg if {
\tsome name, submod in input.ear.submods
\tnot submod.status in acceptable
\tmsg := sprintf(\"%v is %v, not affirming or warning\", [name, submod.status])
}

reasons contains \"the attestation result has no cpu0 appraisal\" if not input.ear.submods.cpu0

reasons contains msg if {
\tnot cpu0_measurement in measurements
\tmsg := sprintf(\"cpu0 measurement %v is not one this key is released to\", [cpu0_measurement])
}
";

/// What a release policy sees: `input` is [`ReleaseInput::to_json`].
#[derive(Clone, Copy, Debug)]
pub struct ReleaseInput<'a> {
    /// The attestation instance that issued the EAR token (`in_…`).
    pub instance_id: &'a str,
    /// The broker's id for the key (`kb_…`).
    pub broker_key: &'a str,
    /// The key's name, as its owner registered it.
    pub key_name: &'a str,
    /// The key's envelope key id, lowercase hex.
    pub key_id: &'a str,
    /// The verified EAR token body.
    pub ear: &'a EarBody,
    /// When the token was issued (Unix seconds).
    pub issued_at: u64,
    /// When the token expires (Unix seconds).
    pub expires_at: u64,
    /// What the requester says the release is for.
    pub context: &'a ReleaseContext,
}

impl ReleaseInput<'_> {
    /// The policy input:
    ///
    /// ```json
    /// {"instance": "in_…",
    ///  "key": {"id": "kb_…", "name": "…", "key_id": "<hex>"},
    ///  "ear": {"status": "affirming", "issued_at": 0, "expires_at": 0,
    ///          "submods": {"cpu0": {"status", "claims", "runtime_data", "policy_id",
    ///                               "trustworthiness_vector", "reasons"}}},
    ///  "context": {"job_id": null, "requester": null, "purpose": null}}
    /// ```
    ///
    /// `ear.status` is the worst status of the submods (`none` when there are none).
    pub fn to_json(&self) -> serde_json::Value {
        let submods: serde_json::Map<String, serde_json::Value> = self
            .ear
            .submods
            .iter()
            .map(|(name, s)| {
                let value = serde_json::json!({
                    "status": status_name(s.status),
                    "claims": serde_json::to_value(&s.claims).unwrap_or(serde_json::Value::Null),
                    "runtime_data": serde_json::to_value(&s.runtime_data)
                        .unwrap_or(serde_json::Value::Null),
                    "policy_id": s.appraisal_policy_id,
                    "trustworthiness_vector": s.trustworthiness_vector,
                    "reasons": s.reasons,
                });
                (name.clone(), value)
            })
            .collect();
        serde_json::json!({
            "instance": self.instance_id,
            "key": {"id": self.broker_key, "name": self.key_name, "key_id": self.key_id},
            "ear": {
                "status": status_name(overall_status(self.ear)),
                "issued_at": self.issued_at,
                "expires_at": self.expires_at,
                "submods": submods,
            },
            "context": {
                "job_id": self.context.job_id,
                "requester": self.context.requester,
                "purpose": self.context.purpose,
            },
        })
    }
}

/// The worst status among the submods; `none` when there are none.
pub fn overall_status(ear: &EarBody) -> EarStatus {
    let severity = |s: EarStatus| match s {
        EarStatus::Affirming => 0,
        EarStatus::Warning => 1,
        EarStatus::None => 2,
        EarStatus::Contraindicated => 3,
    };
    ear.submods.values().map(|s| s.status).max_by_key(|&s| severity(s)).unwrap_or(EarStatus::None)
}

fn status_name(status: EarStatus) -> &'static str {
    match status {
        EarStatus::None => "none",
        EarStatus::Affirming => "affirming",
        EarStatus::Warning => "warning",
        EarStatus::Contraindicated => "contraindicated",
    }
}
