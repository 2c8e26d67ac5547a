//! The Fréchet distance between Gaussians and between the Gaussian fits of two samples
//! (feature `linalg`).

use crate::MetricsError;
use crate::gaussian::{finite_vector, fit_named, symmetric};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use ndarray_linalg::{EigValsh, Eigh, UPLO};

/// Relative tolerance for negative eigenvalues of a covariance: `λ_min ≥ −PSD_TOL · max |λ|`.
/// Above it they are round-off and are clamped to 0.
const PSD_TOL: f64 = 1e-9;

/// Eigenvalues of a symmetric positive semidefinite matrix, clamped to `≥ 0` after a check.
fn psd_eigenvalues(what: &'static str, lambda: Array1<f64>) -> Result<Array1<f64>, MetricsError> {
    let top = lambda.iter().fold(0.0f64, |s, l| s.max(l.abs()));
    if let Some((i, &l)) = lambda
        .iter()
        .enumerate()
        .find(|(_, l)| l.is_nan() || **l < -PSD_TOL * top)
    {
        return Err(MetricsError::NotPositiveDefinite {
            what,
            kind: "semidefinite",
            detail: format!("eigenvalue {i} is {l:e} (largest |eigenvalue| {top:e})"),
        });
    }
    Ok(lambda.mapv(|l| l.max(0.0)))
}

fn lapack(
    routine: &'static str,
    what: &'static str,
) -> impl Fn(ndarray_linalg::error::LinalgError) -> MetricsError {
    move |e| MetricsError::Lapack {
        routine,
        what,
        message: e.to_string(),
    }
}

/// The Fréchet distance between the Gaussians `N(μ_a, Σ_a)` and `N(μ_b, Σ_b)`, in the squared
/// form that FID reports (Dowson & Landau, "The Fréchet distance between multivariate normal
/// distributions", 1982; Heusel et al., "GANs trained by a two time-scale update rule
/// converge to a local Nash equilibrium", NeurIPS 2017):
///
/// ```text
/// d²  =  ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2})
/// ```
///
/// which is also `W2²` between the two Gaussians. Both square roots come from LAPACK's
/// symmetric eigensolver (`syevd` through `ndarray-linalg`'s `eigh`): `Σ_a^{1/2} = Q diag(√λ) Qᵀ`
/// from `Σ_a = Q diag(λ) Qᵀ`, and the trace of the outer root is `Σ √μ_i` over the eigenvalues
/// `μ_i` of the symmetric PSD matrix `Σ_a^{1/2} Σ_b Σ_a^{1/2}`. Unlike a general matrix square
/// root of `Σ_a Σ_b`, this stays real and accurate for singular covariances. Round-off
/// negative eigenvalues are clamped to 0 and so is the result (it is `≥ 0` in exact
/// arithmetic). Cost `O(d³)`.
///
/// Errors: `μ_a` of length `d = 0`; shapes other than `(d,)` and `(d, d)`; non-finite entries;
/// [`MetricsError::NotSymmetric`]; [`MetricsError::NotPositiveDefinite`] (kind
/// `"semidefinite"`) for an eigenvalue below `−1e-9 · max |λ|`.
///
/// ```
/// use ndarray::array;
/// // Commuting covariances: d² = ‖μ_a − μ_b‖² + Σ_i (√a_i − √b_i)².
/// let d2 = fm_metrics::frechet_distance_gaussians(
///     array![0.0, 0.0].view(), array![[4.0, 0.0], [0.0, 1.0]].view(),
///     array![3.0, 0.0].view(), array![[1.0, 0.0], [0.0, 9.0]].view(),
/// )?;
/// assert!((d2 - (9.0 + 1.0 + 4.0)).abs() < 1e-12);
/// # Ok::<(), fm_metrics::MetricsError>(())
/// ```
pub fn frechet_distance_gaussians(
    mean_a: ArrayView1<f64>,
    cov_a: ArrayView2<f64>,
    mean_b: ArrayView1<f64>,
    cov_b: ArrayView2<f64>,
) -> Result<f64, MetricsError> {
    let d = mean_a.len();
    if d == 0 {
        return Err(fm_core::CoreError::Empty {
            what: "mean_a".into(),
        }
        .into());
    }
    finite_vector("mean_a", mean_a, d)?;
    finite_vector("mean_b", mean_b, d)?;
    let cov_a = symmetric("cov_a", cov_a, d)?;
    let cov_b = symmetric("cov_b", cov_b, d)?;

    let (lambda_a, q) = cov_a.eigh(UPLO::Lower).map_err(lapack("eigh", "cov_a"))?;
    let root_a = psd_eigenvalues("cov_a", lambda_a)?.mapv(f64::sqrt);
    let lambda_b = cov_b
        .eigvalsh(UPLO::Lower)
        .map_err(lapack("eigvalsh", "cov_b"))?;
    psd_eigenvalues("cov_b", lambda_b)?;

    // S = Σ_a^{1/2} = Q diag(√λ) Qᵀ, then M = S Σ_b S (symmetrised against round-off).
    let sqrt_a: Array2<f64> = (&q * &root_a).dot(&q.t());
    let m = sqrt_a.dot(&cov_b).dot(&sqrt_a);
    let m = Array2::from_shape_fn((d, d), |(i, j)| 0.5 * (m[[i, j]] + m[[j, i]]));
    let mu = m
        .eigvalsh(UPLO::Lower)
        .map_err(lapack("eigvalsh", "cov_a^1/2 cov_b cov_a^1/2"))?;
    // M is PSD in exact arithmetic; its negative round-off eigenvalues are clamped.
    let tr_sqrt: f64 = mu.iter().map(|v| v.max(0.0).sqrt()).sum();

    let dmean: f64 = mean_a
        .iter()
        .zip(mean_b)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    let value = dmean + cov_a.diag().sum() + cov_b.diag().sum() - 2.0 * tr_sqrt;
    Ok(value.max(0.0))
}

/// The Fréchet distance (squared form, as FID) between the Gaussian fits of two samples `a`
/// (`(m, d)`) and `b` (`(n, d)`): [`frechet_distance_gaussians`] of their means and unbiased
/// covariances ([`gaussian_fit`](crate::gaussian_fit)). Sizes may differ; each needs at least 2 points. Cost
/// `O((m + n) d² + d³)`.
///
/// A sample against itself gives 0 (up to round-off), against a copy shifted by `c` gives
/// `‖c‖²`; in one dimension it is `(μ_a − μ_b)² + (σ_a − σ_b)²`.
///
/// Errors: empty or non-finite samples, different dimensions, fewer than 2 points.
///
/// ```
/// use ndarray::array;
/// let a = array![[0.0], [2.0]];           // mean 1, sd √2
/// let b = array![[5.0], [7.0], [9.0]];    // mean 7, sd 2
/// let d2 = fm_metrics::frechet_distance(a.view(), b.view())?;
/// assert!((d2 - (36.0 + (2.0 - 2f64.sqrt()).powi(2))).abs() < 1e-12);
/// # Ok::<(), fm_metrics::MetricsError>(())
/// ```
pub fn frechet_distance(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64, MetricsError> {
    fm_core::shape::check_nonempty("a", a)?;
    fm_core::shape::check_batch("b", b, a.ncols())?;
    let (mean_a, cov_a) = fit_named("a", a)?;
    let (mean_b, cov_b) = fit_named("b", b)?;
    frechet_distance_gaussians(mean_a.view(), cov_a.view(), mean_b.view(), cov_b.view())
}
