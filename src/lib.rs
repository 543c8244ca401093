//! Delta-WKV: MRI super-resolution with an RWKV-7 style delta-rule network.
//!
//! Modules, one concern each:
//! - [`volume`]: NIfTI and DICOM reading, NIfTI writing, orientation and slicing.
//! - [`budget`]: the memory budget every loader checks before allocating.
//! - [`model`]: the network definition, checkpoint loading and the CPU reference forward pass.
//! - [`metrics`]: PSNR and SSIM.
//! - [`degrade`]: LR simulation (k-space truncation, bicubic) and the interpolation baselines.
//! - [`engine`]: the interface every backend offers, and backend selection.
//! - [`upscale`]: volume <-> network intensities and the upscaled output grid (CLI and viewer).
//! - [`gpu`]: the WGSL inference engine on wgpu.
//! - [`app`]: the egui viewer (the only module that knows egui).
//! - [`cli`]: the `deltawkv` command line.

pub mod app;
pub mod budget;
pub mod cli;
pub mod degrade;
pub mod engine;
pub mod gpu;
pub mod metrics;
pub mod model;
pub mod plane;
pub mod upscale;
pub mod volume;
