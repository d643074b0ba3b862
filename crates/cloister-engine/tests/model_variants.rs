//! Variants of the demo model, made by rewriting its ONNX protobuf: a fixed batch dimension
//! (exercises the zero-padded last batch), an int32 input (unsupported), an int64 input and a
//! second input (both load; a table cannot run through them).

use std::path::PathBuf;

use cloister_engine::{EngineError, OnnxModel, Table, run_batch};
use prost::Message;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
use tract_onnx::pb::{ModelProto, ValueInfoProto, type_proto};

fn demo_proto() -> ModelProto {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/breast_cancer_classifier.onnx");
    let bytes = std::fs::read(&path).expect("demo model");
    ModelProto::decode(&bytes[..]).expect("decode demo model")
}

fn tensor_type(info: &mut ValueInfoProto) -> &mut type_proto::Tensor {
    match info.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        Some(type_proto::Value::TensorType(t)) => t,
        None => panic!("value info without a tensor type"),
    }
}

fn set_batch(info: &mut ValueInfoProto, batch: i64) {
    let shape = tensor_type(info).shape.as_mut().expect("shape");
    shape.dim[0].value = Some(Dim::DimValue(batch));
}

fn table(rows: usize) -> Table {
    let values = (0..rows * 30).map(|i| ((i * 7919) % 1000) as f32 / 10.0).collect();
    Table::from_values(rows, 30, values).expect("table")
}

#[test]
fn fixed_batch_model_pads_the_last_batch() {
    let symbolic = OnnxModel::load(&demo_proto().encode_to_vec()).expect("symbolic model");
    let mut proto = demo_proto();
    let graph = proto.graph.as_mut().expect("graph");
    set_batch(&mut graph.input[0], 4);
    set_batch(&mut graph.output[0], 4);
    let fixed = OnnxModel::load(&proto.encode_to_vec()).expect("fixed-batch model");
    assert_eq!(fixed.input().shape, vec![Some(4), Some(30)]);

    let data = table(10);
    let mut progress = Vec::new();
    // batch_rows is overridden by the model's fixed batch of 4: 4 + 4 + 2 (padded) rows.
    let got = run_batch(&fixed, &data, 3, &mut |d| progress.push(d)).expect("fixed run");
    assert_eq!(progress, vec![4, 8, 10]);
    assert_eq!(got.rows, 10);
    assert_eq!(got.values.len(), 20);
    let want = run_batch(&symbolic, &data, 10, &mut |_| {}).expect("symbolic run");
    for (a, b) in got.values.iter().zip(&want.values) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn int32_input_is_unsupported() {
    let mut proto = demo_proto();
    let graph = proto.graph.as_mut().expect("graph");
    tensor_type(&mut graph.input[0]).elem_type = 6; // INT32
    let err = OnnxModel::load(&proto.encode_to_vec()).expect_err("int32 input");
    assert!(matches!(err, EngineError::UnsupportedModel(_)), "{err:?}");
    assert!(err.to_string().contains("only float32 and int64 inputs"), "{err}");
}

#[test]
fn a_table_needs_one_float_input() {
    let data = table(2);
    // A second (unused) input: the model loads, names both, and a table cannot feed it.
    let mut proto = demo_proto();
    let graph = proto.graph.as_mut().expect("graph");
    let mut extra = graph.input[0].clone();
    extra.name = "extra".into();
    graph.input.push(extra);
    let two = OnnxModel::load(&proto.encode_to_vec()).expect("two inputs");
    assert_eq!(two.inputs().len(), 2);
    assert_eq!(two.values_per_row(), None);
    let err = run_batch(&two, &data, 2, &mut |_| {}).expect_err("two inputs");
    assert!(matches!(err, EngineError::UnsupportedModel(_)), "{err:?}");
    assert!(err.to_string().contains("'extra'"), "{err}");
    let err = two.infer(&[2, 30], data.values()).expect_err("two inputs");
    assert!(err.to_string().contains("2 inputs"), "{err}");
}
