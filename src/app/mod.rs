//! The egui viewer. The only module that knows egui.

use std::path::PathBuf;

pub mod colormap;
pub mod geometry;
pub mod metrics_cache;
pub mod render;
pub mod windowing;

/// Opens the viewer on `path` (the bundled sample when `None`) and blocks until it closes.
pub fn run(_path: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("the viewer is not available yet")
}
