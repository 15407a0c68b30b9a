//! Token sampling on the GPU (`shaders/sampling.wgsl`): greedy argmax, or the
//! full WebLLM chain — logit bias, repetition/presence/frequency penalties,
//! temperature, top-p, a draw with a uniform number chosen by the CPU — writing
//! one u32 token id, so a decode step reads back 4 bytes. A token mask
//! (structured output: the ids a grammar allows) is uploaded as a bitmask of
//! `ceil(vocab / 32)` words, so the logits never leave the GPU.
//!
//! One dispatch draws for every row of a batched step (one row per
//! sequence, each with its own settings): the per-sequence state — penalty
//! counts, logit bias, token mask, result slot — lives side by side in a
//! [`SamplerWorkspace`], like the KV cache's sequences, and each row names its
//! sequence. A single sequence's step is the same dispatch with one row.
//!
//! The penalties' counts live on the GPU: every sampled row adds its token to
//! its sequence's counts, so a step recorded before the host has read the
//! previous token still penalises it. Log probabilities come back with the token: the
//! drawn token's probability and the `top_logprobs` most probable ids follow
//! it in the token buffer ([`result_bytes`], [`SampledResult::from_words`]).
//!
//! The CPU reference is [`crate::cpu::sample`] / [`crate::cpu::argmax`] /
//! [`crate::cpu::token_probabilities`]; the shader's header explains the
//! passes and the top-p method.

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
/// workgroups per row, the step's `tokens` rows in grid y. The step sets no
/// parameter word (the workspace's rows do).
struct Sequence(Vec<(wgpu::ComputePipeline, u32)>);

impl Schedule for Sequence {
    fn params(&self, _: Step, _: &mut Vec<u32>) -> Result<(), KernelError> {
        Ok(())
    }

    fn dispatches(
        &self,
        step: Step,
        _: u32,
        dispatch: &mut dyn FnMut(&wgpu::ComputePipeline, Workgroups),
    ) {
        for (pipeline, workgroups) in &self.0 {
            dispatch(pipeline, Workgroups::Grid(*workgroups, step.tokens));
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
    sequence: u32,
    biased: u32,
    argmax_only: u32,
}

/// How one row is drawn with the sampler's whole chain (docs/sampling.md).
#[derive(Debug, Clone, Copy)]
pub struct SampleSettings<'a> {
    /// The request's parameters (validated as WebLLM does).
    pub params: &'a SamplingParams,
    /// Ids at or above it are never drawn (`None`: the whole vocabulary).
    pub active_vocab: Option<usize>,
    /// The request's logit bias, `(token id, bias)` pairs (a JSON map, so
    /// unique ids; ids outside the vocabulary are ignored, as by the reference).
    pub logit_bias: &'a [(u32, f32)],
    /// `ceil(vocab / 32)` words with bit `i % 32` of word `i / 32` set for each
    /// id that may be drawn (the others get p = 0); `None`: no mask.
    pub token_mask: Option<&'a [u32]>,
    /// The step's uniform random number `u ∈ [0, 1]`.
    pub uniform: f32,
    /// How many of the most probable ids come back with the token's
    /// probability (at most [`MAX_TOP_LOGPROBS`]; 0: none).
    pub top_logprobs: usize,
}

/// How one row's token is chosen.
#[derive(Debug, Clone, Copy)]
pub enum Draw<'a> {
    /// The most likely id of the raw logits (ties: lowest id): no bias,
    /// penalties or mask, and the counts stay as they are.
    Argmax,
    /// The full chain, counting the drawn token.
    Sample(SampleSettings<'a>),
}

/// Row `i` of a [`SamplerWorkspace::set_draws`] call: the `i`-th row of
/// logits, drawn for `sequence` (its counts, bias, mask and token slot).
#[derive(Debug, Clone, Copy)]
pub struct RowDraw<'a> {
    /// The sequence the row belongs to.
    pub sequence: usize,
    /// How its token is chosen.
    pub draw: Draw<'a>,
}

