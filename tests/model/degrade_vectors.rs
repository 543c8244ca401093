//! The Rust degradations and baselines against the Python twin (`train/dwkv/degrade.py`) on the
//! committed vectors (`tests/data/vectors/degrade.safetensors`), and the geometry on real MRI.

use std::collections::HashMap;

use deltawkv::degrade::{self, Baseline};
use deltawkv::metrics;
use deltawkv::model::Degradation;
use deltawkv::plane::Plane;
use safetensors::{Dtype, SafeTensors};

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/vectors/degrade.safetensors"
);

struct Vectors {
    bytes: Vec<u8>,
}

impl Vectors {
    fn load() -> Self {
        Self {
            bytes: std::fs::read(FILE).expect("read degrade vectors"),
        }
    }
    fn meta(&self) -> HashMap<String, String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).expect("metadata");
        meta.metadata().clone().expect("__metadata__")
    }
    fn scales(&self) -> Vec<(String, Vec<usize>)> {
        let m = self.meta();
        let cases: Vec<String> = serde_json::from_str(&m["cases"]).expect("cases");
        let scales: HashMap<String, Vec<usize>> =
            serde_json::from_str(&m["scales"]).expect("scales");
        cases
            .into_iter()
            .map(|c| {
                let s = scales[&c].clone();
                (c, s)
            })
            .collect()
    }
    fn plane(&self, name: &str) -> Plane {
        let st = SafeTensors::deserialize(&self.bytes).expect("parse safetensors");
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        let shape = t.shape();
        assert_eq!(shape.len(), 2, "{name}");
        let data = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Plane::from_vec(shape[1], shape[0], data).expect("plane size")
    }
}

fn max_abs_diff(name: &str, got: &Plane, want: &Plane) -> f64 {
    assert_eq!(
        (got.width, got.height),
        (want.width, want.height),
        "{name}: size"
    );
    got.data
        .iter()
        .zip(&want.data)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max)
}

const GEOMS: [Degradation; 2] = [Degradation::Kspace, Degradation::Bicubic];

#[test]
fn degradations_match_python() {
    let v = Vectors::load();
    let mut worst = 0.0f64;
    let mut n = 0;
    for (case, scales) in v.scales() {
        let hr = v.plane(&format!("{case}/hr"));
        for s in scales {
            for geom in GEOMS {
                let name = format!("{case}/x{s}/lr_{}", geom.as_str());
                let want = v.plane(&name);
                let got = degrade::degrade(&hr, s, geom).unwrap();
                let d = max_abs_diff(&name, &got, &want);
                assert!(d < 1e-5, "{name}: max |diff| {d}");
                worst = worst.max(d);
                n += 1;
            }
        }
    }
    assert!(n >= 20, "only {n} degradations checked");
    println!("{n} degradations, worst |diff| {worst:e}");
}

#[test]
fn baselines_match_python() {
    let v = Vectors::load();
    let mut worst = 0.0f64;
    let mut n = 0;
    for (case, scales) in v.scales() {
        for s in scales {
            for geom in GEOMS {
                let lr = v.plane(&format!("{case}/x{s}/lr_{}", geom.as_str()));
                for method in Baseline::ALL {
                    let name = format!("{case}/x{s}/up_{}_{}", method.as_str(), geom.as_str());
                    let want = v.plane(&name);
                    let got = degrade::upsample(&lr, s, method, geom).unwrap();
                    let d = max_abs_diff(&name, &got, &want);
                    assert!(d < 1e-5, "{name}: max |diff| {d}");
                    worst = worst.max(d);
                    n += 1;
                }
            }
        }
    }
    assert!(n >= 60, "only {n} baselines checked");
    println!("{n} baselines, worst |diff| {worst:e}");
}

/// PSNR (data range 1) of `up` against the HR plane cropped to a multiple of `s`.
fn psnr_vs(hr: &Plane, s: usize, up: &Plane) -> f64 {
    let gt = degrade::crop_to_multiple(hr, s).unwrap();
    metrics::psnr(&gt, up, 1.0).unwrap()
}

#[test]
fn aligned_interpolation_beats_misaligned_on_real_mri() {
    let v = Vectors::load();
    for case in ["mri_pd_64", "mri_pd_48x40"] {
        let hr = v.plane(&format!("{case}/hr"));
        for s in [2usize, 4] {
            for made_by in GEOMS {
                let other = match made_by {
                    Degradation::Kspace => Degradation::Bicubic,
                    Degradation::Bicubic => Degradation::Kspace,
                };
                let lr = degrade::degrade(&hr, s, made_by).unwrap();
                for method in [Baseline::Bicubic, Baseline::Zerofill, Baseline::Nearest] {
                    let aligned =
                        psnr_vs(&hr, s, &degrade::upsample(&lr, s, method, made_by).unwrap());
                    let slipped =
                        psnr_vs(&hr, s, &degrade::upsample(&lr, s, method, other).unwrap());
                    println!(
                        "{case} x{s} LR by {made_by:?}, {}: aligned {aligned:.2} dB, misaligned {slipped:.2} dB",
                        method.as_str()
                    );
                    // Nearest from a k-space LR at x2 has a tie at every odd HR voxel (u = i + 0.5),
                    // so "aligned" nearest is itself half an HR voxel off either way: skip it.
                    if method == Baseline::Nearest && made_by == Degradation::Kspace && s == 2 {
                        continue;
                    }
                    let margin = if method == Baseline::Nearest {
                        0.0
                    } else {
                        1.0
                    };
                    assert!(
                        aligned > slipped + margin,
                        "{case} x{s} {made_by:?} {}: aligned {aligned} vs misaligned {slipped}",
                        method.as_str()
                    );
                }
            }
        }
    }
}
