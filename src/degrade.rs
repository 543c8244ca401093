//! LR simulation and interpolation baselines.
