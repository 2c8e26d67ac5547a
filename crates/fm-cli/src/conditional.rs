//! Conditional flow matching `p(x | c)` from the command line: the context flags of `fm train`,
//! `fm sample` and `fm likelihood`, reading contexts from files or from columns of the data file,
//! and the conditional sample and likelihood commands.
//!
//! * `fm train --target X --context C.csv` (rows aligned with X), or `--context-cols LIST` /
//!   `--label-col NAME|INDEX` naming columns of X (removed from x); `--label-dropout P`
//!   (labels, default 0.1), `--context-beta B` (OT matchers, continuous contexts, default 100),
//!   `--no-zscore`.
//! * `fm sample --model M --context "v1,...,vk" | --context-file F | --label K [--guidance W]`.
//! * `fm likelihood --model M --data F` with the same flags, or `--context-cols` / `--label-col`
//!   naming columns of F.

use crate::args::{LikelihoodArgs, SampleArgs};
use crate::commands::{LIKELIHOOD_STREAM, Report, count, subsample};
use crate::input;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use flow_matching::data::{Dataset, Points, read_points, write_points};
use flow_matching::metrics;
use flow_matching::train::{
    ConditionOptions, Context, ContextKind, ContextSource, DEFAULT_CONTEXT_BETA,
    DEFAULT_LABEL_DROPOUT, SampleOptions, TrainedModel,
};
use ndarray::{Array2, Axis};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The context flags of `fm train`.
#[derive(Args, Debug, Clone, Default)]
pub struct TrainContextArgs {
    /// Conditional training p(x | c): a .csv/.npy file of contexts c, one row per row of --target.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["context_cols", "label_col"])]
    pub context: Option<PathBuf>,
    /// Conditional training: the columns of the --target file that hold the context (names from
    /// its CSV header, or 0-based indices), comma separated; they are removed from x.
    #[arg(long, value_name = "LIST", conflicts_with = "label_col")]
    pub context_cols: Option<String>,
    /// Conditional training on class labels: the column of the --target file (header name or
    /// 0-based index) holding integer labels; it is removed from x. Labels are fed one-hot with a
    /// reserved "no label" entry (classifier-free guidance).
    #[arg(long, value_name = "NAME|INDEX")]
    pub label_col: Option<String>,
    /// Labels: probability of replacing a training label by "no label" (default 0.1); needed > 0
    /// for `fm sample --guidance`.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub label_dropout: Option<f64>,
    /// Continuous contexts with an OT matcher: the weight β of the context in the conditional OT
    /// cost ‖x0 − x1‖² + β‖c0 − c1‖² on z-scored data (default 100).
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    pub context_beta: Option<f64>,
    /// Do not z-score x and the context (by default both are standardized with the training
    /// data's mean and standard deviation, stored in the model file; samples are mapped back).
    #[arg(long)]
    pub no_zscore: bool,
}

/// The context flags of `fm sample` and `fm likelihood`.
#[derive(Args, Debug, Clone, Default)]
pub struct QueryContextArgs {
    /// The context of a conditional model: comma-separated values "v1,...,vk", used for every point.
    #[arg(long, value_name = "V,V,...", allow_hyphen_values = true, conflicts_with_all = ["context_file", "label"])]
    pub context: Option<String>,
    /// Contexts of a conditional model from a .csv/.npy file: one row (used for every point) or
    /// one row per point.
    #[arg(long, value_name = "FILE", conflicts_with = "label")]
    pub context_file: Option<PathBuf>,
    /// The class label of a label model (an integer seen in training).
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    pub label: Option<String>,
    /// Classifier-free guidance scale w of a label model: v = v(x, ∅) + w (v(x, c) − v(x, ∅));
    /// 1 (the default) is the plain conditional field, 0 the unconditional one.
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub guidance: Option<f64>,
}

