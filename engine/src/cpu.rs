//! The float32 CPU engine: the reference every GPU path is checked against, and
//! the fallback where WebGPU is missing. Weights stay quantized in memory and
//! are decoded inside the products (see [`mlc_kernels::cpu`]).

use mlc_kernels::cpu::{
    self as ops, DeltaNetShape, DeltaNetState, KvLayout, Q4Matrix, RollingWindow, Rope, Weight,
};
use mlc_loader::{DType, Tensor};

use crate::EngineError;
use crate::backend::{
    Backend, DeltaNetWeights, LinearSource, MatrixSource, PassInput, Placement, RowToken,
};
use crate::models::{Activation, ModelSpec};
use crate::sampling::{Drawn, HostSampler, SamplingStep};

/// Activations `[rows, cols]` in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTensor {
    /// Rows (tokens).
    pub rows: usize,
    /// Features per row.
    pub cols: usize,
    /// `rows · cols` values, row-major.
    pub data: Vec<f32>,
}

impl CpuTensor {
    fn zeros(rows: usize, cols: usize) -> CpuTensor {
        CpuTensor { rows, cols, data: vec![0.0; rows * cols] }
    }
}

/// A weight matrix kept in its stored format.
#[derive(Debug)]
enum Matrix {
    Q4 { rows: usize, cols: usize, q_weight: Vec<u32>, scales: Vec<f32> },
    Dense { rows: usize, cols: usize, values: Vec<f32> },
}

/// A linear layer on the CPU.
#[derive(Debug)]
pub struct CpuLinear {
    matrix: Matrix,
    bias: Option<Vec<f32>>,
}

impl CpuLinear {
    fn weight(&self) -> Weight<'_> {
        match &self.matrix {
            Matrix::Q4 { rows, cols, q_weight, scales } => {
                Weight::Q4(Q4Matrix { rows: *rows, cols: *cols, q_weight, scales })
            }
            Matrix::Dense { rows, cols, values } => {
                Weight::Dense { rows: *rows, cols: *cols, values }
            }
        }
    }
}

/// One layer's keys and values, `[kv_heads, capacity, head_dim]` each; the
/// capacity doubles on demand up to the context window.
#[derive(Debug, Default)]
pub(crate) struct LayerCache {
    pub(crate) capacity: usize,
    pub(crate) keys: Vec<f32>,
    pub(crate) values: Vec<f32>,
}

/// Most sequences a CPU backend keeps at once. Each one's memory grows with
/// the tokens it holds, so host memory is the real bound; this one only
/// catches a runaway caller.
pub(crate) const MAX_SEQUENCES: usize = 1024;

/// What a CPU backend keeps for one sequence.
#[derive(Debug, Default)]
pub(crate) struct SequenceState {
    /// Each layer's keys and values.
    pub(crate) cache: Vec<LayerCache>,
    /// Each Gated DeltaNet layer's recurrent state, by layer (Qwen3.5).
    pub(crate) recurrent: RecurrentStates,
    /// Token choice: the penalties' counts and the last token chosen.
    pub(crate) sampler: HostSampler,
}

/// The sequences of a CPU backend and the selected one
/// ([`Backend::select_sequence`]); a sequence's state is made on first use.
#[derive(Debug, Default)]
pub(crate) struct Sequences {
    states: Vec<SequenceState>,
    selected: usize,
    /// What a pass over a rolling KV cache attends over (kept between passes
    /// so that a decode step allocates nothing).
    rolling: RollingScratch,
}

/// A rolling cache's span of a pass attends over the tokens the layer holds,
/// gathered in the order MLC sees them and rotated at their place there
/// (`view`), followed by the span's own rows; `table` holds `(cos, sin)` of
/// the places `0..size` a held token can take, computed once.
#[derive(Debug, Default)]
struct RollingScratch {
    view: LayerCache,
    table: Vec<(f32, f32)>,
}

impl Sequences {
    /// Selects `sequence`.
    pub(crate) fn select(&mut self, sequence: usize) -> Result<(), EngineError> {
        if sequence >= MAX_SEQUENCES {
            return Err(EngineError::Unsupported(format!(
                "sequence {sequence}: a CPU backend keeps at most {MAX_SEQUENCES}"
            )));
        }
        self.selected = sequence;
        Ok(())
    }

