//! The solver trait users implement, the context of one step, tolerances and the error norm.

use crate::OdeError;
use fm_core::VectorField;
use ndarray::{ArrayView2, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;

/// Relative and absolute tolerances of an adaptive solver.
///
/// A step is accepted when the error norm (see [`error_norm`]) is at most 1, i.e. when the
/// estimated local error of each entry is, in the root-mean-square sense, at most
/// `atol + rtol · max(|x|, |x'|)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// The relative tolerance, `> 0`.
    pub rtol: f64,
    /// The absolute tolerance, `≥ 0`.
    pub atol: f64,
}

impl Tolerances {
    /// Checked tolerances: `rtol` finite and `> 0`, `atol` finite and `≥ 0`.
    pub fn new(rtol: f64, atol: f64) -> Result<Self, OdeError> {
        let t = Self { rtol, atol };
        t.check()?;
        Ok(t)
    }

    /// Checks the rules of [`Tolerances::new`].
    pub fn check(&self) -> Result<(), OdeError> {
        if !(self.rtol.is_finite() && self.rtol > 0.0) {
            return Err(OdeError::InvalidParameter {
                name: "rtol",
                value: self.rtol.to_string(),
                reason: "the relative tolerance must be finite and positive",
            });
        }
        if !(self.atol.is_finite() && self.atol >= 0.0) {
            return Err(OdeError::InvalidParameter {
                name: "atol",
                value: self.atol.to_string(),
                reason: "the absolute tolerance must be finite and non-negative",
            });
        }
        Ok(())
    }
}

impl Default for Tolerances {
    /// `rtol = atol = 1e-5`.
    fn default() -> Self {
        Self {
            rtol: 1e-5,
            atol: 1e-5,
        }
    }
}

/// How a batch is split for evaluation: rows are cut into fixed chunks of `chunk_rows`
/// (independent of the number of threads), and the chunks run on the rayon pool when
/// `threads` is true and there is more than one chunk.
///
/// Every row of a flow-matching ODE is an independent ODE, so the chunks are independent;
/// the only quantity coupling the batch is the adaptive error norm, which is reduced chunk by
/// chunk in a fixed order. Results are therefore bit-identical with and without threads (for
/// a field that evaluates each row independently of the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    /// Rows per chunk, `≥ 1` (default 512).
    pub chunk_rows: usize,
    /// Whether chunks run in parallel (default true).
    pub threads: bool,
}

impl Default for Parallelism {
    fn default() -> Self {
        Self {
            chunk_rows: 512,
            threads: true,
        }
    }
}

impl Parallelism {
    /// One thread, same chunks (bit-identical results to the parallel default).
    pub fn sequential() -> Self {
        Self {
            threads: false,
            ..Self::default()
        }
    }

    pub(crate) fn check(&self) -> Result<(), OdeError> {
        if self.chunk_rows == 0 {
            return Err(OdeError::InvalidParameter {
                name: "chunk_rows",
                value: "0".into(),
                reason: "a chunk needs at least one row",
            });
        }
        Ok(())
    }

    /// Whether a batch of `n` rows is processed on several threads.
    pub fn is_parallel(&self, n: usize) -> bool {
        self.threads && n > self.chunk_rows
    }
}

/// Everything a solver needs for one step from `(t, x)` to `t + h`.
///
/// `h` is negative when integrating backwards. The context is built by the
/// [`Integrator`](crate::Integrator), which checks shapes once before the loop.
pub struct StepContext<'a> {
    /// The vector field `v(t, x)`.
    pub field: &'a dyn VectorField,
    /// The current time.
    pub t: f64,
    /// The signed step size.
    pub h: f64,
    /// The current state, shape `(n, d)`.
    pub x: ArrayView2<'a, f64>,
    /// `Some` when the integrator runs adaptively: the solver should then return its error
    /// norm in [`StepOutcome::error`].
    pub tolerances: Option<Tolerances>,
    /// How to split the batch.
    pub parallelism: Parallelism,
}

