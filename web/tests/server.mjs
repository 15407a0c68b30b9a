// A small static server for the browser tests and the demo (node, no dependencies).
// - serves mounted folders on 127.0.0.1 with correct MIME types (application/wasm for .wasm),
// - supports HEAD and single-range `Range: bytes=a-b` requests (206 + Content-Range),
// - logs every request and lets a test block, fail or cut responses by path, so caching,
//   offline reloads and resumed downloads can be checked for real.
// Usage as a program: node server.mjs --port 8000 --mount /demo/=../../demo --mount /models/X/resolve/main/=DIR
// [--isolated] (COOP/COEP headers: the CPU engine's threads in a worker)

import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const MIME = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm", ".json": "application/json", ".css": "text/css; charset=utf-8",
  ".png": "image/png", ".svg": "image/svg+xml", ".bin": "application/octet-stream", ".txt": "text/plain; charset=utf-8",
  ".ts": "text/plain; charset=utf-8", ".model": "application/octet-stream",
};

/**
 * @param {{mounts: [string, string][], port?: number, extraRoutes?: (req, res) => boolean, isolated?: boolean}} opts
 *   mounts: [urlPrefix ending in "/", directory] pairs; the longest matching prefix wins.
 *   isolated: send COOP/COEP on every response, which makes the pages cross-origin isolated
 *   (SharedArrayBuffer, hence the CPU engine's threads).
 */
export function startServer({ mounts = [], models = [], port = 0, isolated = false } = {}) {
  // Each model {id, dir} is served at /models/ID/resolve/main/ (the Hugging Face layout WebLLM
  // expects), and /models/index.json lists them (the demo's picker reads it, so it works offline).
  mounts = [...mounts, ...models.map((m) => [`/models/${m.id}/resolve/main/`, m.dir])];
  const extraRoutes = (req, res, entry) => {
    if (new URL(req.url, "http://x").pathname !== "/models/index.json") return false;
    entry.status = 200;
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
    res.end(JSON.stringify({ models: models.map((m) => ({ model_id: m.id, path: `/models/${m.id}/resolve/main/` })) }));
    return true;
  };
  const state = {
    log: [],       // {method, path, range, status, bytes}
    rules: [],     // {match: RegExp|fn, action: "block"|"status"|"cut", status?, afterBytes?, times?, ignoreRange?}
  };
  const sorted = [...mounts].sort((a, b) => b[0].length - a[0].length);

  function resolve(urlPath) {
    for (const [prefix, dir] of sorted) {
      if (urlPath.startsWith(prefix)) {
        const rel = decodeURIComponent(urlPath.slice(prefix.length));
        const file = path.resolve(dir, rel);
        if (!file.startsWith(path.resolve(dir))) return undefined; // no escaping the mount
        return file;
      }
    }
    return undefined;
  }

  function ruleFor(p) {
    for (const r of state.rules) {
      const hit = typeof r.match === "function" ? r.match(p) : r.match.test(p);
      if (hit && (r.times === undefined || r.times > 0)) {
        if (r.times !== undefined) r.times -= 1;
        return r;
      }
    }
    return undefined;
  }

  const server = http.createServer((req, res) => {
    const u = new URL(req.url, "http://127.0.0.1");
    const entry = { method: req.method, path: u.pathname, range: req.headers.range, status: 0, bytes: 0 };
    state.log.push(entry);
    if (isolated) {
      res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
      res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
    }
    const finish = (status, headers, body) => {
      entry.status = status;
      res.writeHead(status, { "Cache-Control": "no-store", ...headers });
      res.end(body);
    };
    if (extraRoutes(req, res, entry)) return;
    const rule = ruleFor(u.pathname);
    if (rule?.action === "block") { req.socket.destroy(); entry.status = -1; return; }
    if (rule?.action === "status") return finish(rule.status, { "Content-Type": "text/plain" }, `status ${rule.status} by test rule\n`);

    const file = resolve(u.pathname);
    let stat;
    try { stat = file && fs.statSync(file); } catch { stat = undefined; }
    if (stat?.isDirectory()) {
      const idx = path.join(file, "index.html");
      if (fs.existsSync(idx)) { stat = fs.statSync(idx); return serveFile(idx, stat); }
      stat = undefined;
    }
    if (!stat) return finish(404, { "Content-Type": "text/plain" }, "not found\n");
    return serveFile(file, stat);

    function serveFile(f, st) {
      const type = MIME[path.extname(f)] ?? "application/octet-stream";
      let start = 0, end = st.size - 1, status = 200;
      const headers = { "Content-Type": type, "Accept-Ranges": "bytes" };
      const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
      if (m && !rule?.ignoreRange) {
        if (m[1] === "") { start = Math.max(0, st.size - Number(m[2])); }
        else { start = Number(m[1]); if (m[2] !== "") end = Math.min(end, Number(m[2])); }
        if (start > end || start >= st.size) {
          return finish(416, { "Content-Range": `bytes */${st.size}` }, "");
        }
        status = 206;
        headers["Content-Range"] = `bytes ${start}-${end}/${st.size}`;
      }
      headers["Content-Length"] = String(end - start + 1);
      entry.status = status;
      res.writeHead(status, { "Cache-Control": "no-store", ...headers });
      if (req.method === "HEAD") return res.end();
      const stream = fs.createReadStream(f, { start, end });
      if (rule?.action === "cut") {
        // Send `afterBytes` bytes of this response, then drop the connection mid-body.
        let sent = 0;
        stream.on("data", (chunk) => {
          const room = rule.afterBytes - sent;
          if (room <= 0) return;
          const part = chunk.subarray(0, room);
          sent += part.length; entry.bytes += part.length;
          res.write(part);
          if (sent >= rule.afterBytes) {
            stream.destroy();
            // Let the bytes leave before the reset so the client really sees a partial body.
            setTimeout(() => res.socket?.destroy(), 50);
          }
        });
        return;
      }
      stream.on("data", (c) => { entry.bytes += c.length; });
      stream.pipe(res);
    }
  });

  return new Promise((resolveStart) => {
    server.listen(port, "127.0.0.1", () => {
      const { port: p } = server.address();
      resolveStart({
        url: `http://127.0.0.1:${p}`,
        port: p,
        state,
        requests: () => state.log,
        clearLog: () => { state.log.length = 0; },
        addRule: (r) => state.rules.push(r),
        clearRules: () => { state.rules.length = 0; },
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

// Program mode (used by scripts/demo.sh).
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  let port = 8000;
  const mounts = [];
  const models = [];
  let isolated = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") port = Number(args[++i]);
    else if (args[i] === "--mount") { const [p, d] = args[++i].split("="); mounts.push([p, d]); }
    else if (args[i] === "--model") { const [id, d] = args[++i].split("="); models.push({ id, dir: d }); }
    else if (args[i] === "--isolated") isolated = true;
  }
  const s = await startServer({ mounts, models, port, isolated });
  console.log(`serving on ${s.url}`);
}
