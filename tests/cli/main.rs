//! The command line through the real binary: `info`, `convert`, `compare`, `eval`, `batch`, and its
//! faults (unwritable outputs, bad inputs, exit codes).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../common/mod.rs"]
mod common;

mod batch;
mod consistency;
mod dicom_out;
mod faults;
mod info;
mod install_layout;
mod metrics;
mod open;
mod version;
