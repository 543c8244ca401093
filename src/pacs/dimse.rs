//! DIMSE messages over a `dicom-ul` association: opening an association with the proposed
//! presentation contexts (and the errors of that, typed), command sets of the C-ECHO, C-STORE,
//! C-FIND, C-GET and C-MOVE services, and sending and receiving one message (a command set and
//! its optional data set, each possibly split over several PDUs).

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::TcpStream;

use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::Error as UlError;
use dicom_ul::association::client::TlsStream;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu, ServerAssociation};

use super::{Node, Options, PacsError};

/// Verification SOP class (C-ECHO).
pub(crate) const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Study Root Query/Retrieve Information Model - FIND.
pub(crate) const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
/// Study Root Query/Retrieve Information Model - MOVE.
pub(crate) const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
/// Study Root Query/Retrieve Information Model - GET.
pub(crate) const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
/// Implicit VR Little Endian: the transfer syntax of every command set.
pub(crate) const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub(crate) const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// The uncompressed transfer syntaxes, preferred first.
pub(crate) const UNCOMPRESSED: &[&str] = &[EXPLICIT_VR_LE, IMPLICIT_VR_LE];

/// The storage SOP classes a retrieve accepts (images of MR, CT, PET, NM and secondary capture).
pub(crate) const STORAGE_CLASSES: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.4",    // MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  // Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3",  // Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4",  // Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.2",    // CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  // Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.128",  // PET Image
    "1.2.840.10008.5.1.4.1.1.130",  // Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.20",   // NM Image
    "1.2.840.10008.5.1.4.1.1.7",    // Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  // Multi-frame Grayscale Byte SC Image
    "1.2.840.10008.5.1.4.1.1.7.3",  // Multi-frame Grayscale Word SC Image
    "1.2.840.10008.5.1.4.1.1.66.4", // Segmentation
];

/// The transfer syntaxes a retrieve accepts: uncompressed, and the lossless and baseline codecs
/// our reader decodes (so the PACS sends what it stores, without transcoding).
pub(crate) const RETRIEVE_SYNTAXES: &[&str] = &[
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    "1.2.840.10008.1.2.4.70", // JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57", // JPEG Lossless
    "1.2.840.10008.1.2.4.80", // JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91", // JPEG 2000
    "1.2.840.10008.1.2.5",    // RLE Lossless
    "1.2.840.10008.1.2.4.50", // JPEG Baseline
];

/// DIMSE status: success.
pub(crate) const SUCCESS: u16 = 0x0000;
/// DIMSE status: a storage failure (out of resources / cannot understand, ...).
pub(crate) const STORE_FAILED: u16 = 0xA700;

/// Command Field values.
pub(crate) mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
}

/// One proposed presentation context: an abstract syntax and its transfer syntaxes.
#[derive(Debug, Clone)]
pub(crate) struct Proposal {
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
}

impl Proposal {
    pub fn new(abstract_syntax: &str, transfer_syntaxes: &[&str]) -> Self {
        Proposal {
            abstract_syntax: abstract_syntax.to_string(),
            transfer_syntaxes: transfer_syntaxes.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A received DIMSE message.
#[derive(Debug)]
pub(crate) struct Message {
    /// The presentation context it came on.
    pub pc_id: u8,
    /// The command set.
    pub command: InMemDicomObject,
    /// The data set's bytes, when there is one (in the context's transfer syntax).
    pub data: Option<Vec<u8>>,
}

/// What we were doing, for error messages.
type During<'a> = &'a str;

/// The send and receive of a client or server association (the two have the same methods but
/// no common trait in `dicom-ul`).
pub(crate) trait Pdus {
    fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), UlError>;
    fn receive_pdu(&mut self) -> Result<Pdu, UlError>;
}

impl Pdus for ClientAssociation<TcpStream> {
    fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), UlError> {
        self.send(pdu)
    }
    fn receive_pdu(&mut self) -> Result<Pdu, UlError> {
        self.receive()
    }
}

impl Pdus for ServerAssociation<TcpStream> {
    fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), UlError> {
        self.send(pdu)
    }
    fn receive_pdu(&mut self) -> Result<Pdu, UlError> {
        self.receive()
    }
}

