//! The wgpu device the engine runs on: owned (created here from the best adapter) or borrowed
//! (eframe's device, shared with the viewer), with error capture that never panics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::engine::EngineError;

use super::pipelines::{self, PipelineCache, PipelineEntry};
use super::shader::KernelKey;

/// Errors reported by wgpu outside an error scope, and device loss, recorded for the engine to
/// turn into an [`EngineError`] at its next synchronisation point.
#[derive(Default)]
struct ErrorSink {
    messages: Mutex<Vec<String>>,
    lost: AtomicBool,
    lost_message: Mutex<String>,
}

/// A wgpu device and queue with what the engine needs to know about them, and the pipelines
/// compiled on it.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The adapter behind the device (name, type, backend).
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with (the adapter's own limits when owned).
    pub limits: wgpu::Limits,
    /// The adapter's largest device-local memory heap in bytes, where the backend tells it
    /// (Vulkan adapters opened by [`GpuContext::new`]); sizes the engine's default memory budget.
    pub device_memory: Option<u64>,
    /// What the adapter offers for tensor-core work (f16 shaders, cooperative matrices), where
    /// the context opened the adapter itself ([`GpuContext::new`]); reported by `bench`.
    pub capabilities: Option<AdapterCapabilities>,
    sink: Arc<ErrorSink>,
    pipelines: PipelineCache,
}

/// The adapter's features for tensor-core work, as its driver reports them: whether WGSL `f16`
/// is available (`Features::SHADER_F16`) and the cooperative-matrix configurations
/// (`Features::EXPERIMENTAL_COOPERATIVE_MATRIX`, `Adapter::cooperative_matrix_properties`), each
/// as `MxNxK AB->C` (`+sat` where saturating accumulation is offered). `bench` reports them; the
/// tensor-core matrix product uses the 16x16x16 f16 -> f32 configuration where offered.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct AdapterCapabilities {
    pub shader_f16: bool,
    pub cooperative_matrix: Vec<String>,
    /// What `shaders/network/matmul_coop.wgsl` needs: f16, subgroups of one fixed size, and
    /// 16x16x16 cooperative matrices with f16 inputs and f32 accumulation. The engine's own
    /// device is then created with these features ([`GpuContext::new`]).
    pub tensor_core_f16: bool,
}

impl AdapterCapabilities {
    /// Reads them from `adapter`.
    pub fn of(adapter: &wgpu::Adapter) -> Self {
        let features = adapter.features();
        let cooperative_matrix =
            if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
                adapter
                    .cooperative_matrix_properties()
                    .iter()
                    .map(|p| {
                        format!(
                            "{}x{}x{} {:?}->{:?}{}",
                            p.m_size,
                            p.n_size,
                            p.k_size,
                            p.ab_type,
                            p.cr_type,
                            if p.saturating_accumulation {
                                " +sat"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
        let info = adapter.get_info();
        let f16_f32_16 = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            && adapter.cooperative_matrix_properties().iter().any(|p| {
                (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                    && p.ab_type == wgpu::CooperativeScalarType::F16
                    && p.cr_type == wgpu::CooperativeScalarType::F32
            });
        Self {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            cooperative_matrix,
            tensor_core_f16: f16_f32_16
                && features.contains(wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP)
                && info.subgroup_min_size == info.subgroup_max_size
                && info.subgroup_min_size >= 16,
        }
    }
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish_non_exhaustive()
    }
}

/// The largest device-local memory heap of a Vulkan adapter in bytes; `None` on other backends
/// (wgpu itself does not report a card's memory).
#[cfg(any(target_os = "linux", target_os = "windows", target_os = "android"))]
fn device_local_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the Vulkan adapter is only read (its physical device's memory properties) while
    // `adapter` is alive; nothing is created from it.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: the physical device belongs to this instance.
    let props =
        unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT = 0x1
    props
        .memory_heaps_as_slice()
        .iter()
        .filter(|h| h.flags.as_raw() & 1 != 0)
        .map(|h| h.size)
        .max()
}

#[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "android")))]
fn device_local_memory(_adapter: &wgpu::Adapter) -> Option<u64> {
    None
}

/// Rank of an adapter type for inference: real GPUs first, software adapters last.
fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Rank of a backend: Vulkan/Metal/DX12 before GL (whose compute limits can be too small).
fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    }
}

/// The device the engine needs from `adapter`, for its own context and for the viewer's (eframe
/// creates the device the engine then shares): the adapter's own limits (the default WebGPU ones
/// would cap the batch and forbid large slices) and subgroup operations when the adapter has them
/// (the split-row and segmented scans use them; without them the engine falls back to the
/// one-thread-a-row scan, about 5x slower for one slice on an H100).
pub fn device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
    wgpu::DeviceDescriptor {
        label: Some("deltawkv"),
        required_features: adapter.features() & wgpu::Features::SUBGROUP,
        required_limits: adapter.limits(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }
}

/// Short human-readable description of an adapter, e.g. `NVIDIA H100 (Vulkan, discrete GPU)`.
pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "software adapter",
        wgpu::DeviceType::Other => "adapter",
    };
    format!("{} ({:?}, {kind})", info.name, info.backend)
}

