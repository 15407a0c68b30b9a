// mlc-wgpu's WebLLM-compatible ES module: the same exports as `@mlc-ai/web-llm` 0.2.86
// (docs/web-migration.md, "Exports"), so migrating is one import line. No runtime npm dependencies. The wasm engine's
// glue is ../pkg/mlc_wgpu_web.js (built by scripts/build-web.sh); its .wasm is instantiated on the
// first reload, so importing this module needs no WebGPU and works in workers, service workers
// and node.

export const ARTIFACT_SCHEMA_VERSION = 1;
export const MODEL_PACKAGE_MANIFEST_FILENAME = "mlc-model-manifest.json";
export const TENSOR_CACHE_MANIFEST_FILENAME = "tensor-cache.json";

export { MLCEngine, CreateMLCEngine, Chat, Completions, Embeddings } from "./engine.js";
export { WebWorkerMLCEngine, WebWorkerMLCEngineHandler, CreateWebWorkerMLCEngine } from "./worker.js";
export {
  ServiceWorkerMLCEngine, ServiceWorkerMLCEngineHandler, CreateServiceWorkerMLCEngine,
  ExtensionServiceWorkerMLCEngine, ExtensionServiceWorkerMLCEngineHandler, CreateExtensionServiceWorkerMLCEngine,
} from "./service_worker.js";
export {
  hasModelInCache, deleteModelAllInfoInCache, deleteModelInCache, deleteChatConfigInCache, deleteModelWasmInCache,
} from "./cache.js";
export {
  prebuiltAppConfig, modelVersion, modelLibURLPrefix, functionCallingModelIds, ModelType, DEFAULT_MODEL_ID,
} from "./config.js";
export { IntegrityError } from "./errors.js";
export { verifyIntegrity, isValidSRI } from "./integrity.js";
export {
  ChatCompletionRequestUnsupportedFields, postInitAndCheckFieldsChatCompletion, postInitAndCheckFieldsCompletion,
  postInitAndCheckFieldsEmbedding, rejectCompletionResumable,
} from "./validate.js";
// mlc-wgpu additions (WebLLM does not export its error classes; these let apps use instanceof).
export * as errors from "./errors.js";
