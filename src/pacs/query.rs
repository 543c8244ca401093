//! C-FIND on the Study Root model: studies, or series (the studies that match the patient and
//! date filters, then their series that match the modality), with description, modality, date
//! and number of instances.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, Tag};

use super::dimse::{self, Link, Proposal, field};
use super::{Node, Options, PacsError};

/// The level of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One match per study.
    Study,
    /// One match per series.
    Series,
}

/// What to look for; empty fields match anything. Values may hold the DICOM wildcards `*` and `?`
/// (patient name, patient ID) and date ranges `YYYYMMDD-YYYYMMDD` (study date).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindQuery {
    /// Patient ID.
    pub patient_id: Option<String>,
    /// Patient's name (DICOM PN, e.g. `Doe^John`, `Doe*`).
    pub patient_name: Option<String>,
    /// Study date or range (`20240131`, `20240101-20240131`).
    pub study_date: Option<String>,
    /// Modality (`MR`): at study level matched against Modalities in Study.
    pub modality: Option<String>,
    /// Only this study.
    pub study_uid: Option<String>,
    /// Only this series (series level).
    pub series_uid: Option<String>,
}

/// One study or series found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Match {
    /// `study` or `series`.
    pub level: String,
    /// Patient ID.
    pub patient_id: Option<String>,
    /// Patient's name.
    pub patient_name: Option<String>,
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Study date (YYYYMMDD).
    pub study_date: Option<String>,
    /// Study description.
    pub study_description: Option<String>,
    /// Series Instance UID (series level).
    pub series_instance_uid: Option<String>,
    /// Series description (series level).
    pub series_description: Option<String>,
    /// Series number (series level).
    pub series_number: Option<i32>,
    /// Modality of the series, or the modalities in the study separated by `\`.
    pub modality: Option<String>,
    /// Series date where the PACS gives it, else the study date.
    pub date: Option<String>,
    /// Number of instances of the study or series.
    pub instances: Option<usize>,
}

/// Queries `node` at `level`. Matches come in the PACS's order.
pub fn find(
    node: &Node,
    query: &FindQuery,
    level: Level,
    options: &Options,
) -> Result<Vec<Match>, PacsError> {
    let mut link = Link::open(
        node,
        options,
        &[Proposal::new(dimse::STUDY_ROOT_FIND, dimse::UNCOMPRESSED)],
        &[],
    )?;
    let studies_query = FindQuery {
        // The modality filters series; at study level Modalities in Study does it.
        modality: if level == Level::Study {
            query.modality.clone()
        } else {
            None
        },
        ..query.clone()
    };
    let studies = if level == Level::Series && query.series_uid.is_some() {
        // One series asked for by UID: straight to the series level.
        vec![None]
    } else {
        let found = run(&mut link, &study_identifier(&studies_query))?
            .into_iter()
            .map(|o| study_match(&o))
            .filter(|m| !m.study_instance_uid.is_empty());
        if level == Level::Study {
            let out: Vec<Match> = found.collect();
            link.release();
            tracing::info!(node = %node, studies = out.len(), "C-FIND (study) done");
            return Ok(out);
        }
        found.map(Some).collect()
    };
    let mut out = Vec::new();
    for study in studies {
        let identifier =
            series_identifier(study.as_ref().map(|s| s.study_instance_uid.as_str()), query);
        for o in run(&mut link, &identifier)? {
            let m = series_match(&o, study.as_ref());
            if !m.study_instance_uid.is_empty() && m.series_instance_uid.is_some() {
                out.push(m);
            }
        }
    }
    link.release();
    tracing::info!(node = %node, series = out.len(), "C-FIND (series) done");
    Ok(out)
}

