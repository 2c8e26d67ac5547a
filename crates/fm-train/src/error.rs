use thiserror::Error;

/// Errors of `fm-train`: invalid parameters, bad model or checkpoint files, failures while training.
///
/// [`TrainError::is_invalid_input`] tells apart errors caused by what the user gave (parameters,
/// files, data) from failures of the computation itself; the `fm` CLI maps the first to exit
/// code 2 and the second to exit code 1.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A training or model parameter is outside its valid range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name (as the CLI flag spells it).
        name: &'static str,
        /// The value given, written out.
        value: String,
        /// What is required of it.
        reason: String,
    },
    /// An unknown matcher, scheduler, coupling, activation or objective name.
    #[error("unknown {what} `{name}`: expected one of {expected}")]
    UnknownName {
        /// What kind of name it is ("matcher", "scheduler", ...).
        what: &'static str,
        /// The name given.
        name: String,
        /// The accepted names, written out.
        expected: String,
    },
    /// The source and target datasets have different dimensions.
    #[error(
        "source `{source_name}` has dimension {source_dim} but target `{target_name}` has dimension {target_dim}: give datasets of equal dimension"
    )]
    DimensionMismatch {
        /// The source dataset's name.
        source_name: String,
        /// Its dimension.
        source_dim: usize,
        /// The target dataset's name.
        target_name: String,
        /// Its dimension.
        target_dim: usize,
    },
    /// A model or checkpoint file cannot be used.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file at fault.
        path: String,
        /// What is wrong with it, and the fix where there is one.
        reason: String,
    },
    /// A model file written by a newer (or unknown) format version.
    #[error(
        "{path}: model format version {found} is not supported (this build reads versions 1 to {supported}): upgrade fm or retrain the model"
    )]
    UnsupportedVersion {
        /// The file at fault.
        path: String,
        /// The version found in the file.
        found: u32,
        /// The newest version this build reads (it reads every version from 1 on).
        supported: u32,
    },
    /// `--resume` was asked for but no checkpoint exists.
    #[error(
        "no checkpoint to resume from at {path}: run once with --checkpoint-every N first, or drop --resume"
    )]
    NoCheckpoint {
        /// Where the checkpoint was looked for.
        path: String,
    },
    /// The checkpoint was written by a run with different settings.
    #[error(
        "checkpoint {path} does not match this run: {reason}; rerun with the original settings or delete the checkpoint"
    )]
    CheckpointMismatch {
        /// The checkpoint file.
        path: String,
        /// What differs.
        reason: String,
    },
    /// Training diverged: the loss, the weights, the EMA weights or the optimizer state broke
    /// the divergence rule (see [`Trainer`](crate::Trainer)); no model was produced.
    #[error(
        "training diverged at step {step}: {reason}; lower the learning rate (e.g. --lr {suggested_lr}) or clip the gradients (e.g. --max-grad-norm 1){checkpoint_note}"
    )]
    NonFiniteLoss {
        /// The 1-based step at which the rule was broken.
        step: usize,
        /// The loss of that step (NaN when the weights, not the loss, broke the rule).
        loss: f64,
        /// Which part of the rule was broken, with the figures.
        reason: String,
        /// A smaller learning rate to try.
        suggested_lr: f64,
        /// A note on the last good checkpoint, empty if there is none.
        checkpoint_note: String,
    },
    /// Writing or reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
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
}

impl TrainError {
    /// Whether the error is caused by the input (parameters, names, files, data) rather than by
    /// the computation; the CLI exits with code 2 for these.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            TrainError::Ode(e) => {
                return matches!(
                    e,
                    fm_ode::OdeError::UnknownSolver { .. }
                        | fm_ode::OdeError::InvalidParameter { .. }
                        | fm_ode::OdeError::MissingErrorEstimate { .. }
                );
            }
            // A failed write is a failure of the write, not of the input.
            TrainError::Data(fm_data::DataError::Write { .. }) => return false,
            TrainError::Path(fm_paths::PathError::InvalidParameter { .. })
            | TrainError::Coupling(fm_couplings::CouplingError::InvalidParameter { .. })
            | TrainError::Autograd(fm_autograd::AutogradError::InvalidParameter { .. }) => {
                return true;
            }
            _ => {}
        }
        matches!(
            self,
            TrainError::InvalidParameter { .. }
                | TrainError::UnknownName { .. }
                | TrainError::DimensionMismatch { .. }
                | TrainError::BadFile { .. }
                | TrainError::UnsupportedVersion { .. }
                | TrainError::NoCheckpoint { .. }
                | TrainError::CheckpointMismatch { .. }
                | TrainError::Data(_)
                | TrainError::Core(_)
        )
    }

    /// An [`TrainError::InvalidParameter`].
    pub(crate) fn param(
        name: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        TrainError::InvalidParameter {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`TrainError::BadFile`].
    pub(crate) fn bad_file(path: &std::path::Path, reason: impl Into<String>) -> Self {
        TrainError::BadFile {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }

    /// A [`TrainError::Io`].
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
