//! The delta-rule scan kernels against the CPU reference: every direction, the fused four-way
//! dispatch, and each variant (vec4, scalar, subgroup serial and pipelined, chunked, segmented),
//! with sizes that are not multiples of the tiles. Tolerances as in `kernels.rs`.

use crate::common::*;
use crate::kernels::REDUCTION;
use deltawkv::gpu::graph::{BufId, Graph};
use deltawkv::gpu::kernels::scan::scan_scratch_elems;
use deltawkv::gpu::kernels::{KernelKey, Kind, SCAN_CHUNK_BYTES, ScanArgs, ScanSegments};
use deltawkv::model::cpu::ops;

fn scan_case(dir: ops::ScanDirection) {
    scan_case_with(dir, ScanKernel::Vec4);
}

/// Which scan kernel a test pins.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ScanKernel {
    Scalar,
    Vec4,
    /// `scan_sg.wgsl`; on devices without subgroups the test fails in CI (`DELTAWKV_CI` set) and
    /// is skipped with a note elsewhere.
    Subgroup,
    /// `scan_chunk.wgsl`; where the adapter's limits do not allow it, as `Subgroup`.
    Chunked,
    /// `scan_sg.wgsl` with `PIPE = 1` (`KernelOptions::scan_pipelined`); skipped as `Subgroup`.
    SubgroupPipelined,
}

fn pin_scan(hs: &mut Harness, kind: ScanKernel) -> bool {
    hs.graph.kernels.scan_vec4 = kind != ScanKernel::Scalar;
    let subgroup = matches!(kind, ScanKernel::Subgroup | ScanKernel::SubgroupPipelined);
    hs.graph.kernels.scan_subgroup = subgroup;
    hs.graph.kernels.scan_pipelined = kind == ScanKernel::SubgroupPipelined;
    hs.graph.kernels.scan_chunked = kind == ScanKernel::Chunked;
    if subgroup && !require_capability(hs.graph.subgroups, "usable subgroups (scan_sg.wgsl)") {
        return false;
    }
    kind != ScanKernel::Chunked
        || require_capability(
            hs.graph.can_scan_chunked(),
            "the limits of scan_chunk.wgsl (256 invocations, SCAN_CHUNK_BYTES of workgroup memory)",
        )
}

/// The kernel `pin_scan(kind)` must have recorded.
fn scan_kind(kind: ScanKernel) -> Kind {
    match kind {
        ScanKernel::Scalar => Kind::Scan,
        ScanKernel::Vec4 => Kind::ScanVec4,
        ScanKernel::Subgroup | ScanKernel::SubgroupPipelined => Kind::ScanSg,
        ScanKernel::Chunked => Kind::ScanChunk,
    }
}

/// Seeded scan inputs for `b` images of `h x w` tokens, `c` channels, head size `n`, with the
/// CPU reference per direction and the final-state check (y at the last visited token equals
/// `S_final r` there) that every scan test uses.
struct ScanData {
    b: usize,
    h: usize,
    w: usize,
    c: usize,
    n: usize,
    r: Vec<f32>,
    lambda: Vec<f32>,
    kk: Vec<f32>,
    a: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
}

impl ScanData {
    fn new(seed: u64, dims: (usize, usize, usize, usize, usize)) -> Self {
        Self::with_decay(seed, dims, 0.55)
    }

    /// Decays lambda uniform in `[lam_lo, 1)` (the model's lie in (0.545, 1)).
    fn with_decay(
        seed: u64,
        (b, h, w, c, n): (usize, usize, usize, usize, usize),
        lam_lo: f32,
    ) -> Self {
        let len = b * h * w * c;
        Self {
            b,
            h,
            w,
            c,
            n,
            r: rand_vec(seed, len, -1.0, 1.0),
            lambda: rand_vec(seed + 1, len, lam_lo, 1.0),
            kk: ops::removal_key(&rand_vec(seed + 2, len, -1.0, 1.0), c, n, &vec![1.0; c]),
            a: rand_vec(seed + 3, len, 0.0, 1.0),
            kt: rand_vec(seed + 4, len, -1.0, 1.0),
            v: rand_vec(seed + 5, len, -1.0, 1.0),
        }
    }

    fn len(&self) -> usize {
        self.b * self.h * self.w * self.c
    }

    fn state_len(&self) -> usize {
        self.b * (self.c / self.n) * self.n * self.n
    }

