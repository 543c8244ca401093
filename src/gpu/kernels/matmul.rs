//! The matrix products (`shaders/network/matmul.wgsl`, `matmul_v4.wgsl`): their arguments, the
//! activation of their epilogue, their parameter block and launch.

use crate::engine::EngineError;
use crate::gpu::graph::{Graph, View};

use super::{KernelKey, Kind, grid_1d};

/// Activation fused into a matrix product's epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None = 0,
    Tanh = 1,
    Sigmoid = 2,
    ReluSquared = 3,
}

/// Matrix product `Y[z] (+)= act(X[z] W[z])` for `z < batch_z` (see
/// `shaders/network/matmul.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct MatmulArgs {
    pub x: View,
    pub x_zs: u32,
    pub w: View,
    pub w_zs: u32,
    pub y: View,
    pub y_zs: u32,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch_z: u32,
    pub act: Act,
    pub accumulate: bool,
}

wgsl_params! {
    /// The parameter block of both matrix products (`struct Params` of
    /// `shaders/common/matmul.wgsl`).
    MatmulParams {
        m: u32,
        n: u32,
        k: u32,
        x_off: u32,
        x_zs: u32,
        w_off: u32,
        w_zs: u32,
        y_off: u32,
        y_zs: u32,
        tiles_n: u32,
        tiles: u32,
    }
}

impl Graph {
    /// Appends a (batched) matrix product.
    pub fn matmul(&mut self, a: &MatmulArgs) -> Result<(), EngineError> {
        let aligned = [a.k, a.n, a.x.off, a.x_zs, a.w.off, a.w_zs, a.y.off, a.y_zs]
            .iter()
            .all(|v| v.is_multiple_of(4));
        let v4 = self.kernels.matmul_v4 && aligned;
        let coop = self
            .tensor_core_subgroup
            .filter(|_| self.kernels.matmul_coop && aligned && a.k.is_multiple_of(16));
        let epilogue = [("ACT", a.act as u32), ("ACCUM", a.accumulate as u32)];
        // the tiled kernels: their template constants and their BM x BN tile
        let tiled = |kind, bm: u32, bn: u32, wg: u32| {
            let mut consts = vec![("BM", bm), ("BN", bn), ("BK", 16), ("WG", wg)];
            consts.extend(epilogue);
            (KernelKey { kind, consts }, bm, bn)
        };
        let (key, bm, bn) = if let Some(sg) = coop {
            // 4 subgroups of 16 rows, each with one 16-column accumulator per 16 columns, up to
            // 6 (N = 96: one tile across)
            let nj = (1..=6u32)
                .rev()
                .find(|&j| a.n.is_multiple_of(16 * j))
                .unwrap_or(6);
            let mut consts = vec![("NJ", nj), ("WG", 4 * sg)];
            consts.extend(epilogue);
            let key = KernelKey {
                kind: Kind::MatmulCoop,
                consts,
            };
            (key, 64, 16 * nj)
        } else if v4 {
            let bn = if a.n.is_multiple_of(96) {
                96
            } else if a.n.is_multiple_of(64) {
                64
            } else {
                32
            };
            tiled(Kind::MatmulV4, 128, bn, (128 / 8) * (bn / 4))
        } else {
            tiled(Kind::Matmul, 64, 32, (64 / 4) * (32 / 4))
        };
        let tiles_n = a.n.div_ceil(bn);
        let tiles = a.m.div_ceil(bm) * tiles_n;
        let params = MatmulParams {
            m: a.m,
            n: a.n,
            k: a.k,
            x_off: a.x.off,
            x_zs: a.x_zs,
            w_off: a.w.off,
            w_zs: a.w_zs,
            y_off: a.y.off,
            y_zs: a.y_zs,
            tiles_n,
            tiles,
        };
        let [gx, gy] = grid_1d(tiles, self.max_groups());
        let (m, n, k, z) = (
            u64::from(a.m),
            u64::from(a.n),
            u64::from(a.k),
            u64::from(a.batch_z),
        );
        let w_copies = if a.w_zs == 0 { 1 } else { z };
        self.count_traffic(z * (m * k + m * n * (1 + a.accumulate as u64)) + w_copies * k * n);
        self.dispatch(
            key,
            vec![a.x.buf, a.w.buf, a.y.buf],
            &params,
            [gx, gy, a.batch_z],
        )
    }
}
