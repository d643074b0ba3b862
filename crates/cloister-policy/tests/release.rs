//! Key release policies: the template, the input shape, and fail-closed handling of custom ones.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use cloister_policy::{PolicyError, ReleaseInput, ReleasePolicy, overall_status};
use cloister_types::api::ReleaseContext;
use cloister_types::ear::{EAR_PROFILE, VerifierId};
use cloister_types::{
    Claims, EarAppraisal, EarBody, EarStatus, Hex, RuntimeData, TcbStatus, TeeKind,
};
use serde_json::json;

const MEASUREMENT: [u8; 48] = [0xab; 48];

fn submod(status: EarStatus, measurement: &[u8]) -> EarAppraisal {
    EarAppraisal {
        status,
        trustworthiness_vector: BTreeMap::from([("executables".to_owned(), 2)]),
        appraisal_policy_id: "cloister-default@v1".into(),
        claims: Claims {
            tee: TeeKind::Tdx,
            measurement: Hex(measurement.to_vec()),
            signer: None,
            product_id: None,
            svn: Some(1),
            debug: false,
            report_data: Hex(vec![0; 64]),
            tcb_status: TcbStatus::UpToDate,
            advisories: Vec::new(),
            platform_id: None,
            vendor: BTreeMap::new(),
        },
        runtime_data: RuntimeData {
            nonce: "n1".into(),
            hpke_pk: "cloister-hpke-x25519:pk".into(),
            tls_spki_sha256: Hex(vec![1; 32]),
            receipt_pk: "cloister-es256:rk".into(),
            extra: BTreeMap::new(),
        },
        reasons: Vec::new(),
        collateral: Default::default(),
    }
}

fn ear(submods: Vec<(&str, EarAppraisal)>) -> EarBody {
    EarBody {
        eat_profile: EAR_PROFILE.into(),
        verifier_id: VerifierId { developer: "cloister".into(), build: "test".into() },
        eat_nonce: "n1".into(),
        submods: submods.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
        audit_checkpoint: Default::default(),
    }
}

fn context() -> ReleaseContext {
    ReleaseContext {
        job_id: Some("job-1".into()),
        requester: Some("worker-a".into()),
        purpose: None,
    }
}

fn input(ear: &EarBody) -> serde_json::Value {
    ReleaseInput {
        instance_id: "in_1",
        broker_key: "kb_1",
        key_name: "hospital-data",
        key_id: "000102030405060708090a0b0c0d0e0f",
        ear,
        issued_at: 1_000,
        expires_at: 1_600,
        context: &context(),
    }
    .to_json()
}

fn template() -> ReleasePolicy {
    ReleasePolicy::new(&ReleasePolicy::template(&[Hex(MEASUREMENT.to_vec())])).unwrap()
}

