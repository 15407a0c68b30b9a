//! A conversation and its prompt, exactly as WebLLM renders and tokenizes it
//! (docs/chat.md, "How WebLLM builds a prompt"; web-llm `src/conversation.ts`,
//! and `getInputData` in `src/llm_chat.ts`).
//!
//! The prompt is an array of strings, one per rendered message, each encoded
//! separately. Multi-round chat reuses the KV cache when a request's history
//! equals the conversation kept from the previous request; then only the last
//! round (new message + reply header) is rendered and prefilled.

use mlc_loader::ConvTemplate;

use super::error::ChatError;
use super::js::replace_first;
use super::openai::{ChatMessage, ContentPart, FinishReason, MessageContent};
use super::tokenizer::Tokenizer;

/// The text WebLLM puts after the assistant header for `enable_thinking: false`.
pub const EMPTY_THINKING_BLOCK: &str = "<think>\n\n</think>\n\n";

/// A template role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `user`.
    User,
    /// `assistant`.
    Assistant,
    /// `tool`.
    Tool,
}

impl Role {
    /// The key in the template's `roles` and `role_templates`.
    pub fn key(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// The placeholder of this role's content in its role template.
    fn placeholder(self) -> &'static str {
        match self {
            Role::User => "{user_message}",
            Role::Assistant => "{assistant_message}",
            Role::Tool => "{tool_message}",
        }
    }
}

/// What a conversation message holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// A finished message.
    Message(MessageContent),
    /// The open reply header the model continues from.
    ReplyHeader,
    /// The reply header followed by [`EMPTY_THINKING_BLOCK`].
    EmptyThinkingHeader,
}

/// One message of a [`Conversation`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConvMessage {
    /// The role.
    pub role: Role,
    /// The role string rendered before the content: the template's, or the
    /// message's `name` when it has one.
    pub role_str: String,
    /// The content.
    pub turn: Turn,
}

/// WebLLM's `Conversation` state: the messages and the system-message override.
/// The template is passed to each method instead of being stored, since one
/// loaded model has one template. Equality is WebLLM's
/// `compareConversationObject` (the text-completion and function-calling
/// state it also compares is constant in WebLLM's chat path).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    messages: Vec<ConvMessage>,
    system_message: Option<String>,
}

/// Token ids of a prompt, as prefilled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTokens {
    /// The ids to prefill: `system_prefix_token_ids` (first round only), then
    /// each prompt element's ids.
    pub ids: Vec<u32>,
    /// Tokens of the encoded strings only, without the prefix ids: WebLLM's
    /// `prompt_tokens` and the count its context-window check uses.
    pub prompt_tokens: usize,
}

impl Conversation {
    /// The history of a chat request (all messages but the last, which
    /// becomes the round's input), as WebLLM's
    /// `getConversationFromChatCompletionRequest` builds it.
    pub fn from_request(
        template: &ConvTemplate,
        messages: &[ChatMessage],
    ) -> Result<Conversation, ChatError> {
        let (last, history) = messages.split_last().ok_or(ChatError::EmptyMessages)?;
        if last.role != "user" && last.role != "tool" {
            return Err(ChatError::MessageOrder(
                "The last message should be from the `user` or `tool`.",
            ));
        }
        let mut conversation = Conversation::default();
        for (index, message) in history.iter().enumerate() {
            match message.role.as_str() {
                "system" if index != 0 => return Err(ChatError::SystemMessageOrder),
                "system" => {
                    conversation.system_message = Some(text_of_system(message.content.as_ref()))
                }
                "user" => conversation.append(
                    template,
                    Role::User,
                    required_content(message)?,
                    message.name.as_deref(),
                )?,
                "assistant" => match &message.content {
                    Some(content @ MessageContent::Text(_)) => conversation.append(
                        template,
                        Role::Assistant,
                        content.clone(),
                        message.name.as_deref(),
                    )?,
                    _ => return Err(ChatError::ContentType("assistant's message".to_string())),
                },
                "tool" => {
                    conversation.append(template, Role::Tool, required_content(message)?, None)?
                }
                role => return Err(ChatError::UnsupportedRole(role.to_string())),
            }
        }
        Ok(conversation)
    }

