//! Prompt rendering and tokenization as WebLLM does it (docs/chat.md, "How
//! WebLLM builds a prompt"), including two worked examples with their token ids
//! (a two-round ChatML conversation on Qwen2.5's tokenizer, a Llama-3 prompt)
//! and multi-round KV reuse.

use std::sync::OnceLock;

use mlc_chat::{
    ChatError, ChatMessage, ContentPart, Conversation, FinishReason, MessageContent, Tokenizer,
    can_reuse_kv_cache,
};
use mlc_loader::{ChatConfig, ConvTemplate};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/fixtures/tokenizers");

fn qwen_tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(format!("{FIXTURES}/qwen2.5-0.5b-instruct.tokenizer.json")).unwrap()
    })
}

fn template_of(config_file: &str) -> ConvTemplate {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{config_file}")).unwrap();
    ChatConfig::from_json(&text).unwrap().conv_template.unwrap()
}

fn qwen2_template() -> ConvTemplate {
    template_of("qwen2.5-0.5b-instruct.mlc-chat-config.json")
}

/// A template given as the JSON of a `conv_template` object.
fn template(json: &str) -> ConvTemplate {
    let config = format!(
        r#"{{"model_type": "llama", "quantization": "q4f16_1", "vocab_size": 32, "conv_template": {json}}}"#
    );
    ChatConfig::from_json(&config).unwrap().conv_template.unwrap()
}

fn llama3_template() -> ConvTemplate {
    template(
        r#"{"name": "llama-3",
            "system_template": "<|start_header_id|>system<|end_header_id|>\n\n{system_message}<|eot_id|>",
            "system_message": "You are a helpful, respectful and honest assistant.",
            "roles": {"user": "<|start_header_id|>user", "assistant": "<|start_header_id|>assistant"},
            "seps": ["<|eot_id|>"],
            "role_content_sep": "<|end_header_id|>\n\n", "role_empty_sep": "<|end_header_id|>\n\n",
            "system_prefix_token_ids": [128000],
            "stop_str": ["<|end_of_text|>", "<|eot_id|>"], "stop_token_ids": [128001, 128009],
            "add_role_after_system_message": true}"#,
    )
}

fn messages(list: &[(&str, &str)]) -> Vec<ChatMessage> {
    list.iter().map(|(role, text)| ChatMessage::new(role, text)).collect()
}

/// The conversation of a request after its round started (history, last message, reply header).
fn round(template: &ConvTemplate, request: &[ChatMessage]) -> Conversation {
    let mut conversation = Conversation::from_request(template, request).unwrap();
    conversation.start_round(template, request.last().unwrap(), None).unwrap();
    conversation
}

fn error_of(result: Result<impl std::fmt::Debug, ChatError>) -> (String, String) {
    let error = result.unwrap_err();
    (error.name().to_string(), error.message())
}

const TURN1_IDS: [u32; 21] = [
    151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 9707, 0,
    151645, 198, 151644, 77091, 198,
];

#[test]
fn qwen2_turn_one_matches_the_worked_example() {
    let template = qwen2_template();
    let with_system = round(
        &template,
        &messages(&[("system", "You are a helpful assistant."), ("user", "Hello!")]),
    );
    assert_eq!(
        with_system.prompt_array(&template).unwrap(),
        [
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
            "<|im_start|>user\nHello!<|im_end|>\n",
            "<|im_start|>assistant\n"
        ]
    );
    let tokens = with_system.prompt_tokens(&template, qwen_tokenizer(), true).unwrap();
    assert_eq!(tokens.ids, TURN1_IDS);
    assert_eq!(tokens.prompt_tokens, 21);

    // The default system message is the same text, so omitting it gives the same prompt.
    let without_system = round(&template, &messages(&[("user", "Hello!")]));
    assert_eq!(without_system.prompt_tokens(&template, qwen_tokenizer(), true).unwrap(), tokens);
}

