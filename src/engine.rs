//! What every super-resolution backend offers (the CPU reference and the WGSL engine), and how the
//! command line and the viewer pick one.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::gpu::GpuContext;
use crate::model::Checkpoint;
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

    /// Messages the user should see that arose while running (e.g. "the GPU failed, continuing
    /// on the CPU reference"); each is returned once.
    fn take_notices(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// Creates the backend for `choice` holding `checkpoint`:
/// - [`DeviceChoice::Cpu`]: the CPU reference.
/// - [`DeviceChoice::Gpu`]: the WGSL engine on the best adapter (a software one if that is all
///   there is); fails with [`EngineError::NoAdapter`] when there is none.
/// - [`DeviceChoice::Auto`]: a real GPU when there is one; with only a software adapter
///   (lavapipe), whichever of it and the CPU reference is faster on a short measurement (cached
///   per adapter and network shape); the CPU reference when there is no adapter.
///
/// A GPU backend falls back to the CPU reference if the device is lost or runs out of memory
/// even at batch 1 (after halving the batch), with a notice ([`Upscaler::take_notices`]).
/// [`Upscaler::describe`] names the backend and why it was chosen.
pub fn create(
    checkpoint: Checkpoint,
    choice: DeviceChoice,
) -> Result<Box<dyn Upscaler>, EngineError> {
    let ctx = match choice {
        DeviceChoice::Cpu => Err(EngineError::NoAdapter("the CPU was requested".into())),
        _ => GpuContext::new().map(Arc::new),
    };
    crate::gpu::select::select(checkpoint, choice, ctx)
}

/// [`create`] on an existing device, e.g. eframe's, so the viewer and the engine share it. The
/// device should have been requested with the adapter's limits (`adapter.limits()`).
pub fn create_with_device(
    checkpoint: Checkpoint,
    choice: DeviceChoice,
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter_info: wgpu::AdapterInfo,
) -> Result<Box<dyn Upscaler>, EngineError> {
    let ctx = Arc::new(GpuContext::from_device(device, queue, adapter_info));
    create_with_context(checkpoint, choice, ctx)
}

/// [`create`] on a [`GpuContext`] made earlier (its compiled pipelines are reused).
pub fn create_with_context(
    checkpoint: Checkpoint,
    choice: DeviceChoice,
    ctx: Arc<GpuContext>,
) -> Result<Box<dyn Upscaler>, EngineError> {
    crate::gpu::select::select(checkpoint, choice, Ok(ctx))
}
