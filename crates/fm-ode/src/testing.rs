//! The conformance kit: one call checks a solver — built in or a user's — against problems
//! with known solutions.
//!
//! [`check_solver`] runs these checks and fails with [`OdeError::ConformanceFailed`] listing
//! every failed one:
//!
//! 1. **order** — the empirical order of convergence of fixed-step runs, forward over
//!    `[0, 1.5]` and backward from the exact end state over `[1.5, 0]`, on three
//!    non-autonomous problems with closed-form solutions: `dx/dt = −x + t`; a rotation with
//!    time-dependent speed `dx/dt = (1 + t) J x`; and the non-normal time-dependent linear
//!    field `dx/dt = [[−1, t], [0, −2]] x`. From the maximum errors `e_N` at `N, 2N, 4N`
//!    steps the order is `log2(e_2N / e_4N)`; it must lie in
//!    `[p − order_slack, p + order_slack + 0.5]` for the expected order `p`, and the solver's
//!    [`OdeSolver::order`] must equal `p`.
//! 2. **round trip** — forward then backward with the same number of steps returns to the
//!    start, with an error that vanishes at least at the expected order as the steps halve.
//! 3. **batch independence** — a batch gives the same rows as solving each row alone
//!    (to 1e-12 relative), and a 1000-row batch gives bit-identical results with threads
//!    and without.
//! 4. **reuse** — running again after a run on a batch of another shape gives bit-identical
//!    results (no stale cache).
//! 5. **tolerance** (adaptive solvers only) — with `rtol = atol = τ` for
//!    `τ ∈ {1e-3, 1e-6, 1e-9}` the global error at the end is at most
//!    `tolerance_factor · τ` on the rotation and non-normal problems, the number of
//!    evaluations grows as `τ` shrinks, and recording at interior times hits them exactly
//!    with the same accuracy.
//!
//! The kit needs no oracle library at run time; the crate's own tests add a comparison with
//! the independent `ode_solvers` crate.

use crate::{Integrator, OdeError, OdeSolver, Parallelism};
use fm_core::{FnField, VectorField};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, Slice, array};
use std::fmt;

/// Thresholds of the kit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KitOptions {
    /// Allowed deviation of the measured order below the expected one (default 0.35).
    pub order_slack: f64,
    /// Adaptive runs must reach a global error `≤ tolerance_factor · τ` (default 20).
    pub tolerance_factor: f64,
}

impl Default for KitOptions {
    fn default() -> Self {
        Self {
            order_slack: 0.35,
            tolerance_factor: 20.0,
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What was checked, e.g. `"order forward on rotation"`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Measured values.
    pub detail: String,
}

/// Every check of a [`check_solver`] run.
#[derive(Debug, Clone, PartialEq)]
pub struct KitReport {
    /// The solver's name.
    pub solver: String,
    /// The checks in the order they ran.
    pub checks: Vec<Check>,
}

impl KitReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

impl fmt::Display for KitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance of {}:", self.solver)?;
        for c in &self.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            writeln!(f, "  {mark} {}: {}", c.name, c.detail)?;
        }
        Ok(())
    }
}

type FieldFn = fn(f64, ArrayView2<f64>, ArrayViewMut2<f64>);
type ExactFn = fn(f64, &[f64]) -> Vec<f64>;

/// A test problem with a closed-form solution `x(t)` from `x(0) = x0`.
struct Problem {
    name: &'static str,
    dim: usize,
    field: FieldFn,
    exact: ExactFn,
    x0: Array2<f64>,
}

impl Problem {
    fn field(&self) -> FnField<FieldFn> {
        FnField::new(self.dim, self.field)
    }
    fn exact_at(&self, t: f64, x0: ArrayView2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros(x0.raw_dim());
        for (mut o, r) in out.rows_mut().into_iter().zip(x0.rows()) {
            let v = (self.exact)(t, &r.to_vec());
            for (a, b) in o.iter_mut().zip(v) {
                *a = b;
            }
        }
        out
    }
}