    /// Starts a round (WebLLM's `prefillStep`): appends the request's last
    /// message (a `user` message's `name` replaces its role string) and the
    /// open assistant header, followed by [`EMPTY_THINKING_BLOCK`] when
    /// `enable_thinking` is `Some(false)`.
    pub fn start_round(
        &mut self,
        template: &ConvTemplate,
        last: &ChatMessage,
        enable_thinking: Option<bool>,
    ) -> Result<(), ChatError> {
        let (role, name) = match last.role.as_str() {
            "tool" => (Role::Tool, None),
            _ => (Role::User, last.name.as_deref()),
        };
        self.append(template, role, required_content(last)?, name)?;
        let turn = if enable_thinking == Some(false) {
            Turn::EmptyThinkingHeader
        } else {
            Turn::ReplyHeader
        };
        let role_str = role_string(template, Role::Assistant, None)?;
        self.messages.push(ConvMessage { role: Role::Assistant, role_str, turn });
        Ok(())
    }

    /// Closes the open reply with the round's output text (cut at the stop
    /// string), which the next request must send back to reuse the KV cache.
    pub fn finish_reply(&mut self, text: &str) -> Result<(), ChatError> {
        match self.messages.last_mut() {
            Some(message)
                if message.turn != Turn::ReplyHeader
                    && message.turn != Turn::EmptyThinkingHeader =>
            {
                Err(ChatError::Error("Already assigned".to_string()))
            }
            Some(message) => {
                message.turn = Turn::Message(MessageContent::Text(text.to_string()));
                Ok(())
            }
            None => Err(ChatError::Error("Message error should not be 0".to_string())),
        }
    }

    /// The messages.
    pub fn messages(&self) -> &[ConvMessage] {
        &self.messages
    }

    /// The request's system message, when it sent one (`Some("")` included).
    pub fn system_message(&self) -> Option<&str> {
        self.system_message.as_deref()
    }

    /// The whole prompt (`getPromptArray`): the system prompt unless empty,
    /// then one string per message.
    pub fn prompt_array(&self, template: &ConvTemplate) -> Result<Vec<String>, ChatError> {
        self.render(template, true, 0)
    }

    /// The last round only (`getPromptArrayLastRound`): the new message and
    /// the reply header, for a KV cache that already holds the history. The
    /// separators keep their absolute message index.
    pub fn prompt_array_last_round(
        &self,
        template: &ConvTemplate,
    ) -> Result<Vec<String>, ChatError> {
        if self.messages.len() < 3 {
            return Err(ChatError::Error(
                "needs to call getPromptArray for the first message".to_string(),
            ));
        }
        self.render(template, false, self.messages.len() - 2)
    }

    /// The prompt's token ids: on the first round (empty KV cache) the
    /// template's `system_prefix_token_ids` and the whole prompt, otherwise the
    /// last round only; each element is encoded on its own, as WebLLM does.
    pub fn prompt_tokens(
        &self,
        template: &ConvTemplate,
        tokenizer: &Tokenizer,
        first_round: bool,
    ) -> Result<PromptTokens, ChatError> {
        let (mut ids, elements) = if first_round {
            (
                template.system_prefix_token_ids.clone().unwrap_or_default(),
                self.prompt_array(template)?,
            )
        } else {
            (Vec::new(), self.prompt_array_last_round(template)?)
        };
        let prefix = ids.len();
        for element in &elements {
            ids.extend(tokenizer.encode(element)?);
        }
        Ok(PromptTokens { prompt_tokens: ids.len() - prefix, ids })
    }

    /// Appends a finished message (WebLLM's `appendMessage`).
    fn append(
        &mut self,
        template: &ConvTemplate,
        role: Role,
        content: MessageContent,
        name: Option<&str>,
    ) -> Result<(), ChatError> {
        if self.messages.last().is_some_and(|message| message.turn == Turn::ReplyHeader) {
            return Err(ChatError::Error("Have unfinished reply".to_string()));
        }
        let role_str = role_string(template, role, name)?;
        self.messages.push(ConvMessage { role, role_str, turn: Turn::Message(content) });
        Ok(())
    }

