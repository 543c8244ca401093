//! The blocks of the forward pass on a [`Workspace`]: every `L x C` intermediate lives in a buffer
//! allocated once per forward pass and reused by all blocks (no fresh, zeroed arrays per layer),
//! and the elementwise layers are fused into the passes that produce or consume them
//! ([`super::ops::fused`]). The values are the same, bit for bit, as those of the layer functions
//! of [`super::ops`] composed as the spec says.

use rayon::prelude::*;

use super::ops::fused::{self, ReadoutInputs};
use super::ops::{self, ScanDirection, ScanInputs, scan, sigmoid};
use super::{BlockWeights, ForwardError, Trace, record};
use crate::model::ModelConfig;

/// Buffers for the blocks of one forward pass of an `h x w` image.
pub(crate) struct Workspace {
    l: usize,
    c: usize,
    /// Six `L x C` arrays: the interpolations of the spatial mix; then the twelve scans
    /// (`L x N` each, the first four `L x C`) and the gated read-out (the fifth); in the
    /// channel mix, its interpolation (the first) and its hidden layer (from the second on).
    mix: Vec<f32>,
    r: Vec<f32>,
    k: Vec<f32>,
    /// The value after the value residual (block 0: `v_first`).
    pub(crate) v: Vec<f32>,
    lambda: Vec<f32>,
    a: Vec<f32>,
    gate: Vec<f32>,
    kk: Vec<f32>,
    kt: Vec<f32>,
    /// The output of the last branch (spatial or channel mix), `L x C`.
    pub(crate) out: Vec<f32>,
    /// LoRA hidden layer, `L x rank`.
    hid: Vec<f32>,
    /// The scan inputs of all heads packed per token (`ops::scan::pack_head`), `6 L x C`; empty
    /// where the packed scan kernel does not run.
    pack: Vec<f32>,
}

impl Workspace {
    pub(crate) fn new(cfg: &ModelConfig, l: usize) -> Self {
        let c = cfg.dim;
        let lc = l * c;
        let rank = cfg
            .lora_rank_w
            .max(cfg.lora_rank_a)
            .max(cfg.lora_rank_v)
            .max(cfg.lora_rank_g);
        let mix = (6 * lc).max(lc + l * cfg.ffn_hidden());
        Self {
            l,
            c,
            mix: vec![0.0; mix],
            r: vec![0.0; lc],
            k: vec![0.0; lc],
            v: vec![0.0; lc],
            lambda: vec![0.0; lc],
            a: vec![0.0; lc],
            gate: vec![0.0; lc],
            kk: vec![0.0; lc],
            kt: vec![0.0; lc],
            out: vec![0.0; lc],
            hid: vec![0.0; l * rank],
            pack: if scan::packed_kernel(cfg.head_size) {
                vec![0.0; scan::PACKED * lc]
            } else {
                Vec::new()
            },
        }
    }
}

