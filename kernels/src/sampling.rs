//! Token sampling on the GPU (`shaders/sampling.wgsl`): greedy argmax, or the
//! full WebLLM chain — logit bias, repetition/presence/frequency penalties,
//! temperature, top-p, a draw with a uniform number chosen by the CPU — writing
//! one u32 token id, so a decode step reads back 4 bytes. A token mask
//! (structured output: the ids a grammar allows) is uploaded as a bitmask of
//! `ceil(vocab / 32)` words, so the logits never leave the GPU.
//!
//! The penalties' counts live on the GPU: every sampling dispatch adds its
//! token to them, so a step recorded before the host has read the previous
//! token still penalises it. Log probabilities come back with the token: the
//! drawn token's probability and the `top_logprobs` most probable ids follow
//! it in the token buffer ([`result_bytes`], [`SampledResult::from_words`]).
//!
//! The CPU reference is [`crate::cpu::sample`] / [`crate::cpu::argmax`] /
//! [`crate::cpu::token_probabilities`]; the shader's header explains the
//! passes and the top-p method.

use std::mem::offset_of;

use bytemuck::{Pod, Zeroable};

use crate::buffers::check_distinct;
use crate::context::{Binding, ENABLE_SUBGROUPS, KernelLayout, require_size};
use crate::cpu::{GREEDY_TEMPERATURE, MAX_TOP_LOGPROBS, SamplingParams, TokenProbabilities};
use crate::kernel::{Bound, Kernel, Part, Schedule, Step, Workgroups};
use crate::{GpuContext, KernelError};

const SHADER: &str = include_str!("shaders/sampling.wgsl");
const REDUCE_BEST: &str = include_str!("shaders/sampling_best.wgsl");
const REDUCE_PORTABLE: &str = include_str!("shaders/sampling_reduce.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("shaders/sampling_reduce_subgroup.wgsl");
/// Logits per workgroup of the vocabulary-wide passes.
const BLOCK: usize = 1024;
/// Largest vocabulary (256 blocks, reduced by one 256-thread workgroup).
pub const MAX_VOCAB: usize = 256 * BLOCK;
/// Histogram bins (plus one counter word).
const BINS: usize = 2048;
/// Most candidates sorted exactly.
pub const TOP_P_CANDIDATES: usize = 1024;
/// Bytes of the shader's `Scratch` struct: five per-block arrays and four words.
const SCRATCH_BYTES: u64 = (5 * 256 + 4) * 4;
/// u32 words of the token buffer: the token, its probability, and
/// [`MAX_TOP_LOGPROBS`] `(id, probability)` pairs.
pub const TOKEN_WORDS: usize = 2 + 2 * MAX_TOP_LOGPROBS;

/// The passes of the shader, in the order of its entry points (see its header).
struct Passes {
    process: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
    exponentiate: wgpu::ComputePipeline,
    choose_cutoff: wgpu::ComputePipeline,
    collect: wgpu::ComputePipeline,
    sample: wgpu::ComputePipeline,
    select_top: wgpu::ComputePipeline,
    merge_top: wgpu::ComputePipeline,
}

const ENTRY_POINTS: [&str; 8] = [
    "process",
    "reduce",
    "exponentiate",
    "choose_cutoff",
    "collect",
    "sample",
    "select_top",
    "merge_top",
];

/// A fixed sequence of passes over the vocabulary: each pipeline with its
/// workgroups. The step sets nothing (the sampler's settings do).
struct Sequence(Vec<(wgpu::ComputePipeline, u32)>);

impl Schedule for Sequence {
    fn params(&self, _: Step, _: &mut Vec<u32>) -> Result<(), KernelError> {
        Ok(())
    }

    fn dispatches(
        &self,
        _: Step,
        _: u32,
        dispatch: &mut dyn FnMut(&wgpu::ComputePipeline, Workgroups),
    ) {
        for (pipeline, workgroups) in &self.0 {
            dispatch(pipeline, Workgroups::Linear(*workgroups));
        }
    }
}

/// Bytes of the token buffer that hold a step's result when it reported `top`
/// log probabilities: the token id alone (4 bytes) when `top` is 0.
pub fn result_bytes(top: usize) -> u64 {
    match top {
        0 => 4,
        top => ((2 + 2 * top) * 4) as u64,
    }
}

/// A sampling step's result as read back from the token buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledResult {
    /// The drawn token; `None` when the logits were not all finite.
    pub token: Option<u32>,
    /// Its probability and the most probable ids, when the step reported any.
    pub probabilities: Option<TokenProbabilities>,
}

