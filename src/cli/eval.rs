//! `deltawkv eval GT --scale S`: degrade a ground-truth volume, upscale it with the network, and
//! report PSNR and SSIM of the SR output and of the interpolation baselines.
//!
//! Protocol (stated in the output too; the steps are [`crate::evaluation`]'s, shared with the
//! viewer's simulate mode):
//! 1. The GT volume is normalised by its robust maximum, the 99.5th percentile of all its finite
//!    voxels (whatever `--slices` selects), then clipped to [0, 1]; non-finite voxels become 0
//!    (counted in the report).
//! 2. Each selected slice is cropped to a multiple of S (top-left corner kept) and degraded
//!    (`kspace` truncation or `bicubic` downsampling; default: the checkpoint's `degradation`).
//! 3. SR = network output; baselines = zero-filled k-space, bicubic and nearest interpolation of
//!    the same LR, each with the sampling geometry of the degradation (see [`crate::degrade`]).
//!    Every output is clamped to [0, 1].
//! 4. Metrics against the cropped normalised GT with data range 1.0: volume PSNR from the MSE over
//!    all evaluated voxels, SSIM the mean of the slices' SSIMs (see [`crate::metrics`]).
//!
//! `--data-consistency` adds the row `sr_dc`: each SR slice made consistent with its LR
//! ([`crate::consistency`]) before the clamp, and the RMS of the removed residual.
//! `--realistic` runs steps 2-4 once more on a realistic acquisition of the same slices
//! ([`crate::degrade::realistic`]), reported beside the standard protocol (unchanged).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::{AxisArg, DegradationArg, DeviceArg};
use crate::checkpoints::{self, LocateError, Reach};
use crate::consistency;
use crate::degrade::Baseline;
use crate::degrade::realistic::{self, Realistic};
use crate::engine::Upscaler;
use crate::ensemble::SelfEnsemble;
use crate::evaluation::{self, NORM_PERCENTILE, Score};
use crate::metrics;
use crate::model::Degradation;
use crate::plane::Plane;
use crate::volume::{self, Axis, LoadOptions};

/// Arguments of `deltawkv eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Ground-truth volume (NIfTI file, DICOM file or folder).
    pub gt: PathBuf,
    /// Upscaling factor (must match the checkpoint).
    #[arg(long)]
    pub scale: usize,
    /// Checkpoint (safetensors); default weights/dwkv3m_x{S}.safetensors.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// How to simulate the LR slices; default: the checkpoint's `degradation` metadata
    /// (kspace with --baselines-only).
    #[arg(long = "degrade", value_enum)]
    pub degradation: Option<DegradationArg>,
    /// Slice range A:B (0-based, B exclusive; `A:`, `:B` and a single index also work).
    #[arg(long)]
    pub slices: Option<String>,
    /// Slicing axis: the in-plane axes of these slices are the ones upscaled.
    #[arg(long, value_enum, default_value = "axial")]
    pub axis: AxisArg,
    /// Inference backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Also report every slice's metrics.
    #[arg(long)]
    pub per_slice: bool,
    /// Evaluate only the interpolation baselines (no network, no weights needed).
    #[arg(long)]
    pub baselines_only: bool,
    /// Print one JSON object instead of text (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Also score the data-consistent SR (row `sr_dc` beside `sr`): each SR slice's central
    /// k-space replaced by the measured LR's, before the clamp to [0, 1] (k-space LR only; see
    /// the `consistency` module). Adds the RMS of the removed residual SR - DC(SR).
    #[arg(long, conflicts_with = "baselines_only")]
    pub data_consistency: bool,
    /// Geometric self-ensemble: run the network on the eight flips and transposes of each LR
    /// slice and average the outputs mapped back (eight times the network's time; the `sr` and
    /// `sr_dc` rows are then the ensemble's).
    #[arg(long, conflicts_with = "baselines_only")]
    pub self_ensemble: bool,
    /// Also evaluate on a realistic acquisition of the same slices, reported beside the standard
    /// protocol (which stays as it is): k-space truncation plus complex Gaussian k-space noise
    /// (Rician magnitude noise), a Tukey k-space filter and optionally partial Fourier, the
    /// magnitude of the reconstruction as LR; seeded, so every run gives the same LR (k-space
    /// degradation only).
    #[arg(long)]
    pub realistic: bool,
    /// --realistic: standard deviation of each of the real and imaginary parts of the complex
    /// noise in the unfiltered LR image, as a fraction of the GT's 99.5th percentile (the
    /// normalisation's 1.0).
    #[arg(long, default_value_t = Realistic::default().noise, requires = "realistic")]
    pub noise: f64,
    /// --realistic: Tukey apodisation of the acquired k-space, taper fraction in [0, 1] (0: no
    /// filter, 1: Hann), separable, over the LR frequencies.
    #[arg(long, default_value_t = Realistic::default().tukey, requires = "realistic")]
    pub tukey: f64,
    /// --realistic: fraction in [0.5, 1] of the phase-encoding (vertical, row) frequencies
    /// acquired, from the most negative upwards; the rest zero-filled (1: full k-space).
    #[arg(long, default_value_t = Realistic::default().partial_fourier, requires = "realistic")]
    pub partial_fourier: f64,
    /// --realistic: seed of the noise (slice k's noise depends only on the seed and k).
    #[arg(long, default_value_t = Realistic::default().seed, requires = "realistic")]
    pub seed: u64,
    #[command(flatten)]
    pub memory: super::MemoryArgs,
}

