//! Every WGSL kernel against the CPU reference (`model::cpu::ops`) on seeded random inputs, with
//! sizes that are not multiples of the workgroup tiles (7x5 images, odd channel counts).
//! Tolerances (relative L2 error): 1e-5 for elementwise kernels, 1e-4 for the rest.

use crate::common::*;
use deltawkv::gpu::kernels::{
    Act, AttPrepArgs, CombineArgs, ConvArgs, Kind, LayerNormArgs, MatmulArgs, ShiftMixArgs,
};
use deltawkv::gpu::shader::KernelOptions;
use deltawkv::gpu::weights::{pack_conv, transpose};
use deltawkv::model::cpu::ops;

/// Tolerance of the elementwise kernels (relative L2 error).
pub(crate) const ELEMENTWISE: f64 = 1e-5;
/// Tolerance of the kernels that reduce (matmuls, norms, scans).
pub(crate) const REDUCTION: f64 = 1e-4;

#[allow(clippy::too_many_arguments)]
fn conv_case(
    name: &str,
    seed: u64,
    (b, h, w): (usize, usize, usize),
    cin: usize,
    cout: usize,
    accumulate: bool,
    leaky: Option<f32>,
    shuffle: bool,
) {
    let Some(ctx) = ctx() else { return };
    let x = rand_vec(seed, b * h * w * cin, -1.0, 1.0);
    let wt = rand_vec(seed + 1, cout * cin * 9, -0.5, 0.5);
    let bias = rand_vec(seed + 2, cout, -0.2, 0.2);
    let out_len = b * h * w * cout;
    let prev = rand_vec(seed + 3, out_len, -1.0, 1.0);

    let mut hs = Harness::new(ctx);
    let src = hs.input(&x);
    let mut packed = pack_conv(&wt, cin, cout);
    let b_off = packed.len() as u32;
    packed.extend_from_slice(&bias);
    let wts = hs.input(&packed);
    let dst = if accumulate {
        hs.input(&prev)
    } else {
        hs.zeros(out_len)
    };
    hs.graph
        .conv3x3(&ConvArgs {
            src: src.at(0),
            weights: wts,
            w_off: 0,
            b_off,
            dst: dst.at(0),
            batch: b as u32,
            height: h as u32,
            width: w as u32,
            cin: cin as u32,
            cout: cout as u32,
            accumulate,
            leaky,
            shuffle,
        })
        .unwrap();
    hs.run();
    let gpu = hs.read(dst, 0, out_len);

    let prev_chw = nhwc_to_chw(&prev, b, h, w, cout);
    let mut cpu = Vec::new();
    for (i, img) in nhwc_to_chw(&x, b, h, w, cin).iter().enumerate() {
        let mut y = ops::conv3x3(img, cin, h, w, &wt, &bias, cout);
        if accumulate {
            y = ops::add(&y, &prev_chw[i]);
        }
        if let Some(s) = leaky {
            y = ops::leaky_relu(&y, s);
        }
        if shuffle {
            let y = ops::pixel_shuffle(&y, cout, h, w, 2);
            cpu.extend(ops::image_to_tokens(&y, cout / 4, 2 * h, 2 * w));
        } else {
            cpu.extend(ops::image_to_tokens(&y, cout, h, w));
        }
    }
    check(name, &gpu, &cpu, REDUCTION);
}

#[test]
fn conv3x3_plain() {
    conv_case(
        "conv3x3 5->11 on 2x7x5",
        10,
        (2, 7, 5),
        5,
        11,
        false,
        None,
        false,
    );
}

#[test]
fn conv3x3_wide_channels() {
    conv_case(
        "conv3x3 19->37 on 1x9x10",
        11,
        (1, 9, 10),
        19,
        37,
        false,
        None,
        false,
    );
}

#[test]
fn conv3x3_single_input_channel() {
    conv_case(
        "conv3x3 1->24 (conv_first) on 2x7x5",
        12,
        (2, 7, 5),
        1,
        24,
        false,
        None,
        false,
    );
}

