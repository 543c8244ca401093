//! Writing a volume (the SR) as a derived DICOM series: classic MR Image Storage, one instance
//! per slice, Explicit VR Little Endian, into a new folder written atomically.
//!
//! From a DICOM source (the volume's [`VolumeMeta::dicom`]) the series joins the source's study
//! and frame of reference, copies its patient and study attributes and references the source
//! images; from a NIfTI source it starts a new study for the patient named in the [`Provenance`].
//! Each slice `k` of the volume (its third voxel axis) becomes one image whose pixel `(c, r)` lies
//! exactly where the volume's affine puts voxel `(c, r, k)` (DICOM's LPS is RAS with x and y
//! negated), so the series and the NIfTI export of the same volume agree voxel for voxel.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use sha2::Digest;

use super::geometry::lps_to_ras;
use super::source::DicomSource;
use crate::volume::geometry::{Affine, apply, column, cross, dot, invert, norm, unit};
use crate::volume::{Volume, VolumeMeta};

/// This implementation's class UID in every file's meta group (a fixed `2.25.` UUID).
const IMPLEMENTATION_CLASS_UID: &str = "2.25.190873514637225467021543366371264839453";

/// Why a derived series could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DicomWriteError {
    /// The output folder exists and holds files.
    #[error(
        "{}: the folder already holds files; choose a new or empty folder (nothing was written)",
        .0.display()
    )]
    FolderNotEmpty(PathBuf),
    /// The output path is a file.
    #[error("{}: exists and is not a folder", .0.display())]
    NotAFolder(PathBuf),
    /// The output would replace or sit inside the source.
    #[error(
        "{}: would write inside the source {} (choose a folder outside it)",
        .out.display(), .source_path.display()
    )]
    InsideSource { out: PathBuf, source_path: PathBuf },
    /// The volume's geometry cannot be stored as classic images.
    #[error("the volume's geometry cannot be written as DICOM images: {0}")]
    Geometry(String),
    /// The checkpoint could not be read for its SHA-256.
    #[error("cannot read the checkpoint {}: {source}", .path.display())]
    Checkpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Creating, writing or renaming a file or folder failed.
    #[error("{context} {}: {source}", .path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// dicom-object refused an element or the file.
    #[error("cannot encode {}: {detail}", .path.display())]
    Encode { path: PathBuf, detail: String },
}

/// Where the SR came from, written into every instance of the derived series.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// The upscaling factor (in-plane).
    pub scale: usize,
    /// The network's name, e.g. `Delta-WKV`.
    pub network: String,
    /// File name of the checkpoint.
    pub checkpoint_name: String,
    /// SHA-256 of the checkpoint file, lower-case hex.
    pub checkpoint_sha256: String,
    /// PatientName for a new study (NIfTI input); `None`: `ANONYMOUS`. Ignored for DICOM input.
    pub patient_name: Option<String>,
    /// PatientID for a new study (NIfTI input); `None`: `ANONYMOUS`. Ignored for DICOM input.
    pub patient_id: Option<String>,
}

