//! The fast CPU engine: what `--device cpu` and the browser without WebGPU
//! run. q4 weights are repacked at load into the blocks the SIMD kernels
//! stream, activations are quantized to int16 per 32 values before each
//! product, and the products and attention run on rayon's pool natively (one
//! thread in the browser build). The math is [`mlc_kernels::cpu_fast`].
//!
//! It is checked against the float32 engine ([`crate::cpu`], the oracle) by
//! the conformance suite, with the GPU engine's tolerance. Unquantized
//! weights (q0f16, q0f32) go through the oracle's threaded float product.
//!
//! A decode step allocates nothing: activations come from a pool that their
//! tensors return to when dropped, and the quantized rows, the product's
//! scratch, the RoPE table and the query/key rows are scratch buffers of the
//! backend, sized by the first step.

use std::cell::RefCell;
use std::rc::Rc;

use mlc_kernels::cpu::{self as ops, DeltaNetShape, Q4Matrix, Rope, Weight, rotate_heads};
use mlc_kernels::cpu_fast::{self as fast, Q4Packed, Q8Block, Q16Block};
use mlc_loader::{DType, Tensor};

use crate::EngineError;
use crate::backend::{Backend, DeltaNetWeights, LinearSource, MatrixSource, PassInput, Placement};
use crate::cpu::{self, MAX_SEQUENCES, Sequences};
use crate::models::{Activation, ModelSpec};
use crate::sampling::{Drawn, SamplingStep};

/// Activation buffers that dropped tensors gave back.
type Pool = Rc<RefCell<Vec<Vec<f32>>>>;

/// Activations `[rows, cols]` in host memory, whose buffer goes back to the
/// backend's pool when dropped.
#[derive(Debug)]
pub struct FastTensor {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
    pool: Pool,
}

impl Drop for FastTensor {
    fn drop(&mut self) {
        self.pool.borrow_mut().push(std::mem::take(&mut self.data));
    }
}

/// A weight matrix in the form the fast kernels read.
#[derive(Debug)]
enum Matrix {
    Q4(Q4Packed),
    Dense { rows: usize, cols: usize, values: Vec<f32> },
}

/// A linear layer (or embedding table) of the fast CPU engine.
#[derive(Debug)]
pub struct FastLinear {
    matrix: Matrix,
    bias: Option<Vec<f32>>,
}

impl FastLinear {
    fn rows(&self) -> usize {
        match &self.matrix {
            Matrix::Q4(packed) => packed.rows,
            Matrix::Dense { rows, .. } => *rows,
        }
    }

    fn cols(&self) -> usize {
        match &self.matrix {
            Matrix::Q4(packed) => packed.cols,
            Matrix::Dense { cols, .. } => *cols,
        }
    }
}

/// Rows a product needs to take int8 activations when asked for them: a
/// prefill's, never a decode step's (one row). A batched step of as many
/// rows takes them too, and its rows then differ from each sequence's own
/// decode step by rounding.
const INT8_MIN_TOKENS: usize = 4;

/// The fast CPU backend.
pub struct FastCpuBackend {
    pool: Pool,
    rope: Option<Rope>,
    /// Each sequence's KV cache, recurrent state and sampler.
    sequences: Sequences,
    /// Quantized activation rows of the current product.
    quantized: Vec<Q16Block>,
    /// The same in int8, for a prefill's products where `int8_prefill`.
    quantized8: Vec<Q8Block>,
    /// Whether products of at least [`INT8_MIN_TOKENS`] rows quantize to
    /// int8 (`MLC_WGPU_CPU_INT8=1`): faster on AVX-512 VNNI, but outside the
    /// accuracy bound on the conformance fixtures (docs/performance.md,
    /// "int8 prefill"), so off unless asked for.
    int8_prefill: bool,
    /// A multi-row product's transposed result and laid-out activations.
    product_scratch: fast::MatmulScratch,
    /// `(cos, sin)` of every rotated element at the position of each row of
    /// the pass (`rope_positions`): every layer rotates at the same positions.
    rope_table: Vec<(f32, f32)>,
    rope_positions: Vec<usize>,
    /// One token's key row and a copy of a row being normalised.
    key: Vec<f32>,
    unnormed: Vec<f32>,
}

impl FastCpuBackend {
    /// A backend with an empty KV cache.
    pub fn new() -> FastCpuBackend {
        FastCpuBackend {
            pool: Pool::default(),
            rope: None,
            sequences: Sequences::default(),
            quantized: Vec::new(),
            quantized8: Vec::new(),
            int8_prefill: std::env::var("MLC_WGPU_CPU_INT8")
                .is_ok_and(|v| v != "0" && !v.is_empty()),
            product_scratch: fast::MatmulScratch::default(),
            rope_table: Vec::new(),
            rope_positions: Vec::new(),
            key: Vec::new(),
            unnormed: Vec::new(),
        }
    }

