//! GPU time of each kernel of a forward pass, from timestamps written between
//! the dispatches (`bench --profile`).
//!
//! A timestamp is written before the first dispatch of a step and after every
//! dispatch, so the time charged to a kernel is the gap since the previous
//! stamp: its own run plus the barrier and launch in front of it — what the
//! kernel costs the step. The first stamp to the last is the GPU's busy time;
//! the rest of a step's wall time is spent on the host (recording, submitting,
//! mapping the result).

use std::collections::BTreeMap;
use std::time::Duration;

use mlc_kernels::GpuContext;

use crate::EngineError;

/// Most timestamps one submission records (a decode step of a 24-layer model
/// needs about 250; a longer profile stops stamping rather than failing).
const MAX_STAMPS: u32 = 4096;

/// Accumulated GPU time of each named kernel over the profiled steps.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Kernel name → (total time, dispatch count).
    pub kernels: BTreeMap<String, (Duration, u64)>,
    /// Sum over submissions of the first-to-last stamp time.
    pub busy: Duration,
    /// Submissions profiled.
    pub submissions: u64,
}

/// The query set and buffers that carry the stamps of one submission back.
pub(crate) struct Profiler {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    /// Name of the kernel that ends at stamp `i + 1`.
    names: Vec<String>,
    /// Whether stamp 0 (the start of the submission) is written.
    started: bool,
    period_ns: f64,
    profile: Profile,
}

impl Profiler {
    /// A profiler, or an error when the device cannot write timestamps inside
    /// a compute pass.
    pub fn new(ctx: &GpuContext) -> Result<Profiler, EngineError> {
        let needed =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !ctx.device.features().contains(needed) {
            return Err(EngineError::Config(format!(
                "profiling needs timestamp queries inside compute passes, which {} does not offer",
                ctx.adapter_info.name
            )));
        }
        Ok(Profiler {
            queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: MAX_STAMPS,
            }),
            resolved: ctx.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved timestamps"),
                size: u64::from(MAX_STAMPS) * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            names: Vec::new(),
            started: false,
            period_ns: f64::from(ctx.queue.get_timestamp_period()),
            profile: Profile::default(),
        })
    }

    /// Writes the start stamp before the first dispatch of a submission.
    pub fn before_dispatch(&mut self, pass: &mut wgpu::ComputePass<'_>) {
        if !self.started {
            pass.write_timestamp(&self.queries, 0);
            self.started = true;
        }
    }

    /// Writes the stamp that ends the kernel `name`, just recorded.
    pub fn after_dispatch(&mut self, pass: &mut wgpu::ComputePass<'_>, name: &str) {
        let index = self.names.len() as u32 + 1;
        if self.started && index < MAX_STAMPS {
            pass.write_timestamp(&self.queries, index);
            self.names.push(name.to_string());
        }
    }

    /// Resolves this submission's stamps into the buffer [`Profiler::collect`] reads.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        if self.started {
            encoder.resolve_query_set(
                &self.queries,
                0..self.names.len() as u32 + 1,
                &self.resolved,
                0,
            );
        }
    }

    /// After the submission finished: adds its kernel times to the profile.
    pub async fn collect(&mut self, ctx: &GpuContext) -> Result<(), EngineError> {
        if !self.started {
            return Ok(());
        }
        let count = self.names.len() + 1;
        let bytes = ctx.read_bytes(&self.resolved, count as u64 * 8).await?;
        let stamps: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes[..count * 8]);
        let nanos = |ticks: u64| Duration::from_nanos((ticks as f64 * self.period_ns) as u64);
        for (name, pair) in self.names.iter().zip(stamps.windows(2)) {
            let entry = self.profile.kernels.entry(name.clone()).or_default();
            entry.0 += nanos(pair[1].saturating_sub(pair[0]));
            entry.1 += 1;
        }
        self.profile.busy += nanos(stamps[count - 1].saturating_sub(stamps[0]));
        self.profile.submissions += 1;
        self.names.clear();
        self.started = false;
        Ok(())
    }

    /// The profile gathered so far.
    pub fn take(&mut self) -> Profile {
        std::mem::take(&mut self.profile)
    }
}
