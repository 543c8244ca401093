//! The job list of a batch run: a folder walked recursively (each NIfTI file and each DICOM
//! series is one job) or a manifest (`.txt`: one path per line; `.csv`: input,output), with
//! deterministic output names derived from the input paths (collisions numbered in sorted order,
//! before any sharding, so every shard names a job alike).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::BatchError;

/// Where a job's volume comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file or folder [`crate::volume::load`] reads (NIfTI, a DICOM file, a one-series folder).
    Path(PathBuf),
    /// One DICOM series gathered by the walk: the files sharing a SeriesInstanceUID.
    DicomSeries {
        /// The deepest folder holding all its files (names it in messages).
        folder: PathBuf,
        /// SeriesInstanceUID.
        uid: String,
        /// Its files, sorted.
        files: Vec<PathBuf>,
    },
}

impl Source {
    /// The input as the log shows it: the path, or `folder#uid` for a walked DICOM series.
    pub fn display(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::DicomSeries { folder, uid, .. } => format!("{}#{uid}", folder.display()),
        }
    }
}

/// One volume to upscale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The input.
    pub source: Source,
    /// The output's name relative to the output folder, without extension (the writer adds its
    /// own), e.g. `sub-01/anat/sub-01_T1w`.
    pub stem: PathBuf,
    /// An output path given by a `.csv` manifest (relative to the output folder unless
    /// absolute), used as is instead of `stem`.
    pub explicit_output: Option<PathBuf>,
}

/// What a folder walk found besides the jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Discovery {
    /// Files that are neither NIfTI nor readable DICOM images (left out).
    pub ignored_files: usize,
    /// Folders that could not be listed, with the reason (left out).
    pub unreadable: Vec<String>,
}

/// Whether the file name is a NIfTI name (`.nii`, `.nii.gz`, any case).
fn nifti_stem(name: &str) -> Option<&str> {
    let lower = name.to_lowercase();
    if lower.ends_with(".nii.gz") {
        name.get(..name.len() - 7)
    } else if lower.ends_with(".nii") {
        name.get(..name.len() - 4)
    } else {
        None
    }
}

/// A UID or name made safe as one path component.
fn safe_component(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() || t == "." || t == ".." {
        "unnamed".into()
    } else {
        t
    }
}

/// Files under `root`, recursively (hidden entries and `skip` left out, folder symlinks not
/// followed), sorted; folders that cannot be listed are reported in `found`.
fn walk(root: &Path, skip: Option<&Path>, found: &mut Discovery) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cannot list {}: {e}", dir.display());
                found.unreadable.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    let skipped = skip.is_some_and(|s| p.canonicalize().is_ok_and(|c| c == s));
                    if !skipped {
                        stack.push(p);
                    }
                }
                Ok(t) if t.is_file() || (t.is_symlink() && p.is_file()) => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// `path` relative to `root` (both as given; `path` under `root`), or `path` without its root
/// and prefix components when it is elsewhere.
fn relative(path: &Path, root: &Path) -> PathBuf {
    if let Ok(r) = path.strip_prefix(root) {
        return r.to_path_buf();
    }
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// The output stem of a file input: its relative path without a `.nii`/`.nii.gz` extension.
fn file_stem(rel: &Path) -> PathBuf {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = nifti_stem(&name).map(str::to_string).unwrap_or(name);
    rel.with_file_name(safe_component(&stem))
}

/// The jobs of a folder: every NIfTI file and every DICOM series under `root` (`out_dir`, when
/// inside it, is not walked). Sorted by input, names made unique.
pub fn from_folder(
    root: &Path,
    out_dir: Option<&Path>,
    memory_budget: u64,
) -> Result<(Vec<Job>, Discovery), BatchError> {
    if !root.is_dir() {
        return Err(BatchError::Input {
            path: root.to_path_buf(),
            detail: "not a folder".into(),
        });
    }
    let mut found = Discovery::default();
    let skip = out_dir.and_then(|o| o.canonicalize().ok());
    let files = walk(root, skip.as_deref(), &mut found);
    let mut jobs = Vec::new();
    let mut others = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if nifti_stem(&name).is_some() {
            jobs.push(Job {
                stem: file_stem(&relative(&f, root)),
                source: Source::Path(f),
                explicit_output: None,
            });
        } else {
            others.push(f);
        }
    }
    let dicom = crate::volume::dicom_series_of_files(&others, memory_budget);
    found.ignored_files = others.len() - dicom.len();
    let mut series: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (path, uid) in dicom {
        series.entry(uid).or_default().push(path);
    }
    // The deepest common folder of each series; a folder holding one series names it, a folder
    // holding several names each by its UID inside it.
    let mut by_folder: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let mut gathered = Vec::new();
    for (uid, mut files) in series {
        files.sort();
        let folder = common_folder(&files).unwrap_or_else(|| root.to_path_buf());
        *by_folder.entry(folder.clone()).or_default() += 1;
        gathered.push((uid, files, folder));
    }
    for (uid, files, folder) in gathered {
        let rel = relative(&folder, root);
        let shared = by_folder.get(&folder).copied().unwrap_or(0) > 1;
        let stem = if shared || rel.as_os_str().is_empty() {
            rel.join(safe_component(&uid))
        } else {
            rel
        };
        jobs.push(Job {
            source: Source::DicomSeries { folder, uid, files },
            stem,
            explicit_output: None,
        });
    }
    Ok((finish(jobs), found))
}

