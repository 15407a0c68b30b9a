//! Causal grouped-query attention over the KV cache (`shaders/attention.wgsl`).
//!
//! `out[t, h] = softmax(q[t, h] · K[g, ..=start+t]ᵀ · scale) · V[g, ..=start+t]` with
//! `g = h / (heads / kv_heads)`, queries `[tokens, heads·head_dim]`, cache
//! `[sequences, kv_heads, capacity, head_dim]` (each sequence's block as in
//! [`crate::cpu::KvLayout`]; the step names the sequence), output like the
//! queries. One flash-attention kernel serves both steps: its workgroups hold
//! query rows of one KV head (several tokens × several heads of the GQA group),
//! so each key/value tile is loaded once for the group. A step of several
//! tokens is split by token blocks (prefill); a single token is split over the
//! context in chunks ("flash-decoding") that a second pass combines, so a model
//! with few KV heads still fills the GPU.
//!
//! A decode step may also take its query, key and value straight from the q/k/v
//! product's row ([`Queries::Projected`]): the kernel then rotates them and
//! appends the key and value to the cache itself, so a decode step needs no
//! [`crate::RopeAppend`] dispatch.
//!
//! Bound with [`AttentionRows`], the kernel runs batched decode steps: one
//! token for each of several sequences, each at its own position (continuous
//! batching), in the same two dispatches as one sequence's step.

use bytemuck::{Pod, Zeroable};

use crate::buffers::{FloatFormat, check_distinct};
use crate::context::{Binding, KernelLayout, require_size};
use crate::cpu::KvLayout;
use crate::kernel::{Bound, Kernel, Part, Schedule, Step, Workgroups};
use crate::rope::{ROTATION, RopeTable};
use crate::{GpuContext, KernelError};

const SHADER: &str = include_str!("shaders/attention.wgsl");
const COOP_SHADER: &str = include_str!("shaders/attention_coop.wgsl");
/// Tokens per workgroup of the tensor-core prefill kernel (`CQ` in attention_coop.wgsl).
const COOP_TOKENS: usize = 64;
/// The head dimension the tensor-core prefill kernel is written for (its
/// tiles fill 45 KiB of workgroup memory at 64).
const COOP_HEAD_DIM: usize = 64;

const MAX_HEAD_DIM: usize = 256;
/// Invocations per workgroup of the attention kernel.
const WORKGROUP_SIZE: usize = 128;
/// Workgroup memory the tiles may use (the WebGPU default limit).
const WORKGROUP_BYTES: usize = 16 * 1024;
/// Most query rows per workgroup when decoding (one token: the heads of a KV group).
const DECODE_ROWS: usize = 8;
/// Most chunks one head's context is split into when decoding (`MAX_CHUNKS` in the shader).
const MAX_DECODE_CHUNKS: usize = 512;
/// The usual [`AttentionShape::min_chunk_len`].
pub const DEFAULT_MIN_CHUNK_LEN: usize = 32;
const MAX_WORKGROUPS: usize = 65_535;
/// Most rows of a batched decode step (`MAX_BATCH_ROWS` in the shader: the
/// row table is a 4 KiB uniform).
pub const MAX_BATCH_ROWS: usize = 256;

/// The static shape of one layer's attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Positions the KV cache holds per sequence.
    pub capacity: usize,
    /// Sequences the KV cache holds.
    pub sequences: usize,
    /// Sliding window: each query sees only the last `window` positions, its
    /// own included (Gemma 3's local layers); `None` sees every earlier one.
    pub window: Option<usize>,
    /// Multiplies the scores (usually `head_dim^-0.5`).
    pub scale: f32,
    /// Tuning knob of decode: each chunk of the context spans at least this
    /// many keys (rounded up to whole key tiles; usually
    /// [`DEFAULT_MIN_CHUNK_LEN`]); fewer, longer chunks mean fewer workgroups
    /// and a cheaper combination, more chunks more parallelism.
    pub min_chunk_len: usize,
}

/// Tile sizes of the attention kernel for one head dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiles {
    /// Query rows per workgroup (prefill).
    pub block_q: usize,
    /// Keys per tile in workgroup memory (a multiple of 4).
    pub block_k: usize,
    /// Query rows per workgroup when decoding (up to 8 heads of a KV group).
    pub decode_q: usize,
}

