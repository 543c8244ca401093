//! Malformed checkpoints made by the test: truncations at many offsets, flipped header bytes,
//! wrong shapes, names, dtypes, NaN/Inf in every float dtype, lying headers, and checkpoints over
//! the memory budget. Every case expects a specific `CheckpointError` variant.

use std::collections::HashMap;
use std::path::Path;

use deltawkv::model::{Checkpoint, CheckpointError, Degradation, ModelConfig};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::common::minimal_config;

/// The smallest configuration the loader accepts (about 155 K parameters, most of them in the
/// fixed-size upsampler).
fn tiny() -> ModelConfig {
    minimal_config(2, Degradation::Kspace)
}

type Raw = (Dtype, Vec<usize>, Vec<u8>);

fn encode(dtype: Dtype, data: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F16 => data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => data
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The tensors (in `dtype`) and metadata of a valid random checkpoint of [`tiny`].
fn parts(dtype: Dtype) -> (Vec<(String, Raw)>, HashMap<String, String>) {
    let ck = Checkpoint::random(&tiny(), 11);
    let tensors = ck
        .tensors
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                (dtype, t.shape.clone(), encode(dtype, &t.data)),
            )
        })
        .collect();
    (tensors, ck.full_metadata().into_iter().collect())
}

fn build(tensors: &[(String, Raw)], meta: HashMap<String, String>) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (dt, shape, bytes))| {
            (
                n.as_str(),
                TensorView::new(*dt, shape.clone(), bytes).expect("view"),
            )
        })
        .collect();
    safetensors::serialize(views, Some(meta)).expect("serialise")
}

fn valid(dtype: Dtype) -> Vec<u8> {
    let (t, m) = parts(dtype);
    build(&t, m)
}

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize
}

fn err(bytes: &[u8]) -> CheckpointError {
    match Checkpoint::from_bytes(bytes, "bad.safetensors") {
        Ok(_) => panic!("a malformed checkpoint was accepted"),
        Err(e) => {
            assert!(e.to_string().contains("bad.safetensors"), "{e}");
            e
        }
    }
}

#[test]
fn valid_tiny_checkpoints_load_in_every_dtype() {
    for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let ck = Checkpoint::from_bytes(&valid(dt), "tiny").expect("valid");
        assert_eq!(ck.config, tiny());
    }
}

#[test]
fn truncated_at_many_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    for dt in [Dtype::F32, Dtype::BF16] {
        let full = valid(dt);
        let n = header_len(&full);
        let mut cuts: Vec<usize> = (0..24).collect();
        cuts.extend([n, n + 7, n + 8, n + 9]);
        cuts.extend((0..60).map(|i| i * (full.len() - 1) / 59));
        cuts.sort_unstable();
        cuts.dedup();
        for (i, &len) in cuts.iter().enumerate() {
            // Every prefix is a truncated file, whichever part the cut falls in: the length
            // prefix, the JSON header or the tensor data.
            match err(&full[..len]) {
                CheckpointError::Truncated { .. } => {}
                // A cut inside the JSON that leaves "{..." with the length past the end.
                other => panic!("{dt:?} cut at {len} of {}: {other:?}", full.len()),
            }
            // Through a file as well, every few cuts.
            if i % 8 == 0 {
                let p = dir.path().join("cut.safetensors");
                std::fs::write(&p, &full[..len]).expect("write");
                assert!(
                    matches!(
                        Checkpoint::load_with_budget(&p, 1 << 30),
                        Err(CheckpointError::Truncated { .. })
                    ),
                    "file cut at {len}"
                );
            }
        }
    }
}

#[test]
fn flipped_header_bytes() {
    let full = valid(Dtype::F16);
    let n = header_len(&full);
    // Any byte of the JSON header flipped is no longer UTF-8 text: not a safetensors file.
    let step = (n / 97).max(1);
    for at in (8..8 + n).step_by(step) {
        let mut b = full.clone();
        b[at] ^= 0xff;
        match err(&b) {
            CheckpointError::NotSafetensors { .. } => {}
            other => panic!("byte {at}: {other:?}"),
        }
    }
    // The length prefix: a header length past the end of the file is a truncation, one over
    // safetensors' 100 MB header limit is refused as foreign, and any other cuts the JSON short
    // or runs it into the tensor bytes.
    for at in 0..8 {
        let mut b = full.clone();
        b[at] ^= 0xff;
        let claimed = header_len(&b);
        match err(&b) {
            CheckpointError::Truncated { .. } => {
                assert!(claimed > b.len() - 8 && claimed <= 100_000_000, "byte {at}")
            }
            CheckpointError::NotSafetensors { .. } => {
                assert!(claimed > 100_000_000 || claimed <= b.len() - 8, "byte {at}");
                assert_ne!(claimed, n);
            }
            other => panic!("byte {at}: {other:?}"),
        }
    }
}

