//! A trained model in memory: config plus networks, loaded from or saved to a model file.

use crate::tensors::{Tensor, TensorData};
use crate::{MlpField, ModelConfig, ModelFile, NamedScheduler, Objective, ScoreField, TrainError};
use fm_autograd::Mlp;
use fm_core::VectorField;
use std::path::Path;

/// A trained model: its [`ModelConfig`], the network and the optional EMA network.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// The config stored in the model file.
    pub config: ModelConfig,
    /// The trained network.
    pub mlp: Mlp,
    /// The EMA network, if the run kept one.
    pub ema: Option<Mlp>,
}

pub(crate) fn to_tensors(mlp: &Mlp) -> Vec<Tensor> {
    let mut v: Vec<Tensor> = mlp
        .to_tensors()
        .into_iter()
        .map(|(name, shape, data)| Tensor::f32(name, shape, data))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn from_tensors(
    path: &Path,
    what: &str,
    config: &ModelConfig,
    t: &[Tensor],
) -> Result<Mlp, TrainError> {
    let cfg = config.mlp_config().map_err(|e| {
        TrainError::bad_file(path, format!("the stored architecture is invalid: {e}"))
    })?;
    let mut raw = Vec::with_capacity(t.len());
    for x in t {
        match &x.data {
            TensorData::F32(v) => raw.push((x.name.clone(), x.shape.clone(), v.clone())),
            TensorData::F64(_) => {
                return Err(TrainError::bad_file(
                    path,
                    format!("{what}: tensor `{}` is F64, model weights are F32", x.name),
                ));
            }
        }
    }
    Mlp::from_tensors(&cfg, &raw).map_err(|e| {
        TrainError::bad_file(path, format!("{what} do not match the architecture: {e}"))
    })
}

impl TrainedModel {
    /// The model file of this model.
    pub fn to_file(&self) -> ModelFile {
        ModelFile {
            config: self.config.clone(),
            weights: to_tensors(&self.mlp),
            ema: self.ema.as_ref().map(to_tensors),
        }
    }

    /// Writes the model file atomically.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        self.to_file().save(path)
    }

    /// Reads a model file, checking its version, architecture and every weight's shape.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let file = ModelFile::load(path)?;
        Self::from_file(path, &file)
    }

    /// The model of a decoded [`ModelFile`] (`path` names it in errors).
    pub fn from_file(path: &Path, file: &ModelFile) -> Result<Self, TrainError> {
        let mlp = from_tensors(path, "weights", &file.config, &file.weights)?;
        let ema = match &file.ema {
            Some(e) => Some(from_tensors(path, "EMA weights", &file.config, e)?),
            None => None,
        };
        Ok(Self {
            config: file.config.clone(),
            mlp,
            ema,
        })
    }

    /// An error naming the missing context if the model is conditional.
    pub(crate) fn check_unconditional(&self) -> Result<(), TrainError> {
        let c = &self.config.context;
        if c.is_none() {
            return Ok(());
        }
        let how = match c.kind {
            crate::ContextKind::Labels => format!("a label (--label K, one of {:?})", c.labels),
            _ => format!(
                "a context of {} values (--context or --context-file)",
                c.width
            ),
        };
        Err(TrainError::param(
            "context",
            "missing",
            format!("this model is conditional: give {how}"),
        ))
    }

    /// The network used for sampling: the EMA network if there is one and `use_ema`.
    pub fn network(&self, use_ema: bool) -> &Mlp {
        match (&self.ema, use_ema) {
            (Some(e), true) => e,
            _ => &self.mlp,
        }
    }

    /// The model's velocity field `v(t, x)` (EMA weights if present and `use_ema`): the
    /// network itself for flow matching, the probability-flow field for score matching.
    /// A conditional model has no field without a context: an error naming the fix (use
    /// [`TrainedModel::conditional_field`] or [`crate::sample_conditional`]).
    pub fn field(&self, use_ema: bool) -> Result<Box<dyn VectorField + Send + Sync>, TrainError> {
        self.check_unconditional()?;
        let mlp = self.network(use_ema).clone();
        Ok(match self.config.objective {
            Objective::Flow => Box::new(MlpField::new(mlp)),
            Objective::Score => {
                let name = self.config.matcher.scheduler.as_deref().unwrap_or("condot");
                Box::new(ScoreField::new(
                    MlpField::new(mlp),
                    NamedScheduler::parse(name)?,
                ))
            }
        })
    }
}
