//! Schedulers `(α_t, σ_t)` of affine paths `x_t = α_t x_1 + σ_t x_0`.

use crate::{Boundary, PathError};
use std::f64::consts::FRAC_PI_2;

/// The four numbers of an affine path at one time: `x_t = α_t x_1 + σ_t x_0` and
/// `dx_t/dt = α'_t x_1 + σ'_t x_0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerOutput {
    /// `α_t`, the weight of the data `x_1`.
    pub alpha_t: f64,
    /// `σ_t`, the weight of the noise `x_0`.
    pub sigma_t: f64,
    /// `dα_t/dt`.
    pub d_alpha_t: f64,
    /// `dσ_t/dt`.
    pub d_sigma_t: f64,
}

/// A scheduler of an [`AffineProbPath`](crate::AffineProbPath) (the shape of
/// facebookresearch/flow_matching's schedulers): `(α_t, σ_t)` and their derivatives, with
/// `α_0 = 0, σ_0 = 1` (pure noise) and `α_1 = 1, σ_1 = 0` (data) unless
/// [`boundary`](Scheduler::boundary) says otherwise.
///
/// A new path is usually a new scheduler: implement `at`, and the path, its sampling, field,
/// density, score, exact marginals and the continuity kit come with it.
///
/// # Example: a user's scheduler
/// ```
/// use fm_paths::{AffineProbPath, GaussianPath, Scheduler, SchedulerOutput};
///
/// /// α_t = t², σ_t = 1 - t (a valid, if unusual, path).
/// struct Quadratic;
/// impl Scheduler for Quadratic {
///     fn at(&self, t: f64) -> SchedulerOutput {
///         SchedulerOutput { alpha_t: t * t, sigma_t: 1.0 - t, d_alpha_t: 2.0 * t, d_sigma_t: -1.0 }
///     }
/// }
///
/// let path = AffineProbPath::new(Quadratic);
/// let std = path.std(ndarray::array![0.25].view()).unwrap();
/// assert_eq!(std[0], 0.75);
/// ```
pub trait Scheduler: Send + Sync {
    /// `(α_t, σ_t, α'_t, σ'_t)` at time `t ∈ [0, 1]`.
    fn at(&self, t: f64) -> SchedulerOutput;

    /// The declared ends checked by the continuity kit; by default exactly `N(0, I)` at
    /// `t = 0` and the data point at `t = 1` ([`Boundary::noise_to_data`]`(0.0)`).
    fn boundary(&self) -> Boundary {
        Boundary::noise_to_data(0.0)
    }
}

/// The conditional-OT scheduler `α_t = t`, `σ_t = 1 - t` (Lipman et al. 2022 with `σ_min = 0`;
/// the rectified-flow / I-CFM line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CondOtScheduler;

impl Scheduler for CondOtScheduler {
    fn at(&self, t: f64) -> SchedulerOutput {
        SchedulerOutput {
            alpha_t: t,
            sigma_t: 1.0 - t,
            d_alpha_t: 1.0,
            d_sigma_t: -1.0,
        }
    }
}

/// The polynomial scheduler `α_t = tⁿ`, `σ_t = 1 - tⁿ` (facebookresearch/flow_matching's
/// `PolynomialConvexScheduler`). For `n < 1` the derivatives are infinite at `t = 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolynomialScheduler {
    n: f64,
}

impl PolynomialScheduler {
    /// The scheduler with exponent `n > 0` (finite).
    pub fn new(n: f64) -> Result<Self, PathError> {
        if !(n.is_finite() && n > 0.0) {
            return Err(PathError::param("n", n, "must be finite and positive"));
        }
        Ok(Self { n })
    }

    /// The exponent `n`.
    pub fn n(&self) -> f64 {
        self.n
    }
}

impl Scheduler for PolynomialScheduler {
    fn at(&self, t: f64) -> SchedulerOutput {
        let tn = t.powf(self.n);
        let d = self.n * t.powf(self.n - 1.0);
        SchedulerOutput {
            alpha_t: tn,
            sigma_t: 1.0 - tn,
            d_alpha_t: d,
            d_sigma_t: -d,
        }
    }
}

/// The cosine scheduler `α_t = sin(πt/2)`, `σ_t = cos(πt/2)` (the trigonometric interpolant
/// as an affine path; Nichol & Dhariwal's cosine schedule in flow-matching time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CosineScheduler;

