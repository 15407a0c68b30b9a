// Which engine `device: "auto"` runs on. A software WebGPU adapter (Chromium's SwiftShader, Mesa's
// llvmpipe/lavapipe, Windows' Basic Render Driver) runs the WGSL kernels through a CPU emulation of a
// GPU: on the same page it decoded at 0.10 tok/s where the CPU engine gave 2-3 tok/s. So "auto" takes
// WebGPU only on a hardware adapter; "webgpu" still takes whatever adapter the browser gives.

import { CPU_FALLBACK_NOTICE } from "./progress.js";

// Names software adapters give in GPUAdapterInfo's vendor, architecture, device or description.
const SOFTWARE_RENDERERS = [
  [/swiftshader/i, "SwiftShader"],
  [/llvmpipe/i, "llvmpipe"],
  [/lavapipe/i, "lavapipe"],
  [/softpipe/i, "softpipe"],
  [/basic render/i, "Microsoft Basic Render Driver"],
  [/\bwarp\b/i, "WARP"],
  [/software/i, "a software renderer"],
];

/**
 * The software renderer behind an adapter, or undefined for a hardware one. The browser's own
 * verdict (`isFallbackAdapter`) counts first; the adapter's names catch the rest.
 * @param {{info?: object, isFallbackAdapter?: boolean}} adapter a GPUAdapter
 * @returns {string | undefined}
 */
export function softwareRenderer(adapter) {
  const info = adapter.info ?? {};
  const names = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ");
  const named = SOFTWARE_RENDERERS.find(([re]) => re.test(names))?.[1];
  if (named) return named;
  if (info.isFallbackAdapter || adapter.isFallbackAdapter) return names || "a fallback adapter";
  return undefined;
}

/** Shown (and logged) when "auto" skips a software adapter. */
export function softwareAdapterNotice(renderer) {
  return `WebGPU's adapter here is a software renderer (${renderer}), slower than the CPU engine: ` +
    `running on the CPU engine instead (same API and outputs). Pass device: "webgpu" to use the adapter anyway.`;
}

/**
 * Resolves the engine option `device` before loading.
 * @param {"auto" | "webgpu" | "cpu"} requested
 * @returns {Promise<{device: "auto" | "webgpu" | "cpu", notice?: string, cpuReason?: string}>}
 *   device: what the wasm engine is asked for ("auto" only for a hardware adapter, so the engine
 *   can still fall back if the device cannot be created); notice: the progress text saying why the
 *   CPU engine runs; cpuReason: the same in a few words, for the final report.
 */
export async function chooseDevice(requested) {
  if (requested !== "auto") return { device: requested };
  const gpu = typeof navigator === "undefined" ? undefined : navigator.gpu;
  let adapter = null;
  try {
    adapter = gpu ? await gpu.requestAdapter({ powerPreference: "high-performance" }) : null;
  } catch { /* a browser that throws here has no usable WebGPU */ }
  if (!adapter) return { device: "cpu", notice: CPU_FALLBACK_NOTICE, cpuReason: "no WebGPU; the CPU engine is much slower" };
  const renderer = softwareRenderer(adapter);
  if (renderer) {
    return { device: "cpu", notice: softwareAdapterNotice(renderer), cpuReason: `WebGPU's adapter is a software renderer, ${renderer}` };
  }
  return { device: "auto" };
}
