//! Text generation with llama-architecture language models: GGUF files run on llama.cpp
//! ([`super::llama_cpp`]), safetensors directories on candle.
//!
//! An [`LlmModel`] holds the weights once; every [`LlmModel::generate`] call works on its own
//! KV cache (a llama.cpp context sized to the request, or a clone of candle's empty cache over
//! shared `Arc` tensors), which makes one model usable from several threads at once. Tokenizing,
//! sampling, stop conditions and streaming are this module's own, the same for both engines. Decoded text is handed to the
//! caller's `on_text` as it is produced, in complete UTF-8 pieces; generation stops at an end
//! token, a stop string, the caller's `Break`, or the token budget.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::num::NonZeroUsize;
use std::ops::ControlFlow;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::llama;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;
use zeroize::Zeroizing;

use super::EngineError;
use super::chat::ChatTemplate;
use super::gguf_tokenizer;
use super::llama_cpp::{GgufModel, GgufSession, SealedGguf};

/// A model's files: path inside the model (`config.json`, `model.safetensors`, …) → bytes.
pub type ModelFiles = BTreeMap<String, Zeroizing<Vec<u8>>>;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

/// How to generate.
#[derive(Clone, Debug)]
pub struct GenerationParams {
    /// The most tokens to generate (at least 1).
    pub max_tokens: usize,
    /// Sampling temperature; 0 means greedy decoding (deterministic).
    pub temperature: f64,
    /// Nucleus sampling threshold in (0, 1]; ignored when greedy.
    pub top_p: Option<f64>,
    /// Seed of the sampler (used when `temperature > 0`).
    pub seed: u64,
    /// Generation stops before any of these strings; they are not part of the text.
    pub stop: Vec<String>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end token, a stop string, or the caller asked to stop.
    Stop,
    /// `max_tokens` (or the model's context) was reached.
    Length,
}

impl FinishReason {
    /// The OpenAI-style name: `"stop"` or `"length"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// The result of one generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The generated text: exactly the concatenation of the pieces given to `on_text`.
    pub text: Zeroizing<String>,
    /// Tokens in the prompt (after BOS handling).
    pub prompt_tokens: usize,
    /// Tokens generated, including an end token that stopped generation.
    pub completion_tokens: usize,
    /// Why generation ended.
    pub finish_reason: FinishReason,
}

/// Chat-end tokens that stop generation when the vocabulary has them, besides the declared EOS.
const CHAT_END_TOKENS: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"];

/// The weights, loaded once and never mutated.
enum Weights {
    Gguf(GgufModel),
    Full {
        // Boxed: a llama is ten times the size of the other variant.
        model: Box<llama::Llama>,
        /// An empty cache (rotary tables computed once), cloned for every session.
        cache: llama::Cache,
    },
}

/// One generation's model state: the KV cache plus shared weights.
enum Session<'a> {
    Gguf(GgufSession<'a>),
    Full { model: &'a llama::Llama, cache: Box<llama::Cache>, device: &'a Device },
}

impl Session<'_> {
    /// Feeds `tokens` at positions `index_pos..`; the logits after the last one.
    fn forward(&mut self, tokens: &[u32], index_pos: usize) -> Result<Tensor, EngineError> {
        match self {
            Self::Gguf(session) => {
                let logits = session.forward(tokens, index_pos)?;
                let n = logits.len();
                Tensor::from_vec(logits, n, &Device::Cpu).map_err(inference_err)
            }
            Self::Full { model, cache, device } => Tensor::new(tokens, device)
                .and_then(|t| t.unsqueeze(0))
                .and_then(|input| model.forward(&input, index_pos, cache))
                .and_then(|l| l.squeeze(0))
                .map_err(inference_err),
        }
    }
}