impl Scheduler for CosineScheduler {
    fn at(&self, t: f64) -> SchedulerOutput {
        let (sin, cos) = (FRAC_PI_2 * t).sin_cos();
        SchedulerOutput {
            alpha_t: sin,
            sigma_t: cos,
            d_alpha_t: FRAC_PI_2 * cos,
            d_sigma_t: -FRAC_PI_2 * sin,
        }
    }

    fn boundary(&self) -> Boundary {
        // cos(π/2) rounds to 6.1e-17, not 0.
        Boundary::noise_to_data(0.0).with_tolerance(0.0, 1e-15)
    }
}

/// The linear variance-preserving scheduler `α_t = t`, `σ_t = √(1 - t²)`
/// (facebookresearch/flow_matching's `LinearVPScheduler`); `σ'_t` is infinite at `t = 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinearVpScheduler;

impl Scheduler for LinearVpScheduler {
    fn at(&self, t: f64) -> SchedulerOutput {
        let sigma = (1.0 - t * t).sqrt();
        SchedulerOutput {
            alpha_t: t,
            sigma_t: sigma,
            d_alpha_t: 1.0,
            d_sigma_t: -t / sigma,
        }
    }
}

/// The variance-preserving diffusion scheduler (Song et al. 2021; Lipman et al. 2022, §4.1, eq. 19)
/// with a linear noise rate `β(s) = β_min + s (β_max - β_min)` in diffusion time `s = 1 - t`:
///
/// ```text
/// T = ½ (1 - t)² (β_max - β_min) + (1 - t) β_min,   α_t = e^{-T/2},   σ_t = √(1 - e^{-T}),
/// T' = -(1 - t)(β_max - β_min) - β_min,   α'_t = -½ T' α_t,   σ'_t = e^{-T} T' / (2 σ_t).
/// ```
///
/// `AffineProbPath<VpScheduler>` is exactly the VP diffusion path of Lipman et al. §4.1
/// (`μ_t = α_{1-t} x_1`, `σ_t = √(1 - α²_{1-t})` in their notation). It does not reach `N(0, I)`
/// exactly: `α_0 = e^{-T(0)/2} ≈ 0.0066` for the default `β`, so its declared boundary has a
/// tolerance of `0.01` at `t = 0`. `σ'_t` is infinite at `t = 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpScheduler {
    beta_min: f64,
    beta_max: f64,
}

impl Default for VpScheduler {
    /// `β_min = 0.1`, `β_max = 20` (Song et al. 2021; Lipman et al. 2022).
    fn default() -> Self {
        Self {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }
}

impl VpScheduler {
    /// The scheduler with `0 ≤ beta_min < beta_max < ∞`.
    pub fn new(beta_min: f64, beta_max: f64) -> Result<Self, PathError> {
        if !(beta_min.is_finite() && beta_min >= 0.0) {
            return Err(PathError::param(
                "beta_min",
                beta_min,
                "must be finite and non-negative",
            ));
        }
        if !(beta_max.is_finite() && beta_max > beta_min) {
            return Err(PathError::param(
                "beta_max",
                beta_max,
                "must be finite and larger than beta_min",
            ));
        }
        Ok(Self { beta_min, beta_max })
    }

    /// `β_min`.
    pub fn beta_min(&self) -> f64 {
        self.beta_min
    }

    /// `β_max`.
    pub fn beta_max(&self) -> f64 {
        self.beta_max
    }

    /// `T(t) = ∫_0^{1-t} β(s) ds`, the integrated noise rate.
    pub fn integrated_beta(&self, t: f64) -> f64 {
        let s = 1.0 - t;
        0.5 * s * s * (self.beta_max - self.beta_min) + s * self.beta_min
    }
}

impl Scheduler for VpScheduler {
    fn at(&self, t: f64) -> SchedulerOutput {
        let big_t = self.integrated_beta(t);
        let d_big_t = -(1.0 - t) * (self.beta_max - self.beta_min) - self.beta_min;
        let alpha = (-0.5 * big_t).exp();
        let sigma = (-(-big_t).exp_m1()).sqrt();
        SchedulerOutput {
            alpha_t: alpha,
            sigma_t: sigma,
            d_alpha_t: -0.5 * d_big_t * alpha,
            d_sigma_t: (-big_t).exp() * d_big_t / (2.0 * sigma),
        }
    }

    fn boundary(&self) -> Boundary {
        Boundary::noise_to_data(0.0).with_tolerance(0.01, 0.0)
    }
}
