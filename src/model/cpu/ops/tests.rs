//! Unit tests of the layer functions.

use super::*;

fn approx(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "index {i}: {x} vs {y}"
        );
    }
}

#[test]
fn dot_matches_naive() {
    let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
    let b: Vec<f32> = (0..19).map(|i| (i as f32).sin()).collect();
    let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!((dot(&a, &b) - naive).abs() < 1e-4);
}

#[test]
fn conv_identity_kernel_copies_input_plus_bias() {
    let (h, w) = (3, 4);
    let input: Vec<f32> = (0..2 * h * w).map(|i| i as f32).collect();
    // out0 = in0 (centre tap), out1 = in1 + 2
    let mut weight = vec![0.0; 2 * 2 * 9];
    weight[4] = 1.0; // o=0, i=0, centre
    weight[(2 + 1) * 9 + 4] = 1.0; // o=1, i=1
    let out = conv3x3(&input, 2, h, w, &weight, &[0.0, 2.0], 2);
    approx(&out[..12], &input[..12], 0.0);
    let expect: Vec<f32> = input[12..].iter().map(|v| v + 2.0).collect();
    approx(&out[12..], &expect, 0.0);
}

#[test]
fn conv_shift_taps_and_zero_padding() {
    let (h, w) = (3, 3);
    let input: Vec<f32> = (1..=9).map(|i| i as f32).collect();
    // tap (ky=0, kx=0) reads input[y-1, x-1]
    let mut weight = vec![0.0; 9];
    weight[0] = 1.0;
    let out = conv3x3(&input, 1, h, w, &weight, &[0.0], 1);
    approx(&out, &[0., 0., 0., 0., 1., 2., 0., 4., 5.], 0.0);
    // tap (ky=2, kx=2) reads input[y+1, x+1]
    let mut weight = vec![0.0; 9];
    weight[8] = 1.0;
    let out = conv3x3(&input, 1, h, w, &weight, &[0.0], 1);
    approx(&out, &[5., 6., 0., 8., 9., 0., 0., 0., 0.], 0.0);
    // all ones: box sum
    let out = conv3x3(&input, 1, h, w, &[1.0; 9], &[0.0], 1);
    approx(&out, &[12., 21., 16., 27., 45., 33., 24., 39., 28.], 0.0);
}

#[test]
fn conv_width_one() {
    let input = [1.0, 2.0, 3.0];
    let out = conv3x3(&input, 1, 3, 1, &[1.0; 9], &[0.5], 1);
    approx(&out, &[3.5, 6.5, 5.5], 0.0);
}

#[test]
fn pixel_shuffle_matches_pytorch_layout() {
    // 4 channels of 1x2 -> 1 channel of 2x4.
    let input: Vec<f32> = (0..8).map(|i| i as f32).collect();
    // ch k holds [2k, 2k+1] at (0,0),(0,1); out[0, i, 2x + j] = in[i*2 + j, 0, x]
    let out = pixel_shuffle(&input, 4, 1, 2, 2);
    approx(&out, &[0., 2., 1., 3., 4., 6., 5., 7.], 0.0);
}

#[test]
fn token_layout_round_trip() {
    let img: Vec<f32> = (0..2 * 3 * 2).map(|i| i as f32).collect();
    let t = image_to_tokens(&img, 2, 3, 2);
    assert_eq!(t[1], img[6]); // token 0, channel 1
    assert_eq!(tokens_to_image(&t, 2, 3, 2), img);
}

#[test]
fn layer_norm_normalises() {
    let x = [1.0, 2.0, 3.0, 4.0, -1.0, -1.0, -1.0, -1.0];
    let y = layer_norm(&x, 4, &[1.0; 4], &[0.0; 4], 0.0);
    let s = (1.25f32).sqrt();
    approx(&y[..4], &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], 1e-6);
    // a constant token normalises to zero (eps keeps it finite)
    let y = layer_norm(&x, 4, &[1.0; 4], &[0.0; 4], LN_EPS);
    approx(&y[4..], &[0.0; 4], 0.0);
    let y = layer_norm(&x, 4, &[2.0; 4], &[1.0; 4], LN_EPS);
    let s = (1.25f32 + LN_EPS).sqrt();
    approx(&y[..1], &[-3.0 / s + 1.0], 1e-6);
}

