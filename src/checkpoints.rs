//! Where checkpoints are found and how they are loaded: the one search order of weights folders
//! (the command line and the viewer), the shipped checkpoint of a scale, loading within the
//! memory budget and the scale check, with one error type.
//!
//! Search order (each place's `weights/` folder unless said otherwise):
//! 1. the folder in `DELTAWKV_WEIGHTS_DIR` itself (`DELTAWKV_WEIGHTS` is a deprecated alias);
//! 2. the current directory;
//! 3. the executable's folder and its three parents (a `target/release/deltawkv` finds the
//!    repository's), and for an executable in `<prefix>/bin` the data folder
//!    `<prefix>/share/deltawkv` (the installed package's `/usr/share/deltawkv/weights`) - not for
//!    `deltawkv eval`, whose default is the checkpoint at hand;
//! 4. the source tree the binary was built from - the viewer's discovery only.
//!
//! An explicit `--weights FILE` (or a checkpoint chosen in the viewer) comes before all of them.

use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::model::Checkpoint;
use crate::model::checkpoint::{self, CheckpointError};

/// The variable naming a folder of checkpoints, searched first.
pub const WEIGHTS_DIR_VAR: &str = "DELTAWKV_WEIGHTS_DIR";
/// The deprecated alias of [`WEIGHTS_DIR_VAR`] (the viewer's former variable), still honoured.
pub const DEPRECATED_WEIGHTS_VAR: &str = "DELTAWKV_WEIGHTS";

/// How far down the search order a search goes (each reach includes the ones before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// The variable and the current directory (`deltawkv eval`).
    WorkingDir,
    /// Also the executable's folder and its three parents, and `<prefix>/share/deltawkv` of an
    /// executable in `<prefix>/bin` (`deltawkv upscale`, `batch`).
    Install,
    /// Also the source tree the binary was built from (the viewer).
    SourceTree,
}

/// Errors of finding and loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// No shipped checkpoint of the scale in the places searched (listed).
    #[error(
        "no checkpoint for scale {scale}: none of\n{}\nexists; pass one with --weights FILE",
        list(.tried)
    )]
    NotFound { scale: usize, tried: Vec<PathBuf> },
    /// The file is not a usable checkpoint (the error names the file and the problem).
    #[error("cannot load the checkpoint: {error}")]
    Load { error: CheckpointError },
    /// The checkpoint's scale is not the one asked for.
    #[error("checkpoint {label} upscales x{found}, not x{want}")]
    WrongScale {
        label: String,
        found: usize,
        want: usize,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let lines: Vec<String> = paths.iter().map(|p| format!("  {}", p.display())).collect();
    lines.join("\n")
}

/// The folders of the variables: [`WEIGHTS_DIR_VAR`], then the deprecated alias (with a warning,
/// once per process).
fn variable_dirs() -> Vec<PathBuf> {
    static WARNED: Once = Once::new();
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(WEIGHTS_DIR_VAR) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os(DEPRECATED_WEIGHTS_VAR) {
        WARNED.call_once(|| {
            tracing::warn!(
                "{DEPRECATED_WEIGHTS_VAR} is deprecated: set {WEIGHTS_DIR_VAR} to the weights \
                 folder instead"
            );
        });
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The places searched for resources (`weights/`, `assets/`), in order: the current directory
/// (as the empty relative path), then per `reach` the places of an installed binary
/// ([`install_roots`] of the running executable) and the source tree the binary was built from.
pub fn search_roots(reach: Reach) -> Vec<PathBuf> {
    let exe = if reach >= Reach::Install {
        std::env::current_exe().ok()
    } else {
        None
    };
    search_roots_of(reach, exe.as_deref())
}

/// [`search_roots`] for the executable at `exe` (`None`: not known).
pub fn search_roots_of(reach: Reach, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::new()];
    if reach >= Reach::Install
        && let Some(exe) = exe
    {
        roots.extend(install_roots(exe));
    }
    if reach >= Reach::SourceTree {
        roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    }
    roots
}

/// The name of the data folder under `<prefix>/share` of an installed binary.
pub const SHARE_DIR_NAME: &str = "deltawkv";

/// Where an executable at `exe` finds its resources: its folder and that folder's three parents
/// (a `target/release/deltawkv` finds the repository's), then, for an executable installed as
/// `<prefix>/bin/deltawkv`, the data folder `<prefix>/share/deltawkv` (the Debian package puts
/// `weights/` and `assets/` in `/usr/share/deltawkv`; `make install`-like layouts under
/// `/usr/local` or `~/.local` work the same way).
pub fn install_roots(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut roots: Vec<PathBuf> = dir.ancestors().take(4).map(Path::to_path_buf).collect();
    if dir.file_name().is_some_and(|n| n == "bin")
        && let Some(prefix) = dir.parent()
    {
        roots.push(prefix.join("share").join(SHARE_DIR_NAME));
    }
    roots
}

/// The weights folders in search order, whether or not they exist: the variables' folders, then
/// `weights/` under each of [`search_roots`].
pub fn weights_dirs(reach: Reach) -> Vec<PathBuf> {
    let mut dirs = variable_dirs();
    dirs.extend(search_roots(reach).into_iter().map(|r| r.join("weights")));
    dirs
}

/// File name of the shipped checkpoint of `scale`.
fn shipped_name(scale: usize) -> String {
    format!("dwkv3m_x{scale}.safetensors")
}

/// The shipped checkpoint of `scale`: the first [`shipped_name`] file in [`weights_dirs`].
pub fn shipped(scale: usize, reach: Reach) -> Result<PathBuf, LocateError> {
    let name = shipped_name(scale);
    let tried: Vec<PathBuf> = weights_dirs(reach)
        .into_iter()
        .map(|d| d.join(&name))
        .collect();
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(LocateError::NotFound { scale, tried }),
    }
}

