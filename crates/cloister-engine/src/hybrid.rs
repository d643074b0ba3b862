//! The hybrid executor: dense ONNX graphs whose linear layers go through the linear-algebra
//! boundary ([`crate::linear`]), in the enclave or, blinded and verified, on an untrusted
//! accelerator.
//!
//! It runs graphs of `Gemm` and `MatMul` with constant weights (the linear layers), elementwise
//! `Add`/`Sub`/`Mul`/`Div` (numpy broadcasting), `Relu`, `Sigmoid`, `Tanh`, `Softmax`, `Flatten`,
//! `Identity` and `Constant` — the demo classifiers ([`crate::Classifier::to_onnx`] and
//! `assets/breast_cancer_classifier.onnx`) and other multilayer perceptrons. A graph with any
//! other operator is refused ([`EngineError::UnsupportedOperator`], naming it): it is never run
//! partly elsewhere. Everything but the products — standardization, biases, activations,
//! softmax — runs inside the enclave in float32; so do the products under
//! [`LinearPlan::Enclave`].
//!
//! The graph is read with the ONNX protobuf types tract ships (`tract_onnx::pb`): weights come
//! from initializers or `Constant` nodes of type float (inline or `raw_data`, never external
//! files); the one graph input must be float32.

use prost::Message as _;
use tract_onnx::pb;
use zeroize::Zeroize as _;

use crate::EngineError;
use crate::linear::{LayerRun, LayerStatus, Linear, LinearPlan};
use crate::onnx::{InputTensor, InputValues, NamedTensor, TensorSchema, check_input};

/// A float tensor inside the executor; its values are erased when it is dropped.
#[derive(Clone, Debug, PartialEq)]
struct Value {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Drop for Value {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

/// Where an operand comes from: a value computed by the graph (its slot), or a constant.
#[derive(Debug)]
enum Operand {
    Slot(usize),
    Constant(Value),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Identity,
}

#[derive(Debug)]
enum Step {
    /// `Gemm` (rank-2 input) or `MatMul` (the last axis): `x · W + b`.
    Linear {
        input: usize,
        output: usize,
        layer: Box<Linear>,
        rank2: bool,
    },
    Binary {
        op: Binary,
        a: Operand,
        b: Operand,
        output: usize,
    },
    Unary {
        op: Unary,
        input: usize,
        output: usize,
    },
    /// `legacy`: opset < 13, the input coerced to 2-D at `axis`.
    Softmax {
        input: usize,
        output: usize,
        axis: i64,
        legacy: bool,
    },
    Flatten {
        input: usize,
        output: usize,
        axis: i64,
    },
}

/// What one run of a [`HybridModel`] produced, and where each linear layer ran.
#[derive(Debug)]
pub struct HybridOutput {
    /// Every graph output, in declaration order.
    pub outputs: Vec<NamedTensor>,
    /// One entry per linear layer, in execution order.
    pub placement: Vec<LayerRun>,
}

/// A dense ONNX graph loaded for the hybrid executor. `Send + Sync`.
#[derive(Debug)]
pub struct HybridModel {
    input: TensorSchema,
    outputs: Vec<TensorSchema>,
    /// Slots the graph outputs are read from, in declaration order.
    output_slots: Vec<usize>,
    steps: Vec<Step>,
    slots: usize,
}

/// The operators the executor runs.
const SUPPORTED: [&str; 13] = [
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Softmax", "Flatten",
    "Identity", "Constant",
];

fn unsupported(message: String) -> EngineError {
    EngineError::UnsupportedModel(message)
}

impl HybridModel {
    /// Parses `bytes` as an ONNX model and prepares every linear layer as `plan` says.
    ///
    /// # Errors
    /// [`EngineError::ModelLoad`] when the bytes are not an ONNX model;
    /// [`EngineError::UnsupportedOperator`] for a node outside the operators above (or in
    /// another domain); [`EngineError::UnsupportedModel`] for a graph the executor cannot run
    /// (not one float32 input, weights that are not float constants, a `Gemm` with `transA`, a
    /// bias that depends on the batch, a name read before it is computed);
    /// [`EngineError::Offload`] when a layer's weights cannot be offloaded.
    pub fn load(bytes: &[u8], plan: &LinearPlan) -> Result<HybridModel, EngineError> {
        let model = pb::ModelProto::decode(bytes)
            .map_err(|e| EngineError::ModelLoad(format!("not an ONNX model: {e}")))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(1, |o| o.version);
        let Some(graph) = model.graph else {
            return Err(EngineError::ModelLoad("the model has no graph".into()));
        };
        // Every operator is checked before anything is prepared: the refusal names the first
        // unsupported one, whatever comes before it.
        for (index, node) in graph.node.iter().enumerate() {
            let standard = node.domain.is_empty() || node.domain == "ai.onnx";
            if !standard || !SUPPORTED.contains(&node.op_type.as_str()) {
                let op = if standard {
                    node.op_type.clone()
                } else {
                    format!("{}.{}", node.domain, node.op_type)
                };
                return Err(EngineError::UnsupportedOperator { node: node_name(node, index), op });
            }
        }
        let mut builder = Builder::new(&graph)?;
        let input = builder.input.clone();
        for (index, node) in graph.node.iter().enumerate() {
            builder.node(node, index, opset, plan)?;
        }
        let mut outputs = Vec::with_capacity(graph.output.len());
        let mut output_slots = Vec::with_capacity(graph.output.len());
        for info in &graph.output {
            let schema = value_schema(info)?;
            let Some(Known::Slot(slot)) = builder.names.get(&info.name) else {
                return Err(unsupported(format!(
                    "graph output '{}' is not computed from the input",
                    info.name
                )));
            };
            output_slots.push(*slot);
            outputs.push(schema);
        }
        if outputs.is_empty() {
            return Err(unsupported("the model has no outputs".into()));
        }
        Ok(HybridModel { input, outputs, output_slots, steps: builder.steps, slots: builder.slots })
    }

