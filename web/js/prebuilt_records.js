// WebLLM 0.2.86's prebuiltAppConfig records known to this project, copied from the
// prebuiltAppConfig of the published @mlc-ai/web-llm 0.2.86 package (its lib/index.js); WebLLM
// has 165 records, this file holds a subset of them (docs/web-migration.md, "Prebuilt records");
// records of families the runtime lacks still resolve, and their reload fails clearly.
// Ids, URLs and numbers are byte-identical to WebLLM's because apps hard-code them.
// `model_lib` is kept (WebLLM's type requires it) but mlc-wgpu never downloads it.
export const WEBLLM_RECORDS = [
 {
  "model": "https://huggingface.co/mlc-ai/Llama-3.2-1B-Instruct-q4f16_1-MLC",
  "model_id": "Llama-3.2-1B-Instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Llama-3.2-1B-Instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 879.04,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/SmolLM2-1.7B-Instruct-q4f16_1-MLC",
  "model_id": "SmolLM2-1.7B-Instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/SmolLM2-1.7B-Instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1774.19,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/SmolLM2-1.7B-Instruct-q4f32_1-MLC",
  "model_id": "SmolLM2-1.7B-Instruct-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/SmolLM2-1.7B-Instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 2692.38,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/SmolLM2-360M-Instruct-q0f16-MLC",
  "model_id": "SmolLM2-360M-Instruct-q0f16-MLC",
  "model_lib": "v0_2_86/base/SmolLM2-360M-Instruct-q0f16_cs1k-webgpu.wasm",
  "vram_required_MB": 871.99,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/SmolLM2-360M-Instruct-q0f32-MLC",
  "model_id": "SmolLM2-360M-Instruct-q0f32-MLC",
  "model_lib": "v0_2_86/base/SmolLM2-360M-Instruct-q0f32_cs1k-webgpu.wasm",
  "vram_required_MB": 1743.99,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/SmolLM2-360M-Instruct-q4f16_1-MLC",
  "model_id": "SmolLM2-360M-Instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/SmolLM2-360M-Instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 376.06,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/SmolLM2-360M-Instruct-q4f32_1-MLC",
  "model_id": "SmolLM2-360M-Instruct-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/SmolLM2-360M-Instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 579.61,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/SmolLM2-135M-Instruct-q0f16-MLC",
  "model_id": "SmolLM2-135M-Instruct-q0f16-MLC",
  "model_lib": "v0_2_86/base/SmolLM2-135M-Instruct-q0f16_cs1k-webgpu.wasm",
  "vram_required_MB": 359.69,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/SmolLM2-135M-Instruct-q0f32-MLC",
  "model_id": "SmolLM2-135M-Instruct-q0f32-MLC",
  "model_lib": "v0_2_86/base/SmolLM2-135M-Instruct-q0f32_cs1k-webgpu.wasm",
  "vram_required_MB": 719.38,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen3-0.6B-q4f16_1-MLC",
  "model_id": "Qwen3-0.6B-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Qwen3-0.6B-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1403.34,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen3-0.6B-q4f32_1-MLC",
  "model_id": "Qwen3-0.6B-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/Qwen3-0.6B-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1924.98,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen3-0.6B-q0f16-MLC",
  "model_id": "Qwen3-0.6B-q0f16-MLC",
  "model_lib": "v0_2_86/base/Qwen3-0.6B-q0f16_cs1k-webgpu.wasm",
  "vram_required_MB": 2220.38,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen3-0.6B-q0f32-MLC",
  "model_id": "Qwen3-0.6B-q0f32-MLC",
  "model_lib": "v0_2_86/base/Qwen3-0.6B-q0f32_cs1k-webgpu.wasm",
  "vram_required_MB": 3843.25,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC",
  "model_id": "Qwen2.5-0.5B-Instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 944.62,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f32_1-MLC",
  "model_id": "Qwen2.5-0.5B-Instruct-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1060.2,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q0f16-MLC",
  "model_id": "Qwen2.5-0.5B-Instruct-q0f16-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q0f16_cs1k-webgpu.wasm",
  "vram_required_MB": 1624.12,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q0f32-MLC",
  "model_id": "Qwen2.5-0.5B-Instruct-q0f32-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q0f32_cs1k-webgpu.wasm",
  "vram_required_MB": 2654.75,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC",
  "model_id": "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/TinyLlama-1.1B-Chat-v1.0-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 697.24,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 2048
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/TinyLlama-1.1B-Chat-v1.0-q4f32_1-MLC",
  "model_id": "TinyLlama-1.1B-Chat-v1.0-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/TinyLlama-1.1B-Chat-v1.0-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 839.98,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 2048
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC",
  "model_id": "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC-1k",
  "model_lib": "v0_2_86/base/TinyLlama-1.1B-Chat-v1.0-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 675.24,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/TinyLlama-1.1B-Chat-v1.0-q4f32_1-MLC",
  "model_id": "TinyLlama-1.1B-Chat-v1.0-q4f32_1-MLC-1k",
  "model_lib": "v0_2_86/base/TinyLlama-1.1B-Chat-v1.0-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 795.98,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/TinyLlama-1.1B-Chat-v0.4-q4f16_1-MLC",
  "model_id": "TinyLlama-1.1B-Chat-v0.4-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/TinyLlama-1.1B-Chat-v0.4-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 697.24,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 2048
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/TinyLlama-1.1B-Chat-v0.4-q4f32_1-MLC",
  "model_id": "TinyLlama-1.1B-Chat-v0.4-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/TinyLlama-1.1B-Chat-v0.4-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 839.98,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 2048
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/TinyLlama-1.1B-Chat-v0.4-q4f16_1-MLC",
  "model_id": "TinyLlama-1.1B-Chat-v0.4-q4f16_1-MLC-1k",
  "model_lib": "v0_2_86/base/TinyLlama-1.1B-Chat-v0.4-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 675.24,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/TinyLlama-1.1B-Chat-v0.4-q4f32_1-MLC",
  "model_id": "TinyLlama-1.1B-Chat-v0.4-q4f32_1-MLC-1k",
  "model_lib": "v0_2_86/base/TinyLlama-1.1B-Chat-v0.4-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 795.98,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-Coder-0.5B-Instruct-q4f16_1-MLC",
  "model_id": "Qwen2.5-Coder-0.5B-Instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 944.62,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-Coder-0.5B-Instruct-q4f32_1-MLC",
  "model_id": "Qwen2.5-Coder-0.5B-Instruct-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1060.2,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-Coder-0.5B-Instruct-q0f16-MLC",
  "model_id": "Qwen2.5-Coder-0.5B-Instruct-q0f16-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q0f16_cs1k-webgpu.wasm",
  "vram_required_MB": 1624.12,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-Coder-0.5B-Instruct-q0f32-MLC",
  "model_id": "Qwen2.5-Coder-0.5B-Instruct-q0f32-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q0f32_cs1k-webgpu.wasm",
  "vram_required_MB": 2654.75,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2-0.5B-Instruct-q4f16_1-MLC",
  "model_id": "Qwen2-0.5B-Instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 944.62,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2-0.5B-Instruct-q0f16-MLC",
  "model_id": "Qwen2-0.5B-Instruct-q0f16-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q0f16_cs1k-webgpu.wasm",
  "vram_required_MB": 1624.12,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2-0.5B-Instruct-q0f32-MLC",
  "model_id": "Qwen2-0.5B-Instruct-q0f32-MLC",
  "model_lib": "v0_2_86/base/Qwen2-0.5B-Instruct-q0f32_cs1k-webgpu.wasm",
  "vram_required_MB": 2654.75,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen2.5-1.5B-Instruct-q4f16_1-MLC",
  "model_id": "Qwen2.5-1.5B-Instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Qwen2-1.5B-Instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1629.75,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen3-1.7B-q4f16_1-MLC",
  "model_id": "Qwen3-1.7B-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Qwen3-1.7B-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 2036.66,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Qwen3.5-0.8B-q4f16_1-MLC",
  "model_id": "Qwen3.5-0.8B-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Qwen3.5-0.8B-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1629.49,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096,
   "max_history_size": 1
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Llama-3.2-1B-Instruct-q4f32_1-MLC",
  "model_id": "Llama-3.2-1B-Instruct-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/Llama-3.2-1B-Instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1128.82,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Llama-3.2-3B-Instruct-q4f16_1-MLC",
  "model_id": "Llama-3.2-3B-Instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Llama-3.2-3B-Instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 2263.69,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma3-1b-it-q4f16_1-MLC",
  "model_id": "gemma3-1b-it-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/gemma3-1b-it-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 711.07,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma-2-2b-it-q4f16_1-MLC",
  "model_id": "gemma-2-2b-it-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/gemma-2-2b-it-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1895.3,
  "low_resource_required": false,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-3.5-mini-instruct-q4f16_1-MLC",
  "model_id": "Phi-3.5-mini-instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Phi-3.5-mini-instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 3672.07,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Mistral-7B-Instruct-v0.3-q4f16_1-MLC",
  "model_id": "Mistral-7B-Instruct-v0.3-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Mistral-7B-Instruct-v0.3-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 4573.39,
  "low_resource_required": false,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096,
   "sliding_window_size": -1
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Mistral-7B-Instruct-v0.3-q4f32_1-MLC",
  "model_id": "Mistral-7B-Instruct-v0.3-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/Mistral-7B-Instruct-v0.3-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 5619.27,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096,
   "sliding_window_size": -1
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Mistral-7B-Instruct-v0.2-q4f16_1-MLC",
  "model_id": "Mistral-7B-Instruct-v0.2-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Mistral-7B-Instruct-v0.3-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 4573.39,
  "low_resource_required": false,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096,
   "sliding_window_size": -1
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Hermes-2-Pro-Mistral-7B-q4f16_1-MLC",
  "model_id": "Hermes-2-Pro-Mistral-7B-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Mistral-7B-Instruct-v0.3-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 4033.28,
  "low_resource_required": false,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096,
   "sliding_window_size": -1
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/OpenHermes-2.5-Mistral-7B-q4f16_1-MLC",
  "model_id": "OpenHermes-2.5-Mistral-7B-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Mistral-7B-Instruct-v0.3-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 4573.39,
  "low_resource_required": false,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096,
   "sliding_window_size": -1
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/NeuralHermes-2.5-Mistral-7B-q4f16_1-MLC",
  "model_id": "NeuralHermes-2.5-Mistral-7B-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Mistral-7B-Instruct-v0.3-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 4573.39,
  "low_resource_required": false,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096,
   "sliding_window_size": -1
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/WizardMath-7B-V1.1-q4f16_1-MLC",
  "model_id": "WizardMath-7B-V1.1-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Mistral-7B-Instruct-v0.3-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 4573.39,
  "low_resource_required": false,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096,
   "sliding_window_size": -1
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-3.5-mini-instruct-q4f32_1-MLC",
  "model_id": "Phi-3.5-mini-instruct-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/Phi-3.5-mini-instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 5483.12,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-3.5-mini-instruct-q4f16_1-MLC",
  "model_id": "Phi-3.5-mini-instruct-q4f16_1-MLC-1k",
  "model_lib": "v0_2_86/base/Phi-3.5-mini-instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 2520.07,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-3.5-mini-instruct-q4f32_1-MLC",
  "model_id": "Phi-3.5-mini-instruct-q4f32_1-MLC-1k",
  "model_lib": "v0_2_86/base/Phi-3.5-mini-instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 3179.12,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-4-mini-instruct-q4f16_1-MLC",
  "model_id": "Phi-4-mini-instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Phi-4-mini-instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 3437.58,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-4-mini-instruct-q4f32_1-MLC",
  "model_id": "Phi-4-mini-instruct-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/Phi-4-mini-instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 4220.59,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-3-mini-4k-instruct-q4f16_1-MLC",
  "model_id": "Phi-3-mini-4k-instruct-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/Phi-3-mini-4k-instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 3672.07,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-3-mini-4k-instruct-q4f32_1-MLC",
  "model_id": "Phi-3-mini-4k-instruct-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/Phi-3-mini-4k-instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 5483.12,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-3-mini-4k-instruct-q4f16_1-MLC",
  "model_id": "Phi-3-mini-4k-instruct-q4f16_1-MLC-1k",
  "model_lib": "v0_2_86/base/Phi-3-mini-4k-instruct-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 2520.07,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/Phi-3-mini-4k-instruct-q4f32_1-MLC",
  "model_id": "Phi-3-mini-4k-instruct-q4f32_1-MLC-1k",
  "model_lib": "v0_2_86/base/Phi-3-mini-4k-instruct-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 3179.12,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma-2-2b-it-q4f32_1-MLC",
  "model_id": "gemma-2-2b-it-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/gemma-2-2b-it-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 2508.75,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma-2-2b-it-q4f16_1-MLC",
  "model_id": "gemma-2-2b-it-q4f16_1-MLC-1k",
  "model_lib": "v0_2_86/base/gemma-2-2b-it-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1583.3,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma-2-2b-it-q4f32_1-MLC",
  "model_id": "gemma-2-2b-it-q4f32_1-MLC-1k",
  "model_lib": "v0_2_86/base/gemma-2-2b-it-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1884.75,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 1024
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma-2-9b-it-q4f16_1-MLC",
  "model_id": "gemma-2-9b-it-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/gemma-2-9b-it-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 6422.01,
  "low_resource_required": false,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma-2-9b-it-q4f32_1-MLC",
  "model_id": "gemma-2-9b-it-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/gemma-2-9b-it-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 8383.33,
  "low_resource_required": false,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma-2-2b-jpn-it-q4f16_1-MLC",
  "model_id": "gemma-2-2b-jpn-it-q4f16_1-MLC",
  "model_lib": "v0_2_86/base/gemma-2-2b-jpn-it-q4f16_1_cs1k-webgpu.wasm",
  "vram_required_MB": 1895.3,
  "low_resource_required": true,
  "required_features": [
   "shader-f16"
  ],
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/gemma-2-2b-jpn-it-q4f32_1-MLC",
  "model_id": "gemma-2-2b-jpn-it-q4f32_1-MLC",
  "model_lib": "v0_2_86/base/gemma-2-2b-jpn-it-q4f32_1_cs1k-webgpu.wasm",
  "vram_required_MB": 2508.75,
  "low_resource_required": true,
  "overrides": {
   "context_window_size": 4096
  }
 },
 {
  "model": "https://huggingface.co/mlc-ai/snowflake-arctic-embed-m-q0f32-MLC",
  "model_id": "snowflake-arctic-embed-m-q0f32-MLC-b4",
  "model_lib": "v0_2_86/base/snowflake-arctic-embed-m-q0f32-ctx512_cs512_batch4-webgpu.wasm",
  "vram_required_MB": 539.4,
  "model_type": 1
 }
];
