//! The plan's figures: what the GPU engine uploads for each tensor of the
//! artifact, and what the KV cache, scratch and activations of a model's
//! shape take.

use mlc_kernels::AttentionScratch;
use mlc_loader::{DType, Quantization, TensorIndex, TensorRecord};

use super::MemoryPlan;
use crate::models::ModelSpec;

/// What the plan allows for the small parameter buffers of each layer's
/// kernels (and once more for the embedding, the final norm and the sampler).
const PARAMETER_BYTES_PER_LAYER: u64 = 1024;

impl MemoryPlan {
    /// The plan for `spec` with the weights `index` lists, `sequences` KV
    /// caches of `kv_positions` and steps of at most `max_rows` tokens;
    /// `max_binding` is the largest storage binding the kernels use (logits
    /// of a step are one).
    pub fn new(
        spec: &ModelSpec,
        index: &TensorIndex,
        quantization: Quantization,
        kv_positions: usize,
        sequences: usize,
        max_rows: usize,
        max_binding: u64,
    ) -> MemoryPlan {
        let sequences = sequences.max(1);
        let model_dtype = quantization.model_dtype();
        let mut weights: Vec<(&'static str, u64)> =
            ["embedding", "lm_head", "attention", "mlp", "norms", "other"]
                .map(|kind| (kind, 0))
                .into();
        let mut largest = (String::new(), 0);
        for record in index.shards.iter().flat_map(|shard| &shard.records) {
            let Some(kind) = weight_kind(spec, &record.name) else { continue };
            let bytes = gpu_bytes(spec, record, model_dtype);
            weights
                .iter_mut()
                .filter(|(name, _)| *name == kind)
                .for_each(|(_, total)| *total += bytes);
            if bytes > largest.1 {
                largest = (format!("weight `{}`", record.name), bytes);
            }
        }
        let (h, d) = (spec.hidden_size, spec.head_dim);
        let padded_i = spec.padded_intermediate();
        // The KV cache stores the model's activation type (the ring stays f32).
        let kv_value = model_dtype.size_in_bytes();
        let kv_buffer = (sequences * spec.num_kv_heads * kv_positions * d * kv_value) as u64;
        let ring_buffer = spec
            .rolling_window
            .map_or(0, |window| (sequences * spec.num_kv_heads * window.size * d * 4) as u64);
        let rope_table = (kv_positions * spec.rope().rotary_dim * 8) as u64;
        let vocab_row = spec.vocab_size as u64 * 4;
        // tokens, a readback buffer for the sampled token (with its log
        // probabilities) of each step in flight (a sequence's own and, in
        // batched passes queued ahead, each of its rows: `STEPS_AHEAD` + 1
        // per sequence), readback staging (one row of logits), the sampler's workspace
        // (every sequence's counts, bias, mask and result, every row's
        // working values).
        let sampled = (mlc_kernels::sampling::TOKEN_WORDS * 4) as u64;
        let io = (max_rows * 4) as u64
            + ((crate::STEPS_AHEAD + 1) * sequences.max(1)) as u64 * sampled
            + vocab_row
            + mlc_kernels::SamplerWorkspace::bytes(spec.vocab_size, sequences);
        // Every bound kernel's parameter block and placeholder bindings:
        // about 0.5 KiB a layer, counted generously: with several sequences,
        // as if each sequence's steps and each batch size bound a pass's
        // kernels anew.
        let bindings = if sequences > 1 { 2 * sequences + 1 } else { 1 };
        let parameters = bindings as u64 * (spec.num_layers as u64 + 1) * PARAMETER_BYTES_PER_LAYER;
        // Products of several rows split over K share one partial-sum buffer.
        let split_sums = if max_rows > 1 { mlc_kernels::matmul::SPLIT_SCRATCH_BYTES } else { 0 };
        let batch_rows = sequences.min(mlc_kernels::MAX_BATCH_ROWS);
        let scratch = AttentionScratch::bytes(spec.num_heads, d, kv_positions, batch_rows)
            + rope_table
            + io
            + split_sums
            + parameters;
        // Live at once in a step: the residual, a normed copy and the last row
        // (hidden), qkv, q and the attention output, gate|up, the gated
        // product; logits hold every row when they fit one binding, else one.
        let row = (3 * h + spec.qkv_width() + 2 * spec.num_heads * d + 3 * padded_i) as u64 * 4;
        let logits = match max_rows as u64 * vocab_row <= max_binding {
            true => max_rows as u64 * vocab_row,
            false => vocab_row,
        };
        // A batched step of several sequences whose attention cannot take
        // its rows together (a per-head q/k norm) attends row by row: each
        // row's copy of its q/k/v, and its attention's rotated queries and
        // output (buffers of a whole step's rows, like every activation).
        let rows_apart = match sequences {
            1 => 0,
            _ => {
                let apart = spec.qkv_width() + 2 * spec.num_heads * d;
                (sequences * max_rows * apart) as u64 * 4
            }
        };
        let activations = max_rows as u64 * row + logits + rows_apart;
        for (what, bytes) in [
            ("one layer's K cache", kv_buffer),
            ("the RoPE table", rope_table),
            ("the logits", logits),
        ] {
            if bytes > largest.1 {
                largest = (what.to_string(), bytes);
            }
        }
        let linear_layers: Vec<_> =
            (0..spec.num_layers).filter_map(|l| spec.linear_layer(l)).collect();
        let recurrent = sequences as u64
            * linear_layers.iter().map(|shape| shape.state_len() as u64 * 4).sum::<u64>();
        MemoryPlan {
            weights,
            layers: spec.num_layers - linear_layers.len(),
            recurrent,
            kv_positions,
            sequences,
            kv_buffer,
            ring_buffer,
            rope_table,
            scratch,
            activations,
            max_rows,
            largest,
            device: None,
        }
    }
}

/// Which kind of weight tensor `name` is, or `None` when the GPU engine does
/// not upload it (`lm_head` of a model with tied embeddings). A layer
/// parameter the spec does not name (a family's extra norm, an unfused
/// projection) is classed by its name; anything else is `other`.
fn weight_kind(spec: &ModelSpec, name: &str) -> Option<&'static str> {
    let names = &spec.names;
    let param = [".q_weight", ".q_scale", ".weight", ".bias"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    if param == names.embed {
        return Some("embedding");
    }
    if param == names.lm_head {
        return (!spec.tie_word_embeddings).then_some("lm_head");
    }
    if param == names.final_norm {
        return Some("norms");
    }
    let Some((_, part)) =
        param.strip_prefix(&names.layer_prefix).and_then(|rest| rest.split_once('.'))
    else {
        return Some("other");
    };
    let named = [
        (&names.qkv, "attention"),
        (&names.o_proj, "attention"),
        (&names.gate_up, "mlp"),
        (&names.down, "mlp"),
    ]
    .into_iter()
    .chain(
        [&names.attn_norm, &names.mlp_norm, &names.q_norm, &names.k_norm]
            .map(|norm| (norm, "norms")),
    )
    .find(|(candidate, _)| candidate.as_str() == part)
    .map(|(_, kind)| kind);
    Some(named.unwrap_or_else(|| match part {
        _ if part.contains("norm") => "norms",
        _ if part.contains("attn") || part.contains("attention") => "attention",
        _ if part.contains("mlp") || part.contains("feed_forward") => "mlp",
        _ => "other",
    }))
}

/// Bytes the GPU engine uploads for `record`: q4 codes as stored, float
/// tensors converted to the model's dtype, padded to whole words; a q4
/// gate/up projection widened to an intermediate size that is a multiple of 32.
fn gpu_bytes(spec: &ModelSpec, record: &TensorRecord, model_dtype: DType) -> u64 {
    let elements: u64 = record.shape.iter().map(|&n| n as u64).product();
    let mut bytes = match record.dtype {
        DType::U32 => record.nbytes,
        _ => elements * model_dtype.size_in_bytes() as u64,
    };
    let quantized = record.name.ends_with(".q_weight") || record.name.ends_with(".q_scale");
    let (intermediate, padded) = (spec.intermediate_size as u64, spec.padded_intermediate() as u64);
    if quantized
        && record.name.contains(&format!(".{}.", spec.names.gate_up))
        && padded != intermediate
    {
        bytes = bytes / intermediate * padded;
    }
    bytes.div_ceil(4) * 4
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::memory::DeviceLimits;
    use mlc_loader::{Artifact, OpenOptions};

    fn tiny(model: &str) -> (ModelSpec, Artifact) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conformance/fixtures")
            .join(model)
            .join("mlc");
        let artifact = Artifact::open(&dir.to_string_lossy(), OpenOptions::default()).unwrap();
        (crate::models::spec_for(&artifact.config).unwrap(), artifact)
    }

