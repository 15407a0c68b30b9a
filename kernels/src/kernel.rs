//! The one contract every GPU kernel here keeps.
//!
//! A kernel is compiled once per device (`Kernel::new`-style constructors),
//! then [`Kernel::bind`] checks one set of buffers against a static shape and
//! creates the bind groups and parameter uniforms — at model load, never in a
//! step. The result is a [`Bound`] kernel: a step only calls
//! [`Bound::set_step`] (which writes the few parameter words that depend on
//! the step, and only when the step changed) and [`Bound::dispatch`] (which
//! records into a compute pass). Nothing is allocated per step.
//!
//! What differs between kernels lives behind the crate-private `Schedule`
//! trait: which parameter words a step sets, which steps are valid, and which
//! of the kernel's named pipelines run with how many workgroups.

use crate::buffers::grid;
use crate::{GpuContext, KernelError};

/// What one call of a bound kernel processes: `tokens` rows (tokens) at the
/// absolute positions `start..start + tokens` of sequence `sequence` (only
/// kernels that read or write the KV cache look at `start` and `sequence`:
/// a cache holds every sequence's positions side by side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// Rows (tokens) of the step.
    pub tokens: u32,
    /// Position of the first token in the sequence.
    pub start: u32,
    /// The sequence whose cache the step reads and writes.
    pub sequence: u32,
}

impl Step {
    /// `tokens` rows with no position (kernels that do not touch the cache).
    pub fn rows(tokens: usize) -> Step {
        Step { tokens: tokens as u32, ..Step::default() }
    }

    /// `tokens` tokens at positions `start..start + tokens` of sequence 0.
    pub fn at(tokens: usize, start: usize) -> Step {
        Step { tokens: tokens as u32, start: start as u32, sequence: 0 }
    }

    /// The same step in sequence `sequence`.
    pub fn in_sequence(self, sequence: usize) -> Step {
        Step { sequence: sequence as u32, ..self }
    }
}

/// A GPU kernel: compiled pipelines that bind to buffers of a given shape.
pub trait Kernel {
    /// The buffers one binding reads and writes.
    type Buffers<'a>;
    /// What stays fixed for a binding: sizes, the most rows a step may have,
    /// constants of the op.
    type Shape;
    /// The bound kernel ([`Bound`] for every op of the forward pass).
    type Bound;

    /// Checks `buffers` against `shape` and creates the bind groups and
    /// parameter uniforms of one binding.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &Self::Buffers<'_>,
        shape: &Self::Shape,
    ) -> Result<Self::Bound, KernelError>;
}

/// How many workgroups one dispatch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workgroups {
    /// Numbered linearly (`id.x + id.y * count.x`), spread over a 2-D grid
    /// when they exceed one dimension's limit.
    Linear(u32),
    /// An explicit `(x, y)` grid.
    Grid(u32, u32),
}

/// The part of a kernel that depends on the step (module docs); not `Send` in threaded wasm (wgpu).
pub(crate) trait Schedule: wgpu::WasmNotSendSync {
    /// Whether the step's position and sequence matter (else steps that
    /// differ only in `start` or `sequence` are one step, and a new position
    /// writes nothing).
    fn uses_position(&self) -> bool {
        false
    }

    /// Fails unless the binding can run `step`; else puts the parameter
    /// words that depend on it into `words` (written at the start of every
    /// part's uniform; none for a kernel whose parameters are set otherwise).
    fn params(&self, step: Step, words: &mut Vec<u32>) -> Result<(), KernelError>;

    /// Calls `dispatch` with each pipeline and its workgroups that `step`
    /// runs for one part of `extent` items (weight rows of a split weight,
    /// heads), in order.
    fn dispatches(
        &self,
        step: Step,
        extent: u32,
        dispatch: &mut dyn FnMut(&wgpu::ComputePipeline, Workgroups),
    );
}

/// One bind group of a bound kernel, with its parameter uniform and extent.
pub(crate) struct Part {
    pub bind_group: wgpu::BindGroup,
    pub params: wgpu::Buffer,
    pub extent: u32,
}

/// A kernel bound to its buffers (see the module docs). A weight larger than
/// one storage binding is bound as several row parts, each its own dispatch;
/// [`Bound::parts`] says how many.
pub struct Bound {
    label: &'static str,
    parts: Vec<Part>,
    schedule: Box<dyn Schedule>,
    step: Option<Step>,
    words: Vec<u32>,
    max_workgroups_per_dimension: u32,
}

