//! `embed`: the embeddings of texts (or token ids) from an embedding model,
//! printed as the OpenAI response `/v1/embeddings` returns.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use mlc_chat::{Embedder, EmbeddingConvention, EmbeddingInput, EmbeddingRequest};
use mlc_loader::Artifact;
use pollster::FutureExt as _;

use crate::args::Device;
use crate::chat::EngineArgs;
use crate::load;

/// `mlc-wgpu embed`.
#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// The texts to embed, one embedding each.
    #[arg(required_unless_present = "tokens")]
    texts: Vec<String>,
    /// Embed these token ids (comma-separated) as one input instead of texts.
    #[arg(long, value_delimiter = ',', conflicts_with = "texts")]
    tokens: Vec<u32>,
    /// WebLLM's convention: texts are tokenized without `[CLS]`/`[SEP]` and
    /// the embeddings are not normalised (default: MLC's server's: the
    /// tokenizer's special tokens, unit-length embeddings).
    #[arg(long)]
    webllm: bool,
}

/// Loads the embedding model, embeds the inputs and prints the response JSON.
pub fn run(args: &EmbedArgs) -> Result<()> {
    let artifact = load::open(&args.engine.source)?;
    let mut embedder = load_embedder(&artifact, args.engine.device)?;
    let input = match args.tokens.is_empty() {
        true => EmbeddingInput::Texts(args.texts.clone()),
        false => EmbeddingInput::Tokens(args.tokens.clone()),
    };
    let request = EmbeddingRequest {
        input,
        model: None,
        encoding_format: None,
        dimensions: None,
        user: None,
    };
    let convention = match args.webllm {
        true => EmbeddingConvention::WebLlm,
        false => EmbeddingConvention::Server,
    };
    let response = embedder.create(&request, convention).block_on()?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &response)?;
    writeln!(out)?;
    Ok(())
}

/// Loads an embedding model's encoder and tokenizer, reporting on stderr.
pub fn load_embedder(artifact: &Artifact, device: Device) -> Result<Embedder> {
    eprintln!("loading {} ...", artifact.source());
    let started = std::time::Instant::now();
    let model = load::load_encoder(artifact, device)?;
    let embedder = Embedder::new(model, artifact).context("setting up the embedding model")?;
    eprintln!("loaded {} in {:.1} s", embedder.model_id(), started.elapsed().as_secs_f64());
    Ok(embedder)
}
