//! The whole Delta-WKV forward pass as a [`Graph`] for a batch of `B` slices of `h x w`: the
//! activation buffers ([`Arena`]) and the dispatch sequence of `docs/model-spec.md`.
//!
//! Layout: every activation is `B x h x w x C` (tokens of all images back to back, NHWC), so a
//! convolution reads the token buffer as an image with no transpose. Buffers are reused across
//! blocks; within a block the interpolation buffer `xs` is recycled for the scan inputs once the
//! projections have consumed it (see [`Arena`]).

use crate::engine::EngineError;

use super::context::GpuContext;
use super::graph::{BufId, Graph, staging_buffer, storage_buffer};
use super::kernels::scan::scan_scratch_elems;
use super::kernels::{
    Act, AttPrepArgs, CombineArgs, ConvArgs, KernelOptions, LayerNormArgs, MatmulArgs, ScanArgs,
    ShiftMixArgs, u32_of,
};
use super::weights::PackedWeights;

/// LayerNorm epsilon (spec).
const LN_EPS: f32 = 1e-5;
/// GroupNorm epsilon of `ln_x` (spec).
const GN_EPS: f32 = 64e-5;
/// LeakyReLU slope after `conv_before_upsample` (spec).
const LEAKY: f32 = 0.01;

/// Element counts of the activation buffers for a batch of `batch` slices of `h x w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaSizes {
    pub input: u64,
    pub t: u64,
    pub tin: u64,
    pub f0: u64,
    pub vfirst: u64,
    pub xln: u64,
    /// The six interpolations; then the five scan inputs; also the ffn interpolation and the
    /// `conv_before_upsample` output.
    pub xs: u64,
    /// r, k, v projections; also the channel-mix hidden layer.
    pub rkv: u64,
    /// The four LoRA bottlenecks (w, a, v, g), `m x R_max` each.
    pub lora_d: u64,
    /// The four LoRA outputs (w, a, v, g).
    pub lora_u: u64,
    /// The four direction outputs.
    pub ydir: u64,
    /// The delta-rule state buffer: `[direction][image][head][N][N]`.
    pub state: u64,
    /// The segmented scans' scratch ([`scan_scratch_elems`]; independent of the batch).
    pub scan_scratch: u64,
    /// Upsampler stages 1, 3, ... and 2, 4, ...
    pub hr: [u64; 2],
    pub output: u64,
}

impl ArenaSizes {
    /// Sizes for `pw`'s network on `batch` slices of `h x w`.
    pub fn new(pw: &PackedWeights, batch: usize, h: usize, w: usize) -> Self {
        let cfg = &pw.config;
        let m = (batch * h * w) as u64;
        let c = cfg.dim as u64;
        let mc = m * c;
        let cup = pw.upsample_channels() as u64;
        let rmax = cfg
            .lora_rank_w
            .max(cfg.lora_rank_a)
            .max(cfg.lora_rank_v)
            .max(cfg.lora_rank_g) as u64;
        let mut hr = [0u64; 2];
        let mut factor = 1u64;
        for i in 0..pw.upsample.len() {
            factor *= 4;
            hr[i % 2] = hr[i % 2].max(m * factor * cup);
        }
        let s = cfg.scale as u64;
        Self {
            input: m,
            t: mc,
            tin: mc,
            f0: mc,
            vfirst: mc,
            xln: mc,
            xs: (6 * mc).max(m * cup),
            rkv: 3.max(cfg.ffn_ratio as u64) * mc,
            lora_d: 4 * m * rmax,
            lora_u: 4 * mc,
            ydir: 4 * mc,
            state: 4 * batch as u64 * cfg.dim as u64 * cfg.head_size as u64,
            scan_scratch: scan_scratch_elems(cfg.head_size as u32),
            hr,
            output: m * s * s,
        }
    }

    fn all(&self) -> [u64; 17] {
        [
            self.input,
            self.t,
            self.tin,
            self.f0,
            self.vfirst,
            self.xln,
            self.xs,
            self.rkv,
            self.lora_d,
            self.lora_u,
            self.ydir,
            self.state,
            self.scan_scratch,
            self.hr[0],
            self.hr[1],
            self.output,
            // the readback staging buffer
            self.output,
        ]
    }

    /// Total bytes of all buffers (activations, state, readback).
    pub fn total_bytes(&self) -> u64 {
        self.all().iter().map(|e| e * 4).sum()
    }

    /// Bytes of the largest single buffer.
    pub fn largest_bytes(&self) -> u64 {
        self.all().iter().map(|e| e * 4).max().unwrap_or(0)
    }
}

