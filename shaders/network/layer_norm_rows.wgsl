// LayerNorm over the C channels of each token (biased variance, eps inside the square root):
//   y = (x - mean) / sqrt(var + eps) * weight + bias,
// with coalesced accesses: one row of R threads per token, ROWS tokens per workgroup. Lane l of a
// row holds channels l, l + R, ..., l + (K - 1) R of its token in registers (K * R >= C), so
// neighbouring threads touch neighbouring addresses; the channels are read once and written once.
// Mean, then centred variance, each by a tree reduction in workgroup memory within the row (no
// subgroup operations). Values are shifted by the token's first channel before summing (exact
// for values within a factor of 2 of it), so a large common offset costs no precision in f32.
// Template constants: R (a power of 2), ROWS, WG = R * ROWS, K.

//!include common/helpers.wgsl
//!include common/layer_norm.wgsl

var<workgroup> red: array<f32, WG>;

// Sum of `v` over the R lanes of row `row` (every invocation of the workgroup must call it).
fn row_sum(li: u32, lane: u32, row: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var h = R / 2u; h > 0u; h = h / 2u) {
        if (lane < h) {
            red[li] = red[li] + red[li + h];
        }
        workgroupBarrier();
    }
    let s = red[row * R];
    // Every lane has read the total before `red` is reused.
    workgroupBarrier();
    return s;
}

@compute @workgroup_size(WG)
fn main(id: Launch) {
    let li = id.li;
    let lane = li % R;
    let row = li / R;
    let t = linear_group(id.wg, id.nwg) * ROWS + row;
    let valid = t < P.m;
    let xb = P.in_off + t * P.c;
    let yb = P.out_off + t * P.c;

    // Shifted values x - x[0] (0 for missing channels and tokens past the end).
    var v: array<f32, K>;
    var pivot = 0.0;
    if (valid) {
        pivot = xs[xb];
    }
    var s = 0.0;
    for (var k = 0u; k < K; k++) {
        let c = lane + k * R;
        var x = 0.0;
        if (valid && c < P.c) {
            x = xs[xb + c] - pivot;
        }
        v[k] = x;
        s += x;
    }
    let mean = row_sum(li, lane, row, s) / f32(P.c);

    var q = 0.0;
    for (var k = 0u; k < K; k++) {
        var d = 0.0;
        if (lane + k * R < P.c) {
            d = v[k] - mean;
        }
        v[k] = d;
        q = fma(d, d, q);
    }
    let rstd = 1.0 / sqrt(row_sum(li, lane, row, q) / f32(P.c) + P.eps);

    if (!valid) {
        return;
    }
    for (var k = 0u; k < K; k++) {
        let c = lane + k * R;
        if (c < P.c) {
            ys[yb + c] = v[k] * rstd * ws[P.w_off + c] + ws[P.b_off + c];
        }
    }
}
