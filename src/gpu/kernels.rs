//! The WGSL kernels' host side: shader sources, variants by template constants, the pipeline
//! cache, and one function per kernel that appends a dispatch to a [`Graph`] (computing its
//! parameter block and grid).
//!
//! Variants: each shader reads its tile sizes and switches (activation, residual accumulation,
//! pixel shuffle...) from `const` declarations that are prepended to the source
//! ([`KernelKey::source`]), so one WGSL file gives every variant; pipelines are compiled once per
//! key and cached in the [`GpuContext`].

use std::sync::Arc;

use crate::engine::EngineError;

use super::context::GpuContext;
use super::graph::{BufId, Graph, View};

const COMMON: &str = include_str!("../../shaders/common.wgsl");
/// Prepended to the scan kernels after [`COMMON`]: parameters, bindings, scan orders.
const SCAN_COMMON: &str = include_str!("../../shaders/scan_common.wgsl");

/// The kernels (one WGSL file each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Conv3x3,
    Matmul,
    MatmulV4,
    LayerNorm,
    LayerNormRows,
    ShiftMix,
    AttPrep,
    Scan,
    ScanVec4,
    ScanSg,
    ScanChunk,
    Combine,
}

impl Kind {
    fn source(self) -> &'static str {
        match self {
            Kind::Conv3x3 => include_str!("../../shaders/conv3x3.wgsl"),
            Kind::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Kind::MatmulV4 => include_str!("../../shaders/matmul_v4.wgsl"),
            Kind::LayerNorm => include_str!("../../shaders/layer_norm.wgsl"),
            Kind::LayerNormRows => include_str!("../../shaders/layer_norm_rows.wgsl"),
            Kind::ShiftMix => include_str!("../../shaders/shift_mix.wgsl"),
            Kind::AttPrep => include_str!("../../shaders/att_prep.wgsl"),
            Kind::Scan => include_str!("../../shaders/scan.wgsl"),
            Kind::ScanVec4 => include_str!("../../shaders/scan_vec4.wgsl"),
            Kind::ScanSg => include_str!("../../shaders/scan_sg.wgsl"),
            Kind::ScanChunk => include_str!("../../shaders/scan_chunk.wgsl"),
            Kind::Combine => include_str!("../../shaders/combine.wgsl"),
        }
    }

    /// Storage bindings after the uniform at binding 0: `true` = read-only.
    pub(crate) fn storage_bindings(self) -> &'static [bool] {
        match self {
            Kind::Conv3x3
            | Kind::Matmul
            | Kind::MatmulV4
            | Kind::LayerNorm
            | Kind::LayerNormRows
            | Kind::ShiftMix => &[true, true, false],
            Kind::AttPrep => &[true, true, true, false, false],
            Kind::Scan | Kind::ScanVec4 | Kind::ScanSg | Kind::ScanChunk => {
                &[true, true, false, false]
            }
            Kind::Combine => &[true, true, true, true, true, false],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Conv3x3 => "conv3x3",
            Kind::Matmul => "matmul",
            Kind::MatmulV4 => "matmul_v4",
            Kind::LayerNorm => "layer_norm",
            Kind::LayerNormRows => "layer_norm_rows",
            Kind::ShiftMix => "shift_mix",
            Kind::AttPrep => "att_prep",
            Kind::Scan => "scan",
            Kind::ScanVec4 => "scan_vec4",
            Kind::ScanSg => "scan_sg",
            Kind::ScanChunk => "scan_chunk",
            Kind::Combine => "combine",
        }
    }
}

