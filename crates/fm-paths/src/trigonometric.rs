//! The trigonometric (variance-preserving) interpolant of Albergo & Vanden-Eijnden.

use crate::gaussian::{Coefs, HasCoefs, check_sigma, gaussian_methods};
use crate::path::{Reads, sample_checked, velocity_checked};
use crate::{Boundary, Conditioning, GaussianPath, PathError, PathSample, ProbPath};
use ndarray::{Array2, ArrayView1, ArrayView2};
use std::f64::consts::FRAC_PI_2;

/// The variance-preserving trigonometric interpolant (Albergo & Vanden-Eijnden 2023,
/// "Stochastic interpolants: a unifying framework for flows and diffusions"; TorchCFM's
/// `VariancePreservingConditionalFlowMatcher`):
///
/// ```text
/// μ_t = cos(πt/2) x_0 + sin(πt/2) x_1,   σ_t = σ,   x_t = μ_t + σ eps,
/// u_t(x | x_0, x_1) = (π/2) (cos(πt/2) x_1 - sin(πt/2) x_0).
/// ```
///
/// ```
/// use fm_paths::{ProbPath, TrigonometricPath};
/// let path = TrigonometricPath::new(0.0).unwrap();
/// let (x_0, x_1) = (ndarray::array![[1.0]], ndarray::array![[3.0]]);
/// let s = path.sample(x_0.view(), x_1.view(), ndarray::array![1.0].view(), &mut fm_core::rng::seeded(0)).unwrap();
/// assert!((s.x_t[[0, 0]] - 3.0).abs() < 1e-15);
/// assert!((s.u_t[[0, 0]] + std::f64::consts::FRAC_PI_2).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrigonometricPath {
    sigma: f64,
}

impl TrigonometricPath {
    /// The interpolant with constant standard deviation `sigma ≥ 0` (TorchCFM's default is 0).
    pub fn new(sigma: f64) -> Result<Self, PathError> {
        Ok(Self {
            sigma: check_sigma("sigma", sigma)?,
        })
    }

    /// The constant standard deviation `σ`.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }
}

impl HasCoefs for TrigonometricPath {
    fn coefs(&self, t: f64) -> Coefs {
        let (sin, cos) = (FRAC_PI_2 * t).sin_cos();
        Coefs {
            a: cos,
            b: sin,
            s: self.sigma,
            da: -FRAC_PI_2 * sin,
            db: FRAC_PI_2 * cos,
            ds: 0.0,
        }
    }
}

impl ProbPath for TrigonometricPath {
    fn sample_with_noise(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        eps: ArrayView2<f64>,
    ) -> Result<PathSample, PathError> {
        let sigma = self.sigma;
        sample_checked(
            x_0,
            x_1,
            t,
            eps,
            Reads::Pair,
            |mut xt, mut ut, a, b, e, t| {
                let (sin, cos) = ((FRAC_PI_2 * t).sin(), (FRAC_PI_2 * t).cos());
                for j in 0..xt.len() {
                    xt[j] = cos * a[j] + sin * b[j] + sigma * e[j];
                    ut[j] = FRAC_PI_2 * (cos * b[j] - sin * a[j]);
                }
            },
        )
    }

    fn conditional_velocity(
        &self,
        x_t: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        velocity_checked(x_t, x_0, x_1, t, Reads::Pair, |mut o, a, b, _, t| {
            let (sin, cos) = ((FRAC_PI_2 * t).sin(), (FRAC_PI_2 * t).cos());
            for j in 0..o.len() {
                o[j] = FRAC_PI_2 * (cos * b[j] - sin * a[j]);
            }
        })
    }
}

impl GaussianPath for TrigonometricPath {
    fn conditioning(&self) -> Conditioning {
        Conditioning::Pair
    }
    fn boundary(&self) -> Boundary {
        Boundary::interpolant(self.sigma, self.sigma)
    }
    gaussian_methods!();
}
