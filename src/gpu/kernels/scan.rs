//! The delta-rule scans (`shaders/network/scan.wgsl`, `scan_vec4.wgsl`, `scan_sg.wgsl`,
//! `scan_chunk.wgsl`, and the segmented form: `scan_sg.wgsl` ROLE 1, `scan_carry.wgsl`,
//! `scan_sg.wgsl` ROLE 2): their arguments, the choice among them, their parameter block and
//! launch.

use crate::engine::EngineError;
use crate::gpu::graph::{BufId, Graph, View};

use super::{
    KernelKey, Kind, SCAN_CHUNK_BYTES, SCAN_SEGMENT_MAX_WORKGROUPS, SCAN_SEGMENT_MIN_LEN,
    SCAN_SEGMENT_WORKGROUPS, ScanSegments, check_head_size,
};

/// Elements of the segment scratch a segmented scan may use (two N x N matrices for each of at
/// most [`SCAN_SEGMENT_MAX_WORKGROUPS`] segments), for head size `n`.
pub fn scan_scratch_elems(n: u32) -> u64 {
    2 * u64::from(n) * u64::from(n) * u64::from(SCAN_SEGMENT_MAX_WORKGROUPS)
}

/// One scan direction of the delta-rule recurrence (see `shaders/network/scan.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct ScanArgs {
    pub ins: BufId,
    pub lam_off: u32,
    pub kneg_off: u32,
    pub kb_off: u32,
    pub kt_off: u32,
    pub v_off: u32,
    pub r: View,
    pub y: View,
    /// Where the final `[batch][heads][N][N]` states of this direction go.
    pub state: View,
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub c: u32,
    pub head_size: u32,
    /// Scan direction 0..4 (spec table).
    pub dir: u32,
    /// The segment scratch ([`scan_scratch_elems`] elements from offset 0); without it the scan
    /// is never segmented.
    pub scratch: Option<BufId>,
}

