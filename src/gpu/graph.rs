//! A recorded sequence of kernel dispatches over a set of buffers ([`Graph`]), and its finalised,
//! replayable form ([`Plan`]): pipelines looked up once, one uniform buffer holding every
//! dispatch's parameters (dynamic offsets), bind groups created once and shared by dispatches
//! that bind the same buffers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::EngineError;

use super::context::GpuContext;
use super::pipelines::PipelineEntry;
use super::shader::{KernelKey, KernelOptions, Kind, PARAM_BYTES};

/// A buffer registered in a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub usize);

impl BufId {
    /// A view of this buffer starting at element `off`.
    pub fn at(self, off: u32) -> View {
        View { buf: self, off }
    }
}

/// A tensor inside a buffer: buffer and offset in f32 elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub buf: BufId,
    pub off: u32,
}

#[derive(Clone, Debug)]
enum Op {
    Dispatch {
        key: KernelKey,
        bufs: Vec<BufId>,
        /// The parameter block's bytes.
        params: Vec<u8>,
        groups: [u32; 3],
    },
    Copy {
        src: BufId,
        src_off: u64,
        dst: BufId,
        dst_off: u64,
        bytes: u64,
    },
    /// Segment boundary: work before it is submitted before work after it, and cancellation is
    /// checked there.
    Mark,
}

/// Records dispatches; see the launch functions of each kernel family in [`super::kernels`].
pub struct Graph {
    buffers: Vec<wgpu::Buffer>,
    ops: Vec<Op>,
    max_groups: u32,
    max_invocations: u32,
    max_workgroup_bytes: u32,
    /// Which kernel variants to record.
    pub kernels: KernelOptions,
    /// The device has subgroup operations usable by the kernels ([`GpuContext::has_subgroups`]).
    pub subgroups: bool,
    /// The device's smallest subgroup size (how many lanes a kernel may reduce over).
    pub subgroup_min: u32,
    /// The subgroup size of the tensor-core matrix product, where the device has it
    /// ([`GpuContext::tensor_core_subgroup`]).
    pub tensor_core_subgroup: Option<u32>,
    /// The adapter is a CPU (lavapipe): [`ScanSegments::Auto`](super::shader::ScanSegments)
    /// leaves the scans unsegmented there.
    pub cpu_adapter: bool,
    /// Bytes the recorded work must move at least: every dispatch reading its inputs and weights
    /// once and writing its outputs once, every copy reading and writing its bytes (the
    /// compulsory traffic of this kernel decomposition, for the bandwidth floor).
    traffic: u64,
}

impl Graph {
    /// An empty graph for the device of `ctx`.
    pub fn new(ctx: &GpuContext) -> Self {
        Self {
            buffers: Vec::new(),
            ops: Vec::new(),
            max_groups: ctx.limits.max_compute_workgroups_per_dimension,
            max_invocations: ctx.limits.max_compute_invocations_per_workgroup,
            max_workgroup_bytes: ctx.limits.max_compute_workgroup_storage_size,
            kernels: KernelOptions::default(),
            subgroups: ctx.has_subgroups(),
            subgroup_min: ctx.info.subgroup_min_size,
            tensor_core_subgroup: ctx.tensor_core_subgroup(),
            cpu_adapter: ctx.info.device_type == wgpu::DeviceType::Cpu,
            traffic: 0,
        }
    }

    pub(crate) fn max_groups(&self) -> u32 {
        self.max_groups
    }

    pub(crate) fn max_invocations(&self) -> u32 {
        self.max_invocations
    }

    pub(crate) fn max_workgroup_bytes(&self) -> u32 {
        self.max_workgroup_bytes
    }

    /// Registers a buffer; the graph keeps a handle to it.
    pub fn add_buffer(&mut self, buffer: wgpu::Buffer) -> BufId {
        self.buffers.push(buffer);
        BufId(self.buffers.len() - 1)
    }

    /// The buffer behind `id`.
    pub fn buffer(&self, id: BufId) -> Option<&wgpu::Buffer> {
        self.buffers.get(id.0)
    }

    /// Compulsory traffic in bytes of the work recorded so far (see the field).
    pub fn traffic_bytes(&self) -> u64 {
        self.traffic
    }

    /// Adds `elems` f32 elements (reads plus writes) to the compulsory traffic.
    pub(crate) fn count_traffic(&mut self, elems: u64) {
        self.traffic += elems * 4;
    }

