//! [`AppraisalPolicy`]: a compiled Rego appraisal policy, and the [`Appraisal`] it produces.

use std::collections::BTreeMap;
use std::fmt;

use cloister_types::{Claims, EarStatus, TeeKind};
use regorus::{Engine, Value};
use serde::Deserialize;

use crate::error::PolicyError;

/// The package every appraisal policy must declare.
pub const POLICY_PACKAGE: &str = "cloister.appraisal";

/// The rule the service evaluates.
const RESULT_RULE: &str = "data.cloister.appraisal.result";

/// The AR4SI trustworthiness claims a policy may assert.
pub const AR4SI_CLAIMS: [&str; 8] = [
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "instance-identity",
    "runtime-opaque",
    "sourced-data",
    "storage-opaque",
];

const DEFAULT_REGO: &str = include_str!("../policies/default.rego");
/// The policy library (`data.cloister.lib`), loaded beside every policy.
const LIBRARY_REGO: &str = include_str!("../policies/lib.rego");
const DEV_SIM_REGO: &str = include_str!("../policies/dev-sim.rego");

/// The outcome of appraising claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appraisal {
    /// The overall verdict.
    pub status: EarStatus,
    /// AR4SI claim name → EAR tier code.
    pub trustworthiness_vector: BTreeMap<String, i8>,
    /// Why, in words.
    pub reasons: Vec<String>,
}

impl Appraisal {
    /// A contraindicated appraisal with a single reason: what fail-closed looks like.
    fn refused(reason: String) -> Self {
        Self {
            status: EarStatus::Contraindicated,
            trustworthiness_vector: BTreeMap::new(),
            reasons: vec![reason],
        }
    }
}

/// A compiled appraisal policy: an id, a version and Rego source that passed the contract
/// checks at construction.
#[derive(Clone)]
pub struct AppraisalPolicy {
    id: String,
    version: u32,
    rego: String,
    /// Loaded and prepared once; every appraisal evaluates a clone.
    engine: Engine,
}

impl fmt::Debug for AppraisalPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppraisalPolicy")
            .field("policy_id", &self.policy_id())
            .finish_non_exhaustive()
    }
}

impl AppraisalPolicy {
    /// Compiles `rego` as policy `id` at `version`.
    ///
    /// Fails with [`PolicyError::Invalid`] if the text does not parse or compile, declares a
    /// package other than `cloister.appraisal`, or has no `result` rule.
    pub fn new(id: &str, version: u32, rego: &str) -> Result<Self, PolicyError> {
        let id_ok = !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(PolicyError::InvalidId(id.to_owned()));
        }
        let policy_id = format!("{id}@v{version}");
        let invalid =
            |message: String| PolicyError::Invalid { policy_id: policy_id.clone(), message };

        let source_name = format!("{id}.rego");
        let mut engine = crate::limits::engine();
        engine
            .add_policy("cloister-lib.rego".to_owned(), LIBRARY_REGO.to_owned())
            .map_err(|e| invalid(format!("the policy library does not load: {e:#}")))?;
        let package = engine
            .add_policy(source_name.clone(), rego.to_owned())
            .map_err(|e| invalid(format!("{e:#}")))?;
        if package != format!("data.{POLICY_PACKAGE}") {
            return Err(invalid(format!(
                "the policy must declare `package {POLICY_PACKAGE}`, found `{}`",
                package.trim_start_matches("data.")
            )));
        }
        let has_result = engine
            .has_declared_rule_rooted_at(&source_name, "result")
            .map_err(|e| invalid(format!("{e:#}")))?;
        if !has_result {
            return Err(invalid("the policy does not define the rule `result`".to_owned()));
        }
        // Prepare (analyse and schedule) once, so each appraisal only clones and evaluates. With
        // an empty input every reference to `input` is undefined, so an error here is a defect of
        // the policy itself.
        engine.set_input(Value::new_object());
        engine.eval_rule(RESULT_RULE.to_owned()).map_err(|e| invalid(format!("{e:#}")))?;

        Ok(Self { id: id.to_owned(), version, rego: rego.to_owned(), engine })
    }

    /// The built-in production policy: hardware TEEs only, never `sim`, never debug, TCB up to
    /// date (or explicitly allowed) and a reference measurement.
    pub fn production_default() -> Self {
        Self::builtin("cloister-default", DEFAULT_REGO)
    }

    /// The built-in development policy: like the default, and also accepts the simulated TEE —
    /// as a warning, never as affirming — when its measurement is a reference value.
    pub fn development_sim() -> Self {
        Self::builtin("cloister-dev-sim", DEV_SIM_REGO)
    }

    /// The Rego text of a built-in policy by its short name (`default`, `dev-sim`), so that an
    /// instance can start from it and record it as its own versioned policy.
    pub fn builtin_rego(name: &str) -> Option<&'static str> {
        match name {
            "default" => Some(DEFAULT_REGO),
            "dev-sim" => Some(DEV_SIM_REGO),
            _ => None,
        }
    }

    fn builtin(id: &str, rego: &str) -> Self {
        match Self::new(id, 1, rego) {
            Ok(policy) => policy,
            // The built-in policies are compiled by this crate's tests; reaching this is a bug
            // in the shipped .rego file, not a runtime condition.
            Err(e) => panic!("built-in policy {id} does not compile: {e}"),
        }
    }

    /// `<id>@v<version>`, as recorded in `ear.appraisal-policy-id`.
    pub fn policy_id(&self) -> String {
        format!("{}@v{}", self.id, self.version)
    }

    /// The policy id without version.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The policy version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The Rego source (for export and display).
    pub fn rego(&self) -> &str {
        &self.rego
    }

    /// Appraises verified `claims` against the instance's `reference_values` (a JSON object).
    ///
    /// An undefined or malformed `result` yields a contraindicated appraisal saying so; an error
    /// is returned only when the policy fails to evaluate, and callers must treat it as refusal.
    /// Four guards hold whatever the policy says: the status is never better than the worst
    /// tier in its trustworthiness vector, and neither simulated evidence, nor evidence under a
    /// test root the instance names ([`Claims::under_test_root`]), nor a virtCCA token whose
    /// platform the verifier could not chain to a Huawei root (`virtcca.platform_verified`) is
    /// ever `affirming`.
    pub fn appraise(
        &self,
        claims: &Claims,
        reference_values: &serde_json::Value,
    ) -> Result<Appraisal, PolicyError> {
        let input = serde_json::json!({
            "claims": serde_json::to_value(claims).map_err(PolicyError::Input)?,
            "reference_values": reference_values,
            "tee": claims.tee.as_str(),
        });
        let mut engine = self.engine.clone();
        engine.set_input(Value::from(input));
        let value = engine.eval_rule(RESULT_RULE.to_owned()).map_err(|e| {
            PolicyError::Evaluation { policy_id: self.policy_id(), message: format!("{e:#}") }
        })?;
        let appraisal = match parse_result(&value) {
            Ok(appraisal) => appraisal,
            Err(why) => Appraisal::refused(format!(
                "policy {} produced no usable decision: {why}",
                self.policy_id()
            )),
        };
        Ok(apply_guards(appraisal, claims))
    }
}

