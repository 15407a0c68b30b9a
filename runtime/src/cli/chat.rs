//! `chat`, `complete` and `render-prompt`: the chat engine from the terminal.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use clap::Args;
use mlc_loader::{CONFIG_FILE, ChatConfig};
use mlc_wgpu::chat::{
    ChatCompletionRequest, ChatEngine, ChatMessage, CompletionRequest, Conversation, FinishReason,
    GenerationConfig, StreamOptions, Tokenizer, Usage,
};
use pollster::FutureExt as _;

use super::{Device, SourceArgs, commands};

/// The model and the engine that runs it.
#[derive(Args)]
pub struct EngineArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Which engine computes.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
}

/// Generation settings; unset ones come from the model's mlc-chat-config.json.
#[derive(Args)]
pub struct SamplingArgs {
    /// Softmax temperature; 0 is greedy.
    #[arg(long)]
    temperature: Option<f64>,
    /// Nucleus mass, in (0, 1].
    #[arg(long)]
    top_p: Option<f64>,
    /// Most tokens per reply (default: until a stop token or the context is full).
    #[arg(long)]
    max_tokens: Option<i64>,
    /// Seed of the sampler, for reproducible output.
    #[arg(long)]
    seed: Option<u64>,
    /// Always take the most likely token (temperature 0).
    #[arg(long, conflicts_with = "temperature")]
    greedy: bool,
    /// Print each reply's finish reason and usage (token counts, speeds) to stderr.
    #[arg(long)]
    stats: bool,
}

impl SamplingArgs {
    fn generation(&self) -> GenerationConfig {
        GenerationConfig {
            temperature: if self.greedy { Some(0.0) } else { self.temperature },
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            ..GenerationConfig::default()
        }
    }

    fn seed(&self) -> Option<f64> {
        self.seed.map(|seed| seed as f64)
    }

    /// `stream_options` asking for the usage chunk when `--stats` wants it.
    fn stream_options(&self) -> Option<StreamOptions> {
        self.stats.then_some(StreamOptions { include_usage: Some(true) })
    }
}

/// `mlc-wgpu chat`.
#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// System prompt (default: the conversation template's).
    #[arg(long)]
    system: Option<String>,
}

/// `mlc-wgpu complete`.
#[derive(Args)]
pub struct CompleteArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The text to continue, used as-is (no chat template).
    #[arg(long)]
    prompt: String,
}

/// `mlc-wgpu render-prompt`.
#[derive(Args)]
pub struct RenderPromptArgs {
    /// Artifact folder (only mlc-chat-config.json and tokenizer.json are read).
    #[arg(long)]
    model: PathBuf,
    /// JSON file (`-` for stdin) with a messages array or a whole chat request.
    #[arg(long)]
    messages: PathBuf,
}

/// Opens the artifact, loads the model on `args.device` and builds the engine,
/// reporting progress on stderr.
pub(super) fn load_engine(args: &EngineArgs) -> Result<ChatEngine> {
    let artifact = commands::open(&args.source)?;
    eprintln!("loading {} ...", artifact.source());
    let started = std::time::Instant::now();
    let model = commands::load(&artifact, args.device)?;
    let engine = ChatEngine::new(model, &artifact).context("setting up the chat engine")?;
    eprintln!("loaded {} in {:.1} s", engine.model_id(), started.elapsed().as_secs_f64());
    Ok(engine)
}

