//! The inner, OpenAI-compatible router. It is reached only through [`crate::online::gateway`],
//! after decryption, and is never mounted on the outer router. Every request passes
//! [`authenticate_request`] first; handlers get the requester only through the [`Requester`]
//! extractor, which fails closed without it.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/models` | the models this requester may use |
//! | `GET /v1/models/{id}` | one of them (404 alike for a model missing or not usable) |
//! | `POST /v1/chat/completions` | chat, `stream: true` as server-sent events (language models) |
//! | `POST /v1/completions` | text completion of one prompt, streamed too (language models) |
//! | `POST /v1/embeddings` | `input` as a string or a list of strings (sentence encoders) |
//! | `POST /v1/infer` | `{model, inputs: {name: {shape, data}}}` → `{model, outputs}` (ONNX); a model under an offload policy adds `placement` (where each linear layer ran) and `verification` |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloister_engine::Placement;
use cloister_sign::unix_now;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroize as _;

use crate::online::authz::{self, Requester};
use crate::online::catalog::Engine;
use crate::online::error::OnlineError;
use crate::online::openai;
use crate::server::Worker;

/// Largest inner request body.
pub const MAX_INNER_BODY: usize = 16 << 20;

/// The inner router over the worker's catalog.
pub fn inner_router(worker: Arc<Worker>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/infer", post(infer))
        .fallback(
            |uri: axum::http::Uri| async move { OnlineError::NotFound(uri.path().to_owned()) },
        )
        .layer(middleware::from_fn_with_state(worker.clone(), authenticate_request))
        .with_state(worker)
}

