//! The hybrid executor: dense ONNX models whose linear layers run in the enclave or on an
//! untrusted accelerator (in process here) agree with tract within the stated quantization
//! bound; a lying or dead accelerator fails the request or falls back, as the policy says, and
//! is counted; graphs with other operators are refused for offload.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cloister_engine::train::standardization;
use cloister_engine::{
    Classifier, EngineError, HybridModel, LabelledRows, LinearPlan, OnnxEngine, OnnxModel,
    OnnxOptions, Placement,
};
use cloister_offload::server::AcceleratorState;
use cloister_offload::wire::Message;
use cloister_offload::{Accelerator, OffloadError, QuantizedWeights, output_error_bound};
use cloister_types::model::OffloadFallback;
use prost::Message as _;
use tract_onnx::pb;

const TABLE: &[u8] = include_bytes!("../../../assets/breast_cancer.csv");
const DEMO: &[u8] = include_bytes!("../../../assets/breast_cancer_classifier.onnx");

/// The honest accelerator, in process; counts the requests it answers.
struct Honest {
    state: AcceleratorState,
    requests: AtomicUsize,
}

impl Honest {
    fn new() -> Arc<Self> {
        Arc::new(Honest { state: AcceleratorState::new(1 << 24, 1), requests: AtomicUsize::new(0) })
    }
}

impl Accelerator for Honest {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, OffloadError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(self.state.handle(request))
    }
}

/// Answers honestly, then adds one to the first element of every product.
struct Lying(Honest);

impl Accelerator for Lying {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, OffloadError> {
        let answer = self.0.exchange(request)?;
        match Message::decode(&answer).unwrap() {
            Message::Product { id, m, k, mut values } => {
                values[0] = (values[0] + 1) % (cloister_offload::field::P as u32);
                Ok(Message::Product { id, m, k, values }.encode())
            }
            other => Ok(other.encode()),
        }
    }
}

/// Never answers.
struct Dead;

impl Accelerator for Dead {
    fn exchange(&self, _: &[u8]) -> Result<Vec<u8>, OffloadError> {
        Err(OffloadError::Transport("connection refused".into()))
    }
}

fn rows() -> LabelledRows {
    LabelledRows::from_csv(TABLE).unwrap()
}

fn classifier(hidden: &[usize], seed: u64) -> Classifier {
    let all = rows();
    let (mean, scale) = standardization(&all);
    Classifier::initial(mean, scale, hidden, 2, seed).unwrap()
}

fn tract(bytes: &[u8]) -> OnnxModel {
    OnnxModel::load_with(bytes, OnnxOptions { engine: OnnxEngine::Tract, threads: 1 }).unwrap()
}

/// The input transform in front of the first layer.
type Standardize = Box<dyn Fn(&[f32]) -> Vec<f32>>;

/// A chain of dense layers with ReLU between them and softmax last, after a standardization,
/// evaluated in f64: the reference the bound is stated against.
struct Chain {
    standardize: Standardize,
    /// `(n, k, W n×k row-major, b)`.
    layers: Vec<(usize, usize, Vec<f32>, Vec<f32>)>,
}

impl Chain {
    fn from_classifier(c: &Classifier) -> Chain {
        let (mean, scale) = (c.input_mean.clone(), c.input_scale.clone());
        let layers = c
            .layers
            .iter()
            .map(|d| {
                // Dense weights are out × in; the product's W is in × out.
                let mut w = vec![0f32; d.inputs * d.outputs];
                for o in 0..d.outputs {
                    for i in 0..d.inputs {
                        w[i * d.outputs + o] = d.weight[o * d.inputs + i];
                    }
                }
                (d.inputs, d.outputs, w, d.bias.clone())
            })
            .collect();
        Chain {
            standardize: Box::new(move |x| {
                x.iter().zip(&mean).zip(&scale).map(|((x, m), s)| (x - m) * s).collect()
            }),
            layers,
        }
    }