/// Which variant of the kernels that have several a [`Graph`] records. Every combination computes
/// the same network (each is tested against the CPU reference); they differ in speed, and
/// `deltawkv bench --kernels` compares them in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// `matmul_v4.wgsl` (vec4 storage, 8x4 outputs per thread) wherever the shapes and offsets
    /// are multiples of 4; `matmul.wgsl` otherwise or when off.
    pub matmul_v4: bool,
    /// `scan_vec4.wgsl` (state rows in vec4 registers) when the head size is a multiple of 4;
    /// the scalar `scan.wgsl` otherwise or when off.
    pub scan_vec4: bool,
    /// `scan_sg.wgsl` (each state row split over 4 lanes, subgroup reductions) for head size 32
    /// on devices with subgroups ([`GpuContext::has_subgroups`]); otherwise as `scan_vec4`.
    pub scan_subgroup: bool,
    /// With the subgroup scan: each token's y reduction travels with the next token's sa
    /// reduction (one vec2 shuffle pair per step instead of two scalar ones; the same sums in the
    /// same order). Default: on an H100 the scan took 7% less time (254 against 274 ms per
    /// batch of 32 x2 128x128 slices); on lavapipe within run-to-run noise (BENCHMARKS.md);
    /// `sg-serial` turns it off.
    pub scan_pipelined: bool,
    /// The four scan directions in one dispatch over the shared state buffer (grid z =
    /// direction; they run concurrently) instead of one dispatch per direction (which the GPU
    /// runs one after the other: each writes the shared output and state buffers, so wgpu puts
    /// a barrier between them). Measured on an H100 (BENCHMARKS.md): 3.3x faster at batch 1 and
    /// 1.6x on a 150-slice volume, with identical results; hence the default.
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
    /// or when off. Default: on an H100 it took the 128x128 x2 volume from 17.83 to 15.74
    /// ms/slice (the 50 LayerNorms: 80.5 down to 14.7 ms per batch of 32); on lavapipe within
    /// run-to-run noise of the old kernel overall (BENCHMARKS.md); `ln-tokens` turns it off.
    pub layer_norm_rows: bool,
}

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
            fused_scan: true,
            scan_chunked: false,
            layer_norm_rows: true,
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
        fused_scan: false,
        scan_chunked: false,
        layer_norm_rows: false,
    };

    /// Parses a variant name: `default` (also `fused`), `per-direction` (default kernels with one
    /// scan dispatch per direction), `vec4-scan` (default kernels without the subgroup scan),
    /// `baseline`, `scalar-scan` (default kernels with the scalar scan), `chunked` (default kernels
    /// with the chunked scan, fused directions), `chunked-per-direction`, `ln-rows` / `ln-tokens`
    /// (the coalesced / the one-thread-per-token LayerNorm), `sg-pipe` / `sg-serial` (the
    /// pipelined / the unpipelined subgroup scan). Names combine with `+`, each applied in turn
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
            _ => None,
        }
    }

    /// The names [`KernelOptions::from_name`] accepts (alone or joined with `+`).
    pub const NAMES: [&'static str; 12] = [
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
    ];
}

/// A kernel variant: the kernel and its template constants (name, value), the pipeline cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    pub kind: Kind,
    pub consts: Vec<(&'static str, u32)>,
}

impl KernelKey {
    /// The WGSL source of this variant: its constants, the shared helpers, the kernel.
    pub fn source(&self) -> String {
        let mut s = String::new();
        for (name, value) in &self.consts {
            s.push_str(&format!("const {name}: u32 = {value}u;\n"));
        }
        s.push_str(COMMON);
        if matches!(
            self.kind,
            Kind::Scan | Kind::ScanVec4 | Kind::ScanSg | Kind::ScanChunk
        ) {
            s.push_str(SCAN_COMMON);
        }
        match self.kind {
            Kind::ScanVec4 => s.push_str(&expand_scan_vec4(self.kind.source(), self.get("NV"))),
            _ => s.push_str(self.kind.source()),
        }
        s
    }

