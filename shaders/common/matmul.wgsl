// The parameter block of both matrix products (matmul.wgsl, matmul_v4.wgsl; offsets and
// z-strides in f32 elements): Y[z] at y_off + z * y_zs (+)= act(X[z] W[z]), X[z] (M x K) at
// x_off + z * x_zs, W[z] (K x N) at w_off + z * w_zs; tiles = tiles along M x tiles_n.

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