#[test]
fn group_norm_per_head() {
    let x = [1.0, 3.0, 10.0, 30.0];
    let y = group_norm(&x, 4, 2, &[1.0; 4], &[0.0; 4], 0.0);
    approx(&y, &[-1.0, 1.0, -1.0, 1.0], 1e-6);
}

#[test]
fn token_shift_quarters() {
    // 2x2 image, C = N = 4: channel q reads left/right/up/down.
    let (h, w, c) = (2, 2, 4);
    let x: Vec<f32> = (0..h * w * c)
        .map(|i| (i / c * 10 + i % c) as f32 + 1.0)
        .collect();
    let xs = token_shift_2d(&x, h, w, c, 4);
    let at = |p: usize, ch: usize| x[p * c + ch];
    // token 0 (row 0, col 0): left none, right = token 1, above none, below = token 2
    approx(&xs[0..4], &[0.0, at(1, 1), 0.0, at(2, 3)], 0.0);
    // token 3 (row 1, col 1): left = token 2, right none, above = token 1, below none
    approx(&xs[12..16], &[at(2, 0), 0.0, at(1, 2), 0.0], 0.0);
    let d = token_shift_delta(&x, h, w, c, 4);
    assert_eq!(d[1], at(1, 1) - at(0, 1));
}

#[test]
fn token_shift_quarters_follow_head_size() {
    // C = 16, N = 8: channels 0,1 left; 2,3 right; 4,5 up; 6,7 down; then again for head 1.
    let (h, w, c) = (1, 3, 16);
    let x: Vec<f32> = (0..h * w * c).map(|i| (i / c) as f32 + 1.0).collect();
    let xs = token_shift_2d(&x, h, w, c, 8);
    let mid = &xs[c..2 * c];
    let expect = [
        1., 1., 3., 3., 0., 0., 0., 0., 1., 1., 3., 3., 0., 0., 0., 0.,
    ];
    approx(mid, &expect, 0.0);
}

#[test]
fn linear_and_matmul_conventions() {
    // x = [1, 2], W = [[1, 0], [0, 1], [1, 1]] ([out=3, in=2]) -> [1, 2, 3]
    let y = linear(&[1.0, 2.0], 2, &[1., 0., 0., 1., 1., 1.], 3);
    approx(&y, &[1.0, 2.0, 3.0], 0.0);
    // M [in=2, out=3] = [[1, 0, 1], [0, 1, 1]] -> same result
    let y = matmul(&[1.0, 2.0], 2, &[1., 0., 1., 0., 1., 1.], 3);
    approx(&y, &[1.0, 2.0, 3.0], 0.0);
}

#[test]
fn decay_range_and_zero_lora() {
    let c = 2;
    let lam = decay(&[5.0, -5.0], c, &[-100.0, 100.0], &[0.0; 2], 1, &[0.0; 2]);
    approx(&lam, &[1.0, (-(-0.5f32).exp()).exp()], 1e-6);
    let a = icl_rate(&[1.0, 1.0], c, &[0.0, 0.0], &[1.0, 1.0], 1, &[1.0, -1.0]);
    approx(&a, &[sigmoid(2.0), sigmoid(-2.0)], 1e-6);
    let g = gate(&[0.0, 0.0], c, &[1.0, 1.0], 1, &[2.0, 4.0]);
    approx(&g, &[1.0, 2.0], 1e-6);
    let v = value_residual(
        &[1.0, 1.0],
        &[3.0, 3.0],
        &[0.0, 0.0],
        c,
        &[0.0, 100.0],
        &[0.0; 2],
        1,
        &[0.0; 2],
    );
    approx(&v, &[2.0, 3.0], 1e-6);
}

#[test]
fn keys() {
    let k = [3.0, 4.0, 0.0, 0.0];
    let kk = removal_key(&k, 4, 2, &[1.0; 4]);
    approx(&kk, &[0.6, 0.8, 0.0, 0.0], 1e-6);
    let kt = replacement_key(&k, &[0.5; 4], 4, &[1.0, 0.0, 1.0, 1.0]);
    approx(&kt, &[1.5, 4.0, 0.0, 0.0], 1e-6);
}

