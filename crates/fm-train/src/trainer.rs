//! The training loop.

use crate::checkpoint::{CHECKPOINT_FORMAT_VERSION, Checkpoint, CheckpointState, RunIdentity};
use crate::{
    ArchConfig, Batch, MODEL_FORMAT, MODEL_FORMAT_VERSION, Matcher, MatcherSpec, ModelConfig,
    Objective, OptimizerKind, TrainError, TrainedModel, ValidTrainParams,
};
use fm_autograd::{Adam, AdamConfig, AutogradError, Ema, Grads, Mlp, Optimizer};
use fm_core::rng::FmRng;
use fm_data::Dataset;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Whether the run was stopped early through [`Trainer::stop_flag`]; the model then holds the
    /// steps done so far (`model.config.steps_done`), and the checkpoint, if a path was given,
    /// continues the run bit-identically with [`Trainer::resume`].
    pub interrupted: bool,
}

/// The divergence rule's loss factor: a loss above `DIVERGENCE_FACTOR` × the reference loss (the
/// loss of the run's first step, kept in checkpoints so the rule survives a resume) means the run
/// has diverged. A healthy flow-matching run ends far below its first loss; ten thousand times
/// above it, the weights have blown up.
pub const DIVERGENCE_FACTOR: f64 = 1e4;

/// The divergence rule's weight bound: a network (or its EMA) holding a weight of absolute value
/// above this has blown up. Trained flow-matching networks hold weights of order one.
pub const MAX_ABS_WEIGHT: f64 = 1e6;

/// Why `loss` breaks the divergence rule against `reference`, or `None` if it keeps it.
fn loss_rule(loss: f64, reference: f64) -> Option<String> {
    if !loss.is_finite() {
        return Some(format!("the loss is {loss}"));
    }
    let limit = DIVERGENCE_FACTOR * reference.max(f64::MIN_POSITIVE);
    (loss > limit).then(|| {
        format!(
            "the loss {loss:e} exceeds {DIVERGENCE_FACTOR:e} × the run's first loss {reference:e}"
        )
    })
}

/// Why weights break the divergence rule (a non-finite value, or one above [`MAX_ABS_WEIGHT`]).
fn weights_rule(what: &str, w: &[f32]) -> Option<String> {
    let mut worst = 0.0_f64;
    for (i, &v) in w.iter().enumerate() {
        if !v.is_finite() {
            return Some(format!("{what} {i} is {v}"));
        }
        worst = worst.max(f64::from(v).abs());
    }
    (worst > MAX_ABS_WEIGHT)
        .then(|| format!("{what}s have exploded (largest |value| {worst:e} > {MAX_ABS_WEIGHT:e})"))
}

