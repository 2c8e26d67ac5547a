//! The commands: each returns the JSON figures it printed.

use crate::args::{
    Cli, Command, DemoArgs, EvalArgs, LikelihoodArgs, PlotKind, SampleArgs, SolverArgs, TrainArgs,
};
use crate::safety::{self, Kind, check_outputs, out as output, spec_file};
use crate::{check_out_dir, input, plot};
use anyhow::{Context, Result, bail};
use flow_matching::data::{Dataset, builtin_names, read_points, write_points};
use flow_matching::metrics;
use flow_matching::train::{
    ArchConfig, MatcherSpec, Objective, OptimizerKind, Progress, SampleOptions, TrainOutcome,
    TrainParams, TrainedModel, Trainer,
};
use ndarray::{Array2, Axis, Slice};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The figures of a command, printed as JSON with `--json`.
pub type Report = Map<String, Value>;

/// Bandwidths of the RBF kernels of the MMD.
const MMD_BANDWIDTHS: [f64; 5] = [0.1, 0.5, 1.0, 2.0, 5.0];

/// Runs the command.
pub fn run(cli: Cli) -> Result<Report> {
    let json = cli.json;
    safety::set_force(cli.force);
    crate::budget::set_flag(cli.memory_limit.clone());
    match cli.command {
        Command::Train(a) => train(*a, json),
        Command::Sample(a) => in_pool(a.threads, || sample(a)),
        Command::Encode(a) => crate::verbs::encode(a),
        Command::Field(a) => crate::verbs::field(a),
        Command::Eval(a) => in_pool(a.threads, || eval(a)),
        Command::Likelihood(a) => in_pool(a.threads, || likelihood(a)),
        Command::Plot(a) => plot_cmd(a.kind),
        Command::Demo(a) => demo(a, json),
        Command::Datasets => datasets(),
        Command::Sbi(c) => crate::simulate::run(c),
        Command::Interop(c) => crate::interop::run(c),
    }
}

/// A positive count from a signed flag value.
pub(crate) fn count(name: &str, v: i64, max: i64) -> Result<usize> {
    if v < 1 || v > max {
        bail!(input(format!(
            "invalid --{name} {v}: give a whole number between 1 and {max}"
        )));
    }
    Ok(v as usize)
}

/// `--threads`, by default the available cores (at most 8).
fn threads(v: Option<i64>) -> Result<usize> {
    match v {
        Some(v) => count("threads", v, 1024),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get().min(8))),
    }
}

/// Runs `f` on a pool of `--threads` workers (the field evaluations of sampling, evaluation
/// and likelihoods run on it; the results do not depend on the number).
pub(crate) fn in_pool<T: Send>(
    threads_flag: Option<i64>,
    f: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let n = threads(threads_flag)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .with_context(|| format!("--threads {n}: cannot start the threads"))?;
    pool.install(f)
}

pub(crate) fn parse_hidden(s: &str) -> Result<Vec<usize>> {
    let s = s.trim();
    if s.is_empty() || s == "none" {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|w| {
            w.trim().parse::<usize>().ok().filter(|w| (1..=65_536).contains(w)).ok_or_else(|| {
                input(format!(
                    "invalid --hidden {s}: give comma-separated layer widths between 1 and 65536, e.g. 64,64,64"
                ))
            })
        })
        .collect()
}

/// Source and target datasets of equal dimension (`gaussian` takes the other side's). Files are
/// read by their canonical path, which is what the model records, so it works from any folder;
/// messages name them as given.
fn datasets_pair(source: &str, target: &str) -> Result<(Dataset, Dataset)> {
    let is_gauss = |s: &str| s.trim().split(':').next() == Some("gaussian");
    let (rs, rt) = (
        crate::verbs::resolve_spec(source),
        crate::verbs::resolve_spec(target),
    );
    let (src, tgt) = if is_gauss(target) && !is_gauss(source) {
        let src = Dataset::parse(&rs, None).with_context(|| format!("--source {source}"))?;
        let tgt =
            Dataset::parse(&rt, Some(src.dim())).with_context(|| format!("--target {target}"))?;
        (src, tgt)
    } else {
        let tgt = Dataset::parse(&rt, None).with_context(|| format!("--target {target}"))?;
        let hint = if is_gauss(source) {
            Some(tgt.dim())
        } else {
            None
        };
        let src = Dataset::parse(&rs, hint).with_context(|| format!("--source {source}"))?;
        (src, tgt)
    };
    safety::check_dataset("--source", source, &src)?;
    safety::check_dataset("--target", target, &tgt)?;
    Ok((src, tgt))
}

struct TrainSetup {
    trainer: Trainer,
    steps: usize,
}