/// The activation buffers for up to `capacity` slices of `h x w`.
pub struct Arena {
    pub capacity: usize,
    pub h: usize,
    pub w: usize,
    pub sizes: ArenaSizes,
    input: wgpu::Buffer,
    t: wgpu::Buffer,
    tin: wgpu::Buffer,
    f0: wgpu::Buffer,
    vfirst: wgpu::Buffer,
    xln: wgpu::Buffer,
    xs: wgpu::Buffer,
    rkv: wgpu::Buffer,
    lora_d: wgpu::Buffer,
    lora_u: wgpu::Buffer,
    ydir: wgpu::Buffer,
    /// The delta-rule state buffer (final state of every scan of the last block run).
    pub state: wgpu::Buffer,
    scan_scratch: wgpu::Buffer,
    hr: [wgpu::Buffer; 2],
    output: wgpu::Buffer,
    /// Mappable copy of `output`.
    pub staging: wgpu::Buffer,
}

impl Arena {
    /// Allocates the buffers (inside an error scope: an allocation failure is
    /// [`EngineError::OutOfMemory`]).
    pub fn new(
        ctx: &GpuContext,
        pw: &PackedWeights,
        capacity: usize,
        h: usize,
        w: usize,
    ) -> Result<Self, EngineError> {
        let sizes = ArenaSizes::new(pw, capacity, h, w);
        check_fits(ctx, &sizes)?;
        ctx.scoped(|| {
            let mk = |label: &str, n: u64| storage_buffer(ctx, label, n);
            Self {
                capacity,
                h,
                w,
                sizes,
                input: mk("input", sizes.input),
                t: mk("t", sizes.t),
                tin: mk("t_in", sizes.tin),
                f0: mk("f0", sizes.f0),
                vfirst: mk("v_first", sizes.vfirst),
                xln: mk("xln", sizes.xln),
                xs: mk("xs", sizes.xs),
                rkv: mk("rkv", sizes.rkv),
                lora_d: mk("lora_d", sizes.lora_d),
                lora_u: mk("lora_u", sizes.lora_u),
                ydir: mk("ydir", sizes.ydir),
                state: mk("state", sizes.state),
                scan_scratch: mk("scan_scratch", sizes.scan_scratch),
                hr: [mk("hr_a", sizes.hr[0]), mk("hr_b", sizes.hr[1])],
                output: mk("output", sizes.output),
                staging: staging_buffer(ctx, sizes.output),
            }
        })
        .map_err(|e| match e {
            EngineError::OutOfMemory(msg) => EngineError::OutOfMemory(format!(
                "{msg} (allocating {} MiB of activation buffers for {capacity} slice(s) of \
                 {h}x{w})",
                sizes.total_bytes().div_ceil(1 << 20)
            )),
            e => e,
        })
    }

    /// The input buffer (`capacity x h x w` values).
    pub fn input(&self) -> &wgpu::Buffer {
        &self.input
    }
}

/// Checks every buffer against the device's buffer and binding limits and the kernels' 32-bit
/// indices.
pub fn check_fits(ctx: &GpuContext, sizes: &ArenaSizes) -> Result<(), EngineError> {
    let largest = sizes.largest_bytes();
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size)
        .min(u32::MAX as u64 * 4);
    if largest > limit {
        return Err(EngineError::OutOfMemory(format!(
            "a {largest}-byte activation buffer exceeds the adapter's {limit}-byte buffer limit"
        )));
    }
    Ok(())
}

