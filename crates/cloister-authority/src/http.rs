//! The attestation service's HTTP API (axum) and the one place where errors become responses.
//!
//! [`service_router`] serves the multi-tenant [`Service`]; its routes are listed in [`ROUTES`]
//! and described in the OpenAPI document it serves at `/openapi.json`. Every request passes the
//! authentication middleware first (a bearer token that is not ours is refused before any
//! handler runs), and handlers get the caller only through the [`Caller`] extractor, which fails
//! closed when the middleware did not run.
//!
//! The web console's static files (`/ui/`, [`crate::console`]) are merged in after the
//! middleware: they are public, carry no data, and the console calls the same routes with the
//! same bearer tokens.
//!
//! The routes an enclave acts on (`attest`, `jobs`, `privacy-charges`) read the body as bytes
//! and hand its SHA-256 to the service, which signs its answer over it.

use std::sync::Arc;

use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State,
};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cloister_policy::Principal;
use cloister_sign::unix_now;
use cloister_types::api::{
    AttestRequest, AttestResponse, ChallengeResponse, DatasetRegistered, ErrorBody, GrantRevoked,
    InstanceInfo, KeyReleaseRequest, KeyReleaseResponse, RecordJob, RegisterDataset, RevokeGrant,
    ServiceKeyDocument, SignedAnswer,
};
use cloister_types::manage::{
    AuditQuery, AuditRecordView, CreateInstance, CreateTenant, ExportRequest, InstanceView,
    KeyView, PolicySpec, PolicyUpdated, PolicyVersionView, RegisterKey, TenantCreated, TenantView,
    TrustAnchorSpec,
};

use crate::broker::ReleaseError;
use crate::rate::{Limiter, RateLimits, RouteClass, TrustedProxy};
use crate::service::{Service, ServiceError};
use crate::{AttestError, NonceError};

/// Largest accepted request body: evidence with collateral fits comfortably.
const MAX_BODY: usize = 1 << 20;

/// An attestation failure as an HTTP response: one status and one code per kind. Messages describe
/// the caller's own submission; internal failures get a fixed message and details go to the log.
fn attest_error_response(error: &AttestError) -> Response {
    let (status, code, message) = match error {
        AttestError::Nonce(NonceError::Exhausted) => {
            (StatusCode::SERVICE_UNAVAILABLE, "busy", error.to_string())
        }
        AttestError::Nonce(_) => (StatusCode::UNAUTHORIZED, "bad_nonce", error.to_string()),
        AttestError::Verify(_)
        | AttestError::TlsKeyMismatch
        | AttestError::SuiteMismatch { .. }
        | AttestError::BadReceiptKey(_)
        | AttestError::OtherService { .. }
        | AttestError::NoServiceNamed { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "evidence_invalid", error.to_string())
        }
        AttestError::Rejected { .. } => {
            (StatusCode::FORBIDDEN, "policy_rejected", error.to_string())
        }
        // The instance's own policy failed (a runtime error, or over its time limit): the
        // evidence is refused, as fail-closed requires; the tenant's message says why.
        AttestError::Policy(_) => (StatusCode::FORBIDDEN, "policy_failed", error.to_string()),
        AttestError::Issue(_) => {
            tracing::error!(%error, "internal attestation failure");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the attestation service failed internally; see its log".to_owned(),
            )
        }
    };
    (status, Json(ErrorBody { code: code.to_owned(), message })).into_response()
}

// ---- the multi-tenant service ------------------------------------------------------------