impl Pdus for ClientAssociation<TlsStream> {
    fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), UlError> {
        self.send(pdu)
    }
    fn receive_pdu(&mut self) -> Result<Pdu, UlError> {
        self.receive()
    }
}

/// A client association over plain TCP or over TLS.
pub(crate) enum Assoc {
    Plain(ClientAssociation<TcpStream>),
    Tls(Box<ClientAssociation<TlsStream>>),
}

impl Pdus for Assoc {
    fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), UlError> {
        match self {
            Assoc::Plain(a) => a.send(pdu),
            Assoc::Tls(a) => a.send(pdu),
        }
    }
    fn receive_pdu(&mut self) -> Result<Pdu, UlError> {
        match self {
            Assoc::Plain(a) => a.receive(),
            Assoc::Tls(a) => a.receive(),
        }
    }
}

impl Assoc {
    fn presentation_contexts(&self) -> &[dicom_ul::pdu::PresentationContextNegotiated] {
        match self {
            Assoc::Plain(a) => a.presentation_contexts(),
            Assoc::Tls(a) => a.presentation_contexts(),
        }
    }

    fn acceptor_max_pdu_length(&self) -> u32 {
        match self {
            Assoc::Plain(a) => a.acceptor_max_pdu_length(),
            Assoc::Tls(a) => a.acceptor_max_pdu_length(),
        }
    }

    fn release(self) -> Result<(), UlError> {
        match self {
            Assoc::Plain(a) => a.release(),
            Assoc::Tls(a) => (*a).release(),
        }
    }

    fn abort(self) -> Result<(), UlError> {
        match self {
            Assoc::Plain(a) => a.abort(),
            Assoc::Tls(a) => (*a).abort(),
        }
    }
}

/// Turns a `dicom-ul` error into ours: a refused connection, a timeout, a rejection with its
/// reason, an abort, or a protocol error with the library's message.
pub(crate) fn map_error(
    e: UlError,
    address: &str,
    options: &Options,
    called: &str,
    during: During<'_>,
) -> PacsError {
    if let Some(kind) = io_kind(&e) {
        match kind {
            ErrorKind::ConnectionRefused => {
                return PacsError::ConnectionRefused {
                    address: address.to_string(),
                };
            }
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                return PacsError::Timeout {
                    address: address.to_string(),
                    secs: options.timeout.as_secs_f64(),
                    during: during.to_string(),
                };
            }
            _ => {}
        }
    }
    let message = chain(&e);
    // A TLS alert of the PACS (e.g. no client certificate) arrives while reading its answer.
    let tls_failure = matches!(
        e,
        UlError::TlsHandshake { .. }
            | UlError::TlsConnection { .. }
            | UlError::InvalidServerName { .. }
            | UlError::TlsNotSupported
    ) || (options.tls.is_some() && message.contains("fatal alert"));
    if tls_failure {
        return PacsError::Tls {
            address: address.to_string(),
            hint: tls_hint(&e, &message).to_string(),
            message,
        };
    }
    match e {
        UlError::Rejected { association_rj, .. } => PacsError::Rejected {
            address: address.to_string(),
            calling: options.calling_ae.clone(),
            called: called.to_string(),
            reason: association_rj.source.to_string(),
        },
        UlError::Aborted { .. } => PacsError::Aborted {
            address: address.to_string(),
            during: during.to_string(),
        },
        UlError::Connect { source, .. } => PacsError::Connect {
            address: address.to_string(),
            message: source.to_string(),
        },
        UlError::NoAcceptedPresentationContexts { .. } => PacsError::NoPresentationContext {
            address: address.to_string(),
            what: during.to_string(),
        },
        other => PacsError::Protocol {
            address: address.to_string(),
            during: during.to_string(),
            message: chain(&other),
        },
    }
}

