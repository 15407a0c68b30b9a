//! A loaded model on one backend: weights, KV cache position, and the calls
//! generation is made of (prefill a chunk of tokens, read logits, reset).

use mlc_loader::Artifact;

use crate::backend::{Backend, DecoderWeights};
use crate::models::decoder::{self, Logits};
use crate::models::{spec_for, ModelSpec};
use crate::{weights, EngineError};

/// What the engine needs from a loaded model, whatever backend runs it.
pub trait LanguageModel {
    /// The decoder description.
    fn spec(&self) -> &ModelSpec;
    /// Tokens currently in the KV cache.
    fn position(&self) -> usize;
    /// Appends `tokens` to the context (in chunks of `prefill_chunk_size`) and
    /// returns the logits of the last one (`vocab_size` values).
    fn prefill(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError>;
    /// Appends `tokens` and returns the logits of every one, `[tokens, vocab]`.
    fn score(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError>;
    /// Like [`LanguageModel::score`], also returning the residual stream at
    /// each trace point (`embed`, `layer{L}_out`, `final_norm`).
    fn trace(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, Vec<(String, Vec<f32>)>), EngineError>;
    /// Empties the KV cache.
    fn reset(&mut self);
}

/// A decoder with its weights on backend `B`.
pub struct Model<B: Backend> {
    spec: ModelSpec,
    weights: DecoderWeights<B>,
    backend: B,
    position: usize,
}

impl<B: Backend> Model<B> {
    /// Builds the family's decoder from `artifact` and loads its weights into `backend`.
    pub fn load(artifact: &Artifact, mut backend: B) -> Result<Model<B>, EngineError> {
        let spec = spec_for(&artifact.config)?;
        let weights = weights::load(&spec, artifact, &mut backend)?;
        Ok(Model { spec, weights, backend, position: 0 })
    }

    fn run(&mut self, tokens: &[u32], logits: Logits, trace: Option<&mut decoder::Trace>) -> Result<Vec<f32>, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyInput);
        }
        let needed = self.position + tokens.len();
        if needed > self.spec.context_window_size {
            return Err(EngineError::ContextWindowExceeded { needed, window: self.spec.context_window_size });
        }
        let out = decoder::forward(&self.spec, &self.weights, &mut self.backend, tokens, self.position, logits, trace)?;
        self.position = needed;
        self.backend.to_host(&out)
    }
}

impl<B: Backend> LanguageModel for Model<B> {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn position(&self) -> usize {
        self.position
    }

    fn prefill(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyInput);
        }
        let mut logits = Vec::new();
        for chunk in tokens.chunks(self.spec.prefill_chunk_size) {
            logits = self.run(chunk, Logits::Last, None)?;
        }
        Ok(logits)
    }

    fn score(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.run(tokens, Logits::All, None)
    }

    fn trace(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, Vec<(String, Vec<f32>)>), EngineError> {
        let mut trace = decoder::Trace::new();
        let logits = self.run(tokens, Logits::All, Some(&mut trace))?;
        Ok((logits, trace))
    }

    fn reset(&mut self) {
        self.backend.reset_cache();
        self.position = 0;
    }
}
