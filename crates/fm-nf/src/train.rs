//! Maximum-likelihood training of any flow with a flat parameter vector, with the workspace's Adam.

use crate::error::{NfError, Result, invalid};
use fm_autograd::{Adam, AdamConfig};
use ndarray::{Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// A model trained by maximum likelihood: a flat `f64` parameter vector and the mean negative
/// log-likelihood of a batch with its gradient.
///
/// ```
/// use fm_nf::{MaxLikelihood, Result, TrainConfig, train};
/// use ndarray::{Array1, ArrayView2};
/// /// N(μ, 1) in 1-D with the mean μ as its one parameter.
/// struct Shift(Vec<f64>);
/// impl MaxLikelihood for Shift {
///     fn params(&self) -> &[f64] { &self.0 }
///     fn params_mut(&mut self) -> &mut [f64] { &mut self.0 }
///     fn nll_and_grad(&self, x: ArrayView2<f64>, _rng: &mut dyn rand::RngCore) -> Result<(f64, Vec<f64>)> {
///         let m = self.0[0];
///         let n = x.nrows() as f64;
///         let nll = x.iter().map(|v| 0.5 * (v - m).powi(2)).sum::<f64>() / n
///             + 0.5 * (2.0 * std::f64::consts::PI).ln();
///         Ok((nll, vec![x.iter().map(|v| m - v).sum::<f64>() / n]))
///     }
/// }
/// let data = ndarray::Array2::from_elem((64, 1), 3.0);
/// let mut model = Shift(vec![0.0]);
/// let cfg = TrainConfig { steps: 400, batch_size: 16, lr: 0.05, ..Default::default() };
/// train(&mut model, data.view(), &cfg, &mut fm_core::rng::seeded(0)).unwrap();
/// assert!((model.0[0] - 3.0).abs() < 0.1);
/// ```
pub trait MaxLikelihood {
    /// The parameters.
    fn params(&self) -> &[f64];
    /// The parameters, writable.
    fn params_mut(&mut self) -> &mut [f64];
    /// `−(1/n) Σ log p(x_i)` over the rows of `x` (or an unbiased estimate of it, drawing
    /// from `rng`, for models whose log-determinant is estimated) and its gradient in the
    /// parameters.
    fn nll_and_grad(&self, x: ArrayView2<f64>, rng: &mut dyn RngCore) -> Result<(f64, Vec<f64>)>;
    /// Called once with the first batch before training (e.g. ActNorm's data initialisation).
    fn prepare(&mut self, first_batch: ArrayView2<f64>) -> Result<()> {
        let _ = first_batch;
        Ok(())
    }
}

/// The settings of [`train`]. `Default`: 1,000 steps of batches of 256, Adam with lr 1e-3,
/// gradient norm clipped at 10, the loss logged every 100 steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Rows per batch, drawn uniformly with replacement from the data.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Gradient-norm clipping (`None`: off).
    pub max_grad_norm: Option<f64>,
    /// Record the batch loss every this many steps (and at the last step).
    pub log_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 256,
            lr: 1e-3,
            max_grad_norm: Some(10.0),
            log_every: 100,
        }
    }
}

impl TrainConfig {
    /// Checks `steps ≥ 1`, `batch_size ≥ 1`, `log_every ≥ 1` and Adam's settings.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("log_every", self.log_every),
        ] {
            if v == 0 {
                return Err(invalid(name, 0, "must be at least 1"));
            }
        }
        self.adam().check()?;
        Ok(())
    }

    fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            max_grad_norm: self.max_grad_norm,
            ..AdamConfig::default()
        }
    }
}

/// What [`train`] (or [`train_with`](crate::train_with)) did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// `(step, batch loss)` every `log_every` steps and at the last step (step counted from 1);
    /// a resumed run's list starts with the checkpoint's.
    pub losses: Vec<(usize, f64)>,
    /// The step the run started from (0, or the checkpoint's step when resumed).
    pub start_step: usize,
    /// Steps completed in total (`steps`, or fewer when stopped).
    pub steps_done: usize,
    /// Whether the stop flag ended the run early (after writing the checkpoint, if one is set).
    pub interrupted: bool,
    /// Checkpoints written by this run.
    pub checkpoints_written: usize,
}

