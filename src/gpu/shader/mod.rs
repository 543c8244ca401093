//! The kernels' shader side, free of graphs and devices: the kernel table and the variant key
//! (what a graph records and the pipeline cache is keyed by), the kernel options (which variant
//! of the kernels that have several a graph records), and the WGSL source of each variant (template
//! constants prepended, `//!include` lines resolved from `shaders/common/`).
//!
//! - [`key`]: the kernel table ([`Kind`]), the variant key ([`KernelKey`]) and its source, the
//!   parameter slot size ([`PARAM_BYTES`]);
//! - [`options`]: the kernel options ([`KernelOptions`]);
//! - [`wgsl`]: includes and generated lines.

pub mod key;
pub mod options;
pub mod wgsl;

pub use key::{KernelKey, Kind, PARAM_BYTES};
pub use options::{
    KernelOptions, LAYER_NORM_ROWS_MAX_C, SCAN_CHUNK_BYTES, SCAN_SEGMENT_MAX_WORKGROUPS,
    SCAN_SEGMENT_MIN_LEN, SCAN_SEGMENT_WORKGROUPS, ScanSegments,
};
