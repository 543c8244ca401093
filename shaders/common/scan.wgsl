// Shared by the scan kernels (scan.wgsl, scan_vec4.wgsl, scan_sg.wgsl, scan_chunk.wgsl,
// scan_carry.wgsl): the parameter block, the bindings, the scan orders and a workgroup's task
// (grid: heads, images x segs, DIRS).
//
// Inputs (M x C each, offsets in elements): in `ins` lambda, -kk, kk * a, kt, v; in `rbuf` r.
// Outputs: y of direction d at y_off + d * y_ds (d = P.dir, or the grid's z when DIRS = 4), the
// final N x N states at state_off + d * s_ds + ((image * heads + head) * N + row) * N.
//
// Segments (scan_sg.wgsl with ROLE 1 / 2, scan_carry.wgsl): each scan is cut into `segs` runs of
// `seg_len` tokens (the last one shorter) that run in parallel; grid y = image * segs + segment.
// Without segments segs = 1 and seg_len = the tokens of an image. The segment scratch holds, per
// (image, head, direction, segment), two N x N matrices at segment_base (below).

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
    y_ds: u32,
    s_ds: u32,
    segs: u32,
    seg_len: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> ins: array<f32>;
@group(0) @binding(2) var<storage, read> rbuf: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

// Canonical position of the t-th token of scan direction `dir` (model-spec.md, "The four scan
// orders").
fn position(dir: u32, t: u32) -> u32 {
    let l = P.height * P.width;
    switch dir {
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

// The (image, head, direction, segment) a scan workgroup computes.
struct Task {
    head: u32,
    image: u32,
    // P.dir, or the grid's z when DIRS = 4
    dir: u32,
    // tokens per image
    l: u32,
    // the image's first token
    base: u32,
    // where this direction's output starts
    y_off: u32,
    // the segment, and its tokens [t_begin, t_end) in scan order (the whole scan when segs = 1)
    seg: u32,
    t_begin: u32,
    t_end: u32,
}

fn task(wg: vec3<u32>) -> Task {
    var dir = P.dir;
    if (DIRS == 4u) {
        dir = wg.z;
    }
    let l = P.height * P.width;
    let image = wg.y / P.segs;
    let seg = wg.y % P.segs;
    let t_begin = min(seg * P.seg_len, l);
    let t_end = min(t_begin + P.seg_len, l);
    return Task(wg.x, image, dir, l, image * l, P.y_off + dir * P.y_ds, seg, t_begin, t_end);
}

// Where the two N x N matrices of (image, head, dir, segment) start in the segment scratch (the
// buffer bound as `state` by scan_sg.wgsl's ROLE 1 / 2 and as `ys` by scan_carry.wgsl, from
// element `off`): first the segment's state from a zero start (ROLE 1; scan_carry.wgsl then
// writes the segment's true start state over it, which ROLE 2 reads), then its transition.
fn segment_base(off: u32, image: u32, head: u32, dir: u32, seg: u32) -> u32 {
    return off + (((image * P.heads + head) * 4u + dir) * P.segs + seg) * 2u * N * N;
}

// Element (token, channel ch) of an M x C tensor for the t-th token of the task's scan order.
fn elem(k: Task, t: u32, ch: u32) -> u32 {
    return (k.base + position(k.dir, t)) * P.c + ch;
}

// Where row i of the task's final N x N state starts.
fn state_row(k: Task, i: u32) -> u32 {
    return P.state_off + k.dir * P.s_ds + ((k.image * P.heads + k.head) * N + i) * N;
}
