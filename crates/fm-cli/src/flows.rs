//! The normalizing flows of `fm-nf` from the command line: `fm train --model
//! coupling|residual|cnf-mle` trains one by maximum likelihood on `--target`, and `fm sample`,
//! `fm likelihood` and `fm eval` dispatch on the `kind` a model file names
//! ([`flow_matching::nf::model_kind`]); flow-matching files keep their own path.
//!
//! A flag that does not apply to the kind at hand is refused (exit 2) rather than ignored, so
//! `fm train --model coupling --matcher otcfm` cannot silently train something else than asked.

use crate::args::{EvalArgs, LikelihoodArgs, SampleArgs, TrainArgs};
use crate::commands::{
    LIKELIHOOD_STREAM, Report, compare, count, parse_hidden, subsample, target_points,
};
use crate::safety::{self, Kind, check_outputs, out as output, spec_file};
use crate::{check_out_dir, input};
use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use flow_matching::autograd::Activation;
use flow_matching::data::{Dataset, write_points};
use flow_matching::nf::{
    self, CNF_KIND, COUPLING_KIND, CnfConfig, CnfEval, CnfMle, CouplingConfig, CouplingFlow,
    LogDetEstimator, NfError, ProbeNoise, RESIDUAL_KIND, ResidualConfig, ResidualFlow,
    TraceEstimator, TrainConfig, TrainControl,
};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::RngCore;
use serde_json::json;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// The ids (clap's, i.e. field names) of the flags given on the command line of the subcommand.
static GIVEN: OnceLock<Vec<String>> = OnceLock::new();

/// Records which flags of the subcommand were given on the command line (not defaults), so a
/// flag that does not apply to a model kind can be refused.
pub fn record_given(matches: &clap::ArgMatches) {
    let ids = matches
        .subcommand()
        .map(|(_, sub)| {
            sub.ids()
                .filter(|id| sub.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                .map(|id| id.as_str().to_string())
                .collect()
        })
        .unwrap_or_default();
    let _ = GIVEN.set(ids);
}

/// Whether the flag with clap id `id` was given on the command line.
fn given(id: &str) -> bool {
    GIVEN.get().is_some_and(|g| g.iter().any(|x| x == id))
}

/// Whether any of the flags `ids` was given on the command line.
pub fn given_any(ids: &[&str]) -> bool {
    ids.iter().any(|id| given(id))
}

/// The flag of a clap id, e.g. `--max-grad-norm`.
fn flag(id: &str) -> String {
    format!("--{}", id.replace('_', "-"))
}

/// `fm train` flags that only normalizing flows read.
pub const NF_ONLY: &[&str] = &[
    "layers",
    "probes",
    "estimator",
    "lipschitz",
    "cnf_solver",
    "solver_steps",
    "eval_steps",
    "eval_solver",
    "rtol",
    "atol",
    "divergence",
];

/// `fm train` flags of flow matching that no normalizing flow reads.
const FM_ONLY: &[&str] = &[
    "source",
    "matcher",
    "sigma",
    "scheduler",
    "coupling",
    "objective",
    "optimizer",
    "weight_decay",
    "time_features",
    "ema",
    "threads",
    // Conditional training (crate::conditional::TRAIN_CONTEXT_FLAGS).
    "context",
    "context_cols",
    "label_col",
    "label_dropout",
    "context_beta",
    "no_zscore",
];

/// Refuses the first of `ids` given on the command line: it does not apply to `what`.
fn refuse(ids: &[&str], what: &str, hint: &str) -> Result<()> {
    if let Some(id) = ids.iter().find(|id| given(id)) {
        bail!(input(format!(
            "{} does not apply to {what}{hint}: leave it out",
            flag(id)
        )));
    }
    Ok(())
}

/// An `fm-nf` error: input errors (settings, shapes, files) exit with 2, failures of the
/// computation (a non-finite loss) with 1.
fn nf_err(e: NfError) -> anyhow::Error {
    match e {
        NfError::NonFinite { .. } | NfError::Autograd(_) => anyhow::Error::new(e),
        _ => input(e.to_string()),
    }
}

/// A trained normalizing flow of any kind.
pub enum Flow {
    /// A coupling flow (RealNVP).
    Coupling(CouplingFlow),
    /// A residual flow (i-ResNet).
    Residual(ResidualFlow),
    /// A continuous flow trained by maximum likelihood (FFJORD).
    Cnf(CnfMle),
}

impl Flow {
    /// The kind as the model file names it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Flow::Coupling(_) => COUPLING_KIND,
            Flow::Residual(_) => RESIDUAL_KIND,
            Flow::Cnf(_) => CNF_KIND,
        }
    }

    /// The data dimension.
    pub(crate) fn dim(&self) -> usize {
        match self {
            Flow::Coupling(f) => f.config().dim,
            Flow::Residual(f) => f.config().dim,
            Flow::Cnf(f) => f.config().dim,
        }
    }

    /// `n` samples.
    pub(crate) fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Result<Array2<f64>> {
        match self {
            Flow::Coupling(f) => f.sample(n, rng),
            Flow::Residual(f) => f.sample(n, rng),
            Flow::Cnf(f) => f.sample(n, rng),
        }
        .map_err(nf_err)
    }

    /// `log p(x)` per row (exact log-determinants; the CNF's fixed-step evaluation solve).
    pub(crate) fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        match self {
            Flow::Coupling(f) => f.log_density(x),
            Flow::Residual(f) => f.log_density(x),
            Flow::Cnf(f) => f.log_density(x),
        }
        .map_err(nf_err)
    }

    /// Writes the model file (atomically).
    fn save(&self, path: &Path) -> Result<()> {
        match self {
            Flow::Coupling(f) => f.save(path),
            Flow::Residual(f) => f.save(path),
            Flow::Cnf(f) => f.save(path),
        }
        .with_context(|| format!("--out {}: cannot write the model", path.display()))
    }
}

