//! Affine probability paths `x_t = α_t x_1 + σ_t x_0` driven by a [`Scheduler`].

use crate::gaussian::{Coefs, HasCoefs, gaussian_methods};
use crate::path::{Reads, check_batch, check_times, map_rows, sample_rows};
use crate::{
    Boundary, Conditioning, GaussianPath, PathError, PathSample, ProbPath, Scheduler,
    SchedulerOutput, VpScheduler,
};
use fm_core::shape;
use ndarray::{Array2, ArrayView1, ArrayView2};
use rand::RngCore;

/// The affine path `x_t = α_t x_1 + σ_t x_0` of a [`Scheduler`] (Lipman et al. 2024,
/// "Flow Matching Guide and Code", §4.8; facebookresearch/flow_matching's `AffineProbPath`),
/// with the source `x_0 ~ N(0, I)` as the noise:
///
/// ```text
/// x_t = σ_t x_0 + α_t x_1,   u_t = dx_t/dt = σ'_t x_0 + α'_t x_1.
/// ```
///
/// As a [`GaussianPath`] it conditions on `x_1` only: `p_t(x | x_1) = N(α_t x_1, σ_t² I)` with
/// `u_t(x | x_1) = α'_t x_1 + (σ'_t / σ_t)(x - α_t x_1)`, which `conditional_velocity` returns for
/// arbitrary `x` (equal to `σ'_t x_0 + α'_t x_1` at `x = x_t`; where `σ_t = 0` it returns
/// `σ'_t x_0 + α'_t x_1`). `sample_with_noise` **ignores `eps`** and reports `eps = x_0`;
/// `sample` draws nothing.
///
/// `AffineProbPath<VpScheduler>` ([`VariancePreservingPath`]) is the variance-preserving
/// diffusion path of Lipman et al. 2022, §4.1; `AffineProbPath<CondOtScheduler>` is their
/// OT path with `σ_min = 0` written with `x_0` as the noise.
///
/// For the probability-flow ODE of a score model, [`velocity_from_score`](Self::velocity_from_score)
/// turns `∇ log p_t` into the marginal velocity.
///
/// ```
/// use fm_paths::{AffineProbPath, CondOtScheduler, ProbPath};
/// let path = AffineProbPath::new(CondOtScheduler);
/// let (x_0, x_1) = (ndarray::array![[1.0]], ndarray::array![[3.0]]);
/// let s = path.sample(x_0.view(), x_1.view(), ndarray::array![0.5].view(), &mut fm_core::rng::seeded(0)).unwrap();
/// assert_eq!(s.x_t, ndarray::array![[2.0]]);
/// assert_eq!(s.u_t, ndarray::array![[2.0]]);
/// assert_eq!(s.eps, x_0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AffineProbPath<S> {
    scheduler: S,
}

/// The variance-preserving diffusion path of Lipman et al. 2022, §4.1: the affine path of
/// [`VpScheduler`].
pub type VariancePreservingPath = AffineProbPath<VpScheduler>;

impl<S: Scheduler> AffineProbPath<S> {
    /// The affine path of `scheduler`.
    pub fn new(scheduler: S) -> Self {
        Self { scheduler }
    }

    /// The scheduler (for `α_t, σ_t, α'_t, σ'_t` via [`Scheduler::at`]).
    pub fn scheduler(&self) -> &S {
        &self.scheduler
    }

    /// The scheduler's four numbers at each time, after checking `t ∈ [0, 1]`.
    pub fn coefficients(&self, t: ArrayView1<f64>) -> Result<Vec<SchedulerOutput>, PathError> {
        check_times(t)?;
        Ok(t.iter().map(|&t| self.scheduler.at(t)).collect())
    }

    /// The marginal velocity from the marginal score (probability-flow ODE of an affine
    /// Gaussian path; Lipman et al. 2024, "Flow Matching Guide and Code", §4.8.3):
    ///
    /// ```text
    /// u_t(x) = (α'_t / α_t) x + (α'_t σ_t² / α_t - σ'_t σ_t) ∇ log p_t(x).
    /// ```
    ///
    /// Exact for the conditional and the marginal field alike (both are linear in the score).
    /// [`PathError::Singular`] where `α_t = 0` or a coefficient is infinite.
    pub fn velocity_from_score(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        score: ArrayView2<f64>,
    ) -> Result<Array2<f64>, PathError> {
        let (a, b) = self.score_coefficients(t, x, score)?;
        let mut out = Array2::zeros(x.dim());
        ndarray::Zip::from(out.rows_mut())
            .and(x.rows())
            .and(score.rows())
            .and(&a)
            .and(&b)
            .for_each(|mut o, x, s, &a, &b| {
                for j in 0..o.len() {
                    o[j] = a * x[j] + b * s[j];
                }
            });
        Ok(out)
    }

    /// The inverse of [`velocity_from_score`](Self::velocity_from_score):
    /// `∇ log p_t(x) = (u_t(x) - (α'_t/α_t) x) / (α'_t σ_t²/α_t - σ'_t σ_t)`.
    pub fn score_from_velocity(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        velocity: ArrayView2<f64>,
    ) -> Result<Array2<f64>, PathError> {
        let (a, b) = self.score_coefficients(t, x, velocity)?;
        if let Some(i) = b.iter().position(|&b| b == 0.0) {
            return Err(PathError::Singular {
                what: "the score from the velocity",
                t: t[i],
            });
        }
        let mut out = Array2::zeros(x.dim());
        ndarray::Zip::from(out.rows_mut())
            .and(x.rows())
            .and(velocity.rows())
            .and(&a)
            .and(&b)
            .for_each(|mut o, x, u, &a, &b| {
                for j in 0..o.len() {
                    o[j] = (u[j] - a * x[j]) / b;
                }
            });
        Ok(out)
    }

