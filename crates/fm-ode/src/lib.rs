//! # fm-ode
//!
//! ODE solvers for flow matching, designed to be extended. Sampling integrates
//! `dx/dt = v_θ(t, x)` from `t = 0` to `t = 1`; likelihoods integrate the augmented system
//! `(x, ℓ)` with `dℓ/dt = −div v` backwards from 1 to 0 ([`AugmentedField`]).
//!
//! * [`OdeSolver`]: the object-safe one-step trait; [`Integrator`] owns the loop (span in
//!   either direction, fixed steps or tolerances, exact recording times, max-steps guard,
//!   counters in [`Stats`], non-finite detection, an observer).
//! * Explicit Runge–Kutta methods are data: a [`ButcherTableau`] run by [`ExplicitRk`].
//!   Built in: [`Euler`], [`Midpoint`], [`Heun`], [`Ralston`], [`Ssprk3`], [`Rk4`] and the
//!   adaptive [`Dopri5`] (Dormand–Prince 5(4), PI step-size control, automatic initial step,
//!   first-same-as-last); [`SolverKind`] is the typed choice of one of them
//!   ([`SolverKind::parse`] / [`solver_by_name`] read a name).
//! * Batches are cut into fixed row chunks that run on rayon ([`Parallelism`]) with results
//!   bit-identical to one thread.
//! * [`testing::check_solver`]: the conformance kit every solver — yours too — passes.
//!
//! ```
//! use fm_core::FnField;
//! use fm_ode::{solver_by_name, Integrator};
//! use ndarray::array;
//!
//! // dx/dt = -x + t from x(0) = 2: x(1) = 3/e.
//! let field = FnField::new(1, |t, x, mut out| out.assign(&x.mapv(|v| -v + t)));
//! let exact = 3.0 / std::f64::consts::E;
//! let fixed = Integrator::new(solver_by_name("rk4")?).steps(20).run(&field, array![[2.0]].view())?;
//! assert!((fixed.x[[0, 0]] - exact).abs() < 1e-6);
//! let adaptive = Integrator::new(solver_by_name("dopri5")?)
//!     .tolerances(1e-8, 1e-8)
//!     .run(&field, array![[2.0]].view())?;
//! assert!((adaptive.x[[0, 0]] - exact).abs() < 1e-7);
//! assert!(adaptive.stats.nfe < 100);
//! # Ok::<(), fm_ode::OdeError>(())
//! ```

mod augmented;
mod error;
mod explicit_rk;
mod integrator;
mod solver;
mod solver_kind;
mod tableau;
pub mod testing;

pub use augmented::{AugmentedField, augmented_state, split_augmented};
pub use error::OdeError;
pub use explicit_rk::{
    Dopri5, Euler, ExplicitRk, Heun, Midpoint, Ralston, Rk4, SOLVER_NAMES, Ssprk3, solver_by_name,
};
pub use integrator::{Integrator, Solution, Stats, StepControl, StepInfo};
pub use solver::{OdeSolver, Parallelism, StepContext, StepOutcome, Tolerances, error_norm};
pub use solver_kind::SolverKind;
pub use tableau::ButcherTableau;