/// Sends one C-FIND and collects the pending responses' identifiers.
fn run(link: &mut Link, identifier: &InMemDicomObject) -> Result<Vec<InMemDicomObject>, PacsError> {
    let (pc, ts) = link
        .accepted()
        .into_iter()
        .find(|(_, a, _)| a == dimse::STUDY_ROOT_FIND)
        .map(|(id, _, ts)| (id, ts))
        .ok_or_else(|| PacsError::NoPresentationContext {
            address: link.address.clone(),
            what: "C-FIND (Study Root Query/Retrieve Information Model)".into(),
        })?;
    let data = dimse::encode_dataset(identifier, &ts, &link.address)?;
    let id = link.next_message_id();
    let cmd = dimse::query_rq(field::C_FIND_RQ, dimse::STUDY_ROOT_FIND, id, None);
    link.send_message(pc, &cmd, Some(&data), "C-FIND")?;
    let mut out = Vec::new();
    loop {
        let rsp = link.receive_message("C-FIND")?;
        if dimse::int(&rsp.command, tags::COMMAND_FIELD) != Some(field::C_FIND_RSP) {
            return Err(PacsError::Protocol {
                address: link.address.clone(),
                during: "C-FIND".into(),
                message: "an answer that is not a C-FIND response".into(),
            });
        }
        let status = dimse::status(&rsp.command);
        if dimse::is_pending(status) {
            if let Some(bytes) = rsp.data {
                out.push(dimse::decode_dataset(&bytes, &ts, &link.address)?);
            }
        } else if dimse::is_success_or_warning(status) {
            return Ok(out);
        } else {
            return Err(PacsError::Status {
                address: link.address.clone(),
                operation: "C-FIND",
                status,
                comment: dimse::error_comment(&rsp.command),
            });
        }
    }
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: Option<&str>) {
    let v = value.unwrap_or("");
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

fn study_identifier(q: &FindQuery) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tags::QUERY_RETRIEVE_LEVEL, VR::CS, Some("STUDY"));
    put(
        &mut o,
        tags::PATIENT_NAME,
        VR::PN,
        q.patient_name.as_deref(),
    );
    put(&mut o, tags::PATIENT_ID, VR::LO, q.patient_id.as_deref());
    put(&mut o, tags::STUDY_DATE, VR::DA, q.study_date.as_deref());
    put(
        &mut o,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        q.study_uid.as_deref(),
    );
    put(&mut o, tags::STUDY_DESCRIPTION, VR::LO, None);
    put(
        &mut o,
        tags::MODALITIES_IN_STUDY,
        VR::CS,
        q.modality.as_deref(),
    );
    put(
        &mut o,
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        VR::IS,
        None,
    );
    o
}

fn series_identifier(study_uid: Option<&str>, q: &FindQuery) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tags::QUERY_RETRIEVE_LEVEL, VR::CS, Some("SERIES"));
    put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, study_uid);
    put(
        &mut o,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        q.series_uid.as_deref(),
    );
    put(&mut o, tags::MODALITY, VR::CS, q.modality.as_deref());
    put(&mut o, tags::SERIES_DESCRIPTION, VR::LO, None);
    put(&mut o, tags::SERIES_NUMBER, VR::IS, None);
    put(&mut o, tags::SERIES_DATE, VR::DA, None);
    put(
        &mut o,
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        VR::IS,
        None,
    );
    o
}

fn count(o: &InMemDicomObject, tag: Tag) -> Option<usize> {
    dimse::text(o, tag).and_then(|s| s.trim().parse().ok())
}

fn study_match(o: &InMemDicomObject) -> Match {
    let study_date = dimse::text(o, tags::STUDY_DATE);
    Match {
        level: "study".into(),
        patient_id: dimse::text(o, tags::PATIENT_ID),
        patient_name: dimse::text(o, tags::PATIENT_NAME),
        study_instance_uid: dimse::text(o, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        study_date: study_date.clone(),
        study_description: dimse::text(o, tags::STUDY_DESCRIPTION),
        modality: dimse::text(o, tags::MODALITIES_IN_STUDY),
        date: study_date,
        instances: count(o, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        ..Match::default()
    }
}

fn series_match(o: &InMemDicomObject, study: Option<&Match>) -> Match {
    let base = study.cloned().unwrap_or_default();
    let study_uid = dimse::text(o, tags::STUDY_INSTANCE_UID).unwrap_or(base.study_instance_uid);
    let series_date = dimse::text(o, tags::SERIES_DATE);
    Match {
        level: "series".into(),
        study_instance_uid: study_uid,
        series_instance_uid: dimse::text(o, tags::SERIES_INSTANCE_UID),
        series_description: dimse::text(o, tags::SERIES_DESCRIPTION),
        series_number: dimse::text(o, tags::SERIES_NUMBER).and_then(|s| s.trim().parse().ok()),
        modality: dimse::text(o, tags::MODALITY),
        date: series_date.or(base.study_date.clone()),
        instances: count(o, tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
        ..base
    }
}
