// The chat demo. It uses only the local module (the same API as WebLLM) and the server it came
// from: locally served models are listed by /models/index.json (scripts/demo.sh serves the offline
// default SmolLM2 there); Qwen2.5-0.5B-Instruct is offered from its official Hugging Face URL.
// The engine runs in a dedicated Web Worker (worker.js), where the CPU engine gets threads when
// the page is cross-origin isolated (scripts/demo.sh serves it so).

import * as webllm from "../web/js/index.js";
import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const ui = {
  gpu: $("gpu-status"), model: $("model"), device: $("device"), load: $("load"), maxTokens: $("max-tokens"),
  progressBox: $("progress-box"), progress: $("progress"), phase: $("progress-phase"), progressText: $("progress-text"),
  messages: $("messages"), form: $("form"), prompt: $("prompt"), send: $("send"), stop: $("stop"), reset: $("reset"),
  stats: $("stats"), status: $("status"),
};

let engine;
let worker; // the dedicated worker the engine runs in, one per load
let history = [];
let chatModel = ""; // the model whose conversation is shown (and saved)
let loadedModel = ""; // the model the engine holds
let engineName = "";

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  const ready = state === "ready";
  ui.prompt.disabled = !ready;
  ui.send.disabled = !ready;
  ui.reset.disabled = state === "loading" || state === "generating";
  ui.stop.disabled = state !== "generating";
  ui.load.disabled = state === "loading" || state === "generating";
}

// What to do when "auto" cannot use a hardware GPU; shown with the engine's own reason.
const WEBGPU_FIX = "For speed, open this page in a browser with WebGPU on a hardware GPU: Chrome or Edge 113+ " +
  "(on Linux, Chrome with chrome://flags/#enable-unsafe-webgpu and Vulkan on), Safari 26+, or Firefox 141+ on Windows; " +
  "chrome://gpu shows whether WebGPU is hardware accelerated.";

// The engine decides where the model runs (web/js/device.js) and says so in its progress reports:
// a "notice" report when "auto" falls back to the CPU engine, and the final "Finish loading on …".
// The device note repeats that verdict rather than probing WebGPU a second time.
function showDevice(report) {
  if (report.phase === "notice") {
    ui.gpu.classList.add("warn");
    ui.gpu.textContent = `${report.text} ${WEBGPU_FIX}`;
  } else if (report.phase === "done") {
    const where = report.text.slice("Finish loading on ".length);
    if (where.startsWith("WebGPU")) {
      ui.gpu.classList.remove("warn");
      ui.gpu.textContent = `Running on ${where}.`;
    } else if (!ui.gpu.classList.contains("warn")) {
      ui.gpu.textContent = `Running on the ${where.replace(/^CPU/, "CPU engine")}.`;
    }
  }
}

async function buildModelList() {
  const records = [];
  try {
    const r = await fetch(new URL("../models/index.json", location.href));
    if (r.ok) {
      for (const m of (await r.json()).models) {
        records.push({
          model: new URL(m.path, location.href).href, model_id: m.model_id,
          model_lib: "local", overrides: { context_window_size: 4096 }, label: `${m.model_id} (served locally)`,
        });
      }
    }
  } catch { /* no local models: only the prebuilt ones */ }
  const local = records.length;
  // WebLLM's prebuilt records (chat models only), with the GPU memory each needs. Records of a model
  // family the runtime lacks stay listed: their Load fails with the engine's error.
  for (const rec of webllm.prebuiltAppConfig.model_list) {
    if ((rec.model_type ?? webllm.ModelType.LLM) !== webllm.ModelType.LLM) continue;
    if (records.some((r) => r.model_id === rec.model_id)) continue; // served locally already
    const size = rec.vram_required_MB ? ` · needs ~${Math.round(rec.vram_required_MB)} MB of GPU memory` : "";
    records.push({ ...rec, label: `${rec.model_id}${size}` });
  }
  const appConfig = { model_list: records.map(({ label, ...r }) => r) };
  ui.device.value = localStorage.getItem(SETTINGS_KEY + "device") ?? "auto";
  const options = records.map((rec) => {
    const o = document.createElement("option");
    o.value = rec.model_id;
    o.textContent = rec.label;
    return o;
  });
  const group = (label, opts) => {
    const g = document.createElement("optgroup");
    g.label = label;
    g.append(...opts);
    return g;
  };
  if (local) ui.model.append(group("Served by this server", options.slice(0, local)));
  ui.model.append(group("WebLLM's prebuilt models (downloaded from huggingface.co once, then cached)", options.slice(local)));
  const saved = localStorage.getItem(SETTINGS_KEY + "model");
  const preferred = records.find((r) => r.model_id === saved) ??
    records.find((r) => r.model_id === webllm.DEFAULT_MODEL_ID) ?? records[0];
  ui.model.value = preferred.model_id;
  await Promise.all(options.map(async (o) => {
    if (await webllm.hasModelInCache(o.value, appConfig).catch(() => false)) markCached(o);
  }));
  return appConfig;
}

