// The bindings of the kernels with one input (`xs`), one weight buffer (`ws`) and one output
// (`ys`), all f32: binding 0 is the including kernel's parameter block (its `struct Params`).

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> ws: array<f32>;
@group(0) @binding(3) var<storage, read_write> ys: array<f32>;
