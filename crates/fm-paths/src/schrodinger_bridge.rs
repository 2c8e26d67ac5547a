//! The Schrödinger-bridge CFM path (Brownian bridge) of Tong et al. (2023).

use crate::gaussian::{Coefs, HasCoefs, check_sigma, gaussian_methods};
use crate::path::{Reads, sample_checked, velocity_checked};
use crate::{Boundary, Conditioning, GaussianPath, PathError, PathSample, ProbPath};
use ndarray::{Array2, ArrayView1, ArrayView2};

/// The Brownian-bridge path of Schrödinger-bridge CFM (Tong et al. 2023, "Improving and
/// generalizing flow-based generative models with minibatch optimal transport", eqs. 20-21;
/// TorchCFM's `SchrodingerBridgeConditionalFlowMatcher`, whose default is `σ = 1`):
///
/// ```text
/// μ_t = t x_1 + (1 - t) x_0,   σ_t = σ √(t (1 - t)),   x_t = μ_t + σ_t eps,
/// u_t(x | x_0, x_1) = (1 - 2t) / (2 t (1 - t)) · (x - μ_t) + (x_1 - x_0).
/// ```
///
/// **At the ends** `t = 0` and `t = 1`, `σ_t = 0`: the conditional law is the point mass at
/// `μ_t` (`x_0`, resp. `x_1`), and the factor `(1 - 2t) / (2t(1 - t))` diverges. This crate
/// drops the singular term there: `sample_with_noise` returns `x_t = μ_t` and
/// `u_t = x_1 - x_0`, and `conditional_velocity` returns `x_1 - x_0` for every `x`. That is the
/// value of the field on the path's support (`x = μ_t`, where `x - μ_t = 0`) and exactly what
/// TorchCFM returns for its own samples (it regularises the denominator to `2t(1-t) + 1e-8`,
/// which multiplies `x_t - μ_t = 0`). In the interior this crate uses the exact denominator;
/// TorchCFM's `+ 1e-8` changes the factor by a relative `1e-8 / (2t(1-t))`. That is below f32
/// rounding (ε = 2⁻²³ ≈ 1.19e-7) only for `0.042 < t < 0.958`; towards the ends it grows as
/// `1/t`: evaluated in f32, TorchCFM's factor differs from the exact one by 0.7 ulp at
/// t = 0.05, 6.3 ulp at t = 0.01, 82 ulp at t = 1e-3 and 511 ulp at t = 1e-4 (relative 5e-5).
/// So near the ends the two differ measurably (by that relative amount times `x - μ_t`).
/// The density, the score and `d_std` are singular at the ends
/// ([`PathError::Singular`] / infinite `dσ/dt`).
///
/// ```
/// use fm_paths::{ProbPath, SchrodingerBridgePath};
/// let path = SchrodingerBridgePath::new(1.0).unwrap();
/// let (x_0, x_1) = (ndarray::array![[0.0]], ndarray::array![[4.0]]);
/// let eps = ndarray::array![[2.0]];
/// let s = path.sample_with_noise(x_0.view(), x_1.view(), ndarray::array![0.5].view(), eps.view()).unwrap();
/// assert_eq!(s.x_t, ndarray::array![[3.0]]);  // μ = 2, σ_t = 1/2
/// assert_eq!(s.u_t, ndarray::array![[4.0]]);  // at t = 1/2 the bridge term vanishes
/// let end = path.sample_with_noise(x_0.view(), x_1.view(), ndarray::array![1.0].view(), eps.view()).unwrap();
/// assert_eq!((end.x_t[[0, 0]], end.u_t[[0, 0]]), (4.0, 4.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchrodingerBridgePath {
    sigma: f64,
}

impl Default for SchrodingerBridgePath {
    /// `σ = 1`, TorchCFM's default.
    fn default() -> Self {
        Self { sigma: 1.0 }
    }
}

impl SchrodingerBridgePath {
    /// The bridge with noise level `sigma ≥ 0` (the diffusion coefficient of the bridge).
    pub fn new(sigma: f64) -> Result<Self, PathError> {
        Ok(Self {
            sigma: check_sigma("sigma", sigma)?,
        })
    }

    /// The noise level `σ`.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// `(1 - 2t) / (2t(1-t))` in the interior, 0 at the ends (see the type's docs).
    fn gain(t: f64) -> f64 {
        if t > 0.0 && t < 1.0 {
            (1.0 - 2.0 * t) / (2.0 * t * (1.0 - t))
        } else {
            0.0
        }
    }
}

impl HasCoefs for SchrodingerBridgePath {
    fn coefs(&self, t: f64) -> Coefs {
        let root = (t * (1.0 - t)).sqrt();
        let ds = if self.sigma == 0.0 {
            0.0
        } else {
            // d/dt σ √(t(1-t)) = σ (1 - 2t) / (2 √(t(1-t))), ±∞ at the ends.
            self.sigma * (1.0 - 2.0 * t) / (2.0 * root)
        };
        Coefs {
            a: 1.0 - t,
            b: t,
            s: self.sigma * root,
            da: -1.0,
            db: 1.0,
            ds,
        }
    }
}

impl ProbPath for SchrodingerBridgePath {
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
                let sigma_t = sigma * (t * (1.0 - t)).sqrt();
                let gain = Self::gain(t);
                for j in 0..xt.len() {
                    let mu = t * b[j] + (1.0 - t) * a[j];
                    xt[j] = mu + sigma_t * e[j];
                    ut[j] = gain * (xt[j] - mu) + b[j] - a[j];
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
        velocity_checked(x_t, x_0, x_1, t, Reads::Pair, |mut o, a, b, x, t| {
            let gain = Self::gain(t);
            for j in 0..o.len() {
                let mu = t * b[j] + (1.0 - t) * a[j];
                o[j] = if gain == 0.0 {
                    b[j] - a[j]
                } else {
                    gain * (x[j] - mu) + b[j] - a[j]
                };
            }
        })
    }
}

impl GaussianPath for SchrodingerBridgePath {
    fn conditioning(&self) -> Conditioning {
        Conditioning::Pair
    }
    fn boundary(&self) -> Boundary {
        Boundary::interpolant(0.0, 0.0)
    }
    gaussian_methods!();
}
