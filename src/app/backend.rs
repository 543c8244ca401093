//! Where the viewer finds its inputs and its inference backend: the bundled sample, checkpoints in
//! `weights/` (found by [`crate::checkpoints`]), and the engine factories (CPU reference, or the
//! WGSL engine on eframe's own wgpu device, built by [`crate::backend`]).

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui_wgpu::wgpu;

use crate::backend::EngineFactory;
use crate::checkpoints::{self, Reach};
use crate::engine::{DeviceChoice, EngineError, Upscaler};
use crate::model::Checkpoint;

pub use crate::checkpoints::{find_weights, list_weights, peek_scale};
pub use crate::model::checkpoint::peek_meta;

/// eframe's wgpu device, shared with the inference engine.
#[derive(Clone, Debug)]
pub struct SharedGpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
}

impl SharedGpu {
    /// `name (backend, type)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// A software rasteriser (lavapipe, llvmpipe): sharing it with the UI would stall drawing.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }
}

/// The bundled sample volume, if found (`assets/` under [`checkpoints::search_roots`]).
pub fn sample_path() -> Option<PathBuf> {
    checkpoints::search_roots(Reach::SourceTree)
        .into_iter()
        .filter_map(|r| std::path::absolute(r.join("assets").join("sample_pd.nii.gz")).ok())
        .find(|p| p.is_file())
}

/// Name of a device choice shown to the user.
pub fn device_label(choice: DeviceChoice) -> &'static str {
    match choice {
        DeviceChoice::Auto => "auto",
        DeviceChoice::Gpu => "GPU",
        DeviceChoice::Cpu => "CPU reference",
    }
}

/// The backend factory for a device choice (see [`crate::backend::create`]). With a real GPU under
/// eframe, the WGSL engine runs on eframe's own device (`shared`). A software adapter is not
/// shared: compute work queued on it would hold up the UI's frames, so the engine gets its own
/// device, or the CPU reference where that measures faster (`auto`).
pub fn engine_factory(choice: DeviceChoice, shared: Option<SharedGpu>) -> EngineFactory {
    match shared.filter(|s| !s.is_software()) {
        Some(s) if choice != DeviceChoice::Cpu => shared_engine_factory(choice, s),
        _ => Arc::new(
            move |ckpt: &Checkpoint| -> Result<Box<dyn Upscaler>, EngineError> {
                crate::backend::create(ckpt.clone(), choice)
            },
        ),
    }
}

/// The CPU reference: what a run falls back to when the GPU is absent or fails.
pub fn cpu_engine_factory() -> EngineFactory {
    crate::backend::cpu_factory()
}

/// The fallback of runs whose backend is chosen by `choice`: the CPU reference, unless the CPU
/// is the choice already.
pub fn fallback_factory(choice: DeviceChoice) -> Option<EngineFactory> {
    (choice != DeviceChoice::Cpu).then(cpu_engine_factory)
}

/// A factory whose engines run on `shared` (eframe's device), whatever its kind.
pub fn shared_engine_factory(choice: DeviceChoice, shared: SharedGpu) -> EngineFactory {
    Arc::new(
        move |ckpt: &Checkpoint| -> Result<Box<dyn Upscaler>, EngineError> {
            crate::backend::create_with_device(
                ckpt.clone(),
                choice,
                shared.device.clone(),
                shared.queue.clone(),
                shared.info.clone(),
            )
        },
    )
}
