//! Shared helpers for the conformance tests: where the fixtures are, how to read
//! the reference files, and how outputs are compared with them.

pub mod artifacts;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The small artifacts shipped in `conformance/fixtures/`: the two official
/// ones, and synthetic ones (made by `conformance/tools/make_synthetic.py`,
/// with an independent numpy reference) for Qwen3's q/k norm, 7:1 GQA with
/// head_dim 64 over six shards with split scales, Llama-3 RoPE scaling, an MLP
/// width that is not a multiple of 32, and records at offsets ≡ 2 (mod 4).
pub const TINY_MODELS: &[&str] = &[
    "tiny-qwen2",
    "tiny-llama",
    "synthetic/qwen3-tiny",
    "synthetic/qwen2-gqa7",
    "synthetic/llama3-scaled",
    "synthetic/llama-odd-ffn",
];

/// Hugging Face checkpoints of the families beyond the official tiny artifacts
/// (`conformance/fixtures/families/`, made by `conformance/tools/make_families.py`
/// with transformers reference outputs): the tests convert each with
/// `mlc-wgpu convert` to q4f16_1 and run it.
pub const FAMILY_MODELS: &[&str] = &[
    "families/mistral-tiny",
    "families/ministral3-tiny",
    "families/phi3-tiny",
    "families/gemma-tiny",
    "families/gemma2-tiny",
    "families/gemma3-tiny",
    "families/olmo2-tiny",
    "families/stablelm-tiny",
    "families/phi-tiny",
    "families/gpt_neox-tiny",
    "families/gpt_neox-parallel-tiny",
    "families/qwen3_5-tiny",
];

/// A family fixture's `hf_source/` converted to q4f16_1 by `mlc_convert` (what
/// `mlc-wgpu convert` runs) in a temporary folder, which lives as long as the
/// returned guard.
pub fn converted_family(model: &str) -> (tempfile::TempDir, mlc_loader::Artifact) {
    converted_family_as(model, mlc_loader::Quantization::Q4F16_1)
}

/// [`converted_family`] to another quantization (the BERT fixture: q0f32).
pub fn converted_family_as(
    model: &str,
    quantization: mlc_loader::Quantization,
) -> (tempfile::TempDir, mlc_loader::Artifact) {
    let temp = tempfile::tempdir().expect("a temporary folder");
    let out = temp.path().join("mlc");
    let mut checkpoint = mlc_convert::HfFolder::open(&fixtures_dir().join(model).join("hf_source"))
        .expect("open the checkpoint");
    mlc_convert::convert(&mut checkpoint, &mlc_convert::ConvertOptions::new(quantization), &out)
        .expect("convert the checkpoint");
    let artifact = mlc_loader::Artifact::open(
        out.to_str().expect("a UTF-8 path"),
        mlc_loader::OpenOptions::default(),
    )
    .expect("open the converted artifact");
    (temp, artifact)
}

/// `conformance/fixtures/`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The artifact folder of a fixture model (`tiny-qwen2`, `synthetic/qwen3-tiny`, ...).
pub fn tiny_artifact(model: &str) -> PathBuf {
    fixtures_dir().join(model).join("mlc")
}

/// The project's `../shared` folder, if present: a `shared/` folder beside the
/// repository checkout with reference material not committed here (the
/// official tiny conformance artifacts with their float32 reference outputs, a
/// SmolLM2-135M-Instruct q4f16_1 reference artifact with reference replies). A
/// fresh clone does not have it; the cases that need it skip (see
/// [`shared_path`]), every case built on `conformance/fixtures` still runs.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    dir.is_dir().then(|| dir.canonicalize().unwrap_or(dir))
}

/// The SmolLM2-135M-Instruct q4f16_1 reference artifact under `../shared`
/// (converted from the model's GGUF by MLC's rules, with reference replies
/// beside it; docs/gguf.md, "Against the shared reference artifact").
pub const SMOLLM2: &str = "data/smollm2-135m-instruct-q4f16_1-mlc";

/// The `chat_capital` case of the SmolLM2 reference replies: its system
/// prompt, prompt ids and greedy reply ids (needs `../shared`).
pub struct ChatReference {
    /// The system prompt of SmolLM2's conversation template.
    pub system: String,
    /// The ids WebLLM's template gives the user's question.
    pub prompt_ids: Vec<u32>,
    /// The greedy reply's ids.
    pub greedy_ids: Vec<u32>,
}

/// The user's question of [`ChatReference`] and SmolLM2's greedy answer to it.
pub const CAPITAL_QUESTION: &str = "What is the capital of France?";
/// SmolLM2's greedy answer to [`CAPITAL_QUESTION`].
pub const CAPITAL_ANSWER: &str = "The capital of France is Paris.";

/// Reads [`ChatReference`]; `None` (after [`shared_path`]'s notice) without `../shared`.
pub fn smollm2_chat_reference() -> Option<ChatReference> {
    let path = shared_path("data/smollm2-135m-instruct-q4f16_1-mlc-reference/reference.json")?;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["name"] == "chat_capital")
        .unwrap();
    let prompt = case["prompt"].as_str().unwrap();
    let system = prompt
        .strip_prefix("<|im_start|>system\n")
        .unwrap()
        .split("<|im_end|>")
        .next()
        .unwrap()
        .to_string();
    let ids = |key: &str| serde_json::from_value(case[key].clone()).unwrap();
    Some(ChatReference { system, prompt_ids: ids("prompt_ids"), greedy_ids: ids("greedy_ids") })
}

