//! Checkpoint loading, saving and every rejection case of the spec's loader.

use std::collections::HashMap;

use deltawkv::model::checkpoint::{FORMAT_VERSION, MAX_PARAMETERS};
use deltawkv::model::{Checkpoint, CheckpointError, Degradation, ModelConfig};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::common::small_config;

fn small() -> ModelConfig {
    ModelConfig {
        groups: 2,
        lora_rank_a: 3,
        lora_rank_v: 2,
        lora_rank_g: 5,
        ..small_config(4, Degradation::Bicubic)
    }
}

/// A raw tensor about to be serialised: dtype, shape, bytes.
type Raw = (Dtype, Vec<usize>, Vec<u8>);

/// The tensors and metadata of a valid random checkpoint, ready to be tampered with.
fn parts() -> (Vec<(String, Raw)>, HashMap<String, String>) {
    let ck = Checkpoint::random(&small(), 3);
    let tensors = ck
        .tensors
        .iter()
        .map(|(name, t)| {
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), (Dtype::F32, t.shape.clone(), bytes))
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

fn load_err(bytes: &[u8]) -> CheckpointError {
    match Checkpoint::from_bytes(bytes, "bad.safetensors") {
        Ok(_) => panic!("a bad checkpoint was accepted"),
        Err(e) => {
            assert!(
                e.to_string().contains("bad.safetensors"),
                "message does not name the file: {e}"
            );
            e
        }
    }
}

#[test]
fn parameter_counts_match_the_spec() {
    assert_eq!(ModelConfig::dwkv3m(2).parameter_count(), 3_017_025);
    assert_eq!(ModelConfig::dwkv3m(4).parameter_count(), 3_164_737);
    let expected = Checkpoint::expected_tensors(&ModelConfig::dwkv3m(2));
    let block = |prefix: &str| -> usize {
        expected
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    };
    assert_eq!(block("groups.0.blocks.0."), 93_888);
    assert_eq!(block("groups.0.blocks.1."), 100_128);
    assert_eq!(block("groups.3.blocks.5."), 100_128);
    let ck = Checkpoint::random(&ModelConfig::dwkv3m(2), 0);
    assert_eq!(ck.parameter_count(), 3_017_025);
}

#[test]
fn expected_tensors_follow_the_spec() {
    let names: Vec<String> = Checkpoint::expected_tensors(&small())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    assert!(!has("groups.0.blocks.0.att.v0"));
    assert!(!has("groups.0.blocks.0.att.v1"));
    assert!(!has("groups.0.blocks.0.att.v2"));
    assert!(has("groups.0.blocks.1.att.v0"));
    assert!(has("groups.1.blocks.0.att.v2"));
    assert!(has("upsample.0.weight") && has("upsample.1.bias") && !has("upsample.2.weight"));
    let shapes: HashMap<String, Vec<usize>> =
        Checkpoint::expected_tensors(&small()).into_iter().collect();
    assert_eq!(shapes["groups.1.blocks.1.att.r_k"], vec![2, 8]);
    assert_eq!(shapes["groups.1.blocks.1.att.w1"], vec![16, 4]);
    assert_eq!(shapes["groups.1.blocks.1.att.g2"], vec![5, 16]);
    assert_eq!(shapes["groups.1.blocks.1.ffn.key.weight"], vec![32, 16]);
    assert_eq!(shapes["groups.1.blocks.1.ffn.value.weight"], vec![16, 32]);
    assert_eq!(shapes["conv_first.weight"], vec![16, 1, 3, 3]);
    assert_eq!(shapes["conv_before_upsample.weight"], vec![64, 16, 3, 3]);
    assert_eq!(shapes["upsample.1.weight"], vec![256, 64, 3, 3]);
    assert_eq!(shapes["conv_last.weight"], vec![1, 64, 3, 3]);
}

#[test]
fn save_load_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ck.safetensors");
    let mut ck = Checkpoint::random(&small(), 11);
    ck.metadata.insert("val_psnr".into(), "38.5".into());
    ck.save(&path).expect("save");
    let back = Checkpoint::load(&path).expect("load");
    assert_eq!(back.config, small());
    assert_eq!(back.tensors, ck.tensors);
    assert_eq!(
        back.metadata.get("val_psnr").map(String::as_str),
        Some("38.5")
    );
    assert_eq!(
        back.metadata.get("format").map(String::as_str),
        Some("delta-wkv")
    );
    // Saving over an existing file replaces it.
    let other = Checkpoint::random(&small(), 12);
    other.save(&path).expect("save again");
    assert_eq!(
        Checkpoint::load(&path).expect("load").tensors,
        other.tensors
    );
    // Only the checkpoint is left in the directory (no temporary files).
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
}