impl StepContext<'_> {
    /// Evaluates `v(t, x)` into `out`, chunk by chunk (in parallel if configured). Counts as
    /// one function evaluation: report it in [`StepOutcome::nfe`].
    pub fn velocity(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut2<f64>) {
        velocity_chunked(self.field, t, x, out, self.parallelism);
    }
}

/// Evaluates `field` on `x` chunk by chunk according to `par`.
pub(crate) fn velocity_chunked(
    field: &dyn VectorField,
    t: f64,
    x: ArrayView2<f64>,
    mut out: ArrayViewMut2<f64>,
    par: Parallelism,
) {
    let n = x.nrows();
    if !par.is_parallel(n) {
        field.velocity(t, x, out);
        return;
    }
    let chunks: Vec<_> = x
        .axis_chunks_iter(Axis(0), par.chunk_rows)
        .zip(out.axis_chunks_iter_mut(Axis(0), par.chunk_rows))
        .collect();
    chunks
        .into_par_iter()
        .for_each(|(xc, oc)| field.velocity(t, xc, oc));
}

/// What a step produced besides the new state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepOutcome {
    /// Function evaluations used (one evaluation = the field on the whole batch).
    pub nfe: usize,
    /// The scaled error norm of the step ([`error_norm`]) when the context asked for one
    /// and the solver can estimate it; `≤ 1` means acceptable.
    pub error: Option<f64>,
}

/// A one-step method for `dx/dt = v(t, x)` on a batch of states.
///
/// The [`Integrator`](crate::Integrator) owns the loop (span, step sizes, recording, counters,
/// error checks); a solver only advances the state by one step. The trait is object safe:
/// [`solver_by_name`](crate::solver_by_name) returns a `Box<dyn OdeSolver>`.
///
/// Most methods need no code at all: write a [`ButcherTableau`](crate::ButcherTableau) and
/// run it with [`ExplicitRk`](crate::ExplicitRk). Implement the trait directly for other
/// one-step methods.
///
/// # Example: the explicit midpoint rule by hand
/// ```
/// use fm_ode::{Integrator, OdeError, OdeSolver, StepContext, StepOutcome};
/// use ndarray::{Array2, ArrayViewMut2};
///
/// #[derive(Default)]
/// struct MyMidpoint;
///
/// impl OdeSolver for MyMidpoint {
///     fn name(&self) -> &str { "my-midpoint" }
///     fn order(&self) -> u32 { 2 }
///     fn step(&mut self, ctx: &StepContext<'_>, mut x_new: ArrayViewMut2<'_, f64>)
///         -> Result<StepOutcome, OdeError>
///     {
///         let mut k = Array2::zeros(ctx.x.raw_dim());
///         ctx.velocity(ctx.t, ctx.x, k.view_mut());
///         let x_half = &ctx.x + &(&k * (0.5 * ctx.h));
///         ctx.velocity(ctx.t + 0.5 * ctx.h, x_half.view(), k.view_mut());
///         x_new.assign(&(&ctx.x + &(&k * ctx.h)));
///         Ok(StepOutcome { nfe: 2, error: None })
///     }
/// }
///
/// // dx/dt = -x from x = 1 over [0, 1]: exp(-1).
/// let field = fm_core::FnField::new(1, |_t, x, mut out| out.assign(&x.mapv(|v| -v)));
/// let sol = Integrator::new(MyMidpoint).steps(100)
///     .run(&field, ndarray::array![[1.0]].view()).unwrap();
/// assert!((sol.x[[0, 0]] - (-1.0f64).exp()).abs() < 1e-5);
/// assert_eq!(sol.stats.nfe, 200);
/// // The conformance kit measures the order and checks round trips.
/// fm_ode::testing::check_solver(&mut MyMidpoint, 2, &Default::default()).unwrap();
/// ```
pub trait OdeSolver: Send {
    /// A short name, such as `"rk4"`.
    fn name(&self) -> &str;