/// The normalizing flow in `path`, or `None` for a file that names no normalizing-flow kind
/// (a flow-matching model, or a file the flow-matching loader will explain). Only a regular
/// file is opened here: a FIFO or a device is left to that loader, which refuses it.
pub fn load(path: &Path) -> Result<Option<Flow>> {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let Ok(Some(kind)) = nf::model_kind(path) else {
        if let Ok(ck) = nf::NfCheckpoint::load(path) {
            bail!(input(format!(
                "{}: this is a training checkpoint of a {} flow (step {}), not a model: continue training with \
                 `fm train --model {} --checkpoint {} --resume` and the run's other flags (that writes the model \
                 to --out), or use the model file the run wrote with --out",
                path.display(),
                ck.kind(),
                ck.step(),
                ck.kind(),
                path.display()
            )));
        }
        return Ok(None);
    };
    let flow = match kind.as_str() {
        COUPLING_KIND => Flow::Coupling(CouplingFlow::load(path).map_err(nf_err)?),
        RESIDUAL_KIND => Flow::Residual(ResidualFlow::load(path).map_err(nf_err)?),
        CNF_KIND => Flow::Cnf(CnfMle::load(path).map_err(nf_err)?),
        _ => return Ok(None),
    };
    Ok(Some(flow))
}

fn activation(name: &str) -> Result<Activation> {
    Activation::parse(name).map_err(|e| input(format!("--activation {}: {e}", name.trim())))
}

/// `--estimator`: `truncated:N` or `roulette[:MIN,P]`.
fn estimator(spec: &str) -> Result<LogDetEstimator> {
    let bad = || {
        input(format!(
            "invalid --estimator {spec}: give truncated:N (N series terms) or roulette[:MIN,P] \
             (MIN terms always, then stopping probability P), e.g. roulette:2,0.5"
        ))
    };
    let s = spec.trim().to_ascii_lowercase();
    let (name, rest) = s
        .split_once(':')
        .map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
    match (name, rest) {
        ("truncated", Some(n)) => Ok(LogDetEstimator::Truncated {
            terms: n.trim().parse().map_err(|_| bad())?,
        }),
        ("roulette" | "russian-roulette", None) => Ok(LogDetEstimator::RussianRoulette {
            min_terms: 2,
            p: 0.5,
        }),
        ("roulette" | "russian-roulette", Some(r)) => {
            let (m, p) = r.split_once(',').ok_or_else(bad)?;
            Ok(LogDetEstimator::RussianRoulette {
                min_terms: m.trim().parse().map_err(|_| bad())?,
                p: p.trim().parse().map_err(|_| bad())?,
            })
        }
        _ => Err(bad()),
    }
}

