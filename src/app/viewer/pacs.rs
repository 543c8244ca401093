//! The viewer and a PACS: File > Open from PACS (C-FIND of studies, then of the chosen study's
//! series; the chosen series retrieved by C-GET into a temporary folder, then opened), File >
//! Send SR to PACS (the SR as a derived series, C-STOREd) and a C-ECHO of a node. One operation at
//! a time, each on a worker thread (`Jobs::pacs_*`) with progress and a cancel flag; the UI only
//! polls. Messages name UIDs, counts and nodes, never a patient's name.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::Viewer;
use crate::app::jobs::{JobError, PacsEvent, PacsTarget};
use crate::pacs::{FindQuery, Level, Match, PacsError, Progress};

/// What a PACS operation is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PacsOpKind {
    /// C-ECHO of the node.
    Echo,
    /// C-FIND of studies.
    FindStudies,
    /// C-FIND of the series of one study.
    FindSeries { study_uid: String },
    /// Retrieve of one series.
    Retrieve { series_uid: String },
    /// Send of the SR.
    Send,
}

impl PacsOpKind {
    /// A few words for the progress line.
    pub fn describe(&self) -> &'static str {
        match self {
            PacsOpKind::Echo => "C-ECHO",
            PacsOpKind::FindStudies => "searching studies",
            PacsOpKind::FindSeries { .. } => "searching series",
            PacsOpKind::Retrieve { .. } => "retrieving the series",
            PacsOpKind::Send => "sending the SR",
        }
    }
}

/// The operation under way.
#[derive(Clone, Debug)]
pub struct PacsOp {
    pub id: u64,
    pub kind: PacsOpKind,
    /// The node's label.
    pub node: String,
    pub progress: Option<Progress>,
    pub started: Instant,
    cancel: Arc<AtomicBool>,
}

/// The query fields of the Open from PACS window (empty: any).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacsQuery {
    pub patient_id: String,
    pub patient_name: String,
    /// `YYYYMMDD` or a range `YYYYMMDD-YYYYMMDD`.
    pub study_date: String,
}

/// The PACS windows and operation state (runtime, rebuilt on every start; the nodes themselves
/// are settings).
#[derive(Debug, Default)]
pub struct PacsState {
    /// The Open from PACS window shows.
    pub open_window: bool,
    /// The PACS nodes window shows.
    pub nodes_window: bool,
    pub query: PacsQuery,
    /// Studies of the last search.
    pub studies: Vec<Match>,
    /// The study whose series are listed.
    pub study: Option<String>,
    /// Series of that study.
    pub series: Vec<Match>,
    /// The last outcome, shown in the window (text, is an error).
    pub status: Option<(String, bool)>,
    op: Option<PacsOp>,
    next_id: u64,
    /// Retrieved series, kept (and removed on exit) while the viewer may show them.
    folders: Vec<tempfile::TempDir>,
}

impl PacsState {
    /// The operation under way.
    pub fn op(&self) -> Option<&PacsOp> {
        self.op.as_ref()
    }

    /// Whether `path` lies in a folder a retrieve made (not worth a place in the recent list).
    pub fn owns(&self, path: &Path) -> bool {
        self.folders.iter().any(|d| path.starts_with(d.path()))
    }

    /// Removes the retrieved folders other than the one `opened` lies in (another volume is
    /// open: they are no longer shown).
    pub(super) fn keep_only(&mut self, opened: &Path) {
        self.folders.retain(|d| opened.starts_with(d.path()));
    }
}

/// A PACS error as the user reads it; a cancel is not an error.
fn describe(e: &JobError) -> (String, bool) {
    match e {
        JobError::Pacs(PacsError::Cancelled) => ("cancelled".into(), false),
        other => (other.to_string(), true),
    }
}

impl Viewer {
    /// The PACS windows and operation.
    pub fn pacs(&self) -> &PacsState {
        &self.pacs
    }

    /// The PACS windows' state, for the UI to change (query fields, windows shown).
    pub fn pacs_mut(&mut self) -> &mut PacsState {
        &mut self.pacs
    }

    /// Starts an operation on the selected node; `None` (with a message) when no node is set
    /// or one is running.
    fn pacs_start(&mut self, kind: PacsOpKind) -> Option<(u64, PacsTarget)> {
        if let Some(op) = &self.pacs.op {
            let text = format!(
                "the PACS is busy ({}): wait for it or cancel it",
                op.kind.describe()
            );
            self.pacs.status = Some((text.clone(), true));
            self.error(text);
            return None;
        }
        let Some(node) = self.settings.pacs_node().cloned() else {
            let text = "no PACS node: add one in File > PACS nodes".to_string();
            self.pacs.status = Some((text.clone(), true));
            self.error(text);
            return None;
        };
        let (client, options) = match node.client() {
            Ok(x) => x,
            Err(e) => {
                let text = format!("PACS node {}: {e}", node.label());
                self.pacs.status = Some((text.clone(), true));
                self.error(text);
                return None;
            }
        };
        self.pacs.next_id += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        self.pacs.op = Some(PacsOp {
            id: self.pacs.next_id,
            kind,
            node: node.label(),
            progress: None,
            started: Instant::now(),
            cancel: cancel.clone(),
        });
        self.pacs.status = None;
        Some((
            self.pacs.next_id,
            PacsTarget {
                node: client,
                options,
                cancel,
            },
        ))
    }

