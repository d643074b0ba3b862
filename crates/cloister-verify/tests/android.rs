//! Android key attestation: Google's real chains (android/ vectors, each compared with the
//! KeyDescription JSON Google's verifier expects), and synthetic chains built with test keys for
//! every check the driver makes.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use cloister_types::{Base64Url, Claims, Hex, RuntimeData, TcbStatus, TeeKind, UnifiedEvidence};
use cloister_verify::android::key_description::{self, AuthValue, KeyDescription, TagKind};
use cloister_verify::android::{self, AndroidError, KEY_DESCRIPTION_OID};
use cloister_verify::x509::Cert;
use cloister_verify::{AnchorOrigin, Collateral, Inputs, TrustAnchors, VerifyError};
use common::{assert_golden, at, vector};
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Every akatt case that comes with its expected KeyDescription JSON.
const AKATT_CASES: [&str; 15] = [
    "akita_sdk34_SB_RSA_NONE",
    "akita_sdk34_TEE_EC_NONE",
    "akita_sdk34_TEE_RSA_BASE+IMEI",
    "akita_sdk34_TEE_RSA_NONE",
    "akita_sdk34_TEE_RSA_NONE_USERAUTH",
    "blueline_sdk28_SB_RSA_NONE",
    "blueline_sdk28_SB_RSA_NONE_USERAUTH",
    "blueline_sdk28_TEE_EC_NONE",
    "blueline_sdk28_TEE_RSA_BASE+IMEI",
    "blueline_sdk28_TEE_RSA_NONE",
    "caiman_sdk36_SB_EC_RKP",
    "tegu_sdk36_SB_EC_2026_ROOT",
    "tegu_sdk37_TEE_MAX_USAGE_COUNT",
    "tegu_sdk37_TEE_TRUSTED_CONF",
    "tokay_sdk37_TEE_MLDSA_FACTORY",
];

fn run(
    evidence: &[u8],
    anchors: &TrustAnchors,
    collateral: &Collateral,
    now: i64,
) -> Result<Claims, VerifyError> {
    let inputs = Inputs { collateral, anchors, now_unix: now };
    cloister_verify::verify_vendor_evidence(TeeKind::Android, evidence, &inputs)
}

fn run_plain(evidence: &[u8], now: i64) -> Result<Claims, VerifyError> {
    run(evidence, &TrustAnchors::new(), &Collateral::new(), now)
}

fn android_err(result: Result<Claims, VerifyError>) -> AndroidError {
    match result {
        Err(VerifyError::Android(e)) => e,
        other => panic!("expected an android error, got {other:?}"),
    }
}

fn vendor(claims: &Claims) -> &Value {
    &claims.vendor["android"]
}

fn leaf_description(pem: &[u8]) -> KeyDescription {
    let certs = Cert::parse_many(pem).unwrap();
    key_description::parse(certs[0].extension(KEY_DESCRIPTION_OID).unwrap()).unwrap()
}

/// The creation time the README says to verify each case at (softwareEnforced
/// creationDateTime, milliseconds).
fn creation_time(expected: &Value) -> i64 {
    let ms: i64 =
        expected["softwareEnforced"]["creationDateTime"].as_str().unwrap().parse().unwrap();
    ms / 1000
}

// ---------------------------------------------------------------------------------------------
// The KeyDescription in the JSON shape of android/keyattestation's test data.

/// Tag names whose JSON name differs (plural lists in Google's JSON).
const JSON_NAMES: [(&str, &str); 6] = [
    ("purpose", "purposes"),
    ("algorithm", "algorithms"),
    ("blockMode", "blockModes"),
    ("digest", "digests"),
    ("padding", "paddings"),
    ("rsaOaepMgfDigest", "rsaOaepMgfDigests"),
];

const ORIGINS: [&str; 5] = ["GENERATED", "DERIVED", "IMPORTED", "RESERVED", "SECURELY_IMPORTED"];
const LEVELS: [&str; 3] = ["SOFTWARE", "TRUSTED_ENVIRONMENT", "STRONG_BOX"];
const BOOT_STATES: [&str; 4] = ["VERIFIED", "SELF_SIGNED", "UNVERIFIED", "FAILED"];

fn json_name(name: &str) -> String {
    JSON_NAMES.iter().find(|(ours, _)| *ours == name).map_or(name, |(_, theirs)| theirs).to_owned()
}

fn level(level: key_description::SecurityLevel) -> &'static str {
    match level {
        key_description::SecurityLevel::Software => LEVELS[0],
        key_description::SecurityLevel::TrustedEnvironment => LEVELS[1],
        key_description::SecurityLevel::StrongBox => LEVELS[2],
    }
}

fn to_google_json(kd: &KeyDescription) -> Value {
    json!({
        "attestationVersion": kd.attestation_version.to_string(),
        "attestationSecurityLevel": level(kd.attestation_security_level),
        "keyMintVersion": kd.keymint_version.to_string(),
        "keyMintSecurityLevel": level(kd.keymint_security_level),
        "attestationChallenge": B64.encode(&kd.attestation_challenge),
        "uniqueId": B64.encode(&kd.unique_id),
        "softwareEnforced": list_to_google_json(&kd.software_enforced),
        "hardwareEnforced": list_to_google_json(&kd.hardware_enforced),
    })
}