/// The spatial mix of `layer` on the normalised tokens `x`: the branch output in `ws.out`, the
/// value (after the value residual) in `ws.v`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spatial_mix_ws(
    ws: &mut Workspace,
    cfg: &ModelConfig,
    wts: &BlockWeights<'_>,
    layer: usize,
    x: &[f32],
    h: usize,
    w: usize,
    v_first: Option<&[f32]>,
    trace: &mut Option<&mut Trace>,
) -> Result<(), ForwardError> {
    let (c, n) = (cfg.dim, cfg.head_size);
    let (l, lc) = (ws.l, ws.l * ws.c);
    debug_assert_eq!(x.len(), lc);
    let pre = |s: &str| format!("block.{layer}.att.{s}");

    {
        let (xr, rest) = ws.mix.split_at_mut(lc);
        let (xw, rest) = rest.split_at_mut(lc);
        let (xk, rest) = rest.split_at_mut(lc);
        let (xv, rest) = rest.split_at_mut(lc);
        let (xa, rest) = rest.split_at_mut(lc);
        let xg = &mut rest[..lc];
        let mus = [wts.mu_r, wts.mu_w, wts.mu_k, wts.mu_v, wts.mu_a, wts.mu_g];
        fused::shift_mix_into(x, h, w, c, n, &mus, &mut [xr, xw, xk, xv, xa, xg]);
    }
    let xs: Vec<&[f32]> = ws.mix[..6 * lc].chunks_exact(lc).collect();
    let (xr, xw, xk, xv, xa, xg) = (xs[0], xs[1], xs[2], xs[3], xs[4], xs[5]);
    let noop = |_: usize, _: &mut [f32]| {};

    fused::linear_into(xr, c, wts.w_r, c, &mut ws.r, noop);
    fused::linear_into(xk, c, wts.w_k, c, &mut ws.k, noop);
    fused::linear_into(xv, c, wts.w_v, c, &mut ws.v, noop);

    // Decay: exp(-exp(-0.5) sigmoid(w0 + tanh(x_w W1) W2)).
    let rank = cfg.lora_rank_w;
    let hid = &mut ws.hid[..l * rank];
    fused::matmul_into(xw, c, wts.w1, rank, hid, |_, b| {
        b.iter_mut().for_each(|v| *v = v.tanh());
    });
    fused::matmul_into(hid, rank, wts.w2, c, &mut ws.lambda, |_, b| {
        fused::offset_apply(b, wts.w0, fused::decay_of);
    });

    // In-context learning rate: sigmoid(a0 + (x_a A1) A2).
    let rank = cfg.lora_rank_a;
    let hid = &mut ws.hid[..l * rank];
    fused::matmul_into(xa, c, wts.a1, rank, hid, noop);
    fused::matmul_into(hid, rank, wts.a2, c, &mut ws.a, |_, b| {
        fused::offset_apply(b, wts.a0, sigmoid);
    });

    if let Some((v0, v1, v2)) = wts.v_res {
        let vf = v_first.ok_or_else(|| ForwardError::BadInput {
            width: w,
            height: h,
            reason: format!("block {layer} needs v_first from block 0"),
        })?;
        super::check_tokens(vf, h, w, c)?;
        let rank = cfg.lora_rank_v;
        let hid = &mut ws.hid[..l * rank];
        fused::matmul_into(xv, c, v1, rank, hid, noop);
        let v = &ws.v;
        // out = v + (v_first - v) sigmoid(v0 + (x_v V1) V2), then swapped into `v`.
        fused::matmul_into(hid, rank, v2, c, &mut ws.out, |t0, b| {
            let base = t0 * c;
            let vs = &v[base..base + b.len()];
            let vfs = &vf[base..base + b.len()];
            for (row, (vr, vfr)) in b.chunks_mut(c).zip(vs.chunks(c).zip(vfs.chunks(c))) {
                for (((m, &o), &vv), &f) in row.iter_mut().zip(v0).zip(vr).zip(vfr) {
                    let mix = *m + o;
                    *m = vv + (f - vv) * sigmoid(mix);
                }
            }
        });
        std::mem::swap(&mut ws.v, &mut ws.out);
    }

    // Gate: sigmoid(x_g G1) G2.
    let rank = cfg.lora_rank_g;
    let hid = &mut ws.hid[..l * rank];
    fused::matmul_into(xg, c, wts.g1, rank, hid, |_, b| {
        b.iter_mut().for_each(|v| *v = sigmoid(*v));
    });
    fused::matmul_into(hid, rank, wts.g2, c, &mut ws.gate, noop);
    record(trace, || pre("r"), &ws.r);
    record(trace, || pre("k"), &ws.k);
    record(trace, || pre("v"), &ws.v);
    record(trace, || pre("decay"), &ws.lambda);
    record(trace, || pre("a"), &ws.a);
    record(trace, || pre("gate"), &ws.gate);

    fused::keys_into(&ws.k, &ws.a, c, n, wts.k_k, wts.k_a, &mut ws.kk, &mut ws.kt);
    record(trace, || pre("kk"), &ws.kk);
    record(trace, || pre("kt"), &ws.kt);

    // The twelve (direction, head) scans, each into its own `L x N` part of `mix`.
    let heads = c / n;
    let inputs = ScanInputs {
        r: &ws.r,
        lambda: &ws.lambda,
        kk: &ws.kk,
        a: &ws.a,
        kt: &ws.kt,
        v: &ws.v,
    };
    let (scans, rest) = ws.mix.split_at_mut(4 * lc);
    if ws.pack.is_empty() {
        scans
            .par_chunks_mut(l * n)
            .enumerate()
            .for_each(|(job, y)| {
                let dir = ScanDirection::ALL[job / heads];
                scan::scan_head_into(dir, h, w, c, n, job % heads, &inputs, y);
            });
    } else {
        // Row directions on the heads packed in row order, then the column directions on them
        // packed in column order (`ScanDirection::ALL` lists the two row directions first).
        let cols_pos = scan::visit_order(ScanDirection::ColsForward, h, w);
        let (row_scans, col_scans) = scans.split_at_mut(2 * heads * l * n);
        let hw = scan::PACKED * l * n;
        for (cols, part) in [(false, row_scans), (true, col_scans)] {
            scan::pack_heads(&inputs, h, w, c, n, cols, &mut ws.pack);
            let pack = &ws.pack;
            let pos = cols.then_some(cols_pos.as_slice());
            part.par_chunks_mut(l * n).enumerate().for_each(|(i, y)| {
                let dir = ScanDirection::ALL[usize::from(cols) * 2 + i / heads];
                let hd = i % heads;
                scan::scan_packed(dir, n, &pack[hd * hw..(hd + 1) * hw], pos, y);
            });
        }
    }
    let scans: Vec<&[f32]> = scans.chunks_exact(l * n).collect();
    if trace.is_some() {
        for dir in ScanDirection::ALL {
            let mut yd = vec![0.0f32; lc];
            for hd in 0..heads {
                let src = scans[dir.index() * heads + hd];
                for (yt, s) in yd.chunks_mut(c).zip(src.chunks(n)) {
                    yt[hd * n..(hd + 1) * n].copy_from_slice(s);
                }
            }
            record(trace, || pre(&format!("y{}", dir.index())), &yd);
        }
    }
    let g = &mut rest[..lc];
    let ro = ReadoutInputs {
        lnx_w: wts.lnx_w,
        lnx_b: wts.lnx_b,
        r: &ws.r,
        kt: &ws.kt,
        v: &ws.v,
        r_k: wts.r_k,
        gate: &ws.gate,
    };
    if trace.is_some() {
        let (mut y, mut y_ln) = (vec![0.0f32; lc], vec![0.0f32; lc]);
        fused::readout_into(&scans, c, n, &ro, g, Some((&mut y[..], &mut y_ln[..])));
        record(trace, || pre("y"), &y);
        record(trace, || pre("y_ln"), &y_ln);
    } else {
        fused::readout_into(&scans, c, n, &ro, g, None);
    }
    fused::linear_into(g, c, wts.w_o, c, &mut ws.out, noop);
    record(trace, || pre("out"), &ws.out);
    Ok(())
}

