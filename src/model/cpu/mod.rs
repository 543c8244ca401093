//! The CPU reference forward pass: the oracle the WGSL engine is tested against.

pub mod ops;