    /// Value of template constant `name` (0 when absent).
    fn get(&self, name: &str) -> u32 {
        self.consts
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Short name for profiles: the kernel and the constants that tell its uses apart.
    pub fn short_label(&self) -> String {
        let mut s = self.kind.name().to_string();
        for (n, v) in &self.consts {
            if matches!(
                *n,
                "ACT" | "ACCUM" | "LEAKY" | "SHUFFLE" | "NMIX" | "FIRST" | "CO_T" | "CI_T"
            ) {
                s.push_str(&format!(" {n}={v}"));
            }
        }
        s
    }

    fn label(&self) -> String {
        let mut s = self.kind.name().to_string();
        for (n, v) in &self.consts {
            s.push_str(&format!(" {n}={v}"));
        }
        s
    }
}

/// Sum of `terms` as a balanced tree (short dependency chains).
fn tree_sum(terms: &[String]) -> String {
    match terms {
        [] => "0.0".into(),
        [t] => t.clone(),
        _ => {
            let (a, b) = terms.split_at(terms.len() / 2);
            format!("({} + {})", tree_sum(a), tree_sum(b))
        }
    }
}

/// Expands the `// GENERATED:` lines of `scan_vec4.wgsl` for `nv` vec4 registers per state row.
fn expand_scan_vec4(src: &str, nv: u32) -> String {
    let idx: Vec<u32> = (0..nv).collect();
    let decl: String = idx
        .iter()
        .map(|q| format!("    var s{q} = vec4<f32>(0.0);\n"))
        .collect();
    let dots = |arr: u32| -> Vec<String> {
        idx.iter()
            .map(|q| format!("dot(s{q}, sh[o + {}u])", arr * nv + q))
            .collect()
    };
    let sa = format!("            let sa = {};\n", tree_sum(&dots(2)));
    let update: String = idx
        .iter()
        .map(|q| {
            format!(
                "            s{q} = s{q} * sh[o + {}u] + sa * sh[o + {}u] + vi * sh[o + {}u];\n",
                nv + q,
                3 * nv + q,
                4 * nv + q
            )
        })
        .collect();
    let y = format!("            let y = {};\n", tree_sum(&dots(0)));
    let store: String = idx
        .iter()
        .flat_map(|q| (0..4).map(move |c| format!("    state[so + {}u] = s{q}[{c}];\n", 4 * q + c)))
        .collect();
    let mut out = String::with_capacity(src.len() + 4096);
    for line in src.lines() {
        match line.trim() {
            "// GENERATED: state declarations" => out.push_str(&decl),
            "// GENERATED: sa" => out.push_str(&sa),
            "// GENERATED: update" => out.push_str(&update),
            "// GENERATED: y" => out.push_str(&y),
            "// GENERATED: state store" => out.push_str(&store),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// A compiled pipeline and its bind group layout.
pub struct PipelineEntry {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Size in bytes of each dispatch's parameter block (one dynamic-offset slot).
pub const PARAM_BYTES: u64 = 256;

impl GpuContext {
    /// The pipeline of a kernel variant, compiled on first use and cached.
    pub fn pipeline(&self, key: &KernelKey) -> Result<Arc<PipelineEntry>, EngineError> {
        if let Ok(map) = self.pipelines.lock()
            && let Some(p) = map.get(key)
        {
            return Ok(p.clone());
        }
        let entry = Arc::new(self.scoped(|| self.compile(key))?);
        if let Ok(mut map) = self.pipelines.lock() {
            map.insert(key.clone(), entry.clone());
        }
        Ok(entry)
    }

    fn compile(&self, key: &KernelKey) -> PipelineEntry {
        let label = key.label();
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, &read_only) in key.kind.storage_bindings().iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        // Bounds checks stay on (a kernel can never touch memory outside its bindings). The two
        // checks turned off cost a lot in hot loops and are guaranteed by construction:
        // - loop bounding: every loop of these kernels runs to a bound taken from a constant or
        //   a parameter block, so none is infinite;
        // - integer division guards: every divisor is a template constant or a size the launch
        //   functions below derive from non-empty shapes (a launch with an empty dimension has
        //   no workgroups and is skipped by `Graph::dispatch`).
        let mut checks = wgpu::ShaderRuntimeChecks::checked();
        checks.force_loop_bounding = false;
        checks.int_div_checks = false;
        // SAFETY: see the two guarantees above; the shaders are this crate's own sources.
        let module = unsafe {
            self.device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: wgpu::ShaderSource::Wgsl(key.source().into()),
                },
                checks,
            )
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            });
        PipelineEntry { pipeline, layout }
    }
}

// ---------------------------------------------------------------------------------------------
// Launch helpers
// ---------------------------------------------------------------------------------------------

/// Workgroup grid for `n` workgroups of a 1-D launch, spread over x and y.
pub fn grid_1d(n: u32, max_dim: u32) -> [u32; 2] {
    if n <= max_dim {
        [n.max(1), 1]
    } else {
        [max_dim, n.div_ceil(max_dim)]
    }
}

fn f(x: f32) -> u32 {
    x.to_bits()
}

/// Converts a size to `u32`, the index type of the kernels.
pub fn u32_of(n: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(n).map_err(|_| {
        EngineError::Other(format!(
            "{what} ({n}) exceeds the 32-bit index range of the kernels"
        ))
    })
}

/// Activation fused into a matrix product's epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None = 0,
    Tanh = 1,
    Sigmoid = 2,
    ReluSquared = 3,
}

