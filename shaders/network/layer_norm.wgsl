// LayerNorm over the C channels of each token (biased variance, eps inside the square root):
//   y = (x - mean) / sqrt(var + eps) * weight + bias.
// One thread per token, two passes (mean, then centred variance) in f32.
// Template constants: WG.

//!include common/helpers.wgsl
//!include common/layer_norm.wgsl

@compute @workgroup_size(WG)
fn main(id: Launch) {
    let t = linear_group(id.wg, id.nwg) * WG + id.li;
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