/// The threads a GGUF model runs on unless told otherwise: every CPU the process may use.
pub fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// A language model ready to generate. `Send + Sync`: share it behind an `Arc`.
pub struct LlmModel {
    weights: Weights,
    tokenizer: Tokenizer,
    chat_template: Option<ChatTemplate>,
    bos_token_id: Option<u32>,
    add_bos_token: bool,
    /// Token ids that end generation (sorted, deduplicated).
    stop_token_ids: Vec<u32>,
    context_length: usize,
    architecture: String,
    device: Device,
}

impl std::fmt::Debug for LlmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmModel")
            .field("architecture", &self.architecture)
            .field("context_length", &self.context_length)
            .field("stop_token_ids", &self.stop_token_ids)
            .finish_non_exhaustive()
    }
}

fn load_err(what: &str) -> impl Fn(candle_core::Error) -> EngineError + '_ {
    move |e| EngineError::ModelLoad(format!("{what}: {e}"))
}

fn inference_err(e: candle_core::Error) -> EngineError {
    EngineError::Inference(e.to_string())
}

fn tokenizer_err(e: tokenizers::Error) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

/// A GGUF file handed to the loader: the caller's (kept) or the loader's to drop.
enum GgufBytes<'a> {
    Borrowed(&'a [u8]),
    Owned(Zeroizing<Vec<u8>>),
}

impl GgufBytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Borrowed(bytes) => bytes,
            Self::Owned(bytes) => bytes.as_slice(),
        }
    }
}

/// Finds a model file by its path, or else by a unique file name anywhere in the model.
fn find_file<'a>(files: &'a ModelFiles, name: &str) -> Result<Option<&'a [u8]>, EngineError> {
    if let Some(bytes) = files.get(name) {
        return Ok(Some(bytes.as_slice()));
    }
    let suffix = format!("/{name}");
    let mut found = files.iter().filter(|(path, _)| path.ends_with(&suffix));
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some((_, bytes)), None) => Ok(Some(bytes.as_slice())),
        (Some((a, _)), Some((b, _))) => Err(EngineError::ModelLoad(format!(
            "the model has several `{name}` files ({a}, {b}, …); keep one"
        ))),
    }
}

pub(crate) fn require_file<'a>(files: &'a ModelFiles, name: &str) -> Result<&'a [u8], EngineError> {
    find_file(files, name)?
        .ok_or_else(|| EngineError::ModelLoad(format!("the model has no `{name}` file")))
}

/// Prepares a tokenizer loaded from `tokenizer.json` for confidential use: no padding or
/// truncation (the engines handle lengths themselves) and no word cache, which would otherwise
/// keep fragments of earlier requests' text in memory.
pub(crate) fn prepare_tokenizer(tokenizer: &mut Tokenizer) -> Result<(), EngineError> {
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| EngineError::Tokenizer(format!("tokenizer.json: {e}")))?;
    let mut model = tokenizer.get_model().clone();
    model.resize_cache(0);
    tokenizer.with_model(model);
    Ok(())
}

/// Loads every `*.safetensors` file of a model into one name → tensor map (CPU).
pub(crate) fn load_safetensors(
    files: &ModelFiles,
    device: &Device,
) -> Result<HashMap<String, Tensor>, EngineError> {
    let mut tensors = HashMap::new();
    let mut any = false;
    for (path, bytes) in files.iter().filter(|(path, _)| path.ends_with(".safetensors")) {
        any = true;
        let loaded = candle_core::safetensors::load_buffer(bytes, device).map_err(|e| {
            EngineError::ModelLoad(format!("{path} is not a readable safetensors file: {e}"))
        })?;
        for (name, tensor) in loaded {
            if tensors.insert(name.clone(), tensor).is_some() {
                return Err(EngineError::ModelLoad(format!(
                    "tensor `{name}` appears in more than one safetensors file"
                )));
            }
        }
    }
    if !any {
        return Err(EngineError::ModelLoad("the model has no `*.safetensors` weights file".into()));
    }
    Ok(tensors)
}

