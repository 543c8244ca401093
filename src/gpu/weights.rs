//! Packs a checkpoint into one f32 array (uploaded once into one storage buffer) in the layouts
//! the kernels read, and records where each tensor went.
//!
//! Layouts: convolutions `[tap = ky * 3 + kx][c_in][c_out]` (from PyTorch `[c_out][c_in][3][3]`);
//! linear weights transposed to `[in][out]` (the matmul kernel computes `x W` with `W` K x N);
//! LoRA matrices as written; the six spatial-mix `mu` vectors in the order r, k, v, w, a, g
//! (the order of the interpolation outputs); `W_r`, `W_k`, `W_v` consecutive (one batched
//! matmul).

use crate::engine::EngineError;
use crate::model::{Checkpoint, ModelConfig};

/// A convolution's place in the packed array.
#[derive(Clone, Copy, Debug)]
pub struct ConvW {
    pub w: u32,
    pub b: u32,
    pub cin: u32,
    pub cout: u32,
}

/// One block's tensors in the packed array.
#[derive(Clone, Debug)]
pub struct BlockW {
    pub ln1_w: u32,
    pub ln1_b: u32,
    pub ln2_w: u32,
    pub ln2_b: u32,
    /// mu_r, mu_k, mu_v, mu_w, mu_a, mu_g, consecutive.
    pub mu6: u32,
    pub w0: u32,
    pub a0: u32,
    /// `v0`, `v1` (C x R), `v2` (R x C): absent in block 0.
    pub v_lora: Option<(u32, u32, u32)>,
    pub w1: u32,
    pub w2: u32,
    pub a1: u32,
    pub a2: u32,
    pub g1: u32,
    pub g2: u32,
    pub k_k: u32,
    pub k_a: u32,
    pub r_k: u32,
    /// W_r^T, W_k^T, W_v^T consecutive, each C x C.
    pub wrkv: u32,
    /// W_o^T.
    pub wo: u32,
    pub lnx_w: u32,
    pub lnx_b: u32,
    pub ffn_mu: u32,
    /// W_k'^T, C x hidden.
    pub ffn_k: u32,
    /// W_v'^T, hidden x C.
    pub ffn_v: u32,
}

/// Where everything is, plus the sizes the network needs.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    pub data: Vec<f32>,
    pub config: ModelConfig,
    pub conv_first: ConvW,
    pub patch_norm: (u32, u32),
    pub blocks: Vec<BlockW>,
    pub group_convs: Vec<ConvW>,
    pub norm: (u32, u32),
    pub conv_after_body: ConvW,
    pub conv_before_upsample: ConvW,
    pub upsample: Vec<ConvW>,
    pub conv_last: ConvW,
}

/// Re-lays a PyTorch conv weight `[c_out][c_in][3][3]` out as `[tap][c_in][c_out]`.
pub fn pack_conv(weight: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; weight.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for tap in 0..9 {
                if let (Some(d), Some(s)) = (
                    out.get_mut((tap * cin + ci) * cout + co),
                    weight.get((co * cin + ci) * 9 + tap),
                ) {
                    *d = *s;
                }
            }
        }
    }
    out
}

/// Transposes a row-major `[rows][cols]` matrix (a PyTorch `[out, in]` linear weight to the
/// `[in][out]` the matmul kernel reads).
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            if let (Some(d), Some(s)) = (out.get_mut(c * rows + r), m.get(r * cols + c)) {
                *d = *s;
            }
        }
    }
    out
}

struct Packer<'a> {
    ck: &'a Checkpoint,
    data: Vec<f32>,
}

