// The bench page's Web Worker (bench.js with `cpu_threads`): hosts the engine, as a site that wants
// the CPU engine's threads does, since only a worker may wait on the thread pool. `?threads=` is
// the engine's `cpuThreads`.
import { WebWorkerMLCEngineHandler } from "/web/js/index.js";

const params = new URL(self.location.href).searchParams;
const handler = new WebWorkerMLCEngineHandler({ device: params.get("device") ?? "cpu", cpuThreads: Number(params.get("threads")) });
self.onmessage = (msg) => handler.onmessage(msg);
