//! Key-broker support: recipient kind 2 in envelopes, broker references, and the key-release
//! wrap.

use cloister_seal::{
    BrokerRecipient, HPKE_X25519_ENTRY_LEN, KeyError, Metadata, OpenError, RECIPIENT_KIND_BROKER,
    RECIPIENT_KIND_HPKE_X25519, Recipient, RecipientSecretKey, SealError, SealOptions,
    WRAPPED_SECRET_KEY_LEN, open, open_to_vec, read_header, seal_to, seal_to_vec_for,
    unwrap_secret_key, wrap_secret_key,
};

fn meta() -> Metadata {
    Metadata { content_type: "text/csv".into(), object_id: "obj-7".into(), ..Metadata::default() }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 % 256) as u8).collect()
}

#[test]
fn kind_two_round_trip() {
    let broker = RecipientSecretKey::generate();
    let pt = pattern(1000);
    let env = seal_to_vec_for(&[Recipient::Broker(broker.public_key())], &meta(), &pt).unwrap();
    let header = read_header(env.as_slice()).unwrap();
    assert_eq!(header.recipients().len(), 1);
    let entry = &header.recipients()[0];
    assert_eq!(entry.kind(), RECIPIENT_KIND_BROKER);
    assert!(entry.is_broker());
    assert_eq!(entry.key_id(), Some(broker.key_id()));
    assert_eq!(header.broker_key_ids(), vec![broker.key_id()]);
    assert_eq!(header.recipient_key_ids(), vec![broker.key_id()]);
    let (_, opened) = open_to_vec(&broker, &env).unwrap();
    assert_eq!(opened.as_slice(), pt.as_slice());

    // The streaming sealer writes kind 2 too, and the streaming opener opens it.
    let mut streamed = Vec::new();
    let opts = SealOptions::default().with_chunk_size(64);
    seal_to(
        &[Recipient::Broker(broker.public_key())],
        &meta(),
        &opts,
        pt.as_slice(),
        &mut streamed,
    )
    .unwrap();
    let mut out = Vec::new();
    let summary = open(&broker, streamed.as_slice(), &mut out).unwrap();
    assert_eq!(out, pt);
    assert!(summary.header.recipients()[0].is_broker());
    // Another key is not a recipient.
    let other = RecipientSecretKey::generate();
    assert!(matches!(open_to_vec(&other, &env), Err(OpenError::NotARecipient)));
}

#[test]
fn mixed_kinds_each_open() {
    let direct = RecipientSecretKey::generate();
    let broker = RecipientSecretKey::generate();
    let pt = pattern(300);
    let recipients = [Recipient::Key(direct.public_key()), Recipient::Broker(broker.public_key())];
    let env = seal_to_vec_for(&recipients, &meta(), &pt).unwrap();
    let header = read_header(env.as_slice()).unwrap();
    let kinds: Vec<u8> = header.recipients().iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, vec![RECIPIENT_KIND_HPKE_X25519, RECIPIENT_KIND_BROKER]);
    assert!(!header.recipients()[0].is_broker());
    assert_eq!(header.recipient_key_ids(), vec![direct.key_id(), broker.key_id()]);
    assert_eq!(header.broker_key_ids(), vec![broker.key_id()]);
    for key in [&direct, &broker] {
        let (_, opened) = open_to_vec(key, &env).unwrap();
        assert_eq!(opened.as_slice(), pt.as_slice());
    }
}

#[test]
fn same_key_as_both_kinds_is_refused_when_sealing() {
    let key = RecipientSecretKey::generate();
    let recipients = [Recipient::Key(key.public_key()), Recipient::Broker(key.public_key())];
    let err = seal_to_vec_for(&recipients, &meta(), b"x").unwrap_err();
    assert!(matches!(err, SealError::DuplicateRecipient(id) if id == key.key_id()), "{err}");
}

/// Rebuilds a one-recipient envelope's header with its entry replaced by `kind`, `body`; fixes
/// `header_len`. Returns the header only.
fn header_with_entries(env: &[u8], entries: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let hlen = read_header(env).expect("a valid header").len();
    let count_at = hlen - (3 + HPKE_X25519_ENTRY_LEN) - 2;
    let mut h = env[..count_at].to_vec();
    h.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (kind, body) in entries {
        h.push(*kind);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
    }
    let len = h.len() as u32;
    h[9..13].copy_from_slice(&len.to_be_bytes());
    h
}