/// Every route of [`service_router`]: method, path, who may call it. The OpenAPI document and
/// the route-by-route authorization tests are checked against this list.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "anyone"),
    ("GET", "/readyz", "anyone"),
    ("GET", "/metrics", "anyone"),
    ("GET", "/openapi.json", "anyone"),
    ("GET", "/v1/service-key", "anyone"),
    ("POST", "/v1/service-key/challenge", "anyone"),
    ("POST", "/v1/tenants", "operator"),
    ("GET", "/v1/tenants", "operator"),
    ("POST", "/v1/instances", "tenant"),
    ("GET", "/v1/instances", "tenant"),
    ("POST", "/v1/instances/import", "tenant"),
    ("GET", "/v1/instances/{id}", "owner"),
    ("DELETE", "/v1/instances/{id}", "owner"),
    ("PUT", "/v1/instances/{id}/policy", "owner"),
    ("GET", "/v1/instances/{id}/policy/{version}", "owner"),
    ("PUT", "/v1/instances/{id}/reference-values", "owner"),
    ("PUT", "/v1/instances/{id}/trust-anchors", "owner"),
    ("POST", "/v1/instances/{id}/rotate", "owner"),
    ("POST", "/v1/instances/{id}/export", "owner"),
    ("POST", "/v1/instances/{id}/challenge", "anyone"),
    ("POST", "/v1/instances/{id}/attest", "anyone"),
    ("GET", "/v1/instances/{id}/info", "anyone"),
    ("GET", "/v1/instances/{id}/jwks.json", "anyone"),
    ("POST", "/v1/instances/{id}/jobs", "anyone (an enclave's signed statement)"),
    ("POST", "/v1/instances/{id}/privacy-charges", "anyone (an enclave's signed statement)"),
    ("POST", "/v1/instances/{id}/usage-reservations", "anyone (an enclave's signed statement)"),
    ("POST", "/v1/instances/{id}/request-reservations", "anyone (an enclave's signed statement)"),
    ("POST", "/v1/datasets", "anyone (an owner's signed statement)"),
    ("POST", "/v1/grants/revoke", "anyone (an owner's signed statement)"),
    ("POST", "/v1/keys", "tenant"),
    ("GET", "/v1/keys", "tenant"),
    ("POST", "/v1/keys/release", "anyone"),
    ("GET", "/v1/keys/{id}", "owner"),
    ("POST", "/v1/keys/{id}/revoke", "owner"),
    ("GET", "/v1/audit", "operator or tenant"),
    ("GET", "/v1/audit/chain", "operator"),
    ("POST", "/v1/owners/challenge", "anyone"),
    ("POST", "/v1/owners/sessions", "anyone (an owner's signed statement)"),
    ("GET", "/v1/owners/me", "data owner (session)"),
    ("POST", "/v1/receipts/explain", "anyone"),
];

/// The OpenAPI document `/openapi.json` serves.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Largest migration bundle accepted.
const MAX_BUNDLE: usize = 4 << 20;

type Shared = Arc<Service>;

/// How the HTTP layer guards the service: per-caller rate limits and the proxies whose
/// `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// Rate limits per route class.
    pub rate_limits: RateLimits,
    /// Proxies in front of the service (none by default: the TCP peer is the client).
    pub trusted_proxies: Vec<TrustedProxy>,
}

/// The multi-tenant service's routes with the default [`HttpOptions`].
pub fn service_router(service: Shared) -> Router {
    service_router_with(service, &HttpOptions::default())
}