/// Checks that `name` exists with `shape`, so that loading never reaches candle's panicking paths.
pub(crate) fn expect_tensor(
    tensors: &HashMap<String, Tensor>,
    name: &str,
    shape: &[usize],
) -> Result<(), EngineError> {
    match tensors.get(name) {
        None => Err(EngineError::ModelLoad(format!("the weights have no tensor `{name}`"))),
        Some(t) if t.dims() != shape => Err(EngineError::ModelLoad(format!(
            "tensor `{name}` has shape {:?}, the configuration needs {shape:?}",
            t.dims()
        ))),
        Some(_) => Ok(()),
    }
}

/// Special-token text from `tokenizer_config.json`: a string or `{"content": …}`.
fn special_token_text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `chat_template` from `tokenizer_config.json`: a string, or a list of named templates.
fn config_chat_template(config: &serde_json::Value) -> Option<String> {
    match config.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => items
            .iter()
            .find(|item| item.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|item| item.get("template")?.as_str().map(str::to_owned)),
        _ => None,
    }
}

impl LlmModel {
    /// Loads a GGUF file (llama architecture, any quantization llama.cpp runs: Q4_0, Q4_1,
    /// Q5_*, Q8_0, the K-quants, F16, …, none requantized) with the tokenizer and chat template
    /// from its metadata, to run on [`default_threads`].
    pub fn from_gguf(bytes: &[u8]) -> Result<Self, EngineError> {
        Self::from_gguf_with_threads(bytes, default_threads())
    }

    /// [`LlmModel::from_gguf`], running every generation on `threads` threads.
    pub fn from_gguf_with_threads(
        bytes: &[u8],
        threads: NonZeroUsize,
    ) -> Result<Self, EngineError> {
        Self::load_gguf(GgufBytes::Borrowed(bytes), threads)
    }

    /// [`LlmModel::from_gguf_with_threads`] taking the caller's only copy of the file, which is
    /// erased and freed as soon as it is in the in-memory file llama.cpp reads, before the
    /// weights load: the decrypted weights are then held once, not twice.
    pub fn from_gguf_owned(
        bytes: Zeroizing<Vec<u8>>,
        threads: NonZeroUsize,
    ) -> Result<Self, EngineError> {
        Self::load_gguf(GgufBytes::Owned(bytes), threads)
    }

