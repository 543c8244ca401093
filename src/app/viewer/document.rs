//! The opened document: the volume being loaded or loaded, the preparation under way and the
//! prepared session (LR, GT, baselines) the panes and runs work on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::app::jobs::Loaded;
use crate::app::session::Prepared;

/// The document's state; jobs report back under a ticket and reports of older jobs are dropped.
pub struct Document {
    /// Number of the latest load or preparation; reports of older ones are ignored.
    pub(super) ticket: u64,
    /// Path being loaded and since when.
    pub(super) loading: Option<(PathBuf, Instant)>,
    pub(super) loaded: Option<Loaded>,
    /// Preparation under way (since when).
    pub(super) preparing: Option<Instant>,
    pub(super) prepare_cancel: Arc<AtomicBool>,
    pub(super) prepared: Option<Arc<Prepared>>,
    /// Increments with every new prepared session (keys caches and metric reports).
    pub(super) session_id: u64,
}

impl Default for Document {
    fn default() -> Self {
        Self {
            ticket: 0,
            loading: None,
            loaded: None,
            preparing: None,
            prepare_cancel: Arc::new(AtomicBool::new(false)),
            prepared: None,
            session_id: 0,
        }
    }
}

impl Document {
    /// The path being loaded and since when.
    pub fn loading(&self) -> Option<(&Path, Instant)> {
        self.loading.as_ref().map(|(p, t)| (p.as_path(), *t))
    }

    /// The loaded volume.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref()
    }

    /// Path of the loaded volume.
    pub fn loaded_path(&self) -> Option<&Path> {
        self.loaded.as_ref().map(|l| l.path.as_path())
    }

    /// Since when a preparation runs, if one does.
    pub fn preparing(&self) -> Option<Instant> {
        self.preparing
    }

    /// The prepared session.
    pub fn prepared(&self) -> Option<&Arc<Prepared>> {
        self.prepared.as_ref()
    }

    /// Whether a load or a preparation is under way.
    pub fn busy(&self) -> bool {
        self.loading.is_some() || self.preparing.is_some()
    }

    /// Stops the preparation under way, if any (its report will say cancelled).
    pub(super) fn cancel_preparation(&self) {
        self.prepare_cancel.store(true, Ordering::Relaxed);
    }

    /// A default file name stem for exports.
    pub fn export_stem(&self) -> String {
        let src = self
            .loaded
            .as_ref()
            .and_then(|l| l.path.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "volume".into());
        let stem = src
            .trim_end_matches(".gz")
            .trim_end_matches(".nii")
            .to_string();
        match &self.prepared {
            Some(p) => format!("{stem}_sr_x{}", p.params.scale),
            None => stem,
        }
    }
}
