//! The measurements behind `deltawkv bench`'s floors: the compulsory-traffic count of recorded
//! work, the copy bandwidth, and the `DELTAWKV_ADAPTER` choice of adapter.

use std::sync::Arc;

use crate::common::*;
use deltawkv::engine::Upscaler;
use deltawkv::gpu::kernels::{Act, LayerNormArgs, MatmulArgs};
use deltawkv::gpu::{GpuEngine, GpuOptions, measure};
use deltawkv::model::{Checkpoint, Degradation};
use deltawkv::plane::Plane;

#[test]
fn traffic_counts_inputs_weights_and_outputs_once() {
    let Some(ctx) = ctx() else { return };
    let (m, n, k) = (37usize, 12usize, 20usize);
    let mut hs = Harness::new(ctx);
    let x = hs.input(&rand_vec(1, 2 * m * k, -1.0, 1.0));
    let w = hs.input(&rand_vec(2, k * n, -1.0, 1.0));
    let y = hs.zeros(2 * m * n);
    assert_eq!(hs.graph.traffic_bytes(), 0);
    hs.graph
        .matmul(&MatmulArgs {
            x: x.at(0),
            x_zs: (m * k) as u32,
            w: w.at(0),
            w_zs: 0,
            y: y.at(0),
            y_zs: (m * n) as u32,
            m: m as u32,
            n: n as u32,
            k: k as u32,
            batch_z: 2,
            act: Act::None,
            accumulate: true,
        })
        .expect("matmul");
    // two products: X read, Y read and written (accumulate); W shared, read once
    let matmul = 4 * (2 * (m * k + 2 * m * n) + k * n) as u64;
    assert_eq!(hs.graph.traffic_bytes(), matmul);
    let ln_w = hs.input(&rand_vec(3, 2 * n, -1.0, 1.0));
    let z = hs.zeros(2 * m * n);
    hs.graph
        .layer_norm(&LayerNormArgs {
            x: y.at(0),
            y: z.at(0),
            weights: ln_w,
            w_off: 0,
            b_off: n as u32,
            m: (2 * m) as u32,
            c: n as u32,
            eps: 1e-5,
        })
        .expect("layer norm");
    assert_eq!(
        hs.graph.traffic_bytes(),
        matmul + 4 * (2 * (2 * m * n) + 2 * n) as u64
    );
    hs.graph.copy(x.at(0), y.at(0), 10);
    assert_eq!(
        hs.graph.traffic_bytes(),
        matmul + 4 * (2 * (2 * m * n) + 2 * n) as u64 + 80
    );
    hs.run();
}

#[test]
fn engine_reports_traffic_per_slice_of_its_plans() {
    let Some(ctx) = ctx() else { return };
    let cfg = small_config(2, Degradation::Kspace);
    let ck = Checkpoint::random(&cfg, 7);
    let mut eng = GpuEngine::new(Arc::clone(&ctx), &ck, GpuOptions::default()).expect("engine");
    let slice = |v: f32| Plane {
        width: 6,
        height: 5,
        data: vec![v; 30],
    };
    assert!(eng.traffic_bytes_per_slice(2, 5, 6).is_none());
    let cancel = std::sync::atomic::AtomicBool::new(false);
    eng.upscale(&[slice(0.2), slice(0.7)], &|_, _| {}, &cancel)
        .expect("run");
    let two = eng
        .traffic_bytes_per_slice(2, 5, 6)
        .expect("plan of batch 2");
    eng.upscale(&[slice(0.2)], &|_, _| {}, &cancel)
        .expect("run");
    let one = eng
        .traffic_bytes_per_slice(1, 5, 6)
        .expect("plan of batch 1");
    // activations scale with the batch, weights do not: per slice, batch 2 moves less
    assert!(
        two > 0.0 && one > two,
        "per slice: batch 1 {one}, batch 2 {two}"
    );
    assert!(one < 2.0 * two, "per slice: batch 1 {one}, batch 2 {two}");
}

#[test]
fn bandwidth_kernel_copies_every_element() {
    let Some(ctx) = ctx() else { return };
    // 1,000,004 floats: 250,001 vec4s, not a multiple of the 256-wide workgroups
    let data = rand_vec(11, 1_000_004, -3.0, 3.0);
    let out = measure::bandwidth_kernel_copy(&ctx, &data).expect("copy");
    assert_eq!(out, data);
    assert!(measure::bandwidth_kernel_copy(&ctx, &data[..6]).is_err());
}

#[test]
fn copy_bandwidth_is_measured() {
    let Some(ctx) = ctx() else { return };
    let bw = measure::copy_bandwidth(&ctx).expect("bandwidth");
    eprintln!("copy bandwidth {:.2} GB/s", bw / 1e9);
    assert!(bw.is_finite() && bw > 1e6, "{bw}");
}

/// A Vulkan adapter reports its device-local memory (lavapipe: its heap of system memory), and
/// the engine's default budget is the one `default_gpu_budget` gives for that adapter (unless the
/// environment overrides it).
#[test]
fn engine_budget_comes_from_the_adapter() {
    let Some(ctx) = ctx() else { return };
    if ctx.info.backend == wgpu::Backend::Vulkan {
        let mem = ctx
            .device_memory
            .expect("a Vulkan adapter reports its memory heaps");
        assert!(mem >= 1 << 20, "device-local memory {mem} bytes");
    }
    if std::env::var_os("DELTAWKV_GPU_BUDGET_MB").is_some() {
        return;
    }
    let ck = Checkpoint::random(&small_config(2, Degradation::Kspace), 7);
    let eng = GpuEngine::new(Arc::clone(&ctx), &ck, GpuOptions::default()).expect("engine");
    assert_eq!(
        eng.memory_budget(),
        deltawkv::gpu::engine::default_gpu_budget(ctx.info.device_type, ctx.device_memory)
    );
}