/// Verifies the requester's signed authorization over this method, path and body, and hands the
/// verified [`Requester`] to the handler; anything else is answered with 401.
async fn authenticate_request(
    State(_): State<Arc<Worker>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_INNER_BODY).await else {
        return OnlineError::BadRequest(format!(
            "the request body is larger than {MAX_INNER_BODY} bytes"
        ))
        .into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match authz::authenticate(header, parts.method.as_str(), &path, &bytes, unix_now()) {
        Ok(requester) => {
            parts.extensions.insert(requester);
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        Err(error) => error.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Requester {
    type Rejection = OnlineError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Requester>().cloned().ok_or_else(|| {
            OnlineError::Unauthenticated("the request did not pass authentication".into())
        })
    }
}

/// Parses a JSON request body, answering a malformed one with an OpenAI-style 400.
pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, OnlineError> {
    serde_json::from_slice(body)
        .map_err(|e| OnlineError::BadRequest(format!("the request body is not valid: {e}")))
}

async fn models(
    State(worker): State<Arc<Worker>>,
    requester: Requester,
) -> Result<Json<serde_json::Value>, OnlineError> {
    let permitted: Vec<_> = worker
        .catalog
        .list()
        .into_iter()
        .filter(|m| authz::permits(m, &requester, unix_now()))
        .collect();
    if !permitted.is_empty() {
        authz::check_fresh(&worker.catalog, &requester, unix_now())?;
    }
    let data: Vec<serde_json::Value> = permitted
        .iter()
        .map(|model| {
            let mut entry = json!({
                "id": model.id(),
                "object": "model",
                "created": model.created(),
                "owned_by": model.serving_policy().owner(),
            });
            // A model under an offload policy says where each linear layer runs and what the
            // checks have caught; every other model runs entirely in the enclave.
            if let (Engine::Hybrid(hybrid), Some(fields)) = (model.engine(), entry.as_object_mut())
            {
                fields.insert("placement".to_owned(), json!(hybrid.layers()));
            }
            entry
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

#[derive(Deserialize)]
struct InferRequest {
    model: String,
    inputs: BTreeMap<String, TensorIn>,
}

#[derive(Deserialize)]
struct TensorIn {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Runs an ONNX model once. Each sample (the input's first dimension) counts as one token
/// against the requester's quota.
async fn infer(
    State(worker): State<Arc<Worker>>,
    requester: Requester,
    body: Bytes,
) -> Result<Json<serde_json::Value>, OnlineError> {
    let request: InferRequest = parse_body(&body)?;
    let admission = authz::admit(&worker, &requester, &request.model, unix_now()).await?;
    let model = admission.model().clone();
    let expected = match model.engine() {
        Engine::Onnx(onnx) => onnx.input().name.clone(),
        Engine::Hybrid(hybrid) => hybrid.input().name.clone(),
        Engine::Llm(_) | Engine::Embedder(_) => {
            return Err(OnlineError::WrongEndpoint {
                model: model.id(),
                route: "/v1/infer",
                endpoint: model.engine().endpoint(),
            });
        }
    };
    let mut inputs = request.inputs.into_iter();
    let (Some((name, tensor)), None) = (inputs.next(), inputs.next()) else {
        return Err(OnlineError::BadRequest(format!(
            "model {} takes exactly one input, named {expected:?}",
            model.id()
        )));
    };
    if name != expected {
        return Err(OnlineError::BadRequest(format!(
            "model {} has no input {name:?}; its input is named {expected:?}",
            model.id()
        )));
    }
    let samples = tensor.shape.first().copied().unwrap_or(0) as u64;
    let allowed = admission.reserve(&worker, samples).await?;
    if allowed < samples {
        let quota = model
            .serving_policy()
            .policy()
            .requesters
            .iter()
            .find(|r| r.requester == requester.key())
            .and_then(|r| r.token_quota)
            .unwrap_or(0);
        return Err(OnlineError::QuotaExhausted {
            model: model.id(),
            quota,
            used: quota.saturating_sub(allowed),
        });
    }
    let runner = model.clone();
    let (outputs, placement) = tokio::task::spawn_blocking(move || {
        let TensorIn { shape, mut data } = tensor;
        let result = match runner.engine() {
            Engine::Onnx(onnx) => onnx.infer(&shape, &data).map(|outputs| (outputs, None)),
            Engine::Hybrid(hybrid) => {
                hybrid.infer(&shape, &data).map(|ran| (ran.outputs, Some(ran.placement)))
            }
            Engine::Llm(_) | Engine::Embedder(_) => {
                Err(cloister_engine::EngineError::InvalidArgument(
                    "this model is not a tensor model".into(),
                ))
            }
        };
        data.zeroize();
        result
    })
    .await
    .map_err(|_| OnlineError::Internal)?
    .inspect_err(|error| {
        // Audited: a failed offloaded product (the answer was discarded; the request fails).
        if let cloister_engine::EngineError::Offload { layer, source } = error {
            worker.metrics.offload_products("failed", 1);
            tracing::warn!(model = %model.id(), %layer, %source, "offloaded product failed; request failed");
        }
    })?;
    if let Some(runs) = &placement {
        let count =
            |keep: fn(&&cloister_engine::LayerRun) -> bool| runs.iter().filter(keep).count() as u64;
        worker.metrics.offload_products("verified", count(|r| r.verified));
        worker.metrics.offload_products("fallback", count(|r| r.fallback.is_some()));
    }
    for run in placement.iter().flatten().filter(|r| r.fallback.is_some()) {
        tracing::warn!(
            model = %model.id(),
            layer = %run.layer,
            reason = run.fallback.as_deref().unwrap_or_default(),
            "offloaded product failed; the layer ran in the enclave as the policy allows"
        );
    }
    admission.charge(samples);
    let outputs: serde_json::Map<String, serde_json::Value> = outputs
        .into_iter()
        .map(|t| (t.name, json!({ "shape": t.shape, "data": t.data })))
        .collect();
    let mut response = json!({ "model": model.id(), "outputs": outputs });
    // Where each linear layer of this request ran (only models under an offload policy have
    // any outside the enclave), and how many offloaded products were verified.
    if let (Some(placement), Some(fields)) = (placement, response.as_object_mut()) {
        let offloaded = placement.iter().filter(|r| r.ran == Placement::Offload).count();
        let verified = placement.iter().filter(|r| r.verified).count();
        let fallbacks = placement.iter().filter(|r| r.fallback.is_some()).count();
        fields.insert(
            "verification".to_owned(),
            json!({ "offloaded": offloaded, "verified": verified, "fallbacks": fallbacks }),
        );
        fields.insert("placement".to_owned(), json!(placement));
    }
    Ok(Json(response))
}