#[test]
fn conv3x3_single_output_channel() {
    conv_case(
        "conv3x3 6->1 (conv_last) on 2x11x9",
        13,
        (2, 11, 9),
        6,
        1,
        false,
        None,
        false,
    );
}

#[test]
fn conv3x3_residual_add() {
    conv_case(
        "conv3x3 + residual 9->9 on 2x7x5",
        14,
        (2, 7, 5),
        9,
        9,
        true,
        None,
        false,
    );
}

#[test]
fn conv3x3_leaky_relu() {
    conv_case(
        "conv3x3 + leaky relu 7->10 on 1x7x5",
        15,
        (1, 7, 5),
        7,
        10,
        false,
        Some(0.01),
        false,
    );
}

#[test]
fn conv3x3_pixel_shuffle() {
    conv_case(
        "conv3x3 + pixel shuffle 6->20 on 2x5x7",
        16,
        (2, 5, 7),
        6,
        20,
        false,
        None,
        true,
    );
}

/// `x W^T` for a PyTorch `[n, k]` weight, through the transposed layout, batched over z = 3.
#[test]
fn matmul_linear_batched() {
    let Some(ctx) = ctx() else { return };
    let (m, k, n) = (37usize, 19usize, 45usize);
    let xs: Vec<Vec<f32>> = (0..3).map(|z| rand_vec(20 + z, m * k, -1.0, 1.0)).collect();
    let ws: Vec<Vec<f32>> = (0..3).map(|z| rand_vec(30 + z, n * k, -0.5, 0.5)).collect();
    let mut hs = Harness::new(ctx);
    let x = hs.input(&xs.concat());
    let wt: Vec<f32> = ws.iter().flat_map(|w| transpose(w, n, k)).collect();
    let wb = hs.input(&wt);
    let y = hs.zeros(3 * m * n);
    hs.graph
        .matmul(&MatmulArgs {
            x: x.at(0),
            x_zs: (m * k) as u32,
            w: wb.at(0),
            w_zs: (n * k) as u32,
            y: y.at(0),
            y_zs: (m * n) as u32,
            m: m as u32,
            n: n as u32,
            k: k as u32,
            batch_z: 3,
            act: Act::None,
            accumulate: false,
        })
        .unwrap();
    hs.run();
    let gpu = hs.read(y, 0, 3 * m * n);
    let cpu: Vec<f32> = (0..3)
        .flat_map(|z| ops::linear(&xs[z], k, &ws[z], n))
        .collect();
    check("matmul linear 37x19 -> 45, z = 3", &gpu, &cpu, REDUCTION);
}

fn matmul_act_case(name: &str, seed: u64, act: Act, accumulate: bool) {
    let Some(ctx) = ctx() else { return };
    let (gpu, cpu, _) = matmul_on(
        ctx,
        KernelOptions::default(),
        (70, 24, 13),
        seed,
        (act, accumulate),
        0.6,
    );
    check(name, &gpu, &cpu, REDUCTION);
}