    /// The classical order `p` of the method (global error `O(h^p)`).
    fn order(&self) -> u32;

    /// Whether the solver estimates its local error, so that the integrator can choose the
    /// step size from tolerances.
    fn is_adaptive(&self) -> bool {
        false
    }

    /// The order of the embedded (error-estimating) solution of an adaptive solver; the step
    /// size controller uses `min(order, embedded_order) + 1` as the error exponent. `None`
    /// means `order - 1`.
    fn embedded_order(&self) -> Option<u32> {
        None
    }

    /// Advances `ctx.x` at `ctx.t` by `ctx.h` and writes the result into `x_new` (same shape).
    fn step(
        &mut self,
        ctx: &StepContext<'_>,
        x_new: ArrayViewMut2<'_, f64>,
    ) -> Result<StepOutcome, OdeError>;

    /// Forgets cached values; called by the integrator before each run.
    fn reset(&mut self) {}

    /// Called by the integrator when the last step was accepted (a solver with the
    /// first-same-as-last property keeps its last stage; a rejected step is simply followed by
    /// another `step` from the same state).
    fn accept(&mut self) {}

    /// The integrator evaluated `dx/dt = v(t, x)` at the start (for the initial step size);
    /// a solver may keep it to save one evaluation.
    fn seed_derivative(&mut self, _t: f64, _x: ArrayView2<'_, f64>, _dxdt: ArrayView2<'_, f64>) {}

    /// Whether the solver has a continuous extension ([`OdeSolver::dense_output`]). The
    /// integrator then records trajectories by interpolation instead of cutting steps at the
    /// record times, so the steps (and the end point) do not depend on what is recorded.
    fn has_dense_output(&self) -> bool {
        false
    }

    /// The continuous extension of the step just taken from `x` by `h`: writes the state at
    /// `t + θ h` (`0 ≤ θ ≤ 1`) into `out` and returns `true`, or returns `false` when the solver
    /// has none. The integrator calls it after a successful [`OdeSolver::step`] and before
    /// [`OdeSolver::accept`].
    fn dense_output(
        &self,
        _theta: f64,
        _h: f64,
        _x: ArrayView2<'_, f64>,
        _out: ArrayViewMut2<'_, f64>,
    ) -> bool {
        false
    }
}

impl<S: OdeSolver + ?Sized> OdeSolver for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn order(&self) -> u32 {
        (**self).order()
    }
    fn is_adaptive(&self) -> bool {
        (**self).is_adaptive()
    }
    fn embedded_order(&self) -> Option<u32> {
        (**self).embedded_order()
    }
    fn step(
        &mut self,
        ctx: &StepContext<'_>,
        x_new: ArrayViewMut2<'_, f64>,
    ) -> Result<StepOutcome, OdeError> {
        (**self).step(ctx, x_new)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn accept(&mut self) {
        (**self).accept()
    }
    fn seed_derivative(&mut self, t: f64, x: ArrayView2<'_, f64>, dxdt: ArrayView2<'_, f64>) {
        (**self).seed_derivative(t, x, dxdt)
    }
    fn has_dense_output(&self) -> bool {
        (**self).has_dense_output()
    }
    fn dense_output(
        &self,
        theta: f64,
        h: f64,
        x: ArrayView2<'_, f64>,
        out: ArrayViewMut2<'_, f64>,
    ) -> bool {
        (**self).dense_output(theta, h, x, out)
    }
}

