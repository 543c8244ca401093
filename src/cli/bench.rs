//! `deltawkv bench`: inference speed of the WGSL engine against the CPU reference in the same run,
//! with the floor given by the network's operation count over the adapter's measured f32 rate.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};

use super::DeviceArg;
use crate::checkpoints::{self, Reach};
use crate::engine::Upscaler;
use crate::gpu::kernels::KernelOptions;
use crate::gpu::network::network_macs;
use crate::gpu::{GpuContext, GpuEngine, GpuOptions, measure};
use crate::model::cpu::CpuUpscaler;
use crate::model::{Checkpoint, ModelConfig};
use crate::plane::Plane;

/// Arguments of `deltawkv bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Upscaling factor.
    #[arg(long, default_value_t = 2)]
    pub scale: usize,
    /// LR slice size, HxW.
    #[arg(long, default_value = "64x64", value_parser = parse_size)]
    pub size: (usize, usize),
    /// Number of slices (one volume) the GPU upscales per timed run.
    #[arg(long, default_value_t = 8)]
    pub slices: usize,
    /// Checkpoint; without one, a random checkpoint of the DWKV-3M configuration (same cost).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// gpu: the WGSL engine (and the CPU reference for the ratio); cpu: the CPU reference only;
    /// auto: the GPU engine when an adapter exists.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Slices the CPU reference runs for the GPU/CPU ratio (0: skip the CPU reference).
    #[arg(long, default_value_t = 1)]
    pub cpu_slices: usize,
    /// Largest GPU batch (default: the engine's, limited by its memory budget).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed GPU runs after the warm-up run; the fastest is reported.
    #[arg(long, default_value_t = 2)]
    pub repeat: usize,
    /// Also time every kernel on its own (one more GPU run, one synchronisation per dispatch)
    /// and print where the time goes.
    #[arg(long)]
    pub profile: bool,
    /// Kernel variants to time, comma separated, each in the same run on the same inputs
    /// (default = fused, per-direction, vec4-scan, baseline, scalar-scan, chunked,
    /// chunked-per-direction, ln-rows, ln-tokens, sg-pipe, sg-serial; names combine with `+`,
    /// e.g. ln-tokens+sg-serial); the first is the headline figure.
    #[arg(long, default_value = "default", value_delimiter = ',', value_parser = parse_kernels)]
    pub kernels: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub memory: super::MemoryArgs,
}

fn parse_kernels(s: &str) -> anyhow::Result<String> {
    match KernelOptions::from_name(s) {
        Some(_) => Ok(s.trim().to_string()),
        None => bail!(
            "unknown kernel variant `{s}` (one of {})",
            KernelOptions::NAMES.join(", ")
        ),
    }
}

fn parse_size(s: &str) -> anyhow::Result<(usize, usize)> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("expected HxW, got `{s}`"))?;
    let h: usize = h
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("bad height in `{s}`"))?;
    let w: usize = w
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("bad width in `{s}`"))?;
    if h == 0 || w == 0 || h > 4096 || w > 4096 {
        bail!("size `{s}` out of range (1..=4096)");
    }
    Ok((h, w))
}

/// Deterministic, smooth, MRI-like test slices in [0, 1].
fn test_slices(n: usize, h: usize, w: usize) -> Vec<Plane> {
    (0..n)
        .map(|k| {
            let ph = k as f32 * 0.3;
            let data = (0..h * w)
                .map(|i| {
                    let (r, c) = ((i / w) as f32 / h as f32, (i % w) as f32 / w as f32);
                    let blob = (-((r - 0.5).powi(2) + (c - 0.5).powi(2)) * 6.0).exp();
                    (0.6 * blob + 0.2 * (17.0 * r + ph).sin() * (11.0 * c - ph).cos() + 0.2)
                        .clamp(0.0, 1.0)
                })
                .collect();
            Plane {
                width: w,
                height: h,
                data,
            }
        })
        .collect()
}

fn quiet(_: usize, _: usize) {}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        num += (f64::from(*x) - f64::from(*y)).powi(2);
        den += f64::from(*y).powi(2);
    }
    if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    }
}

