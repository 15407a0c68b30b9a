// WebLLM 0.2.86's error classes: same `.name` and the same message text (web-llm
// `src/error.ts`; docs/chat.md, "WebLLM's request contract").
// Apps discriminate errors by `err.name` / `err.message` (WebLLM exports only IntegrityError),
// so the strings are the API. Errors raised inside the wasm engine already carry these names;
// the classes here cover what the JS layer checks itself (model selection, request shape,
// loading, workers).

function define(name, makeMessage, base = Error) {
  // A named class per error so `instanceof` works in-thread and `.name` matches WebLLM.
  const cls = class extends base {
    constructor(...args) {
      super(makeMessage(...args));
      this.name = name;
    }
  };
  Object.defineProperty(cls, "name", { value: name });
  return cls;
}

export const ModelNotFoundError = define("ModelNotFoundError", (id) =>
  `Cannot find model record in appConfig for ${id}. Please check if the model ID is correct and included in the model_list configuration.`);
export const WebGPUNotAvailableError = define("WebGPUNotAvailableError", () =>
  "WebGPU is not supported in your current environment, but it is necessary to run the WebLLM engine. Please make sure that your browser supports WebGPU and that it is enabled in your browser settings. You can also consult your browser's compatibility chart to see if it supports WebGPU. For more information about WebGPU support in your browser, visit https://webgpureport.org/");
export const WebGPUNotFoundError = define("WebGPUNotFoundError", () => "Cannot find WebGPU in the environment");
export const ModelNotLoadedError = define("ModelNotLoadedError", (req) =>
  `Model not loaded before trying to complete ${req}. Please ensure you have called MLCEngine.reload(model) to load the model before initiating APIs, or initialize your engine using CreateMLCEngine() with a valid model configuration.`);
export const WorkerEngineModelNotLoadedError = define("WorkerEngineModelNotLoadedError", (cls) =>
  `${cls} is not loaded with a model. Did you call \`engine.reload()\`?`);
export const MessageOrderError = define("MessageOrderError", (m) => m ?? "Last message should be from either `user` or `tool`.");
export const SystemMessageOrderError = define("SystemMessageOrderError", () =>
  "System prompt should always be the first message in `messages`.");
export const ContentTypeError = define("ContentTypeError", (n) => `${n} should have string content.`);
export const UnsupportedRoleError = define("UnsupportedRoleError", (r) => `Unsupported role of message: ${r}`);
export const UserMessageContentErrorForNonVLM = define("UserMessageContentErrorForNonVLM", (id, type, content) =>
  `The model loaded is not of type ModelType.VLM (vision-language model). Therefore, user message only supports string content, but received: ${content}\nLoaded modelId: ${id}, modelType: ${type}`);
export const UnsupportedDetailError = define("UnsupportedDetailError", (d) =>
  `Currently do not support field image_url.detail, but received: ${d}`);
export const UnsupportedImageURLError = define("UnsupportedImageURLError", (u) =>
  `image_url.url should start with "data:image" for base64, or with "http", but got: ${u}`);
export const MultipleTextContentError = define("MultipleTextContentError", () =>
  "Each message can have at most one text contentPart, but received more than 1.");
export const StreamingCountError = define("StreamingCountError", () => "When streaming, `n` cannot be > 1.");
export const SeedTypeError = define("SeedTypeError", (x) => `\`seed\` should be an integer, but got ${x}`);
export const InvalidStreamOptionsError = define("InvalidStreamOptionsError", () => "Only specify stream_options when stream=True.");
export const InvalidResponseFormatError = define("InvalidResponseFormatError", () =>
  "JSON schema is only supported with `json_object` response format.");
export const InvalidResponseFormatGrammarError = define("InvalidResponseFormatGrammarError", () =>
  "When ResponseFormat.type is `grammar`, ResponseFormat.grammar needs to be specified.\nWhen ResponseFormat.grammar is specified, ResponseFormat.type needs to be grammar.");
export const InvalidResponseFormatStructuralTagError = define("InvalidResponseFormatStructuralTagError", () =>
  "When ResponseFormat.type is `structural_tag`, ResponseFormat.structural_tag needs to be specified.\nWhen ResponseFormat.structural_tag is specified, ResponseFormat.type needs to be structural_tag.");
