// The epilogue activation of the vec4 matrix products (matmul_v4.wgsl, matmul_coop.wgsl), by the
// template constant ACT: 0 none, 1 tanh (argument clamped, see helpers.wgsl), 2 sigmoid,
// 3 relu^2.

fn act(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return tanh(clamp(v, vec4<f32>(-15.0), vec4<f32>(15.0)));
    } else if (ACT == 2u) {
        return 1.0 / (1.0 + exp(-v));
    } else if (ACT == 3u) {
        let r = max(v, vec4<f32>(0.0));
        return r * r;
    }
    return v;
}