    /// Uploads the kernel's inputs: (`ins` = lambda, -kk, kk*a, kt, v; `r`), and the `ScanArgs`
    /// for direction `dir` writing into `y` and `state`.
    fn args(&self, hs: &mut Harness, y: BufId, state: BufId, dir: u32) -> ScanArgs {
        let kneg: Vec<f32> = self.kk.iter().map(|x| -x).collect();
        let kb = ops::mul(&self.kk, &self.a);
        let ins = hs.input(
            &[
                self.lambda.clone(),
                kneg,
                kb,
                self.kt.clone(),
                self.v.clone(),
            ]
            .concat(),
        );
        let rb = hs.input(&self.r);
        let lu = self.len() as u32;
        ScanArgs {
            ins,
            lam_off: 0,
            kneg_off: lu,
            kb_off: 2 * lu,
            kt_off: 3 * lu,
            v_off: 4 * lu,
            r: rb.at(0),
            y: y.at(0),
            state: state.at(0),
            batch: self.b as u32,
            height: self.h as u32,
            width: self.w as u32,
            c: self.c as u32,
            head_size: self.n as u32,
            dir,
            scratch: None,
        }
    }

    /// The CPU reference output of direction `dir`, image by image.
    fn cpu(&self, dir: ops::ScanDirection) -> Vec<f32> {
        let il = self.h * self.w * self.c;
        let mut out = Vec::new();
        for i in 0..self.b {
            let s = |x: &[f32]| x[i * il..(i + 1) * il].to_vec();
            let (ri, li, ki, ai, ti, vi) = (
                s(&self.r),
                s(&self.lambda),
                s(&self.kk),
                s(&self.a),
                s(&self.kt),
                s(&self.v),
            );
            let inputs = ops::ScanInputs {
                r: &ri,
                lambda: &li,
                kk: &ki,
                a: &ai,
                kt: &ti,
                v: &vi,
            };
            out.extend(ops::delta_scan(
                dir, self.h, self.w, self.c, self.n, &inputs,
            ));
        }
        out
    }

    /// Checks the final states `st` of direction `dir` against its CPU output `cpu`.
    fn check_final_state(&self, name: &str, dir: ops::ScanDirection, st: &[f32], cpu: &[f32]) {
        let (l, c, n, heads) = (self.h * self.w, self.c, self.n, self.c / self.n);
        let p_last = dir.position(l - 1, self.h, self.w);
        let (mut from_state, mut expected) = (Vec::new(), Vec::new());
        for i in 0..self.b {
            for hd in 0..heads {
                for row in 0..n {
                    let base = (i * l + p_last) * c + hd * n;
                    let srow = &st[((i * heads + hd) * n + row) * n..][..n];
                    from_state.push(ops::dot(srow, &self.r[base..base + n]));
                    expected.push(cpu[base + row]);
                }
            }
        }
        check(name, &from_state, &expected, REDUCTION);
    }
}

fn scan_case_with(dir: ops::ScanDirection, kind_: ScanKernel) {
    let data = ScanData::new(100 + 10 * dir.index() as u64, (2, 7, 5, 64, 32));
    scan_case_on(&data, dir, kind_);
}

/// One direction of `data` with the kernel `kind_`: output and final states against the CPU.
fn scan_case_on(data: &ScanData, dir: ops::ScanDirection, kind_: ScanKernel) {
    let Some(ctx) = ctx() else { return };
    let mut hs = Harness::new(ctx);
    if !pin_scan(&mut hs, kind_) {
        return;
    }
    hs.graph.kernels.fused_scan = false;
    let y = hs.zeros(data.len());
    let state = hs.zeros(data.state_len());
    let args = data.args(&mut hs, y, state, dir.index() as u32);
    hs.graph.scan(&args).unwrap();
    assert_eq!(hs.graph.dispatch_kinds(), [scan_kind(kind_)]);
    hs.run();
    let gpu = hs.read(y, 0, data.len());
    let st = hs.read(state, 0, data.state_len());
    let cpu = data.cpu(dir);
    let kind = format!(" ({kind_:?} kernel, {}x{})", data.h, data.w);
    check(
        &format!("scan direction {}{kind}", dir.index()),
        &gpu,
        &cpu,
        REDUCTION,
    );
    data.check_final_state(
        &format!("scan direction {} final state{kind}", dir.index()),
        dir,
        &st,
        &cpu,
    );
}

