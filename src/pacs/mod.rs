//! A DICOM network client for a PACS (picture archive): C-ECHO, C-STORE of files, C-FIND at study
//! and series level, and the retrieve of one series by C-GET or by C-MOVE to a storage SCP of our
//! own that listens only while the retrieve runs. Built on dicom-rs's upper-layer crate
//! (`dicom-ul`: associations and PDUs); this module writes only the DIMSE messages on top.
//!
//! Every operation takes a [`Node`] (the PACS), [`Options`] (our AE title, the timeout), and where
//! it runs long a progress callback and a cancel flag. Errors are [`PacsError`], naming the
//! problem: the PACS is down, it rejected our association (and why), a status it answered, a
//! timeout, a cancel. Patient names are never logged (UIDs and counts are).

mod dimse;
mod query;
mod retrieve;
mod store;
mod tls;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use query::{FindQuery, Level, Match, find};
pub use retrieve::{RetrieveMode, RetrieveReport, retrieve_series};
pub use store::{SendReport, send_files};
pub use tls::Tls;

/// The AE title we call with unless told otherwise.
pub const DEFAULT_CALLING_AE: &str = "DELTAWKV";

/// A DICOM node: its application entity title and network address (`AET@HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// The node's AE title (the called AE title of our associations).
    pub ae_title: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port of its DICOM service.
    pub port: u16,
}

impl Node {
    /// `host:port` as one string (for messages and connecting).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn socket_addrs(&self) -> Result<Vec<SocketAddr>, PacsError> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| PacsError::Resolve {
                address: self.address(),
                message: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(PacsError::Resolve {
                address: self.address(),
                message: "no address".into(),
            });
        }
        Ok(addrs)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.ae_title, self.address())
    }
}

impl FromStr for Node {
    type Err = PacsError;

    /// Parses `AET@HOST:PORT` (`AET@[::1]:PORT` for an IPv6 address).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| PacsError::InvalidNode {
            text: s.to_string(),
            why: why.to_string(),
        };
        let (ae, addr) = s
            .split_once('@')
            .ok_or_else(|| bad("expected AET@HOST:PORT"))?;
        check_ae_title(ae).map_err(|why| bad(&why))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected AET@HOST:PORT (no port)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
        Ok(Node {
            ae_title: ae.to_string(),
            host: host.to_string(),
            port,
        })
    }
}

/// Checks an AE title: 1 to 16 characters of printable ASCII without a backslash, not all spaces.
pub fn check_ae_title(ae: &str) -> Result<(), String> {
    if ae.trim().is_empty() {
        return Err("empty AE title".into());
    }
    if ae.len() > 16 {
        return Err(format!("AE title `{ae}` is longer than 16 characters"));
    }
    if !ae.chars().all(|c| c.is_ascii_graphic() || c == ' ') || ae.contains('\\') {
        return Err(format!(
            "AE title `{ae}` holds a character other than printable ASCII (or a backslash)"
        ));
    }
    Ok(())
}

/// How we talk to a PACS: our AE title, how long we wait for it, and TLS.
#[derive(Debug, Clone)]
pub struct Options {
    /// Our (calling) AE title; the PACS must know it.
    pub calling_ae: String,
    /// The longest we wait to connect and for each answer of the PACS.
    pub timeout: Duration,
    /// DICOM over TLS (the PACS's certificate checked against a CA, for its host name or IP
    /// address), or plain TCP when `None`.
    pub tls: Option<Tls>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calling_ae: DEFAULT_CALLING_AE.to_string(),
            timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// Progress of a long operation: instances done so far and the total where known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Instances sent or received so far.
    pub done: usize,
    /// All instances of the operation, when known.
    pub total: Option<usize>,
}

