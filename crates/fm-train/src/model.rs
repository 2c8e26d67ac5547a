//! The model file: one `.safetensors` file with a versioned JSON config in its metadata.

use crate::tensors::{self, Tensor, TensorData};
use crate::{MatcherSpec, TrainError, TrainParams};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The format version this build writes and reads. Files with a larger version are refused.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// The metadata key of a model file that holds the JSON [`ModelConfig`].
pub const CONFIG_KEY: &str = "fm_config";

/// The `format` field of every model file.
pub const MODEL_FORMAT: &str = "fm-model";

/// Prefix of the EMA weights' tensor names (`ema.layers.0.weight`, ...).
pub const EMA_PREFIX: &str = "ema.";

/// The network's architecture, as stored in a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArchConfig {
    /// Data dimension `d` (input and output width).
    pub dim: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Activation name (`selu`, `silu`, `relu`, `tanh`, `elu`, `gelu`, `softplus`).
    pub activation: String,
    /// Time input: `raw` (t as one extra column, as TorchCFM) or `fourier:K`.
    pub time_features: String,
}

impl Default for ArchConfig {
    /// TorchCFM's 2-D model: 3 hidden layers of 64, SELU, raw t.
    fn default() -> Self {
        Self {
            dim: 2,
            hidden: vec![64, 64, 64],
            activation: "selu".into(),
            time_features: "raw".into(),
        }
    }
}

/// What the network regresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Flow matching: the network is the vector field `v_θ(t, x)`, regressed onto `u_t(x | z)`.
    Flow,
    /// Denoising score matching on a Gaussian (affine) path: the network predicts the noise
    /// `ε̂(t, x) = −σ_t ∇_x log p_t(x)`; sampling uses the probability-flow ODE.
    Score,
}

impl Objective {
    /// Parses `flow` (alias `fm`) or `score` (alias `dsm`).
    pub fn parse(name: &str) -> Result<Self, TrainError> {
        match name.to_ascii_lowercase().as_str() {
            "flow" | "fm" => Ok(Self::Flow),
            "score" | "dsm" => Ok(Self::Score),
            _ => Err(TrainError::UnknownName {
                what: "objective",
                name: name.into(),
                expected: "flow, score".into(),
            }),
        }
    }
    /// The name as [`Objective::parse`] reads it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Flow => "flow",
            Self::Score => "score",
        }
    }
}

/// The versioned JSON config stored in a model file's metadata under [`CONFIG_KEY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// [`MODEL_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Version of the `fm-train` crate that wrote the file.
    #[serde(default)]
    pub crate_version: String,
    /// The network.
    pub architecture: ArchConfig,
    /// Flow matching or score matching.
    pub objective: Objective,
    /// The matcher (path + coupling) it was trained with.
    pub matcher: MatcherSpec,
    /// The training settings.
    #[serde(default)]
    pub training: TrainParams,
    /// The source dataset's name (spec).
    #[serde(default)]
    pub source: String,
    /// The target dataset's name (spec).
    #[serde(default)]
    pub target: String,
    /// Optimizer steps taken.
    #[serde(default)]
    pub steps_done: usize,
    /// `(step, loss)` every `training.log_every` steps: the loss curve.
    #[serde(default)]
    pub loss_history: Vec<(usize, f64)>,
    /// Whether the file holds EMA weights (used for sampling when present).
    #[serde(default)]
    pub has_ema: bool,
    /// The context layout of a conditional model (absent, i.e. [`ContextKind::None`](crate::ContextKind::None),
    /// for an unconditional one and in files written before conditioning).
    #[serde(default, skip_serializing_if = "crate::ContextLayout::is_none")]
    pub context: crate::ContextLayout,
}

impl ModelConfig {
    /// The `fm-autograd` configuration of the network: the architecture's, with the context
    /// width of [`ModelConfig::context`].
    pub fn mlp_config(&self) -> Result<fm_autograd::MlpConfig, TrainError> {
        let mut cfg = self.architecture.mlp_config()?;
        cfg.context = self.context.input_width();
        cfg.check()?;
        Ok(cfg)
    }
}

/// A model file in memory: its config, the weights and the optional EMA weights.
///
/// Tensors are named as PyTorch names them (`layers.0.weight` with shape (out, in),
/// `layers.0.bias`), the EMA copy with the prefix `ema.`, so the file loads in Python with
/// `safetensors.torch.load_file`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    /// The config.
    pub config: ModelConfig,
    /// The trained weights.
    pub weights: Vec<Tensor>,
    /// The EMA weights, if the run kept an EMA.
    pub ema: Option<Vec<Tensor>>,
}

