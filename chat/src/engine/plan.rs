//! Request planning: what a request's fields resolve to ([`Plan`]: the
//! sampling parameters over the model's defaults, stop rules, choices, ids),
//! what its `tools` and `response_format` make of it ([`Structure`]), and each
//! choice's prompt ([`Prepared`]: the KV cache kept or reset, the context
//! window checked).

use mlc_kernels::cpu::SamplingParams;
use mlc_loader::ChatConfig;
use std::borrow::Cow;
use web_time::Instant;

use crate::conversation::{Conversation, EMPTY_THINKING_BLOCK, can_reuse_kv_cache};
use crate::error::ChatError;
use crate::grammar::{GrammarCompiler, TokenMatcher};
use crate::openai::{
    ChatCompletionRequest, ChatMessage, ChoiceLogprobs, FinishReason, GenerationConfig, StreamId,
    StreamOptions, TokenLogprob,
};
use crate::response_format::grammar_of;
use crate::stream::{OutputStream, StopConditions};
use crate::tools::{self, ToolFormat};
use crate::validate::check_context_window;

use super::{ChatEngine, RequestError, unix_seconds};

impl ChatEngine {
    /// What a request's fields resolve to.
    pub(super) fn plan(
        &self,
        generation: &GenerationConfig,
        stream: Option<bool>,
        stream_options: Option<&StreamOptions>,
        n: Option<u32>,
        started: Instant,
    ) -> Plan {
        let streaming = stream == Some(true);
        Plan {
            sampler: Sampler::new(&self.config, generation),
            stop: StopConditions::new(&self.template, generation),
            // WebLLM reads `n` for truthiness: absent and 0 both mean one choice.
            choices: n.unwrap_or(1).max(1),
            id: StreamId {
                id: uuid::Uuid::new_v4().to_string(),
                created: unix_seconds(),
                model: self.model_id.clone(),
            },
            streaming,
            include_usage: streaming
                && stream_options.and_then(|options| options.include_usage) == Some(true),
            started,
            constraint: None,
            tool_calls: None,
        }
    }

