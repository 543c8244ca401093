//! The CPU reference forward pass: the oracle the WGSL engine is tested against.
//!
//! [`forward`] composes the per-layer functions of [`ops`] exactly as the skeleton of
//! `docs/model-spec.md`; [`spatial_mix`], [`channel_mix`] and [`block`] expose the block-level
//! stages on their own. With [`forward_with`] and a [`Trace`] the intermediate values are recorded
//! under the same names and layouts as the PyTorch reference's `intermediates` (tokens `L x C`,
//! images CHW): `conv_first`, `patch_norm`, `block.{l}`, `group.{g}`, `norm`, `body`,
//! `before_upsample`, `upsample.{i}`, and per block `block.{l}.ln1`,
//! `block.{l}.att.{r,k,v,decay,a,gate,kk,kt,y,y_ln,out}`, `block.{l}.ffn.out`, plus the four scan
//! directions `block.{l}.att.y{d}` (`d = 0..4`, Rust only).
//!
//! Parallelism: the token-wise layers split tokens over rayon's pool, the linear layers run a
//! register-blocked kernel on fixed blocks of tokens, the convolutions are im2col + GEMM on fixed
//! bands of rows, and the recurrence runs its `4 x H` (direction, head) scans in parallel. The
//! result does not depend on the number of threads. The blocks run on a workspace allocated once
//! per forward pass (`workspace`), with the elementwise layers fused into the passes that produce
//! or consume their values (`ops::fused`, the same values bit for bit as the layer functions).

pub mod ops;
mod workspace;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::{EngineError, Progress, Upscaler};
use crate::plane::Plane;

use super::checkpoint::{Checkpoint, CheckpointError};
use workspace::Workspace;

/// Revision of the CPU reference's implementation (not of its results): part of the key under
/// which `--device auto` caches its GPU-versus-CPU timing, so that a faster CPU reference is
/// measured again rather than judged by an old timing. 2: GEMM linear layers and convolutions.
/// 3: a workspace reused by all blocks, fused elementwise passes, the FMA scan on packed heads.
pub const REVISION: u32 = 3;

/// Largest accepted LR slice, in pixels (512 x 512). The forward pass keeps about twenty-six
/// `L x C` float arrays alive (its workspace, the tokens, the scans' packed inputs), about
/// 2.5 GiB at this size with `C = 96`.
pub const MAX_INPUT_PIXELS: usize = 512 * 512;

/// Named intermediate values of a forward pass (see the module documentation for the names).
pub type Trace = BTreeMap<String, Vec<f32>>;

/// Why a forward pass did not produce an output.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The checkpoint is incomplete or inconsistent.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The input plane cannot be processed.
    #[error("input is {width}x{height}: {reason}")]
    BadInput {
        width: usize,
        height: usize,
        reason: String,
    },
    /// The cancel flag was set.
    #[error("cancelled")]
    Cancelled,
}

fn record(trace: &mut Option<&mut Trace>, name: impl FnOnce() -> String, value: &[f32]) {
    if let Some(t) = trace.as_deref_mut() {
        t.insert(name(), value.to_vec());
    }
}

/// The weights of one block, borrowed from a checkpoint.
struct BlockWeights<'a> {
    ln1_w: &'a [f32],
    ln1_b: &'a [f32],
    ln2_w: &'a [f32],
    ln2_b: &'a [f32],
    mu_r: &'a [f32],
    mu_w: &'a [f32],
    mu_k: &'a [f32],
    mu_v: &'a [f32],
    mu_a: &'a [f32],
    mu_g: &'a [f32],
    w0: &'a [f32],
    w1: &'a [f32],
    w2: &'a [f32],
    a0: &'a [f32],
    a1: &'a [f32],
    a2: &'a [f32],
    /// `(v0, v1, v2)`; absent in global block 0.
    v_res: Option<(&'a [f32], &'a [f32], &'a [f32])>,
    g1: &'a [f32],
    g2: &'a [f32],
    k_k: &'a [f32],
    k_a: &'a [f32],
    r_k: &'a [f32],
    w_r: &'a [f32],
    w_k: &'a [f32],
    w_v: &'a [f32],
    w_o: &'a [f32],
    lnx_w: &'a [f32],
    lnx_b: &'a [f32],
    ffn_mu_k: &'a [f32],
    ffn_key: &'a [f32],
    ffn_value: &'a [f32],
}

fn data<'a>(ckpt: &'a Checkpoint, name: &str) -> Result<&'a [f32], CheckpointError> {
    Ok(ckpt.get(name)?.data.as_slice())
}

