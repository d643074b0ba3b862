//! Fuzz target: importing an instance bundle. The service's public key is public, so anyone can
//! seal arbitrary bytes to it: the fuzzer's input is sealed to a fixed service key (exercising
//! the JSON decoding and every validation rule) and also fed raw (exercising the envelope path).
//! Nothing may panic, and whatever opens must pass validation again.
#![no_main]

use std::sync::LazyLock;

use cloister_authority::migrate::{BUNDLE_CONTENT_TYPE, open_bundle};
use cloister_seal::{Metadata, RecipientSecretKey};
use libfuzzer_sys::fuzz_target;

static SERVICE_KEY: LazyLock<RecipientSecretKey> =
    LazyLock::new(|| RecipientSecretKey::from_bytes(&[7u8; 32]));

fuzz_target!(|data: &[u8]| {
    let key = &*SERVICE_KEY;
    let _ = open_bundle(data, key);
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
    if let Ok(sealed) = cloister_seal::seal_to_vec(&[key.public_key()], &metadata, data)
        && let Ok(bundle) = open_bundle(&sealed, key)
    {
        assert!(bundle.validate().is_ok());
    }
});