impl QueryContextArgs {
    /// Whether any context flag was given.
    pub fn any(&self) -> bool {
        self.given() || self.guidance.is_some()
    }

    /// Whether a context itself was given (--context, --context-file or --label).
    pub fn given(&self) -> bool {
        self.context.is_some() || self.context_file.is_some() || self.label.is_some()
    }
}

/// `--guidance` needs a label model.
fn check_guidance(model: &TrainedModel, model_path: &Path, q: &QueryContextArgs) -> Result<()> {
    let layout = &model.config.context;
    if layout.kind != ContextKind::Labels && q.guidance.is_some() {
        bail!(input(format!(
            "--guidance needs a label model (trained with --label-col); {} is {}",
            model_path.display(),
            if layout.is_none() {
                "unconditional"
            } else {
                "conditioned on continuous contexts"
            }
        )));
    }
    Ok(())
}

/// The context-column flags of `fm likelihood` (columns of --data).
#[derive(Args, Debug, Clone, Default)]
pub struct DataColumnsArgs {
    /// The columns of the --data file holding the context (header names or 0-based indices); they
    /// are removed from x.
    #[arg(long, value_name = "LIST", conflicts_with = "label_col")]
    pub context_cols: Option<String>,
    /// The column of the --data file holding integer labels; it is removed from x.
    #[arg(long, value_name = "NAME|INDEX")]
    pub label_col: Option<String>,
}

/// The clap ids of the context flags of `fm sample` / `fm likelihood` (refused by normalizing flows).
pub const QUERY_CONTEXT_FLAGS: &[&str] = &[
    "context",
    "context_file",
    "label",
    "guidance",
    "context_cols",
    "label_col",
];

/// The header names of a CSV file (`None` for .npy or a file without a header).
fn header(path: &Path) -> Option<Vec<String>> {
    if !path
        .to_string_lossy()
        .to_ascii_lowercase()
        .ends_with(".csv")
    {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let cells: Vec<String> = line.split(',').map(|c| c.trim().to_string()).collect();
    cells
        .iter()
        .all(|c| c.parse::<f64>().is_err())
        .then_some(cells)
}

/// The column indices named by `list` (header names or 0-based indices) in a file of `ncols`.
fn resolve_columns(list: &str, flag: &str, path: &Path, ncols: usize) -> Result<Vec<usize>> {
    let names = header(path);
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            bail!(input(format!(
                "{flag} `{list}` has an empty entry: give column names or indices separated by commas"
            )));
        }
        let by_name = names
            .as_ref()
            .and_then(|n| n.iter().position(|c| c == item));
        let idx = match (by_name, item.parse::<usize>()) {
            (Some(i), _) => i,
            (None, Ok(i)) if i < ncols => i,
            (None, Ok(i)) => bail!(input(format!(
                "{flag}: column {i} does not exist, {} has {ncols} columns (indices start at 0)",
                path.display()
            ))),
            (None, Err(_)) => bail!(input(format!(
                "{flag}: {} has no column named `{item}`{}",
                path.display(),
                match &names {
                    Some(n) => format!(" (its header is {})", n.join(",")),
                    None => " (it has no header: give 0-based column indices)".into(),
                }
            ))),
        };
        if out.contains(&idx) {
            bail!(input(format!("{flag}: column `{item}` is named twice")));
        }
        out.push(idx);
    }
    if out.len() >= ncols {
        bail!(input(format!(
            "{flag}: naming all {ncols} columns of {} as context leaves no data: keep at least one column for x",
            path.display()
        )));
    }
    Ok(out)
}

/// Integer labels from a column of values; a non-integer is an input error naming its row.
fn labels_of(col: ndarray::ArrayView1<f64>, what: &str) -> Result<Vec<i64>> {
    col.iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                Ok(v as i64)
            } else {
                Err(input(format!(
                    "{what}: row {i} holds {v}, not an integer label: give integer class labels"
                )))
            }
        })
        .collect()
}