export const CustomResponseFormatError = define("CustomResponseFormatError", (f) =>
  `When using Hermes-2-Pro function calling via ChatCompletionRequest.tools, cannot specify customized response_format. We will set it for you internally. Currently set to: ${JSON.stringify(f)}`);
export const CustomSystemPromptError = define("CustomSystemPromptError", () =>
  "When using Hermes-2-Pro function calling via ChatCompletionRequest.tools, cannot specify customized system prompt.");
// WebLLM's text, plus the Qwen2.5 models whose own tool-call format the engine also speaks.
export const UnsupportedModelIdError = define("UnsupportedModelIdError", (id, ids) =>
  `${id} is not supported for ChatCompletionRequest.tools. Currently, models that support function calling are: ${ids.join(", ")}, and models with the \`qwen2\` conversation template (Qwen2.5)`);
export const ConfigurationNotInitializedError = define("ConfigurationNotInitializedError", () =>
  "Configuration not initialized. Ensure you have called `reload()` function first.");
export const MissingModelWasmError = define("MissingModelError", (id) =>
  `Missing \`model_lib\` for the model with ID "${id}". Please ensure that \`model_lib\` is provided in \`model_list\` for each model. This URL is essential for downloading the WASM library necessary to run the model.`);
export const FeatureSupportError = define("FeatureSupportError", (f) =>
  `This model requires feature ${f}, which is not yet supported by this browser.`);
export const ShaderF16SupportError = define("ShaderF16SupportError", () =>
  'This model requires WebGPU extension shader-f16, which is not enabled in this browser. You can try to launch Chrome Canary in command line with flag "--enable-dawn-features=allow_unsafe_apis".');
export const DeviceLostError = define("DeviceLostError", () =>
  "The WebGPU device was lost while loading the model. This issue often occurs due to running out of memory (OOM). To resolve this, try reloading with a model that has fewer parameters or uses a smaller context length.");
export const UnsupportedTokenizerFilesError = define("UnsupportedTokenizerFilesError", (files) =>
  `Cannot handle tokenizer files ${files}`);
export const UnsupportedFieldsError = define("UnsupportedFieldsError", (fields, cls) =>
  `The following fields in ${cls} are not yet supported: \n${fields.join(", ")}`);
export const NonWorkerEnvironmentError = define("NonWorkerEnvironmentError", (cls) =>
  `${cls} must be created in the service worker script.`);
export const NoServiceWorkerAPIError = define("NoServiceWorkerAPIError", () =>
  "Service worker API is not available in your browser. Please ensure that your browser supports service workers and that you are using a secure context (HTTPS). Check the browser compatibility and ensure that service workers are not disabled in your browser settings.");
export const ServiceWorkerInitializationError = define("ServiceWorkerInitializationError", () =>
  "Service worker failed to initialize. This could be due to a failure in the service worker registration process or because the service worker is not active. Please refresh the page to retry initializing the service worker.");
export const UnknownMessageKindError = define("UnknownMessageKindError", (k, c) => `Unknown message kind, msg: [${k}] ${c}`);
export const EmbeddingUnsupportedModelError = define("EmbeddingUnsupportedModelError", (m) =>
  `Trying to run embeddings.create() with ${m}, which does not have ModelRecord.model_type === ModelType.embedding in the model record. Either make sure an embedding model is loaded, or specify the model type in ModelRecord.`);
export const ReloadArgumentSizeUnmatchedError = define("ReloadArgumentSizeUnmatchedError", (a, b) =>
  `Expect chatOpts, if specified, to match the size of modelId. However, got ${a} modelId, but ${b} chatOpts.`);
export const ReloadModelIdNotUniqueError = define("ReloadModelIdNotUniqueError", (ids) =>
  `Need to make models in modelId passed to reload() need to be unique. If you want to, load copies of the same model, consider making copies of the ModelRecord with different model_id. Received modelId: ${ids}`);
export const UnclearModelToUseError = define("UnclearModelToUseError", (ids, req) =>
  `Multiple models are loaded in engine. Please specify the model in ${req}.\nCurrently loaded models are:\n${ids}`);
