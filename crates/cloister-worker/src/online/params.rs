//! The request bodies of the OpenAI routes, checked field by field against OpenAI's schema.
//! Every field OpenAI defines is either used, ignored because it changes nothing a requester can
//! observe here, accepted only at the value that changes nothing (its default), or refused; a
//! field outside OpenAI's schema is refused too. A refusal is a 400 naming the field (`param`):
//! nothing is silently dropped. `null` counts as absent, as in OpenAI's schema.
//!
//! Checked before the request is admitted, so a refused request spends none of the requester's
//! rate or quota. Error messages name fields and limits, never values from the request.

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::online::error::OnlineError;
use cloister_engine::ChatMessage;

/// The most choices (`n`) one request may ask for: each is a full generation, and a request
/// counts once against the per-minute rate.
pub(crate) const MAX_CHOICES: usize = 16;
/// The most stop sequences OpenAI accepts.
const MAX_STOP: usize = 4;

/// What a request field does here.
#[derive(Clone, Copy)]
enum Rule {
    /// Read by the handler.
    Used,
    /// Accepted and ignored: it changes nothing a requester can observe here.
    Ignored,
    /// Accepted at the value that changes nothing (`is_default`); any other value is refused
    /// with `why`.
    DefaultOnly { is_default: fn(&Value) -> bool, why: &'static str },
    /// Refused whenever present, with `why`.
    Unsupported(&'static str),
}

use Rule::{DefaultOnly, Ignored, Unsupported, Used};

const NO_TOOLS: &str = "this server does not call tools or functions";
const NO_LOGPROBS: &str = "log probabilities are not returned";

/// Sampling fields shared by chat and text completions, and what the sampler cannot do.
const SAMPLING_FIELDS: &[(&str, Rule)] = &[
    ("model", Used),
    ("stream", Used),
    ("stream_options", Used),
    ("max_tokens", Used),
    ("temperature", Used),
    ("top_p", Used),
    ("seed", Used),
    ("stop", Used),
    ("n", Used),
    ("user", Ignored),
    (
        "frequency_penalty",
        DefaultOnly { is_default: is_zero, why: "the sampler applies no frequency penalty" },
    ),
    (
        "presence_penalty",
        DefaultOnly { is_default: is_zero, why: "the sampler applies no presence penalty" },
    ),
    (
        "logit_bias",
        DefaultOnly { is_default: is_empty_object, why: "the sampler applies no logit bias" },
    ),
];

/// `POST /v1/chat/completions` fields besides [`SAMPLING_FIELDS`].
const CHAT_FIELDS: &[(&str, Rule)] = &[
    ("messages", Used),
    ("max_completion_tokens", Used),
    ("metadata", Ignored),
    ("safety_identifier", Ignored),
    ("prompt_cache_key", Ignored),
    ("store", DefaultOnly { is_default: is_false, why: "completions are not stored" }),
    (
        "service_tier",
        DefaultOnly { is_default: is_auto, why: "there is one service tier here (\"auto\")" },
    ),
    (
        "modalities",
        DefaultOnly { is_default: is_text_modalities, why: "answers are text only ([\"text\"])" },
    ),
    ("logprobs", DefaultOnly { is_default: is_false, why: NO_LOGPROBS }),
    ("top_logprobs", Unsupported(NO_LOGPROBS)),
    (
        "response_format",
        DefaultOnly {
            is_default: is_text_format,
            why: "answers are plain text ({\"type\": \"text\"}); JSON modes and schemas are not \
                  enforced",
        },
    ),
    ("tools", Unsupported(NO_TOOLS)),
    ("tool_choice", Unsupported(NO_TOOLS)),
    ("parallel_tool_calls", Unsupported(NO_TOOLS)),
    ("functions", Unsupported(NO_TOOLS)),
    ("function_call", Unsupported(NO_TOOLS)),
    ("audio", Unsupported("answers are text only")),
    ("prediction", Unsupported("predicted outputs are not supported")),
    ("web_search_options", Unsupported("there is no web search inside the enclave")),
    ("reasoning_effort", Unsupported("the models served here take no reasoning effort")),
    ("verbosity", Unsupported("the models served here take no verbosity")),
];

/// `POST /v1/completions` fields besides [`SAMPLING_FIELDS`].
const COMPLETION_FIELDS: &[(&str, Rule)] = &[
    ("prompt", Used),
    ("echo", Used),
    ("best_of", DefaultOnly { is_default: is_one, why: "there is no server-side best-of ranking" }),
    ("logprobs", Unsupported(NO_LOGPROBS)),
    ("suffix", Unsupported("insertion (a suffix after the completion) is not supported")),
];

/// Fields of one chat message.
const MESSAGE_FIELDS: &[(&str, Rule)] = &[
    ("role", Used),
    ("content", Used),
    ("name", Unsupported("participant names are not passed to the model")),
    ("tool_calls", Unsupported(NO_TOOLS)),
    ("tool_call_id", Unsupported(NO_TOOLS)),
    ("function_call", Unsupported(NO_TOOLS)),
    ("refusal", Unsupported("refusal messages are not supported")),
    ("audio", Unsupported("messages are text only")),
];

/// Fields of a text content part.
const TEXT_PART_FIELDS: &[(&str, Rule)] = &[("type", Used), ("text", Used)];

/// Fields of `stream_options`.
const STREAM_OPTION_FIELDS: &[(&str, Rule)] = &[
    ("include_usage", Used),
    (
        "include_obfuscation",
        DefaultOnly { is_default: is_false, why: "stream events carry no obfuscation padding" },
    ),
];

/// `POST /v1/embeddings` fields.
const EMBEDDING_FIELDS: &[(&str, Rule)] = &[
    ("model", Used),
    ("input", Used),
    ("encoding_format", Used),
    ("user", Ignored),
    ("dimensions", Unsupported("vectors have the model's own dimension")),
];

fn is_zero(value: &Value) -> bool {
    value.as_f64() == Some(0.0)
}

fn is_one(value: &Value) -> bool {
    value.as_u64() == Some(1)
}

fn is_false(value: &Value) -> bool {
    value == &Value::Bool(false)
}

fn is_auto(value: &Value) -> bool {
    value.as_str() == Some("auto")
}

fn is_empty_object(value: &Value) -> bool {
    value.as_object().is_some_and(Map::is_empty)
}

fn is_text_modalities(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|m| m.len() == 1 && m.first().and_then(Value::as_str) == Some("text"))
}

fn is_text_format(value: &Value) -> bool {
    value.as_object().is_some_and(|format| {
        format.len() == 1 && format.get("type").and_then(Value::as_str) == Some("text")
    })
}

fn unsupported(param: String, why: &str) -> OnlineError {
    OnlineError::UnsupportedParameter { param, reason: why.to_owned() }
}

fn invalid(param: impl Into<String>, reason: impl Into<String>) -> OnlineError {
    OnlineError::InvalidValue { param: param.into(), reason: reason.into() }
}

/// Refuses any field of `object` that none of `tables` lists, and any listed one whose rule
/// refuses its value. Fields are named `{prefix}{name}` in errors.
fn check_fields(
    object: &Map<String, Value>,
    tables: &[&[(&str, Rule)]],
    prefix: &str,
) -> Result<(), OnlineError> {
    for (name, value) in object {
        let rule = tables.iter().flat_map(|t| t.iter()).find(|(n, _)| n == name).map(|(_, r)| *r);
        let Some(rule) = rule else {
            return Err(OnlineError::UnknownParameter(format!("{prefix}{name}")));
        };
        if value.is_null() {
            continue;
        }
        match rule {
            Used | Ignored => {}
            DefaultOnly { is_default, why } => {
                if !is_default(value) {
                    return Err(unsupported(format!("{prefix}{name}"), why));
                }
            }
            Unsupported(why) => return Err(unsupported(format!("{prefix}{name}"), why)),
        }
    }
    Ok(())
}

/// A JSON object body, or a 400.
fn object(body: &[u8]) -> Result<Map<String, Value>, OnlineError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(OnlineError::BadRequest("the request body must be a JSON object".into())),
        Err(e) => Err(OnlineError::BadRequest(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// Takes field `name` out of `object` (absent and `null` alike: `None`).
fn take(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    object.remove(name).filter(|v| !v.is_null())
}

fn string(object: &mut Map<String, Value>, name: &str) -> Result<Option<String>, OnlineError> {
    match take(object, name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(name, format!("{name} must be a string"))),
    }
}

fn required_string(object: &mut Map<String, Value>, name: &str) -> Result<String, OnlineError> {
    string(object, name)?.ok_or_else(|| invalid(name, format!("{name} is required")))
}

fn boolean(object: &mut Map<String, Value>, name: &str) -> Result<bool, OnlineError> {
    match take(object, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(invalid(name, format!("{name} must be true or false"))),
    }
}

fn count(object: &mut Map<String, Value>, name: &str) -> Result<Option<usize>, OnlineError> {
    match take(object, name) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| invalid(name, format!("{name} must be a non-negative integer"))),
    }
}

