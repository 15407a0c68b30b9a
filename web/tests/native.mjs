// What the browser tests compare against: the tiny Qwen2 test artifact, made servable, the default
// model's folder, and the native CLI (`mlc-wgpu serve --device cpu`) answering the same requests.

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** The offline default model, imported by scripts/default-model.sh. */
export const SMOL_ID = "SmolLM2-135M-Instruct-q4f16_1-MLC";

/** Its folder: $MLC_WGPU_SMOLLM2_DIR, else the CLI's cache rule (as scripts/default-model.sh). */
export function defaultModelDir() {
  const cacheRoot = process.env.MLC_WGPU_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "mlc-wgpu");
  return process.env.MLC_WGPU_SMOLLM2_DIR ?? path.join(cacheRoot, "models", SMOL_ID);
}

/**
 * Copies conformance/fixtures/tiny-qwen2 into `dir` with a tokenizer.json beside it: tiny-qwen2 has
 * none, and its vocabulary is Qwen2.5's. Returns the parsed tensor-cache.json.
 */
export function prepareTinyQwen2(repo, dir) {
  const src = path.join(repo, "conformance/fixtures/tiny-qwen2/mlc");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  fs.copyFileSync(path.join(repo, "conformance/fixtures/tokenizers/qwen2.5-0.5b-instruct.tokenizer.json"), path.join(dir, "tokenizer.json"));
  return JSON.parse(fs.readFileSync(path.join(dir, "tensor-cache.json"), "utf8"));
}

/** Starts `BIN serve` on a free port for `modelDir`; `post(route, body)` sends it a request. */
export async function nativeServe(nativeBin, modelDir) {
  const child = spawn(nativeBin, ["serve", "--model", modelDir, "--port", "0", "--device", "cpu"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d) => { err += d; });
  const base = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`native serve exited with ${code}: ${err}`)));
  });
  return {
    async post(route, body) {
      const r = await fetch(`${base}${route}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const j = await r.json();
      if (!r.ok) throw new Error(`native ${route}: ${JSON.stringify(j)}`);
      return j;
    },
    close() { child.kill(); },
  };
}
