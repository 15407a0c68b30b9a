//! `chat`, `complete` and `render-prompt`: the chat engine from the terminal.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use mlc_chat::{
    ChatCompletionRequest, ChatEngine, ChatMessage, CompletionRequest, Conversation, FinishReason,
    GenerationConfig, StreamOptions, Tokenizer, Usage,
};
use mlc_loader::{Artifact, CONFIG_FILE, ChatConfig};
use pollster::FutureExt as _;

use crate::args::{Device, SourceArgs};
use crate::{ctrl_c, load};

/// The model and the engine that runs it.
#[derive(Args)]
pub struct EngineArgs {
    #[command(flatten)]
    pub(crate) source: SourceArgs,
    /// Which engine computes.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub(crate) device: Device,
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
    load_engine_from(&load::open(&args.source)?, args.device)
}

/// [`load_engine`] for an opened artifact.
pub(super) fn load_engine_from(artifact: &Artifact, device: Device) -> Result<ChatEngine> {
    eprintln!("loading {} ...", artifact.source());
    let started = std::time::Instant::now();
    let model = load::load(artifact, device)?;
    let engine = ChatEngine::new(model, artifact).context("setting up the chat engine")?;
    eprintln!("loaded {} in {:.1} s", engine.model_id(), started.elapsed().as_secs_f64());
    Ok(engine)
}

/// What `/help` prints.
const HELP: &str = "\
Type a message and press Enter; the reply streams below it. Ctrl-C stops a
reply; at an empty prompt, twice, it quits. Arrows edit the line and recall
earlier ones.
  \"\"\"             start a multi-line message; it ends at a line ending with \"\"\"
  /set system TEXT  use TEXT as the system prompt (starts a new conversation; no TEXT: none)
  /stats            the finish reason and usage of the last reply, as JSON
  /reset            start a new conversation
  /help             this list
  /exit, /bye       quit (so does end of input)";

/// Interactive chat on stdin/stdout: one user message per line (or a
/// `"""` block), replies streamed as they are generated, each followed by a
/// one-line speed summary on stderr; the conversation is kept (and with it
/// the KV cache) until `/reset`. Lines starting with `/` are commands
/// ([`HELP`]), never sent to the model. `/exit` or end of input quits.
pub fn chat(args: &ChatArgs) -> Result<()> {
    let mut engine = load_engine(&args.engine)?;
    let mut source: Box<dyn LineSource> = if io::stdin().is_terminal() {
        eprintln!("Type a message and press Enter; /help lists the commands.");
        Box::new(Terminal(rustyline::DefaultEditor::new().context("setting up line editing")?))
    } else {
        Box::new(Piped(io::stdin().lock()))
    };
    // After the editor: rustyline takes SIGINT when it is made (it reads
    // Ctrl-C as a key at the prompt anyway); this handler must be the one left.
    ctrl_c::install(engine.interrupt_handle(), io::stdin().is_terminal())?;
    let mut system = args.system.clone();
    let mut messages = conversation_start(system.as_deref());
    let mut last: Option<(FinishReason, Option<Usage>)> = None;
    loop {
        let input = match read_message(source.as_mut())? {
            Input::End => return Ok(()),
            Input::Interrupted if ctrl_c::at_the_prompt() => return Ok(()),
            Input::Interrupted => continue,
            Input::Line(input) => input,
        };
        ctrl_c::typed();
        match Command::parse(&input) {
            Some(Command::Empty) => continue,
            Some(Command::Exit) => return Ok(()),
            Some(Command::Help) => eprintln!("{HELP}"),
            Some(Command::Reset) => {
                messages = conversation_start(system.as_deref());
                engine.reset();
                eprintln!("(new conversation)");
            }
            Some(Command::SetSystem(text)) => {
                system = text;
                messages = conversation_start(system.as_deref());
                engine.reset();
                match &system {
                    Some(_) => eprintln!("(system prompt set; new conversation)"),
                    None => eprintln!("(no system prompt; new conversation)"),
                }
            }
            Some(Command::Stats) => match &last {
                Some((reason, usage)) => report(true, *reason, usage.clone()),
                None => eprintln!("(no reply yet)"),
            },
            Some(Command::Unknown(name)) => {
                eprintln!(
                    "unknown command {name}; /help lists them (a \"\"\" block sends any text)"
                );
            }
            None => {
                messages.push(ChatMessage::new("user", &input));
                match reply(&mut engine, &args.sampling, &messages)? {
                    Ok((content, reason, usage)) => {
                        messages.push(ChatMessage::new("assistant", &content));
                        report(args.sampling.stats, reason, usage.clone());
                        if let Some(usage) = &usage {
                            eprintln!("{}", speed_summary(usage));
                        }
                        last = Some((reason, usage));
                    }
                    // A bad request (e.g. a conversation past the context window) leaves
                    // the history as it was; the user can go on or /reset.
                    Err(error) => {
                        messages.pop();
                        eprintln!("error: {error}");
                    }
                }
            }
        }
    }
}