/// Where a run starts: fresh, or from a checkpoint's optimizer, step and losses.
pub(crate) struct Start {
    pub(crate) adam: Adam,
    pub(crate) step: usize,
    pub(crate) losses: Vec<(usize, f64)>,
}

/// What the hook after each step asks the loop to do.
pub(crate) enum Next {
    Continue,
    Stop,
}

/// Minimises the mean negative log-likelihood of `data` (shape `(n, d)`, finite) with Adam:
/// `steps` batches of `batch_size` rows drawn from `rng` with replacement.
///
/// Adam (the workspace's [`Adam`]) keeps `f32` master weights, so the parameters are rounded to
/// `f32` at the start and stay `f32`-representable; the model computes in `f64`.
/// A non-finite loss or gradient stops training with [`NfError::NonFinite`] and leaves the
/// parameters of the last good step. For a stop flag and checkpoints see
/// [`train_with`](crate::train_with).
pub fn train<M: MaxLikelihood + ?Sized, R: Rng>(
    model: &mut M,
    data: ArrayView2<f64>,
    config: &TrainConfig,
    rng: &mut R,
) -> Result<TrainReport> {
    run_loop(model, data, config, rng, None, &mut |_, _, _, _, _| {
        Ok(Next::Continue)
    })
}

/// The hook called after every step with the step, the model, Adam, the RNG and the losses.
pub(crate) type AfterStep<'h, M, R> =
    dyn FnMut(usize, &M, &Adam, &R, &[(usize, f64)]) -> Result<Next> + 'h;

/// The training loop of [`train`] and [`train_with`](crate::train_with): from `start` (a
/// checkpoint's state) or fresh; `after` runs after each step.
pub(crate) fn run_loop<M: MaxLikelihood + ?Sized, R: Rng>(
    model: &mut M,
    data: ArrayView2<f64>,
    config: &TrainConfig,
    rng: &mut R,
    start: Option<Start>,
    after: &mut AfterStep<'_, M, R>,
) -> Result<TrainReport> {
    config.check()?;
    fm_core::shape::check_nonempty("training data", data)?;
    fm_core::shape::check_finite("training data", data)?;
    let mut batch = Array2::zeros((config.batch_size, data.ncols()));
    let draw = |rng: &mut R, batch: &mut Array2<f64>| {
        for mut row in batch.axis_iter_mut(Axis(0)) {
            row.assign(&data.row(rng.random_range(0..data.nrows())));
        }
    };
    let (mut adam, first, mut losses) = match start {
        Some(s) => {
            if s.step > config.steps {
                return Err(invalid(
                    "steps",
                    config.steps,
                    format!(
                        "the checkpoint is at step {}, past the total asked for: give --steps {} or more",
                        s.step, s.step
                    ),
                ));
            }
            (s.adam, s.step + 1, s.losses)
        }
        None => {
            draw(rng, &mut batch);
            model.prepare(batch.view())?;
            (Adam::new(config.adam())?, 1, Vec::new())
        }
    };
    let start_step = first - 1;
    let mut master: Vec<f32> = model.params().iter().map(|&p| p as f32).collect();
    for (p, &m) in model.params_mut().iter_mut().zip(&master) {
        *p = f64::from(m);
    }
    let mut report = TrainReport {
        losses: Vec::new(),
        start_step,
        steps_done: start_step,
        interrupted: false,
        checkpoints_written: 0,
    };
    for step in first..=config.steps {
        if step > 1 {
            draw(rng, &mut batch);
        }
        let (loss, grad) = model.nll_and_grad(batch.view(), rng)?;
        if !loss.is_finite() {
            return Err(NfError::NonFinite {
                what: "training loss",
                step,
                value: loss,
            });
        }
        if let Some(&bad) = grad.iter().find(|g| !g.is_finite()) {
            return Err(NfError::NonFinite {
                what: "loss gradient",
                step,
                value: bad,
            });
        }
        let g32: Vec<f32> = grad.iter().map(|&g| g as f32).collect();
        adam.update(&mut master, &g32)?;
        for (p, &m) in model.params_mut().iter_mut().zip(&master) {
            *p = f64::from(m);
        }
        if step % config.log_every == 0 || step == config.steps {
            losses.push((step, loss));
        }
        report.steps_done = step;
        if let Next::Stop = after(step, model, &adam, rng, &losses)? {
            report.interrupted = step < config.steps;
            break;
        }
    }
    report.losses = losses;
    Ok(report)
}