fn train_setup(a: &TrainArgs, checkpoint: Option<PathBuf>) -> Result<TrainSetup> {
    let steps = count("steps", a.steps, 100_000_000)?;
    let batch = count("batch", a.batch, 1 << 20)?;
    let log_every = count("log-every", a.log_every, 100_000_000)?;
    let threads = threads(a.threads)?;
    let checkpoint_every = a
        .checkpoint_every
        .map(|c| count("checkpoint-every", c, 100_000_000))
        .transpose()?;
    let params = TrainParams::default()
        .steps(steps)
        .batch(batch)
        .lr(a.lr)
        .optimizer(OptimizerKind::parse(&a.optimizer)?)
        .weight_decay(a.weight_decay)
        .max_grad_norm(a.max_grad_norm)
        .ema(if a.ema == 0.0 { None } else { Some(a.ema) })
        .seed(a.seed)
        .log_every(log_every)
        .checkpoint_every(checkpoint_every)
        .threads(threads)
        .check()?;
    let matcher = MatcherSpec::parse(
        &a.matcher,
        a.sigma,
        a.scheduler.as_deref(),
        a.coupling.as_deref(),
    )?;
    let objective = Objective::parse(&a.objective)?;
    let arch = ArchConfig {
        dim: 0,
        hidden: parse_hidden(&a.hidden)?,
        activation: a.activation.clone(),
        time_features: a.time_features.clone(),
    };
    let mut trainer = match crate::conditional::train_data(&a.target, &a.cond)? {
        Some((target, context, opts)) => {
            let source = Dataset::parse(&a.source, Some(target.dim()))
                .with_context(|| format!("--source {}", a.source))?;
            Trainer::new(source, target, matcher, objective, arch, params)?
                .context(context, opts)?
        }
        None => {
            let (source, target) = datasets_pair(&a.source, &a.target)?;
            Trainer::new(source, target, matcher, objective, arch, params)?
        }
    };
    let matrices = match trainer.matcher().spec().coupling {
        flow_matching::train::CouplingKind::Independent => 0.0,
        flow_matching::train::CouplingKind::Exact
        | flow_matching::train::CouplingKind::ExactWithReplacement => 3.0,
        flow_matching::train::CouplingKind::Sinkhorn => 4.0,
    };
    let arch = trainer.arch();
    crate::budget::train_need(arch.dim, &arch.hidden, batch, matrices, threads)
        .check(&crate::budget::limit()?)?;
    if let Some(c) = checkpoint {
        trainer = trainer.checkpoint_path(c);
    }
    trainer = trainer.resume(a.resume);
    Ok(TrainSetup { trainer, steps })
}

fn run_training(setup: &TrainSetup, quiet: bool, every: Option<f64>) -> Result<TrainOutcome> {
    let every = crate::verbs::progress_every(every)?;
    let mut pb = crate::verbs::TrainProgress::new(setup.steps as u64, quiet, every);
    let out = setup.trainer.run(&mut |p: &Progress| pb.step(p));
    pb.finish();
    Ok(out?)
}

fn train(a: TrainArgs, json: bool) -> Result<Report> {
    if a.model != "fm" || crate::flows::given_any(crate::flows::NF_ONLY) {
        return crate::flows::train(&a, json);
    }
    check_out_dir(&a.out)?;
    let checkpoint = if a.checkpoint_every.is_some() || a.resume || a.checkpoint.is_some() {
        Some(
            a.checkpoint
                .clone()
                .unwrap_or_else(|| Trainer::default_checkpoint_path(&a.out)),
        )
    } else {
        None
    };
    if let Some(c) = &checkpoint {
        check_out_dir(c)?;
    }
    // A checkpoint path always: Ctrl-C writes one there (see `interrupt`).
    let stop_checkpoint = checkpoint
        .clone()
        .unwrap_or_else(|| Trainer::default_checkpoint_path(&a.out));
    let (src, tgt) = (spec_file(&a.source), spec_file(&a.target));
    let outs = vec![
        output("--out", &a.out, Kind::Model),
        output(
            if checkpoint.is_some() {
                "--checkpoint"
            } else {
                "the checkpoint (--out + .ckpt)"
            },
            &stop_checkpoint,
            Kind::Checkpoint,
        ),
    ];
    check_outputs(
        &[
            ("--source", src.as_deref()),
            ("--target", tgt.as_deref()),
            ("--context", a.cond.context.as_deref()),
        ],
        &outs,
    )?;
    let stop = crate::interrupt::install(&[&a.out, &stop_checkpoint])?;
    let mut setup = train_setup(&a, Some(stop_checkpoint.clone()))?;
    setup.trainer = setup.trainer.stop_flag(stop);
    if !(a.quiet || json) {
        eprintln!(
            "training {} steps; Ctrl-C stops after the current step and writes a checkpoint ({}) and the model so far",
            setup.steps,
            stop_checkpoint.display()
        );
    }
    let out = run_training(&setup, a.quiet || json, a.progress_every)?;
    out.model.save(&a.out)?;
    if out.interrupted {
        let args: Vec<String> = std::env::args().collect();
        return Err(anyhow::Error::new(crate::interrupt::Interrupted {
            step: out.model.config.steps_done,
            steps: setup.steps,
            checkpoint: stop_checkpoint,
            model: a.out.clone(),
            resume_command: crate::interrupt::resume_command(&args),
        }));
    }
    let cfg = &out.model.config;
    let sps = out.steps_run as f64 / out.wall_seconds.max(1e-9);
    println!(
        "trained {} from {} to {}: {} steps ({} this run) in {:.2} s ({:.0} steps/s), final loss {:.4}",
        cfg.matcher.describe(),
        cfg.source,
        cfg.target,
        cfg.steps_done,
        out.steps_run,
        out.wall_seconds,
        sps,
        out.final_loss
    );
    let ctx = &cfg.context;
    if !ctx.is_none() {
        println!(
            "conditional on {}{}",
            match ctx.kind {
                flow_matching::train::ContextKind::Labels => format!(
                    "the labels {:?} (label dropout {})",
                    ctx.labels, ctx.label_dropout
                ),
                _ => format!("contexts of {} values", ctx.width),
            },
            if ctx.x_scale.is_some() {
                ", z-scored"
            } else {
                ""
            }
        );
    }
    println!("model written to {}", a.out.display());
    let mut r = Report::new();
    r.insert("command".into(), json!("train"));
    if !ctx.is_none() {
        r.insert("context".into(), json!(ctx));
    }
    r.insert("model".into(), json!(a.out.display().to_string()));
    r.insert("matcher".into(), json!(cfg.matcher.kind.name()));
    r.insert("sigma".into(), json!(cfg.matcher.sigma));
    r.insert("objective".into(), json!(cfg.objective.name()));
    r.insert("source".into(), json!(cfg.source));
    r.insert("target".into(), json!(cfg.target));
    r.insert("steps".into(), json!(cfg.steps_done));
    r.insert("steps_run".into(), json!(out.steps_run));
    r.insert("start_step".into(), json!(out.start_step));
    r.insert("batch".into(), json!(cfg.training.batch));
    r.insert("threads".into(), json!(cfg.training.threads));
    r.insert("wall_seconds".into(), json!(out.wall_seconds));
    r.insert("steps_per_second".into(), json!(sps));
    r.insert("final_loss".into(), json!(out.final_loss));
    r.insert("checkpoints_written".into(), json!(out.checkpoints_written));
    if let Some(c) = checkpoint {
        r.insert("checkpoint".into(), json!(c.display().to_string()));
    }
    Ok(r)
}