    /// Reads the tokenizer and chat template from the GGUF metadata, then places the file in
    /// sealed memory for llama.cpp (dropping an owned copy) and loads the weights.
    fn load_gguf(bytes: GgufBytes<'_>, threads: NonZeroUsize) -> Result<Self, EngineError> {
        let device = Device::Cpu;
        let mut reader = Cursor::new(bytes.as_slice());
        let content = gguf_file::Content::read(&mut reader)
            .map_err(load_err("the file is not a readable GGUF model"))?;
        let md = &content.metadata;
        let architecture = match md.get("general.architecture") {
            Some(gguf_file::Value::String(a)) => a.clone(),
            _ => {
                return Err(EngineError::ModelLoad(
                    "the GGUF metadata has no `general.architecture`".into(),
                ));
            }
        };
        if architecture != "llama" {
            return Err(EngineError::UnsupportedModel(format!(
                "GGUF architecture `{architecture}`; only `llama` is supported"
            )));
        }
        for (name, info) in &content.tensor_infos {
            if info.shape.dims().iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).is_none() {
                return Err(EngineError::ModelLoad(format!(
                    "tensor `{name}` declares an impossible shape"
                )));
            }
        }
        let vocab = gguf_tokenizer::from_metadata(md)?;
        let chat_template = match md.get("tokenizer.chat_template") {
            Some(gguf_file::Value::String(source)) => {
                let text =
                    |id: Option<u32>| id.and_then(|id| vocab.token_text(id)).unwrap_or_default();
                Some(ChatTemplate::new(
                    source,
                    &text(vocab.bos_token_id),
                    &text(vocab.eos_token_id),
                )?)
            }
            _ => None,
        };
        let mut stop_token_ids: Vec<u32> = vocab.eos_token_id.into_iter().collect();
        stop_token_ids.extend(
            CHAT_END_TOKENS
                .iter()
                .filter_map(|t| vocab.tokenizer.token_to_id(t))
                .filter(|id| vocab.control_token_ids.contains(id)),
        );
        let sealed = SealedGguf::new(bytes.as_slice())?;
        drop(bytes);
        let weights = GgufModel::load(sealed, threads.get())?;
        let tokens = vocab.tokenizer.get_vocab_size(true);
        if weights.vocab_size() < tokens {
            return Err(EngineError::ModelLoad(format!(
                "the tokenizer has {tokens} tokens, the output layer {}",
                weights.vocab_size()
            )));
        }
        let context_length = weights.context_length();
        if context_length < 2 {
            return Err(EngineError::ModelLoad(format!(
                "the model's context length is {context_length} tokens"
            )));
        }
        Ok(Self::assemble(
            Weights::Gguf(weights),
            vocab.tokenizer,
            chat_template,
            vocab.bos_token_id,
            vocab.add_bos_token,
            stop_token_ids,
            context_length,
            architecture,
            device,
        ))
    }

    /// Loads a llama model from a Hugging Face directory: `config.json`, `tokenizer.json`,
    /// `*.safetensors`, and optionally `tokenizer_config.json` (chat template, BOS/EOS).
    /// Weights are held as F32 on the CPU.
    pub fn from_safetensors(files: &ModelFiles) -> Result<Self, EngineError> {
        let device = Device::Cpu;
        let config_bytes = require_file(files, "config.json")?;
        let raw: serde_json::Value = serde_json::from_slice(config_bytes)
            .map_err(|e| EngineError::ModelLoad(format!("config.json is not valid JSON: {e}")))?;
        let architecture =
            raw.get("model_type").and_then(|m| m.as_str()).unwrap_or("llama").to_owned();
        if architecture != "llama" {
            return Err(EngineError::UnsupportedModel(format!(
                "config.json model_type `{architecture}`; only `llama` is supported"
            )));
        }
        let llama_config: llama::LlamaConfig = serde_json::from_value(raw).map_err(|e| {
            EngineError::ModelLoad(format!("config.json is not a llama configuration: {e}"))
        })?;
        let config = llama_config.into_config(false);
        check_llama_config(&config)?;

        let tokenizer_bytes = require_file(files, "tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_bytes)
            .map_err(|e| EngineError::Tokenizer(format!("tokenizer.json does not load: {e}")))?;
        prepare_tokenizer(&mut tokenizer)?;

        let tokenizer_config = match find_file(files, "tokenizer_config.json")? {
            Some(bytes) => serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| {
                EngineError::ModelLoad(format!("tokenizer_config.json is not valid JSON: {e}"))
            })?,
            None => serde_json::Value::Null,
        };
        let bos_text = special_token_text(tokenizer_config.get("bos_token"));
        let eos_text = special_token_text(tokenizer_config.get("eos_token"));
        let bos_token_id = config
            .bos_token_id
            .or_else(|| bos_text.as_deref().and_then(|t| tokenizer.token_to_id(t)));
        let add_bos_token = tokenizer_config
            .get("add_bos_token")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let mut stop_token_ids = match &config.eos_token_id {
            Some(llama::LlamaEosToks::Single(id)) => vec![*id],
            Some(llama::LlamaEosToks::Multiple(ids)) => ids.clone(),
            None => Vec::new(),
        };
        stop_token_ids.extend(eos_text.as_deref().and_then(|t| tokenizer.token_to_id(t)));
        stop_token_ids.extend(CHAT_END_TOKENS.iter().filter_map(|t| tokenizer.token_to_id(t)));
        let chat_template = match config_chat_template(&tokenizer_config) {
            Some(source) => Some(ChatTemplate::new(
                &source,
                bos_text.as_deref().unwrap_or_default(),
                eos_text.as_deref().unwrap_or_default(),
            )?),
            None => None,
        };

        let tensors = load_safetensors(files, &device)?;
        check_llama_tensors(&tensors, &config)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = llama::Llama::load(vb, &config)
            .map_err(load_err("the llama weights could not be loaded"))?;
        let cache = llama::Cache::new(true, DType::F32, &config, &device)
            .map_err(load_err("the rotary tables could not be built"))?;
        Ok(Self::assemble(
            Weights::Full { model: Box::new(model), cache },
            tokenizer,
            chat_template,
            bos_token_id,
            add_bos_token,
            stop_token_ids,
            config.max_position_embeddings,
            architecture,
            device,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        weights: Weights,
        tokenizer: Tokenizer,
        chat_template: Option<ChatTemplate>,
        bos_token_id: Option<u32>,
        add_bos_token: bool,
        mut stop_token_ids: Vec<u32>,
        context_length: usize,
        architecture: String,
        device: Device,
    ) -> Self {
        stop_token_ids.sort_unstable();
        stop_token_ids.dedup();
        Self {
            weights,
            tokenizer,
            chat_template,
            bos_token_id,
            add_bos_token,
            stop_token_ids,
            context_length,
            architecture,
            device,
        }
    }

    /// Renders a conversation with the model's chat template, ending with the assistant's turn
    /// opened (`add_generation_prompt = true`). Errors when the model has no template.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<Zeroizing<String>, EngineError> {
        match &self.chat_template {
            Some(template) => template.render(messages),
            None => Err(EngineError::ChatTemplate(
                "the model has no chat template (GGUF `tokenizer.chat_template` or \
                 tokenizer_config.json `chat_template`); send a plain prompt instead"
                    .into(),
            )),
        }
    }

    /// The most tokens (prompt plus generated) one generation may hold.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The model family (`llama`).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The prompt's token ids: special tokens written in the text (`<|im_start|>`) are parsed
    /// as such; BOS is prepended when the model asks for it and the text does not start with it.
    fn encode_prompt(&self, prompt: &str) -> Result<Zeroizing<Vec<u32>>, EngineError> {
        let encoding = self.tokenizer.encode(prompt, false).map_err(tokenizer_err)?;
        let mut ids = Zeroizing::new(Vec::with_capacity(encoding.len() + 1));
        if let (true, Some(bos)) = (self.add_bos_token, self.bos_token_id)
            && encoding.get_ids().first() != Some(&bos)
        {
            ids.push(bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// A fresh KV cache for a generation of at most `tokens` tokens (prompt included).
    fn session(&self, tokens: usize) -> Result<Session<'_>, EngineError> {
        Ok(match &self.weights {
            Weights::Gguf(model) => Session::Gguf(model.session(tokens)?),
            Weights::Full { model, cache } => {
                Session::Full { model, cache: Box::new(cache.clone()), device: &self.device }
            }
        })
    }

    /// Generates a continuation of `prompt`, calling `on_text` with each new piece of text;
    /// returning `ControlFlow::Break(())` from it stops generation (finish reason `Stop`).
    pub fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation, EngineError> {
        let sampling = sampling(params)?;
        if params.stop.iter().any(String::is_empty) {
            return Err(EngineError::InvalidArgument("a stop string is empty".into()));
        }
        let prompt_ids = self.encode_prompt(prompt)?;
        let prompt_tokens = prompt_ids.len();
        if prompt_tokens == 0 {
            return Err(EngineError::InvalidArgument("the prompt is empty".into()));
        }
        if prompt_tokens >= self.context_length {
            return Err(EngineError::InputTooLong {
                input: "the prompt".into(),
                tokens: prompt_tokens,
                limit: self.context_length - 1,
            });
        }
        let budget = params.max_tokens.min(self.context_length - prompt_tokens);

        let mut session = self.session(prompt_tokens + budget)?;
        let mut processor = LogitsProcessor::from_sampling(params.seed, sampling);
        let mut decoder = TextDecoder::new(&self.tokenizer);
        let mut output = Output::new(&params.stop, on_text);

        let mut logits = session.forward(&prompt_ids, 0)?;
        let mut completion_tokens = 0;
        let finish_reason = loop {
            let next = processor.sample(&logits).map_err(inference_err)?;
            completion_tokens += 1;
            if self.stop_token_ids.binary_search(&next).is_ok() {
                let last = decoder.finish()?;
                break output.finish(last.as_ref().map(|s| s.as_str()), FinishReason::Stop);
            }
            if let Some(piece) = decoder.push(next)?
                && let ControlFlow::Break(()) = output.push(&piece)
            {
                break FinishReason::Stop;
            }
            if completion_tokens >= budget {
                let last = decoder.finish()?;
                break output.finish(last.as_ref().map(|s| s.as_str()), FinishReason::Length);
            }
            logits = session.forward(&[next], prompt_tokens + completion_tokens - 1)?;
        };
        Ok(Generation { text: output.into_text(), prompt_tokens, completion_tokens, finish_reason })
    }
}

/// The sampler for `params`, after checking them.
fn sampling(params: &GenerationParams) -> Result<Sampling, EngineError> {
    if params.max_tokens == 0 {
        return Err(EngineError::InvalidArgument("max_tokens must be at least 1".into()));
    }
    let temperature = params.temperature;
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(EngineError::InvalidArgument(format!(
            "temperature must be a finite number >= 0, got {temperature}"
        )));
    }
    if let Some(p) = params.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(EngineError::InvalidArgument(format!("top_p must be in (0, 1], got {p}")));
    }
    Ok(if temperature == 0.0 {
        Sampling::ArgMax
    } else {
        match params.top_p {
            Some(p) if p < 1.0 => Sampling::TopP { p, temperature },
            _ => Sampling::All { temperature },
        }
    })
}

