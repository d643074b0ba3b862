//! Verification of simulated-TEE evidence: the happy path and one negative test per check.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use cloister_types::{Base64Url, Hex, RuntimeData, TcbStatus, TeeKind, UnifiedEvidence};
use cloister_verify::sim::{MAX_SIM_EVIDENCE_LEN, SIM_REPORT_FORMAT, SimEvidence, SimReport};
use cloister_verify::{SimError, SimPlatformPublicKey, TrustAnchors, VerifyError, verify};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::Generate as _;

const NOW: i64 = 1_750_000_000;

struct Platform {
    key: SigningKey,
}

impl Platform {
    fn new() -> Self {
        Self { key: SigningKey::generate() }
    }

    fn public(&self) -> SimPlatformPublicKey {
        SimPlatformPublicKey::from_verifying_key(*self.key.verifying_key())
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors::new().with_sim_platform_key(self.public())
    }

    fn report(&self, runtime_data: &RuntimeData) -> SimReport {
        SimReport {
            format: SIM_REPORT_FORMAT.to_owned(),
            measurement: Hex(vec![0xab; 48]),
            report_data: runtime_data.report_data().unwrap().to_hex(),
            debug: false,
            svn: 7,
            platform_key: self.public().to_text(),
            issued_at: NOW - 5,
        }
    }

    /// Signs arbitrary report bytes and wraps them as unified evidence.
    fn sign_bytes(&self, report_bytes: Vec<u8>, runtime_data: &RuntimeData) -> UnifiedEvidence {
        let signature: Signature = self.key.sign(&report_bytes);
        let outer = SimEvidence {
            report: Base64Url(report_bytes),
            signature: Base64Url(signature.to_bytes().to_vec()),
        };
        unified(outer.to_bytes().unwrap(), runtime_data)
    }

    fn sign(&self, report: &SimReport, runtime_data: &RuntimeData) -> UnifiedEvidence {
        self.sign_bytes(report.to_bytes().unwrap(), runtime_data)
    }

    fn evidence(&self, runtime_data: &RuntimeData) -> UnifiedEvidence {
        self.sign(&self.report(runtime_data), runtime_data)
    }

    /// Evidence issued at `now` rather than at the tests' fixed time.
    fn evidence_at(&self, runtime_data: &RuntimeData, now: i64) -> UnifiedEvidence {
        let report = SimReport { issued_at: now - 5, ..self.report(runtime_data) };
        self.sign(&report, runtime_data)
    }
}

fn unified(evidence: Vec<u8>, runtime_data: &RuntimeData) -> UnifiedEvidence {
    UnifiedEvidence {
        version: 1,
        tee: TeeKind::Sim,
        evidence: Base64Url(evidence),
        runtime_data: runtime_data.clone(),
        collateral: BTreeMap::new(),
        additional_evidence: BTreeMap::new(),
    }
}

fn runtime_data() -> RuntimeData {
    RuntimeData {
        nonce: "nonce-1".into(),
        hpke_pk: "hpke-pk".into(),
        tls_spki_sha256: Hex(vec![7; 32]),
        receipt_pk: "receipt-pk".into(),
        extra: BTreeMap::new(),
    }
}

/// Decodes the outer sim object of `evidence` so a test can alter it.
fn outer(evidence: &UnifiedEvidence) -> SimEvidence {
    serde_json::from_slice(evidence.evidence.as_bytes()).unwrap()
}

fn with_outer(evidence: &UnifiedEvidence, outer: &SimEvidence) -> UnifiedEvidence {
    UnifiedEvidence { evidence: Base64Url(outer.to_bytes().unwrap()), ..evidence.clone() }
}

#[test]
fn genuine_evidence_verifies_and_yields_sim_claims() {
    let platform = Platform::new();
    let rd = runtime_data();
    let verified = verify(&platform.evidence(&rd), &platform.anchors(), NOW).unwrap();

    assert_eq!(verified.tee(), TeeKind::Sim);
    assert_eq!(verified.runtime_data(), &rd);
    let claims = verified.claims();
    assert_eq!(claims.tee, TeeKind::Sim);
    assert_eq!(claims.measurement, Hex(vec![0xab; 48]));
    assert_eq!(claims.report_data.as_bytes(), &rd.report_data().unwrap().0[..]);
    assert_eq!(claims.svn, Some(7));
    assert!(!claims.debug);
    assert_eq!(claims.tcb_status, TcbStatus::Simulated);
    assert!(claims.advisories.is_empty());
    let vendor = &claims.vendor["sim"];
    assert_eq!(vendor["format"], SIM_REPORT_FORMAT);
    assert_eq!(vendor["platform_key"], platform.public().to_text());
    assert_eq!(vendor["issued_at"], NOW - 5);
    assert_eq!(vendor["warning"], "simulated TEE: no hardware protection, development only");
    // The claims serialise with the vendor block under the TEE's name.
    let json = serde_json::to_value(claims).unwrap();
    assert_eq!(json["tee"], "sim");
    assert_eq!(json["tcb_status"], "simulated");
    assert!(json["sim"]["warning"].is_string());

    let (claims, back) = verified.into_parts();
    assert_eq!(claims.tee, TeeKind::Sim);
    assert_eq!(back, rd);
}

