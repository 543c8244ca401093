//! Helpers shared by the test binaries: the network configurations of the tests' random
//! checkpoints, the GPU device, seeded inputs, error measures. Each binary uses part of it.
#![allow(dead_code)]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use deltawkv::gpu::GpuContext;
use deltawkv::gpu::graph::{BufId, Graph, read_buffer, storage_buffer, storage_buffer_init};
use deltawkv::model::{Degradation, ModelConfig};
use rand::{Rng, SeedableRng};

/// The test device. Without an adapter the tests FAIL (CI installs lavapipe), unless
/// `DELTAWKV_SKIP_GPU_TESTS=1` outside CI, where they return `None` and the test passes
/// vacuously (in CI, `DELTAWKV_CI` set, they always fail).
pub fn ctx() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let r = CTX.get_or_init(|| GpuContext::new().map(Arc::new).map_err(|e| e.to_string()));
    match r {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            if in_ci() {
                panic!("no GPU adapter ({e}); CI (DELTAWKV_CI set) must have lavapipe");
            }
            if std::env::var("DELTAWKV_SKIP_GPU_TESTS").as_deref() == Ok("1") {
                eprintln!("skipping GPU test: {e}");
                None
            } else {
                panic!(
                    "no GPU adapter ({e}); install mesa-vulkan-drivers or set DELTAWKV_SKIP_GPU_TESTS=1"
                );
            }
        }
    }
}

/// Whether this run is CI's: `DELTAWKV_CI` is set (`.ci/run` exports `DELTAWKV_CI=1`). There a
/// missing tool, adapter or capability FAILS a test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var_os("DELTAWKV_CI").is_some_and(|v| !v.is_empty())
}

/// Whether a test may go on that needs `what` (an adapter capability): `have`, or, when the
/// adapter lacks it, `false` with a note outside CI (the test skips that part) and a panic in CI
/// (`in_ci`), where the adapter (lavapipe) has it and its absence is a broken build.
pub fn require_capability(have: bool, what: &str) -> bool {
    if have {
        return true;
    }
    if in_ci() {
        panic!("the adapter lacks {what}; CI (DELTAWKV_CI set) requires it");
    }
    eprintln!("SKIPPED (DELTAWKV_CI unset): the adapter lacks {what}");
    false
}

/// The smallest configuration the loader accepts (C 4, head 4, one block, LoRA ranks 1; about
/// 155 K parameters, most of them in the fixed-size upsampler): any valid checkpoint, fast.
pub fn minimal_config(scale: usize, degradation: Degradation) -> ModelConfig {
    ModelConfig {
        scale,
        dim: 4,
        head_size: 4,
        groups: 1,
        blocks_per_group: 1,
        ffn_ratio: 1,
        lora_rank_w: 1,
        lora_rank_a: 1,
        lora_rank_v: 1,
        lora_rank_g: 1,
        degradation,
    }
}

/// C 8, head 4, one block, LoRA ranks 2: the viewer tests' checkpoint (its snapshots were made
/// with it).
pub fn tiny_config(scale: usize, degradation: Degradation) -> ModelConfig {
    ModelConfig {
        dim: 8,
        lora_rank_w: 2,
        lora_rank_a: 2,
        lora_rank_v: 2,
        lora_rank_g: 2,
        ..minimal_config(scale, degradation)
    }
}

/// The smallest useful configuration (C 16, head 8, one group of two blocks, LoRA ranks 4):
/// every kernel runs, in well under a second on lavapipe.
pub fn small_config(scale: usize, degradation: Degradation) -> ModelConfig {
    ModelConfig {
        dim: 16,
        head_size: 8,
        blocks_per_group: 2,
        ffn_ratio: 2,
        lora_rank_w: 4,
        lora_rank_a: 4,
        lora_rank_v: 4,
        lora_rank_g: 4,
        ..minimal_config(scale, degradation)
    }
}

/// `n` uniform values in `[lo, hi)` from `seed`.
pub fn rand_vec(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `||a - b|| / ||b||` (the spec's parity measure), in f64.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        let d = f64::from(*x) - f64::from(*y);
        num += d * d;
        den += f64::from(*y) * f64::from(*y);
    }
    assert!(den > 0.0, "reference is all zeros");
    assert!(num.is_finite(), "non-finite result");
    (num / den).sqrt()
}

/// Asserts the relative error is below `tol`, printing it (the figures of the report).
pub fn check(name: &str, gpu: &[f32], cpu: &[f32], tol: f64) {
    let e = rel_err(gpu, cpu);
    eprintln!(
        "{name}: rel. error {e:.3e} (tolerance {tol:.0e}, {} values)",
        cpu.len()
    );
    assert!(e < tol, "{name}: rel. error {e:.3e} >= {tol:.0e}");
}

/// A graph with buffers created from host data.
pub struct Harness {
    pub ctx: Arc<GpuContext>,
    pub graph: Graph,
}

impl Harness {
    pub fn new(ctx: Arc<GpuContext>) -> Self {
        let graph = Graph::new(&ctx);
        Self { ctx, graph }
    }

    /// A buffer holding `data`.
    pub fn input(&mut self, data: &[f32]) -> BufId {
        let b = storage_buffer_init(&self.ctx, "test input", data);
        self.graph.add_buffer(b)
    }

    /// A zero buffer of `n` values.
    pub fn zeros(&mut self, n: usize) -> BufId {
        let b = storage_buffer(&self.ctx, "test output", n as u64);
        self.graph.add_buffer(b)
    }

    /// Runs the graph and reads `len` values of `buf` from element `off`.
    pub fn run(&self) {
        let plan = self.graph.finalize(&self.ctx).expect("finalize");
        plan.execute(&self.ctx, &AtomicBool::new(false), |_| {})
            .expect("execute");
    }

    pub fn read(&self, buf: BufId, off: usize, len: usize) -> Vec<f32> {
        let b = self.graph.buffer(buf).expect("buffer");
        read_buffer(&self.ctx, b, off as u64, len).expect("read")
    }
}

/// NHWC batch (B x h x w x c) to per-image CHW tensors.
pub fn nhwc_to_chw(x: &[f32], b: usize, h: usize, w: usize, c: usize) -> Vec<Vec<f32>> {
    (0..b)
        .map(|i| {
            deltawkv::model::cpu::ops::tokens_to_image(
                &x[i * h * w * c..(i + 1) * h * w * c],
                c,
                h,
                w,
            )
        })
        .collect()
}

/// Per-image CHW tensors to one NHWC batch.
pub fn chw_to_nhwc(imgs: &[Vec<f32>], h: usize, w: usize, c: usize) -> Vec<f32> {
    imgs.iter()
        .flat_map(|im| deltawkv::model::cpu::ops::image_to_tokens(im, c, h, w))
        .collect()
}
