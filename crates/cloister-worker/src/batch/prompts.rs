//! Batch jobs over prompts: a data set of JSON lines, each a prompt (or a conversation) for a
//! GGUF language model, answered with greedy decoding so that a resumed job gives exactly the
//! answers of an uninterrupted one.
//!
//! Input, one JSON object per line (blank lines are skipped):
//!
//! ```text
//! {"prompt": "What is the capital of France?", "max_tokens": 32}
//! {"messages": [{"role": "system", "content": "…"}, {"role": "user", "content": "…"}]}
//! ```
//!
//! Output, one JSON object per prompt, in order:
//! `{"row": 0, "text": "…", "finish_reason": "stop", "prompt_tokens": 31, "completion_tokens": 8}`.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use cloister_engine::{ChatMessage, EngineError, GenerationParams, LlmModel};

/// Answer length when a line gives none.
pub const DEFAULT_MAX_TOKENS: usize = 128;
/// The longest answer a line may ask for.
pub const MAX_MAX_TOKENS: usize = 2048;
/// The most prompts in one data set.
pub const MAX_PROMPTS: usize = 1_000_000;

/// Why a prompts data set was refused. Messages name the line, never its text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptsError {
    /// The data set is not UTF-8.
    #[error("the prompts data set is not UTF-8 text")]
    NotUtf8,
    /// A line is not a prompt object.
    #[error(
        "line {line} of the prompts data set is not a JSON object with \"prompt\" (text) or \
         \"messages\" (a list of {{role, content}}), and optionally \"max_tokens\": {reason}"
    )]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong (from the JSON parser; no text of the line).
        reason: String,
    },
    /// No prompts.
    #[error("the prompts data set holds no prompts")]
    Empty,
    /// Too many prompts.
    #[error("the prompts data set holds more than {MAX_PROMPTS} prompts")]
    TooMany,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    max_tokens: Option<usize>,
}

/// One prompt, as a conversation.
pub struct Prompt {
    messages: Vec<ChatMessage>,
    max_tokens: usize,
}

impl Drop for Prompt {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for message in &mut self.messages {
            message.content.zeroize();
        }
    }
}

/// Parses a prompts data set (JSON lines).
pub fn parse(data: &[u8]) -> Result<Vec<Prompt>, PromptsError> {
    let text = std::str::from_utf8(data).map_err(|_| PromptsError::NotUtf8)?;
    let mut prompts = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line = index + 1;
        let bad = |reason: String| PromptsError::Line { line, reason };
        // serde_json's own messages may quote the input; say only what and where.
        let parsed: Line = serde_json::from_str(raw).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => "a field has the wrong type",
                _ => "it is not valid JSON",
            };
            bad(format!("{what} (column {})", e.column()))
        })?;
        let messages = match (parsed.prompt, parsed.messages) {
            (Some(prompt), None) => vec![ChatMessage { role: "user".into(), content: prompt }],
            (None, Some(messages)) if !messages.is_empty() => messages,
            (None, Some(_)) => return Err(bad("\"messages\" is empty".into())),
            (Some(_), Some(_)) => {
                return Err(bad("it has both \"prompt\" and \"messages\"".into()));
            }
            (None, None) => return Err(bad("it has neither \"prompt\" nor \"messages\"".into())),
        };
        let max_tokens = parsed.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if !(1..=MAX_MAX_TOKENS).contains(&max_tokens) {
            return Err(bad(format!("\"max_tokens\" must be between 1 and {MAX_MAX_TOKENS}")));
        }
        if prompts.len() == MAX_PROMPTS {
            return Err(PromptsError::TooMany);
        }
        prompts.push(Prompt { messages, max_tokens });
    }
    if prompts.is_empty() {
        return Err(PromptsError::Empty);
    }
    Ok(prompts)
}

#[derive(Serialize)]
struct Answer<'a> {
    row: u64,
    text: &'a str,
    finish_reason: &'static str,
    prompt_tokens: usize,
    completion_tokens: usize,
}

/// Answers `prompts` (rows `first_row ..`) with greedy decoding; returns the JSON lines and the
/// tokens generated.
pub fn answer(
    model: &LlmModel,
    prompts: &[Prompt],
    first_row: u64,
) -> Result<(Zeroizing<Vec<u8>>, u64), EngineError> {
    let mut out = Zeroizing::new(Vec::new());
    let mut generated = 0u64;
    for (offset, prompt) in prompts.iter().enumerate() {
        let rendered = model.render_chat(&prompt.messages)?;
        let params = GenerationParams {
            max_tokens: prompt.max_tokens,
            temperature: 0.0,
            top_p: None,
            seed: 0,
            stop: Vec::new(),
        };
        let generation = model.generate(&rendered, &params, &mut |_| ControlFlow::Continue(()))?;
        generated = generated.saturating_add(generation.completion_tokens as u64);
        let line = Answer {
            row: first_row + offset as u64,
            text: &generation.text,
            finish_reason: generation.finish_reason.as_str(),
            prompt_tokens: generation.prompt_tokens,
            completion_tokens: generation.completion_tokens,
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_writer(&mut *out, &line)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        out.push(b'\n');
    }
    Ok((out, generated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_conversations() {
        let data = br#"{"prompt": "hi", "max_tokens": 3}

{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
"#;
        let prompts = parse(data).unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(
            prompts[0].messages,
            [ChatMessage { role: "user".into(), content: "hi".into() }]
        );
        assert_eq!(prompts[0].max_tokens, 3);
        assert_eq!(prompts[1].messages.len(), 2);
        assert_eq!(prompts[1].max_tokens, DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn bad_lines_are_refused_by_number_without_their_text() {
        for (data, expect) in [
            (&b"{\"prompt\": \"a\"}\n{\"secret words\": 1}"[..], "line 2"),
            (b"{\"prompt\": \"a\", \"messages\": []}", "both"),
            (b"{\"messages\": []}", "empty"),
            (b"{}", "neither"),
            (b"{\"prompt\": \"a\", \"max_tokens\": 0}", "between 1 and"),
            (b"{\"prompt\": \"a\", \"max_tokens\": 99999}", "between 1 and"),
            (b"not json", "line 1"),
            (b"{\"prompt\": \"a\", \"max_tokens\": \"secret words\"}", "wrong type"),
        ] {
            let err = parse(data).err().unwrap().to_string();
            assert!(err.contains(expect), "{err}");
            assert!(!err.contains("secret words"), "{err}");
        }
        assert!(matches!(parse(b"\n \n"), Err(PromptsError::Empty)));
        assert!(matches!(parse(&[0xff, 0xfe]), Err(PromptsError::NotUtf8)));
    }
}