/// The deepest folder holding all `files`.
fn common_folder(files: &[PathBuf]) -> Option<PathBuf> {
    let mut common = files.first()?.parent()?.to_path_buf();
    for f in files {
        while !f.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    Some(common)
}

/// The jobs of a manifest: `.txt`, one input path per line; `.csv`, `input,output` per line (a
/// first line `input,output` is a header). Blank lines and lines starting with `#` are skipped;
/// relative paths are relative to the manifest's folder.
pub fn from_manifest(manifest: &Path) -> Result<Vec<Job>, BatchError> {
    let text = std::fs::read_to_string(manifest).map_err(|e| BatchError::Input {
        path: manifest.to_path_buf(),
        detail: format!("cannot read: {e}"),
    })?;
    let base = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let csv = manifest
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut jobs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |detail: String| BatchError::Input {
            path: manifest.to_path_buf(),
            detail: format!("line {}: {detail}", n + 1),
        };
        let (input, output) = if csv {
            let fields = csv_fields(line).map_err(bad)?;
            match fields.as_slice() {
                [i, o] if n == 0 && i.eq_ignore_ascii_case("input") => {
                    let _ = o;
                    continue;
                }
                [i, o] if !i.is_empty() && !o.is_empty() => (i.clone(), Some(PathBuf::from(o))),
                _ => {
                    return Err(bad(format!(
                        "expected two fields input,output, got {}",
                        fields.len()
                    )));
                }
            }
        } else {
            (line.to_string(), None)
        };
        let path = base.join(&input);
        let rel = relative(&path, &base);
        jobs.push(Job {
            stem: file_stem(&rel),
            source: Source::Path(path),
            explicit_output: output,
        });
    }
    Ok(finish(jobs))
}

/// The fields of one CSV line (commas; double quotes around a field, `""` inside one).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => fields.push(std::mem::take(&mut cur).trim().to_string()),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(cur.trim().to_string());
    Ok(fields)
}

/// Sorts the jobs by input and numbers repeated stems (`name`, `name__2`, ...) in that order.
fn finish(mut jobs: Vec<Job>) -> Vec<Job> {
    jobs.sort_by_key(|j| j.source.display());
    let mut seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for job in &mut jobs {
        let count = seen.entry(job.stem.clone()).or_default();
        *count += 1;
        if *count > 1 {
            let name = job
                .stem
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut k = *count;
            let mut renamed = job.stem.with_file_name(format!("{name}__{k}"));
            while seen.contains_key(&renamed) {
                k += 1;
                renamed = job.stem.with_file_name(format!("{name}__{k}"));
            }
            seen.insert(renamed.clone(), 1);
            job.stem = renamed;
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(path: &str, stem: &str) -> Job {
        Job {
            source: Source::Path(PathBuf::from(path)),
            stem: PathBuf::from(stem),
            explicit_output: None,
        }
    }

    #[test]
    fn names_drop_nifti_extensions_and_collisions_are_numbered() {
        assert_eq!(file_stem(Path::new("a/b/x.nii.gz")), PathBuf::from("a/b/x"));
        assert_eq!(file_stem(Path::new("a/X.NII")), PathBuf::from("a/X"));
        assert_eq!(
            file_stem(Path::new("a/s p.dcm")),
            PathBuf::from("a/s_p.dcm")
        );
        let jobs = finish(vec![
            job("d/x.nii.gz", "x"),
            job("d/x.nii", "x"),
            job("d/x__2", "x__2"),
        ]);
        let stems: Vec<_> = jobs.iter().map(|j| j.stem.clone()).collect();
        // Sorted by input: x.nii, x.nii.gz, x__2; the second x is renamed past the taken x__2.
        assert_eq!(
            stems,
            vec![
                PathBuf::from("x"),
                PathBuf::from("x__2"),
                PathBuf::from("x__2__2")
            ]
        );
    }

    #[test]
    fn csv_fields_handle_quotes() {
        assert_eq!(csv_fields("a,b").unwrap(), vec!["a", "b"]);
        assert_eq!(
            csv_fields(r#""a, b",  "c""d" "#).unwrap(),
            vec!["a, b", "c\"d"]
        );
        assert!(csv_fields("\"a,b").is_err());
    }

    #[test]
    fn relative_paths_outside_the_root_keep_their_components() {
        assert_eq!(
            relative(Path::new("/data/x/y.nii"), Path::new("/m")),
            PathBuf::from("data/x/y.nii")
        );
        assert_eq!(
            relative(Path::new("/m/x/y.nii"), Path::new("/m")),
            PathBuf::from("x/y.nii")
        );
    }

    #[test]
    fn common_folder_of_files() {
        let f = |s: &str| PathBuf::from(s);
        assert_eq!(
            common_folder(&[f("/a/b/c/1"), f("/a/b/d/2")]),
            Some(f("/a/b"))
        );
        assert_eq!(common_folder(&[f("/a/b/1")]), Some(f("/a/b")));
    }
}
