//! ML engines that run inside the enclave worker.
//!
//! The ONNX engine runs a model on onnxruntime (the pinned `libonnxruntime` the worker loads with
//! [`load_onnxruntime`], through `ort`) or on tract (pure Rust, the fallback), chosen per model
//! ([`OnnxEngine`]). [`OnnxModel::infer_inputs`] runs named float32/int64 inputs; [`run_batch`]
//! runs a model with one float32 input of shape `[N, d1, d2, …]` over a numeric [`Table`]: each
//! table row holds exactly `d1*d2*…` values and becomes one sample; rows are run in batches and
//! the first output is collected into [`Predictions`].
//!
//! ```no_run
//! use cloister_engine::{run_batch, OnnxModel, Table};
//! # fn main() -> Result<(), cloister_engine::EngineError> {
//! let model = OnnxModel::load(&std::fs::read("model.onnx").unwrap_or_default())?;
//! let table = Table::from_csv(b"a,b\n1,2\n3,4\n")?;
//! let predictions = run_batch(&model, &table, 64, &mut |done| eprintln!("{done} rows"))?;
//! let csv = predictions.to_csv();
//! # let _ = csv; Ok(()) }
//! ```
//!
//! The language-model engine ([`LlmModel`]) generates text with llama-architecture models from a
//! GGUF file (llama.cpp, any of its quantizations; tokenizer and chat template read from its
//! metadata by [`gguf_tokenizer`] and [`chat`]) or a safetensors directory (candle), streaming
//! complete UTF-8 pieces.
//! The embedding engine ([`Embedder`], candle BERT) turns texts into L2-normalised mean-pooled
//! sentence vectors.
//!
//! Hybrid execution ([`HybridModel`]): the linear layers of a dense ONNX graph go through the
//! linear-algebra boundary ([`linear`]) — computed in the enclave, or blinded, sent to an
//! untrusted accelerator and verified — while everything else stays in the enclave.

pub mod chat;
pub mod embed;
mod error;
pub mod gguf_tokenizer;
pub mod hybrid;
mod inspect;
pub mod linear;
mod llama_cpp;
pub mod llm;
mod memfd;
mod onnx;
mod onnxruntime;
mod predictions;
mod table;
pub mod train;

pub use embed::{Embedder, Embeddings};
pub use error::EngineError;
pub use hybrid::{HybridModel, HybridOutput};
pub use inspect::inspect;
pub use linear::{LayerRun, LayerStatus, LinearPlan, Placement};
pub use llm::{
    ChatMessage, FinishReason, Generation, GenerationParams, LlmModel, ModelFiles, default_threads,
};
pub use onnx::{
    InputTensor, InputValues, NamedTensor, OnnxEngine, OnnxModel, OnnxOptions, TensorSchema,
    run_batch,
};
pub use onnxruntime::{
    ONNXRUNTIME_LIBRARY, ONNXRUNTIME_SHA256, ONNXRUNTIME_VERSION, load_onnxruntime,
    onnxruntime_loaded,
};
pub use predictions::Predictions;
pub use table::Table;
pub use train::{Classifier, DpSgd, LabelledRows, TrainConfig, TrainMetrics, federated_average};
