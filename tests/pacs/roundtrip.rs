//! The working paths: echo, send, find (study and series, with filters, equal to findscu's
//! answers), get by C-GET and C-MOVE with pixels and UIDs identical to the seeded files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dicom_dictionary_std::tags;

use crate::orthanc::{self, Orthanc, Setup};
use crate::*;

#[test]
fn echo_answers() {
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    let v = json_ok(&deltawkv(&["pacs", "echo", "--pacs", &o.node(), "--json"]));
    assert_eq!(v["echo"], "ok");
    assert!(v["round_trip_ms"].as_f64().unwrap() > 0.0);
    let text = deltawkv(&["pacs", "echo", "--pacs", &o.node()]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("C-ECHO ok"));
}

#[test]
fn send_stores_the_series_in_its_study() {
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    let folder = fixture(TINY);
    let v = json_ok(&deltawkv(&[
        "pacs",
        "send",
        folder.to_str().unwrap(),
        "--pacs",
        &o.node(),
        "--json",
    ]));
    assert_eq!(v["sent"], 7);
    assert_eq!(v["series"], serde_json::json!([TINY_SERIES]));
    assert_eq!(v["studies"], serde_json::json!([TINY_STUDY]));
    // What Orthanc's REST API shows: the series, 7 instances, in the right study.
    let id = o.series_id(TINY_SERIES).expect("series in Orthanc");
    let series = o.get_json(&format!("/series/{id}"));
    assert_eq!(series["Instances"].as_array().unwrap().len(), 7);
    let study = o.get_json(&format!(
        "/studies/{}",
        series["ParentStudy"].as_str().unwrap()
    ));
    assert_eq!(study["MainDicomTags"]["StudyInstanceUID"], TINY_STUDY);
    // Sending again is idempotent for the PACS (same SOP instances).
    let again = json_ok(&deltawkv(&[
        "pacs",
        "send",
        folder.to_str().unwrap(),
        "--pacs",
        &o.node(),
        "--json",
    ]));
    assert_eq!(again["sent"], 7);
    assert_eq!(o.get_json("/instances").as_array().unwrap().len(), 7);
}

fn seeded() -> Option<Orthanc> {
    let o = Orthanc::start(&Setup::default())?;
    assert_eq!(o.seed(&fixture(TINY)), 7);
    assert_eq!(o.seed(&fixture(PD)), 8);
    Some(o)
}

fn find(o: &Orthanc, extra: &[&str]) -> Vec<serde_json::Value> {
    let node = o.node();
    let mut args = vec!["pacs", "find", "--pacs", node.as_str(), "--json"];
    args.extend_from_slice(extra);
    let v = json_ok(&deltawkv(&args));
    v["matches"].as_array().unwrap().clone()
}

fn uids(matches: &[serde_json::Value], key: &str) -> BTreeSet<String> {
    matches
        .iter()
        .map(|m| m[key].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn find_studies_and_series_with_filters() {
    let Some(o) = seeded() else { return };
    let all = find(&o, &[]);
    assert_eq!(
        uids(&all, "study_instance_uid"),
        BTreeSet::from([TINY_STUDY.to_string(), PD_STUDY.to_string()])
    );
    let by_id = find(&o, &["--patient-id", "98890234"]);
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0]["study_instance_uid"], TINY_STUDY);
    assert_eq!(by_id[0]["instances"], 7);
    assert_eq!(by_id[0]["study_date"], "20030505");
    let by_name = find(&o, &["--patient-name", "Doe*"]);
    assert_eq!(
        uids(&by_name, "study_instance_uid"),
        BTreeSet::from([TINY_STUDY.into()])
    );
    let by_date = find(&o, &["--study-date", "20010101-20011231"]);
    assert_eq!(
        uids(&by_date, "study_instance_uid"),
        BTreeSet::from([PD_STUDY.into()])
    );
    assert!(find(&o, &["--modality", "CT"]).is_empty());

    let series = find(&o, &["--level", "series", "--modality", "MR"]);
    let counts: BTreeMap<String, u64> = series
        .iter()
        .map(|m| {
            (
                m["series_instance_uid"].as_str().unwrap().to_string(),
                m["instances"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([(TINY_SERIES.to_string(), 7), (PD_SERIES.to_string(), 8)])
    );
    let tiny = series
        .iter()
        .find(|m| m["series_instance_uid"] == TINY_SERIES)
        .unwrap();
    assert_eq!(tiny["modality"], "MR");
    assert_eq!(tiny["series_description"], "ANGIO Projected from   C");
    assert_eq!(tiny["study_instance_uid"], TINY_STUDY);
    let pd_only = find(&o, &["--level", "series", "--patient-id", "123565"]);
    assert_eq!(
        uids(&pd_only, "series_instance_uid"),
        BTreeSet::from([PD_SERIES.into()])
    );
}

/// The values of `tag` in findscu's answers (its log lines `(gggg,eeee) XX [value]`).
fn findscu_values(stderr: &str, tag: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(tag))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l[start..].find(']')? + start;
            // dcmtk shows a UID with its even-length padding (a trailing NUL).
            Some(l[start..end].trim_end_matches('\0').trim().to_string())
        })
        .collect()
}

