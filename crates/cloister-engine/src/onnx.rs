//! ONNX models run with tract: loading, input/output schemas, and batched inference.
//!
//! A model is parsed, typed, optimized and turned into a runnable plan once, in
//! [`OnnxModel::load`]. When the input's batch dimension is symbolic (`N`), the plan keeps it
//! symbolic, so every batch size (including a short last batch) runs on the same compiled plan.
//! When the model fixes the batch dimension (e.g. `[1,3,224,224]`), batches have exactly that
//! many rows and the last one is zero-padded; the padding rows' outputs are dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid as _;
use zeroize::Zeroize;

use super::{EngineError, Predictions, Table};

type Plan = TypedSimplePlan;

/// Name, shape and element type of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSchema {
    /// The ONNX name, e.g. `features`.
    pub name: String,
    /// Dimensions; `None` for a symbolic one (typically the batch dimension).
    pub shape: Vec<Option<usize>>,
    /// Element type as tract names it, e.g. `F32`, `I64`.
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

/// A loaded, optimized ONNX model ready to run. Cheap to share across threads (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct OnnxModel {
    plan: Arc<Plan>,
    input: TensorSchema,
    outputs: Vec<TensorSchema>,
    /// Values per sample: the product of the input's non-batch dimensions.
    sample_len: usize,
    /// `Some(b)` when the model fixes the batch dimension to `b`.
    fixed_batch: Option<usize>,
}

impl OnnxModel {
    /// Parses, types and optimizes an ONNX model.
    ///
    /// Value-info annotations inside the graph are ignored (some exporters write symbolic ones
    /// tract cannot use); input and output declarations are kept.
    ///
    /// # Errors
    /// [`EngineError::ModelLoad`] when the bytes are not a model tract can parse, type or
    /// optimize; [`EngineError::UnsupportedModel`] when the model does not have exactly one
    /// float32 input of shape `[N, d1, …]` with concrete `d1, …`.
    pub fn load(bytes: &[u8]) -> Result<OnnxModel, EngineError> {
        guard(|| Self::load_inner(bytes)).map_err(|e| match e {
            EngineError::Inference(msg) => EngineError::ModelLoad(msg),
            other => other,
        })?
    }

    fn load_inner(bytes: &[u8]) -> Result<OnnxModel, EngineError> {
        let load = |e: TractError| EngineError::ModelLoad(format!("{e:#}"));
        let inference =
            onnx().with_ignore_value_info(true).model_for_read(&mut &bytes[..]).map_err(load)?;
        let n_inputs = inference.input_outlets().map_err(load)?.len();
        if n_inputs != 1 {
            return Err(EngineError::UnsupportedModel(format!(
                "the model has {n_inputs} inputs; only models with exactly one input are supported"
            )));
        }
        // Check the declared element type before typing: a non-float input usually makes the
        // float graph fail to type, which would hide the real reason.
        let declared = inference.input_fact(0).map_err(load)?.datum_type.concretize();
        if let Some(dt) = declared.filter(|dt| *dt != DatumType::F32) {
            let name = inference
                .input_outlets()
                .ok()
                .and_then(|o| o.first().copied())
                .and_then(|o| inference.outlet_label(o).map(str::to_owned))
                .unwrap_or_default();
            return Err(EngineError::UnsupportedModel(format!(
                "model input '{name}' is of type {dt:?}; only float32 inputs are supported"
            )));
        }
        let typed = inference.into_typed().map_err(load)?;

        let input = schema(&typed, typed.input_outlets().map_err(load)?[0]).map_err(load)?;
        let outputs = typed
            .output_outlets()
            .map_err(load)?
            .iter()
            .map(|o| schema(&typed, *o))
            .collect::<TractResult<Vec<_>>>()
            .map_err(load)?;
        if outputs.is_empty() {
            return Err(EngineError::UnsupportedModel("the model has no outputs".into()));
        }
        if input.dtype != format!("{:?}", DatumType::F32) {
            return Err(EngineError::UnsupportedModel(format!(
                "model input '{}' is of type {}; only float32 inputs are supported",
                input.name, input.dtype
            )));
        }
        let Some((batch, rest)) = input.shape.split_first() else {
            return Err(EngineError::UnsupportedModel(format!(
                "model input '{}' is a scalar; a batch dimension [N, …] is required",
                input.name
            )));
        };
        let mut sample_len = 1usize;
        for d in rest {
            let Some(d) = d else {
                return Err(EngineError::UnsupportedModel(format!(
                    "model input '{}' has shape {}: only the first (batch) dimension may be symbolic",
                    input.name,
                    input.shape_string()
                )));
            };
            sample_len = sample_len.checked_mul(*d).ok_or_else(|| {
                EngineError::UnsupportedModel(format!(
                    "model input '{}' shape {} is too large",
                    input.name,
                    input.shape_string()
                ))
            })?;
        }
        if sample_len == 0 || *batch == Some(0) {
            return Err(EngineError::UnsupportedModel(format!(
                "model input '{}' has an empty shape {}",
                input.name,
                input.shape_string()
            )));
        }

        let plan = typed.into_optimized().and_then(|m| m.into_runnable()).map_err(load)?;
        Ok(OnnxModel { plan, fixed_batch: *batch, input, outputs, sample_len })
    }