/// What went wrong talking to a PACS.
#[derive(Debug, thiserror::Error)]
pub enum PacsError {
    /// A node given as text that is not `AET@HOST:PORT`.
    #[error("invalid PACS node `{text}`: {why}")]
    InvalidNode {
        /// The text given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// An invalid AE title of ours.
    #[error("invalid calling AE title: {0}")]
    InvalidAeTitle(String),
    /// The host name does not resolve.
    #[error("cannot resolve {address}: {message}")]
    Resolve {
        /// `host:port`.
        address: String,
        /// The resolver's message.
        message: String,
    },
    /// Nothing listens at the address: the PACS is down or the port is wrong.
    #[error("connection refused by {address}: is the PACS running and is the port right?")]
    ConnectionRefused {
        /// `host:port`.
        address: String,
    },
    /// Another failure to connect (unreachable network, ...).
    #[error("cannot connect to {address}: {message}")]
    Connect {
        /// `host:port`.
        address: String,
        /// The system's message.
        message: String,
    },
    /// The PACS did not answer within the timeout.
    #[error("timed out after {secs} s waiting for {address} ({during})")]
    Timeout {
        /// `host:port`.
        address: String,
        /// The timeout in seconds.
        secs: f64,
        /// What we were waiting for.
        during: String,
    },
    /// The TLS handshake failed: the PACS's certificate is not signed by the CA we trust, names
    /// another host, the PACS wants a client certificate, or one side does not speak TLS.
    #[error("TLS with {address} failed: {message} ({hint})")]
    Tls {
        /// `host:port`.
        address: String,
        /// What rustls or dicom-ul said.
        message: String,
        /// What to check.
        hint: String,
    },
    /// A TLS setting that cannot be used (an unreadable CA, certificate or key file).
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// The PACS rejected the association.
    #[error(
        "{address} rejected the association of calling AE `{calling}` to called AE `{called}`: {reason}"
    )]
    Rejected {
        /// `host:port`.
        address: String,
        /// Our AE title.
        calling: String,
        /// The PACS's AE title we called.
        called: String,
        /// The reason the PACS gave (e.g. "calling AE title not recognized").
        reason: String,
    },
    /// The PACS accepted none of the presentation contexts an operation needs.
    #[error("{address} accepts no presentation context for {what}")]
    NoPresentationContext {
        /// `host:port`.
        address: String,
        /// What was needed (a SOP class and transfer syntax, a query model).
        what: String,
    },
    /// The PACS aborted the association.
    #[error("{address} aborted the association ({during})")]
    Aborted {
        /// `host:port`.
        address: String,
        /// What we were doing.
        during: String,
    },
    /// Another protocol failure (an unexpected PDU or message, a broken connection).
    #[error("DICOM protocol error with {address} ({during}): {message}")]
    Protocol {
        /// `host:port`.
        address: String,
        /// What we were doing.
        during: String,
        /// What went wrong.
        message: String,
    },
    /// The PACS refused to store an instance.
    #[error(
        "{address} refused to store {path} (SOP instance {sop_instance_uid}): C-STORE status \
         {status:04X}H{comment} after {stored} instance(s) stored"
    )]
    StoreFailed {
        /// `host:port`.
        address: String,
        /// The file sent.
        path: PathBuf,
        /// Its SOP Instance UID.
        sop_instance_uid: String,
        /// The DIMSE status.
        status: u16,
        /// The PACS's error comment, as ": comment", or empty.
        comment: String,
        /// Instances stored before this one.
        stored: usize,
    },
    /// A C-ECHO, C-FIND, C-GET or C-MOVE answered with a failure status.
    #[error("{address} answered {operation} with status {status:04X}H{comment}")]
    Status {
        /// `host:port`.
        address: String,
        /// The operation (`C-FIND`, ...).
        operation: &'static str,
        /// The DIMSE status.
        status: u16,
        /// The PACS's error comment, as ": comment", or empty.
        comment: String,
    },
    /// A retrieve that ended without every instance of the series.
    #[error(
        "the retrieve of series {series_uid} from {address} is incomplete: {received} instance(s) \
         received, {failed} failed{detail}"
    )]
    Incomplete {
        /// `host:port`.
        address: String,
        /// The series.
        series_uid: String,
        /// Instances received.
        received: usize,
        /// Sub-operations the PACS reports as failed.
        failed: usize,
        /// More about it, as "; ...", or empty.
        detail: String,
    },
    /// No series with this UID on the PACS.
    #[error("{address} has no series {series_uid}")]
    NoSuchSeries {
        /// `host:port`.
        address: String,
        /// The UID asked for.
        series_uid: String,
    },
    /// A file to send that is not a readable DICOM file.
    #[error("{path} is not a readable DICOM file: {message}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        message: String,
    },
    /// Nothing to send.
    #[error("no DICOM file in {path}")]
    NoFiles {
        /// The file or folder given.
        path: PathBuf,
    },
    /// A local file system failure.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The output folder of a retrieve already holds files.
    #[error("{path} already exists and is not an empty folder: choose a new output folder")]
    OutputExists {
        /// The folder.
        path: PathBuf,
    },
    /// Our storage SCP (for C-MOVE) cannot listen.
    #[error("cannot listen on {address} for the C-MOVE: {message}")]
    Listen {
        /// The address to bind.
        address: String,
        /// The system's message.
        message: String,
    },
    /// Our C-MOVE storage SCP refused the PACS's association: it called with another AE title
    /// than the one we called it by.
    #[error(
        "our C-MOVE storage SCP on {address} refused the PACS's association: it called as \
         `{calling}`, not `{expected}` (the AE title we called it by; only that peer is \
         accepted): call the PACS by its own AE title ({cause})"
    )]
    MoveRefused {
        /// Where our SCP listened.
        address: String,
        /// The AE title that called our SCP.
        calling: String,
        /// The one we accept (the PACS's, as we called it).
        expected: String,
        /// The C-MOVE's own error.
        cause: String,
    },
    /// The caller cancelled the operation.
    #[error("cancelled")]
    Cancelled,
}

/// Verifies the DICOM link to `node` with a C-ECHO. Returns the round trip time.
pub fn echo(node: &Node, options: &Options) -> Result<Duration, PacsError> {
    let start = std::time::Instant::now();
    let mut link = dimse::Link::open(
        node,
        options,
        &[dimse::Proposal::new(
            dimse::VERIFICATION,
            dimse::UNCOMPRESSED,
        )],
        &[],
    )?;
    let pc = link.context_for(dimse::VERIFICATION, "C-ECHO (verification)")?;
    let cmd = dimse::echo_rq(link.next_message_id());
    link.send_message(pc, &cmd, None, "C-ECHO")?;
    let rsp = link.receive_message("C-ECHO")?;
    let status = dimse::status(&rsp.command);
    if status != 0 {
        return Err(PacsError::Status {
            address: node.address(),
            operation: "C-ECHO",
            status,
            comment: dimse::error_comment(&rsp.command),
        });
    }
    link.release();
    tracing::info!(node = %node, "C-ECHO succeeded");
    Ok(start.elapsed())
}
