//! Which kind of model an artifact is: a chat model (a decoder, `models`) or
//! an embedding model (an encoder, `encoder`). A leaf module, so that each
//! loader can refuse the other's artifacts without importing it.

use mlc_loader::ChatConfig;

/// `model_type` values of embedding models.
pub const EMBEDDING_FAMILIES: &[&str] = &["bert"];

/// What an artifact computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A decoder: text in, text out ([`crate::LanguageModel`]).
    Chat,
    /// An encoder: text in, one embedding per input ([`crate::EmbeddingModel`]).
    Embedding,
}

impl ModelKind {
    /// The kind of `config`'s `model_type`.
    pub fn of(config: &ChatConfig) -> ModelKind {
        match EMBEDDING_FAMILIES.contains(&config.model_type.as_str()) {
            true => ModelKind::Embedding,
            false => ModelKind::Chat,
        }
    }
}