/// `act(X W) (+ Y)` for a seeded `m x k` X in [-1, 1], `k x n` W in [-w_max, w_max] and, with
/// `accumulate`, a previous Y in [-1, 1], recorded with `kernels`: the GPU's result, the CPU
/// reference's and the kernels the graph recorded.
pub(crate) fn matmul_on(
    ctx: std::sync::Arc<deltawkv::gpu::GpuContext>,
    kernels: KernelOptions,
    (m, k, n): (usize, usize, usize),
    seed: u64,
    (act, accumulate): (Act, bool),
    w_max: f32,
) -> (Vec<f32>, Vec<f32>, Vec<Kind>) {
    let xv = rand_vec(seed, m * k, -1.0, 1.0);
    let wv = rand_vec(seed + 1, k * n, -w_max, w_max);
    let prev = rand_vec(seed + 2, m * n, -1.0, 1.0);
    let mut hs = Harness::new(ctx);
    hs.graph.kernels = kernels;
    let x = hs.input(&xv);
    let w = hs.input(&wv);
    let y = if accumulate {
        hs.input(&prev)
    } else {
        hs.zeros(m * n)
    };
    hs.graph
        .matmul(&MatmulArgs {
            x: x.at(0),
            x_zs: 0,
            w: w.at(0),
            w_zs: 0,
            y: y.at(0),
            y_zs: 0,
            m: m as u32,
            n: n as u32,
            k: k as u32,
            batch_z: 1,
            act,
            accumulate,
        })
        .unwrap();
    let recorded = hs.graph.dispatch_kinds();
    hs.run();
    let gpu = hs.read(y, 0, m * n);
    let mut cpu = ops::matmul(&xv, k, &wv, n);
    match act {
        Act::None => {}
        Act::Tanh => cpu.iter_mut().for_each(|v| *v = v.tanh()),
        Act::Sigmoid => cpu.iter_mut().for_each(|v| *v = ops::sigmoid(*v)),
        Act::ReluSquared => ops::relu_squared_in_place(&mut cpu),
    }
    if accumulate {
        cpu = ops::add(&cpu, &prev);
    }
    (gpu, cpu, recorded)
}

#[test]
fn matmul_tanh() {
    matmul_act_case("matmul + tanh (LoRA w1)", 40, Act::Tanh, false);
}

#[test]
fn matmul_sigmoid() {
    matmul_act_case("matmul + sigmoid (LoRA g1)", 41, Act::Sigmoid, false);
}

#[test]
fn matmul_relu_squared() {
    matmul_act_case(
        "matmul + relu^2 (channel mix key)",
        42,
        Act::ReluSquared,
        false,
    );
}

#[test]
fn matmul_residual_add() {
    matmul_act_case("matmul + residual add", 43, Act::None, true);
}

/// The vec4 matmul (`matmul_v4.wgsl`): shapes of the network (K, N multiples of 4; M not a
/// multiple of the 128-row tile), z-batched with offsets, each activation and the residual add,
/// and each column tile width it picks (96, 64, 32).
fn matmul_v4_case(
    name: &str,
    seed: u64,
    (m, k, n): (usize, usize, usize),
    act: Act,
    accumulate: bool,
) {
    let Some(ctx) = ctx() else { return };
    let z = 2usize;
    let pad = 4usize; // a non-zero, 4-aligned offset into every buffer
    let xv = rand_vec(seed, z * m * k, -1.0, 1.0);
    let wv = rand_vec(seed + 1, z * k * n, -0.4, 0.4);
    let prev = rand_vec(seed + 2, z * m * n, -1.0, 1.0);
    let mut hs = Harness::new(ctx);
    assert!(hs.graph.kernels.matmul_v4, "v4 matmul is the default");
    let x = hs.input(&[vec![9.0; pad], xv.clone()].concat());
    let w = hs.input(&[vec![9.0; pad], wv.clone()].concat());
    let y = if accumulate {
        hs.input(&[vec![9.0; pad], prev.clone()].concat())
    } else {
        hs.zeros(pad + z * m * n)
    };
    hs.graph
        .matmul(&MatmulArgs {
            x: x.at(pad as u32),
            x_zs: (m * k) as u32,
            w: w.at(pad as u32),
            w_zs: (k * n) as u32,
            y: y.at(pad as u32),
            y_zs: (m * n) as u32,
            m: m as u32,
            n: n as u32,
            k: k as u32,
            batch_z: z as u32,
            act,
            accumulate,
        })
        .unwrap();
    hs.run();
    let gpu = hs.read(y, pad, z * m * n);
    let mut cpu: Vec<f32> = (0..z)
        .flat_map(|i| ops::matmul(&xv[i * m * k..][..m * k], k, &wv[i * k * n..][..k * n], n))
        .collect();
    match act {
        Act::None => {}
        Act::Tanh => cpu.iter_mut().for_each(|v| *v = v.tanh()),
        Act::Sigmoid => cpu.iter_mut().for_each(|v| *v = ops::sigmoid(*v)),
        Act::ReluSquared => ops::relu_squared_in_place(&mut cpu),
    }
    if accumulate {
        cpu = ops::add(&cpu, &prev);
    }
    check(name, &gpu, &cpu, REDUCTION);
    let head = hs.read(y, 0, pad);
    if !accumulate {
        assert!(
            head.iter().all(|&v| v == 0.0),
            "{name}: wrote before its offset"
        );
    }
}