#[test]
fn scan_orders() {
    let (h, w) = (2, 3);
    assert_eq!(
        ScanDirection::RowsForward.order(h, w),
        vec![0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        ScanDirection::RowsBackward.order(h, w),
        vec![5, 4, 3, 2, 1, 0]
    );
    assert_eq!(
        ScanDirection::ColsForward.order(h, w),
        vec![0, 3, 1, 4, 2, 5]
    );
    assert_eq!(
        ScanDirection::ColsBackward.order(h, w),
        vec![5, 2, 4, 1, 3, 0]
    );
}

/// With lambda = 1 and a = 0 the state is the running sum of v kt^T, so
/// y_p = sum over visited tokens q (up to and including p) of v_q (kt_q . r_p).
#[test]
fn scan_without_decay_is_a_cumulative_sum() {
    let (h, w, c, n) = (2, 3, 4, 2);
    let l = h * w;
    let f = |s: f32| -> Vec<f32> { (0..l * c).map(|i| ((i as f32) * s).sin()).collect() };
    let (r, kk, kt, v) = (f(0.7), f(1.3), f(2.1), f(0.37));
    let lambda = vec![1.0; l * c];
    let a = vec![0.0; l * c];
    let inputs = ScanInputs {
        r: &r,
        lambda: &lambda,
        kk: &kk,
        a: &a,
        kt: &kt,
        v: &v,
    };
    for dir in ScanDirection::ALL {
        let order = dir.order(h, w);
        let y = delta_scan(dir, h, w, c, n, &inputs);
        for hd in 0..c / n {
            for (t, &p) in order.iter().enumerate() {
                for i in 0..n {
                    let mut expect = 0.0f32;
                    for &q in &order[..=t] {
                        let ktr: f32 = (0..n)
                            .map(|j| kt[q * c + hd * n + j] * r[p * c + hd * n + j])
                            .sum();
                        expect += v[q * c + hd * n + i] * ktr;
                    }
                    let got = y[p * c + hd * n + i];
                    assert!(
                        (got - expect).abs() < 1e-5,
                        "{dir:?} head {hd} t {t}: {got} vs {expect}"
                    );
                }
            }
        }
    }
}

/// Smooth deterministic scan inputs for an `h x w` image with `c` channels in heads of `n`.
fn scan_data(h: usize, w: usize, c: usize, n: usize) -> [Vec<f32>; 6] {
    let l = h * w;
    let f = |s: f32, lo: f32, hi: f32| -> Vec<f32> {
        (0..l * c)
            .map(|i| lo + (hi - lo) * (0.5 + 0.5 * ((i as f32) * s).sin()))
            .collect()
    };
    [
        f(0.7, -1.0, 1.0),
        f(1.1, 0.55, 1.0),
        l2_normalize_heads(&f(1.3, -1.0, 1.0), c, n, L2_EPS),
        f(0.9, 0.0, 1.0),
        f(2.1, -1.0, 1.0),
        f(0.37, -1.0, 1.0),
    ]
}

fn scan_inputs(d: &[Vec<f32>; 6]) -> ScanInputs<'_> {
    ScanInputs {
        r: &d[0],
        lambda: &d[1],
        kk: &d[2],
        a: &d[3],
        kt: &d[4],
        v: &d[5],
    }
}

/// A naive f64 transcription of the matrix form of the recurrence, summed over the four
/// directions.
#[allow(clippy::needless_range_loop)]
fn scan_reference(h: usize, w: usize, c: usize, n: usize, inputs: &ScanInputs<'_>) -> Vec<f32> {
    let l = h * w;
    let mut sum = vec![0.0f64; l * c];
    for dir in ScanDirection::ALL {
        for hd in 0..c / n {
            let g = |x: &[f32], p: usize, j: usize| f64::from(x[p * c + hd * n + j]);
            let mut s = vec![vec![0.0f64; n]; n];
            for p in dir.order(h, w) {
                let sk: Vec<f64> = (0..n)
                    .map(|i| (0..n).map(|j| s[i][j] * g(inputs.kk, p, j)).sum())
                    .collect();
                for i in 0..n {
                    for j in 0..n {
                        s[i][j] = s[i][j] * g(inputs.lambda, p, j)
                            - sk[i] * g(inputs.a, p, j) * g(inputs.kk, p, j)
                            + g(inputs.v, p, i) * g(inputs.kt, p, j);
                    }
                }
                for i in 0..n {
                    sum[p * c + hd * n + i] +=
                        (0..n).map(|j| s[i][j] * g(inputs.r, p, j)).sum::<f64>();
                }
            }
        }
    }
    sum.iter().map(|&x| x as f32).collect()
}

