//! Affine geometry: orientation codes, canonical reorientation, quaternions, up/downsampled grids.
//!
//! All affines are row-major 4x4 `[[f64; 4]; 4]` mapping voxel `(i, j, k, 1)` to RAS+ mm.

use super::Volume;
use crate::model::Degradation;

/// A row-major 4x4 affine.
pub type Affine = [[f64; 4]; 4];

/// The identity affine.
pub const IDENTITY: Affine = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// World position of voxel coordinate `ijk` (may be fractional).
pub fn apply(affine: &Affine, ijk: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (r, o) in out.iter_mut().enumerate() {
        *o = affine[r][0] * ijk[0] + affine[r][1] * ijk[1] + affine[r][2] * ijk[2] + affine[r][3];
    }
    out
}

/// Column `c` (0..3) of the 3x3 linear part.
pub fn column(affine: &Affine, c: usize) -> [f64; 3] {
    [affine[0][c], affine[1][c], affine[2][c]]
}

/// Euclidean norms of the three voxel-axis columns: the voxel size along i, j, k.
pub fn column_norms(affine: &Affine) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (c, o) in out.iter_mut().enumerate() {
        *o = norm(column(affine, c));
    }
    out
}

/// `a - b`.
pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Dot product.
pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cross product.
pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Euclidean length.
pub(crate) fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// `a` scaled to length 1; `None` when it is shorter than 1e-6 or not finite.
pub(crate) fn unit(a: [f64; 3]) -> Option<[f64; 3]> {
    let n = norm(a);
    if n > 1e-6 && n.is_finite() {
        Some([a[0] / n, a[1] / n, a[2] / n])
    } else {
        None
    }
}

pub(crate) type Mat3 = [[f64; 3]; 3];

pub(crate) fn linear_part(affine: &Affine) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            m[r][c] = affine[r][c];
        }
    }
    m
}

