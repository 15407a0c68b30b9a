// Node tests of the parts of the ES module that need no browser: exports, progress texts, URL
// rules, prebuilt records, error texts, MD5, request validation, resumable downloads (against the
// test server, with node's fetch) and the worker message envelope.
// Run: node --test web/tests/unit.test.mjs
// The tests that import index.js need the wasm glue web/pkg/mlc_wgpu_web.js (scripts/build-web.sh):
// the module imports it statically (service workers forbid import()).

import test from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as cfg from "../js/config.js";
import * as validate from "../js/validate.js";
import * as integrity from "../js/integrity.js";
import { fetchReport, loadReport, finishReport, startReport } from "../js/progress.js";
import { cleanModelUrl, getCacheBackend } from "../js/config.js";
import { md5Hex } from "../js/md5.js";
import { downloadFile } from "../js/cache.js";
import { chooseDevice, softwareRenderer } from "../js/device.js";
import * as E from "../js/errors.js";
import { startServer } from "./server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");

const index = () => import("../js/index.js");

test("exports the 35 runtime names of WebLLM 0.2.86", async () => {
  const webllm = await index();
  const names = `ARTIFACT_SCHEMA_VERSION MODEL_PACKAGE_MANIFEST_FILENAME TENSOR_CACHE_MANIFEST_FILENAME Chat Completions
    Embeddings MLCEngine CreateMLCEngine WebWorkerMLCEngine WebWorkerMLCEngineHandler CreateWebWorkerMLCEngine
    ServiceWorkerMLCEngine ServiceWorkerMLCEngineHandler CreateServiceWorkerMLCEngine ExtensionServiceWorkerMLCEngine
    ExtensionServiceWorkerMLCEngineHandler CreateExtensionServiceWorkerMLCEngine hasModelInCache deleteModelAllInfoInCache
    deleteModelInCache deleteChatConfigInCache deleteModelWasmInCache prebuiltAppConfig modelVersion modelLibURLPrefix
    functionCallingModelIds ModelType IntegrityError verifyIntegrity isValidSRI ChatCompletionRequestUnsupportedFields
    postInitAndCheckFieldsChatCompletion postInitAndCheckFieldsCompletion postInitAndCheckFieldsEmbedding
    rejectCompletionResumable`.split(/\s+/);
  assert.equal(names.length, 35);
  for (const n of names) assert.ok(n in webllm, `missing export ${n}`);
  assert.equal(webllm.ARTIFACT_SCHEMA_VERSION, 1);
  assert.equal(webllm.TENSOR_CACHE_MANIFEST_FILENAME, "tensor-cache.json");
  assert.equal(webllm.modelVersion, "v0_2_86/base");
  assert.equal(webllm.ModelType.embedding, 1);
  assert.equal(webllm.ModelType[2], "VLM");
  assert.deepEqual(webllm.ChatCompletionRequestUnsupportedFields, []);
});

test("progress texts use WebLLM's wording", () => {
  assert.deepEqual(
    { progress: startReport().progress, timeElapsed: startReport().timeElapsed, text: startReport().text },
    { progress: 0, timeElapsed: 0, text: "Start to fetch params" });
  const MB = 1048576;
  const f = fetchReport(2, 8, 40 * MB + 1, 100 * MB, 3.2);
  assert.equal(f.text, "Fetching param cache[2/8]: 41MB fetched. 40% completed, 4 secs elapsed. It can take a while when we first visit this page to populate the cache. Later refreshes will become faster.");
  assert.equal(f.timeElapsed, 4);
  assert.ok(Math.abs(f.progress - (40 * MB + 1) / (100 * MB)) < 1e-12);
  assert.equal(loadReport(1, 3, 32 * MB, 72 * MB, 0.5).text, "Loading model from cache[1/3]: 32MB loaded. 44% completed, 1 secs elapsed.");
  const fin = finishReport("webgpu", "swiftshader", 1.25, 10);
  assert.equal(fin.text, "Finish loading on WebGPU - swiftshader");
  assert.equal(fin.progress, 1);
  assert.equal(fin.timeElapsed, 1.25);
  assert.equal(finishReport("cpu", "no WebGPU", 1, 1).text, "Finish loading on CPU, 1 thread (no WebGPU)");
  assert.equal(finishReport("cpu", "no WebGPU", 1, 1, 4).text, "Finish loading on CPU, 4 threads (no WebGPU)");
});

