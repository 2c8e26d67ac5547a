use fm_core::CoreError;
use thiserror::Error;

/// Errors of `fm-sbi`.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SbiError {
    /// A shape, emptiness or finiteness check of `fm-core` failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// No task has this name.
    #[error("unknown task `{name}`: the tasks are {known}")]
    UnknownTask {
        /// The name given.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// The observation number is not one of the stored ones.
    #[error("task {task} has no observation {index}: choose one of 1..={available}")]
    UnknownObservation {
        /// The task.
        task: &'static str,
        /// The number given.
        index: usize,
        /// The number of stored observations (numbered from 1).
        available: usize,
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
    /// A rejection sampler accepted too few proposals to finish in a bounded time.
    #[error(
        "the reference sampler of {task} accepted {accepted} of {proposed} proposals and gave up: the observation lies (almost) outside the support of the prior predictive; use an observation the simulator can produce"
    )]
    SamplerStalled {
        /// The task.
        task: &'static str,
        /// Proposals accepted.
        accepted: usize,
        /// Proposals drawn.
        proposed: usize,
    },
}
