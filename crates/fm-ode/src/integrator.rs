//! The driver: span, fixed or adaptive steps, recording, counters, checks, observer.

use crate::solver::velocity_chunked;
use crate::{OdeError, OdeSolver, Parallelism, StepContext, Tolerances};
use fm_core::VectorField;
use ndarray::{Array2, ArrayView2, Zip};

/// Counters of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Function evaluations: evaluations of the field on the whole batch (as torchdiffeq
    /// counts them), including the one or two of the initial step-size selection.
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps (adaptive runs only).
    pub rejected: usize,
}

/// The result of [`Integrator::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// The state at the end of the span, shape `(n, d)`.
    pub x: Array2<f64>,
    /// The end time `t1`.
    pub t: f64,
    /// Counters.
    pub stats: Stats,
    /// `(t, x(t))` at each time of [`Integrator::record_at`], in the order of integration.
    pub trajectory: Vec<(f64, Array2<f64>)>,
}

/// What the observer sees after each accepted step.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo<'a> {
    /// The time reached.
    pub t: f64,
    /// The step just taken (signed).
    pub h: f64,
    /// The state at `t`.
    pub x: ArrayView2<'a, f64>,
    /// Counters so far.
    pub stats: Stats,
    /// The error norm of the step (adaptive runs).
    pub error: Option<f64>,
}

/// Constants of the adaptive step-size controller.
///
/// After a step with error norm `err` (accept when `err ≤ 1`), the next step is
/// `h_new = h · clamp(safety · err^(−α) · err_prev^β, min_factor, max_factor)` with
/// `α = 1/(q+1) − 0.75 β`, `q = min(order, embedded order)` (4 for Dormand–Prince) and
/// `err_prev` the error of the previous accepted step (at least 1e-4). This is the PI
/// controller of Hairer & Wanner's DOPRI5 code (Hairer, Nørsett, Wanner, "Solving ODEs I",
/// IV.2; Gustafsson 1991) with their `β = 0.04`; `β = 0` gives the plain controller of
/// torchdiffeq. After a rejection the step shrinks by `max(min_factor, safety · err^(−1/(q+1)))`
/// and the next accepted step may not grow.
///
/// The defaults `safety = 0.9`, `min_factor = 0.2`, `max_factor = 10` are torchdiffeq's (and
/// Hairer's), so numbers of evaluations can be compared with torchdiffeq runs; the small PI
/// term damps the step-size oscillation on the smooth, mildly stiff fields that trained
/// networks produce, which saves rejections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepControl {
    /// Safety factor in `(0, 1]` (default 0.9).
    pub safety: f64,
    /// Smallest step ratio, in `(0, 1]` (default 0.2).
    pub min_factor: f64,
    /// Largest step ratio, `≥ 1` (default 10).
    pub max_factor: f64,
    /// The PI coefficient `β` in `[0, 0.2]` (default 0.04).
    pub beta: f64,
    /// The first step size; `None` selects it automatically (Hairer's algorithm, "Solving
    /// ODEs I" II.4: two evaluations, of which the first is reused as the first stage).
    pub initial_step: Option<f64>,
    /// An upper bound on `|h|`; `None` means the length of the span.
    pub max_step: Option<f64>,
}

impl Default for StepControl {
    fn default() -> Self {
        Self {
            safety: 0.9,
            min_factor: 0.2,
            max_factor: 10.0,
            beta: 0.04,
            initial_step: None,
            max_step: None,
        }
    }
}

impl StepControl {
    fn check(&self) -> Result<(), OdeError> {
        let bad = |name, value: f64, reason| {
            Err(OdeError::InvalidParameter {
                name,
                value: value.to_string(),
                reason,
            })
        };
        if !(self.safety > 0.0 && self.safety <= 1.0) {
            return bad(
                "safety",
                self.safety,
                "the safety factor must lie in (0, 1]",
            );
        }
        if !(self.min_factor > 0.0 && self.min_factor <= 1.0) {
            return bad("min_factor", self.min_factor, "must lie in (0, 1]");
        }
        if !(self.max_factor >= 1.0 && self.max_factor.is_finite()) {
            return bad(
                "max_factor",
                self.max_factor,
                "must be finite and at least 1",
            );
        }
        if !(0.0..=0.2).contains(&self.beta) {
            return bad("beta", self.beta, "must lie in [0, 0.2]");
        }
        if let Some(h) = self.initial_step
            && !(h.is_finite() && h > 0.0)
        {
            return bad("initial_step", h, "must be finite and positive");
        }
        if let Some(h) = self.max_step
            && (h.is_nan() || h <= 0.0)
        {
            return bad("max_step", h, "must be positive");
        }
        Ok(())
    }
}

