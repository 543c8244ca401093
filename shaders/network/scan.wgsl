// The delta-rule recurrence for one scan direction: one workgroup of N threads per (image, head);
// thread i owns row i of the N x N state S (value channel i) in registers for the whole scan.
// Tokens are staged CHUNK at a time in workgroup memory, so there are two barriers per CHUNK
// tokens, none per token:
//   sa      = sum_j S[i,j] (-kk_j)
//   S[i,j]  = S[i,j] lambda_j + sa (kk_j a_j) + v_i kt_j
//   y[p, i] = sum_j S[i,j] r_j
// (the spec's S diag(lambda) - (S kk)(a kk)^T + v kt^T, y = S r), token p = pi_dir(t).
// The final state goes to the delta-rule state buffer at state_off + ((image * heads + head) * N
// + i) * N.
//
// Inputs (M x C each, offsets in elements): in `ins` lambda, -kk, kk * a, kt, v; in `rbuf` r.
// DIRS = 4: the four directions in one dispatch (grid z = direction; direction d writes y at
// y_off + d * y_ds and its state at state_off + d * s_ds); DIRS = 1: direction P.dir.
// Template constants: N, CHUNK, DIRS.

//!include common/helpers.wgsl
//!include common/scan.wgsl

// [token in chunk][array: r, lambda, -kk, kk*a, kt, v][channel]
var<workgroup> sh: array<f32, CHUNK * 6u * N>;

@compute @workgroup_size(N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) i: u32) {
    let job = task(wg);
    let ch = job.head * N + i;

    var s: array<f32, N>;
    for (var j = 0u; j < N; j++) {
        s[j] = 0.0;
    }

    for (var t0 = 0u; t0 < job.l; t0 += CHUNK) {
        let cnt = min(CHUNK, job.l - t0);
        for (var tt = 0u; tt < cnt; tt++) {
            let e = elem(job, t0 + tt, ch);
            let o = tt * 6u * N + i;
            sh[o] = rbuf[P.r_off + e];
            sh[o + N] = ins[P.lam_off + e];
            sh[o + 2u * N] = ins[P.kneg_off + e];
            sh[o + 3u * N] = ins[P.kb_off + e];
            sh[o + 4u * N] = ins[P.kt_off + e];
            sh[o + 5u * N] = ins[P.v_off + e];
        }
        workgroupBarrier();
        for (var tt = 0u; tt < cnt; tt++) {
            let o = tt * 6u * N;
            let vi = sh[o + 5u * N + i];
            var sa = 0.0;
            for (var j = 0u; j < N; j++) {
                sa = fma(s[j], sh[o + 2u * N + j], sa);
            }
            var y = 0.0;
            for (var j = 0u; j < N; j++) {
                let sj = s[j] * sh[o + N + j] + sa * sh[o + 3u * N + j] + vi * sh[o + 4u * N + j];
                s[j] = sj;
                y = fma(sj, sh[o + j], y);
            }
            ys[job.y_off + elem(job, t0 + tt, ch)] = y;
        }
        workgroupBarrier();
    }

    let so = state_row(job, i);
    for (var j = 0u; j < N; j++) {
        state[so + j] = s[j];
    }
}
