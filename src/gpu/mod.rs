//! The WGSL inference engine on wgpu. Knows nothing of the viewer.
//!
//! - [`context`]: the device (owned, or borrowed from eframe), error capture.
//! - [`shader`]: the kernel table, variant keys, kernel options and the WGSL source of each
//!   variant (includes resolved); nothing of graphs or devices.
//! - [`kernels`]: per kernel family its typed parameter block and launch functions.
//! - [`pipelines`]: the compiled pipelines, cached per kernel variant beside the context.
//! - [`graph`]: recorded dispatch sequences and their replayable, finalised plans.
//! - [`weights`]: the checkpoint packed into one storage buffer.
//! - [`measure`]: measured f32 rate of the adapter (for the floor of `deltawkv bench`).
//! - [`network`]: the forward pass of `docs/model-spec.md` as a graph.
//! - [`engine`]: [`GpuEngine`], the [`crate::engine::Upscaler`] on the GPU.

pub mod context;
pub mod engine;
pub mod graph;
pub mod kernels;
pub mod measure;
pub mod network;
pub mod pipelines;
pub mod shader;
pub mod weights;

pub use context::{GpuContext, device_descriptor};
pub use engine::{GpuEngine, GpuOptions};
