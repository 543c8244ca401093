//! `deltawkv --version` (version, git commit, features) and the help texts a first-time user
//! reads: every command's `--help` exits 0 and shows worked examples.

use std::process::Command;

fn deltawkv(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_deltawkv"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run deltawkv");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The features this test build enabled, as `--version` lists them.
fn enabled_features() -> String {
    let mut f = Vec::new();
    if cfg!(feature = "native-dialogs") {
        f.push("native-dialogs");
    }
    if cfg!(feature = "viewer") {
        f.push("viewer");
    }
    if f.is_empty() {
        "none".to_string()
    } else {
        f.join(", ")
    }
}

/// The commit of the source tree, when it is a git checkout with git installed.
fn head_commit() -> Option<String> {
    let o = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn version_names_the_version_the_commit_and_the_features() {
    for flag in ["--version", "-V"] {
        let (code, out, err) = deltawkv(&[flag]);
        assert_eq!(code, 0, "{flag}: {err}");
        assert_eq!(out.lines().count(), 1, "{flag}: one line: {out:?}");
        let line = out.trim_end();
        let prefix = format!("deltawkv {} (commit ", env!("CARGO_PKG_VERSION"));
        let rest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{flag}: {line:?} does not start with {prefix:?}"));
        let (commit, rest) = rest.split_once("; features: ").expect("`; features: `");
        let features = rest.strip_suffix(')').expect("a closing parenthesis");
        assert!(
            commit == "unknown"
                || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "{flag}: commit {commit:?}"
        );
        if std::env::var_os("DELTAWKV_GIT_COMMIT").is_none()
            && let Some(head) = head_commit()
        {
            assert_eq!(commit, head, "{flag}: the commit the binary was built from");
        }
        assert_eq!(features, enabled_features(), "{flag}");
    }
}

#[test]
fn every_help_text_has_examples() {
    let (code, out, err) = deltawkv(&["--help"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "Usage: deltawkv [PATH]",
        "Examples:",
        "deltawkv scan.nii.gz",
        "Commands:",
    ] {
        assert!(out.contains(want), "--help lacks {want:?}:\n{out}");
    }
    let commands: &[&[&str]] = &[
        &["info"],
        &["convert"],
        &["upscale"],
        &["eval"],
        &["compare"],
        &["batch"],
        &["bench"],
        &["pacs"],
        &["pacs", "echo"],
        &["pacs", "send"],
        &["pacs", "find"],
        &["pacs", "get"],
        &["view"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (code, out, err) = deltawkv(&args);
        let name = cmd.join(" ");
        assert_eq!(code, 0, "{name} --help: {err}");
        assert!(
            out.contains(&format!("Usage: deltawkv {name}")),
            "{name}:\n{out}"
        );
        // Every example is a command of this very subcommand.
        let examples: Vec<&str> = out
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("deltawkv "))
            .collect();
        assert!(
            out.contains("Example") && !examples.is_empty(),
            "{name} --help has no examples:\n{out}"
        );
        for e in examples {
            assert!(e.starts_with(&format!("deltawkv {name}")), "{name}: {e}");
        }
    }
}
