//! ONNX models: loading on one of two backends (onnxruntime through `ort`, or tract), input and
//! output schemas, and batched inference.
//!
//! [`OnnxModel::load_with`] picks the backend ([`OnnxEngine`]): `Auto` is onnxruntime when the
//! process has loaded its pinned library ([`crate::load_onnxruntime`]), else tract; `Ort` and
//! `Tract` pin one. Either way the model is parsed, optimized and made runnable once, at load.
//! Models may have several named inputs of float32 or int64 (token ids, attention masks);
//! [`OnnxModel::infer_inputs`] runs them, and [`run_batch`] runs a table through a model whose
//! one float32 input has fixed non-batch dimensions.
//!
//! tract: when the input's batch dimension is symbolic (`N`), the plan keeps it symbolic, so
//! every batch size (including a short last batch) runs on the same compiled plan. When the
//! model fixes the batch dimension (e.g. `[1,3,224,224]`), batches have exactly that many rows
//! and the last one is zero-padded; the padding rows' outputs are dropped (both backends).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid as _;
use zeroize::Zeroize;

use super::{EngineError, Predictions, Table};
use crate::onnxruntime::OrtSession;

type Plan = TypedSimplePlan;

pub use cloister_types::model::OnnxEngine;

/// Name, shape and element type of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSchema {
    /// The ONNX name, e.g. `features`.
    pub name: String,
    /// Dimensions; `None` for a symbolic one (typically the batch dimension).
    pub shape: Vec<Option<usize>>,
    /// Element type as tract names it, e.g. `F32`, `I64` (the onnxruntime backend uses the
    /// same names).
    pub dtype: String,
}

impl TensorSchema {
    /// The shape as `[N,30]`: a symbolic first dimension prints as `N`, any other as `?`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Some(n) => n.to_string(),
                None if i == 0 => "N".to_owned(),
                None => "?".to_owned(),
            })
            .collect();
        format!("[{}]", dims.join(","))
    }
}

/// How [`OnnxModel::load_with`] loads a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnnxOptions {
    /// Which backend runs it.
    pub engine: OnnxEngine,
    /// Intra-op threads for onnxruntime: `0` means one per available core, `1` a single
    /// thread. tract always runs a model on the calling thread (this setting does not apply).
    pub threads: usize,
}

/// The values of one input tensor, row-major.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputValues<'a> {
    /// float32 values.
    F32(&'a [f32]),
    /// int64 values (token ids, attention masks).
    I64(&'a [i64]),
}

impl InputValues<'_> {
    fn len(&self) -> usize {
        match self {
            InputValues::F32(v) => v.len(),
            InputValues::I64(v) => v.len(),
        }
    }

    fn dtype(&self) -> &'static str {
        match self {
            InputValues::F32(_) => "F32",
            InputValues::I64(_) => "I64",
        }
    }
}

/// One named input tensor for [`OnnxModel::infer_inputs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputTensor<'a> {
    /// The input's name in the graph.
    pub name: &'a str,
    /// Its dimensions, batch first.
    pub shape: &'a [usize],
    /// Its values (`shape`'s product of them).
    pub values: InputValues<'a>,
}

#[derive(Debug, Clone)]
enum Backend {
    Tract(Arc<Plan>),
    Ort(Arc<OrtSession>),
}

/// A loaded, optimized ONNX model ready to run. Cheap to share across threads (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct OnnxModel {
    backend: Backend,
    inputs: Vec<TensorSchema>,
    outputs: Vec<TensorSchema>,
    /// Values per sample of a table ([`run_batch`]): the product of the non-batch dimensions of
    /// the model's input, when it has exactly one, of float32, with fixed non-batch dimensions.
    sample_len: Option<usize>,
    /// `Some(b)` when the (first) input fixes the batch dimension to `b`.
    fixed_batch: Option<usize>,
}

/// The element types an input may have.
const INPUT_TYPES: [&str; 2] = ["F32", "I64"];

