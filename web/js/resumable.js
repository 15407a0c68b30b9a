// Crash-resumable generation (WebLLM 0.2.86's `extra_body.resumable`): a chat request journals its
// output to the Origin Private File System as it is generated, so that after the page (or worker)
// dies the text can be read back and the generation continued (docs/web-migration.md, "Resumable
// generation"). This module owns the journal; engine.js runs the generations.
//
// Layout (WebLLM's root folder): webllm-resume/sessions/<sessionId>/manifest.json and journal.jsonl,
// one JSON record per line, appended in order:
//   {type: "begin", sessionId, modelId, createdAtMs, request}   the request as run (its seed included)
//   {type: "config", resumable}                                  the normalised resumable settings
//   {type: "tokens", ids, text, processed}                       output token ids, their text delta,
//                                                                and prompt + output tokens so far
//   {type: "finished", finishReason, emittedTokens} | {type: "aborted"} | {type: "error", name, message}
// OPFS commits a writable file on close() (a crash mid-write leaves the file as it was), and a
// torn last line would be ignored on reading.

import { log } from "./log.js";

export const RESUMABLE_ROOT = "webllm-resume";
const MANIFEST = "manifest.json";
const JOURNAL = "journal.jsonl";
const DEFAULT_CHECKPOINT_INTERVAL_TOKENS = 512;
/** The modulus of WebLLM's seed: an unseeded resumable request gets a seed below it (see begin). */
const SEED_MODULUS = 2147483647;

/** WebLLM's error for a `sessionId` whose folder holds a session already. */
export class ResumableSessionExistsError extends Error {
  constructor(sessionId) {
    super(`Resumable session already exists: ${sessionId}`);
    this.name = "ResumableSessionExistsError";
  }
}

const OPFS_UNAVAILABLE = "OPFS is unavailable in this environment";

function isOpfsUnavailable(e) { return e instanceof Error && e.message === OPFS_UNAVAILABLE; }

/** A session id names a folder: WebLLM refuses "", ".", "..", and ids with "/" or NUL. */
export function assertSessionId(sessionId) {
  if (typeof sessionId !== "string" || sessionId === "" || sessionId === "." || sessionId === ".." ||
      sessionId.includes("/") || sessionId.includes("\0")) {
    throw new Error(`Invalid resumable session id: ${sessionId}`);
  }
}

/** `extra_body.resumable` with WebLLM's defaults, or undefined unless `enabled: true`. */
export function normalizeResumableConfig(config) {
  if (config?.enabled !== true) return undefined;
  const interval = config.checkpointIntervalTokens ?? DEFAULT_CHECKPOINT_INTERVAL_TOKENS;
  if (!Number.isInteger(interval)) throw new Error("resumable.checkpointIntervalTokens must be an integer.");
  if (interval <= 0) throw new Error("resumable.checkpointIntervalTokens must be positive.");
  const sessionId = config.sessionId ?? globalThis.crypto?.randomUUID?.() ?? `session-${Date.now()}`;
  assertSessionId(sessionId);
  return {
    enabled: true,
    sessionId,
    checkpointIntervalTokens: interval,
    checkpointPrompt: config.checkpointPrompt ?? true,
    durabilityMode: config.durabilityMode ?? "exact",
    strictPersistence: config.strictPersistence ?? false,
    storeCheckpointLogits: config.storeCheckpointLogits ?? true,
  };
}

const GRAMMAR_FORMATS = ["json_object", "grammar", "structural_tag"];

/** A chat request's resumable settings, after WebLLM's refusals (plain Errors), or undefined. */
export function resumableConfigOf(request) {
  const config = normalizeResumableConfig(request.extra_body?.resumable);
  if (config === undefined) return undefined;
  if ((request.n ?? 1) > 1) throw new Error("Resumable generation currently requires n <= 1.");
  if (GRAMMAR_FORMATS.includes(request.response_format?.type)) {
    throw new Error("Resumable generation does not support grammar-constrained response formats.");
  }
  const multimodal = request.messages.some((message) => Array.isArray(message.content) &&
    message.content.some((part) => typeof part === "object" && part !== null && part.type !== "text"));
  if (multimodal) throw new Error("Resumable generation supports text-only prompts.");
  return config;
}

/** What a session's journal says (WebLLM's replay state, without KV checkpoints). */
function summarize(sessionId, manifest, lines) {
  const state = {
    sessionId, modelId: manifest?.modelId ?? "", request: undefined, resumable: undefined,
    ids: [], text: "", processedSeqLen: 0, finished: false, aborted: false, errorMessage: undefined,
    records: 0, corrupt: false,
  };
  lines.forEach((line, i) => {
    if (state.corrupt || line === "") return;
    let record;
    try { record = JSON.parse(line); } catch {
      // A torn last line is a write the crash cut short; anything earlier is damage.
      if (i < lines.length - 1) state.corrupt = true;
      return;
    }
    state.records += 1;
    switch (record.type) {
      case "begin": state.modelId = record.modelId ?? state.modelId; state.request = record.request; break;
      case "config": state.resumable = record.resumable; break;
      case "tokens":
        state.ids.push(...record.ids);
        state.text += record.text;
        state.processedSeqLen = record.processed;
        break;
      case "finished": state.finished = true; break;
      case "aborted": state.aborted = true; break;
      case "error": state.errorMessage = record.message; break;
      default: break;
    }
  });
  return state;
}

