// Browser tests of the WebLLM-compatible module in headless Chromium (playwright-core, the system's
// /usr/bin/chromium; no browser download). Every expected text comes from running the native
// `mlc-wgpu serve` on the same artifact and the same request; nothing is hand-typed.
//
// Two browsers run the same suite: one with WebGPU (--enable-unsafe-webgpu: SwiftShader adapter,
// device "webgpu"; device "auto" must skip that software adapter for the CPU engine) and one without
// it (device "auto", which must fall back to the CPU engine and say so). Output: one line per check, then "N passed, N failed, N not run"; exit 1 on failure.
//
// Environment: MLC_WGPU_BIN (native binary; default target/debug/mlc-wgpu), MLC_WGPU_CACHE,
// MLC_WGPU_SMOLLM2_DIR (SmolLM2 artifact folder), CI (a missing SmolLM2 artifact fails),
// WEB_TEST_ONLY=webgpu|cpu (run one browser), WEB_TEST_GREP=regex (run only the checks whose names
// match), CHROMIUM (default /usr/bin/chromium),
// MLC_WGPU_WEB_PKG_DIR (the wasm build to serve; default web/pkg), MLC_WGPU_WEB_PKG_THREADS_DIR (the
// threaded build; default web/pkg-threads). WEB_TEST_ONLY=threads runs only the threads checks.

import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "./server.mjs";
import { defaultModelDir, nativeServe, prepareTinyQwen2, SMOL_ID } from "./native.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const outDir = path.join(here, "out");
fs.mkdirSync(outDir, { recursive: true });

// ---------------------------------------------------------------- reporting
let passed = 0, failed = 0, notRun = 0;
const failures = [];
function ok(name) { passed++; console.log(`ok      ${name}`); }
function bad(name, why) { failed++; failures.push(name); console.log(`FAILED  ${name}\n        ${String(why).split("\n").join("\n        ")}`); }
function skip(name, why) {
  if (process.env.CI) { bad(name, `NOT RUN in CI: ${why}`); return; }
  notRun++; console.log(`NOT RUN ${name}: ${why}`);
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: got ${JSON.stringify(a)}, expected ${JSON.stringify(b)}`);
}
// WEB_TEST_GREP (a regular expression) runs only the checks whose names match it: a development
// aid for iterating on one check; the suite (and CI) runs without it.
const grep = process.env.WEB_TEST_GREP ? new RegExp(process.env.WEB_TEST_GREP) : undefined;
async function check(name, fn) {
  if (grep && !grep.test(name)) return;
  try { await fn(); ok(name); } catch (e) { bad(name, e?.stack ?? e); }
}

// ---------------------------------------------------------------- artifacts
// MLC_WGPU_WEB_PKG_DIR serves a wasm build from elsewhere (default web/pkg).
const pkgDir = process.env.MLC_WGPU_WEB_PKG_DIR ?? path.join(repo, "web/pkg");
const pkgThreadsDir = process.env.MLC_WGPU_WEB_PKG_THREADS_DIR ?? path.join(repo, "web/pkg-threads");
const pkgJs = path.join(pkgDir, "mlc_wgpu_web.js");
if (!fs.existsSync(pkgJs) || !fs.existsSync(path.join(pkgDir, "mlc_wgpu_web_bg.wasm"))) {
  console.log(`FAILED  the wasm module is missing (${pkgJs}); run scripts/build-web.sh (scripts/test-web.sh does)`);
  process.exit(1);
}

const tinyDir = path.join(here, "served/tiny-qwen2");
const tinyIndex = prepareTinyQwen2(repo, tinyDir);

// A family the runtime lacks: tiny-qwen2's files under a config that says phi3_v (Phi-3.5-vision, a WebLLM record).
const unsupportedDir = path.join(here, "served/phi3_v-config");
prepareTinyQwen2(repo, unsupportedDir);
{
  const cfgPath = path.join(unsupportedDir, "mlc-chat-config.json");
  fs.writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, "utf8")), model_type: "phi3_v" }));
}

// tiny-qwen2 under a config whose default sampling is greedy (temperature 0): the demo page sends no
// temperature, so with this model its answer is the native CLI's greedy text.
const greedyDir = path.join(here, "served/tiny-qwen2-greedy");
prepareTinyQwen2(repo, greedyDir);
{
  const cfgPath = path.join(greedyDir, "mlc-chat-config.json");
  fs.writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, "utf8")), temperature: 0 }));
}

const smolDir = defaultModelDir();
const haveSmol = fs.existsSync(path.join(smolDir, "mlc-chat-config.json"));

// ---------------------------------------------------------------- native expectations
const nativeBin = process.env.MLC_WGPU_BIN ?? path.join(repo, "target/debug/mlc-wgpu");
assert(fs.existsSync(nativeBin), `native binary ${nativeBin} missing (scripts/test-web.sh builds it)`);

// An embedding model: the BERT fixture converted to q0f32 by the native CLI (as WebLLM's snowflake
// records are), with WebLLM's record type ModelType.embedding.
const bertDir = path.join(here, "served/bert-tiny");
fs.rmSync(bertDir, { recursive: true, force: true });
execFileSync(nativeBin, ["convert", "--quantization", "q0f32",
  "--from", path.join(repo, "conformance/fixtures/families/bert-tiny/hf_source"), "--out", bertDir], { stdio: "ignore" });

// Every decoder family of the conformance fixtures (families/*, but the BERT encoder), converted to
// q4f16_1 by the native CLI as a user would convert a checkpoint. The fixtures are random checkpoints
// without a tokenizer: each gets a tokenizer of one word per id (the check feeds token ids, so the
// words never matter) and a greedy, penalty-free config, so the browser's forwardTokensAndSample walk
// must give the very tokens of native `generate --greedy` on the CPU engine. The walk is longer than
// the Mistral fixtures' 16-position sliding window, so their rolling cache wraps.
const FAMILY_PROMPT = [5, 17, 42, 3, 99, 250, 7, 11, 64, 128, 31, 2];
const FAMILY_STEPS = 12;
// SwiftShader takes seconds per family; the WebGPU browser walks those whose kernels no other family
// shares: Gemma 3 (local and global layers, q/k norms), GPT-NeoX's parallel residual with partial
// rotary, Mistral's rolling cache, Qwen3.5's Gated DeltaNet.
const FAMILIES_ON_SWIFTSHADER = ["gemma3-tiny", "gpt_neox-parallel-tiny", "mistral-window-tiny", "qwen3_5-tiny"];
const families = fs.readdirSync(path.join(repo, "conformance/fixtures/families")).filter((f) => f !== "bert-tiny").sort();
for (const name of families) {
  const source = path.join(here, `served/source-${name}`);
  const dir = path.join(here, `served/family-${name}`);
  fs.rmSync(source, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
  fs.cpSync(path.join(repo, `conformance/fixtures/families/${name}/hf_source`), source, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(source, "config.json"), "utf8"));
  const vocabSize = (config.text_config ?? config).vocab_size;
  const vocab = Object.fromEntries(Array.from({ length: vocabSize }, (_, id) => [`w${id}`, id]));
  fs.writeFileSync(path.join(source, "tokenizer.json"), JSON.stringify({ version: "1.0", truncation: null, padding: null,
    added_tokens: [], normalizer: null, pre_tokenizer: { type: "WhitespaceSplit" }, post_processor: null, decoder: null,
    model: { type: "WordLevel", vocab, unk_token: "w0" } }));
  execFileSync(nativeBin, ["convert", "--quantization", "q4f16_1", "--from", source, "--out", dir], { stdio: "ignore" });
  fs.rmSync(source, { recursive: true, force: true });
  const cfgPath = path.join(dir, "mlc-chat-config.json");
  fs.writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, "utf8")),
    temperature: 0, top_p: 1, repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0 }));
}

// The requests every engine answers; the expected answers are computed by the native engine.
const REQ = {
  chat: { messages: [{ role: "user", content: "Hello! Tell me about the sea." }], temperature: 0, max_tokens: 16 },
  long: { messages: [{ role: "user", content: "Write a long story." }], temperature: 0, max_tokens: 48, ignore_eos: true },
  app: { messages: [{ role: "system", content: "You are a helpful AI assistant." }, { role: "user", content: "What is WebGPU?" }], temperature: 0, max_tokens: 12 },
  completion: { prompt: "Once upon a time", temperature: 0, max_tokens: 12 },
};
// SwiftShader (Chromium's software WebGPU) runs a decode step of even the tiny model in seconds,
// so the WebGPU browser uses short variants of the same requests.
for (const k of ["chat", "long", "app"]) REQ[`${k}Short`] = { ...REQ[k], max_tokens: k === "long" ? 8 : 3 };
// Structured output on tiny-qwen2 (random weights; Qwen2.5's template and vocabulary): a tool call
// in Qwen2.5's format whose arguments follow the tool's schema, the tool's result sent back, and a
// short EBNF grammar (short enough for SwiftShader).
const TOOLS = [{ type: "function", function: { name: "get_weather", description: "Weather in a city",
  parameters: { type: "object", properties: { city: { enum: ["Paris", "Oslo"] }, days: { type: "integer", minimum: 1, maximum: 7 } },
                required: ["city", "days"], additionalProperties: false } } }];
REQ.tool = { messages: [{ role: "user", content: "Weather in Paris?" }], tools: TOOLS, tool_choice: "required", temperature: 0, max_tokens: 60 };
REQ.grammar = { messages: [{ role: "user", content: "Yes or no?" }], response_format: { type: "grammar", grammar: 'root ::= "yes" | "no"' }, temperature: 0, max_tokens: 4 };
// A seeded, sampled request (temperature, top-p, the draw): the WebGPU engine samples on the GPU
// with each step queued ahead, the native CPU engine on the host, one step after another.
REQ.sampled = { messages: [{ role: "user", content: "Tell me something." }], temperature: 1.0, top_p: 0.9, seed: 7, max_tokens: 4, ignore_eos: true };
// Resumable generation cuts a seeded, sampled stream and continues it: long enough to cut midway,
// with a repetition penalty, which must count the tokens generated before the cut.
REQ.sampledLong = { messages: [{ role: "user", content: "Tell me a story." }], temperature: 1.0, top_p: 0.9, seed: 11,
  repetition_penalty: 1.3, max_tokens: 24, ignore_eos: true };
const toolResult = (call) => ({ messages: [...REQ.tool.messages, call.choices[0].message, { role: "tool", tool_call_id: "0", content: '{"celsius": 21}' }],
  tools: TOOLS, temperature: 0, max_tokens: 3 });
const SMOL_REQ = { messages: [{ role: "user", content: "What is the capital of France?" }], temperature: 0, max_tokens: 8 };
const SMOL_REQ_SHORT = { ...SMOL_REQ, max_tokens: 2 };

console.log(`native expectations from ${path.relative(repo, nativeBin)} serve --device cpu`);
const expected = {};
let familyTokens; // family name → native generate's greedy tokens
{
  const n = await nativeServe(nativeBin, tinyDir);
  try {
    for (const k of ["chat", "long", "app", "chatShort", "longShort", "appShort"]) expected[k] = await n.post("/v1/chat/completions", REQ[k]);
    expected.completion = await n.post("/v1/completions", REQ.completion);
    expected.tool = await n.post("/v1/chat/completions", REQ.tool);
    expected.toolResult = await n.post("/v1/chat/completions", toolResult(expected.tool));
    expected.grammar = await n.post("/v1/chat/completions", REQ.grammar);
    expected.sampled = await n.post("/v1/chat/completions", REQ.sampled);
    expected.sampledLong = await n.post("/v1/chat/completions", REQ.sampledLong);
  } finally { n.close(); }
  familyTokens = Object.fromEntries(families.map((name) => [name, JSON.parse(execFileSync(nativeBin, ["generate", "--device", "cpu",
    "--model", path.join(here, `served/family-${name}`), "--tokens", FAMILY_PROMPT.join(","), "--max-tokens", String(FAMILY_STEPS),
    "--greedy", "--ignore-eos", "--json"], { stdio: ["ignore", "pipe", "ignore"] }).toString()).tokens]));
  // WebLLM's embeddings (no [CLS]/[SEP] added, unnormalised) as the native CLI computes them.
  expected.embed = JSON.parse(execFileSync(nativeBin, ["embed", "--webllm", "--device", "cpu", "--model", bertDir,
    "what is a snowflake", "Where can I get the best snow?"], { stdio: ["ignore", "pipe", "ignore"] }).toString());
  if (haveSmol) {
    const s = await nativeServe(nativeBin, smolDir);
    try {
      expected.smol = await s.post("/v1/chat/completions", SMOL_REQ);
      expected.smolShort = await s.post("/v1/chat/completions", SMOL_REQ_SHORT);
    } finally { s.close(); }
  }
}
const text = (r) => r.choices[0].message?.content ?? r.choices[0].text;
fs.writeFileSync(path.join(outDir, "native-expectations.json"), JSON.stringify(expected, null, 1));
for (const k of Object.keys(expected).filter((k) => k !== "embed")) {
  assert(expected[k].usage.completion_tokens > 0, `native ${k} produced no tokens`);
}

// ---------------------------------------------------------------- server + browser
const models = [{ id: "tiny-qwen2", dir: tinyDir }, { id: "phi3_v-config", dir: unsupportedDir }, { id: "bert-tiny", dir: bertDir },
  { id: "tiny-qwen2-greedy", dir: greedyDir }, ...families.map((name) => ({ id: `family-${name}`, dir: path.join(here, `served/family-${name}`) }))];
if (haveSmol) models.push({ id: SMOL_ID, dir: smolDir });
const MOUNTS = [
  ["/web/js/", path.join(repo, "web/js")],
  ["/web/pkg/", pkgDir],
  ["/web/pkg-threads/", pkgThreadsDir],
  ["/web/tests/pages/", path.join(here, "pages")],
  ["/demo/", path.join(repo, "demo")],
];
const server = await startServer({ mounts: MOUNTS, models });
// The same files with COOP/COEP: its pages are cross-origin isolated (the CPU engine's threads).
const isolatedServer = await startServer({ mounts: MOUNTS, models, isolated: true });
const ORIGIN = server.url;
const ISOLATED_ORIGIN = isolatedServer.url;
const ALLOWED = [/^\/web\/js\//, /^\/web\/pkg\//, /^\/web\/pkg-threads\//, /^\/web\/tests\/pages\//, /^\/demo\//, /^\/models\//];

const BASE_ARGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
// The caching, download, quota and transport checks exercise the JS layer, which is the same for
// both engines: they run in the CPU browser only (full: true), because SwiftShader is very slow.
const MODES = [
  // No --enable-unsafe-webgpu: requestAdapter() gives null, so "auto" must pick the CPU engine.
  { name: "cpu", args: BASE_ARGS, device: "auto", backend: "cpu", full: true, short: "" },
  { name: "webgpu", args: ["--enable-unsafe-webgpu", ...BASE_ARGS], device: "webgpu", backend: "webgpu", full: false, short: "Short" },
].filter((m) => !process.env.WEB_TEST_ONLY || process.env.WEB_TEST_ONLY === m.name);
const runThreads = !process.env.WEB_TEST_ONLY || process.env.WEB_TEST_ONLY === "threads";

const allRequests = []; // every request any page/worker made: {mode, url}
const contexts = [];
async function newContext(mode) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlcw-chromium-"));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: mode.args,
  });
  ctx.on("request", (r) => allRequests.push({ mode: mode.name, url: r.url() }));
  const logs = [];
  ctx.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
  ctx.on("weberror", (e) => logs.push(`[pageerror] ${e.error()}`));
  ctx.logs = logs;
  contexts.push({ ctx, dir });
  return ctx;
}
async function closeContext(ctx) {
  const i = contexts.findIndex((c) => c.ctx === ctx);
  await ctx.close();
  fs.rmSync(contexts[i].dir, { recursive: true, force: true });
  contexts.splice(i, 1);
}
async function blankPage(ctx, origin = ORIGIN) {
  const page = await ctx.newPage();
  await page.goto(`${origin}/web/tests/pages/blank.html`);
  return page;
}
function withTimeout(p, s, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: timed out after ${s}s`)), s * 1000); })])
    .finally(() => clearTimeout(t));
}
const modelRequests = () => server.requests().filter((r) => r.path.startsWith("/models/") && r.path !== "/models/index.json");