    /// The selected sequence's state.
    pub(crate) fn selected(&mut self) -> &mut SequenceState {
        self.get(self.selected)
    }

    /// The state of `sequence`.
    pub(crate) fn get(&mut self, sequence: usize) -> &mut SequenceState {
        state(&mut self.states, sequence)
    }

    /// The token of row `row` of `input`: the host's, or the one that the
    /// row's sequence's last draw chose. `None` where that draw chose none
    /// (its logits were not finite): the step that drew reports them, and
    /// this pass's work for the row is discarded with it (as on the GPU
    /// engine), so any input will do there.
    pub(crate) fn token(&mut self, input: PassInput<'_>, row: usize) -> Option<u32> {
        match input {
            PassInput::Tokens(tokens) => Some(tokens[row]),
            PassInput::Queued => self.selected().sampler.queued(),
            PassInput::Rows(rows) => {
                let RowToken { sequence, token } = rows[row];
                token.or_else(|| self.get(sequence).sampler.queued())
            }
        }
    }

    /// The runs of a pass's `rows` that each continue one sequence: the
    /// selected one from `start` ([`Placement::Run`]), or one row per
    /// sequence ([`Placement::Rows`]). Allocates nothing (a decode step of
    /// the fast engine allocates nothing).
    pub(crate) fn spans<'a>(
        &self,
        place: Placement<'a>,
        rows: usize,
    ) -> impl Iterator<Item = Span> + use<'a> {
        let (run, placed) = match place {
            Placement::Run { start } => {
                (Some(Span { sequence: self.selected, start, rows: 0..rows }), &[][..])
            }
            Placement::Rows(placed) => (None, placed),
        };
        run.into_iter().chain(placed.iter().enumerate().map(|(row, at)| Span {
            sequence: at.sequence,
            start: at.position,
            rows: row..row + 1,
        }))
    }
}

impl Sequences {
    /// What the span's rows of layer `layer` attend over and write to: the
    /// layer's cache of the span's sequence, with room for the span's
    /// positions; or, for a rolling cache, the tokens it holds gathered and
    /// rotated by `rope` (the rows are then appended after them, and keep
    /// their unrotated keys in the ring with [`SpanCache::keep`]).
    pub(crate) fn cache_for(
        &mut self,
        span: &Span,
        spec: &ModelSpec,
        layer: usize,
        rope: &Rope,
    ) -> Result<SpanCache<'_>, EngineError> {
        let end = span.end(spec.context_window_size)?;
        let (kv_heads, head_dim) = (spec.num_kv_heads, spec.head_dim);
        let caches = &mut state(&mut self.states, span.sequence).cache;
        if caches.len() < spec.num_layers {
            caches.resize_with(spec.num_layers, LayerCache::default);
        }
        let cache = &mut caches[layer];
        let Some(window) = spec.rolling_window else {
            cache.reserve(end, kv_heads, head_dim, spec.context_window_size);
            let layout = KvLayout { kv_heads, capacity: cache.capacity, head_dim };
            return Ok(SpanCache { cache, layout, start: span.start, ring: None });
        };
        // The ring: `size` slots, made once.
        cache.reserve(window.size, kv_heads, head_dim, window.size);
        let ring_layout = KvLayout { kv_heads, capacity: window.size, head_dim };
        let held = window.held(span.start);
        let scratch = &mut self.rolling;
        let layout = KvLayout { kv_heads, capacity: held + span.rows.len(), head_dim };
        // Sized once for a full window and a prefill chunk, and the table
        // made once for every place in the window: the steps that fill the
        // window allocate nothing either.
        let most =
            kv_heads * (window.size + spec.prefill_chunk_size.max(span.rows.len())) * head_dim;
        let view = &mut scratch.view;
        view.capacity = layout.capacity;
        for buffer in [&mut view.keys, &mut view.values] {
            buffer.reserve(most.saturating_sub(buffer.len()));
            buffer.resize(kv_heads * layout.capacity * head_dim, 0.0);
        }
        if scratch.table.len() != window.size * rope.cos_sin(0).count() {
            scratch.table = (0..window.size).flat_map(|position| rope.cos_sin(position)).collect();
        }
        ops::gather_rolling(
            window,
            span.start,
            (&cache.keys, &cache.values),
            ring_layout,
            &scratch.table,
            &mut view.keys,
            &mut view.values,
            layout,
        );
        let ring = Some(Ring { cache, layout: ring_layout, window, start: span.start });
        Ok(SpanCache { cache: view, layout, start: held, ring })
    }
}

