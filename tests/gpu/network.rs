//! The whole network on the GPU: against the committed PyTorch golden vectors
//! (tests/data/golden; head sizes 8 and 16, and 32, the shipped model's, where the default is
//! the pipelined subgroup scan), against the CPU reference forward pass, batching,
//! cancellation, and errors (bad checkpoint, bad input) surfacing as errors. Each network test
//! asserts which scan kernel the engine's plan dispatched (`GpuEngine::plan_dispatch_keys`).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::common::*;
use deltawkv::engine::{EngineError, Upscaler};
use deltawkv::gpu::graph::Graph;
use deltawkv::gpu::kernels::{KernelOptions, Kind, ScanArgs};
use deltawkv::gpu::{GpuContext, GpuEngine, GpuOptions};
use deltawkv::model::cpu::{self, ops};
use deltawkv::model::{Checkpoint, Degradation, ModelConfig};
use deltawkv::plane::Plane;
use safetensors::{Dtype, SafeTensors};

/// The spec's parity contract (docs/model-spec.md): `||out - ref|| / ||ref|| < 1e-4`. Every
/// bound below is tighter.
const PARITY: f64 = 1e-4;
/// Pinned bounds: about 5x the worst error measured on lavapipe (Mesa 22.3.6, Debian 12, x86-64), so that a
/// 10x regression of any measured value fails while rounding differences between drivers pass.
/// GPU network against the PyTorch float64 goldens (56 outputs, heads 8, 16 and 32, every scan
/// kernel): measured 8.2e-7 .. 1.6e-6.
const GOLDEN: f64 = 7e-6;
/// GPU network against the CPU reference (36 slices): measured 5.7e-7 .. 1.2e-6.
const CPU_PARITY: f64 = 5e-6;
/// One scan kernel against the PyTorch scan-direction goldens (8 runs): measured
/// 8.8e-8 .. 1.2e-7.
const SCAN_GOLDEN: f64 = 6e-7;
const _: () = assert!(GOLDEN <= PARITY && CPU_PARITY <= PARITY && SCAN_GOLDEN <= PARITY);

pub(crate) fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tensor of a golden file as f32 (stored as F64 or F32), with its shape.
pub(crate) fn tensor(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let data = match t.dtype() {
        Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        d => panic!("{name}: unexpected dtype {d:?}"),
    };
    (t.shape().to_vec(), data)
}

pub(crate) fn quiet(_: usize, _: usize) {}

/// The scan kernel a network test expects the engine to dispatch (the dispatch kinds of its
/// plan), as `KernelOptions` and the head size choose it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scan {
    Vec4,
    /// `scan_sg.wgsl` (head size 32 with subgroups), `PIPE = pipelined`.
    Subgroup {
        pipelined: bool,
    },
    Chunked,
    /// The segmented subgroup scan (`scan_sg.wgsl` ROLE 1, `scan_carry.wgsl`, ROLE 2).
    Segmented {
        pipelined: bool,
    },
}

impl Scan {
    /// Whether the adapter has what this kernel needs; without it the engine falls back to
    /// another scan: a failure in CI (`DELTAWKV_CI` set), elsewhere the kernel is not asserted.
    pub(crate) fn available(self, ctx: &GpuContext) -> bool {
        match self {
            Scan::Vec4 => true,
            Scan::Subgroup { .. } => {
                require_capability(ctx.has_subgroups(), "usable subgroups (scan_sg.wgsl)")
            }
            Scan::Chunked => require_capability(
                Graph::new(ctx).can_scan_chunked(),
                "the limits of scan_chunk.wgsl",
            ),
            Scan::Segmented { .. } => require_capability(
                Graph::new(ctx).can_scan_segmented(),
                "subgroups and the limits of the segmented scan",
            ),
        }
    }
}