fn check_llama_config(c: &llama::Config) -> Result<(), EngineError> {
    let bad = |why: String| Err(EngineError::ModelLoad(format!("config.json: {why}")));
    if c.hidden_size == 0
        || c.num_attention_heads == 0
        || c.num_key_value_heads == 0
        || c.vocab_size == 0
    {
        return bad(
            "hidden_size, num_attention_heads, num_key_value_heads and vocab_size must be positive"
                .into(),
        );
    }
    if c.num_hidden_layers == 0 || c.intermediate_size == 0 {
        return bad("num_hidden_layers and intermediate_size must be positive".into());
    }
    if !c.hidden_size.is_multiple_of(c.num_attention_heads)
        || !(c.hidden_size / c.num_attention_heads).is_multiple_of(2)
    {
        return bad(format!(
            "hidden_size {} must split into {} heads of even size",
            c.hidden_size, c.num_attention_heads
        ));
    }
    if !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
        return bad(format!(
            "num_attention_heads {} is not a multiple of num_key_value_heads {}",
            c.num_attention_heads, c.num_key_value_heads
        ));
    }
    if c.max_position_embeddings < 2 || c.max_position_embeddings > 1 << 20 {
        return bad(format!(
            "max_position_embeddings {} is outside 2..=1048576",
            c.max_position_embeddings
        ));
    }
    Ok(())
}

