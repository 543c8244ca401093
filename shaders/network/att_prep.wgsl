// The elementwise part of the spatial mix, fused (spec steps 4-8): decay, in-context learning rate,
// value residual, removal and replacement keys. One row of N threads per (token, head), ROWS rows
// per workgroup; the L2 norm of the removal key is reduced in workgroup memory.
//
// Inputs (offsets in elements):
//   proj: k at k_off, v at v_off (M x C each, the projections)
//   lora: w_up at wu_off, a_up at au_off, v_up at vu_off (M x C, outputs of the LoRA up matrices)
//   wts:  w0, a0, v0, k_k, k_a (C-vectors)
//   vfirst: M x C, written in block 0 (FIRST = 1), read in later blocks
// Outputs in `outs` (M x C each): lambda, -kk, kk * a, kt, v (after the value residual).
//
// Template constants: N (head size), ROWS, WG = N * ROWS, FIRST.

//!include common/helpers.wgsl
//!include common/head_rows.wgsl

struct Params {
    pairs: u32,
    c: u32,
    heads: u32,
    k_off: u32,
    v_off: u32,
    wu_off: u32,
    au_off: u32,
    vu_off: u32,
    w0_off: u32,
    a0_off: u32,
    v0_off: u32,
    kk_off: u32,
    ka_off: u32,
    lam_off: u32,
    kneg_off: u32,
    kb_off: u32,
    kt_off: u32,
    vo_off: u32,
    vf_off: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> proj: array<f32>;
@group(0) @binding(2) var<storage, read> lora: array<f32>;
@group(0) @binding(3) var<storage, read> wts: array<f32>;
@group(0) @binding(4) var<storage, read_write> outs: array<f32>;
@group(0) @binding(5) var<storage, read_write> vfirst: array<f32>;

var<workgroup> sq: array<f32, WG>;
var<workgroup> tot: array<f32, ROWS>;

// exp(-0.5)
const DECAY_SCALE: f32 = 0.6065306597126334;

@compute @workgroup_size(WG)
fn main(id: Launch) {
    let h = head_row(id);

    var k = 0.0;
    var kr = 0.0;
    if (h.valid) {
        k = proj[P.k_off + h.e];
        kr = k * wts[P.kk_off + h.c];
    }
    sq[id.li] = kr * kr;
    workgroupBarrier();
    if (h.lane == 0u) {
        var s = 0.0;
        for (var j = 0u; j < N; j++) {
            s += sq[h.row * N + j];
        }
        tot[h.row] = s;
    }
    workgroupBarrier();
    if (!h.valid) {
        return;
    }
    let kk = kr / max(sqrt(tot[h.row]), 1e-12);
    let lam = exp(-DECAY_SCALE * sigmoid(wts[P.w0_off + h.c] + lora[P.wu_off + h.e]));
    let a = sigmoid(wts[P.a0_off + h.c] + lora[P.au_off + h.e]);
    let kt = k * (1.0 + (a - 1.0) * wts[P.ka_off + h.c]);
    var v = proj[P.v_off + h.e];
    if (FIRST == 1u) {
        vfirst[P.vf_off + h.e] = v;
    } else {
        let g = sigmoid(wts[P.v0_off + h.c] + lora[P.vu_off + h.e]);
        v = v + (vfirst[P.vf_off + h.e] - v) * g;
    }
    outs[P.lam_off + h.e] = lam;
    outs[P.kneg_off + h.e] = -kk;
    outs[P.kb_off + h.e] = kk * a;
    outs[P.kt_off + h.e] = kt;
    outs[P.vo_off + h.e] = v;
}
