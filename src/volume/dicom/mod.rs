//! DICOM reading: single files (single- or multi-frame, classic or enhanced), and folders of
//! one-file-per-slice series, with geometry from ImagePositionPatient/ImageOrientationPatient
//! (or the enhanced functional groups), converted from LPS to RAS.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::PixelDecoder;

use super::error::human_bytes;
use super::geometry::{self, Affine};
use super::nifti::read_full;
use super::{LoadOptions, SeriesInfo, Volume, VolumeError, VolumeMeta};

/// True when `prefix` holds the DICOM marker `DICM` at byte 128 (after the preamble) or at 0.
pub(crate) fn looks_like_dicom(prefix: &[u8]) -> bool {
    prefix.get(128..132) == Some(&b"DICM"[..]) || prefix.get(0..4) == Some(&b"DICM"[..])
}

/// Name of a transfer syntax UID, for error messages.
pub(crate) fn transfer_syntax_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline (Process 1)",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended (Process 2 & 4)",
        "1.2.840.10008.1.2.4.57" => "JPEG Lossless, Non-Hierarchical (Process 14)",
        "1.2.840.10008.1.2.4.70" => {
            "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, SV1)"
        }
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 (Lossless Only)",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.4.201" => "High-Throughput JPEG 2000 (Lossless Only)",
        "1.2.840.10008.1.2.4.202" => "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)",
        "1.2.840.10008.1.2.4.203" => "High-Throughput JPEG 2000",
        "1.2.840.10008.1.2.4.100" | "1.2.840.10008.1.2.4.101" => "MPEG-2",
        "1.2.840.10008.1.2.4.102" | "1.2.840.10008.1.2.4.103" => "MPEG-4 AVC/H.264",
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
            "JPEG XL"
        }
        _ => "unknown transfer syntax",
    }
}

// ---------------------------------------------------------------------------------------------
// Reading objects