    /// Reads the demo model's graph (Sub mean, Div std, MatMul+Add, Relu, MatMul+Add, Softmax).
    fn from_demo() -> Chain {
        let model = pb::ModelProto::decode(DEMO).unwrap();
        let graph = model.graph.unwrap();
        let tensor = |name: &str| {
            let t = graph.initializer.iter().find(|t| t.name == name).unwrap();
            let values: Vec<f32> = if t.raw_data.is_empty() {
                t.float_data.clone()
            } else {
                t.raw_data.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
            };
            (t.dims.clone(), values)
        };
        fn constant_input<'a>(graph: &pb::GraphProto, node: &'a pb::NodeProto) -> &'a str {
            node.input.iter().find(|i| graph.initializer.iter().any(|t| &t.name == *i)).unwrap()
        }
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        let mut layers = Vec::new();
        for node in &graph.node {
            match node.op_type.as_str() {
                "Sub" => mean = tensor(constant_input(&graph, node)).1,
                "Div" => std = tensor(constant_input(&graph, node)).1,
                "MatMul" => {
                    let (dims, w) = tensor(&node.input[1]);
                    layers.push((dims[0] as usize, dims[1] as usize, w, Vec::new()));
                }
                "Add" => layers.last_mut().unwrap().3 = tensor(constant_input(&graph, node)).1,
                _ => {}
            }
        }
        assert_eq!(layers.len(), 2);
        Chain {
            standardize: Box::new(move |x| {
                x.iter().zip(&mean).zip(&std).map(|((x, m), s)| (x - m) / s).collect()
            }),
            layers,
        }
    }

    /// The probabilities of one row in f64, and for each the most an offloaded run may differ
    /// from them.
    ///
    /// The bound, composed layer by layer: with `δ` the largest error of a layer's input
    /// (elementwise, zero for the first layer, whose standardized input is computed the same
    /// way on both paths), output `j` of a layer is off by at most
    /// `output_error_bound(|h| + |δ|, Wq, j) + Σ_i |δ_i| |W_ij|` — the quantized product's own
    /// bound, taken at an input as large as the offloaded path's may be (the bound grows with
    /// `‖x‖₁` only), plus the exact product of the input's error. ReLU does not increase an
    /// error; softmax multiplies each probability by at most `e^{±2‖δ‖∞}`, so
    /// `|Δp_i| ≤ p_i (e^{2‖δ‖∞} − 1)`. On top, 1e-5 relative plus 1e-6 absolute for float32
    /// rounding (the executor sums in float32, this reference in f64).
    ///
    /// With `logits`, the values before the softmax and their bounds.
    fn reference(&self, x: &[f32], logits: bool) -> (Vec<f64>, Vec<f64>) {
        let mut h: Vec<f64> = (self.standardize)(x).iter().map(|v| f64::from(*v)).collect();
        let mut delta = vec![0f64; h.len()];
        let last = self.layers.len() - 1;
        for (l, (n, k, w, b)) in self.layers.iter().enumerate() {
            let quantized = QuantizedWeights::quantize(*n, *k, w).unwrap();
            let worst: Vec<f32> =
                h.iter().zip(&delta).map(|(h, d)| (h.abs() + d) as f32 * 1.000_001).collect();
            let mut y = vec![0f64; *k];
            let mut next = vec![0f64; *k];
            for j in 0..*k {
                let mut magnitude = 0f64;
                let mut propagated = 0f64;
                for i in 0..*n {
                    let wij = f64::from(w[i * k + j]);
                    y[j] += h[i] * wij;
                    magnitude += (h[i] * wij).abs();
                    propagated += delta[i] * wij.abs();
                }
                y[j] += f64::from(b[j]);
                next[j] = output_error_bound(&worst, &quantized, j)
                    + propagated
                    + 1e-5 * (magnitude + f64::from(b[j]).abs())
                    + 1e-6;
            }
            if l < last {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = y;
            delta = next;
        }
        if logits {
            return (h, delta);
        }
        let max = h.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = h.iter().map(|v| (v - max).exp()).sum();
        let p: Vec<f64> = h.iter().map(|v| (v - max).exp() / sum).collect();
        let spread = delta.iter().copied().fold(0.0, f64::max);
        let bound = p.iter().map(|p| p * ((2.0 * spread).exp() - 1.0) + 1e-6).collect();
        (p, bound)
    }
}

