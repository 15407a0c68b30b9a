//! `DeltaNet` (Qwen3.5's ops) against the CPU references on both paths and
//! both weight formats: the `[q | gate]` split, `x · sigmoid(gate)`, the
//! causal convolution and the delta rule over two calls (their window and
//! state carried on the GPU between them, as a prefill cut into calls and the
//! decode steps after it), with GQA-style value heads, and the gated norm.

mod common;

use common::{assert_close, contexts, encode, random_vec, rng, upload};
use mlc_kernels::cpu::{self, DeltaNetShape};
use mlc_kernels::{
    Bound, DeltaNet, DeltaNetBinding, DeltaNetBuffers, DeltaNetOp, FloatFormat, GpuContext, Kernel,
    KernelError, Step,
};

/// Relative to the output's scale: the same f32 arithmetic in another order,
/// and the GPU's exp/log.
const REL: f32 = 2e-5;

fn bind(
    kernel: &DeltaNet,
    ctx: &GpuContext,
    op: DeltaNetOp,
    max_rows: u32,
    buffers: DeltaNetBuffers<'_>,
) -> Result<Bound, KernelError> {
    kernel.bind(ctx, &buffers, &DeltaNetBinding { op, max_rows })
}

fn weights(ctx: &GpuContext, values: &[f32], dtype: FloatFormat) -> (wgpu::Buffer, Vec<f32>) {
    let (bytes, seen) = encode(values, dtype);
    let mut padded = bytes;
    padded.resize(padded.len().div_ceil(4) * 4, 0);
    (ctx.storage_buffer("test weights", &padded), seen)
}

#[test]
fn the_recurrence_carries_its_window_and_state_across_calls() {
    // Two value heads per key head, columns not a multiple of the kernel's tiles; then
    // Qwen3.5's own layer (every row slot of the kernel's invocations in use).
    check_recurrence(DeltaNetShape {
        key_heads: 2,
        value_heads: 4,
        key_dim: 16,
        value_dim: 24,
        conv_kernel: 4,
    });
    check_recurrence(DeltaNetShape {
        key_heads: 16,
        value_heads: 16,
        key_dim: 128,
        value_dim: 128,
        conv_kernel: 4,
    });
}

#[test]
fn a_key_dim_above_the_kernels_is_refused() {
    let shape =
        DeltaNetShape { key_heads: 1, value_heads: 1, key_dim: 136, value_dim: 8, conv_kernel: 4 };
    for (_path, ctx) in contexts() {
        let kernel = DeltaNet::new(ctx, FloatFormat::F32).unwrap();
        let size = |n: usize| upload(ctx, &vec![0.0; n]);
        let (out, state, x, a, b) =
            (size(8), size(136 * 8), size(shape.conv_channels()), size(1), size(1));
        let (w0, w1) = (size(1), size(1));
        let refused = bind(
            &kernel,
            ctx,
            DeltaNetOp::Rule(shape),
            1,
            DeltaNetBuffers {
                out: &out,
                out2: Some(&state),
                inputs: [Some(&x), Some(&a), Some(&b)],
                weights: [Some(&w0), Some(&w1)],
            },
        );
        let message = refused.err().expect("key_dim 136 is refused").to_string();
        assert!(message.contains("key_dim 136"), "{message}");
    }
}