/// Which passes a dispatch runs: the longest chain any of its rows needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Chain {
    Argmax,
    Sample,
    SampleWithLogprobs,
}

/// The sampler's state for every sequence of an engine, shared by every
/// binding of [`Sampler`]: each sequence's penalty counts, logit bias, token
/// mask and result slot, each row's working buffers, and the rows' settings
/// of the next dispatch.
pub struct SamplerWorkspace {
    vocab: usize,
    sequences: usize,
    /// The settings of every row; the first `row_count` are the next dispatch's.
    rows: Vec<Params>,
    row_count: usize,
    chain: Chain,
    params: wgpu::Buffer,
    bias_and_mask: wgpu::Buffer,
    counts: wgpu::Buffer,
    token: wgpu::Buffer,
    work: wgpu::Buffer,
    scratch: wgpu::Buffer,
    hist: wgpu::Buffer,
    candidates: wgpu::Buffer,
    /// Each sequence's bias as the table holds it, so that a request's every
    /// step does not rewrite it.
    bias_pairs: Vec<Vec<(u32, f32)>>,
}

/// Most rows one dispatch draws (and most sequences of a workspace).
pub const MAX_ROWS: usize = 256;
/// `(e, id)` pairs per row: the top-p candidates, then each block's most
/// probable ids for `top_logprobs`.
const PAIRS: usize = TOP_P_CANDIDATES + MAX_VOCAB.div_ceil(BLOCK) * MAX_TOP_LOGPROBS;

