//! The OpenAI routes of the inner router over the language-model and sentence-encoder engines:
//! chat and text completions (one generation core, one admission and quota path), model lookup
//! and embeddings. Request bodies are checked field by field first ([`super::params`]): what is
//! not implemented is refused, never ignored. Prompts, answers and vectors exist only here, in
//! the enclave; a streamed answer leaves as one server-sent event per body frame, which the
//! gateway encrypts as one chunk each.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloister_sign::unix_now;
use serde_json::{Value, json};
use zeroize::{Zeroize as _, Zeroizing};

use crate::online::authz::{self, Admission, Requester};
use crate::online::catalog::{Engine, LoadedModel};
use crate::online::error::OnlineError;
use crate::online::params::{self, Sampling};
use crate::server::Worker;
use cloister_engine::{ChatMessage, EngineError, Generation, GenerationParams, LlmModel};

/// Completion tokens per choice when a chat request names no limit.
const DEFAULT_CHAT_MAX_TOKENS: usize = 256;
/// Completion tokens per choice when a text-completion request names no limit (OpenAI's own
/// default for this route).
const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(worker): State<Arc<Worker>>,
    requester: Requester,
    body: Bytes,
) -> Result<Response, OnlineError> {
    let request = params::chat_request(&body)?;
    complete(&worker, &requester, &request.model, Prompt::Chat(request.messages), request.sampling)
        .await
}

/// `POST /v1/completions`: the legacy text completions, one prompt per request, no chat
/// template.
pub(crate) async fn completions(
    State(worker): State<Arc<Worker>>,
    requester: Requester,
    body: Bytes,
) -> Result<Response, OnlineError> {
    let request = params::completion_request(&body)?;
    let prompt = Prompt::Text { prompt: request.prompt, echo: request.echo };
    complete(&worker, &requester, &request.model, prompt, request.sampling).await
}

/// What the model is asked.
enum Prompt {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Text the model continues as it is; with `echo`, the answer starts with it.
    Text { prompt: Zeroizing<String>, echo: bool },
}

impl Prompt {
    fn surface(&self) -> Surface {
        match self {
            Prompt::Chat(_) => Surface::Chat,
            Prompt::Text { .. } => Surface::Text,
        }
    }

    /// The text the model continues.
    fn render(&self, llm: &LlmModel) -> Result<Zeroizing<String>, EngineError> {
        match self {
            Prompt::Chat(messages) => llm.render_chat(messages),
            Prompt::Text { prompt, .. } => Ok(prompt.clone()),
        }
    }

    /// The text every choice starts with (`echo`).
    fn echoed(&self) -> Option<&str> {
        match self {
            Prompt::Text { prompt, echo: true } => Some(prompt.as_str()),
            _ => None,
        }
    }
}

/// The shape of the answer: chat messages or text.
#[derive(Clone, Copy)]
enum Surface {
    Chat,
    Text,
}

impl Surface {
    fn route(self) -> &'static str {
        match self {
            Surface::Chat => "/v1/chat/completions",
            Surface::Text => "/v1/completions",
        }
    }

    fn default_max_tokens(self) -> usize {
        match self {
            Surface::Chat => DEFAULT_CHAT_MAX_TOKENS,
            Surface::Text => DEFAULT_COMPLETION_MAX_TOKENS,
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Surface::Chat => "chatcmpl-",
            Surface::Text => "cmpl-",
        }
    }

    fn object(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Surface::Chat, false) => "chat.completion",
            (Surface::Chat, true) => "chat.completion.chunk",
            (Surface::Text, _) => "text_completion",
        }
    }

    /// A whole choice.
    fn choice(self, index: usize, text: &str, finish: &str) -> Value {
        match self {
            Surface::Chat => json!({
                "index": index,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": finish,
            }),
            Surface::Text => {
                json!({ "index": index, "text": text, "logprobs": null, "finish_reason": finish })
            }
        }
    }

    /// A streamed choice's event: its opening (`Part::Open`, which names the role in a chat),
    /// a piece of text, or its end with the finish reason.
    fn stream_choice(self, index: usize, part: Part<'_>) -> Value {
        let (text, finish) = match part {
            Part::Open(text) | Part::Piece(text) => (text, None),
            Part::End(finish) => ("", Some(finish)),
        };
        match self {
            Surface::Chat => {
                let delta = match part {
                    Part::Open(text) => json!({ "role": "assistant", "content": text }),
                    Part::Piece(text) => json!({ "content": text }),
                    Part::End(_) => json!({}),
                };
                json!({ "index": index, "delta": delta, "logprobs": null, "finish_reason": finish })
            }
            Surface::Text => {
                json!({ "index": index, "text": text, "logprobs": null, "finish_reason": finish })
            }
        }
    }
}

