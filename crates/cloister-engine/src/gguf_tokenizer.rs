//! Builds a `tokenizers::Tokenizer` from the vocabulary embedded in a GGUF file's metadata.
//!
//! GGUF files made by llama.cpp's converter carry the tokenizer as metadata: the token strings
//! (`tokenizer.ggml.tokens`), their kinds (`tokenizer.ggml.token_type`), the BPE merges
//! (`tokenizer.ggml.merges`), the pre-tokenizer family (`tokenizer.ggml.pre`) and the special
//! token ids. Only the byte-level BPE family (`tokenizer.ggml.model = "gpt2"`) is supported;
//! anything else is refused with an error naming the key, never approximated.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::EngineError;

/// GGUF `token_type` of a control token (`<|im_start|>`, `<|endoftext|>`, …).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF `token_type` of a user-defined token (matched as a whole, not special).
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The Llama 3 pre-tokenizer split (llama.cpp `llama-bpe`), applied before byte-level mapping.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer rebuilt from GGUF metadata, with the special token ids the model declares.
#[derive(Clone, Debug)]
pub struct GgufVocab {
    /// The byte-level BPE tokenizer; control tokens are single special tokens.
    pub tokenizer: Tokenizer,
    /// `tokenizer.ggml.bos_token_id`, when present.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`, when present.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (false when absent): prepend BOS to every prompt.
    pub add_bos_token: bool,
    /// The ids of all control tokens (GGUF token type 3).
    pub control_token_ids: Vec<u32>,
}

impl GgufVocab {
    /// The text of a token id, if the vocabulary has it.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }
}

fn missing(key: &str) -> EngineError {
    EngineError::Tokenizer(format!("the GGUF metadata has no `{key}`"))
}

fn wrong_type(key: &str, expected: &str) -> EngineError {
    EngineError::Tokenizer(format!("the GGUF metadata `{key}` is not {expected}"))
}

fn get_array<'a>(
    metadata: &'a HashMap<String, Value>,
    key: &str,
) -> Result<&'a [Value], EngineError> {
    match metadata.get(key) {
        None => Err(missing(key)),
        Some(Value::Array(values)) => Ok(values),
        Some(_) => Err(wrong_type(key, "an array")),
    }
}

fn get_string<'a>(
    metadata: &'a HashMap<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, EngineError> {
    match metadata.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(key, "a string")),
    }
}

fn get_id(
    metadata: &HashMap<String, Value>,
    key: &str,
    vocab_len: usize,
) -> Result<Option<u32>, EngineError> {
    let Some(value) = metadata.get(key) else {
        return Ok(None);
    };
    let id = value_as_i64(value).ok_or_else(|| wrong_type(key, "an integer"))?;
    match u32::try_from(id) {
        Ok(id) if (id as usize) < vocab_len => Ok(Some(id)),
        _ => Err(EngineError::Tokenizer(format!(
            "the GGUF metadata `{key}` = {id} is outside the vocabulary of {vocab_len} tokens"
        ))),
    }
}

