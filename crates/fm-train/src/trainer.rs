//! The training loop.

use crate::checkpoint::{CHECKPOINT_FORMAT_VERSION, Checkpoint, CheckpointState, RunIdentity};
use crate::{
    ArchConfig, Batch, MODEL_FORMAT, MODEL_FORMAT_VERSION, Matcher, MatcherSpec, ModelConfig,
    Objective, OptimizerKind, TrainError, TrainedModel, ValidTrainParams,
};
use fm_autograd::{Adam, AdamConfig, AutogradError, Ema, Grads, Mlp, Optimizer};
use fm_core::rng::FmRng;
use fm_data::Dataset;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the trainer reports after every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Steps completed (1-based).
    pub step: usize,
    /// Total steps of the run.
    pub steps: usize,
    /// The loss of this step's batch.
    pub loss: f64,
    /// Seconds since this invocation started training.
    pub elapsed: f64,
}

/// The result of [`Trainer::run`].
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The trained model (save it with [`TrainedModel::save`]).
    pub model: TrainedModel,
    /// The step this invocation started from (0, or the checkpoint's step when resuming).
    pub start_step: usize,
    /// Steps run by this invocation.
    pub steps_run: usize,
    /// Wall-clock seconds of the training loop (data, couplings, gradients, updates, checkpoints).
    pub wall_seconds: f64,
    /// The loss of the last step.
    pub final_loss: f64,
    /// Checkpoints written.
    pub checkpoints_written: usize,
}

/// Training stops as diverged when a step's loss exceeds this factor times the first step's
/// loss (or is not finite): such a run cannot recover, and continuing would only overflow.
pub const DIVERGENCE_FACTOR: f64 = 1e10;

/// The RNG of batch `step` (0-based): the seed's ChaCha stream `step + 1` (stream 0 initialises
/// the network). Every batch is a function of the seed and its index only, so a resumed run
/// draws exactly what an uninterrupted one does, and batches can be prepared on another thread
/// ahead of the gradient steps without changing a bit.
pub fn batch_rng(seed: u64, step: usize) -> FmRng {
    let mut rng = fm_core::rng::seeded(seed);
    rng.set_stream(step as u64 + 1);
    rng
}

/// Trains a network with a matcher from a source to a target dataset.
///
/// Each step draws `batch` source and `batch` target points, pairs them with the matcher's
/// coupling, draws `t ~ U[0, 1]` per pair and regresses the network onto the target with the
/// loss `mean over the batch and the d coordinates of (v_θ(t, x_t) − u_t(x_t | z))²` — the mean
/// TorchCFM computes, which is the papers' `E ‖v_θ − u_t‖²` divided by `d` (same minimiser,
/// gradients scaled by `1/d`). With Adam the scale barely matters (updates are normalised).
///
/// Deterministic: the same seed gives bit-identical weights for any number of threads, and a
/// run resumed from a checkpoint is bit-identical to an uninterrupted one.
///
/// ```
/// use fm_train::{ArchConfig, MatcherSpec, Objective, Trainer, TrainParams};
/// use fm_data::Dataset;
/// let target = Dataset::parse("moons", None).unwrap();
/// let source = Dataset::parse("gaussian", Some(2)).unwrap();
/// let params = TrainParams::default().steps(20).batch(64).check().unwrap();
/// let matcher = MatcherSpec::parse("otcfm", Some(0.1), None, None).unwrap();
/// let trainer = Trainer::new(source, target, matcher, Objective::Flow, ArchConfig::default(), params).unwrap();
/// let out = trainer.run(&mut |_| {}).unwrap();
/// assert_eq!(out.model.config.steps_done, 20);
/// assert!(out.final_loss.is_finite());
/// ```
#[derive(Debug)]
pub struct Trainer {
    source: Dataset,
    target: Dataset,
    matcher: Matcher,
    objective: Objective,
    arch: ArchConfig,
    params: ValidTrainParams,
    checkpoint: Option<PathBuf>,
    resume: bool,
}

impl Trainer {
    /// A trainer; checks that source and target have equal dimension (which becomes the
    /// architecture's `dim`), the architecture, and that score matching has a Gaussian source.
    pub fn new(
        source: Dataset,
        target: Dataset,
        matcher: MatcherSpec,
        objective: Objective,
        arch: ArchConfig,
        params: ValidTrainParams,
    ) -> Result<Self, TrainError> {
        if source.dim() != target.dim() {
            return Err(TrainError::DimensionMismatch {
                source_name: source.name(),
                source_dim: source.dim(),
                target_name: target.name(),
                target_dim: target.dim(),
            });
        }
        if objective == Objective::Score && !source.name().starts_with("gaussian") {
            return Err(TrainError::param(
                "source",
                source.name(),
                "score matching samples through the probability-flow ODE from N(0, I): use --source gaussian",
            ));
        }
        let arch = ArchConfig {
            dim: target.dim(),
            ..arch
        };
        arch.mlp_config()?;
        let matcher = Matcher::new(&matcher, objective)?;
        Ok(Self {
            source,
            target,
            matcher,
            objective,
            arch,
            params,
            checkpoint: None,
            resume: false,
        })
    }

