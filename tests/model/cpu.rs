//! The CPU reference forward pass: composition, determinism, the Upscaler contract.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use deltawkv::engine::{EngineError, Upscaler};
use deltawkv::model::cpu::{self, CpuUpscaler, ForwardError, Trace, ops};
use deltawkv::model::{Checkpoint, Degradation, ModelConfig};
use deltawkv::plane::Plane;

use crate::common::small_config;

fn small(scale: usize) -> ModelConfig {
    ModelConfig {
        groups: 2,
        lora_rank_v: 3,
        lora_rank_g: 5,
        ..small_config(scale, Degradation::Kspace)
    }
}

fn test_plane(w: usize, h: usize) -> Plane {
    let data = (0..w * h)
        .map(|i| {
            let (r, c) = ((i / w) as f32, (i % w) as f32);
            0.5 + 0.4 * (0.3 * r).sin() * (0.2 * c + 1.0).cos()
        })
        .collect();
    Plane::from_vec(w, h, data).expect("sizes")
}

fn zero(ck: &mut Checkpoint, name: &str) {
    let t = ck.tensors.get_mut(name).expect("tensor present");
    t.data.iter_mut().for_each(|v| *v = 0.0);
}

#[test]
fn output_has_scale_times_the_size() {
    for scale in [2, 4] {
        let ck = Checkpoint::random(&small(scale), 1);
        let out = cpu::forward(&ck, &test_plane(7, 5)).expect("forward");
        assert_eq!((out.width, out.height), (7 * scale, 5 * scale));
        assert!(out.data.iter().all(|v| v.is_finite()));
        // random weights give a non-constant output
        let (lo, hi) = out
            .data
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(hi - lo > 1e-3, "output is flat: {lo}..{hi}");
    }
}

#[test]
fn result_does_not_depend_on_thread_count() {
    let ck = Checkpoint::random(&small(2), 2);
    let input = test_plane(9, 6);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| cpu::forward(&ck, &input).expect("forward"))
    };
    let one = run(1);
    let three = run(3);
    assert_eq!(one.data, three.data);
    assert_eq!(one, cpu::forward(&ck, &input).expect("forward"));
}

#[test]
fn identity_initialised_blocks_leave_tokens_unchanged() {
    let cfg = small(2);
    let mut ck = Checkpoint::random(&cfg, 3);
    for layer in 0..cfg.n_blocks() {
        let p = format!("groups.{}.blocks.{}", layer / 2, layer % 2);
        zero(&mut ck, &format!("{p}.att.output.weight"));
        zero(&mut ck, &format!("{p}.ffn.value.weight"));
    }
    let (h, w, c) = (4, 5, cfg.dim);
    let tokens: Vec<f32> = (0..h * w * c).map(|i| (i as f32 * 0.37).sin()).collect();
    let (out0, v_first) = cpu::block(&ck, 0, &tokens, h, w, None).expect("block 0");
    assert_eq!(out0, tokens);
    let (out1, _) = cpu::block(&ck, 3, &tokens, h, w, Some(&v_first)).expect("block 3");
    assert_eq!(out1, tokens);

    // With identity blocks and zero group convolutions, each group passes its input through.
    for g in 0..cfg.groups {
        zero(&mut ck, &format!("groups.{g}.conv.weight"));
        zero(&mut ck, &format!("groups.{g}.conv.bias"));
    }
    let mut trace = Trace::new();
    cpu::forward_with(&ck, &test_plane(5, 4), None, Some(&mut trace)).expect("forward");
    assert_eq!(trace["group.1"], trace["patch_norm"]);
    assert_eq!(trace["block.3"], trace["patch_norm"]);
}

#[test]
fn trace_holds_the_reference_names_and_the_directions_sum_to_y() {
    let cfg = small(4);
    let ck = Checkpoint::random(&cfg, 4);
    let (w, h) = (6, 5);
    let mut trace = Trace::new();
    let out = cpu::forward_with(&ck, &test_plane(w, h), None, Some(&mut trace)).expect("forward");
    let l = w * h;
    let c = cfg.dim;
    for (name, len) in [
        ("conv_first", c * l),
        ("patch_norm", l * c),
        ("block.0.ln1", l * c),
        ("block.0.att.decay", l * c),
        ("block.3.att.y_ln", l * c),
        ("block.3.ffn.out", l * c),
        ("block.3", l * c),
        ("group.1", l * c),
        ("norm", l * c),
        ("body", c * l),
        ("before_upsample", 64 * l),
        ("upsample.0", 64 * 4 * l),
        ("upsample.1", 64 * 16 * l),
    ] {
        assert_eq!(trace.get(name).map(Vec::len), Some(len), "{name}");
    }
    for layer in 0..cfg.n_blocks() {
        let y = &trace[&format!("block.{layer}.att.y")];
        let mut sum = vec![0.0f32; y.len()];
        for d in 0..4 {
            let yd = &trace[&format!("block.{layer}.att.y{d}")];
            sum.iter_mut().zip(yd).for_each(|(s, v)| *s += v);
        }
        assert_eq!(&sum, y);
    }
    // The value residual used v_first of block 0: block 0's v is its raw value projection.
    let lam = &trace["block.2.att.decay"];
    assert!(lam.iter().all(|&x| x > 0.545 && x < 1.0));
    // Traced and untraced runs agree exactly.
    assert_eq!(out, cpu::forward(&ck, &test_plane(w, h)).expect("forward"));
}

