//! The recorder: each op call of a forward pass is a numbered slot whose
//! kernel is bound once (to the buffers the pool hands out in the same order
//! every step) and recorded into the step's compute pass; a long prefill is
//! submitted in pieces so the GPU starts while the host records the rest.

use std::collections::HashMap;

use mlc_kernels::{Bound, BoundSampler, GpuContext, Step};
use web_time::Instant;

use super::{GpuBackend, GpuTensor};
use crate::EngineError;

/// Ops (slots: a dispatch, or two for the separate form of a fused op) of a
/// step of several tokens after which the recording so far is submitted: the
/// GPU starts on a long prefill while the host records the rest (on an H100
/// recording a 512-token step takes ~1.7 ms of a ~32 ms prefill).
const SUBMIT_EVERY: usize = 32;

/// Free activation buffers by size, handed out last-in first-out so that
/// every step of the same shape sees the same buffers in the same order.
#[derive(Default)]
pub(super) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pub(super) created: u64,
}

impl Pool {
    pub(super) fn acquire(&mut self, ctx: &GpuContext, bytes: u64) -> wgpu::Buffer {
        if let Some(buffer) = self.free.get_mut(&bytes).and_then(Vec::pop) {
            return buffer;
        }
        self.created += 1;
        ctx.empty_storage_buffer("activations", bytes)
    }

    pub(super) fn release(&mut self, buffer: wgpu::Buffer) {
        self.free.entry(buffer.size()).or_default().push(buffer);
    }
}

/// A kernel bound for one slot, with the buffers it was bound to.
pub(super) struct Slot {
    pub(super) key: Vec<wgpu::Buffer>,
    pub(super) op: BoundOp,
    /// What the op is, for profiles (`matmul 896x1152`).
    pub(super) name: String,
}

/// What a slot records.
pub(super) enum BoundOp {
    /// One kernel.
    Plain(Bound),
    /// An op fused into a product for a decode step (one row), and the same
    /// work as separate kernels for several rows.
    Fused { decode: Bound, separate: Vec<Bound> },
    /// The sampler, whose rows and settings the engine's workspace holds
    /// (boxed: its three chains of passes make it several times a kernel's size).
    Sampler(Box<BoundSampler>),
}

impl GpuBackend {
    /// The bound kernel of the next slot: reused when it was bound to the same
    /// buffers, else made by `bind`.
    pub(super) fn slot(
        &mut self,
        name: impl FnOnce() -> String,
        key: Vec<wgpu::Buffer>,
        bind: impl FnOnce(&Self) -> Result<BoundOp, EngineError>,
    ) -> Result<usize, EngineError> {
        let index = self.next_slot;
        self.next_slot += 1;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        if self.slots[index].as_ref().is_none_or(|slot| slot.key != key) {
            let op = bind(self)?;
            self.stats.bindings += 1;
            self.slots[index] = Some(Slot { key, op, name: name() });
        }
        Ok(index)
    }

    /// Opens the step's compute pass if none is open.
    pub(super) fn begin_pass(&mut self) {
        self.encode_started.get_or_insert_with(Instant::now);
        if self.pass.is_none() {
            let encoder = self
                .encoder
                .get_or_insert_with(|| self.ctx.device.create_command_encoder(&Default::default()));
            self.pass = Some(encoder.begin_compute_pass(&Default::default()).forget_lifetime());
        }
    }

    /// Records slot `index` with `rows` tokens starting at position `start`.
    pub(super) fn record(
        &mut self,
        index: usize,
        rows: usize,
        start: usize,
    ) -> Result<(), EngineError> {
        self.begin_pass();
        let queue = self.ctx.queue.clone();
        let pass = self.pass.as_mut().expect("pass begun above");
        let slot = self.slots[index].as_mut().expect("slot bound");
        if let Some(profiler) = self.profiler.as_mut() {
            profiler.before_dispatch(pass);
        }
        let sequence = self.prepared.as_ref().map_or(0, |prepared| prepared.selected);
        let step = Step::at(rows, start).in_sequence(sequence);
        let bounds = match &mut slot.op {
            BoundOp::Plain(bound) => std::slice::from_mut(bound),
            BoundOp::Fused { decode, .. } if rows == 1 => std::slice::from_mut(decode),
            BoundOp::Fused { separate, .. } => separate.as_mut_slice(),
            BoundOp::Sampler(sampler) => {
                if let Some(prepared) = self.prepared.as_ref() {
                    sampler.dispatch(&queue, pass, &prepared.sampling)?;
                }
                &mut []
            }
        };
        for bound in bounds {
            bound.set_step(&queue, step)?;
            bound.dispatch(pass);
        }
        if let Some(profiler) = self.profiler.as_mut() {
            profiler.after_dispatch(pass, &slot.name);
        }
        self.unsubmitted += 1;
        // Timestamps are resolved with the step's last submission: a profiled
        // step stays one.
        if rows > 1 && self.unsubmitted >= SUBMIT_EVERY && self.profiler.is_none() {
            self.flush();
        }
        Ok(())
    }

    /// Copies row `from` of `x` into row `to` of `out`.
    pub(super) fn copy_row(&mut self, x: &GpuTensor, from: usize, out: &GpuTensor, to: usize) {
        let bytes = (x.cols * 4) as u64;
        self.copy_bytes(&x.buffer, from as u64 * bytes, &out.buffer, to as u64 * bytes, bytes);
    }

    /// Copies `bytes` from `source` at `from` into `target` at `to`.
    pub(super) fn copy_bytes(
        &mut self,
        source: &wgpu::Buffer,
        from: u64,
        target: &wgpu::Buffer,
        to: u64,
        bytes: u64,
    ) {
        // A buffer copy cannot happen inside a compute pass: end it, copy, and
        // let the next op begin a new pass in the same command encoder.
        self.pass = None;
        let encoder = self
            .encoder
            .get_or_insert_with(|| self.ctx.device.create_command_encoder(&Default::default()));
        encoder.copy_buffer_to_buffer(source, from, target, to, bytes);
    }

    /// Submits recorded work that nobody has waited for yet.
    pub(super) fn flush(&mut self) {
        self.pass = None;
        if let Some(encoder) = self.encoder.take() {
            self.ctx.queue.submit([encoder.finish()]);
            self.count_submission();
        }
    }

    /// Counts a submission and ends the recording time it closes.
    pub(super) fn count_submission(&mut self) {
        self.unsubmitted = 0;
        self.stats.submissions += 1;
        if let Some(started) = self.encode_started.take() {
            self.stats.encode += started.elapsed();
        }
    }

    /// Starts the slot numbering of a new forward pass.
    pub(super) fn begin_step(&mut self) {
        self.next_slot = 0;
    }
}
