//! `mlc-wgpu synth`: an artifact with random weights and exactly the layout
//! of a real one (names, shapes, dtypes, shards), so a model's speed can be
//! measured without its weights.
//!
//! The weights are random but *plausible*, so the model runs stably: q4 codes
//! are uniform over the 15 codes the quantizer emits and each linear's scales
//! make its output keep the scale of its input; norms are 1, biases small.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use mlc_loader::writer::{ArtifactWriter, DEFAULT_SHARD_CAP, plan_shards};
use mlc_loader::{CONFIG_FILE, ChatConfig, DType, TensorIndex, TensorRecord};

/// The arguments of `mlc-wgpu synth`.
#[derive(Args)]
pub struct SynthArgs {
    /// The layout to reproduce: a `tensor-cache.json` (`md5sum`s optional),
    /// e.g. the `tensor-cache.layout.json` of a real artifact.
    #[arg(long)]
    layout: PathBuf,
    /// The `mlc-chat-config.json` to ship; the tokenizer files it lists are
    /// copied from its folder when they are there.
    #[arg(long)]
    config: PathBuf,
    /// The artifact folder to write (must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random weights: the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Writes the artifact `out` with the tensors of the index `layout`, random
/// contents drawn from `seed`, the config and the tokenizer files found next to it.
pub fn run(args: &SynthArgs) -> Result<()> {
    let SynthArgs { layout, config, out, seed } = args;
    let started = Instant::now();
    let layout_text =
        fs::read_to_string(layout).with_context(|| format!("reading {}", layout.display()))?;
    let index = TensorIndex::from_json(&layout_text)
        .with_context(|| format!("reading the layout {}", layout.display()))?;
    let config_text =
        fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let chat_config = ChatConfig::from_json(&config_text)
        .with_context(|| format!("reading {}", config.display()))?;
    let group_size = chat_config
        .quantization()
        .with_context(|| format!("reading {}", config.display()))?
        .group_size();

    let order = emission_order(&index);
    check_reproducible(&index, &order).with_context(|| format!("layout {}", layout.display()))?;
    let fills = order
        .iter()
        .map(|record| Fill::for_record(record, group_size))
        .collect::<Result<Vec<_>>>()?;

    let mut writer = ArtifactWriter::create(out, DEFAULT_SHARD_CAP)?;
    // The next tensors are generated while the writer hashes and writes the
    // last ones; the bounded channel keeps at most two waiting in memory.
    let (sender, receiver) = std::sync::mpsc::sync_channel(2);
    let tensors = order.iter().zip(&fills);
    std::thread::scope(|scope| -> Result<()> {
        // Moves the sender in: the writer's loop ends when it is dropped.
        scope.spawn(move || {
            let mut rng = SplitMix64::new(*seed);
            for (record, fill) in tensors {
                let bytes = fill.generate(record.dtype, record.shape.iter().product(), &mut rng);
                // A closed channel means the writer failed: stop generating.
                if sender.send((*record, bytes)).is_err() {
                    return;
                }
            }
        });
        for (record, bytes) in receiver {
            writer.add_tensor(&record.name, &record.shape, record.dtype, &bytes)?;
        }
        Ok(())
    })?;
    let config_dir = config.parent().unwrap_or(Path::new("."));
    let config_bytes =
        add_tokenizer_files(&mut writer, config_dir, &config_text, &chat_config.tokenizer_files)?;
    writer.add_file(CONFIG_FILE, &config_bytes)?;
    let written = writer.finish(source_parameters(&index))?;

    let seconds = started.elapsed().as_secs_f64();
    let bytes = written.total_bytes();
    eprintln!(
        "wrote {}: {} tensors in {} shards, {:.1} MB in {seconds:.2} s ({:.0} MB/s)",
        out.display(),
        order.len(),
        written.shards.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds
    );
    Ok(())
}

/// An order of the layout's tensors that the sharding rule turns into its
/// shards. The index lists shards in the order they were written; a tensor
/// alone in its shard and of at least half the cap was (in general) written
/// out of order while the next listed shard was being filled, so it is
/// emitted after that shard's tensors, where the rule sets it apart again.
fn emission_order(index: &TensorIndex) -> Vec<&TensorRecord> {
    let mut order = Vec::new();
    let mut held = Vec::new();
    for shard in &index.shards {
        match shard.records.as_slice() {
            [alone] if alone.nbytes.saturating_mul(2) >= DEFAULT_SHARD_CAP => held.push(alone),
            records => {
                order.extend(records);
                order.append(&mut held);
            }
        }
    }
    order.append(&mut held);
    order
}

/// Fails unless writing `order` gives exactly the layout's shards: every
/// record where the index has it, in files named as the converter names them.
fn check_reproducible(index: &TensorIndex, order: &[&TensorRecord]) -> Result<()> {
    // First: the sizes below are the stored ones only with this format.
    if let Some(record) = order.iter().find(|record| record.format != "f32-to-bf16") {
        bail!(
            "tensor `{}` has format `{}`; the converter writes `f32-to-bf16` on every record",
            record.name,
            record.format
        );
    }
    let sizes: Vec<u64> = order.iter().map(|record| record.nbytes).collect();
    let planned = plan_shards(&sizes, DEFAULT_SHARD_CAP);
    let layout: Vec<Vec<(&str, u64)>> = index
        .shards
        .iter()
        .map(|shard| shard.records.iter().map(|r| (r.name.as_str(), r.byte_offset)).collect())
        .collect();
    let plan: Vec<Vec<(&str, u64)>> = planned
        .iter()
        .map(|shard| shard.iter().map(|&(i, offset)| (order[i].name.as_str(), offset)).collect())
        .collect();
    ensure!(
        plan == layout,
        "its shards are not what the converter's sharding rule (32 MiB cap) makes of its tensors"
    );
    for (position, (shard, files)) in index.shards.iter().zip(&planned).enumerate() {
        let end = files.last().map_or(0, |&(i, offset)| offset + order[i].nbytes);
        let name = format!("params_shard_{position}.bin");
        ensure!(
            shard.data_path == name,
            "shard {position} is `{}`, the converter names it `{name}`",
            shard.data_path
        );
        ensure!(
            shard.nbytes == end,
            "shard `{}` has {} bytes but its tensors end at {end}",
            shard.data_path,
            shard.nbytes
        );
    }
    Ok(())
}

/// The unquantized parameter count behind the layout's `BitsPerParam`
/// (`ParamBytes · 8 / count`), or, without that metadata, the count the
/// stored shapes imply (8 q4 codes per `q_weight` word, scales not counted).
fn source_parameters(index: &TensorIndex) -> u64 {
    let meta = |key: &str| {
        index.metadata.get(key).and_then(serde_json::Value::as_f64).filter(|v| *v > 0.0)
    };
    match (meta("ParamBytes"), meta("BitsPerParam")) {
        (Some(bytes), Some(bits)) => (bytes * 8.0 / bits).round() as u64,
        _ => index
            .shards
            .iter()
            .flat_map(|shard| &shard.records)
            .map(|record| {
                let count: u64 = record.shape.iter().map(|&d| d as u64).product();
                match Fill::is_codes(record) {
                    true => count * 8,
                    false if record.name.ends_with(".q_scale") => 0,
                    false => count,
                }
            })
            .sum::<u64>()
            .max(1),
    }
}

/// Adds the tokenizer files the config lists that exist in `dir`, and returns
/// the config to write: as given, or with `tokenizer_files` cut to the files
/// found (so that the artifact opens; synthetic weights need no tokenizer).
fn add_tokenizer_files(
    writer: &mut ArtifactWriter,
    dir: &Path,
    config_text: &str,
    names: &[String],
) -> Result<Vec<u8>> {
    let mut found = Vec::new();
    for name in names {
        match fs::read(dir.join(name)) {
            Ok(bytes) => {
                writer.add_file(name, &bytes)?;
                found.push(name.clone());
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "notice: tokenizer file {name} is not in {}; left out of `tokenizer_files`",
                    dir.display()
                );
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", dir.join(name).display()));
            }
        }
    }
    if found.len() == names.len() {
        return Ok(config_text.as_bytes().to_vec());
    }
    let mut config: serde_json::Value = serde_json::from_str(config_text)?;
    config["tokenizer_files"] = found.into();
    Ok(serde_json::to_string_pretty(&config)?.into_bytes())
}