/// Asserts that every scan dispatch of the engine's cached plan for `batch` slices of `h x w` is
/// `want`'s kernel, one per block (fused directions) or four (one per direction); a segmented
/// scan counts once (its first pass), and its carry and second pass must follow it.
pub(crate) fn assert_scan_ran(
    eng: &GpuEngine,
    cfg: &ModelConfig,
    (batch, h, w): (usize, usize, usize),
    want: Scan,
) {
    let keys = eng
        .plan_dispatch_keys(batch, h, w)
        .expect("the plan of the last batch is cached");
    let role = |k: &deltawkv::gpu::kernels::KernelKey| {
        k.consts.iter().find(|(n, _)| *n == "ROLE").map(|c| c.1)
    };
    for (i, k) in keys.iter().enumerate() {
        if k.kind == Kind::ScanSg && role(k) == Some(1) {
            assert_eq!(keys[i + 1].kind, Kind::ScanCarry, "after `{}`", k.label());
            assert_eq!(role(&keys[i + 2]), Some(2), "after `{}`", k.label());
        }
    }
    let scans: Vec<_> = keys
        .iter()
        .filter(|k| {
            matches!(k.kind, Kind::Scan | Kind::ScanVec4 | Kind::ScanChunk)
                || (k.kind == Kind::ScanSg && role(k) != Some(2))
        })
        .collect();
    let per_block = if eng.kernels().fused_scan { 1 } else { 4 };
    assert_eq!(
        scans.len(),
        per_block * cfg.groups * cfg.blocks_per_group,
        "scan dispatches: {:?}",
        scans.iter().map(|k| k.label()).collect::<Vec<_>>()
    );
    for k in scans {
        let pipe = k.consts.iter().find(|(n, _)| *n == "PIPE").map(|c| c.1);
        let got = match (k.kind, pipe) {
            (Kind::ScanVec4, _) => Some(Scan::Vec4),
            (Kind::ScanSg, Some(p)) if role(k) == Some(1) => {
                Some(Scan::Segmented { pipelined: p == 1 })
            }
            (Kind::ScanSg, Some(p)) => Some(Scan::Subgroup { pipelined: p == 1 }),
            (Kind::ScanChunk, _) => Some(Scan::Chunked),
            _ => None,
        };
        assert_eq!(got, Some(want), "scan dispatch `{}`", k.label());
    }
}

/// The golden checkpoint of `scale` (`model_x{scale}.safetensors`, head size 8 at x2, 16 at
/// x4); with `head32`, read with head size 32 (one head: `r_k` `[H, N]` becomes `[1, 32]`, the
/// same values), as `train/tools/gen_golden_extra.py` reads it for `head32_x{scale}`.
fn golden_checkpoint(scale: usize, head32: bool) -> Checkpoint {
    let mut ck = Checkpoint::from_bytes(
        &golden(&format!("model_x{scale}.safetensors")),
        "golden model",
    )
    .expect("golden checkpoint");
    if head32 {
        ck.config.head_size = 32;
        let mut reshaped = 0;
        for (name, t) in ck.tensors.iter_mut() {
            if name.ends_with("att.r_k") {
                t.shape = vec![1, 32];
                reshaped += 1;
            }
        }
        assert_eq!(reshaped, ck.config.groups * ck.config.blocks_per_group);
        ck.validate("golden model read at head size 32")
            .expect("valid at head size 32");
    }
    ck
}

/// All golden inputs of one checkpoint in ONE call (four shapes: the engine groups them),
/// against the PyTorch outputs (`vectors_x{scale}`, or `head32_x{scale}` with `head32`) within
/// `tol`; the engine must have run the scan kernel `want`.
fn golden_case(scale: usize, head32: bool, kernels: KernelOptions, want: Scan, tol: f64) {
    let Some(ctx) = ctx() else { return };
    let assert_kernel = want.available(&ctx);
    let ck = golden_checkpoint(scale, head32);
    let bytes = golden(&format!("vectors_x{scale}.safetensors"));
    let st = SafeTensors::deserialize(&bytes).expect("golden vectors");
    let out_bytes = if head32 {
        golden(&format!("head32_x{scale}.safetensors"))
    } else {
        bytes.clone()
    };
    let st_out = SafeTensors::deserialize(&out_bytes).expect("golden outputs");
    let tags = ["16x16", "12x16", "9x7", "5x6"];
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for tag in tags {
        let (shape, data) = tensor(&st, &format!("input.{tag}"));
        inputs.push(Plane::from_vec(shape[2], shape[1], data).unwrap());
        expected.push(tensor(&st_out, &format!("output.{tag}")).1);
    }
    let opts = GpuOptions {
        kernels: Some(kernels),
        ..Default::default()
    };
    let mut eng = GpuEngine::new(ctx, &ck, opts).expect("engine");
    let out = eng
        .upscale(&inputs, &quiet, &AtomicBool::new(false))
        .expect("upscale");
    if assert_kernel {
        assert_scan_ran(&eng, &ck.config, (1, 5, 6), want);
    }
    let n = ck.config.head_size;
    for ((tag, o), e) in tags.iter().zip(&out).zip(&expected) {
        assert_eq!(o.width * o.height, e.len());
        check(
            &format!("network x{scale} head {n} {tag} vs PyTorch golden ({want:?}, {kernels:?})"),
            &o.data,
            e,
            tol,
        );
    }
}