/// `--eval-solver`, `--rtol`, `--atol` and `--eval-steps` of `fm train --model cnf-mle`.
fn cnf_eval(a: &TrainArgs) -> Result<CnfEval> {
    let name = match a
        .eval_solver
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase())
    {
        Some(n) => n,
        // `--eval-steps` alone asks for the fixed-step evaluation it sets.
        None if given("eval_steps") => "fixed".into(),
        None => "dopri5".into(),
    };
    match name.as_str() {
        "dopri5" => {
            if given("eval_steps") {
                bail!(input(
                    "--eval-steps sets the fixed-step evaluation and does not apply to --eval-solver dopri5:                      leave it out, or give --eval-solver fixed"
                ));
            }
            let d = CnfEval::default();
            let CnfEval::Dopri5 { rtol, atol } = d else {
                unreachable!("the default evaluation is dopri5")
            };
            Ok(CnfEval::Dopri5 {
                rtol: a.rtol.unwrap_or(rtol),
                atol: a.atol.unwrap_or(atol),
            })
        }
        "fixed" => {
            refuse(
                &["rtol", "atol"],
                "--eval-solver fixed",
                " (tolerances are for dopri5)",
            )?;
            Ok(CnfEval::Fixed)
        }
        other => bail!(input(format!(
            "unknown --eval-solver {other}: choose dopri5 (adaptive) or fixed (the --cnf-solver method with --eval-steps steps)"
        ))),
    }
}

/// `--divergence`: `exact` or `hutchinson[:K][,gaussian|rademacher]`.
fn trace_estimator(spec: &str) -> Result<TraceEstimator> {
    let bad = || {
        input(format!(
            "invalid --divergence {spec}: give exact or hutchinson[:K][,gaussian|rademacher]              (K probes per row), e.g. hutchinson:2,rademacher"
        ))
    };
    let s = spec.trim().to_ascii_lowercase();
    let (name, rest) = s
        .split_once(':')
        .map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
    match (name, rest) {
        ("exact", None) => Ok(TraceEstimator::Exact),
        ("hutchinson", rest) => {
            let (k, noise) = match rest {
                None => (None, None),
                Some(r) => match r.split_once(',') {
                    Some((k, n)) => (Some(k.trim()), Some(n.trim())),
                    None if r.trim().parse::<i64>().is_ok() => (Some(r.trim()), None),
                    None => (None, Some(r.trim())),
                },
            };
            let probes = match k {
                Some(k) => {
                    let k: i64 = k.parse().map_err(|_| bad())?;
                    count("divergence probes", k, 10_000).map_err(|_| bad())?
                }
                None => 1,
            };
            let noise = match noise {
                None | Some("rademacher") => ProbeNoise::Rademacher,
                Some("gaussian") => ProbeNoise::Gaussian,
                Some(_) => return Err(bad()),
            };
            Ok(TraceEstimator::Hutchinson { probes, noise })
        }
        _ => Err(bad()),
    }
}

/// The hidden widths: `--hidden` if given, else the kind's default.
fn hidden_or(a: &TrainArgs, default: Vec<usize>) -> Result<Vec<usize>> {
    if given("hidden") {
        parse_hidden(&a.hidden)
    } else {
        Ok(default)
    }
}

