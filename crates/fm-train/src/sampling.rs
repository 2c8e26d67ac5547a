//! Drawing samples from a trained model.

use crate::{TrainError, TrainedModel};
use fm_data::Dataset;
use fm_ode::{Integrator, Solution, SolverKind, Stats};
use ndarray::Array2;

/// How to sample a trained model: draw `n` source points with `seed`, integrate from t = 0 to
/// t = 1 with `solver` (fixed `steps`, default 100, or adaptive tolerances, default 1e-5).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Number of samples.
    pub n: usize,
    /// The solver (parse a name with [`SolverKind::parse`] or `str::parse`).
    pub solver: SolverKind,
    /// Fixed steps (fixed-step solvers); `None`: 100.
    pub steps: Option<usize>,
    /// Relative tolerance (adaptive solvers); `None`: 1e-5.
    pub rtol: Option<f64>,
    /// Absolute tolerance (adaptive solvers); `None`: 1e-5.
    pub atol: Option<f64>,
    /// Largest number of steps of an adaptive solver.
    pub max_steps: usize,
    /// Seed of the source draw.
    pub seed: u64,
    /// Record the state at this many evenly spaced times (0: no trajectory).
    pub record: usize,
    /// Use the EMA weights when the model has them.
    pub use_ema: bool,
}

impl Default for SampleOptions {
    /// 1,000 samples, Euler with 100 steps, seed 0, EMA weights.
    fn default() -> Self {
        Self {
            n: 1000,
            solver: SolverKind::Euler,
            steps: None,
            rtol: None,
            atol: None,
            max_steps: 100_000,
            seed: 0,
            record: 0,
            use_ema: true,
        }
    }
}

/// The largest sample count [`sample_chunked`] accepts (output of any size that fits on disk is
/// produced chunk by chunk).
pub const MAX_SAMPLES: usize = 10_000_000_000;

/// The chunk size of adaptive solvers in [`sample_chunked`]: each chunk of this many points is
/// integrated with its own step sizes (the error norm is taken over the chunk), so that the
/// samples depend on the seed, `n` and the solver settings only — never on memory limits.
pub const ADAPTIVE_CHUNK: usize = 1 << 16;

/// Samples `model`: returns the source draw `x_0` and the ODE [`Solution`] (samples in
/// `solution.x`, counters in `solution.stats`, the trajectory if asked for).
///
/// The source is the dataset the model was trained from (its spec is in the model file). All
/// `n` points are integrated as one batch; [`sample_chunked`] bounds the memory instead.
pub fn sample(
    model: &TrainedModel,
    opts: &SampleOptions,
) -> Result<(Array2<f64>, Solution), TrainError> {
    check_batch_n(opts.n)?;
    model.check_unconditional()?;
    let x_0 = draw_source(model, opts)?;
    let mut integ = integrator(opts)?;
    let field = model.field(opts.use_ema)?;
    let sol = integ.run(field.as_ref(), x_0.view())?;
    Ok((x_0, sol))
}

