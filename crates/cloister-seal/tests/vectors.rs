//! Committed envelope test vectors (`docs/formats/vectors/`): re-derived byte for byte with
//! fixed randomness, then opened with every recipient key. `v1-*` are X25519-suite envelopes,
//! `v1-sm-*` ShangMi-suite envelopes (SM2 recipients, SM4-GCM body).
//!
//! To regenerate after a deliberate format change: `CLOISTER_SEAL_WRITE_VECTORS=1 cargo test -p
//! cloister-seal --test vectors` (and bump the format version).

use std::collections::BTreeMap;
use std::path::PathBuf;

use cloister_seal::internal::{
    FixedSealInputs, SM2_EPHEMERAL_INFO, SM2_WRAP_INFO, derive_sm_payload_key, hkdf_sm3,
    seal_deterministic, seal_deterministic_to, seal_stream_deterministic,
    seal_stream_deterministic_to, wrap_secret_key_deterministic,
};
use cloister_seal::{
    EnvelopeSecretKey, Metadata, Recipient, RecipientSecretKey, Sm2SecretKey, Suite, open,
    open_to_vec, open_to_vec_with, open_with, read_header,
};
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/formats/vectors")
}

/// A recipient secret whose bytes are `i, i+1, ..., i+31`.
fn recipient(i: u8) -> RecipientSecretKey {
    let mut b = [0u8; 32];
    for (j, x) in b.iter_mut().enumerate() {
        *x = i.wrapping_add(j as u8);
    }
    RecipientSecretKey::from_bytes(&b)
}

/// An SM2 recipient whose scalar bytes are `i, i+1, ..., i+31` (below the group order for
/// every `i` used here).
fn sm2_recipient(i: u8) -> Sm2SecretKey {
    let mut b = [0u8; 32];
    for (j, x) in b.iter_mut().enumerate() {
        *x = i.wrapping_add(j as u8);
    }
    Sm2SecretKey::from_bytes(&b).expect("valid SM2 scalar")
}

/// The recipient key of `case` made from `i`.
fn case_key(case: &Case, i: u8) -> EnvelopeSecretKey {
    match case.suite {
        Suite::ShangMi => EnvelopeSecretKey::Sm2(sm2_recipient(i)),
        _ => EnvelopeSecretKey::X25519(recipient(i)),
    }
}