impl ModelFile {
    /// Encodes the file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let json = serde_json::to_string(&self.config)
            .map_err(|e| TrainError::param("config", "", format!("cannot encode config: {e}")))?;
        let mut all = self.weights.clone();
        if let Some(ema) = &self.ema {
            all.extend(ema.iter().map(|t| Tensor {
                name: format!("{EMA_PREFIX}{}", t.name),
                ..t.clone()
            }));
        }
        tensors::encode(HashMap::from([(CONFIG_KEY.to_string(), json)]), &all)
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        crate::write_atomic(path, &self.to_bytes()?)
    }

    /// Reads and checks a model file: format, version and the weight shapes against the
    /// architecture.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let bytes = tensors::read_file(path)?;
        Self::from_bytes(path, &bytes)
    }

    /// Decodes and checks a model file's bytes (`path` names the file in errors).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, TrainError> {
        let (meta, all) = tensors::decode(path, bytes)?;
        let json = meta.get(CONFIG_KEY).ok_or_else(|| {
            TrainError::bad_file(
                path,
                format!("not an fm model file (no `{CONFIG_KEY}` metadata); give a file written by `fm train`"),
            )
        })?;
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            TrainError::bad_file(path, format!("the model config is not valid JSON: {e}"))
        })?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| TrainError::bad_file(path, "the model config has no format_version"))?;
        if version != u64::from(MODEL_FORMAT_VERSION) {
            return Err(TrainError::UnsupportedVersion {
                path: path.display().to_string(),
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: MODEL_FORMAT_VERSION,
            });
        }
        let config: ModelConfig = serde_json::from_value(value).map_err(|e| {
            TrainError::bad_file(path, format!("the model config is malformed: {e}"))
        })?;
        if config.format != MODEL_FORMAT {
            return Err(TrainError::bad_file(
                path,
                format!("format is `{}`, expected `{MODEL_FORMAT}`", config.format),
            ));
        }
        let (ema, weights): (Vec<Tensor>, Vec<Tensor>) = all
            .into_iter()
            .partition(|t| t.name.starts_with(EMA_PREFIX));
        let ema: Vec<Tensor> = ema
            .into_iter()
            .map(|t| Tensor {
                name: t.name[EMA_PREFIX.len()..].to_string(),
                ..t
            })
            .collect();
        let expected = expected_shapes(&config.architecture, config.context.input_width())
            .map_err(|reason| TrainError::bad_file(path, reason))?;
        check_shapes(path, "weights", &weights, expected.as_deref())?;
        let ema = if config.has_ema {
            check_shapes(path, "EMA weights", &ema, expected.as_deref())?;
            Some(ema)
        } else {
            None
        };
        Ok(Self {
            config,
            weights,
            ema,
        })
    }
}

/// The number of time-input columns of a `time_features` spec (`raw` → 1, `fourier:K` → 2K).
pub fn time_columns(spec: &str) -> Result<usize, String> {
    if spec == "raw" {
        return Ok(1);
    }
    if let Some(k) = spec.strip_prefix("fourier:") {
        if let Ok(k) = k.parse::<usize>() {
            if (1..=1024).contains(&k) {
                return Ok(2 * k);
            }
        }
    }
    Err(format!(
        "unknown time features `{spec}`: expected `raw` or `fourier:K` with 1 <= K <= 1024"
    ))
}

/// The `(name, shape)` of every weight tensor of an architecture, `None` if the time features
/// leave the input width open.
type Shapes = Vec<(String, Vec<usize>)>;