// In-page helpers, installed on window by every evaluate (page functions cannot close over node values).
const PAGE_HELPERS = `
  window.T = {
    cfg: (backend, id = "tiny-qwen2") => ({ cacheBackend: backend,
      model_list: [{ model: location.origin + "/models/" + id, model_id: id, model_lib: "unused-by-mlc-wgpu.wasm" }] }),
    async load(webllm, opts) {
      const reports = [];
      const engine = await webllm.CreateMLCEngine(opts.id ?? "tiny-qwen2", {
        appConfig: T.cfg(opts.backend ?? "cache", opts.id), device: opts.device,
        initProgressCallback: (r) => reports.push(r) });
      return { engine, reports };
    },
    async stream(engine, req) {
      const chunks = [];
      for await (const c of await engine.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } })) chunks.push(c);
      return chunks;
    },
    textOf: (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""),
  };`;
async function run(page, body, arg, seconds = 300) {
  const fn = new Function("arg", `return (async () => { ${PAGE_HELPERS}
    const webllm = await import("/web/js/index.js");
    ${body} })();`);
  return withTimeout(page.evaluate(fn, arg), seconds, "page task");
}

// ---------------------------------------------------------------- the suite
for (const mode of MODES) {
  console.log(`\n== browser: ${mode.name} (device "${mode.device}", expecting the ${mode.backend} engine)` +
    (mode.full ? "" : "; engine-independent checks (caches, downloads, quota, transports) run in the CPU browser"));
  const D = mode.device;
  const S = mode.short;
  const full = (name, fn) => (mode.full ? check(name, fn) : undefined);
  const ctx = await newContext(mode);
  let page = await blankPage(ctx);
  let loaded = false;

  await check(`[${mode.name}] load tiny-qwen2 with WebLLM's progress reports, stream a greedy chat equal to the native CLI`, async () => {
    server.clearLog();
    const r = await run(page, `
      const requestDevice = globalThis.GPUAdapter?.prototype.requestDevice;
      const { engine, reports } = await T.load(webllm, { device: arg.D });
      window.engine = engine;
      const chunks = await T.stream(engine, arg.req);
      const nonStream = await engine.chat.completions.create(arg.req);
      return { reports, chunks, nonStream, message: await engine.getMessage(), stats: await engine.runtimeStatsText(),
               cached: await webllm.hasModelInCache("tiny-qwen2", T.cfg("cache")),
               requestDeviceRestored: globalThis.GPUAdapter?.prototype.requestDevice === requestDevice };
    `, { D, req: REQ["chat" + S] });
    const texts = r.reports.map((x) => x.text);
    const start = texts.indexOf("Start to fetch params");
    assert(start >= 0, `no "Start to fetch params" in ${JSON.stringify(texts)}`);
    if (mode.backend === "cpu") assert(texts.slice(0, start).some((t) => /WebGPU is not available.*CPU engine/.test(t)), `no CPU notice before loading: ${JSON.stringify(texts)}`);
    const mb = Math.ceil(tinyIndex.records[0].nbytes / 1048576);
    assert(new RegExp(`^Fetching param cache\\[1/1\\]: ${mb}MB fetched\\. 100% completed, \\d+ secs elapsed\\. It can take a while when we first visit this page to populate the cache\\. Later refreshes will become faster\\.$`).test(texts[start + 1]), `fetch report: ${texts[start + 1]}`);
    assert(/^Loading model from cache\[1\/1\]: \d+MB loaded\. 100% completed, \d+ secs elapsed\.$/.test(texts[start + 2]), `load report: ${texts[start + 2]}`);
    const last = r.reports.at(-1);
    eq(last.progress, 1, "final progress");
    assert(mode.backend === "webgpu" ? /^Finish loading on WebGPU - .+/.test(last.text) : /^Finish loading on CPU/.test(last.text), `final report: ${last.text}`);
    // SwiftShader offers subgroups, which wgpu does not request: the engine asks for them while it
    // creates its device (web/js/subgroups.js), so its kernels take the subgroup path, and the
    // page's requestDevice is left as it was.
    eq(last.gpuKernels, mode.backend === "webgpu" ? "subgroups" : undefined, "the GPU kernels in use");
    eq(r.requestDeviceRestored, true, "GPUAdapter.prototype.requestDevice restored after the load");
    // Chunk shapes (docs/chat.md, "WebLLM's request contract"): role on every delta, a final delta {} with finish_reason, then usage.
    const deltas = r.chunks.filter((c) => c.choices.length && c.choices[0].finish_reason === null);
    assert(deltas.length > 0 && deltas.every((c) => c.choices[0].delta.role === "assistant" && typeof c.choices[0].delta.content === "string"), "delta chunks");
    const fin = r.chunks.at(-2);
    eq(fin.choices[0].delta, {}, "final chunk delta");
    eq(fin.choices[0].finish_reason, expected["chat" + S].choices[0].finish_reason, "finish_reason");
    const usage = r.chunks.at(-1);
    eq(usage.choices, [], "usage chunk choices");
    eq(usage.usage.completion_tokens, expected["chat" + S].usage.completion_tokens, "completion_tokens");
    eq(usage.usage.prompt_tokens, expected["chat" + S].usage.prompt_tokens, "prompt_tokens");
    assert(r.chunks.every((c) => c.id === r.chunks[0].id && c.object === "chat.completion.chunk"), "ids/objects");
    eq(r.chunks.slice(0, -1).some((c) => "usage" in c), false, "usage key on non-final chunks");
    eq(T_text(r.chunks), text(expected["chat" + S]), "streamed text vs native");
    eq(text(r.nonStream), text(expected["chat" + S]), "non-streaming text vs native");
    eq(r.message, text(expected["chat" + S]), "getMessage()");
    assert(/^prefill: [\d.]+ tokens\/sec, decoding: [\d.]+ tokens\/sec$/.test(r.stats), `runtimeStatsText: ${r.stats}`);
    eq(r.cached, true, "hasModelInCache after load");
    loaded = true;
  });

  await full(`[${mode.name}] a family the runtime lacks fails at reload naming it, before the weights are fetched; embeddings get WebLLM's error`, async () => {
    server.clearLog();
    const r = await run(page, `
      const attempt = async (f) => { try { await f(); return "resolved"; } catch (e) { return e.name + ": " + e.message; } };
      const family = await attempt(() => T.load(webllm, { id: "phi3_v-config", device: arg.D }));
      const packageRecord = await attempt(() => webllm.CreateMLCEngine("gemma-4-E2B-it-q4f16_1-MLC", { device: arg.D }));
      const embeddings = await attempt(() => window.engine.embeddings.create({ input: "hello" }));
      // The config it fetched stays cached, as WebLLM keeps it; later checks count the cache's keys.
      await webllm.deleteChatConfigInCache("phi3_v-config", T.cfg("cache", "phi3_v-config"));
      return { family, packageRecord, embeddings };
    `, { D });
    assert(/^ModelFamilyNotSupportedError: phi3_v-config cannot be loaded by mlc-wgpu: unsupported model_type `phi3_v`; supported: .*llama/.test(r.family), r.family);
    assert(/^ModelFamilyNotSupportedError: gemma-4-E2B-it-q4f16_1-MLC cannot be loaded by mlc-wgpu: its artifact is a model package \(mlc-model-manifest.json\), the format of Gemma 4/.test(r.packageRecord), r.packageRecord);
    eq(r.embeddings, "IncorrectPipelineLoadedError: EmbeddingCreateParams expects model to be loaded with EmbeddingPipeline. However, tiny-qwen2 is not loaded with this pipeline.", "embeddings.create on a chat model");
    const fetched = server.requests().map((x) => x.path).filter((x) => x.startsWith("/models/phi3_v-config/"));
    eq(fetched, ["/models/phi3_v-config/resolve/main/mlc-chat-config.json"], "files fetched for the unsupported family");
  });

  await check(`[${mode.name}] embeddings.create on an embedding model, on the ${mode.backend} encoder: WebLLM's response, equal to the native CLI's; WebLLM's errors; chat on it is refused`, async () => {
    const r = await run(page, `
      const attempt = async (f) => { try { await f(); return "resolved"; } catch (e) { return e.name + ": " + e.message; } };
      const appConfig = { cacheBackend: "cache", model_list: [{ model: location.origin + "/models/bert-tiny", model_id: "bert-tiny",
        model_lib: "unused-by-mlc-wgpu.wasm", model_type: webllm.ModelType.embedding }] };
      const reports = [];
      const engine = await webllm.CreateMLCEngine("bert-tiny", { appConfig, device: arg.D, initProgressCallback: (r) => reports.push(r) });
      const loaded = reports.at(-1).text;
      const response = await engine.embeddings.create({ input: ["what is a snowflake", "Where can I get the best snow?"] });
      const tokens = await engine.embeddings.create({ input: [[2, 5, 3], [7]] });
      const errors = {
        base64: await attempt(() => engine.embeddings.create({ input: "a", encoding_format: "base64" })),
        empty: await attempt(() => engine.embeddings.create({ input: ["a", ""] })),
        dimensions: await attempt(() => engine.embeddings.create({ input: "a", dimensions: 4 })),
        long: await attempt(() => engine.embeddings.create({ input: [Array(65).fill(5)] })),
        chat: await attempt(() => engine.chat.completions.create({ messages: [{ role: "user", content: "hi" }] })),
      };
      await engine.unload();
      // Later checks count the cache's keys: leave it as it was (WebLLM's delete keeps the index).
      await webllm.deleteModelAllInfoInCache("bert-tiny", appConfig);
      await (await caches.open("webllm/model")).delete(location.origin + "/models/bert-tiny/resolve/main/tensor-cache.json");
      return { response, tokens, errors, loaded };
    `, { D });
    assert(mode.backend === "webgpu" ? /^Finish loading on WebGPU - .+/.test(r.loaded) : /^Finish loading on CPU/.test(r.loaded), `final report: ${r.loaded}`);
    const want = expected.embed;
    eq(r.response.object, "list", "object");
    eq(r.response.model, "bert-tiny", "model");
    eq(r.response.usage.prompt_tokens, want.usage.prompt_tokens, "prompt_tokens (no special tokens added)");
    eq(r.response.data.map((d) => [d.object, d.index]), [["embedding", 0], ["embedding", 1]], "data entries");
    for (let i = 0; i < 2; i++) {
      const got = r.response.data[i].embedding, exp = want.data[i].embedding;
      eq(got.length, exp.length, `embedding ${i} length`);
      const gap = Math.max(...got.map((v, j) => Math.abs(v - exp[j])));
      assert(gap < 1e-5, `embedding ${i} differs from the native CLI's by ${gap}`);
    }
    eq(r.tokens.data.length, 2, "token-array inputs");
    eq(r.tokens.usage.total_tokens, 4, "token-array usage");
    eq(r.errors.base64, "EmbeddingUnsupportedEncodingFormatError: Embedding in base64 format is currently not supported.", "base64");
    eq(r.errors.empty, "EmbeddingInputEmptyError: Embedding input cannot be empty string or empty token array.", "empty input");
    assert(r.errors.dimensions.startsWith("UnsupportedFieldsError: The following fields in EmbeddingCreateParams are not yet supported"), r.errors.dimensions);
    eq(r.errors.long, "EmbeddingExceedContextWindowSizeError: The embedding model you are using only supports up to 64 context size.However, an input in the batch has size 65.", "too long");
    eq(r.errors.chat, "IncorrectPipelineLoadedError: ChatCompletionRequest expects model to be loaded with LLMChatPipeline. However, bert-tiny is not loaded with this pipeline.", "chat on an embedding model");
  });

  await full(`[${mode.name}] forwardTokensAndSample: token ids in, the next token out; a chat afterwards equals the native CLI`, async () => {
    const r = await run(page, `
      const reports = [];
      const engine = await webllm.CreateMLCEngine("tiny-qwen2", { appConfig: T.cfg("cache"), device: arg.D }, { temperature: 0 });
      const walk = async () => {
        const ids = [await engine.forwardTokensAndSample([9707, 11, 1879, 0, 3555], true)];
        for (let i = 0; i < 3; i++) ids.push(await engine.forwardTokensAndSample([ids.at(-1)], false));
        return ids;
      };
      const first = await walk();
      await engine.resetChat();
      const second = await walk();
      let bad;
      try { await engine.forwardTokensAndSample([], true); } catch (e) { bad = String(e); }
      const chat = await engine.chat.completions.create(arg.req);
      await engine.unload();
      return { first, second, bad, chat };
    `, { D, req: REQ.chat });
    assert(r.first.length === 4 && r.first.every((t) => Number.isInteger(t) && t >= 0 && t < 151936), JSON.stringify(r.first));
    eq(r.second, r.first, "the same ids after resetChat()");
    assert(/inputIds must not be empty/.test(r.bad), r.bad);
    eq(text(r.chat), text(expected.chat), "chat after forwardTokensAndSample vs native");
  });

  const walked = mode.backend === "webgpu" ? families.filter((f) => FAMILIES_ON_SWIFTSHADER.includes(f)) : families;
  await check(`[${mode.name}] every decoder family (${walked.join(", ")}), converted by the native CLI: forwardTokensAndSample's greedy walk gives native generate's tokens`, async () => {
    assert(families.length > 0 && FAMILIES_ON_SWIFTSHADER.every((f) => families.includes(f)), `families found: ${families}`);
    const r = await run(page, `
      const walks = {};
      for (const name of arg.walked) {
        const id = "family-" + name;
        const engine = await webllm.CreateMLCEngine(id, { appConfig: T.cfg("cache", id), device: arg.D });
        const ids = [await engine.forwardTokensAndSample(arg.prompt, true)];
        while (ids.length < arg.steps) ids.push(await engine.forwardTokensAndSample([ids.at(-1)], false));
        walks[name] = ids;
        await engine.unload();
        // Later checks count the cache's keys: leave it as it was (WebLLM's delete keeps the index).
        await webllm.deleteModelAllInfoInCache(id, T.cfg("cache", id));
        await (await caches.open("webllm/model")).delete(location.origin + "/models/" + id + "/resolve/main/tensor-cache.json");
      }
      return walks;
    `, { D, walked, prompt: FAMILY_PROMPT, steps: FAMILY_STEPS }, 600);
    for (const name of walked) eq(r[name], familyTokens[name], `${name}: browser walk vs native generate --greedy`);
  });

  await full(`[${mode.name}] WebLLM's start-up probes answer for the CPU engine under "auto" and throw WebLLM's error under "webgpu"`, async () => {
    const r = await run(page, `
      const attempt = async (f) => { try { return await f(); } catch (e) { return e.name + ": " + e.message; } };
      const auto = new webllm.MLCEngine({ device: "auto" });
      const gpu = new webllm.MLCEngine({ device: "webgpu" });
      return { vendor: await attempt(() => auto.getGPUVendor()), size: await attempt(() => auto.getMaxStorageBufferBindingSize()),
               gpuVendor: await attempt(() => gpu.getGPUVendor()) };
    `, {});
    eq(r.vendor, "", "getGPUVendor() on the CPU engine");
    eq(r.size, 1 << 30, "getMaxStorageBufferBindingSize() on the CPU engine");
    assert(/^(WebGPUNotAvailableError|Error: Unable to find a compatible GPU)/.test(r.gpuVendor), r.gpuVendor);
  });

  if (mode.backend === "webgpu") {
    await check(`[${mode.name}] device "auto" skips the software adapter (SwiftShader) for the CPU engine and says why`, async () => {
      const p = await blankPage(ctx);
      try {
        const r = await run(p, `
          const info = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" })).info;
          const { engine, reports } = await T.load(webllm, { device: "auto" });
          const chunks = await T.stream(engine, arg.req);
          await engine.unload();
          return { info: { vendor: info.vendor, architecture: info.architecture, fallback: info.isFallbackAdapter },
                   reports: reports.map((x) => x.text), text: T.textOf(chunks) };`, { req: REQ.chat });
        eq(r.info.architecture, "swiftshader", "this browser's adapter (the premise of the check)");
        const notice = r.reports.indexOf(r.reports.find((t) => /software renderer \(SwiftShader\).*CPU engine instead/.test(t)));
        assert(notice >= 0 && notice < r.reports.indexOf("Start to fetch params"), `no software-adapter notice before loading: ${JSON.stringify(r.reports)}`);
        eq(r.reports.at(-1), "Finish loading on CPU, 1 thread (WebGPU's adapter is a software renderer, SwiftShader)", "final report");
        // The CPU engine answers the full-length request the WebGPU engine only gets short ones of.
        eq(r.text, text(expected.chat), "text vs native");
      } finally { await p.close(); }
    });
  }

  await full(`[${mode.name}] text completion equals the native CLI`, async () => {
    assert(loaded, "needs the loaded engine");
    const r = await run(page, `
      const res = await window.engine.completions.create(arg.req);
      let streamed = "";
      for await (const c of await window.engine.completions.create({ ...arg.req, stream: true })) streamed += c.choices[0]?.text ?? "";
      return { res, streamed };`, { req: REQ.completion });
    eq(r.res.object, "text_completion", "object");
    eq(text(r.res), text(expected.completion), "completion text vs native");
    eq(r.streamed, text(expected.completion), "streamed completion text vs native");
  });

  await check(`[${mode.name}] EBNF response_format: the grammar's text, as natively`, async () => {
    assert(loaded, "needs the loaded engine");
    const r = await run(page, `return await window.engine.chat.completions.create(arg.req);`, { req: REQ.grammar });
    assert(["yes", "no"].includes(text(r)), `not in the grammar: ${JSON.stringify(text(r))}`);
    eq(text(r), text(expected.grammar), "grammar reply vs native");
    assert(typeof r.usage.extra.grammar_init_s === "number", "usage.extra.grammar_init_s");
  });

  await check(`[${mode.name}] a seeded sampled reply equals the native CPU engine's draws`, async () => {
    assert(loaded, "needs the loaded engine");
    const r = await run(page, `return await window.engine.chat.completions.create(arg.req);`, { req: REQ.sampled });
    eq(text(r), text(expected.sampled), "sampled reply vs native");
    eq(r.usage.completion_tokens, expected.sampled.usage.completion_tokens, "completion_tokens");
  });

  await full(`[${mode.name}] Qwen2.5 tool call: tool_calls as natively, streamed too, the tool result rendered back`, async () => {
    assert(loaded, "needs the loaded engine");
    const r = await run(page, `
      const call = await window.engine.chat.completions.create(arg.req);
      const chunks = await T.stream(window.engine, arg.req);
      // The round trip an OpenAI client makes: the reply with its calls, then the tool's result.
      const result = await window.engine.chat.completions.create({ ...arg.next,
        messages: [...arg.req.messages, call.choices[0].message, arg.next.messages.at(-1)] });
      return { call, chunks, result };`, { req: REQ.tool, next: toolResult(expected.tool) });
    eq(expected.tool.choices[0].finish_reason, "tool_calls", "native finish_reason");
    const calls = expected.tool.choices[0].message.tool_calls;
    assert(calls.length > 0 && calls.every((c) => c.function.name === "get_weather"), `native calls: ${JSON.stringify(calls)}`);
    for (const c of calls) {
      const a = JSON.parse(c.function.arguments);
      assert(["Paris", "Oslo"].includes(a.city) && Number.isInteger(a.days) && a.days >= 1 && a.days <= 7 && Object.keys(a).length === 2, `arguments off-schema: ${c.function.arguments}`);
    }
    eq(r.call.choices[0].finish_reason, "tool_calls", "finish_reason");
    eq(r.call.choices[0].message.content, null, "content");
    eq(r.call.choices[0].message.tool_calls, calls, "tool_calls vs native");
    const fin = r.chunks.at(-2).choices[0];
    eq(fin.finish_reason, "tool_calls", "streamed finish_reason");
    eq(fin.delta.tool_calls, calls.map((c, index) => ({ index, type: "function", function: c.function })), "streamed tool_calls");
    eq(r.result.usage.prompt_tokens, expected.toolResult.usage.prompt_tokens, "prompt with the tool result vs native");
    eq(text(r.result), text(expected.toolResult), "reply to the tool result vs native");
  });

  await check(`[${mode.name}] cache keys are WebLLM's: scopes webllm/config + webllm/model, absolute URLs`, async () => {
    const r = await run(page, `
      const keys = async (s) => (await (await caches.open(s)).keys()).map((q) => q.url).sort();
      return { config: await keys("webllm/config"), model: await keys("webllm/model"), names: await caches.keys() };`);
    const base = `${ORIGIN}/models/tiny-qwen2/resolve/main/`;
    eq(r.config, [`${base}mlc-chat-config.json`], "webllm/config keys");
    eq(r.model, [`${base}params_shard_0.bin`, `${base}tensor-cache.json`, `${base}tokenizer.json`].sort(), "webllm/model keys");
  });

  await check(`[${mode.name}] interrupted generation (${mode.full ? "interruptGenerate and break" : "interruptGenerate"}) then a good one equal to a fresh run`, async () => {
    assert(loaded, "needs the loaded engine");
    const r = await run(page, `
      const e = window.engine;
      const chunks = [];
      for await (const c of await e.chat.completions.create({ ...arg.long, stream: true })) {
        chunks.push(c);
        if (chunks.length === arg.at) e.interruptGenerate();
      }
      const afterInterrupt = await e.chat.completions.create(arg.chat);
      if (!arg.full) return { chunks, afterInterrupt };
      let n = 0;
      for await (const c of await e.chat.completions.create({ ...arg.long, stream: true })) { if (++n === 2) break; }
      const afterBreak = await e.chat.completions.create(arg.chat);
      const full = await e.chat.completions.create(arg.long);
      return { chunks, afterInterrupt, afterBreak, full };`, { long: REQ["long" + S], chat: REQ["chat" + S], at: mode.full ? 3 : 1, full: mode.full });
    const fin = r.chunks.at(-1);
    eq(fin.choices[0].finish_reason, "abort", "finish_reason after interruptGenerate");
    assert(r.chunks.length < expected["long" + S].usage.completion_tokens, `interrupt stopped nothing (${r.chunks.length} chunks)`);
    eq(text(r.afterInterrupt), text(expected["chat" + S]), "text after interrupt vs native");
    if (!mode.full) return;
    eq(text(r.afterBreak), text(expected["chat" + S]), "text after break vs native");
    eq(text(r.full), text(expected["long" + S]), "uninterrupted long run vs native");
  });

  await check(`[${mode.name}] WebLLM error names: unknown model, request checks in create(), lazy parameter checks`, async () => {
    const r = await run(page, `
      const out = {};
      const name = async (p) => { try { await p; return "no error"; } catch (e) { return e.name + ": " + e.message; } };
      out.unknown = await name(webllm.CreateMLCEngine("no-such-model", { appConfig: T.cfg("cache") }));
      out.notLoaded = await name(new webllm.MLCEngine().chat.completions.create({ messages: [{ role: "user", content: "x" }] }));
      out.streamOpts = await name(window.engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], stream_options: { include_usage: true } }));
      const it = await window.engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], stream: true, temperature: -1 });
      out.lazy = await name(it.next());
      out.grammar = await name(window.engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], response_format: { type: "grammar", grammar: "root ::= (" } }));
      out.schema = await name(window.engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], response_format: { type: "json_object", schema: "{not json" } }));
      out.hermesLike = await name(window.engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], response_format: { type: "json_object", schema: 42 } }));
      out.after = (await window.engine.chat.completions.create({ messages: [{ role: "user", content: "x" }], max_tokens: 2 })).choices.length;
      return out;`);
    assert(r.unknown.startsWith("ModelNotFoundError: Cannot find model record in appConfig for no-such-model."), r.unknown);
    assert(r.notLoaded.startsWith("ModelNotLoadedError: Model not loaded before trying to complete ChatCompletionRequest."), r.notLoaded);
    eq(r.streamOpts, "InvalidStreamOptionsError: Only specify stream_options when stream=True.", "stream_options");
    eq(r.lazy, "NonNegativeError: Make sure temperature >= 0.", "temperature -1 on first next()");
    assert(r.grammar.startsWith("GrammarMatcherInitError: Failed to initialize the grammar matcher for response format `grammar`: "), r.grammar);
    assert(r.schema.startsWith("GrammarMatcherInitError: Failed to initialize the grammar matcher for response format `json_object`: invalid JSON schema"), r.schema);
    assert(r.hermesLike.startsWith("GrammarMatcherInitError: "), r.hermesLike);
    eq(r.after, 1, "engine still usable after errors");
  });

  await full(`[${mode.name}] engineConfig.wasmUrl is where the engine is loaded from; a wrong one fails naming it and the fix`, async () => {
    const p = await blankPage(ctx);
    try {
      const r = await run(p, `
        const failure = async (p) => { try { await p; return "no error"; } catch (e) { return e.name + ": " + e.message; } };
        const load = (wasmUrl) => webllm.CreateMLCEngine("tiny-qwen2", { appConfig: T.cfg("cache"), device: arg.D, wasmUrl });
        const wrong = await failure(load(location.origin + "/web/tests/pages/blank.html"));
        const engine = await load(new URL("/web/pkg/mlc_wgpu_web_bg.wasm", location.origin));
        return { wrong, text: T.textOf(await T.stream(engine, arg.req)) };`, { D, req: REQ.chat });
      assert(/^Error: The mlc-wgpu engine could not be loaded from http:\/\/127\.0\.0\.1:\d+\/web\/tests\/pages\/blank\.html: .*engineConfig\.wasmUrl/.test(r.wrong), `wrong wasmUrl: ${r.wrong}`);
      eq(r.text, text(expected.chat), "text after loading from the given URL vs native");
    } finally { await p.close(); }
  });

  await check(`[${mode.name}] reload from the cache with the network blocked (new page, model requests refused)`, async () => {
    assert(loaded, "needs a cached model");
    await page.close();
    page = await blankPage(ctx);
    server.clearLog();
    server.addRule({ match: /^\/models\//, action: "block" });
    try {
      const r = await run(page, `
        const { engine, reports } = await T.load(webllm, { device: arg.D });
        window.engine = engine;
        return { reports: reports.map((x) => x.text), chunks: await T.stream(engine, arg.req) };`, { D, req: REQ["chat" + S] });
      eq(modelRequests().length, 0, "model requests during an offline reload");
      assert(!r.reports.some((t) => t.startsWith("Fetching param cache")), "no fetch reports when everything is cached");
      eq(T_text(r.chunks), text(expected["chat" + S]), "text vs native");
    } finally { server.clearRules(); }
  });

  await check(`[${mode.name}] Web Worker engine (CreateWebWorkerMLCEngine + WebWorkerMLCEngineHandler)`, async () => {
    const r = await run(page, `
      const reports = [];
      const worker = new Worker("/web/tests/pages/worker.js?device=" + arg.D, { type: "module" });
      const engine = await webllm.CreateWebWorkerMLCEngine(worker, "tiny-qwen2",
        { appConfig: T.cfg("cache"), initProgressCallback: (x) => reports.push(x.text) });
      const chunks = await T.stream(engine, arg.req);
      const nonStream = await engine.chat.completions.create(arg.req);
      let err;
      try { await engine.chat.completions.create({ messages: [] }); } catch (e) { err = e; }
      const message = await engine.getMessage();
      worker.terminate();
      return { reports, chunks, nonStream, err: typeof err === "string" ? err : "not a string: " + err, message };`, { D, req: REQ["chat" + S] });
    assert(r.reports.at(-1).startsWith("Finish loading on"), `worker progress: ${JSON.stringify(r.reports)}`);
    eq(T_text(r.chunks), text(expected["chat" + S]), "worker streamed text vs native");
    eq(text(r.nonStream), text(expected["chat" + S]), "worker non-streaming text vs native");
    assert(r.err.startsWith("TypeError"), `errors cross the worker as strings: ${r.err}`);
    eq(r.message, text(expected["chat" + S]), "getMessage via worker");
  });

  // ---- crash-resumable generation (extra_body.resumable; docs/web-migration.md, "Resumable generation")
  await full(`[${mode.name}] resumable: a greedy stream cut by a page reload after 4 chunks is listed, read back, and resumed to the native CLI's text`, async () => {
    const req = { ...REQ.long, stream: true, extra_body: { resumable: { enabled: true, sessionId: "cut-greedy" } } };
    const p = await blankPage(ctx);
    try {
      const delivered = await run(p, `
        const { engine } = await T.load(webllm, { device: arg.D });
        await engine.deleteResumableSession("cut-greedy");
        const it = (await engine.chat.completions.create(arg.req))[Symbol.asyncIterator]();
        const got = [];
        for (let i = 0; i < 4; i++) got.push((await it.next()).value);
        // The stream stays open: the reload below is the crash.
        return T.textOf(got);`, { D, req });
      await p.reload();
      const r = await run(p, `
        const { engine } = await T.load(webllm, { device: arg.D });
        const find = async () => (await engine.listResumableSessions()).find((x) => x.sessionId === "cut-greedy");
        const listed = await find();
        const readBack = await engine.resumeChatCompletion("cut-greedy");
        const chunks = [];
        for await (const c of await engine.resumeChatCompletion("cut-greedy", { continueGeneration: true, stream: true })) chunks.push(c);
        const message = await engine.getMessage();
        const finished = await find();
        const again = await engine.resumeChatCompletion("cut-greedy", { continueGeneration: true });
        await engine.deleteResumableSession("cut-greedy");
        const gone = (await find()) === undefined;
        await engine.unload();
        return { listed, readBack, chunks, message, finished, again, gone };`, { D });
      const whole = text(expected.long), usage = expected.long.usage;
      assert(delivered.length > 0 && whole.startsWith(delivered), `the 4 chunks delivered before the cut: ${JSON.stringify(delivered)}`);
      const n = r.listed?.emittedTokens;
      assert(n >= 4 && n < usage.completion_tokens, `tokens journaled for 4 chunks: ${JSON.stringify(r.listed)}`);
      eq(r.listed, { sessionId: "cut-greedy", resumable: true, modelId: "tiny-qwen2", emittedTokens: n,
        processedSeqLen: usage.prompt_tokens + n, recoveryMode: "token_replay", reason: "generation incomplete" }, "the cut session, listed");
      eq(r.readBack, { sessionId: "cut-greedy", recoveredText: delivered, emittedTokens: n, processedSeqLen: usage.prompt_tokens + n,
        replayedTokens: 0, recoveryMode: "text_only" }, "read back without continuing");
      // The resumed stream carries what follows the delivered text, and ends as the uninterrupted run.
      eq(delivered + T_text(r.chunks), whole, "delivered + resumed text vs native");
      eq(r.chunks.at(-1).choices[0].finish_reason, expected.long.choices[0].finish_reason, "the resumed stream's finish_reason");
      assert(r.chunks.every((c) => c.id === r.chunks[0].id && c.object === "chat.completion.chunk" && c.model === "tiny-qwen2"), "resumed chunk ids/objects");
      eq(r.message, whole, "getMessage() after resuming");
      eq(r.finished, { sessionId: "cut-greedy", resumable: false, modelId: "tiny-qwen2", emittedTokens: usage.completion_tokens,
        processedSeqLen: usage.prompt_tokens + usage.completion_tokens, recoveryMode: "none", reason: "generation finished" }, "the finished session, listed");
      eq(r.again, { sessionId: "cut-greedy", recoveredText: whole, emittedTokens: usage.completion_tokens,
        processedSeqLen: usage.prompt_tokens + usage.completion_tokens, replayedTokens: 0, recoveryMode: "text_only" }, "a finished session is read back, not continued");
      eq(r.gone, true, "deleteResumableSession removes it");
    } finally { await p.close(); }
  });

  await full(`[${mode.name}] resumable: a seeded sampled stream stopped by break is aborted, resumable, and continues to the native CLI's text; a finished request leaves a finished session`, async () => {
    const req = { ...REQ.sampledLong, stream: true, extra_body: { resumable: { enabled: true, sessionId: "cut-sampled", durabilityMode: "relaxed" } } };
    const r = await run(page, `
      const { engine } = await T.load(webllm, { device: arg.D });
      const find = async (id) => (await engine.listResumableSessions()).find((x) => x.sessionId === id);
      for (const id of ["cut-sampled", "done"]) await engine.deleteResumableSession(id);
      const got = [];
      for await (const c of await engine.chat.completions.create(arg.req)) { got.push(c); if (got.length === 3) break; }
      const listed = await find("cut-sampled");
      const resumed = await engine.resumeChatCompletion("cut-sampled", { continueGeneration: true });
      // Not streamed: the original request did not stream, so continuing gives a ResumeResult.
      const whole = await engine.chat.completions.create({ ...arg.plain, extra_body: { resumable: { enabled: true, sessionId: "done" } } });
      const done = await find("done");
      for (const id of ["cut-sampled", "done"]) await engine.deleteResumableSession(id);
      await engine.unload();
      return { delivered: T.textOf(got), listed, resumed, whole, done };`, { D, req, plain: REQ.long });
    const whole = text(expected.sampledLong), usage = expected.sampledLong.usage;
    assert(whole.startsWith(r.delivered) && r.delivered.length > 0, `delivered before break: ${JSON.stringify(r.delivered)}`);
    const n = r.listed?.emittedTokens;
    eq(r.listed, { sessionId: "cut-sampled", resumable: true, modelId: "tiny-qwen2", emittedTokens: n,
      processedSeqLen: usage.prompt_tokens + n, recoveryMode: "token_replay", reason: "generation aborted" }, "a stream left by break, listed");
    assert(n >= 3 && n < usage.completion_tokens, `tokens journaled for 3 chunks: ${n}`);
    eq(r.resumed, { sessionId: "cut-sampled", recoveredText: whole, emittedTokens: usage.completion_tokens,
      processedSeqLen: usage.prompt_tokens + usage.completion_tokens, replayedTokens: n, recoveryMode: "token_replay" }, "continued (seeded sampling with a penalty) vs native");
    eq(text(r.whole), text(expected.long), "a resumable non-streaming request's text vs native");
    eq(r.done, { sessionId: "done", resumable: false, modelId: "tiny-qwen2", emittedTokens: r.whole.usage.completion_tokens,
      processedSeqLen: r.whole.usage.prompt_tokens + r.whole.usage.completion_tokens, recoveryMode: "none", reason: "generation finished" }, "a finished request's session");
  });

  // The oracle here is this engine's own uninterrupted run with the journaled seed: tiny-qwen2's
  // random weights give near-uniform distributions, where the last bits of the logits (which differ
  // between the wasm and native kernels) decide some draws of a random seed.
  await full(`[${mode.name}] resumable: an unseeded stream in a Web Worker, busy for another worker while it runs, is terminated and resumes in the other worker as the uninterrupted run with the seed its journal chose`, async () => {
    const { seed: _, ...unseeded } = REQ.sampledLong;
    const req = { ...unseeded, stream: true, extra_body: { resumable: { enabled: true, sessionId: "cut-worker" } } };
    const r = await run(page, `
      const open = () => {
        const worker = new Worker("/web/tests/pages/worker.js?device=" + arg.D, { type: "module" });
        return webllm.CreateWebWorkerMLCEngine(worker, "tiny-qwen2", { appConfig: T.cfg("cache") }).then((engine) => ({ worker, engine }));
      };
      const a = await open();
      await a.engine.deleteResumableSession("cut-worker");
      const it = (await a.engine.chat.completions.create(arg.req))[Symbol.asyncIterator]();
      const got = [];
      for (let i = 0; i < 3; i++) got.push((await it.next()).value);
      const b = await open();
      // Worker a's generation still holds the session (a Web Lock of the origin).
      let busy;
      try { await b.engine.resumeChatCompletion("cut-worker", { continueGeneration: true }); busy = "resolved"; } catch (e) { busy = e; }
      a.worker.terminate(); // the crash; it also frees the lock
      const listed = (await b.engine.listResumableSessions()).find((x) => x.sessionId === "cut-worker");
      const chunks = [];
      for await (const c of await b.engine.resumeChatCompletion("cut-worker", { continueGeneration: true, stream: true })) chunks.push(c);
      const message = await b.engine.getMessage();
      // The seed the journal chose for the unseeded request (its first record is the request as run).
      const dir = await (await (await (await navigator.storage.getDirectory()).getDirectoryHandle("webllm-resume"))
        .getDirectoryHandle("sessions")).getDirectoryHandle("cut-worker");
      const begin = JSON.parse((await (await (await dir.getFileHandle("journal.jsonl")).getFile()).text()).split("\\n")[0]);
      await b.engine.deleteResumableSession("cut-worker");
      const { extra_body, ...plain } = arg.req;
      const uncut = await b.engine.chat.completions.create({ ...plain, stream: false, seed: begin.request.seed });
      b.worker.terminate();
      return { delivered: T.textOf(got), listed, chunks, message, seed: begin.request.seed, busy, uncut };`, { D, req });
    eq(r.busy, "Error: Resumable session is already active: cut-worker", "continuing a session another worker writes");
    assert(Number.isInteger(r.seed) && r.seed >= 0 && r.seed < 2147483647, `journaled seed: ${r.seed}`);
    eq(r.listed?.reason, "generation incomplete", "the terminated worker's session");
    const want = text(r.uncut);
    eq(r.message, want, "the resumed reply vs an uninterrupted run with the journaled seed");
    // The stream carries all of it but an unfinished character at the very end (any stream holds one back).
    const streamed = r.delivered + T_text(r.chunks);
    assert(want.startsWith(streamed) && /^\uFFFD*$/.test(want.slice(streamed.length)),
      `delivered + resumed stream ${JSON.stringify(streamed)} vs the uninterrupted run ${JSON.stringify(want)}`);
  });

  await full(`[${mode.name}] resumable: WebLLM's errors for bad session ids, unknown sessions, a taken id, n > 1, grammars, checkpointIntervalTokens and text completions`, async () => {
    const r = await run(page, `
      const attempt = async (f) => { try { const v = await f(); return "resolved " + JSON.stringify(v ?? null); } catch (e) { return e.name + ": " + e.message; } };
      const { engine } = await T.load(webllm, { device: arg.D });
      const resumable = (extra) => ({ extra_body: { resumable: { enabled: true, ...extra } } });
      await engine.deleteResumableSession("dup");
      const out = {
        notFound: await attempt(() => engine.resumeChatCompletion("no-such-session", { continueGeneration: true })),
        slash: await attempt(() => engine.resumeChatCompletion("a/b")),
        dots: await attempt(() => engine.deleteResumableSession("..")),
        empty: await attempt(() => engine.chat.completions.create({ ...arg.chat, ...resumable({ sessionId: "" }) })),
        deleteUnknown: await attempt(() => engine.deleteResumableSession("no-such-session")),
        n2: await attempt(() => engine.chat.completions.create({ ...arg.chat, n: 2, ...resumable({}) })),
        grammar: await attempt(() => engine.chat.completions.create({ ...arg.grammar, ...resumable({}) })),
        zero: await attempt(() => engine.chat.completions.create({ ...arg.chat, ...resumable({ checkpointIntervalTokens: 0 }) })),
        fraction: await attempt(() => engine.chat.completions.create({ ...arg.chat, ...resumable({ checkpointIntervalTokens: 1.5 }) })),
        completion: await attempt(() => engine.completions.create({ ...arg.completion, ...resumable({}) })),
        first: (await attempt(() => engine.chat.completions.create({ ...arg.chat, ...resumable({ sessionId: "dup" }) }))).slice(0, 8),
        taken: await attempt(async () => { for await (const c of await engine.chat.completions.create({ ...arg.chat, stream: true, ...resumable({ sessionId: "dup" }) })) void c; }),
        disabled: await attempt(() => engine.chat.completions.create({ ...arg.chat, extra_body: { resumable: { enabled: false, sessionId: "off" } } })),
      };
      out.sessions = (await engine.listResumableSessions()).map((x) => x.sessionId);
      await engine.deleteResumableSession("dup");
      await engine.unload();
      return out;`, { D, chat: REQ.chat, grammar: REQ.grammar, completion: REQ.completion });
    eq(r.notFound, "Error: Resumable session not found: no-such-session", "an unknown session");
    eq(r.slash, "Error: Invalid resumable session id: a/b", "a session id with a slash");
    eq(r.dots, "Error: Invalid resumable session id: ..", "deleting '..'");
    eq(r.empty, "Error: Invalid resumable session id: ", "an empty session id");
    eq(r.deleteUnknown, "resolved null", "deleting an unknown session");
    eq(r.n2, "Error: Resumable generation currently requires n <= 1.", "n: 2");
    eq(r.grammar, "Error: Resumable generation does not support grammar-constrained response formats.", "a grammar");
    eq(r.zero, "Error: resumable.checkpointIntervalTokens must be positive.", "checkpointIntervalTokens: 0");
    eq(r.fraction, "Error: resumable.checkpointIntervalTokens must be an integer.", "checkpointIntervalTokens: 1.5");
    assert(/^UnsupportedFieldsError: .*extra_body\.resumable/s.test(r.completion), r.completion);
    eq(r.first, "resolved", "the first request with sessionId dup");
    eq(r.taken, "ResumableSessionExistsError: Resumable session already exists: dup", "a second request with the same sessionId");
    assert(r.disabled.startsWith("resolved"), r.disabled);
    eq(r.sessions.includes("off"), false, "enabled: false journals nothing");
  });

  await full(`[${mode.name}] service worker engine (CreateServiceWorkerMLCEngine + ServiceWorkerMLCEngineHandler)`, async () => {
    const r = await run(page, `
      const reg = await navigator.serviceWorker.register("/web/tests/pages/sw.js?device=" + arg.D, { type: "module", scope: "/web/tests/pages/" });
      if (!navigator.serviceWorker.controller) {
        await new Promise((res) => navigator.serviceWorker.addEventListener("controllerchange", res, { once: true }));
      }
      const engine = await webllm.CreateServiceWorkerMLCEngine("tiny-qwen2", { appConfig: T.cfg("cache") });
      const chunks = await T.stream(engine, arg.req);
      await reg.unregister();
      return { chunks };`, { D, req: REQ["chat" + S] });
    eq(T_text(r.chunks), text(expected["chat" + S]), "service worker streamed text vs native");
  });

  await check(`[${mode.name}] a page written for WebLLM (only the import line changed) runs unchanged`, async () => {
    const p = await ctx.newPage();
    const u = new URL(`${ORIGIN}/web/tests/pages/webllm-app.html`);
    u.searchParams.set("model_id", "tiny-qwen2-app");
    u.searchParams.set("model_path", "/models/tiny-qwen2/");
    u.searchParams.set("prompt", REQ["app" + S].messages[1].content);
    u.searchParams.set("max_tokens", String(REQ["app" + S].max_tokens));
    await p.goto(u.href);
    await withTimeout(p.waitForSelector("body[data-status]", { timeout: 0 }), 300, "webllm app");
    const r = await p.evaluate(() => window.result);
    await p.close();
    assert(!r.error, r.error);
    eq(r.reply, text(expected["app" + S]), "app reply vs native");
    eq(r.fullReply, text(expected["app" + S]), "getMessage in app");
    eq(r.usage.completion_tokens, expected["app" + S].usage.completion_tokens, "usage");
    eq(r.cached, true, "hasModelInCache in app");
  });

  await closeContext(ctx);

  if (mode.backend === "webgpu") {
    await check(`[${mode.name}] a lost GPU device fails the request with DeviceLostError; reload() recovers, equal to a fresh run`, async () => {
      const c2 = await newContext(mode);
      try {
        const p = await blankPage(c2);
        const r = await run(p, `
          // The page keeps every GPUDevice the engine asks for (no hook in the product code).
          const devices = [];
          const requestDevice = GPUAdapter.prototype.requestDevice;
          GPUAdapter.prototype.requestDevice = async function (...args) {
            const device = await requestDevice.apply(this, args);
            devices.push(device);
            return device;
          };
          const failure = async (p) => { try { await p; return "no error"; } catch (e) { return e.name + ": " + e.message; } };
          const { engine } = await T.load(webllm, { device: arg.D });
          const loadedDevices = devices.length;
          devices.at(-1).destroy();
          const lostReason = (await devices.at(-1).lost).reason;
          const lost = await failure(engine.chat.completions.create(arg.req));
          const after = await failure(engine.chat.completions.create(arg.req));
          await engine.reload("tiny-qwen2");
          const reloaded = await engine.chat.completions.create(arg.req);
          const streamed = T.textOf(await T.stream(engine, arg.req));
          return { loadedDevices, devices: devices.length, lostReason, lost, after, reloaded, streamed };`, { D, req: REQ["chat" + S] });
        eq(r.loadedDevices, 1, "devices the first load asked for");
        eq(r.lostReason, "destroyed", "the device's lost reason");
        assert(r.lost.startsWith("DeviceLostError: GPU device lost"), `request on the lost device: ${r.lost}`);
        assert(r.after.startsWith("ModelNotLoadedError"), `the next request, as in WebLLM after a device loss: ${r.after}`);
        eq(r.devices, 2, "reload() asked for a new device");
        eq(text(r.reloaded), text(expected["chat" + S]), "text after reload vs native");
        eq(r.streamed, text(expected["chat" + S]), "streamed text after reload vs native");
      } finally { await closeContext(c2); }
    });
  }

  await full(`[${mode.name}] interoperability: caches filled the way WebLLM fills them are used offline (Cache API and IndexedDB)`, async () => {
    const c2 = await newContext(mode);
    try {
      const p = await blankPage(c2);
      const files = ["mlc-chat-config.json", "tokenizer.json", "tensor-cache.json", "params_shard_0.bin"];
      // WebLLM: Cache API entries made by cache.add(url); IndexedDB {url, data} with JSON files parsed.
      await run(p, `
        const base = location.origin + "/models/tiny-qwen2/resolve/main/";
        await (await caches.open("webllm/config")).add(base + "mlc-chat-config.json");
        const m = await caches.open("webllm/model");
        for (const f of arg.files.slice(1)) await m.add(base + f);
        const idb = (scope) => new Promise((res, rej) => { const q = indexedDB.open(scope, 1);
          q.onupgradeneeded = () => q.result.createObjectStore("urls", { keyPath: "url" });
          q.onsuccess = () => res(q.result); q.onerror = () => rej(q.error); });
        const put = (db, v) => new Promise((res, rej) => { const t = db.transaction("urls", "readwrite");
          t.objectStore("urls").put(v); t.oncomplete = res; t.onerror = () => rej(t.error); });
        for (const f of arg.files) {
          const db = await idb(f === "mlc-chat-config.json" ? "webllm/config" : "webllm/model");
          const r = await fetch(base + f);
          await put(db, { url: base + f, data: f.endsWith(".json") && f !== "tokenizer.json" ? await r.json() : await r.arrayBuffer() });
        }`, { files });
      server.clearLog();
      server.addRule({ match: /^\/models\//, action: "block" });
      try {
        const r = await run(p, `
          const out = {};
          for (const backend of ["cache", "indexeddb"]) {
            const { engine } = await T.load(webllm, { device: arg.D, backend });
            out[backend] = T.textOf(await T.stream(engine, arg.req));
            await engine.unload();
          }
          return out;`, { D, req: REQ["chat" + S] });
        eq(modelRequests().length, 0, "model requests");
        eq(r.cache, text(expected["chat" + S]), "Cache API text vs native");
        eq(r.indexeddb, text(expected["chat" + S]), "IndexedDB text vs native");
      } finally { server.clearRules(); }
    } finally { await closeContext(c2); }
  });

  await check(`[${mode.name}] md5: a shard mlc-wgpu stored carries the md5 it was checked against; a damaged one WebLLM stored is refused`, async () => {
    const c2 = await newContext(mode);
    try {
      const p = await blankPage(c2);
      const r = await run(p, `
        const shardUrl = location.origin + "/models/tiny-qwen2/resolve/main/params_shard_0.bin";
        const { engine } = await T.load(webllm, { device: arg.D });
        await engine.unload();
        const model = await caches.open("webllm/model");
        const stored = (await model.match(shardUrl)).headers.get("X-Mlc-Wgpu-Md5");
        // WebLLM's cache.add stores the bytes with no md5: one bit flipped, the size unchanged.
        const bytes = new Uint8Array(await (await fetch(shardUrl)).arrayBuffer());
        bytes[bytes.length >> 1] ^= 0x40;
        await model.put(shardUrl, new Response(bytes));
        let damaged = "loaded";
        try { await T.load(webllm, { device: arg.D }); } catch (e) { damaged = String(e?.message ?? e); }
        return { stored, damaged };`, { D });
      eq(r.stored, tinyIndex.records[0].md5sum, "the md5 stored with the shard");
      assert(/params_shard_0\.bin: md5 [0-9a-f]{32} does not match the index/.test(r.damaged), `damaged shard: ${r.damaged}`);
    } finally { await closeContext(c2); }
  });

  await full(`[${mode.name}] IndexedDB entries written by mlc-wgpu have WebLLM's shape`, async () => {
    const c2 = await newContext(mode);
    try {
      const p = await blankPage(c2);
      const r = await run(p, `
        const { engine } = await T.load(webllm, { device: arg.D, backend: "indexeddb" });
        await engine.unload();
        const base = location.origin + "/models/tiny-qwen2/resolve/main/";
        const get = (scope, url) => new Promise((res, rej) => { const q = indexedDB.open(scope, 1);
          q.onsuccess = () => { const g = q.result.transaction("urls").objectStore("urls").get(url);
            g.onsuccess = () => res(g.result); g.onerror = () => rej(g.error); }; q.onerror = () => rej(q.error); });
        const cfg = await get("webllm/config", base + "mlc-chat-config.json");
        const idx = await get("webllm/model", base + "tensor-cache.json");
        const shard = await get("webllm/model", base + "params_shard_0.bin");
        return { cfgType: typeof cfg.data, modelType: cfg.data.model_type, records: idx.data.records.length,
                 shardIsBuffer: shard.data instanceof ArrayBuffer, shardBytes: shard.data.byteLength, url: shard.url,
                 has: await webllm.hasModelInCache("tiny-qwen2", T.cfg("indexeddb")),
                 hasCacheApi: await webllm.hasModelInCache("tiny-qwen2", T.cfg("cache")) };`, { D });
      eq(r.cfgType, "object", "config stored parsed");
      eq(r.modelType, "qwen2", "config content");
      eq(r.records, tinyIndex.records.length, "tensor-cache stored parsed");
      eq(r.shardIsBuffer, true, "shard stored as ArrayBuffer");
      eq(r.shardBytes, tinyIndex.records[0].nbytes, "shard size");
      eq(r.has, true, "hasModelInCache(indexeddb)");
      eq(r.hasCacheApi, false, "the Cache API backend stayed empty");
    } finally { await closeContext(c2); }
  });

  await full(`[${mode.name}] cacheBackend "opfs": WebLLM's OPFS layout, used offline; "cross-origin" falls back to the Cache API with WebLLM's warning`, async () => {
    const c2 = await newContext(mode);
    try {
      const p = await blankPage(c2);
      const warnings = [];
      p.on("console", (m) => { if (m.type() === "warning") warnings.push(m.text()); });
      const r = await run(p, `
        const { engine } = await T.load(webllm, { device: arg.D, backend: "opfs" });
        const first = T.textOf(await T.stream(engine, arg.req));
        await engine.unload();
        const url = location.origin + "/models/tiny-qwen2/resolve/main/params_shard_0.bin";
        const hex = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(url))),
          (b) => b.toString(16).padStart(2, "0")).join("");
        let dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("tvmjs-opfs-store");
        dir = await (await dir.getDirectoryHandle("webllm")).getDirectoryHandle("model");
        const record = JSON.parse(await (await (await dir.getFileHandle(hex + ".record.json")).getFile()).text());
        const payload = (await (await dir.getFileHandle(hex + ".bin")).getFile()).size;
        const has = await webllm.hasModelInCache("tiny-qwen2", T.cfg("opfs"));
        const hasCacheApi = await webllm.hasModelInCache("tiny-qwen2", T.cfg("cache"));
        const { engine: fallback } = await T.load(webllm, { device: arg.D, backend: "cross-origin" });
        await fallback.unload();
        return { first, record, payload, has, hasCacheApi,
                 fallbackInCacheApi: await webllm.hasModelInCache("tiny-qwen2", T.cfg("cache")) };`, { D, req: REQ["chat" + S] });
      eq(r.first, text(expected["chat" + S]), "text vs native");
      eq(r.record.url.endsWith("/models/tiny-qwen2/resolve/main/params_shard_0.bin"), true, "record url");
      eq(r.record.nbytes, tinyIndex.records[0].nbytes, "record nbytes");
      eq(r.payload, tinyIndex.records[0].nbytes, "payload size");
      eq(r.has, true, "hasModelInCache(opfs)");
      eq(r.hasCacheApi, false, "the Cache API backend stayed empty");
      eq(r.fallbackInCacheApi, true, "cross-origin stored in the Cache API");
      assert(warnings.includes("Cross-origin storage backend is unavailable; falling back to ArtifactCache."), JSON.stringify(warnings));
      // Offline, in a new page: everything comes from OPFS.
      const p2 = await blankPage(c2);
      server.clearLog();
      server.addRule({ match: /^\/models\//, action: "block" });
      try {
        const again = await run(p2, `
          const { engine } = await T.load(webllm, { device: arg.D, backend: "opfs" });
          const text = T.textOf(await T.stream(engine, arg.req));
          await engine.unload();
          return text;`, { D, req: REQ["chat" + S] });
        eq(again, text(expected["chat" + S]), "offline text from OPFS");
      } finally { server.clearRules(); }
      eq(modelRequests().length, 0, "model requests during the offline reloads");
    } finally { await closeContext(c2); }
  });

  await full(`[${mode.name}] a download cut midway resumes with Range; a failing one leaves no cache entry`, async () => {
    const c2 = await newContext(mode);
    try {
      const p = await blankPage(c2);
      server.clearLog();
      server.addRule({ match: /params_shard_0\.bin$/, action: "cut", afterBytes: 1 << 20, times: 1 });
      const r = await run(p, `
        const { engine } = await T.load(webllm, { device: arg.D });
        const text = T.textOf(await T.stream(engine, arg.req));
        await engine.unload();
        const m = await caches.open("webllm/model");
        const shard = await m.match(location.origin + "/models/tiny-qwen2/resolve/main/params_shard_0.bin");
        return { text, size: (await shard.arrayBuffer()).byteLength };`, { D, req: REQ["chat" + S] });
      server.clearRules();
      const shardReqs = server.requests().filter((q) => q.path.endsWith("params_shard_0.bin"));
      eq(shardReqs.length, 2, "shard requests (cut + resumed)");
      assert(/^bytes=\d+-$/.test(shardReqs[1].range ?? "") && shardReqs[1].status === 206, `resumed request: ${JSON.stringify(shardReqs[1])}`);
      eq(r.size, tinyIndex.records[0].nbytes, "cached shard size");
      eq(r.text, text(expected["chat" + S]), "text vs native");

      // Now a download that always breaks: reload fails with a clear error and caches no shard.
      const p2 = await blankPage(c2);
      await run(p2, `await webllm.deleteModelAllInfoInCache("tiny-qwen2", T.cfg("cache"));`);
      server.addRule({ match: /params_shard_0\.bin$/, action: "cut", afterBytes: 100000 });
      const r2 = await run(p2, `
        let err;
        try { await T.load(webllm, { device: arg.D }); } catch (e) { err = e.name + ": " + e.message; }
        const keys = (await (await caches.open("webllm/model")).keys()).map((q) => q.url);
        return { err, keys, has: await webllm.hasModelInCache("tiny-qwen2", T.cfg("cache")) };`, { D }, 120);
      server.clearRules();
      assert(r2.err && r2.err.startsWith("DownloadError: Failed to download") && r2.err.includes("params_shard_0.bin"), `error: ${r2.err}`);
      eq(r2.keys.some((k) => k.endsWith("params_shard_0.bin")), false, "no shard entry after a failed download");
      eq(r2.has, false, "hasModelInCache after a failed download");
    } finally { server.clearRules(); await closeContext(c2); }
  });

  await full(`[${mode.name}] storage quota exceeded gives a clear error with sizes`, async () => {
    const c2 = await newContext(mode);
    try {
      const p = await blankPage(c2);
      const cdp = await c2.newCDPSession(p);
      await cdp.send("Storage.overrideQuotaForOrigin", { origin: ORIGIN, quotaSize: 2 * 1048576 });
      const r = await run(p, `
        try { await T.load(webllm, { device: arg.D }); return "no error"; } catch (e) { return e.name + ": " + e.message; }`, { D });
      // (Chromium's navigator.storage.estimate() ignores the CDP override, so the figures are not asserted.)
      assert(/^QuotaExceededError: Not enough storage to cache http:\/\/127\.0\.0\.1:\d+\/models\/tiny-qwen2\/resolve\/main\/\S+ \(\d+\.\d MB\): .*deleteModelAllInfoInCache/.test(r), `error: ${r}`);
    } finally { await closeContext(c2); }
  });

  if (haveSmol) {
    await check(`[${mode.name}] SmolLM2-135M (the default model) through the JS API equals the native CLI`, async () => {
      const c2 = await newContext(mode);
      try {
        const p = await blankPage(c2);
        const r = await run(p, `
          const { engine, reports } = await T.load(webllm, { device: arg.D, id: arg.id });
          return { text: T.textOf(await T.stream(engine, arg.req)), last: reports.at(-1).text };`,
        { D, id: SMOL_ID, req: S ? SMOL_REQ_SHORT : SMOL_REQ }, 590);
        eq(r.text, text(expected["smol" + S]), "SmolLM2 text vs native");
      } finally { await closeContext(c2); }
    });
  } else {
    skip(`[${mode.name}] SmolLM2-135M through the JS API`, `artifact not found at ${smolDir} (set MLC_WGPU_SMOLLM2_DIR or run the default-model import)`);
  }

  await check(`[${mode.name}] demo page: picks a local model, streams an answer, says where it runs, keeps the chat and reloads the cached model (screenshots in web/tests/out/)`, async () => {
    const c2 = await newContext(mode);
    try {
      const p = await c2.newPage();
      await p.setViewportSize({ width: 1000, height: 760 });
      await p.goto(`${ORIGIN}/demo/`);
      await p.waitForSelector("#model option", { state: "attached" });
      const id = haveSmol ? SMOL_ID : "tiny-qwen2";
      await p.selectOption("#model", { value: id });
      await p.selectOption("#device", { value: D });
      await p.fill("#max-tokens", String(mode.full ? 8 : 2));
      await p.click("#load");
      await withTimeout(p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo load");
      // The device note repeats the engine's verdict (its progress reports), with the fix on the CPU fallback.
      const gpuNote = await p.textContent("#gpu-status");
      if (mode.backend === "cpu") {
        assert(/WebGPU is not available in this browser: running on the CPU engine/.test(gpuNote) && /Chrome or Edge 113\+/.test(gpuNote) &&
          await p.$eval("#gpu-status", (e) => e.classList.contains("warn")), `CPU fallback note: ${gpuNote}`);
      } else {
        assert(/^Running on WebGPU - /.test(gpuNote), `WebGPU note: ${gpuNote}`);
      }
      const marked = await p.$eval("#model", (s) => s.selectedOptions[0].textContent);
      assert(marked.endsWith(" · in the browser cache"), `picker entry after the download: ${marked}`);
      await p.fill("#prompt", haveSmol ? SMOL_REQ.messages[0].content : REQ["chat" + S].messages[0].content);
      await p.click("#send");
      await withTimeout(p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo answer");
      const answer = await p.textContent(".msg.assistant:last-child .body");
      const stats = await p.textContent("#stats");
      const replyStats = await p.textContent(".msg.assistant:last-child .reply-stats");
      await p.screenshot({ path: path.join(outDir, `demo-${mode.name}.png`) });
      assert(answer.trim().length > 0, "empty answer");
      assert(/decode [\d.]+ tok\/s/.test(stats) && /prefill [\d.]+ tok\/s/.test(stats), `stats: ${stats}`);
      assert(/^[\d.]+ tok\/s · \d+ tokens · /.test(replyStats), `per-reply stats: ${replyStats}`);

      // Reloaded: the same model is picked and, being cached, loaded without pressing Load; the chat is back.
      const served = modelRequests().length;
      await p.reload();
      await withTimeout(p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo reload (cached model loads by itself)");
      eq(await p.inputValue("#model"), id, "model picked after reload");
      // The picker: the local model marked as cached, WebLLM's prebuilt records with their sizes.
      const picker = await p.$$eval("#model option", (os) => os.map((o) => o.textContent));
      assert(picker.some((t) => t.startsWith(id) && t.endsWith(" · in the browser cache")), `cached mark: ${picker.filter((t) => t.startsWith(id))}`);
      assert(picker.includes("Llama-3.2-1B-Instruct-q4f16_1-MLC · needs ~879 MB of GPU memory"), `prebuilt record with size: ${picker.slice(0, 6)}`);
      assert(!picker.some((t) => t.startsWith("snowflake-arctic-embed")), "embedding models offered for chat");
      eq(await p.$$eval(".msg", (ms) => ms.map((m) => m.className)), ["msg user", "msg assistant"], "messages after reload");
      eq(await p.textContent(".msg.assistant .body"), answer, "reply after reload");
      eq(await p.textContent(".msg.assistant .reply-stats"), replyStats, "per-reply stats after reload");
      eq(modelRequests().length, served, "model files fetched again on reload (should come from the cache)");

      // Markdown: code blocks and lists become elements; raw HTML, images and javascript: links in model
      // output stay inert text. Rendered from a stored reply, through the same function as a streamed one.
      const md = "Here:\n\n```js\nconst x = 1 < 2;\n```\n\n- one\n- **two**\n\n<img src=x onerror=alert(1)><script>alert(2)</script>\n\n" +
        "![pic](http://example.invalid/p.png) [bad](javascript:alert(3)) [good](https://example.invalid/)";
      await p.evaluate(([key, md]) => localStorage.setItem(key, JSON.stringify([{ role: "user", content: "<b>hi</b>" }, { role: "assistant", content: md }])),
        [`mlc-wgpu-demo:chat:${id}`, md]);
      await p.reload();
      await withTimeout(p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo reload with Markdown");
      const r = await p.$eval("#messages", (m) => ({
        code: m.querySelector(".msg.assistant pre > code")?.textContent,
        codeClass: m.querySelector(".msg.assistant pre > code")?.className,
        items: [...m.querySelectorAll(".msg.assistant li")].map((li) => li.innerHTML),
        img: m.querySelectorAll("img, script, b").length,
        links: [...m.querySelectorAll("a")].map((a) => a.getAttribute("href")),
        text: m.querySelector(".msg.assistant .body").textContent,
        user: m.querySelector(".msg.user .body").textContent,
      }));
      await p.screenshot({ path: path.join(outDir, `demo-${mode.name}-markdown.png`) });
      eq(r.code, "const x = 1 < 2;\n", "code block");
      eq(r.codeClass, "language-js", "code block language");
      eq(r.items, ["one", "<strong>two</strong>"], "list items");
      eq(r.img, 0, "elements from raw HTML or images in model output");
      eq(r.links, ["https://example.invalid/"], "links kept");
      assert(r.text.includes("<img src=x onerror=alert(1)>") && r.text.includes("<script>alert(2)</script>") && r.text.includes("pic"), `escaped text: ${r.text}`);
      eq(r.user, "<b>hi</b>", "user text shown as typed");

      // New chat clears the conversation, also after a reload.
      await p.click("#reset");
      eq(await p.$$eval(".msg", (ms) => ms.length), 0, "messages after New chat");
      await p.reload();
      await withTimeout(p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo reload after New chat");
      eq(await p.$$eval(".msg", (ms) => ms.length), 0, "messages after New chat and reload");
    } finally { await closeContext(c2); }
  });

  if (mode.name === "webgpu") {
    await check(`[${mode.name}] demo page: "auto" on the software adapter runs on the CPU engine and says so with the fix`, async () => {
      const c2 = await newContext(mode);
      try {
        const p = await c2.newPage();
        await p.goto(`${ORIGIN}/demo/`);
        await p.waitForSelector("#model option", { state: "attached" });
        await p.selectOption("#model", { value: "tiny-qwen2" });
        await p.selectOption("#device", { value: "auto" });
        await p.click("#load");
        await withTimeout(p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo load");
        const note = await p.textContent("#gpu-status");
        assert(/software renderer \(SwiftShader\).*running on the CPU engine/.test(note) && /Chrome or Edge 113\+/.test(note), `note: ${note}`);
        assert(/on CPU/.test(await p.textContent("#status")), `status: ${await p.textContent("#status")}`);
      } finally { await closeContext(c2); }
    });
  }
}

// ---------------------------------------------------------------- the CPU engine's threads
// A worker of a page served with COOP/COEP runs the threaded module (web/pkg-threads) on a pool of
// Web Workers; every other context runs the single-thread module. Same greedy text either way.
if (runThreads) {
  console.log("\n== browser: threads (no WebGPU; the CPU engine in workers, with and without COOP/COEP)");
  const mode = { name: "threads", args: BASE_ARGS };
  if (!fs.existsSync(path.join(pkgThreadsDir, "mlc_wgpu_web_bg.wasm"))) {
    bad("[threads] the threaded module", `missing in ${pkgThreadsDir}; run scripts/build-web.sh --threads (scripts/test-web.sh does)`);
  }
  const ctx = await newContext(mode);
  // Loads tiny-qwen2 in a worker of a page on `origin` (`threads`: the worker's cpuThreads, "" for
  // the default) and answers the chat and the long request; also says whether the page is isolated.
  const inWorker = async (origin, threads) => {
    const p = await blankPage(ctx, origin);
    try {
      return await run(p, `
        const reports = [];
        const worker = new Worker("/web/tests/pages/worker.js?device=cpu&threads=" + arg.threads, { type: "module" });
        const engine = await webllm.CreateWebWorkerMLCEngine(worker, "tiny-qwen2",
          { appConfig: T.cfg("cache"), initProgressCallback: (x) => reports.push(x.text) });
        const chat = T.textOf(await T.stream(engine, arg.chat));
        const long = (await engine.chat.completions.create(arg.long)).choices[0].message.content;
        worker.terminate();
        return { isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency, last: reports.at(-1), chat, long };`,
      { threads, chat: REQ.chat, long: REQ.long });
    } finally { await p.close(); }
  };
  const threadedFetched = (s) => s.requests().some((r) => r.path === "/web/pkg-threads/mlc_wgpu_web_bg.wasm" && r.status === 200);
  const singleFetched = (s) => s.requests().some((r) => r.path === "/web/pkg/mlc_wgpu_web_bg.wasm");
  let single;

  await check("[threads] a worker of a page without COOP/COEP runs one thread (the single-thread module) with the native CLI's greedy text", async () => {
    server.clearLog();
    single = await inWorker(ORIGIN, "2");
    eq(single.isolated, false, "crossOriginIsolated without the headers");
    eq(single.last, 'Finish loading on CPU, 1 thread (device: "cpu")', "final report");
    assert(!threadedFetched(server), "the threaded module was fetched by a page that cannot use it");
    eq(single.chat, text(expected.chat), "streamed chat vs native");
    eq(single.long, text(expected.long), "long request vs native");
  });

  await check("[threads] a worker of a page with COOP/COEP runs the threaded module on 2 threads with the single-thread run's greedy text", async () => {
    isolatedServer.clearLog();
    const r = await inWorker(ISOLATED_ORIGIN, "2");
    eq(r.isolated, true, "crossOriginIsolated with the headers");
    eq(r.last, 'Finish loading on CPU, 2 threads (device: "cpu")', `final report (logs: ${JSON.stringify(ctx.logs.filter((l) => /mlc-wgpu|error/i.test(l)))})`);
    assert(threadedFetched(isolatedServer), "the threaded module was not fetched");
    assert(!singleFetched(isolatedServer), "the single-thread module was fetched too (one module is enough)");
    eq(r.chat, text(expected.chat), "streamed chat vs native");
    eq(r.long, text(expected.long), "long request vs native");
    if (single) eq([r.chat, r.long], [single.chat, single.long], "threaded vs single-thread texts");
  });

  await check("[threads] by default the isolated worker takes navigator.hardwareConcurrency threads", async () => {
    const r = await inWorker(ISOLATED_ORIGIN, "");
    const want = r.cores > 1 ? `${r.cores} threads` : "1 thread";
    eq(r.last, `Finish loading on CPU, ${want} (device: "cpu")`, "final report");
    eq(r.chat, text(expected.chat), "streamed chat vs native");
  });

  await check("[threads] an isolated page's main thread (which may not block on a pool) runs one thread", async () => {
    const p = await blankPage(ctx, ISOLATED_ORIGIN);
    try {
      isolatedServer.clearLog();
      const r = await run(p, `
        const reports = [];
        const engine = await webllm.CreateMLCEngine("tiny-qwen2", { appConfig: T.cfg("cache"), device: "cpu", cpuThreads: 2,
          initProgressCallback: (x) => reports.push(x.text) });
        const chat = T.textOf(await T.stream(engine, arg.chat));
        await engine.unload();
        return { isolated: crossOriginIsolated, last: reports.at(-1), chat };`, { chat: REQ.chat });
      eq(r.isolated, true, "crossOriginIsolated with the headers");
      eq(r.last, 'Finish loading on CPU, 1 thread (device: "cpu")', "final report");
      assert(!threadedFetched(isolatedServer), "the main thread fetched the threaded module");
      eq(r.chat, text(expected.chat), "streamed chat vs native");
    } finally { await p.close(); }
  });

  await check("[threads] a threaded module that fails to load falls back to one thread, with a warning, and still answers", async () => {
    isolatedServer.addRule({ match: /^\/web\/pkg-threads\/mlc_wgpu_web_bg\.wasm$/, action: "status", status: 404 });
    const before = ctx.logs.length;
    try {
      const r = await inWorker(ISOLATED_ORIGIN, "2");
      eq(r.isolated, true, "crossOriginIsolated with the headers");
      eq(r.last, 'Finish loading on CPU, 1 thread (device: "cpu")', "final report");
      eq(r.chat, text(expected.chat), "streamed chat vs native");
      const warned = ctx.logs.slice(before).some((l) => /^\[warning\].*threaded CPU module could not be started/.test(l));
      assert(warned, `no warning logged: ${JSON.stringify(ctx.logs.slice(before))}`);
    } finally { isolatedServer.clearRules(); }
  });

  // The demo page (its engine in a worker, demo/worker.js) on the CPU engine: threads where the page
  // is isolated (scripts/demo.sh serves it so), one thread where it is not; the greedy model's
  // answer is the native CLI's either way. Returns the page, ready, for further steps.
  const demoAnswer = async (c, s, origin) => {
    const p = await c.newPage();
    await p.goto(`${origin}/demo/`);
    await p.waitForSelector("#model option", { state: "attached" });
    await p.selectOption("#model", { value: "tiny-qwen2-greedy" });
    await p.selectOption("#device", { value: "cpu" });
    await p.fill("#max-tokens", String(REQ.chat.max_tokens));
    s.clearLog();
    await p.click("#load");
    await withTimeout(p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo load");
    const loaded = await p.textContent("#status");
    await p.fill("#prompt", REQ.chat.messages[0].content);
    await p.click("#send");
    await withTimeout(p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo answer");
    return {
      p, loaded, answer: await p.textContent(".msg.assistant:last-child .body"), replyStats: await p.textContent(".msg.assistant:last-child .reply-stats"),
      isolated: await p.evaluate(() => crossOriginIsolated), cores: await p.evaluate(() => navigator.hardwareConcurrency),
    };
  };

  await check("[threads] the demo page served without COOP/COEP runs its worker's CPU engine on one thread with the native CLI's greedy text", async () => {
    const c = await newContext(mode);
    try {
      const r = await demoAnswer(c, server, ORIGIN);
      eq(r.isolated, false, "crossOriginIsolated without the headers");
      eq(r.loaded, 'Loaded tiny-qwen2-greedy on CPU, 1 thread (device: "cpu").', "status after load");
      assert(!threadedFetched(server), "the threaded module was fetched by a page that cannot use it");
      eq(r.answer.trim(), text(expected.chat).trim(), "demo answer vs native");
    } finally { await closeContext(c); }
  });

  await check("[threads] the demo page served with COOP/COEP runs its worker's CPU engine on navigator.hardwareConcurrency threads with the native CLI's greedy text, and Stop interrupts it", async () => {
    const c = await newContext(mode);
    try {
      const r = await demoAnswer(c, isolatedServer, ISOLATED_ORIGIN);
      eq(r.isolated, true, "crossOriginIsolated with the headers");
      assert(r.cores > 1, `navigator.hardwareConcurrency is ${r.cores}: this check needs a machine with 2 cores or more`);
      eq(r.loaded, `Loaded tiny-qwen2-greedy on CPU, ${r.cores} threads (device: "cpu").`, "status after load");
      assert(threadedFetched(isolatedServer), "the threaded module was not fetched");
      eq(r.answer.trim(), text(expected.chat).trim(), "demo answer vs native");
      assert(r.replyStats.endsWith(`· CPU, ${r.cores} threads (device: "cpu")`), `per-reply stats: ${r.replyStats}`);
      await r.p.screenshot({ path: path.join(outDir, "demo-threads.png") });

      // Stop, through the worker: a long answer is cut once it has started streaming.
      await r.p.fill("#max-tokens", "2000");
      await r.p.fill("#prompt", REQ.long.messages[0].content);
      await r.p.click("#send");
      await withTimeout(r.p.waitForFunction(() => document.querySelector(".msg.assistant:last-child .body").textContent.length > 0,
        undefined, { timeout: 0 }), 590, "demo streaming");
      await r.p.click("#stop");
      await withTimeout(r.p.waitForSelector("#status[data-state=ready]", { timeout: 0 }), 590, "demo stop");
      eq(await r.p.textContent("#status"), "Stopped.", "status after Stop");
    } finally { await closeContext(c); }
  });
  await closeContext(ctx);
}

// Privacy: nothing but the model files and the module's own files (and the test pages) was requested.
await check("every request went to 127.0.0.1 and only for the module, the model files, the demo or the test pages", async () => {
  const strays = allRequests.filter((r) => {
    if (r.url.startsWith("data:") || r.url.startsWith("blob:")) return false;
    const u = new URL(r.url);
    return (u.origin !== ORIGIN && u.origin !== ISOLATED_ORIGIN) || !ALLOWED.some((re) => re.test(u.pathname));
  });
  assert(allRequests.length > 0, "no requests recorded");
  eq(strays.map((r) => `${r.mode} ${r.url}`), [], "unexpected requests");
  const modulePaths = new Set(allRequests.map((r) => new URL(r.url).pathname).filter((p) => p.startsWith("/web/")));
  assert([...modulePaths].some((p) => p.endsWith(".wasm")), "the wasm was requested from 127.0.0.1");
});

await server.close();
await isolatedServer.close();
for (const c of [...contexts]) await closeContext(c.ctx);
console.log(`\n${passed} passed, ${failed} failed, ${notRun} not run`);
if (failed) console.log(`failed: ${failures.join("; ")}`);
process.exit(failed ? 1 : 0);

function T_text(chunks) { return chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""); }
