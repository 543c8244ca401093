// Tiled matrix product over vec4 storage, batched over z:
//   Y[z] (+)= act(X[z] W[z]),  X: M x K row-major, W: K x N row-major, Y: M x N row-major,
// for K and N multiples of 4 and every offset and z-stride a multiple of 4 (the host checks and
// falls back to matmul.wgsl otherwise). Parameter block: common/matmul.wgsl.
//
// A workgroup computes a BM x BN tile with (BM / 8) x (BN / 4) threads; each thread owns 8
// consecutive rows by 4 consecutive columns (eight vec4 accumulators). Each K step stages a
// BK x BM slice of X, transposed so that a vec4 holds 4 consecutive rows at one k, and a BK x BN
// slice of W as vec4s. Per k a thread reads two X vec4s and one W vec4 for 32 multiply-adds.
// Staging: consecutive threads load consecutive rows (one vec4 of K each), so the transposed
// writes to workgroup memory fall on distinct banks.
//
// Template constants: BM (a multiple of 32), BN (a multiple of 4), BK (a multiple of 4),
// WG = (BM / 8) * (BN / 4), ACT (0 none, 1 tanh, 2 sigmoid, 3 relu^2), ACCUM (1: add the
// previous Y, for residuals).

//!include common/helpers.wgsl
//!include common/matmul.wgsl
//!include common/act_vec4.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ws: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> ys: array<vec4<f32>>;

const CV: u32 = BN / 4u;
const RQ: u32 = BM / 4u;
const KQ: u32 = BK / 4u;

// xt[kk * RQ + r / 4][r % 4] = X[m0 + r, k0 + kk]
var<workgroup> xt: array<vec4<f32>, BK * RQ>;
// wt[kk * CV + c] = W[k0 + kk, n0 + 4 c .. n0 + 4 c + 4]
var<workgroup> wt: array<vec4<f32>, BK * CV>;

fn store(row: u32, yb: u32, nq: u32, c: u32, v: vec4<f32>) {
    if (row < P.m) {
        let o = yb + row * nq + c;
        var r = act(v);
        if (ACCUM == 1u) {
            r += ys[o];
        }
        ys[o] = r;
    }
}

@compute @workgroup_size(WG)
fn main(id: Launch) {
    let tile = linear_group(id.wg, id.nwg);
    if (tile >= P.tiles) {
        return;
    }
    let z = id.wg.z;
    let m0 = (tile / P.tiles_n) * BM;
    let n0q = (tile % P.tiles_n) * CV;
    let li = id.li;
    let tx = li % CV;
    let ty = li / CV;
    let kq = P.k / 4u;
    let nq = P.n / 4u;
    let xb = (P.x_off + z * P.x_zs) / 4u;
    let wb = (P.w_off + z * P.w_zs) / 4u;

    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);

    for (var k0q = 0u; k0q < kq; k0q += KQ) {
        // X: BM rows x KQ vec4s; thread idx -> row idx % BM, k-quad idx / BM
        for (var idx = li; idx < BM * KQ; idx += WG) {
            let r = idx % BM;
            let q = idx / BM;
            var v = vec4<f32>(0.0);
            if (m0 + r < P.m && k0q + q < kq) {
                v = xs[xb + (m0 + r) * kq + k0q + q];
            }
            let o = 4u * q * RQ + r / 4u;
            let c = r % 4u;
            xt[o][c] = v.x;
            xt[o + RQ][c] = v.y;
            xt[o + 2u * RQ][c] = v.z;
            xt[o + 3u * RQ][c] = v.w;
        }
        // W: BK rows x CV vec4s
        for (var idx = li; idx < BK * CV; idx += WG) {
            let kk = idx / CV;
            let c = idx % CV;
            var v = vec4<f32>(0.0);
            if (4u * k0q + kk < P.k && n0q + c < nq) {
                v = ws[wb + (4u * k0q + kk) * nq + n0q + c];
            }
            wt[idx] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let b = wt[kk * CV + tx];
            let x0 = xt[kk * RQ + 2u * ty];
            let x1 = xt[kk * RQ + 2u * ty + 1u];
            a0 = fma(vec4<f32>(x0.x), b, a0);
            a1 = fma(vec4<f32>(x0.y), b, a1);
            a2 = fma(vec4<f32>(x0.z), b, a2);
            a3 = fma(vec4<f32>(x0.w), b, a3);
            a4 = fma(vec4<f32>(x1.x), b, a4);
            a5 = fma(vec4<f32>(x1.y), b, a5);
            a6 = fma(vec4<f32>(x1.z), b, a6);
            a7 = fma(vec4<f32>(x1.w), b, a7);
        }
        workgroupBarrier();
    }

    if (n0q + tx >= nq) {
        return;
    }
    let yb = (P.y_off + z * P.y_zs) / 4u;
    let c = n0q + tx;
    let r0 = m0 + 8u * ty;
    store(r0, yb, nq, c, a0);
    store(r0 + 1u, yb, nq, c, a1);
    store(r0 + 2u, yb, nq, c, a2);
    store(r0 + 3u, yb, nq, c, a3);
    store(r0 + 4u, yb, nq, c, a4);
    store(r0 + 5u, yb, nq, c, a5);
    store(r0 + 6u, yb, nq, c, a6);
    store(r0 + 7u, yb, nq, c, a7);
}
