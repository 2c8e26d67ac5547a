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
    self, CNF_KIND, COUPLING_KIND, CnfConfig, CnfMle, CouplingConfig, CouplingFlow,
    LogDetEstimator, NfError, RESIDUAL_KIND, ResidualConfig, ResidualFlow, TrainConfig,
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
    "checkpoint_every",
    "checkpoint",
    "resume",
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
    fn kind(&self) -> &'static str {
        match self {
            Flow::Coupling(_) => COUPLING_KIND,
            Flow::Residual(_) => RESIDUAL_KIND,
            Flow::Cnf(_) => CNF_KIND,
        }
    }

    /// The data dimension.
    fn dim(&self) -> usize {
        match self {
            Flow::Coupling(f) => f.config().dim,
            Flow::Residual(f) => f.config().dim,
            Flow::Cnf(f) => f.config().dim,
        }
    }

    /// `n` samples.
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Result<Array2<f64>> {
        match self {
            Flow::Coupling(f) => f.sample(n, rng),
            Flow::Residual(f) => f.sample(n, rng),
            Flow::Cnf(f) => f.sample(n, rng),
        }
        .map_err(nf_err)
    }

    /// `log p(x)` per row (exact log-determinants; the CNF's fixed-step evaluation solve).
    fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
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
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "selu" => Activation::Selu,
        "silu" | "swish" => Activation::Silu,
        "elu" => Activation::Elu,
        "relu" => Activation::Relu,
        "tanh" => Activation::Tanh,
        "softplus" => Activation::Softplus,
        "gelu" => Activation::Gelu,
        other => bail!(input(format!(
            "unknown --activation {other}: choose selu, silu, elu, relu, tanh, softplus or gelu"
        ))),
    })
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
            ],
            &what,
            "",
        )?,
        RESIDUAL_KIND => refuse(&["cnf_solver", "solver_steps", "eval_steps"], &what, "")?,
        _ => refuse(&["layers", "probes", "estimator", "lipschitz"], &what, "")?,
    }
    check_out_dir(&a.out)?;
    let tgt_file = spec_file(&a.target);
    check_outputs(
        &[("--target", tgt_file.as_deref())],
        &[output("--out", &a.out, Kind::Model)],
    )?;
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
    if !(a.quiet || json) {
        eprintln!("training a {kind} flow by maximum likelihood for {steps} steps");
    }
    let start = Instant::now();
    let report = match &mut flow {
        Flow::Coupling(f) => nf::train(f, data.view(), &config, &mut rng),
        Flow::Residual(f) => nf::train(f, data.view(), &config, &mut rng),
        Flow::Cnf(f) => nf::train(f, data.view(), &config, &mut rng),
    }
    .map_err(nf_err)?;
    let secs = start.elapsed().as_secs_f64();
    flow.save(&a.out)?;
    let final_loss = report.losses.last().map_or(f64::NAN, |&(_, l)| l);
    let sps = steps as f64 / secs.max(1e-9);
    println!(
        "trained a {kind} flow on {}: {steps} steps in {secs:.2} s ({sps:.0} steps/s), final loss (NLL) {final_loss:.4}",
        a.target
    );
    println!("model written to {}", a.out.display());
    let mut r = Report::new();
    r.insert("command".into(), json!("train"));
    r.insert("model".into(), json!(a.out.display().to_string()));
    r.insert("kind".into(), json!(kind));
    r.insert("target".into(), json!(a.target));
    r.insert("dim".into(), json!(data.ncols()));
    r.insert("steps".into(), json!(steps));
    r.insert("batch".into(), json!(batch));
    r.insert("wall_seconds".into(), json!(secs));
    r.insert("steps_per_second".into(), json!(sps));
    r.insert("final_loss".into(), json!(final_loss));
    r.insert("losses".into(), json!(report.losses));
    Ok(r)
}

/// The ODE flags of sample, eval and likelihood: only flow-matching models read them.
const SOLVER_FLAGS: &[&str] = &["solver", "steps", "rtol", "atol", "max_steps", "no_ema"];

/// `fm sample --model F` for a normalizing flow (the outputs are already checked).
pub fn sample(a: &SampleArgs, flow: &Flow, n: usize) -> Result<Report> {
    let what = format!("a {} model", flow.kind());
    refuse(SOLVER_FLAGS, &what, " (it samples by its own inverse)")?;
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
    let what = format!("a {} model", flow.kind());
    refuse(SOLVER_FLAGS, &what, " (it samples by its own inverse)")?;
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
    let what = format!("a {} model", flow.kind());
    refuse(
        &["hutchinson", "solver", "steps", "rtol", "atol", "no_ema"],
        &what,
        " (its log-density is computed exactly by the model)",
    )?;
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