#[test]
fn input_has_the_documented_shape() {
    let body = ear(vec![("cpu0", submod(EarStatus::Warning, &MEASUREMENT))]);
    let v = input(&body);
    assert_eq!(v["instance"], "in_1");
    assert_eq!(
        v["key"],
        json!({"id": "kb_1", "name": "hospital-data",
        "key_id": "000102030405060708090a0b0c0d0e0f"})
    );
    assert_eq!(v["ear"]["status"], "warning");
    assert_eq!(v["ear"]["issued_at"], 1_000);
    assert_eq!(v["ear"]["expires_at"], 1_600);
    let cpu0 = &v["ear"]["submods"]["cpu0"];
    assert_eq!(cpu0["status"], "warning");
    assert_eq!(cpu0["claims"]["measurement"], hex(&MEASUREMENT));
    assert_eq!(cpu0["runtime_data"]["hpke_pk"], "cloister-hpke-x25519:pk");
    assert_eq!(cpu0["policy_id"], "cloister-default@v1");
    assert_eq!(cpu0["trustworthiness_vector"]["executables"], 2);
    assert_eq!(v["context"], json!({"job_id": "job-1", "requester": "worker-a", "purpose": null}));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn overall_status_is_the_worst_submod() {
    let m = MEASUREMENT;
    assert_eq!(overall_status(&ear(vec![])), EarStatus::None);
    let both = ear(vec![
        ("cpu0", submod(EarStatus::Affirming, &m)),
        ("gpu0", submod(EarStatus::Warning, &m)),
    ]);
    assert_eq!(overall_status(&both), EarStatus::Warning);
    let bad = ear(vec![
        ("cpu0", submod(EarStatus::Affirming, &m)),
        ("gpu0", submod(EarStatus::Contraindicated, &m)),
    ]);
    assert_eq!(overall_status(&bad), EarStatus::Contraindicated);
}

#[test]
fn template_allows_listed_measurements_that_are_affirming_or_warning() {
    let policy = template();
    for status in [EarStatus::Affirming, EarStatus::Warning] {
        let d = policy.evaluate(&input(&ear(vec![("cpu0", submod(status, &MEASUREMENT))])));
        assert!(d.allow, "{status:?}: {d:?}");
        assert!(d.reasons.is_empty(), "{d:?}");
    }
    let with_gpu = ear(vec![
        ("cpu0", submod(EarStatus::Affirming, &MEASUREMENT)),
        ("gpu0", submod(EarStatus::Warning, &[1, 2, 3])),
    ]);
    assert!(policy.evaluate(&input(&with_gpu)).allow);
}

#[test]
fn template_denies_other_measurements_bad_statuses_and_missing_cpu0() {
    let policy = template();
    let d =
        policy.evaluate(&input(&ear(vec![("cpu0", submod(EarStatus::Affirming, &[0xcd; 48]))])));
    assert!(!d.allow);
    assert!(d.reasons.iter().any(|r| r.contains("is not one this key is released to")), "{d:?}");
    assert!(d.reasons[0].contains("denied"), "{d:?}");

    for status in [EarStatus::Contraindicated, EarStatus::None] {
        let body = ear(vec![
            ("cpu0", submod(EarStatus::Affirming, &MEASUREMENT)),
            ("gpu0", submod(status, &MEASUREMENT)),
        ]);
        let d = policy.evaluate(&input(&body));
        assert!(!d.allow, "{status:?}");
        assert!(d.reasons.iter().any(|r| r.contains("gpu0 is")), "{d:?}");
    }

    let d =
        policy.evaluate(&input(&ear(vec![("gpu0", submod(EarStatus::Affirming, &MEASUREMENT))])));
    assert!(!d.allow);
    assert!(d.reasons.iter().any(|r| r.contains("no cpu0 appraisal")), "{d:?}");

    let d = policy.evaluate(&input(&ear(vec![])));
    assert!(!d.allow, "{d:?}");
}

#[test]
fn template_with_no_measurements_releases_to_nobody() {
    let policy = ReleasePolicy::new(&ReleasePolicy::template(&[])).unwrap();
    let d =
        policy.evaluate(&input(&ear(vec![("cpu0", submod(EarStatus::Affirming, &MEASUREMENT))])));
    assert!(!d.allow, "{d:?}");
}

#[test]
fn template_matches_measurements_case_insensitively_and_dedups() {
    let text = ReleasePolicy::template(&[Hex(MEASUREMENT.to_vec()), Hex(MEASUREMENT.to_vec())]);
    assert_eq!(text.matches(&hex(&MEASUREMENT)).count(), 1, "{text}");
    let policy = ReleasePolicy::new(&text).unwrap();
    let mut v = input(&ear(vec![("cpu0", submod(EarStatus::Affirming, &MEASUREMENT))]));
    v["ear"]["submods"]["cpu0"]["claims"]["measurement"] = json!(hex(&MEASUREMENT).to_uppercase());
    assert!(policy.evaluate(&v).allow);
}

#[test]
fn custom_policy_reasons_are_reported_on_allow_and_deny() {
    let rego = r#"package cloister.release
default allow := false
allow if input.context.purpose == "training"
reasons contains sprintf("purpose is %v", [input.context.purpose])
"#;
    let policy = ReleasePolicy::new(rego).unwrap();
    let body = ear(vec![("cpu0", submod(EarStatus::Affirming, &MEASUREMENT))]);
    let mut v = input(&body);
    v["context"]["purpose"] = json!("training");
    let d = policy.evaluate(&v);
    assert!(d.allow);
    assert_eq!(d.reasons, vec!["purpose is training".to_owned()]);
    v["context"]["purpose"] = json!("marketing");
    let d = policy.evaluate(&v);
    assert!(!d.allow);
    assert_eq!(
        d.reasons,
        vec!["the release policy denied the release".to_owned(), "purpose is marketing".to_owned()]
    );
}

#[test]
fn undefined_allow_is_a_refusal() {
    let policy = ReleasePolicy::new(
        "package cloister.release\nallow if input.context.job_id == \"never\"\n",
    )
    .unwrap();
    let d =
        policy.evaluate(&input(&ear(vec![("cpu0", submod(EarStatus::Affirming, &MEASUREMENT))])));
    assert!(!d.allow);
    assert!(d.reasons[0].contains("undefined"), "{d:?}");
}

#[test]
fn non_boolean_allow_is_a_refusal() {
    for (rego, needle) in [
        ("package cloister.release\nallow := \"yes\"\n", "\"yes\""),
        ("package cloister.release\nallow := 1\n", "found 1"),
        ("package cloister.release\nallow := {\"a\": true}\n", "must be true or false"),
    ] {
        let policy = ReleasePolicy::new(rego).unwrap();
        let d = policy
            .evaluate(&input(&ear(vec![("cpu0", submod(EarStatus::Affirming, &MEASUREMENT))])));
        assert!(!d.allow, "{rego}");
        assert!(d.reasons[0].contains(needle), "{rego}: {d:?}");
    }
}

#[test]
fn evaluation_errors_are_refusals() {
    // Two complete definitions of `allow` with different values: a Rego runtime conflict.
    let rego = "package cloister.release\nallow := true if input.instance == \"in_1\"\n\
                allow := false if input.key.id == \"kb_1\"\n";
    let policy = ReleasePolicy::new(rego).unwrap();
    let d =
        policy.evaluate(&input(&ear(vec![("cpu0", submod(EarStatus::Affirming, &MEASUREMENT))])));
    assert!(!d.allow, "{d:?}");
    assert!(d.reasons[0].contains("failed to evaluate"), "{d:?}");
}

#[test]
fn malformed_reasons_are_reported_but_do_not_turn_a_deny_into_allow() {
    let rego = "package cloister.release\ndefault allow := false\nreasons := 7\n";
    let policy = ReleasePolicy::new(rego).unwrap();
    let d =
        policy.evaluate(&input(&ear(vec![("cpu0", submod(EarStatus::Affirming, &MEASUREMENT))])));
    assert!(!d.allow);
    assert!(d.reasons.iter().any(|r| r.contains("must be a set or array of strings")), "{d:?}");
}

#[test]
fn malformed_policies_are_refused_at_construction() {
    for (rego, needle) in [
        ("package cloister.release\nallow if {", ""),
        ("package cloister.appraisal\nallow := true\n", "must declare `package cloister.release`"),
        ("package cloister.release\nreasons contains \"x\"\n", "does not define the rule `allow`"),
        ("this is not rego", ""),
    ] {
        let err = ReleasePolicy::new(rego).unwrap_err();
        assert!(matches!(err, PolicyError::InvalidRelease(_)), "{rego}: {err}");
        assert!(err.to_string().contains(needle), "{rego}: {err}");
        assert!(err.to_string().starts_with("the key release policy is invalid"), "{err}");
    }
    let huge = format!("package cloister.release\nallow := false\n#{}\n", "x".repeat(70_000));
    assert!(ReleasePolicy::new(&huge).unwrap_err().to_string().contains("at most"));
}

#[test]
fn the_policy_library_is_available() {
    // `data.cloister.lib` loads beside release policies, as beside appraisal policies.
    let rego = "package cloister.release\nimport data.cloister.lib\n\
                default allow := false\nallow if lib.hardware\n";
    let policy = ReleasePolicy::new(rego).unwrap();
    // lib.hardware is `input.tee != "sim"`; release input has no `tee`, so it is undefined.
    let mut v = input(&ear(vec![("cpu0", submod(EarStatus::Affirming, &MEASUREMENT))]));
    assert!(!policy.evaluate(&v).allow);
    v["tee"] = json!("tdx");
    assert!(policy.evaluate(&v).allow);
    assert!(policy.rego().contains("import data.cloister.lib"));
}
