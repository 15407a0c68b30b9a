// Artifact caching with WebLLM 0.2.86's scopes and keys (docs/web-migration.md, "Caches"), so a model downloaded by
// WebLLM on this origin is found by mlc-wgpu and vice versa:
//   scopes "webllm/config" (mlc-chat-config.json), "webllm/wasm" (model_lib), "webllm/model"
//   (tokenizer, tensor-cache.json, shards); keys are the absolute file URLs.
//   "cache":     Cache API, caches.open(scope), whole Responses keyed by Request(url).
//   "indexeddb": one database per scope (name = scope, version 1), object store "urls",
//                keyPath "url", values {url, data} with data = ArrayBuffer or parsed JSON.
//   "opfs":      the Origin Private File System, in TVM's OPFSStore layout (OPFSStore below).
// Unlike WebLLM, a file is put into the cache only after it was received completely and
// verified (Content-Length / tensor-cache `nbytes`, and `md5sum` for shards); a download cut
// midway is resumed with an HTTP Range request, or restarted when the server ignores Range.
// A shard stored after its md5 was checked carries that md5 (Cache API: the `X-Mlc-Wgpu-Md5`
// header of the stored Response; IndexedDB: an `md5` field beside `data`; OPFS: an `md5` field in
// the file's record; WebLLM ignores both fields),
// so a reload need not hash it again; shards stored by WebLLM carry none and are hashed.

import { cleanModelUrl, findModelRecord, getCacheBackend, prebuiltAppConfig } from "./config.js";
import { CacheQuotaExceededError, DownloadError } from "./errors.js";
import { md5Hex } from "./md5.js";
import { log } from "./log.js";

export const SCOPE_CONFIG = "webllm/config";
export const SCOPE_WASM = "webllm/wasm";
export const SCOPE_MODEL = "webllm/model";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Cache API backend of one scope. */
class CacheAPIStore {
  constructor(scope) { this.scope = scope; this.cache = null; }
  async open() {
    if (typeof caches === "undefined") throw new Error("The Cache API is not available here (it needs a secure context: https or localhost)");
    if (!this.cache) this.cache = await caches.open(this.scope);
    return this.cache;
  }
  async has(url) { return (await (await this.open()).match(new Request(url))) !== undefined; }
  async get(url) { return (await this.getChecked(url))?.bytes; }
  /** The bytes and the md5 they were checked against when stored (undefined if none). */
  async getChecked(url) {
    const r = await (await this.open()).match(new Request(url));
    if (!r) return undefined;
    return { bytes: new Uint8Array(await r.arrayBuffer()), md5: r.headers.get(MD5_HEADER) ?? undefined };
  }
  async put(url, bytes, contentType, md5) {
    const headers = { "Content-Type": contentType, "Content-Length": String(bytes.byteLength) };
    if (md5) headers[MD5_HEADER] = md5;
    await (await this.open()).put(new Request(url), new Response(bytes, { status: 200, headers }));
  }
  async delete(url) { return (await this.open()).delete(new Request(url)); }
  async keys() { return (await (await this.open()).keys()).map((r) => r.url); }
}

/** IndexedDB backend of one scope, in WebLLM's (TVM's ArtifactIndexedDBCache) layout. */
class IndexedDBStore {
  constructor(scope) { this.scope = scope; this.db = null; }
  open() {
    if (this.db) return Promise.resolve(this.db);
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(this.scope, 1);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains("urls")) db.createObjectStore("urls", { keyPath: "url" });
      };
      req.onsuccess = () => { this.db = req.result; resolve(this.db); };
      req.onerror = () => reject(req.error);
    });
  }
  async tx(mode, fn) {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const t = db.transaction("urls", mode);
      const r = fn(t.objectStore("urls"));
      t.oncomplete = () => resolve(r?.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  }
  async has(url) { return (await this.tx("readonly", (s) => s.count(url))) > 0; }
  async get(url) { return (await this.getChecked(url))?.bytes; }
  /** The bytes and the md5 they were checked against when stored (undefined if none). */
  async getChecked(url) {
    const v = await this.tx("readonly", (s) => s.get(url));
    if (!v) return undefined;
    return { bytes: bytesOf(v.data), md5: typeof v.md5 === "string" ? v.md5 : undefined };
  }
  async put(url, bytes, contentType, md5) {
    // JSON files are stored parsed, as WebLLM does for its "json" fetches, so WebLLM can read them.
    const data = contentType === "application/json" ? JSON.parse(dec.decode(bytes))
      : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    await this.tx("readwrite", (s) => s.put(md5 ? { url, data, md5 } : { url, data }));
  }
  async delete(url) { await this.tx("readwrite", (s) => s.delete(url)); return true; }
  async keys() { return this.tx("readonly", (s) => s.getAllKeys()); }
}