function markCached(option) {
  if (option.dataset.cached === "true") return;
  option.dataset.cached = "true";
  option.textContent += " · in the browser cache";
}

const mb = (n) => (n / 1048576).toFixed(1);
const PHASES = { notice: "Notice", fetch: "Downloading weights", load: "Loading into the engine", done: "Ready" };

function onProgress(report) {
  ui.progressBox.hidden = false;
  ui.progress.value = report.progress;
  const bytes = report.totalBytes ? ` — ${mb(report.loadedBytes)} / ${mb(report.totalBytes)} MB` : "";
  ui.phase.textContent = `${PHASES[report.phase] ?? "Preparing"}${bytes}`;
  ui.progressText.textContent = report.text;
  showDevice(report);
  if (report.text.startsWith("Finish loading on ")) engineName = report.text.slice("Finish loading on ".length);
}

// ---------------------------------------------------------------- the conversation, kept per model
// localStorage holds each model's conversation ({role, content, stats?} items) and the last model
// and engine picked, so a reload shows the same chat and loads the same model.
const SETTINGS_KEY = "mlc-wgpu-demo:";
const chatKey = (modelId) => `${SETTINGS_KEY}chat:${modelId}`;

function restoreChat(modelId) {
  try {
    const saved = JSON.parse(localStorage.getItem(chatKey(modelId)) ?? "[]");
    return Array.isArray(saved) ? saved.filter((m) => typeof m?.content === "string" && ["user", "assistant"].includes(m.role)) : [];
  } catch { return []; }
}
function saveChat() {
  if (history.length) localStorage.setItem(chatKey(chatModel), JSON.stringify(history));
  else localStorage.removeItem(chatKey(chatModel));
}
function showChat(modelId) {
  chatModel = modelId;
  history = restoreChat(modelId);
  ui.messages.textContent = "";
  ui.stats.textContent = "";
  for (const m of history) addMessage(m.role, m.content, m.stats);
}

async function load(appConfig) {
  setStatus("loading", "Loading…");
  ui.gpu.classList.remove("warn");
  ui.gpu.textContent = "Choosing the engine…";
  localStorage.setItem(SETTINGS_KEY + "model", ui.model.value);
  localStorage.setItem(SETTINGS_KEY + "device", ui.device.value);
  try {
    // A fresh worker per load: the engine choice travels in its URL (WebLLM's worker protocol has
    // no field for it), and ending the old worker frees the old model with it.
    worker?.terminate();
    worker = new Worker(new URL(`worker.js?device=${encodeURIComponent(ui.device.value)}`, import.meta.url), { type: "module" });
    // A worker whose script fails to load or throws would leave the load waiting forever.
    worker.onerror = (ev) => setStatus("error", `The engine's worker failed: ${ev.message || "its script could not be loaded"}`);
    engine = new webllm.WebWorkerMLCEngine(worker, { appConfig, initProgressCallback: onProgress });
    const cached = await webllm.hasModelInCache(ui.model.value, appConfig).catch(() => false);
    ui.phase.textContent = cached ? "Loading from the browser cache" : "Downloading";
    await engine.reload(ui.model.value);
    loadedModel = ui.model.value;
    markCached(ui.model.selectedOptions[0]);
    showChat(loadedModel);
    setStatus("ready", `Loaded ${ui.model.value} on ${engineName}.`);
  } catch (e) {
    setStatus("error", `Could not load the model: ${errorText(e)}`);
  }
}

// The worker's engine rejects with WebLLM's "<name>: <message>" string, not an Error object.
const errorText = (e) => (typeof e === "string" ? e : `${e?.name ?? "Error"}: ${e?.message ?? e}`);

