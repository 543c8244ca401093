//! Colour maps: lookup tables shared by the GPU shader (one texture row per map) and the colour
//! bars painted by egui, so that the bar always shows exactly the colours of the image.

use serde::{Deserialize, Serialize};

/// Number of entries in every lookup table.
pub const LUT_SIZE: usize = 256;

/// The colour maps the viewer offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Colormap {
    /// Linear grey ramp: the default for anatomical images.
    #[default]
    Gray,
    /// Perceptually uniform, for magnitude maps (matplotlib's viridis).
    Viridis,
    /// Perceptually uniform, dark to bright, for error maps (matplotlib's inferno).
    Inferno,
    /// Diverging blue-white-red (Moreland's cool-warm end points), for signed maps.
    CoolWarm,
}

impl Colormap {
    /// All maps, in the order of their rows in the lookup texture.
    pub const ALL: [Colormap; 4] = [
        Colormap::Gray,
        Colormap::Viridis,
        Colormap::Inferno,
        Colormap::CoolWarm,
    ];

    /// Maps offered for unsigned quantities (magnitudes, errors, SSIM).
    pub const UNSIGNED: [Colormap; 3] = [Colormap::Inferno, Colormap::Viridis, Colormap::Gray];

    /// Row of this map in the lookup texture.
    pub fn row(self) -> u32 {
        match self {
            Colormap::Gray => 0,
            Colormap::Viridis => 1,
            Colormap::Inferno => 2,
            Colormap::CoolWarm => 3,
        }
    }

    /// Name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            Colormap::Gray => "gray",
            Colormap::Viridis => "viridis",
            Colormap::Inferno => "inferno",
            Colormap::CoolWarm => "cool-warm (signed)",
        }
    }

    /// Colour (sRGB, 0..1) at `t` in [0, 1] (clamped).
    pub fn eval(self, t: f32) -> [f32; 3] {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match self {
            Colormap::Gray => [t, t, t],
            Colormap::Viridis => poly6(&VIRIDIS, t),
            Colormap::Inferno => poly6(&INFERNO, t),
            Colormap::CoolWarm => {
                const A: [f32; 3] = [0.230, 0.299, 0.754];
                const M: [f32; 3] = [0.865, 0.865, 0.865];
                const B: [f32; 3] = [0.706, 0.016, 0.150];
                let (from, to, u) = if t < 0.5 {
                    (A, M, t * 2.0)
                } else {
                    (M, B, t * 2.0 - 1.0)
                };
                [
                    from[0] + (to[0] - from[0]) * u,
                    from[1] + (to[1] - from[1]) * u,
                    from[2] + (to[2] - from[2]) * u,
                ]
            }
        }
    }

    /// 8-bit RGBA lookup table of [`LUT_SIZE`] entries.
    pub fn lut(self) -> Vec<[u8; 4]> {
        (0..LUT_SIZE)
            .map(|i| {
                let c = self.eval(i as f32 / (LUT_SIZE - 1) as f32);
                [to_u8(c[0]), to_u8(c[1]), to_u8(c[2]), 255]
            })
            .collect()
    }

    /// The lookup entry the shader uses for a value `t` in [0, 1]: same rounding as the shader.
    pub fn lut_index(t: f32) -> usize {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ((t * (LUT_SIZE - 1) as f32) + 0.5).floor() as usize
    }
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Degree-6 polynomial fits (Horner form, coefficients c0..c6 per channel) of the matplotlib maps,
/// by Matt Zucker (shadertoy WlfXRN, CC0), fitted to the BIDS colormap data (CC0).
fn poly6(c: &[[f32; 3]; 7], t: f32) -> [f32; 3] {
    let mut out = [0.0f32; 3];
    for (ch, o) in out.iter_mut().enumerate() {
        let mut acc = c[6][ch];
        for k in (0..6).rev() {
            acc = c[k][ch] + t * acc;
        }
        *o = acc.clamp(0.0, 1.0);
    }
    out
}

