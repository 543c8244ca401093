//! The GPU backend: a checkpoint uploaded once, activation buffers and replayable plans cached
//! per slice shape, batches sized by a memory budget (halved and retried on out-of-memory).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::engine::{EngineError, Progress, Upscaler};
use crate::model::Checkpoint;
use crate::plane::Plane;

use super::context::GpuContext;
use super::graph::{Plan, read_staging, storage_buffer_init};
use super::network::{Arena, ArenaSizes, build_forward, check_fits};
use super::shader::{KernelKey, KernelOptions};
use super::weights::PackedWeights;

/// Tuning of the GPU engine; `None` picks a default for the adapter.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuOptions {
    /// Bytes of activation buffers the engine may allocate (default [`default_gpu_budget`]: on a
    /// discrete GPU half its device-local memory where the backend reports it, at least 6 GiB;
    /// 2 GiB on other GPUs, 1 GiB on a software adapter; the environment variable
    /// `DELTAWKV_GPU_BUDGET_MB` overrides the default).
    pub memory_budget: Option<u64>,
    /// Largest number of slices per batch (default [`DEFAULT_MAX_BATCH`] on a GPU, 4 on a
    /// software adapter).
    pub max_batch: Option<usize>,
    /// Kernel variants (default [`KernelOptions::default`]; the environment variable
    /// `DELTAWKV_KERNELS` names another, see [`KernelOptions::from_name`]).
    pub kernels: Option<KernelOptions>,
    /// Fault injection for tests: batches of more than this many slices fail with
    /// [`EngineError::OutOfMemory`] as a real allocation failure would (the engine then halves
    /// the batch and retries).
    #[doc(hidden)]
    pub simulate_oom_above: Option<usize>,
}

/// Largest batch on a hardware adapter unless [`GpuOptions::max_batch`] says otherwise: more
/// slices per batch run more recurrences side by side (faster per slice on an H100 up to the
/// largest batch that fitted: BENCHMARKS.md, optimisation log entry 15); the memory budget and
/// the storage-binding limit usually stop it first.
pub const DEFAULT_MAX_BATCH: usize = 64;

/// The default memory budget of the engine's activation buffers on an adapter of type `t` with
/// `device_memory` bytes of device-local memory (if known): half of that memory on a discrete GPU
/// (the rest for the weights, the display and other programs), at least 6 GiB there, which fits
/// 8 GB cards; 2 GiB on integrated and other GPUs, 1 GiB on a software adapter.
pub fn default_gpu_budget(t: wgpu::DeviceType, device_memory: Option<u64>) -> u64 {
    match t {
        wgpu::DeviceType::DiscreteGpu => (6u64 << 30).max(device_memory.unwrap_or(0) / 2),
        wgpu::DeviceType::Cpu => 1 << 30,
        _ => 2 << 30,
    }
}

/// How many plans (batch sizes x shapes) stay cached.
const PLAN_CACHE: usize = 4;

/// The WGSL engine holding one checkpoint on one device.
pub struct GpuEngine {
    ctx: Arc<GpuContext>,
    pw: PackedWeights,
    weights: wgpu::Buffer,
    weight_bytes: u64,
    arena: Option<Arena>,
    plans: Vec<((usize, usize, usize), Plan)>,
    budget: u64,
    max_batch: usize,
    kernels: KernelOptions,
    simulate_oom_above: Option<usize>,
}

impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEngine")
            .field("device", &self.ctx.describe())
            .field("budget", &self.budget)
            .field("max_batch", &self.max_batch)
            .field("kernels", &self.kernels)
            .finish_non_exhaustive()
    }
}