#[test]
fn half_precision_is_widened() {
    let (mut tensors, meta) = parts();
    let mut expected = HashMap::new();
    for (i, (name, raw)) in tensors.iter_mut().enumerate() {
        let vals: Vec<f32> = raw
            .2
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (dt, bytes, widened): (Dtype, Vec<u8>, Vec<f32>) = if i % 2 == 0 {
            let h: Vec<half::f16> = vals.iter().map(|&v| half::f16::from_f32(v)).collect();
            (
                Dtype::F16,
                h.iter().flat_map(|v| v.to_le_bytes()).collect(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        } else {
            let h: Vec<half::bf16> = vals.iter().map(|&v| half::bf16::from_f32(v)).collect();
            (
                Dtype::BF16,
                h.iter().flat_map(|v| v.to_le_bytes()).collect(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        };
        raw.0 = dt;
        raw.2 = bytes;
        expected.insert(name.clone(), widened);
    }
    let ck = Checkpoint::from_bytes(&build(&tensors, meta), "half").expect("load");
    for (name, t) in &ck.tensors {
        assert_eq!(&t.data, &expected[name], "{name}");
    }
}

#[test]
fn missing_tensor_is_named() {
    let (mut tensors, meta) = parts();
    tensors.retain(|(n, _)| n != "groups.1.blocks.0.att.k_a");
    match load_err(&build(&tensors, meta)) {
        CheckpointError::MissingTensor { tensor, .. } => {
            assert_eq!(tensor, "groups.1.blocks.0.att.k_a")
        }
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn extra_tensor_is_named() {
    let (mut tensors, meta) = parts();
    // A v0 in block 0 is exactly the kind of extra tensor the spec forbids.
    tensors.push((
        "groups.0.blocks.0.att.v0".into(),
        (Dtype::F32, vec![16], vec![0u8; 64]),
    ));
    match load_err(&build(&tensors, meta)) {
        CheckpointError::UnexpectedTensor { tensor, .. } => {
            assert_eq!(tensor, "groups.0.blocks.0.att.v0")
        }
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn wrong_shape_is_named() {
    let (mut tensors, meta) = parts();
    for (n, raw) in tensors.iter_mut() {
        if n == "groups.0.blocks.1.att.w1" {
            // same element count, transposed shape
            raw.1 = vec![4, 16];
        }
    }
    match load_err(&build(&tensors, meta)) {
        CheckpointError::WrongShape {
            tensor,
            expected,
            found,
            ..
        } => {
            assert_eq!(tensor, "groups.0.blocks.1.att.w1");
            assert_eq!(expected, vec![16, 4]);
            assert_eq!(found, vec![4, 16]);
        }
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn wrong_dtype_is_named() {
    let (mut tensors, meta) = parts();
    for (n, raw) in tensors.iter_mut() {
        if n == "norm.bias" {
            raw.0 = Dtype::I32;
        }
    }
    match load_err(&build(&tensors, meta)) {
        CheckpointError::UnsupportedDtype { tensor, dtype, .. } => {
            assert_eq!(tensor, "norm.bias");
            assert_eq!(dtype, "I32");
        }
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn non_finite_values_are_named() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let (mut tensors, meta) = parts();
        for (n, raw) in tensors.iter_mut() {
            if n == "groups.1.blocks.1.ffn.value.weight" {
                raw.2[20..24].copy_from_slice(&bad.to_le_bytes());
            }
        }
        match load_err(&build(&tensors, meta)) {
            CheckpointError::NonFinite { tensor, index, .. } => {
                assert_eq!(tensor, "groups.1.blocks.1.ffn.value.weight");
                assert_eq!(index, 5);
            }
            e => panic!("wrong error: {e}"),
        }
    }
}

#[test]
fn unknown_format_version_is_refused() {
    let (tensors, mut meta) = parts();
    meta.insert("format_version".into(), "2".into());
    match load_err(&build(&tensors, meta)) {
        CheckpointError::UnsupportedVersion { version, .. } => assert_eq!(version, "2"),
        e => panic!("wrong error: {e}"),
    }
    assert_eq!(FORMAT_VERSION, "1");
}

#[test]
fn wrong_format_is_refused() {
    let (tensors, mut meta) = parts();
    meta.insert("format".into(), "pt".into());
    match load_err(&build(&tensors, meta)) {
        CheckpointError::WrongFormat { found, .. } => assert_eq!(found, "pt"),
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn missing_metadata_key_is_named() {
    for key in [
        "format",
        "format_version",
        "head_size",
        "degradation",
        "lora_rank_g",
    ] {
        let (tensors, mut meta) = parts();
        meta.remove(key);
        match load_err(&build(&tensors, meta)) {
            CheckpointError::MissingMetadata { key: k, .. } => assert_eq!(k, key),
            e => panic!("wrong error for {key}: {e}"),
        }
    }
    // No metadata at all.
    let (tensors, _) = parts();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (dt, s, b))| {
            (
                n.as_str(),
                TensorView::new(*dt, s.clone(), b).expect("view"),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).expect("serialise");
    assert!(matches!(
        load_err(&bytes),
        CheckpointError::MissingMetadata { .. }
    ));
}

#[test]
fn bad_metadata_values_are_refused() {
    let (tensors, mut meta) = parts();
    meta.insert("dim".into(), "sixteen".into());
    match load_err(&build(&tensors, meta)) {
        CheckpointError::BadMetadata { key, .. } => assert_eq!(key, "dim"),
        e => panic!("wrong error: {e}"),
    }
    let (tensors, mut meta) = parts();
    meta.insert("degradation".into(), "gaussian".into());
    match load_err(&build(&tensors, meta)) {
        CheckpointError::BadMetadata { key, .. } => assert_eq!(key, "degradation"),
        e => panic!("wrong error: {e}"),
    }
    // A configuration the network cannot have.
    let (tensors, mut meta) = parts();
    meta.insert("scale".into(), "3".into());
    match load_err(&build(&tensors, meta)) {
        CheckpointError::InvalidConfig { source, .. } => assert_eq!(source.field, "scale"),
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    // Within each per-field bound, but far too many parameters in all.
    let (tensors, mut meta) = parts();
    meta.insert("dim".into(), "2048".into());
    meta.insert("head_size".into(), "256".into());
    meta.insert("groups".into(), "64".into());
    meta.insert("blocks_per_group".into(), "64".into());
    match load_err(&build(&tensors, meta)) {
        CheckpointError::TooManyParameters {
            parameters, limit, ..
        } => {
            assert!(parameters > limit);
            assert_eq!(limit, MAX_PARAMETERS);
        }
        e => panic!("wrong error: {e}"),
    }
    let (tensors, mut meta) = parts();
    meta.insert("groups".into(), "100000000000".into());
    assert!(matches!(
        load_err(&build(&tensors, meta)),
        CheckpointError::InvalidConfig { .. }
    ));
}

#[test]
fn truncated_and_foreign_bytes_are_refused() {
    let (tensors, meta) = parts();
    let bytes = build(&tensors, meta);
    for cut in [bytes.len() - 1, bytes.len() / 2, 100, 4] {
        match load_err(&bytes[..cut]) {
            CheckpointError::Truncated { .. } => {}
            e => panic!("wrong error for a cut at {cut}: {e}"),
        }
    }
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0u8; 8]);
    assert!(matches!(
        load_err(&padded),
        CheckpointError::Truncated { .. }
    ));
    for foreign in [
        &b"this is certainly not a safetensors file, it is plain text"[..],
        &[0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3][..],
        // a JSON header that is not a safetensors header
        &[
            8, 0, 0, 0, 0, 0, 0, 0, b'{', b'"', b'x', b'"', b':', b'1', b'}', b' ',
        ][..],
    ] {
        match load_err(foreign) {
            CheckpointError::NotSafetensors { .. } => {}
            e => panic!("wrong error: {e}"),
        }
    }
}

#[test]
fn load_reports_io_errors_with_the_path() {
    match Checkpoint::load("/nonexistent/dir/ck.safetensors") {
        Err(CheckpointError::Io { file, .. }) => assert!(file.contains("ck.safetensors")),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("loaded a file that does not exist"),
    }
}

#[test]
fn get_and_validate() {
    let mut ck = Checkpoint::random(&small(), 5);
    assert_eq!(ck.get("norm.weight").expect("present").shape, vec![16]);
    assert!(matches!(
        ck.get("nope"),
        Err(CheckpointError::NoSuchTensor { .. })
    ));
    ck.validate("mem").expect("valid");
    if let Some(t) = ck.tensors.get_mut("norm.weight") {
        t.data.pop();
    }
    assert!(matches!(
        ck.validate("mem"),
        Err(CheckpointError::WrongShape { .. })
    ));
}

#[test]
fn shipped_weights_load_with_the_dwkv3m_configuration() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights");
    for (scale, params) in [(2, 3_017_025), (4, 3_164_737)] {
        let path = root.join(format!("dwkv3m_x{scale}.safetensors"));
        let ck = Checkpoint::load(&path).expect("shipped checkpoint loads");
        let mut expected = ModelConfig::dwkv3m(scale);
        expected.degradation = ck.config.degradation;
        assert_eq!(ck.config, expected, "{}", path.display());
        assert_eq!(ck.parameter_count(), params);
    }
}
