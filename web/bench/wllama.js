// The comparison page of the browser benchmark (scripts/bench-web.py --wllama): wllama, llama.cpp
// compiled to wasm, on the GGUF the default model is converted from, CPU only (no WebGPU layers),
// measured with the same chat prompt, lengths and greedy settings as bench.js, and posted to the
// server that started the browser. wllama's own timings (llama.cpp's prompt and predicted times)
// are the figures; the wall time of each request is reported beside them.
import { Wllama } from "/wllama/esm/index.js";

const params = new URL(location.href).searchParams;
const number = (name, fallback) => Number(params.get(name) ?? fallback);
const options = {
  ggufUrl: new URL(params.get("gguf_url"), location.href).href,
  threads: number("threads", 1),
  // The prompt length to match: the mlc-wgpu run's `usage.prompt_tokens`.
  promptTokens: number("prompt_tokens", 512),
  genTokens: number("gen_tokens", 256),
};

const post = (path, body) => fetch(path, { method: "POST", body: JSON.stringify(body) });
const log = (line) => post("/log", { line });
const seconds = (since) => (performance.now() - since) / 1000;

// The user message of bench.js: one word is one token. The GGUF's chat template wraps it in
// fewer tokens than the artifact's conversation template, so the page measures the template's
// tokens in the warm-up and sizes the message to give the prompt length the mlc-wgpu run had.
const words = (count) => "ok ".repeat(Math.max(1, count)).trim();
const WARM_UP_WORDS = 8;

// One chat completion from an empty cache (no prompt reuse between requests, as bench.js resets
// the chat); returns llama.cpp's timings, the usage and the request's wall time.
async function complete(wllama, content, request) {
  const started = performance.now();
  const reply = await wllama.createChatCompletion({
    messages: [{ role: "user", content }], stream: false, cache_prompt: false,
    temperature: 0, top_k: 1, ...request,
  });
  const timings = reply.timings;
  if (!timings) throw new Error("wllama's reply carries no timings");
  return { timings, usage: reply.usage, wall_s: seconds(started) };
}

async function bench() {
  const report = {
    engine: "wllama", user_agent: navigator.userAgent, cross_origin_isolated: globalThis.crossOriginIsolated,
    threads_asked: options.threads,
  };
  const wllama = new Wllama({ default: "/wllama/esm/wasm/wllama.wasm" }, { suppressNativeLog: true });
  let started = performance.now();
  await wllama.loadModelFromUrl(options.ggufUrl, { n_threads: options.threads, n_gpu_layers: 0, n_ctx: 1024 });
  report.load_s = seconds(started);
  report.multithread = wllama.isMultithread();
  report.threads = wllama.getNumThreads();
  await log(`wllama loaded in ${report.load_s.toFixed(2)} s, ${report.threads} thread(s), multithread ${report.multithread}`);

  // Warm-up, as bench.js does; it also measures the chat template's tokens.
  const warmUp = await complete(wllama, words(WARM_UP_WORDS), { max_tokens: 4 });
  const filler = (tokens) => words(tokens - (warmUp.timings.prompt_n - WARM_UP_WORDS));

  // Prefill and time to first token: llama.cpp's prompt evaluation plus the first token's time.
  const prefill = await complete(wllama, filler(options.promptTokens), { max_tokens: 1 });
  report.prompt_tokens = prefill.timings.prompt_n;
  report.cached_prompt_tokens = prefill.timings.cache_n;
  report.ttft_s = (prefill.timings.prompt_ms + prefill.timings.predicted_ms) / 1000;
  report.ttft_wall_s = prefill.wall_s;
  report.prefill_tok_s = prefill.timings.prompt_per_second;

  const decode = await complete(wllama, filler(options.promptTokens), { max_tokens: options.genTokens, ignore_eos: true });
  report.gen_tokens = decode.timings.predicted_n;
  report.decode_tok_s = decode.timings.predicted_per_second;
  report.decode_wall_s = decode.wall_s;
  await log(`wllama decode ${report.decode_tok_s.toFixed(1)} tok/s`);
  await wllama.exit();
  return report;
}

bench().then(
  (report) => post("/result", report),
  (error) => post("/result", { error: `${error?.name ?? "Error"}: ${error?.message ?? error}`, stack: String(error?.stack ?? "") }),
);
