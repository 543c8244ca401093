//! What a loaded DICOM series keeps of its source so that a derived series (the SR) can be
//! written into the same study: the patient and study attributes to copy, the study and frame
//! of reference UIDs, the series' number and description, the MR acquisition attributes, and the
//! SOP class and instance of the image behind every slice of the loaded volume.

use std::sync::Arc;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::object::{elem_f64, elem_int, elem_str};
use crate::volume::Affine;

/// Patient, General Study and Patient Study attributes copied into a derived series.
const COPIED: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::OTHER_PATIENT_I_DS_SEQUENCE,
    tags::PATIENT_AGE,
    tags::PATIENT_SIZE,
    tags::PATIENT_WEIGHT,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::STUDY_DESCRIPTION,
    tags::POSITION_REFERENCE_INDICATOR,
    tags::BODY_PART_EXAMINED,
    tags::LATERALITY,
    tags::PATIENT_POSITION,
];

/// MR Image module attributes of the acquisition, copied into a derived MR image.
const ACQUISITION: &[Tag] = &[
    tags::SCANNING_SEQUENCE,
    tags::SEQUENCE_VARIANT,
    tags::SCAN_OPTIONS,
    tags::MR_ACQUISITION_TYPE,
    tags::SEQUENCE_NAME,
    tags::REPETITION_TIME,
    tags::ECHO_TIME,
    tags::ECHO_TRAIN_LENGTH,
    tags::INVERSION_TIME,
    tags::TRIGGER_TIME,
    tags::MAGNETIC_FIELD_STRENGTH,
    tags::IMAGING_FREQUENCY,
    tags::IMAGED_NUCLEUS,
    tags::FLIP_ANGLE,
];

/// The source image behind one slice of a loaded volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceInstance {
    /// SOPClassUID of the source image.
    pub sop_class_uid: String,
    /// SOPInstanceUID of the source image.
    pub sop_instance_uid: String,
    /// 1-based frame number within a multi-frame source; `None` for single-frame images.
    pub frame: Option<u32>,
}

/// What a DICOM series loaded as a [`crate::volume::Volume`] keeps of its source (carried in
/// [`crate::volume::VolumeMeta::dicom`]), to derive a series in the same study and frame of
/// reference.
#[derive(Clone, Debug)]
pub struct DicomSource {
    /// Patient and study attributes as stored in the first source image (copied verbatim).
    pub(crate) copied: Vec<InMemElement>,
    /// MR acquisition attributes of the first source image.
    pub(crate) acquisition: Vec<InMemElement>,
    /// StudyInstanceUID (the derived series joins this study).
    pub study_instance_uid: Option<String>,
    /// FrameOfReferenceUID (kept, so viewers link scrolling with the source).
    pub frame_of_reference_uid: Option<String>,
    /// SeriesInstanceUID of the source.
    pub series_instance_uid: String,
    /// SeriesNumber of the source.
    pub series_number: Option<i64>,
    /// SeriesDescription of the source.
    pub series_description: Option<String>,
    /// Modality of the source.
    pub modality: Option<String>,
    /// SliceThickness of the first source image.
    pub slice_thickness: Option<f64>,
    /// The loaded volume's voxel-to-RAS affine, as loaded (before any reorientation).
    pub affine: Affine,
    /// The source image of each slice `k` of the volume as loaded.
    pub instances: Vec<SourceInstance>,
}

impl DicomSource {
    /// Reads the attributes to keep from `ds`, the first image of the series.
    pub(super) fn from_first(
        ds: &InMemDicomObject,
        series_instance_uid: &str,
        affine: Affine,
        instances: Vec<SourceInstance>,
    ) -> Arc<DicomSource> {
        let pick = |list: &[Tag]| -> Vec<InMemElement> {
            list.iter()
                .filter_map(|t| ds.get(*t).cloned())
                .filter(|e| e.vr() != VR::UN)
                .collect()
        };
        Arc::new(DicomSource {
            copied: pick(COPIED),
            acquisition: pick(ACQUISITION),
            study_instance_uid: elem_str(ds, tags::STUDY_INSTANCE_UID),
            frame_of_reference_uid: elem_str(ds, tags::FRAME_OF_REFERENCE_UID),
            series_instance_uid: series_instance_uid.to_string(),
            series_number: elem_int(ds, tags::SERIES_NUMBER),
            series_description: elem_str(ds, tags::SERIES_DESCRIPTION),
            modality: elem_str(ds, tags::MODALITY),
            slice_thickness: elem_f64(ds, tags::SLICE_THICKNESS),
            affine,
            instances,
        })
    }
}
