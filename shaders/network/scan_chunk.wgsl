// The delta-rule recurrence in chunked (WY / DPLR) form: only L / CHUNK steps are sequential
// instead of L. One workgroup of WG = 256 threads per (image, head[, direction]), looping over
// chunks of CHUNK = 16 tokens. The state is always NP = 32 wide: a head size N < 32 is padded
// with neutral channels (lambda = 1, everything else 0: their state rows and columns stay 0),
// loaded and stored only for the N real ones. The host selects this kernel for N <= 32 where the
// adapter allows 256 invocations and the workgroup memory below.
//
// Per token (spec): S_t = S_{t-1} diag(lambda_t) + (S_{t-1} alpha_t) beta_t^T + v_t kt_t^T with
// alpha = -kk, beta = kk * a; y_t = S_t r_t. Within a chunk entered with state S0, with
// d_t = prod_{u <= t} lambda_u (elementwise, d_{-1} = 1) and w_t = S_{t-1} alpha_t:
//   S_t = [S0 + sum_{s <= t} (w_s bhat_s^T + v_s khat_s^T)] diag(d_t),
//   bhat_s = beta_s / d_s, khat_s = kt_s / d_s, atil_t = d_{t-1} alpha_t, rtil_t = d_t r_t;
//   W = (S0 Atil + V Mk) T,  T = (I - Mb)^-1,   Mb[s,t] = bhat_s . atil_t, Mk[s,t] = khat_s . atil_t
//                                                (s < t; I - Mb is unit upper triangular);
//   Y = S0 Rtil + W Bm + V Km,                   Bm[s,t] = bhat_s . rtil_t, Km[s,t] = khat_s . rtil_t
//                                                (s <= t);
//   S_end = S0 diag(d_C) + W Bd^T + V Kd^T,      Bd[s] = beta_s d_C / d_s, Kd[s] = kt_s d_C / d_s
//                                                (products of the later lambdas: ratios <= 1).
// A partial last chunk is padded with neutral tokens (lambda = 1, everything else 0), which
// leave the state unchanged and whose outputs are not stored.
//
// Phases per chunk (five barriers):
//   P0  stage: each thread turns its prefetched column j, tokens tp and tp + 8, into atil, rtil,
//       bhat, khat, Bd, Kd, v (the prefix products from the chunk's 16 lambdas of column j, which
//       it holds in registers), then prefetches the next chunk;
//   P1  the four C x C matrices (thread = (s, t)) and S0 Atil, S0 Rtil (thread = row i, tokens
//       tq, tq + 8, kept in registers);
//   P2  Z = S0 Atil + V Mk; threads 0..15 compute row tid of T by substitution;
//   P3  W = Z T;
//   P4  Y (stored) and S_end (thread = row i, columns tq + 8 q, written over S0).
// DIRS = 1: direction P.dir; DIRS = 4: grid z = direction (y at y_off + d * y_ds, state at
// state_off + d * s_ds). Template constants: N (<= 32), CHUNK (= 16), DIRS.

//!include common/helpers.wgsl
//!include common/scan.wgsl

const WG: u32 = 256u;
const NP: u32 = 32u;
// threads per state row in the row phases (WG / NP = 8), each with CHUNK / TPR = 2 tokens
const TPR: u32 = WG / NP;
// row strides in workgroup memory, padded against bank conflicts
const SA: u32 = NP + 1u;
const SZ: u32 = CHUNK + 1u;
const CC: u32 = CHUNK * CHUNK;
// Region A: atil, rtil, bhat, khat [CHUNK][SA] (read in P1 only); then Z, W [N][SZ], T [C][C].
const O_AT: u32 = 0u;
const O_RT: u32 = CHUNK * SA;
const O_BH: u32 = 2u * CHUNK * SA;
const O_KH: u32 = 3u * CHUNK * SA;
const O_Z: u32 = 0u;
const O_W: u32 = NP * SZ;
const O_T: u32 = 2u * NP * SZ;
// Bd, Kd, v [CHUNK][SA]; d_C [N]; Mb, Mk, Bm, Km [C][C]; the state S [N][SA]
const O_BD: u32 = 4u * CHUNK * SA;
const O_KD: u32 = 5u * CHUNK * SA;
const O_V: u32 = 6u * CHUNK * SA;
const O_DC: u32 = 7u * CHUNK * SA;
const O_MB: u32 = O_DC + NP;
const O_MK: u32 = O_MB + CC;
const O_BM: u32 = O_MK + CC;
const O_KM: u32 = O_BM + CC;
const O_S: u32 = O_KM + CC;
const TOTAL: u32 = O_S + NP * SA;

