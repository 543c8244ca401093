//! The LayerNorms (`shaders/network/layer_norm.wgsl`, `layer_norm_rows.wgsl`): their arguments,
//! parameter block and launch.

use crate::engine::EngineError;
use crate::gpu::graph::{BufId, Graph, View};

use super::{KernelKey, Kind, LAYER_NORM_ROWS_MAX_C, grid_1d};

/// LayerNorm of `m` tokens of `c` channels.
#[derive(Clone, Copy, Debug)]
pub struct LayerNormArgs {
    pub x: View,
    pub y: View,
    pub weights: BufId,
    pub w_off: u32,
    pub b_off: u32,
    pub m: u32,
    pub c: u32,
    pub eps: f32,
}

wgsl_params! {
    /// The parameter block of both LayerNorms (`struct Params` of
    /// `shaders/common/layer_norm.wgsl`).
    LayerNormParams {
        m: u32,
        c: u32,
        in_off: u32,
        out_off: u32,
        w_off: u32,
        b_off: u32,
        eps: f32,
    }
}

impl Graph {
    /// Appends a LayerNorm: `layer_norm_rows.wgsl` when
    /// [`KernelOptions::layer_norm_rows`](super::KernelOptions::layer_norm_rows) is on and `a.c`
    /// is at most [`LAYER_NORM_ROWS_MAX_C`], `layer_norm.wgsl` otherwise.
    pub fn layer_norm(&mut self, a: &LayerNormArgs) -> Result<(), EngineError> {
        let rows_kernel = self.kernels.layer_norm_rows
            && (1..=LAYER_NORM_ROWS_MAX_C).contains(&a.c)
            && self.max_invocations() >= 128;
        let (key, groups) = if rows_kernel {
            // Rows of up to 32 lanes (a power of 2, no wider than the channels), 128 threads.
            let r = a.c.next_power_of_two().min(32);
            let rows = 128 / r;
            let key = KernelKey {
                kind: Kind::LayerNormRows,
                consts: vec![
                    ("R", r),
                    ("ROWS", rows),
                    ("WG", r * rows),
                    ("K", a.c.div_ceil(r)),
                ],
            };
            (key, a.m.div_ceil(rows))
        } else {
            let wg = 64u32;
            let key = KernelKey {
                kind: Kind::LayerNorm,
                consts: vec![("WG", wg)],
            };
            (key, a.m.div_ceil(wg))
        };
        let params = LayerNormParams {
            m: a.m,
            c: a.c,
            in_off: a.x.off,
            out_off: a.y.off,
            w_off: a.w_off,
            b_off: a.b_off,
            eps: a.eps,
        };
        self.count_traffic(2 * u64::from(a.m) * u64::from(a.c) + 2 * u64::from(a.c));
        let [gx, gy] = grid_1d(groups, self.max_groups());
        self.dispatch(key, vec![a.x.buf, a.weights, a.y.buf], &params, [gx, gy, 1])
    }
}
