// The delta-rule recurrence with each state row split over LANES = 4 or 8 lanes (head size
// N = 32), for adapters with subgroup operations: one workgroup of LANES N threads per (image,
// head[, direction]); thread t works on row i = t / LANES of S, columns [4 VPL p, 4 VPL (p + 1))
// with p = t % LANES, as VPL = 8 / LANES vec4 registers (two with 4 lanes, one with 8). The
// row's dot products are summed over its lanes with subgroupShuffleXor (the lanes of a row are
// consecutive invocations, inside one subgroup when subgroups have at least LANES lanes, which
// the host checks). 8 lanes: twice the threads per recurrence, each with half the columns and
// one more shuffle round (for full batches, where more warps hide more of each step's latency). Per token a thread does a quarter of scan_vec4.wgsl's work, and
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
// state_off + d * s_ds). Template constants: N (= 32), NV = N / 4, CHUNK (a multiple of WG / N),
// DIRS, PIPE, ROLE, LANES (4, or 8 for ROLE 0 and 2), WG (= LANES N, or 8 N for ROLE 1 with
// LANES = 4).
//
// ROLE (segmented scans, for few images where a handful of recurrences leave the GPU idle: each
// scan is cut into P.segs segments that run in parallel, grid y = image * segs + segment):
//   0  the whole scan: y, and the final state at `state`;
//   1  a segment from a zero state, no y. WG = 8 N threads: rows 0..N are the state (B), rows
//      N..2N the segment's transition (T, starting as the identity, no v term), so that a state
//      S entering the segment leaves it as S T + B (the recurrence is affine in S:
//      S_t = S_{t-1} (diag(lambda_t) + alpha_t beta_t^T) + v_t kt_t^T). B and T go to the segment
//      scratch bound as `state` (segment_base, from P.state_off);
//   2  a segment from its true start state (scan_carry.wgsl wrote it over B), y only.

//!include common/helpers.wgsl
//!include common/scan.wgsl
//!include common/scan_stage.wgsl

// tokens one pass of the staging threads covers, and passes per chunk
const LS: u32 = WG / N;
const PER: u32 = CHUNK / LS;
const NONE: u32 = 0xffffffffu;
// vec4 registers of state per thread
const VPL: u32 = NV / LANES;

// the sum of `q` over the LANES lanes of a state row
fn row_sum(q: vec2<f32>) -> vec2<f32> {
    var r = q + subgroupShuffleXor(q, 1u);
    r += subgroupShuffleXor(r, 2u);
    if (LANES == 8u) {
        r += subgroupShuffleXor(r, 4u);
    }
    return r;
}