wgsl_params! {
    /// The parameter block of the scans (`struct Params` of `shaders/common/scan.wgsl`).
    ScanParams {
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
}

impl Graph {
    /// Appends one direction of the delta-rule scan (`a.dir`).
    pub fn scan(&mut self, a: &ScanArgs) -> Result<(), EngineError> {
        self.scan_dirs(a, 1, 0, 0)
    }

    /// Appends all four directions of the delta-rule scan as one dispatch: direction `d` writes
    /// its output at `a.y + d * y_ds` and its final state at `a.state + d * s_ds` (`a.dir` is
    /// ignored).
    pub fn scan_fused(&mut self, a: &ScanArgs, y_ds: u32, s_ds: u32) -> Result<(), EngineError> {
        self.scan_dirs(a, 4, y_ds, s_ds)
    }

    /// Whether the adapter's limits allow `scan_chunk.wgsl` (256 invocations and
    /// [`SCAN_CHUNK_BYTES`] of workgroup memory); where not,
    /// [`KernelOptions::scan_chunked`](super::KernelOptions::scan_chunked) falls back to the
    /// other scan kernels.
    pub fn can_scan_chunked(&self) -> bool {
        self.max_invocations() >= 256 && self.max_workgroup_bytes() >= SCAN_CHUNK_BYTES
    }

    /// Whether the adapter runs the segmented scan: the subgroup scan for head size 32 with
    /// 256 invocations per workgroup (ROLE 1 has 8 N threads) and enough workgroup memory for
    /// its staging chunks of 8 tokens.
    pub fn can_scan_segmented(&self) -> bool {
        self.subgroups
            && self.max_invocations() >= 256
            && self.max_workgroup_bytes() >= 2 * 8 * 6 * 32 * 4
    }

    /// The segments (count, tokens each) a scan of `a` with `dirs` directions per dispatch is
    /// cut into under the graph's [`ScanSegments`]; `(1, tokens)` when it is not.
    pub fn scan_segments(&self, a: &ScanArgs) -> (u32, u32) {
        let l = a.height * a.width;
        let whole = (1, l);
        let uses_sg = a.head_size == 32
            && self.kernels.scan_subgroup
            && !self.kernels.scan_chunked
            && a.scratch.is_some()
            && self.can_scan_segmented();
        if !uses_sg || l < 2 {
            return whole;
        }
        // images x heads x 4 directions (the scratch holds all four even when they are
        // dispatched one at a time)
        let per_seg = a
            .batch
            .saturating_mul(a.c / a.head_size)
            .saturating_mul(4)
            .max(1);
        let max_segs = SCAN_SEGMENT_MAX_WORKGROUPS / per_seg;
        let segs = match self.kernels.scan_segments {
            ScanSegments::Off => return whole,
            ScanSegments::Auto if self.cpu_adapter => return whole,
            ScanSegments::Auto => (SCAN_SEGMENT_WORKGROUPS / per_seg).min(l / SCAN_SEGMENT_MIN_LEN),
            ScanSegments::Workgroups(w) => {
                (w.min(SCAN_SEGMENT_MAX_WORKGROUPS) / per_seg).min(l / SCAN_SEGMENT_MIN_LEN)
            }
            ScanSegments::Length(len) => l.div_ceil(len).min(max_segs),
        };
        if segs < 2 {
            return whole;
        }
        let seg_len = l.div_ceil(segs);
        (l.div_ceil(seg_len), seg_len)
    }

    fn scan_dirs(
        &mut self,
        a: &ScanArgs,
        dirs: u32,
        y_ds: u32,
        s_ds: u32,
    ) -> Result<(), EngineError> {
        check_head_size(self.max_invocations(), a.head_size)?;
        let n = a.head_size;
        let heads = a.c / n;
        let l = a.height * a.width;
        let params = ScanParams {
            height: a.height,
            width: a.width,
            c: a.c,
            heads,
            dir: a.dir,
            r_off: a.r.off,
            lam_off: a.lam_off,
            kneg_off: a.kneg_off,
            kb_off: a.kb_off,
            kt_off: a.kt_off,
            v_off: a.v_off,
            y_off: a.y.off,
            state_off: a.state.off,
            y_ds,
            s_ds,
            segs: 1,
            seg_len: l,
        };
        // Each direction reads the six per-token vectors and writes its output and final states.
        let tokens = u64::from(a.batch) * u64::from(a.height) * u64::from(a.width);
        let states = u64::from(a.batch) * u64::from(heads) * u64::from(n) * u64::from(n);
        self.count_traffic(u64::from(dirs) * (tokens * u64::from(a.c) * 7 + states));
        let (segs, seg_len) = self.scan_segments(a);
        if let (true, Some(scratch)) = (segs > 1, a.scratch) {
            return self.scan_segmented(a, params, dirs, segs, seg_len, scratch);
        }
        let key = if n <= 32 && self.kernels.scan_chunked && self.can_scan_chunked() {
            KernelKey {
                kind: Kind::ScanChunk,
                consts: vec![("N", n), ("CHUNK", 16), ("DIRS", dirs)],
            }
        } else if n == 32 && self.kernels.scan_subgroup && self.subgroups {
            self.scan_sg_key(n, dirs, 0)
        } else if n.is_multiple_of(4) && self.kernels.scan_vec4 {
            // Six staged vectors per token, double-buffered; stay within the workgroup memory
            // limit.
            let chunk = (self.max_workgroup_bytes() / (2 * 4 * 6 * n)).clamp(1, 16);
            KernelKey {
                kind: Kind::ScanVec4,
                consts: vec![("N", n), ("NV", n / 4), ("CHUNK", chunk), ("DIRS", dirs)],
            }
        } else {
            let chunk = (self.max_workgroup_bytes() / (4 * 6 * n)).clamp(1, 16);
            KernelKey {
                kind: Kind::Scan,
                consts: vec![("N", n), ("CHUNK", chunk), ("DIRS", dirs)],
            }
        };
        self.dispatch(
            key,
            vec![a.ins, a.r.buf, a.y.buf, a.state.buf],
            &params,
            [heads, a.batch, dirs],
        )
    }

    /// `scan_sg.wgsl` with `ROLE` (0 whole scans, 1 segment summaries with 8 N threads, 2
    /// segment outputs) and its rows over 4 or 8 lanes ([`KernelOptions::scan_lanes`](crate::gpu::shader::KernelOptions::scan_lanes)).
    fn scan_sg_key(&self, n: u32, dirs: u32, role: u32) -> KernelKey {
        // ROLE 1 keeps 4 lanes a row (its 2 N rows already make 8 N threads)
        let lanes = if role != 1 && self.kernels.scan_lanes == 8 && self.subgroup_min >= 8 {
            8
        } else {
            4
        };
        let wg = if role == 1 { 8 * n } else { lanes * n };
        // Six staged vectors per token, double-buffered; chunks of a multiple of the tokens one
        // pass of the staging threads covers (wg / n).
        let step = wg / n;
        let chunk = (self.max_workgroup_bytes() / (2 * 4 * 6 * n)).clamp(step, 16) / step * step;
        KernelKey {
            kind: Kind::ScanSg,
            consts: vec![
                ("N", n),
                ("NV", n / 4),
                ("CHUNK", chunk),
                ("DIRS", dirs),
                ("PIPE", u32::from(self.kernels.scan_pipelined)),
                ("ROLE", role),
                ("LANES", lanes),
                ("WG", wg),
            ],
        }
    }

    /// The segmented scan: every segment from a zero state with its transition (ROLE 1), the
    /// states carried across segments (`scan_carry.wgsl`, which also writes the final states),
    /// every segment again from its true start state for y (ROLE 2).
    fn scan_segmented(
        &mut self,
        a: &ScanArgs,
        params: ScanParams,
        dirs: u32,
        segs: u32,
        seg_len: u32,
        scratch: BufId,
    ) -> Result<(), EngineError> {
        let n = a.head_size;
        let heads = params.heads;
        let rows = a.batch.checked_mul(segs).ok_or_else(|| {
            EngineError::Limit("too many scan segments for the workgroup grid".into())
        })?;
        let seg = ScanParams {
            segs,
            seg_len,
            state_off: 0,
            ..params
        };
        // the second pass over the inputs and the scratch: 2 N x N per segment, written by
        // ROLE 1, read and written by the carry, read by ROLE 2
        let tokens = u64::from(a.batch) * u64::from(a.height) * u64::from(a.width);
        let mats = u64::from(rows) * u64::from(heads) * u64::from(dirs) * u64::from(n * n);
        self.count_traffic(u64::from(dirs) * tokens * u64::from(a.c) * 5 + 6 * mats);
        let bufs = vec![a.ins, a.r.buf, a.y.buf, scratch];
        self.dispatch(
            self.scan_sg_key(n, dirs, 1),
            bufs.clone(),
            &seg,
            [heads, rows, dirs],
        )?;
        self.dispatch(
            KernelKey {
                kind: Kind::ScanCarry,
                consts: vec![("N", n), ("WG", n * n / 4), ("DIRS", dirs)],
            },
            vec![a.ins, a.r.buf, scratch, a.state.buf],
            &ScanParams {
                y_off: 0,
                state_off: params.state_off,
                ..seg
            },
            [heads, a.batch, dirs],
        )?;
        self.dispatch(
            self.scan_sg_key(n, dirs, 2),
            bufs,
            &seg,
            [heads, rows, dirs],
        )
    }
}