/// A piece of a streamed choice.
#[derive(Clone, Copy)]
enum Part<'a> {
    Open(&'a str),
    Piece(&'a str),
    End(&'a str),
}

/// What every event or body of one answer repeats.
struct Answer {
    id: String,
    created: u64,
    model: String,
    surface: Surface,
    include_usage: bool,
}

impl Answer {
    /// One streamed event with one choice (and `usage: null` when a usage event follows, as
    /// OpenAI sends it).
    fn chunk(&self, index: usize, part: Part<'_>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": self.surface.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [self.surface.stream_choice(index, part)],
        });
        if self.include_usage
            && let Some(fields) = chunk.as_object_mut()
        {
            fields.insert("usage".into(), Value::Null);
        }
        chunk
    }

    /// The last event of a stream with `include_usage`: no choices, the usage.
    fn usage_chunk(&self, usage: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.surface.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        })
    }
}

/// Admits a completion request, reserves its tokens and answers it, whole or streamed: the one
/// path of chat and text completions through the requester's rate and quota.
async fn complete(
    worker: &Worker,
    requester: &Requester,
    model: &str,
    prompt: Prompt,
    sampling: Sampling,
) -> Result<Response, OnlineError> {
    let surface = prompt.surface();
    let admission = authz::admit(worker, requester, model, unix_now()).await?;
    let model = admission.model().clone();
    if !matches!(model.engine(), Engine::Llm(_)) {
        return Err(OnlineError::WrongEndpoint {
            model: model.id(),
            route: surface.route(),
            endpoint: model.engine().endpoint(),
        });
    }
    let n = sampling.n;
    let max_tokens = reserve_choices(
        &admission,
        worker,
        sampling.max_tokens.unwrap_or(surface.default_max_tokens()),
        n,
    )
    .await?;
    let params = GenerationParams {
        max_tokens,
        temperature: sampling.temperature.unwrap_or(1.0),
        top_p: sampling.top_p,
        seed: sampling.seed.unwrap_or_else(rand_seed),
        stop: sampling.stop,
    };
    let answer = Answer {
        id: format!("{}{}", surface.id_prefix(), uuid::Uuid::new_v4().simple()),
        created: unix_now(),
        model: model.id(),
        surface,
        include_usage: sampling.include_usage,
    };
    let run = Run { admission, model, prompt, params, n, metrics: worker.metrics.clone() };
    if sampling.stream { Ok(run.stream(answer)) } else { run.whole(answer).await }
}

/// Reserves `n` choices of `per_choice` completion tokens at the attestation service before a
/// token is generated (a streamed answer leaves as it is made); returns the tokens each choice
/// may have: `per_choice`, or an equal share of what the quota has left (refused when that is
/// less than one token each).
async fn reserve_choices(
    admission: &Admission,
    worker: &Worker,
    per_choice: usize,
    n: usize,
) -> Result<usize, OnlineError> {
    let choices = n.max(1) as u64;
    let wanted = (per_choice as u64).saturating_mul(choices);
    let allowed = admission.reserve(worker, wanted).await?;
    match allowed / choices {
        0 => Err(admission.exhausted(allowed)),
        each => Ok(usize::try_from(each).unwrap_or(per_choice).min(per_choice)),
    }
}

