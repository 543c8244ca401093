//! Where the viewer finds its inputs and its inference backend: the bundled sample, checkpoints in
//! `weights/`, and the engine (CPU reference, or the WGSL engine on eframe's own wgpu device).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eframe::egui_wgpu::wgpu;

use super::jobs::EngineFactory;
use crate::engine::{DeviceChoice, EngineError, Upscaler};
use crate::model::{Checkpoint, Degradation};

/// eframe's wgpu device, shared with the inference engine.
#[derive(Clone, Debug)]
pub struct SharedGpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
}

impl SharedGpu {
    /// `name (backend, type)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// A software rasteriser (lavapipe, llvmpipe): sharing it with the UI would stall drawing.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }
}

/// Folders searched for resources: the working directory, the executable's folder and its
/// ancestors (a `target/release/deltawkv` finds the repository), and the source tree it was
/// built from.
fn search_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        for _ in 0..4 {
            let Some(d) = dir else { break };
            roots.push(d.clone());
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots
}

/// The bundled sample volume, if found.
pub fn sample_path() -> Option<PathBuf> {
    search_roots()
        .into_iter()
        .map(|r| r.join("assets").join("sample_pd.nii.gz"))
        .find(|p| p.is_file())
}

/// The `weights/` folders found (`DELTAWKV_WEIGHTS` first when set).
pub fn weights_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("DELTAWKV_WEIGHTS") {
        dirs.push(PathBuf::from(d));
    }
    for r in search_roots() {
        let d = r.join("weights");
        if d.is_dir() && !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// Every `.safetensors` file in the weights folders, sorted by name.
pub fn list_weights() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in weights_dirs() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && p.is_file())
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// Checkpoints in the weights folders whose metadata says `scale`.
pub fn find_weights(scale: usize) -> Vec<PathBuf> {
    list_weights()
        .into_iter()
        .filter(|p| peek_scale(p).ok() == Some(scale))
        .collect()
}

/// Largest safetensors header read when peeking (the header is JSON before the tensors).
const MAX_HEADER: u64 = 16 << 20;

/// What a checkpoint's metadata says, read without loading its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeekedMeta {
    pub scale: usize,
    pub degradation: Option<Degradation>,
}

/// The `scale` in a safetensors file's `__metadata__`, read from the header alone.
pub fn peek_scale(path: &Path) -> Result<usize, String> {
    peek_meta(path).map(|m| m.scale)
}

/// `scale` and `degradation` from a safetensors file's `__metadata__` (header only).
pub fn peek_meta(path: &Path) -> Result<PeekedMeta, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| format!("{}: not a safetensors file ({e})", path.display()))?;
    let n = u64::from_le_bytes(len);
    if n == 0 || n > MAX_HEADER {
        return Err(format!(
            "{}: not a safetensors file (header of {n} bytes)",
            path.display()
        ));
    }
    let mut header = Vec::new();
    f.take(n)
        .read_to_end(&mut header)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| format!("{}: header is not JSON ({e})", path.display()))?;
    let meta = v.get("__metadata__");
    let scale = meta
        .and_then(|m| m.get("scale"))
        .and_then(|s| s.as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: no scale in the checkpoint metadata", path.display()))?;
    let degradation = meta
        .and_then(|m| m.get("degradation"))
        .and_then(|s| s.as_str())
        .and_then(Degradation::from_metadata);
    Ok(PeekedMeta { scale, degradation })
}

/// Name of a device choice shown to the user.
pub fn device_label(choice: DeviceChoice) -> &'static str {
    match choice {
        DeviceChoice::Auto => "auto",
        DeviceChoice::Gpu => "GPU",
        DeviceChoice::Cpu => "CPU reference",
    }
}

/// The backend factory for a device choice (see [`crate::engine::create`]). With a real GPU under
/// eframe, the WGSL engine runs on eframe's own device (`shared`). A software adapter is not
/// shared: compute work queued on it would hold up the UI's frames, so the engine gets its own
/// device, or the CPU reference where that measures faster (`auto`).
pub fn engine_factory(choice: DeviceChoice, shared: Option<SharedGpu>) -> EngineFactory {
    match shared.filter(|s| !s.is_software()) {
        Some(s) if choice != DeviceChoice::Cpu => shared_engine_factory(choice, s),
        _ => Arc::new(
            move |ckpt: &Checkpoint| -> Result<Box<dyn Upscaler>, EngineError> {
                crate::engine::create(ckpt.clone(), choice)
            },
        ),
    }
}

/// The CPU reference: what a run falls back to when the GPU is absent or fails.
pub fn cpu_engine_factory() -> EngineFactory {
    Arc::new(
        move |ckpt: &Checkpoint| -> Result<Box<dyn Upscaler>, EngineError> {
            crate::engine::create(ckpt.clone(), DeviceChoice::Cpu)
        },
    )
}

/// The fallback of runs whose backend is chosen by `choice`: the CPU reference, unless the CPU
/// is the choice already.
pub fn fallback_factory(choice: DeviceChoice) -> Option<EngineFactory> {
    (choice != DeviceChoice::Cpu).then(cpu_engine_factory)
}

/// A factory whose engines run on `shared` (eframe's device), whatever its kind.
pub fn shared_engine_factory(choice: DeviceChoice, shared: SharedGpu) -> EngineFactory {
    Arc::new(
        move |ckpt: &Checkpoint| -> Result<Box<dyn Upscaler>, EngineError> {
            crate::engine::create_with_device(
                ckpt.clone(),
                choice,
                shared.device.clone(),
                shared.queue.clone(),
                shared.info.clone(),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_scale_reads_the_header_only_and_rejects_junk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("c.safetensors");
        let header =
            br#"{"__metadata__":{"format":"delta-wkv","scale":"4","degradation":"bicubic"}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        std::fs::write(&good, &bytes).expect("write");
        assert_eq!(peek_scale(&good), Ok(4));
        assert_eq!(
            peek_meta(&good),
            Ok(PeekedMeta {
                scale: 4,
                degradation: Some(Degradation::Bicubic)
            })
        );
        let junk = dir.path().join("j.safetensors");
        std::fs::write(&junk, u64::MAX.to_le_bytes()).expect("write");
        assert!(peek_scale(&junk).unwrap_err().contains("not a safetensors"));
        let short = dir.path().join("s.safetensors");
        std::fs::write(&short, b"abc").expect("write");
        assert!(peek_scale(&short).is_err());
        let nometa = dir.path().join("n.safetensors");
        let h = br#"{"a":{}}"#;
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h);
        std::fs::write(&nometa, &b).expect("write");
        assert!(peek_scale(&nometa).unwrap_err().contains("no scale"));
    }
}