/// The multi-tenant service's routes. Serve them with `ConnectInfo<SocketAddr>` (axum's
/// `into_make_service_with_connect_info`, or an extension per connection) so that anonymous
/// callers are limited by address; without it they share one limit.
pub fn service_router_with(service: Shared, options: &HttpOptions) -> Router {
    let guard = Guard {
        service: service.clone(),
        limiter: Limiter::new(&options.rate_limits),
        trusted: Arc::new(options.trusted_proxies.clone()),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/service-key", get(service_key))
        .route("/v1/service-key/challenge", post(service_key_challenge))
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/instances", post(create_instance).get(list_instances))
        .route(
            "/v1/instances/import",
            post(import_instance).layer(DefaultBodyLimit::max(MAX_BUNDLE)),
        )
        .route("/v1/instances/{id}", get(show_instance).delete(delete_instance))
        .route("/v1/instances/{id}/policy", put(update_policy))
        .route("/v1/instances/{id}/policy/{version}", get(policy_version))
        .route("/v1/instances/{id}/reference-values", put(set_reference_values))
        .route("/v1/instances/{id}/trust-anchors", put(set_trust_anchors))
        .route("/v1/instances/{id}/rotate", post(rotate))
        .route("/v1/instances/{id}/export", post(export_instance))
        .route("/v1/instances/{id}/challenge", post(instance_challenge))
        .route("/v1/instances/{id}/attest", post(instance_attest))
        .route("/v1/instances/{id}/info", get(instance_info))
        .route("/v1/instances/{id}/jwks.json", get(instance_jwks))
        .route("/v1/instances/{id}/jobs", post(record_job))
        .route("/v1/instances/{id}/privacy-charges", post(charge_privacy))
        .route("/v1/instances/{id}/usage-reservations", post(reserve_usage))
        .route("/v1/instances/{id}/request-reservations", post(reserve_requests))
        .route("/v1/datasets", post(register_dataset))
        .route("/v1/grants/revoke", post(revoke_grant))
        .route("/v1/keys", post(register_key).get(list_keys))
        .route("/v1/keys/release", post(release_key))
        .route("/v1/keys/{id}", get(show_key))
        .route("/v1/keys/{id}/revoke", post(revoke_key))
        .route("/v1/audit", get(audit))
        .route("/v1/audit/chain", get(audit_chain))
        .route("/v1/owners/challenge", post(owner_challenge))
        .route("/v1/owners/sessions", post(owner_sign_in))
        .route("/v1/owners/me", get(owner_view))
        .route("/v1/receipts/explain", post(explain_receipt))
        .layer(middleware::from_fn(refuse_nul))
        .layer(middleware::from_fn_with_state(guard, limit_rate))
        .layer(middleware::from_fn_with_state(service.clone(), authenticate))
        .layer(middleware::from_fn_with_state(service.clone(), count_request))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .merge(crate::console::router())
        .with_state(service)
}

/// The authenticated caller. Only the authentication middleware puts it in the request; a
/// handler on a router without that middleware refuses every request.
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!("a route ran without the authentication middleware");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "authentication did not run",
            )
        })
    }
}

async fn authenticate(State(service): State<Shared>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(AUTHORIZATION).map(|value| value.to_str());
    let bearer = match header {
        None => None,
        Some(Ok(value)) => match value.strip_prefix("Bearer ") {
            Some(token) => Some(token.trim().to_owned()),
            None => {
                return error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the Authorization header must be `Bearer <token>`",
                );
            }
        },
        Some(Err(_)) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the Authorization header is not ASCII",
            );
        }
    };
    match service.authenticate(bearer.as_deref(), now()).await {
        Ok(principal) => {
            request.extensions_mut().insert(Caller(principal));
            next.run(request).await
        }
        Err(error) => ServiceApiError(error).into_response(),
    }
}

/// What the rate-limiting middleware needs.
#[derive(Clone)]
struct Guard {
    service: Shared,
    limiter: Limiter,
    trusted: Arc<Vec<TrustedProxy>>,
}

/// Counts the request against its class's limit for its caller (after authentication, so that
/// a tenant's requests count as the tenant's); `429` with `Retry-After` over the limit.
async fn limit_rate(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let Some(class) =
        route.as_deref().and_then(|r| RouteClass::of_route(request.method().as_str(), r))
    else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    let addr = crate::rate::client_address(peer, request.headers(), &guard.trusted);
    let instance =
        request.uri().path().strip_prefix("/v1/instances/").and_then(|rest| rest.split('/').next());
    let who = request.extensions().get::<Caller>().map_or(Principal::Anonymous, |c| c.0.clone());
    let key = crate::rate::rate_key(class, &who, instance, addr);
    if let Err(wait) = guard.limiter.check(class, &key) {
        guard.service.metrics().rate_limited(class.as_str());
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!(
                "too many {class} requests from this caller; retry after {} s",
                seconds.max(1)
            ),
        );
        if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.max(1).to_string()) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        return response;
    }
    next.run(request).await
}

