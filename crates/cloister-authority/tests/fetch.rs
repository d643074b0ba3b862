//! Fetching collateral over HTTP from a fake Intel PCS on loopback (CI has no network): the
//! service asks for exactly what the quote needs, caches it with the vendor's expiry, honours
//! `Retry-After`, and the fetched collateral is what the TDX driver then verifies with.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use cloister_authority::fetch::HttpFetcher;
use cloister_authority::service::{Service, ServiceError};
use cloister_authority::{AttestError, FetchError, VendorUrls};
use cloister_types::TeeKind;
use cloister_types::api::AttestRequest;
use cloister_verify::VerifyError;
use common::{service_with_instance, vector};

/// 2025-06-20T00:00:00Z, inside the sample collateral's window.
const NOW: i64 = 1_750_377_600;

/// A fake Intel PCS serving the TDX sample's collateral the way PCS does (issuer chains in
/// URL-encoded headers, CRLs in DER), counting requests; `busy` answers 429 with Retry-After.
#[derive(Clone)]
struct FakePcs {
    bundle: Arc<serde_json::Value>,
    requests: Arc<AtomicUsize>,
    busy: bool,
}

impl FakePcs {
    fn text(&self, name: &str) -> String {
        self.bundle[name].as_str().unwrap().to_owned()
    }
}

fn chain_header(name: &'static str, pem: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let encoded = percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC);
    headers.insert(name, HeaderValue::from_str(&encoded.to_string()).unwrap());
    headers
}