/// The state of `sequence` among `states`, made on first use.
fn state(states: &mut Vec<SequenceState>, sequence: usize) -> &mut SequenceState {
    if states.len() <= sequence {
        states.resize_with(sequence + 1, SequenceState::default);
    }
    &mut states[sequence]
}

/// What one span of a pass attends over in one layer ([`Sequences::cache_for`]).
pub(crate) struct SpanCache<'a> {
    /// The keys (rotated) and values attended over; row `i` of the span is
    /// appended at `start + i`.
    pub(crate) cache: &'a mut LayerCache,
    /// Its layout.
    pub(crate) layout: KvLayout,
    /// The place of the span's first row in `cache`, which is also the
    /// position it is rotated at: its position in the sequence, or for a
    /// rolling cache the tokens held before it ([`RollingWindow::held`]).
    pub(crate) start: usize,
    /// A rolling cache's ring, which keeps the rows' unrotated keys.
    ring: Option<Ring<'a>>,
}

/// A layer's rolling cache: unrotated keys and values in
/// [`RollingWindow::slot`] order.
struct Ring<'a> {
    cache: &'a mut LayerCache,
    layout: KvLayout,
    window: RollingWindow,
    /// The span's first position in the sequence.
    start: usize,
}

impl SpanCache<'_> {
    /// Keeps row `i`'s key, not yet rotated, and value in a rolling cache's
    /// ring, over the token it evicts (after the gather, so the span still
    /// sees that token). A full cache keeps the rotated key appended to
    /// `cache` instead, so nothing happens there.
    pub(crate) fn keep(&mut self, i: usize, key: &[f32], value: &[f32]) {
        if let Some(ring) = &mut self.ring {
            let slot = ring.window.slot(ring.start + i);
            ring.cache.append(ring.layout, slot, key, value);
        }
    }
}

/// Consecutive rows of a pass that continue one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    /// The sequence.
    pub(crate) sequence: usize,
    /// The position of the first row.
    pub(crate) start: usize,
    /// The rows of the pass.
    pub(crate) rows: std::ops::Range<usize>,
}

impl Span {
    /// The position after the span, checked against the context window.
    pub(crate) fn end(&self, window: usize) -> Result<usize, EngineError> {
        let end = self.start + self.rows.len();
        match end > window {
            true => Err(EngineError::ContextWindowExceeded { needed: end, window }),
            false => Ok(end),
        }
    }
}

/// The CPU backend: eager f32 math over host memory.
pub struct CpuBackend {
    rope: Option<Rope>,
    sequences: Sequences,
}

