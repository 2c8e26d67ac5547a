//! A full-covariance Gaussian `N(μ, Σ)` (feature `linalg`): log-density and sampling through
//! the Cholesky factor `Σ = L Lᵀ` (LAPACK `potrf` via `ndarray-linalg`).

use crate::MetricsError;
use fm_core::LogDensity;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use ndarray_linalg::{Cholesky, UPLO};
use rand::Rng;

/// Relative tolerance of the symmetry check: `|m_ij − m_ji| ≤ SYM_TOL · max |m|`.
pub(crate) const SYM_TOL: f64 = 1e-10;

/// Checks that `m` is a finite `d × d` symmetric matrix and returns its exact symmetrisation
/// `(m + mᵀ) / 2` (which removes round-off asymmetry below [`SYM_TOL`]).
pub(crate) fn symmetric(
    what: &'static str,
    m: ArrayView2<f64>,
    d: usize,
) -> Result<Array2<f64>, MetricsError> {
    if m.dim() != (d, d) {
        return Err(fm_core::CoreError::ShapeMismatch {
            what: what.into(),
            expected: format!("({d}, {d})"),
            found: format!("{:?}", m.dim()),
        }
        .into());
    }
    fm_core::shape::check_finite(what, m)?;
    let scale = m.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    let mut worst = (0, 0, 0.0f64);
    for i in 0..d {
        for j in 0..i {
            let gap = (m[[i, j]] - m[[j, i]]).abs();
            if gap > worst.2 {
                worst = (i, j, gap);
            }
        }
    }
    if worst.2 > SYM_TOL * scale {
        return Err(MetricsError::NotSymmetric {
            what,
            row: worst.0,
            col: worst.1,
            asymmetry: worst.2,
        });
    }
    Ok(Array2::from_shape_fn((d, d), |(i, j)| {
        0.5 * (m[[i, j]] + m[[j, i]])
    }))
}

/// Checks that a 1-D array is finite and has length `d`.
pub(crate) fn finite_vector(
    what: &'static str,
    v: ArrayView1<f64>,
    d: usize,
) -> Result<(), MetricsError> {
    fm_core::shape::check_len(what, v, d)?;
    fm_core::shape::check_finite(what, v.insert_axis(Axis(0)))?;
    Ok(())
}

/// The sample mean and the unbiased sample covariance `Σ = (1/(n−1)) Σ_i (x_i − μ)(x_i − μ)ᵀ`
/// of a sample `x` of shape `(n, d)`, `n ≥ 2` (the Gaussian fit used by the Fréchet distance;
/// the `n − 1` denominator is numpy's `np.cov` default, as in the FID reference code).
///
/// Errors: an empty or non-finite sample, fewer than 2 points.
///
/// ```
/// let x = ndarray::array![[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]];
/// let (mean, cov) = fm_metrics::gaussian_fit(x.view())?;
/// assert_eq!(mean, ndarray::array![2.0, 2.0]);
/// assert_eq!(cov, ndarray::array![[4.0, 3.0], [3.0, 3.0]]);
/// # Ok::<(), fm_metrics::MetricsError>(())
/// ```
pub fn gaussian_fit(x: ArrayView2<f64>) -> Result<(Array1<f64>, Array2<f64>), MetricsError> {
    fit_named("x", x)
}

/// [`gaussian_fit`] naming the sample `what` in errors.
pub(crate) fn fit_named(
    what: &'static str,
    x: ArrayView2<f64>,
) -> Result<(Array1<f64>, Array2<f64>), MetricsError> {
    fm_core::shape::check_nonempty(what, x)?;
    fm_core::shape::check_finite(what, x)?;
    let n = x.nrows();
    if n < 2 {
        return Err(MetricsError::InvalidParameter {
            name: "sample size",
            value: format!("{n} ({what})"),
            reason: "a covariance needs at least 2 points",
        });
    }
    let mean = x
        .mean_axis(Axis(0))
        .ok_or(fm_core::CoreError::Empty { what: what.into() })?;
    let centred = &x - &mean;
    let c = centred.t().dot(&centred) / (n - 1) as f64;
    let d = c.nrows();
    let cov = Array2::from_shape_fn((d, d), |(i, j)| 0.5 * (c[[i, j]] + c[[j, i]]));
    Ok((mean, cov))
}

