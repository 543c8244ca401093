//! [`KernelOptions`]: which variant a [`Graph`](crate::gpu::graph::Graph) records of the kernels
//! that have several, and the variant names `deltawkv bench --kernels` and `DELTAWKV_KERNELS`
//! take. What each variant measured is in BENCHMARKS.md.

/// Which variant of the kernels that have several a [`Graph`](crate::gpu::graph::Graph)
/// records. Every combination computes the same network (each is tested against the CPU
/// reference); they differ in speed, and `deltawkv bench --kernels` compares them in one run
/// (measurements: BENCHMARKS.md, the engine optimisation log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// `matmul_v4.wgsl` (vec4 storage, 8x4 outputs per thread) wherever the shapes and offsets
    /// are multiples of 4; `matmul.wgsl` otherwise or when off.
    pub matmul_v4: bool,
    /// `scan_vec4.wgsl` (state rows in vec4 registers) when the head size is a multiple of 4;
    /// the scalar `scan.wgsl` otherwise or when off.
    pub scan_vec4: bool,
    /// `scan_sg.wgsl` (each state row split over 4 lanes, subgroup reductions) for head size 32
    /// on devices with subgroups
    /// ([`GpuContext::has_subgroups`](crate::gpu::GpuContext::has_subgroups)); otherwise as
    /// `scan_vec4`.
    pub scan_subgroup: bool,
    /// With the subgroup scan: each token's y reduction travels with the next token's sa
    /// reduction (one vec2 shuffle pair per step instead of two scalar ones; the same sums in the
    /// same order). Default, as it measured faster on an H100 and within noise on lavapipe
    /// (BENCHMARKS.md, optimisation log entry 13); `sg-serial` turns it off.
    pub scan_pipelined: bool,
    /// With the subgroup scan: the lanes each state row is split over in the whole-scan and
    /// segment-output passes (ROLE 0 and 2 of `scan_sg.wgsl`): 4 (two vec4 registers a thread,
    /// the default) or 8 (one, twice the threads, one more shuffle round; `sg8`, where the
    /// subgroups have at least 8 lanes). Opt-in until measured on the target GPU.
    pub scan_lanes: u32,
    /// The four scan directions in one dispatch over the shared state buffer (grid z =
    /// direction; they run concurrently) instead of one dispatch per direction (which the GPU
    /// runs one after the other: each writes the shared output and state buffers, so wgpu puts
    /// a barrier between them). Identical results; the default, as it measured faster on an
    /// H100 at every batch size (BENCHMARKS.md, optimisation log entry 7).
    pub fused_scan: bool,
    /// `scan_chunk.wgsl` (the chunked WY / DPLR form: 16 tokens per sequential step, one
    /// workgroup of 256 threads per scan, state padded to 32 x 32) for head sizes up to 32
    /// where the adapter allows 256 invocations and [`SCAN_CHUNK_BYTES`] of workgroup memory;
    /// otherwise as the flags above.
    /// Opt-in (`chunked`) until measured on the target GPU.
    pub scan_chunked: bool,
    /// `layer_norm_rows.wgsl` (one row of up to 32 threads per token, coalesced loads, the
    /// channels kept in registers, tree reductions in workgroup memory) for up to
    /// [`LAYER_NORM_ROWS_MAX_C`] channels; the one-thread-per-token `layer_norm.wgsl` otherwise
    /// or when off. Default, as it measured faster on an H100 and within noise of the old
    /// kernel on lavapipe (BENCHMARKS.md, optimisation log entry 12); `ln-tokens` turns it off.
    pub layer_norm_rows: bool,
    /// `matmul_coop.wgsl` (tensor cores: cooperative 16x16x16 matrices, f16 inputs, f32
    /// accumulation) where the device was created for it
    /// ([`GpuContext::tensor_core_subgroup`](crate::gpu::GpuContext::tensor_core_subgroup)) and
    /// K is a multiple of 16; otherwise as `matmul_v4`. Not exact: the inputs are rounded to f16
    /// (about 3 significant digits), so it has its own bound against the f32 kernels
    /// (tests/gpu/coop.rs). Opt-in (`coop`) until measured on the target GPU.
    pub matmul_coop: bool,
    /// Segmented subgroup scans (`scan_sg.wgsl` ROLE 1 / 2 with `scan_carry.wgsl`): with few
    /// images, each scan is cut into segments that run in parallel, joined by one N x N product
    /// per segment (about 3x the arithmetic of the scan, a fraction of its sequential steps).
    pub scan_segments: ScanSegments,
}

