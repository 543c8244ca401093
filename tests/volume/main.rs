//! Volume I/O: every fixture, NIfTI headers byte by byte, DICOM cases, error variants,
//! malformed inputs, and NIfTI round trips.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../common/mod.rs"]
mod common;

mod derived;
mod dicom;
mod errors;
mod fixtures;
mod malformed;
mod nifti;
mod quirks;
mod roundtrip;
