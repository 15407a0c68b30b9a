// TypeScript types of mlc-wgpu's WebLLM-compatible module. Names and shapes follow
// `@mlc-ai/web-llm` 0.2.86's `lib/*.d.ts` so code type-checked against WebLLM type-checks here;
// mlc-wgpu additions are marked.

// ---------------------------------------------------------------- configuration

export type LogLevel = "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR" | "SILENT";

export declare const ModelType: { readonly LLM: 0; readonly embedding: 1; readonly VLM: 2; readonly [k: number]: string };
export type ModelType = 0 | 1 | 2;

export interface ConvTemplateConfig {
  system_template: string;
  system_message: string;
  roles: Record<string, string>;
  role_templates?: Partial<Record<string, string>>;
  seps: string[];
  role_content_sep?: string;
  role_empty_sep?: string;
  stop_str: string[];
  system_prefix_token_ids?: number[];
  stop_token_ids: number[];
  add_role_after_system_message?: boolean;
  render_empty_system_message?: boolean;
}

export interface ChatConfig {
  tokenizer_files: string[];
  tokenizer_info?: { token_postproc_method: string; prepend_space_in_encode: boolean; strip_space_in_decode: boolean };
  token_table_postproc_method?: string;
  vocab_size: number;
  conv_config?: Partial<ConvTemplateConfig>;
  conv_template: ConvTemplateConfig;
  context_window_size: number;
  sliding_window_size: number;
  attention_sink_size: number;
  max_history_size?: number;
  repetition_penalty: number;
  frequency_penalty: number;
  presence_penalty: number;
  top_p: number;
  temperature: number;
  bos_token_id?: number;
  model_type?: string;
  model_config?: Record<string, unknown>;
}
export type ChatOptions = Partial<ChatConfig>;

export type SRIString = string;
export type FileIntegrityMap = Record<string, SRIString>;
export interface ModelIntegrity {
  config?: SRIString;
  model_lib?: SRIString;
  tokenizer?: FileIntegrityMap;
  onFailure?: "error" | "warn";
}

export interface ModelRecord {
  model: string;
  model_id: string;
  /** Kept for compatibility; mlc-wgpu never downloads it (and does not require it). */
  model_lib: string;
  overrides?: ChatOptions;
  vram_required_MB?: number;
  low_resource_required?: boolean;
  buffer_size_required_bytes?: number;
  required_features?: string[];
  model_type?: ModelType;
  integrity?: ModelIntegrity;
  model_manifest?: string;
}

export type OPFSAccessMode = "async" | "sync" | "auto";
export interface AppConfig {
  model_list: ModelRecord[];
  /** "cache" (default), "indexeddb" and "opfs" are implemented; "cross-origin" falls back to "cache". */
  cacheBackend?: "cache" | "indexeddb" | "cross-origin" | "opfs";
  opfsAccessMode?: OPFSAccessMode;
  /** Pre-0.2.80 flag; honoured as `cacheBackend: "indexeddb"` when `cacheBackend` is absent. */
  useIndexedDBCache?: boolean;
}

export interface InitProgressReport {
  progress: number;
  timeElapsed: number;
  text: string;
  /** mlc-wgpu addition: "notice" | "fetch" | "load" | "done". */
  phase?: "notice" | "fetch" | "load" | "done";
  /** mlc-wgpu addition: bytes of weights fetched/loaded so far in this phase. */
  loadedBytes?: number;
  /** mlc-wgpu addition: total bytes of weights. */
  totalBytes?: number;
  /**
   * mlc-wgpu addition, on the WebGPU engine's last report: "subgroups" when its kernels use
   * subgroup operations (the adapter offers them), else "portable".
   */
  gpuKernels?: "subgroups" | "portable";
}
export type InitProgressCallback = (report: InitProgressReport) => void;

export interface LogitProcessor {
  processLogits(logits: Float32Array): Float32Array;
  processSampledToken(token: number): void;
  resetState(): void;
}

