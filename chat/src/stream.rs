//! One round's output as WebLLM builds it: stop conditions, the output text
//! and the stream deltas (docs/sampling.md, "Stop rules" and "Streaming deltas").
//!
//! After every sampled token WebLLM re-decodes all of the round's output ids,
//! cuts the text at a stop string, and streams the part of the text past what
//! it streamed before. Re-decoding the whole list handles multi-token UTF-8
//! characters and SentencePiece space rules for free; a delta is held back
//! while the text ends in an incomplete character (trailing U+FFFD). Partial
//! stop strings are *not* held back: what has been streamed stays streamed.

use mlc_loader::ConvTemplate;

use super::js::{utf16_index_to_byte, utf16_len};
use super::openai::{FinishReason, GenerationConfig, Stop};
use super::tokenizer::{Tokenizer, TokenizerError};

/// When a round stops, apart from interruption and a full context window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopConditions {
    /// Sampling one of these stops without appending it.
    pub stop_token_ids: Vec<u32>,
    /// The output text is cut at the first of these (in list order) it contains.
    pub stop_strs: Vec<String>,
    /// Stop with `length` once the output holds this many ids.
    pub max_tokens: Option<usize>,
}

impl StopConditions {
    /// WebLLM's stop conditions for a (validated) request: the template's stop
    /// tokens and stop strings plus the request's `stop`, all dropped by
    /// `ignore_eos`, and `max_tokens`. Text completions use the template's lists too.
    pub fn new(template: &ConvTemplate, request: &GenerationConfig) -> StopConditions {
        // Validation rejects max_tokens <= 0; WebLLM's loop has no limit without one.
        let max_tokens = request.max_tokens.and_then(|max| usize::try_from(max).ok());
        if request.ignore_eos == Some(true) {
            return StopConditions { max_tokens, ..StopConditions::default() };
        }
        let mut stop_strs = template.stop_str.clone();
        match &request.stop {
            // WebLLM tests `stop` for truthiness, so a single "" adds nothing
            // (while [""] adds an empty stop string, which stops at once).
            Some(Stop::One(text)) if !text.is_empty() => stop_strs.push(text.clone()),
            Some(Stop::Many(texts)) => stop_strs.extend(texts.iter().cloned()),
            _ => {}
        }
        StopConditions { stop_token_ids: template.stop_token_ids.clone(), stop_strs, max_tokens }
    }
}

/// The output of one round (one choice): its token ids, its text, why it
/// finished, and what has been streamed of it.
#[derive(Debug, Clone)]
pub struct OutputStream {
    tokenizer: Tokenizer,
    stop: StopConditions,
    ids: Vec<u32>,
    preloaded: usize,
    text: String,
    finish_reason: Option<FinishReason>,
    streamed_utf16: usize,
}

impl OutputStream {
    /// An empty output.
    pub fn new(tokenizer: Tokenizer, stop: StopConditions) -> OutputStream {
        OutputStream::with_preloaded(tokenizer, stop, Vec::new())
    }

    /// An output that starts with `ids` already in it: WebLLM puts the tokens
    /// of the empty thinking block there for `enable_thinking: false`. They
    /// count towards `max_tokens` and appear in the text once a token is pushed.
    pub fn with_preloaded(
        tokenizer: Tokenizer,
        stop: StopConditions,
        ids: Vec<u32>,
    ) -> OutputStream {
        let preloaded = ids.len();
        OutputStream {
            tokenizer,
            stop,
            ids,
            preloaded,
            text: String::new(),
            finish_reason: None,
            streamed_utf16: 0,
        }
    }

    /// An output continued after `generated`, the ids a previous run of the
    /// same round produced (after the `preloaded` ones) and whose text it
    /// streamed: the text is theirs, and the next delta starts after it.
    /// (Without any, nothing was streamed: the preloaded text comes first.)
    pub fn resumed(
        tokenizer: Tokenizer,
        stop: StopConditions,
        preloaded: Vec<u32>,
        generated: &[u32],
    ) -> Result<OutputStream, TokenizerError> {
        let mut output = OutputStream::with_preloaded(tokenizer, stop, preloaded);
        if generated.is_empty() {
            return Ok(output);
        }
        output.ids.extend_from_slice(generated);
        output.text = output.tokenizer.decode(&output.ids)?;
        output.streamed_utf16 = utf16_len(&output.text);
        Ok(output)
    }

    /// Takes a sampled token (WebLLM's `processNextToken`): a stop token
    /// finishes the round and is not appended; otherwise the id is appended,
    /// the text re-decoded and cut at a stop string; then `max_tokens` is checked.
    ///
    /// # Panics
    /// If the round has already finished.
    pub fn push(&mut self, id: u32) -> Result<(), TokenizerError> {
        assert!(self.finish_reason.is_none(), "OutputStream::push after the round finished");
        if self.stop.stop_token_ids.contains(&id) {
            self.finish_reason = Some(FinishReason::Stop);
        } else {
            self.ids.push(id);
        }
        self.text = self.tokenizer.decode(&self.ids)?;
        // WebLLM takes the first stop string in list order that occurs, and cuts at its last occurrence.
        if let Some(position) =
            self.stop.stop_strs.iter().find_map(|stop| self.text.rfind(stop.as_str()))
        {
            self.text.truncate(position);
            self.finish_reason = Some(FinishReason::Stop);
        }
        if self.stop.max_tokens.is_some_and(|max| self.ids.len() >= max) {
            self.finish_reason = Some(FinishReason::Length);
        }
        Ok(())
    }

    /// Whether one of the next `pushes` tokens ends the round whatever they
    /// are: they reach `max_tokens`.
    pub fn ends_within(&self, pushes: usize) -> bool {
        self.stop.max_tokens.is_some_and(|max| self.ids.len() + pushes >= max)
    }

    /// Ends the round for a reason found outside: `Abort` when interrupted,
    /// `Length` when the KV cache reached the context window (WebLLM checks
    /// that after [`push`](Self::push) and lets it override the reason).
    pub fn finish(&mut self, reason: FinishReason) {
        self.finish_reason = Some(reason);
    }

    /// The next stream delta (WebLLM's `_getChunk`), to be taken after each
    /// step: `None` while the text ends in a number of U+FFFD that is not a
    /// multiple of 4 (an unfinished character; the text comes later in one
    /// piece), else the text past what was streamed before, possibly empty.
    pub fn next_delta(&mut self) -> Option<String> {
        let trailing_replacements =
            self.text.chars().rev().take_while(|c| *c == '\u{FFFD}').count();
        if trailing_replacements % 4 != 0 {
            return None;
        }
        // WebLLM slices by UTF-16 code units; the text before the slice point
        // is normally what was streamed, so the slice falls on a char boundary.
        let start = utf16_index_to_byte(&self.text, self.streamed_utf16);
        self.streamed_utf16 = utf16_len(&self.text);
        Some(self.text[start..].to_string())
    }

    /// The output text so far, cut at a stop string (the final reply once finished).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// All output ids: the preloaded ones, then those appended (never a stop token).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The appended (generated) ids, without preloaded ones: the tokens that
    /// repetition penalties count.
    pub fn generated_ids(&self) -> &[u32] {
        &self.ids[self.preloaded..]
    }

    /// Why the round finished, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish_reason
    }
}