/// The Gaussian `N(μ, Σ)` with a full covariance `Σ` (symmetric positive definite), the usual
/// source of a flow when the data is first whitened, or a fitted reference density.
///
/// ```text
/// log p(x) = −½ ‖L⁻¹ (x − μ)‖² − Σ_i log L_ii − (d/2) log(2π),   Σ = L Lᵀ (Cholesky)
/// sample:    x = μ + L ε,  ε ~ N(0, I_d)
/// ```
///
/// Construction factorises `Σ` once (LAPACK `potrf` through `ndarray-linalg`); `log_prob` is a
/// forward substitution per row (`O(n d²)`) and `sample` a product with `Lᵀ`. It implements
/// [`fm_core::LogDensity`], so it can be the source of
/// [`log_likelihood_with_source`](crate::log_likelihood_with_source).
///
/// ```
/// use fm_core::LogDensity;
/// use fm_metrics::MultivariateNormal;
/// use ndarray::array;
///
/// let g = MultivariateNormal::new(array![1.0, -1.0], array![[2.0, 0.6], [0.6, 1.0]])?;
/// let x = g.sample(4000, &mut fm_core::rng::seeded(0));
/// assert_eq!(x.dim(), (4000, 2));
/// // At the mean: log p = −log(2π) − ½ log det Σ, det Σ = 2 − 0.36.
/// let lp = g.log_prob(array![[1.0, -1.0]].view())?;
/// let want = -(2.0 * std::f64::consts::PI).ln() - 0.5 * 1.64f64.ln();
/// assert!((lp[0] - want).abs() < 1e-12);
/// // A covariance that is not positive definite is an error, not a panic.
/// assert!(MultivariateNormal::new(array![0.0, 0.0], array![[1.0, 2.0], [2.0, 1.0]]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MultivariateNormal {
    mean: Array1<f64>,
    cov: Array2<f64>,
    chol: Array2<f64>,
    /// `−Σ_i log L_ii − (d/2) log(2π)`.
    log_norm: f64,
}

impl MultivariateNormal {
    /// `N(mean, cov)`. `mean` has length `d ≥ 1`, `cov` shape `(d, d)`; both finite; `cov`
    /// symmetric up to a relative `1e-10` (then symmetrised exactly) and positive definite.
    ///
    /// Errors: [`MetricsError::NotSymmetric`]; [`MetricsError::NotPositiveDefinite`] when the
    /// Cholesky factorisation fails or a pivot is numerically zero (`L_ii² ≤ d ε Σ_ii`, ε the
    /// f64 machine epsilon: a singular covariance); shape, emptiness and finiteness errors.
    pub fn new(mean: Array1<f64>, cov: Array2<f64>) -> Result<Self, MetricsError> {
        let d = mean.len();
        if d == 0 {
            return Err(fm_core::CoreError::Empty {
                what: "mean".into(),
            }
            .into());
        }
        finite_vector("mean", mean.view(), d)?;
        let cov = symmetric("covariance", cov.view(), d)?;
        let chol = cov
            .cholesky(UPLO::Lower)
            .map_err(|e| MetricsError::NotPositiveDefinite {
                what: "covariance",
                kind: "definite",
                detail: format!("cholesky factorisation failed ({e})"),
            })?;
        for i in 0..d {
            let pivot = chol[[i, i]] * chol[[i, i]];
            if pivot.is_nan() || pivot <= d as f64 * f64::EPSILON * cov[[i, i]] {
                return Err(MetricsError::NotPositiveDefinite {
                    what: "covariance",
                    kind: "definite",
                    detail: format!(
                        "pivot {i} of the cholesky factor is {pivot:e}, numerically zero against the variance {:e}",
                        cov[[i, i]]
                    ),
                });
            }
        }
        let log_det_half: f64 = chol.diag().iter().map(|l| l.ln()).sum();
        let log_norm = -log_det_half - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        Ok(Self {
            mean,
            cov,
            chol,
            log_norm,
        })
    }

