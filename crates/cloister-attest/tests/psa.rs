//! The PSA attestation bridge against a fake: a plain `challenge` file and a FIFO as `token`,
//! so a "secure world" thread answers each read with a token for the challenge it finds, signed
//! by a test IAK; the evidence then goes through `cloister_verify::verify`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

use base64::Engine as _;
use ciborium::value::Value;
use cloister_attest::{AttestError, Attester, PsaBridge};
use cloister_types::{Hex, RuntimeData, TeeKind};
use cloister_verify::{TrustAnchors, VerifyError};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;

fn runtime_data() -> RuntimeData {
    RuntimeData {
        nonce: "psa-bridge-nonce".into(),
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(vec![5; 32]),
        receipt_pk: "receipt".into(),
        extra: BTreeMap::new(),
    }
}

fn iak() -> SigningKey {
    SigningKey::from_slice(&[0x21; 32]).unwrap()
}

fn anchors() -> TrustAnchors {
    let point = iak().verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&bytes[1..33]), "y": b64(&bytes[33..])});
    TrustAnchors::new().with_root(TeeKind::Psa, jwk.to_string().into_bytes())
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).unwrap();
    bytes
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

/// An RFC 9783 token for `nonce`, COSE_Sign1 ES256 under the test IAK.
fn token(nonce: &[u8]) -> Vec<u8> {
    let mut instance = vec![0x01];
    instance.extend([0x42; 32]);
    let claims = cbor(&Value::Map(vec![
        (int(265), Value::Text("tag:psacertified.org,2023:psa#tfm".into())),
        (int(10), Value::Bytes(nonce.to_vec())),
        (int(256), Value::Bytes(instance)),
        (int(2396), Value::Bytes(vec![0x33; 32])),
        (int(2394), int(1)),
        (int(2395), int(0x3000)),
        (
            int(2399),
            Value::Array(vec![Value::Map(vec![
                (int(1), Value::Text("SPE".into())),
                (int(2), Value::Bytes(vec![0x44; 32])),
                (int(5), Value::Bytes(vec![0x55; 32])),
            ])]),
        ),
    ]));
    let protected = cbor(&Value::Map(vec![(int(1), int(-7))]));
    let to_be_signed = cbor(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.clone()),
        Value::Bytes(Vec::new()),
        Value::Bytes(claims.clone()),
    ]));
    let signature: p256::ecdsa::Signature = iak().sign(&to_be_signed);
    cbor(&Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(Vec::new()),
            Value::Bytes(claims),
            Value::Bytes(signature.to_bytes().to_vec()),
        ])),
    ))
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A bridge directory: `challenge` a plain (empty) file, `token` a FIFO.
fn fake_bridge(root: &Path) -> PathBuf {
    let dir = root.join("psa");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("challenge"), b"").unwrap();
    mkfifo(&dir.join("token"));
    dir
}

/// The "secure world": for each of `rounds` reads of `token`, records (and empties) the
/// challenge and answers with `answer(round, challenge)`. Returns the challenges it saw.
fn fake_secure_world(
    dir: &Path,
    rounds: usize,
    answer: fn(usize, &[u8]) -> Vec<u8>,
) -> JoinHandle<Vec<Vec<u8>>> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for round in 0..rounds {
            // Wait for the challenge (emptied after each answer, so this also waits until the
            // attester has read the previous token before the FIFO is reopened).
            while fs::metadata(dir.join("challenge")).unwrap().len() == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // Blocks until the attester opens `token` for reading.
            let mut out = fs::OpenOptions::new().write(true).open(dir.join("token")).unwrap();
            let challenge = fs::read(dir.join("challenge")).unwrap();
            fs::write(dir.join("challenge"), b"").unwrap();
            out.write_all(&answer(round, &challenge)).unwrap();
            seen.push(challenge);
        }
        seen
    })
}

#[test]
fn the_bridge_token_binds_the_runtime_data_and_verifies() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_bridge(root.path());
    let world = fake_secure_world(&dir, 1, |_, challenge| token(challenge));
    let bridge = PsaBridge::open(&dir).unwrap();
    assert_eq!(bridge.tee(), TeeKind::Psa);
    assert_eq!(bridge.dir(), dir);
    let rd = runtime_data();
    let evidence = bridge.attest(&rd).unwrap();
    let seen = world.join().unwrap();
    assert_eq!(seen, vec![rd.report_data().unwrap().0.to_vec()]);
    assert_eq!(evidence.tee, TeeKind::Psa);
    assert!(evidence.collateral.is_empty());
    let verified = cloister_verify::verify(&evidence, &anchors(), 1_750_000_000).unwrap();
    assert_eq!(verified.tee(), TeeKind::Psa);
    assert_eq!(verified.claims().report_data.0, rd.report_data().unwrap().0.to_vec());
    assert_eq!(verified.claims().trust_anchor(), Some("instance"));
    // The same evidence under another IAK does not verify.
    let other = TrustAnchors::new().with_root(
        TeeKind::Psa,
        b"{\"kty\":\"oct\",\"k\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}".to_vec(),
    );
    assert!(matches!(
        cloister_verify::verify(&evidence, &other, 1_750_000_000),
        Err(VerifyError::Psa(_))
    ));
}

#[test]
fn a_token_for_another_challenge_is_retried_then_refused() {
    // Round 0 answers someone else's challenge, round 1 the right one.
    let root = tempfile::tempdir().unwrap();
    let dir = fake_bridge(root.path());
    let world =
        fake_secure_world(
            &dir,
            2,
            |round, challenge| {
                if round == 0 { token(&[0xee; 64]) } else { token(challenge) }
            },
        );
    let rd = runtime_data();
    let evidence = PsaBridge::open(&dir).unwrap().attest(&rd).unwrap();
    assert_eq!(world.join().unwrap().len(), 2);
    cloister_verify::verify(&evidence, &anchors(), 1_750_000_000).unwrap();

    // Always someone else's: refused after the attempts.
    let root = tempfile::tempdir().unwrap();
    let dir = fake_bridge(root.path());
    let world = fake_secure_world(&dir, 2, |_, _| token(&[0xee; 64]));
    let error = PsaBridge::open(&dir).unwrap().with_attempts(2).attest(&rd).unwrap_err();
    world.join().unwrap();
    match error {
        AttestError::ReportDataMismatch { expected, found, .. } => {
            assert_eq!(expected, hex::encode(rd.report_data().unwrap().0));
            assert_eq!(found, hex::encode([0xee; 64]));
        }
        other => panic!("expected a report_data mismatch, got {other}"),
    }
}

#[test]
fn malformed_answers_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_bridge(root.path());
    let world = fake_secure_world(&dir, 3, |round, _| match round {
        0 => Vec::new(),
        1 => b"not cbor at all".to_vec(),
        _ => vec![0; 16 * 1024 + 1],
    });
    let bridge = PsaBridge::open(&dir).unwrap();
    for _ in 0..3 {
        let error = bridge.attest(&runtime_data()).unwrap_err();
        assert!(matches!(error, AttestError::Malformed { .. }), "{error}");
    }
    world.join().unwrap();
}

#[test]
fn a_directory_without_the_bridge_files_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let error = PsaBridge::open(root.path()).unwrap_err();
    assert!(matches!(error, AttestError::Io { .. }), "{error}");
    fs::write(root.path().join("challenge"), b"").unwrap();
    assert!(PsaBridge::open(root.path()).is_err());
    fs::write(root.path().join("token"), b"").unwrap();
    assert!(PsaBridge::open(root.path()).is_ok());
}