type Observer<'a> = Box<dyn FnMut(&StepInfo<'_>) + 'a>;

/// Integrates `dx/dt = v(t, x)` for a batch of initial states with any [`OdeSolver`].
///
/// * **Span**: `.span(t0, t1)` (default `(0, 1)`); `t1 < t0` integrates backwards (the step
///   `h` is then negative and the field is evaluated at decreasing times).
/// * **Fixed steps**: `.steps(n)`: `n` equal steps `h = (t1 − t0)/n`, the times computed as
///   `t0 + k (t1 − t0)/n` (no drift; the last step ends exactly at `t1`).
/// * **Adaptive steps**: `.tolerances(rtol, atol)` (only for adaptive solvers; an adaptive
///   solver without either setting uses [`Tolerances::default`]). Step-size control as in
///   [`StepControl`], error norm as in [`crate::error_norm`].
/// * **Recording**: `.record_at(times)`: times inside the span (the ends included) where the
///   state is stored in [`Solution::trajectory`]. A solver with a continuous extension
///   ([`OdeSolver::has_dense_output`], e.g. [`Dopri5`](crate::Dopri5)) records by *dense
///   output*: the steps are exactly those of a run without recording (so the end point is
///   bit-identical) and each record time inside a step is interpolated (Dormand–Prince: order
///   4). Other solvers *hit the record times exactly*: a step is shortened to end on the next
///   record time; with fixed steps, a record time that is not on the uniform grid splits the
///   step containing it in two (one more accepted step).
/// * **Guards**: `.max_steps(n)` bounds accepted plus rejected steps (default 100 000);
///   a non-finite state stops the run with [`OdeError::NonFiniteState`] naming `t`; an
///   adaptive step size below `100 ε · max(|t|, |t1 − t0|)` stops it with
///   [`OdeError::StepSizeUnderflow`].
/// * **Observer**: `.observer(f)` calls `f(&StepInfo)` after every accepted step.
///
/// ```
/// use fm_ode::{Dopri5, Integrator, Rk4};
/// use fm_core::FnField;
/// use ndarray::array;
/// // Rotation: x(t) = (cos t, sin t) from (1, 0).
/// let field = FnField::new(2, |_t, x, mut out| {
///     for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) { o[0] = -r[1]; o[1] = r[0]; }
/// });
/// let x0 = array![[1.0, 0.0]];
/// let sol = Integrator::new(Dopri5::default())
///     .span(0.0, std::f64::consts::PI)
///     .tolerances(1e-8, 1e-8)
///     .record_at(vec![std::f64::consts::FRAC_PI_2])
///     .run(&field, x0.view())
///     .unwrap();
/// assert!((sol.x[[0, 0]] + 1.0).abs() < 1e-6);
/// assert!((sol.trajectory[0].1[[0, 1]] - 1.0).abs() < 1e-6);
/// // Backwards with fixed steps returns to the start.
/// let back = Integrator::new(Rk4::default())
///     .span(std::f64::consts::PI, 0.0)
///     .steps(100)
///     .run(&field, sol.x.view())
///     .unwrap();
/// assert!((back.x[[0, 0]] - 1.0).abs() < 1e-6);
/// assert_eq!(back.stats.nfe, 400);
/// ```
pub struct Integrator<'a> {
    solver: Box<dyn OdeSolver + 'a>,
    t0: f64,
    t1: f64,
    steps: Option<usize>,
    tolerances: Option<Tolerances>,
    record_at: Vec<f64>,
    max_steps: usize,
    control: StepControl,
    parallelism: Parallelism,
    observer: Option<Observer<'a>>,
}