impl<'a> BlockWeights<'a> {
    fn new(ckpt: &'a Checkpoint, layer: usize) -> Result<Self, CheckpointError> {
        let bpg = ckpt.config.blocks_per_group.max(1);
        let p = format!("groups.{}.blocks.{}", layer / bpg, layer % bpg);
        let t = |s: &str| data(ckpt, &format!("{p}.{s}"));
        let v_res = if layer == 0 {
            None
        } else {
            Some((t("att.v0")?, t("att.v1")?, t("att.v2")?))
        };
        Ok(Self {
            ln1_w: t("ln1.weight")?,
            ln1_b: t("ln1.bias")?,
            ln2_w: t("ln2.weight")?,
            ln2_b: t("ln2.bias")?,
            mu_r: t("att.mu_r")?,
            mu_w: t("att.mu_w")?,
            mu_k: t("att.mu_k")?,
            mu_v: t("att.mu_v")?,
            mu_a: t("att.mu_a")?,
            mu_g: t("att.mu_g")?,
            w0: t("att.w0")?,
            w1: t("att.w1")?,
            w2: t("att.w2")?,
            a0: t("att.a0")?,
            a1: t("att.a1")?,
            a2: t("att.a2")?,
            v_res,
            g1: t("att.g1")?,
            g2: t("att.g2")?,
            k_k: t("att.k_k")?,
            k_a: t("att.k_a")?,
            r_k: t("att.r_k")?,
            w_r: t("att.receptance.weight")?,
            w_k: t("att.key.weight")?,
            w_v: t("att.value.weight")?,
            w_o: t("att.output.weight")?,
            lnx_w: t("att.ln_x.weight")?,
            lnx_b: t("att.ln_x.bias")?,
            ffn_mu_k: t("ffn.mu_k")?,
            ffn_key: t("ffn.key.weight")?,
            ffn_value: t("ffn.value.weight")?,
        })
    }
}

/// Output of [`spatial_mix`].
#[derive(Clone, Debug)]
pub struct SpatialMixOutput {
    /// The branch output `(y * gate) W_o^T`, `L x C` (added to the residual stream by the block).
    pub out: Vec<f32>,
    /// The value after the value residual, `L x C`; in global block 0 this is `v_first`.
    pub v: Vec<f32>,
}

fn check_tokens(x: &[f32], h: usize, w: usize, c: usize) -> Result<(), ForwardError> {
    if x.len() != h * w * c {
        return Err(ForwardError::BadInput {
            width: w,
            height: h,
            reason: format!("{} token values, expected {} x {c}", x.len(), h * w),
        });
    }
    Ok(())
}

/// The spatial mix (steps 1-13 of the spec) of global block `layer` on normalised tokens `x`
/// (`L x C`, the output of `ln1`) of an `h x w` image. `v_first` is required for `layer > 0`
/// (the `v` of block 0) and ignored for `layer == 0`.
pub fn spatial_mix(
    ckpt: &Checkpoint,
    layer: usize,
    x: &[f32],
    h: usize,
    w: usize,
    v_first: Option<&[f32]>,
) -> Result<SpatialMixOutput, ForwardError> {
    let wts = BlockWeights::new(ckpt, layer)?;
    check_tokens(x, h, w, ckpt.config.dim)?;
    let mut ws = Workspace::new(&ckpt.config, h * w);
    workspace::spatial_mix_ws(
        &mut ws,
        &ckpt.config,
        &wts,
        layer,
        x,
        h,
        w,
        v_first,
        &mut None,
    )?;
    Ok(SpatialMixOutput {
        out: ws.out,
        v: ws.v,
    })
}

/// The channel mix of global block `layer` on normalised tokens `x` (`L x C`, the output of
/// `ln2`) of an `h x w` image.
pub fn channel_mix(
    ckpt: &Checkpoint,
    layer: usize,
    x: &[f32],
    h: usize,
    w: usize,
) -> Result<Vec<f32>, ForwardError> {
    let wts = BlockWeights::new(ckpt, layer)?;
    check_tokens(x, h, w, ckpt.config.dim)?;
    let mut ws = Workspace::new(&ckpt.config, h * w);
    workspace::channel_mix_ws(&mut ws, &ckpt.config, &wts, x, h, w);
    Ok(ws.out)
}

