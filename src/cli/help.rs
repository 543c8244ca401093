//! What `deltawkv --version` and the `--help` texts say beyond the argument lists: the build's
//! version line, and worked examples (clap's `after_help`) for a first-time user.

/// `deltawkv --version`: the version, the git commit the binary was built from (`unknown` when
/// built outside a git checkout) and the enabled cargo features (both from build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DELTAWKV_GIT_COMMIT"),
    "; features: ",
    env!("DELTAWKV_FEATURES"),
    ")"
);

/// The top-level `--help` after the command list.
pub const MAIN: &str = "\
Examples:
  deltawkv                          open the viewer on the bundled sample volume
  deltawkv scan.nii.gz              open a volume in the viewer (NIfTI file, DICOM file or folder)
  deltawkv info scan.nii.gz         describe a volume
  deltawkv upscale scan.nii.gz sr.nii.gz --scale 2
                                    upscale every slice 2x in-plane with the shipped network

Checkpoints are looked up in $DELTAWKV_WEIGHTS_DIR, ./weights, beside the executable and in
/usr/share/deltawkv/weights (an installed package). Set DELTAWKV_LOG=info for a log on stderr.
Each command has its own help: deltawkv help COMMAND, or deltawkv COMMAND --help.";

pub const INFO: &str = "\
Examples:
  deltawkv info scan.nii.gz
  deltawkv info dicom_folder/ --series 1.2.840.113619.2.55.3
  deltawkv info scan.nii.gz --json | jq .dims";

pub const CONVERT: &str = "\
Examples:
  deltawkv convert dicom_folder/ scan.nii.gz
  deltawkv convert fmri.nii.gz first_volume.nii.gz --volume 0";

pub const UPSCALE: &str = "\
Examples:
  deltawkv upscale scan.nii.gz sr.nii.gz --scale 2
  deltawkv upscale dicom_folder/ sr_series/ --scale 4 --device gpu
      (a DICOM input written as a derived DICOM series in the new folder sr_series/)
  deltawkv upscale scan.nii.gz sr.nii.gz --scale 2 --axis coronal --weights my.safetensors
  deltawkv upscale scan.nii.gz sr.nii.gz --scale 2 --data-consistency
      (each output slice keeps the input slice's k-space centre exactly)

The output keeps the anatomy in place: the same field of view on a finer in-plane grid.";

pub const EVAL: &str = "\
Examples:
  deltawkv eval ground_truth.nii.gz --scale 2
  deltawkv eval ground_truth.nii.gz --scale 4 --slices 40:60 --per-slice
  deltawkv eval ground_truth.nii.gz --scale 2 --baselines-only --json
  deltawkv eval ground_truth.nii.gz --scale 2 --data-consistency --realistic --json
      (adds the data-consistent SR, row sr_dc, and a realistic acquisition of the same slices:
      noise 0.02 of the GT's 99.5th percentile per real/imaginary part, Tukey 0.25, full
      k-space, seed 0; the standard rows are unchanged)";

pub const COMPARE: &str = "\
Examples:
  deltawkv compare sr.nii.gz ground_truth.nii.gz
  deltawkv compare sr.nii.gz ground_truth.nii.gz --per-slice --json";

pub const BATCH: &str = "\
Examples:
  deltawkv batch scans/ out/ --scale 2
      (every NIfTI file and DICOM series under scans/; run it again to resume)
  deltawkv batch list.csv out/ --scale 4
      (a manifest: one `input,output` per line)
  deltawkv batch scans/ out/ --scale 2 --shard 0/4
      (the first of four parts; Slurm job arrays and Kubernetes indexed jobs set it themselves)";

pub const BENCH: &str = "\
Examples:
  deltawkv bench
  deltawkv bench --scale 4 --size 128x128 --slices 16 --profile";

pub const PACS: &str = "\
Examples:
  deltawkv pacs echo --pacs ORTHANC@127.0.0.1:4242
  deltawkv pacs find --pacs ORTHANC@pacs.local:4242 --patient-name 'Doe*' --level series
  deltawkv pacs get --pacs ORTHANC@pacs.local:4242 --series 1.2.3.4.5 series_folder/
  deltawkv pacs send --pacs ORTHANC@pacs.local:4242 sr_series/

The PACS must know our AE title (--calling-ae, default DELTAWKV) and, for `get --move`, the
address our storage listener uses.";

pub const VIEW: &str = "\
Examples:
  deltawkv view                     the bundled sample volume
  deltawkv view scan.nii.gz         the same as: deltawkv scan.nii.gz
  deltawkv view dicom_folder/

The viewer needs a graphical session (X11 or Wayland). Files also open by drag and drop.";

pub const PACS_ECHO: &str = "\
Example:
  deltawkv pacs echo --pacs ORTHANC@127.0.0.1:4242 --calling-ae DELTAWKV";

pub const PACS_SEND: &str = "\
Examples:
  deltawkv pacs send --pacs ORTHANC@pacs.local:4242 sr_series/
  deltawkv pacs send --pacs ORTHANC@pacs.local:4242 a.dcm b.dcm";

pub const PACS_FIND: &str = "\
Examples:
  deltawkv pacs find --pacs ORTHANC@pacs.local:4242 --patient-id 12345
  deltawkv pacs find --pacs ORTHANC@pacs.local:4242 --study-date 20240101-20241231 --modality MR
  deltawkv pacs find --pacs ORTHANC@pacs.local:4242 --study 1.2.3.4 --level series";

pub const PACS_GET: &str = "\
Examples:
  deltawkv pacs get --pacs ORTHANC@pacs.local:4242 --series 1.2.3.4.5 series_folder/
  deltawkv pacs get --pacs ORTHANC@pacs.local:4242 --series 1.2.3.4.5 series_folder/ \\
      --move --move-port 11112 --move-bind 0.0.0.0";
