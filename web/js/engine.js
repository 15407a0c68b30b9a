// MLCEngine: WebLLM 0.2.86's in-thread engine (docs/web-migration.md) over the mlc-wgpu wasm module.
// The JS side owns what WebLLM's JS owns — model records, fetching + caching, progress, request
// validation order, per-model FIFO locks, streaming iterators — and hands the artifact's bytes and
// the request JSON to the Rust engine (web/pkg/mlc_wgpu_web.js), which does tokenization, prompt
// building, generation, sampling and stop rules exactly as the native engine does.

import {
  cleanModelUrl, findModelRecord, getCacheBackend, ModelType, prebuiltAppConfig,
} from "./config.js";
import {
  IncorrectPipelineLoadedError, ModelFamilyNotSupportedError, ModelNotLoadedError,
  ReloadArgumentSizeUnmatchedError, ReloadModelIdNotUniqueError, SpecifiedModelNotFoundError,
  UnclearModelToUseError, UnsupportedTokenizerFilesError, WebGPUNotAvailableError, CacheQuotaExceededError,
  DeviceLostError,
} from "./errors.js";
import { downloadFile, fetchWithCache, openStore, putVerified, SCOPE_CONFIG, SCOPE_MODEL } from "./cache.js";
import { CPU_FALLBACK_NOTICE, fetchReport, finishReport, loadReport, noticeReport, startReport } from "./progress.js";
import { chooseDevice } from "./device.js";
import { postInitAndCheckFieldsChatCompletion, postInitAndCheckFieldsCompletion, rejectCompletionResumable } from "./validate.js";
import { verifyIntegrity } from "./integrity.js";
import { withSubgroups } from "./subgroups.js";
import { log, setLogLevel } from "./log.js";
import { continuationBlockReason, probe, ResumableStore, resumableConfigOf, textOnlyResult } from "./resumable.js";
// A static import: service workers forbid dynamic import(), and the module must load there too.
// Importing the wasm-bindgen glue is cheap (a small JS file); the .wasm binary itself is fetched
// and instantiated only on the first reload().
import initWasm, * as wasmApi from "../pkg/mlc_wgpu_web.js";

const dec = new TextDecoder();

// ---- the wasm module
// Located beside this file with `new URL(…, import.meta.url)`, the pattern bundlers (webpack 5, Vite,
// Next) recognise and emit as an asset; `engineConfig.wasmUrl` overrides it (esbuild, a CDN copy,
// a bundler that cannot follow it). One instance per JS realm: the first load's URL is the one used.
let wasmReady;
async function loadWasm(wasmUrl) {
  if (!wasmReady) {
    wasmReady = (async () => {
      const url = wasmUrl ?? new URL("../pkg/mlc_wgpu_web_bg.wasm", import.meta.url);
      try {
        await initWasm({ module_or_path: url });
      } catch (e) {
        // Typically a bundler that moved the module away from the file, and a server answering
        // the missing file with its index.html: say where we looked and what to do.
        throw new Error(`The mlc-wgpu engine could not be loaded from ${url}: ${e?.message ?? e}. ` +
          "If a bundler moved the module, see the package README (Install), or pass engineConfig.wasmUrl.", { cause: e });
      }
      wasmApi.init();
      return wasmApi;
    })();
    wasmReady.catch(() => { wasmReady = undefined; }); // let a later reload retry
  }
  return wasmReady;
}

// ---- the threaded module (web/pkg-threads, built by scripts/build-web.sh --threads)
// The CPU engine's products on a rayon pool of Web Workers sharing the module's memory
// (wasm-bindgen-rayon). It runs only where it can: a cross-origin isolated context (the page is
// served with COOP/COEP headers, which gives SharedArrayBuffer) and a dedicated worker, because
// the thread that calls into the pool waits on it with Atomics.wait, which a page's main thread may
// not do. Everywhere else the single-thread module runs, as before: no page needs special headers.
// Loaded with import() (which service workers forbid: they never get here) from a URL kept in a
// variable, so that bundlers leave it alone; `engineConfig.threadsUrl` points at a moved copy.
const THREADED_GLUE = "../pkg-threads/mlc_wgpu_web.js";
// Starting the pool waits for every worker to load the module; a worker that fails to start (a
// blocked script, a policy) never answers, so the wait is bounded and the engine falls back.
const POOL_START_SECS = 60;

/** Whether this context can run the threaded module: cross-origin isolated, in a dedicated worker. */
function threadsSupported() {
  return globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === "function" &&
    typeof DedicatedWorkerGlobalScope === "function" && globalThis instanceof DedicatedWorkerGlobalScope;
}

