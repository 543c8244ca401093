//! The WGSL engine on a real wgpu device (Mesa's lavapipe in CI): every kernel and the whole
//! network against the CPU reference and the PyTorch goldens, the measurements behind `bench`,
//! and `deltawkv upscale`/`bench` on the GPU.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod coop;
mod kernels;
mod measure;
mod network;
#[cfg(target_os = "linux")] // /proc and prlimit
mod oom;
mod scan;
mod shipped;
