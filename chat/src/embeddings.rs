//! `embeddings.create`: WebLLM's request and response types, its checks and
//! errors, over an encoder ([`EmbeddingModel`]). Two front ends share it with
//! different conventions ([`EmbeddingConvention`]; docs/chat.md, "Embeddings").

use base64::Engine as _;
use mlc_engine::EmbeddingModel;
use mlc_loader::Artifact;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::engine::{EngineSetupError, RequestError, model_id_of};
use crate::error::ChatError;
use crate::tokenizer::Tokenizer;

/// What to embed: OpenAI's four forms.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts, one embedding each.
    Texts(Vec<String>),
    /// One input as token ids.
    Tokens(Vec<u32>),
    /// Several inputs as token ids.
    TokenArrays(Vec<Vec<u32>>),
}

/// An `embeddings.create` request (`EmbeddingCreateParams`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbeddingRequest {
    /// The input(s).
    pub input: EmbeddingInput,
    /// The model to use, when several are loaded.
    #[serde(default)]
    pub model: Option<String>,
    /// `"float"` (the default) or `"base64"`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Not supported by WebLLM (`UnsupportedFieldsError`).
    #[serde(default)]
    pub dimensions: Option<serde_json::Value>,
    /// Not supported by WebLLM (`UnsupportedFieldsError`).
    #[serde(default)]
    pub user: Option<serde_json::Value>,
}

/// How a front end turns texts into embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingConvention {
    /// WebLLM's `embeddings.create`: texts tokenized without special tokens
    /// (callers add `[CLS]`/`[SEP]` themselves, as WebLLM's example does), the
    /// first row returned as it is, floats only.
    WebLlm,
    /// MLC's own server (`mlc_llm serve`'s `/v1/embeddings`): texts tokenized
    /// with the tokenizer's special tokens (`[CLS] … [SEP]`), the first row
    /// L2-normalised (the artifact's `embedding_metadata.normalize`), and
    /// `encoding_format: "base64"` served.
    Server,
}

/// One embedding of the response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embedding {
    /// The vector: floats, or their little-endian f32 bytes in base64.
    pub embedding: EmbeddingVector,
    /// Position of its input in the request.
    pub index: usize,
    /// Always `"embedding"`.
    pub object: &'static str,
}

/// An embedding as the request's `encoding_format` asked for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `"float"`.
    Float(Vec<f32>),
    /// `"base64"`: the little-endian f32 bytes, base64-encoded (OpenAI's form).
    Base64(String),
}

/// Token counts and speed of the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingUsage {
    /// Tokens of all inputs (no padding).
    pub prompt_tokens: usize,
    /// The same as `prompt_tokens`.
    pub total_tokens: usize,
    /// WebLLM's extra figures.
    pub extra: EmbeddingUsageExtra,
}

/// WebLLM's `usage.extra` of an embedding response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingUsageExtra {
    /// Input tokens per second of the whole request.
    pub prefill_tokens_per_s: f64,
}

/// The response (`CreateEmbeddingResponse`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingResponse {
    /// One per input, in order.
    pub data: Vec<Embedding>,
    /// The model id.
    pub model: String,
    /// Always `"list"`.
    pub object: &'static str,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

/// Fields of `EmbeddingCreateParams` WebLLM rejects.
const UNSUPPORTED_FIELDS: [&str; 2] = ["dimensions", "user"];