pub(crate) fn load_model(path: &Path) -> Result<TrainedModel> {
    TrainedModel::load(path).map_err(|e| crate::interrupt::explain_checkpoint(path, e.into()))
}

pub(crate) fn sample_options(
    s: &SolverArgs,
    n: usize,
    seed: u64,
    record: usize,
    use_ema: bool,
) -> Result<SampleOptions> {
    let solver = flow_matching::ode::SolverKind::parse(&s.solver)
        .map_err(|e| input(format!("--solver {}: {e}", s.solver)))?;
    Ok(SampleOptions {
        n,
        solver,
        steps: s.steps.map(|k| count("steps", k, 10_000_000)).transpose()?,
        rtol: s.rtol,
        atol: s.atol,
        max_steps: count("max-steps", s.max_steps, 1_000_000_000)?,
        seed,
        record,
        use_ema,
    })
}

/// Names the solver and the knobs that help when an integration gives up (too many steps, a
/// step size underflow, a non-finite state); other errors pass through unchanged. The exit code
/// stays 1: the model, not the input, is at fault.
pub(crate) fn integration_failure(
    err: impl Into<anyhow::Error>,
    solver: &str,
    max_steps: Option<usize>,
) -> anyhow::Error {
    use flow_matching::{metrics::MetricsError, ode::OdeError, train::TrainError};
    let err = err.into();
    let ode = err.chain().find_map(|c| {
        c.downcast_ref::<TrainError>()
            .and_then(|t| match t {
                TrainError::Ode(o) => Some(o),
                _ => None,
            })
            .or_else(|| {
                c.downcast_ref::<MetricsError>().and_then(|m| match m {
                    MetricsError::Ode(o) => Some(o),
                    _ => None,
                })
            })
            .or_else(|| c.downcast_ref::<OdeError>())
    });
    let hint = match ode {
        Some(OdeError::MaxStepsExceeded { max_steps: m, .. }) => match max_steps {
            Some(m) => format!(
                "--solver {solver} gave up after --max-steps {m} steps; raise --max-steps, loosen --rtol/--atol, or use a fixed-step solver with --steps"
            ),
            None => format!(
                "--solver {solver} gave up after {m} steps; loosen --rtol/--atol, or use a fixed-step solver with --steps"
            ),
        },
        Some(OdeError::StepSizeUnderflow { .. }) => format!(
            "--solver {solver} could not keep its error within the tolerances (the model's field is too stiff); loosen --rtol/--atol or use a fixed-step solver with --steps"
        ),
        Some(OdeError::NonFiniteState { .. } | OdeError::NonFiniteVelocity { .. }) => format!(
            "integrating the model with --solver {solver} blew up; use more --steps or an adaptive solver (dopri5), or retrain the model"
        ),
        _ => return err,
    };
    err.context(hint)
}

fn check_solver(name: &str) -> Result<()> {
    flow_matching::ode::solver_by_name(name)
        .map(|_| ())
        .map_err(|e| input(format!("--solver {name}: {e}")))
}

fn check_points_out(path: &Path, flag: &str) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    if !matches!(ext.as_deref(), Some("csv") | Some("npy")) {
        bail!(input(format!(
            "{}: --{flag} must end in .csv or .npy",
            path.display()
        )));
    }
    check_out_dir(path)
}

/// Trajectory rows `(t, x_1..x_d)`, one block of `n` rows per recorded time.
pub(crate) fn trajectory_rows(traj: &[(f64, Array2<f64>)]) -> Array2<f64> {
    let (n, d) = traj.first().map(|(_, x)| x.dim()).unwrap_or((0, 0));
    let mut out = Array2::zeros((n * traj.len(), d + 1));
    for (k, (t, x)) in traj.iter().enumerate() {
        let mut blk = out.slice_axis_mut(Axis(0), Slice::from(k * n..(k + 1) * n));
        blk.column_mut(0).fill(*t);
        blk.slice_axis_mut(Axis(1), Slice::from(1..)).assign(x);
    }
    out
}

pub(crate) fn rows_to_trajectory(rows: &Array2<f64>) -> Result<Vec<(f64, Array2<f64>)>> {
    if rows.ncols() < 3 {
        bail!(input(
            "a trajectory file has rows (t, x_1, ..., x_d) with d >= 2"
        ));
    }
    let mut out: Vec<(f64, Vec<usize>)> = Vec::new();
    for (i, r) in rows.rows().into_iter().enumerate() {
        match out.last_mut() {
            Some((t, idx)) if *t == r[0] => idx.push(i),
            _ => out.push((r[0], vec![i])),
        }
    }
    let Some(n) = out.first().map(|o| o.1.len()) else {
        bail!(input("the trajectory file holds no rows"));
    };
    if out.iter().any(|(_, idx)| idx.len() != n) {
        bail!(input(
            "the trajectory file is malformed: every time must hold the same number of points"
        ));
    }
    Ok(out
        .into_iter()
        .map(|(t, idx)| {
            (
                t,
                rows.select(Axis(0), &idx)
                    .slice_axis(Axis(1), Slice::from(1..))
                    .to_owned(),
            )
        })
        .collect())
}

