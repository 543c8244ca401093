//! GPU out of memory for real on lavapipe, not injected: a child process of this test binary
//! creates its own device, compiles the kernels, then lowers its own (soft) address-space limit
//! (`prlimit --as`, util-linux) to a few MiB above what it uses, so that lavapipe's next
//! `vkAllocateMemory` of a new memory block fails (`VK_ERROR_OUT_OF_DEVICE_MEMORY`). Checked:
//! - a buffer allocation inside [`GpuContext::scoped`] (the engine's wgpu error scopes) is
//!   `EngineError::OutOfMemory`;
//! - the engine's activation buffers for a slice that no longer fits: `upscale` returns
//!   `EngineError::OutOfMemory` naming what it was allocating, and the engine still runs a small
//!   slice afterwards (the failed buffers were released);
//! - that error is a device failure, after which the viewer's fallback (`backend::Fallback`, what
//!   `app::jobs` applies slice by slice) and the command line's (`backend::GpuWithFallback`)
//!   continue on the CPU reference with a notice naming the error, giving the CPU reference's
//!   output. The CPU runs once the limit is lifted again: the limit stands for a full GPU, not a
//!   full host (on lavapipe both are the process's memory).
//!
//! The limit binds the whole process, so the child runs alone (`--exact`, one thread), under a
//! time limit.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
/// The large slice: its activation buffers at batch 1 (65 MiB with `tiny_config`) need new
/// memory blocks (measured: they fail with 128 MiB of headroom, a 160 x 160 slice's 45 MiB fit
/// in the blocks already there).
const BIG: (usize, usize) = (192, 192);
/// Address space left under the limit.
const HEADROOM: u64 = 16 << 20;
/// The child's time limit (it takes about 10 s).
const CHILD_LIMIT: Duration = Duration::from_secs(300);

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

/// Sets this process's soft address-space limit to `bytes` (`None`: unlimited), the hard limit
/// staying unlimited.
fn limit_address_space(bytes: Option<u64>) {
    let soft = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--as={soft}:unlimited"))
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
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            CHILD_TEST,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("child test process");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > CHILD_LIMIT {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    eprintln!("--- child stderr ---\n{stderr}");
    let status = status.unwrap_or_else(|| {
        panic!("the child did not finish in {CHILD_LIMIT:?}:\n{stdout}\n{stderr}")
    });
    assert!(
        status.success() && stdout.contains("1 passed"),
        "the child failed ({status:?}):\n{stdout}\n{stderr}"
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
    let base = vm_size();
    eprintln!(
        "VmSize {} MiB, activation buffers of one {h}x{w} slice {} MiB, limit = VmSize + {} MiB",
        base >> 20,
        arena >> 20,
        HEADROOM >> 20
    );
    limit_address_space(Some(base + HEADROOM));

    // 1. The error scope catches a real allocation failure (256 MiB: more than the free space
    // of the memory blocks already there and the headroom together; 32 MiB still fits).
    let elems = (256u64 << 20) / 4;
    assert!(elems * 4 <= ctx.limits.max_buffer_size);
    let r = ctx.scoped(|| storage_buffer(&ctx, "over the limit", elems));
    let e = r.expect_err("an allocation over the limit fails");
    eprintln!("scoped allocation: {e}");
    assert!(matches!(e, EngineError::OutOfMemory(_)), "{e:?}");

    // 2. The engine's activation buffers: out of memory at batch 1, with a clear message.
    let e = gpu
        .upscale(std::slice::from_ref(&big), &quiet, &AtomicBool::new(false))
        .expect_err("the big slice cannot fit");
    let msg = e.to_string();
    eprintln!("engine: {msg}");
    assert!(matches!(e, EngineError::OutOfMemory(_)), "{e:?}");
    assert!(
        msg.starts_with("GPU out of memory")
            && msg.contains(&format!("activation buffers for 1 slice(s) of {h}x{w}")),
        "{msg}"
    );
    // The small slice still runs on the same engine (the failed buffers were released).
    let again = gpu
        .upscale(
            std::slice::from_ref(&small),
            &quiet,
            &AtomicBool::new(false),
        )
        .expect("small slice under the limit");
    assert_eq!(again.len(), 1);

    // 3. The viewer's fallback (app::jobs: `is_device_failure`, then `Fallback::take_over`).
    assert!(is_device_failure(&e));
    limit_address_space(None);
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

    // 4. The command line's fallback inside one `Upscaler`: the GPU engine fails under the limit,
    // the CPU reference takes over; the limit is lifted when the second backend reports its
    // start (`progress(0, n)`, which each backend calls before its first allocation).
    limit_address_space(Some(vm_size() + HEADROOM));
    let starts = AtomicUsize::new(0);
    let lift = |done: usize, _: usize| {
        if done == 0 && starts.fetch_add(1, Ordering::SeqCst) == 1 {
            limit_address_space(None);
        }
    };
    let mut cli = GpuWithFallback::new(gpu, ck.clone(), None);
    let out = cli
        .upscale(std::slice::from_ref(&big), &lift, &AtomicBool::new(false))
        .expect("falls back to the CPU");
    assert_eq!(
        starts.load(Ordering::SeqCst),
        2,
        "GPU start, then CPU start"
    );
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