#[test]
fn scan_matches_matrix_form() {
    let (h, w, c, n) = (3, 2, 8, 4);
    let d = scan_data(h, w, c, n);
    let inputs = scan_inputs(&d);
    let all = delta_scan_all(h, w, c, n, &inputs);
    approx(&all, &scan_reference(h, w, c, n, &inputs), 1e-5);
}

#[test]
fn scan_matches_matrix_form_at_unrolled_head_sizes() {
    // 16, 32 and 64 take the constant-size copies of the kernel; 24 the general one.
    for (h, w, n) in [(5, 4, 16), (4, 3, 32), (2, 3, 64), (3, 3, 24)] {
        let c = 2 * n;
        let d = scan_data(h, w, c, n);
        let inputs = scan_inputs(&d);
        let all = delta_scan_all(h, w, c, n, &inputs);
        approx(&all, &scan_reference(h, w, c, n, &inputs), 1e-4);
    }
}

#[test]
fn scan_dispatch_is_bit_identical_to_generic_fused_code() {
    // On x86-64 with FMA `delta_scan_head` runs the AVX-512 or AVX2 copy; it must equal the
    // generic fused code bit for bit.
    if scan::ScanIsa::detect() == scan::ScanIsa::Portable {
        return;
    }
    let (h, w) = (6, 5);
    for n in [32, 16, 24] {
        let c = 2 * n;
        let d = scan_data(h, w, c, n);
        let inputs = scan_inputs(&d);
        for dir in ScanDirection::ALL {
            for hd in 0..c / n {
                let fast = delta_scan_head(dir, h, w, c, n, hd, &inputs);
                let mut generic = vec![f32::NAN; h * w * n];
                scan::scan_head_sized::<true>(dir, h, w, c, n, hd, &inputs, &mut generic);
                assert_eq!(fast, generic, "n {n}, direction {dir:?}, head {hd}");
            }
        }
    }
}

#[test]
fn scan_portable_fallback_matches_matrix_form() {
    // The copy without fused multiply-adds (CPUs without FMA), summed over the directions.
    for (h, w, n) in [(5, 4, 16), (4, 3, 32), (3, 3, 24)] {
        let c = 2 * n;
        let d = scan_data(h, w, c, n);
        let inputs = scan_inputs(&d);
        let mut sum = vec![0.0f32; h * w * c];
        for dir in ScanDirection::ALL {
            for hd in 0..c / n {
                let mut y = vec![f32::NAN; h * w * n];
                scan::scan_head_sized::<false>(dir, h, w, c, n, hd, &inputs, &mut y);
                for (p, yt) in y.chunks(n).enumerate() {
                    for (i, v) in yt.iter().enumerate() {
                        sum[p * c + hd * n + i] += v;
                    }
                }
            }
        }
        approx(&sum, &scan_reference(h, w, c, n, &inputs), 1e-4);
    }
}

/// `conv3x3` by its formula, in f64.
fn conv_reference(
    input: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    bias: &[f32],
    c_out: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; c_out * h * w];
    for o in 0..c_out {
        for y in 0..h {
            for x in 0..w {
                let mut acc = f64::from(bias[o]);
                for i in 0..c_in {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (sy, sx) = (y + ky, x + kx);
                            if sy == 0 || sx == 0 || sy > h || sx > w {
                                continue;
                            }
                            let wv = weight[((o * c_in + i) * 3 + ky) * 3 + kx];
                            let iv = input[(i * h + sy - 1) * w + sx - 1];
                            acc += f64::from(wv) * f64::from(iv);
                        }
                    }
                }
                out[(o * h + y) * w + x] = acc as f32;
            }
        }
    }
    out
}