/// What a tensor is filled with, by its role (told by its name and dtype).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Fill {
    /// q4 codes, uniform over 0..=14, eight per u32 word.
    Codes,
    /// q4 scales of 0.75–1.25 × `scale`, so that groups differ as real ones do.
    Scales(f32),
    /// 1.0: norm weights.
    Ones,
    /// Uniform in ±`bound`: biases and unquantized weights.
    Uniform(f32),
}

/// Variance of `code - 7` for codes uniform over 0..=14: (15² − 1) / 12.
const CODE_VARIANCE: f32 = 56.0 / 3.0;
/// Bound of the small uniform biases.
const BIAS_BOUND: f32 = 0.02;

impl Fill {
    /// The fill of one layout tensor; `group_size` is the quantization's.
    fn for_record(record: &TensorRecord, group_size: Option<usize>) -> Result<Fill> {
        let fan_in = record.shape.last().copied().unwrap_or(1);
        if Fill::is_codes(record) {
            return Ok(Fill::Codes);
        }
        if record.dtype == DType::U32 {
            bail!(
                "tensor `{}`: a uint32 tensor that is not a `q_weight` has no known meaning",
                record.name
            );
        }
        if record.name.ends_with(".q_scale") {
            let group = group_size.with_context(|| {
                format!("tensor `{}`: q4 scales in an unquantized model", record.name)
            })?;
            return Ok(Fill::Scales(Fill::unit_gain_scale(fan_in * group)));
        }
        if record.name.ends_with(".bias") {
            return Ok(Fill::Uniform(BIAS_BOUND));
        }
        if record.name.contains("norm") {
            return Ok(Fill::Ones);
        }
        // Uniform in ±√(3/K) has variance 1/K: unit gain over K inputs.
        Ok(Fill::Uniform((3.0 / fan_in as f32).sqrt()))
    }

