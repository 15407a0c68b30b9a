// The same app (src/) built by webpack 5 into webpack/dist/, with the package README's webpack
// recipe: nothing for the wasm (webpack follows the package's `new URL(…, import.meta.url)`) and an
// alias that keeps `import … from "@mlc-ai/web-llm"`. ts-loader only strips the app's types
// (tsc --noEmit checks them).
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

export default {
  mode: "production",
  entry: "./src/main.ts",
  output: { path: path.join(here, "webpack/dist"), filename: "main.js", clean: true },
  resolve: { extensions: [".ts", ".js"], alias: { "@mlc-ai/web-llm": "mlc-wgpu" } },
  module: { rules: [{ test: /\.ts$/, loader: "ts-loader", options: { transpileOnly: true } }] },
  // The wasm (4.9 MB) is above webpack's advisory size limit by nature.
  performance: { hints: false },
};
