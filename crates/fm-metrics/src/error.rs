use fm_core::CoreError;
use fm_couplings::CouplingError;
use fm_ode::OdeError;
use thiserror::Error;

/// Errors of `fm-metrics`.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A shape, emptiness or finiteness check of `fm-core` failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The assignment solver or cost matrix failed.
    #[error(transparent)]
    Coupling(#[from] CouplingError),
    /// The ODE integration failed (non-finite state, too many steps, bad solver name, ...).
    #[error(transparent)]
    Ode(#[from] OdeError),
    /// Two samples that must have the same number of points do not.
    #[error(
        "size mismatch for {what}: {first} points against {second}; draw equal-size samples (or subsample the larger one)"
    )]
    SizeMismatch {
        /// The metric.
        what: &'static str,
        /// Points in the first sample.
        first: usize,
        /// Points in the second sample.
        second: usize,
    },
    /// A parameter is outside its valid range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// The value given, written out.
        value: String,
        /// What is required of it.
        reason: &'static str,
    },
}