impl OnnxModel {
    /// Loads a model with the default [`OnnxOptions`]: onnxruntime when loaded in this
    /// process, else tract; all cores for onnxruntime.
    ///
    /// # Errors
    /// As [`OnnxModel::load_with`].
    pub fn load(bytes: &[u8]) -> Result<OnnxModel, EngineError> {
        Self::load_with(bytes, OnnxOptions::default())
    }

    /// Parses, types and optimizes an ONNX model on the backend `options.engine` names.
    ///
    /// tract ignores value-info annotations inside the graph (some exporters write symbolic
    /// ones tract cannot use); input and output declarations are kept.
    ///
    /// # Errors
    /// [`EngineError::Runtime`] when `Ort` is asked for and onnxruntime is not loaded;
    /// [`EngineError::ModelLoad`] when the bytes are not a model the backend can parse, type or
    /// optimize; [`EngineError::UnsupportedModel`] when an input is not float32 or int64, has no
    /// batch dimension or an empty shape, or the model has no inputs or no outputs.
    pub fn load_with(bytes: &[u8], options: OnnxOptions) -> Result<OnnxModel, EngineError> {
        let use_ort = match options.engine {
            OnnxEngine::Tract => false,
            OnnxEngine::Ort => true,
            OnnxEngine::Auto => crate::onnxruntime::onnxruntime_loaded(),
        };
        let loaded = if use_ort {
            let threads = if options.threads == 0 {
                std::thread::available_parallelism().map_or(1, usize::from)
            } else {
                options.threads
            };
            guard(|| crate::onnxruntime::session(bytes, threads)).and_then(|r| r).map(
                |(session, inputs, outputs)| (Backend::Ort(Arc::new(session)), inputs, outputs),
            )
        } else {
            guard(|| Self::load_tract(bytes)).and_then(|r| r)
        };
        let (backend, inputs, outputs) = loaded.map_err(|e| match e {
            EngineError::Inference(msg) => EngineError::ModelLoad(msg),
            other => other,
        })?;
        Self::check(backend, inputs, outputs)
    }

    fn load_tract(
        bytes: &[u8],
    ) -> Result<(Backend, Vec<TensorSchema>, Vec<TensorSchema>), EngineError> {
        let load = |e: TractError| EngineError::ModelLoad(format!("{e:#}"));
        let inference =
            onnx().with_ignore_value_info(true).model_for_read(&mut &bytes[..]).map_err(load)?;
        // Check the declared element types before typing: an input of another type usually
        // makes the graph fail to type, which would hide the real reason.
        for (i, outlet) in inference.input_outlets().map_err(load)?.iter().enumerate() {
            let declared = inference.input_fact(i).map_err(load)?.datum_type.concretize();
            if let Some(dt) = declared.filter(|dt| *dt != DatumType::F32 && *dt != DatumType::I64) {
                let name = inference.outlet_label(*outlet).unwrap_or_default();
                return Err(EngineError::UnsupportedModel(format!(
                    "model input '{name}' is of type {dt:?}; only float32 and int64 inputs are supported"
                )));
            }
        }
        let typed = inference.into_typed().map_err(load)?;
        let schemas = |outlets: &[OutletId]| {
            outlets.iter().map(|o| schema(&typed, *o)).collect::<TractResult<Vec<_>>>()
        };
        let inputs = schemas(typed.input_outlets().map_err(load)?).map_err(load)?;
        let outputs = schemas(typed.output_outlets().map_err(load)?).map_err(load)?;
        let plan = typed.into_optimized().and_then(|m| m.into_runnable()).map_err(load)?;
        Ok((Backend::Tract(plan), inputs, outputs))
    }