impl Tiles {
    /// About 1024 query values and 2048 key values per workgroup, `block_k`
    /// shrunk (by 4) until queries + keys/values + scores + row statistics fit
    /// in 16 KiB; decode takes up to 8 rows within the same budget.
    pub fn for_head_dim(head_dim: usize) -> Tiles {
        let block_q = (1024 / head_dim).clamp(4, 32);
        let mut block_k = (2048 / head_dim).clamp(8, 32) / 4 * 4;
        while Self::bytes(head_dim, block_q, block_k) > WORKGROUP_BYTES {
            block_k -= 4;
        }
        let mut decode_q = DECODE_ROWS;
        while Self::bytes(head_dim, decode_q, block_k) > WORKGROUP_BYTES {
            decode_q -= 1;
        }
        Tiles { block_q, block_k, decode_q }
    }

    /// Workgroup memory of the kernel with these tiles.
    fn bytes(head_dim: usize, block_q: usize, block_k: usize) -> usize {
        4 * (block_q * head_dim
            + block_k * (head_dim + 4)
            + block_q * block_k
            + 3 * block_q
            + 2 * WORKGROUP_SIZE)
    }
}

/// Decode's per-chunk partial results; one serves every layer of a model
/// (layers run one after another).
pub struct AttentionScratch {
    acc: wgpu::Buffer,
    max_sum: wgpu::Buffer,
    heads: usize,
    max_chunks: usize,
    /// Rows of a batched step the partials hold.
    rows: usize,
}

impl AttentionScratch {
    /// Partial buffers for `heads` heads of `head_dim` over a cache of
    /// `capacity` positions, for batched steps of up to `rows` rows (1 for a
    /// single sequence).
    pub fn new(
        ctx: &GpuContext,
        heads: usize,
        head_dim: usize,
        capacity: usize,
        rows: usize,
    ) -> AttentionScratch {
        let (max_chunks, rows) = (max_chunks(head_dim, capacity), rows.max(1));
        AttentionScratch {
            acc: ctx.empty_storage_buffer(
                "attention partial acc",
                (rows * heads * max_chunks * head_dim * 4) as u64,
            ),
            max_sum: ctx.empty_storage_buffer(
                "attention partial max/sum",
                (rows * heads * max_chunks * 8) as u64,
            ),
            heads,
            max_chunks,
            rows,
        }
    }

    /// Bytes [`AttentionScratch::new`] allocates for these sizes (a memory plan's figure).
    pub fn bytes(heads: usize, head_dim: usize, capacity: usize, rows: usize) -> u64 {
        (rows.max(1) * heads * max_chunks(head_dim, capacity) * (head_dim * 4 + 8)) as u64
    }
}

/// The row table of batched decode steps: each row's sequence and position.
/// One serves every layer of a model; [`AttentionRows::set`] writes it once
/// per step, before the step's passes are submitted.
pub struct AttentionRows {
    buffer: wgpu::Buffer,
    sequences: usize,
    capacity: usize,
    /// What the buffer holds (a step that repeats it writes nothing).
    written: Vec<[u32; 4]>,
}

impl AttentionRows {
    /// A table for caches of `sequences` sequences × `capacity` positions.
    pub fn new(ctx: &GpuContext, sequences: usize, capacity: usize) -> AttentionRows {
        AttentionRows {
            buffer: ctx.uniform_buffer("attention rows", &[[0u32; 4]; MAX_BATCH_ROWS]),
            sequences,
            capacity,
            written: Vec::new(),
        }
    }

    /// Sets the rows of the next batched step: `(sequence, position)` each,
    /// the sequences distinct (each row appends its key and value to its
    /// sequence's cache). Takes effect at the next `queue.submit`, so one
    /// submission holds one batched step.
    pub fn set(&mut self, queue: &wgpu::Queue, rows: &[(usize, usize)]) -> Result<(), KernelError> {
        if rows.is_empty() || rows.len() > MAX_BATCH_ROWS {
            return Err(KernelError::InvalidArguments(format!(
                "attention rows: {} rows, a batched step takes 1..={MAX_BATCH_ROWS}",
                rows.len()
            )));
        }
        let mut table = Vec::with_capacity(rows.len());
        for &(sequence, position) in rows {
            if sequence >= self.sequences || position >= self.capacity {
                return Err(KernelError::InvalidArguments(format!(
                    "attention rows: sequence {sequence} position {position}, the cache holds \
                     {} sequences × {} positions",
                    self.sequences, self.capacity
                )));
            }
            table.push([sequence as u32, position as u32, 0, 0]);
        }
        if table != self.written {
            queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(&table));
            self.written = table;
        }
        Ok(())
    }
}

