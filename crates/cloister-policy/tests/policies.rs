//! Every rule of the built-in policies, and the fail-closed handling of custom ones.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use cloister_policy::{Appraisal, AppraisalPolicy, PolicyError};
use cloister_types::{Claims, EarStatus, Hex, TcbStatus, TeeKind};
use serde_json::json;

const MEASUREMENT: [u8; 48] = [0xab; 48];

/// RTMR0-2 of the TDX claims below, and what `listed()` pins.
const RTMRS: [[u8; 48]; 3] = [[0x10; 48], [0x11; 48], [0x12; 48]];

fn claims(tee: TeeKind) -> Claims {
    let mut vendor = BTreeMap::new();
    if tee == TeeKind::Tdx {
        vendor.insert(
            "tdx".to_owned(),
            json!({"rtmr0": hex(&RTMRS[0]), "rtmr1": hex(&RTMRS[1]), "rtmr2": hex(&RTMRS[2]),
                   "rtmr3": hex(&[0; 48])}),
        );
    }
    Claims {
        tee,
        measurement: Hex(MEASUREMENT.to_vec()),
        signer: None,
        product_id: None,
        svn: Some(1),
        debug: false,
        report_data: Hex(vec![0; 64]),
        tcb_status: if tee == TeeKind::Sim { TcbStatus::Simulated } else { TcbStatus::UpToDate },
        advisories: Vec::new(),
        platform_id: None,
        vendor,
    }
}

/// The reference measurement, and RTMR0-2 of TDX (as the service hands them to a policy: a
/// `tdx` section merged into the top level).
fn listed() -> serde_json::Value {
    json!({"measurements": [hex(&MEASUREMENT)],
           "rtmr0": [hex(&RTMRS[0])], "rtmr1": [hex(&RTMRS[1])], "rtmr2": [hex(&RTMRS[2])]})
}

/// [`listed`] with `extra`'s keys added or replaced.
fn listed_with(extra: serde_json::Value) -> serde_json::Value {
    let mut values = listed();
    for (key, value) in extra.as_object().unwrap() {
        values[key] = value.clone();
    }
    values
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn has_reason(a: &Appraisal, needle: &str) -> bool {
    a.reasons.iter().any(|r| r.contains(needle))
}

// ---- production default ----

#[test]
fn default_affirms_up_to_date_hardware_with_a_reference_measurement() {
    let a =
        AppraisalPolicy::production_default().appraise(&claims(TeeKind::Tdx), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
    assert!(a.reasons.is_empty(), "{a:?}");
    assert_eq!(a.trustworthiness_vector["executables"], 2);
    assert_eq!(a.trustworthiness_vector["hardware"], 2);
    assert_eq!(a.trustworthiness_vector["runtime-opaque"], 2);
    assert_eq!(a.trustworthiness_vector["configuration"], 2);
    assert_eq!(a.trustworthiness_vector["instance-identity"], 2);
}

#[test]
fn default_rejects_sim_even_with_a_reference_measurement() {
    let a =
        AppraisalPolicy::production_default().appraise(&claims(TeeKind::Sim), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "the simulated TEE is not accepted by this policy"), "{a:?}");
    assert_eq!(a.trustworthiness_vector["hardware"], 97);
}

#[test]
fn default_rejects_debug() {
    let mut c = claims(TeeKind::Snp);
    c.debug = true;
    let a = AppraisalPolicy::production_default().appraise(&c, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "debug mode"), "{a:?}");
    assert_eq!(a.trustworthiness_vector["runtime-opaque"], 96);
}