struct Case {
    name: &'static str,
    description: &'static str,
    suite: Suite,
    recipients: Vec<u8>,
    /// Which of `recipients` are key-broker keys (kind 2); empty for all kind 1.
    brokers: Vec<u8>,
    metadata: Metadata,
    chunk_size: u32,
    plaintext: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mut attrs = BTreeMap::new();
    attrs.insert("owner".to_string(), "hospital-a".to_string());
    attrs.insert("purpose".to_string(), "fine-tuning".to_string());
    vec![
        Case {
            name: "v1-empty",
            suite: Suite::X25519,
            description: "empty plaintext: one final, empty chunk; one recipient; default chunk size",
            recipients: vec![0x10],
            brokers: vec![],
            metadata: Metadata::default(),
            chunk_size: 65536,
            plaintext: Vec::new(),
        },
        Case {
            name: "v1-hello-two-recipients",
            suite: Suite::X25519,
            description: "short plaintext, metadata with attributes, two recipients",
            recipients: vec![0x10, 0x40],
            brokers: vec![],
            metadata: Metadata {
                content_type: "text/plain".into(),
                object_id: "obj-0001".into(),
                attributes: attrs,
            },
            chunk_size: 65536,
            plaintext: b"Hello, Cloister!\n".to_vec(),
        },
        Case {
            name: "v1-multi-chunk",
            suite: Suite::X25519,
            description: "200 bytes in 64-byte chunks: three full chunks and a final 8-byte chunk",
            recipients: vec![0x10],
            brokers: vec![],
            metadata: Metadata {
                content_type: "application/octet-stream".into(),
                object_id: "obj-0002".into(),
                attributes: BTreeMap::new(),
            },
            chunk_size: 64,
            plaintext: (0..200u32).map(|i| (i % 251) as u8).collect(),
        },
        Case {
            name: "v1-exact-chunks",
            suite: Suite::X25519,
            description: "128 bytes in 64-byte chunks: the final chunk is full (no extra empty chunk)",
            recipients: vec![0x40],
            brokers: vec![],
            metadata: Metadata::default(),
            chunk_size: 64,
            plaintext: (0..128u32).map(|i| (i * 7 % 256) as u8).collect(),
        },
        Case {
            name: "v1-key-and-broker",
            suite: Suite::X25519,
            description: "a kind-1 recipient and a kind-2 (key-broker) recipient",
            recipients: vec![0x10, 0x70],
            brokers: vec![0x70],
            metadata: Metadata {
                content_type: "text/plain".into(),
                object_id: "obj-0003".into(),
                attributes: BTreeMap::new(),
            },
            chunk_size: 65536,
            plaintext: b"sealed once, released by the key broker\n".to_vec(),
        },
        Case {
            name: "v1-sm-empty",
            suite: Suite::ShangMi,
            description: "ShangMi suite: empty plaintext, one SM2 recipient, default chunk size",
            recipients: vec![0x10],
            brokers: vec![],
            metadata: Metadata::default(),
            chunk_size: 65536,
            plaintext: Vec::new(),
        },
        Case {
            name: "v1-sm-hello-two-recipients",
            suite: Suite::ShangMi,
            description: "ShangMi suite: short plaintext, metadata with attributes, two SM2 recipients",
            recipients: vec![0x10, 0x40],
            brokers: vec![],
            metadata: Metadata {
                content_type: "text/plain".into(),
                object_id: "obj-sm-0001".into(),
                attributes: {
                    let mut a = BTreeMap::new();
                    a.insert("owner".to_string(), "hospital-a".to_string());
                    a.insert("suite".to_string(), "shangmi".to_string());
                    a
                },
            },
            chunk_size: 65536,
            plaintext: "Hello, Cloister! 你好\n".as_bytes().to_vec(),
        },
        Case {
            name: "v1-sm-multi-chunk",
            suite: Suite::ShangMi,
            description: "ShangMi suite: 200 bytes in 64-byte chunks: three full chunks and a final 8-byte chunk",
            recipients: vec![0x40],
            brokers: vec![],
            metadata: Metadata {
                content_type: "application/octet-stream".into(),
                object_id: "obj-sm-0002".into(),
                attributes: BTreeMap::new(),
            },
            chunk_size: 64,
            plaintext: (0..200u32).map(|i| (i % 251) as u8).collect(),
        },
        Case {
            name: "v1-sm-exact-chunks",
            suite: Suite::ShangMi,
            description: "ShangMi suite: 128 bytes in 64-byte chunks: the final chunk is full",
            recipients: vec![0x10],
            brokers: vec![],
            metadata: Metadata::default(),
            chunk_size: 64,
            plaintext: (0..128u32).map(|i| (i * 7 % 256) as u8).collect(),
        },
    ]
}

/// The per-recipient intermediate values of an SM2 entry, re-derived from the seed as the
/// specification describes (`sealed-envelope.md` §10.3), for implementers to compare against.
fn sm2_intermediates(seed: &[u8; 32]) -> Value {
    let mut stream = [0u8; 256];
    hkdf_sm3(seed, SM2_EPHEMERAL_INFO, &mut stream);
    let secret = &stream[..32];
    // k: the first 32-byte block after the wrap secret that is in 1..n-1 (n = sm2p256v1 order).
    let n = hex::decode("fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123")
        .expect("vector value");
    let k = stream[32..]
        .chunks(32)
        .find(|c| c.iter().any(|&b| b != 0) && *c < n.as_slice())
        .expect("an in-range candidate");
    let mut okm = [0u8; 28];
    hkdf_sm3(secret, SM2_WRAP_INFO, &mut okm);
    json!({
        "wrap_secret": hex::encode(secret),
        "sm2_k": hex::encode(k),
        "wrap_key": hex::encode(&okm[..16]),
        "wrap_nonce": hex::encode(&okm[16..]),
    })
}

fn fixed_inputs(case: &Case) -> FixedSealInputs {
    let mut dek = [0u8; 32];
    for (i, b) in dek.iter_mut().enumerate() {
        *b = 0xd0 ^ i as u8;
    }
    FixedSealInputs {
        dek,
        ephemeral_seeds: (0..case.recipients.len()).map(|r| [0xe0 + r as u8; 32]).collect(),
        nonce_prefix: [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6],
        chunk_size: case.chunk_size,
    }
}

