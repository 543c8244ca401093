//! The WGSL inference engine on wgpu. Knows nothing of the viewer.
