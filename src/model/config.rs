//! Network hyper-parameters, read from a checkpoint's safetensors metadata.

/// How the training LR images were made; decides the LR sampling geometry.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Degradation {
    /// k-space truncation: LR voxel `i` sits at HR voxel `s * i` (origin aligned).
    #[default]
    Kspace,
    /// Antialiased bicubic downsampling: LR voxel `i` sits at HR position `(i + 0.5) s - 0.5`.
    Bicubic,
}

impl Degradation {
    pub fn as_str(self) -> &'static str {
        match self {
            Degradation::Kspace => "kspace",
            Degradation::Bicubic => "bicubic",
        }
    }

    /// HR coordinate of LR sample `i` at scale `s` (the sampling geometry of this degradation).
    pub fn lr_to_hr(self, i: f64, s: f64) -> f64 {
        match self {
            Degradation::Kspace => s * i,
            Degradation::Bicubic => (i + 0.5) * s - 0.5,
        }
    }
}

/// Hyper-parameters of one Delta-WKV network (defaults: DWKV-3M).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub scale: usize,
    pub dim: usize,
    pub head_size: usize,
    pub groups: usize,
    pub blocks_per_group: usize,
    pub ffn_ratio: usize,
    pub lora_rank_w: usize,
    pub lora_rank_a: usize,
    pub lora_rank_v: usize,
    pub lora_rank_g: usize,
    pub degradation: Degradation,
}

impl ModelConfig {
    /// The shipped DWKV-3M configuration at scale `scale`.
    pub fn dwkv3m(scale: usize) -> Self {
        Self {
            scale,
            dim: 96,
            head_size: 32,
            groups: 4,
            blocks_per_group: 6,
            ffn_ratio: 2,
            lora_rank_w: 32,
            lora_rank_a: 32,
            lora_rank_v: 32,
            lora_rank_g: 32,
            degradation: Degradation::Kspace,
        }
    }

    /// Number of heads `H = C / N`.
    pub fn heads(&self) -> usize {
        self.dim / self.head_size
    }

    /// Total number of blocks `G * B`.
    pub fn n_blocks(&self) -> usize {
        self.groups * self.blocks_per_group
    }
}