    /// The model's single input.
    pub fn input(&self) -> &TensorSchema {
        &self.input
    }

    /// The model's outputs, in declaration order; [`run_batch`] collects the first one.
    pub fn outputs(&self) -> &[TensorSchema] {
        &self.outputs
    }

    /// Number of values one table row must have: the product of the input's non-batch dims.
    pub fn values_per_row(&self) -> usize {
        self.sample_len
    }

    /// Runs one batch of `rows` samples (`values.len() == rows * sample_len`); returns the first
    /// output flattened, and its per-row width.
    fn run_once(
        &self,
        values: &[f32],
        rows: usize,
    ) -> Result<(Vec<f32>, usize, Vec<usize>), EngineError> {
        let infer = |e: TractError| EngineError::Inference(format!("{e:#}"));
        let mut shape = Vec::with_capacity(self.input.shape.len());
        shape.push(rows);
        shape.extend(self.input.shape.iter().skip(1).map(|d| d.unwrap_or(1)));
        let tensor = Tensor::from_shape(&shape, values).map_err(infer)?;
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(infer)?;
        let Some(first) = outputs.first() else {
            return Err(EngineError::Inference("the model produced no output".into()));
        };
        let out_shape = first.shape().to_vec();
        if out_shape.first() != Some(&rows) {
            return Err(EngineError::UnsupportedModel(format!(
                "output '{}' has shape {:?} for a batch of {rows} rows; its first dimension must be the batch",
                self.outputs[0].name, out_shape
            )));
        }
        let as_f32 = first.cast_to::<f32>().map_err(infer)?;
        let flat = as_f32.to_plain_array_view::<f32>().map_err(infer)?;
        let flat: Vec<f32> = flat.iter().copied().collect();
        let width = flat.len() / rows;
        Ok((flat, width, out_shape))
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
    /// Runs the model once on one input tensor of `shape` (batch first) and returns every
    /// output, cast to float32, in declaration order.
    ///
    /// # Errors
    /// [`EngineError::SchemaMismatch`] when `shape` does not fit the model's input (rank, a
    /// fixed dimension, or the number of values); [`EngineError::Inference`] when tract fails.
    pub fn infer(&self, shape: &[usize], values: &[f32]) -> Result<Vec<NamedTensor>, EngineError> {
        let mismatch = || {
            EngineError::SchemaMismatch(format!(
                "input '{}' must have shape {}, got {shape:?}",
                self.input.name,
                self.input.shape_string()
            ))
        };
        if shape.len() != self.input.shape.len()
            || shape
                .iter()
                .zip(&self.input.shape)
                .any(|(got, want)| want.is_some_and(|w| w != *got))
            || shape.first().is_some_and(|b| *b == 0)
        {
            return Err(mismatch());
        }
        let count = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d)).ok_or_else(mismatch)?;
        if count != values.len() {
            return Err(EngineError::SchemaMismatch(format!(
                "input '{}' of shape {shape:?} needs {count} values, got {}",
                self.input.name,
                values.len()
            )));
        }
        guard(|| {
            let infer = |e: TractError| EngineError::Inference(format!("{e:#}"));
            let tensor = Tensor::from_shape(shape, values).map_err(infer)?;
            let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(infer)?;
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
        })?
    }
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
    if table.columns() != model.sample_len {
        return Err(EngineError::SchemaMismatch(format!(
            "the data set has {} values per row but model input '{}' expects {} (shape {})",
            table.columns(),
            model.input.name,
            model.sample_len,
            model.input.shape_string()
        )));
    }
    let batch = model.fixed_batch.unwrap_or(batch_rows);
    let width_in = model.sample_len;
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
