//! The viewer (cargo feature `viewer`): its state driven headless, the real window under Xvfb,
//! the display shader, UI snapshots through egui_kittest on lavapipe, and its numbers against
//! the command line's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../common/mod.rs"]
mod common;

mod display;
mod eval_agreement;
mod faults;
mod gpu_timing;
#[path = "../pacs/orthanc.rs"]
#[allow(dead_code)] // the PACS tests use more of the harness
mod orthanc;
mod render;
mod ui;