/// Every tensor `llama::Llama::load` reads, with its shape (candle's loader panics on a
/// missing layer tensor, so this runs first).
fn check_llama_tensors(
    tensors: &HashMap<String, Tensor>,
    c: &llama::Config,
) -> Result<(), EngineError> {
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let head = h / c.num_attention_heads;
    let (q, kv) = (head * c.num_attention_heads, head * c.num_key_value_heads);
    expect_tensor(tensors, "model.embed_tokens.weight", &[v, h])?;
    expect_tensor(tensors, "model.norm.weight", &[h])?;
    if !c.tie_word_embeddings {
        expect_tensor(tensors, "lm_head.weight", &[v, h])?;
    }
    for layer in 0..c.num_hidden_layers {
        let p = format!("model.layers.{layer}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", [q, h]),
            ("self_attn.k_proj.weight", [kv, h]),
            ("self_attn.v_proj.weight", [kv, h]),
            ("self_attn.o_proj.weight", [h, q]),
            ("mlp.gate_proj.weight", [i, h]),
            ("mlp.up_proj.weight", [i, h]),
            ("mlp.down_proj.weight", [h, i]),
        ] {
            expect_tensor(tensors, &format!("{p}.{name}"), &shape)?;
        }
        expect_tensor(tensors, &format!("{p}.input_layernorm.weight"), &[h])?;
        expect_tensor(tensors, &format!("{p}.post_attention_layernorm.weight"), &[h])?;
    }
    Ok(())
}