/// Splits the columns `cols` off `data`: `(x without them, those columns)`.
fn split_columns(data: &Array2<f64>, cols: &[usize]) -> (Array2<f64>, Array2<f64>) {
    let keep: Vec<usize> = (0..data.ncols()).filter(|j| !cols.contains(j)).collect();
    (data.select(Axis(1), &keep), data.select(Axis(1), cols))
}

/// The data and contexts given by columns of a file (`--context-cols` / `--label-col`), or
/// `None` if neither flag is given.
fn columns_context(
    data: &Array2<f64>,
    path: &Path,
    context_cols: Option<&str>,
    label_col: Option<&str>,
) -> Result<Option<(Array2<f64>, Context)>> {
    if let Some(list) = context_cols {
        let cols = resolve_columns(list, "--context-cols", path, data.ncols())?;
        let (x, c) = split_columns(data, &cols);
        return Ok(Some((x, Context::Values(c))));
    }
    if let Some(name) = label_col {
        let cols = resolve_columns(name, "--label-col", path, data.ncols())?;
        if cols.len() != 1 {
            bail!(input("--label-col takes one column"));
        }
        let (x, c) = split_columns(data, &cols);
        let labels = labels_of(c.column(0), &format!("--label-col {name}"))?;
        return Ok(Some((x, Context::Labels(labels))));
    }
    Ok(None)
}

/// The conditional training data of `fm train`: the target (x, possibly with context columns
/// removed), the contexts and the options; `None` without context flags.
pub fn train_data(
    target: &str,
    a: &TrainContextArgs,
) -> Result<Option<(Dataset, Context, ConditionOptions)>> {
    let conditional = a.context.is_some() || a.context_cols.is_some() || a.label_col.is_some();
    if !conditional {
        for (given, flag) in [
            (a.label_dropout.is_some(), "--label-dropout"),
            (a.context_beta.is_some(), "--context-beta"),
            (a.no_zscore, "--no-zscore"),
        ] {
            if given {
                bail!(input(format!(
                    "{flag} applies to conditional training only: give --context FILE, --context-cols or --label-col, or leave it out"
                )));
            }
        }
        return Ok(None);
    }
    let Some(tpath) = crate::safety::spec_file(target) else {
        bail!(input(format!(
            "conditional training needs --target to be a .csv/.npy file whose rows align with the contexts, not the built-in `{target}`"
        )));
    };
    let data = read_points(&tpath).with_context(|| format!("--target {}", tpath.display()))?;
    let (x, context) = match &a.context {
        Some(cpath) => {
            let c = read_points(cpath).with_context(|| format!("--context {}", cpath.display()))?;
            if c.nrows() != data.nrows() {
                bail!(input(format!(
                    "--context {} has {} rows but --target {} has {}: give one context row per target row",
                    cpath.display(),
                    c.nrows(),
                    tpath.display(),
                    data.nrows()
                )));
            }
            (data, Context::Values(c))
        }
        None => columns_context(
            &data,
            &tpath,
            a.context_cols.as_deref(),
            a.label_col.as_deref(),
        )?
        .expect("a column flag is given"),
    };
    let labels = matches!(context, Context::Labels(_));
    if a.label_dropout.is_some() && !labels {
        bail!(input(
            "--label-dropout applies to label models (--label-col) only: leave it out"
        ));
    }
    if a.context_beta.is_some() && labels {
        bail!(input(
            "--context-beta applies to continuous contexts only (labels are paired by exact OT within each label): leave it out"
        ));
    }
    let opts = ConditionOptions {
        zscore: !a.no_zscore,
        label_dropout: if labels {
            a.label_dropout.unwrap_or(DEFAULT_LABEL_DROPOUT)
        } else {
            0.0
        },
        beta: a.context_beta.unwrap_or(DEFAULT_CONTEXT_BETA),
    };
    let points = Points::new(tpath.display().to_string(), x)?;
    crate::safety::check_dataset("--target", target, &Dataset::Points(points.clone()))?;
    Ok(Some((Dataset::Points(points), context, opts)))
}

