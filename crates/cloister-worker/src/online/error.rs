//! Errors of the inner (OpenAI-compatible) API, answered as OpenAI-style JSON
//! (`{"error": {"message", "type", "param", "code"}}`). They travel encrypted like any answer.
//! Messages describe the request (model names, limits, which check failed), never its content.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use cloister_engine::EngineError;

/// Why an inner request was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnlineError {
    /// No valid `authorization: Cloister <JWS>` header.
    #[error("the request is not authorized: {0}")]
    Unauthenticated(String),
    /// The request's id was already used.
    #[error(
        "the request was refused as a replay: its signed request id was already used; sign \
         every request afresh"
    )]
    Replayed,
    /// No such model is loaded.
    #[error("the model {0:?} does not exist or is not loaded in this enclave")]
    ModelNotFound(String),
    /// The model owner's serving policy does not list this requester for this version.
    #[error(
        "the serving policy of model {model} does not allow requester {requester} to query this \
         version"
    )]
    NotPermitted {
        /// `name@version`.
        model: String,
        /// The requester's public key.
        requester: String,
    },
    /// The model owner's serving policy has expired.
    #[error(
        "the serving policy of model {model} expired at {expires_at} (Unix time); the model owner \
         must undeploy it and deploy it again under a new policy"
    )]
    PolicyExpired {
        /// `name@version`.
        model: String,
        /// Unix seconds it expired.
        expires_at: u64,
    },
    /// Too many requests per minute.
    #[error(
        "rate limit reached for model {model}: the serving policy allows {per_minute} requests \
         per minute for this requester; retry later"
    )]
    RateLimited {
        /// `name@version`.
        model: String,
        /// The allowance.
        per_minute: u32,
    },
    /// The requester's token quota is used up.
    #[error(
        "token quota exhausted for model {model}: the serving policy allows {quota} tokens for \
         this requester and {used} were used"
    )]
    QuotaExhausted {
        /// `name@version`.
        model: String,
        /// The quota.
        quota: u64,
        /// Used so far.
        used: u64,
    },
    /// The attestation service, which keeps the quota and rate counts, could not reserve
    /// tokens or requests.
    #[error(
        "the token quota or rate limit of model {model} could not be checked with the \
         attestation service ({reason}); retry later"
    )]
    QuotaUnavailable {
        /// `name@version`.
        model: String,
        /// Why.
        reason: String,
    },
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A request field outside OpenAI's API: refused rather than ignored.
    #[error(
        "unknown parameter {0}: this server refuses fields it does not know rather than ignore \
         them"
    )]
    UnknownParameter(String),
    /// A field of OpenAI's API this server does not implement, or not with the value given.
    #[error("{param} is not supported here: {reason}")]
    UnsupportedParameter {
        /// The field (`messages.[0].name` for a nested one).
        param: String,
        /// Why, or what is accepted.
        reason: String,
    },
    /// A field whose value is outside what it allows.
    #[error("invalid value for {param}: {reason}")]
    InvalidValue {
        /// The field.
        param: String,
        /// What it allows.
        reason: String,
    },
    /// The model exists but is served by another route.
    #[error("model {model} is not served by {route}; use {endpoint}")]
    WrongEndpoint {
        /// `name@version`.
        model: String,
        /// The route asked.
        route: &'static str,
        /// The route that serves it.
        endpoint: &'static str,
    },
    /// The engine refused or failed.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// Unknown route.
    #[error("no such route: {0}")]
    NotFound(String),
    /// Something failed inside the worker.
    #[error("the worker failed internally")]
    Internal,
}

/// Every `code` an [`OnlineError`] answers with (the worker's metrics count refusals by them,
/// each present from the start).
pub const CODES: [&str; 18] = [
    "invalid_authorization",
    "replayed_request",
    "model_not_found",
    "model_not_permitted",
    "rate_limit_exceeded",
    "insufficient_quota",
    "quota_unavailable",
    "invalid_request",
    "unknown_parameter",
    "unsupported_parameter",
    "invalid_value",
    "wrong_endpoint",
    "invalid_input",
    "context_length_exceeded",
    "offload_failed",
    "inference_failed",
    "unknown_route",
    "internal",
];

/// The code of a refused or failed inner request, carried in its response's extensions (never
/// on the wire) for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalCode(pub &'static str);