fn build(case: &Case) -> Value {
    if case.suite == Suite::ShangMi {
        return build_sm(case);
    }
    let keys: Vec<_> = case.recipients.iter().map(|&i| recipient(i)).collect();
    let publics: Vec<_> = keys.iter().map(RecipientSecretKey::public_key).collect();
    let inputs = fixed_inputs(case);
    let mut streamed = Vec::new();
    let envelope = if case.brokers.is_empty() {
        seal_stream_deterministic(
            &publics,
            &case.metadata,
            &inputs,
            case.plaintext.as_slice(),
            &mut streamed,
        )
        .expect("deterministic streaming seal");
        seal_deterministic(&publics, &case.metadata, &inputs, &case.plaintext)
            .expect("deterministic seal")
    } else {
        let recipients: Vec<Recipient> = case
            .recipients
            .iter()
            .zip(&publics)
            .map(|(i, p)| {
                if case.brokers.contains(i) {
                    Recipient::Broker(p.clone())
                } else {
                    Recipient::Key(p.clone())
                }
            })
            .collect();
        seal_stream_deterministic_to(
            &recipients,
            &case.metadata,
            &inputs,
            case.plaintext.as_slice(),
            &mut streamed,
        )
        .expect("deterministic streaming seal");
        seal_deterministic_to(&recipients, &case.metadata, &inputs, &case.plaintext)
            .expect("deterministic seal")
    };
    assert_eq!(streamed, envelope, "{}: streaming and in-memory sealers differ", case.name);
    let header = read_header(envelope.as_slice()).expect("header");
    let mut value = json!({
        "name": case.name,
        "description": case.description,
        "recipient_secret_keys": keys.iter().map(|k| k.to_text().to_string()).collect::<Vec<_>>(),
        "recipient_public_keys": publics.iter().map(|p| p.to_text()).collect::<Vec<_>>(),
        "recipient_key_ids": header.recipient_key_ids().iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
        "metadata": case.metadata,
        "chunk_size": case.chunk_size,
        "dek": hex::encode(inputs.dek),
        "payload_key": hex::encode(*cloister_seal::internal::derive_payload_key(&inputs.dek)),
        "ephemeral_seeds": inputs.ephemeral_seeds.iter().map(hex::encode).collect::<Vec<_>>(),
        "nonce_prefix": hex::encode(inputs.nonce_prefix),
        "plaintext": hex::encode(&case.plaintext),
        "header_length": header.len(),
        "header_sha256": hex::encode(header.digest()),
        "envelope": hex::encode(&envelope),
    });
    if !case.brokers.is_empty() {
        let kinds: Vec<u8> = header.recipients().iter().map(|e| e.kind()).collect();
        value["recipient_kinds"] = json!(kinds);
    }
    value
}

/// A ShangMi-suite vector: the same fields as the X25519 ones (payload key 16 bytes, header
/// digest SM3), plus the suite and each recipient's SM2 wrap intermediates.
fn build_sm(case: &Case) -> Value {
    let keys: Vec<_> = case.recipients.iter().map(|&i| sm2_recipient(i)).collect();
    let recipients: Vec<Recipient> = keys.iter().map(|k| k.public_key().recipient()).collect();
    let inputs = fixed_inputs(case);
    let mut streamed = Vec::new();
    seal_stream_deterministic_to(
        &recipients,
        &case.metadata,
        &inputs,
        case.plaintext.as_slice(),
        &mut streamed,
    )
    .expect("deterministic streaming seal");
    let envelope = seal_deterministic_to(&recipients, &case.metadata, &inputs, &case.plaintext)
        .expect("deterministic seal");
    assert_eq!(streamed, envelope, "{}: streaming and in-memory sealers differ", case.name);
    let header = read_header(envelope.as_slice()).expect("header");
    assert_eq!(header.suite(), Suite::ShangMi);
    let wraps: Vec<Value> = inputs.ephemeral_seeds.iter().map(sm2_intermediates).collect();
    check_sm2_intermediates(&envelope, header.len(), &keys, &wraps, &inputs.dek);
    json!({
        "name": case.name,
        "description": case.description,
        "suite": "shangmi",
        "suite_ids": {"kem": "0x5302", "kdf": "0x5303", "aead": "0x5304", "payload": "0x0002"},
        "recipient_secret_keys": keys.iter().map(|k| k.to_text().to_string()).collect::<Vec<_>>(),
        "recipient_public_keys": keys.iter().map(|k| k.public_key().to_text()).collect::<Vec<_>>(),
        "recipient_public_keys_uncompressed": keys.iter().map(|k| hex::encode(k.public_key().to_uncompressed())).collect::<Vec<_>>(),
        "recipient_key_ids": header.recipient_key_ids().iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
        "metadata": case.metadata,
        "chunk_size": case.chunk_size,
        "dek": hex::encode(inputs.dek),
        "payload_key": hex::encode(*derive_sm_payload_key(&inputs.dek)),
        "ephemeral_seeds": inputs.ephemeral_seeds.iter().map(hex::encode).collect::<Vec<_>>(),
        "sm2_wraps": wraps,
        "nonce_prefix": hex::encode(inputs.nonce_prefix),
        "plaintext": hex::encode(&case.plaintext),
        "header_length": header.len(),
        "header_sm3": hex::encode(header.digest()),
        "envelope": hex::encode(&envelope),
    })
}

