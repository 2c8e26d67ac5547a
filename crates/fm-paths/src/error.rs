use thiserror::Error;

/// Errors of `fm-paths`: bad parameters, bad shapes, times outside `[0, 1]`, singular fields.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PathError {
    /// A shape, emptiness or finiteness check of `fm-core` failed.
    #[error(transparent)]
    Core(#[from] fm_core::CoreError),
    /// A constructor parameter is outside its valid range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What is required of it.
        reason: &'static str,
    },
    /// A time is outside `[0, 1]` or not finite.
    #[error("time t = {t} at index {index} is outside [0, 1]")]
    TimeOutOfRange {
        /// The position of the bad time in `t`.
        index: usize,
        /// The bad time.
        t: f64,
    },
    /// The requested quantity is singular (infinite or undefined) at this time, e.g. a density
    /// with standard deviation 0 or a field whose coefficient diverges.
    #[error("{what} is singular at t = {t}")]
    Singular {
        /// The quantity that cannot be evaluated.
        what: &'static str,
        /// The time at which it is singular.
        t: f64,
    },
    /// Mixture weights are negative, non-finite or sum to zero, or their number disagrees with the points.
    #[error("invalid weights for {what}: {reason}")]
    InvalidWeights {
        /// The weight vector at fault.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A path is used where its conditioning does not fit (e.g. a pair-conditioned path for a
    /// target-only marginal).
    #[error("unsupported: {reason}")]
    Unsupported {
        /// Why the operation is not available.
        reason: &'static str,
    },
    /// A check of the continuity kit (`fm_paths::testing`) failed.
    #[error("check `{check}` failed: {details}")]
    CheckFailed {
        /// The name of the check.
        check: &'static str,
        /// The failing input and the numbers that disagree.
        details: String,
    },
}

impl PathError {
    /// A shorthand for [`PathError::InvalidParameter`].
    pub(crate) fn param(name: &'static str, value: f64, reason: &'static str) -> Self {
        Self::InvalidParameter {
            name,
            value,
            reason,
        }
    }
}