    /// The checks both backends share, on the schemas the backend read.
    fn check(
        backend: Backend,
        inputs: Vec<TensorSchema>,
        outputs: Vec<TensorSchema>,
    ) -> Result<OnnxModel, EngineError> {
        if inputs.is_empty() {
            return Err(EngineError::UnsupportedModel("the model has no inputs".into()));
        }
        if outputs.is_empty() {
            return Err(EngineError::UnsupportedModel("the model has no outputs".into()));
        }
        for input in &inputs {
            if !INPUT_TYPES.contains(&input.dtype.as_str()) {
                return Err(EngineError::UnsupportedModel(format!(
                    "model input '{}' is of type {}; only float32 and int64 inputs are supported",
                    input.name, input.dtype
                )));
            }
            if input.shape.is_empty() {
                return Err(EngineError::UnsupportedModel(format!(
                    "model input '{}' is a scalar; a batch dimension [N, …] is required",
                    input.name
                )));
            }
            if input.shape.contains(&Some(0)) {
                return Err(EngineError::UnsupportedModel(format!(
                    "model input '{}' has an empty shape {}",
                    input.name,
                    input.shape_string()
                )));
            }
        }
        let (fixed_batch, sample_len) = match inputs.as_slice() {
            [only] if only.dtype == "F32" => {
                let rest = only.shape.get(1..).unwrap_or_default();
                let len = rest.iter().try_fold(1usize, |n, d| d.and_then(|d| n.checked_mul(d)));
                (only.shape.first().copied().flatten(), len)
            }
            _ => (None, None),
        };
        Ok(OnnxModel { backend, inputs, outputs, sample_len, fixed_batch })
    }

    /// Which backend runs this model: [`OnnxEngine::Ort`] or [`OnnxEngine::Tract`].
    pub fn engine(&self) -> OnnxEngine {
        match self.backend {
            Backend::Tract(_) => OnnxEngine::Tract,
            Backend::Ort(_) => OnnxEngine::Ort,
        }
    }

    /// The model's first input (its only one, for the models [`run_batch`] takes).
    pub fn input(&self) -> &TensorSchema {
        // `check` refuses a model without inputs.
        &self.inputs[0]
    }

    /// The model's inputs, in declaration order.
    pub fn inputs(&self) -> &[TensorSchema] {
        &self.inputs
    }

    /// The model's outputs, in declaration order; [`run_batch`] collects the first one.
    pub fn outputs(&self) -> &[TensorSchema] {
        &self.outputs
    }

    /// Number of values one table row must have (the product of the input's non-batch dims),
    /// for a model with one float32 input with fixed non-batch dimensions; else `None`.
    pub fn values_per_row(&self) -> Option<usize> {
        self.sample_len
    }

    /// Runs the backend on inputs already checked and in declaration order.
    fn run_checked(&self, inputs: &[InputTensor<'_>]) -> Result<Vec<NamedTensor>, EngineError> {
        guard(|| match &self.backend {
            Backend::Ort(session) => session.run(inputs, &self.outputs),
            Backend::Tract(plan) => {
                let infer = |e: TractError| EngineError::Inference(format!("{e:#}"));
                let tensors = inputs
                    .iter()
                    .map(|input| {
                        match input.values {
                            InputValues::F32(v) => Tensor::from_shape(input.shape, v),
                            InputValues::I64(v) => Tensor::from_shape(input.shape, v),
                        }
                        .map(IntoTValue::into_tvalue)
                    })
                    .collect::<TractResult<TVec<TValue>>>()
                    .map_err(infer)?;
                let outputs = plan.run(tensors).map_err(infer)?;
                outputs
                    .iter()
                    .zip(&self.outputs)
                    .map(|(value, schema)| {
                        let as_f32 = value.cast_to::<f32>().map_err(infer)?;
                        let view = as_f32.to_plain_array_view::<f32>().map_err(infer)?;
                        Ok(NamedTensor {
                            name: schema.name.clone(),
                            shape: value.shape().to_vec(),
                            data: view.iter().copied().collect(),
                        })
                    })
                    .collect()
            }
        })?
    }

    /// Runs one batch of `rows` samples of the single float32 input; returns the first output
    /// flattened, its per-row width and its shape.
    fn run_once(
        &self,
        values: &[f32],
        rows: usize,
    ) -> Result<(Vec<f32>, usize, Vec<usize>), EngineError> {
        let input = self.input();
        let mut shape = Vec::with_capacity(input.shape.len());
        shape.push(rows);
        shape.extend(input.shape.iter().skip(1).map(|d| d.unwrap_or(1)));
        let tensor =
            InputTensor { name: &input.name, shape: &shape, values: InputValues::F32(values) };
        let outputs = self.run_checked(&[tensor])?;
        let Some(first) = outputs.into_iter().next() else {
            return Err(EngineError::Inference("the model produced no output".into()));
        };
        if first.shape.first() != Some(&rows) {
            return Err(EngineError::UnsupportedModel(format!(
                "output '{}' has shape {:?} for a batch of {rows} rows; its first dimension must be the batch",
                first.name, first.shape
            )));
        }
        let width = first.data.len() / rows;
        Ok((first.data, width, first.shape))
    }
}

/// One named tensor of float values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// The tensor's name in the graph.
    pub name: String,
    /// Its dimensions.
    pub shape: Vec<usize>,
    /// Its values, row-major (`shape`'s product of them).
    pub data: Vec<f32>,
}

