// A module Web Worker that hosts the engine, as WebLLM's docs show (`new WebWorkerMLCEngineHandler()`).
// `?device=` picks the engine for the test (an mlc-wgpu extension of the handler's constructor).
import { WebWorkerMLCEngineHandler } from "/web/js/index.js";

const device = new URL(self.location.href).searchParams.get("device") ?? "auto";
const handler = new WebWorkerMLCEngineHandler({ device });
self.onmessage = (msg) => handler.onmessage(msg);
