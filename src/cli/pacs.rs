//! `deltawkv pacs`: talk to a PACS over DICOM (echo, send, find, get), on `crate::pacs`.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::pacs::{self, FindQuery, Level, Node, Progress, RetrieveMode};

/// Arguments of `deltawkv pacs`.
#[derive(clap::Args, Debug)]
pub struct PacsArgs {
    #[command(subcommand)]
    pub command: PacsCommand,
}

/// The `deltawkv pacs` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PacsCommand {
    /// Verify the DICOM link to a PACS (C-ECHO).
    #[command(after_help = super::help::PACS_ECHO)]
    Echo(EchoArgs),
    /// Send DICOM files (a file, or a folder searched recursively) to a PACS (C-STORE).
    #[command(after_help = super::help::PACS_SEND)]
    Send(SendArgs),
    /// Query a PACS for studies or series (C-FIND).
    #[command(after_help = super::help::PACS_FIND)]
    Find(FindArgs),
    /// Retrieve one series into a new folder (C-GET, or C-MOVE to us with --move).
    #[command(after_help = super::help::PACS_GET)]
    Get(GetArgs),
}

/// The options every `pacs` subcommand has.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// The PACS as AET@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242.
    #[arg(long, value_name = "AET@HOST:PORT", value_parser = parse_node)]
    pub pacs: Node,
    /// Our AE title (the PACS must know it).
    #[arg(long, value_name = "AET", default_value = pacs::DEFAULT_CALLING_AE)]
    pub calling_ae: String,
    /// Seconds to wait to connect and for each answer of the PACS.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// DICOM over TLS: the PACS's certificate is checked against --tls-ca (else the system's
    /// trusted roots) and against the host name or IP address of --pacs.
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA certificate that signed the PACS's certificate.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<PathBuf>,
    /// Our client certificate (PEM), for a PACS that asks for one (needs --tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
}

impl NodeArgs {
    fn options(&self) -> anyhow::Result<pacs::Options> {
        if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 86_400.0) {
            anyhow::bail!(
                "--timeout {} is not a number of seconds in (0, 86400]",
                self.timeout
            );
        }
        pacs::check_ae_title(&self.calling_ae).map_err(|e| anyhow::anyhow!("--calling-ae: {e}"))?;
        Ok(pacs::Options {
            calling_ae: self.calling_ae.clone(),
            timeout: Duration::from_secs_f64(self.timeout),
            tls: self.tls.then(|| pacs::Tls {
                ca: self.tls_ca.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            }),
        })
    }
}

fn parse_node(s: &str) -> Result<Node, String> {
    s.parse().map_err(|e: pacs::PacsError| e.to_string())
}

/// Arguments of `deltawkv pacs echo`.
#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Arguments of `deltawkv pacs send`.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// DICOM files or folders to send.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `--level`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelArg {
    /// One line per study.
    Study,
    /// One line per series.
    Series,
}