test("software WebGPU adapters are recognised by the browser's flag or their names", () => {
  // Headless Chromium's SwiftShader reports exactly this (checked in the browser suite too).
  assert.equal(softwareRenderer({ info: { vendor: "google", architecture: "swiftshader", device: "", description: "", isFallbackAdapter: true } }), "SwiftShader");
  assert.equal(softwareRenderer({ info: { vendor: "mesa", architecture: "", description: "llvmpipe (LLVM 19.1.7, 256 bits)" } }), "llvmpipe");
  assert.equal(softwareRenderer({ info: { vendor: "mesa", description: "lavapipe" } }), "lavapipe");
  assert.equal(softwareRenderer({ info: { vendor: "microsoft", description: "Microsoft Basic Render Driver" } }), "Microsoft Basic Render Driver");
  assert.equal(softwareRenderer({ info: { vendor: "acme", architecture: "emu" }, isFallbackAdapter: true }), "acme emu");
  assert.equal(softwareRenderer({ info: { isFallbackAdapter: true } }), "a fallback adapter");
  for (const hw of [{ vendor: "nvidia", architecture: "ampere", description: "NVIDIA GeForce RTX 3080" },
    { vendor: "apple", architecture: "metal-3" }, { vendor: "intel", architecture: "gen-12lp", isFallbackAdapter: false }, {}]) {
    assert.equal(softwareRenderer({ info: hw }), undefined, JSON.stringify(hw));
  }
});

test('device "auto" resolves to the CPU engine without an adapter or on a software one, and says why', async () => {
  const withGpu = async (gpu, requested) => {
    const had = Object.getOwnPropertyDescriptor(globalThis, "navigator");
    Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true, writable: true });
    try { return await chooseDevice(requested); } finally {
      if (had) Object.defineProperty(globalThis, "navigator", had); else delete globalThis.navigator;
    }
  };
  const adapter = (info) => ({ requestAdapter: async () => ({ info }) });
  const swiftshader = adapter({ vendor: "google", architecture: "swiftshader", isFallbackAdapter: true });
  const sw = await withGpu(swiftshader, "auto");
  assert.equal(sw.device, "cpu");
  assert.match(sw.notice, /software renderer \(SwiftShader\).*CPU engine instead.*device: "webgpu"/);
  assert.match(sw.cpuReason, /SwiftShader/);
  for (const gpu of [undefined, { requestAdapter: async () => null }, { requestAdapter: async () => { throw new Error("x"); } }]) {
    const r = await withGpu(gpu, "auto");
    assert.equal(r.device, "cpu");
    assert.match(r.notice, /WebGPU is not available.*CPU engine/);
  }
  // A hardware adapter leaves the choice to the engine ("auto": WebGPU, CPU if no device comes).
  eq(await withGpu(adapter({ vendor: "nvidia", architecture: "ampere" }), "auto"), { device: "auto" });
  // An explicit choice is kept, software adapter or not.
  eq(await withGpu(swiftshader, "webgpu"), { device: "webgpu" });
  eq(await withGpu(swiftshader, "cpu"), { device: "cpu" });
  function eq(a, b) { assert.deepEqual(a, b); }
});

test("model URLs follow WebLLM's cleanModelUrl", () => {
  assert.equal(cleanModelUrl("https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC"),
    "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC/resolve/main/");
  assert.equal(cleanModelUrl("http://localhost:8000/x/resolve/v2"), "http://localhost:8000/x/resolve/v2/");
  assert.equal(cleanModelUrl("http://localhost:8000/qwen/"), "http://localhost:8000/qwen/resolve/main/");
});