impl SampledResult {
    /// Decodes the first [`result_bytes`]`(top) / 4` words of the token
    /// buffer of a sampler over `vocab` ids.
    pub fn from_words(words: &[u32], top: usize, vocab: usize) -> SampledResult {
        let token = words.first().copied().filter(|&id| (id as usize) < vocab);
        let probabilities = (top > 0 && token.is_some()).then(|| TokenProbabilities {
            token: f32::from_bits(words[1]),
            top: words[2..2 + 2 * top]
                .chunks_exact(2)
                .map(|pair| (pair[0], f32::from_bits(pair[1])))
                .collect(),
        });
        SampledResult { token, probabilities }
    }
}

/// The workgroup reductions for `caps` (subgroup operations when available),
/// to put at the start of the shader.
fn reduce_source(caps: &crate::Capabilities) -> String {
    match caps.subgroups {
        false => format!("{REDUCE_BEST}\n{REDUCE_PORTABLE}"),
        true => format!("{ENABLE_SUBGROUPS}{REDUCE_BEST}\n{REDUCE_SUBGROUP}"),
    }
}

/// Words of a token mask over `vocab` ids.
pub fn mask_words(vocab: usize) -> usize {
    vocab.div_ceil(32)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    vocab: u32,
    active_vocab: u32,
    penalize: u32,
    greedy: u32,
    temperature: f32,
    top_p: f32,
    uniform: f32,
    repetition: f32,
    presence: f32,
    frequency: f32,
    blocks: u32,
    masked: u32,
    top_logprobs: u32,
    _pad: [u32; 3],
}

/// The buffers the caller owns.
pub struct SamplerBuffers<'a> {
    /// The logits of the position to sample, `vocab` f32 (the first `vocab` values of the buffer).
    pub logits: &'a wgpu::Buffer,
    /// How often each id was generated in this round, `vocab` u32 (the
    /// penalties' counts): the caller sets it at each new round, and each
    /// [`BoundSampler::dispatch_sample`] adds 1 for the token it draws.
    pub counts: &'a wgpu::Buffer,
    /// Receives the token id (u32 at offset 0), then the log probabilities'
    /// data ([`TOKEN_WORDS`] u32 in all).
    pub token: &'a wgpu::Buffer,
}

/// What stays fixed for one sampler binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerShape {
    /// Ids of the vocabulary (the logits' length).
    pub vocab: usize,
}

/// The compiled sampling pipelines; build once per device.
pub struct Sampler {
    layout: KernelLayout,
    passes: Passes,
}

impl Sampler {
    /// Compiles the passes; the workgroup reductions use subgroups when `ctx.caps.subgroups`.
    pub fn new(ctx: &GpuContext) -> Result<Sampler, KernelError> {
        use Binding::*;
        let layout = ctx.kernel_layout(
            "sampling",
            &[
                Uniform, ReadOnly, ReadOnly, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite,
                ReadWrite,
            ],
        );
        let source = format!("{}\n{SHADER}", reduce_source(&ctx.caps));
        let mut pipelines =
            ctx.compile_entries("sampling", &source, &ENTRY_POINTS, &layout)?.into_iter();
        let mut next = || pipelines.next().expect("one pipeline per entry point");
        let passes = Passes {
            process: next(),
            reduce: next(),
            exponentiate: next(),
            choose_cutoff: next(),
            collect: next(),
            sample: next(),
            select_top: next(),
            merge_top: next(),
        };
        Ok(Sampler { layout, passes })
    }

    /// Bytes of the private buffers [`Sampler::bind`] creates for a
    /// vocabulary of `vocab` ids (a memory plan's figure).
    pub fn private_bytes(vocab: usize) -> u64 {
        let candidate_pairs = TOP_P_CANDIDATES + MAX_VOCAB.div_ceil(BLOCK) * MAX_TOP_LOGPROBS;
        ((vocab + mask_words(vocab)) * 4
            + vocab * 4
            + SCRATCH_BYTES as usize
            + (BINS + 1) * 4
            + candidate_pairs * 8
            + std::mem::size_of::<Params>()) as u64
    }
}

