//! Checkpoints: everything needed to continue a run bit-identically.

use crate::tensors::{self, Tensor, TensorData};
use crate::trainable::FlatEma;
use crate::{ArchConfig, MatcherSpec, Objective, TrainError};
use fm_autograd::{Adam, Ema};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The checkpoint format version this build writes; it reads every version from 1 on. Version 2
/// names activations as [`MODEL_FORMAT_VERSION`](crate::MODEL_FORMAT_VERSION) 2 does (`gelu` is
/// the exact GELU); a version-1 checkpoint's `gelu` is read as `gelu-tanh`.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 2;
/// The metadata key of a checkpoint's JSON state.
pub const CHECKPOINT_KEY: &str = "fm_checkpoint";

/// The settings a checkpoint can only be resumed with: changing any of them would make the
/// resumed run a different run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// Source dataset spec.
    pub source: String,
    /// Target dataset spec.
    pub target: String,
    /// The matcher.
    pub matcher: MatcherSpec,
    /// The objective.
    pub objective: Objective,
    /// The network.
    pub architecture: ArchConfig,
    /// Batch size.
    pub batch: usize,
    /// Seed.
    pub seed: u64,
    /// Optimizer name.
    pub optimizer: String,
    /// EMA decay.
    pub ema: Option<f64>,
    /// The network of a [`Trainer::run_with`](crate::Trainer::run_with) run; `None` for the
    /// built-in MLP (which `architecture` describes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkIdentity>,
    /// The context layout of a conditional run (with its z-score stats and labels, so a resume
    /// with other context data is refused); absent for an unconditional run.
    #[serde(default, skip_serializing_if = "crate::ContextLayout::is_none")]
    pub context: crate::ContextLayout,
}

/// What a checkpoint records of a [`TrainableField`](crate::TrainableField) network: resuming
/// needs a network that reports the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkIdentity {
    /// [`TrainableField::architecture`](crate::TrainableField::architecture).
    pub architecture: String,
    /// The name and shape of every tensor of [`TrainableField::to_tensors`](crate::TrainableField::to_tensors).
    pub tensors: Vec<(String, Vec<usize>)>,
    /// The number of parameters.
    pub params: usize,
}

impl NetworkIdentity {
    /// The identity of `net`.
    pub fn of<N: crate::TrainableField>(net: &N) -> Self {
        Self {
            architecture: net.architecture(),
            tensors: net
                .to_tensors()
                .into_iter()
                .map(|t| (t.name, t.shape))
                .collect(),
            params: net.params().len(),
        }
    }
}

/// The JSON part of a checkpoint (the weights are tensors).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointState {
    pub format_version: u32,
    pub crate_version: String,
    pub identity: RunIdentity,
    /// Steps completed.
    pub step: usize,
    pub loss_history: Vec<(usize, f64)>,
    /// The loss of the run's first step, the reference of the divergence rule (see
    /// [`Trainer`](crate::Trainer)); `None` in checkpoints of fm 0.1 builds that did not store it.
    #[serde(default)]
    pub reference_loss: Option<f64>,
    pub adam: Adam,
    pub ema: Option<Ema>,
    /// The EMA of a [`Trainer::run_with`](crate::Trainer::run_with) network (the MLP's is `ema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_ema: Option<FlatEma>,
    /// The RNG that draws the next batch (informational: batch `k` is drawn from the seed's
    /// stream `k + 1`, so this is a function of seed and step).
    pub next_batch_rng: fm_core::rng::FmRng,
}

/// A checkpoint: the network's parameters, the optimizer and EMA state, the step, the loss
/// history and the run's identity, in one `.safetensors` file (parameters as an F32 tensor,
/// the rest as JSON metadata under [`CHECKPOINT_KEY`]). Written atomically by the [`Trainer`](crate::Trainer).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub(crate) state: CheckpointState,
    pub(crate) params: Vec<f32>,
}

impl Checkpoint {
    /// Steps completed.
    pub fn step(&self) -> usize {
        self.state.step
    }

    /// The settings the checkpoint can be resumed with.
    pub fn identity(&self) -> &RunIdentity {
        &self.state.identity
    }

    /// The network's flat parameters.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The loss of the run's first step, which the divergence rule compares with (`None` in a
    /// checkpoint written before fm stored it; a resume then falls back to the first loss of the
    /// saved history).
    pub fn reference_loss(&self) -> Option<f64> {
        self.state.reference_loss
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let json = serde_json::to_string(&self.state).map_err(|e| {
            TrainError::param(
                "checkpoint",
                "",
                format!("cannot encode the checkpoint: {e}"),
            )
        })?;
        let n = self.params.len();
        let bytes = tensors::encode(
            HashMap::from([(CHECKPOINT_KEY.to_string(), json)]),
            &[Tensor::f32("params", vec![n], self.params.clone())],
        )?;
        crate::write_atomic(path, &bytes)
    }

    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let bytes = tensors::read_file(path)?;
        Self::from_bytes(path, &bytes)
    }

    /// Decodes and checks a checkpoint's bytes (`path` names it in errors).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, TrainError> {
        let (meta, ts) = tensors::decode(path, bytes)?;
        let json = meta.get(CHECKPOINT_KEY).ok_or_else(|| {
            TrainError::bad_file(path, "not an fm checkpoint (no checkpoint metadata)")
        })?;
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            TrainError::bad_file(path, format!("the checkpoint state is not valid JSON: {e}"))
        })?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        if !(1..=u64::from(CHECKPOINT_FORMAT_VERSION)).contains(&version) {
            return Err(TrainError::UnsupportedVersion {
                path: path.display().to_string(),
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: CHECKPOINT_FORMAT_VERSION,
            });
        }
        let mut state: CheckpointState = serde_json::from_value(value).map_err(|e| {
            TrainError::bad_file(path, format!("the checkpoint state is malformed: {e}"))
        })?;
        if version == 1 {
            state.identity.architecture.upgrade_from_v1();
            state.format_version = CHECKPOINT_FORMAT_VERSION;
        }
        let params = match ts.iter().find(|t| t.name == "params") {
            Some(Tensor {
                data: TensorData::F32(v),
                ..
            }) => v.clone(),
            _ => {
                return Err(TrainError::bad_file(
                    path,
                    "the checkpoint has no F32 `params` tensor",
                ));
            }
        };
        Ok(Self { state, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_models_are_not_checkpoints() {
        for bytes in [&b""[..], b"12345678", b"\x10\x00\x00\x00\x00\x00\x00\x00{}"] {
            let err = Checkpoint::from_bytes(Path::new("c.ckpt"), bytes).unwrap_err();
            assert!(err.is_invalid_input(), "{err}");
            assert!(err.to_string().starts_with("c.ckpt"), "{err}");
        }
        let model = tensors::encode(
            HashMap::from([(crate::CONFIG_KEY.to_string(), "{}".to_string())]),
            &[Tensor::f32("x", vec![1], vec![1.0])],
        )
        .unwrap();
        let err = Checkpoint::from_bytes(Path::new("m"), &model).unwrap_err();
        assert!(err.to_string().contains("not an fm checkpoint"), "{err}");
    }
}
