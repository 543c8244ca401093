// Spec steps 10-12 and the gate of step 13, fused: y = y_0 + y_1 + y_2 + y_3 (the four scan
// directions), GroupNorm per head per token (biased variance, eps), bonus term
// (sum_j r_j kt_j r_k[head, j]) v, times the gate. One row of N threads per (token, head).
//
// Inputs (offsets in elements): ydir: y_d at y_off + d * y_zs; ins: kt, v; rbuf: r; gate;
// wts: r_k [H, N], ln_x weight and bias. Output: (GroupNorm(y) + bonus) * gate, M x C.
// Template constants: N, ROWS, WG = N * ROWS.

//!include common/helpers.wgsl
//!include common/head_rows.wgsl

struct Params {
    pairs: u32,
    c: u32,
    heads: u32,
    y_off: u32,
    y_zs: u32,
    kt_off: u32,
    v_off: u32,
    r_off: u32,
    g_off: u32,
    rk_off: u32,
    gw_off: u32,
    gb_off: u32,
    out_off: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> ydir: array<f32>;
@group(0) @binding(2) var<storage, read> ins: array<f32>;
@group(0) @binding(3) var<storage, read> rbuf: array<f32>;
@group(0) @binding(4) var<storage, read> gate: array<f32>;
@group(0) @binding(5) var<storage, read> wts: array<f32>;
@group(0) @binding(6) var<storage, read_write> outs: array<f32>;

var<workgroup> sy: array<f32, WG>;
var<workgroup> sb: array<f32, WG>;
// per row: mean, 1 / std, bonus
var<workgroup> stats: array<f32, ROWS * 3u>;

@compute @workgroup_size(WG)
fn main(id: Launch) {
    let h = head_row(id);

    var y = 0.0;
    var bonus = 0.0;
    if (h.valid) {
        y = ydir[P.y_off + h.e] + ydir[P.y_off + P.y_zs + h.e];
        y = y + ydir[P.y_off + 2u * P.y_zs + h.e];
        y = y + ydir[P.y_off + 3u * P.y_zs + h.e];
        bonus = rbuf[P.r_off + h.e] * ins[P.kt_off + h.e] * wts[P.rk_off + h.c];
    }
    sy[id.li] = y;
    sb[id.li] = bonus;
    workgroupBarrier();
    if (h.lane == 0u) {
        var s = 0.0;
        var b = 0.0;
        for (var j = 0u; j < N; j++) {
            s += sy[h.row * N + j];
            b += sb[h.row * N + j];
        }
        let mean = s / f32(N);
        var q = 0.0;
        for (var j = 0u; j < N; j++) {
            let d = sy[h.row * N + j] - mean;
            q = fma(d, d, q);
        }
        stats[h.row * 3u] = mean;
        stats[h.row * 3u + 1u] = 1.0 / sqrt(q / f32(N) + P.eps);
        stats[h.row * 3u + 2u] = b;
    }
    workgroupBarrier();
    if (!h.valid) {
        return;
    }
    let yn = (y - stats[h.row * 3u]) * stats[h.row * 3u + 1u] * wts[P.gw_off + h.c] + wts[P.gb_off + h.c];
    outs[P.out_off + h.e] = (yn + stats[h.row * 3u + 2u] * ins[P.v_off + h.e]) * gate[P.g_off + h.e];
}
