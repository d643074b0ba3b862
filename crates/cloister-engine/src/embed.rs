//! Sentence embeddings with a BERT encoder (candle): mean pooling over real tokens, L2-normalised.
//!
//! This is what sentence-transformers does for models like all-MiniLM-L6-v2 (its `Pooling`
//! module in mean mode, then `Normalize`). The tokenizer's own padding and truncation settings
//! are switched off: texts are batched by similar length, padded to the longest in the batch,
//! and padding is excluded from attention and from the mean through the attention mask, so a
//! text's vector does not depend on what it was batched with. A text longer than the model's
//! position table (`max_position_embeddings`, 512 for BERT) is **refused** with an error naming
//! it, never silently truncated.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;
use zeroize::Zeroizing;

use super::EngineError;
use super::llm::{ModelFiles, load_safetensors, prepare_tokenizer, require_file};

/// Texts run through the encoder together (sorted by length first, so padding stays small).
const BATCH: usize = 32;

/// The embeddings of a list of texts.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// One unit-length vector per input text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens processed (including the model's `[CLS]`/`[SEP]`), for usage accounting.
    pub tokens: usize,
}

/// A sentence encoder ready to embed. `Send + Sync`: share it behind an `Arc`.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dimension: usize,
    max_tokens: usize,
    pad_id: u32,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dimension", &self.dimension)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

fn inference_err(e: candle_core::Error) -> EngineError {
    EngineError::Inference(e.to_string())
}

impl Embedder {
    /// Loads a BERT sentence encoder: `config.json`, `tokenizer.json` and `*.safetensors`.
    pub fn from_files(files: &ModelFiles) -> Result<Self, EngineError> {
        let device = Device::Cpu;
        let config: Config =
            serde_json::from_slice(require_file(files, "config.json")?).map_err(|e| {
                EngineError::ModelLoad(format!("config.json is not a BERT configuration: {e}"))
            })?;
        if config.hidden_size == 0
            || config.num_attention_heads == 0
            || !config.hidden_size.is_multiple_of(config.num_attention_heads)
        {
            return Err(EngineError::ModelLoad(format!(
                "config.json: hidden_size {} does not split into {} attention heads",
                config.hidden_size, config.num_attention_heads
            )));
        }
        if config.max_position_embeddings < 3 {
            return Err(EngineError::ModelLoad(
                "config.json: max_position_embeddings must leave room for [CLS], a token and [SEP]"
                    .into(),
            ));
        }
        let mut tokenizer = Tokenizer::from_bytes(require_file(files, "tokenizer.json")?)
            .map_err(|e| EngineError::Tokenizer(format!("tokenizer.json does not load: {e}")))?;
        prepare_tokenizer(&mut tokenizer)?;
        let pad_id = u32::try_from(config.pad_token_id).map_err(|_| {
            EngineError::ModelLoad("config.json: pad_token_id is out of range".into())
        })?;

        let tensors = load_safetensors(files, &device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vb, &config).map_err(|e| {
            EngineError::ModelLoad(format!("the BERT weights could not be loaded: {e}"))
        })?;
        Ok(Self {
            model,
            tokenizer,
            dimension: config.hidden_size,
            max_tokens: config.max_position_embeddings,
            pad_id,
            device,
        })
    }

    /// The length of every vector.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Embeds `texts` (one unit vector each, in order). An empty list gives no vectors; a text
    /// longer than the model accepts is refused (`InputTooLong`, naming the text's index).
    pub fn embed(&self, texts: &[String]) -> Result<Embeddings, EngineError> {
        let mut encoded = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let encoding = self
                .tokenizer
                .encode(text.as_str(), true)
                .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
            let ids = Zeroizing::new(encoding.get_ids().to_vec());
            if ids.is_empty() {
                return Err(EngineError::InvalidArgument(format!("text {index} has no tokens")));
            }
            if ids.len() > self.max_tokens {
                return Err(EngineError::InputTooLong {
                    input: format!("text {index}"),
                    tokens: ids.len(),
                    limit: self.max_tokens,
                });
            }
            encoded.push(ids);
        }
        let tokens = encoded.iter().map(|ids| ids.len()).sum();

        // Longest first, so each batch pads to a similar length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        let mut vectors = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            let rows = self.embed_batch(batch.iter().map(|&i| encoded[i].as_slice()))?;
            for (&i, row) in batch.iter().zip(rows) {
                vectors[i] = row;
            }
        }
        Ok(Embeddings { vectors, tokens })
    }

    /// Runs one padded batch: mean of the last hidden states over real tokens, then L2 norm.
    fn embed_batch<'a>(
        &self,
        batch: impl ExactSizeIterator<Item = &'a [u32]> + Clone,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let rows = batch.len();
        let width = batch.clone().map(<[u32]>::len).max().unwrap_or(0);
        let mut ids = Zeroizing::new(Vec::with_capacity(rows * width));
        let mut mask = Vec::with_capacity(rows * width);
        for row in batch {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(self.pad_id, width - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, width - row.len()));
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let input_ids = Tensor::from_slice(ids.as_slice(), (rows, width), &self.device)?;
            let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
            let token_type_ids = input_ids.zeros_like()?;
            let hidden = self.model.forward(&input_ids, &token_type_ids, Some(&mask))?;
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        };
        run().map_err(inference_err)
    }
}