#[derive(serde::Serialize)]
struct GpuReport {
    adapter: String,
    backend: String,
    device_type: String,
    batch: usize,
    first_run_seconds: f64,
    seconds_per_slice: f64,
    slices_per_second: f64,
    buffer_bytes: u64,
    weight_bytes: u64,
    /// The engine's memory budget for activation buffers (it sizes the batch).
    memory_budget_bytes: u64,
    /// The adapter's largest device-local memory heap, where the backend reports it.
    device_memory_bytes: Option<u64>,
    /// f16 shaders and cooperative-matrix configurations the adapter offers (not used yet).
    adapter_capabilities: Option<crate::gpu::context::AdapterCapabilities>,
    matmul_gflops: f64,
    /// Compute floor: the network's operations over the measured matmul rate.
    floor_seconds_per_slice: f64,
    ratio_to_floor: f64,
    /// PCI bus id of the adapter (machines with several GPUs; `DELTAWKV_ADAPTER` picks one).
    pci_bus_id: String,
    /// Compulsory memory traffic per slice of the engine's kernels (inputs read once, outputs
    /// written once per kernel), bytes.
    traffic_bytes_per_slice: f64,
    /// Measured device-memory bandwidth (coalesced compute-shader copy, read plus written), GB/s.
    bandwidth_gbs: f64,
    /// Bandwidth floor: the traffic over the measured bandwidth.
    bandwidth_floor_seconds_per_slice: f64,
    /// The larger of the two floors, and the time per slice over it.
    roofline_floor_seconds_per_slice: f64,
    ratio_to_roofline_floor: f64,
}

/// One kernel variant's timing (same inputs, same run).
#[derive(serde::Serialize)]
struct VariantReport {
    kernels: String,
    first_run_seconds: f64,
    seconds_per_slice: f64,
    /// This variant's time per slice over the first variant's.
    time_vs_first: f64,
    max_rel_error_gpu_vs_cpu: Option<f64>,
    profile: Vec<KernelTime>,
    #[serde(skip)]
    outputs: Vec<Plane>,
}

#[derive(serde::Serialize)]
struct KernelTime {
    kernel: String,
    dispatches: usize,
    seconds: f64,
}

#[derive(serde::Serialize)]
struct CpuReport {
    slices: usize,
    threads: usize,
    seconds_per_slice: f64,
    slices_per_second: f64,
}

