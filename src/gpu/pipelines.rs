//! The compute pipelines of the kernel variants, compiled on first use and cached per
//! [`KernelKey`] for the life of the device ([`PipelineCache`], held by the
//! [`GpuContext`](super::GpuContext)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::engine::EngineError;

use super::shader::KernelKey;

/// A compiled pipeline and its bind group layout.
pub struct PipelineEntry {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// The pipelines compiled on one device, by kernel variant.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<KernelKey, Arc<PipelineEntry>>>,
}

impl PipelineCache {
    /// The pipeline of `key`: the cached one, or the one `compile` makes (then cached). `compile`
    /// runs without the cache locked.
    pub fn get_or_compile(
        &self,
        key: &KernelKey,
        compile: impl FnOnce() -> Result<PipelineEntry, EngineError>,
    ) -> Result<Arc<PipelineEntry>, EngineError> {
        if let Ok(map) = self.map.lock()
            && let Some(p) = map.get(key)
        {
            return Ok(p.clone());
        }
        let entry = Arc::new(compile()?);
        if let Ok(mut map) = self.map.lock() {
            map.insert(key.clone(), entry.clone());
        }
        Ok(entry)
    }

    /// Whether `key`'s pipeline is compiled.
    pub fn contains(&self, key: &KernelKey) -> bool {
        self.map.lock().is_ok_and(|m| m.contains_key(key))
    }

    /// How many kernel variants are compiled.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Compiles the pipeline of a kernel variant on `device`: binding 0 the parameter block (a
/// uniform at a dynamic offset), then the kernel's storage buffers.
pub fn compile(device: &wgpu::Device, key: &KernelKey) -> Result<PipelineEntry, EngineError> {
    let label = key.label();
    let source = key.source()?;
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: None,
        },
        count: None,
    }];
    for (i, &read_only) in key.kind.storage_bindings().iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(&label),
        entries: &entries,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    // Bounds checks stay on (a kernel can never touch memory outside its bindings). The two
    // checks turned off cost a lot in hot loops and are guaranteed by construction:
    // - loop bounding: every loop of these kernels runs to a bound taken from a constant or
    //   a parameter block, so none is infinite;
    // - integer division guards: every divisor is a template constant or a size the launch
    //   functions derive from non-empty shapes (a launch with an empty dimension has no
    //   workgroups and is skipped by `Graph::dispatch`).
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    checks.force_loop_bounding = false;
    checks.int_div_checks = false;
    // SAFETY: see the two guarantees above; the shaders are this crate's own sources.
    let module = unsafe {
        device.create_shader_module_trusted(
            wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            },
            checks,
        )
    };
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&label),
        layout: Some(&pl),
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    });
    Ok(PipelineEntry { pipeline, layout })
}
