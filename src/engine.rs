//! What every super-resolution backend offers (the CPU reference and the WGSL engine): the
//! [`Upscaler`] trait, its typed errors, the progress callback and the user's [`DeviceChoice`].
//! A leaf: it knows neither engine; the `backend` module builds and picks them.

use std::sync::atomic::AtomicBool;

use crate::plane::Plane;

/// Which backend the user asked for (`--device gpu|cpu|auto`, the viewer's setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceChoice {
    /// A real GPU when there is one; otherwise whichever of the software adapter and the CPU
    /// reference measures faster.
    #[default]
    Auto,
    /// The WGSL engine on the best adapter (a software one if that is all there is).
    Gpu,
    /// The CPU reference.
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
    /// The checkpoint does not fit this backend (a missing or misshapen tensor, an unsupported
    /// scale or head size); names the tensor or setting.
    #[error("checkpoint not usable: {0}")]
    Checkpoint(String),
    /// A size beyond what the backend or the adapter can address (32-bit indices, workgroup grid
    /// limits, a batch larger than the allocated buffers); names the quantity.
    #[error("over a limit: {0}")]
    Limit(String),
    /// A broken internal invariant (a bug, not a user error); names the invariant.
    #[error("internal error: {0}")]
    Internal(String),
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

    /// Messages the user should see that arose while running (e.g. "the GPU failed, continuing
    /// on the CPU reference"); each is returned once.
    fn take_notices(&mut self) -> Vec<String> {
        Vec::new()
    }
}