    /// Number of dispatches recorded.
    pub fn dispatch_count(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Dispatch { .. }))
            .count()
    }

    /// The kernel variants (kernel and template constants) of the recorded dispatches, in order.
    pub fn dispatch_keys(&self) -> Vec<KernelKey> {
        self.ops
            .iter()
            .filter_map(|o| match o {
                Op::Dispatch { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    /// The kernels of the recorded dispatches, in order.
    pub fn dispatch_kinds(&self) -> Vec<Kind> {
        self.ops
            .iter()
            .filter_map(|o| match o {
                Op::Dispatch { key, .. } => Some(key.kind),
                _ => None,
            })
            .collect()
    }

    /// Appends a dispatch of kernel variant `key` on a `groups` grid with the parameter block
    /// `params` (the kernel's `struct Params`) and storage buffers `bufs` (bindings 1, 2, ...).
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &mut self,
        key: KernelKey,
        bufs: Vec<BufId>,
        params: &P,
        groups: [u32; 3],
    ) -> Result<(), EngineError> {
        if groups.iter().any(|&g| g > self.max_groups) {
            return Err(EngineError::Limit(format!(
                "{:?} needs a {}x{}x{} grid, over the adapter's limit of {} per dimension",
                key.kind, groups[0], groups[1], groups[2], self.max_groups
            )));
        }
        let params = bytemuck::bytes_of(params).to_vec();
        if params.len() > PARAM_BYTES as usize {
            return Err(EngineError::Internal(format!(
                "{:?}: parameter block too large",
                key.kind
            )));
        }
        if bufs.iter().any(|b| b.0 >= self.buffers.len()) {
            return Err(EngineError::Internal(format!(
                "{:?}: unknown buffer",
                key.kind
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        self.ops.push(Op::Dispatch {
            key,
            bufs,
            params,
            groups,
        });
        Ok(())
    }

    /// Appends a buffer-to-buffer copy of `elems` f32 elements.
    pub fn copy(&mut self, src: View, dst: View, elems: u64) {
        self.count_traffic(2 * elems);
        self.ops.push(Op::Copy {
            src: src.buf,
            src_off: src.off as u64 * 4,
            dst: dst.buf,
            dst_off: dst.off as u64 * 4,
            bytes: elems * 4,
        });
    }

    /// Appends a byte copy (offsets and size in bytes, multiples of 4).
    pub fn copy_bytes(&mut self, src: BufId, src_off: u64, dst: BufId, dst_off: u64, bytes: u64) {
        self.traffic += 2 * bytes;
        self.ops.push(Op::Copy {
            src,
            src_off,
            dst,
            dst_off,
            bytes,
        });
    }

    /// Ends a segment (a submission; cancellation and progress are checked between segments).
    pub fn mark(&mut self) {
        if !matches!(self.ops.last(), Some(Op::Mark) | None) {
            self.ops.push(Op::Mark);
        }
    }

    /// Compiles (in parallel, [`GpuContext::precompile`]) or fetches the pipelines, writes the
    /// parameter blocks into one uniform buffer and creates the bind groups: the result replays
    /// without further allocation.
    pub fn finalize(&self, ctx: &GpuContext) -> Result<Plan, EngineError> {
        let align = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(PARAM_BYTES);
        let n_dispatch = self.dispatch_count() as u64;
        let mut bytes = vec![0u8; (n_dispatch.max(1) * align) as usize];
        let mut slot = 0u64;
        let mut pipelines: HashMap<KernelKey, Arc<PipelineEntry>> = HashMap::new();
        // Dispatches with their parameter offset; bind groups are made once the uniform buffer
        // exists.
        struct Pending {
            label: String,
            entry: Arc<PipelineEntry>,
            bufs: Vec<BufId>,
            offset: u32,
            groups: [u32; 3],
        }
        enum Pre {
            D(Pending),
            C(BufId, u64, BufId, u64, u64),
            M,
        }
        ctx.precompile(&self.dispatch_keys())?;
        let mut pre = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            match op {
                Op::Dispatch {
                    key,
                    bufs,
                    params,
                    groups,
                } => {
                    let entry = match pipelines.get(key) {
                        Some(e) => e.clone(),
                        None => {
                            let e = ctx.pipeline(key)?;
                            pipelines.insert(key.clone(), e.clone());
                            e
                        }
                    };
                    let start = (slot * align) as usize;
                    bytes[start..start + params.len()].copy_from_slice(params);
                    pre.push(Pre::D(Pending {
                        label: key.short_label(),
                        entry,
                        bufs: bufs.clone(),
                        offset: (slot * align) as u32,
                        groups: *groups,
                    }));
                    slot += 1;
                }
                Op::Copy {
                    src,
                    src_off,
                    dst,
                    dst_off,
                    bytes: b,
                } => pre.push(Pre::C(*src, *src_off, *dst, *dst_off, *b)),
                Op::Mark => pre.push(Pre::M),
            }
        }
        let (uniform, ready) = ctx.scoped(|| {
            let uniform = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("deltawkv params"),
                size: bytes.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            ctx.queue.write_buffer(&uniform, 0, &bytes);
            let mut groups_cache: HashMap<(usize, Vec<BufId>), wgpu::BindGroup> = HashMap::new();
            let mut segments: Vec<Vec<Ready>> = vec![Vec::new()];
            for p in pre {
                match p {
                    Pre::D(d) => {
                        let layout_id = Arc::as_ptr(&d.entry) as usize;
                        let cache_key = (layout_id, d.bufs.clone());
                        let bg = groups_cache
                            .entry(cache_key)
                            .or_insert_with(|| {
                                let mut entries = vec![wgpu::BindGroupEntry {
                                    binding: 0,
                                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                        buffer: &uniform,
                                        offset: 0,
                                        size: wgpu::BufferSize::new(PARAM_BYTES),
                                    }),
                                }];
                                for (i, b) in d.bufs.iter().enumerate() {
                                    entries.push(wgpu::BindGroupEntry {
                                        binding: i as u32 + 1,
                                        resource: self.buffers[b.0].as_entire_binding(),
                                    });
                                }
                                ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                                    label: None,
                                    layout: &d.entry.layout,
                                    entries: &entries,
                                })
                            })
                            .clone();
                        if let Some(seg) = segments.last_mut() {
                            seg.push(Ready::Dispatch {
                                label: d.label,
                                entry: d.entry,
                                bind_group: bg,
                                offset: d.offset,
                                groups: d.groups,
                            });
                        }
                    }
                    Pre::C(s, so, t, to, b) => {
                        if let Some(seg) = segments.last_mut() {
                            seg.push(Ready::Copy {
                                src: self.buffers[s.0].clone(),
                                src_off: so,
                                dst: self.buffers[t.0].clone(),
                                dst_off: to,
                                bytes: b,
                            });
                        }
                    }
                    Pre::M => segments.push(Vec::new()),
                }
            }
            segments.retain(|s| !s.is_empty());
            (uniform, segments)
        })?;
        Ok(Plan {
            segments: ready,
            _uniform: uniform,
            traffic: self.traffic,
            keys: self.dispatch_keys(),
        })
    }
}

enum Ready {
    Dispatch {
        label: String,
        entry: Arc<PipelineEntry>,
        bind_group: wgpu::BindGroup,
        offset: u32,
        groups: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        src_off: u64,
        dst: wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    },
}

/// A finalised graph, replayable any number of times.
pub struct Plan {
    segments: Vec<Vec<Ready>>,
    _uniform: wgpu::Buffer,
    traffic: u64,
    /// The kernel variants of its dispatches, in order ([`Graph::dispatch_keys`]).
    keys: Vec<KernelKey>,
}

impl Plan {
    /// Compulsory traffic of one run in bytes ([`Graph::traffic_bytes`]).
    pub fn traffic_bytes(&self) -> u64 {
        self.traffic
    }

    /// The kernel variants this plan dispatches, in order (which scan kernel runs, say).
    pub fn dispatch_keys(&self) -> &[KernelKey] {
        &self.keys
    }

    /// Number of segments (submissions) per run.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Encodes and submits every segment in order, at most two in flight, checking `cancel`
    /// before each and calling `after_segment(i)` once segment `i` is known to be submitted.
    /// Returns when all the work has completed.
    pub fn execute(
        &self,
        ctx: &GpuContext,
        cancel: &AtomicBool,
        mut after_segment: impl FnMut(usize),
    ) -> Result<(), EngineError> {
        let mut prev: Option<wgpu::SubmissionIndex> = None;
        for (i, seg) in self.segments.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                ctx.wait(prev)?;
                return Err(EngineError::Cancelled);
            }
            let index = ctx.scoped(|| {
                let mut enc = ctx
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
                let mut k = 0;
                while k < seg.len() {
                    if let Ready::Copy {
                        src,
                        src_off,
                        dst,
                        dst_off,
                        bytes,
                    } = &seg[k]
                    {
                        enc.copy_buffer_to_buffer(src, *src_off, dst, *dst_off, *bytes);
                        k += 1;
                        continue;
                    }
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    });
                    while let Some(Ready::Dispatch {
                        entry,
                        bind_group,
                        offset,
                        groups,
                        ..
                    }) = seg.get(k)
                    {
                        pass.set_pipeline(&entry.pipeline);
                        pass.set_bind_group(0, bind_group, &[*offset]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        k += 1;
                    }
                }
                ctx.queue.submit([enc.finish()])
            })?;
            if let Some(p) = prev.take() {
                ctx.wait(Some(p))?;
            }
            prev = Some(index);
            after_segment(i);
        }
        ctx.wait(prev)
    }
}

