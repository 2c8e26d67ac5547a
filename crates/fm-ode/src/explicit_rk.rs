//! One generic explicit Runge–Kutta solver that runs any [`ButcherTableau`], and the named
//! built-in methods.

use crate::solver::scaled_sum_squares;
use crate::{ButcherTableau, OdeError, OdeSolver, StepContext, StepOutcome, Tolerances};
use fm_core::VectorField;
use ndarray::{Array2, Array3, ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis};
use rayon::prelude::*;

/// An explicit Runge–Kutta solver for any [`ButcherTableau`]: the way to add a method.
///
/// It is adaptive when the tableau has embedded weights. Stage buffers are kept between
/// steps (no allocation per step once the batch shape is known). The first stage
/// `k_1 = v(t, x)` is reused after a rejected step, after the integrator's initial step-size
/// selection, and — for FSAL tableaus such as Dormand–Prince — from the last stage of the
/// previous accepted step. The batch is processed in fixed row chunks, in parallel when the
/// [`StepContext::parallelism`] says so; every stage of a chunk is computed before the next
/// chunk, so each rayon task does a whole step on its rows.
///
/// ```
/// use fm_ode::{ButcherTableau, ExplicitRk, Integrator};
/// let solver = ExplicitRk::new(ButcherTableau::ssprk3());
/// let field = fm_core::FnField::new(1, |t, x, mut out| out.assign(&x.mapv(|v| -v + t)));
/// let sol = Integrator::new(solver).steps(50).run(&field, ndarray::array![[2.0]].view()).unwrap();
/// // dx/dt = -x + t, x(0) = 2: x(1) = 3/e.
/// assert!((sol.x[[0, 0]] - 3.0 / std::f64::consts::E).abs() < 1e-6);
/// ```
#[derive(Debug, Clone)]
pub struct ExplicitRk {
    tableau: ButcherTableau,
    /// Stage derivatives, shape `(s, n, d)`.
    k: Array3<f64>,
    /// Stage state buffer, shape `(n, d)`.
    tmp: Array2<f64>,
    /// Whether `k[0]` holds `v(t, x)` for the state of the next step.
    k0_valid: bool,
}

impl ExplicitRk {
    /// A solver running `tableau`.
    pub fn new(tableau: ButcherTableau) -> Self {
        let s = tableau.stages();
        Self {
            tableau,
            k: Array3::zeros((s, 0, 0)),
            tmp: Array2::zeros((0, 0)),
            k0_valid: false,
        }
    }

    /// The tableau.
    pub fn tableau(&self) -> &ButcherTableau {
        &self.tableau
    }

    fn ensure_shape(&mut self, n: usize, d: usize) {
        let s = self.tableau.stages();
        if self.k.dim() != (s, n, d) {
            self.k = Array3::zeros((s, n, d));
            self.tmp = Array2::zeros((n, d));
            self.k0_valid = false;
        }
    }
}

/// One step on a chunk of rows; returns the chunk's sum of squared scaled errors (0 without
/// tolerances).
#[allow(clippy::too_many_arguments)]
fn step_chunk(
    tab: &ButcherTableau,
    field: &dyn VectorField,
    t: f64,
    h: f64,
    k0_valid: bool,
    tol: Option<Tolerances>,
    x: ArrayView2<f64>,
    mut x_new: ArrayViewMut2<f64>,
    mut k: ArrayViewMut3<f64>,
    mut tmp: ArrayViewMut2<f64>,
) -> f64 {
    let s = tab.stages();
    for i in 0..s {
        if i == 0 {
            if !k0_valid {
                field.velocity(t, x, k.index_axis_mut(Axis(0), 0));
            }
            continue;
        }
        let (done, mut rest) = k.view_mut().split_at(Axis(0), i);
        tmp.assign(&x);
        for j in 0..i {
            let a = tab.a(i, j);
            if a != 0.0 {
                tmp.scaled_add(h * a, &done.index_axis(Axis(0), j));
            }
        }
        field.velocity(
            t + tab.c()[i] * h,
            tmp.view(),
            rest.index_axis_mut(Axis(0), 0),
        );
    }
    x_new.assign(&x);
    for (j, &b) in tab.b().iter().enumerate() {
        if b != 0.0 {
            x_new.scaled_add(h * b, &k.index_axis(Axis(0), j));
        }
    }
    match (tol, tab.b_embedded()) {
        (Some(tol), Some(b_hat)) => {
            // err = h Σ (b_i − b̂_i) k_i, reusing the stage buffer.
            tmp.fill(0.0);
            for (j, (&b, &bh)) in tab.b().iter().zip(b_hat).enumerate() {
                let w = b - bh;
                if w != 0.0 {
                    tmp.scaled_add(h * w, &k.index_axis(Axis(0), j));
                }
            }
            scaled_sum_squares(tmp.view(), x, x_new.view(), tol)
        }
        _ => 0.0,
    }
}

