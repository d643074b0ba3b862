//! onnxruntime as the second ONNX backend: the pinned library, checked and loaded from memory,
//! and sessions over it.
//!
//! The library comes from a path the host controls, so the host could swap it. The worker reads
//! the file and hands the bytes to [`load_onnxruntime`], which checks their SHA-256 against
//! [`ONNXRUNTIME_SHA256`] and then loads **those bytes**, not the path again: they are copied into
//! an anonymous sealed memfd (`memfd_create`, then `F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW |
//! F_SEAL_SEAL`), and the dynamic loader opens `/proc/self/fd/N`. Nothing outside this process
//! can name that file, and after sealing nobody (this process included) can change it, so there
//! is no window between the check and the load. A platform without memfd or `/proc` (Gramine
//! SGX, where the library is a trusted file Gramine itself checks) gets an error and the caller
//! falls back to tract.
//!
//! The library is loaded once per process; every later call only checks the hash again and
//! reports the first load's outcome. No `ort` function is called before a successful load, so
//! `ort` never loads a library on its own (its default would be `libonnxruntime.so` from the
//! loader's search path or `ORT_DYLIB_PATH`).

use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};
use sha2::{Digest, Sha256};

use crate::EngineError;
use crate::memfd::SealedFile;
use crate::onnx::{InputTensor, InputValues, NamedTensor, TensorSchema};

/// The onnxruntime release the backend is built for (`ort`'s `api-31`).
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

/// The library's file name in the PyPI wheel `onnxruntime==1.31.1`
/// (`onnxruntime/capi/libonnxruntime.so.1.31.1`).
pub const ONNXRUNTIME_LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// SHA-256 of `onnxruntime/capi/libonnxruntime.so.1.31.1` in the manylinux_2_28 x86_64 wheel of
/// `onnxruntime==1.31.1` (the same value as the wheel's RECORD and `scripts/fetch-assets.sh`).
/// No other bytes are ever loaded.
pub const ONNXRUNTIME_SHA256: &str =
    "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";

/// The process's onnxruntime environment, once loaded (or why it could not be).
static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Checks `library` against [`ONNXRUNTIME_SHA256`] and loads exactly these bytes as the
/// process's onnxruntime (once; later calls report the first load's outcome).
///
/// # Errors
/// [`EngineError::Runtime`] when the bytes have another SHA-256 (nothing is loaded), or when
/// the sealed in-memory copy cannot be made or the loader refuses it.
pub fn load_onnxruntime(library: &[u8]) -> Result<(), EngineError> {
    let got = hex(&Sha256::digest(library));
    if got != ONNXRUNTIME_SHA256 {
        return Err(EngineError::Runtime(format!(
            "the onnxruntime library's SHA-256 is {got}, not the pinned ONNXRUNTIME_SHA256 \
             {ONNXRUNTIME_SHA256} (onnxruntime {ONNXRUNTIME_VERSION}); it was not loaded"
        )));
    }
    match RUNTIME.get_or_init(|| load_sealed(library)) {
        Ok(_) => Ok(()),
        Err(reason) => Err(EngineError::Runtime(reason.clone())),
    }
}

/// `true` once [`load_onnxruntime`] has loaded the pinned library in this process.
pub fn onnxruntime_loaded() -> bool {
    matches!(RUNTIME.get(), Some(Ok(_)))
}

fn load_sealed(library: &[u8]) -> Result<Environment, String> {
    let file = SealedFile::new("cloister-onnxruntime", library)
        .map_err(|e| format!("onnxruntime: the sealed in-memory copy could not be made: {e}"))?;
    let builder = ort::init_from(file.path()).map_err(|e| format!("onnxruntime: {e}"))?;
    // The loader keeps its own mapping of the file; the descriptor can go.
    drop(file);
    builder.with_name("cloister").build().map_err(|e| format!("onnxruntime: {e}"))
}

