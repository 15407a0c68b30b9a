// Subresource-integrity checks of config/tokenizer files (docs/web-migration.md, "Integrity"),
// with WebCrypto.

import { IntegrityError } from "./errors.js";
import { log } from "./log.js";

const ALGOS = { sha256: ["SHA-256", 32], sha384: ["SHA-384", 48], sha512: ["SHA-512", 64] };

function b64decode(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function isValidSRI(sri) {
  if (typeof sri !== "string") return false;
  const m = /^(sha256|sha384|sha512)-([A-Za-z0-9+/]+={0,2})$/.exec(sri.trim());
  if (!m) return false;
  try { return b64decode(m[2]).length === ALGOS[m[1]][1]; } catch { return false; }
}

export async function verifyIntegrity(data, sri, url, onFailure = "error") {
  if (!isValidSRI(sri)) {
    throw new Error(`Invalid SRI hash format: "${sri}". Expected "sha256-<base64>", "sha384-<base64>" or "sha512-<base64>".`);
  }
  const [algo, b64] = sri.trim().split(/-(.*)/s);
  const bytes = data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data : new TextEncoder().encode(String(data));
  const digest = new Uint8Array(await crypto.subtle.digest(ALGOS[algo][0], bytes));
  let bin = "";
  for (const b of digest) bin += String.fromCharCode(b);
  const actual = `${algo}-${btoa(bin)}`;
  if (btoa(bin) === b64) return;
  const err = new IntegrityError(url, sri, actual);
  if (onFailure === "warn") log.warn(err.message);
  else throw err;
}