/// Why a training state breaks the divergence rule: its weights, EMA weights and Adam moments
/// must be finite, and the weights at most [`MAX_ABS_WEIGHT`] in absolute value.
fn state_rule(mlp: &Mlp, ema: Option<&Ema>, adam: &Adam) -> Option<String> {
    let (m, v) = adam.moments();
    weights_rule("weight", mlp.params())
        .or_else(|| ema.and_then(|e| weights_rule("EMA weight", e.weights().params())))
        .or_else(|| {
            m.iter()
                .chain(v)
                .any(|x| !x.is_finite())
                .then(|| "the optimizer's moment estimates hold a non-finite value".to_string())
        })
}

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
/// **Divergence rule.** A training state is *sane* when its weights, EMA weights and Adam moments
/// are finite, no weight (or EMA weight) exceeds [`MAX_ABS_WEIGHT`] in absolute value, and the
/// loss those weights give is finite and at most [`DIVERGENCE_FACTOR`] × the *reference loss* (the
/// loss of the run's first step, stored in every checkpoint, so a resumed run keeps the same
/// reference; a checkpoint without it falls back to the first loss of its saved history). Every
/// step's loss is checked before its update; a checkpoint of step `s` is written only once the
/// loss of step `s + 1` — computed with exactly the checkpoint's weights — has passed (the last
/// one after a loss evaluation of the final weights on the next batch), so a checkpoint on disk
/// is always sane. A broken rule ends the run with [`TrainError::NonFiniteLoss`], which names the
/// last good checkpoint; no model is returned. A resumed checkpoint that is not sane is refused.
///
/// **Stopping.** [`Trainer::stop_flag`] gives the trainer an `AtomicBool`; once it is set, the
/// run finishes its current step, writes a checkpoint (when a checkpoint path is set) and
/// returns the model so far with [`TrainOutcome::interrupted`] set.
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
    stop: Option<Arc<AtomicBool>>,
    cond: Option<crate::conditional::Conditioning>,
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
            stop: None,
            cond: None,
        })
    }

    /// Trains the conditional model `p(x | c)`: row `i` of the target (which must be a set of
    /// points, [`Dataset::Points`]) has context row `i` of `context` (continuous vectors or class
    /// labels). Each batch draws target rows jointly with their contexts; the source stays
    /// independent of the context. With an OT matcher the coupling is exact OT within each
    /// label ([`LabelOtCoupling`](fm_couplings::LabelOtCoupling)) or conditional OT with weight
    /// `opts.beta` ([`ConditionalOtCoupling`](fm_couplings::ConditionalOtCoupling)); never plain
    /// OT across contexts. Labels are fed one-hot with a "no label" entry that replaces a label
    /// with probability `opts.label_dropout`. With `opts.zscore` the targets and continuous
    /// contexts are z-scored (stats in the model file). Only flow matching (`Objective::Flow`)
    /// and the independent or exact couplings are supported.
    ///
    /// ```
    /// use fm_train::{ArchConfig, ConditionOptions, Context, MatcherSpec, Objective, Trainer, TrainParams};
    /// let x = ndarray::Array2::from_shape_fn((100, 2), |(i, j)| (i % 4) as f64 + j as f64);
    /// let labels: Vec<i64> = (0..100).map(|i| (i % 4) as i64).collect();
    /// let target = fm_data::Dataset::Points(fm_data::Points::new("x", x).unwrap());
    /// let source = fm_data::Dataset::parse("gaussian", Some(2)).unwrap();
    /// let params = TrainParams::default().steps(3).batch(16).check().unwrap();
    /// let m = MatcherSpec::parse("otcfm", Some(0.1), None, None).unwrap();
    /// let out = Trainer::new(source, target, m, Objective::Flow, ArchConfig::default(), params)
    ///     .unwrap()
    ///     .context(Context::Labels(labels), ConditionOptions::default())
    ///     .unwrap()
    ///     .run(&mut |_| {})
    ///     .unwrap();
    /// assert_eq!(out.model.config.context.labels, vec![0, 1, 2, 3]);
    /// ```
    pub fn context(
        mut self,
        context: crate::Context,
        opts: crate::ConditionOptions,
    ) -> Result<Self, TrainError> {
        let Dataset::Points(points) = &self.target else {
            return Err(TrainError::param(
                "target",
                self.target.name(),
                "a conditional model needs a target file whose rows align with the contexts, not a built-in distribution",
            ));
        };
        self.cond = Some(crate::conditional::Conditioning::new(
            points.data().view(),
            &context,
            self.matcher.spec(),
            self.objective,
            &opts,
        )?);
        Ok(self)
    }

    /// The context layout of a conditional trainer (`None` for an unconditional one).
    pub fn context_layout(&self) -> Option<&crate::ContextLayout> {
        self.cond.as_ref().map(|c| &c.layout)
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

    /// Stops the run early once `flag` is set (e.g. by a Ctrl-C handler): the step under way is
    /// finished, a checkpoint is written to the [checkpoint path](Trainer::checkpoint_path) if
    /// one is set (whatever `checkpoint_every` says), and [`Trainer::run`] returns the model of
    /// the steps done with [`TrainOutcome::interrupted`] set. Resuming that checkpoint with the
    /// same settings gives a model bit-identical to an uninterrupted run's.
    ///
    /// ```
    /// use fm_train::{ArchConfig, MatcherSpec, Objective, Trainer, TrainParams};
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// let target = fm_data::Dataset::parse("moons", None).unwrap();
    /// let source = fm_data::Dataset::parse("gaussian", Some(2)).unwrap();
    /// let params = TrainParams::default().steps(50).batch(16).check().unwrap();
    /// let matcher = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
    /// let stop = Arc::new(AtomicBool::new(false));
    /// let trainer = Trainer::new(source, target, matcher, Objective::Flow, ArchConfig::default(), params)
    ///     .unwrap()
    ///     .stop_flag(stop.clone());
    /// let out = trainer
    ///     .run(&mut |p| if p.step == 7 { stop.store(true, Ordering::SeqCst) })
    ///     .unwrap();
    /// assert!(out.interrupted);
    /// assert_eq!(out.model.config.steps_done, 7);
    /// ```
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// The network's architecture (`dim` set to the data's dimension).
    pub fn arch(&self) -> &ArchConfig {
        &self.arch
    }

    /// The matcher.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
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
        if let Some(cond) = &self.cond {
            return self.conditional_batch(cond, x_0, &mut rng);
        }
        let x_1 = self.target.sample(b, &mut rng)?;
        self.matcher.batch(x_0.view(), x_1.view(), &mut rng)
    }

    /// Target rows drawn with replacement together with their contexts, label dropout, then the
    /// conditional coupling and the path.
    fn conditional_batch(
        &self,
        cond: &crate::conditional::Conditioning,
        x_0: ndarray::Array2<f64>,
        rng: &mut FmRng,
    ) -> Result<Batch, TrainError> {
        use rand::Rng;
        let len = cond.x.nrows();
        let idx: Vec<usize> = (0..x_0.nrows()).map(|_| rng.random_range(0..len)).collect();
        let x_1 = cond.x.select(ndarray::Axis(0), &idx);
        let mut c_1 = cond.c.select(ndarray::Axis(0), &idx);
        let p = cond.layout.label_dropout;
        if let (true, Some(null)) = (p > 0.0, cond.layout.null_row()) {
            for mut row in c_1.rows_mut() {
                if rng.random::<f64>() < p {
                    row.assign(&null);
                }
            }
        }
        self.matcher.batch_conditional(
            x_0.view(),
            x_1.view(),
            c_1.view(),
            cond.coupling.as_ref(),
            rng,
        )
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
        let mut cfg = self.arch.mlp_config()?;
        cfg.context = self.cond.as_ref().map_or(0, |c| c.layout.input_width());
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
        let mut reference_loss: Option<f64> = None;
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
            // Checkpoints written before the reference was stored: the first logged loss.
            reference_loss = ck.state.reference_loss.or(history.first().map(|h| h.1));
            if reference_loss.is_none() && start > 0 {
                return Err(TrainError::bad_file(
                    path,
                    "the checkpoint holds no reference loss for the divergence rule (it was written by an older fm before its first logged step): delete it and train again",
                ));
            }
            if let Some(why) = state_rule(&mlp, ema.as_ref(), &adam)
                .or_else(|| reference_loss.and_then(|r| loss_rule(r, r)))
            {
                return Err(TrainError::bad_file(
                    path,
                    format!(
                        "the checkpoint's training state has diverged ({why}) and cannot be resumed; delete it and train again with a smaller --lr"
                    ),
                ));
            }
        }

        let started = Instant::now();
        let mut grads = Grads::zeros(&mlp);
        let mut last_loss = f64::NAN;
        let mut last_good: Option<usize> = self.resume.then_some(start);
        let mut written = 0;
        let mut done = start;
        let mut interrupted = false;
        // A checkpoint waiting for the next step's loss (computed with its weights) to pass the
        // divergence rule before it is written.
        let mut pending: Option<Checkpoint> = None;
        let every = p.checkpoint_every.filter(|_| self.checkpoint.is_some());
        let stop_requested = || self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        let snapshot = |step: usize,
                        mlp: &Mlp,
                        adam: &Adam,
                        ema: &Option<Ema>,
                        history: &[(usize, f64)],
                        reference_loss: Option<f64>| Checkpoint {
            state: CheckpointState {
                format_version: CHECKPOINT_FORMAT_VERSION,
                crate_version: env!("CARGO_PKG_VERSION").into(),
                identity: identity.clone(),
                step,
                loss_history: history.to_vec(),
                reference_loss,
                adam: adam.clone(),
                ema: ema.clone(),
                next_batch_rng: batch_rng(p.seed, step),
            },
            params: mlp.params().to_vec(),
        };

        let mut train_step = |k: usize, batch: Batch| -> Result<ControlFlow<()>, TrainError> {
            let step = k + 1;
            let loss = match mlp.loss_and_grad_into_ctx(
                batch.t.view(),
                batch.x_t.view(),
                batch.c.as_ref().map(|c| c.view()),
                batch.target.view(),
                &mut grads,
            ) {
                Ok(l) => l,
                Err(AutogradError::NonFinite { value, .. }) => {
                    return Err(self.diverged(
                        step,
                        value,
                        format!("the loss is {value}"),
                        last_good,
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            let reference = *reference_loss.get_or_insert(loss);
            if let Some(why) = loss_rule(loss, reference) {
                return Err(self.diverged(step, loss, why, last_good));
            }
            // This loss was computed with the weights of step `k`: their checkpoint is sane.
            if let (Some(ck), Some(path)) = (pending.take(), self.checkpoint.as_deref()) {
                ck.save(path)?;
                written += 1;
                last_good = Some(ck.state.step);
            }
            match adam.step(&mut mlp, &grads) {
                Err(AutogradError::NonFinite { what, value, .. }) => {
                    let why = format!("the {what} is {value}");
                    return Err(self.diverged(step, loss, why, last_good));
                }
                r => r?,
            }
            if let Some(e) = ema.as_mut() {
                e.update(&mlp)?;
            }
            last_loss = loss;
            done = step;
            if step % p.log_every == 0 || step == p.steps {
                history.push((step, loss));
            }
            if let Some(every) = every {
                if step % every == 0 && step != p.steps {
                    if let Some(why) = state_rule(&mlp, ema.as_ref(), &adam) {
                        return Err(self.diverged(step, f64::NAN, why, last_good));
                    }
                    pending = Some(snapshot(step, &mlp, &adam, &ema, &history, reference_loss));
                }
            }
            on_step(&Progress {
                step,
                steps: p.steps,
                loss,
                elapsed: started.elapsed().as_secs_f64(),
            });
            if stop_requested() && step < p.steps {
                interrupted = true;
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
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
                if train_step(k, batch)?.is_break() {
                    break;
                }
            }
        }
        if done == start {
            // Resumed from a checkpoint of the last step (or stopped at once): report its loss.
            last_loss = history.last().map_or(f64::NAN, |h| h.1);
        }
        // The final state: sane weights, and a sane loss of these very weights on the next batch.
        if let Some(why) = state_rule(&mlp, ema.as_ref(), &adam) {
            return Err(self.diverged(done, f64::NAN, why, last_good));
        }
        let next = self.batch(done)?;
        let final_check = mlp.loss_and_grad_into_ctx(
            next.t.view(),
            next.x_t.view(),
            next.c.as_ref().map(|c| c.view()),
            next.target.view(),
            &mut grads,
        );
        let check_loss = match final_check {
            Ok(l) => l,
            Err(AutogradError::NonFinite { value, .. }) => value,
            Err(e) => return Err(e.into()),
        };
        let reference = *reference_loss.get_or_insert(check_loss);
        if let Some(why) = loss_rule(check_loss, reference) {
            return Err(self.diverged(
                done,
                check_loss,
                format!("the trained weights fail on a fresh batch: {why}"),
                last_good,
            ));
        }
        if let Some(path) = self.checkpoint.as_deref() {
            let due = every.is_some() || interrupted;
            if due && done > start {
                snapshot(done, &mlp, &adam, &ema, &history, reference_loss).save(path)?;
                written += 1;
            }
        }
        let wall_seconds = started.elapsed().as_secs_f64();
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
            steps_done: done,
            loss_history: history,
            has_ema: ema.is_some(),
            context: self
                .cond
                .as_ref()
                .map(|c| c.layout.clone())
                .unwrap_or_default(),
        };
        Ok(TrainOutcome {
            model: TrainedModel {
                config,
                mlp,
                ema: ema.map(|e| e.weights().clone()),
            },
            start_step: start,
            steps_run: done - start,
            wall_seconds,
            final_loss: last_loss,
            checkpoints_written: written,
            interrupted,
        })
    }

    fn diverged(
        &self,
        step: usize,
        loss: f64,
        reason: String,
        last_good: Option<usize>,
    ) -> TrainError {
        let checkpoint_note = match (last_good, self.checkpoint.as_deref()) {
            (Some(s), Some(path)) => format!(
                "; the last good checkpoint (step {s}) is intact at {}: continue it with --resume and a smaller --lr",
                path.display()
            ),
            (None, Some(_)) if self.params.checkpoint_every.is_some() => {
                "; no checkpoint passed the divergence rule, so none was written: train again from the start".to_string()
            }
            _ => String::new(),
        };
        TrainError::NonFiniteLoss {
            step,
            loss,
            reason,
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
