// The delta-rule recurrence with each state row split over four lanes (head size N = 32), for
// adapters with subgroup operations: one workgroup of 4 N threads per (image, head[, direction]);
// thread t works on row i = t / 4 of S, columns [8 p, 8 p + 8) with p = t % 4, as two vec4
// registers. The row's dot products are summed over its four lanes with subgroupShuffleXor (the
// lanes of a row are consecutive invocations, inside one subgroup when subgroups have at least 4
// lanes, which the host checks). Per token a thread does a quarter of scan_vec4.wgsl's work, and
// four times as many warps share the recurrence of one head: at batch 1, where only a few
// workgroups run, the latency of a step is what the scan costs.
//   sa      = S_i . (-kk)                 (partial over the lane's 8 columns, then summed)
//   S_i     = S_i * lambda + sa (kk * a) + v_i kt
//   y[p, i] = S_i . r                     (partial, summed; lane 0 of the row stores it)
// Staging as scan_vec4.wgsl (double-buffered chunks, register prefetch), shared by 4 N threads:
// thread t loads channel t % N of the tokens t / N, t / N + 4, ... of the next chunk.
// PIPE = 1 (software-pipelined): the reduction of y for token t waits and travels with the
// reduction of sa for token t + 1 (both are dot products with the same state S_t) as one vec2
// shuffle pair, so each step's dependency chain holds two shuffle rounds instead of four and one
// dot product instead of two; the sums and their order are unchanged. PIPE = 0: each token
// reduces sa, updates, reduces y.
// DIRS = 1: direction P.dir; DIRS = 4: grid z = direction (y at y_off + d * y_ds, state at
// state_off + d * s_ds). Template constants: N (= 32), NV = N / 4, CHUNK (a multiple of 4), DIRS,
// PIPE.

//!include common/helpers.wgsl
//!include common/scan.wgsl
//!include common/scan_stage.wgsl

const PER: u32 = CHUNK / 4u;
const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(4u * N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let job = task(wg);
    // compute role: row i, lane part p (columns 8p .. 8p + 8 = vec4s 2p, 2p + 1)
    let i = t / 4u;
    let p = t % 4u;
    let pb = 2u * p;
    // staging role: channel lc of tokens lt, lt + 4, ...
    let lc = t % N;
    let lt = t / N;
    let lch = job.head * N + lc;
    let lq = lc / 4u;
    let lcomp = lc % 4u;

    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    // PIPE = 1: the previous token's partial y and where it goes (NONE before the first token)
    var y_pend = 0.0;
    var y_at = NONE;

    var pre: array<array<f32, 6>, PER>;
    for (var u = 0u; u < PER; u++) {
        pre[u] = token_values(elem(job, min(lt + 4u * u, job.l - 1u), lch));
    }

    var buf = 0u;
    for (var t0 = 0u; t0 < job.l; t0 += CHUNK) {
        let sb = buf * CHUNK * 6u * NV;
        for (var u = 0u; u < PER; u++) {
            stage(sb + (lt + 4u * u) * 6u * NV + lq, lcomp, pre[u]);
        }
        workgroupBarrier();
        let t1 = t0 + CHUNK;
        if (t1 < job.l) {
            for (var u = 0u; u < PER; u++) {
                pre[u] = token_values(elem(job, min(t1 + lt + 4u * u, job.l - 1u), lch));
            }
        }
        let cnt = min(CHUNK, job.l - t0);
        for (var tt = 0u; tt < cnt; tt++) {
            let o = sb + tt * 6u * NV;
            let vi = sh[o + 5u * NV + i / 4u][i % 4u];
            var sa = dot(s0, sh[o + 2u * NV + pb]) + dot(s1, sh[o + 2u * NV + pb + 1u]);
            if (PIPE == 1u) {
                // sa of this token and the pending y of the previous one, reduced together
                var q = vec2<f32>(sa, y_pend);
                q += subgroupShuffleXor(q, 1u);
                q += subgroupShuffleXor(q, 2u);
                sa = q.x;
                if (p == 0u && y_at != NONE) {
                    ys[y_at] = q.y;
                }
            } else {
                sa += subgroupShuffleXor(sa, 1u);
                sa += subgroupShuffleXor(sa, 2u);
            }
            s0 = s0 * sh[o + NV + pb] + sa * sh[o + 3u * NV + pb] + vi * sh[o + 4u * NV + pb];
            s1 = s1 * sh[o + NV + pb + 1u] + sa * sh[o + 3u * NV + pb + 1u]
                + vi * sh[o + 4u * NV + pb + 1u];
            let y_here = job.y_off + elem(job, t0 + tt, job.head * N + i);
            if (PIPE == 1u) {
                y_pend = dot(s0, sh[o + pb]) + dot(s1, sh[o + pb + 1u]);
                y_at = y_here;
            } else {
                var y = dot(s0, sh[o + pb]) + dot(s1, sh[o + pb + 1u]);
                y += subgroupShuffleXor(y, 1u);
                y += subgroupShuffleXor(y, 2u);
                if (p == 0u) {
                    ys[y_here] = y;
                }
            }
        }
        buf = 1u - buf;
    }
    if (PIPE == 1u) {
        // the last token's y
        var y = y_pend;
        y += subgroupShuffleXor(y, 1u);
        y += subgroupShuffleXor(y, 2u);
        if (p == 0u && y_at != NONE) {
            ys[y_at] = y;
        }
    }

    let so = state_row(job, i) + 8u * p;
    state[so] = s0.x;
    state[so + 1u] = s0.y;
    state[so + 2u] = s0.z;
    state[so + 3u] = s0.w;
    state[so + 4u] = s1.x;
    state[so + 5u] = s1.y;
    state[so + 6u] = s1.z;
    state[so + 7u] = s1.w;
}
