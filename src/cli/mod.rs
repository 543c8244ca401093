//! The `deltawkv` command line. Each subcommand lives in its own file; this one parses and
//! dispatches, and turns errors into a message on stderr and exit code 1.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod batch;
mod bench;
mod compare;
mod convert;
mod eval;
mod help;
mod info;
mod pacs;
mod upscale;

/// MRI super-resolution with the Delta-WKV network: viewer and batch tools.
#[derive(Parser, Debug)]
#[command(
    name = "deltawkv",
    version = help::VERSION,
    about,
    long_about = None,
    override_usage = "deltawkv [PATH]\n       deltawkv <COMMAND>",
    after_help = help::MAIN
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Describe a volume: dimensions, spacing, orientation, intensity range, format.
    #[command(after_help = help::INFO)]
    Info(info::InfoArgs),
    /// Convert any readable volume (NIfTI, DICOM file or folder) to NIfTI.
    #[command(after_help = help::CONVERT)]
    Convert(convert::ConvertArgs),
    /// Upscale a volume in-plane with the network and write NIfTI or a DICOM series.
    #[command(after_help = help::UPSCALE)]
    Upscale(upscale::UpscaleArgs),
    /// Degrade a ground-truth volume, upscale it, and report PSNR/SSIM against baselines.
    #[command(after_help = help::EVAL)]
    Eval(eval::EvalArgs),
    /// PSNR and SSIM of one volume against another on the same grid.
    #[command(after_help = help::COMPARE)]
    Compare(compare::CompareArgs),
    /// Upscale every volume of a folder or manifest with one engine (resumable, shardable).
    #[command(after_help = help::BATCH)]
    Batch(batch::BatchArgs),
    /// Measure inference speed of the GPU engine against the CPU reference.
    #[command(after_help = help::BENCH)]
    Bench(bench::BenchArgs),
    /// Talk to a PACS over DICOM: echo, send, find, get.
    #[command(after_help = help::PACS)]
    Pacs(pacs::PacsArgs),
    /// Open the viewer (the default with no arguments; `deltawkv PATH` is `deltawkv view PATH`).
    #[command(after_help = help::VIEW)]
    View(ViewArgs),
}

/// The `--memory-budget` option of the commands that load data.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MemoryArgs {
    /// Refuse an input (volume, DICOM folder, checkpoint) that would need more memory than SIZE,
    /// before allocating for it, e.g. `8GiB`, `512MiB` [default: $DELTAWKV_MEMORY_BUDGET, else
    /// 4 GiB or 3/4 of the physical memory, whichever is less]
    #[arg(long, value_name = "SIZE", value_parser = crate::budget::parse_size)]
    pub memory_budget: Option<u64>,
}

impl MemoryArgs {
    /// The budget in bytes: the flag, else `DELTAWKV_MEMORY_BUDGET` (an error when malformed),
    /// else the built-in default.
    pub fn bytes(&self) -> anyhow::Result<u64> {
        crate::budget::resolve(self.memory_budget).map_err(anyhow::Error::msg)
    }
}

/// The `--device` option: which inference backend (the value names of
/// [`crate::engine::DeviceChoice`]).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    /// A real GPU when there is one; otherwise whichever of the software adapter and the CPU
    /// reference measures faster.
    Auto,
    // No doc comments on `gpu` and `cpu`: they would become help text (`--help` stays as it was).
    Gpu,
    Cpu,
}

impl From<DeviceArg> for crate::engine::DeviceChoice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => Self::Auto,
            DeviceArg::Gpu => Self::Gpu,
            DeviceArg::Cpu => Self::Cpu,
        }
    }
}

/// `--axis`: the domain's [`crate::volume::Axis`] as a command-line value (domain types carry no
/// clap derives).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AxisArg {
    /// Fixed i (x): sagittal for a canonical (RAS) volume.
    Sagittal,
    /// Fixed j (y): coronal for a canonical volume.
    Coronal,
    /// Fixed k (z): axial for a canonical volume.
    Axial,
}