/// Chunks per head the scratch holds: one per key tile, at most [`MAX_DECODE_CHUNKS`].
fn max_chunks(head_dim: usize, capacity: usize) -> usize {
    let block_k = Tiles::for_head_dim(head_dim.clamp(16, MAX_HEAD_DIM)).block_k;
    capacity.div_ceil(block_k).clamp(1, MAX_DECODE_CHUNKS)
}

/// Where the queries (and, for a decode step, the new key and value) come from.
#[derive(Clone, Copy)]
pub enum Queries<'a> {
    /// Rotated queries, `[tokens, heads·head_dim]` f32, whose keys and values
    /// are already in the cache (what [`crate::RopeAppend`] writes); any step.
    Rotated(&'a wgpu::Buffer),
    /// One token's unrotated q/k/v product row, `[(heads + 2·kv_heads)·head_dim]`
    /// f32 (`[q | k | v]`): the kernel rotates q and k with `table` for the
    /// step's position and appends k and v to the cache before it attends.
    /// Decode steps only (one token, or one per row of a batched step: rows
    /// of `[q | k | v]` then), for models without a per-head q/k norm whose
    /// GQA group fits one workgroup ([`Attention::appends_for`]).
    Projected {
        /// The q/k/v product's output row.
        qkv: &'a wgpu::Buffer,
        /// The shared cos/sin table.
        table: &'a RopeTable,
    },
}

/// The buffers one bound kernel reads and writes.
pub struct AttentionBuffers<'a> {
    /// The queries.
    pub q: Queries<'a>,
    /// This layer's keys, `[kv_heads, capacity, head_dim]` in the kernel's format (written
    /// only for [`Queries::Projected`]).
    pub k_cache: &'a wgpu::Buffer,
    /// This layer's values, `[kv_heads, capacity, head_dim]` (likewise).
    pub v_cache: &'a wgpu::Buffer,
    /// Output, `[tokens, heads·head_dim]` f32.
    pub out: &'a wgpu::Buffer,
    /// Decode's partial results (shared by the layers).
    pub scratch: &'a AttentionScratch,
    /// `Some`: the binding runs batched decode steps over these rows (with
    /// [`Queries::Projected`] rows, one per table row; a step's `tokens` is
    /// the row count and its `start` the largest position).
    pub rows: Option<&'a AttentionRows>,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    tokens: u32,
    start: u32,
    heads: u32,
    kv_heads: u32,
    capacity: u32,
    scale: f32,
    chunk_len: u32,
    num_chunks: u32,
    max_chunks: u32,
    group: u32,
    heads_per_block: u32,
    tokens_per_block: u32,
    head_blocks: u32,
    split: u32,
    window: u32,
    append: u32,
    rotary_dim: u32,
    sequence: u32,
    batched: u32,
    _pad: u32,
}

/// The attention kernels' source for `head_dim`, with `block_q` query rows
/// and `block_k` keys per tile of `attend`, over a cache declared by
/// `kv_cache` ([`FloatFormat::kv_cache_wgsl`]).
fn shader_source(head_dim: usize, block_q: usize, block_k: usize, kv_cache: &str) -> String {
    let acc_vec4 = (block_q * head_dim / 4).div_ceil(WORKGROUP_SIZE);
    format!(
        "const HEAD_DIM: u32 = {head_dim}u;\nconst BLOCK_Q: u32 = {block_q}u;\nconst BLOCK_K: u32 = {block_k}u;\n\
         const ACC_VEC4: u32 = {acc_vec4}u;\nconst MAX_BATCH_ROWS: u32 = {MAX_BATCH_ROWS}u;\n\
         {kv_cache}{ROTATION}\n{SHADER}"
    )
}

/// The tensor-core prefill kernel's source (`attention_coop.wgsl` after the
/// portable kernels, whose bindings and helpers it shares); it reads an f16
/// cache as f16.
fn coop_source(head_dim: usize, tiles: Tiles, kv: FloatFormat) -> String {
    format!(
        "enable f16;\nenable wgpu_cooperative_matrix;\n{}\n{COOP_SHADER}",
        shader_source(head_dim, tiles.block_q, tiles.block_k, &kv.kv_cache_wgsl(true))
    )
}

