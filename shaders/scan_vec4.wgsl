// The delta-rule recurrence, unrolled over vec4 registers (head size N a multiple of 4; scan.wgsl
// is the scalar version for other N). Same contract as scan.wgsl: one workgroup of N threads per
// (image, head[, direction]), thread i owns row i of S as NV = N / 4 named vec4 registers
// (generated: the lines marked GENERATED are expanded by gpu::kernels for NV).
//   sa      = S_i . (-kk)
//   S_i     = S_i * lambda + sa (kk * a) + v_i kt
//   y[p, i] = S_i . r
// Tokens are staged CHUNK at a time in workgroup memory (as vec4s), double-buffered with one
// barrier per chunk; each thread loads the next chunk's values (its own channel) into registers
// before it computes the current chunk, so the global-memory latency overlaps the recurrence.
// DIRS = 1: one direction per dispatch (P.dir), grid (heads, images, 1). DIRS = 4: the four
// directions in one dispatch, grid (heads, images, 4), direction d writing y at
// y_off + d * y_ds and its state at state_off + d * s_ds.
// Template constants: N, NV = N / 4, CHUNK, DIRS.

// Params, bindings and position(): scan_common.wgsl.

// [buffer][token in chunk][array: r, lambda, -kk, kk*a, kt, v][NV]
var<workgroup> sh: array<vec4<f32>, 2u * CHUNK * 6u * NV>;

@compute @workgroup_size(N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) i: u32) {
    let head = wg.x;
    let image = wg.y;
    var dir = P.dir;
    if (DIRS == 4u) {
        dir = wg.z;
    }
    let y_off = P.y_off + dir * P.y_ds;
    let l = P.height * P.width;
    let base = image * l;
    let ch = head * N + i;
    let q = i / 4u;
    let comp = i % 4u;

    // GENERATED: state declarations

    // this thread's channel of the next chunk: [token][r, lambda, -kk, kk*a, kt, v]
    var pre: array<f32, CHUNK * 6u>;
    for (var tt = 0u; tt < CHUNK; tt++) {
        let e = (base + position(dir, min(tt, l - 1u))) * P.c + ch;
        pre[6u * tt] = rbuf[P.r_off + e];
        pre[6u * tt + 1u] = ins[P.lam_off + e];
        pre[6u * tt + 2u] = ins[P.kneg_off + e];
        pre[6u * tt + 3u] = ins[P.kb_off + e];
        pre[6u * tt + 4u] = ins[P.kt_off + e];
        pre[6u * tt + 5u] = ins[P.v_off + e];
    }

    var buf = 0u;
    for (var t0 = 0u; t0 < l; t0 += CHUNK) {
        let sb = buf * CHUNK * 6u * NV;
        for (var tt = 0u; tt < CHUNK; tt++) {
            let o = sb + tt * 6u * NV + q;
            sh[o][comp] = pre[6u * tt];
            sh[o + NV][comp] = pre[6u * tt + 1u];
            sh[o + 2u * NV][comp] = pre[6u * tt + 2u];
            sh[o + 3u * NV][comp] = pre[6u * tt + 3u];
            sh[o + 4u * NV][comp] = pre[6u * tt + 4u];
            sh[o + 5u * NV][comp] = pre[6u * tt + 5u];
        }
        workgroupBarrier();
        // prefetch the next chunk (positions clamped to the last token; extra values unused)
        let t1 = t0 + CHUNK;
        if (t1 < l) {
            for (var tt = 0u; tt < CHUNK; tt++) {
                let e = (base + position(dir, min(t1 + tt, l - 1u))) * P.c + ch;
                pre[6u * tt] = rbuf[P.r_off + e];
                pre[6u * tt + 1u] = ins[P.lam_off + e];
                pre[6u * tt + 2u] = ins[P.kneg_off + e];
                pre[6u * tt + 3u] = ins[P.kb_off + e];
                pre[6u * tt + 4u] = ins[P.kt_off + e];
                pre[6u * tt + 5u] = ins[P.v_off + e];
            }
        }
        let cnt = min(CHUNK, l - t0);
        for (var tt = 0u; tt < cnt; tt++) {
            let o = sb + tt * 6u * NV;
            let vi = sh[o + 5u * NV + q][comp];
            // GENERATED: sa
            // GENERATED: update
            // GENERATED: y
            ys[y_off + (base + position(dir, t0 + tt)) * P.c + ch] = y;
        }
        buf = 1u - buf;
    }

    let so = P.state_off + dir * P.s_ds + ((image * P.heads + head) * N + i) * N;
    // GENERATED: state store
}
