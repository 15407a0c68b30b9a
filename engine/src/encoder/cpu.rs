//! The encoder on the CPU, in f32 with the reference ops of `kernels::cpu`.
//! Each input runs alone, so no position ever attends to another input's
//! tokens or to padding (docs/families.md, "bert": the padded batch WebLLM
//! runs gives the same rows).

use mlc_kernels::cpu;
use mlc_loader::Artifact;

use super::weights::{EncoderWeights, Linear, Norm};
use super::{EmbeddingModel, EncoderActivation, EncoderSpec};
use crate::{EngineError, ModelFuture};

/// A BERT encoder with its weights in host memory.
pub struct CpuEncoder {
    spec: EncoderSpec,
    weights: EncoderWeights,
}

impl CpuEncoder {
    /// Reads the encoder of a `model_type: "bert"` artifact.
    pub fn load(artifact: &Artifact) -> Result<CpuEncoder, EngineError> {
        let spec = super::spec_for(&artifact.config)?;
        let weights = EncoderWeights::load(&spec, artifact)?;
        Ok(CpuEncoder { spec, weights })
    }

    /// The last hidden state of `tokens`, `[tokens, hidden]`.
    fn forward(&self, tokens: &[u32]) -> Vec<f32> {
        let (spec, w) = (&self.spec, &self.weights);
        let (n, h) = (tokens.len(), spec.hidden_size);
        // Word + position (0, 1, ...) + token type 0, then LayerNorm.
        let mut sum = vec![0.0f32; n * h];
        for (t, (row, &token)) in sum.chunks_mut(h).zip(tokens).enumerate() {
            let word = &w.word[token as usize * h..][..h];
            let position = &w.position[t * h..][..h];
            for (((o, a), b), c) in row.iter_mut().zip(word).zip(position).zip(&w.token_type[..h]) {
                *o = a + b + c;
            }
        }
        let mut x = layer_norm(&sum, &w.embedding_norm, spec.layer_norm_eps);
        for layer in &w.layers {
            let qkv = linear(&x, n, &layer.qkv);
            let mut attention = vec![0.0f32; n * h];
            cpu::bidirectional_attention(
                &qkv,
                spec.num_heads,
                spec.head_dim,
                spec.attention_scale(),
                &mut attention,
            );
            let mut y = linear(&attention, n, &layer.attention_out);
            cpu::add_in_place(&mut y, &x);
            x = layer_norm(&y, &layer.attention_norm, spec.layer_norm_eps);
            let mut inner = linear(&x, n, &layer.intermediate);
            match spec.activation {
                EncoderActivation::Gelu => cpu::gelu_erf(&mut inner),
                EncoderActivation::GeluTanh => cpu::gelu_tanh(&mut inner),
                EncoderActivation::Relu => cpu::relu(&mut inner),
                EncoderActivation::Silu => cpu::silu(&mut inner),
            }
            let mut y = linear(&inner, n, &layer.output);
            cpu::add_in_place(&mut y, &x);
            x = layer_norm(&y, &layer.output_norm, spec.layer_norm_eps);
        }
        x
    }
}

impl EmbeddingModel for CpuEncoder {
    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    fn encode<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        Box::pin(async move {
            super::check_input(&self.spec, tokens)?;
            Ok(self.forward(tokens))
        })
    }
}

/// `x · Wᵀ + b` for `m` rows of `x`.
fn linear(x: &[f32], m: usize, layer: &Linear) -> Vec<f32> {
    let weight = cpu::Weight::Dense { rows: layer.rows, cols: layer.cols, values: &layer.weight };
    let mut out = vec![0.0f32; m * layer.rows];
    cpu::matmul(x, m, &weight, &mut out);
    for row in out.chunks_mut(layer.rows) {
        cpu::add_in_place(row, &layer.bias);
    }
    out
}

fn layer_norm(x: &[f32], norm: &Norm, eps: f32) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    cpu::layer_norm(x, &norm.weight, &norm.bias, eps, &mut out);
    out
}
