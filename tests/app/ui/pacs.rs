//! The viewer and a real PACS (Orthanc, started per test by `tests/pacs/orthanc.rs`), driven
//! through its menus and windows: File > Open from PACS lists the seeded study and series and
//! opens the chosen series (pixels equal to the seeded files); File > Send SR to PACS stores the
//! derived series in the source's study (checked through Orthanc's REST API); a PACS that is down
//! or rejects us gives a message, and the viewer keeps running.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use deltawkv::app::session::Mode;
use deltawkv::app::settings::PacsNode;
use deltawkv::app::{AppOptions, DeltaApp, Settings};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

use super::{harness, settle, test_settings, tiny_checkpoint};
use crate::orthanc::{self, Orthanc, Setup, TlsFiles};

const TINY: &str = "dicom_series_tiny16";
const PD: &str = "dicom_series_pd_oblique";
const TINY_STUDY: &str = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.1";
/// The TINY series' patient (the PD series has another).
const TINY_PATIENT_ID: &str = "98890234";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(name)
}

/// Settings whose only PACS node is `port` on loopback with `calling_ae`.
fn pacs_settings(port: u16, calling_ae: &str) -> Settings {
    Settings {
        pacs_nodes: vec![PacsNode {
            name: "test Orthanc".into(),
            ae_title: orthanc::AET.into(),
            host: "127.0.0.1".into(),
            port,
            calling_ae: calling_ae.into(),
            timeout_secs: 10.0,
            ..PacsNode::default()
        }],
        pacs_selected: 0,
        ..test_settings()
    }
}