/// One block (global index `layer`): `T += spatial_mix(ln1(T))`, `T += channel_mix(ln2(T))`.
/// Returns the new tokens and the block's `v` (in block 0, `v_first`).
pub fn block(
    ckpt: &Checkpoint,
    layer: usize,
    tokens: &[f32],
    h: usize,
    w: usize,
    v_first: Option<&[f32]>,
) -> Result<(Vec<f32>, Vec<f32>), ForwardError> {
    let wts = BlockWeights::new(ckpt, layer)?;
    check_tokens(tokens, h, w, ckpt.config.dim)?;
    let mut ws = Workspace::new(&ckpt.config, h * w);
    let mut t = tokens.to_vec();
    let mut xn = vec![0.0f32; t.len()];
    workspace::block_ws(
        &mut ws,
        &ckpt.config,
        &wts,
        layer,
        &mut t,
        &mut xn,
        h,
        w,
        v_first,
        &mut None,
    )?;
    Ok((t, ws.v))
}

/// Runs the network on one LR plane (values normalised to about [0, 1]); returns the
/// `scale x` larger output, not clamped.
pub fn forward(ckpt: &Checkpoint, input: &Plane) -> Result<Plane, ForwardError> {
    forward_with(ckpt, input, None, None)
}

fn check_input(input: &Plane) -> Result<(), ForwardError> {
    let (width, height) = (input.width, input.height);
    let bad = |reason: String| {
        Err(ForwardError::BadInput {
            width,
            height,
            reason,
        })
    };
    if width == 0 || height == 0 {
        return bad("the plane is empty".into());
    }
    match width.checked_mul(height) {
        Some(px) if px <= MAX_INPUT_PIXELS => {}
        _ => {
            return bad(format!(
                "larger than the CPU reference's limit of {MAX_INPUT_PIXELS} pixels"
            ));
        }
    }
    if input.data.len() != width * height {
        return bad(format!(
            "{} values for {} pixels",
            input.data.len(),
            width * height
        ));
    }
    if let Some(i) = input.data.iter().position(|v| !v.is_finite()) {
        return bad(format!("non-finite value at pixel {i}"));
    }
    Ok(())
}

