// Request-level checks that WebLLM runs synchronously inside `create()` (docs/chat.md, "WebLLM's request contract"), in its
// order, so a bad request rejects `create()` itself — also for streaming requests, whose
// generation only starts on the first `next()`. The wasm engine repeats these checks and also
// runs the generation-parameter checks (docs/sampling.md, "Parameters"), which therefore surface lazily, as in WebLLM.

import { functionCallingModelIds, ModelType } from "./config.js";
import {
  ContentTypeError, CustomResponseFormatError, CustomSystemPromptError, InvalidResponseFormatError, InvalidResponseFormatGrammarError,
  InvalidResponseFormatStructuralTagError, InvalidStreamOptionsError, MessageOrderError,
  SeedTypeError, StreamingCountError, SystemMessageOrderError, UnsupportedFieldsError,
  UnsupportedModelIdError, UnsupportedRoleError, UserMessageContentErrorForNonVLM, UnsupportedContentPartError,
  UnsupportedDetailError, UnsupportedImageURLError, MultipleTextContentError,
} from "./errors.js";

export const ChatCompletionRequestUnsupportedFields = [];
const CompletionUnsupportedFields = ["suffix", "user", "best_of"];

function checkCommon(request) {
  if (request.stream && request.n > 1) throw new StreamingCountError();
  if (request.seed !== undefined && request.seed !== null && !Number.isInteger(request.seed)) throw new SeedTypeError(request.seed);
}

// The parts of a VLM user message, as WebLLM checks them: images by URL form; audio is refused,
// since no record declares audio input (WebLLM's artifact-manifest audio adapters are not supported);
// one text part at most.
function checkContentParts(parts, currentModelId) {
  let texts = 0;
  for (const part of parts) {
    if (part.type === "image_url") {
      const detail = part.image_url.detail;
      if (detail !== undefined && detail !== null) throw new UnsupportedDetailError(detail);
      const url = part.image_url.url;
      if (!url.startsWith("data:image") && !url.startsWith("http")) throw new UnsupportedImageURLError(url);
    } else if (part.type === "input_audio") {
      throw new UnsupportedContentPartError(currentModelId, part.type);
    } else {
      texts += 1;
    }
  }
  if (texts > 1) throw new MultipleTextContentError();
}

// `toolFormat` is how the loaded model calls tools, as the wasm engine reports it (`toolFormat()`):
// "hermes" for WebLLM's function-calling ids, "qwen" for Qwen2.5's template, undefined otherwise.
export function postInitAndCheckFieldsChatCompletion(
  request, currentModelId, modelType = ModelType.LLM,
  toolFormat = functionCallingModelIds.includes(currentModelId) ? "hermes" : undefined,
) {
  request.messages.forEach((m, i) => {
    switch (m.role) {
      case "system":
        if (i !== 0) throw new SystemMessageOrderError();
        break;
      case "user":
        if (typeof m.content !== "string") {
          if (modelType !== ModelType.VLM) throw new UserMessageContentErrorForNonVLM(currentModelId, ModelType[modelType], m.content);
          checkContentParts(m.content, currentModelId);
        }
        break;
      case "assistant":
        // A Qwen2.5 reply that only called tools comes back with `content: null` (OpenAI's shape);
        // the engine renders its `tool_calls` instead.
        if (typeof m.content !== "string" && !(toolFormat === "qwen" && request.tools && m.tool_calls?.length)) {
          throw new ContentTypeError("assistant's message");
        }
        break;
      case "tool":
        break;
      default:
        throw new UnsupportedRoleError(m.role);
    }
  });
  // An empty array throws a plain TypeError here, as in WebLLM.
  const last = request.messages[request.messages.length - 1].role;
  if (last !== "user" && last !== "tool") throw new MessageOrderError();
  checkCommon(request);
  const rf = request.response_format;
  if (rf) {
    if (rf.schema !== undefined && rf.schema !== null && rf.type !== "json_object") throw new InvalidResponseFormatError();
    if ((rf.type === "grammar") !== (rf.grammar !== undefined && rf.grammar !== null)) throw new InvalidResponseFormatGrammarError();
    if ((rf.type === "structural_tag") !== (rf.structural_tag !== undefined && rf.structural_tag !== null)) {
      throw new InvalidResponseFormatStructuralTagError();
    }
  }
  if (request.tools !== undefined && request.tools !== null) {
    if (!toolFormat) throw new UnsupportedModelIdError(currentModelId, functionCallingModelIds);
    // WebLLM's Hermes rewriting sets the system prompt and the response format itself.
    if (toolFormat === "hermes") {
      if (request.response_format !== undefined && request.response_format !== null) {
        throw new CustomResponseFormatError(request.response_format);
      }
      if (request.messages[0].role === "system") throw new CustomSystemPromptError();
    }
  }
  if (request.stream_options !== undefined && request.stream_options !== null && !request.stream) throw new InvalidStreamOptionsError();
}

export function postInitAndCheckFieldsCompletion(request, currentModelId) {
  void currentModelId;
  const bad = CompletionUnsupportedFields.filter((f) => f in request);
  if (bad.length) throw new UnsupportedFieldsError(bad, "CompletionCreateParams");
  checkCommon(request);
  if (request.stream_options !== undefined && request.stream_options !== null && !request.stream) throw new InvalidStreamOptionsError();
}

export function postInitAndCheckFieldsEmbedding(request, currentModelId) {
  void currentModelId;
  const bad = ["dimensions", "user"].filter((f) => f in request);
  if (bad.length) throw new UnsupportedFieldsError(bad, "EmbeddingCreateParams");
}

/** Resumable generation is for chat completions only: WebLLM refuses it for text completions. */
export function rejectCompletionResumable(request) {
  if (request?.extra_body?.resumable !== undefined) {
    throw new UnsupportedFieldsError(["extra_body.resumable"], "CompletionCreateParams");
  }
}
