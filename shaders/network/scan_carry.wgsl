// The sequential step of a segmented scan (between scan_sg.wgsl's ROLE 1 and ROLE 2): carries
// the state across the segments of one (image, head, direction). With B_k the state segment k
// reaches from a zero start and T_k its transition (both from ROLE 1, in the segment scratch
// bound as `ys`, from element P.y_off), the state entering segment k + 1 is
//   S_{k+1} = S_k T_k + B_k,   S_0 = 0,
// one N x N matrix product per segment instead of seg_len recurrence steps. S_k is written over
// B_k (ROLE 2 starts segment k from it) and the state leaving the last segment, the scan's final
// state, goes to `state` as the unsegmented kernels write it.
//
// One workgroup of WG = N * N / 4 threads per (image, head[, direction]), grid (heads, images,
// DIRS); thread t holds the 4 elements of row t / (N / 4), columns 4 (t % (N / 4)) .. + 4 of S.
// The next segment's B and T are loaded into registers while the current product runs.
// Template constants: N (a multiple of 4), WG, DIRS.

//!include common/helpers.wgsl
//!include common/scan.wgsl

const NQ: u32 = N / 4u;

// S_k, row-major
var<workgroup> ss: array<f32, N * N>;
// T_k, row-major as vec4s
var<workgroup> tt: array<vec4<f32>, N * NQ>;

fn load4(at: u32) -> vec4<f32> {
    return vec4<f32>(ys[at], ys[at + 1u], ys[at + 2u], ys[at + 3u]);
}

fn store4(at: u32, v: vec4<f32>) {
    ys[at] = v.x;
    ys[at + 1u] = v.y;
    ys[at + 2u] = v.z;
    ys[at + 3u] = v.w;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    var dir = P.dir;
    if (DIRS == 4u) {
        dir = wg.z;
    }
    let head = wg.x;
    let image = wg.y;
    let i = t / NQ;
    let q = t % NQ;
    let mine = i * N + 4u * q;

    var s = vec4<f32>(0.0);
    var b = load4(segment_base(P.y_off, image, head, dir, 0u) + mine);
    var tr = load4(segment_base(P.y_off, image, head, dir, 0u) + N * N + 4u * t);
    for (var k = 0u; k < P.segs; k++) {
        let base = segment_base(P.y_off, image, head, dir, k);
        ss[mine] = s.x;
        ss[mine + 1u] = s.y;
        ss[mine + 2u] = s.z;
        ss[mine + 3u] = s.w;
        tt[t] = tr;
        workgroupBarrier();
        // the start state of segment k, over its B (already in registers)
        store4(base + mine, s);
        var acc = b;
        if (k + 1u < P.segs) {
            let next = segment_base(P.y_off, image, head, dir, k + 1u);
            b = load4(next + mine);
            tr = load4(next + N * N + 4u * t);
        }
        for (var m = 0u; m < N; m++) {
            acc += ss[i * N + m] * tt[m * NQ + q];
        }
        workgroupBarrier();
        s = acc;
    }
    let so = P.state_off + dir * P.s_ds + ((image * P.heads + head) * N + i) * N + 4u * q;
    state[so] = s.x;
    state[so + 1u] = s.y;
    state[so + 2u] = s.z;
    state[so + 3u] = s.w;
}