/// Refuses a NUL character in the query or in a JSON body (raw, or escaped as `\u0000`) with
/// 400, on every backend alike: PostgreSQL cannot store one in text and answered 500 where
/// SQLite stored it (red team, round 8), so a policy or name accepted on one backend could not
/// move to the other. Runs after authentication and rate limiting, on bodies within the limit.
async fn refuse_nul(request: Request, next: Next) -> Response {
    let refused = |what: &str| {
        error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("the {what} contains a NUL character, which no field may hold"),
        )
    };
    let query = request.uri().query().unwrap_or_default();
    if query.to_ascii_lowercase().contains("%00") {
        return refused("query");
    }
    // Path parameters too (red team, round 9: `/v1/instances/in_%00/jwks.json` was a 500 on
    // PostgreSQL for anyone).
    if request.uri().path().to_ascii_lowercase().contains("%00") {
        return refused("path");
    }
    // What axum's JSON extractor takes: `application/json` and any `application/…+json`
    // (round 10 sent a NUL as `application/vnd.x+json`).
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .is_some_and(|essence| {
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        });
    if !is_json {
        return next.run(request).await;
    }
    // No more than the route's own body limit is ever buffered here.
    let limit = if request.uri().path() == "/v1/instances/import" { MAX_BUNDLE } else { MAX_BODY };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is larger than the service accepts",
        );
    };
    if json_holds_nul(&bytes) {
        return refused("request body");
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// Whether JSON text holds a NUL character: a raw 0x00 byte, or a `\u0000` escape (an escaped
/// backslash followed by `u0000` is not one).
fn json_holds_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            0 => return true,
            b'\\' => {
                if json.get(i + 1) == Some(&b'u') && json.get(i + 2..i + 6) == Some(b"0000") {
                    return true;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

async fn count_request(State(service): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    service.metrics().request(&route, response.status().as_u16(), started.elapsed());
    response
}

fn now() -> i64 {
    unix_now() as i64
}

async fn readyz(State(service): State<Shared>) -> Response {
    match service.store().ping().await {
        Ok(()) => "ready".into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database does not answer",
            )
        }
    }
}

async fn metrics(State(service): State<Shared>) -> Response {
    service.metrics().set_collateral_expiry(service.collateral().earliest_expiry());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], service.metrics().render()).into_response()
}

async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn service_key(State(service): State<Shared>) -> Json<ServiceKeyDocument> {
    Json(service.service_key_document())
}

async fn service_key_challenge(
    State(service): State<Shared>,
    Json(body): Json<cloister_types::api::ServiceChallenge>,
) -> ApiResult<Json<ServiceKeyDocument>> {
    Ok(Json(service.challenged_service_document(&body.nonce).await?))
}

type ApiResult<T> = Result<T, ServiceApiError>;

async fn create_tenant(
    State(service): State<Shared>,
    Caller(who): Caller,
    Json(body): Json<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantCreated>)> {
    Ok((StatusCode::CREATED, Json(service.create_tenant(&who, &body, now()).await?)))
}

async fn list_tenants(
    State(service): State<Shared>,
    Caller(who): Caller,
) -> ApiResult<Json<Vec<TenantView>>> {
    Ok(Json(service.list_tenants(&who, now()).await?))
}

async fn create_instance(
    State(service): State<Shared>,
    Caller(who): Caller,
    Json(body): Json<CreateInstance>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((StatusCode::CREATED, Json(service.create_instance(&who, &body, now()).await?)))
}

async fn list_instances(
    State(service): State<Shared>,
    Caller(who): Caller,
) -> ApiResult<Json<Vec<InstanceView>>> {
    Ok(Json(service.list_instances(&who, now()).await?))
}