#[test]
fn golden_x2() {
    golden_case(2, false, KernelOptions::default(), Scan::Vec4, GOLDEN);
}

#[test]
fn golden_x4() {
    golden_case(4, false, KernelOptions::default(), Scan::Vec4, GOLDEN);
}

/// The shipped model's head size (32) with the default kernels: the pipelined subgroup scan,
/// against PyTorch.
#[test]
fn golden_x2_head32() {
    golden_case(
        2,
        true,
        KernelOptions::default(),
        Scan::Subgroup { pipelined: true },
        GOLDEN,
    );
}

#[test]
fn golden_x4_head32() {
    golden_case(
        4,
        true,
        KernelOptions::default(),
        Scan::Subgroup { pipelined: true },
        GOLDEN,
    );
}

/// The kernels that were the default before the coalesced LayerNorm and the pipelined subgroup
/// scan (`ln-tokens+sg-serial`) at head size 32, where `sg-serial` takes effect.
#[test]
fn golden_x2_head32_ln_tokens_sg_serial() {
    golden_case(
        2,
        true,
        KernelOptions::from_name("ln-tokens+sg-serial").unwrap(),
        Scan::Subgroup { pipelined: false },
        GOLDEN,
    );
}

#[test]
fn golden_x4_head32_sg_serial() {
    golden_case(
        4,
        true,
        KernelOptions::from_name("sg-serial").unwrap(),
        Scan::Subgroup { pipelined: false },
        GOLDEN,
    );
}

/// Head size 32 with the state rows over 8 lanes (`sg8`; tests/gpu/scan.rs checks the kernels
/// recorded), whole and segmented.
#[test]
fn golden_x4_head32_sg8() {
    golden_case(
        4,
        true,
        KernelOptions::from_name("sg8").unwrap(),
        Scan::Subgroup { pipelined: true },
        GOLDEN,
    );
}

#[test]
fn golden_x2_head32_segmented_sg8() {
    golden_case(
        2,
        true,
        KernelOptions::from_name("seglen7+sg8").unwrap(),
        Scan::Segmented { pipelined: true },
        GOLDEN,
    );
}

/// Head size 32 without the subgroup scan (`vec4-scan`, what adapters without subgroups run),
/// and with the chunked scan.
#[test]
fn golden_x2_head32_vec4_scan() {
    golden_case(
        2,
        true,
        KernelOptions::from_name("vec4-scan").unwrap(),
        Scan::Vec4,
        GOLDEN,
    );
}

#[test]
fn golden_x4_head32_chunked_scan() {
    golden_case(
        4,
        true,
        KernelOptions::from_name("chunked").unwrap(),
        Scan::Chunked,
        GOLDEN,
    );
}

/// The segmented subgroup scan against PyTorch: segments of 8 tokens (the 16 x 16 input in 32
/// segments, 5 x 6 in 4 with a partial last one), pipelined; segments of 7 with the serial
/// subgroup scan.
#[test]
fn golden_x2_head32_segmented_scan() {
    golden_case(
        2,
        true,
        KernelOptions::from_name("seglen8").unwrap(),
        Scan::Segmented { pipelined: true },
        GOLDEN,
    );
}

#[test]
fn golden_x4_head32_segmented_sg_serial() {
    golden_case(
        4,
        true,
        KernelOptions::from_name("seglen7+sg-serial").unwrap(),
        Scan::Segmented { pipelined: false },
        GOLDEN,
    );
}