/// Runs `bytes` on tract, on the hybrid executor in the enclave and offloaded to an honest
/// accelerator, and holds them to each other.
/// The model with its final Softmax removed: its output is the logits.
fn without_softmax(bytes: &[u8]) -> Vec<u8> {
    let mut model = pb::ModelProto::decode(bytes).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let softmax = graph.node.pop().unwrap();
    assert_eq!(softmax.op_type, "Softmax");
    graph.output[0].name = softmax.input[0].clone();
    model.encode_to_vec()
}

/// Runs `bytes` on tract, on the hybrid executor in the enclave and offloaded to an honest
/// accelerator, and holds them to each other: the probabilities, and (without the softmax)
/// the logits, whose bound stays meaningful where the worst-case probability bound does not.
fn agree(bytes: &[u8], chain: &Chain) {
    agree_on(bytes, chain, false);
    agree_on(&without_softmax(bytes), chain, true);
}

fn agree_on(bytes: &[u8], chain: &Chain, logits: bool) {
    let data = rows();
    let n_rows = 64;
    let x = &data.features[..n_rows * 30];
    let expected = tract(bytes).infer(&[n_rows, 30], x).unwrap();
    let expected = &expected[0].data;

    let enclave = HybridModel::load(bytes, &LinearPlan::Enclave).unwrap();
    let ran = enclave.infer(&[n_rows, 30], x).unwrap();
    assert_eq!(ran.outputs[0].shape, [n_rows, 2]);
    for (a, b) in ran.outputs[0].data.iter().zip(expected) {
        assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "enclave {a} vs tract {b}");
    }
    assert!(ran.placement.iter().all(|r| r.ran == Placement::Enclave && !r.verified));
    assert_eq!(ran.placement.len(), chain.layers.len());

    let honest = Honest::new();
    let plan = LinearPlan::offload(honest.clone(), OffloadFallback::Fail);
    let offloaded = HybridModel::load(bytes, &plan).unwrap();
    let ran = offloaded.infer(&[n_rows, 30], x).unwrap();
    assert!(ran.placement.iter().all(|r| r.ran == Placement::Offload && r.verified));
    // Each layer: an unknown-weights refusal, the upload, the product.
    assert_eq!(honest.requests.load(Ordering::Relaxed), 3 * chain.layers.len());
    let mut widest = 0f64;
    let mut largest = 0f64;
    let mut differs = false;
    for (r, (got, tract_row)) in ran.outputs[0].data.chunks(2).zip(expected.chunks(2)).enumerate() {
        let (p, bound) = chain.reference(&x[r * 30..(r + 1) * 30], logits);
        for j in 0..2 {
            let error = (f64::from(got[j]) - p[j]).abs();
            assert!(
                error <= bound[j],
                "row {r} class {j}: {} vs {}, bound {}",
                got[j],
                p[j],
                bound[j]
            );
            // And tract agrees with the f64 reference within float32 rounding.
            assert!((f64::from(tract_row[j]) - p[j]).abs() < 1e-5 * (1.0 + p[j].abs()));
            widest = widest.max(bound[j]);
            largest = largest.max(p[j].abs());
            differs |= got[j] != tract_row[j];
        }
    }
    // The answer did come through the quantized path (it is not the float result to the last
    // bit everywhere).
    eprintln!("widest bound (logits: {logits}): {widest}, largest value {largest}");
    if logits {
        // The bound on the logits is not vacuous: under a tenth of their magnitude. (On
        // probabilities the worst case composed through the softmax can exceed 1 for the
        // demo model's large logits; the observed error is far smaller.)
        assert!(widest < 0.1 * (1.0 + largest), "bound {widest}, largest {largest}");
    }
    assert!(differs);
    for status in offloaded.layers() {
        assert_eq!(status.placement, Placement::Offload);
        assert_eq!(status.rows_verified, n_rows as u64);
        assert_eq!((status.failures, status.checks_failed, status.fallbacks), (0, 0, 0));
        assert_eq!(status.masks_computed, n_rows as u64);
    }
}

#[test]
fn the_classifier_agrees_in_the_enclave_and_offloaded_within_the_bound() {
    for hidden in [&[][..], &[16][..], &[16, 8][..]] {
        let model = classifier(hidden, 7);
        agree(&model.to_onnx().unwrap(), &Chain::from_classifier(&model));
    }
}

