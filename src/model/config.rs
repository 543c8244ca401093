//! Network hyper-parameters, read from a checkpoint's safetensors metadata.

/// How the training LR images were made; decides the LR sampling geometry.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
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
    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Degradation::Kspace => "kspace",
            Degradation::Bicubic => "bicubic",
        }
    }

    /// Parses the metadata spelling (`kspace` or `bicubic`).
    pub fn from_metadata(s: &str) -> Option<Self> {
        match s {
            "kspace" => Some(Degradation::Kspace),
            "bicubic" => Some(Degradation::Bicubic),
            _ => None,
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

    /// Hidden width of the channel mix, `ffn_ratio * dim`.
    pub fn ffn_hidden(&self) -> usize {
        self.ffn_ratio * self.dim
    }

    /// Number of `PixelShuffle(2)` stages, `log2(scale)`.
    pub fn upsample_stages(&self) -> usize {
        self.scale.trailing_zeros() as usize
    }

    /// Total number of parameters of a checkpoint of this configuration (sum over
    /// [`crate::model::Checkpoint::expected_tensors`]).
    pub fn parameter_count(&self) -> usize {
        crate::model::Checkpoint::expected_tensors(self)
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }

    /// Checks that the configuration is one the network can be built for, with sizes bounded so
    /// that a hostile file cannot make the loader allocate absurd amounts of memory.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, value: usize, reason: String| {
            Err(ConfigError {
                field,
                value,
                reason,
            })
        };
        if self.scale != 2 && self.scale != 4 {
            return bad("scale", self.scale, "must be 2 or 4".into());
        }
        for (field, value, max) in [
            ("dim", self.dim, MAX_DIM),
            ("head_size", self.head_size, MAX_HEAD_SIZE),
            ("groups", self.groups, MAX_GROUPS),
            (
                "blocks_per_group",
                self.blocks_per_group,
                MAX_BLOCKS_PER_GROUP,
            ),
            ("ffn_ratio", self.ffn_ratio, MAX_FFN_RATIO),
            ("lora_rank_w", self.lora_rank_w, MAX_LORA_RANK),
            ("lora_rank_a", self.lora_rank_a, MAX_LORA_RANK),
            ("lora_rank_v", self.lora_rank_v, MAX_LORA_RANK),
            ("lora_rank_g", self.lora_rank_g, MAX_LORA_RANK),
        ] {
            if value == 0 || value > max {
                return bad(field, value, format!("must be between 1 and {max}"));
            }
        }
        if !self.head_size.is_multiple_of(4) {
            return bad(
                "head_size",
                self.head_size,
                "must be a multiple of 4 (the token shift splits each head in quarters)".into(),
            );
        }
        if !self.dim.is_multiple_of(self.head_size) {
            return bad(
                "dim",
                self.dim,
                format!("must be a multiple of head_size {}", self.head_size),
            );
        }
        Ok(())
    }
}

/// Largest accepted embedding width `dim`.
pub const MAX_DIM: usize = 2048;
/// Largest accepted head size.
pub const MAX_HEAD_SIZE: usize = 256;
/// Largest accepted number of residual groups.
pub const MAX_GROUPS: usize = 64;
/// Largest accepted number of blocks per group.
pub const MAX_BLOCKS_PER_GROUP: usize = 64;
/// Largest accepted channel-mix ratio.
pub const MAX_FFN_RATIO: usize = 16;
/// Largest accepted LoRA rank.
pub const MAX_LORA_RANK: usize = 1024;

/// A configuration value outside what the network supports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {reason}")]
pub struct ConfigError {
    /// The metadata key.
    pub field: &'static str,
    /// The offending value.
    pub value: usize,
    /// What is wrong with it.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_are_valid() {
        assert_eq!(ModelConfig::dwkv3m(2).validate(), Ok(()));
        assert_eq!(ModelConfig::dwkv3m(4).validate(), Ok(()));
        assert_eq!(ModelConfig::dwkv3m(4).upsample_stages(), 2);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let check = |f: fn(&mut ModelConfig), field: &str| {
            let mut c = ModelConfig::dwkv3m(2);
            f(&mut c);
            let err = c.validate().expect_err("should be refused");
            assert_eq!(err.field, field);
        };
        check(|c| c.scale = 3, "scale");
        check(|c| c.head_size = 30, "head_size");
        check(|c| c.dim = 100, "dim");
        check(|c| c.dim = 0, "dim");
        check(|c| c.groups = 1_000_000, "groups");
        check(|c| c.lora_rank_v = 0, "lora_rank_v");
    }
}