impl<'a> Integrator<'a> {
    /// An integrator over `(0, 1)` driving `solver` (a value, a `Box<dyn OdeSolver>` or a
    /// `&mut` to a solver).
    pub fn new<S: OdeSolver + 'a>(solver: S) -> Self {
        Self {
            solver: Box::new(solver),
            t0: 0.0,
            t1: 1.0,
            steps: None,
            tolerances: None,
            record_at: Vec::new(),
            max_steps: 100_000,
            control: StepControl::default(),
            parallelism: Parallelism::default(),
            observer: None,
        }
    }

    /// Integrate from `t0` to `t1` (backwards if `t1 < t0`).
    pub fn span(mut self, t0: f64, t1: f64) -> Self {
        self.t0 = t0;
        self.t1 = t1;
        self
    }

    /// `n ≥ 1` fixed steps.
    pub fn steps(mut self, n: usize) -> Self {
        self.steps = Some(n);
        self
    }

    /// Adaptive steps with these tolerances (`rtol > 0`, `atol ≥ 0`).
    pub fn tolerances(mut self, rtol: f64, atol: f64) -> Self {
        self.tolerances = Some(Tolerances { rtol, atol });
        self
    }

    /// Times at which to store the state in [`Solution::trajectory`].
    pub fn record_at(mut self, times: Vec<f64>) -> Self {
        self.record_at = times;
        self
    }

    /// The largest number of steps (accepted plus rejected), `≥ 1`.
    pub fn max_steps(mut self, n: usize) -> Self {
        self.max_steps = n;
        self
    }

    /// Step-size controller constants.
    pub fn control(mut self, control: StepControl) -> Self {
        self.control = control;
        self
    }

    /// How the batch is split across threads.
    pub fn parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// A function called after every accepted step.
    pub fn observer<F: FnMut(&StepInfo<'_>) + 'a>(mut self, f: F) -> Self {
        self.observer = Some(Box::new(f));
        self
    }

    /// The solver's name.
    pub fn solver_name(&self) -> &str {
        self.solver.name()
    }

    /// Integrates `field` from `x_0` (shape `(n, d)`, `d = field.dim()`) over the span.
    ///
    /// Errors (never a panic) for an empty or non-finite `x_0`, a field whose dimension
    /// differs from the width of `x_0`, a span of length zero or non-finite ends, zero
    /// steps, bad tolerances, both or neither of steps and tolerances (neither is fine
    /// for an adaptive solver), tolerances for a solver without an error estimate, record
    /// times outside the span, and, while running, non-finite states, too many steps or a
    /// vanishing step size.
    pub fn run(
        &mut self,
        field: &dyn VectorField,
        x_0: ArrayView2<f64>,
    ) -> Result<Solution, OdeError> {
        let plan = self.check(field, x_0)?;
        self.solver.reset();
        let dense = self.solver.has_dense_output();
        let mut run = Run {
            solver: &mut *self.solver,
            field,
            parallelism: self.parallelism,
            observer: self.observer.as_mut(),
            max_steps: self.max_steps,
            stats: Stats::default(),
            x: x_0.to_owned(),
            x_new: Array2::zeros(x_0.raw_dim()),
            t: self.t0,
            trajectory: Vec::with_capacity(plan.record.len()),
            record: plan.record,
            next_record: 0,
            span: self.t1 - self.t0,
            dense,
        };
        run.record_if_due(self.t0);
        match plan.mode {
            Mode::Fixed(n) => run.fixed(self.t0, self.t1, n)?,
            Mode::Adaptive(tol) => run.adaptive(self.t1, tol, &self.control)?,
        }
        Ok(Solution {
            x: run.x,
            t: self.t1,
            stats: run.stats,
            trajectory: run.trajectory,
        })
    }

    fn check(&self, field: &dyn VectorField, x_0: ArrayView2<f64>) -> Result<Plan, OdeError> {
        let (t0, t1) = (self.t0, self.t1);
        if !(t0.is_finite() && t1.is_finite()) || t0 == t1 {
            return Err(OdeError::InvalidParameter {
                name: "span",
                value: format!("({t0}, {t1})"),
                reason: "the ends must be finite and distinct",
            });
        }
        fm_core::shape::check_nonempty("x_0", x_0)?;
        if field.dim() != x_0.ncols() {
            return Err(OdeError::ShapeMismatch {
                what: "x_0".into(),
                expected: format!("{} columns (the field's dimension)", field.dim()),
                found: format!("{:?}", x_0.dim()),
            });
        }
        if let Some((row, col, value)) = first_non_finite(x_0) {
            return Err(OdeError::NonFiniteState {
                t: t0,
                row,
                col,
                value,
            });
        }
        if self.max_steps == 0 {
            return Err(OdeError::InvalidParameter {
                name: "max_steps",
                value: "0".into(),
                reason: "at least one step must be allowed",
            });
        }
        self.parallelism.check()?;
        let mode = match (self.steps, self.tolerances) {
            (Some(_), Some(_)) => {
                return Err(OdeError::InvalidParameter {
                    name: "steps",
                    value: "both steps and tolerances".into(),
                    reason: "give either fixed steps or tolerances, not both",
                });
            }
            (Some(0), None) => {
                return Err(OdeError::InvalidParameter {
                    name: "steps",
                    value: "0".into(),
                    reason: "at least one step is needed",
                });
            }
            (Some(n), None) if n > self.max_steps => {
                // Fail before spending any evaluation.
                return Err(OdeError::MaxStepsExceeded {
                    t: t0,
                    max_steps: self.max_steps,
                });
            }
            (Some(n), None) => Mode::Fixed(n),
            (None, tol) => {
                if !self.solver.is_adaptive() {
                    return Err(OdeError::InvalidParameter {
                        name: "steps",
                        value: "none".into(),
                        reason: "a solver without an error estimate needs fixed steps: call .steps(n)",
                    });
                }
                let tol = tol.unwrap_or_default();
                tol.check()?;
                self.control.check()?;
                Mode::Adaptive(tol)
            }
        };
        let dir = (t1 - t0).signum();
        let eps = 1e-12 * (t1 - t0).abs();
        let mut record = Vec::with_capacity(self.record_at.len());
        for &r in &self.record_at {
            if !r.is_finite() || (r - t0) * dir < -eps || (r - t1) * dir > eps {
                return Err(OdeError::InvalidParameter {
                    name: "record_at",
                    value: r.to_string(),
                    reason: "record times must be finite and inside the span",
                });
            }
            record.push(r);
        }
        record.sort_by(|a, b| ((a - b) * dir).total_cmp(&0.0));
        record.dedup();
        Ok(Plan { mode, record })
    }
}

