//! The delta-rule scans (`shaders/network/scan.wgsl`, `scan_vec4.wgsl`, `scan_sg.wgsl`,
//! `scan_chunk.wgsl`): their arguments, the choice among them, their parameter block and launch.

use crate::engine::EngineError;
use crate::gpu::graph::{BufId, Graph, View};

use super::{KernelKey, Kind, SCAN_CHUNK_BYTES, check_head_size};

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

    fn scan_dirs(
        &mut self,
        a: &ScanArgs,
        dirs: u32,
        y_ds: u32,
        s_ds: u32,
    ) -> Result<(), EngineError> {
        check_head_size(self.max_invocations(), a.head_size)?;
        let n = a.head_size;
        let key = if n <= 32 && self.kernels.scan_chunked && self.can_scan_chunked() {
            KernelKey {
                kind: Kind::ScanChunk,
                consts: vec![("N", n), ("CHUNK", 16), ("DIRS", dirs)],
            }
        } else if n == 32 && self.kernels.scan_subgroup && self.subgroups {
            // Six staged vectors per token, double-buffered; chunks of a multiple of 4 tokens.
            let chunk = (self.max_workgroup_bytes() / (2 * 4 * 6 * n)).clamp(4, 16) / 4 * 4;
            KernelKey {
                kind: Kind::ScanSg,
                consts: vec![
                    ("N", n),
                    ("NV", n / 4),
                    ("CHUNK", chunk),
                    ("DIRS", dirs),
                    ("PIPE", u32::from(self.kernels.scan_pipelined)),
                ],
            }
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
        let heads = a.c / n;
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
        };
        // Each direction reads the six per-token vectors and writes its output and final states.
        let tokens = u64::from(a.batch) * u64::from(a.height) * u64::from(a.width);
        let states = u64::from(a.batch) * u64::from(heads) * u64::from(n) * u64::from(n);
        self.count_traffic(u64::from(dirs) * (tokens * u64::from(a.c) * 7 + states));
        self.dispatch(
            key,
            vec![a.ins, a.r.buf, a.y.buf, a.state.buf],
            &params,
            [heads, a.batch, dirs],
        )
    }
}