/// The channel mix on the normalised tokens `x`, into `ws.out`.
pub(crate) fn channel_mix_ws(
    ws: &mut Workspace,
    cfg: &ModelConfig,
    wts: &BlockWeights<'_>,
    x: &[f32],
    h: usize,
    w: usize,
) {
    let (c, n, hidden) = (cfg.dim, cfg.head_size, cfg.ffn_hidden());
    let (l, lc) = (ws.l, ws.l * ws.c);
    let (xk, rest) = ws.mix.split_at_mut(lc);
    fused::shift_mix_into(x, h, w, c, n, &[wts.ffn_mu_k], &mut [&mut *xk]);
    let kh = &mut rest[..l * hidden];
    fused::linear_into(xk, c, wts.ffn_key, hidden, kh, |_, b| {
        b.iter_mut().for_each(|v| {
            let r = v.max(0.0);
            *v = r * r;
        });
    });
    fused::linear_into(kh, hidden, wts.ffn_value, c, &mut ws.out, |_, _| {});
}

/// One block on `tokens` in place: `T += spatial_mix(ln1(T))`, `T += channel_mix(ln2(T))`;
/// `xn` is scratch (`L x C`). The block's `v` is left in `ws.v`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_ws(
    ws: &mut Workspace,
    cfg: &ModelConfig,
    wts: &BlockWeights<'_>,
    layer: usize,
    tokens: &mut [f32],
    xn: &mut [f32],
    h: usize,
    w: usize,
    v_first: Option<&[f32]>,
    trace: &mut Option<&mut Trace>,
) -> Result<(), ForwardError> {
    let c = cfg.dim;
    fused::layer_norm_into(tokens, c, wts.ln1_w, wts.ln1_b, ops::LN_EPS, xn);
    record(trace, || format!("block.{layer}.ln1"), xn);
    spatial_mix_ws(ws, cfg, wts, layer, xn, h, w, v_first, trace)?;
    fused::add_layer_norm(tokens, &ws.out, c, wts.ln2_w, wts.ln2_b, ops::LN_EPS, xn);
    channel_mix_ws(ws, cfg, wts, xn, h, w);
    record(trace, || format!("block.{layer}.ffn.out"), &ws.out);
    fused::add_in_place(tokens, &ws.out);
    Ok(())
}