#[test]
fn conv_matches_formula_across_bands() {
    // 37 rows of 20 pixels: bands of 25 rows (the last one short); 3 rows of 600: one row a band;
    // a single column.
    for (c_in, c_out, h, w) in [(3, 5, 37, 20), (2, 3, 3, 600), (4, 2, 9, 1)] {
        let input: Vec<f32> = (0..c_in * h * w)
            .map(|i| ((i as f32) * 0.37).sin())
            .collect();
        let weight: Vec<f32> = (0..c_out * c_in * 9)
            .map(|i| ((i as f32) * 1.3).cos() * 0.5)
            .collect();
        let bias: Vec<f32> = (0..c_out).map(|o| o as f32 * 0.25 - 0.5).collect();
        let out = conv3x3(&input, c_in, h, w, &weight, &bias, c_out);
        let expect = conv_reference(&input, c_in, h, w, &weight, &bias, c_out);
        approx(&out, &expect, 1e-5);
    }
}

#[test]
fn linear_and_matmul_match_formula_across_blocks() {
    // 600 tokens: two full blocks of tokens and a short one; 5 columns (no full tile), 40 (tiles
    // and a remainder), 96 (tiles only).
    for n in [5, 40, 96] {
        linear_and_matmul_case(600, 7, n);
    }
}

fn linear_and_matmul_case(l: usize, k: usize, n: usize) {
    let x: Vec<f32> = (0..l * k).map(|i| ((i as f32) * 0.11).sin()).collect();
    let wt: Vec<f32> = (0..n * k).map(|i| ((i as f32) * 0.7).cos()).collect();
    let y = linear(&x, k, &wt, n);
    let expect: Vec<f32> = (0..l * n)
        .map(|e| {
            let (p, o) = (e / n, e % n);
            (0..k)
                .map(|i| f64::from(x[p * k + i]) * f64::from(wt[o * k + i]))
                .sum::<f64>() as f32
        })
        .collect();
    approx(&y, &expect, 1e-5);
    // The same numbers as an `[in, out]` matrix.
    let m: Vec<f32> = (0..k * n).map(|e| wt[(e % n) * k + e / n]).collect();
    approx(&matmul(&x, k, &m, n), &expect, 1e-5);
}

#[test]
fn bonus_term() {
    // one head of 2: s = r0 kt0 rk0 + r1 kt1 rk1 = 1*2*0.5 + 3*1*1 = 4
    let out = bonus(&[1.0, 3.0], &[2.0, 1.0], &[1.0, -2.0], &[0.5, 1.0], 2, 2);
    approx(&out, &[4.0, -8.0], 0.0);
}

#[test]
fn channel_mix_small() {
    // 1x1 image: shift reads zeros, d = -x, x_k = x (1 - mu).
    let out = channel_mix(
        &[2.0, -1.0],
        1,
        1,
        2,
        2,
        &[0.5, 0.5],
        &[1., 0., 0., 1.],
        &[1., 1., 0., 1.],
        2,
    );
    // x_k = [1, -0.5]; k = relu^2 = [1, 0]; out = [1*1 + 0*1, 0*1 + 0*1]
    approx(&out, &[1.0, 0.0], 0.0);
}

#[test]
fn leaky() {
    approx(&leaky_relu(&[-2.0, 3.0], LEAKY_SLOPE), &[-0.02, 3.0], 1e-7);
}

/// Deterministic `len` values in about [-1, 1].
fn wave(len: usize, s: f32) -> Vec<f32> {
    (0..len).map(|i| ((i as f32) * s + 0.3).sin()).collect()
}

