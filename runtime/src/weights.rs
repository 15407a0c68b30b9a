//! Reads a decoder's parameters out of an artifact, checks every shape
//! against the model spec, and hands them to a backend to keep.

use mlc_loader::{Artifact, DType, Tensor};

use crate::backend::{Backend, DecoderWeights, LayerWeights};
use crate::models::ModelSpec;
use crate::EngineError;

/// The stored form of a weight matrix `[rows, cols]`.
pub enum MatrixSource<'a> {
    /// MLC q4 group quantization: `q_weight` u32 `[rows, groups·4]`, `q_scale` `[rows, groups]`.
    Q4 {
        /// Packed codes.
        q_weight: Tensor<'a>,
        /// Group scales (f16 for q4f16_1, f32 for q4f32_1).
        q_scale: Tensor<'a>,
    },
    /// Unquantized `[rows, cols]` (q0f16 / q0f32).
    Dense(Tensor<'a>),
}

/// A linear layer (or embedding table) as stored in the artifact.
pub struct LinearSource<'a> {
    /// Parameter name without suffix.
    pub name: String,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// The matrix.
    pub matrix: MatrixSource<'a>,
    /// Bias, `[rows]`, when the layer has one.
    pub bias: Option<Tensor<'a>>,
}

/// Loads every parameter the spec names, checking shapes and dtypes.
pub fn load<B: Backend>(spec: &ModelSpec, artifact: &Artifact, backend: &mut B) -> Result<DecoderWeights<B>, EngineError> {
    let names = &spec.names;
    let (h, i, d) = (spec.hidden_size, spec.intermediate_size, spec.head_dim);
    let mut linear = |name: String, rows: usize, cols: usize, bias: Bias| -> Result<B::Linear, EngineError> {
        let source = linear_source(artifact, name, rows, cols, bias)?;
        backend.load_linear(&source)
    };
    let embed = linear(names.embed.clone(), spec.vocab_size, h, Bias::None)?;
    let lm_head = match spec.tie_word_embeddings {
        true => None,
        false => Some(linear(names.lm_head.clone(), spec.vocab_size, h, Bias::None)?),
    };
    let mut layers_linear = Vec::with_capacity(spec.num_layers);
    for l in 0..spec.num_layers {
        let qkv_bias = if spec.qkv_bias { Bias::Required } else { Bias::IfPresent };
        layers_linear.push((
            linear(names.layer(l, &names.qkv), spec.qkv_width(), h, qkv_bias)?,
            linear(names.layer(l, &names.o_proj), h, spec.num_heads * d, Bias::IfPresent)?,
            linear(names.layer(l, &names.gate_up), 2 * i, h, Bias::None)?,
            linear(names.layer(l, &names.down), h, i, Bias::None)?,
        ));
    }
    let mut vector = |name: String, len: usize| -> Result<B::Vector, EngineError> {
        let tensor = tensor_with_shape(artifact, &format!("{name}.weight"), &[len])?;
        backend.load_vector(&tensor)
    };
    let mut layers = Vec::with_capacity(spec.num_layers);
    for (l, (qkv, o_proj, gate_up, down)) in layers_linear.into_iter().enumerate() {
        let qk_norm = match spec.qk_norm {
            true => Some((vector(names.layer(l, &names.q_norm), d)?, vector(names.layer(l, &names.k_norm), d)?)),
            false => None,
        };
        layers.push(LayerWeights {
            attn_norm: vector(names.layer(l, &names.attn_norm), h)?,
            qkv,
            qk_norm,
            o_proj,
            mlp_norm: vector(names.layer(l, &names.mlp_norm), h)?,
            gate_up,
            down,
        });
    }
    let final_norm = vector(names.final_norm.clone(), h)?;
    Ok(DecoderWeights { embed, layers, final_norm, lm_head })
}

/// Whether a linear layer's bias must, may or must not be read.
#[derive(Clone, Copy)]
enum Bias {
    None,
    IfPresent,
    Required,
}

fn linear_source<'a>(artifact: &'a Artifact, name: String, rows: usize, cols: usize, bias: Bias) -> Result<LinearSource<'a>, EngineError> {
    let q_weight_name = format!("{name}.q_weight");
    let matrix = if artifact.has_tensor(&q_weight_name) {
        let groups = cols.div_ceil(32);
        let q_weight = tensor_with_shape(artifact, &q_weight_name, &[rows, groups * 4])?;
        expect_dtype(&q_weight, &[DType::U32])?;
        let q_scale = tensor_with_shape(artifact, &format!("{name}.q_scale"), &[rows, groups])?;
        expect_dtype(&q_scale, &[DType::F16, DType::F32, DType::BF16])?;
        MatrixSource::Q4 { q_weight, q_scale }
    } else {
        let dense = tensor_with_shape(artifact, &format!("{name}.weight"), &[rows, cols]).map_err(|e| match e {
            EngineError::Load(mlc_loader::LoadError::MissingTensor { .. }) => EngineError::MissingWeight {
                name: name.clone(),
                tried: format!("{name}.q_weight, {name}.weight"),
            },
            other => other,
        })?;
        expect_dtype(&dense, &[DType::F16, DType::F32, DType::BF16])?;
        MatrixSource::Dense(dense)
    };
    let bias_name = format!("{name}.bias");
    let bias = match bias {
        Bias::Required => Some(tensor_with_shape(artifact, &bias_name, &[rows])?),
        Bias::IfPresent if artifact.has_tensor(&bias_name) => Some(tensor_with_shape(artifact, &bias_name, &[rows])?),
        _ => None,
    };
    Ok(LinearSource { name, rows, cols, matrix, bias })
}

fn tensor_with_shape<'a>(artifact: &'a Artifact, name: &str, shape: &[usize]) -> Result<Tensor<'a>, EngineError> {
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

fn expect_dtype(tensor: &Tensor<'_>, allowed: &[DType]) -> Result<(), EngineError> {
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
/// f32, `[rows, cols]` row-major; q4 matrices are taken to span whole groups.
pub fn dequantize_rows(artifact: &Artifact, name: &str, rows: Option<&[usize]>) -> Result<Vec<f32>, EngineError> {
    use mlc_kernels::cpu::{Q4Matrix, Weight};
    let q_weight_name = format!("{name}.q_weight");
    let (q_weight, scales, dense, shape);
    let weight = if artifact.has_tensor(&q_weight_name) {
        let packed = artifact.tensor(&q_weight_name)?;
        shape = [packed.shape[0], packed.shape.get(1).copied().unwrap_or(0) * 8];
        q_weight = packed.to_u32_vec()?;
        scales = artifact.tensor(&format!("{name}.q_scale"))?.to_f32_vec()?;
        if q_weight.len() != shape[0] * shape[1] / 8 || scales.len() != shape[0] * shape[1] / 32 {
            return Err(EngineError::WeightShape { name: format!("{name}.q_scale"), expected: vec![shape[0], shape[1] / 32], actual: vec![scales.len()] });
        }
        Weight::Q4(Q4Matrix { rows: shape[0], cols: shape[1], q_weight: &q_weight, scales: &scales })
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
