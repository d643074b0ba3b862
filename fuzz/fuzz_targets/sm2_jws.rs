//! Fuzz target: SM2-signed compact JWS (`alg` `SM2SM3`), SM2 signing keys and their JWKs as
//! untrusted text, as a relying party reads EAR tokens and an instance's JWKS. Nothing the
//! fuzzer makes may verify under a fixed key it does not hold (as a token, as a raw-byte
//! signature, or through a JWKS listing that key), and every key that parses must print back
//! to itself.
#![no_main]

use std::sync::OnceLock;

use cloister_sign::{
    AnyVerifyingKey, Sm2SigningKey, Sm2VerifyingKey, peek_key_id, verify_with_jwks,
};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_790_000_000;

fn key() -> &'static Sm2VerifyingKey {
    static KEY: OnceLock<Sm2VerifyingKey> = OnceLock::new();
    KEY.get_or_init(|| match Sm2SigningKey::derive(b"the sm2_jws fuzz target", "fuzz") {
        Ok(key) => key.public_key(),
        Err(e) => panic!("deriving the fuzz key: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = Sm2VerifyingKey::from_text(text) {
        let printed = parsed.to_text();
        assert_eq!(Sm2VerifyingKey::from_text(&printed).map(|k| k.to_text()).ok(), Some(printed));
    }
    let _ = AnyVerifyingKey::from_text(text);
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(parsed) = Sm2VerifyingKey::from_jwk(&json) {
            assert_eq!(Sm2VerifyingKey::from_jwk(&parsed.to_jwk("k")).ok(), Some(parsed));
        }
        let _ = AnyVerifyingKey::from_jwk(&json);
    }
    let _ = peek_key_id(text);
    let key = key();
    assert!(key.verify::<serde_json::Value>("EAR", text, NOW).is_err());
    assert!(key.verify_bytes("cloister-fuzz v1", b"message", text).is_err());
    let jwks = serde_json::json!({ "keys": [key.to_jwk("fuzz")] });
    assert!(verify_with_jwks::<serde_json::Value>("EAR", &jwks, text, NOW).is_err());
});
