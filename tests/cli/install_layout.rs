//! The installed layout, as the Debian package lays it out: a binary in `<prefix>/bin` finds
//! the shipped checkpoints in `<prefix>/share/deltawkv/weights` with no environment variable and
//! from any working directory; a binary elsewhere does not look there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::faults::{small_nifti, tiny_checkpoint};

/// The test binary placed at `prefix/bin/deltawkv` (a hard link where the file system allows
/// one, else a copy): `current_exe` then reports that path.
fn install_binary(prefix: &Path) -> PathBuf {
    let bin = prefix.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("deltawkv");
    let built = Path::new(env!("CARGO_BIN_EXE_deltawkv"));
    if std::fs::hard_link(built, &exe).is_err() {
        std::fs::copy(built, &exe).unwrap();
    }
    exe
}

/// `exe upscale in.nii out.nii.gz --scale 2 --json` in `cwd`, without the weights variables.
fn upscale(exe: &Path, cwd: &Path, input: &Path) -> Output {
    Command::new(exe)
        .current_dir(cwd)
        .args(["upscale".as_ref(), input.as_os_str()])
        .args(["out.nii.gz", "--scale", "2", "--device", "cpu", "--json"])
        .env_remove("DELTAWKV_WEIGHTS_DIR")
        .env_remove("DELTAWKV_WEIGHTS")
        .env_remove("DELTAWKV_MEMORY_BUDGET")
        .output()
        .unwrap()
}

#[test]
fn an_installed_binary_finds_the_shipped_checkpoints_in_share() {
    // In the target folder, so that a hard link to the built binary works.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let prefix = root.path().join("usr");
    let exe = install_binary(&prefix);
    let cwd = root.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let input = cwd.join("in.nii");
    std::fs::write(&input, small_nifti([8, 6, 4])).unwrap();

    // Nothing installed yet: the error lists the share folder among the places tried.
    let share_weights = prefix.join("share/deltawkv/weights");
    let o = upscale(&exe, &cwd, &input);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            &share_weights
                .join("dwkv3m_x2.safetensors")
                .display()
                .to_string()
        ),
        "{err}"
    );

    // The checkpoint installed where the package puts it.
    std::fs::create_dir_all(&share_weights).unwrap();
    let ck = tiny_checkpoint(root.path());
    std::fs::rename(&ck, share_weights.join("dwkv3m_x2.safetensors")).unwrap();
    let o = upscale(&exe, &cwd, &input);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        json["weights"].as_str().map(PathBuf::from),
        Some(share_weights.join("dwkv3m_x2.safetensors"))
    );
    assert!(cwd.join("out.nii.gz").is_file());

    // The same tree with the binary outside a `bin` folder: the share folder is not searched.
    let elsewhere = root.path().join("usr/libexec");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other = elsewhere.join("deltawkv");
    std::fs::rename(&exe, &other).unwrap();
    std::fs::remove_file(cwd.join("out.nii.gz")).unwrap();
    let o = upscale(&other, &cwd, &input);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("share/deltawkv"), "{err}");
}
