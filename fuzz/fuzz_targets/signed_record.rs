//! Fuzz target: signed records (compact JWS) and party public keys as untrusted text, as the
//! worker reads them from requesters (inference authorizations naming their key as issuer) and
//! from storage (model manifests, serving policies, grants). Nothing the fuzzer makes may
//! verify under a key it does not hold, and every key that parses must print back to itself.
#![no_main]

use std::sync::OnceLock;

use cloister_sign::{SigningKey, VerifyingKey, peek_key_id};
use cloister_types::online::InferenceAuthorization;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_790_000_000;

fn key() -> &'static VerifyingKey {
    static KEY: OnceLock<VerifyingKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().public_key())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = VerifyingKey::from_text(text) {
        let printed = parsed.to_text();
        assert_eq!(VerifyingKey::from_text(&printed).map(|k| k.to_text()).ok(), Some(printed));
    }
    let _ = peek_key_id(text);
    let key = key();
    assert!(key.verify::<InferenceAuthorization>("inference request", text, NOW).is_err());
    assert!(key.verify::<serde_json::Value>("model manifest", text, NOW).is_err());
});
