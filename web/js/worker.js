// WebLLM's worker message protocol (docs/web-migration.md, "Worker protocol"): the handler runs an MLCEngine inside a Web Worker
// (or a service worker), the client forwards MLCEngineInterface calls as
// {kind, uuid, content} messages. Messages are compatible with WebLLM 0.2.86 in both directions,
// so a WebLLM page can talk to an mlc-wgpu worker and vice versa.

import { MLCEngine, Chat, Completions, Embeddings } from "./engine.js";
import { UnknownMessageKindError, WorkerEngineModelNotLoadedError } from "./errors.js";
import { log, setLogLevel } from "./log.js";

const uuid = () => crypto.randomUUID();

function sameArray(a, b) {
  return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => x === b[i]);
}

export class WebWorkerMLCEngineHandler {
  // `engineConfig` is an mlc-wgpu extension (WebLLM's handler takes no arguments): it lets the
  // worker choose e.g. `{device: "cpu"}`; progress always goes to the client.
  constructor(engineConfig = {}) {
    this.engine = new MLCEngine({ ...engineConfig, initProgressCallback: undefined });
    this.modelId = undefined;
    this.chatOpts = undefined;
    this.loadedGenerators = new Map(); // streamId -> async iterator
    this.engine.setInitProgressCallback((report) => {
      this.postMessage({ kind: "initProgressCallback", uuid: "", content: report });
    });
  }

  postMessage(msg) { globalThis.postMessage(msg); }

  setLogitProcessorRegistry(registry) { this.engine.setLogitProcessorRegistry(registry); }

  async handleTask(uuid, task) {
    try {
      const res = await task();
      this.postMessage({ kind: "return", uuid, content: res });
    } catch (err) {
      this.postMessage({ kind: "throw", uuid, content: String(err) });
    }
  }

  async reloadIfUnmatched(modelId, chatOpts) {
    // A restarted worker (or another tab's client) may ask for a model we no longer have loaded.
    if (!sameArray(this.modelId, modelId) || JSON.stringify(this.chatOpts) !== JSON.stringify(chatOpts)) {
      await this.engine.reload(modelId, chatOpts);
      this.modelId = modelId;
      this.chatOpts = chatOpts;
    }
  }

  onmessage(event, onComplete, onError) {
    const msg = event && event.data !== undefined && event.kind === undefined ? event.data : event;
    if (!msg || msg.kind === undefined) return;
    const c = msg.content;
    const e = this.engine;
    const run = (task) => this.handleTask(msg.uuid, task).then(onComplete, onError);
    switch (msg.kind) {
      case "reload":
        return run(async () => {
          await e.reload(c.modelId, c.chatOpts);
          this.modelId = c.modelId;
          this.chatOpts = c.chatOpts;
          return null;
        });
      case "unload":
        return run(async () => {
          await e.unload();
          this.modelId = undefined;
          this.chatOpts = undefined;
          this.loadedGenerators.clear();
          return null;
        });
      case "resetChat": return run(async () => { await e.resetChat(c.keepStats, c.modelId); return null; });
      case "getMessage": return run(() => e.getMessage(c?.modelId));
      case "runtimeStatsText": return run(() => e.runtimeStatsText(c?.modelId));
      case "interruptGenerate": return run(async () => { await e.interruptGenerate(); return null; });
      case "getMaxStorageBufferBindingSize": return run(() => e.getMaxStorageBufferBindingSize());
      case "getGPUVendor": return run(() => e.getGPUVendor());
      case "forwardTokensAndSample": return run(() => e.forwardTokensAndSample(c.inputIds, c.isPrefill, c.modelId));
      case "chatCompletionNonStreaming":
        return run(async () => { await this.reloadIfUnmatched(c.modelId, c.chatOpts); return e.chatCompletion(c.request); });
      case "completionNonStreaming":
        return run(async () => { await this.reloadIfUnmatched(c.modelId, c.chatOpts); return e.completion(c.request); });
      case "embedding":
        return run(async () => { await this.reloadIfUnmatched(c.modelId, c.chatOpts); return e.embedding(c.request); });
      case "chatCompletionStreamInit":
      case "completionStreamInit":
        return run(async () => {
          await this.reloadIfUnmatched(c.modelId, c.chatOpts);
          const it = msg.kind === "chatCompletionStreamInit" ? await e.chatCompletion(c.request) : await e.completion(c.request);
          this.loadedGenerators.set(c.streamId ?? c.selectedModelId, it);
          return null;
        });
      case "completionStreamNextChunk":
        return run(async () => {
          const key = c.streamId ?? c.selectedModelId;
          const it = this.loadedGenerators.get(key);
          if (!it) throw new Error("InternalError: Chunk generator in worker should be instantiated by now.");
          try {
            const { value, done } = await it.next();
            if (done) { this.loadedGenerators.delete(key); return undefined; }
            return value;
          } catch (err) {
            this.loadedGenerators.delete(key);
            throw err;
          }
        });
      case "completionStreamReturn":
        return run(async () => {
          const key = c.streamId ?? c.selectedModelId;
          const it = this.loadedGenerators.get(key);
          this.loadedGenerators.delete(key);
          await it?.return(undefined);
          return null;
        });
      case "listResumableSessions": return run(() => e.listResumableSessions());
      case "resumeChatCompletion": return run(() => e.resumeChatCompletion(c.sessionId, c.options));
      case "resumeChatCompletionStreamInit":
        // WebLLM's reply: null once a chunk iterator is registered, else the ResumeResult.
        return run(async () => {
          const resumed = await e.resumeChatCompletion(c.sessionId, c.options);
          if (typeof resumed?.[Symbol.asyncIterator] !== "function") return resumed;
          this.loadedGenerators.set(c.streamId, resumed);
          return null;
        });
      case "deleteResumableSession": return run(async () => { await e.deleteResumableSession(c.sessionId); return null; });
      case "setLogLevel": setLogLevel(c); e.setLogLevel(c); return;
      case "setAppConfig": e.setAppConfig(c); return;
      case "customRequest": return;
      case "keepAlive": return;
      default:
        if (c !== undefined && c !== null) throw new UnknownMessageKindError(msg.kind, c);
    }
  }
}

