//! Reads a decoder's parameters out of an artifact, checks every shape
//! against the model spec, and hands them to a backend to keep.

use mlc_loader::{Artifact, DType, Tensor};

use crate::EngineError;
use crate::backend::{
    Backend, DecoderWeights, DeltaNetWeights, LayerWeights, LinearSource, MatrixSource,
};
use crate::models::{ModelSpec, NormPlacement, QkNormWidth};

/// Loads every parameter the spec names, checking shapes and dtypes.
pub fn load<B: Backend>(
    spec: &ModelSpec,
    artifact: &Artifact,
    backend: &mut B,
) -> Result<DecoderWeights<B>, EngineError> {
    let names = &spec.names;
    let (h, i, d) = (spec.hidden_size, spec.intermediate_size, spec.head_dim);
    let linear = |backend: &mut B,
                  name: String,
                  rows: usize,
                  cols: usize,
                  bias: Bias|
     -> Result<B::Linear, EngineError> {
        backend.load_linear(&linear_source(artifact, name, rows, cols, bias)?)
    };
    // Phi and GPT-NeoX put a bias on every layer projection; elsewhere
    // o_proj's is optional (Qwen3's `attention_bias`) and the rest have none.
    let (o_bias, dense_bias) = match spec.dense_bias {
        true => (Bias::Required, Bias::Required),
        false => (Bias::IfPresent, Bias::None),
    };
    let head_bias = if spec.lm_head_bias { Bias::Required } else { Bias::None };
    let embed = linear(backend, names.embed.clone(), spec.vocab_size, h, Bias::None)?;
    let lm_head = match spec.tie_word_embeddings {
        true => None,
        false => Some(linear(backend, names.lm_head.clone(), spec.vocab_size, h, head_bias)?),
    };
    if !spec.gated_mlp && !i.is_multiple_of(32) {
        // The gated MLP's zero-padding (`pad_intermediate`) has no bias to pad.
        return Err(EngineError::Config(format!(
            "a non-gated MLP needs intermediate_size a multiple of 32, got {i}"
        )));
    }
    let mut layers_linear = Vec::with_capacity(spec.num_layers);
    for l in 0..spec.num_layers {
        let qkv_bias = if spec.qkv_bias { Bias::Required } else { Bias::IfPresent };
        let (gate_up, padded_i) = match spec.gated_mlp {
            true => pad_intermediate(
                linear_source(artifact, names.layer(l, &names.gate_up), 2 * i, h, Bias::None)?,
                spec,
            ),
            false => (
                Prepared::Stored(linear_source(
                    artifact,
                    names.layer(l, &names.gate_up),
                    i,
                    h,
                    dense_bias,
                )?),
                i,
            ),
        };
        if let Some(shape) = spec.linear_layer(l) {
            // A Gated DeltaNet layer: `in_proj_qkv` and `out_proj` take the
            // places of the attention's projections (`LayerWeights::delta_net`).
            let name = |param: &str| names.layer(l, &format!("{}.{param}", names.linear_attn));
            let (channels, width) = (shape.conv_channels(), shape.value_width());
            layers_linear.push((
                linear(backend, name("in_proj_qkv"), channels, h, Bias::None)?,
                linear(backend, name("out_proj"), h, width, Bias::None)?,
                gate_up.load(backend)?,
                linear(backend, names.layer(l, &names.down), h, padded_i, dense_bias)?,
            ));
            continue;
        }
        let qkv = match &names.separate_qkv {
            None => linear(backend, names.layer(l, &names.qkv), spec.qkv_width(), h, qkv_bias)?,
            Some(parts) => {
                let widths = [spec.num_heads, spec.num_kv_heads, spec.num_kv_heads].map(|n| n * d);
                let mut sources = Vec::with_capacity(3);
                for (part, rows) in parts.iter().zip(widths) {
                    sources.push(linear_source(
                        artifact,
                        names.layer(l, part),
                        rows,
                        h,
                        Bias::None,
                    )?);
                }
                stack_rows(names.layer(l, &names.qkv), &sources)?.load(backend)?
            }
        };
        layers_linear.push((
            qkv,
            linear(backend, names.layer(l, &names.o_proj), h, spec.num_heads * d, o_bias)?,
            gate_up.load(backend)?,
            linear(backend, names.layer(l, &names.down), h, padded_i, dense_bias)?,
        ));
    }
    // The Gated DeltaNet layers' other parameters.
    let mut delta_nets = Vec::with_capacity(spec.num_layers);
    for l in 0..spec.num_layers {
        let Some(shape) = spec.linear_layer(l) else {
            delta_nets.push(None);
            continue;
        };
        let prefix = names.layer(l, &names.linear_attn);
        let (width, heads) = (shape.value_width(), shape.value_heads);
        let z = linear(backend, format!("{prefix}.in_proj_z"), width, h, Bias::None)?;
        let a = linear(backend, format!("{prefix}.in_proj_a"), heads, h, Bias::None)?;
        let b = linear(backend, format!("{prefix}.in_proj_b"), heads, h, Bias::None)?;
        let mut read = |param: &str, shape: &[usize]| -> Result<B::Vector, EngineError> {
            backend.load_vector(&tensor_with_shape(artifact, &format!("{prefix}.{param}"), shape)?)
        };
        delta_nets.push(Some(DeltaNetWeights {
            z,
            a,
            b,
            conv: read("conv1d_weight", &[shape.conv_channels(), 1, shape.conv_kernel])?,
            a_log: read("A_log", &[heads])?,
            dt_bias: read("dt_bias", &[heads])?,
            norm: read("norm.weight", &[shape.value_dim])?,
        }));
    }
    // `suffix` is `weight`, or `bias` for a LayerNorm's bias (StableLM).
    let mut vector = |name: String, suffix: &str, len: usize| -> Result<B::Vector, EngineError> {
        let tensor = tensor_with_shape(artifact, &format!("{name}.{suffix}"), &[len])?;
        backend.load_vector(&tensor)
    };
    let mut layers = Vec::with_capacity(spec.num_layers);
    let pieces = layers_linear.into_iter().zip(delta_nets);
    for (l, ((qkv, o_proj, gate_up, down), delta_net)) in pieces.enumerate() {
        let qk_norm = match spec.qk_norm {
            Some(_) if delta_net.is_some() => None,
            Some(width) => {
                let [q, k] = match width {
                    QkNormWidth::Head => [d, d],
                    QkNormWidth::AllHeads => [spec.num_heads * d, spec.num_kv_heads * d],
                };
                Some((
                    vector(names.layer(l, &names.q_norm), "weight", q)?,
                    vector(names.layer(l, &names.k_norm), "weight", k)?,
                ))
            }
            None => None,
        };
        let post_norms = match spec.norms.after() {
            true => Some((
                vector(names.layer(l, &names.post_attn_norm), "weight", h)?,
                vector(names.layer(l, &names.post_mlp_norm), "weight", h)?,
            )),
            false => None,
        };
        // Phi's parallel block has one norm, before attention, and its MLP
        // reads it; GPT-NeoX's names a second one for the MLP.
        let mlp_normed = spec.norms.before()
            && (spec.norms != NormPlacement::Parallel || !names.mlp_norm.is_empty());
        let mut norm = |name: &String, present: bool, suffix: &str| match present {
            true => vector(names.layer(l, name), suffix, h).map(Some),
            false => Ok(None),
        };
        let attn_norm = norm(&names.attn_norm, spec.norms.before(), "weight")?;
        let mlp_norm = norm(&names.mlp_norm, mlp_normed, "weight")?;
        let attn_norm_bias =
            norm(&names.attn_norm, spec.norms.before() && spec.layer_norm, "bias")?;
        let mlp_norm_bias = norm(&names.mlp_norm, mlp_normed && spec.layer_norm, "bias")?;
        layers.push(LayerWeights {
            attn_norm,
            qkv,
            qk_norm,
            o_proj,
            mlp_norm,
            post_norms,
            gate_up,
            down,
            attn_norm_bias,
            mlp_norm_bias,
            delta_net,
        });
    }
    let final_norm = vector(names.final_norm.clone(), "weight", h)?;
    let final_norm_bias = match spec.layer_norm {
        true => Some(vector(names.final_norm.clone(), "bias", h)?),
        false => None,
    };
    Ok(DecoderWeights { embed, layers, final_norm, final_norm_bias, lm_head })
}

