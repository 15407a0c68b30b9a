//! Tool calling: how a request with `tools` is put to the model and how its
//! reply becomes OpenAI `tool_calls`, in the two formats spoken here.
//!
//! - **Hermes** (WebLLM's `functionCallingModelIds`): WebLLM's rewriting — its
//!   system prompt with the tools as `JSON.stringify` prints them, and a reply
//!   that is a JSON array of `{"arguments", "name"}`; the caller may set
//!   neither a system message nor `response_format`. Here the array's items are
//!   also held to each tool's `parameters` schema.
//! - **Qwen2.5** (`qwen2` conversation template): the format of Qwen2.5's own
//!   chat template — the tools listed in the system message, calls as
//!   `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>` blocks, tool
//!   results sent back in a user turn as `<tool_response>` blocks. The grammar
//!   lets the reply be either text (not starting with `<`) or calls whose
//!   arguments match the tool's schema; `tool_choice` `"required"` or a named
//!   function allows only calls, `"none"` leaves the reply free.

use mlc_loader::ConvTemplate;
use serde_json::Value;

use super::error::ChatError;
use super::grammar::Grammar;
use super::openai::{
    ChatCompletionRequest, ChatMessage, ContentPart, FunctionCall, MessageContent, Tool, ToolCall,
    ToolChoice,
};
use super::tool_models::FUNCTION_CALLING_MODEL_IDS;

/// The tool-call format of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// WebLLM's Hermes-2-Pro / Hermes-3 rewriting.
    Hermes,
    /// Qwen2.5's native `<tool_call>` blocks.
    Qwen,
}

/// The format a model calls tools in, if it can.
pub fn tool_format(model_id: &str, template: &ConvTemplate) -> Option<ToolFormat> {
    if FUNCTION_CALLING_MODEL_IDS.contains(&model_id) {
        Some(ToolFormat::Hermes)
    } else if template.name.as_deref() == Some("qwen2") {
        Some(ToolFormat::Qwen)
    } else {
        None
    }
}

/// A tool request made ready: the messages the prompt is built from, the
/// grammar of the reply, and whether the reply is parsed into calls.
#[derive(Debug, Clone)]
pub struct ToolPlan {
    /// The request's messages rewritten for the format.
    pub messages: Vec<ChatMessage>,
    /// What the reply must match (`None`: free text).
    pub grammar: Option<Grammar>,
    /// How to read calls out of the reply (`None`: the reply stays text).
    pub parse: Option<ToolFormat>,
}

/// WebLLM's request checks for Hermes tool calling (after the model check).
pub fn check_hermes_request(request: &ChatCompletionRequest) -> Result<(), ChatError> {
    if let Some(format) = &request.response_format {
        return Err(ChatError::CustomResponseFormat(
            serde_json::to_string(format).unwrap_or_default(),
        ));
    }
    if request.messages.first().is_some_and(|message| message.role == "system") {
        return Err(ChatError::CustomSystemPrompt);
    }
    Ok(())
}

/// Prepares a request with `tools` for a model of `format`.
pub fn plan(
    format: ToolFormat,
    request: &ChatCompletionRequest,
    tools: &[Tool],
) -> Result<ToolPlan, ChatError> {
    match format {
        ToolFormat::Hermes => {
            check_hermes_request(request)?;
            let mut messages = vec![ChatMessage::new("system", &hermes_system_prompt(tools))];
            messages.extend(request.messages.iter().cloned());
            let grammar = Grammar::JsonSchema(
                serde_json::json!({"type": "array", "items": call_schemas(tools, "arguments")}),
            );
            Ok(ToolPlan { messages, grammar: Some(grammar), parse: Some(ToolFormat::Hermes) })
        }
        ToolFormat::Qwen => {
            let choice = QwenChoice::of(request.tool_choice.as_ref(), tools)?;
            let grammar = match &choice {
                QwenChoice::None => None,
                QwenChoice::Auto => Some(Grammar::Lark(qwen_grammar(tools, true))),
                QwenChoice::Required(tools) => Some(Grammar::Lark(qwen_grammar(tools, false))),
            };
            let parse = (choice != QwenChoice::None).then_some(ToolFormat::Qwen);
            Ok(ToolPlan { messages: qwen_messages(&request.messages, tools), grammar, parse })
        }
    }
}