fn expected_shapes(arch: &ArchConfig, context: usize) -> Result<Option<Shapes>, String> {
    if arch.dim == 0 || arch.dim > 1_000_000 {
        return Err(format!(
            "the architecture has dimension {}: expected 1 to 1000000",
            arch.dim
        ));
    }
    if arch.hidden.len() > 64 || arch.hidden.iter().any(|&w| w == 0 || w > 65_536) {
        return Err(format!(
            "the architecture has hidden widths {:?}: expected at most 64 layers of width 1 to 65536",
            arch.hidden
        ));
    }
    let tc = match time_columns(&arch.time_features) {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    if context > 1_000_000 {
        return Err(format!(
            "the context layout has {context} input columns: expected at most 1000000"
        ));
    }
    let mut widths = vec![arch.dim + tc + context];
    widths.extend(arch.hidden.iter().copied());
    widths.push(arch.dim);
    let mut out = Vec::new();
    for (i, w) in widths.windows(2).enumerate() {
        out.push((format!("layers.{i}.bias"), vec![w[1]]));
        out.push((format!("layers.{i}.weight"), vec![w[1], w[0]]));
    }
    out.sort();
    Ok(Some(out))
}

fn check_shapes(
    path: &Path,
    what: &str,
    tensors: &[Tensor],
    expected: Option<&[(String, Vec<usize>)]>,
) -> Result<(), TrainError> {
    for t in tensors {
        let size = t.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if size != Some(t.data.len()) {
            return Err(TrainError::bad_file(
                path,
                format!(
                    "tensor `{}` holds {} values but has shape {:?}",
                    t.name,
                    t.data.len(),
                    t.shape
                ),
            ));
        }
        let finite = match &t.data {
            TensorData::F32(v) => v.iter().all(|x| x.is_finite()),
            TensorData::F64(v) => v.iter().all(|x| x.is_finite()),
        };
        if !finite {
            return Err(TrainError::bad_file(
                path,
                format!("tensor `{}` holds NaN or infinite values", t.name),
            ));
        }
    }
    let Some(expected) = expected else {
        return Ok(());
    };
    let found: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    for (name, shape) in expected {
        match found.iter().find(|(n, _)| n == name) {
            None => {
                return Err(TrainError::bad_file(
                    path,
                    format!(
                        "{what}: tensor `{name}` is missing; the file does not match its architecture"
                    ),
                ));
            }
            Some((_, s)) if s != shape => {
                return Err(TrainError::bad_file(
                    path,
                    format!(
                        "{what}: tensor `{name}` has shape {s:?} but the architecture needs {shape:?}; the file is damaged or was edited"
                    ),
                ));
            }
            _ => {}
        }
    }
    if let Some((name, _)) = found
        .iter()
        .find(|(n, _)| !expected.iter().any(|(e, _)| e == n))
    {
        return Err(TrainError::bad_file(
            path,
            format!("{what}: unexpected tensor `{name}` for this architecture"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelFile {
        let arch = ArchConfig {
            dim: 2,
            hidden: vec![3],
            ..ArchConfig::default()
        };
        let w = vec![
            Tensor::f32("layers.0.weight", vec![3, 3], vec![0.5; 9]),
            Tensor::f32("layers.0.bias", vec![3], vec![0.1; 3]),
            Tensor::f32("layers.1.weight", vec![2, 3], vec![-0.5; 6]),
            Tensor::f32("layers.1.bias", vec![2], vec![0.0; 2]),
        ];
        let mut w = w;
        w.sort_by(|a, b| a.name.cmp(&b.name));
        ModelFile {
            config: ModelConfig {
                format: MODEL_FORMAT.into(),
                format_version: MODEL_FORMAT_VERSION,
                crate_version: env!("CARGO_PKG_VERSION").into(),
                architecture: arch,
                objective: Objective::Flow,
                matcher: MatcherSpec::parse("otcfm", None, None, None).unwrap(),
                training: TrainParams::default(),
                source: "gaussian".into(),
                target: "moons".into(),
                steps_done: 10,
                loss_history: vec![(10, 1.5)],
                has_ema: true,
                context: Default::default(),
            },
            ema: Some(w.clone()),
            weights: w,
        }
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let m = tiny();
        m.save(&path).unwrap();
        assert_eq!(ModelFile::load(&path).unwrap(), m);
    }

    #[test]
    fn future_version_is_refused_with_both_versions_named() {
        let mut m = tiny();
        m.config.format_version = MODEL_FORMAT_VERSION + 1;
        let err = ModelFile::from_bytes(Path::new("m"), &m.to_bytes().unwrap()).unwrap_err();
        assert!(
            matches!(err, TrainError::UnsupportedVersion { found, .. } if found == MODEL_FORMAT_VERSION + 1)
        );
        assert!(err.is_invalid_input());
    }

    #[test]
    fn mismatched_shape_and_missing_tensor_are_named() {
        let mut m = tiny();
        m.weights[0].shape = vec![1, 3];
        m.weights[0].data = TensorData::F32(vec![0.0; 3]);
        let err = ModelFile::from_bytes(Path::new("m"), &m.to_bytes().unwrap()).unwrap_err();
        assert!(err.to_string().contains(&m.weights[0].name), "{err}");
        let mut m = tiny();
        m.weights.pop();
        let err = ModelFile::from_bytes(Path::new("m"), &m.to_bytes().unwrap()).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn a_safetensors_file_without_config_is_not_a_model() {
        let bytes =
            tensors::encode(HashMap::new(), &[Tensor::f32("x", vec![1], vec![1.0])]).unwrap();
        let err = ModelFile::from_bytes(Path::new("m"), &bytes).unwrap_err();
        assert!(err.to_string().contains("not an fm model file"), "{err}");
    }
}