/// A projection ready to load: as stored, or with its rows rearranged.
enum Prepared<'a> {
    Stored(LinearSource<'a>),
    Rearranged(OwnedLinear<'a>),
}

/// A matrix whose rows were rearranged on load; it owns its bytes and shapes.
struct OwnedLinear<'a> {
    name: String,
    cols: usize,
    matrix: OwnedMatrix<'a>,
}

/// The stored forms of [`MatrixSource`], owned.
enum OwnedMatrix<'a> {
    Q4 { q_weight: OwnedTensor<'a>, q_scale: OwnedTensor<'a> },
    Dense(OwnedTensor<'a>),
}

/// A 2-D tensor of the artifact with rows added or stacked on load: its own bytes.
struct OwnedTensor<'a> {
    name: &'a str,
    dtype: DType,
    shape: [usize; 2],
    bytes: Vec<u8>,
}

impl OwnedTensor<'_> {
    /// A borrowed view, as the backends load tensors.
    fn tensor(&self) -> Tensor<'_> {
        Tensor {
            name: self.name,
            shape: &self.shape[..],
            dtype: self.dtype,
            bytes: self.bytes.as_slice().into(),
        }
    }
}

impl Prepared<'_> {
    fn load<B: Backend>(self, backend: &mut B) -> Result<B::Linear, EngineError> {
        let OwnedLinear { name, cols, matrix } = match self {
            Prepared::Stored(source) => return backend.load_linear(&source),
            Prepared::Rearranged(owned) => owned,
        };
        let (rows, matrix) = match &matrix {
            OwnedMatrix::Q4 { q_weight, q_scale } => (
                q_weight.shape[0],
                MatrixSource::Q4 { q_weight: q_weight.tensor(), q_scale: q_scale.tensor() },
            ),
            OwnedMatrix::Dense(dense) => (dense.shape[0], MatrixSource::Dense(dense.tensor())),
        };
        backend.load_linear(&LinearSource { name, rows, cols, matrix, bias: None })
    }
}

