//! # fm-sbi
//!
//! Simulation-based inference benchmark tasks of the sbibm suite (Lueckmann et al., 2021,
//! "Benchmarking Simulation-Based Inference"), implemented from their published definitions:
//! each a prior, a simulator, its exact likelihood, sbibm's observations 1–3 and a reference
//! posterior sampler that can be trusted.
//!
//! | task | θ | x | reference posterior |
//! |---|---|---|---|
//! | [`GaussianLinear`] | 10 | 10 | closed form (Gaussian × Gaussian) |
//! | [`GaussianMixture`] | 2 | 2 | exact: the mixture at x, rejection to the prior box |
//! | [`TwoMoons`] | 2 | 2 | exact: inverse of the simulator, rejection to the prior box |
//! | [`Slcp`] | 5 | 8 | random-walk Metropolis on the folded space, random mirror signs |
//!
//! [`task`] looks a task up by name; every [`Task`] takes the RNG as an argument.
//!
//! ```
//! use fm_sbi::task;
//! let two_moons = task("two_moons")?;
//! let mut rng = fm_core::rng::seeded(42);
//! // Training pairs for posterior estimation, and samples of the true posterior to compare with.
//! let (theta, x) = two_moons.simulate_pairs(10_000, &mut rng)?;
//! let reference = two_moons.reference_posterior(1, 10_000, &mut rng)?;
//! assert_eq!((theta.ncols(), x.ncols(), reference.nrows()), (2, 2, 10_000));
//! # Ok::<(), fm_sbi::SbiError>(())
//! ```

mod error;
mod gaussian_linear;
mod gaussian_mixture;
mod slcp;
mod task;
mod two_moons;

pub use error::SbiError;
pub use gaussian_linear::GaussianLinear;
pub use gaussian_mixture::GaussianMixture;
pub use slcp::{McmcOptions, McmcReport, Slcp};
pub use task::{TASK_NAMES, Task, task};
pub use two_moons::TwoMoons;

/// The result type of `fm-sbi`.
pub type Result<T, E = SbiError> = std::result::Result<T, E>;
