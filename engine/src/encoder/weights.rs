//! Reads a BERT encoder's parameters, under the names MLC's `bert_loader.py`
//! writes, and checks each shape against the spec.

use mlc_loader::{Artifact, DType};

use super::EncoderSpec;
use crate::EngineError;
use crate::weights::{expect_dtype, tensor_with_shape};

/// LayerNorm parameters.
pub struct Norm {
    /// Per-feature scale.
    pub weight: Vec<f32>,
    /// Per-feature shift.
    pub bias: Vec<f32>,
}

/// A projection `y = x · Wᵀ + b`, `W` row-major `[rows, cols]`.
pub struct Linear {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// The matrix.
    pub weight: Vec<f32>,
    /// One bias per output feature.
    pub bias: Vec<f32>,
}

/// One post-norm encoder layer.
pub struct EncoderLayer {
    /// `attention.self.qkv`: `[q; k; v]`, fused on conversion.
    pub qkv: Linear,
    /// `attention.output.dense`.
    pub attention_out: Linear,
    /// `attention.output.LayerNorm`, after the attention's residual add.
    pub attention_norm: Norm,
    /// `intermediate.dense`, followed by the activation.
    pub intermediate: Linear,
    /// `output.dense`.
    pub output: Linear,
    /// `output.LayerNorm`, after the MLP's residual add.
    pub output_norm: Norm,
}

/// Every parameter of the encoder, widened to f32.
pub struct EncoderWeights {
    /// `embeddings.word_embeddings`, `[vocab, hidden]`.
    pub word: Vec<f32>,
    /// `embeddings.position_embeddings`, `[position_rows, hidden]`.
    pub position: Vec<f32>,
    /// `embeddings.token_type_embeddings`, `[type_vocab, hidden]`.
    pub token_type: Vec<f32>,
    /// `embeddings.LayerNorm`.
    pub embedding_norm: Norm,
    /// `encoder.layer.L`.
    pub layers: Vec<EncoderLayer>,
}

/// Float dtypes the encoder reads (q0f32, q0f16, and bf16-encoded f32 records).
const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

impl EncoderWeights {
    /// Reads every parameter `spec` implies from `artifact`.
    pub fn load(spec: &EncoderSpec, artifact: &Artifact) -> Result<EncoderWeights, EngineError> {
        let (h, i) = (spec.hidden_size, spec.intermediate_size);
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, EngineError> {
            if artifact.has_tensor(&format!("{}.q_weight", name.trim_end_matches(".weight"))) {
                return Err(EngineError::Unsupported(format!(
                    "`{name}` is q4-quantized; the encoder runs unquantized (q0f32 / q0f16) BERT artifacts only"
                )));
            }
            let tensor = tensor_with_shape(artifact, name, shape)?;
            expect_dtype(&tensor, &FLOATS)?;
            Ok(tensor.to_f32_vec()?)
        };
        let norm = |prefix: &str| -> Result<Norm, EngineError> {
            Ok(Norm {
                weight: read(&format!("{prefix}.LayerNorm.weight"), &[h])?,
                bias: read(&format!("{prefix}.LayerNorm.bias"), &[h])?,
            })
        };
        let linear = |name: &str, rows: usize, cols: usize| -> Result<Linear, EngineError> {
            Ok(Linear {
                rows,
                cols,
                weight: read(&format!("{name}.weight"), &[rows, cols])?,
                bias: read(&format!("{name}.bias"), &[rows])?,
            })
        };
        let mut layers = Vec::with_capacity(spec.num_layers);
        for l in 0..spec.num_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(EncoderLayer {
                qkv: linear(&format!("{p}.attention.self.qkv"), 3 * h, h)?,
                attention_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: norm(&format!("{p}.attention.output"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"), i, h)?,
                output: linear(&format!("{p}.output.dense"), h, i)?,
                output_norm: norm(&format!("{p}.output"))?,
            });
        }
        Ok(EncoderWeights {
            word: read("embeddings.word_embeddings.weight", &[spec.vocab_size, h])?,
            position: read("embeddings.position_embeddings.weight", &[spec.position_rows, h])?,
            token_type: read(
                "embeddings.token_type_embeddings.weight",
                &[spec.type_vocab_size, h],
            )?,
            embedding_norm: norm("embeddings")?,
            layers,
        })
    }
}
