import { defineConfig } from "vite";

export default defineConfig({
  // Built files are served under a sub-path by the test (run.mjs).
  base: "./",
  resolve: {
    // Keeps `import … from "@mlc-ai/web-llm"` unchanged (tsconfig.json maps the types the same way).
    alias: { "@mlc-ai/web-llm": "mlc-wgpu" },
  },
  // Vite's dev server pre-bundles dependencies into another folder, which would break the
  // package's `new URL("…_bg.wasm", import.meta.url)`; excluding it, under both of its names (an
  // aliased import is pre-bundled under the alias), keeps the module beside its wasm.
  optimizeDeps: { exclude: ["mlc-wgpu", "@mlc-ai/web-llm"] },
});