async fn show_instance(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<InstanceView>> {
    Ok(Json(service.show_instance(&who, &id, now()).await?))
}

async fn delete_instance(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service.delete_instance(&who, &id, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_policy(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Json(body): Json<PolicySpec>,
) -> ApiResult<Json<PolicyUpdated>> {
    Ok(Json(service.update_policy(&who, &id, &body, now()).await?))
}

async fn policy_version(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path((id, version)): Path<(String, i64)>,
) -> ApiResult<Json<PolicyVersionView>> {
    Ok(Json(service.policy_version(&who, &id, version, now()).await?))
}

async fn set_reference_values(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Json<InstanceView>> {
    Ok(Json(service.set_reference_values(&who, &id, &body, now()).await?))
}

async fn set_trust_anchors(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Json(body): Json<TrustAnchorSpec>,
) -> ApiResult<Json<InstanceView>> {
    Ok(Json(service.set_trust_anchors(&who, &id, &body, now()).await?))
}

async fn rotate(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<InstanceView>> {
    Ok(Json(service.rotate_keys(&who, &id, now()).await?))
}

async fn export_instance(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Json(body): Json<ExportRequest>,
) -> ApiResult<Response> {
    let target: ServiceKeyDocument = serde_json::from_value(body.target).map_err(|e| {
        ServiceApiError(ServiceError::BadRequest(format!(
            "target is not a service key document (GET /v1/service-key on the target): {e}"
        )))
    })?;
    let bundle = service
        .export_instance(
            &who,
            &id,
            &target,
            &body.target_tenant,
            body.allow_unattested_target,
            now(),
        )
        .await?;
    Ok(([(CONTENT_TYPE, "application/octet-stream")], bundle).into_response())
}

async fn import_instance(
    State(service): State<Shared>,
    Caller(who): Caller,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((StatusCode::CREATED, Json(service.import_instance(&who, &body, now()).await?)))
}

async fn instance_challenge(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ChallengeResponse>> {
    let _ = who;
    Ok(Json(service.challenge(&id, now()).await?))
}

async fn instance_attest(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<AttestResponse>> {
    let _ = who;
    let (request, digest) = json_body::<AttestRequest>(&body)?;
    let tee = request.evidence.tee;
    let started = std::time::Instant::now();
    for failure in service.prefetch(&id, &request.evidence, now()).await {
        tracing::warn!(instance = %id, %tee, error = %failure, "collateral could not be fetched");
    }
    let result = service.attest(&id, &request, &digest, now()).await;
    service.metrics().attestation(tee.as_str(), result.is_ok(), started.elapsed());
    match &result {
        Ok(_) => tracing::info!(instance = %id, %tee, "attestation passed the appraisal policy"),
        Err(error) => tracing::warn!(instance = %id, %tee, %error, "attestation refused"),
    }
    Ok(Json(result?))
}

/// Parses a JSON request body and returns it with its SHA-256 (what a signed answer names).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(T, [u8; 32]), BadBody> {
    use sha2::Digest as _;
    let value = serde_json::from_slice(body).map_err(|e| BadBody(e.to_string()))?;
    Ok((value, sha2::Sha256::digest(body).into()))
}

/// A request body that is not the JSON the route takes.
struct BadBody(String);

impl From<BadBody> for ServiceApiError {
    fn from(bad: BadBody) -> Self {
        ServiceApiError(ServiceError::BadRequest(format!(
            "the request body is not valid: {}",
            bad.0
        )))
    }
}

async fn instance_info(
    State(service): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<InstanceInfo>> {
    Ok(Json(service.instance_info(&id, now()).await?))
}

async fn instance_jwks(
    State(service): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(service.jwks(&id, now()).await?))
}

async fn record_job(
    State(service): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<SignedAnswer>)> {
    let (request, digest) = json_body::<RecordJob>(&body)?;
    Ok((StatusCode::CREATED, Json(service.record_job(&id, &request, &digest, now()).await?)))
}

async fn charge_privacy(
    State(service): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<SignedAnswer>> {
    let (request, digest) = json_body::<RecordJob>(&body)?;
    Ok(Json(service.charge_privacy(&id, &request, &digest, now()).await?))
}

async fn reserve_usage(
    State(service): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<SignedAnswer>> {
    let (request, digest) = json_body::<RecordJob>(&body)?;
    Ok(Json(service.reserve_usage(&id, &request, &digest, now()).await?))
}

async fn reserve_requests(
    State(service): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<SignedAnswer>> {
    let (request, digest) = json_body::<RecordJob>(&body)?;
    Ok(Json(service.reserve_requests(&id, &request, &digest, now()).await?))
}

async fn register_dataset(
    State(service): State<Shared>,
    Json(request): Json<RegisterDataset>,
) -> ApiResult<Json<DatasetRegistered>> {
    Ok(Json(service.register_dataset(&request, now()).await?))
}

async fn revoke_grant(
    State(service): State<Shared>,
    Json(request): Json<RevokeGrant>,
) -> ApiResult<Json<GrantRevoked>> {
    Ok(Json(service.revoke_grant(&request, now()).await?))
}

async fn register_key(
    State(service): State<Shared>,
    Caller(who): Caller,
    Json(body): Json<RegisterKey>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    Ok((StatusCode::CREATED, Json(service.register_key(&who, &body, now()).await?)))
}

async fn list_keys(
    State(service): State<Shared>,
    Caller(who): Caller,
) -> ApiResult<Json<Vec<KeyView>>> {
    Ok(Json(service.list_keys(&who, now()).await?))
}

async fn show_key(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyView>> {
    Ok(Json(service.show_key(&who, &id, now()).await?))
}

async fn revoke_key(
    State(service): State<Shared>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyView>> {
    Ok(Json(service.revoke_key(&who, &id, now()).await?))
}

async fn release_key(
    State(service): State<Shared>,
    body: axum::body::Bytes,
) -> ApiResult<Json<KeyReleaseResponse>> {
    let (request, digest) = json_body::<KeyReleaseRequest>(&body)?;
    let result = service.release_key_answering(&request, &digest, now()).await;
    service.metrics().key_release(result.is_ok());
    match &result {
        Ok(_) => tracing::info!(key_id = %request.key_id, "key released"),
        Err(error) => tracing::warn!(key_id = %request.key_id, %error, "key release refused"),
    }
    Ok(Json(result?))
}

/// `GET /v1/audit?kind=&subject=&since=&until=&after=&limit=`: one page of the log.
async fn audit(
    State(service): State<Shared>,
    Caller(who): Caller,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<AuditRecordView>>> {
    let axum::extract::Query(query) = query.map_err(|e| {
        ServiceApiError(ServiceError::BadRequest(format!(
            "the query is not valid: {} (kind, subject, since, until, after, limit)",
            e.body_text()
        )))
    })?;
    Ok(Json(service.audit_page(&who, &query, now()).await?))
}

async fn audit_chain(
    State(service): State<Shared>,
    Caller(who): Caller,
) -> ApiResult<Json<cloister_types::manage::AuditChainView>> {
    Ok(Json(service.audit_chain(&who, now()).await?))
}

async fn owner_challenge(
    State(service): State<Shared>,
) -> ApiResult<Json<cloister_types::api::OwnerChallenge>> {
    Ok(Json(service.owner_challenge(now())?))
}

async fn owner_sign_in(
    State(service): State<Shared>,
    Json(request): Json<cloister_types::api::OwnerSignIn>,
) -> ApiResult<Json<cloister_types::api::OwnerSession>> {
    Ok(Json(service.owner_sign_in(&request, now()).await?))
}

async fn owner_view(
    State(service): State<Shared>,
    Caller(who): Caller,
) -> ApiResult<Json<cloister_types::api::OwnerView>> {
    Ok(Json(service.owner_view(&who, now()).await?))
}

async fn explain_receipt(
    State(service): State<Shared>,
    body: axum::body::Bytes,
) -> ApiResult<Json<cloister_types::api::ReceiptExplanation>> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ServiceError::BadRequest(format!("the body is not JSON: {e}")))?;
    // A sharded job's combined receipt has a plan; a single job's status has a job id.
    if value.get("plan").is_some() {
        let combined: cloister_types::batch::CombinedReceipt = serde_json::from_value(value)
            .map_err(|e| {
                ServiceError::BadRequest(format!(
                    "not a combined receipt as `cloister job fetch --job PLAN` keeps it: {e}"
                ))
            })?;
        return Ok(Json(service.explain_combined(&combined, now()).await));
    }
    let status: cloister_types::batch::BatchStatus =
        serde_json::from_value(value).map_err(|e| {
            ServiceError::BadRequest(format!(
                "not a done batch job's status as `cloister job status ID --json` prints it: {e}"
            ))
        })?;
    Ok(Json(service.explain_receipt(&status, now()).await))
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(ErrorBody { code: code.to_owned(), message: message.to_owned() })).into_response()
}

/// A service failure as an HTTP response: one status and code per kind; internal failures get a
/// fixed message and their detail goes to the log only.
pub struct ServiceApiError(pub ServiceError);

impl From<ServiceError> for ServiceApiError {
    fn from(error: ServiceError) -> Self {
        ServiceApiError(error)
    }
}

impl IntoResponse for ServiceApiError {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        let (status, code) = match &self.0 {
            ServiceError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ServiceError::Denied(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ServiceError::Token(_) => (StatusCode::UNAUTHORIZED, "bad_attestation_result"),
            ServiceError::SignIn(_) => (StatusCode::UNAUTHORIZED, "sign_in_refused"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServiceError::Attest(error) => return attest_error_response(error),
            ServiceError::Release(ReleaseError::CollateralChanged { .. }) => {
                (StatusCode::CONFLICT, cloister_types::api::COLLATERAL_CHANGED)
            }
            ServiceError::Release(_) => (StatusCode::FORBIDDEN, "release_refused"),
            ServiceError::Bundle(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bundle_refused"),
            ServiceError::UnknownCheckpoint(_) => {
                (StatusCode::CONFLICT, cloister_types::api::UNKNOWN_CHECKPOINT)
            }
            ServiceError::AuditLogAltered(_) => {
                // The reason names entry numbers of a log shared by every tenant: the operator's
                // log gets it, the caller gets the code.
                tracing::error!(error = %self.0, "refused: the audit log was altered");
                return error_response(
                    StatusCode::CONFLICT,
                    cloister_types::api::AUDIT_LOG_ALTERED,
                    "the attestation service's audit log was altered in its database, so it \
                     signs no checkpoint and gives no answer that needs one; its operator must \
                     restore the database (the service's log names the entries)",
                );
            }
            ServiceError::WrongServiceKey { .. }
            | ServiceError::WrongAuditKey { .. }
            | ServiceError::Store(_)
            | ServiceError::Internal(_) => {
                tracing::error!(error = %self.0, "internal service failure");
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the attestation service failed internally; see its log",
                );
            }
        };
        error_response(status, code, &message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_routes_served() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let mut described = 0;
        for (path, operations) in paths {
            described += operations.as_object().map_or(0, |ops| ops.len());
            for method in operations.as_object().into_iter().flat_map(|ops| ops.keys()) {
                let known =
                    ROUTES.iter().any(|(m, p, _)| p == path && m.eq_ignore_ascii_case(method));
                assert!(known, "openapi.json describes {method} {path}, which is not served");
            }
        }
        for (method, path, who) in ROUTES {
            let operation = &doc["paths"][path][method.to_ascii_lowercase()];
            assert!(operation.is_object(), "{method} {path} is served but not described");
            let secured = operation.get("security").is_some();
            let public = who.starts_with("anyone");
            assert_eq!(secured, !public, "{method} {path}: security does not match {who:?}");
        }
        assert_eq!(described, ROUTES.len());
    }

    #[test]
    fn every_operation_in_the_openapi_document_has_its_own_operation_id() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut seen = std::collections::BTreeSet::new();
        for (path, operations) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                let id = operation["operationId"].as_str().unwrap_or_default();
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(seen.insert(id.to_owned()), "{method} {path}: operationId {id} is taken");
            }
        }
        assert_eq!(seen.len(), ROUTES.len());
    }

    /// The router of a fresh service on an in-memory database.
    async fn fresh_router() -> Router {
        let store = crate::store::Store::connect("sqlite::memory:").await.expect("store");
        let service = Service::open(store, cloister_seal::RecipientSecretKey::generate())
            .await
            .expect("service");
        service_router(Arc::new(service))
    }

    /// Sends `request` to `app`: the status and the body.
    async fn send(app: &Router, request: Request) -> (StatusCode, axum::body::Bytes) {
        let response = tower::ServiceExt::oneshot(app.clone(), request).await.expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, body)
    }

    #[test]
    fn every_listed_route_is_routed_and_authenticated() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let app = fresh_router().await;
            let call = |method: &str, uri: &str, token: Option<&str>| {
                let mut request = axum::http::Request::builder().method(method).uri(uri);
                if let Some(token) = token {
                    request = request.header(AUTHORIZATION, format!("Bearer {token}"));
                }
                let request = request.body(axum::body::Body::empty()).expect("request");
                let app = app.clone();
                async move { send(&app, request).await }
            };
            // The router's own answer to a path it does not serve: 404 with no body.
            let (status, body) = call("GET", "/v1/nowhere", None).await;
            assert_eq!((status, body.is_empty()), (StatusCode::NOT_FOUND, true));
            for (method, path, _) in ROUTES {
                let uri = path.replace("{id}", "x").replace("{version}", "1");
                let (status, body) = call(method, &uri, None).await;
                assert!(
                    !(status == StatusCode::NOT_FOUND && body.is_empty()),
                    "{method} {uri} is listed but not routed"
                );
                // A token that is not ours is refused before any handler runs.
                let (status, _) = call(method, &uri, Some("clt_forged")).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
            }
        });
    }

    #[test]
    fn nul_characters_are_found_raw_or_escaped_and_nothing_else_is() {
        for json in [&br#"{"a":"x\u0000y"}"#[..], b"{\"a\":\"\0\"}", br#"["\\\u0000"]"#] {
            assert!(json_holds_nul(json), "{}", String::from_utf8_lossy(json));
        }
        for json in [&br#"{"a":"\\u0000"}"#[..], br#"{"a":"\u0001 \n u0000"}"#, br#"["\"]"#] {
            assert!(!json_holds_nul(json), "{}", String::from_utf8_lossy(json));
        }
    }

    /// Red team, round 8: a NUL in a JSON field or the query was stored on SQLite and made
    /// PostgreSQL answer 500; every backend now refuses it with 400 before a handler runs.
    #[test]
    fn a_nul_in_a_body_or_query_is_a_bad_request_on_every_backend() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let app = fresh_router().await;
            let call = |uri: &str, body: &'static str| {
                let request = axum::http::Request::builder()
                    .method("POST")
                    .uri(uri)
                    .header(CONTENT_TYPE, "application/json")
                    .body(axum::body::Body::from(body))
                    .expect("request");
                let app = app.clone();
                async move {
                    let (status, body) = send(&app, request).await;
                    (status, String::from_utf8_lossy(&body).into_owned())
                }
            };
            let nul = r#"{"owner":"a\u0000b","statement":"x"}"#;
            let (status, body) = call("/v1/datasets", nul).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(body.contains("NUL character"), "{body}");
            let (status, body) = call("/v1/datasets?x=%00", r#"{}"#).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            // As any JSON type the extractor takes (round 10: `application/vnd.x+json`).
            let request = axum::http::Request::builder()
                .method("POST")
                .uri("/v1/datasets")
                .header(CONTENT_TYPE, "application/vnd.x+json; charset=utf-8")
                .body(axum::body::Body::from(nul))
                .expect("request");
            let (status, _) = send(&app, request).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            // In a path parameter (red team, round 9), for anyone.
            let (status, body) = call("/v1/instances/in_%00/challenge", r#"{}"#).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            // The same request without the NUL reaches the handler (and fails there, otherwise).
            let (_, body) = call("/v1/datasets", r#"{"owner":"ab","statement":"x"}"#).await;
            assert!(!body.contains("NUL character"), "{body}");
        });
    }

    #[test]
    fn an_altered_audit_log_is_a_typed_conflict_that_names_no_entry() {
        let response = ServiceApiError(ServiceError::AuditLogAltered(
            "the log does not continue from entry 41: entry 42 was altered".into(),
        ))
        .into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let body = rt.block_on(axum::body::to_bytes(response.into_body(), 1 << 16)).expect("body");
        let body: ErrorBody = serde_json::from_slice(&body).expect("an error body");
        assert_eq!(body.code, cloister_types::api::AUDIT_LOG_ALTERED);
        assert!(!body.message.contains("41") && !body.message.contains("42"), "{}", body.message);
        assert!(body.message.contains("operator"), "{}", body.message);
    }
}