/// The context of `fm sample` / `fm likelihood` from the flags, checked against the model.
fn query_context(model: &TrainedModel, model_path: &Path, q: &QueryContextArgs) -> Result<Context> {
    check_guidance(model, model_path, q)?;
    let layout = &model.config.context;
    if let Some(s) = &q.context {
        let vals: Result<Vec<f64>, _> = s.split(',').map(|v| v.trim().parse::<f64>()).collect();
        let vals = vals.map_err(|_| {
            input(format!(
                "--context `{s}`: give comma-separated numbers, e.g. --context 0.1,-2"
            ))
        })?;
        let k = vals.len();
        return Ok(Context::Values(
            Array2::from_shape_vec((1, k), vals).expect("one row"),
        ));
    }
    if let Some(f) = &q.context_file {
        let c = read_points(f).with_context(|| format!("--context-file {}", f.display()))?;
        if layout.kind == ContextKind::Labels {
            if c.ncols() != 1 {
                bail!(input(format!(
                    "--context-file {} has {} columns: a label model takes one column of integer labels",
                    f.display(),
                    c.ncols()
                )));
            }
            return Ok(Context::Labels(labels_of(
                c.column(0),
                &format!("--context-file {}", f.display()),
            )?));
        }
        return Ok(Context::Values(c));
    }
    if let Some(l) = &q.label {
        let v: i64 = l.trim().parse().map_err(|_| {
            input(format!(
                "--label `{l}` is not an integer: give one of the model's class labels {:?}",
                layout.labels
            ))
        })?;
        return Ok(Context::Labels(vec![v]));
    }
    unreachable!("called with a context flag")
}

/// The error for a conditional model used without a context, naming the flags to give.
fn missing_context(model: &TrainedModel, path: &Path) -> anyhow::Error {
    let layout = &model.config.context;
    input(match layout.kind {
        ContextKind::Labels => format!(
            "{} is a label model: give --label K (one of {:?}), optionally --guidance W",
            path.display(),
            layout.labels
        ),
        _ => format!(
            "{} is conditional on contexts of {} values: give --context v1,...,v{} or --context-file F",
            path.display(),
            layout.width,
            layout.width
        ),
    })
}

/// The error for context flags on an unconditional model.
fn unconditional(path: &Path) -> anyhow::Error {
    input(format!(
        "{} is an unconditional model: drop --context/--context-file/--label/--guidance (or train with --context)",
        path.display()
    ))
}