    /// `getPromptArrayInternal(addSystem, startPos)`.
    fn render(
        &self,
        template: &ConvTemplate,
        add_system: bool,
        start: usize,
    ) -> Result<Vec<String>, ChatError> {
        if template.seps.is_empty() {
            return Err(ChatError::Error("Need seps to work".to_string()));
        }
        let system_message = self.system_message.as_deref().unwrap_or(&template.system_message);
        let system_prompt =
            replace_first(&template.system_template, "{system_message}", system_message);
        let mut out = Vec::with_capacity(self.messages.len() + 1);
        if add_system && !system_prompt.is_empty() {
            out.push(system_prompt.clone());
        }
        // Absent separators are ": " in WebLLM; an explicit "" is kept.
        let content_sep = template.role_content_sep.as_deref().unwrap_or(": ");
        let empty_sep = template.role_empty_sep.as_deref().unwrap_or(": ");
        for (index, message) in self.messages.iter().enumerate().skip(start) {
            let rendered = match &message.turn {
                Turn::ReplyHeader => format!("{}{empty_sep}", message.role_str),
                Turn::EmptyThinkingHeader => {
                    format!("{}{content_sep}{EMPTY_THINKING_BLOCK}", message.role_str)
                }
                Turn::Message(content) => {
                    let text = text_of(content)?;
                    let body = match template.role_templates.get(message.role.key()) {
                        // WebLLM never fills `{function_string}` (its function
                        // calling is disabled), so the placeholder always becomes "".
                        Some(role_template) => replace_first(
                            &replace_first(role_template, message.role.placeholder(), text),
                            "{function_string}",
                            "",
                        ),
                        None => text.to_string(),
                    };
                    let role_prefix = if !template.add_role_after_system_message
                        && !system_prompt.is_empty()
                        && index == 0
                    {
                        String::new()
                    } else {
                        format!("{}{content_sep}", message.role_str)
                    };
                    format!("{role_prefix}{body}{}", template.seps[index % template.seps.len()])
                }
            };
            out.push(rendered);
        }
        Ok(out)
    }
}

/// Whether a request whose history is `next` may continue on the KV cache left
/// by the previous request (whose conversation, finished, is `previous`):
/// the histories must be equal and non-empty, and (WebLLM 0.2.86) the previous
/// round must not have ended by `abort` or `length`, whose last sampled token
/// was never fed to the model. Otherwise the cache is reset and the whole
/// prompt prefilled.
pub fn can_reuse_kv_cache(
    previous: &Conversation,
    previous_finish: Option<FinishReason>,
    next: &Conversation,
) -> bool {
    let cache_complete =
        !matches!(previous_finish, Some(FinishReason::Abort | FinishReason::Length));
    cache_complete && !next.messages.is_empty() && previous == next
}

/// The role string: the message's non-empty `name`, else the template's.
fn role_string(
    template: &ConvTemplate,
    role: Role,
    name: Option<&str>,
) -> Result<String, ChatError> {
    let Some(template_str) = template.roles.get(role.key()) else {
        return Err(ChatError::Error(format!("Role is not supported: {}", role.key())));
    };
    Ok(name.filter(|name| !name.is_empty()).unwrap_or(template_str).to_string())
}

/// A user or tool message's content, which must be present.
fn required_content(message: &ChatMessage) -> Result<MessageContent, ChatError> {
    message
        .content
        .clone()
        .ok_or_else(|| ChatError::ContentType(format!("{}'s message", message.role)))
}

/// The text of a message: the string, or the single text part of a part
/// array. Image parts need an image encoder, which these models lack; WebLLM
/// reports that after the text-part count.
fn text_of(content: &MessageContent) -> Result<&str, ChatError> {
    let parts = match content {
        MessageContent::Text(text) => return Ok(text),
        MessageContent::Parts(parts) => parts,
    };
    let mut texts = text_parts(parts);
    let text = texts.next().unwrap_or("");
    if texts.next().is_some() {
        return Err(ChatError::MultipleTextContent);
    }
    if parts.iter().any(|part| matches!(part, ContentPart::ImageUrl { .. })) {
        return Err(ChatError::CannotFindImageEmbed);
    }
    Ok(text)
}

/// A system message's text: the string, or its text parts joined (OpenAI
/// allows text parts there; WebLLM would print them as `[object Object]`).
fn text_of_system(content: Option<&MessageContent>) -> String {
    match content {
        None => String::new(),
        Some(MessageContent::Text(text)) => text.clone(),
        Some(MessageContent::Parts(parts)) => text_parts(parts).collect(),
    }
}

/// The texts of the text parts.
fn text_parts(parts: &[ContentPart]) -> impl Iterator<Item = &str> {
    parts.iter().filter_map(|part| match part {
        ContentPart::Text { text } => Some(text.as_str()),
        ContentPart::ImageUrl { .. } => None,
    })
}
