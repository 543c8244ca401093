//! The Delta-WKV network: configuration, checkpoints (safetensors) and the CPU reference forward
//! pass, following `docs/model-spec.md` exactly.

pub mod checkpoint;
pub mod config;
pub mod cpu;

pub use checkpoint::{Checkpoint, CheckpointError, Tensor};
pub use config::{ConfigError, Degradation, ModelConfig};