impl Provenance {
    /// The provenance of an SR made x`scale` by the Delta-WKV checkpoint at `checkpoint` (its file
    /// name and SHA-256, read here).
    pub fn of_checkpoint(checkpoint: &Path, scale: usize) -> Result<Provenance, DicomWriteError> {
        Ok(Provenance {
            scale,
            network: "Delta-WKV".to_string(),
            checkpoint_name: checkpoint
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            checkpoint_sha256: sha256_file(checkpoint)?,
            patient_name: None,
            patient_id: None,
        })
    }
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, DicomWriteError> {
    let err = |source| DicomWriteError::Checkpoint {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What [`write_derived_series`] wrote.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WrittenSeries {
    /// The folder holding the series.
    pub folder: PathBuf,
    /// Its files, in slice order.
    pub files: Vec<PathBuf>,
    /// The new SeriesInstanceUID.
    pub series_instance_uid: String,
    /// The StudyInstanceUID (the source's, or a new one for NIfTI input).
    pub study_instance_uid: String,
    /// The FrameOfReferenceUID (the source's, or a new one).
    pub frame_of_reference_uid: String,
    /// The SeriesNumber written.
    pub series_number: i64,
}

/// A new UID: `2.25.` and a random (version 4) UUID as a decimal integer, at most 44 characters.
pub fn new_uid() -> Result<String, DicomWriteError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| DicomWriteError::Io {
        context: "no randomness for a UID from",
        path: PathBuf::from("the operating system"),
        source: std::io::Error::other(e.to_string()),
    })?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(format!("2.25.{}", u128::from_be_bytes(b)))
}

/// A Decimal String of at most 16 characters holding `v` as precisely as fits.
fn ds(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    for prec in (0..=12).rev() {
        let mut s = format!("{v:.prec$}");
        if s.contains('.') {
            s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        if s == "-0" {
            s = "0".to_string();
        }
        if s.len() <= 16 {
            return s;
        }
    }
    // |v| >= 1e16: scientific notation.
    format!("{v:.6e}")
}

/// A multi-valued Decimal String element.
fn ds_elem(tag: Tag, values: &[f64]) -> DataElement<InMemDicomObject> {
    let strs: Vec<String> = values.iter().map(|&v| ds(v)).collect();
    DataElement::new(tag, VR::DS, PrimitiveValue::Strs(strs.into()))
}

/// A single-valued string element.
fn str_elem(tag: Tag, vr: VR, value: impl Into<String>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value.into()))
}

