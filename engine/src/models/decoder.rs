//! The decoder-only transformer shared by every family:
//!
//! ```text
//! h = embed(tokens) · embed_scale                       (√hidden for Gemma, else 1)
//! for each layer:
//!     h = h + post_norm?(o_proj(attention(rope(qk_norm?(qkv(pre_norm?(h)))))))
//!     h = h + post_norm?(down(act(gate) · up)(pre_norm?(h)))
//! or, for a parallel block (Phi, GPT-NeoX), with n = norm(h) and
//! m = mlp_norm(h) (GPT-NeoX) or n (Phi):
//!     h = h + o_proj(attention(rope(qkv(n)))) + down(act(up(m)))
//! where Qwen3.5's Gated DeltaNet layers replace attention with
//!     out_proj(gated_norm(delta_rule(conv(in_proj_qkv(n)), a(n), b(n)), z(n)))   n = norm(h)
//! and its attention layers multiply the attention by sigmoid(gate) before o_proj;
//! logits = lm_head(final_norm(h))
//! logits = tanh(logits / cap) · cap                     (Gemma-2's soft-capping)
//! ```
//!
//! Where the norms sit is the family's [`super::NormPlacement`]: before each
//! branch (most families), around it (Gemma 2 and 3's sandwich) or after it
//! (OLMo-2). Without a norm after it, the branch is added straight into the
//! residual stream. The norms are RMSNorms, or LayerNorms with a bias for
//! StableLM, Phi and GPT-NeoX ([`ModelSpec::layer_norm`]); a LayerNorm runs on
//! its own before a plain product, an RMSNorm may be fused into it. The MLP is
//! gated (`act(gate) · up` of one fused projection) or, for Phi and GPT-NeoX,
//! plain (`act(up)`, [`ModelSpec::gated_mlp`]).

use super::{ModelSpec, NormPlacement};
use crate::EngineError;
use crate::backend::{Backend, DecoderWeights, LayerWeights, PassInput, Placement};

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (scoring, conformance).
    All,
}

/// The residual stream copied to the host at named points (`embed`,
/// `layer{L}_out`, `final_norm`), for conformance traces.
pub type Trace = Vec<(String, Vec<f32>)>;

/// Runs `input` (placed as `place` says) through the decoder, appending it
/// to the KV caches, and returns the requested logits `[rows, vocab]`.
pub fn forward<B: Backend>(
    spec: &ModelSpec,
    weights: &DecoderWeights<B>,
    backend: &mut B,
    input: PassInput<'_>,
    place: Placement<'_>,
    logits: Logits,
    mut trace: Option<&mut Trace>,
) -> Result<B::Tensor, EngineError> {
    let tracing = trace.is_some();
    let mut observe = |backend: &mut B, name: &str, x: &B::Tensor| -> Result<(), EngineError> {
        if let Some(trace) = trace.as_deref_mut() {
            trace.push((name.to_string(), backend.to_host(x)?));
        }
        Ok(())
    };
    let eps = spec.rms_norm_eps;

    backend.begin(input)?;
    let mut h = backend.embed(&weights.embed, input, spec.embed_scale)?;
    observe(backend, "embed", &h)?;
    for (index, layer) in weights.layers.iter().enumerate() {
        match spec.norms {
            NormPlacement::Parallel => parallel_block(backend, spec, layer, index, place, &mut h)?,
            _ => sequential_block(backend, spec, layer, index, place, &mut h)?,
        }
        if tracing {
            // Named only when traced: a decode step allocates nothing.
            observe(backend, &format!("layer{index}_out"), &h)?;
        }
    }

    let h = match logits {
        Logits::Last => backend.row(&h, input.len() - 1)?,
        Logits::All => h,
    };
    let head = weights.lm_head.as_ref().unwrap_or(&weights.embed);
    let logits = match &weights.final_norm_bias {
        Some(bias) => {
            let h = backend.layer_norm(&h, &weights.final_norm, bias, eps)?;
            observe(backend, "final_norm", &h)?;
            backend.linear(&h, head)?
        }
        None if tracing => {
            // A trace records the normalised stream, so the norm runs on its own.
            let h = backend.rms_norm(&h, &weights.final_norm, eps)?;
            observe(backend, "final_norm", &h)?;
            backend.linear(&h, head)?
        }
        None => backend.norm_linear(&h, &weights.final_norm, eps, head)?,
    };
    match spec.final_logit_softcap {
        Some(cap) => backend.softcap(&logits, cap),
        None => Ok(logits),
    }
}

