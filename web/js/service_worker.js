// Service-worker and extension variants of the worker protocol (docs/web-migration.md,
// "Worker protocol"). Same messages as the
// Web Worker; the service worker replies to the client that asked (event.source), answers
// keepAlive with heartbeat, and skips a reload that asks for what is already loaded.

import { WebWorkerMLCEngine, WebWorkerMLCEngineHandler } from "./worker.js";
import { NonWorkerEnvironmentError, NoServiceWorkerAPIError, ServiceWorkerInitializationError } from "./errors.js";
import { finishReport } from "./progress.js";

const sameJSON = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export class ServiceWorkerMLCEngineHandler extends WebWorkerMLCEngineHandler {
  constructor(engineConfig = {}) {
    if (typeof self === "undefined" || typeof self.addEventListener !== "function") {
      throw new NonWorkerEnvironmentError("ServiceWorkerMLCEngineHandler");
    }
    super(engineConfig);
    this.clientRegistry = new Map(); // uuid -> client (event.source)
    this.engine.setInitProgressCallback((report) => {
      // Progress goes to the client whose reload started the load.
      this.postMessage({ kind: "initProgressCallback", uuid: this.currentReloadUuid ?? "", content: report });
    });
    self.addEventListener("message", (event) => {
      const msg = event.data;
      if (!msg || msg.kind === undefined) return;
      if (event.source) this.clientRegistry.set(msg.uuid, event.source);
      if (msg.kind === "keepAlive") {
        this.postMessage({ kind: "heartbeat", uuid: msg.uuid });
        return;
      }
      if (msg.kind === "reload" && sameJSON(this.modelId, msg.content.modelId) && sameJSON(this.chatOpts, msg.content.chatOpts)) {
        // Already loaded (e.g. a second tab): report "finished" and return at once.
        this.postMessage({ kind: "initProgressCallback", uuid: msg.uuid, content: finishReport("webgpu", "already loaded", 0, 0) });
        this.postMessage({ kind: "return", uuid: msg.uuid, content: null });
        return;
      }
      if (msg.kind === "reload") this.currentReloadUuid = msg.uuid;
      const p = new Promise((resolve) => this.onmessage(msg, resolve, resolve));
      event.waitUntil?.(p);
    });
  }

  postMessage(msg) {
    const client = this.clientRegistry.get(msg.uuid);
    if (client) {
      client.postMessage(msg);
      if (msg.kind === "return" || msg.kind === "throw") this.clientRegistry.delete(msg.uuid);
    } else if (msg.kind === "initProgressCallback") {
      // No known client (e.g. the reload's client is gone): tell every window.
      self.clients?.matchAll?.().then((cs) => cs.forEach((c) => c.postMessage(msg)));
    }
  }
}

class ServiceWorkerTransport {
  constructor() { this.onmessage = undefined; }
  postMessage(msg) {
    const c = navigator.serviceWorker.controller;
    if (!c) throw new Error("There is no active service worker");
    c.postMessage(msg);
  }
}

export class ServiceWorkerMLCEngine extends WebWorkerMLCEngine {
  constructor(engineConfig = {}, keepAliveMs = 10000) {
    if (typeof navigator === "undefined" || !("serviceWorker" in navigator)) throw new NoServiceWorkerAPIError();
    const transport = new ServiceWorkerTransport();
    super(transport, engineConfig);
    this.missedHeartbeat = 0;
    navigator.serviceWorker.onmessage = (event) => {
      // Replies for other tabs' uuids are expected with several tabs: ignore them.
      try { this.onmessage(event.data); } catch { /* unknown uuid */ }
    };
    setInterval(() => {
      this.missedHeartbeat += 1;
      try { transport.postMessage({ kind: "keepAlive", uuid: crypto.randomUUID() }); } catch { /* no controller yet */ }
    }, keepAliveMs);
  }
}

export async function CreateServiceWorkerMLCEngine(modelId, engineConfig, chatOpts, keepAliveMs = 10000) {
  if (typeof navigator === "undefined" || !("serviceWorker" in navigator)) throw new NoServiceWorkerAPIError();
  const registration = await navigator.serviceWorker.ready;
  if (!(registration.active || navigator.serviceWorker.controller)) throw new ServiceWorkerInitializationError();
  const engine = new ServiceWorkerMLCEngine(engineConfig, keepAliveMs);
  await engine.reload(modelId, chatOpts);
  return engine;
}

// Chrome-extension variants: the same protocol over a chrome.runtime Port.

export class ExtensionServiceWorkerMLCEngineHandler extends WebWorkerMLCEngineHandler {
  // As in WebLLM, the handler listens to nothing itself: the extension's background script adds
  // `port.onMessage.addListener(handler.onmessage.bind(handler))` for each port it connects (and
  // calls setPort for the later ones). A listener added here too would run every message twice.
  constructor(port, engineConfig = {}) {
    super(engineConfig);
    this.port = null;
    this.setPort(port);
  }
  setPort(port) {
    this.port = port;
    port.onDisconnect?.addListener(() => this.onPortDisconnect(port));
  }
  onPortDisconnect(port) {
    if (port === this.port) this.port = null;
  }
  onmessage(event, onComplete, onError) {
    const msg = event;
    if (msg?.kind === "keepAlive" || msg?.type === "keepAlive") return;
    if (msg?.kind === "reload" && sameJSON(this.modelId, msg.content.modelId) && sameJSON(this.chatOpts, msg.content.chatOpts)) {
      this.postMessage({ kind: "initProgressCallback", uuid: msg.uuid, content: finishReport("webgpu", "already loaded", 0, 0) });
      this.postMessage({ kind: "return", uuid: msg.uuid, content: null });
      return;
    }
    super.onmessage(msg, onComplete, onError);
  }
  postMessage(msg) { this.port?.postMessage(msg); }
}

export class ExtensionServiceWorkerMLCEngine extends WebWorkerMLCEngine {
  constructor(engineConfig = {}, keepAliveMs = 10000) {
    const port = engineConfig.extensionId
      ? chrome.runtime.connect(engineConfig.extensionId, { name: "web_llm_service_worker" })
      : chrome.runtime.connect({ name: "web_llm_service_worker" });
    const transport = { onmessage: undefined, postMessage: (m) => port.postMessage(m) };
    super(transport, engineConfig);
    port.onMessage.addListener((msg) => this.onmessage(msg));
    const timer = setInterval(() => port.postMessage({ kind: "keepAlive" }), keepAliveMs);
    port.onDisconnect.addListener(() => { clearInterval(timer); engineConfig.onDisconnect?.(); });
  }
}

export async function CreateExtensionServiceWorkerMLCEngine(modelId, engineConfig, chatOpts, keepAliveMs = 10000) {
  const engine = new ExtensionServiceWorkerMLCEngine(engineConfig, keepAliveMs);
  await engine.reload(modelId, chatOpts);
  return engine;
}