/// Interactive chat on stdin/stdout: one user message per line, replies
/// streamed as they are generated; the conversation is kept (and with it the
/// KV cache) until `/reset`. `/exit` or end of input quits.
pub fn chat(args: &ChatArgs) -> Result<()> {
    let mut engine = load_engine(&args.engine)?;
    let interactive = io::stdin().is_terminal();
    if interactive {
        eprintln!("Type a message and press Enter. /reset starts a new conversation, /exit quits.");
    }
    let mut messages: Vec<ChatMessage> =
        args.system.iter().map(|system| ChatMessage::new("system", system)).collect();
    let start_of_conversation = messages.len();
    let mut lines = io::stdin().lock();
    loop {
        if interactive {
            eprint!("> ");
        }
        let mut line = String::new();
        if lines.read_line(&mut line).context("reading stdin")? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" => return Ok(()),
            "/reset" => {
                messages.truncate(start_of_conversation);
                engine.reset();
                eprintln!("(new conversation)");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage::new("user", line));
        let request = ChatCompletionRequest {
            messages: messages.clone(),
            stream: Some(true),
            stream_options: args.sampling.stream_options(),
            seed: args.sampling.seed(),
            generation: args.sampling.generation(),
            ..ChatCompletionRequest::default()
        };
        let mut printer = DeltaPrinter::new(&engine);
        let result = engine
            .chat_completion(&request, |chunk| {
                for choice in &chunk.choices {
                    printer.print(choice.delta.content.as_deref().unwrap_or(""));
                }
                printer.usage(chunk.usage.as_ref());
            })
            .block_on();
        printer.finish()?;
        match result {
            Ok(reply) => {
                let choice = &reply.choices[0];
                messages.push(ChatMessage::new(
                    "assistant",
                    choice.message.content.as_deref().unwrap_or(""),
                ));
                report(args.sampling.stats, choice.finish_reason, printer.usage);
            }
            // A bad request (e.g. a conversation past the context window) leaves
            // the history as it was; the user can go on or /reset.
            Err(error) if error.is_client_error() => {
                messages.pop();
                eprintln!("error: {error}");
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Continues `--prompt`, streaming the text to stdout.
pub fn complete(args: &CompleteArgs) -> Result<()> {
    let mut engine = load_engine(&args.engine)?;
    let request = CompletionRequest {
        prompt: args.prompt.clone(),
        stream: Some(true),
        stream_options: args.sampling.stream_options(),
        seed: args.sampling.seed(),
        generation: args.sampling.generation(),
        ..CompletionRequest::default()
    };
    let mut printer = DeltaPrinter::new(&engine);
    let result = engine
        .completion(&request, |chunk| {
            for choice in &chunk.choices {
                printer.print(&choice.text);
            }
            printer.usage(chunk.usage.as_ref());
        })
        .block_on();
    printer.finish()?;
    let response = result?;
    report(
        args.sampling.stats,
        response.choices[0].finish_reason.unwrap_or(FinishReason::Stop),
        printer.usage,
    );
    Ok(())
}

/// Prints the prompt a chat request renders to (the prompt array joined), then
/// on the last line the token ids that would be prefilled, as JSON.
pub fn render_prompt(args: &RenderPromptArgs) -> Result<()> {
    let config_path = args.model.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = ChatConfig::from_json(&text)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let template = config.conv_template.context("mlc-chat-config.json has no conv_template")?;
    let tokenizer = Tokenizer::from_file(args.model.join("tokenizer.json"))?;
    let request = read_request(&args.messages)?;
    let last = request.messages.last().context("the request has no messages")?;
    let enable_thinking = request.extra_body.as_ref().and_then(|extra| extra.enable_thinking);
    let mut conversation = Conversation::from_request(&template, &request.messages)?;
    conversation.start_round(&template, last, enable_thinking)?;
    let prompt = conversation.prompt_array(&template)?.concat();
    let tokens = conversation.prompt_tokens(&template, &tokenizer, true)?;
    let newline = if prompt.ends_with('\n') { "" } else { "\n" };
    print!("{prompt}{newline}");
    println!("{}", serde_json::to_string(&tokens.ids)?);
    Ok(())
}

/// A messages array or a chat request, from a file or stdin (`-`).
fn read_request(path: &Path) -> Result<ChatCompletionRequest> {
    let text = match path.to_str() {
        Some("-") => io::read_to_string(io::stdin()).context("reading stdin")?,
        _ => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let request = match value {
        serde_json::Value::Array(_) => serde_json::json!({ "messages": value }),
        other => other,
    };
    serde_json::from_value(request)
        .with_context(|| format!("{} is not a messages array or chat request", path.display()))
}

/// Writes stream deltas to stdout as they come. A failed write (e.g. a
/// closed pipe) interrupts the generation and is reported once it ends.
struct DeltaPrinter {
    out: io::Stdout,
    interrupt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    error: Option<io::Error>,
    usage: Option<Usage>,
}

impl DeltaPrinter {
    fn new(engine: &ChatEngine) -> DeltaPrinter {
        DeltaPrinter {
            out: io::stdout(),
            interrupt: engine.interrupt_handle(),
            error: None,
            usage: None,
        }
    }

    fn print(&mut self, text: &str) {
        let mut out = self.out.lock();
        if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            self.interrupt.store(true, Ordering::SeqCst);
            self.error.get_or_insert(error);
        }
    }

    fn usage(&mut self, usage: Option<&Usage>) {
        if let Some(usage) = usage {
            self.usage = Some(usage.clone());
        }
    }

    /// Ends the reply's line; the first write error, if any.
    fn finish(&mut self) -> Result<()> {
        self.print("\n");
        match self.error.take() {
            Some(error) => Err(error).context("writing to stdout"),
            None => Ok(()),
        }
    }
}

/// With `--stats`, the finish reason and the usage on stderr; otherwise only
/// an unusual finish reason, which a reader needs to make sense of a cut reply.
fn report(stats: bool, finish_reason: FinishReason, usage: Option<Usage>) {
    let reason = serde_json::to_string(&finish_reason).unwrap_or_default();
    if stats {
        let usage = usage
            .map(|usage| serde_json::to_string(&usage).unwrap_or_default())
            .unwrap_or_default();
        eprintln!("finish_reason: {reason}; usage: {usage}");
    } else if finish_reason != FinishReason::Stop {
        eprintln!("(finish_reason: {reason})");
    }
}
