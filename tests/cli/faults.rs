//! Faults at the command line, through the real binary: outputs that cannot be written (a
//! read-only folder, a path under a regular file, a full disk simulated with RLIMIT_FSIZE, a
//! rename onto a folder) fail with exit 1 and a message, and leave no file behind; inputs are
//! never modified; the memory budget flag and variable are honoured; and no input of a malformed
//! corpus makes `deltawkv` exit through a panic (code 101) or a signal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deltawkv::model::{Checkpoint, Degradation};

use crate::common::minimal_config;

const BIN: &str = env!("CARGO_BIN_EXE_deltawkv");

pub(crate) fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

/// Runs the binary with a clean environment for the variables it reads.
fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DELTAWKV_MEMORY_BUDGET")
        .env_remove("DELTAWKV_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run deltawkv")
}

/// [`run`] as the unprivileged uid/gid 65534 (util-linux's `setpriv`), for a root test process.
fn run_unprivileged(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--reset-env",
        ])
        .arg(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run setpriv (util-linux)")
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 with an `error:` message on stderr.
fn assert_fails(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: {:?}\n{err}", o.status);
    assert!(err.contains("error:"), "{what}: {err}");
    err
}

/// Files in `dir` (names), to check that nothing was left behind.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A small little-endian int16 NIfTI-1 volume (`dims`), with an sform.
pub(crate) fn small_nifti(dims: [i16; 3]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dim = [3i16, dims[0], dims[1], dims[2], 1, 1, 1, 1];
    for (i, d) in dim.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&4i16.to_le_bytes());
    h[72..74].copy_from_slice(&16i16.to_le_bytes());
    for i in 0..4 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[254..256].copy_from_slice(&1i16.to_le_bytes());
    for (r, row) in [[1f32, 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 2., 0.]]
        .iter()
        .enumerate()
    {
        for (c, v) in row.iter().enumerate() {
            h[280 + 16 * r + 4 * c..284 + 16 * r + 4 * c].copy_from_slice(&v.to_le_bytes());
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    let n = dims.iter().map(|&d| d as usize).product::<usize>();
    // Pseudo-random values, so that a gzip output does not shrink below the size limits below.
    for i in 0..n {
        let v = ((i as u32).wrapping_mul(2_654_435_761) >> 17) as i16;
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// The smallest valid x2 checkpoint (random weights), so that `upscale` runs in milliseconds.
pub(crate) fn tiny_checkpoint(dir: &Path) -> PathBuf {
    let config = minimal_config(2, Degradation::Kspace);
    let p = dir.join("tiny_x2.safetensors");
    Checkpoint::random(&config, 5).save(&p).expect("save");
    p
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn unwritable_outputs_fail_cleanly_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.nii");
    std::fs::write(&input, small_nifti([8, 6, 4])).expect("write");
    let weights = tiny_checkpoint(dir.path());
    let before = std::fs::read(&input).expect("read");

    // Folders no one can create files in: sysfs refuses new files to root too, and a path under
    // a regular file cannot exist at all. A chmod 0555 folder holds only for other users (root
    // ignores permission bits), so as root (as in CI) the commands writing there run as the
    // unprivileged uid 65534 through util-linux's setpriv.
    let mut targets: Vec<(PathBuf, Option<PathBuf>, bool)> = vec![
        (PathBuf::from("/sys/deltawkv-out.nii.gz"), None, false),
        (input.join("out.nii.gz"), None, false),
    ];
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("readonly");
        std::fs::create_dir(&ro).expect("mkdir");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        // The unprivileged user reads the input and the weights.
        for (p, mode) in [(dir.path(), 0o755), (&input, 0o644), (&weights, 0o644)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        targets.push((ro.join("out.nii.gz"), Some(ro), is_root()));
    }
    // A name that is an existing folder: the temporary file is written, the rename fails.
    let taken = dir.path().join("taken.nii");
    std::fs::create_dir(&taken).expect("mkdir");
    std::fs::write(taken.join("keep"), b"x").expect("write");
    targets.push((taken.clone(), Some(dir.path().to_path_buf()), false));

    for (out, watch, unprivileged) in &targets {
        let seen = watch.as_deref().map(listing);
        for cmd in ["convert", "upscale"] {
            let a: &[&std::ffi::OsStr] = match cmd {
                "convert" => args![cmd, &input, out],
                _ => args![
                    cmd,
                    &input,
                    out,
                    "--scale",
                    "2",
                    "--device",
                    "cpu",
                    "--weights",
                    &weights
                ],
            };
            let o = if *unprivileged {
                run_unprivileged(a)
            } else {
                run(a)
            };
            let err = assert_fails(&o, &format!("{cmd} to {}", out.display()));
            assert!(
                err.contains(&out.display().to_string()),
                "{cmd}: the message names the output: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
            if let (Some(w), Some(seen)) = (watch, &seen) {
                assert_eq!(&listing(w), seen, "{cmd}: files left in {}", w.display());
            }
        }
        assert!(!out.is_file(), "{}", out.display());
    }
    assert_eq!(listing(&taken), vec!["keep".to_string()]);
    assert_eq!(
        std::fs::read(&input).expect("read"),
        before,
        "input modified"
    );
}

#[test]
fn full_disk_leaves_no_partial_file() {
    // RLIMIT_FSIZE (ulimit -f, in 512-byte blocks) with SIGXFSZ ignored makes write(2) fail with
    // EFBIG past the limit, as on a full disk, without needing a mount.
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.nii");
    std::fs::write(&input, small_nifti([64, 48, 6])).expect("write");
    let weights = tiny_checkpoint(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    for (cmd, out_name) in [
        ("convert", "full.nii"),
        ("convert", "full.nii.gz"),
        ("upscale", "up.nii"),
    ] {
        let out = out_dir.join(out_name);
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"trap '' XFSZ; ulimit -f 8 || exit 99; exec "$@""#)
            .arg("sh")
            .arg(BIN)
            .arg(cmd)
            .arg(&input)
            .arg(&out)
            .env_remove("DELTAWKV_MEMORY_BUDGET");
        if cmd == "upscale" {
            c.args(["--scale", "2", "--device", "cpu", "--weights"])
                .arg(&weights);
        }
        let o = c.output().expect("sh");
        let err = assert_fails(&o, &format!("{cmd} {out_name} on a full disk"));
        assert!(
            err.contains("File too large") || err.contains("os error 27"),
            "{cmd}: {err}"
        );
        assert!(
            listing(&out_dir).is_empty(),
            "{cmd}: left {:?}",
            listing(&out_dir)
        );
        // Without the limit the same command succeeds (the failure was the disk).
        let mut args: Vec<&std::ffi::OsStr> = args![cmd, &input, &out].to_vec();
        if cmd == "upscale" {
            args.extend_from_slice(args![
                "--scale",
                "2",
                "--device",
                "cpu",
                "--weights",
                &weights
            ]);
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::remove_file(&out).expect("rm");
    }
}

#[test]
fn inputs_are_never_modified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nii = dir.path().join("vol.nii");
    // At least 11x11 in-plane: the size SSIM (compare) needs.
    std::fs::write(&nii, small_nifti([16, 16, 4])).expect("write");
    let weights = tiny_checkpoint(dir.path());
    let dcm = fixture("dicom_single_mr_small/MR_small.dcm");
    let series = fixture("dicom_series_tiny16");
    let mut watched: Vec<PathBuf> = vec![nii.clone(), weights.clone(), dcm.clone()];
    watched.extend(
        std::fs::read_dir(&series)
            .expect("dir")
            .flatten()
            .map(|e| e.path()),
    );
    let snapshot = |paths: &[PathBuf]| -> Vec<(Vec<u8>, std::time::SystemTime)> {
        paths
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).expect("stat");
                (
                    std::fs::read(p).expect("read"),
                    m.modified().expect("mtime"),
                )
            })
            .collect()
    };
    let before = snapshot(&watched);
    let out = dir.path().join("o.nii.gz");
    let runs: Vec<Output> = vec![
        run(args!["info", &nii]),
        run(args!["info", &dcm, "--json"]),
        run(args!["info", &series]),
        run(args!["convert", &dcm, &out]),
        run(args!["convert", &series, &out]),
        run(args!["compare", &nii, &nii]),
        run(args![
            "upscale",
            &nii,
            &out,
            "--scale",
            "2",
            "--device",
            "cpu",
            "--weights",
            &weights
        ]),
        // Writing over the input is refused.
        run(args!["convert", &nii, &nii]),
        run(args![
            "upscale",
            &nii,
            &nii,
            "--scale",
            "2",
            "--device",
            "cpu",
            "--weights",
            &weights
        ]),
    ];
    for (i, o) in runs.iter().enumerate() {
        let code = o.status.code();
        if i < 7 {
            assert_eq!(code, Some(0), "run {i}: {}", stderr(o));
        } else {
            let err = assert_fails(o, "output is input");
            assert!(err.contains("refusing to overwrite"), "{err}");
        }
    }
    assert!(before == snapshot(&watched), "an input file changed");
}

#[test]
fn memory_budget_flag_and_variable() {
    // The 8-slice 256x256 series needs 2.0 MiB as float32.
    let series = fixture("dicom_series_pd_oblique");
    let o = run(args!["info", &series, "--memory-budget", "1MiB"]);
    let err = assert_fails(&o, "over budget");
    assert!(err.contains("2.0 MiB") && err.contains("1.0 MiB"), "{err}");
    let o = run(args!["info", &series, "--memory-budget", "3MiB"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The environment variable, and the flag winning over it.
    let with_env = |value: &str, extra: &[&str]| {
        Command::new(BIN)
            .arg("info")
            .arg(&series)
            .args(extra)
            .env("DELTAWKV_MEMORY_BUDGET", value)
            .output()
            .expect("run")
    };
    assert_fails(&with_env("1MiB", &[]), "budget from the environment");
    let o = with_env("1MiB", &["--memory-budget", "4GiB"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = assert_fails(&with_env("lots", &[]), "malformed variable");
    assert!(err.contains("DELTAWKV_MEMORY_BUDGET"), "{err}");
    // A malformed flag is a usage error (exit 1).
    let o = run(args!["info", &series, "--memory-budget", "4 parsecs"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // The checkpoint of upscale is checked too (1 MiB is less than the tiny checkpoint's file
    // plus its tensors as f32: 620 KB + 620 KB).
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = tiny_checkpoint(dir.path());
    let nii = dir.path().join("v.nii");
    std::fs::write(&nii, small_nifti([8, 6, 4])).expect("write");
    let out = dir.path().join("o.nii");
    let o = run(args![
        "upscale",
        &nii,
        &out,
        "--scale",
        "2",
        "--device",
        "cpu",
        "--weights",
        &weights,
        "--memory-budget",
        "1MiB"
    ]);
    let err = assert_fails(&o, "checkpoint over budget");
    assert!(err.contains("over the memory budget"), "{err}");
    assert!(!out.exists());
}

/// A malformed corpus made from the fixtures: truncations, flipped bytes, garbage, a lying
/// header; plus folders of garbage.
fn malformed_corpus(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut put = |name: String, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        out.push(p);
    };
    let sources: Vec<(&str, Vec<u8>)> = vec![
        ("nii", small_nifti([8, 6, 4])),
        ("niigz", {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&small_nifti([8, 6, 4])).expect("gz");
            e.finish().expect("gz")
        }),
        (
            "dcm",
            std::fs::read(fixture("dicom_single_mr_small/MR_small_RLE.dcm")).expect("read"),
        ),
        (
            "mf",
            std::fs::read(fixture("dicom_enhanced_mr/emri_small_jpeg_ls_lossless.dcm"))
                .expect("read"),
        ),
    ];
    for (tag, b) in &sources {
        for frac in [0usize, 1, 3, 7, 50, 90, 99] {
            let len = b.len() * frac / 100 + usize::from(frac == 1);
            put(format!("{tag}_cut{frac}"), &b[..len.min(b.len() - 1)]);
        }
        for at in [0usize, 41, 70, 109, 130, 200, 347, b.len() / 2] {
            let mut f = b.clone();
            if let Some(x) = f.get_mut(at) {
                *x ^= 0xff;
            }
            put(format!("{tag}_flip{at}"), &f);
        }
    }
    // Lying NIfTI dims (32767^3) and garbage.
    let mut lie = small_nifti([8, 6, 4]);
    for i in 1..4 {
        lie[40 + 2 * i..42 + 2 * i].copy_from_slice(&32767i16.to_le_bytes());
    }
    put("lie.nii".into(), &lie);
    put("garbage.dcm".into(), &[0xa5; 3000]);
    put("empty.nii".into(), &[]);
    let folder = dir.join("junk_folder");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::write(folder.join("a.dcm"), b"not dicom").expect("write");
    out.push(folder);
    let empty = dir.join("empty_folder");
    std::fs::create_dir(&empty).expect("mkdir");
    out.push(empty);
    out.push(dir.join("does_not_exist.nii"));
    out
}

#[test]
fn no_input_makes_the_binary_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus_dir = dir.path().join("corpus");
    std::fs::create_dir(&corpus_dir).expect("mkdir");
    let corpus = malformed_corpus(&corpus_dir);
    let weights = tiny_checkpoint(dir.path());
    // Malformed checkpoints for upscale's --weights.
    let good_ck = std::fs::read(&weights).expect("read");
    let mut bad_weights = Vec::new();
    for (i, len) in [0usize, 7, 100, good_ck.len() / 2].into_iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.safetensors"));
        std::fs::write(&p, &good_ck[..len]).expect("write");
        bad_weights.push(p);
    }
    let reference = dir.path().join("ref.nii");
    std::fs::write(&reference, small_nifti([8, 6, 4])).expect("write");
    let out = dir.path().join("out.nii.gz");
    let mut runs = 0;
    let mut check = |o: Output, what: String| {
        runs += 1;
        let err = stderr(&o);
        match o.status.code() {
            Some(0) => {}
            Some(1) => assert!(err.contains("error:"), "{what}: exit 1 without a message"),
            Some(101) => panic!("{what}: panicked (exit 101)\n{err}"),
            Some(c) => panic!("{what}: exit {c}\n{err}"),
            None => panic!("{what}: killed by a signal ({:?})\n{err}", o.status),
        }
        assert!(!err.contains("panicked at"), "{what}: {err}");
    };
    for input in &corpus {
        let name = input.display().to_string();
        check(run(args!["info", input, "--json"]), format!("info {name}"));
        check(
            run(args!["convert", input, &out]),
            format!("convert {name}"),
        );
        check(
            run(args!["compare", input, &reference]),
            format!("compare {name}"),
        );
        check(
            run(args![
                "upscale",
                input,
                &out,
                "--scale",
                "2",
                "--device",
                "cpu",
                "--weights",
                &weights
            ]),
            format!("upscale {name}"),
        );
    }
    for w in &bad_weights {
        let o = run(args![
            "upscale",
            &reference,
            &out,
            "--scale",
            "2",
            "--device",
            "cpu",
            "--weights",
            w
        ]);
        assert_fails(&o, &format!("weights {}", w.display()));
        check(o, format!("weights {}", w.display()));
    }
    assert!(runs > 200, "{runs} runs");
}
