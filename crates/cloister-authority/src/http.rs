//! The attestation service's HTTP API (axum) and the one place where errors become responses.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/challenge` | a fresh single-use nonce |
//! | `POST /v1/attest` | unified evidence in, EAR token and enclave certificate out |
//! | `GET /v1/instance` | the instance CA, JWKS and policy id |
//! | `GET /.well-known/jwks.json` | the EAR token keys |
//! | `GET /healthz` | liveness |

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloister_sign::unix_now;
use cloister_types::api::{AttestRequest, ErrorBody};

use crate::{AttestError, Authority, NonceError};

/// Largest accepted request body: evidence with collateral fits comfortably.
const MAX_BODY: usize = 1 << 20;

/// The service's routes over one instance.
pub fn router(authority: Arc<Authority>) -> Router {
    Router::new()
        .route("/v1/challenge", post(challenge))
        .route("/v1/attest", post(attest))
        .route("/v1/instance", get(instance))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(authority)
}

async fn challenge(State(authority): State<Arc<Authority>>) -> Result<Response, ApiError> {
    let challenge = authority.challenge(unix_now()).map_err(AttestError::Nonce)?;
    Ok(Json(challenge).into_response())
}

async fn attest(
    State(authority): State<Arc<Authority>>,
    Json(request): Json<AttestRequest>,
) -> Result<Response, ApiError> {
    let tee = request.evidence.tee;
    for failure in authority.prefetch(&request.evidence, unix_now()).await {
        tracing::warn!(%tee, error = %failure, "collateral could not be fetched");
    }
    let result = authority.attest(&request, unix_now());
    match &result {
        Ok(_) => tracing::info!(%tee, "attestation passed the appraisal policy"),
        Err(error) => tracing::warn!(%tee, %error, "attestation refused"),
    }
    Ok(Json(result?).into_response())
}

async fn instance(
    State(authority): State<Arc<Authority>>,
) -> Json<cloister_types::api::InstanceInfo> {
    Json(authority.info())
}

async fn jwks(State(authority): State<Arc<Authority>>) -> Json<serde_json::Value> {
    Json(authority.jwks())
}

/// An attestation failure as an HTTP response: one status and one code per kind. Messages describe
/// the caller's own submission; internal failures get a fixed message and details go to the log.
pub struct ApiError(AttestError);

impl From<AttestError> for ApiError {
    fn from(error: AttestError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self.0 {
            AttestError::Nonce(NonceError::Exhausted) => {
                (StatusCode::SERVICE_UNAVAILABLE, "busy", self.0.to_string())
            }
            AttestError::Nonce(_) => (StatusCode::UNAUTHORIZED, "bad_nonce", self.0.to_string()),
            AttestError::Verify(_) | AttestError::TlsKeyMismatch => {
                (StatusCode::UNPROCESSABLE_ENTITY, "evidence_invalid", self.0.to_string())
            }
            AttestError::Rejected { .. } => {
                (StatusCode::FORBIDDEN, "policy_rejected", self.0.to_string())
            }
            AttestError::Policy(_) | AttestError::Issue(_) => {
                tracing::error!(error = %self.0, "internal attestation failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the attestation service failed internally; see its log".to_owned(),
                )
            }
        };
        (status, Json(ErrorBody { code: code.to_owned(), message })).into_response()
    }
}