/// All four directions in one dispatch (`KernelOptions::fused_scan`), against the CPU reference
/// per direction: outputs at `y + d * y_ds`, states at `state + d * s_ds`. 13 x 11 tokens cross
/// several staging chunks.
fn scan_fused_case(kind_: ScanKernel) {
    scan_fused_on(
        &ScanData::new(700 + kind_ as u64, (2, 13, 11, 64, 32)),
        kind_,
    );
}

/// The four directions of `data` in one dispatch of the kernel `kind_`.
fn scan_fused_on(data: &ScanData, kind_: ScanKernel) {
    let Some(ctx) = ctx() else { return };
    let (len, s_len) = (data.len(), data.state_len());
    let mut hs = Harness::new(ctx);
    if !pin_scan(&mut hs, kind_) {
        return;
    }
    hs.graph.kernels.fused_scan = true;
    let y = hs.zeros(4 * len);
    let state = hs.zeros(4 * s_len);
    let args = data.args(&mut hs, y, state, 0);
    hs.graph
        .scan_fused(&args, len as u32, s_len as u32)
        .unwrap();
    assert_eq!(hs.graph.dispatch_kinds(), [scan_kind(kind_)]);
    hs.run();
    let kind = format!("{kind_:?} {}x{}", data.h, data.w);
    for d in 0..4 {
        let dir = [
            ops::ScanDirection::RowsForward,
            ops::ScanDirection::RowsBackward,
            ops::ScanDirection::ColsForward,
            ops::ScanDirection::ColsBackward,
        ][d];
        assert_eq!(dir.index(), d);
        let gpu = hs.read(y, d * len, len);
        let cpu = data.cpu(dir);
        check(
            &format!("fused {kind} scan, direction {d}"),
            &gpu,
            &cpu,
            REDUCTION,
        );
        let st = hs.read(state, d * s_len, s_len);
        data.check_final_state(
            &format!("fused {kind} scan, direction {d}, final state"),
            dir,
            &st,
            &cpu,
        );
    }
}

#[test]
fn scan_fused_vec4() {
    scan_fused_case(ScanKernel::Vec4);
}

#[test]
fn scan_fused_scalar() {
    scan_fused_case(ScanKernel::Scalar);
}

#[test]
fn scan_fused_subgroup() {
    scan_fused_case(ScanKernel::Subgroup);
}

/// The pipelined subgroup scan holds each token's y back until the next token (or the end of
/// the scan) reduces it: besides 13 x 11, sizes whose last token ends a partial staging chunk,
/// a single token (only the final flush writes y) and decays near the lower bound.
#[test]
fn scan_fused_subgroup_pipelined() {
    scan_fused_case(ScanKernel::SubgroupPipelined);
    for (k, &(b, h, w)) in CHUNK_SIZES.iter().chain(&[(1, 1, 1)]).enumerate() {
        let data = ScanData::with_decay(1500 + k as u64, (b, h, w, 64, 32), 0.545);
        scan_fused_on(&data, ScanKernel::SubgroupPipelined);
    }
}

/// The chunked kernel (16-token chunks): sizes that are not multiples of 16 (partial last
/// chunks, a single partial chunk), decays near the model's lower bound (0.545), each direction.
const CHUNK_SIZES: [(usize, usize, usize); 3] = [(2, 7, 9), (1, 13, 5), (2, 1, 37)];

fn scan_chunked_case(dir: ops::ScanDirection) {
    for (k, &(b, h, w)) in CHUNK_SIZES.iter().enumerate() {
        let seed = 900 + 10 * dir.index() as u64 + 100 * k as u64;
        scan_case_on(
            &ScanData::new(seed, (b, h, w, 64, 32)),
            dir,
            ScanKernel::Chunked,
        );
        scan_case_on(
            &ScanData::with_decay(seed + 7, (b, h, w, 64, 32), 0.545),
            dir,
            ScanKernel::Chunked,
        );
    }
}

#[test]
fn scan_chunked_rows_forward() {
    scan_chunked_case(ops::ScanDirection::RowsForward);
}

#[test]
fn scan_chunked_rows_backward() {
    scan_chunked_case(ops::ScanDirection::RowsBackward);
}

#[test]
fn scan_chunked_cols_forward() {
    scan_chunked_case(ops::ScanDirection::ColsForward);
}

#[test]
fn scan_chunked_cols_backward() {
    scan_chunked_case(ops::ScanDirection::ColsBackward);
}