// the same for one value
fn row_sum1(x: f32) -> f32 {
    var r = x + subgroupShuffleXor(x, 1u);
    r += subgroupShuffleXor(r, 2u);
    if (LANES == 8u) {
        r += subgroupShuffleXor(r, 4u);
    }
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let job = task(wg);
    // compute role: row i, lane part p (columns 4 VPL p .. 4 VPL (p + 1) = vec4s pb, pb + 1)
    let i = t / LANES;
    let p = t % LANES;
    let pb = VPL * p;
    let c0 = 4u * pb;
    // ROLE 1: rows N.. are the transition's (no v term)
    let state_row_here = i < N;
    let vrow = min(i, N - 1u);
    // staging role: channel lc of tokens lt, lt + LS, ...
    let lc = t % N;
    let lt = t / N;
    let lch = job.head * N + lc;
    let lq = lc / 4u;
    let lcomp = lc % 4u;

    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    let seg_at = segment_base(P.state_off, job.image, job.head, job.dir, job.seg) + i * N + c0;
    if (ROLE == 1u && !state_row_here) {
        // row i - N of the identity
        let col = i - N;
        if (col >= c0 && col < c0 + 4u) {
            s0[col - c0] = 1.0;
        } else if (VPL == 2u && col >= c0 + 4u && col < c0 + 8u) {
            s1[col - c0 - 4u] = 1.0;
        }
    }
    if (ROLE == 2u) {
        s0 = vec4<f32>(state[seg_at], state[seg_at + 1u], state[seg_at + 2u], state[seg_at + 3u]);
        if (VPL == 2u) {
            s1 = vec4<f32>(state[seg_at + 4u], state[seg_at + 5u], state[seg_at + 6u],
                state[seg_at + 7u]);
        }
    }
    // PIPE = 1: the previous token's partial y and where it goes (NONE before the first token)
    var y_pend = 0.0;
    var y_at = NONE;

    let last = max(job.t_end, job.t_begin + 1u) - 1u;
    var pre: array<array<f32, 6>, PER>;
    for (var u = 0u; u < PER; u++) {
        pre[u] = token_values(elem(job, min(job.t_begin + lt + LS * u, last), lch));
    }

    var buf = 0u;
    for (var t0 = job.t_begin; t0 < job.t_end; t0 += CHUNK) {
        let sb = buf * CHUNK * 6u * NV;
        for (var u = 0u; u < PER; u++) {
            stage(sb + (lt + LS * u) * 6u * NV + lq, lcomp, pre[u]);
        }
        workgroupBarrier();
        let t1 = t0 + CHUNK;
        if (t1 < job.t_end) {
            for (var u = 0u; u < PER; u++) {
                pre[u] = token_values(elem(job, min(t1 + lt + LS * u, last), lch));
            }
        }
        let cnt = min(CHUNK, job.t_end - t0);
        for (var tt = 0u; tt < cnt; tt++) {
            let o = sb + tt * 6u * NV;
            var vi = sh[o + 5u * NV + vrow / 4u][vrow % 4u];
            if (ROLE == 1u && !state_row_here) {
                vi = 0.0;
            }
            var sa = dot(s0, sh[o + 2u * NV + pb]);
            if (VPL == 2u) {
                sa += dot(s1, sh[o + 2u * NV + pb + 1u]);
            }
            if (PIPE == 1u && ROLE != 1u) {
                // sa of this token and the pending y of the previous one, reduced together
                let q = row_sum(vec2<f32>(sa, y_pend));
                sa = q.x;
                if (p == 0u && y_at != NONE) {
                    ys[y_at] = q.y;
                }
            } else {
                sa = row_sum1(sa);
            }
            s0 = s0 * sh[o + NV + pb] + sa * sh[o + 3u * NV + pb] + vi * sh[o + 4u * NV + pb];
            if (VPL == 2u) {
                s1 = s1 * sh[o + NV + pb + 1u] + sa * sh[o + 3u * NV + pb + 1u]
                    + vi * sh[o + 4u * NV + pb + 1u];
            }
            if (ROLE != 1u) {
                let y_here = job.y_off + elem(job, t0 + tt, job.head * N + i);
                var y = dot(s0, sh[o + pb]);
                if (VPL == 2u) {
                    y += dot(s1, sh[o + pb + 1u]);
                }
                if (PIPE == 1u) {
                    y_pend = y;
                    y_at = y_here;
                } else {
                    y = row_sum1(y);
                    if (p == 0u) {
                        ys[y_here] = y;
                    }
                }
            }
        }
        // the next chunk's staging overwrites the other buffer, which every thread has left
        buf = 1u - buf;
    }
    if (PIPE == 1u && ROLE != 1u) {
        // the last token's y
        let y = row_sum1(y_pend);
        if (p == 0u && y_at != NONE) {
            ys[y_at] = y;
        }
    }

    var so = state_row(job, i) + c0;
    if (ROLE == 2u) {
        // the final state comes from scan_carry.wgsl
        return;
    }
    if (ROLE == 1u) {
        so = seg_at;
    }
    state[so] = s0.x;
    state[so + 1u] = s0.y;
    state[so + 2u] = s0.z;
    state[so + 3u] = s0.w;
    if (VPL == 2u) {
        state[so + 4u] = s1.x;
        state[so + 5u] = s1.y;
        state[so + 6u] = s1.z;
        state[so + 7u] = s1.w;
    }
}