/// WebLLM's `postInitAndCheckFields` for embeddings, plus an
/// `encoding_format` check: unsupported fields, base64 (for WebLLM's
/// convention), empty inputs.
pub fn check_request(
    request: &EmbeddingRequest,
    convention: EmbeddingConvention,
) -> Result<(), ChatError> {
    let set = [request.dimensions.is_some(), request.user.is_some()];
    let fields: Vec<String> = UNSUPPORTED_FIELDS
        .iter()
        .zip(set)
        .filter(|(_, set)| *set)
        .map(|(name, _)| name.to_string())
        .collect();
    if !fields.is_empty() {
        return Err(ChatError::UnsupportedFields { fields, class: "EmbeddingCreateParams" });
    }
    match (request.encoding_format.as_deref(), convention) {
        (None | Some("float"), _) | (Some("base64"), EmbeddingConvention::Server) => {}
        (Some("base64"), EmbeddingConvention::WebLlm) => {
            return Err(ChatError::EmbeddingUnsupportedEncodingFormat);
        }
        (Some(other), _) => {
            return Err(ChatError::Error(format!(
                "encoding_format must be \"float\" or \"base64\", got {other:?}"
            )));
        }
    }
    let empty = match &request.input {
        EmbeddingInput::Text(text) => text.is_empty(),
        EmbeddingInput::Texts(texts) => texts.is_empty() || texts.iter().any(String::is_empty),
        EmbeddingInput::Tokens(tokens) => tokens.is_empty(),
        EmbeddingInput::TokenArrays(inputs) => {
            inputs.is_empty() || inputs.iter().any(Vec::is_empty)
        }
    };
    match empty {
        true => Err(ChatError::EmbeddingInputEmpty),
        false => Ok(()),
    }
}

/// The token ids of each input, as `convention` tokenizes texts.
pub fn tokenize_inputs(
    input: &EmbeddingInput,
    tokenizer: &Tokenizer,
    convention: EmbeddingConvention,
) -> Result<Vec<Vec<u32>>, ChatError> {
    let encode = |text: &str| match convention {
        EmbeddingConvention::WebLlm => tokenizer.encode(text),
        EmbeddingConvention::Server => tokenizer.encode_with_special_tokens(text),
    };
    Ok(match input {
        EmbeddingInput::Text(text) => vec![encode(text)?],
        EmbeddingInput::Texts(texts) => {
            texts.iter().map(|t| encode(t)).collect::<Result<_, _>>()?
        }
        EmbeddingInput::Tokens(tokens) => vec![tokens.clone()],
        EmbeddingInput::TokenArrays(inputs) => inputs.clone(),
    })
}

/// Answers `request` with `model` (loaded as `model_id`): checks it, tokenizes
/// the texts, rejects inputs longer than the context window with WebLLM's
/// error, and returns one embedding per input.
pub async fn create_embeddings(
    model: &mut dyn EmbeddingModel,
    tokenizer: &Tokenizer,
    model_id: &str,
    request: &EmbeddingRequest,
    convention: EmbeddingConvention,
) -> Result<EmbeddingResponse, RequestError> {
    check_request(request, convention)?;
    let started = Instant::now();
    let inputs = tokenize_inputs(&request.input, tokenizer, convention)?;
    let context_window_size = model.spec().context_window_size;
    if let Some(long) = inputs.iter().find(|tokens| tokens.len() > context_window_size) {
        return Err(ChatError::EmbeddingExceedContextWindowSize {
            context_window_size,
            input_size: long.len(),
        }
        .into());
    }
    if inputs.iter().any(Vec::is_empty) {
        // A non-empty text can tokenize to nothing (e.g. only whitespace).
        return Err(ChatError::EmbeddingInputEmpty.into());
    }
    let vectors = model.embed(&inputs).await?;
    let tokens: usize = inputs.iter().map(Vec::len).sum();
    let seconds = started.elapsed().as_secs_f64();
    let base64 = request.encoding_format.as_deref() == Some("base64");
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, mut vector)| {
            if convention == EmbeddingConvention::Server {
                l2_normalize(&mut vector);
            }
            let embedding = match base64 {
                true => EmbeddingVector::Base64(
                    base64::engine::general_purpose::STANDARD
                        .encode(vector.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
                ),
                false => EmbeddingVector::Float(vector),
            };
            Embedding { embedding, index, object: "embedding" }
        })
        .collect();
    Ok(EmbeddingResponse {
        data,
        model: model_id.to_string(),
        object: "list",
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            extra: EmbeddingUsageExtra {
                prefill_tokens_per_s: if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 },
            },
        },
    })
}