/// The scan kernel on the golden recurrence problem (h = 5, w = 7, N = 8), each direction; the
/// default kernel and the chunked one (`scan_chunk.wgsl`, its state padded from 8 to 32).
#[test]
fn golden_scan_directions() {
    let Some(ctx) = ctx() else { return };
    let bytes = golden("scan_dirs.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("scan vectors");
    let (h, w, n, c) = (5usize, 7usize, 8usize, 16usize);
    let g = |name: &str| tensor(&st, name).1;
    let (r, lam, kk, a, kt, v) = (
        g("scan.r"),
        g("scan.decay"),
        g("scan.kk"),
        g("scan.a"),
        g("scan.kt"),
        g("scan.v"),
    );
    let kneg: Vec<f32> = kk.iter().map(|x| -x).collect();
    let kb = ops::mul(&kk, &a);
    let names = [
        "scan.y.dir0_rows_forward",
        "scan.y.dir1_rows_backward",
        "scan.y.dir2_cols_forward",
        "scan.y.dir3_cols_backward",
    ];
    let len = (h * w * c) as u32;
    for (chunked, (dir, name)) in [false, true]
        .into_iter()
        .flat_map(|c| names.iter().enumerate().map(move |d| (c, d)))
    {
        let mut hs = Harness::new(ctx.clone());
        hs.graph.kernels.scan_chunked = chunked;
        let ins =
            hs.input(&[lam.clone(), kneg.clone(), kb.clone(), kt.clone(), v.clone()].concat());
        let rb = hs.input(&r);
        let y = hs.zeros(h * w * c);
        let state = hs.zeros(2 * n * n);
        hs.graph
            .scan(&ScanArgs {
                ins,
                lam_off: 0,
                kneg_off: len,
                kb_off: 2 * len,
                kt_off: 3 * len,
                v_off: 4 * len,
                r: rb.at(0),
                y: y.at(0),
                state: state.at(0),
                batch: 1,
                height: h as u32,
                width: w as u32,
                c: c as u32,
                head_size: n as u32,
                dir: dir as u32,
                scratch: None,
            })
            .unwrap();
        if chunked
            && require_capability(hs.graph.can_scan_chunked(), "the limits of scan_chunk.wgsl")
        {
            assert_eq!(hs.graph.dispatch_kinds(), [Kind::ScanChunk]);
        }
        hs.run();
        check(
            &format!("scan {name} vs PyTorch golden (chunked: {chunked})"),
            &hs.read(y, 0, h * w * c),
            &g(name),
            SCAN_GOLDEN,
        );
    }
}

/// A small configuration that exercises every code path: 2 groups (v_first crosses groups),
/// odd LoRA ranks, head size 16.
fn network_config(scale: usize) -> ModelConfig {
    ModelConfig {
        dim: 32,
        head_size: 16,
        groups: 2,
        lora_rank_w: 5,
        lora_rank_a: 7,
        lora_rank_v: 3,
        lora_rank_g: 9,
        ..small_config(scale, Degradation::Kspace)
    }
}

fn test_planes(seed: u64, shapes: &[(usize, usize)]) -> Vec<Plane> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, &(h, w))| {
            Plane::from_vec(w, h, rand_vec(seed + i as u64, h * w, 0.0, 1.0)).unwrap()
        })
        .collect()
}

/// [`network_config`] at the shipped model's head size: C 64, two heads of 32.
fn network_config_head32(scale: usize) -> ModelConfig {
    ModelConfig {
        dim: 64,
        head_size: 32,
        ..network_config(scale)
    }
}

/// Several slices of two shapes, batched two at a time, against `cpu::forward` slice by slice
/// within `tol`; the engine must have run the scan kernel `want`.
fn cpu_parity_case(cfg: ModelConfig, kernels: KernelOptions, want: Scan, tol: f64) {
    let Some(ctx) = ctx() else { return };
    let assert_kernel = want.available(&ctx);
    let scale = cfg.scale;
    let ck = Checkpoint::random(&cfg, 7 + scale as u64);
    let inputs = test_planes(300, &[(7, 5), (7, 5), (6, 9), (7, 5)]);
    let opts = GpuOptions {
        max_batch: Some(2),
        kernels: Some(kernels),
        ..Default::default()
    };
    let mut eng = GpuEngine::new(ctx, &ck, opts).expect("engine");
    let progress = std::sync::Mutex::new(Vec::new());
    let report = |d: usize, t: usize| progress.lock().unwrap().push((d, t));
    let out = eng
        .upscale(&inputs, &report, &AtomicBool::new(false))
        .expect("upscale");
    if assert_kernel {
        assert_scan_ran(&eng, &ck.config, (1, 6, 9), want);
    }
    let n = cfg.head_size;
    for (i, (inp, o)) in inputs.iter().zip(&out).enumerate() {
        let reference = cpu::forward(&ck, inp).expect("cpu forward");
        assert_eq!((o.width, o.height), (reference.width, reference.height));
        check(
            &format!(
                "network x{scale} head {n} slice {i} ({}x{}) vs CPU forward ({want:?}, {kernels:?})",
                inp.height, inp.width
            ),
            &o.data,
            &reference.data,
            tol,
        );
    }
    let p = progress.lock().unwrap();
    assert_eq!(p.first(), Some(&(0, 4)));
    assert_eq!(p.last(), Some(&(4, 4)));
}

