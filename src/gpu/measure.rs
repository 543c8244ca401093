//! Measured rates of the adapter, for the performance floor `deltawkv bench` reports.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::engine::EngineError;

use super::context::GpuContext;
use super::graph::{Graph, read_buffer, storage_buffer, storage_buffer_init};
use super::kernels::grid_1d;
use super::kernels::{Act, MatmulArgs};

/// f32 rate (FLOP/s, 2 per multiply-accumulate) of the engine's tiled matrix-product kernel on
/// this adapter: a square-ish product, grown until one run takes at least 50 ms, best of three.
pub fn matmul_flops(ctx: &GpuContext) -> Result<f64, EngineError> {
    let (k, n) = (512usize, 512usize);
    let mut m = 512usize;
    loop {
        let x: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32) * 0.01 - 0.5).collect();
        let w: Vec<f32> = (0..k * n).map(|i| ((i % 89) as f32) * 0.01 - 0.4).collect();
        let mut g = Graph::new(ctx);
        let (xb, wb, yb) = ctx.scoped(|| {
            (
                storage_buffer_init(ctx, "bench x", &x),
                storage_buffer_init(ctx, "bench w", &w),
                storage_buffer_init(ctx, "bench y", &vec![0.0; m * n]),
            )
        })?;
        let (xb, wb, yb) = (g.add_buffer(xb), g.add_buffer(wb), g.add_buffer(yb));
        g.matmul(&MatmulArgs {
            x: xb.at(0),
            x_zs: 0,
            w: wb.at(0),
            w_zs: 0,
            y: yb.at(0),
            y_zs: 0,
            m: m as u32,
            n: n as u32,
            k: k as u32,
            batch_z: 1,
            act: Act::None,
            accumulate: false,
        })?;
        let plan = g.finalize(ctx)?;
        let cancel = AtomicBool::new(false);
        plan.execute(ctx, &cancel, |_| {})?; // warm-up
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            plan.execute(ctx, &cancel, |_| {})?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        if best >= 0.05 || m >= 65536 {
            return Ok(2.0 * (m * n * k) as f64 / best);
        }
        m *= 4;
    }
}

/// Device-memory bandwidth (bytes/s, read plus written) of a coalesced vec4 copy in a compute
/// shader (`shaders/bench/bandwidth.wgsl`; a buffer-to-buffer copy command may run on a DMA
/// engine far below the memory's bandwidth), grown until one run takes at least 50 ms (or
/// reaches 1 GiB, or the adapter's buffer limit), best of three.
pub fn copy_bandwidth(ctx: &GpuContext) -> Result<f64, EngineError> {
    let limit = ctx
        .limits
        .max_buffer_size
        .min(ctx.limits.max_storage_buffer_binding_size)
        .min(1 << 30);
    let pipeline = bandwidth_pipeline(ctx)?;
    let mut bytes: u64 = 16 << 20;
    loop {
        let (best, _) = timed_copy(ctx, &pipeline, bytes, None)?;
        if best >= 0.05 || bytes * 4 > limit {
            return Ok(2.0 * bytes as f64 / best);
        }
        bytes *= 4;
    }
}

fn bandwidth_pipeline(ctx: &GpuContext) -> Result<wgpu::ComputePipeline, EngineError> {
    ctx.scoped(|| {
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("bandwidth"),
                source: wgpu::ShaderSource::Wgsl(
                    include_str!("../../shaders/bench/bandwidth.wgsl").into(),
                ),
            });
        ctx.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("bandwidth"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            })
    })
}

/// Copies `bytes` (a multiple of 16) with the bandwidth kernel three times after a warm-up;
/// returns the best time and, when `data` is given (uploaded as the source), the copy read back.
fn timed_copy(
    ctx: &GpuContext,
    pipeline: &wgpu::ComputePipeline,
    bytes: u64,
    data: Option<&[f32]>,
) -> Result<(f64, Vec<f32>), EngineError> {
    let elems = bytes / 4;
    let dev = &ctx.device;
    let (src, dst, bind) = ctx.scoped(|| {
        let src = match data {
            Some(d) => storage_buffer_init(ctx, "bandwidth src", d),
            None => storage_buffer(ctx, "bandwidth src", elems),
        };
        let dst = storage_buffer(ctx, "bandwidth dst", elems);
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("bandwidth"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: src.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: dst.as_entire_binding(),
                },
            ],
        });
        (src, dst, bind)
    })?;
    let groups = u32::try_from((elems / 4).div_ceil(256))
        .map_err(|_| EngineError::Limit("bandwidth probe too large".into()))?;
    let [gx, gy] = grid_1d(groups, ctx.limits.max_compute_workgroups_per_dimension);
    let run = || -> Result<(), EngineError> {
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        let index = ctx.queue.submit([enc.finish()]);
        ctx.wait(Some(index))
    };
    run()?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        run()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let out = if data.is_some() {
        read_buffer(ctx, &dst, 0, elems as usize)?
    } else {
        Vec::new()
    };
    drop(src);
    Ok((best, out))
}

/// The bandwidth kernel's copy of `data` (length a multiple of 4), for its test.
pub fn bandwidth_kernel_copy(ctx: &GpuContext, data: &[f32]) -> Result<Vec<f32>, EngineError> {
    if !data.len().is_multiple_of(4) || data.is_empty() {
        return Err(EngineError::Internal(
            "bandwidth probe: length must be a multiple of 4".into(),
        ));
    }
    let pipeline = bandwidth_pipeline(ctx)?;
    Ok(timed_copy(ctx, &pipeline, data.len() as u64 * 4, Some(data))?.1)
}
