// 2-D token shift fused with the interpolations x_z = x + (xs - x) * mu_z, z < NMIX.
// For channel c with j = c mod N and q = floor(4 j / N), xs is x at the left (q = 0), right
// (q = 1), upper (q = 2) or lower (q = 3) neighbour, 0 outside the image.
// Input and outputs are B x H x W x C tokens; output z starts at out_off + z * out_zs; the mu
// vectors are NMIX consecutive C-vectors at mu_off.
// Template constants: WG, NMIX.

//!include common/helpers.wgsl
//!include common/io_xwy.wgsl

struct Params {
    total: u32,
    height: u32,
    width: u32,
    c: u32,
    n: u32,
    in_off: u32,
    out_off: u32,
    out_zs: u32,
    mu_off: u32,
}

@compute @workgroup_size(WG)
fn main(id: Launch) {
    let e = linear_group(id.wg, id.nwg) * WG + id.li;
    if (e >= P.total) {
        return;
    }
    let c = e % P.c;
    let tok = e / P.c;
    let p = tok % (P.height * P.width);
    let row = p / P.width;
    let col = p % P.width;
    let q = (4u * (c % P.n)) / P.n;
    let x = xs[P.in_off + e];
    var s = 0.0;
    if (q == 0u) {
        if (col > 0u) {
            s = xs[P.in_off + e - P.c];
        }
    } else if (q == 1u) {
        if (col + 1u < P.width) {
            s = xs[P.in_off + e + P.c];
        }
    } else if (q == 2u) {
        if (row > 0u) {
            s = xs[P.in_off + e - P.width * P.c];
        }
    } else {
        if (row + 1u < P.height) {
            s = xs[P.in_off + e + P.width * P.c];
        }
    }
    let d = s - x;
    for (var z = 0u; z < NMIX; z++) {
        ys[P.out_off + z * P.out_zs + e] = x + d * ws[P.mu_off + z * P.c + c];
    }
}
