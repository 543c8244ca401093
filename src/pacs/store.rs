//! C-STORE: sending DICOM files (a file, or every DICOM file under a folder) to a PACS on one
//! association, with a presentation context per SOP class and transfer syntax of the files.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::OpenFileOptions;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::dimse::{self, Link, Proposal};
use super::{Node, Options, PacsError, Progress};

/// What a send did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SendReport {
    /// Instances the PACS stored (success or warning status).
    pub sent: usize,
    /// Of those, instances stored with a warning status.
    pub warnings: usize,
    /// Bytes of the data sets sent.
    pub bytes: u64,
    /// The StudyInstanceUIDs of the instances sent.
    pub studies: Vec<String>,
    /// The SeriesInstanceUIDs of the instances sent.
    pub series: Vec<String>,
}

/// One file to send, from its header.
struct Outgoing {
    path: PathBuf,
    sop_class: String,
    sop_instance: String,
    ts: String,
    study: Option<String>,
    series: Option<String>,
}

/// Sends `paths` (files, or folders searched recursively for DICOM files) to `node` with
/// C-STORE. `progress` is called after each stored instance; `cancel` is checked before each
/// (a cancelled send aborts the association and returns [`PacsError::Cancelled`]). Stops at the
/// first instance the PACS refuses ([`PacsError::StoreFailed`], with its status).
pub fn send_files(
    node: &Node,
    paths: &[PathBuf],
    options: &Options,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<SendReport, PacsError> {
    let mut files = Vec::new();
    for p in paths {
        let before = files.len();
        collect(p, &mut files)?;
        if files.len() == before {
            return Err(PacsError::NoFiles { path: p.clone() });
        }
    }
    let outgoing = files
        .iter()
        .map(|p| header(p))
        .collect::<Result<Vec<_>, _>>()?;
    // One context per (SOP class, file transfer syntax), and one uncompressed per SOP class.
    let mut proposals = Vec::new();
    let pairs: BTreeSet<(&str, &str)> = outgoing
        .iter()
        .map(|o| (o.sop_class.as_str(), o.ts.as_str()))
        .collect();
    let classes: BTreeSet<&str> = outgoing.iter().map(|o| o.sop_class.as_str()).collect();
    for (class, ts) in &pairs {
        proposals.push(Proposal::new(class, &[ts]));
    }
    for class in &classes {
        proposals.push(Proposal::new(class, dimse::UNCOMPRESSED));
    }
    if proposals.len() > 127 {
        return Err(PacsError::NoPresentationContext {
            address: node.address(),
            what: format!(
                "{} SOP class / transfer syntax pairs (at most 127 fit one association)",
                proposals.len()
            ),
        });
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(PacsError::Cancelled);
    }
    let mut link = Link::open(node, options, &proposals, &[])?;
    let accepted = link.accepted();
    let total = outgoing.len();
    let mut report = SendReport::default();
    let mut studies = BTreeSet::new();
    let mut series = BTreeSet::new();
    for file in &outgoing {
        if cancel.load(Ordering::Relaxed) {
            link.abort();
            tracing::info!(sent = report.sent, total, "send cancelled");
            return Err(PacsError::Cancelled);
        }
        let (pc, ts_uid) =
            choose_context(&accepted, file).ok_or_else(|| PacsError::NoPresentationContext {
                address: link.address.clone(),
                what: format!(
                    "{} (SOP class {} in transfer syntax {})",
                    file.path.display(),
                    file.sop_class,
                    file.ts
                ),
            })?;
        let data = encode_file(&file.path, &ts_uid)?;
        let id = link.next_message_id();
        let cmd = dimse::store_rq(&file.sop_class, &file.sop_instance, id);
        link.send_message(pc, &cmd, Some(&data), "C-STORE")?;
        let rsp = link.receive_message("C-STORE")?;
        let status = dimse::status(&rsp.command);
        if !dimse::is_success_or_warning(status) {
            let comment = dimse::error_comment(&rsp.command);
            tracing::warn!(
                sop_instance = %file.sop_instance,
                status = format!("{status:04X}H"),
                "C-STORE refused"
            );
            link.release();
            return Err(PacsError::StoreFailed {
                address: node.address(),
                path: file.path.clone(),
                sop_instance_uid: file.sop_instance.clone(),
                status,
                comment,
                stored: report.sent,
            });
        }
        if status != dimse::SUCCESS {
            report.warnings += 1;
        }
        report.sent += 1;
        report.bytes += data.len() as u64;
        studies.extend(file.study.clone());
        series.extend(file.series.clone());
        tracing::debug!(sop_instance = %file.sop_instance, "stored");
        progress(Progress {
            done: report.sent,
            total: Some(total),
        });
    }
    link.release();
    report.studies = studies.into_iter().collect();
    report.series = series.into_iter().collect();
    tracing::info!(node = %node, sent = report.sent, "C-STORE done");
    Ok(report)
}

/// The accepted context for a file: its own transfer syntax, else an uncompressed one when the
/// file is uncompressed (re-encoded without touching the pixel data).
fn choose_context(accepted: &[(u8, String, String)], file: &Outgoing) -> Option<(u8, String)> {
    let of_class = || accepted.iter().filter(|(_, a, _)| *a == file.sop_class);
    if let Some((id, _, ts)) = of_class().find(|(_, _, ts)| *ts == file.ts) {
        return Some((*id, ts.clone()));
    }
    let file_native = TransferSyntaxRegistry
        .get(&file.ts)
        .is_some_and(|ts| ts.is_codec_free());
    if !file_native {
        return None;
    }
    of_class()
        .find(|(_, _, ts)| dimse::UNCOMPRESSED.contains(&ts.as_str()))
        .map(|(id, _, ts)| (*id, ts.clone()))
}

/// The file's data set encoded in `ts_uid`.
fn encode_file(path: &Path, ts_uid: &str) -> Result<Vec<u8>, PacsError> {
    let unreadable = |message: String| PacsError::ReadFile {
        path: path.to_path_buf(),
        message,
    };
    let obj = dicom_object::open_file(path).map_err(|e| unreadable(e.to_string()))?;
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| unreadable(format!("unknown transfer syntax {ts_uid}")))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| unreadable(format!("cannot encode it in {ts_uid}: {e}")))?;
    Ok(out)
}

/// The header fields of a file to send (read up to the pixel data).
fn header(path: &Path) -> Result<Outgoing, PacsError> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| PacsError::ReadFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let clean = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let meta = obj.meta();
    Ok(Outgoing {
        path: path.to_path_buf(),
        sop_class: clean(meta.media_storage_sop_class_uid()),
        sop_instance: clean(meta.media_storage_sop_instance_uid()),
        ts: clean(meta.transfer_syntax()),
        study: dimse::text(&obj, tags::STUDY_INSTANCE_UID),
        series: dimse::text(&obj, tags::SERIES_INSTANCE_UID),
    })
}

/// A file (as given), or the DICOM files under a folder (recursively, sorted, without DICOMDIR
/// and files that lack the `DICM` magic).
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), PacsError> {
    let io = |source| PacsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with('.') || name.eq_ignore_ascii_case("DICOMDIR") {
            continue;
        }
        if entry.is_dir() {
            collect(&entry, out)?;
        } else if has_dicm_magic(&entry) {
            out.push(entry);
        } else {
            tracing::debug!(file = %entry.display(), "not a DICOM file, not sent");
        }
    }
    Ok(())
}

/// Whether a file has the 128-byte preamble and `DICM` of a DICOM Part 10 file.
fn has_dicm_magic(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[128..132] == b"DICM"
}