/// A new, untrained flow of the kind `--model` names, for data of dimension `dim`.
fn build(a: &TrainArgs, dim: usize, rng: &mut dyn RngCore) -> Result<Flow> {
    let act = |default: Activation| {
        if given("activation") {
            activation(&a.activation)
        } else {
            Ok(default)
        }
    };
    let layers = |default: usize| {
        a.layers
            .map(|k| count("layers", k, 1000))
            .transpose()
            .map(|k| k.unwrap_or(default))
    };
    let kind = a.model.trim();
    let flow = match kind {
        COUPLING_KIND => {
            let d = CouplingConfig::default();
            let cfg = CouplingConfig {
                dim,
                layers: layers(d.layers)?,
                hidden: hidden_or(a, d.hidden)?,
                activation: act(d.activation)?,
                ..d
            };
            Flow::Coupling(CouplingFlow::new(cfg, rng).map_err(nf_err)?)
        }
        RESIDUAL_KIND => {
            let d = ResidualConfig::default();
            let cfg = ResidualConfig {
                dim,
                blocks: layers(d.blocks)?,
                hidden: hidden_or(a, d.hidden)?,
                activation: act(d.activation)?,
                lipschitz: a.lipschitz.unwrap_or(d.lipschitz),
                probes: a
                    .probes
                    .map(|k| count("probes", k, 10_000))
                    .transpose()?
                    .unwrap_or(d.probes),
                estimator: a
                    .estimator
                    .as_deref()
                    .map(estimator)
                    .transpose()?
                    .unwrap_or(d.estimator),
                ..d
            };
            Flow::Residual(ResidualFlow::new(cfg, rng).map_err(nf_err)?)
        }
        CNF_KIND => {
            let d = CnfConfig::default();
            let cfg = CnfConfig {
                dim,
                hidden: hidden_or(a, d.hidden)?,
                activation: act(d.activation)?,
                solver: a.cnf_solver.clone().unwrap_or(d.solver),
                train_steps: a
                    .solver_steps
                    .map(|k| count("solver-steps", k, 100_000))
                    .transpose()?
                    .unwrap_or(d.train_steps),
                eval_steps: a
                    .eval_steps
                    .map(|k| count("eval-steps", k, 100_000))
                    .transpose()?
                    .unwrap_or(d.eval_steps),
                eval: cnf_eval(a)?,
                trace: a
                    .divergence
                    .as_deref()
                    .map(trace_estimator)
                    .transpose()?
                    .unwrap_or(d.trace),
            };
            Flow::Cnf(CnfMle::new(cfg, rng).map_err(nf_err)?)
        }
        other => bail!(input(format!(
            "unknown --model {other}: choose fm (flow matching), coupling, residual or cnf-mle"
        ))),
    };
    Ok(flow)
}

/// Training points drawn from a built-in target (a file's points are used as they are).
const TRAIN_POINTS: usize = 20_000;

