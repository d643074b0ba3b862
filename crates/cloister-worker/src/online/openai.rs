//! The OpenAI chat-completions and embeddings routes of the inner router, over the language
//! model and sentence-encoder engines. Prompts, answers and vectors exist only here, in the
//! enclave; a streamed answer leaves as one server-sent event per body frame, which the gateway
//! encrypts as one chunk each.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloister_sign::unix_now;
use serde::Deserialize;
use serde_json::json;
use zeroize::{Zeroize as _, Zeroizing};

use crate::online::api::parse_body;
use crate::online::authz::{self, Requester};
use crate::online::catalog::Engine;
use crate::online::error::OnlineError;
use crate::server::Worker;
use cloister_engine::{ChatMessage, GenerationParams};

/// Completion tokens when the request names no limit.
const DEFAULT_MAX_TOKENS: usize = 256;

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<MessageIn>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<OneOrMany>,
}

#[derive(Deserialize)]
struct MessageIn {
    role: String,
    content: Content,
}

/// Message content: a string, or a list of parts of which the text ones count.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(worker): State<Arc<Worker>>,
    requester: Requester,
    body: Bytes,
) -> Result<Response, OnlineError> {
    let request: ChatRequest = parse_body(&body)?;
    let admission = authz::admit(&worker, &requester, &request.model, unix_now()).await?;
    let model = admission.model().clone();
    if !matches!(model.engine(), Engine::Llm(_)) {
        return Err(OnlineError::WrongEndpoint {
            model: model.id(),
            route: "/v1/chat/completions",
            endpoint: model.engine().endpoint(),
        });
    }
    if request.messages.is_empty() {
        return Err(OnlineError::BadRequest("messages must not be empty".into()));
    }
    let messages: Vec<ChatMessage> = request
        .messages
        .into_iter()
        .map(|m| ChatMessage {
            role: m.role,
            content: match m.content {
                Content::Text(text) => text,
                Content::Parts(parts) => parts
                    .into_iter()
                    .filter(|p| p.kind == "text")
                    .map(|p| p.text)
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
        })
        .collect();
    let mut max_tokens =
        request.max_completion_tokens.or(request.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(OnlineError::BadRequest("max_tokens must be at least 1".into()));
    }
    // Reserved at the attestation service before a token is generated (a streamed answer
    // leaves as it is made): fewer when the quota has less left.
    let allowed = admission.reserve(&worker, max_tokens as u64).await?;
    max_tokens = usize::try_from(allowed).unwrap_or(max_tokens);
    let params = GenerationParams {
        max_tokens,
        temperature: request.temperature.unwrap_or(1.0),
        top_p: request.top_p,
        seed: request.seed.unwrap_or_else(rand_seed),
        stop: request.stop.map(OneOrMany::into_vec).unwrap_or_default(),
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    let model_id = model.id();

    if !request.stream {
        let runner = model.clone();
        let generation = tokio::task::spawn_blocking(move || {
            let Engine::Llm(llm) = runner.engine() else {
                return Err(OnlineError::Internal);
            };
            let prompt = llm.render_chat(&messages)?;
            drop(messages);
            Ok(llm.generate(&prompt, &params, &mut |_| ControlFlow::Continue(()))?)
        })
        .await
        .map_err(|_| OnlineError::Internal)??;
        admission.charge(generation.completion_tokens as u64);
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model_id,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": generation.text.as_str() },
                "finish_reason": generation.finish_reason.as_str(),
            }],
            "usage": usage(generation.prompt_tokens, generation.completion_tokens),
        });
        return Ok(Json(body).into_response());
    }

    let (events, receiver) = futures::channel::mpsc::unbounded::<Bytes>();
    let chunk = move |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let runner = model.clone();
    tokio::task::spawn_blocking(move || {
        let send = |value: &serde_json::Value| {
            let mut text = Zeroizing::new(format!("data: {value}\n\n"));
            let sent = events.unbounded_send(Bytes::copy_from_slice(text.as_bytes())).is_ok();
            text.zeroize();
            sent
        };
        let Engine::Llm(llm) = runner.engine() else {
            return;
        };
        if !send(&chunk(json!({ "role": "assistant", "content": "" }), None)) {
            return;
        }
        let result = llm.render_chat(&messages).and_then(|prompt| {
            llm.generate(&prompt, &params, &mut |piece| {
                if send(&chunk(json!({ "content": piece }), None)) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })
        });
        drop(messages);
        match result {
            Ok(generation) => {
                admission.charge(generation.completion_tokens as u64);
                let mut last = chunk(json!({}), Some(generation.finish_reason.as_str()));
                last["usage"] = usage(generation.prompt_tokens, generation.completion_tokens);
                send(&last);
            }
            Err(error) => {
                send(&OnlineError::from(error).body());
            }
        }
        let _ = events.unbounded_send(Bytes::from_static(b"data: [DONE]\n\n"));
    });
    Ok((
        [(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")],
        Body::from_stream(futures::StreamExt::map(receiver, Ok::<_, std::convert::Infallible>)),
    )
        .into_response())
}

fn usage(prompt: usize, completion: usize) -> serde_json::Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// A sampling seed when the request gives none.
fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    let (high, _) = id.as_u64_pair();
    high
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: OneOrMany,
    encoding_format: Option<String>,
}

/// `POST /v1/embeddings`. Vectors go out as float lists, or as base64 of little-endian float32
/// (`encoding_format: "base64"`, what the `openai` Python package asks for by default).
pub(crate) async fn embeddings(
    State(worker): State<Arc<Worker>>,
    requester: Requester,
    body: Bytes,
) -> Result<Json<serde_json::Value>, OnlineError> {
    let request: EmbeddingsRequest = parse_body(&body)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OnlineError::BadRequest(format!(
                "encoding_format {other:?} is not supported; use \"float\" or \"base64\""
            )));
        }
    };
    let admission = authz::admit(&worker, &requester, &request.model, unix_now()).await?;
    let model = admission.model().clone();
    if !matches!(model.engine(), Engine::Embedder(_)) {
        return Err(OnlineError::WrongEndpoint {
            model: model.id(),
            route: "/v1/embeddings",
            endpoint: model.engine().endpoint(),
        });
    }
    let inputs = request.input.into_vec();
    if inputs.is_empty() {
        return Err(OnlineError::BadRequest("input must not be empty".into()));
    }
    let runner = model.clone();
    let embeddings = tokio::task::spawn_blocking(move || {
        let Engine::Embedder(embedder) = runner.engine() else {
            return Err(OnlineError::Internal);
        };
        let mut inputs = inputs;
        let result = embedder.embed(&inputs);
        inputs.iter_mut().for_each(|s| s.zeroize());
        Ok(result?)
    })
    .await
    .map_err(|_| OnlineError::Internal)??;
    // The token count is known only now: the answer leaves once the service counted it.
    admission.settle(&worker, embeddings.tokens as u64).await?;
    let data: Vec<serde_json::Value> = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model.id(),
        "usage": { "prompt_tokens": embeddings.tokens, "total_tokens": embeddings.tokens },
    })))
}