#[test]
fn the_demo_model_agrees_in_the_enclave_and_offloaded_within_the_bound() {
    agree(DEMO, &Chain::from_demo());
}

#[test]
fn a_lying_accelerator_fails_the_request_or_falls_back_and_is_counted() {
    let model = classifier(&[16], 3);
    let bytes = model.to_onnx().unwrap();
    let data = rows();
    let x = &data.features[..8 * 30];
    let enclave = HybridModel::load(&bytes, &LinearPlan::Enclave).unwrap();
    let exact = enclave.infer(&[8, 30], x).unwrap().outputs;

    let liar: Arc<dyn Accelerator> = Arc::new(Lying(Honest {
        state: AcceleratorState::new(1 << 24, 1),
        requests: AtomicUsize::new(0),
    }));
    let failing =
        HybridModel::load(&bytes, &LinearPlan::offload(liar.clone(), OffloadFallback::Fail))
            .unwrap();
    let err = failing.infer(&[8, 30], x).unwrap_err();
    assert!(
        matches!(
            &err,
            EngineError::Offload { layer, source: OffloadError::IntegrityCheckFailed(_) } if layer == "dense0"
        ),
        "{err:?}"
    );
    let layers = failing.layers();
    assert_eq!((layers[0].failures, layers[0].checks_failed, layers[0].fallbacks), (1, 1, 0));
    assert_eq!(layers[0].rows_verified, 0);
    // The request stopped at the first layer: the second was never asked.
    assert_eq!(layers[1].failures, 0);

    let falling_back =
        HybridModel::load(&bytes, &LinearPlan::offload(liar, OffloadFallback::Enclave)).unwrap();
    for round in 1..=2u64 {
        let ran = falling_back.infer(&[8, 30], x).unwrap();
        // Every layer ran in the enclave instead, so the answer is the enclave's exactly.
        assert_eq!(ran.outputs, exact);
        for run in &ran.placement {
            assert_eq!(run.ran, Placement::Enclave);
            assert!(!run.verified);
            assert!(run.fallback.as_deref().unwrap().contains("Freivalds"), "{run:?}");
        }
        for status in falling_back.layers() {
            assert_eq!(
                (status.failures, status.checks_failed, status.fallbacks),
                (round, round, round)
            );
            assert_eq!(status.rows_verified, 0);
        }
    }
}

#[test]
fn a_dead_accelerator_fails_the_request_or_falls_back() {
    let bytes = classifier(&[], 5).to_onnx().unwrap();
    let data = rows();
    let x = &data.features[..30];
    let failing =
        HybridModel::load(&bytes, &LinearPlan::offload(Arc::new(Dead), OffloadFallback::Fail))
            .unwrap();
    assert!(matches!(
        failing.infer(&[1, 30], x),
        Err(EngineError::Offload { source: OffloadError::Transport(_), .. })
    ));
    assert_eq!((failing.layers()[0].failures, failing.layers()[0].checks_failed), (1, 0));
    let falling_back =
        HybridModel::load(&bytes, &LinearPlan::offload(Arc::new(Dead), OffloadFallback::Enclave))
            .unwrap();
    let ran = falling_back.infer(&[1, 30], x).unwrap();
    assert_eq!(ran.placement[0].ran, Placement::Enclave);
    assert!(ran.placement[0].fallback.as_deref().unwrap().contains("unreachable"));
    assert_eq!(falling_back.layers()[0].fallbacks, 1);
}

/// The classifier's graph with `edit` applied.
fn edited(edit: impl FnOnce(&mut pb::GraphProto)) -> Vec<u8> {
    let bytes = classifier(&[4], 1).to_onnx().unwrap();
    let mut model = pb::ModelProto::decode(&bytes[..]).unwrap();
    edit(model.graph.as_mut().unwrap());
    model.encode_to_vec()
}