#[test]
fn qwen2_turn_two_reuses_the_kv_cache_and_prefills_the_last_round() {
    let template = qwen2_template();
    let system = ("system", "You are a helpful assistant.");
    let mut kept = round(&template, &messages(&[system, ("user", "Hello!")]));
    kept.finish_reply("Hi there!").unwrap();

    let request = messages(&[
        system,
        ("user", "Hello!"),
        ("assistant", "Hi there!"),
        ("user", "What is 2+2?"),
    ]);
    let history = Conversation::from_request(&template, &request).unwrap();
    assert!(can_reuse_kv_cache(&kept, Some(FinishReason::Stop), &history));

    kept.start_round(&template, request.last().unwrap(), None).unwrap();
    assert_eq!(
        kept.prompt_array_last_round(&template).unwrap(),
        ["<|im_start|>user\nWhat is 2+2?<|im_end|>\n", "<|im_start|>assistant\n"]
    );
    let tokens = kept.prompt_tokens(&template, qwen_tokenizer(), false).unwrap();
    assert_eq!(
        tokens.ids,
        [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198]
    );
    assert_eq!(tokens.prompt_tokens, 15);

    // Without reuse the whole history is rendered, with the separator after the reply.
    assert_eq!(
        round(&template, &request).prompt_array(&template).unwrap().concat(),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi \
         there!<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn kv_reuse_needs_an_identical_non_empty_history_and_a_complete_cache() {
    let template = qwen2_template();
    let mut kept = round(&template, &messages(&[("user", "Hello!")]));
    kept.finish_reply("Hi there!").unwrap();
    let next = |reply: &str, system: Option<&str>| {
        let mut list = vec![("user", "Hello!"), ("assistant", reply), ("user", "More")];
        if let Some(system) = system {
            list.insert(0, ("system", system));
        }
        Conversation::from_request(&template, &messages(&list)).unwrap()
    };
    assert!(can_reuse_kv_cache(&kept, Some(FinishReason::Stop), &next("Hi there!", None)));
    assert!(
        !can_reuse_kv_cache(&kept, Some(FinishReason::Stop), &next("Hi there", None)),
        "reply text differs"
    );
    // An explicit system message differs from none, even with the default text.
    assert!(!can_reuse_kv_cache(
        &kept,
        Some(FinishReason::Stop),
        &next("Hi there!", Some("You are a helpful assistant."))
    ));
    // The last sampled token of a `length`/`abort` round was never fed (WebLLM 0.2.86).
    assert!(!can_reuse_kv_cache(&kept, Some(FinishReason::Length), &next("Hi there!", None)));
    assert!(!can_reuse_kv_cache(&kept, Some(FinishReason::Abort), &next("Hi there!", None)));
    // A single-turn request always starts afresh.
    let single = Conversation::from_request(&template, &messages(&[("user", "Hello!")])).unwrap();
    assert!(!can_reuse_kv_cache(&Conversation::default(), None, &single));
}

#[test]
fn llama3_matches_the_worked_example() {
    let template = llama3_template();
    let system = ("system", "You are a helpful assistant.");
    let mut conversation = round(&template, &messages(&[system, ("user", "Hello!")]));
    assert_eq!(
        conversation.prompt_array(&template).unwrap(),
        [
            "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>",
            "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>",
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ]
    );
    // The BOS prefix is prefilled on the first round but not counted as a prompt token.
    let tokens = conversation.prompt_tokens(&template, qwen_tokenizer(), true).unwrap();
    assert_eq!(tokens.ids[0], 128000);
    assert_eq!(tokens.prompt_tokens, tokens.ids.len() - 1);

    conversation.finish_reply("Hi there!").unwrap();
    conversation.start_round(&template, &ChatMessage::new("user", "What is 2+2?"), None).unwrap();
    assert_eq!(
        conversation.prompt_array_last_round(&template).unwrap(),
        [
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ]
    );
    let later = conversation.prompt_tokens(&template, qwen_tokenizer(), false).unwrap();
    assert_ne!(later.ids[0], 128000, "no prefix ids after the first round");
    assert_eq!(later.prompt_tokens, later.ids.len());
}

/// `gemma3_instruction` as `mlc-wgpu convert` writes it (MLC's template: Gemma's
/// turns, a bare system prompt, stop ids 1 and 106 = `<end_of_turn>`).
fn gemma3_template() -> ConvTemplate {
    template(
        r#"{"name": "gemma3_instruction", "system_template": "{system_message}", "system_message": "",
            "system_prefix_token_ids": [2], "add_role_after_system_message": true,
            "roles": {"user": "<start_of_turn>user", "assistant": "<start_of_turn>model"},
            "seps": ["<end_of_turn>\n"], "role_content_sep": "\n", "role_empty_sep": "\n",
            "stop_str": ["<end_of_turn>"], "stop_token_ids": [1, 106]}"#,
    )
}

#[test]
fn gemma3_renders_gemma_turns_after_a_bare_system_prompt() {
    let template = gemma3_template();
    let mut conversation = round(&template, &messages(&[("user", "Hello!")]));
    assert_eq!(
        conversation.prompt_array(&template).unwrap(),
        ["<start_of_turn>user\nHello!<end_of_turn>\n", "<start_of_turn>model\n"]
    );
    let tokens = conversation.prompt_tokens(&template, qwen_tokenizer(), true).unwrap();
    assert_eq!(tokens.ids[0], 2, "<bos> comes from system_prefix_token_ids");
    assert_eq!(tokens.prompt_tokens, tokens.ids.len() - 1);

    conversation.finish_reply("Hi there!").unwrap();
    conversation.start_round(&template, &ChatMessage::new("user", "2+2?"), None).unwrap();
    assert_eq!(
        conversation.prompt_array_last_round(&template).unwrap(),
        ["<start_of_turn>user\n2+2?<end_of_turn>\n", "<start_of_turn>model\n"]
    );

    // A system message is emitted as is, with no turn around it.
    let system = round(&template, &messages(&[("system", "Be brief."), ("user", "Hello!")]));
    assert_eq!(
        system.prompt_array(&template).unwrap(),
        ["Be brief.", "<start_of_turn>user\nHello!<end_of_turn>\n", "<start_of_turn>model\n"]
    );
    assert_eq!(template.stop_token_ids, [1, 106]);
}

#[test]
fn smollm2_prompt_matches_the_reference_ids() {
    let template = template_of("smollm2-135m-instruct.mlc-chat-config.json");
    let tokenizer =
        Tokenizer::from_file(format!("{FIXTURES}/smollm2-135m-instruct.tokenizer.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/smollm2-135m-instruct.reference.json"))
            .unwrap(),
    )
    .unwrap();
    let user_texts = [
        "What is the capital of France?",
        "Name three primary colors.",
        "Write one sentence about a cat.",
    ];
    for (case, user) in reference["cases"].as_array().unwrap().iter().zip(user_texts) {
        let conversation = round(&template, &messages(&[("user", user)]));
        assert_eq!(
            conversation.prompt_array(&template).unwrap().concat(),
            case["prompt"].as_str().unwrap()
        );
        let expected: Vec<u32> = case["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            conversation.prompt_tokens(&template, &tokenizer, true).unwrap().ids,
            expected,
            "{user}"
        );
    }
}

