// The npm package as an app uses it. scripts/test-web.sh packs web/ (scripts/pack-web.sh), installs
// the tarball into this app (npm ci, then npm install --no-save TARBALL), type-checks it
// (tsc --noEmit) and builds it twice, with Vite (dist/) and with webpack (webpack/dist/); this
// script serves both builds and the tiny Qwen2 artifact on 127.0.0.1 and opens them in headless
// Chromium without WebGPU, so "auto" runs the CPU engine. The app chats in the page and through a
// Web Worker; every reply must equal the native CLI's answer to the same request, with the wasm
// found by the bundler alone. The same app then runs on Vite's dev server.
// The default model (SmolLM2-135M) is chatted with too when it is imported (a failure in CI if not).
// Environment: MLC_WGPU_BIN (default target/debug/mlc-wgpu), CHROMIUM (default /usr/bin/chromium),
// MLC_WGPU_SMOLLM2_DIR / MLC_WGPU_CACHE (where the default model is), CI.

import { chromium } from "playwright-core";
import { createServer } from "vite";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "../server.mjs";
import { defaultModelDir, nativeServe, prepareTinyQwen2, SMOL_ID } from "../native.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const dist = path.join(here, "dist");
const webpackDist = path.join(here, "webpack/dist");
const outDir = path.join(here, "../out");
fs.mkdirSync(outDir, { recursive: true });

