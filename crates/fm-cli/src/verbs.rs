//! `fm encode`, `fm field`, `fm sample --x0/--source`, trajectories as `(T, n, d)` `.npy`
//! files, data paths that do not depend on the current folder, and the plain progress line
//! of `fm train` when stderr is not a terminal.

use crate::args::SolverArgs;
use crate::commands::{
    Report, count, in_pool, integration_failure, load_model, rows_to_trajectory, sample_options,
    trajectory_rows,
};
use crate::input;
use crate::safety::{self, Kind, check_outputs, out as output, spec_file};
use anyhow::{Context, Result, bail};
use clap::Args;
use flow_matching::data::{Dataset, read_points, write_points};
use flow_matching::ode::{Solution, solver_by_name};
use flow_matching::train::{Progress, SampleOptions, TrainedModel};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Array3, ArrayView2, Axis};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The extra flags of `fm sample`: start points and the source.
#[derive(Args, Debug, Clone, Default)]
pub struct SampleExtra {
    /// Integrate from these points (.csv or .npy, one point per row, as many columns as the
    /// model's dimension) instead of drawing the source; --n and --seed are then unused.
    #[arg(long, value_name = "FILE", conflicts_with = "source")]
    pub x0: Option<PathBuf>,
    /// Draw the source from this data set instead of the one recorded in the model (a built-in
    /// name or a .csv/.npy file of the model's dimension), e.g. when the training file has moved.
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
}

/// `fm encode`.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// The model file written by `fm train`.
    #[arg(long, value_name = "MODEL")]
    pub model: PathBuf,
    /// The data to encode: a .csv/.npy file (every row is encoded) or a built-in name (--n
    /// points drawn with --seed).
    #[arg(long, value_name = "SPEC")]
    pub data: String,
    /// Points drawn from a built-in data set (a file is encoded whole).
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub n: i64,
    /// Random seed of a built-in data set's draw.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Solver settings.
    #[command(flatten)]
    pub solver: SolverArgs,
    /// Output file of the codes x(0) (.csv or .npy), one row per data row.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also write the trajectory at 21 evenly spaced times from t = 1 to t = 0: a .npy file of
    /// shape (T, n, d), or CSV rows (t, x_1..x_d).
    #[arg(long, value_name = "FILE")]
    pub trajectory: Option<PathBuf>,
    /// Use the raw weights even if the model holds EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Worker threads, default: the available cores (results are bit-identical for any number).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
}

/// `fm field`.
#[derive(Args, Debug)]
pub struct FieldArgs {
    /// The model file written by `fm train`.
    #[arg(long, value_name = "MODEL")]
    pub model: PathBuf,
    /// The time t in [0, 1] at which the field is evaluated.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub t: f64,
    /// The points x (.csv or .npy, one per row, as many columns as the model's dimension).
    #[arg(long, value_name = "FILE")]
    pub points: PathBuf,
    /// Output file (.csv or .npy): the velocity v(t, x) of every row.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Use the raw weights even if the model holds EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Worker threads, default: the available cores (results are bit-identical for any number).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
}

/// The solver names for `--help`, from the one list the solvers are looked up in.
pub fn solver_help() -> String {
    let names = flow_matching::ode::SOLVER_NAMES;
    let adaptive: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| solver_by_name(n).is_ok_and(|s| s.is_adaptive()))
        .collect();
    format!(
        "ODE solver: {} ({} adaptive)",
        names.join(", "),
        adaptive.join(", ")
    )
}

/// A data spec with a file path made absolute and canonical (so a model records a path that
/// works from any folder); a built-in name, or a file that cannot be resolved (its reader
/// reports it), is returned as given.
pub fn resolve_spec(spec: &str) -> String {
    match spec_file(spec) {
        Some(p) => std::fs::canonicalize(&p)
            .ok()
            .and_then(|c| c.to_str().map(str::to_owned))
            .unwrap_or_else(|| spec.to_string()),
        None => spec.to_string(),
    }
}