/// `fm sample` of a conditional model, or of any model with context flags (the outputs are
/// already checked).
pub fn sample(a: &SampleArgs, model: &TrainedModel, opts: &SampleOptions) -> Result<Report> {
    check_guidance(model, &a.model, &a.ctx)?;
    if !model.is_conditional() {
        return Err(unconditional(&a.model));
    }
    if !a.ctx.given() {
        return Err(missing_context(model, &a.model));
    }
    let ctx = query_context(model, &a.model, &a.ctx)?;
    // The whole batch is integrated at once, the context riding in the state.
    let arch = &model.config.architecture;
    let k = model.config.context.input_width();
    let stages = crate::budget::stages(opts.solver.name());
    crate::budget::integrate_need(opts.n, arch.dim + k, &arch.hidden, stages)
        .check(&crate::budget::limit()?)?;
    let prior = match &a.prior_task {
        Some(name) => {
            let t =
                flow_matching::sbi::task(name).map_err(|e| input(format!("--prior-task: {e}")))?;
            if t.theta_dim() != arch.dim {
                bail!(input(format!(
                    "--prior-task {name}: its θ has {} dimensions but {} samples {} (give the task the model was trained on)",
                    t.theta_dim(),
                    a.model.display(),
                    arch.dim
                )));
            }
            if ctx.len() > 1 {
                bail!(input(format!(
                    "--prior-task rejects samples, which would misalign the {} per-row contexts of --context-file: give one context row (or sample without --prior-task)",
                    ctx.len()
                )));
            }
            Some(t)
        }
        None => None,
    };
    let start = Instant::now();
    let (_, mut sol) = flow_matching::train::sample_conditional(model, opts, &ctx, a.ctx.guidance)?;
    let mut rejection = None;
    if let Some(t) = &prior {
        let (x, r) = reject_outside_prior(t.as_ref(), model, opts, &ctx, a.ctx.guidance, sol.x)?;
        sol.x = x;
        sol.stats.nfe += r.nfe;
        rejection = Some(r);
    }
    let secs = start.elapsed().as_secs_f64();
    write_points(&a.out, sol.x.view())?;
    if let Some(t) = &a.trajectory {
        write_points(t, crate::commands::trajectory_rows(&sol.trajectory).view())?;
    }
    println!(
        "{} conditional samples with {} in {:.3} s: {} function evaluations ({} steps accepted, {} rejected)",
        opts.n, opts.solver, secs, sol.stats.nfe, sol.stats.accepted, sol.stats.rejected
    );
    if let (Some(name), Some(r)) = (&a.prior_task, &rejection) {
        println!(
            "{} of {} draws inside the prior of {name} (acceptance {:.4}); the first {} kept",
            r.inside,
            r.drawn,
            r.inside as f64 / r.drawn as f64,
            opts.n
        );
    }
    println!("samples written to {}", a.out.display());
    let mut r = Report::new();
    if let Some(rej) = &rejection {
        r.insert("prior_task".into(), json!(a.prior_task));
        r.insert("drawn".into(), json!(rej.drawn));
        r.insert("inside".into(), json!(rej.inside));
        r.insert(
            "acceptance".into(),
            json!(rej.inside as f64 / rej.drawn as f64),
        );
    }
    r.insert("command".into(), json!("sample"));
    r.insert("n".into(), json!(opts.n));
    r.insert("solver".into(), json!(opts.solver.name()));
    r.insert("nfe".into(), json!(sol.stats.nfe));
    r.insert("accepted".into(), json!(sol.stats.accepted));
    r.insert("rejected".into(), json!(sol.stats.rejected));
    r.insert("seconds".into(), json!(secs));
    r.insert("guidance".into(), json!(a.ctx.guidance.unwrap_or(1.0)));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

/// `--prior-task` rejection draws at most this many times `--n` in all (so it gives up below
/// an acceptance of 1/`PRIOR_BUDGET`).
const PRIOR_BUDGET: usize = 100;
/// Mixed into the seed of the RNG that seeds `--prior-task`'s further rounds.
const PRIOR_STREAM: u64 = 0x7072_696f_725f_7461;

/// What `--prior-task` rejection drew.
struct Rejection {
    /// Draws made, the first round's `n` included.
    drawn: usize,
    /// Draws inside the prior's support (kept or not).
    inside: usize,
    /// Function evaluations of the further rounds.
    nfe: usize,
}

/// Keeps the rows of `first` (a draw of `opts.n`) inside the support of `task`'s prior and
/// draws further rounds until `opts.n` are kept, in order of drawing. A further round draws
/// the missing count divided by the acceptance so far, with a 20% margin, at least 64 and at
/// most `opts.n`; its seed comes from an RNG seeded by `opts.seed`, so the result depends only
/// on the seed. Fails once [`PRIOR_BUDGET`] · `n` draws have been made, instead of looping on a
/// model that puts its mass outside the prior.
fn reject_outside_prior(
    task: &dyn flow_matching::sbi::Task,
    model: &TrainedModel,
    opts: &SampleOptions,
    ctx: &Context,
    guidance: Option<f64>,
    first: Array2<f64>,
) -> Result<(Array2<f64>, Rejection)> {
    let n = opts.n;
    let d = first.ncols();
    let mut kept: Vec<f64> = Vec::with_capacity(n * d);
    let mut r = Rejection {
        drawn: 0,
        inside: 0,
        nfe: 0,
    };
    let accept = |x: &Array2<f64>, kept: &mut Vec<f64>, r: &mut Rejection| -> Result<()> {
        let lp = task
            .prior_log_prob(x.view())
            .map_err(|e| input(e.to_string()))?;
        r.drawn += x.nrows();
        for (row, l) in x.rows().into_iter().zip(lp.iter()) {
            if l.is_finite() {
                r.inside += 1;
                if kept.len() < n * d {
                    kept.extend(row.iter());
                }
            }
        }
        Ok(())
    };
    accept(&first, &mut kept, &mut r)?;
    let mut seeds = flow_matching::core::rng::seeded(opts.seed ^ PRIOR_STREAM);
    while kept.len() < n * d {
        if r.drawn >= PRIOR_BUDGET * n {
            bail!(input(format!(
                "--prior-task {}: only {} of {} draws fell inside the prior's support (acceptance {:.2e}, below 1/{PRIOR_BUDGET}): the posterior puts almost all its mass outside the prior; check that --context is an observation of this task and that the model was trained on it, or sample without --prior-task",
                task.name(),
                r.inside,
                r.drawn,
                r.inside as f64 / r.drawn as f64
            )));
        }
        let missing = n - kept.len() / d;
        let rate = r.inside as f64 / r.drawn as f64;
        let m = if r.inside == 0 {
            n
        } else {
            ((1.2 * missing as f64 / rate).ceil() as usize).clamp(64, n.max(64))
        };
        let mut o = opts.clone();
        o.n = m;
        o.seed = rand::Rng::random(&mut seeds);
        let (_, sol) = flow_matching::train::sample_conditional(model, &o, ctx, guidance)?;
        r.nfe += sol.stats.nfe;
        accept(&sol.x, &mut kept, &mut r)?;
    }
    let x = Array2::from_shape_vec((n, d), kept).expect("n rows of d");
    Ok((x, r))
}

/// `fm likelihood` of a conditional model: `log p(x | c)` (the outputs are already checked).
pub fn likelihood(
    a: &LikelihoodArgs,
    model: &TrainedModel,
    opts: &metrics::LikelihoodOptions,
) -> Result<Report> {
    check_guidance(model, &a.model, &a.ctx)?;
    if !model.is_conditional() {
        return Err(unconditional(&a.model));
    }
    let d = model.config.architecture.dim;
    if !model.config.source.starts_with("gaussian") {
        bail!(input(format!(
            "{}: likelihoods need a model trained from --source gaussian (this one's source is {})",
            a.model.display(),
            model.config.source
        )));
    }
    let Some(dpath) = crate::safety::spec_file(&a.data) else {
        bail!(input(format!(
            "likelihoods of a conditional model need --data to be a .csv/.npy file (x with its contexts), not the built-in `{}`",
            a.data
        )));
    };
    let data = read_points(&dpath).with_context(|| format!("--data {}", a.data))?;
    let n = count("n", a.n, 10_000_000)?;
    // Subsample x and its context columns together.
    let (x, ctx) = match columns_context(
        &data,
        &dpath,
        a.cols.context_cols.as_deref(),
        a.cols.label_col.as_deref(),
    )? {
        Some((x, c)) => {
            if a.ctx.given() {
                bail!(input(
                    "give the context either as columns of --data (--context-cols/--label-col) or with --context/--context-file/--label, not both"
                ));
            }
            let cm = match &c {
                Context::Values(v) => v.clone(),
                Context::Labels(l) => Array2::from_shape_fn((l.len(), 1), |(i, _)| l[i] as f64),
            };
            let both = ndarray::concatenate(Axis(1), &[x.view(), cm.view()]).expect("equal rows");
            let both = subsample(both, n, a.seed, LIKELIHOOD_STREAM);
            let (xs, cs) = (
                both.slice_axis(Axis(1), (..x.ncols()).into()).to_owned(),
                both.slice_axis(Axis(1), (x.ncols()..).into()).to_owned(),
            );
            let ctx = match c {
                Context::Values(_) => Context::Values(cs),
                Context::Labels(_) => {
                    Context::Labels(cs.column(0).iter().map(|&v| v as i64).collect())
                }
            };
            (xs, ctx)
        }
        None => {
            if !a.ctx.given() {
                return Err(missing_context(model, &a.model));
            }
            let ctx = query_context(model, &a.model, &a.ctx)?;
            if ctx.len() != 1 && ctx.len() != data.nrows() {
                bail!(input(format!(
                    "--context-file has {} rows but --data {} has {}: give one row, or one per data row",
                    ctx.len(),
                    dpath.display(),
                    data.nrows()
                )));
            }
            if ctx.len() == 1 || data.nrows() <= n {
                (subsample(data, n, a.seed, LIKELIHOOD_STREAM), ctx)
            } else {
                bail!(input(format!(
                    "--data {} has {} rows, more than --n {n}, with one context row each: raise --n to {} (rows and contexts are not subsampled apart)",
                    dpath.display(),
                    data.nrows(),
                    data.nrows()
                )));
            }
        }
    };
    if x.ncols() != d {
        bail!(input(format!(
            "--data {}: x has {} columns but the model's dimension is {d} (name the context columns with --context-cols/--label-col)",
            dpath.display(),
            x.ncols()
        )));
    }
    if let Context::Labels(_) = &ctx {
        if model.config.context.kind != ContextKind::Labels {
            bail!(input(format!(
                "{} takes continuous contexts: use --context-cols, not --label-col",
                a.model.display()
            )));
        }
    }
    let (state, log_det) = model.conditional_inputs(x.view(), &ctx)?;
    let field = model.conditional_field(!a.no_ema, a.ctx.guidance)?;
    let k = state.ncols() - d;
    let source = ContextSource::new(d, k);
    // Tolerances over the augmented state: scale so the (x, log p) columns decide.
    let mut opts = opts.clone();
    let f = ((d + 1) as f64 / (d + k + 1) as f64).sqrt();
    opts.rtol *= f;
    opts.atol *= f;
    let mut rng = flow_matching::core::rng::seeded(a.seed);
    let start = Instant::now();
    let ll = metrics::log_likelihood_with_source(&field, state.view(), &source, &opts, &mut rng)?;
    let secs = start.elapsed().as_secs_f64();
    let log_p = ll.log_p.mapv(|v| v - log_det);
    let mean = log_p.mean().unwrap_or(f64::NAN);
    let bpd = -mean / (d as f64 * std::f64::consts::LN_2);
    println!(
        "mean conditional log-likelihood {:.4} nats ({:.4} bits/dim) over {} points; {} function evaluations in {:.3} s",
        mean,
        bpd,
        x.nrows(),
        ll.stats.nfe,
        secs
    );
    if let Some(o) = &a.out {
        let col = log_p.clone().insert_axis(Axis(1));
        write_points(o, col.view())?;
        println!("per-point log-likelihoods written to {}", o.display());
    }
    let mut r = Report::new();
    r.insert("command".into(), json!("likelihood"));
    r.insert("mean_log_likelihood".into(), json!(mean));
    r.insert("bits_per_dim".into(), json!(bpd));
    r.insert("n".into(), json!(x.nrows()));
    r.insert("zscore_log_det".into(), json!(log_det));
    r.insert("nfe".into(), json!(ll.stats.nfe));
    r.insert("seconds".into(), json!(secs));
    Ok(r)
}