/// When the subgroup scan is cut into segments ([`KernelOptions::scan_segments`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanSegments {
    /// [`ScanSegments::Workgroups`] with [`SCAN_SEGMENT_WORKGROUPS`] on GPUs; off on CPU
    /// adapters (lavapipe), where the extra arithmetic is not paid back by idle hardware.
    Auto,
    /// Never (`seg-off`).
    Off,
    /// Enough segments that the scan dispatch has about this many workgroups (images x heads x
    /// directions x segments, at most [`SCAN_SEGMENT_MAX_WORKGROUPS`]), each segment at least
    /// [`SCAN_SEGMENT_MIN_LEN`] tokens; no segments where that gives fewer than 2 (`seg<N>`).
    Workgroups(u32),
    /// Segments of this many tokens, within the same workgroup bound (`seglen<N>`; for tests
    /// and measurements).
    Length(u32),
}

/// The workgroup count [`ScanSegments::Auto`] aims at on a GPU.
pub const SCAN_SEGMENT_WORKGROUPS: u32 = 1024;
/// Most scan workgroups a segmented scan may have: bounds its scratch
/// (2 N x N matrices each).
pub const SCAN_SEGMENT_MAX_WORKGROUPS: u32 = 2048;
/// Fewest tokens in a segment under [`ScanSegments::Workgroups`].
pub const SCAN_SEGMENT_MIN_LEN: u32 = 64;

/// Most channels `layer_norm_rows.wgsl` handles (8 registers per thread, rows of 32 lanes).
pub const LAYER_NORM_ROWS_MAX_C: u32 = 256;

/// Workgroup memory of `scan_chunk.wgsl` (state padded to 32 x 32, chunks of 16): 5808 f32.
pub const SCAN_CHUNK_BYTES: u32 = 5808 * 4;

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            matmul_v4: true,
            scan_vec4: true,
            scan_subgroup: true,
            scan_pipelined: true,
            scan_lanes: 4,
            fused_scan: true,
            scan_chunked: false,
            layer_norm_rows: true,
            matmul_coop: false,
            scan_segments: ScanSegments::Auto,
        }
    }
}

impl KernelOptions {
    /// The kernels of the first engine (before the performance work): scalar-storage matmul,
    /// one scan dispatch per direction.
    pub const BASELINE: Self = Self {
        matmul_v4: false,
        scan_vec4: true,
        scan_subgroup: false,
        scan_pipelined: false,
        scan_lanes: 4,
        fused_scan: false,
        scan_chunked: false,
        layer_norm_rows: false,
        matmul_coop: false,
        scan_segments: ScanSegments::Off,
    };

    /// Parses a variant name: `default` (also `fused`), `per-direction` (default kernels with one
    /// scan dispatch per direction), `vec4-scan` (default kernels without the subgroup scan),
    /// `baseline`, `scalar-scan` (default kernels with the scalar scan), `chunked` (default kernels
    /// with the chunked scan, fused directions), `chunked-per-direction`, `ln-rows` / `ln-tokens`
    /// (the coalesced / the one-thread-per-token LayerNorm), `sg-pipe` / `sg-serial` (the
    /// pipelined / the unpipelined subgroup scan), `sg4` / `sg8` (state rows over 4 / 8 lanes),
    /// `coop` (the tensor-core matrix product),
    /// `seg-auto` / `seg-off` / `seg<N>` /
    /// `seglen<N>` (when the subgroup scan is cut into segments, [`ScanSegments`]). Names
    /// combine with `+`, each applied in turn
    /// to the default kernels: `ln-tokens+sg-serial` gives the kernels that were the default
    /// before the coalesced LayerNorm and the pipelined scan.
    pub fn from_name(name: &str) -> Option<Self> {
        let mut k = Self::default();
        for part in name.split('+') {
            k = Self::apply(part.trim(), k)?;
        }
        Some(k)
    }

