// Device-memory bandwidth probe for `deltawkv bench` (gpu::measure::copy_bandwidth): a vec4 copy,
// one element per invocation, consecutive invocations on consecutive addresses (coalesced), the
// access pattern of the engine's elementwise kernels at their best. 2-D grid of 256-wide groups.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.x + wg.y * nwg.x) * 256u + li;
    if (i < arrayLength(&dst)) {
        dst[i] = src[i];
    }
}
