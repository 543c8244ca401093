//! DICOM over TLS against a real Orthanc with `DicomTlsEnabled`: a throwaway CA, server and client
//! certificates made by `openssl` per test; echo, send, find and C-GET over TLS; a PACS whose
//! certificate comes from another CA refused with a message naming the problem; a PACS that
//! requires a client certificate answering only when we present one; plain DICOM against the TLS
//! port, and C-MOVE with --tls, refused with a message.

use std::path::Path;

use crate::orthanc::{Orthanc, Pki, Setup, TlsFiles, pki};
use crate::*;

fn tls_orthanc(pki: &Pki, client_certificate_required: bool) -> Option<Orthanc> {
    Orthanc::start(&Setup {
        tls: Some(TlsFiles {
            certificate: pki.server_crt.clone(),
            private_key: pki.server_key.clone(),
            trusted: pki.ca.clone(),
            client_certificate_required,
        }),
        ..Setup::default()
    })
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn echo_send_find_and_get_over_tls() {
    let Some(pki) = pki() else { return };
    let Some(o) = tls_orthanc(&pki, false) else {
        return;
    };
    let node = o.node();
    let tls = ["--tls", "--tls-ca", s(&pki.ca)];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(tls.iter())
            .map(|a| a.to_string())
            .collect()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        deltawkv(&refs)
    };
    let v = json_ok(&run(with(&["pacs", "echo", "--pacs", &node, "--json"])));
    assert_eq!(v["echo"], "ok");

    let folder = fixture(TINY);
    let v = json_ok(&run(with(&[
        "pacs",
        "send",
        s(&folder),
        "--pacs",
        &node,
        "--json",
    ])));
    assert_eq!(v["sent"], 7);
    // Orthanc's REST API shows what came over TLS.
    let id = o.series_id(TINY_SERIES).expect("series stored over TLS");
    let series = o.get_json(&format!("/series/{id}"));
    assert_eq!(series["Instances"].as_array().unwrap().len(), 7);

    let v = json_ok(&run(with(&[
        "pacs", "find", "--pacs", &node, "--level", "series", "--json",
    ])));
    let matches = v["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0]["series_instance_uid"], TINY_SERIES);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny");
    let v = json_ok(&run(with(&[
        "pacs",
        "get",
        "--pacs",
        &node,
        "--series",
        TINY_SERIES,
        s(&out),
        "--json",
    ])));
    assert_eq!(v["instances"], 7);
    let got = deltawkv::volume::load(&out, &Default::default()).expect("load retrieved");
    let want = deltawkv::volume::load(&folder, &Default::default()).expect("load fixture");
    assert_eq!(
        got.data, want.data,
        "pixels identical after a TLS round trip"
    );

    // C-MOVE would bring the instances back in the clear: refused, nothing written.
    let out2 = dir.path().join("moved");
    fails_with(
        &run(with(&[
            "pacs",
            "get",
            "--pacs",
            &node,
            "--series",
            TINY_SERIES,
            s(&out2),
            "--move",
            "--move-port",
            "11112",
        ])),
        &["C-MOVE", "TLS", "C-GET"],
    );
    assert!(!out2.exists());
}

#[test]
fn a_pacs_certificate_from_another_ca_is_refused() {
    let Some(pki) = pki() else { return };
    let Some(o) = tls_orthanc(&pki, false) else {
        return;
    };
    let node = o.node();
    let err = fails_with(
        &deltawkv(&[
            "pacs",
            "echo",
            "--pacs",
            &node,
            "--tls",
            "--tls-ca",
            s(&pki.wrong_ca),
            "--timeout",
            "10",
        ]),
        &[
            "TLS with 127.0.0.1",
            "UnknownIssuer",
            "signed by the CA given (--tls-ca)",
        ],
    );
    eprintln!("wrong CA: {err}");
    // Nothing was stored by a refused link.
    let folder = fixture(TINY);
    fails_with(
        &deltawkv(&[
            "pacs",
            "send",
            s(&folder),
            "--pacs",
            &node,
            "--tls",
            "--tls-ca",
            s(&pki.wrong_ca),
        ]),
        &["TLS", "UnknownIssuer"],
    );
    assert_eq!(o.get_json("/instances").as_array().unwrap().len(), 0);
    // Plain DICOM on the TLS port fails with a message, not a hang past the timeout.
    let t0 = std::time::Instant::now();
    let err = fails_with(
        &deltawkv(&["pacs", "echo", "--pacs", &node, "--timeout", "5"]),
        &[&o.dicom_port.to_string(), "connect with TLS (--tls)"],
    );
    eprintln!("plain on a TLS port: {err}");
    assert!(t0.elapsed().as_secs() < 30);
    // A CA file that is not PEM: a setup error naming the file.
    let bogus = pki.ca.with_file_name("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    fails_with(
        &deltawkv(&[
            "pacs",
            "echo",
            "--pacs",
            &node,
            "--tls",
            "--tls-ca",
            s(&bogus),
        ]),
        &["TLS setup", "bogus.pem"],
    );
}

#[test]
fn a_client_certificate_is_presented_when_the_pacs_requires_one() {
    let Some(pki) = pki() else { return };
    let Some(o) = tls_orthanc(&pki, true) else {
        return;
    };
    let node = o.node();
    let err = fails_with(
        &deltawkv(&[
            "pacs",
            "echo",
            "--pacs",
            &node,
            "--tls",
            "--tls-ca",
            s(&pki.ca),
            "--timeout",
            "10",
        ]),
        &[
            "TLS with 127.0.0.1",
            "requires a client certificate",
            "--tls-cert and --tls-key",
        ],
    );
    eprintln!("no client certificate: {err}");
    let v = json_ok(&deltawkv(&[
        "pacs",
        "echo",
        "--pacs",
        &node,
        "--tls",
        "--tls-ca",
        s(&pki.ca),
        "--tls-cert",
        s(&pki.client_crt),
        "--tls-key",
        s(&pki.client_key),
        "--json",
    ]));
    assert_eq!(v["echo"], "ok");
}