    /// One name of [`KernelOptions::from_name`] applied to `k`.
    fn apply(name: &str, k: Self) -> Option<Self> {
        match name {
            "default" | "fused" => Some(Self::default()),
            "baseline" => Some(Self::BASELINE),
            "per-direction" => Some(Self {
                fused_scan: false,
                ..k
            }),
            "vec4-scan" => Some(Self {
                scan_subgroup: false,
                ..k
            }),
            "scalar-scan" => Some(Self {
                scan_vec4: false,
                scan_subgroup: false,
                ..k
            }),
            "chunked" => Some(Self {
                scan_chunked: true,
                ..k
            }),
            "chunked-per-direction" => Some(Self {
                scan_chunked: true,
                fused_scan: false,
                ..k
            }),
            "ln-rows" => Some(Self {
                layer_norm_rows: true,
                ..k
            }),
            "ln-tokens" => Some(Self {
                layer_norm_rows: false,
                ..k
            }),
            "sg-pipe" => Some(Self {
                scan_pipelined: true,
                ..k
            }),
            "sg-serial" => Some(Self {
                scan_pipelined: false,
                ..k
            }),
            "sg4" => Some(Self { scan_lanes: 4, ..k }),
            "sg8" => Some(Self { scan_lanes: 8, ..k }),
            "coop" => Some(Self {
                matmul_coop: true,
                ..k
            }),
            "seg-auto" => Some(Self {
                scan_segments: ScanSegments::Auto,
                ..k
            }),
            "seg-off" => Some(Self {
                scan_segments: ScanSegments::Off,
                ..k
            }),
            _ => {
                let number = |prefix: &str| {
                    name.strip_prefix(prefix)
                        .and_then(|n| n.parse::<u32>().ok())
                        .filter(|&n| n > 0)
                };
                if let Some(n) = number("seglen") {
                    Some(Self {
                        scan_segments: ScanSegments::Length(n),
                        ..k
                    })
                } else {
                    number("seg").map(|n| Self {
                        scan_segments: ScanSegments::Workgroups(n),
                        ..k
                    })
                }
            }
        }
    }

    /// The names [`KernelOptions::from_name`] accepts (alone or joined with `+`).
    pub const NAMES: [&'static str; 19] = [
        "default",
        "fused",
        "per-direction",
        "vec4-scan",
        "baseline",
        "scalar-scan",
        "chunked",
        "chunked-per-direction",
        "ln-rows",
        "ln-tokens",
        "sg-pipe",
        "sg-serial",
        "sg4",
        "sg8",
        "coop",
        "seg-auto",
        "seg-off",
        "seg1024",
        "seglen256",
    ];
}

#[cfg(test)]
mod tests {
    use super::{KernelOptions, ScanSegments};

    #[test]
    fn kernel_names_combine_with_plus() {
        let d = KernelOptions::default();
        for name in KernelOptions::NAMES {
            assert!(KernelOptions::from_name(name).is_some(), "{name}");
        }
        let k = KernelOptions::from_name("ln-tokens+sg-serial").unwrap();
        assert!(!k.layer_norm_rows && !k.scan_pipelined);
        assert_eq!(
            KernelOptions {
                layer_norm_rows: true,
                scan_pipelined: true,
                ..k
            },
            d
        );
        assert_eq!(KernelOptions::from_name("ln-rows+sg-pipe"), Some(d));
        // each name applies to what the names before it gave; `default` starts again
        let k = KernelOptions::from_name("per-direction + chunked").unwrap();
        assert!(!k.fused_scan && k.scan_chunked);
        assert_eq!(KernelOptions::from_name("ln-tokens+default"), Some(d));
        assert_eq!(
            KernelOptions::from_name("baseline+sg-pipe").map(|k| k.matmul_v4),
            Some(false)
        );
        assert_eq!(KernelOptions::from_name("ln-rows+nope"), None);
        assert_eq!(KernelOptions::from_name(""), None);
        let k = KernelOptions::from_name("seg512+sg-serial").unwrap();
        assert_eq!(k.scan_segments, ScanSegments::Workgroups(512));
        assert_eq!(
            KernelOptions::from_name("seglen40").map(|k| k.scan_segments),
            Some(ScanSegments::Length(40))
        );
        assert_eq!(
            KernelOptions::from_name("seglen40+seg-off").map(|k| k.scan_segments),
            Some(ScanSegments::Off)
        );
        for bad in ["seg0", "seglen0", "seg", "seglen", "seg-1", "segx"] {
            assert_eq!(KernelOptions::from_name(bad), None, "{bad}");
        }
    }
}