/// A path under `../shared` ([`shared_dir`]). When it is absent, says so
/// loudly on stderr and returns `None`, and the caller skips the case it
/// guards; with the `CI` environment variable set the absence is a failure.
pub fn shared_path(relative: &str) -> Option<PathBuf> {
    let found = shared_dir().map(|d| d.join(relative)).filter(|p| p.exists());
    if found.is_none() {
        let banner = "!".repeat(78);
        eprintln!(
            "{banner}\n!! NOT RUN: ../shared/{relative} is missing.\n!! This conformance case needs the project's shared data folder beside the repository.\n{banner}"
        );
        assert!(std::env::var_os("CI").is_none(), "../shared/{relative} is required in CI");
    }
    found
}

/// Reads a raw little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(bytes.len() % 4, 0, "{} is not a whole number of f32 values", path.display());
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// `golden/index.json` of a tiny model.
#[derive(Debug, Deserialize)]
pub struct GoldenIndex {
    /// The reference prompts.
    pub prompts: Vec<GoldenPrompt>,
    /// Fixtures for the dequantization check (absent for the family fixtures).
    #[serde(default)]
    pub dequant_fixtures: serde_json::Value,
}

/// One reference prompt.
#[derive(Debug, Deserialize)]
pub struct GoldenPrompt {
    /// `promptK`.
    pub name: String,
    /// Input ids.
    pub token_ids: Vec<u32>,
    /// The 16 greedy continuation ids.
    pub greedy_16: Vec<u32>,
    /// Final-position logits file.
    pub last_logits_file: String,
    /// All-position logits file (tiny-llama prompt1, and 1-token prompts).
    pub all_logits_file: Option<String>,
    /// Top-128 ids and logits per position (tiny-qwen2 prompt1).
    pub all_positions_top128: Option<Top128>,
    /// Residual-stream trace files by point name.
    pub hidden_trace_files: Option<std::collections::BTreeMap<String, String>>,
}

/// Top-128 logits at each position.
#[derive(Debug, Deserialize)]
pub struct Top128 {
    /// `[positions][128]` token ids.
    pub ids: Vec<Vec<u32>>,
    /// `[positions][128]` logits.
    pub logits: Vec<Vec<f32>>,
}

/// Reads a tiny model's golden index.
pub fn golden(model: &str) -> GoldenIndex {
    let path = fixtures_dir().join(model).join("golden/index.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A golden file of a tiny model.
pub fn golden_file(model: &str, file: &str) -> Vec<f32> {
    read_f32(&fixtures_dir().join(model).join("golden").join(file))
}

/// Population standard deviation.
pub fn std_dev(values: &[f32]) -> f32 {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt() as f32
}

/// Largest absolute difference; panics on a length mismatch.
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// Asserts `max|got − want| ≤ tolerance × std(want)`, the criterion.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    let diff = max_abs_diff(got, want);
    let bound = tolerance * std_dev(want);
    assert!(
        diff <= bound && got.iter().all(|v| v.is_finite()),
        "{what}: max |Δ| = {diff:.3e} exceeds {tolerance:e} × std = {bound:.3e}"
    );
    eprintln!("{what}: max |Δ| = {diff:.2e} (bound {bound:.2e})");
}

/// The CPU tolerance: max |Δlogit| ≤ 2e-3 × the reference's logit std.
pub const CPU_TOLERANCE: f32 = 2e-3;

/// The GPU tolerance: max |Δlogit| ≤ 5e-2 × the reference's logit std.
pub const GPU_TOLERANCE: f32 = 5e-2;

/// Checks the queued (pipelined) greedy path of `engine` against `prompt`'s
/// reference continuation: three steps queued before any token is read (each
/// fed on the device by the previous one's choice) give the first three
/// reference tokens, and a queued step that is dropped leaves the context as
/// if it had never run, so that decoding on from there still follows the
/// reference.
pub fn check_queued_greedy(
    what: &str,
    engine: &mut dyn mlc_engine::LanguageModel,
    prompt: &GoldenPrompt,
) {
    use mlc_engine::backend::StepInput;
    use pollster::FutureExt;
    let want = &prompt.greedy_16;
    engine.reset();
    engine.queue_greedy(StepInput::Tokens(&prompt.token_ids)).unwrap();
    engine.queue_greedy(StepInput::Queued).unwrap();
    engine.queue_greedy(StepInput::Queued).unwrap();
    assert_eq!(
        engine.position(),
        prompt.token_ids.len() + 2,
        "{what}: positions of three queued steps"
    );
    let taken: Vec<u32> = (0..3).map(|_| engine.next_queued().block_on().unwrap().token).collect();
    assert_eq!(taken, want[..3], "{what}: tokens of three queued steps");

    // Queue one step past token 3, take nothing, drop it: token 3 must still
    // be the next input, at the same position. A model with recurrent state
    // cannot rewind the dropped step: its context is emptied instead, and
    // the whole sequence so far, prefilled again, gives token 4.
    engine.queue_greedy(StepInput::Queued).unwrap();
    engine.drop_queued();
    let recurrent = engine.spec().recurrent();
    let kept = if recurrent { 0 } else { prompt.token_ids.len() + 2 };
    assert_eq!(engine.position(), kept, "{what}: position after a dropped step");
    assert!(engine.next_queued().block_on().is_err(), "{what}: nothing is queued after a drop");
    let input = match recurrent {
        true => [&prompt.token_ids[..], &want[..3]].concat(),
        false => vec![want[2]],
    };
    let next = engine.greedy_next(&input).block_on().unwrap();
    assert_eq!(next, want[3], "{what}: the token after a dropped step");
}
