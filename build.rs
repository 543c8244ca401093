//! Build facts for `deltawkv --version`: the git commit the binary was built from and the enabled
//! cargo features, as the compile-time variables `DELTAWKV_GIT_COMMIT` and `DELTAWKV_FEATURES`.
//!
//! The commit is `DELTAWKV_GIT_COMMIT` when set (a source package built outside git can pass it),
//! else `git rev-parse --short HEAD` in the source tree, else `unknown` (no git, not a checkout).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DELTAWKV_GIT_COMMIT");
    // Without a rerun-if-changed line cargo would rerun this on any change in the package.
    println!("cargo:rerun-if-changed=build.rs");
    let commit = match std::env::var("DELTAWKV_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=DELTAWKV_GIT_COMMIT={commit}");

    // Cargo sets CARGO_FEATURE_<NAME> (upper case, `-` as `_`) for each enabled feature; the
    // names are given back as written in Cargo.toml.
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_string))
        .map(|f| f.to_lowercase().replace('_', "-"))
        .filter(|f| f != "default")
        .collect();
    features.sort();
    let features = if features.is_empty() {
        "none".to_string()
    } else {
        features.join(", ")
    };
    println!("cargo:rustc-env=DELTAWKV_FEATURES={features}");
}

/// The short commit of HEAD, and the files whose change means a new commit (HEAD, the branch's
/// ref, packed refs) as rerun triggers; `None` outside a git checkout or without git.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch])?);
    }
    if let Some(packed) = git(&["rev-parse", "--git-common-dir"]) {
        watched.push(format!("{packed}/packed-refs"));
    }
    for path in watched {
        let path = PathBuf::from(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
