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

pub use fm_core as core;

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