fn check_recurrence(shape: DeltaNetShape) {
    let (channels, heads, width) = (shape.conv_channels(), shape.value_heads, shape.value_width());
    for (path, ctx) in contexts() {
        for dtype in [FloatFormat::F16, FloatFormat::F32] {
            let kernel = DeltaNet::new(ctx, dtype).unwrap();
            let mut rng = rng(35);
            let max = 5;
            let (taps, taps_seen) =
                weights(ctx, &random_vec(&mut rng, channels * shape.conv_kernel, 0.6), dtype);
            let (a_log, a_log_seen) = weights(ctx, &random_vec(&mut rng, heads, 1.5), dtype);
            let (dt_bias, dt_seen) = weights(ctx, &random_vec(&mut rng, heads, 1.0), dtype);
            let window = upload(ctx, &vec![0.0; (shape.conv_kernel - 1) * channels]);
            let state = upload(ctx, &vec![0.0; heads * shape.key_dim * shape.value_dim]);
            let (x, a, b) = (
                upload(ctx, &vec![0.0; max * channels]),
                upload(ctx, &vec![0.0; max * heads]),
                upload(ctx, &vec![0.0; max * heads]),
            );
            let (convolved, out) =
                (upload(ctx, &vec![0.0; max * channels]), upload(ctx, &vec![0.0; max * width]));
            let mut conv = bind(
                &kernel,
                ctx,
                DeltaNetOp::ConvSilu(shape),
                max as u32,
                DeltaNetBuffers {
                    out: &convolved,
                    out2: Some(&window),
                    inputs: [Some(&x), None, None],
                    weights: [Some(&taps), None],
                },
            )
            .unwrap();
            let mut rule = bind(
                &kernel,
                ctx,
                DeltaNetOp::Rule(shape),
                max as u32,
                DeltaNetBuffers {
                    out: &out,
                    out2: Some(&state),
                    inputs: [Some(&convolved), Some(&a), Some(&b)],
                    weights: [Some(&a_log), Some(&dt_bias)],
                },
            )
            .unwrap();
            let mut cpu_state = cpu::DeltaNetState::zeros(&shape);
            // A 5-token prefill, then three 1-token steps.
            for (call, rows) in [5, 1, 1, 1].into_iter().enumerate() {
                let xs = random_vec(&mut rng, rows * channels, 2.0);
                let (a_rows, b_rows) = (
                    random_vec(&mut rng, rows * heads, 2.0),
                    random_vec(&mut rng, rows * heads, 3.0),
                );
                ctx.queue.write_buffer(&x, 0, bytemuck::cast_slice(&xs));
                ctx.queue.write_buffer(&a, 0, bytemuck::cast_slice(&a_rows));
                ctx.queue.write_buffer(&b, 0, bytemuck::cast_slice(&b_rows));
                conv.run(ctx, Step::rows(rows)).unwrap();
                rule.run(ctx, Step::rows(rows)).unwrap();

                let mut want_conv = vec![0.0; rows * channels];
                cpu::causal_conv1d_silu(
                    &xs,
                    &taps_seen,
                    shape.conv_kernel,
                    &mut cpu_state.conv,
                    &mut want_conv,
                );
                let (mut g, mut beta) = (a_rows.clone(), b_rows.clone());
                cpu::delta_net_gates(&mut g, &mut beta, &a_log_seen, &dt_seen);
                let mut want = vec![0.0; rows * width];
                cpu::gated_delta_rule(
                    &shape,
                    &want_conv,
                    &g,
                    &beta,
                    &mut cpu_state.recurrent,
                    &mut want,
                );
                let what = format!("{path} {dtype:?} call {call} ({rows} rows)");
                let got_conv = ctx.read_f32(&convolved, rows * channels).unwrap();
                assert_close(&format!("{what} conv"), &got_conv, &want_conv, REL, 0.0);
                let got = ctx.read_f32(&out, rows * width).unwrap();
                assert_close(&format!("{what} delta rule"), &got, &want, REL, 0.0);
                let got_window = ctx.read_f32(&window, cpu_state.conv.len()).unwrap();
                assert_close(&format!("{what} window"), &got_window, &cpu_state.conv, 0.0, 0.0);
                let got_state = ctx.read_f32(&state, cpu_state.recurrent.len()).unwrap();
                assert_close(&format!("{what} state"), &got_state, &cpu_state.recurrent, REL, 1e-6);
            }
        }
    }
}

