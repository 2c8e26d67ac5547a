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
    /// A matrix that must be symmetric is not (feature `linalg`).
    #[error(
        "{what} is not symmetric: entry ({row}, {col}) differs from its transpose by {asymmetry:e}"
    )]
    NotSymmetric {
        /// The matrix at fault.
        what: &'static str,
        /// Row of the largest asymmetry.
        row: usize,
        /// Column of the largest asymmetry.
        col: usize,
        /// `|m[row, col] − m[col, row]|`.
        asymmetry: f64,
    },
    /// A covariance matrix is not positive definite (or, where semidefinite suffices, has a
    /// negative eigenvalue) (feature `linalg`).
    #[error("{what} is not positive {kind}: {detail}")]
    NotPositiveDefinite {
        /// The matrix at fault.
        what: &'static str,
        /// `"definite"` or `"semidefinite"`: what was required.
        kind: &'static str,
        /// Which pivot or eigenvalue failed, written out.
        detail: String,
    },
    /// A LAPACK routine failed for another reason than the ones above (feature `linalg`).
    #[error("lapack {routine} failed on {what}: {message}")]
    Lapack {
        /// The operation (`"eigh"`, `"cholesky"`, ...).
        routine: &'static str,
        /// The matrix it ran on.
        what: &'static str,
        /// The error of `ndarray-linalg`, written out.
        message: String,
    },
}