/// `fm train --model coupling|residual|cnf-mle`.
pub fn train(a: &TrainArgs, json: bool) -> Result<Report> {
    let kind = a.model.trim();
    if kind == "fm" {
        refuse(NF_ONLY, "--model fm", " (it sets up a normalizing flow)")?;
    }
    if ![COUPLING_KIND, RESIDUAL_KIND, CNF_KIND].contains(&kind) {
        bail!(input(format!(
            "unknown --model {kind}: choose fm (flow matching), coupling, residual or cnf-mle"
        )));
    }
    let what = format!("--model {kind}");
    let hint = " (a normalizing flow trained by maximum likelihood from N(0, I))";
    refuse(FM_ONLY, &what, hint)?;
    match kind {
        COUPLING_KIND => refuse(
            &[
                "probes",
                "estimator",
                "lipschitz",
                "cnf_solver",
                "solver_steps",
                "eval_steps",
                "eval_solver",
                "rtol",
                "atol",
                "divergence",
            ],
            &what,
            "",
        )?,
        RESIDUAL_KIND => refuse(
            &[
                "cnf_solver",
                "solver_steps",
                "eval_steps",
                "eval_solver",
                "rtol",
                "atol",
                "divergence",
            ],
            &what,
            "",
        )?,
        _ => refuse(&["layers", "probes", "estimator", "lipschitz"], &what, "")?,
    }
    check_out_dir(&a.out)?;
    let checkpoint_every = a
        .checkpoint_every
        .map(|c| count("checkpoint-every", c, 100_000_000))
        .transpose()?;
    let explicit_checkpoint = a.checkpoint_every.is_some() || a.resume || a.checkpoint.is_some();
    // A checkpoint path always: Ctrl-C writes one there (see `interrupt`).
    let ckpt = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| flow_matching::train::Trainer::default_checkpoint_path(&a.out));
    check_out_dir(&ckpt)?;
    let tgt_file = spec_file(&a.target);
    check_outputs(
        &[("--target", tgt_file.as_deref())],
        &[
            output("--out", &a.out, Kind::Model),
            output(
                if a.checkpoint.is_some() {
                    "--checkpoint"
                } else {
                    "the checkpoint (--out + .ckpt)"
                },
                &ckpt,
                Kind::Checkpoint,
            ),
        ],
    )?;
    if a.resume && !ckpt.is_file() {
        bail!(input(format!(
            "--resume: no checkpoint at {}: train without --resume first, or give --checkpoint FILE",
            ckpt.display()
        )));
    }
    let steps = count("steps", a.steps, 100_000_000)?;
    let batch = count("batch", a.batch, 1 << 20)?;
    let log_every = count("log-every", a.log_every, 100_000_000)?;
    let ds = Dataset::parse(&a.target, None).with_context(|| format!("--target {}", a.target))?;
    safety::check_dataset("--target", &a.target, &ds)?;
    let mut rng = flow_matching::core::rng::seeded(a.seed);
    let data = match &ds {
        Dataset::Points(p) => p.data().clone(),
        _ => ds.sample(TRAIN_POINTS, &mut rng)?,
    };
    let config = TrainConfig {
        steps,
        batch_size: batch,
        lr: a.lr,
        max_grad_norm: a.max_grad_norm.or(TrainConfig::default().max_grad_norm),
        log_every,
    };
    config.check().map_err(nf_err)?;
    let mut flow = build(a, data.ncols(), &mut rng)?;
    let stop = crate::interrupt::install(&[&a.out, &ckpt])?;
    if !(a.quiet || json) {
        eprintln!(
            "training a {kind} flow by maximum likelihood for {steps} steps; Ctrl-C stops after the current step and writes a checkpoint ({}) and the model so far",
            ckpt.display()
        );
    }
    let control = TrainControl {
        stop: Some(&stop),
        checkpoint: Some(&ckpt),
        checkpoint_every,
        resume: a.resume,
    };
    let start = Instant::now();
    let report = match &mut flow {
        Flow::Coupling(f) => nf::train_with(f, data.view(), &config, &mut rng, &control),
        Flow::Residual(f) => nf::train_with(f, data.view(), &config, &mut rng, &control),
        Flow::Cnf(f) => nf::train_with(f, data.view(), &config, &mut rng, &control),
    }
    .map_err(nf_err)?;
    let secs = start.elapsed().as_secs_f64();
    flow.save(&a.out)?;
    if report.interrupted {
        let args: Vec<String> = std::env::args().collect();
        return Err(anyhow::Error::new(crate::interrupt::Interrupted {
            step: report.steps_done,
            steps,
            checkpoint: ckpt,
            model: a.out.clone(),
            resume_command: crate::interrupt::resume_command(&args),
        }));
    }
    let final_loss = report.losses.last().map_or(f64::NAN, |&(_, l)| l);
    let steps_run = report.steps_done - report.start_step;
    let sps = steps_run as f64 / secs.max(1e-9);
    println!(
        "trained a {kind} flow on {}: {steps} steps ({steps_run} this run) in {secs:.2} s ({sps:.0} steps/s), final loss (NLL) {final_loss:.4}",
        a.target
    );
    println!("model written to {}", a.out.display());
    let mut r = Report::new();
    r.insert("command".into(), json!("train"));
    r.insert("model".into(), json!(a.out.display().to_string()));
    r.insert("kind".into(), json!(kind));
    r.insert("target".into(), json!(a.target));
    r.insert("dim".into(), json!(data.ncols()));
    r.insert("steps".into(), json!(report.steps_done));
    r.insert("steps_run".into(), json!(steps_run));
    r.insert("start_step".into(), json!(report.start_step));
    r.insert(
        "checkpoints_written".into(),
        json!(report.checkpoints_written),
    );
    if explicit_checkpoint {
        r.insert("checkpoint".into(), json!(ckpt.display().to_string()));
    }
    r.insert("batch".into(), json!(batch));
    r.insert("wall_seconds".into(), json!(secs));
    r.insert("steps_per_second".into(), json!(sps));
    r.insert("final_loss".into(), json!(final_loss));
    r.insert("losses".into(), json!(report.losses));
    Ok(r)
}

