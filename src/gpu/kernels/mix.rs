//! The fused elementwise kernels of the spatial mix (`shaders/network/shift_mix.wgsl`,
//! `att_prep.wgsl`, `combine.wgsl`): their arguments, parameter blocks and launches.

use crate::engine::EngineError;
use crate::gpu::graph::{BufId, Graph, View};

use super::{KernelKey, Kind, check_head_size, grid_1d, rows_for};

/// 2-D token shift and `nmix` interpolations (see `shaders/network/shift_mix.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct ShiftMixArgs {
    pub x: View,
    pub y: View,
    /// Distance between consecutive outputs in `y`.
    pub y_zs: u32,
    pub weights: BufId,
    /// Offset of the `nmix` consecutive mu vectors.
    pub mu_off: u32,
    pub nmix: u32,
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub c: u32,
    pub head_size: u32,
}

wgsl_params! {
    /// The parameter block of `shift_mix.wgsl` (its `struct Params`).
    ShiftMixParams {
        total: u32,
        height: u32,
        width: u32,
        c: u32,
        n: u32,
        in_off: u32,
        out_off: u32,
        out_zs: u32,
        mu_off: u32,
    }
}

/// The fused decay / learning rate / value residual / keys kernel (see
/// `shaders/network/att_prep.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct AttPrepArgs {
    pub proj: BufId,
    pub k_off: u32,
    pub v_off: u32,
    pub lora: BufId,
    pub wu_off: u32,
    pub au_off: u32,
    /// Offset of the value LoRA output (ignored in block 0).
    pub vu_off: u32,
    pub weights: BufId,
    pub w0_off: u32,
    pub a0_off: u32,
    /// Offset of `v0` (ignored in block 0).
    pub v0_off: u32,
    pub kk_off: u32,
    pub ka_off: u32,
    pub outs: BufId,
    pub lam_off: u32,
    pub kneg_off: u32,
    pub kb_off: u32,
    pub kt_off: u32,
    pub vo_off: u32,
    pub vfirst: View,
    /// Block 0: writes `v_first = v` instead of applying the value residual.
    pub first: bool,
    pub m: u32,
    pub c: u32,
    pub head_size: u32,
}

wgsl_params! {
    /// The parameter block of `att_prep.wgsl` (its `struct Params`).
    AttPrepParams {
        pairs: u32,
        c: u32,
        heads: u32,
        k_off: u32,
        v_off: u32,
        wu_off: u32,
        au_off: u32,
        vu_off: u32,
        w0_off: u32,
        a0_off: u32,
        v0_off: u32,
        kk_off: u32,
        ka_off: u32,
        lam_off: u32,
        kneg_off: u32,
        kb_off: u32,
        kt_off: u32,
        vo_off: u32,
        vf_off: u32,
    }
}

/// Sum of directions, GroupNorm, bonus and gate (see `shaders/network/combine.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct CombineArgs {
    pub ydir: View,
    pub y_zs: u32,
    pub ins: BufId,
    pub kt_off: u32,
    pub v_off: u32,
    pub r: View,
    pub gate: View,
    pub weights: BufId,
    pub rk_off: u32,
    pub gw_off: u32,
    pub gb_off: u32,
    pub out: View,
    pub m: u32,
    pub c: u32,
    pub head_size: u32,
    pub eps: f32,
}

wgsl_params! {
    /// The parameter block of `combine.wgsl` (its `struct Params`).
    CombineParams {
        pairs: u32,
        c: u32,
        heads: u32,
        y_off: u32,
        y_zs: u32,
        kt_off: u32,
        v_off: u32,
        r_off: u32,
        g_off: u32,
        rk_off: u32,
        gw_off: u32,
        gb_off: u32,
        out_off: u32,
        eps: f32,
    }
}