/// What to check after a failed TLS handshake.
fn tls_hint(e: &UlError, message: &str) -> &'static str {
    if matches!(e, UlError::TlsNotSupported) {
        "this port speaks DICOM over TLS: connect with TLS (--tls)"
    } else if message.contains("CertificateRequired") || message.contains("certificate required") {
        "the PACS requires a client certificate: give ours (--tls-cert and --tls-key)"
    } else if message.contains("invalid peer certificate") {
        "is the PACS's certificate signed by the CA given (--tls-ca), for this host name or \
         address, and still valid?"
    } else {
        "is TLS on at this port of the PACS?"
    }
}

/// The kind of the first I/O error in an error's source chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// An error and its sources as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// An open association of ours (the requestor) with a PACS.
pub(crate) struct Link {
    assoc: Option<Assoc>,
    pending: VecDeque<PDataValue>,
    pub address: String,
    called: String,
    options: Options,
    message_id: u16,
}

impl Link {
    /// Connects to `node` and negotiates the proposed presentation contexts; `scp_roles` are the
    /// SOP classes for which we offer the SCP role (C-STORE sub-operations of a C-GET).
    pub fn open(
        node: &Node,
        options: &Options,
        proposals: &[Proposal],
        scp_roles: &[&str],
    ) -> Result<Link, PacsError> {
        super::check_ae_title(&options.calling_ae).map_err(PacsError::InvalidAeTitle)?;
        let address = node.address();
        let mut opts = ClientAssociationOptions::new()
            .calling_ae_title(options.calling_ae.as_str())
            .called_ae_title(node.ae_title.as_str())
            .connection_timeout(options.timeout)
            .read_timeout(options.timeout)
            .write_timeout(options.timeout);
        for p in proposals {
            opts = opts.with_presentation_context(
                p.abstract_syntax.as_str(),
                p.transfer_syntaxes.iter().map(String::as_str).collect(),
            );
        }
        for class in scp_roles {
            opts = opts.with_role_selection(*class, false, true);
        }
        let addrs = node.socket_addrs()?;
        let during = if options.tls.is_some() {
            "TLS handshake and association negotiation"
        } else {
            "association negotiation"
        };
        let started = std::time::Instant::now();
        let established = match &options.tls {
            None => opts.establish(addrs.as_slice()).map(Assoc::Plain),
            Some(tls) => {
                let config = super::tls::client_config(tls)?;
                opts.tls_config(config)
                    .server_name(node.host.as_str())
                    .establish_tls(addrs.as_slice())
                    .map(|a| Assoc::Tls(Box::new(a)))
            }
        };
        let assoc = established.map_err(|e| {
            // dicom-ul 0.10.1 with `sync-tls` reports any failed read of the association answer
            // on a plain link as "peer sends TLS data" when it received nothing at all (its TLS
            // sniffing takes an empty buffer for a TLS record): a peer that stayed silent for the
            // whole read timeout is a timeout. A real TLS port answers at once with an alert.
            let silent = matches!(e, UlError::TlsNotSupported)
                && options.tls.is_none()
                && started.elapsed() >= options.timeout.mul_f64(0.9);
            if silent {
                return PacsError::Timeout {
                    address: address.clone(),
                    secs: options.timeout.as_secs_f64(),
                    during: during.to_string(),
                };
            }
            map_error(e, &address, options, &node.ae_title, during)
        })?;
        tracing::debug!(
            node = %node,
            tls = options.tls.is_some(),
            contexts = assoc.presentation_contexts().len(),
            "association established"
        );
        Ok(Link {
            assoc: Some(assoc),
            pending: VecDeque::new(),
            address,
            called: node.ae_title.clone(),
            options: options.clone(),
            message_id: 0,
        })
    }