fn sample(a: SampleArgs) -> Result<Report> {
    check_points_out(&a.out, "out")?;
    if let Some(t) = &a.trajectory {
        check_points_out(t, "trajectory")?;
    }
    let mut outs = vec![output("--out", &a.out, Kind::Points)];
    outs.extend(
        a.trajectory
            .as_deref()
            .map(|t| output("--trajectory", t, Kind::Points)),
    );
    let src = a.start.source.as_deref().and_then(spec_file);
    check_outputs(
        &[
            ("--model", Some(&a.model)),
            ("--x0", a.start.x0.as_deref()),
            ("--source", src.as_deref()),
            ("--context-file", a.ctx.context_file.as_deref()),
        ],
        &outs,
    )?;
    let mut written: Vec<&Path> = vec![&a.out];
    written.extend(a.trajectory.as_deref());
    crate::interrupt::install_quit(&written)?;
    let n = count("n", a.n, flow_matching::train::MAX_SAMPLES as i64)?;
    if let Some(flow) = crate::flows::load(&a.model)? {
        if let (Some(x0), crate::flows::Flow::Coupling(f)) = (&a.start.x0, &flow) {
            return crate::verbs::coupling_sample_from(&a, x0, f);
        }
        if a.start.x0.is_some() || a.start.source.is_some() {
            bail!(input(format!(
                "{}: is a normalizing flow, which samples from its own N(0, I) base: --source works with flow-matching models (fm train --model fm), --x0 with those and coupling flows",
                a.model.display()
            )));
        }
        return crate::flows::sample(&a, &flow, n);
    }
    let mut model = load_model(&a.model)?;
    if model.is_conditional() && (a.start.x0.is_some() || a.start.source.is_some()) {
        bail!(input(format!(
            "{}: is a conditional model: --x0 and --source are not supported with contexts yet; sample with --context/--context-file/--label from its N(0, I) source",
            a.model.display()
        )));
    }
    if let Some(x0) = &a.start.x0 {
        return crate::verbs::sample_from(&a, x0, &model);
    }
    crate::verbs::use_source(&mut model, &a.model, a.start.source.as_deref(), true)?;
    let record = if a.trajectory.is_some() { 21 } else { 0 };
    let opts = sample_options(&a.solver, n, a.seed, record, !a.no_ema)?;
    if a.prior_task.is_some() && !model.is_conditional() {
        bail!(input(format!(
            "--prior-task rejects posterior samples outside a task's prior, but {} is an unconditional model: drop --prior-task (or train it with --context)",
            a.model.display()
        )));
    }
    if model.is_conditional() || a.ctx.any() {
        return crate::conditional::sample(&a, &model, &opts)
            .map_err(|e| integration_failure(e, opts.solver.name(), Some(opts.max_steps)));
    }
    let chunk = sample_budget(&model, &opts)?;
    let start = Instant::now();
    let stats = if let Some(t) = &a.trajectory {
        let (_, sol) = flow_matching::train::sample(&model, &opts)
            .map_err(|e| integration_failure(e, opts.solver.name(), Some(opts.max_steps)))?;
        write_points(&a.out, sol.x.view())?;
        crate::verbs::write_trajectory(t, &sol.trajectory)?;
        sol.stats
    } else {
        // Chunk by chunk: the samples go to disk as they are made.
        let dim = model.config.architecture.dim;
        let mut w = flow_matching::data::PointsWriter::create(&a.out, n, dim)?;
        let stats = flow_matching::train::sample_chunked(&model, &opts, chunk, &mut |x| {
            Ok(w.write_rows(x)?)
        })
        .map_err(|e| integration_failure(e, opts.solver.name(), Some(opts.max_steps)))?;
        w.finish()?;
        stats
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} samples with {} in {:.3} s: {} function evaluations ({} steps accepted, {} rejected){}",
        opts.solver,
        secs,
        stats.nfe,
        stats.accepted,
        stats.rejected,
        if chunk < n {
            format!(" per chunk of {chunk} points")
        } else {
            String::new()
        }
    );
    println!("samples written to {}", a.out.display());
    let mut r = Report::new();
    r.insert("command".into(), json!("sample"));
    r.insert("n".into(), json!(n));
    r.insert("solver".into(), json!(opts.solver.name()));
    r.insert("nfe".into(), json!(stats.nfe));
    r.insert("accepted".into(), json!(stats.accepted));
    r.insert("rejected".into(), json!(stats.rejected));
    r.insert("chunk".into(), json!(chunk));
    r.insert("seconds".into(), json!(secs));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

/// Checks the memory `fm sample` needs and returns the points integrated at once.
fn sample_budget(model: &TrainedModel, opts: &SampleOptions) -> Result<usize> {
    use crate::budget;
    let limit = budget::limit()?;
    let arch = &model.config.architecture;
    let (n, dim) = (opts.n, arch.dim);
    let stages = budget::stages(opts.solver.name());
    let adaptive = opts.solver.is_adaptive() && opts.steps.is_none();
    let chunk = if opts.record >= 2 {
        n
    } else if adaptive {
        flow_matching::train::ADAPTIVE_CHUNK.min(n)
    } else {
        budget::chunk_rows(n, dim, &arch.hidden, stages, &limit)
    };
    let mut need = budget::integrate_need(chunk, dim, &arch.hidden, stages);
    if opts.record >= 2 {
        need.add(
            format!("the trajectory of {n} points at {} times", opts.record),
            "--n",
            2.0 * 8.0 * opts.record as f64 * n as f64 * (dim as f64 + 1.0),
        );
    }
    if !model.config.source.trim().starts_with("gaussian") {
        need.add(
            format!("the draw of {n} source points"),
            "--n",
            2.0 * 8.0 * n as f64 * dim as f64,
        );
    }
    need.check(&limit)?;
    Ok(chunk)
}