/** Why a session cannot be continued (undefined: it can), as WebLLM words it. */
export function continuationBlockReason(state) {
  if (state.finished) return "generation already finished";
  if (state.corrupt) return "journal scan stopped at a corrupt record";
  if (state.request === undefined) return "missing prompt token record";
  if (state.resumable === undefined) return "missing resumable generation config";
  if (state.modelId === "") return "missing model id";
  return undefined;
}

/** WebLLM's `ResumeProbeResult` for a session. */
export function probe(state) {
  const result = {
    sessionId: state.sessionId, resumable: false, modelId: state.modelId,
    emittedTokens: state.ids.length, processedSeqLen: state.processedSeqLen,
    recoveryMode: state.ids.length > 0 ? "text_only" : "none",
  };
  if (state.records === 0) return { ...result, reason: "missing journal records" };
  if (state.finished) return { ...result, recoveryMode: "none", reason: "generation finished" };
  const blocked = continuationBlockReason(state);
  if (blocked !== undefined) return { ...result, reason: blocked };
  const reason = state.aborted ? "generation aborted"
    : state.errorMessage !== undefined ? `engine error: ${state.errorMessage}` : "generation incomplete";
  return { ...result, resumable: true, recoveryMode: "token_replay", reason };
}

/** WebLLM's `ResumeResult` that only reads the journal back. */
export function textOnlyResult(state) {
  return {
    sessionId: state.sessionId, recoveredText: state.text, emittedTokens: state.ids.length,
    processedSeqLen: state.processedSeqLen, replayedTokens: 0, recoveryMode: "text_only",
  };
}

async function readText(dir, name) {
  try {
    return await (await (await dir.getFileHandle(name)).getFile()).text();
  } catch (e) {
    if (e?.name === "NotFoundError") return undefined;
    throw e;
  }
}

/** The sessions in OPFS, and which of them a generation in this realm is writing. */
export class ResumableStore {
  constructor() {
    this.active = new Set();
  }

  async root(create) {
    const storage = globalThis.navigator?.storage;
    if (typeof storage?.getDirectory !== "function") throw new Error(OPFS_UNAVAILABLE);
    const top = await storage.getDirectory();
    try {
      const mine = await top.getDirectoryHandle(RESUMABLE_ROOT, { create });
      return await mine.getDirectoryHandle("sessions", { create });
    } catch (e) {
      if (!create && e?.name === "NotFoundError") return undefined;
      throw e;
    }
  }

  async sessionDir(sessionId, create) {
    assertSessionId(sessionId);
    const sessions = await this.root(create);
    if (!sessions) return undefined;
    try {
      return await sessions.getDirectoryHandle(sessionId, { create });
    } catch (e) {
      if (!create && e?.name === "NotFoundError") return undefined;
      throw e;
    }
  }

  /** A session's journal summarised, or undefined when there is no such session. */
  async open(sessionId) {
    const dir = await this.sessionDir(sessionId, false);
    if (!dir) return undefined;
    const [manifestText, journalText] = await Promise.all([readText(dir, MANIFEST), readText(dir, JOURNAL)]);
    if (manifestText === undefined && journalText === undefined) return undefined;
    let manifest;
    try { manifest = JSON.parse(manifestText ?? "null"); } catch { manifest = undefined; }
    return summarize(sessionId, manifest, (journalText ?? "").split("\n"));
  }

  /** Every session, by id (empty without OPFS). */
  async list() {
    let sessions;
    try { sessions = await this.root(false); } catch (e) {
      if (isOpfsUnavailable(e)) return [];
      throw e;
    }
    if (!sessions) return [];
    const ids = [];
    for await (const [name, handle] of sessions.entries()) if (handle.kind === "directory") ids.push(name);
    const states = [];
    for (const id of ids.sort()) {
      try {
        const state = await this.open(id);
        if (state) states.push(state);
      } catch (e) {
        states.push({ sessionId: id, failure: e });
      }
    }
    return states;
  }

  /**
   * Marks a session as being written, in this realm and (through the Web Locks API, where there is
   * one) in every tab and worker of the origin; WebLLM's error when another generation writes it.
   * Resolves with the function that releases it.
   */
  async claim(sessionId) {
    const busy = () => new Error(`Resumable session is already active: ${sessionId}`);
    if (this.active.has(sessionId)) throw busy();
    this.active.add(sessionId);
    const locks = globalThis.navigator?.locks;
    if (typeof locks?.request !== "function") return () => this.active.delete(sessionId);
    let unlock;
    const held = await new Promise((resolve, reject) => {
      locks.request(`${RESUMABLE_ROOT}/${sessionId}`, { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        return lock === null ? undefined : new Promise((r) => { unlock = r; });
      }).catch(reject);
    }).catch((e) => { this.active.delete(sessionId); throw e; });
    if (!held) {
      this.active.delete(sessionId);
      throw busy();
    }
    return () => { this.active.delete(sessionId); unlock(); };
  }