/// The seeds of `n` choices: `seed`, `seed + 1`, … (so that sampled choices differ, and a
/// request with a seed is answered alike each time).
fn seeds(seed: u64, n: usize) -> impl Iterator<Item = (usize, u64)> {
    (0..n).map(move |i| (i, seed.wrapping_add(i as u64)))
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// What the choices of a request used: the prompt once, the completions together.
fn usage_of(generations: &[Generation]) -> (usize, usize) {
    let prompt = generations.first().map_or(0, |g| g.prompt_tokens);
    (prompt, generations.iter().map(|g| g.completion_tokens).sum())
}

/// An admitted completion request, its tokens reserved.
struct Run {
    admission: Admission,
    model: Arc<LoadedModel>,
    prompt: Prompt,
    params: GenerationParams,
    n: usize,
    metrics: crate::metrics::WorkerMetrics,
}

impl Run {
    /// Generates every choice, charges their tokens, answers in one body.
    async fn whole(self, answer: Answer) -> Result<Response, OnlineError> {
        let Run { admission, model, prompt, params, n, metrics } = self;
        let surface = answer.surface;
        let choices = tokio::task::spawn_blocking(move || {
            let Engine::Llm(llm) = model.engine() else {
                return Err(OnlineError::Internal);
            };
            let text = prompt.render(llm)?;
            let mut generations = Vec::with_capacity(n);
            for (_, seed) in seeds(params.seed, n) {
                let params = GenerationParams { seed, ..params.clone() };
                generations.push(llm.generate(&text, &params, &mut |_| ControlFlow::Continue(()))?);
            }
            let (prompt_tokens, completion_tokens) = usage_of(&generations);
            let choices: Vec<Value> = generations
                .iter()
                .enumerate()
                .map(|(index, generation)| {
                    let mut text = Zeroizing::new(String::new());
                    text.push_str(prompt.echoed().unwrap_or(""));
                    text.push_str(&generation.text);
                    surface.choice(index, &text, generation.finish_reason.as_str())
                })
                .collect();
            Ok((choices, prompt_tokens, completion_tokens))
        })
        .await
        .map_err(|_| OnlineError::Internal)?;
        let (choices, prompt_tokens, completion_tokens) = choices?;
        admission.charge(completion_tokens as u64);
        metrics.tokens_generated("online", completion_tokens as u64);
        Ok(Json(json!({
            "id": answer.id,
            "object": surface.object(false),
            "created": answer.created,
            "model": answer.model,
            "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens),
        }))
        .into_response())
    }

    /// Streams every choice in turn as server-sent events (each event names its choice's
    /// index), then the usage event when asked for, then `[DONE]`; charges the tokens generated.
    fn stream(self, answer: Answer) -> Response {
        let Run { admission, model, prompt, params, n, metrics } = self;
        let (events, receiver) = futures::channel::mpsc::unbounded::<Bytes>();
        tokio::task::spawn_blocking(move || {
            let send = |value: &Value| {
                let mut text = Zeroizing::new(format!("data: {value}\n\n"));
                let sent = events.unbounded_send(Bytes::copy_from_slice(text.as_bytes())).is_ok();
                text.zeroize();
                sent
            };
            let Engine::Llm(llm) = model.engine() else {
                return;
            };
            let mut generations = Vec::with_capacity(n);
            let result = prompt.render(llm).and_then(|text| {
                for (index, seed) in seeds(params.seed, n) {
                    let opening = match answer.surface {
                        Surface::Chat => Some(""),
                        Surface::Text => prompt.echoed(),
                    };
                    if let Some(opening) = opening
                        && !send(&answer.chunk(index, Part::Open(opening)))
                    {
                        break;
                    }
                    let mut listening = true;
                    let params = GenerationParams { seed, ..params.clone() };
                    let generation = llm.generate(&text, &params, &mut |piece| {
                        if send(&answer.chunk(index, Part::Piece(piece))) {
                            ControlFlow::Continue(())
                        } else {
                            listening = false;
                            ControlFlow::Break(())
                        }
                    })?;
                    let finish = generation.finish_reason.as_str();
                    generations.push(generation);
                    if !listening || !send(&answer.chunk(index, Part::End(finish))) {
                        break;
                    }
                }
                Ok(())
            });
            drop(prompt);
            let (prompt_tokens, completion_tokens) = usage_of(&generations);
            admission.charge(completion_tokens as u64);
            metrics.tokens_generated("online", completion_tokens as u64);
            match result {
                Ok(()) => {
                    if answer.include_usage {
                        send(&answer.usage_chunk(usage(prompt_tokens, completion_tokens)));
                    }
                }
                Err(error) => {
                    send(&OnlineError::from(error).body());
                }
            }
            let _ = events.unbounded_send(Bytes::from_static(b"data: [DONE]\n\n"));
        });
        (
            [(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")],
            Body::from_stream(futures::StreamExt::map(receiver, Ok::<_, std::convert::Infallible>)),
        )
            .into_response()
    }
}

/// `GET /v1/models/{id}`: a model this requester may use, by `name@version` or by `name` (its
/// newest version this requester may use). A model that does not exist and one the requester
/// may not use get the same 404.
pub(crate) async fn model(
    State(worker): State<Arc<Worker>>,
    requester: Requester,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, OnlineError> {
    let Ok(Path(id)) = id else {
        return Err(OnlineError::BadRequest("the model id in the path is not valid".into()));
    };
    let model = worker
        .catalog
        .get_usable(&id, |m| authz::permits(m, &requester, unix_now()))
        .ok_or(OnlineError::ModelNotFound(id))?;
    authz::check_fresh(&worker.catalog, &requester, unix_now())?;
    Ok(Json(json!({
        "id": model.id(),
        "object": "model",
        "created": model.created(),
        "owned_by": model.serving_policy().owner(),
    })))
}

/// A sampling seed when the request gives none.
fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    let (high, _) = id.as_u64_pair();
    high
}

/// `POST /v1/embeddings`. Vectors go out as float lists, or as base64 of little-endian float32
/// (`encoding_format: "base64"`, what the `openai` Python package asks for by default).
pub(crate) async fn embeddings(
    State(worker): State<Arc<Worker>>,
    requester: Requester,
    body: Bytes,
) -> Result<Json<Value>, OnlineError> {
    let request = params::embeddings_request(&body)?;
    let base64 = request.base64;
    let admission = authz::admit(&worker, &requester, &request.model, unix_now()).await?;
    let model = admission.model().clone();
    if !matches!(model.engine(), Engine::Embedder(_)) {
        return Err(OnlineError::WrongEndpoint {
            model: model.id(),
            route: "/v1/embeddings",
            endpoint: model.engine().endpoint(),
        });
    }
    let inputs = request.input;
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
    let data: Vec<Value> = embeddings
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
