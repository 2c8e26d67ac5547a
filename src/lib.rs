//! # flow-matching
//!
//! Flow Matching for generative modelling, in Rust: learn a vector field `v_θ(t, x)` whose flow
//! carries a source distribution (usually `N(0, I)`) at `t = 0` to a target at `t = 1`, by
//! regressing it onto the conditional vector fields of simple probability paths.
//!
//! This crate is a facade: it re-exports each crate of the workspace under a short name and
//! holds no logic. Start with the [`tutorial`] (docs/tutorial.md); the model file and
//! PyTorch interop are described in docs/interop.md.
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`core`] | [`fm-core`](fm_core) | `VectorField`, `LogDensity`, the standard normal source, shape checks, RNG |
//! | [`paths`] | [`fm-paths`](fm_paths) | probability paths, schedulers, the continuity kit |
//! | [`couplings`] | [`fm-couplings`](fm_couplings) | independent, exact OT and Sinkhorn couplings |
//! | [`autograd`] | [`fm-autograd`](fm_autograd) | reverse-mode autograd, MLP, Adam/AdamW |
//! | [`ode`] | [`fm-ode`](fm_ode) | ODE solvers and the integrator |
//! | [`data`] | [`fm-data`](fm_data) | toy data sets and data files |
//! | [`metrics`] | [`fm-metrics`](fm_metrics) | W2, MMD, likelihood, path energy, C2ST |
//! | [`train`] | [`fm-train`](fm_train) | matchers, trainer, model files, sampling |
//! | [`sbi`] | [`fm-sbi`](fm_sbi) | simulation-based inference tasks and reference posteriors |
//! | [`nf`] | [`fm-nf`](fm_nf) | normalizing flows by maximum likelihood: coupling, residual, CNF |
//! | [`ndarray`] | `ndarray` | the array type of every batch (re-exported, so versions match) |
//!
//! ## Train, sample, evaluate
//!
//! I-CFM from `N(0, I)` to the two moons, then 500 samples with the midpoint rule, compared with
//! the target by the 2-Wasserstein distance:
//!
//! ```
//! use flow_matching::prelude::*;
//! use flow_matching::ndarray::Axis;
//! use flow_matching::train::{ArchConfig, Objective};
//!
//! let target = Dataset::parse("moons", None)?;
//! let source = Dataset::parse("gaussian", Some(2))?;
//! let params = TrainParams::default().steps(500).batch(128).lr(1e-2).seed(0).check()?;
//! let matcher = MatcherSpec::parse("icfm", Some(0.1), None, None)?;
//! let arch = ArchConfig { hidden: vec![64, 64], ..ArchConfig::default() };
//! let trained = Trainer::new(source.clone(), target.clone(), matcher, Objective::Flow, arch, params)?
//!     .run(&mut |_progress| {})?;
//!
//! let opts = SampleOptions { n: 500, solver: SolverKind::Midpoint, steps: Some(50), ..Default::default() };
//! let (x_0, solution) = sample(&trained.model, &opts)?;
//! assert_eq!(solution.x.len_of(Axis(0)), 500);
//!
//! let mut rng = flow_matching::core::rng::seeded(1);
//! let reference = target.sample(500, &mut rng)?;
//! let before = w2(x_0.view(), reference.view())?;
//! let after = w2(solution.x.view(), reference.view())?;
//! assert!(after < 0.4 * before, "W2 {before:.3} → {after:.3}");
//! # Ok::<(), flow_matching::Error>(())
//! ```

pub use fm_autograd as autograd;
pub use fm_core as core;
pub use fm_couplings as couplings;
pub use fm_data as data;
pub use fm_metrics as metrics;
pub use fm_nf as nf;
pub use fm_ode as ode;
pub use fm_paths as paths;
pub use fm_sbi as sbi;
pub use fm_train as train;
pub use ndarray;

#[doc = include_str!("../docs/tutorial.md")]
pub mod tutorial {}

/// The names most programs need.
pub mod prelude {
    pub use crate::Error;
    pub use fm_autograd::{Activation, Adam, AdamConfig, Mlp, MlpConfig, Optimizer};
    pub use fm_core::{FnField, LogDensity, StandardNormal, VectorField};
    pub use fm_couplings::{Coupling, ExactOtCoupling, IndependentCoupling, SinkhornCoupling};
    pub use fm_data::Dataset;
    pub use fm_metrics::w2;
    pub use fm_ode::{Integrator, OdeSolver, SolverKind};
    pub use fm_paths::{
        AffineProbPath, GaussianPath, LinearPath, LipmanPath, ProbPath, Scheduler,
        SchrodingerBridgePath, TrigonometricPath,
    };
    pub use fm_train::{
        MatcherSpec, MlpField, SampleOptions, TrainParams, TrainableField, Trainer, sample,
    };
}

/// One error type over every crate of the workspace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From `fm-core`.
    #[error(transparent)]
    Core(#[from] fm_core::CoreError),
    /// From `fm-paths`.
    #[error(transparent)]
    Path(#[from] fm_paths::PathError),
    /// From `fm-couplings`.
    #[error(transparent)]
    Coupling(#[from] fm_couplings::CouplingError),
    /// From `fm-autograd`.
    #[error(transparent)]
    Autograd(#[from] fm_autograd::AutogradError),
    /// From `fm-ode`.
    #[error(transparent)]
    Ode(#[from] fm_ode::OdeError),
    /// From `fm-data`.
    #[error(transparent)]
    Data(#[from] fm_data::DataError),
    /// From `fm-metrics`.
    #[error(transparent)]
    Metrics(#[from] fm_metrics::MetricsError),
    /// From `fm-train`.
    #[error(transparent)]
    Train(#[from] fm_train::TrainError),
    /// From `fm-sbi`.
    #[error(transparent)]
    Sbi(#[from] fm_sbi::SbiError),
    /// From `fm-nf`.
    #[error(transparent)]
    Nf(#[from] fm_nf::NfError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crate_error_converts_into_the_umbrella_error() {
        fn wrap<E: Into<Error>>(e: E) -> Error {
            e.into()
        }
        let core = fm_core::StandardNormal::new(0).unwrap_err();
        let msg = core.to_string();
        let e = wrap(core);
        assert!(matches!(e, Error::Core(_)));
        // Transparent: the umbrella error says exactly what the crate error says.
        assert_eq!(e.to_string(), msg);
        let p = fm_paths::LinearPath::new(-1.0).unwrap_err();
        assert!(matches!(wrap(p), Error::Path(_)));
        let c = fm_couplings::assignment(ndarray::Array2::<f64>::zeros((0, 0)).view()).unwrap_err();
        assert!(matches!(wrap(c), Error::Coupling(_)));
        let d = fm_data::Dataset::parse("no-such-set", None).unwrap_err();
        assert!(matches!(wrap(d), Error::Data(_)));
        let nf = fm_nf::TrainConfig {
            steps: 0,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(matches!(wrap(nf), Error::Nf(_)));
    }
}