/// 3x3 convolution (see `shaders/conv3x3.wgsl`). Images are NHWC.
#[derive(Clone, Copy, Debug)]
pub struct ConvArgs {
    pub src: View,
    pub weights: BufId,
    /// Offset of the packed weights `[9][c_in][c_out]`.
    pub w_off: u32,
    /// Offset of the bias `[c_out]`.
    pub b_off: u32,
    pub dst: View,
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub cin: u32,
    pub cout: u32,
    /// Add the previous destination value (residual connection).
    pub accumulate: bool,
    /// LeakyReLU slope applied last.
    pub leaky: Option<f32>,
    /// Write through PixelShuffle(2): the destination is `2H x 2W x c_out/4`.
    pub shuffle: bool,
}

/// Matrix product `Y[z] (+)= act(X[z] W[z])` for `z < batch_z` (see `shaders/matmul.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct MatmulArgs {
    pub x: View,
    pub x_zs: u32,
    pub w: View,
    pub w_zs: u32,
    pub y: View,
    pub y_zs: u32,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch_z: u32,
    pub act: Act,
    pub accumulate: bool,
}

/// LayerNorm of `m` tokens of `c` channels.
#[derive(Clone, Copy, Debug)]
pub struct LayerNormArgs {
    pub x: View,
    pub y: View,
    pub weights: BufId,
    pub w_off: u32,
    pub b_off: u32,
    pub m: u32,
    pub c: u32,
    pub eps: f32,
}

/// 2-D token shift and `nmix` interpolations (see `shaders/shift_mix.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct ShiftMixArgs {
    pub x: View,
    pub y: View,
    /// Distance between consecutive outputs in `y`.
    pub y_zs: u32,
    pub weights: BufId,
    /// Offset of the `nmix` consecutive mu vectors.
    pub mu_off: u32,
    pub nmix: u32,
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub c: u32,
    pub head_size: u32,
}

/// The fused decay / learning rate / value residual / keys kernel (see `shaders/att_prep.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct AttPrepArgs {
    pub proj: BufId,
    pub k_off: u32,
    pub v_off: u32,
    pub lora: BufId,
    pub wu_off: u32,
    pub au_off: u32,
    /// Offset of the value LoRA output (ignored in block 0).
    pub vu_off: u32,
    pub weights: BufId,
    pub w0_off: u32,
    pub a0_off: u32,
    /// Offset of `v0` (ignored in block 0).
    pub v0_off: u32,
    pub kk_off: u32,
    pub ka_off: u32,
    pub outs: BufId,
    pub lam_off: u32,
    pub kneg_off: u32,
    pub kb_off: u32,
    pub kt_off: u32,
    pub vo_off: u32,
    pub vfirst: View,
    /// Block 0: writes `v_first = v` instead of applying the value residual.
    pub first: bool,
    pub m: u32,
    pub c: u32,
    pub head_size: u32,
}