/// Turns generated token ids into text pieces that are complete UTF-8.
///
/// Byte-level BPE tokens can end in the middle of a character. The decoder keeps a small window
/// of tokens: it decodes the window with and without the newest tokens and emits the difference
/// only when the newer text does not end in a partial character (decoded as U+FFFD). Decoding a
/// window rather than single tokens also keeps decoders that look at neighbours (WordPiece
/// `##`, SentencePiece's leading space) right.
struct TextDecoder<'t> {
    tokenizer: &'t Tokenizer,
    tokens: Zeroizing<Vec<u32>>,
    /// Start of the window.
    window: usize,
    /// Tokens before this index have been emitted.
    emitted: usize,
}

impl<'t> TextDecoder<'t> {
    fn new(tokenizer: &'t Tokenizer) -> Self {
        Self { tokenizer, tokens: Zeroizing::new(Vec::new()), window: 0, emitted: 0 }
    }

    fn decode(&self, range: std::ops::Range<usize>) -> Result<Zeroizing<String>, EngineError> {
        self.tokenizer.decode(&self.tokens[range], true).map(Zeroizing::new).map_err(tokenizer_err)
    }

    /// The text the window's unemitted tokens add, if complete; `force` emits even a partial
    /// character (at the end of generation).
    fn piece(&mut self, force: bool) -> Result<Option<Zeroizing<String>>, EngineError> {
        if self.emitted == self.tokens.len() {
            return Ok(None);
        }
        let before = self.decode(self.window..self.emitted)?;
        let after = self.decode(self.window..self.tokens.len())?;
        let complete = !after.ends_with('\u{FFFD}');
        if after.len() > before.len() && after.starts_with(before.as_str()) && (complete || force) {
            let piece = Zeroizing::new(after[before.len()..].to_owned());
            self.window = self.emitted;
            self.emitted = self.tokens.len();
            return Ok(Some(piece));
        }
        Ok(None)
    }

    fn push(&mut self, id: u32) -> Result<Option<Zeroizing<String>>, EngineError> {
        self.tokens.push(id);
        self.piece(false)
    }

    fn finish(&mut self) -> Result<Option<Zeroizing<String>>, EngineError> {
        self.piece(true)
    }
}

/// Hands text to the caller, holding back what might be the start of a stop string.
struct Output<'a> {
    stop: &'a [String],
    on_text: &'a mut dyn FnMut(&str) -> ControlFlow<()>,
    /// Everything handed to `on_text`.
    sent: Zeroizing<String>,
    /// Decoded text not yet handed over (a possible stop-string prefix).
    pending: Zeroizing<String>,
}

impl<'a> Output<'a> {
    fn new(stop: &'a [String], on_text: &'a mut dyn FnMut(&str) -> ControlFlow<()>) -> Self {
        Self {
            stop,
            on_text,
            sent: Zeroizing::new(String::new()),
            pending: Zeroizing::new(String::new()),
        }
    }

