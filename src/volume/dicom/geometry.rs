//! DICOM geometry: per-frame position, orientation, spacing and rescale from the classic
//! elements (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, ...) or the enhanced
//! functional groups; ordering the images of a series into slices (4-D data, slice spacing,
//! gantry tilt) and the voxel-to-patient affine, converted from LPS to RAS.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, Tag};

use super::object::{FileInfo, elem_f64, elem_floats, elem_int, elem_vec3, elem_vec6};
use crate::volume::LoadOptions;
use crate::volume::VolumeError;
use crate::volume::geometry::{self, Affine, cross, dot, norm, sub, unit};

/// Geometry and scaling of one 2-D image (a slice file or a frame).
#[derive(Clone, Debug)]
pub(super) struct FrameGeo {
    pub(super) ipp: Option<[f64; 3]>,
    pub(super) iop: Option<[f64; 6]>,
    /// PixelSpacing: (between rows, between columns).
    pub(super) spacing: Option<[f64; 2]>,
    pub(super) thickness: Option<f64>,
    pub(super) slope: f64,
    pub(super) intercept: f64,
    /// Ordering key within a position for 4-D data (temporal index, echo, acquisition,
    /// instance/frame).
    pub(super) order: [i64; 4],
}

/// First item of sequence `seq` in `obj`.
fn first_item(obj: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
    obj.get(seq)?.items()?.first()
}

/// Looks up `tag` inside functional group `group`, first in the frame's own groups, then in the
/// shared groups.
fn fg_lookup<'a, T>(
    frame: Option<&'a InMemDicomObject>,
    shared: Option<&'a InMemDicomObject>,
    group: Tag,
    f: impl Fn(&'a InMemDicomObject) -> Option<T>,
) -> Option<T> {
    frame
        .and_then(|fr| first_item(fr, group))
        .and_then(&f)
        .or_else(|| shared.and_then(|s| first_item(s, group)).and_then(&f))
}

/// The geometry of every frame of a file, read from its header.
pub(super) struct FrameGeometry {
    /// One entry per frame.
    pub(super) frames: Vec<FrameGeo>,
    /// SpacingBetweenSlices, at the top level or in the pixel measures.
    pub(super) spacing_between: Option<f64>,
    /// Whether the file has functional groups (an enhanced multi-frame image).
    pub(super) enhanced: bool,
}