/// WebLLM's `hermes2FunctionCallingSystemPrompt` with the tools filled in.
fn hermes_system_prompt(tools: &[Tool]) -> String {
    const SCHEMA: &str = r#"{"properties": {"arguments": {"title": "Arguments", "type": "object"}, "name": {"title": "Name", "type": "string"}}, "required": ["arguments", "name"], "title": "FunctionCall", "type": "object"}"#;
    let tools = json_stringify(&serde_json::to_value(tools).unwrap_or_default());
    format!(
        "You are a function calling AI model. You are \nprovided with function signatures within <tools></tools> XML tags. \
         You may call one or more functions \nto assist with the user query. Don't make assumptions about what values \
         to plug into functions. Here \nare the available tools: <tools> {tools}  </tools>. \nUse the following \
         pydantic model json schema for each tool call you will make: \n{SCHEMA} For each function call return a json \
         object."
    )
}

/// One schema per tool for a call object `{name, arguments}` (keys in the
/// order given by `first`), as an `anyOf`.
fn call_schemas(tools: &[Tool], first: &str) -> Value {
    let calls: Vec<Value> = tools
        .iter()
        .map(|tool| {
            let name = serde_json::json!({"const": tool.function.name});
            let arguments = tool
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            let properties = match first {
                "arguments" => serde_json::json!({"arguments": arguments, "name": name}),
                _ => serde_json::json!({"name": name, "arguments": arguments}),
            };
            serde_json::json!({
                "type": "object",
                "properties": properties,
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    serde_json::json!({"anyOf": calls})
}

/// What `tool_choice` asks of a Qwen reply.
#[derive(Debug, Clone, PartialEq)]
enum QwenChoice {
    /// No calls: free text, not parsed.
    None,
    /// Text or calls.
    Auto,
    /// Calls only, to these tools.
    Required(Vec<Tool>),
}

impl QwenChoice {
    fn of(choice: Option<&ToolChoice>, tools: &[Tool]) -> Result<QwenChoice, ChatError> {
        match choice {
            None => Ok(QwenChoice::Auto),
            Some(ToolChoice::Mode(mode)) => match mode.as_str() {
                "none" => Ok(QwenChoice::None),
                "auto" => Ok(QwenChoice::Auto),
                "required" => Ok(QwenChoice::Required(tools.to_vec())),
                other => Err(ChatError::Error(format!("Unsupported tool_choice: {other}"))),
            },
            Some(ToolChoice::Function { function, .. }) => {
                let named: Vec<Tool> = tools
                    .iter()
                    .filter(|tool| tool.function.name == function.name)
                    .cloned()
                    .collect();
                if named.is_empty() {
                    return Err(ChatError::Error(format!(
                        "tool_choice names a function not in tools: {}",
                        function.name
                    )));
                }
                Ok(QwenChoice::Required(named))
            }
        }
    }
}

/// Qwen2.5's default system message when tools are given.
const QWEN_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// The messages as Qwen2.5's chat template renders them with tools: the tool
/// list appended to the system message, assistant calls as `<tool_call>`
/// blocks, runs of tool results as one user turn of `<tool_response>` blocks.
fn qwen_messages(messages: &[ChatMessage], tools: &[Tool]) -> Vec<ChatMessage> {
    let (system, rest) = match messages.first() {
        Some(first) if first.role == "system" => (text_of(first), &messages[1..]),
        _ => (QWEN_SYSTEM.to_string(), messages),
    };
    let listed: Vec<String> = tools
        .iter()
        .map(|tool| python_json(&serde_json::to_value(tool).unwrap_or_default()))
        .collect();
    let system = format!(
        "{system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with \
         function signatures within <tools></tools> XML tags:\n<tools>\n{}\n</tools>\n\nFor each function call, return a \
         json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": \
         <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>",
        listed.join("\n")
    );
    let mut out = vec![ChatMessage::new("system", &system)];
    out.extend(qwen_tool_turns(rest));
    out
}

/// The turns of a Qwen2.5 conversation as its own chat template writes tool
/// traffic: an assistant's calls as `<tool_call>` blocks after its text, and
/// each run of `tool` results as one user turn of `<tool_response>` blocks.
/// Also used without `tools` (manual function calling), since the `qwen2`
/// conversation template has no `tool` role.
pub fn qwen_tool_turns(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for message in messages {
        match message.role.as_str() {
            "assistant" if message.tool_calls.as_ref().is_some_and(|calls| !calls.is_empty()) => {
                let text = text_of(message);
                let calls: Vec<String> =
                    message.tool_calls.iter().flatten().map(qwen_call_block).collect();
                let content = if text.is_empty() {
                    calls.join("\n")
                } else {
                    format!("{text}\n{}", calls.join("\n"))
                };
                out.push(ChatMessage {
                    content: Some(MessageContent::Text(content)),
                    tool_calls: None,
                    ..message.clone()
                });
            }
            "tool" => {
                let block = format!("<tool_response>\n{}\n</tool_response>", text_of(message));
                match out.last_mut() {
                    Some(previous)
                        if previous.role == "user"
                            && previous.tool_call_id.as_deref() == Some(TOOL_RESULTS) =>
                    {
                        let joined = format!("{}\n{block}", text_of(previous));
                        previous.content = Some(MessageContent::Text(joined));
                    }
                    _ => out.push(ChatMessage {
                        tool_call_id: Some(TOOL_RESULTS.to_string()),
                        ..ChatMessage::new("user", &block)
                    }),
                }
            }
            _ => out.push(message.clone()),
        }
    }
    out
}

/// The `tool` role of the ChatML-style Hermes templates (MLC's
/// `hermes2_pro_llama3` and `hermes3_llama-3_1` have it; artifacts converted
/// before MLC added it, and `open_hermes_mistral`, lack it). Hermes models are
/// trained to read tool results in this turn, and WebLLM's manual
/// function-calling example sends them so.
const HERMES_TOOL_ROLE: &str = "<|im_start|>tool";

/// The template a model's prompts are built with: the artifact's, with the
/// `tool` role added to a Hermes template that lacks it (so `role: "tool"`
/// messages render as MLC's current Hermes templates render them instead of
/// failing with "Role is not supported: tool").
pub fn with_tool_role(mut template: ConvTemplate) -> ConvTemplate {
    let hermes = matches!(
        template.name.as_deref(),
        Some("hermes2_pro_llama3" | "hermes3_llama-3_1" | "open_hermes_mistral")
    );
    if hermes {
        template.roles.entry("tool".to_string()).or_insert_with(|| HERMES_TOOL_ROLE.to_string());
    }
    template
}

/// Marks a user message made of tool results, so the next result joins it.
const TOOL_RESULTS: &str = "tool results";

/// An assistant's call as Qwen2.5's template writes it (arguments as JSON, not a string).
fn qwen_call_block(call: &ToolCall) -> String {
    let arguments = serde_json::from_str::<Value>(&call.function.arguments)
        .map(|value| python_json(&value))
        .unwrap_or_else(|_| python_json(&Value::String(call.function.arguments.clone())));
    format!(
        "<tool_call>\n{{\"name\": {}, \"arguments\": {arguments}}}\n</tool_call>",
        python_json(&Value::String(call.function.name.clone()))
    )
}

/// A message's text (content parts joined; none is empty).
fn text_of(message: &ChatMessage) -> String {
    match &message.content {
        Some(MessageContent::Text(text)) => text.clone(),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|part| match part {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect(),
        None => String::new(),
    }
}

/// `JSON.stringify`: compact JSON, keys in the order received (numbers are
/// printed as serde_json prints them, which can differ from JS for floats).
fn json_stringify(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// JSON as Python's `json.dumps` (Jinja's `tojson`) writes it: `", "` and
/// `": "` separators, non-ASCII kept.
fn python_json(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            format!("[{}]", items.iter().map(python_json).collect::<Vec<_>>().join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(key, value)| {
                    format!("{}: {}", python_json(&Value::String(key.clone())), python_json(value))
                })
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        scalar => scalar.to_string(),
    }
}

/// The Lark grammar of a Qwen reply: calls to `tools`, one per block, and
/// with `text` also any reply that does not start with `<`.
fn qwen_grammar(tools: &[Tool], text: bool) -> String {
    let schema = call_schemas(tools, "name");
    let mut layout = schema;
    layout["x-guidance"] = serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
    let calls = format!(
        "calls: call (\"\\n\" call)*\ncall: \"<tool_call>\\n\" call_json \"\\n</tool_call>\"\ncall_json: %json {layout}\n"
    );
    match text {
        true => format!("start: calls | TEXT\nTEXT: /[^<](.|\\n)*/\n{calls}"),
        false => format!("start: calls\n{calls}"),
    }
}

/// The calls in a finished reply, or `None` when the reply is text.
pub fn parse_calls(format: ToolFormat, reply: &str) -> Result<Option<Vec<ToolCall>>, ChatError> {
    match format {
        ToolFormat::Hermes => calls_from_array(reply).map(Some),
        ToolFormat::Qwen => {
            if !reply.trim_start().starts_with("<tool_call>") {
                return Ok(None);
            }
            let mut objects = Vec::new();
            for block in reply.split("<tool_call>").skip(1) {
                let body = block.split("</tool_call>").next().unwrap_or_default().trim();
                let value: Value =
                    serde_json::from_str(body).map_err(|error| ChatError::ToolCallOutputParse {
                        output: reply.to_string(),
                        error: error.to_string(),
                    })?;
                objects.push(value);
            }
            calls_from_objects(&objects).map(Some)
        }
    }
}

/// WebLLM's `getToolCallFromOutputMessage`: a JSON array of `{name, arguments}`.
fn calls_from_array(reply: &str) -> Result<Vec<ToolCall>, ChatError> {
    let value: Value = serde_json::from_str(reply).map_err(|error| {
        ChatError::ToolCallOutputParse { output: reply.to_string(), error: error.to_string() }
    })?;
    let Value::Array(objects) = value else {
        return Err(ChatError::ToolCallOutputInvalidType("array"));
    };
    calls_from_objects(&objects)
}

/// Tool calls numbered `"0"`, `"1"`, … with their arguments as a JSON string.
fn calls_from_objects(objects: &[Value]) -> Result<Vec<ToolCall>, ChatError> {
    objects
        .iter()
        .zip(0..)
        .map(|(object, id): (&Value, u32)| {
            let (Some(name), Some(arguments)) = (object.get("name"), object.get("arguments"))
            else {
                return Err(ChatError::ToolCallOutputMissingFields(json_stringify(object)));
            };
            // WebLLM keeps `name` as the model wrote it; a non-string name is stringified.
            let name = name.as_str().map_or_else(|| json_stringify(name), str::to_string);
            Ok(ToolCall {
                id: id.to_string(),
                kind: "function".to_string(),
                function: FunctionCall { name, arguments: json_stringify(arguments) },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Conversation;

    /// The prompt of `messages` (the last one starts the round) under `template_json`.
    fn prompt_of(template_json: &str, messages: &[ChatMessage]) -> Result<String, ChatError> {
        let config = mlc_loader::ChatConfig::from_json(&format!(
            r#"{{"model_type": "llama", "quantization": "q4f16_1", "vocab_size": 32, "conv_template": {template_json}}}"#
        ))
        .unwrap();
        let template = with_tool_role(config.conv_template.unwrap());
        let mut conversation = Conversation::from_request(&template, messages)?;
        conversation.start_round(&template, messages.last().unwrap(), None)?;
        Ok(conversation.prompt_array(&template)?.concat())
    }

    #[test]
    fn hermes_templates_render_tool_results_in_mlcs_tool_turn() {
        // WebLLM's manual function-calling example: the call and its result travel as text.
        let messages = [
            ChatMessage::new("user", "Q"),
            ChatMessage::new("assistant", "<tool_call>C</tool_call>"),
            ChatMessage::new("tool", "<tool_response>R</tool_response>"),
        ];
        let chatml = r#""system_template": "<|im_start|>system\n{system_message}<|im_end|>\n", "system_message": "S",
            "roles": {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"},
            "seps": ["<|im_end|>\n"], "role_content_sep": "\n", "role_empty_sep": "\n""#;
        let expected = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n\
            <|im_start|>assistant\n<tool_call>C</tool_call><|im_end|>\n\
            <|im_start|>tool\n<tool_response>R</tool_response><|im_end|>\n<|im_start|>assistant\n";
        for name in ["hermes2_pro_llama3", "hermes3_llama-3_1", "open_hermes_mistral"] {
            let template = format!(r#"{{"name": "{name}", {chatml}}}"#);
            assert_eq!(prompt_of(&template, &messages).unwrap(), expected, "{name}");
        }
        // Another template without a tool role keeps WebLLM's error.
        let template = format!(r#"{{"name": "chatml", {chatml}}}"#);
        let error = prompt_of(&template, &messages).unwrap_err();
        assert_eq!(error.to_string(), "Error: Role is not supported: tool");
    }

    #[test]
    fn manual_qwen_tool_results_become_a_user_turn_of_tool_responses() {
        let messages = [
            ChatMessage::new("user", "Q"),
            ChatMessage::new("assistant", "calling"),
            ChatMessage::new("tool", "22C"),
            ChatMessage::new("tool", "sunny"),
        ];
        let turns = qwen_tool_turns(&messages);
        assert_eq!(turns.len(), 3);
        assert_eq!(text_of(&turns[1]), "calling");
        assert_eq!(turns[2].role, "user");
        assert_eq!(
            text_of(&turns[2]),
            "<tool_response>\n22C\n</tool_response>\n<tool_response>\nsunny\n</tool_response>"
        );
    }

    fn weather_tool() -> Tool {
        serde_json::from_value(serde_json::json!({
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather in a city",
                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
        }))
        .unwrap()
    }

    #[test]
    fn qwen_messages_render_as_qwen25s_template() {
        let call = ToolCall {
            id: "0".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            },
        };
        let messages = vec![
            ChatMessage::new("user", "Weather in Paris?"),
            ChatMessage {
                tool_calls: Some(vec![call]),
                content: None,
                ..ChatMessage::new("assistant", "")
            },
            ChatMessage::new("tool", "22C"),
            ChatMessage::new("tool", "sunny"),
        ];
        let out = qwen_messages(&messages, &[weather_tool()]);
        assert_eq!(out.len(), 4);
        let system = text_of(&out[0]);
        assert!(system.starts_with(
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n"
        ));
        assert!(system.contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n</tools>"));
        assert_eq!(
            text_of(&out[2]),
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
        );
        assert_eq!(out[3].role, "user");
        assert_eq!(
            text_of(&out[3]),
            "<tool_response>\n22C\n</tool_response>\n<tool_response>\nsunny\n</tool_response>"
        );
    }

    #[test]
    fn replies_parse_into_numbered_calls_or_webllms_errors() {
        let reply = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let calls = parse_calls(ToolFormat::Qwen, reply).unwrap().unwrap();
        assert_eq!(calls[0].id, "0");
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(parse_calls(ToolFormat::Qwen, "It is sunny.").unwrap(), None);
        let hermes = parse_calls(
            ToolFormat::Hermes,
            r#"[{"arguments": {"city": "Oslo"}, "name": "get_weather"}]"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(hermes[0].function.arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(
            parse_calls(ToolFormat::Hermes, "{}").unwrap_err().name(),
            "ToolCallOutputInvalidTypeError"
        );
        assert_eq!(
            parse_calls(ToolFormat::Hermes, "[{\"name\": \"x\"}]").unwrap_err().name(),
            "JSONFieldError"
        );
        assert_eq!(
            parse_calls(ToolFormat::Hermes, "[").unwrap_err().name(),
            "ToolCallOutputParseError"
        );
    }
}