/// Fused directions with the chunked kernel: 13 x 11 (several chunks, partial last), then the
/// sizes above and 3 x 1 (a single chunk of 3 tokens) with decays near the lower bound; head
/// sizes 16 and 8 (the kernel pads the state to 32 x 32).
#[test]
fn scan_fused_chunked() {
    scan_fused_case(ScanKernel::Chunked);
    for (k, &(b, h, w)) in CHUNK_SIZES.iter().chain(&[(1, 3, 1)]).enumerate() {
        let data = ScanData::with_decay(1300 + k as u64, (b, h, w, 64, 32), 0.545);
        scan_fused_on(&data, ScanKernel::Chunked);
    }
    for (k, &(c, n)) in [(48, 16), (24, 8)].iter().enumerate() {
        let data = ScanData::with_decay(1400 + k as u64, (2, 7, 9, c, n), 0.545);
        scan_fused_on(&data, ScanKernel::Chunked);
    }
}

#[test]
fn scan_subgroup_rows_backward() {
    scan_case_with(ops::ScanDirection::RowsBackward, ScanKernel::Subgroup);
}

#[test]
fn scan_subgroup_cols_forward() {
    scan_case_with(ops::ScanDirection::ColsForward, ScanKernel::Subgroup);
}

#[test]
fn scan_subgroup_pipelined_rows_forward() {
    scan_case_with(
        ops::ScanDirection::RowsForward,
        ScanKernel::SubgroupPipelined,
    );
}

#[test]
fn scan_subgroup_pipelined_cols_backward() {
    scan_case_with(
        ops::ScanDirection::ColsBackward,
        ScanKernel::SubgroupPipelined,
    );
}

#[test]
fn scan_rows_forward() {
    scan_case(ops::ScanDirection::RowsForward);
}

#[test]
fn scan_rows_backward() {
    scan_case(ops::ScanDirection::RowsBackward);
}

#[test]
fn scan_cols_forward() {
    scan_case(ops::ScanDirection::ColsForward);
}

#[test]
fn scan_cols_backward() {
    scan_case(ops::ScanDirection::ColsBackward);
}

#[test]
fn scan_scalar_kernel_rows_backward() {
    scan_case_with(ops::ScanDirection::RowsBackward, ScanKernel::Scalar);
}

#[test]
fn scan_scalar_kernel_cols_forward() {
    scan_case_with(ops::ScanDirection::ColsForward, ScanKernel::Scalar);
}

/// The segmented subgroup scan (`scan_sg.wgsl` ROLE 1, `scan_carry.wgsl`, ROLE 2) of `data`
/// with `segments`, fused or one direction at a time: its three dispatches per launch, each
/// direction's output and final states against the CPU reference. Returns the segment count.
fn scan_segmented_on(
    data: &ScanData,
    segments: ScanSegments,
    fused: bool,
    pipelined: bool,
) -> Option<u32> {
    scan_sg_on(data, segments, fused, pipelined, 4)
}