export interface MLCEngineConfig {
  appConfig?: AppConfig;
  initProgressCallback?: InitProgressCallback;
  /** Accepted but not supported by mlc-wgpu (a warning is logged). */
  logitProcessorRegistry?: Map<string, LogitProcessor>;
  logLevel?: LogLevel;
  /**
   * mlc-wgpu addition: which engine runs the model. Default "auto": WebGPU on a hardware adapter,
   * else the CPU engine (no WebGPU, or only a software adapter such as SwiftShader, which is slower
   * than the CPU engine), saying why in a progress report. "webgpu" takes any adapter.
   */
  device?: "webgpu" | "cpu" | "auto";
  /**
   * mlc-wgpu addition: where the engine's `mlc_wgpu_web_bg.wasm` is. Default: beside the module
   * (`new URL("../pkg/mlc_wgpu_web_bg.wasm", import.meta.url)`, which webpack 5, Vite and Next follow).
   * Set it when a bundler cannot (esbuild) or to serve the file from elsewhere. The first engine
   * loaded in a page or worker decides; later values are ignored.
   */
  wasmUrl?: string | URL;
  /**
   * mlc-wgpu addition: the CPU engine's threads (integer >= 1; default
   * `navigator.hardwareConcurrency`). Used only in a dedicated Web Worker of a cross-origin
   * isolated page (COOP/COEP headers), which loads the threaded module (`pkg-threads/`); elsewhere
   * the CPU engine runs on one thread. The final progress report says how many ran.
   */
  cpuThreads?: number;
  /** mlc-wgpu addition: where the threaded module's glue `mlc_wgpu_web.js` is. Default: `../pkg-threads/` beside the module's `js/`. */
  threadsUrl?: string | URL;
}

export interface GenerationConfig {
  repetition_penalty?: number;
  ignore_eos?: boolean;
  top_p?: number | null;
  temperature?: number | null;
  max_tokens?: number | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  stop?: string | null | Array<string>;
  n?: number | null;
  logit_bias?: Record<string, number> | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  response_format?: ResponseFormat | null;
  enable_thinking?: boolean | null;
  enable_latency_breakdown?: boolean | null;
}

// ---------------------------------------------------------------- OpenAI protocol (WebLLM's shape)

export type ChatCompletionRole = "system" | "user" | "assistant" | "tool";
export interface ChatCompletionContentPartText { type: "text"; text: string }
export interface ChatCompletionContentPartImage { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } }
export type ChatCompletionContentPart = ChatCompletionContentPartText | ChatCompletionContentPartImage;
export interface ChatCompletionSystemMessageParam { role: "system"; content: string }
export interface ChatCompletionUserMessageParam { role: "user"; content: string | Array<ChatCompletionContentPart>; name?: string }
export interface ChatCompletionMessageToolCall { id: string; type: "function"; function: { name: string; arguments: string } }
export interface ChatCompletionAssistantMessageParam {
  role: "assistant"; content?: string | null; name?: string; tool_calls?: Array<ChatCompletionMessageToolCall>;
}
export interface ChatCompletionToolMessageParam { role: "tool"; content: string; tool_call_id: string }
export type ChatCompletionMessageParam =
  | ChatCompletionSystemMessageParam | ChatCompletionUserMessageParam
  | ChatCompletionAssistantMessageParam | ChatCompletionToolMessageParam;

export type FunctionParameters = Record<string, unknown>;
export interface FunctionDefinition { name: string; description?: string; parameters?: FunctionParameters }
export interface ChatCompletionTool { type: "function"; function: FunctionDefinition }
export interface ChatCompletionNamedToolChoice { type: "function"; function: { name: string } }
export type ChatCompletionToolChoiceOption = "none" | "auto" | ChatCompletionNamedToolChoice;

export interface ResponseFormat {
  type?: "text" | "json_object" | "grammar" | "structural_tag";
  /** A JSON-Schema *string*, as in WebLLM. */
  schema?: string;
  grammar?: string;
  structural_tag?: object | string;
}

export interface ChatCompletionRequestBase {
  messages: Array<ChatCompletionMessageParam>;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  n?: number | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  repetition_penalty?: number | null;
  max_tokens?: number | null;
  stop?: string | null | Array<string>;
  temperature?: number | null;
  top_p?: number | null;
  logit_bias?: Record<string, number> | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  seed?: number | null;
  tool_choice?: ChatCompletionToolChoiceOption;
  tools?: Array<ChatCompletionTool>;
  response_format?: ResponseFormat;
  ignore_eos?: boolean;
  model?: string | null;
  extra_body?: {
    enable_thinking?: boolean | null;
    enable_latency_breakdown?: boolean | null;
    resumable?: ResumableGenerationConfig | null;
  };
}
export interface ChatCompletionRequestNonStreaming extends ChatCompletionRequestBase { stream?: false | null }
export interface ChatCompletionRequestStreaming extends ChatCompletionRequestBase { stream: true }
export type ChatCompletionRequest = ChatCompletionRequestNonStreaming | ChatCompletionRequestStreaming;