enum Mode {
    Fixed(usize),
    Adaptive(Tolerances),
}

struct Plan {
    mode: Mode,
    record: Vec<f64>,
}

fn first_non_finite(x: ArrayView2<f64>) -> Option<(usize, usize, f64)> {
    x.indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|((r, c), &v)| (r, c, v))
}

struct Run<'r, 'a> {
    solver: &'r mut (dyn OdeSolver + 'a),
    field: &'r dyn VectorField,
    parallelism: Parallelism,
    observer: Option<&'r mut Observer<'a>>,
    max_steps: usize,
    stats: Stats,
    x: Array2<f64>,
    x_new: Array2<f64>,
    t: f64,
    trajectory: Vec<(f64, Array2<f64>)>,
    record: Vec<f64>,
    next_record: usize,
    span: f64,
    /// Record by the solver's dense output instead of cutting steps at the record times.
    dense: bool,
}

impl Run<'_, '_> {
    /// Whether `t` is (within 1e-12 of the span) the next record time.
    fn at_record(&self, t: f64) -> bool {
        self.record
            .get(self.next_record)
            .is_some_and(|&r| (r - t).abs() <= 1e-12 * self.span.abs())
    }

    fn record_if_due(&mut self, t: f64) {
        while self.at_record(t) {
            let r = self.record[self.next_record];
            self.trajectory.push((r, self.x.clone()));
            self.next_record += 1;
        }
    }

