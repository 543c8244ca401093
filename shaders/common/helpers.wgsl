// Shared helpers, included by every network kernel.

// The builtins of a kernel launched as a 1-D grid of workgroups spread over x and y (the
// dispatch limit is 65535 per dimension); z, where used, is a batch index.
struct Launch {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
}

// Linear workgroup index of a 1-D launch spread over x and y.
fn linear_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh with its argument clamped, so that implementations computing it from exp(2x) cannot
// overflow (tanh(15) is 1 to f32 precision).
fn tanh_safe(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}