/// `scan_sg.wgsl` with its rows over `lanes` lanes (`KernelOptions::scan_lanes`; ROLE 1 of a
/// segmented scan keeps 4), whole or segmented: the segment count it ran with, `None` where
/// skipped.
fn scan_sg_on(
    data: &ScanData,
    segments: ScanSegments,
    fused: bool,
    pipelined: bool,
    lanes: u32,
) -> Option<u32> {
    let ctx = ctx()?;
    let (len, s_len) = (data.len(), data.state_len());
    let mut hs = Harness::new(ctx);
    if !pin_scan(&mut hs, ScanKernel::Subgroup)
        || !require_capability(
            hs.graph.can_scan_segmented(),
            "the limits of the segmented scan (256 invocations)",
        )
    {
        return None;
    }
    if lanes == 8 && !require_capability(hs.graph.subgroup_min >= 8, "subgroups of 8 lanes or more")
    {
        return None;
    }
    hs.graph.kernels.scan_pipelined = pipelined;
    hs.graph.kernels.fused_scan = fused;
    hs.graph.kernels.scan_segments = segments;
    hs.graph.kernels.scan_lanes = lanes;
    let y = hs.zeros(4 * len);
    let state = hs.zeros(4 * s_len);
    // stale values in the scratch must not leak into the results
    let scratch = hs.input(&vec![f32::NAN; scan_scratch_elems(data.n as u32) as usize]);
    let mut args = data.args(&mut hs, y, state, 0);
    args.scratch = Some(scratch);
    let (segs, seg_len) = hs.graph.scan_segments(&args);
    let launches = if fused {
        hs.graph
            .scan_fused(&args, len as u32, s_len as u32)
            .unwrap();
        1
    } else {
        for d in 0..4u32 {
            hs.graph
                .scan(&ScanArgs {
                    y: y.at(d * len as u32),
                    state: state.at(d * s_len as u32),
                    dir: d,
                    ..args
                })
                .unwrap();
        }
        4
    };
    let want: Vec<Kind> = if segs > 1 {
        [Kind::ScanSg, Kind::ScanCarry, Kind::ScanSg].repeat(launches)
    } else {
        vec![Kind::ScanSg; launches]
    };
    assert_eq!(hs.graph.dispatch_kinds(), want);
    let konst = |k: &KernelKey, name: &str| k.consts.iter().find(|c| c.0 == name).map(|c| c.1);
    for k in hs.graph.dispatch_keys() {
        if k.kind == Kind::ScanSg {
            let want = if konst(&k, "ROLE") == Some(1) {
                4
            } else {
                lanes
            };
            assert_eq!(konst(&k, "LANES"), Some(want), "{}", k.label());
        }
    }
    hs.run();
    let what = format!(
        "segmented scan {}x{}x{} ({segs} segments of {seg_len}, {segments:?}, fused {fused}, \
         pipelined {pipelined}, {lanes} lanes a row)",
        data.b, data.h, data.w
    );
    for (d, dir) in [
        ops::ScanDirection::RowsForward,
        ops::ScanDirection::RowsBackward,
        ops::ScanDirection::ColsForward,
        ops::ScanDirection::ColsBackward,
    ]
    .into_iter()
    .enumerate()
    {
        let gpu = hs.read(y, d * len, len);
        let cpu = data.cpu(dir);
        check(&format!("{what}, direction {d}"), &gpu, &cpu, REDUCTION);
        let st = hs.read(state, d * s_len, s_len);
        data.check_final_state(
            &format!("{what}, direction {d}, final state"),
            dir,
            &st,
            &cpu,
        );
    }
    Some(segs)
}

/// Segments of a fixed length: a partial last segment (13 x 11 = 143 tokens in 16s), segments
/// shorter than a staging chunk and not a multiple of it (5), one or two tokens each (the
/// scratch bound then caps the count), a single token (never segmented), decays near the
/// model's lower bound; fused and per direction, pipelined and serial.
#[test]
fn scan_segmented_lengths() {
    // (images, height, width), segment length, fused, pipelined, segments expected
    type Case = ((usize, usize, usize), u32, bool, bool, u32);
    let cases: [Case; 6] = [
        ((2, 13, 11), 16, true, true, 9),
        ((2, 13, 11), 5, false, true, 29),
        ((1, 7, 9), 1, true, false, 63),
        ((2, 13, 11), 1, true, true, 72),
        ((2, 1, 37), 8, false, false, 5),
        ((1, 1, 1), 1, true, true, 1),
    ];
    for (k, &(dims, len, fused, pipelined, want_segs)) in cases.iter().enumerate() {
        let (b, h, w) = dims;
        let data = ScanData::with_decay(1600 + k as u64, (b, h, w, 64, 32), 0.545);
        let Some(segs) = scan_segmented_on(&data, ScanSegments::Length(len), fused, pipelined)
        else {
            return;
        };
        assert_eq!(segs, want_segs, "{dims:?} in segments of {len}");
    }
}

