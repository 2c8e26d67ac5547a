use crate::{GaussianLinear, GaussianMixture, Result, SbiError, Slcp, TwoMoons};
use fm_core::shape::{check_data, check_len};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand::RngCore;

/// A simulation-based inference benchmark task: a prior `p(θ)`, a simulator drawing
/// `x ~ p(x | θ)`, its likelihood, stored observations and a sampler of the reference posterior
/// `p(θ | x_obs)`.
///
/// The RNG is always an argument (`&mut dyn RngCore`, so the trait is object safe and
/// [`task`] can return any task by name); the same seed gives the same bits.
///
/// A task of your own implements the required methods and gets the checked, provided ones.
/// Here a one-dimensional conjugate model: `θ ~ N(0, 1)`, `x ~ N(θ, 1)`, posterior
/// `N(x / 2, 1 / 2)`:
///
/// ```
/// use fm_sbi::{Result, Task};
/// use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
/// use rand::{Rng, RngCore};
/// use rand_distr::StandardNormal;
///
/// #[derive(Debug)]
/// struct Conjugate;
/// const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
/// impl Task for Conjugate {
///     fn name(&self) -> &'static str { "conjugate" }
///     fn theta_dim(&self) -> usize { 1 }
///     fn x_dim(&self) -> usize { 1 }
///     fn observations(&self) -> &'static [&'static [f64]] { &[&[0.5]] }
///     fn draw_prior(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
///         Array2::from_shape_simple_fn((n, 1), || rng.sample::<f64, _>(StandardNormal))
///     }
///     fn prior_log_prob_unchecked(&self, theta: ArrayView2<f64>) -> Array1<f64> {
///         theta.rows().into_iter().map(|t| -0.5 * t[0] * t[0] - LN_SQRT_2PI).collect()
///     }
///     fn simulate_unchecked(&self, theta: ArrayView2<f64>, rng: &mut dyn RngCore) -> Array2<f64> {
///         theta.mapv(|t| t + rng.sample::<f64, _>(StandardNormal))
///     }
///     fn log_likelihood_unchecked(&self, theta: ArrayView2<f64>, x: ArrayView1<f64>) -> Array1<f64> {
///         theta.rows().into_iter().map(|t| -0.5 * (x[0] - t[0]).powi(2) - LN_SQRT_2PI).collect()
///     }
///     fn reference_posterior_unchecked(
///         &self, x: ArrayView1<f64>, n: usize, rng: &mut dyn RngCore,
///     ) -> Result<Array2<f64>> {
///         let sd = 0.5_f64.sqrt();
///         Ok(Array2::from_shape_simple_fn((n, 1), || {
///             x[0] / 2.0 + sd * rng.sample::<f64, _>(StandardNormal)
///         }))
///     }
/// }
///
/// let mut rng = fm_core::rng::seeded(0);
/// let (theta, x) = Conjugate.simulate_pairs(1000, &mut rng)?;
/// assert_eq!((theta.dim(), x.dim()), ((1000, 1), (1000, 1)));
/// let post = Conjugate.reference_posterior(1, 20_000, &mut rng)?;
/// assert!((post.mean().unwrap() - 0.25).abs() < 0.02);
/// assert!(Conjugate.observation(2).is_err()); // only one stored observation
/// # Ok::<(), fm_sbi::SbiError>(())
/// ```
pub trait Task: Send + Sync + std::fmt::Debug {
    /// The sbibm name, e.g. `"two_moons"`.
    fn name(&self) -> &'static str;
    /// The dimension of the parameters θ.
    fn theta_dim(&self) -> usize;
    /// The dimension of the data x.
    fn x_dim(&self) -> usize;
    /// The stored observations `x_obs`, numbered from 1 by [`Task::observation`].
    fn observations(&self) -> &'static [&'static [f64]];
    /// `n` draws of the prior, shape `(n, theta_dim)`; `n ≥ 1` is checked by [`Task::sample_prior`].
    fn draw_prior(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64>;
    /// `log p(θ)` of each row (−∞ outside the support); shapes are checked by [`Task::prior_log_prob`].
    fn prior_log_prob_unchecked(&self, theta: ArrayView2<f64>) -> Array1<f64>;
    /// One simulation per row of `theta`, shape `(n, x_dim)`; checked by [`Task::simulate`].
    fn simulate_unchecked(&self, theta: ArrayView2<f64>, rng: &mut dyn RngCore) -> Array2<f64>;
    /// `log p(x | θ)` for each row of `theta`; checked by [`Task::log_likelihood`].
    fn log_likelihood_unchecked(&self, theta: ArrayView2<f64>, x: ArrayView1<f64>) -> Array1<f64>;
    /// `n` draws of the reference posterior `p(θ | x)`; checked by [`Task::reference_posterior_at`].
    fn reference_posterior_unchecked(
        &self,
        x: ArrayView1<f64>,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Array2<f64>>;

    /// `n ≥ 1` draws of the prior, shape `(n, theta_dim)`.
    fn sample_prior(&self, n: usize, rng: &mut dyn RngCore) -> Result<Array2<f64>> {
        check_count(n)?;
        Ok(self.draw_prior(n, rng))
    }

    /// `log p(θ)` of each row of `theta` (shape `(n, theta_dim)`, finite); −∞ outside the
    /// prior's support.
    fn prior_log_prob(&self, theta: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_data("theta", theta, self.theta_dim())?;
        Ok(self.prior_log_prob_unchecked(theta))
    }

    /// One simulation `x ~ p(x | θ)` per row of `theta` (shape `(n, theta_dim)`, finite).
    fn simulate(&self, theta: ArrayView2<f64>, rng: &mut dyn RngCore) -> Result<Array2<f64>> {
        check_data("theta", theta, self.theta_dim())?;
        Ok(self.simulate_unchecked(theta, rng))
    }

    /// `n ≥ 1` pairs `(θ, x)`: θ from the prior, then one simulation each.
    fn simulate_pairs(
        &self,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        let theta = self.sample_prior(n, rng)?;
        let x = self.simulate_unchecked(theta.view(), rng);
        Ok((theta, x))
    }

    /// The exact `log p(x | θ)` for each row of `theta`, a density in `x`.
    fn log_likelihood(&self, theta: ArrayView2<f64>, x: ArrayView1<f64>) -> Result<Array1<f64>> {
        check_data("theta", theta, self.theta_dim())?;
        check_observation(self, x)?;
        Ok(self.log_likelihood_unchecked(theta, x))
    }

    /// The unnormalised log posterior `log p(θ) + log p(x | θ)` of each row of `theta`.
    fn log_posterior_unnormalized(
        &self,
        theta: ArrayView2<f64>,
        x: ArrayView1<f64>,
    ) -> Result<Array1<f64>> {
        let prior = self.prior_log_prob(theta)?;
        check_observation(self, x)?;
        let like = self.log_likelihood_unchecked(theta, x);
        // Outside the prior the likelihood may be anything; −∞ + finite stays −∞, never NaN.
        Ok(ndarray::Zip::from(&prior)
            .and(&like)
            .map_collect(|&p, &l| if p == f64::NEG_INFINITY { p } else { p + l }))
    }

    /// The stored observation number `i` (from 1, as in sbibm).
    fn observation(&self, i: usize) -> Result<Array1<f64>> {
        let obs = self.observations();
        match i.checked_sub(1).and_then(|k| obs.get(k)) {
            Some(x) => Ok(Array1::from(x.to_vec())),
            None => Err(SbiError::UnknownObservation {
                task: self.name(),
                index: i,
                available: obs.len(),
            }),
        }
    }

    /// `n ≥ 1` draws of the reference posterior `p(θ | x)` for any observation `x`
    /// (length `x_dim`, finite).
    fn reference_posterior_at(
        &self,
        x: ArrayView1<f64>,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Array2<f64>> {
        check_count(n)?;
        check_observation(self, x)?;
        self.reference_posterior_unchecked(x, n, rng)
    }

    /// `n ≥ 1` draws of the reference posterior for the stored observation number `i`.
    fn reference_posterior(
        &self,
        i: usize,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Array2<f64>> {
        let x = self.observation(i)?;
        self.reference_posterior_at(x.view(), n, rng)
    }
}

fn check_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(SbiError::InvalidParameter {
            name: "n",
            value: "0".into(),
            reason: "give at least one sample",
        });
    }
    Ok(())
}

fn check_observation<T: Task + ?Sized>(task: &T, x: ArrayView1<f64>) -> Result<()> {
    check_len("observation x", x, task.x_dim())?;
    let row = x.insert_axis(ndarray::Axis(0));
    fm_core::shape::check_finite("observation x", row)?;
    Ok(())
}

/// The names of the built-in tasks, in the order of Lueckmann et al. (2021).
pub const TASK_NAMES: [&str; 4] = ["gaussian_linear", "gaussian_mixture", "two_moons", "slcp"];

/// The built-in task called `name` (one of [`TASK_NAMES`]); an error listing the names otherwise.
///
/// ```
/// let t = fm_sbi::task("slcp").unwrap();
/// assert_eq!((t.theta_dim(), t.x_dim()), (5, 8));
/// let err = fm_sbi::task("three_moons").unwrap_err().to_string();
/// assert!(err.contains("two_moons") && err.contains("gaussian_linear"));
/// ```
pub fn task(name: &str) -> Result<Box<dyn Task>> {
    Ok(match name {
        "gaussian_linear" => Box::new(GaussianLinear),
        "gaussian_mixture" => Box::new(GaussianMixture),
        "two_moons" => Box::new(TwoMoons),
        "slcp" => Box::new(Slcp::default()),
        _ => {
            return Err(SbiError::UnknownTask {
                name: name.into(),
                known: TASK_NAMES.join(", "),
            });
        }
    })
}

/// A uniform prior on the box `[low, high]^d`.
pub(crate) struct UniformBox {
    pub low: f64,
    pub high: f64,
    pub dim: usize,
}

impl UniformBox {
    pub fn draw(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        use rand::Rng;
        Array2::from_shape_simple_fn((n, self.dim), || rng.random_range(self.low..self.high))
    }

    pub fn contains(&self, theta: ArrayView1<f64>) -> bool {
        theta.iter().all(|&t| t >= self.low && t <= self.high)
    }

    pub fn log_prob(&self, theta: ArrayView2<f64>) -> Array1<f64> {
        let inside = -(self.dim as f64) * (self.high - self.low).ln();
        theta
            .rows()
            .into_iter()
            .map(|t| {
                if self.contains(t) {
                    inside
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect()
    }
}

/// `ln √(2π)`.
pub(crate) const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Draws accepted proposals until `n` are kept, or gives up after `max(10⁶, 1000 n)` proposals.
pub(crate) fn rejection(
    task: &'static str,
    dim: usize,
    n: usize,
    rng: &mut dyn RngCore,
    mut propose: impl FnMut(&mut dyn RngCore, &mut [f64]) -> bool,
) -> Result<Array2<f64>> {
    let max = (1000 * n).max(1_000_000);
    let mut out = Array2::zeros((n, dim));
    let (mut kept, mut tried) = (0, 0);
    let mut buf = vec![0.0; dim];
    while kept < n {
        if tried == max {
            return Err(SbiError::SamplerStalled {
                task,
                accepted: kept,
                proposed: tried,
            });
        }
        tried += 1;
        if propose(rng, &mut buf) {
            out.row_mut(kept).assign(&ArrayView1::from(&buf[..]));
            kept += 1;
        }
    }
    Ok(out)
}
