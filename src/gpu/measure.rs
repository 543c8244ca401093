//! Measured rates of the adapter, for the performance floor `deltawkv bench` reports.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::engine::EngineError;

use super::context::GpuContext;
use super::graph::{Graph, storage_buffer, storage_buffer_init};
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

/// Device-memory bandwidth (bytes/s, read plus written) of a buffer-to-buffer copy on this
/// adapter: a copy grown until one run takes at least 50 ms (or reaches 1 GiB, or the adapter's
/// buffer limit), best of three.
pub fn copy_bandwidth(ctx: &GpuContext) -> Result<f64, EngineError> {
    let limit = ctx
        .limits
        .max_buffer_size
        .min(ctx.limits.max_storage_buffer_binding_size)
        .min(1 << 30);
    let mut bytes: u64 = 16 << 20;
    loop {
        let elems = bytes / 4;
        let mut g = Graph::new(ctx);
        let (src, dst) = ctx.scoped(|| {
            (
                storage_buffer(ctx, "bandwidth src", elems),
                storage_buffer(ctx, "bandwidth dst", elems),
            )
        })?;
        let (src, dst) = (g.add_buffer(src), g.add_buffer(dst));
        g.copy(src.at(0), dst.at(0), elems);
        let plan = g.finalize(ctx)?;
        let cancel = AtomicBool::new(false);
        plan.execute(ctx, &cancel, |_| {})?; // warm-up
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            plan.execute(ctx, &cancel, |_| {})?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        if best >= 0.05 || bytes * 4 > limit {
            return Ok(2.0 * bytes as f64 / best);
        }
        bytes *= 4;
    }
}