#[test]
fn the_gate_split_sigmoid_gate_and_gated_norm_match_the_cpu() {
    let (heads, head_dim, rest, rows) = (3usize, 8usize, 20usize, 4usize);
    for (path, ctx) in contexts() {
        for dtype in [FloatFormat::F16, FloatFormat::F32] {
            let kernel = DeltaNet::new(ctx, dtype).unwrap();
            let mut rng = rng(36);
            let width = heads * head_dim;
            let fused = random_vec(&mut rng, rows * (2 * width + rest), 2.0);
            let (input, plain, gate) = (
                upload(ctx, &fused),
                upload(ctx, &vec![0.0; rows * (width + rest)]),
                upload(ctx, &vec![0.0; rows * width]),
            );
            let op = DeltaNetOp::SplitQueryGate {
                heads: heads as u32,
                head_dim: head_dim as u32,
                rest: rest as u32,
            };
            let buffers = DeltaNetBuffers {
                out: &plain,
                out2: Some(&gate),
                inputs: [Some(&input), None, None],
                weights: [None, None],
            };
            bind(&kernel, ctx, op, rows as u32, buffers)
                .unwrap()
                .run(ctx, Step::rows(rows))
                .unwrap();
            // Each row: head h's q is fused[h·2d .. h·2d + d], its gate the next d values.
            let (mut want_plain, mut want_gate) = (Vec::new(), Vec::new());
            for row in fused.chunks(2 * width + rest) {
                for pair in row[..2 * width].chunks(2 * head_dim) {
                    want_plain.extend_from_slice(&pair[..head_dim]);
                    want_gate.extend_from_slice(&pair[head_dim..]);
                }
                want_plain.extend_from_slice(&row[2 * width..]);
            }
            let got = ctx.read_f32(&plain, want_plain.len()).unwrap();
            assert_close(&format!("{path} split q, k, v"), &got, &want_plain, 0.0, 0.0);
            let got = ctx.read_f32(&gate, want_gate.len()).unwrap();
            assert_close(&format!("{path} split gates"), &got, &want_gate, 0.0, 0.0);

            let x = random_vec(&mut rng, rows * width, 3.0);
            let z = random_vec(&mut rng, rows * width, 4.0);
            let (x_buffer, z_buffer, out) =
                (upload(ctx, &x), upload(ctx, &z), upload(ctx, &vec![0.0; rows * width]));
            let buffers = DeltaNetBuffers {
                out: &out,
                out2: None,
                inputs: [Some(&x_buffer), Some(&z_buffer), None],
                weights: [None, None],
            };
            let op = DeltaNetOp::SigmoidGate { width: width as u32 };
            bind(&kernel, ctx, op, rows as u32, buffers)
                .unwrap()
                .run(ctx, Step::rows(rows))
                .unwrap();
            let want: Vec<f32> = x.iter().zip(&z).map(|(x, z)| x / (1.0 + (-z).exp())).collect();
            let got = ctx.read_f32(&out, want.len()).unwrap();
            assert_close(&format!("{path} sigmoid gate"), &got, &want, REL, 0.0);

            let (norm, norm_seen) = weights(ctx, &random_vec(&mut rng, head_dim, 2.0), dtype);
            let buffers = DeltaNetBuffers {
                out: &out,
                out2: None,
                inputs: [Some(&x_buffer), Some(&z_buffer), None],
                weights: [Some(&norm), None],
            };
            let op =
                DeltaNetOp::GatedNorm { width: width as u32, group: head_dim as u32, eps: 1e-6 };
            bind(&kernel, ctx, op, rows as u32, buffers)
                .unwrap()
                .run(ctx, Step::rows(rows))
                .unwrap();
            let mut want = vec![0.0; rows * width];
            cpu::gated_rms_norm(&x, &norm_seen, &z, 1e-6, &mut want);
            let got = ctx.read_f32(&out, want.len()).unwrap();
            assert_close(&format!("{path} {dtype:?} gated norm"), &got, &want, REL, 0.0);

            // A buffer the op does not read is refused, and so is a missing one.
            let buffers = DeltaNetBuffers {
                out: &out,
                out2: Some(&gate),
                inputs: [Some(&x_buffer), Some(&z_buffer), None],
                weights: [Some(&norm), None],
            };
            let error = bind(&kernel, ctx, op, rows as u32, buffers).err().unwrap();
            assert!(error.to_string().contains("not read"), "{error}");
            let buffers = DeltaNetBuffers {
                out: &out,
                out2: None,
                inputs: [Some(&x_buffer), None, None],
                weights: [Some(&norm), None],
            };
            let error = bind(&kernel, ctx, op, rows as u32, buffers).err().unwrap();
            assert!(error.to_string().contains("missing"), "{error}");
        }
    }
}