async fn tcb(
    State(pcs): State<FakePcs>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    pcs.requests.fetch_add(1, Ordering::SeqCst);
    if pcs.busy {
        return (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", "120")], "slow down")
            .into_response();
    }
    if q.get("fmspc").map(String::as_str) != Some("b0c06f000000") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = format!(
        r#"{{"tcbInfo":{},"signature":"{}"}}"#,
        pcs.text("tcb_info"),
        pcs.text("tcb_info_signature")
    );
    (chain_header("TCB-Info-Issuer-Chain", &pcs.text("tcb_info_issuer_chain")), body)
        .into_response()
}

async fn qe_identity(State(pcs): State<FakePcs>) -> impl IntoResponse {
    pcs.requests.fetch_add(1, Ordering::SeqCst);
    let body = format!(
        r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
        pcs.text("qe_identity"),
        pcs.text("qe_identity_signature")
    );
    (chain_header("SGX-Enclave-Identity-Issuer-Chain", &pcs.text("qe_identity_issuer_chain")), body)
}

async fn pck_crl(State(pcs): State<FakePcs>) -> impl IntoResponse {
    pcs.requests.fetch_add(1, Ordering::SeqCst);
    let body = hex::decode(pcs.text("pck_crl")).unwrap();
    (chain_header("SGX-PCK-CRL-Issuer-Chain", &pcs.text("pck_crl_issuer_chain")), body)
}

async fn root_crl(State(pcs): State<FakePcs>) -> impl IntoResponse {
    pcs.requests.fetch_add(1, Ordering::SeqCst);
    hex::decode(pcs.text("root_ca_crl")).unwrap()
}

async fn start(busy: bool) -> (String, Arc<AtomicUsize>) {
    let bundle: serde_json::Value =
        serde_json::from_slice(&vector("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap();
    let pcs = FakePcs { bundle: Arc::new(bundle), requests: Arc::new(AtomicUsize::new(0)), busy };
    let requests = pcs.requests.clone();
    let app = axum::Router::new()
        .route("/tdx/certification/v4/tcb", get(tcb))
        .route("/tdx/certification/v4/qe/identity", get(qe_identity))
        .route("/sgx/certification/v4/pckcrl", get(pck_crl))
        .route("/IntelSGXRootCA.der", get(root_crl))
        .with_state(pcs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, requests)
}

async fn service(base: &str) -> (Arc<Service>, String) {
    let urls = VendorUrls {
        intel_api: base.to_owned(),
        intel_certificates: base.to_owned(),
        amd_kds: base.to_owned(),
        hygon_kds: base.to_owned(),
        google_status: format!("{base}/attestation/status"),
    };
    service_with_instance(NOW, Some(Box::new(HttpFetcher::new(urls).unwrap()))).await
}

async fn request(service: &Service, id: &str, now: i64) -> AttestRequest {
    common::request(service, id, now, TeeKind::Tdx, vector("tdx/dcapqvl_tdx_quote")).await
}

fn is_binding_mismatch(err: &ServiceError) -> bool {
    matches!(err, ServiceError::Attest(AttestError::Verify(VerifyError::ReportDataMismatch)))
}

#[tokio::test]
async fn missing_collateral_is_fetched_once_and_then_verifies_the_quote() {
    let (base, requests) = start(false).await;
    let (service, id) = service(&base).await;
    // Without collateral the quote verifies with tcb_status unknown; after the prefetch the
    // driver has a full set and reaches the binding check with Intel's verdict.
    let first = request(&service, &id, NOW).await;
    let failures = service.prefetch(&id, &first.evidence, NOW).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 4, "tcbInfo, QE identity, PCK CRL, root CRL");
    let err = service.attest(&id, &first, &[0; 32], NOW).await.unwrap_err();
    assert!(is_binding_mismatch(&err), "{err}");
    // What was fetched is a complete, genuine set: the TDX driver gives Intel's verdict with it.
    let cached = service.collateral().snapshot_by_tee();
    let anchors = cloister_verify::TrustAnchors::new();
    let inputs = cloister_verify::Inputs {
        collateral: &cached[&TeeKind::Tdx],
        anchors: &anchors,
        now_unix: NOW,
    };
    let claims = cloister_verify::verify_vendor_evidence(
        TeeKind::Tdx,
        &vector("tdx/dcapqvl_tdx_quote"),
        &inputs,
    )
    .unwrap();
    assert_eq!(claims.tcb_status, cloister_types::TcbStatus::UpToDate);

    // Evidence that answers no live challenge (here: the consumed one) makes no request.
    assert!(service.prefetch(&id, &first.evidence, 1_753_000_000).await.is_empty());
    assert_eq!(requests.load(Ordering::SeqCst), 4);

    // Cached until the vendor's nextUpdate: no new request.
    let second = request(&service, &id, NOW + 60).await;
    assert!(service.prefetch(&id, &second.evidence, NOW + 60).await.is_empty());
    assert_eq!(requests.load(Ordering::SeqCst), 4);

    // The cache holds the documents with their expiry and the issuer chains beside them.
    let snapshot = service.collateral().snapshot_at(NOW);
    assert_eq!(snapshot.documents.len(), 4);
    assert!(snapshot.certificates.len() >= 2);
    // After the tcbInfo's nextUpdate (2025-07-19T10:16:03Z) it is fetched again.
    let later = 1_753_000_000;
    let third = request(&service, &id, later).await;
    service.prefetch(&id, &third.evidence, later).await;
    assert!(requests.load(Ordering::SeqCst) > 4);
}

#[tokio::test]
async fn retry_after_is_honoured_for_the_whole_vendor() {
    let (base, requests) = start(true).await;
    let (service, id) = service(&base).await;
    let request = request(&service, &id, NOW).await;
    let failures = service.prefetch(&id, &request.evidence, NOW).await;
    assert!(
        failures.iter().any(|f| matches!(f, FetchError::RateLimited { retry_after: 120, .. })),
        "{failures:?}"
    );
    assert_eq!(failures.len(), 4, "every Intel item waits: {failures:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one request, then the back-off");
    // Within the back-off nothing is asked of Intel at all.
    assert_eq!(service.prefetch(&id, &request.evidence, NOW + 119).await.len(), 4);
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    // After it, the service asks again (for evidence answering a challenge that is live then).
    let mut fresh = request.clone();
    fresh.evidence.runtime_data.nonce = service.challenge(&id, NOW + 121).await.unwrap().nonce;
    service.prefetch(&id, &fresh.evidence, NOW + 121).await;
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    // Without collateral the quote still verifies its signatures and chain (TCB unknown), and
    // is refused at the binding check.
    let err = service.attest(&id, &request, &[0; 32], NOW).await.unwrap_err();
    assert!(is_binding_mismatch(&err), "{err}");
}

/// Over the service's own HTTP API on loopback: the attest route fetches the quote's collateral
/// from the fake PCS before verifying. The sample collateral expired in July 2025 and the route
/// uses the wall clock, so the refusal names the stale tcbInfo — which it can only do if the
/// fetched documents reached the TDX driver.
#[tokio::test]
async fn the_attest_route_fetches_collateral_before_verifying() {
    let (base, requests) = start(false).await;
    let (service, id) = service(&base).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/instances/{id}", listener.local_addr().unwrap());
    let router = cloister_authority::http::service_router(service.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let client = reqwest::Client::new();
    let challenge: cloister_types::api::ChallengeResponse =
        client.post(format!("{url}/challenge")).send().await.unwrap().json().await.unwrap();
    let mut body = request(&service, &id, cloister_sign::unix_now() as i64).await;
    body.evidence.runtime_data.nonce = challenge.nonce;
    let response = client.post(format!("{url}/attest")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: cloister_types::api::ErrorBody = response.json().await.unwrap();
    assert_eq!(error.code, "evidence_invalid");
    assert!(
        error.message.contains("tdx: collateral: tcbInfo expired at 2025-07-19T10:16:03Z"),
        "{}",
        error.message
    );
    assert_eq!(requests.load(Ordering::SeqCst), 4, "fetched through the route");
}

/// A fake AMD KDS serving the Milan VCEK of the trustee test report and the Milan ASK/ARK.
async fn start_kds() -> (String, Arc<AtomicUsize>) {
    #[derive(Clone)]
    struct Kds {
        vcek: Arc<Vec<u8>>,
        chain: Arc<Vec<u8>>,
        requests: Arc<AtomicUsize>,
    }
    async fn vcek(
        State(kds): State<Kds>,
        axum::extract::Path((product, _hwid)): axum::extract::Path<(String, String)>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        kds.requests.fetch_add(1, Ordering::SeqCst);
        let tcb_ok = q.get("blSPL").map(String::as_str) == Some("3")
            && q.get("ucodeSPL").map(String::as_str) == Some("115");
        if product != "Milan" || !tcb_ok {
            return StatusCode::NOT_FOUND.into_response();
        }
        kds.vcek.to_vec().into_response()
    }
    async fn cert_chain(
        State(kds): State<Kds>,
        axum::extract::Path(product): axum::extract::Path<String>,
    ) -> axum::response::Response {
        kds.requests.fetch_add(1, Ordering::SeqCst);
        if product != "Milan" {
            return StatusCode::NOT_FOUND.into_response();
        }
        kds.chain.to_vec().into_response()
    }
    let kds = Kds {
        vcek: Arc::new(vector("snp/trustee_test-vcek.der")),
        chain: Arc::new(vector("snp/milan_ask_ark_asvk.pem")),
        requests: Arc::new(AtomicUsize::new(0)),
    };
    let requests = kds.requests.clone();
    let app = axum::Router::new()
        .route("/vcek/v1/{product}/cert_chain", get(cert_chain))
        .route("/vcek/v1/{product}/{hwid}", get(vcek))
        .with_state(kds);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, requests)
}

/// SNP through a fake AMD KDS: the service asks for the VCEK of the report's chip and reported
/// TCB (for each product a v2 report could be; Genoa is not found), and the ASK/ARK; the SNP
/// driver then verifies the report with them and stops at the binding check.
#[tokio::test]
async fn snp_vcek_and_chain_are_fetched_from_the_kds() {
    let (base, requests) = start_kds().await;
    let (service, id) = service(&base).await;
    let report = vector("snp/trustee_test-report.bin");
    let mut request = common::request(&service, &id, NOW, TeeKind::Snp, report).await;
    let failures = service.prefetch(&id, &request.evidence, NOW).await;
    assert!(
        failures.iter().all(|f| matches!(f, FetchError::NotFound(k) if k.contains("Genoa"))),
        "{failures:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 4, "VCEK and chain for Milan and Genoa");
    let err = service.attest(&id, &request, &[0; 32], NOW).await.unwrap_err();
    assert!(is_binding_mismatch(&err), "{err}");
    // Cached: the next report of this chip asks for nothing.
    request.evidence.runtime_data.nonce = service.challenge(&id, NOW + 60).await.unwrap().nonce;
    service.prefetch(&id, &request.evidence, NOW + 60).await;
    assert_eq!(requests.load(Ordering::SeqCst), 6, "only the not-found Genoa items are retried");
}

/// A fake Google status endpoint serving `list` and counting requests.
async fn start_google(list: serde_json::Value) -> (String, Arc<AtomicUsize>) {
    #[derive(Clone)]
    struct Google {
        list: Arc<serde_json::Value>,
        requests: Arc<AtomicUsize>,
    }
    async fn status(State(google): State<Google>) -> axum::response::Response {
        google.requests.fetch_add(1, Ordering::SeqCst);
        axum::Json((*google.list).clone()).into_response()
    }
    let google = Google { list: Arc::new(list), requests: Arc::new(AtomicUsize::new(0)) };
    let requests = google.requests.clone();
    let app = axum::Router::new().route("/attestation/status", get(status)).with_state(google);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, requests)
}

/// Google's TEE example chain (leaf first, then the pinned RSA root of 2016), as a JSON array.
fn android_chain() -> (Vec<u8>, String) {
    use base64::Engine as _;
    let certs: Vec<Vec<u8>> = (0..4)
        .map(|i| vector(&format!("android/gakatt_EC_SecurityLevel_TEE_cert{i}.der")))
        .collect();
    let leaf = cloister_verify::x509::Cert::from_der(&certs[0]).unwrap();
    let serial = cloister_verify::android::status::serial_hex(leaf.serial_bytes());
    let encoded: Vec<String> =
        certs.iter().map(|c| base64::engine::general_purpose::STANDARD.encode(c)).collect();
    (serde_json::to_vec(&encoded).unwrap(), serial)
}

/// Android evidence needs Google's revocation status list: the service fetches it once, the
/// verifier checks the chain against it (a revoked leaf is refused, naming its serial; an
/// unlisted one goes on to the binding check).
#[tokio::test]
async fn the_android_status_list_is_fetched_and_a_revoked_key_is_refused() {
    let (chain, serial) = android_chain();
    let clean = serde_json::json!({ "entries": { "1234": { "status": "REVOKED" } } });
    let (base, requests) = start_google(clean).await;
    let (service, id) = service(&base).await;
    let request = common::request(&service, &id, NOW, TeeKind::Android, chain.clone()).await;
    let failures = service.prefetch(&id, &request.evidence, NOW).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    // Verified, revocation included, up to the binding: the public chain's challenge is "abc".
    let err = service.attest(&id, &request, &[0; 32], NOW).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::Attest(AttestError::Verify(VerifyError::ReportDataLength(3)))),
        "{err}"
    );
    // Cached: the next device asks for nothing.
    let again = common::request(&service, &id, NOW + 60, TeeKind::Android, chain.clone()).await;
    service.prefetch(&id, &again.evidence, NOW + 60).await;
    assert_eq!(requests.load(Ordering::SeqCst), 1);

    let revoked = serde_json::json!({
        "entries": { serial.clone(): { "status": "REVOKED", "reason": "KEY_COMPROMISE" } }
    });
    let (base, _) = start_google(revoked).await;
    let (strict, id) = self::service(&base).await;
    let request = common::request(&strict, &id, NOW, TeeKind::Android, chain).await;
    strict.prefetch(&id, &request.evidence, NOW).await;
    let err = strict.attest(&id, &request, &[0; 32], NOW).await.unwrap_err().to_string();
    assert!(err.contains(&serial) && err.contains("REVOKED"), "{err}");
}