var<workgroup> sm: array<f32, TOTAL>;

// One thread's share of a chunk: the lambdas of its column for all CHUNK tokens (1 past the
// end and for padding channels), and r, -kk, kk*a, kt, v of its tokens tp and tp + TPR (0 past
// the end and for padding channels).
struct Pre {
    lam: array<f32, CHUNK>,
    own: array<f32, 10>,
}

fn load_chunk(job: Task, ch: u32, real: bool, t0: u32, tp: u32) -> Pre {
    var p: Pre;
    let cnt = select(0u, min(CHUNK, job.l - t0), real);
    for (var tt = 0u; tt < CHUNK; tt++) {
        var lam = 1.0;
        if (tt < cnt) {
            lam = ins[P.lam_off + elem(job, t0 + tt, ch)];
        }
        p.lam[tt] = lam;
    }
    for (var k = 0u; k < 2u; k++) {
        let u = tp + TPR * k;
        var vals = array<f32, 5>(0.0, 0.0, 0.0, 0.0, 0.0);
        if (u < cnt) {
            let e = elem(job, t0 + u, ch);
            vals = array<f32, 5>(
                rbuf[P.r_off + e],
                ins[P.kneg_off + e],
                ins[P.kb_off + e],
                ins[P.kt_off + e],
                ins[P.v_off + e],
            );
        }
        for (var q = 0u; q < 5u; q++) {
            p.own[5u * k + q] = vals[q];
        }
    }
    return p;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let job = task(wg);
    // staging role: column j, tokens tp, tp + TPR; row roles: row i = j, tokens tq, tq + TPR
    let j = tid % NP;
    let tp = tid / NP;
    let i = j;
    let tq = tp;
    let real = j < N;
    let ch = job.head * N + j;
    // matrix role: entry (ms, mt)
    let ms = tid / CHUNK;
    let mt = tid % CHUNK;

    for (var q = 0u; q < 4u; q++) {
        sm[O_S + i * SA + tq + TPR * q] = 0.0;
    }

    var pre = load_chunk(job, ch, real, 0u, tp);
    for (var t0 = 0u; t0 < job.l; t0 += CHUNK) {
        let cnt = min(CHUNK, job.l - t0);

        // P0: staging
        for (var k = 0u; k < 2u; k++) {
            let u = tp + TPR * k;
            var dprev = 1.0;
            var lu = 1.0;
            var ratio = 1.0;
            for (var tt = 0u; tt < CHUNK; tt++) {
                let lm = pre.lam[tt];
                if (tt < u) {
                    dprev *= lm;
                } else if (tt == u) {
                    lu = lm;
                } else {
                    ratio *= lm;
                }
            }
            let du = dprev * lu;
            let r = pre.own[5u * k];
            let al = pre.own[5u * k + 1u];
            let be = pre.own[5u * k + 2u];
            let kt = pre.own[5u * k + 3u];
            let o = u * SA + j;
            sm[O_AT + o] = dprev * al;
            sm[O_RT + o] = du * r;
            sm[O_BH + o] = be / du;
            sm[O_KH + o] = kt / du;
            sm[O_BD + o] = be * ratio;
            sm[O_KD + o] = kt * ratio;
            sm[O_V + o] = pre.own[5u * k + 4u];
        }
        if (tp == 0u) {
            var dc = 1.0;
            for (var tt = 0u; tt < CHUNK; tt++) {
                dc *= pre.lam[tt];
            }
            sm[O_DC + j] = dc;
        }
        if (t0 + CHUNK < job.l) {
            pre = load_chunk(job, ch, real, t0 + CHUNK, tp);
        }
        workgroupBarrier();

        // P1: the chunk's matrices; S0 Atil and S0 Rtil for row i
        {
            var mb = 0.0;
            var mk = 0.0;
            var bm = 0.0;
            var km = 0.0;
            for (var c = 0u; c < NP; c++) {
                let at = sm[O_AT + mt * SA + c];
                let rt = sm[O_RT + mt * SA + c];
                let bh = sm[O_BH + ms * SA + c];
                let kh = sm[O_KH + ms * SA + c];
                mb = fma(bh, at, mb);
                mk = fma(kh, at, mk);
                bm = fma(bh, rt, bm);
                km = fma(kh, rt, km);
            }
            let strict = ms < mt;
            let upper = ms <= mt;
            sm[O_MB + tid] = select(0.0, mb, strict);
            sm[O_MK + tid] = select(0.0, mk, strict);
            sm[O_BM + tid] = select(0.0, bm, upper);
            sm[O_KM + tid] = select(0.0, km, upper);
        }
        let t_a = tq;
        let t_b = tq + TPR;
        var xa0 = 0.0;
        var xa1 = 0.0;
        var xr0 = 0.0;
        var xr1 = 0.0;
        for (var c = 0u; c < NP; c++) {
            let s0 = sm[O_S + i * SA + c];
            xa0 = fma(s0, sm[O_AT + t_a * SA + c], xa0);
            xa1 = fma(s0, sm[O_AT + t_b * SA + c], xa1);
            xr0 = fma(s0, sm[O_RT + t_a * SA + c], xr0);
            xr1 = fma(s0, sm[O_RT + t_b * SA + c], xr1);
        }
        workgroupBarrier();

        // P2: Z = S0 Atil + V Mk; T = (I - Mb)^-1 row by row (T = I + T Mb)
        for (var s = 0u; s < CHUNK; s++) {
            let vs = sm[O_V + s * SA + i];
            xa0 = fma(vs, sm[O_MK + s * CHUNK + t_a], xa0);
            xa1 = fma(vs, sm[O_MK + s * CHUNK + t_b], xa1);
        }
        sm[O_Z + i * SZ + t_a] = xa0;
        sm[O_Z + i * SZ + t_b] = xa1;
        if (tid < CHUNK) {
            let row = tid;
            for (var t = 0u; t < CHUNK; t++) {
                var acc = select(0.0, 1.0, t == row);
                for (var s = row; s < t; s++) {
                    acc = fma(sm[O_T + row * CHUNK + s], sm[O_MB + s * CHUNK + t], acc);
                }
                sm[O_T + row * CHUNK + t] = acc;
            }
        }
        workgroupBarrier();

        // P3: W = Z T
        {
            var w0 = 0.0;
            var w1 = 0.0;
            for (var s = 0u; s < CHUNK; s++) {
                let z = sm[O_Z + i * SZ + s];
                w0 = fma(z, sm[O_T + s * CHUNK + t_a], w0);
                w1 = fma(z, sm[O_T + s * CHUNK + t_b], w1);
            }
            sm[O_W + i * SZ + t_a] = w0;
            sm[O_W + i * SZ + t_b] = w1;
        }
        workgroupBarrier();

        // P4: Y = S0 Rtil + W Bm + V Km; S_end = S0 diag(d_C) + W Bd^T + V Kd^T
        var sn = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
        for (var q = 0u; q < 4u; q++) {
            let c = tq + TPR * q;
            sn[q] = sm[O_S + i * SA + c] * sm[O_DC + c];
        }
        for (var s = 0u; s < CHUNK; s++) {
            let ws = sm[O_W + i * SZ + s];
            let vs = sm[O_V + s * SA + i];
            xr0 = fma(ws, sm[O_BM + s * CHUNK + t_a], fma(vs, sm[O_KM + s * CHUNK + t_a], xr0));
            xr1 = fma(ws, sm[O_BM + s * CHUNK + t_b], fma(vs, sm[O_KM + s * CHUNK + t_b], xr1));
            for (var q = 0u; q < 4u; q++) {
                let c = tq + TPR * q;
                sn[q] = fma(ws, sm[O_BD + s * SA + c], fma(vs, sm[O_KD + s * SA + c], sn[q]));
            }
        }
        for (var q = 0u; q < 4u; q++) {
            sm[O_S + i * SA + tq + TPR * q] = sn[q];
        }
        if (real && t_a < cnt) {
            ys[job.y_off + elem(job, t0 + t_a, ch)] = xr0;
        }
        if (real && t_b < cnt) {
            ys[job.y_off + elem(job, t0 + t_b, ch)] = xr1;
        }
        workgroupBarrier();
    }

    let so = state_row(job, i);
    for (var q = 0u; q < 4u; q++) {
        let c = tq + TPR * q;
        if (real && c < N) {
            state[so + c] = sm[O_S + i * SA + c];
        }
    }
}
