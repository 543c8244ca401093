// The parameter block and bindings of both LayerNorms (layer_norm.wgsl, layer_norm_rows.wgsl):
// M tokens of C channels from xs at in_off to ys at out_off, weight and bias in ws at w_off, b_off.

//!include common/io_xwy.wgsl

struct Params {
    m: u32,
    c: u32,
    in_off: u32,
    out_off: u32,
    w_off: u32,
    b_off: u32,
    eps: f32,
}
