//! The viewer's exports: the SR volume as NIfTI (on a worker thread) and the metrics as CSV or
//! JSON, made by [`crate::app::export`] from the viewer's plain data.

use std::path::PathBuf;

use super::Viewer;
use crate::app::export::{self, ExportError, ReportSource};
use crate::app::metrics_cache::Slot;

impl Viewer {
    pub(super) fn export_nifti(&mut self, path: PathBuf) {
        let run = self.inference.run(Slot::A);
        match export::sr_volume(self.doc.prepared().map(|p| &**p), run) {
            Ok(v) => self.jobs.save_nifti(v, path),
            Err(e) => self.error(format!("SR volume not saved: {e}")),
        }
    }

    /// What a metrics report of this session is made from.
    fn report_source<'a>(
        &'a self,
        results: &'a [crate::app::metrics_cache::ResultId],
    ) -> ReportSource<'a> {
        ReportSource {
            prepared: self.doc.prepared().map(|p| &**p),
            metrics: &self.metrics,
            results,
            source: self.doc.loaded_path(),
            runs: [self.inference.run(Slot::A), self.inference.run(Slot::B)],
        }
    }

    pub(super) fn export_metrics(&mut self, path: PathBuf, json: bool) {
        let results = self.metric_results();
        let r = export::metrics_report(&self.report_source(&results)).and_then(|rep| {
            let text = if json {
                serde_json::to_string_pretty(&rep).map_err(ExportError::from)?
            } else {
                export::metrics_csv(&rep)
            };
            export::write_atomic(&path, text.as_bytes())
        });
        match r {
            Ok(()) => self.info(format!("metrics saved to {}", path.display())),
            Err(e) => self.error(format!("metrics not saved: {e}")),
        }
    }
}