#[test]
fn kind_two_entries_of_the_wrong_length_are_refused() {
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec_for(&[Recipient::Broker(key.public_key())], &meta(), b"x").unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let body = env[hlen - HPKE_X25519_ENTRY_LEN..hlen].to_vec();
    // The untouched body re-parses (the helper itself is sound).
    let same = header_with_entries(&env, &[(RECIPIENT_KIND_BROKER, body.clone())]);
    assert_eq!(same.as_slice(), &env[..hlen]);
    cloister_seal::internal::parse_header(&same).unwrap();
    for len in [0, 16, HPKE_X25519_ENTRY_LEN - 1, HPKE_X25519_ENTRY_LEN + 1, 200] {
        let mut b = body.clone();
        b.resize(len, 0xab);
        let h = header_with_entries(&env, &[(RECIPIENT_KIND_BROKER, b)]);
        let err = cloister_seal::internal::parse_header(&h).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, OpenError::MalformedHeader(_)), "{text}");
        assert!(text.contains("key broker") && text.contains("expected 96"), "{text}");
    }
}

#[test]
fn one_key_id_listed_as_both_kinds_is_refused_when_parsing() {
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec_for(&[Recipient::Key(key.public_key())], &meta(), b"x").unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let body = env[hlen - HPKE_X25519_ENTRY_LEN..hlen].to_vec();
    let h = header_with_entries(
        &env,
        &[(RECIPIENT_KIND_HPKE_X25519, body.clone()), (RECIPIENT_KIND_BROKER, body)],
    );
    let err = cloister_seal::internal::parse_header(&h).unwrap_err();
    assert!(err.to_string().contains("listed more than once"), "{err}");
}

#[test]
fn changing_the_kind_byte_breaks_the_envelope() {
    // The kind is not part of the HPKE associated data (the header prefix), but it is part of
    // the header digest that authenticates every body chunk.
    let key = RecipientSecretKey::generate();
    let env = seal_to_vec_for(&[Recipient::Key(key.public_key())], &meta(), b"secret").unwrap();
    let hlen = read_header(env.as_slice()).unwrap().len();
    let kind_at = hlen - HPKE_X25519_ENTRY_LEN - 3;
    assert_eq!(env[kind_at], RECIPIENT_KIND_HPKE_X25519);
    let mut flipped = env.clone();
    flipped[kind_at] = RECIPIENT_KIND_BROKER;
    assert!(read_header(flipped.as_slice()).unwrap().recipients()[0].is_broker());
    let err = open_to_vec(&key, &flipped).unwrap_err();
    assert!(matches!(err, OpenError::ChunkAuthentication { index: 0 }), "{err}");
}

#[test]
fn broker_reference_text_round_trips() {
    let key = RecipientSecretKey::generate();
    let id = "kb_3f2a9c0d1e2f3a4b5c6d7e8f90a1b2c3";
    let r = BrokerRecipient::new(id, key.public_key()).unwrap();
    let text = r.to_text();
    assert_eq!(text, format!("cloister-broker:{id}:{}", key.public_key().to_text()));
    let back = BrokerRecipient::from_text(&format!("  {text}\n")).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.broker_key(), id);
    assert_eq!(back.key_id(), key.key_id());
    assert_eq!(back.recipient(), Recipient::Broker(key.public_key()));
    assert_eq!(text.parse::<BrokerRecipient>().unwrap(), r);
    assert_eq!(Recipient::from_text(&text).unwrap(), Recipient::Broker(key.public_key()));
    assert_eq!(
        Recipient::from_text(&key.public_key().to_text()).unwrap(),
        Recipient::Key(key.public_key())
    );
    assert_eq!(Recipient::from(&r).kind(), RECIPIENT_KIND_BROKER);
}