    #[test]
    fn the_weights_are_every_tensor_the_engine_uploads_by_kind() {
        // Both tiny artifacts store q4 codes and f16 floats (q4f16_1's own dtypes), and the
        // engine uploads every tensor as stored: the plan's weights are the shards' bytes.
        for (model, lm_head) in [("tiny-qwen2", false), ("tiny-llama", true)] {
            let (spec, artifact) = tiny(model);
            let plan = MemoryPlan::new(
                &spec,
                &artifact.index,
                artifact.quantization(),
                512,
                1,
                64,
                128 << 20,
            );
            assert_eq!(plan.weight_bytes(), artifact.index.total_bytes(), "{model}");
            let kind = |name: &str| plan.weights.iter().find(|(kind, _)| *kind == name).unwrap().1;
            assert!(
                kind("embedding") > 0
                    && kind("attention") > 0
                    && kind("mlp") > 0
                    && kind("norms") > 0,
                "{model}: {:?}",
                plan.weights
            );
            assert_eq!(kind("lm_head") > 0, lm_head, "{model}: {:?}", plan.weights);
            // q4f16_1: an f16 cache.
            let per_position = (spec.num_kv_heads * spec.head_dim * 2) as u64;
            assert_eq!(
                (plan.kv_buffer, plan.kv_bytes()),
                (512 * per_position, 2 * spec.num_layers as u64 * 512 * per_position)
            );
            assert_eq!(
                plan.total(),
                plan.weight_bytes() + plan.kv_bytes() + plan.scratch + plan.activations
            );
            assert_eq!(plan.problem(), None, "no device, nothing to check against");
        }
    }

