//! The viewer's exports: the SR volume as NIfTI or as a derived DICOM series (on a worker thread)
//! and the metrics as CSV or JSON, made by [`crate::app::export`] from the viewer's plain data.

use std::path::PathBuf;

use super::Viewer;
use crate::app::export::{self, ExportError, ReportSource};
use crate::app::jobs::CheckpointSource;
use crate::app::metrics_cache::Slot;
use crate::volume::Provenance;

impl Viewer {
    pub(super) fn export_nifti(&mut self, path: PathBuf) {
        let run = self.inference.run(Slot::A);
        match export::sr_volume(self.doc.prepared().map(|p| &**p), run) {
            Ok(v) => self.jobs.save_nifti(v, path),
            Err(e) => self.error(format!("SR volume not saved: {e}")),
        }
    }

    /// Writes the SR of slot A as a derived DICOM series into the new folder `dir`, in the source's
    /// study when the source is DICOM (both modes; simulate mode writes the SR the metrics see).
    pub(super) fn export_dicom(&mut self, dir: PathBuf) {
        let (volume, file, provenance) = match self.derived_series_source() {
            Ok(x) => x,
            Err(e) => return self.error(format!("SR DICOM series not saved: {e}")),
        };
        if let Err(e) = crate::volume::check_series_output(&dir, &volume.meta) {
            return self.error(format!("SR DICOM series not saved: {e}"));
        }
        self.jobs.save_dicom(volume, file, provenance, dir);
    }

    /// What the derived DICOM series of slot A's SR is made from: the SR volume carrying the
    /// source's DICOM identity, the checkpoint file (its SHA-256 is computed by the job) and the
    /// provenance (shared by File > Export SR as DICOM series and File > Send SR to PACS).
    pub(super) fn derived_series_source(
        &self,
    ) -> Result<(crate::volume::Volume, Option<PathBuf>, Provenance), ExportError> {
        let run = self.inference.run(Slot::A);
        let prepared = self.doc.prepared().map(|p| &**p);
        let mut volume = export::sr_volume(prepared, run)?;
        if let Some(p) = prepared {
            // The source's identity and path: the series joins its study, never its folder.
            volume.meta.dicom = p.meta.dicom.clone();
            volume.meta.source_path = p.meta.source_path.clone();
        }
        let scale = prepared.map(|p| p.params.scale).unwrap_or(0);
        let label = run.map(|r| r.checkpoint.clone()).unwrap_or_default();
        let file = match self.inference.checkpoint(Slot::A) {
            Some(CheckpointSource::File(f)) => Some(f.clone()),
            _ => None,
        };
        let provenance = Provenance {
            scale,
            network: "Delta-WKV".into(),
            checkpoint_name: file
                .as_ref()
                .and_then(|f| f.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(label),
            ..Provenance::default()
        };
        Ok((volume, file, provenance))
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