test("cache backend selection", () => {
  assert.equal(getCacheBackend({}), "cache");
  assert.equal(getCacheBackend({ cacheBackend: "IndexedDB" }), "indexeddb");
  assert.equal(getCacheBackend({ useIndexedDBCache: true }), "indexeddb");
  assert.equal(getCacheBackend({ useIndexedDBCache: true, cacheBackend: "cache" }), "cache");
  assert.equal(getCacheBackend({ cacheBackend: "OPFS" }), "opfs");
  assert.equal(getCacheBackend({ cacheBackend: "cross-origin" }), "cache");
});

test("prebuiltAppConfig keeps WebLLM's ids and URLs and adds the offline default", () => {
  const webllm = cfg;
  const excerpt = JSON.parse(fs.readFileSync(path.join(repo, "engine/src/prebuilt-models.json"), "utf8")).model_list;
  const list = webllm.prebuiltAppConfig.model_list;
  for (const r of excerpt) {
    const ours = list.find((m) => m.model_id === r.model_id);
    assert.ok(ours, `missing ${r.model_id}`);
    assert.equal(ours.model, r.model);
    assert.deepEqual(ours.overrides, r.overrides);
  }
  // An optional extra check: the project's reference data folder (outside the repository, absent
  // from a fresh clone) holds an excerpt of WebLLM 0.2.86's prebuiltAppConfig; when it is there the
  // copied records' model_lib, vram_required_MB and required_features must equal it, when it is
  // not this part is skipped (the ids, URLs and overrides above are still checked).
  const shared = "/work/shared/data/webllm-0.2.86-prebuilt-models-excerpt.json";
  if (fs.existsSync(shared)) {
    for (const r of JSON.parse(fs.readFileSync(shared, "utf8")).model_list_excerpt) {
      const ours = list.find((m) => m.model_id === r.model_id);
      assert.equal(ours.model_lib, r.model_lib.replace("<modelLibURLPrefix>", webllm.modelLibURLPrefix));
      assert.equal(ours.vram_required_MB, r.vram_required_MB);
      assert.deepEqual(ours.required_features, r.required_features);
    }
  }
  const qwen = list.find((m) => m.model_id === "Qwen2.5-0.5B-Instruct-q4f16_1-MLC");
  assert.equal(qwen.model, "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC");
  assert.equal(qwen.model_lib, webllm.modelLibURLPrefix + "v0_2_86/base/Qwen2-0.5B-Instruct-q4f16_1_cs1k-webgpu.wasm");
  assert.ok(list.find((m) => m.model_id === "SmolLM2-135M-Instruct-q4f16_1-MLC"));
  assert.equal(new Set(list.map((m) => m.model_id)).size, list.length, "ids are unique");
  assert.equal(webllm.prebuiltAppConfig.cacheBackend, "cache");
});

test("prebuiltAppConfig holds every record of WebLLM 0.2.86 (165) plus the offline default", async () => {
  const list = cfg.prebuiltAppConfig.model_list;
  assert.equal(list.length, 166);
  for (const id of ["Llama-3.1-8B-Instruct-q4f32_1-MLC", "Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC", "gemma3-1b-it-q4f16_1-MLC",
    "snowflake-arctic-embed-s-q0f32-MLC-b32", "Phi-3.5-vision-instruct-q4f16_1-MLC", "Qwen3.5-9B-q4f32_1-MLC"]) {
    assert.equal(cfg.findModelRecord(id).model_id, id);
  }
  // Every function-calling id is a record.
  for (const id of cfg.functionCallingModelIds) assert.ok(cfg.findModelRecord(id), id);
  const hermes = cfg.findModelRecord("Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC");
  assert.equal(hermes.model, "https://huggingface.co/mlc-ai/Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC");
  assert.equal(hermes.model_lib, cfg.modelLibURLPrefix + "v0_2_86/base/Llama-3-8B-Instruct-q4f16_1_cs1k-webgpu.wasm");
  assert.equal(cfg.findModelRecord("snowflake-arctic-embed-s-q0f32-MLC-b32").model_type, cfg.ModelType.embedding);
});

