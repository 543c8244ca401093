//! GPU slice display: slices live in float textures on eframe's own wgpu device and are drawn
//! with window/level and a colour lookup table by `shaders/viewer/display.wgsl`, through
//! egui_wgpu paint callbacks. One texture per pane slot, re-uploaded only when the slice content
//! changes.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use eframe::egui_wgpu::{self, wgpu};
use egui::Rect;

use super::colormap::{Colormap, LUT_SIZE};
use crate::plane::Plane;

/// WGSL source of the display shader.
pub const DISPLAY_WGSL: &str = include_str!("../../shaders/viewer/display.wgsl");

/// Uniforms of the display shader (layout matches `Params` in display.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    image_min: [f32; 2],
    image_size: [f32; 2],
    win_lo: f32,
    win_hi: f32,
    lut_row: u32,
    flags: u32,
    nan_color: [f32; 4],
}

const FLAG_FLIP_COLS: u32 = 1;
const FLAG_FLIP_ROWS: u32 = 2;
const FLAG_BILINEAR: u32 = 4;

/// How to draw one slice: what the shader needs besides the texture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisplayParams {
    /// Where the whole image lies on screen, in points (may extend past the pane).
    pub image_rect: Rect,
    /// Values mapped to the first and last colour of the map.
    pub window: (f32, f32),
    pub colormap: Colormap,
    pub flip_cols: bool,
    pub flip_rows: bool,
    /// Bilinear instead of nearest sampling between voxels.
    pub bilinear: bool,
    /// Colour of non-finite voxels (pending SR slices), linear RGBA 0..1 in gamma space.
    pub nan_color: [f32; 4],
}

/// A slice to show: the plane and a stamp that changes whenever its content does.
#[derive(Clone, Debug)]
pub struct SliceImage {
    pub plane: Arc<Plane>,
    pub stamp: u64,
}

/// The paint callback of one pane.
pub struct SliceCallback {
    /// Pane slot: each visible pane uses its own texture.
    pub slot: u32,
    pub image: SliceImage,
    pub params: DisplayParams,
}

struct SlotGpu {
    texture: wgpu::Texture,
    size: (u32, u32),
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    stamp: Option<u64>,
}

/// Pipeline, lookup table and per-slot textures, stored in the renderer's callback resources.
pub struct DisplayResources {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    lut_view: wgpu::TextureView,
    max_dim: u32,
    slots: HashMap<u32, SlotGpu>,
    /// Last upload failure (slice too large for the device), shown by the app.
    pub last_error: Option<String>,
}