fn list_to_google_json(list: &key_description::AuthorizationList) -> Value {
    let mut out = serde_json::Map::new();
    for (number, value) in &list.entries {
        let name = key_description::tag_info(*number)
            .map_or_else(|| format!("tag_{number}"), |(n, _)| n.to_owned());
        let json = match value {
            AuthValue::Integer(v) if *number == 702 => json!(ORIGINS[*v as usize]),
            AuthValue::Integer(v) => json!(v.to_string()),
            AuthValue::IntegerSet(v) => json!(v.iter().map(u64::to_string).collect::<Vec<_>>()),
            AuthValue::Flag => json!(true),
            AuthValue::Bytes(b) => match key_description::tag_info(*number) {
                Some((_, TagKind::Text)) => json!(String::from_utf8(b.clone()).unwrap()),
                _ => json!(B64.encode(b)),
            },
            AuthValue::RootOfTrust(r) => json!({
                "verifiedBootKey": B64.encode(&r.verified_boot_key),
                "deviceLocked": r.device_locked,
                "verifiedBootState": BOOT_STATES[match r.verified_boot_state {
                    key_description::VerifiedBootState::Verified => 0,
                    key_description::VerifiedBootState::SelfSigned => 1,
                    key_description::VerifiedBootState::Unverified => 2,
                    key_description::VerifiedBootState::Failed => 3,
                }],
                "verifiedBootHash": B64.encode(r.verified_boot_hash.as_ref().unwrap()),
            }),
            AuthValue::ApplicationId(id) => json!({
                "packages": id.packages.iter().map(|p| json!({
                    "name": String::from_utf8(p.name.clone()).unwrap(),
                    "version": p.version.to_string(),
                })).collect::<Vec<_>>(),
                "signatures": id.signature_digests.iter().map(|d| B64.encode(d)).collect::<Vec<_>>(),
            }),
            AuthValue::Unknown(der) => json!(hex::encode(der)),
        };
        out.insert(json_name(&name), json);
    }
    Value::Object(out)
}

/// Google's JSON without what is not in the KeyDescription (`areTagsOrdered`).
fn expected_json(stem: &str) -> Value {
    let mut expected: Value =
        serde_json::from_slice(&vector(&format!("android/akatt_{stem}.json"))).unwrap();
    for list in ["softwareEnforced", "hardwareEnforced"] {
        if let Some(map) = expected[list].as_object_mut() {
            map.remove("areTagsOrdered");
        }
    }
    expected
}

#[test]
fn every_akatt_chain_verifies_at_its_creation_time_and_parses_as_google_expects() {
    for stem in AKATT_CASES {
        let pem = vector(&format!("android/akatt_{stem}.pem"));
        let expected = expected_json(stem);
        let parsed = to_google_json(&leaf_description(&pem));
        assert_eq!(parsed, expected, "{stem}: KeyDescription differs from the expected JSON");

        let now = creation_time(&expected);
        let claims = run_plain(&pem, now).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let android = vendor(&claims);
        assert_eq!(claims.tee, TeeKind::Android);
        assert_eq!(android["trust_anchor"], "vendor", "{stem}");
        assert_eq!(android["revocation_checked"], false);
        assert_eq!(claims.tcb_status, TcbStatus::Unknown);
        let challenge = B64.decode(expected["attestationChallenge"].as_str().unwrap()).unwrap();
        assert_eq!(claims.report_data, Hex(challenge), "{stem}");
        let level = expected["attestationSecurityLevel"].as_str().unwrap().to_ascii_lowercase();
        assert_eq!(android["security_level"], level, "{stem}");
        let rot = &expected["hardwareEnforced"]["rootOfTrust"];
        assert_eq!(android["root_of_trust"]["device_locked"], rot["deviceLocked"], "{stem}");
        let state = rot["verifiedBootState"].as_str().unwrap().to_ascii_lowercase();
        assert_eq!(android["root_of_trust"]["verified_boot_state"], state, "{stem}");
        // Locked and verified devices are the only ones that are not "debug".
        assert_eq!(claims.debug, state != "verified" || rot["deviceLocked"] != true, "{stem}");
    }
}

#[test]
fn the_ml_dsa_rkp_chain_verifies_and_names_the_ml_dsa_key() {
    let stem = "tokay_sdk37_TEE_MLDSA_RKP";
    let pem = vector(&format!("android/akatt_{stem}.pem"));
    let expected = expected_json(stem);
    assert_eq!(to_google_json(&leaf_description(&pem)), expected);
    let claims = run_plain(&pem, creation_time(&expected)).unwrap();
    assert_eq!(vendor(&claims)["hardware_enforced"]["algorithm"], 4);
}

#[test]
fn attested_device_ids_are_claimed() {
    let pem = vector("android/akatt_blueline_sdk28_TEE_RSA_BASE+IMEI.pem");
    let claims = run_plain(&pem, at("2018-09-28T23:41:00Z")).unwrap();
    let ids = &vendor(&claims)["attested_ids"];
    assert_eq!(ids["brand"], "google");
    assert_eq!(ids["device"], "blueline");
    assert_eq!(ids["product"], "blueline");
    assert_eq!(ids["imei"], "990012001354866");
    assert_eq!(ids["manufacturer"], "Google");
    assert_eq!(ids["model"], "Pixel 3");
    assert_golden("android_blueline_tee_rsa_base_imei", &claims);
}

#[test]
fn the_2026_root_chain_is_anchored_by_key_attestation_ca1() {
    let pem = vector("android/akatt_tegu_sdk36_SB_EC_2026_ROOT.pem");
    let claims = run_plain(&pem, at("2026-02-25T00:37:22Z")).unwrap();
    assert_eq!(
        vendor(&claims)["root_spki_sha256"],
        "3ee44512a1af2beb39c889490c60ea3f82e43f5d5a5532f5ab9419f676cd07ec"
    );
    assert!(!claims.debug, "a locked, verified StrongBox device");
    assert_golden("android_tegu_sb_ec_2026_root", &claims);
}

#[test]
fn the_rkp_chain_ends_at_a_2019_certificate_of_the_pinned_rsa_key() {
    let pem = vector("android/akatt_caiman_sdk36_SB_EC_RKP.pem");
    let claims = run_plain(&pem, at("2025-09-26T15:30:47Z")).unwrap();
    assert_eq!(
        vendor(&claims)["root_spki_sha256"],
        "feb2ea7551ee316ed4bb443c8293b884dbfdea40b603ee3e4f4a897e4580fbae"
    );
    // Its RKP intermediate lived nine days: after that the chain no longer verifies.
    let err = android_err(run_plain(&pem, at("2025-10-04T00:00:00Z")));
    assert!(matches!(err, AndroidError::Chain(_)), "{err}");
}