/// One scan direction of the delta-rule recurrence (see `shaders/scan.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct ScanArgs {
    pub ins: BufId,
    pub lam_off: u32,
    pub kneg_off: u32,
    pub kb_off: u32,
    pub kt_off: u32,
    pub v_off: u32,
    pub r: View,
    pub y: View,
    /// Where the final `[batch][heads][N][N]` states of this direction go.
    pub state: View,
    pub batch: u32,
    pub height: u32,
    pub width: u32,
    pub c: u32,
    pub head_size: u32,
    /// Scan direction 0..4 (spec table).
    pub dir: u32,
}

/// Sum of directions, GroupNorm, bonus and gate (see `shaders/combine.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct CombineArgs {
    pub ydir: View,
    pub y_zs: u32,
    pub ins: BufId,
    pub kt_off: u32,
    pub v_off: u32,
    pub r: View,
    pub gate: View,
    pub weights: BufId,
    pub rk_off: u32,
    pub gw_off: u32,
    pub gb_off: u32,
    pub out: View,
    pub m: u32,
    pub c: u32,
    pub head_size: u32,
    pub eps: f32,
}

/// Rows of N threads per workgroup for the per-(token, head) kernels.
fn rows_for(n: u32) -> u32 {
    (128 / n).max(1)
}

fn check_head_size(ctx_max: u32, n: u32) -> Result<(), EngineError> {
    if n == 0 || n > ctx_max.min(256) {
        return Err(EngineError::Other(format!(
            "head size {n} is not supported by the GPU kernels (1..={})",
            ctx_max.min(256)
        )));
    }
    Ok(())
}

impl Graph {
    /// Appends a 3x3 convolution.
    pub fn conv3x3(&mut self, a: &ConvArgs) -> Result<(), EngineError> {
        let (tw, th) = (8u32, 8u32);
        let ci_t = a.cin.clamp(1, 8);
        let (co_t, px_pt, co_pt) = if a.cout <= 4 {
            (4u32, 1u32, 4u32)
        } else {
            (32, 4, 4)
        };
        let npg = tw * th / px_pt;
        let ncg = co_t / co_pt;
        let key = KernelKey {
            kind: Kind::Conv3x3,
            consts: vec![
                ("TW", tw),
                ("TH", th),
                ("CI_T", ci_t),
                ("CO_T", co_t),
                ("PX_PT", px_pt),
                ("CO_PT", co_pt),
                ("NPG", npg),
                ("NCG", ncg),
                ("WG", npg * ncg),
                ("IN_TILE", (th + 2) * (tw + 2) * ci_t),
                ("W_TILE", 9 * ci_t * co_t),
                ("ACC", px_pt * co_pt),
                ("ACCUM", a.accumulate as u32),
                ("LEAKY", a.leaky.is_some() as u32),
                ("SHUFFLE", a.shuffle as u32),
            ],
        };
        if a.shuffle && !a.cout.is_multiple_of(4) {
            return Err(EngineError::Other(format!(
                "pixel shuffle needs a multiple of 4 channels, got {}",
                a.cout
            )));
        }
        let tiles_x = a.width.div_ceil(tw);
        let tiles_y = a.height.div_ceil(th);
        let co_tiles = a.cout.div_ceil(co_t);
        let params = vec![
            a.batch,
            a.height,
            a.width,
            a.cin,
            a.cout,
            a.src.off,
            a.w_off,
            a.b_off,
            a.dst.off,
            tiles_x,
            tiles_y,
            co_tiles,
            f(a.leaky.unwrap_or(0.0)),
        ];
        let [gx, gy] = grid_1d(tiles_x * tiles_y, self.max_groups());
        let gz = a.batch * co_tiles;
        let px = u64::from(a.batch) * u64::from(a.height) * u64::from(a.width);
        let (cin, cout) = (u64::from(a.cin), u64::from(a.cout));
        self.count_traffic(
            px * cin + 9 * cin * cout + cout + px * cout * (1 + a.accumulate as u64),
        );
        self.dispatch(
            key,
            vec![a.src.buf, a.weights, a.dst.buf],
            params,
            [gx, gy, gz],
        )
    }