/// Streams of the subsample RNG: the evaluated samples, the reference (target) points and
/// likelihood data are drawn independently, so two files of equal length do not get the same
/// row indices.
const SAMPLES_STREAM: u64 = 0;
const TARGET_STREAM: u64 = 1;
pub(crate) const LIKELIHOOD_STREAM: u64 = 2;

/// `n` rows of `x` without replacement (all of them if it has at most `n`), seeded, from RNG
/// stream `stream`.
pub(crate) fn subsample(x: Array2<f64>, n: usize, seed: u64, stream: u64) -> Array2<f64> {
    if x.nrows() <= n {
        return x;
    }
    let mut rng = flow_matching::core::rng::seeded(seed ^ 0x5eed);
    rng.set_stream(stream);
    let idx = rand::seq::index::sample(&mut rng, x.nrows(), n).into_vec();
    x.select(Axis(0), &idx)
}

/// The target's points for comparison: `n` fresh draws from a built-in, or the file's points.
pub(crate) fn target_points(
    spec: &str,
    n: usize,
    dim: Option<usize>,
    seed: u64,
) -> Result<Array2<f64>> {
    let ds = Dataset::parse(spec, dim).with_context(|| format!("--target {spec}"))?;
    safety::check_dataset("--target", spec, &ds)?;
    Ok(match &ds {
        Dataset::Points(p) => subsample(p.data().clone(), n, seed, TARGET_STREAM),
        _ => {
            let mut rng = flow_matching::core::rng::seeded(seed.wrapping_add(1_000_003));
            ds.sample(n, &mut rng)?
        }
    })
}

pub(crate) struct Figures {
    pub(crate) w2: f64,
    pub(crate) mmd: f64,
    pub(crate) n: usize,
}

pub(crate) fn compare(samples: &Array2<f64>, target: &Array2<f64>) -> Result<Figures> {
    let n = samples.nrows().min(target.nrows());
    let (a, b) = (
        samples.slice_axis(Axis(0), Slice::from(..n)),
        target.slice_axis(Axis(0), Slice::from(..n)),
    );
    let w2 = metrics::w2(a, b)?;
    let mmd = metrics::mmd_rbf(a, b, &MMD_BANDWIDTHS)?;
    Ok(Figures { w2, mmd, n })
}

fn eval(a: EvalArgs) -> Result<Report> {
    let n = count("n", a.n, 20_000)?;
    let mut r = Report::new();
    r.insert("command".into(), json!("eval"));
    if let Some(path) = &a.samples {
        let x = read_points(path)?;
        safety::check_magnitude(&format!("--samples {}", path.display()), x.view())?;
        let x = subsample(x, n, a.seed, SAMPLES_STREAM);
        let target = target_points(&a.target, x.nrows(), Some(x.ncols()), a.seed)?;
        let f = compare(&x, &target)?;
        println!(
            "W2 = {:.4}   MMD² = {:.3e}   ({} samples vs {} target points)",
            f.w2, f.mmd, f.n, f.n
        );
        r.insert("w2".into(), json!(f.w2));
        r.insert("mmd".into(), json!(f.mmd));
        r.insert("n".into(), json!(f.n));
        return Ok(r);
    }
    let Some(model_path) = &a.model else {
        bail!(input("give --samples FILE or --model MODEL"));
    };
    if let Some(flow) = crate::flows::load(model_path)? {
        return crate::flows::eval(&a, &flow, n, r);
    }
    let mut model = load_model(model_path)?;
    crate::verbs::use_source(&mut model, model_path, None, false)?;
    let dim = model.config.architecture.dim;
    let opts = sample_options(&a.solver, n, a.seed, 0, !a.no_ema)?;
    let arch = &model.config.architecture;
    let mut need = crate::budget::integrate_need(
        n,
        dim,
        &arch.hidden,
        crate::budget::stages(opts.solver.name()),
    );
    need.add(
        format!("the {n} × {n} cost matrices of W2 and MMD"),
        "--n",
        3.0 * 8.0 * (n as f64) * (n as f64),
    );
    need.check(&crate::budget::limit()?)?;
    let start = Instant::now();
    let (x_0, sol) = flow_matching::train::sample(&model, &opts)
        .map_err(|e| integration_failure(e, opts.solver.name(), Some(opts.max_steps)))?;
    let secs = start.elapsed().as_secs_f64();
    let target = target_points(&a.target, n, Some(dim), a.seed)?;
    let f = compare(&sol.x, &target)?;
    let field = model.field(!a.no_ema)?;
    let pe = metrics::path_energy(field.as_ref(), x_0.view(), 100)?;
    let m = x_0.nrows().min(target.nrows());
    let w2_sq_01 = metrics::w2_sq(
        x_0.slice_axis(Axis(0), Slice::from(..m)),
        target.slice_axis(Axis(0), Slice::from(..m)),
    )?;
    let npe = metrics::normalized_path_energy(pe, w2_sq_01);
    println!(
        "W2 = {:.4}   MMD² = {:.3e}   path energy = {:.4}   W2²(source, target) = {:.4}   NPE = {:.4}",
        f.w2, f.mmd, pe, w2_sq_01, npe
    );
    println!(
        "{} samples with {}: {} function evaluations in {:.3} s",
        f.n, opts.solver, sol.stats.nfe, secs
    );
    r.insert("w2".into(), json!(f.w2));
    r.insert("mmd".into(), json!(f.mmd));
    r.insert("path_energy".into(), json!(pe));
    r.insert("w2_sq_source_target".into(), json!(w2_sq_01));
    r.insert("npe".into(), json!(npe));
    r.insert("nfe".into(), json!(sol.stats.nfe));
    r.insert("sample_seconds".into(), json!(secs));
    r.insert("n".into(), json!(f.n));
    Ok(r)
}

