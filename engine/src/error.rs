//! Errors of the engine, each naming what was wrong and where.

use crate::memory::MemoryPlan;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading the artifact failed.
    #[error(transparent)]
    Load(#[from] mlc_loader::LoadError),
    /// The artifact's `model_type` has no implementation here.
    #[error("unsupported model_type `{model_type}`; supported: {supported}")]
    UnsupportedModelType {
        /// What the config says.
        model_type: String,
        /// What this build runs.
        supported: String,
    },
    /// An embedding model (an encoder) was loaded as a chat model.
    #[error(
        "model_type `{model_type}` is an embedding model: it computes embeddings (`mlc-wgpu embed`, \
         `/v1/embeddings`, `engine.embeddings.create`), not text"
    )]
    NotAChatModel {
        /// What the config says.
        model_type: String,
    },
    /// A chat model was asked for embeddings.
    #[error(
        "model_type `{model_type}` is a chat model, not an embedding model; embeddings need an \
         encoder (model_type bert)"
    )]
    NotAnEmbeddingModel {
        /// What the config says.
        model_type: String,
    },
    /// The artifact needs a feature of its family that this runtime does not implement.
    #[error("unsupported model feature: {0}")]
    Unsupported(String),
    /// `mlc-chat-config.json` lacks a field or has a value the model cannot use.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A weight the model needs is absent.
    #[error("weight `{name}` is missing from the artifact (looked for {tried})")]
    MissingWeight {
        /// Parameter name.
        name: String,
        /// Tensor names tried.
        tried: String,
    },
    /// A weight's shape disagrees with the config.
    #[error("tensor `{name}` has shape {actual:?}, but the config implies {expected:?}")]
    WeightShape {
        /// Tensor name.
        name: String,
        /// Shape implied by mlc-chat-config.json.
        expected: Vec<usize>,
        /// Shape in the tensor index.
        actual: Vec<usize>,
    },
    /// A weight has a dtype the model cannot use there.
    #[error("tensor `{name}` has dtype {dtype}; expected one of {allowed}")]
    WeightDType {
        /// Tensor name.
        name: String,
        /// Its dtype.
        dtype: String,
        /// Acceptable dtypes.
        allowed: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {token} is out of range (vocab_size {vocab_size})")]
    TokenOutOfRange {
        /// The id.
        token: u32,
        /// Rows of the embedding.
        vocab_size: usize,
    },
    /// The request needs more positions than the KV cache holds.
    #[error("context window exceeded: {needed} tokens needed, context_window_size is {window}")]
    ContextWindowExceeded {
        /// Positions the request needs.
        needed: usize,
        /// The model's window.
        window: usize,
    },
    /// An empty token list where at least one token is needed.
    #[error("no input tokens")]
    EmptyInput,
    /// A pass was to start from a queued token, but none was queued (or the
    /// queue was dropped since).
    #[error("no token is queued on the device to continue from")]
    NoQueuedToken,
    /// A GPU kernel failed, or the device was lost
    /// ([`EngineError::is_device_lost`]).
    #[error(transparent)]
    Gpu(#[from] mlc_kernels::KernelError),
    /// The GPU cannot hold the model: a limit rules the memory plan out
    /// before anything is allocated, or the device ran out of memory (or
    /// refused an allocation) while loading. The message prints the plan.
    #[error("not enough GPU memory to load the model: {cause}\n{plan}")]
    GpuOutOfMemory {
        /// What the load allocates, by purpose, and the device's limits.
        plan: Box<MemoryPlan>,
        /// What failed.
        cause: String,
    },
    /// The model produced NaN or infinite logits.
    #[error("the model produced non-finite logits (NaN or Inf) at step {step}")]
    NonFiniteLogits {
        /// Decode step (0 = prefill).
        step: usize,
    },
    /// A blocking readback (a trace) was asked of a backend that can only
    /// wait asynchronously: the GPU engine in a browser.
    #[error(
        "the GPU engine in a browser cannot block for a readback; traces need the native build"
    )]
    BlockingReadback,
}

impl EngineError {
    /// Whether the GPU device is gone: nothing more runs on this engine, and
    /// loading the model again (on a new device) is the way on.
    pub fn is_device_lost(&self) -> bool {
        matches!(self, EngineError::Gpu(mlc_kernels::KernelError::DeviceLost(_)))
    }
}
