//! The network and its numerics: checkpoint loading and every rejection, the CPU reference
//! against the PyTorch goldens, the degradations and metrics against their Python twins.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../common/mod.rs"]
mod common;

mod checkpoint;
mod cpu;
mod degrade_vectors;
mod golden;
mod malformed_checkpoint;
mod metrics_vectors;
