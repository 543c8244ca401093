//! The WGSL kernels' host side: the kernel table, variants by template constants, and, one file
//! per family, each kernel's arguments, its parameter block (a `#[repr(C)]` struct mirroring the
//! shader's `struct Params`) and the function that appends its dispatch to a
//! [`Graph`](crate::gpu::graph::Graph) (computing the parameters and the grid).
//!
//! Variants: each shader reads its tile sizes and switches (activation, residual accumulation,
//! pixel shuffle...) from `const` declarations that are prepended to the source
//! ([`KernelKey::source`]), so one WGSL file gives every variant; the shared pieces under
//! `shaders/common/` are spliced in where a kernel includes them ([`crate::gpu::shader::wgsl`]). Pipelines are
//! compiled once per key and cached beside the context ([`crate::gpu::pipelines`]).
//!
//! The kernel table, the variant keys, the options and the WGSL sources live in
//! [`crate::gpu::shader`], below the pipeline cache and the context; this module is above them.
//!
//! - [`conv`], [`matmul`], [`norm`], [`mix`] (the spatial mix's elementwise kernels), [`scan`]:
//!   the families, each with its launch functions on [`Graph`](crate::gpu::graph::Graph).

use crate::engine::EngineError;

/// Declares a kernel's parameter block: a `#[repr(C)]` Pod struct whose fields mirror, in order
/// and type, the `struct Params` of its shader (checked against the shader source by this
/// module's tests), and that fits one parameter slot ([`PARAM_BYTES`]).
macro_rules! wgsl_params {
    ($(#[$meta:meta])* $name:ident { $($field:ident: $ty:ident),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub(super) struct $name {
            $($field: $ty,)*
        }

        impl $name {
            /// The fields' names and types, in order (for the layout test).
            #[cfg(test)]
            pub(super) const FIELDS: &[(&str, &str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }

        const _: () = assert!(std::mem::size_of::<$name>() <= super::PARAM_BYTES as usize);
    };
}

pub mod conv;
pub mod matmul;
pub mod mix;
pub mod norm;
pub mod scan;

pub use super::shader::{KernelKey, Kind, PARAM_BYTES};
pub use super::shader::{
    KernelOptions, LAYER_NORM_ROWS_MAX_C, SCAN_CHUNK_BYTES, SCAN_SEGMENT_MAX_WORKGROUPS,
    SCAN_SEGMENT_MIN_LEN, SCAN_SEGMENT_WORKGROUPS, ScanSegments,
};
pub use conv::ConvArgs;
pub use matmul::{Act, MatmulArgs};
pub use mix::{AttPrepArgs, CombineArgs, ShiftMixArgs};
pub use norm::LayerNormArgs;
pub use scan::ScanArgs;

/// Workgroup grid for `n` workgroups of a 1-D launch, spread over x and y.
pub fn grid_1d(n: u32, max_dim: u32) -> [u32; 2] {
    if n <= max_dim {
        [n.max(1), 1]
    } else {
        [max_dim, n.div_ceil(max_dim)]
    }
}

/// Converts a size to `u32`, the index type of the kernels.
pub fn u32_of(n: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(n).map_err(|_| {
        EngineError::Limit(format!(
            "{what} ({n}) exceeds the 32-bit index range of the kernels"
        ))
    })
}

/// Rows of N threads per workgroup for the per-(token, head) kernels.
fn rows_for(n: u32) -> u32 {
    (128 / n).max(1)
}

fn check_head_size(ctx_max: u32, n: u32) -> Result<(), EngineError> {
    if n == 0 || n > ctx_max.min(256) {
        return Err(EngineError::Checkpoint(format!(
            "head size {n} is not supported by the GPU kernels (1..={})",
            ctx_max.min(256)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameter block's fields (name, Rust type) and size of a kernel.
    fn params_of(kind: Kind) -> (&'static [(&'static str, &'static str)], usize) {
        use std::mem::size_of;
        match kind {
            Kind::Conv3x3 => (conv::ConvParams::FIELDS, size_of::<conv::ConvParams>()),
            Kind::Matmul | Kind::MatmulV4 | Kind::MatmulCoop => (
                matmul::MatmulParams::FIELDS,
                size_of::<matmul::MatmulParams>(),
            ),
            Kind::LayerNorm | Kind::LayerNormRows => (
                norm::LayerNormParams::FIELDS,
                size_of::<norm::LayerNormParams>(),
            ),
            Kind::ShiftMix => (
                mix::ShiftMixParams::FIELDS,
                size_of::<mix::ShiftMixParams>(),
            ),
            Kind::AttPrep => (mix::AttPrepParams::FIELDS, size_of::<mix::AttPrepParams>()),
            Kind::Combine => (mix::CombineParams::FIELDS, size_of::<mix::CombineParams>()),
            Kind::Scan | Kind::ScanVec4 | Kind::ScanSg | Kind::ScanChunk | Kind::ScanCarry => {
                (scan::ScanParams::FIELDS, size_of::<scan::ScanParams>())
            }
        }
    }

    /// The fields (name, type) of the `struct Params` of a WGSL source.
    fn wgsl_params(src: &str) -> Vec<(String, String)> {
        let start = src.find("struct Params {").expect("a struct Params");
        let body = &src[start + "struct Params {".len()..];
        let body = &body[..body.find('}').expect("the end of struct Params")];
        body.lines()
            .map(|l| l.split("//").next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (name, ty) = l.trim_end_matches(',').split_once(':').expect("name: type");
                (name.trim().to_string(), ty.trim().to_string())
            })
            .collect()
    }

    /// Size of a WGSL struct of 4-byte scalars (WGSL layout: each at its 4-byte alignment, the
    /// size rounded up to the struct's alignment, 4).
    fn wgsl_size(fields: &[(String, String)]) -> usize {
        for (name, ty) in fields {
            assert!(
                matches!(ty.as_str(), "u32" | "i32" | "f32"),
                "{name}: {ty} (teach wgsl_size the layout of vectors before using them)"
            );
        }
        4 * fields.len()
    }

    #[test]
    fn params_structs_mirror_the_shaders() {
        let kinds = [
            Kind::Conv3x3,
            Kind::Matmul,
            Kind::MatmulV4,
            Kind::MatmulCoop,
            Kind::LayerNorm,
            Kind::LayerNormRows,
            Kind::ShiftMix,
            Kind::AttPrep,
            Kind::Scan,
            Kind::ScanVec4,
            Kind::ScanSg,
            Kind::ScanChunk,
            Kind::ScanCarry,
            Kind::Combine,
        ];
        for kind in kinds {
            let src = KernelKey {
                kind,
                consts: vec![],
            }
            .source()
            .unwrap();
            let shader = wgsl_params(&src);
            let (fields, size) = params_of(kind);
            let rust: Vec<(String, String)> = fields
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect();
            assert_eq!(
                rust, shader,
                "{kind:?}: fields differ from the shader's Params"
            );
            assert_eq!(size, wgsl_size(&shader), "{kind:?}: size");
        }
    }
}