    /// A zeroed `[rows, cols]` tensor, its buffer taken from the pool when
    /// one is large enough (the smallest such).
    fn tensor(&self, rows: usize, cols: usize) -> FastTensor {
        let mut out = self.tensor_to_overwrite(rows, cols);
        out.data.fill(0.0);
        out
    }

    /// [`Self::tensor`] for an operation that writes every value: the buffer
    /// keeps whatever it held. Zeroing a prefill's outputs first (some 5 MB
    /// a layer on the Qwen2.5-0.5B shape) ran on the calling thread while
    /// the pool waited (docs/performance.md, "Row-wise work on the pool").
    fn tensor_to_overwrite(&self, rows: usize, cols: usize) -> FastTensor {
        let len = rows * cols;
        let mut pool = self.pool.borrow_mut();
        let fit = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity());
        let mut data = match fit {
            Some(i) => pool.swap_remove(i),
            None => Vec::with_capacity(len),
        };
        data.truncate(len);
        data.resize(len, 0.0);
        FastTensor { rows, cols, data, pool: self.pool.clone() }
    }

    /// Fills the RoPE table for the positions of the pass's `rows`, unless it
    /// already holds them.
    fn rope_table(&mut self, spec: &ModelSpec, place: Placement<'_>, rows: usize) {
        let rope = self.rope.get_or_insert_with(|| spec.rope());
        let positions = (0..rows).map(|row| place.rotation(row, spec.rolling_window));
        if !self.rope_table.is_empty() && self.rope_positions.iter().copied().eq(positions.clone())
        {
            return;
        }
        self.rope_table.clear();
        self.rope_positions.clear();
        for position in positions {
            self.rope_table.extend(rope.cos_sin(position));
            self.rope_positions.push(position);
        }
    }
}

impl Default for FastCpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// `residual += y` (`y` as many values), groups of rows on rayon's pool.
fn add_rows(residual: &mut FastTensor, y: &[f32]) {
    let width = residual.cols;
    fast::for_each_row_group(&mut residual.data, width, |first, rows| {
        ops::add_in_place(rows, &y[first * width..][..rows.len()]);
    });
}

/// RMSNorm of each `weight.len()`-wide piece of `x` in place, through `copy`.
fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32, copy: &mut Vec<f32>) {
    copy.clear();
    copy.extend_from_slice(x);
    ops::rms_norm(copy, weight, eps, x);
}

impl Backend for FastCpuBackend {
    type Tensor = FastTensor;
    type Linear = FastLinear;
    type Vector = Vec<f32>;
    type Pending = Option<Drawn>;

    fn max_sequences(&self) -> usize {
        MAX_SEQUENCES
    }

    fn select_sequence(&mut self, sequence: usize) -> Result<(), EngineError> {
        self.sequences.select(sequence)
    }

    fn load_linear(&mut self, source: &LinearSource<'_>) -> Result<FastLinear, EngineError> {
        let (rows, cols) = (source.rows, source.cols);
        let matrix = match &source.matrix {
            MatrixSource::Q4 { q_weight, q_scale } => {
                let (q_weight, scales) = (q_weight.to_u32_vec()?, q_scale.to_f32_vec()?);
                Matrix::Q4(Q4Packed::from_mlc(&Q4Matrix {
                    rows,
                    cols,
                    q_weight: &q_weight,
                    scales: &scales,
                }))
            }
            MatrixSource::Dense(values) => {
                Matrix::Dense { rows, cols, values: values.to_f32_vec()? }
            }
        };
        let bias = source.bias.as_ref().map(|b| b.to_f32_vec()).transpose()?;
        Ok(FastLinear { matrix, bias })
    }

    fn load_vector(&mut self, source: &Tensor<'_>) -> Result<Vec<f32>, EngineError> {
        debug_assert!(source.dtype != DType::U32);
        Ok(source.to_f32_vec()?)
    }

    fn embed(
        &mut self,
        table: &FastLinear,
        input: PassInput<'_>,
        scale: f32,
    ) -> Result<FastTensor, EngineError> {
        let hidden = table.cols();
        let mut out = self.tensor(input.len(), hidden);
        for (row, values) in out.data.chunks_mut(hidden).enumerate() {
            // A row without a token stays zero (`Sequences::token`).
            let Some(token) = self.sequences.token(input, row) else { continue };
            let token = token as usize;
            if token >= table.rows() {
                return Err(EngineError::TokenOutOfRange {
                    token: token as u32,
                    vocab_size: table.rows(),
                });
            }
            match &table.matrix {
                Matrix::Q4(packed) => packed.dequantize_row(token, values),
                Matrix::Dense { values: table, .. } => {
                    values.copy_from_slice(&table[token * hidden..(token + 1) * hidden])
                }
            }
            if scale != 1.0 {
                values.iter_mut().for_each(|v| *v *= scale);
            }
        }
        Ok(out)
    }