// User text is shown as typed; assistant text as Markdown (demo/markdown.js escapes raw HTML).
function renderBody(body, role, text) {
  if (role === "assistant") body.innerHTML = renderMarkdown(text);
  else body.textContent = text;
}

function addMessage(role, text, stats) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const r = document.createElement("span");
  r.className = "role";
  r.textContent = role;
  const body = document.createElement("div");
  body.className = "body";
  renderBody(body, role, text);
  const foot = document.createElement("div");
  foot.className = "reply-stats small";
  foot.textContent = stats ?? "";
  div.append(r, body, foot);
  ui.messages.append(div);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  return { body, foot };
}

// Two significant digits below 10 tok/s, so a slow engine shows its real (small) speed, not 0.0.
const rate = (v) => (v === undefined ? "?" : v >= 10 ? v.toFixed(1) : v.toPrecision(2));

async function send(text) {
  history.push({ role: "user", content: text });
  saveChat();
  addMessage("user", text);
  const { body, foot } = addMessage("assistant", "");
  setStatus("generating", "Generating… (Stop interrupts)");
  let reply = "", usage, finish, frame = 0;
  // Re-rendered at most once per animation frame while streaming: parsing the whole reply per token
  // would cost more than the token on a fast GPU.
  const paint = () => { frame = 0; renderBody(body, "assistant", reply); ui.messages.scrollTop = ui.messages.scrollHeight; };
  try {
    const chunks = await engine.chat.completions.create({
      messages: history.map(({ role, content }) => ({ role, content })), stream: true, stream_options: { include_usage: true },
      max_tokens: Number(ui.maxTokens.value) || undefined,
    });
    for await (const chunk of chunks) {
      const c = chunk.choices[0];
      if (c?.delta?.content) { reply += c.delta.content; frame ||= requestAnimationFrame(paint); }
      if (c?.finish_reason) finish = c.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    if (frame) cancelAnimationFrame(frame);
    paint();
    let stats;
    if (usage) {
      const x = usage.extra ?? {};
      stats = `${rate(x.decode_tokens_per_s)} tok/s · ${usage.completion_tokens} tokens · ${engineName}`;
      foot.textContent = stats;
      ui.stats.textContent = `prefill ${rate(x.prefill_tokens_per_s)} tok/s · decode ${rate(x.decode_tokens_per_s)} tok/s · ` +
        `${usage.prompt_tokens} prompt + ${usage.completion_tokens} generated tokens · first token ${(x.time_to_first_token_s ?? NaN).toFixed(2)} s · ${engineName}`;
    }
    history.push({ role: "assistant", content: reply, stats });
    saveChat();
    setStatus("ready", finish === "abort" ? "Stopped." : finish === "length" ? "Stopped at the length limit." : "Done.");
  } catch (e) {
    history.pop();
    saveChat();
    setStatus("ready", `Error: ${errorText(e)}`);
  }
}

// At page open: the last conversation of the picked model is shown, and a model already in the
// browser cache is loaded without pressing Load.
const appConfigPromise = buildModelList().then((appConfig) => {
  showChat(ui.model.value);
  if (ui.model.selectedOptions[0]?.dataset.cached === "true") load(appConfig);
  return appConfig;
});
// Picking another model shows its conversation; chatting with it needs Load (or picking the loaded one back).
ui.model.addEventListener("change", () => {
  const state = ui.status.dataset.state;
  if (state === "generating" || state === "loading") return;
  showChat(ui.model.value);
  if (ui.model.value === loadedModel) setStatus("ready", `Loaded ${loadedModel} on ${engineName}.`);
  else setStatus("idle", `Press Load to chat with ${ui.model.value}.`);
});
ui.load.addEventListener("click", async () => load(await appConfigPromise));
ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || ui.status.dataset.state !== "ready") return;
  ui.prompt.value = "";
  send(text);
});
ui.prompt.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); ui.form.requestSubmit(); }
});
ui.stop.addEventListener("click", () => engine?.interruptGenerate());
// The page forgets the chat at once; the engine, in its worker, drops its cached prefix after.
ui.reset.addEventListener("click", async () => {
  history = [];
  saveChat();
  showChat(chatModel);
  await engine?.resetChat();
});
