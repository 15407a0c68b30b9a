// MD5 of a byte array (RFC 1321). Needed because tensor-cache.json records an `md5sum` per shard
// and WebCrypto has no MD5: a shard is put into the cache only when its size and MD5 match, so a
// truncated or corrupted download can never become a cache entry. (WebLLM checks neither.)

const S = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21];
const K = new Int32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0;

/** @param {Uint8Array} bytes @returns {string} lowercase hex digest */
export function md5Hex(bytes) {
  const len = bytes.length;
  // Padding: 0x80, zeros to 56 mod 64, then the bit length (little endian, 64 bits).
  const tailLen = ((len + 8) >> 6) * 64 + 64 - len;
  const tail = new Uint8Array(tailLen);
  tail[0] = 0x80;
  const bitLen = len * 8;
  const tv = new DataView(tail.buffer);
  tv.setUint32(tailLen - 8, bitLen >>> 0, true);
  tv.setUint32(tailLen - 4, Math.floor(bitLen / 2 ** 32), true);

  let a0 = 0x67452301 | 0, b0 = 0xefcdab89 | 0, c0 = 0x98badcfe | 0, d0 = 0x10325476 | 0;
  const M = new Int32Array(16);
  const fullBlocks = len >> 6;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The last partial block's bytes are copied in front of the padding.
  const rem = len & 63;
  const last = new Uint8Array(rem + tailLen);
  last.set(bytes.subarray(len - rem), 0);
  last.set(tail, rem);
  const lv = new DataView(last.buffer);
  const nBlocks = fullBlocks + last.length / 64;
  for (let blk = 0; blk < nBlocks; blk++) {
    if (blk < fullBlocks) for (let j = 0; j < 16; j++) M[j] = dv.getInt32(blk * 64 + j * 4, true);
    else for (let j = 0; j < 16; j++) M[j] = lv.getInt32((blk - fullBlocks) * 64 + j * 4, true);
    let A = a0, B = b0, C = c0, D = d0;
    for (let i = 0; i < 64; i++) {
      let F, g;
      if (i < 16) { F = (B & C) | (~B & D); g = i; }
      else if (i < 32) { F = (D & B) | (~D & C); g = (5 * i + 1) & 15; }
      else if (i < 48) { F = B ^ C ^ D; g = (3 * i + 5) & 15; }
      else { F = C ^ (B | ~D); g = (7 * i) & 15; }
      F = (F + A + K[i] + M[g]) | 0;
      A = D; D = C; C = B;
      B = (B + ((F << S[i]) | (F >>> (32 - S[i])))) | 0;
    }
    a0 = (a0 + A) | 0; b0 = (b0 + B) | 0; c0 = (c0 + C) | 0; d0 = (d0 + D) | 0;
  }
  let hex = "";
  for (const w of [a0, b0, c0, d0]) for (let k = 0; k < 4; k++) hex += ((w >>> (8 * k)) & 255).toString(16).padStart(2, "0");
  return hex;
}
