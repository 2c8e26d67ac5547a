//! # flow-matching
//!
//! Flow Matching for generative modelling, in Rust: learn a vector field `v_θ(t, x)` whose flow
//! carries a source distribution (usually `N(0, I)`) at `t = 0` to a target at `t = 1`, by
//! regressing it onto the conditional vector fields of simple probability paths.
//!
//! This crate is a facade: it re-exports each crate of the workspace under a short name and
//! holds no logic.
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`core`] | `fm-core` | `VectorField`, `LogDensity`, the standard normal source, shape checks, RNG |
//! | [`paths`] | `fm-paths` | probability paths, schedulers, the continuity kit |
//! | [`couplings`] | `fm-couplings` | independent, exact OT and Sinkhorn couplings |
//! | [`autograd`] | `fm-autograd` | reverse-mode autograd, MLP, Adam/AdamW |
//! | [`ode`] | `fm-ode` | ODE solvers and the integrator |
//! | [`data`] | `fm-data` | toy data sets and data files |
//! | [`metrics`] | `fm-metrics` | W2, MMD, likelihood, path energy |
//! | [`train`] | `fm-train` | matchers, trainer, model files |

pub use fm_autograd as autograd;
pub use fm_core as core;
pub use fm_couplings as couplings;
pub use fm_data as data;
pub use fm_metrics as metrics;
pub use fm_ode as ode;
pub use fm_paths as paths;
pub use fm_train as train;

/// The names most programs need.
pub mod prelude {
    pub use fm_core::{FnField, LogDensity, StandardNormal, VectorField};
}

/// One error type over every crate of the workspace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From `fm-core`.
    #[error(transparent)]
    Core(#[from] fm_core::CoreError),
}
