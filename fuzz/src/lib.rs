//! The loader modules of `deltawkv`, compiled from the main crate's own source files (`#[path]`),
//! so that the fuzz build instruments the volume, checkpoint and budget code without the GPU and
//! GUI dependency tree (wgpu, eframe: most of the main crate's build time) it never reaches.
//! Helpers shared by the targets live here too.
#![allow(dead_code, unused_imports)]

#[path = "../../src/budget.rs"]
pub mod budget;
#[path = "../../src/plane.rs"]
pub mod plane;
#[path = "../../src/volume/mod.rs"]
pub mod volume;

// The model's checkpoint and configuration modules sit at the root (`super::config` inside
// checkpoint.rs resolves to it), and `crate::model` re-exports them as the main crate does.
#[path = "../../src/model/checkpoint.rs"]
pub mod checkpoint;
#[path = "../../src/model/config.rs"]
pub mod config;

/// `crate::model` as the volume and checkpoint modules see it.
pub mod model {
    pub use crate::checkpoint::{self, Checkpoint, CheckpointError, Tensor};
    pub use crate::config::{self, ConfigError, Degradation, ModelConfig};
}

use std::io::Write;
use std::path::PathBuf;

/// The memory budget the targets load under: large enough for every seed, small enough that
/// libFuzzer's -rss_limit_mb=2048 catches any allocation the budget check misses.
pub const FUZZ_BUDGET: u64 = 256 << 20;

/// A per-process scratch file (in /dev/shm where there is one) named `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("deltawkv-fuzz-{}-{name}", std::process::id()))
}

/// Writes a fuzz input to `path`: the first byte picks the encoding of the rest (odd: gzip it,
/// so the header and voxel parsers are reached through the gzip reader; even: as is, which also
/// feeds damaged gzip streams from the seeds).
pub fn write_input(path: &std::path::Path, data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let bytes = if mode & 1 == 1 {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if enc.write_all(rest).is_err() {
            return false;
        }
        match enc.finish() {
            Ok(b) => b,
            Err(_) => return false,
        }
    } else {
        rest.to_vec()
    };
    std::fs::write(path, bytes).is_ok()
}

/// Replaces libfuzzer-sys's abort-on-panic hook with one that logs the first few panics: a
/// panic the library catches (it wraps the third-party pixel decoders in `catch_unwind`) is then
/// survivable as in the application, while a panic escaping the library still aborts (libFuzzer's
/// wrapper aborts on an uncaught panic) and is reported as a crash.
pub fn tolerate_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 10 {
                eprintln!("panic (caught by the library unless libFuzzer aborts next): {info}");
            }
        }))
    });
}

/// Loads `path` as the command line does, under [`FUZZ_BUDGET`]; every outcome but a panic, a
/// hang or a runaway allocation is fine.
pub fn load(path: &std::path::Path) {
    tolerate_caught_panics();
    let opts = volume::LoadOptions {
        volume: 0,
        series: None,
        memory_budget: FUZZ_BUDGET,
    };
    if let Ok(v) = volume::load(path, &opts) {
        // What `deltawkv info` computes next.
        let _ = v.stats();
        let _ = v.orientation_code();
        assert_eq!(v.data.len(), v.dims.iter().product::<usize>());
    }
}
