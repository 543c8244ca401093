// The staging of the vec4 scans (scan_vec4.wgsl, scan_sg.wgsl): each token's six values in
// workgroup memory as vec4s over the head's channels, double-buffered chunks of CHUNK tokens,
// loaded into registers one chunk ahead.

// [buffer][token in chunk][array: r, lambda, -kk, kk*a, kt, v][NV]
var<workgroup> sh: array<vec4<f32>, 2u * CHUNK * 6u * NV>;

// The six staged values of element e: r, lambda, -kk, kk * a, kt, v.
fn token_values(e: u32) -> array<f32, 6> {
    return array<f32, 6>(
        rbuf[P.r_off + e],
        ins[P.lam_off + e],
        ins[P.kneg_off + e],
        ins[P.kb_off + e],
        ins[P.kt_off + e],
        ins[P.v_off + e],
    );
}

// Writes one token's six values `v` into component `comp` of its six vec4 slots from `o`.
fn stage(o: u32, comp: u32, v: array<f32, 6>) {
    sh[o][comp] = v[0];
    sh[o + NV][comp] = v[1];
    sh[o + 2u * NV][comp] = v[2];
    sh[o + 3u * NV][comp] = v[3];
    sh[o + 4u * NV][comp] = v[4];
    sh[o + 5u * NV][comp] = v[5];
}
