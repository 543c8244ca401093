//! The CPU reference forward pass.
