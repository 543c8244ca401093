//! The display shader (shaders/viewer/display.wgsl) on a real wgpu device (lavapipe in CI): a
//! slice drawn through the egui_wgpu paint callback must give, pixel for pixel, the colour the CPU
//! computes from the same window/level, colour map, mirroring and sampling rules.

use std::sync::Arc;

use deltawkv::app::colormap::Colormap;
use deltawkv::app::render::{DisplayParams, DisplayResources, SliceCallback, SliceImage};
use deltawkv::app::windowing::WindowLevel;
use deltawkv::plane::Plane;
use eframe::egui_wgpu::{self, CallbackTrait, wgpu};
use egui::{Rect, pos2};

const W: u32 = 80;
const H: u32 = 60;
const NAN_COLOR: [f32; 4] = [0.2, 0.4, 0.6, 1.0];

/// Draws `cb` into a W x H Rgba8Unorm target cleared to transparent black; returns RGBA bytes.
fn draw(rs: &egui_wgpu::RenderState, cb: &SliceCallback) -> Vec<u8> {
    let device = &rs.device;
    let queue = &rs.queue;
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let mut res = egui_wgpu::CallbackResources::default();
    res.insert(DisplayResources::new(device, queue, format));
    let screen = egui_wgpu::ScreenDescriptor {
        size_in_pixels: [W, H],
        pixels_per_point: 1.0,
    };
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let extra = cb.prepare(device, queue, &screen, &mut encoder, &mut res);
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: W,
            height: H,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
    {
        let mut pass = encoder
            .begin_render_pass(&wgpu::RenderPassDescriptor {
                label: None,
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::TRANSPARENT),
                        store: wgpu::StoreOp::Store,
                    },
                    depth_slice: None,
                })],
                ..Default::default()
            })
            .forget_lifetime();
        pass.set_viewport(0.0, 0.0, W as f32, H as f32, 0.0, 1.0);
        let full = Rect::from_min_max(pos2(0.0, 0.0), pos2(W as f32, H as f32));
        let info = egui::PaintCallbackInfo {
            viewport: full,
            clip_rect: full,
            pixels_per_point: 1.0,
            screen_size_px: [W, H],
        };
        cb.paint(info, &mut pass, &res);
    }
    deltawkv::app::export::read_back_rgba(device, queue, encoder, extra, &texture, W, H)
        .expect("read back")
}

fn render_state() -> egui_wgpu::RenderState {
    egui_kittest::wgpu::create_render_state(
        egui_kittest::wgpu::default_wgpu_setup(),
        egui_wgpu::RendererOptions::PREDICTABLE,
    )
}

/// A 7 x 5 ramp with one NaN voxel.
fn ramp() -> Plane {
    let mut p = Plane::zeros(7, 5);
    for r in 0..5 {
        for c in 0..7 {
            p.set(r, c, (r * 7 + c) as f32 * 10.0);
        }
    }
    p.set(2, 3, f32::NAN);
    p
}

fn callback(plane: Plane, bilinear: bool, flips: (bool, bool)) -> SliceCallback {
    SliceCallback {
        slot: 0,
        image: SliceImage {
            plane: Arc::new(plane),
            stamp: 1,
        },
        params: DisplayParams {
            // The image covers 70 x 50 pixels: 10 pixels per voxel.
            image_rect: Rect::from_min_max(pos2(0.0, 0.0), pos2(70.0, 50.0)),
            window: (50.0, 250.0),
            colormap: Colormap::Viridis,
            flip_cols: flips.0,
            flip_rows: flips.1,
            bilinear,
            nan_color: NAN_COLOR,
        },
    }
}

#[test]
fn nearest_display_matches_cpu_window_and_colour_map() {
    let rs = render_state();
    let plane = ramp();
    let lut = Colormap::Viridis.lut();
    let wl = WindowLevel::from_range(50.0, 250.0);
    for flips in [(false, false), (true, true), (true, false)] {
        let px = draw(&rs, &callback(plane.clone(), false, flips));
        for y in 0..H {
            for x in 0..W {
                let o = ((y * W + x) * 4) as usize;
                let got = &px[o..o + 4];
                if x >= 70 || y >= 50 {
                    assert_eq!(got, [0, 0, 0, 0], "outside the image at ({x}, {y})");
                    continue;
                }
                let mut c = (x / 10) as usize;
                let mut r = (y / 10) as usize;
                if flips.0 {
                    c = 6 - c;
                }
                if flips.1 {
                    r = 4 - r;
                }
                let v = plane.get(r, c);
                let want: [u8; 4] = if v.is_nan() {
                    NAN_COLOR.map(|f| (f * 255.0).round() as u8)
                } else {
                    lut[Colormap::lut_index(wl.normalise(v))]
                };
                assert_eq!(
                    got, want,
                    "pixel ({x}, {y}) voxel ({c}, {r}) flips {flips:?}"
                );
            }
        }
    }
}

#[test]
fn bilinear_display_interpolates_between_voxel_centres() {
    let rs = render_state();
    // A horizontal ramp without NaN: 0, 10, ..., 60 per column.
    let mut plane = Plane::zeros(7, 5);
    for r in 0..5 {
        for c in 0..7 {
            plane.set(r, c, c as f32 * 10.0);
        }
    }
    let mut cb = callback(plane, true, (false, false));
    cb.params.window = (0.0, 60.0);
    cb.params.colormap = Colormap::Gray;
    let px = draw(&rs, &cb);
    let gray_at = |x: u32, y: u32| px[((y * W + x) * 4) as usize];
    // Pixel centre x + 0.5 maps to texel coordinate (x + 0.5) / 10 - 0.5; value = that * 10.
    for x in [5u32, 12, 20, 33, 47, 64] {
        let t = (x as f32 + 0.5) / 10.0 - 0.5;
        let value = (t.clamp(0.0, 6.0)) * 10.0;
        let want = Colormap::Gray.lut()[Colormap::lut_index(value / 60.0)][0];
        let got = gray_at(x, 25);
        assert!(
            (i32::from(got) - i32::from(want)).abs() <= 1,
            "x {x}: got {got}, want {want}"
        );
    }
}

/// The device eframe creates for the viewer is the one the engine needs: on an adapter with
/// subgroups (lavapipe has them, as the GPU machine's NVIDIA driver does) the engine sharing it
/// runs the subgroup and segmented scans. Without them it fell back to the one-thread-a-row scan:
/// 0.66 s a slice in the viewer on the H100 against 27 ms for `bench` (BENCHMARKS.md).
#[test]
fn the_viewers_device_gives_the_engine_subgroups() {
    let egui_wgpu::WgpuSetup::CreateNew(app) =
        deltawkv::app::native_options().wgpu_options.wgpu_setup
    else {
        panic!("the viewer must create its own device");
    };
    let mut setup = egui_kittest::wgpu::default_wgpu_setup();
    if let egui_wgpu::WgpuSetup::CreateNew(c) = &mut setup {
        c.device_descriptor = app.device_descriptor.clone();
    }
    let rs =
        egui_kittest::wgpu::create_render_state(setup, egui_wgpu::RendererOptions::PREDICTABLE);
    let info = rs.adapter.get_info();
    assert!(
        rs.adapter.features().contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 4,
        "the test adapter ({}) has no subgroups of 4 lanes or more",
        info.name
    );
    let ctx = deltawkv::gpu::GpuContext::from_device(rs.device.clone(), rs.queue.clone(), info);
    assert!(
        ctx.has_subgroups(),
        "the viewer's device was created without subgroups"
    );
}
