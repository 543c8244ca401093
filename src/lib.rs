//! Delta-WKV: MRI super-resolution with an RWKV-7 style delta-rule network.
//!
//! Modules, one concern each:
//! - [`volume`]: NIfTI and DICOM reading, NIfTI writing, orientation and slicing.
//! - [`budget`]: the memory budget every loader checks before allocating.
//! - [`model`]: the network definition, checkpoint loading and the CPU reference forward pass.
//! - [`metrics`]: PSNR and SSIM.
//! - [`degrade`]: LR simulation (k-space truncation, bicubic) and the interpolation baselines.
//! - [`consistency`]: data consistency of an SR with its k-space LR (projection and residual).
//! - [`engine`]: the interface every backend offers (a leaf: it knows neither engine).
//! - [`ensemble`]: the geometric self-ensemble (eight flips and transposes averaged) over any
//!   backend.
//! - [`upscale`]: volume <-> network intensities and the upscaled output grid (CLI and viewer).
//! - [`evaluation`]: the evaluation pipeline (normalise, crop, degrade, baselines, clamp, score)
//!   of `deltawkv eval` and the viewer's simulate mode.
//! - [`checkpoints`]: where checkpoints are found (`DELTAWKV_WEIGHTS_DIR`, `weights/` folders)
//!   and how they are loaded and checked.
//! - [`gpu`]: the WGSL inference engine on wgpu.
//! - [`backend`]: backend choice above both engines (CPU reference, GPU, by measurement) and the
//!   CPU fallback of a failing GPU.
//! - [`batch`]: batch mode over an archive (job lists, shards, the read/upscale/write pipeline).
//! - [`app`]: the egui viewer, the only module that knows egui (cargo feature `viewer`, default).
//! - [`cli`]: the `deltawkv` command line.

#[cfg(feature = "viewer")]
pub mod app;
pub mod backend;
pub mod batch;
pub mod budget;
pub mod checkpoints;
pub mod cli;
pub mod consistency;
pub mod degrade;
pub mod engine;
pub mod ensemble;
pub mod evaluation;
pub mod gpu;
pub mod metrics;
pub mod model;
pub mod pacs;
pub mod plane;
pub mod upscale;
pub mod volume;