/// Runs `deltawkv bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (h, w) = args.size;
    if args.slices == 0 {
        bail!("--slices must be at least 1");
    }
    let (ck, weights_note) = match &args.weights {
        Some(p) => {
            let (ck, p) =
                checkpoints::load(Some(p), args.scale, args.memory.bytes()?, Reach::WorkingDir)?;
            (ck, p.display().to_string())
        }
        None => {
            if !(args.scale == 2 || args.scale == 4) {
                bail!("--scale must be 2 or 4");
            }
            (
                Checkpoint::random(&ModelConfig::dwkv3m(args.scale), 0),
                "random DWKV-3M checkpoint (no --weights; same cost as the trained one)"
                    .to_string(),
            )
        }
    };
    let cup = ck
        .tensors
        .get("conv_before_upsample.weight")
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(64);
    let macs = network_macs(&ck.config, cup, h, w);
    let inputs = test_slices(args.slices, h, w);
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    say(format!("weights: {weights_note}"));
    say(format!(
        "network: {:.2} GMAC per {h}x{w} slice at x{}",
        macs as f64 / 1e9,
        args.scale
    ));

    // GPU engine.
    let mut gpu_report = None;
    let mut profile: Vec<KernelTime> = Vec::new();
    let mut gpu_outputs: Vec<Plane> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut variants: Vec<VariantReport> = Vec::new();
    if args.device != DeviceArg::Cpu {
        match GpuContext::new() {
            Ok(ctx) => {
                let ctx = Arc::new(ctx);
                say(format!("adapter: {}", ctx.describe()));
                if let Some(c) = &ctx.capabilities {
                    say(format!(
                        "adapter offers: shader f16 {}, cooperative matrices {}",
                        if c.shader_f16 { "yes" } else { "no" },
                        if c.cooperative_matrix.is_empty() {
                            "none".to_string()
                        } else {
                            c.cooperative_matrix.join(", ")
                        }
                    ));
                }
                let opts = GpuOptions {
                    max_batch: args.batch,
                    ..Default::default()
                };
                let mut eng = GpuEngine::new(ctx.clone(), &ck, opts)
                    .context("cannot start the GPU engine")?;
                let batch = eng.batch_for(h, w, args.slices)?;
                let cancel = AtomicBool::new(false);
                for name in &args.kernels {
                    let Some(k) = KernelOptions::from_name(name) else {
                        bail!("unknown kernel variant `{name}`");
                    };
                    eng.set_kernels(k);
                    say(format!("GPU run, kernels `{name}` ({k:?})..."));
                    let t = Instant::now();
                    let mut outputs = eng
                        .upscale(&inputs, &quiet, &cancel)
                        .context("GPU warm-up run failed")?;
                    let first = t.elapsed().as_secs_f64();
                    let mut best = f64::INFINITY;
                    for _ in 0..args.repeat.max(1) {
                        let t = Instant::now();
                        outputs = eng
                            .upscale(&inputs, &quiet, &cancel)
                            .context("GPU run failed")?;
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                    let mut prof = Vec::new();
                    if args.profile {
                        let chunk: Vec<&Plane> = inputs.iter().take(batch).collect();
                        prof = eng
                            .profile_batch(&chunk)
                            .context("profiling run failed")?
                            .into_iter()
                            .map(|(kernel, dispatches, seconds)| KernelTime {
                                kernel,
                                dispatches,
                                seconds,
                            })
                            .collect();
                    }
                    let per = best / args.slices as f64;
                    let base = variants
                        .first()
                        .map_or(per, |v: &VariantReport| v.seconds_per_slice);
                    variants.push(VariantReport {
                        kernels: name.clone(),
                        first_run_seconds: first,
                        seconds_per_slice: per,
                        time_vs_first: per / base,
                        max_rel_error_gpu_vs_cpu: None,
                        profile: prof,
                        outputs,
                    });
                }
                let Some(head) = variants.first_mut() else {
                    bail!("no kernel variant to run");
                };
                gpu_outputs = std::mem::take(&mut head.outputs);
                profile = std::mem::take(&mut head.profile);
                let first = head.first_run_seconds;
                let per = head.seconds_per_slice;
                say("measuring the adapter's f32 matmul rate...".into());
                let flops =
                    measure::matmul_flops(&ctx).context("matmul rate measurement failed")?;
                let floor = 2.0 * macs as f64 / flops;
                say("measuring the adapter's copy bandwidth...".into());
                let bandwidth =
                    measure::copy_bandwidth(&ctx).context("bandwidth measurement failed")?;
                let traffic = eng.traffic_bytes_per_slice(batch, h, w).unwrap_or(0.0);
                let bw_floor = traffic / bandwidth;
                let roof = floor.max(bw_floor);
                gpu_report = Some(GpuReport {
                    adapter: ctx.info.name.clone(),
                    backend: format!("{:?}", ctx.info.backend),
                    device_type: format!("{:?}", ctx.info.device_type),
                    batch,
                    first_run_seconds: first,
                    seconds_per_slice: per,
                    slices_per_second: 1.0 / per,
                    buffer_bytes: eng.buffer_bytes(),
                    weight_bytes: eng.weight_bytes(),
                    memory_budget_bytes: eng.memory_budget(),
                    device_memory_bytes: ctx.device_memory,
                    adapter_capabilities: ctx.capabilities.clone(),
                    matmul_gflops: flops / 1e9,
                    floor_seconds_per_slice: floor,
                    ratio_to_floor: per / floor,
                    pci_bus_id: ctx.info.device_pci_bus_id.clone(),
                    traffic_bytes_per_slice: traffic,
                    bandwidth_gbs: bandwidth / 1e9,
                    bandwidth_floor_seconds_per_slice: bw_floor,
                    roofline_floor_seconds_per_slice: roof,
                    ratio_to_roofline_floor: per / roof,
                });
            }
            Err(e) => {
                if args.device == DeviceArg::Gpu {
                    return Err(e).context("--device gpu");
                }
                notes.push(format!("no GPU adapter ({e}); CPU reference only"));
            }
        }
    }

    // CPU reference on the first slices.
    let mut cpu_report = None;
    let mut parity = None;
    let cpu_n = if args.device == DeviceArg::Cpu {
        args.cpu_slices.max(1)
    } else {
        args.cpu_slices
    }
    .min(args.slices);
    if cpu_n > 0 {
        say(format!("CPU reference on {cpu_n} slice(s)..."));
        let mut cpu = CpuUpscaler::new(ck.clone()).context("bad checkpoint")?;
        let t = Instant::now();
        let out = cpu
            .upscale(&inputs[..cpu_n], &quiet, &AtomicBool::new(false))
            .context("CPU reference failed")?;
        let per = t.elapsed().as_secs_f64() / cpu_n as f64;
        let max_err = |gpu: &[Plane]| {
            out.iter()
                .zip(gpu)
                .map(|(c, g)| rel_err(&g.data, &c.data))
                .fold(0.0f64, f64::max)
        };
        if !gpu_outputs.is_empty() {
            parity = Some(max_err(&gpu_outputs));
        }
        for (i, v) in variants.iter_mut().enumerate() {
            v.max_rel_error_gpu_vs_cpu = if i == 0 {
                parity
            } else {
                Some(max_err(&v.outputs))
            };
        }
        cpu_report = Some(CpuReport {
            slices: cpu_n,
            threads: rayon::current_num_threads(),
            seconds_per_slice: per,
            slices_per_second: 1.0 / per,
        });
    }
    let ratio = match (&gpu_report, &cpu_report) {
        (Some(g), Some(c)) => Some(c.seconds_per_slice / g.seconds_per_slice),
        _ => None,
    };

    if args.json {
        let obj = serde_json::json!({
            "scale": args.scale,
            "size": [h, w],
            "slices": args.slices,
            "weights": weights_note,
            "gmac_per_slice": macs as f64 / 1e9,
            "gpu": gpu_report,
            "cpu_reference": cpu_report,
            "cpu_over_gpu_time": ratio,
            "max_rel_error_gpu_vs_cpu": parity,
            "profile_batch": if args.profile { Some(gpu_report.as_ref().map_or(0, |g| g.batch)) } else { None },
            "profile": profile,
            "kernel_variants": variants,
            "notes": notes,
        });
        println!("{obj}");
        return Ok(());
    }
    for n in &notes {
        println!("note: {n}");
    }
    println!(
        "x{} {h}x{w}, {} slices, {:.2} GMAC/slice",
        args.scale,
        args.slices,
        macs as f64 / 1e9
    );
    println!("{:<34} {:>14} {:>12}", "backend", "ms/slice", "slices/s");
    if let Some(g) = &gpu_report {
        println!(
            "{:<34} {:>14.1} {:>12.3}",
            format!("GPU {} (batch {})", g.adapter, g.batch),
            g.seconds_per_slice * 1e3,
            g.slices_per_second
        );
    }
    if let Some(c) = &cpu_report {
        println!(
            "{:<34} {:>14.1} {:>12.3}",
            format!("CPU reference ({} thr, {} sl.)", c.threads, c.slices),
            c.seconds_per_slice * 1e3,
            c.slices_per_second
        );
    }
    if let Some(g) = &gpu_report {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let memory = g
            .device_memory_bytes
            .map(|m| format!(" of {:.1} GiB device memory", gib(m)))
            .unwrap_or_default();
        println!(
            "GPU buffers: {:.1} MiB ({:.1} MiB weights), budget {:.1} GiB{memory}; first run {:.2} s (pipeline compilation)",
            g.buffer_bytes as f64 / (1 << 20) as f64,
            g.weight_bytes as f64 / (1 << 20) as f64,
            gib(g.memory_budget_bytes),
            g.first_run_seconds
        );
        println!(
            "floor: {:.1} ms/slice ({:.2} GMAC at the measured {:.1} GFLOP/s of the matmul kernel); engine at {:.1}x the floor",
            g.floor_seconds_per_slice * 1e3,
            macs as f64 / 1e9,
            g.matmul_gflops,
            g.ratio_to_floor
        );
        println!(
            "bandwidth floor: {:.1} ms/slice ({:.1} MB of compulsory traffic at the measured {:.0} GB/s of a compute-shader copy); roofline floor {:.1} ms/slice, engine at {:.1}x",
            g.bandwidth_floor_seconds_per_slice * 1e3,
            g.traffic_bytes_per_slice / 1e6,
            g.bandwidth_gbs,
            g.roofline_floor_seconds_per_slice * 1e3,
            g.ratio_to_roofline_floor
        );
    }
    if !profile.is_empty() {
        let total: f64 = profile.iter().map(|k| k.seconds).sum();
        println!(
            "profile of one batch of {} (each dispatch synchronised, {:.1} ms in all):",
            gpu_report.as_ref().map_or(0, |g| g.batch),
            total * 1e3
        );
        for k in &profile {
            println!(
                "  {:<44} {:>5} x {:>10.1} ms {:>5.1}%",
                k.kernel,
                k.dispatches,
                k.seconds * 1e3,
                100.0 * k.seconds / total.max(1e-12)
            );
        }
    }
    if variants.len() > 1 {
        println!("kernel variants (same inputs, same run):");
        for v in &variants {
            println!(
                "  {:<14} {:>10.1} ms/slice  {:>6.2}x the first's time  first run {:.2} s{}",
                v.kernels,
                v.seconds_per_slice * 1e3,
                v.time_vs_first,
                v.first_run_seconds,
                v.max_rel_error_gpu_vs_cpu
                    .map_or(String::new(), |e| format!("  rel. error vs CPU {e:.2e}"))
            );
        }
    }
    if let Some(r) = ratio {
        println!("GPU is {r:.2}x the speed of the CPU reference (CPU time / GPU time)");
    }
    if let Some(e) = parity {
        println!("max rel. error GPU vs CPU reference: {e:.2e}");
    }
    Ok(())
}