/** The page side: forwards MLCEngineInterface calls to a worker-like `{postMessage, onmessage}`. */
export class WebWorkerMLCEngine {
  constructor(worker, engineConfig = {}) {
    this.worker = worker;
    this.pending = new Map();
    this.modelId = undefined;
    this.chatOpts = undefined;
    this.initProgressCallback = engineConfig.initProgressCallback;
    this.chat = new Chat(this);
    this.completions = new Completions(this);
    this.embeddings = new Embeddings(this);
    worker.onmessage = (event) => this.onmessage(event.data ?? event);
    if (engineConfig.appConfig) this.setAppConfig(engineConfig.appConfig);
    if (engineConfig.logLevel) this.setLogLevel(engineConfig.logLevel);
    if (engineConfig.logitProcessorRegistry) log.warn("WebWorkerMLCEngine does not support logitProcessorRegistry; call handler.setLogitProcessorRegistry() inside the worker.");
  }

  setInitProgressCallback(cb) { this.initProgressCallback = cb; }
  getInitProgressCallback() { return this.initProgressCallback; }
  setAppConfig(appConfig) { this.worker.postMessage({ kind: "setAppConfig", uuid: uuid(), content: appConfig }); }
  setLogLevel(level) { setLogLevel(level); this.worker.postMessage({ kind: "setLogLevel", uuid: uuid(), content: level }); }

  getPromise(msg) {
    return new Promise((resolve, reject) => {
      this.pending.set(msg.uuid, { resolve, reject });
      this.worker.postMessage(msg);
    });
  }

  onmessage(msg) {
    if (!msg || typeof msg !== "object") return;
    switch (msg.kind) {
      case "initProgressCallback":
        this.initProgressCallback?.(msg.content);
        return;
      case "return":
      case "throw": {
        const p = this.pending.get(msg.uuid);
        if (!p) throw new Error(`return from a unknown uuid msg=${msg.uuid}`);
        this.pending.delete(msg.uuid);
        // As WebLLM: a worker-side failure rejects with the string "<name>: <message>".
        if (msg.kind === "return") p.resolve(msg.content); else p.reject(msg.content);
        return;
      }
      case "heartbeat":
        this.missedHeartbeat = 0;
        return;
      default:
        log.debug("unknown message from worker", msg);
    }
  }

