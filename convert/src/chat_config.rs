//! `mlc-chat-config.json` as MLC's `gen_config`
//! (`python/mlc_llm/interface/gen_config.py`) writes it: the same fields, in
//! the same order, with the same values, printed as Python's
//! `json.dump(..., indent=2)` prints them.

use serde_json::{Map, Value, json};

use crate::ConvertError;
use crate::families::Family;

/// The `version` every config carries.
const CONFIG_VERSION: &str = "0.1.0";

/// `MLC_CHAT_SYSTEM_DEFAULT`: filled in for the fields neither
/// `generation_config.json` nor `config.json` gave.
const SYSTEM_DEFAULTS: [(&str, f64, bool); 8] = [
    ("pad_token_id", 0.0, true),
    ("bos_token_id", 1.0, true),
    ("eos_token_id", 2.0, true),
    ("temperature", 1.0, false),
    ("presence_penalty", 0.0, false),
    ("frequency_penalty", 0.0, false),
    ("repetition_penalty", 1.0, false),
    ("top_p", 1.0, false),
];

/// The conversation templates this converter knows, as MLC registers them
/// (`python/mlc_llm/conversation_template/`), each as the fields given to
/// `Conversation(...)`; the rest take the class defaults.
fn template_fields(name: &str) -> Option<Value> {
    let chatml_roles = json!({"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"});
    let llama3_system = "<|start_header_id|>system<|end_header_id|>\n\n{system_message}<|eot_id|>";
    let deepseek_r1 = |stop: u32, system_message: &str| {
        json!({
            "name": name,
            "system_template": "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>{system_message}",
            "system_message": system_message,
            "roles": {"user": "<\u{ff5c}User\u{ff5c}>", "assistant": "<\u{ff5c}Assistant\u{ff5c}>"},
            "seps": ["", "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>"],
            "role_content_sep": "",
            "role_empty_sep": "",
            "stop_token_ids": [stop],
        })
    };
    const DEEPSEEK: &str = "You are Deepseek-R1, an AI assistant created exclusively by the Chinese Company DeepSeek. \
        You'll provide helpful, harmless, and detailed responses to all user inquiries.";
    Some(match name {
        "qwen2" | "qwen3" => json!({
            "name": name,
            "system_template": "<|im_start|>system\n{system_message}<|im_end|>\n",
            "system_message": "You are a helpful assistant.",
            "roles": chatml_roles,
            "seps": ["<|im_end|>\n"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "stop_str": ["<|endoftext|>", "<|im_end|>"],
            "stop_token_ids": [151643, 151645],
            "strip_reasoning_in_history": name == "qwen3",
        }),
        // MLC's `conversation_template/qwen3_5.py`: the assistant's turn opens
        // a thinking block, or (`_nothink`) an empty, closed one.
        "qwen3_5" | "qwen3_5_nothink" => json!({
            "name": name,
            "system_template": "<|im_start|>system\n{system_message}<|im_end|>\n",
            "system_message": "You are a helpful assistant.",
            "roles": {
                "user": "<|im_start|>user",
                "assistant": match name {
                    "qwen3_5" => "<|im_start|>assistant\n<think>",
                    _ => "<|im_start|>assistant\n<think>\n\n</think>\n",
                },
            },
            "seps": ["<|im_end|>\n"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "stop_str": ["<|endoftext|>", "<|im_end|>"],
            "stop_token_ids": [248046, 248044],
        }),
        "chatml" | "chatml_nosystem" => {
            let mut template = json!({
                "name": name,
                "system_template": "<|im_start|>system\n{system_message}<|im_end|>\n",
                "system_message": "A conversation between a user and an LLM-based AI assistant. The assistant gives helpful and honest answers.",
                "roles": chatml_roles,
                "seps": ["<|im_end|>\n"],
                "role_content_sep": "\n",
                "role_empty_sep": "\n",
                "stop_str": ["<|im_end|>"],
                "stop_token_ids": [2],
            });
            // MLC's `chatml_nosystem` is `chatml` without the system turn.
            if name == "chatml_nosystem" {
                template["system_template"] = json!("{system_message}");
                template["system_message"] = json!("");
            }
            template
        }
        "llama-3" => json!({
            "name": name,
            "system_template": llama3_system,
            "system_message": "You are a helpful, respectful and honest assistant.",
            "roles": {"user": "<|start_header_id|>user", "assistant": "<|start_header_id|>assistant"},
            "seps": ["<|eot_id|>"],
            "role_content_sep": "<|end_header_id|>\n\n",
            "role_empty_sep": "<|end_header_id|>\n\n",
            "stop_str": ["<|end_of_text|>", "<|eot_id|>"],
            "stop_token_ids": [128001, 128009],
            "system_prefix_token_ids": [128000],
            "add_role_after_system_message": true,
        }),
        "llama-3_1" => json!({
            "name": name,
            "system_template": llama3_system,
            "system_message": "You are a helpful, respectful and honest assistant.",
            "roles": {"user": "<|start_header_id|>user", "assistant": "<|start_header_id|>assistant", "tool": "<|start_header_id|>ipython"},
            "seps": ["<|eot_id|>"],
            "role_content_sep": "<|end_header_id|>\n\n",
            "role_empty_sep": "<|end_header_id|>\n\n",
            "stop_str": [],
            "stop_token_ids": [128001, 128008, 128009],
            "system_prefix_token_ids": [128000],
            "add_role_after_system_message": true,
        }),
        "llama-2" => json!({
            "name": name,
            "system_template": "[INST] <<SYS>>\n{system_message}\n<</SYS>>\n\n",
            "system_message": "You are a helpful, respectful and honest assistant.",
            "roles": {"user": "<s>[INST]", "assistant": "[/INST]", "tool": "[INST]"},
            "seps": [" ", " </s>"],
            "role_content_sep": " ",
            "role_empty_sep": " ",
            "stop_str": ["[INST]"],
            "stop_token_ids": [2],
            "system_prefix_token_ids": [1],
            "add_role_after_system_message": false,
        }),
        "tinyllama_v1_0" => json!({
            "name": name,
            "system_template": "<|system|>\n{system_message}</s>",
            "system_message": "You are a helpful chatbot.",
            "roles": {"user": "<|user|>", "assistant": "<|assistant|>"},
            "seps": ["</s>"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "stop_str": ["</s>"],
            "stop_token_ids": [2],
        }),
        "LM" => json!({
            "name": name,
            "system_template": "{system_message}",
            "system_message": "",
            "roles": {"user": "", "assistant": ""},
            "seps": [""],
            "role_content_sep": "",
            "role_empty_sep": "",
            "stop_str": [],
            "stop_token_ids": [2],
            "system_prefix_token_ids": [1],
        }),
        "mistral_default" => json!({
            "name": name,
            "system_template": "[INST] {system_message}",
            "system_message": "Always assist with care, respect, and truth. Respond with utmost utility yet securely. \
                Avoid harmful, unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity.",
            "roles": {"user": "[INST]", "assistant": "[/INST]", "tool": "[INST]"},
            "seps": [" "],
            "role_content_sep": " ",
            "role_empty_sep": "",
            "stop_str": ["</s>"],
            "stop_token_ids": [2],
            "system_prefix_token_ids": [1],
            "add_role_after_system_message": false,
        }),
        "phi-3" => json!({
            "name": name,
            "system_template": "<|system|>\n{system_message}",
            "system_message": "You are a helpful digital assistant. Please provide safe, ethical and accurate information to the user.",
            "roles": {"user": "<|user|>", "assistant": "<|assistant|>"},
            "seps": ["<|end|>\n"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "system_prefix_token_ids": [1],
            "stop_str": ["<|endoftext|>"],
            "stop_token_ids": [32000, 32001, 32007],
        }),
        "gemma_instruction" => json!({
            "name": name,
            "system_template": "<bos>{system_message}",
            "system_message": "",
            "roles": {"user": "<start_of_turn>user", "assistant": "<start_of_turn>model"},
            "seps": ["<end_of_turn>\n"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "stop_str": ["<end_of_turn>"],
            "stop_token_ids": [1, 107],
            "system_prefix_token_ids": [2],
        }),
        // Gemma's turns with a bare system prompt and Gemma 3's stop ids
        // (106 is `<end_of_turn>`; 107, Gemma-2's, is a newline here).
        "gemma3_instruction" => json!({
            "name": name,
            "system_template": "{system_message}",
            "system_message": "",
            "roles": {"user": "<start_of_turn>user", "assistant": "<start_of_turn>model"},
            "seps": ["<end_of_turn>\n"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "stop_str": ["<end_of_turn>"],
            "stop_token_ids": [1, 106],
            "system_prefix_token_ids": [2],
        }),
        // OLMo-2 Instruct's Tulu turns (100257 is `<|endoftext|>`).
        "olmo2" => json!({
            "name": name,
            "system_template": "<|system|>\n{system_message}\n",
            "system_message": "",
            "roles": {"user": "<|user|>", "assistant": "<|assistant|>"},
            "seps": ["<|endoftext|>\n"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "stop_str": ["<|endoftext|>"],
            "stop_token_ids": [100257],
            "system_prefix_token_ids": [100257],
        }),
        // StableLM 2 Zephyr (mlc-llm's `conversation_template/stablelm.py`,
        // "stablelm-2"; 100257 is `<|endoftext|>`).
        "stablelm-2" => json!({
            "name": name,
            "system_template": "{system_message}",
            "system_message": "",
            "roles": {"user": "<|user|>", "assistant": "<|assistant|>"},
            "seps": ["<|endoftext|>", "<|endoftext|>"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "stop_str": ["<|endoftext|>"],
            "stop_token_ids": [100257],
        }),
        // Phi-2 and Phi-1.5 (mlc-llm's `conversation_template/phi.py`,
        // "phi-2"; 50256 is `<|endoftext|>`).
        "phi-2" => json!({
            "name": name,
            "system_template": "{system_message}",
            "system_message": "",
            "roles": {"user": "Instruct", "assistant": "Output"},
            "seps": ["\n"],
            "role_content_sep": ": ",
            "role_empty_sep": ":",
            "stop_str": ["<|endoftext|>"],
            "stop_token_ids": [50256],
        }),
        // RedPajama-INCITE-Chat (mlc-llm's `conversation_template/redpajama.py`,
        // "redpajama_chat"; 0 is `<|endoftext|>`).
        "redpajama_chat" => json!({
            "name": name,
            "system_template": "{system_message}",
            "system_message": "",
            "roles": {"user": "<human>", "assistant": "<bot>"},
            "seps": ["\n"],
            "role_content_sep": ": ",
            "role_empty_sep": ":",
            "stop_str": ["<human>"],
            "stop_token_ids": [0],
        }),
        // MLC's `conversation_template/ministral3.py` and `ministral3_reasoning.py`
        // (WebLLM's Ministral-3 records name them); 1 is `<s>`, 2 is `</s>`.
        "ministral3" | "ministral3_reasoning" => json!({
            "name": name,
            "system_template": "[SYSTEM_PROMPT]{system_message}[/SYSTEM_PROMPT]{function_string}",
            "system_message": match name {
                "ministral3" => MINISTRAL3_SYSTEM,
                _ => MINISTRAL3_REASONING_SYSTEM,
            },
            "role_templates": {
                "user": "[INST]{user_message}[/INST]",
                "assistant": "{assistant_message}</s>",
                "tool": "[TOOL_RESULTS]{tool_message}[/TOOL_RESULTS]",
            },
            "roles": {"user": "", "assistant": "", "tool": ""},
            "seps": [""],
            "role_content_sep": "",
            "role_empty_sep": "",
            "stop_str": ["</s>"],
            "stop_token_ids": [2],
            "system_prefix_token_ids": [1],
        }),
        "deepseek_r1_qwen" => deepseek_r1(151643, DEEPSEEK),
        "deepseek_r1_llama" => deepseek_r1(128001, DEEPSEEK),
        _ => return None,
    })
}

/// The default system message of MLC's `ministral3` template (Ministral-3-3B-Instruct-2512's).
const MINISTRAL3_SYSTEM: &str = "You are Ministral-3-3B-Instruct-2512, a Large Language Model (LLM) created by \
Mistral AI, a French startup headquartered in Paris.\nYou power an AI assistant called Le Chat.\n\
Your knowledge base was last updated on 2023-10-01.\nThe current date is {today}.\n\n\
When you're not sure about some information or when the user's request requires up-to-date or specific \
data, you must use the available tools to fetch the information. Do not hesitate to use tools whenever \
they can provide a more accurate or complete response. If no relevant tools are available, then clearly \
state that you don't have the information and avoid making up anything.\nIf the user's question is not \
clear, ambiguous, or does not provide enough context for you to accurately answer the question, you do \
not try to answer it right away and you rather ask the user to clarify their request (e.g. \"What are \
some good restaurants around me?\" => \"Where are you?\" or \"When is the next flight to Tokyo\" => \
\"Where do you travel from?\").\nYou are always very attentive to dates, in particular you try to resolve \
dates (e.g. \"yesterday\" is {yesterday}) and when asked about information at specific dates, you discard \
information that is at another date.\nYou follow these instructions in all languages, and always respond \
to the user in the language they use or request.\nNext sections describe the capabilities that you \
have.\n\n# WEB BROWSING INSTRUCTIONS\n\nYou cannot perform any web search or access internet to open \
URLs, links etc. If it seems like the user is expecting you to do so, you clarify the situation and ask \
the user to copy paste the text directly in the chat.\n\n# MULTI-MODAL INSTRUCTIONS\n\nYou have the \
ability to read images, but you cannot generate images. You also cannot transcribe audio files or \
videos.\nYou cannot read nor transcribe audio files or videos.\n\n# TOOL CALLING INSTRUCTIONS\n\nYou \
may have access to tools that you can use to fetch information or perform actions. You must use these \
tools in the following situations:\n\n1. When the request requires up-to-date information.\n2. When the \
request requires specific data that you do not have in your knowledge base.\n3. When the request involves \
actions that you cannot perform without tools.\n\nAlways prioritize using tools to provide the most \
accurate and helpful response. If tools are not available, inform the user that you cannot perform the \
requested action at the moment.";

/// The default system message of MLC's `ministral3_reasoning` template.
const MINISTRAL3_REASONING_SYSTEM: &str = "# HOW YOU SHOULD THINK AND ANSWER\n\nFirst draft your thinking \
process (inner monologue) until you arrive at a response. Format your response using Markdown, and use \
LaTeX for any mathematical equations. Write both your thoughts and the response in the same language as \
the input.\n\nYour thinking process must follow the template below:[THINK]Your thoughts or/and draft, \
like working through an exercise on scratch paper. Be as casual and as long as you want until you are \
confident to generate the response to the user.[/THINK]Here, provide a self-contained response.";

/// The names `--conv-template` accepts.
pub const CONV_TEMPLATES: &[&str] = &[
    "qwen2",
    "qwen3",
    "qwen3_5",
    "qwen3_5_nothink",
    "chatml",
    "chatml_nosystem",
    "llama-3",
    "llama-3_1",
    "llama-2",
    "tinyllama_v1_0",
    "mistral_default",
    "phi-3",
    "gemma_instruction",
    "gemma3_instruction",
    "olmo2",
    "stablelm-2",
    "phi-2",
    "redpajama_chat",
    "ministral3",
    "ministral3_reasoning",
    "deepseek_r1_qwen",
    "deepseek_r1_llama",
    "LM",
];

/// The full template object of `name`, every `Conversation` field in
/// declaration order (pydantic's `model_dump`), or `Unsupported` listing the
/// known names.
pub fn conv_template(name: &str) -> Result<Value, ConvertError> {
    let given = template_fields(name).ok_or_else(|| ConvertError::Unsupported {
        what: format!("conversation template {name:?}"),
        message: format!("known templates: {}", CONV_TEMPLATES.join(", ")),
    })?;
    let get = |key: &str, default: Value| given.get(key).cloned().unwrap_or(default);
    // `role_templates` defaults are updated by the template's own (Ministral 3's).
    let mut role_templates = json!({"user": "{user_message}", "assistant": "{assistant_message}", "tool": "{tool_message}"});
    if let (Some(own), Some(all)) =
        (given.get("role_templates").and_then(Value::as_object), role_templates.as_object_mut())
    {
        all.extend(own.clone());
    }
    let mut out = Map::new();
    for (key, value) in [
        ("name", get("name", Value::Null)),
        ("system_template", get("system_template", json!("{system_message}"))),
        ("system_message", get("system_message", json!(""))),
        ("system_prefix_token_ids", get("system_prefix_token_ids", Value::Null)),
        ("add_role_after_system_message", get("add_role_after_system_message", json!(true))),
        ("roles", get("roles", json!({}))),
        ("role_templates", role_templates),
        ("messages", json!([])),
        ("seps", get("seps", json!([]))),
        ("role_content_sep", get("role_content_sep", json!(""))),
        ("role_empty_sep", get("role_empty_sep", json!(""))),
        ("stop_str", get("stop_str", json!([]))),
        ("stop_token_ids", get("stop_token_ids", json!([]))),
        ("strip_reasoning_in_history", get("strip_reasoning_in_history", json!(false))),
        ("function_string", json!("")),
        ("use_function_calling", json!(false)),
    ] {
        out.insert(key.to_string(), value);
    }
    Ok(Value::Object(out))
}

/// `tokenizer_info` as MLC's `Tokenizer::DetectTokenizerInfo` derives it
/// from `tokenizer.json` (defaults when there is none).
pub fn tokenizer_info(tokenizer_json: Option<&Value>) -> Value {
    let mut method = "byte_fallback";
    let mut prepend = false;
    let mut strip = false;
    let is_type = |v: &Value, t: &str| v.get("type").and_then(Value::as_str) == Some(t);
    if let Some(tok) = tokenizer_json {
        if let Some(decoder) = tok.get("decoder").filter(|d| d.is_object()) {
            let parts: Vec<&Value> = match decoder.get("decoders").and_then(Value::as_array) {
                Some(list) if is_type(decoder, "Sequence") => list.iter().collect(),
                _ => vec![decoder],
            };
            // The last ByteLevel/ByteFallback of a sequence wins, as in MLC.
            for part in &parts {
                if is_type(part, "ByteLevel") {
                    method = "byte_level";
                } else if is_type(part, "ByteFallback") {
                    method = "byte_fallback";
                }
            }
            strip = parts.iter().any(|d| {
                is_type(d, "Strip")
                    && d.get("content").and_then(Value::as_str) == Some(" ")
                    && d.get("start").and_then(Value::as_i64) == Some(1)
                    && d.get("stop").and_then(Value::as_i64) == Some(0)
            });
        }
        if let Some(normalizer) = tok.get("normalizer").filter(|n| n.is_object()) {
            let parts: Vec<&Value> = match normalizer.get("normalizers").and_then(Value::as_array) {
                Some(list) if is_type(normalizer, "Sequence") => list.iter().collect(),
                _ => vec![normalizer],
            };
            prepend = parts.iter().any(|n| {
                is_type(n, "Prepend")
                    && n.get("prepend").and_then(Value::as_str) == Some("\u{2581}")
            });
        }
    }
    json!({"token_postproc_method": method, "prepend_space_in_encode": prepend, "strip_space_in_decode": strip})
}

/// `len(AutoTokenizer)`: the distinct tokens of the model vocabulary and the
/// added tokens (`tokenizer.json`'s `added_tokens`, and
/// `tokenizer_config.json`'s `added_tokens_decoder`). `None` when the
/// vocabulary cannot be read, in which case `gen_config` also keeps `vocab_size`.
pub fn tokenizer_length(tokenizer_json: &Value, tokenizer_config: Option<&Value>) -> Option<usize> {
    let mut tokens = std::collections::HashSet::new();
    match tokenizer_json.pointer("/model/vocab")? {
        Value::Object(vocab) => tokens.extend(vocab.keys().cloned()),
        // Unigram: `[[piece, score], ...]`.
        Value::Array(pieces) => {
            for piece in pieces {
                tokens.insert(piece.get(0)?.as_str()?.to_string());
            }
        }
        _ => return None,
    }
    for added in tokenizer_json.get("added_tokens").and_then(Value::as_array).into_iter().flatten()
    {
        tokens.insert(added.get("content")?.as_str()?.to_string());
    }
    let decoder =
        tokenizer_config.and_then(|c| c.get("added_tokens_decoder")).and_then(Value::as_object);
    for added in decoder.into_iter().flat_map(|d| d.values()) {
        tokens.insert(added.get("content")?.as_str()?.to_string());
    }
    Some(tokens.len())
}

/// What the chat config is generated from.
pub struct ChatConfigInput<'a> {
    /// The family.
    pub family: Family,
    /// The quantization name.
    pub quantization: &'a str,
    /// `model_config` as [`Family::model_config`] parsed it.
    pub model_config: &'a Map<String, Value>,
    /// `config.json`.
    pub hf_config: &'a Value,
    /// `generation_config.json`, when there is one.
    pub generation_config: Option<&'a Value>,
    /// The conversation template's full object.
    pub conv_template: Value,
    /// The tokenizer files copied, in the order listed.
    pub tokenizer_files: Vec<String>,
    /// Parsed `tokenizer.json`, when copied.
    pub tokenizer_json: Option<&'a Value>,
    /// Parsed `tokenizer_config.json`, when copied.
    pub tokenizer_config: Option<&'a Value>,
}

/// The config object, fields in `MLCChatConfig` order.
pub fn chat_config(input: &ChatConfigInput<'_>) -> Value {
    let mc = input.model_config;
    let get = |key: &str, default: Value| mc.get(key).cloned().unwrap_or(default);
    let vocab_size = get("vocab_size", Value::Null);
    let mut active_vocab_size = vocab_size.clone();
    // Step 5 of gen_config: `len(tokenizer)` when there is a tokenizer.json.
    if let Some(length) =
        input.tokenizer_json.and_then(|t| tokenizer_length(t, input.tokenizer_config))
    {
        active_vocab_size = json!(length);
    }
    let mut out = Map::new();
    out.insert("version".into(), json!(CONFIG_VERSION));
    out.insert("model_type".into(), json!(input.family.name()));
    out.insert("quantization".into(), json!(input.quantization));
    out.insert("model_config".into(), Value::Object(mc.clone()));
    out.insert("vocab_size".into(), vocab_size);
    out.insert("context_window_size".into(), get("context_window_size", json!(-1)));
    out.insert("sliding_window_size".into(), get("sliding_window_size", json!(-1)));
    out.insert("prefill_chunk_size".into(), get("prefill_chunk_size", Value::Null));
    out.insert("attention_sink_size".into(), get("attention_sink_size", json!(-1)));
    out.insert("tensor_parallel_shards".into(), get("tensor_parallel_shards", Value::Null));
    out.insert("pipeline_parallel_stages".into(), get("pipeline_parallel_stages", json!(1)));
    out.insert("active_vocab_size".into(), active_vocab_size);
    for key in
        ["temperature", "presence_penalty", "frequency_penalty", "repetition_penalty", "top_p"]
    {
        out.insert(key.into(), Value::Null);
    }
    out.insert("tokenizer_files".into(), json!(input.tokenizer_files));
    out.insert("tokenizer_info".into(), tokenizer_info(input.tokenizer_json));
    out.insert("conv_template".into(), input.conv_template.clone());
    for key in ["pad_token_id", "bos_token_id", "eos_token_id"] {
        out.insert(key.into(), Value::Null);
    }
    // MLC's model registry: BERT is an embedding model, pooled at its first
    // (CLS) token and L2-normalised by MLC's own server.
    let (task, embedding_metadata) = match input.family {
        Family::Bert => (
            "embedding",
            json!({"model_type": "encoder", "pooling_strategy": "cls", "normalize": true}),
        ),
        _ => ("chat", Value::Null),
    };
    out.insert("model_task".into(), json!(task));
    out.insert("embedding_metadata".into(), embedding_metadata);
    // Step 2: fields still `None` take the value of the same key in
    // generation_config.json, then config.json, as given (no type coercion).
    const FILLABLE: [&str; 9] = [
        "temperature",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "top_p",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "embedding_metadata",
    ];
    for source in [input.generation_config, Some(input.hf_config)].into_iter().flatten() {
        for (key, value) in source.as_object().into_iter().flatten() {
            if FILLABLE.contains(&key.as_str()) && out.get(key).is_some_and(Value::is_null) {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    // Step 4: system defaults for what is still missing.
    for (key, value, integer) in SYSTEM_DEFAULTS {
        if out[key].is_null() {
            out.insert(key.into(), if integer { json!(value as i64) } else { json!(value) });
        }
    }
    Value::Object(out)
}

/// `value` as Python's `json.dump(value, indent=2)` writes it: two-space
/// indentation, `", "`-free item separators at line ends, `": "` after keys,
/// non-ASCII escaped as `\uXXXX`, floats in `repr` form (`1e-06`, `1000000.0`),
/// no final newline.
pub fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, 0, &mut out);
    out
}

fn write_value(value: &Value, depth: usize, out: &mut String) {
    let indent = |depth: usize| "  ".repeat(depth);
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) if !n.is_f64() => out.push_str(&i.to_string()),
            (_, Some(u), _) if !n.is_f64() => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&indent(depth + 1));
                write_value(item, depth + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&indent(depth));
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push_str("{\n");
            for (i, (key, item)) in map.iter().enumerate() {
                out.push_str(&indent(depth + 1));
                write_string(key, out);
                out.push_str(": ");
                write_value(item, depth + 1, out);
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            out.push_str(&indent(depth));
            out.push('}');
        }
    }
}

/// A JSON string with Python's `ensure_ascii` escaping.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip, positional
/// when the decimal exponent is in `-4..16`, else `d.ddde±XX`.
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` prints the shortest round-tripping digits, like Python.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponents are integers");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    // Python's `decpt` is `exponent + 1`; it switches to exponent form when
    // decpt <= -4 or decpt > 16.
    let decpt = exponent + 1;
    if decpt <= -4 || decpt > 16 {
        let (head, tail) = digits.split_at(1);
        let mantissa = if tail.is_empty() { head.to_string() } else { format!("{head}.{tail}") };
        let esign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{esign}{:02}", exponent.abs());
    }
    let body = if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt as usize >= digits.len() {
        format!("{digits}{}.0", "0".repeat(decpt as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_nosystem_is_chatml_without_the_system_turn() {
        let chatml = conv_template("chatml").unwrap();
        let nosystem = conv_template("chatml_nosystem").unwrap();
        assert_eq!(
            (nosystem["system_template"].as_str(), nosystem["system_message"].as_str()),
            (Some("{system_message}"), Some(""))
        );
        assert_eq!(nosystem["name"], "chatml_nosystem");
        for key in
            ["roles", "seps", "role_content_sep", "role_empty_sep", "stop_str", "stop_token_ids"]
        {
            assert_eq!(nosystem[key], chatml[key], "{key}");
        }
        assert_ne!(chatml["system_template"], nosystem["system_template"]);
    }

    #[test]
    fn floats_print_as_python_repr() {
        for (value, text) in [
            (1e-6, "1e-06"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (1e-4, "0.0001"),
            (0.7, "0.7"),
            (1.0, "1.0"),
            (1000000.0, "1000000.0"),
            (500000.0, "500000.0"),
            (1e16, "1e+16"),
            (1.25e17, "1.25e+17"),
            (123456789012345.6, "123456789012345.6"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
        ] {
            assert_eq!(python_float(value), text, "{value}");
        }
    }

    #[test]
    fn json_matches_python_layout() {
        let value = json!({"a": [1, 2.0, "é"], "b": {}, "c": [], "d": {"e": null}});
        assert_eq!(
            python_json(&value),
            "{\n  \"a\": [\n    1,\n    2.0,\n    \"\\u00e9\"\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": {\n    \"e\": null\n  }\n}"
        );
    }

    #[test]
    fn tokenizer_info_detects_byte_level_and_sentencepiece_style() {
        let gpt2 = json!({"decoder": {"type": "ByteLevel"}, "normalizer": null});
        assert_eq!(tokenizer_info(Some(&gpt2))["token_postproc_method"], "byte_level");
        let llama2 = json!({
            "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, {"type": "Replace"}]},
            "decoder": {"type": "Sequence", "decoders": [{"type": "Replace"}, {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
        });
        assert_eq!(
            tokenizer_info(Some(&llama2)),
            json!({"token_postproc_method": "byte_fallback", "prepend_space_in_encode": true, "strip_space_in_decode": true})
        );
        assert_eq!(tokenizer_info(None)["token_postproc_method"], "byte_fallback");
    }

    #[test]
    fn an_unknown_template_lists_the_known_ones() {
        let error = conv_template("vicuna").unwrap_err().to_string();
        assert!(error.contains("vicuna") && error.contains("llama-3"), "{error}");
    }
}
