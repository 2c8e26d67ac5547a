//! # fm-metrics
//!
//! The metrics the flow-matching papers report, for samples and trained flows:
//!
//! * [`w2`], [`w2_sq`], [`w1`]: exact Wasserstein distances between two equal-size samples,
//!   by the fast assignment solver of `fm-couplings` (usable at `n = 10 000`).
//! * [`mmd_rbf`]: the unbiased squared MMD with a mixture of RBF kernels.
//! * [`log_likelihood`]: `log p_1(x)` of data under a flow by the instantaneous change of
//!   variables, integrated backwards with any `fm-ode` solver; exact divergence or
//!   Hutchinson's estimator ([`Divergence`]).
//! * [`c2st`]: the classifier two-sample test of sbibm (cross-validated accuracy of an MLP
//!   classifier trained with `fm-autograd`; 0.5 means indistinguishable).
//! * [`path_energy`] and [`normalized_path_energy`]: `E ∫ ‖v‖² dt` along trajectories and the
//!   \[SF\]²M normalised path energy `|PE − W2²| / W2²`.
//!
//! With the cargo feature `linalg` (off by default: it links a system LAPACK through
//! `ndarray-linalg`, e.g. after `apt-get install libopenblas-dev`):
//!
//! * `frechet_distance` and `frechet_distance_gaussians`: the Fréchet distance (the FID formula)
//!   between the Gaussian fits (`gaussian_fit`) of two samples, or between two Gaussians.
//! * `MultivariateNormal`: a full-covariance Gaussian (Cholesky) that implements
//!   `fm_core::LogDensity` and samples, e.g. a source for `log_likelihood_with_source`.
//!
//! ```
//! use fm_core::{FnField, StandardNormal};
//! use fm_metrics::{normalized_path_energy, path_energy, w2_sq};
//!
//! let mut rng = fm_core::rng::seeded(0);
//! let x_0 = StandardNormal::new(2).unwrap().sample(200, &mut rng);
//! // The flow v = m translates every point by m: the optimal transport to x_0 + m.
//! let field = FnField::new(2, |_t, _x, mut out| out.fill(1.5));
//! let x_1 = &x_0 + 1.5;
//! let w2 = w2_sq(x_0.view(), x_1.view())?;
//! let pe = path_energy(&field, x_0.view(), 20)?;
//! assert!((w2 - 4.5).abs() < 1e-9 && (pe - 4.5).abs() < 1e-9);
//! assert!(normalized_path_energy(pe, w2) < 1e-9);
//! # Ok::<(), fm_metrics::MetricsError>(())
//! ```

mod c2st;
mod energy;
mod error;
#[cfg(feature = "linalg")]
mod frechet;
#[cfg(feature = "linalg")]
mod gaussian;
mod likelihood;
mod mmd;
mod ot;

pub use c2st::{C2st, C2stOptions, c2st};
pub use energy::{normalized_path_energy, path_energy};
pub use error::MetricsError;
#[cfg(feature = "linalg")]
pub use frechet::{frechet_distance, frechet_distance_gaussians};
#[cfg(feature = "linalg")]
pub use gaussian::{MultivariateNormal, gaussian_fit};
pub use likelihood::{
    Divergence, Likelihood, LikelihoodOptions, ProbeKind, log_likelihood,
    log_likelihood_with_source,
};
pub use mmd::mmd_rbf;
pub use ot::{w1, w2, w2_sq};