/// The ODE flags of sample, eval and likelihood: only flow-matching models read them (a
/// CNF-MLE reads `--solver`, `--steps`, `--rtol` and `--atol`, see [`cnf_eval_flags`]).
const SOLVER_FLAGS: &[&str] = &["solver", "steps", "rtol", "atol", "max_steps", "no_ema"];

/// The evaluation solver flags of sample, eval and likelihood for a CNF-MLE: `--solver dopri5`
/// with `--rtol`/`--atol`, or a fixed-step method (`euler`, `midpoint`, `heun`, `ralston`,
/// `ssprk3`, `rk4`) with `--steps`; flags not given keep the model file's settings. Returns the
/// model with them applied, or `None` when none was given (or the flow is not a CNF).
fn cnf_eval_flags(
    flow: &Flow,
    solver: &str,
    steps: Option<i64>,
    rtol: Option<f64>,
    atol: Option<f64>,
) -> Result<Option<Flow>> {
    let Flow::Cnf(cnf) = flow else {
        return Ok(None);
    };
    if !given_any(&["solver", "steps", "rtol", "atol"]) {
        return Ok(None);
    }
    refuse(
        &["max_steps", "no_ema"],
        "a cnf-mle model",
        " (it has no EMA weights and its dopri5 evaluation takes at most 100000 steps)",
    )?;
    let cfg = cnf.config();
    let name = if given("solver") {
        solver.trim().to_ascii_lowercase()
    } else if given_any(&["rtol", "atol"]) {
        "dopri5".into()
    } else if given("steps") {
        cfg.solver.clone()
    } else {
        unreachable!("one of the flags was given")
    };
    let mut cnf = cnf.clone();
    if name == "dopri5" {
        refuse(
            &["steps"],
            "--solver dopri5 on a cnf-mle model",
            " (dopri5 is adaptive: set --rtol/--atol)",
        )?;
        let (r0, a0) = match cfg.eval {
            CnfEval::Dopri5 { rtol, atol } => (rtol, atol),
            CnfEval::Fixed => match CnfEval::default() {
                CnfEval::Dopri5 { rtol, atol } => (rtol, atol),
                CnfEval::Fixed => unreachable!("the default evaluation is dopri5"),
            },
        };
        let eval = CnfEval::Dopri5 {
            rtol: rtol.unwrap_or(r0),
            atol: atol.unwrap_or(a0),
        };
        cnf.set_evaluation(eval, None, None)
            .map_err(|e| input(format!("--rtol/--atol: {e}")))?;
    } else {
        refuse(
            &["rtol", "atol"],
            &format!("--solver {name} on a cnf-mle model"),
            " (tolerances are for dopri5)",
        )?;
        let steps = steps.map(|k| count("steps", k, 10_000_000)).transpose()?;
        cnf.set_evaluation(CnfEval::Fixed, Some(&name), steps)
            .map_err(|e| input(format!("--solver {name}: {e}")))?;
    }
    Ok(Some(Flow::Cnf(cnf)))
}

