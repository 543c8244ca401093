//! Checkpoints: safetensors files with the tensor names and `__metadata__` of the model spec
//! (`docs/model-spec.md`, "Checkpoint format").
//!
//! A [`Checkpoint`] is always complete and checked: [`Checkpoint::from_bytes`] refuses a file whose
//! metadata is missing or unsupported, whose tensors are missing, extra, of the wrong shape or
//! dtype, or not finite, naming the file and the tensor. F16 and BF16 tensors are widened to f32.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensorError, SafeTensors};

use super::config::{ConfigError, Degradation, ModelConfig};

/// The `format` metadata value of a Delta-WKV checkpoint.
pub const FORMAT: &str = "delta-wkv";
/// The only `format_version` this build reads and writes.
pub const FORMAT_VERSION: &str = "1";
/// Largest accepted parameter count (1 GiB of f32).
pub const MAX_PARAMETERS: usize = 256 * 1024 * 1024;
/// Largest accepted checkpoint file: the parameters as f32 plus the largest safetensors header.
pub const MAX_FILE_BYTES: u64 = 4 * MAX_PARAMETERS as u64 + 100_000_008;

/// Metadata keys that hold the [`ModelConfig`] (all required).
pub const CONFIG_KEYS: [&str; 11] = [
    "scale",
    "dim",
    "head_size",
    "groups",
    "blocks_per_group",
    "ffn_ratio",
    "lora_rank_w",
    "lora_rank_a",
    "lora_rank_v",
    "lora_rank_g",
    "degradation",
];

/// A dense f32 tensor (widened from f16/bf16 on load), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f32>,
}

/// A validated checkpoint: every tensor the configuration needs, with the right shape, finite.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Hyper-parameters read from the metadata.
    pub config: ModelConfig,
    /// The safetensors `__metadata__`, verbatim.
    pub metadata: BTreeMap<String, String>,
    /// Every tensor of [`Checkpoint::expected_tensors`], by name.
    pub tensors: BTreeMap<String, Tensor>,
}

/// Why a checkpoint was rejected. Messages name the file and, where there is one, the tensor.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any supported checkpoint.
    #[error("{file}: {bytes} bytes is larger than the {limit}-byte limit for a checkpoint")]
    FileTooLarge {
        file: String,
        bytes: u64,
        limit: u64,
    },
    /// Reading the file and widening its tensors to f32 would need more memory than the budget
    /// (checked from the file size and the tensor shapes in the header, before reading the data).
    #[error(
        "{file}: loading needs {needed} ({needed_bytes} bytes: the file plus its tensors as f32), over the memory budget of {budget}"
    )]
    OverBudget {
        file: String,
        needed_bytes: u64,
        needed: String,
        budget: String,
    },
    /// The bytes are not a safetensors file.
    #[error("{file}: not a safetensors file: {reason}")]
    NotSafetensors { file: String, reason: String },
    /// The header promises more (or fewer) bytes than the file holds.
    #[error("{file}: truncated or damaged safetensors file: {reason}")]
    Truncated { file: String, reason: String },
    /// A required `__metadata__` key is absent.
    #[error("{file}: metadata key `{key}` is missing (is this a Delta-WKV checkpoint?)")]
    MissingMetadata { file: String, key: String },
    /// `format` is not `delta-wkv`.
    #[error("{file}: metadata format is `{found}`, expected `{FORMAT}`")]
    WrongFormat { file: String, found: String },
    /// `format_version` is not one this build reads.
    #[error(
        "{file}: checkpoint format_version `{version}` is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion { file: String, version: String },
    /// A metadata value that does not parse.
    #[error("{file}: metadata `{key}` = `{value}`: {reason}")]
    BadMetadata {
        file: String,
        key: String,
        value: String,
        reason: String,
    },
    /// The configuration parses but is not supported.
    #[error("{file}: unsupported configuration: {source}")]
    InvalidConfig {
        file: String,
        #[source]
        source: ConfigError,
    },
    /// The configuration needs more parameters than [`MAX_PARAMETERS`].
    #[error(
        "{file}: the configuration needs {parameters} parameters, more than the limit of {limit}"
    )]
    TooManyParameters {
        file: String,
        parameters: usize,
        limit: usize,
    },
    /// A tensor the configuration needs is absent.
    #[error("{file}: tensor `{tensor}` is missing")]
    MissingTensor { file: String, tensor: String },
    /// A tensor the configuration does not use is present.
    #[error("{file}: unexpected tensor `{tensor}` (not part of this configuration)")]
    UnexpectedTensor { file: String, tensor: String },
    /// A tensor has the wrong shape.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        file: String,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype other than F32, F16 or BF16.
    #[error("{file}: tensor `{tensor}` has dtype {dtype}, expected F32, F16 or BF16")]
    UnsupportedDtype {
        file: String,
        tensor: String,
        dtype: String,
    },
    /// A tensor holds NaN or an infinity.
    #[error("{file}: tensor `{tensor}` holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        file: String,
        tensor: String,
        index: usize,
        value: f32,
    },
    /// [`Checkpoint::get`] of a name the checkpoint does not hold.
    #[error("checkpoint has no tensor `{tensor}`")]
    NoSuchTensor { tensor: String },
    /// Writing the safetensors bytes failed.
    #[error("{file}: cannot serialise checkpoint: {reason}")]
    Serialize { file: String, reason: String },
}

