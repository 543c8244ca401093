//! The failures, each through the real binary with a message naming the problem and exit code 1,
//! and nothing half-written: PACS down, unknown calling AE title, a refused C-STORE, a silent
//! port bounded by --timeout, an output folder that holds files, an unknown series; and a
//! retrieve cancelled midway through the library's cancel flag.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deltawkv::pacs::{self, PacsError, RetrieveMode};

use crate::orthanc::{self, Orthanc, Setup};
use crate::*;

#[test]
fn pacs_down_is_connection_refused() {
    // A port nothing listens on.
    let port = orthanc::free_port();
    let node = format!("ORTHANC@127.0.0.1:{port}");
    fails_with(
        &deltawkv(&["pacs", "echo", "--pacs", &node]),
        &["connection refused"],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("series");
    fails_with(
        &deltawkv(&[
            "pacs",
            "get",
            "--pacs",
            &node,
            "--series",
            "1.2.3",
            out.to_str().unwrap(),
        ]),
        &["connection refused", "is the PACS running"],
    );
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn unknown_calling_ae_is_rejected_with_the_reason() {
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    let err = fails_with(
        &deltawkv(&[
            "pacs",
            "find",
            "--pacs",
            &o.node(),
            "--calling-ae",
            "STRANGER",
        ]),
        &["rejected", "STRANGER", "calling AE title not recognized"],
    );
    assert!(!err.contains("Doe"), "no patient data in errors");
    // A wrong called AE title too (DicomCheckCalledAet).
    let wrong = format!("NOTORTHANC@127.0.0.1:{}", o.dicom_port);
    fails_with(
        &deltawkv(&["pacs", "echo", "--pacs", &wrong]),
        &["rejected"],
    );
}

#[test]
fn refused_store_names_the_status() {
    let Some(o) = Orthanc::start(&Setup {
        refuse_storage: true,
        ..Setup::default()
    }) else {
        return;
    };
    let folder = fixture(TINY);
    fails_with(
        &deltawkv(&[
            "pacs",
            "send",
            folder.to_str().unwrap(),
            "--pacs",
            &o.node(),
        ]),
        &["refused to store", "C-STORE status", "0 instance(s) stored"],
    );
    assert_eq!(o.get_json("/instances").as_array().unwrap().len(), 0);
}

#[test]
fn silent_port_times_out() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let holder = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        while !stop2.load(Ordering::SeqCst) {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let node = format!("ORTHANC@127.0.0.1:{port}");
    let t = Instant::now();
    fails_with(
        &deltawkv(&["pacs", "echo", "--pacs", &node, "--timeout", "1"]),
        &["timed out after 1 s", "association"],
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("series");
    fails_with(
        &deltawkv(&[
            "pacs",
            "get",
            "--pacs",
            &node,
            "--series",
            "1.2.3",
            out.to_str().unwrap(),
            "--timeout",
            "0.5",
        ]),
        &["timed out"],
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    stop.store(true, Ordering::SeqCst);
    holder.join().unwrap();
}

#[test]
fn bad_output_and_unknown_series_are_refused() {
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    o.seed(&fixture(TINY));
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), b"user data").unwrap();
    fails_with(
        &deltawkv(&[
            "pacs",
            "get",
            "--pacs",
            &o.node(),
            "--series",
            TINY_SERIES,
            full.to_str().unwrap(),
        ]),
        &["already exists"],
    );
    assert_eq!(std::fs::read(full.join("keep.txt")).unwrap(), b"user data");
    let out = dir.path().join("none");
    fails_with(
        &deltawkv(&[
            "pacs",
            "get",
            "--pacs",
            &o.node(),
            "--series",
            "1.2.3.4",
            out.to_str().unwrap(),
        ]),
        &["has no series 1.2.3.4"],
    );
    assert!(!out.exists());
    fails_with(
        &deltawkv(&["pacs", "echo", "--pacs", "ORTHANC@127.0.0.1"]),
        &["AET@HOST:PORT"],
    );
    fails_with(
        &deltawkv(&["pacs", "send", "/nonexistent/x", "--pacs", &o.node()]),
        &["/nonexistent/x"],
    );
}

#[test]
fn cancelled_retrieve_leaves_nothing() {
    let Some(o) = Orthanc::start(&Setup::default()) else {
        return;
    };
    o.seed(&fixture(PD));
    let node: pacs::Node = o.node().parse().unwrap();
    let options = pacs::Options {
        timeout: Duration::from_secs(10),
        ..pacs::Options::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pd");
    let cancel = AtomicBool::new(false);
    let mut seen = Vec::new();
    let r = pacs::retrieve_series(
        &node,
        PD_SERIES,
        &out,
        &RetrieveMode::Get,
        &options,
        &mut |p| {
            seen.push(p.done);
            if p.done >= 3 {
                cancel.store(true, Ordering::SeqCst);
            }
        },
        &cancel,
    );
    assert!(matches!(r, Err(PacsError::Cancelled)), "{r:?}");
    assert!(seen.contains(&3), "cancelled midway: {seen:?}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary folder left"
    );
    // The PACS is fine afterwards: the same retrieve completes.
    let never = AtomicBool::new(false);
    let report = pacs::retrieve_series(
        &node,
        PD_SERIES,
        &out,
        &RetrieveMode::Get,
        &options,
        &mut |_| {},
        &never,
    )
    .unwrap();
    assert_eq!(report.instances, 8);
}

#[test]
fn storage_scp_refuses_a_peer_with_another_ae_title() {
    // Orthanc answers any called AE title; we call it OTHERPACS, so our C-MOVE storage SCP
    // expects OTHERPACS to connect back, and refuses Orthanc, which calls with ORTHANC.
    let port = orthanc::free_port();
    let Some(o) = Orthanc::start(&Setup {
        move_port: Some(port),
        any_called_aet: true,
        ..Setup::default()
    }) else {
        return;
    };
    o.seed(&fixture(TINY));
    let node = format!("OTHERPACS@127.0.0.1:{}", o.dicom_port);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny");
    let err = fails_with(
        &deltawkv(&[
            "pacs",
            "get",
            "--move",
            "--move-port",
            &port.to_string(),
            "--pacs",
            &node,
            "--series",
            TINY_SERIES,
            out.to_str().unwrap(),
            "--timeout",
            "20",
        ]),
        &["storage SCP", "refused", "`ORTHANC`", "`OTHERPACS`"],
    );
    eprintln!("{err}");
    assert!(!out.exists(), "nothing written");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(
        o.log().contains("DELTAWKV") || o.log().to_lowercase().contains("rejected"),
        "Orthanc saw the refusal: {}",
        o.log()
    );
    // The SCP listened only during the retrieve.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