/// `fm sample --model F` for a normalizing flow (the outputs are already checked).
pub fn sample(a: &SampleArgs, flow: &Flow, n: usize) -> Result<Report> {
    let s = &a.solver;
    let owned = cnf_eval_flags(flow, &s.solver, s.steps, s.rtol, s.atol)?;
    let flow = owned.as_ref().unwrap_or(flow);
    let what = format!("a {} model", flow.kind());
    if owned.is_none() {
        refuse(SOLVER_FLAGS, &what, " (it samples by its own inverse)")?;
    }
    refuse(&["trajectory"], &what, " (it has no trajectory to record)")?;
    refuse(
        crate::conditional::QUERY_CONTEXT_FLAGS,
        &what,
        " (normalizing flows are unconditional)",
    )?;
    let mut rng = flow_matching::core::rng::seeded(a.seed);
    let start = Instant::now();
    let x = flow.sample(n, &mut rng)?;
    let secs = start.elapsed().as_secs_f64();
    write_points(&a.out, x.view())?;
    println!("{n} samples of the {} flow in {secs:.3} s", flow.kind());
    println!("samples written to {}", a.out.display());
    let mut r = Report::new();
    r.insert("command".into(), json!("sample"));
    r.insert("kind".into(), json!(flow.kind()));
    r.insert("n".into(), json!(n));
    r.insert("seconds".into(), json!(secs));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

/// `fm eval --model F` for a normalizing flow: W2 and MMD of its samples against the target.
pub fn eval(a: &EvalArgs, flow: &Flow, n: usize, mut r: Report) -> Result<Report> {
    let s = &a.solver;
    let owned = cnf_eval_flags(flow, &s.solver, s.steps, s.rtol, s.atol)?;
    let flow = owned.as_ref().unwrap_or(flow);
    let what = format!("a {} model", flow.kind());
    if owned.is_none() {
        refuse(SOLVER_FLAGS, &what, " (it samples by its own inverse)")?;
    }
    let mut rng = flow_matching::core::rng::seeded(a.seed);
    let start = Instant::now();
    let x = flow.sample(n, &mut rng)?;
    let secs = start.elapsed().as_secs_f64();
    let target = target_points(&a.target, n, Some(flow.dim()), a.seed)?;
    let f = compare(&x, &target)?;
    println!(
        "W2 = {:.4}   MMD² = {:.3e}   ({} samples of the {} flow in {secs:.3} s)",
        f.w2,
        f.mmd,
        f.n,
        flow.kind()
    );
    r.insert("kind".into(), json!(flow.kind()));
    r.insert("w2".into(), json!(f.w2));
    r.insert("mmd".into(), json!(f.mmd));
    r.insert("sample_seconds".into(), json!(secs));
    r.insert("n".into(), json!(f.n));
    Ok(r)
}

/// `fm likelihood --model F` for a normalizing flow (the outputs are already checked).
pub fn likelihood(a: &LikelihoodArgs, flow: &Flow) -> Result<Report> {
    let owned = cnf_eval_flags(flow, &a.solver, a.steps, a.rtol, a.atol)?;
    let flow = owned.as_ref().unwrap_or(flow);
    let what = format!("a {} model", flow.kind());
    refuse(
        &["hutchinson", "no_ema"],
        &what,
        " (its log-density is computed with the exact divergence or log-determinant)",
    )?;
    if owned.is_none() {
        refuse(
            &["solver", "steps", "rtol", "atol"],
            &what,
            " (its log-density is computed exactly by the model)",
        )?;
    }
    refuse(
        crate::conditional::QUERY_CONTEXT_FLAGS,
        &what,
        " (normalizing flows are unconditional)",
    )?;
    let dim = flow.dim();
    let ds = Dataset::parse(&a.data, Some(dim)).with_context(|| format!("--data {}", a.data))?;
    safety::check_dataset("--data", &a.data, &ds)?;
    if ds.dim() != dim {
        bail!(input(format!(
            "--data {}: has dimension {} but the model {} is {dim}-dimensional",
            a.data,
            ds.dim(),
            a.model.display()
        )));
    }
    let n = count("n", a.n, 10_000_000)?;
    let mut rng = flow_matching::core::rng::seeded(a.seed);
    let (x, rows_in_file) = match &ds {
        Dataset::Points(p) => (
            subsample(p.data().clone(), n, a.seed, LIKELIHOOD_STREAM),
            Some(p.data().nrows()),
        ),
        _ => (ds.sample(n, &mut rng)?, None),
    };
    let subsampled = rows_in_file.is_some_and(|r| r > x.nrows());
    let start = Instant::now();
    let log_p = flow.log_density(x.view())?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(bad) = log_p.iter().find(|v| !v.is_finite()) {
        bail!(
            "the {} flow gave a non-finite log-density ({bad}) on --data {}",
            flow.kind(),
            a.data
        );
    }
    let mean = log_p.mean().unwrap_or(f64::NAN);
    let bpd = -mean / (dim as f64 * std::f64::consts::LN_2);
    println!(
        "mean log-likelihood {mean:.4} nats ({bpd:.4} bits/dim) over {} points under the {} flow in {secs:.3} s",
        x.nrows(),
        flow.kind()
    );
    if let (true, Some(r)) = (subsampled, rows_in_file) {
        println!(
            "(a seeded subsample of {} of the {r} rows of {}; raise --n to use more)",
            x.nrows(),
            a.data
        );
    }
    if let Some(o) = &a.out {
        write_points(o, log_p.clone().insert_axis(Axis(1)).view())?;
        println!("per-point log-likelihoods written to {}", o.display());
    }
    let mut r = Report::new();
    r.insert("command".into(), json!("likelihood"));
    r.insert("kind".into(), json!(flow.kind()));
    r.insert("mean_log_likelihood".into(), json!(mean));
    r.insert("bits_per_dim".into(), json!(bpd));
    r.insert("n".into(), json!(x.nrows()));
    r.insert("subsampled".into(), json!(subsampled));
    r.insert("rows_in_file".into(), json!(rows_in_file));
    r.insert("seconds".into(), json!(secs));
    Ok(r)
}

/// `fm plot samples --model F` for a normalizing flow: `n` samples and the plot's title.
pub fn plot_samples(path: &Path, n: usize, seed: u64) -> Result<(Array2<f64>, String)> {
    let flow =
        load(path)?.ok_or_else(|| input(format!("{}: not a normalizing flow", path.display())))?;
    let x = flow.sample(n, &mut flow_matching::core::rng::seeded(seed))?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok((x, format!("{} flow samples, {name}", flow.kind())))
}

/// `fm plot trajectories|loss --model F`: refused for a normalizing flow, which has no
/// trajectory to integrate (a CNF-MLE's is not recorded) and no loss history in its file.
pub fn refuse_plot(path: &Path, what: &str) -> Result<()> {
    if let Some(flow) = load(path)? {
        let why = match what {
            "loss" => "its file holds no loss history (fm train --json prints the losses)",
            _ => "it has no recorded trajectories",
        };
        bail!(input(format!(
            "fm plot {what} does not apply to the {} model {}: {why}; use fm plot samples or fm plot density",
            flow.kind(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimator_specs_parse_to_their_settings_and_bad_ones_name_the_flag() {
        assert_eq!(
            estimator("truncated:7").unwrap(),
            LogDetEstimator::Truncated { terms: 7 }
        );
        assert_eq!(
            estimator(" Roulette:3,0.25 ").unwrap(),
            LogDetEstimator::RussianRoulette {
                min_terms: 3,
                p: 0.25
            }
        );
        assert_eq!(
            estimator("roulette").unwrap(),
            LogDetEstimator::RussianRoulette {
                min_terms: 2,
                p: 0.5
            }
        );
        for bad in [
            "truncated",
            "truncated:x",
            "roulette:3",
            "roulette:a,b",
            "series:2",
        ] {
            let e = estimator(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("--estimator {bad}")), "{e}");
        }
    }

    #[test]
    fn divergence_specs_parse_to_their_estimators_and_bad_ones_name_the_flag() {
        let h = |probes, noise| TraceEstimator::Hutchinson { probes, noise };
        assert_eq!(trace_estimator("exact").unwrap(), TraceEstimator::Exact);
        assert_eq!(
            trace_estimator("hutchinson").unwrap(),
            h(1, ProbeNoise::Rademacher)
        );
        assert_eq!(
            trace_estimator("Hutchinson:3").unwrap(),
            h(3, ProbeNoise::Rademacher)
        );
        assert_eq!(
            trace_estimator("hutchinson:2,gaussian").unwrap(),
            h(2, ProbeNoise::Gaussian)
        );
        assert_eq!(
            trace_estimator("hutchinson:gaussian").unwrap(),
            h(1, ProbeNoise::Gaussian)
        );
        for bad in [
            "hutchinson:0",
            "hutchinson:x,gaussian",
            "hutchinson:2,uniform",
            "exact:2",
            "trace",
        ] {
            let e = trace_estimator(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("--divergence {bad}")), "{e}");
        }
    }

    #[test]
    fn flags_are_spelled_as_on_the_command_line() {
        assert_eq!(flag("max_grad_norm"), "--max-grad-norm");
        assert_eq!(flag("matcher"), "--matcher");
        assert_eq!(activation("Tanh").unwrap(), Activation::Tanh);
        assert!(
            activation("sine")
                .unwrap_err()
                .to_string()
                .contains("--activation sine")
        );
    }
}
