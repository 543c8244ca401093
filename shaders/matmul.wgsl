// Tiled matrix product with register blocking, batched over z:
//   Y[z] (+)= act(X[z] W[z]),  X: M x K row-major, W: K x N row-major, Y: M x N row-major.
// PyTorch linear weights ([out, in], y = x W^T) are transposed to K x N when the checkpoint is
// uploaded (gpu::weights), LoRA matrices are used as written.
//
// A workgroup computes a BM x BN tile; each K step stages a BM x BK slice of X (transposed) and a
// BK x BN slice of W in workgroup memory; each thread keeps TM x TN accumulators in registers,
// rows ty + i * (BM / TM) and columns tx + j * (BN / TN) (strided: conflict-free reads, coalesced
// writes).
//
// Template constants: BM, BN, BK, TM, TN, WG = (BM / TM) * (BN / TN), ACC = TM * TN,
// ACT (0 none, 1 tanh, 2 sigmoid, 3 relu^2), ACCUM (1: add the previous Y, for residuals).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    x_off: u32,
    x_zs: u32,
    w_off: u32,
    w_zs: u32,
    y_off: u32,
    y_zs: u32,
    tiles_n: u32,
    tiles: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> ws: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;

var<workgroup> xt: array<f32, BK * BM>;
var<workgroup> wt: array<f32, BK * BN>;

const RS: u32 = BM / TM;
const CS: u32 = BN / TN;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tile = linear_group(wg, nwg);
    if (tile >= P.tiles) {
        return;
    }
    let z = wg.z;
    let m0 = (tile / P.tiles_n) * BM;
    let n0 = (tile % P.tiles_n) * BN;
    let tx = li % CS;
    let ty = li / CS;
    let xb = P.x_off + z * P.x_zs;
    let wb = P.w_off + z * P.w_zs;

    var acc: array<f32, ACC>;
    for (var i = 0u; i < ACC; i++) {
        acc[i] = 0.0;
    }

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
        for (var idx = li; idx < BK * BN; idx += WG) {
            let kk = idx / BN;
            let c = idx % BN;
            var v = 0.0;
            if (k0 + kk < P.k && n0 + c < P.n) {
                v = ws[wb + (k0 + kk) * P.n + n0 + c];
            }
            wt[idx] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, TM>;
            var bv: array<f32, TN>;
            for (var i = 0u; i < TM; i++) {
                a[i] = xt[kk * BM + ty + i * RS];
            }
            for (var j = 0u; j < TN; j++) {
                bv[j] = wt[kk * BN + tx + j * CS];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = fma(a[i], bv[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }

    let yb = P.y_off + z * P.y_zs;
    for (var i = 0u; i < TM; i++) {
        let row = m0 + ty + i * RS;
        if (row >= P.m) {
            continue;
        }
        for (var j = 0u; j < TN; j++) {
            let col = n0 + tx + j * CS;
            if (col >= P.n) {
                continue;
            }
            var v = acc[i * TN + j];
            if (ACT == 1u) {
                v = tanh_safe(v);
            } else if (ACT == 2u) {
                v = sigmoid(v);
            } else if (ACT == 3u) {
                let r = max(v, 0.0);
                v = r * r;
            }
            let o = yb + row * P.n + col;
            if (ACCUM == 1u) {
                v += ys[o];
            }
            ys[o] = v;
        }
    }
}