let failed = 0;
async function check(name, fn) {
  try { await fn(); console.log(`ok      ${name}`); } catch (e) { failed++; console.log(`FAILED  ${name}\n        ${String(e?.stack ?? e).split("\n").join("\n        ")}`); }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: got ${JSON.stringify(a)}, expected ${JSON.stringify(b)}`);
}

const installed = JSON.parse(fs.readFileSync(path.join(here, "node_modules/mlc-wgpu/package.json"), "utf8"));
assert(fs.existsSync(path.join(dist, "index.html")) && fs.existsSync(path.join(webpackDist, "main.js")),
  "a build is missing: run vite build and webpack first (scripts/test-web.sh does)");
const tinyDir = path.join(here, "../served/tiny-qwen2-package");
prepareTinyQwen2(repo, tinyDir);

const REQ = {
  messages: [{ role: "system", content: "You are a helpful AI assistant." }, { role: "user", content: "What is WebGPU?" }],
  temperature: 0, max_tokens: 12,
};
const nativeBin = process.env.MLC_WGPU_BIN ?? path.join(repo, "target/debug/mlc-wgpu");
const models = [{ id: "tiny-qwen2", dir: tinyDir }];
const smolDir = defaultModelDir();
const haveSmol = fs.existsSync(path.join(smolDir, "mlc-chat-config.json"));
if (haveSmol) models.push({ id: SMOL_ID, dir: smolDir });
const expected = {};
for (const m of models) {
  const native = await nativeServe(nativeBin, m.dir);
  try { expected[m.id] = await native.post("/v1/chat/completions", REQ); } finally { native.close(); }
  assert(expected[m.id].usage.completion_tokens > 0, `the native CLI produced no tokens with ${m.id}`);
}

const server = await startServer({
  mounts: [["/app/", dist], ["/webpack/", path.join(here, "webpack")]], models,
});
const userData = fs.mkdtempSync(path.join(os.tmpdir(), "mlcw-package-"));
const ctx = await chromium.launchPersistentContext(userData, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const requests = [];
ctx.on("request", (r) => requests.push(r.url()));
const logs = [];
ctx.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
ctx.on("weberror", (e) => logs.push(`[pageerror] ${e.error()}`));

console.log(`== the packed npm package ${installed.name}@${installed.version} in an app built by Vite and by webpack (CPU engine)`);

/** Opens the app at `base` (…/index.html) with `modelId`, waits for it, checks every reply. */
async function chatApp(base, screenshot, modelId = "tiny-qwen2") {
  const want = expected[modelId];
  const expectedText = want.choices[0].message.content;
  const page = await ctx.newPage();
  const wasm = [];
  page.on("response", (r) => { if (r.url().endsWith(".wasm")) wasm.push(`${r.status()} ${r.headers()["content-type"]} ${new URL(r.url()).pathname}`); });
  const u = new URL(base);
  u.searchParams.set("model_id", modelId);
  u.searchParams.set("model_path", `/models/${modelId}/`);
  u.searchParams.set("prompt", REQ.messages[1].content);
  u.searchParams.set("max_tokens", String(REQ.max_tokens));
  await page.goto(u.href);
  await page.waitForSelector("body[data-status]", { timeout: 240_000 });
  const result = await page.evaluate(() => window.result);
  await page.screenshot({ path: path.join(outDir, screenshot) });
  await page.close();
  assert(!result.error, `${result.error}\n${logs.join("\n")}`);
  eq(result.page.reply, expectedText, "streamed reply in the page vs native");
  eq(result.page.fullReply, expectedText, "getMessage() in the page");
  eq(result.page.usage.completion_tokens, want.usage.completion_tokens, "completion_tokens");
  eq(result.page.usage.prompt_tokens, want.usage.prompt_tokens, "prompt_tokens");
  eq(result.nonStreaming, expectedText, "non-streaming reply vs native");
  eq(result.worker.reply, expectedText, "streamed reply through the worker vs native");
  eq(result.cached, true, "hasModelInCache");
  for (const reports of [result.reports, result.workerReports]) {
    assert(reports.some((t) => /WebGPU is not available.*CPU engine/.test(t)), `no CPU notice: ${JSON.stringify(reports)}`);
    assert(/^Finish loading on CPU/.test(reports.at(-1)), `final report: ${reports.at(-1)}`);
  }
  assert(wasm.length > 0, "no wasm was fetched");
  return { result, wasm };
}

try {
  await check("each bundler emitted the package's wasm as an asset of its own (nothing copied by hand)", async () => {
    for (const dir of [path.join(dist, "assets"), webpackDist]) {
      const files = fs.readdirSync(dir);
      assert(files.some((f) => f.endsWith(".wasm")), `no .wasm in ${dir}: ${files.join(", ")}`);
    }
  });

  await check("the Vite build (WebLLM imports, aliased) chats in the page and in a worker, equal to the native CLI", async () => {
    const { wasm } = await chatApp(`${server.url}/app/index.html`, "package-vite.png");
    assert(wasm.every((w) => /^200 application\/wasm \/app\/assets\/[^/]+\.wasm$/.test(w)), `wasm responses: ${JSON.stringify(wasm)}`);
  });

  await check("the webpack build of the same app chats in the page and in a worker, equal to the native CLI", async () => {
    const { wasm } = await chatApp(`${server.url}/webpack/index.html`, "package-webpack.png");
    assert(wasm.every((w) => /^200 application\/wasm \/webpack\/dist\/[^/]+\.wasm$/.test(w)), `wasm responses: ${JSON.stringify(wasm)}`);
  });

  // The default model, as the user would chat with it (CI imports it; elsewhere it may be missing).
  if (haveSmol) {
    await check(`the Vite build chats with the default model ${SMOL_ID}, equal to the native CLI`, async () => {
      const { result } = await chatApp(`${server.url}/app/index.html`, "package-vite-smollm2.png", SMOL_ID);
      console.log(`        reply: ${JSON.stringify(result.page.reply)}`);
    });
  } else {
    const why = `the default model is not at ${smolDir} (scripts/default-model.sh imports it)`;
    if (process.env.CI) await check("the Vite build chats with the default model", async () => { throw new Error(`NOT RUN in CI: ${why}`); });
    else console.log(`NOT RUN the Vite build chats with the default model: ${why}`);
  }

  await check("every request went to 127.0.0.1 for the apps or the model, and none failed", async () => {
    eq(server.requests().filter((r) => r.status >= 400).map((r) => `${r.status} ${r.path}`), [], "failed requests");
    const strays = requests.filter((url) => {
      if (url.startsWith("data:") || url.startsWith("blob:")) return false;
      const v = new URL(url);
      return v.origin !== server.url || !/^\/(app|webpack|models)\//.test(v.pathname);
    });
    eq(strays, [], "unexpected requests");
  });

  // The dev server, where dependency pre-bundling moves modules into node_modules/.vite/ unless
  // optimizeDeps.exclude keeps the package (and its alias) out: the package README's Vite recipe.
  await check("the same app on Vite's dev server (optimizeDeps.exclude) finds the wasm and chats", async () => {
    const vite = await createServer({
      root: here, logLevel: "warn", clearScreen: false,
      server: { host: "127.0.0.1", port: 0, proxy: { "/models/": server.url } },
    });
    await vite.listen();
    try {
      const { wasm } = await chatApp(`${vite.resolvedUrls.local[0]}index.html`, "package-vite-dev.png");
      assert(wasm.every((w) => /^200 application\/wasm \/node_modules\/mlc-wgpu\/pkg\/mlc_wgpu_web_bg\.wasm$/.test(w)), `wasm responses: ${JSON.stringify(wasm)}`);
    } finally { await vite.close(); }
  });
} finally {
  await ctx.close();
  fs.rmSync(userData, { recursive: true, force: true });
  await server.close();
}
console.log(failed ? `${failed} failed` : "all passed");
process.exit(failed ? 1 : 0);