/// Geometry and scaling of each of the `frames` frames of `ds`: from the frame's own functional
/// groups, else the shared groups, else the top-level elements.
pub(super) fn frame_geometry(ds: &InMemDicomObject, frames: usize) -> FrameGeometry {
    let top_slope = elem_f64(ds, tags::RESCALE_SLOPE);
    let top_inter = elem_f64(ds, tags::RESCALE_INTERCEPT);
    let top_ipp = elem_vec3(ds, tags::IMAGE_POSITION_PATIENT);
    let top_iop = elem_vec6(ds, tags::IMAGE_ORIENTATION_PATIENT);
    let top_spacing =
        elem_floats(ds, tags::PIXEL_SPACING).and_then(|v| Some([*v.first()?, *v.get(1)?]));
    let top_thick = elem_f64(ds, tags::SLICE_THICKNESS);
    let instance = elem_int(ds, tags::INSTANCE_NUMBER).unwrap_or(0);
    let acquisition = elem_int(ds, tags::ACQUISITION_NUMBER).unwrap_or(0);
    let temporal = elem_int(ds, tags::TEMPORAL_POSITION_IDENTIFIER).unwrap_or(0);
    let echo = elem_int(ds, tags::ECHO_NUMBERS).unwrap_or(0);

    let shared = first_item(ds, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = ds
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items());
    let enhanced = shared.is_some() || per_frame.is_some();
    let mut frame_geo = Vec::with_capacity(frames);
    let mut spacing_between = elem_f64(ds, tags::SPACING_BETWEEN_SLICES);
    for f in 0..frames {
        let fr = per_frame.and_then(|items| items.get(f));
        let ipp = fg_lookup(fr, shared, tags::PLANE_POSITION_SEQUENCE, |it| {
            elem_vec3(it, tags::IMAGE_POSITION_PATIENT)
        });
        let iop = fg_lookup(fr, shared, tags::PLANE_ORIENTATION_SEQUENCE, |it| {
            elem_vec6(it, tags::IMAGE_ORIENTATION_PATIENT)
        });
        let spacing = fg_lookup(fr, shared, tags::PIXEL_MEASURES_SEQUENCE, |it| {
            elem_floats(it, tags::PIXEL_SPACING).and_then(|v| Some([*v.first()?, *v.get(1)?]))
        });
        let thickness = fg_lookup(fr, shared, tags::PIXEL_MEASURES_SEQUENCE, |it| {
            elem_f64(it, tags::SLICE_THICKNESS)
        });
        if spacing_between.is_none() {
            spacing_between = fg_lookup(fr, shared, tags::PIXEL_MEASURES_SEQUENCE, |it| {
                elem_f64(it, tags::SPACING_BETWEEN_SLICES)
            });
        }
        let slope = fg_lookup(
            fr,
            shared,
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            |it| elem_f64(it, tags::RESCALE_SLOPE),
        );
        let intercept = fg_lookup(
            fr,
            shared,
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            |it| elem_f64(it, tags::RESCALE_INTERCEPT),
        );
        let fc = fr.and_then(|x| first_item(x, tags::FRAME_CONTENT_SEQUENCE));
        let temporal_idx = fc.and_then(|c| elem_int(c, tags::TEMPORAL_POSITION_INDEX));
        let order = if enhanced {
            [temporal_idx.unwrap_or(0), 0, 0, f as i64]
        } else {
            [
                temporal,
                echo,
                acquisition,
                instance.saturating_mul(1_000_000).saturating_add(f as i64),
            ]
        };
        let slope = slope.or(top_slope).unwrap_or(1.0);
        frame_geo.push(FrameGeo {
            ipp: ipp.or(top_ipp),
            iop: iop.or(top_iop),
            spacing: spacing.or(top_spacing),
            thickness: thickness.or(top_thick),
            // A zero slope is a broken header; treat it as "no scaling".
            slope: if slope == 0.0 { 1.0 } else { slope },
            intercept: intercept.or(top_inter).unwrap_or(0.0),
            order,
        });
    }
    FrameGeometry {
        frames: frame_geo,
        spacing_between,
        enhanced,
    }
}

/// Row and column direction cosines of an IOP, normalised; `None` when degenerate.
fn directions(iop: &[f64; 6]) -> Option<([f64; 3], [f64; 3])> {
    let r = unit([iop[0], iop[1], iop[2]])?;
    let c = unit([iop[3], iop[4], iop[5]])?;
    unit(cross(r, c))?;
    Some((r, c))
}

/// An image of the output volume: which file and frame fills slice k.
#[derive(Clone, Copy, Debug)]
pub(super) struct SliceSource {
    /// Index of the file in the series.
    pub(super) file: usize,
    /// Frame within that file.
    pub(super) frame: usize,
}

/// The chosen slices in volume order, the LPS affine, and notes.
pub(super) struct Assembly {
    pub(super) slices: Vec<SliceSource>,
    pub(super) affine_lps: Affine,
    pub(super) notes: Vec<String>,
}

