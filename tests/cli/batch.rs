//! `deltawkv batch` through the real binary: the folder walk (NIfTI files, a DICOM series,
//! files that are neither), manifests, output names, resume (skip, stale partial files), a
//! failing volume among good ones, shards (flag and scheduler variables) partitioning the job
//! list, exit codes and the JSON log lines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::faults::{fixture, small_nifti, tiny_checkpoint};

const BIN: &str = env!("CARGO_BIN_EXE_deltawkv");

const SCHEDULER_VARS: [&str; 7] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "DELTAWKV_SHARD_COUNT",
    "DELTAWKV_MEMORY_BUDGET",
];

/// `deltawkv batch IN OUT --scale 2 --device cpu --weights W ARGS...` with `env` set and the
/// scheduler variables of the test's own environment removed.
fn batch(input: &Path, out: &Path, weights: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("batch")
        .arg(input)
        .arg(out)
        .args([
            "--scale",
            "2",
            "--device",
            "cpu",
            "--workers",
            "2",
            "--weights",
        ])
        .arg(weights)
        .args(args);
    for v in SCHEDULER_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run deltawkv")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Relative paths of the files under `dir` whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.insert(p.strip_prefix(dir).expect("under").to_path_buf());
            }
        }
    }
    out
}

/// An archive: three NIfTI files in nested folders (one `.nii`), a DICOM series folder, a text
/// file, and returns its root.
fn archive(dir: &Path) -> PathBuf {
    let root = dir.join("in");
    std::fs::create_dir_all(root.join("sub-01/anat")).unwrap();
    std::fs::create_dir_all(root.join("sub-02")).unwrap();
    std::fs::write(root.join("sub-01/anat/t1.nii"), small_nifti([8, 6, 2])).unwrap();
    std::fs::write(root.join("sub-02/t1.nii"), small_nifti([6, 6, 3])).unwrap();
    std::fs::write(root.join("sub-02/t2.nii"), small_nifti([7, 5, 2])).unwrap();
    let series = root.join("sub-03/dicom");
    std::fs::create_dir_all(&series).unwrap();
    for e in std::fs::read_dir(fixture("dicom_series_tiny16")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, series.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(root.join("sub-02/notes.txt"), "not a volume").unwrap();
    root
}

fn names(set: &[&str]) -> BTreeSet<PathBuf> {
    set.iter().map(PathBuf::from).collect()
}

#[test]
fn folder_walk_names_resume_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_checkpoint(dir.path());
    let input = archive(dir.path());
    let out = dir.path().join("out");
    let r = batch(&input, &out, &w, &["--json"], &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let s = json(&r);
    assert_eq!(s["jobs"], 4);
    assert_eq!(s["ok"], 4);
    assert_eq!(s["failed"], 0);
    assert_eq!(s["discovery"]["ignored_files"], 1);
    assert!(s["engine_busy_fraction"].as_f64().unwrap() > 0.0);
    assert!(s["stage_seconds_per_volume"]["encode"].as_f64().unwrap() > 0.0);
    assert!(s["gpu_pin"]["reason"].as_str().unwrap().contains("CPU"));
    let want = names(&[
        "sub-01/anat/t1.nii.gz",
        "sub-02/t1.nii.gz",
        "sub-02/t2.nii.gz",
        "sub-03/dicom.nii.gz",
    ]);
    assert_eq!(files(&out, ".nii.gz"), want);
    // The outputs are x2 in-plane NIfTI volumes.
    let info = Command::new(BIN)
        .args(["info", "--json"])
        .arg(out.join("sub-02/t1.nii.gz"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("[12,12,3]"));
    let log = out.join("batch-log.jsonl");
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 4);
    for l in &lines {
        for key in ["input", "output", "status", "slices", "seconds", "error"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
        assert_eq!(l["status"], "ok");
        assert!(l["slices"].as_u64().unwrap() >= 2);
    }

    // A rerun skips every job and leaves the files alone; a stale partial file of a killed run
    // does not count as an output and is removed.
    let t2 = out.join("sub-02/t2.nii.gz");
    let before = std::fs::metadata(&t2).unwrap().modified().unwrap();
    std::fs::remove_file(out.join("sub-02/t1.nii.gz")).unwrap();
    std::fs::write(out.join("sub-02/.t1.nii.gz.deltawkv-part"), b"half").unwrap();
    let r = batch(&input, &out, &w, &["--json"], &[]);
    assert!(r.status.success());
    let s = json(&r);
    assert_eq!(
        (s["ok"].as_u64(), s["skipped"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(std::fs::metadata(&t2).unwrap().modified().unwrap(), before);
    assert!(files(&out, "deltawkv-part").is_empty());
    assert_eq!(files(&out, ".nii.gz"), want);
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 8, "the log is appended to");
    assert_eq!(
        lines[4..]
            .iter()
            .filter(|l| l["status"] == "skipped")
            .count(),
        3
    );

    // Text output names the counts; exit 0.
    let r = batch(&input, &out, &w, &[], &[]);
    assert!(r.status.success());
    assert!(String::from_utf8_lossy(&r.stdout).contains("4 jobs: 0 ok, 4 skipped, 0 failed"));
}

#[test]
fn a_failing_volume_is_logged_and_the_others_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_checkpoint(dir.path());
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..3 {
        std::fs::write(input.join(format!("v{i}.nii")), small_nifti([6, 6, 2])).unwrap();
    }
    let mut broken = small_nifti([6, 6, 2]);
    broken.truncate(400);
    std::fs::write(input.join("broken.nii"), broken).unwrap();
    let out = dir.path().join("out");
    let r = batch(&input, &out, &w, &["--json"], &[]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("1 of 4 volumes failed"), "{err}");
    let s = json(&r);
    assert_eq!((s["ok"].as_u64(), s["failed"].as_u64()), (Some(3), Some(1)));
    assert_eq!(
        files(&out, ".nii.gz"),
        names(&["v0.nii.gz", "v1.nii.gz", "v2.nii.gz"])
    );
    let failed: Vec<_> = log_lines(&out.join("batch-log.jsonl"))
        .into_iter()
        .filter(|l| l["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["input"].as_str().unwrap().ends_with("broken.nii"));
    assert!(failed[0]["error"].as_str().unwrap().contains("broken.nii"));
    assert!(files(&out, "deltawkv-part").is_empty());
}

#[test]
fn manifests_txt_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_checkpoint(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("a")).unwrap();
    std::fs::write(data.join("a/x.nii"), small_nifti([6, 6, 2])).unwrap();
    std::fs::write(data.join("y.nii"), small_nifti([6, 4, 2])).unwrap();
    let txt = data.join("list.txt");
    std::fs::write(&txt, "# two volumes\na/x.nii\n\ny.nii\n").unwrap();
    let out = dir.path().join("out-txt");
    let r = batch(&txt, &out, &w, &["--json"], &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(files(&out, ".nii.gz"), names(&["a/x.nii.gz", "y.nii.gz"]));

    let csv = data.join("list.csv");
    std::fs::write(
        &csv,
        "input,output\na/x.nii,first.nii\n\"y.nii\",sub/second.nii.gz\n",
    )
    .unwrap();
    let out = dir.path().join("out-csv");
    let r = batch(&csv, &out, &w, &["--json"], &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(files(&out, ".nii"), names(&["first.nii"]));
    assert_eq!(files(&out, ".nii.gz"), names(&["sub/second.nii.gz"]));

    // A malformed line names the manifest and the line.
    std::fs::write(&csv, "a/x.nii\n").unwrap();
    let r = batch(&csv, &out, &w, &[], &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("line 1"));
}

#[test]
fn shards_partition_the_jobs_from_the_flag_and_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_checkpoint(dir.path());
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..5 {
        std::fs::write(input.join(format!("v{i}.nii")), small_nifti([6, 6, 2])).unwrap();
    }
    let all: BTreeSet<PathBuf> = (0..5)
        .map(|i| PathBuf::from(format!("v{i}.nii.gz")))
        .collect();
    let run_shards = |tag: &str, envs: &[Vec<(&str, &str)>], flags: &[Vec<&str>]| {
        let out = dir.path().join(tag);
        let mut seen = Vec::new();
        for (env, flag) in envs.iter().zip(flags) {
            let before = files(&out, ".nii.gz");
            let mut args = vec!["--json"];
            args.extend(flag);
            let r = batch(&input, &out, &w, &args, env);
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            let now = files(&out, ".nii.gz");
            seen.push(now.difference(&before).cloned().collect::<BTreeSet<_>>());
        }
        let union: BTreeSet<PathBuf> = seen.iter().flatten().cloned().collect();
        assert_eq!(union, all, "{tag}");
        assert_eq!(
            seen.iter().map(BTreeSet::len).sum::<usize>(),
            5,
            "{tag}: disjoint"
        );
        seen
    };
    let flag = run_shards(
        "flag",
        &[vec![], vec![]],
        &[vec!["--shard", "0/2"], vec!["--shard", "1/2"]],
    );
    assert_eq!(flag[0].len(), 3);
    // Slurm arrays starting at 1 (--array=1-2) give the same split.
    let slurm = run_shards(
        "slurm",
        &[
            vec![
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
            ],
            vec![
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
            ],
        ],
        &[vec![], vec![]],
    );
    assert_eq!(slurm, flag);
    assert!(
        dir.path()
            .join("slurm/batch-log.shard-1-of-2.jsonl")
            .exists()
    );
    let k8s = run_shards(
        "k8s",
        &[
            vec![("JOB_COMPLETION_INDEX", "0"), ("DELTAWKV_SHARD_COUNT", "2")],
            vec![("JOB_COMPLETION_INDEX", "1"), ("DELTAWKV_SHARD_COUNT", "2")],
        ],
        &[vec![], vec![]],
    );
    assert_eq!(k8s, flag);
}

/// The string value of `tag` in `obj`.
fn text(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("{tag} missing"))
        .to_str()
        .expect("text")
        .trim()
        .to_string()
}

#[test]
fn dicom_format_writes_a_derived_series_per_volume_and_resumes() {
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_checkpoint(dir.path());
    let input = archive(dir.path());
    let out = dir.path().join("out");
    let r = batch(&input, &out, &w, &["--json", "--format", "dicom"], &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let s = json(&r);
    assert_eq!((s["ok"].as_u64(), s["failed"].as_u64()), (Some(4), Some(0)));
    assert_eq!(s["format"], "dicom");
    // One folder per job, named after the input without its extension, one image per slice.
    let dcm = files(&out, ".dcm");
    let folders: BTreeSet<PathBuf> = dcm
        .iter()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    assert_eq!(
        folders,
        names(&["sub-01/anat/t1", "sub-02/t1", "sub-02/t2", "sub-03/dicom"])
    );
    assert_eq!(files(&out.join("sub-02/t1"), ".dcm").len(), 3);
    assert!(files(&out, ".nii.gz").is_empty());
    assert!(files(&out, "deltawkv-part").is_empty());

    // The DICOM input's series joins the source's study and frame of reference, x2 in-plane,
    // as a new derived series.
    let src_file = std::fs::read_dir(input.join("sub-03/dicom"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let src = dicom_object::open_file(&src_file).expect("source");
    let sr_files = files(&out.join("sub-03/dicom"), ".dcm");
    let first = out
        .join("sub-03/dicom")
        .join(sr_files.iter().next().unwrap());
    let sr = dicom_object::open_file(&first).expect("SR instance");
    for tag in [
        tags::STUDY_INSTANCE_UID,
        tags::FRAME_OF_REFERENCE_UID,
        tags::PATIENT_ID,
    ] {
        assert_eq!(text(&sr, tag), text(&src, tag), "{tag}");
    }
    assert_ne!(
        text(&sr, tags::SERIES_INSTANCE_UID),
        text(&src, tags::SERIES_INSTANCE_UID)
    );
    assert!(text(&sr, tags::IMAGE_TYPE).starts_with("DERIVED"));
    let rows = |o: &dicom_object::DefaultDicomObject| {
        o.element(tags::ROWS).unwrap().to_int::<u32>().unwrap()
    };
    assert_eq!(rows(&sr), 2 * rows(&src));
    assert!(
        text(&sr, tags::DERIVATION_DESCRIPTION).contains(w.file_name().unwrap().to_str().unwrap())
    );

    // Our loader reads a NIfTI input's series back on the x2 grid.
    let info = Command::new(BIN)
        .args(["info", "--json"])
        .arg(out.join("sub-02/t1"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("[12,12,3]"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );

    // A rerun skips the complete folders; a half-written folder of a killed run is removed and
    // the job written again.
    std::fs::remove_dir_all(out.join("sub-02/t2")).unwrap();
    let part = out.join("sub-02/.t2.deltawkv-part");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("IM0001.dcm"), b"half").unwrap();
    let r = batch(&input, &out, &w, &["--json", "--format", "dicom"], &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let s = json(&r);
    assert_eq!(
        (s["ok"].as_u64(), s["skipped"].as_u64()),
        (Some(1), Some(3))
    );
    assert!(!part.exists());
    assert_eq!(files(&out.join("sub-02/t2"), ".dcm").len(), 2);
}

#[test]
fn user_errors_exit_1_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_checkpoint(dir.path());
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("v.nii"), small_nifti([6, 6, 2])).unwrap();
    let out = dir.path().join("out");
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--shard", "2/2"], vec![], "shard"),
        (
            vec![],
            vec![("JOB_COMPLETION_INDEX", "0")],
            "DELTAWKV_SHARD_COUNT",
        ),
        (
            vec![],
            vec![
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
            "SLURM_ARRAY_TASK_ID",
        ),
    ];
    for (args, env, needle) in cases {
        let r = batch(&input, &out, &w, &args, &env);
        assert_eq!(r.status.code(), Some(1), "{args:?} {env:?}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(files(&out, ".nii.gz").is_empty());
    // INPUT as OUT_DIR is refused; a missing input is named.
    let r = batch(&input, &input, &w, &[], &[]);
    assert_eq!(r.status.code(), Some(1));
    let r = batch(&dir.path().join("nope"), &out, &w, &[], &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("nope"));
}
