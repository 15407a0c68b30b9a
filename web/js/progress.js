// InitProgressReport texts in WebLLM 0.2.86's wording and order (docs/web-migration.md,
// "Progress reports"). Apps display these
// and some parse them (e.g. look for "Finish loading"), so the strings are kept verbatim.
// Every report also carries mlc-wgpu's extra fields `phase`, `loadedBytes` and `totalBytes`
// (a superset: WebLLM apps ignore unknown fields) so a UI can draw a byte-accurate bar.

const MB = 1024 * 1024;

export function startReport() {
  return { progress: 0, timeElapsed: 0, text: "Start to fetch params", phase: "fetch", loadedBytes: 0, totalBytes: 0 };
}

/** After each shard download (i = shards completed so far, not the shard index). */
export function fetchReport(i, n, fetchedBytes, totalBytes, secs) {
  const t = Math.ceil(secs);
  return {
    progress: totalBytes > 0 ? fetchedBytes / totalBytes : 1,
    timeElapsed: t,
    text: `Fetching param cache[${i}/${n}]: ${Math.ceil(fetchedBytes / MB)}MB fetched. ` +
      `${Math.floor((fetchedBytes * 100) / totalBytes)}% completed, ${t} secs elapsed. ` +
      "It can take a while when we first visit this page to populate the cache. Later refreshes will become faster.",
    phase: "fetch", loadedBytes: fetchedBytes, totalBytes,
  };
}

/** After each shard is loaded into the engine (progress restarts at 0 for this phase). */
export function loadReport(i, n, loadedBytes, totalBytes, secs) {
  const t = Math.ceil(secs);
  return {
    progress: totalBytes > 0 ? loadedBytes / totalBytes : 1,
    timeElapsed: t,
    text: `Loading model from cache[${i}/${n}]: ${Math.ceil(loadedBytes / MB)}MB loaded. ` +
      `${Math.floor((loadedBytes * 100) / totalBytes)}% completed, ${t} secs elapsed.`,
    phase: "load", loadedBytes, totalBytes,
  };
}

/** The final report. WebLLM says "Finish loading on WebGPU - <adapter>"; on the CPU engine we
 * say so honestly, with its threads and why (`detail`), but keep the "Finish loading on " prefix
 * apps look for. `detail`: the adapter's name on WebGPU, the reason on the CPU engine; `threads`:
 * the CPU engine's thread count. */
export function finishReport(backend, detail, secs, totalBytes, threads = 1) {
  const where = backend === "cpu" ? `CPU, ${threads} thread${threads === 1 ? "" : "s"} (${detail})` : `WebGPU - ${detail}`;
  return { progress: 1, timeElapsed: secs, text: `Finish loading on ${where}`, phase: "done", loadedBytes: totalBytes, totalBytes };
}

/** Shown (and logged) when WebGPU is missing and the CPU engine is used instead. */
export const CPU_FALLBACK_NOTICE =
  "WebGPU is not available in this browser: running on the CPU engine instead (same API and outputs, much slower).";

export function noticeReport(text) {
  return { progress: 0, timeElapsed: 0, text, phase: "notice", loadedBytes: 0, totalBytes: 0 };
}