/// Orders the images of a series into a volume and computes its geometry.
pub(super) fn assemble(
    files: &[FileInfo],
    label: &Path,
    opts: &LoadOptions,
) -> Result<Assembly, VolumeError> {
    let mut images: Vec<(SliceSource, &FrameGeo)> = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        for (k, g) in f.frame_geo.iter().enumerate() {
            images.push((SliceSource { file: fi, frame: k }, g));
        }
    }
    let Some(&(_, first)) = images.first() else {
        return Err(VolumeError::InconsistentSeries {
            path: label.to_path_buf(),
            detail: "no images".into(),
        });
    };
    let mut notes = Vec::new();
    let spacing = match first.spacing {
        Some([dr, dc]) if dr > 0.0 && dc > 0.0 => [dr, dc],
        _ => {
            notes.push("no PixelSpacing: in-plane voxel size set to 1 mm".to_string());
            [1.0, 1.0]
        }
    };
    let dirs = first.iop.as_ref().and_then(directions);
    let (r, c) = match dirs {
        Some(d) => d,
        None => {
            notes.push(
                "no ImageOrientationPatient: orientation unknown (identity assumed)".to_string(),
            );
            ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
        }
    };
    let n = cross(r, c);
    let same_orientation =
        images
            .iter()
            .all(|(_, g)| match (g.iop.as_ref().and_then(directions), dirs) {
                (Some((r2, c2)), Some((r1, c1))) => {
                    norm(sub(r2, r1)) < 1e-3 && norm(sub(c2, c1)) < 1e-3
                }
                (None, None) => true,
                _ => false,
            });
    let all_positions = images.iter().all(|(_, g)| g.ipp.is_some());
    let fallback_step = |notes: &mut Vec<String>| -> f64 {
        let sbs = files
            .first()
            .and_then(|f| f.spacing_between)
            .filter(|v| *v > 0.0);
        let thick = first.thickness.filter(|v| *v > 0.0);
        match (sbs, thick) {
            (Some(s), _) => {
                notes.push(format!(
                    "no per-slice positions: slice step {s} mm from SpacingBetweenSlices"
                ));
                s
            }
            (None, Some(t)) => {
                notes.push(format!(
                    "no per-slice positions: slice step {t} mm from SliceThickness"
                ));
                t
            }
            _ => {
                notes.push(
                    "no per-slice positions or slice spacing: slice step set to 1 mm".to_string(),
                );
                1.0
            }
        }
    };

    let origin;
    let step: [f64; 3];
    let mut volumes_available = 1;
    let slices: Vec<SliceSource>;
    if images.len() == 1 {
        // A single 2-D image: the third axis is the normal, one slice thickness long.
        let t = first
            .thickness
            .filter(|v| *v > 0.0)
            .or(files.first().and_then(|f| f.spacing_between))
            .unwrap_or(1.0);
        origin = first.ipp.unwrap_or([0.0; 3]);
        if first.ipp.is_none() {
            notes.push("no ImagePositionPatient: origin set to 0".to_string());
        }
        step = [n[0] * t, n[1] * t, n[2] * t];
        slices = images.iter().map(|(s, _)| *s).collect();
    } else if !same_orientation {
        let t = fallback_step(&mut Vec::new());
        notes.push(format!(
            "images have different orientations (e.g. a localizer): {} images stacked in file/frame order; geometry of the first image, slice step {t} mm along its normal — not a true 3-D volume",
            images.len()
        ));
        origin = first.ipp.unwrap_or([0.0; 3]);
        step = [n[0] * t, n[1] * t, n[2] * t];
        let mut ordered = images.clone();
        ordered.sort_by_key(|(s, g)| (g.order, s.file, s.frame));
        slices = ordered.iter().map(|(s, _)| *s).collect();
    } else if !all_positions {
        let t = fallback_step(&mut notes);
        origin = first.ipp.unwrap_or([0.0; 3]);
        if first.ipp.is_none() {
            notes.push("no ImagePositionPatient: origin set to 0".to_string());
        }
        step = [n[0] * t, n[1] * t, n[2] * t];
        slices = images.iter().map(|(s, _)| *s).collect();
    } else {
        // Group by position along the normal; equal counts per position mean 4-D data.
        let mut keyed: Vec<(f64, SliceSource, &FrameGeo)> = images
            .iter()
            .map(|(s, g)| (dot(g.ipp.unwrap_or([0.0; 3]), n), *s, *g))
            .collect();
        keyed.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.2.order.cmp(&b.2.order))
                .then((a.1.file, a.1.frame).cmp(&(b.1.file, b.1.frame)))
        });
        let mut groups: Vec<Vec<(f64, SliceSource, &FrameGeo)>> = Vec::new();
        for item in keyed {
            match groups.last_mut() {
                Some(g)
                    if g.first()
                        .map(|f| (item.0 - f.0).abs() < 0.01)
                        .unwrap_or(false) =>
                {
                    g.push(item)
                }
                _ => groups.push(vec![item]),
            }
        }
        let per_position = groups.first().map(|g| g.len()).unwrap_or(1);
        if groups.iter().any(|g| g.len() != per_position) {
            let counts: Vec<String> = groups.iter().map(|g| g.len().to_string()).collect();
            return Err(VolumeError::InconsistentSeries {
                path: label.to_path_buf(),
                detail: format!(
                    "{} slice positions hold different numbers of images ({}); the series has missing or extra files",
                    groups.len(),
                    counts.join(", ")
                ),
            });
        }
        volumes_available = per_position;
        if per_position > 1 {
            if opts.volume >= per_position {
                return Err(VolumeError::VolumeIndex {
                    path: label.to_path_buf(),
                    index: opts.volume,
                    count: per_position,
                });
            }
            notes.push(format!(
                "4-D input: volume {} of {} shown",
                opts.volume + 1,
                per_position
            ));
        }
        let chosen: Vec<(f64, SliceSource, &FrameGeo)> = groups
            .iter()
            .filter_map(|g| g.get(opts.volume.min(per_position - 1)).copied())
            .collect();
        let p_first = chosen.first().and_then(|x| x.2.ipp).unwrap_or([0.0; 3]);
        let p_last = chosen.last().and_then(|x| x.2.ipp).unwrap_or([0.0; 3]);
        let count = chosen.len();
        if count >= 2 {
            let d = sub(p_last, p_first);
            let m = (count - 1) as f64;
            step = [d[0] / m, d[1] / m, d[2] / m];
            let gaps: Vec<f64> = chosen.windows(2).map(|w| w[1].0 - w[0].0).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let (lo, hi) = gaps
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &g| {
                    (a.min(g), b.max(g))
                });
            if hi - lo > 0.01 * mean.abs().max(1e-6) && hi - lo > 1e-3 {
                notes.push(format!(
                    "slice spacing is not uniform (gaps {lo:.3} to {hi:.3} mm): the affine uses the mean gap {mean:.3} mm"
                ));
            }
            let along = dot(step, n) / norm(step).max(1e-12);
            if along < 0.9999 {
                notes.push(format!(
                    "slices are sheared (gantry tilt of {:.2} degrees): the affine holds the shear",
                    along.clamp(-1.0, 1.0).acos().to_degrees()
                ));
            }
            if let Some(sbs) = files.first().and_then(|f| f.spacing_between)
                && mean > 0.0
                && (sbs - mean).abs() > 0.01 * mean
                && (sbs - mean).abs() > 1e-3
            {
                notes.push(format!(
                    "SpacingBetweenSlices says {sbs} mm but positions are {mean:.4} mm apart: positions used"
                ));
            }
        } else {
            let t = first.thickness.filter(|v| *v > 0.0).unwrap_or(1.0);
            step = [n[0] * t, n[1] * t, n[2] * t];
        }
        origin = p_first;
        slices = chosen.iter().map(|x| x.1).collect();
    }
    if opts.volume >= volumes_available {
        return Err(VolumeError::VolumeIndex {
            path: label.to_path_buf(),
            index: opts.volume,
            count: volumes_available,
        });
    }
    let mut affine_lps = geometry::IDENTITY;
    for i in 0..3 {
        affine_lps[i][0] = r[i] * spacing[1];
        affine_lps[i][1] = c[i] * spacing[0];
        affine_lps[i][2] = step[i];
        affine_lps[i][3] = origin[i];
    }
    if geometry::det3(&geometry::linear_part(&affine_lps)).abs() < 1e-9 {
        // Coincident positions would give a singular affine: fall back to the normal.
        let t = first.thickness.filter(|v| *v > 0.0).unwrap_or(1.0);
        for (i, row) in affine_lps.iter_mut().enumerate().take(3) {
            row[2] = n[i] * t;
        }
        notes.push("slice positions coincide: slice step taken along the normal".to_string());
    }
    Ok(Assembly {
        slices,
        affine_lps,
        notes,
    })
}

/// The same affine mapping to RAS instead of LPS (x and y negated).
pub(super) fn lps_to_ras(a: &Affine) -> Affine {
    let mut out = *a;
    for c in 0..4 {
        out[0][c] = -a[0][c];
        out[1][c] = -a[1][c];
    }
    out
}
