use fm_core::CoreError;
use thiserror::Error;

/// Errors of `fm-couplings`: bad batches, bad cost matrices, bad parameters.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CouplingError {
    /// A shape, emptiness or finiteness check of `fm-core` failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Two arrays that must agree in a dimension do not.
    #[error("shape mismatch for {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// The array at fault.
        what: String,
        /// The expected shape, written out.
        expected: String,
        /// The shape that was given.
        found: String,
    },
    /// An assignment needs at least as many columns (targets) as rows (sources).
    #[error(
        "{what} has more rows ({rows}) than columns ({cols}): an assignment needs rows <= columns"
    )]
    TooManyRows {
        /// The matrix or batch pair at fault.
        what: String,
        /// The number of rows (sources).
        rows: usize,
        /// The number of columns (targets).
        cols: usize,
    },
    /// A cost matrix holds NaN or an infinity.
    #[error("cost matrix holds a non-finite value ({value}) at row {row}, column {col}")]
    NonFiniteCost {
        /// The row of the first non-finite entry.
        row: usize,
        /// The column of the first non-finite entry.
        col: usize,
        /// The offending value.
        value: f64,
    },
    /// The spread `max - min` of a cost matrix is too large for exact f64 arithmetic.
    #[error("cost matrix range {range:e} exceeds the supported {limit:e}")]
    CostRange {
        /// `max(cost) - min(cost)`, possibly infinite.
        range: f64,
        /// The largest supported range.
        limit: f64,
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
    /// A solver name that [`crate::AssignmentSolver::from_name`] does not know.
    #[error("unknown assignment solver {name:?}: expected one of {known}")]
    UnknownSolver {
        /// The name given.
        name: String,
        /// The accepted names, comma separated.
        known: &'static str,
    },
    /// A transport plan that cannot be sampled (negative, non-finite or zero mass).
    #[error("invalid transport plan: {reason}")]
    InvalidPlan {
        /// What is wrong with it.
        reason: String,
    },
    /// A conditional coupling's source labels are not a rearrangement of the target labels.
    #[error(
        "label {label} has {sources} source points but {targets} target points: the source labels must be a rearrangement of the target labels"
    )]
    LabelCountMismatch {
        /// The first label whose counts differ.
        label: usize,
        /// How many source points carry it.
        sources: usize,
        /// How many target points carry it.
        targets: usize,
    },
}