#[test]
fn evidence_is_accepted_from_any_listed_platform_key() {
    let platform = Platform::new();
    let other = Platform::new();
    let anchors = other.anchors().with_sim_platform_key(platform.public());
    let rd = runtime_data();
    assert!(verify(&platform.evidence(&rd), &anchors, NOW).is_ok());
}

#[test]
fn tampered_report_byte_breaks_the_signature() {
    let platform = Platform::new();
    let rd = runtime_data();
    let evidence = platform.evidence(&rd);
    let mut o = outer(&evidence);
    // Flip one hex digit of the measurement: still well-formed, no longer what was signed.
    let text = String::from_utf8(o.report.0.clone()).unwrap();
    let at = text.find("abab").unwrap();
    o.report.0[at] = b'c';
    let err = verify(&with_outer(&evidence, &o), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::BadSignature)), "{err}");
    assert_eq!(err.to_string(), "sim: report signature does not verify with its platform key");
}

#[test]
fn tampered_signature_is_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let evidence = platform.evidence(&rd);
    let mut o = outer(&evidence);
    o.signature.0[40] ^= 0x01;
    let err = verify(&with_outer(&evidence, &o), &platform.anchors(), NOW).unwrap_err();
    assert!(
        matches!(err, VerifyError::Sim(SimError::BadSignature | SimError::SignatureEncoding)),
        "{err}"
    );
}

#[test]
fn signature_of_wrong_length_is_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let evidence = platform.evidence(&rd);
    let mut o = outer(&evidence);
    o.signature.0.push(0);
    let err = verify(&with_outer(&evidence, &o), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::SignatureLength(65))), "{err}");
}

#[test]
fn unknown_platform_key_is_rejected_by_name() {
    let platform = Platform::new();
    let trusted = Platform::new();
    let rd = runtime_data();
    let err = verify(&platform.evidence(&rd), &trusted.anchors(), NOW).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Sim(SimError::UntrustedPlatformKey(k)) if *k == platform.public()),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "sim evidence is signed by platform key {}, which is not a trust anchor of this instance",
            platform.public()
        )
    );
}

#[test]
fn instance_without_sim_anchor_rejects_all_sim_evidence() {
    let platform = Platform::new();
    let rd = runtime_data();
    let err = verify(&platform.evidence(&rd), &TrustAnchors::new(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::SimNotTrusted), "{err}");
    assert_eq!(
        err.to_string(),
        "sim evidence is not accepted: this instance lists no sim platform key as a trust anchor"
    );
}

#[test]
fn evidence_bound_to_other_runtime_data_is_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let mut evidence = platform.evidence(&rd);
    evidence.runtime_data.nonce = "nonce-2".into();
    let err = verify(&evidence, &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch), "{err}");
    assert_eq!(
        err.to_string(),
        "report_data in the evidence does not match the runtime data (the evidence is not bound \
         to these keys and nonce)"
    );

    // A field the attester did not bind is a different binding too.
    let mut evidence = platform.evidence(&rd);
    evidence.runtime_data.extra.insert("injected".into(), serde_json::json!(true));
    let err = verify(&evidence, &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch), "{err}");
}

#[test]
fn report_data_of_wrong_length_is_never_padded_or_truncated() {
    let platform = Platform::new();
    let rd = runtime_data();
    let full = rd.report_data().unwrap().0;
    // 63 bytes: a prefix of the right value; 65: the right value plus a byte.
    for bytes in [full[..63].to_vec(), [&full[..], &[0][..]].concat()] {
        let len = bytes.len();
        let mut report = platform.report(&rd);
        report.report_data = Hex(bytes);
        let err = verify(&platform.sign(&report, &rd), &platform.anchors(), NOW).unwrap_err();
        assert!(
            matches!(err, VerifyError::Sim(SimError::ReportDataLength(n)) if n == len),
            "{err}"
        );
    }
}

#[test]
fn measurement_must_be_48_bytes() {
    let platform = Platform::new();
    let rd = runtime_data();
    for len in [0, 32, 47, 49, 64] {
        let mut report = platform.report(&rd);
        report.measurement = Hex(vec![1; len]);
        let err = verify(&platform.sign(&report, &rd), &platform.anchors(), NOW).unwrap_err();
        assert!(
            matches!(err, VerifyError::Sim(SimError::MeasurementLength(n)) if n == len),
            "{err}"
        );
    }
}