impl CpuBackend {
    /// A backend with an empty KV cache.
    pub fn new() -> CpuBackend {
        CpuBackend { rope: None, sequences: Sequences::default() }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Linear = CpuLinear;
    type Vector = Vec<f32>;
    type Pending = Option<Drawn>;

    fn max_sequences(&self) -> usize {
        MAX_SEQUENCES
    }

    fn select_sequence(&mut self, sequence: usize) -> Result<(), EngineError> {
        self.sequences.select(sequence)
    }

    fn load_linear(&mut self, source: &LinearSource<'_>) -> Result<CpuLinear, EngineError> {
        let (rows, cols) = (source.rows, source.cols);
        let matrix = match &source.matrix {
            MatrixSource::Q4 { q_weight, q_scale } => Matrix::Q4 {
                rows,
                cols,
                q_weight: q_weight.to_u32_vec()?,
                scales: q_scale.to_f32_vec()?,
            },
            MatrixSource::Dense(values) => {
                Matrix::Dense { rows, cols, values: values.to_f32_vec()? }
            }
        };
        let bias = source.bias.as_ref().map(|b| b.to_f32_vec()).transpose()?;
        Ok(CpuLinear { matrix, bias })
    }

    fn load_vector(&mut self, source: &Tensor<'_>) -> Result<Vec<f32>, EngineError> {
        debug_assert!(source.dtype != DType::U32);
        Ok(source.to_f32_vec()?)
    }

    fn embed(
        &mut self,
        table: &CpuLinear,
        input: PassInput<'_>,
        scale: f32,
    ) -> Result<CpuTensor, EngineError> {
        let weight = table.weight();
        let hidden = weight.cols();
        let mut out = CpuTensor::zeros(input.len(), hidden);
        for (row, values) in out.data.chunks_mut(hidden).enumerate() {
            let Some(token) = self.sequences.token(input, row) else { continue };
            if token as usize >= weight.rows() {
                return Err(EngineError::TokenOutOfRange { token, vocab_size: weight.rows() });
            }
            ops::embed(&weight, &[token], values);
        }
        if scale != 1.0 {
            out.data.iter_mut().for_each(|v| *v *= scale);
        }
        Ok(out)
    }

    fn rms_norm(
        &mut self,
        x: &CpuTensor,
        weight: &Vec<f32>,
        eps: f32,
    ) -> Result<CpuTensor, EngineError> {
        let mut out = CpuTensor::zeros(x.rows, x.cols);
        ops::rms_norm(&x.data, weight, eps, &mut out.data);
        Ok(out)
    }

    fn layer_norm(
        &mut self,
        x: &CpuTensor,
        weight: &Vec<f32>,
        bias: &Vec<f32>,
        eps: f32,
    ) -> Result<CpuTensor, EngineError> {
        let mut out = CpuTensor::zeros(x.rows, x.cols);
        ops::layer_norm(&x.data, weight, bias, eps, &mut out.data);
        Ok(out)
    }

    fn linear(&mut self, x: &CpuTensor, linear: &CpuLinear) -> Result<CpuTensor, EngineError> {
        let weight = linear.weight();
        let mut out = CpuTensor::zeros(x.rows, weight.rows());
        ops::matmul(&x.data, x.rows, &weight, &mut out.data);
        if let Some(bias) = &linear.bias {
            for row in out.data.chunks_mut(bias.len()) {
                ops::add_in_place(row, bias);
            }
        }
        Ok(out)
    }

    fn linear_add(
        &mut self,
        x: &CpuTensor,
        linear: &CpuLinear,
        residual: &mut CpuTensor,
    ) -> Result<(), EngineError> {
        let y = self.linear(x, linear)?;
        ops::add_in_place(&mut residual.data, &y.data);
        Ok(())
    }

    fn add(&mut self, residual: &mut CpuTensor, x: &CpuTensor) -> Result<(), EngineError> {
        ops::add_in_place(&mut residual.data, &x.data);
        Ok(())
    }

    fn softcap(&mut self, x: &CpuTensor, cap: f32) -> Result<CpuTensor, EngineError> {
        let mut out = CpuTensor::zeros(x.rows, x.cols);
        ops::softcap(&x.data, cap, &mut out.data);
        Ok(out)
    }

    fn gated(
        &mut self,
        gate_up: &CpuTensor,
        activation: Activation,
    ) -> Result<CpuTensor, EngineError> {
        let intermediate = gate_up.cols / 2;
        let mut out = CpuTensor::zeros(gate_up.rows, intermediate);
        match activation {
            Activation::Silu => ops::silu_mul(&gate_up.data, intermediate, &mut out.data),
            Activation::GeluTanh => ops::gelu_tanh_mul(&gate_up.data, intermediate, &mut out.data),
            Activation::Gelu => ops::gelu_erf_mul(&gate_up.data, intermediate, &mut out.data),
        }
        Ok(out)
    }

    fn activation(
        &mut self,
        x: &CpuTensor,
        activation: Activation,
    ) -> Result<CpuTensor, EngineError> {
        let mut out = CpuTensor::zeros(x.rows, x.cols);
        out.data.copy_from_slice(&x.data);
        match activation {
            Activation::Silu => ops::silu(&mut out.data),
            Activation::GeluTanh => ops::gelu_tanh(&mut out.data),
            Activation::Gelu => ops::gelu_erf(&mut out.data),
        }
        Ok(out)
    }

    fn attention(
        &mut self,
        spec: &ModelSpec,
        layer: usize,
        qkv: &CpuTensor,
        qk_norm: Option<&(Vec<f32>, Vec<f32>)>,
        place: Placement<'_>,
    ) -> Result<CpuTensor, EngineError> {
        let (heads, kv_heads, d) = (spec.num_heads, spec.num_kv_heads, spec.head_dim);
        let width = heads * d;
        let rope = self.rope.get_or_insert_with(|| spec.rope());
        let mut q = CpuTensor::zeros(qkv.rows, width);
        let mut out = CpuTensor::zeros(qkv.rows, width);
        let mut k = vec![0.0; kv_heads * d];
        for span in self.sequences.spans(place, qkv.rows) {
            let mut target = self.sequences.cache_for(&span, spec, layer, rope)?;
            for (i, t) in span.rows.clone().enumerate() {
                let row = &qkv.data[t * qkv.cols..(t + 1) * qkv.cols];
                let (q_part, kv_part) = row.split_at(width);
                let (k_part, v_part) = kv_part.split_at(kv_heads * d);
                let q_row = &mut q.data[t * width..(t + 1) * width];
                q_row.copy_from_slice(q_part);
                k.copy_from_slice(k_part);
                if let Some((q_norm, k_norm)) = qk_norm {
                    let normed_q = q_row.to_vec();
                    ops::rms_norm(&normed_q, q_norm, spec.rms_norm_eps, q_row);
                    let normed_k = k.clone();
                    ops::rms_norm(&normed_k, k_norm, spec.rms_norm_eps, &mut k);
                }
                target.keep(i, &k, v_part);
                let position = target.start + i;
                rope.apply(q_row, d, position);
                rope.apply(&mut k, d, position);
                target.cache.append(target.layout, position, &k, v_part);
            }
            let rows = span.rows.start * width..span.rows.end * width;
            ops::causal_attention(
                &q.data[rows.clone()],
                &target.cache.keys,
                &target.cache.values,
                target.layout,
                heads,
                target.start,
                spec.attention_window(layer),
                spec.attention_scale(),
                &mut out.data[rows],
            );
        }
        Ok(out)
    }

    fn split_query_gate(
        &mut self,
        spec: &ModelSpec,
        qkv: &CpuTensor,
    ) -> Result<(CpuTensor, CpuTensor), EngineError> {
        let mut plain = CpuTensor::zeros(qkv.rows, qkv.cols - spec.num_heads * spec.head_dim);
        let mut gate = CpuTensor::zeros(qkv.rows, spec.num_heads * spec.head_dim);
        split_query_gate(spec, &qkv.data, &mut plain.data, &mut gate.data);
        Ok((plain, gate))
    }

    fn sigmoid_gate(&mut self, x: &CpuTensor, gate: &CpuTensor) -> Result<CpuTensor, EngineError> {
        let mut out = CpuTensor::zeros(x.rows, x.cols);
        sigmoid_gate(&x.data, &gate.data, &mut out.data);
        Ok(out)
    }

    fn delta_net(
        &mut self,
        shape: &DeltaNetShape,
        layer: usize,
        qkv: &CpuTensor,
        a: &CpuTensor,
        b: &CpuTensor,
        weights: &DeltaNetWeights<Self>,
    ) -> Result<CpuTensor, EngineError> {
        let mut out = CpuTensor::zeros(qkv.rows, shape.value_width());
        let mut convolved = vec![0.0; qkv.data.len()];
        let (mut g, mut beta) = (a.data.clone(), b.data.clone());
        let state = self.sequences.selected().recurrent.layer(layer, shape);
        delta_net(
            shape,
            state,
            &qkv.data,
            &mut convolved,
            (&mut g, &mut beta),
            weights,
            &mut out.data,
        );
        Ok(out)
    }

    fn gated_rms_norm(
        &mut self,
        _shape: &DeltaNetShape,
        x: &CpuTensor,
        weight: &Vec<f32>,
        z: &CpuTensor,
        eps: f32,
    ) -> Result<CpuTensor, EngineError> {
        let mut out = CpuTensor::zeros(x.rows, x.cols);
        ops::gated_rms_norm(&x.data, weight, &z.data, eps, &mut out.data);
        Ok(out)
    }

    fn row(&mut self, x: &CpuTensor, index: usize) -> Result<CpuTensor, EngineError> {
        let data = x.data[index * x.cols..(index + 1) * x.cols].to_vec();
        Ok(CpuTensor { rows: 1, cols: x.cols, data })
    }

    fn to_host(&mut self, x: &CpuTensor) -> Result<Vec<f32>, EngineError> {
        Ok(x.data.clone())
    }

    fn queue_argmax(&mut self, logits: &CpuTensor) -> Result<Option<Drawn>, EngineError> {
        Ok(self.sequences.selected().sampler.argmax(&logits.data))
    }

    fn queue_sample(
        &mut self,
        logits: &CpuTensor,
        step: &SamplingStep<'_>,
    ) -> Result<Option<Drawn>, EngineError> {
        Ok(self.sequences.selected().sampler.sample(&logits.data, step))
    }

    async fn take_token(&mut self, pending: Option<Drawn>) -> Result<Option<Drawn>, EngineError> {
        Ok(pending)
    }

    fn reset_cache(&mut self) {
        self.sequences.selected().reset();
    }
}

/// The Gated DeltaNet layers' recurrent states of the two CPU backends, by
/// layer index, each made (zero) by its layer's first call.
#[derive(Debug, Default)]
pub(crate) struct RecurrentStates(Vec<Option<DeltaNetState>>);

impl RecurrentStates {
    /// Layer `layer`'s state, zero if the layer has not run since the last reset.
    pub(crate) fn layer(&mut self, layer: usize, shape: &DeltaNetShape) -> &mut DeltaNetState {
        if self.0.len() <= layer {
            self.0.resize_with(layer + 1, || None);
        }
        self.0[layer].get_or_insert_with(|| DeltaNetState::zeros(shape))
    }