/// One projection from several stored apart (Gemma 3's q, k and v): their
/// rows stacked in order, so `x · [A; B; C]ᵀ = [x·Aᵀ, x·Bᵀ, x·Cᵀ]` exactly (a
/// q4 row's groups and scale stay with it).
fn stack_rows<'a>(name: String, sources: &[LinearSource<'a>]) -> Result<Prepared<'a>, EngineError> {
    let first = &sources[0];
    let stack = |parts: &[&Tensor<'a>]| -> Result<OwnedTensor<'a>, EngineError> {
        let (dtype, cols) = (parts[0].dtype, parts[0].shape[1]);
        if let Some(odd) = parts.iter().find(|t| t.dtype != dtype || t.shape[1] != cols) {
            return Err(EngineError::WeightShape {
                name: odd.name.to_string(),
                expected: vec![odd.shape[0], cols],
                actual: odd.shape.to_vec(),
            });
        }
        Ok(OwnedTensor {
            name: parts[0].name,
            dtype,
            shape: [parts.iter().map(|t| t.shape[0]).sum(), cols],
            bytes: parts.iter().flat_map(|t| t.bytes.iter().copied()).collect(),
        })
    };
    let mixed = || EngineError::Config(format!("{name}: q, k and v are stored in different forms"));
    let matrix = match &first.matrix {
        MatrixSource::Q4 { .. } => {
            let mut codes = Vec::new();
            let mut scales = Vec::new();
            for source in sources {
                let MatrixSource::Q4 { q_weight, q_scale } = &source.matrix else {
                    return Err(mixed());
                };
                codes.push(q_weight);
                scales.push(q_scale);
            }
            OwnedMatrix::Q4 { q_weight: stack(&codes)?, q_scale: stack(&scales)? }
        }
        MatrixSource::Dense(_) => {
            let mut dense = Vec::new();
            for source in sources {
                let MatrixSource::Dense(matrix) = &source.matrix else {
                    return Err(mixed());
                };
                dense.push(matrix);
            }
            OwnedMatrix::Dense(stack(&dense)?)
        }
    };
    Ok(Prepared::Rearranged(OwnedLinear { name, cols: first.cols, matrix }))
}