#[test]
fn graphs_with_other_operators_or_computed_weights_are_refused() {
    let plan = LinearPlan::offload(Honest::new(), OffloadFallback::Fail);
    // A Conv instead of the ReLU: named in the refusal, whichever plan.
    let conv = edited(|g| {
        let relu = g.node.iter_mut().find(|n| n.op_type == "Relu").unwrap();
        relu.op_type = "Conv".into();
    });
    for plan in [&plan, &LinearPlan::Enclave] {
        let err = HybridModel::load(&conv, plan).unwrap_err();
        assert!(
            matches!(&err, EngineError::UnsupportedOperator { node, op } if op == "Conv" && node == "relu0"),
            "{err:?}"
        );
        assert!(err.to_string().contains("Conv"));
    }
    // An operator from another domain.
    let custom = edited(|g| g.node[0].domain = "com.example".into());
    assert!(matches!(
        HybridModel::load(&custom, &plan),
        Err(EngineError::UnsupportedOperator { op, .. }) if op == "com.example.Sub"
    ));
    // Weights computed from the input rather than constant: not a layer with public weights.
    let computed = edited(|g| {
        let gemm = g.node.iter_mut().find(|n| n.op_type == "Gemm").unwrap();
        gemm.input[1] = "h0".into();
    });
    assert!(matches!(HybridModel::load(&computed, &plan), Err(EngineError::UnsupportedModel(_))));
    // A Gemm that transposes its input.
    let trans_a = edited(|g| {
        let gemm = g.node.iter_mut().find(|n| n.op_type == "Gemm").unwrap();
        gemm.attribute.push(pb::AttributeProto {
            name: "transA".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        });
    });
    assert!(matches!(HybridModel::load(&trans_a, &plan), Err(EngineError::UnsupportedModel(_))));
    // A name read before it is computed.
    let dangling = edited(|g| g.node[1].input[0] = "nowhere".into());
    assert!(matches!(HybridModel::load(&dangling, &plan), Err(EngineError::UnsupportedModel(_))));
    // Not a model at all.
    assert!(matches!(HybridModel::load(b"not onnx", &plan), Err(EngineError::ModelLoad(_))));
    // Inputs that do not fit are refused before anything is sent.
    let model = HybridModel::load(&classifier(&[], 1).to_onnx().unwrap(), &plan).unwrap();
    assert!(matches!(model.infer(&[1, 29], &[0.0; 29]), Err(EngineError::SchemaMismatch(_))));
    assert!(matches!(model.infer(&[2, 30], &[0.0; 30]), Err(EngineError::SchemaMismatch(_))));
}

#[test]
fn other_supported_operators_match_tract() {
    // Sigmoid, Tanh, Identity, Flatten and a Gemm with alpha and beta, opset 13.
    let bytes = edited(|g| {
        let relu = g.node.iter_mut().find(|n| n.op_type == "Relu").unwrap();
        relu.op_type = "Tanh".into();
        let gemm = g.node.iter_mut().find(|n| n.op_type == "Gemm").unwrap();
        gemm.attribute.push(pb::AttributeProto {
            name: "alpha".into(),
            r#type: pb::attribute_proto::AttributeType::Float as i32,
            f: 0.5,
            ..Default::default()
        });
        gemm.attribute.push(pb::AttributeProto {
            name: "beta".into(),
            r#type: pb::attribute_proto::AttributeType::Float as i32,
            f: 2.0,
            ..Default::default()
        });
        let first = g.node.remove(0);
        // features → Identity → Flatten → Sigmoid → (Sub …)
        let node = |op: &str, input: &str, output: &str| pb::NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: vec![input.into()],
            output: vec![output.into()],
            ..Default::default()
        };
        let mut sub = first;
        sub.input[0] = "squashed".into();
        let rest = std::mem::take(&mut g.node);
        g.node = vec![
            node("Identity", "features", "same"),
            node("Flatten", "same", "flat"),
            node("Sigmoid", "flat", "squashed"),
            sub,
        ];
        g.node.extend(rest);
    });
    let data = rows();
    let x = &data.features[..16 * 30];
    let expected = tract(&bytes).infer(&[16, 30], x).unwrap();
    let got = HybridModel::load(&bytes, &LinearPlan::Enclave).unwrap().infer(&[16, 30], x).unwrap();
    assert_eq!(got.outputs[0].shape, expected[0].shape);
    for (a, b) in got.outputs[0].data.iter().zip(&expected[0].data) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

proptest::proptest! {
    #[test]
    fn any_bytes_load_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = HybridModel::load(&bytes, &LinearPlan::Enclave);
    }
}