impl GpuEngine {
    /// Packs and uploads `checkpoint` to the device of `ctx`.
    pub fn new(
        ctx: Arc<GpuContext>,
        checkpoint: &Checkpoint,
        opts: GpuOptions,
    ) -> Result<Self, EngineError> {
        let mut pw = PackedWeights::pack(checkpoint)?;
        let weight_bytes = pw.data.len() as u64 * 4;
        if weight_bytes > ctx.limits.max_storage_buffer_binding_size {
            return Err(EngineError::OutOfMemory(format!(
                "the checkpoint's {weight_bytes} bytes of weights exceed the adapter's storage \
                 binding limit of {} bytes",
                ctx.limits.max_storage_buffer_binding_size
            )));
        }
        let weights = ctx.scoped(|| storage_buffer_init(&ctx, "weights", &pw.data))?;
        pw.data = Vec::new();
        let software = ctx.is_software();
        let default_budget = default_gpu_budget(ctx.info.device_type, ctx.device_memory);
        let env_budget = std::env::var("DELTAWKV_GPU_BUDGET_MB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|mb| mb << 20);
        let budget = opts.memory_budget.or(env_budget).unwrap_or(default_budget);
        let max_batch = opts
            .max_batch
            .unwrap_or(if software { 4 } else { DEFAULT_MAX_BATCH })
            .max(1);
        let env_kernels = std::env::var("DELTAWKV_KERNELS").ok().and_then(|v| {
            let k = KernelOptions::from_name(&v);
            if k.is_none() {
                tracing::warn!(
                    "DELTAWKV_KERNELS={v} is not one of {:?}; using the default kernels",
                    KernelOptions::NAMES
                );
            }
            k
        });
        let kernels = opts.kernels.or(env_kernels).unwrap_or_default();
        Ok(Self {
            ctx,
            pw,
            weights,
            weight_bytes,
            arena: None,
            plans: Vec::new(),
            budget,
            max_batch,
            kernels,
            simulate_oom_above: opts.simulate_oom_above,
        })
    }

    /// Bytes of activation buffers this engine may allocate ([`GpuOptions::memory_budget`]).
    pub fn memory_budget(&self) -> u64 {
        self.budget
    }

    /// The kernel variants this engine records.
    pub fn kernels(&self) -> KernelOptions {
        self.kernels
    }

    /// Switches kernel variants (the cached plans are rebuilt on the next run).
    pub fn set_kernels(&mut self, kernels: KernelOptions) {
        if kernels != self.kernels {
            self.kernels = kernels;
            self.plans.clear();
        }
    }

    /// The device this engine runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Bytes of GPU buffers held now: weights, activations, state, readback.
    pub fn buffer_bytes(&self) -> u64 {
        self.weight_bytes + self.arena.as_ref().map_or(0, |a| a.sizes.total_bytes())
    }

    /// Compulsory memory traffic per slice, in bytes, of the cached plan for `batch` slices of
    /// `h x w` (run it first): every kernel reading its inputs and writing its outputs once.
    pub fn traffic_bytes_per_slice(&self, batch: usize, h: usize, w: usize) -> Option<f64> {
        self.plans
            .iter()
            .find(|(k, _)| *k == (batch, h, w))
            .map(|(_, p)| p.traffic_bytes() as f64 / batch.max(1) as f64)
    }

    /// The kernel variants, in order, of the cached plan for `batch` slices of `h x w` (run it
    /// first): which kernels this engine really dispatches on this adapter.
    pub fn plan_dispatch_keys(&self, batch: usize, h: usize, w: usize) -> Option<&[KernelKey]> {
        self.plans
            .iter()
            .find(|(k, _)| *k == (batch, h, w))
            .map(|(_, p)| p.dispatch_keys())
    }

    /// Bytes of the uploaded weights.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// The delta-rule state buffer of the current arena: `[direction][image][head][N][N]` f32,
    /// holding the final scan states of the last block of the last batch.
    pub fn state_buffer(&self) -> Option<&wgpu::Buffer> {
        self.arena.as_ref().map(|a| &a.state)
    }

    /// The largest batch (at most `wanted`) whose buffers fit the memory budget and the
    /// adapter's limits for `h x w` slices.
    pub fn batch_for(&self, h: usize, w: usize, wanted: usize) -> Result<usize, EngineError> {
        let one = ArenaSizes::new(&self.pw, 1, h, w);
        check_fits(&self.ctx, &one)?;
        let mut b = wanted.clamp(1, self.max_batch);
        while b > 1 {
            let s = ArenaSizes::new(&self.pw, b, h, w);
            if s.total_bytes() <= self.budget && check_fits(&self.ctx, &s).is_ok() {
                break;
            }
            b -= 1;
        }
        Ok(b)
    }

    fn ensure_arena(
        &mut self,
        h: usize,
        w: usize,
        batch: usize,
        capacity: usize,
    ) -> Result<(), EngineError> {
        let ok = self
            .arena
            .as_ref()
            .is_some_and(|a| a.h == h && a.w == w && a.capacity >= batch);
        if !ok {
            // Free the old buffers (and the plans that bind them) before allocating.
            self.arena = None;
            self.plans.clear();
            self.arena = Some(Arena::new(&self.ctx, &self.pw, capacity.max(batch), h, w)?);
        }
        Ok(())
    }

    fn plan_index(&mut self, batch: usize, h: usize, w: usize) -> Result<usize, EngineError> {
        if let Some(i) = self.plans.iter().position(|(k, _)| *k == (batch, h, w)) {
            return Ok(i);
        }
        let arena = self
            .arena
            .as_ref()
            .ok_or_else(|| EngineError::Internal("no activation buffers allocated".into()))?;
        let graph = build_forward(
            &self.ctx,
            &self.pw,
            &self.weights,
            arena,
            batch,
            self.kernels,
        )?;
        let plan = graph.finalize(&self.ctx)?;
        if self.plans.len() >= PLAN_CACHE {
            self.plans.remove(0);
        }
        self.plans.push(((batch, h, w), plan));
        Ok(self.plans.len() - 1)
    }

    /// Runs one batch of same-shaped slices (allocating buffers for `capacity` slices if the
    /// current ones do not fit). Checks `cancel` between blocks.
    pub fn run_batch(
        &mut self,
        planes: &[&Plane],
        capacity: usize,
        cancel: &AtomicBool,
    ) -> Result<Vec<Plane>, EngineError> {
        let Some(first) = planes.first() else {
            return Ok(Vec::new());
        };
        let (h, w) = (first.height, first.width);
        let batch = planes.len();
        if let Some(n) = self.simulate_oom_above.filter(|&n| batch > n) {
            return Err(EngineError::OutOfMemory(format!(
                "simulated allocation failure for a batch of {batch} (limit {n})"
            )));
        }
        let pi = self.prepare(planes, capacity)?;
        let arena = self
            .arena
            .as_ref()
            .ok_or_else(|| EngineError::Internal("no activation buffers allocated".into()))?;
        let plan = &self.plans[pi].1;
        plan.execute(&self.ctx, cancel, |_| {})?;
        let s = self.pw.config.scale;
        let (oh, ow) = (h * s, w * s);
        let out = read_staging(&self.ctx, &arena.staging, batch * oh * ow)?;
        Ok(out
            .chunks_exact(oh * ow)
            .map(|c| Plane {
                width: ow,
                height: oh,
                data: c.to_vec(),
            })
            .collect())
    }
}

impl GpuEngine {
    /// Runs `planes` (one batch of one shape, as [`GpuEngine::run_batch`]) with every dispatch
    /// timed on its own; see [`Plan::profile`].
    pub fn profile_batch(
        &mut self,
        planes: &[&Plane],
    ) -> Result<Vec<(String, usize, f64)>, EngineError> {
        if planes.is_empty() {
            return Ok(Vec::new());
        }
        let pi = self.prepare(planes, planes.len())?;
        self.plans[pi].1.profile(&self.ctx)
    }