/// [`forward`] with an optional cancel flag (checked between blocks) and an optional [`Trace`]
/// that receives every intermediate value.
pub fn forward_with(
    ckpt: &Checkpoint,
    input: &Plane,
    cancel: Option<&AtomicBool>,
    mut trace: Option<&mut Trace>,
) -> Result<Plane, ForwardError> {
    ckpt.validate("checkpoint")?;
    check_input(input)?;
    let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let cfg = &ckpt.config;
    let (h, w, c) = (input.height, input.width, cfg.dim);
    let t = |name: &str| data(ckpt, name);

    // The convolutions up to the body run on tokens (an `L x 1` plane is its own token array).
    let noop = |_: usize, _: &mut [f32]| {};
    let mut f0 = vec![0.0f32; h * w * c];
    ops::conv3x3_tokens_into(
        &input.data,
        1,
        h,
        w,
        t("conv_first.weight")?,
        t("conv_first.bias")?,
        c,
        &mut f0,
        noop,
    );
    if trace.is_some() {
        record(
            &mut trace,
            || "conv_first".into(),
            &ops::tokens_to_image(&f0, c, h, w),
        );
    }
    let mut tokens = vec![0.0f32; f0.len()];
    ops::fused::layer_norm_into(
        &f0,
        c,
        t("patch_norm.weight")?,
        t("patch_norm.bias")?,
        ops::LN_EPS,
        &mut tokens,
    );
    record(&mut trace, || "patch_norm".into(), &tokens);

    let mut ws = Workspace::new(cfg, h * w);
    let mut xn = vec![0.0f32; tokens.len()];
    let mut t_in = vec![0.0f32; tokens.len()];
    let mut v_first: Option<Vec<f32>> = None;
    for g in 0..cfg.groups {
        t_in.copy_from_slice(&tokens);
        for b in 0..cfg.blocks_per_group {
            if cancelled() {
                return Err(ForwardError::Cancelled);
            }
            let layer = g * cfg.blocks_per_group + b;
            let wts = BlockWeights::new(ckpt, layer)?;
            workspace::block_ws(
                &mut ws,
                cfg,
                &wts,
                layer,
                &mut tokens,
                &mut xn,
                h,
                w,
                v_first.as_deref(),
                &mut trace,
            )?;
            if layer == 0 {
                v_first = Some(ws.v.clone());
            }
            record(&mut trace, || format!("block.{layer}"), &tokens);
        }
        // tokens = conv(tokens) + t_in, through `ws.out`.
        ops::conv3x3_tokens_into(
            &tokens,
            c,
            h,
            w,
            t(&format!("groups.{g}.conv.weight"))?,
            t(&format!("groups.{g}.conv.bias"))?,
            c,
            &mut ws.out,
            |t0, band| {
                let src = &t_in[t0 * c..t0 * c + band.len()];
                band.iter_mut().zip(src).for_each(|(v, r)| *v += r);
            },
        );
        std::mem::swap(&mut tokens, &mut ws.out);
        record(&mut trace, || format!("group.{g}"), &tokens);
    }
    if cancelled() {
        return Err(ForwardError::Cancelled);
    }
    ops::fused::layer_norm_into(
        &tokens,
        c,
        t("norm.weight")?,
        t("norm.bias")?,
        ops::LN_EPS,
        &mut xn,
    );
    record(&mut trace, || "norm".into(), &xn);
    // fd = conv_after_body(norm) + f0, back to an image for the upsampler.
    ops::conv3x3_tokens_into(
        &xn,
        c,
        h,
        w,
        t("conv_after_body.weight")?,
        t("conv_after_body.bias")?,
        c,
        &mut tokens,
        |t0, band| {
            let src = &f0[t0 * c..t0 * c + band.len()];
            band.iter_mut().zip(src).for_each(|(v, r)| *v += r);
        },
    );
    drop(ws);
    let fd = ops::tokens_to_image(&tokens, c, h, w);
    record(&mut trace, || "body".into(), &fd);
    let up_c = 64;
    let mut y = ops::leaky_relu(
        &ops::conv3x3(
            &fd,
            c,
            h,
            w,
            t("conv_before_upsample.weight")?,
            t("conv_before_upsample.bias")?,
            up_c,
        ),
        ops::LEAKY_SLOPE,
    );
    record(&mut trace, || "before_upsample".into(), &y);
    let (mut yh, mut yw) = (h, w);
    for i in 0..cfg.upsample_stages() {
        if cancelled() {
            return Err(ForwardError::Cancelled);
        }
        let conv = ops::conv3x3(
            &y,
            up_c,
            yh,
            yw,
            t(&format!("upsample.{i}.weight"))?,
            t(&format!("upsample.{i}.bias"))?,
            4 * up_c,
        );
        y = ops::pixel_shuffle(&conv, 4 * up_c, yh, yw, 2);
        yh *= 2;
        yw *= 2;
        record(&mut trace, || format!("upsample.{i}"), &y);
    }
    let out = ops::conv3x3(
        &y,
        up_c,
        yh,
        yw,
        t("conv_last.weight")?,
        t("conv_last.bias")?,
        1,
    );
    Plane::from_vec(yw, yh, out).ok_or_else(|| ForwardError::BadInput {
        width: w,
        height: h,
        reason: "internal size mismatch in the upsampler".into(),
    })
}

/// The CPU reference as an [`Upscaler`]: slices run one after another, each using all of rayon's
/// threads; progress is reported and the cancel flag checked between slices (and between blocks
/// inside a slice).
pub struct CpuUpscaler {
    checkpoint: Checkpoint,
}

impl CpuUpscaler {
    /// Wraps a checkpoint, validating it first.
    pub fn new(checkpoint: Checkpoint) -> Result<Self, CheckpointError> {
        checkpoint.validate("checkpoint")?;
        Ok(Self { checkpoint })
    }

    /// The checkpoint this upscaler runs.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }
}

impl Upscaler for CpuUpscaler {
    fn describe(&self) -> String {
        format!("CPU reference ({} threads)", rayon::current_num_threads())
    }

    fn scale(&self) -> usize {
        self.checkpoint.config.scale
    }

    fn upscale(
        &mut self,
        inputs: &[Plane],
        progress: Progress<'_>,
        cancel: &AtomicBool,
    ) -> Result<Vec<Plane>, EngineError> {
        let total = inputs.len();
        let mut out = Vec::with_capacity(total);
        progress(0, total);
        for (index, plane) in inputs.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            let y =
                forward_with(&self.checkpoint, plane, Some(cancel), None).map_err(|e| match e {
                    ForwardError::Cancelled => EngineError::Cancelled,
                    ForwardError::BadInput {
                        width,
                        height,
                        reason,
                    } => EngineError::BadInput {
                        index,
                        width,
                        height,
                        reason,
                    },
                    ForwardError::Checkpoint(e) => EngineError::Checkpoint(e.to_string()),
                })?;
            out.push(y);
            progress(index + 1, total);
        }
        Ok(out)
    }
}
