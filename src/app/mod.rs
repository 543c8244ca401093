//! The egui viewer. The only module that knows egui.
//!
//! - [`session`]: the opened volume turned into LR, GT and baselines (no window); [`runs`]: the
//!   SR runs filled on its grid; [`layout`]: which panes show and the plane each one shows;
//! - [`geometry`], [`windowing`], [`colormap`], [`metrics_cache`]: navigation, window/level,
//!   colour maps and cached metrics (no window);
//! - [`jobs`]: loading, preparation, inference and metrics off the UI thread;
//! - [`viewer`]: the runtime state and what the user's actions do;
//! - [`render`] + `shaders/viewer/display.wgsl`: slices drawn from GPU textures on eframe's device;
//! - [`panes`], [`ui`]: drawing and input; [`export`]: NIfTI, PNG, CSV, JSON from plain data;
//! - [`settings`]: what persists between runs, and the shortcut table.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use eframe::egui_wgpu;

pub mod backend;
pub mod colormap;
pub mod export;
pub mod geometry;
pub mod jobs;
pub mod layout;
pub mod metrics_cache;
pub mod panes;
pub mod render;
pub mod runs;
pub mod session;
pub mod settings;
pub mod ui;
pub mod viewer;
pub mod windowing;

pub use settings::Settings;
pub use viewer::{AppOptions, Viewer};

/// Opens the viewer on `path` (the bundled sample when `None`) and blocks until it closes.
///
/// Fails with a message (never a panic) when there is no display, when the display server
/// cannot be reached, and exits with a message and code 1 when the connection to it is lost while
/// the viewer runs (see [`exit_on_display_loss`]).
///
/// `started` is when the process began (its `main`): the time to the first frame on screen is
/// logged from it (`DELTAWKV_LOG=info`: `first frame on screen elapsed_ms=...`).
pub fn run(path: Option<PathBuf>, started: Instant) -> anyhow::Result<()> {
    if let Some(msg) = missing_display(|k| std::env::var_os(k)) {
        anyhow::bail!("{msg}");
    }
    let opts = AppOptions {
        path,
        ..Default::default()
    };
    exit_on_display_loss(|| {
        eframe::run_native(
            "deltawkv",
            native_options(),
            Box::new(move |cc| {
                let mut app = DeltaApp::new(cc, opts);
                app.startup = Some(Startup {
                    since: started,
                    frames: 0,
                });
                Ok(Box::new(app))
            }),
        )
    })
    .map_err(|e| anyhow::anyhow!("the viewer could not start: {e}{}", display_hint()))
}

/// What the command-line tools can do without a display (said in every display error).
const NO_DISPLAY_HINT: &str = "the command-line tools (deltawkv info, convert, upscale, eval, \
                               compare, bench) work without one";

/// The message for a session without any display: on Linux and the BSDs winit needs
/// `WAYLAND_DISPLAY` (or `WAYLAND_SOCKET`) or `DISPLAY`; `None` when one is set (or on other
/// systems). `var` reads an environment variable.
pub fn missing_display(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<String> {
    if !cfg!(all(
        unix,
        not(target_os = "macos"),
        not(target_os = "android")
    )) {
        return None;
    }
    let set = |k: &str| var(k).is_some_and(|v| !v.is_empty());
    if set("WAYLAND_DISPLAY") || set("WAYLAND_SOCKET") || set("DISPLAY") {
        return None;
    }
    Some(format!(
        "no display: neither DISPLAY nor WAYLAND_DISPLAY is set, and the viewer needs a \
         graphical session (an X11 or Wayland desktop, ssh -X, or Xvfb); {NO_DISPLAY_HINT}"
    ))
}

/// ` (display ...)` naming the display the viewer tried, for start-up errors.
fn display_hint() -> String {
    let mut parts = Vec::new();
    for k in ["WAYLAND_DISPLAY", "DISPLAY"] {
        if let Some(v) = std::env::var_os(k).filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", v.to_string_lossy()));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({}); {NO_DISPLAY_HINT}", parts.join(", "))
    }
}

/// Whether a panic came from the windowing backend (winit and the X11/Wayland client crates
/// under it), judged by the file it was raised in.
fn is_windowing_panic(file: &str) -> bool {
    const CRATES: [&str; 7] = [
        "/winit-",
        "/x11rb-",
        "/x11-dl-",
        "/wayland-",
        "/smithay-client-toolkit-",
        "/calloop-",
        "/egui-winit-",
    ];
    CRATES.iter().any(|c| file.contains(c))
}

