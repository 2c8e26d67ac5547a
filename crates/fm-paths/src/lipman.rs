//! The target-conditional ("FM-OT") path of Lipman et al. (2022).

use crate::gaussian::{Coefs, HasCoefs, gaussian_methods};
use crate::path::{Reads, check_batch, map_rows, sample_checked};
use crate::{Boundary, Conditioning, GaussianPath, PathError, PathSample, ProbPath};
use ndarray::{Array2, ArrayView1, ArrayView2};

/// The optimal-transport conditional path of Lipman et al. (2022), "Flow Matching for
/// Generative Modeling", eqs. 20-21 (TorchCFM's `TargetConditionalFlowMatcher`), conditioned
/// on the target point only (`z = x_1`, source `N(0, I)`):
///
/// ```text
/// μ_t = t x_1,   σ_t = 1 - (1 - σ_min) t,   x_t = μ_t + σ_t eps,
/// u_t(x | x_1) = (x_1 - (1 - σ_min) x) / (1 - (1 - σ_min) t).
/// ```
///
/// Like TorchCFM, sampling **ignores `x_0`** and uses the fresh noise `eps` (the source sample
/// enters only through `eps ~ N(0, I)`); `x_0` must still have the batch's shape.
/// With `σ_min = 0` the field is singular at `t = 1`: `sample_with_noise` then returns the
/// limit along the sample, `u_1 = x_1 - eps`, and `conditional_velocity` returns
/// [`PathError::Singular`].
///
/// ```
/// use fm_paths::{LipmanPath, ProbPath};
/// let path = LipmanPath::new(0.0).unwrap();
/// let x_1 = ndarray::array![[2.0]];
/// let eps = ndarray::array![[1.0]];
/// // x_0 is ignored: pass anything of the right shape.
/// let s = path.sample_with_noise(eps.view(), x_1.view(), ndarray::array![0.5].view(), eps.view()).unwrap();
/// assert_eq!(s.x_t, ndarray::array![[1.5]]);   // 0.5·2 + 0.5·1
/// assert_eq!(s.u_t, ndarray::array![[1.0]]);   // (2 - 1.5) / 0.5 = x_1 - eps
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LipmanPath {
    sigma_min: f64,
}

impl LipmanPath {
    /// The path with final standard deviation `sigma_min ∈ [0, 1)`.
    pub fn new(sigma_min: f64) -> Result<Self, PathError> {
        if !(0.0..1.0).contains(&sigma_min) {
            return Err(PathError::param(
                "sigma_min",
                sigma_min,
                "must lie in [0, 1)",
            ));
        }
        Ok(Self { sigma_min })
    }

    /// The final standard deviation `σ_min`.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }
}

impl HasCoefs for LipmanPath {
    fn coefs(&self, t: f64) -> Coefs {
        let k = 1.0 - self.sigma_min;
        Coefs {
            a: 0.0,
            b: t,
            s: 1.0 - k * t,
            da: 0.0,
            db: 1.0,
            ds: -k,
        }
    }
}

impl ProbPath for LipmanPath {
    fn sample_with_noise(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        eps: ArrayView2<f64>,
    ) -> Result<PathSample, PathError> {
        let k = 1.0 - self.sigma_min;
        sample_checked(
            x_0,
            x_1,
            t,
            eps,
            Reads::Target,
            |mut xt, mut ut, _, b, e, t| {
                let sigma_t = 1.0 - k * t;
                for j in 0..xt.len() {
                    xt[j] = t * b[j] + sigma_t * e[j];
                    ut[j] = if sigma_t > 0.0 {
                        (b[j] - k * xt[j]) / sigma_t
                    } else {
                        b[j] - k * e[j]
                    };
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
        check_batch(x_0, x_1, t, Some(x_t), Reads::Target)?;
        let k = 1.0 - self.sigma_min;
        if let Some(&t) = t.iter().find(|&&t| 1.0 - k * t <= 0.0) {
            return Err(PathError::Singular {
                what: "the Lipman conditional field with sigma_min = 0",
                t,
            });
        }
        Ok(map_rows(x_0, x_1, x_t, t, |mut o, _, b, x, t| {
            let sigma_t = 1.0 - k * t;
            for j in 0..o.len() {
                o[j] = (b[j] - k * x[j]) / sigma_t;
            }
        }))
    }
}

impl GaussianPath for LipmanPath {
    fn conditioning(&self) -> Conditioning {
        Conditioning::Target
    }
    fn boundary(&self) -> Boundary {
        Boundary::noise_to_data(self.sigma_min)
    }
    gaussian_methods!();
}
