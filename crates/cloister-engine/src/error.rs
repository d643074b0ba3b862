//! The engine's error type.

/// Everything that can go wrong when parsing data, loading a model or running it.
///
/// Each variant carries a human-readable explanation meant for the job's owner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The data set (CSV or raw values) is malformed: ragged rows, non-numeric cells, empty.
    #[error("invalid data set: {0}")]
    InvalidData(String),
    /// The model bytes do not parse as ONNX, or tract cannot type/optimize the graph.
    #[error("the model could not be loaded: {0}")]
    ModelLoad(String),
    /// The model parses but is outside what the engine runs (several inputs, non-float input, …).
    #[error("unsupported model: {0}")]
    UnsupportedModel(String),
    /// The data set does not fit the model's input.
    #[error("the data set does not fit the model: {0}")]
    SchemaMismatch(String),
    /// The model failed while running on the data.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The onnxruntime library is not loaded, or was refused (its SHA-256 is not the pinned
    /// one) or failed to load.
    #[error("onnxruntime: {0}")]
    Runtime(String),
    /// A caller-supplied argument is out of range (e.g. a batch size of zero).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tokenizer could not be built from the model's files, or failed on the text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The model's chat template does not parse or fails to render the conversation.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// An input is longer than the model accepts (the prompt plus at least one generated
    /// token for a language model; one text for an embedding model).
    #[error("{input} has {tokens} tokens, more than the model's limit of {limit}; shorten it")]
    InputTooLong {
        /// Which input: "the prompt", "text 3", …
        input: String,
        /// Its length in tokens.
        tokens: usize,
        /// The most the model accepts.
        limit: usize,
    },
    /// An operator the hybrid (offloading) executor does not run: the model is refused for
    /// offload rather than run partly elsewhere.
    #[error(
        "node '{node}' is a {op} operator, which the hybrid executor does not run (it runs \
         Gemm, MatMul, Add, Sub, Mul, Div, Relu, Sigmoid, Tanh, Softmax, Flatten and Identity)"
    )]
    UnsupportedOperator {
        /// The node's name (or its output's, when it has none).
        node: String,
        /// Its operator type.
        op: String,
    },
    /// An offloaded product failed (refused, late, or its answer failed a check) and the
    /// policy fails the request; the answer was discarded and the failure counted.
    #[error("layer '{layer}' could not be offloaded: {source}")]
    Offload {
        /// The layer.
        layer: String,
        /// Why.
        source: cloister_offload::OffloadError,
    },
}