#[test]
fn fused_layers_equal_the_layer_functions_bit_for_bit() {
    // 7x9 tokens (more than one parallel chunk of tokens), heads of 8 and of 6.
    for (h, w, c, n) in [(7, 9, 16, 8), (5, 3, 12, 6)] {
        let l = h * w;
        let x = wave(l * c, 0.37);
        let wt = wave(c, 1.3);
        let bs = wave(c, 0.7);
        // LayerNorm, and residual + LayerNorm.
        let mut y = vec![f32::NAN; l * c];
        fused::layer_norm_into(&x, c, &wt, &bs, LN_EPS, &mut y);
        assert_eq!(y, layer_norm(&x, c, &wt, &bs, LN_EPS));
        let add_v = wave(l * c, 0.11);
        let mut t = x.clone();
        fused::add_layer_norm(&mut t, &add_v, c, &wt, &bs, LN_EPS, &mut y);
        let t_ref = add(&x, &add_v);
        assert_eq!(t, t_ref);
        assert_eq!(y, layer_norm(&t_ref, c, &wt, &bs, LN_EPS));
        let mut t = x.clone();
        fused::add_in_place(&mut t, &add_v);
        assert_eq!(t, t_ref);
        // Token shift and interpolations.
        let mus = [wave(c, 0.5), wave(c, 0.9)];
        let mut o0 = vec![f32::NAN; l * c];
        let mut o1 = vec![f32::NAN; l * c];
        fused::shift_mix_into(
            &x,
            h,
            w,
            c,
            n,
            &[&mus[0], &mus[1]],
            &mut [&mut o0[..], &mut o1[..]],
        );
        let d = token_shift_delta(&x, h, w, c, n);
        assert_eq!(o0, lerp_mix(&x, &d, &mus[0], c));
        assert_eq!(o1, lerp_mix(&x, &d, &mus[1], c));
        // Keys.
        let a: Vec<f32> = wave(l * c, 0.23).iter().map(|v| 0.5 + 0.5 * v).collect();
        let (k_k, k_a) = (wave(c, 0.31), wave(c, 0.17));
        let mut kk = vec![f32::NAN; l * c];
        let mut kt = vec![f32::NAN; l * c];
        fused::keys_into(&x, &a, c, n, &k_k, &k_a, &mut kk, &mut kt);
        assert_eq!(kk, removal_key(&x, c, n, &k_k));
        assert_eq!(kt, replacement_key(&x, &a, c, &k_a));
        // Read-out: directions summed, GroupNorm, bonus, gate.
        let heads = c / n;
        let scans: Vec<Vec<f32>> = (0..4 * heads)
            .map(|j| wave(l * n, 0.05 + 0.03 * j as f32))
            .collect();
        let (r, v, gate_v, r_k) = (
            wave(l * c, 0.41),
            wave(l * c, 0.29),
            wave(l * c, 0.61),
            wave(c, 0.8),
        );
        let ro = fused::ReadoutInputs {
            lnx_w: &wt,
            lnx_b: &bs,
            r: &r,
            kt: &kt,
            v: &v,
            r_k: &r_k,
            gate: &gate_v,
        };
        let refs: Vec<&[f32]> = scans.iter().map(Vec::as_slice).collect();
        let mut g = vec![f32::NAN; l * c];
        let mut ty = vec![f32::NAN; l * c];
        let mut tln = vec![f32::NAN; l * c];
        fused::readout_into(&refs, c, n, &ro, &mut g, Some((&mut ty[..], &mut tln[..])));
        let mut y_ref = vec![0.0f32; l * c];
        for d in 0..4 {
            for hd in 0..heads {
                for p in 0..l {
                    for i in 0..n {
                        y_ref[p * c + hd * n + i] += scans[d * heads + hd][p * n + i];
                    }
                }
            }
        }
        assert_eq!(ty, y_ref);
        let mut y_ln = group_norm(&y_ref, c, n, &wt, &bs, GN_EPS);
        assert_eq!(tln, y_ln);
        let b = bonus(&r, &kt, &v, &r_k, c, n);
        y_ln.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
        assert_eq!(g, mul(&y_ln, &gate_v));
        let mut g2 = vec![f32::NAN; l * c];
        fused::readout_into(&refs, c, n, &ro, &mut g2, None);
        assert_eq!(g2, g);
        // Linear and LoRA with epilogues.
        let wl = wave(c * c, 0.13);
        let mut lin = vec![f32::NAN; l * c];
        fused::linear_into(&x, c, &wl, c, &mut lin, |_, b| {
            b.iter_mut().for_each(|v| *v = sigmoid(*v));
        });
        let mut want = linear(&x, c, &wl, c);
        want.iter_mut().for_each(|v| *v = sigmoid(*v));
        assert_eq!(lin, want);
        let rank = 3;
        let (down, up, base) = (wave(c * rank, 0.19), wave(rank * c, 0.07), wave(c, 0.9));
        let mut hid = vec![f32::NAN; l * rank];
        fused::matmul_into(&x, c, &down, rank, &mut hid, |_, b| {
            b.iter_mut().for_each(|v| *v = v.tanh());
        });
        let mut lam = vec![f32::NAN; l * c];
        fused::matmul_into(&hid, rank, &up, c, &mut lam, |_, b| {
            fused::offset_apply(b, &base, fused::decay_of);
        });
        assert_eq!(lam, decay(&x, c, &base, &down, rank, &up));
    }
}

