// Tiled matrix product with register blocking, batched over z:
//   Y[z] (+)= act(X[z] W[z]),  X: M x K row-major, W: K x N row-major, Y: M x N row-major.
// PyTorch linear weights ([out, in], y = x W^T) are transposed to K x N when the checkpoint is
// uploaded (gpu::weights), LoRA matrices are used as written.
//
// A workgroup computes a BM x BN tile with (BM / 4) x (BN / 4) threads; each K step stages a
// BM x BK slice of X (transposed) and a BK x BN slice of W (as vec4s) in workgroup memory. Each
// thread accumulates 4 rows (ty + i * BM / 4, strided) by 4 consecutive columns in four vec4
// registers: one vec4 load of W and four scalar loads of X per 16 multiply-adds.
//
// Template constants: BM, BN, BK (BN a multiple of 4), WG = (BM / 4) * (BN / 4),
// ACT (0 none, 1 tanh, 2 sigmoid, 3 relu^2), ACCUM (1: add the previous Y, for residuals).

//!include common/helpers.wgsl
//!include common/matmul.wgsl
//!include common/io_xwy.wgsl

const RS: u32 = BM / 4u;
const CV: u32 = BN / 4u;

var<workgroup> xt: array<f32, BK * BM>;
var<workgroup> wt: array<vec4<f32>, BK * CV>;

fn act(v: f32) -> f32 {
    if (ACT == 1u) {
        return tanh_safe(v);
    } else if (ACT == 2u) {
        return sigmoid(v);
    } else if (ACT == 3u) {
        let r = max(v, 0.0);
        return r * r;
    }
    return v;
}

fn store_row(row: u32, col0: u32, yb: u32, v: vec4<f32>) {
    if (row >= P.m) {
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        let col = col0 + c;
        if (col < P.n) {
            let o = yb + row * P.n + col;
            var r = act(v[c]);
            if (ACCUM == 1u) {
                r += ys[o];
            }
            ys[o] = r;
        }
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
    let n0 = (tile % P.tiles_n) * BN;
    let li = id.li;
    let tx = li % CV;
    let ty = li / CV;
    let xb = P.x_off + z * P.x_zs;
    let wb = P.w_off + z * P.w_zs;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < P.k; k0 += BK) {
        for (var idx = li; idx < BM * BK; idx += WG) {
            let r = idx / BK;
            let kk = idx % BK;
            var v = 0.0;
            if (m0 + r < P.m && k0 + kk < P.k) {
                v = xs[xb + (m0 + r) * P.k + k0 + kk];
            }
            xt[kk * BM + r] = v;
        }
        for (var idx = li; idx < BK * CV; idx += WG) {
            let kk = idx / CV;
            let c = n0 + (idx % CV) * 4u;
            var v = vec4<f32>(0.0);
            if (k0 + kk < P.k) {
                let base = wb + (k0 + kk) * P.n;
                if (c + 3u < P.n) {
                    v = vec4<f32>(ws[base + c], ws[base + c + 1u], ws[base + c + 2u], ws[base + c + 3u]);
                } else {
                    for (var j = 0u; j < 4u; j++) {
                        if (c + j < P.n) {
                            v[j] = ws[base + c + j];
                        }
                    }
                }
            }
            wt[idx] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let b = wt[kk * CV + tx];
            let xr = kk * BM + ty;
            acc0 = fma(vec4<f32>(xt[xr]), b, acc0);
            acc1 = fma(vec4<f32>(xt[xr + RS]), b, acc1);
            acc2 = fma(vec4<f32>(xt[xr + 2u * RS]), b, acc2);
            acc3 = fma(vec4<f32>(xt[xr + 3u * RS]), b, acc3);
        }
        workgroupBarrier();
    }

    let yb = P.y_off + z * P.y_zs;
    let col0 = n0 + tx * 4u;
    store_row(m0 + ty, col0, yb, acc0);
    store_row(m0 + ty + RS, col0, yb, acc1);
    store_row(m0 + ty + 2u * RS, col0, yb, acc2);
    store_row(m0 + ty + 3u * RS, col0, yb, acc3);
}