#[test]
fn stale_report_is_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let mut report = platform.report(&rd);
    report.issued_at = NOW - 601;
    let err = verify(&platform.sign(&report, &rd), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::Stale { .. })), "{err}");
    // Exactly at the edge is still fresh.
    report.issued_at = NOW - 600;
    assert!(verify(&platform.sign(&report, &rd), &platform.anchors(), NOW).is_ok());
}

#[test]
fn report_from_the_future_is_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let mut report = platform.report(&rd);
    report.issued_at = NOW + 301;
    let err = verify(&platform.sign(&report, &rd), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::IssuedInFuture { .. })), "{err}");
    report.issued_at = NOW + 300;
    assert!(verify(&platform.sign(&report, &rd), &platform.anchors(), NOW).is_ok());
    // Extreme values do not overflow.
    report.issued_at = i64::MAX;
    assert!(verify(&platform.sign(&report, &rd), &platform.anchors(), i64::MIN).is_err());
    report.issued_at = i64::MIN;
    assert!(verify(&platform.sign(&report, &rd), &platform.anchors(), i64::MAX).is_err());
}

#[test]
fn unknown_format_tag_is_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let mut report = platform.report(&rd);
    report.format = "cloister-sim-report-v2".into();
    let err = verify(&platform.sign(&report, &rd), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::Format(_))), "{err}");
}

#[test]
fn unknown_fields_are_rejected_in_report_and_envelope() {
    let platform = Platform::new();
    let rd = runtime_data();
    let mut value = serde_json::to_value(platform.report(&rd)).unwrap();
    value["tcb"] = serde_json::json!("up-to-date");
    let bytes = cloister_types::canonical_json(&value).unwrap();
    let err = verify(&platform.sign_bytes(bytes, &rd), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::Report(_))), "{err}");

    let evidence = platform.evidence(&rd);
    let mut value: serde_json::Value =
        serde_json::from_slice(evidence.evidence.as_bytes()).unwrap();
    value["collateral"] = serde_json::json!("x");
    let bytes = serde_json::to_vec(&value).unwrap();
    let err = verify(&unified(bytes, &rd), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::Envelope(_))), "{err}");
}

#[test]
fn duplicate_report_fields_are_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let text = String::from_utf8(platform.report(&rd).to_bytes().unwrap()).unwrap();
    let text = text.replacen("\"debug\":false", "\"debug\":false,\"debug\":true", 1);
    let err =
        verify(&platform.sign_bytes(text.into_bytes(), &rd), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::Report(_))), "{err}");
}

#[test]
fn malformed_platform_key_in_report_is_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let mut report = platform.report(&rd);
    report.platform_key = "cloister-sim-platform-p256:AAAA".into();
    let err = verify(&platform.sign(&report, &rd), &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Sim(SimError::PlatformKey(_))), "{err}");
}

#[test]
fn version_2_is_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    let mut evidence = platform.evidence(&rd);
    evidence.version = 2;
    let err = verify(&evidence, &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::UnsupportedVersion(2)), "{err}");
}

#[test]
fn sim_evidence_declared_as_another_tee_is_refused_by_that_driver() {
    let platform = Platform::new();
    let rd = runtime_data();
    for tee in
        [TeeKind::Tdx, TeeKind::Snp, TeeKind::Sgx, TeeKind::Csv, TeeKind::Cca, TeeKind::Nitro]
    {
        let mut evidence = platform.evidence(&rd);
        evidence.tee = tee;
        let err = verify(&evidence, &platform.anchors(), NOW).unwrap_err();
        assert!(!matches!(err, VerifyError::Sim(_)), "{tee}: {err}");
    }
    // A GPU cannot carry the main evidence.
    let mut evidence = platform.evidence(&rd);
    evidence.tee = TeeKind::Nvidia;
    let err = verify(&evidence, &platform.anchors(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::NotACpuTee(TeeKind::Nvidia)), "{err}");
}

#[test]
fn malformed_additional_evidence_is_refused_not_ignored() {
    let platform = Platform::new();
    let rd = runtime_data();
    let cases = [
        ("gpu0", serde_json::json!({"tee": "nvidia"})),
        ("gpu0", serde_json::json!({"tee": "nvidia", "evidence": "", "extra": 1})),
        ("gpu0", serde_json::json!({"tee": "tdx", "evidence": ""})),
        ("cpu0", serde_json::json!({"tee": "nvidia", "evidence": ""})),
        ("GPU", serde_json::json!({"tee": "nvidia", "evidence": ""})),
        ("gpu0", serde_json::json!({"tee": "nvidia", "evidence": "AAAA"})),
    ];
    for (name, value) in cases {
        let mut evidence = platform.evidence(&rd);
        evidence.additional_evidence.insert(name.into(), value.clone());
        let err = verify(&evidence, &platform.anchors(), NOW).unwrap_err();
        assert!(
            matches!(&err, VerifyError::AdditionalEvidence { name: n, .. } if n == name),
            "{name} {value}: {err}"
        );
    }
}