fn dicom_err(path: &Path, e: impl std::fmt::Display) -> VolumeError {
    VolumeError::Dicom {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Opens a DICOM file (gzip-compressed when `gz`), fully or only up to the pixel data.
fn open_object(
    path: &Path,
    gz: bool,
    with_pixels: bool,
    budget: u64,
) -> Result<DefaultDicomObject, VolumeError> {
    let mut options = OpenFileOptions::new();
    if !with_pixels {
        options = options.read_until(tags::PIXEL_DATA);
    }
    let result = if gz {
        let file = std::fs::File::open(path).map_err(|e| VolumeError::Io {
            path: path.to_path_buf(),
            context: "cannot open".into(),
            source: e,
        })?;
        let mut decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        let mut bytes = Vec::new();
        // Compressed DICOM: bound the decompressed size by the memory budget.
        (&mut decoder)
            .take(budget.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| {
                let problem = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "truncated"
                } else {
                    "corrupt"
                };
                VolumeError::Gzip {
                    path: path.to_path_buf(),
                    problem,
                    detail: e.to_string(),
                }
            })?;
        if bytes.len() as u64 > budget {
            return Err(VolumeError::InputTooLarge {
                path: path.to_path_buf(),
                what: "the decompressed gzip DICOM stream".into(),
                needed_bytes: bytes.len() as u64,
                needed: format!("more than {}", human_bytes(budget)),
                budget: human_bytes(budget),
            });
        }
        check_lengths(
            path,
            &mut std::io::Cursor::new(&bytes[..]),
            bytes.len() as u64,
            with_pixels,
            budget,
        )?;
        options.from_reader(&bytes[..])
    } else {
        if with_pixels {
            // The whole file (pixel data included) is read into memory.
            let len = std::fs::metadata(path)
                .map_err(|e| VolumeError::Io {
                    path: path.to_path_buf(),
                    context: "cannot stat".into(),
                    source: e,
                })?
                .len();
            if len > budget {
                return Err(VolumeError::InputTooLarge {
                    path: path.to_path_buf(),
                    what: "the DICOM file".into(),
                    needed_bytes: len,
                    needed: human_bytes(len),
                    budget: human_bytes(budget),
                });
            }
        }
        let file = std::fs::File::open(path).map_err(|e| VolumeError::Io {
            path: path.to_path_buf(),
            context: "cannot open".into(),
            source: e,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
        check_lengths(path, &mut reader, len, with_pixels, budget)?;
        options.open_file(path)
    };
    result.map_err(|e| dicom_err(path, e))
}

/// Refuses element lengths past the end of the file (and oversized deflated data sets) before
/// the parser allocates them; see [`super::dicom_lengths`].
fn check_lengths<R: std::io::Read + std::io::Seek>(
    path: &Path,
    r: &mut R,
    total: u64,
    with_pixels: bool,
    budget: u64,
) -> Result<(), VolumeError> {
    use super::dicom_lengths::{Problem, check};
    match check(r, total, !with_pixels, budget) {
        Ok(()) => Ok(()),
        Err(Problem::Length(detail)) => Err(VolumeError::Dicom {
            path: path.to_path_buf(),
            detail,
        }),
        Err(Problem::Inflated(n)) => Err(VolumeError::InputTooLarge {
            path: path.to_path_buf(),
            what: "the inflated data set (Deflated Explicit VR Little Endian)".into(),
            needed_bytes: n,
            needed: format!("more than {}", human_bytes(budget)),
            budget: human_bytes(budget),
        }),
    }
}

fn elem_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    if s.is_empty() { None } else { Some(s) }
}

fn elem_floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let v = obj.get(tag)?.to_multi_float64().ok()?;
    if v.is_empty() || !v.iter().all(|x| x.is_finite()) {
        None
    } else {
        Some(v)
    }
}

fn elem_f64(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    elem_floats(obj, tag).and_then(|v| v.first().copied())
}

fn elem_int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

fn elem_vec3(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 3]> {
    let v = elem_floats(obj, tag)?;
    Some([*v.first()?, *v.get(1)?, *v.get(2)?])
}

fn elem_vec6(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 6]> {
    let v = elem_floats(obj, tag)?;
    let mut out = [0.0; 6];
    for (o, x) in out.iter_mut().zip(v.iter()) {
        *o = *x;
    }
    if v.len() < 6 { None } else { Some(out) }
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

// ---------------------------------------------------------------------------------------------
// Per-file and per-frame descriptions

/// What one DICOM file holds, read from its header.
#[derive(Clone, Debug)]
struct FileInfo {
    path: PathBuf,
    gz: bool,
    series_uid: String,
    description: Option<String>,
    modality: Option<String>,
    rows: usize,
    cols: usize,
    frames: usize,
    spacing_between: Option<f64>,
    mosaic: bool,
    /// One entry per frame.
    frame_geo: Vec<FrameGeo>,
    enhanced: bool,
    /// Stored sample type, e.g. `int16`, `uint16 (12 bits stored)`.
    datatype: String,
    /// Transfer Syntax UID.
    ts_uid: String,
}

/// Geometry and scaling of one 2-D image (a slice file or a frame).
#[derive(Clone, Debug)]
struct FrameGeo {
    ipp: Option<[f64; 3]>,
    iop: Option<[f64; 6]>,
    /// PixelSpacing: (between rows, between columns).
    spacing: Option<[f64; 2]>,
    thickness: Option<f64>,
    slope: f64,
    intercept: f64,
    /// Ordering key within a position for 4-D data (temporal index, echo, acquisition,
    /// instance/frame).
    order: [i64; 4],
}

fn describe(
    path: &Path,
    gz: bool,
    obj: &DefaultDicomObject,
    budget: u64,
) -> Result<FileInfo, VolumeError> {
    let ds: &InMemDicomObject = obj;
    let rows = elem_int(ds, tags::ROWS);
    let cols = elem_int(ds, tags::COLUMNS);
    let (rows, cols) = match (rows, cols) {
        (Some(r), Some(c)) if r > 0 && c > 0 => (r as usize, c as usize),
        _ => {
            let sop = elem_str(ds, tags::SOP_CLASS_UID)
                .unwrap_or_else(|| obj.meta().media_storage_sop_class_uid().to_string());
            return Err(VolumeError::NoPixelData {
                path: path.to_path_buf(),
                sop_class: sop,
            });
        }
    };
    let frames = match elem_int(ds, tags::NUMBER_OF_FRAMES) {
        Some(n) if n >= 1 => n as usize,
        Some(n) => {
            return Err(VolumeError::UnsupportedDicom {
                path: path.to_path_buf(),
                detail: format!("NumberOfFrames is {n}"),
            });
        }
        None => 1,
    };
    // Refuse absurd frame counts before allocating anything per frame (single-frame files are
    // checked as a whole series in `build_volume`).
    let needed = (rows as u64)
        .checked_mul(cols as u64)
        .and_then(|v| v.checked_mul(frames as u64))
        .and_then(|v| v.checked_mul(4));
    if frames > 1 && needed.is_none_or(|b| b > budget) {
        return Err(VolumeError::TooLarge {
            path: path.to_path_buf(),
            dims: format!("{cols}x{rows}x{frames}"),
            needed_bytes: needed.unwrap_or(u64::MAX),
            needed: needed
                .map(human_bytes)
                .unwrap_or_else(|| "more than 16 EiB".into()),
            budget: human_bytes(budget),
        });
    }
    // Every frame takes at least one byte of the file (of the decompressed stream for a gzip
    // file, at most 1032 times larger): a larger count is a broken header, refused before the
    // per-frame descriptions below are allocated (tiny frames pass the budget check).
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    let max_frames = file_len.saturating_mul(if gz { 1032 } else { 1 });
    if frames as u64 > max_frames {
        return Err(VolumeError::UnsupportedDicom {
            path: path.to_path_buf(),
            detail: format!(
                "NumberOfFrames is {frames}, more than a file of {file_len} bytes can hold"
            ),
        });
    }
    let series_uid = elem_str(ds, tags::SERIES_INSTANCE_UID)
        .unwrap_or_else(|| "(no SeriesInstanceUID)".to_string());
    let image_type = elem_str(ds, tags::IMAGE_TYPE)
        .unwrap_or_default()
        .to_uppercase();
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
    Ok(FileInfo {
        path: path.to_path_buf(),
        gz,
        series_uid,
        description: elem_str(ds, tags::SERIES_DESCRIPTION),
        modality: elem_str(ds, tags::MODALITY),
        rows,
        cols,
        frames,
        spacing_between,
        mosaic: image_type.contains("MOSAIC"),
        frame_geo,
        enhanced,
        datatype: sample_type(ds),
        ts_uid: obj.meta().transfer_syntax().to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Geometry

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}
fn unit(a: [f64; 3]) -> Option<[f64; 3]> {
    let n = norm(a);
    if n > 1e-6 && n.is_finite() {
        Some([a[0] / n, a[1] / n, a[2] / n])
    } else {
        None
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
struct SliceSource {
    file: usize,
    frame: usize,
}

/// The chosen slices in volume order, the LPS affine, and notes.
struct Assembly {
    slices: Vec<SliceSource>,
    affine_lps: Affine,
    notes: Vec<String>,
}

/// Orders the images of a series into a volume and computes its geometry.
fn assemble(files: &[FileInfo], label: &Path, opts: &LoadOptions) -> Result<Assembly, VolumeError> {
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

fn lps_to_ras(a: &Affine) -> Affine {
    let mut out = *a;
    for c in 0..4 {
        out[0][c] = -a[0][c];
        out[1][c] = -a[1][c];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pixels

/// Converts one decoded frame (native little-endian samples) to f32 with rescale.
/// How stored samples map to values.
#[derive(Clone, Copy, Debug)]
struct SampleFormat {
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
    slope: f64,
    intercept: f64,
}

fn frame_to_f32(
    path: &Path,
    bytes: &[u8],
    fmt: SampleFormat,
    out: &mut [f32],
) -> Result<(), VolumeError> {
    let SampleFormat {
        bits_allocated,
        bits_stored,
        signed,
        slope,
        intercept,
    } = fmt;
    let stored = u32::from(bits_stored.clamp(1, bits_allocated.max(1)));
    let fix_i = |raw: u64, width: u32| -> i64 {
        // Keep the stored bits; sign-extend when signed.
        let bits = stored.min(width);
        let mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let v = raw & mask;
        if signed && bits < 64 && (v >> (bits - 1)) & 1 == 1 {
            (v | !mask) as i64
        } else {
            v as i64
        }
    };
    let scale = |v: f64| (v * slope + intercept) as f32;
    match bits_allocated {
        8 => {
            for (o, &b) in out.iter_mut().zip(bytes.iter()) {
                *o = scale(fix_i(u64::from(b), 8) as f64);
            }
        }
        16 => {
            for (o, ch) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                let raw = u16::from_le_bytes([ch[0], ch[1]]);
                *o = scale(fix_i(u64::from(raw), 16) as f64);
            }
        }
        32 => {
            for (o, ch) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                let raw = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]);
                *o = scale(fix_i(u64::from(raw), 32) as f64);
            }
        }
        other => {
            return Err(VolumeError::UnsupportedDicom {
                path: path.to_path_buf(),
                detail: format!("BitsAllocated {other} (8, 16 or 32 supported)"),
            });
        }
    }
    Ok(())
}

/// Decodes the frames `wanted` (frame index -> output slice index) of one object into `data`.
fn decode_into(
    path: &Path,
    obj: &DefaultDicomObject,
    info: &FileInfo,
    wanted: &[(usize, usize)],
    data: &mut [f32],
) -> Result<(), VolumeError> {
    let ds: &InMemDicomObject = obj;
    if ds.get(tags::PIXEL_DATA).is_none() {
        if ds.get(tags::FLOAT_PIXEL_DATA).is_some()
            || ds.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
        {
            return Err(VolumeError::UnsupportedDicom {
                path: path.to_path_buf(),
                detail: "Float/Double Float Pixel Data is not supported".into(),
            });
        }
        let sop = elem_str(ds, tags::SOP_CLASS_UID)
            .unwrap_or_else(|| obj.meta().media_storage_sop_class_uid().to_string());
        return Err(VolumeError::NoPixelData {
            path: path.to_path_buf(),
            sop_class: sop,
        });
    }
    let spp = elem_int(ds, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if spp != 1 {
        let pi = elem_str(ds, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
        return Err(VolumeError::UnsupportedDicom {
            path: path.to_path_buf(),
            detail: format!("{spp} samples per pixel ({pi}): only greyscale images are supported"),
        });
    }
    let ts_uid = obj.meta().transfer_syntax().to_string();
    let decode_err = |detail: String| VolumeError::DicomDecode {
        path: path.to_path_buf(),
        ts_uid: ts_uid.clone(),
        ts_name: transfer_syntax_name(&ts_uid).to_string(),
        detail,
    };
    if ts_uid == "1.2.840.10008.1.2.5" {
        check_rle(ds, info.rows * info.cols).map_err(decode_err)?;
    }
    if matches!(
        ts_uid.as_str(),
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.57"
            | "1.2.840.10008.1.2.4.70"
    ) {
        let bits = elem_int(ds, tags::BITS_ALLOCATED).unwrap_or(0);
        check_jpeg(ds, info.rows, info.cols, bits).map_err(decode_err)?;
    }
    if matches!(
        ts_uid.as_str(),
        "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203"
    ) {
        check_j2k(ds, info.rows, info.cols).map_err(decode_err)?;
    }
    let decoded = catch_quietly(|| obj.decode_pixel_data())
        .map_err(|what| decode_err(format!("the decoder crashed on this data ({what})")))?
        .map_err(|e| decode_err(e.to_string()))?;
    if decoded.rows() as usize != info.rows || decoded.columns() as usize != info.cols {
        return Err(decode_err(format!(
            "decoded size {}x{} differs from Rows/Columns {}x{}",
            decoded.columns(),
            decoded.rows(),
            info.cols,
            info.rows
        )));
    }
    let signed = decoded.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed;
    let plane = info.rows * info.cols;
    for &(frame, slice) in wanted {
        let bytes = decoded
            .frame_data(frame as u32)
            .map_err(|e| decode_err(format!("frame {}: {e}", frame + 1)))?;
        let need = plane * usize::from(decoded.bits_allocated()).div_ceil(8);
        if bytes.len() < need {
            return Err(VolumeError::Truncated {
                path: path.to_path_buf(),
                expected: need as u64,
                found: bytes.len() as u64,
            });
        }
        let g = info.frame_geo.get(frame);
        let (slope, intercept) = g.map(|g| (g.slope, g.intercept)).unwrap_or((1.0, 0.0));
        let out = data
            .get_mut(slice * plane..(slice + 1) * plane)
            .ok_or_else(|| decode_err(format!("slice {slice} outside the volume")))?;
        let fmt = SampleFormat {
            bits_allocated: decoded.bits_allocated(),
            bits_stored: decoded.bits_stored(),
            signed,
            slope,
            intercept,
        };
        frame_to_f32(path, bytes, fmt, out)?;
    }
    Ok(())
}

/// Checks the segment tables and PackBits runs of RLE fragments, which dicom-pixeldata's RLE
/// decoder indexes unchecked (found by the `dicom_pixels` fuzz target: a slice index panic, a
/// segment table sized by a 32-bit count, an `unwrap` on a short run). `plane` is rows x columns,
/// the bytes each segment must decode to.
fn check_rle(ds: &InMemDicomObject, plane: usize) -> Result<(), String> {
    let Some(frags) = ds.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()) else {
        return Ok(());
    };
    let u32_at = |f: &[u8], at: usize| {
        f.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    for (i, f) in frags.iter().enumerate() {
        let frag = i + 1;
        if f.len() < 64 {
            return Err(format!(
                "RLE fragment {frag} is {} bytes, shorter than its 64-byte header",
                f.len()
            ));
        }
        let n = u32_at(f, 0).unwrap_or(0);
        if !(1..=15).contains(&n) {
            return Err(format!(
                "RLE fragment {frag} declares {n} segments (1 to 15)"
            ));
        }
        let mut offsets = Vec::with_capacity(n + 1);
        for k in 0..n {
            let off = u32_at(f, 4 + 4 * k).unwrap_or(usize::MAX);
            let lo = offsets.last().copied().unwrap_or(64);
            if off < lo || off > f.len() {
                return Err(format!(
                    "RLE fragment {frag}: segment {} starts at {off}, outside {lo}..={}",
                    k + 1,
                    f.len()
                ));
            }
            offsets.push(off);
        }
        offsets.push(f.len());
        for (k, w) in offsets.windows(2).enumerate() {
            let produced = packbits_len(&f[w[0]..w[1]], plane);
            if produced < plane {
                return Err(format!(
                    "RLE fragment {frag}: segment {} decodes to {produced} bytes, {plane} expected",
                    k + 1
                ));
            }
        }
    }
    Ok(())
}

/// Checks the frame size in the SOF header of every JPEG codestream against Rows, Columns and
/// BitsAllocated: dicom-pixeldata's JPEG adapter copies each decoded image into a buffer sized
/// from Rows x Columns without a bounds check (found by the `dicom_pixels` fuzz target: a slice
/// index panic).
fn check_jpeg(ds: &InMemDicomObject, rows: usize, cols: usize, bits: i64) -> Result<(), String> {
    let Some(frags) = ds.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()) else {
        return Ok(());
    };
    for (i, f) in frags.iter().enumerate() {
        if !f.starts_with(&[0xff, 0xd8]) {
            continue;
        }
        let Some((precision, height, width, components)) = jpeg_sof(f) else {
            continue;
        };
        let bytes = if precision > 8 { 2 } else { 1 };
        if (height, width) != (rows, cols) || components != 1 || bytes * 8 > bits.max(0) as usize {
            return Err(format!(
                "JPEG codestream in fragment {} is {width}x{height}, {components} component(s) of \
                 {precision} bits, but the header says {cols}x{rows}, 1 sample of {bits} bits",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Checks the image and component sizes in the SIZ marker of every JPEG 2000 codestream against
/// Rows and Columns: dicom-pixeldata's JPEG 2000 adapter writes every decoded sample (and one
/// component too many) into a buffer sized from Rows x Columns without a bounds check (found by
/// the `dicom_pixels` fuzz target: a slice index panic).
fn check_j2k(ds: &InMemDicomObject, rows: usize, cols: usize) -> Result<(), String> {
    let Some(frags) = ds.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()) else {
        return Ok(());
    };
    const SIZ: [u8; 4] = [0xff, 0x4f, 0xff, 0x51];
    for (i, f) in frags.iter().enumerate() {
        // A raw codestream, or one inside a JP2 wrapper near the start.
        let head = &f[..f.len().min(4096)];
        let Some(at) = head.windows(4).position(|w| w == SIZ) else {
            continue;
        };
        let b = &f[at..];
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize)
        };
        let (Some(xsiz), Some(ysiz), Some(x0), Some(y0)) =
            (u32_at(8), u32_at(12), u32_at(16), u32_at(20))
        else {
            return Err(format!(
                "JPEG 2000 codestream in fragment {} is cut short",
                i + 1
            ));
        };
        let csiz = b
            .get(40..42)
            .map(|x| usize::from(u16::from_be_bytes([x[0], x[1]])))
            .unwrap_or(0);
        let mut sizes = Vec::new();
        for c in 0..csiz.min(16) {
            let (dx, dy) = match b.get(42 + 3 * c + 1..42 + 3 * c + 3) {
                Some(&[dx, dy]) if dx > 0 && dy > 0 => (usize::from(dx), usize::from(dy)),
                _ => (1, 1),
            };
            let w = xsiz.div_ceil(dx).saturating_sub(x0.div_ceil(dx));
            let h = ysiz.div_ceil(dy).saturating_sub(y0.div_ceil(dy));
            sizes.push((w, h));
        }
        if csiz != 1 || sizes.first() != Some(&(cols, rows)) {
            return Err(format!(
                "JPEG 2000 codestream in fragment {} holds {csiz} component(s) of sizes {sizes:?}, \
                 but the header says one of {cols}x{rows}",
                i + 1
            ));
        }
    }
    Ok(())
}

/// (precision, height, width, components) from the first SOF marker of a JPEG codestream.
fn jpeg_sof(b: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let mut i = 2;
    while i + 1 < b.len() {
        if b[i] != 0xff {
            return None;
        }
        let m = b[i + 1];
        i += 2;
        match m {
            0xff => i -= 1,
            0x01 | 0xd0..=0xd7 => {}
            0xd9 | 0xda => return None,
            _ => {
                let len = usize::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
                if matches!(m, 0xc0..=0xcf) && !matches!(m, 0xc4 | 0xc8 | 0xcc) {
                    let s = b.get(i + 2..i + 8)?;
                    return Some((
                        usize::from(s[0]),
                        usize::from(u16::from_be_bytes([s[1], s[2]])),
                        usize::from(u16::from_be_bytes([s[3], s[4]])),
                        usize::from(s[5]),
                    ));
                }
                i += len.max(2);
            }
        }
    }
    None
}

/// Bytes a PackBits segment decodes to (counting stops at `want`); a literal run cut short by
/// the end of the segment ends the count.
fn packbits_len(seg: &[u8], want: usize) -> usize {
    let (mut i, mut out) = (0usize, 0usize);
    while i < seg.len() && out < want {
        let h = seg[i] as i8;
        i += 1;
        match h {
            0..=127 => {
                let n = h as usize + 1;
                if i + n > seg.len() {
                    return out;
                }
                i += n;
                out += n;
            }
            -127..=-1 => {
                if i >= seg.len() {
                    return out;
                }
                i += 1;
                out += (1 - h as isize) as usize;
            }
            _ => {}
        }
    }
    out
}

/// Builds the volume of an assembled series, opening each file once.
fn build_volume(
    label: &Path,
    files: &[FileInfo],
    first_obj: Option<DefaultDicomObject>,
    opts: &LoadOptions,
    format: String,
) -> Result<Volume, VolumeError> {
    let Some(first) = files.first() else {
        return Err(VolumeError::InconsistentSeries {
            path: label.to_path_buf(),
            detail: "no images".into(),
        });
    };
    for f in files {
        if f.rows != first.rows || f.cols != first.cols {
            return Err(VolumeError::InconsistentSeries {
                path: label.to_path_buf(),
                detail: format!(
                    "{} is {}x{} but {} is {}x{}",
                    f.path.display(),
                    f.cols,
                    f.rows,
                    first.path.display(),
                    first.cols,
                    first.rows
                ),
            });
        }
    }
    let asm = assemble(files, label, opts)?;
    let dims = [first.cols, first.rows, asm.slices.len()];
    let nvox = (dims[0] as u64)
        .checked_mul(dims[1] as u64)
        .and_then(|v| v.checked_mul(dims[2] as u64));
    let needed = nvox.and_then(|v| v.checked_mul(4));
    if needed.map(|b| b > opts.memory_budget).unwrap_or(true) {
        return Err(VolumeError::TooLarge {
            path: label.to_path_buf(),
            dims: format!("{}x{}x{}", dims[0], dims[1], dims[2]),
            needed_bytes: needed.unwrap_or(u64::MAX),
            needed: needed
                .map(human_bytes)
                .unwrap_or_else(|| "more than 16 EiB".into()),
            budget: human_bytes(opts.memory_budget),
        });
    }
    let mut data = vec![0f32; dims[0] * dims[1] * dims[2]];
    // Which frames each file contributes.
    let mut per_file: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    for (k, s) in asm.slices.iter().enumerate() {
        per_file.entry(s.file).or_default().push((s.frame, k));
    }
    let mut first_obj = first_obj;
    for (fi, wanted) in per_file {
        let Some(info) = files.get(fi) else { continue };
        let obj = match (fi, first_obj.take()) {
            (0, Some(o)) => o,
            _ => open_object(&info.path, info.gz, true, opts.memory_budget)?,
        };
        decode_into(&info.path, &obj, info, &wanted, &mut data)?;
    }
    let affine = lps_to_ras(&asm.affine_lps);
    let mut notes = asm.notes;
    if files.iter().any(|f| f.mosaic) {
        notes.push(
            "Siemens mosaic: the tiles are not unpacked into slices; shown as stored".to_string(),
        );
    }
    if first.frames > 1 && !first.enhanced && files.len() == 1 {
        notes.push(format!(
            "multi-frame image ({} frames) without per-frame functional groups",
            first.frames
        ));
    }
    let non_finite = data.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        notes.push(format!("{non_finite} voxel(s) are NaN or infinite"));
    }
    let scaled = files
        .iter()
        .flat_map(|f| f.frame_geo.iter())
        .any(|g| g.slope != 1.0 || g.intercept != 0.0);
    if scaled {
        notes.push("Rescale Slope/Intercept applied".to_string());
    }
    let meta = VolumeMeta {
        source_path: Some(label.to_path_buf()),
        format,
        datatype: first.datatype.clone(),
        modality: first.modality.clone(),
        series_description: first.description.clone(),
        notes,
        non_finite,
        xform_code: 1,
    };
    let spacing = geometry::column_norms(&affine);
    Ok(Volume {
        data,
        dims,
        spacing,
        affine,
        meta,
    })
}

fn sample_type(ds: &InMemDicomObject) -> String {
    let alloc = elem_int(ds, tags::BITS_ALLOCATED).unwrap_or(0);
    let stored = elem_int(ds, tags::BITS_STORED).unwrap_or(alloc);
    let signed = elem_int(ds, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
    let base = format!("{}int{alloc}", if signed { "" } else { "u" });
    if stored > 0 && stored < alloc {
        format!("{base} ({stored} bits stored)")
    } else {
        base
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Loads one DICOM file (single image, classic or enhanced multi-frame).
pub(crate) fn load_file(path: &Path, gz: bool, opts: &LoadOptions) -> Result<Volume, VolumeError> {
    let obj = open_object(path, gz, true, opts.memory_budget)?;
    let info = describe(path, gz, &obj, opts.memory_budget)?;
    if let Some(wanted) = opts.series.as_deref()
        && wanted != info.series_uid
    {
        tracing::warn!(
            "{}: --series {wanted} ignored for a single file (its series is {})",
            path.display(),
            info.series_uid
        );
    }
    let ts = obj.meta().transfer_syntax().to_string();
    let kind = if info.enhanced {
        format!("DICOM enhanced multi-frame ({} frames)", info.frames)
    } else if info.frames > 1 {
        format!("DICOM multi-frame ({} frames)", info.frames)
    } else {
        "DICOM file".to_string()
    };
    let format = format!("{kind}, {}", transfer_syntax_name(&ts));
    build_volume(path, std::slice::from_ref(&info), Some(obj), opts, format)
}

/// Files under `folder` (recursively, at most 8 levels, hidden entries skipped), sorted.
fn walk(folder: &Path) -> Result<Vec<PathBuf>, VolumeError> {
    let mut out = Vec::new();
    let mut stack = vec![(folder.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| VolumeError::Io {
            path: dir.clone(),
            context: "cannot list folder".into(),
            source: e,
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() && depth < 8 => stack.push((p, depth + 1)),
                Ok(t) if (t.is_file() || t.is_symlink()) && p.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a file is DICOM by its first bytes; `Some(gz)` when it is.
fn sniff(path: &Path) -> Option<bool> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 132];
    let n = read_full(&mut f, &mut head).ok()?;
    let head = head.get(..n)?;
    if looks_like_dicom(head) {
        return Some(false);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        let f = std::fs::File::open(path).ok()?;
        let mut d = flate2::read::MultiGzDecoder::new(f);
        let mut inner = [0u8; 132];
        let n = read_full(&mut d, &mut inner).ok()?;
        if looks_like_dicom(inner.get(..n)?) {
            return Some(true);
        }
    }
    None
}

/// A series UID and the headers of its files.
type SeriesFiles = (String, Vec<FileInfo>);

/// Headers of every DICOM image in `folder`, grouped by SeriesInstanceUID (in order of first
/// appearance), and the number of files looked at.
fn scan_folder(folder: &Path, budget: u64) -> Result<Vec<SeriesFiles>, VolumeError> {
    let files = walk(folder)?;
    if files.is_empty() {
        return Err(VolumeError::EmptyFolder {
            path: folder.to_path_buf(),
        });
    }
    let mut groups: Vec<(String, Vec<FileInfo>)> = Vec::new();
    let mut first_error: Option<VolumeError> = None;
    for p in &files {
        let Some(gz) = sniff(p) else { continue };
        let described =
            open_object(p, gz, false, budget).and_then(|obj| describe(p, gz, &obj, budget));
        match described {
            Ok(info) => match groups.iter_mut().find(|(uid, _)| *uid == info.series_uid) {
                Some((_, v)) => v.push(info),
                None => groups.push((info.series_uid.clone(), vec![info])),
            },
            // One image over the budget means its series is too: say so rather than skip it.
            Err(e @ (VolumeError::TooLarge { .. } | VolumeError::InputTooLarge { .. })) => {
                return Err(e);
            }
            Err(e) => {
                tracing::debug!("skipping {}: {e}", p.display());
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    if groups.is_empty() {
        // A folder holding exactly one non-image DICOM deserves the specific error.
        return Err(match first_error {
            Some(e @ VolumeError::NoPixelData { .. }) if files.len() == 1 => e,
            _ => VolumeError::NoDicomFiles {
                path: folder.to_path_buf(),
                files: files.len(),
            },
        });
    }
    Ok(groups)
}

fn series_info(uid: &str, files: &[FileInfo]) -> SeriesInfo {
    let first = files.first();
    let slices: usize = files.iter().map(|f| f.frames).sum();
    SeriesInfo {
        uid: uid.to_string(),
        description: first
            .and_then(|f| f.description.clone())
            .unwrap_or_default(),
        modality: first.and_then(|f| f.modality.clone()).unwrap_or_default(),
        files: files.len(),
        slices,
        dims: [
            first.map(|f| f.cols).unwrap_or(0),
            first.map(|f| f.rows).unwrap_or(0),
            slices,
        ],
    }
}

/// The DICOM series in `folder`.
pub(crate) fn list_series(folder: &Path) -> Result<Vec<SeriesInfo>, VolumeError> {
    let groups = scan_folder(folder, crate::budget::default_budget())?;
    Ok(groups
        .iter()
        .map(|(uid, files)| series_info(uid, files))
        .collect())
}

/// Loads one series from a folder of DICOM files.
pub(crate) fn load_folder(folder: &Path, opts: &LoadOptions) -> Result<Volume, VolumeError> {
    let groups = scan_folder(folder, opts.memory_budget)?;
    let chosen =
        match opts.series.as_deref() {
            Some(uid) => groups.iter().find(|(u, _)| u == uid).ok_or_else(|| {
                VolumeError::SeriesNotFound {
                    path: folder.to_path_buf(),
                    uid: uid.to_string(),
                    available: groups.iter().map(|(u, f)| series_info(u, f)).collect(),
                }
            })?,
            None if groups.len() > 1 => {
                return Err(VolumeError::MultipleSeries {
                    path: folder.to_path_buf(),
                    series: groups.iter().map(|(u, f)| series_info(u, f)).collect(),
                });
            }
            None => groups.first().ok_or_else(|| VolumeError::NoDicomFiles {
                path: folder.to_path_buf(),
                files: 0,
            })?,
        };
    let files = &chosen.1;
    let ts_name = files
        .first()
        .map(|f| transfer_syntax_name(&f.ts_uid))
        .unwrap_or_default();
    let format = format!("DICOM series ({} files), {ts_name}", files.len());
    build_volume(folder, files, None, opts, format)
}

thread_local! {
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)` without the default "thread panicked" report on
/// stderr (the third-party pixel decoders panic on some malformed data; the caller reports a clean
/// error instead). Panics elsewhere, on any thread, are reported as before.
fn catch_quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.with(|q| q.get()) {
                tracing::debug!("pixel decoder panicked: {info}");
            } else {
                previous(info);
            }
        }));
    });
    QUIET_PANICS.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(false));
    r.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::catch_quietly;

    #[test]
    fn decoder_panics_become_errors_with_their_message() {
        assert_eq!(catch_quietly(|| 7), Ok(7));
        let r: Result<(), String> = catch_quietly(|| panic!("index out of bounds"));
        assert_eq!(r, Err("index out of bounds".to_string()));
        let n = 3;
        let r: Result<(), String> = catch_quietly(|| panic!("frame {n} too short"));
        assert_eq!(r, Err("frame 3 too short".to_string()));
        assert_eq!(catch_quietly(|| "ok"), Ok("ok"));
    }
}