/// Words of [`Params`].
const PARAM_WORDS: usize = size_of::<Params>() / 4;

/// The compiled attention pipelines for one head dimension; build once per model.
pub struct Attention {
    layout: KernelLayout,
    prefill: wgpu::ComputePipeline,
    /// The prefill kernel on cooperative matrices (`attention_coop.wgsl`),
    /// where the device has them and the head dimension is 64.
    prefill_coop: Option<wgpu::ComputePipeline>,
    decode: wgpu::ComputePipeline,
    combine: wgpu::ComputePipeline,
    head_dim: usize,
    tiles: Tiles,
    /// How the cache stores keys and values.
    kv: FloatFormat,
    /// The row table bound where a binding runs no batched step.
    no_rows: wgpu::Buffer,
}

impl Attention {
    /// Compiles the kernel for `head_dim` (a multiple of 16, ≤ 256): a prefill
    /// variant ([`Tiles::for_head_dim`] query rows per workgroup) and a decode
    /// variant (up to 8 rows: the heads of a KV group), over a cache that
    /// stores keys and values as `kv` (f16 for a model whose activations are
    /// f16, like MLC's own cache). One portable f32 path: the reductions are
    /// over a few threads per row in workgroup memory.
    pub fn new(
        ctx: &GpuContext,
        head_dim: usize,
        kv: FloatFormat,
    ) -> Result<Attention, KernelError> {
        if head_dim == 0 || !head_dim.is_multiple_of(16) || head_dim > MAX_HEAD_DIM {
            return Err(KernelError::InvalidArguments(format!(
                "attention: head_dim {head_dim} must be a multiple of 16 in 16..={MAX_HEAD_DIM}"
            )));
        }
        use Binding::*;
        let layout = ctx.kernel_layout(
            "attention",
            &[
                Uniform, ReadOnly, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadOnly,
                Uniform,
            ],
        );
        let tiles = Tiles::for_head_dim(head_dim);
        let source =
            |block_q| shader_source(head_dim, block_q, tiles.block_k, &kv.kv_cache_wgsl(false));
        let prefill = ctx
            .compile_entries("attention prefill", &source(tiles.block_q), &["attend"], &layout)?
            .remove(0);
        let mut decode = ctx.compile_entries(
            "attention decode",
            &source(tiles.decode_q),
            &["attend", "combine_chunks"],
            &layout,
        )?;
        let combine = decode.pop().expect("two pipelines");
        let decode = decode.pop().expect("two pipelines");
        let prefill_coop = match ctx.caps.cooperative_matrix && head_dim == COOP_HEAD_DIM {
            true => {
                let source = coop_source(head_dim, tiles, kv);
                Some(
                    ctx.compile_entries(
                        "attention prefill (coop)",
                        &source,
                        &["attend_coop"],
                        &layout,
                    )?
                    .remove(0),
                )
            }
            false => None,
        };
        let no_rows = ctx.uniform_buffer("attention no rows", &[[0u32; 4]; MAX_BATCH_ROWS]);
        Ok(Attention {
            layout,
            prefill,
            prefill_coop,
            decode,
            combine,
            head_dim,
            tiles,
            kv,
            no_rows,
        })
    }

    /// Whether a decode step can take [`Queries::Projected`] for this GQA
    /// shape: one workgroup must hold all query heads of a KV head, so that
    /// one workgroup appends each new key.
    pub fn appends_for(&self, heads: usize, kv_heads: usize) -> bool {
        kv_heads > 0 && heads.is_multiple_of(kv_heads) && heads / kv_heads <= self.tiles.decode_q
    }

    /// Whether prefill steps run on cooperative matrices (tensor cores).
    pub fn uses_cooperative_matrix(&self) -> bool {
        self.prefill_coop.is_some()
    }

    /// The tile sizes chosen for this head dimension.
    pub fn tiles(&self) -> Tiles {
        self.tiles
    }

    /// How the caches it binds store keys and values.
    pub fn kv_format(&self) -> FloatFormat {
        self.kv
    }
}

