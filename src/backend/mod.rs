//! Backend choice above both engines: builds the CPU reference ([`crate::model::cpu`]) or the WGSL
//! engine ([`crate::gpu`]) for a [`DeviceChoice`], picks between a software adapter and the CPU
//! reference by measurement ([`select`]), and moves a run to the CPU reference when the GPU fails
//! ([`fallback`], the one fallback the command line and the viewer share).

pub mod fallback;
pub mod pin;
pub mod select;

use std::sync::Arc;

use crate::engine::{DeviceChoice, EngineError, Upscaler};
use crate::gpu::GpuContext;
use crate::model::Checkpoint;
use crate::model::cpu::CpuUpscaler;

pub use fallback::{
    EngineFactory, Fallback, FallbackError, GpuWithFallback, cpu_factory, is_device_failure,
};

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
    select::select(checkpoint, choice, ctx)
}

/// [`create`] on the GPU a scheduler allotted to this process ([`pin::from_system`]: Vulkan
/// ignores `CUDA_VISIBLE_DEVICES`, so the allotted GPU's PCI bus id picks the adapter). When no
/// adapter sits on that bus, any adapter is used and the returned [`pin::Pin`] says so.
pub fn create_pinned(
    checkpoint: Checkpoint,
    choice: DeviceChoice,
) -> Result<(Box<dyn Upscaler>, pin::Pin), EngineError> {
    if choice == DeviceChoice::Cpu {
        let pin = pin::Pin {
            pci_bus_id: None,
            reason: "the CPU was requested: no GPU pinned".into(),
        };
        return create(checkpoint, choice).map(|u| (u, pin));
    }
    let mut pin = pin::from_system();
    let ctx = match pin.pci_bus_id.clone() {
        Some(bus) => GpuContext::with_adapter(Some(&bus)).or_else(|e| {
            pin.reason = format!("{}; but no adapter there ({e}): any adapter", pin.reason);
            pin.pci_bus_id = None;
            GpuContext::new()
        }),
        None => GpuContext::new(),
    };
    tracing::info!("GPU pin: {}", pin.reason);
    select::select(checkpoint, choice, ctx.map(Arc::new)).map(|u| (u, pin))
}

/// [`create`] on a [`GpuContext`] made earlier (its compiled pipelines are reused).
pub fn create_with_context(
    checkpoint: Checkpoint,
    choice: DeviceChoice,
    ctx: Arc<GpuContext>,
) -> Result<Box<dyn Upscaler>, EngineError> {
    select::select(checkpoint, choice, Ok(ctx))
}

/// The CPU reference for `checkpoint` (a checkpoint it cannot run is [`EngineError::Checkpoint`]).
fn cpu_upscaler(checkpoint: Checkpoint) -> Result<CpuUpscaler, EngineError> {
    CpuUpscaler::new(checkpoint).map_err(|e| EngineError::Checkpoint(e.to_string()))
}