fn kernels(name: &str) -> KernelOptions {
    KernelOptions::from_name(name).unwrap()
}

#[test]
fn cpu_parity_x2() {
    cpu_parity_case(
        network_config(2),
        KernelOptions::default(),
        Scan::Vec4,
        CPU_PARITY,
    );
}

#[test]
fn cpu_parity_x4() {
    cpu_parity_case(
        network_config(4),
        KernelOptions::default(),
        Scan::Vec4,
        CPU_PARITY,
    );
}

/// Head size 32 (two heads) with the default kernels: the pipelined subgroup scan.
#[test]
fn cpu_parity_x2_head32() {
    cpu_parity_case(
        network_config_head32(2),
        KernelOptions::default(),
        Scan::Subgroup { pipelined: true },
        CPU_PARITY,
    );
}

#[test]
fn cpu_parity_x4_head32_ln_tokens_sg_serial() {
    cpu_parity_case(
        network_config_head32(4),
        kernels("ln-tokens+sg-serial"),
        Scan::Subgroup { pipelined: false },
        CPU_PARITY,
    );
}

/// The segmented scan in the network against the CPU forward pass: batches of two images,
/// segments of 5 tokens, fused and one direction at a time.
#[test]
fn cpu_parity_x2_head32_segmented_scan() {
    cpu_parity_case(
        network_config_head32(2),
        kernels("seglen5"),
        Scan::Segmented { pipelined: true },
        CPU_PARITY,
    );
}

#[test]
fn cpu_parity_x4_head32_segmented_per_direction_scan() {
    cpu_parity_case(
        network_config_head32(4),
        kernels("seglen11+per-direction"),
        Scan::Segmented { pipelined: true },
        CPU_PARITY,
    );
}

#[test]
fn cpu_parity_x2_head32_chunked_per_direction_scan() {
    cpu_parity_case(
        network_config_head32(2),
        kernels("chunked-per-direction"),
        Scan::Chunked,
        CPU_PARITY,
    );
}

/// One scan dispatch per direction (the spec's description of the engine) gives the PyTorch
/// goldens too.
#[test]
fn golden_x2_per_direction_scan() {
    golden_case(2, false, kernels("per-direction"), Scan::Vec4, GOLDEN);
}

/// The chunked scan (`scan_chunk.wgsl`, opt-in) gives the PyTorch goldens, fused and per
/// direction, and matches the CPU forward pass on batched slices.
#[test]
fn golden_x2_chunked_scan() {
    golden_case(2, false, kernels("chunked"), Scan::Chunked, GOLDEN);
}

#[test]
fn golden_x4_chunked_scan() {
    golden_case(4, false, kernels("chunked"), Scan::Chunked, GOLDEN);
}

#[test]
fn golden_x2_chunked_per_direction_scan() {
    golden_case(
        2,
        false,
        kernels("chunked-per-direction"),
        Scan::Chunked,
        GOLDEN,
    );
}

#[test]
fn cpu_parity_x2_chunked_scan() {
    cpu_parity_case(
        network_config(2),
        kernels("chunked"),
        Scan::Chunked,
        CPU_PARITY,
    );
}

/// The one-thread-per-token LayerNorm (`ln-tokens`) at head sizes 8 and 16, where the scan is
/// the vec4 one whatever the subgroup options say (`sg-serial` acts at head size 32 only: the
/// `head32` tests above run it).
#[test]
fn golden_x2_ln_tokens() {
    golden_case(2, false, kernels("ln-tokens"), Scan::Vec4, GOLDEN);
}

#[test]
fn golden_x4_ln_tokens() {
    golden_case(4, false, kernels("ln-tokens"), Scan::Vec4, GOLDEN);
}

#[test]
fn cpu_parity_x2_ln_tokens() {
    cpu_parity_case(
        network_config(2),
        kernels("ln-tokens"),
        Scan::Vec4,
        CPU_PARITY,
    );
}

/// The first engine's kernels (scalar-storage matmul) stay correct: benchmarks compare them.
#[test]
fn cpu_parity_x4_baseline_kernels() {
    cpu_parity_case(
        network_config(4),
        KernelOptions::BASELINE,
        Scan::Vec4,
        CPU_PARITY,
    );
}