impl<S: OdeSolver + ?Sized> OdeSolver for &mut S {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn order(&self) -> u32 {
        (**self).order()
    }
    fn is_adaptive(&self) -> bool {
        (**self).is_adaptive()
    }
    fn embedded_order(&self) -> Option<u32> {
        (**self).embedded_order()
    }
    fn step(
        &mut self,
        ctx: &StepContext<'_>,
        x_new: ArrayViewMut2<'_, f64>,
    ) -> Result<StepOutcome, OdeError> {
        (**self).step(ctx, x_new)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn accept(&mut self) {
        (**self).accept()
    }
    fn seed_derivative(&mut self, t: f64, x: ArrayView2<'_, f64>, dxdt: ArrayView2<'_, f64>) {
        (**self).seed_derivative(t, x, dxdt)
    }
    fn has_dense_output(&self) -> bool {
        (**self).has_dense_output()
    }
    fn dense_output(
        &self,
        theta: f64,
        h: f64,
        x: ArrayView2<'_, f64>,
        out: ArrayViewMut2<'_, f64>,
    ) -> bool {
        (**self).dense_output(theta, h, x, out)
    }
}

/// Sum over a chunk of `(err_ij / (atol + rtol · max(|x_ij|, |x'_ij|)))²`.
pub(crate) fn scaled_sum_squares(
    err: ArrayView2<f64>,
    x: ArrayView2<f64>,
    x_new: ArrayView2<f64>,
    tol: Tolerances,
) -> f64 {
    let mut sum = 0.0;
    Zip::from(err).and(x).and(x_new).for_each(|&e, &a, &b| {
        let r = e / (tol.atol + tol.rtol * a.abs().max(b.abs()));
        sum += r * r;
    });
    sum
}

/// The error norm of adaptive steps: the root mean square over **all** entries of the batch of
/// the scaled error,
///
/// ```text
/// ‖e‖ = sqrt( 1/(n d) Σ_ij ( e_ij / (atol + rtol · max(|x_ij|, |x'_ij|)) )² )
/// ```
///
/// (Hairer, Nørsett, Wanner, "Solving ODEs I", II.4, eq. 4.11; the same norm as torchdiffeq's
/// `_rms_norm` over the whole tensor). A step is accepted when `‖e‖ ≤ 1`. The squares are
/// summed per chunk of `chunk_rows` rows, and the chunk sums are added in chunk order, so
/// the value does not depend on the number of threads.
///
/// Why RMS over the whole batch: flow-matching batches are many independent samples of the
/// same ODE; one step size for the whole batch keeps the field evaluations batched, and the
/// RMS norm makes the number of steps independent of the batch size and comparable with
/// torchdiffeq's figures. A max norm would let the single worst sample dictate the step size.
pub fn error_norm(
    err: ArrayView2<f64>,
    x: ArrayView2<f64>,
    x_new: ArrayView2<f64>,
    tol: Tolerances,
    chunk_rows: usize,
) -> f64 {
    let chunk_rows = chunk_rows.max(1);
    let count = err.len().max(1) as f64;
    let sum: f64 = err
        .axis_chunks_iter(Axis(0), chunk_rows)
        .zip(x.axis_chunks_iter(Axis(0), chunk_rows))
        .zip(x_new.axis_chunks_iter(Axis(0), chunk_rows))
        .map(|((e, a), b)| scaled_sum_squares(e, a, b, tol))
        .sum();
    (sum / count).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn tolerances_are_checked() {
        assert!(Tolerances::new(1e-3, 0.0).is_ok());
        for (r, a) in [
            (0.0, 1e-3),
            (-1.0, 1e-3),
            (f64::NAN, 1e-3),
            (1e-3, -1.0),
            (1e-3, f64::INFINITY),
        ] {
            assert!(matches!(
                Tolerances::new(r, a),
                Err(OdeError::InvalidParameter { .. })
            ));
        }
    }

    #[test]
    fn error_norm_is_rms_of_scaled_errors() {
        let tol = Tolerances {
            rtol: 0.1,
            atol: 1.0,
        };
        let x = array![[0.0, 10.0]];
        let x_new = array![[-20.0, 0.0]];
        let e = array![[3.0, 4.0]];
        // scales: 1 + 0.1·20 = 3 and 1 + 0.1·10 = 2 → entries 1 and 2 → sqrt((1 + 4)/2).
        let norm = error_norm(e.view(), x.view(), x_new.view(), tol, 1);
        assert!((norm - (2.5f64).sqrt()).abs() < 1e-15);
    }
}