fn value_as_i64(value: &Value) -> Option<i64> {
    Some(match value {
        Value::U8(v) => i64::from(*v),
        Value::I8(v) => i64::from(*v),
        Value::U16(v) => i64::from(*v),
        Value::I16(v) => i64::from(*v),
        Value::U32(v) => i64::from(*v),
        Value::I32(v) => i64::from(*v),
        Value::U64(v) => i64::try_from(*v).ok()?,
        Value::I64(v) => *v,
        _ => return None,
    })
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` family.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, EngineError> {
    // GPT-2's byte-level split, without a prefix space (the GGUF converters record
    // `add_space_prefix = false` for these families).
    let byte_level = ByteLevel::new(false, true, true);
    Ok(match pre {
        "gpt2" | "default" => byte_level.into(),
        // SmolLM / StarCoder: every digit is its own pre-token, then GPT-2's split.
        "smollm" | "starcoder" | "refact" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        }
        "llama-bpe" | "llama3" => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_SPLIT.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| EngineError::Tokenizer(format!("pre-tokenizer regex: {e}")))?;
            Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into()
        }
        other => {
            return Err(EngineError::Tokenizer(format!(
                "unsupported GGUF pre-tokenizer `tokenizer.ggml.pre` = {other:?} \
                 (supported: gpt2, default, smollm, starcoder, refact, llama-bpe)"
            )));
        }
    })
}

/// Rebuilds the model's tokenizer from GGUF metadata.
///
/// Errors name the metadata key that is missing, mistyped or unsupported.
pub fn from_metadata(metadata: &HashMap<String, Value>) -> Result<GgufVocab, EngineError> {
    match get_string(metadata, "tokenizer.ggml.model")? {
        Some("gpt2") => {}
        Some(other) => {
            return Err(EngineError::Tokenizer(format!(
                "unsupported GGUF tokenizer `tokenizer.ggml.model` = {other:?}; only byte-level \
                 BPE (\"gpt2\") is supported"
            )));
        }
        None => return Err(missing("tokenizer.ggml.model")),
    }

    let tokens = get_array(metadata, "tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err(EngineError::Tokenizer(
            "the GGUF vocabulary `tokenizer.ggml.tokens` is empty".into(),
        ));
    }
    let token_types = match metadata.get("tokenizer.ggml.token_type") {
        None => None,
        Some(Value::Array(types)) if types.len() == tokens.len() => Some(types),
        Some(Value::Array(types)) => {
            return Err(EngineError::Tokenizer(format!(
                "the GGUF metadata `tokenizer.ggml.token_type` has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        Some(_) => return Err(wrong_type("tokenizer.ggml.token_type", "an array")),
    };

    let mut vocab = Vocab::default();
    vocab.reserve(tokens.len());
    let mut control = Vec::new();
    let mut user_defined = Vec::new();
    for (index, token) in tokens.iter().enumerate() {
        let Value::String(text) = token else {
            return Err(wrong_type("tokenizer.ggml.tokens", "an array of strings"));
        };
        let id = u32::try_from(index).map_err(|_| {
            EngineError::Tokenizer("the GGUF vocabulary has more than 2^32 tokens".into())
        })?;
        // A duplicated token string keeps its first id, as llama.cpp does.
        vocab.entry(text.clone()).or_insert(id);
        let kind = match token_types {
            Some(types) => value_as_i64(&types[index])
                .ok_or_else(|| wrong_type("tokenizer.ggml.token_type", "an array of integers"))?,
            None => 1,
        };
        match kind {
            TOKEN_TYPE_CONTROL => control.push((id, text.as_str())),
            TOKEN_TYPE_USER_DEFINED => user_defined.push(text.as_str()),
            _ => {}
        }
    }

    let merges_values = get_array(metadata, "tokenizer.ggml.merges")?;
    let mut merges = Vec::with_capacity(merges_values.len());
    for merge in merges_values {
        let Value::String(merge) = merge else {
            return Err(wrong_type("tokenizer.ggml.merges", "an array of strings"));
        };
        let Some((left, right)) = merge.split_once(' ') else {
            return Err(EngineError::Tokenizer(format!(
                "the GGUF merge {merge:?} is not two tokens separated by a space"
            )));
        };
        merges.push((left.to_owned(), right.to_owned()));
    }

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        // No word cache: it would keep fragments of prompts in memory after a request.
        .cache_capacity(0)
        .build()
        .map_err(|e| {
            EngineError::Tokenizer(format!(
                "the GGUF vocabulary and merges do not form a BPE model: {e}"
            ))
        })?;

    let pre = get_string(metadata, "tokenizer.ggml.pre")?.unwrap_or("default");
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    tokenizer
        .add_special_tokens(control.iter().map(|(_, text)| AddedToken::from(*text, true)))
        .map_err(|e| EngineError::Tokenizer(format!("adding the control tokens: {e}")))?;
    tokenizer
        .add_tokens(user_defined.iter().map(|text| AddedToken::from(*text, false)))
        .map_err(|e| EngineError::Tokenizer(format!("adding the user-defined tokens: {e}")))?;

    let add_bos_token = match metadata.get("tokenizer.ggml.add_bos_token") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(wrong_type("tokenizer.ggml.add_bos_token", "a boolean")),
    };
    Ok(GgufVocab {
        tokenizer,
        bos_token_id: get_id(metadata, "tokenizer.ggml.bos_token_id", tokens.len())?,
        eos_token_id: get_id(metadata, "tokenizer.ggml.eos_token_id", tokens.len())?,
        add_bos_token,
        control_token_ids: control.iter().map(|(id, _)| *id).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.to_owned())
    }

    /// A toy byte-level vocabulary: single bytes for "a", "b", "Ġ", merges "a b" and "Ġ ab",
    /// plus one control token.
    fn toy_metadata() -> HashMap<String, Value> {
        let mut md = HashMap::new();
        md.insert("tokenizer.ggml.model".into(), s("gpt2"));
        md.insert("tokenizer.ggml.pre".into(), s("gpt2"));
        md.insert(
            "tokenizer.ggml.tokens".into(),
            Value::Array(vec![s("<|end|>"), s("a"), s("b"), s("Ġ"), s("ab"), s("Ġab")]),
        );
        md.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array(vec![
                Value::I32(3),
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
            ]),
        );
        md.insert("tokenizer.ggml.merges".into(), Value::Array(vec![s("a b"), s("Ġ ab")]));
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(0));
        md
    }

    #[test]
    fn toy_vocabulary_merges_and_keeps_control_tokens_whole() {
        let vocab = from_metadata(&toy_metadata()).expect("toy vocabulary");
        let enc = vocab.tokenizer.encode("ab ab<|end|>", false).expect("encode");
        assert_eq!(enc.get_ids(), &[4, 5, 0]);
        assert_eq!(vocab.eos_token_id, Some(0));
        assert_eq!(vocab.control_token_ids, vec![0]);
        let text = vocab.tokenizer.decode(&[4, 5], true).expect("decode");
        assert_eq!(text, "ab ab");
    }

    #[test]
    fn refuses_sentencepiece_vocabularies_and_unknown_pre_tokenizers() {
        let mut md = toy_metadata();
        md.insert("tokenizer.ggml.model".into(), s("llama"));
        let err = from_metadata(&md).expect_err("llama tokenizer refused");
        assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");

        let mut md = toy_metadata();
        md.insert("tokenizer.ggml.pre".into(), s("made-up"));
        let err = from_metadata(&md).expect_err("unknown pre refused");
        assert!(err.to_string().contains("tokenizer.ggml.pre"), "{err}");
    }

    #[test]
    fn refuses_out_of_range_eos_and_missing_merges() {
        let mut md = toy_metadata();
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(99));
        let err = from_metadata(&md).expect_err("eos out of range");
        assert!(err.to_string().contains("eos_token_id"), "{err}");

        let mut md = toy_metadata();
        md.remove("tokenizer.ggml.merges");
        let err = from_metadata(&md).expect_err("no merges");
        assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");
    }
}
