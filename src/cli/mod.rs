//! The `deltawkv` command line. Each subcommand lives in its own file; this one parses and
//! dispatches, and turns errors into a message on stderr and exit code 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod batch;
mod bench;
mod compare;
mod convert;
mod eval;
mod info;
mod pacs;
mod upscale;

/// MRI super-resolution with the Delta-WKV network: viewer and batch tools.
#[derive(Parser, Debug)]
#[command(name = "deltawkv", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Describe a volume: dimensions, spacing, orientation, intensity range, format.
    Info(info::InfoArgs),
    /// Convert any readable volume (NIfTI, DICOM file or folder) to NIfTI.
    Convert(convert::ConvertArgs),
    /// Upscale a volume in-plane with the network and write NIfTI.
    Upscale(upscale::UpscaleArgs),
    /// Degrade a ground-truth volume, upscale it, and report PSNR/SSIM against baselines.
    Eval(eval::EvalArgs),
    /// PSNR and SSIM of one volume against another on the same grid.
    Compare(compare::CompareArgs),
    /// Upscale every volume of a folder or manifest with one engine (resumable, shardable).
    Batch(batch::BatchArgs),
    /// Measure inference speed of the GPU engine against the CPU reference.
    Bench(bench::BenchArgs),
    /// Talk to a PACS over DICOM: echo, send, find, get.
    Pacs(pacs::PacsArgs),
    /// Open the viewer (the default with no arguments).
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
    init_tracing();
    let cli = match Cli::try_parse() {
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
        Some(Command::View(a)) => view(a.path),
        None => view(None),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The viewer, or in a build without it (`--no-default-features`) a message saying so.
#[cfg(feature = "viewer")]
fn view(path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    crate::app::run(path)
}

/// The viewer, or in a build without it (`--no-default-features`) a message saying so.
#[cfg(not(feature = "viewer"))]
fn view(_path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
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