    /// Whether `record` holds packed q4 codes.
    fn is_codes(record: &TensorRecord) -> bool {
        record.dtype == DType::U32 && record.name.ends_with(".q_weight")
    }

    /// The scale that gives a q4 linear over `fan_in` inputs unit gain: the
    /// output's variance is `fan_in · scale² · CODE_VARIANCE` times the input's.
    pub(super) fn unit_gain_scale(fan_in: usize) -> f32 {
        1.0 / (fan_in as f32 * CODE_VARIANCE).sqrt()
    }

    /// `count` random elements of `dtype`, little-endian, drawn from a
    /// stream that `rng` seeds. The tensor is cut into chunks of [`CHUNK`]
    /// elements, each with its own generator, filled on all cores: the bytes
    /// depend on the seed only, not on the number of cores.
    pub(super) fn generate(self, dtype: DType, count: usize, rng: &mut SplitMix64) -> Vec<u8> {
        let size = match self {
            Fill::Codes => 4,
            _ => dtype.size_in_bytes(),
        };
        let base = rng.next_u64();
        let mut bytes = vec![0; count * size];
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunks_per_thread = count.div_ceil(CHUNK).div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (part, region) in bytes.chunks_mut(chunks_per_thread * CHUNK * size).enumerate() {
                scope.spawn(move || {
                    for (i, chunk) in region.chunks_mut(CHUNK * size).enumerate() {
                        let index = (part * chunks_per_thread + i) as u64;
                        self.fill(
                            dtype,
                            chunk,
                            &mut SplitMix64::new(SplitMix64::new(base ^ index).next_u64()),
                        );
                    }
                });
            }
        });
        bytes
    }

    /// Fills `out` with elements of `dtype` (of u32 codes for [`Fill::Codes`]).
    fn fill(self, dtype: DType, out: &mut [u8], rng: &mut SplitMix64) {
        match self {
            Fill::Codes => out
                .chunks_exact_mut(4)
                .for_each(|word| word.copy_from_slice(&rng.codes().to_le_bytes())),
            Fill::Scales(scale) => encode(dtype, out, || scale * (0.75 + 0.5 * rng.unit())),
            Fill::Ones => encode(dtype, out, || 1.0),
            Fill::Uniform(bound) => encode(dtype, out, || bound * (2.0 * rng.unit() - 1.0)),
        }
    }
}