/** Origin Private File System backend of one scope, in WebLLM's (TVM's OPFSStore) layout:
 * `tvmjs-opfs-store/<scope parts, URI-encoded>/` holds per file `<sha256(url) hex>.bin` (the bytes)
 * and `<sha256(url) hex>.record.json` (`{url, nbytes, contentType}`). An entry counts only when its
 * record names the URL and the payload has `nbytes` bytes (a write cut midway is a miss). */
class OPFSStore {
  constructor(scope) { this.scope = scope; this.dir = undefined; }
  directory() {
    this.dir ??= (async () => {
      const storage = typeof navigator === "undefined" ? undefined : navigator.storage;
      if (typeof storage?.getDirectory !== "function") {
        throw new Error('cacheBackend "opfs": the Origin Private File System (navigator.storage.getDirectory) is not available here');
      }
      let dir = await (await storage.getDirectory()).getDirectoryHandle("tvmjs-opfs-store", { create: true });
      for (const part of this.scope.split("/").filter(Boolean)) {
        dir = await dir.getDirectoryHandle(encodeURIComponent(part), { create: true });
      }
      return dir;
    })();
    this.dir.catch(() => { this.dir = undefined; });
    return this.dir;
  }
  async names(url) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(url)));
    const base = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    return { payload: `${base}.bin`, record: `${base}.record.json` };
  }
  async entry(url) {
    const dir = await this.directory();
    const names = await this.names(url);
    const recordFile = await readHandle(dir, names.record);
    if (!recordFile) return undefined;
    let record;
    try { record = JSON.parse(await recordFile.text()); } catch { return undefined; }
    if (record?.url !== url || !Number.isSafeInteger(record.nbytes)) return undefined;
    const payload = await readHandle(dir, names.payload);
    return payload?.size === record.nbytes ? { payload, record } : undefined;
  }
  async has(url) { return (await this.entry(url)) !== undefined; }
  async get(url) { return (await this.getChecked(url))?.bytes; }
  /** The bytes and the md5 they were checked against when stored (undefined if none). */
  async getChecked(url) {
    const found = await this.entry(url);
    if (!found) return undefined;
    const md5 = typeof found.record.md5 === "string" ? found.record.md5 : undefined;
    return { bytes: new Uint8Array(await found.payload.arrayBuffer()), md5 };
  }
  async put(url, bytes, contentType, md5) {
    const dir = await this.directory();
    const names = await this.names(url);
    await removeHandle(dir, names.record); // no record until the payload is whole
    await writeHandle(dir, names.payload, bytes);
    const record = { url, nbytes: bytes.byteLength, contentType, ...(md5 ? { md5 } : {}) };
    await writeHandle(dir, names.record, enc.encode(JSON.stringify(record)));
  }
  async delete(url) {
    const dir = await this.directory();
    const names = await this.names(url);
    const had = await this.has(url);
    await removeHandle(dir, names.payload);
    await removeHandle(dir, names.record);
    return had;
  }
  async keys() {
    const dir = await this.directory();
    const urls = [];
    for await (const [name, handle] of dir.entries()) {
      if (!name.endsWith(".record.json")) continue;
      try {
        const record = JSON.parse(await (await handle.getFile()).text());
        if (typeof record?.url === "string") urls.push(record.url);
      } catch { /* an unreadable record is no entry */ }
    }
    return urls;
  }
}

