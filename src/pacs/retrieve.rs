//! Retrieve of one series into a new folder: by C-GET (the PACS sends the instances back on our
//! association), or by C-MOVE to a storage SCP of ours that listens only while the retrieve
//! runs, on the address given, and accepts only the PACS's AE title calling ours. The instances
//! are written into a temporary folder beside the output, renamed into place only when the
//! retrieve is complete: a failed or cancelled retrieve leaves nothing behind.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_ul::ServerAssociationOptions;
use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

use super::dimse::{self, Link, Proposal, Received, field};
use super::query::{FindQuery, Level, find};
use super::{Node, Options, PacsError, Progress};

/// How to retrieve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetrieveMode {
    /// C-GET: the instances come back on our association (no port of ours opens).
    Get,
    /// C-MOVE to our own AE title (the calling AE title): the PACS must know it with this
    /// address, where our storage SCP listens during the retrieve.
    Move {
        /// Where our storage SCP listens (loopback or the interface the PACS reaches).
        listen: SocketAddr,
    },
}

/// What a retrieve did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetrieveReport {
    /// The series retrieved.
    pub series_uid: String,
    /// Its study.
    pub study_uid: String,
    /// Instances written.
    pub instances: usize,
    /// Bytes written.
    pub bytes: u64,
    /// The output folder.
    pub folder: PathBuf,
}

/// Retrieves series `series_uid` from `node` into the new folder `out_dir` (which must not
/// exist, or be empty). `progress` is called after each instance, with the total once known;
/// `cancel` stops the retrieve between instances ([`PacsError::Cancelled`]), leaving no folder.
pub fn retrieve_series(
    node: &Node,
    series_uid: &str,
    out_dir: &Path,
    mode: &RetrieveMode,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<RetrieveReport, PacsError> {
    if options.tls.is_some() && matches!(mode, RetrieveMode::Move { .. }) {
        // The PACS would connect back to our storage SCP, which has no TLS: the instances
        // would cross the network in the clear. C-GET brings them back on the TLS association.
        return Err(PacsError::TlsSetup(
            "a C-MOVE retrieve cannot use TLS (our storage SCP listens without it): retrieve \
             with C-GET (without --move)"
                .into(),
        ));
    }
    check_output(out_dir)?;
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|source| PacsError::Io {
        path: parent.clone(),
        source,
    })?;
    // Which study, and how many instances (also: does the series exist?).
    let query = FindQuery {
        series_uid: Some(series_uid.to_string()),
        ..FindQuery::default()
    };
    let found = find(node, &query, Level::Series, options)?;
    let Some(series) = found.into_iter().next() else {
        return Err(PacsError::NoSuchSeries {
            address: node.address(),
            series_uid: series_uid.to_string(),
        });
    };
    let study_uid = series.study_instance_uid.clone();
    let expected = series.instances;
    progress(Progress {
        done: 0,
        total: expected,
    });
    let tmp = tempfile::Builder::new()
        .prefix(".deltawkv-retrieve-")
        .tempdir_in(&parent)
        .map_err(|source| PacsError::Io {
            path: parent.clone(),
            source,
        })?;
    let sink = Sink::new(tmp.path().to_path_buf());
    let identifier = identifier(&study_uid, series_uid);
    match mode {
        RetrieveMode::Get => get(node, &identifier, &sink, options, progress, cancel)?,
        RetrieveMode::Move { listen } => {
            move_to_us(node, &identifier, *listen, &sink, options, progress, cancel)?
        }
    }
    let instances = sink.count.load(Ordering::SeqCst);
    if instances == 0 || expected.is_some_and(|n| instances < n) {
        return Err(PacsError::Incomplete {
            address: node.address(),
            series_uid: series_uid.to_string(),
            received: instances,
            failed: 0,
            detail: expected
                .map(|n| format!("; the PACS lists {n}"))
                .unwrap_or_default(),
        });
    }
    let bytes = sink.bytes.load(Ordering::SeqCst) as u64;
    // Into place: an empty existing folder is replaced (rename(2) allows it).
    let kept = tmp.keep();
    if let Err(source) = std::fs::rename(&kept, out_dir) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(PacsError::Io {
            path: out_dir.to_path_buf(),
            source,
        });
    }
    tracing::info!(node = %node, series = series_uid, instances, "retrieve done");
    Ok(RetrieveReport {
        series_uid: series_uid.to_string(),
        study_uid,
        instances,
        bytes,
        folder: out_dir.to_path_buf(),
    })
}

