//! GPU out of memory for real on lavapipe, not injected: a child process of this test binary
//! creates its own device, compiles the kernels, then lowers its own address-space limit
//! (`prlimit --as`, util-linux) so that lavapipe's next large `vkAllocateMemory` fails
//! (`VK_ERROR_OUT_OF_DEVICE_MEMORY`). Checked there:
//! - a buffer allocation inside [`GpuContext::scoped`] (the engine's wgpu error scopes) is
//!   `EngineError::OutOfMemory` with wgpu's message;
//! - the engine's activation buffers for a slice that no longer fits: `upscale` returns
//!   `EngineError::OutOfMemory` naming what it was allocating (after halving down to batch 1);
//! - that error is a device failure, and the viewer's fallback (`backend::Fallback`, what
//!   `app::jobs` applies slice by slice) and the command line's (`backend::GpuWithFallback`)
//!   continue on the CPU reference with a notice, giving the CPU reference's output.
//!
//! The limit applies to the child process only (threads of one process share it, so it cannot
//! run beside the other tests).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::common::*;
use deltawkv::backend::{Fallback, GpuWithFallback, cpu_factory, is_device_failure};
use deltawkv::engine::{EngineError, Upscaler};
use deltawkv::gpu::graph::storage_buffer;
use deltawkv::gpu::network::ArenaSizes;
use deltawkv::gpu::weights::PackedWeights;
use deltawkv::gpu::{GpuContext, GpuEngine, GpuOptions};
use deltawkv::model::cpu;
use deltawkv::model::{Checkpoint, Degradation};
use deltawkv::plane::Plane;

const CHILD_VAR: &str = "DELTAWKV_REAL_OOM_CHILD";
const CHILD_TEST: &str = "oom::real_oom_child";
/// The large slice: its activation buffers at batch 1 (see `arena_bytes`) exceed the headroom
/// left under the limit, the CPU reference's working set for it does not.
const BIG: (usize, usize) = (192, 192);

fn quiet(_: usize, _: usize) {}

/// This process's virtual size in bytes (`VmSize` of /proc/self/status).
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize");
    kb * 1024
}

/// Lowers this process's address-space limit to `bytes` (soft and hard).
fn limit_address_space(bytes: u64) {
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--as={bytes}:{bytes}"))
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn real_gpu_out_of_memory_is_reported_and_falls_back_to_the_cpu() {
    if ctx().is_none() {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            CHILD_TEST,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .output()
        .expect("child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- child stderr ---\n{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("REAL OOM OK"), "{stderr}");
}

/// Run only by the test above, in its own process (it lowers the process's address-space
/// limit).
#[test]
#[ignore = "the child process of real_gpu_out_of_memory_is_reported_and_falls_back_to_the_cpu"]
fn real_oom_child() {
    assert!(
        std::env::var_os(CHILD_VAR).is_some(),
        "run by real_gpu_out_of_memory_is_reported_and_falls_back_to_the_cpu only: it lowers \
         the address-space limit of the whole process"
    );
    let ctx = Arc::new(GpuContext::new().expect("adapter"));
    let ck = Checkpoint::random(&tiny_config(2, Degradation::Kspace), 5);
    let opts = GpuOptions {
        max_batch: Some(2),
        ..Default::default()
    };
    let mut gpu = GpuEngine::new(ctx.clone(), &ck, opts).expect("engine");
    // Compile every kernel and run once on a small slice, before the limit.
    let small = Plane::from_vec(8, 8, rand_vec(1, 64, 0.0, 1.0)).unwrap();
    gpu.upscale(
        std::slice::from_ref(&small),
        &quiet,
        &AtomicBool::new(false),
    )
    .expect("small slice before the limit");
    let (h, w) = BIG;
    let big = Plane::from_vec(w, h, rand_vec(2, h * w, 0.0, 1.0)).unwrap();
    let expected = cpu::forward(&ck, &big).expect("CPU reference");
    let pw = PackedWeights::pack(&ck).expect("pack");
    let arena = ArenaSizes::new(&pw, 1, h, w).total_bytes();
    let headroom = arena / 2;
    let base = vm_size();
    eprintln!(
        "VmSize {} MiB, activation buffers of one {h}x{w} slice {} MiB, limit = VmSize + {} MiB",
        base >> 20,
        arena >> 20,
        headroom >> 20
    );
    limit_address_space(base + headroom);

    // 1. The error scope catches a real allocation failure.
    let r = ctx.scoped(|| storage_buffer(&ctx, "too large for the limit", arena / 4));
    let e = r.err().expect("an allocation over the limit fails");
    assert!(matches!(e, EngineError::OutOfMemory(_)), "{e:?}");
    eprintln!("scoped allocation: {e}");

    // 2. The engine's activation buffers: out of memory at batch 1, with a clear message.
    let e = gpu
        .upscale(std::slice::from_ref(&big), &quiet, &AtomicBool::new(false))
        .expect_err("the big slice cannot fit");
    let msg = e.to_string();
    eprintln!("engine: {msg}");
    assert!(matches!(e, EngineError::OutOfMemory(_)), "{e:?}");
    assert!(
        msg.starts_with("GPU out of memory") && msg.contains(&format!("{h}x{w}")),
        "{msg}"
    );
    // The small slice still runs on the same engine (the failed buffers were released).
    gpu.upscale(
        std::slice::from_ref(&small),
        &quiet,
        &AtomicBool::new(false),
    )
    .expect("small slice under the limit");

    // 3. The viewer's fallback (app::jobs: `is_device_failure`, then `Fallback::take_over`).
    assert!(is_device_failure(&e));
    let mut fallback = Fallback::new(Some(cpu_factory()));
    let taken = fallback
        .take_over(&ck, e, "the GPU failed on slice 0")
        .unwrap_or_else(|e| panic!("fallback: {e}"));
    eprintln!("viewer notice: {}", taken.notice);
    assert!(
        taken.notice.contains("GPU out of memory") && taken.notice.contains("CPU reference"),
        "{}",
        taken.notice
    );
    let mut cpu_engine = taken.engine;
    let out = cpu_engine
        .upscale(std::slice::from_ref(&big), &quiet, &AtomicBool::new(false))
        .expect("CPU fallback");
    assert_eq!(out[0].data, expected.data);

    // 4. The command line's fallback, inside one `Upscaler`.
    let mut cli = GpuWithFallback::new(gpu, ck.clone(), None);
    let out = cli
        .upscale(std::slice::from_ref(&big), &quiet, &AtomicBool::new(false))
        .expect("falls back to the CPU");
    assert_eq!(out[0].data, expected.data);
    let notices = cli.take_notices();
    assert!(
        notices.len() == 1 && notices[0].contains("GPU out of memory"),
        "{notices:?}"
    );
    assert!(
        cli.describe().contains("CPU reference"),
        "{}",
        cli.describe()
    );
    eprintln!("REAL OOM OK");
}