impl SamplerWorkspace {
    /// The buffers for `sequences` sequences (and as many rows per dispatch)
    /// over a vocabulary of `vocab` ids: counts zero, no bias, no mask.
    pub fn new(
        ctx: &GpuContext,
        vocab: usize,
        sequences: usize,
    ) -> Result<SamplerWorkspace, KernelError> {
        if vocab == 0 || vocab > MAX_VOCAB {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: vocab {vocab} must be in 1..={MAX_VOCAB}"
            )));
        }
        if sequences == 0 || sequences > MAX_ROWS {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: {sequences} sequences, must be in 1..={MAX_ROWS}"
            )));
        }
        let buffer = |label: &str, bytes: usize| ctx.empty_storage_buffer(label, bytes as u64);
        let rows = vec![Params::zeroed(); MAX_ROWS];
        Ok(SamplerWorkspace {
            vocab,
            sequences,
            params: ctx.create_buffer_init(
                "sampling rows",
                bytemuck::cast_slice(&rows),
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ),
            rows,
            row_count: 0,
            chain: Chain::Argmax,
            bias_and_mask: buffer(
                "sampling bias and mask",
                sequences * (vocab + mask_words(vocab)) * 4,
            ),
            counts: buffer("token counts", sequences * vocab * 4),
            token: buffer("sampled tokens", sequences * TOKEN_WORDS * 4),
            work: buffer("sampling work", sequences * vocab * 4),
            scratch: buffer("sampling scratch", sequences * SCRATCH_BYTES as usize),
            hist: buffer("sampling histogram", sequences * (BINS + 1) * 4),
            candidates: buffer("sampling candidates", sequences * PAIRS * 8),
            bias_pairs: vec![Vec::new(); sequences],
        })
    }

    /// Bytes [`SamplerWorkspace::new`] allocates (a memory plan's figure).
    pub fn bytes(vocab: usize, sequences: usize) -> u64 {
        let per_sequence = (vocab + mask_words(vocab)) * 4
            + vocab * 4
            + TOKEN_WORDS * 4
            + vocab * 4
            + SCRATCH_BYTES as usize
            + (BINS + 1) * 4
            + PAIRS * 8;
        (MAX_ROWS * std::mem::size_of::<Params>() + sequences * per_sequence) as u64
    }

    /// Ids of the vocabulary.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The buffer of every sequence's result: [`TOKEN_WORDS`] u32 from
    /// [`SamplerWorkspace::token_offset`] (the token id first, then the log
    /// probabilities' data, [`SampledResult::from_words`]).
    pub fn token_buffer(&self) -> &wgpu::Buffer {
        &self.token
    }

    /// Byte offset of `sequence`'s result in [`SamplerWorkspace::token_buffer`].
    pub fn token_offset(&self, sequence: usize) -> u64 {
        (sequence * TOKEN_WORDS * 4) as u64
    }

    /// The buffer of every sequence's penalty counts, `vocab` u32 each.
    pub fn counts_buffer(&self) -> &wgpu::Buffer {
        &self.counts
    }

    /// Starts `sequence`'s counts for a new round: `(token id, count)` pairs,
    /// every other id zero (ids outside the vocabulary are ignored). Each
    /// sampled draw adds its token on the device after that.
    pub fn set_counts(
        &self,
        queue: &wgpu::Queue,
        sequence: usize,
        pairs: &[(u32, u32)],
    ) -> Result<(), KernelError> {
        self.check_sequence(sequence)?;
        let mut dense = vec![0u32; self.vocab];
        for &(id, count) in pairs {
            if let Some(slot) = dense.get_mut(id as usize) {
                *slot = count;
            }
        }
        let offset = (sequence * self.vocab * 4) as u64;
        queue.write_buffer(&self.counts, offset, bytemuck::cast_slice(&dense));
        Ok(())
    }

    fn check_sequence(&self, sequence: usize) -> Result<(), KernelError> {
        if sequence >= self.sequences {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: sequence {sequence} of {}",
                self.sequences
            )));
        }
        Ok(())
    }

    /// Sets the rows of the next dispatch (row `i` reads the `i`-th row of
    /// logits; each sequence at most once) and writes their settings, a
    /// changed bias and the token masks. The writes take effect at the next
    /// submission, so one submission holds one dispatch per workspace.
    pub fn set_draws(
        &mut self,
        queue: &wgpu::Queue,
        draws: &[RowDraw<'_>],
    ) -> Result<(), KernelError> {
        if draws.is_empty() || draws.len() > self.sequences {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: {} rows, must be in 1..={}",
                draws.len(),
                self.sequences
            )));
        }
        let mut seen = vec![false; self.sequences];
        for draw in draws {
            self.check_sequence(draw.sequence)?;
            if std::mem::replace(&mut seen[draw.sequence], true) {
                return Err(KernelError::InvalidArguments(format!(
                    "sampling: sequence {} drawn twice in one dispatch",
                    draw.sequence
                )));
            }
        }
        let mut chain = Chain::Argmax;
        for (row, draw) in draws.iter().enumerate() {
            let params = self.row_params(queue, draw)?;
            chain = chain.max(match draw.draw {
                Draw::Argmax => Chain::Argmax,
                Draw::Sample(_) if params.top_logprobs > 0 => Chain::SampleWithLogprobs,
                Draw::Sample(_) => Chain::Sample,
            });
            self.rows[row] = params;
        }
        self.chain = chain;
        self.row_count = draws.len();
        let used = &self.rows[..draws.len()];
        queue.write_buffer(&self.params, 0, bytemuck::cast_slice(used));
        Ok(())
    }

    /// One row's parameter block; writes its sequence's bias and mask when needed.
    fn row_params(
        &mut self,
        queue: &wgpu::Queue,
        draw: &RowDraw<'_>,
    ) -> Result<Params, KernelError> {
        let vocab = self.vocab;
        let mut p = Params {
            vocab: vocab as u32,
            active_vocab: vocab as u32,
            temperature: 1.0,
            top_p: 1.0,
            repetition: 1.0,
            blocks: vocab.div_ceil(BLOCK) as u32,
            sequence: draw.sequence as u32,
            ..Params::zeroed()
        };
        let settings = match draw.draw {
            Draw::Argmax => {
                p.argmax_only = 1;
                return Ok(p);
            }
            Draw::Sample(settings) => settings,
        };
        let params = settings.params;
        params.validate().map_err(|e| KernelError::InvalidArguments(format!("sampling: {e}")))?;
        let active = settings.active_vocab.unwrap_or(vocab);
        if active == 0 || active > vocab {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: active vocabulary {active} must be in 1..={vocab}"
            )));
        }
        if !(0.0..=1.0).contains(&settings.uniform) {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: uniform {} outside [0, 1]",
                settings.uniform
            )));
        }
        if settings.top_logprobs > MAX_TOP_LOGPROBS {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: top_logprobs {} exceeds {MAX_TOP_LOGPROBS}",
                settings.top_logprobs
            )));
        }
        let sequence_bytes = ((vocab + mask_words(vocab)) * 4 * draw.sequence) as u64;
        if let Some(words) = settings.token_mask {
            if words.len() != mask_words(vocab) {
                return Err(KernelError::InvalidArguments(format!(
                    "sampling: token mask has {} words, vocabulary {vocab} needs {}",
                    words.len(),
                    mask_words(vocab)
                )));
            }
            let offset = sequence_bytes + (vocab * 4) as u64;
            queue.write_buffer(&self.bias_and_mask, offset, bytemuck::cast_slice(words));
        }
        if settings.logit_bias != self.bias_pairs[draw.sequence].as_slice() {
            let mut dense = vec![0.0f32; vocab];
            for &(id, b) in settings.logit_bias {
                if let Some(slot) = dense.get_mut(id as usize) {
                    *slot += b;
                }
            }
            queue.write_buffer(&self.bias_and_mask, sequence_bytes, bytemuck::cast_slice(&dense));
            self.bias_pairs[draw.sequence] = settings.logit_bias.to_vec();
        }
        p.active_vocab = active as u32;
        p.penalize = params.penalties_active() as u32;
        p.greedy = (params.effective_temperature() <= GREEDY_TEMPERATURE) as u32;
        p.temperature = params.effective_temperature();
        p.top_p = params.effective_top_p();
        p.uniform = settings.uniform;
        p.repetition = params.repetition_penalty;
        p.presence = params.presence_penalty;
        p.frequency = params.frequency_penalty;
        p.masked = settings.token_mask.is_some() as u32;
        p.top_logprobs = settings.top_logprobs.min(vocab) as u32;
        p.biased = !settings.logit_bias.is_empty() as u32;
        Ok(p)
    }

    /// How many log probabilities row `row` of the last
    /// [`SamplerWorkspace::set_draws`] reports (see [`result_bytes`]).
    pub fn top_logprobs(&self, row: usize) -> usize {
        self.rows[row].top_logprobs as usize
    }
}