/// The `result` object as policies write it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResult {
    status: String,
    trustworthiness_vector: BTreeMap<String, i64>,
    reasons: Vec<String>,
}

/// Reads the policy's `result`, or says what is wrong with it.
fn parse_result(value: &Value) -> Result<Appraisal, String> {
    if *value == Value::Undefined {
        return Err("the rule `result` is undefined for this input".to_owned());
    }
    let json = serde_json::to_value(value)
        .map_err(|e| format!("`result` is not representable as JSON: {e}"))?;
    let raw: RawResult = serde_json::from_value(json).map_err(|e| {
        format!("`result` must be {{\"status\", \"trustworthiness_vector\", \"reasons\"}}: {e}")
    })?;
    let status = match raw.status.as_str() {
        "affirming" => EarStatus::Affirming,
        "warning" => EarStatus::Warning,
        "contraindicated" => EarStatus::Contraindicated,
        other => {
            return Err(format!(
                "status {other:?} is not one of affirming, warning, contraindicated"
            ));
        }
    };
    let mut trustworthiness_vector = BTreeMap::new();
    for (claim, tier) in raw.trustworthiness_vector {
        if !AR4SI_CLAIMS.contains(&claim.as_str()) {
            return Err(format!("{claim:?} is not an AR4SI trustworthiness claim"));
        }
        let tier = i8::try_from(tier)
            .map_err(|_| format!("tier {tier} of {claim:?} is outside -128..=127"))?;
        trustworthiness_vector.insert(claim, tier);
    }
    Ok(Appraisal { status, trustworthiness_vector, reasons: raw.reasons })
}

/// How bad a status is, for comparison: higher is worse.
fn severity(status: EarStatus) -> u8 {
    match status {
        EarStatus::Affirming => 0,
        EarStatus::None => 1,
        EarStatus::Warning => 2,
        EarStatus::Contraindicated => 3,
    }
}

/// The EAR tier an AR4SI value falls in, where it implies one.
fn tier_status(value: i8) -> Option<EarStatus> {
    match value {
        0 | 1 => None,
        2..=31 => Some(EarStatus::Affirming),
        32..=95 => Some(EarStatus::Warning),
        // 96..=127 contraindicated; negative values are verifier errors (-1 malfunction).
        _ => Some(EarStatus::Contraindicated),
    }
}

/// Guards that hold whatever a policy returns.
fn apply_guards(mut appraisal: Appraisal, claims: &Claims) -> Appraisal {
    let tee = claims.tee;
    let worst = appraisal
        .trustworthiness_vector
        .iter()
        .filter_map(|(claim, &value)| tier_status(value).map(|s| (claim, value, s)))
        .max_by_key(|&(_, _, s)| severity(s));
    if let Some((claim, value, worst)) = worst
        && severity(worst) > severity(appraisal.status)
    {
        appraisal.reasons.push(format!(
            "status lowered to {} because trustworthiness claim {claim} has tier {value}",
            status_name(worst)
        ));
        appraisal.status = worst;
    }
    if tee == TeeKind::Sim && appraisal.status == EarStatus::Affirming {
        appraisal.status = EarStatus::Warning;
        appraisal
            .reasons
            .push("simulated TEE: development only, no hardware protection".to_owned());
    }
    let virtcca_verified = claims.vendor.get("virtcca").and_then(|v| v.get("platform_verified"))
        == Some(&serde_json::Value::Bool(true));
    if tee == TeeKind::VirtCca && !virtcca_verified && appraisal.status == EarStatus::Affirming {
        appraisal.status = EarStatus::Warning;
        appraisal.reasons.push(
            "virtcca: the platform is not verified to a Huawei root (virtcca.platform_verified \
             is false): the CVM token alone is signed by a key it carries itself"
                .to_owned(),
        );
    }
    if claims.under_test_root() && appraisal.status == EarStatus::Affirming {
        appraisal.status = EarStatus::Warning;
        appraisal.reasons.push(format!(
            "{tee}: evidence signed under a test root (trust_anchors.test_roots): development \
             only, no hardware protection"
        ));
    }
    appraisal
}

fn status_name(status: EarStatus) -> &'static str {
    match status {
        EarStatus::None => "none",
        EarStatus::Affirming => "affirming",
        EarStatus::Warning => "warning",
        EarStatus::Contraindicated => "contraindicated",
    }
}