fn environment() -> Result<&'static Environment, EngineError> {
    match RUNTIME.get() {
        Some(Ok(env)) => Ok(env),
        Some(Err(reason)) => Err(EngineError::Runtime(reason.clone())),
        None => Err(EngineError::Runtime(
            "onnxruntime is not loaded (the worker loads it at start from its pinned library)"
                .into(),
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One model as an onnxruntime session. `Session::run` takes `&mut self`, so runs of one model
/// are serialized; each run uses the session's own intra-op thread pool.
pub(crate) struct OrtSession {
    session: Mutex<Session>,
}

impl std::fmt::Debug for OrtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtSession").finish_non_exhaustive()
    }
}

/// A session and the schemas of its inputs and outputs, in declaration order.
pub(crate) type Loaded = (OrtSession, Vec<TensorSchema>, Vec<TensorSchema>);

/// Creates a session for `model` with `threads` intra-op threads (one inter-op thread,
/// sequential execution, every graph optimization).
pub(crate) fn session(model: &[u8], threads: usize) -> Result<Loaded, EngineError> {
    let env = environment()?;
    let load = |e: String| EngineError::ModelLoad(format!("onnxruntime: {e}"));
    let session = Session::builder(env)
        .map_err(|e| load(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| load(e.to_string()))?
        .with_intra_threads(threads)
        .map_err(|e| load(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| load(e.to_string()))?
        .with_parallel_execution(false)
        .map_err(|e| load(e.to_string()))?
        .commit_from_memory(model)
        .map_err(|e| load(e.to_string()))?;
    let schema = |outlet: &ort::value::Outlet| TensorSchema {
        name: outlet.name().to_owned(),
        shape: match outlet.dtype() {
            ValueType::Tensor { shape, .. } => {
                shape.iter().map(|d| usize::try_from(*d).ok()).collect()
            }
            _ => Vec::new(),
        },
        dtype: match outlet.dtype() {
            ValueType::Tensor { ty, .. } => dtype_name(*ty),
            other => format!("{other:?}"),
        },
    };
    let inputs = session.inputs().iter().map(schema).collect();
    let outputs = session.outputs().iter().map(schema).collect();
    Ok((OrtSession { session: Mutex::new(session) }, inputs, outputs))
}

/// The element type as tract names it (`F32`, `I64`, …), so both backends report one schema.
fn dtype_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "F32".into(),
        TensorElementType::Float64 => "F64".into(),
        TensorElementType::Float16 => "F16".into(),
        TensorElementType::Int8 => "I8".into(),
        TensorElementType::Int16 => "I16".into(),
        TensorElementType::Int32 => "I32".into(),
        TensorElementType::Int64 => "I64".into(),
        TensorElementType::Uint8 => "U8".into(),
        TensorElementType::Uint16 => "U16".into(),
        TensorElementType::Uint32 => "U32".into(),
        TensorElementType::Uint64 => "U64".into(),
        TensorElementType::Bool => "Bool".into(),
        TensorElementType::String => "String".into(),
        other => format!("{other:?}"),
    }
}

impl OrtSession {
    /// Runs the session on `inputs` (already checked against the schemas, in declaration
    /// order) and returns every output, cast to float32, named as `outputs` names them.
    pub(crate) fn run(
        &self,
        inputs: &[InputTensor<'_>],
        outputs: &[TensorSchema],
    ) -> Result<Vec<NamedTensor>, EngineError> {
        let infer = |e: ort::Error| EngineError::Inference(format!("onnxruntime: {e}"));
        let mut values: Vec<(String, ort::session::SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for input in inputs {
            let shape = input.shape.to_vec();
            let value = match input.values {
                InputValues::F32(v) => {
                    TensorRef::from_array_view((shape, v)).map_err(infer)?.into()
                }
                InputValues::I64(v) => {
                    TensorRef::from_array_view((shape, v)).map_err(infer)?.into()
                }
            };
            values.push((input.name.to_owned(), value));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| EngineError::Inference("an earlier run of this model panicked".into()))?;
        let results = session.run(values).map_err(infer)?;
        outputs
            .iter()
            .map(|schema| {
                let value = results.get(&schema.name).ok_or_else(|| {
                    EngineError::Inference(format!(
                        "onnxruntime returned no output '{}'",
                        schema.name
                    ))
                })?;
                to_named(&schema.name, value)
            })
            .collect()
    }
}

/// An output tensor, cast to float32 as tract's backend does.
fn to_named(name: &str, value: &DynValue) -> Result<NamedTensor, EngineError> {
    let infer =
        |e: ort::Error| EngineError::Inference(format!("onnxruntime: output '{name}': {e}"));
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(EngineError::UnsupportedModel(format!(
            "output '{name}' is a {:?}, not a tensor",
            value.dtype()
        )));
    };
    fn cast<T>(value: &DynValue, to: impl Fn(T) -> f32) -> Result<(Vec<i64>, Vec<f32>), ort::Error>
    where
        T: Copy + ort::value::PrimitiveTensorElementType,
    {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        Ok((shape.to_vec(), data.iter().map(|v| to(*v)).collect()))
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let (shape, data) = match ty {
        TensorElementType::Float32 => cast::<f32>(value, |v| v),
        TensorElementType::Float64 => cast::<f64>(value, |v| v as f32),
        TensorElementType::Int64 => cast::<i64>(value, |v| v as f32),
        TensorElementType::Int32 => cast::<i32>(value, |v| v as f32),
        TensorElementType::Bool => cast::<bool>(value, |v| if v { 1.0 } else { 0.0 }),
        other => {
            return Err(EngineError::UnsupportedModel(format!(
                "output '{name}' is of type {}; float, integer and boolean outputs are supported",
                dtype_name(*other)
            )));
        }
    }
    .map_err(infer)?;
    let shape =
        shape.iter().map(|d| usize::try_from(*d)).collect::<Result<Vec<_>, _>>().map_err(|_| {
            EngineError::Inference(format!("output '{name}' has a negative dimension"))
        })?;
    Ok(NamedTensor { name: name.to_owned(), shape, data })
}