/// Checks the listed intermediates against the envelope with the primitives directly: C1 of
/// each entry is `k·G`, SM2 decryption of the entry's ciphertext gives the wrap secret, and the
/// wrap key and nonce open the wrapped DEK under AAD = header prefix.
fn check_sm2_intermediates(
    envelope: &[u8],
    header_len: usize,
    keys: &[Sm2SecretKey],
    wraps: &[Value],
    dek: &[u8; 32],
) {
    use aes_gcm::aead::AeadInOut as _;
    use sm2::elliptic_curve::sec1::ToSec1Point as _;
    let entry = 3 + cloister_seal::SM2_ENTRY_LEN;
    let entries_start = header_len - keys.len() * entry;
    let prefix = &envelope[..entries_start - 2];
    for (i, (key, wrap)) in keys.iter().zip(wraps).enumerate() {
        let at = entries_start + i * entry;
        assert_eq!(envelope[at], cloister_seal::RECIPIENT_KIND_SM2);
        assert_eq!(&envelope[at + 3..at + 19], key.key_id().0.as_slice());
        let ciphertext = &envelope[at + 19..at + 19 + cloister_seal::SM2_CIPHERTEXT_LEN];
        let wrapped = &envelope[at + 19 + cloister_seal::SM2_CIPHERTEXT_LEN..at + entry];
        let h =
            |k: &str| hex::decode(wrap[k].as_str().expect("vector value")).expect("vector value");
        let k = sm2::SecretKey::from_slice(&h("sm2_k")).expect("vector value");
        assert_eq!(&ciphertext[..65], k.public_key().to_sec1_point(false).as_bytes(), "C1 = kG");
        let d = sm2::SecretKey::from_slice(&key.to_text_bytes()).expect("vector value");
        let s =
            sm2::pke::DecryptingKey::new_with_mode(d.to_nonzero_scalar(), sm2::pke::Mode::C1C3C2)
                .decrypt(ciphertext)
                .expect("vector value");
        assert_eq!(s, h("wrap_secret"));
        let wrap_key: [u8; 16] = h("wrap_key").try_into().expect("vector value");
        let nonce: [u8; 12] = h("wrap_nonce").try_into().expect("vector value");
        let mut body = wrapped[..32].to_vec();
        let tag: [u8; 16] = wrapped[32..].try_into().expect("vector value");
        cloister_seal::internal::sm4_gcm(&wrap_key)
            .decrypt_inout_detached(&nonce.into(), prefix, body.as_mut_slice().into(), &tag.into())
            .expect("vector value");
        assert_eq!(body, dek);
    }
}

/// The 32 scalar bytes of an SM2 test key, from its text form.
trait ScalarBytes {
    fn to_text_bytes(&self) -> Vec<u8>;
}

impl ScalarBytes for Sm2SecretKey {
    fn to_text_bytes(&self) -> Vec<u8> {
        use base64::Engine as _;
        let text = self.to_text();
        let body = text.strip_prefix(cloister_seal::SM2_SECRET_KEY_PREFIX).expect("vector value");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).expect("vector value")
    }
}