#[test]
fn matmul_v4_projection() {
    matmul_v4_case(
        "matmul v4 300x96 -> 96",
        50,
        (300, 96, 96),
        Act::None,
        false,
    );
}

#[test]
fn matmul_v4_lora_down_tanh() {
    matmul_v4_case(
        "matmul v4 LoRA down 131x96 -> 32 + tanh",
        51,
        (131, 96, 32),
        Act::Tanh,
        false,
    );
}

#[test]
fn matmul_v4_lora_up_sigmoid() {
    matmul_v4_case(
        "matmul v4 LoRA up 257x32 -> 96 + sigmoid",
        52,
        (257, 32, 96),
        Act::Sigmoid,
        false,
    );
}

#[test]
fn matmul_v4_ffn_key_relu_squared() {
    matmul_v4_case(
        "matmul v4 ffn 140x96 -> 192 + relu^2",
        53,
        (140, 96, 192),
        Act::ReluSquared,
        false,
    );
}

#[test]
fn matmul_v4_ffn_value_residual() {
    matmul_v4_case(
        "matmul v4 ffn 129x192 -> 96 + residual",
        54,
        (129, 192, 96),
        Act::None,
        true,
    );
}

#[test]
fn matmul_v4_tile_64_wide() {
    matmul_v4_case(
        "matmul v4 70x20 -> 128 (64-wide tiles)",
        55,
        (70, 20, 128),
        Act::None,
        false,
    );
}

/// LayerNorm of `m` tokens of `c` channels with values in `[lo, hi)`, against the CPU reference;
/// `rows` selects `layer_norm_rows.wgsl` (`KernelOptions::layer_norm_rows`), and the recorded
/// kernel is asserted (`expect`).
#[allow(clippy::too_many_arguments)]
fn layer_norm_case(
    seed: u64,
    m: usize,
    c: usize,
    (lo, hi): (f32, f32),
    rows: bool,
    expect: Kind,
    tol: f64,
) {
    let Some(ctx) = ctx() else { return };
    let xv: Vec<f32> = rand_vec(seed, m * c, lo, hi);
    let wv = rand_vec(seed + 1, c, 0.5, 1.5);
    let bv = rand_vec(seed + 2, c, -0.3, 0.3);
    let mut hs = Harness::new(ctx);
    hs.graph.kernels.layer_norm_rows = rows;
    let x = hs.input(&xv);
    let mut wb = wv.clone();
    wb.extend_from_slice(&bv);
    let wts = hs.input(&wb);
    let y = hs.zeros(m * c);
    hs.graph
        .layer_norm(&LayerNormArgs {
            x: x.at(0),
            y: y.at(0),
            weights: wts,
            w_off: 0,
            b_off: c as u32,
            m: m as u32,
            c: c as u32,
            eps: ops::LN_EPS,
        })
        .unwrap();
    assert_eq!(hs.graph.dispatch_kinds(), [expect]);
    hs.run();
    let gpu = hs.read(y, 0, m * c);
    let cpu = ops::layer_norm(&xv, c, &wv, &bv, ops::LN_EPS);
    check(
        &format!("{expect:?} {m} x {c}, values in [{lo}, {hi})"),
        &gpu,
        &cpu,
        tol,
    );
}

