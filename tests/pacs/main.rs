//! `deltawkv pacs` and `deltawkv::pacs` against a real Orthanc started per test on loopback
//! (`orthanc.rs`): echo, send, find (cross-checked with dcmtk's findscu), get by C-GET and by
//! C-MOVE (pixels and UIDs identical to the seeded files), and the failures (PACS down,
//! association rejected, refused C-STORE, silent port, cancelled retrieve), each a clear message
//! and exit code 1 with nothing half-written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod failures;
mod orthanc;
mod roundtrip;
mod tls;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A fixture folder.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(name)
}

/// The 7-slice MR series (patient 98890234, Doe^Peter, study date 20030505).
pub const TINY: &str = "dicom_series_tiny16";
pub const TINY_STUDY: &str = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.1";
pub const TINY_SERIES: &str = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.118";
/// The 8-slice oblique PD series (patient 123565, study date 20010316).
pub const PD: &str = "dicom_series_pd_oblique";
pub const PD_STUDY: &str = "0.0.0.0.2.8811.20010413115754.12432";
pub const PD_SERIES: &str = "0.0.0.0.3.8811.2.20010413115754.12432";

/// Runs the real binary.
pub fn deltawkv(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_deltawkv"))
        .args(args)
        .env_remove("DELTAWKV_LOG")
        .output()
        .expect("run deltawkv")
}

/// Its stdout as one JSON object (panics with stderr when it failed).
pub fn json_ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "deltawkv failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

/// Asserts exit code 1, no panic, and a message holding each of `needles`; returns stderr.
pub fn fails_with(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    for n in needles {
        assert!(
            stderr.to_lowercase().contains(&n.to_lowercase()),
            "stderr lacks `{n}`: {stderr}"
        );
    }
    stderr
}