/// Narrows the (ranked) adapters to the one `DELTAWKV_ADAPTER` names: an index into the ranked
/// list (`0`, `1`, ...: several identical GPUs), or a case-insensitive part of the adapter's name
/// or PCI bus id (`lavapipe`, `0000:1b:00.0`).
fn select_adapter(
    adapters: Vec<wgpu::Adapter>,
    choice: &str,
) -> Result<Vec<wgpu::Adapter>, EngineError> {
    let choice = choice.trim();
    let listed = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            format!(
                "{i}: {} [{}]",
                describe_adapter(&info),
                info.device_pci_bus_id
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let picked: Vec<wgpu::Adapter> = if let Ok(index) = choice.parse::<usize>() {
        adapters.into_iter().nth(index).into_iter().collect()
    } else {
        let needle = choice.to_lowercase();
        adapters
            .into_iter()
            .filter(|a| {
                let info = a.get_info();
                info.name.to_lowercase().contains(&needle)
                    || info.device_pci_bus_id.to_lowercase().contains(&needle)
            })
            .collect()
    };
    if picked.is_empty() {
        return Err(EngineError::NoAdapter(format!(
            "DELTAWKV_ADAPTER={choice} matches none of the adapters ({listed})"
        )));
    }
    tracing::info!("DELTAWKV_ADAPTER={choice}: choosing among {listed}");
    Ok(picked)
}

impl GpuContext {
    /// Creates a device on the best adapter of this machine: a discrete, integrated or virtual
    /// GPU before a software (CPU-type) adapter, Vulkan/Metal/DX12 before GL. The device gets the
    /// adapter's own limits (large storage buffers, big workgroups). The `WGPU_BACKEND` variable
    /// restricts the backends as wgpu documents; `DELTAWKV_ADAPTER` picks one adapter by index or
    /// by a part of its name or PCI bus id (machines with several GPUs).
    pub fn new() -> Result<Self, EngineError> {
        Self::with_adapter(std::env::var("DELTAWKV_ADAPTER").ok().as_deref())
    }

    /// [`GpuContext::new`] with the adapter named by `choice` (as `DELTAWKV_ADAPTER` names one:
    /// an index, a part of the name or of the PCI bus id) instead of the variable's; `None`: the
    /// best adapter.
    pub fn with_adapter(choice: Option<&str>) -> Result<Self, EngineError> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        // `WGPU_BACKEND` narrows the choice; otherwise the native APIs first, GL (whose probing
        // logs errors on machines without EGL drivers) only when they offer nothing.
        let explicit = std::env::var_os("WGPU_BACKEND").is_some();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let mut adapters = if explicit {
            pollster::block_on(instance.enumerate_adapters(backends))
        } else {
            pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
        };
        if adapters.is_empty() && !explicit {
            adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::GL));
        }
        if adapters.is_empty() {
            return Err(EngineError::NoAdapter(
                "wgpu found no adapter (install a Vulkan driver, e.g. mesa-vulkan-drivers for \
                 the lavapipe software adapter)"
                    .into(),
            ));
        }
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            (type_rank(i.device_type), backend_rank(i.backend))
        });
        if let Some(choice) = choice {
            adapters = select_adapter(adapters, choice)?;
        }
        let mut last_err = String::new();
        for adapter in adapters {
            let info = adapter.get_info();
            let limits = adapter.limits();
            if limits.max_compute_invocations_per_workgroup < 128
                || limits.max_compute_workgroup_storage_size < 16384
            {
                last_err = format!("{}: compute limits too small", describe_adapter(&info));
                continue;
            }
            let mut capabilities = AdapterCapabilities::of(&adapter);
            let plain = device_descriptor(&adapter);
            let mut opened = None;
            if capabilities.tensor_core_f16 {
                // The tensor-core matrix product (opt-in, `KernelOptions::matmul_coop`). Only the
                // modules that use cooperative matrices are compiled under the Vulkan memory
                // model these features turn on; the other kernels are unchanged.
                let mut desc = plain.clone();
                desc.required_features |=
                    wgpu::Features::SHADER_F16 | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
                // SAFETY: wgpu's experimental cooperative matrices are used by one kernel,
                // validated by naga in the tests and checked against the f32 kernels on a GPU
                // that has them (tests/gpu/coop.rs).
                desc.experimental_features = unsafe { wgpu::ExperimentalFeatures::enabled() };
                match pollster::block_on(adapter.request_device(&desc)) {
                    Ok(d) => opened = Some(Ok(d)),
                    Err(e) => {
                        // the f32 kernels do not need them: open the device without
                        tracing::warn!(
                            "{}: no device with cooperative matrices ({e}); without them",
                            describe_adapter(&info)
                        );
                        capabilities.tensor_core_f16 = false;
                    }
                }
            }
            let opened =
                opened.unwrap_or_else(|| pollster::block_on(adapter.request_device(&plain)));
            match opened {
                Ok((device, queue)) => {
                    let memory = device_local_memory(&adapter);
                    let mut ctx = Self::build(device, queue, info, limits, memory);
                    ctx.capabilities = Some(capabilities);
                    let sink = ctx.sink.clone();
                    ctx.device
                        .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                            tracing::error!("uncaptured wgpu error: {e}");
                            if let Ok(mut m) = sink.messages.lock() {
                                m.push(e.to_string());
                            }
                        }));
                    return Ok(ctx);
                }
                Err(e) => last_err = format!("{}: {e}", describe_adapter(&info)),
            }
        }
        Err(EngineError::NoAdapter(last_err))
    }

    /// Wraps a device created elsewhere (eframe's), so the viewer and the engine share it. The
    /// caller's uncaptured-error handler is left alone: the engine wraps its own work in error
    /// scopes. The device should have been created with the adapter's limits (see
    /// `docs/` and the platform notes); smaller limits only reduce the batch size. The card's
    /// memory is not known here ([`GpuContext::device_memory`] is `None`), so the engine keeps
    /// the fixed default budget, which leaves room for the caller's own use of the card.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let limits = device.limits();
        Self::build(device, queue, info, limits, None)
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        limits: wgpu::Limits,
        device_memory: Option<u64>,
    ) -> Self {
        let sink = Arc::new(ErrorSink::default());
        let lost_sink = sink.clone();
        device.set_device_lost_callback(move |reason, msg| {
            tracing::error!("GPU device lost ({reason:?}): {msg}");
            if let Ok(mut m) = lost_sink.lost_message.lock() {
                *m = format!("{reason:?}: {msg}");
            }
            lost_sink.lost.store(true, Ordering::SeqCst);
        });
        Self {
            device,
            queue,
            info,
            limits,
            device_memory,
            capabilities: None,
            sink,
            pipelines: PipelineCache::default(),
        }
    }

    /// The pipeline of a kernel variant, compiled on first use (inside [`GpuContext::scoped`])
    /// and cached.
    pub fn pipeline(&self, key: &KernelKey) -> Result<Arc<PipelineEntry>, EngineError> {
        self.pipelines.get_or_compile(key, || {
            self.scoped(|| pipelines::compile(&self.device, key))?
        })
    }

    /// Compiles the pipelines of `keys` that are not cached yet, several at a time (one thread a
    /// core, at most one a key): a plan's first run compiles about twenty variants, which on a
    /// cold driver cache is most of the time to the viewer's first SR slice. Every thread has
    /// its own error scopes (wgpu's are per thread); the first error is returned.
    pub fn precompile(&self, keys: &[KernelKey]) -> Result<(), EngineError> {
        let mut missing: Vec<&KernelKey> = Vec::new();
        for k in keys {
            if !self.pipelines.contains(k) && !missing.contains(&k) {
                missing.push(k);
            }
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(missing.len());
        if threads <= 1 {
            return missing
                .into_iter()
                .try_for_each(|k| self.pipeline(k).map(drop));
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(k) = missing.get(i) else {
                                return Ok(());
                            };
                            self.pipeline(k)?;
                        }
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(EngineError::Internal("a compile thread panicked".into()))
                })
            })
        })
    }

    /// How many kernel variants this context has compiled (its pipeline cache).
    pub fn compiled_pipelines(&self) -> usize {
        self.pipelines.len()
    }

    /// Whether kernels may use subgroup operations on groups of 4 consecutive invocations: the
    /// device was created with [`wgpu::Features::SUBGROUP`] and its subgroups have at least 4
    /// lanes.
    pub fn has_subgroups(&self) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size >= 4
    }

    /// The subgroup size the tensor-core matrix product runs with, where the device was created
    /// for it ([`AdapterCapabilities::tensor_core_f16`]); `None` elsewhere (eframe's device,
    /// lavapipe).
    pub fn tensor_core_subgroup(&self) -> Option<u32> {
        let f = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        (self
            .capabilities
            .as_ref()
            .is_some_and(|c| c.tensor_core_f16)
            && self.device.features().contains(f))
        .then_some(self.info.subgroup_min_size)
    }

    /// Whether the adapter is a software rasteriser (lavapipe, llvmpipe, WARP...).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// See [`describe_adapter`].
    pub fn describe(&self) -> String {
        describe_adapter(&self.info)
    }

    /// Returns the first recorded asynchronous failure (device lost, uncaptured error), if any.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.sink.lost.load(Ordering::SeqCst) {
            let msg = self
                .sink
                .lost_message
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default();
            return Err(EngineError::Device(format!("device lost: {msg}")));
        }
        if let Ok(mut m) = self.sink.messages.lock()
            && let Some(first) = m.first().cloned()
        {
            m.clear();
            return Err(classify(&first));
        }
        Ok(())
    }

    /// Runs `f` inside out-of-memory, validation and internal error scopes on this thread and
    /// turns a captured error into an [`EngineError`].
    pub fn scoped<T>(&self, f: impl FnOnce() -> T) -> Result<T, EngineError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let int = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let out = f();
        let e_int = pollster::block_on(int.pop());
        let e_val = pollster::block_on(val.pop());
        let e_oom = pollster::block_on(oom.pop());
        if let Some(e) = e_oom {
            return Err(EngineError::OutOfMemory(e.to_string()));
        }
        if let Some(e) = e_val.or(e_int) {
            return Err(classify(&e.to_string()));
        }
        self.check()?;
        Ok(out)
    }

    /// Blocks until all submitted work is done (or, with `index`, that submission).
    pub fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<(), EngineError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map_err(|e| EngineError::Device(format!("waiting for the GPU: {e}")))?;
        self.check()
    }
}