    fn assoc(&mut self) -> Result<&mut Assoc, PacsError> {
        let address = self.address.clone();
        self.assoc.as_mut().ok_or(PacsError::Protocol {
            address,
            during: "sending".into(),
            message: "the association is closed".into(),
        })
    }

    /// The accepted presentation contexts: (id, abstract syntax, transfer syntax).
    pub fn accepted(&self) -> Vec<(u8, String, String)> {
        self.assoc
            .as_ref()
            .map(|a| {
                a.presentation_contexts()
                    .iter()
                    .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
                    .map(|pc| {
                        (
                            pc.id,
                            pc.abstract_syntax.clone(),
                            pc.transfer_syntax.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The accepted context for an abstract syntax, or an error naming what was needed.
    pub fn context_for(&self, abstract_syntax: &str, what: &str) -> Result<u8, PacsError> {
        self.accepted()
            .into_iter()
            .find(|(_, a, _)| a == abstract_syntax)
            .map(|(id, _, _)| id)
            .ok_or_else(|| PacsError::NoPresentationContext {
                address: self.address.clone(),
                what: what.to_string(),
            })
    }

    /// A fresh message ID.
    pub fn next_message_id(&mut self) -> u16 {
        self.message_id = self.message_id.wrapping_add(1).max(1);
        self.message_id
    }

    fn err(&self, e: UlError, during: During<'_>) -> PacsError {
        map_error(e, &self.address, &self.options, &self.called, during)
    }

    /// Sends a command set and an optional data set on context `pc`.
    pub fn send_message(
        &mut self,
        pc: u8,
        command: &InMemDicomObject,
        data: Option<&[u8]>,
        during: During<'_>,
    ) -> Result<(), PacsError> {
        let address = self.address.clone();
        let cmd = encode_command(command, &address)?;
        let assoc = self.assoc()?;
        let max = assoc.acceptor_max_pdu_length();
        let r = send_on(assoc, pc, cmd, data, max);
        r.map_err(|e| self.err(e, during))
    }

    /// Receives the next DIMSE message.
    pub fn receive_message(&mut self, during: During<'_>) -> Result<Message, PacsError> {
        let address = self.address.clone();
        let Some(assoc) = self.assoc.as_mut() else {
            return Err(PacsError::Protocol {
                address,
                during: during.to_string(),
                message: "the association is closed".into(),
            });
        };
        match receive_on(assoc, &mut self.pending) {
            Ok(m) => Ok(m),
            Err(Received::Ul(e)) => Err(self.err(e, during)),
            Err(Received::Protocol(message)) => Err(PacsError::Protocol {
                address,
                during: during.to_string(),
                message,
            }),
            Err(Received::Aborted) => Err(PacsError::Aborted {
                address,
                during: during.to_string(),
            }),
        }
    }

    /// Sends a response on the association (for C-STORE sub-operations of a C-GET).
    pub fn respond(
        &mut self,
        pc: u8,
        command: &InMemDicomObject,
        during: During<'_>,
    ) -> Result<(), PacsError> {
        self.send_message(pc, command, None, during)
    }

    /// Releases the association (errors in the release itself are only logged).
    pub fn release(mut self) {
        if let Some(a) = self.assoc.take()
            && let Err(e) = a.release()
        {
            tracing::debug!("association release: {e}");
        }
    }

    /// Aborts the association.
    pub fn abort(mut self) {
        if let Some(a) = self.assoc.take() {
            let _ = a.abort();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // An association left open by an error path is aborted, so the PACS frees it at once.
        if let Some(a) = self.assoc.take() {
            let _ = a.abort();
        }
    }
}

/// Encodes a command set in Implicit VR Little Endian.
pub(crate) fn encode_command(cmd: &InMemDicomObject, address: &str) -> Result<Vec<u8>, PacsError> {
    let mut out = Vec::with_capacity(256);
    cmd.write_dataset_with_ts(
        &mut out,
        &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .map_err(|e| PacsError::Protocol {
        address: address.to_string(),
        during: "encoding a command".into(),
        message: e.to_string(),
    })?;
    Ok(out)
}

/// Sends a command (encoded) and optional data on `pc`, fragmenting the data to the peer's
/// maximum PDU length.
pub(crate) fn send_on<A: Pdus>(
    assoc: &mut A,
    pc: u8,
    cmd: Vec<u8>,
    data: Option<&[u8]>,
    peer_max_pdu: u32,
) -> Result<(), UlError> {
    assoc.send_pdu(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: true,
            data: cmd,
        }],
    })?;
    if let Some(data) = data {
        // PDU header (6) + PDV item header (6); a peer max of 0 means "no limit".
        let max = if peer_max_pdu == 0 {
            64 * 1024
        } else {
            (peer_max_pdu as usize).saturating_sub(12).max(1024)
        };
        let n = data.len().div_ceil(max).max(1);
        for (i, chunk) in data.chunks(max).enumerate() {
            assoc.send_pdu(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Data,
                    is_last: i + 1 == n,
                    data: chunk.to_vec(),
                }],
            })?;
        }
        if data.is_empty() {
            assoc.send_pdu(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Data,
                    is_last: true,
                    data: Vec::new(),
                }],
            })?;
        }
    }
    Ok(())
}