#[test]
fn single_direction_scan_matches_the_all_direction_sum() {
    let (h, w, c, n) = (3, 4, 8, 4);
    let l = h * w;
    let f = |s: f32| -> Vec<f32> { (0..l * c).map(|i| ((i as f32) * s).sin()).collect() };
    let r = f(0.3);
    let lambda: Vec<f32> = f(0.5).iter().map(|v| 0.8 + 0.1 * v).collect();
    let kk = ops::l2_normalize_heads(&f(0.7), c, n, ops::L2_EPS);
    let a: Vec<f32> = f(1.1).iter().map(|v| 0.5 + 0.5 * v).collect();
    let kt = f(1.3);
    let v = f(1.7);
    let inputs = ops::ScanInputs {
        r: &r,
        lambda: &lambda,
        kk: &kk,
        a: &a,
        kt: &kt,
        v: &v,
    };
    let all = ops::delta_scan_all(h, w, c, n, &inputs);
    let mut sum = vec![0.0f32; l * c];
    for d in ops::ScanDirection::ALL {
        let yd = ops::delta_scan(d, h, w, c, n, &inputs);
        for hd in 0..c / n {
            let one = ops::delta_scan_head(d, h, w, c, n, hd, &inputs);
            for p in 0..l {
                assert_eq!(
                    &yd[p * c + hd * n..p * c + (hd + 1) * n],
                    &one[p * n..(p + 1) * n]
                );
            }
        }
        sum.iter_mut().zip(&yd).for_each(|(s, x)| *s += x);
    }
    assert_eq!(all, sum);
    // Backward directions see the image mirrored: scanning a 180-degree rotated image forward
    // gives the rotated backward scan.
    let rot = |x: &[f32]| -> Vec<f32> {
        let mut o = vec![0.0; x.len()];
        for p in 0..l {
            o[(l - 1 - p) * c..(l - p) * c].copy_from_slice(&x[p * c..(p + 1) * c]);
        }
        o
    };
    let (rr, rl, rkk, ra, rkt, rv) = (rot(&r), rot(&lambda), rot(&kk), rot(&a), rot(&kt), rot(&v));
    let rotated = ops::ScanInputs {
        r: &rr,
        lambda: &rl,
        kk: &rkk,
        a: &ra,
        kt: &rkt,
        v: &rv,
    };
    for (fwd, bwd) in [
        (
            ops::ScanDirection::RowsForward,
            ops::ScanDirection::RowsBackward,
        ),
        (
            ops::ScanDirection::ColsForward,
            ops::ScanDirection::ColsBackward,
        ),
    ] {
        let a1 = ops::delta_scan(bwd, h, w, c, n, &inputs);
        let a2 = rot(&ops::delta_scan(fwd, h, w, c, n, &rotated));
        assert_eq!(a1, a2, "{bwd:?}");
    }
}

#[test]
fn spatial_mix_needs_v_first_after_block_0() {
    let cfg = small(2);
    let ck = Checkpoint::random(&cfg, 5);
    let x = vec![0.1f32; 3 * 3 * cfg.dim];
    assert!(cpu::spatial_mix(&ck, 0, &x, 3, 3, None).is_ok());
    assert!(matches!(
        cpu::spatial_mix(&ck, 1, &x, 3, 3, None),
        Err(ForwardError::BadInput { .. })
    ));
    let out0 = cpu::spatial_mix(&ck, 0, &x, 3, 3, None).expect("block 0");
    let out1 = cpu::spatial_mix(&ck, 1, &x, 3, 3, Some(&out0.v)).expect("block 1");
    assert_eq!(out1.out.len(), x.len());
    // wrong token count
    assert!(matches!(
        cpu::channel_mix(&ck, 1, &x, 3, 4),
        Err(ForwardError::BadInput { .. })
    ));
}