    /// The Gaussian fit of a sample (mean and unbiased covariance, see [`gaussian_fit`]).
    ///
    /// Errors: those of [`gaussian_fit`] and of [`MultivariateNormal::new`] (a sample whose
    /// points lie in a lower-dimensional subspace, e.g. `n ≤ d`, has a singular covariance).
    pub fn fit(x: ArrayView2<f64>) -> Result<Self, MetricsError> {
        let (mean, cov) = gaussian_fit(x)?;
        Self::new(mean, cov)
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The mean `μ`.
    pub fn mean(&self) -> ArrayView1<'_, f64> {
        self.mean.view()
    }

    /// The covariance `Σ` (symmetrised).
    pub fn cov(&self) -> ArrayView2<'_, f64> {
        self.cov.view()
    }

    /// The lower-triangular Cholesky factor `L` with `Σ = L Lᵀ`.
    pub fn cholesky(&self) -> ArrayView2<'_, f64> {
        self.chol.view()
    }

    /// `log det Σ = 2 Σ_i log L_ii`.
    pub fn log_det(&self) -> f64 {
        2.0 * self.chol.diag().iter().map(|l| l.ln()).sum::<f64>()
    }

    /// `n` independent samples, shape `(n, d)`: `x = μ + L ε` with `ε` drawn row by row as
    /// [`fm_core::StandardNormal::sample`] draws it (so `Σ = I`, `μ = 0` gives the same bits).
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Array2<f64> {
        let d = self.dim();
        let eps = Array2::from_shape_simple_fn((n, d), || {
            rng.sample::<f64, _>(rand_distr::StandardNormal)
        });
        eps.dot(&self.chol.t()) + &self.mean
    }
}

impl LogDensity for MultivariateNormal {
    fn dim(&self) -> usize {
        self.mean.len()
    }

    fn log_prob(&self, x: ArrayView2<f64>) -> fm_core::Result<Array1<f64>> {
        let d = self.dim();
        fm_core::shape::check_batch("x", x, d)?;
        let mut z = vec![0.0; d];
        Ok(x.rows()
            .into_iter()
            .map(|row| {
                // Forward substitution L z = x − μ.
                let mut sq = 0.0;
                for j in 0..d {
                    let l = self.chol.row(j);
                    let known: f64 = l.iter().zip(&z[..j]).map(|(l, z)| l * z).sum();
                    z[j] = (row[j] - self.mean[j] - known) / l[j];
                    sq += z[j] * z[j];
                }
                self.log_norm - 0.5 * sq
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn symmetric_names_the_worst_entry() {
        let m = array![[1.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.2, 1.0]];
        match symmetric("cov", m.view(), 3) {
            Err(MetricsError::NotSymmetric {
                row,
                col,
                asymmetry,
                ..
            }) => {
                assert_eq!((row, col), (2, 1));
                assert!((asymmetry - 0.1).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        // Round-off asymmetry is accepted and removed.
        let m = array![[2.0, 1.0 + 1e-14], [1.0, 2.0]];
        let s = symmetric("cov", m.view(), 2).unwrap();
        assert_eq!(s[[0, 1]], s[[1, 0]]);
        assert!(symmetric("cov", m.view(), 3).is_err());
    }

    #[test]
    fn cholesky_factor_reproduces_the_covariance() {
        let cov = array![[4.0, 2.0, 0.4], [2.0, 3.0, -0.5], [0.4, -0.5, 1.5]];
        let g = MultivariateNormal::new(array![0.0, 1.0, 2.0], cov.clone()).unwrap();
        let l = g.cholesky();
        for i in 0..3 {
            for j in i + 1..3 {
                assert_eq!(l[[i, j]], 0.0, "L must be lower triangular");
            }
        }
        let back = l.dot(&l.t());
        assert!((&back - &cov).iter().all(|e| e.abs() < 1e-12), "{back}");
    }
}
