//! Checked training parameters.

use crate::TrainError;
use serde::{Deserialize, Serialize};

/// The optimizer of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with coupled L2 weight decay (PyTorch `torch.optim.Adam`).
    Adam,
    /// AdamW with decoupled weight decay (PyTorch `torch.optim.AdamW`).
    AdamW,
}

impl OptimizerKind {
    /// Parses `adam` or `adamw`.
    pub fn parse(name: &str) -> Result<Self, TrainError> {
        match name.to_ascii_lowercase().as_str() {
            "adam" => Ok(Self::Adam),
            "adamw" => Ok(Self::AdamW),
            _ => Err(TrainError::UnknownName {
                what: "optimizer",
                name: name.into(),
                expected: "adam, adamw".into(),
            }),
        }
    }

    /// The name as [`OptimizerKind::parse`] reads it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Adam => "adam",
            Self::AdamW => "adamw",
        }
    }
}

/// Training parameters: plain fields with TorchCFM's defaults, checked by [`TrainParams::check`].
///
/// Defaults: TorchCFM's 2-D settings — 2,000 steps, batch 256, Adam with lr 1e-3 and no weight
/// decay — plus an EMA of the weights with decay 0.99 (sampled from; it costs nothing per step
/// and lowers the W2 of 2-D flows markedly, see the crate docs), seed 0, the loss logged every
/// 10 steps, no checkpoints, one thread.
///
/// ```
/// use fm_train::TrainParams;
/// let params = TrainParams::default().steps(500).batch(128).lr(2e-3).seed(7).check().unwrap();
/// assert_eq!(params.steps, 500);
/// assert!(TrainParams::default().batch(0).check().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Number of optimizer steps.
    pub steps: usize,
    /// Minibatch size (pairs of source and target points per step).
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Adam or AdamW.
    pub optimizer: OptimizerKind,
    /// Weight decay (L2 for Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// Decay of the exponential moving average of the weights (default 0.99), `None` for no EMA.
    pub ema: Option<f64>,
    /// Clip the gradient to this global norm, `None` for no clipping.
    pub max_grad_norm: Option<f64>,
    /// Seed of every random draw of the run (initialisation, data, times, noise, couplings).
    pub seed: u64,
    /// Record the loss every this many steps (the loss curve of the model file).
    pub log_every: usize,
    /// Write a checkpoint every this many steps, `None` for none.
    pub checkpoint_every: Option<usize>,
    /// Worker threads; results are bit-identical for any value. Not stored in model files (so
    /// the files of runs with different thread counts are byte-identical).
    #[serde(skip, default = "one")]
    pub threads: usize,
}

fn one() -> usize {
    1
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch: 256,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            weight_decay: 0.0,
            ema: Some(0.99),
            max_grad_norm: None,
            seed: 0,
            log_every: 10,
            checkpoint_every: None,
            threads: 1,
        }
    }
}

/// [`TrainParams`] that passed [`TrainParams::check`]; what the trainer takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidTrainParams(TrainParams);

impl std::ops::Deref for ValidTrainParams {
    type Target = TrainParams;
    fn deref(&self) -> &TrainParams {
        &self.0
    }
}

impl ValidTrainParams {
    /// The checked parameters.
    pub fn params(&self) -> &TrainParams {
        &self.0
    }
}

/// Upper limits that catch typos (an extra zero or three) before hours are spent.
const MAX_STEPS: usize = 100_000_000;
const MAX_BATCH: usize = 1 << 20;
const MAX_THREADS: usize = 1024;

impl TrainParams {
    /// Sets [`TrainParams::steps`].
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }
    /// Sets [`TrainParams::batch`].
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
    /// Sets [`TrainParams::lr`].
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets [`TrainParams::optimizer`].
    pub fn optimizer(mut self, optimizer: OptimizerKind) -> Self {
        self.optimizer = optimizer;
        self
    }
    /// Sets [`TrainParams::weight_decay`].
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Sets [`TrainParams::ema`].
    pub fn ema(mut self, ema: Option<f64>) -> Self {
        self.ema = ema;
        self
    }
    /// Sets [`TrainParams::max_grad_norm`].
    pub fn max_grad_norm(mut self, max_grad_norm: Option<f64>) -> Self {
        self.max_grad_norm = max_grad_norm;
        self
    }
    /// Sets [`TrainParams::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets [`TrainParams::log_every`].
    pub fn log_every(mut self, log_every: usize) -> Self {
        self.log_every = log_every;
        self
    }
    /// Sets [`TrainParams::checkpoint_every`].
    pub fn checkpoint_every(mut self, checkpoint_every: Option<usize>) -> Self {
        self.checkpoint_every = checkpoint_every;
        self
    }
    /// Sets [`TrainParams::threads`].
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Checks every parameter, naming the first that is out of range.
    pub fn check(self) -> Result<ValidTrainParams, TrainError> {
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(TrainError::param(
                "steps",
                self.steps,
                format!("give between 1 and {MAX_STEPS} steps"),
            ));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(TrainError::param(
                "batch",
                self.batch,
                format!("give a batch size between 1 and {MAX_BATCH}"),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1e6) {
            return Err(TrainError::param(
                "lr",
                self.lr,
                "the learning rate must be positive and finite (1e-3 is a good start)",
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TrainError::param(
                "weight-decay",
                self.weight_decay,
                "weight decay must be finite and at least 0",
            ));
        }
        if let Some(d) = self.ema {
            if !(d > 0.0 && d < 1.0) {
                return Err(TrainError::param(
                    "ema",
                    d,
                    "the EMA decay must lie strictly between 0 and 1 (0.999 is usual)",
                ));
            }
        }
        if let Some(c) = self.max_grad_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(TrainError::param(
                    "max-grad-norm",
                    c,
                    "the clipping norm must be positive and finite",
                ));
            }
        }
        if self.log_every == 0 {
            return Err(TrainError::param("log-every", 0, "give at least 1"));
        }
        if self.checkpoint_every == Some(0) {
            return Err(TrainError::param(
                "checkpoint-every",
                0,
                "give at least 1, or no checkpoints at all",
            ));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(TrainError::param(
                "threads",
                self.threads,
                format!("give between 1 and {MAX_THREADS} threads"),
            ));
        }
        Ok(ValidTrainParams(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_rule_names_its_parameter() {
        assert!(TrainParams::default().check().is_ok());
        let cases: Vec<(TrainParams, &str)> = vec![
            (TrainParams::default().steps(0), "steps"),
            (TrainParams::default().batch(0), "batch"),
            (TrainParams::default().lr(-1.0), "lr"),
            (TrainParams::default().lr(f64::NAN), "lr"),
            (TrainParams::default().weight_decay(-0.1), "weight-decay"),
            (TrainParams::default().ema(Some(1.0)), "ema"),
            (
                TrainParams::default().max_grad_norm(Some(0.0)),
                "max-grad-norm",
            ),
            (TrainParams::default().log_every(0), "log-every"),
            (
                TrainParams::default().checkpoint_every(Some(0)),
                "checkpoint-every",
            ),
            (TrainParams::default().threads(0), "threads"),
        ];
        for (p, name) in cases {
            match p.check() {
                Err(TrainError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn optimizer_names_round_trip() {
        for k in [OptimizerKind::Adam, OptimizerKind::AdamW] {
            assert_eq!(OptimizerKind::parse(k.name()).unwrap(), k);
        }
        assert!(OptimizerKind::parse("sgd").is_err());
    }
}