#[test]
fn bad_inputs_are_refused() {
    let ck = Checkpoint::random(&small(2), 6);
    let empty = Plane::zeros(0, 3);
    assert!(matches!(
        cpu::forward(&ck, &empty),
        Err(ForwardError::BadInput { .. })
    ));
    let mut nan = test_plane(3, 3);
    nan.data[4] = f32::NAN;
    assert!(matches!(
        cpu::forward(&ck, &nan),
        Err(ForwardError::BadInput { .. })
    ));
    let huge = Plane {
        width: 100_000,
        height: 100_000,
        data: Vec::new(),
    };
    assert!(matches!(
        cpu::forward(&ck, &huge),
        Err(ForwardError::BadInput { .. })
    ));
    let mut broken = ck.clone();
    broken.tensors.remove("norm.bias");
    assert!(matches!(
        cpu::forward(&broken, &test_plane(3, 3)),
        Err(ForwardError::Checkpoint(_))
    ));
    assert!(CpuUpscaler::new(broken).is_err());
}

#[test]
fn upscaler_reports_progress_and_honours_cancel() {
    let ck = Checkpoint::random(&small(2), 7);
    let mut up = CpuUpscaler::new(ck.clone()).expect("valid");
    assert_eq!(up.scale(), 2);
    assert!(up.describe().contains("CPU"));
    let inputs = vec![test_plane(4, 3), test_plane(5, 5), test_plane(3, 6)];
    let seen = Mutex::new(Vec::new());
    let progress = |done: usize, total: usize| seen.lock().expect("lock").push((done, total));
    let cancel = AtomicBool::new(false);
    let out = up.upscale(&inputs, &progress, &cancel).expect("upscale");
    assert_eq!(out.len(), 3);
    for (o, i) in out.iter().zip(&inputs) {
        assert_eq!(o, &cpu::forward(&ck, i).expect("forward"));
    }
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![(0, 3), (1, 3), (2, 3), (3, 3)]
    );

    // Cancel from the progress callback after the first slice.
    let cancel = AtomicBool::new(false);
    let stop = |done: usize, _total: usize| {
        if done == 1 {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    assert!(matches!(
        up.upscale(&inputs, &stop, &cancel),
        Err(EngineError::Cancelled)
    ));

    // A bad slice is reported with its index.
    let bad = vec![test_plane(3, 3), Plane::zeros(0, 0)];
    match up.upscale(&bad, &|_, _| {}, &AtomicBool::new(false)) {
        Err(EngineError::BadInput { index, .. }) => assert_eq!(index, 1),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

/// CPU time of this process so far in seconds (utime + stime of `/proc/self/stat`, at the usual
/// 100 ticks per second), or `None` where that file is not available.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Timing of the shipped configuration (run with `--ignored --nocapture`). Prints wall time and
/// process CPU time, so that a measurement on a busy machine can still be read.
#[test]
#[ignore = "timing: run explicitly"]
fn timing_dwkv3m_x2() {
    let ck = Checkpoint::random(&ModelConfig::dwkv3m(2), 42);
    for side in [64usize, 128] {
        let input = test_plane(side, side);
        let cpu0 = process_cpu_seconds();
        let t0 = Instant::now();
        let out = cpu::forward(&ck, &input).expect("forward");
        let dt = t0.elapsed();
        let cpu_s = cpu0.zip(process_cpu_seconds()).map(|(a, b)| b - a);
        assert_eq!((out.width, out.height), (2 * side, 2 * side));
        assert!(out.data.iter().all(|v| v.is_finite()));
        println!(
            "DWKV-3M x2, {side}x{side} LR slice: {:.2} s wall, {} CPU, {} rayon threads",
            dt.as_secs_f64(),
            cpu_s.map_or("unknown".to_string(), |c| format!("{c:.2} s")),
            rayon::current_num_threads()
        );
    }
}

/// `Checkpoint::random` is meant for benchmarks of the shipped size: its activations must stay of
/// order 1 through all 24 blocks, and every matrix must be non-trivial.
#[test]
fn random_dwkv3m_keeps_activations_of_order_one() {
    let cfg = ModelConfig::dwkv3m(2);
    let ck = Checkpoint::random(&cfg, 9);
    for (name, t) in &ck.tensors {
        if t.shape.len() >= 2 {
            assert!(t.data.iter().all(|&v| v != 0.0), "{name} has zeros");
        }
    }
    let mut trace = Trace::new();
    let out = cpu::forward_with(&ck, &test_plane(12, 10), None, Some(&mut trace)).expect("forward");
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    for layer in 0..cfg.n_blocks() {
        for key in ["", ".att.out", ".ffn.out", ".att.y_ln"] {
            let name = format!("block.{layer}{key}");
            let r = rms(&trace[&name]);
            assert!((0.01..100.0).contains(&r), "{name}: rms {r}");
        }
        let lam = &trace[&format!("block.{layer}.att.decay")];
        assert!(lam.iter().all(|&x| x > 0.545 && x < 1.0));
    }
    let r = rms(&out.data);
    assert!((0.01..100.0).contains(&r), "output rms {r}");
}