test("WebLLM's start-up probes answer for the CPU engine where \"auto\" runs on it", async () => {
  const webllm = await index();
  // node has no navigator.gpu: "auto" runs on the CPU engine, so the probes must not throw.
  assert.equal(globalThis.navigator?.gpu, undefined);
  const auto = new webllm.MLCEngine();
  assert.equal(await auto.getGPUVendor(), "");
  assert.equal(await auto.getMaxStorageBufferBindingSize(), 1 << 30);
  assert.equal(await new webllm.MLCEngine({ device: "cpu" }).getGPUVendor(), "");
  // An explicit "webgpu" keeps WebLLM's error.
  await assert.rejects(new webllm.MLCEngine({ device: "webgpu" }).getGPUVendor(), { name: "WebGPUNotAvailableError" });
});

test("the extension handler answers each message once (the app adds the port's listener, as with WebLLM)", async () => {
  const webllm = await index();
  const port = () => {
    const listeners = [], sent = [];
    return { sent, onMessage: { addListener: (f) => listeners.push(f) }, onDisconnect: { addListener() {} },
      postMessage: (m) => sent.push(m), deliver: (m) => listeners.forEach((f) => f(m)) };
  };
  const first = port();
  const handler = new webllm.ExtensionServiceWorkerMLCEngineHandler(first);
  first.onMessage.addListener(handler.onmessage.bind(handler)); // WebLLM's documented background script
  const settle = () => new Promise((r) => setTimeout(r, 20));
  first.deliver({ kind: "getGPUVendor", uuid: "a", content: null });
  first.deliver({ kind: "keepAlive" });
  await settle();
  assert.deepEqual(first.sent, [{ kind: "return", uuid: "a", content: "" }]);
  // A second port (a popup opened again): setPort, and the app's listener on it.
  const second = port();
  handler.setPort(second);
  second.onMessage.addListener(handler.onmessage.bind(handler));
  second.deliver({ kind: "getMessage", uuid: "b", content: {} });
  await settle();
  assert.equal(second.sent.length, 1);
  assert.equal(second.sent[0].kind, "throw");
  assert.match(second.sent[0].content, /^ModelNotLoadedError/);
  assert.equal(first.sent.length, 1);
});

test("error names and messages", () => {
  const e = new E.ModelNotFoundError("x");
  assert.equal(e.name, "ModelNotFoundError");
  assert.equal(String(e), "ModelNotFoundError: Cannot find model record in appConfig for x. Please check if the model ID is correct and included in the model_list configuration.");
  assert.equal(new E.WebLLMRangeError("top_p", 0, 1).toString(), "RangeError: Make sure 0 < top_p <= 1.");
  assert.equal(new E.MissingModelWasmError("m").name, "MissingModelError");
  assert.equal(new E.InvalidStreamOptionsError().message, "Only specify stream_options when stream=True.");
  assert.equal(new E.UnclearModelToUseError(["a", "b"], "getMessage").message,
    "Multiple models are loaded in engine. Please specify the model in getMessage.\nCurrently loaded models are:\na,b");
  const q = new E.CacheQuotaExceededError("http://h/x.bin", 32 * 1048576, { quota: 10 * 1048576, usage: 4 * 1048576 });
  assert.equal(q.name, "QuotaExceededError");
  assert.match(q.message, /32\.0 MB.*10\.0 MB.*4\.0 MB/);
});

test("md5 matches node's crypto", () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 1000, 100003]) {
    const b = crypto.randomBytes(n);
    assert.equal(md5Hex(new Uint8Array(b)), crypto.createHash("md5").update(b).digest("hex"), `length ${n}`);
  }
});