/// The buffers one binding reads and writes.
pub struct SamplerBuffers<'a> {
    /// The logits to draw from, `vocab` f32 per row: row `i` of a dispatch is
    /// the `i`-th.
    pub logits: &'a wgpu::Buffer,
    /// Everything else, shared by every binding.
    pub workspace: &'a SamplerWorkspace,
}

/// What stays fixed for one sampler binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerShape {
    /// Rows of logits the buffer holds (the most rows a dispatch may draw).
    pub rows: usize,
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
}

impl Kernel for Sampler {
    type Buffers<'a> = SamplerBuffers<'a>;
    type Shape = SamplerShape;
    type Bound = BoundSampler;

    /// Binds the sampler to a buffer of `shape.rows` rows of logits and the
    /// workspace's buffers.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &SamplerBuffers<'_>,
        shape: &SamplerShape,
    ) -> Result<BoundSampler, KernelError> {
        let ws = buffers.workspace;
        if shape.rows == 0 {
            return Err(KernelError::InvalidArguments("sampling: no rows of logits".into()));
        }
        require_size("sampling logits", buffers.logits, (shape.rows * ws.vocab * 4) as u64)?;
        check_distinct(
            "sampling logits",
            buffers.logits,
            &[Some(&ws.counts), Some(&ws.token), Some(&ws.work)],
        )?;
        let bind_group = ctx.bind_buffers(
            "sampling",
            &self.layout,
            &[
                &ws.params,
                buffers.logits,
                &ws.bias_and_mask,
                &ws.counts,
                &ws.work,
                &ws.scratch,
                &ws.hist,
                &ws.candidates,
                &ws.token,
            ],
        );
        let blocks = ws.vocab.div_ceil(BLOCK) as u32;
        let p = &self.passes;
        let bound = |passes: &[(&wgpu::ComputePipeline, u32)]| {
            let part =
                Part { bind_group: bind_group.clone(), params: ws.params.clone(), extent: 0 };
            let sequence = Sequence(passes.iter().map(|&(p, n)| (p.clone(), n)).collect());
            Bound::new(ctx, "sampling", vec![part], sequence)
        };
        let chain = [
            (&p.process, blocks),
            (&p.reduce, 1),
            (&p.exponentiate, blocks),
            (&p.choose_cutoff, 1),
            (&p.collect, blocks),
            (&p.sample, 1),
        ];
        Ok(BoundSampler {
            argmax: bound(&chain[..2]),
            sample: bound(&chain),
            sample_with_logprobs: bound(
                &[&chain[..], &[(&p.select_top, blocks), (&p.merge_top, 1)]].concat(),
            ),
            rows: shape.rows,
        })
    }
}

