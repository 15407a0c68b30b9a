// A chat page written for WebLLM: it imports "@mlc-ai/web-llm", which vite.config.ts and
// tsconfig.json alias to the installed mlc-wgpu package (the recipe in the package README).
// The page chats once in the page and once through a Web Worker (worker.ts imports "mlc-wgpu"
// directly), then publishes what it saw on window.result for the test (run.mjs).
// Query: model_id, model_path (the artifact's folder URL), prompt, max_tokens.
import * as webllm from "@mlc-ai/web-llm";
import type {
  AppConfig, ChatCompletion, ChatCompletionMessageParam, CompletionUsage, InitProgressReport, MLCEngineInterface,
} from "@mlc-ai/web-llm";

interface ChatResult { reply: string; usage?: CompletionUsage; fullReply: string }
interface PageResult {
  error?: string;
  reports: string[];
  workerReports: string[];
  page?: ChatResult;
  nonStreaming?: string | null;
  worker?: ChatResult;
  cached?: boolean;
}

const params = new URLSearchParams(location.search);
const modelId = params.get("model_id") ?? webllm.DEFAULT_MODEL_ID;
const modelPath = new URL(params.get("model_path") ?? "/models/" + modelId, location.href).href;
const maxTokens = Number(params.get("max_tokens") ?? 16);
const messages: ChatCompletionMessageParam[] = [
  { role: "system", content: "You are a helpful AI assistant." },
  { role: "user", content: params.get("prompt") ?? "What is WebGPU?" },
];
const appConfig: AppConfig = {
  model_list: [{ model: modelPath, model_id: modelId, model_lib: `${webllm.modelLibURLPrefix}${webllm.modelVersion}/unused.wasm` }],
};

const status = document.getElementById("status")!;
const result: PageResult = { reports: [], workerReports: [] };
(window as unknown as { result: PageResult }).result = result;

async function chat(engine: MLCEngineInterface): Promise<ChatResult> {
  const chunks = await engine.chat.completions.create({
    messages, temperature: 0, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true },
  });
  let reply = "";
  let usage: CompletionUsage | undefined;
  for await (const chunk of chunks) {
    reply += chunk.choices[0]?.delta.content ?? "";
    if (chunk.usage) usage = chunk.usage;
    document.getElementById("reply")!.textContent = reply;
  }
  return { reply, usage, fullReply: await engine.getMessage() };
}

function progress(into: string[]) {
  return (report: InitProgressReport) => {
    into.push(report.text);
    status.textContent = report.text;
  };
}

async function main() {
  const engine = await webllm.CreateMLCEngine(modelId, { appConfig, initProgressCallback: progress(result.reports) });
  result.page = await chat(engine);
  const reply: ChatCompletion = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: maxTokens });
  result.nonStreaming = reply.choices[0].message.content;
  await engine.unload();

  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  const workerEngine = await webllm.CreateWebWorkerMLCEngine(worker, modelId, {
    appConfig, initProgressCallback: progress(result.workerReports),
  });
  result.worker = await chat(workerEngine);
  result.cached = await webllm.hasModelInCache(modelId, appConfig);
}

main().catch((e: unknown) => {
  result.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}).finally(() => {
  status.textContent = result.error ?? "done";
  document.body.dataset.status = result.error ? "error" : "done";
});