/// Makes sure `model`'s source can be drawn: `given` (`--source` of `fm sample`) replaces the
/// recorded one (checked against the model's dimension); otherwise a recorded source file that
/// is gone is an input error naming it and the fix (for `fm sample` itself when `sampling`, else
/// `fm sample --source` followed by the command on the samples file).
pub fn use_source(
    model: &mut TrainedModel,
    path: &Path,
    given: Option<&str>,
    sampling: bool,
) -> Result<()> {
    let dim = model.config.architecture.dim;
    if let Some(spec) = given {
        let ds = Dataset::parse(spec, Some(dim)).with_context(|| {
            format!(
                "--source {spec} (the model {} has dimension {dim})",
                path.display()
            )
        })?;
        safety::check_dataset("--source", spec, &ds)?;
        model.config.source = resolve_spec(spec);
        return Ok(());
    }
    let recorded = model.config.source.clone();
    if let Some(file) = spec_file(&recorded)
        && std::fs::metadata(&file).is_err()
    {
        let hint = if file.is_relative() {
            " (a relative path, recorded by an older fm: it is looked up from the current folder)"
        } else {
            ""
        };
        let fix = if sampling {
            format!(
                "give the source points with --source FILE (a .csv/.npy file of dimension {dim}), \
                 or start from your own points with --x0 FILE"
            )
        } else {
            format!(
                "draw samples with `fm sample --model {} --source FILE --out samples.csv` \
                 (FILE: the source points, a .csv/.npy file of dimension {dim}) and give this \
                 command the samples file instead of --model",
                path.display()
            )
        };
        bail!(input(format!(
            "{}: the model was trained from --source {}, which does not exist any more{hint}; {fix}",
            path.display(),
            file.display()
        )));
    }
    Ok(())
}

/// The kind of a normalizing-flow model file (`coupling`, `residual`, `cnf-mle`), `None` for
/// anything else (a flow-matching model is left to its own loader).
pub fn flow_kind(model: &Path) -> Option<String> {
    if !std::fs::metadata(model).is_ok_and(|m| m.is_file()) {
        return None;
    }
    crate::flows::load(model).ok().flatten()?;
    flow_matching::nf::model_kind(model).ok().flatten()
}

/// Refuses a normalizing-flow model file for a verb that needs a flow-matching field.
fn refuse_flow(model: &Path, what: &str) -> Result<()> {
    if let Some(kind) = flow_kind(model) {
        bail!(input(format!(
            "{}: is a {kind} normalizing flow; {what} needs a flow-matching model (fm train --model fm), \
             whose velocity field is integrated; a normalizing flow samples with `fm sample` and \
             scores with `fm likelihood`",
            model.display()
        )));
    }
    Ok(())
}

/// Reads a points file as the input `flag` of a model of dimension `dim`.
fn read_model_points(flag: &str, file: &Path, dim: usize, model: &Path) -> Result<Array2<f64>> {
    let x = read_points(file).with_context(|| format!("{flag} {}", file.display()))?;
    if x.ncols() != dim {
        bail!(input(format!(
            "{flag} {}: has {} column(s) but the model {} has dimension {dim}: give one point per row with {dim} columns",
            file.display(),
            x.ncols(),
            model.display()
        )));
    }
    safety::check_magnitude(&format!("{flag} {}", file.display()), x.view())?;
    Ok(x)
}

/// Integrates `model`'s field from `x` over `t0 → t1` with the solver settings of `opts`
/// (`opts.record` evenly spaced times recorded from `t0` to `t1` when at least 2).
pub fn integrate(
    model: &TrainedModel,
    x: ArrayView2<f64>,
    opts: &SampleOptions,
    (t0, t1): (f64, f64),
) -> Result<Solution> {
    let mut integ = flow_matching::train::integrator_over(opts, (t0, t1))?;
    let field = model.field(opts.use_ema)?;
    integ
        .run(field.as_ref(), x)
        .map_err(|e| integration_failure(e, opts.solver.name(), Some(opts.max_steps)))
}