/// Samples `model` in chunks of at most `chunk` points, handing each chunk's samples to `sink`
/// in order; returns the counters, each the largest over the chunks (the work of one chunk).
///
/// With a fixed-step solver the samples are bit-identical to [`sample`]'s for any `chunk`
/// (every point is integrated on its own, and a Gaussian source is drawn point after point from
/// one RNG; other sources are drawn whole first). An adaptive solver integrates chunks of
/// [`ADAPTIVE_CHUNK`] points (`chunk` must be at least that, or `n`): its results equal
/// [`sample`]'s for `n ≤ ADAPTIVE_CHUNK`. A trajectory needs one chunk (`chunk ≥ n`).
///
/// ```
/// use fm_train::{ArchConfig, MatcherSpec, Objective, SampleOptions, Trainer, TrainParams};
/// let target = fm_data::Dataset::parse("moons", None).unwrap();
/// let source = fm_data::Dataset::parse("gaussian", Some(2)).unwrap();
/// let params = TrainParams::default().steps(5).batch(16).check().unwrap();
/// let m = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
/// let model = Trainer::new(source, target, m, Objective::Flow, ArchConfig::default(), params)
///     .unwrap().run(&mut |_| {}).unwrap().model;
/// let opts = SampleOptions { n: 100, ..Default::default() };
/// let mut rows = Vec::new();
/// fm_train::sample_chunked(&model, &opts, 30, &mut |x| {
///     rows.extend(x.iter().copied());
///     Ok(())
/// })
/// .unwrap();
/// let (_, whole) = fm_train::sample(&model, &opts).unwrap();
/// assert_eq!(rows, whole.x.iter().copied().collect::<Vec<_>>());
/// ```
pub fn sample_chunked(
    model: &TrainedModel,
    opts: &SampleOptions,
    chunk: usize,
    sink: &mut dyn FnMut(ndarray::ArrayView2<f64>) -> Result<(), TrainError>,
) -> Result<Stats, TrainError> {
    if opts.n == 0 || opts.n > MAX_SAMPLES {
        return Err(TrainError::param(
            "n",
            opts.n,
            format!("give between 1 and {MAX_SAMPLES} samples"),
        ));
    }
    model.check_unconditional()?;
    if chunk == 0 {
        return Err(TrainError::param(
            "chunk",
            0,
            "give at least 1 point per chunk",
        ));
    }
    let mut integ = integrator(opts)?;
    let adaptive = opts.solver.is_adaptive() && opts.steps.is_none();
    let chunk = if adaptive {
        if chunk < ADAPTIVE_CHUNK.min(opts.n) {
            return Err(TrainError::param(
                "chunk",
                chunk,
                format!(
                    "an adaptive solver integrates chunks of {ADAPTIVE_CHUNK} points; give at least that many"
                ),
            ));
        }
        ADAPTIVE_CHUNK
    } else {
        chunk
    };
    if opts.record >= 2 && chunk < opts.n {
        return Err(TrainError::param(
            "n",
            opts.n,
            format!(
                "a trajectory is recorded for at most {chunk} points at a time; sample fewer points with a trajectory"
            ),
        ));
    }
    let dim = model.config.architecture.dim;
    let source = Dataset::parse(&model.config.source, Some(dim))?;
    let mut rng = fm_core::rng::seeded(opts.seed);
    // A Gaussian source is drawn coordinate after coordinate, row after row, from one RNG, so
    // chunks drawn in turn are the rows of one whole draw; other sources are drawn whole.
    let whole = if model.config.source.trim().starts_with("gaussian") {
        None
    } else {
        Some(source.sample(opts.n, &mut rng)?)
    };
    let field = model.field(opts.use_ema)?;
    let mut stats = Stats::default();
    let mut start = 0;
    while start < opts.n {
        let len = chunk.min(opts.n - start);
        let x_0 = match &whole {
            Some(w) => w
                .slice_axis(ndarray::Axis(0), ndarray::Slice::from(start..start + len))
                .to_owned(),
            None => source.sample(len, &mut rng)?,
        };
        let sol = integ.run(field.as_ref(), x_0.view())?;
        stats.nfe = stats.nfe.max(sol.stats.nfe);
        stats.accepted = stats.accepted.max(sol.stats.accepted);
        stats.rejected = stats.rejected.max(sol.stats.rejected);
        sink(sol.x.view())?;
        start += len;
    }
    Ok(stats)
}

/// Checks the number of points sampled as one batch: 1 to 100,000,000.
pub(crate) fn check_batch_n(n: usize) -> Result<(), TrainError> {
    if n == 0 || n > 100_000_000 {
        return Err(TrainError::param(
            "n",
            n,
            "give between 1 and 100000000 samples",
        ));
    }
    Ok(())
}

