//! The service on real vendor evidence: a TDX quote goes through the TDX driver with collateral
//! from the service's cache (an offline bundle), and is refused at the binding check — public
//! evidence cannot be bound to this test's fresh nonce and keys, which is exactly the point.

#![allow(clippy::unwrap_used)]

mod common;

use cloister_authority::AttestError;
use cloister_authority::service::ServiceError;
use cloister_types::{Base64Url, TeeKind};
use cloister_verify::VerifyError;
use common::{request, service_with_instance, vector};

/// 2025-06-20T00:00:00Z, inside the TDX sample collateral's window.
const IN_WINDOW: i64 = 1_750_377_600;
/// 2025-08-20T00:00:00Z, after the tcbInfo's nextUpdate.
const AFTER_WINDOW: i64 = 1_755_648_000;

fn bundle() -> Vec<u8> {
    let item = serde_json::json!({
        "vendor": "intel", "kind": "bundle", "id": "tdx/b0c06f000000", "type": "document",
        "expires_at": "2025-07-19T10:00:00Z",
        "data": Base64Url::encode(&vector("tdx/dcapqvl_tdx_quote_collateral.json")),
    });
    serde_json::to_vec(&serde_json::json!({"version": 1, "items": [item]})).unwrap()
}

#[tokio::test]
async fn tdx_quote_with_cached_collateral_reaches_the_binding_check() {
    let (service, id) = service_with_instance(IN_WINDOW, None).await;
    assert_eq!(service.collateral().load_bundle(&bundle()).unwrap(), 1);
    let quote = vector("tdx/dcapqvl_tdx_quote");
    let request = request(&service, &id, IN_WINDOW, TeeKind::Tdx, quote).await;
    let err = service.attest(&id, &request, &[0; 32], IN_WINDOW).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::Attest(AttestError::Verify(VerifyError::ReportDataMismatch))),
        "{err}"
    );
}

#[tokio::test]
async fn the_cached_collateral_is_really_used() {
    // After the tcbInfo's nextUpdate the same cache makes the TDX driver refuse the quote,
    // naming the stale document: the collateral reached the driver.
    let (service, id) = service_with_instance(AFTER_WINDOW, None).await;
    service.collateral().load_bundle(&bundle()).unwrap();
    let quote = vector("tdx/dcapqvl_tdx_quote");
    let request = request(&service, &id, AFTER_WINDOW, TeeKind::Tdx, quote).await;
    let err = service.attest(&id, &request, &[0; 32], AFTER_WINDOW).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("tdx: collateral: tcbInfo expired at 2025-07-19T10:16:03Z"), "{text}");
}