  async reload(modelId, chatOpts) {
    const ids = Array.isArray(modelId) ? modelId : [modelId];
    const opts = chatOpts === undefined ? undefined : Array.isArray(chatOpts) ? chatOpts : [chatOpts];
    await this.getPromise({ kind: "reload", uuid: uuid(), content: { modelId: ids, chatOpts: opts } });
    this.modelId = ids;
    this.chatOpts = opts;
  }

  async unload() {
    await this.getPromise({ kind: "unload", uuid: uuid(), content: null });
    this.modelId = undefined;
    this.chatOpts = undefined;
  }

  getMessage(modelId) { return this.getPromise({ kind: "getMessage", uuid: uuid(), content: { modelId } }); }
  runtimeStatsText(modelId) { return this.getPromise({ kind: "runtimeStatsText", uuid: uuid(), content: { modelId } }); }
  async resetChat(keepStats = false, modelId) { await this.getPromise({ kind: "resetChat", uuid: uuid(), content: { keepStats, modelId } }); }
  interruptGenerate() { this.worker.postMessage({ kind: "interruptGenerate", uuid: uuid(), content: null }); }
  getMaxStorageBufferBindingSize() { return this.getPromise({ kind: "getMaxStorageBufferBindingSize", uuid: uuid(), content: null }); }
  getGPUVendor() { return this.getPromise({ kind: "getGPUVendor", uuid: uuid(), content: null }); }
  forwardTokensAndSample(inputIds, isPrefill, modelId) {
    return this.getPromise({ kind: "forwardTokensAndSample", uuid: uuid(), content: { inputIds, isPrefill, modelId } });
  }
  listResumableSessions() { return this.getPromise({ kind: "listResumableSessions", uuid: uuid(), content: null }); }
  async resumeChatCompletion(sessionId, options) {
    if (options?.stream !== true) return this.getPromise({ kind: "resumeChatCompletion", uuid: uuid(), content: { sessionId, options } });
    const streamId = uuid();
    const resumed = await this.getPromise({ kind: "resumeChatCompletionStreamInit", uuid: uuid(), content: { sessionId, options, streamId } });
    return resumed === null ? this.asyncGenerate(undefined, streamId) : resumed;
  }
  async deleteResumableSession(sessionId) { await this.getPromise({ kind: "deleteResumableSession", uuid: uuid(), content: { sessionId } }); }

  requireLoaded() {
    if (!this.modelId) throw new WorkerEngineModelNotLoadedError(this.constructor.name);
  }

  async *asyncGenerate(selectedModelId, streamId) {
    let finished = false;
    try {
      for (;;) {
        const chunk = await this.getPromise({ kind: "completionStreamNextChunk", uuid: uuid(), content: { selectedModelId, streamId } });
        if (typeof chunk !== "object" || chunk === null) { finished = true; return; }
        yield chunk;
      }
    } catch (e) {
      finished = true; // the worker dropped its iterator when it threw
      throw e;
    } finally {
      if (!finished) await this.getPromise({ kind: "completionStreamReturn", uuid: uuid(), content: { selectedModelId, streamId } });
    }
  }

  async streamOrNot(kindPrefix, request) {
    this.requireLoaded();
    if (request.stream) {
      const streamId = uuid();
      const selectedModelId = request.model ?? this.modelId[0];
      await this.getPromise({
        kind: `${kindPrefix}StreamInit`, uuid: uuid(),
        content: { request, selectedModelId, streamId, modelId: this.modelId, chatOpts: this.chatOpts },
      });
      return this.asyncGenerate(selectedModelId, streamId);
    }
    return this.getPromise({
      kind: `${kindPrefix}NonStreaming`, uuid: uuid(), content: { request, modelId: this.modelId, chatOpts: this.chatOpts },
    });
  }

  chatCompletion(request) { return this.streamOrNot("chatCompletion", request); }
  completion(request) { return this.streamOrNot("completion", request); }
  async embedding(request) {
    this.requireLoaded();
    return this.getPromise({ kind: "embedding", uuid: uuid(), content: { request, modelId: this.modelId, chatOpts: this.chatOpts } });
  }
}

export async function CreateWebWorkerMLCEngine(worker, modelId, engineConfig, chatOpts) {
  const engine = new WebWorkerMLCEngine(worker, engineConfig);
  await engine.reload(modelId, chatOpts);
  return engine;
}