/// An unsigned short element.
fn us_elem(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// `s` cut to at most `max` characters.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// UTC date (`YYYYMMDD`) and time (`HHMMSS`) now.
fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// The in-plane geometry of the volume's slices in LPS: unit row and column directions, pixel
/// spacing (between rows, between columns), the position of voxel (0, 0, k) and the slice normal.
struct SliceGeometry {
    row_dir: [f64; 3],
    col_dir: [f64; 3],
    spacing: [f64; 2],
    origin: [f64; 3],
    step: [f64; 3],
    normal: [f64; 3],
}

impl SliceGeometry {
    fn of(affine_ras: &Affine) -> Result<SliceGeometry, DicomWriteError> {
        // Negating x and y maps RAS to LPS as it maps LPS to RAS.
        let lps = lps_to_ras(affine_ras);
        let (a0, a1, a2) = (column(&lps, 0), column(&lps, 1), column(&lps, 2));
        let bad = |what: &str| DicomWriteError::Geometry(what.to_string());
        let row_dir = unit(a0).ok_or_else(|| bad("zero voxel size along i"))?;
        let col_dir = unit(a1).ok_or_else(|| bad("zero voxel size along j"))?;
        if dot(row_dir, col_dir).abs() > 1e-6 {
            return Err(bad(
                "the voxel axes i and j are not perpendicular (a sheared in-plane grid)",
            ));
        }
        let normal = unit(cross(row_dir, col_dir)).ok_or_else(|| bad("degenerate axes"))?;
        if dot(a2, normal).abs() < 1e-9 {
            return Err(bad("the slices lie in one plane"));
        }
        Ok(SliceGeometry {
            row_dir,
            col_dir,
            spacing: [norm(a1), norm(a0)],
            origin: column(&lps, 3),
            step: a2,
            normal,
        })
    }

    fn position(&self, k: usize) -> [f64; 3] {
        let k = k as f64;
        std::array::from_fn(|i| self.origin[i] + k * self.step[i])
    }
}

/// How the SR's float intensities are stored as 16-bit integers: `value = stored * slope +
/// intercept`, signed when the volume has negative values.
#[derive(Clone, Copy, Debug)]
struct Rescale {
    slope: f64,
    intercept: f64,
    signed: bool,
}

impl Rescale {
    /// The finest rescale that holds every finite value of `data` (intercept 0, so 0 stays 0).
    fn of(data: &[f32]) -> Rescale {
        let (lo, hi) = data
            .iter()
            .filter(|v| v.is_finite())
            .fold((0.0f64, 0.0f64), |(a, b), &v| {
                (a.min(f64::from(v)), b.max(f64::from(v)))
            });
        let signed = lo < 0.0;
        let range = if signed { 32766.0 } else { 65534.0 };
        let peak = lo.abs().max(hi);
        let slope = if peak > 0.0 { peak / range } else { 1.0 };
        // The slope as written (16 characters) is the one the readers apply.
        let slope = ds(slope).parse::<f64>().unwrap_or(slope);
        Rescale {
            slope: if slope > 0.0 { slope } else { 1.0 },
            intercept: 0.0,
            signed,
        }
    }

    /// The stored sample of `v` (non-finite values become 0).
    fn store(&self, v: f32) -> u16 {
        if !v.is_finite() {
            return 0;
        }
        let s = ((f64::from(v) - self.intercept) / self.slope).round();
        if self.signed {
            (s.clamp(-32768.0, 32767.0) as i16) as u16
        } else {
            s.clamp(0.0, 65535.0) as u16
        }
    }
}

/// The study-level identity of the derived series.
struct Identity {
    study_uid: String,
    frame_uid: String,
    series_uid: String,
    series_number: i64,
    description: String,
}

/// A derived series encoded in memory: the files of its folder and its identity.
#[derive(Clone, Debug)]
pub struct EncodedSeries {
    /// `(file name, bytes)` per instance, in slice order (`IM0001.dcm`, ...).
    pub files: Vec<(String, Vec<u8>)>,
    /// The new SeriesInstanceUID.
    pub series_instance_uid: String,
    /// The StudyInstanceUID (the source's, or a new one for NIfTI input).
    pub study_instance_uid: String,
    /// The FrameOfReferenceUID (the source's, or a new one).
    pub frame_of_reference_uid: String,
    /// The SeriesNumber written.
    pub series_number: i64,
}

/// Encodes `sr` as a derived DICOM series in memory: one MR image per slice along the volume's
/// third voxel axis, Explicit VR Little Endian. The source (`sr.meta.dicom`, or a new study for
/// NIfTI input) and `prov` fill the study, patient and derivation attributes. `label` names the
/// output in errors.
pub fn encode_derived_series(
    sr: &Volume,
    prov: &Provenance,
    label: &Path,
) -> Result<EncodedSeries, DicomWriteError> {
    let geo = SliceGeometry::of(&sr.affine)?;
    let source = sr.meta.dicom.as_deref();
    let ident = identity(source, &sr.meta, prov)?;
    let rescale = Rescale::of(&sr.data);
    let (lo, hi) = crate::volume::robust_range(&sr.data);
    let (wc, ww) = if lo.is_finite() && hi.is_finite() {
        (
            (f64::from(lo) + f64::from(hi)) / 2.0,
            f64::from(hi - lo).max(1e-3),
        )
    } else {
        (0.0, 1.0)
    };
    let common = common_elements(sr, source, prov, &ident, &geo, rescale, (wc, ww));
    let n = sr.dims[2];
    let width = n.to_string().len().max(4);
    let mut files = Vec::with_capacity(n);
    for k in 0..n {
        let name = format!("IM{:0width$}.dcm", k + 1);
        let encode_err = |detail: String| DicomWriteError::Encode {
            path: label.join(&name),
            detail,
        };
        let obj = slice_object(sr, source, &geo, &common, rescale, k)?;
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                    .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                    .implementation_version_name(clip(
                        &format!("DELTAWKV_{}", env!("CARGO_PKG_VERSION")),
                        16,
                    )),
            )
            .map_err(|e| encode_err(e.to_string()))?;
        let mut bytes = Vec::new();
        file.write_all(&mut bytes)
            .map_err(|e| encode_err(e.to_string()))?;
        files.push((name, bytes));
    }
    Ok(EncodedSeries {
        files,
        series_instance_uid: ident.series_uid,
        study_instance_uid: ident.study_uid,
        frame_of_reference_uid: ident.frame_uid,
        series_number: ident.series_number,
    })
}

