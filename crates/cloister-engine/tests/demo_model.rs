//! The committed demo classifier (`assets/breast_cancer_classifier.onnx`) on the committed WDBC
//! table (`assets/breast_cancer.csv`), plus the engine's error paths.

use std::path::PathBuf;
use std::time::Instant;

use cloister_engine::{EngineError, OnnxModel, Predictions, Table, run_batch};

/// Rows of the full 569-row table the demo model classifies correctly, as printed by
/// `scripts/train_demo_model.py` ("full-table accuracy 0.994727592 (566/569 correct)"), computed
/// there in float32 exactly as the exported graph does. The smallest margin |p1-p0| over all rows
/// is 0.037, far above float32 rounding differences between numpy and tract.
const EXPECTED_CORRECT: usize = 566;
const ROWS: usize = 569;

fn asset(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The WDBC table split into features (30 columns) and labels (0 = malignant, 1 = benign).
fn features_and_labels() -> (Table, Vec<usize>) {
    let table = Table::from_csv(&asset("breast_cancer.csv")).expect("parse breast_cancer.csv");
    assert_eq!((table.rows(), table.columns()), (ROWS, 31), "header line must be skipped");
    let mut features = Vec::with_capacity(ROWS * 30);
    let mut labels = Vec::with_capacity(ROWS);
    for row in table.values().chunks(31) {
        features.extend_from_slice(&row[..30]);
        labels.push(row[30] as usize);
    }
    (Table::from_values(ROWS, 30, features).expect("features"), labels)
}

fn demo_model() -> OnnxModel {
    OnnxModel::load(&asset("breast_cancer_classifier.onnx")).expect("load demo model")
}

#[test]
fn demo_model_schema() {
    let model = demo_model();
    assert_eq!(model.input().name, "features");
    assert_eq!(model.input().shape, vec![None, Some(30)]);
    assert_eq!(model.input().dtype, "F32");
    assert_eq!(model.outputs().len(), 1);
    assert_eq!(model.outputs()[0].name, "probabilities");
    assert_eq!(model.outputs()[0].shape, vec![None, Some(2)]);
}

#[test]
fn demo_model_reaches_the_scripts_accuracy() {
    let started = Instant::now();
    let model = demo_model();
    let loaded = started.elapsed();
    let (features, labels) = features_and_labels();

    let started = Instant::now();
    let mut calls = Vec::new();
    let predictions =
        run_batch(&model, &features, 64, &mut |done| calls.push(done)).expect("inference");
    let inferred = started.elapsed();
    eprintln!("demo model: load {loaded:?}, inference of {ROWS} rows {inferred:?}");

    assert_eq!(predictions.rows, ROWS);
    assert_eq!(predictions.columns, vec!["probabilities_0", "probabilities_1"]);
    assert_eq!(predictions.values.len(), ROWS * 2);
    assert_eq!(calls, vec![64, 128, 192, 256, 320, 384, 448, 512, 569]);
    for row in predictions.values.chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "softmax row {row:?}");
    }
    let correct = predictions.argmax().iter().zip(&labels).filter(|(p, l)| p == l).count();
    let accuracy = correct as f64 / ROWS as f64;
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
    assert_eq!(correct, EXPECTED_CORRECT, "accuracy {accuracy}");
    assert!((accuracy - 0.994_727_592).abs() < 1e-9, "accuracy {accuracy}");

    // The CSV form round-trips exactly.
    let csv = predictions.to_csv();
    assert!(csv.starts_with(b"probabilities_0,probabilities_1\n"));
    assert_eq!(Predictions::from_csv(&csv).expect("parse predictions"), predictions);
}

#[test]
fn batch_size_does_not_change_results() {
    let model = demo_model();
    let (features, _) = features_and_labels();
    let whole = run_batch(&model, &features, ROWS, &mut |_| {}).expect("one batch");
    for batch in [1, 7, 100, 10_000] {
        let p = run_batch(&model, &features, batch, &mut |_| {}).expect("batched");
        assert_eq!(p.rows, ROWS);
        for (a, b) in p.values.iter().zip(&whole.values) {
            assert!((a - b).abs() < 1e-6, "batch {batch}: {a} vs {b}");
        }
    }
}

#[test]
fn wrong_number_of_columns_is_a_schema_mismatch() {
    let model = demo_model();
    let table = Table::from_values(3, 29, vec![0.5; 3 * 29]).expect("table");
    let err = run_batch(&model, &table, 16, &mut |_| {}).expect_err("29 columns");
    assert!(matches!(err, EngineError::SchemaMismatch(_)), "{err:?}");
    assert!(
        err.to_string().contains(
            "the data set has 29 values per row but model input 'features' expects 30 (shape [N,30])"
        ),
        "{err}"
    );
}

#[test]
fn zero_batch_rows_is_rejected() {
    let model = demo_model();
    let table = Table::from_values(1, 30, vec![0.0; 30]).expect("table");
    let err = run_batch(&model, &table, 0, &mut |_| {}).expect_err("zero batch");
    assert!(matches!(err, EngineError::InvalidArgument(_)), "{err:?}");
}

#[test]
fn garbage_model_bytes_are_a_model_load_error() {
    for bytes in [&b""[..], b"definitely not an onnx model", &[0xff; 64]] {
        let err = OnnxModel::load(bytes).expect_err("garbage");
        assert!(matches!(err, EngineError::ModelLoad(_)), "{err:?}");
    }
    // A truncated real model too.
    let model = asset("breast_cancer_classifier.onnx");
    let err = OnnxModel::load(&model[..model.len() / 2]).expect_err("truncated");
    assert!(matches!(err, EngineError::ModelLoad(_)), "{err:?}");
}

#[test]
fn ragged_csv_names_the_line() {
    let err = Table::from_csv(b"f1,f2,f3\n1,2,3\n4,5,6\n7,8\n").expect_err("ragged");
    assert!(matches!(err, EngineError::InvalidData(_)), "{err:?}");
    assert!(err.to_string().contains("line 4"), "{err}");
}

#[test]
fn header_line_is_detected_and_skipped() {
    let with = Table::from_csv(b"radius,texture\n1.5,2\n3,4\n").expect("with header");
    let without = Table::from_csv(b"1.5,2\n3,4\n").expect("without header");
    assert_eq!((with.rows(), with.columns()), (2, 2));
    assert_eq!(with.values(), without.values());
}

#[test]
fn model_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<OnnxModel>();
    assert_send_sync::<Table>();
}