let threadedReady;
async function loadThreadedWasm(threads, glueUrl) {
  if (!threadedReady) {
    threadedReady = (async () => {
      const url = String(glueUrl ?? new URL(THREADED_GLUE, import.meta.url));
      const api = await import(/* webpackIgnore: true */ /* @vite-ignore */ url);
      await api.default(); // the .wasm beside the glue; the glue creates the shared memory
      api.init();
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the thread pool did not start within ${POOL_START_SECS} s`)), POOL_START_SECS * 1000);
      });
      // rayon's global pool can be built once per module instance: the first size stays.
      await Promise.race([api.initThreadPool(threads), timeout]).finally(() => clearTimeout(timer));
      return api;
    })();
    threadedReady.catch(() => { threadedReady = undefined; });
  }
  return threadedReady;
}

// ---- WebGPU facts WebLLM reports without loading a model

async function requestAdapter() {
  if (typeof navigator === "undefined" || !navigator.gpu) throw new WebGPUNotAvailableError();
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new Error("Unable to find a compatible GPU. This issue might be because your computer doesn't have a GPU, or your system settings are not configured properly. Please check if your device has a GPU properly set up and if your your browser supports WebGPU. You can also consult your browser's compatibility chart to see if it supports WebGPU. For more information about WebGPU support in your browser, visit https://webgpureport.org/");
  }
  return adapter;
}

/** WebLLM names the adapter by its description, or its vendor when the description is empty. */
async function adapterName(engine) {
  try {
    const info = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))?.info;
    if (info?.description || info?.vendor) return info.description || info.vendor;
  } catch { /* fall back to what the engine saw */ }
  return engine.gpuVendor() || "unknown adapter";
}

/** A FIFO promise lock, one per loaded model (WebLLM's CustomLock). */
class Lock {
  constructor() { this.tail = Promise.resolve(); }
  acquire() {
    let release;
    const held = new Promise((r) => { release = r; });
    const prev = this.tail;
    this.tail = prev.then(() => held);
    return prev.then(() => release);
  }
}

// ---- OpenAI-style namespaces (also exported: they wrap any MLCEngineInterface)

export class Chat {
  constructor(engine) { this.engine = engine; this.completions = new ChatCompletions(engine); }
}
class ChatCompletions {
  constructor(engine) { this.engine = engine; }
  create(request) { return this.engine.chatCompletion(request); }
}
export class Completions {
  constructor(engine) { this.engine = engine; }
  create(request) { return this.engine.completion(request); }
}
export class Embeddings {
  constructor(engine) { this.engine = engine; }
  create(request) { return this.engine.embedding(request); }
}

export class MLCEngine {
  constructor(engineConfig = {}) {
    this.appConfig = engineConfig.appConfig ?? prebuiltAppConfig;
    this.initProgressCallback = engineConfig.initProgressCallback;
    // mlc-wgpu extension: "webgpu" | "cpu" | "auto" (default: WebGPU when there is an adapter,
    // else the CPU engine with a notice).
    this.device = engineConfig.device ?? "auto";
    // mlc-wgpu extension: where the engine's .wasm is (default: beside the module, see loadWasm).
    this.wasmUrl = engineConfig.wasmUrl;
    // mlc-wgpu extension: the CPU engine's threads where the context allows them (see
    // threadsSupported; default: navigator.hardwareConcurrency), and where the threaded module's
    // glue JS is (default: ../pkg-threads/ beside this file).
    if (engineConfig.cpuThreads !== undefined && !(Number.isInteger(engineConfig.cpuThreads) && engineConfig.cpuThreads >= 1)) {
      throw new Error(`engineConfig.cpuThreads must be an integer >= 1, got ${engineConfig.cpuThreads}`);
    }
    this.cpuThreads = engineConfig.cpuThreads;
    this.threadsUrl = engineConfig.threadsUrl;
    if (engineConfig.logLevel) setLogLevel(engineConfig.logLevel);
    if (engineConfig.logitProcessorRegistry) this.setLogitProcessorRegistry(engineConfig.logitProcessorRegistry);
    this.loaded = new Map(); // modelId -> { wasm, record, config, lock, interrupt, running, live }
    this.reloadController = undefined;
    this.resumables = new ResumableStore();
    this.chat = new Chat(this);
    this.completions = new Completions(this);
    this.embeddings = new Embeddings(this);
  }

  setInitProgressCallback(cb) { this.initProgressCallback = cb; }
  getInitProgressCallback() { return this.initProgressCallback; }
  setAppConfig(appConfig) { this.appConfig = appConfig; }
  setLogLevel(level) { setLogLevel(level); }
  setLogitProcessorRegistry(registry) {
    if (registry && registry.size) log.warn("LogitProcessor is not supported by mlc-wgpu yet; the registry is ignored.");
  }

  report(r) {
    try { this.initProgressCallback?.(r); } catch (e) { log.error("initProgressCallback threw", e); }
  }

  async reload(modelId, chatOpts) {
    await this.unload();
    const ids = Array.isArray(modelId) ? modelId : [modelId];
    const opts = chatOpts === undefined ? undefined : Array.isArray(chatOpts) ? chatOpts : [chatOpts];
    if (opts !== undefined && opts.length !== ids.length) throw new ReloadArgumentSizeUnmatchedError(ids.length, opts.length);
    if (new Set(ids).size !== ids.length) throw new ReloadModelIdNotUniqueError(ids);
    const ctrl = new AbortController();
    this.reloadController = ctrl;
    try {
      for (let i = 0; i < ids.length; i++) await this.loadOne(ids[i], opts?.[i], ctrl.signal);
    } catch (e) {
      // A load stopped by unload() resolves, as WebLLM intends.
      if (ctrl.signal.aborted) return;
      throw e;
    } finally {
      if (this.reloadController === ctrl) this.reloadController = undefined;
    }
  }

  async loadOne(modelId, chatOpts, signal) {
    const t0 = performance.now();
    const secs = () => (performance.now() - t0) / 1000;
    const record = findModelRecord(modelId, this.appConfig);
    // An embedding model (BERT) loads as an encoder (WasmEmbedder), on the device a chat model would get.
    const isEmbedding = (record.model_type ?? ModelType.LLM) === ModelType.embedding;
    if (record.model_manifest) {
      throw new ModelFamilyNotSupportedError(modelId, `its artifact is a model package (${record.model_manifest}), the format of Gemma 4, whose architecture MLC has not published: mlc-wgpu cannot run it (docs/families.md).`);
    }
    const backend = getCacheBackend(this.appConfig);
    const base = cleanModelUrl(record.model);
    const url = (name) => new URL(name, base).href;
    const configStore = openStore(backend, SCOPE_CONFIG);
    const modelStore = openStore(backend, SCOPE_MODEL);
    const files = new Map();

    // The device is chosen in JS first, so that exactly one module is fetched: a CPU engine in an
    // isolated worker loads the threaded one and never the single-thread one.
    const choice = await chooseDevice(this.device);
    const wasm = choice.device === "cpu" ? await this.cpuModule() : await loadWasm(this.wasmUrl);
    if (this.device === "webgpu" && !(await wasm.webgpuAvailable())) throw new WebGPUNotAvailableError();
    if (choice.notice) {
      console.warn(`[mlc-wgpu] ${choice.notice}`);
      this.report(noticeReport(choice.notice));
    }

    // 1. mlc-chat-config.json (scope webllm/config), merged: file <- record.overrides <- chatOpts.
    const cfgUrl = url("mlc-chat-config.json");
    const { bytes: cfgBytes } = await fetchWithCache(configStore, cfgUrl, { signal });
    if (record.integrity?.config) await verifyIntegrity(cfgBytes, record.integrity.config, cfgUrl, record.integrity.onFailure);
    files.set("mlc-chat-config.json", cfgBytes);
    const config = { ...JSON.parse(dec.decode(cfgBytes)), ...(record.overrides ?? {}), ...(chatOpts ?? {}) };
    // A family the runtime lacks (or a setting of it) fails now, before the weights are downloaded.
    try {
      wasm.checkModelConfig(JSON.stringify(config));
    } catch (e) {
      throw new ModelFamilyNotSupportedError(modelId, `${e?.message ?? e} (model_type "${config.model_type}" in its mlc-chat-config.json).`);
    }

    // 2. Tokenizer (scope webllm/model): tokenizer.json if listed, else tokenizer.model. When the
    // list names neither (e.g. an artifact with "tokenizer_files": []) we try tokenizer.json
    // where WebLLM would throw UnsupportedTokenizerFilesError at once.
    const listed = config.tokenizer_files ?? [];
    const tokName = listed.includes("tokenizer.json") ? "tokenizer.json" : listed.includes("tokenizer.model") ? "tokenizer.model" : undefined;
    try {
      const name = tokName ?? "tokenizer.json";
      const { bytes } = await fetchWithCache(modelStore, url(name), { signal });
      const sri = record.integrity?.tokenizer?.[name];
      if (sri) await verifyIntegrity(bytes, sri, url(name), record.integrity.onFailure);
      files.set(name, bytes);
    } catch (e) {
      if (tokName || signal.aborted || e?.status !== 404) throw e;
      throw new UnsupportedTokenizerFilesError(listed);
    }

    // 3. The tensor index: tensor-cache.json, else ndarray-cache.json (WebLLM <= 0.2.79's name).
    let indexName = "tensor-cache.json";
    let indexBytes = (await modelStore.get(url(indexName))) ?? (await modelStore.get(url("ndarray-cache.json")));
    if (indexBytes && !(await modelStore.has(url(indexName)))) indexName = "ndarray-cache.json";
    if (!indexBytes) {
      try {
        indexBytes = (await fetchWithCache(modelStore, url(indexName), { signal })).bytes;
      } catch (e) {
        if (e?.status !== 404) throw e;
        indexName = "ndarray-cache.json";
        indexBytes = (await fetchWithCache(modelStore, url(indexName), { signal })).bytes;
      }
    }
    files.set(indexName, indexBytes);
    const records = JSON.parse(dec.decode(indexBytes)).records;
    const n = records.length;
    const totalBytes = records.reduce((s, r) => s + r.nbytes, 0);

    // 4. Shards: "Start to fetch params", then (only if some are missing) WebLLM's 4 download
    // lanes over contiguous index ranges, one report per shard in completion order.
    this.report(startReport());
    const shardUrls = records.map((r) => url(r.dataPath));
    const present = await Promise.all(shardUrls.map((u) => modelStore.has(u)));
    // Shards downloaded now are kept as received (and verified): reading them back from the cache
    // right after writing them would only cost time.
    const shards = new Array(n);
    // Whether each shard's md5 is known to match the index: checked as it arrived, or when it was
    // stored. Only the others are hashed again by the engine (~0.7 s for 278 MB in wasm).
    const md5Checked = records.map((r) => !r.md5sum);
    if (!present.every(Boolean)) {
      await checkQuota(records.filter((_, i) => !present[i]).reduce((s, r) => s + r.nbytes, 0), shardUrls[present.indexOf(false)]);
      let fetched = 0, done = 0;
      const lanes = new AbortController();
      const onAbort = () => lanes.abort(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      const q = Math.floor(n / 4);
      const ranges = [[0, q], [q, 2 * q], [2 * q, 3 * q], [3 * q, n]];
      try {
        await Promise.all(ranges.map(async ([lo, hi]) => {
          for (let i = lo; i < hi; i++) {
            if (!present[i]) {
              const bytes = await downloadFile(shardUrls[i], {
                signal: lanes.signal, expect: { nbytes: records[i].nbytes, md5: records[i].md5sum },
              });
              await putVerified(modelStore, shardUrls[i], bytes, records[i].md5sum);
              shards[i] = bytes;
              md5Checked[i] = true;
            }
            fetched += records[i].nbytes;
            done += 1;
            this.report(fetchReport(done, n, fetched, totalBytes, secs()));
          }
        }).map((p) => p.catch((e) => { lanes.abort(e); throw e; })));
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    }
    // The shards that were cached already are read in parallel; the engine checks every shard's
    // size, and its md5 unless every shard's was checked already.
    await Promise.all(shardUrls.map(async (u, i) => {
      if (shards[i]) return;
      const cached = await modelStore.getChecked(u);
      if (!cached) throw new Error(`${u} vanished from the cache while loading (evicted?); reload to fetch it again`);
      shards[i] = cached.bytes;
      md5Checked[i] = md5Checked[i] || cached.md5 === records[i].md5sum;
    }));
    records.forEach((r, i) => files.set(r.dataPath, shards[i]));
    if (signal.aborted) throw signal.reason;

    // 5. Load into the engine; "Loading model from cache[i/N]" once per shard's worth of bytes.
    const cumulative = [];
    records.reduce((s, r, i) => (cumulative[i] = s + r.nbytes), 0);
    let shardsReported = 0;
    const onLoadProgress = (loaded, total) => {
      const scaled = total > 0 ? (loaded / total) * totalBytes : totalBytes;
      while (shardsReported < n && cumulative[shardsReported] <= scaled + 0.5) {
        shardsReported += 1;
        this.report(loadReport(shardsReported, n, cumulative[shardsReported - 1], totalBytes, secs()));
      }
    };
    let engine;
    try {
      engine = await withSubgroups(() => (isEmbedding ? wasm.WasmEmbedder : wasm.WasmEngine).create(files, {
        device: choice.device,
        modelId,
        chatOpts: { ...(record.overrides ?? {}), ...(chatOpts ?? {}) },
        contextWindowSize: config.context_window_size,
        onLoadProgress,
        verifyMd5: !md5Checked.every(Boolean),
      }));
    } catch (e) {
      // WebLLM's error (and text) for a device lost while loading; the engine's own text is the cause.
      if (e?.name === "DeviceLostError") throw Object.assign(new DeviceLostError(), { cause: e });
      throw e;
    }
    files.clear();
    if (signal.aborted) { engine.free(); throw signal.reason; }
    onLoadProgress(1, 1);
    const used = engine.backend();
    // "auto" on a hardware adapter whose device could not be created runs on the CPU engine too.
    let cpuReason = choice.cpuReason ?? (this.device === "cpu" ? 'device: "cpu"' : undefined);
    if (used === "cpu" && !cpuReason) {
      console.warn(`[mlc-wgpu] ${CPU_FALLBACK_NOTICE}`);
      this.report(noticeReport(CPU_FALLBACK_NOTICE));
      cpuReason = "no WebGPU; the CPU engine is much slower";
    }
    this.loaded.set(modelId, {
      modelId, wasm: engine, record, config, lock: new Lock(), running: 0, live: "",
      // An embedding request runs to its end: nothing to interrupt.
      interrupt: isEmbedding ? undefined : engine.interruptHandle(),
      modelType: record.model_type ?? ModelType.LLM, toolFormat: isEmbedding ? undefined : engine.toolFormat(),
    });
    const done = finishReport(used, used === "webgpu" ? await adapterName(engine) : cpuReason, secs(), totalBytes,
      used === "cpu" ? (wasm.cpuThreads?.() ?? 1) : undefined); // only the threaded module has cpuThreads
    if (used === "webgpu") done.gpuKernels = engine.gpuKernels();
    this.report(done);
  }

  // The module the CPU engine runs in: the threaded one when this context supports it and more
  // than one thread is wanted, else the single-thread one. A threaded module that fails to load or
  // start is logged and the single-thread one runs: threads never break a page.
  async cpuModule() {
    const want = this.cpuThreads ?? globalThis.navigator?.hardwareConcurrency ?? 1;
    if (want > 1 && threadsSupported()) {
      try {
        return await loadThreadedWasm(want, this.threadsUrl);
      } catch (e) {
        log.warn(`the threaded CPU module could not be started (${e?.message ?? e}); the CPU engine runs on one thread`);
      }
    }
    return loadWasm(this.wasmUrl);
  }

  async unload() {
    this.reloadController?.abort("Engine.unload() is called.");
    const models = [...this.loaded.values()];
    this.loaded.clear();
    for (const m of models) {
      // Freeing a wasm object under a running call would be a use-after-free: stop it, wait, free.
      if (m.running) m.interrupt?.interrupt();
      const release = await m.lock.acquire();
      m.wasm.free();
      release();
    }
  }

  selectModel(requested, requestName) {
    const ids = [...this.loaded.keys()];
    if (ids.length === 0) throw new ModelNotLoadedError(requestName);
    if (requested) {
      if (!this.loaded.has(requested)) throw new SpecifiedModelNotFoundError(ids, requested, requestName);
      return requested;
    }
    if (ids.length > 1) throw new UnclearModelToUseError(ids, requestName);
    return ids[0];
  }

  async chatCompletion(request) {
    const id = this.selectModel(request.model, "ChatCompletionRequest");
    const m = this.loaded.get(id);
    if (m.modelType === ModelType.embedding) throw new IncorrectPipelineLoadedError(id, "LLMChatPipeline", "ChatCompletionRequest");
    postInitAndCheckFieldsChatCompletion(request, id, m.modelType, m.toolFormat);
    const resumable = resumableConfigOf(request);
    if (request.stream) return this.stream(m, "chatCompletion", request, resumable);
    return this.nonStreaming(m, "chatCompletion", request, resumable);
  }

  async completion(request) {
    rejectCompletionResumable(request);
    const id = this.selectModel(request.model, "CompletionCreateParams");
    const m = this.loaded.get(id);
    if (m.modelType === ModelType.embedding) throw new IncorrectPipelineLoadedError(id, "LLMChatPipeline", "CompletionCreateParams");
    postInitAndCheckFieldsCompletion(request, id);
    if (request.stream) return this.stream(m, "completion", request);
    return this.nonStreaming(m, "completion", request);
  }

  // WebLLM's embeddings: texts tokenized as given (no [CLS]/[SEP] added), the first row of each
  // input's last hidden state, not normalised; the checks and errors are the engine's (Rust).
  async embedding(request) {
    const id = this.selectModel(request.model, "EmbeddingCreateParams");
    const m = this.loaded.get(id);
    if (m.modelType !== ModelType.embedding) throw new IncorrectPipelineLoadedError(id, "EmbeddingPipeline", "EmbeddingCreateParams");
    return this.exclusive(m, () => m.wasm.embed(JSON.stringify(request)));
  }

  // A request with `resumable` settings journals its output tokens (resumable.js) as they come.
  async nonStreaming(m, method, request, resumable) {
    return this.exclusive(m, async () => {
      m.live = "";
      if (!resumable) return m.wasm[method](JSON.stringify(request), () => {});
      const { journal, request: run } = await this.resumables.begin(resumable, m.modelId, request);
      let json;
      try {
        json = await m.wasm[method](JSON.stringify(run), () => {}, journal && ((ids, text, processed) => journal.tokens(ids, text, processed)));
      } catch (e) {
        await journal?.end(undefined, e).catch(() => {});
        throw e;
      }
      await journal?.end(JSON.parse(json).choices[0]?.finish_reason);
      return json;
    });
  }

  // Runs `call` (a wasm call resolving with JSON) holding the model's lock; a lost device ends the
  // model (forgetIfLost) before the error goes on.
  async exclusive(m, call) {
    const release = await m.lock.acquire();
    m.running += 1;
    try {
      return JSON.parse(await call());
    } catch (e) {
      this.forgetIfLost(m, e);
      throw e;
    } finally {
      m.running -= 1;
      release();
    }
  }

  // A lost GPU device ends the model, as in WebLLM (which unloads the engine): the failing request
  // rejects with DeviceLostError, later requests get ModelNotLoadedError, and reload() loads the
  // model again on a new device. The wasm object is freed once no call runs on it.
  forgetIfLost(m, e) {
    if (e?.name !== "DeviceLostError") return;
    let ours = false;
    for (const [id, v] of this.loaded) if (v === m) { this.loaded.delete(id); ours = true; }
    if (!ours) return; // unload() already took it and frees it
    log.error(`The GPU device was lost; the model is unloaded. Call reload() to load it again. (${e.message})`);
    m.lock.acquire().then((release) => { m.wasm.free(); release(); });
  }

  // The Rust engine pushes chunks through a callback; WebLLM's API is a lazy async generator.
  // The lock is taken on the first next() (and a resumable request's journal begun then).
  async *stream(m, method, request, resumable) {
    const release = await m.lock.acquire();
    let journal, run = request;
    try {
      if (resumable) ({ journal, request: run } = await this.resumables.begin(resumable, m.modelId, request));
    } catch (e) {
      release();
      throw e;
    }
    yield* this.generate(m, release, journal, (onChunk, onOutput) => m.wasm[method](JSON.stringify(run), onChunk, onOutput));
  }

  // Runs `start(onChunk, onOutput)` (a wasm generation) holding the model's lock (`release` frees
  // it) and yields its chunks as they are queued. An early return() (`break` in for-await)
  // interrupts the generation and waits for it to end. Returns the engine's final message
  // (WebLLM's getMessage()).
  //
  // With a journal, each delta chunk's output tokens are journaled as the chunk is handed out
  // (the engine's output hook reports them just before it queues the chunk), and in "exact"
  // durability only once written: the journal holds what was delivered, as WebLLM's lazy stream
  // journals only the tokens it was asked for, although this engine generates ahead of the reader.
  // The journal ends with the generation: finished, aborted (an interrupt or an early return) or failed.
  async *generate(m, release, journal, start) {
    const queue = [];
    const outputs = []; // the output hook's reports not journaled yet, one per delta chunk queued
    let wake, finished = false, failure, finishReason;
    m.running += 1;
    m.live = "";
    const onChunk = (s) => {
      const c = JSON.parse(s);
      const piece = c.choices?.[0]?.delta?.content ?? c.choices?.[0]?.text;
      if (typeof piece === "string") m.live += piece;
      finishReason = c.choices?.[0]?.finish_reason ?? finishReason;
      queue.push(c);
      wake?.();
    };
    const onOutput = journal && ((ids, text, processed) => outputs.push([ids, text, processed]));
    let run;
    try {
      run = start(onChunk, onOutput);
    } catch (e) {
      m.running -= 1;
      release();
      await journal?.end(undefined, e).catch(() => {});
      throw e;
    }
    let message;
    const settled = run.then(
      () => { finished = true; message = m.wasm.getMessage(); },
      (e) => { failure = e; finished = true; this.forgetIfLost(m, e); },
    ).finally(() => { m.running -= 1; release(); wake?.(); });
    let completed = false;
    try {
      for (;;) {
        if (queue.length) {
          const chunk = queue.shift();
          if (journal && chunk.choices[0]?.finish_reason === null) {
            journal.tokens(...outputs.shift());
            if (journal.exact) await journal.flush();
          }
          yield chunk;
          continue;
        }
        if (finished) {
          completed = true;
          if (failure) throw failure;
          return message;
        }
        await new Promise((r) => { wake = r; });
        wake = undefined;
      }
    } finally {
      if (!completed) {
        if (!finished) m.interrupt.interrupt();
        await settled;
      }
      // An early return ends the generation as an interrupt does: aborted, and resumable.
      const ended = journal?.end(completed && !failure ? finishReason : "abort", failure);
      // A journal that fails to end does not hide the generation's own error.
      if (failure || !completed) await ended?.catch(() => {}); else await ended;
    }
  }

  async interruptGenerate() {
    // WebLLM's flag only affects requests running now; calling the wasm handle only then keeps an
    // idle interrupt from leaking into the next request.
    for (const m of this.loaded.values()) if (m.running) m.interrupt?.interrupt();
  }

  // The chat model `modelId` selects; an embedding model gets WebLLM's error (getLLMStates).
  chatModel(modelId, requestName) {
    const id = this.selectModel(modelId, requestName);
    const m = this.loaded.get(id);
    if (m.modelType === ModelType.embedding) throw new IncorrectPipelineLoadedError(id, "LLMChatPipeline", requestName);
    return m;
  }

  async getMessage(modelId) {
    const m = this.chatModel(modelId, "getMessage");
    // The wasm engine is busy (borrowed) while it generates: report the text streamed so far.
    return m.running ? m.live : m.wasm.getMessage();
  }

  async resetChat(keepStats = false, modelId) {
    if (this.loaded.size === 0) { log.debug("resetChat: no model loaded"); return; }
    let id;
    try { id = this.selectModel(modelId, "resetChat"); } catch { log.debug("resetChat: unknown model"); return; }
    const m = this.loaded.get(id);
    if (m.modelType === ModelType.embedding) return; // no conversation to reset
    const release = await m.lock.acquire(); // the engine cannot be reset under a running generation
    try { m.wasm.resetChat(keepStats); } finally { release(); }
  }

  async runtimeStatsText(modelId) {
    log.warn("WARNING: `runtimeStatsText` will soon be deprecated. Please use `ChatCompletion.usage` for non-streaming requests, or `ChatCompletionChunk.usage` for streaming requests, enabled by `stream_options`. The only flow that expects to use `runtimeStatsText` as of now is `forwardTokensAndSample()`.");
    const m = this.chatModel(modelId, "runtimeStatsText");
    // WebLLM's wording is "decoding:"; normalise in case the engine says "decode:".
    return m.wasm.runtimeStatsText().replace(/\bdecode:/, "decoding:");
  }

  // WebLLM's start-up probes ask the GPU and throw without one. Where this engine runs on the CPU
  // engine instead — device "cpu", or "auto" without a hardware adapter — they answer for it
  // (docs/web-migration.md, "Differences"): no GPU vendor (""), and WebLLM's largest binding size,
  // 1 GiB, because the CPU engine has no storage-buffer limit (an app comparing it with 128 MiB to
  // pick a "low resource" model must not be steered by a GPU the engine does not use).
  async runsOnCpu() {
    return this.device === "cpu" || (this.device === "auto" && (await chooseDevice("auto")).device === "cpu");
  }

  async getMaxStorageBufferBindingSize() {
    if (await this.runsOnCpu()) return 1 << 30;
    // WebLLM returns the limit it *requests* at device creation: 1 GiB when allowed, else 128 MiB.
    const adapter = await requestAdapter();
    const v = adapter.limits.maxStorageBufferBindingSize >= 1 << 30 ? 1 << 30 : 1 << 27;
    if (v < 1 << 30) log.warn(`maxStorageBufferBindingSize is ${v}, smaller than 1 GiB`);
    return v;
  }

  async getGPUVendor() {
    if (await this.runsOnCpu()) return "";
    const adapter = await requestAdapter();
    return adapter.info?.vendor ?? "";
  }

  // WebLLM's low-level API: the ids go after the model's context (a prefill, or one decode step)
  // and the token drawn with the model's sampling defaults comes back. resetChat() empties the
  // context; the next chat request starts afresh. A LogitProcessor is not applied (see
  // setLogitProcessorRegistry).
  async forwardTokensAndSample(inputIds, isPrefill, modelId) {
    const m = this.chatModel(modelId, "forwardTokensAndSample");
    return this.exclusive(m, () => m.wasm.forwardTokensAndSample(Uint32Array.from(inputIds), Boolean(isPrefill)));
  }

  // ---- Crash-resumable generation (resumable.js has the journal; docs/web-migration.md).

  /** WebLLM's `ResumeProbeResult` for every session in OPFS (none without OPFS). */
  async listResumableSessions() {
    return (await this.resumables.list()).map((state) => state.failure === undefined ? probe(state) : {
      sessionId: state.sessionId, resumable: false,
      reason: `session inspection failed: ${state.failure?.message ?? state.failure}`,
      modelId: "", emittedTokens: 0, processedSeqLen: 0, recoveryMode: "none",
    });
  }

  /**
   * Reads a session back (`ResumeResult`, recoveryMode "text_only"), or with `continueGeneration`
   * continues it where its journal ends: the prompt and the journaled output tokens are fed again
   * (one prefill) and generation carries on with the sampler where it was (the seed advanced by one
   * draw per token). With `stream` (and a streamed original request) the chunks after the journaled
   * text come as an async iterable; otherwise it runs to the end and resolves with the whole text.
   * A finished session, or one whose model is not loaded, is read back as text only, as in WebLLM.
   */
  async resumeChatCompletion(sessionId, options) {
    const state = await this.resumables.open(sessionId);
    if (state === undefined) throw new Error(`Resumable session not found: ${sessionId}`);
    if (options?.continueGeneration !== true) return textOnlyResult(state);
    const blocked = continuationBlockReason(state);
    const m = this.loaded.get(state.modelId);
    if (blocked !== undefined || m === undefined) {
      if (blocked !== undefined) log.warn(`Resumable session ${sessionId} recovered as text-only: ${blocked}.`);
      return textOnlyResult(state);
    }
    const chunks = this.continueSession(m, state);
    if (options.stream === true && state.request.stream === true) return chunks;
    for await (const chunk of chunks) void chunk; // run to the end; the text is the engine's message
    return {
      sessionId, recoveredText: chunks.text, emittedTokens: chunks.journal.emittedTokens,
      processedSeqLen: chunks.journal.processed, replayedTokens: state.ids.length, recoveryMode: "token_replay",
    };
  }

  // The chunks of a continued session. The session is claimed (WebLLM's "already active" error)
  // and the model's lock taken on the first next(); the journal is `.journal` once started, and
  // the whole text `.text` once finished.
  continueSession(m, state) {
    const engine = this;
    const chunks = (async function* () {
      const releaseSession = await engine.resumables.claim(state.sessionId);
      let journal;
      try {
        journal = await engine.resumables.attach(state, releaseSession);
      } catch (e) {
        releaseSession();
        throw e;
      }
      chunks.journal = journal;
      const release = await m.lock.acquire();
      // Streamed whatever the original request asked: the chunks carry the journal's hook.
      const request = JSON.stringify({ ...state.request, stream: true });
      chunks.text = yield* engine.generate(m, release, journal, (onChunk, onOutput) =>
        m.wasm.resumeChatCompletion(request, Uint32Array.from(state.ids), onChunk, onOutput));
    })();
    return chunks;
  }

  async deleteResumableSession(sessionId) {
    await this.resumables.delete(sessionId);
  }
}

async function checkQuota(bytesNeeded, firstUrl) {
  // The browser's estimate is approximate; fail early only when the shortfall is certain.
  try {
    const est = await navigator.storage?.estimate?.();
    if (est && est.quota !== undefined && est.quota - (est.usage ?? 0) < bytesNeeded) {
      throw new CacheQuotaExceededError(firstUrl, bytesNeeded, est);
    }
  } catch (e) {
    if (e instanceof CacheQuotaExceededError) throw e;
  }
}

export async function CreateMLCEngine(modelId, engineConfig, chatOpts) {
  const engine = new MLCEngine(engineConfig);
  await engine.reload(modelId, chatOpts);
  return engine;
}