/// Runs `f` (the event loop) with a panic hook that turns a panic of the windowing backend on
/// the calling thread into a message on stderr and exit code 1. winit 0.30's X11 backend panics
/// (`unwrap` on a connection error) rather than returning an error when the X server goes away
/// while the event loop runs, and unwinding from there can panic again in a destructor (an
/// abort), so the process exits from the hook, without unwinding: nothing is left to save once
/// the window is gone. Other panics reach the previous hook unchanged. (When Xlib notices the
/// loss first, its own I/O error handler prints `X connection to :N broken` and exits with 1.)
pub fn exit_on_display_loss<T>(f: impl FnOnce() -> T) -> T {
    type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
    let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
    let thread = std::thread::current().id();
    let chained = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or("");
        if std::thread::current().id() != thread || !is_windowing_panic(file) {
            chained(info);
            return;
        }
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown error".into());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::debug!("windowing backend panicked at {at}: {msg}");
        let shown = display_hint();
        let shown = shown.split(';').next().unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "error: the connection to the display was lost{shown}: the window system failed \
             ({msg}); the viewer stopped"
        );
        std::process::exit(1);
    }));
    let out = f();
    // Back to the previous hook (ours, holding the other reference, is dropped here).
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| previous(info)));
    out
}

/// eframe options: the wgpu renderer, on the device the inference engine needs (the adapter's own
/// limits, since the default WebGL2 limits of a GL fallback would forbid the compute pipelines,
/// and subgroups where the adapter has them; [`crate::gpu::device_descriptor`]).
pub fn native_options() -> eframe::NativeOptions {
    let mut wgpu_options = egui_wgpu::WgpuConfiguration::default();
    if let egui_wgpu::WgpuSetup::CreateNew(c) = &mut wgpu_options.wgpu_setup {
        c.device_descriptor = Arc::new(crate::gpu::device_descriptor);
    }
    eframe::NativeOptions {
        viewport: with_icon(egui::ViewportBuilder::default())
            .with_title("deltawkv: Delta-WKV MRI super-resolution")
            .with_app_id("deltawkv")
            .with_inner_size([1500.0, 950.0])
            .with_min_inner_size([720.0, 480.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        wgpu_options,
        multisampling: 0,
        depth_buffer: 0,
        ..Default::default()
    }
}

/// The window icon: the project's icon (assets/deltawkv.svg, rendered at 128 px), the one the
/// desktop entry names; the window manager's default if it cannot be decoded.
fn with_icon(viewport: egui::ViewportBuilder) -> egui::ViewportBuilder {
    match eframe::icon_data::from_png_bytes(include_bytes!("../../assets/deltawkv-128.png")) {
        Ok(icon) => viewport.with_icon(Arc::new(icon)),
        Err(e) => {
            tracing::warn!("the window icon cannot be decoded: {e}");
            viewport
        }
    }
}

/// Start-up timing of [`run`]: when the process began, and the frames drawn so far.
struct Startup {
    since: Instant,
    frames: u32,
}

/// The eframe application: the viewer plus what only the eframe layer has.
pub struct DeltaApp {
    pub viewer: Viewer,
    /// Whether settings are written on exit (false when the caller gave them, as tests do).
    persist: bool,
    render_state: Option<egui_wgpu::RenderState>,
    /// UI zoom before presentation mode.
    normal_zoom: Option<f32>,
    /// Until the first frame is on screen (windows opened by [`run`] only).
    startup: Option<Startup>,
}

impl DeltaApp {
    /// Creates the app: settings from storage (unless given), display resources installed on
    /// eframe's wgpu renderer, and the initial volume opening.
    pub fn new(cc: &eframe::CreationContext<'_>, opts: AppOptions) -> Self {
        let persist = opts.settings.is_none();
        let settings = opts
            .settings
            .clone()
            .or_else(|| {
                cc.storage
                    .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            })
            .unwrap_or_default();
        let shared = cc.wgpu_render_state.as_ref().map(|rs| {
            render::install(rs);
            backend::SharedGpu::new(rs.device.clone(), rs.queue.clone(), rs.adapter.get_info())
        });
        if shared.is_none() {
            tracing::error!("eframe has no wgpu renderer: slices cannot be drawn");
        }
        let ctx = cc.egui_ctx.clone();
        let waker: jobs::Waker = Arc::new(move || ctx.request_repaint());
        let mut viewer = Viewer::new(opts, settings, shared, waker);
        if !viewer.gpu_display() {
            viewer.error("no wgpu renderer: the panes cannot be drawn on this system".into());
        }
        Self {
            viewer,
            persist,
            render_state: cc.wgpu_render_state.clone(),
            normal_zoom: None,
            startup: None,
        }
    }

    /// Logs the time from the process start to the first frame on screen. eframe paints and
    /// presents a frame after `ui` returns, so the first frame is on screen when the second `ui`
    /// begins; the first asks for the second at once.
    fn startup_timing(&mut self, ctx: &egui::Context) {
        let Some(s) = &mut self.startup else {
            return;
        };
        if s.frames == 0 {
            s.frames = 1;
            ctx.request_repaint();
            return;
        }
        let elapsed_ms = (s.since.elapsed().as_secs_f64() * 1e4).round() / 10.0;
        tracing::info!(elapsed_ms, "first frame on screen");
        self.startup = None;
    }

    fn toggle_presentation(&mut self, ctx: &egui::Context) {
        let v = &mut self.viewer;
        // Presentation starts on the SR pane.
        let on = !v.navigation().presentation();
        v.navigation_mut().set_presentation(on);
        ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(on));
        if on {
            self.normal_zoom = Some(ctx.zoom_factor());
            ctx.set_zoom_factor(v.settings().presentation_zoom);
        } else {
            ctx.set_zoom_factor(self.normal_zoom.take().unwrap_or(1.0));
        }
    }

    fn save_png(&mut self, ctx: &egui::Context) {
        let Some(path) = self.viewer.dialogs_mut().take_png() else {
            return;
        };
        let Some(rs) = self.render_state.clone() else {
            self.viewer.error("PNG not saved: no wgpu renderer".into());
            return;
        };
        let size = self.viewer.navigation().panes_size();
        let v = &mut self.viewer;
        let draw = |ui: &mut egui::Ui, rect| panes::pane_grid(v, ui, rect, false);
        match export::save_png(&rs, size, ctx.pixels_per_point(), &path, draw) {
            Ok((w, h)) => self
                .viewer
                .info(format!("PNG ({w}x{h}) saved to {}", path.display())),
            Err(e) => self.viewer.error(format!("PNG not saved: {e}")),
        }
    }
}

impl eframe::App for DeltaApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.startup_timing(&ctx);
        self.viewer.poll();
        ui::dropped_files(&mut self.viewer, &ctx);
        let mut req = ui::FrameRequests::default();
        ui::shortcuts(&mut self.viewer, ui, &mut req);
        self.viewer.navigation_mut().begin_frame();

        let v = &mut self.viewer;
        if !v.navigation().presentation() {
            egui::Panel::top("menu").show(ui, |ui| {
                ui::menu_bar(v, ui, &mut req);
                ui::toolbar(v, ui);
            });
            if !v.messages().is_empty() {
                egui::Panel::top("messages").show(ui, |ui| ui::messages(v, ui));
            }
            egui::Panel::bottom("status").show(ui, |ui| {
                ui::progress(v, ui);
                ui::status_line(v, ui);
            });
            let simulate = v.prepared().is_some_and(|p| p.gt.is_some());
            if v.settings().show_plot && simulate {
                egui::Panel::bottom("plot")
                    .resizable(true)
                    .default_size(170.0)
                    .min_size(90.0)
                    .show(ui, |ui| ui::psnr_plot(v, ui));
            }
            if v.settings().show_side_panel {
                egui::Panel::right("side")
                    .resizable(true)
                    .default_size(330.0)
                    .show(ui, |ui| ui::side_panel(v, ui));
            }
        }
        egui::CentralPanel::no_frame().show(ui, |ui| {
            let rect = ui.max_rect();
            ui.painter()
                .rect_filled(rect, 0.0, egui::Color32::from_gray(18));
            panes::pane_grid(v, ui, rect.shrink(2.0), true);
        });
        if v.navigation_mut().end_frame() {
            // The readout was drawn before the panes found the voxel: show it next frame.
            ctx.request_repaint();
        }
        ui::help_window(v, &ctx);
        ui::series_window(v, &ctx);
        ui::pacs_window(v, &ctx);
        ui::pacs_nodes_window(v, &ctx);
        v.request_metrics();
        if v.busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }

        if req.toggle_presentation {
            self.toggle_presentation(&ctx);
        }
        if req.save_png {
            let name = format!("{}.png", self.viewer.document().export_stem());
            self.viewer.dialog(jobs::DialogPurpose::ExportPng, &name);
        }
        self.save_png(&ctx);
        // Display problems found while preparing the last frame (e.g. a slice too large).
        let display_error = self.render_state.as_ref().and_then(|rs| {
            rs.renderer
                .write()
                .callback_resources
                .get_mut::<render::DisplayResources>()
                .and_then(|r| r.last_error.take())
        });
        if let Some(e) = display_error {
            self.viewer.error(e);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.persist {
            eframe::set_value(storage, eframe::APP_KEY, self.viewer.settings());
        }
    }
}
