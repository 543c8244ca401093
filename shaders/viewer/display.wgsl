// Slice display for the viewer: one float texture (the slice, in the volume's units), window/level
// and a colour lookup table, drawn into the pane rectangle of an egui paint callback.
//
// Screen mapping: the fragment position (physical pixels) is turned into image coordinates with
// the image rectangle in `p`; pixels outside the image are discarded so the pane background shows.
// Sampling is nearest (texel at floor) or bilinear computed here from four texel loads (float
// textures are not filterable everywhere, and manual filtering is exact and repeatable).
// Non-finite values (pending SR slices, NaN voxels) get `nan_color`.

struct Params {
    image_min: vec2<f32>,   // top-left of the image, physical pixels
    image_size: vec2<f32>,  // size of the image, physical pixels
    win_lo: f32,            // value mapped to the first LUT entry
    win_hi: f32,            // value mapped to the last LUT entry
    lut_row: u32,           // which colour map (row of the LUT texture)
    flags: u32,             // bit 0: mirror columns, bit 1: mirror rows, bit 2: bilinear
    nan_color: vec4<f32>,
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var img: texture_2d<f32>;
@group(0) @binding(2) var lut: texture_2d<f32>;

struct VsOut {
    @builtin(position) pos: vec4<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) vi: u32) -> VsOut {
    // One triangle covering the whole viewport.
    let x = f32((vi << 1u) & 2u) * 2.0 - 1.0;
    let y = f32(vi & 2u) * 2.0 - 1.0;
    var out: VsOut;
    out.pos = vec4<f32>(x, y, 0.0, 1.0);
    return out;
}

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

fn load(ij: vec2<i32>, dims: vec2<i32>) -> f32 {
    let c = clamp(ij, vec2<i32>(0, 0), dims - vec2<i32>(1, 1));
    return textureLoad(img, c, 0).r;
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    var uv = (in.pos.xy - p.image_min) / p.image_size;
    if (uv.x < 0.0 || uv.y < 0.0 || uv.x >= 1.0 || uv.y >= 1.0) {
        discard;
    }
    if ((p.flags & 1u) != 0u) {
        uv.x = 1.0 - uv.x;
    }
    if ((p.flags & 2u) != 0u) {
        uv.y = 1.0 - uv.y;
    }
    let dims = vec2<i32>(textureDimensions(img));
    let tc = uv * vec2<f32>(dims);
    var v: f32;
    if ((p.flags & 4u) != 0u) {
        let t = tc - vec2<f32>(0.5, 0.5);
        let i0 = vec2<i32>(floor(t));
        let f = t - floor(t);
        let a = load(i0, dims);
        let b = load(i0 + vec2<i32>(1, 0), dims);
        let c = load(i0 + vec2<i32>(0, 1), dims);
        let d = load(i0 + vec2<i32>(1, 1), dims);
        v = mix(mix(a, b, f.x), mix(c, d, f.x), f.y);
    } else {
        v = load(vec2<i32>(floor(tc)), dims);
    }
    if (!is_finite(v)) {
        return p.nan_color;
    }
    let width = p.win_hi - p.win_lo;
    var t = 0.0;
    if (width > 0.0) {
        t = clamp((v - p.win_lo) / width, 0.0, 1.0);
    }
    let n = i32(textureDimensions(lut).x);
    let idx = i32(floor(t * f32(n - 1) + 0.5));
    return textureLoad(lut, vec2<i32>(idx, i32(p.lut_row)), 0);
}
