//! The kernel table ([`Kind`]: each kernel's WGSL file, bindings and name) and the kernel
//! variant ([`KernelKey`]: a kernel and its template constants), which a graph records and the
//! pipeline cache is keyed by, with its WGSL source.

use crate::engine::EngineError;

use super::wgsl;

/// The kernels (one WGSL file each, under `shaders/network/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Conv3x3,
    Matmul,
    MatmulV4,
    MatmulCoop,
    LayerNorm,
    LayerNormRows,
    ShiftMix,
    AttPrep,
    Scan,
    ScanVec4,
    ScanSg,
    ScanChunk,
    ScanCarry,
    Combine,
}

impl Kind {
    fn source(self) -> &'static str {
        match self {
            Kind::Conv3x3 => include_str!("../../../shaders/network/conv3x3.wgsl"),
            Kind::Matmul => include_str!("../../../shaders/network/matmul.wgsl"),
            Kind::MatmulV4 => include_str!("../../../shaders/network/matmul_v4.wgsl"),
            Kind::MatmulCoop => include_str!("../../../shaders/network/matmul_coop.wgsl"),
            Kind::LayerNorm => include_str!("../../../shaders/network/layer_norm.wgsl"),
            Kind::LayerNormRows => include_str!("../../../shaders/network/layer_norm_rows.wgsl"),
            Kind::ShiftMix => include_str!("../../../shaders/network/shift_mix.wgsl"),
            Kind::AttPrep => include_str!("../../../shaders/network/att_prep.wgsl"),
            Kind::Scan => include_str!("../../../shaders/network/scan.wgsl"),
            Kind::ScanVec4 => include_str!("../../../shaders/network/scan_vec4.wgsl"),
            Kind::ScanSg => include_str!("../../../shaders/network/scan_sg.wgsl"),
            Kind::ScanChunk => include_str!("../../../shaders/network/scan_chunk.wgsl"),
            Kind::ScanCarry => include_str!("../../../shaders/network/scan_carry.wgsl"),
            Kind::Combine => include_str!("../../../shaders/network/combine.wgsl"),
        }
    }

    /// Storage bindings after the uniform at binding 0: `true` = read-only.
    pub(crate) fn storage_bindings(self) -> &'static [bool] {
        match self {
            Kind::Conv3x3
            | Kind::Matmul
            | Kind::MatmulV4
            | Kind::MatmulCoop
            | Kind::LayerNorm
            | Kind::LayerNormRows
            | Kind::ShiftMix => &[true, true, false],
            Kind::AttPrep => &[true, true, true, false, false],
            Kind::Scan | Kind::ScanVec4 | Kind::ScanSg | Kind::ScanChunk | Kind::ScanCarry => {
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
            Kind::MatmulCoop => "matmul_coop",
            Kind::LayerNorm => "layer_norm",
            Kind::LayerNormRows => "layer_norm_rows",
            Kind::ShiftMix => "shift_mix",
            Kind::AttPrep => "att_prep",
            Kind::Scan => "scan",
            Kind::ScanVec4 => "scan_vec4",
            Kind::ScanSg => "scan_sg",
            Kind::ScanChunk => "scan_chunk",
            Kind::ScanCarry => "scan_carry",
            Kind::Combine => "combine",
        }
    }
}

/// Size in bytes of each dispatch's parameter block (one dynamic-offset slot).
pub const PARAM_BYTES: u64 = 256;

/// A kernel variant: the kernel and its template constants (name, value), the pipeline cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    pub kind: Kind,
    pub consts: Vec<(&'static str, u32)>,
}

impl KernelKey {
    /// The WGSL source of this variant: its constants, then the kernel with the shared pieces it
    /// includes spliced in.
    pub fn source(&self) -> Result<String, EngineError> {
        let kernel = wgsl::resolve_includes(self.kind.source())
            .map_err(|e| EngineError::Internal(format!("{}: {e}", self.kind.name())))?;
        // WGSL wants its `enable` directives before any declaration: they stay first
        let (enables, kernel): (Vec<&str>, Vec<&str>) = kernel
            .lines()
            .partition(|l| l.trim_start().starts_with("enable "));
        let mut s = String::new();
        for line in enables {
            s.push_str(line);
            s.push('\n');
        }
        for (name, value) in &self.consts {
            s.push_str(&format!("const {name}: u32 = {value}u;\n"));
        }
        let kernel = kernel.join("\n") + "\n";
        match self.kind {
            Kind::ScanVec4 => s.push_str(&wgsl::expand_scan_vec4(&kernel, self.get("NV"))),
            _ => s.push_str(&kernel),
        }
        Ok(s)
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
                "ACT" | "ACCUM" | "LEAKY" | "SHUFFLE" | "NMIX" | "FIRST" | "CO_T" | "CI_T" | "ROLE"
            ) {
                s.push_str(&format!(" {n}={v}"));
            }
        }
        s
    }

    /// Full name for wgpu labels: the kernel and all its constants.
    pub fn label(&self) -> String {
        let mut s = self.kind.name().to_string();
        for (n, v) in &self.consts {
            s.push_str(&format!(" {n}={v}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_vec4_source_is_expanded() {
        let src = KernelKey {
            kind: Kind::ScanVec4,
            consts: vec![("NV", 2)],
        }
        .source()
        .unwrap();
        assert!(src.starts_with("const NV: u32 = 2u;\n"));
        assert!(src.contains("fn linear_group") && src.contains("fn token_values"));
        assert!(src.contains("var s1 = vec4<f32>(0.0);") && !src.contains("// GENERATED:"));
        assert!(!src.contains("//!include"));
    }
}
