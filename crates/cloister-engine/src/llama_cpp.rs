//! llama.cpp (through the `llama-cpp-2` binding, built from its vendored source) as the engine
//! for GGUF language models.
//!
//! llama.cpp loads a model from a path. The worker holds the GGUF bytes in memory (decrypted
//! inside the enclave) and they must never reach the host's disk, so [`GgufModel::load`] copies
//! them into an anonymous in-memory file (`memfd_create`), seals it against any change (write,
//! grow, shrink, further seals), hands llama.cpp its `/proc/self/fd/N` path, and closes the
//! descriptor once the model is loaded. llama.cpp maps the sealed file read-only, so the weights
//! are held once, in memory.
//!
//! llama.cpp's own log lines go to `tracing` under the target `llama-cpp-2` (the binary's default
//! filter keeps warnings and errors only). The prompt never reaches llama.cpp as text: the
//! engine tokenizes it itself and hands over token ids, so no llama.cpp log line can hold it.

use std::num::NonZeroU32;
use std::sync::{Mutex, OnceLock};

use super::EngineError;
use crate::memfd::SealedFile;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LogOptions, send_logs_to_tracing};

/// Tokens handed to llama.cpp in one `decode` call while reading the prompt.
const PROMPT_BATCH: usize = 512;

/// The process-wide llama.cpp backend, initialised once (a second `llama_backend_init` is
/// refused by the binding).
fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::ModelLoad(format!("llama.cpp could not start: {e}")))
}

/// A GGUF model loaded by llama.cpp. `Send + Sync`; every generation makes its own context.
pub(crate) struct GgufModel {
    model: LlamaModel,
    /// Creating a llama.cpp context writes to the model (see `LlamaModel::new_context`), so
    /// contexts are created one at a time.
    new_context: Mutex<()>,
    threads: i32,
}

/// A GGUF file as a sealed anonymous in-memory file, ready for llama.cpp; the descriptor closes
/// when it drops. Its pages are the process's memory, never a disk's.
pub(crate) struct SealedGguf(SealedFile);

impl SealedGguf {
    pub(crate) fn new(bytes: &[u8]) -> Result<Self, EngineError> {
        SealedFile::new("cloister-gguf", bytes).map(Self).map_err(|e| {
            EngineError::ModelLoad(format!("the model could not be placed in memory: {e}"))
        })
    }
}

impl GgufModel {
    /// Loads a GGUF file (already checked to parse, with a supported architecture) with
    /// llama.cpp, running on `threads` threads; the in-memory file's descriptor is closed once
    /// llama.cpp has it (its read-only mapping keeps the weights).
    pub(crate) fn load(file: SealedGguf, threads: usize) -> Result<Self, EngineError> {
        let backend = backend()?;
        let threads = i32::try_from(threads)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| EngineError::InvalidArgument(format!("{threads} threads")))?;
        let path = file.0.path();
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default());
        drop(file);
        let model = model.map_err(|e| {
            EngineError::ModelLoad(format!("the GGUF weights could not be loaded (llama.cpp: {e})"))
        })?;
        Ok(Self { model, new_context: Mutex::new(()), threads })
    }

    /// The context length the model was trained with.
    pub(crate) fn context_length(&self) -> usize {
        usize::try_from(self.model.n_ctx_train()).unwrap_or(usize::MAX)
    }

    /// The vocabulary size of the model's output layer.
    pub(crate) fn vocab_size(&self) -> usize {
        usize::try_from(self.model.n_vocab()).unwrap_or(0)
    }

    /// A session holding up to `tokens` tokens (prompt plus generated).
    pub(crate) fn session(&self, tokens: usize) -> Result<GgufSession<'_>, EngineError> {
        let n_ctx = u32::try_from(tokens)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| EngineError::InvalidArgument(format!("a context of {tokens} tokens")))?;
        let batch = tokens.min(PROMPT_BATCH);
        let batch_u32 = u32::try_from(batch).unwrap_or(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(Some(n_ctx))
            .with_n_batch(batch_u32)
            .with_n_ubatch(batch_u32)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let context = {
            let _one_at_a_time =
                self.new_context.lock().map_err(|_| inference("a context creation panicked"))?;
            self.model.new_context(backend()?, params)
        }
        .map_err(|e| inference(&format!("llama.cpp could not make a context: {e}")))?;
        Ok(GgufSession {
            context,
            batch: LlamaBatch::new(batch, 1),
            batch_size: batch,
            vocab: self.vocab_size(),
        })
    }
}

fn inference(what: &str) -> EngineError {
    EngineError::Inference(what.to_owned())
}

/// One generation's llama.cpp context (its KV cache).
pub(crate) struct GgufSession<'m> {
    context: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    vocab: usize,
}

impl GgufSession<'_> {
    /// Feeds `tokens` at positions `start..`, returning the logits after the last one.
    pub(crate) fn forward(
        &mut self,
        tokens: &[u32],
        start: usize,
    ) -> Result<Vec<f32>, EngineError> {
        let last_chunk = tokens.chunks(self.batch_size).count().saturating_sub(1);
        let mut position = start;
        for (index, chunk) in tokens.chunks(self.batch_size).enumerate() {
            self.batch.clear();
            for (k, &token) in chunk.iter().enumerate() {
                let token = i32::try_from(token).map_err(|_| inference("token id out of range"))?;
                let pos =
                    i32::try_from(position).map_err(|_| inference("position out of range"))?;
                let wants_logits = index == last_chunk && k + 1 == chunk.len();
                self.batch
                    .add(LlamaToken::new(token), pos, &[0], wants_logits)
                    .map_err(|e| inference(&format!("llama.cpp batch: {e}")))?;
                position += 1;
            }
            self.context
                .decode(&mut self.batch)
                .map_err(|e| inference(&format!("llama.cpp decode: {e}")))?;
        }
        let last = self.batch.n_tokens() - 1;
        if last < 0 {
            return Err(inference("nothing to decode"));
        }
        let logits = self.context.get_logits_ith(last);
        if logits.len() != self.vocab {
            return Err(inference("llama.cpp returned logits of the wrong size"));
        }
        Ok(logits.to_vec())
    }
}