export type ChatCompletionFinishReason = "stop" | "length" | "tool_calls" | "abort";
export interface TopLogprob { token: string; bytes: Array<number> | null; logprob: number }
export interface ChatCompletionTokenLogprob extends TopLogprob { top_logprobs: Array<TopLogprob> }

export interface CompletionUsage {
  completion_tokens: number;
  prompt_tokens: number;
  total_tokens: number;
  extra: {
    e2e_latency_s: number;
    prefill_tokens_per_s: number;
    decode_tokens_per_s: number;
    time_to_first_token_s: number;
    time_per_output_token_s: number;
    grammar_init_s?: number;
    grammar_per_token_s?: number;
    latencyBreakdown?: Record<string, number[]>;
  };
}

export interface ChatCompletionMessage { role: "assistant"; content: string | null; tool_calls?: Array<ChatCompletionMessageToolCall> }
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    finish_reason: ChatCompletionFinishReason;
    message: ChatCompletionMessage;
    logprobs: { content: Array<ChatCompletionTokenLogprob> | null } | null;
  }>;
  usage?: CompletionUsage;
  system_fingerprint?: string;
}
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    finish_reason: ChatCompletionFinishReason | null;
    delta: { content?: string | null; role?: "assistant"; tool_calls?: Array<{ index: number; id?: string; type?: "function"; function?: { name?: string; arguments?: string } }> };
    logprobs?: { content: Array<ChatCompletionTokenLogprob> | null } | null;
  }>;
  usage?: CompletionUsage;
}

export interface CompletionCreateParamsBase {
  prompt: string;
  echo?: boolean | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  repetition_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  max_tokens?: number | null;
  n?: number | null;
  seed?: number | null;
  stop?: string | null | Array<string>;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  temperature?: number | null;
  top_p?: number | null;
  ignore_eos?: boolean;
  model?: string | null;
  extra_body?: { enable_latency_breakdown?: boolean | null };
}
export interface CompletionCreateParamsNonStreaming extends CompletionCreateParamsBase { stream?: false | null }
export interface CompletionCreateParamsStreaming extends CompletionCreateParamsBase { stream: true }
export type CompletionCreateParams = CompletionCreateParamsNonStreaming | CompletionCreateParamsStreaming;
export interface CompletionChoice {
  finish_reason: ChatCompletionFinishReason | null;
  index: number;
  logprobs?: { content: Array<ChatCompletionTokenLogprob> | null } | null;
  text: string;
}
export interface Completion {
  id: string; object: "text_completion"; created: number; model: string;
  choices: Array<CompletionChoice>; usage?: CompletionUsage; system_fingerprint?: string;
}

export interface EmbeddingCreateParams { input: string | Array<string> | Array<number> | Array<Array<number>>; encoding_format?: "float" | "base64"; model?: string | null }
export interface Embedding { embedding: Array<number>; index: number; object: "embedding" }
export interface CreateEmbeddingResponse { data: Array<Embedding>; model: string; object: "list"; usage: { prompt_tokens: number; total_tokens: number; extra: { prefill_tokens_per_s: number } } }

// ---------------------------------------------------------------- resumable generation