#[test]
fn an_akatt_chain_is_refused_before_its_intermediates_are_valid() {
    let pem = vector("android/akatt_tegu_sdk37_TEE_TRUSTED_CONF.pem");
    let err = android_err(run_plain(&pem, at("2026-06-01T00:00:00Z")));
    assert!(matches!(err, AndroidError::Chain(_)), "{err}");
}

#[test]
fn a_non_canonical_boolean_device_locked_is_read_as_true() {
    let pem = vector("android/akatt_invalid_malformed_rot_device_locked.pem");
    let kd = leaf_description(&pem);
    assert!(kd.hardware_enforced.root_of_trust().unwrap().device_locked);
}

#[test]
fn allow_while_on_body_parses_and_a_lone_leaf_is_untrusted() {
    let pem = vector("android/akatt_allow_while_on_body.pem");
    let kd = leaf_description(&pem);
    assert_eq!(kd.software_enforced.entries.get(&506), Some(&AuthValue::Flag));
    let err = android_err(run_plain(&pem, at("2024-01-01T00:00:00Z")));
    assert!(matches!(err, AndroidError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn the_p256_sha384_test_chain_validates_under_its_own_root_as_test_root() {
    let pem = vector("android/akatt_p256_sha384_intermediate.pem");
    let certs = Cert::parse_many(&pem).unwrap();
    let root = certs.last().unwrap().der().to_vec();
    let now = at("2024-10-20T00:00:00Z");
    let collateral = Collateral::new();
    let test = TrustAnchors::new().with_test_root(TeeKind::Android, root.clone());
    let inputs = Inputs { collateral: &collateral, anchors: &test, now_unix: now };
    let chain = android::verify_chain(certs.clone(), &inputs).unwrap();
    assert_eq!(chain.origin, AnchorOrigin::Test);
    // The whole driver then stops at the leaf, whose extension is a placeholder (an OCTET
    // STRING, not a KeyDescription): the chain itself passed.
    let err = android_err(run(&pem, &test, &collateral, now));
    assert!(matches!(err, AndroidError::KeyDescription(_)), "{err}");
    // Listed as an instance root it is `instance`; not listed, it is untrusted.
    let instance = TrustAnchors::new().with_root(TeeKind::Android, root);
    let inputs = Inputs { collateral: &collateral, anchors: &instance, now_unix: now };
    assert_eq!(
        android::verify_chain(certs.clone(), &inputs).unwrap().origin,
        AnchorOrigin::Instance
    );
    let none = TrustAnchors::new();
    let inputs = Inputs { collateral: &collateral, anchors: &none, now_unix: now };
    let err = android::verify_chain(certs, &inputs).unwrap_err();
    assert!(matches!(err, AndroidError::UntrustedRoot { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// google/android-key-attestation's example chains.

fn gakatt(alg: &str, level: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for n in 0..4 {
        // The RSA chains' root is stored once, with the EC chain of the same level.
        let name = if n == 3 { "EC" } else { alg };
        let path = format!("android/gakatt_{name}_SecurityLevel_{level}_cert{n}.der");
        if n < 3 || common::vectors_dir().join(&path).exists() {
            out.extend(vector(&path));
        }
    }
    out
}

#[test]
fn google_tee_chains_verify_under_the_pinned_rsa_key_even_after_the_2016_root_expired() {
    for alg in ["EC", "RSA"] {
        let chain = gakatt(alg, "TEE");
        // Before and after the 2016 root certificate's end of validity (2026-05-24): the anchor is
        // its key, which Google still uses (its 2022 certificate runs to 2042).
        for now in [at("2019-01-01T00:00:00Z"), at("2027-06-01T00:00:00Z")] {
            let claims = run_plain(&chain, now).unwrap_or_else(|e| panic!("{alg}: {e}"));
            let android = vendor(&claims);
            assert_eq!(android["security_level"], "trusted_environment");
            assert_eq!(android["attestation_version"], 3);
            assert_eq!(android["keymint_version"], 4);
            assert_eq!(android["evidence_encoding"], "der");
            assert_eq!(claims.report_data, Hex(b"abc".to_vec()));
            assert_eq!(android["unique_id"], "");
            let rot = &android["root_of_trust"];
            assert_eq!(rot["verified_boot_key"], "00".repeat(32));
            assert_eq!(rot["device_locked"], false);
            assert_eq!(rot["verified_boot_state"], "unverified");
            assert_eq!(
                rot["verified_boot_hash"],
                "728db1274f1f1cf1571de4380b048a554ac4a380e76f5355083529084a937801"
            );
            let app = &android["attestation_application_id"];
            assert_eq!(app["packages"].as_array().unwrap().len(), 13);
            assert_eq!(app["packages"][0]["name"], "android");
            let digest = "301aa3cb081134501c45f1422abc66c24224fd5ded5fdc8f17e697176fd866aa";
            assert_eq!(app["signature_digests"], json!([digest]));
            assert_eq!(claims.signer, Some(Hex(hex::decode(digest).unwrap())));
            assert!(claims.debug);
        }
        // The intermediates expire in 2028.
        let err = android_err(run_plain(&chain, at("2028-04-01T00:00:00Z")));
        assert!(matches!(err, AndroidError::Chain(_)), "{alg}: {err}");
    }
    let claims = run_plain(&gakatt("EC", "TEE"), at("2019-01-01T00:00:00Z")).unwrap();
    assert_golden("android_gakatt_ec_tee", &claims);
}

#[test]
fn google_strongbox_chains_end_at_a_2018_root_that_is_not_pinned() {
    for alg in ["EC", "RSA"] {
        let chain = gakatt(alg, "StrongBox");
        let now = at("2019-01-01T00:00:00Z");
        let err = android_err(run_plain(&chain, now));
        match err {
            AndroidError::UntrustedRoot { spki_sha256, .. } => assert_eq!(spki_sha256.len(), 64),
            other => panic!("{alg}: {other}"),
        }
        // An instance that lists that root accepts them: the EC leaf (explicit NULL parameter,
        // issuer name not its signer's subject) verifies by signature chaining.
        let root = vector("android/gakatt_EC_SecurityLevel_StrongBox_cert3.der");
        assert_eq!(
            hex::encode(sha2_256(&root)),
            "19de1c3e1da7e06f3c2712301342c17941b1ec90ba5ee396a8ec2ee4f46dfad2"
        );
        let anchors = TrustAnchors::new().with_root(TeeKind::Android, root);
        let claims = run(&chain, &anchors, &Collateral::new(), now).unwrap();
        assert_eq!(vendor(&claims)["trust_anchor"], "instance");
        assert_eq!(vendor(&claims)["security_level"], "strong_box");
    }
}

fn sha2_256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

// ---------------------------------------------------------------------------------------------
// DER encoding of a KeyDescription from Google's JSON shape (for synthetic chains and for the
// complete AuthorizationList), written here so the parser is checked against an independent
// encoder.

fn tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_int(tag: u8, value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(&[tag], &bytes)
}

fn explicit(number: u32, content: &[u8]) -> Vec<u8> {
    let tag = if number < 31 {
        vec![0xa0 | number as u8]
    } else {
        let mut base128 = vec![(number & 0x7f) as u8];
        let mut rest = number >> 7;
        while rest > 0 {
            base128.insert(0, 0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        [vec![0xbf], base128].concat()
    };
    tlv(&tag, content)
}

fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(&[0x30], &items.concat())
}

fn set(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(&[0x31], &items.concat())
}

fn octets(bytes: &[u8]) -> Vec<u8> {
    tlv(&[0x04], bytes)
}

fn num(value: &Value) -> u64 {
    value.as_str().unwrap().parse().unwrap()
}

fn encode_list(list: &Value) -> Vec<u8> {
    let mut items: Vec<(u32, Vec<u8>)> = Vec::new();
    for (json_key, value) in list.as_object().unwrap() {
        let ours = JSON_NAMES
            .iter()
            .find(|(_, theirs)| theirs == json_key)
            .map_or(json_key.as_str(), |(o, _)| o);
        let (number, kind) = if let Some(n) = ours.strip_prefix("tag_") {
            (n.parse().unwrap(), TagKind::Integer)
        } else {
            let (n, _, k) =
                key_description::TAGS.iter().find(|(_, name, _)| *name == ours).unwrap();
            (*n, *k)
        };
        let inner = match kind {
            TagKind::Integer if number == 702 => {
                der_int(0x02, ORIGINS.iter().position(|o| value == o).unwrap() as u64)
            }
            TagKind::Integer => der_int(0x02, num(value)),
            TagKind::IntegerSet => set(&value
                .as_array()
                .unwrap()
                .iter()
                .map(|v| der_int(0x02, num(v)))
                .collect::<Vec<_>>()),
            TagKind::Flag => vec![0x05, 0x00],
            TagKind::Text => octets(value.as_str().unwrap().as_bytes()),
            TagKind::Bytes => octets(&B64.decode(value.as_str().unwrap()).unwrap()),
            TagKind::RootOfTrust => seq(&[
                octets(&B64.decode(value["verifiedBootKey"].as_str().unwrap()).unwrap()),
                tlv(&[0x01], &[if value["deviceLocked"] == true { 0xff } else { 0 }]),
                der_int(
                    0x0a,
                    BOOT_STATES.iter().position(|s| value["verifiedBootState"] == *s).unwrap()
                        as u64,
                ),
                octets(&B64.decode(value["verifiedBootHash"].as_str().unwrap()).unwrap()),
            ]),
            TagKind::ApplicationId => octets(&seq(&[
                set(&value["packages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        seq(&[
                            octets(p["name"].as_str().unwrap().as_bytes()),
                            der_int(0x02, num(&p["version"])),
                        ])
                    })
                    .collect::<Vec<_>>()),
                set(&value["signatures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| octets(&B64.decode(s.as_str().unwrap()).unwrap()))
                    .collect::<Vec<_>>()),
            ])),
        };
        items.push((number, explicit(number, &inner)));
    }
    items.sort_by_key(|(n, _)| *n);
    seq(&items.into_iter().map(|(_, item)| item).collect::<Vec<_>>())
}

fn encode_description(kd: &Value) -> Vec<u8> {
    let level = |v: &Value| LEVELS.iter().position(|l| v == l).unwrap() as u64;
    seq(&[
        der_int(0x02, num(&kd["attestationVersion"])),
        der_int(0x0a, level(&kd["attestationSecurityLevel"])),
        der_int(0x02, num(&kd["keyMintVersion"])),
        der_int(0x0a, level(&kd["keyMintSecurityLevel"])),
        octets(&B64.decode(kd["attestationChallenge"].as_str().unwrap()).unwrap()),
        octets(&B64.decode(kd["uniqueId"].as_str().unwrap()).unwrap()),
        encode_list(&kd["softwareEnforced"]),
        encode_list(&kd["hardwareEnforced"]),
    ])
}

#[test]
fn the_complete_authorization_list_round_trips() {
    let complete: Value =
        serde_json::from_slice(&vector("android/akatt_complete_authlist.json")).unwrap();
    let parsed = key_description::parse(&encode_description(&complete)).unwrap();
    assert_eq!(to_google_json(&parsed), complete);
    assert!(parsed.software_enforced.tags_in_order);
}

#[test]
fn a_description_re_encoded_from_its_json_is_byte_identical_for_a_real_leaf() {
    // The independent encoder and the device agree, so the synthetic chains below are realistic.
    let stem = "tegu_sdk37_TEE_MAX_USAGE_COUNT";
    let pem = vector(&format!("android/akatt_{stem}.pem"));
    let certs = Cert::parse_many(&pem).unwrap();
    let real = certs[0].extension(KEY_DESCRIPTION_OID).unwrap();
    assert_eq!(encode_description(&expected_json(stem)), real);
}

#[test]
fn malformed_descriptions_are_refused() {
    let base = base_description(&[7; 64], "TRUSTED_ENVIRONMENT");
    let good = encode_description(&base);
    assert!(key_description::parse(&good).is_ok());
    // Trailing bytes, truncation, a repeated tag, a wrong type, an unknown enumerated value.
    assert!(key_description::parse(&[good.clone(), vec![0]].concat()).is_err());
    assert!(key_description::parse(&good[..good.len() - 1]).is_err());
    let twice = seq(&[explicit(3, &der_int(2, 256)), explicit(3, &der_int(2, 256))]);
    let kd = seq(&[
        der_int(2, 300),
        der_int(0x0a, 1),
        der_int(2, 300),
        der_int(0x0a, 1),
        octets(&[1]),
        octets(&[]),
        seq(&[]),
        twice,
    ]);
    let err = key_description::parse(&kd).unwrap_err();
    assert!(err.reason.contains("more than once"), "{err}");
    let wrong_type = seq(&[
        der_int(2, 300),
        der_int(0x0a, 1),
        der_int(2, 300),
        der_int(0x0a, 1),
        octets(&[1]),
        octets(&[]),
        seq(&[]),
        seq(&[explicit(3, &octets(&[1]))]),
    ]);
    assert!(key_description::parse(&wrong_type).is_err());
    let bad_level = seq(&[
        der_int(2, 300),
        der_int(0x0a, 3),
        der_int(2, 300),
        der_int(0x0a, 1),
        octets(&[1]),
        octets(&[]),
        seq(&[]),
        seq(&[]),
    ]);
    assert!(key_description::parse(&bad_level).is_err());
    // An unknown tag is kept, and tags out of order are reported.
    let unknown = seq(&[
        der_int(2, 300),
        der_int(0x0a, 1),
        der_int(2, 300),
        der_int(0x0a, 1),
        octets(&[1]),
        octets(&[]),
        seq(&[]),
        seq(&[explicit(900, &der_int(2, 5)), explicit(3, &der_int(2, 256))]),
    ]);
    let parsed = key_description::parse(&unknown).unwrap();
    assert_eq!(
        parsed.hardware_enforced.entries.get(&900),
        Some(&AuthValue::Unknown(der_int(2, 5)))
    );
    assert!(!parsed.hardware_enforced.tags_in_order);
}

// ---------------------------------------------------------------------------------------------
// Synthetic chains with test keys.

const NOW: i64 = 1_750_000_000;
const YEAR: i64 = 365 * 24 * 3600;

fn base_description(challenge: &[u8], level: &str) -> Value {
    json!({
        "attestationVersion": "300",
        "attestationSecurityLevel": level,
        "keyMintVersion": "300",
        "keyMintSecurityLevel": level,
        "attestationChallenge": B64.encode(challenge),
        "uniqueId": "",
        "softwareEnforced": {
            "creationDateTime": "1750000000000",
            "attestationApplicationId": {
                "packages": [{"name": "org.cloister.attester", "version": "3"}],
                "signatures": [B64.encode([0x5a; 32])]
            }
        },
        "hardwareEnforced": {
            "purposes": ["2"], "algorithms": "3", "keySize": "256", "digests": ["4"],
            "ecCurve": "1", "noAuthRequired": true, "origin": "GENERATED",
            "rootOfTrust": {
                "verifiedBootKey": B64.encode([0x11; 32]), "deviceLocked": true,
                "verifiedBootState": "VERIFIED", "verifiedBootHash": B64.encode([0x22; 32])
            },
            "osVersion": "150000", "osPatchLevel": "202506",
            "vendorPatchLevel": "20250605", "bootPatchLevel": "20250605"
        }
    })
}

const KD_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17];

struct Node {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
}

/// What a synthetic chain looks like; every field a negative test may change.
struct Spec {
    description: Option<Vec<u8>>,
    leaf_validity: (i64, i64),
    intermediate_validity: (i64, i64),
    intermediate_is_ca: bool,
    intermediate_description: bool,
    intermediate_unknown_critical: bool,
    leaf_serial: Vec<u8>,
}

impl Spec {
    fn new(challenge: &[u8]) -> Self {
        Self {
            description: Some(encode_description(&base_description(
                challenge,
                "TRUSTED_ENVIRONMENT",
            ))),
            leaf_validity: (0, NOW + 20 * YEAR),
            intermediate_validity: (NOW - YEAR, NOW + YEAR),
            intermediate_is_ca: true,
            intermediate_description: false,
            intermediate_unknown_critical: false,
            leaf_serial: vec![1],
        }
    }
}

fn params(name: &str, ca: bool, validity: (i64, i64)) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.not_before = time::OffsetDateTime::from_unix_timestamp(validity.0).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(validity.1).unwrap();
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    } else {
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    params
}

fn issue(params: CertificateParams, issuer: &Node) -> Node {
    let key = KeyPair::generate().unwrap();
    let der = params
        .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
        .unwrap()
        .der()
        .to_vec();
    Node { key, params, der }
}

fn test_root() -> Node {
    let key = KeyPair::generate().unwrap();
    let params = params("Test Android Root", true, (NOW - 5 * YEAR, NOW + 5 * YEAR));
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Node { key, params, der }
}

/// The chain leaf first (DER blobs), and its root.
fn build(spec: &Spec) -> (Vec<Vec<u8>>, Vec<u8>) {
    let root = test_root();
    let mut ip =
        params("Test Attestation Key", spec.intermediate_is_ca, spec.intermediate_validity);
    if spec.intermediate_description {
        ip.custom_extensions.push(CustomExtension::from_oid_content(
            KD_OID,
            encode_description(&base_description(&[1], "TRUSTED_ENVIRONMENT")),
        ));
    }
    if spec.intermediate_unknown_critical {
        let mut ext = CustomExtension::from_oid_content(&[1, 2, 3, 4, 5], vec![0x05, 0x00]);
        ext.set_criticality(true);
        ip.custom_extensions.push(ext);
    }
    let intermediate = issue(ip, &root);
    let mut lp = params("Android Keystore Key", false, spec.leaf_validity);
    lp.serial_number = Some(SerialNumber::from_slice(&spec.leaf_serial));
    if let Some(kd) = &spec.description {
        lp.custom_extensions.push(CustomExtension::from_oid_content(KD_OID, kd.clone()));
    }
    let leaf = issue(lp, &intermediate);
    (vec![leaf.der, intermediate.der, root.der.clone()], root.der)
}

fn json_chain(certs: &[Vec<u8>]) -> Vec<u8> {
    serde_json::to_vec(&certs.iter().map(|c| B64.encode(c)).collect::<Vec<_>>()).unwrap()
}

fn test_anchors(root: &[u8]) -> TrustAnchors {
    TrustAnchors::new().with_test_root(TeeKind::Android, root.to_vec())
}

fn run_spec(spec: &Spec) -> Result<Claims, VerifyError> {
    let (certs, root) = build(spec);
    run(&json_chain(&certs), &test_anchors(&root), &Collateral::new(), NOW)
}

#[test]
fn a_synthetic_chain_verifies_under_its_test_root_in_every_encoding() {
    let (certs, root) = build(&Spec::new(&[9; 64]));
    let anchors = test_anchors(&root);
    let pem: String = certs
        .iter()
        .map(|c| {
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", B64.encode(c))
        })
        .collect();
    let url = serde_json::to_vec(
        &certs
            .iter()
            .map(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let pem_strings = serde_json::to_vec(
        &certs
            .iter()
            .map(|c| {
                format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----", B64.encode(c))
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for (evidence, encoding) in [
        (json_chain(&certs), "json"),
        (url, "json"),
        (pem_strings, "json"),
        (format!("subject=Android Keystore Key\n{pem}").into_bytes(), "pem"),
        (certs.concat(), "der"),
    ] {
        let claims = run(&evidence, &anchors, &Collateral::new(), NOW).unwrap();
        let android = vendor(&claims);
        assert_eq!(android["evidence_encoding"], encoding);
        assert_eq!(android["trust_anchor"], "test");
        assert_eq!(claims.report_data, Hex(vec![9; 64]));
        assert!(!claims.debug);
        assert_eq!(claims.signer, Some(Hex(vec![0x5a; 32])));
        assert_eq!(android["os_patch_level"], 202506);
        assert_eq!(android["hardware_enforced"]["purpose"], json!([2]));
    }
    // The measurement is SHA-256 of the DER AttestationApplicationId as carried.
    let kd = key_description::parse(&Spec::new(&[9; 64]).description.unwrap()).unwrap();
    let app = kd.software_enforced.application_id().unwrap();
    let claims = run(&json_chain(&certs), &anchors, &Collateral::new(), NOW).unwrap();
    assert_eq!(claims.measurement, Hex(sha2_256(&app.der).to_vec()));
    // The same root listed as an instance root: `instance`.
    let instance = TrustAnchors::new().with_root(TeeKind::Android, root);
    let claims = run(&json_chain(&certs), &instance, &Collateral::new(), NOW).unwrap();
    assert_eq!(vendor(&claims)["trust_anchor"], "instance");
}

#[test]
fn a_chain_under_no_listed_root_is_refused() {
    let (certs, _) = build(&Spec::new(&[9; 64]));
    let err = android_err(run_plain(&json_chain(&certs), NOW));
    assert!(matches!(err, AndroidError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn a_bad_signature_is_refused() {
    let (mut certs, root) = build(&Spec::new(&[9; 64]));
    let last = certs[0].len() - 1;
    certs[0][last] ^= 1;
    let err = android_err(run(&json_chain(&certs), &test_anchors(&root), &Collateral::new(), NOW));
    assert!(matches!(err, AndroidError::Chain(_)), "{err}");
    // A leaf signed by another intermediate than the one that follows it.
    let (other, _) = build(&Spec::new(&[9; 64]));
    let (mut certs, root) = build(&Spec::new(&[9; 64]));
    certs[0] = other[0].clone();
    let err = android_err(run(&json_chain(&certs), &test_anchors(&root), &Collateral::new(), NOW));
    assert!(matches!(err, AndroidError::Chain(_)), "{err}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let mut spec = Spec::new(&[9; 64]);
    spec.leaf_validity = (0, NOW - 1);
    assert!(matches!(android_err(run_spec(&spec)), AndroidError::Chain(_)));
    let mut spec = Spec::new(&[9; 64]);
    spec.intermediate_validity = (NOW + 10, NOW + YEAR);
    assert!(matches!(android_err(run_spec(&spec)), AndroidError::Chain(_)));
}

#[test]
fn a_test_root_that_is_not_valid_now_anchors_nothing() {
    let (certs, root) = build(&Spec::new(&[9; 64]));
    let anchors = test_anchors(&root);
    let err = android_err(run(&json_chain(&certs), &anchors, &Collateral::new(), NOW + 6 * YEAR));
    assert!(matches!(err, AndroidError::AnchorNotValid { .. }), "{err}");
}

#[test]
fn an_intermediate_that_is_not_a_ca_is_refused() {
    let mut spec = Spec::new(&[9; 64]);
    spec.intermediate_is_ca = false;
    assert!(matches!(android_err(run_spec(&spec)), AndroidError::Chain(_)));
}

#[test]
fn an_unknown_critical_extension_is_refused() {
    let mut spec = Spec::new(&[9; 64]);
    spec.intermediate_unknown_critical = true;
    let err = android_err(run_spec(&spec));
    assert!(matches!(err, AndroidError::UnknownCriticalExtension { index: 1, .. }), "{err}");
}

#[test]
fn a_leaf_without_the_extension_is_refused() {
    let mut spec = Spec::new(&[9; 64]);
    spec.description = None;
    assert!(matches!(android_err(run_spec(&spec)), AndroidError::MissingKeyDescription));
}

#[test]
fn the_extension_above_the_leaf_is_refused() {
    let mut spec = Spec::new(&[9; 64]);
    spec.intermediate_description = true;
    let err = android_err(run_spec(&spec));
    assert!(matches!(err, AndroidError::KeyDescriptionAboveLeaf { index: 1, .. }), "{err}");
}

#[test]
fn a_malformed_extension_is_refused() {
    let mut spec = Spec::new(&[9; 64]);
    spec.description = Some(vec![0x30, 0x03, 0x02, 0x01, 0x03]);
    assert!(matches!(android_err(run_spec(&spec)), AndroidError::KeyDescription(_)));
}

#[test]
fn a_software_attestation_verifies_only_under_a_listed_root_and_is_debug() {
    let mut spec = Spec::new(&[9; 64]);
    spec.description = Some(encode_description(&base_description(&[9; 64], "SOFTWARE")));
    let claims = run_spec(&spec).unwrap();
    assert_eq!(vendor(&claims)["security_level"], "software");
    assert!(claims.debug, "a software key protects nothing from the OS");
    // Its root of trust is read from softwareEnforced only: here there is none.
    assert_eq!(vendor(&claims)["root_of_trust"], Value::Null);
}

#[test]
fn an_unlocked_or_unverified_device_is_debug() {
    for (locked, state) in [(false, "VERIFIED"), (true, "SELF_SIGNED"), (true, "UNVERIFIED")] {
        let mut kd = base_description(&[9; 64], "STRONG_BOX");
        kd["hardwareEnforced"]["rootOfTrust"]["deviceLocked"] = json!(locked);
        kd["hardwareEnforced"]["rootOfTrust"]["verifiedBootState"] = json!(state);
        let mut spec = Spec::new(&[9; 64]);
        spec.description = Some(encode_description(&kd));
        assert!(run_spec(&spec).unwrap().debug, "{locked} {state}");
    }
}

#[test]
fn evidence_that_is_no_chain_is_refused() {
    for evidence in [&b""[..], b"hello", b"[1, 2]", b"[\"!!\"]", b"[]", &[0x30, 0x05, 0x01]] {
        let err = android_err(run_plain(evidence, NOW));
        assert!(
            matches!(err, AndroidError::Encoding(_) | AndroidError::Certificate { .. }),
            "{err}"
        );
    }
    let big = vec![b' '; android::MAX_EVIDENCE_LEN + 1];
    assert!(matches!(android_err(run_plain(&big, NOW)), AndroidError::TooLarge { .. }));
    let (certs, root) = build(&Spec::new(&[9; 64]));
    let long: Vec<Vec<u8>> = std::iter::repeat_n(certs[1].clone(), 11).collect();
    let err = android_err(run(&json_chain(&long), &test_anchors(&root), &Collateral::new(), NOW));
    assert!(matches!(err, AndroidError::Encoding(_)), "{err}");
}

#[test]
fn an_unreadable_listed_anchor_is_an_error() {
    let (certs, _) = build(&Spec::new(&[9; 64]));
    let anchors = TrustAnchors::new().with_root(TeeKind::Android, b"not a certificate".to_vec());
    let err = android_err(run(&json_chain(&certs), &anchors, &Collateral::new(), NOW));
    assert!(matches!(err, AndroidError::Anchor { list: "trust anchor", index: 0, .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Revocation: Google's status list as a collateral document.

#[test]
fn a_suspended_serial_in_the_status_list_is_refused_naming_it() {
    let list = vector("android/gakatt_status.json");
    let mut spec = Spec::new(&[9; 64]);
    spec.leaf_serial = hex::decode("cc66e9a93713b6e643b26c15879786f7").unwrap();
    let (certs, root) = build(&spec);
    let collateral = Collateral::new().with_document(list.clone());
    let err = android_err(run(&json_chain(&certs), &test_anchors(&root), &collateral, NOW));
    match &err {
        AndroidError::Revoked { index, serial, status, reason, .. } => {
            assert_eq!(*index, 0);
            assert_eq!(serial, "cc66e9a93713b6e643b26c15879786f7");
            assert_eq!(status, "SUSPENDED");
            assert_eq!(reason, "KEY_COMPROMISE");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("cc66e9a93713b6e643b26c15879786f7"));
    // Unlisted serials verify, and the claims say the list was checked.
    let (certs, root) = build(&Spec::new(&[9; 64]));
    let claims = run(&json_chain(&certs), &test_anchors(&root), &collateral, NOW).unwrap();
    assert_eq!(vendor(&claims)["revocation_checked"], true);
    assert_eq!(claims.tcb_status, TcbStatus::UpToDate);
    // Without a list: said so.
    let claims = run(&json_chain(&certs), &test_anchors(&root), &Collateral::new(), NOW).unwrap();
    assert_eq!(vendor(&claims)["revocation_checked"], false);
    assert_eq!(claims.tcb_status, TcbStatus::Unknown);
}

#[test]
fn a_revoked_intermediate_refuses_a_real_chain() {
    let pem = vector("android/akatt_tegu_sdk37_TEE_TRUSTED_CONF.pem");
    let now = at("2026-07-01T21:56:06Z");
    let serial = "32351d64d9cf96cb509fc1449b161e5784a8c5";
    let list = format!(
        r#"{{"entries": {{"{serial}": {{"status": "REVOKED", "reason": "CA_COMPROMISE"}}}}}}"#
    );
    let collateral = Collateral::new().with_document(list.into_bytes());
    let err = android_err(run(&pem, &TrustAnchors::new(), &collateral, now));
    assert!(matches!(err, AndroidError::Revoked { index: 2, .. }), "{err}");
}

#[test]
fn a_document_that_is_no_status_list_is_refused() {
    let (certs, root) = build(&Spec::new(&[9; 64]));
    let collateral = Collateral::new().with_document(b"{\"tcbInfo\": {}}".to_vec());
    let err = android_err(run(&json_chain(&certs), &test_anchors(&root), &collateral, NOW));
    assert!(matches!(err, AndroidError::StatusList { index: 0, .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Through `verify`: the challenge is the binding.

#[test]
fn unified_evidence_binds_the_challenge_to_the_runtime_data() {
    let runtime_data = RuntimeData {
        nonce: "nonce-1".into(),
        hpke_pk: "hpke-pk".into(),
        tls_spki_sha256: Hex(vec![7; 32]),
        receipt_pk: "receipt-pk".into(),
        extra: BTreeMap::new(),
    };
    let bound = runtime_data.report_data().unwrap().0;
    let unified = |challenge: &[u8]| {
        let (certs, root) = build(&Spec::new(challenge));
        let evidence = UnifiedEvidence {
            version: 1,
            tee: TeeKind::Android,
            evidence: Base64Url(json_chain(&certs)),
            runtime_data: runtime_data.clone(),
            collateral: BTreeMap::new(),
            additional_evidence: BTreeMap::new(),
        };
        (evidence, test_anchors(&root))
    };
    let (evidence, anchors) = unified(&bound);
    let verified = cloister_verify::verify(&evidence, &anchors, NOW).unwrap();
    assert_eq!(verified.tee(), TeeKind::Android);
    let (evidence, anchors) = unified(&[0; 64]);
    let err = cloister_verify::verify(&evidence, &anchors, NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch), "{err}");
    let (evidence, anchors) = unified(b"challenge");
    let err = cloister_verify::verify(&evidence, &anchors, NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataLength(9)), "{err}");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = run_plain(&bytes, NOW);
        let _ = key_description::parse(&bytes);
        cloister_verify::internal::parse_vendor_evidence(TeeKind::Android, &bytes);
    }

    #[test]
    fn mutated_descriptions_never_panic(index in 0usize..400, byte in any::<u8>()) {
        let mut kd = encode_description(&base_description(&[9; 64], "TRUSTED_ENVIRONMENT"));
        let at = index % kd.len();
        kd[at] = byte;
        let _ = key_description::parse(&kd);
    }
}

#[test]
fn every_attestation_version_parses_with_its_keymint_version() {
    // Keymaster 2, 3, 4, 4.1 and KeyMint 1 to 4, as the vectors and the Android docs pair them.
    for (attestation, keymint) in [
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 41),
        (100, 100),
        (200, 200),
        (300, 300),
        (400, 400),
        (500, 500),
    ] {
        let mut kd = base_description(&[9; 64], "TRUSTED_ENVIRONMENT");
        kd["attestationVersion"] = json!(attestation.to_string());
        kd["keyMintVersion"] = json!(keymint.to_string());
        let mut spec = Spec::new(&[9; 64]);
        spec.description = Some(encode_description(&kd));
        let claims = run_spec(&spec).unwrap();
        assert_eq!(vendor(&claims)["attestation_version"], attestation);
        assert_eq!(vendor(&claims)["keymint_version"], keymint);
    }
    // Attestation versions 1 and 2 have a RootOfTrust without verifiedBootHash.
    let rot = seq(&[octets(&[0; 32]), tlv(&[0x01], &[0xff]), der_int(0x0a, 0)]);
    let kd = seq(&[
        der_int(2, 2),
        der_int(0x0a, 1),
        der_int(2, 3),
        der_int(0x0a, 1),
        octets(b"c"),
        octets(&[]),
        seq(&[]),
        seq(&[explicit(704, &rot)]),
    ]);
    let parsed = key_description::parse(&kd).unwrap();
    assert_eq!(parsed.hardware_enforced.root_of_trust().unwrap().verified_boot_hash, None);
}

#[test]
fn a_leaf_with_two_key_descriptions_is_refused() {
    let root = test_root();
    let mut ip = params("Test Attestation Key", true, (NOW - YEAR, NOW + YEAR));
    ip.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let intermediate = issue(ip, &root);
    let mut lp = params("Android Keystore Key", false, (0, NOW + YEAR));
    let kd = encode_description(&base_description(&[9; 64], "TRUSTED_ENVIRONMENT"));
    lp.custom_extensions.push(CustomExtension::from_oid_content(KD_OID, kd.clone()));
    lp.custom_extensions.push(CustomExtension::from_oid_content(KD_OID, kd));
    let leaf = issue(lp, &intermediate);
    let chain = json_chain(&[leaf.der, intermediate.der, root.der.clone()]);
    let result = run(&chain, &test_anchors(&root.der), &Collateral::new(), NOW);
    let err = android_err(result);
    assert!(matches!(err, AndroidError::DuplicateKeyDescription), "{err}");
}

#[test]
fn google_sample_status_list_parses() {
    let list = android::status::StatusList::parse(&vector("android/gakatt_status.json")).unwrap();
    assert_eq!(list.len(), 5);
    let suspended = hex::decode("cc66e9a93713b6e643b26c15879786f7").unwrap();
    let (serial, entry) = list.lookup(&suspended).unwrap();
    assert_eq!(serial, "cc66e9a93713b6e643b26c15879786f7");
    assert_eq!(entry.status, "SUSPENDED");
    assert_eq!(entry.reason.as_deref(), Some("KEY_COMPROMISE"));
    // A serial it does not list is not found, with or without a leading zero byte.
    assert!(list.lookup(&[0x00, 0xcc, 0x66]).is_none());
    let with_zero = [&[0x00][..], &suspended].concat();
    assert!(list.lookup(&with_zero).is_some());
}

#[test]
fn a_pinned_google_key_anchors_nothing_after_its_certificate_ends() {
    // Key Attestation CA1's certificate runs to 2035-07-15: after that the key is refused before
    // any other certificate is looked at.
    let pem = vector("android/akatt_tegu_sdk37_TEE_TRUSTED_CONF.pem");
    let err = android_err(run_plain(&pem, at("2035-07-16T00:00:00Z")));
    assert!(matches!(err, AndroidError::AnchorNotValid { .. }), "{err}");
}
