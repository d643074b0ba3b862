//! The simulated attester: its evidence verifies with cloister-verify, files are measured with
//! SHA-384, and the platform key persists.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use cloister_attest::{Attester, SimAttester, SimPlatformKey, measure_file};
use cloister_types::{Hex, RuntimeData, TcbStatus, TeeKind};
use cloister_verify::{TrustAnchors, VerifyError, verify};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn runtime_data() -> RuntimeData {
    RuntimeData {
        nonce: "n-42".into(),
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(vec![9; 32]),
        receipt_pk: "receipt".into(),
        extra: BTreeMap::new(),
    }
}

#[test]
fn sim_evidence_verifies_with_the_platform_key_as_anchor() {
    let key = SimPlatformKey::generate();
    let anchors = TrustAnchors::new().with_sim_platform_key(key.public_key());
    let attester = SimAttester::new(key, [0x5a; 48]);
    assert_eq!(attester.tee(), TeeKind::Sim);
    assert_eq!(attester.measurement(), [0x5a; 48]);

    let rd = runtime_data();
    let evidence = attester.attest(&rd).unwrap();
    assert_eq!(evidence.version, 1);
    assert_eq!(evidence.tee, TeeKind::Sim);
    assert!(evidence.collateral.is_empty() && evidence.additional_evidence.is_empty());

    let verified = verify(&evidence, &anchors, now()).unwrap();
    let claims = verified.claims();
    assert_eq!(claims.tee, TeeKind::Sim);
    assert_eq!(claims.measurement, Hex(vec![0x5a; 48]));
    assert_eq!(claims.report_data, rd.report_data().unwrap().to_hex());
    assert_eq!(claims.tcb_status, TcbStatus::Simulated);
    assert!(!claims.debug);
    assert_eq!(claims.svn, Some(1));
    assert_eq!(verified.runtime_data(), &rd);

    // The evidence survives the wire (JSON) unchanged.
    let wire = serde_json::to_string(&evidence).unwrap();
    let back = serde_json::from_str(&wire).unwrap();
    assert!(verify(&back, &anchors, now()).is_ok());
}

#[test]
fn sim_evidence_is_refused_by_an_instance_that_does_not_list_the_key() {
    let attester = SimAttester::new(SimPlatformKey::generate(), [1; 48]);
    let evidence = attester.attest(&runtime_data()).unwrap();
    assert!(matches!(
        verify(&evidence, &TrustAnchors::new(), now()),
        Err(VerifyError::SimNotTrusted)
    ));
    let other = TrustAnchors::new().with_sim_platform_key(SimPlatformKey::generate().public_key());
    assert!(verify(&evidence, &other, now()).is_err());
}

#[test]
fn measure_file_is_sha384_of_the_contents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abc");
    std::fs::write(&path, b"abc").unwrap();
    // NIST FIPS 180-2, SHA-384 of "abc".
    let expected = hex::decode(
        "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
         8086072ba1e7cc2358baeca134c825a7",
    )
    .unwrap();
    assert_eq!(measure_file(&path).unwrap().to_vec(), expected);

    // Larger than one read buffer: SHA-384 of one million 'a' (FIPS 180-2).
    let big = dir.path().join("million-a");
    std::fs::write(&big, vec![b'a'; 1_000_000]).unwrap();
    let expected = hex::decode(
        "9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b\
         07b8b3dc38ecc4ebae97ddd87f3d8985",
    )
    .unwrap();
    assert_eq!(measure_file(&big).unwrap().to_vec(), expected);

    assert!(measure_file(&dir.path().join("missing")).is_err());
}

#[test]
fn current_executable_is_measured() {
    let attester = SimAttester::for_current_executable(SimPlatformKey::generate()).unwrap();
    let exe = std::env::current_exe().unwrap();
    assert_eq!(attester.measurement(), measure_file(&exe).unwrap());
}

#[test]
fn load_or_create_creates_then_reloads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/sim-platform.pem");
    let created = SimPlatformKey::load_or_create(&path).unwrap();
    assert!(path.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let reloaded = SimPlatformKey::load_or_create(&path).unwrap();
    assert_eq!(created.public_key(), reloaded.public_key());

    // A garbage key file is an error, never silently replaced.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    assert!(SimPlatformKey::load_or_create(&bad).is_err());
}

#[test]
fn pem_round_trips_and_debug_shows_no_secret() {
    let key = SimPlatformKey::generate();
    let pem = key.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let back = SimPlatformKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.public_key(), key.public_key());

    let debug = format!("{key:?}");
    assert!(debug.contains("cloister-sim-platform-p256:"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!debug.contains(&body[..20]));
}