/// The messages a conversation starts with: the system prompt, if any.
fn conversation_start(system: Option<&str>) -> Vec<ChatMessage> {
    system.map(|system| ChatMessage::new("system", system)).into_iter().collect()
}

/// Streams the reply to `messages` to stdout: its text, finish reason and
/// usage, or a client error (the engine refused the request).
#[allow(clippy::type_complexity)]
fn reply(
    engine: &mut ChatEngine,
    sampling: &SamplingArgs,
    messages: &[ChatMessage],
) -> Result<Result<(String, FinishReason, Option<Usage>), mlc_chat::RequestError>> {
    let request = ChatCompletionRequest {
        messages: messages.to_vec(),
        stream: Some(true),
        // Always: the speed summary needs it.
        stream_options: Some(StreamOptions { include_usage: Some(true) }),
        seed: sampling.seed(),
        generation: sampling.generation(),
        ..ChatCompletionRequest::default()
    };
    let mut printer = DeltaPrinter::new(engine);
    let result = ctrl_c::while_generating(|| {
        engine
            .chat_completion(&request, |chunk| {
                for choice in &chunk.choices {
                    printer.print(choice.delta.content.as_deref().unwrap_or(""));
                }
                printer.usage(chunk.usage.as_ref());
            })
            .block_on()
    });
    printer.finish()?;
    match result {
        Ok(reply) => {
            let choice = &reply.choices[0];
            let content = choice.message.content.clone().unwrap_or_default();
            Ok(Ok((content, choice.finish_reason, printer.usage)))
        }
        Err(error) if error.is_client_error() => Ok(Err(error)),
        Err(error) => Err(error.into()),
    }
}

/// A line of the chat that is a command rather than a message.
#[derive(Debug, PartialEq)]
enum Command {
    Empty,
    Exit,
    Help,
    Reset,
    /// `/set system TEXT`; `None` clears the system prompt.
    SetSystem(Option<String>),
    Stats,
    Unknown(String),
}

impl Command {
    /// The command `input` is, or `None` for a message to send.
    fn parse(input: &str) -> Option<Command> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Some(Command::Empty);
        }
        // A `"""` block is always a message, whatever it starts with.
        if !trimmed.starts_with('/') || input.contains('\n') {
            return None;
        }
        let (name, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
        Some(match (name, rest.trim()) {
            ("/exit" | "/bye" | "/quit", _) => Command::Exit,
            ("/help" | "/?", _) => Command::Help,
            ("/reset" | "/clear", _) => Command::Reset,
            ("/stats", _) => Command::Stats,
            ("/set", rest) if rest == "system" || rest.starts_with("system ") => {
                let text = rest["system".len()..].trim();
                Command::SetSystem((!text.is_empty()).then(|| text.to_string()))
            }
            _ => Command::Unknown(name.to_string()),
        })
    }
}

/// The delimiter of a multi-line message, as in `ollama run`.
const BLOCK: &str = "\"\"\"";

/// What reading from the user brought.
#[derive(Debug, PartialEq)]
enum Input {
    /// A line, or a whole message.
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// End of input (Ctrl-D, or the end of a pipe).
    End,
}

/// Where the chat's lines come from.
trait LineSource {
    /// The next line, without its ending; `prompt` is shown first where it means something.
    fn line(&mut self, prompt: &str) -> Result<Input>;
}

