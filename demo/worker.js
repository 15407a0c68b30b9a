// The demo's engine runs here, in a dedicated Web Worker, as WebLLM's examples do (app.js talks to
// it through CreateWebWorkerMLCEngine): generation never blocks the page, and in a cross-origin
// isolated page (scripts/demo.sh sends COOP/COEP) a worker is where the CPU engine may run on
// navigator.hardwareConcurrency threads (web/README.md, "CPU threads"). WebGPU works here too.
// `?device=` is the engine picked on the page (auto, webgpu or cpu): WebLLM's worker protocol does
// not carry it, so the page starts a worker per load.
import { WebWorkerMLCEngineHandler } from "../web/js/index.js";

const device = new URL(self.location.href).searchParams.get("device") ?? "auto";
const handler = new WebWorkerMLCEngineHandler({ device });
self.onmessage = (msg) => handler.onmessage(msg);
