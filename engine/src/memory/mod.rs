//! The GPU engine's memory plan: what loading a model will allocate on the
//! device, by purpose, computed before anything is allocated. It is checked
//! against the adapter's limits (a buffer larger than the device allows fails
//! the load with the plan, before any allocation), printed in the error when
//! the device runs out of memory while loading, and shown by `inspect`.

mod estimate;

use std::fmt;

/// Bytes the GPU engine allocates for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// Weight bytes as uploaded, by kind: `embedding`, `lm_head`, `attention`,
    /// `mlp`, `norms` (q4 codes as stored, floats in the model's dtype), and
    /// `other` for tensors the plan does not recognise (counted, to err high).
    pub weights: Vec<(&'static str, u64)>,
    /// Attention layers (each has a K and a V cache buffer; Qwen3.5's Gated
    /// DeltaNet layers have none).
    pub layers: usize,
    /// The Gated DeltaNet layers' recurrent state (each layer's convolution
    /// window and per-head `S`, f32), kept with the KV cache; 0 for other families.
    pub recurrent: u64,
    /// Positions the KV cache holds.
    pub kv_positions: usize,
    /// Sequences with a KV cache (and recurrent state) each
    /// ([`crate::gpu::GpuOptions::sequences`]).
    pub sequences: usize,
    /// Bytes of one layer's K (or V) cache buffer, every sequence's
    /// positions side by side, bound whole by the kernels.
    pub kv_buffer: u64,
    /// Bytes of one layer's K (or V) ring of a rolling cache (every
    /// sequence's window of unrotated keys or values); 0 without one.
    pub ring_buffer: u64,
    /// Bytes of the RoPE table (a cos/sin pair per position and rotary
    /// dimension, bound whole by the attention kernels); counted in `scratch`.
    pub rope_table: u64,
    /// Attention partials, the RoPE table, token, sampler and readback buffers,
    /// the partial sums of products split over K, and the kernels' parameter blocks.
    pub scratch: u64,
    /// Activation buffers of a step of [`MemoryPlan::max_rows`] tokens: an
    /// upper bound (they are allocated at the first step, not at load).
    pub activations: u64,
    /// Tokens per step the activations are sized for.
    pub max_rows: usize,
    /// The largest single buffer: what it holds and its bytes.
    pub largest: (String, u64),
    /// The device the plan was checked against, when there is one.
    pub device: Option<DeviceLimits>,
}

/// The adapter limits a plan is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Adapter name.
    pub adapter: String,
    /// Largest buffer (`maxBufferSize`).
    pub max_buffer_size: u64,
    /// Largest storage binding (`maxStorageBufferBindingSize`).
    pub max_storage_buffer_binding_size: u64,
}

impl MemoryPlan {
    /// The plan as checked against `device`.
    pub fn on_device(mut self, device: DeviceLimits) -> MemoryPlan {
        self.device = Some(device);
        self
    }

    /// All weight bytes.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.iter().map(|(_, bytes)| bytes).sum()
    }

    /// Both caches of every layer, for every sequence.
    pub fn kv_bytes(&self) -> u64 {
        2 * self.layers as u64 * (self.kv_buffer + self.ring_buffer)
    }

    /// Everything.
    pub fn total(&self) -> u64 {
        self.weight_bytes() + self.kv_bytes() + self.recurrent + self.scratch + self.activations
    }

    /// Why the device cannot hold this plan, if a limit says so: a buffer
    /// larger than `maxBufferSize`, or a KV cache buffer or the RoPE table
    /// (each bound whole) larger than `maxStorageBufferBindingSize`.
    pub fn problem(&self) -> Option<String> {
        let device = self.device.as_ref()?;
        // A position of every sequence.
        let per_position = self.kv_buffer / self.kv_positions.max(1) as u64;
        let positions_that_fit = |limit: u64| limit / per_position.max(1);
        if self.kv_buffer > device.max_storage_buffer_binding_size {
            return Some(format!(
                "one layer's K cache ({}) exceeds max_storage_buffer_binding_size ({}); at most {} positions fit, {} were asked for, for each of {} sequence(s) (lower context_window_size, the engine's context length or its sequences)",
                mib(self.kv_buffer),
                mib(device.max_storage_buffer_binding_size),
                positions_that_fit(device.max_storage_buffer_binding_size),
                self.kv_positions,
                self.sequences
            ));
        }
        if self.rope_table > device.max_storage_buffer_binding_size {
            let per_position = self.rope_table / self.kv_positions.max(1) as u64;
            return Some(format!(
                "the RoPE table ({}) exceeds max_storage_buffer_binding_size ({}); at most {} positions fit, {} were asked for (lower context_window_size or the engine's context length)",
                mib(self.rope_table),
                mib(device.max_storage_buffer_binding_size),
                device.max_storage_buffer_binding_size / per_position.max(1),
                self.kv_positions
            ));
        }
        let (what, bytes) = &self.largest;
        if *bytes > device.max_buffer_size {
            return Some(format!(
                "{what} needs one buffer of {}, more than max_buffer_size ({})",
                mib(*bytes),
                mib(device.max_buffer_size)
            ));
        }
        None
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self
            .weights
            .iter()
            .filter(|(_, bytes)| *bytes > 0)
            .map(|(kind, bytes)| format!("{kind} {}", mib(*bytes)))
            .collect();
        writeln!(f, "GPU memory plan:")?;
        writeln!(f, "  weights      {} ({})", mib(self.weight_bytes()), kinds.join(", "))?;
        writeln!(
            f,
            "  KV cache     {} ({} positions x {} layers x K and V, {} per buffer)",
            mib(self.kv_bytes()),
            self.kv_positions,
            self.layers,
            mib(self.kv_buffer)
        )?;
        if self.ring_buffer > 0 {
            writeln!(
                f,
                "               (with a rolling cache's rings, {} per buffer)",
                mib(self.ring_buffer)
            )?;
        }
        if self.recurrent > 0 {
            writeln!(
                f,
                "  recurrent    {} (Gated DeltaNet convolution windows and states)",
                mib(self.recurrent)
            )?;
        }
        writeln!(
            f,
            "  scratch      {} (attention and split-product partials, RoPE table, tokens, sampler, parameters)",
            mib(self.scratch)
        )?;
        writeln!(
            f,
            "  activations  {} at most ({} tokens per step, allocated at the first step)",
            mib(self.activations),
            self.max_rows
        )?;
        writeln!(f, "  total        {}", mib(self.total()))?;
        write!(f, "  largest buffer {} ({})", mib(self.largest.1), self.largest.0)?;
        if let Some(device) = &self.device {
            write!(
                f,
                "\n  device       {}: max_buffer_size {}, max_storage_buffer_binding_size {}",
                device.adapter,
                mib(device.max_buffer_size),
                mib(device.max_storage_buffer_binding_size)
            )?;
        }
        Ok(())
    }
}

/// `bytes` in MiB with the exact count: `12.5 MiB (13107200 bytes)`.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB ({bytes} bytes)", bytes as f64 / (1024.0 * 1024.0))
}