/// The likelihood options of `fm likelihood`'s flags.
fn likelihood_options(a: &LikelihoodArgs) -> Result<metrics::LikelihoodOptions> {
    let divergence = match a.hutchinson {
        Some(k) => metrics::Divergence::Hutchinson {
            probes: count("hutchinson", k, 10_000)?,
            kind: metrics::ProbeKind::Rademacher,
        },
        None => metrics::Divergence::Exact,
    };
    let steps = a.steps.map(|k| count("steps", k, 10_000_000)).transpose()?;
    check_solver(&a.solver)?;
    let solver = flow_matching::ode::solver_by_name(&a.solver)?;
    let adaptive = solver.is_adaptive();
    Ok(metrics::LikelihoodOptions {
        solver: a.solver.clone(),
        steps: if adaptive {
            steps
        } else {
            Some(steps.unwrap_or(100))
        },
        rtol: a.rtol.unwrap_or(1e-5),
        atol: a.atol.unwrap_or(1e-5),
        divergence,
    })
}

fn likelihood(a: LikelihoodArgs) -> Result<Report> {
    if let Some(o) = &a.out {
        check_points_out(o, "out")?;
        let data = spec_file(&a.data);
        check_outputs(
            &[
                ("--model", Some(&a.model)),
                ("--data", data.as_deref()),
                ("--context-file", a.ctx.context_file.as_deref()),
            ],
            &[output("--out", o, Kind::Points)],
        )?;
    }
    if let Some(flow) = crate::flows::load(&a.model)? {
        return crate::flows::likelihood(&a, &flow);
    }
    let model = load_model(&a.model)?;
    let dim = model.config.architecture.dim;
    if model.is_conditional()
        || a.ctx.any()
        || a.cols.context_cols.is_some()
        || a.cols.label_col.is_some()
    {
        return crate::conditional::likelihood(&a, &model, &likelihood_options(&a)?);
    }
    if !model.config.source.starts_with("gaussian") {
        bail!(input(format!(
            "{}: likelihoods need a model trained from --source gaussian (this one's source is {})",
            a.model.display(),
            model.config.source
        )));
    }
    let ds = Dataset::parse(&a.data, Some(dim)).with_context(|| format!("--data {}", a.data))?;
    safety::check_dataset("--data", &a.data, &ds)?;
    let n = count("n", a.n, 10_000_000)?;
    {
        // The augmented state (x, log p) through dopri5's stages, and the divergence's d
        // Jacobian products per point.
        let rows = match &ds {
            Dataset::Points(p) => p.data().nrows(),
            _ => n,
        };
        let hidden = &model.config.architecture.hidden;
        let mut need = crate::budget::integrate_need(rows, dim + 1, hidden, 7);
        need.add(
            "the divergence's Jacobian products",
            "--n",
            2.0 * 4.0 * rows as f64 * (dim as f64 + 1.0) * hidden.iter().sum::<usize>() as f64,
        );
        need.check(&crate::budget::limit()?)?;
    }
    let mut rng = flow_matching::core::rng::seeded(a.seed);
    let (x, rows_in_file) = match &ds {
        Dataset::Points(p) => (
            subsample(p.data().clone(), n, a.seed, LIKELIHOOD_STREAM),
            Some(p.data().nrows()),
        ),
        _ => (ds.sample(n, &mut rng)?, None),
    };
    let subsampled = rows_in_file.is_some_and(|r| r > x.nrows());
    let opts = likelihood_options(&a)?;
    let field = model.field(!a.no_ema)?;
    let start = Instant::now();
    let ll = metrics::log_likelihood(field.as_ref(), x.view(), &opts, &mut rng)
        .map_err(|e| integration_failure(e, &a.solver, None))?;
    let secs = start.elapsed().as_secs_f64();
    let mean = ll.mean();
    println!(
        "mean log-likelihood {:.4} nats ({:.4} bits/dim) over {} points; {} function evaluations in {:.3} s",
        mean,
        ll.bits_per_dim(),
        x.nrows(),
        ll.stats.nfe,
        secs
    );
    if let (true, Some(r)) = (subsampled, rows_in_file) {
        println!(
            "(a seeded subsample of {} of the {r} rows of {}; raise --n to use more)",
            x.nrows(),
            a.data
        );
    }
    if let Some(o) = &a.out {
        let col = ll.log_p.clone().insert_axis(Axis(1));
        write_points(o, col.view())?;
        println!("per-point log-likelihoods written to {}", o.display());
    }
    let mut r = Report::new();
    r.insert("command".into(), json!("likelihood"));
    r.insert("mean_log_likelihood".into(), json!(mean));
    r.insert("bits_per_dim".into(), json!(ll.bits_per_dim()));
    r.insert("n".into(), json!(x.nrows()));
    r.insert("subsampled".into(), json!(subsampled));
    r.insert("rows_in_file".into(), json!(rows_in_file));
    r.insert("ema".into(), json!(!a.no_ema && model.config.has_ema));
    r.insert("nfe".into(), json!(ll.stats.nfe));
    r.insert("seconds".into(), json!(secs));
    Ok(r)
}