/// Arguments of `deltawkv pacs find`.
#[derive(clap::Args, Debug)]
pub struct FindArgs {
    /// Patient ID (wildcards * and ? allowed).
    #[arg(long)]
    pub patient_id: Option<String>,
    /// Patient's name, e.g. 'Doe^John' or 'Doe*'.
    #[arg(long)]
    pub patient_name: Option<String>,
    /// Study date YYYYMMDD or range YYYYMMDD-YYYYMMDD.
    #[arg(long)]
    pub study_date: Option<String>,
    /// Modality, e.g. MR.
    #[arg(long)]
    pub modality: Option<String>,
    /// Only this StudyInstanceUID.
    #[arg(long, value_name = "UID")]
    pub study: Option<String>,
    /// List studies or series.
    #[arg(long, value_enum, default_value_t = LevelArg::Study)]
    pub level: LevelArg,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Arguments of `deltawkv pacs get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// SeriesInstanceUID of the series to retrieve.
    #[arg(long, value_name = "UID")]
    pub series: String,
    /// New folder to write the series into (must not exist, or be empty).
    pub out_dir: PathBuf,
    /// Retrieve by C-MOVE to our calling AE title instead of C-GET: the PACS must know our AE
    /// title with the address of --move-bind and --move-port.
    #[arg(long = "move")]
    pub use_move: bool,
    /// The port our storage SCP listens on during a --move retrieve.
    #[arg(long, value_name = "PORT", requires = "use_move")]
    pub move_port: Option<u16>,
    /// The interface our storage SCP listens on during a --move retrieve.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1",
        requires = "use_move"
    )]
    pub move_bind: IpAddr,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Runs `deltawkv pacs`.
pub fn run(args: PacsArgs) -> anyhow::Result<()> {
    match args.command {
        PacsCommand::Echo(a) => echo(a),
        PacsCommand::Send(a) => send(a),
        PacsCommand::Find(a) => find(a),
        PacsCommand::Get(a) => get(a),
    }
}

fn echo(a: EchoArgs) -> anyhow::Result<()> {
    let options = a.node.options()?;
    let rtt =
        pacs::echo(&a.node.pacs, &options).with_context(|| format!("C-ECHO to {}", a.node.pacs))?;
    if a.node.json {
        let obj = serde_json::json!({
            "node": a.node.pacs.to_string(),
            "echo": "ok",
            "round_trip_ms": rtt.as_secs_f64() * 1e3,
        });
        println!("{obj}");
    } else {
        println!(
            "{}: C-ECHO ok ({:.1} ms)",
            a.node.pacs,
            rtt.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal and the output is text.
fn bar(json: bool, what: &str) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} instances")
    {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

fn update(pb: &ProgressBar, p: Progress) {
    if let Some(t) = p.total {
        pb.set_length(t as u64);
    }
    pb.set_position(p.done as u64);
}

fn send(a: SendArgs) -> anyhow::Result<()> {
    let options = a.node.options()?;
    let pb = bar(a.node.json, "sending");
    let never = AtomicBool::new(false);
    let report = pacs::send_files(
        &a.node.pacs,
        &a.paths,
        &options,
        &mut |p| update(&pb, p),
        &never,
    );
    pb.finish_and_clear();
    let report = report.with_context(|| format!("C-STORE to {}", a.node.pacs))?;
    if a.node.json {
        let mut obj = serde_json::to_value(&report)?;
        obj["node"] = a.node.pacs.to_string().into();
        println!("{obj}");
    } else {
        println!(
            "{}: stored {} instance(s) ({} with a warning) of {} series in {} study(ies)",
            a.node.pacs,
            report.sent,
            report.warnings,
            report.series.len(),
            report.studies.len()
        );
        for s in &report.series {
            println!("  series {s}");
        }
    }
    Ok(())
}

fn find(a: FindArgs) -> anyhow::Result<()> {
    let options = a.node.options()?;
    let level = match a.level {
        LevelArg::Study => Level::Study,
        LevelArg::Series => Level::Series,
    };
    let query = FindQuery {
        patient_id: a.patient_id.clone(),
        patient_name: a.patient_name.clone(),
        study_date: a.study_date.clone(),
        modality: a.modality.clone(),
        study_uid: a.study.clone(),
        series_uid: None,
    };
    let matches = pacs::find(&a.node.pacs, &query, level, &options)
        .with_context(|| format!("C-FIND on {}", a.node.pacs))?;
    if a.node.json {
        let obj = serde_json::json!({
            "node": a.node.pacs.to_string(),
            "level": level,
            "matches": matches,
        });
        println!("{obj}");
        return Ok(());
    }
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let count = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    for m in &matches {
        match level {
            Level::Study => println!(
                "{}  {:<8}  {:>5} images  patient {}  \"{}\"  {}",
                dash(&m.date),
                dash(&m.modality),
                count(m.instances),
                dash(&m.patient_id),
                dash(&m.study_description),
                m.study_instance_uid
            ),
            Level::Series => println!(
                "{}  {:<3}  {:>5} images  \"{}\"  series {}  (study {})",
                dash(&m.date),
                dash(&m.modality),
                count(m.instances),
                dash(&m.series_description),
                dash(&m.series_instance_uid),
                m.study_instance_uid
            ),
        }
    }
    eprintln!("{} match(es)", matches.len());
    Ok(())
}

fn get(a: GetArgs) -> anyhow::Result<()> {
    let options = a.node.options()?;
    let mode = if a.use_move {
        let port = a
            .move_port
            .context("--move needs --move-port (the port the PACS knows for our AE title)")?;
        RetrieveMode::Move {
            listen: SocketAddr::new(a.move_bind, port),
        }
    } else {
        RetrieveMode::Get
    };
    let pb = bar(a.node.json, "retrieving");
    let never = AtomicBool::new(false);
    let report = pacs::retrieve_series(
        &a.node.pacs,
        &a.series,
        &a.out_dir,
        &mode,
        &options,
        &mut |p| update(&pb, p),
        &never,
    );
    pb.finish_and_clear();
    let report = report.with_context(|| {
        format!(
            "{} of series {} from {}",
            if a.use_move { "C-MOVE" } else { "C-GET" },
            a.series,
            a.node.pacs
        )
    })?;
    if a.node.json {
        let mut obj = serde_json::to_value(&report)?;
        obj["node"] = a.node.pacs.to_string().into();
        println!("{obj}");
    } else {
        println!(
            "{}: {} instance(s) of series {} written to {}",
            a.node.pacs,
            report.instances,
            report.series_uid,
            report.folder.display()
        );
    }
    Ok(())
}
