//! The built-in solvers as a typed choice: [`SolverKind`].

use crate::{Dopri5, Euler, Heun, Midpoint, OdeError, OdeSolver, Ralston, Rk4, Ssprk3};
use std::fmt;
use std::str::FromStr;

/// One of the built-in solvers, as a value: what a configuration (such as `fm-train`'s
/// `SampleOptions`) stores instead of a name. Parse names at the edge of a program
/// ([`SolverKind::parse`], or `str::parse`), build the solver with [`SolverKind::build`].
///
/// ```
/// use fm_ode::{Integrator, SolverKind};
/// let kind: SolverKind = "RK4".parse()?;
/// assert_eq!(kind, SolverKind::Rk4);
/// assert_eq!(kind.to_string(), "rk4");
/// assert_eq!((kind.order(), kind.stages(), kind.is_adaptive()), (4, 4, false));
/// let field = fm_core::FnField::new(1, |_, x, mut out| out.assign(&x.mapv(|v| -v)));
/// let sol = Integrator::new(kind.build()).steps(20).run(&field, ndarray::array![[1.0]].view())?;
/// assert!((sol.x[[0, 0]] - (-1.0_f64).exp()).abs() < 1e-6);
/// // An unknown name is refused with every accepted name listed.
/// let err = SolverKind::parse("leapfrog").unwrap_err().to_string();
/// assert!(err.contains("euler, midpoint, heun, ralston, ssprk3, rk4, dopri5"), "{err}");
/// # Ok::<(), fm_ode::OdeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SolverKind {
    /// Forward Euler ([`Euler`]), order 1.
    #[default]
    Euler,
    /// The explicit midpoint rule ([`Midpoint`]), order 2.
    Midpoint,
    /// Heun's method ([`Heun`]), order 2.
    Heun,
    /// Ralston's method ([`Ralston`]), order 2.
    Ralston,
    /// SSP-RK3 ([`Ssprk3`]), order 3.
    Ssprk3,
    /// The classical Runge–Kutta method ([`Rk4`]), order 4.
    Rk4,
    /// Dormand–Prince 5(4) ([`Dopri5`]), adaptive with tolerances, or fixed-step of order 5.
    Dopri5,
}

impl SolverKind {
    /// Every built-in solver, in the order of [`SOLVER_NAMES`](crate::SOLVER_NAMES).
    pub const ALL: [SolverKind; 7] = [
        SolverKind::Euler,
        SolverKind::Midpoint,
        SolverKind::Heun,
        SolverKind::Ralston,
        SolverKind::Ssprk3,
        SolverKind::Rk4,
        SolverKind::Dopri5,
    ];

    /// The solver of a name, case-insensitive (`euler`, `midpoint`, `heun`, `ralston`,
    /// `ssprk3`, `rk4`, `dopri5`); an unknown name is an [`OdeError::UnknownSolver`] that lists
    /// every accepted name.
    pub fn parse(name: &str) -> Result<Self, OdeError> {
        let lower = name.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.name() == lower)
            .ok_or_else(|| OdeError::UnknownSolver {
                name: name.into(),
                known: crate::SOLVER_NAMES.join(", "),
            })
    }

    /// The lowercase name, as [`SolverKind::parse`] reads it and as the solver reports it
    /// ([`OdeSolver::name`]).
    pub fn name(self) -> &'static str {
        match self {
            SolverKind::Euler => "euler",
            SolverKind::Midpoint => "midpoint",
            SolverKind::Heun => "heun",
            SolverKind::Ralston => "ralston",
            SolverKind::Ssprk3 => "ssprk3",
            SolverKind::Rk4 => "rk4",
            SolverKind::Dopri5 => "dopri5",
        }
    }

    /// A new solver of this kind.
    pub fn build(self) -> Box<dyn OdeSolver> {
        match self {
            SolverKind::Euler => Box::new(Euler::default()),
            SolverKind::Midpoint => Box::new(Midpoint::default()),
            SolverKind::Heun => Box::new(Heun::default()),
            SolverKind::Ralston => Box::new(Ralston::default()),
            SolverKind::Ssprk3 => Box::new(Ssprk3::default()),
            SolverKind::Rk4 => Box::new(Rk4::default()),
            SolverKind::Dopri5 => Box::new(Dopri5::default()),
        }
    }

    /// Whether the solver has an error estimate (runs with tolerances): only [`SolverKind::Dopri5`].
    pub fn is_adaptive(self) -> bool {
        matches!(self, SolverKind::Dopri5)
    }

    /// The order of the method.
    pub fn order(self) -> u32 {
        match self {
            SolverKind::Euler => 1,
            SolverKind::Midpoint | SolverKind::Heun | SolverKind::Ralston => 2,
            SolverKind::Ssprk3 => 3,
            SolverKind::Rk4 => 4,
            SolverKind::Dopri5 => 5,
        }
    }

    /// The stages of one step (field evaluations per step; Dopri5 reuses its last stage, so it
    /// evaluates 6 of its 7 per accepted step after the first).
    pub fn stages(self) -> usize {
        match self {
            SolverKind::Euler => 1,
            SolverKind::Midpoint | SolverKind::Heun | SolverKind::Ralston => 2,
            SolverKind::Ssprk3 => 3,
            SolverKind::Rk4 => 4,
            SolverKind::Dopri5 => 7,
        }
    }
}

impl fmt::Display for SolverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SolverKind {
    type Err = OdeError;
    fn from_str(s: &str) -> Result<Self, OdeError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ButcherTableau;

    #[test]
    fn every_kind_builds_the_solver_it_names_with_its_order_stages_and_adaptivity() {
        assert_eq!(SolverKind::ALL.len(), crate::SOLVER_NAMES.len());
        for (kind, name) in SolverKind::ALL.into_iter().zip(crate::SOLVER_NAMES) {
            assert_eq!(kind.name(), *name);
            assert_eq!(SolverKind::parse(&name.to_ascii_uppercase()).unwrap(), kind);
            assert_eq!(kind.to_string().parse::<SolverKind>().unwrap(), kind);
            let s = kind.build();
            assert_eq!(s.name(), kind.name());
            assert_eq!(s.order(), kind.order(), "{kind}");
            assert_eq!(s.is_adaptive(), kind.is_adaptive(), "{kind}");
            let tableau = match kind {
                SolverKind::Euler => ButcherTableau::euler(),
                SolverKind::Midpoint => ButcherTableau::midpoint(),
                SolverKind::Heun => ButcherTableau::heun(),
                SolverKind::Ralston => ButcherTableau::ralston(),
                SolverKind::Ssprk3 => ButcherTableau::ssprk3(),
                SolverKind::Rk4 => ButcherTableau::rk4(),
                SolverKind::Dopri5 => ButcherTableau::dopri5(),
            };
            assert_eq!(tableau.stages(), kind.stages(), "{kind}");
        }
    }

    #[test]
    fn unknown_names_list_every_accepted_name() {
        for bad in ["", "rk45", "euler2", "dopri"] {
            let e = SolverKind::parse(bad).unwrap_err();
            assert!(matches!(e, OdeError::UnknownSolver { .. }));
            let msg = e.to_string();
            for name in crate::SOLVER_NAMES {
                assert!(msg.contains(name), "{msg}");
            }
        }
    }
}