fn plot_cmd(kind: PlotKind) -> Result<Report> {
    let mut r = Report::new();
    r.insert("command".into(), json!("plot"));
    match kind {
        PlotKind::Samples {
            samples,
            model,
            target,
            n,
            seed,
            out,
        } => {
            let tf = target.as_deref().and_then(spec_file);
            let ins = [
                ("--samples", samples.as_deref()),
                ("--model", model.as_deref()),
                ("--target", tf.as_deref()),
            ];
            check_outputs(&ins, &[output("--out", &out, Kind::Png)])?;
            let n = count("n", n, 1_000_000)?;
            let (x, title) = match (&samples, &model) {
                (Some(s), _) => (read_points(s)?, format!("samples: {}", s.display())),
                (None, Some(m)) if crate::flows::load(m)?.is_some() => {
                    crate::flows::plot_samples(m, n, seed)?
                }
                (None, Some(m)) => {
                    let mut model = load_model(m)?;
                    crate::verbs::use_source(&mut model, m, None, false)?;
                    let opts = SampleOptions {
                        n,
                        seed,
                        ..Default::default()
                    };
                    let (_, sol) = flow_matching::train::sample(&model, &opts)?;
                    (
                        sol.x,
                        format!(
                            "{} samples, {}",
                            model.config.matcher.kind.name(),
                            model.config.target
                        ),
                    )
                }
                _ => bail!(input("give --samples FILE or --model MODEL")),
            };
            let t = target
                .as_deref()
                .map(|t| target_points(t, n, Some(x.ncols()), seed))
                .transpose()?;
            plot::samples(&out, x.view(), t.as_ref().map(|t| t.view()), &title)?;
            r.insert("kind".into(), json!("samples"));
            r.insert("out".into(), json!(out.display().to_string()));
            println!("plot written to {}", out.display());
        }
        PlotKind::Trajectories {
            trajectory,
            model,
            target,
            n,
            seed,
            out,
        } => {
            let tf = target.as_deref().and_then(spec_file);
            let ins = [
                ("--trajectory", trajectory.as_deref()),
                ("--model", model.as_deref()),
                ("--target", tf.as_deref()),
            ];
            check_outputs(&ins, &[output("--out", &out, Kind::Png)])?;
            let n = count("n", n, 100_000)?;
            let traj = match (&trajectory, &model) {
                (Some(f), _) => crate::verbs::read_trajectory(f)?,
                (None, Some(m)) => {
                    crate::flows::refuse_plot(m, "trajectories")?;
                    let mut model = load_model(m)?;
                    crate::verbs::use_source(&mut model, m, None, false)?;
                    let opts = SampleOptions {
                        n,
                        seed,
                        record: 51,
                        ..Default::default()
                    };
                    flow_matching::train::sample(&model, &opts)?.1.trajectory
                }
                _ => bail!(input("give --trajectory FILE or --model MODEL")),
            };
            let dim = traj.first().map_or(0, |t| t.1.ncols());
            let t = target
                .as_deref()
                .map(|t| target_points(t, 2000, Some(dim), seed))
                .transpose()?;
            plot::trajectories(&out, &traj, t.as_ref().map(|t| t.view()), "trajectories")?;
            r.insert("kind".into(), json!("trajectories"));
            r.insert("out".into(), json!(out.display().to_string()));
            println!("plot written to {}", out.display());
        }
        PlotKind::Density {
            model,
            range,
            grid,
            seed,
            rtol,
            atol,
            values,
            out,
        } => {
            return crate::density::run(&crate::density::DensityArgs {
                model: &model,
                range: range.as_deref(),
                grid,
                seed,
                rtol,
                atol,
                values: values.as_deref(),
                out: &out,
            });
        }
        PlotKind::Loss { model, out } => {
            check_outputs(
                &[("--model", Some(&model))],
                &[output("--out", &out, Kind::Png)],
            )?;
            crate::flows::refuse_plot(&model, "loss")?;
            let m = load_model(&model)?;
            plot::loss_curve(
                &out,
                &m.config.loss_history,
                &format!("training loss ({})", m.config.matcher.kind.name()),
            )?;
            r.insert("kind".into(), json!("loss"));
            r.insert("out".into(), json!(out.display().to_string()));
            println!("plot written to {}", out.display());
        }
    }
    Ok(r)
}

