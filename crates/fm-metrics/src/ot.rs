//! Exact Wasserstein distances between two equal-size empirical samples.

use crate::MetricsError;
use ndarray::ArrayView2;

fn check_pair(
    what: &'static str,
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
) -> Result<(), MetricsError> {
    fm_core::shape::check_nonempty("a", a)?;
    fm_core::shape::check_batch("b", b, a.ncols())?;
    fm_core::shape::check_finite("a", a)?;
    fm_core::shape::check_finite("b", b)?;
    if a.nrows() != b.nrows() {
        return Err(MetricsError::SizeMismatch {
            what,
            first: a.nrows(),
            second: b.nrows(),
        });
    }
    Ok(())
}

/// The squared 2-Wasserstein distance `W2²(a, b) = min_σ (1/n) Σ_i ‖a_i − b_σ(i)‖²` between the
/// empirical measures of two samples with the same number `n` of points (shape `(n, d)`).
///
/// Between uniform empirical measures of equal size an optimal plan is a permutation
/// (Birkhoff–von Neumann), so the exact value is the minimum-cost assignment, found by
/// `fm_couplings::assignment` (Jonker–Volgenant) on the squared Euclidean cost. The cost matrix
/// has `n²` entries: `n = 10 000` needs 800 MB.
///
/// Errors: empty or non-finite samples, different dimensions, different sizes
/// ([`MetricsError::SizeMismatch`]: subsample the larger sample first).
///
/// ```
/// use ndarray::array;
/// let a = array![[0.0, 0.0], [1.0, 0.0]];
/// let b = array![[1.0, 1.0], [0.0, 1.0]];
/// assert!((fm_metrics::w2_sq(a.view(), b.view()).unwrap() - 1.0).abs() < 1e-12);
/// ```
pub fn w2_sq(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64, MetricsError> {
    check_pair("w2", a, b)?;
    let cost = fm_couplings::sq_euclidean_cost(a, b)?;
    let perm = fm_couplings::assignment(cost.view())?;
    Ok(perm
        .iter()
        .enumerate()
        .map(|(i, &j)| cost[[i, j]])
        .sum::<f64>()
        / a.nrows() as f64)
}

/// The 2-Wasserstein distance `W2(a, b) = sqrt(W2²(a, b))`, see [`w2_sq`].
///
/// ```
/// use ndarray::array;
/// let a = array![[0.0], [1.0], [5.0]];
/// let b = &a + 2.0;
/// assert!((fm_metrics::w2(a.view(), b.view()).unwrap() - 2.0).abs() < 1e-12);
/// ```
pub fn w2(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64, MetricsError> {
    Ok(w2_sq(a, b)?.sqrt())
}

/// The 1-Wasserstein distance `W1(a, b) = min_σ (1/n) Σ_i ‖a_i − b_σ(i)‖` between two
/// equal-size samples, exact by assignment on the Euclidean cost (same errors as [`w2_sq`]).
pub fn w1(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64, MetricsError> {
    check_pair("w1", a, b)?;
    let mut cost = fm_couplings::sq_euclidean_cost(a, b)?;
    cost.mapv_inplace(f64::sqrt);
    let perm = fm_couplings::assignment(cost.view())?;
    Ok(perm
        .iter()
        .enumerate()
        .map(|(i, &j)| cost[[i, j]])
        .sum::<f64>()
        / a.nrows() as f64)
}
