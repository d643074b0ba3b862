//! The service on real vendor evidence: a TDX quote goes through the TDX driver with collateral
//! from the instance's cache (an offline bundle), and is refused at the binding check — public
//! evidence cannot be bound to this test's fresh nonce and keys, which is exactly the point.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use cloister_authority::{
    AttestError, Authority, CertificateAuthority, InstanceConfig, InstanceKeys,
};
use cloister_sign::SigningKey;
use cloister_types::api::AttestRequest;
use cloister_types::{Base64Url, Hex, RuntimeData, TeeKind, UnifiedEvidence};
use cloister_verify::VerifyError;

fn vector(relative: &str) -> Vec<u8> {
    let dir = match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    std::fs::read(dir.join(relative)).unwrap()
}

/// 2025-06-20T00:00:00Z, inside the TDX sample collateral's window.
const IN_WINDOW: u64 = 1_750_377_600;
/// 2025-08-20T00:00:00Z, after the tcbInfo's nextUpdate.
const AFTER_WINDOW: u64 = 1_755_648_000;

fn authority(now: u64) -> Authority {
    let config = InstanceConfig::from_toml("name = \"real\"\npolicy = \"default\"\n").unwrap();
    let keys = InstanceKeys {
        token_key: SigningKey::generate(),
        ca: CertificateAuthority::generate("real", now).unwrap(),
    };
    Authority::new(config, keys)
}

fn bundle() -> Vec<u8> {
    let item = serde_json::json!({
        "vendor": "intel", "kind": "bundle", "id": "tdx/b0c06f000000", "type": "document",
        "expires_at": "2025-07-19T10:00:00Z",
        "data": Base64Url::encode(&vector("tdx/dcapqvl_tdx_quote_collateral.json")),
    });
    serde_json::to_vec(&serde_json::json!({"version": 1, "items": [item]})).unwrap()
}

fn request(authority: &Authority, now: u64) -> AttestRequest {
    let nonce = authority.challenge(now).unwrap().nonce;
    let spki = b"not a real key, the request is refused before it matters".to_vec();
    let runtime_data = RuntimeData {
        nonce,
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(sha256(&spki)),
        receipt_pk: "receipt".into(),
        extra: Default::default(),
    };
    AttestRequest {
        evidence: UnifiedEvidence {
            version: 1,
            tee: TeeKind::Tdx,
            evidence: Base64Url(vector("tdx/dcapqvl_tdx_quote")),
            runtime_data,
            collateral: Default::default(),
            additional_evidence: Default::default(),
        },
        tls_spki: Base64Url(spki),
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

#[test]
fn tdx_quote_with_cached_collateral_reaches_the_binding_check() {
    let authority = authority(IN_WINDOW);
    assert_eq!(authority.collateral().load_bundle(&bundle()).unwrap(), 1);
    let err = authority.attest(&request(&authority, IN_WINDOW), IN_WINDOW).unwrap_err();
    assert!(matches!(err, AttestError::Verify(VerifyError::ReportDataMismatch)), "{err}");
}

#[test]
fn the_cached_collateral_is_really_used() {
    // After the tcbInfo's nextUpdate the same cache makes the TDX driver refuse the quote,
    // naming the stale document: the collateral reached the driver.
    let authority = authority(AFTER_WINDOW);
    authority.collateral().load_bundle(&bundle()).unwrap();
    let err = authority.attest(&request(&authority, AFTER_WINDOW), AFTER_WINDOW).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("tdx: collateral: tcbInfo expired at 2025-07-19T10:16:03Z"), "{text}");
}
