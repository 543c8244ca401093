//! The whole network on the GPU: against the committed PyTorch golden vectors
//! (tests/data/golden), against the CPU reference forward pass, batching, cancellation, and
//! errors (bad checkpoint, bad input) surfacing as errors.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::common::*;
use deltawkv::engine::{EngineError, Upscaler};
use deltawkv::gpu::kernels::{KernelOptions, Kind, ScanArgs};
use deltawkv::gpu::{GpuEngine, GpuOptions};
use deltawkv::model::cpu::{self, ops};
use deltawkv::model::{Checkpoint, Degradation, ModelConfig};
use deltawkv::plane::Plane;
use safetensors::{Dtype, SafeTensors};

const PARITY: f64 = 1e-4;

fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tensor of a golden file as f32 (stored as F64 or F32), with its shape.
fn tensor(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
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

fn quiet(_: usize, _: usize) {}

/// All golden inputs of one checkpoint in ONE call (four shapes: the engine groups them).
fn golden_case(scale: usize, kernels: KernelOptions) {
    let Some(ctx) = ctx() else { return };
    let ck = Checkpoint::from_bytes(
        &golden(&format!("model_x{scale}.safetensors")),
        "golden model",
    )
    .expect("golden checkpoint");
    let bytes = golden(&format!("vectors_x{scale}.safetensors"));
    let st = SafeTensors::deserialize(&bytes).expect("golden vectors");
    let tags = ["16x16", "12x16", "9x7", "5x6"];
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for tag in tags {
        let (shape, data) = tensor(&st, &format!("input.{tag}"));
        inputs.push(Plane::from_vec(shape[2], shape[1], data).unwrap());
        expected.push(tensor(&st, &format!("output.{tag}")).1);
    }
    let opts = GpuOptions {
        kernels: Some(kernels),
        ..Default::default()
    };
    let mut eng = GpuEngine::new(ctx, &ck, opts).expect("engine");
    let out = eng
        .upscale(&inputs, &quiet, &AtomicBool::new(false))
        .expect("upscale");
    for ((tag, o), e) in tags.iter().zip(&out).zip(&expected) {
        assert_eq!(o.width * o.height, e.len());
        check(
            &format!("network x{scale} {tag} vs PyTorch golden ({kernels:?})"),
            &o.data,
            e,
            PARITY,
        );
    }
}

#[test]
fn golden_x2() {
    golden_case(2, KernelOptions::default());
}

#[test]
fn golden_x4() {
    golden_case(4, KernelOptions::default());
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
            })
            .unwrap();
        if chunked && hs.graph.can_scan_chunked() {
            assert_eq!(hs.graph.dispatch_kinds(), [Kind::ScanChunk]);
        }
        hs.run();
        check(
            &format!("scan {name} vs PyTorch golden (chunked: {chunked})"),
            &hs.read(y, 0, h * w * c),
            &g(name),
            PARITY,
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

/// Several slices of two shapes, batched two at a time, against `cpu::forward` slice by slice.
fn cpu_parity_case(scale: usize, kernels: KernelOptions) {
    let Some(ctx) = ctx() else { return };
    let ck = Checkpoint::random(&network_config(scale), 7 + scale as u64);
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
    for (i, (inp, o)) in inputs.iter().zip(&out).enumerate() {
        let reference = cpu::forward(&ck, inp).expect("cpu forward");
        assert_eq!((o.width, o.height), (reference.width, reference.height));
        check(
            &format!(
                "network x{scale} slice {i} ({}x{}) vs CPU forward ({kernels:?})",
                inp.height, inp.width
            ),
            &o.data,
            &reference.data,
            PARITY,
        );
    }
    let p = progress.lock().unwrap();
    assert_eq!(p.first(), Some(&(0, 4)));
    assert_eq!(p.last(), Some(&(4, 4)));
}

#[test]
fn cpu_parity_x2() {
    cpu_parity_case(2, KernelOptions::default());
}

#[test]
fn cpu_parity_x4() {
    cpu_parity_case(4, KernelOptions::default());
}

/// One scan dispatch per direction (the spec's description of the engine) gives the PyTorch
/// goldens too.
#[test]
fn golden_x2_per_direction_scan() {
    golden_case(2, KernelOptions::from_name("per-direction").unwrap());
}

/// The chunked scan (`scan_chunk.wgsl`, opt-in) gives the PyTorch goldens, fused and per
/// direction, and matches the CPU forward pass on batched slices.
#[test]
fn golden_x2_chunked_scan() {
    golden_case(2, KernelOptions::from_name("chunked").unwrap());
}

#[test]
fn golden_x4_chunked_scan() {
    golden_case(4, KernelOptions::from_name("chunked").unwrap());
}

#[test]
fn golden_x2_chunked_per_direction_scan() {
    golden_case(
        2,
        KernelOptions::from_name("chunked-per-direction").unwrap(),
    );
}

#[test]
fn cpu_parity_x2_chunked_scan() {
    cpu_parity_case(2, KernelOptions::from_name("chunked").unwrap());
}

/// The kernels that were the default before the coalesced LayerNorm and the pipelined subgroup
/// scan (`ln-tokens`, `sg-serial`, alone and combined with `+`) still give the PyTorch goldens
/// and match the CPU forward pass on batched slices.
#[test]
fn golden_x2_ln_tokens_sg_serial() {
    golden_case(2, KernelOptions::from_name("ln-tokens+sg-serial").unwrap());
}

#[test]
fn golden_x4_ln_tokens() {
    golden_case(4, KernelOptions::from_name("ln-tokens").unwrap());
}

#[test]
fn golden_x4_sg_serial() {
    golden_case(4, KernelOptions::from_name("sg-serial").unwrap());
}

#[test]
fn cpu_parity_x2_ln_tokens_sg_serial() {
    cpu_parity_case(2, KernelOptions::from_name("ln-tokens+sg-serial").unwrap());
}

/// The first engine's kernels (scalar-storage matmul) stay correct: benchmarks compare them.
#[test]
fn cpu_parity_x4_baseline_kernels() {
    cpu_parity_case(4, KernelOptions::BASELINE);
}

#[test]
fn cpu_parity_x2_per_direction_scan() {
    cpu_parity_case(2, KernelOptions::from_name("per-direction").unwrap());
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
