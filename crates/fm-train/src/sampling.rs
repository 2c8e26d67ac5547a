//! Drawing samples from a trained model.

use crate::{TrainError, TrainedModel};
use fm_data::Dataset;
use fm_ode::{Integrator, Solution, solver_by_name};
use ndarray::Array2;

/// How to sample a trained model: draw `n` source points with `seed`, integrate from t = 0 to
/// t = 1 with `solver` (fixed `steps`, default 100, or adaptive tolerances, default 1e-5).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Number of samples.
    pub n: usize,
    /// Solver name (`euler`, `midpoint`, `heun`, `rk4`, `dopri5`, ...).
    pub solver: String,
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
            solver: "euler".into(),
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

/// Samples `model`: returns the source draw `x_0` and the ODE [`Solution`] (samples in
/// `solution.x`, counters in `solution.stats`, the trajectory if asked for).
///
/// The source is the dataset the model was trained from (its spec is in the model file).
pub fn sample(
    model: &TrainedModel,
    opts: &SampleOptions,
) -> Result<(Array2<f64>, Solution), TrainError> {
    if opts.n == 0 || opts.n > 100_000_000 {
        return Err(TrainError::param(
            "n",
            opts.n,
            "give between 1 and 100000000 samples",
        ));
    }
    let dim = model.config.architecture.dim;
    let source = Dataset::parse(&model.config.source, Some(dim))?;
    let mut rng = fm_core::rng::seeded(opts.seed);
    let x_0 = source.sample(opts.n, &mut rng)?;
    let solver = solver_by_name(&opts.solver)?;
    let adaptive = solver.is_adaptive();
    let mut integ = Integrator::new(solver).span(0.0, 1.0);
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
        let k = opts.record - 1;
        integ = integ.record_at((0..=k).map(|i| i as f64 / k as f64).collect());
    }
    let field = model.field(opts.use_ema)?;
    let sol = integ.run(field.as_ref(), x_0.view())?;
    Ok((x_0, sol))
}