#[test]
fn default_rejects_unknown_measurement() {
    let mut c = claims(TeeKind::Tdx);
    c.measurement = Hex(vec![0xcd; 48]);
    let a = AppraisalPolicy::production_default().appraise(&c, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(
        has_reason(&a, &format!("measurement {} is not one of the reference", hex(&[0xcd; 48]))),
        "{a:?}"
    );
    assert_eq!(a.trustworthiness_vector["executables"], 33);
}

#[test]
fn default_rejects_when_no_measurements_are_configured() {
    let policy = AppraisalPolicy::production_default();
    for rv in [json!({}), json!({"measurements": []}), json!({"measurements": "x"}), json!(null)] {
        let a = policy.appraise(&claims(TeeKind::Tdx), &rv).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{rv}");
        assert!(has_reason(&a, "no reference measurements are configured"), "{a:?}");
    }
}

#[test]
fn reference_measurements_match_case_insensitively() {
    let rv = listed_with(json!({"measurements": [hex(&MEASUREMENT).to_uppercase()]}));
    let a = AppraisalPolicy::production_default().appraise(&claims(TeeKind::Tdx), &rv).unwrap();
    assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
}

#[test]
fn default_rejects_out_of_date_tcb_unless_allowed() {
    let policy = AppraisalPolicy::production_default();
    let mut c = claims(TeeKind::Tdx);
    c.tcb_status = TcbStatus::OutOfDate;
    let a = policy.appraise(&c, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "TCB status OutOfDate is neither"), "{a:?}");

    let rv = listed_with(json!({"allowed_tcb_statuses": ["OutOfDate"]}));
    let a = policy.appraise(&c, &rv).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
    assert!(has_reason(&a, "accepted because allowed_tcb_statuses"), "{a:?}");
    assert_eq!(a.trustworthiness_vector["hardware"], 32);
}

#[test]
fn default_requires_advisories_to_be_allowed() {
    let policy = AppraisalPolicy::production_default();
    let mut c = claims(TeeKind::Tdx);
    c.advisories = vec!["INTEL-SA-00837".into()];
    let a = policy.appraise(&c, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "advisory INTEL-SA-00837 is not in allowed_advisories"), "{a:?}");

    let rv = listed_with(json!({"allowed_advisories": ["INTEL-SA-00837"]}));
    let a = policy.appraise(&c, &rv).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
}

#[test]
fn default_rejects_revoked_even_with_everything_else_right() {
    let mut c = claims(TeeKind::Snp);
    c.tcb_status = TcbStatus::Revoked;
    let a = AppraisalPolicy::production_default().appraise(&c, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
}

// ---- development sim ----

#[test]
fn dev_sim_accepts_sim_as_warning_only() {
    let a = AppraisalPolicy::development_sim().appraise(&claims(TeeKind::Sim), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
    assert!(has_reason(&a, "simulated TEE: development only, no hardware protection"), "{a:?}");
    assert_eq!(a.trustworthiness_vector["executables"], 2);
    assert_eq!(a.trustworthiness_vector["hardware"], 32);
    assert_eq!(a.trustworthiness_vector["runtime-opaque"], 32);
}

#[test]
fn dev_sim_rejects_sim_with_unknown_measurement_or_debug() {
    let policy = AppraisalPolicy::development_sim();
    let mut c = claims(TeeKind::Sim);
    c.measurement = Hex(vec![1; 48]);
    let a = policy.appraise(&c, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "is not one of the reference measurements"), "{a:?}");

    let mut c = claims(TeeKind::Sim);
    c.debug = true;
    let a = policy.appraise(&c, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "debug mode"), "{a:?}");

    let a = policy.appraise(&claims(TeeKind::Sim), &json!({})).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "no reference measurements are configured"), "{a:?}");
}

