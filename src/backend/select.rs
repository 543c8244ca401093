//! Backend selection for [`super::create`]: a real GPU when there is one; with only a software
//! adapter, whichever of it and the CPU reference measures faster (decision cached per adapter
//! and network shape, in memory and on disk). A GPU backend is wrapped in
//! [`super::GpuWithFallback`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::{GpuWithFallback, cpu_upscaler};
use crate::engine::{DeviceChoice, EngineError, Progress, Upscaler};
use crate::gpu::{GpuContext, GpuEngine, GpuOptions};
use crate::model::Checkpoint;
use crate::model::cpu::CpuUpscaler;
use crate::plane::Plane;

/// The CPU reference with the reason it was chosen.
pub struct ChosenCpu {
    cpu: CpuUpscaler,
    reason: Option<String>,
}

impl Upscaler for ChosenCpu {
    fn describe(&self) -> String {
        match &self.reason {
            Some(r) => format!("{} [{r}]", self.cpu.describe()),
            None => self.cpu.describe(),
        }
    }

    fn scale(&self) -> usize {
        self.cpu.scale()
    }

    fn upscale(
        &mut self,
        inputs: &[Plane],
        progress: Progress<'_>,
        cancel: &AtomicBool,
    ) -> Result<Vec<Plane>, EngineError> {
        self.cpu.upscale(inputs, progress, cancel)
    }
}

/// Side of the square slice the software-adapter measurement runs.
const PROBE_SIZE: usize = 16;

/// Result of timing the software adapter against the CPU reference.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Probe {
    gpu_s: f64,
    cpu_s: f64,
}

impl Probe {
    fn gpu_wins(&self) -> bool {
        self.gpu_s < self.cpu_s
    }

    fn summary(&self, adapter: &str) -> String {
        format!(
            "auto: {adapter} {:.2} s vs CPU reference {:.2} s per {PROBE_SIZE}x{PROBE_SIZE} slice",
            self.gpu_s, self.cpu_s
        )
    }
}

fn cache_key(ctx: &GpuContext, ck: &Checkpoint) -> String {
    let c = &ck.config;
    format!(
        "{}|{}|{}|dim{} n{} g{} b{} f{} r{}/{}/{}/{} s{}|threads{}|cpu-ref{}",
        ctx.info.name,
        ctx.info.driver,
        ctx.info.driver_info,
        c.dim,
        c.head_size,
        c.groups,
        c.blocks_per_group,
        c.ffn_ratio,
        c.lora_rank_w,
        c.lora_rank_a,
        c.lora_rank_v,
        c.lora_rank_g,
        c.scale,
        rayon::current_num_threads(),
        crate::model::cpu::REVISION
    )
}

fn cache_file() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("DELTAWKV_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("device_choice.json"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("deltawkv").join("device_choice.json"))
}

fn memory_cache() -> &'static Mutex<HashMap<String, Probe>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Probe>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn load_cached(key: &str) -> Option<Probe> {
    if let Ok(m) = memory_cache().lock()
        && let Some(p) = m.get(key)
    {
        return Some(*p);
    }
    let text = std::fs::read_to_string(cache_file()?).ok()?;
    let map: HashMap<String, Probe> = serde_json::from_str(&text).ok()?;
    map.get(key).copied()
}

fn store_cached(key: &str, probe: Probe) {
    if let Ok(mut m) = memory_cache().lock() {
        m.insert(key.to_string(), probe);
    }
    let Some(path) = cache_file() else { return };
    let mut map: HashMap<String, Probe> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    map.insert(key.to_string(), probe);
    let written = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .ok()
        .and_then(|_| serde_json::to_string_pretty(&map).ok())
        .map(|json| std::fs::write(&path, json));
    if !matches!(written, Some(Ok(()))) {
        tracing::debug!("could not write the device choice cache {}", path.display());
    }
}

/// A deterministic smooth test slice.
fn probe_plane() -> Plane {
    let n = PROBE_SIZE;
    let data = (0..n * n)
        .map(|i| {
            let (r, c) = ((i / n) as f32, (i % n) as f32);
            0.5 + 0.4 * (0.37 * r).sin() * (0.23 * c).cos()
        })
        .collect();
    Plane {
        width: n,
        height: n,
        data,
    }
}

/// Times one slice on the software adapter (after a warm-up run that compiles the pipelines) and
/// on the CPU reference.
fn measure(gpu: &mut GpuEngine, cpu: &mut CpuUpscaler) -> Result<Probe, EngineError> {
    let input = [probe_plane()];
    let cancel = AtomicBool::new(false);
    let quiet = |_: usize, _: usize| {};
    gpu.upscale(&input, &quiet, &cancel)?;
    let t = Instant::now();
    gpu.upscale(&input, &quiet, &cancel)?;
    let gpu_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    cpu.upscale(&input, &quiet, &cancel)?;
    let cpu_s = t.elapsed().as_secs_f64();
    Ok(Probe { gpu_s, cpu_s })
}

/// Builds the backend for `choice` on `ctx` (when a device could be had).
pub fn select(
    checkpoint: Checkpoint,
    choice: DeviceChoice,
    ctx: Result<Arc<GpuContext>, EngineError>,
) -> Result<Box<dyn Upscaler>, EngineError> {
    match choice {
        DeviceChoice::Cpu => Ok(Box::new(ChosenCpu {
            cpu: cpu_upscaler(checkpoint)?,
            reason: None,
        })),
        DeviceChoice::Gpu => {
            let ctx = ctx?;
            let gpu = GpuEngine::new(ctx, &checkpoint, GpuOptions::default())?;
            Ok(Box::new(GpuWithFallback::new(gpu, checkpoint, None)))
        }
        DeviceChoice::Auto => {
            let ctx = match ctx {
                Ok(c) => c,
                Err(e) => {
                    let reason = format!("auto: {e}");
                    tracing::info!("{reason}");
                    return Ok(Box::new(ChosenCpu {
                        cpu: cpu_upscaler(checkpoint)?,
                        reason: Some(reason),
                    }));
                }
            };
            let mut gpu = GpuEngine::new(ctx.clone(), &checkpoint, GpuOptions::default())?;
            if !ctx.is_software() {
                return Ok(Box::new(GpuWithFallback::new(gpu, checkpoint, None)));
            }
            let key = cache_key(&ctx, &checkpoint);
            let probe = match load_cached(&key) {
                Some(p) => p,
                None => {
                    let mut cpu = cpu_upscaler(checkpoint.clone())?;
                    match measure(&mut gpu, &mut cpu) {
                        Ok(p) => {
                            store_cached(&key, p);
                            p
                        }
                        Err(e) => {
                            let reason =
                                format!("auto: the software adapter failed a test run ({e})");
                            tracing::warn!("{reason}");
                            return Ok(Box::new(ChosenCpu {
                                cpu,
                                reason: Some(reason),
                            }));
                        }
                    }
                }
            };
            let reason = probe.summary(&ctx.info.name);
            tracing::info!("{reason}");
            if probe.gpu_wins() {
                Ok(Box::new(GpuWithFallback::new(
                    gpu,
                    checkpoint,
                    Some(reason),
                )))
            } else {
                Ok(Box::new(ChosenCpu {
                    cpu: cpu_upscaler(checkpoint)?,
                    reason: Some(reason),
                }))
            }
        }
    }
}