/// Maps a wgpu error message to the engine's error kinds.
fn classify(msg: &str) -> EngineError {
    let lower = msg.to_ascii_lowercase();
    if lower.contains("out of memory") || lower.contains("outofmemory") {
        EngineError::OutOfMemory(msg.to_string())
    } else if lower.contains("lost") {
        EngineError::Device(format!("device lost: {msg}"))
    } else {
        EngineError::Device(msg.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapters() -> Vec<wgpu::Adapter> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let instance = wgpu::Instance::new(desc);
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
    }

    #[test]
    fn adapter_choice_by_index_name_or_nothing() {
        let all = adapters();
        if all.is_empty() {
            // CI has lavapipe; without any adapter there is nothing to choose among.
            assert!(std::env::var("DELTAWKV_SKIP_GPU_TESTS").as_deref() == Ok("1"));
            return;
        }
        let n = all.len();
        let first = all[0].get_info().name;
        let by_index = select_adapter(all, "0").expect("index 0");
        assert_eq!(by_index.len(), 1);
        let needle = first.to_uppercase();
        let by_name = select_adapter(adapters(), &needle[..needle.len().min(6)]).expect("name");
        assert!(!by_name.is_empty() && by_name.len() <= n);
        for bad in [n.to_string(), "no-such-adapter-xyz".to_string()] {
            match select_adapter(adapters(), &bad) {
                Err(EngineError::NoAdapter(msg)) => {
                    assert!(msg.contains(&bad) && msg.contains(&first), "{msg}")
                }
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("`{bad}` should match nothing"),
            }
        }
    }
}
