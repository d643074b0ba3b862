//! A process that has not loaded onnxruntime (its own test binary, since loading is
//! process-wide): `Auto` falls back to tract, and a model pinned to `Ort` is refused rather
//! than run elsewhere or loaded from an unchecked library.

use std::path::PathBuf;

use cloister_engine::{EngineError, OnnxEngine, OnnxModel, OnnxOptions, onnxruntime_loaded};

fn classifier() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/breast_cancer_classifier.onnx");
    std::fs::read(path).expect("demo model")
}

#[test]
fn without_the_library_auto_is_tract_and_ort_is_refused() {
    assert!(!onnxruntime_loaded());
    let bytes = classifier();
    let auto = OnnxModel::load(&bytes).expect("auto");
    assert_eq!(auto.engine(), OnnxEngine::Tract);

    let err = OnnxModel::load_with(&bytes, OnnxOptions { engine: OnnxEngine::Ort, threads: 1 })
        .expect_err("ort pinned");
    assert!(matches!(err, EngineError::Runtime(_)), "{err:?}");
    assert!(err.to_string().contains("not loaded"), "{err}");
    assert!(!onnxruntime_loaded());
}
