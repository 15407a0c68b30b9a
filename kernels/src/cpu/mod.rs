//! The float32 CPU implementation of every op: the oracle the WGSL kernels are
//! tested against, and the math of the CPU engine (the fallback where WebGPU is
//! missing).
//!
//! Activations are row-major `[rows, features]` f32 slices. Weights stay in
//! their stored (quantized) form and are decoded group by group inside the
//! products, so the CPU engine needs no more memory than the artifact.

mod activation;
mod attention;
mod delta_net;
mod embed;
mod matmul;
mod norm;
mod rope;
mod sampling;

pub use activation::{
    add_in_place, erf, gelu_erf, gelu_erf_mul, gelu_tanh, gelu_tanh_mul, relu, silu, silu_mul,
    softcap,
};
pub use attention::{
    KvLayout, RollingWindow, bidirectional_attention, causal_attention, gather_rolling,
};
pub use delta_net::{
    DeltaNetShape, DeltaNetState, causal_conv1d_silu, delta_net_gates, gated_delta_rule,
    gated_rms_norm, inverse_l2_norm,
};
pub use embed::embed;
pub use matmul::{Q4Matrix, Weight, dot, matmul};
pub use norm::{layer_norm, rms_norm};
pub use rope::{Llama3Scaling, Rope, YarnScaling, rotate_heads};
pub use sampling::{
    Draw, GREEDY_TEMPERATURE, MAX_TOP_LOGPROBS, Minstd, Nucleus, SamplingParams,
    TokenProbabilities, apply_logit_bias, apply_penalties, apply_token_mask, argmax, sample,
    sample_from, sample_top_p, softmax_with_temperature, token_probabilities, top_p_filter,
};
