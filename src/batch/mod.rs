//! Batch mode (`deltawkv batch`): upscale a whole archive with one engine per process.
//!
//! [`jobs`] turns a folder (walked recursively: each NIfTI file and each DICOM series is one
//! job) or a manifest into a sorted job list with deterministic output names; [`shard`] splits
//! it among the tasks of a job array (`--shard I/N`, Slurm, Kubernetes Indexed Jobs);
//! [`pipeline`] reads and prepares volumes on CPU threads while the engine upscales, and writes
//! them through an [`output::OutputWriter`] (atomic, resumable: a job whose output exists is
//! skipped); each job ends as one [`pipeline::Record`].

pub mod jobs;
pub mod output;
pub mod pipeline;
pub mod shard;

use std::path::PathBuf;

pub use jobs::{Discovery, Job, Source};
pub use output::{DicomWriter, Encoded, NiftiWriter, OutputWriter};
pub use pipeline::{Config, Record, Stages, Status, Summary};
pub use shard::Shard;

/// Errors of building or running a batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The input folder or manifest cannot be used.
    #[error("{}: {detail}", path.display())]
    Input {
        /// The folder or manifest.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A shard specification (flag or environment) is malformed or out of range.
    #[error("{0}")]
    Shard(String),
    /// An output could not be encoded or written.
    #[error("{0}")]
    Output(String),
}