    /// Forgets every state (the sequence starts over).
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Rows of Qwen3.5's `[q | gate per head, k, v]` projection split into
/// `plain` (`[q, k, v]`) and `gate` (`[heads · head_dim]` per row), as MLC's
/// `Qwen35Attention` reshapes the query part to `(heads, 2 · head_dim)`.
pub(crate) fn split_query_gate(spec: &ModelSpec, qkv: &[f32], plain: &mut [f32], gate: &mut [f32]) {
    let (heads, d) = (spec.num_heads, spec.head_dim);
    let width = heads * d;
    let rows = gate.len() / width;
    let cols = plain.len() / rows.max(1);
    let fused = cols + width;
    for ((row, plain_row), gate_row) in
        qkv.chunks(fused).zip(plain.chunks_mut(cols)).zip(gate.chunks_mut(width))
    {
        for head in 0..heads {
            let pair = &row[head * 2 * d..(head + 1) * 2 * d];
            plain_row[head * d..(head + 1) * d].copy_from_slice(&pair[..d]);
            gate_row[head * d..(head + 1) * d].copy_from_slice(&pair[d..]);
        }
        plain_row[width..].copy_from_slice(&row[2 * width..]);
    }
}

/// `x · sigmoid(gate)`, elementwise.
pub(crate) fn sigmoid_gate(x: &[f32], gate: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(gate) {
        *o = x / (1.0 + (-g).exp());
    }
}

/// One Gated DeltaNet layer's recurrence on the host (both CPU backends):
/// the causal convolution with SiLU over `qkv` into `convolved` (same size),
/// the gates computed over `a` and `b` in place, and the delta rule,
/// advancing `state`; `out` is `[tokens, value_width]`. The caller owns every
/// buffer, so a decode step of the fast engine allocates nothing here.
pub(crate) fn delta_net(
    shape: &DeltaNetShape,
    state: &mut DeltaNetState,
    qkv: &[f32],
    convolved: &mut [f32],
    (a, b): (&mut [f32], &mut [f32]),
    weights: &DeltaNetWeights<impl Backend<Vector = Vec<f32>>>,
    out: &mut [f32],
) {
    ops::causal_conv1d_silu(qkv, &weights.conv, shape.conv_kernel, &mut state.conv, convolved);
    ops::delta_net_gates(a, b, &weights.a_log, &weights.dt_bias);
    ops::gated_delta_rule(shape, convolved, a, b, &mut state.recurrent, out);
}

impl SequenceState {
    /// Forgets the sequence's cache and recurrent state (its sampler's counts
    /// restart with the next round anyway).
    pub(crate) fn reset(&mut self) {
        self.cache.clear();
        self.recurrent.clear();
    }
}

impl LayerCache {
    /// Writes every KV head's key and value (`keys`, `values`: `[kv_heads,
    /// head_dim]`) at `position`.
    pub(crate) fn append(
        &mut self,
        layout: KvLayout,
        position: usize,
        keys: &[f32],
        values: &[f32],
    ) {
        let d = layout.head_dim;
        for g in 0..layout.kv_heads {
            let at = layout.offset(g, position);
            self.keys[at..at + d].copy_from_slice(&keys[g * d..(g + 1) * d]);
            self.values[at..at + d].copy_from_slice(&values[g * d..(g + 1) * d]);
        }
    }