    /// `(α'/α, α'σ²/α - σ'σ)` per row, checked.
    fn score_coefficients(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        other: ArrayView2<f64>,
    ) -> Result<(Vec<f64>, Vec<f64>), PathError> {
        shape::check_nonempty("x", x)?;
        shape::check_same_shape("score/velocity", x, other)?;
        shape::check_len("t", t, x.nrows())?;
        let mut a = Vec::with_capacity(t.len());
        let mut b = Vec::with_capacity(t.len());
        for (c, &ti) in self.coefficients(t)?.iter().zip(t) {
            let ka = c.d_alpha_t / c.alpha_t;
            let kb = c.d_alpha_t * c.sigma_t * c.sigma_t / c.alpha_t - c.d_sigma_t * c.sigma_t;
            if !(ka.is_finite() && kb.is_finite()) {
                return Err(PathError::Singular {
                    what: "the velocity-score conversion",
                    t: ti,
                });
            }
            a.push(ka);
            b.push(kb);
        }
        Ok((a, b))
    }

    /// The first time whose scheduler output is not finite.
    fn first_singular(&self, t: ArrayView1<f64>) -> Option<f64> {
        t.iter().copied().find(|&t| {
            let c = self.scheduler.at(t);
            ![c.alpha_t, c.sigma_t, c.d_alpha_t, c.d_sigma_t]
                .iter()
                .all(|v| v.is_finite())
        })
    }
}

impl AffineProbPath<VpScheduler> {
    /// The VP diffusion path of Lipman et al. 2022, §4.1, with the given `β_min < β_max`.
    pub fn variance_preserving(beta_min: f64, beta_max: f64) -> Result<Self, PathError> {
        Ok(Self::new(VpScheduler::new(beta_min, beta_max)?))
    }
}

impl<S: Scheduler> HasCoefs for AffineProbPath<S> {
    fn coefs(&self, t: f64) -> Coefs {
        let c = self.scheduler.at(t);
        Coefs {
            a: 0.0,
            b: c.alpha_t,
            s: c.sigma_t,
            da: 0.0,
            db: c.d_alpha_t,
            ds: c.d_sigma_t,
        }
    }
}

impl<S: Scheduler> ProbPath for AffineProbPath<S> {
    /// `x_t = σ_t x_0 + α_t x_1`, `u_t = σ'_t x_0 + α'_t x_1`; `eps` is only shape-checked
    /// (the noise of an affine path is `x_0`, reported as `eps`).
    fn sample_with_noise(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        eps: ArrayView2<f64>,
    ) -> Result<PathSample, PathError> {
        check_batch(x_0, x_1, t, Some(eps), Reads::Pair)?;
        self.sample_affine(x_0, x_1, t)
    }

    /// As [`sample_with_noise`](ProbPath::sample_with_noise), without drawing from `rng`.
    fn sample(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        _rng: &mut dyn RngCore,
    ) -> Result<PathSample, PathError> {
        check_batch(x_0, x_1, t, None, Reads::Pair)?;
        self.sample_affine(x_0, x_1, t)
    }

    fn conditional_velocity(
        &self,
        x_t: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        check_batch(x_0, x_1, t, Some(x_t), Reads::Pair)?;
        if let Some(t) = self.first_singular(t) {
            return Err(PathError::Singular {
                what: "the affine conditional field",
                t,
            });
        }
        Ok(map_rows(x_0, x_1, x_t, t, |mut o, a, b, x, t| {
            let c = self.scheduler.at(t);
            if c.sigma_t > 0.0 {
                let k = c.d_sigma_t / c.sigma_t;
                for j in 0..o.len() {
                    o[j] = c.d_alpha_t * b[j] + k * (x[j] - c.alpha_t * b[j]);
                }
            } else {
                for j in 0..o.len() {
                    o[j] = c.d_sigma_t * a[j] + c.d_alpha_t * b[j];
                }
            }
        }))
    }
}

impl<S: Scheduler> AffineProbPath<S> {
    fn sample_affine(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<PathSample, PathError> {
        if let Some(t) = self.first_singular(t) {
            return Err(PathError::Singular {
                what: "the affine path's scheduler",
                t,
            });
        }
        let (x_t, u_t) = sample_rows(x_0, x_1, x_0, t, |mut xt, mut ut, a, b, _, t| {
            let c = self.scheduler.at(t);
            for j in 0..xt.len() {
                xt[j] = c.sigma_t * a[j] + c.alpha_t * b[j];
                ut[j] = c.d_sigma_t * a[j] + c.d_alpha_t * b[j];
            }
        });
        Ok(PathSample {
            x_t,
            u_t,
            eps: x_0.to_owned(),
        })
    }
}

impl<S: Scheduler> GaussianPath for AffineProbPath<S> {
    fn conditioning(&self) -> Conditioning {
        Conditioning::Target
    }
    fn boundary(&self) -> Boundary {
        self.scheduler.boundary()
    }
    gaussian_methods!();
}