#[test]
fn find_agrees_with_dcmtk_findscu() {
    let Some(findscu) = orthanc::dcmtk("findscu") else {
        return;
    };
    let Some(o) = seeded() else { return };
    for (level, uid_tag, count_tag, key, extra) in [
        (
            "STUDY",
            "(0020,000d)",
            "(0020,1208)",
            "study_instance_uid",
            "study",
        ),
        (
            "SERIES",
            "(0020,000e)",
            "(0020,1209)",
            "series_instance_uid",
            "series",
        ),
    ] {
        let out = std::process::Command::new(&findscu)
            .args([
                "-S",
                "-aet",
                orthanc::DCMTK_AET,
                "-aec",
                orthanc::AET,
                "127.0.0.1",
            ])
            .arg(o.dicom_port.to_string())
            .args(["-k", &format!("QueryRetrieveLevel={level}")])
            .args(["-k", "StudyInstanceUID", "-k", "SeriesInstanceUID"])
            .args([
                "-k",
                "NumberOfStudyRelatedInstances",
                "-k",
                "NumberOfSeriesRelatedInstances",
            ])
            .output()
            .expect("run findscu");
        assert!(
            out.status.success(),
            "findscu: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        let theirs: BTreeMap<String, String> = findscu_values(&log, uid_tag)
            .into_iter()
            .zip(findscu_values(&log, count_tag))
            .collect();
        let ours: BTreeMap<String, String> = find(&o, &["--level", extra])
            .iter()
            .map(|m| {
                (
                    m[key].as_str().unwrap().to_string(),
                    m["instances"].to_string(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{level} level");
        assert_eq!(ours.len(), 2);
    }
}

/// Every seeded file has a retrieved twin (same SOP instance) with identical UIDs and pixel
/// data bytes.
pub fn assert_same_instances(seeded: &Path, retrieved: &Path) {
    let mut got = BTreeMap::new();
    for f in orthanc::dicom_files(retrieved) {
        let obj = dicom_object::open_file(&f).expect("retrieved file reads");
        let sop = obj
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        got.insert(sop, obj);
    }
    let originals = orthanc::dicom_files(seeded);
    assert_eq!(got.len(), originals.len(), "instance count");
    for f in originals {
        let a = dicom_object::open_file(&f).unwrap();
        let sop = a
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let b = got
            .get(&sop)
            .unwrap_or_else(|| panic!("{sop} not retrieved"));
        for tag in [
            tags::STUDY_INSTANCE_UID,
            tags::SERIES_INSTANCE_UID,
            tags::SOP_CLASS_UID,
            tags::ROWS,
            tags::COLUMNS,
        ] {
            assert_eq!(
                a.element(tag).unwrap().to_str().unwrap(),
                b.element(tag).unwrap().to_str().unwrap(),
                "{tag} of {sop}"
            );
        }
        assert_eq!(
            a.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
            b.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
            "pixel data of {sop}"
        );
        assert_eq!(a.meta().transfer_syntax(), b.meta().transfer_syntax());
    }
}

#[test]
fn get_retrieves_identical_instances() {
    let Some(o) = seeded() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pd");
    let v = json_ok(&deltawkv(&[
        "pacs",
        "get",
        "--pacs",
        &o.node(),
        "--series",
        PD_SERIES,
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["instances"], 8);
    assert_eq!(v["study_uid"], PD_STUDY);
    assert_same_instances(&fixture(PD), &out);
    // Only the output folder is left beside it (no temporary folder).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // The retrieved folder opens as a volume.
    let info = json_ok(&deltawkv(&["info", out.to_str().unwrap(), "--json"]));
    assert_eq!(info["dims"][2], 8, "{info}");
}

#[test]
fn move_retrieves_through_our_storage_scp() {
    let port = orthanc::free_port();
    let Some(o) = Orthanc::start(&Setup {
        move_port: Some(port),
        ..Setup::default()
    }) else {
        return;
    };
    o.seed(&fixture(TINY));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny");
    let v = json_ok(&deltawkv(&[
        "pacs",
        "get",
        "--move",
        "--move-port",
        &port.to_string(),
        "--pacs",
        &o.node(),
        "--series",
        TINY_SERIES,
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["instances"], 7);
    assert_same_instances(&fixture(TINY), &out);
    // The SCP port is closed again after the retrieve.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
