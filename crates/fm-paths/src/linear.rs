//! The I-CFM / OT-CFM path of Tong et al. (2023).

use crate::gaussian::{Coefs, HasCoefs, check_sigma, gaussian_methods};
use crate::path::{Reads, sample_checked, velocity_checked};
use crate::{Boundary, Conditioning, GaussianPath, PathError, PathSample, ProbPath};
use ndarray::{Array2, ArrayView1, ArrayView2};

/// The straight-line path of independent and minibatch-OT conditional flow matching
/// (I-CFM / OT-CFM, Tong et al. 2023, "Improving and generalizing flow-based generative models
/// with minibatch optimal transport", eqs. 14-15; TorchCFM's `ConditionalFlowMatcher`):
///
/// ```text
/// μ_t = t x_1 + (1 - t) x_0,   σ_t = σ,   x_t = μ_t + σ eps,   u_t(x | x_0, x_1) = x_1 - x_0.
/// ```
///
/// OT-CFM uses the same path; only the coupling of `(x_0, x_1)` differs (`fm-couplings`).
/// With `σ = 0` (the default) the path is deterministic and has no density.
///
/// ```
/// use fm_paths::{LinearPath, ProbPath};
/// let path = LinearPath::new(0.0).unwrap();
/// let (x_0, x_1) = (ndarray::array![[0.0, 1.0]], ndarray::array![[2.0, 3.0]]);
/// let s = path.sample(x_0.view(), x_1.view(), ndarray::array![0.25].view(),
///                     &mut fm_core::rng::seeded(0)).unwrap();
/// assert_eq!(s.x_t, ndarray::array![[0.5, 1.5]]);
/// assert_eq!(s.u_t, ndarray::array![[2.0, 2.0]]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinearPath {
    sigma: f64,
}

impl LinearPath {
    /// The path with constant standard deviation `sigma ≥ 0` (TorchCFM's default is 0).
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

impl HasCoefs for LinearPath {
    fn coefs(&self, t: f64) -> Coefs {
        Coefs {
            a: 1.0 - t,
            b: t,
            s: self.sigma,
            da: -1.0,
            db: 1.0,
            ds: 0.0,
        }
    }
}

impl ProbPath for LinearPath {
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
                for j in 0..xt.len() {
                    let mu = t * b[j] + (1.0 - t) * a[j];
                    xt[j] = mu + sigma * e[j];
                    ut[j] = b[j] - a[j];
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
        velocity_checked(x_t, x_0, x_1, t, Reads::Pair, |mut o, a, b, _, _| {
            for j in 0..o.len() {
                o[j] = b[j] - a[j];
            }
        })
    }
}

impl GaussianPath for LinearPath {
    fn conditioning(&self) -> Conditioning {
        Conditioning::Pair
    }
    fn boundary(&self) -> Boundary {
        Boundary::interpolant(self.sigma, self.sigma)
    }
    gaussian_methods!();
}