    /// Writes checkpoints to `path` (every `checkpoint_every` steps, and at the end).
    pub fn checkpoint_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Continue from the checkpoint (an error if there is none).
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    fn identity(&self) -> RunIdentity {
        RunIdentity {
            source: self.source.name(),
            target: self.target.name(),
            matcher: self.matcher.spec().clone(),
            objective: self.objective,
            architecture: self.arch.clone(),
            batch: self.params.batch,
            seed: self.params.seed,
            optimizer: self.params.optimizer.name().into(),
            ema: self.params.ema,
        }
    }

    /// Draws batch `step` (0-based).
    pub fn batch(&self, step: usize) -> Result<Batch, TrainError> {
        let mut rng = batch_rng(self.params.seed, step);
        let b = self.params.batch;
        let x_0 = self.source.sample(b, &mut rng)?;
        let x_1 = self.target.sample(b, &mut rng)?;
        self.matcher.batch(x_0.view(), x_1.view(), &mut rng)
    }

    fn adam_config(&self) -> AdamConfig {
        let p = &self.params;
        AdamConfig {
            lr: p.lr,
            weight_decay: p.weight_decay,
            decoupled: p.optimizer == OptimizerKind::AdamW,
            max_grad_norm: p.max_grad_norm,
            ..AdamConfig::default()
        }
    }

    /// Runs the training, calling `on_step` after every step.
    pub fn run(
        &self,
        on_step: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<TrainOutcome, TrainError> {
        let threads = self.params.threads;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| {
                TrainError::param("threads", threads, format!("cannot start the threads: {e}"))
            })?;
        pool.install(|| self.run_in_pool(on_step))
    }