    /// What a chat request's `tools` and `response_format` make of it: the
    /// messages to render, the grammar compiled (WebLLM's
    /// `GrammarMatcherInitError` when it does not compile), and whether the
    /// reply is read as tool calls.
    pub(super) fn structure<'r>(
        &mut self,
        request: &'r ChatCompletionRequest,
    ) -> Result<Structure<'r>, RequestError> {
        let requested = || -> Result<_, ChatError> {
            let grammar = request.response_format.as_ref().map(grammar_of).transpose()?.flatten();
            let kind = request
                .response_format
                .as_ref()
                .and_then(|format| format.kind.as_deref())
                .unwrap_or("text");
            Ok((grammar, kind))
        };
        let (messages, grammar, parse, kind) = match (&request.tools, self.tools) {
            (Some(tools), Some(format)) => {
                let plan = tools::plan(format, request, tools)?;
                // The type WebLLM's error would name: Hermes calls are its `json_object`.
                let kind = if format == ToolFormat::Hermes { "json_object" } else { "grammar" };
                match plan.grammar {
                    Some(grammar) => (Cow::Owned(plan.messages), Some(grammar), plan.parse, kind),
                    // Calls not wanted (Qwen's `tool_choice: "none"`): the response format applies.
                    None => {
                        let (grammar, kind) = requested()?;
                        (Cow::Owned(plan.messages), grammar, plan.parse, kind)
                    }
                }
            }
            _ => {
                let (grammar, kind) = requested()?;
                // Manual function calling on Qwen2.5: its template has no `tool` role, so
                // results go back the way Qwen2.5's own chat template sends them.
                let manual_qwen = self.tools == Some(ToolFormat::Qwen)
                    && !self.template.roles.contains_key("tool")
                    && request.messages.iter().any(|message| message.role == "tool");
                let messages = if manual_qwen {
                    Cow::Owned(tools::qwen_tool_turns(&request.messages))
                } else {
                    Cow::Borrowed(&request.messages[..])
                };
                (messages, grammar, None, kind)
            }
        };
        let constraint = match grammar {
            None => None,
            Some(grammar) => {
                let started = Instant::now();
                let fail =
                    |cause: String| ChatError::GrammarMatcherInit { kind: kind.to_string(), cause };
                let matcher =
                    self.grammar_compiler().map_err(fail)?.matcher(&grammar).map_err(fail)?;
                Some(Constraint { matcher, init_s: started.elapsed().as_secs_f64() })
            }
        };
        Ok(Structure { messages, constraint, parse })
    }

    /// The vocabulary indexed for grammars (built on first use: it reads every
    /// token's bytes). A reply ends at the template's stop tokens.
    pub(super) fn grammar_compiler(&mut self) -> Result<&GrammarCompiler, String> {
        if self.grammars.is_none() {
            let ends = &self.template.stop_token_ids;
            if ends.is_empty() {
                return Err(
                    "the conversation template has no stop token to end a constrained reply"
                        .to_string(),
                );
            }
            let json = self.tokenizer.to_json().map_err(|error| error.to_string())?;
            self.grammars =
                Some(GrammarCompiler::new(json.as_bytes(), self.config.vocab_size, ends)?);
        }
        Ok(self.grammars.as_ref().expect("built above"))
    }

    /// A chat round's prompt (WebLLM's `prefill`): reuses the KV cache when the
    /// request's history equals the kept conversation, else resets it. A
    /// round `resumed` after output ids starts afresh and prefills them too.
    pub(super) fn prepare_chat(
        &mut self,
        messages: &[ChatMessage],
        enable_thinking: Option<bool>,
        kept: Kept,
        stop: &StopConditions,
        resumed: &[u32],
    ) -> Result<Prepared, RequestError> {
        let history = Conversation::from_request(&self.template, messages)?;
        // A context the model emptied (a recurrent model's dropped steps) has
        // nothing to reuse.
        let reuse = resumed.is_empty()
            && self.model.position() > 0
            && can_reuse_kv_cache(&kept.conversation, kept.finish, &history);
        let mut conversation = match reuse {
            true => kept.conversation,
            false => {
                self.model.reset();
                history
            }
        };
        let last = messages.last().ok_or(ChatError::EmptyMessages)?;
        conversation.start_round(&self.template, last, enable_thinking)?;
        let mut prompt = conversation.prompt_tokens(&self.template, &self.tokenizer, !reuse)?;
        prompt.ids.extend_from_slice(resumed);
        self.check_fits(prompt.ids.len())?;
        // WebLLM puts the empty thinking block's ids into the output itself.
        let preloaded = match enable_thinking {
            Some(false) => self.tokenizer.encode(EMPTY_THINKING_BLOCK)?,
            _ => Vec::new(),
        };
        let output =
            OutputStream::resumed(self.tokenizer.clone(), stop.clone(), preloaded, resumed)?;
        Ok(Prepared {
            ids: prompt.ids,
            prompt_tokens: prompt.prompt_tokens,
            output,
            conversation: Some(conversation),
        })
    }

    /// A text completion's prompt: the raw text on an empty KV cache.
    pub(super) fn prepare_completion(
        &mut self,
        prompt: &str,
        stop: &StopConditions,
    ) -> Result<Prepared, RequestError> {
        self.model.reset();
        let ids = self.tokenizer.encode(prompt)?;
        self.check_fits(ids.len())?;
        let output = OutputStream::new(self.tokenizer.clone(), stop.clone());
        Ok(Prepared { prompt_tokens: ids.len(), ids, output, conversation: None })
    }

    /// WebLLM's context check before prefill. The count includes
    /// `system_prefix_token_ids` (WebLLM leaves them out and would then
    /// overrun the cache by their number).
    pub(super) fn check_fits(&self, prompt_ids: usize) -> Result<(), ChatError> {
        check_context_window(prompt_ids, self.model.position(), &self.config)
    }
}

/// A request's sampling parameters resolved against the model's defaults.
#[derive(Debug, Clone)]
pub(super) struct Sampler {
    pub(super) params: SamplingParams,
    /// `(token id, bias)`, in WebLLM's application order.
    pub(super) bias: Vec<(u32, f32)>,
    /// `Some(top_logprobs)` when `logprobs` was requested.
    pub(super) logprobs: Option<usize>,
}

impl Sampler {
    /// Config values, replaced by every field the request sets
    /// (docs/sampling.md, "Parameters"): setting one of the frequency and presence
    /// penalties zeroes the other.
    pub(super) fn new(config: &ChatConfig, request: &GenerationConfig) -> Sampler {
        let or_config =
            |value: Option<f64>, default: f32| value.map_or(default, |value| value as f32);
        let (frequency_penalty, presence_penalty) =
            match (request.frequency_penalty, request.presence_penalty) {
                (None, None) => (config.frequency_penalty, config.presence_penalty),
                (frequency, presence) => (or_config(frequency, 0.0), or_config(presence, 0.0)),
            };
        let params = SamplingParams {
            temperature: or_config(request.temperature, config.temperature),
            top_p: or_config(request.top_p, config.top_p),
            repetition_penalty: or_config(request.repetition_penalty, config.repetition_penalty),
            presence_penalty,
            frequency_penalty,
        };
        // Ids JS would not find in the logits array (negative, huge) change nothing there either.
        let bias = request
            .logit_bias
            .iter()
            .flat_map(|bias| bias.token_biases())
            .filter_map(|(id, bias)| u32::try_from(id).ok().map(|id| (id, bias as f32)))
            .collect();
        let logprobs = match request.logprobs {
            Some(true) => Some(request.top_logprobs.map_or(0, |top| top.max(0) as usize)),
            _ => None,
        };
        Sampler { params, bias, logprobs }
    }