/// Checks that `checkpoint` (shown as `label`) upscales x`want`.
pub fn check_scale(checkpoint: &Checkpoint, label: &str, want: usize) -> Result<(), LocateError> {
    let found = checkpoint.config.scale;
    if found == want {
        Ok(())
    } else {
        Err(LocateError::WrongScale {
            label: label.to_string(),
            found,
            want,
        })
    }
}

/// Loads `weights`, or the shipped checkpoint of `scale` found within `reach`, within `budget`
/// bytes ([`Checkpoint::load_with_budget`]), and checks its scale. Returns it with its path.
pub fn load(
    weights: Option<&Path>,
    scale: usize,
    budget: u64,
    reach: Reach,
) -> Result<(Checkpoint, PathBuf), LocateError> {
    let path = match weights {
        Some(p) => p.to_path_buf(),
        None => shipped(scale, reach)?,
    };
    let ck =
        Checkpoint::load_with_budget(&path, budget).map_err(|error| LocateError::Load { error })?;
    check_scale(&ck, &path.display().to_string(), scale)?;
    Ok((ck, path))
}

/// The viewer's weights folders: the variables' folders, then the existing `weights/` folders of
/// every search root (absolute, each once).
pub fn discovered_dirs() -> Vec<PathBuf> {
    let mut dirs = variable_dirs();
    for r in search_roots(Reach::SourceTree) {
        let Ok(d) = std::path::absolute(r.join("weights")) else {
            continue;
        };
        if d.is_dir() && !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// Every `.safetensors` file in [`discovered_dirs`], folder by folder, sorted by name.
pub fn list_weights() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in discovered_dirs() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && p.is_file())
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// The checkpoints of [`list_weights`] whose metadata says `scale`.
pub fn find_weights(scale: usize) -> Vec<PathBuf> {
    list_weights()
        .into_iter()
        .filter(|p| peek_scale(p).ok() == Some(scale))
        .collect()
}

/// The `scale` in a checkpoint's metadata, read from the header alone
/// ([`checkpoint::peek_meta`]).
pub fn peek_scale(path: &Path) -> Result<usize, CheckpointError> {
    checkpoint::peek_meta(path).map(|m| m.scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_order_widens_with_the_reach() {
        let work = weights_dirs(Reach::WorkingDir);
        let install = weights_dirs(Reach::Install);
        let source = weights_dirs(Reach::SourceTree);
        assert!(work.contains(&PathBuf::from("weights")));
        let exe = std::env::current_exe().expect("the test's executable");
        assert!(install.starts_with(&work));
        assert_eq!(install.len(), work.len() + install_roots(&exe).len());
        assert!(source.starts_with(&install));
        assert_eq!(
            source.last(),
            Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("weights"))
        );
    }

    #[test]
    fn an_installed_binary_finds_its_share_folder() {
        let roots = install_roots(Path::new("/usr/bin/deltawkv"));
        let want: Vec<PathBuf> = ["/usr/bin", "/usr", "/", "/usr/share/deltawkv"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(roots, want);
        let local = install_roots(Path::new("/home/ada/.local/bin/deltawkv"));
        assert_eq!(
            local.last(),
            Some(&PathBuf::from("/home/ada/.local/share/deltawkv"))
        );
        // A build tree has no share folder: its own folder and three parents only.
        let built = install_roots(Path::new("/src/deltawkv/target/release/deltawkv"));
        assert_eq!(built.len(), 4);
        assert_eq!(built[3], PathBuf::from("/src"));
        // The viewer's search (cwd, install roots, source tree) keeps that order.
        let viewer = search_roots_of(Reach::SourceTree, Some(Path::new("/usr/bin/deltawkv")));
        assert_eq!(viewer.first(), Some(&PathBuf::new()));
        assert_eq!(viewer[1..5], want[..]);
        assert_eq!(
            viewer.last(),
            Some(&PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        );
        // `eval` (working directory only) does not look there.
        assert_eq!(
            search_roots_of(Reach::WorkingDir, Some(Path::new("/usr/bin/deltawkv"))),
            vec![PathBuf::new()]
        );
    }

    #[test]
    fn missing_checkpoints_list_the_places_tried() {
        let e = shipped(7, Reach::WorkingDir).expect_err("no x7 checkpoint anywhere");
        let msg = e.to_string();
        assert!(
            msg.contains("dwkv3m_x7.safetensors") && msg.contains("--weights"),
            "{msg}"
        );
    }
}