#[test]
fn committed_vectors_rederive_and_open() {
    let dir = vectors_dir();
    let write = std::env::var_os("CLOISTER_SEAL_WRITE_VECTORS").is_some();
    for case in cases() {
        let built = build(&case);
        let path = dir.join(format!("{}.json", case.name));
        if write {
            std::fs::create_dir_all(&dir).expect("create vectors dir");
            let text = serde_json::to_string_pretty(&built).expect("json") + "\n";
            std::fs::write(&path, text).expect("write vector");
        }
        let committed: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
        )
        .expect("vector json");
        assert_eq!(committed, built, "{} no longer re-derives byte for byte", case.name);

        // Open the committed bytes (not the re-derived ones) with every listed secret key.
        let envelope = hex::decode(committed["envelope"].as_str().expect("envelope")).expect("hex");
        let plaintext = hex::decode(committed["plaintext"].as_str().expect("pt")).expect("hex");
        for sk in committed["recipient_secret_keys"].as_array().expect("keys") {
            let key = EnvelopeSecretKey::from_text(sk.as_str().expect("key")).expect("key text");
            assert_eq!(key.suite(), case.suite);
            let (header, pt) = open_to_vec_with(&key, &envelope).expect("open committed vector");
            assert_eq!(pt.as_slice(), plaintext.as_slice());
            assert_eq!(header.metadata(), &case.metadata);
            assert_eq!(header.suite(), case.suite);
            let mut out = Vec::new();
            open_with(&key, envelope.as_slice(), &mut out).expect("streaming open");
            assert_eq!(out, plaintext);
            if let EnvelopeSecretKey::X25519(key) = &key {
                // The original entry points still open X25519-suite envelopes.
                assert_eq!(open_to_vec(key, &envelope).expect("open").1.as_slice(), &plaintext[..]);
                open(key, envelope.as_slice(), std::io::sink()).expect("streaming open");
            }
        }
        assert!(open_to_vec_with(&case_key(&case, 0x77), &envelope).is_err());
        if let Some(kinds) = committed.get("recipient_kinds") {
            let parsed: Vec<u64> = read_header(envelope.as_slice())
                .expect("header")
                .recipients()
                .iter()
                .map(|e| u64::from(e.kind()))
                .collect();
            let listed: Vec<u64> = kinds
                .as_array()
                .expect("kinds")
                .iter()
                .map(|k| k.as_u64().expect("kind"))
                .collect();
            assert_eq!(parsed, listed, "{}: recipient kinds", case.name);
        }
    }
}

/// The key-release wrap (`wrap_secret_key`) with a fixed ephemeral seed: the broker key of
/// `v1-key-and-broker` (secret bytes 0x70..) wrapped to an enclave key (secret bytes 0x90..).
fn build_release_wrap() -> Value {
    let broker = recipient(0x70);
    let enclave = recipient(0x90);
    let context = [0xc0u8; 32];
    let seed = [0xe7u8; 32];
    let wrapped = wrap_secret_key_deterministic(&enclave.public_key(), &broker, &context, &seed)
        .expect("wrap");
    json!({
        "name": "release-wrap",
        "description": "a broker secret key wrapped to an enclave HPKE key (info \"cloister key-broker release v1\", aad = context)",
        "broker_secret_key": broker.to_text().to_string(),
        "enclave_secret_key": enclave.to_text().to_string(),
        "enclave_public_key": enclave.public_key().to_text(),
        "context": hex::encode(context),
        "ephemeral_seed": hex::encode(seed),
        "wrapped": hex::encode(&wrapped),
    })
}

#[test]
fn committed_release_wrap_vector_rederives_and_unwraps() {
    let path = vectors_dir().join("release-wrap.json");
    let built = build_release_wrap();
    if std::env::var_os("CLOISTER_SEAL_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&built).expect("json") + "\n";
        std::fs::write(&path, text).expect("write vector");
    }
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read vector")).expect("json");
    assert_eq!(committed, built, "release-wrap no longer re-derives byte for byte");
    let enclave =
        RecipientSecretKey::from_text(committed["enclave_secret_key"].as_str().expect("key"))
            .expect("key text");
    let wrapped = hex::decode(committed["wrapped"].as_str().expect("wrapped")).expect("hex");
    let context = hex::decode(committed["context"].as_str().expect("context")).expect("hex");
    let key = cloister_seal::unwrap_secret_key(&enclave, &wrapped, &context).expect("unwrap");
    assert_eq!(key.to_text().as_str(), committed["broker_secret_key"].as_str().expect("key"));
    assert!(cloister_seal::unwrap_secret_key(&enclave, &wrapped, &context[1..]).is_err());
}
