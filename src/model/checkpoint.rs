//! Checkpoints: safetensors files with the tensor names and `__metadata__` of the model spec.

use std::collections::BTreeMap;

use super::config::ModelConfig;

/// A dense f32 tensor (widened from f16/bf16 on load), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A validated checkpoint: every tensor the configuration needs, with the right shape, finite.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub config: ModelConfig,
    /// The safetensors `__metadata__`, verbatim.
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, Tensor>,
}

/// Why a checkpoint was rejected. Messages name the file and the tensor.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Invalid(String),
}