    /// The next record time strictly after `t` in the direction of integration, if any, when
    /// steps must stop there (solvers without dense output).
    fn next_stop(&self) -> Option<f64> {
        if self.dense {
            return None;
        }
        self.record.get(self.next_record).copied()
    }

    /// Records, by the solver's dense output, every record time strictly inside the step just
    /// taken from `self.t` by `h` to `t_new` (times at `t_new` itself are recorded exactly,
    /// after the commit).
    fn record_dense(&mut self, t_new: f64, h: f64) {
        if !self.dense {
            return;
        }
        let dir = h.signum();
        let eps = 1e-12 * self.span.abs();
        while let Some(&r) = self.record.get(self.next_record) {
            if (t_new - r) * dir <= eps {
                break;
            }
            let theta = ((r - self.t) / h).clamp(0.0, 1.0);
            let mut out = Array2::zeros(self.x.raw_dim());
            if !self
                .solver
                .dense_output(theta, h, self.x.view(), out.view_mut())
            {
                // Cannot happen for a solver that says it has dense output; fall back to the
                // nearer end of the step rather than record nothing.
                out.assign(if theta < 0.5 { &self.x } else { &self.x_new });
            }
            self.trajectory.push((r, out));
            self.next_record += 1;
        }
    }

    fn guard_steps(&self) -> Result<(), OdeError> {
        if self.stats.accepted + self.stats.rejected >= self.max_steps {
            return Err(OdeError::MaxStepsExceeded {
                t: self.t,
                max_steps: self.max_steps,
            });
        }
        Ok(())
    }

    /// One attempted step from `(self.t, self.x)` by `h`; returns the error norm.
    fn attempt(&mut self, h: f64, tol: Option<Tolerances>) -> Result<Option<f64>, OdeError> {
        self.guard_steps()?;
        let ctx = StepContext {
            field: self.field,
            t: self.t,
            h,
            x: self.x.view(),
            tolerances: tol,
            parallelism: self.parallelism,
        };
        let out = self.solver.step(&ctx, self.x_new.view_mut())?;
        self.stats.nfe += out.nfe;
        Ok(out.error)
    }

    /// Commits the step to `t_new`.
    fn commit(&mut self, t_new: f64, h: f64, error: Option<f64>) -> Result<(), OdeError> {
        if let Some((row, col, value)) = first_non_finite(self.x_new.view()) {
            return Err(OdeError::NonFiniteState {
                t: t_new,
                row,
                col,
                value,
            });
        }
        self.record_dense(t_new, h);
        std::mem::swap(&mut self.x, &mut self.x_new);
        self.t = t_new;
        self.stats.accepted += 1;
        self.solver.accept();
        self.record_if_due(t_new);
        if let Some(obs) = self.observer.as_mut() {
            obs(&StepInfo {
                t: t_new,
                h,
                x: self.x.view(),
                stats: self.stats,
                error,
            });
        }
        Ok(())
    }

    fn fixed(&mut self, t0: f64, t1: f64, n: usize) -> Result<(), OdeError> {
        let span = t1 - t0;
        let dir = span.signum();
        let eps = 1e-12 * span.abs();
        for k in 0..n {
            let b = if k + 1 == n {
                t1
            } else {
                t0 + span * ((k + 1) as f64 / n as f64)
            };
            // Record times strictly inside (t, b) split the step.
            while let Some(r) = self.next_stop() {
                if (r - self.t) * dir > eps && (b - r) * dir > eps {
                    let h = r - self.t;
                    self.attempt(h, None)?;
                    self.commit(r, h, None)?;
                } else {
                    break;
                }
            }
            let h = b - self.t;
            self.attempt(h, None)?;
            self.commit(b, h, None)?;
        }
        Ok(())
    }