/// Widens an MLP whose intermediate size is not a multiple of 32.
///
/// MLC stores `down_proj` with K padded to whole groups of 32 (tail codes 0),
/// and GPU kernels need whole groups. Adding zero rows (scale 0) to each half of
/// `gate_up` makes the activation exactly 0 there (`silu(0) · 0`), so the padded
/// tail of `down_proj` multiplies zeros: the result is exactly the unpadded one
/// on every backend. Returns the projection and the (padded) intermediate size.
fn pad_intermediate<'a>(source: LinearSource<'a>, spec: &ModelSpec) -> (Prepared<'a>, usize) {
    let (intermediate, padded) = (spec.intermediate_size, spec.padded_intermediate());
    let MatrixSource::Q4 { q_weight, q_scale } = &source.matrix else {
        return (Prepared::Stored(source), intermediate);
    };
    if padded == intermediate {
        return (Prepared::Stored(source), intermediate);
    }
    let matrix = OwnedMatrix::Q4 {
        q_weight: widen(q_weight, intermediate, padded),
        q_scale: widen(q_scale, intermediate, padded),
    };
    (
        Prepared::Rearranged(OwnedLinear { name: source.name.clone(), cols: source.cols, matrix }),
        padded,
    )
}

/// `[gate; up]` rows of `tensor` as `[gate; 0; up; 0]`, each half `padded` rows.
fn widen<'a>(tensor: &Tensor<'a>, intermediate: usize, padded: usize) -> OwnedTensor<'a> {
    let row = tensor.bytes.len() / (2 * intermediate);
    let mut out = vec![0u8; 2 * padded * row];
    out[..intermediate * row].copy_from_slice(&tensor.bytes[..intermediate * row]);
    out[padded * row..(padded + intermediate) * row]
        .copy_from_slice(&tensor.bytes[intermediate * row..]);
    OwnedTensor {
        name: tensor.name,
        dtype: tensor.dtype,
        shape: [2 * padded, tensor.shape[1]],
        bytes: out,
    }
}

/// Whether a linear layer's bias must, may or must not be read.
#[derive(Clone, Copy)]
enum Bias {
    None,
    IfPresent,
    Required,
}

fn linear_source<'a>(
    artifact: &'a Artifact,
    name: String,
    rows: usize,
    cols: usize,
    bias: Bias,
) -> Result<LinearSource<'a>, EngineError> {
    let q_weight_name = format!("{name}.q_weight");
    let matrix =
        if artifact.has_tensor(&q_weight_name) {
            let groups = cols.div_ceil(32);
            let q_weight = tensor_with_shape(artifact, &q_weight_name, &[rows, groups * 4])?;
            expect_dtype(&q_weight, &[DType::U32])?;
            let q_scale = tensor_with_shape(artifact, &format!("{name}.q_scale"), &[rows, groups])?;
            // The quantization fixes the scales' dtype (f16 for q4f16_1, f32 for
            // q4f32_1): an index declaring another one is corrupt, and decoding it
            // as declared would give wrong numbers, not an error.
            expect_dtype(&q_scale, &[artifact.quantization().model_dtype()])?;
            MatrixSource::Q4 { q_weight, q_scale }
        } else {
            let dense = tensor_with_shape(artifact, &format!("{name}.weight"), &[rows, cols])
                .map_err(|e| match e {
                    EngineError::Load(mlc_loader::LoadError::MissingTensor { .. }) => {
                        EngineError::MissingWeight {
                            name: name.clone(),
                            tried: format!("{name}.q_weight, {name}.weight"),
                        }
                    }
                    other => other,
                })?;
            expect_dtype(&dense, &[DType::F16, DType::F32, DType::BF16])?;
            MatrixSource::Dense(dense)
        };
    let bias_name = format!("{name}.bias");
    let bias = match bias {
        Bias::Required => Some(tensor_with_shape(artifact, &bias_name, &[rows])?),
        Bias::IfPresent if artifact.has_tensor(&bias_name) => {
            Some(tensor_with_shape(artifact, &bias_name, &[rows])?)
        }
        _ => None,
    };
    Ok(LinearSource { name, rows, cols, matrix, bias })
}

