//! Backend selection (`backend::create`) and the CPU fallback of a failing GPU.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use common::*;
use deltawkv::backend::{self, GpuWithFallback};
use deltawkv::engine::{DeviceChoice, EngineError, Upscaler};
use deltawkv::gpu::{GpuContext, GpuEngine, GpuOptions};
use deltawkv::model::cpu;
use deltawkv::model::{Checkpoint, Degradation};
use deltawkv::plane::Plane;

fn tiny() -> Checkpoint {
    Checkpoint::random(&small_config(2, Degradation::Kspace), 5)
}

fn quiet(_: usize, _: usize) {}

fn planes() -> Vec<Plane> {
    vec![Plane::from_vec(6, 5, rand_vec(9, 30, 0.0, 1.0)).unwrap()]
}

/// Runs [`create_each_choice_child`] in a child process of this test binary with
/// `DELTAWKV_CACHE_DIR` set in its environment: setting it here with `set_var` would race the
/// sibling tests, which read the environment (the Vulkan loader's `getenv`) on other threads.
#[test]
fn create_each_choice() {
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "create_each_choice_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DELTAWKV_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run: {text}"
    );
}

#[test]
#[ignore = "run by create_each_choice in a child process, with DELTAWKV_CACHE_DIR set"]
fn create_each_choice_child() {
    let cache = std::path::PathBuf::from(
        std::env::var_os("DELTAWKV_CACHE_DIR")
            .expect("DELTAWKV_CACHE_DIR is set by create_each_choice, which runs this test"),
    );
    let Some(ctx) = ctx() else { return };
    let ck = tiny();
    let reference = cpu::forward(&ck, &planes()[0]).unwrap();

    let mut c = backend::create(ck.clone(), DeviceChoice::Cpu).unwrap();
    assert!(
        c.describe().starts_with("CPU reference"),
        "{}",
        c.describe()
    );

    let mut g = backend::create_with_context(ck.clone(), DeviceChoice::Gpu, ctx.clone()).unwrap();
    assert!(g.describe().starts_with("GPU: "), "{}", g.describe());

    let mut a = backend::create_with_context(ck.clone(), DeviceChoice::Auto, ctx.clone()).unwrap();
    eprintln!("auto chose: {}", a.describe());
    if ctx.is_software() {
        // The choice is shown with the measurement behind it, and cached on disk.
        assert!(a.describe().contains("auto: "), "{}", a.describe());
        assert!(cache.join("device_choice.json").exists());
    } else {
        assert!(a.describe().starts_with("GPU: "), "{}", a.describe());
    }
    for u in [&mut c, &mut g, &mut a] {
        assert_eq!(u.scale(), 2);
        let out = u
            .upscale(&planes(), &quiet, &AtomicBool::new(false))
            .unwrap();
        check(
            &format!("{} vs CPU forward", u.describe()),
            &out[0].data,
            &reference.data,
            1e-4,
        );
    }
}

/// A destroyed (lost) device: the next run fails over to the CPU reference with a notice.
#[test]
fn lost_device_falls_back_to_cpu() {
    if ctx().is_none() {
        return;
    }
    let ctx = Arc::new(GpuContext::new().unwrap());
    let ck = tiny();
    let gpu = GpuEngine::new(ctx.clone(), &ck, GpuOptions::default()).unwrap();
    let mut u = GpuWithFallback::new(gpu, ck.clone(), None);
    let first = u
        .upscale(&planes(), &quiet, &AtomicBool::new(false))
        .unwrap();
    ctx.device.destroy();
    let second = u
        .upscale(&planes(), &quiet, &AtomicBool::new(false))
        .unwrap();
    let reference = assert_fell_back_to_cpu(
        &mut u,
        &ck,
        "CPU reference",
        "after the loss (CPU fallback)",
        &second,
    );
    check(
        "before the loss (GPU)",
        &first[0].data,
        &reference.data,
        1e-4,
    );
}

/// `u` has moved to the CPU reference with one notice containing `notice`, and `out` is the CPU
/// reference's result for the first plane (returned for further comparisons).
fn assert_fell_back_to_cpu(
    u: &mut GpuWithFallback,
    ck: &Checkpoint,
    notice: &str,
    what: &str,
    out: &[Plane],
) -> Plane {
    let notices = u.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains(notice), "{notices:?}");
    assert!(
        u.describe().starts_with("CPU reference"),
        "{}",
        u.describe()
    );
    let reference = cpu::forward(ck, &planes()[0]).unwrap();
    check(what, &out[0].data, &reference.data, 1e-6);
    reference
}

/// Out of memory even at batch 1 (after the engine's own halving): the run continues on the CPU
/// reference with a notice, and gives the CPU reference's result.
#[test]
fn out_of_memory_at_batch_one_falls_back_to_cpu() {
    if ctx().is_none() {
        return;
    }
    let ctx = Arc::new(GpuContext::new().unwrap());
    let ck = tiny();
    let opts = GpuOptions {
        simulate_oom_above: Some(0),
        ..Default::default()
    };
    let gpu = GpuEngine::new(ctx, &ck, opts).unwrap();
    let mut u = GpuWithFallback::new(gpu, ck.clone(), None);
    let out = u
        .upscale(&planes(), &quiet, &AtomicBool::new(false))
        .expect("the CPU fallback should finish the run");
    assert_fell_back_to_cpu(
        &mut u,
        &ck,
        "out of memory",
        "after OOM (CPU fallback)",
        &out,
    );
}

#[test]
fn gpu_choice_without_adapter_is_an_error() {
    let ck = tiny();
    let r = deltawkv::backend::select::select(
        ck,
        DeviceChoice::Gpu,
        Err(EngineError::NoAdapter("none in this test".into())),
    );
    assert!(matches!(r, Err(EngineError::NoAdapter(_))));
    let auto = deltawkv::backend::select::select(
        tiny(),
        DeviceChoice::Auto,
        Err(EngineError::NoAdapter("none in this test".into())),
    )
    .unwrap();
    assert!(
        auto.describe().starts_with("CPU reference"),
        "{}",
        auto.describe()
    );
    assert!(
        auto.describe().contains("none in this test"),
        "{}",
        auto.describe()
    );
}
