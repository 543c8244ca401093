//! The one fallback of a run whose backend fails on the device (no adapter, device lost, out of
//! memory even at batch 1): the run moves once to another backend (the CPU reference), and the
//! user is told in one wording. [`GpuWithFallback`] applies it inside an [`Upscaler`] (the
//! command line); the viewer's inference job applies [`Fallback`] slice by slice.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::engine::{EngineError, Progress, Upscaler};
use crate::gpu::GpuEngine;
use crate::model::Checkpoint;
use crate::plane::Plane;

/// Makes a backend for a checkpoint (the CPU reference, or the GPU engine on a given device).
pub type EngineFactory =
    Arc<dyn Fn(&Checkpoint) -> Result<Box<dyn Upscaler>, EngineError> + Send + Sync>;

/// The CPU reference as a factory: what a run falls back to when the GPU is absent or fails.
pub fn cpu_factory() -> EngineFactory {
    Arc::new(
        |checkpoint: &Checkpoint| -> Result<Box<dyn Upscaler>, EngineError> {
            Ok(Box::new(super::cpu_upscaler(checkpoint.clone())?))
        },
    )
}

/// Whether an engine error is the device's (no adapter, device lost, out of memory), after which
/// a run continues on the fallback backend.
pub fn is_device_failure(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::NoAdapter(_) | EngineError::Device(_) | EngineError::OutOfMemory(_)
    )
}

/// Why a run could not continue after a device failure.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    /// There is no fallback (the CPU was the choice already, or the run fell back before).
    #[error("{what}: {error}")]
    None { what: String, error: EngineError },
    /// The fallback backend could not start either.
    #[error("{what}: {error}; the fallback backend could not start either: {fallback}")]
    Failed {
        what: String,
        error: EngineError,
        fallback: EngineError,
    },
}

/// The backend a run moves to after a device failure, used at most once.
pub struct Fallback {
    factory: Option<EngineFactory>,
}

/// The backend a run continues on, with the notice telling the user so.
pub struct TakenOver {
    /// The fallback backend, started.
    pub engine: Box<dyn Upscaler>,
    /// `what (error): continuing on <backend>`, for the user.
    pub notice: String,
}

impl Fallback {
    /// A fallback to `factory`'s backend; `None`: nothing to fall back to.
    pub fn new(factory: Option<EngineFactory>) -> Self {
        Self { factory }
    }

    /// Starts the fallback backend for `checkpoint` after `error` (`what` failed, e.g. "the GPU
    /// failed on slice 3"), with the notice `what (error): continuing on <backend>`; `Err` when
    /// there is none (left) or it cannot start either.
    pub fn take_over(
        &mut self,
        checkpoint: &Checkpoint,
        error: EngineError,
        what: &str,
    ) -> Result<TakenOver, FallbackError> {
        let what = what.to_string();
        let Some(factory) = self.factory.take() else {
            return Err(FallbackError::None { what, error });
        };
        let engine = match factory(checkpoint) {
            Ok(e) => e,
            Err(fallback) => {
                return Err(FallbackError::Failed {
                    what,
                    error,
                    fallback,
                });
            }
        };
        tracing::warn!("{what}: {error}; continuing on {}", engine.describe());
        let notice = format!("{what} ({error}): continuing on {}", engine.describe());
        Ok(TakenOver { engine, notice })
    }
}

/// The GPU engine, falling back to the CPU reference when the device fails.
pub struct GpuWithFallback {
    engine: Box<dyn Upscaler>,
    fallback: Fallback,
    /// What the fallback will run.
    checkpoint: Checkpoint,
    /// Why this backend was chosen (shown by `describe`).
    reason: Option<String>,
    notices: Vec<String>,
}

impl GpuWithFallback {
    /// Wraps a GPU engine; `checkpoint` is what the CPU fallback will run.
    pub fn new(gpu: GpuEngine, checkpoint: Checkpoint, reason: Option<String>) -> Self {
        Self {
            engine: Box::new(gpu),
            fallback: Fallback::new(Some(cpu_factory())),
            checkpoint,
            reason,
            notices: Vec::new(),
        }
    }
}

impl Upscaler for GpuWithFallback {
    fn describe(&self) -> String {
        let base = self.engine.describe();
        match &self.reason {
            Some(r) => format!("{base} [{r}]"),
            None => base,
        }
    }

    fn scale(&self) -> usize {
        self.engine.scale()
    }

    fn upscale(
        &mut self,
        inputs: &[Plane],
        progress: Progress<'_>,
        cancel: &AtomicBool,
    ) -> Result<Vec<Plane>, EngineError> {
        loop {
            match self.engine.upscale(inputs, progress, cancel) {
                Err(e) if is_device_failure(&e) => {
                    let next = self
                        .fallback
                        .take_over(&self.checkpoint, e, "the GPU failed")
                        .map_err(|f| match f {
                            FallbackError::None { error, .. } => error,
                            FallbackError::Failed { fallback, .. } => fallback,
                        })?;
                    self.notices.push(next.notice.clone());
                    self.reason = Some(next.notice);
                    self.engine = next.engine;
                }
                other => return other,
            }
        }
    }

    fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }
}