/// Parses `A:B`, `A:`, `:B` or `A` into a half-open range within `0..n`.
fn parse_slices(spec: Option<&str>, n: usize) -> anyhow::Result<(usize, usize)> {
    let Some(spec) = spec else {
        return Ok((0, n));
    };
    let num = |s: &str, default: usize| -> anyhow::Result<usize> {
        let s = s.trim();
        if s.is_empty() {
            Ok(default)
        } else {
            s.parse::<usize>()
                .with_context(|| format!("--slices {spec:?}: {s:?} is not a slice index"))
        }
    };
    let (a, b) = match spec.split_once(':') {
        Some((a, b)) => (num(a, 0)?, num(b, n)?),
        None => {
            let a = num(spec, 0)?;
            (a, a + 1)
        }
    };
    if a >= b || b > n {
        bail!(
            "--slices {spec:?} selects nothing in 0..{n} (the volume has {n} slices on this axis)"
        );
    }
    Ok((a, b))
}

/// [`evaluation::score`] of one method, named `what` in errors.
fn score(gt: &[Plane], outputs: &[Plane], what: &str) -> anyhow::Result<Score> {
    evaluation::score(gt, outputs).with_context(|| format!("metrics of {what}"))
}

fn json_num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn bar(total: usize, hidden: bool, msg: &'static str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} slices, {elapsed} (eta {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// Runs `deltawkv eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let s = args.scale;
    if s < 2 {
        bail!("--scale must be at least 2, got {s}");
    }

    let axis = Axis::from(args.axis);
    let wanted = args.degradation.map(Degradation::from);
    let budget = args.memory.bytes()?;
    // Network and degradation.
    let mut engine: Option<(Box<dyn Upscaler>, PathBuf)> = None;
    let mut ckpt_degradation = None;
    if !args.baselines_only {
        let (ckpt, path) = checkpoints::load(args.weights.as_deref(), s, budget, Reach::WorkingDir)
            .map_err(|e| match e {
                LocateError::NotFound { .. } => anyhow::anyhow!("{e}, or use --baselines-only"),
                other => other.into(),
            })?;
        ckpt_degradation = Some(ckpt.config.degradation);
        let up = crate::backend::create(ckpt, args.device.into())
            .context("cannot start the inference engine")?;
        engine = Some((up, path));
    }
    let degradation = wanted.or(ckpt_degradation).unwrap_or(Degradation::Kspace);
    if let (Some(c), Some(d)) = (ckpt_degradation, wanted)
        && c != d
    {
        eprintln!(
            "warning: the checkpoint was trained on {} LR images, evaluating on {}",
            c.as_str(),
            d.as_str()
        );
    }

    if args.self_ensemble {
        engine = engine.map(|(up, path)| {
            let up: Box<dyn Upscaler> = Box::new(SelfEnsemble::new(up, degradation));
            (up, path)
        });
    }
    if args.data_consistency && degradation != Degradation::Kspace {
        bail!(
            "--data-consistency: {}",
            consistency::ConsistencyError::Unsupported(degradation)
        );
    }
    let realistic_params = if args.realistic {
        if degradation != Degradation::Kspace {
            bail!(
                "--realistic models a k-space acquisition; this evaluation degrades by {} (use \
                 --degrade kspace)",
                degradation.as_str()
            );
        }
        let p = Realistic {
            noise: args.noise,
            tukey: args.tukey,
            partial_fourier: args.partial_fourier,
            seed: args.seed,
        };
        p.validate().context("--realistic")?;
        Some(p)
    } else {
        None
    };

    // Ground truth.
    let opts = LoadOptions {
        memory_budget: budget,
        ..LoadOptions::default()
    };
    let mut vol = volume::load(&args.gt, &opts)
        .with_context(|| format!("cannot load {}", args.gt.display()))?;
    let n = vol.slice_count(axis);
    let (a, b) = parse_slices(args.slices.as_deref(), n)?;
    let non_finite = vol.data.iter().filter(|v| !v.is_finite()).count();
    let robust_max = evaluation::normalise(&mut vol.data)
        .with_context(|| format!("{}: cannot normalise to [0, 1]", args.gt.display()))?;
    let mut gt = Vec::with_capacity(b - a);
    for k in a..b {
        let p = vol
            .slice(axis, k)
            .with_context(|| format!("slice {k} out of range"))?;
        let (w, h) = (p.width, p.height);
        let c = evaluation::crop(&p, k, s).with_context(|| format!("{}", args.gt.display()))?;
        if c.width < metrics::SSIM_WIN || c.height < metrics::SSIM_WIN {
            bail!(
                "{}: {:?} slices are {w}x{h} ({}x{} after cropping to a multiple of {s}); SSIM \
                 needs at least {m}x{m}",
                args.gt.display(),
                axis,
                c.width,
                c.height,
                m = metrics::SSIM_WIN
            );
        }
        gt.push(c);
    }
    let (hr_w, hr_h) = gt.first().map_or((0, 0), |p| (p.width, p.height));

    // The standard protocol, then the realistic acquisition of the same slices.
    let mut up = engine.as_mut().map(|(u, _)| u);
    let lrs: Vec<Plane> = gt
        .par_iter()
        .zip(a..b)
        .map(|(p, k)| evaluation::degrade(p, k, s, degradation))
        .collect::<Result<_, _>>()
        .context("degradation failed")?;
    let standard = evaluate(&gt, &lrs, a, s, degradation, up.as_deref_mut(), &args, "SR")?;
    let realistic = match &realistic_params {
        Some(params) => {
            let lrs: Vec<Plane> = gt
                .par_iter()
                .zip(a..b)
                .map(|(p, k)| realistic::realistic_lr(p, s, params, k as u64))
                .collect::<Result<_, _>>()
                .context("realistic acquisition failed")?;
            Some(evaluate(
                &gt,
                &lrs,
                a,
                s,
                degradation,
                up,
                &args,
                "SR (realistic)",
            )?)
        }
        None => None,
    };
    let (device, weights) = match engine {
        Some((mut up, path)) => {
            for note in up.take_notices() {
                eprintln!("note: {note}");
            }
            // After the runs: a GPU engine that fell back to the CPU says so here.
            (Some(up.describe()), Some(path))
        }
        None => (None, None),
    };
    let seconds = t0.elapsed().as_secs_f64();
    report(
        &args,
        &Report {
            standard: &standard,
            realistic: realistic_params.as_ref().zip(realistic.as_ref()),
            degradation,
            range: (a, b),
            robust_max,
            non_finite,
            hr: (hr_w, hr_h),
            device: device.as_deref(),
            weights: weights.as_deref(),
            seconds,
        },
    );
    Ok(())
}

