// llama.cpp on the same GGUF and thread count as `mlc-wgpu bench --device cpu`, for the side-by-side
// in docs/performance.md ("The CPU engines"): node-llama-cpp's prebuilt CPU build, installed with
// `npm install node-llama-cpp@3.21.1` in any folder (NODE_PATH or run from there).
//
//   node scripts/bench-llama-cpp.mjs GGUF THREADS [PROMPT_TOKENS=64] [GEN_TOKENS=64]
//
// Prints one JSON line: time to first token after a random prompt (prompt evaluation and the first
// greedy token), and decode tok/s over the tokens after the first, as `bench` measures them; also
// the prompt and the greedy tokens, so that `mlc-wgpu generate --greedy --tokens PROMPT` can show
// that both engines run the same model (scripts/mlc-to-gguf.py).
import { getLlama } from "node-llama-cpp";

const [gguf, threadsArg, promptArg = "64", genArg = "64"] = process.argv.slice(2);
if (!gguf || !threadsArg) {
  console.error("usage: node scripts/bench-llama-cpp.mjs GGUF THREADS [PROMPT_TOKENS] [GEN_TOKENS]");
  process.exit(2);
}
const threads = Number(threadsArg);
const [promptTokens, genTokens] = [Number(promptArg), Number(genArg)];

const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads });
const model = await llama.loadModel({ modelPath: gguf });
const context = await model.createContext({ contextSize: 1024, threads: { ideal: threads, min: threads } });
const sequence = context.getSequence();

// Random ids below the vocabulary (seeded LCG: the same prompt every run), as `bench` does.
let state = 1;
const vocab = model.tokenizer.vocabularySize ?? 32000;
const prompt = Array.from({ length: promptTokens }, () => {
  state = (state * 1103515245 + 12345) % 2147483648;
  return 1 + (state % (vocab - 1));
});

const started = performance.now();
let first = null;
const tokens = [];
for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
  if (first === null) first = performance.now();
  tokens.push(token);
  if (tokens.length >= genTokens) break;
}
const ended = performance.now();
console.log(
  JSON.stringify({
    engine: "llama.cpp (node-llama-cpp 3.21.1, prebuilt CPU build)",
    gguf,
    threads,
    prompt_tokens: promptTokens,
    ttft_s: (first - started) / 1000,
    gen_tokens: tokens.length,
    decode_tok_s: (tokens.length - 1) / ((ended - first) / 1000),
    prompt,
    tokens,
  }),
);
await context.dispose();
await model.dispose();
