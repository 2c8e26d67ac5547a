use thiserror::Error;

/// Errors of `fm-core`: shapes, non-finite values and invalid parameters.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CoreError {
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
    /// An array that must not be empty is empty.
    #[error("{what} is empty: give at least one sample")]
    Empty {
        /// The array at fault.
        what: String,
    },
    /// An array holds NaN or an infinity.
    #[error("{what} holds a non-finite value ({value}) at row {row}, column {col}")]
    NonFinite {
        /// The array at fault.
        what: String,
        /// The row of the first non-finite entry.
        row: usize,
        /// The column of the first non-finite entry.
        col: usize,
        /// The offending value.
        value: f64,
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