pub(crate) fn tensor_with_shape<'a>(
    artifact: &'a Artifact,
    name: &str,
    shape: &[usize],
) -> Result<Tensor<'a>, EngineError> {
    let tensor = artifact.tensor(name)?;
    if tensor.shape != shape {
        return Err(EngineError::WeightShape {
            name: name.to_string(),
            expected: shape.to_vec(),
            actual: tensor.shape.to_vec(),
        });
    }
    Ok(tensor)
}

pub(crate) fn expect_dtype(tensor: &Tensor<'_>, allowed: &[DType]) -> Result<(), EngineError> {
    if allowed.contains(&tensor.dtype) {
        return Ok(());
    }
    let allowed: Vec<&str> = allowed.iter().map(|d| d.name()).collect();
    Err(EngineError::WeightDType {
        name: tensor.name.to_string(),
        dtype: tensor.dtype.name().to_string(),
        allowed: allowed.join(", "),
    })
}

/// Decodes rows of a stored weight matrix (all rows when `rows` is `None`) to
/// f32, `[rows, cols]` row-major. A q4 matrix spans whole groups of 32 unless
/// `cols` gives its true width (the stored tail group is padding).
pub fn dequantize_rows(
    artifact: &Artifact,
    name: &str,
    rows: Option<&[usize]>,
    cols: Option<usize>,
) -> Result<Vec<f32>, EngineError> {
    use mlc_kernels::cpu::{Q4Matrix, Weight};
    let q_weight_name = format!("{name}.q_weight");
    let (q_weight, scales, dense, shape);
    let weight = if artifact.has_tensor(&q_weight_name) {
        let packed = artifact.tensor(&q_weight_name)?;
        let whole_groups = packed.shape.get(1).copied().unwrap_or(0) * 8;
        shape = [
            packed.shape[0],
            cols.filter(|&c| c <= whole_groups && c + 32 > whole_groups).unwrap_or(whole_groups),
        ];
        q_weight = packed.to_u32_vec()?;
        scales = artifact.tensor(&format!("{name}.q_scale"))?.to_f32_vec()?;
        let groups = shape[1].div_ceil(32);
        if q_weight.len() != shape[0] * groups * 4 || scales.len() != shape[0] * groups {
            return Err(EngineError::WeightShape {
                name: format!("{name}.q_scale"),
                expected: vec![shape[0], groups],
                actual: vec![scales.len()],
            });
        }
        Weight::Q4(Q4Matrix {
            rows: shape[0],
            cols: shape[1],
            q_weight: &q_weight,
            scales: &scales,
        })
    } else {
        let tensor = artifact.tensor(&format!("{name}.weight"))?;
        shape = [tensor.shape[0], tensor.shape.get(1).copied().unwrap_or(0)];
        dense = tensor.to_f32_vec()?;
        Weight::Dense { rows: shape[0], cols: shape[1], values: &dense }
    };
    let all: Vec<usize> = (0..shape[0]).collect();
    let rows = rows.unwrap_or(&all);
    let mut out = vec![0.0; rows.len() * shape[1]];
    for (i, &row) in rows.iter().enumerate() {
        if row >= shape[0] {
            return Err(EngineError::TokenOutOfRange { token: row as u32, vocab_size: shape[0] });
        }
        weight.row(row, &mut out[i * shape[1]..(i + 1) * shape[1]]);
    }
    Ok(out)
}