/// A terminal: rustyline's line editing and history.
struct Terminal(rustyline::DefaultEditor);

impl LineSource for Terminal {
    fn line(&mut self, prompt: &str) -> Result<Input> {
        use rustyline::error::ReadlineError;
        match self.0.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    // A history that cannot grow is no reason to stop the chat.
                    let _ = self.0.add_history_entry(line.as_str());
                }
                Ok(Input::Line(line))
            }
            Err(ReadlineError::Interrupted) => Ok(Input::Interrupted),
            Err(ReadlineError::Eof) => Ok(Input::End),
            Err(error) => Err(error).context("reading the terminal"),
        }
    }
}

/// A pipe or a file: plain lines, no prompt.
struct Piped<R>(R);

impl<R: BufRead> LineSource for Piped<R> {
    fn line(&mut self, _prompt: &str) -> Result<Input> {
        let mut line = String::new();
        if self.0.read_line(&mut line).context("reading stdin")? == 0 {
            return Ok(Input::End);
        }
        Ok(Input::Line(line.trim_end_matches(['\n', '\r']).to_string()))
    }
}

/// The next message: one line, or the lines of a `"""` block (from the line
/// that starts with `"""` to the one that ends with it, the delimiters
/// dropped). End of input inside a block sends what was typed; Ctrl-C drops it.
fn read_message(source: &mut dyn LineSource) -> Result<Input> {
    let first = match source.line("> ")? {
        Input::Line(line) => line,
        other => return Ok(other),
    };
    let Some(opened) = first.trim_start().strip_prefix(BLOCK) else {
        return Ok(Input::Line(first));
    };
    let mut block = Vec::new();
    let mut line = opened.to_string();
    loop {
        if let Some(last) = line.trim_end().strip_suffix(BLOCK) {
            block.push(last.to_string());
            break;
        }
        block.push(line);
        match source.line("... ")? {
            Input::Line(next) => line = next,
            Input::Interrupted => return Ok(Input::Interrupted),
            Input::End => break,
        }
    }
    Ok(Input::Line(block.join("\n").trim_matches('\n').to_string()))
}

/// `(12 tokens at 35.2 tok/s; prompt 37 tokens at 512.0 tok/s, first token after 0.07 s)`.
fn speed_summary(usage: &Usage) -> String {
    let extra = &usage.extra;
    format!(
        "({} tokens at {:.1} tok/s; prompt {} tokens at {:.1} tok/s, first token after {:.2} s)",
        usage.completion_tokens,
        extra.decode_tokens_per_s,
        usage.prompt_tokens,
        extra.prefill_tokens_per_s,
        extra.time_to_first_token_s
    )
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
    interrupt: Arc<AtomicBool>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognised_and_messages_are_not() {
        assert_eq!(Command::parse("  "), Some(Command::Empty));
        assert_eq!(Command::parse("/bye"), Some(Command::Exit));
        assert_eq!(
            Command::parse("/set system Be brief. "),
            Some(Command::SetSystem(Some("Be brief.".to_string())))
        );
        assert_eq!(Command::parse("/set system"), Some(Command::SetSystem(None)));
        assert_eq!(Command::parse("/set foo"), Some(Command::Unknown("/set".to_string())));
        assert_eq!(Command::parse("/usr/bin"), Some(Command::Unknown("/usr/bin".to_string())));
        assert_eq!(Command::parse("/usr/bin\nis a folder"), None);
        assert_eq!(Command::parse("hello /help"), None);
    }

    #[test]
    fn a_triple_quoted_block_is_one_message() {
        let line = |text: &str| Input::Line(text.to_string());
        let mut input = Piped(io::Cursor::new("\"\"\"first\nsecond\n\nthird\"\"\"\nnext\n"));
        assert_eq!(read_message(&mut input).unwrap(), line("first\nsecond\n\nthird"));
        assert_eq!(read_message(&mut input).unwrap(), line("next"));
        assert_eq!(read_message(&mut input).unwrap(), Input::End);
        let mut unclosed = Piped(io::Cursor::new("\"\"\"\nonly\n"));
        assert_eq!(read_message(&mut unclosed).unwrap(), line("only"));
    }
}
