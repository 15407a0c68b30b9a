// The browser benchmark page (scripts/bench-web.sh): the same figures as `mlc-wgpu bench --json`,
// measured through the WebLLM-compatible module as a site runs it, and posted to the server that
// started the browser. Parameters come from the query string (see scripts/bench-web.py).
import * as webllm from "/web/js/index.js";

const params = new URL(location.href).searchParams;
const number = (name, fallback) => Number(params.get(name) ?? fallback);
const options = {
  modelId: params.get("model_id"),
  modelUrl: new URL(params.get("model_url"), location.href).href,
  device: params.get("device") ?? "webgpu",
  promptTokens: number("prompt_tokens", 512),
  genTokens: number("gen_tokens", 256),
  contexts: (params.get("contexts") ?? "128,1024,4096").split(",").filter(Boolean).map(Number),
  contextSteps: number("context_steps", 64),
  // When set, the engine runs in a Web Worker (worker.js) with this many CPU threads: the page is
  // then served cross-origin isolated (scripts/bench-web.py --threads), so more than one thread
  // gets the threaded module.
  cpuThreads: params.get("cpu_threads") ? number("cpu_threads", 1) : undefined,
};

const post = (path, body) => fetch(path, { method: "POST", body: JSON.stringify(body) });
const log = (line) => post("/log", { line });
const seconds = (since) => (performance.now() - since) / 1000;

// A user message of about `tokens` tokens: one short word repeated is one token per word in the
// byte-level BPE vocabularies of the supported families. `usage.prompt_tokens` reports the exact
// count, which the report uses.
const filler = (tokens) => "ok ".repeat(Math.max(1, tokens - 24)).trim();

// The adapter the page would get, as the report names it (WebGPU only).
async function adapterInfo() {
  if (!navigator.gpu) return null;
  let adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  // Seen on an NVIDIA machine: the first request of a page returned null, the second the GPU.
  adapter ??= await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const info = adapter.info ?? {};
  return {
    vendor: info.vendor, architecture: info.architecture, description: info.description,
    fallback: info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false,
    features: [...adapter.features].sort(),
  };
}

// One completion; returns its usage (WebLLM's `usage.extra` holds prefill and decode speed).
async function complete(engine, content, request) {
  await engine.resetChat();
  const reply = await engine.chat.completions.create({
    messages: [{ role: "user", content }], stream: false, ...request,
  });
  return reply.usage;
}

// Counts and times the WebGPU calls the page makes until `stop()`: where a browser decode step's
// time goes on the host. `map_wait_ms`: from a `mapAsync` call to its promise resolving (the
// device's work still queued plus the round trip through the event loop); `host_ms`: from a
// resolved `mapAsync` (a token on the host) to the next `submit` (streaming the token, the yield
// to the page, recording the next step). The wrappers cost a little themselves, so the profiled
// run is separate from the measured ones.
function profileWebGPU() {
  const counts = { submit: 0, writeBuffer: 0, write_bytes: 0, mapAsync: 0, dispatchWorkgroups: 0, createBindGroup: 0 };
  const times = { map_wait_ms: 0, host_ms: 0, host_spans: 0 };
  let tokenArrived = null;
  const wrapped = [];
  const wrap = (proto, name, around) => {
    const original = proto[name];
    proto[name] = function (...args) { return around.call(this, original, args); };
    wrapped.push(() => { proto[name] = original; });
  };
  const count = (proto, name) => wrap(proto, name, function (original, args) {
    counts[name]++;
    return original.apply(this, args);
  });
  wrap(GPUQueue.prototype, "submit", function (original, args) {
    counts.submit++;
    if (tokenArrived !== null) {
      times.host_ms += performance.now() - tokenArrived;
      times.host_spans++;
      tokenArrived = null;
    }
    return original.apply(this, args);
  });
  wrap(GPUQueue.prototype, "writeBuffer", function (original, args) {
    counts.writeBuffer++;
    counts.write_bytes += args[4] ?? (args[2].byteLength - (args[3] ?? 0));
    return original.apply(this, args);
  });
  wrap(GPUBuffer.prototype, "mapAsync", function (original, args) {
    counts.mapAsync++;
    const called = performance.now();
    return original.apply(this, args).then((value) => {
      tokenArrived = performance.now();
      times.map_wait_ms += tokenArrived - called;
      return value;
    });
  });
  count(GPUComputePassEncoder.prototype, "dispatchWorkgroups");
  count(GPUDevice.prototype, "createBindGroup");
  return {
    stop(tokens) {
      wrapped.forEach((restore) => restore());
      const per = (value) => value / tokens;
      return {
        tokens,
        per_token: Object.fromEntries(Object.entries(counts).map(([name, value]) => [name, per(value)])),
        map_wait_ms_per_token: per(times.map_wait_ms),
        host_ms_per_token: times.host_spans ? times.host_ms / times.host_spans : null,
      };
    },
  };
}