    fn rms_norm(
        &mut self,
        x: &FastTensor,
        weight: &Vec<f32>,
        eps: f32,
    ) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor_to_overwrite(x.rows, x.cols);
        let (input, width) = (&x.data[..], weight.len());
        fast::for_each_row_group(&mut out.data, width, |first, rows| {
            ops::rms_norm(&input[first * width..][..rows.len()], weight, eps, rows);
        });
        Ok(out)
    }

    fn layer_norm(
        &mut self,
        x: &FastTensor,
        weight: &Vec<f32>,
        bias: &Vec<f32>,
        eps: f32,
    ) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor(x.rows, x.cols);
        ops::layer_norm(&x.data, weight, bias, eps, &mut out.data);
        Ok(out)
    }

    fn linear(&mut self, x: &FastTensor, linear: &FastLinear) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor_to_overwrite(x.rows, linear.rows());
        match &linear.matrix {
            Matrix::Q4(packed) if self.int8_prefill && x.rows >= INT8_MIN_TOKENS => {
                let blocks = packed.blocks_per_row();
                self.quantized8.resize(x.rows * blocks, Q8Block::default());
                fast::quantize_rows(&x.data, x.cols, &mut self.quantized8);
                let out = &mut out.data;
                fast::matmul_q4_q8(
                    &self.quantized8,
                    x.rows,
                    packed,
                    out,
                    &mut self.product_scratch,
                );
            }
            Matrix::Q4(packed) => {
                let blocks = packed.blocks_per_row();
                self.quantized.resize(x.rows * blocks, Q16Block::default());
                fast::quantize_rows(&x.data, x.cols, &mut self.quantized);
                fast::matmul_q4_q16(
                    &self.quantized,
                    x.rows,
                    packed,
                    &mut out.data,
                    &mut self.product_scratch,
                );
            }
            Matrix::Dense { rows, cols, values } => {
                let weight = Weight::Dense { rows: *rows, cols: *cols, values };
                ops::matmul(&x.data, x.rows, &weight, &mut out.data);
            }
        }
        if let Some(bias) = &linear.bias {
            fast::for_each_row_group(&mut out.data, bias.len(), |_, rows| {
                rows.chunks_mut(bias.len()).for_each(|row| ops::add_in_place(row, bias));
            });
        }
        Ok(out)
    }

    fn linear_add(
        &mut self,
        x: &FastTensor,
        linear: &FastLinear,
        residual: &mut FastTensor,
    ) -> Result<(), EngineError> {
        let y = self.linear(x, linear)?;
        add_rows(residual, &y.data);
        Ok(())
    }

    fn add(&mut self, residual: &mut FastTensor, x: &FastTensor) -> Result<(), EngineError> {
        add_rows(residual, &x.data);
        Ok(())
    }

    fn softcap(&mut self, x: &FastTensor, cap: f32) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor(x.rows, x.cols);
        ops::softcap(&x.data, cap, &mut out.data);
        Ok(out)
    }

    fn gated(
        &mut self,
        gate_up: &FastTensor,
        activation: Activation,
    ) -> Result<FastTensor, EngineError> {
        let intermediate = gate_up.cols / 2;
        let mut out = self.tensor_to_overwrite(gate_up.rows, intermediate);
        let input = &gate_up.data[..];
        fast::for_each_row_group(&mut out.data, intermediate, |first, rows| {
            let input = &input[2 * first * intermediate..][..2 * rows.len()];
            match activation {
                Activation::Silu => ops::silu_mul(input, intermediate, rows),
                Activation::GeluTanh => ops::gelu_tanh_mul(input, intermediate, rows),
                Activation::Gelu => ops::gelu_erf_mul(input, intermediate, rows),
            }
        });
        Ok(out)
    }

    fn activation(
        &mut self,
        x: &FastTensor,
        activation: Activation,
    ) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor(x.rows, x.cols);
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
        qkv: &FastTensor,
        qk_norm: Option<&(Vec<f32>, Vec<f32>)>,
        place: Placement<'_>,
    ) -> Result<FastTensor, EngineError> {
        let (heads, kv_heads, d) = (spec.num_heads, spec.num_kv_heads, spec.head_dim);
        let (tokens, width) = (qkv.rows, heads * d);
        self.rope_table(spec, place, tokens);
        let mut q = self.tensor(tokens, width);
        let mut out = self.tensor(tokens, width);
        // [`Rope::apply`] with the table computed once per pass.
        let dims = self.rope_table.len() / tokens.max(1);
        let rope = self.rope.as_ref().expect("made by rope_table");
        for span in self.sequences.spans(place, tokens) {
            let mut target = self.sequences.cache_for(&span, spec, layer, rope)?;
            for (i, t) in span.rows.clone().enumerate() {
                let row = &qkv.data[t * qkv.cols..(t + 1) * qkv.cols];
                let (q_part, kv_part) = row.split_at(width);
                let (k_part, v_part) = kv_part.split_at(kv_heads * d);
                let q_row = &mut q.data[t * width..(t + 1) * width];
                q_row.copy_from_slice(q_part);
                self.key.clear();
                self.key.extend_from_slice(k_part);
                if let Some((q_norm, k_norm)) = qk_norm {
                    rms_norm_in_place(q_row, q_norm, spec.rms_norm_eps, &mut self.unnormed);
                    rms_norm_in_place(&mut self.key, k_norm, spec.rms_norm_eps, &mut self.unnormed);
                }
                target.keep(i, &self.key, v_part);
                let table = &self.rope_table[t * dims..(t + 1) * dims];
                rotate_heads(q_row, d, table);
                rotate_heads(&mut self.key, d, table);
                target.cache.append(target.layout, target.start + i, &self.key, v_part);
            }
            let rows = span.rows.start * width..span.rows.end * width;
            fast::attention(
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

    fn row(&mut self, x: &FastTensor, index: usize) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor(1, x.cols);
        out.data.copy_from_slice(&x.data[index * x.cols..(index + 1) * x.cols]);
        Ok(out)
    }

    fn to_host(&mut self, x: &FastTensor) -> Result<Vec<f32>, EngineError> {
        Ok(x.data.clone())
    }

    fn queue_argmax(&mut self, logits: &FastTensor) -> Result<Option<Drawn>, EngineError> {
        Ok(self.sequences.selected().sampler.argmax(&logits.data))
    }

    fn queue_sample(
        &mut self,
        logits: &FastTensor,
        step: &SamplingStep<'_>,
    ) -> Result<Option<Drawn>, EngineError> {
        Ok(self.sequences.selected().sampler.sample(&logits.data, step))
    }

    async fn take_token(&mut self, pending: Option<Drawn>) -> Result<Option<Drawn>, EngineError> {
        Ok(pending)
    }

    fn split_query_gate(
        &mut self,
        spec: &ModelSpec,
        qkv: &FastTensor,
    ) -> Result<(FastTensor, FastTensor), EngineError> {
        let width = spec.num_heads * spec.head_dim;
        let mut plain = self.tensor(qkv.rows, qkv.cols - width);
        let mut gate = self.tensor(qkv.rows, width);
        cpu::split_query_gate(spec, &qkv.data, &mut plain.data, &mut gate.data);
        Ok((plain, gate))
    }

    fn sigmoid_gate(
        &mut self,
        x: &FastTensor,
        gate: &FastTensor,
    ) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor(x.rows, x.cols);
        cpu::sigmoid_gate(&x.data, &gate.data, &mut out.data);
        Ok(out)
    }

    fn delta_net(
        &mut self,
        shape: &DeltaNetShape,
        layer: usize,
        qkv: &FastTensor,
        a: &FastTensor,
        b: &FastTensor,
        weights: &DeltaNetWeights<Self>,
    ) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor(qkv.rows, shape.value_width());
        let mut convolved = self.tensor(qkv.rows, qkv.cols);
        let (mut g, mut beta) = (self.tensor(a.rows, a.cols), self.tensor(b.rows, b.cols));
        g.data.copy_from_slice(&a.data);
        beta.data.copy_from_slice(&b.data);
        let state = self.sequences.selected().recurrent.layer(layer, shape);
        let gates = (&mut g.data[..], &mut beta.data[..]);
        cpu::delta_net(shape, state, &qkv.data, &mut convolved.data, gates, weights, &mut out.data);
        Ok(out)
    }

    fn gated_rms_norm(
        &mut self,
        _shape: &DeltaNetShape,
        x: &FastTensor,
        weight: &Vec<f32>,
        z: &FastTensor,
        eps: f32,
    ) -> Result<FastTensor, EngineError> {
        let mut out = self.tensor(x.rows, x.cols);
        ops::gated_rms_norm(&x.data, weight, &z.data, eps, &mut out.data);
        Ok(out)
    }

    fn reset_cache(&mut self) {
        self.sequences.selected().reset();
    }
}