async function readHandle(dir, name) {
  try {
    return await (await dir.getFileHandle(name)).getFile();
  } catch (e) {
    if (e?.name === "NotFoundError") return undefined;
    throw e;
  }
}

async function writeHandle(dir, name, bytes) {
  const writable = await (await dir.getFileHandle(name, { create: true })).createWritable();
  try {
    await writable.write(bytes);
    await writable.close();
  } catch (e) {
    await writable.abort().catch(() => {});
    throw e;
  }
}

async function removeHandle(dir, name) {
  try {
    await dir.removeEntry(name);
  } catch (e) {
    if (e?.name !== "NotFoundError") throw e;
  }
}

/** The header (Cache API) naming the md5 a stored file was checked against. */
const MD5_HEADER = "X-Mlc-Wgpu-Md5";

/** A stored IndexedDB value's `data` as bytes. */
function bytesOf(d) {
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  if (typeof d === "string") return enc.encode(d);
  return enc.encode(JSON.stringify(d)); // WebLLM stores JSON files parsed
}

export function openStore(backend, scope) {
  if (backend === "indexeddb") return new IndexedDBStore(scope);
  if (backend === "opfs") return new OPFSStore(scope);
  return new CacheAPIStore(scope);
}

function isQuotaError(e) {
  return e && (e.name === "QuotaExceededError" || /quota/i.test(String(e.message ?? e)));
}

async function storageEstimate() {
  try { return await navigator.storage?.estimate?.(); } catch { return undefined; }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); reject(signal.reason); }, { once: true });
  });
}

/**
 * Downloads one file completely, resuming a cut transfer with `Range` (up to `retries` times).
 * `expect` = {nbytes?, md5?}: the file is rejected unless it matches. Never touches a cache.
 */
export async function downloadFile(url, { signal, expect = {}, retries = 4, onBytes } = {}) {
  let parts = [];
  let received = 0;
  let total = expect.nbytes;
  let lastError;
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) await sleep(Math.min(200 * 2 ** (attempt - 1), 2000), signal);
    const headers = received > 0 ? { Range: `bytes=${received}-` } : {};
    let resp;
    try {
      resp = await fetch(url, { signal, headers, cache: "no-store" });
    } catch (e) {
      if (signal?.aborted) throw e;
      lastError = e; continue;
    }
    if (received > 0 && resp.status === 206) {
      const cr = resp.headers.get("Content-Range") ?? "";
      const m = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(cr);
      if (!m || Number(m[1]) !== received) { // a range we did not ask for: start over
        parts = []; received = 0; lastError = new Error(`unexpected Content-Range "${cr}"`);
        await resp.body?.cancel(); continue;
      }
      if (m[3] !== "*") total = total ?? Number(m[3]);
    } else if (resp.status === 200) {
      if (received > 0) log.info(`${url}: server ignored Range; restarting the download`);
      parts = []; received = 0;
      const cl = resp.headers.get("Content-Length");
      // Content-Length is the transfer size; it equals the file size only without Content-Encoding.
      if (cl !== null && !resp.headers.get("Content-Encoding")) total = total ?? Number(cl);
    } else {
      // 4xx is final (the file is not there); 5xx may be transient.
      lastError = new DownloadError(url, `HTTP ${resp.status} ${resp.statusText}`, resp.status);
      await resp.body?.cancel();
      if (resp.status >= 400 && resp.status < 500 && resp.status !== 408 && resp.status !== 429) throw lastError;
      continue;
    }
    try {
      const reader = resp.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value); received += value.byteLength;
        onBytes?.(received, total);
      }
    } catch (e) {
      if (signal?.aborted) throw e;
      lastError = e; // cut midway: keep what we have and ask for the rest
      log.info(`${url}: transfer cut after ${received} bytes (${e?.message ?? e}); resuming`);
      continue;
    }
    if (total !== undefined && received < total) { lastError = new Error(`short body: ${received} of ${total} bytes`); continue; }
    const bytes = concat(parts, received);
    if (total !== undefined && bytes.byteLength !== total) {
      throw new DownloadError(url, `size ${bytes.byteLength} bytes, expected ${total}`);
    }
    if (expect.md5 && md5Hex(bytes) !== expect.md5) {
      // A corrupt body is not retried with Range (the bad bytes may be anywhere): start over once more.
      parts = []; received = 0; lastError = new Error("md5 mismatch"); continue;
    }
    return bytes;
  }
  throw new DownloadError(url, `gave up after ${retries + 1} attempts: ${lastError?.message ?? lastError}`);
}