    /// Makes room for positions `..needed`, doubling the capacity (bounded by
    /// the context window) and moving each head's history to its new place.
    pub(crate) fn reserve(
        &mut self,
        needed: usize,
        kv_heads: usize,
        head_dim: usize,
        window: usize,
    ) {
        if needed <= self.capacity {
            return;
        }
        let capacity = needed.next_power_of_two().max(64).min(window).max(needed);
        let mut keys = vec![0.0; kv_heads * capacity * head_dim];
        let mut values = vec![0.0; kv_heads * capacity * head_dim];
        let old = self.capacity * head_dim;
        for g in 0..kv_heads {
            keys[g * capacity * head_dim..][..old]
                .copy_from_slice(&self.keys[g * old..(g + 1) * old]);
            values[g * capacity * head_dim..][..old]
                .copy_from_slice(&self.values[g * old..(g + 1) * old]);
        }
        *self = LayerCache { capacity, keys, values };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::spec_for;

    /// A one-layer Mistral with a window of 6 tokens, 2 of them sinks.
    fn rolling_spec() -> ModelSpec {
        let config = mlc_loader::ChatConfig::from_json(
            r#"{"model_type": "mistral", "quantization": "q0f32", "vocab_size": 8,
                "context_window_size": -1, "sliding_window_size": 6, "attention_sink_size": 2,
                "prefill_chunk_size": 4,
                "model_config": {"hidden_size": 4, "intermediate_size": 8, "num_attention_heads": 1,
                                 "num_hidden_layers": 1, "rms_norm_eps": 1e-5}}"#,
        )
        .unwrap();
        spec_for(&config).unwrap()
    }

