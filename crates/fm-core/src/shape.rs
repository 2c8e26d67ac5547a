//! Shape and value checks that return a typed [`CoreError`] naming the array at fault.

use crate::{CoreError, Result};
use ndarray::{ArrayView1, ArrayView2};

/// Checks that `x` is a non-empty batch with `dim` columns.
///
/// ```
/// let x = ndarray::Array2::<f64>::zeros((5, 3));
/// assert!(fm_core::shape::check_batch("x_0", x.view(), 3).is_ok());
/// let err = fm_core::shape::check_batch("x_0", x.view(), 2).unwrap_err();
/// assert_eq!(err.to_string(), "shape mismatch for x_0: expected 2 columns, found (5, 3)");
/// ```
pub fn check_batch(what: &str, x: ArrayView2<f64>, dim: usize) -> Result<()> {
    check_nonempty(what, x)?;
    if x.ncols() != dim {
        return Err(CoreError::ShapeMismatch {
            what: what.into(),
            expected: format!("{dim} columns"),
            found: format!("{:?}", x.dim()),
        });
    }
    Ok(())
}

/// Checks that `x` has at least one row and one column.
pub fn check_nonempty(what: &str, x: ArrayView2<f64>) -> Result<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(CoreError::Empty { what: what.into() });
    }
    Ok(())
}

/// Checks that `a` and `b` have the same shape.
pub fn check_same_shape(what: &str, a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<()> {
    if a.dim() != b.dim() {
        return Err(CoreError::ShapeMismatch {
            what: what.into(),
            expected: format!("{:?}", a.dim()),
            found: format!("{:?}", b.dim()),
        });
    }
    Ok(())
}

/// Checks that a 1-D array has length `len`.
pub fn check_len(what: &str, a: ArrayView1<f64>, len: usize) -> Result<()> {
    if a.len() != len {
        return Err(CoreError::ShapeMismatch {
            what: what.into(),
            expected: format!("length {len}"),
            found: format!("length {}", a.len()),
        });
    }
    Ok(())
}

/// Checks that every entry of `x` is finite, naming the first that is not.
///
/// ```
/// let x = ndarray::array![[1.0, f64::NAN]];
/// let err = fm_core::shape::check_finite("data", x.view()).unwrap_err();
/// assert!(err.to_string().contains("row 0, column 1"));
/// ```
pub fn check_finite(what: &str, x: ArrayView2<f64>) -> Result<()> {
    for ((row, col), &value) in x.indexed_iter() {
        if !value.is_finite() {
            return Err(CoreError::NonFinite {
                what: what.into(),
                row,
                col,
                value,
            });
        }
    }
    Ok(())
}

/// [`check_batch`] and [`check_finite`] together: the usual check of user data.
pub fn check_data(what: &str, x: ArrayView2<f64>, dim: usize) -> Result<()> {
    check_batch(what, x, dim)?;
    check_finite(what, x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, array};

    #[test]
    fn each_check_names_the_array() {
        let e = check_nonempty("x_1", Array2::zeros((0, 2)).view()).unwrap_err();
        assert_eq!(e, CoreError::Empty { what: "x_1".into() });
        let e = check_same_shape(
            "pair",
            Array2::zeros((2, 2)).view(),
            Array2::zeros((3, 2)).view(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("pair") && e.to_string().contains("(3, 2)"));
        let e = check_len("t", Array1::zeros(3).view(), 4).unwrap_err();
        assert!(e.to_string().contains("length 4"));
        let e = check_data("x", array![[1.0, 2.0], [f64::INFINITY, 0.0]].view(), 2).unwrap_err();
        assert!(matches!(e, CoreError::NonFinite { row: 1, col: 0, .. }));
        assert!(check_data("x", array![[1.0, 2.0]].view(), 2).is_ok());
    }
}