impl DisplayResources {
    /// Creates the pipeline for a render target of `format` and uploads the colour maps.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("deltawkv display"),
            source: wgpu::ShaderSource::Wgsl(DISPLAY_WGSL.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("deltawkv display layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: NonZeroU64::new(std::mem::size_of::<Params>() as u64),
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("deltawkv display pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("deltawkv display pipeline"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                targets: &[Some(wgpu::ColorTargetState {
                    format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            }),
            multiview_mask: None,
            cache: None,
        });

        let rows = Colormap::ALL.len() as u32;
        let lut = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("deltawkv colour maps"),
            size: wgpu::Extent3d {
                width: LUT_SIZE as u32,
                height: rows,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let mut bytes = vec![0u8; LUT_SIZE * 4 * rows as usize];
        for cm in Colormap::ALL {
            let row = cm.row() as usize;
            for (i, c) in cm.lut().iter().enumerate() {
                let o = (row * LUT_SIZE + i) * 4;
                if let Some(dst) = bytes.get_mut(o..o + 4) {
                    dst.copy_from_slice(c);
                }
            }
        }
        queue.write_texture(
            lut.as_image_copy(),
            &bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(LUT_SIZE as u32 * 4),
                rows_per_image: Some(rows),
            },
            wgpu::Extent3d {
                width: LUT_SIZE as u32,
                height: rows,
                depth_or_array_layers: 1,
            },
        );
        let lut_view = lut.create_view(&wgpu::TextureViewDescriptor::default());
        Self {
            pipeline,
            layout,
            lut_view,
            max_dim: device.limits().max_texture_dimension_2d,
            slots: HashMap::new(),
            last_error: None,
        }
    }

    fn prepare_slot(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        slot: u32,
        image: &SliceImage,
        params: &Params,
    ) {
        let (w, h) = (image.plane.width as u32, image.plane.height as u32);
        if image.plane.data.len() != image.plane.width * image.plane.height {
            self.last_error = Some(format!(
                "slice claims {w}x{h} voxels but holds {}",
                image.plane.data.len()
            ));
            self.slots.remove(&slot);
            return;
        }
        if w == 0 || h == 0 || w > self.max_dim || h > self.max_dim {
            self.last_error = Some(format!(
                "slice of {w}x{h} voxels cannot be shown (texture limit {})",
                self.max_dim
            ));
            self.slots.remove(&slot);
            return;
        }
        let needs_new = self.slots.get(&slot).is_none_or(|s| s.size != (w, h));
        if needs_new {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("deltawkv slice"),
                size: wgpu::Extent3d {
                    width: w,
                    height: h,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::R32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("deltawkv slice params"),
                size: std::mem::size_of::<Params>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("deltawkv slice bind group"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: uniform.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(&view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::TextureView(&self.lut_view),
                    },
                ],
            });
            self.slots.insert(
                slot,
                SlotGpu {
                    texture,
                    size: (w, h),
                    uniform,
                    bind_group,
                    stamp: None,
                },
            );
        }
        let Some(s) = self.slots.get_mut(&slot) else {
            return;
        };
        if s.stamp != Some(image.stamp) {
            queue.write_texture(
                s.texture.as_image_copy(),
                bytemuck::cast_slice(&image.plane.data),
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(4 * w),
                    rows_per_image: Some(h),
                },
                wgpu::Extent3d {
                    width: w,
                    height: h,
                    depth_or_array_layers: 1,
                },
            );
            s.stamp = Some(image.stamp);
        }
        queue.write_buffer(&s.uniform, 0, bytemuck::bytes_of(params));
    }
}

impl SliceCallback {
    fn gpu_params(&self, pixels_per_point: f32) -> Params {
        let p = &self.params;
        let mut flags = 0;
        if p.flip_cols {
            flags |= FLAG_FLIP_COLS;
        }
        if p.flip_rows {
            flags |= FLAG_FLIP_ROWS;
        }
        if p.bilinear {
            flags |= FLAG_BILINEAR;
        }
        Params {
            image_min: [
                p.image_rect.min.x * pixels_per_point,
                p.image_rect.min.y * pixels_per_point,
            ],
            image_size: [
                p.image_rect.width() * pixels_per_point,
                p.image_rect.height() * pixels_per_point,
            ],
            win_lo: p.window.0,
            win_hi: p.window.1,
            lut_row: p.colormap.row(),
            flags,
            nan_color: p.nan_color,
        }
    }
}

impl egui_wgpu::CallbackTrait for SliceCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen_descriptor: &egui_wgpu::ScreenDescriptor,
        _egui_encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let params = self.gpu_params(screen_descriptor.pixels_per_point);
        if let Some(res) = resources.get_mut::<DisplayResources>() {
            res.prepare_slot(device, queue, self.slot, &self.image, &params);
        } else {
            tracing::error!("display resources missing: the slice cannot be drawn");
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        let Some(res) = resources.get::<DisplayResources>() else {
            return;
        };
        let Some(slot) = res.slots.get(&self.slot) else {
            return;
        };
        render_pass.set_pipeline(&res.pipeline);
        render_pass.set_bind_group(0, &slot.bind_group, &[]);
        render_pass.draw(0..3, 0..1);
    }
}

/// Installs the display resources into an egui_wgpu render state (once per renderer).
pub fn install(render_state: &egui_wgpu::RenderState) {
    let res = DisplayResources::new(
        &render_state.device,
        &render_state.queue,
        render_state.target_format,
    );
    render_state.renderer.write().callback_resources.insert(res);
}

/// The paint callback shape for a pane: drawn within `clip` (the pane rectangle).
pub fn slice_shape(pane: Rect, callback: SliceCallback) -> egui::Shape {
    egui::Shape::Callback(egui_wgpu::Callback::new_paint_callback(pane, callback))
}