/** `extra_body.resumable`: journal the generation to OPFS so that it can be resumed. */
export interface ResumableGenerationConfig {
  enabled: boolean;
  /** The session's name (a folder name); a random UUID when absent. */
  sessionId?: string;
  /** Accepted and checked (a positive integer, default 512); no KV checkpoints are written. */
  checkpointIntervalTokens?: number;
  checkpointPrompt?: boolean;
  /** "exact" (default): a chunk is handed out once its tokens are journaled. */
  durabilityMode?: "exact" | "relaxed";
  /** Fail the request when the journal cannot be written (default: carry on unjournaled). */
  strictPersistence?: boolean;
  storeCheckpointLogits?: boolean;
}
export interface ResumeChatCompletionOptions {
  /** Continue generating after the journaled output (default: only read the journal back). */
  continueGeneration?: boolean;
  /** Stream the continuation's chunks (when the original request streamed). */
  stream?: boolean;
}
export interface ResumeProbeResult {
  sessionId: string;
  resumable: boolean;
  reason?: string;
  modelId: string;
  emittedTokens: number;
  processedSeqLen: number;
  recoveryMode: "kv" | "token_replay" | "text_only" | "none";
}
export interface ResumeResult {
  sessionId: string;
  recoveredText: string;
  emittedTokens: number;
  processedSeqLen: number;
  replayedTokens: number;
  recoveryMode: "kv" | "token_replay" | "text_only" | "none";
}

// ---------------------------------------------------------------- engines

