//! The egui viewer. The only module that knows egui.

use std::path::PathBuf;

/// Opens the viewer on `path` (the bundled sample when `None`) and blocks until it closes.
pub fn run(_path: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("the viewer is not available yet")
}