    /// Makes sure buffers (for `capacity` slices) and the plan for this batch exist, and uploads
    /// `planes` (non-empty, one shape) into the input buffer. Returns the plan's index.
    fn prepare(&mut self, planes: &[&Plane], capacity: usize) -> Result<usize, EngineError> {
        let Some(first) = planes.first() else {
            return Err(EngineError::Internal("empty batch".into()));
        };
        let (h, w, batch) = (first.height, first.width, planes.len());
        self.ensure_arena(h, w, batch, capacity)?;
        let pi = self.plan_index(batch, h, w)?;
        let mut data = Vec::with_capacity(batch * h * w);
        for p in planes {
            data.extend_from_slice(&p.data);
        }
        let arena = self
            .arena
            .as_ref()
            .ok_or_else(|| EngineError::Internal("no activation buffers allocated".into()))?;
        self.ctx.scoped(|| {
            self.ctx
                .queue
                .write_buffer(arena.input(), 0, bytemuck::cast_slice(&data))
        })?;
        Ok(pi)
    }
}

/// Checks that every plane is non-empty, consistent and finite.
pub fn validate_inputs(inputs: &[Plane]) -> Result<(), EngineError> {
    for (index, p) in inputs.iter().enumerate() {
        let bad = |reason: &str| EngineError::BadInput {
            index,
            width: p.width,
            height: p.height,
            reason: reason.to_string(),
        };
        if p.width == 0 || p.height == 0 {
            return Err(bad("empty slice"));
        }
        if p.data.len() != p.width * p.height {
            return Err(bad(&format!(
                "{} values for {} pixels",
                p.data.len(),
                p.width * p.height
            )));
        }
        if p.data.iter().any(|v| !v.is_finite()) {
            return Err(bad("contains NaN or infinite values"));
        }
    }
    Ok(())
}

impl Upscaler for GpuEngine {
    fn describe(&self) -> String {
        format!("GPU: {}", self.ctx.describe())
    }