#[test]
fn cpu_parity_x2_per_direction_scan() {
    cpu_parity_case(
        network_config(2),
        kernels("per-direction"),
        Scan::Vec4,
        CPU_PARITY,
    );
}

/// GPU out of memory: the engine halves the batch and retries until it fits (here batches of more
/// than 2 slices fail), and the results equal an unconstrained run's.
#[test]
fn out_of_memory_splits_the_batch() {
    let Some(ctx) = ctx() else { return };
    let ck = Checkpoint::random(&network_config(2), 11);
    let inputs = test_planes(500, &[(6, 5); 7]);
    let mut plain = GpuEngine::new(
        ctx.clone(),
        &ck,
        GpuOptions {
            max_batch: Some(8),
            ..Default::default()
        },
    )
    .expect("engine");
    let expected = plain
        .upscale(&inputs, &quiet, &AtomicBool::new(false))
        .expect("unconstrained run");
    let mut eng = GpuEngine::new(
        ctx,
        &ck,
        GpuOptions {
            max_batch: Some(8),
            simulate_oom_above: Some(2),
            ..Default::default()
        },
    )
    .expect("engine");
    let progress = std::sync::Mutex::new(Vec::new());
    let report = |d: usize, t: usize| progress.lock().unwrap().push((d, t));
    let out = eng
        .upscale(&inputs, &report, &AtomicBool::new(false))
        .expect("the engine should retry smaller batches");
    assert_eq!(out.len(), inputs.len());
    for (i, (o, e)) in out.iter().zip(&expected).enumerate() {
        check(
            &format!("slice {i} after OOM retries"),
            &o.data,
            &e.data,
            1e-6,
        );
    }
    assert!(
        eng.batch_for(6, 5, 7).unwrap() <= 2,
        "the smaller batch is kept"
    );
    assert_eq!(progress.lock().unwrap().last(), Some(&(7, 7)));

    // Even one slice failing is an error for the caller (the app then falls back to the CPU).
    let mut one = GpuEngine::new(
        eng.context().clone(),
        &ck,
        GpuOptions {
            simulate_oom_above: Some(0),
            ..Default::default()
        },
    )
    .expect("engine");
    let r = one.upscale(&inputs[..1], &quiet, &AtomicBool::new(false));
    assert!(matches!(r, Err(EngineError::OutOfMemory(_))), "{r:?}");
}

#[test]
fn cancellation_returns_cancelled() {
    let Some(ctx) = ctx() else { return };
    let ck = Checkpoint::random(&network_config(2), 1);
    let mut eng = GpuEngine::new(ctx, &ck, GpuOptions::default()).expect("engine");
    let r = eng.upscale(&test_planes(1, &[(5, 5)]), &quiet, &AtomicBool::new(true));
    assert!(matches!(r, Err(EngineError::Cancelled)), "{r:?}");
}

#[test]
fn bad_checkpoint_is_an_error() {
    let Some(ctx) = ctx() else { return };
    let mut ck = Checkpoint::random(&network_config(2), 1);
    ck.tensors.remove("groups.1.blocks.0.att.k_a");
    let e = GpuEngine::new(ctx.clone(), &ck, GpuOptions::default()).unwrap_err();
    assert!(e.to_string().contains("groups.1.blocks.0.att.k_a"), "{e}");

    let mut ck = Checkpoint::random(&network_config(2), 1);
    if let Some(t) = ck.tensors.get_mut("conv_last.weight") {
        t.shape = vec![2, 64, 3, 3];
    }
    let e = GpuEngine::new(ctx, &ck, GpuOptions::default()).unwrap_err();
    assert!(e.to_string().contains("conv_last.weight"), "{e}");
}

#[test]
fn bad_input_is_an_error() {
    let Some(ctx) = ctx() else { return };
    let ck = Checkpoint::random(&network_config(2), 1);
    let mut eng = GpuEngine::new(ctx, &ck, GpuOptions::default()).expect("engine");
    let mut planes = test_planes(1, &[(4, 4), (4, 4)]);
    planes[1].data[3] = f32::NAN;
    let r = eng.upscale(&planes, &quiet, &AtomicBool::new(false));
    assert!(
        matches!(r, Err(EngineError::BadInput { index: 1, .. })),
        "{r:?}"
    );
    let empty = [Plane::zeros(0, 3)];
    let r = eng.upscale(&empty, &quiet, &AtomicBool::new(false));
    assert!(
        matches!(r, Err(EngineError::BadInput { index: 0, .. })),
        "{r:?}"
    );
}