fn block_prefix(g: usize, b: usize) -> String {
    format!("groups.{g}.blocks.{b}")
}

impl Checkpoint {
    /// Every tensor name and shape a checkpoint of `config` holds, in the spec's order. Block 0
    /// (global index 0) has no `att.v0`, `att.v1`, `att.v2`; there are `log2(scale)` upsample
    /// convolutions.
    pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        let c = config.dim;
        let hidden = config.ffn_hidden();
        let mut t: Vec<(String, Vec<usize>)> = Vec::new();
        let mut push = |name: String, shape: Vec<usize>| t.push((name, shape));
        push("conv_first.weight".into(), vec![c, 1, 3, 3]);
        push("conv_first.bias".into(), vec![c]);
        push("patch_norm.weight".into(), vec![c]);
        push("patch_norm.bias".into(), vec![c]);
        for g in 0..config.groups {
            for b in 0..config.blocks_per_group {
                let first = g == 0 && b == 0;
                let p = block_prefix(g, b);
                for ln in ["ln1", "ln2"] {
                    push(format!("{p}.{ln}.weight"), vec![c]);
                    push(format!("{p}.{ln}.bias"), vec![c]);
                }
                for mu in ["mu_r", "mu_w", "mu_k", "mu_v", "mu_a", "mu_g"] {
                    push(format!("{p}.att.{mu}"), vec![c]);
                }
                push(format!("{p}.att.w0"), vec![c]);
                push(format!("{p}.att.a0"), vec![c]);
                if !first {
                    push(format!("{p}.att.v0"), vec![c]);
                }
                let loras = [
                    ("w", config.lora_rank_w),
                    ("a", config.lora_rank_a),
                    ("v", config.lora_rank_v),
                    ("g", config.lora_rank_g),
                ];
                for (z, rank) in loras {
                    if z == "v" && first {
                        continue;
                    }
                    push(format!("{p}.att.{z}1"), vec![c, rank]);
                    push(format!("{p}.att.{z}2"), vec![rank, c]);
                }
                push(format!("{p}.att.k_k"), vec![c]);
                push(format!("{p}.att.k_a"), vec![c]);
                push(
                    format!("{p}.att.r_k"),
                    vec![config.heads(), config.head_size],
                );
                for lin in ["receptance", "key", "value", "output"] {
                    push(format!("{p}.att.{lin}.weight"), vec![c, c]);
                }
                push(format!("{p}.att.ln_x.weight"), vec![c]);
                push(format!("{p}.att.ln_x.bias"), vec![c]);
                push(format!("{p}.ffn.mu_k"), vec![c]);
                push(format!("{p}.ffn.key.weight"), vec![hidden, c]);
                push(format!("{p}.ffn.value.weight"), vec![c, hidden]);
            }
            push(format!("groups.{g}.conv.weight"), vec![c, c, 3, 3]);
            push(format!("groups.{g}.conv.bias"), vec![c]);
        }
        push("norm.weight".into(), vec![c]);
        push("norm.bias".into(), vec![c]);
        push("conv_after_body.weight".into(), vec![c, c, 3, 3]);
        push("conv_after_body.bias".into(), vec![c]);
        push("conv_before_upsample.weight".into(), vec![64, c, 3, 3]);
        push("conv_before_upsample.bias".into(), vec![64]);
        for i in 0..config.upsample_stages() {
            push(format!("upsample.{i}.weight"), vec![256, 64, 3, 3]);
            push(format!("upsample.{i}.bias"), vec![256]);
        }
        push("conv_last.weight".into(), vec![1, 64, 3, 3]);
        push("conv_last.bias".into(), vec![1]);
        t
    }

    /// Reads and validates a checkpoint file with the default memory budget
    /// ([`crate::budget::default_budget`]); see [`Checkpoint::load_with_budget`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        Self::load_with_budget(path, crate::budget::default_budget())
    }

    /// Reads and validates a checkpoint file. Before the data is read, the file size is checked
    /// against [`MAX_FILE_BYTES`], and the file size plus its tensors widened to f32 (shapes from
    /// the safetensors header) against `budget` bytes.
    pub fn load_with_budget(path: impl AsRef<Path>, budget: u64) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let io = |source| CheckpointError::Io {
            file: file.clone(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(io)?.len();
        if bytes > MAX_FILE_BYTES {
            return Err(CheckpointError::FileTooLarge {
                file,
                bytes,
                limit: MAX_FILE_BYTES,
            });
        }
        let needed = bytes.saturating_add(header_f32_bytes(path).unwrap_or(0));
        if needed > budget {
            return Err(CheckpointError::OverBudget {
                file,
                needed_bytes: needed,
                needed: crate::budget::human_bytes(needed),
                budget: crate::budget::human_bytes(budget),
            });
        }
        let data = std::fs::read(path).map_err(io)?;
        Self::from_bytes(&data, &file)
    }

    /// Parses and validates checkpoint bytes; `origin_name` (a path or a description) is used in
    /// error messages.
    pub fn from_bytes(bytes: &[u8], origin_name: &str) -> Result<Self, CheckpointError> {
        let file = origin_name.to_string();
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(CheckpointError::FileTooLarge {
                file,
                bytes: bytes.len() as u64,
                limit: MAX_FILE_BYTES,
            });
        }
        // A safetensors file is an 8-byte header length followed by a JSON object.
        if bytes.len() > 8 && bytes[8] != b'{' {
            return Err(CheckpointError::NotSafetensors {
                file,
                reason: "no JSON header after the 8-byte length".into(),
            });
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| safetensors_error(&file, e))?;
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| safetensors_error(&file, e))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let config = config_from_metadata(&metadata, &file)?;
        let parameters = checked_parameter_count(&config);
        if parameters > MAX_PARAMETERS {
            return Err(CheckpointError::TooManyParameters {
                file,
                parameters,
                limit: MAX_PARAMETERS,
            });
        }

        let expected = Self::expected_tensors(&config);
        let expected_names: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let present: BTreeSet<&str> = st.names().into_iter().collect();
        if let Some(missing) = expected_names.difference(&present).next() {
            return Err(CheckpointError::MissingTensor {
                file,
                tensor: (*missing).to_string(),
            });
        }
        if let Some(extra) = present.difference(&expected_names).next() {
            return Err(CheckpointError::UnexpectedTensor {
                file,
                tensor: (*extra).to_string(),
            });
        }

        let mut tensors = BTreeMap::new();
        for (name, shape) in expected {
            let view = st.tensor(&name).map_err(|e| safetensors_error(&file, e))?;
            if view.shape() != shape.as_slice() {
                return Err(CheckpointError::WrongShape {
                    file,
                    tensor: name,
                    expected: shape,
                    found: view.shape().to_vec(),
                });
            }
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(CheckpointError::UnsupportedDtype {
                        file,
                        tensor: name,
                        dtype: format!("{other:?}"),
                    });
                }
            };
            check_finite(&file, &name, &data)?;
            tensors.insert(name, Tensor { shape, data });
        }
        Ok(Self {
            config,
            metadata,
            tensors,
        })
    }

    /// Checks an in-memory checkpoint the way [`Checkpoint::from_bytes`] checks a file: the
    /// configuration, every tensor name, shape and data length, finiteness. `origin_name` is used
    /// in error messages.
    pub fn validate(&self, origin_name: &str) -> Result<(), CheckpointError> {
        let file = origin_name.to_string();
        self.config
            .validate()
            .map_err(|source| CheckpointError::InvalidConfig {
                file: file.clone(),
                source,
            })?;
        let expected = Self::expected_tensors(&self.config);
        for (name, shape) in &expected {
            let t = self
                .tensors
                .get(name)
                .ok_or_else(|| CheckpointError::MissingTensor {
                    file: file.clone(),
                    tensor: name.clone(),
                })?;
            let len: usize = shape.iter().product();
            if &t.shape != shape || t.data.len() != len {
                return Err(CheckpointError::WrongShape {
                    file,
                    tensor: name.clone(),
                    expected: shape.clone(),
                    found: if t.data.len() == t.shape.iter().product::<usize>() {
                        t.shape.clone()
                    } else {
                        vec![t.data.len()]
                    },
                });
            }
            check_finite(&file, name, &t.data)?;
        }
        if self.tensors.len() != expected.len() {
            let names: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
            if let Some(extra) = self.tensors.keys().find(|k| !names.contains(k.as_str())) {
                return Err(CheckpointError::UnexpectedTensor {
                    file,
                    tensor: extra.clone(),
                });
            }
        }
        Ok(())
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor, CheckpointError> {
        self.tensors
            .get(name)
            .ok_or_else(|| CheckpointError::NoSuchTensor {
                tensor: name.to_string(),
            })
    }

    /// Total number of stored values.
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }

    /// The metadata written by [`Checkpoint::to_bytes`]: the stored metadata, with `format`,
    /// `format_version` and every configuration key set from `self.config`.
    pub fn full_metadata(&self) -> BTreeMap<String, String> {
        let mut m = self.metadata.clone();
        let c = &self.config;
        m.insert("format".into(), FORMAT.into());
        m.insert("format_version".into(), FORMAT_VERSION.into());
        for (k, v) in [
            ("scale", c.scale),
            ("dim", c.dim),
            ("head_size", c.head_size),
            ("groups", c.groups),
            ("blocks_per_group", c.blocks_per_group),
            ("ffn_ratio", c.ffn_ratio),
            ("lora_rank_w", c.lora_rank_w),
            ("lora_rank_a", c.lora_rank_a),
            ("lora_rank_v", c.lora_rank_v),
            ("lora_rank_g", c.lora_rank_g),
        ] {
            m.insert(k.into(), v.to_string());
        }
        m.insert("degradation".into(), c.degradation.as_str().into());
        m
    }

    /// Serialises to safetensors bytes: every tensor as little-endian F32, with
    /// [`Checkpoint::full_metadata`]. `origin_name` is used in error messages.
    pub fn to_bytes(&self, origin_name: &str) -> Result<Vec<u8>, CheckpointError> {
        let ser_err = |e: SafeTensorError| CheckpointError::Serialize {
            file: origin_name.to_string(),
            reason: e.to_string(),
        };
        let raw: Vec<(&String, &Tensor, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name, t, bytes)
            })
            .collect();
        let views = raw
            .iter()
            .map(|(name, t, bytes)| {
                safetensors::tensor::TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                    .map(|v| (name.as_str(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(ser_err)?;
        let meta: HashMap<String, String> = self.full_metadata().into_iter().collect();
        safetensors::serialize(views, Some(meta)).map_err(ser_err)
    }

    /// Writes the checkpoint as F32 safetensors with full metadata, atomically (a temporary file
    /// in the same directory, then a rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        use std::io::Write;
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = self.to_bytes(&file)?;
        let io = |source| CheckpointError::Io {
            file: file.clone(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.write_all(&bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// A checkpoint of `config` with deterministic, non-trivial random weights (seeded): every
    /// matrix non-zero (including `W_o`, the channel-mix value and all LoRA matrices) and every
    /// norm weight, decay and mix coefficient in a range that keeps activations of order 1. For
    /// tests and benchmarks; the metadata records `trained_on = random(seed=...)`.
    pub fn random(config: &ModelConfig, seed: u64) -> Checkpoint {
        let mut rng = SplitMix64::new(seed);
        let mut tensors = BTreeMap::new();
        for (name, shape) in Self::expected_tensors(config) {
            let n: usize = shape.iter().product();
            // Fan-in of a [out, in, ...] weight; 1 for vectors.
            let fan_in: usize = if shape.len() >= 2 {
                shape.iter().skip(1).product()
            } else {
                1
            };
            let inv = 1.0 / (fan_in.max(1) as f32).sqrt();
            let leaf = name.rsplit('.').next().unwrap_or("");
            let parent = name.rsplit('.').nth(1).unwrap_or("");
            let (lo, hi) = match (parent, leaf) {
                (_, "bias") if name.contains("norm") || name.contains("ln") => (-0.1, 0.1),
                (_, "weight") if shape.len() == 1 => (0.8, 1.2),
                (_, "bias") => (-0.1, 0.1),
                ("output", "weight") => (-0.5 * inv, 0.5 * inv),
                ("value", "weight") if name.contains(".ffn.") => (-0.5 * inv, 0.5 * inv),
                (_, "weight") => (-inv, inv),
                (_, l) if l.starts_with("mu_") => (0.0, 1.0),
                (_, "w0") => (-3.0, 1.0),
                (_, "a0") | (_, "v0") => (-1.0, 1.0),
                (_, "w1" | "a1" | "v1" | "g1") => (-0.1, 0.1),
                (_, "w2" | "a2" | "v2") => (-0.1, 0.1),
                (_, "g2") => (-0.3, 0.3),
                (_, "k_k" | "k_a") => (0.5, 1.0),
                (_, "r_k") => (-0.5, 0.5),
                _ => (-inv, inv),
            };
            let data = (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect();
            tensors.insert(name, Tensor { shape, data });
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("trained_on".into(), format!("random(seed={seed})"));
        metadata.insert("steps".into(), "0".into());
        let mut ck = Checkpoint {
            config: config.clone(),
            metadata,
            tensors,
        };
        ck.metadata = ck.full_metadata();
        ck
    }
}

/// Parameter count that saturates instead of overflowing (the configuration is already bounded,
/// this is belt and braces).
fn checked_parameter_count(config: &ModelConfig) -> usize {
    Checkpoint::expected_tensors(config)
        .iter()
        .map(|(_, s)| s.iter().fold(1usize, |a, &d| a.saturating_mul(d)))
        .fold(0usize, |a, n| a.saturating_add(n))
}

/// safetensors' own limit on the size of the JSON header.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The JSON header of the safetensors file at `path`, read without the tensors.
fn read_header(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, CheckpointError> {
    use std::io::Read;
    let file = path.display().to_string();
    let io = |source| CheckpointError::Io {
        file: file.clone(),
        source,
    };
    let not_safetensors = |reason: String| CheckpointError::NotSafetensors {
        file: file.clone(),
        reason,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| not_safetensors(format!("no 8-byte header length ({e})")))?;
    let n = u64::from_le_bytes(len);
    if n == 0 || n > MAX_HEADER_BYTES || n > file_len.saturating_sub(8) {
        return Err(not_safetensors(format!("header of {n} bytes")));
    }
    let mut header = Vec::new();
    f.take(n).read_to_end(&mut header).map_err(io)?;
    serde_json::from_slice(&header)
        .map_err(|e| not_safetensors(format!("the header is not a JSON object ({e})")))
}

/// What a checkpoint's `__metadata__` says about its use, read from the header alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeekedMeta {
    /// The upscaling factor.
    pub scale: usize,
    /// The LR simulation it was trained on (`None` when absent or unknown).
    pub degradation: Option<Degradation>,
}

/// `scale` and `degradation` from the `__metadata__` of the checkpoint at `path`, read from the
/// safetensors header without loading (or checking) the tensors.
pub fn peek_meta(path: &Path) -> Result<PeekedMeta, CheckpointError> {
    let header = read_header(path)?;
    let file = path.display().to_string();
    let meta = header.get("__metadata__");
    let text = |key: &str| meta.and_then(|m| m.get(key)).and_then(|v| v.as_str());
    let value = text("scale").ok_or_else(|| CheckpointError::MissingMetadata {
        file: file.clone(),
        key: "scale".into(),
    })?;
    let scale = value
        .trim()
        .parse()
        .map_err(|e| CheckpointError::BadMetadata {
            file,
            key: "scale".into(),
            value: value.to_string(),
            reason: format!("not a non-negative integer ({e})"),
        })?;
    let degradation = text("degradation").and_then(Degradation::from_metadata);
    Ok(PeekedMeta { scale, degradation })
}

/// Bytes the tensors listed in the safetensors header of `path` take as f32, saturating; `None`
/// when the header cannot be read (the full parse then reports why).
fn header_f32_bytes(path: &Path) -> Option<u64> {
    let map = read_header(path).ok()?;
    let total = map
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("shape")?.as_array())
        .map(|shape| {
            shape
                .iter()
                .map(|d| d.as_u64().unwrap_or(u64::MAX))
                .fold(4u64, |a, d| a.saturating_mul(d))
        })
        .fold(0u64, |a, b| a.saturating_add(b));
    Some(total)
}

fn check_finite(file: &str, tensor: &str, data: &[f32]) -> Result<(), CheckpointError> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(CheckpointError::NonFinite {
            file: file.to_string(),
            tensor: tensor.to_string(),
            index,
            value: data[index],
        }),
    }
}

fn safetensors_error(file: &str, e: SafeTensorError) -> CheckpointError {
    match e {
        SafeTensorError::MetadataIncompleteBuffer
        | SafeTensorError::InvalidHeaderLength
        | SafeTensorError::HeaderTooSmall => CheckpointError::Truncated {
            file: file.to_string(),
            reason: e.to_string(),
        },
        other => CheckpointError::NotSafetensors {
            file: file.to_string(),
            reason: other.to_string(),
        },
    }
}

/// Parses the `__metadata__` into a validated [`ModelConfig`].
fn config_from_metadata(
    metadata: &BTreeMap<String, String>,
    file: &str,
) -> Result<ModelConfig, CheckpointError> {
    let get = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| CheckpointError::MissingMetadata {
                file: file.to_string(),
                key: key.to_string(),
            })
    };
    let format = get("format")?;
    if format != FORMAT {
        return Err(CheckpointError::WrongFormat {
            file: file.to_string(),
            found: format.clone(),
        });
    }
    let version = get("format_version")?;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            file: file.to_string(),
            version: version.clone(),
        });
    }
    let num = |key: &str| -> Result<usize, CheckpointError> {
        let value = get(key)?;
        value
            .trim()
            .parse::<usize>()
            .map_err(|e| CheckpointError::BadMetadata {
                file: file.to_string(),
                key: key.to_string(),
                value: value.clone(),
                reason: format!("not a non-negative integer ({e})"),
            })
    };
    let deg = get("degradation")?;
    let degradation =
        Degradation::from_metadata(deg.trim()).ok_or_else(|| CheckpointError::BadMetadata {
            file: file.to_string(),
            key: "degradation".into(),
            value: deg.clone(),
            reason: "expected `kspace` or `bicubic`".into(),
        })?;
    let config = ModelConfig {
        scale: num("scale")?,
        dim: num("dim")?,
        head_size: num("head_size")?,
        groups: num("groups")?,
        blocks_per_group: num("blocks_per_group")?,
        ffn_ratio: num("ffn_ratio")?,
        lora_rank_w: num("lora_rank_w")?,
        lora_rank_a: num("lora_rank_a")?,
        lora_rank_v: num("lora_rank_v")?,
        lora_rank_g: num("lora_rank_g")?,
        degradation,
    };
    config
        .validate()
        .map_err(|source| CheckpointError::InvalidConfig {
            file: file.to_string(),
            source,
        })?;
    Ok(config)
}

