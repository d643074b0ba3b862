//! Model inspection: reads what `cloister model import` records about a model (format,
//! architecture, parameter count, input/output schema, context length, vocabulary, chat template)
//! from its files, without running it.
//!
//! Three layouts are understood:
//! - **ONNX**: one `.onnx` file; the graph's inputs (minus initializers) and outputs with their
//!   element types and dimensions, the producer, the opsets, and the element count of every
//!   initializer.
//! - **GGUF**: one `.gguf` file; `general.architecture`, `{arch}.context_length`,
//!   `{arch}.embedding_length`, the tokenizer's token list and chat template, and the element
//!   count and quantization of every tensor (which must lie inside the file).
//! - **safetensors**: a Hugging Face directory; `config.json` (`model_type`, `hidden_size`,
//!   `vocab_size`, `max_position_embeddings`), a `tokenizer.json`, the chat template from
//!   `tokenizer_config.json` when present, and the header of every `.safetensors` file.
//!
//! The parameter count is the number of elements of every weight tensor; int64 and bool tensors
//! (shapes, axes, `position_ids`) are index buffers, not weights, and are reported apart as
//! `index_elements` in the details.

use std::collections::BTreeMap;
use std::io::Cursor;

use candle_core::quantized::gguf_file;
use cloister_types::model::{ModelFormat, ModelMetadata, ModelTask, TensorSpec};
use serde_json::Value as Json;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::pb::{ModelProto, ValueInfoProto};
use tract_onnx::prelude::Framework as _;

use super::EngineError;

/// What the engines run, by format: exactly these are accepted at import, so that a model that
/// imports is a model the worker can serve. GGUF runs on llama.cpp through the engine's own
/// byte-level BPE tokenizer (`gguf_tokenizer`), tested with llama models; safetensors on candle
/// (`llm.rs` runs llama, `embed.rs` BERT).
const GGUF_RUNS: &[(&str, ModelTask)] = &[("llama", ModelTask::TextGeneration)];
const SAFETENSORS_RUNS: &[(&str, ModelTask)] =
    &[("llama", ModelTask::TextGeneration), ("bert", ModelTask::Embedding)];

/// Model families recognised by name (`config.json` `architectures` classes are mapped to them),
/// so that a refusal names the family; recognising one does not mean it runs.
const KNOWN_FAMILIES: &[&str] = &[
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen3",
    "phi2",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3",
    "stablelm",
    "starcoder2",
    "falcon",
    "gpt2",
    "olmo",
    "granite",
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "nomic-bert",
];