    /// Appends a (batched) matrix product.
    pub fn matmul(&mut self, a: &MatmulArgs) -> Result<(), EngineError> {
        let aligned = [a.k, a.n, a.x.off, a.x_zs, a.w.off, a.w_zs, a.y.off, a.y_zs]
            .iter()
            .all(|v| v.is_multiple_of(4));
        let v4 = self.kernels.matmul_v4 && aligned;
        let (kind, bm, bn, bk, wg) = if v4 {
            let bn = if a.n.is_multiple_of(96) {
                96
            } else if a.n.is_multiple_of(64) {
                64
            } else {
                32
            };
            (Kind::MatmulV4, 128u32, bn, 16u32, (128 / 8) * (bn / 4))
        } else {
            (Kind::Matmul, 64u32, 32u32, 16u32, (64 / 4) * (32 / 4))
        };
        let key = KernelKey {
            kind,
            consts: vec![
                ("BM", bm),
                ("BN", bn),
                ("BK", bk),
                ("WG", wg),
                ("ACT", a.act as u32),
                ("ACCUM", a.accumulate as u32),
            ],
        };
        let tiles_n = a.n.div_ceil(bn);
        let tiles = a.m.div_ceil(bm) * tiles_n;
        let params = vec![
            a.m, a.n, a.k, a.x.off, a.x_zs, a.w.off, a.w_zs, a.y.off, a.y_zs, tiles_n, tiles,
        ];
        let [gx, gy] = grid_1d(tiles, self.max_groups());
        let (m, n, k, z) = (
            u64::from(a.m),
            u64::from(a.n),
            u64::from(a.k),
            u64::from(a.batch_z),
        );
        let w_copies = if a.w_zs == 0 { 1 } else { z };
        self.count_traffic(z * (m * k + m * n * (1 + a.accumulate as u64)) + w_copies * k * n);
        self.dispatch(
            key,
            vec![a.x.buf, a.w.buf, a.y.buf],
            params,
            [gx, gy, a.batch_z],
        )
    }

    /// Appends a LayerNorm: `layer_norm_rows.wgsl` when [`KernelOptions::layer_norm_rows`] is on
    /// and `a.c` is at most [`LAYER_NORM_ROWS_MAX_C`], `layer_norm.wgsl` otherwise.
    pub fn layer_norm(&mut self, a: &LayerNormArgs) -> Result<(), EngineError> {
        let rows_kernel = self.kernels.layer_norm_rows
            && (1..=LAYER_NORM_ROWS_MAX_C).contains(&a.c)
            && self.max_invocations() >= 128;
        let (key, groups) = if rows_kernel {
            // Rows of up to 32 lanes (a power of 2, no wider than the channels), 128 threads.
            let r = a.c.next_power_of_two().min(32);
            let rows = 128 / r;
            let key = KernelKey {
                kind: Kind::LayerNormRows,
                consts: vec![
                    ("R", r),
                    ("ROWS", rows),
                    ("WG", r * rows),
                    ("K", a.c.div_ceil(r)),
                ],
            };
            (key, a.m.div_ceil(rows))
        } else {
            let wg = 64u32;
            let key = KernelKey {
                kind: Kind::LayerNorm,
                consts: vec![("WG", wg)],
            };
            (key, a.m.div_ceil(wg))
        };
        let params = vec![a.m, a.c, a.x.off, a.y.off, a.w_off, a.b_off, f(a.eps)];
        self.count_traffic(2 * u64::from(a.m) * u64::from(a.c) + 2 * u64::from(a.c));
        let [gx, gy] = grid_1d(groups, self.max_groups());
        self.dispatch(key, vec![a.x.buf, a.weights, a.y.buf], params, [gx, gy, 1])
    }