/// The source draw `x_0` of a sample: `opts.n` points of the model's recorded source, from
/// the seed's stream 0.
pub(crate) fn draw_source(
    model: &TrainedModel,
    opts: &SampleOptions,
) -> Result<Array2<f64>, TrainError> {
    let dim = model.config.architecture.dim;
    let source = Dataset::parse(&model.config.source, Some(dim))?;
    let mut rng = fm_core::rng::seeded(opts.seed);
    Ok(source.sample(opts.n, &mut rng)?)
}

/// The integrator of `opts` over `t = 0 → 1` (checked).
pub(crate) fn integrator(opts: &SampleOptions) -> Result<Integrator<'static>, TrainError> {
    integrator_over(opts, (0.0, 1.0))
}

/// The integrator of the solver settings of `opts` over `t0 → t1` (backwards when `t1 < t0`,
/// e.g. `(1.0, 0.0)` runs data back to the source), with `opts.record` evenly spaced times
/// recorded from `t0` to `t1` when at least 2. Checks the tolerances (adaptive solvers without
/// `steps`), the fixed step count and `max_steps`; `n`, `seed` and `use_ema` are not read.
///
/// ```
/// use fm_train::{SampleOptions, integrator_over};
/// let opts = SampleOptions { steps: Some(10), ..Default::default() };
/// let mut integ = integrator_over(&opts, (1.0, 0.0)).unwrap();
/// let field = fm_core::FnField::new(1, |_t, x, mut v| v.assign(&x));
/// let sol = integ.run(&field, ndarray::array![[1.0]].view()).unwrap();
/// // dx/dt = x from t = 1 back to 0 by Euler (the default), h = −0.1: x ← 0.9 x, ten times
/// assert!((sol.x[[0, 0]] - 0.9f64.powi(10)).abs() < 1e-12);
/// let bad = SampleOptions { steps: Some(0), ..Default::default() };
/// assert!(integrator_over(&bad, (0.0, 1.0)).is_err());
/// ```
pub fn integrator_over(
    opts: &SampleOptions,
    (t0, t1): (f64, f64),
) -> Result<Integrator<'static>, TrainError> {
    let solver = opts.solver.build();
    let adaptive = opts.solver.is_adaptive();
    let mut integ = Integrator::new(solver).span(t0, t1);
    if adaptive && opts.steps.is_none() {
        let rtol = opts.rtol.unwrap_or(1e-5);
        let atol = opts.atol.unwrap_or(1e-5);
        if !(rtol > 0.0 && rtol < 1.0) {
            return Err(TrainError::param(
                "rtol",
                rtol,
                "give a relative tolerance in (0, 1)",
            ));
        }
        if !(0.0..1.0).contains(&atol) {
            return Err(TrainError::param(
                "atol",
                atol,
                "give an absolute tolerance in [0, 1)",
            ));
        }
        integ = integ.tolerances(rtol, atol);
    } else {
        if opts.rtol.is_some() || opts.atol.is_some() {
            return Err(TrainError::param(
                "rtol",
                opts.rtol.or(opts.atol).unwrap_or_default(),
                format!(
                    "tolerances need an adaptive solver (dopri5) and no --steps; `{}` takes --steps",
                    opts.solver
                ),
            ));
        }
        let steps = opts.steps.unwrap_or(100);
        if steps == 0 || steps > 10_000_000 {
            return Err(TrainError::param(
                "steps",
                steps,
                "give between 1 and 10000000 steps",
            ));
        }
        integ = integ.steps(steps);
    }
    if opts.max_steps == 0 {
        return Err(TrainError::param("max-steps", 0, "give at least 1"));
    }
    integ = integ.max_steps(opts.max_steps);
    if opts.record >= 2 {
        let k = (opts.record - 1) as f64;
        integ = integ.record_at(
            (0..opts.record)
                .map(|i| t0 + (t1 - t0) * i as f64 / k)
                .collect(),
        );
    }
    Ok(integ)
}
