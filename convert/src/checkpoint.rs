//! The one interface between a source format and the converter.

use crate::ConvertError;

/// A source model being converted: its Hugging Face style config and its
/// tensors under Hugging Face names (`model.layers.0.self_attn.q_proj.weight`),
/// in Hugging Face orientation (`[out_features, in_features]`), read one at a
/// time so that a model is never held in memory twice.
pub trait Checkpoint {
    /// The equivalent of the checkpoint's `config.json` (`model_type`,
    /// `hidden_size`, `num_attention_heads`, …).
    fn hf_config(&self) -> &serde_json::Value;

    /// The equivalent of `generation_config.json`, when the source has one.
    fn generation_config(&self) -> Option<&serde_json::Value>;

    /// Every tensor name, in the source's order.
    fn tensor_names(&self) -> Vec<String>;

    /// The shape of tensor `name`, outermost dimension first.
    fn shape(&self, name: &str) -> Result<Vec<usize>, ConvertError>;

    /// Tensor `name` as float32, row-major. Values must be exactly those of the
    /// source (bf16 and f16 widen exactly; quantized GGUF blocks dequantize by
    /// their format's rule).
    fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ConvertError>;

    /// The tokenizer files to put into the artifact, as `(file name, bytes)`:
    /// copied from a Hugging Face folder, or built from a GGUF's vocabulary.
    fn tokenizer_files(&mut self) -> Result<Vec<(String, Vec<u8>)>, ConvertError>;
}