/// Whether a path ends in `.npy` (any case).
fn is_npy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Writes a trajectory: a `.npy` file of shape `(T, n, d)` (TorchCFM's layout, the times in the
/// order of integration), else CSV rows `(t, x_1..x_d)`; atomically either way.
pub fn write_trajectory(path: &Path, traj: &[(f64, Array2<f64>)]) -> Result<()> {
    if !is_npy(path) {
        return Ok(write_points(path, trajectory_rows(traj).view())?);
    }
    let (n, d) = traj.first().map(|(_, x)| x.dim()).unwrap_or((0, 0));
    let mut a = Array3::<f64>::zeros((traj.len(), n, d));
    for (k, (_, x)) in traj.iter().enumerate() {
        a.index_axis_mut(Axis(0), k).assign(x);
    }
    let target = safety::write_target(path)?;
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = || format!("{}: cannot write the trajectory", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(fail)?;
    {
        use ndarray_npy::WriteNpyExt;
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        a.write_npy(&mut w).with_context(fail)?;
        std::io::Write::flush(&mut w).with_context(fail)?;
    }
    tmp.as_file().sync_all().with_context(fail)?;
    #[cfg(unix)]
    {
        // Temporary files are created private (0600); a trajectory is an ordinary file.
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(&target)
        .map_err(|e| anyhow::Error::new(e.error))
        .with_context(fail)?;
    Ok(())
}

/// Reads a trajectory file: a `(T, n, d)` `.npy` file (times taken as evenly spaced from 0 to
/// 1), or rows `(t, x_1..x_d)` (.csv, or a 2-D .npy from older versions).
pub fn read_trajectory(path: &Path) -> Result<Vec<(f64, Array2<f64>)>> {
    if is_npy(path) {
        use flow_matching::core::ReadFileError;
        let bytes = flow_matching::core::read_regular_file(path, 1 << 36).map_err(|e| {
            let why = match e {
                ReadFileError::Io(io) => io.to_string(),
                ReadFileError::Directory => "is a directory".into(),
                ReadFileError::NotRegular => "is not a regular file".into(),
                ReadFileError::TooLarge { size, .. } => format!("is too large ({size} bytes)"),
            };
            input(format!(
                "{}: cannot read the trajectory: {why}",
                path.display()
            ))
        })?;
        if let Some(dims) = npy_shape(&bytes)
            && dims.len() == 3
        {
            let bad = |why: &str| input(format!("{}: {why}", path.display()));
            let values = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if values.is_none_or(|v| v.saturating_mul(4) > bytes.len()) {
                bail!(bad(
                    "truncated: the header declares more values than the file holds"
                ));
            }
            use ndarray_npy::ReadNpyExt;
            let a = match Array3::<f64>::read_npy(&bytes[..]) {
                Ok(a) => a,
                Err(_) => Array3::<f32>::read_npy(&bytes[..])
                    .map_err(|e| bad(&format!("not a float32/float64 (T, n, d) array: {e}")))?
                    .mapv(f64::from),
            };
            let (t, n, d) = a.dim();
            if t < 2 || n == 0 || d < 2 {
                bail!(bad(
                    "a trajectory array has shape (T, n, d) with T >= 2, n >= 1 and d >= 2"
                ));
            }
            if a.iter().any(|v| !v.is_finite()) {
                bail!(bad("holds a value that is not finite"));
            }
            return Ok(a
                .outer_iter()
                .enumerate()
                .map(|(k, x)| (k as f64 / (t - 1) as f64, x.to_owned()))
                .collect());
        }
    }
    rows_to_trajectory(&read_points(path)?)
}

/// The shape in a `.npy` header, if it parses.
fn npy_shape(bytes: &[u8]) -> Option<Vec<usize>> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return None;
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let dims = head.split("'shape': (").nth(1)?.split(')').next()?;
    dims.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().ok())
        .collect()
}

/// `fm sample --x0 FILE`: integrates the user's points from t = 0 to 1 (outputs checked).
pub fn sample_from(a: &crate::args::SampleArgs, x0: &Path, model: &TrainedModel) -> Result<Report> {
    if crate::flows::given_any(&["n", "seed"]) {
        bail!(input(
            "--n and --seed draw source points, and --x0 gives them: the points are the rows of --x0; drop --n/--seed"
        ));
    }
    let dim = model.config.architecture.dim;
    let x = read_model_points("--x0", x0, dim, &a.model)?;
    let record = if a.trajectory.is_some() { 21 } else { 0 };
    let opts = sample_options(&a.solver, x.nrows(), a.seed, record, !a.no_ema)?;
    let arch = &model.config.architecture;
    let mut need = crate::budget::integrate_need(
        x.nrows(),
        dim,
        &arch.hidden,
        crate::budget::stages(opts.solver.name()),
    );
    need.add(
        format!("the {} points of --x0", x.nrows()),
        "--x0",
        8.0 * x.len() as f64 * (1.0 + record as f64),
    );
    need.check(&crate::budget::limit()?)?;
    let start = Instant::now();
    let sol = integrate(model, x.view(), &opts, (0.0, 1.0))?;
    let secs = start.elapsed().as_secs_f64();
    write_points(&a.out, sol.x.view())?;
    if let Some(t) = &a.trajectory {
        write_trajectory(t, &sol.trajectory)?;
    }
    println!(
        "{} points of {} integrated from t = 0 to 1 with {} in {secs:.3} s: {} function evaluations",
        x.nrows(),
        x0.display(),
        opts.solver,
        sol.stats.nfe
    );
    println!("samples written to {}", a.out.display());
    let mut r = Report::new();
    r.insert("command".into(), json!("sample"));
    r.insert("x0".into(), json!(x0.display().to_string()));
    r.insert("n".into(), json!(x.nrows()));
    r.insert("solver".into(), json!(opts.solver.name()));
    r.insert("nfe".into(), json!(sol.stats.nfe));
    r.insert("seconds".into(), json!(secs));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

fn check_points_out(path: &Path, flag: &str) -> Result<()> {
    let ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("npy"));
    if !ok {
        bail!(input(format!(
            "{}: --{flag} must end in .csv or .npy",
            path.display()
        )));
    }
    crate::check_out_dir(path)
}

/// The flags a coupling flow's exact maps do not read (they integrate no ODE and draw nothing).
const EXACT_MAP_UNUSED: &[&str] = &[
    "solver",
    "steps",
    "rtol",
    "atol",
    "max_steps",
    "no_ema",
    "trajectory",
    "n",
    "seed",
];

/// `fm sample --x0` (the inverse, noise → data) and `fm encode` (the forward map, data → noise)
/// of a coupling flow: exact maps, no ODE; `x` holds the points of `flag`.
fn coupling_map(
    flow: &flow_matching::nf::CouplingFlow,
    x: ArrayView2<f64>,
    encode: bool,
    out: &Path,
) -> Result<Report> {
    let start = Instant::now();
    let y = if encode {
        flow.forward(x).map(|(z, _)| z)
    } else {
        flow.inverse(x)
    }
    .map_err(|e| {
        anyhow::anyhow!(
            "the coupling flow's {} map: {e}",
            if encode { "forward" } else { "inverse" }
        )
    })?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(((i, j), _)) = y.indexed_iter().find(|(_, v)| !v.is_finite()) {
        bail!(
            "the coupling flow maps row {i} to a non-finite value (column {j}): the points are far outside what it was trained on"
        );
    }
    write_points(out, y.view())?;
    let what = if encode { "encoded" } else { "decoded" };
    println!(
        "{} points {what} exactly by the coupling flow in {secs:.3} s, written to {}",
        x.nrows(),
        out.display()
    );
    let mut r = Report::new();
    r.insert(
        "command".into(),
        json!(if encode { "encode" } else { "sample" }),
    );
    r.insert("kind".into(), json!("coupling"));
    r.insert("n".into(), json!(x.nrows()));
    r.insert("seconds".into(), json!(secs));
    r.insert("out".into(), json!(out.display().to_string()));
    Ok(r)
}

/// Refuses the ODE and drawing flags for a coupling flow's exact maps.
fn refuse_for_exact_map(model: &Path) -> Result<()> {
    let given: Vec<String> = EXACT_MAP_UNUSED
        .iter()
        .filter(|id| crate::flows::given_any(&[id]))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !given.is_empty() {
        bail!(input(format!(
            "{}: is a coupling flow, which maps points exactly (no ODE, no trajectory): drop {}",
            model.display(),
            given.join(", ")
        )));
    }
    Ok(())
}

/// `fm sample --x0` on a coupling flow: its exact inverse (outputs already checked).
pub fn coupling_sample_from(
    a: &crate::args::SampleArgs,
    x0: &Path,
    flow: &flow_matching::nf::CouplingFlow,
) -> Result<Report> {
    refuse_for_exact_map(&a.model)?;
    let x = read_model_points("--x0", x0, flow.config().dim, &a.model)?;
    coupling_map(flow, x.view(), false, &a.out)
}

/// `fm encode`: data back to noise, t = 1 → 0.
pub fn encode(a: EncodeArgs) -> Result<Report> {
    in_pool(a.threads, || encode_in_pool(&a))
}

fn encode_in_pool(a: &EncodeArgs) -> Result<Report> {
    check_points_out(&a.out, "out")?;
    if let Some(t) = &a.trajectory {
        check_points_out(t, "trajectory")?;
    }
    let data_file = spec_file(&a.data);
    let mut outs = vec![output("--out", &a.out, Kind::Points)];
    outs.extend(
        a.trajectory
            .as_deref()
            .map(|t| output("--trajectory", t, Kind::Points)),
    );
    check_outputs(
        &[
            ("--model", Some(&a.model)),
            ("--data", data_file.as_deref()),
        ],
        &outs,
    )?;
    let mut written: Vec<&Path> = vec![&a.out];
    written.extend(a.trajectory.as_deref());
    crate::interrupt::install_quit(&written)?;
    // A coupling flow encodes by its exact forward map; other flows have nothing to integrate.
    let (coupling, model) = match crate::flows::load(&a.model)? {
        Some(crate::flows::Flow::Coupling(f)) => {
            refuse_for_exact_map(&a.model)?;
            (Some(f), None)
        }
        Some(_) => {
            refuse_flow(&a.model, "`fm encode`")?;
            (None, None)
        }
        None => (None, Some(load_model(&a.model)?)),
    };
    let dim = match (&coupling, &model) {
        (Some(f), _) => f.config().dim,
        (None, Some(m)) => m.config.architecture.dim,
        (None, None) => bail!(input(format!(
            "{}: `fm encode` needs a flow-matching model or a coupling flow",
            a.model.display()
        ))),
    };
    let x = match &data_file {
        Some(_) if coupling.is_none() && crate::flows::given_any(&["n", "seed"]) => {
            bail!(input(format!(
                "--n and --seed draw points from a built-in --data; the file {} is encoded whole: drop --n/--seed",
                a.data
            )))
        }
        Some(f) => read_model_points("--data", f, dim, &a.model)?,
        None => {
            let ds =
                Dataset::parse(&a.data, Some(dim)).with_context(|| format!("--data {}", a.data))?;
            safety::check_dataset("--data", &a.data, &ds)?;
            let n = count("n", a.n, 100_000_000)?;
            let mut rng = flow_matching::core::rng::seeded(a.seed);
            ds.sample(n, &mut rng)?
        }
    };
    let model = match (coupling, model) {
        (Some(f), _) => return coupling_map(&f, x.view(), true, &a.out),
        (None, Some(m)) => m,
        (None, None) => bail!(input(
            "`fm encode` needs a flow-matching model or a coupling flow"
        )),
    };
    let record = if a.trajectory.is_some() { 21 } else { 0 };
    let opts = sample_options(&a.solver, x.nrows(), a.seed, record, !a.no_ema)?;
    let arch = &model.config.architecture;
    crate::budget::integrate_need(
        x.nrows(),
        dim,
        &arch.hidden,
        crate::budget::stages(opts.solver.name()),
    )
    .check(&crate::budget::limit()?)?;
    let start = Instant::now();
    let sol = integrate(&model, x.view(), &opts, (1.0, 0.0))?;
    let secs = start.elapsed().as_secs_f64();
    write_points(&a.out, sol.x.view())?;
    if let Some(t) = &a.trajectory {
        write_trajectory(t, &sol.trajectory)?;
    }
    println!(
        "{} points encoded from t = 1 to 0 with {} in {secs:.3} s: {} function evaluations",
        x.nrows(),
        opts.solver,
        sol.stats.nfe
    );
    println!(
        "codes written to {}; `fm sample --model {} --x0 {}` decodes them",
        a.out.display(),
        a.model.display(),
        a.out.display()
    );
    let mut r = Report::new();
    r.insert("command".into(), json!("encode"));
    r.insert("n".into(), json!(x.nrows()));
    r.insert("solver".into(), json!(opts.solver.name()));
    r.insert("nfe".into(), json!(sol.stats.nfe));
    r.insert("seconds".into(), json!(secs));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

/// `fm field`: the velocity v(t, x) of every row.
pub fn field(a: FieldArgs) -> Result<Report> {
    in_pool(a.threads, || field_in_pool(&a))
}

fn field_in_pool(a: &FieldArgs) -> Result<Report> {
    check_points_out(&a.out, "out")?;
    check_outputs(
        &[("--model", Some(&a.model)), ("--points", Some(&a.points))],
        &[output("--out", &a.out, Kind::Points)],
    )?;
    if !(0.0..=1.0).contains(&a.t) {
        bail!(input(format!(
            "invalid --t {}: give a time between 0 and 1 (0 is the source, 1 the target)",
            a.t
        )));
    }
    refuse_flow(&a.model, "`fm field`")?;
    let model = load_model(&a.model)?;
    let dim = model.config.architecture.dim;
    let x = read_model_points("--points", &a.points, dim, &a.model)?;
    let arch = &model.config.architecture;
    crate::budget::integrate_need(x.nrows(), dim, &arch.hidden, 1)
        .check(&crate::budget::limit()?)?;
    let field = model.field(!a.no_ema)?;
    let mut v = Array2::zeros(x.dim());
    field.velocity(a.t, x.view(), v.view_mut());
    if let Some(((i, j), _)) = v.indexed_iter().find(|(_, v)| !v.is_finite()) {
        bail!(
            "the model's velocity at t = {} is not finite at row {i}, column {j} of --points: the model or the points are broken",
            a.t
        );
    }
    write_points(&a.out, v.view())?;
    println!(
        "v(t = {}, x) of {} points written to {}",
        a.t,
        x.nrows(),
        a.out.display()
    );
    let mut r = Report::new();
    r.insert("command".into(), json!("field"));
    r.insert("t".into(), json!(a.t));
    r.insert("n".into(), json!(x.nrows()));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

/// Default seconds between the plain progress lines (see [`TrainProgress`]).
pub const PROGRESS_EVERY_DEFAULT: f64 = 10.0;

/// The environment variable that sets the seconds between plain progress lines.
pub const PROGRESS_ENV: &str = "FM_PROGRESS_EVERY";

/// Seconds between plain progress lines: `--progress-every`, else `$FM_PROGRESS_EVERY`, else 10.
pub fn progress_every(flag: Option<f64>) -> Result<f64> {
    let (v, from) = match flag {
        Some(v) => (v, "--progress-every".to_string()),
        None => match std::env::var(PROGRESS_ENV) {
            Ok(s) => (
                s.trim().parse::<f64>().map_err(|_| {
                    input(format!(
                        "{PROGRESS_ENV}={s}: give the seconds between progress lines, e.g. 10"
                    ))
                })?,
                format!("{PROGRESS_ENV}={s}"),
            ),
            Err(_) => return Ok(PROGRESS_EVERY_DEFAULT),
        },
    };
    if !(v.is_finite() && v >= 0.0) {
        bail!(input(format!(
            "invalid {from}: give the seconds between progress lines, 0 or more (0: every step)"
        )));
    }
    Ok(v)
}

/// The progress of a training run: a bar on a terminal; when stderr is not a terminal (nohup,
/// CI, a log file) a plain line `step 1200/5000 loss 0.0123 12.3 s` every `every` seconds (and
/// at the last step), the loss being the mean over the steps since the previous line.
pub enum TrainProgress {
    /// Nothing (`--quiet`, `--json`).
    Silent,
    /// The indicatif bar.
    Bar {
        /// The bar.
        bar: ProgressBar,
        /// Whether the first step was seen.
        started: bool,
    },
    /// Plain lines.
    Lines {
        /// Seconds between lines.
        every: f64,
        /// When the last line was printed (training seconds).
        last: f64,
        /// Sum and count of the losses since the last line.
        sum: f64,
        /// Steps since the last line.
        count: usize,
        /// Start of the run.
        start: Instant,
    },
}

impl TrainProgress {
    /// The progress of a run of `steps` steps.
    pub fn new(steps: u64, quiet: bool, every: f64) -> Self {
        if quiet {
            return Self::Silent;
        }
        if !std::io::stderr().is_terminal() {
            return Self::Lines {
                every,
                last: 0.0,
                sum: 0.0,
                count: 0,
                start: Instant::now(),
            };
        }
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} steps  {per_sec}  loss {msg}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self::Bar {
            bar,
            started: false,
        }
    }

    /// Reports one step.
    pub fn step(&mut self, p: &Progress) {
        match self {
            Self::Silent => {}
            Self::Bar { bar, started } => {
                if !*started {
                    bar.set_position(p.step as u64 - 1);
                    bar.reset_eta();
                    *started = true;
                }
                bar.inc(1);
                if p.step % 25 == 0 || p.step == p.steps {
                    bar.set_message(format!("{:.4}", p.loss));
                }
            }
            Self::Lines {
                every,
                last,
                sum,
                count,
                start,
            } => {
                *sum += p.loss;
                *count += 1;
                let now = start.elapsed().as_secs_f64();
                if now - *last >= *every || p.step == p.steps {
                    eprintln!(
                        "step {}/{} loss {} {:.1} s",
                        p.step,
                        p.steps,
                        loss_text(*sum / *count as f64),
                        now
                    );
                    (*last, *sum, *count) = (now, 0.0, 0);
                }
            }
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Self::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

/// A loss with 4 significant digits: `0.01234`, or `1.234e-5` when small or large.
fn loss_text(l: f64) -> String {
    if l == 0.0 {
        return "0".into();
    }
    if (1e-2..1e5).contains(&l.abs()) {
        let digits = (3 - l.abs().log10().floor() as i32).max(0) as usize;
        format!("{l:.digits$}")
    } else {
        format!("{l:.3e}")
    }
}
