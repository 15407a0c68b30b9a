// Runs a wasm32-wasip1 program (a test binary) under Node's WASI and exits with its status:
//
//   node scripts/run-wasi.mjs PROGRAM.wasm [ARGS...]
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";

const [program, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [program, ...args], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(program));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exit(wasi.start(instance));
