//! `deltawkv PATH`, the desktop entry's `Exec=deltawkv %f`: an existing file or folder opens the
//! viewer as `deltawkv view PATH` does; a missing path is named in the error; a word that is
//! neither a subcommand nor a path is clap's usage error. Always exit 1 with a message, never a
//! panic (101).

use std::path::Path;
use std::process::{Command, Output};

/// The binary without a display (and without the user's home), so the viewer cannot open a
/// window whatever the machine has.
fn deltawkv(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deltawkv"));
    for k in [
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "WAYLAND_SOCKET",
        "DELTAWKV_LOG",
    ] {
        c.env_remove(k);
    }
    c.current_dir(dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("NO_COLOR", "1");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1, no panic, nothing on stdout; returns stderr.
fn fails(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: {:?}\n{err}", o.status);
    assert!(!err.contains("panicked"), "{what}: a panic\n{err}");
    assert!(o.stdout.is_empty(), "{what}: stdout {:?}", o.stdout);
    err
}

/// What the viewer says when it cannot start here: no display, or no viewer in this build.
fn viewer_refusal() -> &'static str {
    if cfg!(feature = "viewer") {
        "no display"
    } else {
        "built without the viewer"
    }
}

#[test]
fn an_existing_file_opens_the_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample_pd.nii.gz");
    let o = deltawkv(dir.path()).arg(&sample).output().unwrap();
    let err = fails(&o, "deltawkv SAMPLE");
    assert!(err.contains(viewer_refusal()), "{err}");
    // The same as `deltawkv view SAMPLE`.
    let v = deltawkv(dir.path())
        .arg("view")
        .arg(&sample)
        .output()
        .unwrap();
    assert_eq!(stderr(&v), err);
}

#[test]
fn an_existing_folder_named_by_a_bare_word_opens_the_viewer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scans")).unwrap();
    let o = deltawkv(dir.path()).arg("scans").output().unwrap();
    let err = fails(&o, "deltawkv scans");
    assert!(err.contains(viewer_refusal()), "{err}");
}

#[test]
fn a_missing_path_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for arg in ["/no/such/scan.nii.gz", "missing.dcm", "./nowhere"] {
        let o = deltawkv(dir.path()).arg(arg).output().unwrap();
        let err = fails(&o, arg);
        assert!(
            err.contains(&format!("cannot open {arg}: no such file or folder")),
            "{arg}: {err}"
        );
        assert!(!err.contains(viewer_refusal()), "{arg}: {err}");
    }
}

#[test]
fn an_unknown_word_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = deltawkv(dir.path()).arg("frobnicate").output().unwrap();
    let err = fails(&o, "deltawkv frobnicate");
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'") && err.contains("Usage:"),
        "{err}"
    );
    // A near miss gets clap's suggestion.
    let o = deltawkv(dir.path()).arg("ifno").output().unwrap();
    let err = fails(&o, "deltawkv ifno");
    assert!(err.contains("'info'"), "{err}");
    // A subcommand wins over a file of the same name in the current directory.
    std::fs::write(dir.path().join("info"), b"not a volume").unwrap();
    let o = deltawkv(dir.path())
        .args(["info", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: deltawkv info"));
}