pub(crate) fn det3(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn inverse3(m: &Mat3) -> Option<Mat3> {
    let d = det3(m);
    if !d.is_finite() || d.abs() < 1e-300 {
        return None;
    }
    let mut inv = [[0.0; 3]; 3];
    inv[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / d;
    inv[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / d;
    inv[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / d;
    inv[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / d;
    inv[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / d;
    inv[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / d;
    inv[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / d;
    inv[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / d;
    inv[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / d;
    Some(inv)
}

fn transpose3(m: &Mat3) -> Mat3 {
    let mut t = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            t[r][c] = m[c][r];
        }
    }
    t
}

/// Inverse of an affine (voxel <- world); `None` when its linear part is singular.
pub fn invert(affine: &Affine) -> Option<Affine> {
    let inv = inverse3(&linear_part(affine))?;
    let t = [affine[0][3], affine[1][3], affine[2][3]];
    let mut out = IDENTITY;
    for r in 0..3 {
        for c in 0..3 {
            out[r][c] = inv[r][c];
        }
        out[r][3] = -dot(inv[r], t);
    }
    Some(out)
}

/// The orthogonal matrix closest to `m` (polar decomposition by Newton iteration, as
/// nifti1_io's `nifti_mat33_polar`). `None` when `m` is singular.
pub(crate) fn polar(m: &Mat3) -> Option<Mat3> {
    let mut x = *m;
    for _ in 0..100 {
        let inv_t = transpose3(&inverse3(&x)?);
        let mut next = [[0.0; 3]; 3];
        let mut change = 0.0f64;
        for r in 0..3 {
            for c in 0..3 {
                next[r][c] = 0.5 * (x[r][c] + inv_t[r][c]);
                change = change.max((next[r][c] - x[r][c]).abs());
            }
        }
        x = next;
        if change < 1e-14 {
            break;
        }
    }
    Some(x)
}

/// For each voxel axis: the world axis (0 = x/R-L, 1 = y/A-P, 2 = z/S-I) it runs closest to and
/// whether it runs along (`true`) or against (`false`) it. Same algorithm as nibabel's
/// `io_orientation` (closest orthogonal matrix, then greedy assignment starting from the most
/// negative column minimum). Degenerate axes get an unused world axis.
pub fn axis_mapping(affine: &Affine) -> [(usize, bool); 3] {
    let mut rs = linear_part(affine);
    let norms = column_norms(affine);
    for c in 0..3 {
        let n = if norms[c] > 0.0 && norms[c].is_finite() {
            norms[c]
        } else {
            1.0
        };
        for row in rs.iter_mut() {
            row[c] /= n;
        }
    }
    let mut r = polar(&rs).unwrap_or(rs);
    // Order voxel axes by the minimum of their column (nibabel's argsort(min(R, axis=0))).
    let mut order = [0usize, 1, 2];
    let col_min = |r: &Mat3, c: usize| r[0][c].min(r[1][c]).min(r[2][c]);
    order.sort_by(|&a, &b| col_min(&r, a).total_cmp(&col_min(&r, b)));
    let mut result: [Option<(usize, bool)>; 3] = [None; 3];
    let mut used = [false; 3];
    for &in_ax in &order {
        let col = [r[0][in_ax], r[1][in_ax], r[2][in_ax]];
        if col.iter().all(|v| v.abs() < 1e-12 || !v.is_finite()) {
            continue;
        }
        let mut out_ax = 0;
        for w in 1..3 {
            if col[w].abs() > col[out_ax].abs() {
                out_ax = w;
            }
        }
        result[in_ax] = Some((out_ax, col[out_ax] >= 0.0));
        used[out_ax] = true;
        if let Some(row) = r.get_mut(out_ax) {
            *row = [0.0; 3];
        }
    }
    let mut out = [(0usize, true); 3];
    for ax in 0..3 {
        out[ax] = match result[ax] {
            Some(m) => m,
            None => {
                let free = (0..3).find(|&w| !used[w]).unwrap_or(ax);
                used[free] = true;
                (free, true)
            }
        };
    }
    out
}

/// Three-letter orientation code (`RAS`, `LPS`, `PIR`, ...): for each voxel axis, the direction in
/// which its index increases, as nibabel's `aff2axcodes`.
pub fn orientation_code(affine: &Affine) -> String {
    const POS: [char; 3] = ['R', 'A', 'S'];
    const NEG: [char; 3] = ['L', 'P', 'I'];
    axis_mapping(affine)
        .iter()
        .map(|&(w, along)| if along { POS[w] } else { NEG[w] })
        .collect()
}

/// NIfTI quaternion (b, c, d, qfac) and voxel sizes to the 3x3 rotation-scaling matrix, exactly
/// as `nifti_quatern_to_mat44` in nifti1_io.c (non-positive voxel sizes are taken as 1).
pub fn quaternion_to_matrix(b: f64, c: f64, d: f64, qfac: f64, pixdim: [f64; 3]) -> Mat3 {
    let (mut b, mut c, mut d) = (b, c, d);
    let mut a = 1.0 - (b * b + c * c + d * d);
    if a < 1e-7 {
        // Special case: a 180-degree rotation; renormalise (b, c, d).
        let n = (b * b + c * c + d * d).sqrt();
        if n > 0.0 {
            b /= n;
            c /= n;
            d /= n;
        }
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let xd = if pixdim[0] > 0.0 { pixdim[0] } else { 1.0 };
    let yd = if pixdim[1] > 0.0 { pixdim[1] } else { 1.0 };
    let mut zd = if pixdim[2] > 0.0 { pixdim[2] } else { 1.0 };
    if qfac < 0.0 {
        zd = -zd;
    }
    [
        [
            (a * a + b * b - c * c - d * d) * xd,
            2.0 * (b * c - a * d) * yd,
            2.0 * (b * d + a * c) * zd,
        ],
        [
            2.0 * (b * c + a * d) * xd,
            (a * a + c * c - b * b - d * d) * yd,
            2.0 * (c * d - a * b) * zd,
        ],
        [
            2.0 * (b * d - a * c) * xd,
            2.0 * (c * d + a * b) * yd,
            (a * a + d * d - c * c - b * b) * zd,
        ],
    ]
}

/// The NIfTI quaternion representation of an affine's linear part:
/// `(b, c, d, qfac, voxel sizes)`, as `nifti_mat44_to_quatern` (columns normalised, the closest
/// rotation taken when they are not orthogonal, qfac = -1 for a left-handed matrix).
pub fn matrix_to_quaternion(affine: &Affine) -> (f64, f64, f64, f64, [f64; 3]) {
    let norms = column_norms(affine);
    let mut m = linear_part(affine);
    let mut sizes = [1.0; 3];
    for c in 0..3 {
        if norms[c] > 0.0 && norms[c].is_finite() {
            sizes[c] = norms[c];
            for row in m.iter_mut() {
                row[c] /= norms[c];
            }
        } else {
            for (r, row) in m.iter_mut().enumerate() {
                row[c] = if r == c { 1.0 } else { 0.0 };
            }
        }
    }
    let mut m = polar(&m).unwrap_or(m);
    let qfac = if det3(&m) < 0.0 {
        for row in m.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let (r11, r12, r13) = (m[0][0], m[0][1], m[0][2]);
    let (r21, r22, r23) = (m[1][0], m[1][1], m[1][2]);
    let (r31, r32, r33) = (m[2][0], m[2][1], m[2][2]);
    let trace_term = r11 + r22 + r33 + 1.0;
    let (b, c, d) = if trace_term > 0.5 {
        // a = 0.5 sqrt(trace + 1) is positive here.
        let a = 0.5 * trace_term.sqrt();
        (
            0.25 * (r32 - r23) / a,
            0.25 * (r13 - r31) / a,
            0.25 * (r21 - r12) / a,
        )
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        let (qa, qb, qc, qd) = if xd > 1.0 {
            let qb = 0.5 * xd.sqrt();
            (
                0.25 * (r32 - r23) / qb,
                qb,
                0.25 * (r12 + r21) / qb,
                0.25 * (r13 + r31) / qb,
            )
        } else if yd > 1.0 {
            let qc = 0.5 * yd.sqrt();
            (
                0.25 * (r13 - r31) / qc,
                0.25 * (r12 + r21) / qc,
                qc,
                0.25 * (r23 + r32) / qc,
            )
        } else {
            let qd = 0.5 * zd.sqrt();
            (
                0.25 * (r21 - r12) / qd,
                0.25 * (r13 + r31) / qd,
                0.25 * (r23 + r32) / qd,
                qd,
            )
        };
        // Keep a >= 0 (q and -q are the same rotation).
        if qa < 0.0 {
            (-qb, -qc, -qd)
        } else {
            (qb, qc, qd)
        }
    };
    (b, c, d, qfac, sizes)
}

/// Affine of the grid made by resampling `dims`/`affine` by `scale` along the chosen voxel axes.
/// `up = true`: HR grid (dims * scale); `up = false`: LR grid (dims / scale, at least 1).
fn rescaled(
    dims: [usize; 3],
    affine: &Affine,
    scale: usize,
    axes: [bool; 3],
    degradation: Degradation,
    up: bool,
) -> ([usize; 3], Affine) {
    let s = scale.max(1) as f64;
    let mut new_dims = dims;
    let mut out = *affine;
    for a in 0..3 {
        if !axes[a] || scale <= 1 {
            continue;
        }
        // `lr = f(hr)` for up, `hr = g(lr)` for down; both linear: new index n sits at old
        // coordinate `n * step + offset`.
        let (step, offset) = if up {
            new_dims[a] = dims[a].saturating_mul(scale);
            match degradation {
                Degradation::Kspace => (1.0 / s, 0.0),
                Degradation::Bicubic => (1.0 / s, 0.5 / s - 0.5),
            }
        } else {
            new_dims[a] = (dims[a] / scale).max(1);
            (s, degradation.lr_to_hr(0.0, s))
        };
        for r in 0..3 {
            out[r][3] += affine[r][a] * offset;
            out[r][a] = affine[r][a] * step;
        }
    }
    (new_dims, out)
}

impl Volume {
    /// Three-letter orientation code of this volume's affine (see [`orientation_code`]).
    pub fn orientation_code(&self) -> String {
        orientation_code(&self.affine)
    }

    /// World position (RAS mm) of the centre of voxel `ijk`.
    pub fn voxel_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        apply(&self.affine, ijk)
    }

    /// The same volume with voxel axes permuted and flipped so that its orientation code is
    /// `RAS` (closest axes, as [`orientation_code`]). The affine is adjusted exactly: every voxel
    /// keeps its world position; no resampling happens.
    pub fn to_canonical(&self) -> Volume {
        let mapping = axis_mapping(&self.affine);
        if mapping == [(0, true), (1, true), (2, true)] {
            return self.clone();
        }
        // new axis w takes old axis `src[w]`, flipped if `flip[w]`.
        let mut src = [0usize; 3];
        let mut flip = [false; 3];
        for (old_ax, &(w, along)) in mapping.iter().enumerate() {
            src[w] = old_ax;
            flip[w] = !along;
        }
        let new_dims = [self.dims[src[0]], self.dims[src[1]], self.dims[src[2]]];
        let mut affine = self.affine;
        for (row, old_row) in affine.iter_mut().zip(self.affine.iter()).take(3) {
            let mut t = old_row[3];
            for w in 0..3 {
                let old = old_row[src[w]];
                if flip[w] {
                    row[w] = -old;
                    t += old * (self.dims[src[w]].saturating_sub(1)) as f64;
                } else {
                    row[w] = old;
                }
            }
            row[3] = t;
        }
        let n: usize = new_dims.iter().product();
        let mut data = vec![0.0f32; n];
        let mut old_ijk = [0usize; 3];
        let mut idx = 0;
        for k in 0..new_dims[2] {
            for j in 0..new_dims[1] {
                for i in 0..new_dims[0] {
                    let new_ijk = [i, j, k];
                    for w in 0..3 {
                        old_ijk[src[w]] = if flip[w] {
                            new_dims[w] - 1 - new_ijk[w]
                        } else {
                            new_ijk[w]
                        };
                    }
                    if let (Some(d), Some(v)) =
                        (data.get_mut(idx), self.data.get(self.linear_index(old_ijk)))
                    {
                        *d = *v;
                    }
                    idx += 1;
                }
            }
        }
        let spacing = [
            self.spacing[src[0]],
            self.spacing[src[1]],
            self.spacing[src[2]],
        ];
        Volume {
            data,
            dims: new_dims,
            spacing,
            affine,
            meta: self.meta.clone(),
        }
    }

    /// Dimensions and affine of this volume upscaled by `scale` along the voxel axes where `axes`
    /// is true, placed so the world position does not shift:
    /// - [`Degradation::Kspace`]: LR voxel `i` is HR voxel `s * i` (same origin, voxel size / s);
    /// - [`Degradation::Bicubic`]: LR voxel `i` is at HR position `(i + 0.5) s - 0.5`, so HR voxel 0
    ///   is at LR coordinate `-0.5 + 0.5 / s` (the voxel blocks cover the same extent).
    pub fn upscaled_geometry(
        &self,
        scale: usize,
        axes: [bool; 3],
        degradation: Degradation,
    ) -> ([usize; 3], Affine) {
        rescaled(self.dims, &self.affine, scale, axes, degradation, true)
    }

    /// The grid of the in-plane super-resolution of this volume's `axis` slices: dimensions,
    /// voxel size and affine of [`Volume::upscaled_geometry`] with the two in-plane axes of
    /// `axis` rescaled and the slice axis kept, in this volume's own voxel order. The grid
    /// `deltawkv upscale` writes and the viewer's SR grid in upscale mode (its NIfTI export).
    pub fn upscaled_slice_grid(
        &self,
        scale: usize,
        axis: super::Axis,
        degradation: Degradation,
    ) -> ([usize; 3], [f64; 3], Affine) {
        let (c, r) = axis.in_plane();
        let mut axes = [false; 3];
        axes[c] = true;
        axes[r] = true;
        let (dims, affine) = self.upscaled_geometry(scale, axes, degradation);
        let spacing = std::array::from_fn(|a| {
            if axes[a] {
                self.spacing[a] / scale.max(1) as f64
            } else {
                self.spacing[a]
            }
        });
        (dims, spacing, affine)
    }

    /// The inverse of [`Volume::upscaled_geometry`]: dimensions (`dims / scale`, rounded down,
    /// at least 1) and affine of an LR volume simulated from this one, LR voxel `i` sitting at HR
    /// coordinate [`Degradation::lr_to_hr`]`(i, scale)`.
    pub fn downsampled_geometry(
        &self,
        scale: usize,
        axes: [bool; 3],
        degradation: Degradation,
    ) -> ([usize; 3], Affine) {
        rescaled(self.dims, &self.affine, scale, axes, degradation, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approx(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn codes_of_simple_affines() {
        assert_eq!(orientation_code(&IDENTITY), "RAS");
        let mut lps = IDENTITY;
        lps[0][0] = -1.0;
        lps[1][1] = -1.0;
        assert_eq!(orientation_code(&lps), "LPS");
        // voxel i along -y, j along -z, k along +x: PIR
        let pir = [
            [0.0, 0.0, 1.0, 0.0],
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(orientation_code(&pir), "PIR");
    }

    #[test]
    fn oblique_affine_code_matches_nibabel() {
        // example4d.nii.gz sform; nibabel.aff2axcodes gives ('L', 'A', 'S').
        let a = [
            [-2.0, 6.714716e-19, 9.081025e-18, 117.8551],
            [-6.714716e-19, 1.973711, -0.3555282, -35.72294],
            [8.255481e-18, 0.3232076, 2.171082, -7.248798],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(orientation_code(&a), "LAS");
    }

    #[test]
    fn quaternion_round_trip() {
        let m = quaternion_to_matrix(0.1, -0.2, 0.3, -1.0, [1.5, 2.0, 3.0]);
        let mut aff = IDENTITY;
        for r in 0..3 {
            for c in 0..3 {
                aff[r][c] = m[r][c];
            }
        }
        let (b, c, d, qfac, sizes) = matrix_to_quaternion(&aff);
        assert!(
            approx(b, 0.1, 1e-12) && approx(c, -0.2, 1e-12) && approx(d, 0.3, 1e-12),
            "{b} {c} {d}"
        );
        assert_eq!(qfac, -1.0);
        assert!(
            approx(sizes[0], 1.5, 1e-12)
                && approx(sizes[1], 2.0, 1e-12)
                && approx(sizes[2], 3.0, 1e-12)
        );
    }

    #[test]
    fn quaternion_180_degree_rotation() {
        // 180 degrees about x: diag(1, -1, -1); a = 0, b = 1.
        let mut aff = IDENTITY;
        aff[1][1] = -1.0;
        aff[2][2] = -1.0;
        let (b, c, d, qfac, _) = matrix_to_quaternion(&aff);
        assert!(approx(b.abs(), 1.0, 1e-12) && approx(c, 0.0, 1e-12) && approx(d, 0.0, 1e-12));
        assert_eq!(qfac, 1.0);
        let m = quaternion_to_matrix(b, c, d, qfac, [1.0; 3]);
        for r in 0..3 {
            for cc in 0..3 {
                assert!(approx(m[r][cc], aff[r][cc], 1e-12));
            }
        }
    }

    #[test]
    fn inverse_is_inverse() {
        let a = [
            [0.0, 0.0, 2.0, 5.0],
            [-1.5, 0.1, 0.0, -3.0],
            [0.0, -1.0, 0.2, 7.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let inv = invert(&a).expect("invertible");
        let p = apply(&a, [1.0, 2.0, 3.0]);
        let q = apply(&inv, p);
        assert!(approx(q[0], 1.0, 1e-12) && approx(q[1], 2.0, 1e-12) && approx(q[2], 3.0, 1e-12));
    }
}

// Reorientation between the file's stored voxel order and the canonical (RAS) order, voxel for
// voxel (the viewer's pipeline runs in stored order and displays in canonical order).

/// The voxel axis of index 0, 1 or 2.
pub fn axis_of(index: usize) -> super::Axis {
    match index {
        0 => super::Axis::Sagittal,
        1 => super::Axis::Coronal,
        _ => super::Axis::Axial,
    }
}

/// The exact permutation and flips taking the file's stored voxel order to the canonical (RAS)
/// order, as [`Volume::to_canonical`] does: canonical axis `w` is stored axis `src[w]`, mirrored
/// when `flip[w]`. The pipeline runs in stored order (so its numbers equal `deltawkv eval` and
/// `deltawkv upscale`, whose k-space sampling phase depends on the voxel order), the display in
/// canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reorient {
    pub src: [usize; 3],
    pub flip: [bool; 3],
}

impl Reorient {
    /// The mapping of a volume with this affine.
    pub fn of(affine: &Affine) -> Self {
        let mapping = axis_mapping(affine);
        let mut src = [0, 1, 2];
        let mut flip = [false; 3];
        for (old, &(w, along)) in mapping.iter().enumerate() {
            if let (Some(s), Some(f)) = (src.get_mut(w), flip.get_mut(w)) {
                *s = old;
                *f = !along;
            }
        }
        Self { src, flip }
    }

    /// Canonical axis of stored axis `a`.
    pub fn canonical_axis(&self, a: usize) -> usize {
        (0..3).find(|&w| self.src[w] == a).unwrap_or(a)
    }

    /// Canonical voxel of stored voxel `ijk` in a volume of stored `dims`.
    pub fn to_canonical(&self, dims: [usize; 3], ijk: [usize; 3]) -> [usize; 3] {
        let mut out = [0; 3];
        for (w, o) in out.iter_mut().enumerate() {
            let s = self.src[w];
            *o = if self.flip[w] {
                dims[s].saturating_sub(1).saturating_sub(ijk[s])
            } else {
                ijk[s]
            };
        }
        out
    }

    /// Stored voxel of canonical voxel `ijk` in a volume of stored `dims`.
    pub fn to_stored(&self, dims: [usize; 3], ijk: [usize; 3]) -> [usize; 3] {
        let mut out = [0; 3];
        for (w, &v) in ijk.iter().enumerate() {
            let s = self.src[w];
            if let Some(o) = out.get_mut(s) {
                *o = if self.flip[w] {
                    dims[s].saturating_sub(1).saturating_sub(v)
                } else {
                    v
                };
            }
        }
        out
    }

    /// Canonical dimensions of stored `dims`.
    pub fn canonical_dims(&self, dims: [usize; 3]) -> [usize; 3] {
        [dims[self.src[0]], dims[self.src[1]], dims[self.src[2]]]
    }

    /// Canonical index of stored slice `k` along stored axis `a` (stored `dims`).
    pub fn canonical_slice(&self, dims: [usize; 3], a: usize, k: usize) -> usize {
        let w = self.canonical_axis(a);
        if self.flip[w] {
            dims[a].saturating_sub(1).saturating_sub(k)
        } else {
            k
        }
    }

    /// Stored index of canonical slice `k` along the canonical axis of stored axis `a`.
    pub fn stored_slice(&self, dims: [usize; 3], a: usize, k: usize) -> usize {
        // A flip is its own inverse.
        self.canonical_slice(dims, a, k)
    }

    /// Writes `plane`, stored slice `k` along stored axis `a` (layout of [`Volume::slice`] on a
    /// volume of stored `dims`), into the canonical volume `canon`. `false` when sizes differ.
    pub fn write_slice(
        &self,
        canon: &mut Volume,
        dims: [usize; 3],
        a: usize,
        k: usize,
        plane: &crate::plane::Plane,
    ) -> bool {
        let (ca, ra) = axis_of(a).in_plane();
        if canon.dims != self.canonical_dims(dims)
            || k >= dims[a]
            || plane.width != dims[ca]
            || plane.height != dims[ra]
            || plane.data.len() != plane.width * plane.height
        {
            return false;
        }
        let mut ijk = [0usize; 3];
        ijk[a] = k;
        for (r, row) in plane.data.chunks_exact(plane.width).enumerate() {
            ijk[ra] = r;
            for (c, v) in row.iter().enumerate() {
                ijk[ca] = c;
                let li = canon.linear_index(self.to_canonical(dims, ijk));
                if let Some(d) = canon.data.get_mut(li) {
                    *d = *v;
                }
            }
        }
        true
    }
}

impl Reorient {
    /// The canonical volume `canon` put back in the file's voxel order on `stored` (the stored
    /// grid `canon` was reoriented from), voxel for voxel: no resampling, every voxel keeps its
    /// world position. `None` when the sizes do not fit.
    pub fn to_stored_volume(&self, canon: &Volume, stored: &Grid) -> Option<Volume> {
        let dims = stored.dims;
        if canon.dims != self.canonical_dims(dims) || canon.data.len() != canon.voxel_count() {
            return None;
        }
        let mut data = Vec::with_capacity(canon.data.len());
        // NIfTI order: i fastest.
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let c = self.to_canonical(dims, [i, j, k]);
                    data.push(*canon.data.get(canon.linear_index(c))?);
                }
            }
        }
        Some(Volume {
            data,
            dims,
            spacing: stored.spacing,
            affine: stored.affine,
            meta: canon.meta.clone(),
        })
    }
}

/// Dimensions, voxel size and voxel-to-world affine of a grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub affine: Affine,
}

impl Grid {
    /// The grid of volume `v`.
    pub fn of(v: &Volume) -> Self {
        Self {
            dims: v.dims,
            spacing: v.spacing,
            affine: v.affine,
        }
    }

    /// A volume on this grid with every voxel `fill`.
    pub fn filled(&self, fill: f32, meta: &super::VolumeMeta) -> Volume {
        Volume {
            data: vec![fill; self.dims.iter().product()],
            dims: self.dims,
            spacing: self.spacing,
            affine: self.affine,
            meta: meta.clone(),
        }
    }

    /// The grid of `dims` voxels placed by `affine` (voxel size from its columns).
    pub fn from_affine(dims: [usize; 3], affine: Affine) -> Self {
        let spacing = column_norms(&affine);
        Self {
            dims,
            spacing,
            affine,
        }
    }
}

#[cfg(test)]
mod reorient_tests {
    use super::*;
    use crate::plane::Plane;
    use crate::volume::{Axis, VolumeMeta};

    /// A volume whose voxels all differ (value = linear index), placed by `affine`.
    fn ramp(dims: [usize; 3], affine: Affine) -> Volume {
        Volume {
            data: (0..dims.iter().product::<usize>())
                .map(|i| i as f32)
                .collect(),
            dims,
            spacing: column_norms(&affine),
            affine,
            meta: VolumeMeta::default(),
        }
    }

    #[test]
    fn reorient_maps_stored_and_canonical_voxels_exactly() {
        // Stored axes: i -> -x (L), j -> -y (P), k -> +z (S): LPS.
        let lps = [
            [-1.0, 0.0, 0.0, 30.0],
            [0.0, -1.0, 0.0, 40.0],
            [0.0, 0.0, 3.0, -5.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let v = ramp([24, 20, 6], lps);
        let r = Reorient::of(&v.affine);
        assert_eq!(r.src, [0, 1, 2]);
        assert_eq!(r.flip, [true, true, false]);
        let c = v.to_canonical();
        for ijk in [[0, 0, 0], [23, 19, 5], [5, 7, 2]] {
            let w = r.to_canonical(v.dims, ijk);
            assert_eq!(c.data[c.linear_index(w)], v.data[v.linear_index(ijk)]);
            assert_eq!(r.to_stored(v.dims, w), ijk);
        }
        // A permutation: stored (k, i, j) order.
        let swapped = [
            [0.0, 0.0, 2.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [-4.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let p = Reorient::of(&swapped);
        assert_eq!(p.src, [2, 1, 0]);
        assert_eq!(p.flip, [false, true, true]);
        assert_eq!(p.canonical_axis(0), 2);
        assert_eq!(p.canonical_dims([3, 4, 5]), [5, 4, 3]);
        assert_eq!(p.canonical_slice([3, 4, 5], 0, 0), 2);
        assert_eq!(p.stored_slice([3, 4, 5], 0, 2), 0);
        // write_slice puts a stored slice where to_canonical puts it.
        let vol = ramp([3, 4, 5], swapped);
        let canon = vol.to_canonical();
        let mut blank = canon.clone();
        blank.data.iter_mut().for_each(|x| *x = f32::NAN);
        for k in 0..3 {
            let plane = vol.slice(Axis::Sagittal, k).expect("slice");
            assert!(p.write_slice(&mut blank, vol.dims, 0, k, &plane));
        }
        assert_eq!(blank.data, canon.data);
        assert!(!p.write_slice(&mut blank, vol.dims, 0, 3, &Plane::zeros(4, 5)));
    }
}