/// [`Sampler`] bound to one buffer of logits.
pub struct BoundSampler {
    /// Every row an argmax: the passes up to it.
    argmax: Bound,
    /// The full chain of docs/sampling.md.
    sample: Bound,
    /// The full chain, then the most probable ids.
    sample_with_logprobs: Bound,
    /// Rows of logits the buffer holds.
    rows: usize,
}

impl BoundSampler {
    /// Records the draw of the rows the workspace's last
    /// [`SamplerWorkspace::set_draws`] set, all in one chain of passes (each
    /// row's workgroups in grid y): the argmax passes alone when every row is
    /// an argmax, else the whole chain, plus the two passes of the most
    /// probable ids when a row reports them. A sampled row adds its token to
    /// its sequence's counts.
    pub fn dispatch(
        &mut self,
        queue: &wgpu::Queue,
        pass: &mut wgpu::ComputePass<'_>,
        workspace: &SamplerWorkspace,
    ) -> Result<(), KernelError> {
        let rows = workspace.row_count;
        if rows == 0 || rows > self.rows {
            return Err(KernelError::InvalidArguments(format!(
                "sampling: {rows} rows to draw, the logits hold {}",
                self.rows
            )));
        }
        let bound = match workspace.chain {
            Chain::Argmax => &mut self.argmax,
            Chain::Sample => &mut self.sample,
            Chain::SampleWithLogprobs => &mut self.sample_with_logprobs,
        };
        bound.set_step(queue, Step::rows(rows))?;
        bound.dispatch(pass);
        Ok(())
    }

    /// Blocking convenience: sets the draws, runs them and reads every row's
    /// result back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn draw_blocking(
        &mut self,
        ctx: &GpuContext,
        workspace: &mut SamplerWorkspace,
        draws: &[RowDraw<'_>],
    ) -> Result<Vec<SampledResult>, KernelError> {
        workspace.set_draws(&ctx.queue, draws)?;
        let mut result = Ok(());
        ctx.submit_pass("sample", |pass| result = self.dispatch(&ctx.queue, pass, workspace));
        result?;
        let words = ctx.read_u32(&workspace.token, workspace.sequences * TOKEN_WORDS)?;
        Ok(draws
            .iter()
            .enumerate()
            .map(|(row, draw)| {
                let start = draw.sequence * TOKEN_WORDS;
                let slot = &words[start..start + TOKEN_WORDS];
                SampledResult::from_words(slot, workspace.top_logprobs(row), workspace.vocab)
            })
            .collect())
    }
}
