use fm_autograd::AutogradError;
use fm_core::CoreError;
use thiserror::Error;

/// Errors of `fm-nf`: invalid settings, shapes, non-finite values and model files.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum NfError {
    /// A setting is outside its valid range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The setting's name.
        name: &'static str,
        /// The value given, written out.
        value: String,
        /// What is required of it.
        reason: String,
    },
    /// An array has the wrong shape.
    #[error("shape mismatch for {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// The array at fault.
        what: String,
        /// The expected shape, written out.
        expected: String,
        /// The shape that was given.
        found: String,
    },
    /// Training produced a non-finite loss or gradient.
    #[error(
        "{what} is not finite ({value}) at step {step}: lower the learning rate or the scale bound"
    )]
    NonFinite {
        /// The quantity at fault.
        what: &'static str,
        /// The training step.
        step: usize,
        /// The offending value.
        value: f64,
    },
    /// A model file holds a model of another kind.
    #[error(
        "{path}: a model of kind `{found}`, not `{expected}`: load it with the {found} model's loader (or dispatch on `model_kind`)"
    )]
    WrongKind {
        /// The file.
        path: String,
        /// The kind this loader reads.
        expected: &'static str,
        /// The kind the file names.
        found: String,
    },
    /// A file that is not a readable model file.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O error on a file.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// From `fm-autograd`.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// From `fm-core`.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// From `fm-ode` (an adaptive evaluation solve that failed, e.g. a step-size underflow).
    #[error("the ODE solve failed: {0}")]
    Ode(#[from] fm_ode::OdeError),
}

/// Result alias of this crate.
pub type Result<T, E = NfError> = std::result::Result<T, E>;

pub(crate) fn invalid(name: &'static str, value: impl ToString, reason: impl ToString) -> NfError {
    NfError::InvalidParameter {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

impl NfError {
    /// The error as the workspace's `CoreError`, for [`fm_core::LogDensity`] implementations:
    /// a core error stays itself, any other is described in a shape error of `what` at a batch
    /// of shape `dim`.
    pub(crate) fn into_core(self, what: &str, dim: (usize, usize)) -> CoreError {
        match self {
            NfError::Core(c) => c,
            other => CoreError::ShapeMismatch {
                what: format!("{what} ({other})"),
                expected: "a valid batch".into(),
                found: format!("{dim:?}"),
            },
        }
    }
}