const KV_POSITIONS = 4096;
const greedy = { temperature: 0, repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0 };

async function bench() {
  const report = { device: options.device, adapter: await adapterInfo(), user_agent: navigator.userAgent };
  const appConfig = {
    model_list: [{
      model: options.modelUrl, model_id: options.modelId, model_lib: "unused",
      // Room for the longest context measured and its steps.
      overrides: { context_window_size: Math.max(4096, ...options.contexts.map((c) => c + options.contextSteps + 64)) },
    }],
  };
  // Each load's progress reports, with the milliseconds since the load began: where its time goes.
  let progress = [];
  let started = performance.now();
  const engineConfig = {
    appConfig, device: options.device,
    initProgressCallback: (p) => progress.push([Math.round(performance.now() - started), p.text]),
  };
  const engine = options.cpuThreads === undefined
    ? await webllm.CreateMLCEngine(options.modelId, engineConfig)
    : await webllm.CreateWebWorkerMLCEngine(
      new Worker(`worker.js?device=${options.device}&threads=${options.cpuThreads}`, { type: "module" }), options.modelId, engineConfig);
  report.load_first_s = seconds(started);
  report.load_first_reports = progress;
  report.backend = progress.map(([, text]) => text).findLast((text) => /WebGPU|CPU/i.test(text)) ?? null;
  // The threads the CPU engine runs on, as its final report says ("Finish loading on CPU, 2 threads").
  report.cpu_threads = Number(/CPU, (\d+) threads?/.exec(report.backend ?? "")?.[1] ?? NaN) || null;
  await log(`loaded in ${report.load_first_s.toFixed(2)} s`);

  await engine.unload();
  progress = [];
  started = performance.now();
  await engine.reload(options.modelId);
  report.load_cached_s = seconds(started);
  report.load_cached_reports = progress;
  await log(`reloaded from the cache in ${report.load_cached_s.toFixed(2)} s`);

  // Warm-up: every kernel bound, every buffer allocated.
  await complete(engine, filler(32), { ...greedy, max_tokens: 4 });

  // Prefill and time to first token.
  const prefill = await complete(engine, filler(options.promptTokens), { ...greedy, max_tokens: 1 });
  report.prompt_tokens = prefill.prompt_tokens;
  report.ttft_s = prefill.extra.time_to_first_token_s;
  report.prefill_tok_s = prefill.extra.prefill_tokens_per_s;

  // Decode as a chat runs it: the model's own sampling settings (mlc-chat-config.json), then greedy.
  const sampled = await complete(engine, filler(options.promptTokens), { max_tokens: options.genTokens, ignore_eos: true, seed: 1 });
  report.gen_tokens = sampled.completion_tokens;
  report.decode_default_sampling_tok_s = sampled.extra.decode_tokens_per_s;
  const greedyRun = await complete(engine, filler(options.promptTokens), { ...greedy, max_tokens: options.genTokens, ignore_eos: true });
  report.decode_tok_s = greedyRun.extra.decode_tokens_per_s;
  await log(`decode ${report.decode_tok_s.toFixed(1)} tok/s greedy, ${report.decode_default_sampling_tok_s.toFixed(1)} with the model's sampling`);

  // The same sampled run again, its WebGPU calls counted and timed (WebGPU only).
  if (options.device !== "cpu" && globalThis.GPUQueue) {
    const profile = profileWebGPU();
    const started = performance.now();
    const usage = await complete(engine, filler(options.promptTokens), { max_tokens: options.genTokens, ignore_eos: true, seed: 1 });
    const wall_ms = performance.now() - started;
    report.decode_profile = { ...profile.stop(usage.completion_tokens), wall_ms, decode_tok_s: usage.extra.decode_tokens_per_s };
  }

  report.decode_at_context = [];
  for (const context of options.contexts) {
    // The GPU engine's KV cache holds at most 4,096 positions (docs/ARCHITECTURE.md, "KV cache"):
    // the longest context starts early enough for its steps; the report gives the real length.
    const prompt = Math.min(context, KV_POSITIONS - options.contextSteps - 32);
    const usage = await complete(engine, filler(prompt), { ...greedy, max_tokens: options.contextSteps, ignore_eos: true });
    report.decode_at_context.push({ context: usage.prompt_tokens, steps: usage.completion_tokens, tok_s: usage.extra.decode_tokens_per_s });
  }
  report.runtime_stats = await engine.runtimeStatsText();
  await engine.unload();
  return report;
}

bench().then(
  (report) => post("/result", report),
  (error) => post("/result", { error: `${error?.name ?? "Error"}: ${error?.message ?? error}`, stack: String(error?.stack ?? "") }),
);