/// Why a message could not be received.
pub(crate) enum Received {
    Ul(UlError),
    Protocol(String),
    Aborted,
}

/// Receives one DIMSE message, keeping PDVs of the next message in `pending`. A release request
/// of the peer is answered and reported as [`Received::Protocol`] ("released").
pub(crate) fn receive_on<A: Pdus>(
    assoc: &mut A,
    pending: &mut VecDeque<PDataValue>,
) -> Result<Message, Received> {
    let mut cmd = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    let mut command: Option<InMemDicomObject> = None;
    let mut pc_id = 0u8;
    loop {
        let Some(pdv) = pending.pop_front() else {
            match assoc.receive_pdu().map_err(Received::Ul)? {
                Pdu::PData { data } => pending.extend(data),
                Pdu::AbortRQ { .. } => return Err(Received::Aborted),
                Pdu::ReleaseRQ => {
                    let _ = assoc.send_pdu(&Pdu::ReleaseRP);
                    return Err(Received::Protocol(
                        "the peer released the association".into(),
                    ));
                }
                other => {
                    return Err(Received::Protocol(format!(
                        "unexpected {}",
                        other.short_description()
                    )));
                }
            }
            continue;
        };
        match pdv.value_type {
            PDataValueType::Command => {
                if command.is_some() {
                    return Err(Received::Protocol(
                        "a command fragment after a complete command".into(),
                    ));
                }
                pc_id = pdv.presentation_context_id;
                cmd.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let obj = InMemDicomObject::read_dataset_with_ts(
                        cmd.as_slice(),
                        &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN
                            .erased(),
                    )
                    .map_err(|e| Received::Protocol(format!("unreadable command set: {e}")))?;
                    let has_data = int(&obj, tags::COMMAND_DATA_SET_TYPE) != Some(0x0101);
                    if !has_data {
                        return Ok(Message {
                            pc_id,
                            command: obj,
                            data: None,
                        });
                    }
                    command = Some(obj);
                }
            }
            PDataValueType::Data => {
                if command.is_none() {
                    return Err(Received::Protocol(
                        "a data fragment before its command".into(),
                    ));
                }
                let buf = data.get_or_insert_with(Vec::new);
                buf.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    return Ok(Message {
                        pc_id,
                        command: command.take().unwrap_or_else(InMemDicomObject::new_empty),
                        data,
                    });
                }
            }
        }
    }
}