impl Kernel for Attention {
    type Buffers<'a> = AttentionBuffers<'a>;
    type Shape = AttentionShape;
    type Bound = Bound;

    /// Checks the buffers against `shape` and creates the bind group and the
    /// parameter block for one layer. The largest step it accepts is as many
    /// tokens as `q` and `out` hold.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &AttentionBuffers<'_>,
        shape: &AttentionShape,
    ) -> Result<Bound, KernelError> {
        let AttentionShape { heads, kv_heads, capacity, sequences, window, scale, min_chunk_len } =
            *shape;
        let head_dim = self.head_dim;
        let bad = |why: String| Err(KernelError::InvalidArguments(format!("attention: {why}")));
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return bad(format!("{heads} heads cannot share {kv_heads} kv heads"));
        }
        if capacity == 0 || sequences == 0 {
            return bad(format!("a cache of {sequences} sequences × {capacity} positions"));
        }
        if window == Some(0) {
            return bad("a sliding window of 0 keys".into());
        }
        let group = heads / kv_heads;
        let prefill_heads = group.min(self.tiles.block_q);
        let decode_heads = group.min(self.tiles.decode_q);
        let head_blocks = |per_block: usize| group.div_ceil(per_block);
        if kv_heads * head_blocks(decode_heads).max(head_blocks(prefill_heads)) > MAX_WORKGROUPS
            || heads > MAX_WORKGROUPS
        {
            return bad(format!("{heads} heads exceed one dispatch"));
        }
        let scratch = buffers.scratch;
        let needed_chunks = max_chunks(head_dim, capacity);
        if scratch.heads < heads || scratch.max_chunks < needed_chunks {
            return bad(format!(
                "scratch for {} heads × {} chunks, the shape needs {heads} × {needed_chunks}",
                scratch.heads, scratch.max_chunks
            ));
        }
        require_size(
            "attention scratch acc",
            &scratch.acc,
            (scratch.rows * heads * scratch.max_chunks * head_dim * 4) as u64,
        )?;
        if let Some(rows) = buffers.rows
            && (rows.sequences > sequences || rows.capacity > capacity)
        {
            return bad(format!(
                "a row table for {} sequences × {} positions, the cache holds {sequences} × {capacity}",
                rows.sequences, rows.capacity
            ));
        }
        let cache_bytes =
            self.kv.kv_cache_bytes(sequences, KvLayout { kv_heads, capacity, head_dim });
        require_size("attention k_cache", buffers.k_cache, cache_bytes)?;
        require_size("attention v_cache", buffers.v_cache, cache_bytes)?;
        let row = (heads * head_dim * 4) as u64;
        // The queries' buffer, the cos/sin table (a placeholder when the
        // queries come rotated) and the most tokens one step may have.
        let placeholder;
        let (q, cos_sin, rotary_dim, max_q_tokens) = match buffers.q {
            Queries::Rotated(q) => {
                placeholder = ctx.empty_storage_buffer("attention no rope table", 8);
                (q, &placeholder, 0, q.size() / row)
            }
            Queries::Projected { qkv, table } => {
                if !self.appends_for(heads, kv_heads) {
                    return bad(format!(
                        "the decode append needs at most {} query heads per kv head, not {group}",
                        self.tiles.decode_q
                    ));
                }
                if table.capacity < capacity || table.rotary_dim > head_dim {
                    return bad(format!(
                        "a rope table of {} positions × {} dims for a cache of {capacity} × {head_dim}",
                        table.capacity, table.rotary_dim
                    ));
                }
                let qkv_row = ((heads + 2 * kv_heads) * head_dim * 4) as u64;
                require_size("attention qkv row", qkv, qkv_row)?;
                let rows = match buffers.rows {
                    Some(_) => (qkv.size() / qkv_row).min(scratch.rows as u64),
                    None => 1,
                };
                (qkv, &table.buffer, table.rotary_dim, rows)
            }
        };
        if buffers.rows.is_some() && !matches!(buffers.q, Queries::Projected { .. }) {
            return bad("a batched step takes its rows from the q/k/v product (Projected)".into());
        }
        let inputs = [Some(q), Some(cos_sin)];
        check_distinct(
            "attention out",
            buffers.out,
            &[&inputs[..], &[Some(buffers.k_cache), Some(buffers.v_cache)]].concat(),
        )?;
        check_distinct(
            "attention k_cache",
            buffers.k_cache,
            &[&inputs[..], &[Some(buffers.v_cache)]].concat(),
        )?;
        check_distinct("attention v_cache", buffers.v_cache, &inputs)?;
        let max_tokens = max_q_tokens.min(buffers.out.size() / row) as usize;
        if max_tokens == 0 {
            return bad("q or out cannot hold one token".into());
        }
        let tokens_per_block = self.tiles.block_q / prefill_heads;
        let batched = buffers.rows.is_some();
        let params = Params {
            tokens: 0,
            start: 0,
            heads: heads as u32,
            kv_heads: kv_heads as u32,
            capacity: capacity as u32,
            scale,
            chunk_len: 0,
            num_chunks: 0,
            max_chunks: scratch.max_chunks as u32,
            group: group as u32,
            heads_per_block: 0,
            tokens_per_block: 0,
            head_blocks: 0,
            split: 0,
            window: window.map_or(0, |w| w.min(capacity)) as u32,
            append: matches!(buffers.q, Queries::Projected { .. }) as u32,
            rotary_dim: rotary_dim as u32,
            sequence: 0,
            batched: batched as u32,
            _pad: 0,
        };
        let params_buffer = ctx.uniform_buffer("attention params", &params);
        let bind_group = ctx.bind_buffers(
            "attention",
            &self.layout,
            &[
                &params_buffer,
                q,
                buffers.k_cache,
                buffers.v_cache,
                buffers.out,
                &scratch.acc,
                &scratch.max_sum,
                cos_sin,
                buffers.rows.map_or(&self.no_rows, |rows| &rows.buffer),
            ],
        );
        let schedule = AttentionSchedule {
            prefill: self.prefill.clone(),
            prefill_coop: self.prefill_coop.clone(),
            decode: self.decode.clone(),
            combine: self.combine.clone(),
            params,
            block_k: self.tiles.block_k,
            prefill_heads,
            tokens_per_block,
            decode_heads,
            max_tokens: match batched {
                true => max_tokens
                    .min(MAX_BATCH_ROWS)
                    .min(MAX_WORKGROUPS / (kv_heads * group.div_ceil(decode_heads))),
                false => max_tokens.min(MAX_WORKGROUPS * tokens_per_block),
            },
            min_chunk_len: min_chunk_len.max(1),
            batched,
            sequences,
        };
        let part = Part { bind_group, params: params_buffer, extent: 0 };
        Ok(Bound::new(ctx, "attention", vec![part], schedule))
    }
}

