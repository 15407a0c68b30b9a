// A module Web Worker that hosts the engine, as WebLLM's docs show (`new WebWorkerMLCEngineHandler()`).
// `?device=` picks the engine for the test and `?threads=` the CPU engine's threads (mlc-wgpu
// extensions of the handler's constructor).
import { WebWorkerMLCEngineHandler } from "/web/js/index.js";

const params = new URL(self.location.href).searchParams;
const device = params.get("device") ?? "auto";
const threads = params.get("threads");
const handler = new WebWorkerMLCEngineHandler({ device, ...(threads ? { cpuThreads: Number(threads) } : {}) });
self.onmessage = (msg) => handler.onmessage(msg);