#[test]
fn replacement_text_follows_js_dollar_patterns() {
    let template = template(
        r#"{"system_template": "[{system_message}]", "system_message": "default",
            "roles": {"user": "U", "assistant": "A"},
            "role_templates": {"user": "<u>{user_message}</u>{function_string}"},
            "seps": ["\n"], "role_content_sep": ": ", "role_empty_sep": ":"}"#,
    );
    let request = messages(&[("system", "cost $$5 $&"), ("user", "a $$ b | $& | $` | $' | $1")]);
    assert_eq!(
        round(&template, &request).prompt_array(&template).unwrap(),
        // `$'` brought a `{function_string}` into the text; only that first occurrence is removed.
        [
            "[cost $5 {system_message}]",
            "U: <u>a $ b | {user_message} | <u> | </u> | $1</u>{function_string}\n",
            "A:"
        ]
    );
}

#[test]
fn the_qwen2_template_renders_dollar_signs_once() {
    let template = qwen2_template();
    let prompt =
        round(&template, &messages(&[("user", "Price: $$100")])).prompt_array(&template).unwrap();
    assert_eq!(prompt[1], "<|im_start|>user\nPrice: $100<|im_end|>\n");
}

#[test]
fn name_replaces_the_role_string() {
    let template = qwen2_template();
    let named = |role: &str, text: &str, name: &str| ChatMessage {
        name: Some(name.to_string()),
        ..ChatMessage::new(role, text)
    };
    let request = [
        named("user", "Hi", "Bob"),
        named("assistant", "Hello", "Ann"),
        named("user", "Bye", ""),
        named("user", "Again", "Eve"),
    ];
    assert_eq!(
        round(&template, &request).prompt_array(&template).unwrap()[1..],
        [
            "Bob\nHi<|im_end|>\n",
            "Ann\nHello<|im_end|>\n",
            // An empty name keeps the template's role string.
            "<|im_start|>user\nBye<|im_end|>\n",
            "Eve\nAgain<|im_end|>\n",
            "<|im_start|>assistant\n",
        ]
    );
}