impl Plan {
    /// Runs the plan once with every dispatch in its own submission, waiting for each, and
    /// returns the wall time per kernel variant (label, dispatches, seconds), slowest first.
    /// Slower than [`Plan::execute`] (no overlap, one synchronisation per dispatch): for finding
    /// where the time goes, not for timing the whole.
    pub fn profile(&self, ctx: &GpuContext) -> Result<Vec<(String, usize, f64)>, EngineError> {
        let mut acc: HashMap<String, (usize, f64)> = HashMap::new();
        for op in self.segments.iter().flatten() {
            let t = std::time::Instant::now();
            let label = ctx.scoped(|| {
                let mut enc = ctx
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
                let label = match op {
                    Ready::Copy {
                        src,
                        src_off,
                        dst,
                        dst_off,
                        bytes,
                    } => {
                        enc.copy_buffer_to_buffer(src, *src_off, dst, *dst_off, *bytes);
                        "copy".to_string()
                    }
                    Ready::Dispatch {
                        label,
                        entry,
                        bind_group,
                        offset,
                        groups,
                    } => {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: None,
                        });
                        pass.set_pipeline(&entry.pipeline);
                        pass.set_bind_group(0, bind_group, &[*offset]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        label.clone()
                    }
                };
                ctx.queue.submit([enc.finish()]);
                label
            })?;
            ctx.wait(None)?;
            let e = acc.entry(label).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += t.elapsed().as_secs_f64();
        }
        let mut v: Vec<(String, usize, f64)> =
            acc.into_iter().map(|(k, (n, s))| (k, n, s)).collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(v)
    }
}