impl Kernel for Sampler {
    type Buffers<'a> = SamplerBuffers<'a>;
    type Shape = SamplerShape;
    type Bound = BoundSampler;

    /// Binds the sampler for a vocabulary of `vocab` ids, creating its private
    /// buffers (working copy of the logits, bias table, histogram, candidates).
    /// Starts with [`SamplingParams::default`], no bias, `u = 0.5`.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &SamplerBuffers<'_>,
        shape: &SamplerShape,
    ) -> Result<BoundSampler, KernelError> {
        let vocab = shape.vocab;
        if vocab == 0 || vocab > MAX_VOCAB {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: vocab {vocab} must be in 1..={MAX_VOCAB}"
            )));
        }
        require_size("sampling logits", buffers.logits, (vocab * 4) as u64)?;
        require_size("sampling counts", buffers.counts, (vocab * 4) as u64)?;
        require_size("sampling token", buffers.token, (TOKEN_WORDS * 4) as u64)?;
        check_distinct(
            "sampling counts",
            buffers.counts,
            &[Some(buffers.logits), Some(buffers.token)],
        )?;
        check_distinct("sampling token", buffers.token, &[Some(buffers.logits)])?;
        // The bias table and, after it, the token mask (see the shader's binding 2).
        let bias = ctx.empty_storage_buffer(
            "sampling bias and mask",
            ((vocab + mask_words(vocab)) * 4) as u64,
        );
        let work = ctx.empty_storage_buffer("sampling work", (vocab * 4) as u64);
        let scratch = ctx.empty_storage_buffer("sampling scratch", SCRATCH_BYTES);
        let hist = ctx.empty_storage_buffer("sampling histogram", ((BINS + 1) * 4) as u64);
        // The top-p candidates, then each block's most probable ids for top_logprobs.
        let candidate_pairs = TOP_P_CANDIDATES + MAX_VOCAB.div_ceil(BLOCK) * MAX_TOP_LOGPROBS;
        let candidates =
            ctx.empty_storage_buffer("sampling candidates", (candidate_pairs * 8) as u64);
        let params = Params {
            vocab: vocab as u32,
            active_vocab: vocab as u32,
            penalize: 0,
            greedy: 0,
            temperature: 1.0,
            top_p: 1.0,
            uniform: 0.5,
            repetition: 1.0,
            presence: 0.0,
            frequency: 0.0,
            blocks: vocab.div_ceil(BLOCK) as u32,
            masked: 0,
            top_logprobs: 0,
            _pad: [0; 3],
        };
        let params_buffer = ctx.uniform_buffer("sampling params", &params);
        let bind_group = ctx.bind_buffers(
            "sampling",
            &self.layout,
            &[
                &params_buffer,
                buffers.logits,
                &bias,
                buffers.counts,
                &work,
                &scratch,
                &hist,
                &candidates,
                buffers.token,
            ],
        );
        // One bind group and uniform, three pass sequences.
        let blocks = vocab.div_ceil(BLOCK) as u32;
        let p = &self.passes;
        let bound = |passes: &[(&wgpu::ComputePipeline, u32)]| -> Result<Bound, KernelError> {
            let part =
                Part { bind_group: bind_group.clone(), params: params_buffer.clone(), extent: 0 };
            let sequence = Sequence(passes.iter().map(|&(p, n)| (p.clone(), n)).collect());
            let mut bound = Bound::new(ctx, "sampling", vec![part], sequence);
            bound.set_step(&ctx.queue, Step::default())?;
            Ok(bound)
        };
        let chain = [
            (&p.process, blocks),
            (&p.reduce, 1),
            (&p.exponentiate, blocks),
            (&p.choose_cutoff, 1),
            (&p.collect, blocks),
            (&p.sample, 1),
        ];
        let argmax = bound(&chain[..2])?;
        let sample = bound(&chain)?;
        let sample_with_logprobs =
            bound(&[&chain[..], &[(&p.select_top, blocks), (&p.merge_top, 1)]].concat())?;
        Ok(BoundSampler {
            argmax,
            sample,
            sample_with_logprobs,
            params_buffer,
            params,
            bias,
            bias_pairs: Vec::new(),
            _private: [work, scratch, hist, candidates],
        })
    }
}