fn demo(a: DemoArgs, json: bool) -> Result<Report> {
    let steps = count("steps", a.steps, 10_000_000)?;
    let threads = threads(a.threads)?;
    if a.out.exists() && !a.out.is_dir() {
        bail!(input(format!(
            "{}: exists and is not a directory: choose another --out",
            a.out.display()
        )));
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create the directory", a.out.display()))?;
    let files = [
        ("model.safetensors", Kind::Model),
        ("samples.csv", Kind::Points),
        ("samples.png", Kind::Png),
        ("trajectories.png", Kind::Png),
        ("loss.png", Kind::Png),
    ]
    .map(|(f, k)| (a.out.join(f), k));
    let outs: Vec<_> = files.iter().map(|(p, k)| output("--out", p, *k)).collect();
    check_outputs(&[], &outs)?;
    let total = Instant::now();
    println!(
        "fm demo: OT-CFM (σ = 0.1) from N(0, I) to moons, {steps} steps of batch 256, 3×64 SELU MLP, Adam lr 1e-3, EMA 0.99, seed {}",
        a.seed
    );
    let params = TrainParams::default()
        .steps(steps)
        .batch(256)
        .seed(a.seed)
        .threads(threads)
        .check()?;
    let (source, target) = datasets_pair("gaussian", "moons")?;
    let matcher = MatcherSpec::parse("otcfm", Some(0.1), None, None)?;
    let trainer = Trainer::new(
        source,
        target,
        matcher,
        Objective::Flow,
        ArchConfig::default(),
        params,
    )?;
    let setup = TrainSetup { trainer, steps };
    let out = run_training(&setup, json, None)?;
    let model_path = a.out.join("model.safetensors");
    out.model.save(&model_path)?;
    println!(
        "trained in {:.2} s ({:.0} steps/s), final loss {:.4}",
        out.wall_seconds,
        out.steps_run as f64 / out.wall_seconds.max(1e-9),
        out.final_loss
    );
    let n = 2000;
    let opts = SampleOptions {
        n,
        seed: a.seed.wrapping_add(1),
        record: 51,
        ..Default::default()
    };
    let start = Instant::now();
    let (x_0, sol) = flow_matching::train::sample(&out.model, &opts)?;
    let sample_secs = start.elapsed().as_secs_f64();
    let samples_path = a.out.join("samples.csv");
    write_points(&samples_path, sol.x.view())?;
    let target = target_points("moons", n, Some(2), a.seed)?;
    let start = Instant::now();
    let f = compare(&sol.x, &target)?;
    let eval_secs = start.elapsed().as_secs_f64();
    println!(
        "sampled {n} points (Euler, 100 steps, {} evaluations) in {:.3} s; W2 to {n} fresh moons points = {:.4} ({:.3} s)",
        sol.stats.nfe, sample_secs, f.w2, eval_secs
    );
    let p_samples = a.out.join("samples.png");
    let p_traj = a.out.join("trajectories.png");
    let p_loss = a.out.join("loss.png");
    plot::samples(
        &p_samples,
        sol.x.view(),
        Some(target.view()),
        &format!("OT-CFM samples vs moons (W2 = {:.3})", f.w2),
    )?;
    let few: Vec<(f64, Array2<f64>)> = sol
        .trajectory
        .iter()
        .map(|(t, x)| {
            (
                *t,
                x.slice_axis(Axis(0), Slice::from(..300.min(x.nrows())))
                    .to_owned(),
            )
        })
        .collect();
    plot::trajectories(
        &p_traj,
        &few,
        Some(target.view()),
        "OT-CFM trajectories, N(0, I) to moons",
    )?;
    plot::loss_curve(
        &p_loss,
        &out.model.config.loss_history,
        "OT-CFM training loss",
    )?;
    // What W2 means here: the untrained start (the source draw) and the floor (two independent
    // draws of the target) at the same n.
    let w2_source = compare(&x_0, &target)?.w2;
    let floor = target_points("moons", n, Some(2), a.seed.wrapping_add(7))?;
    let w2_floor = compare(&floor, &target)?.w2;
    let total_secs = total.elapsed().as_secs_f64();
    println!(
        "wrote {}, {}, {}, {}, {} in {:.2} s total",
        model_path.display(),
        samples_path.display(),
        p_samples.display(),
        p_traj.display(),
        p_loss.display(),
        total_secs
    );
    println!(
        "W2 = {:.3}: the root-mean-square distance, in data units, the samples must move to match {n} fresh moons points",
        f.w2
    );
    println!(
        "for scale: N(0, I), where the flow starts, is at W2 = {w2_source:.3}; two independent draws of {n} moons points are at \
         W2 = {w2_floor:.3} (the floor at this n); nearer the floor is better: more --steps get closer"
    );
    let m = model_path.display();
    println!("next:");
    println!(
        "  fm sample --model {m} --n 5000 --solver dopri5 --trajectory {} --out {}   # more samples, adaptive solver, trajectories",
        a.out.join("traj.npy").display(),
        a.out.join("more.csv").display()
    );
    println!(
        "  fm eval --model {m} --target moons --solver rk4 --steps 10   # W2 with 40 evaluations instead of 100"
    );
    println!(
        "  fm train --target 8gaussians --source moons --matcher icfm --sigma 0.1 --steps 3000 --out 8g.safetensors   # any source to any target"
    );
    let mut r = Report::new();
    r.insert("command".into(), json!("demo"));
    r.insert("steps".into(), json!(steps));
    r.insert("train_seconds".into(), json!(out.wall_seconds));
    r.insert(
        "steps_per_second".into(),
        json!(out.steps_run as f64 / out.wall_seconds.max(1e-9)),
    );
    r.insert("final_loss".into(), json!(out.final_loss));
    r.insert("w2".into(), json!(f.w2));
    r.insert("w2_source".into(), json!(w2_source));
    r.insert("w2_floor".into(), json!(w2_floor));
    r.insert("mmd".into(), json!(f.mmd));
    r.insert("nfe".into(), json!(sol.stats.nfe));
    r.insert("sample_seconds".into(), json!(sample_secs));
    r.insert("total_seconds".into(), json!(total_secs));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

fn datasets() -> Result<Report> {
    let mut list = Vec::new();
    for name in builtin_names() {
        let toy = flow_matching::data::Toy::named(name);
        let params = toy
            .as_ref()
            .map(|t| {
                t.params()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let dim = toy.as_ref().map(|t| t.dim()).unwrap_or(0);
        println!(
            "{name:<22} dim {}  {params}",
            if *name == "gaussian" {
                "any".to_string()
            } else {
                dim.to_string()
            }
        );
        list.push(json!({"name": name, "params": params}));
    }
    println!(
        "files: any .csv (optional header) or .npy (2-D f32/f64) path; `gaussian` takes the other side's dimension"
    );
    let mut r = Report::new();
    r.insert("command".into(), json!("datasets"));
    r.insert("datasets".into(), Value::Array(list));
    Ok(r)
}