/// One protocol's scores: the SR (and its data-consistent version) and the baselines.
struct Variant {
    results: Vec<(&'static str, Score)>,
    seconds_sr: Option<f64>,
    /// RMS of SR - DC(SR) over every voxel (with --data-consistency).
    residual_rms: Option<f64>,
}

/// Baselines and (with an engine) the network on `lrs`, the LR of ground-truth slices `gt`
/// (numbered from `first`), scored against `gt`.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    gt: &[Plane],
    lrs: &[Plane],
    first: usize,
    s: usize,
    degradation: Degradation,
    engine: Option<&mut Box<dyn Upscaler>>,
    args: &EvalArgs,
    what: &'static str,
) -> anyhow::Result<Variant> {
    let range = first..first + gt.len();
    let mut results: Vec<(&'static str, Score)> = Vec::new();
    for method in Baseline::ALL {
        let ups: Vec<Plane> = lrs
            .par_iter()
            .zip(range.clone())
            .map(|(lr, k)| evaluation::baseline(lr, k, s, method, degradation))
            .collect::<Result<_, _>>()?;
        results.push((method.as_str(), score(gt, &ups, method.as_str())?));
    }
    let Some(up) = engine else {
        return Ok(Variant {
            results,
            seconds_sr: None,
            residual_rms: None,
        });
    };
    let pb = bar(lrs.len(), args.json, what);
    let progress = |done: usize, _total: usize| pb.set_position(done as u64);
    let cancel = AtomicBool::new(false);
    let t = Instant::now();
    let srs = up
        .upscale(lrs, &progress, &cancel)
        .context("inference failed")?;
    let seconds_sr = Some(t.elapsed().as_secs_f64());
    pb.finish_and_clear();
    if srs.len() != gt.len() {
        bail!(
            "the engine returned {} planes for {} inputs",
            srs.len(),
            gt.len()
        );
    }
    if let Some((o, g)) = srs
        .iter()
        .zip(gt)
        .find(|(o, g)| (o.width, o.height) != (g.width, g.height))
    {
        bail!(
            "the engine returned a {}x{} plane for a {}x{} target",
            o.width,
            o.height,
            g.width,
            g.height
        );
    }
    let mut residual_rms = None;
    if args.data_consistency {
        // On the network's output, before the clamp every output gets.
        let projections: Vec<consistency::Projection> = srs
            .par_iter()
            .zip(lrs.par_iter())
            .zip(range.clone())
            .map(|((sr, lr), k)| {
                consistency::project_with_residual(sr, lr, s, degradation)
                    .with_context(|| format!("data consistency of slice {k}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let residuals: Vec<Plane> = projections.iter().map(|p| p.residual.clone()).collect();
        residual_rms = Some(consistency::rms(&residuals));
        let dcs: Vec<Plane> = projections
            .into_iter()
            .map(|p| evaluation::clamp01(p.consistent))
            .collect();
        results.insert(0, ("sr_dc", score(gt, &dcs, "the data-consistent SR")?));
    }
    let srs: Vec<Plane> = srs.into_iter().map(evaluation::clamp01).collect();
    results.insert(0, ("sr", score(gt, &srs, "the SR output")?));
    Ok(Variant {
        results,
        seconds_sr,
        residual_rms,
    })
}

struct Report<'a> {
    standard: &'a Variant,
    realistic: Option<(&'a Realistic, &'a Variant)>,
    degradation: Degradation,
    range: (usize, usize),
    robust_max: f64,
    non_finite: usize,
    hr: (usize, usize),
    device: Option<&'a str>,
    weights: Option<&'a Path>,
    seconds: f64,
}

/// Every method name a report can hold, in order.
const METHODS: [&str; 5] = ["sr", "sr_dc", "zerofill", "bicubic", "nearest"];

/// The metrics of `v` as JSON fields (`psnr_<method>`, `ssim_<method>`,
/// `mean_slice_psnr_<method>`, null for a method not run) into `obj`, with `per_slice` for
/// slices `a..b` when asked.
fn variant_json(obj: &mut serde_json::Value, v: &Variant, per_slice: bool, (a, b): (usize, usize)) {
    let get = |name: &str| v.results.iter().find(|(n, _)| *n == name).map(|(_, m)| m);
    for name in METHODS {
        let m = get(name);
        obj[format!("psnr_{name}")] =
            m.map_or(serde_json::Value::Null, |m| json_num(m.volume.psnr));
        obj[format!("ssim_{name}")] =
            m.map_or(serde_json::Value::Null, |m| json_num(m.volume.ssim));
        // The mean of the slices' PSNRs (not the volume PSNR): what per-slice averages over
        // a data set use.
        obj[format!("mean_slice_psnr_{name}")] = m.map_or(serde_json::Value::Null, |m| {
            json_num(m.per_slice.iter().map(|p| p.psnr).sum::<f64>() / m.per_slice.len() as f64)
        });
    }
    obj["seconds_sr"] = v.seconds_sr.map_or(serde_json::Value::Null, json_num);
    obj["consistency_residual_rms_sr"] = v.residual_rms.map_or(serde_json::Value::Null, json_num);
    if per_slice {
        obj["per_slice"] = (0..b - a)
            .map(|i| {
                let mut o = serde_json::json!({ "index": a + i });
                for (name, m) in &v.results {
                    if let Some(p) = m.per_slice.get(i) {
                        o[format!("psnr_{name}")] = json_num(p.psnr);
                        o[format!("ssim_{name}")] = json_num(p.ssim);
                    }
                }
                o
            })
            .collect();
    }
}

/// The text table of `v` (and its per-slice rows when asked).
fn variant_text(v: &Variant, per_slice: bool, (a, b): (usize, usize)) {
    println!("{:<10} {:>10} {:>8}", "method", "PSNR (dB)", "SSIM");
    for (name, m) in &v.results {
        println!("{name:<10} {:>10.3} {:>8.4}", m.volume.psnr, m.volume.ssim);
    }
    if let Some(rms) = v.residual_rms {
        println!("data consistency: RMS of SR - DC(SR) {rms:.5} (normalised units)");
    }
    if per_slice {
        let names: Vec<&str> = v.results.iter().map(|(n, _)| *n).collect();
        println!("per slice (PSNR dB / SSIM): {}", names.join(", "));
        for i in 0..b - a {
            let cells: Vec<String> = v
                .results
                .iter()
                .filter_map(|(_, m)| m.per_slice.get(i))
                .map(|p| format!("{:7.3} / {:.4}", p.psnr, p.ssim))
                .collect();
            println!("  slice {:4}  {}", a + i, cells.join("   "));
        }
    }
}

fn report(args: &EvalArgs, r: &Report<'_>) {
    let s = args.scale;
    let (a, b) = r.range;
    if args.json {
        let mut obj = serde_json::json!({
            "gt": args.gt.display().to_string(),
            "scale": s,
            "degradation": r.degradation.as_str(),
            "axis": format!("{:?}", args.axis).to_lowercase(),
            "slices": b - a,
            "slice_range": [a, b],
            "hr_size": [r.hr.0, r.hr.1],
            "lr_size": [r.hr.0 / s, r.hr.1 / s],
            "data_range": 1.0,
            "normalisation": {
                "percentile": NORM_PERCENTILE,
                "robust_max": r.robust_max,
                "clipped_to": [0.0, 1.0],
                "non_finite_set_to_zero": r.non_finite,
                "outputs_clamped_to": [0.0, 1.0],
            },
            "weights": r.weights.map(|p| p.display().to_string()),
            "device": r.device,
            "seconds": r.seconds,
            "data_consistency": args.data_consistency,
            "self_ensemble": args.self_ensemble,
        });
        variant_json(&mut obj, r.standard, args.per_slice, r.range);
        obj["realistic"] = match r.realistic {
            Some((params, v)) => {
                let mut o = serde_json::json!({
                    "parameters": {
                        "noise": params.noise,
                        "noise_relative_to": "the GT's 99.5th percentile (normalised 1.0); each of \
                            the real and imaginary parts of the unfiltered LR image",
                        "tukey": params.tukey,
                        "partial_fourier": params.partial_fourier,
                        "phase_encoding": "vertical (rows)",
                        "seed": params.seed,
                    },
                });
                variant_json(&mut o, v, args.per_slice, r.range);
                o
            }
            None => serde_json::Value::Null,
        };
        println!("{obj}");
        return;
    }
    println!(
        "{}: x{s}, {} degradation, {} {:?} slices {a}:{b}, HR {}x{} -> LR {}x{}",
        args.gt.display(),
        r.degradation.as_str(),
        b - a,
        args.axis,
        r.hr.0,
        r.hr.1,
        r.hr.0 / s,
        r.hr.1 / s
    );
    println!(
        "GT / {:.6} (p{NORM_PERCENTILE} of finite voxels) clipped to [0, 1]; outputs clamped to [0, 1]; data range 1.0{}",
        r.robust_max,
        if r.non_finite > 0 {
            format!("; {} non-finite voxels set to 0", r.non_finite)
        } else {
            String::new()
        }
    );
    if let (Some(w), Some(d)) = (r.weights, r.device) {
        println!("weights {} on {d}", w.display());
    }
    if args.data_consistency {
        println!("sr_dc: the SR with its central k-space replaced by the LR's (data consistency)");
    }
    variant_text(r.standard, args.per_slice, r.range);
    let mut net = r.standard.seconds_sr.unwrap_or(0.0);
    if let Some((params, v)) = r.realistic {
        println!("realistic acquisition: {}", params.describe());
        variant_text(v, args.per_slice, r.range);
        net += v.seconds_sr.unwrap_or(0.0);
    }
    if r.standard.seconds_sr.is_some() {
        println!("{:.2} s ({net:.2} s in the network)", r.seconds);
    } else {
        println!("{:.2} s", r.seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_ranges() {
        assert_eq!(parse_slices(None, 10).unwrap(), (0, 10));
        assert_eq!(parse_slices(Some("2:5"), 10).unwrap(), (2, 5));
        assert_eq!(parse_slices(Some("3:"), 10).unwrap(), (3, 10));
        assert_eq!(parse_slices(Some(":4"), 10).unwrap(), (0, 4));
        assert_eq!(parse_slices(Some("7"), 10).unwrap(), (7, 8));
        assert!(parse_slices(Some("5:5"), 10).is_err());
        assert!(parse_slices(Some("0:11"), 10).is_err());
        assert!(parse_slices(Some("x:3"), 10).is_err());
        assert!(parse_slices(Some("10"), 10).is_err());
    }
}