/// Refuses an output that exists and is not an empty folder.
fn check_output(out_dir: &Path) -> Result<(), PacsError> {
    match std::fs::read_dir(out_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(PacsError::OutputExists {
                    path: out_dir.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => Err(PacsError::OutputExists {
            path: out_dir.to_path_buf(),
        }),
    }
}

fn identifier(study_uid: &str, series_uid: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("SERIES"),
    ));
    o.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(study_uid),
    ));
    o.put(DataElement::new(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(series_uid),
    ));
    o
}

/// Where received instances go: files named by SOP Instance UID in the temporary folder.
struct Sink {
    dir: PathBuf,
    count: AtomicUsize,
    bytes: AtomicUsize,
}

impl Sink {
    fn new(dir: PathBuf) -> Self {
        Sink {
            dir,
            count: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Writes one received instance (data set bytes in `ts`) as a DICOM file with a meta header.
    fn write(&self, request: &InMemDicomObject, data: &[u8], ts: &str) -> Result<(), String> {
        let class = dimse::text(request, tags::AFFECTED_SOP_CLASS_UID)
            .ok_or("a C-STORE request without Affected SOP Class UID")?;
        let instance = dimse::text(request, tags::AFFECTED_SOP_INSTANCE_UID)
            .ok_or("a C-STORE request without Affected SOP Instance UID")?;
        let n = self.count.load(Ordering::SeqCst);
        let name = if !instance.is_empty()
            && instance.len() <= 64
            && instance.chars().all(|c| c.is_ascii_digit() || c == '.')
        {
            format!("{instance}.dcm")
        } else {
            format!("instance-{n:05}.dcm")
        };
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(class.as_str())
            .media_storage_sop_instance_uid(instance.as_str())
            .transfer_syntax(ts)
            .build()
            .map_err(|e| format!("file meta of {instance}: {e}"))?;
        let path = self.dir.join(&name);
        let write = || -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(std::fs::File::create_new(&path)?);
            f.write_all(&[0u8; 128])?;
            f.write_all(b"DICM")?;
            meta.write(&mut f).map_err(std::io::Error::other)?;
            f.write_all(data)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()
        };
        write().map_err(|e| format!("{}: {e}", path.display()))?;
        self.count.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(data.len(), Ordering::SeqCst);
        tracing::debug!(sop_instance = %instance, "received");
        Ok(())
    }
}

/// The sub-operation counts of a C-GET/C-MOVE response: (remaining, completed, failed, warning).
fn sub_operations(cmd: &InMemDicomObject) -> (usize, usize, usize, usize) {
    let n = |tag| dimse::int(cmd, tag).map(usize::from).unwrap_or(0);
    (
        n(tags::NUMBER_OF_REMAINING_SUBOPERATIONS),
        n(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
        n(tags::NUMBER_OF_FAILED_SUBOPERATIONS),
        n(tags::NUMBER_OF_WARNING_SUBOPERATIONS),
    )
}

/// The final C-GET/C-MOVE response: success, or an error naming the failure.
fn final_status(
    link: &Link,
    rsp: &InMemDicomObject,
    operation: &'static str,
    series_uid: &str,
    received: usize,
) -> Result<(), PacsError> {
    let status = dimse::status(rsp);
    let (_, _, failed, _) = sub_operations(rsp);
    match status {
        0x0000 => Ok(()),
        0xFE00 => Err(PacsError::Cancelled),
        0xB000 => Err(PacsError::Incomplete {
            address: link.address.clone(),
            series_uid: series_uid.to_string(),
            received,
            failed,
            detail: format!("; {operation} status B000H{}", dimse::error_comment(rsp)),
        }),
        _ => Err(PacsError::Status {
            address: link.address.clone(),
            operation,
            status,
            comment: dimse::error_comment(rsp),
        }),
    }
}

/// Every (storage class, transfer syntax) pair as its own context, so the PACS can send each
/// instance as it stores it.
fn storage_proposals() -> Vec<Proposal> {
    dimse::STORAGE_CLASSES
        .iter()
        .flat_map(|class| {
            dimse::RETRIEVE_SYNTAXES
                .iter()
                .map(move |ts| Proposal::new(class, &[ts]))
        })
        .collect()
}

fn get(
    node: &Node,
    identifier: &InMemDicomObject,
    sink: &Sink,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<(), PacsError> {
    let series_uid = dimse::text(identifier, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    let mut proposals = vec![Proposal::new(dimse::STUDY_ROOT_GET, dimse::UNCOMPRESSED)];
    proposals.extend(storage_proposals());
    let mut link = Link::open(node, options, &proposals, dimse::STORAGE_CLASSES)?;
    let accepted = link.accepted();
    let (pc, ts) = accepted
        .iter()
        .find(|(_, a, _)| a == dimse::STUDY_ROOT_GET)
        .map(|(id, _, ts)| (*id, ts.clone()))
        .ok_or_else(|| PacsError::NoPresentationContext {
            address: link.address.clone(),
            what: "C-GET (Study Root Query/Retrieve Information Model)".into(),
        })?;
    let data = dimse::encode_dataset(identifier, &ts, &link.address)?;
    let id = link.next_message_id();
    let cmd = dimse::query_rq(field::C_GET_RQ, dimse::STUDY_ROOT_GET, id, None);
    link.send_message(pc, &cmd, Some(&data), "C-GET")?;
    let mut total = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            link.abort();
            tracing::info!(
                received = sink.count.load(Ordering::SeqCst),
                "C-GET cancelled"
            );
            return Err(PacsError::Cancelled);
        }
        let msg = link.receive_message("C-GET")?;
        match dimse::int(&msg.command, tags::COMMAND_FIELD) {
            Some(field::C_STORE_RQ) => {
                let ts = accepted
                    .iter()
                    .find(|(id, _, _)| *id == msg.pc_id)
                    .map(|(_, _, ts)| ts.clone())
                    .unwrap_or_else(|| dimse::EXPLICIT_VR_LE.to_string());
                let written = sink.write(&msg.command, msg.data.as_deref().unwrap_or(&[]), &ts);
                let status = if written.is_ok() {
                    dimse::SUCCESS
                } else {
                    dimse::STORE_FAILED
                };
                link.respond(
                    msg.pc_id,
                    &dimse::store_rsp(&msg.command, status),
                    "C-STORE response",
                )?;
                if let Err(message) = written {
                    return Err(PacsError::Io {
                        path: sink.dir.clone(),
                        source: std::io::Error::other(message),
                    });
                }
                progress(Progress {
                    done: sink.count.load(Ordering::SeqCst),
                    total,
                });
            }
            Some(field::C_GET_RSP) => {
                let status = dimse::status(&msg.command);
                if dimse::is_pending(status) {
                    let (rem, done, failed, warn) = sub_operations(&msg.command);
                    total = Some(rem + done + failed + warn);
                    continue;
                }
                let received = sink.count.load(Ordering::SeqCst);
                final_status(&link, &msg.command, "C-GET", &series_uid, received)?;
                link.release();
                return Ok(());
            }
            other => {
                return Err(PacsError::Protocol {
                    address: link.address.clone(),
                    during: "C-GET".into(),
                    message: format!("unexpected command field {other:?}"),
                });
            }
        }
    }
}

/// Accepts only associations from `calling` (the PACS) to `called` (us).
struct ExpectedPeer {
    calling: String,
    /// The AE titles refused so far (to name them in the retrieve's error).
    refused: Arc<std::sync::Mutex<Vec<String>>>,
}

impl AccessControl for ExpectedPeer {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if calling_ae_title.trim() != self.calling.trim() {
            tracing::warn!(
                calling = calling_ae_title,
                "storage SCP: unexpected calling AE title"
            );
            if let Ok(mut r) = self.refused.lock() {
                r.push(calling_ae_title.trim().to_string());
            }
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        Ok(())
    }
}

/// C-MOVE of the series to our calling AE title, received by a storage SCP listening on
/// `listen` for the duration of the retrieve only.
fn move_to_us(
    node: &Node,
    identifier: &InMemDicomObject,
    listen: SocketAddr,
    sink: &Sink,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<(), PacsError> {
    let series_uid = dimse::text(identifier, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    let listener = TcpListener::bind(listen).map_err(|e| PacsError::Listen {
        address: listen.to_string(),
        message: e.to_string(),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| PacsError::Listen {
            address: listen.to_string(),
            message: e.to_string(),
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
    let scp_error: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let result = std::thread::scope(|scope| {
        let stop2 = stop.clone();
        let scp_error = &scp_error;
        let refused = refused.clone();
        let scp = scope.spawn(move || {
            if let Err(e) = serve(&listener, node, options, sink, &stop2, refused)
                && let Ok(mut slot) = scp_error.lock()
            {
                *slot = Some(e);
            }
        });
        let r = request_move(
            node,
            identifier,
            &series_uid,
            sink,
            options,
            progress,
            cancel,
        );
        stop.store(true, Ordering::SeqCst);
        let _ = scp.join();
        r
    });
    if let Err(e) = result {
        // A PACS that called our SCP with an AE title other than the one we called it by.
        let refused = refused.lock().map(|r| r.clone()).unwrap_or_default();
        if let Some(calling) = refused.first()
            && !matches!(e, PacsError::Cancelled)
        {
            return Err(PacsError::MoveRefused {
                address: listen.to_string(),
                calling: calling.clone(),
                expected: node.ae_title.clone(),
                cause: e.to_string(),
            });
        }
        return Err(e);
    }
    if let Ok(mut slot) = scp_error.lock()
        && let Some(message) = slot.take()
    {
        return Err(PacsError::Protocol {
            address: listen.to_string(),
            during: "receiving the C-MOVE".into(),
            message,
        });
    }
    Ok(())
}

fn request_move(
    node: &Node,
    identifier: &InMemDicomObject,
    series_uid: &str,
    sink: &Sink,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<(), PacsError> {
    let mut link = Link::open(
        node,
        options,
        &[Proposal::new(dimse::STUDY_ROOT_MOVE, dimse::UNCOMPRESSED)],
        &[],
    )?;
    let (pc, ts) = link
        .accepted()
        .into_iter()
        .find(|(_, a, _)| a == dimse::STUDY_ROOT_MOVE)
        .map(|(id, _, ts)| (id, ts))
        .ok_or_else(|| PacsError::NoPresentationContext {
            address: link.address.clone(),
            what: "C-MOVE (Study Root Query/Retrieve Information Model)".into(),
        })?;
    let data = dimse::encode_dataset(identifier, &ts, &link.address)?;
    let id = link.next_message_id();
    let cmd = dimse::query_rq(
        field::C_MOVE_RQ,
        dimse::STUDY_ROOT_MOVE,
        id,
        Some(&options.calling_ae),
    );
    link.send_message(pc, &cmd, Some(&data), "C-MOVE")?;
    loop {
        if cancel.load(Ordering::Relaxed) {
            link.abort();
            return Err(PacsError::Cancelled);
        }
        let msg = link.receive_message("C-MOVE")?;
        if dimse::int(&msg.command, tags::COMMAND_FIELD) != Some(field::C_MOVE_RSP) {
            return Err(PacsError::Protocol {
                address: link.address.clone(),
                during: "C-MOVE".into(),
                message: "an answer that is not a C-MOVE response".into(),
            });
        }
        let status = dimse::status(&msg.command);
        let (rem, done, failed, warn) = sub_operations(&msg.command);
        if dimse::is_pending(status) {
            progress(Progress {
                done: sink.count.load(Ordering::SeqCst),
                total: Some(rem + done + failed + warn),
            });
            continue;
        }
        let received = sink.count.load(Ordering::SeqCst);
        final_status(&link, &msg.command, "C-MOVE", series_uid, received)?;
        progress(Progress {
            done: received,
            total: Some(received),
        });
        link.release();
        return Ok(());
    }
}

/// The storage SCP of a C-MOVE: accepts associations from the PACS until `stop`, storing each
/// instance into the sink.
fn serve(
    listener: &TcpListener,
    node: &Node,
    options: &Options,
    sink: &Sink,
    stop: &AtomicBool,
    refused: Arc<std::sync::Mutex<Vec<String>>>,
) -> Result<(), String> {
    let mut scp = ServerAssociationOptions::new()
        .ae_access_control(ExpectedPeer {
            calling: node.ae_title.clone(),
            refused,
        })
        .ae_title(options.calling_ae.as_str())
        .read_timeout(options.timeout)
        .write_timeout(options.timeout);
    for class in dimse::STORAGE_CLASSES {
        scp = scp.with_abstract_syntax(*class);
    }
    for ts in dimse::RETRIEVE_SYNTAXES {
        scp = scp.with_transfer_syntax(*ts);
    }
    while !stop.load(Ordering::SeqCst) {
        let socket = match listener.accept() {
            Ok((socket, peer)) => {
                tracing::debug!(%peer, "storage SCP: connection");
                socket
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(format!("accept: {e}")),
        };
        socket
            .set_nonblocking(false)
            .map_err(|e| format!("socket: {e}"))?;
        let mut assoc = match scp.establish(socket) {
            Ok(a) => a,
            Err(e) => {
                // A rejected or broken association: the PACS's C-MOVE reports the failure.
                tracing::warn!("storage SCP: association not established: {e}");
                continue;
            }
        };
        let contexts: Vec<(u8, String)> = assoc
            .presentation_contexts()
            .iter()
            .map(|pc| (pc.id, pc.transfer_syntax.clone()))
            .collect();
        let mut pending = VecDeque::new();
        loop {
            let msg = match dimse::receive_on(&mut assoc, &mut pending) {
                Ok(m) => m,
                Err(Received::Protocol(m)) if m.contains("released") => break,
                Err(Received::Aborted) => break,
                Err(Received::Protocol(m)) => return Err(m),
                Err(Received::Ul(e)) => return Err(e.to_string()),
            };
            if dimse::int(&msg.command, tags::COMMAND_FIELD) != Some(field::C_STORE_RQ) {
                return Err("a message other than C-STORE on the storage SCP".into());
            }
            let ts = contexts
                .iter()
                .find(|(id, _)| *id == msg.pc_id)
                .map(|(_, ts)| ts.as_str())
                .unwrap_or(dimse::EXPLICIT_VR_LE);
            let written = sink.write(&msg.command, msg.data.as_deref().unwrap_or(&[]), ts);
            let status = if written.is_ok() {
                dimse::SUCCESS
            } else {
                dimse::STORE_FAILED
            };
            let rsp = dimse::store_rsp(&msg.command, status);
            let cmd = dimse::encode_command(&rsp, "storage SCP").map_err(|e| e.to_string())?;
            dimse::send_on(&mut assoc, msg.pc_id, cmd, None, 0).map_err(|e| e.to_string())?;
            written?;
        }
    }
    Ok(())
}