/// Steps until the PACS operation under way is done.
fn wait_pacs(h: &mut Harness<'static, DeltaApp>) {
    let t0 = Instant::now();
    h.run_steps(2);
    while h.state().viewer.pacs().op().is_some() {
        h.step();
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the PACS operation did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(2);
}

fn open_pacs_window(h: &mut Harness<'static, DeltaApp>) {
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Open from PACS...").click();
    h.run_steps(2);
    assert!(h.state().viewer.pacs().open_window);
    assert!(h.query_by_label("Open from PACS").is_some(), "no window");
}

#[test]
fn open_from_pacs_lists_the_seeded_series_and_opens_it() {
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    assert_eq!(o.seed(&fixture(TINY)), 7);
    assert_eq!(o.seed(&fixture(PD)), 8);
    let mut h = harness(AppOptions {
        open_nothing: true,
        no_weights_discovery: true,
        settings: Some(pacs_settings(o.dicom_port, orthanc::OUR_AET)),
        ..Default::default()
    });
    h.run_steps(2);
    open_pacs_window(&mut h);

    // No filter: both seeded studies.
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    assert_eq!(h.state().viewer.pacs().studies.len(), 2);

    // By patient ID, typed into the field: the TINY study only, with its date and image count.
    let field = h.get_by_role_and_label(Role::TextInput, "Patient ID");
    field.focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Patient ID")
        .type_text(TINY_PATIENT_ID);
    h.run_steps(2);
    assert_eq!(h.state().viewer.pacs().query.patient_id, TINY_PATIENT_ID);
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    {
        let p = h.state().viewer.pacs();
        assert_eq!(p.studies.len(), 1, "{:?}", p.status);
        assert_eq!(p.studies[0].study_instance_uid, TINY_STUDY);
    }
    assert!(
        h.query_all_by_label("2003-05-05").next().is_some(),
        "study date shown"
    );
    assert!(h.query_by_label(TINY_PATIENT_ID).is_some());

    // Its series: description, modality, date and image count in the list.
    h.get_by_label("series").click();
    wait_pacs(&mut h);
    let listed = deltawkv::volume::list_series(&fixture(TINY)).expect("list fixture");
    let want = &listed[0];
    {
        let p = h.state().viewer.pacs();
        assert_eq!(p.series.len(), 1, "{:?}", p.status);
        assert_eq!(
            p.series[0].series_instance_uid.as_deref(),
            Some(want.uid.as_str())
        );
        assert_eq!(p.series[0].instances, Some(7));
    }
    if !want.description.is_empty() {
        assert!(
            h.query_all_by_label(&want.description).next().is_some(),
            "series description {:?} shown",
            want.description
        );
    }
    // (The study's row shows the modality and count too.)
    assert!(h.query_all_by_label("MR").count() >= 2);
    assert!(h.query_all_by_label("7").count() >= 2, "image count shown");

    // Open: retrieved in the background, then opened like a DICOM folder.
    h.get_by_label("Open").click();
    h.run_steps(1);
    assert!(
        h.state().viewer.pacs().op().is_some(),
        "the retrieve runs off the UI thread"
    );
    wait_pacs(&mut h);
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    assert!(
        v.messages()
            .iter()
            .any(|m| m.text.contains("retrieved 7 instance(s)")),
        "{:?}",
        v.messages()
    );
    assert!(!v.pacs().open_window, "the window closes on open");
    let loaded = v.document().loaded().expect("the retrieved series opened");
    let fixture_volume = deltawkv::volume::load(&fixture(TINY), &Default::default()).unwrap();
    assert_eq!(loaded.volume.dims, fixture_volume.dims);
    assert_eq!(loaded.volume.data, fixture_volume.data);
    assert_eq!(loaded.volume.affine, fixture_volume.affine);
    // The temporary folder stays out of the recent list; the messages hold no patient name.
    assert!(v.settings().recent.is_empty(), "{:?}", v.settings().recent);
    assert!(v.messages().iter().all(|m| !m.text.contains("Doe")));
    let retrieved = loaded.path.clone();
    assert!(retrieved.is_dir());
    // Opening another volume removes the retrieved series' temporary folder.
    h.state_mut().viewer.open(fixture(PD), None);
    settle(&mut h);
    assert!(h.state().viewer.document().loaded().is_some());
    assert!(!retrieved.exists(), "the temporary folder is removed");

    // Retrieved again and opened; the folder goes when the viewer closes.
    h.state_mut().viewer.pacs_mut().open_window = true;
    h.run_steps(2);
    h.get_by_label("Open").click();
    wait_pacs(&mut h);
    settle(&mut h);
    let again = h.state().viewer.document().loaded().unwrap().path.clone();
    assert!(h.state().viewer.pacs().owns(&again) && again.is_dir());
    drop(h);
    assert!(!again.exists(), "the temporary folder is removed on exit");
}

#[test]
fn send_sr_to_pacs_stores_the_derived_series_in_the_source_study() {
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    assert_eq!(o.seed(&fixture(TINY)), 7);
    let mut h = harness(AppOptions {
        path: Some(fixture(TINY)),
        checkpoint: Some(tiny_checkpoint(2)),
        no_weights_discovery: true,
        settings: Some(Settings {
            mode: Mode::Upscale,
            ..pacs_settings(o.dicom_port, orthanc::OUR_AET)
        }),
        ..Default::default()
    });
    settle(&mut h);
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Send SR to PACS").click();
    h.run_steps(1);
    assert!(
        h.state().viewer.pacs().op().is_some(),
        "sent in the background"
    );
    wait_pacs(&mut h);
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let msg = v
        .messages()
        .iter()
        .find(|m| m.text.starts_with("SR sent to"))
        .unwrap_or_else(|| panic!("no result message: {:?}", v.messages()))
        .text
        .clone();
    assert!(msg.contains("7 instance(s) stored"), "{msg}");
    assert!(msg.contains(TINY_STUDY), "{msg}");
    let series_uid = msg
        .split("as series ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("series UID in the message")
        .to_string();

    // Orthanc's REST API: the derived series, 7 instances, in the source's study.
    let id = o.series_id(&series_uid).expect("SR series in Orthanc");
    let series = o.get_json(&format!("/series/{id}"));
    assert_eq!(series["Instances"].as_array().unwrap().len(), 7);
    let description = series["MainDicomTags"]["SeriesDescription"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("not for diagnosis"),
        "SeriesDescription {description:?}"
    );
    let study = o.get_json(&format!(
        "/studies/{}",
        series["ParentStudy"].as_str().unwrap()
    ));
    assert_eq!(study["MainDicomTags"]["StudyInstanceUID"], TINY_STUDY);
    assert_eq!(study["Series"].as_array().unwrap().len(), 2, "source + SR");
    // What was stored is the viewer's SR (the series loads with the SR's grid).
    let sr_dims = h.state().viewer.prepared().unwrap().sr_stored_dims;
    assert_eq!(sr_dims, [32, 32, 7]);
}

#[test]
fn pacs_down_or_rejecting_gives_a_message_and_the_viewer_runs_on() {
    // Nothing listens on this port.
    let port = orthanc::free_port();
    let mut h = harness(AppOptions {
        path: Some(fixture(TINY)),
        no_weights_discovery: true,
        settings: Some(pacs_settings(port, orthanc::OUR_AET)),
        ..Default::default()
    });
    settle(&mut h);
    open_pacs_window(&mut h);
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    {
        let v = &h.state().viewer;
        assert!(
            v.messages()
                .iter()
                .any(|m| m.error && m.text.contains("connection refused")),
            "{:?}",
            v.messages()
        );
        let (status, error) = v.pacs().status.clone().expect("status in the window");
        assert!(error && status.contains("is the PACS running"), "{status}");
        assert!(v.document().loaded().is_some(), "the open volume stays");
    }
    // The window shows the message; the app keeps answering.
    assert!(
        h.query_all_by_label_contains("connection refused")
            .next()
            .is_some()
    );
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    assert!(h.state().viewer.pacs().op().is_none());

    // A port that accepts and never answers: bounded by the node's timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut quiet = pacs_settings(silent.local_addr().unwrap().port(), orthanc::OUR_AET);
    quiet.pacs_nodes[0].timeout_secs = 1.0;
    *h.state_mut().viewer.settings_mut() = quiet;
    let t0 = Instant::now();
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(
        h.state()
            .viewer
            .messages()
            .iter()
            .any(|m| m.error && m.text.contains("timed out after 1 s")),
        "{:?}",
        h.state().viewer.messages()
    );
    drop(silent);

    // A PACS that does not know our AE title: the rejection and its reason.
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    *h.state_mut().viewer.settings_mut() = pacs_settings(o.dicom_port, "STRANGER");
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    let v = &h.state().viewer;
    assert!(
        v.messages()
            .iter()
            .any(|m| m.error && m.text.contains("rejected") && m.text.contains("STRANGER")),
        "{:?}",
        v.messages()
    );
    assert!(v.document().loaded().is_some());
}

#[test]
fn a_tls_node_searches_and_a_wrong_ca_gives_a_message() {
    let Some(pki) = orthanc::pki() else { return };
    let Some(o) = Orthanc::start(&Setup {
        tls: Some(TlsFiles {
            certificate: pki.server_crt.clone(),
            private_key: pki.server_key.clone(),
            trusted: pki.ca.clone(),
            client_certificate_required: false,
        }),
        ..Setup::default()
    }) else {
        return;
    };
    // Seeded over REST (plain HTTP on loopback); DICOM is TLS only.
    assert_eq!(o.seed(&fixture(TINY)), 7);
    let tls_settings = |ca: &std::path::Path| {
        let mut s = pacs_settings(o.dicom_port, orthanc::OUR_AET);
        s.pacs_nodes[0].tls = true;
        s.pacs_nodes[0].tls_ca = Some(ca.to_path_buf());
        s
    };
    let mut h = harness(AppOptions {
        open_nothing: true,
        no_weights_discovery: true,
        settings: Some(tls_settings(&pki.ca)),
        ..Default::default()
    });
    h.run_steps(2);
    open_pacs_window(&mut h);
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    {
        let p = h.state().viewer.pacs();
        assert_eq!(p.studies.len(), 1, "{:?}", p.status);
        assert_eq!(p.studies[0].study_instance_uid, TINY_STUDY);
    }
    // Retrieve over TLS and open.
    h.get_by_label("series").click();
    wait_pacs(&mut h);
    h.get_by_label("Open").click();
    wait_pacs(&mut h);
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let loaded = v.document().loaded().expect("opened over TLS");
    let want = deltawkv::volume::load(&fixture(TINY), &Default::default()).unwrap();
    assert_eq!(loaded.volume.data, want.data);

    // Another CA: refused, with what to check.
    *h.state_mut().viewer.settings_mut() = tls_settings(&pki.wrong_ca);
    h.state_mut().viewer.pacs_mut().open_window = true;
    h.run_steps(2);
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    let v = &h.state().viewer;
    assert!(
        v.messages().iter().any(|m| m.error
            && m.text.contains("UnknownIssuer")
            && m.text.contains("signed by the CA")),
        "{:?}",
        v.messages()
    );
    // TLS off against the TLS port: a message saying so.
    let mut plain = tls_settings(&pki.ca);
    plain.pacs_nodes[0].tls = false;
    *h.state_mut().viewer.settings_mut() = plain;
    h.get_by_label("Search").click();
    wait_pacs(&mut h);
    let v = &h.state().viewer;
    assert!(
        v.messages()
            .iter()
            .any(|m| m.error && m.text.contains("speaks DICOM over TLS")),
        "{:?}",
        v.messages()
    );
    assert!(v.document().loaded().is_some(), "the open series stays");
}

#[test]
fn a_refused_send_and_a_cancelled_retrieve_give_messages() {
    let Some(o) = Orthanc::start(&Setup {
        refuse_storage: true,
        ..Setup::default()
    }) else {
        return;
    };
    let mut h = harness(AppOptions {
        path: Some(fixture(TINY)),
        checkpoint: Some(tiny_checkpoint(2)),
        no_weights_discovery: true,
        settings: Some(Settings {
            mode: Mode::Upscale,
            ..pacs_settings(o.dicom_port, orthanc::OUR_AET)
        }),
        ..Default::default()
    });
    settle(&mut h);
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Send SR to PACS").click();
    wait_pacs(&mut h);
    {
        let v = &h.state().viewer;
        assert!(
            v.messages().iter().any(|m| m.error
                && m.text.starts_with("SR not sent to")
                && m.text.contains("C-STORE status A700H")),
            "{:?}",
            v.messages()
        );
    }
    assert_eq!(o.get_json("/instances").as_array().unwrap().len(), 0);

    // A retrieve cancelled as it starts: a note, not an error; the open volume stays.
    let (code, _) = o.http("GET", "/system", None).unwrap();
    assert_eq!(code, 200);
    drop(o);
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    assert_eq!(o.seed(&fixture(PD)), 8);
    *h.state_mut().viewer.settings_mut() = pacs_settings(o.dicom_port, orthanc::OUR_AET);
    h.state_mut().viewer.pacs_mut().open_window = true;
    h.run_steps(3); // the window is laid out before the retrieve starts
    let series = deltawkv::volume::list_series(&fixture(PD)).unwrap()[0]
        .uid
        .clone();
    h.state_mut().viewer.pacs_retrieve(&series);
    h.step();
    assert!(
        h.query_all_by_label("Cancel").next().is_some(),
        "a Cancel button while the retrieve runs"
    );
    h.state_mut().viewer.pacs_cancel();
    wait_pacs(&mut h);
    let v = &h.state().viewer;
    assert_eq!(
        v.pacs().status,
        Some((
            format!(
                "retrieve from {}: cancelled",
                pacs_settings(o.dicom_port, orthanc::OUR_AET).pacs_nodes[0].label()
            ),
            false
        ))
    );
    let loaded = v.document().loaded().expect("the volume open before stays");
    assert!(loaded.path.ends_with(TINY), "{}", loaded.path.display());
}

#[test]
fn pacs_nodes_are_edited_in_their_window_and_remembered() {
    use eframe::App;
    let quiet = || AppOptions {
        open_nothing: true,
        no_weights_discovery: true,
        ..Default::default()
    };
    let mut first = Harness::builder()
        .with_size(egui::vec2(1100.0, 900.0))
        .wgpu()
        .build_eframe(move |cc| DeltaApp::new(cc, quiet()));
    first.run_steps(2);
    assert_eq!(first.state().viewer.settings().pacs_nodes.len(), 1);
    first.get_by_label("File").click();
    first.run_steps(2);
    first.get_by_label("PACS nodes...").click();
    first.run_steps(3);
    first.get_by_label("Add node").click();
    first.run_steps(3);
    // The new node's fields, typed in.
    let edit = |h: &mut Harness<'static, DeltaApp>, label: &str, text: &str| {
        let n = h.get_all_by_role_and_label(Role::TextInput, label).count();
        assert_eq!(n, 2, "two {label} fields");
        h.get_all_by_role_and_label(Role::TextInput, label)
            .nth(1)
            .unwrap()
            .focus();
        h.run_steps(1);
        h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
        h.get_all_by_role_and_label(Role::TextInput, label)
            .nth(1)
            .unwrap()
            .type_text(text);
        h.run_steps(2);
    };
    edit(&mut first, "AE title", "HOSPITALPACS");
    edit(&mut first, "Host", "pacs.example.org");
    edit(&mut first, "Our AE title", "RADWS1");
    first
        .get_all_by_label("DICOM over TLS")
        .nth(1)
        .unwrap()
        .click();
    first.run_steps(2);
    first.get_all_by_label("use").nth(1).unwrap().click();
    first.run_steps(2);
    let node = first.state().viewer.settings().pacs_nodes[1].clone();
    assert_eq!(node.ae_title, "HOSPITALPACS");
    assert_eq!(node.host, "pacs.example.org");
    assert_eq!(node.calling_ae, "RADWS1");
    assert!(node.tls);
    assert_eq!(first.state().viewer.settings().pacs_selected, 1);
    // An invalid AE title is named in the window.
    edit(&mut first, "AE title", "MUCH TOO LONG FOR AN AE");
    assert!(
        first
            .query_all_by_label_contains("longer than 16 characters")
            .next()
            .is_some()
    );
    edit(&mut first, "AE title", "HOSPITALPACS");

    let mut storage = super::files::MemStorage::default();
    first.state_mut().save(&mut storage);
    let saved = first.state().viewer.settings().clone();
    let restored: &'static super::files::MemStorage = Box::leak(Box::new(storage));
    let second = Harness::builder()
        .with_size(SIZE_SMALL)
        .wgpu()
        .build_eframe(move |cc| {
            cc.storage = Some(restored);
            DeltaApp::new(cc, quiet())
        });
    let back = second.state().viewer.settings();
    assert_eq!(back.pacs_nodes, saved.pacs_nodes);
    assert_eq!(back.pacs_selected, 1);
    assert_eq!(back.pacs_node().unwrap().ae_title, "HOSPITALPACS");
}

const SIZE_SMALL: egui::Vec2 = egui::vec2(800.0, 600.0);