/// A step of [`Attention`]: the prefill kernel for several tokens; for one,
/// or for a batched step's rows, the decode kernel over chunks of the context
/// and (if more than one) their combination. The step rewrites the whole
/// parameter block.
struct AttentionSchedule {
    prefill: wgpu::ComputePipeline,
    prefill_coop: Option<wgpu::ComputePipeline>,
    decode: wgpu::ComputePipeline,
    combine: wgpu::ComputePipeline,
    /// The parameters that do not depend on the step.
    params: Params,
    block_k: usize,
    prefill_heads: usize,
    tokens_per_block: usize,
    decode_heads: usize,
    max_tokens: usize,
    min_chunk_len: usize,
    /// Whether the steps are batched (one token per row of the row table).
    batched: bool,
    sequences: usize,
}

impl AttentionSchedule {
    /// The parameter block of `tokens` queries at positions `start..start +
    /// tokens` of `sequence`, or of a batched step of `tokens` rows whose
    /// latest position is `start`.
    fn step_params(&self, Step { tokens, start, sequence }: Step) -> Params {
        let (tokens, start) = (tokens as usize, start as usize);
        let mut p = self.params;
        p.tokens = tokens as u32;
        p.start = start as u32;
        p.sequence = sequence;
        let group = p.group as usize;
        if tokens == 1 || self.batched {
            // Chunks of whole key tiles over the keys the query sees (a
            // batched step's longest row): at least `min_chunk_len` keys,
            // few enough for the scratch.
            let window = p.window as usize;
            let kv_len = start + tokens;
            let seen = if window == 0 { kv_len } else { kv_len.min(window) };
            let tiles = seen.div_ceil(self.block_k);
            let tiles_per_chunk = tiles
                .div_ceil(p.max_chunks as usize)
                .max(self.min_chunk_len.div_ceil(self.block_k));
            let chunk_len = tiles_per_chunk * self.block_k;
            p.split = 1;
            p.chunk_len = chunk_len as u32;
            p.num_chunks = seen.div_ceil(chunk_len) as u32;
            p.heads_per_block = self.decode_heads as u32;
            p.tokens_per_block = 1;
            p.head_blocks = group.div_ceil(self.decode_heads) as u32;
        } else {
            p.heads_per_block = self.prefill_heads as u32;
            p.tokens_per_block = self.tokens_per_block as u32;
            p.head_blocks = group.div_ceil(self.prefill_heads) as u32;
        }
        p
    }
}