    #[test]
    fn tensors_the_spec_does_not_name_are_classed_by_name_and_still_counted() {
        let (spec, _) = tiny("tiny-qwen2");
        for (name, kind) in [
            ("model.layers.0.mlp.gate_up_proj.q_weight", Some("mlp")),
            ("model.layers.1.self_attn.c_attn.bias", Some("attention")),
            ("model.layers.0.post_feedforward_layernorm.weight", Some("norms")),
            ("model.layers.0.mlp.gate_proj.q_scale", Some("mlp")),
            ("model.layers.0.self_attn.rotary.inv_freq", Some("attention")),
            ("model.vision_tower.patch.weight", Some("other")),
            ("lm_head.q_weight", None), // tied: the embedding serves as the output projection
            ("model.embed_tokens.q_scale", Some("embedding")),
            ("model.norm.weight", Some("norms")),
        ] {
            assert_eq!(weight_kind(&spec, name), kind, "{name}");
        }
    }

    #[test]
    fn limits_rule_out_a_whole_bound_buffer_beyond_a_binding_and_any_beyond_the_largest() {
        let (spec, artifact) = tiny("tiny-qwen2");
        let device = |max_buffer_size, max_storage_buffer_binding_size| DeviceLimits {
            adapter: "test".into(),
            max_buffer_size,
            max_storage_buffer_binding_size,
        };
        let plan = |positions, rows| {
            MemoryPlan::new(
                &spec,
                &artifact.index,
                artifact.quantization(),
                positions,
                1,
                rows,
                128 << 20,
            )
        };
        // An f16 cache of 64 bytes a position, and a RoPE table of 128 (16
        // rotary dims of f32 cos/sin): 1024 positions fill a 128 KiB binding
        // with the table exactly.
        assert_eq!(plan(1024, 64).rope_table, 128 << 10);
        assert_eq!(plan(1024, 64).on_device(device(u64::MAX, 128 << 10)).problem(), None);
        let problem = plan(1025, 64).on_device(device(u64::MAX, 128 << 10)).problem().unwrap();
        assert!(
            problem.contains("the RoPE table")
                && problem.contains("exceeds max_storage_buffer_binding_size")
                && problem.contains("at most 1024 positions fit, 1025 were asked for"),
            "{problem}"
        );
        // Three sequences' positions share each layer's K buffer: 682 fill it.
        let three =
            MemoryPlan::new(&spec, &artifact.index, artifact.quantization(), 682, 3, 64, 128 << 20);
        assert_eq!(three.kv_buffer, 3 * 682 * 64);
        assert_eq!(three.on_device(device(u64::MAX, 128 << 10)).problem(), None);
        let problem =
            MemoryPlan::new(&spec, &artifact.index, artifact.quantization(), 683, 3, 64, 128 << 20)
                .on_device(device(u64::MAX, 128 << 10))
                .problem()
                .unwrap();
        assert!(
            problem.contains("one layer's K cache")
                && problem.contains("at most 682 positions fit, 683 were asked for, for each of 3"),
            "{problem}"
        );
        // With one token per step (one row of logits) the largest buffer of
        // tiny-qwen2 is its embedding's codes (151936 rows of 8 words); with
        // 64, the logits of a step (64 x 151936 floats).
        assert_eq!(plan(64, 64).largest, ("the logits".to_string(), 64 * 151_936 * 4));
        let largest = plan(64, 1);
        assert_eq!(
            largest.largest,
            ("weight `model.embed_tokens.q_weight`".to_string(), 151_936 * 32)
        );
        let problem = largest.on_device(device(1 << 20, 128 << 20)).problem().unwrap();
        assert!(problem.starts_with("weight `model.embed_tokens.q_weight` needs one buffer of 4.6 MiB (4861952 bytes), more than max_buffer_size"), "{problem}");
    }
}
