//! Where the viewer finds its inputs and its inference backend: the bundled sample, checkpoints in
//! `weights/` (found by [`crate::checkpoints`]), and the engine factories (CPU reference, or the
//! WGSL engine on eframe's own wgpu device, built by [`crate::backend`]).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use eframe::egui_wgpu::wgpu;

use crate::backend::EngineFactory;
use crate::checkpoints::{self, Reach};
use crate::engine::{DeviceChoice, EngineError, Upscaler};
use crate::gpu::GpuContext;
use crate::model::Checkpoint;

pub use crate::checkpoints::{find_weights, list_weights, peek_scale};
pub use crate::model::checkpoint::peek_meta;

/// eframe's wgpu device, shared with the inference engine. Clones share one engine context
/// ([`SharedGpu::context`]), so every run's engine reuses the pipelines the first one compiled.
#[derive(Clone)]
pub struct SharedGpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    context: Arc<OnceLock<Arc<GpuContext>>>,
}

impl std::fmt::Debug for SharedGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGpu")
            .field("adapter", &self.describe())
            .field("context_made", &self.context.get().is_some())
            .finish()
    }
}

impl SharedGpu {
    pub fn new(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        Self {
            device,
            queue,
            info,
            context: Arc::default(),
        }
    }

    /// The engine context on this device, made on first use and kept: its compiled pipelines
    /// (and device-loss watch) serve every later engine, so a second run, another volume or
    /// checkpoint does not compile the kernels again.
    pub fn context(&self) -> Arc<GpuContext> {
        self.context
            .get_or_init(|| {
                Arc::new(GpuContext::from_device(
                    self.device.clone(),
                    self.queue.clone(),
                    self.info.clone(),
                ))
            })
            .clone()
    }

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

/// A factory whose engines run on `shared` (eframe's device), whatever its kind, all on its one
/// engine context ([`SharedGpu::context`]).
pub fn shared_engine_factory(choice: DeviceChoice, shared: SharedGpu) -> EngineFactory {
    Arc::new(
        move |ckpt: &Checkpoint| -> Result<Box<dyn Upscaler>, EngineError> {
            crate::backend::create_with_context(ckpt.clone(), choice, shared.context())
        },
    )
}