impl OnlineError {
    /// The error's `code` (one of [`CODES`]).
    pub fn code(&self) -> &'static str {
        self.parts().2
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            OnlineError::Unauthenticated(_) => {
                (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_authorization")
            }
            OnlineError::Replayed => {
                (StatusCode::UNAUTHORIZED, "authentication_error", "replayed_request")
            }
            OnlineError::ModelNotFound(_) => {
                (StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found")
            }
            OnlineError::NotPermitted { .. } => {
                (StatusCode::FORBIDDEN, "permission_error", "model_not_permitted")
            }
            OnlineError::PolicyExpired { .. } => {
                (StatusCode::FORBIDDEN, "permission_error", "serving_policy_expired")
            }
            OnlineError::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limit_exceeded")
            }
            OnlineError::QuotaExhausted { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota")
            }
            OnlineError::QuotaUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error", "quota_unavailable")
            }
            OnlineError::BadRequest(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request")
            }
            OnlineError::UnknownParameter(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "unknown_parameter")
            }
            OnlineError::UnsupportedParameter { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "unsupported_parameter")
            }
            OnlineError::InvalidValue { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_value")
            }
            OnlineError::WrongEndpoint { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "wrong_endpoint")
            }
            OnlineError::Engine(
                EngineError::InvalidData(_)
                | EngineError::SchemaMismatch(_)
                | EngineError::InvalidArgument(_),
            ) => (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_input"),
            OnlineError::Engine(EngineError::InputTooLong { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "context_length_exceeded")
            }
            OnlineError::Engine(EngineError::Offload { .. }) => {
                (StatusCode::BAD_GATEWAY, "server_error", "offload_failed")
            }
            OnlineError::Engine(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "inference_failed")
            }
            OnlineError::NotFound(_) => {
                (StatusCode::NOT_FOUND, "invalid_request_error", "unknown_route")
            }
            OnlineError::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal")
            }
        }
    }

    /// The request field the error is about, when it is about one.
    pub fn param(&self) -> Option<&str> {
        match self {
            OnlineError::UnknownParameter(param)
            | OnlineError::UnsupportedParameter { param, .. }
            | OnlineError::InvalidValue { param, .. } => Some(param.as_str()),
            _ => None,
        }
    }

    /// The JSON body OpenAI clients understand.
    pub fn body(&self) -> serde_json::Value {
        let (_, kind, code) = self.parts();
        serde_json::json!({
            "error": {
                "message": self.to_string(), "type": kind, "param": self.param(), "code": code
            }
        })
    }
}

impl IntoResponse for OnlineError {
    fn into_response(self) -> Response {
        let (status, _, code) = self.parts();
        // Only the code, at debug level: even refusals are the requester's business.
        tracing::debug!(status = status.as_u16(), code, "online request refused or failed");
        let mut response = (status, Json(self.body())).into_response();
        response.extensions_mut().insert(RefusalCode(code));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error answers with a code the metrics list (and so count from the start).
    #[test]
    fn every_code_is_listed() {
        let model = || "m@1".to_owned();
        let errors = [
            OnlineError::Unauthenticated(String::new()),
            OnlineError::Replayed,
            OnlineError::ModelNotFound(model()),
            OnlineError::NotPermitted { model: model(), requester: String::new() },
            OnlineError::RateLimited { model: model(), per_minute: 1 },
            OnlineError::QuotaExhausted { model: model(), quota: 1, used: 1 },
            OnlineError::QuotaUnavailable { model: model(), reason: String::new() },
            OnlineError::BadRequest(String::new()),
            OnlineError::UnknownParameter(String::new()),
            OnlineError::UnsupportedParameter { param: String::new(), reason: String::new() },
            OnlineError::InvalidValue { param: String::new(), reason: String::new() },
            OnlineError::WrongEndpoint { model: model(), route: "/a", endpoint: "/b" },
            OnlineError::Engine(EngineError::InvalidData(String::new())),
            OnlineError::Engine(EngineError::InputTooLong {
                input: String::new(),
                tokens: 2,
                limit: 1,
            }),
            OnlineError::Engine(EngineError::Offload {
                layer: String::new(),
                source: cloister_offload::OffloadError::Transport(String::new()),
            }),
            OnlineError::Engine(EngineError::Inference(String::new())),
            OnlineError::NotFound(String::new()),
            OnlineError::Internal,
        ];
        let mut seen = std::collections::BTreeSet::new();
        for error in errors {
            let code = error.code();
            assert!(CODES.contains(&code), "{code} is not in CODES");
            seen.insert(code);
            // The response carries the code for the metrics (never on the wire).
            let response = error.into_response();
            assert_eq!(response.extensions().get::<RefusalCode>(), Some(&RefusalCode(code)));
        }
        assert_eq!(seen.len(), CODES.len(), "{seen:?}");
    }
}