/// Writes `sr` as a derived DICOM series ([`encode_derived_series`]) into the new folder
/// `out_dir` (which must not exist or be empty; its parent must exist), written into a temporary
/// folder beside `out_dir` and renamed into place at the end, so a failure leaves nothing behind.
pub fn write_derived_series(
    sr: &Volume,
    prov: &Provenance,
    out_dir: &Path,
) -> Result<WrittenSeries, DicomWriteError> {
    check_output(out_dir, &sr.meta)?;
    let series = encode_derived_series(sr, prov, out_dir)?;
    let parent = out_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".deltawkv-dicom-")
        .tempdir_in(parent)
        .map_err(|source| DicomWriteError::Io {
            context: "cannot create a temporary folder in",
            path: parent.to_path_buf(),
            source,
        })?;
    for (name, bytes) in &series.files {
        let path = tmp.path().join(name);
        let io = |source| DicomWriteError::Io {
            context: "cannot write",
            path: out_dir.join(name),
            source,
        };
        let mut f = std::fs::File::create(&path).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    // An empty folder in the way is replaced; one holding files was refused above.
    if out_dir.is_dir() {
        std::fs::remove_dir(out_dir).map_err(|source| DicomWriteError::Io {
            context: "cannot replace the empty folder",
            path: out_dir.to_path_buf(),
            source,
        })?;
    }
    let kept = tmp.keep();
    if let Err(source) = std::fs::rename(&kept, out_dir) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(DicomWriteError::Io {
            context: "cannot move the series into",
            path: out_dir.to_path_buf(),
            source,
        });
    }
    tracing::info!(
        "wrote {} DICOM images to {}",
        series.files.len(),
        out_dir.display()
    );
    Ok(WrittenSeries {
        folder: out_dir.to_path_buf(),
        files: series.files.iter().map(|(n, _)| out_dir.join(n)).collect(),
        series_instance_uid: series.series_instance_uid,
        study_instance_uid: series.study_instance_uid,
        frame_of_reference_uid: series.frame_of_reference_uid,
        series_number: series.series_number,
    })
}

