//! Hand-written WGSL compute kernels for MLC-format decoder LLMs.
//!
//! One `.wgsl` file per op lives in `shaders/` and reads like the math; each has a
//! thin Rust wrapper here that builds its pipelines once and keeps the one
//! contract of [`kernel`] (bind to buffers and a shape, then set the step and
//! dispatch), and a CPU reference ([`cpu`]) that the tests compare against.

pub mod attention;
pub mod bidirectional_attention;
pub mod buffers;
pub mod context;
pub mod cpu;
pub mod cpu_fast;
pub mod delta_net;
pub mod elementwise;
pub mod embed;
pub mod health;
pub mod kernel;
pub mod matmul;
pub mod norm;
pub mod readback;
pub mod rolling;
pub mod rope;
pub mod sampling;

pub use attention::{
    Attention, AttentionBuffers, AttentionRows, AttentionScratch, AttentionShape, MAX_BATCH_ROWS,
    Queries,
};
pub use bidirectional_attention::{
    BidirectionalAttention, BidirectionalAttentionBuffers, BidirectionalAttentionShape,
};
pub use buffers::FloatFormat;
pub use context::{Capabilities, ContextOptions, GpuContext};
pub use delta_net::{DeltaNet, DeltaNetBinding, DeltaNetBuffers, DeltaNetOp};
pub use elementwise::{
    Activation, Elementwise, ElementwiseBuffers, ElementwiseOp, ElementwiseShape,
};
pub use embed::{Embed, EmbedBuffers, EmbedShape};
pub use health::DeviceHealth;
pub use kernel::{Bound, Kernel, Step, Workgroups};
pub use matmul::{
    GpuWeight, Matmul, MatmulBuffers, MatmulInput, MatmulShape, Residual, WeightFormat,
};
pub use norm::{RmsNorm, RmsNormBuffers, RmsNormShape, RowLayout};
pub use rolling::{RollingBuffers, RollingCache, RollingShape};
pub use rope::{QkNorm, RopeAppend, RopeBuffers, RopeShape, RopeTable};
pub use sampling::{
    BoundSampler, Draw, RowDraw, SampleSettings, SampledResult, Sampler, SamplerBuffers,
    SamplerShape, SamplerWorkspace, result_bytes,
};

/// Why a kernel could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No WebGPU adapter is available.
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("could not create a GPU device: {0}")]
    NoDevice(String),
    /// A shader failed validation or compilation.
    #[error("shader `{label}` failed to compile: {message}")]
    Shader {
        /// The kernel's label.
        label: String,
        /// The compiler's message.
        message: String,
    },
    /// The device was lost or a readback failed.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// The device reported an error outside any error scope (validation,
    /// out of memory): what ran since is not to be trusted.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A shape or size the kernel cannot handle.
    #[error("invalid kernel arguments: {0}")]
    InvalidArguments(String),
}