/// [`Sampler`] bound to one logits buffer.
pub struct BoundSampler {
    /// Greedy decoding: the passes up to the argmax.
    argmax: Bound,
    /// The full chain of docs/sampling.md.
    sample: Bound,
    /// The full chain, then the most probable ids.
    sample_with_logprobs: Bound,
    params_buffer: wgpu::Buffer,
    params: Params,
    bias: wgpu::Buffer,
    /// The bias the table holds, so that a request's every step does not rewrite it.
    bias_pairs: Vec<(u32, f32)>,
    _private: [wgpu::Buffer; 4],
}

impl BoundSampler {
    /// Sets a request's parameters (validated as WebLLM does) and the active
    /// vocabulary (ids at or above it are never sampled; `None`: all).
    pub fn set_params(
        &mut self,
        queue: &wgpu::Queue,
        params: &SamplingParams,
        active_vocab: Option<usize>,
    ) -> Result<(), KernelError> {
        params.validate().map_err(|e| KernelError::InvalidArguments(format!("sampling: {e}")))?;
        let vocab = self.params.vocab as usize;
        let active = active_vocab.unwrap_or(vocab);
        if active == 0 || active > vocab {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: active vocabulary {active} must be in 1..={vocab}"
            )));
        }
        let p = &mut self.params;
        p.active_vocab = active as u32;
        p.penalize = params.penalties_active() as u32;
        p.greedy = (params.effective_temperature() <= GREEDY_TEMPERATURE) as u32;
        p.temperature = params.effective_temperature();
        p.top_p = params.effective_top_p();
        p.repetition = params.repetition_penalty;
        p.presence = params.presence_penalty;
        p.frequency = params.frequency_penalty;
        queue.write_buffer(&self.params_buffer, 0, bytemuck::bytes_of(&self.params));
        Ok(())
    }

    /// Back to a plain argmax over the raw logits — no bias, no penalties, no
    /// token mask, the whole vocabulary — so that settings left by an earlier
    /// [`dispatch_sample`](Self::dispatch_sample) step (another request's) do not
    /// apply to [`dispatch_argmax`](Self::dispatch_argmax). Writes nothing when
    /// they are already off.
    pub fn set_plain_argmax(&mut self, queue: &wgpu::Queue) {
        self.set_logit_bias(queue, &[]);
        let p = &mut self.params;
        if p.penalize != 0 || p.masked != 0 || p.active_vocab != p.vocab {
            p.penalize = 0;
            p.masked = 0;
            p.active_vocab = p.vocab;
            queue.write_buffer(&self.params_buffer, 0, bytemuck::bytes_of(&self.params));
        }
    }

    /// Sets the step's uniform random number `u ∈ [0, 1)` (writes 4 bytes).
    pub fn set_uniform(&mut self, queue: &wgpu::Queue, uniform: f32) -> Result<(), KernelError> {
        if !(0.0..=1.0).contains(&uniform) {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: uniform {uniform} outside [0, 1]"
            )));
        }
        self.params.uniform = uniform;
        queue.write_buffer(
            &self.params_buffer,
            offset_of!(Params, uniform) as u64,
            bytemuck::bytes_of(&uniform),
        );
        Ok(())
    }

    /// Sets the request's logit bias, `(token id, bias)` pairs (a JSON map, so
    /// unique ids; ids outside the vocabulary are ignored, as by the reference).
    /// Rewrites the dense bias table only when the pairs change.
    pub fn set_logit_bias(&mut self, queue: &wgpu::Queue, bias: &[(u32, f32)]) {
        if bias == self.bias_pairs.as_slice() {
            return;
        }
        let mut dense = vec![0.0f32; self.params.vocab as usize];
        for &(id, b) in bias {
            if let Some(slot) = dense.get_mut(id as usize) {
                *slot += b;
            }
        }
        queue.write_buffer(&self.bias, 0, bytemuck::cast_slice(&dense));
        self.bias_pairs = bias.to_vec();
    }

    /// Sets the token mask: `Some(words)`, `ceil(vocab / 32)` words with bit
    /// `i % 32` of word `i / 32` set for each id that may be drawn (the others
    /// get p = 0, like ids past the active vocabulary); `None`: no mask.
    /// Writes the words and 4 bytes of parameters.
    pub fn set_token_mask(
        &mut self,
        queue: &wgpu::Queue,
        mask: Option<&[u32]>,
    ) -> Result<(), KernelError> {
        let vocab = self.params.vocab as usize;
        if let Some(words) = mask {
            if words.len() != mask_words(vocab) {
                return Err(KernelError::InvalidArguments(format!(
                    "sampling: token mask has {} words, vocabulary {vocab} needs {}",
                    words.len(),
                    mask_words(vocab)
                )));
            }
            queue.write_buffer(&self.bias, (vocab * 4) as u64, bytemuck::cast_slice(words));
        }
        let masked = mask.is_some() as u32;
        if masked != self.params.masked {
            self.params.masked = masked;
            queue.write_buffer(
                &self.params_buffer,
                offset_of!(Params, masked) as u64,
                bytemuck::bytes_of(&masked),
            );
        }
        Ok(())
    }

    /// How many of the most probable ids [`dispatch_sample`](Self::dispatch_sample)
    /// reports with the token's probability (at most [`MAX_TOP_LOGPROBS`]; 0:
    /// none, and two passes fewer). Writes 4 bytes when it changes.
    pub fn set_top_logprobs(&mut self, queue: &wgpu::Queue, top: usize) -> Result<(), KernelError> {
        if top > MAX_TOP_LOGPROBS {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: top_logprobs {top} exceeds {MAX_TOP_LOGPROBS}"
            )));
        }
        let top = top.min(self.params.vocab as usize) as u32;
        if top != self.params.top_logprobs {
            self.params.top_logprobs = top;
            queue.write_buffer(
                &self.params_buffer,
                offset_of!(Params, top_logprobs) as u64,
                bytemuck::bytes_of(&top),
            );
        }
        Ok(())
    }

    /// Log probabilities the next [`dispatch_sample`](Self::dispatch_sample)
    /// reports (see [`result_bytes`]).
    pub fn top_logprobs(&self) -> usize {
        self.params.top_logprobs as usize
    }

    /// Records greedy decoding: the argmax of the biased and penalised logits
    /// (ties: lowest id), two passes.
    pub fn dispatch_argmax(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.argmax.dispatch(pass);
    }

    /// Records the full sampling chain of docs/sampling.md (a temperature ≤ 1e-5 draws
    /// among the tied maxima with `u`) and adds the token to the counts: six
    /// passes, two more with [`set_top_logprobs`](Self::set_top_logprobs).
    pub fn dispatch_sample(&self, pass: &mut wgpu::ComputePass<'_>) {
        match self.params.top_logprobs {
            0 => self.sample.dispatch(pass),
            _ => self.sample_with_logprobs.dispatch(pass),
        }
    }

    /// Blocking convenience: greedy argmax, reading the token back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn argmax_blocking(
        &self,
        ctx: &GpuContext,
        token: &wgpu::Buffer,
    ) -> Result<u32, KernelError> {
        ctx.submit_pass("argmax", |pass| self.dispatch_argmax(pass));
        Ok(ctx.read_u32(token, 1)?[0])
    }

    /// Blocking convenience: sets `u`, samples, reads the token back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sample_blocking(
        &mut self,
        ctx: &GpuContext,
        token: &wgpu::Buffer,
        uniform: f32,
    ) -> Result<u32, KernelError> {
        self.set_uniform(&ctx.queue, uniform)?;
        ctx.submit_pass("sample", |pass| self.dispatch_sample(pass));
        Ok(ctx.read_u32(token, 1)?[0])
    }

    /// Blocking convenience: sets `u`, samples, reads the whole result back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sample_result_blocking(
        &mut self,
        ctx: &GpuContext,
        token: &wgpu::Buffer,
        uniform: f32,
    ) -> Result<SampledResult, KernelError> {
        self.set_uniform(&ctx.queue, uniform)?;
        ctx.submit_pass("sample", |pass| self.dispatch_sample(pass));
        let top = self.top_logprobs();
        let words = ctx.read_u32(token, result_bytes(top) as usize / 4)?;
        Ok(SampledResult::from_words(&words, top, self.params.vocab as usize))
    }
}