export interface MLCEngineInterface {
  chat: Chat;
  completions: Completions;
  embeddings: Embeddings;
  setInitProgressCallback(cb: InitProgressCallback): void;
  getInitProgressCallback(): InitProgressCallback | undefined;
  setAppConfig(appConfig: AppConfig): void;
  reload(modelId: string | string[], chatOpts?: ChatOptions | ChatOptions[]): Promise<void>;
  unload(): Promise<void>;
  chatCompletion(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
  chatCompletion(request: ChatCompletionRequestStreaming): Promise<AsyncIterable<ChatCompletionChunk>>;
  chatCompletion(request: ChatCompletionRequest): Promise<AsyncIterable<ChatCompletionChunk> | ChatCompletion>;
  completion(request: CompletionCreateParamsNonStreaming): Promise<Completion>;
  completion(request: CompletionCreateParamsStreaming): Promise<AsyncIterable<Completion>>;
  completion(request: CompletionCreateParams): Promise<AsyncIterable<Completion> | Completion>;
  embedding(request: EmbeddingCreateParams): Promise<CreateEmbeddingResponse>;
  getMessage(modelId?: string): Promise<string>;
  runtimeStatsText(modelId?: string): Promise<string>;
  resetChat(keepStats?: boolean, modelId?: string): Promise<void>;
  interruptGenerate(): void;
  getMaxStorageBufferBindingSize(): Promise<number>;
  getGPUVendor(): Promise<string>;
  forwardTokensAndSample(inputIds: Array<number>, isPrefill: boolean, modelId?: string): Promise<number>;
  setLogLevel(logLevel: LogLevel): void;
  listResumableSessions(): Promise<ResumeProbeResult[]>;
  resumeChatCompletion(sessionId: string, options?: ResumeChatCompletionOptions): Promise<ResumeResult | AsyncIterable<ChatCompletionChunk>>;
  deleteResumableSession(sessionId: string): Promise<void>;
}

export declare class Chat { constructor(engine: MLCEngineInterface); completions: { create: MLCEngineInterface["chatCompletion"] } }
export declare class Completions { constructor(engine: MLCEngineInterface); create: MLCEngineInterface["completion"] }
export declare class Embeddings { constructor(engine: MLCEngineInterface); create: MLCEngineInterface["embedding"] }

export declare class MLCEngine implements MLCEngineInterface {
  constructor(engineConfig?: MLCEngineConfig);
  chat: Chat;
  completions: Completions;
  embeddings: Embeddings;
  setInitProgressCallback(cb: InitProgressCallback): void;
  getInitProgressCallback(): InitProgressCallback | undefined;
  setAppConfig(appConfig: AppConfig): void;
  setLogitProcessorRegistry(registry?: Map<string, LogitProcessor>): void;
  reload(modelId: string | string[], chatOpts?: ChatOptions | ChatOptions[]): Promise<void>;
  unload(): Promise<void>;
  chatCompletion(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
  chatCompletion(request: ChatCompletionRequestStreaming): Promise<AsyncIterable<ChatCompletionChunk>>;
  chatCompletion(request: ChatCompletionRequest): Promise<AsyncIterable<ChatCompletionChunk> | ChatCompletion>;
  completion(request: CompletionCreateParamsNonStreaming): Promise<Completion>;
  completion(request: CompletionCreateParamsStreaming): Promise<AsyncIterable<Completion>>;
  completion(request: CompletionCreateParams): Promise<AsyncIterable<Completion> | Completion>;
  embedding(request: EmbeddingCreateParams): Promise<CreateEmbeddingResponse>;
  getMessage(modelId?: string): Promise<string>;
  runtimeStatsText(modelId?: string): Promise<string>;
  resetChat(keepStats?: boolean, modelId?: string): Promise<void>;
  interruptGenerate(): void;
  getMaxStorageBufferBindingSize(): Promise<number>;
  getGPUVendor(): Promise<string>;
  forwardTokensAndSample(inputIds: Array<number>, isPrefill: boolean, modelId?: string): Promise<number>;
  setLogLevel(logLevel: LogLevel): void;
  listResumableSessions(): Promise<ResumeProbeResult[]>;
  resumeChatCompletion(sessionId: string, options?: ResumeChatCompletionOptions): Promise<ResumeResult | AsyncIterable<ChatCompletionChunk>>;
  deleteResumableSession(sessionId: string): Promise<void>;
}
export declare function CreateMLCEngine(modelId: string | string[], engineConfig?: MLCEngineConfig, chatOpts?: ChatOptions | ChatOptions[]): Promise<MLCEngine>;

export interface WorkerRequest { kind: string; uuid: string; content: unknown }
export interface WorkerResponse { kind: "return" | "throw" | "initProgressCallback" | "heartbeat"; uuid: string; content: unknown }
export interface CustomRequestParams { requestName: string; requestMessage: string }
export interface ChatWorker { onmessage: any; postMessage: (message: any) => void }

export declare class WebWorkerMLCEngineHandler {
  /** `engineConfig` is an mlc-wgpu addition (e.g. `{device: "cpu"}`); WebLLM's takes no arguments. */
  constructor(engineConfig?: MLCEngineConfig);
  engine: MLCEngine;
  modelId?: string[];
  chatOpts?: ChatOptions[];
  postMessage(msg: any): void;
  setLogitProcessorRegistry(registry?: Map<string, LogitProcessor>): void;
  handleTask<T>(uuid: string, task: () => Promise<T>): Promise<void>;
  reloadIfUnmatched(modelId: string[], chatOpts?: ChatOptions[]): Promise<void>;
  onmessage(event: any, onComplete?: (value: any) => void, onError?: () => void): void;
}
export declare class WebWorkerMLCEngine implements MLCEngineInterface {
  constructor(worker: ChatWorker, engineConfig?: MLCEngineConfig);
  worker: ChatWorker;
  modelId?: string[];
  chatOpts?: ChatOptions[];
  chat: Chat;
  completions: Completions;
  embeddings: Embeddings;
  setInitProgressCallback(cb: InitProgressCallback): void;
  getInitProgressCallback(): InitProgressCallback | undefined;
  setAppConfig(appConfig: AppConfig): void;
  reload(modelId: string | string[], chatOpts?: ChatOptions | ChatOptions[]): Promise<void>;
  unload(): Promise<void>;
  chatCompletion(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
  chatCompletion(request: ChatCompletionRequestStreaming): Promise<AsyncIterable<ChatCompletionChunk>>;
  chatCompletion(request: ChatCompletionRequest): Promise<AsyncIterable<ChatCompletionChunk> | ChatCompletion>;
  completion(request: CompletionCreateParamsNonStreaming): Promise<Completion>;
  completion(request: CompletionCreateParamsStreaming): Promise<AsyncIterable<Completion>>;
  completion(request: CompletionCreateParams): Promise<AsyncIterable<Completion> | Completion>;
  embedding(request: EmbeddingCreateParams): Promise<CreateEmbeddingResponse>;
  getMessage(modelId?: string): Promise<string>;
  runtimeStatsText(modelId?: string): Promise<string>;
  resetChat(keepStats?: boolean, modelId?: string): Promise<void>;
  interruptGenerate(): void;
  getMaxStorageBufferBindingSize(): Promise<number>;
  getGPUVendor(): Promise<string>;
  forwardTokensAndSample(inputIds: Array<number>, isPrefill: boolean, modelId?: string): Promise<number>;
  setLogLevel(logLevel: LogLevel): void;
  listResumableSessions(): Promise<ResumeProbeResult[]>;
  resumeChatCompletion(sessionId: string, options?: ResumeChatCompletionOptions): Promise<ResumeResult | AsyncIterable<ChatCompletionChunk>>;
  deleteResumableSession(sessionId: string): Promise<void>;
}
export declare function CreateWebWorkerMLCEngine(worker: any, modelId: string | string[], engineConfig?: MLCEngineConfig, chatOpts?: ChatOptions | ChatOptions[]): Promise<WebWorkerMLCEngine>;

export declare class ServiceWorkerMLCEngineHandler extends WebWorkerMLCEngineHandler { constructor(engineConfig?: MLCEngineConfig) }
export declare class ServiceWorkerMLCEngine extends WebWorkerMLCEngine {
  constructor(engineConfig?: MLCEngineConfig, keepAliveMs?: number);
  missedHeartbeat: number;
}
export declare function CreateServiceWorkerMLCEngine(modelId: string | string[], engineConfig?: MLCEngineConfig, chatOpts?: ChatOptions | ChatOptions[], keepAliveMs?: number): Promise<ServiceWorkerMLCEngine>;

export interface ExtensionMLCEngineConfig extends MLCEngineConfig { extensionId?: string; onDisconnect?: () => void }
export declare class ExtensionServiceWorkerMLCEngineHandler extends WebWorkerMLCEngineHandler {
  constructor(port: any, engineConfig?: MLCEngineConfig);
  port: any;
  setPort(port: any): void;
  onPortDisconnect(port: any): void;
  onmessage(event: any, onComplete?: (value: any) => void, onError?: () => void): void;
}
export declare class ExtensionServiceWorkerMLCEngine extends WebWorkerMLCEngine { constructor(engineConfig?: ExtensionMLCEngineConfig, keepAliveMs?: number) }
export declare function CreateExtensionServiceWorkerMLCEngine(modelId: string | string[], engineConfig?: ExtensionMLCEngineConfig, chatOpts?: ChatOptions | ChatOptions[], keepAliveMs?: number): Promise<ExtensionServiceWorkerMLCEngine>;

// ---------------------------------------------------------------- caches, config, integrity, validation

export declare function hasModelInCache(modelId: string, appConfig?: AppConfig): Promise<boolean>;
export declare function deleteModelAllInfoInCache(modelId: string, appConfig?: AppConfig): Promise<void>;
export declare function deleteModelInCache(modelId: string, appConfig?: AppConfig): Promise<void>;
export declare function deleteChatConfigInCache(modelId: string, appConfig?: AppConfig): Promise<void>;
export declare function deleteModelWasmInCache(modelId: string, appConfig?: AppConfig): Promise<void>;

export declare const prebuiltAppConfig: AppConfig;
export declare const modelVersion: string;
export declare const modelLibURLPrefix: string;
export declare const functionCallingModelIds: string[];
/** mlc-wgpu addition: "SmolLM2-135M-Instruct-q4f16_1-MLC". */
export declare const DEFAULT_MODEL_ID: string;
export declare const ARTIFACT_SCHEMA_VERSION: 1;
export declare const MODEL_PACKAGE_MANIFEST_FILENAME: "mlc-model-manifest.json";
export declare const TENSOR_CACHE_MANIFEST_FILENAME: "tensor-cache.json";

export declare class IntegrityError extends Error {
  constructor(url: string, expected: string, actual: string);
  url: string;
  expected: string;
  actual: string;
}
export declare function verifyIntegrity(data: ArrayBuffer | ArrayBufferView | string, sri: SRIString, url: string, onFailure?: "error" | "warn"): Promise<void>;
export declare function isValidSRI(sri: string): boolean;

export declare const ChatCompletionRequestUnsupportedFields: string[];
export declare function postInitAndCheckFieldsChatCompletion(request: ChatCompletionRequest, currentModelId: string, modelType?: ModelType): void;
export declare function postInitAndCheckFieldsCompletion(request: CompletionCreateParams, currentModelId: string): void;
export declare function postInitAndCheckFieldsEmbedding(request: EmbeddingCreateParams, currentModelId: string): void;
export declare function rejectCompletionResumable(request: unknown): void;

/** mlc-wgpu addition: the error classes (WebLLM exports none but IntegrityError). */
export declare const errors: Record<string, new (...args: any[]) => Error>;