#[test]
fn garbage_bytes_are_rejected() {
    let platform = Platform::new();
    let rd = runtime_data();
    for bytes in [&b""[..], b"\x00\xff\xfe", b"{}", b"[]", b"null", b"{\"report\":1}"] {
        let err = verify(&unified(bytes.to_vec(), &rd), &platform.anchors(), NOW).unwrap_err();
        assert!(matches!(err, VerifyError::Sim(SimError::Envelope(_))), "{err}");
    }
}

#[test]
fn oversized_evidence_is_rejected_before_parsing() {
    let platform = Platform::new();
    let rd = runtime_data();
    let bytes = vec![b' '; MAX_SIM_EVIDENCE_LEN + 1];
    let err = verify(&unified(bytes, &rd), &platform.anchors(), NOW).unwrap_err();
    assert!(
        matches!(err, VerifyError::Sim(SimError::TooLarge { len, .. }) if len == MAX_SIM_EVIDENCE_LEN + 1),
        "{err}"
    );
}

#[test]
fn platform_key_text_round_trips_and_is_strict() {
    let platform = Platform::new();
    let key = platform.public();
    let text = key.to_text();
    assert!(text.starts_with("cloister-sim-platform-p256:"));
    // 33 bytes of compressed point -> 44 base64url characters.
    assert_eq!(text.len(), "cloister-sim-platform-p256:".len() + 44);
    assert_eq!(SimPlatformPublicKey::from_text(&text).unwrap(), key);
    assert_eq!(text.parse::<SimPlatformPublicKey>().unwrap(), key);
    assert_eq!(key.to_string(), text);
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(serde_json::from_str::<SimPlatformPublicKey>(&json).unwrap(), key);

    assert!(SimPlatformPublicKey::from_text(&text["cloister-sim-platform-p256:".len()..]).is_err());
    let uncompressed = Base64Url::encode(key.verifying_key().to_sec1_point(false).as_bytes());
    assert!(
        SimPlatformPublicKey::from_text(&format!("cloister-sim-platform-p256:{uncompressed}"))
            .is_err()
    );
    assert!(SimPlatformPublicKey::from_text("cloister-sim-platform-p256:!!").is_err());
    assert_ne!(Platform::new().public(), key);
}

/// Composite attestation: bound sim CPU evidence plus the real H100 transcript as `gpu0`. The
/// GPU driver verifies the device chain and signature, then the GPU binding fails, because the
/// public transcript's nonce is not SHA-256 of this runtime data's report_data.
#[test]
fn gpu_evidence_is_verified_then_must_be_bound_to_the_same_runtime_data() {
    let platform = Platform::new();
    let rd = runtime_data();
    let vectors =
        std::env::var_os("CLOISTER_VECTORS").map(std::path::PathBuf::from).unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
        });
    let read = |name: &str| std::fs::read(vectors.join(name)).unwrap();
    let transcript = String::from_utf8(read("nvidia/trustee_hopperAttestationReport.txt")).unwrap();
    let gpu = hex::decode(transcript.trim()).unwrap();
    let chain = read("nvidia/trustee_hopper_cert_chain_case1.txt");
    let entry = |gpu: &[u8]| {
        serde_json::json!({
            "tee": "nvidia",
            "evidence": Base64Url::encode(gpu),
            "collateral": {"certificates": [Base64Url::encode(&chain)]},
        })
    };
    // 2024-06-01, inside the device chain's validity; the sim report is issued "now" too.
    let now = 1_717_200_000;
    let mut evidence = platform.evidence_at(&rd, now);
    evidence.additional_evidence.insert("gpu0".into(), entry(&gpu));
    let err = verify(&evidence, &platform.anchors(), now).unwrap_err();
    assert!(
        matches!(&err, VerifyError::AdditionalEvidence { name, source }
            if name == "gpu0" && matches!(**source, VerifyError::ReportDataMismatch)),
        "{err}"
    );
    // A tampered transcript fails at the GPU signature instead, before any binding.
    let mut tampered = gpu.clone();
    tampered[40] ^= 1;
    let mut evidence = platform.evidence_at(&rd, now);
    evidence.additional_evidence.insert("gpu0".into(), entry(&tampered));
    let err = verify(&evidence, &platform.anchors(), now).unwrap_err();
    assert!(
        matches!(&err, VerifyError::AdditionalEvidence { source, .. }
            if matches!(**source, VerifyError::Nvidia(_))),
        "{err}"
    );
}
