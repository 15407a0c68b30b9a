//! Encoder models: token ids in, hidden states and embeddings out. BERT
//! (`model_type: "bert"`, snowflake-arctic-embed) is the one family.
//!
//! An encoder is not a chat model: it has no KV cache, no logits and no
//! sampling, and every position attends to every other, so it shares nothing
//! of the decoder's contract ([`crate::LanguageModel`], [`crate::backend::Backend`])
//! but the reference ops. It gets its own contract, [`EmbeddingModel`], and
//! [`ModelKind`] tells the front ends which one an artifact needs
//! (docs/ARCHITECTURE.md, "Encoders").

mod cpu;
mod gpu;
mod spec;
mod weights;

pub use cpu::CpuEncoder;
pub use gpu::GpuEncoder;
pub use spec::{EncoderActivation, EncoderSpec};

use mlc_loader::ChatConfig;

use crate::kind::ModelKind;
use crate::{EngineError, ModelFuture};

/// What the front ends need from a loaded encoder, whatever runs it.
pub trait EmbeddingModel {
    /// The encoder description.
    fn spec(&self) -> &EncoderSpec;

    /// The last hidden state of one input, `[tokens, hidden]` row-major.
    /// Fails on an empty input, on one longer than the context window and on
    /// a token outside the vocabulary.
    fn encode<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>>;

    /// One embedding per input: the first row of its last hidden state (CLS
    /// pooling, what MLC's BERT is served with), not normalised.
    fn embed<'a>(&'a mut self, inputs: &'a [Vec<u32>]) -> ModelFuture<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            let hidden = self.spec().hidden_size;
            let mut out = Vec::with_capacity(inputs.len());
            for tokens in inputs {
                let mut states = self.encode(tokens).await?;
                states.truncate(hidden);
                out.push(states);
            }
            Ok(out)
        })
    }
}

/// The encoder description of an embedding artifact, or a clear error for a
/// chat model.
pub fn spec_for(config: &ChatConfig) -> Result<EncoderSpec, EngineError> {
    match ModelKind::of(config) {
        ModelKind::Embedding => EncoderSpec::from_config(config),
        ModelKind::Chat => {
            Err(EngineError::NotAnEmbeddingModel { model_type: config.model_type.clone() })
        }
    }
}

/// Rejects what no encoder can run: an empty input, one past the position
/// table, or a token outside the vocabulary.
fn check_input(spec: &EncoderSpec, tokens: &[u32]) -> Result<(), EngineError> {
    if tokens.is_empty() {
        return Err(EngineError::EmptyInput);
    }
    if tokens.len() > spec.context_window_size {
        return Err(EngineError::ContextWindowExceeded {
            needed: tokens.len(),
            window: spec.context_window_size,
        });
    }
    match tokens.iter().find(|&&t| t as usize >= spec.vocab_size) {
        Some(&token) => Err(EngineError::TokenOutOfRange { token, vocab_size: spec.vocab_size }),
        None => Ok(()),
    }
}