fn forced_decay(t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
    out.assign(&x.mapv(|v| -v + t));
}
fn forced_decay_exact(t: f64, x0: &[f64]) -> Vec<f64> {
    vec![t - 1.0 + (x0[0] + 1.0) * (-t).exp()]
}
fn rotation(t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
    let w = 1.0 + t;
    for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
        o[0] = -w * r[1];
        o[1] = w * r[0];
    }
}
fn rotation_exact(t: f64, x0: &[f64]) -> Vec<f64> {
    let th = t + 0.5 * t * t;
    let (s, c) = th.sin_cos();
    vec![c * x0[0] - s * x0[1], s * x0[0] + c * x0[1]]
}
fn non_normal(t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
    for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
        o[0] = -r[0] + t * r[1];
        o[1] = -2.0 * r[1];
    }
}
fn non_normal_exact(t: f64, x0: &[f64]) -> Vec<f64> {
    let (p, q) = (x0[0], x0[1]);
    let e = (-t).exp();
    vec![e * (p + q * (1.0 - (1.0 + t) * e)), q * e * e]
}

fn problems() -> Vec<Problem> {
    vec![
        Problem {
            name: "dx/dt = -x + t",
            dim: 1,
            field: forced_decay,
            exact: forced_decay_exact,
            x0: array![[-1.5], [0.3], [2.0]],
        },
        Problem {
            name: "rotation (1 + t) J x",
            dim: 2,
            field: rotation,
            exact: rotation_exact,
            x0: array![[1.0, 0.0], [0.3, -2.0], [-1.0, 0.5]],
        },
        Problem {
            name: "linear [[-1, t], [0, -2]] x",
            dim: 2,
            field: non_normal,
            exact: non_normal_exact,
            x0: array![[1.0, 1.0], [-0.5, 2.0], [2.0, -1.0]],
        },
    ]
}

const T_END: f64 = 1.5;

fn max_abs_diff(a: ArrayView2<f64>, b: ArrayView2<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, v| {
            if v.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        })
}

fn run_fixed(
    solver: &mut dyn OdeSolver,
    field: &dyn VectorField,
    x0: ArrayView2<f64>,
    t0: f64,
    t1: f64,
    n: usize,
    par: Parallelism,
) -> Result<Array2<f64>, OdeError> {
    Ok(Integrator::new(&mut *solver)
        .span(t0, t1)
        .steps(n)
        .parallelism(par)
        .run(field, x0)?
        .x)
}

