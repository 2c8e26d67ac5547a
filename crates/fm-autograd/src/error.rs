use thiserror::Error;

/// Errors of `fm-autograd`: shapes, non-finite values, invalid parameters and tensor files.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum AutogradError {
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
    /// An input or a result holds NaN or an infinity.
    #[error("{what} holds a non-finite value ({value}) at index {index}")]
    NonFinite {
        /// The array at fault.
        what: String,
        /// The flat (row-major) index of the first non-finite entry.
        index: usize,
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
    /// No activation has this name ([`Activation::parse`](crate::Activation::parse)).
    #[error("unknown activation `{name}`: expected one of {known}")]
    UnknownActivation {
        /// The name asked for.
        name: String,
        /// The accepted names, comma separated.
        known: String,
    },
    /// A named tensor is missing, unexpected or has the wrong shape.
    #[error("tensor {name}: {reason}")]
    Tensor {
        /// The tensor's name, e.g. `layers.0.weight`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A [`Var`](crate::Var) that does not belong to this graph.
    #[error("variable {index} is not in this graph of {len} nodes")]
    UnknownVar {
        /// The index of the variable.
        index: usize,
        /// The number of nodes in the graph.
        len: usize,
    },
}

/// Result alias of this crate.
pub type Result<T, E = AutogradError> = std::result::Result<T, E>;

pub(crate) fn shape_err(
    what: &str,
    expected: impl ToString,
    found: impl ToString,
) -> AutogradError {
    AutogradError::ShapeMismatch {
        what: what.to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// The first non-finite entry of `values`, as an error naming `what`.
pub(crate) fn check_finite<'a, I>(what: &str, values: I) -> Result<()>
where
    I: IntoIterator<Item = &'a f64>,
{
    match values.into_iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, &value)) => Err(AutogradError::NonFinite {
            what: what.to_string(),
            index,
            value,
        }),
        None => Ok(()),
    }
}