test("request validation: WebLLM's checks and order", () => {
  const v = validate.postInitAndCheckFieldsChatCompletion;
  const user = { role: "user", content: "hi" };
  assert.throws(() => v({ messages: [user, { role: "system", content: "s" }] }, "m"), { name: "SystemMessageOrderError" });
  assert.throws(() => v({ messages: [user, { role: "assistant", content: "a" }] }, "m"), { name: "MessageOrderError" });
  assert.throws(() => v({ messages: [{ role: "bot", content: "a" }] }, "m"), { name: "UnsupportedRoleError" });
  assert.throws(() => v({ messages: [user], stream: true, n: 2 }, "m"), { name: "StreamingCountError" });
  assert.throws(() => v({ messages: [user], seed: 1.5 }, "m"), { name: "SeedTypeError" });
  assert.throws(() => v({ messages: [user], stream_options: { include_usage: true } }, "m"), { name: "InvalidStreamOptionsError" });
  assert.throws(() => v({ messages: [user], tools: [] }, "m"), { name: "UnsupportedModelIdError" });
  // Tool formats: WebLLM's Hermes ids keep its rules; Qwen2.5 models take tools with their own
  // system message, response_format, and OpenAI's content-less assistant tool-call messages.
  const hermes = "Hermes-3-Llama-3.1-8B-q4f16_1-MLC";
  assert.throws(() => v({ messages: [user], tools: [], response_format: { type: "json_object" } }, hermes), { name: "CustomResponseFormatError" });
  assert.throws(() => v({ messages: [{ role: "system", content: "s" }, user], tools: [] }, hermes), { name: "CustomSystemPromptError" });
  v({ messages: [user], tools: [] }, hermes);
  const call = { role: "assistant", content: null, tool_calls: [{ id: "0", type: "function", function: { name: "f", arguments: "{}" } }] };
  const tool = { role: "tool", tool_call_id: "0", content: "1" };
  v({ messages: [{ role: "system", content: "s" }, user, call, tool], tools: [], response_format: { type: "json_object" } }, "q", undefined, "qwen");
  assert.throws(() => v({ messages: [user, call, tool] }, "q", undefined, "qwen"), { name: "ContentTypeError" });
  assert.throws(() => v({ messages: [user], tools: [] }, "q", undefined, undefined), (e) =>
    e.name === "UnsupportedModelIdError" && e.message.endsWith("and models with the `qwen2` conversation template (Qwen2.5)"));
  assert.throws(() => v({ messages: [user], response_format: { type: "text", schema: "{}" } }, "m"), { name: "InvalidResponseFormatError" });
  assert.throws(() => v({ messages: [user], response_format: { type: "grammar" } }, "m"), { name: "InvalidResponseFormatGrammarError" });
  // order: message checks come before stream/n checks
  assert.throws(() => v({ messages: [user, { role: "assistant", content: "a" }], stream: true, n: 2 }, "m"), { name: "MessageOrderError" });
  assert.throws(() => v({ messages: [] }, "m"), TypeError);
  // Content parts: a chat model takes string content only; a VLM record takes images, never audio.
  const audio = { role: "user", content: [{ type: "text", text: "x" }, { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } }] };
  assert.throws(() => v({ messages: [audio] }, "m"), { name: "UserMessageContentErrorForNonVLM" });
  assert.throws(() => v({ messages: [audio] }, "vlm", cfg.ModelType.VLM), {
    name: "UnsupportedContentPartError", message: 'Model vlm does not declare support for user content type "input_audio".' });
  const image = (url, detail) => ({ role: "user", content: [{ type: "text", text: "x" }, { type: "image_url", image_url: { url, detail } }] });
  v({ messages: [image("data:image/png;base64,AA==")] }, "vlm", cfg.ModelType.VLM);
  assert.throws(() => v({ messages: [image("ftp://x")] }, "vlm", cfg.ModelType.VLM), { name: "UnsupportedImageURLError" });
  assert.throws(() => v({ messages: [image("http://x", "high")] }, "vlm", cfg.ModelType.VLM), { name: "UnsupportedDetailError" });
  assert.throws(() => v({ messages: [{ role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] }] }, "vlm", cfg.ModelType.VLM),
    { name: "MultipleTextContentError" });
  v({ messages: [{ role: "system", content: "s" }, user], stream: true, stream_options: { include_usage: true } }, "m");
  assert.throws(() => validate.postInitAndCheckFieldsCompletion({ prompt: "x", user: undefined }, "m"), { name: "UnsupportedFieldsError" });
});

