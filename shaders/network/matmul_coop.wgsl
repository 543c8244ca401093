enable f16;
enable wgpu_cooperative_matrix;

// Tiled matrix product on tensor cores (cooperative matrices: f16 inputs, f32 accumulation),
// batched over z, the same product and epilogue as matmul_v4.wgsl:
//   Y[z] (+)= act(X[z] W[z]),  X: M x K row-major, W: K x N row-major, Y: M x N row-major (f32),
// for K a multiple of 16, N a multiple of 4 and every offset and z-stride a multiple of 4 (the
// host checks, and uses it only on devices with 16x16x16 f16 -> f32 cooperative matrices and a
// fixed subgroup size). Parameter block: common/matmul.wgsl.
//
// A workgroup of 4 subgroups (WG = 4 x the subgroup size) computes a BM x BN tile, BM = 64 and
// BN = 16 NJ: subgroup s owns rows 16 s .. 16 s + 16 and keeps one 16 x 16 f32 accumulator per
// 16 columns (c0 .. c5, NJ of them used). Each K step of 16 stages the 64 x 16 slice of X and the
// 16 x BN slice of W in workgroup memory as f16 (values beyond the f16 range clamped to
// +-65504; rows past M and columns past N are zero), then every subgroup loads its A tile and
// multiplies it with each B tile. The accumulators go through workgroup memory for the
// epilogue (activation, residual add), stored as vec4s. Cooperative operations need uniform
// control flow: every subgroup runs the same loops (its subgroup id only picks addresses).
//
// Template constants: NJ (1 ..= 6), WG (= 4 x subgroup size), ACT (0 none, 1 tanh, 2 sigmoid,
// 3 relu^2), ACCUM (1: add the previous Y).

//!include common/helpers.wgsl
//!include common/matmul.wgsl
//!include common/act_vec4.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ws: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> ys: array<vec4<f32>>;

const BM: u32 = 64u;
const BK: u32 = 16u;
const BN: u32 = 16u * NJ;
const KQ: u32 = BK / 4u;
const CV: u32 = BN / 4u;
const F16_MAX: f32 = 65504.0;

// xh[r * BK + kk] = X[m0 + r, k0 + kk]
var<workgroup> xh: array<f16, BM * BK>;
// wh[kk * BN + c] = W[k0 + kk, n0 + c]
var<workgroup> wh: array<f16, BK * BN>;
// yt[r * BN + c]: the tile's product before the epilogue
var<workgroup> yt: array<f32, BM * BN>;

fn half4(v: vec4<f32>) -> vec4<f16> {
    return vec4<f16>(clamp(v, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX)));
}

@compute @workgroup_size(WG)
fn main(id: Launch, @builtin(subgroup_id) sg: u32) {
    // Workgroups past the last tile (the grid is spread over x and y) recompute the last tile
    // and store nothing: an early return would leave the cooperative operations in non-uniform
    // control flow.
    let live = linear_group(id.wg, id.nwg) < P.tiles;
    let tile = min(linear_group(id.wg, id.nwg), P.tiles - 1u);
    let z = id.wg.z;
    let m0 = (tile / P.tiles_n) * BM;
    let n0q = (tile % P.tiles_n) * CV;
    let li = id.li;
    let kq = P.k / 4u;
    let nq = P.n / 4u;
    let xb = (P.x_off + z * P.x_zs) / 4u;
    let wb = (P.w_off + z * P.w_zs) / 4u;
    // this subgroup's 16 rows, in xh and in yt
    let arow = sg * 16u * BK;
    let yrow = sg * 16u * BN;

    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();
    var c2 = coop_mat16x16<f32, C>();
    var c3 = coop_mat16x16<f32, C>();
    var c4 = coop_mat16x16<f32, C>();
    var c5 = coop_mat16x16<f32, C>();

    for (var k0q = 0u; k0q < kq; k0q += KQ) {
        // X: BM rows x KQ vec4s
        for (var idx = li; idx < BM * KQ; idx += WG) {
            let r = idx / KQ;
            let q = idx % KQ;
            var v = vec4<f32>(0.0);
            if (m0 + r < P.m) {
                v = xs[xb + (m0 + r) * kq + k0q + q];
            }
            let h = half4(v);
            let o = r * BK + 4u * q;
            xh[o] = h.x;
            xh[o + 1u] = h.y;
            xh[o + 2u] = h.z;
            xh[o + 3u] = h.w;
        }
        // W: BK rows x CV vec4s
        for (var idx = li; idx < BK * CV; idx += WG) {
            let kk = idx / CV;
            let c = idx % CV;
            var v = vec4<f32>(0.0);
            if (n0q + c < nq) {
                v = ws[wb + (4u * k0q + kk) * nq + n0q + c];
            }
            let h = half4(v);
            let o = kk * BN + 4u * c;
            wh[o] = h.x;
            wh[o + 1u] = h.y;
            wh[o + 2u] = h.z;
            wh[o + 3u] = h.w;
        }
        workgroupBarrier();
        let a = coopLoadT<coop_mat16x16<f16, A>>(&xh[arow], BK);
        c0 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&wh[0u], BN), c0);
        if (NJ > 1u) {
            c1 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&wh[16u], BN), c1);
        }
        if (NJ > 2u) {
            c2 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&wh[32u], BN), c2);
        }
        if (NJ > 3u) {
            c3 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&wh[48u], BN), c3);
        }
        if (NJ > 4u) {
            c4 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&wh[64u], BN), c4);
        }
        if (NJ > 5u) {
            c5 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&wh[80u], BN), c5);
        }
        workgroupBarrier();
    }

    coopStoreT(c0, &yt[yrow], BN);
    if (NJ > 1u) {
        coopStoreT(c1, &yt[yrow + 16u], BN);
    }
    if (NJ > 2u) {
        coopStoreT(c2, &yt[yrow + 32u], BN);
    }
    if (NJ > 3u) {
        coopStoreT(c3, &yt[yrow + 48u], BN);
    }
    if (NJ > 4u) {
        coopStoreT(c4, &yt[yrow + 64u], BN);
    }
    if (NJ > 5u) {
        coopStoreT(c5, &yt[yrow + 80u], BN);
    }
    workgroupBarrier();

    let yb = (P.y_off + z * P.y_zs) / 4u;
    for (var idx = li; idx < BM * CV; idx += WG) {
        let r = idx / CV;
        let c = idx % CV;
        if (live && m0 + r < P.m && n0q + c < nq) {
            let t = r * BN + 4u * c;
            let o = yb + (m0 + r) * nq + n0q + c;
            var v = act(vec4<f32>(yt[t], yt[t + 1u], yt[t + 2u], yt[t + 3u]));
            if (ACCUM == 1u) {
                v += ys[o];
            }
            ys[o] = v;
        }
    }
}