/// Attention, then the MLP, each added to `h` (every family but Phi and
/// GPT-NeoX with `use_parallel_residual`).
fn sequential_block<B: Backend>(
    backend: &mut B,
    spec: &ModelSpec,
    layer: &LayerWeights<B>,
    index: usize,
    place: Placement<'_>,
    h: &mut B::Tensor,
) -> Result<(), EngineError> {
    let eps = spec.rms_norm_eps;
    let attended = match (spec.linear_layer(index), &layer.delta_net) {
        (Some(shape), Some(delta)) => {
            let norm = layer.attn_norm.as_ref().ok_or_else(|| missing_norm(index))?;
            let normed = backend.rms_norm(h, norm, eps)?;
            let qkv = backend.linear(&normed, &layer.qkv)?;
            let z = backend.linear(&normed, &delta.z)?;
            let a = backend.linear(&normed, &delta.a)?;
            let b = backend.linear(&normed, &delta.b)?;
            let heads = backend.delta_net(shape, index, &qkv, &a, &b, delta)?;
            backend.gated_rms_norm(shape, &heads, &delta.norm, &z, eps)?
        }
        _ => {
            let attn_norm = layer.attn_norm.as_ref().map(|w| (w, layer.attn_norm_bias.as_ref()));
            let qkv = pre_normed_linear(backend, h, attn_norm, eps, &layer.qkv)?;
            match spec.attention_output_gate {
                true => {
                    let (qkv, gate) = backend.split_query_gate(spec, &qkv)?;
                    let attended =
                        backend.attention(spec, index, &qkv, layer.qk_norm.as_ref(), place)?;
                    backend.sigmoid_gate(&attended, &gate)?
                }
                false => backend.attention(spec, index, &qkv, layer.qk_norm.as_ref(), place)?,
            }
        }
    };
    let post = layer.post_norms.as_ref();
    residual_branch(backend, &attended, &layer.o_proj, post.map(|p| &p.0), eps, h)?;

    let mlp_norm = layer.mlp_norm.as_ref().map(|w| (w, layer.mlp_norm_bias.as_ref()));
    let gate_up = pre_normed_linear(backend, h, mlp_norm, eps, &layer.gate_up)?;
    match post.map(|p| &p.1) {
        None => mlp_add(backend, spec, &gate_up, &layer.down, h),
        Some(norm) => {
            let activated = activate(backend, spec, &gate_up)?;
            residual_branch(backend, &activated, &layer.down, Some(norm), eps, h)
        }
    }
}

/// A parallel block: attention and the MLP both read `h` (through one norm
/// for Phi, through a norm each for GPT-NeoX), and both branches are added to
/// `h` (MLC's `attn + mlp + residual`, summed here as `(h + attn) + mlp` in f32).
fn parallel_block<B: Backend>(
    backend: &mut B,
    spec: &ModelSpec,
    layer: &LayerWeights<B>,
    index: usize,
    place: Placement<'_>,
    h: &mut B::Tensor,
) -> Result<(), EngineError> {
    let eps = spec.rms_norm_eps;
    let weight = layer.attn_norm.as_ref().ok_or_else(|| missing_norm(index))?;
    let normed = match &layer.attn_norm_bias {
        Some(bias) => backend.layer_norm(h, weight, bias, eps)?,
        None => backend.rms_norm(h, weight, eps)?,
    };
    let qkv = backend.linear(&normed, &layer.qkv)?;
    let attended = backend.attention(spec, index, &qkv, layer.qk_norm.as_ref(), place)?;
    // The MLP's input is taken before the attention is added to `h`.
    let up = match &layer.mlp_norm {
        Some(weight) => {
            let bias = layer.mlp_norm_bias.as_ref();
            pre_normed_linear(backend, h, Some((weight, bias)), eps, &layer.gate_up)?
        }
        None => backend.linear(&normed, &layer.gate_up)?,
    };
    backend.linear_add(&attended, &layer.o_proj, h)?;
    mlp_add(backend, spec, &up, &layer.down, h)
}

/// The error of a parallel block or a Gated DeltaNet layer loaded without its norm.
fn missing_norm(layer: usize) -> EngineError {
    EngineError::Config(format!("layer {layer}: a parallel block or linear layer needs its norm"))
}

/// `h += down(act(gate) · up)` for a gated MLP (fusable), else `h += down(act(up))`.
fn mlp_add<B: Backend>(
    backend: &mut B,
    spec: &ModelSpec,
    up: &B::Tensor,
    down: &B::Linear,
    h: &mut B::Tensor,
) -> Result<(), EngineError> {
    match spec.gated_mlp {
        true => backend.gated_linear_add(up, spec.activation, down, h),
        false => {
            let activated = activate(backend, spec, up)?;
            backend.linear_add(&activated, down, h)
        }
    }
}

/// The MLP's activation: `act(gate) · up` for a gated MLP, else `act(up)`.
fn activate<B: Backend>(
    backend: &mut B,
    spec: &ModelSpec,
    up: &B::Tensor,
) -> Result<B::Tensor, EngineError> {
    match spec.gated_mlp {
        true => backend.gated(up, spec.activation),
        false => backend.activation(up, spec.activation),
    }
}

/// `norm(x) · Wᵀ` where the branch input is normalised (an RMSNorm fused into
/// the product, or a LayerNorm given its bias), else `x · Wᵀ`.
fn pre_normed_linear<B: Backend>(
    backend: &mut B,
    x: &B::Tensor,
    norm: Option<(&B::Vector, Option<&B::Vector>)>,
    eps: f32,
    weight: &B::Linear,
) -> Result<B::Tensor, EngineError> {
    match norm {
        Some((norm, None)) => backend.norm_linear(x, norm, eps, weight),
        Some((norm, Some(bias))) => {
            let normed = backend.layer_norm(x, norm, bias, eps)?;
            backend.linear(&normed, weight)
        }
        None => backend.linear(x, weight),
    }
}

/// `h += norm(x · Wᵀ)` with a norm after the branch, else `h += x · Wᵀ` (fused).
fn residual_branch<B: Backend>(
    backend: &mut B,
    x: &B::Tensor,
    weight: &B::Linear,
    post_norm: Option<&B::Vector>,
    eps: f32,
    h: &mut B::Tensor,
) -> Result<(), EngineError> {
    match post_norm {
        None => backend.linear_add(x, weight, h),
        Some(norm) => {
            let y = backend.linear(x, weight)?;
            let y = backend.rms_norm(&y, norm, eps)?;
            backend.add(h, &y)
        }
    }
}
