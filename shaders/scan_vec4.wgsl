// The delta-rule recurrence for one scan direction, unrolled over vec4 registers (head size N a
// multiple of 4; scan.wgsl is the scalar version for other N). Same contract as scan.wgsl: one
// workgroup of N threads per (image, head), thread i owns row i of S as NV = N / 4 named vec4
// registers (generated: the lines marked GENERATED are expanded by gpu::kernels for NV).
//   sa      = S_i . (-kk)
//   S_i     = S_i * lambda + sa (kk * a) + v_i kt
//   y[p, i] = S_i . r
// Tokens are staged CHUNK at a time in workgroup memory as vec4s (two barriers per chunk).
// Template constants: N, NV = N / 4, CHUNK.

struct Params {
    height: u32,
    width: u32,
    c: u32,
    heads: u32,
    dir: u32,
    r_off: u32,
    lam_off: u32,
    kneg_off: u32,
    kb_off: u32,
    kt_off: u32,
    v_off: u32,
    y_off: u32,
    state_off: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> ins: array<f32>;
@group(0) @binding(2) var<storage, read> rbuf: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

// [token in chunk][array: r, lambda, -kk, kk*a, kt, v][NV]
var<workgroup> sh: array<vec4<f32>, CHUNK * 6u * NV>;

fn position(t: u32) -> u32 {
    let l = P.height * P.width;
    switch P.dir {
        case 0u: {
            return t;
        }
        case 1u: {
            return l - 1u - t;
        }
        case 2u: {
            return (t % P.height) * P.width + t / P.height;
        }
        default: {
            let u = l - 1u - t;
            return (u % P.height) * P.width + u / P.height;
        }
    }
}

@compute @workgroup_size(N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) i: u32) {
    let head = wg.x;
    let image = wg.y;
    let l = P.height * P.width;
    let base = image * l;
    let ch = head * N + i;
    let q = i / 4u;
    let comp = i % 4u;

    // GENERATED: state declarations

    for (var t0 = 0u; t0 < l; t0 += CHUNK) {
        let cnt = min(CHUNK, l - t0);
        for (var tt = 0u; tt < cnt; tt++) {
            let e = (base + position(t0 + tt)) * P.c + ch;
            let o = tt * 6u * NV + q;
            sh[o][comp] = rbuf[P.r_off + e];
            sh[o + NV][comp] = ins[P.lam_off + e];
            sh[o + 2u * NV][comp] = ins[P.kneg_off + e];
            sh[o + 3u * NV][comp] = ins[P.kb_off + e];
            sh[o + 4u * NV][comp] = ins[P.kt_off + e];
            sh[o + 5u * NV][comp] = ins[P.v_off + e];
        }
        workgroupBarrier();
        for (var tt = 0u; tt < cnt; tt++) {
            let o = tt * 6u * NV;
            let vi = sh[o + 5u * NV + q][comp];
            // GENERATED: sa
            // GENERATED: update
            // GENERATED: y
            ys[P.y_off + (base + position(t0 + tt)) * P.c + ch] = y;
        }
        workgroupBarrier();
    }

    let so = P.state_off + ((image * P.heads + head) * N + i) * N;
    // GENERATED: state store
}