    /// Appends a token shift with interpolations.
    pub fn shift_mix(&mut self, a: &ShiftMixArgs) -> Result<(), EngineError> {
        let wg = 256u32;
        let key = KernelKey {
            kind: Kind::ShiftMix,
            consts: vec![("WG", wg), ("NMIX", a.nmix)],
        };
        let total = a
            .batch
            .checked_mul(a.height * a.width * a.c)
            .ok_or_else(|| EngineError::Other("shift_mix: size overflows 32 bits".into()))?;
        let params = vec![
            total,
            a.height,
            a.width,
            a.c,
            a.head_size,
            a.x.off,
            a.y.off,
            a.y_zs,
            a.mu_off,
        ];
        let [gx, gy] = grid_1d(total.div_ceil(wg), self.max_groups());
        let nmix = u64::from(a.nmix);
        self.count_traffic(u64::from(total) * (1 + nmix) + nmix * u64::from(a.c));
        self.dispatch(key, vec![a.x.buf, a.weights, a.y.buf], params, [gx, gy, 1])
    }

    /// Appends the fused decay / keys / value residual kernel.
    pub fn att_prep(&mut self, a: &AttPrepArgs) -> Result<(), EngineError> {
        check_head_size(self.max_invocations(), a.head_size)?;
        let n = a.head_size;
        let rows = rows_for(n);
        let key = KernelKey {
            kind: Kind::AttPrep,
            consts: vec![
                ("N", n),
                ("ROWS", rows),
                ("WG", n * rows),
                ("FIRST", a.first as u32),
            ],
        };
        let heads = a.c / n;
        let pairs = a.m * heads;
        let params = vec![
            pairs,
            a.c,
            heads,
            a.k_off,
            a.v_off,
            a.wu_off,
            a.au_off,
            a.vu_off,
            a.w0_off,
            a.a0_off,
            a.v0_off,
            a.kk_off,
            a.ka_off,
            a.lam_off,
            a.kneg_off,
            a.kb_off,
            a.kt_off,
            a.vo_off,
            a.vfirst.off,
        ];
        let [gx, gy] = grid_1d(pairs.div_ceil(rows), self.max_groups());
        // Reads k, v and the decay / learning-rate LoRA outputs (plus the value LoRA output and
        // v_first after block 0); writes lambda, -kk, kk * a, kt, v (plus v_first in block 0).
        let per_token = if a.first { 4 + 6 } else { 6 + 5 };
        self.count_traffic(u64::from(a.m) * u64::from(a.c) * per_token);
        self.dispatch(
            key,
            vec![a.proj, a.lora, a.weights, a.outs, a.vfirst.buf],
            params,
            [gx, gy, 1],
        )
    }

    /// Appends one direction of the delta-rule scan (`a.dir`).
    pub fn scan(&mut self, a: &ScanArgs) -> Result<(), EngineError> {
        self.scan_dirs(a, 1, 0, 0)
    }

    /// Appends all four directions of the delta-rule scan as one dispatch: direction `d` writes
    /// its output at `a.y + d * y_ds` and its final state at `a.state + d * s_ds` (`a.dir` is
    /// ignored).
    pub fn scan_fused(&mut self, a: &ScanArgs, y_ds: u32, s_ds: u32) -> Result<(), EngineError> {
        self.scan_dirs(a, 4, y_ds, s_ds)
    }

    /// Whether the adapter's limits allow `scan_chunk.wgsl` (256 invocations and
    /// [`SCAN_CHUNK_BYTES`] of workgroup memory); where not, [`KernelOptions::scan_chunked`]
    /// falls back to the other scan kernels.
    pub fn can_scan_chunked(&self) -> bool {
        self.max_invocations() >= 256 && self.max_workgroup_bytes() >= SCAN_CHUNK_BYTES
    }

