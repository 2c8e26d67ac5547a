//! The variance-exploding diffusion path of Lipman et al. (2022), §4.1.

use crate::gaussian::{Coefs, HasCoefs, gaussian_methods};
use crate::path::{Reads, sample_checked, velocity_checked};
use crate::{Boundary, Conditioning, EndPoint, GaussianPath, PathError, PathSample, ProbPath};
use ndarray::{Array2, ArrayView1, ArrayView2};

/// The variance-exploding (VE) diffusion path written as a flow-matching path
/// (Lipman et al. 2022, "Flow Matching for Generative Modeling", §4.1, eqs. 16-17, with the
/// noise schedule of Song et al. 2021 `σ_s = σ_min (σ_max / σ_min)^s`), conditioned on `x_1`:
///
/// ```text
/// μ_t = x_1,   σ_t = σ_{1-t} = σ_min (σ_max / σ_min)^{1-t},   x_t = x_1 + σ_t eps,
/// u_t(x | x_1) = -(σ'_{1-t} / σ_{1-t}) (x - x_1) = -ln(σ_max / σ_min) (x - x_1).
/// ```
///
/// At `t = 0` the path is `N(x_1, σ_max² I)` (not `N(0, I)`: the VE source is a wide Gaussian),
/// at `t = 1` it is `N(x_1, σ_min² I)`. Like [`LipmanPath`](crate::LipmanPath), sampling
/// ignores `x_0` and uses the fresh noise `eps`.
///
/// ```
/// use fm_paths::{GaussianPath, VarianceExplodingPath};
/// let path = VarianceExplodingPath::new(0.01, 50.0).unwrap();
/// let s = path.std(ndarray::array![0.0, 1.0].view()).unwrap();
/// assert!((s[0] - 50.0).abs() < 1e-12 && (s[1] - 0.01).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VarianceExplodingPath {
    sigma_min: f64,
    sigma_max: f64,
    log_ratio: f64,
}

impl VarianceExplodingPath {
    /// The path with `0 < sigma_min < sigma_max < ∞`.
    pub fn new(sigma_min: f64, sigma_max: f64) -> Result<Self, PathError> {
        if !(sigma_min.is_finite() && sigma_min > 0.0) {
            return Err(PathError::param(
                "sigma_min",
                sigma_min,
                "must be finite and positive",
            ));
        }
        if !(sigma_max.is_finite() && sigma_max > sigma_min) {
            return Err(PathError::param(
                "sigma_max",
                sigma_max,
                "must be finite and larger than sigma_min",
            ));
        }
        Ok(Self {
            sigma_min,
            sigma_max,
            log_ratio: (sigma_max / sigma_min).ln(),
        })
    }

    /// `σ_min`, the std at `t = 1`.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }

    /// `σ_max`, the std at `t = 0`.
    pub fn sigma_max(&self) -> f64 {
        self.sigma_max
    }
}

impl HasCoefs for VarianceExplodingPath {
    fn coefs(&self, t: f64) -> Coefs {
        let s = self.sigma_min * ((1.0 - t) * self.log_ratio).exp();
        Coefs {
            a: 0.0,
            b: 1.0,
            s,
            da: 0.0,
            db: 0.0,
            ds: -self.log_ratio * s,
        }
    }
}

impl ProbPath for VarianceExplodingPath {
    fn sample_with_noise(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        eps: ArrayView2<f64>,
    ) -> Result<PathSample, PathError> {
        let lr = self.log_ratio;
        sample_checked(
            x_0,
            x_1,
            t,
            eps,
            Reads::Target,
            |mut xt, mut ut, _, b, e, t| {
                let s = self.coefs(t).s;
                for j in 0..xt.len() {
                    xt[j] = b[j] + s * e[j];
                    ut[j] = -lr * (xt[j] - b[j]);
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
        let lr = self.log_ratio;
        velocity_checked(x_t, x_0, x_1, t, Reads::Target, |mut o, _, b, x, _| {
            for j in 0..o.len() {
                o[j] = -lr * (x[j] - b[j]);
            }
        })
    }
}

impl GaussianPath for VarianceExplodingPath {
    fn conditioning(&self) -> Conditioning {
        Conditioning::Target
    }
    fn boundary(&self) -> Boundary {
        Boundary {
            start: EndPoint {
                x_0: 0.0,
                x_1: 1.0,
                std: self.sigma_max,
                tol: 0.0,
            },
            end: EndPoint {
                x_0: 0.0,
                x_1: 1.0,
                std: self.sigma_min,
                tol: 0.0,
            },
        }
    }
    gaussian_methods!();
}