#[test]
fn an_empty_system_message_overrides_the_default() {
    let qwen = qwen2_template();
    let conversation = round(&qwen, &messages(&[("system", ""), ("user", "Hi")]));
    assert_eq!(conversation.system_message(), Some(""));
    // `<|im_start|>system\n<|im_end|>\n` is not empty, so the system block stays, with no text.
    assert_eq!(conversation.prompt_array(&qwen).unwrap()[0], "<|im_start|>system\n<|im_end|>\n");

    // With a bare `{system_message}` template the system element disappears.
    let gemma_like = template(
        r#"{"system_template": "{system_message}", "system_message": "Be brief.", "roles": {"user": "u", "assistant": "a"}, "seps": ["\n"]}"#,
    );
    let default =
        round(&gemma_like, &messages(&[("user", "Hi")])).prompt_array(&gemma_like).unwrap();
    assert_eq!(default, ["Be brief.", "u: Hi\n", "a: "], "absent separators are \": \"");
    let overridden = round(&gemma_like, &messages(&[("system", ""), ("user", "Hi")]))
        .prompt_array(&gemma_like)
        .unwrap();
    assert_eq!(overridden, ["u: Hi\n", "a: "]);
}

#[test]
fn separators_use_the_absolute_message_index() {
    let template = template(
        r#"{"system_template": "[INST] <<SYS>>\n{system_message}\n<</SYS>>\n\n", "system_message": "S",
            "roles": {"user": "[INST]", "assistant": "[/INST]"}, "seps": [" ", " </s>"],
            "role_content_sep": " ", "role_empty_sep": " ", "add_role_after_system_message": false}"#,
    );
    let request = messages(&[("user", "a"), ("assistant", "b"), ("user", "c"), ("user", "d")]);
    let conversation = round(&template, &request);
    assert_eq!(
        conversation.prompt_array(&template).unwrap(),
        // Message 0 has no role prefix because the system prompt is not empty.
        [
            "[INST] <<SYS>>\nS\n<</SYS>>\n\n",
            "a ",
            "[/INST] b </s>",
            "[INST] c ",
            "[INST] d </s>",
            "[/INST] "
        ]
    );
    assert_eq!(
        conversation.prompt_array_last_round(&template).unwrap(),
        ["[INST] d </s>", "[/INST] "]
    );
}