#[test]
fn wrong_names_shapes_and_dtypes() {
    let (tensors, meta) = parts(Dtype::F32);
    // A tensor renamed: the expected name is missing.
    let mut t = tensors.clone();
    t[0].0 = "conv_first.weights".into();
    assert!(matches!(
        err(&build(&t, meta.clone())),
        CheckpointError::MissingTensor { ref tensor, .. } if tensor == &tensors[0].0
    ));
    // An extra tensor.
    let mut t = tensors.clone();
    t.push(("ema.weight".into(), (Dtype::F32, vec![1], vec![0; 4])));
    assert!(matches!(
        err(&build(&t, meta.clone())),
        CheckpointError::UnexpectedTensor { ref tensor, .. } if tensor == "ema.weight"
    ));
    // Transposed shape of a matrix with the same element count.
    let mut t = tensors.clone();
    let i = t
        .iter()
        .position(|(n, _)| n.ends_with("att.w1"))
        .expect("w1");
    t[i].1.1.reverse();
    match err(&build(&t, meta.clone())) {
        CheckpointError::WrongShape {
            tensor,
            expected,
            found,
            ..
        } => {
            assert_eq!(tensor, t[i].0);
            assert_eq!(found, vec![1, 4]);
            assert_eq!(expected, vec![4, 1]);
        }
        other => panic!("{other:?}"),
    }
    // Integer and double dtypes are refused, naming the dtype.
    for (dt, size) in [
        (Dtype::I32, 4),
        (Dtype::F64, 8),
        (Dtype::U8, 1),
        (Dtype::I64, 8),
    ] {
        let mut t = tensors.clone();
        let elems: usize = t[0].1.1.iter().product();
        t[0].1.0 = dt;
        t[0].1.2 = vec![0; elems * size];
        match err(&build(&t, meta.clone())) {
            CheckpointError::UnsupportedDtype { tensor, dtype, .. } => {
                assert_eq!(tensor, t[0].0);
                assert_eq!(dtype, format!("{dt:?}"));
            }
            other => panic!("{dt:?}: {other:?}"),
        }
    }
    // A header whose data offsets do not match its shape and dtype (written by hand).
    let mut b = valid(Dtype::F32);
    let n = header_len(&b);
    let header = String::from_utf8(b[8..8 + n].to_vec()).expect("utf8");
    let lied = header.replacen("\"shape\":[1]", "\"shape\":[2]", 1);
    assert_ne!(lied, header, "conv_last.bias has shape [1]");
    b[8..8 + n].copy_from_slice(lied.as_bytes());
    assert!(matches!(err(&b), CheckpointError::NotSafetensors { .. }));
}

#[test]
fn non_finite_values_in_every_float_dtype() {
    for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        for (k, bad) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY]
            .into_iter()
            .enumerate()
        {
            let (mut t, meta) = parts(dt);
            let idx = t.len() - 1 - k;
            let (_, shape, bytes) = &mut t[idx].1;
            let elems: usize = shape.iter().product();
            let mut values = vec![0.5f32; elems];
            let at = elems - 1;
            values[at] = bad;
            *bytes = encode(dt, &values);
            let name = t[idx].0.clone();
            match err(&build(&t, meta)) {
                CheckpointError::NonFinite {
                    tensor,
                    index,
                    value,
                    ..
                } => {
                    assert_eq!((tensor, index), (name, at), "{dt:?}");
                    assert_eq!(value.is_nan(), bad.is_nan());
                }
                other => panic!("{dt:?} {bad}: {other:?}"),
            }
        }
    }
}

