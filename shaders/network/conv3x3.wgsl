// 3x3 convolution, zero padding 1, bias, on NHWC images (the token layout: pixel (y, x) of image b
// holds its channels contiguously at ((b * H + y) * W + x) * C).
//
// Implicit GEMM: a workgroup computes a TH x TW pixel tile for CO_T output channels. For each
// chunk of CI_T input channels it stages the (TH+2) x (TW+2) input halo and the 9 x CI_T x CO_T
// weights in workgroup memory; each thread accumulates PX_PT pixels x CO_PT channels in registers.
//
// Weights are packed [tap = ky * 3 + kx][c_in][c_out] (see gpu::weights), bias [c_out].
// Epilogue options (template constants): ACCUM adds the previous destination value (residual),
// LEAKY applies LeakyReLU(slope), SHUFFLE writes through PixelShuffle(2) (c_out = 4 * c).
//
// Template constants: TW, TH, CI_T, CO_T, PX_PT, CO_PT, NPG = TW*TH/PX_PT, NCG = CO_T/CO_PT,
// WG = NPG*NCG, IN_TILE = (TH+2)*(TW+2)*CI_T, W_TILE = 9*CI_T*CO_T, ACC = PX_PT*CO_PT,
// ACCUM, LEAKY, SHUFFLE (0 or 1).

//!include common/helpers.wgsl

struct Params {
    batch: u32,
    height: u32,
    width: u32,
    cin: u32,
    cout: u32,
    in_off: u32,
    w_off: u32,
    b_off: u32,
    out_off: u32,
    tiles_x: u32,
    tiles_y: u32,
    co_tiles: u32,
    slope: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> wts: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

var<workgroup> xin: array<f32, IN_TILE>;
var<workgroup> win: array<f32, W_TILE>;

@compute @workgroup_size(WG)
fn main(id: Launch) {
    let tile = linear_group(id.wg, id.nwg);
    if (tile >= P.tiles_x * P.tiles_y) {
        return;
    }
    let li = id.li;
    let b = id.wg.z / P.co_tiles;
    let cot = id.wg.z % P.co_tiles;
    let ty0 = (tile / P.tiles_x) * TH;
    let tx0 = (tile % P.tiles_x) * TW;
    let co0 = cot * CO_T;
    let pg = li / NCG;
    let cg = li % NCG;

    var acc: array<f32, ACC>;
    for (var i = 0u; i < ACC; i++) {
        acc[i] = 0.0;
    }

    for (var ci0 = 0u; ci0 < P.cin; ci0 += CI_T) {
        for (var idx = li; idx < IN_TILE; idx += WG) {
            let c = idx % CI_T;
            let pix = idx / CI_T;
            let gy = i32(ty0 + pix / (TW + 2u)) - 1;
            let gx = i32(tx0 + pix % (TW + 2u)) - 1;
            var v = 0.0;
            if (gy >= 0 && gy < i32(P.height) && gx >= 0 && gx < i32(P.width) && ci0 + c < P.cin) {
                v = src[P.in_off + ((b * P.height + u32(gy)) * P.width + u32(gx)) * P.cin + ci0 + c];
            }
            xin[idx] = v;
        }
        for (var idx = li; idx < W_TILE; idx += WG) {
            let co = idx % CO_T;
            let c = (idx / CO_T) % CI_T;
            let tap = idx / (CO_T * CI_T);
            var v = 0.0;
            if (ci0 + c < P.cin && co0 + co < P.cout) {
                v = wts[P.w_off + (tap * P.cin + ci0 + c) * P.cout + co0 + co];
            }
            win[idx] = v;
        }
        workgroupBarrier();
        for (var c = 0u; c < CI_T; c++) {
            for (var tap = 0u; tap < 9u; tap++) {
                let ky = tap / 3u;
                let kx = tap % 3u;
                var wv: array<f32, CO_PT>;
                for (var j = 0u; j < CO_PT; j++) {
                    wv[j] = win[(tap * CI_T + c) * CO_T + cg + j * NCG];
                }
                for (var i = 0u; i < PX_PT; i++) {
                    let p = pg + i * NPG;
                    let xv = xin[((p / TW + ky) * (TW + 2u) + p % TW + kx) * CI_T + c];
                    for (var j = 0u; j < CO_PT; j++) {
                        acc[i * CO_PT + j] = fma(xv, wv[j], acc[i * CO_PT + j]);
                    }
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < PX_PT; i++) {
        let p = pg + i * NPG;
        let y = ty0 + p / TW;
        let x = tx0 + p % TW;
        if (y >= P.height || x >= P.width) {
            continue;
        }
        for (var j = 0u; j < CO_PT; j++) {
            let co = co0 + cg + j * NCG;
            if (co >= P.cout) {
                continue;
            }
            var v = acc[i * CO_PT + j] + wts[P.b_off + co];
            var o: u32;
            if (SHUFFLE == 1u) {
                let cs = P.cout / 4u;
                let c = co / 4u;
                let si = (co / 2u) % 2u;
                let sj = co % 2u;
                o = P.out_off + ((b * 2u * P.height + 2u * y + si) * 2u * P.width + 2u * x + sj) * cs + c;
            } else {
                o = P.out_off + ((b * P.height + y) * P.width + x) * P.cout + co;
            }
            if (ACCUM == 1u) {
                v += dst[o];
            }
            if (LEAKY == 1u) {
                v = select(v * P.slope, v, v >= 0.0);
            }
            dst[o] = v;
        }
    }
}