    /// Whether the device's argmax gives the token WebLLM would sample: greedy,
    /// no bias or penalty to apply, no probabilities wanted, and no padded
    /// vocabulary to mask. (Exactly tied maxima, which WebLLM breaks with the
    /// uniform, go to the lowest id.)
    pub(super) fn greedy_argmax(&self, active_vocab: Option<usize>, vocab: usize) -> bool {
        self.params.is_greedy()
            && self.bias.is_empty()
            && !self.params.penalties_active()
            && self.logprobs.is_none()
            && active_vocab.is_none_or(|active| active >= vocab)
    }

    /// A delta chunk's `logprobs`: the latest token's entry when requested
    /// (empty with `top_logprobs: 0`, WebLLM's quirk), else `null`.
    pub(super) fn chunk_logprobs(&self, latest: Option<&TokenLogprob>) -> Option<ChoiceLogprobs> {
        self.logprobs.map(|_| ChoiceLogprobs { content: latest.cloned().into_iter().collect() })
    }
}

/// What `tools` and `response_format` made of a chat request.
pub(super) struct Structure<'r> {
    /// The messages the prompt is built from (rewritten for tool calling).
    pub(super) messages: Cow<'r, [ChatMessage]>,
    pub(super) constraint: Option<Constraint>,
    /// How to read tool calls from the reply.
    pub(super) parse: Option<ToolFormat>,
}

/// A request's compiled grammar: each choice starts from a copy of `matcher`.
pub(super) struct Constraint {
    pub(super) matcher: TokenMatcher,
    /// Seconds the compilation took (`usage.extra.grammar_init_s`).
    pub(super) init_s: f64,
}

/// A request's fields, resolved once for all its choices.
pub(super) struct Plan {
    pub(super) sampler: Sampler,
    pub(super) stop: StopConditions,
    pub(super) choices: u32,
    /// The response id, shared by all chunks.
    pub(super) id: StreamId,
    pub(super) streaming: bool,
    pub(super) include_usage: bool,
    pub(super) started: Instant,
    /// The reply's grammar (structured output), if any.
    pub(super) constraint: Option<Constraint>,
    /// How tool calls are read from the reply, if they are.
    pub(super) tool_calls: Option<ToolFormat>,
}

/// What the previous request left on the KV cache.
pub(super) struct Kept {
    pub(super) conversation: Conversation,
    pub(super) finish: Option<FinishReason>,
}

/// A round ready to prefill.
pub(super) struct Prepared {
    /// The ids to prefill.
    pub(super) ids: Vec<u32>,
    /// `usage.prompt_tokens` of the round.
    pub(super) prompt_tokens: usize,
    pub(super) output: OutputStream,
    /// The conversation to close with the reply and keep (chat only).
    pub(super) conversation: Option<Conversation>,
}

/// A grammar matcher failing mid-reply (a sampled token it did not allow, or
/// a dead end): a bug, reported rather than hidden.
pub(super) fn grammar_failure(cause: String) -> RequestError {
    ChatError::Error(format!("Grammar matcher failed during generation: {cause}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_one_penalty_zeroes_the_other_and_bias_keys_parse_as_in_js() {
        let config = ChatConfig::from_json(
            r#"{"model_type": "llama", "quantization": "q4f16_1", "vocab_size": 32,
                "temperature": 0.7, "top_p": 0.8, "frequency_penalty": 0.5, "presence_penalty": 0.25}"#,
        )
        .unwrap();
        let defaults = Sampler::new(&config, &GenerationConfig::default());
        assert_eq!(
            (defaults.params.frequency_penalty, defaults.params.presence_penalty),
            (0.5, 0.25)
        );
        assert_eq!((defaults.params.temperature, defaults.params.top_p), (0.7, 0.8));
        let request: GenerationConfig =
            serde_json::from_str(r#"{"presence_penalty": 1.0, "temperature": 0, "logit_bias": {"7": 2, "-1": 5, "3x": -1}}"#).unwrap();
        let sampler = Sampler::new(&config, &request);
        assert_eq!((sampler.params.frequency_penalty, sampler.params.presence_penalty), (0.0, 1.0));
        assert_eq!(sampler.params.temperature, 0.0);
        assert_eq!(sampler.bias, vec![(7, 2.0), (3, -1.0)]);
        assert!(
            !sampler.greedy_argmax(None, 32),
            "a bias needs the sampling chain, not a plain argmax"
        );
    }
}