impl OnnxModel {
    /// Runs a model with one float32 input once on a tensor of `shape` (batch first) and
    /// returns every output, cast to float32, in declaration order.
    ///
    /// # Errors
    /// [`EngineError::SchemaMismatch`] when the model has several inputs or an int64 one, or
    /// `shape` does not fit the model's input (rank, a fixed dimension, or the number of
    /// values); [`EngineError::Inference`] when the backend fails.
    pub fn infer(&self, shape: &[usize], values: &[f32]) -> Result<Vec<NamedTensor>, EngineError> {
        if self.inputs.len() != 1 {
            return Err(EngineError::SchemaMismatch(format!(
                "the model has {} inputs ({}); give each by name",
                self.inputs.len(),
                self.input_names()
            )));
        }
        let name = &self.input().name;
        self.infer_inputs(&[InputTensor { name, shape, values: InputValues::F32(values) }])
    }

    /// Runs the model once on named inputs (one for each of the model's inputs, in any order)
    /// and returns every output, cast to float32, in declaration order.
    ///
    /// # Errors
    /// [`EngineError::SchemaMismatch`] when an input is missing, unknown or given twice, or one
    /// does not fit its schema (element type, rank, a fixed dimension, an empty batch, the
    /// number of values); [`EngineError::Inference`] when the backend fails.
    pub fn infer_inputs(
        &self,
        inputs: &[InputTensor<'_>],
    ) -> Result<Vec<NamedTensor>, EngineError> {
        if let Some(unknown) =
            inputs.iter().find(|given| !self.inputs.iter().any(|s| s.name == given.name))
        {
            return Err(EngineError::SchemaMismatch(format!(
                "the model has no input '{}'; its inputs are {}",
                unknown.name,
                self.input_names()
            )));
        }
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for schema in &self.inputs {
            let mut given = inputs.iter().filter(|t| t.name == schema.name);
            let (Some(tensor), None) = (given.next(), given.next()) else {
                return Err(EngineError::SchemaMismatch(format!(
                    "input '{}' must be given exactly once",
                    schema.name
                )));
            };
            check_input(schema, tensor)?;
            ordered.push(*tensor);
        }
        self.run_checked(&ordered)
    }

    fn input_names(&self) -> String {
        self.inputs.iter().map(|s| format!("'{}'", s.name)).collect::<Vec<_>>().join(", ")
    }
}

/// Checks one input tensor against its schema.
pub(crate) fn check_input(
    schema: &TensorSchema,
    tensor: &InputTensor<'_>,
) -> Result<(), EngineError> {
    let shape = tensor.shape;
    if tensor.values.dtype() != schema.dtype {
        return Err(EngineError::SchemaMismatch(format!(
            "input '{}' is of type {}, got {} values",
            schema.name,
            schema.dtype,
            tensor.values.dtype()
        )));
    }
    if shape.len() != schema.shape.len()
        || shape.iter().zip(&schema.shape).any(|(got, want)| want.is_some_and(|w| w != *got))
        || shape.first().is_some_and(|b| *b == 0)
    {
        return Err(EngineError::SchemaMismatch(format!(
            "input '{}' must have shape {}, got {shape:?}",
            schema.name,
            schema.shape_string()
        )));
    }
    let count = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
    if count != Some(tensor.values.len()) {
        return Err(EngineError::SchemaMismatch(format!(
            "input '{}' of shape {shape:?} needs {} values, got {}",
            schema.name,
            count.map_or_else(|| "too many".to_owned(), |c| c.to_string()),
            tensor.values.len()
        )));
    }
    Ok(())
}

/// Runs `model` over every row of `table`, `batch_rows` rows at a time, and returns the model's
/// first output with one row per table row. `progress` is called after each batch with the
/// number of rows done so far.
///
/// If the model fixes its batch dimension to `b`, batches have `b` rows regardless of
/// `batch_rows` (the last one is zero-padded internally).
///
/// # Errors
/// [`EngineError::InvalidArgument`] for `batch_rows == 0`; [`EngineError::SchemaMismatch`] when
/// the table's rows do not have the number of values the model's input expects;
/// [`EngineError::Inference`] when tract fails (or panics) while running.
pub fn run_batch(
    model: &OnnxModel,
    table: &Table,
    batch_rows: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Predictions, EngineError> {
    if batch_rows == 0 {
        return Err(EngineError::InvalidArgument("batch_rows must be at least 1".into()));
    }
    let Some(sample_len) = model.sample_len else {
        return Err(EngineError::UnsupportedModel(format!(
            "a data set runs through a model with one float32 input of fixed non-batch \
             dimensions; this one has inputs {}",
            model
                .inputs
                .iter()
                .map(|s| format!("'{}' {} {}", s.name, s.dtype, s.shape_string()))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if table.columns() != sample_len {
        return Err(EngineError::SchemaMismatch(format!(
            "the data set has {} values per row but model input '{}' expects {} (shape {})",
            table.columns(),
            model.input().name,
            sample_len,
            model.input().shape_string()
        )));
    }
    let batch = model.fixed_batch.unwrap_or(batch_rows);
    let width_in = sample_len;
    let mut values: Vec<f32> = Vec::new();
    let mut columns: Option<(usize, Vec<usize>)> = None;
    let mut done = 0usize;
    let mut padded: Vec<f32> = Vec::new();
    for chunk in table.values().chunks(batch * width_in) {
        let rows = chunk.len() / width_in;
        let result = if rows < batch && model.fixed_batch.is_some() {
            padded.clear();
            padded.extend_from_slice(chunk);
            padded.resize(batch * width_in, 0.0);
            guard(|| model.run_once(&padded, batch))
        } else {
            guard(|| model.run_once(chunk, rows))
        };
        let (out, width, shape) = match result.and_then(|r| r) {
            Ok(ok) => ok,
            Err(e) => {
                values.zeroize();
                padded.zeroize();
                return Err(e);
            }
        };
        match &columns {
            None => columns = Some((width, shape[1..].to_vec())),
            Some((w, s)) if *w != width || s[..] != shape[1..] => {
                values.zeroize();
                padded.zeroize();
                return Err(EngineError::UnsupportedModel(format!(
                    "output '{}' changes shape between batches ({s:?} then {:?})",
                    model.outputs[0].name,
                    &shape[1..]
                )));
            }
            Some(_) => {}
        }
        values.extend_from_slice(&out[..rows * width]);
        done += rows;
        progress(done);
    }
    padded.zeroize();
    let (width, dims) = columns.unwrap_or((0, Vec::new()));
    let name = &model.outputs[0].name;
    let columns = if dims.is_empty() {
        vec![name.clone()]
    } else {
        (0..width).map(|i| format!("{name}_{i}")).collect()
    };
    Ok(Predictions { columns, rows: done, values })
}

/// The schema of one outlet of a typed model.
fn schema(model: &TypedModel, outlet: OutletId) -> TractResult<TensorSchema> {
    let fact = model.outlet_fact(outlet)?;
    let name = model
        .outlet_label(outlet)
        .map(str::to_owned)
        .unwrap_or_else(|| model.node(outlet.node).name.clone());
    let shape = fact
        .shape
        .dims()
        .iter()
        .map(|d| d.as_i64().and_then(|v| usize::try_from(v).ok()))
        .collect();
    Ok(TensorSchema { name, shape, dtype: format!("{:?}", fact.datum_type) })
}

/// Runs `f`, turning a panic inside tract into an error instead of unwinding through the worker.
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, EngineError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        EngineError::Inference(format!("the engine panicked: {msg}"))
    })
}