  /** Removes a session (nothing to do for an unknown id, or without OPFS). */
  async delete(sessionId) {
    assertSessionId(sessionId);
    const release = await this.claim(sessionId);
    try {
      const sessions = await this.root(false);
      await sessions?.removeEntry(sessionId, { recursive: true });
    } catch (e) {
      if (e?.name !== "NotFoundError" && !isOpfsUnavailable(e)) throw e;
    } finally {
      release();
    }
  }

  /**
   * Starts the journal of a new session for `request` on `modelId`. An unseeded request gets a
   * random seed (WebLLM seeds an unseeded request from the clock, so its output is no less random),
   * so that a continuation draws exactly what the uninterrupted run would have.
   * Returns the journal and the request to run; without OPFS (or with a failing one) and without
   * `strictPersistence`, the request runs unjournaled as in WebLLM (journal undefined, a warning).
   */
  async begin(config, modelId, request) {
    const run = request.seed === undefined || request.seed === null
      ? { ...request, seed: Math.floor(Math.random() * SEED_MODULUS) } : request;
    const release = await this.claim(config.sessionId);
    try {
      const dir = await this.sessionDir(config.sessionId, true);
      const existing = [];
      for await (const name of dir.keys()) existing.push(name);
      if (existing.length > 0) throw new ResumableSessionExistsError(config.sessionId);
      const now = Date.now();
      const journal = new Journal(dir, config, release, 0, 0);
      await writeFile(dir, MANIFEST, `${JSON.stringify({ sessionId: config.sessionId, createdAtMs: now, updatedAtMs: now, modelId })}\n`);
      journal.append({ type: "begin", sessionId: config.sessionId, modelId, createdAtMs: now, request: run });
      journal.append({ type: "config", resumable: config });
      await journal.flush();
      return { journal, request: run };
    } catch (e) {
      release();
      if (e instanceof ResumableSessionExistsError || config.strictPersistence) throw e;
      log.warn("Resumable journal disabled:", e);
      return { journal: undefined, request };
    }
  }

  /** The journal of an existing session, continued by a resumed generation. */
  async attach(state, release) {
    const dir = await this.sessionDir(state.sessionId, false);
    if (!dir) throw new Error(`Resumable session not found: ${state.sessionId}`);
    return new Journal(dir, state.resumable, release, state.ids.length, state.processedSeqLen);
  }
}

async function writeFile(dir, name, text, append = false) {
  const handle = await dir.getFileHandle(name, { create: true });
  const writable = await handle.createWritable({ keepExistingData: append });
  try {
    if (append) await writable.seek((await handle.getFile()).size);
    await writable.write(text);
  } finally {
    await writable.close();
  }
}

/**
 * One session's journal while a generation writes it. Records are appended in order, batched into
 * one write while a write is under way; `flush()` waits for all appended so far. A write failure
 * disables the journal (and is thrown by flush with `strictPersistence`).
 */
export class Journal {
  constructor(dir, config, release, emittedTokens, processed) {
    this.dir = dir;
    this.config = config;
    this.release = release;
    this.emittedTokens = emittedTokens;
    /** Prompt and output tokens so far (WebLLM's processedSeqLen). */
    this.processed = processed;
    this.pending = [];
    this.written = Promise.resolve();
    this.failure = undefined;
  }

  get sessionId() { return this.config.sessionId; }
  /** WebLLM's "exact" mode: a chunk is handed out only once its tokens are journaled. */
  get exact() { return this.config.durabilityMode !== "relaxed"; }

  append(record) {
    if (this.failure) return;
    this.pending.push(`${JSON.stringify(record)}\n`);
    if (this.pending.length === 1) {
      this.written = this.written.then(async () => {
        const text = this.pending.join("");
        this.pending = [];
        if (this.failure) return;
        try { await writeFile(this.dir, JOURNAL, text, true); } catch (e) { this.failure = e; }
      });
    }
  }

  /** Output tokens and the text they add (engine.js calls this from the wasm engine's hook). */
  tokens(ids, text, processed) {
    this.emittedTokens += ids.length;
    this.processed = processed;
    this.append({ type: "tokens", ids: Array.from(ids), text, processed });
  }

  async flush() {
    await this.written;
    if (this.failure) {
      if (this.config.strictPersistence) throw this.failure;
      if (!this.warned) log.warn("Resumable journal disabled:", this.failure);
      this.warned = true;
    }
  }

  /** Ends the journal by how the generation ended: a finish reason, an abort, or an error. */
  async end(finishReason, error) {
    if (error !== undefined) {
      this.append({ type: "error", name: error?.name, message: error?.message ?? String(error) });
    } else if (finishReason === "abort") {
      this.append({ type: "aborted" });
    } else {
      this.append({ type: "finished", finishReason, emittedTokens: this.emittedTokens });
    }
    try { await this.flush(); } finally { this.release(); }
  }
}