/// Records the forward pass of `batch` slices (`batch <= arena.capacity`) from the arena's input
/// buffer to its staging buffer, with a segment mark after every block.
pub fn build_forward(
    ctx: &GpuContext,
    pw: &PackedWeights,
    weights: &wgpu::Buffer,
    arena: &Arena,
    batch: usize,
    kernels: KernelOptions,
) -> Result<Graph, EngineError> {
    if batch == 0 || batch > arena.capacity {
        return Err(EngineError::Limit(format!(
            "batch {batch} does not fit an arena of {} slices",
            arena.capacity
        )));
    }
    let cfg = &pw.config;
    let (h, w) = (arena.h, arena.w);
    let sz = ArenaSizes::new(pw, batch, h, w);
    let mut g = Graph::new(ctx);
    g.kernels = kernels;
    let wts = g.add_buffer(weights.clone());
    let input = g.add_buffer(arena.input.clone());
    let t_a = g.add_buffer(arena.t.clone());
    let t_b = g.add_buffer(arena.tin.clone());
    let f0 = g.add_buffer(arena.f0.clone());
    let vfirst = g.add_buffer(arena.vfirst.clone());
    let xln = g.add_buffer(arena.xln.clone());
    let xs = g.add_buffer(arena.xs.clone());
    let rkv = g.add_buffer(arena.rkv.clone());
    let lora_d = g.add_buffer(arena.lora_d.clone());
    let lora_u = g.add_buffer(arena.lora_u.clone());
    let ydir = g.add_buffer(arena.ydir.clone());
    let state = g.add_buffer(arena.state.clone());
    let scan_scratch = g.add_buffer(arena.scan_scratch.clone());
    let hr = [
        g.add_buffer(arena.hr[0].clone()),
        g.add_buffer(arena.hr[1].clone()),
    ];
    let output = g.add_buffer(arena.output.clone());
    let staging = g.add_buffer(arena.staging.clone());

    let b32 = u32_of(batch, "batch")?;
    let h32 = u32_of(h, "height")?;
    let w32 = u32_of(w, "width")?;
    let m = u32_of(batch * h * w, "tokens")?;
    let c = u32_of(cfg.dim, "dim")?;
    let n = u32_of(cfg.head_size, "head size")?;
    let mc = m
        .checked_mul(c)
        .ok_or_else(|| EngineError::Limit("batch too large for 32-bit indices".into()))?;
    let hid = u32_of(cfg.ffn_ratio * cfg.dim, "hidden size")?;
    let rmax = u32_of(
        cfg.lora_rank_w
            .max(cfg.lora_rank_a)
            .max(cfg.lora_rank_v)
            .max(cfg.lora_rank_g),
        "lora rank",
    )?;
    let state_dir = u32_of(sz.state as usize / 4, "state size")?;
    let (rw, ra, rv, rg) = (
        u32_of(cfg.lora_rank_w, "rank")?,
        u32_of(cfg.lora_rank_a, "rank")?,
        u32_of(cfg.lora_rank_v, "rank")?,
        u32_of(cfg.lora_rank_g, "rank")?,
    );

    let conv = |g: &mut Graph,
                cw: &super::weights::ConvW,
                src: BufId,
                dst: BufId,
                hh: u32,
                ww: u32,
                accumulate: bool,
                leaky: Option<f32>,
                shuffle: bool| {
        g.conv3x3(&ConvArgs {
            src: src.at(0),
            weights: wts,
            w_off: cw.w,
            b_off: cw.b,
            dst: dst.at(0),
            batch: b32,
            height: hh,
            width: ww,
            cin: cw.cin,
            cout: cw.cout,
            accumulate,
            leaky,
            shuffle,
        })
    };
    let ln = |g: &mut Graph, x: BufId, y: BufId, (wo, bo): (u32, u32)| {
        g.layer_norm(&LayerNormArgs {
            x: x.at(0),
            y: y.at(0),
            weights: wts,
            w_off: wo,
            b_off: bo,
            m,
            c,
            eps: LN_EPS,
        })
    };
    let mm = |g: &mut Graph,
              x: BufId,
              x_off: u32,
              w_off: u32,
              y: BufId,
              y_off: u32,
              nn: u32,
              k: u32,
              act: Act,
              accumulate: bool| {
        g.matmul(&MatmulArgs {
            x: x.at(x_off),
            x_zs: 0,
            w: wts.at(w_off),
            w_zs: 0,
            y: y.at(y_off),
            y_zs: 0,
            m,
            n: nn,
            k,
            batch_z: 1,
            act,
            accumulate,
        })
    };

    // Shallow features.
    conv(
        &mut g,
        &pw.conv_first,
        input,
        f0,
        h32,
        w32,
        false,
        None,
        false,
    )?;
    ln(&mut g, f0, t_a, pw.patch_norm)?;
    g.mark();

    let (mut cur, mut other) = (t_a, t_b);
    let mut l = 0usize;
    for (gi, gconv) in pw.group_convs.iter().enumerate() {
        g.copy(cur.at(0), other.at(0), mc as u64);
        for _ in 0..cfg.blocks_per_group {
            let bw = pw.blocks.get(l).ok_or_else(|| {
                EngineError::Checkpoint(format!("checkpoint has no block {l} in group {gi}"))
            })?;
            // Spatial mix.
            ln(&mut g, cur, xln, (bw.ln1_w, bw.ln1_b))?;
            g.shift_mix(&ShiftMixArgs {
                x: xln.at(0),
                y: xs.at(0),
                y_zs: mc,
                weights: wts,
                mu_off: bw.mu6,
                nmix: 6,
                batch: b32,
                height: h32,
                width: w32,
                c,
                head_size: n,
            })?;
            g.matmul(&MatmulArgs {
                x: xs.at(0),
                x_zs: mc,
                w: wts.at(bw.wrkv),
                w_zs: c * c,
                y: rkv.at(0),
                y_zs: mc,
                m,
                n: c,
                k: c,
                batch_z: 3,
                act: Act::None,
                accumulate: false,
            })?;
            // LoRAs: inputs x_w = xs[3], x_a = xs[4], x_v = xs[2], x_g = xs[5].
            let d = |slot: u32| slot * m * rmax;
            mm(
                &mut g,
                xs,
                3 * mc,
                bw.w1,
                lora_d,
                d(0),
                rw,
                c,
                Act::Tanh,
                false,
            )?;
            mm(
                &mut g,
                lora_d,
                d(0),
                bw.w2,
                lora_u,
                0,
                c,
                rw,
                Act::None,
                false,
            )?;
            mm(
                &mut g,
                xs,
                4 * mc,
                bw.a1,
                lora_d,
                d(1),
                ra,
                c,
                Act::None,
                false,
            )?;
            mm(
                &mut g,
                lora_d,
                d(1),
                bw.a2,
                lora_u,
                mc,
                c,
                ra,
                Act::None,
                false,
            )?;
            let v0_off = if let Some((v0, v1, v2)) = bw.v_lora {
                mm(
                    &mut g,
                    xs,
                    2 * mc,
                    v1,
                    lora_d,
                    d(2),
                    rv,
                    c,
                    Act::None,
                    false,
                )?;
                mm(
                    &mut g,
                    lora_d,
                    d(2),
                    v2,
                    lora_u,
                    2 * mc,
                    c,
                    rv,
                    Act::None,
                    false,
                )?;
                v0
            } else {
                0
            };
            mm(
                &mut g,
                xs,
                5 * mc,
                bw.g1,
                lora_d,
                d(3),
                rg,
                c,
                Act::Sigmoid,
                false,
            )?;
            mm(
                &mut g,
                lora_d,
                d(3),
                bw.g2,
                lora_u,
                3 * mc,
                c,
                rg,
                Act::None,
                false,
            )?;
            // Scan inputs overwrite xs: lambda, -kk, kk*a, kt, v.
            g.att_prep(&AttPrepArgs {
                proj: rkv,
                k_off: mc,
                v_off: 2 * mc,
                lora: lora_u,
                wu_off: 0,
                au_off: mc,
                vu_off: 2 * mc,
                weights: wts,
                w0_off: bw.w0,
                a0_off: bw.a0,
                v0_off,
                kk_off: bw.k_k,
                ka_off: bw.k_a,
                outs: xs,
                lam_off: 0,
                kneg_off: mc,
                kb_off: 2 * mc,
                kt_off: 3 * mc,
                vo_off: 4 * mc,
                vfirst: vfirst.at(0),
                first: bw.v_lora.is_none(),
                m,
                c,
                head_size: n,
            })?;
            let scan = |dir: u32| ScanArgs {
                ins: xs,
                lam_off: 0,
                kneg_off: mc,
                kb_off: 2 * mc,
                kt_off: 3 * mc,
                v_off: 4 * mc,
                r: rkv.at(0),
                y: ydir.at(dir * mc),
                state: state.at(dir * state_dir),
                batch: b32,
                height: h32,
                width: w32,
                c,
                head_size: n,
                dir,
                scratch: Some(scan_scratch),
            };
            if g.kernels.fused_scan {
                g.scan_fused(&scan(0), mc, state_dir)?;
            } else {
                // one dispatch per direction, as the spec describes the engine
                for dir in 0..4u32 {
                    g.scan(&scan(dir))?;
                }
            }
            g.combine(&CombineArgs {
                ydir: ydir.at(0),
                y_zs: mc,
                ins: xs,
                kt_off: 3 * mc,
                v_off: 4 * mc,
                r: rkv.at(0),
                gate: lora_u.at(3 * mc),
                weights: wts,
                rk_off: bw.r_k,
                gw_off: bw.lnx_w,
                gb_off: bw.lnx_b,
                out: xln.at(0),
                m,
                c,
                head_size: n,
                eps: GN_EPS,
            })?;
            mm(&mut g, xln, 0, bw.wo, cur, 0, c, c, Act::None, true)?;
            // Channel mix.
            ln(&mut g, cur, xln, (bw.ln2_w, bw.ln2_b))?;
            g.shift_mix(&ShiftMixArgs {
                x: xln.at(0),
                y: xs.at(0),
                y_zs: mc,
                weights: wts,
                mu_off: bw.ffn_mu,
                nmix: 1,
                batch: b32,
                height: h32,
                width: w32,
                c,
                head_size: n,
            })?;
            mm(
                &mut g,
                xs,
                0,
                bw.ffn_k,
                rkv,
                0,
                hid,
                c,
                Act::ReluSquared,
                false,
            )?;
            mm(&mut g, rkv, 0, bw.ffn_v, cur, 0, c, hid, Act::None, true)?;
            g.mark();
            l += 1;
        }
        // T = conv(T) + T_in, accumulated into the T_in buffer, which becomes the current one.
        conv(&mut g, gconv, cur, other, h32, w32, true, None, false)?;
        std::mem::swap(&mut cur, &mut other);
        g.mark();
    }

    // Reconstruction.
    ln(&mut g, cur, xln, pw.norm)?;
    conv(
        &mut g,
        &pw.conv_after_body,
        xln,
        f0,
        h32,
        w32,
        true,
        None,
        false,
    )?;
    conv(
        &mut g,
        &pw.conv_before_upsample,
        f0,
        xs,
        h32,
        w32,
        false,
        Some(LEAKY),
        false,
    )?;
    let (mut hh, mut ww) = (h32, w32);
    let mut src = xs;
    for (i, up) in pw.upsample.iter().enumerate() {
        let dst = hr[i % 2];
        conv(&mut g, up, src, dst, hh, ww, false, None, true)?;
        hh *= 2;
        ww *= 2;
        src = dst;
    }
    conv(
        &mut g,
        &pw.conv_last,
        src,
        output,
        hh,
        ww,
        false,
        None,
        false,
    )?;
    g.copy_bytes(output, 0, staging, 0, sz.output * 4);
    g.mark();
    Ok(g)
}