export const SpecifiedModelNotFoundError = define("SpecifiedModelNotFoundError", (ids, m, req) =>
  `Specified model ${m} for ${req} is not found in loaded models. Please check if the correct model is loaded/specified. Currently loaded models are:\n${ids}`);
export const IncorrectPipelineLoadedError = define("IncorrectPipelineLoadedError", (id, p, req) =>
  `${req} expects model to be loaded with ${p}. However, ${id} is not loaded with this pipeline.`);
export const WindowSizeConfigurationError = define("WindowSizeConfigurationError", (c, s) =>
  `Only one of context_window_size and sliding_window_size can be positive. Got: context_window_size: ${c}, sliding_window_size: ${s}\nConsider modifying ModelRecord.overrides to set one of them to -1.`);
export const WindowSizeSpecificationError = define("WindowSizeSpecificationError", () =>
  "Need to specify either sliding_window_size or max_window_size.\nConsider modifying ModelRecord.overrides to set one of them to positive.");

// mlc-wgpu's own: a prebuilt (or custom) record the runtime cannot run. Raised by reload() before the
// weights are downloaded (docs/web-migration.md, "Not supported yet").
export const ModelFamilyNotSupportedError = define("ModelFamilyNotSupportedError", (id, reason) =>
  `${id} cannot be loaded by mlc-wgpu: ${reason}`);
// WebLLM's error for input content of a kind the model does not take.
export const UnsupportedContentPartError = define("UnsupportedContentPartError", (id, type) =>
  `Model ${id} does not declare support for user content type ${JSON.stringify(type)}.`);

// The ConfigValueError family; WebLLM's `RangeError` deliberately shadows the built-in name.
export const MinValueError = define("MinValueError", (p, m) => `Make sure \`${p}\` > ${m}.`);
export const WebLLMRangeError = define("RangeError", (p, lo, hi, extra) =>
  `Make sure ${lo} < ${p} <= ${hi}.` + (extra ? ` ${extra}` : ""));
export const NonNegativeError = define("NonNegativeError", (p) => `Make sure ${p} >= 0.`);
export const InvalidNumberStringError = define("InvalidNumberStringError", (p, v) =>
  `Make sure ${p} to be number represented in string.` + (v !== undefined ? ` Got ${v}` : ""));
export const DependencyError = define("DependencyError", () => "top_logprobs requires logprobs to be true.");

/** SRI mismatch (docs/web-migration.md, "Integrity"); the only error class WebLLM itself exports. */
export class IntegrityError extends Error {
  constructor(url, expected, actual) {
    super(`Integrity verification failed for ${url}\n  Expected: ${expected}\n  Actual: ${actual}\nThis may indicate file corruption or tampering.`);
    this.name = "IntegrityError";
    this.url = url;
    this.expected = expected;
    this.actual = actual;
  }
}

// mlc-wgpu's own errors (no WebLLM equivalent; WebLLM surfaces the browser's raw error instead).

/** Storage quota too small for a file: names the file, its size, and the quota/usage figures. */
export class CacheQuotaExceededError extends Error {
  constructor(url, bytes, estimate, cause) {
    const mb = (n) => (n / 1048576).toFixed(1);
    const figures = estimate && estimate.quota !== undefined
      ? `the browser allows this site ${mb(estimate.quota)} MB and ${mb(estimate.usage ?? 0)} MB are already used`
      : "the browser did not report its storage quota";
    super(`Not enough storage to cache ${url} (${mb(bytes)} MB): ${figures}. ` +
      `Free disk space, allow this site more storage, or delete cached models with deleteModelAllInfoInCache().`);
    this.name = "QuotaExceededError";
    this.url = url;
    this.bytes = bytes;
    this.quota = estimate?.quota;
    this.usage = estimate?.usage;
    this.cause = cause;
  }
}

/** A file could not be downloaded completely and correctly (after retries). */
export class DownloadError extends Error {
  constructor(url, reason, status) {
    super(`Failed to download ${url}: ${reason}`);
    this.name = "DownloadError";
    this.url = url;
    this.status = status;
  }
}