/// Creates a storage buffer of `elems` f32 elements, zero-filled, usable as copy source and
/// destination.
pub fn storage_buffer(ctx: &GpuContext, label: &str, elems: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (elems.max(1) * 4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Creates a storage buffer holding `data`.
pub fn storage_buffer_init(ctx: &GpuContext, label: &str, data: &[f32]) -> wgpu::Buffer {
    let buf = storage_buffer(ctx, label, data.len() as u64);
    if !data.is_empty() {
        ctx.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
    }
    buf
}

/// Creates a mappable staging buffer for reading `elems` f32 elements back.
pub fn staging_buffer(ctx: &GpuContext, elems: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("deltawkv readback"),
        size: (elems.max(1) * 4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Maps a staging buffer (after the copies into it completed) and returns its first `elems`
/// values.
pub fn read_staging(
    ctx: &GpuContext,
    buf: &wgpu::Buffer,
    elems: usize,
) -> Result<Vec<f32>, EngineError> {
    let bytes = (elems as u64 * 4).max(4);
    let slice = buf.slice(0..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait(None)?;
    match rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(EngineError::Device(format!(
                "mapping the readback buffer: {e}"
            )));
        }
        Err(_) => {
            return Err(EngineError::Device(
                "readback buffer was never mapped".into(),
            ));
        }
    }
    let out = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| EngineError::Device(format!("reading the readback buffer: {e}")))?;
        let floats: &[f32] = bytemuck::cast_slice(&view);
        floats
            .get(..elems)
            .map(<[f32]>::to_vec)
            .ok_or_else(|| EngineError::Device("readback buffer too small".into()))
    };
    let out = match out {
        Ok(v) => v,
        Err(e) => {
            buf.unmap();
            return Err(e);
        }
    };
    buf.unmap();
    Ok(out)
}

/// Reads `elems` f32 values of a storage buffer starting at element `off` (a one-off copy through
/// a staging buffer; for tests and debugging).
pub fn read_buffer(
    ctx: &GpuContext,
    buf: &wgpu::Buffer,
    off: u64,
    elems: usize,
) -> Result<Vec<f32>, EngineError> {
    let staging = ctx.scoped(|| {
        let staging = staging_buffer(ctx, elems as u64);
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(buf, off * 4, &staging, 0, (elems as u64 * 4).max(4));
        ctx.queue.submit([enc.finish()]);
        staging
    })?;
    read_staging(ctx, &staging, elems)
}