impl OdeSolver for ExplicitRk {
    fn name(&self) -> &str {
        self.tableau.name()
    }
    fn order(&self) -> u32 {
        self.tableau.order()
    }
    fn is_adaptive(&self) -> bool {
        self.tableau.b_embedded().is_some()
    }
    fn embedded_order(&self) -> Option<u32> {
        self.tableau.embedded_order()
    }

    fn step(
        &mut self,
        ctx: &StepContext<'_>,
        mut x_new: ArrayViewMut2<'_, f64>,
    ) -> Result<StepOutcome, OdeError> {
        let (n, d) = ctx.x.dim();
        if x_new.dim() != (n, d) {
            return Err(OdeError::ShapeMismatch {
                what: "x_new".into(),
                expected: format!("{:?}", (n, d)),
                found: format!("{:?}", x_new.dim()),
            });
        }
        self.ensure_shape(n, d);
        let tab = &self.tableau;
        let k0_valid = self.k0_valid;
        let tol = ctx.tolerances;
        let (field, t, h) = (ctx.field, ctx.t, ctx.h);
        let cr = ctx.parallelism.chunk_rows.max(1);
        let chunks: Vec<_> = ctx
            .x
            .axis_chunks_iter(Axis(0), cr)
            .zip(x_new.axis_chunks_iter_mut(Axis(0), cr))
            .zip(self.k.axis_chunks_iter_mut(Axis(1), cr))
            .zip(self.tmp.axis_chunks_iter_mut(Axis(0), cr))
            .map(|(((x, xn), k), tmp)| (x, xn, k, tmp))
            .collect();
        let work = |(x, xn, k, tmp)| step_chunk(tab, field, t, h, k0_valid, tol, x, xn, k, tmp);
        let sums: Vec<f64> = if ctx.parallelism.is_parallel(n) {
            chunks.into_par_iter().map(work).collect()
        } else {
            chunks.into_iter().map(work).collect()
        };
        let stages = tab.stages();
        let nfe = if k0_valid { stages - 1 } else { stages };
        // k[0] now holds v(t, x) for a retry from the same state.
        self.k0_valid = true;
        let error = match (tol, tab.b_embedded()) {
            (Some(_), Some(_)) => {
                let total: f64 = sums.iter().sum();
                Some((total / (n * d).max(1) as f64).sqrt())
            }
            _ => None,
        };
        Ok(StepOutcome { nfe, error })
    }

    fn reset(&mut self) {
        self.k0_valid = false;
    }

    fn accept(&mut self) {
        if self.tableau.is_fsal() {
            let s = self.tableau.stages();
            let (mut first, rest) = self.k.view_mut().split_at(Axis(0), 1);
            first
                .index_axis_mut(Axis(0), 0)
                .assign(&rest.index_axis(Axis(0), s - 2));
            self.k0_valid = true;
        } else {
            self.k0_valid = false;
        }
    }

    fn seed_derivative(&mut self, _t: f64, x: ArrayView2<'_, f64>, dxdt: ArrayView2<'_, f64>) {
        let (n, d) = x.dim();
        if dxdt.dim() != (n, d) {
            return;
        }
        self.ensure_shape(n, d);
        self.k.index_axis_mut(Axis(0), 0).assign(&dxdt);
        self.k0_valid = true;
    }

    fn has_dense_output(&self) -> bool {
        self.tableau.dense().is_some()
    }

    /// `x + h Σ_i b_i(θ) k_i` with the tableau's dense-output polynomials and this step's stages.
    fn dense_output(
        &self,
        theta: f64,
        h: f64,
        x: ArrayView2<'_, f64>,
        mut out: ArrayViewMut2<'_, f64>,
    ) -> bool {
        let Some(poly) = self.tableau.dense() else {
            return false;
        };
        if x.dim() != out.dim() || self.k.dim().1 != x.nrows() || self.k.dim().2 != x.ncols() {
            return false;
        }
        out.assign(&x);
        for (i, p) in poly.iter().enumerate() {
            // b_i(θ) = Σ_m p_m θ^(m+1), by Horner.
            let b = p.iter().rev().fold(0.0, |acc, &c| acc * theta + c) * theta;
            if b != 0.0 {
                out.scaled_add(h * b, &self.k.index_axis(Axis(0), i));
            }
        }
        true
    }
}