impl Graph {
    /// Appends a token shift with interpolations.
    pub fn shift_mix(&mut self, a: &ShiftMixArgs) -> Result<(), EngineError> {
        let wg = 256u32;
        let key = KernelKey {
            kind: Kind::ShiftMix,
            consts: vec![("WG", wg), ("NMIX", a.nmix)],
        };
        let total = a
            .batch
            .checked_mul(a.height * a.width * a.c)
            .ok_or_else(|| EngineError::Limit("shift_mix: size overflows 32 bits".into()))?;
        let params = ShiftMixParams {
            total,
            height: a.height,
            width: a.width,
            c: a.c,
            n: a.head_size,
            in_off: a.x.off,
            out_off: a.y.off,
            out_zs: a.y_zs,
            mu_off: a.mu_off,
        };
        let [gx, gy] = grid_1d(total.div_ceil(wg), self.max_groups());
        let nmix = u64::from(a.nmix);
        self.count_traffic(u64::from(total) * (1 + nmix) + nmix * u64::from(a.c));
        self.dispatch(key, vec![a.x.buf, a.weights, a.y.buf], &params, [gx, gy, 1])
    }

    /// Appends the fused decay / keys / value residual kernel.
    pub fn att_prep(&mut self, a: &AttPrepArgs) -> Result<(), EngineError> {
        check_head_size(self.max_invocations(), a.head_size)?;
        let n = a.head_size;
        let rows = rows_for(n);
        let key = KernelKey {
            kind: Kind::AttPrep,
            consts: vec![
                ("N", n),
                ("ROWS", rows),
                ("WG", n * rows),
                ("FIRST", a.first as u32),
            ],
        };
        let heads = a.c / n;
        let pairs = a.m * heads;
        let params = AttPrepParams {
            pairs,
            c: a.c,
            heads,
            k_off: a.k_off,
            v_off: a.v_off,
            wu_off: a.wu_off,
            au_off: a.au_off,
            vu_off: a.vu_off,
            w0_off: a.w0_off,
            a0_off: a.a0_off,
            v0_off: a.v0_off,
            kk_off: a.kk_off,
            ka_off: a.ka_off,
            lam_off: a.lam_off,
            kneg_off: a.kneg_off,
            kb_off: a.kb_off,
            kt_off: a.kt_off,
            vo_off: a.vo_off,
            vf_off: a.vfirst.off,
        };
        let [gx, gy] = grid_1d(pairs.div_ceil(rows), self.max_groups());
        // Reads k, v and the decay / learning-rate LoRA outputs (plus the value LoRA output and
        // v_first after block 0); writes lambda, -kk, kk * a, kt, v (plus v_first in block 0).
        let per_token = if a.first { 4 + 6 } else { 6 + 5 };
        self.count_traffic(u64::from(a.m) * u64::from(a.c) * per_token);
        self.dispatch(
            key,
            vec![a.proj, a.lora, a.weights, a.outs, a.vfirst.buf],
            &params,
            [gx, gy, 1],
        )
    }

    /// Appends the combine kernel.
    pub fn combine(&mut self, a: &CombineArgs) -> Result<(), EngineError> {
        check_head_size(self.max_invocations(), a.head_size)?;
        let n = a.head_size;
        let rows = rows_for(n);
        let key = KernelKey {
            kind: Kind::Combine,
            consts: vec![("N", n), ("ROWS", rows), ("WG", n * rows)],
        };
        let heads = a.c / n;
        let pairs = a.m * heads;
        let params = CombineParams {
            pairs,
            c: a.c,
            heads,
            y_off: a.ydir.off,
            y_zs: a.y_zs,
            kt_off: a.kt_off,
            v_off: a.v_off,
            r_off: a.r.off,
            g_off: a.gate.off,
            rk_off: a.rk_off,
            gw_off: a.gw_off,
            gb_off: a.gb_off,
            out_off: a.out.off,
            eps: a.eps,
        };
        let [gx, gy] = grid_1d(pairs.div_ceil(rows), self.max_groups());
        // Reads the four directions' outputs, kt, v, r and the gate; writes the result.
        self.count_traffic(u64::from(a.m) * u64::from(a.c) * 9);
        self.dispatch(
            key,
            vec![a.ydir.buf, a.ins, a.r.buf, a.gate.buf, a.weights, a.out.buf],
            &params,
            [gx, gy, 1],
        )
    }
}