fn number(
    object: &mut Map<String, Value>,
    name: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, OnlineError> {
    match take(object, name) {
        None => Ok(None),
        Some(value) => match value.as_f64() {
            Some(v) if range.contains(&v) => Ok(Some(v)),
            _ => Err(invalid(
                name,
                format!("{name} must be a number from {} to {}", range.start(), range.end()),
            )),
        },
    }
}

/// Sampling, length and streaming, as the engine and the stream writer take them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sampling {
    /// Completion tokens per choice the request asks for (`None`: the route's default).
    pub(crate) max_tokens: Option<usize>,
    /// 0 means greedy.
    pub(crate) temperature: Option<f64>,
    /// Nucleus threshold in (0, 1].
    pub(crate) top_p: Option<f64>,
    /// The sampler's seed (an `int64` in OpenAI's schema, taken bit for bit).
    pub(crate) seed: Option<u64>,
    /// Stop sequences (at most four).
    pub(crate) stop: Vec<String>,
    /// Choices (1 to [`MAX_CHOICES`]).
    pub(crate) n: usize,
    /// Server-sent events.
    pub(crate) stream: bool,
    /// A last event with the usage and no choices (`stream_options.include_usage`).
    pub(crate) include_usage: bool,
}

/// Reads the sampling fields out of `object` (already checked against its tables).
fn sampling(object: &mut Map<String, Value>) -> Result<Sampling, OnlineError> {
    let stream = boolean(object, "stream")?;
    let include_usage = match take(object, "stream_options") {
        None => false,
        Some(Value::Object(mut options)) => {
            if !stream {
                return Err(invalid("stream_options", "stream_options needs stream: true"));
            }
            check_fields(&options, &[STREAM_OPTION_FIELDS], "stream_options.")?;
            match take(&mut options, "include_usage") {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(_) => {
                    return Err(invalid(
                        "stream_options.include_usage",
                        "stream_options.include_usage must be true or false",
                    ));
                }
            }
        }
        Some(_) => return Err(invalid("stream_options", "stream_options must be an object")),
    };
    let max_tokens = count(object, "max_tokens")?;
    if max_tokens == Some(0) {
        return Err(invalid("max_tokens", "max_tokens must be at least 1"));
    }
    let mut temperature = number(object, "temperature", 0.0..=2.0)?;
    let mut top_p = number(object, "top_p", 0.0..=1.0)?;
    if top_p == Some(0.0) {
        // Only the most probable token is left: greedy decoding.
        temperature = Some(0.0);
        top_p = None;
    }
    let seed = match take(object, "seed") {
        None => None,
        Some(value) => Some(
            value
                .as_u64()
                .or_else(|| value.as_i64().map(i64::cast_unsigned))
                .ok_or_else(|| invalid("seed", "seed must be an integer"))?,
        ),
    };
    let stop = match take(object, "stop") {
        None => Vec::new(),
        Some(Value::String(one)) => vec![one],
        Some(Value::Array(many)) => {
            if many.len() > MAX_STOP {
                return Err(invalid("stop", format!("stop takes at most {MAX_STOP} sequences")));
            }
            many.into_iter()
                .map(|s| match s {
                    Value::String(s) => Ok(s),
                    _ => Err(invalid("stop", "stop must be a string or a list of strings")),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(invalid("stop", "stop must be a string or a list of strings")),
    };
    if stop.iter().any(String::is_empty) {
        return Err(invalid("stop", "a stop sequence must not be empty"));
    }
    let n = count(object, "n")?.unwrap_or(1);
    if !(1..=MAX_CHOICES).contains(&n) {
        return Err(invalid("n", format!("n must be from 1 to {MAX_CHOICES} here")));
    }
    Ok(Sampling { max_tokens, temperature, top_p, seed, stop, n, stream, include_usage })
}

/// A checked `POST /v1/chat/completions` body.
pub(crate) struct ChatRequest {
    /// The model asked for.
    pub(crate) model: String,
    /// The conversation (`developer` turns as `system`).
    pub(crate) messages: Vec<ChatMessage>,
    /// How to generate.
    pub(crate) sampling: Sampling,
}

/// Parses and checks a chat-completions body.
pub(crate) fn chat_request(body: &[u8]) -> Result<ChatRequest, OnlineError> {
    let mut object = object(body)?;
    check_fields(&object, &[SAMPLING_FIELDS, CHAT_FIELDS], "")?;
    let model = required_string(&mut object, "model")?;
    let messages = messages(take(&mut object, "messages"))?;
    let max_completion_tokens = count(&mut object, "max_completion_tokens")?;
    if max_completion_tokens == Some(0) {
        return Err(invalid("max_completion_tokens", "max_completion_tokens must be at least 1"));
    }
    let mut sampling = sampling(&mut object)?;
    sampling.max_tokens = max_completion_tokens.or(sampling.max_tokens);
    Ok(ChatRequest { model, messages, sampling })
}

fn messages(value: Option<Value>) -> Result<Vec<ChatMessage>, OnlineError> {
    let Some(Value::Array(items)) = value else {
        return Err(invalid("messages", "messages must be a list of messages"));
    };
    if items.is_empty() {
        return Err(invalid("messages", "messages must not be empty"));
    }
    items.into_iter().enumerate().map(|(i, item)| message(i, item)).collect()
}

fn message(i: usize, item: Value) -> Result<ChatMessage, OnlineError> {
    let at = format!("messages.[{i}]");
    let Value::Object(mut fields) = item else {
        return Err(invalid(at, "each message must be an object"));
    };
    check_fields(&fields, &[MESSAGE_FIELDS], &format!("{at}."))?;
    let role = match string(&mut fields, "role") {
        Ok(Some(role)) => role,
        _ => return Err(invalid(format!("{at}.role"), "each message needs a role (a string)")),
    };
    let role = match role.as_str() {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        "tool" | "function" => return Err(unsupported(format!("{at}.role"), NO_TOOLS)),
        _ => {
            return Err(invalid(
                format!("{at}.role"),
                "a role is system, developer, user or assistant",
            ));
        }
    };
    let content = match take(&mut fields, "content") {
        Some(Value::String(text)) => text,
        Some(Value::Array(parts)) => {
            let mut texts = Zeroizing::new(Vec::with_capacity(parts.len()));
            for (j, part) in parts.into_iter().enumerate() {
                texts.push(text_part(&format!("{at}.content.[{j}]"), part)?);
            }
            texts.join("\n")
        }
        _ => {
            return Err(invalid(
                format!("{at}.content"),
                "each message needs content: a string or a list of text parts",
            ));
        }
    };
    Ok(ChatMessage { role: role.to_owned(), content })
}

fn text_part(at: &str, part: Value) -> Result<String, OnlineError> {
    let Value::Object(mut fields) = part else {
        return Err(invalid(at, "a content part must be an object"));
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("image_url" | "input_audio" | "file" | "refusal") => {
            return Err(unsupported(format!("{at}.type"), "only text content parts are supported"));
        }
        _ => return Err(invalid(format!("{at}.type"), "a content part's type is \"text\"")),
    }
    check_fields(&fields, &[TEXT_PART_FIELDS], &format!("{at}."))?;
    match take(&mut fields, "text") {
        Some(Value::String(text)) => Ok(text),
        _ => Err(invalid(format!("{at}.text"), "a text part needs its text (a string)")),
    }
}

/// A checked `POST /v1/completions` body.
pub(crate) struct CompletionRequest {
    /// The model asked for.
    pub(crate) model: String,
    /// The prompt, as the model sees it (no chat template).
    pub(crate) prompt: Zeroizing<String>,
    /// The answer starts with the prompt.
    pub(crate) echo: bool,
    /// How to generate.
    pub(crate) sampling: Sampling,
}

/// Parses and checks a (legacy) completions body: one prompt, as a string or a list of one
/// string.
pub(crate) fn completion_request(body: &[u8]) -> Result<CompletionRequest, OnlineError> {
    let mut object = object(body)?;
    check_fields(&object, &[SAMPLING_FIELDS, COMPLETION_FIELDS], "")?;
    let model = required_string(&mut object, "model")?;
    let prompt = match take(&mut object, "prompt") {
        Some(Value::String(prompt)) => prompt,
        Some(Value::Array(prompts)) => {
            let mut prompts = prompts.into_iter();
            match (prompts.next(), prompts.next()) {
                (Some(Value::String(prompt)), None) => prompt,
                (Some(Value::String(_)), Some(_)) => {
                    return Err(unsupported(
                        "prompt".into(),
                        "one prompt per request (a string, or a list of one string)",
                    ));
                }
                (Some(Value::Number(_) | Value::Array(_)), _) => {
                    return Err(unsupported(
                        "prompt".into(),
                        "token-id prompts are not supported; send the prompt as text",
                    ));
                }
                _ => return Err(invalid("prompt", "prompt must be a string")),
            }
        }
        _ => return Err(invalid("prompt", "prompt is required (a string)")),
    };
    let echo = boolean(&mut object, "echo")?;
    let sampling = sampling(&mut object)?;
    Ok(CompletionRequest { model, prompt: Zeroizing::new(prompt), echo, sampling })
}

/// A checked `POST /v1/embeddings` body.
pub(crate) struct EmbeddingsRequest {
    /// The model asked for.
    pub(crate) model: String,
    /// The texts to embed.
    pub(crate) input: Vec<String>,
    /// Vectors as base64 of little-endian float32 rather than float lists.
    pub(crate) base64: bool,
}

/// Parses and checks an embeddings body: `input` as a string or a list of strings.
pub(crate) fn embeddings_request(body: &[u8]) -> Result<EmbeddingsRequest, OnlineError> {
    let mut object = object(body)?;
    check_fields(&object, &[EMBEDDING_FIELDS], "")?;
    let model = required_string(&mut object, "model")?;
    let base64 = match string(&mut object, "encoding_format")?.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(invalid("encoding_format", "encoding_format is \"float\" or \"base64\""));
        }
    };
    let input = match take(&mut object, "input") {
        Some(Value::String(one)) => vec![one],
        Some(Value::Array(many)) => many
            .into_iter()
            .map(|v| match v {
                Value::String(text) => Ok(text),
                _ => Err(unsupported(
                    "input".into(),
                    "token-id inputs are not supported; send the inputs as text",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(invalid("input", "input must be a string or a list of strings")),
    };
    if input.is_empty() {
        return Err(invalid("input", "input must not be empty"));
    }
    Ok(EmbeddingsRequest { model, input, base64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn chat(extra: Value) -> Vec<u8> {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        serde_json::to_vec(&body).unwrap()
    }

    fn completion(extra: Value) -> Vec<u8> {
        let mut body = json!({"model": "m", "prompt": "Once upon"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        serde_json::to_vec(&body).unwrap()
    }

    /// `(param, code)` of a refusal.
    fn refusal(result: Result<impl Sized, OnlineError>) -> (String, &'static str) {
        let Err(error) = result else { panic!("accepted") };
        let body = error.body();
        let param = body["error"]["param"].as_str().unwrap_or_default().to_owned();
        let code = match body["error"]["code"].as_str().unwrap() {
            "unsupported_parameter" => "unsupported_parameter",
            "unknown_parameter" => "unknown_parameter",
            "invalid_value" => "invalid_value",
            other => panic!("unexpected code {other}"),
        };
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&param), "{message:?} does not name {param}");
        (param, code)
    }

    #[test]
    fn openai_chat_fields_not_implemented_are_refused_by_name() {
        let cases = [
            (json!({"n": 0}), "n", "invalid_value"),
            (json!({"n": 17}), "n", "invalid_value"),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
                "tools",
                "unsupported_parameter",
            ),
            (json!({"tools": []}), "tools", "unsupported_parameter"),
            (json!({"tool_choice": "none"}), "tool_choice", "unsupported_parameter"),
            (json!({"functions": [{"name": "f"}]}), "functions", "unsupported_parameter"),
            (json!({"function_call": "auto"}), "function_call", "unsupported_parameter"),
            (json!({"parallel_tool_calls": false}), "parallel_tool_calls", "unsupported_parameter"),
            (json!({"logprobs": true}), "logprobs", "unsupported_parameter"),
            (json!({"top_logprobs": 2}), "top_logprobs", "unsupported_parameter"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
                "unsupported_parameter",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
                "response_format",
                "unsupported_parameter",
            ),
            (json!({"presence_penalty": 0.5}), "presence_penalty", "unsupported_parameter"),
            (json!({"frequency_penalty": -1}), "frequency_penalty", "unsupported_parameter"),
            (json!({"logit_bias": {"42": 10}}), "logit_bias", "unsupported_parameter"),
            (json!({"store": true}), "store", "unsupported_parameter"),
            (json!({"service_tier": "flex"}), "service_tier", "unsupported_parameter"),
            (json!({"modalities": ["text", "audio"]}), "modalities", "unsupported_parameter"),
            (
                json!({"audio": {"voice": "alloy", "format": "wav"}}),
                "audio",
                "unsupported_parameter",
            ),
            (
                json!({"prediction": {"type": "content", "content": "x"}}),
                "prediction",
                "unsupported_parameter",
            ),
            (json!({"web_search_options": {}}), "web_search_options", "unsupported_parameter"),
            (json!({"reasoning_effort": "low"}), "reasoning_effort", "unsupported_parameter"),
            (json!({"verbosity": "low"}), "verbosity", "unsupported_parameter"),
            (json!({"best_of": 2}), "best_of", "unknown_parameter"),
            (json!({"echo": true}), "echo", "unknown_parameter"),
            (json!({"frobnicate": 1}), "frobnicate", "unknown_parameter"),
            (json!({"stream_options": {"include_usage": true}}), "stream_options", "invalid_value"),
            (
                json!({"stream": true, "stream_options": {"include_obfuscation": true}}),
                "stream_options.include_obfuscation",
                "unsupported_parameter",
            ),
            (
                json!({"stream": true, "stream_options": {"chunk_size": 4}}),
                "stream_options.chunk_size",
                "unknown_parameter",
            ),
            (json!({"temperature": 2.5}), "temperature", "invalid_value"),
            (json!({"top_p": 1.5}), "top_p", "invalid_value"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop", "invalid_value"),
            (json!({"stop": [""]}), "stop", "invalid_value"),
            (json!({"max_tokens": 0}), "max_tokens", "invalid_value"),
            (json!({"max_completion_tokens": 0}), "max_completion_tokens", "invalid_value"),
            (json!({"seed": 1.5}), "seed", "invalid_value"),
            (
                json!({"messages": [{"role": "user", "content": "x", "name": "bob"}]}),
                "messages.[0].name",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}),
                "messages.[0].tool_call_id",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages.[0].role",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "wizard", "content": "x"}]}),
                "messages.[0].role",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x", "mood": "sad"}]}),
                "messages.[0].mood",
                "unknown_parameter",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": null, "tool_calls": []}]}),
                "messages.[0].tool_calls",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": null}]}),
                "messages.[0].content",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages.[0].content.[0].type",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache": 1}]}]}),
                "messages.[0].content.[0].cache",
                "unknown_parameter",
            ),
            (json!({"messages": []}), "messages", "invalid_value"),
            (json!({"model": null}), "model", "invalid_value"),
        ];
        for (extra, param, code) in cases {
            let got = refusal(chat_request(&chat(extra.clone())));
            assert_eq!(got, (param.to_owned(), code), "{extra}");
        }
    }

    #[test]
    fn defaults_and_fields_that_change_nothing_are_accepted() {
        let request = chat_request(&chat(json!({
            "n": 1, "logprobs": false, "presence_penalty": 0, "frequency_penalty": 0.0,
            "logit_bias": {}, "response_format": {"type": "text"}, "store": false,
            "service_tier": "auto", "modalities": ["text"], "user": "u-1",
            "metadata": {"k": "v"}, "safety_identifier": "s", "prompt_cache_key": "c",
            "tools": null, "tool_choice": null, "top_logprobs": null, "seed": -1,
            "stream": true, "stream_options": {"include_usage": true, "include_obfuscation": false},
        })))
        .unwrap();
        assert_eq!(request.sampling.n, 1);
        assert_eq!(request.sampling.seed, Some(u64::MAX));
        assert!(request.sampling.stream && request.sampling.include_usage);
    }

    #[test]
    fn chat_fields_reach_the_sampler() {
        let request = chat_request(&chat(json!({
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
            "n": 3, "max_tokens": 7, "max_completion_tokens": 9, "temperature": 0.5,
            "top_p": 0.9, "seed": 4, "stop": "END",
        })))
        .unwrap();
        assert_eq!(request.model, "m");
        assert_eq!(
            request.messages,
            [
                ChatMessage { role: "system".into(), content: "be brief".into() },
                ChatMessage { role: "user".into(), content: "a\nb".into() },
            ]
        );
        assert_eq!(
            request.sampling,
            Sampling {
                max_tokens: Some(9),
                temperature: Some(0.5),
                top_p: Some(0.9),
                seed: Some(4),
                stop: vec!["END".into()],
                n: 3,
                stream: false,
                include_usage: false,
            }
        );
        // Without stream_options (or include_usage false): no usage event.
        let plain = chat_request(&chat(json!({"stream": true}))).unwrap();
        assert!(plain.sampling.stream && !plain.sampling.include_usage);
        // top_p 0 keeps the most probable token only: greedy.
        let greedy = chat_request(&chat(json!({"top_p": 0, "temperature": 1}))).unwrap();
        assert_eq!((greedy.sampling.temperature, greedy.sampling.top_p), (Some(0.0), None));
    }

    #[test]
    fn completion_fields_are_checked_like_chat() {
        let cases = [
            (json!({"suffix": "end"}), "suffix", "unsupported_parameter"),
            (json!({"logprobs": 0}), "logprobs", "unsupported_parameter"),
            (json!({"best_of": 3}), "best_of", "unsupported_parameter"),
            (json!({"presence_penalty": 1}), "presence_penalty", "unsupported_parameter"),
            (json!({"logit_bias": {"1": -100}}), "logit_bias", "unsupported_parameter"),
            (json!({"n": 99}), "n", "invalid_value"),
            (json!({"messages": []}), "messages", "unknown_parameter"),
            (json!({"max_completion_tokens": 4}), "max_completion_tokens", "unknown_parameter"),
            (json!({"tools": []}), "tools", "unknown_parameter"),
            (json!({"prompt": ["one", "two"]}), "prompt", "unsupported_parameter"),
            (json!({"prompt": [1, 2, 3]}), "prompt", "unsupported_parameter"),
            (json!({"prompt": [[1, 2]]}), "prompt", "unsupported_parameter"),
            (json!({"prompt": []}), "prompt", "invalid_value"),
            (json!({"prompt": 5}), "prompt", "invalid_value"),
            (json!({"echo": "yes"}), "echo", "invalid_value"),
        ];
        for (extra, param, code) in cases {
            let got = refusal(completion_request(&completion(extra.clone())));
            assert_eq!(got, (param.to_owned(), code), "{extra}");
        }
        let request = completion_request(&completion(json!({
            "prompt": ["Once upon a time"], "echo": true, "best_of": 1, "n": 2,
            "max_tokens": 5, "user": "u", "stream": true,
            "stream_options": {"include_usage": false},
        })))
        .unwrap();
        assert_eq!(request.prompt.as_str(), "Once upon a time");
        assert!(request.echo);
        assert_eq!(request.sampling.n, 2);
        assert_eq!(request.sampling.max_tokens, Some(5));
        assert!(request.sampling.stream && !request.sampling.include_usage);
    }

    #[test]
    fn embedding_fields_are_checked() {
        let body = |extra: Value| {
            let mut body = json!({"model": "e", "input": ["a", "b"]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            serde_json::to_vec(&body).unwrap()
        };
        for (extra, param, code) in [
            (json!({"dimensions": 64}), "dimensions", "unsupported_parameter"),
            (json!({"encoding_format": "int8"}), "encoding_format", "invalid_value"),
            (json!({"input": [[1, 2]]}), "input", "unsupported_parameter"),
            (json!({"input": []}), "input", "invalid_value"),
            (json!({"truncate": true}), "truncate", "unknown_parameter"),
        ] {
            let got = refusal(embeddings_request(&body(extra.clone())));
            assert_eq!(got, (param.to_owned(), code), "{extra}");
        }
        let request =
            embeddings_request(&body(json!({"encoding_format": "base64", "user": "u"}))).unwrap();
        assert_eq!((request.input.len(), request.base64), (2, true));
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_a_bad_request() {
        for body in [&b"[]"[..], b"not json", b"", b"{\"model\": \"m\""] {
            assert!(matches!(chat_request(body), Err(OnlineError::BadRequest(_))));
            assert!(matches!(completion_request(body), Err(OnlineError::BadRequest(_))));
            assert!(matches!(embeddings_request(body), Err(OnlineError::BadRequest(_))));
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z_]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("model".to_owned()),
                        Just("messages".to_owned()),
                        Just("prompt".to_owned()),
                        Just("role".to_owned()),
                        Just("content".to_owned()),
                        Just("type".to_owned()),
                        Just("text".to_owned()),
                        Just("stream".to_owned()),
                        Just("stream_options".to_owned()),
                        Just("n".to_owned()),
                        Just("stop".to_owned()),
                        Just("input".to_owned()),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = chat_request(&bytes);
            let _ = completion_request(&bytes);
            let _ = embeddings_request(&bytes);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value()) {
            let bytes = serde_json::to_vec(&value).unwrap();
            let _ = chat_request(&bytes);
            let _ = completion_request(&bytes);
            let _ = embeddings_request(&bytes);
        }
    }
}