    /// The model's one input.
    pub fn input(&self) -> &TensorSchema {
        &self.input
    }

    /// The model's outputs, in declaration order.
    pub fn outputs(&self) -> &[TensorSchema] {
        &self.outputs
    }

    /// Every linear layer's placement and counters, in execution order.
    pub fn layers(&self) -> Vec<LayerStatus> {
        self.steps
            .iter()
            .filter_map(|step| match step {
                Step::Linear { layer, .. } => Some(layer.status()),
                _ => None,
            })
            .collect()
    }

    /// Runs the model once on a float32 tensor of `shape` (batch first).
    ///
    /// # Errors
    /// [`EngineError::SchemaMismatch`] when `shape` or the number of values does not fit the
    /// input; [`EngineError::Offload`] when an offloaded product fails under an `on_failure:
    /// fail` policy; [`EngineError::Inference`] when shapes meet that the graph cannot combine.
    pub fn infer(&self, shape: &[usize], values: &[f32]) -> Result<HybridOutput, EngineError> {
        check_input(
            &self.input,
            &InputTensor { name: &self.input.name, shape, values: InputValues::F32(values) },
        )?;
        let mut slots: Vec<Option<Value>> = Vec::with_capacity(self.slots);
        slots.resize_with(self.slots, || None);
        set(&mut slots, 0, Value { shape: shape.to_vec(), data: values.to_vec() })?;
        let mut placement = Vec::new();
        for step in &self.steps {
            match step {
                Step::Linear { input, output, layer, rank2 } => {
                    let x = get(&slots, *input)?;
                    let n = layer.inputs();
                    let (Some(last), true) = (x.shape.last(), !*rank2 || x.shape.len() == 2) else {
                        return Err(EngineError::Inference(format!(
                            "layer '{}' takes a rank-2 input, got shape {:?}",
                            layer.name(),
                            x.shape
                        )));
                    };
                    if *last != n {
                        return Err(EngineError::Inference(format!(
                            "layer '{}' takes rows of {n}, got shape {:?}",
                            layer.name(),
                            x.shape
                        )));
                    }
                    let rows = x.data.len() / n;
                    let mut out_shape = x.shape.clone();
                    out_shape.pop();
                    out_shape.push(layer.outputs());
                    let (data, run) = layer.forward(&x.data, rows)?;
                    placement.push(run);
                    set(&mut slots, *output, Value { shape: out_shape, data })?;
                }
                Step::Binary { op, a, b, output } => {
                    let value = {
                        let a = operand(&slots, a)?;
                        let b = operand(&slots, b)?;
                        broadcast(*op, a, b)?
                    };
                    set(&mut slots, *output, value)?;
                }
                Step::Unary { op, input, output } => {
                    let x = get(&slots, *input)?;
                    let f: fn(f32) -> f32 = match op {
                        Unary::Relu => |v| if v > 0.0 { v } else { 0.0 },
                        Unary::Sigmoid => |v| 1.0 / (1.0 + (-v).exp()),
                        Unary::Tanh => f32::tanh,
                        Unary::Identity => |v| v,
                    };
                    let value = Value {
                        shape: x.shape.clone(),
                        data: x.data.iter().map(|v| f(*v)).collect(),
                    };
                    set(&mut slots, *output, value)?;
                }
                Step::Softmax { input, output, axis, legacy } => {
                    let value = softmax(get(&slots, *input)?, *axis, *legacy)?;
                    set(&mut slots, *output, value)?;
                }
                Step::Flatten { input, output, axis } => {
                    let x = get(&slots, *input)?;
                    let at = resolve_axis(*axis, x.shape.len(), true)?;
                    let (head, tail) = x.shape.split_at(at);
                    let value = Value {
                        shape: vec![head.iter().product(), tail.iter().product()],
                        data: x.data.clone(),
                    };
                    set(&mut slots, *output, value)?;
                }
            }
        }
        let outputs = self
            .outputs
            .iter()
            .zip(&self.output_slots)
            .map(|(schema, slot)| {
                let value = get(&slots, *slot)?;
                Ok(NamedTensor {
                    name: schema.name.clone(),
                    shape: value.shape.clone(),
                    data: value.data.clone(),
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok(HybridOutput { outputs, placement })
    }
}

fn get(slots: &[Option<Value>], slot: usize) -> Result<&Value, EngineError> {
    slots
        .get(slot)
        .and_then(Option::as_ref)
        .ok_or_else(|| EngineError::Inference(format!("value {slot} read before it was computed")))
}

fn set(slots: &mut [Option<Value>], slot: usize, value: Value) -> Result<(), EngineError> {
    let place =
        slots.get_mut(slot).ok_or_else(|| EngineError::Inference(format!("no value {slot}")))?;
    *place = Some(value);
    Ok(())
}

fn operand<'a>(slots: &'a [Option<Value>], operand: &'a Operand) -> Result<&'a Value, EngineError> {
    match operand {
        Operand::Slot(slot) => get(slots, *slot),
        Operand::Constant(value) => Ok(value),
    }
}

/// An axis in `-rank..rank` (or `-rank..=rank` when `inclusive`, as `Flatten` allows) as an
/// index.
fn resolve_axis(axis: i64, rank: usize, inclusive: bool) -> Result<usize, EngineError> {
    let rank_i = i64::try_from(rank).unwrap_or(i64::MAX);
    let at = if axis < 0 { axis + rank_i } else { axis };
    let limit = if inclusive { rank_i } else { rank_i - 1 };
    if at < 0 || at > limit {
        return Err(EngineError::Inference(format!("axis {axis} is out of range for rank {rank}")));
    }
    usize::try_from(at).map_err(|_| EngineError::Inference(format!("axis {axis}")))
}

/// Softmax over `axis` (opset ≥ 13), or over everything from `axis` on (`legacy`).
fn softmax(x: &Value, axis: i64, legacy: bool) -> Result<Value, EngineError> {
    let at = resolve_axis(axis, x.shape.len(), false)?;
    let outer: usize = x.shape.iter().take(at).product();
    let (len, inner) = if legacy {
        (x.shape.iter().skip(at).product::<usize>(), 1)
    } else {
        (x.shape.get(at).copied().unwrap_or(1), x.shape.iter().skip(at + 1).product::<usize>())
    };
    let mut data = x.data.clone();
    for o in 0..outer {
        for i in 0..inner {
            let index = |j: usize| (o * len + j) * inner + i;
            let max = (0..len)
                .filter_map(|j| data.get(index(j)).copied())
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for j in 0..len {
                if let Some(v) = data.get_mut(index(j)) {
                    *v = (*v - max).exp();
                    sum += *v;
                }
            }
            for j in 0..len {
                if let Some(v) = data.get_mut(index(j)) {
                    *v /= sum;
                }
            }
        }
    }
    Ok(Value { shape: x.shape.clone(), data })
}

/// `a op b` with numpy (ONNX multidirectional) broadcasting.
fn broadcast(op: Binary, a: &Value, b: &Value) -> Result<Value, EngineError> {
    let f: fn(f32, f32) -> f32 = match op {
        Binary::Add => |x, y| x + y,
        Binary::Sub => |x, y| x - y,
        Binary::Mul => |x, y| x * y,
        Binary::Div => |x, y| x / y,
    };
    if a.shape == b.shape {
        let data = a.data.iter().zip(&b.data).map(|(x, y)| f(*x, *y)).collect();
        return Ok(Value { shape: a.shape.clone(), data });
    }
    let rank = a.shape.len().max(b.shape.len());
    let padded = |shape: &[usize]| {
        let mut full = vec![1usize; rank - shape.len()];
        full.extend_from_slice(shape);
        full
    };
    let (sa, sb) = (padded(&a.shape), padded(&b.shape));
    let mut shape = Vec::with_capacity(rank);
    for (da, db) in sa.iter().zip(&sb) {
        shape.push(match (*da, *db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(EngineError::Inference(format!(
                    "shapes {:?} and {:?} do not broadcast",
                    a.shape, b.shape
                )));
            }
        });
    }
    // Strides of each operand in its own layout, zero along a broadcast dimension.
    let strides = |full: &[usize]| {
        let mut strides = vec![0usize; rank];
        let mut step = 1usize;
        for (stride, dim) in strides.iter_mut().zip(full).rev() {
            *stride = if *dim == 1 { 0 } else { step };
            step *= dim;
        }
        strides
    };
    let (ta, tb) = (strides(&sa), strides(&sb));
    let count: usize = shape.iter().product();
    let mut data = Vec::with_capacity(count);
    let mut index = vec![0usize; rank];
    for _ in 0..count {
        let at = |strides: &[usize]| index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        let (x, y) = (a.data.get(at(&ta)), b.data.get(at(&tb)));
        let (Some(x), Some(y)) = (x, y) else {
            return Err(EngineError::Inference("a value outside its tensor".into()));
        };
        data.push(f(*x, *y));
        for (i, dim) in index.iter_mut().zip(&shape).rev() {
            *i += 1;
            if *i < *dim {
                break;
            }
            *i = 0;
        }
    }
    Ok(Value { shape, data })
}

/// What a name in the graph refers to while it is read.
enum Known {
    Slot(usize),
    Constant(Value),
}

/// Reads a graph's nodes into steps.
struct Builder {
    input: TensorSchema,
    names: std::collections::HashMap<String, Known>,
    steps: Vec<Step>,
    slots: usize,
}

impl Builder {
    fn new(graph: &pb::GraphProto) -> Result<Self, EngineError> {
        let mut names = std::collections::HashMap::new();
        for tensor in &graph.initializer {
            names.insert(tensor.name.clone(), Known::Constant(constant(tensor)?));
        }
        // Older exporters list initializers among the inputs too: those are not inputs.
        let inputs: Vec<&pb::ValueInfoProto> =
            graph.input.iter().filter(|i| !names.contains_key(&i.name)).collect();
        let [only] = inputs.as_slice() else {
            return Err(unsupported(format!(
                "the hybrid executor runs models with one input, this one has {}",
                inputs.len()
            )));
        };
        let input = value_schema(only)?;
        if input.shape.is_empty() {
            return Err(unsupported(format!(
                "model input '{}' is a scalar; a batch dimension [N, …] is required",
                input.name
            )));
        }
        names.insert(input.name.clone(), Known::Slot(0));
        Ok(Builder { input, names, steps: Vec::new(), slots: 1 })
    }

    fn slot(&self, node: &pb::NodeProto, index: usize, at: usize) -> Result<usize, EngineError> {
        match self.operand(node, index, at)? {
            Operand::Slot(slot) => Ok(slot),
            Operand::Constant(_) => Err(unsupported(format!(
                "node '{}' ({}) has a constant input {at}; it must be computed from the model's \
                 input",
                node_name(node, index),
                node.op_type
            ))),
        }
    }

    fn operand(
        &self,
        node: &pb::NodeProto,
        index: usize,
        at: usize,
    ) -> Result<Operand, EngineError> {
        let name = node.input.get(at).map(String::as_str).unwrap_or_default();
        match self.names.get(name) {
            Some(Known::Slot(slot)) => Ok(Operand::Slot(*slot)),
            Some(Known::Constant(value)) => Ok(Operand::Constant(value.clone())),
            None => Err(unsupported(format!(
                "node '{}' ({}) reads '{name}', which is neither computed before it nor a constant",
                node_name(node, index),
                node.op_type
            ))),
        }
    }

    fn output(&mut self, node: &pb::NodeProto, index: usize) -> Result<usize, EngineError> {
        let [name] = node.output.as_slice() else {
            return Err(unsupported(format!(
                "node '{}' ({}) has {} outputs; the executor reads nodes with one",
                node_name(node, index),
                node.op_type,
                node.output.len()
            )));
        };
        if self.names.contains_key(name) {
            return Err(unsupported(format!("the name '{name}' is assigned twice")));
        }
        let slot = self.slots;
        self.slots += 1;
        self.names.insert(name.clone(), Known::Slot(slot));
        Ok(slot)
    }

    fn inputs(
        &self,
        node: &pb::NodeProto,
        index: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<(), EngineError> {
        // Trailing empty names are absent optional inputs.
        let given = node.input.iter().rposition(|n| !n.is_empty()).map_or(0, |i| i + 1);
        if range.contains(&given) {
            Ok(())
        } else {
            Err(unsupported(format!(
                "node '{}' ({}) has {given} inputs, not {}..={}",
                node_name(node, index),
                node.op_type,
                range.start(),
                range.end()
            )))
        }
    }

    fn node(
        &mut self,
        node: &pb::NodeProto,
        index: usize,
        opset: i64,
        plan: &LinearPlan,
    ) -> Result<(), EngineError> {
        let name = node_name(node, index);
        match node.op_type.as_str() {
            "Constant" => {
                self.inputs(node, index, 0..=0)?;
                let value = node
                    .attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| {
                        unsupported(format!(
                            "Constant node '{name}' has no float tensor 'value' attribute"
                        ))
                    })
                    .and_then(constant)?;
                let [output] = node.output.as_slice() else {
                    return Err(unsupported(format!("Constant node '{name}' has no one output")));
                };
                self.names.insert(output.clone(), Known::Constant(value));
            }
            "Gemm" => {
                self.inputs(node, index, 2..=3)?;
                if int_attribute(node, "transA", 0) != 0 {
                    return Err(unsupported(format!("Gemm node '{name}' transposes its input")));
                }
                let input = self.slot(node, index, 0)?;
                let Operand::Constant(b) = self.operand(node, index, 1)? else {
                    return Err(weights_not_constant(&name, "Gemm"));
                };
                let [rows, cols] = b.shape.as_slice() else {
                    return Err(unsupported(format!(
                        "Gemm node '{name}' has weights of rank {}",
                        b.shape.len()
                    )));
                };
                let trans_b = int_attribute(node, "transB", 0) != 0;
                let (n, k) = if trans_b { (*cols, *rows) } else { (*rows, *cols) };
                let alpha = float_attribute(node, "alpha", 1.0);
                let beta = float_attribute(node, "beta", 1.0);
                let mut weights = vec![0f32; n * k];
                for (at, w) in b.data.iter().enumerate() {
                    let (r, c) = (at / *cols, at % *cols);
                    let target = if trans_b { c * k + r } else { r * k + c };
                    if let Some(slot) = weights.get_mut(target) {
                        *slot = alpha * w;
                    }
                }
                let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
                    None => vec![0f32; k],
                    Some(_) => {
                        let Operand::Constant(c) = self.operand(node, index, 2)? else {
                            return Err(weights_not_constant(&name, "Gemm"));
                        };
                        let bias: Vec<f32> = match c.data.as_slice() {
                            [one] => vec![*one; k],
                            all if all.len() == k
                                && c.shape.iter().rev().skip(1).all(|d| *d == 1) =>
                            {
                                all.to_vec()
                            }
                            _ => {
                                return Err(unsupported(format!(
                                    "Gemm node '{name}' has a bias of shape {:?}; a bias of {k} values (or one) is required",
                                    c.shape
                                )));
                            }
                        };
                        bias.into_iter().map(|v| beta * v).collect()
                    }
                };
                let layer = Linear::new(&name, n, k, weights, bias, plan)?;
                let output = self.output(node, index)?;
                self.steps.push(Step::Linear {
                    input,
                    output,
                    layer: Box::new(layer),
                    rank2: true,
                });
            }
            "MatMul" => {
                self.inputs(node, index, 2..=2)?;
                let input = self.slot(node, index, 0)?;
                let Operand::Constant(b) = self.operand(node, index, 1)? else {
                    return Err(weights_not_constant(&name, "MatMul"));
                };
                let [n, k] = b.shape.as_slice() else {
                    return Err(unsupported(format!(
                        "MatMul node '{name}' has weights of rank {}; rank 2 is required",
                        b.shape.len()
                    )));
                };
                let layer = Linear::new(&name, *n, *k, b.data.clone(), vec![0f32; *k], plan)?;
                let output = self.output(node, index)?;
                self.steps.push(Step::Linear {
                    input,
                    output,
                    layer: Box::new(layer),
                    rank2: false,
                });
            }
            op @ ("Add" | "Sub" | "Mul" | "Div") => {
                self.inputs(node, index, 2..=2)?;
                let op = match op {
                    "Add" => Binary::Add,
                    "Sub" => Binary::Sub,
                    "Mul" => Binary::Mul,
                    _ => Binary::Div,
                };
                let a = self.operand(node, index, 0)?;
                let b = self.operand(node, index, 1)?;
                if matches!((&a, &b), (Operand::Constant(_), Operand::Constant(_))) {
                    return Err(unsupported(format!(
                        "node '{name}' ({}) combines two constants",
                        node.op_type
                    )));
                }
                let output = self.output(node, index)?;
                self.steps.push(Step::Binary { op, a, b, output });
            }
            op @ ("Relu" | "Sigmoid" | "Tanh" | "Identity") => {
                self.inputs(node, index, 1..=1)?;
                let op = match op {
                    "Relu" => Unary::Relu,
                    "Sigmoid" => Unary::Sigmoid,
                    "Tanh" => Unary::Tanh,
                    _ => Unary::Identity,
                };
                let input = self.slot(node, index, 0)?;
                let output = self.output(node, index)?;
                self.steps.push(Step::Unary { op, input, output });
            }
            "Softmax" => {
                self.inputs(node, index, 1..=1)?;
                let legacy = opset < 13;
                let axis = int_attribute(node, "axis", if legacy { 1 } else { -1 });
                let input = self.slot(node, index, 0)?;
                let output = self.output(node, index)?;
                self.steps.push(Step::Softmax { input, output, axis, legacy });
            }
            "Flatten" => {
                self.inputs(node, index, 1..=1)?;
                let axis = int_attribute(node, "axis", 1);
                let input = self.slot(node, index, 0)?;
                let output = self.output(node, index)?;
                self.steps.push(Step::Flatten { input, output, axis });
            }
            op => {
                return Err(EngineError::UnsupportedOperator { node: name, op: op.to_owned() });
            }
        }
        Ok(())
    }
}

fn weights_not_constant(name: &str, op: &str) -> EngineError {
    unsupported(format!(
        "{op} node '{name}' multiplies by a computed value; the hybrid executor offloads products \
         with constant weights only"
    ))
}

fn node_name(node: &pb::NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("{}_{index}", node.op_type.to_lowercase())
    } else {
        node.name.clone()
    }
}

fn attribute<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn int_attribute(node: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attribute(node, name).map_or(default, |a| a.i)
}

fn float_attribute(node: &pb::NodeProto, name: &str, default: f32) -> f32 {
    attribute(node, name).map_or(default, |a| a.f)
}

/// A float constant from an initializer or a `Constant` node's tensor.
fn constant(tensor: &pb::TensorProto) -> Result<Value, EngineError> {
    let name = &tensor.name;
    if tensor.data_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(unsupported(format!(
            "constant '{name}' is of ONNX type {}; the hybrid executor reads float32 constants",
            tensor.data_type
        )));
    }
    if tensor.data_location == Some(pb::tensor_proto::DataLocation::External as i32)
        || !tensor.external_data.is_empty()
    {
        return Err(unsupported(format!("constant '{name}' is stored in an external file")));
    }
    let shape = tensor
        .dims
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| unsupported(format!("constant '{name}' has a negative dimension")))?;
    let count = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
    let data: Vec<f32> = if tensor.raw_data.is_empty() {
        tensor.float_data.clone()
    } else {
        tensor
            .raw_data
            .chunks(4)
            .map(|b| <[u8; 4]>::try_from(b).map(f32::from_le_bytes))
            .collect::<Result<_, _>>()
            .map_err(|_| unsupported(format!("constant '{name}' has a partial value")))?
    };
    if count != Some(data.len()) {
        return Err(unsupported(format!(
            "constant '{name}' of shape {shape:?} holds {} values",
            data.len()
        )));
    }
    Ok(Value { shape, data })
}

/// The schema of a graph input or output, which must be float32.
fn value_schema(info: &pb::ValueInfoProto) -> Result<TensorSchema, EngineError> {
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(tensor)) => tensor,
        _ => return Err(unsupported(format!("'{}' is not a tensor", info.name))),
    };
    if tensor.elem_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(unsupported(format!(
            "'{}' is of ONNX type {}; the hybrid executor runs float32 models",
            info.name, tensor.elem_type
        )));
    }
    let shape = tensor
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                        usize::try_from(v).ok()
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(TensorSchema { name: info.name.clone(), shape, dtype: "F32".to_owned() })
}