    fn run_in_pool(
        &self,
        on_step: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<TrainOutcome, TrainError> {
        let p = &self.params;
        let cfg = self.arch.mlp_config()?;
        let identity = self.identity();
        // Fresh state; stream 0 of the seed initialises the network.
        let mut init_rng = fm_core::rng::seeded(p.seed);
        let mut mlp = Mlp::new(&cfg, &mut init_rng)?;
        let mut adam = Adam::new(self.adam_config())?;
        let mut ema = match p.ema {
            Some(d) => Some(Ema::new(d, &mlp)?),
            None => None,
        };
        let mut start = 0;
        let mut history: Vec<(usize, f64)> = Vec::new();
        if self.resume {
            let path = self
                .checkpoint
                .as_deref()
                .ok_or_else(|| TrainError::NoCheckpoint {
                    path: "(no checkpoint path given)".into(),
                })?;
            if !path.exists() {
                return Err(TrainError::NoCheckpoint {
                    path: path.display().to_string(),
                });
            }
            let ck = Checkpoint::load(path)?;
            if ck.state.identity != identity {
                return Err(TrainError::CheckpointMismatch {
                    path: path.display().to_string(),
                    reason: describe_mismatch(&ck.state.identity, &identity),
                });
            }
            if ck.state.step > p.steps {
                return Err(TrainError::CheckpointMismatch {
                    path: path.display().to_string(),
                    reason: format!(
                        "it is at step {} but this run has only {} steps",
                        ck.state.step, p.steps
                    ),
                });
            }
            mlp.set_params(&ck.params)
                .map_err(|e| TrainError::bad_file(path, format!("the weights do not fit: {e}")))?;
            adam = ck.state.adam;
            // The learning rate may be changed on resume (e.g. after a divergence).
            adam.set_lr(p.lr)?;
            ema = ck.state.ema;
            start = ck.state.step;
            history = ck.state.loss_history;
        }

        let started = Instant::now();
        let mut grads = Grads::zeros(&mlp);
        let mut last_loss = f64::NAN;
        let mut last_good: Option<usize> = None;
        let mut first_loss: Option<f64> = history.first().map(|h| h.1);
        let mut written = 0;
        let every = p.checkpoint_every.filter(|_| self.checkpoint.is_some());

        let mut train_step = |k: usize, batch: Batch| -> Result<(), TrainError> {
            let step = k + 1;
            let loss = match mlp.loss_and_grad_into(
                batch.t.view(),
                batch.x_t.view(),
                batch.target.view(),
                &mut grads,
            ) {
                Ok(l) => l,
                Err(AutogradError::NonFinite { value, .. }) => {
                    return Err(self.diverged(step, value, last_good));
                }
                Err(e) => return Err(e.into()),
            };
            let reference = *first_loss.get_or_insert(loss);
            if loss > DIVERGENCE_FACTOR * reference.max(f64::MIN_POSITIVE) {
                return Err(self.diverged(step, loss, last_good));
            }
            adam.step(&mut mlp, &grads)?;
            if let Some(e) = ema.as_mut() {
                e.update(&mlp)?;
            }
            last_loss = loss;
            if step % p.log_every == 0 || step == p.steps {
                history.push((step, loss));
            }
            if let (Some(every), Some(path)) = (every, self.checkpoint.as_deref()) {
                if step % every == 0 || step == p.steps {
                    if !mlp.params().iter().all(|v| v.is_finite()) {
                        return Err(self.diverged(step, f64::NAN, last_good));
                    }
                    let ck = Checkpoint {
                        state: CheckpointState {
                            format_version: CHECKPOINT_FORMAT_VERSION,
                            crate_version: env!("CARGO_PKG_VERSION").into(),
                            identity: identity.clone(),
                            step,
                            loss_history: history.clone(),
                            adam: adam.clone(),
                            ema: ema.clone(),
                            next_batch_rng: batch_rng(p.seed, step),
                        },
                        params: mlp.params().to_vec(),
                    };
                    ck.save(path)?;
                    written += 1;
                    last_good = Some(step);
                }
            }
            on_step(&Progress {
                step,
                steps: p.steps,
                loss,
                elapsed: started.elapsed().as_secs_f64(),
            });
            Ok(())
        };

        if p.threads >= 2 && p.steps - start > 1 {
            // Batches (data, couplings, path samples) are prepared ahead of the gradient steps
            // by `threads − 1` helper threads and by this thread whenever the batch it needs is
            // still being made elsewhere (see `prefetch`). A batch depends on the seed and its
            // index only, so the bits do not change. The gradient steps stay in order here.
            crate::prefetch::run(
                start..p.steps,
                p.threads - 1,
                2 * p.threads + 2,
                |k| self.batch(k),
                &mut train_step,
                || TrainError::param("threads", p.threads, "a batch thread panicked"),
            )?;
        } else {
            for k in start..p.steps {
                let batch = self.batch(k)?;
                train_step(k, batch)?;
            }
        }
        let wall_seconds = started.elapsed().as_secs_f64();
        if start == p.steps {
            // Resumed from a checkpoint of the last step: nothing ran, report its loss.
            last_loss = history.last().map_or(f64::NAN, |h| h.1);
        }
        if !mlp.params().iter().all(|v| v.is_finite()) {
            return Err(self.diverged(p.steps, f64::NAN, last_good));
        }
        let config = ModelConfig {
            format: MODEL_FORMAT.into(),
            format_version: MODEL_FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            architecture: self.arch.clone(),
            objective: self.objective,
            matcher: self.matcher.spec().clone(),
            training: p.params().clone(),
            source: self.source.name(),
            target: self.target.name(),
            steps_done: p.steps,
            loss_history: history,
            has_ema: ema.is_some(),
        };
        Ok(TrainOutcome {
            model: TrainedModel {
                config,
                mlp,
                ema: ema.map(|e| e.weights().clone()),
            },
            start_step: start,
            steps_run: p.steps - start,
            wall_seconds,
            final_loss: last_loss,
            checkpoints_written: written,
        })
    }

    fn diverged(&self, step: usize, loss: f64, last_good: Option<usize>) -> TrainError {
        let checkpoint_note = match (last_good, self.checkpoint.as_deref()) {
            (Some(s), Some(path)) => format!(
                "; the last good checkpoint (step {s}) is intact at {}: continue it with --resume and a smaller --lr",
                path.display()
            ),
            _ => String::new(),
        };
        TrainError::NonFiniteLoss {
            step,
            loss,
            suggested_lr: self.params.lr / 10.0,
            checkpoint_note,
        }
    }

    /// The default checkpoint path of a model path: `MODEL.ckpt`.
    pub fn default_checkpoint_path(model: &Path) -> PathBuf {
        let mut s = model.as_os_str().to_owned();
        s.push(".ckpt");
        PathBuf::from(s)
    }
}

fn describe_mismatch(old: &RunIdentity, new: &RunIdentity) -> String {
    let mut diffs = Vec::new();
    macro_rules! cmp {
        ($f:ident) => {
            if old.$f != new.$f {
                diffs.push(format!(
                    "{} was {:?}, now {:?}",
                    stringify!($f),
                    old.$f,
                    new.$f
                ));
            }
        };
    }
    cmp!(source);
    cmp!(target);
    cmp!(matcher);
    cmp!(objective);
    cmp!(architecture);
    cmp!(batch);
    cmp!(seed);
    cmp!(optimizer);
    cmp!(ema);
    diffs.join(", ")
}