/// An integer element of a command set.
pub(crate) fn int(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<u16> {
    obj.element(tag).ok().and_then(|e| e.to_int::<u16>().ok())
}

/// A string element, trimmed of padding.
pub(crate) fn text(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<String> {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The Status of a response (0xFFFF, not a DICOM status, when it has none).
pub(crate) fn status(cmd: &InMemDicomObject) -> u16 {
    int(cmd, tags::STATUS).unwrap_or(0xFFFF)
}

/// The Error Comment of a response as ": comment", or empty.
pub(crate) fn error_comment(cmd: &InMemDicomObject) -> String {
    text(cmd, tags::ERROR_COMMENT)
        .map(|c| format!(": {c}"))
        .unwrap_or_default()
}

/// Whether a status is Pending (FF00H, FF01H).
pub(crate) fn is_pending(status: u16) -> bool {
    status == 0xFF00 || status == 0xFF01
}

/// Whether a status is Success or a Warning (0000H, 0001H, Bxxxh, 0107H, 0116H).
pub(crate) fn is_success_or_warning(status: u16) -> bool {
    matches!(status, 0x0000 | 0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF)
}

fn us(tag: dicom_object::Tag, v: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, dicom_value!(U16, [v]))
}

fn ui(tag: dicom_object::Tag, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(v))
}

/// C-ECHO-RQ.
pub(crate) fn echo_rq(message_id: u16) -> InMemDicomObject {
    InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, VERIFICATION),
        us(tags::COMMAND_FIELD, field::C_ECHO_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, 0x0101),
    ])
}

/// C-STORE-RQ for one instance.
pub(crate) fn store_rq(sop_class: &str, sop_instance: &str, message_id: u16) -> InMemDicomObject {
    InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class),
        us(tags::COMMAND_FIELD, field::C_STORE_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, 0),
        us(tags::COMMAND_DATA_SET_TYPE, 0x0000),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance),
    ])
}

/// C-STORE-RSP to a received C-STORE-RQ.
pub(crate) fn store_rsp(request: &InMemDicomObject, status: u16) -> InMemDicomObject {
    let class = text(request, tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
    let instance = text(request, tags::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
    let id = int(request, tags::MESSAGE_ID).unwrap_or(0);
    InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, &class),
        us(tags::COMMAND_FIELD, field::C_STORE_RSP),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, id),
        us(tags::COMMAND_DATA_SET_TYPE, 0x0101),
        us(tags::STATUS, status),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, &instance),
    ])
}

/// C-FIND-RQ, C-GET-RQ or C-MOVE-RQ (with its destination) on a query/retrieve model.
pub(crate) fn query_rq(
    command_field: u16,
    model: &str,
    message_id: u16,
    move_destination: Option<&str>,
) -> InMemDicomObject {
    let mut elements = vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, model),
        us(tags::COMMAND_FIELD, command_field),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, 0),
        us(tags::COMMAND_DATA_SET_TYPE, 0x0000),
    ];
    if let Some(dest) = move_destination {
        elements.push(DataElement::new(
            tags::MOVE_DESTINATION,
            VR::AE,
            PrimitiveValue::from(dest),
        ));
    }
    InMemDicomObject::command_from_element_iter(elements)
}

/// Encodes a data set (a query identifier) in the transfer syntax `ts_uid`.
pub(crate) fn encode_dataset(
    obj: &InMemDicomObject,
    ts_uid: &str,
    address: &str,
) -> Result<Vec<u8>, PacsError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| PacsError::Protocol {
            address: address.to_string(),
            during: "encoding a query".into(),
            message: format!("unknown transfer syntax {ts_uid}"),
        })?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| PacsError::Protocol {
            address: address.to_string(),
            during: "encoding a query".into(),
            message: e.to_string(),
        })?;
    Ok(out)
}

/// Decodes a data set received in the transfer syntax `ts_uid`.
pub(crate) fn decode_dataset(
    bytes: &[u8],
    ts_uid: &str,
    address: &str,
) -> Result<InMemDicomObject, PacsError> {
    let bad = |message: String| PacsError::Protocol {
        address: address.to_string(),
        during: "decoding an answer".into(),
        message,
    };
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| bad(format!("unknown transfer syntax {ts_uid}")))?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| bad(e.to_string()))
}