#[test]
fn layer_norm() {
    layer_norm_case(50, 37, 24, (-2.0, 3.0), false, Kind::LayerNorm, REDUCTION);
}

/// The coalesced kernel: channel counts that fill rows of 32 lanes three times (96), partly (40),
/// or narrower rows (13: 16 lanes, 1: one lane); token counts that are not multiples of the rows
/// per workgroup (35 = 7 x 5, 1); values around 0 and around 100 (the centred variance).
#[test]
fn layer_norm_rows() {
    for (i, &c) in [96usize, 40, 13, 1].iter().enumerate() {
        for m in [35usize, 1] {
            for range in [(-2.0, 3.0), (99.0, 101.0)] {
                let seed = 500 + 10 * i as u64 + m as u64;
                layer_norm_case(seed, m, c, range, true, Kind::LayerNormRows, ELEMENTWISE);
            }
        }
    }
    // The largest channel count it handles (8 values per lane), then the fallback beyond it.
    layer_norm_case(
        560,
        35,
        256,
        (99.0, 101.0),
        true,
        Kind::LayerNormRows,
        ELEMENTWISE,
    );
    layer_norm_case(570, 35, 257, (-2.0, 3.0), true, Kind::LayerNorm, REDUCTION);
}

fn shift_mix_case(name: &str, nmix: usize) {
    let Some(ctx) = ctx() else { return };
    let (b, h, w, c, n) = (2usize, 7usize, 5usize, 24usize, 8usize);
    let total = b * h * w * c;
    let xv = rand_vec(60, total, -1.0, 1.0);
    let mus: Vec<Vec<f32>> = (0..nmix)
        .map(|z| rand_vec(61 + z as u64, c, 0.0, 1.0))
        .collect();
    let mut hs = Harness::new(ctx);
    let x = hs.input(&xv);
    let wts = hs.input(&mus.concat());
    let y = hs.zeros(nmix * total);
    hs.graph
        .shift_mix(&ShiftMixArgs {
            x: x.at(0),
            y: y.at(0),
            y_zs: total as u32,
            weights: wts,
            mu_off: 0,
            nmix: nmix as u32,
            batch: b as u32,
            height: h as u32,
            width: w as u32,
            c: c as u32,
            head_size: n as u32,
        })
        .unwrap();
    hs.run();
    let gpu = hs.read(y, 0, nmix * total);
    let mut cpu = Vec::new();
    for mu in &mus {
        for i in 0..b {
            let xi = &xv[i * h * w * c..(i + 1) * h * w * c];
            let d = ops::token_shift_delta(xi, h, w, c, n);
            cpu.extend(ops::lerp_mix(xi, &d, mu, c));
        }
    }
    check(name, &gpu, &cpu, ELEMENTWISE);
}

#[test]
fn shift_mix_six() {
    shift_mix_case("token shift + 6 interpolations, 2x7x5x24", 6);
}

#[test]
fn shift_mix_one() {
    shift_mix_case("token shift + 1 interpolation (channel mix), 2x7x5x24", 1);
}

