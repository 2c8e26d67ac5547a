use thiserror::Error;

/// Errors of `fm-ode`: bad parameters, shapes, non-finite states, step-size failures and
/// conformance-kit failures.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum OdeError {
    /// A shape or value error from `fm-core` (for example an empty initial state).
    #[error(transparent)]
    Core(#[from] fm_core::CoreError),
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
    /// An array has the wrong shape (for example the field's dimension differs from the
    /// width of the state).
    #[error("shape mismatch for {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// The array at fault.
        what: String,
        /// The expected shape, written out.
        expected: String,
        /// The shape that was given.
        found: String,
    },
    /// The state holds NaN or an infinity at time `t`.
    #[error("non-finite state ({value}) at t = {t}, row {row}, column {col}")]
    NonFiniteState {
        /// The time at which the state was found non-finite.
        t: f64,
        /// The row of the first non-finite entry.
        row: usize,
        /// The column of the first non-finite entry.
        col: usize,
        /// The offending value.
        value: f64,
    },
    /// The field returned NaN or an infinity at time `t`.
    #[error("non-finite velocity ({value}) at t = {t}, row {row}, column {col}")]
    NonFiniteVelocity {
        /// The time of the evaluation.
        t: f64,
        /// The row of the first non-finite entry.
        row: usize,
        /// The column of the first non-finite entry.
        col: usize,
        /// The offending value.
        value: f64,
    },
    /// An adaptive run used a solver step that returned no error estimate.
    #[error("solver {solver} returned no error estimate in an adaptive run")]
    MissingErrorEstimate {
        /// The solver's name.
        solver: String,
    },
    /// The adaptive step size became too small to make progress.
    #[error("step size underflow at t = {t}: h = {h}")]
    StepSizeUnderflow {
        /// The time reached.
        t: f64,
        /// The step size that was too small.
        h: f64,
    },
    /// The integration needed more steps than allowed.
    #[error("more than {max_steps} steps needed: stopped at t = {t}")]
    MaxStepsExceeded {
        /// The time reached.
        t: f64,
        /// The limit (accepted plus rejected steps).
        max_steps: usize,
    },
    /// No solver has this name.
    #[error("unknown solver {name:?}: known solvers are {known}")]
    UnknownSolver {
        /// The name asked for.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// A Butcher tableau is malformed.
    #[error("invalid butcher tableau {name}: {reason}")]
    InvalidTableau {
        /// The tableau's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A solver failed the conformance kit ([`crate::testing::check_solver`]).
    #[error("solver {solver} failed the conformance kit:\n{failures}")]
    ConformanceFailed {
        /// The solver's name.
        solver: String,
        /// One line per failed check.
        failures: String,
    },
}