    #[test]
    fn a_rolling_cache_keeps_its_window_and_gathers_the_sinks_and_the_newest_tokens() {
        let spec = rolling_spec();
        let rope = spec.rope();
        let mut sequences = Sequences::default();
        // Token p's key and value are p + 1 in every element, so the gathered
        // rows tell which tokens they are.
        let row = |p: usize| [p as f32 + 1.0; 4];
        for p in 0..20 {
            let span = Span { sequence: 0, start: p, rows: 0..1 };
            let mut target = sequences.cache_for(&span, &spec, 0, &rope).unwrap();
            let held: Vec<usize> = match p <= 6 {
                true => (0..p).collect(),
                false => [0, 1].into_iter().chain(p - 4..p).collect(),
            };
            assert_eq!(target.start, held.len(), "position {p}: tokens held");
            assert_eq!(target.cache.capacity, held.len() + 1);
            for (i, &token) in held.iter().enumerate() {
                let mut key = row(token);
                rope.apply(&mut key, 4, i);
                let at = target.layout.offset(0, i);
                assert_eq!(&target.cache.keys[at..at + 4], &key, "position {p}: key {i}");
                assert_eq!(
                    &target.cache.values[at..at + 4],
                    &row(token),
                    "position {p}: value {i}"
                );
            }
            target.keep(0, &row(p), &row(p));
            assert_eq!(sequences.get(0).cache[0].capacity, 6, "the ring never grows");
        }
    }
}
