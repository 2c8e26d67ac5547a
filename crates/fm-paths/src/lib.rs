//! # fm-paths
//!
//! The probability paths of flow matching: a conditional path `p_t(x | z)` with its conditional
//! vector field `u_t(x | z)`, which a trainer samples (`x_t`, `u_t`) and regresses on.
//!
//! * Traits: [`ProbPath`] (sample `x_t`, `u_t`; evaluate `u_t(x | z)`) and [`GaussianPath`]
//!   (`μ_t`, `σ_t`, their time derivatives, `log p_t(x | z)`, the score).
//! * Paths: [`LinearPath`] (I-CFM / OT-CFM), [`LipmanPath`] (Lipman et al.'s target path),
//!   [`SchrodingerBridgePath`] (SB-CFM), [`TrigonometricPath`] (Albergo & Vanden-Eijnden),
//!   [`AffineProbPath`] with a [`Scheduler`] ([`CondOtScheduler`], [`PolynomialScheduler`],
//!   [`CosineScheduler`], [`LinearVpScheduler`], [`VpScheduler`]), and the diffusion paths of
//!   Lipman et al. §4.1: [`VarianceExplodingPath`] and [`VariancePreservingPath`]
//!   (= `AffineProbPath<VpScheduler>`). Conventions follow TorchCFM: the same `x_t`, `u_t`
//!   for the same `(x_0, x_1, t, eps)`.
//! * [`EmpiricalMarginal`]: the exact marginal density, field and score for an empirical
//!   target (or empirical pairs), computed in log space.
//! * `testing` (feature `testing`): `check_path`, the continuity-equation kit every path passes.
//!
//! ```
//! use fm_paths::{GaussianPath, LinearPath, ProbPath};
//! use ndarray::array;
//!
//! let path = LinearPath::new(0.1).unwrap();
//! let x_0 = array![[0.0, 0.0], [1.0, -1.0]]; // source samples
//! let x_1 = array![[2.0, 2.0], [3.0, 1.0]];  // data
//! let t = array![0.5, 0.25];
//! let s = path.sample(x_0.view(), x_1.view(), t.view(), &mut fm_core::rng::seeded(0)).unwrap();
//! assert_eq!(s.u_t, &x_1 - &x_0);                      // the regression target
//! let mu = path.mean(x_0.view(), x_1.view(), t.view()).unwrap();
//! assert_eq!(s.x_t, &mu + &(&s.eps * 0.1));             // x_t = μ_t + σ eps
//! let score = path.score(s.x_t.view(), x_0.view(), x_1.view(), t.view()).unwrap();
//! assert!((&score + &(&s.eps / 0.1)).iter().all(|v| v.abs() < 1e-9)); // ∇ log p = -eps / σ
//! ```

mod affine;
mod error;
mod gaussian;
mod linear;
mod lipman;
mod marginal;
mod path;
mod scheduler;
mod schrodinger_bridge;
#[cfg(feature = "testing")]
pub mod testing;
mod trigonometric;
mod variance_exploding;

pub use affine::{AffineProbPath, VariancePreservingPath};
pub use error::PathError;
pub use linear::LinearPath;
pub use lipman::LipmanPath;
pub use marginal::EmpiricalMarginal;
pub use path::{
    Boundary, Conditioning, EndPoint, GaussianPath, PathSample, ProbPath, check_inputs,
};
pub use scheduler::{
    CondOtScheduler, CosineScheduler, LinearVpScheduler, PolynomialScheduler, Scheduler,
    SchedulerOutput, VpScheduler,
};
pub use schrodinger_bridge::SchrodingerBridgePath;
pub use trigonometric::TrigonometricPath;
pub use variance_exploding::VarianceExplodingPath;
