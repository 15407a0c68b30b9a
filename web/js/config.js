// App configuration: prebuilt model records, URL cleaning, cache-backend choice (docs/web-migration.md,
// "Configuration" and "Prebuilt records"; the URL rule: docs/mlc-format.md, "Base URL").

import { WEBLLM_RECORDS } from "./prebuilt_records.js";
import { ModelNotFoundError } from "./errors.js";

export const modelVersion = "v0_2_86/base";
export const modelLibURLPrefix = "https://raw.githubusercontent.com/mlc-ai/binary-mlc-llm-libs/main/web-llm-models/";

/** `ModelType` as TypeScript emits a numeric enum (with the reverse mapping). */
export const ModelType = Object.freeze({ LLM: 0, embedding: 1, VLM: 2, 0: "LLM", 1: "embedding", 2: "VLM" });

export const functionCallingModelIds = [
  "Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC",
  "Hermes-2-Pro-Llama-3-8B-q4f32_1-MLC",
  "Hermes-2-Pro-Mistral-7B-q4f16_1-MLC",
  "Hermes-3-Llama-3.1-8B-q4f32_1-MLC",
  "Hermes-3-Llama-3.1-8B-q4f16_1-MLC",
];

/** The offline default model of this project. Not in WebLLM 0.2.86's list (which has only the
 * q0f16/q0f32 builds of SmolLM2-135M); added so `CreateMLCEngine("SmolLM2-135M-Instruct-q4f16_1-MLC")`
 * resolves. Its `model_lib` follows WebLLM's naming but is never fetched by mlc-wgpu. */
export const DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct-q4f16_1-MLC";
const DEFAULT_MODEL_RECORD = {
  model: "https://huggingface.co/mlc-ai/SmolLM2-135M-Instruct-q4f16_1-MLC",
  model_id: DEFAULT_MODEL_ID,
  model_lib: "v0_2_86/base/SmolLM2-135M-Instruct-q4f16_1_cs1k-webgpu.wasm",
  vram_required_MB: 130,
  low_resource_required: true,
  overrides: { context_window_size: 4096 },
};

export const prebuiltAppConfig = {
  useIndexedDBCache: false,
  cacheBackend: "cache",
  model_list: [...WEBLLM_RECORDS, DEFAULT_MODEL_RECORD].map((r) => ({ ...r, model_lib: modelLibURLPrefix + r.model_lib })),
};

/** WebLLM's `cleanModelUrl`: `/` then `resolve/main/` unless a `/resolve/<rev>/` segment exists.
 * Difference: a relative URL is resolved against the page/worker location instead of throwing
 * `TypeError: Invalid URL` (WebLLM's dead code intended this; it makes self-hosting easy). */
export function cleanModelUrl(url) {
  let u = String(url);
  if (!u.endsWith("/")) u += "/";
  if (!/.+\/resolve\/.+\//.test(u)) u += "resolve/main/";
  const base = typeof location !== "undefined" ? location.href : undefined;
  return new URL(u, base).href;
}

/** Cache backend of an app config (docs/web-migration.md, "Configuration"). `useIndexedDBCache: true` is honoured as an alias of
 * `"indexeddb"` when `cacheBackend` is absent (0.2.79 apps). `"cross-origin"` falls back to the
 * Cache API as WebLLM does where the browser lacks cross-origin storage (with its warning, once);
 * mlc-wgpu does not implement that storage, so it falls back where the browser has it too. */
let crossOriginWarned = false;
export function getCacheBackend(appConfig) {
  let b = appConfig?.cacheBackend;
  if (b === undefined && appConfig?.useIndexedDBCache === true) b = "indexeddb";
  b = (b ?? "cache").toLowerCase();
  if (b === "cache" || b === "indexeddb" || b === "opfs") return b;
  if (b === "cross-origin") {
    if (!crossOriginWarned) {
      const available = typeof navigator !== "undefined" && typeof navigator.crossOriginStorage?.getFileHandle === "function";
      console.warn(available
        ? "Cross-origin storage is not supported by mlc-wgpu yet; falling back to ArtifactCache."
        : "Cross-origin storage backend is unavailable; falling back to ArtifactCache.");
      crossOriginWarned = true;
    }
    return "cache";
  }
  console.error(`Unsupported cacheType: ${b}, using default ArtifactCache.`);
  return "cache";
}

export function findModelRecord(modelId, appConfig) {
  const rec = (appConfig ?? prebuiltAppConfig).model_list.find((m) => m.model_id === modelId);
  if (!rec) throw new ModelNotFoundError(modelId);
  return rec;
}