macro_rules! rk_solver {
    ($(#[$doc:meta])* $name:ident, $ctor:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(ExplicitRk);

        impl Default for $name {
            fn default() -> Self {
                Self(ExplicitRk::new(ButcherTableau::$ctor()))
            }
        }

        impl OdeSolver for $name {
            fn name(&self) -> &str {
                self.0.name()
            }
            fn order(&self) -> u32 {
                self.0.order()
            }
            fn is_adaptive(&self) -> bool {
                self.0.is_adaptive()
            }
            fn embedded_order(&self) -> Option<u32> {
                self.0.embedded_order()
            }
            fn step(
                &mut self,
                ctx: &StepContext<'_>,
                x_new: ArrayViewMut2<'_, f64>,
            ) -> Result<StepOutcome, OdeError> {
                self.0.step(ctx, x_new)
            }
            fn reset(&mut self) {
                self.0.reset()
            }
            fn accept(&mut self) {
                self.0.accept()
            }
            fn seed_derivative(&mut self, t: f64, x: ArrayView2<'_, f64>, dxdt: ArrayView2<'_, f64>) {
                self.0.seed_derivative(t, x, dxdt)
            }
            fn has_dense_output(&self) -> bool {
                self.0.has_dense_output()
            }
            fn dense_output(
                &self,
                theta: f64,
                h: f64,
                x: ArrayView2<'_, f64>,
                out: ArrayViewMut2<'_, f64>,
            ) -> bool {
                self.0.dense_output(theta, h, x, out)
            }
        }
    };
}

rk_solver!(
    /// Forward Euler, order 1, one evaluation per step ([`ButcherTableau::euler`]).
    Euler,
    euler
);
rk_solver!(
    /// The explicit midpoint rule, order 2 ([`ButcherTableau::midpoint`]).
    Midpoint,
    midpoint
);
rk_solver!(
    /// Heun's method, order 2 ([`ButcherTableau::heun`]).
    Heun,
    heun
);
rk_solver!(
    /// Ralston's method, order 2 ([`ButcherTableau::ralston`]).
    Ralston,
    ralston
);
rk_solver!(
    /// SSP-RK3 (Shu–Osher), order 3 ([`ButcherTableau::ssprk3`]).
    Ssprk3,
    ssprk3
);
rk_solver!(
    /// The classical Runge–Kutta method, order 4 ([`ButcherTableau::rk4`]).
    Rk4,
    rk4
);
rk_solver!(
    /// Dormand–Prince 5(4), adaptive, FSAL: 6 evaluations per step after the first
    /// ([`ButcherTableau::dopri5`]). Run with [`Integrator::tolerances`](crate::Integrator::tolerances)
    /// for adaptive steps, or with [`Integrator::steps`](crate::Integrator::steps) as a
    /// fixed-step fifth-order method.
    Dopri5,
    dopri5
);

/// The names [`solver_by_name`] knows.
pub const SOLVER_NAMES: &[&str] = &[
    "euler", "midpoint", "heun", "ralston", "ssprk3", "rk4", "dopri5",
];

/// A built-in solver by name (case-insensitive; [`SolverKind::parse`](crate::SolverKind::parse)
/// then [`SolverKind::build`](crate::SolverKind::build)): `"euler"`, `"midpoint"`, `"heun"`,
/// `"ralston"`, `"ssprk3"`, `"rk4"`, `"dopri5"`.
///
/// ```
/// let solver = fm_ode::solver_by_name("Dopri5").unwrap();
/// assert!(solver.is_adaptive());
/// assert_eq!(solver.order(), 5);
/// assert!(fm_ode::solver_by_name("leapfrog").is_err());
/// ```
pub fn solver_by_name(name: &str) -> Result<Box<dyn OdeSolver>, OdeError> {
    Ok(crate::SolverKind::parse(name)?.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_to_a_solver_of_that_name() {
        for name in SOLVER_NAMES {
            let s = solver_by_name(name).unwrap();
            assert_eq!(s.name(), *name);
        }
        let e = solver_by_name("rk45").err().unwrap();
        assert!(e.to_string().contains("dopri5"), "{e}");
    }
}