function concat(parts, n) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.byteLength; }
  return out;
}

function contentTypeOf(url) {
  return url.endsWith(".json") ? "application/json" : "application/octet-stream";
}

/** Fetch-through: the cached bytes, or download + verify + store (+ return). */
export async function fetchWithCache(store, url, opts = {}) {
  const hit = await store.get(url);
  if (hit) return { bytes: hit, fromCache: true };
  const bytes = await downloadFile(url, opts);
  await putVerified(store, url, bytes);
  return { bytes, fromCache: false };
}

/** Stores a received and verified file; `md5`: the md5 it was checked against, if it was. */
export async function putVerified(store, url, bytes, md5) {
  try {
    await store.put(url, bytes, contentTypeOf(url), md5);
  } catch (e) {
    if (isQuotaError(e)) throw new CacheQuotaExceededError(url, bytes.byteLength, await storageEstimate(), e);
    throw e;
  }
}

/** The tensor index of a cached model, or undefined (tensor-cache.json, else ndarray-cache.json). */
async function cachedTensorIndex(store, base) {
  for (const name of ["tensor-cache.json", "ndarray-cache.json"]) {
    const b = await store.get(new URL(name, base).href);
    if (b) return { name, index: JSON.parse(dec.decode(b)) };
  }
  return undefined;
}

function recordAndBase(modelId, appConfig) {
  const cfg = appConfig ?? prebuiltAppConfig;
  const rec = findModelRecord(modelId, cfg);
  return { rec, base: cleanModelUrl(rec.model), backend: getCacheBackend(cfg) };
}

/** True iff the tensor index and every shard it lists are cached (never touches the network). */
export async function hasModelInCache(modelId, appConfig) {
  const { base, backend } = recordAndBase(modelId, appConfig);
  const store = openStore(backend, SCOPE_MODEL);
  const t = await cachedTensorIndex(store, base);
  if (!t) return false;
  for (const r of t.index.records) if (!(await store.has(new URL(r.dataPath, base).href))) return false;
  return true;
}

/** Deletes every shard and the tokenizer files. As in WebLLM, tensor-cache.json itself stays. */
export async function deleteModelInCache(modelId, appConfig) {
  const { base, backend } = recordAndBase(modelId, appConfig);
  const store = openStore(backend, SCOPE_MODEL);
  let t = await cachedTensorIndex(store, base);
  if (!t) {
    // WebLLM fetches the index (possibly from the network) to learn the shard names.
    try {
      const b = await downloadFile(new URL("tensor-cache.json", base).href, { retries: 0 });
      t = { index: JSON.parse(dec.decode(b)) };
    } catch { t = undefined; }
  }
  for (const r of t?.index.records ?? []) await store.delete(new URL(r.dataPath, base).href);
  await store.delete(new URL("tokenizer.model", base).href);
  await store.delete(new URL("tokenizer.json", base).href);
}

export async function deleteChatConfigInCache(modelId, appConfig) {
  const { base, backend } = recordAndBase(modelId, appConfig);
  await openStore(backend, SCOPE_CONFIG).delete(new URL("mlc-chat-config.json", base).href);
}

export async function deleteModelWasmInCache(modelId, appConfig) {
  const { rec, backend } = recordAndBase(modelId, appConfig);
  if (rec.model_lib) await openStore(backend, SCOPE_WASM).delete(new URL(rec.model_lib, typeof location !== "undefined" ? location.href : undefined).href);
}

export async function deleteModelAllInfoInCache(modelId, appConfig) {
  await deleteModelInCache(modelId, appConfig);
  await deleteModelWasmInCache(modelId, appConfig);
  await deleteChatConfigInCache(modelId, appConfig);
}