/// SplitMix64: a tiny, good-enough seeded generator for random test checkpoints.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ModelConfig {
        ModelConfig {
            scale: 2,
            dim: 8,
            head_size: 4,
            groups: 2,
            blocks_per_group: 2,
            ffn_ratio: 2,
            lora_rank_w: 2,
            lora_rank_a: 3,
            lora_rank_v: 2,
            lora_rank_g: 4,
            degradation: Degradation::Bicubic,
        }
    }

    #[test]
    fn random_is_deterministic_and_valid() {
        let a = Checkpoint::random(&small(), 7);
        let b = Checkpoint::random(&small(), 7);
        let c = Checkpoint::random(&small(), 8);
        assert_eq!(a.tensors, b.tensors);
        assert_ne!(a.tensors, c.tensors);
        a.validate("random").expect("valid");
        for name in [
            "groups.0.blocks.1.att.output.weight",
            "groups.1.blocks.0.ffn.value.weight",
        ] {
            assert!(a.tensors[name].data.iter().all(|&v| v != 0.0), "{name}");
        }
    }

    #[test]
    fn bytes_round_trip() {
        let a = Checkpoint::random(&small(), 1);
        let bytes = a.to_bytes("mem").expect("serialise");
        let b = Checkpoint::from_bytes(&bytes, "mem").expect("parse");
        assert_eq!(a.tensors, b.tensors);
        assert_eq!(a.config, b.config);
        assert_eq!(a.metadata, b.metadata);
    }

    #[test]
    fn peek_meta_reads_the_header_only_and_rejects_junk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("c.safetensors");
        let header =
            br#"{"__metadata__":{"format":"delta-wkv","scale":"4","degradation":"bicubic"}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        std::fs::write(&good, &bytes).expect("write");
        assert_eq!(
            peek_meta(&good).expect("meta"),
            PeekedMeta {
                scale: 4,
                degradation: Some(Degradation::Bicubic)
            }
        );
        let junk = dir.path().join("j.safetensors");
        std::fs::write(&junk, u64::MAX.to_le_bytes()).expect("write");
        let e = peek_meta(&junk).expect_err("junk");
        assert!(e.to_string().contains("not a safetensors"), "{e}");
        let short = dir.path().join("s.safetensors");
        std::fs::write(&short, b"abc").expect("write");
        assert!(peek_meta(&short).is_err());
        let nometa = dir.path().join("n.safetensors");
        let h = br#"{"a":{}}"#;
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h);
        std::fs::write(&nometa, &b).expect("write");
        let e = peek_meta(&nometa).expect_err("no scale");
        assert!(
            matches!(&e, CheckpointError::MissingMetadata { key, .. } if key == "scale"),
            "{e}"
        );
    }
}