impl Packer<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<&[f32], EngineError> {
        let t =
            self.ck.tensors.get(name).ok_or_else(|| {
                EngineError::Checkpoint(format!("checkpoint has no tensor `{name}`"))
            })?;
        if t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
            return Err(EngineError::Checkpoint(format!(
                "checkpoint tensor `{name}` has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        Ok(&t.data)
    }

    fn offset(&self) -> Result<u32, EngineError> {
        u32::try_from(self.data.len())
            .map_err(|_| EngineError::Limit("checkpoint too large for 32-bit offsets".into()))
    }

    /// Appends a tensor as stored.
    fn plain(&mut self, name: &str, shape: &[usize]) -> Result<u32, EngineError> {
        let off = self.offset()?;
        let src = self.tensor(name, shape)?.to_vec();
        self.data.extend_from_slice(&src);
        Ok(off)
    }

    /// Appends a `[out, in]` linear weight transposed to `[in, out]`.
    fn transposed(&mut self, name: &str, out: usize, inp: usize) -> Result<u32, EngineError> {
        let off = self.offset()?;
        let t = transpose(self.tensor(name, &[out, inp])?, out, inp);
        self.data.extend_from_slice(&t);
        Ok(off)
    }

    /// Appends a convolution (weight re-laid out, then bias). The channel counts come from the
    /// checkpoint's weight shape; `cin` is checked against what the network feeds it.
    fn conv(&mut self, prefix: &str, cin: usize) -> Result<ConvW, EngineError> {
        let wname = format!("{prefix}.weight");
        let shape = self
            .ck
            .tensors
            .get(&wname)
            .map(|t| t.shape.clone())
            .ok_or_else(|| {
                EngineError::Checkpoint(format!("checkpoint has no tensor `{wname}`"))
            })?;
        let cout = match shape.as_slice() {
            [co, ci, 3, 3] if *ci == cin => *co,
            _ => {
                return Err(EngineError::Checkpoint(format!(
                    "checkpoint tensor `{wname}` has shape {shape:?}, expected [*, {cin}, 3, 3]"
                )));
            }
        };
        let packed = pack_conv(self.tensor(&wname, &[cout, cin, 3, 3])?, cin, cout);
        let w = self.offset()?;
        self.data.extend_from_slice(&packed);
        let b = self.plain(&format!("{prefix}.bias"), &[cout])?;
        Ok(ConvW {
            w,
            b,
            cin: cin as u32,
            cout: cout as u32,
        })
    }
}

impl PackedWeights {
    /// Packs `ck`. Fails with a message naming the tensor when one is missing or misshapen.
    pub fn pack(ck: &Checkpoint) -> Result<Self, EngineError> {
        let cfg = ck.config.clone();
        let c = cfg.dim;
        let n = cfg.head_size;
        if c == 0 || n == 0 || !c.is_multiple_of(n) {
            return Err(EngineError::Checkpoint(format!(
                "checkpoint dim {c} is not a multiple of head size {n}"
            )));
        }
        if !cfg.scale.is_power_of_two() || cfg.scale < 2 {
            return Err(EngineError::Checkpoint(format!(
                "scale {} is not supported (powers of two from 2)",
                cfg.scale
            )));
        }
        let h = c / n;
        let hid = cfg.ffn_ratio * c;
        let mut p = Packer {
            ck,
            data: Vec::new(),
        };
        let conv_first = p.conv("conv_first", 1)?;
        if conv_first.cout as usize != c {
            return Err(EngineError::Checkpoint(format!(
                "conv_first has {} outputs, the configuration says dim {c}",
                conv_first.cout
            )));
        }
        let patch_norm = (
            p.plain("patch_norm.weight", &[c])?,
            p.plain("patch_norm.bias", &[c])?,
        );
        let mut blocks = Vec::new();
        let mut group_convs = Vec::new();
        for g in 0..cfg.groups {
            for b in 0..cfg.blocks_per_group {
                let pre = format!("groups.{g}.blocks.{b}");
                let att = format!("{pre}.att");
                let ln1_w = p.plain(&format!("{pre}.ln1.weight"), &[c])?;
                let ln1_b = p.plain(&format!("{pre}.ln1.bias"), &[c])?;
                let ln2_w = p.plain(&format!("{pre}.ln2.weight"), &[c])?;
                let ln2_b = p.plain(&format!("{pre}.ln2.bias"), &[c])?;
                let mu6 = p.offset()?;
                for z in ["r", "k", "v", "w", "a", "g"] {
                    p.plain(&format!("{att}.mu_{z}"), &[c])?;
                }
                let w0 = p.plain(&format!("{att}.w0"), &[c])?;
                let a0 = p.plain(&format!("{att}.a0"), &[c])?;
                let first = g == 0 && b == 0;
                let v_lora = if first {
                    None
                } else {
                    Some((
                        p.plain(&format!("{att}.v0"), &[c])?,
                        p.plain(&format!("{att}.v1"), &[c, cfg.lora_rank_v])?,
                        p.plain(&format!("{att}.v2"), &[cfg.lora_rank_v, c])?,
                    ))
                };
                let w1 = p.plain(&format!("{att}.w1"), &[c, cfg.lora_rank_w])?;
                let w2 = p.plain(&format!("{att}.w2"), &[cfg.lora_rank_w, c])?;
                let a1 = p.plain(&format!("{att}.a1"), &[c, cfg.lora_rank_a])?;
                let a2 = p.plain(&format!("{att}.a2"), &[cfg.lora_rank_a, c])?;
                let g1 = p.plain(&format!("{att}.g1"), &[c, cfg.lora_rank_g])?;
                let g2 = p.plain(&format!("{att}.g2"), &[cfg.lora_rank_g, c])?;
                let k_k = p.plain(&format!("{att}.k_k"), &[c])?;
                let k_a = p.plain(&format!("{att}.k_a"), &[c])?;
                let r_k = p.plain(&format!("{att}.r_k"), &[h, n])?;
                let wrkv = p.transposed(&format!("{att}.receptance.weight"), c, c)?;
                p.transposed(&format!("{att}.key.weight"), c, c)?;
                p.transposed(&format!("{att}.value.weight"), c, c)?;
                let wo = p.transposed(&format!("{att}.output.weight"), c, c)?;
                let lnx_w = p.plain(&format!("{att}.ln_x.weight"), &[c])?;
                let lnx_b = p.plain(&format!("{att}.ln_x.bias"), &[c])?;
                let ffn_mu = p.plain(&format!("{pre}.ffn.mu_k"), &[c])?;
                let ffn_k = p.transposed(&format!("{pre}.ffn.key.weight"), hid, c)?;
                let ffn_v = p.transposed(&format!("{pre}.ffn.value.weight"), c, hid)?;
                blocks.push(BlockW {
                    ln1_w,
                    ln1_b,
                    ln2_w,
                    ln2_b,
                    mu6,
                    w0,
                    a0,
                    v_lora,
                    w1,
                    w2,
                    a1,
                    a2,
                    g1,
                    g2,
                    k_k,
                    k_a,
                    r_k,
                    wrkv,
                    wo,
                    lnx_w,
                    lnx_b,
                    ffn_mu,
                    ffn_k,
                    ffn_v,
                });
            }
            let gc = p.conv(&format!("groups.{g}.conv"), c)?;
            if gc.cout as usize != c {
                return Err(EngineError::Checkpoint(format!(
                    "groups.{g}.conv must map {c} to {c} channels"
                )));
            }
            group_convs.push(gc);
        }
        let norm = (p.plain("norm.weight", &[c])?, p.plain("norm.bias", &[c])?);
        let conv_after_body = p.conv("conv_after_body", c)?;
        if conv_after_body.cout as usize != c {
            return Err(EngineError::Checkpoint(format!(
                "conv_after_body must map {c} to {c} channels"
            )));
        }
        let conv_before_upsample = p.conv("conv_before_upsample", c)?;
        let cup = conv_before_upsample.cout as usize;
        let stages = cfg.scale.trailing_zeros() as usize;
        let mut upsample = Vec::new();
        for i in 0..stages {
            let u = p.conv(&format!("upsample.{i}"), cup)?;
            if u.cout as usize != 4 * cup {
                return Err(EngineError::Checkpoint(format!(
                    "upsample.{i} has {} outputs, expected {}",
                    u.cout,
                    4 * cup
                )));
            }
            upsample.push(u);
        }
        let conv_last = p.conv("conv_last", cup)?;
        if conv_last.cout != 1 {
            return Err(EngineError::Checkpoint(format!(
                "conv_last has {} outputs, expected 1",
                conv_last.cout
            )));
        }
        Ok(Self {
            data: p.data,
            config: cfg,
            conv_first,
            patch_norm,
            blocks,
            group_convs,
            norm,
            conv_after_body,
            conv_before_upsample,
            upsample,
            conv_last,
        })
    }

    /// Channels of the upsampler (`conv_before_upsample` outputs).
    pub fn upsample_channels(&self) -> u32 {
        self.conv_before_upsample.cout
    }
}