#[test]
fn dev_sim_does_not_let_a_hardware_tee_claim_the_simulated_tcb() {
    let mut c = claims(TeeKind::Tdx);
    c.tcb_status = TcbStatus::Simulated;
    let a = AppraisalPolicy::development_sim().appraise(&c, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
}

#[test]
fn dev_sim_judges_other_tees_like_the_default() {
    let dev = AppraisalPolicy::development_sim();
    let prod = AppraisalPolicy::production_default();
    let mut out_of_date = claims(TeeKind::Tdx);
    out_of_date.tcb_status = TcbStatus::OutOfDate;
    let mut debug = claims(TeeKind::Snp);
    debug.debug = true;
    let rv_allow = listed_with(json!({"allowed_tcb_statuses": ["OutOfDate"]}));
    for (c, rv) in [
        (claims(TeeKind::Tdx), listed()),
        (out_of_date.clone(), listed()),
        (out_of_date, rv_allow),
        (debug, listed()),
        (claims(TeeKind::Tdx), json!({})),
    ] {
        assert_eq!(dev.appraise(&c, &rv).unwrap(), prod.appraise(&c, &rv).unwrap(), "{c:?} {rv}");
    }
}

// ---- custom policies and fail-closed handling ----

#[test]
fn undefined_result_is_contraindicated() {
    let policy = AppraisalPolicy::new(
        "never",
        1,
        "package cloister.appraisal\n\nresult := {\"status\": \"affirming\", \"trustworthiness_vector\": {}, \"reasons\": []} if input.tee == \"nothing\"\n",
    )
    .unwrap();
    let a = policy.appraise(&claims(TeeKind::Tdx), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "undefined"), "{a:?}");
    assert!(has_reason(&a, "never@v1"), "{a:?}");
}

#[test]
fn malformed_results_are_contraindicated() {
    let bodies = [
        r#"{"status": "trusted", "trustworthiness_vector": {}, "reasons": []}"#,
        r#"{"status": "none", "trustworthiness_vector": {}, "reasons": []}"#,
        r#"{"status": "affirming", "trustworthiness_vector": {}}"#,
        r#"{"status": "affirming", "trustworthiness_vector": {}, "reasons": "ok"}"#,
        r#"{"status": "affirming", "trustworthiness_vector": {"hardware": 300}, "reasons": []}"#,
        r#"{"status": "affirming", "trustworthiness_vector": {"vibes": 2}, "reasons": []}"#,
        r#"{"status": "affirming", "trustworthiness_vector": {}, "reasons": [], "extra": 1}"#,
        r#""affirming""#,
        "true",
    ];
    for body in bodies {
        let rego = format!("package cloister.appraisal\n\nresult := {body}\n");
        let policy = AppraisalPolicy::new("bad", 3, &rego).unwrap();
        let a = policy.appraise(&claims(TeeKind::Tdx), &listed()).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{body}: {a:?}");
        assert!(has_reason(&a, "bad@v3 produced no usable decision"), "{body}: {a:?}");
    }
}

#[test]
fn status_is_never_better_than_the_worst_tier() {
    let rego = r#"package cloister.appraisal

result := {"status": "affirming", "trustworthiness_vector": {"hardware": 97, "executables": 2}, "reasons": []}
"#;
    let a = AppraisalPolicy::new("liar", 1, rego)
        .unwrap()
        .appraise(&claims(TeeKind::Tdx), &listed())
        .unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated);
    assert!(has_reason(&a, "hardware has tier 97"), "{a:?}");
}

#[test]
fn sim_is_never_affirming_whatever_the_policy_says() {
    let rego = r#"package cloister.appraisal

result := {"status": "affirming", "trustworthiness_vector": {}, "reasons": []}
"#;
    let a = AppraisalPolicy::new("permissive", 1, rego)
        .unwrap()
        .appraise(&claims(TeeKind::Sim), &listed())
        .unwrap();
    assert_eq!(a.status, EarStatus::Warning);
    assert!(has_reason(&a, "simulated TEE"), "{a:?}");
}

fn virtcca(platform_verified: bool) -> Claims {
    let mut c = claims(TeeKind::VirtCca);
    c.tcb_status = TcbStatus::Unknown;
    let platform = if platform_verified { "verified" } else { "unverified: no platform token" };
    c.vendor.insert(
        "virtcca".to_owned(),
        json!({"platform_verified": platform_verified, "platform": platform}),
    );
    c
}