test("SRI helpers", async () => {
  const webllm = integrity;
  const data = new TextEncoder().encode("hello");
  const sri = "sha256-" + crypto.createHash("sha256").update("hello").digest("base64");
  assert.ok(webllm.isValidSRI(sri));
  assert.ok(!webllm.isValidSRI("sha256-abc"));
  await webllm.verifyIntegrity(data, sri, "u");
  await assert.rejects(webllm.verifyIntegrity(new TextEncoder().encode("x"), sri, "u"), { name: "IntegrityError" });
});

test("downloads resume with Range after a cut, restart when Range is ignored, and never return a short file", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlcw-unit-"));
  const payload = crypto.randomBytes(3 * 1048576 + 123);
  fs.writeFileSync(path.join(dir, "f.bin"), payload);
  const md5 = crypto.createHash("md5").update(payload).digest("hex");
  const s = await startServer({ mounts: [["/m/", dir]] });
  try {
    const url = `${s.url}/m/f.bin`;
    s.addRule({ match: /f\.bin$/, action: "cut", afterBytes: 1048576, times: 1 });
    const got = await downloadFile(url, { expect: { nbytes: payload.length, md5 } });
    assert.equal(md5Hex(got), md5);
    const ranged = s.requests().filter((r) => r.path === "/m/f.bin" && r.range);
    assert.equal(ranged.length, 1, "one resumed request");
    assert.equal(ranged[0].status, 206);
    assert.match(ranged[0].range, /^bytes=\d+-$/);
    assert.ok(Number(/=(\d+)-/.exec(ranged[0].range)[1]) > 0, "resumed from a non-zero offset");

    s.clearLog(); s.clearRules();
    s.addRule({ match: /f\.bin$/, action: "cut", afterBytes: 100000, times: 1 });
    s.addRule({ match: /f\.bin$/, action: "serve", ignoreRange: true, times: 1 }); // answers 200 to the Range request
    assert.equal(md5Hex(await downloadFile(url, { expect: { nbytes: payload.length, md5 } })), md5);
    assert.equal(s.requests().at(-1).status, 200);

    s.clearLog(); s.clearRules();
    s.addRule({ match: /f\.bin$/, action: "cut", afterBytes: 1000 }); // always cut
    await assert.rejects(downloadFile(url, { expect: { nbytes: payload.length }, retries: 2 }), { name: "DownloadError" });
    assert.equal(s.requests().length, 3);

    s.clearRules();
    await assert.rejects(downloadFile(`${s.url}/m/missing.bin`), (e) => e.name === "DownloadError" && e.status === 404);
  } finally {
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("worker envelope: errors cross as '<name>: <message>' strings", async () => {
  const webllm = await index();
  // Wire a handler and a client together in-process, as postMessage would.
  const handler = new webllm.WebWorkerMLCEngineHandler();
  const toClient = [];
  const worker = { onmessage: undefined, postMessage: (m) => setTimeout(() => handler.onmessage(structuredClone(m))) };
  handler.postMessage = (m) => { toClient.push(m); setTimeout(() => worker.onmessage({ data: structuredClone(m) })); };
  const client = new webllm.WebWorkerMLCEngine(worker);
  await assert.rejects(client.chatCompletion({ messages: [{ role: "user", content: "x" }] }), { name: "WorkerEngineModelNotLoadedError" });
  await assert.rejects(client.getMessage(), (e) => typeof e === "string" &&
    e.startsWith("ModelNotLoadedError: Model not loaded before trying to complete getMessage."));
  assert.deepEqual(Object.keys(toClient[0]).sort(), ["content", "kind", "uuid"]);
  assert.equal(toClient[0].kind, "throw");
});

// ---- resumable generation's journal (resumable.js) over an in-memory stand-in for OPFS: the
// browser suite runs it on Chromium's real OPFS; this covers the journal's reading rules.
class MemFile {
  constructor() { this.kind = "file"; this.data = ""; }
  async getFile() { const data = this.data; return { size: data.length, text: async () => data }; }
  async createWritable({ keepExistingData = false } = {}) {
    let pending = keepExistingData ? this.data : "", at = 0;
    return {
      seek: async (n) => { at = n; },
      write: async (s) => { pending = pending.slice(0, at) + s; at = pending.length; },
      close: async () => { this.data = pending; }, // committed on close, as OPFS does
    };
  }
}
class MemDir {
  constructor() { this.kind = "directory"; this.children = new Map(); }
  async get(name, create, Kind) {
    if (!this.children.has(name)) {
      if (!create) throw Object.assign(new Error(`${name} not found`), { name: "NotFoundError" });
      this.children.set(name, new Kind());
    }
    return this.children.get(name);
  }
  getDirectoryHandle(name, { create = false } = {}) { return this.get(name, create, MemDir); }
  getFileHandle(name, { create = false } = {}) { return this.get(name, create, MemFile); }
  async removeEntry(name) {
    if (!this.children.delete(name)) throw Object.assign(new Error(`${name} not found`), { name: "NotFoundError" });
  }
  async *keys() { yield* this.children.keys(); }
  async *entries() { yield* this.children.entries(); }
}

async function withMemoryOpfs(fn) {
  const root = new MemDir();
  const had = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  Object.defineProperty(globalThis, "navigator", { value: { storage: { getDirectory: async () => root } }, configurable: true });
  try { return await fn(root); } finally {
    if (had) Object.defineProperty(globalThis, "navigator", had); else delete globalThis.navigator;
  }
}

test("resumable: WebLLM's defaults and refusals for extra_body.resumable", async () => {
  const R = await import("../js/resumable.js");
  assert.equal(R.normalizeResumableConfig(undefined), undefined);
  assert.equal(R.normalizeResumableConfig({ enabled: false, sessionId: "x" }), undefined);
  assert.deepEqual(R.normalizeResumableConfig({ enabled: true, sessionId: "s" }), {
    enabled: true, sessionId: "s", checkpointIntervalTokens: 512, checkpointPrompt: true, durabilityMode: "exact",
    strictPersistence: false, storeCheckpointLogits: true });
  assert.match(R.normalizeResumableConfig({ enabled: true }).sessionId, /^[0-9a-f-]{36}$/);
  assert.throws(() => R.normalizeResumableConfig({ enabled: true, checkpointIntervalTokens: 2.5 }), { message: "resumable.checkpointIntervalTokens must be an integer." });
  assert.throws(() => R.normalizeResumableConfig({ enabled: true, checkpointIntervalTokens: -1 }), { message: "resumable.checkpointIntervalTokens must be positive." });
  for (const bad of ["", ".", "..", "a/b", "a\0b", 7]) {
    assert.throws(() => R.assertSessionId(bad), { message: `Invalid resumable session id: ${bad}` });
  }
  const chat = { messages: [{ role: "user", content: "hi" }], extra_body: { resumable: { enabled: true, sessionId: "s" } } };
  assert.equal(R.resumableConfigOf(chat).sessionId, "s");
  assert.throws(() => R.resumableConfigOf({ ...chat, n: 2 }), { message: "Resumable generation currently requires n <= 1." });
  for (const type of ["json_object", "grammar", "structural_tag"]) {
    assert.throws(() => R.resumableConfigOf({ ...chat, response_format: { type } }), { message: "Resumable generation does not support grammar-constrained response formats." });
  }
  assert.equal(R.resumableConfigOf({ ...chat, response_format: { type: "text" } }).sessionId, "s");
  const image = { role: "user", content: [{ type: "text", text: "hi" }, { type: "image_url", image_url: { url: "data:," } }] };
  assert.throws(() => R.resumableConfigOf({ ...chat, messages: [image] }), { message: "Resumable generation supports text-only prompts." });
});

test("resumable: the journal records a run and reads back as WebLLM's probe and text-only result", async () => {
  const R = await import("../js/resumable.js");
  await withMemoryOpfs(async (root) => {
    const store = new R.ResumableStore();
    assert.deepEqual(await store.list(), [], "no folder yet");
    const config = R.normalizeResumableConfig({ enabled: true, sessionId: "s1" });
    const { journal, request } = await store.begin(config, "m", { messages: [{ role: "user", content: "hi" }] });
    assert.ok(Number.isInteger(request.seed) && request.seed >= 0 && request.seed < 2147483647, "an unseeded request gets a seed");
    assert.equal((await store.begin(config, "m", { messages: [], seed: 1 }).catch((e) => e)).message, "Resumable session is already active: s1");
    journal.tokens(Uint32Array.of(5, 6), "Hel", 12);
    journal.tokens([7], "lo", 13);
    await journal.flush();
    const cut = await store.open("s1");
    assert.deepEqual(R.probe(cut), { sessionId: "s1", resumable: true, modelId: "m", emittedTokens: 3, processedSeqLen: 13,
      recoveryMode: "token_replay", reason: "generation incomplete" });
    assert.deepEqual(cut.ids, [5, 6, 7]);
    assert.deepEqual(cut.request, request);
    assert.deepEqual(R.textOnlyResult(cut), { sessionId: "s1", recoveredText: "Hello", emittedTokens: 3, processedSeqLen: 13, replayedTokens: 0, recoveryMode: "text_only" });
    // A torn last line (a write cut short) is ignored; damage earlier stops the journal.
    const file = root.children.get("webllm-resume").children.get("sessions").children.get("s1").children.get("journal.jsonl");
    const intact = file.data;
    file.data = `${intact}{"type":"tok`;
    assert.equal(R.probe(await store.open("s1")).reason, "generation incomplete");
    file.data = intact.replace('"type":"tokens"', '"type":tokens');
    assert.deepEqual(R.probe(await store.open("s1")), { sessionId: "s1", resumable: false, modelId: "m", emittedTokens: 0, processedSeqLen: 0,
      recoveryMode: "none", reason: "journal scan stopped at a corrupt record" });
    file.data = intact;
    await journal.end("abort");
    assert.equal(R.probe(await store.open("s1")).reason, "generation aborted");
    // A continuation appends to the same journal and ends it.
    const more = await store.attach(await store.open("s1"), () => {});
    more.tokens([8], "!", 14);
    await more.end("length");
    const done = await store.open("s1");
    assert.deepEqual(R.probe(done), { sessionId: "s1", resumable: false, modelId: "m", emittedTokens: 4, processedSeqLen: 14, recoveryMode: "none", reason: "generation finished" });
    assert.equal(R.continuationBlockReason(done), "generation already finished");
    assert.equal(R.textOnlyResult(done).recoveredText, "Hello!");
    // The same id again is WebLLM's ResumableSessionExistsError; an error ends a journal as resumable.
    const again = await store.begin(config, "m", { messages: [] }).catch((e) => e);
    assert.equal(`${again.name}: ${again.message}`, "ResumableSessionExistsError: Resumable session already exists: s1");
    const failed = await store.begin(R.normalizeResumableConfig({ enabled: true, sessionId: "s2" }), "m", { messages: [], seed: 3 });
    assert.equal(failed.request.seed, 3, "a seeded request keeps its seed");
    await failed.journal.end(undefined, new Error("device lost"));
    assert.equal(R.probe(await store.open("s2")).reason, "engine error: device lost");
    assert.deepEqual((await store.list()).map((s) => s.sessionId), ["s1", "s2"]);
    await store.delete("s1");
    await store.delete("no-such-session");
    assert.equal(await store.open("s1"), undefined);
    assert.deepEqual((await store.list()).map((s) => s.sessionId), ["s2"]);
  });
});

test("resumable: without OPFS nothing is listed, and a request runs unjournaled unless strictPersistence", async () => {
  const R = await import("../js/resumable.js");
  const store = new R.ResumableStore();
  assert.deepEqual(await store.list(), []);
  const request = { messages: [] };
  const loose = await store.begin(R.normalizeResumableConfig({ enabled: true, sessionId: "a" }), "m", request);
  assert.equal(loose.journal, undefined);
  assert.equal(loose.request, request);
  await assert.rejects(store.begin(R.normalizeResumableConfig({ enabled: true, sessionId: "b", strictPersistence: true }), "m", request),
    { message: "OPFS is unavailable in this environment" });
});