    fn send(&mut self, upto: usize) -> ControlFlow<()> {
        if upto == 0 {
            return ControlFlow::Continue(());
        }
        let flow = (self.on_text)(&self.pending[..upto]);
        self.sent.push_str(&self.pending[..upto]);
        self.pending.drain(..upto);
        flow
    }

    /// Adds decoded text. `Break` means stop: a stop string matched (the text before it was
    /// sent) or the caller asked to stop.
    fn push(&mut self, piece: &str) -> ControlFlow<()> {
        self.pending.push_str(piece);
        // A stop string cannot start in text already sent: its beginning would have been held.
        if let Some(at) = self.stop.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let _ = self.send(at);
            self.pending.clear();
            return ControlFlow::Break(());
        }
        let held = self
            .stop
            .iter()
            .map(|s| {
                (1..s.len())
                    .rev()
                    .find(|&k| s.is_char_boundary(k) && self.pending.ends_with(&s[..k]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        self.send(self.pending.len() - held)
    }

    /// Ends generation for `reason` (end token or budget): the decoder's last piece goes
    /// through the stop-string check, then held-back text is released.
    fn finish(&mut self, last: Option<&str>, reason: FinishReason) -> FinishReason {
        if let Some(last) = last
            && let ControlFlow::Break(()) = self.push(last)
        {
            return FinishReason::Stop;
        }
        let _ = self.send(self.pending.len());
        reason
    }

    fn into_text(self) -> Zeroizing<String> {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(stop: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut seen = Vec::new();
        let mut on_text = |t: &str| {
            seen.push(t.to_owned());
            ControlFlow::Continue(())
        };
        let mut out = Output::new(&stop, &mut on_text);
        let mut stopped = false;
        for p in pieces {
            if out.push(p).is_break() {
                stopped = true;
                break;
            }
        }
        if !stopped {
            out.finish(None, FinishReason::Length);
        }
        let text = out.into_text().to_string();
        (seen, text, stopped)
    }

    #[test]
    fn stop_string_split_across_pieces_is_withheld() {
        let (seen, text, stopped) =
            collect(&["\n\nUser:"], &["Hello", " there\n", "\nUs", "er: more"]);
        assert!(stopped);
        assert_eq!(text, "Hello there");
        assert_eq!(seen.concat(), text);
    }

    #[test]
    fn held_back_prefix_is_released_when_it_does_not_complete() {
        let (seen, text, stopped) = collect(&["END"], &["a E", "N", "x", "y"]);
        assert!(!stopped);
        assert_eq!(text, "a ENxy");
        assert_eq!(seen, vec!["a ", "ENx", "y"]);
    }

    #[test]
    fn earliest_stop_string_wins() {
        let (_, text, stopped) = collect(&["cd", "b"], &["abcd"]);
        assert!(stopped);
        assert_eq!(text, "a");
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let base = GenerationParams {
            max_tokens: 4,
            temperature: 0.0,
            top_p: None,
            seed: 0,
            stop: Vec::new(),
        };
        assert!(sampling(&GenerationParams { max_tokens: 0, ..base.clone() }).is_err());
        assert!(sampling(&GenerationParams { temperature: -1.0, ..base.clone() }).is_err());
        assert!(sampling(&GenerationParams { temperature: f64::NAN, ..base.clone() }).is_err());
        assert!(
            sampling(&GenerationParams { temperature: 0.5, top_p: Some(0.0), ..base.clone() })
                .is_err()
        );
        assert_eq!(sampling(&base).expect("greedy"), Sampling::ArgMax);
        assert_eq!(
            sampling(&GenerationParams { temperature: 0.7, top_p: Some(0.9), ..base })
                .expect("top-p"),
            Sampling::TopP { p: 0.9, temperature: 0.7 }
        );
    }
}