/// Elements per generator in [`Fill::generate`]: small enough to spread a
/// tensor over the cores, large enough that seeding costs nothing.
const CHUNK: usize = 1 << 16;

/// Fills `out` with values from `value`, stored as `dtype` (float32 as f32:
/// the writer does the bf16 encoding).
fn encode(dtype: DType, out: &mut [u8], mut value: impl FnMut() -> f32) {
    for element in out.chunks_exact_mut(dtype.size_in_bytes()) {
        let value = value();
        match dtype {
            DType::F16 => element.copy_from_slice(&half::f16::from_f32(value).to_le_bytes()),
            DType::BF16 => element.copy_from_slice(&half::bf16::from_f32(value).to_le_bytes()),
            DType::F32 => element.copy_from_slice(&value.to_le_bytes()),
            // Never asked for (`Fill::for_record` gives uint32 tensors codes);
            // the f32 bits keep the match total.
            DType::U32 => element.copy_from_slice(&value.to_bits().to_le_bytes()),
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a few multiplies per 64 random bits,
/// statistically sound, and trivially seeded. Weights only need to look random.
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub(super) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; bias below 2⁻³²·n).
    pub(super) fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * n as u64) >> 32) as u32
    }

    /// Uniform in [0, 1), 24 bits.
    pub(super) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    /// A word of eight q4 codes, each `byte · 15 / 256` of one random byte:
    /// uniform over 0..=14 to within 1/256, and one generator call per word.
    fn codes(&mut self) -> u32 {
        let bits = self.next_u64();
        (0..8).fold(0, |word, i| {
            let code = (((bits >> (8 * i)) & 0xFF) * 15) >> 8;
            word | (code as u32) << (4 * i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlc_loader::ShardEntry;

    fn record(name: &str, nbytes: u64, offset: u64) -> TensorRecord {
        TensorRecord {
            name: name.into(),
            shape: vec![nbytes as usize / 4],
            dtype: DType::U32,
            format: "f32-to-bf16".into(),
            nbytes,
            byte_offset: offset,
        }
    }

    fn index(shards: Vec<Vec<TensorRecord>>) -> TensorIndex {
        let shards = shards
            .into_iter()
            .enumerate()
            .map(|(i, records)| ShardEntry {
                data_path: format!("params_shard_{i}.bin"),
                format: "raw-shard".into(),
                nbytes: records.iter().map(|r| r.nbytes).sum(),
                md5sum: None,
                records,
            })
            .collect();
        TensorIndex { shards, metadata: serde_json::Value::Null }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_big_tensor_written_mid_shard_is_put_back_there() {
        // The converter emitted a, b, then the 20 MiB c (alone, file 0, as
        // a + b + c ≥ 32 MiB), then d; c must not be emitted before a and b,
        // where it would fit and share their shard.
        let layout = index(vec![
            vec![record("c", 20 * MIB, 0)],
            vec![record("a", 8 * MIB, 0), record("b", 8 * MIB, 8 * MIB), record("d", 4, 16 * MIB)],
        ]);
        let order: Vec<&str> = emission_order(&layout).iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["a", "b", "d", "c"]);
        check_reproducible(&layout, &emission_order(&layout)).unwrap();

        let impossible = index(vec![vec![record("a", 8 * MIB, 0)], vec![record("b", 8 * MIB, 0)]]);
        let error = check_reproducible(&impossible, &emission_order(&impossible)).unwrap_err();
        assert!(error.to_string().contains("sharding rule"), "{error}");
    }

    #[test]
    fn the_parameter_count_comes_from_the_metadata_or_the_shapes() {
        let mut scale = record("w.q_scale", 4, 8);
        (scale.dtype, scale.shape) = (DType::F16, vec![2, 1]);
        let mut norm = record("norm.weight", 8, 12);
        (norm.dtype, norm.shape) = (DType::F16, vec![4]);
        let mut layout = index(vec![vec![record("w.q_weight", 8, 0), scale, norm]]);
        // 2 words of 8 codes, scales not counted, 4 norm weights.
        assert_eq!(source_parameters(&layout), 2 * 8 + 4);
        layout.metadata =
            serde_json::json!({"ParamBytes": 20.0, "BitsPerParam": 20.0 * 8.0 / 1000.0});
        assert_eq!(source_parameters(&layout), 1000);
    }

    #[test]
    fn codes_are_uniform_over_the_fifteen_quantizer_codes() {
        let mut rng = SplitMix64::new(7);
        let mut counts = [0u32; 16];
        for _ in 0..20_000 {
            let word = rng.codes();
            for i in 0..8 {
                counts[((word >> (4 * i)) & 0xF) as usize] += 1;
            }
        }
        assert_eq!(counts[15], 0);
        let expected = 160_000.0 / 15.0;
        assert!(
            counts[..15].iter().all(|&c| (c as f64 - expected).abs() < expected * 0.05),
            "{counts:?}"
        );
    }

    #[test]
    fn a_unit_gain_q4_linear_keeps_the_output_scale() {
        let fan_in = 896;
        let scale = Fill::unit_gain_scale(fan_in);
        let mut rng = SplitMix64::new(1);
        let rows = 256;
        let mut sum_sq = 0.0f64;
        for _ in 0..rows {
            // An input of ones: the output is the sum of the row's weights.
            let row: f64 = (0..fan_in / 8)
                .map(|_| rng.codes())
                .flat_map(|word| (0..8).map(move |i| ((word >> (4 * i)) & 0xF) as f64 - 7.0))
                .sum();
            sum_sq += (row * scale as f64).powi(2);
        }
        let rms = (sum_sq / rows as f64).sqrt();
        assert!((0.85..1.15).contains(&rms), "output rms {rms}");
    }

    #[test]
    fn fills_follow_the_tensor_roles() {
        let mut scale = record("model.layers.0.mlp.down_proj.q_scale", 8, 0);
        scale.dtype = DType::F16;
        scale.shape = vec![2, 2];
        assert_eq!(
            Fill::for_record(&scale, Some(32)).unwrap(),
            Fill::Scales(Fill::unit_gain_scale(64))
        );
        assert!(Fill::for_record(&scale, None).is_err());
        let mut norm = scale.clone();
        norm.name = "model.layers.0.input_layernorm.weight".into();
        assert_eq!(Fill::for_record(&norm, Some(32)).unwrap(), Fill::Ones);
        norm.name = "model.layers.0.self_attn.c_attn.bias".into();
        assert_eq!(Fill::for_record(&norm, Some(32)).unwrap(), Fill::Uniform(BIAS_BOUND));
        assert_eq!(Fill::for_record(&record("x.q_weight", 4, 0), Some(32)).unwrap(), Fill::Codes);
        assert!(Fill::for_record(&record("x.mystery", 4, 0), Some(32)).is_err());
    }
}