/// Reads a model's metadata from its files (relative path → bytes).
///
/// For [`ModelFormat::Onnx`] and [`ModelFormat::Gguf`] the map holds exactly one file with the
/// matching extension (other files, such as a licence, are allowed beside it); for
/// [`ModelFormat::Safetensors`] it holds the directory's files, `config.json`, `tokenizer.json`
/// and at least one `.safetensors` file among them.
///
/// # Errors
/// [`EngineError::ModelLoad`] naming the file and the check that failed: an unreadable file, a
/// missing `config.json` or `tokenizer.json`, a tensor outside its file;
/// [`EngineError::UnsupportedModel`] for an architecture the engine does not run in that format.
pub fn inspect(
    format: ModelFormat,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<ModelMetadata, EngineError> {
    match format {
        ModelFormat::Onnx => {
            let (path, bytes) = single_file(files, ".onnx", format)?;
            inspect_onnx(path, bytes)
        }
        ModelFormat::Gguf => {
            let (path, bytes) = single_file(files, ".gguf", format)?;
            inspect_gguf(path, bytes)
        }
        ModelFormat::Safetensors => inspect_safetensors(files),
    }
}

fn load_error(path: &str, what: impl std::fmt::Display) -> EngineError {
    EngineError::ModelLoad(format!("{path}: {what}"))
}

fn single_file<'a>(
    files: &'a BTreeMap<String, Vec<u8>>,
    extension: &str,
    format: ModelFormat,
) -> Result<(&'a str, &'a [u8]), EngineError> {
    let mut matching = files.iter().filter(|(path, _)| path.ends_with(extension));
    match (matching.next(), matching.next()) {
        (Some((path, bytes)), None) => Ok((path.as_str(), bytes.as_slice())),
        (None, _) => Err(EngineError::ModelLoad(format!(
            "a {format} model needs one {extension} file; the model's files are {:?}",
            files.keys().collect::<Vec<_>>()
        ))),
        (Some(_), Some(_)) => Err(EngineError::ModelLoad(format!(
            "a {format} model has exactly one {extension} file; the model's files are {:?}",
            files.keys().collect::<Vec<_>>()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// ONNX

fn inspect_onnx(path: &str, bytes: &[u8]) -> Result<ModelMetadata, EngineError> {
    let proto: ModelProto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| load_error(path, format!("not an ONNX model: {e:#}")))?;
    let graph =
        proto.graph.as_ref().ok_or_else(|| load_error(path, "the ONNX model has no graph"))?;

    let mut parameter_count: u64 = 0;
    let mut buffer_elements: u64 = 0;
    for init in &graph.initializer {
        let elements = element_count(&init.dims).ok_or_else(|| {
            load_error(path, format!("initializer {:?} has an invalid shape", init.name))
        })?;
        let total =
            if is_index_type(init.data_type) { &mut buffer_elements } else { &mut parameter_count };
        *total = total
            .checked_add(elements)
            .ok_or_else(|| load_error(path, "the parameter count overflows"))?;
    }
    for sparse in &graph.sparse_initializer {
        // A sparse initializer holds only its non-zero values; count the ones stored.
        let stored = sparse.values.as_ref().map(|v| element_count(&v.dims)).unwrap_or(Some(0));
        parameter_count = parameter_count
            .checked_add(
                stored
                    .ok_or_else(|| load_error(path, "a sparse initializer has an invalid shape"))?,
            )
            .ok_or_else(|| load_error(path, "the parameter count overflows"))?;
    }

    let initializers: std::collections::BTreeSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .map(|i| tensor_spec(path, i))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs =
        graph.output.iter().map(|o| tensor_spec(path, o)).collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() {
        return Err(load_error(path, "the ONNX graph declares no inputs"));
    }
    if outputs.is_empty() {
        return Err(load_error(path, "the ONNX graph declares no outputs"));
    }

    let producer = if proto.producer_version.is_empty() {
        proto.producer_name.clone()
    } else {
        format!("{} {}", proto.producer_name, proto.producer_version)
    };
    let architecture = match (proto.producer_name.is_empty(), graph.name.is_empty()) {
        (false, false) => format!("{}/{}", proto.producer_name, graph.name),
        (false, true) => proto.producer_name.clone(),
        (true, false) => graph.name.clone(),
        (true, true) => "onnx".to_owned(),
    };

    let mut details = BTreeMap::new();
    if !producer.is_empty() {
        details.insert("producer".to_owned(), producer);
    }
    if !graph.name.is_empty() {
        details.insert("graph".to_owned(), graph.name.clone());
    }
    details.insert("ir_version".to_owned(), proto.ir_version.to_string());
    for opset in &proto.opset_import {
        let domain = if opset.domain.is_empty() { "ai.onnx" } else { opset.domain.as_str() };
        details.insert(format!("opset.{domain}"), opset.version.to_string());
    }
    details.insert("initializers".to_owned(), graph.initializer.len().to_string());
    if buffer_elements > 0 {
        details.insert("index_elements".to_owned(), buffer_elements.to_string());
    }
    details.insert("nodes".to_owned(), graph.node.len().to_string());

    Ok(ModelMetadata {
        format: ModelFormat::Onnx,
        task: ModelTask::Tensor,
        architecture,
        parameter_count,
        inputs,
        outputs,
        context_length: None,
        vocab_size: None,
        hidden_size: None,
        chat_template: None,
        details,
    })
}

/// Whether an ONNX element type holds indices, shapes or flags (int64, bool, string) rather than
/// weights: such initializers are not counted as parameters.
fn is_index_type(elem_type: i32) -> bool {
    matches!(DataType::try_from(elem_type), Ok(DataType::Int64 | DataType::Bool | DataType::String))
}

/// Product of ONNX dims; `None` for a negative dimension or an overflow. A scalar counts 1.
fn element_count(dims: &[i64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
}

fn tensor_spec(path: &str, info: &ValueInfoProto) -> Result<TensorSpec, EngineError> {
    let Some(TypeValue::TensorType(tensor)) = info.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(load_error(
            path,
            format!(
                "graph value {:?} is not a tensor (sequences and maps are not supported)",
                info.name
            ),
        ));
    };
    let dtype = DataType::try_from(tensor.elem_type)
        .map(onnx_type_name)
        .unwrap_or_else(|_| format!("unknown({})", tensor.elem_type));
    let shape = tensor
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(Dim::DimValue(v)) => u64::try_from(v).ok(),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(TensorSpec { name: info.name.clone(), dtype, shape })
}

/// ONNX element types by their short lowercase names (`float32`, `int64`, …).
fn onnx_type_name(t: DataType) -> String {
    match t {
        DataType::Float => "float32".to_owned(),
        DataType::Double => "float64".to_owned(),
        DataType::Float16 => "float16".to_owned(),
        DataType::Bfloat16 => "bfloat16".to_owned(),
        other => other.as_str_name().to_ascii_lowercase(),
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF

fn inspect_gguf(path: &str, bytes: &[u8]) -> Result<ModelMetadata, EngineError> {
    let content = gguf_file::Content::read(&mut Cursor::new(bytes))
        .map_err(|e| load_error(path, format!("not a GGUF file: {e}")))?;
    let meta = &content.metadata;
    let text = |key: &str| meta.get(key).and_then(|v| v.to_string().ok()).cloned();
    let number = |key: &str| meta.get(key).and_then(|v| v.to_u64().ok());

    let architecture = text("general.architecture")
        .ok_or_else(|| load_error(path, "the GGUF metadata has no general.architecture"))?;
    let task = task_for(GGUF_RUNS, path, &architecture)?;

    let mut parameter_count: u64 = 0;
    let mut quantization: BTreeMap<String, u64> = BTreeMap::new();
    let file_len = bytes.len() as u64;
    for (name, info) in &content.tensor_infos {
        let elements = info.shape.elem_count() as u64;
        let block = info.ggml_dtype.block_size() as u64;
        if block == 0 || !elements.is_multiple_of(block) {
            return Err(load_error(
                path,
                format!(
                    "tensor {name:?} has {elements} elements, not a multiple of its block size"
                ),
            ));
        }
        let size = elements / block * info.ggml_dtype.type_size() as u64;
        let end = content
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|start| start.checked_add(size));
        if end.is_none_or(|end| end > file_len) {
            return Err(load_error(
                path,
                format!("tensor {name:?} extends past the end of the file (truncated?)"),
            ));
        }
        parameter_count = parameter_count
            .checked_add(elements)
            .ok_or_else(|| load_error(path, "the parameter count overflows"))?;
        *quantization.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
    }
    if content.tensor_infos.is_empty() {
        return Err(load_error(path, "the GGUF file has no tensors"));
    }

    let vocab_size = match meta.get("tokenizer.ggml.tokens") {
        Some(tokens) => Some(
            tokens
                .to_vec()
                .map_err(|_| load_error(path, "tokenizer.ggml.tokens is not a list"))?
                .len() as u64,
        ),
        None => None,
    };

    let mut details = BTreeMap::new();
    details.insert(
        "quantization".to_owned(),
        quantization.iter().map(|(t, n)| format!("{t}: {n}")).collect::<Vec<_>>().join(", "),
    );
    details.insert("tensors".to_owned(), content.tensor_infos.len().to_string());
    details.insert("gguf_version".to_owned(), format!("{:?}", content.magic));
    for (key, label) in [("general.name", "name"), ("tokenizer.ggml.model", "tokenizer")] {
        if let Some(value) = text(key) {
            details.insert(label.to_owned(), value);
        }
    }
    for (suffix, label) in [
        ("block_count", "layers"),
        ("attention.head_count", "attention_heads"),
        ("attention.head_count_kv", "kv_heads"),
    ] {
        if let Some(value) = number(&format!("{architecture}.{suffix}")) {
            details.insert(label.to_owned(), value.to_string());
        }
    }

    Ok(ModelMetadata {
        format: ModelFormat::Gguf,
        task,
        parameter_count,
        inputs: Vec::new(),
        outputs: Vec::new(),
        context_length: number(&format!("{architecture}.context_length")),
        vocab_size,
        hidden_size: number(&format!("{architecture}.embedding_length")),
        chat_template: text("tokenizer.chat_template"),
        details,
        architecture,
    })
}

/// The task of `architecture` if the engine runs it in this format (`runs`).
fn task_for(
    runs: &[(&str, ModelTask)],
    path: &str,
    architecture: &str,
) -> Result<ModelTask, EngineError> {
    let arch = architecture.to_ascii_lowercase();
    runs.iter().find(|(name, _)| *name == arch).map(|(_, task)| *task).ok_or_else(|| {
        let known = if KNOWN_FAMILIES.contains(&arch.as_str()) { "" } else { "unknown " };
        EngineError::UnsupportedModel(format!(
            "{path}: {known}architecture {architecture:?} is not one the engine runs in this \
             format (it runs: {})",
            runs.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// safetensors directories

fn inspect_safetensors(files: &BTreeMap<String, Vec<u8>>) -> Result<ModelMetadata, EngineError> {
    let config_bytes = files.get("config.json").ok_or_else(|| {
        EngineError::ModelLoad(format!(
            "a safetensors model needs its config.json beside the weights; the model's files are \
             {:?}",
            files.keys().collect::<Vec<_>>()
        ))
    })?;
    let config: Json = serde_json::from_slice(config_bytes)
        .map_err(|e| load_error("config.json", format!("not JSON: {e}")))?;
    if !config.is_object() {
        return Err(load_error("config.json", "not a JSON object"));
    }
    if !files.contains_key("tokenizer.json") {
        return Err(EngineError::ModelLoad(
            "a safetensors model needs its tokenizer.json (the Hugging Face tokenizers format) \
             beside config.json"
                .to_owned(),
        ));
    }

    let architecture = config
        .get("model_type")
        .and_then(Json::as_str)
        .map(str::to_owned)
        .or_else(|| {
            // Older configs only name the class (`BertModel`, `LlamaForCausalLM`).
            let class = config.get("architectures")?.as_array()?.first()?.as_str()?;
            architecture_from_class(class)
        })
        .ok_or_else(|| {
            load_error("config.json", "it names neither model_type nor a known architectures class")
        })?;
    let task = task_for(SAFETENSORS_RUNS, "config.json", &architecture)?;

    let mut parameter_count: u64 = 0;
    let mut buffer_elements: u64 = 0;
    let mut dtypes: BTreeMap<String, u64> = BTreeMap::new();
    let mut weight_files = 0usize;
    for (path, bytes) in files.iter().filter(|(p, _)| p.ends_with(".safetensors")) {
        let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| load_error(path, format!("not a safetensors file: {e}")))?;
        for info in metadata.tensors().values() {
            let elements = info
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(|| load_error(path, "a tensor's element count overflows"))?;
            // int64 and bool tensors are index buffers (`position_ids`), not weights.
            let total = if matches!(info.dtype, safetensors::Dtype::I64 | safetensors::Dtype::BOOL)
            {
                &mut buffer_elements
            } else {
                &mut parameter_count
            };
            *total = total
                .checked_add(elements)
                .ok_or_else(|| load_error(path, "the parameter count overflows"))?;
            *dtypes.entry(format!("{:?}", info.dtype)).or_default() += 1;
        }
        weight_files += 1;
    }
    if weight_files == 0 {
        return Err(EngineError::ModelLoad(format!(
            "a safetensors model needs at least one .safetensors file; the model's files are {:?}",
            files.keys().collect::<Vec<_>>()
        )));
    }

    let chat_template = match files.get("tokenizer_config.json") {
        Some(bytes) => {
            let tokenizer_config: Json = serde_json::from_slice(bytes)
                .map_err(|e| load_error("tokenizer_config.json", format!("not JSON: {e}")))?;
            chat_template_of(&tokenizer_config)
        }
        None => None,
    };

    let number = |key: &str| config.get(key).and_then(Json::as_u64);
    let mut details = BTreeMap::new();
    details.insert(
        "dtypes".to_owned(),
        dtypes.iter().map(|(t, n)| format!("{t}: {n}")).collect::<Vec<_>>().join(", "),
    );
    details.insert("weight_files".to_owned(), weight_files.to_string());
    if buffer_elements > 0 {
        details.insert("index_elements".to_owned(), buffer_elements.to_string());
    }
    if let Some(class) = config
        .get("architectures")
        .and_then(Json::as_array)
        .and_then(|a| a.first())
        .and_then(Json::as_str)
    {
        details.insert("class".to_owned(), class.to_owned());
    }
    for (key, label) in [
        ("num_hidden_layers", "layers"),
        ("num_attention_heads", "attention_heads"),
        ("num_key_value_heads", "kv_heads"),
        ("intermediate_size", "intermediate_size"),
    ] {
        if let Some(value) = number(key) {
            details.insert(label.to_owned(), value.to_string());
        }
    }
    if let Some(dtype) = config.get("torch_dtype").and_then(Json::as_str) {
        details.insert("torch_dtype".to_owned(), dtype.to_owned());
    }

    Ok(ModelMetadata {
        format: ModelFormat::Safetensors,
        task,
        parameter_count,
        inputs: Vec::new(),
        outputs: Vec::new(),
        context_length: number("max_position_embeddings"),
        vocab_size: number("vocab_size"),
        hidden_size: number("hidden_size"),
        chat_template,
        details,
        architecture,
    })
}

/// `LlamaForCausalLM` → `llama`, `BertModel` → `bert`, for the known architectures.
fn architecture_from_class(class: &str) -> Option<String> {
    let lower = class.to_ascii_lowercase();
    KNOWN_FAMILIES
        .iter()
        .filter(|arch| lower.starts_with(&arch.replace('-', "")))
        .max_by_key(|arch| arch.len())
        .map(|arch| (*arch).to_owned())
}

/// `chat_template` of a `tokenizer_config.json`: a string, or a list of named templates of which
/// the `default` one is taken.
fn chat_template_of(tokenizer_config: &Json) -> Option<String> {
    match tokenizer_config.get("chat_template")? {
        Json::String(template) => Some(template.clone()),
        Json::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str())
            .map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_classes_map_to_model_types() {
        assert_eq!(architecture_from_class("BertModel").as_deref(), Some("bert"));
        assert_eq!(architecture_from_class("LlamaForCausalLM").as_deref(), Some("llama"));
        assert_eq!(architecture_from_class("Qwen2ForCausalLM").as_deref(), Some("qwen2"));
        assert_eq!(architecture_from_class("Gemma2ForCausalLM").as_deref(), Some("gemma2"));
        assert_eq!(architecture_from_class("XLMRobertaModel").as_deref(), Some("xlm-roberta"));
        assert_eq!(architecture_from_class("T5ForConditionalGeneration"), None);
    }

    #[test]
    fn chat_templates_are_read_from_strings_and_named_lists() {
        let plain = serde_json::json!({"chat_template": "{{ messages }}"});
        assert_eq!(chat_template_of(&plain).as_deref(), Some("{{ messages }}"));
        let named = serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]});
        assert_eq!(chat_template_of(&named).as_deref(), Some("D"));
        assert_eq!(chat_template_of(&serde_json::json!({})), None);
    }

    #[test]
    fn element_counts_refuse_negative_dimensions() {
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[2, 3]), Some(6));
        assert_eq!(element_count(&[2, -1]), None);
    }
}