/// The LoRA matmuls and the fused att_prep kernel against the reference decay, learning rate,
/// value residual, gate and keys.
fn att_prep_case(first: bool) {
    let Some(ctx) = ctx() else { return };
    let (m, c, n, r) = (70usize, 64usize, 32usize, 8usize);
    let mc = m * c;
    let xin: Vec<Vec<f32>> = (0..4).map(|z| rand_vec(70 + z, mc, -1.0, 1.0)).collect(); // w a v g
    let k = rand_vec(75, mc, -1.0, 1.0);
    let v = rand_vec(76, mc, -1.0, 1.0);
    let vfirst = rand_vec(77, mc, -1.0, 1.0);
    let w0 = rand_vec(78, c, -3.0, 1.0);
    let a0 = rand_vec(79, c, -1.0, 1.0);
    let v0 = rand_vec(80, c, -1.0, 1.0);
    let k_k = rand_vec(81, c, 0.5, 1.0);
    let k_a = rand_vec(82, c, 0.5, 1.0);
    let downs: Vec<Vec<f32>> = (0..4).map(|z| rand_vec(83 + z, c * r, -0.3, 0.3)).collect();
    let ups: Vec<Vec<f32>> = (0..4).map(|z| rand_vec(87 + z, r * c, -0.3, 0.3)).collect();

    let mut hs = Harness::new(ctx);
    let xb = hs.input(&xin.concat());
    let mut wv = Vec::new();
    let mut offs = Vec::new();
    for t in [&w0, &a0, &v0, &k_k, &k_a] {
        offs.push(wv.len() as u32);
        wv.extend_from_slice(t);
    }
    let mut doffs = Vec::new();
    for z in 0..4 {
        doffs.push((wv.len() as u32, 0u32));
        wv.extend_from_slice(&downs[z]);
        doffs[z].1 = wv.len() as u32;
        wv.extend_from_slice(&ups[z]);
    }
    let wts = hs.input(&wv);
    let mut proj = k.clone();
    proj.extend_from_slice(&v);
    let projb = hs.input(&proj);
    let lora_d = hs.zeros(4 * m * r);
    let lora_u = hs.zeros(4 * mc);
    let outs = hs.zeros(5 * mc);
    let vf = if first {
        hs.zeros(mc)
    } else {
        hs.input(&vfirst)
    };
    let acts = [Act::Tanh, Act::None, Act::None, Act::Sigmoid];
    for z in 0..4 {
        hs.graph
            .matmul(&MatmulArgs {
                x: xb.at((z * mc) as u32),
                x_zs: 0,
                w: wts.at(doffs[z].0),
                w_zs: 0,
                y: lora_d.at((z * m * r) as u32),
                y_zs: 0,
                m: m as u32,
                n: r as u32,
                k: c as u32,
                batch_z: 1,
                act: acts[z],
                accumulate: false,
            })
            .unwrap();
        hs.graph
            .matmul(&MatmulArgs {
                x: lora_d.at((z * m * r) as u32),
                x_zs: 0,
                w: wts.at(doffs[z].1),
                w_zs: 0,
                y: lora_u.at((z * mc) as u32),
                y_zs: 0,
                m: m as u32,
                n: c as u32,
                k: r as u32,
                batch_z: 1,
                act: Act::None,
                accumulate: false,
            })
            .unwrap();
    }
    let mcu = mc as u32;
    hs.graph
        .att_prep(&AttPrepArgs {
            proj: projb,
            k_off: 0,
            v_off: mcu,
            lora: lora_u,
            wu_off: 0,
            au_off: mcu,
            vu_off: 2 * mcu,
            weights: wts,
            w0_off: offs[0],
            a0_off: offs[1],
            v0_off: offs[2],
            kk_off: offs[3],
            ka_off: offs[4],
            outs,
            lam_off: 0,
            kneg_off: mcu,
            kb_off: 2 * mcu,
            kt_off: 3 * mcu,
            vo_off: 4 * mcu,
            vfirst: vf.at(0),
            first,
            m: m as u32,
            c: c as u32,
            head_size: n as u32,
        })
        .unwrap();
    hs.run();
    let out = hs.read(outs, 0, 5 * mc);
    let gate_gpu = hs.read(lora_u, 3 * mc, mc);

    let lam = ops::decay(&xin[0], c, &w0, &downs[0], r, &ups[0]);
    let a = ops::icl_rate(&xin[1], c, &a0, &downs[1], r, &ups[1]);
    let kk = ops::removal_key(&k, c, n, &k_k);
    let kt = ops::replacement_key(&k, &a, c, &k_a);
    let gate = ops::gate(&xin[3], c, &downs[3], r, &ups[3]);
    let tag = if first { " (block 0)" } else { "" };
    check(
        &format!("att_prep lambda{tag}"),
        &out[..mc],
        &lam,
        ELEMENTWISE,
    );
    let kneg: Vec<f32> = kk.iter().map(|x| -x).collect();
    check(
        &format!("att_prep -kk{tag}"),
        &out[mc..2 * mc],
        &kneg,
        ELEMENTWISE,
    );
    check(
        &format!("att_prep kk*a{tag}"),
        &out[2 * mc..3 * mc],
        &ops::mul(&kk, &a),
        ELEMENTWISE,
    );
    check(
        &format!("att_prep kt{tag}"),
        &out[3 * mc..4 * mc],
        &kt,
        ELEMENTWISE,
    );
    check(&format!("gate LoRA{tag}"), &gate_gpu, &gate, REDUCTION);
    if first {
        check("att_prep v (block 0)", &out[4 * mc..], &v, ELEMENTWISE);
        check(
            "att_prep v_first written",
            &hs.read(vf, 0, mc),
            &v,
            ELEMENTWISE,
        );
    } else {
        let vr = ops::value_residual(&v, &vfirst, &xin[2], c, &v0, &downs[2], r, &ups[2]);
        check("att_prep value residual", &out[4 * mc..], &vr, ELEMENTWISE);
    }
}