impl Schedule for AttentionSchedule {
    fn uses_position(&self) -> bool {
        true
    }

    /// Queries whose keys and values are in the cache, or a decode step that
    /// appends its own ([`Queries::Projected`]: one token).
    fn params(&self, step: Step, words: &mut Vec<u32>) -> Result<(), KernelError> {
        let tokens = step.tokens as usize;
        let kv_len = step.start as usize + if self.batched { 1 } else { tokens };
        if tokens == 0 || tokens > self.max_tokens {
            return Err(KernelError::InvalidArguments(format!(
                "attention: {tokens} tokens, the buffers hold 1..={}",
                self.max_tokens
            )));
        }
        if kv_len > self.params.capacity as usize {
            return Err(KernelError::InvalidArguments(format!(
                "attention: positions ..{kv_len} exceed the cache capacity {}",
                self.params.capacity
            )));
        }
        if step.sequence as usize >= self.sequences {
            return Err(KernelError::InvalidArguments(format!(
                "attention: sequence {}, the cache holds {}",
                step.sequence, self.sequences
            )));
        }
        words.extend_from_slice(&bytemuck::cast::<Params, [u32; PARAM_WORDS]>(
            self.step_params(step),
        ));
        Ok(())
    }

    fn dispatches(
        &self,
        step: Step,
        _: u32,
        dispatch: &mut dyn FnMut(&wgpu::ComputePipeline, Workgroups),
    ) {
        let p = self.step_params(step);
        let blocks_y = p.kv_heads * p.head_blocks;
        if p.split == 1 {
            // A batched step's rows are folded into y.
            let rows = if self.batched { p.tokens } else { 1 };
            dispatch(&self.decode, Workgroups::Grid(p.num_chunks, rows * blocks_y));
            if p.num_chunks > 1 {
                dispatch(&self.combine, Workgroups::Grid(p.heads, rows));
            }
        } else if let Some(coop) = &self.prefill_coop {
            dispatch(coop, Workgroups::Grid(p.tokens.div_ceil(COOP_TOKENS as u32), p.heads));
        } else {
            dispatch(
                &self.prefill,
                Workgroups::Grid(p.tokens.div_ceil(p.tokens_per_block), blocks_y),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_fit_the_webgpu_workgroup_memory_limit() {
        for head_dim in (16..=MAX_HEAD_DIM).step_by(16) {
            let tiles = Tiles::for_head_dim(head_dim);
            for block_q in [tiles.block_q, tiles.decode_q] {
                let bytes = Tiles::bytes(head_dim, block_q, tiles.block_k);
                assert!(
                    bytes <= WORKGROUP_BYTES,
                    "head_dim {head_dim}: {tiles:?} needs {bytes} bytes"
                );
            }
            assert!(
                tiles.block_k >= 4 && tiles.block_k.is_multiple_of(4),
                "head_dim {head_dim}: {tiles:?}"
            );
        }
        assert_eq!(Tiles::for_head_dim(64), Tiles { block_q: 16, block_k: 32, decode_q: 8 });
        assert_eq!(Tiles::for_head_dim(128), Tiles { block_q: 8, block_k: 16, decode_q: 8 });
    }

    /// The tensor-core kernel's source is valid WGSL for naga, also where the
    /// adapter has no cooperative matrices to compile it for (lavapipe, CI).
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_cooperative_matrix_source_validates() {
        for kv in [FloatFormat::F32, FloatFormat::F16] {
            crate::context::assert_valid_wgsl(&coop_source(
                COOP_HEAD_DIM,
                Tiles::for_head_dim(COOP_HEAD_DIM),
                kv,
            ));
        }
    }
}