    /// C-ECHO of the selected node.
    pub fn pacs_echo(&mut self) {
        if let Some((id, target)) = self.pacs_start(PacsOpKind::Echo) {
            self.jobs.pacs_echo(id, target);
        }
    }

    /// Searches the studies that match the query fields.
    pub fn pacs_search(&mut self) {
        let q = &self.pacs.query;
        let field = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let query = FindQuery {
            patient_id: field(&q.patient_id),
            patient_name: field(&q.patient_name),
            study_date: field(&q.study_date),
            ..FindQuery::default()
        };
        if let Some((id, target)) = self.pacs_start(PacsOpKind::FindStudies) {
            self.pacs.studies.clear();
            self.pacs.series.clear();
            self.pacs.study = None;
            self.jobs.pacs_find(id, target, query, Level::Study);
        }
    }

    /// Lists the series of study `study_uid`.
    pub fn pacs_list_series(&mut self, study_uid: &str) {
        let query = FindQuery {
            study_uid: Some(study_uid.to_string()),
            ..FindQuery::default()
        };
        let kind = PacsOpKind::FindSeries {
            study_uid: study_uid.to_string(),
        };
        if let Some((id, target)) = self.pacs_start(kind) {
            self.pacs.series.clear();
            self.pacs.study = Some(study_uid.to_string());
            self.jobs.pacs_find(id, target, query, Level::Series);
        }
    }

    /// Retrieves series `series_uid` in the background, then opens it.
    pub fn pacs_retrieve(&mut self, series_uid: &str) {
        let kind = PacsOpKind::Retrieve {
            series_uid: series_uid.to_string(),
        };
        if let Some((id, target)) = self.pacs_start(kind) {
            self.jobs.pacs_retrieve(id, target, series_uid.to_string());
        }
    }

    /// Sends the SR of slot A to the selected node as a derived DICOM series.
    pub fn pacs_send_sr(&mut self) {
        let (volume, file, provenance) = match self.derived_series_source() {
            Ok(x) => x,
            Err(e) => return self.error(format!("SR not sent to the PACS: {e}")),
        };
        if let Some((id, target)) = self.pacs_start(PacsOpKind::Send) {
            self.jobs.pacs_send_sr(id, target, volume, file, provenance);
        }
    }

    /// Cancels the PACS operation under way (it stops between instances).
    pub fn pacs_cancel(&mut self) {
        if let Some(op) = &self.pacs.op {
            op.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Applies a report of PACS operation `op`.
    pub(super) fn on_pacs(&mut self, op: u64, event: PacsEvent) {
        let Some(current) = self.pacs.op.clone().filter(|o| o.id == op) else {
            return;
        };
        let node = current.node.clone();
        let outcome = |v: &mut Viewer, text: String, error: bool| {
            v.pacs.op = None;
            v.pacs.status = Some((text.clone(), error));
            if error {
                v.error(text);
            } else {
                v.info(text);
            }
        };
        match event {
            PacsEvent::Progress(p) => {
                if let Some(o) = self.pacs.op.as_mut() {
                    o.progress = Some(p);
                }
            }
            PacsEvent::Echoed(r) => match r {
                Ok(rtt) => outcome(
                    self,
                    format!("{node}: C-ECHO ok ({:.1} ms)", rtt.as_secs_f64() * 1e3),
                    false,
                ),
                Err(e) => outcome(self, format!("C-ECHO to {node}: {e}"), true),
            },
            PacsEvent::Found(r) => match r {
                Ok(found) => {
                    self.pacs.op = None;
                    let text = match &current.kind {
                        PacsOpKind::FindSeries { .. } => {
                            self.pacs.series = found;
                            format!("{} series", self.pacs.series.len())
                        }
                        _ => {
                            self.pacs.studies = found;
                            format!("{} study(ies) found on {node}", self.pacs.studies.len())
                        }
                    };
                    self.pacs.status = Some((text, false));
                }
                Err(e) => {
                    let (text, error) = describe(&e);
                    outcome(self, format!("search on {node}: {text}"), error);
                }
            },
            PacsEvent::Retrieved(r) => match r {
                Ok((tmp, report)) => {
                    let folder = report.folder.clone();
                    self.pacs.folders.push(tmp);
                    outcome(
                        self,
                        format!(
                            "retrieved {} instance(s) of series {} from {node}",
                            report.instances, report.series_uid
                        ),
                        false,
                    );
                    self.pacs.open_window = false;
                    self.open(folder, Some(report.series_uid));
                }
                Err(e) => {
                    let (text, error) = describe(&e);
                    outcome(self, format!("retrieve from {node}: {text}"), error);
                }
            },
            PacsEvent::Sent(r) => match r {
                Ok(s) => outcome(
                    self,
                    format!(
                        "SR sent to {node}: {} instance(s) stored as series {} in study {}",
                        s.report.sent, s.series_uid, s.study_uid
                    ),
                    false,
                ),
                Err(e) => {
                    let (text, error) = describe(&e);
                    outcome(self, format!("SR not sent to {node}: {text}"), error);
                }
            },
            PacsEvent::Failed(e) => outcome(self, format!("PACS ({node}): {e}"), true),
        }
    }
}
