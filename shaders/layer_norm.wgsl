// LayerNorm over the C channels of each token (biased variance, eps inside the square root):
//   y = (x - mean) / sqrt(var + eps) * weight + bias.
// One thread per token, two passes (mean, then centred variance) in f32.
// Template constants: WG.

struct Params {
    m: u32,
    c: u32,
    in_off: u32,
    out_off: u32,
    w_off: u32,
    b_off: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> ws: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let t = linear_group(wg, nwg) * WG + li;
    if (t >= P.m) {
        return;
    }
    let xb = P.in_off + t * P.c;
    let yb = P.out_off + t * P.c;
    var sum = 0.0;
    for (var c = 0u; c < P.c; c++) {
        sum += xs[xb + c];
    }
    let mean = sum / f32(P.c);
    var sq = 0.0;
    for (var c = 0u; c < P.c; c++) {
        let d = xs[xb + c] - mean;
        sq = fma(d, d, sq);
    }
    let rstd = 1.0 / sqrt(sq / f32(P.c) + P.eps);
    for (var c = 0u; c < P.c; c++) {
        ys[yb + c] = (xs[xb + c] - mean) * rstd * ws[P.w_off + c] + ws[P.b_off + c];
    }
}