#[test]
fn att_prep_later_block() {
    att_prep_case(false);
}

#[test]
fn att_prep_block_zero() {
    att_prep_case(true);
}

/// One scan direction on two 7x5 images with N = 32 (two heads), against `ops::delta_scan`; the
/// final state in the state buffer must reproduce the output of the last token.
#[test]
fn combine() {
    let Some(ctx) = ctx() else { return };
    let (m, c, n) = (37usize, 64usize, 32usize);
    let mc = m * c;
    let yd: Vec<Vec<f32>> = (0..4).map(|d| rand_vec(200 + d, mc, -1.0, 1.0)).collect();
    let kt = rand_vec(210, mc, -1.0, 1.0);
    let v = rand_vec(211, mc, -1.0, 1.0);
    let r = rand_vec(212, mc, -1.0, 1.0);
    let gate = rand_vec(213, mc, -1.0, 1.0);
    let rk = rand_vec(214, c, -0.5, 0.5);
    let gw = rand_vec(215, c, 0.5, 1.5);
    let gb = rand_vec(216, c, -0.2, 0.2);
    let mut hs = Harness::new(ctx);
    let ydb = hs.input(&yd.concat());
    let mut insv = kt.clone();
    insv.extend_from_slice(&v);
    let ins = hs.input(&insv);
    let rb = hs.input(&r);
    let gb_buf = hs.input(&gate);
    let wts = hs.input(&[rk.clone(), gw.clone(), gb.clone()].concat());
    let out = hs.zeros(mc);
    let cu = c as u32;
    hs.graph
        .combine(&CombineArgs {
            ydir: ydb.at(0),
            y_zs: mc as u32,
            ins,
            kt_off: 0,
            v_off: mc as u32,
            r: rb.at(0),
            gate: gb_buf.at(0),
            weights: wts,
            rk_off: 0,
            gw_off: cu,
            gb_off: 2 * cu,
            out: out.at(0),
            m: m as u32,
            c: cu,
            head_size: n as u32,
            eps: ops::GN_EPS,
        })
        .unwrap();
    hs.run();
    let gpu = hs.read(out, 0, mc);
    let y = ops::add(&ops::add(&ops::add(&yd[0], &yd[1]), &yd[2]), &yd[3]);
    let gn = ops::group_norm(&y, c, n, &gw, &gb, ops::GN_EPS);
    let bonus = ops::bonus(&r, &kt, &v, &rk, c, n);
    let cpu = ops::mul(&ops::add(&gn, &bonus), &gate);
    check(
        "combine (sum of directions, group norm, bonus, gate)",
        &gpu,
        &cpu,
        REDUCTION,
    );
}