#[allow(clippy::excessive_precision)]
const VIRIDIS: [[f32; 3]; 7] = [
    [0.277_727_327, 0.005_407_344_5, 0.334_099_805],
    [0.105_093_043, 1.404_613_53, 1.384_590_16],
    [-0.330_861_829, 0.214_847_559, 0.095_095_163],
    [-4.634_230_5, -5.799_100_97, -19.332_440_96],
    [6.228_269_94, 14.179_933_37, 56.690_552_6],
    [4.776_384_998, -13.745_145_38, -65.353_032_63],
    [-5.435_455_856, 4.645_852_612, 26.312_435_25],
];

#[allow(clippy::excessive_precision)]
const INFERNO: [[f32; 3]; 7] = [
    [0.000_218_940_37, 0.001_651_004_6, -0.019_480_898],
    [0.106_513_419, 0.563_956_437, 3.932_712_39],
    [11.602_493_08, -3.972_853_97, -15.942_394_11],
    [-41.703_996_13, 17.436_398_88, 44.354_145_2],
    [77.162_935_7, -33.402_358_94, -81.807_309_26],
    [-71.319_428_24, 32.626_064_26, 73.209_519_86],
    [25.131_126_22, -12.242_668_95, -23.070_325],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_is_identity_ramp() {
        let lut = Colormap::Gray.lut();
        assert_eq!(lut.len(), LUT_SIZE);
        assert_eq!(lut[0], [0, 0, 0, 255]);
        assert_eq!(lut[255], [255, 255, 255, 255]);
        assert_eq!(lut[128], [128, 128, 128, 255]);
    }

    #[test]
    fn viridis_and_inferno_match_matplotlib_end_points() {
        // matplotlib: viridis(0) = #440154, viridis(1) = #fde725; inferno(0) = #000004,
        // inferno(1) = #fcffa4. The polynomial fits are within a few 8-bit steps.
        let close = |a: [u8; 4], b: [u8; 3]| (0..3).all(|i| (a[i] as i32 - b[i] as i32).abs() <= 4);
        let v = Colormap::Viridis.lut();
        assert!(close(v[0], [0x44, 0x01, 0x54]), "{:?}", v[0]);
        assert!(close(v[255], [0xfd, 0xe7, 0x25]), "{:?}", v[255]);
        let i = Colormap::Inferno.lut();
        assert!(close(i[0], [0x00, 0x00, 0x04]), "{:?}", i[0]);
        assert!(close(i[255], [0xfc, 0xff, 0xa4]), "{:?}", i[255]);
    }

    #[test]
    fn perceptual_maps_increase_in_lightness() {
        // Rec. 709 luma is a rough proxy for lightness; both maps must be monotone in it.
        for cm in [Colormap::Viridis, Colormap::Inferno] {
            let lut = cm.lut();
            let luma =
                |c: [u8; 4]| 0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32;
            for w in lut.windows(16).step_by(16) {
                assert!(luma(w[15]) >= luma(w[0]) - 1.0, "{cm:?} not monotone");
            }
        }
    }

    #[test]
    fn coolwarm_is_symmetric_about_white() {
        let mid = Colormap::CoolWarm.eval(0.5);
        assert!(mid.iter().all(|&c| (c - 0.865).abs() < 1e-6));
        assert!(Colormap::CoolWarm.eval(0.0)[2] > 0.7);
        assert!(Colormap::CoolWarm.eval(1.0)[0] > 0.7);
    }

    #[test]
    fn lut_index_rounds_and_clamps() {
        assert_eq!(Colormap::lut_index(-1.0), 0);
        assert_eq!(Colormap::lut_index(f32::NAN), 0);
        assert_eq!(Colormap::lut_index(2.0), 255);
        assert_eq!(Colormap::lut_index(0.5), 128);
    }
}