/// Runs the conformance kit on `solver`, which claims global order `expected_order`.
///
/// Returns the report when every check passes, otherwise
/// [`OdeError::ConformanceFailed`] listing the failed checks with their measured values.
///
/// ```
/// use fm_ode::{testing::check_solver, Heun};
/// let report = check_solver(&mut Heun::default(), 2, &Default::default()).unwrap();
/// assert!(report.passed());
/// ```
pub fn check_solver(
    solver: &mut dyn OdeSolver,
    expected_order: u32,
    options: &KitOptions,
) -> Result<KitReport, OdeError> {
    let mut checks = Vec::new();
    let mut push = |name: String, passed: bool, detail: String| {
        checks.push(Check {
            name,
            passed,
            detail,
        })
    };
    let p = expected_order;
    push(
        "claimed order".into(),
        solver.order() == p,
        format!("solver.order() = {}, expected {p}", solver.order()),
    );
    let seq = Parallelism::sequential();
    let base = match p {
        0..=3 => 1usize << (6 - p.max(1)),
        4 => 4,
        _ => 8,
    };
    let counts = [base, 2 * base, 4 * base];
    let lo = p as f64 - options.order_slack;
    let hi = p as f64 + options.order_slack + 0.5;

    for prob in problems() {
        let field = prob.field();
        let x_end = prob.exact_at(T_END, prob.x0.view());
        for (dir, t0, t1, start, target) in [
            ("forward", 0.0, T_END, &prob.x0, &x_end),
            ("backward", T_END, 0.0, &x_end, &prob.x0),
        ] {
            let mut errs = Vec::new();
            let mut failure = None;
            for &n in &counts {
                match run_fixed(solver, &field, start.view(), t0, t1, n, seq) {
                    Ok(x) => errs.push(max_abs_diff(x.view(), target.view())),
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
            let name = format!("order {dir} on {}", prob.name);
            if let Some(e) = failure {
                push(name, false, format!("run failed: {e}"));
                continue;
            }
            let roundoff = errs[2] < 1e-11;
            let observed = (errs[1] / errs[2]).log2();
            let passed = if roundoff {
                // Too accurate to measure an order: accept only if the coarse run is accurate too.
                errs[0] < 1e-9
            } else {
                observed >= lo && observed <= hi
            };
            push(
                name,
                passed,
                format!(
                    "errors {:.3e}, {:.3e}, {:.3e} at {:?} steps: order {observed:.2} (allowed [{lo:.2}, {hi:.2}])",
                    errs[0], errs[1], errs[2], counts
                ),
            );
        }

        // Round trip: forward then backward with the same steps; the error must vanish at
        // the method's order (it may vanish faster: symmetric methods cancel errors).
        let name = format!("round trip on {}", prob.name);
        let mut rt = Vec::new();
        let mut failure = None;
        for &n in &counts[1..] {
            match run_fixed(solver, &field, prob.x0.view(), 0.0, T_END, n, seq)
                .and_then(|fwd| run_fixed(solver, &field, fwd.view(), T_END, 0.0, n, seq))
            {
                Ok(back) => rt.push(max_abs_diff(back.view(), prob.x0.view())),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(e) = failure {
            push(name, false, format!("run failed: {e}"));
        } else {
            let observed = (rt[0] / rt[1]).log2();
            let passed = rt[1] < 1e-11 || observed >= lo;
            push(
                name,
                passed,
                format!(
                    "round-trip errors {:.3e}, {:.3e} at {:?} steps: order {observed:.2} (at least {lo:.2})",
                    rt[0],
                    rt[1],
                    &counts[1..]
                ),
            );
        }
    }

    // Batch independence and threads.
    {
        let prob = &problems()[2];
        let field = prob.field();
        let n = counts[0];
        let name = "rows are independent".to_string();
        let batch = run_fixed(solver, &field, prob.x0.view(), 0.0, T_END, n, seq);
        let mut rows = Vec::new();
        for i in 0..prob.x0.nrows() {
            let xi = prob
                .x0
                .slice_axis(Axis(0), Slice::from(i..i + 1))
                .to_owned();
            rows.push(run_fixed(solver, &field, xi.view(), 0.0, T_END, n, seq));
        }
        match (batch, rows.into_iter().collect::<Result<Vec<_>, _>>()) {
            (Ok(b), Ok(rows)) => {
                let mut worst: f64 = 0.0;
                for (i, r) in rows.iter().enumerate() {
                    let d = max_abs_diff(b.slice_axis(Axis(0), Slice::from(i..i + 1)), r.view());
                    worst = worst.max(d / (1.0 + r.iter().fold(0.0f64, |m, v| m.max(v.abs()))));
                }
                push(
                    name,
                    worst <= 1e-12,
                    format!("largest relative difference {worst:.3e}"),
                );
            }
            (Err(e), _) | (_, Err(e)) => push(name, false, format!("run failed: {e}")),
        }

        let big = Array2::from_shape_fn((1000, 2), |(i, j)| {
            ((i * 7 + j * 3) % 17) as f64 / 8.0 - 1.0
        });
        let par = Parallelism {
            chunk_rows: 64,
            threads: true,
        };
        let seq64 = Parallelism {
            chunk_rows: 64,
            threads: false,
        };
        let adaptive = solver.is_adaptive();
        let mut runs = Vec::new();
        for pl in [par, seq64] {
            let mut integ = Integrator::new(&mut *solver).parallelism(pl);
            integ = if adaptive {
                integ.tolerances(1e-6, 1e-6)
            } else {
                integ.steps(n)
            };
            runs.push(integ.run(&field, big.view()));
        }
        let name = "threads give identical bits".to_string();
        match (&runs[0], &runs[1]) {
            (Ok(a), Ok(b)) => push(
                name,
                a.x == b.x && a.stats == b.stats,
                format!("stats {:?} vs {:?}", a.stats, b.stats),
            ),
            (Err(e), _) | (_, Err(e)) => push(name, false, format!("run failed: {e}")),
        }
    }

    // Reuse after a run on another shape.
    {
        let probs = problems();
        let (a, b) = (&probs[0], &probs[1]);
        let (fa, fb) = (a.field(), b.field());
        let first = run_fixed(solver, &fa, a.x0.view(), 0.0, T_END, counts[0], seq);
        let other = run_fixed(solver, &fb, b.x0.view(), 0.0, T_END, counts[0], seq);
        let again = run_fixed(solver, &fa, a.x0.view(), 0.0, T_END, counts[0], seq);
        let name = "reuse after another run".to_string();
        match (first, other, again) {
            (Ok(x), Ok(_), Ok(y)) => push(
                name,
                x == y,
                format!("max difference {:.3e}", max_abs_diff(x.view(), y.view())),
            ),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                push(name, false, format!("run failed: {e}"))
            }
        }
    }

    if solver.is_adaptive() {
        for prob in &problems()[1..] {
            let field = prob.field();
            let x_end = prob.exact_at(T_END, prob.x0.view());
            let mut nfes = Vec::new();
            for tau in [1e-3, 1e-6, 1e-9] {
                let name = format!("tolerance {tau:.0e} on {}", prob.name);
                match Integrator::new(&mut *solver)
                    .span(0.0, T_END)
                    .tolerances(tau, tau)
                    .run(&field, prob.x0.view())
                {
                    Ok(sol) => {
                        let err = max_abs_diff(sol.x.view(), x_end.view());
                        let bound = options.tolerance_factor * tau;
                        nfes.push(sol.stats.nfe);
                        push(
                            name,
                            err <= bound && sol.t == T_END,
                            format!("error {err:.3e} (bound {bound:.1e}), {:?}", sol.stats),
                        );
                    }
                    Err(e) => push(name, false, format!("run failed: {e}")),
                }
            }
            if nfes.len() == 3 {
                push(
                    format!("evaluations grow as the tolerance shrinks on {}", prob.name),
                    nfes[0] < nfes[1] && nfes[1] < nfes[2],
                    format!("nfe {nfes:?}"),
                );
            }
            let times = vec![0.3, 0.9, T_END];
            let name = format!("recording on {}", prob.name);
            match Integrator::new(&mut *solver)
                .span(0.0, T_END)
                .tolerances(1e-8, 1e-8)
                .record_at(times.clone())
                .run(&field, prob.x0.view())
            {
                Ok(sol) => {
                    let got: Vec<f64> = sol.trajectory.iter().map(|(t, _)| *t).collect();
                    let err = sol
                        .trajectory
                        .iter()
                        .map(|(t, x)| {
                            max_abs_diff(x.view(), prob.exact_at(*t, prob.x0.view()).view())
                        })
                        .fold(0.0, f64::max);
                    let bound = options.tolerance_factor * 1e-8;
                    push(
                        name,
                        got == times && err <= bound,
                        format!("times {got:?}, largest error {err:.3e} (bound {bound:.1e})"),
                    );
                }
                Err(e) => push(name, false, format!("run failed: {e}")),
            }
        }
    }

    let report = KitReport {
        solver: solver.name().to_string(),
        checks,
    };
    if report.passed() {
        Ok(report)
    } else {
        let failures = report
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("\n");
        Err(OdeError::ConformanceFailed {
            solver: report.solver,
            failures,
        })
    }
}
