// The worker side of WebLLM's worker engine, importing the package under its own name.
import { WebWorkerMLCEngineHandler } from "mlc-wgpu";

const handler = new WebWorkerMLCEngineHandler();
self.onmessage = (msg: MessageEvent) => handler.onmessage(msg);