/// Multiply-accumulates of one forward pass on an `h x w` LR slice, counted from the
/// configuration (`cup` = channels of the upsampler, 64 in the spec): every convolution and
/// matrix product, and `3 N^2` per token, head and direction for the recurrence (`S kk`, the
/// update, `S r`). Elementwise work and norms are not counted. DWKV-3M at x2 on 128x128: about
/// 63 GMAC, as the spec says.
pub fn network_macs(cfg: &crate::model::ModelConfig, cup: usize, h: usize, w: usize) -> u64 {
    let l = (h * w) as u64;
    let c = cfg.dim as u64;
    let n = cfg.head_size as u64;
    let heads = c / n.max(1);
    let cup = cup as u64;
    let conv = |cin: u64, cout: u64, px: u64| 9 * cin * cout * px;
    let mut macs = conv(1, c, l); // conv_first
    let hid = cfg.ffn_ratio as u64 * c;
    let (rw, ra, rv, rg) = (
        cfg.lora_rank_w as u64,
        cfg.lora_rank_a as u64,
        cfg.lora_rank_v as u64,
        cfg.lora_rank_g as u64,
    );
    for blk in 0..cfg.n_blocks() {
        let mut per_token = 4 * c * c + 2 * c * (rw + ra + rg) + 2 * c * hid;
        if blk > 0 {
            per_token += 2 * c * rv;
        }
        per_token += 4 * heads * 3 * n * n;
        macs += per_token * l;
    }
    macs += cfg.groups as u64 * conv(c, c, l); // group convs
    macs += conv(c, c, l); // conv_after_body
    macs += conv(c, cup, l); // conv_before_upsample
    let mut px = l;
    let mut s = 1u64;
    while s < cfg.scale as u64 {
        macs += conv(cup, 4 * cup, px);
        px *= 4;
        s *= 2;
    }
    macs + conv(cup, 1, px) // conv_last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    #[test]
    fn macs_of_dwkv3m_match_the_spec() {
        // The spec: about 63 GMAC for a 128x128 slice at x2.
        let macs = network_macs(&ModelConfig::dwkv3m(2), 64, 128, 128);
        assert!((62.5e9..63.5e9).contains(&(macs as f64)), "{macs}");
        // x4 adds the second upsampling stage at 2h x 2w and conv_last at 4h x 4w.
        let x4 = network_macs(&ModelConfig::dwkv3m(4), 64, 128, 128);
        let extra = 9 * 64 * 256 * (256 * 256) as u64 + 9 * 64 * (512 * 512 - 256 * 256) as u64;
        assert_eq!(x4 - macs, extra);
    }
}
