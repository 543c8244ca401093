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

//!include common/helpers.wgsl
//!include common/scan.wgsl
//!include common/scan_stage.wgsl

@compute @workgroup_size(N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) i: u32) {
    let job = task(wg);
    let ch = job.head * N + i;
    let q = i / 4u;
    let comp = i % 4u;

    // GENERATED: state declarations

    // this thread's channel of the next chunk: [token][r, lambda, -kk, kk*a, kt, v]
    var pre: array<array<f32, 6>, CHUNK>;
    for (var tt = 0u; tt < CHUNK; tt++) {
        pre[tt] = token_values(elem(job, min(tt, job.l - 1u), ch));
    }

    var buf = 0u;
    for (var t0 = 0u; t0 < job.l; t0 += CHUNK) {
        let sb = buf * CHUNK * 6u * NV;
        for (var tt = 0u; tt < CHUNK; tt++) {
            stage(sb + tt * 6u * NV + q, comp, pre[tt]);
        }
        workgroupBarrier();
        // prefetch the next chunk (positions clamped to the last token; extra values unused)
        let t1 = t0 + CHUNK;
        if (t1 < job.l) {
            for (var tt = 0u; tt < CHUNK; tt++) {
                pre[tt] = token_values(elem(job, min(t1 + tt, job.l - 1u), ch));
            }
        }
        let cnt = min(CHUNK, job.l - t0);
        for (var tt = 0u; tt < cnt; tt++) {
            let o = sb + tt * 6u * NV;
            let vi = sh[o + 5u * NV + q][comp];
            // GENERATED: sa
            // GENERATED: update
            // GENERATED: y
            ys[job.y_off + elem(job, t0 + tt, ch)] = y;
        }
        buf = 1u - buf;
    }

    let so = state_row(job, i);
    // GENERATED: state store
}