impl From<AxisArg> for crate::volume::Axis {
    fn from(a: AxisArg) -> Self {
        match a {
            AxisArg::Sagittal => Self::Sagittal,
            AxisArg::Coronal => Self::Coronal,
            AxisArg::Axial => Self::Axial,
        }
    }
}

/// `--degrade`: the domain's [`crate::model::Degradation`] as a command-line value.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DegradationArg {
    /// k-space truncation: LR voxel `i` sits at HR voxel `s * i` (origin aligned).
    Kspace,
    /// Antialiased bicubic downsampling: LR voxel `i` sits at HR position `(i + 0.5) s - 0.5`.
    Bicubic,
}

impl From<DegradationArg> for crate::model::Degradation {
    fn from(d: DegradationArg) -> Self {
        match d {
            DegradationArg::Kspace => Self::Kspace,
            DegradationArg::Bicubic => Self::Bicubic,
        }
    }
}

#[derive(clap::Args, Debug, Default)]
pub struct ViewArgs {
    /// Volume to open (NIfTI file, DICOM file or folder); the bundled sample when omitted.
    pub path: Option<std::path::PathBuf>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // The process start as the viewer's start-up timing counts it.
    let started = std::time::Instant::now();
    init_tracing();
    let args = match default_view(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with exit 0, usage errors to stderr with 2;
            // the contract says 1 for user-facing errors.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Some(Command::Info(a)) => info::run(a),
        Some(Command::Convert(a)) => convert::run(a),
        Some(Command::Upscale(a)) => upscale::run(a),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Compare(a)) => compare::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Batch(a)) => batch::run(a),
        Some(Command::Pacs(a)) => pacs::run(a),
        Some(Command::View(a)) => view(a.path, started),
        None => view(None, started),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `deltawkv PATH` is `deltawkv view PATH` (what a desktop entry's `Exec=deltawkv %f` runs): when
/// the first argument is neither an option nor a subcommand and names an existing file or folder,
/// `view` is inserted before it. A first argument that looks like a path (it has a `/` or a `.`)
/// but does not exist is an error naming it; any other word is left to clap, which reports an
/// unrecognized subcommand (with a suggestion when one is close).
pub fn default_view(mut args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(first) = args.get(1) else {
        return Ok(args);
    };
    let text = first.to_string_lossy();
    if text.starts_with('-') || is_subcommand(&text) {
        return Ok(args);
    }
    let path = std::path::Path::new(first);
    if path.exists() {
        args.insert(1, OsString::from("view"));
    } else if text.contains(['/', '.']) || text.contains(std::path::MAIN_SEPARATOR) {
        anyhow::bail!(
            "cannot open {}: no such file or folder (`deltawkv PATH` opens a volume in the \
             viewer; see `deltawkv --help` for the commands)",
            path.display()
        );
    }
    Ok(args)
}

/// Whether `word` is a subcommand of [`Cli`] (a name or an alias, or `help`).
fn is_subcommand(word: &str) -> bool {
    use clap::CommandFactory;
    word == "help"
        || Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word))
}

/// The viewer, or in a build without it (`--no-default-features`) a message saying so.
#[cfg(feature = "viewer")]
fn view(path: Option<std::path::PathBuf>, started: std::time::Instant) -> anyhow::Result<()> {
    crate::app::run(path, started)
}

/// The viewer, or in a build without it (`--no-default-features`) a message saying so.
#[cfg(not(feature = "viewer"))]
fn view(_path: Option<std::path::PathBuf>, _started: std::time::Instant) -> anyhow::Result<()> {
    anyhow::bail!(
        "this deltawkv was built without the viewer (cargo feature `viewer`); the command-line \
         tools work: see `deltawkv --help`"
    )
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // dicom-ul's client logs errors that `pacs` returns (and names better) itself; its guess
    // "Received TLS response to non-TLS request!" is also logged for a silent port.
    let filter = EnvFilter::try_from_env("DELTAWKV_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,dicom_ul::association::client=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
