//! Fuzz target: importing an instance bundle. The service's public key is public, so anyone can
//! seal arbitrary bytes to it: the fuzzer's input is fed raw (the envelope path), sealed to a
//! fixed service key as the signed contents (the signature and trust checks), and signed by a
//! trusted source as the bundle itself (the JSON decoding and every validation rule). Nothing may
//! panic, nothing unsigned or signed by an untrusted key opens, and whatever opens must pass
//! validation again.
#![no_main]

use std::sync::LazyLock;

use cloister_authority::migrate::{
    BUNDLE_CONTENT_TYPE, BUNDLE_FORMAT, BUNDLE_SIGNATURE_DOMAIN, open_bundle,
};
use cloister_seal::{Metadata, RecipientSecretKey};
use cloister_sign::SigningKey;
use libfuzzer_sys::fuzz_target;

static SERVICE_KEY: LazyLock<RecipientSecretKey> =
    LazyLock::new(|| RecipientSecretKey::from_bytes(&[7u8; 32]));

static SOURCE: LazyLock<SigningKey> = LazyLock::new(|| {
    SigningKey::derive(b"the fuzzer's trusted source", "fuzz").expect("a derived key")
});

static TRUSTED: LazyLock<Vec<String>> =
    LazyLock::new(|| vec![SOURCE.public_key().fingerprint_hex()]);

fn seal(contents: &[u8]) -> Option<Vec<u8>> {
    let key = &*SERVICE_KEY;
    let id = key.public_key().key_id().to_hex();
    let metadata = Metadata {
        content_type: BUNDLE_CONTENT_TYPE.to_owned(),
        object_id: "in_fuzz".to_owned(),
        attributes: [
            ("source-service".to_owned(), id.clone()),
            ("target-service".to_owned(), id),
        ]
        .into_iter()
        .collect(),
    };
    cloister_seal::seal_to_vec(&[key.public_key()], &metadata, contents).ok()
}

fuzz_target!(|data: &[u8]| {
    let key = &*SERVICE_KEY;
    let _ = open_bundle(data, key, &TRUSTED);
    // The input as the sealed contents: whatever signature it carries must be the trusted
    // source's over the exact bundle bytes for anything to open.
    if let Some(sealed) = seal(data)
        && let Ok(opened) = open_bundle(&sealed, key, &TRUSTED)
    {
        assert_eq!(opened.signer, SOURCE.public_key());
        assert!(opened.bundle.validate().is_ok());
    }
    // The input as a bundle the trusted source signed.
    if let Ok(text) = std::str::from_utf8(data) {
        let signed = serde_json::json!({
            "format": BUNDLE_FORMAT,
            "bundle": text,
            "signer": SOURCE.public_key().to_text(),
            "signature": SOURCE.sign_bytes(BUNDLE_SIGNATURE_DOMAIN, data),
        });
        let contents = serde_json::to_vec(&signed).expect("JSON encodes");
        if let Some(sealed) = seal(&contents)
            && let Ok(opened) = open_bundle(&sealed, key, &TRUSTED)
        {
            assert!(opened.bundle.validate().is_ok());
        }
        // Nobody else's signature opens anything.
        if let Some(sealed) = seal(&contents) {
            assert!(open_bundle(&sealed, key, &[]).is_err());
        }
    }
});