    fn scan_dirs(
        &mut self,
        a: &ScanArgs,
        dirs: u32,
        y_ds: u32,
        s_ds: u32,
    ) -> Result<(), EngineError> {
        check_head_size(self.max_invocations(), a.head_size)?;
        let n = a.head_size;
        let key = if n <= 32 && self.kernels.scan_chunked && self.can_scan_chunked() {
            KernelKey {
                kind: Kind::ScanChunk,
                consts: vec![("N", n), ("CHUNK", 16), ("DIRS", dirs)],
            }
        } else if n == 32 && self.kernels.scan_subgroup && self.subgroups {
            // Six staged vectors per token, double-buffered; chunks of a multiple of 4 tokens.
            let chunk = (self.max_workgroup_bytes() / (2 * 4 * 6 * n)).clamp(4, 16) / 4 * 4;
            KernelKey {
                kind: Kind::ScanSg,
                consts: vec![
                    ("N", n),
                    ("NV", n / 4),
                    ("CHUNK", chunk),
                    ("DIRS", dirs),
                    ("PIPE", u32::from(self.kernels.scan_pipelined)),
                ],
            }
        } else if n.is_multiple_of(4) && self.kernels.scan_vec4 {
            // Six staged vectors per token, double-buffered; stay within the workgroup memory
            // limit.
            let chunk = (self.max_workgroup_bytes() / (2 * 4 * 6 * n)).clamp(1, 16);
            KernelKey {
                kind: Kind::ScanVec4,
                consts: vec![("N", n), ("NV", n / 4), ("CHUNK", chunk), ("DIRS", dirs)],
            }
        } else {
            let chunk = (self.max_workgroup_bytes() / (4 * 6 * n)).clamp(1, 16);
            KernelKey {
                kind: Kind::Scan,
                consts: vec![("N", n), ("CHUNK", chunk), ("DIRS", dirs)],
            }
        };
        let heads = a.c / n;
        let params = vec![
            a.height,
            a.width,
            a.c,
            heads,
            a.dir,
            a.r.off,
            a.lam_off,
            a.kneg_off,
            a.kb_off,
            a.kt_off,
            a.v_off,
            a.y.off,
            a.state.off,
            y_ds,
            s_ds,
        ];
        // Each direction reads the six per-token vectors and writes its output and final states.
        let tokens = u64::from(a.batch) * u64::from(a.height) * u64::from(a.width);
        let states = u64::from(a.batch) * u64::from(heads) * u64::from(n) * u64::from(n);
        self.count_traffic(u64::from(dirs) * (tokens * u64::from(a.c) * 7 + states));
        self.dispatch(
            key,
            vec![a.ins, a.r.buf, a.y.buf, a.state.buf],
            params,
            [heads, a.batch, dirs],
        )
    }

    /// Appends the combine kernel.
    pub fn combine(&mut self, a: &CombineArgs) -> Result<(), EngineError> {
        check_head_size(self.max_invocations(), a.head_size)?;
        let n = a.head_size;
        let rows = rows_for(n);
        let key = KernelKey {
            kind: Kind::Combine,
            consts: vec![("N", n), ("ROWS", rows), ("WG", n * rows)],
        };
        let heads = a.c / n;
        let pairs = a.m * heads;
        let params = vec![
            pairs,
            a.c,
            heads,
            a.ydir.off,
            a.y_zs,
            a.kt_off,
            a.v_off,
            a.r.off,
            a.gate.off,
            a.rk_off,
            a.gw_off,
            a.gb_off,
            a.out.off,
            f(a.eps),
        ];
        let [gx, gy] = grid_1d(pairs.div_ceil(rows), self.max_groups());
        // Reads the four directions' outputs, kt, v, r and the gate; writes the result.
        self.count_traffic(u64::from(a.m) * u64::from(a.c) * 9);
        self.dispatch(
            key,
            vec![a.ydir.buf, a.ins, a.r.buf, a.gate.buf, a.weights, a.out.buf],
            params,
            [gx, gy, 1],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::KernelOptions;

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
    }
}