#[test]
fn disabled_thinking_appends_an_empty_think_block_without_separator() {
    let template = qwen2_template();
    let request = messages(&[("user", "Hi")]);
    let mut conversation = Conversation::from_request(&template, &request).unwrap();
    conversation.start_round(&template, &request[0], Some(false)).unwrap();
    let prompt = conversation.prompt_array(&template).unwrap();
    assert_eq!(prompt.last().unwrap(), "<|im_start|>assistant\n<think>\n\n</think>\n\n");
    conversation.finish_reply("<think>\n\n</think>\n\nHello").unwrap();
    assert_eq!(
        conversation.prompt_array(&template).unwrap().last().unwrap(),
        "<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>\n"
    );
}

#[test]
fn content_parts_render_their_single_text_part() {
    let template = qwen2_template();
    let with_parts = |parts: Vec<ContentPart>| {
        let message = ChatMessage {
            content: Some(MessageContent::Parts(parts)),
            ..ChatMessage::new("user", "")
        };
        let mut conversation = Conversation::default();
        conversation.start_round(&template, &message, None).map(|()| conversation)
    };
    let text = |text: &str| ContentPart::Text { text: text.to_string() };
    let one = with_parts(vec![text("Hi")]).unwrap();
    assert_eq!(one.prompt_array(&template).unwrap()[1], "<|im_start|>user\nHi<|im_end|>\n");
    let two = with_parts(vec![text("a"), text("b")]).unwrap();
    assert_eq!(
        error_of(two.prompt_array(&template)),
        (
            "MultipleTextContentError".into(),
            "Each message can have at most one text contentPart, but received more than 1.".into()
        )
    );
    let image = ContentPart::ImageUrl {
        image_url: mlc_chat::ImageUrl { url: "data:image/png;base64,".into(), detail: None },
    };
    assert_eq!(
        error_of(with_parts(vec![image, text("a")]).unwrap().prompt_array(&template)).0,
        "CannotFindImageEmbedError"
    );
}

#[test]
fn malformed_conversations_give_webllm_errors() {
    let qwen = qwen2_template();
    let build = |list: &[(&str, &str)]| Conversation::from_request(&qwen, &messages(list));
    assert_eq!(
        error_of(build(&[("user", "Hi"), ("assistant", "Hello")])),
        (
            "MessageOrderError".into(),
            "The last message should be from the `user` or `tool`.".into()
        )
    );
    assert_eq!(
        error_of(build(&[])),
        ("TypeError".into(), "Cannot read properties of undefined (reading 'role')".into())
    );
    assert_eq!(
        error_of(build(&[("user", "Hi"), ("system", "S"), ("user", "Hi")])),
        (
            "SystemMessageOrderError".into(),
            "System prompt should always be the first message in `messages`.".into()
        )
    );
    assert_eq!(
        error_of(build(&[("developer", "Hi"), ("user", "Hi")])),
        ("UnsupportedRoleError".into(), "Unsupported role of message: developer".into())
    );
    // The qwen2 template has no `tool` role.
    assert_eq!(
        error_of(build(&[("tool", "42"), ("user", "Hi")])),
        ("Error".into(), "Role is not supported: tool".into())
    );
    let tool_reply = ChatMessage::new("tool", "42");
    assert_eq!(
        error_of(Conversation::default().start_round(&qwen, &tool_reply, None)).1,
        "Role is not supported: tool"
    );

    let no_content = [
        ChatMessage { content: None, ..ChatMessage::new("assistant", "") },
        ChatMessage::new("user", "Hi"),
    ];
    assert_eq!(
        error_of(Conversation::from_request(&qwen, &no_content)),
        ("ContentTypeError".into(), "assistant's message should have string content.".into())
    );
    let no_seps = template(r#"{"roles": {"user": "u", "assistant": "a"}}"#);
    assert_eq!(
        error_of(round(&no_seps, &messages(&[("user", "Hi")])).prompt_array(&no_seps)).1,
        "Need seps to work"
    );
    assert_eq!(
        error_of(round(&qwen, &messages(&[("user", "Hi")])).prompt_array_last_round(&qwen)).1,
        "needs to call getPromptArray for the first message"
    );
}