    fn scale(&self) -> usize {
        self.pw.config.scale
    }

    fn upscale(
        &mut self,
        inputs: &[Plane],
        progress: Progress<'_>,
        cancel: &AtomicBool,
    ) -> Result<Vec<Plane>, EngineError> {
        validate_inputs(inputs)?;
        let total = inputs.len();
        let mut out: Vec<Option<Plane>> = vec![None; total];
        // Group by shape, keeping the input order within a group.
        let mut shapes: Vec<(usize, usize)> = Vec::new();
        for p in inputs {
            if !shapes.contains(&(p.height, p.width)) {
                shapes.push((p.height, p.width));
            }
        }
        let mut done = 0usize;
        progress(0, total);
        for (h, w) in shapes {
            let idx: Vec<usize> = (0..total)
                .filter(|&i| inputs[i].height == h && inputs[i].width == w)
                .collect();
            let mut cap = self.batch_for(h, w, idx.len())?;
            let mut start = 0usize;
            while start < idx.len() {
                let end = (start + cap).min(idx.len());
                let chunk: Vec<&Plane> = idx[start..end].iter().map(|&i| &inputs[i]).collect();
                match self.run_batch(&chunk, cap, cancel) {
                    Ok(res) => {
                        for (k, p) in res.into_iter().enumerate() {
                            out[idx[start + k]] = Some(p);
                        }
                        done += end - start;
                        progress(done, total);
                        start = end;
                    }
                    Err(EngineError::OutOfMemory(msg)) if cap > 1 => {
                        tracing::warn!(
                            "GPU out of memory at batch {cap} ({msg}); retrying with {}",
                            cap / 2
                        );
                        self.arena = None;
                        self.plans.clear();
                        cap /= 2;
                        self.max_batch = self.max_batch.min(cap);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, p)| {
                p.ok_or_else(|| EngineError::Internal(format!("slice {i} was not computed")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::default_gpu_budget;
    use wgpu::DeviceType;

    #[test]
    fn default_budget_follows_the_cards_memory() {
        const GIB: u64 = 1 << 30;
        // an 80 GB card: half its memory; an 8 GB card and an unknown one: 6 GiB
        assert_eq!(
            default_gpu_budget(DeviceType::DiscreteGpu, Some(80 * GIB)),
            40 * GIB
        );
        assert_eq!(
            default_gpu_budget(DeviceType::DiscreteGpu, Some(8 * GIB)),
            6 * GIB
        );
        assert_eq!(default_gpu_budget(DeviceType::DiscreteGpu, None), 6 * GIB);
        // other adapters keep their fixed budgets whatever memory they report
        assert_eq!(default_gpu_budget(DeviceType::Cpu, Some(64 * GIB)), GIB);
        assert_eq!(
            default_gpu_budget(DeviceType::IntegratedGpu, Some(16 * GIB)),
            2 * GIB
        );
        assert_eq!(default_gpu_budget(DeviceType::Other, None), 2 * GIB);
    }
}