    fn adaptive(&mut self, t1: f64, tol: Tolerances, ctl: &StepControl) -> Result<(), OdeError> {
        let dir = self.span.signum();
        let h_max = ctl.max_step.unwrap_or(f64::INFINITY).min(self.span.abs());
        let q = self
            .solver
            .embedded_order()
            .unwrap_or(self.solver.order().saturating_sub(1))
            .min(self.solver.order())
            .max(1) as f64;
        let expo = 1.0 / (q + 1.0);
        let alpha = expo - 0.75 * ctl.beta;

        let mut h = match ctl.initial_step {
            Some(h0) => h0.min(h_max),
            None => self.initial_step(tol, expo, h_max)?,
        };
        let mut err_prev: f64 = 1e-4;
        let mut last_rejected = false;
        loop {
            let mut target = self.next_stop().unwrap_or(t1);
            if (target - t1).abs() <= 1e-12 * self.span.abs() {
                target = t1;
            }
            let remaining = (target - self.t).abs();
            let clipped = h * 1.01 >= remaining;
            let h_used = if clipped { remaining } else { h };
            let h_min = 100.0 * f64::EPSILON * self.t.abs().max(self.span.abs());
            if h_used < h_min {
                return Err(OdeError::StepSizeUnderflow {
                    t: self.t,
                    h: dir * h_used,
                });
            }
            let error = self.attempt(dir * h_used, Some(tol))?.ok_or_else(|| {
                OdeError::MissingErrorEstimate {
                    solver: self.solver.name().to_string(),
                }
            })?;
            if error.is_finite() && error <= 1.0 {
                let t_new = if clipped {
                    target
                } else {
                    self.t + dir * h_used
                };
                self.commit(t_new, dir * h_used, Some(error))?;
                if clipped && target == t1 {
                    return Ok(());
                }
                let mut fac = ctl.safety * error.max(1e-300).powf(-alpha) * err_prev.powf(ctl.beta);
                fac = fac.clamp(ctl.min_factor, ctl.max_factor);
                if last_rejected {
                    fac = fac.min(1.0);
                }
                let proposed = h_used * fac;
                h = if clipped { proposed.max(h) } else { proposed }.min(h_max);
                err_prev = error.max(1e-4);
                last_rejected = false;
            } else {
                self.stats.rejected += 1;
                let fac = if error.is_finite() {
                    (ctl.safety * error.powf(-expo)).clamp(ctl.min_factor, 1.0)
                } else {
                    ctl.min_factor
                };
                h = h_used * fac;
                last_rejected = true;
            }
        }
    }

    /// Hairer's automatic initial step ("Solving ODEs I", II.4): two evaluations of the field;
    /// the first is passed to the solver as its first stage.
    fn initial_step(&mut self, tol: Tolerances, expo: f64, h_max: f64) -> Result<f64, OdeError> {
        let dir = self.span.signum();
        let t0 = self.t;
        let x0 = self.x.view();
        let mut f0 = Array2::zeros(x0.raw_dim());
        velocity_chunked(self.field, t0, x0, f0.view_mut(), self.parallelism);
        self.stats.nfe += 1;
        if let Some((row, col, value)) = first_non_finite(f0.view()) {
            return Err(OdeError::NonFiniteVelocity {
                t: t0,
                row,
                col,
                value,
            });
        }
        let count = x0.len() as f64;
        let scale = x0.mapv(|v| tol.atol + tol.rtol * v.abs());
        let rms = |a: ArrayView2<f64>| -> f64 {
            let mut s = 0.0;
            Zip::from(a)
                .and(&scale)
                .for_each(|&v, &sc| s += (v / sc).powi(2));
            (s / count).sqrt()
        };
        let d0 = rms(x0);
        let d1 = rms(f0.view());
        let h0 = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6
        } else {
            0.01 * d0 / d1
        }
        .min(h_max);
        let x1 = &x0 + &(&f0 * (dir * h0));
        let mut f1 = Array2::zeros(x0.raw_dim());
        velocity_chunked(
            self.field,
            t0 + dir * h0,
            x1.view(),
            f1.view_mut(),
            self.parallelism,
        );
        self.stats.nfe += 1;
        let d2 = rms((&f1 - &f0).view()) / h0;
        let d12 = d1.max(d2);
        let h1 = if d12.is_nan() || d12 <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d12).powf(expo)
        };
        self.solver.seed_derivative(t0, x0, f0.view());
        Ok((100.0 * h0).min(h1).min(h_max))
    }
}