#[test]
fn metadata_that_lies() {
    let (tensors, mut meta) = parts(Dtype::F32);
    // Metadata that says dim 8: the names are the same, the shapes are not (the first is named).
    meta.insert("dim".into(), "8".into());
    meta.insert("head_size".into(), "4".into());
    match err(&build(&tensors, meta.clone())) {
        CheckpointError::WrongShape { tensor, .. } => assert_eq!(tensor, "conv_first.weight"),
        other => panic!("{other:?}"),
    }
    // A configuration of 64 groups x 64 blocks x dim 2048 is refused before any tensor is read.
    for (k, v) in [
        ("dim", "2048"),
        ("head_size", "64"),
        ("groups", "64"),
        ("blocks_per_group", "64"),
        ("ffn_ratio", "16"),
    ] {
        meta.insert(k.into(), v.into());
    }
    assert!(matches!(
        err(&build(&tensors, meta)),
        CheckpointError::TooManyParameters { .. }
    ));
    // No metadata at all.
    assert!(matches!(
        err(&build(&tensors, HashMap::new())),
        CheckpointError::MissingMetadata { .. }
    ));
}

#[test]
fn memory_budget_is_checked_from_the_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = valid(Dtype::F16);
    let p = dir.path().join("ck.safetensors");
    std::fs::write(&p, &bytes).expect("write");
    let params = Checkpoint::expected_tensors(&tiny())
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum::<usize>() as u64;
    let needed = bytes.len() as u64 + 4 * params;
    match Checkpoint::load_with_budget(&p, needed - 1) {
        Err(e @ CheckpointError::OverBudget { needed_bytes, .. }) => {
            assert_eq!(needed_bytes, needed);
            assert!(e.to_string().contains("ck.safetensors"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    Checkpoint::load_with_budget(&p, needed).expect("fits exactly");
    // A header that declares a 2^40-element tensor in a small file: over any budget, refused
    // before the data is read (and not a panic on the product).
    let mut b = valid(Dtype::F32);
    let n = header_len(&b);
    let header = String::from_utf8(b[8..8 + n].to_vec()).expect("utf8");
    let lied = header.replacen("\"shape\":[1]", "\"shape\":[9]", 1);
    b[8..8 + n].copy_from_slice(lied.as_bytes());
    std::fs::write(&p, &b).expect("write");
    assert!(matches!(
        Checkpoint::load_with_budget(&p, 1 << 30),
        Err(CheckpointError::NotSafetensors { .. })
    ));
    let huge = header.replacen("\"shape\":[1]", "\"shape\":[1099511627776]", 1);
    let mut b2 = (huge.len() as u64).to_le_bytes().to_vec();
    b2.extend_from_slice(huge.as_bytes());
    b2.extend_from_slice(&b[8 + n..]);
    std::fs::write(&p, &b2).expect("write");
    match Checkpoint::load_with_budget(&p, 1 << 30) {
        Err(CheckpointError::OverBudget { needed_bytes, .. }) => {
            assert!(needed_bytes > 1 << 42, "{needed_bytes}")
        }
        other => panic!("{other:?}"),
    }
}

/// Writes the checkpoint fuzz target's seeds: small committed ones in `fuzz/seeds/checkpoint`
/// (a truncated valid file, a header with every name at shape [1], metadata only) and a complete
/// valid BF16 checkpoint in `fuzz/corpus/checkpoint` (not committed: 300 KB). The first byte of
/// each seed is the target's mode (0: from_bytes, 1: through a file).
#[test]
#[ignore = "writes the fuzz seeds; run by hand (see FUZZING.md)"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = root.join("seeds/checkpoint");
    let corpus = root.join("corpus/checkpoint");
    std::fs::create_dir_all(&seeds).expect("mkdir");
    std::fs::create_dir_all(&corpus).expect("mkdir");
    let put = |dir: &Path, name: &str, bytes: &[u8]| {
        for m in [0u8, 1] {
            let mut b = vec![m];
            b.extend_from_slice(bytes);
            std::fs::write(dir.join(format!("{name}.m{m}")), b).expect("write");
        }
    };
    let full = valid(Dtype::BF16);
    put(&corpus, "valid_bf16", &full);
    put(
        &seeds,
        "truncated_bf16",
        &full[..(header_len(&full) + 8 + 512)],
    );
    let (tensors, meta) = parts(Dtype::F32);
    let ones: Vec<(String, Raw)> = tensors
        .iter()
        .map(|(n, _)| (n.clone(), (Dtype::F16, vec![1], vec![0, 0x3c])))
        .collect();
    put(&seeds, "every_name_shape1_f16", &build(&ones, meta.clone()));
    put(&seeds, "metadata_only", &build(&[], meta));
}