#[test]
fn malformed_broker_references_are_refused() {
    let key = RecipientSecretKey::generate();
    let pk = key.public_key().to_text();
    let cases = [
        format!("cloister-brokr:kb_1:{pk}"),
        format!("cloister-broker:kb_1{pk}"),
        "cloister-broker:kb_1".to_string(),
        format!("cloister-broker:kb_:{pk}"),
        format!("cloister-broker:in_1:{pk}"),
        format!("cloister-broker:kb_a-b:{pk}"),
        format!("cloister-broker:kb_{}:{pk}", "a".repeat(65)),
        format!("cloister-broker:kb_1:{}", key.to_text().as_str()),
        "cloister-broker:kb_1:cloister-hpke-x25519:AAAA".to_string(),
        format!("cloister-broker:kb_1:{pk}x"),
    ];
    for text in &cases {
        let err = BrokerRecipient::from_text(text).unwrap_err();
        assert!(matches!(err, KeyError::BrokerReference(_)), "{text}: {err}");
    }
    assert!(BrokerRecipient::new("kb_", key.public_key()).is_err());
    assert!(BrokerRecipient::new("kb_ok1", key.public_key()).is_ok());
    // A bad broker reference given as a recipient fails as a broker reference, not as a key.
    assert!(matches!(Recipient::from_text(&cases[3]), Err(KeyError::BrokerReference(_))));
}

#[test]
fn released_key_unwraps_with_the_same_key_and_context() {
    let broker = RecipientSecretKey::generate();
    let enclave = RecipientSecretKey::generate();
    let context = b"key id, instance, job";
    let wrapped = wrap_secret_key(&enclave.public_key(), &broker, context).unwrap();
    assert_eq!(wrapped.len(), WRAPPED_SECRET_KEY_LEN);
    let released = unwrap_secret_key(&enclave, &wrapped, context).unwrap();
    assert_eq!(released.public_key(), broker.public_key());
    assert_eq!(released.to_text().as_str(), broker.to_text().as_str());
    // Two wraps of the same key differ (fresh ephemeral key).
    let again = wrap_secret_key(&enclave.public_key(), &broker, context).unwrap();
    assert_ne!(again, wrapped);
    // The released key opens a kind-2 envelope.
    let env = seal_to_vec_for(&[Recipient::Broker(broker.public_key())], &meta(), b"data").unwrap();
    assert_eq!(open_to_vec(&released, &env).unwrap().1.as_slice(), b"data");
}

#[test]
fn released_key_refuses_wrong_key_context_length_and_any_changed_bit() {
    let broker = RecipientSecretKey::generate();
    let enclave = RecipientSecretKey::generate();
    let context = b"ctx-1";
    let wrapped = wrap_secret_key(&enclave.public_key(), &broker, context).unwrap();

    let other = RecipientSecretKey::generate();
    assert!(matches!(
        unwrap_secret_key(&other, &wrapped, context),
        Err(OpenError::KeyUnwrapFailed)
    ));
    assert!(matches!(
        unwrap_secret_key(&enclave, &wrapped, b"ctx-2"),
        Err(OpenError::KeyUnwrapFailed)
    ));
    assert!(matches!(unwrap_secret_key(&enclave, &wrapped, b""), Err(OpenError::KeyUnwrapFailed)));
    for len in [0, WRAPPED_SECRET_KEY_LEN - 1, WRAPPED_SECRET_KEY_LEN + 1] {
        let mut w = wrapped.clone();
        w.resize(len, 0);
        let err = unwrap_secret_key(&enclave, &w, context).unwrap_err();
        assert!(
            matches!(err, OpenError::WrappedKeyLength { len: l, expected: 80 } if l == len),
            "{err}"
        );
    }
    for byte in 0..wrapped.len() {
        for bit in [0x01u8, 0x80] {
            let mut w = wrapped.clone();
            w[byte] ^= bit;
            assert!(
                matches!(unwrap_secret_key(&enclave, &w, context), Err(OpenError::KeyUnwrapFailed)),
                "byte {byte} bit {bit:#x}"
            );
        }
    }
    // The DEK-wrap info and the release info are separate domains: an envelope's recipient
    // entry is not a released key, even with the right length and the header prefix as context.
    assert_ne!(cloister_seal::KEY_RELEASE_INFO, cloister_seal::HPKE_INFO);
}
