//! What every super-resolution backend offers (the CPU reference and the WGSL engine), and how the
//! command line and the viewer pick one.

use std::sync::atomic::AtomicBool;

use crate::plane::Plane;

/// Which backend the user asked for (`--device gpu|cpu|auto`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
pub enum DeviceChoice {
    /// A real GPU when there is one; otherwise whichever of the software adapter and the CPU
    /// reference measures faster.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

/// Errors of an inference run, whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cancelled")]
    Cancelled,
    #[error("input {index} is {width}x{height}: {reason}")]
    BadInput {
        index: usize,
        width: usize,
        height: usize,
        reason: String,
    },
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    #[error("GPU device error: {0}")]
    Device(String),
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    #[error("{0}")]
    Other(String),
}

/// Progress callback: `(slices done, slices total)`.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// A super-resolution backend holding one checkpoint.
pub trait Upscaler: Send {
    /// Human-readable description shown to the user, e.g. `GPU: NVIDIA H100 (Vulkan)`.
    fn describe(&self) -> String;
    /// The upscaling factor of the loaded checkpoint.
    fn scale(&self) -> usize;
    /// Upscales each LR plane (values normalised to about [0, 1]) to `scale` times its size.
    /// Checks `cancel` between units of work and returns [`EngineError::Cancelled`] when set.
    fn upscale(
        &mut self,
        inputs: &[Plane],
        progress: Progress<'_>,
        cancel: &AtomicBool,
    ) -> Result<Vec<Plane>, EngineError>;
}