impl Bound {
    /// A binding of `parts` driven by `schedule`.
    pub(crate) fn new(
        ctx: &GpuContext,
        label: &'static str,
        parts: Vec<Part>,
        schedule: impl Schedule + 'static,
    ) -> Bound {
        Bound {
            label,
            parts,
            schedule: Box::new(schedule),
            step: None,
            words: Vec::new(),
            max_workgroups_per_dimension: ctx.limits.max_compute_workgroups_per_dimension.max(1),
        }
    }

    /// Sets the step of the next dispatches; writes the parameters only when
    /// the step changed (a decode step's products write nothing).
    ///
    /// The write takes effect at the next `queue.submit`, so one submission
    /// must use one step per bound kernel.
    pub fn set_step(&mut self, queue: &wgpu::Queue, step: Step) -> Result<(), KernelError> {
        let step = match self.schedule.uses_position() {
            true => step,
            false => Step { start: 0, sequence: 0, ..step },
        };
        if self.step == Some(step) {
            return Ok(());
        }
        self.words.clear();
        self.schedule.params(step, &mut self.words)?;
        if !self.words.is_empty() {
            for part in &self.parts {
                queue.write_buffer(&part.params, 0, bytemuck::cast_slice(&self.words));
            }
        }
        self.step = Some(step);
        Ok(())
    }

    /// The step the next dispatch uses (`None` before the first
    /// [`Bound::set_step`]).
    pub fn step(&self) -> Option<Step> {
        self.step
    }

    /// How many bind groups (row parts of a split weight) one call records.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Records the kernel into `pass` for the current step (nothing before
    /// the first [`Bound::set_step`]).
    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>) {
        let Some(step) = self.step else { return };
        for part in &self.parts {
            pass.set_bind_group(0, &part.bind_group, &[]);
            self.schedule.dispatches(step, part.extent, &mut |pipeline, workgroups| {
                let (x, y) = match workgroups {
                    Workgroups::Linear(count) => grid(count, self.max_workgroups_per_dimension),
                    Workgroups::Grid(x, y) => (x, y),
                };
                if x > 0 && y > 0 {
                    pass.set_pipeline(pipeline);
                    pass.dispatch_workgroups(x, y, 1);
                }
            });
        }
    }

    /// Convenience for tests and one-off work: sets the step, records the
    /// kernel in its own command buffer and submits it (reading a result back
    /// waits for it).
    pub fn run(&mut self, ctx: &GpuContext, step: Step) -> Result<(), KernelError> {
        self.set_step(&ctx.queue, step)?;
        ctx.submit_pass(self.label, |pass| self.dispatch(pass));
        Ok(())
    }
}

/// The schedule of a kernel with one pipeline whose step sets only the row
/// count (parameter word 0): `workgroups(rows, extent)` workgroups, numbered
/// linearly. A step of 0 rows records nothing.
pub(crate) struct PerRow<F> {
    /// The kernel's name, for errors.
    pub label: &'static str,
    /// The one pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// The most rows a step may have.
    pub max_rows: u32,
    /// Workgroups for `(rows, extent)`.
    pub workgroups: F,
}

impl<F: Fn(u32, u32) -> u32 + wgpu::WasmNotSendSync> Schedule for PerRow<F> {
    fn params(&self, step: Step, words: &mut Vec<u32>) -> Result<(), KernelError> {
        words.push(check_rows(self.label, step, self.max_rows)?);
        Ok(())
    }

    fn dispatches(
        &self,
        step: Step,
        extent: u32,
        dispatch: &mut dyn FnMut(&wgpu::ComputePipeline, Workgroups),
    ) {
        dispatch(&self.pipeline, Workgroups::Linear((self.workgroups)(step.tokens, extent)));
    }
}

/// The step's row count, unless it exceeds what the kernel was bound for.
pub(crate) fn check_rows(label: &str, step: Step, max_rows: u32) -> Result<u32, KernelError> {
    if step.tokens > max_rows {
        return Err(KernelError::InvalidArguments(format!(
            "{label}: {} rows, but it was bound for at most {max_rows}",
            step.tokens
        )));
    }
    Ok(step.tokens)
}