/// The workgroup target: 1 x 16 x 16 with two heads has 8 scans, so 1024 workgroups would be
/// 128 segments, held to 4 by the 64-token minimum; Auto on a CPU adapter and Off do not segment;
/// the scan without a scratch buffer is never segmented.
#[test]
fn scan_segmented_workgroups() {
    let data = ScanData::new(1700, (1, 16, 16, 64, 32));
    let Some(segs) = scan_segmented_on(&data, ScanSegments::Workgroups(1024), true, true) else {
        return;
    };
    assert_eq!(segs, 4);
    assert_eq!(
        scan_segmented_on(&data, ScanSegments::Off, true, true),
        Some(1)
    );
    let ctx = ctx().unwrap();
    let mut hs = Harness::new(ctx);
    let (y, state) = (hs.zeros(4 * data.len()), hs.zeros(4 * data.state_len()));
    let mut args = data.args(&mut hs, y, state, 0);
    hs.graph.kernels.scan_segments = ScanSegments::Length(8);
    assert_eq!(hs.graph.scan_segments(&args), (1, 256), "no scratch");
    args.scratch = Some(hs.zeros(scan_scratch_elems(32) as usize));
    assert_eq!(hs.graph.scan_segments(&args), (32, 8));
    hs.graph.kernels.scan_segments = ScanSegments::Auto;
    let auto = hs.graph.scan_segments(&args);
    if hs.graph.cpu_adapter {
        assert_eq!(auto, (1, 256), "Auto on a CPU adapter");
    } else {
        assert_eq!(auto, (4, 64), "Auto on a GPU");
    }
}

/// The CI adapter, Mesa's lavapipe, has every capability the scan kernels' tests need, asserted
/// once by name: subgroups of at least 4 lanes on the device (`scan_sg.wgsl`, the shipped head
/// size's default scan) and the limits of `scan_chunk.wgsl`. A driver update or a change of
/// device creation that lost one fails here, not as silent skips. In CI (`DELTAWKV_CI` set) the
/// adapter must be lavapipe.
#[test]
fn ci_adapter_capabilities() {
    let Some(ctx) = ctx() else { return };
    let name = ctx.info.name.to_lowercase();
    if !(name.contains("llvmpipe") || name.contains("lavapipe")) {
        assert!(
            !in_ci(),
            "CI (DELTAWKV_CI set) runs on lavapipe, got {}",
            ctx.describe()
        );
        eprintln!(
            "SKIPPED (DELTAWKV_CI unset): not lavapipe ({})",
            ctx.describe()
        );
        return;
    }
    assert!(
        ctx.device.features().contains(wgpu::Features::SUBGROUP),
        "lavapipe's device was created without subgroups ({:?})",
        ctx.device.features()
    );
    assert!(
        ctx.info.subgroup_min_size >= 4,
        "lavapipe's subgroups: {}..{} lanes",
        ctx.info.subgroup_min_size,
        ctx.info.subgroup_max_size
    );
    assert!(ctx.has_subgroups());
    let limits = &ctx.limits;
    assert!(
        limits.max_compute_invocations_per_workgroup >= 256,
        "{} invocations per workgroup",
        limits.max_compute_invocations_per_workgroup
    );
    assert!(
        limits.max_compute_workgroup_storage_size >= SCAN_CHUNK_BYTES,
        "{} bytes of workgroup memory, scan_chunk.wgsl needs {SCAN_CHUNK_BYTES}",
        limits.max_compute_workgroup_storage_size
    );
    let graph = Graph::new(&ctx);
    assert!(graph.subgroups && graph.can_scan_chunked());
    // The tensor-core capabilities `bench` reports are read from the adapter: lavapipe offers
    // WGSL f16 (Mesa 22.3's shaderFloat16).
    let caps = ctx
        .capabilities
        .as_ref()
        .expect("a context opened by GpuContext::new reads its adapter's capabilities");
    assert!(caps.shader_f16, "lavapipe without SHADER_F16: {caps:?}");
}

/// State rows over 8 lanes (`sg8`): whole scans and segmented ones (whose second pass runs with
/// 8 lanes, the first with 4), pipelined and serial, fused and per direction, sizes that are not
/// multiples of the staging chunks, a single token, decays near the model's lower bound.
#[test]
fn scan_eight_lanes() {
    type Case = ((usize, usize, usize), ScanSegments, bool, bool);
    let cases: [Case; 6] = [
        ((2, 13, 11), ScanSegments::Off, true, true),
        ((2, 13, 11), ScanSegments::Off, false, false),
        ((1, 1, 1), ScanSegments::Off, true, true),
        ((2, 7, 9), ScanSegments::Length(16), true, true),
        ((1, 13, 5), ScanSegments::Length(5), false, false),
        ((2, 1, 37), ScanSegments::Length(8), true, false),
    ];
    for (k, &(dims, segments, fused, pipelined)) in cases.iter().enumerate() {
        let (b, h, w) = dims;
        let data = ScanData::with_decay(1800 + k as u64, (b, h, w, 64, 32), 0.545);
        if scan_sg_on(&data, segments, fused, pipelined, 8).is_none() {
            return;
        }
    }
}