#[test]
fn scan_visit_order_matches_positions() {
    for (h, w) in [(3, 5), (4, 1), (1, 4), (6, 6)] {
        for d in ScanDirection::ALL {
            assert_eq!(scan::visit_order(d, h, w), d.order(h, w), "{d:?} {h}x{w}");
        }
    }
}

#[test]
fn scan_packing_of_all_heads_equals_packing_each_head() {
    for (h, w, c, n) in [(5, 19, 64, 32), (17, 3, 48, 16)] {
        let d = scan_data(h, w, c, n);
        let inputs = scan_inputs(&d);
        let rec = scan::PACKED * n * h * w;
        for cols in [false, true] {
            let mut all = vec![f32::NAN; rec * (c / n)];
            scan::pack_heads(&inputs, h, w, c, n, cols, &mut all);
            for hd in 0..c / n {
                let mut one = vec![f32::NAN; rec];
                scan::pack_head(&inputs, h, w, c, n, hd, cols, &mut one);
                assert_eq!(
                    &all[hd * rec..(hd + 1) * rec],
                    &one[..],
                    "cols {cols}, head {hd}"
                );
            }
        }
    }
}

#[test]
fn exp_f32_is_within_two_ulp() {
    let mut worst = 0.0f64;
    let mut x = -87.3f32;
    while x < 87.8 {
        for dx in [0.0f32, 1e-3, 0.371, 0.5] {
            let v = x + dx;
            let got = f64::from(exp_f32(v));
            let want = f64::from(v).exp();
            // One ulp of the f32 nearest the exact value.
            let ulp = f64::from((want as f32).abs().next_up() - (want as f32).abs());
            worst = worst.max((got - want).abs() / ulp);
        }
        x += 0.173;
    }
    for v in [-1e-6f32, 0.0, 1e-6, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0] {
        let ulp = f64::from((v.exp()).next_up() - v.exp());
        worst = worst.max((f64::from(exp_f32(v)) - f64::from(v).exp()).abs() / ulp);
    }
    assert!(worst <= 2.0, "worst error {worst} ulp");
    assert_eq!(exp_f32(0.0), 1.0);
    assert!(exp_f32(-200.0) > 0.0 && exp_f32(-200.0) < 1.3e-38);
    assert!(exp_f32(200.0).is_finite());
    assert!(exp_f32(f32::NAN).is_nan());
    assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
}

#[test]
fn conv_on_tokens_matches_conv_on_images() {
    // More than one band of tokens, edges on every side, one and several input channels.
    for (c_in, h, w, c_out) in [(3, 13, 17, 5), (1, 9, 20, 4), (4, 1, 3, 2)] {
        let img = wave(c_in * h * w, 0.21);
        let wt = wave(c_out * c_in * 9, 0.37);
        let bias = wave(c_out, 0.9);
        let want = conv3x3(&img, c_in, h, w, &wt, &bias, c_out);
        let mut y = vec![f32::NAN; h * w * c_out];
        let x = image_to_tokens(&img, c_in, h, w);
        fused_conv_check(&x, c_in, h, w, &wt, &bias, c_out, &mut y);
        approx(&tokens_to_image(&y, c_out, h, w), &want, 1e-5);
    }
}

#[allow(clippy::too_many_arguments)]
fn fused_conv_check(
    x: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    wt: &[f32],
    bias: &[f32],
    c_out: usize,
    y: &mut [f32],
) {
    // The epilogue sees each band once, at its first token.
    let seen = std::sync::Mutex::new(Vec::new());
    conv3x3_tokens_into(x, c_in, h, w, wt, bias, c_out, y, |t0, band| {
        if let Ok(mut s) = seen.lock() {
            s.push((t0, band.len() / c_out));
        }
    });
    let mut seen = seen.into_inner().unwrap_or_default();
    seen.sort_unstable();
    let mut next = 0;
    for (t0, m) in seen {
        assert_eq!(t0, next);
        next += m;
    }
    assert_eq!(next, h * w);
}