/// An encoder with its tokenizer, answering embedding requests: what the
/// front ends hold for an embedding model (a chat model's is `ChatEngine`).
pub struct Embedder {
    model: Box<dyn EmbeddingModel>,
    tokenizer: Tokenizer,
    model_id: String,
}

impl Embedder {
    /// An embedder for `model`, loaded from `artifact`: the tokenizer is read
    /// from the artifact's files and the model id is the artifact's name.
    pub fn new(
        model: Box<dyn EmbeddingModel>,
        artifact: &Artifact,
    ) -> Result<Embedder, EngineSetupError> {
        let tokenizer = Tokenizer::from_bytes(&artifact.file(crate::engine::TOKENIZER_FILE)?)?;
        Ok(Embedder { model, tokenizer, model_id: model_id_of(artifact.source()) })
    }

    /// The id responses name.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Replaces the id responses name.
    pub fn set_model_id(&mut self, model_id: String) {
        self.model_id = model_id;
    }

    /// The encoder.
    pub fn model(&self) -> &dyn EmbeddingModel {
        self.model.as_ref()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Answers `request` ([`create_embeddings`]).
    pub async fn create(
        &mut self,
        request: &EmbeddingRequest,
        convention: EmbeddingConvention,
    ) -> Result<EmbeddingResponse, RequestError> {
        create_embeddings(self.model.as_mut(), &self.tokenizer, &self.model_id, request, convention)
            .await
    }
}

/// Scales `v` to unit length (a zero vector stays zero, as in MLC's server).
fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> EmbeddingRequest {
        serde_json::from_value(json).expect("a request")
    }

    #[test]
    fn the_four_input_forms_parse() {
        let forms = [
            (serde_json::json!("a"), EmbeddingInput::Text("a".into())),
            (serde_json::json!(["a", "b"]), EmbeddingInput::Texts(vec!["a".into(), "b".into()])),
            (serde_json::json!([1, 2]), EmbeddingInput::Tokens(vec![1, 2])),
            (
                serde_json::json!([[1], [2, 3]]),
                EmbeddingInput::TokenArrays(vec![vec![1], vec![2, 3]]),
            ),
        ];
        for (input, want) in forms {
            assert_eq!(request(serde_json::json!({ "input": input })).input, want);
        }
    }

    #[test]
    fn webllm_checks_give_webllm_errors() {
        let check = |json| check_request(&request(json), EmbeddingConvention::WebLlm);
        let err =
            check(serde_json::json!({"input": "a", "dimensions": 8, "user": "u"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "UnsupportedFieldsError: The following fields in EmbeddingCreateParams are not yet supported: \ndimensions, user"
        );
        let err =
            check(serde_json::json!({"input": "a", "encoding_format": "base64"})).unwrap_err();
        assert_eq!(err.name(), "EmbeddingUnsupportedEncodingFormatError");
        for empty in [
            serde_json::json!(""),
            serde_json::json!([]),
            serde_json::json!(["a", ""]),
            serde_json::json!([[1], []]),
        ] {
            let err = check(serde_json::json!({ "input": empty })).unwrap_err();
            assert_eq!(
                err.to_string(),
                "EmbeddingInputEmptyError: Embedding input cannot be empty string or empty token array."
            );
        }
        // The server serves base64 and refuses what is neither.
        let server = |json| check_request(&request(json), EmbeddingConvention::Server);
        assert!(server(serde_json::json!({"input": "a", "encoding_format": "base64"})).is_ok());
        assert!(server(serde_json::json!({"input": "a", "encoding_format": "int8"})).is_err());
    }

    #[test]
    fn the_context_error_keeps_webllm_s_missing_space() {
        let err = ChatError::EmbeddingExceedContextWindowSize {
            context_window_size: 512,
            input_size: 600,
        };
        assert_eq!(
            err.to_string(),
            "EmbeddingExceedContextWindowSizeError: The embedding model you are using only supports up to 512 context size.However, an input in the batch has size 600."
        );
    }
}