/// Refuses an output folder that exists as a file, holds files, or lies inside the volume's
/// source; [`write_derived_series`] checks it again, callers check it before long work.
pub fn check_output(out_dir: &Path, meta: &VolumeMeta) -> Result<(), DicomWriteError> {
    if out_dir.exists() {
        if !out_dir.is_dir() {
            return Err(DicomWriteError::NotAFolder(out_dir.to_path_buf()));
        }
        let mut entries = std::fs::read_dir(out_dir).map_err(|source| DicomWriteError::Io {
            context: "cannot list",
            path: out_dir.to_path_buf(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(DicomWriteError::FolderNotEmpty(out_dir.to_path_buf()));
        }
    }
    if let Some(src) = &meta.source_path {
        let abs = |p: &Path| {
            std::path::absolute(p)
                .ok()
                .map(|a| a.canonicalize().unwrap_or(a))
        };
        let out_abs = out_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .and_then(abs)
            .zip(out_dir.file_name())
            .map(|(p, n)| p.join(n));
        if let (Some(o), Some(s)) = (out_abs, abs(src))
            && (o == s || o.starts_with(&s))
        {
            return Err(DicomWriteError::InsideSource {
                out: out_dir.to_path_buf(),
                source_path: src.clone(),
            });
        }
    }
    Ok(())
}

/// The study, frame of reference and series of the derived series.
fn identity(
    source: Option<&DicomSource>,
    meta: &VolumeMeta,
    prov: &Provenance,
) -> Result<Identity, DicomWriteError> {
    let of = |d: &str| clip(&format!("{d} SR x{} (not for diagnosis)", prov.scale), 64);
    let suffix_len = format!(" SR x{} (not for diagnosis)", prov.scale).len();
    let named = |d: Option<&str>| {
        let base = d.unwrap_or("").trim();
        let base = if base.is_empty() { "volume" } else { base };
        of(&clip(base, 64usize.saturating_sub(suffix_len)))
    };
    Ok(match source {
        Some(src) => Identity {
            study_uid: match &src.study_instance_uid {
                Some(u) => u.clone(),
                None => new_uid()?,
            },
            frame_uid: match &src.frame_of_reference_uid {
                Some(u) => u.clone(),
                None => new_uid()?,
            },
            series_uid: new_uid()?,
            // Above the source's: vendors number derived series this way (e.g. 701 -> 1701).
            series_number: src.series_number.map_or(1000, |n| n.max(0) + 1000),
            description: named(src.series_description.as_deref()),
        },
        None => Identity {
            study_uid: new_uid()?,
            frame_uid: new_uid()?,
            series_uid: new_uid()?,
            series_number: 1,
            description: named(
                meta.source_path
                    .as_deref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .as_deref(),
            ),
        },
    })
}

/// The elements every instance of the series shares.
fn common_elements(
    sr: &Volume,
    source: Option<&DicomSource>,
    prov: &Provenance,
    ident: &Identity,
    geo: &SliceGeometry,
    rescale: Rescale,
    window: (f64, f64),
) -> Vec<DataElement<InMemDicomObject>> {
    let (date, time) = now_utc();
    let mut e = Vec::new();
    match source {
        Some(src) => e.extend(src.copied.iter().cloned()),
        None => {
            let name = prov.patient_name.as_deref().unwrap_or("ANONYMOUS");
            let id = prov.patient_id.as_deref().unwrap_or("ANONYMOUS");
            if !(name.is_ascii() && id.is_ascii()) {
                e.push(str_elem(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
            }
            e.push(str_elem(tags::PATIENT_NAME, VR::PN, clip(name, 64)));
            e.push(str_elem(tags::PATIENT_ID, VR::LO, clip(id, 64)));
            e.push(str_elem(tags::STUDY_DATE, VR::DA, date.clone()));
            e.push(str_elem(tags::STUDY_TIME, VR::TM, time.clone()));
            e.push(str_elem(
                tags::STUDY_DESCRIPTION,
                VR::LO,
                "Delta-WKV super-resolution",
            ));
        }
    }
    // Type 2 attributes of the Patient, General Study and Frame of Reference modules: present,
    // empty when the source has no value.
    for (tag, vr) in [
        (tags::PATIENT_NAME, VR::PN),
        (tags::PATIENT_ID, VR::LO),
        (tags::PATIENT_BIRTH_DATE, VR::DA),
        (tags::PATIENT_SEX, VR::CS),
        (tags::STUDY_DATE, VR::DA),
        (tags::STUDY_TIME, VR::TM),
        (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        (tags::STUDY_ID, VR::SH),
        (tags::ACCESSION_NUMBER, VR::SH),
        (tags::POSITION_REFERENCE_INDICATOR, VR::LO),
        (tags::LATERALITY, VR::CS),
        (tags::PATIENT_POSITION, VR::CS),
    ] {
        if !e.iter().any(|x| x.tag() == tag) {
            e.push(DataElement::new(tag, vr, PrimitiveValue::Empty));
        }
    }
    let checkpoint = if prov.checkpoint_name.is_empty() {
        "unknown checkpoint".to_string()
    } else {
        format!(
            "checkpoint {} (SHA-256 {})",
            prov.checkpoint_name, prov.checkpoint_sha256
        )
    };
    let derivation = clip(
        &format!(
            "Super-resolution x{} in-plane by the {} network, {checkpoint}, deltawkv {}. \
             Not for diagnosis.",
            prov.scale,
            if prov.network.is_empty() {
                "Delta-WKV"
            } else {
                &prov.network
            },
            env!("CARGO_PKG_VERSION")
        ),
        1024,
    );
    let thickness = source
        .and_then(|s| s.slice_thickness)
        .filter(|t| *t > 0.0)
        .unwrap_or_else(|| dot(geo.step, geo.normal).abs());
    e.extend([
        str_elem(tags::SOP_CLASS_UID, VR::UI, uids::MR_IMAGE_STORAGE),
        str_elem(tags::STUDY_INSTANCE_UID, VR::UI, ident.study_uid.clone()),
        str_elem(tags::SERIES_INSTANCE_UID, VR::UI, ident.series_uid.clone()),
        str_elem(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            ident.frame_uid.clone(),
        ),
        str_elem(tags::MODALITY, VR::CS, "MR"),
        str_elem(tags::SERIES_NUMBER, VR::IS, ident.series_number.to_string()),
        str_elem(tags::SERIES_DESCRIPTION, VR::LO, ident.description.clone()),
        str_elem(tags::SERIES_DATE, VR::DA, date.clone()),
        str_elem(tags::SERIES_TIME, VR::TM, time.clone()),
        str_elem(tags::CONTENT_DATE, VR::DA, date),
        str_elem(tags::CONTENT_TIME, VR::TM, time),
        DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            // Value 3 is required for MR images; OTHER is its defined term for none of the maps.
            PrimitiveValue::Strs(
                vec![
                    "DERIVED".to_string(),
                    "SECONDARY".to_string(),
                    "OTHER".to_string(),
                ]
                .into(),
            ),
        ),
        str_elem(tags::DERIVATION_DESCRIPTION, VR::ST, derivation),
        str_elem(tags::MANUFACTURER, VR::LO, "Delta-WKV project"),
        str_elem(
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            format!("deltawkv {}", env!("CARGO_PKG_VERSION")),
        ),
        str_elem(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"),
        ds_elem(
            tags::IMAGE_ORIENTATION_PATIENT,
            &[
                geo.row_dir[0],
                geo.row_dir[1],
                geo.row_dir[2],
                geo.col_dir[0],
                geo.col_dir[1],
                geo.col_dir[2],
            ],
        ),
        ds_elem(tags::PIXEL_SPACING, &geo.spacing),
        ds_elem(tags::SLICE_THICKNESS, &[thickness]),
        ds_elem(
            tags::SPACING_BETWEEN_SLICES,
            &[dot(geo.step, geo.normal).abs()],
        ),
        us_elem(tags::SAMPLES_PER_PIXEL, 1),
        str_elem(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us_elem(tags::ROWS, sr.dims[1].min(65535) as u16),
        us_elem(tags::COLUMNS, sr.dims[0].min(65535) as u16),
        us_elem(tags::BITS_ALLOCATED, 16),
        us_elem(tags::BITS_STORED, 16),
        us_elem(tags::HIGH_BIT, 15),
        us_elem(tags::PIXEL_REPRESENTATION, u16::from(rescale.signed)),
        ds_elem(tags::RESCALE_INTERCEPT, &[rescale.intercept]),
        ds_elem(tags::RESCALE_SLOPE, &[rescale.slope]),
        str_elem(tags::RESCALE_TYPE, VR::LO, "US"),
        ds_elem(tags::WINDOW_CENTER, &[window.0]),
        ds_elem(tags::WINDOW_WIDTH, &[window.1]),
    ]);
    // The MR Image module: the source's acquisition, or "research mode" for a NIfTI input.
    if let Some(src) = source {
        e.extend(src.acquisition.iter().cloned());
    }
    for (tag, vr, value) in [
        (tags::SCANNING_SEQUENCE, VR::CS, "RM"),
        (tags::SEQUENCE_VARIANT, VR::CS, "NONE"),
        (tags::SCAN_OPTIONS, VR::CS, ""),
        (tags::MR_ACQUISITION_TYPE, VR::CS, ""),
        (tags::REPETITION_TIME, VR::DS, ""),
        (tags::ECHO_TIME, VR::DS, ""),
        (tags::ECHO_TRAIN_LENGTH, VR::IS, ""),
    ] {
        if !e.iter().any(|x| x.tag() == tag) {
            e.push(if value.is_empty() {
                DataElement::new(tag, vr, PrimitiveValue::Empty)
            } else {
                str_elem(tag, vr, value)
            });
        }
    }
    e
}

/// The source images slice `k` of the SR derives from: the source slice at the same position
/// when the slices are parallel to the source's, else every source image.
fn sources_of_slice(
    sr: &Volume,
    source: &DicomSource,
    geo: &SliceGeometry,
    k: usize,
) -> Vec<usize> {
    let all = || (0..source.instances.len()).collect();
    let Some(inv) = invert(&source.affine) else {
        return all();
    };
    let src_lps_normal = {
        let (a0, a1) = (column(&source.affine, 0), column(&source.affine, 1));
        unit(cross(a0, a1)).map(|n| [-n[0], -n[1], n[2]])
    };
    let parallel = src_lps_normal.is_some_and(|n| dot(n, geo.normal).abs() > 0.9999);
    if !parallel {
        return all();
    }
    let centre = [
        (sr.dims[0] as f64 - 1.0) / 2.0,
        (sr.dims[1] as f64 - 1.0) / 2.0,
        k as f64,
    ];
    let world = apply(&sr.affine, centre);
    let v = apply(&inv, world);
    let idx = v[2].round();
    if idx >= 0.0 && (idx as usize) < source.instances.len() && (v[2] - idx).abs() < 0.05 {
        vec![idx as usize]
    } else {
        all()
    }
}

/// The data set of slice `k`.
fn slice_object(
    sr: &Volume,
    source: Option<&DicomSource>,
    geo: &SliceGeometry,
    common: &[DataElement<InMemDicomObject>],
    rescale: Rescale,
    k: usize,
) -> Result<InMemDicomObject, DicomWriteError> {
    let mut obj = InMemDicomObject::from_element_iter(common.iter().cloned());
    obj.put(str_elem(tags::SOP_INSTANCE_UID, VR::UI, new_uid()?));
    obj.put(str_elem(tags::INSTANCE_NUMBER, VR::IS, (k + 1).to_string()));
    let ipp = geo.position(k);
    obj.put(ds_elem(tags::IMAGE_POSITION_PATIENT, &ipp));
    obj.put(ds_elem(tags::SLICE_LOCATION, &[dot(ipp, geo.normal)]));
    if let Some(src) = source {
        let items: Vec<InMemDicomObject> = sources_of_slice(sr, src, geo, k)
            .into_iter()
            .filter_map(|i| src.instances.get(i))
            .map(|inst| {
                let mut it = InMemDicomObject::from_element_iter([
                    str_elem(
                        tags::REFERENCED_SOP_CLASS_UID,
                        VR::UI,
                        inst.sop_class_uid.clone(),
                    ),
                    str_elem(
                        tags::REFERENCED_SOP_INSTANCE_UID,
                        VR::UI,
                        inst.sop_instance_uid.clone(),
                    ),
                ]);
                if let Some(f) = inst.frame {
                    it.put(str_elem(
                        tags::REFERENCED_FRAME_NUMBER,
                        VR::IS,
                        f.to_string(),
                    ));
                }
                it
            })
            .collect();
        if !items.is_empty() {
            obj.put(DataElement::new(
                tags::SOURCE_IMAGE_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(items),
            ));
        }
    }
    let plane = sr.dims[0] * sr.dims[1];
    let pixels: Vec<u16> = sr
        .data
        .get(k * plane..(k + 1) * plane)
        .unwrap_or_default()
        .iter()
        .map(|&v| rescale.store(v))
        .collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_16_characters() {
        for v in [
            -123.456_789_012_345_6,
            0.000_123_456_789,
            1e-20,
            -0.0,
            98_765.432_109_876_5,
            1e17,
        ] {
            let s = ds(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().expect("parses");
            assert!(
                (back - v).abs() <= 1e-9_f64.max(v.abs() * 1e-7),
                "{v} -> {s}"
            );
        }
        assert_eq!(ds(2.5), "2.5");
        assert_eq!(ds(-0.0), "0");
    }

    #[test]
    fn uids_are_valid_and_distinct() {
        let a = new_uid().expect("uid");
        let b = new_uid().expect("uid");
        assert_ne!(a, b);
        for u in [&a, &b] {
            assert!(u.len() <= 64 && u.starts_with("2.25."), "{u}");
            let tail = &u[5..];
            assert!(tail.bytes().all(|c| c.is_ascii_digit()) && !tail.starts_with('0'));
        }
    }

    #[test]
    fn rescale_keeps_the_range_without_clipping() {
        let data = [0.0f32, 1.5, 1234.567, f32::NAN];
        let r = Rescale::of(&data);
        assert!(!r.signed);
        for &v in &data[..3] {
            let back = f64::from(r.store(v)) * r.slope + r.intercept;
            assert!((back - f64::from(v)).abs() <= r.slope / 2.0 + 1e-9);
        }
        let s = Rescale::of(&[-10.0, 5.0]);
        assert!(s.signed);
        let back = f64::from(s.store(-10.0) as i16) * s.slope;
        assert!((back + 10.0).abs() <= s.slope / 2.0 + 1e-9);
    }

    #[test]
    fn civil_date_is_plausible() {
        let (d, t) = now_utc();
        assert_eq!(d.len(), 8);
        assert_eq!(t.len(), 6);
        assert!(d.as_str() >= "20240101");
    }
}