/// A virtCCA token whose platform is not chained to a Huawei root proves nothing (its signing
/// key comes with it): `default` refuses it, `dev-sim` warns, and no policy makes it affirming.
#[test]
fn virtcca_without_a_verified_platform_is_never_affirming() {
    let a = AppraisalPolicy::production_default().appraise(&virtcca(false), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    assert!(has_reason(&a, "virtcca: the platform is not verified"), "{a:?}");
    assert!(has_reason(&a, "no platform token"), "{a:?}");
    assert_eq!(a.trustworthiness_vector["instance-identity"], 96);

    let a = AppraisalPolicy::production_default().appraise(&virtcca(true), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
    assert!(has_reason(&a, "virtcca publishes no TCB status"), "{a:?}");

    let a = AppraisalPolicy::development_sim().appraise(&virtcca(false), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");

    let rego = r#"package cloister.appraisal

result := {"status": "affirming", "trustworthiness_vector": {}, "reasons": []}
"#;
    let permissive = AppraisalPolicy::new("permissive", 1, rego).unwrap();
    let a = permissive.appraise(&virtcca(false), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
    assert!(has_reason(&a, "CVM token alone"), "{a:?}");
    let a = permissive.appraise(&virtcca(true), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
}

fn psa(components: serde_json::Value, lifecycle: &str) -> Claims {
    let mut c = claims(TeeKind::Psa);
    c.tcb_status = TcbStatus::Unknown;
    c.debug = lifecycle != "secured";
    c.vendor.insert(
        "psa".to_owned(),
        json!({"software_components": components, "security_lifecycle": {"name": lifecycle}}),
    );
    c
}

/// PSA tokens are judged by their software components when reference values list them: every
/// component must match (measurement, and the signer/type/version the reference names).
#[test]
fn psa_software_components_are_each_matched_against_reference_values() {
    let spe = json!({"measurement_type": "SPE", "measurement_value": "aa", "signer_id": "bb",
                     "version": "1.6.0"});
    let nspe = json!({"measurement_type": "NSPE", "measurement_value": "cc", "signer_id": "dd",
                      "version": "0.0.0"});
    let reference = json!({"psa_software_components": [
        {"measurement_value": "AA", "signer_id": "bb"},
        {"measurement_value": "cc", "measurement_type": "NSPE"},
    ]});
    let policy = AppraisalPolicy::production_default();
    let a = policy.appraise(&psa(json!([spe, nspe]), "secured"), &reference).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
    assert!(has_reason(&a, "psa publishes no TCB status"), "{a:?}");
    assert_eq!(a.trustworthiness_vector["executables"], 2);

    let mut other = nspe.clone();
    other["measurement_value"] = json!("ee");
    let a = policy.appraise(&psa(json!([spe, other]), "secured"), &reference).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    assert!(has_reason(&a, "software component NSPE (measurement ee)"), "{a:?}");

    let mut wrong_signer = spe.clone();
    wrong_signer["signer_id"] = json!("00");
    let a = policy.appraise(&psa(json!([wrong_signer, nspe]), "secured"), &reference).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");

    let a = policy.appraise(&psa(json!([spe, nspe]), "non-psa-rot-debug"), &reference).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    assert!(has_reason(&a, "debug mode"), "{a:?}");

    // Without component reference values, the measurement (their digest) must be listed.
    let a = policy.appraise(&psa(json!([spe, nspe]), "secured"), &json!({})).unwrap();
    assert!(has_reason(&a, "no reference measurements are configured"), "{a:?}");
    let a = policy.appraise(&psa(json!([spe, nspe]), "secured"), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
}

fn android(level: &str, boot: &str, locked: bool, revocation_checked: bool) -> Claims {
    let mut c = claims(TeeKind::Android);
    c.tcb_status = if revocation_checked { TcbStatus::UpToDate } else { TcbStatus::Unknown };
    c.vendor.insert(
        "android".to_owned(),
        json!({"security_level": level, "revocation_checked": revocation_checked,
               "root_of_trust": {"verified_boot_state": boot, "device_locked": locked}}),
    );
    c
}

/// Android keys are accepted only in TrustZone or StrongBox on a locked, verified-boot device;
/// an unchecked revocation list is a caution.
#[test]
fn android_refuses_software_keys_and_unverified_or_unlocked_devices() {
    let policy = AppraisalPolicy::production_default();
    let a = policy.appraise(&android("strong_box", "verified", true, true), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
    let a = policy
        .appraise(&android("trusted_environment", "verified", true, false), &listed())
        .unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
    assert!(has_reason(&a, "no revocation status list was given"), "{a:?}");
    assert!(!has_reason(&a, "allowed_tcb_statuses"), "{a:?}");

    let a = policy.appraise(&android("software", "verified", true, true), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    assert!(has_reason(&a, "security level software"), "{a:?}");
    let a = policy.appraise(&android("strong_box", "unverified", true, true), &listed()).unwrap();
    assert!(has_reason(&a, "verified boot state is unverified"), "{a:?}");
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    let a = policy.appraise(&android("strong_box", "verified", false, true), &listed()).unwrap();
    assert!(has_reason(&a, "bootloader is unlocked"), "{a:?}");
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
}

#[test]
fn invalid_rego_is_rejected_with_regorus_message() {
    let err = AppraisalPolicy::new("broken", 1, "package cloister.appraisal\n\nresult := {\n")
        .unwrap_err();
    match &err {
        PolicyError::Invalid { policy_id, message } => {
            assert_eq!(policy_id, "broken@v1");
            assert!(!message.is_empty());
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn wrong_package_or_missing_result_is_invalid() {
    let err = AppraisalPolicy::new("p", 1, "package other\n\nresult := 1\n").unwrap_err();
    assert!(matches!(err, PolicyError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("package cloister.appraisal"), "{err}");

    let err =
        AppraisalPolicy::new("p", 1, "package cloister.appraisal\n\nallow := true\n").unwrap_err();
    assert!(err.to_string().contains("does not define the rule `result`"), "{err}");
}

#[test]
fn policy_ids_are_checked_and_versioned() {
    assert!(matches!(
        AppraisalPolicy::new("", 1, "package cloister.appraisal\nresult := 1\n"),
        Err(PolicyError::InvalidId(_))
    ));
    assert!(matches!(
        AppraisalPolicy::new("a@b", 1, "package cloister.appraisal\nresult := 1\n"),
        Err(PolicyError::InvalidId(_))
    ));
    assert_eq!(AppraisalPolicy::production_default().policy_id(), "cloister-default@v1");
    assert_eq!(AppraisalPolicy::development_sim().policy_id(), "cloister-dev-sim@v1");
    let p =
        AppraisalPolicy::new("tenant.a", 7, "package cloister.appraisal\nresult := 1\n").unwrap();
    assert_eq!(p.policy_id(), "tenant.a@v7");
    assert_eq!(p.version(), 7);
    assert!(p.rego().contains("result := 1"));
}

#[test]
fn policies_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AppraisalPolicy>();
}

// ---- per-TEE TCB judgements (policy library) ----

fn with_vendor(mut c: Claims, tee: &str, fields: serde_json::Value) -> Claims {
    c.tcb_status = TcbStatus::Unknown;
    c.vendor.insert(tee.to_owned(), fields);
    c
}

fn snp_claims(bootloader: u64, microcode: u64) -> Claims {
    with_vendor(
        claims(TeeKind::Snp),
        "snp",
        json!({"reported_tcb": {"bootloader": bootloader, "tee": 0, "snp": 8, "microcode": microcode}}),
    )
}

#[test]
fn snp_needs_a_configured_minimum_tcb() {
    let policy = AppraisalPolicy::production_default();
    let a = policy.appraise(&snp_claims(3, 115), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    assert!(has_reason(&a, "snp_minimum_tcb is not configured"), "{a:?}");

    let minimum = json!({"measurements": [hex(&MEASUREMENT)],
        "snp_minimum_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}});
    let a = policy.appraise(&snp_claims(3, 115), &minimum).unwrap();
    assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
    assert_eq!(a.trustworthiness_vector["hardware"], 2);

    let a = policy.appraise(&snp_claims(3, 114), &minimum).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    assert!(has_reason(&a, "below the minimum"), "{a:?}");
}

#[test]
fn nitro_has_no_tcb_claim_and_is_judged_by_measurement() {
    let policy = AppraisalPolicy::production_default();
    let nitro = with_vendor(claims(TeeKind::Nitro), "nitro", json!({}));
    let a = policy.appraise(&nitro, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
    let a = policy.appraise(&nitro, &json!({"measurements": ["00"]})).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
}

#[test]
fn cca_and_csv_are_accepted_with_a_caution_about_the_missing_tcb_status() {
    let policy = AppraisalPolicy::production_default();
    for (tee, name) in [(TeeKind::Cca, "cca"), (TeeKind::Csv, "csv")] {
        let c = with_vendor(claims(tee), name, json!({}));
        let a = policy.appraise(&c, &listed()).unwrap();
        assert_eq!(a.status, EarStatus::Warning, "{a:?}");
        assert!(has_reason(&a, "publishes no TCB status"), "{a:?}");
        let mut debug = c.clone();
        debug.debug = true;
        let a = policy.appraise(&debug, &listed()).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    }
}

fn gpu(appraised: bool, signature_verified: bool, root: serde_json::Value) -> Claims {
    with_vendor(
        claims(TeeKind::Nvidia),
        "nvidia",
        json!({
            "measurements_appraised": appraised,
            "rim_signature_verified": signature_verified,
            "rim_root": root,
        }),
    )
}

#[test]
fn gpu_measurements_are_appraised_against_rims_not_listed() {
    let policy = AppraisalPolicy::production_default();
    let a = policy.appraise(&gpu(true, true, json!("nvidia")), &json!({})).unwrap();
    assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
    let a = policy.appraise(&gpu(false, true, json!("nvidia")), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
    assert!(has_reason(&a, "not appraised against reference integrity manifests"), "{a:?}");
}

#[test]
fn default_never_affirms_a_gpu_with_unverified_or_test_signed_rims() {
    let policy = AppraisalPolicy::production_default();
    for (c, reason) in [
        (gpu(true, false, json!("nvidia")), "not appraised against reference integrity manifests"),
        (gpu(true, true, json!(null)), "not appraised against reference integrity manifests"),
        (gpu(true, true, json!("other")), "not appraised against reference integrity manifests"),
        // Claims of a verifier that predates RIM signatures.
        (
            with_vendor(claims(TeeKind::Nvidia), "nvidia", json!({"measurements_appraised": true})),
            "not appraised against reference integrity manifests",
        ),
        (gpu(true, true, json!("test")), "RIMs are signed under a test root"),
    ] {
        let a = policy.appraise(&c, &listed()).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{c:?}: {a:?}");
        assert!(has_reason(&a, reason), "{a:?}");
        assert_eq!(a.trustworthiness_vector["hardware"], 97);
    }
}

#[test]
fn dev_sim_accepts_test_signed_gpu_rims_as_a_warning_at_best() {
    let policy = AppraisalPolicy::development_sim();
    let a = policy.appraise(&gpu(true, true, json!("test")), &json!({})).unwrap();
    assert_eq!(a.status, EarStatus::Warning, "{a:?}");
    assert!(has_reason(&a, "nvidia: RIMs signed under a test root: development only"), "{a:?}");
    assert_eq!(a.trustworthiness_vector["hardware"], 32);
    // NVIDIA-signed RIMs are judged as by the default policy.
    let a = policy.appraise(&gpu(true, true, json!("nvidia")), &json!({})).unwrap();
    assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
    // Unverified or incomplete appraisals are refused whatever the root.
    for c in [gpu(true, false, json!("test")), gpu(false, true, json!("test"))] {
        let a = policy.appraise(&c, &listed()).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{c:?}: {a:?}");
    }
}

#[test]
fn custom_policies_can_use_the_library() {
    let rego = r#"
package cloister.appraisal

import data.cloister.lib

result := {"status": "affirming", "trustworthiness_vector": {}, "reasons": []} if {
	lib.tcb_current
	lib.measurement_known
}

result := {"status": "contraindicated", "trustworthiness_vector": {}, "reasons": ["no"]} if {
	not lib.tcb_current
}
"#;
    let policy = AppraisalPolicy::new("uses-lib", 1, rego).unwrap();
    assert_eq!(
        policy.appraise(&claims(TeeKind::Tdx), &listed()).unwrap().status,
        EarStatus::Affirming
    );
    let mut old = claims(TeeKind::Tdx);
    old.tcb_status = TcbStatus::OutOfDate;
    assert_eq!(policy.appraise(&old, &listed()).unwrap().status, EarStatus::Contraindicated);
}

// ---- TDX runtime measurement registers ----

#[test]
fn tdx_is_refused_unless_rtmr0_to_2_are_each_pinned_and_match() {
    for policy in [AppraisalPolicy::production_default(), AppraisalPolicy::development_sim()] {
        let c = claims(TeeKind::Tdx);
        // MRTD alone (the firmware) is not enough: every unpinned RTMR is named.
        let a = policy.appraise(&c, &json!({"measurements": [hex(&MEASUREMENT)]})).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
        for name in ["rtmr0", "rtmr1", "rtmr2"] {
            assert!(has_reason(&a, &format!("no reference values for {name}")), "{a:?}");
        }
        assert_eq!(a.trustworthiness_vector["executables"], 33);
        // Each register is checked on its own: another kernel (RTMR1) is refused by name.
        let mut other_kernel = listed();
        other_kernel["rtmr1"] = json!([hex(&[0x99; 48])]);
        let a = policy.appraise(&c, &other_kernel).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
        assert!(has_reason(&a, &format!("rtmr1 {} is not one", hex(&RTMRS[1]))), "{a:?}");
        assert!(!has_reason(&a, "rtmr0") && !has_reason(&a, "rtmr2"), "{a:?}");
        // Claims without the registers (a malformed or foreign claim set) never pass.
        let mut bare = c.clone();
        bare.vendor.clear();
        let a = policy.appraise(&bare, &listed()).unwrap();
        assert!(has_reason(&a, "rtmr0 absent is not one"), "{a:?}");
        // Pinned in upper case: accepted; RTMR3 is not pinned.
        let common = json!({"measurements": [hex(&MEASUREMENT)],
            "rtmr0": [hex(&RTMRS[0]).to_uppercase()], "rtmr1": [hex(&RTMRS[1])],
            "rtmr2": [hex(&RTMRS[2])]});
        let a = policy.appraise(&c, &common).unwrap();
        assert_eq!(a.status, EarStatus::Affirming, "{a:?}");
        // Other TEEs are not asked for RTMRs.
        let a =
            policy.appraise(&claims(TeeKind::Nitro), &json!({"measurements": [hex(&MEASUREMENT)]}));
        assert_eq!(a.unwrap().status, EarStatus::Affirming);
    }
}

// ---- test roots (trust_anchors.test_roots) ----

/// Claims of `tee` whose chain ended at a root from `origin` (`vendor`, `instance`, `test`).
fn rooted(tee: TeeKind, origin: &str) -> Claims {
    let mut c = claims(tee);
    let fields = c.vendor.entry(tee.as_str().to_owned()).or_insert_with(|| json!({}));
    fields["trust_anchor"] = json!(origin);
    if tee == TeeKind::Snp {
        fields["reported_tcb"] = json!({"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115});
    }
    if matches!(tee, TeeKind::Snp | TeeKind::Nitro) {
        // No vendor TCB status: judged by the minimum TCB (snp) or not at all (nitro).
        c.tcb_status = TcbStatus::Unknown;
    }
    c
}

fn hardware_listed(tee: TeeKind) -> serde_json::Value {
    let mut rv = listed();
    if tee == TeeKind::Snp {
        rv["snp_minimum_tcb"] = json!({"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115});
    }
    rv
}

const TEST_ROOT_TEES: [TeeKind; 4] = [TeeKind::Sgx, TeeKind::Tdx, TeeKind::Snp, TeeKind::Nitro];

#[test]
fn default_refuses_evidence_under_a_test_root_and_says_why() {
    let policy = AppraisalPolicy::production_default();
    for tee in TEST_ROOT_TEES {
        let a = policy.appraise(&rooted(tee, "test"), &hardware_listed(tee)).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{tee}: {a:?}");
        let reason = format!("{tee}: the evidence is signed under a test root the instance names");
        assert!(has_reason(&a, &reason), "{a:?}");
        assert!(has_reason(&a, "not the vendor's root"), "{a:?}");
        assert_eq!(a.trustworthiness_vector["hardware"], 97);
        assert_eq!(a.trustworthiness_vector["instance-identity"], 96);
        // The vendor's root and the instance's own roots are judged as before.
        for origin in ["vendor", "instance"] {
            let a = policy.appraise(&rooted(tee, origin), &hardware_listed(tee)).unwrap();
            assert_eq!(a.status, EarStatus::Affirming, "{tee} {origin}: {a:?}");
        }
    }
}

#[test]
fn dev_sim_accepts_evidence_under_a_test_root_as_a_warning_at_best() {
    let policy = AppraisalPolicy::development_sim();
    for tee in TEST_ROOT_TEES {
        let a = policy.appraise(&rooted(tee, "test"), &hardware_listed(tee)).unwrap();
        assert_eq!(a.status, EarStatus::Warning, "{tee}: {a:?}");
        let reason = format!("{tee}: evidence signed under a test root (trust_anchors.test_roots)");
        assert!(has_reason(&a, &reason), "{a:?}");
        assert_eq!(a.trustworthiness_vector["instance-identity"], 32);
        assert_eq!(a.trustworthiness_vector["hardware"], 32);
        // Everything else is judged as for the vendor's root: an unknown measurement, debug
        // or a TCB the policy does not accept is still refused.
        let a = policy.appraise(&rooted(tee, "test"), &json!({"measurements": ["00"]})).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{tee}: {a:?}");
        let mut debug = rooted(tee, "test");
        debug.debug = true;
        let a = policy.appraise(&debug, &hardware_listed(tee)).unwrap();
        assert_eq!(a.status, EarStatus::Contraindicated, "{tee}: {a:?}");
    }
    let mut out_of_date = rooted(TeeKind::Tdx, "test");
    out_of_date.tcb_status = TcbStatus::OutOfDate;
    let a = policy.appraise(&out_of_date, &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Contraindicated, "{a:?}");
}

#[test]
fn evidence_under_a_test_root_is_never_affirming_whatever_the_policy_says() {
    let rego = r#"package cloister.appraisal

result := {"status": "affirming", "trustworthiness_vector": {}, "reasons": []}
"#;
    let policy = AppraisalPolicy::new("permissive", 1, rego).unwrap();
    let a = policy.appraise(&rooted(TeeKind::Tdx, "test"), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Warning);
    assert!(has_reason(&a, "tdx: evidence signed under a test root"), "{a:?}");
    let a = policy.appraise(&rooted(TeeKind::Tdx, "instance"), &listed()).unwrap();
    assert_eq!(a.status, EarStatus::Affirming);
}
