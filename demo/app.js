// The chat demo. It uses only the local module (the same API as WebLLM) and the server it came
// from: locally served models are listed by /models/index.json (scripts/demo.sh serves the offline
// default SmolLM2 there); Qwen2.5-0.5B-Instruct is offered from its official Hugging Face URL.

import * as webllm from "../web/js/index.js";

const $ = (id) => document.getElementById(id);
const ui = {
  gpu: $("gpu-status"), model: $("model"), device: $("device"), load: $("load"), maxTokens: $("max-tokens"),
  progressBox: $("progress-box"), progress: $("progress"), phase: $("progress-phase"), progressText: $("progress-text"),
  messages: $("messages"), form: $("form"), prompt: $("prompt"), send: $("send"), stop: $("stop"), reset: $("reset"),
  stats: $("stats"), status: $("status"),
};

let engine;
let history = [];
let engineName = "";

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  const ready = state === "ready";
  ui.prompt.disabled = !ready;
  ui.send.disabled = !ready;
  ui.reset.disabled = !ready;
  ui.stop.disabled = state !== "generating";
  ui.load.disabled = state === "loading" || state === "generating";
}

async function detectWebGPU() {
  let adapter = null;
  try { adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null; } catch { adapter = null; }
  if (adapter) {
    const info = adapter.info ?? {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "unknown adapter";
    const f16 = adapter.features.has("shader-f16") ? "with shader-f16" : "without shader-f16 (fine: the kernels do not need it)";
    ui.gpu.textContent = `WebGPU is available: ${name}, ${f16}.`;
  } else {
    ui.gpu.classList.add("warn");
    ui.gpu.textContent = "WebGPU is not available in this browser (or it is disabled). The model will run on the CPU engine " +
      "instead: the same answers, but much slower. For speed, use a browser with WebGPU enabled.";
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
  } catch { /* no local models: only the official one */ }
  const qwen = webllm.prebuiltAppConfig.model_list.find((m) => m.model_id === "Qwen2.5-0.5B-Instruct-q4f16_1-MLC");
  records.push({ ...qwen, label: `${qwen.model_id} (downloads ~280 MB from huggingface.co once, then cached)` });
  for (const rec of records) {
    const o = document.createElement("option");
    o.value = rec.model_id;
    o.textContent = rec.label;
    ui.model.append(o);
  }
  const preferred = records.find((r) => r.model_id === webllm.DEFAULT_MODEL_ID) ?? records[0];
  ui.model.value = preferred.model_id;
  return { model_list: records.map(({ label, ...r }) => r) };
}

const mb = (n) => (n / 1048576).toFixed(1);
const PHASES = { notice: "Notice", fetch: "Downloading weights", load: "Loading into the engine", done: "Ready" };

function onProgress(report) {
  ui.progressBox.hidden = false;
  ui.progress.value = report.progress;
  const bytes = report.totalBytes ? ` — ${mb(report.loadedBytes)} / ${mb(report.totalBytes)} MB` : "";
  ui.phase.textContent = `${PHASES[report.phase] ?? "Preparing"}${bytes}`;
  ui.progressText.textContent = report.text;
  if (report.text.startsWith("Finish loading on ")) engineName = report.text.slice("Finish loading on ".length);
}

async function load(appConfig) {
  setStatus("loading", "Loading…");
  ui.stats.textContent = "";
  try {
    if (engine) await engine.unload();
    engine = new webllm.MLCEngine({ appConfig, initProgressCallback: onProgress, device: ui.device.value });
    const cached = await webllm.hasModelInCache(ui.model.value, appConfig).catch(() => false);
    ui.phase.textContent = cached ? "Loading from the browser cache" : "Downloading";
    await engine.reload(ui.model.value);
    history = [];
    ui.messages.textContent = "";
    setStatus("ready", `Loaded ${ui.model.value} on ${engineName}.`);
  } catch (e) {
    setStatus("error", `Could not load the model: ${e?.name ?? "Error"}: ${e?.message ?? e}`);
  }
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const r = document.createElement("span");
  r.className = "role";
  r.textContent = role;
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = text;
  div.append(r, body);
  ui.messages.append(div);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  return body;
}

async function send(text) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const body = addMessage("assistant", "");
  setStatus("generating", "Generating… (Stop interrupts)");
  let reply = "", usage, finish;
  try {
    const chunks = await engine.chat.completions.create({
      messages: history, stream: true, stream_options: { include_usage: true },
      max_tokens: Number(ui.maxTokens.value) || undefined,
    });
    for await (const chunk of chunks) {
      const c = chunk.choices[0];
      if (c?.delta?.content) { reply += c.delta.content; body.textContent = reply; ui.messages.scrollTop = ui.messages.scrollHeight; }
      if (c?.finish_reason) finish = c.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    history.push({ role: "assistant", content: reply });
    if (usage) {
      const x = usage.extra ?? {};
      // Two significant digits below 10 tok/s, so a slow engine shows its real (small) speed, not 0.0.
      const rate = (v) => (v === undefined ? "?" : v >= 10 ? v.toFixed(1) : v.toPrecision(2));
      ui.stats.textContent = `prefill ${rate(x.prefill_tokens_per_s)} tok/s · decode ${rate(x.decode_tokens_per_s)} tok/s · ` +
        `${usage.prompt_tokens} prompt + ${usage.completion_tokens} generated tokens · first token ${(x.time_to_first_token_s ?? NaN).toFixed(2)} s · ${engineName}`;
    }
    setStatus("ready", finish === "abort" ? "Stopped." : finish === "length" ? "Stopped at the length limit." : "Done.");
  } catch (e) {
    history.pop();
    setStatus("ready", `Error: ${e?.name ?? "Error"}: ${e?.message ?? e}`);
  }
}

const appConfigPromise = buildModelList();
detectWebGPU();
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
ui.reset.addEventListener("click", async () => {
  await engine?.resetChat();
  history = [];
  ui.messages.textContent = "";
  ui.stats.textContent = "";
});
